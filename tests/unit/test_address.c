/*
 * Unit tests of lib/address.c: addresses as users write them, one or a list; quoted display
 * names (commas, escaped quotes); address literals; the RFC 5321 lengths; UTF-8 (RFC 6532); the
 * texts saying why an address is refused; list_append and list_truncate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "address.h"
#include "emailsession.h"

/* Parses text (one address or a list) that must be accepted. */
static address_list_t parse_ok(const char *text, bool list)
{
    address_list_t l = {NULL, 0};
    char why[256] = "";
    int rc = email__address_parse(text, list, &l, why, sizeof why);
    if (rc)
        fail_msg("\"%s\" refused (%d): %s", text, rc, why);
    return l;
}

/* The i-th address is name (NULL: none) and addr. */
static void assert_address(const address_list_t *l, size_t i, const char *name, const char *addr)
{
    assert_true(i < l->n);
    if (name)
        assert_string_equal(l->v[i].name, name);
    else
        assert_null(l->v[i].name);
    assert_string_equal(l->v[i].addr, addr);
}

/* text is refused with EMAIL_EINVAL, why, and *out untouched. */
static void assert_refused(const char *text, bool list, const char *why_expected)
{
    address_t sentinel;
    address_list_t l = {&sentinel, 7};
    char why[256] = "";
    if (email__address_parse(text, list, &l, why, sizeof why) != EMAIL_EINVAL)
        fail_msg("\"%s\" not refused", text);
    assert_ptr_equal(l.v, &sentinel);
    assert_int_equal(l.n, 7);
    assert_string_equal(why, why_expected);
}

/* ---- One address ---- */

static void test_single(void **state)
{
    (void)state;
    static const char *const v[][3] = {
        {"a@b", NULL, "a@b"},
        {"Display Name <a@b.example>", "Display Name", "a@b.example"},
        {"<angle@example.org>", NULL, "angle@example.org"},
        {"  spaced   name   <s@example.org>  ", "spaced name", "s@example.org"},
        {"Name<n@example.org>", "Name", "n@example.org"},
        {"Name < n@example.org >", "Name", "n@example.org"},
        {"\t Tabbed\tName\t<t@example.org>", "Tabbed Name", "t@example.org"},
        {"first.last+tag@sub.example.co.uk", NULL, "first.last+tag@sub.example.co.uk"},
        {"\"quoted local\"@example.org", NULL, "\"quoted local\"@example.org"},
        {"Q <\"a>b,c\"@example.org>", "Q", "\"a>b,c\"@example.org"},
        {"\"\" <empty@example.org>", NULL, "empty@example.org"},
        {"a@localhost", NULL, "a@localhost"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        address_list_t l = parse_ok(v[i][0], false);
        assert_int_equal(l.n, 1);
        assert_address(&l, 0, v[i][1], v[i][2]);
        email__address_list_free(&l);
    }
}

/* Quoted display names: commas, '<' and '>', escaped quotes and backslashes, words mixed. */
static void test_quoted_names(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"\"Doe, John\" <q@example.org>", "Doe, John"},
        {"\"Quote \\\" and \\\\ backslash\" <q@example.org>", "Quote \" and \\ backslash"},
        {"\"a <b> c\" <q@example.org>", "a <b> c"},
        {"John \"Q.\" Public <q@example.org>", "John Q. Public"},
        {"\"x\"   \"y\" <q@example.org>", "x y"},
        {"\"tab\there\" <q@example.org>", "tab\there"},
        {"\"  inner  spaces \" <q@example.org>", "  inner  spaces "},
        {"\"\\a\\b\" <q@example.org>", "ab"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        address_list_t l = parse_ok(v[i][0], false);
        assert_int_equal(l.n, 1);
        assert_address(&l, 0, v[i][1], "q@example.org");
        email__address_list_free(&l);
    }
}

/* ---- Lists ---- */

static void test_lists(void **state)
{
    (void)state;
    address_list_t l = parse_ok("\"Doe, John\" <j@d.org>, x@y.z ,, Jane <jane@e.org>,", true);
    assert_int_equal(l.n, 3);
    assert_address(&l, 0, "Doe, John", "j@d.org");
    assert_address(&l, 1, NULL, "x@y.z");
    assert_address(&l, 2, "Jane", "jane@e.org");
    email__address_list_free(&l);
    /* commas inside a quoted local part or an address literal's neighbours do not split */
    l = parse_ok("<\"a,b\"@c.org>, d@[192.0.2.1],e@f", true);
    assert_int_equal(l.n, 3);
    assert_address(&l, 0, NULL, "\"a,b\"@c.org");
    assert_address(&l, 1, NULL, "d@[192.0.2.1]");
    assert_address(&l, 2, NULL, "e@f");
    email__address_list_free(&l);
    /* a list of one is a single address */
    l = parse_ok(" solo@example.org ", true);
    assert_int_equal(l.n, 1);
    assert_address(&l, 0, NULL, "solo@example.org");
    email__address_list_free(&l);
    /* a thousand: the array grows */
    char text[40000] = "";
    for (int i = 0; i < 1000; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "N%d <u%d@example.org>, ", i,
                 i);
    l = parse_ok(text, true);
    assert_int_equal(l.n, 1000);
    assert_address(&l, 999, "N999", "u999@example.org");
    email__address_list_free(&l);
}

/* ---- Refusals and their texts ---- */

static void test_why(void **state)
{
    (void)state;
    assert_refused("foo", false, "\"foo\" is not a valid address");
    assert_refused("  foo  ", false, "\"foo\" is not a valid address");
    assert_refused("a@b, c@d", false, "\"a@b, c@d\" is more than one address");
    assert_refused("ok@x.org, foo, ok2@x.org", true, "\"foo\" is not a valid address");
    /* without quotes the comma splits the name from its address */
    assert_refused("Doe, John <j@d.org>", true, "\"Doe\" is not a valid address");
    assert_refused("\"unclosed <a@b>", false,
                   "\"\"unclosed <a@b>\" has a quote that is not closed");
    assert_refused("a@b, \"x <c@d>", true, "\"\"x <c@d>\" has a quote that is not closed");
    assert_refused("", false, "no address given");
    assert_refused(" , ,", true, "no address given");
    assert_refused("Name <a@b", false, "\"Name <a@b\" is not a valid address");
    assert_refused("<a@b> trailing", false, "\"<a@b> trailing\" is not a valid address");
    assert_refused("Name <a@b> <c@d>", false, "\"Name <a@b> <c@d>\" is not a valid address");
    assert_refused("Ctl\x01 <a@b>", false, "\"Ctl\x01 <a@b>\" is not a valid address");
    assert_refused("\"Ctl\x7f\" <a@b>", false, "\"\"Ctl\x7f\" <a@b>\" is not a valid address");
    /* at most 100 octets of the text, never cut inside a UTF-8 character */
    char text[300], want[300];
    memset(text, 'x', 99);
    strcpy(text + 99, "\xc3\xa9yyyyyyyyyy");
    snprintf(want, sizeof want, "\"%.99s\" is not a valid address", text);
    assert_refused(text, false, want);
    memset(text, 'x', 98);
    strcpy(text + 98, "\xc3\xa9yyyyyyyyyy");
    snprintf(want, sizeof want, "\"%.100s\" is not a valid address", text);
    assert_refused(text, false, want);
    /* a short why buffer is cut, still terminated */
    address_list_t l = {NULL, 0};
    char why[8];
    assert_int_equal(email__address_parse("foo bar", false, &l, why, sizeof why), EMAIL_EINVAL);
    assert_string_equal(why, "\"foo ba");
}

/* ---- addr-spec: lengths, literals (moved from test_message.c) ---- */

static void test_address_spec_limits(void **state)
{
    (void)state;
    char s[400];
    /* local part of 64 octets, not 65 */
    snprintf(s, sizeof s, "%064d@example.org", 0);
    assert_true(email__address_spec_valid(s, strlen(s)));
    snprintf(s, sizeof s, "%065d@example.org", 0);
    assert_false(email__address_spec_valid(s, strlen(s)));
    /* a label of 63 octets, not 64 */
    snprintf(s, sizeof s, "a@%063d.org", 0);
    assert_true(email__address_spec_valid(s, strlen(s)));
    snprintf(s, sizeof s, "a@%064d.org", 0);
    assert_false(email__address_spec_valid(s, strlen(s)));
    /* 254 octets in all, not 255 */
    snprintf(s, sizeof s, "%064d@%063d.%063d.%061d", 0, 0, 0, 0);
    assert_int_equal(strlen(s), 254);
    assert_true(email__address_spec_valid(s, strlen(s)));
    snprintf(s, sizeof s, "%064d@%063d.%063d.%062d", 0, 0, 0, 0);
    assert_false(email__address_spec_valid(s, strlen(s)));
    static const char *const good[] = {"a@b", "\"a@b\"@c", "\"a\\\"b\"@c", "a@[IPv6:2001:db8::1]",
                                       "a-b@x-y.z", "!#$%&'*+-/=?^_`{|}~@x", "a@[192.0.2.1]",
                                       "a@[IPv6:::ffff:192.0.2.1]"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!email__address_spec_valid(good[i], strlen(good[i])))
            fail_msg("\"%s\" refused", good[i]);
    static const char *const bad[] = {"a@b-", "a@.b", "a@b.", "\"a\"b@c", "a@[1.2 .3.4]", "a@[",
                                      "a\"b@c", "a@b@c", "a(b)@c", "a@b_c.d",
                                      /* found by fuzz_address: a literal that would end <...> */
                                      "a@[384.0>21]", "a@[1.2.3.4>]", "a@[x-tag:a,b]",
                                      "a@[256.0.0.1]", "a@[IPv6:zz::1]", "a@[]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (email__address_spec_valid(bad[i], strlen(bad[i])))
            fail_msg("\"%s\" accepted", bad[i]);
}

/* Address literals in whole addresses: [IPv4] and [IPv6:...] only; the general [tag:content]
   form is refused on purpose (its content may hold '>' or ','). */
static void test_address_literals(void **state)
{
    (void)state;
    static const char *const good[] = {"x@[192.0.2.1]", "Name <x@[192.0.2.1]>",
                                       "<x@[IPv6:2001:db8::1]>", "x@[IPv6:::1]",
                                       "x@[IPv6:::ffff:192.0.2.1]"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        address_list_t l = parse_ok(good[i], false);
        assert_non_null(strchr(l.v[0].addr, '['));
        email__address_list_free(&l);
    }
    static const char *const bad[] = {"x@[tag:content]", "x@[IPv6:192.0.2.1]", "x@[192.0.2]",
                                      "x@[::1]", "x@[IPv6:1::2::3]", "x@[ 192.0.2.1]",
                                      "x@192.0.2.1]", "x@[192.0.2.1", "x@[x-tag:a>b]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[100];
        snprintf(want, sizeof want, "\"%s\" is not a valid address", bad[i]);
        assert_refused(bad[i], false, want);
    }
    /* a literal longer than any address holds */
    char s[200];
    snprintf(s, sizeof s, "a@[IPv6:%0120d]", 0);
    assert_false(email__address_spec_valid(s, strlen(s)));
}

/* The limits in octets, with UTF-8 characters of 3 octets (RFC 6531/6532). */
static void test_utf8(void **state)
{
    (void)state;
#define HAN "\xe5\xad\x97" /* one CJK character, 3 octets */
    address_list_t l = parse_ok("J\xc3\xb6rg <j@example.de>", false);
    assert_address(&l, 0, "J\xc3\xb6rg", "j@example.de");
    email__address_list_free(&l);
    l = parse_ok("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
                 false);
    assert_address(&l, 0, NULL,
                   "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a");
    email__address_list_free(&l);
    l = parse_ok("\"\xe5\xb1\xb1\xe7\x94\xb0, \xe5\xa4\xaa\xe9\x83\x8e\" <t@example.jp>", true);
    assert_address(&l, 0, "\xe5\xb1\xb1\xe7\x94\xb0, \xe5\xa4\xaa\xe9\x83\x8e", "t@example.jp");
    email__address_list_free(&l);
    char s[400] = "";
    /* local part: 21 characters + 1 = 64 octets, + 2 = 65 */
    for (int i = 0; i < 21; i++)
        strcat(s, HAN);
    strcat(s, "a@example.org");
    assert_true(email__address_spec_valid(s, strlen(s)));
    memmove(s + 1, s, strlen(s) + 1);
    assert_false(email__address_spec_valid(s, strlen(s)));
    /* a label of 21 characters (63 octets), not 22 (66) */
    strcpy(s, "a@");
    for (int i = 0; i < 21; i++)
        strcat(s, HAN);
    strcat(s, ".org");
    assert_true(email__address_spec_valid(s, strlen(s)));
    memmove(s + 2 + 3, s + 2, strlen(s + 2) + 1);
    memcpy(s + 2, HAN, 3);
    assert_false(email__address_spec_valid(s, strlen(s)));
    /* an accented letter is atext in an address, not in the ASCII table of email__address_atext */
    assert_true(email__address_spec_valid("\xc3\xa9@x", 4));
    assert_false(email__address_atext(0xc3));
#undef HAN
}

/* email__address_atext is RFC 5322's atext, exactly. */
static void test_atext(void **state)
{
    (void)state;
    const char *specials = "!#$%&'*+-/=?^_`{|}~";
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c && strchr(specials, c));
        if (email__address_atext((unsigned char)c) != want)
            fail_msg("email__address_atext(0x%02x) is %d", c, !want);
    }
}

/* ---- list_append, list_truncate ---- */

static void test_append_truncate(void **state)
{
    (void)state;
    address_list_t dst = parse_ok("A <a@x.org>, b@x.org", true);
    address_list_t src = parse_ok("\"C, c\" <c@x.org>, d@x.org", true);
    assert_int_equal(email__address_list_append(&dst, &src), 0);
    assert_int_equal(dst.n, 4);
    /* copies: src can go */
    email__address_list_free(&src);
    assert_null(src.v);
    assert_int_equal(src.n, 0);
    assert_address(&dst, 0, "A", "a@x.org");
    assert_address(&dst, 1, NULL, "b@x.org");
    assert_address(&dst, 2, "C, c", "c@x.org");
    assert_address(&dst, 3, NULL, "d@x.org");
    /* nothing to append: unchanged */
    address_list_t empty = {NULL, 0};
    assert_int_equal(email__address_list_append(&dst, &empty), 0);
    assert_int_equal(dst.n, 4);
    /* into an empty list */
    assert_int_equal(email__address_list_append(&empty, &dst), 0);
    assert_int_equal(empty.n, 4);
    assert_address(&empty, 2, "C, c", "c@x.org");
    assert_true(empty.v[2].addr != dst.v[2].addr);
    email__address_list_free(&empty);
    /* truncate keeps the first n; more than there are changes nothing */
    email__address_list_truncate(&dst, 9);
    assert_int_equal(dst.n, 4);
    email__address_list_truncate(&dst, 1);
    assert_int_equal(dst.n, 1);
    assert_address(&dst, 0, "A", "a@x.org");
    /* and the list grows again from there */
    address_list_t more = parse_ok("e@x.org", false);
    assert_int_equal(email__address_list_append(&dst, &more), 0);
    assert_int_equal(dst.n, 2);
    assert_address(&dst, 1, NULL, "e@x.org");
    email__address_list_free(&more);
    email__address_list_truncate(&dst, 0);
    assert_int_equal(dst.n, 0);
    email__address_list_free(&dst);
    assert_null(dst.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_quoted_names),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_why),
        cmocka_unit_test(test_address_spec_limits),
        cmocka_unit_test(test_address_literals),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_atext),
        cmocka_unit_test(test_append_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
