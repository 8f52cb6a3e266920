/* Unit tests for the SMTP reply parser (lib/reply.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "reply.h"
#include "util.h"

/* One reply as a line of text, so that whole transcripts compare with one string comparison. */
static void describe(email_buf_t *b, const smtp_reply_t *r)
{
    assert_int_equal(email__buf_printf(b, "%d [%s]", r->code, r->enhanced), 0);
    for (size_t i = 0; i < r->nlines; i++)
        assert_int_equal(email__buf_printf(b, " {%s}", r->lines[i]), 0);
    assert_int_equal(email__buf_printf(b, " text={%s}\n", r->text), 0);
}

static uint64_t next_random(uint64_t *state)
{
    /* xorshift64: the same sequence on every platform, unlike rand() */
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/*
 * Feeds data[0..n) to a fresh parser in pieces and returns (malloc'ed) every reply, then
 * "error: <text>" or "busy" when the stream ends there. Pieces: data[0..first) when first > 0,
 * then pieces of step bytes (random 1..64 when rng, all the rest when step is 0). Each call is
 * checked against the contract: a reply uses some bytes, "no reply yet" uses all of them.
 */
static char *transcript(const char *data, size_t n, size_t first, size_t step, uint64_t *rng)
{
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    email_buf_t b;
    email__buf_init(&b);
    size_t pos = 0;
    bool failed = false;
    while (pos < n && !failed) {
        size_t piece = n - pos;
        if (pos == 0 && first > 0)
            piece = first;
        else if (rng)
            piece = 1 + next_random(rng) % 64;
        else if (step > 0)
            piece = step;
        if (piece > n - pos)
            piece = n - pos;
        const char *s = data + pos;
        size_t left = piece;
        pos += piece;
        while (left > 0 && !failed) {
            smtp_reply_t r;
            const char *err = NULL;
            size_t used = SIZE_MAX;
            int rc = email__smtp_reply_parse(&p, s, left, &used, &r, &err);
            assert_true(used <= left);
            if (rc == 1) {
                assert_true(used > 0);
                describe(&b, &r);
                email__smtp_reply_free(&r);
            } else if (rc == 0) {
                assert_int_equal(used, left);
            } else {
                assert_int_equal(rc, EMAIL_EPROTO);
                assert_non_null(err);
                assert_int_equal(email__buf_printf(&b, "error: %s\n", err), 0);
                failed = true;
            }
            s += used;
            left -= used;
        }
    }
    if (!failed && email__smtp_reply_parser_busy(&p))
        assert_int_equal(email__buf_puts(&b, "busy\n"), 0);
    email__smtp_reply_parser_free(&p);
    return email__buf_steal(&b, NULL);
}

/* The transcript of data fed whole, checked equal to the one fed byte by byte. */
static char *whole_and_bytewise(const char *data, size_t n)
{
    char *whole = transcript(data, n, 0, 0, NULL);
    char *bytes = transcript(data, n, 0, 1, NULL);
    assert_string_equal(whole, bytes);
    free(bytes);
    return whole;
}

static void expect_transcript(const char *data, size_t n, const char *expected)
{
    char *got = whole_and_bytewise(data, n);
    assert_string_equal(got, expected);
    free(got);
}

#define EXPECT(data, expected) expect_transcript(data, sizeof(data) - 1, expected)

static void test_single_line(void **state)
{
    (void)state;
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    assert_false(email__smtp_reply_parser_busy(&p));
    smtp_reply_t r;
    const char *err = NULL;
    size_t used = 0;
    assert_int_equal(email__smtp_reply_parse(&p, "250 OK\r\n", 8, &used, &r, &err), 1);
    assert_int_equal(used, 8);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enhanced, "");
    assert_int_equal(r.nlines, 1);
    assert_string_equal(r.lines[0], "250 OK");
    assert_string_equal(r.text, "OK");
    assert_false(email__smtp_reply_parser_busy(&p));
    email__smtp_reply_free(&r);
    email__smtp_reply_parser_free(&p);
}

static void test_partial_and_busy(void **state)
{
    (void)state;
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    smtp_reply_t r;
    const char *err = NULL;
    size_t used = 99;
    assert_int_equal(email__smtp_reply_parse(&p, "", 0, &used, &r, &err), 0);
    assert_int_equal(used, 0);
    assert_false(email__smtp_reply_parser_busy(&p));

    assert_int_equal(email__smtp_reply_parse(&p, "220-mx", 6, &used, &r, &err), 0);
    assert_int_equal(used, 6);
    assert_true(email__smtp_reply_parser_busy(&p));
    /* a complete continuation line and nothing more: still busy, no partial line */
    assert_int_equal(email__smtp_reply_parse(&p, " ESMTP\r\n", 8, &used, &r, &err), 0);
    assert_int_equal(used, 8);
    assert_true(email__smtp_reply_parser_busy(&p));
    /* a CR held back waiting for its LF counts as pending bytes */
    assert_int_equal(email__smtp_reply_parse(&p, "220 ready\r", 10, &used, &r, &err), 0);
    assert_true(email__smtp_reply_parser_busy(&p));
    assert_int_equal(email__smtp_reply_parse(&p, "\n", 1, &used, &r, &err), 1);
    assert_int_equal(used, 1);
    assert_false(email__smtp_reply_parser_busy(&p));
    assert_int_equal(r.code, 220);
    assert_int_equal(r.nlines, 2);
    assert_string_equal(r.lines[0], "220-mx ESMTP");
    assert_string_equal(r.lines[1], "220 ready");
    assert_string_equal(r.text, "mx ESMTP\nready");
    email__smtp_reply_free(&r);
    email__smtp_reply_parser_free(&p);
}

static const char EHLO[] = "250-mail.example.org Hello client [192.0.2.1]\r\n"
                           "250-SIZE 35882577\r\n"
                           "250-8BITMIME\r\n"
                           "250-PIPELINING\r\n"
                           "250-ENHANCEDSTATUSCODES\r\n"
                           "250 CHUNKING\r\n"
                           "250 2.1.0 Sender <a@example.org> ok\r\n"
                           "354 go";
static const char EHLO_TRANSCRIPT[] =
    "250 [] {250-mail.example.org Hello client [192.0.2.1]} {250-SIZE 35882577} {250-8BITMIME}"
    " {250-PIPELINING} {250-ENHANCEDSTATUSCODES} {250 CHUNKING} text={mail.example.org Hello"
    " client [192.0.2.1]\nSIZE 35882577\n8BITMIME\nPIPELINING\nENHANCEDSTATUSCODES\nCHUNKING}\n"
    "250 [2.1.0] {250 2.1.0 Sender <a@example.org> ok} text={Sender <a@example.org> ok}\n"
    "busy\n";

static void test_ehlo_every_split(void **state)
{
    (void)state;
    size_t n = sizeof EHLO - 1;
    char *whole = transcript(EHLO, n, 0, 0, NULL);
    assert_string_equal(whole, EHLO_TRANSCRIPT);
    for (size_t k = 1; k < n; k++) {
        char *split = transcript(EHLO, n, k, 0, NULL);
        assert_string_equal(split, whole);
        free(split);
    }
    char *bytes = transcript(EHLO, n, 0, 1, NULL);
    assert_string_equal(bytes, whole);
    free(bytes);
    free(whole);
}

static void test_several_replies_in_one_chunk(void **state)
{
    (void)state;
    static const char in[] = "250 a\r\n251-b\r\n251 c\n252 d\r\n253 pend";
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    smtp_reply_t r;
    const char *err = NULL;
    size_t used, off = 0, n = sizeof in - 1;
    static const size_t expect_used[] = {7, 13, 7};
    static const int expect_code[] = {250, 251, 252};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(email__smtp_reply_parse(&p, in + off, n - off, &used, &r, &err), 1);
        assert_int_equal(used, expect_used[i]);
        assert_int_equal(r.code, expect_code[i]);
        email__smtp_reply_free(&r);
        off += used;
    }
    assert_int_equal(email__smtp_reply_parse(&p, in + off, n - off, &used, &r, &err), 0);
    assert_int_equal(used, 8);
    assert_true(email__smtp_reply_parser_busy(&p));
    email__smtp_reply_parser_free(&p);
}

static void test_line_endings(void **state)
{
    (void)state;
    EXPECT("250-a\n250-b\r\n250 c\n", "250 [] {250-a} {250-b} {250 c} text={a\nb\nc}\n");
    /* a CR not followed by LF is text, wherever the read boundaries fall */
    EXPECT("250 a\rb\r\n", "250 [] {250 a\rb} text={a\rb}\n");
    EXPECT("250 a\r\r\n", "250 [] {250 a\r} text={a\r}\n");
    EXPECT("250 a\r\r\r\n", "250 [] {250 a\r\r} text={a\r\r}\n");
    char *split = transcript("250 a\rb\r\n", 9, 6, 0, NULL); /* "250 a\r" | "b\r\n" */
    assert_string_equal(split, "250 [] {250 a\rb} text={a\rb}\n");
    free(split);
    split = transcript("250 a\r\n", 7, 6, 0, NULL); /* "250 a\r" | "\n" */
    assert_string_equal(split, "250 [] {250 a} text={a}\n");
    free(split);
}

static void test_code_alone(void **state)
{
    (void)state;
    EXPECT("250\r\n", "250 [] {250} text={}\n");
    EXPECT("250 \r\n", "250 [] {250 } text={}\n");
    EXPECT("250\n", "250 [] {250} text={}\n");
    EXPECT("250-\r\n250\r\n", "250 [] {250-} {250} text={\n}\n");
    EXPECT("250-first\r\n250\r\n", "250 [] {250-first} {250} text={first\n}\n");
}

static void test_enhanced_codes(void **state)
{
    (void)state;
    EXPECT("250 2.1.0 Sender ok\r\n", "250 [2.1.0] {250 2.1.0 Sender ok} text={Sender ok}\n");
    EXPECT("550 5.7.1 Relaying denied\r\n",
           "550 [5.7.1] {550 5.7.1 Relaying denied} text={Relaying denied}\n");
    EXPECT("451 4.123.456 later\r\n", "451 [4.123.456] {451 4.123.456 later} text={later}\n");
    EXPECT("250 2.0.0\r\n", "250 [2.0.0] {250 2.0.0} text={}\n");
    EXPECT("250 2.0.0 \r\n", "250 [2.0.0] {250 2.0.0 } text={}\n");
    EXPECT("250 OK\r\n", "250 [] {250 OK} text={OK}\n");
    /* only a code of the reply's own class is a status; anything else stays text */
    EXPECT("550 2.1.0 x\r\n", "550 [] {550 2.1.0 x} text={2.1.0 x}\n");
    EXPECT("354 3.0.0 go\r\n", "354 [] {354 3.0.0 go} text={3.0.0 go}\n");
    EXPECT("250 2.1234.0 x\r\n", "250 [] {250 2.1234.0 x} text={2.1234.0 x}\n");
    EXPECT("250 2.1.1234 x\r\n", "250 [] {250 2.1.1234 x} text={2.1.1234 x}\n");
    EXPECT("250 2..0 x\r\n", "250 [] {250 2..0 x} text={2..0 x}\n");
    EXPECT("250 2.1. x\r\n", "250 [] {250 2.1. x} text={2.1. x}\n");
    EXPECT("250 2.1 x\r\n", "250 [] {250 2.1 x} text={2.1 x}\n");
    EXPECT("250 2.1.0x\r\n", "250 [] {250 2.1.0x} text={2.1.0x}\n");
    EXPECT("250 2.1.0.5 x\r\n", "250 [] {250 2.1.0.5 x} text={2.1.0.5 x}\n");
    EXPECT("250 22.1.0 x\r\n", "250 [] {250 22.1.0 x} text={22.1.0 x}\n");
    EXPECT("250  2.1.0 x\r\n", "250 [] {250  2.1.0 x} text={ 2.1.0 x}\n");
}

static void test_enhanced_multiline(void **state)
{
    (void)state;
    EXPECT("550-5.7.1 Relaying\r\n550-5.7.1 not\r\n550 5.7.1 allowed\r\n",
           "550 [5.7.1] {550-5.7.1 Relaying} {550-5.7.1 not} {550 5.7.1 allowed}"
           " text={Relaying\nnot\nallowed}\n");
    /* a line without its code, or with another class, keeps its text whole */
    EXPECT("550-5.7.1 a\r\n550-b\r\n550 2.0.0 c\r\n",
           "550 [5.7.1] {550-5.7.1 a} {550-b} {550 2.0.0 c} text={a\nb\n2.0.0 c}\n");
    /* the reply carries a code only when its first line does */
    EXPECT("250-a\r\n250 2.0.0 b\r\n", "250 [] {250-a} {250 2.0.0 b} text={a\n2.0.0 b}\n");
}

/* Each input, fed whole and byte by byte, fails with an error text holding `what`. */
static void expect_error(const char *data, size_t n, const char *what)
{
    char *got = whole_and_bytewise(data, n);
    const char *e = strstr(got, "error: ");
    assert_non_null(e);
    assert_non_null(strstr(e, what));
    free(got);
}

#define EXPECT_ERROR(data, what) expect_error(data, sizeof(data) - 1, what)

static void test_bad_lines(void **state)
{
    (void)state;
    EXPECT_ERROR("250 a\0b\r\n", "NUL");
    EXPECT_ERROR("250-a\r\n250 \0\r\n", "NUL");
    EXPECT_ERROR("25 ok\r\n", "code");
    EXPECT_ERROR("abc\r\n", "code");
    EXPECT_ERROR("650 x\r\n", "code");
    EXPECT_ERROR("150 x\r\n", "code");
    EXPECT_ERROR("2500 x\r\n", "code");
    EXPECT_ERROR("2a0 x\r\n", "code");
    EXPECT_ERROR("250x\r\n", "code");
    EXPECT_ERROR("25\r\n", "code");
    EXPECT_ERROR("\r\n", "code");
    EXPECT_ERROR("\n", "code");
    EXPECT_ERROR(" 250 x\r\n", "code");
    EXPECT_ERROR("250-a\r\n251 b\r\n", "different");
    EXPECT_ERROR("250-a\r\n350 b\r\n", "different");
    /* replies before the bad line are still delivered */
    char *got = whole_and_bytewise("250 ok\r\n25 x\r\n", 14);
    assert_string_equal(got, "250 [] {250 ok} text={ok}\nerror: "
                             "reply line without a valid 3-digit code\n");
    free(got);
}

static void test_error_consumed(void **state)
{
    (void)state;
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    smtp_reply_t r;
    const char *err = NULL;
    size_t used = 0;
    assert_int_equal(email__smtp_reply_parse(&p, "250-a\r\nxyz\r\n250 b\r\n", 19, &used, &r, &err),
                     EMAIL_EPROTO);
    assert_int_equal(used, 12);
    assert_non_null(strstr(err, "code"));
    /* the reply under way is freed with the parser */
    email__smtp_reply_parser_free(&p);
    email__smtp_reply_parser_free(&p);
}

/* "250 " followed by 'x' up to a line of len octets, then the given ending. */
static char *long_line(size_t len, const char *ending, size_t *n)
{
    size_t elen = strlen(ending);
    char *s = malloc(len + elen);
    assert_non_null(s);
    memcpy(s, "250 ", 4);
    memset(s + 4, 'x', len - 4);
    memcpy(s + len, ending, elen);
    *n = len + elen;
    return s;
}

static void test_line_length_limit(void **state)
{
    (void)state;
    static const char *const endings[] = {"\r\n", "\n"};
    for (size_t e = 0; e < 2; e++) {
        size_t n;
        char *s = long_line(SMTP_REPLY_MAX_LINE, endings[e], &n);
        char *got = whole_and_bytewise(s, n);
        assert_non_null(strstr(got, "text={xxx"));
        assert_null(strstr(got, "error"));
        /* the CR of the CRLF read alone at the limit */
        char *split = transcript(s, n, SMTP_REPLY_MAX_LINE + 1, 0, NULL);
        assert_string_equal(split, got);
        free(split);
        free(got);
        free(s);

        s = long_line(SMTP_REPLY_MAX_LINE + 1, endings[e], &n);
        got = whole_and_bytewise(s, n);
        assert_non_null(strstr(got, "error: reply line too long"));
        free(got);
        free(s);
    }
    /* refused as soon as the line is too long, without waiting for its end */
    size_t n;
    char *s = long_line(SMTP_REPLY_MAX_LINE + 1, "", &n);
    char *got = whole_and_bytewise(s, n);
    assert_string_equal(got, "error: reply line too long\n");
    free(got);
    free(s);
    /* a CR held at the limit, then text: too long */
    s = long_line(SMTP_REPLY_MAX_LINE, "\rx", &n);
    got = whole_and_bytewise(s, n);
    assert_string_equal(got, "error: reply line too long\n");
    free(got);
    free(s);
}

/* count continuation lines "250-l\r\n" and a last line "250 end\r\n". */
static char *many_lines(size_t count, size_t *n)
{
    email_buf_t b;
    email__buf_init(&b);
    for (size_t i = 1; i < count; i++)
        assert_int_equal(email__buf_puts(&b, "250-l\r\n"), 0);
    assert_int_equal(email__buf_puts(&b, "250 end\r\n"), 0);
    return email__buf_steal(&b, n);
}

static void test_line_count_limit(void **state)
{
    (void)state;
    size_t n;
    char *s = many_lines(SMTP_REPLY_MAX_LINES, &n);
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    smtp_reply_t r;
    const char *err = NULL;
    size_t used;
    assert_int_equal(email__smtp_reply_parse(&p, s, n, &used, &r, &err), 1);
    assert_int_equal(used, n);
    assert_int_equal(r.nlines, SMTP_REPLY_MAX_LINES);
    assert_string_equal(r.lines[SMTP_REPLY_MAX_LINES - 1], "250 end");
    assert_int_equal(strlen(r.text), (SMTP_REPLY_MAX_LINES - 1) * 2 + 3);
    email__smtp_reply_free(&r);
    email__smtp_reply_parser_free(&p);
    free(s);

    s = many_lines(SMTP_REPLY_MAX_LINES + 1, &n);
    char *got = whole_and_bytewise(s, n);
    assert_string_equal(got, "error: too many lines in one reply\n");
    free(got);
    free(s);
}

static void test_free_is_safe(void **state)
{
    (void)state;
    email__smtp_reply_free(NULL);
    smtp_reply_t r;
    memset(&r, 0, sizeof r);
    email__smtp_reply_free(&r);
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    const char *err = NULL;
    size_t used;
    assert_int_equal(email__smtp_reply_parse(&p, "250 a\r\n", 7, &used, &r, &err), 1);
    email__smtp_reply_free(&r);
    email__smtp_reply_free(&r);
    assert_null(r.lines);
    /* a parser holding a partial line and a partial reply */
    assert_int_equal(email__smtp_reply_parse(&p, "250-a\r\n250 b", 12, &used, &r, &err), 0);
    email__smtp_reply_parser_free(&p);
    assert_false(email__smtp_reply_parser_busy(&p));
    /* reusable after free, as after init */
    assert_int_equal(email__smtp_reply_parse(&p, "221 bye\r\n", 9, &used, &r, &err), 1);
    assert_string_equal(r.text, "bye");
    email__smtp_reply_free(&r);
    email__smtp_reply_parser_free(&p);
}

/* About 1 MB of pipelined replies, as one read: every reply comes out, in order. */
static void test_large_stream(void **state)
{
    (void)state;
    email_buf_t in, expected;
    email__buf_init(&in);
    email__buf_init(&expected);
    size_t i = 0;
    while (in.len < 1024 * 1024) {
        if (i % 10 == 0) {
            assert_int_equal(email__buf_printf(&in, "%s", EHLO), 0);
            assert_int_equal(email__buf_puts(&in, " data\r\n"), 0);
            assert_int_equal(email__buf_puts(&expected, "250 250 354 "), 0);
        } else {
            assert_int_equal(email__buf_printf(&in, "250 2.0.0 Ok: queued as %zu\r\n", i), 0);
            assert_int_equal(email__buf_puts(&expected, "250 "), 0);
        }
        i++;
    }
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    email_buf_t got;
    email__buf_init(&got);
    size_t off = 0, used;
    smtp_reply_t r;
    const char *err = NULL;
    while (off < in.len) {
        assert_int_equal(email__smtp_reply_parse(&p, in.data + off, in.len - off, &used, &r, &err),
                         1);
        assert_int_equal(email__buf_printf(&got, "%d ", r.code), 0);
        email__smtp_reply_free(&r);
        off += used;
    }
    assert_string_equal(got.data, expected.data);
    assert_false(email__smtp_reply_parser_busy(&p));
    email__smtp_reply_parser_free(&p);
    email__buf_free(&got);
    email__buf_free(&in);
    email__buf_free(&expected);
}

static void put(char *data, size_t *n, const char *s)
{
    memcpy(data + *n, s, strlen(s));
    *n += strlen(s);
}

/*
 * Random streams of mostly well-formed lines with damage here and there (bad or changed codes,
 * NUL, stray CR and LF, lines near the length limit, replies near the line limit). Fed whole,
 * byte by byte and in random pieces, they must give the same transcript; valgrind checks for
 * leaks on every path.
 */
static void test_fuzz(void **state)
{
    (void)state;
    static const char *const codes[] = {"250", "550", "451", "354", "221"};
    static const char *const seps[] = {"-", "-", "-", "-", " ", " ", ""};
    static const char *const bad[] = {"25", "2500 ", "650 ", "abc", "", "251-", "550 ", "\n"};
    static const char *const words[] = {"2.0.0 ", "5.7.1 ", "4.1.10 ", "2.1", "ok", " ", ".", "\r"};
    static const char *const endings[] = {"\r\n", "\r\n", "\r\n", "\n"};
#define PICK(a) (a)[next_random(&rng) % (sizeof(a) / sizeof((a)[0]))]
    uint64_t rng = 0x9E3779B97F4A7C15u;
    char *data = malloc(16384);
    assert_non_null(data);
    for (int round = 0; round < 500; round++) {
        size_t n = 0, target = 1 + next_random(&rng) % 4000;
        const char *code = PICK(codes);
        while (n < target) {
            uint64_t pick = next_random(&rng) % 100;
            if (pick < 1) {
                size_t lines = SMTP_REPLY_MAX_LINES - 2 + next_random(&rng) % 4;
                for (size_t i = 0; i < lines; i++)
                    put(data, &n, "250-ab\n");
                continue;
            }
            const char *sep = PICK(seps);
            if (pick < 98) {
                put(data, &n, code);
                put(data, &n, sep);
            } else {
                put(data, &n, PICK(bad));
            }
            /* after a bare code, any text would make the code invalid */
            for (size_t w = sep[0] ? next_random(&rng) % 5 : 0; w > 0; w--) {
                if (next_random(&rng) % 30 == 0)
                    data[n++] = (char)(next_random(&rng) & 0xFF);
                else
                    put(data, &n, PICK(words));
            }
            if (next_random(&rng) % 50 == 0) {
                size_t run = SMTP_REPLY_MAX_LINE - 40 + next_random(&rng) % 60;
                memset(data + n, 'x', run);
                n += run;
            }
            put(data, &n, PICK(endings));
            if (sep[0] != '-')
                code = PICK(codes);
        }
#undef PICK
        char *whole = transcript(data, n, 0, 0, NULL);
        char *bytes = transcript(data, n, 0, 1, NULL);
        char *pieces = transcript(data, n, 0, 0, &rng);
        assert_string_equal(bytes, whole);
        assert_string_equal(pieces, whole);
        free(whole);
        free(bytes);
        free(pieces);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line),
        cmocka_unit_test(test_partial_and_busy),
        cmocka_unit_test(test_ehlo_every_split),
        cmocka_unit_test(test_several_replies_in_one_chunk),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_code_alone),
        cmocka_unit_test(test_enhanced_codes),
        cmocka_unit_test(test_enhanced_multiline),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_error_consumed),
        cmocka_unit_test(test_line_length_limit),
        cmocka_unit_test(test_line_count_limit),
        cmocka_unit_test(test_free_is_safe),
        cmocka_unit_test(test_large_stream),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
