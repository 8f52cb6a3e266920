/*
 * The POP3 transporter against a private dovecot (tests/servers/dovecot_mail.py) seeded with
 * fixture messages: box info, the info list with UIDs, messages read byte for byte, deletion
 * committed by QUIT, RSET, a session dropped before QUIT keeping every message, STLS and TLS
 * from the first byte, a wrong password, the conversation log with its secrets masked, and a
 * 31 MiB attachment parsed as it arrives into a spill file (lib/spill.h), byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

static char *dir;
static char *spill; /* $TMPDIR while the tests run: the library's spill files go there */
static int timeout_s = 5;

/* Three fixtures: a line starting with a dot (stuffed on the wire), and two plain ones. */
static const char *const fixtures[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\n.leading dot\r\n..two dots\r\nbody one\r\n",
    "From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n",
    "From: c@example.org\r\nSubject: three\r\n\r\nbody three\r\n",
};
#define NFIX 3

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

/* dovecot with alice's box holding the fixtures, in order. */
static void start_dovecot(test_server_t *dv)
{
    char specs[NFIX][700];
    const char *args[2 + 2 * NFIX + 1] = {"--certs", dir};
    for (int i = 0; i < NFIX; i++) {
        snprintf(specs[i], sizeof specs[i], "alice:%s/fixture%d.eml", dir, i + 1);
        args[2 + 2 * i] = "--message";
        args[3 + 2 * i] = specs[i];
    }
    assert_int_equal(test_server_start(dv, "dovecot_mail.py", args), 0);
}

static email_server_t server_on(int port, int security, const char *password, const char *log)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = port;
    srv.security = security;
    srv.user = "alice";
    srv.password = password;
    srv.ca_file = dpath("ca.pem");
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    srv.log_file = log ? dpath(log) : NULL;
    return srv;
}

static email_pop3_transporter_t *open_box(const email_server_t *srv)
{
    email_pop3_transporter_t *t = email_pop3_transporter_new(srv);
    if (!t)
        fail_msg("email_pop3_transporter_new: %s", email_error_info());
    return t;
}

static uint64_t box_count(email_pop3_transporter_t *t)
{
    email_pop3_box_info_t info;
    email_status_t st;
    int rc = email_pop3_get_box_info(t, &info, &st);
    if (rc)
        fail_msg("email_pop3_get_box_info: %s", st.status_text);
    assert_true(st.success);
    assert_int_equal(st.status, 1);
    email_status_clear(&st);
    return info.count;
}

static void assert_message(email_pop3_transporter_t *t, unsigned number, const char *expected)
{
    char *data;
    size_t len;
    int rc = email_pop3_get_mail_raw(t, number, &data, &len, NULL);
    if (rc)
        fail_msg("email_pop3_get_mail_raw(%u): %s", number, email_error_info());
    assert_false(email_error_occurred());
    assert_string_equal(data, expected);
    assert_int_equal(len, strlen(expected));
    free(data);
}

/* Reads, lists, deletes; QUIT commits the deletion, seen by the next session. */
static void test_read_and_delete(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    email_pop3_box_info_t info;
    assert_int_equal(email_pop3_get_box_info(t, &info, NULL), 0);
    assert_int_equal(info.count, NFIX);
    assert_int_equal(info.size, strlen(fixtures[0]) + strlen(fixtures[1]) + strlen(fixtures[2]));

    email_pop3_mail_info_t *list;
    size_t n;
    assert_int_equal(email_pop3_get_mail_info_list(t, &list, &n, NULL), 0);
    assert_int_equal(n, NFIX);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(list[i].number, i + 1);
        assert_int_equal(list[i].size, strlen(fixtures[i]));
        assert_true(list[i].uid[0] != '\0');
        if (i)
            assert_string_not_equal(list[i].uid, list[i - 1].uid);
    }
    for (unsigned i = 0; i < NFIX; i++)
        assert_message(t, i + 1, fixtures[i]);

    email_status_t st;
    assert_int_equal(email_pop3_delete(t, 2, &st), 0);
    assert_true(st.success);
    assert_int_equal(box_count(t), NFIX - 1);
    /* a deleted message cannot be read: the server's -ERR, in the status */
    char *data;
    size_t len;
    assert_int_equal(email_pop3_get_mail_raw(t, 2, &data, &len, &st), EMAIL_ESERVER);
    assert_int_equal(st.status, -1);
    assert_contains(st.status_text, "-ERR");
    assert_null(data);
    email_status_clear(&st);
    email_pop3_transporter_free(t);
    assert_false(email_error_occurred());

    t = open_box(&srv);
    assert_int_equal(box_count(t), NFIX - 1);
    assert_message(t, 2, fixtures[2]);
    email_pop3_transporter_free(t);
    free(list);
    test_server_stop(&dv);
}

/* Messages parsed as they arrive, with the server's UIDL and size; a deleted one is refused. */
static void test_get_mail(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    email_pop3_mail_info_t *list;
    size_t n;
    assert_int_equal(email_pop3_get_mail_info_list(t, &list, &n, NULL), 0);
    assert_int_equal(n, NFIX);
    static const char *const subjects[] = {"one", "two", "three"};
    static const char *const bodies[] = {".leading dot\r\n..two dots\r\nbody one\r\n",
                                         "body two\r\n", "body three\r\n"};
    for (unsigned i = 0; i < NFIX; i++) {
        email_message_t *m = NULL;
        email_status_t st;
        if (email_pop3_get_mail(t, i + 1, &m, &st))
            fail_msg("email_pop3_get_mail(%u): %s", i + 1, email_error_info());
        assert_true(st.success);
        email_status_clear(&st);
        assert_string_equal(email_message_get_subject(m), subjects[i]);
        assert_string_equal(email_message_get_text_body(m), bodies[i]);
        assert_string_equal(email_message_get_uid(m), list[i].uid);
        assert_int_equal(email_message_get_size(m), strlen(fixtures[i]));
        email_message_free(m);
    }
    assert_int_equal(email_pop3_delete(t, 1, NULL), 0);
    email_message_t *m = (email_message_t *)1;
    assert_int_equal(email_pop3_get_mail(t, 1, &m, NULL), EMAIL_ESERVER);
    assert_null(m);
    assert_int_equal(email_pop3_get_mail(t, 0, &m, NULL), EMAIL_EINVAL);
    email_pop3_transporter_free(t);
    free(list);
    test_server_stop(&dv);
}

/* Spill files mapped now, in $TMPDIR (set by group_setup before the library's thread started). */
static size_t spill_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, spill) != NULL;
    fclose(f);
    return n;
}

/* A 31 MiB attachment through RETR and the streaming parser: its decoded bytes go to an unlinked
   file in $TMPDIR (not the heap) and come back byte for byte; email_message_free ends the
   mapping. */
static void test_get_mail_large(void **state)
{
    (void)state;
    size_t size = 31u << 20;
    unsigned char *data = malloc(size);
    assert_non_null(data);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    email_message_t *built = email_message_new();
    assert_int_equal(email_message_set_from(built, "big@example.org"), 0);
    assert_int_equal(email_message_set_subject(built, "large"), 0);
    assert_int_equal(email_message_set_text_body(built, "see the attachment\r\n"), 0);
    assert_int_equal(email_message_add_attachment_data(built, data, size, "big.bin", NULL), 0);
    char *mime;
    size_t n;
    assert_int_equal(email_message_to_mime(built, &mime, &n), 0);
    assert_int_equal(test_write_file(dpath("big.eml"), mime, n), 0);
    free(mime);
    email_message_free(built);
    char spec[700];
    snprintf(spec, sizeof spec, "alice:%s", dpath("big.eml"));
    const char *args[] = {"--certs", dir, "--message", spec, NULL};
    test_server_t dv;
    assert_int_equal(test_server_start(&dv, "dovecot_mail.py", args), 0);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_NONE, "pencil", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    size_t before = spill_mappings();
    email_message_t *m = NULL;
    if (email_pop3_get_mail(t, 1, &m, NULL))
        fail_msg("email_pop3_get_mail: %s", email_error_info());
    assert_string_equal(email_message_get_subject(m), "large");
    assert_int_equal(email_message_get_attachment_count(m), 1);
    const char *name, *type;
    const void *got;
    size_t len;
    assert_int_equal(email_message_get_attachment(m, 0, &name, &type, &got, &len), 0);
    assert_string_equal(name, "big.bin");
    assert_int_equal(len, size);
    assert_memory_equal(got, data, size);
    assert_int_equal(spill_mappings(), before + 1);
    email_message_free(m);
    assert_int_equal(spill_mappings(), before);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
    free(data);
}

/* RSET takes the marks back; a session dropped before QUIT (its process gone) deletes nothing. */
static void test_rset_and_drop(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    assert_int_equal(email_pop3_delete(t, 1, NULL), 0);
    assert_int_equal(email_pop3_delete(t, 3, NULL), 0);
    assert_int_equal(box_count(t), 1);
    assert_int_equal(email_pop3_undelete_all(t, NULL), 0);
    assert_int_equal(box_count(t), NFIX);
    email_pop3_transporter_free(t);

    /* a child with a library of its own marks every message and dies without QUIT */
    email_shutdown();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        email_pop3_transporter_t *c = email_pop3_transporter_new(&srv);
        int bad = !c;
        for (unsigned i = 1; !bad && i <= NFIX; i++)
            bad = email_pop3_delete(c, i, NULL) != 0;
        _exit(bad ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    t = open_box(&srv);
    assert_int_equal(box_count(t), NFIX);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
}

/* TLS from the first byte (995-like) and STLS, each in the log in 4D's words. */
static void test_tls(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.more_ports[0], EMAIL_SECURITY_TLS, "pencil", "tls.log");
    email_pop3_transporter_t *t = open_box(&srv);
    assert_int_equal(email_pop3_check_connection(t, NULL), 0);
    assert_message(t, 3, fixtures[2]);
    email_pop3_transporter_free(t);
    char *log = test_read_file(dpath("tls.log"), NULL);
    char want[200];
    snprintf(want, sizeof want, "POP3 Connected to '127.0.0.1' on port %d. (secure)",
             dv.more_ports[0]);
    assert_contains(log, want);
    assert_contains(log, "POP3 TLS established");
    free(log);

    srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "pencil", "stls.log");
    t = open_box(&srv);
    assert_int_equal(email_pop3_check_connection(t, NULL), 0);
    email_pop3_transporter_free(t);
    log = test_read_file(dpath("stls.log"), NULL);
    assert_contains(log, "STLS");
    assert_contains(log, "POP3 TLS established");
    free(log);
    test_server_stop(&dv);
}

/* email_shutdown ends an open session (QUIT) instead of waiting for it; the next call opens
 * another. */
static void test_shutdown(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    assert_int_equal(email_pop3_delete(t, 1, NULL), 0);
    email_shutdown(); /* QUIT: the deletion is done */
    assert_int_equal(box_count(t), NFIX - 1);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
}

/* A wrong password: EMAIL_EAUTH with the server's line. */
static void test_wrong_password(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    email_server_t srv = server_on(dv.port, EMAIL_SECURITY_STARTTLS, "wrong", NULL);
    email_pop3_transporter_t *t = open_box(&srv);
    email_status_t st;
    assert_int_equal(email_pop3_check_connection(t, &st), EMAIL_EAUTH);
    assert_false(st.success);
    assert_contains(st.status_text, "-ERR");
    assert_true(email_error_occurred());
    email_status_clear(&st);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
}

/* Whatever the way of logging in (SASL PLAIN, LOGIN, CRAM-MD5, SCRAM: one SASL module for SMTP and
 * POP3; NULL: the strongest), the password never reaches the log; bodies neither. */
static void test_log_masked(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    static const char *const modes[] = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256",
                                        "SCRAM-SHA-1", NULL};
    for (int i = 0; i < 6; i++) {
        char name[40];
        snprintf(name, sizeof name, "masked%d.log", i);
        /* in plain text on loopback, so that what goes is visible */
        email_server_t srv = server_on(dv.port, EMAIL_SECURITY_NONE, "pencil", name);
        srv.authentication_mode = modes[i];
        email_pop3_transporter_t *t = open_box(&srv);
        assert_message(t, 1, fixtures[0]);
        email_pop3_transporter_free(t);
        char *log = test_read_file(dpath(name), NULL);
        assert_non_null(log);
        assert_contains(log, "POP3 Connected to '127.0.0.1'");
        assert_contains(log, "****");
        assert_null(strstr(log, "pencil"));
        assert_null(strstr(log, "AGFsaWNlAHBlbmNpbA==")); /* PLAIN's payload */
        assert_null(strstr(log, "cGVuY2ls"));             /* LOGIN's password */
        assert_null(strstr(log, "body one"));
        if (modes[i])
            assert_contains(log, modes[i]);
        free(log);
    }
    test_server_stop(&dv);
}

static int group_setup(void **state)
{
    (void)state;
    if (test_under_valgrind())
        timeout_s = 30;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_pop3") != 0)
        return -1;
    /* spill files where test_get_mail_large can see them, set before any library thread runs;
       a folder of its own beside dir (0700), as dovecot_mail.py makes its folder in $TMPDIR too
       and dovecot's unprivileged processes must reach it */
    spill = test_tmpdir();
    if (!spill || chmod(spill, 0755) != 0 || setenv("TMPDIR", spill, 1) != 0)
        return -1;
    for (int i = 0; i < NFIX; i++) {
        char name[40];
        snprintf(name, sizeof name, "fixture%d.eml", i + 1);
        if (test_write_file(dpath(name), fixtures[i], strlen(fixtures[i])) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (dir) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "test_pop3: files kept in %s\n", dir);
        else
            test_rmtree(dir);
        free(dir);
        dir = NULL;
    }
    if (spill) {
        test_rmtree(spill);
        free(spill);
        spill = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_read_and_delete),
        LOOP_IDLE_TEST(test_get_mail),
        LOOP_IDLE_TEST(test_get_mail_large),
        LOOP_IDLE_TEST(test_rset_and_drop),
        LOOP_IDLE_TEST(test_tls),
        LOOP_IDLE_TEST(test_shutdown),
        LOOP_IDLE_TEST(test_wrong_password),
        LOOP_IDLE_TEST(test_log_masked),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
