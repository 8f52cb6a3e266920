/*
 * WLanguage's named IMAP sessions against a private dovecot (tests/servers/dovecot_mail.py)
 * seeded with fixture messages: reading first..last and back with Email.Out at both ends, headers
 * only, \Seen set by reading and left by EMAIL_READ_PEEK, unread-only reading and counting,
 * deletion (UID EXPUNGE: dovecot has UIDPLUS), one receiving session per name, a wrong password,
 * STARTTLS and TLS from the first byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

static void library_settings(void)
{
    email_set_timeout(test_under_valgrind() ? 30 : 5);
    assert_int_equal(email_set_ca_file(dpath("ca.pem")), 0);
}

static void open_alice(int port, int option)
{
    library_settings();
    if (!email_start_imap_session("alice", "pencil", "127.0.0.1", port, option))
        fail_msg("email_start_imap_session: %s", email_error_info());
    assert_false(email_error_occurred());
}

typedef bool (*read_fn)(const char *, int, email_message_t **);

/* Reads with fn and checks the subject (NULL: Email.Out, which is not an error). */
static void expect(read_fn fn, int options, const char *subject)
{
    email_message_t *m = (email_message_t *)&m;
    bool ok = fn("alice", options, &m);
    if (!subject) {
        if (ok)
            fail_msg("read \"%s\" where none was expected", email_message_get_subject(m));
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
    if (options & EMAIL_READ_HEADERS)
        assert_true(!body || !strstr(body, "body"));
    else
        assert_non_null(strstr(body, "body"));
    email_message_free(m);
}

/* first..last, Email.Out past the end, back, Email.Out before the first; PEEK and headers only
 * leave \Seen alone. */
static void test_read_walk(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_ALL), NFIX);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), NFIX);
    expect(email_read_next, EMAIL_READ_PEEK, "one"); /* next before anything: the first */
    expect(email_read_next, EMAIL_READ_PEEK, "two");
    expect(email_read_next, EMAIL_READ_PEEK, "three");
    expect(email_read_next, EMAIL_READ_PEEK, NULL);
    expect(email_read_next, EMAIL_READ_PEEK, NULL);
    expect(email_read_previous, EMAIL_READ_PEEK, "three");
    expect(email_read_previous, EMAIL_READ_PEEK, "two");
    expect(email_read_previous, EMAIL_READ_PEEK, "one");
    expect(email_read_previous, EMAIL_READ_PEEK, NULL);
    expect(email_read_last, EMAIL_READ_HEADERS, "three");
    expect(email_read_first, EMAIL_READ_HEADERS, "one");
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), NFIX);
    assert_true(email_close_session("alice"));
    assert_false(email_error_occurred());
    test_server_stop(&dv);
}

/* Reading marks \Seen; EMAIL_READ_UNREAD reads and counts only the others. */
static void test_unread(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    expect(email_read_next, 0, "one");
    expect(email_read_last, 0, "three");
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), 1);
    assert_int_equal(email_mailbox_count("alice", 0), NFIX);
    expect(email_read_first, EMAIL_READ_UNREAD, "two");
    expect(email_read_next, EMAIL_READ_UNREAD, NULL); /* two is read now */
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), 0);
    expect(email_read_first, EMAIL_READ_UNREAD, NULL);
    assert_true(email_close_session("alice"));
    /* a new session sees what the last one marked */
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    assert_int_equal(email_mailbox_count("alice", EMAIL_READ_UNREAD), 0);
    assert_true(email_close_session("alice"));
    test_server_stop(&dv);
}

/* Deleted at once (UIDPLUS), skipped by the reading, gone for the next session. */
static void test_delete(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    expect(email_read_first, EMAIL_READ_PEEK, "one");
    email_message_t *m = NULL;
    assert_true(email_read_next("alice", EMAIL_READ_PEEK, &m));
    assert_string_equal(email_message_get_subject(m), "two");
    assert_true(email_delete_message("alice", m));
    assert_false(email_delete_message("alice", m));
    assert_int_equal(email_last_error(), EMAIL_ENOTFOUND);
    email_message_free(m);
    assert_int_equal(email_mailbox_count("alice", 0), NFIX - 1);
    expect(email_read_first, EMAIL_READ_PEEK, "one");
    expect(email_read_next, EMAIL_READ_PEEK, "three");
    assert_true(email_close_session("alice"));
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    assert_int_equal(email_mailbox_count("alice", 0), NFIX - 1);
    email_message_t *built = email_message_new();
    assert_non_null(built);
    assert_false(email_delete_message("alice", built)); /* not read from a server */
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    email_message_free(built);
    assert_true(email_close_session("alice"));
    test_server_stop(&dv);
}

/* One receiving session per name, a wrong password, the options' checks. */
static void test_errors(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    library_settings();
    assert_false(email_start_imap_session("alice", "wrong", "127.0.0.1", dv.more_ports[1],
                                          EMAIL_OPTION_STARTTLS));
    assert_int_equal(email_last_error(), EMAIL_EAUTH);
    assert_int_equal(email_mailbox_count("alice", 0), EMAIL_ENOSESSION); /* the name is free */
    open_alice(dv.more_ports[1], EMAIL_OPTION_STARTTLS);
    assert_false(email_start_imap_session("alice", "pencil", "127.0.0.1", dv.more_ports[1], 0));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    assert_false(email_start_pop3_session("alice", "pencil", "127.0.0.1", dv.port, 0));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    email_message_t *m = (email_message_t *)&m;
    assert_false(email_read_first("alice", 0x40, &m));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_null(m);
    assert_true(email_close_session("alice"));
    assert_false(email_close_session("alice"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    test_server_stop(&dv);
}

/* TLS from the first byte on the IMAPS port; TLS against the plain port fails clearly. */
static void test_tls(void **state)
{
    (void)state;
    test_server_t dv;
    start_dovecot(&dv);
    open_alice(dv.more_ports[2], EMAIL_OPTION_TLS);
    expect(email_read_first, EMAIL_READ_PEEK, "one");
    assert_true(email_close_session("alice"));
    assert_false(email_start_imap_session("alice", "pencil", "127.0.0.1", dv.more_ports[1],
                                          EMAIL_OPTION_TLS));
    assert_int_equal(email_last_error(), EMAIL_ETLS);
    assert_non_null(strstr(email_error_info(), "STARTTLS"));
    test_server_stop(&dv);
}

static int group_setup(void **state)
{
    (void)state;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_imap_session") != 0)
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
            fprintf(stderr, "test_imap_session: files kept in %s\n", dir);
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
        LOOP_IDLE_TEST(test_read_walk),
        LOOP_IDLE_TEST(test_unread),
        LOOP_IDLE_TEST(test_delete),
        LOOP_IDLE_TEST(test_errors),
        LOOP_IDLE_TEST(test_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
