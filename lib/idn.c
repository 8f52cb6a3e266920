/* International domain names in addresses: IDNA2008 A-labels through libidn2. */
#include "idn.h"

#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "util.h"

bool email__idn_domain_utf8(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && !email__is_ascii(at + 1, strlen(at + 1));
}

bool email__idn_local_utf8(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return !email__is_ascii(addr, at ? (size_t)(at - addr) : strlen(addr));
}

int email__idn_addr_ascii(const char *addr, char **out, char *why, size_t whylen)
{
    const char *at = strrchr(addr, '@');
    if (!at || at[1] == '[' || !email__idn_domain_utf8(addr)) {
        *out = email__strdup(addr);
        return *out ? 0 : EMAIL_ENOMEM;
    }
    char *ace = NULL;
    /* NFC first: the same name typed with combining accents has the same A-label */
    int rc = idn2_to_ascii_8z(at + 1, &ace, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    if (rc == IDN2_MALLOC)
        return EMAIL_ENOMEM;
    if (rc != IDN2_OK) {
        if (why && whylen)
            snprintf(why, whylen,
                     "\"%.200s\" has a domain that is not a valid international domain name: %s",
                     addr, idn2_strerror(rc));
        return EMAIL_EINVAL;
    }
    size_t local = (size_t)(at - addr) + 1;
    *out = malloc(local + strlen(ace) + 1);
    if (*out) {
        memcpy(*out, addr, local);
        strcpy(*out + local, ace);
    }
    idn2_free(ace);
    return *out ? 0 : EMAIL_ENOMEM;
}
