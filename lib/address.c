/* Email addresses as users write them: "a@b", "Name <a@b>", "\"Doe, John\" <a@b>", lists. */
#include "address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "idn.h"
#include "util.h"

bool email__address_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* In addresses RFC 6532 widens atext to every non-ASCII octet. */
static bool is_atext(unsigned char c)
{
    return c >= 0x80 || email__address_atext(c);
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7F;
}

static bool dot_atom_valid(const char *s, size_t n)
{
    if (!n || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' ? s[i - 1] == '.' : !is_atext((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Index just past the closing quote of the quoted string opening at s[0], or 0 when unclosed. */
static size_t quoted_end(const char *s, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

static bool quoted_local_valid(const char *s, size_t n)
{
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            c = (unsigned char)s[++i];
        else if (c == '"')
            return false;
        if (is_ctl(c) && c != '\t')
            return false;
    }
    return true;
}

static bool label_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c >= 0x80;
}

/*
 * An address literal (RFC 5321 4.1.3): [192.0.2.1] or [IPv6:2001:db8::1]. The general form
 * [tag:content] is refused: no tag but IPv6 is registered, and its content may hold '>' or ',',
 * which would end the address early wherever it is written inside <...>.
 */
static bool address_literal_valid(const char *s, size_t n)
{
    char ip[64];
    if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof ip)
        return false;
    memcpy(ip, s + 1, n - 2);
    ip[n - 2] = '\0';
    unsigned char bin[16];
    if (!strncmp(ip, "IPv6:", 5))
        return inet_pton(AF_INET6, ip + 5, bin) == 1;
    return inet_pton(AF_INET, ip, bin) == 1;
}

static bool domain_valid(const char *s, size_t n)
{
    if (!n || n > 253)
        return false;
    if (s[0] == '[')
        return address_literal_valid(s, n);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (!label_char((unsigned char)s[i]))
                return false;
            continue;
        }
        size_t len = i - start;
        if (!len || len > 63 || s[start] == '-' || s[i - 1] == '-')
            return false;
        start = i + 1;
    }
    return true;
}

bool email__address_spec_valid(const char *s, size_t n)
{
    if (n > 254)
        return false;
    size_t at;
    if (n && s[0] == '"') {
        at = quoted_end(s, n);
        if (!at || at >= n || s[at] != '@' || !quoted_local_valid(s, at))
            return false;
    } else {
        const char *p = memchr(s, '@', n);
        if (!p)
            return false;
        at = (size_t)(p - s);
        if (!dot_atom_valid(s, at))
            return false;
    }
    return at <= 64 && domain_valid(s + at + 1, n - at - 1);
}

/* Position of the first c outside quoted strings in s[0..n) (n when none); SIZE_MAX when a quote
   is not closed. */
static size_t find_unquoted(const char *s, size_t n, char c)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == c)
            return i;
        if (s[i] == '"') {
            size_t end = quoted_end(s + i, n - i);
            if (!end)
                return SIZE_MAX;
            i += end - 1;
        }
    }
    return n;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_wsp(**s))
        (*s)++, (*n)--;
    while (*n && is_wsp((*s)[*n - 1]))
        (*n)--;
}

/*
 * The display name in s[0..n): quoted strings unquoted, white space between words made one
 * space. *name is NULL when empty. EMAIL_EINVAL on a control character.
 */
static int display_name(const char *s, size_t n, char **name)
{
    email_buf_t b;
    email__buf_init(&b);
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (is_wsp(s[i])) {
            space = true;
            continue;
        }
        if (space && b.len && email__buf_putc(&b, ' '))
            goto nomem;
        space = false;
        bool quoted = s[i] == '"';
        /* quotes are balanced: the caller found the '<' outside them */
        size_t end = quoted ? i + quoted_end(s + i, n - i) - 1 : i + 1;
        for (size_t k = quoted ? i + 1 : i; k < end; k++) {
            if (quoted && s[k] == '\\')
                k++;
            if (is_ctl((unsigned char)s[k]) && s[k] != '\t') {
                email__buf_free(&b);
                return EMAIL_EINVAL;
            }
            if (email__buf_putc(&b, s[k]))
                goto nomem;
        }
        i = quoted ? end : i;
    }
    *name = b.len ? email__buf_steal(&b, NULL) : NULL;
    email__buf_free(&b);
    return 0;
nomem:
    email__buf_free(&b);
    return EMAIL_ENOMEM;
}

/* One mailbox: "a@b", "<a@b>" or "phrase <a@b>". */
static int parse_mailbox(const char *s, size_t n, address_t *out)
{
    size_t lt = find_unquoted(s, n, '<');
    if (lt == SIZE_MAX)
        return EMAIL_EINVAL;
    const char *spec = s;
    size_t len = n;
    if (lt < n) {
        spec = s + lt + 1;
        size_t gt = find_unquoted(spec, n - lt - 1, '>');
        if (gt >= n - lt - 1)
            return EMAIL_EINVAL;
        for (size_t i = lt + 2 + gt; i < n; i++)
            if (!is_wsp(s[i]))
                return EMAIL_EINVAL;
        len = gt;
        trim(&spec, &len);
    }
    if (!email__address_spec_valid(spec, len))
        return EMAIL_EINVAL;
    out->name = NULL;
    if (lt < n) {
        int rc = display_name(s, lt, &out->name);
        if (rc)
            return rc;
    }
    out->addr = email__strndup(spec, len);
    if (!out->addr) {
        free(out->name);
        return EMAIL_ENOMEM;
    }
    return 0;
}

static void set_why(char *why, size_t whylen, const char *s, size_t n, const char *what)
{
    /* at most 100 octets of the text, never cutting a UTF-8 character */
    if (n > 100) {
        n = 100;
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(why, whylen, "\"%.*s\" %s", (int)n, s, what);
}

/* A UTF-8 domain must have an A-label: servers without SMTPUTF8 and ASCII headers get that. On
   failure the mailbox is freed. */
static int check_idn(address_t *a, char *why, size_t whylen)
{
    if (!email__idn_domain_utf8(a->addr))
        return 0;
    char *ace;
    int rc = email__idn_addr_ascii(a->addr, &ace, why, whylen);
    if (!rc) {
        free(ace);
        return 0;
    }
    free(a->name);
    free(a->addr);
    return rc;
}

int email__address_parse(const char *text, bool list, address_list_t *out, char *why, size_t whylen)
{
    address_list_t l = {NULL, 0};
    size_t cap = 0, n = strlen(text), i = 0;
    int rc = 0;
    while (i <= n) {
        size_t comma = find_unquoted(text + i, n - i, ',');
        const char *elem = text + i;
        size_t len = comma == SIZE_MAX ? n - i : comma;
        trim(&elem, &len);
        if (comma == SIZE_MAX) {
            set_why(why, whylen, elem, len, "has a quote that is not closed");
            rc = EMAIL_EINVAL;
            break;
        }
        i += comma + 1;
        if (!len)
            continue;
        if (l.n && !list) {
            set_why(why, whylen, text, n, "is more than one address");
            rc = EMAIL_EINVAL;
            break;
        }
        if (l.n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            address_t *v = realloc(l.v, ncap * sizeof *v);
            if (!v) {
                rc = EMAIL_ENOMEM;
                break;
            }
            l.v = v;
            cap = ncap;
        }
        rc = parse_mailbox(elem, len, &l.v[l.n]);
        if (rc == EMAIL_EINVAL)
            set_why(why, whylen, elem, len, "is not a valid address");
        else if (!rc)
            rc = check_idn(&l.v[l.n], why, whylen);
        if (rc)
            break;
        l.n++;
    }
    if (!rc && !l.n) {
        snprintf(why, whylen, "no address given");
        rc = EMAIL_EINVAL;
    }
    if (rc) {
        email__address_list_free(&l);
        return rc;
    }
    *out = l;
    return 0;
}

void email__address_list_truncate(address_list_t *list, size_t n)
{
    for (size_t i = n; i < list->n; i++) {
        free(list->v[i].name);
        free(list->v[i].addr);
    }
    if (n < list->n)
        list->n = n;
}

void email__address_list_free(address_list_t *list)
{
    email__address_list_truncate(list, 0);
    free(list->v);
    list->v = NULL;
}

int email__address_list_append(address_list_t *dst, const address_list_t *src)
{
    if (!src->n)
        return 0;
    address_t *v = realloc(dst->v, (dst->n + src->n) * sizeof *v);
    if (!v)
        return EMAIL_ENOMEM;
    dst->v = v;
    size_t before = dst->n;
    for (size_t i = 0; i < src->n; i++) {
        address_t *a = &v[dst->n++];
        a->name = email__strdup(src->v[i].name);
        a->addr = email__strdup(src->v[i].addr);
        if (!a->addr || (src->v[i].name && !a->name)) {
            email__address_list_truncate(dst, before);
            return EMAIL_ENOMEM;
        }
    }
    return 0;
}
