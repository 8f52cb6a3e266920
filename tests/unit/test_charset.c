/*
 * Unit tests of lib/charset.c: UTF-8 to ISO-8859-1 and ISO-2022-JP (the only direction the
 * library converts; each result is read back with iconv the other way), known answers, what a
 * charset cannot hold refused with its offset and the output untouched, invalid UTF-8 refused
 * likewise, and a converter reused for several texts. (The large-text and shift-code cases are
 * in test_encode.c's test_charset_conversions.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "charset.h"
#include "emailsession.h"
#include "util.h"

/* text (n octets, in charset, a complete text) read back into UTF-8: a new string. */
static char *to_utf8(const char *charset, const char *text, size_t n)
{
    iconv_t cd = iconv_open("UTF-8", charset);
    assert_true(cd != (iconv_t)-1);
    size_t cap = 4 * n + 16, left = n, room = cap - 1;
    char *buf = malloc(cap), *in = (char *)text, *dst = buf;
    assert_non_null(buf);
    assert_true(iconv(cd, &in, &left, &dst, &room) != (size_t)-1);
    assert_true(iconv(cd, NULL, NULL, &dst, &room) != (size_t)-1);
    assert_int_equal(left, 0);
    *dst = '\0';
    iconv_close(cd);
    return buf;
}

/* utf8 converted to charset is exactly want (wantlen octets), and reads back as utf8. */
static void assert_converts(const char *charset, const char *utf8, const char *want,
                            size_t wantlen)
{
    email_buf_t b;
    email__buf_init(&b);
    size_t bad = 12345;
    int rc = email__charset_from_utf8(charset, &b, utf8, strlen(utf8), &bad);
    if (rc)
        fail_msg("\"%s\" to %s: %d at %zu", utf8, charset, rc, bad);
    assert_int_equal(bad, 12345);
    assert_int_equal(email__charset_fits(charset, utf8, strlen(utf8), NULL), 0);
    assert_int_equal(b.len, wantlen);
    assert_memory_equal(b.data, want, wantlen);
    assert_int_equal(b.data[b.len], '\0');
    char *back = to_utf8(charset, b.data, b.len);
    assert_string_equal(back, utf8);
    free(back);
    email__buf_free(&b);
}

/* utf8 cannot be written in charset: EMAIL_ECHARSET at offset at, what out held kept. */
static void assert_refused(const char *charset, const char *utf8, size_t n, size_t at)
{
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__buf_puts(&b, "kept"), 0);
    size_t bad = 12345;
    assert_int_equal(email__charset_from_utf8(charset, &b, utf8, n, &bad), EMAIL_ECHARSET);
    assert_int_equal(bad, at);
    assert_string_equal(b.data, "kept");
    assert_int_equal(b.len, 4);
    bad = 12345;
    assert_int_equal(email__charset_fits(charset, utf8, n, &bad), EMAIL_ECHARSET);
    assert_int_equal(bad, at);
    assert_int_equal(email__charset_fits(charset, utf8, n, NULL), EMAIL_ECHARSET);
    email__buf_free(&b);
}

static void test_latin1_known_answers(void **state)
{
    (void)state;
    assert_converts("ISO-8859-1", "caf\xc3\xa9", "caf\xe9", 4);
    assert_converts("ISO-8859-1", "\xc2\xa0\xc2\xbf\xc3\x80\xc3\xbf", "\xa0\xbf\xc0\xff", 4);
    assert_converts("ISO-8859-1", "plain ASCII\r\n", "plain ASCII\r\n", 13);
    /* every character of the charset: U+0001..U+00FF, each the octet of its number */
    char utf8[400], want[256];
    size_t n = 0;
    for (unsigned c = 1; c < 256; c++) {
        want[c - 1] = (char)c;
        if (c < 0x80) {
            utf8[n++] = (char)c;
        } else {
            utf8[n++] = (char)(0xC0 | c >> 6);
            utf8[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    utf8[n] = '\0';
    assert_converts("ISO-8859-1", utf8, want, 255);
    /* the charset's names as iconv knows them, in any case */
    assert_converts("iso-8859-1", "\xc3\xa9", "\xe9", 1);
    assert_converts("latin1", "\xc3\xa9", "\xe9", 1);
}

static void test_iso2022jp_known_answers(void **state)
{
    (void)state;
    /* RFC 1468: JIS X 0208 after ESC $ B, back to ASCII with ESC ( B at the end */
    assert_converts("ISO-2022-JP", "\xe3\x81\x82", "\x1b$B$\"\x1b(B", 8);
    assert_converts("ISO-2022-JP", "\xe3\x81\x82\xe3\x81\x84 x",
                    "\x1b$B$\"$$\x1b(B x", 12);
    assert_converts("ISO-2022-JP", "\xef\xbf\xa5", "\x1b$B!o\x1b(B", 8);      /* fullwidth yen */
    assert_converts("ISO-2022-JP", "\xe3\x80\x9c", "\x1b$B!A\x1b(B", 8);      /* wave dash */
    /* JIS X 0201 Roman after ESC ( J: the yen sign and the overline */
    assert_converts("ISO-2022-JP", "\xc2\xa5", "\x1b(J\\\x1b(B", 7);
    assert_converts("ISO-2022-JP", "\xe2\x80\xbe", "\x1b(J~\x1b(B", 7);
    /* ASCII needs no escape at all, and "\\" and "~" stay ASCII */
    assert_converts("ISO-2022-JP", "\\~ plain", "\\~ plain", 8);
    assert_converts("iso-2022-jp", "\xe3\x81\x82", "\x1b$B$\"\x1b(B", 8);
}

/* A NUL in the text is one more character, and an empty text is empty. */
static void test_nul_and_empty(void **state)
{
    (void)state;
    static const char *const charsets[] = {"ISO-8859-1", "ISO-2022-JP", "UTF-8"};
    for (size_t i = 0; i < 3; i++) {
        email_buf_t b;
        email__buf_init(&b);
        assert_int_equal(email__charset_from_utf8(charsets[i], &b, "a\0b", 3, NULL), 0);
        assert_int_equal(b.len, 3);
        assert_memory_equal(b.data, "a\0b", 3);
        email__buf_reset(&b);
        assert_int_equal(email__charset_from_utf8(charsets[i], &b, "", 0, NULL), 0);
        assert_int_equal(b.len, 0);
        assert_int_equal(email__charset_fits(charsets[i], "", 0, NULL), 0);
        email__buf_free(&b);
    }
}

/* What a charset cannot hold is refused (never '?'), naming the first such character. */
static void test_refuses_what_the_charset_lacks(void **state)
{
    (void)state;
    static const struct {
        const char *charset, *text;
        size_t at;
    } v[] = {
        {"ISO-8859-1", "price: 5 \xe2\x82\xac", 9},               /* euro sign */
        {"ISO-8859-1", "caf\xc3\xa9 \xf0\x9f\x98\x80", 6},        /* emoji after é */
        {"ISO-8859-1", "\xe6\x97\xa5", 0},                        /* CJK */
        {"ISO-8859-1", "\xc5\x93uvre", 0},                        /* œ: Latin-9, not Latin-1 */
        {"ISO-2022-JP", "caf\xc3\xa9", 3},                        /* é */
        {"ISO-2022-JP", "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 7},
        {"ISO-2022-JP", "a\xef\xbd\xb1", 1},                      /* half-width katakana */
        {"ISO-2022-JP", "\xe2\x91\xa0", 0},                       /* circled 1: not JIS X 0208 */
        {"ISO-2022-JP", "\xef\xbd\x9e", 0},                       /* fullwidth tilde */
        {"ISO-2022-JP", "\xe2\x88\xa5", 0},                       /* parallel to */
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        assert_refused(v[i].charset, v[i].text, strlen(v[i].text), v[i].at);
}

/* Invalid UTF-8 (the caller's contract, broken) is refused the same way, never copied through
   into a charset it would corrupt. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t at;
    } v[] = {
        {"a\xff b", 1},          /* never in UTF-8 */
        {"ab\xc3", 2},           /* cut at the end */
        {"\xc3(", 0},            /* lead byte without its continuation */
        {"x\x80", 1},            /* continuation without a lead */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        assert_refused("ISO-8859-1", v[i].text, strlen(v[i].text), v[i].at);
        assert_refused("ISO-2022-JP", v[i].text, strlen(v[i].text), v[i].at);
    }
}

/* One converter for several texts: each a complete text on its own (ISO-2022-JP starting and
   ending in ASCII), also after a refusal in the middle of a shifted run. */
static void test_converter_reused(void **state)
{
    (void)state;
    charset_conv_t conv;
    assert_int_equal(email__charset_open(&conv, "ISO-2022-JP"), 0);
    assert_true(conv.stateful);
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__charset_convert(&conv, &b, "\xe3\x81\x82", 3, NULL), 0);
    assert_int_equal(email__charset_convert(&conv, &b, "x", 1, NULL), 0);
    size_t bad = 0;
    assert_int_equal(email__charset_convert(&conv, &b, "\xe3\x81\x82\xc3\xa9", 5, &bad),
                     EMAIL_ECHARSET);
    assert_int_equal(bad, 3);
    assert_int_equal(email__charset_convert(&conv, &b, "\xe3\x81\x84y", 4, NULL), 0);
    static const char want[] = "\x1b$B$\"\x1b(B" "x" "\x1b$B$$\x1b(By";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, sizeof want - 1);
    email__charset_close(&conv);
    /* closing twice is harmless */
    email__charset_close(&conv);
    email__buf_free(&b);
    /* ISO-8859-1 is not stateful, UTF-8 needs no converter and copies the octets */
    assert_int_equal(email__charset_open(&conv, "ISO-8859-1"), 0);
    assert_false(conv.stateful);
    email__charset_close(&conv);
    static const char *const utf8_names[] = {"UTF-8", "utf-8", "UTF8", "utf8"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(email__charset_open(&conv, utf8_names[i]), 0);
        assert_true(conv.cd == (iconv_t)-1);
        email__buf_init(&b);
        assert_int_equal(email__charset_convert(&conv, &b, "\xf0\x9f\x98\x80!", 5, NULL), 0);
        assert_string_equal(b.data, "\xf0\x9f\x98\x80!");
        email__buf_free(&b);
        email__charset_close(&conv);
    }
}

static void test_unknown_charset(void **state)
{
    (void)state;
    charset_conv_t conv;
    assert_int_equal(email__charset_open(&conv, "NO-SUCH-CHARSET"), EMAIL_ENOTSUP);
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__charset_from_utf8("X-UNKNOWN", &b, "a", 1, NULL), EMAIL_ENOTSUP);
    assert_int_equal(b.len, 0);
    assert_int_equal(email__charset_fits("X-UNKNOWN", "a", 1, NULL), EMAIL_ENOTSUP);
    email__buf_free(&b);
}

/* Reading ISO-2022-JP as Japanese mailers write it (CP50220/CP50221): NEC special characters
 * (row 13), NEC-selected IBM extensions (rows 89-92) inside ESC $ B, half-width katakana after
 * ESC ( I; plain ISO-2022-JP and broken text as before. */
static void test_iso2022jp_extensions_read(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
        int rc;
    } cases[] = {
        {"\x1b$B-!-j|b66\x1b(B \x1b(I6@\x1b(B!", "①㈱髙橋 ｶﾀ!", 0},
        {"\x1b$BF|K\\\x1b(B", "日本", 0},
        {"\x1b$B-!-\x1b(B", NULL, CHARSET_LOSSY}, /* a character cut in two */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        email_buf_t b;
        email__buf_init(&b);
        assert_int_equal(email__charset_to_utf8("iso-2022-jp", &b, cases[i].in,
                                                strlen(cases[i].in)), cases[i].rc);
        if (cases[i].want)
            assert_string_equal(b.data, cases[i].want);
        email__buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latin1_known_answers),
        cmocka_unit_test(test_iso2022jp_known_answers),
        cmocka_unit_test(test_nul_and_empty),
        cmocka_unit_test(test_refuses_what_the_charset_lacks),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_converter_reused),
        cmocka_unit_test(test_unknown_charset),
        cmocka_unit_test(test_iso2022jp_extensions_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
