/*
 * Unit tests of lib/mime_headers.c: the header fields of the MIME writer, written from a
 * message_content_t built here and checked two ways: known answers for short fields, and for the
 * others a decoder of our own (below: unfolding, RFC 2047 encoded words B and Q, RFC 2231
 * sections, each word or section read back on its own with iconv) that must give the text back,
 * with every line within 78 characters (998 for a word no line can hold).
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
#include "encode.h"
#include "mime_headers.h"
#include "util.h"

#define ACCENTS "Fran\xc3\xa7ois d\xe2\x80\x99\xc3\x89lo\xc3\xafse"
#define JAPANESE "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d"
#define EMOJI "\xf0\x9f\x98\x80"

static const mail_mode_t modes[] = {MAIL_MODE_UTF8_QP, MAIL_MODE_UTF8_B64, MAIL_MODE_ISO88591,
                                    MAIL_MODE_ISO2022JP};

/* ---- The decoder ---- */

/* text (n octets, a complete text in charset) in UTF-8, appended to out. */
static void append_utf8(email_buf_t *out, const char *charset, const char *text, size_t n)
{
    iconv_t cd = iconv_open("UTF-8", charset);
    assert_true(cd != (iconv_t)-1);
    size_t cap = 4 * n + 16, left = n, room = cap;
    char *buf = malloc(cap), *in = (char *)text, *dst = buf;
    assert_non_null(buf);
    if (iconv(cd, &in, &left, &dst, &room) == (size_t)-1 || left ||
        iconv(cd, NULL, NULL, &dst, &room) == (size_t)-1)
        fail_msg("\"%.*s\" is not a complete text in %s", (int)n, text, charset);
    assert_int_equal(email__buf_append(out, buf, (size_t)(dst - buf)), 0);
    free(buf);
    iconv_close(cd);
}

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* s[0..n) has the shape of an encoded word. */
static bool is_word(const char *s, size_t n)
{
    return n >= 8 && !strncmp(s, "=?", 2) && !strncmp(s + n - 2, "?=", 2);
}

/* The encoded word s[0..n) ("=?charset?B|Q?text?=") decoded into out; false when s is not one. */
static bool decode_word(const char *s, size_t n, email_buf_t *out)
{
    if (!is_word(s, n))
        return false;
    assert_true(n <= 75); /* RFC 2047 2 */
    const char *cs = s + 2, *q = memchr(cs, '?', n - 2);
    assert_non_null(q);
    assert_true(q[2] == '?' && (q[1] == 'B' || q[1] == 'Q'));
    char charset[40];
    snprintf(charset, sizeof charset, "%.*s", (int)(q - cs), cs);
    const char *t = q + 3, *end = s + n - 2;
    email_buf_t raw;
    email__buf_init(&raw);
    if (q[1] == 'B') {
        assert_int_equal(email__base64_decode(&raw, t, (size_t)(end - t)), 0);
    } else {
        for (; t < end; t++) {
            int c = *t == '_' ? ' ' : *t;
            if (*t == '=') {
                assert_true(hex(t[1]) >= 0 && hex(t[2]) >= 0);
                c = hex(t[1]) << 4 | hex(t[2]);
                t += 2;
            } else {
                /* RFC 2047 5 (3): what a Q word may hold in a phrase */
                assert_true(strchr("!*+-/_", *t) || (*t >= '0' && *t <= '9') ||
                            (*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z'));
            }
            assert_int_equal(email__buf_putc(&raw, (char)c), 0);
        }
    }
    append_utf8(out, charset, raw.data ? raw.data : "", raw.len);
    email__buf_free(&raw);
    return true;
}

/*
 * Unstructured text or (phrase) a display name, unfolded, in UTF-8: encoded words decoded, the
 * white space between two of them dropped, in a phrase quoted strings unquoted, everything else
 * as it is. A new string.
 */
static char *decode_text(const char *s, bool phrase)
{
    email_buf_t out;
    email__buf_init(&out);
    size_t n = strlen(s), i = 0;
    bool last_encoded = false;
    while (i < n) {
        size_t ws = i;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t start = i;
        if (phrase && i < n && s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                i += s[i] == '\\';
            i++;
        }
        while (i < n && s[i] != ' ' && s[i] != '\t')
            i++;
        bool encoded = is_word(s + start, i - start);
        if (!(encoded && last_encoded))
            assert_int_equal(email__buf_append(&out, s + ws, start - ws), 0);
        if (encoded) {
            assert_true(decode_word(s + start, i - start, &out));
        } else {
            for (size_t k = start; k < i; k++) {
                if (phrase && s[k] == '"')
                    continue;
                k += phrase && s[k] == '\\';
                assert_int_equal(email__buf_putc(&out, s[k]), 0);
            }
        }
        last_encoded = encoded;
    }
    char *r = email__buf_steal(&out, NULL);
    email__buf_free(&out);
    return r ? r : strdup("");
}

/* Every line of the header block h within max octets, each ending with CRLF, none of white
   space only. */
static void assert_lines(const char *h, size_t max)
{
    while (*h) {
        const char *end = strstr(h, "\r\n");
        assert_non_null(end);
        if ((size_t)(end - h) > max)
            fail_msg("a line of %zu octets: \"%.*s\"", (size_t)(end - h), (int)(end - h), h);
        assert_true(strspn(h, " \t") < (size_t)(end - h));
        h = end + 2;
    }
}

/* The value of the field name in the header block h, unfolded: a new string, NULL when the
   field is not there. */
static char *field(const char *h, const char *name)
{
    size_t len = strlen(name);
    const char *p = h;
    while (*p && !(!strncmp(p, name, len) && p[len] == ':'))
        p = strstr(p, "\r\n") + 2;
    if (!*p)
        return NULL;
    p += len + 1;
    p += *p == ' ';
    email_buf_t v;
    email__buf_init(&v);
    for (;;) {
        const char *end = strstr(p, "\r\n");
        assert_int_equal(email__buf_append(&v, p, (size_t)(end - p)), 0);
        if (end[2] != ' ' && end[2] != '\t')
            break;
        p = end + 2;
    }
    char *r = email__buf_steal(&v, NULL);
    email__buf_free(&v);
    return r ? r : strdup("");
}

/* ---- The message's fields ---- */

typedef struct fixture {
    message_content_t c;
    message_header_t extra;
    email_buf_t m;
    char err[256];
} fixture_t;

static void fixture_init(fixture_t *f, mail_mode_t mode)
{
    memset(f, 0, sizeof *f);
    f->c.header_mode = f->c.body_mode = mode;
    email__buf_init(&f->m);
}

static void fixture_free(fixture_t *f)
{
    email__address_list_free(&f->c.from);
    email__address_list_free(&f->c.sender);
    email__address_list_free(&f->c.reply_to);
    email__address_list_free(&f->c.to);
    email__address_list_free(&f->c.cc);
    email__address_list_free(&f->c.bcc);
    email__buf_free(&f->m);
}

/* Appends the parsed addresses of text to l. */
static void add_addresses(address_list_t *l, const char *text)
{
    address_list_t more;
    char why[200];
    if (email__address_parse(text, true, &more, why, sizeof why))
        fail_msg("%s", why);
    assert_int_equal(email__address_list_append(l, &more), 0);
    email__address_list_free(&more);
}

/* The header block for f (0 expected), its lines checked against max. */
static const char *write_headers_max(fixture_t *f, size_t max)
{
    email__buf_reset(&f->m);
    mime_out_t o = {&f->m, &f->c, f->err, sizeof f->err};
    int rc = email__mime_put_message_headers(&o);
    if (rc)
        fail_msg("email__mime_put_message_headers: %d %s", rc, f->err);
    assert_lines(f->m.data, max);
    return f->m.data;
}

static const char *write_headers(fixture_t *f)
{
    return write_headers_max(f, MIME_LINE_SOFT);
}

/* The subject as written in mode; checks that it decodes back. A new string. */
static char *subject_in(mail_mode_t mode, const char *subject)
{
    fixture_t f;
    fixture_init(&f, mode);
    f.c.subject = (char *)subject;
    char *raw = field(write_headers(&f), "Subject");
    assert_non_null(raw);
    char *back = decode_text(raw, false);
    assert_string_equal(back, subject);
    free(back);
    fixture_free(&f);
    return raw;
}

/* ---- Unstructured fields: Subject and the caller's headers ---- */

static void test_subject_known_answers(void **state)
{
    (void)state;
    static const struct {
        mail_mode_t mode;
        const char *subject, *raw;
    } v[] = {
        {MAIL_MODE_UTF8_QP, "caf\xc3\xa9", "=?UTF-8?Q?caf=C3=A9?="},
        {MAIL_MODE_UTF8_B64, "caf\xc3\xa9", "=?UTF-8?B?Y2Fmw6k=?="},
        {MAIL_MODE_ISO88591, "caf\xc3\xa9", "=?ISO-8859-1?Q?caf=E9?="},
        /* 4D's "US-ASCII_ISO-2022-JP_UTF8_QP": UTF-8 Q words for what ISO-2022-JP lacks */
        {MAIL_MODE_ISO2022JP, "caf\xc3\xa9", "=?UTF-8?Q?caf=C3=A9?="},
        {MAIL_MODE_ISO2022JP, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
         "=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?="},
        {MAIL_MODE_ISO2022JP, "\xe6\x97\xa5 " EMOJI, "=?UTF-8?Q?=E6=97=A5_=F0=9F=98=80?="},
        {MAIL_MODE_UTF8_QP, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
         "=?UTF-8?Q?=E6=97=A5=E6=9C=AC=E8=AA=9E?="},
        {MAIL_MODE_UTF8_QP, "a_b=c?d \xc3\xa9", "=?UTF-8?Q?a=5Fb=3Dc=3Fd_=C3=A9?="},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char *raw = subject_in(v[i].mode, v[i].subject);
        assert_string_equal(raw, v[i].raw);
        free(raw);
    }
    /* ASCII stays as it is in every mode, "" too */
    for (size_t i = 0; i < 4; i++) {
        char *raw = subject_in(modes[i], "Plain subject, (with) <specials> \"quotes\"");
        assert_string_equal(raw, "Plain subject, (with) <specials> \"quotes\"");
        free(raw);
        fixture_t f;
        fixture_init(&f, modes[i]);
        f.c.subject = "";
        assert_string_equal(write_headers(&f), "Subject:\r\nMIME-Version: 1.0\r\n");
        fixture_free(&f);
    }
}

/* Long fields fold within 78 and read back whole, in every mode that can hold them. */
static void test_subject_folding(void **state)
{
    (void)state;
    char ascii[400] = "";
    while (strlen(ascii) < 300)
        strcat(ascii, "word, and another ");
    strcat(ascii, "end");
    char *raw = subject_in(MAIL_MODE_UTF8_QP, ascii);
    assert_string_equal(raw, ascii);
    free(raw);
    static const char *const latin = "R\xc3\xa9sum\xc3\xa9 d'une r\xc3\xa9union tr\xc3\xa8s "
                                     "longue, \xc3\xa0 la fa\xc3\xa7on fran\xc3\xa7" "aise, "
                                     "avec beaucoup de caract\xc3\xa8res accentu\xc3\xa9s";
    for (size_t i = 0; i < 4; i++)
        free(subject_in(modes[i], latin));
    for (size_t i = 0; i < 4; i++)
        if (modes[i] != MAIL_MODE_ISO88591)
            free(subject_in(modes[i], JAPANESE JAPANESE " " JAPANESE JAPANESE JAPANESE " x "
                                  JAPANESE JAPANESE JAPANESE JAPANESE));
    free(subject_in(MAIL_MODE_UTF8_QP, ACCENTS " " EMOJI " " JAPANESE " " ACCENTS " " EMOJI));
    /* text a reader would take for an encoded word is itself encoded */
    raw = subject_in(MAIL_MODE_UTF8_QP, "=?utf-8?q?not_one?=");
    assert_memory_equal(raw, "=?UTF-8?", 8);
    free(raw);
    /* a word no line can hold: kept as it is up to 998 octets a line, encoded beyond */
    char word[1200];
    memset(word, 'x', 800);
    word[800] = '\0';
    fixture_t f;
    fixture_init(&f, MAIL_MODE_UTF8_QP);
    f.c.subject = word;
    char *v = field(write_headers_max(&f, 998), "Subject");
    assert_string_equal(v, word);
    free(v);
    memset(word, 'x', 1100);
    word[1100] = '\0';
    v = field(write_headers(&f), "Subject");
    char *back = decode_text(v, false);
    assert_string_equal(back, word);
    free(back);
    free(v);
    fixture_free(&f);
}

/* The caller's headers go the same way; a failure names the field. */
static void test_caller_headers_and_refusals(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, MAIL_MODE_ISO88591);
    f.extra = (message_header_t){"X-Note", "na\xc3\xafve"};
    f.c.headers = &f.extra;
    f.c.nheaders = 1;
    assert_non_null(strstr(write_headers(&f), "\r\nX-Note: =?ISO-8859-1?Q?na=EFve?=\r\n"));
    /* ISO-8859-1 has no fallback: refused, never '?' */
    f.extra.value = JAPANESE;
    mime_out_t o = {&f.m, &f.c, f.err, sizeof f.err};
    assert_int_equal(email__mime_put_message_headers(&o), EMAIL_ECHARSET);
    assert_string_equal(f.err, "Header \"X-Note\" cannot be written in ISO-8859-1");
    f.c.nheaders = 0;
    f.c.subject = "5 \xe2\x82\xac";
    assert_int_equal(email__mime_put_message_headers(&o), EMAIL_ECHARSET);
    assert_string_equal(f.err, "Subject cannot be written in ISO-8859-1");
    /* the same text in the ISO-2022-JP mode falls back to UTF-8 */
    f.c.header_mode = MAIL_MODE_ISO2022JP;
    char *raw = field(write_headers(&f), "Subject");
    assert_string_equal(raw, "=?UTF-8?Q?5_=E2=82=AC?=");
    free(raw);
    fixture_free(&f);
}

/* ---- Address fields ---- */

/* The mailboxes of an unfolded address field as "name|addr" lines (name decoded). The names
   written here hold no "<" outside quotes and no comma outside quotes or encoded words. */
static char *decode_mailboxes(const char *v)
{
    email_buf_t out;
    email__buf_init(&out);
    const char *p = v;
    while (*p) {
        const char *end = p;
        bool quoted = false;
        for (; *end && (quoted || *end != ','); end++) {
            if (*end == '\\' && quoted)
                end++;
            else if (*end == '"')
                quoted = !quoted;
        }
        char *box = strndup(p, (size_t)(end - p));
        char *lt = strrchr(box, '<');
        char *name = NULL;
        if (lt) {
            *lt = '\0';
            size_t n = strlen(box);
            while (n && box[n - 1] == ' ')
                box[--n] = '\0';
            name = decode_text(box + strspn(box, " "), true);
            lt[strlen(lt + 1)] = '\0';
        }
        assert_int_equal(email__buf_printf(&out, "%s|%s\n", name ? name : "",
                                          lt ? lt + 1 : box + strspn(box, " ")), 0);
        free(name);
        free(box);
        p = *end ? end + 1 : end;
    }
    char *r = email__buf_steal(&out, NULL);
    email__buf_free(&out);
    return r;
}

/* The To field written for text in mode: raw (unfolded, a new string), and read back. */
static char *to_field(mail_mode_t mode, const char *text, const char *expect)
{
    fixture_t f;
    fixture_init(&f, mode);
    add_addresses(&f.c.to, text);
    char *raw = field(write_headers(&f), "To");
    assert_non_null(raw);
    char *boxes = decode_mailboxes(raw);
    assert_string_equal(boxes, expect);
    free(boxes);
    fixture_free(&f);
    return raw;
}

static void test_display_names(void **state)
{
    (void)state;
    static const struct {
        mail_mode_t mode;
        const char *in, *raw, *back;
    } v[] = {
        {MAIL_MODE_UTF8_QP, "John Q Public <jqp@example.com>", "John Q Public <jqp@example.com>",
         "John Q Public|jqp@example.com\n"},
        {MAIL_MODE_UTF8_QP, "bare@example.com", "bare@example.com", "|bare@example.com\n"},
        {MAIL_MODE_UTF8_QP, "\"Doe, John\" <j@d.org>", "\"Doe, John\" <j@d.org>",
         "Doe, John|j@d.org\n"},
        {MAIL_MODE_UTF8_QP, "John Q. Public <q@x.org>", "\"John Q. Public\" <q@x.org>",
         "John Q. Public|q@x.org\n"},
        {MAIL_MODE_UTF8_QP, "\"Quote \\\" and \\\\ backslash\" <q@x.org>",
         "\"Quote \\\" and \\\\ backslash\" <q@x.org>", "Quote \" and \\ backslash|q@x.org\n"},
        /* plain words stay plain, the others become encoded words */
        {MAIL_MODE_UTF8_QP, "J\xc3\xb6rg Smith <j@x.de>", "=?UTF-8?Q?J=C3=B6rg?= Smith <j@x.de>",
         "J\xc3\xb6rg Smith|j@x.de\n"},
        {MAIL_MODE_UTF8_B64, "J\xc3\xb6rg Smith <j@x.de>", "=?UTF-8?B?SsO2cmc=?= Smith <j@x.de>",
         "J\xc3\xb6rg Smith|j@x.de\n"},
        {MAIL_MODE_ISO88591, "J\xc3\xb6rg Smith <j@x.de>", "=?ISO-8859-1?Q?J=F6rg?= Smith <j@x.de>",
         "J\xc3\xb6rg Smith|j@x.de\n"},
        {MAIL_MODE_ISO2022JP, "J\xc3\xb6rg Smith <j@x.de>", "=?UTF-8?Q?J=C3=B6rg?= Smith <j@x.de>",
         "J\xc3\xb6rg Smith|j@x.de\n"},
        /* adjacent words that need encoding are one run, their space inside it */
        {MAIL_MODE_UTF8_QP, "J\xc3\xb6rg M\xc3\xbcller <j@x.de>",
         "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@x.de>", "J\xc3\xb6rg M\xc3\xbcller|j@x.de\n"},
        /* a comma in an encoded name is encoded: it cannot split the list */
        {MAIL_MODE_UTF8_QP, "\"M\xc3\xbcller, J\xc3\xb6rg\" <j@x.de>, o@x.de",
         "=?UTF-8?Q?M=C3=BCller=2C_J=C3=B6rg?= <j@x.de>, o@x.de",
         "M\xc3\xbcller, J\xc3\xb6rg|j@x.de\n|o@x.de\n"},
        {MAIL_MODE_ISO2022JP, "\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e <t@x.jp>",
         "=?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?= <t@x.jp>",
         "\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e|t@x.jp\n"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char *raw = to_field(v[i].mode, v[i].in, v[i].back);
        assert_string_equal(raw, v[i].raw);
        free(raw);
    }
}

/* Many mailboxes fold between mailboxes, never inside one; long names fold as encoded words. */
static void test_address_folding(void **state)
{
    (void)state;
    email_buf_t in, expect, unfolded;
    email__buf_init(&in);
    email__buf_init(&expect);
    email__buf_init(&unfolded);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(email__buf_printf(&in, "%sR\xc3\xa9" "cipient %d <r%d@example.org>",
                                          i ? ", " : "", i, i), 0);
        assert_int_equal(
            email__buf_printf(&expect, "R\xc3\xa9" "cipient %d|r%d@example.org\n", i, i), 0);
        assert_int_equal(email__buf_printf(&unfolded, "%s=?UTF-8?Q?R=C3=A9cipient?= %d "
                                          "<r%d@example.org>", i ? ", " : "", i, i), 0);
    }
    for (size_t m = 0; m < 4; m++) {
        if (modes[m] == MAIL_MODE_UTF8_QP) {
            char *raw = to_field(modes[m], in.data, expect.data);
            assert_string_equal(raw, unfolded.data);
            free(raw);
        } else {
            free(to_field(modes[m], in.data, expect.data));
        }
    }
    /* a name longer than 200 octets, ASCII or not, goes in encoded words (they fold) */
    char name[400] = "", text[1000], back[1000];
    while (strlen(name) < 250)
        strcat(name, "Averylongname ");
    strcat(name, "End");
    snprintf(text, sizeof text, "\"%s\" <l@example.org>, short@example.org", name);
    snprintf(back, sizeof back, "%s|l@example.org\n|short@example.org\n", name);
    free(to_field(MAIL_MODE_UTF8_QP, text, back));
    char accented[600];
    snprintf(accented, sizeof accented, "%s \xc3\xa9t\xc3\xa9", name);
    snprintf(text, sizeof text, "\"%s\" <l@example.org>", accented);
    snprintf(back, sizeof back, "%s|l@example.org\n", accented);
    for (size_t m = 0; m < 4; m++)
        free(to_field(modes[m], text, back));
    email__buf_free(&in);
    email__buf_free(&expect);
    email__buf_free(&unfolded);
}

/* From, Sender, Reply-To, To, Cc in that order; Bcc never. */
static void test_address_fields(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, MAIL_MODE_UTF8_QP);
    add_addresses(&f.c.from, "Alice <a@example.org>");
    add_addresses(&f.c.to, "b@example.org");
    add_addresses(&f.c.cc, "\"C, c\" <c@example.org>");
    add_addresses(&f.c.bcc, "Hidden <h@example.org>");
    f.c.date = "Mon, 1 Jan 2024 00:00:00 +0000";
    assert_string_equal(write_headers(&f), "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                           "From: Alice <a@example.org>\r\n"
                                           "To: b@example.org\r\n"
                                           "Cc: \"C, c\" <c@example.org>\r\n"
                                           "MIME-Version: 1.0\r\n");
    fixture_free(&f);
}

/* ---- RFC 2231 parameters ---- */

/*
 * The value of the parameter attr written as ";" CRLF " attr..." by email__mime_put_param, in
 * UTF-8: a quoted string, or RFC 2231 sections numbered from 0 (the charset on the first), each
 * percent-decoded and read in its charset on its own. A new string.
 */
static char *decode_param(const char *s, const char *attr)
{
    email_buf_t out;
    email__buf_init(&out);
    size_t alen = strlen(attr);
    char charset[40] = "";
    for (unsigned section = 0; *s; section++) {
        assert_memory_equal(s, ";\r\n ", 4);
        s += 4;
        assert_memory_equal(s, attr, alen);
        s += alen;
        if (*s == '=') {
            assert_int_equal(section, 0);
            char *v = decode_text(s + 1, true);
            assert_int_equal(email__buf_puts(&out, v), 0);
            free(v);
            break;
        }
        unsigned n = 0;
        int used = 0;
        /* "*=": a single section, unnumbered */
        if (strncmp(s, "*=", 2))
            assert_true(sscanf(s, "*%u%n", &n, &used) == 1 && n == section);
        s += used;
        assert_memory_equal(s, "*=", 2);
        s += 2;
        if (section == 0) {
            const char *q = strstr(s, "''");
            assert_non_null(q);
            snprintf(charset, sizeof charset, "%.*s", (int)(q - s), s);
            s = q + 2;
        }
        email_buf_t raw;
        email__buf_init(&raw);
        for (; *s && *s != ';'; s++) {
            char c = *s;
            if (c == '%') {
                c = (char)(hex(s[1]) << 4 | hex(s[2]));
                s += 2;
            }
            assert_int_equal(email__buf_putc(&raw, c), 0);
        }
        append_utf8(&out, charset, raw.data ? raw.data : "", raw.len);
        email__buf_free(&raw);
    }
    char *r = email__buf_steal(&out, NULL);
    email__buf_free(&out);
    return r;
}

/* The parameter written for name in mode, checked to read back as name. A new string. */
static char *param_in(mail_mode_t mode, const char *name)
{
    fixture_t f;
    fixture_init(&f, mode);
    mime_out_t o = {&f.m, &f.c, f.err, sizeof f.err};
    int rc = email__mime_put_param(&o, "Attachment name", "filename", name);
    if (rc)
        fail_msg("email__mime_put_param: %d %s", rc, f.err);
    /* the lines as they will be: the field goes on after its first ";", and ends with CRLF */
    assert_int_equal(email__buf_puts(&f.m, "\r\n"), 0);
    assert_lines(f.m.data + 3, MIME_LINE_SOFT);
    f.m.len -= 2;
    f.m.data[f.m.len] = '\0';
    char *back = decode_param(f.m.data, "filename");
    assert_string_equal(back, name);
    free(back);
    char *raw = email__buf_steal(&f.m, NULL);
    fixture_free(&f);
    return raw;
}

static void test_params(void **state)
{
    (void)state;
    static const struct {
        mail_mode_t mode;
        const char *name, *raw;
    } v[] = {
        {MAIL_MODE_UTF8_QP, "report.pdf", ";\r\n filename=\"report.pdf\""},
        {MAIL_MODE_UTF8_QP, "a \"b\" \\c.txt", ";\r\n filename=\"a \\\"b\\\" \\\\c.txt\""},
        {MAIL_MODE_UTF8_QP, "r\xc3\xa9sum\xc3\xa9.pdf",
         ";\r\n filename*=utf-8''r%C3%A9sum%C3%A9.pdf"},
        {MAIL_MODE_UTF8_B64, "r\xc3\xa9sum\xc3\xa9.pdf",
         ";\r\n filename*=utf-8''r%C3%A9sum%C3%A9.pdf"},
        {MAIL_MODE_ISO88591, "r\xc3\xa9sum\xc3\xa9.pdf",
         ";\r\n filename*=iso-8859-1''r%E9sum%E9.pdf"},
        {MAIL_MODE_ISO2022JP, "r\xc3\xa9sum\xc3\xa9.pdf",
         ";\r\n filename*=utf-8''r%C3%A9sum%C3%A9.pdf"},
        {MAIL_MODE_ISO2022JP, "\xe6\x97\xa5.txt",
         ";\r\n filename*=iso-2022-jp''%1B$BF|%1B%28B.txt"},
        /* a control character is not printable: percent-encoded, in US-ASCII */
        {MAIL_MODE_UTF8_QP, "tab\there", ";\r\n filename*=us-ascii''tab%09here"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char *raw = param_in(v[i].mode, v[i].name);
        assert_string_equal(raw, v[i].raw);
        free(raw);
    }
    /* long names: sections, each a complete text in its charset */
    char ascii[200] = "";
    while (strlen(ascii) < 150)
        strcat(ascii, "a-long-file-name ");
    char *raw = param_in(MAIL_MODE_UTF8_QP, ascii);
    assert_memory_equal(raw, ";\r\n filename*0*=us-ascii''a-long-file-name%20", 44);
    assert_non_null(strstr(raw, ";\r\n filename*3*="));
    free(raw);
    const char *latin = "Compte rendu de la r\xc3\xa9union du comit\xc3\xa9 \xc3\xa9largi, "
                        "version d\xc3\xa9" "finitive.pdf";
    for (size_t m = 0; m < 4; m++)
        free(param_in(modes[m], latin));
    for (size_t m = 0; m < 4; m++)
        if (modes[m] != MAIL_MODE_ISO88591)
            free(param_in(modes[m], JAPANESE JAPANESE JAPANESE JAPANESE " " JAPANESE ".doc"));
    free(param_in(MAIL_MODE_UTF8_QP, EMOJI EMOJI EMOJI EMOJI EMOJI EMOJI EMOJI EMOJI EMOJI
                                     EMOJI EMOJI EMOJI EMOJI EMOJI ".png"));
    /* ISO-8859-1 refuses what it lacks, naming the field */
    fixture_t f;
    fixture_init(&f, MAIL_MODE_ISO88591);
    mime_out_t o = {&f.m, &f.c, f.err, sizeof f.err};
    assert_int_equal(email__mime_put_param(&o, "Attachment name", "filename", "\xe2\x82\xac.txt"),
                     EMAIL_ECHARSET);
    assert_string_equal(f.err, "Attachment name cannot be written in ISO-8859-1");
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_known_answers),
        cmocka_unit_test(test_subject_folding),
        cmocka_unit_test(test_caller_headers_and_refusals),
        cmocka_unit_test(test_display_names),
        cmocka_unit_test(test_address_folding),
        cmocka_unit_test(test_address_fields),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
