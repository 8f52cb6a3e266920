/*
 * WLanguage's named POP3 sessions against a private dovecot (tests/servers/dovecot_mail.py)
 * seeded with fixture messages: reading first..last and back, Email.Out at both ends, headers
 * only, deletion committed by email_close_session, a session dropped before QUIT keeping every
 * message, IMAP-only options refused, a wrong password, STLS and TLS from the first byte, and a
 * POP3 and an SMTP session sharing one name; against tests/servers/scripted.py, a server without
 * UIDL (read by number) with the name's log file set before the start and changed while open,
 * and a dropped connection failing the next reads with EMAIL_ESTALE instead of a reconnection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

static char *dir;

static const char *const fixtures[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\nbody one\r\n",
    "From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n",
    "From: c@example.org\r\nSubject: three\r\n\r\nbody three\r\n",
};
static const char *const subjects[] = {"one", "two", "three"};
#define NFIX 3

static const char *dpath(const char *name)
{
    static char bufs[8][600];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

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

static void open_alice(int port, int option)
{
    if (!email_start_pop3_session("alice", "pencil", "127.0.0.1", port, option))
        fail_msg("email_start_pop3_session: %s", email_error_info());
    assert_false(email_error_occurred());
}

/* The global settings the sessions take (email_shutdown forgets them). */
static void library_settings(void)
{
    email_set_timeout(test_under_valgrind() ? 30 : 5);
    assert_int_equal(email_set_ca_file(dpath("ca.pem")), 0);
}

typedef bool (*read_fn)(const char *, int, email_message_t **);

/* Reads with fn and checks the subject (NULL: Email.Out, which is not an error). */
static void expect(read_fn fn, int options, const char *subject)
{
    email_message_t *m = (email_message_t *)&m;
    bool ok = fn("alice", options, &m);
    if (!subject) {
        assert_false(ok);
        assert_null(m);
        assert_int_equal(email_last_error(), 0);
        return;
    }
    if (!ok)
        fail_msg("reading \"%s\": %s", subject, email_error_info());
    assert_string_equal(email_message_get_subject(m), subject);
    assert_non_null(email_message_get_uid(m));
    size_t i = 0;
    while (strcmp(subjects[i], subject) != 0)
        i++;
    assert_int_equal(email_message_get_size(m), strlen(fixtures[i]));
    const char *body = email_message_get_text_body(m);
    if (options & EMAIL_READ_HEADERS) /* TOP n 0: no body line */
        assert_true(!body || !strstr(body, "body"));
    else
        assert_non_null(strstr(email_message_get_text_body(m), "body"));
    email_message_free(m);
}

/* first..last, Email.Out past the end, back to the first, Email.Out before it. */
static void test_read_walk(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_ALL), NFIX);
    expect(email_read_next, 0, "one"); /* next before anything: the first */
    expect(email_read_next, 0, "two");
    expect(email_read_next, 0, "three");
    expect(email_read_next, 0, NULL);
    expect(email_read_next, 0, NULL);
    expect(email_read_previous, 0, "three");
    expect(email_read_previous, 0, "two");
    expect(email_read_previous, 0, "one");
    expect(email_read_previous, 0, NULL);
    expect(email_read_next, 0, "one");
    expect(email_read_last, EMAIL_READ_HEADERS, "three");
    expect(email_read_first, EMAIL_READ_HEADERS, "one");
    assert_true(email_close_session("alice"));
    assert_false(email_error_occurred());
    test_server_stop(&dv);
}

/* DELE marks, email_close_session's QUIT commits; a dropped session commits nothing. */
static void test_delete(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    email_message_t *m;
    assert_true(email_read_first("alice", 0, &m));
    assert_true(email_delete_message("alice", m));
    assert_false(email_delete_message("alice", m)); /* once only */
    assert_int_equal(email_last_error(), EMAIL_ENOTFOUND);
    email_message_free(m);
    assert_int_equal(email_mailbox_count("alice", 0), NFIX - 1);
    expect(email_read_first, 0, "two"); /* deleted ones are skipped */
    expect(email_read_previous, 0, NULL);
    assert_true(email_close_session("alice"));

    email_shutdown();
    library_settings();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a library of its own marks every message and dies without QUIT */
        bool ok = email_start_pop3_session("alice", "pencil", "127.0.0.1", dv.port,
                                           EMAIL_OPTION_STARTTLS);
        while (ok && email_read_next("alice", EMAIL_READ_HEADERS, &m)) {
            ok = email_delete_message("alice", m);
            email_message_free(m);
        }
        _exit(ok && email_last_error() == 0 && email_mailbox_count("alice", 0) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    assert_int_equal(email_mailbox_count("alice", 0), NFIX - 1);
    expect(email_read_first, 0, "two");
    assert_true(email_close_session("alice"));
    test_server_stop(&dv);
}

/* IMAP-only options, unknown names, a wrong password, a name open twice. */
static void test_refusals(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    assert_false(email_start_pop3_session("alice", "wrong", "127.0.0.1", dv.port,
                                          EMAIL_OPTION_STARTTLS));
    assert_int_equal(email_last_error(), EMAIL_EAUTH);
    assert_non_null(strstr(email_error_info(), "-ERR"));
    assert_int_equal(email_mailbox_count("alice", 0), EMAIL_ENOSESSION); /* the name is free */
    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    assert_false(email_start_pop3_session("alice", "pencil", "127.0.0.1", dv.port, 0));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    email_message_t *m = (email_message_t *)&m;
    assert_false(email_read_first("alice", EMAIL_READ_UNREAD, &m));
    assert_int_equal(email_last_error(), EMAIL_ENOTSUP);
    assert_null(m);
    assert_false(email_read_next("alice", EMAIL_READ_PEEK, &m));
    assert_int_equal(email_last_error(), EMAIL_ENOTSUP);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), EMAIL_ENOTSUP);
    assert_false(email_read_first("bob", 0, &m));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    assert_true(email_close_session("alice"));
    assert_false(email_close_session("alice"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    test_server_stop(&dv);
}

/* STLS on the plain port, TLS from the first byte on the other; TLS against the plain port
 * fails. */
static void test_tls(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    expect(email_read_last, 0, "three");
    assert_true(email_close_session("alice"));
    open_alice(dv.more_ports[0], EMAIL_OPTION_TLS);
    expect(email_read_first, 0, "one");
    assert_true(email_close_session("alice"));
    open_alice(dv.port, EMAIL_OPTION_DEFAULT);
    expect(email_read_first, 0, "one");
    assert_true(email_close_session("alice"));
    assert_false(email_start_pop3_session("alice", "pencil", "127.0.0.1", dv.port,
                                          EMAIL_OPTION_TLS));
    assert_true(email_error_occurred());
    test_server_stop(&dv);
}

/* A POP3 and an SMTP session named alike: each works, email_close_session ends both. */
static void test_shared_name(void **state)
{
    (void)state;
    test_server_t dv, sink;
    start_dovecot(&dv);
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    assert_true(email_start_smtp_session("alice", NULL, "127.0.0.1", sink.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    open_alice(dv.port, EMAIL_OPTION_STARTTLS);
    email_message_t *m;
    assert_true(email_read_first("alice", 0, &m));
    assert_int_equal(email_message_add_to(m, "bob@example.org"), 0);
    if (!email_send_message("alice", m))
        fail_msg("email_send_message: %s", email_error_info());
    email_message_free(m);
    assert_int_equal(test_sink_wait(&sink, 1, 10000), 1);
    assert_true(email_close_session("alice"));
    assert_int_equal(email_mailbox_count("alice", 0), EMAIL_ENOSESSION);
    m = email_message_new();
    email_message_set_from(m, "a@example.org");
    email_message_add_to(m, "b@example.org");
    assert_false(email_send_message("alice", m));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    email_message_free(m);
    test_server_stop(&sink);
    test_server_stop(&dv);
}

/* ------------------------------------------------------------------------------------------- */
/* What real servers will not do: tests/servers/scripted.py                                     */

/* Greeting, CAPA (caps: the lines after "+OK"), USER/PASS as on loopback. */
#define P3_LOGIN(caps)                                                                          \
    "send +OK scripted ready\n"                                                                 \
    "expect CAPA\nsend +OK\\r\\n" caps "\\r\\n.\n"                                              \
    "expect USER alice\nsend +OK\n"                                                             \
    "expect PASS pencil\nsend +OK logged in\n"
#define P3_MSG1 "Subject: one\\r\\n\\r\\nbody one\\r\\n"
#define P3_MSG2 "Subject: two\\r\\n\\r\\nbody two\\r\\n"

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        fail_msg("\"%s\" not found in \"%s\"", needle, haystack ? haystack : "(null)");
}

/* A server without UIDL: the session starts all the same, messages are read by number (no
 * uid). The log file set for the name before the start (and the global log) hold the session,
 * its password as "****". */
static void test_no_uidl_and_log(void **state)
{
    (void)state;
    test_server_t s;
    const char *script = P3_LOGIN("USER")
        "expect LIST\nsend +OK 2 messages\\r\\n1 31\\r\\n2 31\\r\\n.\n"
        "expect UIDL\nsend -ERR unknown command\n"
        /* the session holds the list: RETR alone (no LIST n, UIDL n before it) */
        "expect RETR 1\nsend +OK\\r\\n" P3_MSG1 ".\n"
        "expect RETR 2\nsend +OK\\r\\n" P3_MSG2 ".\n"
        "expect QUIT\nsend +OK bye\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_int_equal(email_session_set_log_file("alice", dpath("preset.log")), 0);
    assert_int_equal(email_set_log(dpath("global.log")), 0);
    open_alice(s.port, EMAIL_OPTION_DEFAULT);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_ALL), 2);
    email_message_t *m;
    for (int i = 0; i < 2; i++) {
        if (i == 1) /* an open session's log changes at once */
            assert_int_equal(email_session_set_log_file("alice", dpath("later.log")), 0);
        assert_true(email_read_next("alice", 0, &m));
        assert_string_equal(email_message_get_subject(m), subjects[i]);
        assert_null(email_message_get_uid(m));
        assert_int_equal(email_message_get_size(m), 31);
        email_message_free(m);
    }
    assert_true(email_close_session("alice"));
    assert_int_equal(email_set_log(NULL), 0);
    assert_int_equal(test_server_wait(&s, 10000), 0);
    test_server_stop(&s);
    const char *logs[] = {"preset.log", "global.log"};
    for (int i = 0; i < 2; i++) {
        char *log = test_read_file(dpath(logs[i]), NULL);
        assert_contains(log, "### POP3 Connected");
        assert_contains(log, "PASS ****");
        assert_null(strstr(log, "pencil"));
        free(log);
    }
    char *log = test_read_file(dpath("preset.log"), NULL);
    assert_contains(log, "RETR 1");
    assert_null(strstr(log, "RETR 2"));
    free(log);
    log = test_read_file(dpath("later.log"), NULL);
    assert_contains(log, "RETR 2");
    assert_contains(log, "QUIT");
    free(log);
}

/* A connection lost under a session: no silent reconnection reading by the old numbers (they
 * may name other messages now, and the deletions were lost): EMAIL_ESTALE until closed. */
static void test_dropped_is_stale(void **state)
{
    (void)state;
    test_server_t s;
    const char *script = P3_LOGIN("USER\\r\\nUIDL\\r\\nPIPELINING")
        "expect LIST\nsend +OK 2 messages\\r\\n1 31\\r\\n2 31\\r\\n.\n"
        "expect UIDL\nsend +OK\\r\\n1 u-one\\r\\n2 u-two\\r\\n.\n"
        "expect RETR 1\nsend +OK\\r\\n" P3_MSG1 ".\n"
        "expect RETR 2\nclose\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    open_alice(s.port, EMAIL_OPTION_DEFAULT);
    email_message_t *one, *m;
    assert_true(email_read_first("alice", 0, &one));
    assert_string_equal(email_message_get_uid(one), "u-one");
    assert_false(email_read_next("alice", 0, &m)); /* the server closes */
    assert_null(m);
    assert_true(email_last_error() != 0);
    assert_true(email_last_error() != EMAIL_ESTALE);
    assert_false(email_read_next("alice", 0, &m));
    assert_int_equal(email_last_error(), EMAIL_ESTALE);
    assert_contains(email_error_info(), "connection to the POP3 server was lost");
    assert_false(email_read_first("alice", EMAIL_READ_HEADERS, &m));
    assert_int_equal(email_last_error(), EMAIL_ESTALE);
    /* the delete as well: message 1 of the old session may be another one now */
    assert_false(email_delete_message("alice", one));
    assert_int_equal(email_last_error(), EMAIL_ESTALE);
    email_message_free(one);
    email_close_session("alice");
    test_server_stop(&s);
}

static int group_setup(void **state)
{
    (void)state;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_pop3_session") != 0)
        return -1;
    for (int i = 0; i < NFIX; i++) {
        char name[40];
        snprintf(name, sizeof name, "fixture%d.eml", i + 1);
        if (test_write_file(dpath(name), fixtures[i], strlen(fixtures[i])) != 0)
            return -1;
    }
    email_set_timeout(test_under_valgrind() ? 30 : 5);
    return email_set_ca_file(dpath("ca.pem")) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (dir) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "test_pop3_session: files kept in %s\n", dir);
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
        LOOP_IDLE_TEST(test_read_walk),   LOOP_IDLE_TEST(test_delete),
        LOOP_IDLE_TEST(test_refusals),    LOOP_IDLE_TEST(test_tls),
        LOOP_IDLE_TEST(test_shared_name), LOOP_IDLE_TEST(test_no_uidl_and_log),
        LOOP_IDLE_TEST(test_dropped_is_stale),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
