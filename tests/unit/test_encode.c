/* Unit tests of lib/encode.c: base64, quoted-printable, RFC 2047, dot-stuffing, CRLF. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "charset.h"
#include "encode.h"

/* A small deterministic generator, so that a failure can be replayed. */
static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* ---- base64 ---- */

static const char *const rfc4648[][2] = {{"", ""},           {"f", "Zg=="},
                                         {"fo", "Zm8="},     {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};

static void test_base64_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rfc4648 / sizeof *rfc4648; i++) {
        email_buf_t b;
        email__buf_init(&b);
        assert_int_equal(email__base64_encode(&b, rfc4648[i][0], strlen(rfc4648[i][0])), 0);
        assert_string_equal(b.data, rfc4648[i][1]);
        email__buf_reset(&b);
        assert_int_equal(email__base64_decode(&b, rfc4648[i][1], strlen(rfc4648[i][1])), 0);
        assert_int_equal(b.len, strlen(rfc4648[i][0]));
        assert_memory_equal(b.data, rfc4648[i][0], b.len);
        email__buf_free(&b);
    }
}

static void test_base64_decode_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {"Zg=", "Zm9v!A==", "Zg==Zg==", "Z===", "Zm=v", "Zm9 v",
                                      "Zm9v\r\n", "====", "Zg", "=Zg="};
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__buf_puts(&b, "keep"), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(email__base64_decode(&b, bad[i], strlen(bad[i])), EMAIL_EINVAL);
        /* what out held before is untouched */
        assert_string_equal(b.data, "keep");
    }
    email__buf_free(&b);
}

static void test_base64_binary_round_trip(void **state)
{
    (void)state;
    unsigned char data[1000];
    for (size_t n = 0; n < sizeof data; n += 1 + n / 7) {
        for (size_t i = 0; i < n; i++)
            data[i] = (unsigned char)rng();
        email_buf_t e, d;
        email__buf_init(&e);
        email__buf_init(&d);
        assert_int_equal(email__base64_encode(&e, data, n), 0);
        assert_int_equal(email__base64_decode(&d, e.data, e.len), 0);
        assert_int_equal(d.len, n);
        assert_memory_equal(d.data ? d.data : "", data, n);
        email__buf_free(&e);
        email__buf_free(&d);
    }
}

static void test_base64_lines(void **state)
{
    (void)state;
    unsigned char data[400];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof data; n++) {
        email_buf_t b, joined, d;
        email__buf_init(&b);
        email__buf_init(&joined);
        email__buf_init(&d);
        assert_int_equal(email__base64_encode_lines(&b, data, n), 0);
        assert_int_equal(b.len, email__base64_lines_size(n));
        /* every line 76 characters but the last, every line ending with CRLF */
        size_t start = 0;
        for (size_t i = 0; i < b.len; i++) {
            if (b.data[i] != '\r')
                continue;
            assert_int_equal(b.data[i + 1], '\n');
            size_t len = i - start;
            assert_true(len == 76 || (i + 2 == b.len && len > 0 && len < 76));
            assert_int_equal(email__buf_append(&joined, b.data + start, len), 0);
            start = i + 2;
        }
        assert_int_equal(start, b.len);
        assert_int_equal(email__base64_decode(&d, joined.data ? joined.data : "", joined.len), 0);
        assert_int_equal(d.len, n);
        assert_memory_equal(d.data ? d.data : "", data, n);
        email__buf_free(&b);
        email__buf_free(&joined);
        email__buf_free(&d);
    }
    assert_int_equal(email__base64_lines_size(57), 78);
    assert_int_equal(email__base64_lines_size(58), 78 + 6);
    assert_int_equal(email__base64_lines_size(50ull * 1024 * 1024),
                     (50ull * 1024 * 1024 + 2) / 3 * 4 + (50ull * 1024 * 1024 + 56) / 57 * 2);
}

/* ---- quoted-printable ---- */

/* Decodes quoted-printable, hard breaks as CRLF; fails the test on malformed input. */
static void qp_decode(const char *s, size_t n, email_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '=') {
            assert_int_equal(email__buf_putc(out, s[i]), 0);
            continue;
        }
        assert_true(i + 2 < n || (i + 2 == n && s[i + 1] == '\r'));
        if (s[i + 1] == '\r') {
            assert_int_equal(s[i + 2], '\n');
            i += 2;
            continue;
        }
        unsigned v;
        char hex[3] = {s[i + 1], s[i + 2], 0};
        assert_int_equal(sscanf(hex, "%2X", &v), 1);
        assert_true(strchr("0123456789ABCDEF", hex[0]) && strchr("0123456789ABCDEF", hex[1]));
        assert_int_equal(email__buf_putc(out, (char)v), 0);
        i += 2;
    }
}

/* Checks the RFC 2045 rules on an encoding: lines <= 76, no trailing white space, 7bit only,
   no line starting with '.'. */
static void qp_check_lines(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '\r') {
            unsigned char c = (unsigned char)s[i];
            assert_true((c >= 33 && c <= 126) || c == ' ' || c == '\t');
            continue;
        }
        if (i < n)
            assert_int_equal(s[i + 1], '\n');
        size_t len = i - start;
        assert_true(len <= 76);
        if (len) {
            assert_false(s[i - 1] == ' ' || s[i - 1] == '\t');
            assert_false(s[start] == '.');
        }
        start = i + 2;
        i++;
    }
}

static void test_qp_vectors(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"Hello", "Hello"},
        /* RFC 2045 6.7 (5): the text of its soft line break example, short enough for one line */
        {"Now's the time for all folk to come to the aid of their country.",
         "Now's the time for all folk to come to the aid of their country."},
        /* RFC 2045 6.7 (1), (2): 8-bit octets and "=" as =XX in upper case hex */
        {"\xa9 2024 = \x80", "=A9 2024 =3D =80"},
        {"a=b", "a=3Db"},
        {"trailing space \r\nnext", "trailing space=20\r\nnext"},
        {"tab\t", "tab=09"},
        {"in the middle: a b\tc", "in the middle: a b\tc"},
        {".dot\r\n.x\n..", "=2Edot\r\n=2Ex\r\n=2E."},
        {"caf\xc3\xa9", "caf=C3=A9"},
        {"bare\nlf\rcr\r\n", "bare\r\nlf\r\ncr\r\n"},
        {"\x01\x7f", "=01=7F"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        email_buf_t b;
        email__buf_init(&b);
        assert_int_equal(email__qp_encode(&b, v[i][0], strlen(v[i][0])), 0);
        assert_string_equal(b.data ? b.data : "", v[i][1]);
        email__buf_free(&b);
    }
    /* 200 letters: soft breaks after 75 characters */
    char a[201];
    memset(a, 'a', 200);
    a[200] = 0;
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__qp_encode(&b, a, 200), 0);
    assert_int_equal(b.len, 200 + 2 * 3);
    assert_memory_equal(b.data + 75, "=\r\n", 3);
    qp_check_lines(b.data, b.len);
    email__buf_free(&b);
}

/* What a line-break normalisation should give: every CR, LF and CRLF as CRLF. */
static void normalize_ref(const char *s, size_t n, email_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            assert_int_equal(email__buf_append(out, "\r\n", 2), 0);
        } else {
            assert_int_equal(email__buf_putc(out, s[i]), 0);
        }
    }
}

static void test_qp_random_round_trip(void **state)
{
    (void)state;
    static const char alphabet[] = "ab .=\t\r\n\xc3\xa9\x80\xff-";
    for (int round = 0; round < 2000; round++) {
        char s[300];
        size_t n = rng() % sizeof s;
        for (size_t i = 0; i < n; i++)
            s[i] = alphabet[rng() % (sizeof alphabet - 1)];
        email_buf_t e, d, want;
        email__buf_init(&e);
        email__buf_init(&d);
        email__buf_init(&want);
        assert_int_equal(email__qp_encode(&e, s, n), 0);
        qp_check_lines(e.data ? e.data : "", e.len);
        qp_decode(e.data ? e.data : "", e.len, &d);
        normalize_ref(s, n, &want);
        assert_int_equal(d.len, want.len);
        assert_memory_equal(d.data ? d.data : "", want.data ? want.data : "", d.len);
        email__buf_free(&e);
        email__buf_free(&d);
        email__buf_free(&want);
    }
}

/* ---- RFC 2047 ---- */

static int hexval(char c)
{
    return c <= '9' ? c - '0' : c - 'A' + 10;
}

/* iconv from charset to UTF-8 of one whole text (a fresh state); false when it does not decode. */
static bool to_utf8(const char *charset, const char *s, size_t n, email_buf_t *out)
{
    iconv_t cd = iconv_open("UTF-8", charset);
    assert_true(cd != (iconv_t)-1);
    size_t cap = 4 * n + 16;
    char *buf = malloc(cap), *in = (char *)s, *dst = buf;
    assert_non_null(buf);
    size_t left = n, room = cap;
    bool ok = iconv(cd, &in, &left, &dst, &room) != (size_t)-1 &&
              iconv(cd, NULL, NULL, &dst, &room) != (size_t)-1 && left == 0;
    iconv_close(cd);
    if (ok)
        assert_int_equal(email__buf_append(out, buf, (size_t)(dst - buf)), 0);
    free(buf);
    return ok;
}

/*
 * Decodes a folded run of encoded words (as produced by the encoder) and checks the rules on
 * the way: words of at most 75 characters, lines of at most 78 (the first starting at col),
 * the charset given, each word decoding on its own to whole characters (for ISO-2022-JP: every
 * word starts in ASCII, and when it leaves ASCII it comes back with ESC ( B before its end).
 */
static void rfc2047_decode(const char *s, size_t col, const char *charset, email_buf_t *out)
{
    size_t line = col, cslen = strlen(charset);
    while (*s) {
        if (s[0] == '\r') {
            assert_memory_equal(s, "\r\n ", 3);
            assert_true(line <= 78);
            s += 3;
            line = 1;
            continue;
        }
        assert_memory_equal(s, "=?", 2);
        assert_memory_equal(s + 2, charset, cslen);
        assert_int_equal(s[2 + cslen], '?');
        char enc = s[3 + cslen];
        assert_int_equal(s[4 + cslen], '?');
        const char *p = s + 5 + cslen;
        const char *end = strstr(p, "?=");
        assert_non_null(end);
        size_t wlen = (size_t)(end + 2 - s);
        assert_true(wlen <= 75);
        line += wlen;
        email_buf_t word;
        email__buf_init(&word);
        if (enc == 'B') {
            assert_int_equal(email__base64_decode(&word, p, (size_t)(end - p)), 0);
        } else {
            assert_int_equal(enc, 'Q');
            for (; p < end; p++) {
                if (*p == '_') {
                    assert_int_equal(email__buf_putc(&word, ' '), 0);
                } else if (*p == '=') {
                    char c = (char)(hexval(p[1]) << 4 | hexval(p[2]));
                    assert_int_equal(email__buf_putc(&word, c), 0);
                    p += 2;
                } else {
                    /* only the characters allowed in every header context */
                    assert_true(strchr("!*+-/", *p) || (*p >= '0' && *p <= '9') ||
                                (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'));
                    assert_int_equal(email__buf_putc(&word, *p), 0);
                }
            }
        }
        assert_true(word.len > 0);
        if (!strcmp(charset, "ISO-2022-JP")) {
            /* the last escape sequence, if any, returns to ASCII */
            const char *esc = NULL;
            for (size_t i = 0; i < word.len; i++)
                esc = word.data[i] == 0x1b ? word.data + i : esc;
            if (esc)
                assert_memory_equal(esc, "\x1b(B", 3);
        }
        size_t before = out->len;
        if (!to_utf8(charset, word.data, word.len, out))
            fail_msg("a %s word does not decode on its own", charset);
        assert_true(out->len > before);
        email__buf_free(&word);
        s = end + 2;
    }
    assert_true(line <= 78);
}

/* Encodes text at every starting column in both encodings and decodes it back. */
static void rfc2047_round_trip(const char *text, const char *charset)
{
    for (int e = 0; e < 2; e++) {
        for (size_t col = 0; col < 80; col += 7) {
            email_buf_t b, d;
            email__buf_init(&b);
            email__buf_init(&d);
            size_t end_col = col;
            int rc = email__rfc2047_encode(&b, &end_col, text, strlen(text), charset,
                                          e ? 'B' : 'Q');
            if (rc)
                fail_msg("%s, col %zu: %d for \"%s\"", charset, col, rc, text);
            rfc2047_decode(b.data, col, charset, &d);
            assert_string_equal(d.data, text);
            /* *col is where the last line ends */
            const char *last = strrchr(b.data, '\n');
            assert_int_equal(end_col, last ? strlen(last + 1) : col + b.len);
            email__buf_free(&b);
            email__buf_free(&d);
        }
    }
}

#define JA_SAMPLE                                                                                \
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"     \
    "\xe3\x83\x88\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"

static void test_rfc2047_round_trip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "caf\xc3\xa9",
        "a_b=c?d e",
        JA_SAMPLE,
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x81\xf0\x9f\x98\x82\xf0\x9f\x98\x83\xf0\x9f\x98\x84"
        "\xf0\x9f\x98\x85\xf0\x9f\x98\x86\xf0\x9f\x98\x87\xf0\x9f\x98\x88\xf0\x9f\x98\x89",
        "R\xc3\xa9sum\xc3\xa9 of a long subject line that needs several encoded words to hold "
        "every one of its characters, \xc3\xa0 la fa\xc3\xa7on fran\xc3\xa7" "aise",
    };
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++)
        rfc2047_round_trip(texts[t], "UTF-8");
    rfc2047_round_trip(texts[0], "ISO-8859-1");
    rfc2047_round_trip(texts[1], "ISO-8859-1");
    rfc2047_round_trip(texts[4], "ISO-8859-1");
    rfc2047_round_trip(texts[1], "ISO-2022-JP");
    rfc2047_round_trip(texts[2], "ISO-2022-JP");
    rfc2047_round_trip("ASCII and \xe6\x97\xa5\xe6\x9c\xac mixed, " JA_SAMPLE " then ASCII "
                       "again, \xe3\x82\xab\xe3\x82\xbf\xe3\x82\xab\xe3\x83\x8a and "
                       "\xef\xbc\xa1\xef\xbc\xa2 full-width",
                       "ISO-2022-JP");
}

/* Random texts from each charset's repertoire, at random columns. */
static void test_rfc2047_random_round_trip(void **state)
{
    (void)state;
    static const char *const latin[] = {"a", " ", "=", "?", "_", "\xc3\xa9", "\xc3\xbf",
                                        "\xc2\xa0", "\xc3\x80", "Z", "\t", "\xc2\xbf"};
    static const char *const japanese[] = {"a", " ", "?", "=", "\xe6\x97\xa5",
                                           "\xe3\x81\x82", "\xe3\x83\xb3", "\xe3\x80\x82",
                                           "\xef\xbc\x91", "_", "\xe9\xbe\x8d"};
    static const char *const any[] = {"a", " ", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
                                      "\xd0\x96", "=", "\xe2\x82\xac"};
    struct {
        const char *charset;
        const char *const *pool;
        size_t n;
    } sets[] = {{"ISO-8859-1", latin, sizeof latin / sizeof *latin},
                {"ISO-2022-JP", japanese, sizeof japanese / sizeof *japanese},
                {"UTF-8", any, sizeof any / sizeof *any}};
    for (int round = 0; round < 300; round++) {
        for (size_t k = 0; k < 3; k++) {
            char text[400] = "";
            size_t len = 1 + rng() % 60;
            for (size_t i = 0; i < len; i++)
                strcat(text, sets[k].pool[rng() % sets[k].n]);
            email_buf_t b, d;
            email__buf_init(&b);
            email__buf_init(&d);
            size_t col = rng() % 78, end_col = col;
            char enc = rng() % 2 ? 'B' : 'Q';
            assert_int_equal(
                email__rfc2047_encode(&b, &end_col, text, strlen(text), sets[k].charset, enc), 0);
            rfc2047_decode(b.data, col, sets[k].charset, &d);
            assert_string_equal(d.data, text);
            email__buf_free(&b);
            email__buf_free(&d);
        }
    }
}

/* The examples of RFC 2047 section 8 (and RFC 1468's charset), written by the encoder. */
static void test_rfc2047_vectors(void **state)
{
    (void)state;
    static const char *const v[][4] = {
        {"Keith Moore", "US-ASCII", "Q", "=?US-ASCII?Q?Keith_Moore?="},
        {"Keld J\xc3\xb8rn Simonsen", "ISO-8859-1", "Q", "=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="},
        {"Andr\xc3\xa9", "ISO-8859-1", "Q", "=?ISO-8859-1?Q?Andr=E9?="},
        {"Olle J\xc3\xa4rnefors", "ISO-8859-1", "Q", "=?ISO-8859-1?Q?Olle_J=E4rnefors?="},
        {"Patrik F\xc3\xa4ltstr\xc3\xb6m", "ISO-8859-1", "Q",
         "=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?="},
        {"If you can read this yo", "ISO-8859-1", "B",
         "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?="},
        {"u understand the example.", "ISO-8859-2", "B",
         "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="},
        {"a", "ISO-8859-1", "Q", "=?ISO-8859-1?Q?a?="},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "ISO-2022-JP", "B",
         "=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?="},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "UTF-8", "B", "=?UTF-8?B?5pel5pys6Kqe?="},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        email_buf_t b;
        email__buf_init(&b);
        size_t col = 0;
        assert_int_equal(
            email__rfc2047_encode(&b, &col, v[i][0], strlen(v[i][0]), v[i][1], v[i][2][0]), 0);
        assert_string_equal(b.data, v[i][3]);
        assert_int_equal(col, strlen(v[i][3]));
        email__buf_free(&b);
    }
}

/* A character the charset lacks fails the whole call, leaving out as it was: never a '?'. */
static void test_rfc2047_refuses_missing_characters(void **state)
{
    (void)state;
    static const char *const v[][2] = {
        {"smile \xf0\x9f\x98\x80", "ISO-8859-1"},
        {"\xe6\x97\xa5\xe6\x9c\xac", "ISO-8859-1"},
        {"caf\xc3\xa9", "ISO-2022-JP"},
        {"\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "ISO-2022-JP"},
        {"\xe2\x82\xac", "ISO-8859-1"},
        {"\xef\xbd\xb1", "ISO-2022-JP"}, /* half-width katakana: not in ISO-2022-JP */
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        for (int e = 0; e < 2; e++) {
            email_buf_t b;
            email__buf_init(&b);
            assert_int_equal(email__buf_puts(&b, "Subject: "), 0);
            size_t col = 9;
            assert_int_equal(
                email__rfc2047_encode(&b, &col, v[i][0], strlen(v[i][0]), v[i][1], e ? 'B' : 'Q'),
                EMAIL_ECHARSET);
            assert_string_equal(b.data, "Subject: ");
            assert_int_equal(col, 9);
            email__buf_free(&b);
        }
    }
    email_buf_t b;
    email__buf_init(&b);
    size_t col = 0;
    assert_int_equal(email__rfc2047_encode(&b, &col, "x", 1, "NO-SUCH-CHARSET", 'Q'),
                     EMAIL_ENOTSUP);
    email__buf_free(&b);
}

/* ---- charset.c ---- */

static void test_charset_conversions(void **state)
{
    (void)state;
    static const struct {
        const char *charset, *in, *out;
        size_t outlen;
    } v[] = {
        {"ISO-8859-1", "caf\xc3\xa9 \xc3\xbf\xc2\xa0", "caf\xe9 \xff\xa0", 7},
        {"ISO-2022-JP", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\x1b$BF|K\\8l\x1b(B", 12},
        {"ISO-2022-JP", "a\xe6\x97\xa5" "b", "a\x1b$BF|\x1b(Bb", 10},
        {"ISO-2022-JP", "ascii only\r\n", "ascii only\r\n", 12},
        /* a line break is always in ASCII: the shift back comes before it */
        {"ISO-2022-JP", "\xe6\x97\xa5\r\n\xe6\x97\xa5", "\x1b$BF|\x1b(B\r\n\x1b$BF|\x1b(B", 18},
        {"UTF-8", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 4},
        {"ISO-8859-1", "", "", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        email_buf_t b;
        email__buf_init(&b);
        assert_int_equal(email__charset_from_utf8(v[i].charset, &b, v[i].in, strlen(v[i].in), NULL),
                         0);
        assert_int_equal(email__charset_fits(v[i].charset, v[i].in, strlen(v[i].in), NULL), 0);
        assert_int_equal(b.len, v[i].outlen);
        assert_memory_equal(b.data ? b.data : "", v[i].out, v[i].outlen);
        email__buf_free(&b);
    }
    /* shift codes of the caller's own would switch the reader's character set (found by
     * fuzzing): refused in ISO-2022-JP, offset named, like any character it cannot hold */
    static const char *const shifts[] = {"ab\x1b", "\x1b$B$\"", ("a\x0e" "b"), "\x0f"};
    for (size_t i = 0; i < sizeof shifts / sizeof *shifts; i++) {
        email_buf_t o;
        email__buf_init(&o);
        size_t bad = 99;
        assert_int_equal(email__charset_fits("ISO-2022-JP", shifts[i], strlen(shifts[i]), &bad),
                         EMAIL_ECHARSET);
        assert_int_equal(bad, strcspn(shifts[i], "\x1b\x0e\x0f"));
        assert_int_equal(
            email__charset_from_utf8("ISO-2022-JP", &o, shifts[i], strlen(shifts[i]), NULL),
            EMAIL_ECHARSET);
        assert_int_equal(o.len, 0);
        email__buf_free(&o);
    }
    /* the first character without an equivalent is named by its offset; out is unchanged */
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__buf_puts(&b, "keep"), 0);
    size_t bad = 0;
    assert_int_equal(
        email__charset_from_utf8("ISO-8859-1", &b, "a\xc3\xa9\xf0\x9f\x98\x80z", 8, &bad),
        EMAIL_ECHARSET);
    assert_int_equal(bad, 3);
    assert_string_equal(b.data, "keep");
    assert_int_equal(email__charset_from_utf8("ISO-2022-JP", &b, "\xe6\x97\xa5\xc3\xa9", 5, &bad),
                     EMAIL_ECHARSET);
    assert_int_equal(bad, 3);
    assert_string_equal(b.data, "keep");
    assert_int_equal(email__charset_from_utf8("NO-SUCH-CHARSET", &b, "a", 1, NULL), EMAIL_ENOTSUP);
    /* email__charset_fits says the same without writing anything */
    bad = 0;
    assert_int_equal(email__charset_fits("ISO-8859-1", "a\xc3\xa9\xf0\x9f\x98\x80z", 8, &bad),
                     EMAIL_ECHARSET);
    assert_int_equal(bad, 3);
    bad = 0;
    assert_int_equal(email__charset_fits("ISO-2022-JP", "\xe6\x97\xa5\xc3\xa9", 5, &bad),
                     EMAIL_ECHARSET);
    assert_int_equal(bad, 3);
    bad = 0;
    assert_int_equal(email__charset_fits("ISO-2022-JP", "a\xef\xbd\xb1", 4, &bad), EMAIL_ECHARSET);
    assert_int_equal(bad, 1);
    assert_int_equal(email__charset_fits("UTF-8", "\xf0\x9f\x98\x80", 4, NULL), 0);
    assert_int_equal(email__charset_fits("NO-SUCH-CHARSET", "a", 1, NULL), EMAIL_ENOTSUP);
    /* a large text grows the buffer as it goes (ISO-2022-JP output can be longer than input) */
    email_buf_t big, round;
    email__buf_init(&big);
    email__buf_init(&round);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(email__buf_puts(&big, i % 2 ? "\xe6\x97\xa5" : "a"), 0);
    email__buf_reset(&b);
    assert_int_equal(email__charset_from_utf8("ISO-2022-JP", &b, big.data, big.len, NULL), 0);
    assert_int_equal(b.len, 10000 * 1 + 10000 * 8);
    /* far more than email__charset_fits's buffer holds at once, and a character it lacks at the end
     */
    assert_int_equal(email__charset_fits("ISO-2022-JP", big.data, big.len, NULL), 0);
    size_t big_len = big.len;
    assert_int_equal(email__buf_puts(&big, "\xf0\x9f\x98\x80"), 0);
    assert_int_equal(email__charset_fits("ISO-2022-JP", big.data, big.len, &bad), EMAIL_ECHARSET);
    assert_int_equal(bad, big_len);
    big.len = big_len;
    big.data[big_len] = '\0';
    assert_true(to_utf8("ISO-2022-JP", b.data, b.len, &round));
    assert_int_equal(round.len, big.len);
    assert_memory_equal(round.data, big.data, big.len);
    email__buf_free(&b);
    email__buf_free(&big);
    email__buf_free(&round);
}

static void test_rfc2047_folding(void **state)
{
    (void)state;
    email_buf_t b;
    email__buf_init(&b);
    size_t col = 9; /* after "Subject: " */
    /* 40 x "é": each 6 characters in Q, so 10 of them fill one word of 72 */
    char text[81];
    for (int i = 0; i < 40; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2);
    text[80] = 0;
    assert_int_equal(email__rfc2047_encode(&b, &col, text, 80, "UTF-8", 'Q'), 0);
#define E9 "=C3=A9=C3=A9=C3=A9"
    assert_string_equal(b.data, "=?UTF-8?Q?" E9 E9 E9 "?=\r\n"
                                " =?UTF-8?Q?" E9 E9 E9 "=C3=A9?=\r\n"
                                " =?UTF-8?Q?" E9 E9 E9 "=C3=A9?=\r\n"
                                " =?UTF-8?Q?" E9 E9 E9 "=C3=A9?=\r\n"
                                " =?UTF-8?Q?=C3=A9?=");
#undef E9
    assert_int_equal(col, 19);
    /* no room at all at column 77: the first word goes on the next line */
    email__buf_reset(&b);
    col = 77;
    assert_int_equal(email__rfc2047_encode(&b, &col, "\xc3\xa9", 2, "UTF-8", 'B'), 0);
    assert_string_equal(b.data, "\r\n =?UTF-8?B?w6k=?=");
    email__buf_free(&b);
}

/* ---- dot-stuffing and CRLF ---- */

typedef struct {
    const char *in, *stuffed, *crlf;
} stream_case_t;

static const stream_case_t stream_cases[] = {
    {"", ".\r\n", ""},
    {".\r\n", "..\r\n.\r\n", ".\r\n"},
    {"\n.\n", "\r\n..\r\n.\r\n", "\r\n.\r\n"},
    {"a\r", "a\r\n.\r\n", "a\r\n"},
    {"\r\n.\r\n", "\r\n..\r\n.\r\n", "\r\n.\r\n"},
    {"a", "a\r\n.\r\n", "a"},
    {"a\r\nb", "a\r\nb\r\n.\r\n", "a\r\nb"},
    {"\r\r\n", "\r\n\r\n.\r\n", "\r\n\r\n"},
    {"\n\r", "\r\n\r\n.\r\n", "\r\n\r\n"},
    {"..x", "...x\r\n.\r\n", "..x"},
    {"a.\r\n.b", "a.\r\n..b\r\n.\r\n", "a.\r\n.b"},
    {"\r.\r", "\r\n..\r\n.\r\n", "\r\n.\r\n"},
    {".", "..\r\n.\r\n", "."},
    {"x\r\n.", "x\r\n..\r\n.\r\n", "x\r\n."},
};

/* Feeds in[0..n) cut at the given points (ascending, within 0..n) into both streams. */
static void run_split(const stream_case_t *c, const size_t *cuts, size_t ncuts)
{
    size_t n = strlen(c->in);
    email_dotstuff_t d;
    email_crlf_t cr;
    email_buf_t bd, bc;
    email__dotstuff_init(&d);
    email__crlf_init(&cr);
    email__buf_init(&bd);
    email__buf_init(&bc);
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        assert_int_equal(email__dotstuff_feed(&d, &bd, c->in + from, to - from), 0);
        assert_int_equal(email__crlf_feed(&cr, &bc, c->in + from, to - from), 0);
        from = to;
    }
    assert_int_equal(email__dotstuff_finish(&d, &bd), 0);
    assert_int_equal(email__crlf_finish(&cr, &bc), 0);
    assert_string_equal(bd.data, c->stuffed);
    assert_string_equal(bc.data ? bc.data : "", c->crlf);
    email__buf_free(&bd);
    email__buf_free(&bc);
}

static void test_dotstuff_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof stream_cases / sizeof *stream_cases; i++) {
        const stream_case_t *c = &stream_cases[i];
        size_t n = strlen(c->in);
        run_split(c, NULL, 0);
        /* every way to cut it in two and in three */
        for (size_t a = 0; a <= n; a++) {
            run_split(c, (size_t[]){a}, 1);
            for (size_t b = a; b <= n; b++)
                run_split(c, (size_t[]){a, b}, 2);
        }
        /* one byte at a time */
        size_t cuts[16];
        for (size_t k = 0; k < n; k++)
            cuts[k] = k + 1;
        run_split(c, cuts, n ? n - 1 : 0);
    }
}

static void test_dotstuff_reusable_after_finish(void **state)
{
    (void)state;
    email_dotstuff_t d;
    email_buf_t b;
    email__dotstuff_init(&d);
    email__buf_init(&b);
    assert_int_equal(email__dotstuff_feed(&d, &b, "a", 1), 0);
    assert_int_equal(email__dotstuff_finish(&d, &b), 0);
    assert_int_equal(email__dotstuff_feed(&d, &b, ".b\r", 3), 0);
    assert_int_equal(email__dotstuff_finish(&d, &b), 0);
    assert_string_equal(b.data, "a\r\n.\r\n..b\r\n.\r\n");
    email__buf_free(&b);
}

/* Undoes the dot-stuffing of a complete DATA stream, checking it on the way: CRLF only, the only
   line that is a lone "." is the last one. */
static void undotstuff(const char *s, size_t n, email_buf_t *out)
{
    assert_true(n >= 3);
    assert_memory_equal(s + n - 3, ".\r\n", 3);
    assert_true(n == 3 || (n >= 5 && !memcmp(s + n - 5, "\r\n", 2)));
    size_t body = n - 3;
    size_t start = 0;
    for (size_t i = 0; i < body; i++) {
        if (s[i] == '\n')
            assert_true(i > 0 && s[i - 1] == '\r');
        if (s[i] == '\r')
            assert_true(i + 1 < body && s[i + 1] == '\n');
        bool line_start = i == start;
        if (s[i] == '\n')
            start = i + 1;
        if (line_start && s[i] == '.') {
            /* a stuffed dot: the next byte is the dot of the text */
            assert_true(i + 1 < body && s[i + 1] == '.');
            continue;
        }
        assert_int_equal(email__buf_putc(out, s[i]), 0);
    }
}

static void test_dotstuff_random_round_trip(void **state)
{
    (void)state;
    static const char alphabet[] = ".\r\na ";
    for (int round = 0; round < 5000; round++) {
        char s[64];
        size_t n = rng() % sizeof s;
        for (size_t i = 0; i < n; i++)
            s[i] = alphabet[rng() % (sizeof alphabet - 1)];
        email_dotstuff_t d;
        email_buf_t out, got, want;
        email__dotstuff_init(&d);
        email__buf_init(&out);
        email__buf_init(&got);
        email__buf_init(&want);
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rng() % 5;
            if (k > n - i)
                k = n - i;
            assert_int_equal(email__dotstuff_feed(&d, &out, s + i, k), 0);
            i += k;
        }
        assert_int_equal(email__dotstuff_finish(&d, &out), 0);
        undotstuff(out.data, out.len, &got);
        normalize_ref(s, n, &want);
        /* the terminator's CRLF belongs to the text when the text has no final line break */
        if (want.len && want.data[want.len - 1] != '\n')
            assert_int_equal(email__buf_append(&want, "\r\n", 2), 0);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data ? got.data : "", want.data ? want.data : "", got.len);
        email__buf_free(&out);
        email__buf_free(&got);
        email__buf_free(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_decode_refuses),
        cmocka_unit_test(test_base64_binary_round_trip),
        cmocka_unit_test(test_base64_lines),
        cmocka_unit_test(test_qp_vectors),
        cmocka_unit_test(test_qp_random_round_trip),
        cmocka_unit_test(test_rfc2047_round_trip),
        cmocka_unit_test(test_rfc2047_random_round_trip),
        cmocka_unit_test(test_rfc2047_vectors),
        cmocka_unit_test(test_rfc2047_refuses_missing_characters),
        cmocka_unit_test(test_rfc2047_folding),
        cmocka_unit_test(test_charset_conversions),
        cmocka_unit_test(test_dotstuff_every_split),
        cmocka_unit_test(test_dotstuff_reusable_after_finish),
        cmocka_unit_test(test_dotstuff_random_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
