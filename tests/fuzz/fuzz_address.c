/*
 * libFuzzer target: the address parser (lib/address.c) and the message setters over it.
 *
 * Input: one byte of flags (bit 0: parse as a list), then the text (up to its first NUL, as a C
 * string would end). Properties:
 *  - success gives at least one address, exactly one when not a list; a list parse of a text
 *    whose single parse succeeded gives that same address;
 *  - every addr-spec is valid by email__address_spec_valid, at most 254 octets, appears in the
 * input as it is, and has no white space at either end; a display name is NULL or non-empty,
 * without control characters (but tab; white space inside quotes is the name's own);
 *  - the parse is stable: the addresses written back as `"name" <addr>` (quotes and backslashes
 *    escaped) and parsed again as a list give the same names and addr-specs;
 *  - a refusal has a reason, and the reason is valid UTF-8 when the text was;
 *  - email_message_add_to accepts the text exactly when it is valid UTF-8 without CR/LF and the
 *    list parse accepts it, and email_message_set_from exactly when the single parse does.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "emailsession.h"
#include "fuzz_common.h"
#include "util.h"

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

FUZZ_NOCOV static bool found_in(const char *text, const char *s)
{
    return strstr(text, s) != NULL;
}

FUZZ_NOCOV static void check_address(const char *text, const address_t *a)
{
    size_t n = strlen(a->addr);
    FUZZ_CHECK(n && n <= 254, "addr-spec of %zu octets", n);
    FUZZ_CHECK(email__address_spec_valid(a->addr, n), "\"%s\" accepted but not a valid addr-spec",
               a->addr);
    FUZZ_CHECK(!wsp(a->addr[0]) && !wsp(a->addr[n - 1]), "\"%s\" keeps white space", a->addr);
    FUZZ_CHECK(found_in(text, a->addr), "\"%s\" is not in the input", a->addr);
    if (!a->name)
        return;
    size_t k = strlen(a->name);
    FUZZ_CHECK(k, "an empty display name instead of NULL");
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)a->name[i];
        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7F), "control 0x%02x in a display name", c);
    }
}

/* The list written back: `"name" <addr>, <addr>, ...`. */
FUZZ_NOCOV static void render(const address_list_t *l, fuzz_str_t *out)
{
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            fuzz_str_puts(out, ", ");
        const char *name = l->v[i].name;
        if (name) {
            fuzz_str_puts(out, "\"");
            for (const char *p = name; *p; p++) {
                if (*p == '"' || *p == '\\')
                    fuzz_str_puts(out, "\\");
                fuzz_str_add(out, p, 1);
            }
            fuzz_str_puts(out, "\" ");
        }
        fuzz_str_puts(out, "<");
        fuzz_str_puts(out, l->v[i].addr);
        fuzz_str_puts(out, ">");
    }
    fuzz_str_add(out, "", 1);
}

FUZZ_NOCOV static bool same_name(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

FUZZ_NOCOV static void check_stable(const address_list_t *l)
{
    fuzz_str_t text = {0};
    render(l, &text);
    address_list_t again = {NULL, 0};
    char why[200];
    int rc = email__address_parse(text.p, true, &again, why, sizeof why);
    FUZZ_CHECK(rc == 0, "written back as [%s], refused: %s", text.p, why);
    FUZZ_CHECK(again.n == l->n, "[%s] gives %zu addresses, not %zu", text.p, again.n, l->n);
    for (size_t i = 0; i < l->n; i++) {
        FUZZ_CHECK(!strcmp(again.v[i].addr, l->v[i].addr), "addr \"%s\" became \"%s\"",
                   l->v[i].addr, again.v[i].addr);
        FUZZ_CHECK(same_name(again.v[i].name, l->v[i].name), "name \"%s\" became \"%s\"",
                   l->v[i].name ? l->v[i].name : "(none)",
                   again.v[i].name ? again.v[i].name : "(none)");
    }
    email__address_list_free(&again);
    fuzz_str_free(&text);
}

/* One parse, checked; returns its result code (the list is freed). */
FUZZ_NOCOV static int parse_checked(const char *text, bool list, address_list_t *keep)
{
    address_list_t l = {NULL, 0};
    char why[200];
    memset(why, 0x55, sizeof why);
    int rc = email__address_parse(text, list, &l, why, sizeof why);
    FUZZ_CHECK(rc == 0 || rc == EMAIL_EINVAL, "unexpected result %d", rc);
    if (rc) {
        FUZZ_CHECK(memchr(why, '\0', sizeof why) && why[0], "a refusal without a reason");
        if (email__utf8_valid(text, strlen(text)))
            FUZZ_CHECK(email__utf8_valid(why, strlen(why)), "reason cuts a UTF-8 character");
        return rc;
    }
    FUZZ_CHECK(l.n >= 1 && (list || l.n == 1), "%zu addresses (list %d)", l.n, list);
    for (size_t i = 0; i < l.n; i++)
        check_address(text, &l.v[i]);
    check_stable(&l);
    if (keep)
        *keep = l;
    else
        email__address_list_free(&l);
    return 0;
}

FUZZ_NOCOV static void check_setters(const char *text, bool list_ok, bool single_ok)
{
    bool clean = email__utf8_valid(text, strlen(text)) && !strpbrk(text, "\r\n");
    email_message_t *m = email_message_new();
    FUZZ_CHECK(m != NULL);
    int rc = email_message_add_to(m, text);
    FUZZ_CHECK((rc == 0) == (clean && list_ok), "add_to gave %d (clean %d, list parse %d)", rc,
               clean, list_ok);
    if (*text) {
        rc = email_message_set_from(m, text);
        FUZZ_CHECK((rc == 0) == (clean && single_ok), "set_from gave %d (clean %d, parse %d)", rc,
                   clean, single_ok);
    }
    email_message_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    bool list = data[0] & 1;
    char *text = strndup((const char *)data + 1, size - 1);
    FUZZ_CHECK(text != NULL);

    address_list_t single = {NULL, 0};
    int single_rc = parse_checked(text, false, &single);
    int list_rc = parse_checked(text, list || !single_rc, NULL);
    if (!single_rc) {
        /* the same text read as a list: the same one address */
        address_list_t l = {NULL, 0};
        char why[200];
        FUZZ_CHECK(email__address_parse(text, true, &l, why, sizeof why) == 0, "list refuses: %s",
                   why);
        FUZZ_CHECK(l.n == 1 && !strcmp(l.v[0].addr, single.v[0].addr) &&
                       same_name(l.v[0].name, single.v[0].name),
                   "list and single parse differ");
        email__address_list_free(&l);
        email__address_list_free(&single);
    }
    if (list || !single_rc)
        check_setters(text, list_rc == 0, single_rc == 0);
    free(text);
    return 0;
}
