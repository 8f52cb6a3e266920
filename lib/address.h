/* Email addresses as users write them: "a@b", "Name <a@b>", "\"Doe, John\" <a@b>", lists. */
#ifndef EMAIL_ADDRESS_H
#define EMAIL_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct address {
    char *name;  /* display name, UTF-8, unquoted; NULL when none */
    char *addr;  /* addr-spec, UTF-8 allowed (RFC 6531) */
} address_t;

typedef struct address_list {
    address_t *v;
    size_t n;
} address_list_t;

/*
 * Parses one mailbox, or (list true) a comma-separated list of them; a quoted display name may
 * hold commas, empty list elements are skipped. text must be valid UTF-8 without CR/LF.
 * On success *out holds at least one address (free it with email__address_list_free).
 * EMAIL_EINVAL with the reason in why ("\"foo\" is not a valid address"), EMAIL_ENOMEM.
 */
int email__address_parse(const char *text, bool list, address_list_t *out, char *why,
                         size_t whylen);
/* True when s[0..n) is an addr-spec: local@domain (dot-atom or quoted local part; host name or
   address literal), within the RFC 5321 lengths. */
bool email__address_spec_valid(const char *s, size_t n);
/* RFC 5322 atext (ASCII): the characters a word needs no quotes for. */
bool email__address_atext(unsigned char c);
void email__address_list_free(address_list_t *list);
/* Frees the addresses from index n on (the list keeps its first n). */
void email__address_list_truncate(address_list_t *list, size_t n);
/* Appends copies of src's addresses to dst. 0 or EMAIL_ENOMEM (dst unchanged). */
int email__address_list_append(address_list_t *dst, const address_list_t *src);

#endif
