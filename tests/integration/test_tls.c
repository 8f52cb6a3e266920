/*
 * TLS against real servers on the loopback: aiosmtpd with STARTTLS (offered or required) and
 * with implicit TLS, using throwaway certificates made by tests/certs.sh (a test CA, a good
 * certificate, one for another name, an expired one, a self-signed one), and a scripted server
 * for the STARTTLS attacks (not offered, refused with 454, response injection).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

/* The folder with the certificates (and the servers' logs), made by the group setup. */
static char *certdir;
/* Seconds for every wait; more under valgrind, where a handshake is much slower. */
static int timeout_s = 5;

/* A path in certdir; rotating buffers so that several can sit in one argument list. */
static const char *cpath(const char *name)
{
    static char bufs[32][600];
    static unsigned next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof bufs[0], "%s/%s", certdir, name);
    return b;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_ca(const char *name)
{
    assert_int_equal(email_set_ca_file(name ? cpath(name) : NULL), 0);
}

/*
 * What a test allocates is owned here until it frees it, so that a failing assertion (which
 * leaves the test by longjmp) leaks nothing: the per-test teardown frees what is left, and
 * valgrind then reports only the library's own leaks.
 */
typedef void (*drop_fn)(void *);
static struct {
    void *p;
    drop_fn fn;
} owned[128];

static void *own(void *p, drop_fn fn)
{
    assert_non_null(p);
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
        if (!owned[i].p) {
            owned[i].p = p;
            owned[i].fn = fn;
            return p;
        }
    fail_msg("too many owned objects");
    return NULL;
}

/* Frees p now (it must be owned). */
static void drop(void *p)
{
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
        if (owned[i].p == p) {
            owned[i].p = NULL;
            owned[i].fn(p);
            return;
        }
    fail_msg("dropping an object not owned");
}

static void drop_all(void)
{
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
        if (owned[i].p) {
            void *p = owned[i].p;
            owned[i].p = NULL;
            owned[i].fn(p);
        }
}

static void free_transporter_(void *p)
{
    email_transporter_free(p);
}

static void free_message_(void *p)
{
    email_message_free(p);
}

static email_transporter_t *new_transporter(const email_server_t *srv)
{
    email_transporter_t *t = email_transporter_new(srv);
    if (!t)
        fail_msg("email_transporter_new: %s", email_error_info());
    return own(t, free_transporter_);
}

static email_message_t *new_message(void)
{
    return own(email_message_new(), free_message_);
}

static email_message_t *simple_message(const char *from, const char *to, const char *subject)
{
    email_message_t *m = new_message();
    assert_int_equal(email_message_set_from(m, from), 0);
    assert_int_equal(email_message_add_to(m, to), 0);
    assert_int_equal(email_message_set_subject(m, subject), 0);
    assert_int_equal(email_message_set_text_body(m, "Hello over TLS,\n.leading dot\nBye.\n"), 0);
    return m;
}

static void start_scripted(test_server_t *s, const char *script)
{
    assert_int_equal(test_scripted_start(s, script, NULL), 0);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        fail_msg("\"%s\" not found in \"%s\"", needle, haystack ? haystack : "(null)");
}

/* Spooled message n was received over TLS (and, when login is given, after AUTH as login). */
static void assert_spooled_tls(const test_server_t *s, int n, const char *login, bool tls)
{
    char *json = test_spool_read(s, n, "json", NULL);
    assert_non_null(json);
    if (test_json_bool(json, "tls") != (tls ? 1 : 0))
        fail_msg("message %d: tls should be %s in %s", n, tls ? "true" : "false", json);
    if (login) {
        assert_json_field(json, "auth.login", login);
    } else {
        char *mech = test_json_string(json, "auth.mechanism");
        if (mech)
            fail_msg("message %d: unexpected AUTH %s", n, mech);
    }
    free(json);
}

/*
 * The client lines smtpd.py logged (--log), in order, as one string of "C: ..." lines; the
 * server's own lines and the other markers are dropped except "-- STARTTLS done".
 */
static char *client_log(const char *path)
{
    char *log = test_read_file(path, NULL);
    assert_non_null(log);
    char *out = calloc(1, strlen(log) + 1);
    assert_non_null(out);
    char *o = out;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = strchr(line, ']'); /* "[id] C: EHLO x" */
        if (!p || p[1] != ' ')
            continue;
        p += 2;
        if (!strncmp(p, "C: ", 3) || !strcmp(p, "-- STARTTLS done")) {
            o += sprintf(o, "%s\n", p);
        }
    }
    free(log);
    return out;
}

/* Neither credentials nor a transaction reached the server. */
static void assert_no_auth_no_mail(const char *client_lines)
{
    static const char *const bad[] = {"C: AUTH", "C: MAIL", "C: RCPT", "C: DATA"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (strstr(client_lines, bad[i]))
            fail_msg("\"%s\" reached the server:\n%s", bad[i], client_lines);
}

/*
 * Every line a client sent to scripted.py starts with one of verbs (e.g. "EHLO ", "QUIT"),
 * compared without regard to case; a last line without CRLF counts too.
 */
static void assert_record_only(const char *rec, size_t len, const char *const *verbs)
{
    size_t i = 0;
    while (i < len) {
        const char *line = rec + i;
        const char *end = memchr(line, '\n', len - i);
        size_t n = end ? (size_t)(end - line) + 1 : len - i;
        bool ok = false;
        for (const char *const *v = verbs; *v && !ok; v++)
            ok = n >= strlen(*v) && !strncasecmp(line, *v, strlen(*v));
        if (!ok)
            fail_msg("the client sent \"%.*s\"; everything it sent:\n%.*s", (int)n, line,
                     (int)len, rec);
        i += n;
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (getenv("EMAIL_UNDER_VALGRIND"))
        timeout_s = 30;
    certdir = test_tmpdir();
    if (!certdir) {
        fprintf(stderr, "test_tls: no temporary folder\n");
        return -1;
    }
    if (test_make_certs(certdir, "test_tls") != 0)
        return -1;
    email_set_timeout(timeout_s);
    /* EMAIL_TEST_LOG=FILE: the library's conversation log, to see what went on the wire */
    const char *log = getenv("EMAIL_TEST_LOG");
    if (log && *log && email_set_log(log) != 0) {
        fprintf(stderr, "test_tls: cannot log to %s\n", log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (certdir) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "test_tls: certificates kept in %s\n", certdir);
        else
            test_rmtree(certdir);
        free(certdir);
        certdir = NULL;
    }
    return 0;
}

/* Each test starts from the same global state: the default timeout, no extra CA. */
static int test_setup(void **state)
{
    (void)state;
    email_set_timeout(timeout_s);
    return email_set_ca_file(NULL);
}

/* What the test owned is freed (also when it failed), then nothing of it is left on the loop. */
static int test_teardown(void **state)
{
    (void)state;
    drop_all();
    assert_loop_idle();
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Working TLS                                                                                  */

/* STARTTLS required, AUTH PLAIN, one message: STARTTLS came before AUTH, the message over TLS. */
static void test_starttls_required_auth(void **state)
{
    (void)state;
    test_server_t s;
    const char *log = cpath("starttls_required.log");
    const char *args[] = {"--starttls", cpath("good.pem"), cpath("good.key"),
                          "--starttls-required", "--auth", "alice@example.org:s3cret",
                          "--auth-mechs", "PLAIN", "--auth-required", "--log", log, NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("alice@example.org", "s3cret", "127.0.0.1", s.port,
                                  EMAIL_SYNCHRONOUS, EMAIL_OPTION_STARTTLS))
        fail_msg("start: %s", email_error_info());
    email_message_t *m = simple_message("Alice <alice@example.org>", "bob@example.net",
                                        "over STARTTLS");
    if (!email_send_message("alice@example.org", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("alice@example.org"));

    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, "alice@example.org", true);
    char *json = test_spool_read(&s, 1, "json", NULL);
    assert_json_field(json, "auth.mechanism", "PLAIN");
    assert_json_field(json, "auth.password", "s3cret");
    assert_json_field(json, "rcpt_tos.0", "bob@example.net");
    free(json);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_contains(eml, "Subject: over STARTTLS\r\n");
    assert_contains(eml, "\r\n.leading dot\r\n");
    free(eml);
    test_server_stop(&s);

    /* the order on the wire: EHLO, STARTTLS, handshake, EHLO again, then AUTH */
    char *lines = client_log(log);
    const char *starttls = strstr(lines, "C: STARTTLS\n");
    const char *done = strstr(lines, "-- STARTTLS done\n");
    const char *auth = strstr(lines, "C: AUTH PLAIN");
    if (!starttls || !done || !auth || !(starttls < done && done < auth))
        fail_msg("STARTTLS must come before AUTH:\n%s", lines);
    if (!strstr(done, "C: EHLO "))
        fail_msg("no EHLO after STARTTLS:\n%s", lines);
    free(lines);
}

/* Implicit TLS (port 465 style) with AUTH: delivered over TLS. */
static void test_implicit_tls_auth(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", cpath("good.pem"), cpath("good.key"), "--auth",
                          "carol:pa55 w0rd", "--auth-required", NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("carol", "pa55 w0rd", "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_TLS))
        fail_msg("start: %s", email_error_info());
    email_message_t *m = simple_message("carol@example.org", "dan@example.org", "implicit");
    if (!email_send_message("carol", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("carol"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, "carol", true);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_contains(eml, "Subject: implicit\r\n");
    free(eml);
    test_server_stop(&s);
}

/* The transporter: implicit TLS and STARTTLS (its default), check_connection then send. */
static void test_transporter_tls(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        bool implicit = round == 0;
        test_server_t s;
        const char *args_tls[] = {"--tls", cpath("good.pem"), cpath("good.key"), "--auth",
                                  "erin:secret", "--auth-required", NULL};
        const char *args_starttls[] = {"--starttls", cpath("good.pem"), cpath("good.key"),
                                       "--starttls-required", "--auth", "erin:secret",
                                       "--auth-required", NULL};
        start_smtpd(&s, implicit ? args_tls : args_starttls);
        email_server_t srv;
        email_server_init(&srv);
        srv.host = "127.0.0.1";
        srv.port = s.port;
        srv.security = implicit ? EMAIL_SECURITY_TLS : EMAIL_SECURITY_STARTTLS;
        srv.ca_file = cpath("ca.pem");
        srv.user = "erin";
        srv.password = "secret";
        srv.connection_timeout = timeout_s;
        srv.send_timeout = timeout_s;
        srv.log_file = cpath(implicit ? "transporter_tls.log" : "transporter_starttls.log");
        email_transporter_t *t = new_transporter(&srv);
        email_status_t st;
        int rc = email_transporter_check_connection(t, &st);
        if (rc != 0 || !st.success)
            fail_msg("%s check: %s (%s)", implicit ? "TLS" : "STARTTLS", email_error_name(rc),
                     st.status_text);
        assert_int_equal(st.status, 235);
        email_message_t *m = simple_message("erin@example.org", "fred@example.org",
                                            implicit ? "transporter TLS" : "transporter STARTTLS");
        rc = email_transporter_send(t, m, &st);
        if (rc != 0 || !st.success)
            fail_msg("%s send: %s (%s)", implicit ? "TLS" : "STARTTLS", email_error_name(rc),
                     st.status_text);
        assert_int_equal(st.status, 250);
        email_status_clear(&st);
        drop(m);
        drop(t);
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        assert_spooled_tls(&s, 1, "erin", true);
        /* 4D's words: "secure" is TLS from the first byte; STARTTLS connects "not secure" */
        char want[200];
        snprintf(want, sizeof want, " ### SMTP Connected to '127.0.0.1' on port %d. (%s)\n",
                 s.port, implicit ? "secure" : "not secure");
        char *log = test_read_file(srv.log_file, NULL);
        assert_non_null(log);
        if (!strstr(log, want) || !strstr(log, " ### SMTP TLS established: "))
            fail_msg("no \"%s\" or TLS line in:\n%s", want, log);
        free(log);
        test_server_stop(&s);
    }
}

/* EMAIL_OPTION_DEFAULT: the server offers STARTTLS (not required), so TLS is used. */
static void test_default_uses_offered_starttls(void **state)
{
    (void)state;
    test_server_t s;
    const char *log = cpath("opportunistic.log");
    const char *args[] = {"--starttls", cpath("good.pem"), cpath("good.key"), "--log", log,
                          NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("opportunistic", NULL, "127.0.0.1", s.port,
                                  EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT))
        fail_msg("start: %s", email_error_info());
    email_message_t *m = simple_message("a@example.org", "b@example.org", "opportunistic");
    if (!email_send_message("opportunistic", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("opportunistic"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, NULL, true);
    test_server_stop(&s);
    char *lines = client_log(log);
    const char *done = strstr(lines, "-- STARTTLS done\n");
    const char *mail = strstr(lines, "C: MAIL FROM:");
    if (!done || !mail || mail < done)
        fail_msg("MAIL must come after STARTTLS:\n%s", lines);
    free(lines);
}

/* By name: "localhost" (SNI sent) matches good.pem's dns name; "::1" its IPv6 address. */
static void test_names_and_ipv6_match(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", cpath("good.pem"), cpath("good.key"), NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("byname", NULL, "localhost", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_TLS))
        fail_msg("localhost: %s", email_error_info());
    email_message_t *m = simple_message("a@example.org", "b@example.org", "by name");
    if (!email_send_message("byname", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("byname"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, NULL, true);
    test_server_stop(&s);

    const char *args6[] = {"--tls", cpath("good.pem"), cpath("good.key"), "--host", "::1", NULL};
    if (test_server_start(&s, "smtpd.py", args6) != 0) {
        test_server_stop(&s);
        skip(); /* no IPv6 loopback here */
    }
    if (!email_start_smtp_session("ipv6", NULL, "::1", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_TLS))
        fail_msg("::1: %s", email_error_info());
    m = simple_message("a@example.org", "b@example.org", "over IPv6");
    if (!email_send_message("ipv6", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("ipv6"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, NULL, true);
    test_server_stop(&s);
}

/* ------------------------------------------------------------------------------------------- */
/* Certificates that must be refused                                                            */

/*
 * A server presenting cert_name (STARTTLS required, or implicit TLS) is refused with want, and
 * reason (GnuTLS's words) appears in the error text; both through the facade (start fails) and
 * the transporter (send fails with status 0: not the server's doing). No AUTH, no MAIL ever
 * reaches the server, nothing is spooled.
 */
static void expect_refused(const char *cert_name, const char *host, const char *ca, bool implicit,
                           int want, const char *reason)
{
    char cert[64], key[64], logname[96];
    snprintf(cert, sizeof cert, "%s.pem", cert_name);
    snprintf(key, sizeof key, "%s.key", cert_name);
    snprintf(logname, sizeof logname, "refused-%s-%s-%s.log", cert_name, host,
             implicit ? "tls" : "starttls");
    const char *log = cpath(logname);
    test_server_t s;
    const char *args_tls[] = {"--tls", cpath(cert), cpath(key), "--auth", "u:p", "--log", log,
                              NULL};
    const char *args_starttls[] = {"--starttls", cpath(cert), cpath(key), "--auth", "u:p",
                                   "--log", log, NULL};
    start_smtpd(&s, implicit ? args_tls : args_starttls);
    const char *what = implicit ? "implicit TLS" : "STARTTLS";

    /* the facade */
    set_ca(ca);
    if (email_start_smtp_session("refused", "p", host, s.port, EMAIL_SYNCHRONOUS,
                                 implicit ? EMAIL_OPTION_TLS : EMAIL_OPTION_STARTTLS)) {
        email_close_session("refused");
        fail_msg("%s with %s at %s: the session started", what, cert_name, host);
    }
    if (email_last_error() != want)
        fail_msg("%s with %s at %s: %s instead of %s: %s", what, cert_name, host,
                 email_error_name(email_last_error()), email_error_name(want),
                 email_error_info());
    assert_contains(email_error_info(), reason);
    /* the name was not kept */
    email_message_t *m = simple_message("u@example.org", "v@example.org", "must not arrive");
    assert_false(email_send_message("refused", m));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);

    /* the transporter: a send that fails at the handshake */
    set_ca(NULL);
    email_server_t srv;
    email_server_init(&srv);
    srv.host = host;
    srv.port = s.port;
    srv.security = implicit ? EMAIL_SECURITY_TLS : EMAIL_SECURITY_STARTTLS;
    srv.ca_file = ca ? cpath(ca) : NULL;
    srv.user = "u";
    srv.password = "p";
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    email_transporter_t *t = new_transporter(&srv);
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    if (rc != want)
        fail_msg("transporter, %s with %s at %s: %s instead of %s: %s", what, cert_name, host,
                 email_error_name(rc), email_error_name(want), st.status_text);
    assert_false(st.success);
    assert_int_equal(st.error, want);
    assert_contains(st.status_text, reason);
    int status = st.status;
    email_status_clear(&st);
    drop(t);
    drop(m);

    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
    char *lines = client_log(log);
    assert_no_auth_no_mail(lines);
    free(lines);
    /* last: the refusal was ours, not a server reply (the 220 to STARTTLS is not the reason) */
    if (status != 0)
        fail_msg("transporter, %s with %s at %s: status %d, want 0 (not the server's refusal)",
                 what, cert_name, host, status);
}

/* GnuTLS's texts for the verification statuses (gnutls_certificate_verification_status_print). */
#define WHY_UNKNOWN_ISSUER "issuer is unknown"
#define WHY_NAME "does not match"
#define WHY_EXPIRED "expired"

static void test_cert_untrusted_without_ca(void **state)
{
    (void)state;
    expect_refused("good", "127.0.0.1", NULL, true, EMAIL_ECERT, WHY_UNKNOWN_ISSUER);
    expect_refused("good", "127.0.0.1", NULL, false, EMAIL_ECERT, WHY_UNKNOWN_ISSUER);
}

static void test_cert_self_signed(void **state)
{
    (void)state;
    /* the test CA is given, but self.pem does not come from it */
    expect_refused("self", "127.0.0.1", "ca.pem", true, EMAIL_ECERT, WHY_UNKNOWN_ISSUER);
    expect_refused("self", "127.0.0.1", "ca.pem", false, EMAIL_ECERT, WHY_UNKNOWN_ISSUER);
}

static void test_cert_name_mismatch_ip(void **state)
{
    (void)state;
    expect_refused("other", "127.0.0.1", "ca.pem", true, EMAIL_ECERTNAME, WHY_NAME);
    expect_refused("other", "127.0.0.1", "ca.pem", false, EMAIL_ECERTNAME, WHY_NAME);
}

static void test_cert_name_mismatch_dns(void **state)
{
    (void)state;
    expect_refused("other", "localhost", "ca.pem", true, EMAIL_ECERTNAME, WHY_NAME);
    expect_refused("other", "localhost", "ca.pem", false, EMAIL_ECERTNAME, WHY_NAME);
}

static void test_cert_expired(void **state)
{
    (void)state;
    expect_refused("expired", "127.0.0.1", "ca.pem", true, EMAIL_ECERTEXPIRED, WHY_EXPIRED);
    expect_refused("expired", "127.0.0.1", "ca.pem", false, EMAIL_ECERTEXPIRED, WHY_EXPIRED);
}

/* EMAIL_OPTION_NO_VERIFY: the self-signed (STARTTLS) and the expired (implicit) are accepted. */
static void test_no_verify(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        bool implicit = round == 1;
        const char *cert = implicit ? "expired.pem" : "self.pem";
        const char *key = implicit ? "expired.key" : "self.key";
        test_server_t s;
        const char *args[] = {implicit ? "--tls" : "--starttls", cpath(cert), cpath(key),
                              "--auth", "u:p", "--auth-required", NULL};
        start_smtpd(&s, args);
        int option = (implicit ? EMAIL_OPTION_TLS : EMAIL_OPTION_STARTTLS) |
                     EMAIL_OPTION_NO_VERIFY;
        if (!email_start_smtp_session("u", "p", "127.0.0.1", s.port, EMAIL_SYNCHRONOUS, option))
            fail_msg("%s: %s", cert, email_error_info());
        email_message_t *m = simple_message("u@example.org", "v@example.org", "unchecked");
        if (!email_send_message("u", m))
            fail_msg("send: %s", email_error_info());
        drop(m);
        assert_true(email_close_session("u"));
        assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
        assert_spooled_tls(&s, 1, "u", true);
        test_server_stop(&s);
    }
}

/* check_connection's status when the certificate is refused: status 0, GnuTLS's reason. */
static void test_check_connection_status(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key;
        int want;
        const char *reason;
    } cases[] = {
        {"expired.pem", "expired.key", EMAIL_ECERTEXPIRED,
         "The certificate chain uses expired certificate"},
        {"self.pem", "self.key", EMAIL_ECERT, "The certificate issuer is unknown"},
        {"other.pem", "other.key", EMAIL_ECERTNAME,
         "The name in the certificate does not match the expected"},
    };
    /* implicit TLS first, then STARTTLS (where the last reply before the failure is a 220) */
    for (size_t k = 0; k < 2 * sizeof cases / sizeof *cases; k++) {
        size_t i = k % (sizeof cases / sizeof *cases);
        bool implicit = k < sizeof cases / sizeof *cases;
        test_server_t s;
        const char *args[] = {implicit ? "--tls" : "--starttls", cpath(cases[i].cert),
                              cpath(cases[i].key), NULL};
        start_smtpd(&s, args);
        email_server_t srv;
        email_server_init(&srv);
        srv.host = "127.0.0.1";
        srv.port = s.port;
        srv.security = implicit ? EMAIL_SECURITY_TLS : EMAIL_SECURITY_STARTTLS;
        srv.ca_file = cpath("ca.pem");
        srv.connection_timeout = timeout_s;
        email_transporter_t *t = new_transporter(&srv);
        email_status_t st;
        int rc = email_transporter_check_connection(t, &st);
        const char *what = implicit ? "implicit TLS" : "STARTTLS";
        if (rc != cases[i].want)
            fail_msg("%s, %s: %s instead of %s (%s)", what, cases[i].cert, email_error_name(rc),
                     email_error_name(cases[i].want), st.status_text);
        assert_false(st.success);
        assert_int_equal(st.error, cases[i].want);
        assert_contains(st.status_text, cases[i].reason);
        if (st.status != 0 || st.enhanced_code[0])
            fail_msg("%s, %s: status %d \"%s\", want 0 \"\" (the refusal is not the server's)",
                     what, cases[i].cert, st.status, st.enhanced_code);
        drop(t);
        test_server_stop(&s);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* STARTTLS downgrade and injection                                                             */

static const char *const only_ehlo_quit[] = {"EHLO ", "QUIT\r\n", NULL};
static const char *const only_ehlo_starttls_quit[] = {"EHLO ", "STARTTLS\r\n", "QUIT\r\n", NULL};

/* Waits for scripted.py to finish (the client closed) and returns what the client sent. */
static char *finished_record(test_server_t *s, size_t *len)
{
    int rc = test_server_wait(s, 12000);
    if (rc != 0)
        fail_msg("scripted.py ended with %d (-1: the client never closed the connection)", rc);
    char *rec = test_scripted_record(s, len);
    assert_non_null(rec);
    return rec;
}

/* STARTTLS required, the server does not offer it: refused before anything else is said. */
static void test_starttls_not_offered(void **state)
{
    (void)state;
    /* aiosmtpd without STARTTLS but with AUTH on offer */
    test_server_t s;
    const char *log = cpath("not_offered.log");
    const char *args[] = {"--auth", "u:p", "--log", log, NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    assert_false(email_start_smtp_session("notls", "p", "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                          EMAIL_OPTION_STARTTLS));
    if (email_last_error() != EMAIL_ETLSREQUIRED)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "STARTTLS");
    /* the transporter by default (STARTTLS, accept_unsecure_connection false) refuses too */
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = s.port;
    srv.user = "u";
    srv.password = "p";
    srv.connection_timeout = timeout_s;
    email_transporter_t *t = new_transporter(&srv);
    email_status_t st;
    email_message_t *m = simple_message("u@example.org", "v@example.org", "must not arrive");
    int rc = email_transporter_send(t, m, &st);
    if (rc != EMAIL_ETLSREQUIRED)
        fail_msg("transporter: %s: %s", email_error_name(rc), st.status_text);
    assert_false(st.success);
    email_status_clear(&st);
    drop(m);
    drop(t);
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
    char *lines = client_log(log);
    assert_no_auth_no_mail(lines);
    free(lines);

    /* the exact bytes, with a scripted server offering AUTH but no STARTTLS */
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250-scripted\\r\\n250-AUTH PLAIN LOGIN\\r\\n250 8BITMIME\n"
                         "expect QUIT\n"
                         "send 221 2.0.0 bye\n";
    start_scripted(&s, script);
    assert_false(email_start_smtp_session("notls", "p", "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                          EMAIL_OPTION_STARTTLS));
    assert_int_equal(email_last_error(), EMAIL_ETLSREQUIRED);
    size_t len;
    char *rec = finished_record(&s, &len);
    assert_record_only(rec, len, only_ehlo_quit);
    free(rec);
    test_server_stop(&s);
}

/* Bytes behind the 220 to STARTTLS (one write): response injection, the session ends. */
static void test_starttls_response_injection(void **state)
{
    (void)state;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250-scripted\\r\\n250-STARTTLS\\r\\n250 AUTH PLAIN LOGIN\n"
                         "expect STARTTLS\n"
                         "send 220 go ahead\\r\\n250 injected\n";
    static const int options[] = {EMAIL_OPTION_STARTTLS, EMAIL_OPTION_DEFAULT};
    for (size_t i = 0; i < 2; i++) {
        test_server_t s;
        start_scripted(&s, script);
        set_ca("ca.pem");
        assert_false(email_start_smtp_session("inject", "p", "127.0.0.1", s.port,
                                              EMAIL_SYNCHRONOUS, options[i]));
        if (email_last_error() != EMAIL_EPROTO)
            fail_msg("option %d: %s: %s", options[i], email_error_name(email_last_error()),
                     email_error_info());
        size_t len;
        char *rec = finished_record(&s, &len);
        /* nothing at all after STARTTLS: no ClientHello, no QUIT, no AUTH */
        const char *tail = "STARTTLS\r\n";
        if (len < strlen(tail) || memcmp(rec + len - strlen(tail), tail, strlen(tail)) != 0)
            fail_msg("option %d: the client sent something after STARTTLS:\n%.*s", options[i],
                     (int)len, rec);
        assert_record_only(rec, len, only_ehlo_starttls_quit);
        free(rec);
        test_server_stop(&s);
    }
}

/* STARTTLS answered 454: a required STARTTLS fails, credentials and mail never go out. */
static void test_starttls_refused_454(void **state)
{
    (void)state;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250-scripted\\r\\n250-STARTTLS\\r\\n250 AUTH PLAIN LOGIN\n"
                         "expect STARTTLS\n"
                         "send 454 4.7.0 TLS not available due to temporary reason\n"
                         /* answered, so the client closes at once instead of waiting */
                         "expect QUIT\n"
                         "send 221 2.0.0 bye\n";
    test_server_t s;
    start_scripted(&s, script);
    set_ca("ca.pem");
    assert_false(email_start_smtp_session("refused454", "p", "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_STARTTLS));
    if (email_last_error() != EMAIL_ETLSREQUIRED)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "454");
    size_t len;
    char *rec = finished_record(&s, &len);
    assert_record_only(rec, len, only_ehlo_starttls_quit);
    free(rec);
    test_server_stop(&s);

    /* the transporter, accept_unsecure_connection false: check and send both refuse */
    for (int round = 0; round < 2; round++) {
        start_scripted(&s, script);
        email_server_t srv;
        email_server_init(&srv);
        srv.host = "127.0.0.1";
        srv.port = s.port;
        srv.user = "u";
        srv.password = "p";
        srv.ca_file = cpath("ca.pem");
        srv.accept_unsecure_connection = false;
        srv.connection_timeout = timeout_s;
        srv.send_timeout = timeout_s;
        email_transporter_t *t = new_transporter(&srv);
        email_status_t st;
        int rc;
        if (round == 0) {
            rc = email_transporter_check_connection(t, &st);
        } else {
            email_message_t *m = simple_message("u@example.org", "v@example.org", "no");
            rc = email_transporter_send(t, m, &st);
            drop(m);
        }
        if (rc != EMAIL_ETLSREQUIRED)
            fail_msg("transporter %s: %s: %s", round ? "send" : "check", email_error_name(rc),
                     st.status_text);
        assert_false(st.success);
        assert_contains(st.status_text, "454");
        email_status_clear(&st);
        drop(t);
        rec = finished_record(&s, &len);
        assert_record_only(rec, len, only_ehlo_starttls_quit);
        free(rec);
        test_server_stop(&s);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The wrong kind of port                                                                       */

/* A plain client to an implicit-TLS port: both wait for the other; the timeout says why. */
static void test_plain_client_to_tls_port(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", cpath("good.pem"), cpath("good.key"), NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    email_set_timeout(2);
    double t0 = now_s();
    bool ok = email_start_smtp_session("plain2tls", NULL, "127.0.0.1", s.port,
                                       EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT);
    double elapsed = now_s() - t0;
    assert_false(ok);
    if (email_last_error() != EMAIL_ETIMEDOUT)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "EMAIL_OPTION_TLS");
    double slack = timeout_s > 5 ? 10.0 : 2.0;
    if (elapsed < 1.5 || elapsed > 2.0 + slack)
        fail_msg("failed after %.2f s, the timeout is 2 s", elapsed);
    test_server_stop(&s);
}

/* A TLS client to a plain port: the greeting is not TLS; the error says to use STARTTLS. */
static void test_tls_client_to_plain_port(void **state)
{
    (void)state;
    test_server_t s;
    start_smtpd(&s, NULL);
    set_ca("ca.pem");
    double t0 = now_s();
    assert_false(email_start_smtp_session("tls2plain", NULL, "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_TLS));
    double elapsed = now_s() - t0;
    if (email_last_error() != EMAIL_ETLS)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "plain SMTP");
    assert_contains(email_error_info(), "STARTTLS");
    if (elapsed > timeout_s - 1)
        fail_msg("took %.2f s: the plain greeting should end the handshake at once", elapsed);

    /* the same through the transporter */
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = s.port;
    srv.security = EMAIL_SECURITY_TLS;
    srv.connection_timeout = timeout_s;
    email_transporter_t *t = new_transporter(&srv);
    email_status_t st;
    int rc = email_transporter_check_connection(t, &st);
    if (rc != EMAIL_ETLS)
        fail_msg("transporter: %s: %s", email_error_name(rc), st.status_text);
    assert_int_equal(st.status, 0);
    assert_contains(st.status_text, "plain SMTP");
    drop(t);
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
}

/* ------------------------------------------------------------------------------------------- */
/* Cleartext on the loopback                                                                    */

/* Credentials over cleartext are allowed to a loopback address (the engine tests cover the
 * refusal elsewhere): a plain session with a password works and authenticates. */
static void test_cleartext_auth_loopback(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--auth", "gina:pw", "--auth-required", NULL};
    start_smtpd(&s, args);
    if (!email_start_smtp_session("gina", "pw", "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_DEFAULT))
        fail_msg("start: %s", email_error_info());
    email_message_t *m = simple_message("gina@example.org", "hal@example.org", "cleartext");
    if (!email_send_message("gina", m))
        fail_msg("send: %s", email_error_info());
    drop(m);
    assert_true(email_close_session("gina"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    assert_spooled_tls(&s, 1, "gina", false);
    test_server_stop(&s);
}

/* ------------------------------------------------------------------------------------------- */
/* Volume over TLS                                                                              */

/* A deterministic pseudo-random generator, so that a failure can be reproduced. */
static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) & 0xffffff;
}

/*
 * RFC 5322 text with CRLF line endings and a final CRLF (what the server spools is then exactly
 * this, its dot-stuffing undone): headers, then about body_bytes of lines of varied lengths
 * (up to 998), some starting with dots, some a lone ".", some empty.
 */
static char *make_mime(int index, size_t body_bytes, size_t *len)
{
    size_t cap = body_bytes + 4096;
    char *out = own(malloc(cap), free);
    size_t n = (size_t)snprintf(out, cap,
                                "From: a@example.org\r\nTo: b@example.org\r\n"
                                "Subject: bulk %d\r\nX-Index: %d\r\n\r\n",
                                index, index);
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ "
                                   "0123456789 .,;:!?()[]<>@=-_'\"/\\";
    size_t start = n;
    while (n - start < body_bytes) {
        uint32_t kind = rng() % 20;
        size_t linelen;
        if (kind == 0) {
            memcpy(out + n, ".\r\n", 3); /* the end-of-data marker as content */
            n += 3;
            continue;
        }
        if (kind == 1) {
            memcpy(out + n, "\r\n", 2);
            n += 2;
            continue;
        }
        linelen = kind == 2 ? 998 : 1 + rng() % 120;
        if (n + linelen + 2 > cap - 64)
            break;
        for (size_t i = 0; i < linelen; i++)
            out[n + i] = alphabet[rng() % (sizeof alphabet - 1)];
        if (kind == 3 || kind == 4)
            out[n] = '.';
        if (kind == 4 && linelen > 1)
            out[n + 1] = '.';
        n += linelen;
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(out + n, cap - n, "end of message %d\r\n", index);
    *len = n;
    return out;
}

static void assert_spooled_exactly(const test_server_t *s, int n, const char *want,
                                   size_t want_len)
{
    size_t got_len = 0;
    char *got = own(test_spool_read(s, n, "eml", &got_len), free);
    if (got_len != want_len || memcmp(got, want, want_len) != 0) {
        size_t i = 0;
        while (i < got_len && i < want_len && got[i] == want[i])
            i++;
        fail_msg("message %d: %zu bytes spooled, %zu sent; first difference at byte %zu", n,
                 got_len, want_len, i);
    }
    drop(got);
}

/* 50 messages of 0-40 KB over one STARTTLS session: every one arrives byte for byte. */
static void test_many_messages_one_session(void **state)
{
    (void)state;
    enum { N = 50 };
    test_server_t s;
    const char *args[] = {"--starttls", cpath("good.pem"), cpath("good.key"),
                          "--starttls-required", NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("bulk", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_STARTTLS))
        fail_msg("start: %s", email_error_info());
    char *sent[N];
    size_t sent_len[N];
    rng_state = 4242;
    const char *rcpts[] = {"b@example.org", NULL};
    for (int i = 0; i < N; i++) {
        sent[i] = make_mime(i, (size_t)(rng() % 40000), &sent_len[i]);
        if (!email_send_mime("bulk", "a@example.org", rcpts, sent[i], sent_len[i]))
            fail_msg("message %d: %s", i, email_error_info());
    }
    assert_true(email_close_session("bulk"));
    assert_int_equal(test_spool_wait(&s, N, 10000), N);
    for (int i = 0; i < N; i++) {
        assert_spooled_exactly(&s, i + 1, sent[i], sent_len[i]);
        drop(sent[i]);
    }
    assert_spooled_tls(&s, N, NULL, true);
    test_server_stop(&s);
}

/* Removes the Date and Message-ID header lines (made afresh each time a message is frozen). */
static size_t drop_fresh_headers(char *mime, size_t len)
{
    char *end = strstr(mime, "\r\n\r\n");
    assert_non_null(end);
    size_t out = 0, i = 0;
    bool in_headers = true;
    while (i < len) {
        char *eol = memchr(mime + i, '\n', len - i);
        size_t n = eol ? (size_t)(eol - (mime + i)) + 1 : len - i;
        bool drop = in_headers && (!strncasecmp(mime + i, "Date:", 5) ||
                                   !strncasecmp(mime + i, "Message-ID:", 11));
        if (in_headers && n == 2)
            in_headers = false;
        if (!drop) {
            memmove(mime + out, mime + i, n);
            out += n;
        }
        i += n;
    }
    mime[out] = '\0';
    return out;
}

/* One megabyte over implicit TLS (many records), as prebuilt MIME and as a built message. */
static void test_one_megabyte(void **state)
{
    (void)state;
    test_server_t s;
    const char *args[] = {"--tls", cpath("good.pem"), cpath("good.key"), NULL};
    start_smtpd(&s, args);
    set_ca("ca.pem");
    if (!email_start_smtp_session("big", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_TLS))
        fail_msg("start: %s", email_error_info());

    /* prebuilt: exactly these bytes */
    rng_state = 777;
    size_t len;
    char *mime = make_mime(1, 1024 * 1024, &len);
    assert_true(len > 1024 * 1024);
    const char *rcpts[] = {"b@example.org", NULL};
    if (!email_send_mime("big", "a@example.org", rcpts, mime, len))
        fail_msg("send_mime: %s", email_error_info());

    /* built: a 1 MB text body, compared with email_message_to_mime's bytes */
    size_t body_len = 1024 * 1024;
    char *body = own(malloc(body_len + 1), free);
    size_t n = 0;
    for (int line = 0; n + 200 < body_len; line++) {
        if (line % 7 == 0)
            body[n++] = '.';
        n += (size_t)sprintf(body + n, "line %d: the quick brown fox jumps over the lazy dog "
                                       "%08x\n", line, rng());
    }
    body[n] = '\0';
    email_message_t *m = new_message();
    assert_int_equal(email_message_set_from(m, "a@example.org"), 0);
    assert_int_equal(email_message_add_to(m, "b@example.org"), 0);
    assert_int_equal(email_message_set_subject(m, "one megabyte"), 0);
    assert_int_equal(email_message_set_text_body(m, body), 0);
    char *built;
    size_t built_len;
    assert_int_equal(email_message_to_mime(m, &built, &built_len), 0);
    own(built, free);
    if (!email_send_message("big", m))
        fail_msg("send_message: %s", email_error_info());
    drop(m);
    drop(body);
    assert_true(email_close_session("big"));

    assert_int_equal(test_spool_wait(&s, 2, 10000), 2);
    assert_spooled_exactly(&s, 1, mime, len);
    assert_spooled_tls(&s, 1, NULL, true);
    drop(mime);

    size_t got_len;
    char *got = own(test_spool_read(&s, 2, "eml", &got_len), free);
    got_len = drop_fresh_headers(got, got_len);
    built_len = drop_fresh_headers(built, built_len);
    if (got_len != built_len || memcmp(got, built, built_len) != 0) {
        size_t i = 0;
        while (i < got_len && i < built_len && got[i] == built[i])
            i++;
        fail_msg("built message: %zu bytes spooled, %zu built; first difference at byte %zu",
                 got_len, built_len, i);
    }
    drop(got);
    drop(built);
    test_server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_starttls_required_auth, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_implicit_tls_auth, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_transporter_tls, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_default_uses_offered_starttls, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_names_and_ipv6_match, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cert_untrusted_without_ca, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cert_self_signed, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cert_name_mismatch_ip, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cert_name_mismatch_dns, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cert_expired, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_no_verify, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_check_connection_status, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_starttls_not_offered, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_starttls_response_injection, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_starttls_refused_454, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_plain_client_to_tls_port, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_to_plain_port, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cleartext_auth_loopback, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_many_messages_one_session, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_one_megabyte, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
