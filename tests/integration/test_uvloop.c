/*
 * emailsession on the caller's own libuv loop (email_use_loop): a program of its own, because
 * email_use_loop must come before any other call of the library.
 *
 * An asynchronous session to postfix's smtp-sink; the completion callbacks run on the loop's
 * thread while uv_run runs (nobody calls email_dispatch); synchronous calls made from such a
 * callback fail with EMAIL_EWOULDBLOCK instead of deadlocking; at the end every handle of the
 * library is closed: uv_run returns by itself and uv_loop_close succeeds.
 *
 * The loop of each test has an unreferenced watchdog timer: it does not keep the loop alive, but
 * if something else does for too long, it stops the loop and the test fails instead of hanging.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <cmocka.h>

#include "emailsession-uv.h"
#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

#define N 10
#define WATCHDOG_MS 8000

typedef struct uvtest {
    uv_loop_t loop;
    uv_timer_t watchdog;
    bool watchdog_fired;
    uv_timer_t ticker;         /* the program's own handle, until the first outcome */
    bool ticker_open;
    int ticks;
    bool in_run;               /* the test is inside uv_run */
    pthread_t loop_thread;
    int port;
    const char *session;

    uint64_t ids[N];
    int counts[N];
    bool success[N];
    int errors[N];
    char texts[N][512];
    int outcomes;
    int unknown;
    bool wrong_thread, outside_run;

    /* what the callbacks do */
    email_transporter_t *t;    /* for a synchronous send from the first callback */
    int shutdown_at;           /* call email_shutdown() from the callback of this outcome (0 no) */
    bool close_at_end;         /* close the session from the last callback */

    /* what they saw */
    bool sync_calls_done;
    bool sync_start_ok;
    int sync_start_error;
    int sync_send_rc, sync_send_status_error;
    int sync_cancel_rc;
    bool close_ok;
    int close_error;
    int max_threads;           /* the most threads of the process seen by a callback */
} uvtest_t;

/* The threads of this process now. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static email_message_t *make_message(const char *subject)
{
    return test_message("a@example.org", "b@example.org", subject, "Hello from a libuv loop.\n");
}

static void on_watchdog(uv_timer_t *h)
{
    uvtest_t *u = h->data;
    u->watchdog_fired = true;
    uv_stop(&u->loop);
}

static void on_sent(uint64_t id, const email_status_t *st, void *user_data)
{
    uvtest_t *u = user_data;
    if (!pthread_equal(pthread_self(), u->loop_thread))
        u->wrong_thread = true;
    if (!u->in_run)
        u->outside_run = true;
    int threads = count_threads();
    if (threads > u->max_threads)
        u->max_threads = threads;
    int i = 0;
    while (i < N && u->ids[i] != id)
        i++;
    if (i == N) {
        u->unknown++;
        return;
    }
    if (u->counts[i]++ == 0) {
        u->success[i] = st->success;
        u->errors[i] = st->error;
        snprintf(u->texts[i], sizeof u->texts[i], "%s", st->status_text);
    }
    u->outcomes++;
    if (u->ticker_open) {
        /* from here on only the library's own handles keep the loop alive */
        uv_close((uv_handle_t *)&u->ticker, NULL);
        u->ticker_open = false;
    }

    if (u->outcomes == 1 && u->t) {
        /* synchronous calls on the loop's own thread would wait for themselves */
        u->sync_calls_done = true;
        u->sync_start_ok = email_start_smtp_session("uv-sync", NULL, "127.0.0.1", u->port,
                                                    EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT);
        u->sync_start_error = email_last_error();
        email_message_t *m = make_message("synchronous from a callback");
        email_status_t s;
        memset(&s, 0, sizeof s);
        u->sync_send_rc = email_transporter_send(u->t, m, &s);
        u->sync_send_status_error = s.error;
        email_status_clear(&s);
        email_message_free(m);
        u->sync_cancel_rc = email_transporter_cancel(u->t, id);
        /* freeing from the loop thread finishes in the background */
        email_transporter_free(u->t);
        u->t = NULL;
    }
    if (u->shutdown_at && u->outcomes == u->shutdown_at)
        email_shutdown();
    if (u->close_at_end && u->outcomes == N) {
        u->close_ok = email_close_session(u->session);
        u->close_error = email_last_error();
    }
}

static void on_tick(uv_timer_t *h)
{
    uvtest_t *u = h->data;
    u->ticks++;
}

/* A loop with its watchdog; with_ticker: plus a timer of the program's own that keeps the loop
   alive until the first outcome (as a program with other work would). */
static void setup_loop(uvtest_t *u, bool with_ticker)
{
    memset(u, 0, sizeof *u);
    assert_int_equal(uv_loop_init(&u->loop), 0);
    u->loop_thread = pthread_self();
    assert_int_equal(uv_timer_init(&u->loop, &u->watchdog), 0);
    u->watchdog.data = u;
    assert_int_equal(uv_timer_start(&u->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&u->watchdog);
    if (with_ticker) {
        assert_int_equal(uv_timer_init(&u->loop, &u->ticker), 0);
        u->ticker.data = u;
        assert_int_equal(uv_timer_start(&u->ticker, on_tick, 5, 5), 0);
        u->ticker_open = true;
    }
}

static void run_loop(uvtest_t *u)
{
    u->in_run = true;
    uv_run(&u->loop, UV_RUN_DEFAULT);
    u->in_run = false;
    if (u->watchdog_fired) {
        fprintf(stderr, "the loop was still alive after %d s:\n", WATCHDOG_MS / 1000);
        uv_walk(&u->loop, test_print_handle, NULL);
        fail_msg("uv_run did not return: something of the library kept the loop alive "
                 "(%d of %d outcomes)",
                 u->outcomes, N);
    }
}

/* Closes the watchdog, lets the closes finish, and checks no handle is left. */
static void close_loop(uvtest_t *u)
{
    uv_close((uv_handle_t *)&u->watchdog, NULL);
    if (u->ticker_open) {
        uv_close((uv_handle_t *)&u->ticker, NULL);
        u->ticker_open = false;
    }
    assert_uv_loop_closes(&u->loop);
}

static void check_outcomes(const uvtest_t *u)
{
    assert_int_equal(u->unknown, 0);
    assert_false(u->wrong_thread);
    assert_false(u->outside_run);
    assert_int_equal(u->outcomes, N);
    for (int i = 0; i < N; i++) {
        if (u->counts[i] != 1 || !u->success[i])
            fail_msg("message %d: %d outcome(s), success %d, %s: %s", i, u->counts[i],
                     u->success[i], email_error_name(u->errors[i]), u->texts[i]);
        assert_int_equal(email_message_status(u->ids[i]), EMAIL_SENT);
    }
}

static void queue_all(uvtest_t *u, const char *subject)
{
    for (int i = 0; i < N; i++) {
        email_message_t *m = make_message(subject);
        u->ids[i] = email_message_id(m);
        if (!email_send_message(u->session, m))
            fail_msg("message %d not queued: %s", i, email_error_info());
        email_message_free(m);
    }
}

/* Callbacks on the loop thread during uv_run, EWOULDBLOCK for synchronous calls there, the
   session closed from the last callback, then email_shutdown: nothing left on the loop. */
static void test_loop_callbacks(void **state)
{
    uvtest_t *u = malloc(sizeof *u);
    assert_non_null(u);
    setup_loop(u, true);
    /* the first call of the library */
    assert_int_equal(email_use_loop(&u->loop), 0);
    assert_int_equal(email_use_loop(&u->loop), EMAIL_EBUSY);
    assert_int_equal(email_use_loop(NULL), EMAIL_EINVAL);

    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    u->port = sink.port;
    u->session = "uv";
    u->close_at_end = true;
    /* before uv_run nothing can happen on the loop: a start that waited would never end */
    assert_false(email_start_smtp_session("uv", NULL, "127.0.0.1", sink.port, EMAIL_ASYNCHRONOUS,
                                          EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EWOULDBLOCK);
    assert_true(email_start_smtp_session_async("uv", NULL, "127.0.0.1", sink.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT, NULL,
                                               NULL));
    assert_int_equal(email_session_set_callback("uv", on_sent, u), 0);
    u->t = test_plain_transporter(sink.port);
    queue_all(u, "on the caller's loop");
    /* nothing happens until the loop runs */
    assert_int_equal(u->outcomes, 0);
    assert_int_equal(email_message_status(u->ids[0]), EMAIL_PENDING);

    run_loop(u);
    /* the callbacks ran on this thread, inside uv_run, without email_dispatch */
    check_outcomes(u);
    assert_int_equal(email_dispatch(), 0);

    assert_true(u->sync_calls_done);
    assert_false(u->sync_start_ok);
    assert_int_equal(u->sync_start_error, EMAIL_EWOULDBLOCK);
    assert_int_equal(u->sync_send_rc, EMAIL_EWOULDBLOCK);
    assert_int_equal(u->sync_send_status_error, EMAIL_EWOULDBLOCK);
    assert_int_equal(u->sync_cancel_rc, EMAIL_EWOULDBLOCK);
    assert_true(u->close_ok);
    assert_int_equal(u->close_error, 0);
    /* the failed synchronous start did not keep its name */
    assert_false(email_close_session("uv-sync"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);

    assert_int_equal(test_sink_wait(&sink, N, 5000), N);
    email_shutdown();
    close_loop(u);
    assert_int_equal(test_sink_count(&sink), N); /* the synchronous send never went out */
    test_server_stop(&sink);
    free(u);
}

/*
 * email_shutdown from inside a callback, with the other messages still queued: they are
 * delivered and reported, the session is closed, uv_run returns, no handle is left. After the
 * previous test's shutdown, the library takes a new loop.
 */
static void test_shutdown_in_callback(void **state)
{
    uvtest_t *u = malloc(sizeof *u);
    assert_non_null(u);
    setup_loop(u, true);
    assert_int_equal(email_use_loop(&u->loop), 0);
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    u->port = sink.port;
    u->session = "uv-shutdown";
    u->shutdown_at = 1;
    assert_true(email_start_smtp_session_async("uv-shutdown", NULL, "127.0.0.1", sink.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT, NULL,
                                               NULL));
    assert_int_equal(email_session_set_callback("uv-shutdown", on_sent, u), 0);
    queue_all(u, "shutdown from a callback");

    run_loop(u);
    check_outcomes(u);
    assert_int_equal(test_sink_wait(&sink, N, 5000), N);
    assert_false(email_close_session("uv-shutdown")); /* closed by the shutdown */
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    close_loop(u);
    test_server_stop(&sink);
    free(u);
}

/*
 * The plainest program: start a session, queue messages, uv_run, with no handle of its own.
 * The library's pending work has to keep the loop alive: uv_run returns once everything is
 * sent and the session closed from the last callback.
 */
static void test_loop_alone(void **state)
{
    uvtest_t *u = malloc(sizeof *u);
    assert_non_null(u);
    setup_loop(u, false);
    assert_int_equal(email_use_loop(&u->loop), 0);
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    u->port = sink.port;
    u->session = "uv-alone";
    u->close_at_end = true;
    assert_true(email_start_smtp_session_async("uv-alone", NULL, "127.0.0.1", sink.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT, NULL,
                                               NULL));
    assert_int_equal(email_session_set_callback("uv-alone", on_sent, u), 0);
    queue_all(u, "nothing else on the loop");

    run_loop(u);
    if (u->outcomes == 0)
        fail_msg("uv_run returned at once: the queued work did not keep the loop alive (%d "
                 "message(s) reached the server)",
                 test_sink_count(&sink));
    check_outcomes(u);
    assert_true(u->close_ok);
    assert_int_equal(test_sink_wait(&sink, N, 5000), N);
    email_shutdown();
    close_loop(u);
    test_server_stop(&sink);
    free(u);
}

static void on_noop_work(uv_work_t *req)
{
    (void)req;
}

static void on_noop_work_done(uv_work_t *req, int status)
{
    (void)req;
    (void)status;
}

/*
 * The log on the caller's loop: the library has no thread (the flusher of the log neither);
 * its writes go to libuv's thread pool (main makes it one thread, started here first, so that
 * the count before includes it). email_set_log(NULL) on the loop's thread cannot wait for the
 * pool: the lines reach the file as the loop runs on, before uv_run returns.
 */
static void test_log_without_thread(void **state)
{
    uvtest_t *u = malloc(sizeof *u);
    assert_non_null(u);
    setup_loop(u, false);
    assert_int_equal(email_use_loop(&u->loop), 0);
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/uv.log", dir);
    assert_int_equal(email_set_log(path), 0);
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    u->port = sink.port;
    u->session = "uv-log";
    u->close_at_end = true;
    assert_true(email_start_smtp_session_async("uv-log", NULL, "127.0.0.1", sink.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT, NULL,
                                               NULL));
    assert_int_equal(email_session_set_callback("uv-log", on_sent, u), 0);
    queue_all(u, "logged on the caller's loop");
    uv_work_t w;
    assert_int_equal(uv_queue_work(&u->loop, &w, on_noop_work, on_noop_work_done), 0);
    int before = count_threads();

    run_loop(u);
    check_outcomes(u);
    if (u->max_threads > before)
        fail_msg("%d thread(s) besides the caller's and libuv's pool while the log was written",
                 u->max_threads - before);
    assert_int_equal(email_set_log(NULL), 0);
    email_shutdown();
    close_loop(u);
    assert_true(count_threads() <= before);

    /* every line, numbered from 1 without a gap, the session's last one last */
    char *text = test_read_file(path, NULL);
    assert_non_null(text);
    unsigned long long want = 1, n;
    int mails = 0;
    const char *last = "";
    for (char *line = text; *line; want++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        assert_int_equal(sscanf(line, "%llu ", &n), 1);
        assert_int_equal(n, want);
        mails += strstr(line, " C > \"MAIL FROM:") != NULL;
        last = line;
        line = nl + 1;
    }
    assert_int_equal(mails, N);
    assert_non_null(strstr(last, " ### SMTP Connection closed"));
    free(text);
    test_rmtree(dir);
    free(dir);
    test_server_stop(&sink);
    free(u);
}

/* Whatever a failed test left: the next one starts with no loop taken. (The caller's loop was
 * checked by the test itself: close_loop.) */
static int teardown_shutdown(void **state)
{
    email_shutdown();
    assert_loop_idle();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_loop_callbacks, teardown_shutdown),
        cmocka_unit_test_teardown(test_shutdown_in_callback, teardown_shutdown),
        cmocka_unit_test_teardown(test_loop_alone, teardown_shutdown),
        cmocka_unit_test_teardown(test_log_without_thread, teardown_shutdown),
    };
    /* before libuv starts its thread pool: one thread, which test_log_without_thread counts */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
