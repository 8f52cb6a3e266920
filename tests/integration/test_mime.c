/*
 * The MIME composer end to end. Every structure in every charset mode is read back by Python's
 * email package (tests/mime_check.h); characters ISO-8859-1 lacks and header injection are refused
 * with the field named, and nothing is queued; in the ISO-2022-JP mode a field or part that
 * ISO-2022-JP cannot hold goes in UTF-8 on its own; a message of each structure goes through a
 * named session to aiosmtpd and what it spooled is the message composed; a 200 MB attachment
 * streams to smtp-sink in bounded memory (measured in a child process of its own).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "message.h"
#include "mime.h"
#include "mime_check.h"

/* Texts each charset can hold. */
#define LATIN_SUBJECT                                                                            \
    "R\xc3\xa9union \xc3\xa0 No\xc3\xabl : le caf\xc3\xa9 cr\xc3\xa8me du gar\xc3\xa7on, "       \
    "na\xc3\xafve question \xc2\xbf se\xc3\xb1or ? 25\xc2\xb0 \xc2\xa3 \xc3\x9f"
#define LATIN_NAME "Fran\xc3\xa7ois \xc3\x89lo\xc3\xafse"
#define LATIN_NAME2 "J\xc3\xb6rg M\xc3\xbcller"
#define LATIN_TEXT                                                                               \
    "Bonjour, caf\xc3\xa9 cr\xc3\xa8me \xc3\xa0 25\xc2\xb0 ?\n"                                  \
    "\xc2\xbfQu\xc3\xa9 tal, se\xc3\xb1or M\xc3\xbcller?\n.\nFin.\n"
#define LATIN_FILE "R\xc3\xa9sum\xc3\xa9 \xc3\xa9t\xc3\xa9.pdf"
#define JA_SUBJECT                                                                               \
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d\xe3\x81\xa7\xe3"   \
    "\x81\x99\xe3\x80\x82\xe4\xbc\x9a\xe8\xad\xb0\xe3\x81\xae\xe8\xb3\x87\xe6\x96\x99\xe3\x82"   \
    "\x92\xe9\x80\x81\xe3\x82\x8a\xe3\x81\xbe\xe3\x81\x99\xe3\x80\x81\xe3\x81\x94\xe7\xa2\xba"   \
    "\xe8\xaa\x8d\xe3\x81\x8f\xe3\x81\xa0\xe3\x81\x95\xe3\x81\x84\xe3\x80\x82 ASCII too"
#define JA_NAME "\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e"
#define JA_NAME2 "\xe9\x88\xb4\xe6\x9c\xa8\xe8\x8a\xb1\xe5\xad\x90"
#define JA_TEXT                                                                                  \
    "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe3\x80\x81\xe4\xb8\x96\xe7"   \
    "\x95\x8c\xe3\x80\x82\nASCII line\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x9c" \
    "\xac\xe6\x96\x87\xe3\x80\x82\xe3\x82\xab\xe3\x82\xbf\xe3\x82\xab\xe3\x83\x8a\xe3\x80\x81"   \
    "\xe6\xbc\xa2\xe5\xad\x97 end\n"
#define JA_FILE "\xe4\xbc\x9a\xe8\xad\xb0\xe8\xb3\x87\xe6\x96\x99.pdf"
#define EMOJI "\xf0\x9f\x98\x80\xf0\x9f\x8e\x89"
#define ALL_SUBJECT LATIN_NAME " " JA_NAME2 " " EMOJI " \xe2\x80\x94 a subject for every charset"
/* a display name too long for one encoded word comes back from Python with a space where the
   word was cut (Python keeps the white space between encoded words in a phrase): short names */
#define ALL_NAME "Zo\xc3\xab \xf0\x9f\x98\x80 \xe9\x88\xb4\xe6\x9c\xa8"
#define ALL_TEXT LATIN_TEXT JA_TEXT EMOJI " \xe2\x82\xac\n"
#define ALL_FILE "R\xc3\xa9sum\xc3\xa9 " JA_NAME2 " " EMOJI ".pdf"

#define BIG_ATTACHMENT (1024 * 1024)

/* One charset case: the modes and texts they can hold, and what Python should find. */
typedef struct mode_case {
    const char *header_mode, *body_mode;
    const char *subject, *from_name, *to_name, *text, *file_name;
    const char *words;    /* charsets and encodings of the encoded words */
    const char *cs, *cte; /* charset and transfer encoding of both bodies */
    const char *file_cs;  /* RFC 2231 charset of the file name */
} mode_case_t;

static const mode_case_t modes[] = {
    {EMAIL_MAIL_MODE_UTF8, EMAIL_MAIL_MODE_UTF8, ALL_SUBJECT, ALL_NAME, JA_NAME, ALL_TEXT,
     ALL_FILE, "UTF-8?Q", "utf-8", "quoted-printable", "utf-8"},
    {EMAIL_MAIL_MODE_UTF8_IN_BASE64, EMAIL_MAIL_MODE_UTF8_IN_BASE64, ALL_SUBJECT, ALL_NAME,
     LATIN_NAME2, ALL_TEXT, ALL_FILE, "UTF-8?B", "utf-8", "base64", "utf-8"},
    {EMAIL_MAIL_MODE_ISO88591, EMAIL_MAIL_MODE_ISO88591, LATIN_SUBJECT, LATIN_NAME, LATIN_NAME2,
     LATIN_TEXT, LATIN_FILE, "ISO-8859-1?Q", "iso-8859-1", "quoted-printable", "iso-8859-1"},
    {EMAIL_MAIL_MODE_ISO2022JP, EMAIL_MAIL_MODE_ISO2022JP, JA_SUBJECT, JA_NAME, JA_NAME2, JA_TEXT,
     JA_FILE, "ISO-2022-JP?B", "iso-2022-jp", "7bit", "iso-2022-jp"},
    /* headers and bodies choose apart */
    {EMAIL_MAIL_MODE_ISO2022JP, EMAIL_MAIL_MODE_UTF8, JA_SUBJECT, JA_NAME, JA_NAME2, ALL_TEXT,
     JA_FILE, "ISO-2022-JP?B", "utf-8", "quoted-printable", "iso-2022-jp"},
    {EMAIL_MAIL_MODE_UTF8_IN_BASE64, EMAIL_MAIL_MODE_ISO88591, ALL_SUBJECT, ALL_NAME, JA_NAME,
     LATIN_TEXT, ALL_FILE, "UTF-8?B", "iso-8859-1", "quoted-printable", "utf-8"},
    /* the ISO-2022-JP mode chooses field by field: the subject, the From name and the file name
       (emoji, accents) in UTF-8, the Japanese To name and bodies in ISO-2022-JP ... */
    {EMAIL_MAIL_MODE_ISO2022JP, EMAIL_MAIL_MODE_ISO2022JP, ALL_SUBJECT, ALL_NAME, JA_NAME, JA_TEXT,
     ALL_FILE, "ISO-2022-JP?B,UTF-8?Q", "iso-2022-jp", "7bit", "utf-8"},
    /* ... and part by part: bodies ISO-2022-JP cannot hold in UTF-8 quoted-printable */
    {EMAIL_MAIL_MODE_ISO2022JP, EMAIL_MAIL_MODE_ISO2022JP, JA_SUBJECT, LATIN_NAME, JA_NAME2,
     ALL_TEXT, LATIN_FILE, "ISO-2022-JP?B,UTF-8?Q", "utf-8", "quoted-printable", "utf-8"},
};
#define NMODES (sizeof modes / sizeof *modes)

enum { S_TEXT, S_HTML, S_ALTERNATIVE, S_RELATED, S_MIXED, S_ALL, NSTRUCTURES };
static const char *const shapes[NSTRUCTURES] = {
    "text/plain",
    "text/html",
    "multipart/alternative[text/plain,text/html]",
    "multipart/related[text/html,image/png]",
    "multipart/mixed[text/plain,application/octet-stream,application/pdf]",
    ("multipart/mixed[multipart/alternative[text/plain,multipart/related[text/html,image/png]],"
     "application/octet-stream,application/pdf]"),
};

static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake image";
static const char pdf[] = "%PDF-1.4\n\xe2\xe3\xcf\xd3\n%%EOF\n";

/* Files the cases share: 1 MB of random bytes, the inline image and the small PDF. */
static char *big_path, *png_path, *pdf_path;
static const char *self_path;

static int setup_files(void **state)
{
    (void)state;
    unsigned char *data = malloc(BIG_ATTACHMENT);
    assert_non_null(data);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < BIG_ATTACHMENT; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    big_path = mime_temp_file(data, BIG_ATTACHMENT);
    free(data);
    png_path = mime_temp_file(png, sizeof png - 1);
    pdf_path = mime_temp_file(pdf, sizeof pdf - 1);
    return 0;
}

static int teardown_files(void **state)
{
    (void)state;
    char *paths[] = {big_path, png_path, pdf_path};
    for (size_t i = 0; i < 3; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    email_shutdown();
    return 0;
}

static char *html_of(const char *text)
{
    static const char head[] = "<html><body><p>", tail[] = "</p><img src=\"cid:logo@example.org\">"
                                                           "</body></html>\n";
    char *html = malloc(sizeof head + strlen(text) + sizeof tail);
    assert_non_null(html);
    sprintf(html, "%s%s%s", head, text, tail);
    return html;
}

/* The message of one case: both modes' texts, the parts the structure has, a Bcc. */
static email_message_t *compose(const mode_case_t *mc, int structure)
{
    email_message_t *m = email_message_new();
    assert_non_null(m);
    char buf[512];
    snprintf(buf, sizeof buf, "%s <sender@example.org>", mc->from_name);
    assert_int_equal(email_message_set_from(m, buf), 0);
    snprintf(buf, sizeof buf, "\"%s\" <to@example.net>, plain@example.net", mc->to_name);
    assert_int_equal(email_message_add_to(m, buf), 0);
    assert_int_equal(email_message_add_cc(m, "Carol Example <carol@example.com>"), 0);
    assert_int_equal(email_message_add_bcc(m, "Hidden <hidden@example.com>"), 0);
    assert_int_equal(email_message_set_subject(m, mc->subject), 0);
    assert_int_equal(email_message_set_charsets(m, mc->header_mode, mc->body_mode), 0);
    bool html = structure != S_TEXT && structure != S_MIXED;
    bool text = structure != S_HTML && structure != S_RELATED;
    if (text)
        assert_int_equal(email_message_set_text_body(m, mc->text), 0);
    if (html) {
        char *h = html_of(mc->text);
        assert_int_equal(email_message_set_html_body(m, h), 0);
        free(h);
    }
    if (structure == S_RELATED || structure == S_ALL)
        assert_int_equal(email_message_add_inline(m, NULL, png, sizeof png - 1,
                                                  "<logo@example.org>", "image/png"),
                         0);
    if (structure == S_MIXED || structure == S_ALL) {
        assert_int_equal(email_message_add_attachment_file(m, big_path, "random.bin", NULL), 0);
        assert_int_equal(
            email_message_add_attachment_data(m, pdf, sizeof pdf - 1, mc->file_name, NULL), 0);
    }
    return m;
}

static void expect_case(mime_expect_t *e, const mode_case_t *mc, int structure)
{
    char buf[512];
    expect_init(e);
    expect_add(e, "subject", mc->subject);
    snprintf(buf, sizeof buf, "%s|sender@example.org", mc->from_name);
    expect_add(e, "from", buf);
    snprintf(buf, sizeof buf, "%s|to@example.net", mc->to_name);
    expect_add(e, "to", buf);
    expect_add(e, "to", "|plain@example.net");
    expect_add(e, "cc", "Carol Example|carol@example.com");
    expect_add(e, "shape", shapes[structure]);
    expect_add(e, "words", mc->words);
    if (structure != S_HTML && structure != S_RELATED) {
        expect_add(e, "plain_body", mc->text);
        expect_add(e, "plain_cs", mc->cs);
        expect_add(e, "plain_cte", mc->cte);
    }
    if (structure != S_TEXT && structure != S_MIXED) {
        char *h = html_of(mc->text);
        expect_add(e, "html_body", h);
        free(h);
        expect_add(e, "html_cs", mc->cs);
        expect_add(e, "html_cte", mc->cte);
    }
    if (structure == S_RELATED || structure == S_ALL) {
        expect_add(e, "inline", "<logo@example.org>");
        expect_add(e, "inline_path", png_path);
    }
    if (structure == S_MIXED || structure == S_ALL) {
        expect_add(e, "att", "random.bin");
        expect_add(e, "att_path", big_path);
        expect_add(e, "att", mc->file_name);
        expect_add(e, "att_path", pdf_path);
        expect_add(e, "att_cs", ""); /* "random.bin" is a quoted string */
        expect_add(e, "att_cs", mc->file_cs);
    }
}

static char *mime_of(const email_message_t *m, size_t *len)
{
    char *mime = NULL;
    int rc = email_message_to_mime(m, &mime, len);
    if (rc)
        fail_msg("to_mime: %s: %s", email_error_name(rc), email_error_info());
    return mime;
}

/* ---- Every structure in every charset mode ---- */

static void test_structures_and_charsets(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMODES; k++) {
        for (int s = 0; s < NSTRUCTURES; s++) {
            email_message_t *m = compose(&modes[k], s);
            size_t len;
            char *mime = mime_of(m, &len);
            mime_check_lines(mime, len);
            assert_null(strstr(mime, "hidden"));
            mime_expect_t e;
            expect_case(&e, &modes[k], s);
            mime_check_bytes(mime, len, &e);
            expect_free(&e);
            free(mime);
            email_message_free(m);
        }
    }
}

/* Lines longer than 998 octets in every body charset: quoted-printable, read back whole. */
static void test_long_lines(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMODES; k++) {
        char *text = malloc(40 * strlen(modes[k].text) + 2);
        assert_non_null(text);
        text[0] = '\0';
        for (int i = 0; i < 40; i++)
            strcat(text, modes[k].text);
        for (char *p = text; (p = strchr(p, '\n')) != NULL;)
            *p = ' '; /* one line of some 3000 octets */
        strcat(text, "\n");
        email_message_t *m = compose(&modes[k], S_TEXT);
        assert_int_equal(email_message_set_text_body(m, text), 0);
        size_t len;
        char *mime = mime_of(m, &len);
        mime_check_lines(mime, len);
        mime_expect_t e;
        expect_case(&e, &modes[k], S_TEXT);
        for (int i = 0; i < 3; i++) /* the body expectations, replaced */
            free(e.args[--e.n]);
        expect_add(&e, "plain_body", text);
        expect_add(&e, "plain_cs", modes[k].cs);
        expect_add(&e, "plain_cte", !strcmp(modes[k].cte, "7bit") ? "quoted-printable"
                                                                  : modes[k].cte);
        mime_check_bytes(mime, len, &e);
        expect_free(&e);
        free(mime);
        free(text);
        email_message_free(m);
    }
}

/* ---- Refusals ---- */

typedef struct bad_field {
    const char *field; /* as the error text names it */
    int (*set)(email_message_t *, const char *);
} bad_field_t;

static int set_from_name(email_message_t *m, const char *t)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s <a@example.org>", t);
    return email_message_set_from(m, buf);
}
static int add_to_name(email_message_t *m, const char *t)
{
    char buf[256];
    snprintf(buf, sizeof buf, "ok@example.org, %s <b@example.org>", t);
    return email_message_add_to(m, buf);
}
static int add_cc_name(email_message_t *m, const char *t)
{
    char buf[256];
    snprintf(buf, sizeof buf, "\"%s\" <c@example.org>", t);
    return email_message_add_cc(m, buf);
}
static int set_reply_to_name(email_message_t *m, const char *t)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s <r@example.org>", t);
    return email_message_set_reply_to(m, buf);
}
static int set_sender_name(email_message_t *m, const char *t)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s <s@example.org>", t);
    return email_message_set_sender(m, buf);
}
static int add_note(email_message_t *m, const char *t)
{
    return email_message_add_header(m, "X-Note", t);
}
static int add_named_attachment(email_message_t *m, const char *t)
{
    return email_message_add_attachment_data(m, "x", 1, t, "text/plain");
}

/* A character ISO-8859-1 lacks (that mode has no fallback): EMAIL_ECHARSET naming the field,
   nothing written, and the same refusal where the library freezes a message to queue it. */
static void test_charset_refusals(void **state)
{
    (void)state;
    static const bad_field_t fields[] = {
        {"Subject", email_message_set_subject},
        {"From", set_from_name},
        {"To", add_to_name},
        {"Cc", add_cc_name},
        {"Reply-To", set_reply_to_name},
        {"Sender", set_sender_name},
        {"Header \"X-Note\"", add_note},
        {"Text body", email_message_set_text_body},
        {"HTML body", email_message_set_html_body},
        {"Attachment name", add_named_attachment},
    };
    static const struct {
        const char *mode, *charset, *text;
    } bad[] = {
        {EMAIL_MAIL_MODE_ISO88591, "ISO-8859-1", "smile " EMOJI},
        {EMAIL_MAIL_MODE_ISO88591, "ISO-8859-1", JA_NAME},
        {EMAIL_MAIL_MODE_ISO88591, "ISO-8859-1", "5 \xe2\x82\xac"}, /* the euro is not Latin-1 */
    };
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
            email_message_t *m = email_message_new();
            assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
            assert_int_equal(email_message_add_to(m, "b@example.org"), 0);
            assert_int_equal(email_message_set_charsets(m, bad[b].mode, bad[b].mode), 0);
            assert_int_equal(fields[f].set(m, bad[b].text), 0);
            char want[128];
            snprintf(want, sizeof want, "%s cannot be written in %s", fields[f].field,
                     bad[b].charset);
            char *out = NULL;
            assert_int_equal(email_message_to_mime(m, &out, NULL), EMAIL_ECHARSET);
            assert_string_equal(email_error_info(), want);
            assert_null(out);
            email_message_t *frozen;
            mime_reader_t *r = NULL;
            char err[256];
            assert_int_equal(email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err), 0);
            assert_int_equal(email__mime_reader_new(frozen, &r, err, sizeof err), EMAIL_ECHARSET);
            assert_string_equal(err, want);
            assert_null(r);
            email_message_free(frozen);
            email_message_free(m);
        }
    }
    /* a Bcc is never written: its name needs no charset */
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
    assert_int_equal(email_message_add_bcc(m, EMOJI " <b@example.org>"), 0);
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO88591, NULL), 0);
    size_t len;
    free(mime_of(m, &len));
    email_message_free(m);
}

/* Reads a MIME reader to its end; the bytes are malloc'ed. */
static char *read_all(mime_reader_t *r, size_t *len)
{
    uint64_t size = email__mime_reader_size(r);
    char *data = malloc((size_t)size + 1);
    assert_non_null(data);
    size_t got = 0;
    ssize_t k;
    while ((k = email__mime_reader_read(r, data + got, (size_t)size + 1 - got)) > 0)
        got += (size_t)k;
    assert_int_equal(k, 0);
    assert_int_equal(got, size);
    *len = got;
    return data;
}

/* What Python must find in the message of test_iso2022jp_fallbacks: field holding text, every
   other field ASCII, the one non-ASCII field in UTF-8 (att_path: the attachment's bytes). */
static void expect_fallback(mime_expect_t *e, const char *field, const char *text,
                            const char *att_path)
{
    char buf[256];
    expect_init(e);
#define IS(name) (!strcmp(field, name))
    if (IS("Subject"))
        expect_add(e, "subject", text);
    snprintf(buf, sizeof buf, "%s|a@example.org", IS("From") ? text : "");
    expect_add(e, "from", buf);
    expect_add(e, "to", "|base@example.net");
    if (IS("To")) {
        expect_add(e, "to", "|ok@example.org");
        snprintf(buf, sizeof buf, "%s|b@example.org", text);
        expect_add(e, "to", buf);
    }
    snprintf(buf, sizeof buf, "%s|c@example.org", text);
    if (IS("Cc"))
        expect_add(e, "cc", buf);
    snprintf(buf, sizeof buf, "%s|r@example.org", text);
    if (IS("Reply-To"))
        expect_add(e, "reply-to", buf);
    snprintf(buf, sizeof buf, "%s|s@example.org", text);
    if (IS("Sender"))
        expect_add(e, "sender", buf);
    snprintf(buf, sizeof buf, "X-Note|%s", text);
    if (IS("Header \"X-Note\""))
        expect_add(e, "header", buf);
    bool header = !strstr(field, "body") && !strstr(field, "name");
    expect_add(e, "words", header ? "UTF-8?Q" : "");
    snprintf(buf, sizeof buf, "%s\n", text);
    if (IS("HTML body")) {
        expect_add(e, "shape", "text/html");
        expect_add(e, "html_body", buf);
        expect_add(e, "html_cs", "utf-8");
        expect_add(e, "html_cte", "quoted-printable");
        return;
    }
    if (IS("Text body")) {
        expect_add(e, "plain_body", buf);
        expect_add(e, "plain_cs", "utf-8");
        expect_add(e, "plain_cte", "quoted-printable");
    } else {
        expect_add(e, "plain_body", "");
    }
    if (IS("Attachment name")) {
        expect_add(e, "shape", "multipart/mixed[text/plain,text/plain]");
        expect_add(e, "att", text);
        expect_add(e, "att_path", att_path);
        expect_add(e, "att_cs", "utf-8");
    } else {
        expect_add(e, "shape", "text/plain");
    }
#undef IS
}

/*
 * The ISO-2022-JP mode ("US-ASCII_ISO-2022-JP_UTF8_QP") never refuses: a field or part that
 * ISO-2022-JP cannot hold (an emoji, accented Latin letters, half-width katakana) goes in UTF-8 -
 * Q encoded words, RFC 2231 utf-8'', quoted-printable - and comes back identical; the same where
 * the library freezes a message to queue it.
 */
static void test_iso2022jp_fallbacks(void **state)
{
    (void)state;
    static const bad_field_t fields[] = {
        {"Subject", email_message_set_subject},
        {"From", set_from_name},
        {"To", add_to_name},
        {"Cc", add_cc_name},
        {"Reply-To", set_reply_to_name},
        {"Sender", set_sender_name},
        {"Header \"X-Note\"", add_note},
        {"Text body", email_message_set_text_body},
        {"HTML body", email_message_set_html_body},
        {"Attachment name", add_named_attachment},
    };
    static const char *const texts[] = {
        JA_NAME " " EMOJI, /* mostly Japanese, but not all of it: UTF-8 as a whole */
        LATIN_NAME,
        "\xef\xbd\xb1\xef\xbd\xb2", /* half-width katakana: not in ISO-2022-JP */
    };
    char *x_path = mime_temp_file("x", 1);
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
            email_message_t *m = email_message_new();
            assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
            assert_int_equal(email_message_add_to(m, "base@example.net"), 0);
            assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO2022JP,
                                                        EMAIL_MAIL_MODE_ISO2022JP),
                             0);
            assert_int_equal(fields[f].set(m, texts[t]), 0);
            mime_expect_t e;
            expect_fallback(&e, fields[f].field, texts[t], x_path);
            size_t len;
            char *mime = mime_of(m, &len);
            mime_check_lines(mime, len);
            /* nothing in ISO-2022-JP: no escape sequence, no charset naming it */
            assert_null(memchr(mime, 0x1b, len));
            assert_null(strstr(mime, "ISO-2022-JP"));
            assert_null(strstr(mime, "iso-2022-jp"));
            mime_check_bytes(mime, len, &e);
            free(mime);
            email_message_t *frozen;
            mime_reader_t *r = NULL;
            char err[256];
            assert_int_equal(email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err), 0);
            if (email__mime_reader_new(frozen, &r, err, sizeof err))
                fail_msg("%s: %s", fields[f].field, err);
            mime = read_all(r, &len);
            mime_check_lines(mime, len);
            mime_check_bytes(mime, len, &e);
            free(mime);
            email__mime_reader_free(r);
            expect_free(&e);
            email_message_free(frozen);
            email_message_free(m);
        }
    }
    unlink(x_path);
    free(x_path);
}

/* A Japanese body with one emoji in the ISO-2022-JP mode: the whole part in UTF-8
   quoted-printable, not Japanese in ISO-2022-JP with the emoji in something else; the other
   part of the same message, Japanese only, stays ISO-2022-JP. */
static void test_iso2022jp_body_whole_part(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
    assert_int_equal(email_message_add_to(m, "b@example.org"), 0);
    assert_int_equal(email_message_set_subject(m, JA_SUBJECT), 0);
    assert_int_equal(
        email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO2022JP, EMAIL_MAIL_MODE_ISO2022JP), 0);
    const char *text = JA_TEXT EMOJI "\n";
    assert_int_equal(email_message_set_text_body(m, text), 0);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", JA_SUBJECT);
    expect_add(&e, "from", "|a@example.org");
    expect_add(&e, "to", "|b@example.org");
    expect_add(&e, "shape", "text/plain");
    expect_add(&e, "words", "ISO-2022-JP?B");
    expect_add(&e, "plain_body", text);
    expect_add(&e, "plain_cs", "utf-8");
    expect_add(&e, "plain_cte", "quoted-printable");
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    mime_check_bytes(mime, len, &e);
    /* the body holds no escape sequence: only the subject's words are ISO-2022-JP */
    const char *body = strstr(mime, "\r\n\r\n");
    assert_non_null(body);
    assert_null(memchr(body, 0x1b, len - (size_t)(body - mime)));
    assert_null(strstr(body, "=1B"));
    assert_non_null(strstr(mime, "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Transfer-Encoding: quoted-printable\r\n"));
    free(mime);
    expect_free(&e);

    /* text/plain Japanese only, text/html with the emoji: each part chooses for itself */
    char *html = html_of(text);
    assert_int_equal(email_message_set_text_body(m, JA_TEXT), 0);
    assert_int_equal(email_message_set_html_body(m, html), 0);
    expect_init(&e);
    expect_add(&e, "subject", JA_SUBJECT);
    expect_add(&e, "from", "|a@example.org");
    expect_add(&e, "to", "|b@example.org");
    expect_add(&e, "shape", "multipart/alternative[text/plain,text/html]");
    expect_add(&e, "words", "ISO-2022-JP?B");
    expect_add(&e, "plain_body", JA_TEXT);
    expect_add(&e, "plain_cs", "iso-2022-jp");
    expect_add(&e, "plain_cte", "7bit");
    expect_add(&e, "html_body", html);
    expect_add(&e, "html_cs", "utf-8");
    expect_add(&e, "html_cte", "quoted-printable");
    mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    mime_check_bytes(mime, len, &e);
    free(mime);
    expect_free(&e);
    free(html);
    email_message_free(m);
}

/* CR, LF or CR LF anywhere a header is made from: refused with the field named, the message as
   it was. */
static void test_header_injection(void **state)
{
    (void)state;
    static const char *const breaks[] = {"\r\nBcc: injected@example.org", "\nX-Injected: 1",
                                         "\rX-Injected: 1", "\r\n\r\ninjected body"};
    char *path = mime_temp_file("x", 1);
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "Alice <alice@example.org>"), 0);
    assert_int_equal(email_message_add_to(m, "bob@example.com"), 0);
    assert_int_equal(email_message_set_subject(m, "Hello"), 0);
    for (size_t i = 0; i < sizeof breaks / sizeof *breaks; i++) {
        char name[128], addr[128], value[128];
        snprintf(name, sizeof name, "Eve%s <eve@example.org>", breaks[i]);
        snprintf(addr, sizeof addr, "eve@example.org%s", breaks[i]);
        snprintf(value, sizeof value, "value%s", breaks[i]);
#define REFUSED(call, prefix)                                                                      \
    do {                                                                                           \
        assert_int_equal((call), EMAIL_EINVAL);                                                    \
        if (strncmp(email_error_info(), prefix, strlen(prefix)))                                 \
            fail_msg("\"%s\" does not start with \"%s\"", email_error_info(), prefix);         \
    } while (0)
        REFUSED(email_message_set_subject(m, value), "Subject: ");
        REFUSED(email_message_set_from(m, name), "From: ");
        REFUSED(email_message_set_from(m, addr), "From: ");
        REFUSED(email_message_set_sender(m, name), "Sender: ");
        REFUSED(email_message_set_reply_to(m, addr), "Reply-To: ");
        REFUSED(email_message_add_to(m, name), "To: ");
        REFUSED(email_message_add_to(m, addr), "To: ");
        REFUSED(email_message_add_cc(m, name), "Cc: ");
        REFUSED(email_message_add_bcc(m, addr), "Bcc: ");
        REFUSED(email_message_add_header(m, "X-Note", value), "Header \"X-Note\": ");
        REFUSED(email_message_add_header(m, value, "v"), "Header: ");
        REFUSED(email_message_add_attachment_data(m, "x", 1, value, NULL), "Attachment: ");
        REFUSED(email_message_add_attachment_file(m, path, value, NULL), "Attachment: ");
        REFUSED(email_message_add_attachment_data(m, "x", 1, "a.txt", value), "Attachment: ");
        REFUSED(email_message_add_inline(m, NULL, "x", 1, value, NULL), "Inline part: ");
#undef REFUSED
        assert_int_equal(email_message_set_subject(m, value), EMAIL_EINVAL);
        assert_string_equal(email_error_info(), "Subject: line breaks are not allowed");
    }
    size_t len;
    char *mime = mime_of(m, &len);
    assert_null(strstr(mime, "injected"));
    assert_null(strstr(mime, "Injected"));
    assert_null(strstr(mime, "eve@"));
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", "Hello");
    expect_add(&e, "from", "Alice|alice@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", "");
    expect_add(&e, "shape", "text/plain");
    mime_check_bytes(mime, len, &e);
    expect_free(&e);
    free(mime);
    email_message_free(m);
    unlink(path);
    free(path);
}

/* ---- Through a named session to aiosmtpd ---- */

static void test_structures_through_session(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", NULL), 0);
    assert_true(email_start_smtp_session("mime", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    char *composed[NSTRUCTURES];
    for (int i = 0; i < NSTRUCTURES; i++) {
        email_message_t *m = compose(&modes[(size_t)i % NMODES], i);
        size_t len;
        char *mime = mime_of(m, &len);
        composed[i] = mime_temp_file(mime, len);
        free(mime);
        if (!email_send_message("mime", m))
            fail_msg("structure %d: %s", i, email_error_info());
        email_message_free(m);
    }
    /* refused before anything is queued, with the field named */
    email_message_t *m = compose(&modes[2], S_TEXT);
    assert_int_equal(email_message_set_subject(m, "smile " EMOJI), 0);
    assert_false(email_send_message("mime", m));
    assert_int_equal(email_last_error(), EMAIL_ECHARSET);
    if (!strstr(email_error_info(), "Subject cannot be written in ISO-8859-1"))
        fail_msg("error info: %s", email_error_info());
    email_message_free(m);
    m = email_message_new();
    assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
    assert_false(email_send_message("mime", m));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "To: the message has no recipient"));
    email_message_free(m);
    assert_true(email_close_session("mime"));

    assert_int_equal(test_spool_wait(&s, NSTRUCTURES, 10000), NSTRUCTURES);
    for (int i = 0; i < NSTRUCTURES; i++) {
        char *json = test_spool_read(&s, i + 1, "json", NULL);
        assert_non_null(json);
        assert_int_equal(test_json_array_count(json, "rcpt_tos"), 4);
        char *bcc = test_json_string(json, "rcpt_tos.3");
        assert_string_equal(bcc, "hidden@example.com");
        free(bcc);
        free(json);
        size_t len;
        char *eml = test_spool_read(&s, i + 1, "eml", &len);
        assert_non_null(eml);
        mime_check_lines(eml, len);
        mime_expect_t e;
        expect_case(&e, &modes[(size_t)i % NMODES], i);
        expect_add(&e, "same_as", composed[i]);
        mime_check_bytes(eml, len, &e);
        expect_free(&e);
        free(eml);
        unlink(composed[i]);
        free(composed[i]);
    }
    assert_int_equal(test_spool_count(&s), NSTRUCTURES);
    test_server_stop(&s);
}

/* ---- 200 MB to smtp-sink in bounded memory ---- */

#define HUGE_SIZE (200ll * 1024 * 1024)
#define HUGE_MAX_GROWTH_KB (32 * 1024)

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
/* AddressSanitizer keeps freed memory in quarantine (256 MB by default): the chunks freed while
   streaming would count as growth. A small quarantine measures the library instead. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=1";
}
#endif

/* A field of /proc/self/status in kB ("VmRSS", "VmHWM"), -1 when unknown. */
static long status_kb(const char *field)
{
    char *text = test_read_file("/proc/self/status", NULL);
    const char *p = text ? strstr(text, field) : NULL;
    long kb = p ? strtol(p + strlen(field) + 1, NULL, 10) : -1;
    free(text);
    return kb;
}

static long maxrss_kb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

/*
 * The child: a fresh process (fork + exec), so that its peak is its own. Sends the file through a
 * named session and prints "start_rss peak_rss start_maxrss end_maxrss" in kB. VmHWM is the peak
 * of this program image alone; ru_maxrss also counts the image exec replaced.
 */
static int huge_child(const char *port, const char *path)
{
    alarm(120); /* a hung send ends the child, and the parent's read with it */
    long start = status_kb("VmRSS:"), start_max = maxrss_kb();
    if (!email_start_smtp_session("huge", NULL, "127.0.0.1", atoi(port), EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_DEFAULT)) {
        fprintf(stderr, "start: %s\n", email_error_info());
        return 1;
    }
    email_message_t *m = email_message_new();
    bool ok = m && !email_message_set_from(m, "a@example.org") &&
              !email_message_add_to(m, "b@example.org") &&
              !email_message_set_subject(m, "200 MB") &&
              !email_message_set_text_body(m, "see the attachment") &&
              !email_message_add_attachment_file(m, path, "huge.bin", NULL);
    if (ok && !(ok = email_send_message("huge", m)))
        fprintf(stderr, "send: %s\n", email_error_info());
    email_message_free(m);
    ok = email_close_session("huge") && ok;
    email_shutdown();
    printf("%ld %ld %ld %ld\n", start, status_kb("VmHWM:"), start_max, maxrss_kb());
    return ok ? 0 : 1;
}

static void test_huge_attachment_memory(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/huge.bin", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    /* sparse: 200 MB read back as zeros, without the disk space */
    assert_int_equal(ftruncate(fd, HUGE_SIZE), 0);
    assert_int_equal(pwrite(fd, "head", 4, 0), 4);
    close(fd);
    test_server_t s;
    assert_int_equal(test_sink_start(&s, NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", s.port);

    int out[2];
    assert_int_equal(pipe(out), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid) {
        dup2(out[1], STDOUT_FILENO);
        execl(self_path, self_path, "--huge-child", port, path, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[256] = "";
    size_t used = 0;
    ssize_t k;
    while (used < sizeof line - 1 && (k = read(out[0], line + used, sizeof line - 1 - used)) > 0)
        used += (size_t)k;
    line[used] = '\0';
    close(out[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    unlink(path);
    test_rmtree(dir);
    free(dir);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    long start, peak, start_max, end_max;
    assert_int_equal(sscanf(line, "%ld %ld %ld %ld", &start, &peak, &start_max, &end_max), 4);
    print_message("200 MB attachment: %.1f s, RSS %ld kB at start, peak %ld kB (+%ld kB); "
                  "ru_maxrss %ld -> %ld kB\n",
                  seconds, start, peak, peak - start, start_max, end_max);
    assert_true(start > 0 && peak >= start);
    assert_true(peak - start < HUGE_MAX_GROWTH_KB);
    assert_int_equal(test_sink_wait(&s, 1, 10000), 1);
    test_server_stop(&s);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--huge-child"))
        return huge_child(argv[2], argv[3]);
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_structures_and_charsets),
        LOOP_IDLE_TEST(test_long_lines),
        LOOP_IDLE_TEST(test_charset_refusals),
        LOOP_IDLE_TEST(test_iso2022jp_fallbacks),
        LOOP_IDLE_TEST(test_iso2022jp_body_whole_part),
        LOOP_IDLE_TEST(test_header_injection),
        LOOP_IDLE_TEST(test_structures_through_session),
        LOOP_IDLE_TEST(test_huge_attachment_memory),
    };
    return cmocka_run_group_tests(tests, setup_files, teardown_files);
}
