/*
 * IMAP servers that real ones are not (tests/servers/scripted.py): a PREAUTH greeting where TLS
 * is required, bytes after the OK to STARTTLS (in its segment and in a later one), a literal of
 * 4 GB announced, a connection dropped in the middle of a literal, a reply trickled past the
 * timeout. Each ends the call with a clear error, within the timeout; nothing waits for more.
 * Also what dovecot never does: FETCH items in another order than asked, no UIDPLUS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

/* Under valgrind everything is slower: longer deadlines (never shorter timeouts). */
static int slack(int ms)
{
    return getenv("EMAIL_UNDER_VALGRIND") ? ms * 10 : ms;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" not in \"%s\"", needle, hay ? hay : "(null)");
}

/* Greeted with its capabilities, logged in (LOGIN on loopback), INBOX selected. */
#define LOGGED_IN                                                                            \
    "send * OK [CAPABILITY IMAP4rev1] scripted\n"                                           \
    "expect A\\d+ LOGIN \"alice\" \"pencil\"\n"                                             \
    "send A1 OK logged in\n"                                                                \
    "expect A\\d+ SELECT \"INBOX\"\n"                                                       \
    "send * 1 EXISTS\\r\\n* OK [UIDVALIDITY 7] ok\\r\\nA2 OK [READ-WRITE] selected\n"

static email_imap_transporter_t *open_on(const test_server_t *s, int security, int timeout)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = s->port;
    srv.security = security;
    srv.user = "alice";
    srv.password = "pencil";
    srv.connection_timeout = timeout;
    srv.send_timeout = timeout;
    email_imap_transporter_t *t = email_imap_transporter_new(&srv);
    if (!t)
        fail_msg("email_imap_transporter_new: %s", email_error_info());
    return t;
}

static char why[1024]; /* ErrorInfo right after the call (the free clears it) */

static int keep_why(int rc)
{
    snprintf(why, sizeof why, "%s", email_error_info());
    return rc;
}

/* The call's error, named, and the server's end. */
static void expect_failure(test_server_t *s, int rc, int want, const char *words)
{
    if (rc != want)
        fail_msg("%s (%s), not %s", email_error_name(rc), why, email_error_name(want));
    assert_contains(why, words);
    test_server_wait(s, slack(15000));
    test_server_stop(s);
}

static void test_preauth_with_tls_required(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "send * PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] "
                                             "welcome\nwait-close\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_STARTTLS, 5);
    int rc = keep_why(email_imap_check_connection(t, NULL));
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_ETLSREQUIRED, "PREAUTH");
}

/* "A1 OK" to STARTTLS and, in the same segment, a response the attacker wants read as if it
 * came through TLS. */
static void test_bytes_after_starttls_ok(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "send * OK [CAPABILITY IMAP4rev1 STARTTLS] hi\n"
                                             "expect A1 STARTTLS\n"
                                             "send A1 OK begin TLS\\r\\n* OK injected\n"
                                             "wait-close\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_STARTTLS, 5);
    int rc = keep_why(email_imap_check_connection(t, NULL));
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_EPROTO, "injection");
}

/* The same in a later segment, after our ClientHello went. */
static void test_plain_text_after_starttls(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "send * OK [CAPABILITY IMAP4rev1 STARTTLS] hi\n"
                                             "expect A1 STARTTLS\n"
                                             "send A1 OK begin TLS\n"
                                             "expect-bytes 5\n"
                                             "send * OK injected\n"
                                             "wait-close\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_STARTTLS, 5);
    int rc = keep_why(email_imap_check_connection(t, NULL));
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_EPROTO, "after its OK to STARTTLS");
}

/* A literal of 4 GB announced: refused at once (never allocated, never awaited). */
static void test_huge_literal(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, LOGGED_IN
                                             "expect A\\d+ UID FETCH 1 .*\n"
                                             "send * 1 FETCH (UID 1 RFC822.SIZE 4294967296 "
                                             "BODY[] {4294967296}\n"
                                             "wait-close\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_NONE, 5);
    email_message_t *m = (email_message_t *)&m;
    int rc = keep_why(email_imap_get_mail(t, 1, EMAIL_READ_PEEK, &m, NULL));
    assert_null(m);
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_EPROTO, "literal");
}

/* The connection ends in the middle of a message's literal. */
static void test_drop_in_literal(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, LOGGED_IN
                                             "expect A\\d+ UID FETCH 1 .*\n"
                                             "send * 1 FETCH (UID 1 RFC822.SIZE 100 BODY[] "
                                             "{100}\\r\\nSubject: cut\\r\\n\\r\\nonly th\n"
                                             "close\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_NONE, 5);
    email_message_t *m = (email_message_t *)&m;
    int rc = keep_why(email_imap_get_mail(t, 1, EMAIL_READ_PEEK, &m, NULL));
    assert_null(m);
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_ECLOSED, "middle of a response");
}

/* Not hostile, but what dovecot never does: FETCH items in another order than asked, the body
 * before its UID; and a UID the server does not have among them (no response: NULL). */
static void test_uid_after_body(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, LOGGED_IN
                                             "expect A\\d+ UID FETCH 5,9 .*\n"
                                             "send * 1 FETCH (RFC822.SIZE 27 BODY[] {27}\\r\\n"
                                             "Subject: late uid\\r\\n\\r\\nbody\\r\\n UID 9)"
                                             "\\r\\nA3 OK done\n"
                                             "expect A\\d+ LOGOUT\n"
                                             "send * BYE\\r\\nA4 OK bye\n", NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_NONE, 5);
    uint32_t uids[] = {9, 5};
    email_message_t *out[2] = {NULL, NULL};
    int rc = keep_why(email_imap_get_mails(t, uids, 2, EMAIL_READ_PEEK, out, NULL));
    if (rc)
        fail_msg("email_imap_get_mails: %s", why);
    assert_non_null(out[0]);
    assert_string_equal(email_message_get_subject(out[0]), "late uid");
    assert_string_equal(email_message_get_uid(out[0]), "9");
    assert_int_equal(email_message_get_size(out[0]), 27);
    assert_null(out[1]);
    email_message_free(out[0]);
    email_imap_transporter_free(t);
    assert_int_equal(test_server_wait(&s, slack(15000)), 0);
    test_server_stop(&s);
}

/* A named session on a server without UIDPLUS: a deletion is \\Deleted at once, EXPUNGE when
 * the session closes (then LOGOUT). The script fails if a command differs. */
static void test_session_without_uidplus(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s,
        "send * OK [CAPABILITY IMAP4rev1] scripted\n"
        "expect A1 LOGIN \"alice\" \"pencil\"\n"
        "send A1 OK logged in\n"
        "expect A2 SELECT \"INBOX\"\n"
        "send * 2 EXISTS\\r\\n* OK [UIDVALIDITY 7] ok\\r\\nA2 OK [READ-WRITE] selected\n"
        "expect A3 UID SEARCH UNSEEN\n"
        "send * SEARCH 4\\r\\nA3 OK done\n"
        "expect A4 UID SEARCH ALL\n"
        "send * SEARCH 3 4\\r\\nA4 OK done\n"
        "expect A5 UID FETCH 3 \\(UID RFC822.SIZE BODY.PEEK\\[\\]\\)\n"
        "send * 1 FETCH (UID 3 RFC822.SIZE 14 BODY[] {14}\\r\\nSubject: x\\r\\n\\r\\n)"
        "\\r\\nA5 OK done\n"
        "expect A6 UID STORE 3 \\+FLAGS.SILENT \\(\\\\Deleted\\)\n"
        "send A6 OK done\n"
        "expect A7 EXPUNGE\n"
        "send * 1 EXPUNGE\\r\\nA7 OK done\n"
        "expect A8 LOGOUT\n"
        "send * BYE\\r\\nA8 OK bye\n", NULL), 0);
    email_set_timeout(5);
    if (!email_start_imap_session("alice", "pencil", "127.0.0.1", s.port, 0))
        fail_msg("email_start_imap_session: %s", email_error_info());
    email_message_t *m = NULL;
    if (!email_read_first("alice", EMAIL_READ_PEEK, &m))
        fail_msg("email_read_first: %s", email_error_info());
    assert_string_equal(email_message_get_subject(m), "x");
    assert_true(email_delete_message("alice", m));
    email_message_free(m);
    assert_int_equal(email_mailbox_count("alice", 0), 1);
    assert_true(email_close_session("alice"));
    assert_int_equal(test_server_wait(&s, slack(15000)), 0);
    test_server_stop(&s);
}

/* SELECT's answer a byte every 0.4 s: no gap reaches the 1 s timeout, the whole answer does. */
static void test_trickled_reply(void **state)
{
    (void)state;
    char script[4096] = "send * OK [CAPABILITY IMAP4rev1] scripted\n"
                        "expect A\\d+ LOGIN .*\n"
                        "send A1 OK logged in\n"
                        "expect A\\d+ SELECT .*\n";
    for (const char *p = "* 1 EXISTS"; *p; p++) {
        size_t n = strlen(script);
        snprintf(script + n, sizeof script - n, "sendraw %c\nsleep 0.4\n", *p);
    }
    strcat(script, "wait-close\n");
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_imap_transporter_t *t = open_on(&s, EMAIL_SECURITY_NONE, 1);
    size_t n;
    uint32_t *uids;
    int rc = keep_why(email_imap_search(t, "ALL", NULL, &uids, &n, NULL));
    email_imap_transporter_free(t);
    expect_failure(&s, rc, EMAIL_ETIMEDOUT, "timed out");
}

/* A call refused for its arguments still fills the caller's status (which may hold anything
 * before): the code and the text, as every other failure does. Nothing connects. */
static void test_refusals_fill_status(void **state)
{
    (void)state;
    test_server_t none = {.port = 1};
    email_imap_transporter_t *t = open_on(&none, EMAIL_SECURITY_NONE, 5);
    email_status_t st;
    email_message_t *m;
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_imap_get_mail(t, 0, 0, &m, &st), EMAIL_EINVAL);
    assert_false(st.success);
    assert_int_equal(st.error, EMAIL_EINVAL);
    assert_contains(st.status_text, "UID 0");
    email_status_clear(&st);
    memset(&st, 0xA5, sizeof st);
    uint32_t uid = 3;
    assert_int_equal(email_imap_add_flags(t, &uid, 1, "\\Seen) (x", &st), EMAIL_EINVAL);
    assert_contains(st.status_text, "not flag names");
    email_status_clear(&st);
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_imap_select_box(t, "", EMAIL_IMAP_READ_WRITE, NULL, &st),
                     EMAIL_EINVAL);
    assert_int_equal(st.error, EMAIL_EINVAL);
    email_status_clear(&st);
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_imap_get_mails(t, NULL, 0, 0, NULL, &st), 0); /* nothing to read */
    assert_true(st.success);
    assert_int_equal(st.error, 0);
    email_status_clear(&st);
    email_imap_transporter_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_preauth_with_tls_required),
        LOOP_IDLE_TEST(test_bytes_after_starttls_ok),
        LOOP_IDLE_TEST(test_plain_text_after_starttls),
        LOOP_IDLE_TEST(test_huge_literal),
        LOOP_IDLE_TEST(test_drop_in_literal),
        LOOP_IDLE_TEST(test_uid_after_body),
        LOOP_IDLE_TEST(test_session_without_uidplus),
        LOOP_IDLE_TEST(test_trickled_reply),
        LOOP_IDLE_TEST(test_refusals_fill_status),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    email_shutdown();
    return rc;
}
