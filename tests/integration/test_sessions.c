/*
 * Named sessions and transporters against real servers on 127.0.0.1: aiosmtpd (AUTH PLAIN and
 * LOGIN, refusals), postfix's smtp-sink (pipelining, many messages), and a scripted faulty server.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

static email_message_t *simple_message(const char *from, const char *to, const char *subject)
{
    return test_message(from, to, subject, "Hello,\n.leading dot\nBye.\n");
}

/* AUTH with the given mechanism: the server checks the exact credentials it decoded. */
static void auth_and_send(const char *mechs, const char *mech_name)
{
    test_server_t s;
    const char *args[] = {"--auth", "alice@example.org:pa ss:wörd", "--auth-mechs", mechs,
                          "--auth-required", NULL};
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("alice@example.org", "pa ss:wörd", "127.0.0.1", s.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_false(email_error_occurred());
    email_message_t *m = simple_message("Alice <alice@example.org>", "Bob <bob@example.net>",
                                        "first");
    bool ok = email_send_message("alice@example.org", m);
    if (!ok)
        fail_msg("send: %s", email_error_info());
    email_message_free(m);
    assert_true(email_close_session("alice@example.org"));

    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_non_null(json);
    assert_json_field(json, "auth.mechanism", mech_name);
    assert_json_field(json, "auth.login", "alice@example.org");
    assert_json_field(json, "auth.password", "pa ss:wörd");
    assert_json_field(json, "mail_from", "alice@example.org");
    assert_json_field(json, "rcpt_tos.0", "bob@example.net");
    free(json);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_non_null(eml);
    assert_non_null(strstr(eml, "Subject: first\r\n"));
    assert_non_null(strstr(eml, "\r\n.leading dot\r\n")); /* dot-stuffing undone by the server */
    free(eml);
    test_server_stop(&s);
}

static void test_auth_plain(void **state)
{
    auth_and_send("PLAIN", "PLAIN");
}

static void test_auth_login(void **state)
{
    auth_and_send("LOGIN", "LOGIN");
}

static void test_auth_both_prefers_plain(void **state)
{
    auth_and_send("PLAIN,LOGIN", "PLAIN");
}

static char auth_log[65536];

static void collect_log(const char *line, void *data)
{
    size_t n = strlen(auth_log);
    snprintf(auth_log + n, sizeof auth_log - n, "%s\n", line);
}

/* The transporter's other mechanisms, against a server that checks what it decodes; the secret
 * never reaches the log. */
static void transporter_auth(const char *offered, const char *mode, const char *password,
                             const char *token, int want, const char *want_mech)
{
    test_server_t s;
    const char *args[] = {"--auth", "tim:tanstaaftanstaaf", "--oauth-token", "tim:ya29.tok",
                          "--auth-mechs", offered, "--auth-required", NULL};
    start_smtpd(&s, args);
    email_server_t srv;
    test_plain_server(&srv, s.port);
    srv.user = "tim";
    srv.password = password;
    srv.oauth2_token = token;
    srv.authentication_mode = mode;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    auth_log[0] = '\0';
    email_set_log_callback(collect_log, NULL);
    email_message_t *m = simple_message("tim@example.org", "b@example.org", "mech");
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    if (rc != want)
        fail_msg("%s/%s: got %s (%s), want %s", offered, mode ? mode : "auto",
                 email_error_name(rc), st.status_text, email_error_name(want));
    email_message_free(m);
    email_transporter_free(t);
    email_dispatch(); /* the log lines wait for it */
    email_set_log_callback(NULL, NULL);
    const char *secret = password ? password : token;
    assert_null(strstr(auth_log, secret));
    if (want != EMAIL_EAUTHMECH) { /* an AUTH line went out, its payload masked */
        char shown[64];
        snprintf(shown, sizeof shown, "C > \"AUTH %s", want_mech);
        if (!strstr(auth_log, shown))
            fail_msg("no \"%s\" in the log:\n%s", shown, auth_log);
    }
    if (want == 0) {
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        char *json = test_spool_read(&s, 1, "json", NULL);
        assert_json_field(json, "auth.mechanism", want_mech);
        assert_json_field(json, "auth.login", "tim");
        free(json);
    } else {
        assert_int_equal(test_spool_count(&s), 0);
    }
    test_server_stop(&s);
}

static void test_auth_cram_md5_and_xoauth2(void **state)
{
    /* the strongest offered mechanism the credentials allow */
    transporter_auth("PLAIN,LOGIN,CRAM-MD5", NULL, "tanstaaftanstaaf", NULL, 0, "CRAM-MD5");
    transporter_auth("PLAIN,XOAUTH2", NULL, NULL, "ya29.tok", 0, "XOAUTH2");
    /* asked for by name */
    transporter_auth("PLAIN,CRAM-MD5", "PLAIN", "tanstaaftanstaaf", NULL, 0, "PLAIN");
    transporter_auth("CRAM-MD5", "CRAM-MD5", "wrong", NULL, EMAIL_EAUTH, "CRAM-MD5");
    transporter_auth("XOAUTH2", "XOAUTH2", NULL, "expired", EMAIL_EAUTH, "XOAUTH2");
    transporter_auth("OAUTHBEARER,PLAIN", NULL, NULL, "ya29.tok", 0, "OAUTHBEARER");
    transporter_auth("OAUTHBEARER", NULL, NULL, "expired", EMAIL_EAUTH, "OAUTHBEARER");
    /* asked for a mechanism the server does not offer */
    transporter_auth("PLAIN", "CRAM-MD5", "tanstaaftanstaaf", NULL, EMAIL_EAUTHMECH, NULL);
}

/* OAUTHBEARER names the user in RFC 5801's escaped form: the server decodes "," and "=" back
 * (unescaped, it would read the user name "al" and an extra field). */
static void test_oauthbearer_user_with_comma_and_equals(void **state)
{
    const char *user = "al,ice=admin@example.org";
    test_server_t s;
    const char *args[] = {"--oauth-token", "al,ice=admin@example.org:ya29.tok", "--auth-mechs",
                          "OAUTHBEARER", "--auth-required", NULL};
    start_smtpd(&s, args);
    email_server_t srv;
    test_plain_server(&srv, s.port);
    srv.user = user;
    srv.oauth2_token = "ya29.tok";
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = simple_message("alice@example.org", "b@example.org", "saslname");
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    if (rc)
        fail_msg("send: %s (%s)", email_error_name(rc), st.status_text);
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_json_field(json, "auth.mechanism", "OAUTHBEARER");
    assert_json_field(json, "auth.login", user);
    free(json);
    test_server_stop(&s);
}

/* A password goes whole (PLAIN, LOGIN: base64; CRAM-MD5: an HMAC key), so control characters
 * in it are kept, unlike in a user name. */
static void test_password_with_control_characters(void **state)
{
    const char *mechs[] = {"PLAIN", "LOGIN"};
    for (size_t i = 0; i < 2; i++) {
        test_server_t s;
        const char *args[] = {"--auth", "tim:pa\001ss\033w", "--auth-mechs", mechs[i],
                              "--auth-required", NULL};
        start_smtpd(&s, args);
        if (!email_start_smtp_session("tim", "pa\001ss\033w", "127.0.0.1", s.port,
                                      EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT))
            fail_msg("%s: %s", mechs[i], email_error_info());
        email_message_t *m = simple_message("tim@example.org", "b@example.org", "control");
        assert_true(email_send_message("tim", m));
        email_message_free(m);
        assert_true(email_close_session("tim"));
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        char *json = test_spool_read(&s, 1, "json", NULL);
        assert_json_field(json, "auth.mechanism", mechs[i]);
        assert_json_field(json, "auth.password", "pa\001ss\033w");
        free(json);
        test_server_stop(&s);
    }
}

/* A user name with a control character never reaches a server: refused before connecting, by
 * the transporter and by the named session alike (the server sees no connection at all). */
static void test_control_character_user_refused(void **state)
{
    test_server_t s;
    const char *args[] = {"--oauth-token", "tim:ya29.tok", "--log", NULL, NULL};
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char logpath[600];
    snprintf(logpath, sizeof logpath, "%s/server.log", dir);
    args[3] = logpath;
    start_smtpd(&s, args);
    email_server_t srv;
    test_plain_server(&srv, s.port);
    srv.user = "tim\001auth=Bearer ya29.tok\001\001";
    srv.oauth2_token = "wrong";
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "user contains a control character"));
    srv.user = "tim";
    srv.oauth2_token = "ya29.tok\001";
    assert_null(email_transporter_new(&srv));
    assert_non_null(strstr(email_error_info(), "oauth2_token contains a control character"));

    assert_false(email_start_smtp_session("tim\033]0;x\007", "pw", "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "user contains a control character"));
    assert_null(strchr(email_error_info(), '\033')); /* the value itself is not echoed */
    /* the name was not kept */
    assert_false(email_close_session("tim\033]0;x\007"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    test_server_stop(&s);
    char *log = test_read_file(logpath, NULL);
    assert_true(!log || !strstr(log, "AUTH"));
    free(log);
    test_rmtree(dir);
    free(dir);
}

static void test_auth_wrong_password(void **state)
{
    test_server_t s;
    const char *args[] = {"--auth", "carol:right", "--auth-required", NULL};
    start_smtpd(&s, args);
    assert_false(email_start_smtp_session("carol", "wrong", "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_true(email_error_occurred());
    assert_int_equal(email_last_error(), EMAIL_EAUTH);
    assert_non_null(strstr(email_error_info(), "535"));
    /* the name was not kept */
    assert_false(email_send_message("carol", NULL));
    email_message_t *m = simple_message("c@example.org", "d@example.org", "x");
    assert_false(email_send_message("carol", m));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    email_message_free(m);
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
}

/* WLanguage's rule: the server offers neither LOGIN nor PLAIN → go on without authenticating. */
static void test_auth_not_offered(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    assert_true(email_start_smtp_session("dave", "secret", "127.0.0.1", s.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("dave@example.org", "erin@example.org", "no auth");
    assert_true(email_send_message("dave", m));
    email_message_free(m);
    assert_true(email_close_session("dave"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_null(test_json_string(json, "auth.mechanism"));
    free(json);
    test_server_stop(&s);
}

static void test_names(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    assert_true(email_start_smtp_session("same", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    assert_false(email_start_smtp_session("same", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                          EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    assert_true(email_close_session("same"));
    assert_false(email_close_session("same"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    assert_false(email_close_session("never-opened"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    /* bad arguments are named */
    assert_false(email_start_smtp_session("", NULL, "127.0.0.1", s.port, 0, 0));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_false(email_start_smtp_session("x", NULL, "127.0.0.1", 70000, 0, 0));
    assert_non_null(strstr(email_error_info(), "70000"));
    assert_false(email_start_smtp_session("x", NULL, "127.0.0.1", s.port, 7, 0));
    assert_non_null(strstr(email_error_info(), "mode"));
    test_server_stop(&s);
}

/* One recipient refused: sent to the others, the refused one reported with its code. */
static void test_partial_recipients(void **state)
{
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "nobody", NULL};
    start_smtpd(&s, args);
    email_transporter_t *t = test_plain_transporter(s.port);
    assert_non_null(t);

    email_message_t *m = simple_message("a@example.org", "ok1@example.org", "partial");
    assert_int_equal(email_message_add_cc(m, "nobody@example.org, ok2@example.org"), 0);
    email_status_t st;
    assert_int_equal(email_transporter_send(t, m, &st), 0);
    assert_true(st.success);
    assert_int_equal(st.status, 250);
    assert_int_equal(st.recipients, 3);
    assert_int_equal(st.rejected, 1);
    int code = 0;
    assert_string_equal(email_status_recipient(&st, 0, &code), "nobody@example.org");
    assert_int_equal(code, 550);
    assert_non_null(strstr(email_status_recipient_text(&st, 0), "rejected"));
    assert_null(email_status_recipient(&st, 1, &code));
    email_status_clear(&st);
    email_message_free(m);

    /* every recipient refused: not sent, each one listed */
    m = simple_message("a@example.org", "nobody@example.org", "none");
    assert_int_equal(email_message_add_bcc(m, "nobody2@example.org"), 0);
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ERECIPIENTS);
    assert_false(st.success);
    assert_int_equal(st.status, 550);
    assert_string_equal(st.enhanced_code, "5.1.1");
    assert_int_equal(st.rejected, 2);
    assert_string_equal(email_status_recipient(&st, 1, NULL), "nobody2@example.org");
    email_message_free(m);

    /* the session goes on after the failed transaction (RSET) */
    m = simple_message("a@example.org", "ok3@example.org", "after");
    assert_int_equal(email_transporter_send(t, m, &st), 0);
    email_message_free(m);
    email_transporter_free(t);

    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_int_equal(test_json_array_count(json, "rcpt_tos"), 2);
    assert_json_field(json, "rcpt_tos.1", "ok2@example.org");
    free(json);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_null(strstr(eml, "nobody2")); /* Bcc never in the headers */
    free(eml);
    test_server_stop(&s);
}

static void test_server_refusals(void **state)
{
    test_server_t s;
    const char *args[] = {"--data-reply", "554 5.6.0 Message content rejected", "--reject-mail",
                          "spammer", NULL};
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("r", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("a@example.org", "b@example.org", "refused");
    assert_false(email_send_message("r", m));
    assert_int_equal(email_last_error(), EMAIL_ESERVER);
    assert_non_null(strstr(email_error_info(), "554"));
    assert_non_null(strstr(email_error_info(), "5.6.0"));
    assert_non_null(strstr(email_error_info(), "Message content rejected"));
    email_message_free(m);

    m = simple_message("spammer@example.org", "b@example.org", "bad sender");
    assert_false(email_send_message("r", m));
    assert_non_null(strstr(email_error_info(), "553"));
    email_message_free(m);
    assert_true(email_close_session("r"));
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
}

static void test_helo_fallback(void **state)
{
    test_server_t s;
    const char *args[] = {"--no-ehlo", NULL};
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("h", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("a@example.org", "b@example.org", "helo");
    assert_true(email_send_message("h", m));
    email_message_free(m);
    assert_true(email_close_session("h"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_int_equal(test_json_bool(json, "esmtp"), 0);
    free(json);
    test_server_stop(&s);
}

/* smtp-sink offers PIPELINING: many messages over one session, every one arrives once. */
static void test_sink_many(void **state)
{
    test_server_t s;
    assert_int_equal(test_sink_start(&s, NULL), 0);
    assert_true(email_start_smtp_session("sink", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    const int n = 200;
    for (int i = 0; i < n; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "message %d", i);
        email_message_t *m = simple_message("a@example.org", "b@example.org, c@example.org",
                                            subject);
        if (!email_send_message("sink", m))
            fail_msg("message %d: %s", i, email_error_info());
        email_message_free(m);
    }
    assert_true(email_close_session("sink"));
    assert_int_equal(test_sink_wait(&s, n, 5000), n);
    test_server_stop(&s);
}

static void test_send_mime(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    assert_true(email_start_smtp_session("raw", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    const char *mime = "From: a@example.org\nTo: b@example.org\nSubject: raw\n\n"
                       "line one\n.dot line\n.\nlast line without newline";
    const char *rcpts[] = {"b@example.org", NULL};
    assert_true(email_send_mime("raw", "a@example.org", rcpts, mime, strlen(mime)));
    /* bad envelopes are refused before anything is sent */
    const char *bad[] = {"b@example.org>\r\nRCPT TO:<evil@example.org", NULL};
    assert_false(email_send_mime("raw", "a@example.org", bad, mime, strlen(mime)));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_false(email_send_mime("raw", "a@example.org", rcpts, mime, 0));
    assert_true(email_close_session("raw"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_string_equal(eml, "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\n"
                             "line one\r\n.dot line\r\n.\r\nlast line without newline\r\n");
    free(eml);
    test_server_stop(&s);
}

static void test_check_connection(void **state)
{
    test_server_t s;
    const char *args[] = {"--auth", "u:p", NULL};
    start_smtpd(&s, args);
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = s.port;
    srv.user = "u";
    srv.password = "p";
    srv.accept_unsecure_connection = true;
    email_transporter_t *t = email_transporter_new(&srv);
    email_status_t st;
    assert_int_equal(email_transporter_check_connection(t, &st), 0);
    assert_true(st.success);
    assert_int_equal(st.status, 235);
    email_transporter_free(t);

    srv.password = "wrong";
    t = email_transporter_new(&srv);
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_EAUTH);
    assert_false(st.success);
    assert_int_equal(st.status, 535);
    email_transporter_free(t);
    test_server_stop(&s);

    /* nobody listens any more on that port */
    srv.password = "p";
    t = email_transporter_new(&srv);
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_ECONNECT);
    assert_int_equal(st.status, 0);
    assert_non_null(strstr(st.status_text, "127.0.0.1"));
    email_transporter_free(t);

    /* bad settings are named */
    srv.host = NULL;
    assert_null(email_transporter_new(&srv));
    assert_non_null(strstr(email_error_info(), "host"));
}

/* A server that accepts the connection and never says a word: the timeout ends the wait. */
static void test_silent_server_times_out(void **state)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "sleep 8\n", NULL), 0);
    int old = email_get_timeout();
    email_set_timeout(1);
    assert_false(email_start_smtp_session("silent", NULL, "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_ETIMEDOUT);
    email_set_timeout(old);
    test_server_stop(&s);
}

/* 421 in the middle of a transaction: the message fails (one outcome), the session ends. */
static void test_421_mid_transaction(void **state)
{
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<a@example.org>.*\n"
                         "send 250 ok\n"
                         "expect RCPT TO:<b@example.org>\n"
                         "send 421 4.3.2 Service shutting down\n"
                         "close\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_true(email_start_smtp_session("s421", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("a@example.org", "b@example.org", "421");
    assert_false(email_send_message("s421", m));
    /* retried once on a fresh connection, which nobody accepts any more */
    assert_true(email_last_error() == EMAIL_ECONNECT || email_last_error() == EMAIL_ECLOSED);
    email_message_free(m);
    assert_true(email_close_session("s421"));
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
}

/* End of data sent, then the connection drops: unknown outcome, never a silent resend. */
static void test_drop_after_end_of_data(void **state)
{
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<a@example.org>.*\n"
                         "send 250 ok\n"
                         "expect RCPT TO:<b@example.org>\n"
                         "send 250 ok\n"
                         "expect DATA\n"
                         "send 354 go\n"
                         "expect-data\n"
                         "close\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_true(email_start_smtp_session("drop", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("a@example.org", "b@example.org", "maybe");
    assert_false(email_send_message("drop", m));
    assert_int_equal(email_last_error(), EMAIL_EUNKNOWN);
    email_message_free(m);
    assert_true(email_close_session("drop"));
    assert_int_equal(test_server_wait(&s, 5000), 0);
    size_t len;
    char *rec = test_scripted_record(&s, &len);
    assert_non_null(rec);
    assert_non_null(strstr(rec, "\r\n.\r\n"));
    free(rec);
    test_server_stop(&s);
}

/* CHUNKING: bodies go as BDAT chunks, byte-exact, no dot-stuffing; refusals still reported. */
static void test_chunking(void **state)
{
    test_server_t s;
    const char *args[] = {"--pipelining", "--chunking", "--reject-rcpt", "nobody", "--log",
                          NULL, NULL};
    char *log_path = test_tmpdir();
    char log_file[512];
    snprintf(log_file, sizeof log_file, "%s/server.log", log_path);
    args[5] = log_file;
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("bdat", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    /* a body of several chunks, with lines starting with a dot and bare line feeds */
    size_t n = 200000;
    char *body = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        body[i] = i % 61 == 60 ? '\n' : i % 61 == 0 ? '.' : (char)('a' + i % 26);
    body[n] = '\0';
    const char *rcpts[] = {"b@example.org", NULL};
    assert_true(email_send_mime("bdat", "a@example.org", rcpts, body, n));

    email_message_t *m = simple_message("a@example.org", "b@example.org", "partial");
    assert_int_equal(email_message_add_to(m, "nobody@example.org"), 0);
    assert_true(email_send_message("bdat", m)); /* one recipient refused: still sent */
    email_message_free(m);
    assert_true(email_close_session("bdat"));

    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    size_t len;
    char *eml = test_spool_read(&s, 1, "eml", &len);
    /* what went out: bare LF → CRLF, nothing else changed (no dot-stuffing with BDAT) */
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += body[i] == '\n';
    assert_int_equal(len, n + lines);
    for (size_t i = 0, j = 0; i < n; i++, j++) {
        if (body[i] == '\n')
            assert_int_equal(eml[j++], '\r');
        if (eml[j] != body[i])
            fail_msg("byte %zu differs", i);
    }
    free(eml);
    free(body);
    test_server_stop(&s);
    char *server_log = test_read_file(log_file, NULL);
    assert_non_null(strstr(server_log, "C: BDAT "));
    assert_non_null(strstr(server_log, " LAST"));
    assert_null(strstr(server_log, "C: DATA"));
    free(server_log);
    test_rmtree(log_path);
    free(log_path);
}

/* A message refused at BDAT LAST: reported with the server's reply, the next one still goes. */
static void test_chunking_refused(void **state)
{
    test_server_t s;
    const char *args[] = {"--pipelining", "--chunking", "--data-reply",
                          "554 5.6.0 Message content rejected", NULL};
    start_smtpd(&s, args);
    email_transporter_t *t = test_plain_transporter(s.port);
    email_message_t *m = simple_message("a@example.org", "b@example.org", "refused");
    email_status_t st;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ESERVER);
        assert_int_equal(st.status, 554);
        assert_string_equal(st.enhanced_code, "5.6.0");
        assert_non_null(strstr(st.status_text, "Message content rejected"));
    }
    email_message_free(m);
    email_transporter_free(t);
    test_server_stop(&s);
}

/* Calls from several threads at once: own sessions, and one session shared by two threads. */
typedef struct worker {
    int port;
    char name[32];
    int sent;
    bool start_own;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    if (w->start_own && !email_start_smtp_session(w->name, NULL, "127.0.0.1", w->port,
                                                  EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT))
        return NULL;
    for (int i = 0; i < 40; i++) {
        email_message_t *m = email_message_new();
        email_message_set_from(m, "a@example.org");
        email_message_add_to(m, "b@example.org");
        email_message_set_subject(m, w->name);
        email_message_set_text_body(m, "from a thread\n");
        if (email_send_message(w->name, m))
            w->sent++;
        else if (email_last_error() == 0 || !email_error_occurred())
            w->sent = -1000; /* a failure must always say why, in this thread */
        email_message_free(m);
    }
    if (w->start_own)
        email_close_session(w->name);
    return NULL;
}

static void test_threads(void **state)
{
    test_server_t s;
    assert_int_equal(test_sink_start(&s, NULL), 0);
    assert_true(email_start_smtp_session("shared", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    enum { N = 6 };
    worker_t w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].port = s.port;
        w[i].start_own = i >= 2;
        snprintf(w[i].name, sizeof w[i].name, "%s", i < 2 ? "shared" : "own");
        if (i >= 2)
            snprintf(w[i].name, sizeof w[i].name, "own-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].sent, 40);
        total += w[i].sent;
    }
    assert_true(email_close_session("shared"));
    assert_int_equal(test_sink_wait(&s, total, 5000), total);
    test_server_stop(&s);
}

/* Each status keeps its own refused recipients, whatever is sent afterwards in the thread. */
static void test_status_lists_kept(void **state)
{
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "bad", NULL};
    start_smtpd(&s, args);
    email_transporter_t *t = test_plain_transporter(s.port);
    email_message_t *m1 = simple_message("a@example.org", "ok@example.org, bad1@example.org", "1");
    email_message_t *m2 = simple_message("a@example.org", "bad2@example.org, bad3@example.org, "
                                         "ok@example.org", "2");
    email_status_t st1, st2, copy;
    assert_int_equal(email_transporter_send(t, m1, &st1), 0);
    assert_int_equal(email_transporter_send(t, m2, &st2), 0);
    assert_int_equal(st1.rejected, 1);
    assert_string_equal(email_status_recipient(&st1, 0, NULL), "bad1@example.org");
    assert_int_equal(st2.rejected, 2);
    assert_string_equal(email_status_recipient(&st2, 1, NULL), "bad3@example.org");
    copy = st2; /* a copy of the struct does not carry the list */
    assert_null(email_status_recipient(&copy, 0, NULL));
    email_status_clear(&st1);
    assert_int_equal(st1.rejected, 0);
    assert_null(email_status_recipient(&st1, 0, NULL));
    assert_string_equal(email_status_recipient(&st2, 0, NULL), "bad2@example.org");
    email_message_free(m1);
    email_message_free(m2);
    email_transporter_free(t);
    test_server_stop(&s);
}

typedef struct thread_send {
    int port;
    email_status_t *st;
    int rc;
} thread_send_t;

static void *send_with_refusals(void *arg)
{
    thread_send_t *ts = arg;
    email_transporter_t *t = test_plain_transporter(ts->port);
    email_message_t *m = simple_message("a@example.org", "bad1@example.org, ok@example.org, "
                                        "bad2@example.org", "from a thread");
    ts->rc = email_transporter_send(t, m, ts->st);
    email_message_free(m);
    email_transporter_free(t);
    return NULL;
}

/* The thread that sent has exited: its status's refused recipients are still the status's. */
static void test_status_read_after_sending_thread_exited(void **state)
{
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "bad", NULL};
    start_smtpd(&s, args);
    email_status_t st;
    thread_send_t ts = {.port = s.port, .st = &st};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_with_refusals, &ts), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(ts.rc, 0);
    assert_int_equal(st.rejected, 2);
    int code = 0;
    assert_string_equal(email_status_recipient(&st, 0, &code), "bad1@example.org");
    assert_int_equal(code, 550);
    assert_string_equal(email_status_recipient(&st, 1, NULL), "bad2@example.org");
    assert_non_null(strstr(email_status_recipient_text(&st, 1), "rejected"));
    email_status_clear(&st);
    assert_null(email_status_recipient(&st, 0, NULL));
    test_server_stop(&s);
}

/* email_shutdown with a transporter of the caller's still connected: its connection says QUIT,
 * shutdown returns, and the transporter works again afterwards. */
static void test_shutdown_with_open_transporter(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    email_transporter_t *t = test_plain_transporter(s.port);
    email_message_t *m = simple_message("a@example.org", "b@example.org", "before shutdown");
    assert_int_equal(email_transporter_send(t, m, NULL), 0);
    alarm(30); /* a hang fails the test instead of blocking the suite */
    email_shutdown();
    alarm(0);
    assert_int_equal(email_transporter_send(t, m, NULL), 0);
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    test_server_stop(&s);
}

/* A failure of the calling thread's, which the next call must replace, clear or leave alone. */
static void put_error(void)
{
    assert_false(email_close_session("no-such-session"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
}

#define CLEARED()                                                                                  \
    do {                                                                                           \
        assert_false(email_error_occurred());                                                      \
        assert_string_equal(email_error_info(), "");                                               \
    } while (0)

/* ErrorInfo on a real session: each call that succeeds clears it (email_message_status too),
 * and email_shutdown, which closes the open session, leaves the caller's last error alone. */
static void test_error_info_cleared_and_kept(void **state)
{
    test_server_t s;
    const char *args[] = {NULL};
    start_smtpd(&s, args);
    put_error();
    assert_true(email_start_smtp_session("errinfo", NULL, "127.0.0.1", s.port, EMAIL_ASYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    CLEARED();
    put_error();
    assert_int_equal(email_session_set_callback("errinfo", NULL, NULL), 0);
    CLEARED();
    static const char mime[] = "From: a@example.org\r\nSubject: e\r\n\r\nbody\r\n";
    const char *const rcpts[] = {"bob@example.org", NULL};
    uint64_t id = 0;
    put_error();
    assert_true(email_send_mime_id("errinfo", "a@example.org", rcpts, mime, strlen(mime), &id));
    CLEARED();
    put_error();
    assert_true(email_message_status(id) > 0);
    CLEARED();

    put_error();
    email_shutdown();
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    assert_string_equal(email_error_info(), "no session named \"no-such-session\" is open");
    assert_int_equal(email_message_status(id), EMAIL_SENT);
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    test_server_stop(&s);
}

static int teardown_all(void **state)
{
    email_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_auth_plain),
        LOOP_IDLE_TEST(test_auth_login),
        LOOP_IDLE_TEST(test_auth_both_prefers_plain),
        LOOP_IDLE_TEST(test_auth_wrong_password),
        LOOP_IDLE_TEST(test_auth_cram_md5_and_xoauth2),
        LOOP_IDLE_TEST(test_auth_not_offered),
        LOOP_IDLE_TEST(test_oauthbearer_user_with_comma_and_equals),
        LOOP_IDLE_TEST(test_control_character_user_refused),
        LOOP_IDLE_TEST(test_password_with_control_characters),
        LOOP_IDLE_TEST(test_names),
        LOOP_IDLE_TEST(test_partial_recipients),
        LOOP_IDLE_TEST(test_server_refusals),
        LOOP_IDLE_TEST(test_helo_fallback),
        LOOP_IDLE_TEST(test_sink_many),
        LOOP_IDLE_TEST(test_send_mime),
        LOOP_IDLE_TEST(test_check_connection),
        LOOP_IDLE_TEST(test_silent_server_times_out),
        LOOP_IDLE_TEST(test_421_mid_transaction),
        LOOP_IDLE_TEST(test_drop_after_end_of_data),
        LOOP_IDLE_TEST(test_chunking),
        LOOP_IDLE_TEST(test_chunking_refused),
        LOOP_IDLE_TEST(test_threads),
        LOOP_IDLE_TEST(test_status_lists_kept),
        LOOP_IDLE_TEST(test_status_read_after_sending_thread_exited),
        LOOP_IDLE_TEST(test_shutdown_with_open_transporter),
        LOOP_IDLE_TEST(test_error_info_cleared_and_kept),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
