/* Unit tests of lib/message.c and lib/mime.c: the builder, its refusals (addresses as the setters
   take them; lib/address.c on its own is tests/unit/test_address.c), and the MIME it produces,
   read back by Python's email parser. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emailsession.h"
#include "message.h"
#include "message_content.h"
#include "mime.h"
#include "mime_check.h"

/* Texts every test can use: accents, Japanese, an emoji. */
#define ACCENTS "Fran\xc3\xa7ois d\xe2\x80\x99\xc3\x89lo\xc3\xafse"
#define JAPANESE "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d"
#define EMOJI "\xf0\x9f\x98\x80\xf0\x9f\x8e\x89"
/* A name longer than one encoded word, words with and without accents. */
#define LONG_NAME                                                                              \
    "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 N\xc3\xa4m\xc3\xa9 Th\xc3\xa4t Is R\xc3\xa9" \
    "ally Quite Long Indeed, For A Header Line"

static char *mime_of(const email_message_t *m, size_t *len)
{
    char *mime = NULL;
    size_t n = 0;
    int rc = email_message_to_mime(m, &mime, &n);
    if (rc)
        fail_msg("to_mime: %d %s", rc, email_error_info());
    assert_int_equal(strlen(mime), n);
    if (len)
        *len = n;
    return mime;
}

/* The header section of a MIME text (up to the blank line), as a new string. */
static char *headers_of(const char *mime)
{
    const char *end = strstr(mime, "\r\n\r\n");
    assert_non_null(end);
    size_t n = (size_t)(end - mime) + 2;
    char *h = malloc(n + 1);
    assert_non_null(h);
    memcpy(h, mime, n);
    h[n] = 0;
    return h;
}

/* A message with a sender and a recipient, ready to be built. */
static email_message_t *basic_message(void)
{
    email_message_t *m = email_message_new();
    assert_non_null(m);
    assert_int_equal(email_message_set_from(m, "Alice <alice@example.org>"), 0);
    assert_int_equal(email_message_add_to(m, "bob@example.com"), 0);
    return m;
}

static void assert_error_starts(const char *prefix)
{
    const char *e = email_error_info();
    if (strncmp(e, prefix, strlen(prefix)))
        fail_msg("error text \"%s\" does not start with \"%s\"", e, prefix);
}

/* Has Python check the MIME of the message against the expectations, and the line lengths. */
static void python_check(const email_message_t *m, const mime_expect_t *e)
{
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    mime_check_bytes(mime, len, e);
    free(mime);
}

/* ---- Addresses ---- */

static void test_addresses_accepted(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a@b",
        "Display Name <a@b.example>",
        "\"Doe, John\" <j@d.org>",
        "<angle@example.org>",
        "first.last+tag@sub.example.co.uk",
        "\"quoted local\"@example.org",
        "x@[192.0.2.1]",
        "J\xc3\xb6rg <j@example.de>",
        "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
        "  spaced   name   <s@example.org>  ",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        email_message_t *m = email_message_new();
        if (email_message_set_from(m, good[i]))
            fail_msg("\"%s\" refused: %s", good[i], email_error_info());
        assert_string_equal(email_error_info(), "");
        email_message_free(m);
    }
}

static void test_addresses_refused_message_unchanged(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "foo", "a@", "@b", "a b@c", "a@b..c", "a@-b.org", ".a@b", "a..b@c", "a@b\r\nBcc: x@y.z",
        "Name <a@b>\n", "Jo\r\nhn <a@b>", "\xff@b", "Name <a@b", "Name a@b>", "<a@b> trailing",
        "\"unclosed <a@b>", "a@b, c@d", "Ctl\x01 <a@b>",
    };
    email_message_t *m = basic_message();
    char *before = mime_of(m, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (email_message_set_from(m, bad[i]) != EMAIL_EINVAL)
            fail_msg("From \"%s\" accepted", bad[i]);
        assert_error_starts("From: ");
        assert_string_equal(email__message_envelope_from(m), "alice@example.org");
    }
    assert_int_equal(email_message_set_from(m, "foo"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "From: \"foo\" is not a valid address");
    assert_int_equal(email_message_set_sender(m, "x y"), EMAIL_EINVAL);
    assert_error_starts("Sender: ");
    assert_int_equal(email_message_set_reply_to(m, "r@x.org, bad"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "Reply-To: \"bad\" is not a valid address");
    /* nothing changed: the same headers (Date and Message-ID aside) */
    char *after = mime_of(m, NULL);
    char *hb = headers_of(strstr(before, "From:")), *ha = headers_of(strstr(after, "From:"));
    *strstr(hb, "Message-ID:") = 0;
    *strstr(ha, "Message-ID:") = 0;
    assert_string_equal(ha, hb);
    free(hb);
    free(ha);
    free(before);
    free(after);
    /* set_* with NULL or "" removes the field */
    assert_int_equal(email_message_set_from(m, ""), 0);
    assert_string_equal(email__message_envelope_from(m), "");
    email_message_free(m);
}

static void test_address_lists(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    const char *list_text = "\"Doe, John\" <j@d.org>, x@y.z ,, Jane <jane@e.org>,";
    assert_int_equal(email_message_add_to(m, list_text), 0);
    const char *const *list;
    assert_int_equal(email__message_recipients(m, &list), 3);
    assert_string_equal(list[0], "j@d.org");
    assert_string_equal(list[1], "x@y.z");
    assert_string_equal(list[2], "jane@e.org");
    /* one bad element refuses the whole call */
    assert_int_equal(email_message_add_to(m, "ok@x.org, foo, ok2@x.org"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "To: \"foo\" is not a valid address");
    assert_int_equal(email_message_add_cc(m, "Doe, John <j@d.org>"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "Cc: \"Doe\" is not a valid address");
    assert_int_equal(email_message_add_bcc(m, "a@b.org\r\n"), EMAIL_EINVAL);
    assert_error_starts("Bcc: ");
    assert_int_equal(email_message_add_to(m, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_to(m, " , "), EMAIL_EINVAL);
    assert_int_equal(email__message_recipients(m, &list), 3);
    email_message_free(m);
}

static void test_recipients_dedupe_and_bcc(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "me@example.org"), 0);
    assert_int_equal(email_message_add_bcc(m, "Hidden <hidden@example.org>"), 0);
    assert_int_equal(email_message_add_to(m, "A@x.org"), 0);
    assert_int_equal(email_message_add_cc(m, "a@X.org, c@x.org"), 0);
    assert_int_equal(email_message_add_bcc(m, "C@x.org, b@x.org"), 0);
    const char *const *list;
    assert_int_equal(email__message_recipients(m, &list), 4);
    assert_string_equal(list[0], "A@x.org");
    assert_string_equal(list[1], "c@x.org");
    assert_string_equal(list[2], "hidden@example.org");
    assert_string_equal(list[3], "b@x.org");
    char *mime = mime_of(m, NULL);
    assert_null(strstr(mime, "hidden"));
    assert_null(strstr(mime, "Hidden"));
    assert_null(strstr(mime, "Bcc"));
    assert_null(strstr(mime, "b@x.org"));
    assert_non_null(strstr(mime, "\r\nCc: a@X.org, c@x.org\r\n"));
    free(mime);
    /* a thousand addresses added twice each, one call at a time, in different case */
    for (int i = 0; i < 2000; i++) {
        char a[64];
        snprintf(a, sizeof a, "%s%d@example.org", i % 2 ? "User" : "user", i / 2);
        assert_int_equal(email_message_add_bcc(m, a), 0);
    }
    assert_int_equal(email__message_recipients(m, &list), 4 + 1000);
    assert_string_equal(list[4 + 999], "user999@example.org");
    email_message_free(m);
}

static void test_other_address_headers(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_add_bcc(m, "only@example.org"), 0);
    char *out = NULL;
    assert_int_equal(email_message_to_mime(m, &out, NULL), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "From: the message has no sender");
    assert_int_equal(email_message_set_from(m, "Alice <alice@example.org>"), 0);
    assert_int_equal(email_message_set_sender(m, "Office <office@example.org>"), 0);
    assert_int_equal(email_message_set_reply_to(m, "\"Team, Sales\" <sales@example.org>, "
                                                   "help@example.org"),
                     0);
    /* a message for Bcc recipients only: no To header at all */
    char *mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSender: Office <office@example.org>\r\n"));
    assert_non_null(strstr(mime, "\r\nReply-To: \"Team, Sales\" <sales@example.org>, "
                                 "help@example.org\r\n"));
    assert_null(strstr(mime, "\r\nTo:"));
    assert_null(strstr(mime, "only@"));
    free(mime);
    /* set_reply_to replaces */
    assert_int_equal(email_message_set_reply_to(m, "r@example.org"), 0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nReply-To: r@example.org\r\n"));
    free(mime);
    email_message_free(m);
}

static void test_envelope(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_string_equal(email__message_envelope_from(m), "alice@example.org");
    assert_int_equal(email_message_set_sender(m, "Office <office@example.org>"), 0);
    assert_string_equal(email__message_envelope_from(m), "office@example.org");
    assert_int_equal(email_message_set_sender(m, NULL), 0);
    assert_string_equal(email__message_envelope_from(m), "alice@example.org");
    assert_null(email__message_utf8_address(email__message_content(m)));
    assert_int_equal(email_message_add_cc(m, "\xe7\x94\xa8\xe6\x88\xb7@example.org"), 0);
    assert_string_equal(email__message_utf8_address(email__message_content(m)),
                        "\xe7\x94\xa8\xe6\x88\xb7@example.org");
    size_t len;
    char *mime = mime_of(m, &len);
    mime_reader_t *r;
    email_message_t *frozen;
    char err[256];
    assert_int_equal(email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err), 0);
    assert_int_equal(email__mime_reader_new(frozen, &r, err, sizeof err), 0);
    assert_true(email__mime_reader_8bit(r));
    email__mime_reader_free(r);
    email_message_free(frozen);
    free(mime);
    email_message_free(m);
}

/* ---- Other setters ---- */

static void test_subject_and_bodies(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_subject(m, "Hello"), 0);
    assert_int_equal(email_message_set_subject(m, "Bcc: injected\r\nX: y"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "Subject: line breaks are not allowed");
    assert_int_equal(email_message_set_subject(m, "new\nline"), EMAIL_EINVAL);
    assert_int_equal(email_message_set_subject(m, "bad \xc3\x28 utf-8"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "Subject: not valid UTF-8");
    assert_int_equal(email_message_set_text_body(m, "\xed\xa0\x80 surrogate"), EMAIL_EINVAL);
    assert_error_starts("Text body: ");
    assert_int_equal(email_message_set_html_body(m, "\xc0\xaf overlong"), EMAIL_EINVAL);
    assert_error_starts("HTML body: ");
    assert_int_equal(email_message_set_text_body(m, "lines\r\nare fine\n"), 0);
    char *mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: Hello\r\n"));
    assert_non_null(strstr(mime, "\r\n\r\nlines\r\nare fine\r\n"));
    assert_non_null(strstr(mime, "Content-Type: text/plain; charset=us-ascii\r\n"
                                 "Content-Transfer-Encoding: 7bit\r\n"));
    free(mime);
    assert_int_equal(email_message_set_subject(NULL, "x"), EMAIL_EINVAL);
    email_message_free(m);
}

static void test_add_header(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_add_header(m, "X-Mailer", "emailsession"), 0);
    assert_int_equal(email_message_add_header(m, "X-Comment", "caf\xc3\xa9"), 0);
    static const char *const bad_names[] = {"", "Bad Name", "X:y", "To", "cc", "BCC", "Subject",
                                            "content-type", "Content-Transfer-Encoding", "Date",
                                            "Message-ID", "MIME-Version", "From", "X-\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        if (email_message_add_header(m, bad_names[i], "v") != EMAIL_EINVAL)
            fail_msg("header name \"%s\" accepted", bad_names[i]);
        assert_error_starts("Header");
    }
    assert_int_equal(email_message_add_header(m, NULL, "v"), EMAIL_EINVAL);
    assert_int_equal(email_message_add_header(m, "X-Evil", "a\r\nBcc: x@y.z"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "Header \"X-Evil\": line breaks are not allowed");
    assert_int_equal(email_message_add_header(m, "X-Evil", "\xff"), EMAIL_EINVAL);
    char *mime = mime_of(m, NULL);
    assert_non_null(
        strstr(mime, "\r\nX-Mailer: emailsession\r\nX-Comment: =?UTF-8?Q?caf=C3=A9?=\r\n"));
    assert_null(strstr(mime, "X-Evil"));
    free(mime);
    email_message_free(m);
}

/* In-Reply-To and References: ids validated, written as Python reads them back. */
static void test_threading_headers(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_in_reply_to(m, "<first@example.org>"), 0);
    assert_int_equal(email_message_set_in_reply_to(m, "<second@example.org>"), 0); /* replaces */
    assert_int_equal(email_message_add_reference(m, "<root@example.org>"), 0);
    assert_int_equal(email_message_add_reference(m, "<second@example.org>"), 0);
    static const char *const bad[] = {"second@example.org", "<nodomain>", "<a b@c.d>",
                                      "<a@b>\r\nBcc: x@y.z", "<@x.y>", "", "<é@x.y>"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (email_message_set_in_reply_to(m, bad[i]) != EMAIL_EINVAL)
            fail_msg("In-Reply-To \"%s\" accepted", bad[i]);
        assert_true(email_error_occurred());
        assert_non_null(strstr(email_error_info(), "In-Reply-To"));
        assert_int_equal(email_message_add_reference(m, bad[i]), EMAIL_EINVAL);
    }
    assert_int_equal(email_message_set_in_reply_to(m, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_header(m, "In-Reply-To", "<x@y.z>"), EMAIL_EINVAL);
    assert_int_equal(email_message_add_header(m, "references", "<x@y.z>"), EMAIL_EINVAL);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "from", "Alice|alice@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", "");
    expect_add(&e, "header", "In-Reply-To|<second@example.org>");
    expect_add(&e, "header", "References|<root@example.org> <second@example.org>");
    python_check(m, &e);
    expect_free(&e);
    /* a successful call clears the thread's error */
    assert_int_equal(email_message_set_subject(m, "ok"), 0);
    assert_false(email_error_occurred());
    email_message_free(m);
}

static void test_priority_and_notification(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_priority(m, EMAIL_PRIORITY_HIGH), 0);
    assert_int_equal(email_message_set_priority(m, 6), EMAIL_EINVAL);
    assert_error_starts("Priority: ");
    assert_int_equal(email_message_set_priority(m, -1), EMAIL_EINVAL);
    assert_int_equal(email_message_set_disposition_notification(m, true), 0);
    char *mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nX-Priority: 2 (High)\r\nImportance: high\r\n"));
    assert_non_null(strstr(mime, "\r\nDisposition-Notification-To: Alice <alice@example.org>\r\n"));
    free(mime);
    assert_int_equal(email_message_set_priority(m, EMAIL_PRIORITY_LOWEST), 0);
    assert_int_equal(email_message_set_disposition_notification(m, false), 0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nX-Priority: 5 (Lowest)\r\nImportance: low\r\n"));
    assert_null(strstr(mime, "Disposition-Notification-To"));
    free(mime);
    assert_int_equal(email_message_set_priority(m, EMAIL_PRIORITY_NORMAL), 0);
    mime = mime_of(m, NULL);
    assert_null(strstr(mime, "X-Priority"));
    assert_null(strstr(mime, "Importance"));
    free(mime);
    email_message_free(m);
}

static void test_charsets(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_subject(m, "caf\xc3\xa9"), 0);
    assert_int_equal(email_message_set_text_body(m, "caf\xc3\xa9\n"), 0);
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_UTF8_IN_BASE64,
                                                EMAIL_MAIL_MODE_UTF8_IN_BASE64),
                     0);
    /* a refusal keeps both modes, also the valid one given with the invalid one */
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_UTF8, "UTF-8"), EMAIL_EINVAL);
    assert_error_starts("Charsets: ");
    assert_int_equal(email_message_set_charsets(m, "latin1", NULL), EMAIL_EINVAL);
    char *mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: =?UTF-8?B?Y2Fmw6k=?=\r\n"));
    assert_non_null(strstr(mime, "Content-Transfer-Encoding: base64\r\n\r\nY2Fmw6kNCg==\r\n"));
    free(mime);
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_UTF8, NULL), 0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n"));
    assert_non_null(strstr(mime, "Content-Transfer-Encoding: base64\r\n"));
    free(mime);
    /* ISO-8859-1 headers, ISO-2022-JP bodies: "é" is not in ISO-2022-JP, the body goes in UTF-8
       quoted-printable (4D's "US-ASCII_ISO-2022-JP_UTF8_QP") rather than being written as '?' */
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO88591,
                                                EMAIL_MAIL_MODE_ISO2022JP),
                     0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n"));
    assert_non_null(strstr(mime, "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                 "caf=C3=A9\r\n"));
    free(mime);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", "caf\xc3\xa9");
    expect_add(&e, "from", "Alice|alice@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", "caf\xc3\xa9\n");
    expect_add(&e, "plain_cs", "utf-8");
    expect_add(&e, "words", "ISO-8859-1?Q");
    python_check(m, &e);
    expect_free(&e);
    /* the other way round: the subject falls back to UTF-8 Q words, ISO-8859-1 holds the body */
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO2022JP,
                                                EMAIL_MAIL_MODE_ISO88591),
                     0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n"));
    free(mime);
    /* ISO-8859-1 has no fallback: a character it lacks is refused rather than written as '?' */
    assert_int_equal(email_message_set_subject(m, "caf\xc3\xa9 \xe2\x82\xac"), 0);
    assert_int_equal(email_message_set_charsets(m, EMAIL_MAIL_MODE_ISO88591, NULL), 0);
    char *out = NULL;
    assert_int_equal(email_message_to_mime(m, &out, NULL), EMAIL_ECHARSET);
    assert_string_equal(email_error_info(), "Subject cannot be written in ISO-8859-1");
    assert_null(out);
    assert_int_equal(email_message_set_subject(m, "caf\xc3\xa9"), 0);
    assert_int_equal(email_message_set_charsets(m, NULL, EMAIL_MAIL_MODE_ISO88591), 0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n"));
    assert_non_null(strstr(mime, "Content-Type: text/plain; charset=iso-8859-1\r\n"
                                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                 "caf=E9\r\n"));
    free(mime);
    /* ... and with ASCII text they have nothing to convert */
    assert_int_equal(email_message_set_subject(m, "plain"), 0);
    assert_int_equal(email_message_set_text_body(m, "plain"), 0);
    mime = mime_of(m, NULL);
    assert_non_null(strstr(mime, "charset=us-ascii"));
    free(mime);
    email_message_free(m);
}

static void test_ids_and_freeze(void **state)
{
    (void)state;
    email_message_t *a = email_message_new(), *b = email_message_new();
    assert_true(email_message_id(a) != 0);
    assert_true(email_message_id(b) != email_message_id(a));
    char err[256];
    email_message_t *copy = NULL;
    assert_int_equal(email__message_freeze(a, NULL, NULL, &copy, err, sizeof err), EMAIL_EINVAL);
    assert_string_equal(err, "From: the message has no sender");
    assert_int_equal(email_message_set_from(a, "a@example.org"), 0);
    assert_int_equal(email__message_freeze(a, NULL, NULL, &copy, err, sizeof err), EMAIL_EINVAL);
    assert_string_equal(err, "To: the message has no recipient (To, Cc or Bcc)");
    assert_int_equal(email_message_add_bcc(a, "hidden@example.org"), 0);
    assert_int_equal(email__message_freeze(a, "nonsense", NULL, &copy, err, sizeof err),
                     EMAIL_EINVAL);
    assert_error_starts("Charsets: ");
    assert_int_equal(
        email__message_freeze(a, EMAIL_MAIL_MODE_UTF8_IN_BASE64, NULL, &copy, err, sizeof err), 0);
    assert_int_equal(email_message_id(copy), email_message_id(a));
    const message_content_t *c = email__message_content(copy);
    assert_int_equal(c->header_mode, MAIL_MODE_UTF8_B64);
    assert_int_equal(c->body_mode, MAIL_MODE_UTF8_QP);
    assert_non_null(c->date);
    assert_non_null(strstr(c->message_id, "@example.org>"));
    assert_null(email__message_content(a)->message_id);
    /* a frozen message gives the same bytes every time (a retry sends what was sent) */
    assert_int_equal(email_message_set_html_body(copy, "<p>x</p>"), 0);
    assert_int_equal(email_message_set_text_body(copy, "x"), 0);
    char *m1 = mime_of(copy, NULL), *m2 = mime_of(copy, NULL);
    assert_string_equal(m1, m2);
    assert_non_null(strstr(m1, c->message_id));
    free(m1);
    free(m2);
    /* its recipients are its own */
    const char *const *list;
    assert_int_equal(email__message_recipients(copy, &list), 1);
    email_message_free(a);
    assert_string_equal(list[0], "hidden@example.org");
    email_message_free(copy);
    email_message_free(b);
}

static void test_date_format(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    char *mime = mime_of(m, NULL);
    const char *d = strstr(mime, "Date: ");
    assert_true(d == mime);
    char day[4], mon[4], sign;
    int dd, yyyy, hh, mi, ss, zone, end = 0;
    assert_int_equal(sscanf(d, "Date: %3s, %d %3s %d %d:%d:%d %c%4d\r\n%n", day, &dd, mon, &yyyy,
                            &hh, &mi, &ss, &sign, &zone, &end),
                     9);
    assert_true(end > 0);
    assert_non_null(strstr("Mon,Tue,Wed,Thu,Fri,Sat,Sun,", day));
    assert_non_null(strstr("JanFebMarAprMayJunJulAugSepOctNovDec", mon));
    assert_true(sign == '+' || sign == '-');
    free(mime);
    email_message_free(m);
}

/* ---- The MIME ---- */

static void test_mime_python_round_trip(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, ACCENTS " <francois@example.fr>"), 0);
    assert_int_equal(email_message_add_to(m, "\"Doe, John\" <j@d.org>, x@y.z, "
                                             JAPANESE " <taro@example.jp>"),
                     0);
    assert_int_equal(email_message_add_to(m, "John Q. Public <jqp@example.com>"), 0);
    assert_int_equal(email_message_add_to(m, "\"" LONG_NAME "\" <long@example.net>"), 0);
    /* two spaces between encoded words: both kept (found by fuzzing) */
    assert_int_equal(email_message_add_to(m, "\"\xc3\x89mile  Zo\xc3\xa9\" <emile@example.fr>"), 0);
    assert_int_equal(email_message_add_bcc(m, "secret@example.org"), 0);
    const char *subject = "R\xc3\xa9union " JAPANESE " " EMOJI
                          " \xe2\x80\x94 a subject long enough to be folded over several lines";
    assert_int_equal(email_message_set_subject(m, subject), 0);
    assert_int_equal(email_message_set_text_body(m, "Bonjour " ACCENTS ",\r\n.\nline\rwith "
                                                    "bare CR\n" JAPANESE "\n" EMOJI "\n"
                                                    "trailing space \nend"),
                     0);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", subject);
    expect_add(&e, "from", ACCENTS "|francois@example.fr");
    expect_add(&e, "to", "Doe, John|j@d.org");
    expect_add(&e, "to", "|x@y.z");
    expect_add(&e, "to", JAPANESE "|taro@example.jp");
    expect_add(&e, "to", "John Q. Public|jqp@example.com");
    expect_add(&e, "to", LONG_NAME "|long@example.net");
    /* Python folds the white space of display names: checked on the raw bytes below */
    expect_add(&e, "to", "\xc3\x89mile Zo\xc3\xa9|emile@example.fr");
    expect_add(&e, "plain_body", "Bonjour " ACCENTS ",\n.\nline\nwith bare CR\n" JAPANESE "\n" EMOJI
                                 "\ntrailing space \nend\n");
    expect_add(&e, "plain_cs", "utf-8");
    expect_add(&e, "plain_cte", "quoted-printable");
    expect_add(&e, "shape", "text/plain");
    expect_add(&e, "words", "UTF-8?Q");
    python_check(m, &e);
    expect_free(&e);
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    assert_null(strstr(mime, "secret"));
    /* both spaces inside one encoded word: decoders drop white space between two words */
    assert_non_null(strstr(mime, "=?UTF-8?Q?=C3=89mile__Zo=C3=A9?="));
    free(mime);
    email_message_free(m);
}

static void test_mime_ascii_edge_cases(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    /* looks like an encoded word, and a word too long for any line: both must come back as is */
    char subject[1200] = "=?utf-8?q?not_one?= ";
    memset(subject + strlen(subject), 'x', 1100);
    subject[sizeof subject - 1] = 0;
    assert_int_equal(email_message_set_subject(m, subject), 0);
    /* a line of 2000 ASCII octets does not fit 7bit */
    char body[2002];
    memset(body, 'y', 2000);
    strcpy(body + 2000, "\n");
    assert_int_equal(email_message_set_text_body(m, body), 0);
    const char *from = "\"Quote \\\" and \\\\ backslash\" <q@example.org>";
    assert_int_equal(email_message_set_from(m, from), 0);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", subject);
    expect_add(&e, "from", "Quote \" and \\ backslash|q@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", body);
    expect_add(&e, "plain_cs", "us-ascii");
    python_check(m, &e);
    expect_free(&e);
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    assert_non_null(strstr(mime, "Content-Transfer-Encoding: quoted-printable\r\n"));
    free(mime);
    email_message_free(m);
}

static void test_empty_body(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    /* headers, the blank line, nothing after */
    assert_memory_equal(mime + len - 4, "\r\n\r\n", 4);
    free(mime);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", "");
    expect_add(&e, "from", "Alice|alice@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", "");
    assert_int_equal(email_message_set_subject(m, ""), 0);
    python_check(m, &e);
    expect_free(&e);
    email_message_free(m);
}

static char *temp_file(const void *data, size_t n)
{
    char path[] = "/tmp/test_attach_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return strdup(path);
}

static void test_html_attachments_inline(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 57, 58, 100000};
    char *paths[5];
    unsigned char *data = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    for (size_t i = 0; i < 5; i++)
        paths[i] = temp_file(data, sizes[i]);
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_text_body(m, "text " EMOJI), 0);
    assert_int_equal(email_message_set_html_body(m, "<p>" ACCENTS " <img src=\"cid:logo@x\"></p>"),
                     0);
    assert_int_equal(email_message_add_inline(m, NULL, "\x89PNG", 4, "<logo@x>", NULL), 0);
    const char *names[] = {"empty.bin", "one.txt", "R\xc3\xa9sum\xc3\xa9 " JAPANESE ".pdf",
                           "fifty-eight.dat",
                           "a very long file name that needs RFC 2231 continuations.zip"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(email_message_add_attachment_file(m, paths[i], names[i], NULL), 0);
    char *mem_path = temp_file("in memory", 9);
    assert_int_equal(email_message_add_attachment_data(m, "in memory", 9, "memory.txt",
                                                       "text/plain; charset=us-ascii"),
                     0);
    char *png_path = temp_file("\x89PNG", 4);
    mime_expect_t e;
    expect_init(&e);
    expect_add(&e, "subject", "");
    expect_add(&e, "from", "Alice|alice@example.org");
    expect_add(&e, "to", "|bob@example.com");
    expect_add(&e, "plain_body", "text " EMOJI "\n");
    expect_add(&e, "html_body", "<p>" ACCENTS " <img src=\"cid:logo@x\"></p>\n");
    expect_add(&e, "shape", "multipart/mixed[multipart/alternative[text/plain,"
                            "multipart/related[text/html,application/octet-stream]],"
                            "application/octet-stream,"
                            "text/plain,application/pdf,application/octet-stream,"
                            "application/zip,text/plain]");
    for (size_t i = 0; i < 5; i++) {
        expect_add(&e, "att", names[i]);
        expect_add(&e, "att_path", paths[i]);
    }
    expect_add(&e, "att", "memory.txt");
    expect_add(&e, "att_path", mem_path);
    expect_add(&e, "inline", "<logo@x>");
    expect_add(&e, "inline_path", png_path);
    assert_int_equal(email_message_set_subject(m, ""), 0);
    python_check(m, &e);
    expect_free(&e);
    unlink(png_path);
    free(png_path);
    size_t len;
    char *mime = mime_of(m, &len);
    mime_check_lines(mime, len);
    assert_non_null(strstr(mime, "Content-Type: multipart/related; type=\"text/html\";"));
    assert_non_null(strstr(mime, "Content-ID: <logo@x>\r\n"));
    assert_non_null(strstr(mime, "Content-Type: application/pdf;"));
    free(mime);

    /* the reader's size is what it reads, in chunks of any size */
    email_message_t *frozen;
    char err[256];
    assert_int_equal(email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err), 0);
    char *whole = mime_of(frozen, &len);
    size_t chunks[] = {1, 7, 4096, 100000};
    for (size_t k = 0; k < 4; k++) {
        mime_reader_t *r;
        assert_int_equal(email__mime_reader_new(frozen, &r, err, sizeof err), 0);
        assert_int_equal(email__mime_reader_size(r), len);
        assert_false(email__mime_reader_8bit(r));
        char *buf = malloc(len + 1);
        size_t got = 0;
        ssize_t n = 0;
        size_t room;
        while ((room = len + 1 - got) &&
               (n = email__mime_reader_read(r, buf + got, chunks[k] < room ? chunks[k] : room)) > 0)
            got += (size_t)n;
        assert_int_equal(n, 0);
        assert_int_equal(got, len);
        assert_memory_equal(buf, whole, len);
        free(buf);
        email__mime_reader_free(r);
    }
    free(whole);

    /* a file that grows or shrinks after the reader was made: EMAIL_EIO, never wrong bytes */
    for (int grow = 0; grow < 2; grow++) {
        mime_reader_t *r;
        assert_int_equal(email__mime_reader_new(frozen, &r, err, sizeof err), 0);
        FILE *f = fopen(paths[4], "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, grow ? 100000 : 1000, f), grow ? 100000 : 1000);
        if (grow)
            fputc('!', f);
        fclose(f);
        char buf[8192];
        ssize_t n = 0;
        while ((n = email__mime_reader_read(r, buf, sizeof buf)) > 0)
            ;
        assert_int_equal(n, EMAIL_EIO);
        assert_int_equal(email__mime_reader_read(r, buf, sizeof buf), EMAIL_EIO);
        email__mime_reader_free(r);
    }
    /* a file gone before the reader is made */
    unlink(paths[4]);
    mime_reader_t *r = NULL;
    assert_int_equal(email__mime_reader_new(frozen, &r, err, sizeof err), EMAIL_EIO);
    assert_non_null(strstr(err, "Attachment"));
    email_message_free(frozen);
    char *out = NULL;
    assert_int_equal(email_message_to_mime(m, &out, NULL), EMAIL_EIO);

    for (size_t i = 0; i < 5; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    unlink(mem_path);
    free(mem_path);
    free(data);
    email_message_free(m);
}

static void test_inline_without_html(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_set_text_body(m, "see the picture"), 0);
    assert_int_equal(email_message_add_inline(m, NULL, "GIF89a", 6, "pic.gif", NULL), 0);
    char *mime = mime_of(m, NULL);
    /* nothing to show it in: it goes beside the text, still marked inline */
    assert_non_null(strstr(mime, "Content-Type: multipart/mixed;"));
    assert_null(strstr(mime, "multipart/related"));
    assert_non_null(strstr(mime, "Content-Type: image/gif\r\n"
                                 "Content-Transfer-Encoding: base64\r\n"
                                 "Content-Disposition: inline\r\n"
                                 "Content-ID: <pic.gif>\r\n\r\nR0lGODlh\r\n"));
    free(mime);
    email_message_free(m);
}

static void test_parts_refused(void **state)
{
    (void)state;
    email_message_t *m = basic_message();
    assert_int_equal(email_message_add_attachment_file(m, "/nonexistent/file", NULL, NULL),
                     EMAIL_EIO);
    assert_error_starts("Attachment: ");
    assert_int_equal(email_message_add_attachment_file(m, "/tmp", NULL, NULL), EMAIL_EIO);
    assert_int_equal(email_message_add_attachment_file(m, NULL, NULL, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(m, NULL, 5, "x", NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(m, "x", 1, "a\r\nb", NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(m, "x", 1, "x", "nonsense"), EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(m, "x", 1, "x", "text/plain\r\nX: y"),
                     EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(m, "x", 1, "x", "multipart/mixed"),
                     EMAIL_EINVAL);
    assert_int_equal(email_message_add_inline(m, NULL, "x", 1, NULL, NULL), EMAIL_EINVAL);
    assert_error_starts("Inline part: ");
    assert_int_equal(email_message_add_inline(m, NULL, "x", 1, "a b", NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_inline(m, NULL, "x", 1, "<a>b>", NULL), EMAIL_EINVAL);
    /* none of them left a part behind */
    assert_int_equal(email__message_content(m)->nparts, 0);
    char *mime = mime_of(m, NULL);
    assert_null(strstr(mime, "multipart"));
    free(mime);
    email_message_free(m);
}

static void test_null_arguments(void **state)
{
    (void)state;
    assert_int_equal(email_message_set_from(NULL, "a@b"), EMAIL_EINVAL);
    assert_int_equal(email_message_add_to(NULL, "a@b"), EMAIL_EINVAL);
    assert_int_equal(email_message_add_header(NULL, "X-A", "b"), EMAIL_EINVAL);
    assert_int_equal(email_message_set_priority(NULL, 1), EMAIL_EINVAL);
    assert_int_equal(email_message_set_charsets(NULL, NULL, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_add_attachment_data(NULL, "x", 1, NULL, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_id(NULL), 0);
    char *out = NULL;
    assert_int_equal(email_message_to_mime(NULL, &out, NULL), EMAIL_EINVAL);
    email_message_t *m = basic_message();
    assert_int_equal(email_message_to_mime(m, NULL, NULL), EMAIL_EINVAL);
    email_message_free(m);
    email_message_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_accepted),
        cmocka_unit_test(test_addresses_refused_message_unchanged),
        cmocka_unit_test(test_address_lists),
        cmocka_unit_test(test_recipients_dedupe_and_bcc),
        cmocka_unit_test(test_other_address_headers),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_subject_and_bodies),
        cmocka_unit_test(test_add_header),
        cmocka_unit_test(test_threading_headers),
        cmocka_unit_test(test_priority_and_notification),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_ids_and_freeze),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_mime_python_round_trip),
        cmocka_unit_test(test_mime_ascii_edge_cases),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_html_attachments_inline),
        cmocka_unit_test(test_inline_without_html),
        cmocka_unit_test(test_parts_refused),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
