/*
 * Hostile and broken POP3 servers (tests/servers/scripted.py), through 4D's POP3 transporter:
 * bytes smuggled after STLS's +OK (the libetpan CVE-2020-15953 class), STLS refused when it is
 * required, a greeting trickled slower than the timeout, a connection dropped in the middle of
 * a RETR, an -ERR greeting, a reply line without end, sizes no uint64 holds. Each must end with
 * a clear error (the code and the text checked), within the timeout, and send nothing it must
 * not (checked on what the server recorded).
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

static int timeout_s = 3;
static char *certdir;
static char pathbuf[4][600];
static int pathnext;

static const char *dpath(const char *name)
{
    char *p = pathbuf[pathnext++ % 4];
    snprintf(p, sizeof pathbuf[0], "%s/%s", certdir, name);
    return p;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" not in \"%s\"", needle, hay ? hay : "(null)");
}

static email_pop3_transporter_t *transporter_on(int port, int security)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = port;
    srv.security = security;
    srv.user = "alice";
    srv.password = "pencil";
    srv.ca_file = dpath("ca.pem");
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    email_pop3_transporter_t *t = email_pop3_transporter_new(&srv);
    assert_non_null(t);
    return t;
}

/* Plays script; box info is asked; the call must fail with code and status text holding text.
 * Returns what the client sent (the caller frees it). */
static char *box_info_fails(const char *script, int security, int code, const char *text)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_pop3_transporter_t *t = transporter_on(s.port, security);
    email_pop3_box_info_t info = {7, 7};
    email_status_t st;
    long long t0 = test_now_ms();
    int rc = email_pop3_get_box_info(t, &info, &st);
    long long took = test_now_ms() - t0;
    if (rc != code)
        fail_msg("got %s (%s), not %s", email_error_name(rc), st.status_text,
                 email_error_name(code));
    assert_false(st.success);
    assert_int_equal(st.error, code);
    assert_contains(st.status_text, text);
    assert_int_equal(info.count, 0);
    /* a bound, not a measurement: the call ended because of the fault, not never */
    assert_true(took < (timeout_s + 30) * 1000LL);
    email_status_clear(&st);
    email_pop3_transporter_free(t);
    test_server_stop(&s);
    size_t len;
    char *rec = test_scripted_record(&s, &len);
    return rec ? rec : strdup("");
}

/* The server's +OK to STLS comes with a second line in the same write: those bytes were read
 * before TLS began, and obeying them would let a man in the middle speak for the server. */
static void test_stls_injection(void **state)
{
    (void)state;
    char script[1024];
    snprintf(script, sizeof script,
             "send +OK POP3 ready\n"
             "expect CAPA\n"
             "send +OK\\r\\nSTLS\\r\\nUSER\\r\\n.\n"
             "expect STLS\n"
             "send +OK Begin TLS\\r\\n+OK injected\n"
             "sleep 1\n"
             "close\n");
    char *rec = box_info_fails(script, EMAIL_SECURITY_STARTTLS, EMAIL_EPROTO, "TLS");
    assert_null(strstr(rec, "USER"));
    assert_null(strstr(rec, "pencil"));
    free(rec);
}

/* STARTTLS required, STLS refused: no credentials go, the session ends. */
static void test_stls_refused(void **state)
{
    (void)state;
    const char *script = "send +OK POP3 ready\n"
                         "expect CAPA\n"
                         "send +OK\\r\\nSTLS\\r\\nUSER\\r\\n.\n"
                         "expect STLS\n"
                         "send -ERR not today\n"
                         "expect QUIT\n"
                         "send +OK bye\n";
    char *rec = box_info_fails(script, EMAIL_SECURITY_STARTTLS, EMAIL_ETLSREQUIRED, "STLS");
    assert_null(strstr(rec, "USER"));
    assert_null(strstr(rec, "AUTH"));
    free(rec);
}

/* STLS required but not in CAPA: the client still asks (a CAPA may be incomplete) and stops
 * there when it is refused; no credentials go. */
static void test_stls_not_offered(void **state)
{
    (void)state;
    const char *script = "send +OK POP3 ready\n"
                         "expect CAPA\n"
                         "send +OK\\r\\nUSER\\r\\n.\n"
                         "expect STLS\n"
                         "send -ERR what is that\n"
                         "expect QUIT\n"
                         "send +OK bye\n";
    char *rec = box_info_fails(script, EMAIL_SECURITY_STARTTLS, EMAIL_ETLSREQUIRED, "STLS");
    assert_null(strstr(rec, "USER"));
    free(rec);
}

/* The greeting trickles a byte every 400 ms: each byte is news, but the line is not whole
 * within the timeout (3 s), which ends it. */
static void test_trickled_greeting(void **state)
{
    (void)state;
    char script[4096] = "";
    const char *greeting = "+OK POP3 server ready and very slow";
    for (const char *p = greeting; *p; p++) {
        char step[64];
        snprintf(step, sizeof step, "sendraw %c\nsleep 0.4\n", *p == ' ' ? '_' : *p);
        strcat(script, step);
    }
    strcat(script, "send !\n");
    char *rec = box_info_fails(script, EMAIL_SECURITY_NONE, EMAIL_ETIMEDOUT, "");
    assert_null(strstr(rec, "USER"));
    free(rec);
}

static const char *LOGIN =
    "send +OK POP3 ready\n"
    "expect CAPA\n"
    "send +OK\\r\\nUSER\\r\\n.\n"
    "expect USER alice\n"
    "send +OK\n"
    "expect PASS pencil\n"
    "send +OK logged in\n";

/* The connection drops halfway through a message: an error, no message, nothing half-read
 * handed out. */
static void test_drop_in_retr(void **state)
{
    (void)state;
    char script[2048];
    snprintf(script, sizeof script,
             "%s"
             "expect LIST 1\n"
             "send +OK 1 5000\n"
             "expect UIDL 1\n"
             "send +OK 1 abc\n"
             "expect RETR 1\n"
             "send +OK 5000 octets\\r\\nSubject: half\\r\\n\\r\\nthe first half of the body\n"
             "close\n",
             LOGIN);
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_pop3_transporter_t *t = transporter_on(s.port, EMAIL_SECURITY_NONE);
    email_message_t *m = (email_message_t *)1;
    email_status_t st;
    int rc = email_pop3_get_mail(t, 1, &m, &st);
    if (rc != EMAIL_ECLOSED)
        fail_msg("got %s (%s)", email_error_name(rc), st.status_text);
    assert_null(m);
    assert_false(st.success);
    email_status_clear(&st);
    char *data = (char *)1;
    size_t len = 7;
    /* the next call opens a session again: the script is over, so it cannot connect */
    rc = email_pop3_get_mail_raw(t, 1, &data, &len, &st);
    assert_true(rc == EMAIL_ECONNECT || rc == EMAIL_ECLOSED || rc == EMAIL_ETIMEDOUT);
    assert_null(data);
    assert_int_equal(len, 0);
    email_status_clear(&st);
    email_pop3_transporter_free(t);
    test_server_stop(&s);
}

/* An -ERR greeting is the server's refusal, with its line. */
static void test_err_greeting(void **state)
{
    (void)state;
    char *rec = box_info_fails("send -ERR [SYS/TEMP] too busy\nsleep 1\nclose\n",
                               EMAIL_SECURITY_NONE, EMAIL_ESERVER, "too busy");
    assert_null(strstr(rec, "USER"));
    free(rec);
}

/* A reply line that never ends: capped, refused as a protocol breach, not buffered for ever. */
static void test_endless_line(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    char *script = malloc(n + 256);
    assert_non_null(script);
    strcpy(script, "sendraw +OK ");
    size_t at = strlen(script);
    memset(script + at, 'x', n);
    strcpy(script + at + n, "\nsleep 2\nclose\n");
    char *rec = box_info_fails(script, EMAIL_SECURITY_NONE, EMAIL_EPROTO, "");
    assert_null(strstr(rec, "USER"));
    free(rec);
    free(script);
}

/* STAT with a count or size no uint64 holds: a protocol error, not a wrapped number. */
static void test_huge_numbers(void **state)
{
    (void)state;
    const char *answers[] = {"+OK 1 99999999999999999999999", "+OK 4294967296 10",
                             "+OK -1 10", "+OK 1", "+OK 1 12x"};
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        char script[2048];
        snprintf(script, sizeof script, "%sexpect STAT\nsend %s\n", LOGIN, answers[i]);
        char *rec = box_info_fails(script, EMAIL_SECURITY_NONE, EMAIL_EPROTO, "malformed");
        free(rec);
    }
}

/* A UIDL longer than RFC 1939's 70 characters would be cut to fit, and two messages could then
 * share an id: refused. The largest size a uint64 holds is taken as it is. */
static void test_uidl_bounds(void **state)
{
    (void)state;
    char uid[80];
    memset(uid, 'u', 71);
    uid[71] = '\0';
    char script[2048];
    snprintf(script, sizeof script,
             "%sexpect LIST\nsend +OK\\r\\n1 18446744073709551615\\r\\n.\n"
             "expect UIDL\nsend +OK\\r\\n1 %s\\r\\n.\n",
             LOGIN, uid);
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_pop3_transporter_t *t = transporter_on(s.port, EMAIL_SECURITY_NONE);
    email_pop3_mail_info_t *list = (email_pop3_mail_info_t *)1;
    size_t n = 9;
    email_status_t st;
    int rc = email_pop3_get_mail_info_list(t, &list, &n, &st);
    if (rc != EMAIL_EPROTO)
        fail_msg("got %s (%s)", email_error_name(rc), st.status_text);
    assert_null(list);
    assert_int_equal(n, 0);
    assert_contains(st.status_text, "malformed");
    email_status_clear(&st);
    email_pop3_transporter_free(t);
    test_server_stop(&s);
}

/* A call refused for its arguments still fills the caller's status (which may hold anything
 * before): the code and the text, and email_status_clear is safe after it. */
static void test_refusals_fill_status(void **state)
{
    (void)state;
    email_pop3_transporter_t *t = transporter_on(1, EMAIL_SECURITY_NONE); /* never connects */
    email_status_t st;
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_pop3_get_mail(t, 0, &(email_message_t *){NULL}, &st), EMAIL_EINVAL);
    assert_false(st.success);
    assert_int_equal(st.error, EMAIL_EINVAL);
    assert_contains(st.status_text, "count from 1");
    email_status_clear(&st);
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_pop3_get_box_info(t, NULL, &st), EMAIL_EINVAL);
    assert_contains(st.status_text, "info is NULL");
    email_status_clear(&st);
    memset(&st, 0xA5, sizeof st);
    assert_int_equal(email_pop3_delete(t, 0, &st), EMAIL_EINVAL);
    assert_int_equal(st.error, EMAIL_EINVAL);
    email_status_clear(&st);
    email_pop3_transporter_free(t);
}

static int group_setup(void **state)
{
    (void)state;
    if (getenv("EMAIL_UNDER_VALGRIND"))
        timeout_s = 10;
    certdir = test_tmpdir();
    if (!certdir || test_make_certs(certdir, "test_pop3_hostile") != 0)
        return -1;
    email_set_timeout(timeout_s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (certdir) {
        test_rmtree(certdir);
        free(certdir);
        certdir = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stls_injection),
        cmocka_unit_test(test_stls_refused),
        cmocka_unit_test(test_stls_not_offered),
        cmocka_unit_test(test_trickled_greeting),
        cmocka_unit_test(test_drop_in_retr),
        cmocka_unit_test(test_err_greeting),
        cmocka_unit_test(test_endless_line),
        cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_uidl_bounds),
        cmocka_unit_test(test_refusals_fill_status),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
