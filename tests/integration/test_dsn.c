/*
 * DSN parameters and international addresses as a real server (aiosmtpd, tests/servers/smtpd.py)
 * received them: with and without DSN, with and without SMTPUTF8.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

#define BUCHER "b\xc3\xbc" "cher.example"
#define BUCHER_JSON "b\\u00fccher.example" /* how Python's json writes it */
#define BUCHER_ACE "xn--bcher-kva.example"

static void start(test_server_t *s, const char *const *args)
{
    if (test_server_start(s, "smtpd.py", args))
        fail_msg("smtpd.py did not start");
}

/* Sends m through a fresh transporter and returns the server's record of it (malloc'ed). */
static char *send_and_record(test_server_t *s, email_message_t *m, const char *log)
{
    email_server_t srv;
    test_plain_server(&srv, s->port);
    srv.log_file = log;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    test_transporter_send_ok(t, m);
    email_transporter_free(t);
    assert_int_equal(test_spool_wait(s, 1, 10000), 1);
    char *json = test_spool_read(s, 1, "json", NULL);
    assert_non_null(json);
    return json;
}

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" not in:\n%s", part, text);
}

static email_message_t *dsn_message(void)
{
    email_message_t *m = test_message("a@example.org", "b+1@example.org", "dsn", "x\n");
    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_FAILURE, "HDRS",
                                           "Q1 id=7+x"),
                     0);
    return m;
}

static void test_dsn_received(void **state)
{
    (void)state;
    test_server_t s;
    start(&s, (const char *const[]){"--dsn", NULL});
    email_message_t *m = dsn_message();
    char *json = send_and_record(&s, m, NULL);
    assert_has(json, "\"RET=HDRS\"");
    assert_has(json, "\"ENVID=Q1+20id+3D7+2Bx\"");
    assert_has(json, "\"NOTIFY=SUCCESS,FAILURE\"");
    assert_has(json, "\"ORCPT=rfc822;b+2B1@example.org\"");
    free(json);
    email_message_free(m);
    test_server_stop(&s);
}

/* A server without DSN gets the message without the parameters (it would refuse them: 555). */
static void test_dsn_not_offered(void **state)
{
    (void)state;
    test_server_t s;
    start(&s, (const char *const[]){NULL});
    char log[512];
    snprintf(log, sizeof log, "%s/client.log", s.dir);
    email_message_t *m = dsn_message();
    char *json = send_and_record(&s, m, log);
    assert_has(json, "\"mail_options\": []");
    char *text = test_read_file(log, NULL);
    assert_non_null(text);
    assert_has(text, "SMTP DSN not offered by the server: messages go without delivery status "
                     "notification requests");
    free(text);
    free(json);
    email_message_free(m);
    test_server_stop(&s);
}

/* International domains: A-labels without SMTPUTF8, UTF-8 with it. */
static void test_idn_envelope(void **state)
{
    (void)state;
    for (int utf8 = 0; utf8 < 2; utf8++) {
        test_server_t s;
        const char *args[] = {utf8 ? "--smtputf8" : NULL, NULL};
        start(&s, args);
        email_message_t *m = test_message("a@" BUCHER, "info@" BUCHER, "idn", "x\n");
        char *json = send_and_record(&s, m, NULL);
        assert_has(json, utf8 ? "\"mail_from\": \"a@" BUCHER_JSON "\""
                              : "\"mail_from\": \"a@" BUCHER_ACE "\"");
        assert_has(json, utf8 ? "\"info@" BUCHER_JSON "\"" : "\"info@" BUCHER_ACE "\"");
        assert_has(json, utf8 ? "\"smtputf8\": true" : "\"smtputf8\": false");
        char *eml = test_spool_read(&s, 1, "eml", NULL);
        assert_has(eml, "\r\nTo: info@" BUCHER_ACE "\r\n"); /* the header is ASCII either way */
        free(eml);
        free(json);
        email_message_free(m);
        test_server_stop(&s);
    }
}

/* A local part that is not ASCII needs SMTPUTF8: refused before MAIL without it, naming it. */
static void test_utf8_local_part(void **state)
{
    (void)state;
    for (int utf8 = 0; utf8 < 2; utf8++) {
        test_server_t s;
        const char *args[] = {utf8 ? "--smtputf8" : NULL, NULL};
        start(&s, args);
        email_message_t *m = test_message("a@example.org", "j\xc3\xb6rg@" BUCHER, "u", "x\n");
        email_server_t srv;
        test_plain_server(&srv, s.port);
        email_transporter_t *t = email_transporter_new(&srv);
        email_status_t st;
        int rc = email_transporter_send(t, m, &st);
        if (utf8) {
            assert_int_equal(rc, 0);
            assert_int_equal(test_spool_wait(&s, 1, 10000), 1);
            char *eml = test_spool_read(&s, 1, "eml", NULL);
            assert_has(eml, "\r\nTo: j\xc3\xb6rg@" BUCHER "\r\n"); /* RFC 6532 */
            free(eml);
        } else {
            assert_int_equal(rc, EMAIL_ENOTSUP);
            assert_has(st.status_text, "\"j\xc3\xb6rg@" BUCHER "\" has a local part that is not "
                                       "ASCII and the server does not offer SMTPUTF8");
            assert_has(email_error_info(), "j\xc3\xb6rg@" BUCHER);
            assert_int_equal(test_spool_count(&s), 0);
        }
        email_status_clear(&st);
        email_transporter_free(t);
        email_message_free(m);
        test_server_stop(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_dsn_received),
        LOOP_IDLE_TEST(test_dsn_not_offered),
        LOOP_IDLE_TEST(test_idn_envelope),
        LOOP_IDLE_TEST(test_utf8_local_part),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    email_shutdown();
    return rc;
}
