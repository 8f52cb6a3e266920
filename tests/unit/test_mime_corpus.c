/*
 * The MIME fixture corpus (tests/fixtures/mime, every .eml, written by its make.py) read by
 * email_message_from_mime and checked field by field against a table: subject, From, To, Cc, the
 * text and HTML bodies, every attachment's name, type, size and bytes (a message/rfc822 one read
 * again, two deep), the parse_problems bits. Every fixture is also read in pieces (one byte, 7
 * bytes, 4 KiB) through the incremental parser and must give the same. And a 30 MB attachment,
 * generated here into a temporary file (never committed), read back by size and checksum.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emailsession.h"
#include "mime_parse.h"
#include "util.h"

/* A field whose value is not compared (only that it is there and valid UTF-8). */
static const char ANY[] = "<any>";

typedef struct msg_want msg_want_t;

typedef struct part_want {
    const char *name, *type;
    size_t size;
    const char *bytes;          /* NULL: not compared */
    const msg_want_t *inner;    /* message/rfc822: the enclosed message */
} part_want_t;

struct msg_want {
    const char *subject, *from;
    const char *to[3], *cc[3];
    const char *text, *html;
    part_want_t parts[4];
    size_t nparts;
    unsigned problems;
};

static char *slurp(const char *name, size_t *n)
{
    const char *dir = getenv("EMAIL_TEST_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/mime/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void assert_text(const char *what, const char *got, const char *want)
{
    if (want == ANY) {
        if (!got || !email__utf8_valid(got, strlen(got)))
            fail_msg("%s: missing or not UTF-8", what);
        return;
    }
    if (!want && !got)
        return;
    if (!want || !got || strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void check_message(const email_message_t *m, const msg_want_t *w);

static void check_recipients(const email_message_t *m, int kind, const char *const want[3])
{
    size_t n = 0;
    while (n < 3 && want[n])
        n++;
    assert_int_equal(email_message_get_recipient_count(m, kind), n);
    for (size_t i = 0; i < n; i++)
        assert_text(kind ? "cc" : "to", email_message_get_recipient(m, kind, i), want[i]);
}

static void check_part(const email_message_t *m, size_t i, const part_want_t *w)
{
    const char *name, *type;
    const void *data;
    size_t len;
    assert_int_equal(email_message_get_attachment(m, i, &name, &type, &data, &len), 0);
    assert_text("attachment name", name, w->name);
    assert_text("attachment type", type, w->type);
    assert_int_equal(len, w->size);
    if (w->bytes)
        assert_memory_equal(data, w->bytes, len);
    if (w->inner) {
        email_message_t *inner = NULL;
        assert_int_equal(email_message_from_mime(data, len, &inner), 0);
        check_message(inner, w->inner);
        email_message_free(inner);
    }
}

static void check_message(const email_message_t *m, const msg_want_t *w)
{
    assert_text("subject", email_message_get_subject(m), w->subject);
    assert_text("from", email_message_get_from(m), w->from);
    check_recipients(m, EMAIL_RECIPIENT_TO, w->to);
    check_recipients(m, EMAIL_RECIPIENT_CC, w->cc);
    assert_text("text body", email_message_get_text_body(m), w->text);
    assert_text("html body", email_message_get_html_body(m), w->html);
    assert_int_equal(email_message_get_attachment_count(m), w->nparts);
    for (size_t i = 0; i < w->nparts; i++)
        check_part(m, i, &w->parts[i]);
    assert_int_equal(email_message_get_parse_problems(m), w->problems);
}

/* ------------------------------------------------------------------------------------------- */
/* The corpus                                                                                   */

static const msg_want_t inner_one = {
    .subject = "inner one", .from = "c@example.com", .to = {"d@example.com"},
    .text = "inner body"};

static const msg_want_t deepest = {
    .subject = "the original", .from = "e@example.com", .to = {"f@example.com"},
    .text = "déjà vu"};

static const msg_want_t middle = {
    .subject = "Fwd: the original", .from = "c@example.com", .to = {"d@example.com"},
    .text = "see below",
    .parts = {{"data.csv", "text/csv", 8, "a,b\r\n1,2", NULL},
              {NULL, "message/rfc822", 167, NULL, &deepest}},
    .nparts = 2};

static const struct fixture {
    const char *file;
    msg_want_t want;
} corpus[] = {
    {"gb2312-split.eml",
     {.subject = "中文邮件测试", .from = "张三 <zhang@example.cn>", .to = {"li@example.com"},
      .text = "你好，世界\r\n"}},
    {"gb18030-as-gb2312.eml",
     {.subject = "朱镕基与王珺的€报告", .from = "王珺 <wang@example.cn>",
      .to = {"朱镕 <zhu@example.cn>", "li@example.cn"}, .text = "镕基同志：€5\r\n",
      .parts = {{"报告镕.doc", "application/msword", 8, "\xd0\xcf\x11\xe0 doc", NULL}},
      .nparts = 1}},
    {"iso2022jp-split.eml",
     {.subject = "日本語の件名です", .from = "山田 <yamada@example.jp>",
      .to = {"suzuki@example.jp"}, .text = "こんにちは ｱ\r\n"}},
    {"iso2022jp-ext.eml",
     {.subject = "①会議の件㈱髙橋", .from = "髙橋 <takahashi@example.jp>",
      .to = {"info@example.jp"}, .text = "②の資料をお送りします。ｶﾀｶﾅ\r\n"}},
    {"utf8-split.eml",
     {.subject = "Grüße – €100", .from = "\"Müller, Jörg\" <joerg@example.de>",
      .to = {"René <rene@example.fr>", "plain@example.org"}, .html = "<p>Grüße</p>\r\n"}},
    {"rfc2231.eml",
     {.subject = "names", .from = "a@example.com", .to = {"b@example.com"},
      .text = "see attached",
      .parts = {{"日本語.pdf", "application/pdf", 9, "%PDF-1.4\n", NULL},
                {"résumé.txt", "text/plain", 10, "plain text", NULL},
                {"фото.png", "image/png", 8, "\x89PNG\r\n\x1a\n", NULL}},
      .nparts = 3}},
    {"malformed.eml",
     {.subject = "broken", .from = "a@example.com", .to = {"b@example.com"},
      .text = "a=ZZb\r\n--XYZnot a boundary", .html = "<b>no end</b>\r\n",
      .parts = {{"x.bin", "application/octet-stream", 4, "\1\2\3\4", NULL}}, .nparts = 1,
      .problems = EMAIL_PARSE_ENCODING | EMAIL_PARSE_MULTIPART}},
    /* the preamble's look-alike lines are no boundary, transport padding after one is; a text
     * said to be base64 is decoded as such (U+FFFD where it is no UTF-8), an unknown encoding
     * is read as it is; an unclosed inner multipart still gives its part */
    {"malformed-2.eml",
     {.subject = "more broken", .from = "a@example.com", .to = {"b@example.com"},
      .text = ANY, .html = "<i>as is</i>",
      .parts = {{"pad.bin", "application/octet-stream", 4, "\1\2\3\4", NULL},
                {NULL, "text/plain", 12, "never closed", NULL}},
      .nparts = 2,
      .problems = EMAIL_PARSE_CHARSET | EMAIL_PARSE_ENCODING | EMAIL_PARSE_MULTIPART}},
    {"8bit-headers.eml",
     {.subject = "Ünïcödé raw", .from = "José <jose@example.es>", .to = {"b@example.com"},
      .text = "café", .html = "<p>“quoted”</p>", .problems = EMAIL_PARSE_8BIT_HEADER}},
    {"8bit-headers-2.eml",
     {.subject = "Résumé", .from = "Zoë Ågren <zoe@example.se>", .to = {"b@example.com"},
      .cc = {"François <f@example.fr>"}, .text = "hej",
      .parts = {{"Lön 2025.pdf", "application/pdf", 5, "%PDF-", NULL}}, .nparts = 1,
      .problems = EMAIL_PARSE_8BIT_HEADER}},
    {"nested.eml",
     {.subject = "nested", .from = "a@example.com", .to = {"b@example.com"}, .text = "hello",
      .html = "<img src=\"cid:logo@x\">",
      .parts = {{NULL, "image/gif", 6, "GIF89a", NULL},
                {NULL, "message/rfc822", 98, NULL, &inner_one}},
      .nparts = 2}},
    {"nested-2.eml",
     {.subject = "Fwd: Fwd: the original", .from = "a@example.com", .to = {"b@example.com"},
      .text = "twice forwarded",
      .parts = {{"fwd.eml", "message/rfc822", 455, NULL, &middle}}, .nparts = 1}},
};

static void test_corpus(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        size_t n;
        char *buf = slurp(corpus[i].file, &n);
        email_message_t *m = NULL;
        print_message("%s\n", corpus[i].file);
        assert_int_equal(email_message_from_mime(buf, n, &m), 0);
        assert_int_equal(email_message_get_size(m), n);
        check_message(m, &corpus[i].want);
        email_message_free(m);
        free(buf);
    }
}

/* Every .eml of the directory has its row in the table. */
static void test_corpus_complete(void **state)
{
    (void)state;
    const char *dir = getenv("EMAIL_TEST_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/mime", dir ? dir : ".");
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".eml"))
            continue;
        bool found = false;
        for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++)
            found = found || !strcmp(corpus[i].file, e->d_name);
        if (!found)
            fail_msg("%s is not checked", e->d_name);
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, sizeof corpus / sizeof *corpus);
}

/* The same fields whatever pieces the bytes come in. */
static void test_corpus_in_pieces(void **state)
{
    (void)state;
    static const size_t pieces[] = {1, 7, 4096};
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        size_t n;
        char *buf = slurp(corpus[i].file, &n);
        for (size_t k = 0; k < sizeof pieces / sizeof *pieces; k++) {
            mime_parser_t *p = NULL;
            assert_int_equal(email__mime_parser_new(&p), 0);
            for (size_t at = 0; at < n; at += pieces[k])
                assert_int_equal(email__mime_parser_feed(p, buf + at,
                                                         n - at < pieces[k] ? n - at : pieces[k]),
                                 0);
            email_message_t *m = NULL;
            assert_int_equal(email__mime_parser_finish(p, &m), 0);
            check_message(m, &corpus[i].want);
            email_message_free(m);
        }
        free(buf);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* 30 MB, generated into a temporary file                                                       */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Writes the message: a text part and size pseudo-random bytes in base64 lines of 76; returns
 * the bytes' checksum. */
static uint64_t write_big(FILE *f, size_t size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputs("From: big@example.com\r\nTo: you@example.com\r\nSubject: 30 MB\r\n"
          "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"big\"\r\n\r\n"
          "--big\r\nContent-Type: text/plain\r\n\r\nthe data is attached\r\n"
          "--big\r\nContent-Type: application/octet-stream\r\n"
          "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
          "Content-Transfer-Encoding: base64\r\n\r\n", f);
    uint64_t h = 1469598103934665603ull;
    uint32_t x = 2463534242u;
    size_t col = 0;
    for (size_t i = 0; i < size; i += 3) {
        unsigned char in[3] = {0, 0, 0};
        size_t k = size - i < 3 ? size - i : 3;
        for (size_t j = 0; j < k; j++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            in[j] = (unsigned char)x;
        }
        h = fnv1a(h, in, k);
        char out[4] = {b64[in[0] >> 2], b64[(in[0] & 3) << 4 | in[1] >> 4],
                       k > 1 ? b64[(in[1] & 15) << 2 | in[2] >> 6] : '=',
                       k > 2 ? b64[in[2] & 63] : '='};
        fwrite(out, 1, 4, f);
        if ((col += 4) == 76) {
            fputs("\r\n", f);
            col = 0;
        }
    }
    fputs("\r\n--big--\r\n", f);
    return h;
}

static void test_30mb_attachment(void **state)
{
    (void)state;
    const size_t size = 30u * 1024 * 1024 + 1; /* not a multiple of 3: padding too */
    const char *tmp = getenv("TMPDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/test_mime_corpus.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+b");
    assert_non_null(f);
    uint64_t want = write_big(f, size);
    long n = ftell(f);
    assert_true(n > 40 * 1024 * 1024);
    rewind(f);
    char *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(path);

    email_message_t *m = NULL;
    assert_int_equal(email_message_from_mime(buf, (size_t)n, &m), 0);
    free(buf);
    assert_string_equal(email_message_get_text_body(m), "the data is attached");
    assert_int_equal(email_message_get_attachment_count(m), 1);
    const char *name, *type;
    const void *data;
    size_t len;
    assert_int_equal(email_message_get_attachment(m, 0, &name, &type, &data, &len), 0);
    assert_string_equal(name, "data.bin");
    assert_string_equal(type, "application/octet-stream");
    assert_int_equal(len, size);
    assert_true(fnv1a(1469598103934665603ull, data, len) == want);
    assert_int_equal(email_message_get_parse_problems(m), 0);
    email_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_corpus_complete),
        cmocka_unit_test(test_corpus_in_pieces),
        cmocka_unit_test(test_30mb_attachment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
