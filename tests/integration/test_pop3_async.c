/*
 * The POP3 transporter's asynchronous calls against a private dovecot
 * (tests/servers/dovecot_mail.py): each call's outcome through email_dispatch(), in the order
 * the calls were made; a callback queuing the next read (through email_dispatch() and on the
 * loop thread); a free with calls queued (each gets exactly one outcome, the deletion among them
 * committed by the QUIT after them); a wrong password reported to every queued call; queued
 * reads pipelined (seen in the log: the commands of every read out before the first answer);
 * bad arguments refused without a callback.
 */
#include <poll.h>
#include <pthread.h>
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
static int timeout_s = 5;

static const char *const fixtures[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\n.leading dot\r\nbody one\r\n",
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

static email_pop3_transporter_t *open_box(int port, const char *password, const char *log)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = port;
    srv.security = EMAIL_SECURITY_STARTTLS;
    srv.user = "alice";
    srv.password = password;
    srv.ca_file = dpath("ca.pem");
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    srv.log_file = log ? dpath(log) : NULL;
    email_pop3_transporter_t *t = email_pop3_transporter_new(&srv);
    if (!t)
        fail_msg("email_pop3_transporter_new: %s", email_error_info());
    return t;
}

/* ------------------------------------------------------------------------------------------- */
/* Outcomes, recorded from whichever thread the callbacks run on                                */

#define MAX_OUTCOMES 256

typedef struct outcome {
    int calls;               /* how many times its callback ran (exactly once, always) */
    int order;               /* its rank among the outcomes */
    bool success;
    int error;
    char subject[64];        /* get_mail: the message's subject */
    char uid[72];
    uint64_t size, count;    /* get_mail: its size; box info, list: the count */
    char *data;              /* get_mail_raw */
    char first_uid[72];      /* list: the first entry's uid */
} outcome_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    outcome_t v[MAX_OUTCOMES];
    int done;
    email_pop3_transporter_t *t; /* for the callbacks that queue more */
    int chain_next;              /* the chain's next message number */
    int chain_last;
} rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.lock);
    for (int i = 0; i < MAX_OUTCOMES; i++)
        free(rec.v[i].data);
    memset(rec.v, 0, sizeof rec.v);
    rec.done = 0;
    rec.t = NULL;
    pthread_mutex_unlock(&rec.lock);
}

static outcome_t *rec_begin(void *user_data, const email_status_t *status)
{
    intptr_t tag = (intptr_t)user_data;
    assert_true(tag >= 0 && tag < MAX_OUTCOMES);
    pthread_mutex_lock(&rec.lock);
    outcome_t *o = &rec.v[tag];
    o->calls++;
    o->order = rec.done++;
    o->success = status->success;
    o->error = status->error;
    return o;
}

static void rec_end(void)
{
    pthread_cond_broadcast(&rec.cond);
    pthread_mutex_unlock(&rec.lock);
}

static void on_message(email_message_t *m, const email_status_t *status, void *user_data)
{
    outcome_t *o = rec_begin(user_data, status);
    if (m) {
        const char *s = email_message_get_subject(m);
        snprintf(o->subject, sizeof o->subject, "%s", s ? s : "");
        const char *uid = email_message_get_uid(m);
        snprintf(o->uid, sizeof o->uid, "%s", uid ? uid : "");
        o->size = email_message_get_size(m);
        email_message_free(m);
    }
    rec_end();
}

static void on_mailbox(const email_mailbox_result_t *r, const email_status_t *status,
                       void *user_data)
{
    outcome_t *o = rec_begin(user_data, status);
    o->count = r->count;
    o->size = r->size;
    if (r->data)
        o->data = strdup(r->data);
    if (r->pop3_list && r->count)
        snprintf(o->first_uid, sizeof o->first_uid, "%s", r->pop3_list[0].uid);
    rec_end();
}

static int rec_done(void)
{
    pthread_mutex_lock(&rec.lock);
    int n = rec.done;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

/* Runs email_dispatch() until `want` outcomes came (or a generous while passed). */
static int dispatch_until(int want)
{
    int fd = email_dispatch_fd();
    assert_true(fd >= 0);
    long long deadline = test_now_ms() + 1000LL * 6 * timeout_s;
    while (rec_done() < want && test_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0)
            email_dispatch();
    }
    return rec_done();
}

/* For callbacks on the loop thread: waits for `want` outcomes. */
static int wait_outcomes(int want)
{
    struct timespec until = test_deadline_in(1000 * 6 * timeout_s);
    pthread_mutex_lock(&rec.lock);
    while (rec.done < want && pthread_cond_timedwait(&rec.cond, &rec.lock, &until) == 0)
        ;
    int n = rec.done;
    pthread_mutex_unlock(&rec.lock);
    return n;
}

#define TAG(i) ((void *)(intptr_t)(i))

static uint64_t box_count(email_pop3_transporter_t *t)
{
    email_pop3_box_info_t info;
    assert_int_equal(email_pop3_get_box_info(t, &info, NULL), 0);
    return info.count;
}

/* ------------------------------------------------------------------------------------------- */

/* Every call's outcome through email_dispatch(), in the order of the calls; a sync call made
 * among them waits its turn behind the ones queued before it. */
static void test_outcomes_in_order(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "pencil", NULL);
    assert_int_equal(email_pop3_check_connection_async(t, on_message, TAG(0)), 0);
    assert_false(email_error_occurred());
    assert_int_equal(email_pop3_get_box_info_async(t, on_mailbox, TAG(1)), 0);
    assert_int_equal(email_pop3_get_mail_info_list_async(t, on_mailbox, TAG(2)), 0);
    assert_int_equal(email_pop3_get_mail_raw_async(t, 1, on_mailbox, TAG(3)), 0);
    assert_int_equal(email_pop3_get_mail_async(t, 2, on_message, TAG(4)), 0);
    assert_int_equal(email_pop3_delete_async(t, 3, on_message, TAG(5)), 0);
    assert_int_equal(email_pop3_get_box_info_async(t, on_mailbox, TAG(6)), 0);
    assert_int_equal(email_pop3_undelete_all_async(t, on_message, TAG(7)), 0);
    assert_int_equal(email_pop3_get_mail_async(t, 9, on_message, TAG(8)), 0); /* no such one */
    /* the synchronous call goes after the queued ones: RSET came before its STAT */
    assert_int_equal(box_count(t), NFIX);
    assert_int_equal(dispatch_until(9), 9);
    for (int i = 0; i < 9; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_int_equal(rec.v[i].order, i);
        assert_true(rec.v[i].success == (i != 8));
    }
    assert_int_equal(rec.v[1].count, NFIX);
    assert_int_equal(rec.v[1].size,
                     strlen(fixtures[0]) + strlen(fixtures[1]) + strlen(fixtures[2]));
    assert_int_equal(rec.v[2].count, NFIX);
    assert_true(rec.v[2].first_uid[0] != '\0');
    assert_string_equal(rec.v[3].data, fixtures[0]);
    assert_string_equal(rec.v[4].subject, "two");
    assert_true(rec.v[4].uid[0] != '\0');
    assert_int_equal(rec.v[4].size, strlen(fixtures[1]));
    assert_int_equal(rec.v[6].count, NFIX - 1);
    assert_int_equal(rec.v[8].error, EMAIL_ESERVER);
    email_pop3_transporter_free(t);
    assert_int_equal(dispatch_until(9), 9); /* nothing more */
    test_server_stop(&dv);
    rec_reset();
}

/* A callback that reads the next message, until the last. */
static void chain_read(email_message_t *m, const email_status_t *status, void *user_data)
{
    on_message(m, status, user_data);
    pthread_mutex_lock(&rec.lock);
    int next = rec.chain_next <= rec.chain_last ? rec.chain_next++ : 0;
    email_pop3_transporter_t *t = rec.t;
    pthread_mutex_unlock(&rec.lock);
    if (next && status->success)
        assert_int_equal(email_pop3_get_mail_async(t, (unsigned)next, chain_read, TAG(next)),
                         0);
}

static void check_chain(void)
{
    for (int i = 1; i <= NFIX; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_true(rec.v[i].success);
        assert_string_equal(rec.v[i].subject, subjects[i - 1]);
    }
}

/* A callback queues the next read: through email_dispatch(), then on the loop thread. */
static void test_callback_queues_next(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "pencil", NULL);
    rec.t = t;
    rec.chain_next = 2;
    rec.chain_last = NFIX;
    assert_int_equal(email_pop3_get_mail_async(t, 1, chain_read, TAG(1)), 0);
    assert_int_equal(dispatch_until(NFIX), NFIX);
    check_chain();

    rec_reset();
    rec.t = t;
    rec.chain_next = 2;
    rec.chain_last = NFIX;
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_pop3_get_mail_async(t, 1, chain_read, TAG(1)), 0);
    assert_int_equal(wait_outcomes(NFIX), NFIX);
    check_chain();
    email_pop3_transporter_free(t);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    test_server_stop(&dv);
    rec_reset();
}

/* Freed with calls queued: each gets exactly one outcome, and the QUIT after them commits the
 * deletion queued among them. */
static void test_free_with_calls_queued(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "pencil", NULL);
    enum { N = 20 };
    for (int i = 0; i < N; i++)
        assert_int_equal(email_pop3_get_mail_async(t, 1 + i % NFIX, on_message, TAG(i)), 0);
    assert_int_equal(email_pop3_delete_async(t, 2, on_message, TAG(N)), 0);
    assert_int_equal(email_pop3_delete_async(t, 2, NULL, NULL), 0); /* no callback: dropped */
    email_pop3_transporter_free(t);
    assert_int_equal(dispatch_until(N + 1), N + 1);
    for (int i = 0; i <= N; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_int_equal(rec.v[i].order, i);
        assert_true(rec.v[i].success);
    }
    assert_string_equal(rec.v[4].subject, subjects[1]);

    t = open_box(dv.port, "pencil", NULL);
    assert_int_equal(box_count(t), NFIX - 1);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
    rec_reset();
}

/* A loop-thread callback queues reads and frees the transporter (it cannot wait there): the
 * reads are answered before the QUIT, each once. */
static void queue_and_free(email_message_t *m, const email_status_t *status, void *user_data)
{
    on_message(m, status, user_data);
    email_pop3_transporter_t *t = rec.t;
    for (int i = 1; i <= NFIX; i++)
        assert_int_equal(email_pop3_get_mail_async(t, (unsigned)i, on_message, TAG(i)), 0);
    email_pop3_transporter_free(t);
}

static void test_free_on_loop_thread(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "pencil", NULL);
    rec.t = t;
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_pop3_check_connection_async(t, queue_and_free, TAG(0)), 0);
    assert_int_equal(wait_outcomes(NFIX + 1), NFIX + 1);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    for (int i = 0; i <= NFIX; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_true(rec.v[i].success);
    }
    check_chain();
    email_shutdown(); /* the session's end is over */
    test_server_stop(&dv);
    rec_reset();
}

/* A wrong password: every queued call reports EMAIL_EAUTH. */
static void test_wrong_password(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "wrong", NULL);
    assert_int_equal(email_pop3_check_connection_async(t, on_message, TAG(0)), 0);
    assert_int_equal(email_pop3_get_mail_async(t, 1, on_message, TAG(1)), 0);
    assert_int_equal(email_pop3_get_box_info_async(t, on_mailbox, TAG(2)), 0);
    assert_int_equal(dispatch_until(3), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_false(rec.v[i].success);
        assert_int_equal(rec.v[i].error, EMAIL_EAUTH);
    }
    assert_int_equal(rec.v[2].count, 0);
    email_pop3_transporter_free(t);
    test_server_stop(&dv);
    rec_reset();
}

/* The longest run of client lines ("C >") with no server line between them. */
static int longest_flight(const char *log)
{
    int run = 0, best = 0;
    for (const char *p = log; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(n < 511 ? n : 511), p);
        if (strstr(line, " C > "))
            best = ++run > best ? run : best;
        else if (strstr(line, " S < "))
            run = 0;
        p = eol ? eol + 1 : NULL;
    }
    return best;
}

/* Reads queued from one loop-thread callback go out pipelined: every command of the 50 reads
 * (LIST, UIDL and RETR each) written before the server's first answer to them. */
enum { PIPELINED = 50 };

static void queue_many(email_message_t *m, const email_status_t *status, void *user_data)
{
    on_message(m, status, user_data);
    for (int i = 1; i <= PIPELINED; i++)
        assert_int_equal(email_pop3_get_mail_async(rec.t, 1 + (unsigned)(i % NFIX), on_message,
                                                   TAG(i)),
                         0);
}

static void test_pipelined(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    start_dovecot(&dv);
    email_pop3_transporter_t *t = open_box(dv.port, "pencil", "pipelined.log");
    rec.t = t;
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_pop3_check_connection_async(t, queue_many, TAG(0)), 0);
    assert_int_equal(wait_outcomes(PIPELINED + 1), PIPELINED + 1);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    for (int i = 1; i <= PIPELINED; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_true(rec.v[i].success);
        assert_string_equal(rec.v[i].subject, subjects[i % NFIX]);
    }
    email_pop3_transporter_free(t);
    char *log = test_read_file(dpath("pipelined.log"), NULL);
    assert_non_null(log);
    int flight = longest_flight(log);
    if (flight < 3 * PIPELINED)
        fail_msg("the longest flight of commands is %d lines, not %d", flight, 3 * PIPELINED);
    assert_non_null(strstr(log, "RETR 1"));
    free(log);
    test_server_stop(&dv);
    rec_reset();
}

/* Bad arguments: refused at once, ErrorInfo set, the callback never called. */
static void test_bad_arguments(void **state)
{
    (void)state;
    rec_reset();
    assert_int_equal(email_pop3_get_mail_async(NULL, 1, on_message, TAG(0)), EMAIL_EINVAL);
    assert_true(email_error_occurred());
    assert_non_null(strstr(email_error_info(), "email_pop3_get_mail_async"));
    email_pop3_transporter_t *t = open_box(9, "pencil", NULL); /* never connects */
    assert_int_equal(email_pop3_get_mail_async(t, 0, on_message, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_pop3_delete_async(t, 0, on_message, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_pop3_get_mail_raw_async(t, 0, on_mailbox, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_pop3_get_box_info_async(NULL, on_mailbox, TAG(0)), EMAIL_EINVAL);
    email_pop3_transporter_free(t);
    email_dispatch();
    assert_int_equal(rec_done(), 0);
}

static int group_setup(void **state)
{
    (void)state;
    if (test_under_valgrind())
        timeout_s = 30;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_pop3_async") != 0)
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
            fprintf(stderr, "test_pop3_async: files kept in %s\n", dir);
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
        LOOP_IDLE_TEST(test_outcomes_in_order),
        LOOP_IDLE_TEST(test_callback_queues_next),
        LOOP_IDLE_TEST(test_free_with_calls_queued),
        LOOP_IDLE_TEST(test_free_on_loop_thread),
        LOOP_IDLE_TEST(test_wrong_password),
        LOOP_IDLE_TEST(test_pipelined),
        LOOP_IDLE_TEST(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
