/*
 * Unit tests of the MIME parser (lib/mime_parse*.c) and the getters (lib/message_read.c): the
 * fixture corpus in tests/fixtures/mime (written by its make.py) checked field by field, the
 * same results whatever pieces the bytes come in, the composer's own output for every structure
 * and charset mode read back to the same fields (and composed again from what was read), a 30 MB
 * attachment generated here, parts over the spill threshold (a temporary file, mapped) read
 * back byte-exact with no descriptor or file left, the caps, and the getters on built messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "emailsession.h"
#include "mime_parse.h"
#include "mime_parse_internal.h"
#include "spill.h"
#include "util.h"

static char *slurp(const char *name, size_t *n)
{
    const char *dir = getenv("EMAIL_TEST_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/mime/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static email_message_t *parse(const char *mime, size_t n)
{
    email_message_t *m = NULL;
    assert_int_equal(email_message_from_mime(mime, n, &m), 0);
    assert_non_null(m);
    assert_false(email_error_occurred());
    return m;
}

static email_message_t *parse_file(const char *name)
{
    size_t n;
    char *buf = slurp(name, &n);
    email_message_t *m = parse(buf, n);
    assert_int_equal(email_message_get_size(m), n);
    free(buf);
    return m;
}

static void assert_part(const email_message_t *m, size_t i, const char *name, const char *type,
                        const void *data, size_t len)
{
    const char *n, *t;
    const void *d;
    size_t l;
    assert_int_equal(email_message_get_attachment(m, i, &n, &t, &d, &l), 0);
    if (name)
        assert_string_equal(n, name);
    else
        assert_null(n);
    assert_string_equal(t, type);
    assert_int_equal(l, len);
    assert_memory_equal(d, data, len);
}

static void test_gb2312_split(void **state)
{
    (void)state;
    email_message_t *m = parse_file("gb2312-split.eml");
    assert_string_equal(email_message_get_subject(m), "中文邮件测试");
    assert_string_equal(email_message_get_from(m), "张三 <zhang@example.cn>");
    assert_int_equal(email_message_get_recipient_count(m, EMAIL_RECIPIENT_TO), 1);
    assert_string_equal(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 0), "li@example.com");
    assert_string_equal(email_message_get_text_body(m), "你好，世界\r\n");
    assert_null(email_message_get_html_body(m));
    assert_int_equal(email_message_get_date(m), 1741053600);
    assert_string_equal(email_message_get_message_id(m), "<20250304100000.1@example.cn>");
    assert_string_equal(email_message_get_header(m, "received"),
                        "from mx.example.cn by mail.example.com; Tue, 4 Mar 2025 10:00:00 +0800");
    assert_int_equal(email_message_get_attachment_count(m), 0);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    assert_null(email_message_get_uid(m));
    email_message_free(m);
}

static void test_iso2022jp_split(void **state)
{
    (void)state;
    email_message_t *m = parse_file("iso2022jp-split.eml");
    assert_string_equal(email_message_get_subject(m), "日本語の件名です");
    assert_string_equal(email_message_get_from(m), "山田 <yamada@example.jp>");
    /* half-width katakana: ISO-2022-JP-3 reads what ISO-2022-JP-2 cannot */
    assert_string_equal(email_message_get_text_body(m), "こんにちは ｱ\r\n");
    /* "04 Mar 25 19:00 JST": two-digit year, no seconds, a zone RFC 5322 does not know (UTC) */
    assert_int_equal(email_message_get_date(m), 1741114800);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    email_message_free(m);
}

static void test_utf8_split(void **state)
{
    (void)state;
    email_message_t *m = parse_file("utf8-split.eml");
    assert_string_equal(email_message_get_subject(m), "Grüße – €100");
    assert_string_equal(email_message_get_from(m), "\"Müller, Jörg\" <joerg@example.de>");
    assert_int_equal(email_message_get_recipient_count(m, EMAIL_RECIPIENT_TO), 2);
    assert_string_equal(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 0),
                        "René <rene@example.fr>");
    assert_string_equal(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 1),
                        "plain@example.org");
    assert_int_equal(email_message_get_recipient_count(m, EMAIL_RECIPIENT_CC), 0);
    assert_null(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 2));
    assert_null(email_message_get_text_body(m));
    assert_string_equal(email_message_get_html_body(m), "<p>Grüße</p>\r\n");
    assert_int_equal(email_message_get_date(m), 1741007730);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    email_message_free(m);
}

static void test_rfc2231(void **state)
{
    (void)state;
    email_message_t *m = parse_file("rfc2231.eml");
    assert_string_equal(email_message_get_text_body(m), "see attached");
    assert_int_equal(email_message_get_attachment_count(m), 3);
    assert_part(m, 0, "日本語.pdf", "application/pdf", "%PDF-1.4\n", 9);
    assert_part(m, 1, "résumé.txt", "text/plain", "plain text", 10);
    assert_part(m, 2, "фото.png", "image/png", "\x89PNG\r\n\x1a\n", 8);
    const char *cid = "x";
    int disposition = -1;
    assert_int_equal(email_message_get_attachment_info(m, 2, &cid, &disposition), 0);
    assert_null(cid);
    assert_int_equal(disposition, EMAIL_DISPOSITION_ATTACHMENT);
    assert_int_equal(email_message_get_attachment(m, 3, NULL, NULL, NULL, NULL), EMAIL_EINVAL);
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    email_message_free(m);
}

static void test_malformed(void **state)
{
    (void)state;
    email_message_t *m = parse_file("malformed.eml");
    assert_string_equal(email_message_get_text_body(m), "a=ZZb\r\n--XYZnot a boundary");
    assert_string_equal(email_message_get_html_body(m), "<b>no end</b>\r\n");
    assert_int_equal(email_message_get_attachment_count(m), 1);
    assert_part(m, 0, "x.bin", "application/octet-stream", "\1\2\3\4", 4);
    assert_int_equal(email_message_get_parse_problems(m),
                     EMAIL_PARSE_ENCODING | EMAIL_PARSE_MULTIPART);
    email_message_free(m);
}

static void test_8bit_headers(void **state)
{
    (void)state;
    email_message_t *m = parse_file("8bit-headers.eml");
    assert_string_equal(email_message_get_subject(m), "Ünïcödé raw");
    /* Latin-1 octets in a header, read in the charset the message's body names */
    assert_string_equal(email_message_get_from(m), "José <jose@example.es>");
    assert_string_equal(email_message_get_text_body(m), "café");
    /* 8-bit text without a charset that is not UTF-8: windows-1252 */
    assert_string_equal(email_message_get_html_body(m), "<p>“quoted”</p>");
    assert_int_equal(email_message_get_parse_problems(m), EMAIL_PARSE_8BIT_HEADER);
    email_message_free(m);
}

static void test_nested(void **state)
{
    (void)state;
    email_message_t *m = parse_file("nested.eml");
    assert_string_equal(email_message_get_text_body(m), "hello");
    assert_string_equal(email_message_get_html_body(m), "<img src=\"cid:logo@x\">");
    assert_int_equal(email_message_get_attachment_count(m), 2);
    assert_part(m, 0, NULL, "image/gif", "GIF89a", 6);
    const char *cid;
    int disposition;
    assert_int_equal(email_message_get_attachment_info(m, 0, &cid, &disposition), 0);
    assert_string_equal(cid, "logo@x");
    assert_int_equal(disposition, EMAIL_DISPOSITION_INLINE);
    const char *type;
    const void *data;
    size_t len;
    assert_int_equal(email_message_get_attachment(m, 1, NULL, &type, &data, &len), 0);
    assert_string_equal(type, "message/rfc822");
    email_message_t *inner = parse(data, len);
    assert_string_equal(email_message_get_subject(inner), "inner one");
    assert_string_equal(email_message_get_text_body(inner), "inner body");
    assert_string_equal(email_message_get_header(m, "In-Reply-To"), "<prev@example.com>");
    assert_int_equal(email_message_get_parse_problems(m), 0);
    email_message_free(inner);
    email_message_free(m);
}

static void assert_same_str(const char *a, const char *b)
{
    if (!a || !b) {
        if (a != b)
            print_error("\"%s\" and \"%s\"\n", a ? a : "(null)", b ? b : "(null)");
        assert_true(a == b);
    }
    else
        assert_string_equal(a, b);
}

/* Every field the getters give is the same in a and b (Message-ID and Date only when ids). */
static void assert_fields(const email_message_t *a, const email_message_t *b, bool ids)
{
    assert_same_str(email_message_get_subject(a), email_message_get_subject(b));
    assert_same_str(email_message_get_from(a), email_message_get_from(b));
    for (int k = 0; k < 3; k++) {
        size_t n = email_message_get_recipient_count(a, k);
        assert_int_equal(n, email_message_get_recipient_count(b, k));
        for (size_t i = 0; i < n; i++)
            assert_same_str(email_message_get_recipient(a, k, i),
                            email_message_get_recipient(b, k, i));
    }
    /* a message built without a body is composed with an empty text part */
    const char *xa = email_message_get_text_body(a), *xb = email_message_get_text_body(b);
    assert_same_str(xa ? xa : "", xb ? xb : "");
    assert_same_str(email_message_get_html_body(a), email_message_get_html_body(b));
    if (ids) {
        assert_same_str(email_message_get_message_id(a), email_message_get_message_id(b));
        assert_int_equal(email_message_get_date(a), email_message_get_date(b));
    }
    size_t n = email_message_get_attachment_count(a);
    assert_int_equal(n, email_message_get_attachment_count(b));
    for (size_t i = 0; i < n; i++) {
        const char *na, *ta, *nb, *tb, *ca, *cb;
        const void *da, *db;
        size_t la, lb;
        int disp_a, disp_b;
        assert_int_equal(email_message_get_attachment(a, i, &na, &ta, &da, &la), 0);
        assert_int_equal(email_message_get_attachment(b, i, &nb, &tb, &db, &lb), 0);
        assert_same_str(na, nb);
        assert_same_str(ta, tb);
        assert_int_equal(la, lb);
        assert_memory_equal(da, db, la);
        assert_int_equal(email_message_get_attachment_info(a, i, &ca, &disp_a), 0);
        assert_int_equal(email_message_get_attachment_info(b, i, &cb, &disp_b), 0);
        assert_same_str(ca, cb);
        assert_int_equal(disp_a, disp_b);
    }
}

static void assert_same(const email_message_t *a, const email_message_t *b)
{
    assert_fields(a, b, true);
}

/* The bytes fed in pieces of `piece` octets through the streaming interface. */
static email_message_t *parse_pieces(const char *mime, size_t n, size_t piece)
{
    mime_parser_t *p;
    assert_int_equal(email__mime_parser_new(&p), 0);
    for (size_t i = 0; i < n; i += piece)
        assert_int_equal(email__mime_parser_feed(p, mime + i, n - i < piece ? n - i : piece), 0);
    email_message_t *m;
    assert_int_equal(email__mime_parser_finish(p, &m), 0);
    return m;
}

static void test_pieces(void **state)
{
    (void)state;
    static const char *const files[] = {"gb2312-split.eml", "iso2022jp-split.eml",
                                        "utf8-split.eml",   "rfc2231.eml",
                                        "malformed.eml",    "8bit-headers.eml",
                                        "nested.eml"};
    static const size_t pieces[] = {1, 2, 3, 7, 64, 4095, 4097};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        size_t n;
        char *buf = slurp(files[f], &n);
        email_message_t *whole = parse(buf, n);
        for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
            email_message_t *m = parse_pieces(buf, n, pieces[i]);
            assert_same(whole, m);
            assert_int_equal(email_message_get_parse_problems(whole),
                             email_message_get_parse_problems(m));
            email_message_free(m);
        }
        email_message_free(whole);
        free(buf);
    }
}

/* ---- The composer's output read back ---- */

static email_message_t *build(int shape, const char *mode)
{
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "Zoë Ünal <zoe@example.com>"), 0);
    assert_int_equal(email_message_add_to(m, "\"Doe, John\" <john@example.com>, b@example.org"),
                     0);
    bool latin = !strcmp(mode, EMAIL_MAIL_MODE_ISO88591);
    assert_int_equal(email_message_add_cc(m, latin ? "Hélène Dupont <helene@example.fr>"
                                                   : "山田 太郎 <yamada@example.jp>"),
                     0);
    assert_int_equal(email_message_set_subject(m, latin ? "Café crème, très long sujet "
                                                          "pour plier la ligne au moins une fois"
                                                        : "日本語の件名 with a long tail to fold "
                                                          "over more than one line"),
                     0);
    assert_int_equal(email_message_set_charsets(m, mode, mode), 0);
    if (shape & 1)
        assert_int_equal(email_message_set_text_body(m, latin ? "Bonjour à tous\r\n=\r\n"
                                                              : "こんにちは\r\n. dot\r\n"),
                         0);
    if (shape & 2)
        assert_int_equal(email_message_set_html_body(m, "<p>Hello</p>\r\n"), 0);
    /* inline parts first: the composer puts them (in multipart/related) before attachments */
    if (shape & 8)
        assert_int_equal(email_message_add_inline(m, NULL, "GIF89a", 6, "img1@example.com",
                                                  "image/gif"),
                         0);
    if (shape & 4) {
        static const char bin[] = "\0\1\2\377binary";
        assert_int_equal(email_message_add_attachment_data(m, bin, sizeof bin,
                                                           latin ? "été.bin" : "報告書.bin",
                                                           "application/octet-stream"),
                         0);
    }
    assert_int_equal(email_message_add_header(m, "X-Mailer", "test ünïcode"), 0);
    return m;
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const char *const modes[] = {EMAIL_MAIL_MODE_UTF8, EMAIL_MAIL_MODE_UTF8_IN_BASE64,
                                        EMAIL_MAIL_MODE_ISO88591, EMAIL_MAIL_MODE_ISO2022JP};
    for (size_t mode = 0; mode < 4; mode++) {
        for (int shape = 1; shape < 16; shape++) {
            email_message_t *built = build(shape, modes[mode]);
            char *mime;
            size_t n;
            assert_int_equal(email_message_to_mime(built, &mime, &n), 0);
            email_message_t *m = parse(mime, n);
            assert_fields(built, m, false); /* the built one has no Date or Message-ID yet */
            assert_non_null(email_message_get_message_id(m));
            assert_true(email_message_get_date(m) > 1700000000);
            assert_string_equal(email_message_get_header(m, "x-mailer"), "test ünïcode");
            assert_int_equal(email_message_get_parse_problems(m), 0);
            /* composed again from what was read: the same fields, Date and Message-ID kept */
            char *again;
            size_t n2;
            assert_int_equal(email_message_to_mime(m, &again, &n2), 0);
            email_message_t *m2 = parse(again, n2);
            assert_same(m, m2);
            assert_string_equal(email_message_get_header(m2, "X-Mailer"), "test ünïcode");
            email_message_free(m2);
            free(again);
            email_message_free(m);
            free(mime);
            email_message_free(built);
        }
    }
}

/* 30 MB of bytes, generated here: base64 in, the same bytes out. */
static void test_large_attachment(void **state)
{
    (void)state;
    size_t size = 30u * 1024 * 1024;
    unsigned char *data = malloc(size);
    assert_non_null(data);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    email_message_t *built = email_message_new();
    assert_int_equal(email_message_set_from(built, "a@example.com"), 0);
    assert_int_equal(email_message_set_text_body(built, "big one\r\n"), 0);
    assert_int_equal(email_message_add_attachment_data(built, data, size, "big.bin", NULL), 0);
    char *mime;
    size_t n;
    assert_int_equal(email_message_to_mime(built, &mime, &n), 0);
    email_message_t *m = parse_pieces(mime, n, 65536);
    assert_part(m, 0, "big.bin", "application/octet-stream", data, size);
    assert_string_equal(email_message_get_text_body(m), "big one\r\n");
    email_message_free(m);
    email_message_free(built);
    free(mime);
    free(data);
}

/* ---- Spill files ---- */

static size_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    size_t n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Mappings of files under dir (a spill file shows as "dir/#inode (deleted)", or by its mkstemp
   name). */
static size_t mappings_in(const char *dir)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, dir) != NULL;
    fclose(f);
    return n;
}

static unsigned char *random_bytes(size_t size, uint32_t x)
{
    unsigned char *data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    return data;
}

/* One part over the threshold goes to an unlinked file in $TMPDIR and comes back byte-exact from
   its mapping; one just under stays on the heap. The descriptor is closed once the part is read,
   the mapping ends with email_message_free, and the folder is left empty. */
static void spill_round(const char *tmpdir, const char *watch)
{
    size_t big = SPILL_THRESHOLD + 12345, small = SPILL_THRESHOLD - 1;
    unsigned char *a = random_bytes(big, 2463534242u), *b = random_bytes(small, 88675123u);
    email_message_t *built = email_message_new();
    assert_int_equal(email_message_set_from(built, "a@example.com"), 0);
    assert_int_equal(email_message_set_text_body(built, "two parts\r\n"), 0);
    assert_int_equal(email_message_add_attachment_data(built, a, big, "big.bin", NULL), 0);
    assert_int_equal(email_message_add_attachment_data(built, b, small, "small.bin", NULL), 0);
    char *mime;
    size_t n;
    assert_int_equal(email_message_to_mime(built, &mime, &n), 0);
    assert_int_equal(setenv("TMPDIR", tmpdir, 1), 0);
    size_t fds = open_fds(), maps = mappings_in(watch);
    email_message_t *m = parse_pieces(mime, n, 4097);
    assert_int_equal(open_fds(), fds);
    assert_int_equal(mappings_in(watch), maps + 1);
    assert_part(m, 0, "big.bin", "application/octet-stream", a, big);
    assert_part(m, 1, "small.bin", "application/octet-stream", b, small);
    /* composed again from the mapping */
    char *again;
    size_t n2;
    assert_int_equal(email_message_to_mime(m, &again, &n2), 0);
    email_message_free(m);
    assert_int_equal(mappings_in(watch), maps);
    email_message_t *m2 = parse(again, n2);
    assert_part(m2, 0, "big.bin", "application/octet-stream", a, big);
    email_message_free(m2);
    assert_int_equal(mappings_in(watch), maps);
    assert_int_equal(open_fds(), fds);
    unsetenv("TMPDIR");
    free(again);
    free(mime);
    email_message_free(built);
    free(a);
    free(b);
}

static void test_spill(void **state)
{
    (void)state;
    char dir[] = "/tmp/emailsession-spill-XXXXXX";
    assert_non_null(mkdtemp(dir));
    spill_round(dir, dir);
    assert_int_equal(rmdir(dir), 0); /* nothing was left in it */
    /* a $TMPDIR that cannot take the file: /tmp instead */
    spill_round("/nonexistent/emailsession", "/tmp/");
}

/* ---- Base64 bodies many lines at a time (body_run, email__mp_decode_b64_lines) ---- */

/* How many email__mp_b64_level values this processor can run: 0 the scalar decoder alone, 1
   SSSE3, 2 AVX2. */
static int b64_levels(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx2") ? 3 : __builtin_cpu_supports("ssse3") ? 2 : 1;
#else
    return 1;
#endif
}

static uint32_t xorshift(uint32_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 17, *x ^= *x << 5;
    return *x;
}

/* Base64-like text: lines of 0-90 characters, mostly of the alphabet (long clean runs, so whole
   16-character blocks occur), with '=', white space, CR, NUL, 8-bit octets and '-' between them
   (never at a line's start), CRLF or LF line breaks, the last one sometimes missing. */
static size_t b64_text(char *buf, size_t lines, uint32_t x)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char noise[] = "= \t\r\0\x80\xff-*";
    size_t n = 0;
    for (size_t l = 0; l < lines; l++) {
        size_t len = xorshift(&x) % 91;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = xorshift(&x);
            buf[n++] = r % 29 || !i ? alphabet[(r >> 8) % 64] : noise[(r >> 8) % (sizeof noise - 1)];
        }
        uint32_t e = xorshift(&x) % 4;
        if (e == 0)
            buf[n++] = '\n';
        else if (e < 3 || l + 1 < lines)
            buf[n++] = '\r', buf[n++] = '\n';
    }
    return n;
}

/* The text decoded as the parser's line path gives it: each line's content, without its line
   break, to email__mp_decode. */
static void b64_by_lines(const char *s, size_t n, email_buf_t *out, bool *bad)
{
    mp_decoder_t d;
    email__mp_decoder_init(&d, CTE_BASE64);
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n, len = end - i;
        if (nl && len && s[end - 1] == '\r')
            len--;
        assert_int_equal(email__mp_decode(&d, out, s + i, len), 0);
        i = nl ? end + 1 : n;
    }
    assert_int_equal(email__mp_decode_end(&d, out), 0);
    *bad = d.bad;
}

/* The same text in two runs, cut at `cut`: every line break, quantum and 16-character block is
   cut somewhere. */
static void b64_by_runs(const char *s, size_t n, size_t cut, email_buf_t *out, bool *bad)
{
    mp_decoder_t d;
    email__mp_decoder_init(&d, CTE_BASE64);
    bool bol = true;
    for (size_t i = 0, end = cut; i < n; end = n) {
        size_t used;
        assert_int_equal(email__mp_decode_b64_lines(&d, out, s + i, end - i, &bol, &used), 0);
        assert_int_equal(used, end - i); /* no line starts with '-' */
        i += used;
        assert_int_equal(bol, s[i - 1] == '\n');
    }
    assert_int_equal(email__mp_decode_end(&d, out), 0);
    *bad = d.bad;
}

static void test_b64_runs(void **state)
{
    (void)state;
    char *text = malloc(64 * 95);
    assert_non_null(text);
    email_buf_t want, got;
    email__buf_init(&want);
    email__buf_init(&got);
    /* every block decoder the processor has against the scalar line path */
    int levels = b64_levels();
    for (uint32_t seed = 1; seed <= 40; seed++) {
        size_t n = b64_text(text, 2 + seed % 13, 2463534242u + seed * 7919u);
        bool want_bad, got_bad;
        email__mp_b64_level = 0;
        email__buf_reset(&want);
        b64_by_lines(text, n, &want, &want_bad);
        for (int level = 0; level < levels; level++) {
            email__mp_b64_level = level;
            email__buf_reset(&got);
            b64_by_lines(text, n, &got, &got_bad);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(got.data, want.data, want.len);
            assert_int_equal(got_bad, want_bad);
            for (size_t cut = 1; cut <= n; cut++) {
                email__buf_reset(&got);
                b64_by_runs(text, n, cut, &got, &got_bad);
                assert_int_equal(got.len, want.len);
                assert_memory_equal(got.data, want.data, want.len);
                assert_int_equal(got_bad, want_bad);
            }
        }
    }
    email__mp_b64_level = -1;
    /* a line starting with '-' stops a run there (the caller reads it); inside a line it does not */
    static const char stop[] = "QUJDREVGR0hJSktMTU5PUFFSU1RV\r\n-QUJD\r\n";
    mp_decoder_t d;
    email__mp_decoder_init(&d, CTE_BASE64);
    email__buf_reset(&got);
    bool bol = true;
    size_t used;
    assert_int_equal(email__mp_decode_b64_lines(&d, &got, stop, strlen(stop), &bol, &used), 0);
    assert_int_equal(used, 30);
    assert_true(bol);
    assert_string_equal(got.data, "ABCDEFGHIJKLMNOPQRSTU");
    assert_int_equal(email__mp_decode_b64_lines(&d, &got, stop + 30, 7, &bol, &used), 0);
    assert_int_equal(used, 0);
    bol = false;
    assert_int_equal(email__mp_decode_b64_lines(&d, &got, stop + 30, 7, &bol, &used), 0);
    assert_int_equal(used, 7);
    assert_string_equal(got.data, "ABCDEFGHIJKLMNOPQRSTUABC");
    assert_true(d.bad);
    email__buf_free(&want);
    email__buf_free(&got);
    free(text);
}

/* Every octet at every place of a 64-character base64 text: each block decoder gives what the
   scalar one gives (the decoded octets and the flag), in email__mp_decode and in the run path. */
static void test_b64_every_octet(void **state)
{
    (void)state;
    int levels = b64_levels();
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char text[64];
    email_buf_t want, got;
    email__buf_init(&want);
    email__buf_init(&got);
    for (int octet = 0; octet < 256; octet++) {
        for (size_t at = 0; at < sizeof text; at++) {
            for (size_t i = 0; i < sizeof text; i++)
                text[i] = alphabet[(i * 37 + (size_t)octet) % 64];
            text[at] = (char)octet;
            for (int run = 0; run < 2; run++) {
                bool want_bad = false;
                for (int level = 0; level < levels; level++) {
                    email__mp_b64_level = level;
                    mp_decoder_t d;
                    email__mp_decoder_init(&d, CTE_BASE64);
                    email__buf_reset(&got);
                    if (run) {
                        bool bol = false; /* '-' first would stop the run */
                        size_t used;
                        assert_int_equal(email__mp_decode_b64_lines(&d, &got, text, sizeof text,
                                                                    &bol, &used), 0);
                        assert_int_equal(used, sizeof text);
                    } else {
                        assert_int_equal(email__mp_decode(&d, &got, text, sizeof text), 0);
                    }
                    assert_int_equal(email__mp_decode_end(&d, &got), 0);
                    if (level == 0) {
                        email__buf_reset(&want);
                        assert_int_equal(email__buf_append(&want, got.data, got.len), 0);
                        want_bad = d.bad;
                        continue;
                    }
                    assert_int_equal(got.len, want.len);
                    assert_memory_equal(got.data, want.data, want.len);
                    assert_int_equal(d.bad, want_bad);
                }
            }
        }
    }
    email__mp_b64_level = -1;
    email__buf_free(&want);
    email__buf_free(&got);
}

/* A base64 attachment past the spill threshold written by hand with the shapes the run path
   must read as the line path does: 76-character lines, quanta cut across lines, LF alone, a blank
   line, trailing spaces, a lone "-" line (not a boundary: flagged), then a boundary right after
   the last line. Fed whole, in pieces of several sizes, and cut in two around the place where
   the decoded bytes reach the threshold and around the boundary. */
static char *b64_message(const unsigned char *data, size_t size, size_t *len, size_t *mid,
                         size_t *tail)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char head[] =
        "From: a@example.com\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b-1\"\r\n\r\npreamble\r\n--b-1\r\n"
        "Content-Type: text/plain\r\n\r\nhello\r\n--b-1\r\n"
        "Content-Type: application/octet-stream; name=\"big.bin\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n";
    static const char end[] = "\r\n--b-1\r\nContent-Type: text/plain; name=\"after.txt\"\r\n\r\n"
                              "after\r\n--b-1--\r\n";
    size_t enc = (size_t)(size + 2) / 3 * 4, cap = sizeof head + enc + enc / 19 + 64 + sizeof end;
    char *buf = malloc(cap), *w = buf;
    assert_non_null(buf);
    w += sprintf(w, "%s", head);
    size_t col = 0, line = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < size ? (uint32_t)data[i + 1] << 8 : 0) |
                     (i + 2 < size ? data[i + 2] : 0);
        for (size_t k = 0; k < 4; k++) {
            *w++ = k > 1 && i + k > size ? '=' : b64[v >> (18 - 6 * k) & 63];
            if (++col == 76 || (line % 7 == 3 && col == 37)) {
                w += sprintf(w, line % 11 == 5 ? "\n" : line == 200 ? "  \r\n" : "\r\n");
                w += sprintf(w, line == 100 ? "\r\n" : line == 300 ? "-\r\n" : "");
                col = 0, line++;
            }
            if (i == size / 2 && k == 1)
                *mid = (size_t)(w - buf);
        }
    }
    *tail = (size_t)(w - buf);
    w += sprintf(w, "%s", end);
    *len = (size_t)(w - buf);
    assert_true(*len < cap);
    return buf;
}

static email_message_t *parse_cut(const char *mime, size_t n, size_t cut)
{
    mime_parser_t *p;
    assert_int_equal(email__mime_parser_new(&p), 0);
    assert_int_equal(email__mime_parser_feed(p, mime, cut), 0);
    assert_int_equal(email__mime_parser_feed(p, mime + cut, n - cut), 0);
    email_message_t *m;
    assert_int_equal(email__mime_parser_finish(p, &m), 0);
    return m;
}

static void assert_b64_message(const email_message_t *m, const unsigned char *data, size_t size)
{
    assert_part(m, 0, "big.bin", "application/octet-stream", data, size);
    assert_part(m, 1, "after.txt", "text/plain", "after", 5);
    assert_string_equal(email_message_get_text_body(m), "hello");
    assert_int_equal(email_message_get_parse_problems(m), EMAIL_PARSE_ENCODING);
}

static void test_b64_body_runs(void **state)
{
    (void)state;
    size_t size = 2 * SPILL_THRESHOLD + 1001, len, mid, tail;
    unsigned char *data = random_bytes(size, 2463534242u);
    char *mime = b64_message(data, size, &len, &mid, &tail);
    email_message_t *whole = parse_pieces(mime, len, len);
    assert_b64_message(whole, data, size);
    static const size_t pieces[] = {3, 76, 77, 4096, 65536, 65537};
    for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
        email_message_t *m = parse_pieces(mime, len, pieces[i]);
        assert_b64_message(m, data, size);
        email_message_free(m);
    }
    for (size_t d = 0; d < 12; d++) {
        size_t cuts[] = {mid - 6 + d, tail - 4 + d, tail + 6 + d};
        for (size_t c = 0; c < 3; c++) {
            email_message_t *m = parse_cut(mime, len, cuts[c]);
            assert_b64_message(m, data, size);
            email_message_free(m);
        }
    }
    email_message_free(whole);
    free(mime);
    free(data);
}

/* Hostile shapes: nesting past the cap, a header line of megabytes, many parts. */
static void test_caps(void **state)
{
    (void)state;
    email_buf_t b;
    email__buf_init(&b);
    for (int i = 0; i < 40; i++)
        assert_int_equal(email__buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n"
                                               "\r\n--b%d\r\n", i, i), 0);
    assert_int_equal(email__buf_puts(&b, "Content-Type: text/plain\r\n\r\ndeep\r\n"), 0);
    email_message_t *m = parse(b.data, b.len);
    assert_true(email_message_get_parse_problems(m) & EMAIL_PARSE_LIMIT);
    assert_null(email_message_get_text_body(m));
    email_message_free(m);

    email__buf_reset(&b);
    assert_int_equal(email__buf_puts(&b, "Subject: "), 0);
    for (int i = 0; i < 300000; i++)
        assert_int_equal(email__buf_puts(&b, "x "), 0);
    assert_int_equal(email__buf_puts(&b, "\r\nX-After: 1\r\n\r\nbody\r\n"), 0);
    m = parse(b.data, b.len);
    assert_true(email_message_get_parse_problems(m) & EMAIL_PARSE_LIMIT);
    assert_string_equal(email_message_get_text_body(m), "body\r\n");
    email_message_free(m);

    email__buf_reset(&b);
    assert_int_equal(email__buf_puts(&b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n"), 0);
    for (int i = 0; i < 1200; i++)
        assert_int_equal(email__buf_printf(&b, "--p\r\nContent-Type: application/x-%d\r\n\r\n"
                                               "%d\r\n", i, i), 0);
    m = parse(b.data, b.len);
    assert_true(email_message_get_parse_problems(m) & EMAIL_PARSE_LIMIT);
    assert_int_equal(email_message_get_attachment_count(m), 1000);
    email_message_free(m);
    email__buf_free(&b);
}

/* The getters on a built message, and on nothing. */
static void test_built_getters(void **state)
{
    (void)state;
    email_message_t *m = build(1 | 4, EMAIL_MAIL_MODE_UTF8);
    assert_string_equal(email_message_get_from(m), "Zoë Ünal <zoe@example.com>");
    assert_string_equal(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 0),
                        "\"Doe, John\" <john@example.com>");
    assert_string_equal(email_message_get_header(m, "to"),
                        "\"Doe, John\" <john@example.com>, b@example.org");
    assert_string_equal(email_message_get_header(m, "X-Mailer"), "test ünïcode");
    assert_null(email_message_get_uid(m));
    assert_int_equal(email_message_get_size(m), 0);
    assert_int_equal(email_message_get_date(m), 0);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    /* a getter that cannot fail leaves ErrorInfo as it was */
    assert_int_equal(email_message_set_from(m, "not an address"), EMAIL_EINVAL);
    assert_non_null(email_message_get_subject(m));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    email_message_free(m);
    assert_null(email_message_get_subject(NULL));
    assert_int_equal(email_message_get_recipient_count(NULL, EMAIL_RECIPIENT_TO), 0);
    assert_int_equal(email_message_get_attachment(NULL, 0, NULL, NULL, NULL, NULL),
                     EMAIL_EINVAL);
    email_message_t *out;
    assert_int_equal(email_message_from_mime(NULL, 0, &out), EMAIL_EINVAL);
    assert_null(out);
    assert_int_equal(email_message_from_mime("", 0, NULL), EMAIL_EINVAL);
}

/* A parsed message with an address that is none cannot be sent again. */
static void test_resend_refused(void **state)
{
    (void)state;
    const char mime[] = "From: a@example.com\r\nTo: not-an-address\r\n\r\nx\r\n";
    email_message_t *m = parse(mime, sizeof mime - 1);
    assert_int_equal(email_message_get_parse_problems(m), EMAIL_PARSE_ADDRESS);
    assert_string_equal(email_message_get_recipient(m, EMAIL_RECIPIENT_TO, 0), "not-an-address");
    char *again;
    assert_int_equal(email_message_to_mime(m, &again, NULL), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "could not be read as addresses"));
    email_message_free(m);
}

/* Regression (found by fuzz_mime_parse): a type with 8-bit octets was given as it was, not
   UTF-8 and not one the composer could write again; it is text/plain now, flagged. */
static void test_type_not_a_token(void **state)
{
    (void)state;
    const char mime[] = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                        "Content-Type: applic\xe9tion/pdf; name=a.pdf\r\n\r\nx\r\n--b--\r\n";
    email_message_t *m = parse(mime, sizeof mime - 1);
    assert_part(m, 0, "a.pdf", "text/plain", "x", 1);
    assert_int_equal(email_message_get_parse_problems(m), EMAIL_PARSE_HEADER);
    email_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gb2312_split),  cmocka_unit_test(test_iso2022jp_split),
        cmocka_unit_test(test_utf8_split),    cmocka_unit_test(test_rfc2231),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_8bit_headers),
        cmocka_unit_test(test_nested),        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_large_attachment),
        cmocka_unit_test(test_caps),          cmocka_unit_test(test_built_getters),
        cmocka_unit_test(test_resend_refused), cmocka_unit_test(test_type_not_a_token),
        cmocka_unit_test(test_spill),         cmocka_unit_test(test_b64_runs),
        cmocka_unit_test(test_b64_every_octet),
        cmocka_unit_test(test_b64_body_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
