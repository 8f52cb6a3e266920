/*
 * Authentication and TLS against real servers on the loopback: SCRAM-SHA-256 and SCRAM-SHA-1
 * with dovecot's submission service (tests/servers/dovecot_submission.py, relaying to aiosmtpd);
 * a client certificate verified by a TLS server that requires one (aiosmtpd over Python's ssl)
 * and SASL EXTERNAL on it; close_notify seen by the scripted server over TLS; TLS session
 * resumption seen by the server (OpenSSL's session_reused) and in the log.
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
#include "server_asserts.h"

/* The certificates of tests/certs.sh and the client logs, made by the group setup. */
static char *dir;
static int timeout_s = 5;

/* A path in dir; rotating buffers so that several can sit in one argument list. */
static const char *dpath(const char *name)
{
    static char bufs[16][600];
    static unsigned next;
    char *b = bufs[next++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        fail_msg("\"%s\" not found in \"%s\"", needle, haystack ? haystack : "(null)");
}

static email_server_t server_on(int port, int security, const char *log_name)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = port;
    srv.security = security;
    srv.ca_file = dpath("ca.pem");
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    srv.log_file = dpath(log_name);
    return srv;
}

/* One message through a fresh transporter of srv: 0 or the error, the status's text in text. */
static int send_one(const email_server_t *srv, const char *subject, char *text, size_t size)
{
    email_transporter_t *t = email_transporter_new(srv);
    if (!t)
        fail_msg("email_transporter_new: %s", email_error_info());
    email_message_t *m = test_message("relay@example.org", "fred@example.org", subject, "Hi.\n");
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    snprintf(text, size, "%s", st.status_text);
    email_status_clear(&st);
    email_message_free(m);
    email_transporter_free(t);
    return rc;
}

static char *read_log(const char *name)
{
    char *log = test_read_file(dpath(name), NULL);
    assert_non_null(log);
    return log;
}

/* ------------------------------------------------------------------------------------------- */
/* SCRAM against dovecot                                                                        */

static void start_dovecot(test_server_t *dv, test_server_t *relay)
{
    start_smtpd(relay, NULL);
    char port[16];
    snprintf(port, sizeof port, "%d", relay->port);
    const char *args[] = {"--relay-port", port, NULL};
    assert_int_equal(test_server_start(dv, "dovecot_submission.py", args), 0);
}

/* Each account has only its mechanism's credentials: dovecot can run no other for it. With
 * authentication_mode NULL, SCRAM-SHA-256 is chosen over SCRAM-SHA-1, PLAIN and LOGIN. */
static void test_scram_dovecot(void **state)
{
    (void)state;
    test_server_t dv, relay;
    start_dovecot(&dv, &relay);
    const struct {
        const char *user, *mode, *mech, *log;
    } cases[] = {
        {"scram256", NULL, "SCRAM-SHA-256", "scram256.log"},
        {"scram1", "SCRAM-SHA-1", "SCRAM-SHA-1", "scram1.log"},
    };
    for (size_t i = 0; i < 2; i++) {
        email_server_t srv = server_on(dv.port, EMAIL_SECURITY_NONE, cases[i].log);
        srv.user = cases[i].user;
        srv.password = "pencil";
        srv.authentication_mode = cases[i].mode;
        char text[512];
        int rc = send_one(&srv, cases[i].mech, text, sizeof text);
        if (rc)
            fail_msg("%s: %s (%s)", cases[i].mech, email_error_name(rc), text);
        assert_int_equal(test_spool_wait(&relay, (int)i + 1, timeout_s * 1000), (int)i + 1);
        char *log = read_log(cases[i].log);
        char want[200];
        snprintf(want, sizeof want, "\"AUTH %s ****\"", cases[i].mech);
        assert_contains(log, want);
        snprintf(want, sizeof want, "SMTP Authenticated as '%s' (%s)", cases[i].user,
                 cases[i].mech);
        assert_contains(log, want);
        if (strstr(log, "pencil"))
            fail_msg("the log shows the password:\n%s", log);
        free(log);
    }
    /* a wrong password: refused by the server, nothing sent */
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_NONE, "scram_bad.log");
    srv.user = "scram256";
    srv.password = "pen";
    char text[512];
    assert_int_equal(send_one(&srv, "bad", text, sizeof text), EMAIL_EAUTH);
    assert_contains(text, "SCRAM-SHA-256");
    assert_int_equal(test_spool_count(&relay), 2);
    test_server_stop(&dv);
    test_server_stop(&relay);
}

/* ------------------------------------------------------------------------------------------- */
/* Client certificates, EXTERNAL                                                                */

/* A server that requires a certificate from the test CA gets ours, verified; without one, the
 * handshake fails. */
static void test_client_cert_required(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", dpath("good.pem"), dpath("good.key"), "--client-ca",
                          dpath("ca.pem"), NULL};
    start_smtpd(&s, args);
    email_server_t srv = server_on(s.port, EMAIL_SECURITY_TLS, "ccert.log");
    srv.client_cert_file = dpath("client.pem");
    srv.client_key_file = dpath("client.key");
    char text[512];
    int rc = send_one(&srv, "with a certificate", text, sizeof text);
    if (rc)
        fail_msg("send: %s (%s)", email_error_name(rc), text);
    assert_int_equal(test_spool_wait(&s, 1, timeout_s * 1000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_json_field(json, "tls_client", "relay-client");
    free(json);
    srv.client_cert_file = srv.client_key_file = NULL;
    assert_int_not_equal(send_one(&srv, "without", text, sizeof text), 0);
    assert_int_equal(test_spool_count(&s), 1);
    test_server_stop(&s);
}

/* A relay that authenticates by certificate: EXTERNAL, chosen since no password is given. */
static void test_external(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--starttls",   dpath("good.pem"), dpath("good.key"), "--client-ca",
                          dpath("ca.pem"), "--auth-mechs",   "EXTERNAL",        "--auth-required",
                          NULL};
    start_smtpd(&s, args);
    email_server_t srv = server_on(s.port, EMAIL_SECURITY_STARTTLS, "external.log");
    srv.client_cert_file = dpath("client.pem");
    srv.client_key_file = dpath("client.key");
    char text[512];
    int rc = send_one(&srv, "EXTERNAL", text, sizeof text);
    if (rc)
        fail_msg("send: %s (%s)", email_error_name(rc), text);
    assert_int_equal(test_spool_wait(&s, 1, timeout_s * 1000), 1);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_json_field(json, "auth.mechanism", "EXTERNAL");
    assert_json_field(json, "auth.login", "relay-client");
    free(json);
    char *log = read_log("external.log");
    assert_contains(log, "\"AUTH EXTERNAL =\"");
    free(log);
    test_server_stop(&s);
}

/* Files that cannot be loaded are refused at once, by name. */
static void test_client_cert_files_checked(void **state)
{
    (void)state;
    email_server_t srv = server_on(25, EMAIL_SECURITY_TLS, "unused.log");
    srv.client_cert_file = dpath("no-such.pem");
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_contains(email_error_info(), "no-such.pem");
    srv.client_cert_file = dpath("client.pem");
    srv.client_key_file = dpath("good.key"); /* another certificate's key */
    assert_null(email_transporter_new(&srv));
    assert_contains(email_error_info(), "good.key");
    srv.client_cert_file = NULL;
    assert_null(email_transporter_new(&srv));
    assert_contains(email_error_info(), "client_key_file");
}

/* ------------------------------------------------------------------------------------------- */
/* close_notify, resumption                                                                     */

/* After QUIT's reply the client ends TLS with close_notify, which the server sees. */
static void test_close_notify(void **state)
{
    (void)state;
    char script[2048];
    snprintf(script, sizeof script,
             "tls %s %s\n"
             "send 220 mx.example ESMTP\n"
             "expect EHLO .*\n"
             "send 250 mx.example\n"
             "expect QUIT\n"
             "send 221 2.0.0 Bye\n"
             "expect-close-notify\n",
             dpath("good.pem"), dpath("good.key"));
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_server_t srv = server_on(s.port, EMAIL_SECURITY_TLS, "close_notify.log");
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    int rc = email_transporter_check_connection(t, &st);
    if (rc)
        fail_msg("check: %s (%s)", email_error_name(rc), st.status_text);
    email_status_clear(&st);
    email_transporter_free(t);
    assert_int_equal(test_server_wait(&s, timeout_s * 1000), 0);
    test_server_stop(&s);
}

/* A second connection of the same transporter resumes the first's session: the server says so,
 * and so does the log. */
static void test_resumption(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        bool implicit = round == 0;
        test_server_t s;
        const char *args[] = {implicit ? "--tls" : "--starttls", dpath("good.pem"),
                              dpath("good.key"), NULL};
        start_smtpd(&s, args);
        const char *name = implicit ? "resume_tls.log" : "resume_starttls.log";
        email_server_t srv =
            server_on(s.port, implicit ? EMAIL_SECURITY_TLS : EMAIL_SECURITY_STARTTLS, name);
        srv.keep_alive = false; /* a connection per message */
        email_transporter_t *t = email_transporter_new(&srv);
        assert_non_null(t);
        for (int i = 0; i < 2; i++) {
            email_message_t *m = test_message("a@example.org", "b@example.org", "resume", "x\n");
            test_transporter_send_ok(t, m);
            email_message_free(m);
        }
        email_transporter_free(t);
        assert_int_equal(test_spool_wait(&s, 2, timeout_s * 1000), 2);
        for (int i = 1; i <= 2; i++) {
            char *json = test_spool_read(&s, i, "json", NULL);
            if (test_json_bool(json, "tls_resumed") != (i == 2))
                fail_msg("%s message %d: tls_resumed should be %s in %s", name, i,
                         i == 2 ? "true" : "false", json);
            free(json);
        }
        char *log = read_log(name);
        const char *first = strstr(log, " ### SMTP TLS session resumed\n");
        assert_non_null(first);
        assert_null(strstr(first + 1, " ### SMTP TLS session resumed\n"));
        free(log);
        test_server_stop(&s);
    }
}

/* ------------------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (test_under_valgrind())
        timeout_s = 30;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_auth_tls") != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (dir) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "test_auth_tls: files kept in %s\n", dir);
        else
            test_rmtree(dir);
        free(dir);
        dir = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_scram_dovecot, test_teardown_loop_idle),
        cmocka_unit_test_teardown(test_client_cert_required, test_teardown_loop_idle),
        cmocka_unit_test_teardown(test_external, test_teardown_loop_idle),
        cmocka_unit_test_teardown(test_client_cert_files_checked, test_teardown_loop_idle),
        cmocka_unit_test_teardown(test_close_notify, test_teardown_loop_idle),
        cmocka_unit_test_teardown(test_resumption, test_teardown_loop_idle),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
