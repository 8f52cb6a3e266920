/*
 * The transporter as programs written for 4D's SMTP transporter use it, against real servers on
 * 127.0.0.1: 4D's authenticationMode values (aiosmtpd with our XOAUTH2 / OAUTHBEARER decoding
 * what it received), the readable settings, 4D's statusText for failures that are not the
 * server's ("Failed to send email: ...", status 0) and their chain of causes (status.errors):
 * refused connection, silent server, untrusted certificate, a retry that cannot connect; and
 * ErrorInfo after each call, made of the status the caller gets (or would have got).
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

#define FAILED "Failed to send email: "

/* Certificates made by tests/certs.sh for the TLS case (group setup). */
static char *certdir;

static const char *cpath(const char *name)
{
    static char bufs[4][600];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", certdir, name);
    return b;
}

static email_message_t *simple_message(const char *subject)
{
    return test_message("tim@example.org", "b@example.org", subject, "Hello.\n");
}

/* The settings of a plain-TCP transporter to 127.0.0.1:port. */
static email_server_t plain_server(int port)
{
    email_server_t srv;
    test_plain_server(&srv, port);
    return srv;
}

/* A port nobody listens on any more: a server's, once stopped. */
static int closed_port(void)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    int port = s.port;
    test_server_stop(&s);
    return port;
}

static void assert_starts_with(const char *text, const char *prefix)
{
    if (strncmp(text, prefix, strlen(prefix)) != 0)
        fail_msg("\"%s\" does not begin with \"%s\"", text, prefix);
}

/* The status has exactly one link in its chain: {code, text, component}; text NULL: any. */
static void assert_one_cause(const email_status_t *st, int code, const char *text,
                             const char *component)
{
    assert_int_equal(email_status_error_count(st), 1);
    int got = 0;
    const char *comp = NULL;
    const char *msg = email_status_error(st, 0, &got, &comp);
    assert_non_null(msg);
    if (got != code)
        fail_msg("cause: %s, want %s (%s)", email_error_name(got), email_error_name(code), msg);
    assert_string_equal(comp, component);
    if (text)
        assert_string_equal(msg, text);
    assert_null(email_status_error(st, 1, NULL, NULL));
}

/* ------------------------------------------------------------------------------------------- */
/* Item 5: authenticationMode                                                                   */

/* Sends with mode against a server offering `offered`; returns the send's code and, when it
 * went through, checks the mechanism and token the server decoded. */
static int send_with_mode(const char *offered, const char *mode, const char *want_mech)
{
    test_server_t s;
    const char *args[] = {"--oauth-token", "tim:ya29.tok", "--auth-mechs", offered,
                          "--auth-required", NULL};
    start_smtpd(&s, args);
    email_server_t srv = plain_server(s.port);
    srv.user = "tim";
    srv.oauth2_token = "ya29.tok";
    srv.authentication_mode = mode;
    email_transporter_t *t = email_transporter_new(&srv);
    if (!t)
        fail_msg("mode %s: %s", mode, email_error_info());
    email_message_t *m = simple_message(mode);
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    email_message_free(m);
    email_transporter_free(t);
    if (want_mech) {
        if (rc)
            fail_msg("mode %s, %s offered: %s (%s)", mode, offered, email_error_name(rc),
                     st.status_text);
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        char *json = test_spool_read(&s, 1, "json", NULL);
        assert_non_null(json);
        assert_json_field(json, "auth.mechanism", want_mech);
        assert_json_field(json, "auth.login", "tim");
        assert_json_field(json, "auth.password", "ya29.tok"); /* the token it decoded */
        free(json);
    } else {
        assert_int_equal(test_spool_count(&s), 0);
        assert_non_null(strstr(st.status_text, mode)); /* the mode asked for is named */
    }
    email_status_clear(&st);
    test_server_stop(&s);
    return rc;
}

static void test_oauth2_mode(void **state)
{
    (void)state;
    /* both offered: XOAUTH2 */
    assert_int_equal(send_with_mode("OAUTHBEARER,XOAUTH2", "OAUTH2", "XOAUTH2"), 0);
    /* only OAUTHBEARER: that one */
    assert_int_equal(send_with_mode("PLAIN,OAUTHBEARER", "OAUTH2", "OAUTHBEARER"), 0);
    /* any case, as 4D; the SASL names still mean themselves */
    assert_int_equal(send_with_mode("XOAUTH2,OAUTHBEARER", "oauth2", "XOAUTH2"), 0);
    assert_int_equal(send_with_mode("XOAUTH2,OAUTHBEARER", "OAuthBearer", "OAUTHBEARER"), 0);
    /* neither offered: no other mechanism instead */
    assert_int_equal(send_with_mode("PLAIN,LOGIN", "OAUTH2", NULL), EMAIL_EAUTHMECH);
}

/* 4D's other values, in any case, against a server checking the password it decoded. */
static void test_4d_password_modes_any_case(void **state)
{
    (void)state;
    const char *modes[] = {"plain", "Login", "cram-md5"};
    const char *mechs[] = {"PLAIN", "LOGIN", "CRAM-MD5"};
    for (size_t i = 0; i < 3; i++) {
        test_server_t s;
        const char *args[] = {"--auth", "tim:secret", "--auth-mechs", "PLAIN,LOGIN,CRAM-MD5",
                              "--auth-required", NULL};
        start_smtpd(&s, args);
        email_server_t srv = plain_server(s.port);
        srv.user = "tim";
        srv.password = "secret";
        srv.authentication_mode = modes[i];
        email_transporter_t *t = email_transporter_new(&srv);
        assert_non_null(t);
        email_message_t *m = simple_message(modes[i]);
        email_status_t st;
        int rc = email_transporter_send(t, m, &st);
        if (rc)
            fail_msg("mode %s: %s (%s)", modes[i], email_error_name(rc), st.status_text);
        email_message_free(m);
        email_transporter_free(t);
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        char *json = test_spool_read(&s, 1, "json", NULL);
        assert_json_field(json, "auth.mechanism", mechs[i]);
        assert_json_field(json, "auth.password", "secret");
        free(json);
        test_server_stop(&s);
    }
}

/* SCRAM and EXTERNAL are taken by name; what they cannot work with is refused, by name, before
 * connecting: a password SCRAM would need SASLprep for, EXTERNAL without a certificate. */
static void test_auth_modes_checked(void **state)
{
    (void)state;
    const char *modes[] = {"SCRAM-SHA-256", "scram-sha-1"};
    for (size_t i = 0; i < 2; i++) {
        email_server_t srv = plain_server(25);
        srv.user = "tim";
        srv.password = "secret";
        srv.authentication_mode = modes[i];
        email_transporter_t *t = email_transporter_new(&srv);
        assert_non_null(t);
        email_server_t out;
        assert_int_equal(email_transporter_get_server(t, &out), 0);
        assert_string_equal(out.authentication_mode, i == 0 ? "SCRAM-SHA-256" : "SCRAM-SHA-1");
        email_transporter_free(t);
        srv.password = "s\xc3\xa9" "cret";
        assert_null(email_transporter_new(&srv));
        assert_int_equal(email_last_error(), EMAIL_ENOTSUP);
        assert_non_null(strstr(email_error_info(), modes[i]));
        assert_non_null(strstr(email_error_info(), "ASCII"));
    }
    email_server_t srv = plain_server(25);
    srv.authentication_mode = "NTLM";
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "NTLM"));
    srv.authentication_mode = "EXTERNAL";
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "client_cert_file"));
}

/* ------------------------------------------------------------------------------------------- */
/* Item 8: the settings read back                                                               */

static void test_get_server(void **state)
{
    (void)state;
    char host[] = "mail.example.org", user[] = "tim", mode[] = "oauth2";
    email_server_t srv;
    email_server_init(&srv);
    srv.host = host;
    srv.user = user;
    srv.password = "secret";
    srv.oauth2_token = "ya29.tok";
    srv.authentication_mode = mode;
    srv.helo_name = "client.example.org";
    srv.body_charset = EMAIL_MAIL_MODE_ISO88591;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    /* the caller's strings may go: the transporter's are its own */
    memset(host, 'x', sizeof host - 1);
    memset(user, 'x', sizeof user - 1);
    memset(mode, 'x', sizeof mode - 1);

    email_server_t out;
    memset(&out, 0xa5, sizeof out);
    assert_int_equal(email_transporter_get_server(t, &out), 0);
    assert_string_equal(out.host, "mail.example.org");
    assert_int_equal(out.port, 587); /* effective values, as 4D gives them */
    assert_int_equal(out.security, EMAIL_SECURITY_STARTTLS);
    assert_false(out.accept_unsecure_connection);
    assert_int_equal(out.connection_timeout, 30);
    assert_int_equal(out.send_timeout, 100);
    assert_true(out.keep_alive);
    assert_string_equal(out.user, "tim");
    assert_null(out.password);
    assert_null(out.oauth2_token);
    assert_string_equal(out.authentication_mode, "OAUTH2");
    assert_string_equal(out.helo_name, "client.example.org");
    assert_string_equal(out.header_charset, EMAIL_MAIL_MODE_UTF8);
    assert_string_equal(out.body_charset, EMAIL_MAIL_MODE_ISO88591);
    assert_null(out.log_file);
    assert_null(out.ca_file);
    email_transporter_free(t);

    email_server_init(&srv);
    srv.host = "::1";
    srv.security = EMAIL_SECURITY_TLS;
    srv.accept_unsecure_connection = true;
    srv.keep_alive = false;
    srv.connection_timeout = 7;
    srv.send_timeout = 9;
    t = email_transporter_new(&srv);
    assert_non_null(t);
    assert_int_equal(email_transporter_get_server(t, &out), 0);
    assert_string_equal(out.host, "::1");
    assert_int_equal(out.port, 465);
    assert_int_equal(out.security, EMAIL_SECURITY_TLS);
    assert_true(out.accept_unsecure_connection);
    assert_false(out.keep_alive);
    assert_int_equal(out.connection_timeout, 7);
    assert_int_equal(out.send_timeout, 9);
    assert_null(out.user);
    assert_null(out.authentication_mode); /* the strongest offered */
    assert_non_null(out.helo_name);       /* the machine's name, as sent */
    assert_true(out.helo_name[0] != '\0');
    assert_int_equal(email_transporter_get_server(t, NULL), EMAIL_EINVAL);
    assert_int_equal(email_transporter_get_server(NULL, &out), EMAIL_EINVAL);
    email_transporter_free(t);
}

/* ------------------------------------------------------------------------------------------- */
/* Items 7 and 9: failures that are not the server's                                            */

static void test_connection_refused(void **state)
{
    (void)state;
    int port = closed_port();
    char why[200], text[300];
    snprintf(why, sizeof why, "could not connect to 127.0.0.1 port %d: connection refused",
             port);
    snprintf(text, sizeof text, FAILED "%s", why);

    email_server_t srv = plain_server(port);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_ECONNECT);
    assert_false(st.success);
    assert_int_equal(st.status, 0);
    assert_string_equal(st.status_text, text);
    assert_one_cause(&st, EMAIL_ECONNECT, why, "transport");

    /* a copy has the fields, not the chain; clearing frees it */
    email_status_t copy = st;
    assert_int_equal(email_status_error_count(&copy), 0);
    email_status_clear(&st);
    assert_int_equal(email_status_error_count(&st), 0);

    email_message_t *m = simple_message("refused");
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ECONNECT);
    assert_int_equal(st.status, 0);
    assert_string_equal(st.status_text, text);
    assert_one_cause(&st, EMAIL_ECONNECT, why, "transport");
    /* filled again: the old chain is freed, the new one is there */
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ECONNECT);
    assert_one_cause(&st, EMAIL_ECONNECT, why, "transport");
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
}

/* What the completion callback saw (its status is valid during the call only). */
typedef struct seen {
    int calls;
    email_status_t st;
    size_t causes;
    int cause_code;
    char cause_component[32];
} seen_t;

static void remember(uint64_t id, const email_status_t *status, void *user_data)
{
    (void)id;
    seen_t *s = user_data;
    s->calls++;
    s->st = *status;
    s->causes = email_status_error_count(status);
    const char *component = "";
    if (email_status_error(status, 0, &s->cause_code, &component))
        snprintf(s->cause_component, sizeof s->cause_component, "%s", component);
}

static void test_connection_refused_async(void **state)
{
    (void)state;
    email_server_t srv = plain_server(closed_port());
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = simple_message("refused, asynchronously");
    seen_t seen = {0};
    assert_int_equal(email_transporter_send_async(t, m, remember, &seen, NULL), 0);
    email_message_free(m);
    /* the callback runs in email_dispatch (bounded wait: a hang fails instead of blocking) */
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    for (int i = 0; i < 300 && !seen.calls; i++)
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.st.error, EMAIL_ECONNECT);
    assert_int_equal(seen.st.status, 0);
    assert_starts_with(seen.st.status_text, FAILED "could not connect to 127.0.0.1 port ");
    assert_int_equal(seen.causes, 1);
    assert_int_equal(seen.cause_code, EMAIL_ECONNECT);
    assert_string_equal(seen.cause_component, "transport");
    email_transporter_free(t);
}

/* A prebuilt message on a transporter, waited for and queued: the text arrives as given (CRLF,
 * dots stuffed then unstuffed), the envelope as given; bad envelopes are refused up front. */
static void test_send_mime(void **state)
{
    (void)state;
    test_server_t s;
    start_smtpd(&s, NULL);
    email_server_t srv = plain_server(s.port);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    const char *mime = "From: a@example.org\nTo: b@example.org\nSubject: raw\n\n"
                       ".dot line\n.\nlast";
    const char *rcpts[] = {"b@example.org", "c@example.org", NULL};
    email_status_t st;
    assert_int_equal(email_transporter_send_mime(t, "a@example.org", rcpts, mime, strlen(mime),
                                                 &st), 0);
    assert_true(st.success);
    assert_int_equal(st.status, 250);
    assert_int_equal(st.recipients, 2);
    seen_t seen = {0};
    uint64_t id = 0;
    assert_int_equal(email_transporter_send_mime_async(t, "", rcpts, mime, strlen(mime),
                                                       remember, &seen, &id), 0);
    assert_true(id != 0);
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    for (int i = 0; i < 300 && !seen.calls; i++)
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    assert_int_equal(seen.calls, 1);
    assert_true(seen.st.success);
    assert_int_equal(email_message_status(id), EMAIL_SENT);

    const char *bad[] = {"b@example.org>\r\nRCPT TO:<evil@example.org", NULL};
    assert_int_equal(email_transporter_send_mime(t, "a@example.org", bad, mime, strlen(mime),
                                                 &st), EMAIL_EINVAL);
    assert_false(st.success);
    assert_int_equal(st.error, EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "recipient \"b@example.org>"));
    const char *none[] = {NULL};
    assert_int_equal(email_transporter_send_mime_async(t, "a@example.org", none, mime,
                                                       strlen(mime), NULL, NULL, &id),
                     EMAIL_EINVAL);
    assert_int_equal(id, 0);
    assert_string_equal(email_error_info(), "email_transporter_send_mime_async: no recipient");
    assert_int_equal(email_transporter_send_mime(t, "a@example.org", rcpts, "x\0y", 3, NULL),
                     EMAIL_EINVAL);
    assert_int_equal(email_transporter_send_mime(NULL, "a@example.org", rcpts, mime, 1, NULL),
                     EMAIL_EINVAL);
    email_status_clear(&st);
    email_transporter_free(t);

    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    for (int i = 1; i <= 2; i++) {
        char *eml = test_spool_read(&s, i, "eml", NULL);
        assert_string_equal(eml, "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n"
                                 "\r\n.dot line\r\n.\r\nlast\r\n");
        free(eml);
        char *json = test_spool_read(&s, i, "json", NULL);
        /* aiosmtpd reports the null sender as "<>" */
        assert_json_field(json, "mail_from", i == 1 ? "a@example.org" : "<>");
        free(json);
    }
    test_server_stop(&s);
}

/* A server that accepts and never greets: the connection timeout, ours. */
static void test_silent_server_timeout(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "sleep 8\n", NULL), 0);
    email_server_t srv = plain_server(s.port);
    srv.connection_timeout = 1;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = simple_message("silence");
    email_status_t st;
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ETIMEDOUT);
    assert_int_equal(st.status, 0);
    assert_starts_with(st.status_text, FAILED "timed out after 1 s: the server did not greet");
    assert_one_cause(&st, EMAIL_ETIMEDOUT, st.status_text + strlen(FAILED), "transport");
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
    test_server_stop(&s);
}

/* A certificate from a CA the client does not trust: TLS refused it, not the server. */
static void test_untrusted_certificate(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", cpath("good.pem"), cpath("good.key"), NULL};
    start_smtpd(&s, args);
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = s.port;
    srv.security = EMAIL_SECURITY_TLS;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_ECERT);
    assert_int_equal(st.status, 0);
    assert_starts_with(st.status_text, FAILED);
    assert_non_null(strstr(st.status_text, "issuer is unknown"));
    assert_one_cause(&st, EMAIL_ECERT, st.status_text + strlen(FAILED), "tls");
    email_status_clear(&st);
    email_transporter_free(t);
    test_server_stop(&s);
}

/* The connection breaks before the message went; its retry finds nobody listening: the chain
 * says both, outermost (the retry's failure) first. */
static void test_retry_chain(void **state)
{
    (void)state;
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<tim@example.org>.*\n"
                         "close\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_server_t srv = plain_server(s.port);
    srv.connection_timeout = 5;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = simple_message("retried");
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    /* the retry's connection is refused, or closed if the script's socket still listened */
    if (rc != EMAIL_ECONNECT && rc != EMAIL_ECLOSED)
        fail_msg("%s: %s", email_error_name(rc), st.status_text);
    assert_int_equal(st.status, 0);
    assert_starts_with(st.status_text, FAILED);
    assert_int_equal(email_status_error_count(&st), 2);
    int code = 0;
    const char *component = NULL;
    const char *outer = email_status_error(&st, 0, &code, &component);
    assert_int_equal(code, rc);
    assert_string_equal(outer, st.status_text + strlen(FAILED));
    assert_string_equal(component, "transport");
    const char *inner = email_status_error(&st, 1, &code, &component);
    assert_non_null(inner);
    assert_int_equal(code, EMAIL_ECLOSED);
    assert_string_equal(component, "transport");
    assert_starts_with(inner, "the connection ended before the message was sent");
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
}

/* A message that cannot be composed: ours too, from "mime". */
static void test_message_refused_before_sending(void **state)
{
    (void)state;
    email_server_t srv = plain_server(closed_port());
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "tim@example.org"), 0);
    email_status_t st;
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_EINVAL);
    assert_int_equal(st.status, 0);
    assert_starts_with(st.status_text, FAILED "To: ");
    assert_one_cause(&st, EMAIL_EINVAL, st.status_text + strlen(FAILED), "mime");
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
}

/* The server's refusal keeps the server's code and text, and has no chain (4D: no errors when
 * the server answered). */
static void test_server_refusal_is_the_servers(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "b@", NULL};
    start_smtpd(&s, args);
    email_server_t srv = plain_server(s.port);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = simple_message("refused by the server");
    email_status_t st;
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ERECIPIENTS);
    assert_int_equal(st.status, 550);
    assert_non_null(strstr(st.status_text, "<b@example.org>: Recipient address rejected"));
    assert_null(strstr(st.status_text, "Failed to send email"));
    assert_int_equal(email_status_error_count(&st), 0);
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
    test_server_stop(&s);
}

/* Named sessions keep their ErrorInfo (WLanguage's, made of the status text): no 4D prefix. */
static void test_named_session_text_unchanged(void **state)
{
    (void)state;
    int port = closed_port();
    assert_false(email_start_smtp_session("fid", NULL, "127.0.0.1", port, EMAIL_SYNCHRONOUS,
                                          EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_ECONNECT);
    assert_null(strstr(email_error_info(), "Failed to send email"));
    assert_non_null(strstr(email_error_info(), "could not connect to 127.0.0.1"));
}

/* ------------------------------------------------------------------------------------------- */
/* ErrorInfo: set by a failure from the status's text and the server's codes, cleared by success */

/* A failure of another call, which the next call must replace or clear. */
static void put_sentinel(void)
{
    assert_false(email_close_session("nosuch-session"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
}

/* ErrorInfo is rc with "what: ", the status's text and the server's codes when it answered. */
static void assert_error_info(int rc, const char *what, const email_status_t *st)
{
    char want[1024];
    if (st->status && st->enhanced_code[0])
        snprintf(want, sizeof want, "%s: %s (server reply %d %s)", what, st->status_text,
                 st->status, st->enhanced_code);
    else if (st->status)
        snprintf(want, sizeof want, "%s: %s (server reply %d)", what, st->status_text,
                 st->status);
    else
        snprintf(want, sizeof want, "%s: %s", what, st->status_text);
    if (email_last_error() != rc)
        fail_msg("%s: ErrorInfo's code is %s, not %s (%s)", what,
                 email_error_name(email_last_error()), email_error_name(rc), email_error_info());
    assert_string_equal(email_error_info(), want);
}

static void assert_cleared(void)
{
    assert_false(email_error_occurred());
    assert_string_equal(email_error_info(), "");
}

/* check_connection: the server's refusal with its codes, with or without a status to fill. */
static void test_error_info_check_connection(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--auth", "carol:right", "--auth-required", NULL};
    start_smtpd(&s, args);
    email_server_t srv = plain_server(s.port);
    srv.user = "carol";
    srv.password = "wrong";
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    put_sentinel();
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_EAUTH);
    assert_int_equal(st.status, 535);
    assert_string_equal(st.enhanced_code, "5.7.8");
    assert_error_info(EMAIL_EAUTH, "email_transporter_check_connection", &st);
    put_sentinel();
    assert_int_equal(email_transporter_check_connection(t, NULL), EMAIL_EAUTH);
    assert_error_info(EMAIL_EAUTH, "email_transporter_check_connection", &st);
    email_status_clear(&st);
    email_transporter_free(t);

    srv.password = "right";
    t = email_transporter_new(&srv);
    assert_non_null(t);
    put_sentinel();
    assert_int_equal(email_transporter_check_connection(t, NULL), 0);
    assert_cleared();
    email_transporter_free(t);
    test_server_stop(&s);

    /* nobody listening: ours, 4D's text */
    t = test_plain_transporter(closed_port());
    put_sentinel();
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_ECONNECT);
    assert_error_info(EMAIL_ECONNECT, "email_transporter_check_connection", &st);
    email_status_clear(&st);
    email_transporter_free(t);
}

/* send: a refused recipient with the server's codes; a message that went clears. */
static void test_error_info_send(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "b@", NULL};
    start_smtpd(&s, args);
    email_transporter_t *t = test_plain_transporter(s.port);
    email_message_t *m = simple_message("refused, ErrorInfo");
    email_status_t st;
    put_sentinel();
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ERECIPIENTS);
    assert_int_equal(st.status, 550);
    assert_error_info(EMAIL_ERECIPIENTS, "email_transporter_send", &st);
    put_sentinel();
    assert_int_equal(email_transporter_send(t, m, NULL), EMAIL_ERECIPIENTS);
    assert_error_info(EMAIL_ERECIPIENTS, "email_transporter_send", &st);
    email_status_clear(&st);
    email_message_free(m);

    m = test_message("tim@example.org", "c@example.org", "accepted, ErrorInfo", "Hello.\n");
    put_sentinel();
    assert_int_equal(email_transporter_send(t, m, NULL), 0);
    assert_cleared();
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(test_spool_count(&s), 1);
    test_server_stop(&s);
}

/* cancel: too late for a message whose MAIL went out, with its id; a queued one clears. */
static void test_error_info_cancel(void **state)
{
    (void)state;
    test_server_t s;
    /* holds the first MAIL until its stdin closes; the connection then ends */
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<tim@example.org>.*\n"
                         "sleep 60\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_server_t srv = plain_server(s.port);
    srv.connection_timeout = 5;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    uint64_t first = 0, second = 0;
    email_message_t *m = simple_message("in flight");
    assert_int_equal(email_transporter_send_async(t, m, NULL, NULL, &first), 0);
    email_message_free(m);
    m = simple_message("queued");
    assert_int_equal(email_transporter_send_async(t, m, NULL, NULL, &second), 0);
    email_message_free(m);
    long long deadline = test_now_ms() + 5000;
    char *rec = NULL;
    while (!(rec = test_scripted_record(&s, NULL)) || !strstr(rec, "MAIL FROM:")) {
        free(rec);
        rec = NULL;
        if (test_now_ms() > deadline)
            fail_msg("the client never sent MAIL FROM");
        test_sleep_ms(20);
    }
    free(rec);

    put_sentinel();
    assert_int_equal(email_transporter_cancel(t, first), EMAIL_EBUSY);
    char want[128];
    snprintf(want, sizeof want, "email_transporter_cancel: message %llu has already started",
             (unsigned long long)first);
    assert_int_equal(email_last_error(), EMAIL_EBUSY);
    assert_starts_with(email_error_info(), want);
    put_sentinel();
    assert_int_equal(email_transporter_cancel(t, second), 0);
    assert_cleared();

    close(s.stdin_fd); /* ends scripted.py, and the first message with its connection */
    s.stdin_fd = -1;
    email_transporter_free(t);
    test_server_stop(&s);
}

/* ------------------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    certdir = test_tmpdir();
    if (!certdir)
        return -1;
    return test_make_certs(certdir, "test_transporter");
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (certdir)
        test_rmtree(certdir);
    free(certdir);
    certdir = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_oauth2_mode),
        LOOP_IDLE_TEST(test_4d_password_modes_any_case),
        LOOP_IDLE_TEST(test_auth_modes_checked),
        LOOP_IDLE_TEST(test_get_server),
        LOOP_IDLE_TEST(test_connection_refused),
        LOOP_IDLE_TEST(test_connection_refused_async),
        LOOP_IDLE_TEST(test_send_mime),
        LOOP_IDLE_TEST(test_silent_server_timeout),
        LOOP_IDLE_TEST(test_untrusted_certificate),
        LOOP_IDLE_TEST(test_retry_chain),
        LOOP_IDLE_TEST(test_message_refused_before_sending),
        LOOP_IDLE_TEST(test_server_refusal_is_the_servers),
        LOOP_IDLE_TEST(test_named_session_text_unchanged),
        LOOP_IDLE_TEST(test_error_info_check_connection),
        LOOP_IDLE_TEST(test_error_info_send),
        LOOP_IDLE_TEST(test_error_info_cancel),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
