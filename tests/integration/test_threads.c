/*
 * Threads, callbacks and the runtime, against aiosmtpd and smtp-sink on 127.0.0.1:
 *  - email_shutdown, email_close_session and email_transporter_free called from a completion
 *    callback, in each place callbacks run (the library's thread with
 *    EMAIL_CALLBACK_LOOP_THREAD, the caller's loop with email_use_loop, email_dispatch): the
 *    call returns, every message still queued gets exactly one outcome, the library works
 *    again afterwards;
 *  - the log callback: its lines come through email_dispatch (or the loop thread when asked),
 *    email_set_log_callback returns only once the old callback is no longer running and never
 *    calls it again, and may be called from inside the callback;
 *  - a stress test for ThreadSanitizer (tools/check-tsan.sh): several threads start, send and
 *    close shared names while another toggles the log, the log callback, the timeout and the
 *    CA file.
 * Waits are bounded by deadlines: a hang fails the test instead of blocking it.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

#include "emailsession-uv.h"
#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

#define N 8
#define DEADLINE_MS 20000

static email_message_t *make_message(const char *subject)
{
    return test_message("a@example.org", "b@example.org", subject, "Hello from a thread.\n");
}

/* ---------------------------------------------------------------------------------------------
 * Shutdown, close and free from a completion callback
 * ------------------------------------------------------------------------------------------- */

enum place { ON_LOOP_THREAD, ON_USE_LOOP, ON_DISPATCH };
enum action { DO_SHUTDOWN, DO_CLOSE, DO_FREE };

typedef struct scenario {
    enum place place;
    enum action action;
    const char *name;          /* the named session (shutdown, close) */
    email_transporter_t *t;    /* the transporter (free) */
    email_transporter_t *idle; /* freed from the last callback, once a shutdown has begun */
    uv_loop_t loop;            /* ON_USE_LOOP */
    uv_timer_t watchdog;
    bool watchdog_fired;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t ids[N];
    int counts[N];
    bool success[N];
    char texts[N][512];
    int outcomes, unknown;
    bool acted;
    bool queued; /* every message is queued: the first outcome's call waits for it */
} scenario_t;

static void act(scenario_t *sc)
{
    switch (sc->action) {
    case DO_SHUTDOWN:
        email_shutdown();
        break;
    case DO_CLOSE:
        if (!email_close_session(sc->name))
            fprintf(stderr, "close from a callback: %s\n", email_error_info());
        break;
    case DO_FREE:
        email_transporter_free(sc->t);
        break;
    }
}

/* Records the outcome; the first one runs the scenario's call, outside the lock. */
static void on_outcome(uint64_t id, const email_status_t *st, void *user_data)
{
    scenario_t *sc = user_data;
    pthread_mutex_lock(&sc->lock);
    int i = 0;
    while (i < N && sc->ids[i] != id)
        i++;
    if (i == N) {
        sc->unknown++;
    } else if (sc->counts[i]++ == 0) {
        sc->success[i] = st->success;
        snprintf(sc->texts[i], sizeof sc->texts[i], "%s", st->status_text);
    }
    sc->outcomes++;
    bool first = !sc->acted;
    sc->acted = true;
    /* On the loop's thread the first outcome can come while the test's thread is still
     * queueing (a loaded machine): the call it makes (a shutdown or close ends the session)
     * would refuse the rest. Queueing posts to the loop without waiting on it, so waiting here
     * cannot deadlock; the deadline only keeps a broken library from hanging the test. */
    struct timespec until = test_deadline_in(DEADLINE_MS);
    while (first && !sc->queued && pthread_cond_timedwait(&sc->cond, &sc->lock, &until) == 0)
        ;
    email_transporter_t *idle = sc->outcomes == N ? sc->idle : NULL;
    pthread_cond_broadcast(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
    if (first)
        act(sc);
    /* work the loop's thread hands over while the loop is stopping (valgrind: not lost) */
    email_transporter_free(idle);
}

static int outcomes(scenario_t *sc)
{
    pthread_mutex_lock(&sc->lock);
    int n = sc->outcomes;
    pthread_mutex_unlock(&sc->lock);
    return n;
}

static void on_watchdog(uv_timer_t *h)
{
    scenario_t *sc = h->data;
    sc->watchdog_fired = true;
    uv_stop(&sc->loop);
}

/* Runs the scenario's loop until nothing keeps it alive (the watchdog is unreferenced). */
static void run_own_loop(scenario_t *sc)
{
    uv_run(&sc->loop, UV_RUN_DEFAULT);
    if (sc->watchdog_fired) {
        uv_walk(&sc->loop, test_print_handle, NULL);
        fail_msg("uv_run did not return (%d of %d outcomes)", outcomes(sc), N);
    }
}

/* Waits for every outcome where this scenario's callbacks run. */
static void wait_outcomes(scenario_t *sc)
{
    int limit = test_under_valgrind() ? DEADLINE_MS * 5 : DEADLINE_MS;
    if (sc->place == ON_USE_LOOP) {
        run_own_loop(sc);
    } else if (sc->place == ON_DISPATCH) {
        long long end = test_now_ms() + limit;
        while (outcomes(sc) < N && test_now_ms() < end) {
            struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
            if (poll(&p, 1, 100) > 0)
                email_dispatch();
        }
    } else {
        struct timespec until = test_deadline_in(limit);
        pthread_mutex_lock(&sc->lock);
        while (sc->outcomes < N && pthread_cond_timedwait(&sc->cond, &sc->lock, &until) == 0)
            ;
        pthread_mutex_unlock(&sc->lock);
    }
}

static void scenario_queue(scenario_t *sc)
{
    for (int i = 0; i < N; i++) {
        email_message_t *m = make_message("queued before the callback's call");
        sc->ids[i] = email_message_id(m);
        if (sc->action == DO_FREE) {
            assert_int_equal(email_transporter_send_async(sc->t, m, on_outcome, sc, NULL), 0);
        } else if (!email_send_message(sc->name, m)) {
            fail_msg("message %d not queued: %s", i, email_error_info());
        }
        email_message_free(m);
    }
    pthread_mutex_lock(&sc->lock);
    sc->queued = true;
    pthread_cond_broadcast(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
}

static void scenario_start(scenario_t *sc, int port)
{
    if (sc->place == ON_USE_LOOP) {
        assert_int_equal(uv_loop_init(&sc->loop), 0);
        assert_int_equal(uv_timer_init(&sc->loop, &sc->watchdog), 0);
        sc->watchdog.data = sc;
        assert_int_equal(uv_timer_start(&sc->watchdog, on_watchdog, DEADLINE_MS, 0), 0);
        uv_unref((uv_handle_t *)&sc->watchdog);
        assert_int_equal(email_use_loop(&sc->loop), 0);
    }
    assert_int_equal(email_set_callback_thread(sc->place == ON_LOOP_THREAD
                                                   ? EMAIL_CALLBACK_LOOP_THREAD
                                                   : EMAIL_CALLBACK_DISPATCH),
                     0);
    if (sc->action == DO_FREE) {
        sc->t = test_plain_transporter(port);
    } else {
        /* on the caller's loop nothing runs before uv_run: the start cannot wait there */
        if (sc->place == ON_USE_LOOP)
            assert_true(email_start_smtp_session_async(sc->name, NULL, "127.0.0.1", port,
                                                       EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                                       NULL, NULL));
        else
            assert_true(email_start_smtp_session(sc->name, NULL, "127.0.0.1", port,
                                                 EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
        if (sc->action == DO_SHUTDOWN)
            sc->idle = test_plain_transporter(port);
        assert_int_equal(email_session_set_callback(sc->name, on_outcome, sc), 0);
    }
}

/* The library works again after the scenario: a synchronous session sends one message. */
static void assert_usable(int port)
{
    assert_true(email_start_smtp_session("after", NULL, "127.0.0.1", port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    email_message_t *m = make_message("after");
    bool ok = email_send_message("after", m);
    email_message_free(m);
    if (!ok)
        fail_msg("send after the scenario: %s", email_error_info());
    assert_true(email_close_session("after"));
}

static void scenario_check(scenario_t *sc)
{
    assert_int_equal(sc->unknown, 0);
    for (int i = 0; i < N; i++)
        if (sc->counts[i] != 1 || !sc->success[i])
            fail_msg("message %d: %d outcome(s), success %d: %s", i, sc->counts[i],
                     sc->success[i], sc->texts[i]);
    assert_int_equal(sc->outcomes, N);
    if (sc->action != DO_FREE) {
        assert_false(email_close_session(sc->name)); /* already closed */
        assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    }
}

static void run_scenario(enum place place, enum action action)
{
    scenario_t *sc = calloc(1, sizeof *sc);
    assert_non_null(sc);
    sc->place = place;
    sc->action = action;
    sc->name = "from-callback";
    pthread_mutex_init(&sc->lock, NULL);
    pthread_cond_init(&sc->cond, NULL);
    test_server_t s;
    start_smtpd(&s, NULL);

    scenario_start(sc, s.port);
    scenario_queue(sc);
    wait_outcomes(sc);
    scenario_check(sc);
    assert_int_equal(test_spool_wait(&s, N, 5000), N);

    /* waits for the end of a shutdown begun in the callback, or does one (a fresh start) */
    email_shutdown();
    if (place == ON_USE_LOOP) {
        uv_close((uv_handle_t *)&sc->watchdog, NULL);
        uv_run(&sc->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&sc->loop) != 0) {
            uv_walk(&sc->loop, test_print_handle, NULL);
            fail_msg("the library left handles on the caller's loop");
        }
    } else {
        assert_usable(s.port);
        assert_int_equal(test_spool_wait(&s, N + 1, 5000), N + 1);
    }
    email_shutdown();
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    test_server_stop(&s);
    pthread_cond_destroy(&sc->cond);
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

static void test_shutdown_on_loop_thread(void **state)
{
    run_scenario(ON_LOOP_THREAD, DO_SHUTDOWN);
}

static void test_close_on_loop_thread(void **state)
{
    run_scenario(ON_LOOP_THREAD, DO_CLOSE);
}

static void test_free_on_loop_thread(void **state)
{
    run_scenario(ON_LOOP_THREAD, DO_FREE);
}

static void test_shutdown_on_use_loop(void **state)
{
    run_scenario(ON_USE_LOOP, DO_SHUTDOWN);
}

static void test_close_on_use_loop(void **state)
{
    run_scenario(ON_USE_LOOP, DO_CLOSE);
}

static void test_free_on_use_loop(void **state)
{
    run_scenario(ON_USE_LOOP, DO_FREE);
}

static void test_shutdown_in_dispatch(void **state)
{
    run_scenario(ON_DISPATCH, DO_SHUTDOWN);
}

static void test_close_in_dispatch(void **state)
{
    run_scenario(ON_DISPATCH, DO_CLOSE);
}

static void test_free_in_dispatch(void **state)
{
    run_scenario(ON_DISPATCH, DO_FREE);
}

/* ---------------------------------------------------------------------------------------------
 * The log callback
 * ------------------------------------------------------------------------------------------- */

typedef struct logwatch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t expected;        /* where the lines must run (other_thread: anywhere but there) */
    bool other_thread;
    int lines;
    int wrong_thread;
    unsigned long long last_counter;
    int out_of_order;
    bool block_first;          /* the first line waits for `released` */
    bool entered, released;
    atomic_bool *changer_returned;
    bool saw_changer_return;   /* the changer had returned while this callback still ran */
    bool unset_inside;         /* the first line calls email_set_log_callback(NULL, NULL) */
    int unset_rc;
} logwatch_t;

static void logwatch_init(logwatch_t *w, pthread_t expected, bool other_thread)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->expected = expected;
    w->other_thread = other_thread;
}

static void logwatch_destroy(logwatch_t *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static int logwatch_lines(logwatch_t *w)
{
    pthread_mutex_lock(&w->lock);
    int n = w->lines;
    pthread_mutex_unlock(&w->lock);
    return n;
}

static void on_log_line(const char *line, void *user_data)
{
    logwatch_t *w = user_data;
    unsigned long long counter = strtoull(line, NULL, 10);
    pthread_mutex_lock(&w->lock);
    bool first = w->lines++ == 0;
    if (pthread_equal(pthread_self(), w->expected) == w->other_thread)
        w->wrong_thread++;
    if (counter != w->last_counter + 1)
        w->out_of_order++;
    w->last_counter = counter;
    if (first && w->block_first) {
        w->entered = true;
        pthread_cond_broadcast(&w->cond);
        while (!w->released)
            pthread_cond_wait(&w->cond, &w->lock);
        w->saw_changer_return = atomic_load(w->changer_returned);
    }
    pthread_mutex_unlock(&w->lock);
    if (first && w->unset_inside)
        w->unset_rc = email_set_log_callback(NULL, NULL);
}

/* One message, synchronously, on a fresh transporter freed afterwards (every line logged). */
static void send_one(int port)
{
    email_transporter_t *t = test_plain_transporter(port);
    email_message_t *m = make_message("logged");
    test_transporter_send_ok(t, m);
    email_message_free(m);
    email_transporter_free(t);
}

/* By default the lines wait for email_dispatch and run in its thread, numbered from 1; with
 * EMAIL_CALLBACK_LOOP_THREAD they run on the library's thread; lines still waiting when the
 * callback changes never reach the old one nor the new one. */
static void test_log_lines_dispatched(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    email_dispatch();
    logwatch_t w, later;
    logwatch_init(&w, pthread_self(), false);
    assert_int_equal(email_set_log_callback(on_log_line, &w), 0);
    send_one(s.port);
    if (logwatch_lines(&w) != 0)
        fail_msg("%d log line(s) reached the callback before email_dispatch (%d on another "
                 "thread)",
                 w.lines, w.wrong_thread);
    assert_true(email_dispatch() > 5);
    assert_true(w.lines > 5);
    assert_int_equal(w.wrong_thread, 0);
    assert_int_equal(w.out_of_order, 0);

    /* asked for: on the library's thread, at once */
    logwatch_init(&later, pthread_self(), true);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_set_log_callback(on_log_line, &later), 0);
    send_one(s.port);
    assert_true(logwatch_lines(&later) > 5);
    assert_int_equal(later.wrong_thread, 0);
    assert_int_equal(later.out_of_order, 0);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);

    /* lines waiting for email_dispatch belong to the callback that was set */
    int before = w.lines;
    assert_int_equal(email_set_log_callback(on_log_line, &w), 0);
    send_one(s.port);
    int lines_after = logwatch_lines(&later);
    assert_int_equal(email_set_log_callback(on_log_line, &later), 0);
    email_dispatch();
    assert_int_equal(w.lines, before);
    assert_int_equal(logwatch_lines(&later), lines_after);
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);
    logwatch_destroy(&w);
    logwatch_destroy(&later);
    test_server_stop(&s);
}

typedef struct changer {
    atomic_bool returned;
} changer_t;

static void *changer_main(void *arg)
{
    changer_t *c = arg;
    email_set_log_callback(NULL, NULL);
    atomic_store(&c->returned, true); /* the program would free the callback's data here */
    return NULL;
}

typedef struct sender {
    int port;
} sender_t;

static void *sender_main(void *arg)
{
    sender_t *s = arg;
    email_transporter_t *t = test_plain_transporter(s->port);
    email_message_t *m = make_message("sent while the log callback changes");
    email_transporter_send(t, m, NULL);
    email_message_free(m);
    email_transporter_free(t);
    return NULL;
}

/* email_set_log_callback(NULL, NULL) returns only after the running invocation has returned,
 * and the old callback is not called afterwards. */
static void change_while_running(bool loop_thread)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    email_dispatch();
    assert_int_equal(email_set_callback_thread(loop_thread ? EMAIL_CALLBACK_LOOP_THREAD
                                                           : EMAIL_CALLBACK_DISPATCH),
                     0);
    test_dispatcher_t d;
    if (!loop_thread)
        test_dispatcher_start(&d);
    changer_t c;
    atomic_init(&c.returned, false);
    logwatch_t w;
    logwatch_init(&w, pthread_self(), true);
    w.block_first = true;
    w.changer_returned = &c.returned;
    assert_int_equal(email_set_log_callback(on_log_line, &w), 0);
    sender_t snd = {.port = s.port};
    pthread_t sender, changer;
    assert_int_equal(pthread_create(&sender, NULL, sender_main, &snd), 0);

    struct timespec until = test_deadline_in(DEADLINE_MS);
    pthread_mutex_lock(&w.lock);
    while (!w.entered && pthread_cond_timedwait(&w.cond, &w.lock, &until) == 0)
        ;
    bool entered = w.entered;
    pthread_mutex_unlock(&w.lock);
    assert_true(entered);
    assert_int_equal(pthread_create(&changer, NULL, changer_main, &c), 0);
    test_sleep_ms(200); /* time for a changer that does not wait to return */
    pthread_mutex_lock(&w.lock);
    w.released = true;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(changer, NULL);
    int lines_at_return = logwatch_lines(&w);
    pthread_join(sender, NULL);
    if (!loop_thread)
        test_dispatcher_stop(&d);
    email_dispatch();
    assert_false(w.saw_changer_return);
    assert_int_equal(logwatch_lines(&w), lines_at_return);
    assert_int_equal(lines_at_return, 1);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    logwatch_destroy(&w);
    test_server_stop(&s);
}

static void test_log_change_waits_loop_thread(void **state)
{
    change_while_running(true);
}

static void test_log_change_waits_dispatch(void **state)
{
    change_while_running(false);
}

/* From inside the log callback: returns (no deadlock), and the callback is not called again. */
static void unset_inside(bool loop_thread)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    email_dispatch();
    assert_int_equal(email_set_callback_thread(loop_thread ? EMAIL_CALLBACK_LOOP_THREAD
                                                           : EMAIL_CALLBACK_DISPATCH),
                     0);
    logwatch_t w;
    logwatch_init(&w, pthread_self(), loop_thread);
    w.unset_inside = true;
    w.unset_rc = -1;
    assert_int_equal(email_set_log_callback(on_log_line, &w), 0);
    send_one(s.port);
    email_dispatch();
    send_one(s.port);
    email_dispatch();
    assert_int_equal(w.lines, 1);
    assert_int_equal(w.unset_rc, 0);
    assert_int_equal(w.wrong_thread, 0);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    logwatch_destroy(&w);
    test_server_stop(&s);
}

static void test_log_unset_inside_loop_thread(void **state)
{
    unset_inside(true);
}

static void test_log_unset_inside_dispatch(void **state)
{
    unset_inside(false);
}

/* ---------------------------------------------------------------------------------------------
 * Stress: shared names from several threads while the settings change
 * ------------------------------------------------------------------------------------------- */

#define WORKERS 4
#define NAMES 3
#define MAX_QUEUED (WORKERS * 64)

typedef struct stress {
    int port;
    const char *dir;
    int rounds;
    pthread_mutex_t lock;
    uint64_t queued[MAX_QUEUED]; /* asynchronous messages queued, by id */
    int nqueued;
    uint64_t reported[MAX_QUEUED * 2];
    int nreported, unknown;
    atomic_int log_lines;
    atomic_bool stop;
} stress_t;

static void stress_outcome(uint64_t id, const email_status_t *st, void *user_data)
{
    stress_t *x = user_data;
    pthread_mutex_lock(&x->lock);
    if (x->nreported < MAX_QUEUED * 2)
        x->reported[x->nreported++] = id;
    else
        x->unknown++;
    pthread_mutex_unlock(&x->lock);
}

static void stress_log(const char *line, void *user_data)
{
    stress_t *x = user_data;
    atomic_fetch_add(&x->log_lines, 1);
}

/* One operation on a shared name; failures (EEXIST, ENOSESSION) are expected when threads race. */
static void stress_op(stress_t *x, int worker, int round)
{
    char name[16];
    snprintf(name, sizeof name, "shared-%d", (worker + round) % NAMES);
    switch ((worker * 7 + round) % 5) {
    case 0:
    case 1:
        if (email_start_smtp_session(name, NULL, "127.0.0.1", x->port, round % 3 == 0
                                         ? EMAIL_SYNCHRONOUS : EMAIL_ASYNCHRONOUS,
                                     EMAIL_OPTION_DEFAULT))
            email_session_set_callback(name, stress_outcome, x);
        break;
    case 2:
    case 3: {
        email_message_t *m = make_message(name);
        uint64_t id = email_message_id(m);
        pthread_mutex_lock(&x->lock);
        bool room = x->nqueued < MAX_QUEUED;
        if (room)
            x->queued[x->nqueued++] = id; /* before the send: the outcome may come at once */
        pthread_mutex_unlock(&x->lock);
        if (room && !email_send_message(name, m)) {
            pthread_mutex_lock(&x->lock);
            x->nqueued--; /* never queued (ids are only added at the end, by this thread) */
            for (int i = 0; i < x->nqueued; i++)
                if (x->queued[i] == id)
                    x->queued[i] = x->queued[x->nqueued];
            pthread_mutex_unlock(&x->lock);
        }
        email_message_free(m);
        break;
    }
    default:
        email_close_session(name);
    }
}

static void *stress_worker(void *arg)
{
    stress_t *x = ((void **)arg)[0];
    int worker = (int)(intptr_t)((void **)arg)[1];
    for (int r = 0; r < x->rounds; r++)
        stress_op(x, worker, r);
    return NULL;
}

static void *stress_toggler(void *arg)
{
    stress_t *x = arg;
    char log[512], ca[512];
    snprintf(log, sizeof log, "%s/global.log", x->dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", x->dir);
    for (int i = 0; !atomic_load(&x->stop); i++) {
        email_set_log(i % 2 ? log : NULL);
        email_set_log_callback(i % 3 ? stress_log : NULL, x);
        email_set_timeout(5 + i % 20);
        email_set_ca_file(i % 2 ? NULL : ca);
        test_sleep_ms(1);
    }
    email_set_log(NULL);
    email_set_log_callback(NULL, NULL);
    email_set_ca_file(NULL);
    return NULL;
}

/* Every asynchronous message that was queued is reported once (the sessions it went on had
 * the callback set, or not yet: then it has its status only). */
static void stress_check(stress_t *x)
{
    for (int i = 0; i < x->nreported; i++) {
        int seen = 0, known = 0;
        for (int j = 0; j < x->nreported; j++)
            seen += x->reported[j] == x->reported[i];
        for (int j = 0; j < x->nqueued; j++)
            known += x->queued[j] == x->reported[i];
        if (seen != 1 || known != 1)
            fail_msg("message %llu: %d outcome(s), queued %d time(s)",
                     (unsigned long long)x->reported[i], seen, known);
    }
    for (int i = 0; i < x->nqueued; i++) {
        int st = email_message_status(x->queued[i]);
        if (st != EMAIL_SENT && st != EMAIL_ERROR)
            fail_msg("message %llu still %d after the shutdown", (unsigned long long)x->queued[i],
                     st);
    }
    assert_int_equal(x->unknown, 0);
}

static void test_stress(void **state)
{
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    size_t calen;
    char *pem = test_read_file("/etc/ssl/certs/ca-certificates.crt", &calen);
    assert_int_equal(test_write_file(ca, pem ? pem : "", pem ? calen : 0), 0);
    free(pem);

    stress_t *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->port = sink.port;
    x->dir = dir;
    x->rounds = test_under_valgrind() ? 10 : 40;
    pthread_mutex_init(&x->lock, NULL);
    test_dispatcher_t d;
    test_dispatcher_start(&d);
    pthread_t toggler, workers[WORKERS];
    void *args[WORKERS][2];
    assert_int_equal(pthread_create(&toggler, NULL, stress_toggler, x), 0);
    for (int i = 0; i < WORKERS; i++) {
        args[i][0] = x;
        args[i][1] = (void *)(intptr_t)i;
        assert_int_equal(pthread_create(&workers[i], NULL, stress_worker, args[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i], NULL);
    atomic_store(&x->stop, true);
    pthread_join(toggler, NULL);
    email_shutdown(); /* closes what is left open, every outcome reported */
    test_dispatcher_stop(&d);
    email_dispatch();
    pthread_mutex_lock(&x->lock);
    stress_check(x);
    print_message("stress: %d messages queued, %d outcomes, %d log lines\n", x->nqueued,
                  x->nreported, atomic_load(&x->log_lines));
    pthread_mutex_unlock(&x->lock);
    pthread_mutex_destroy(&x->lock);
    free(x);
    test_rmtree(dir);
    free(dir);
    test_server_stop(&sink);
}

/* Nothing of the test left on the library's loop, then a fresh start for the next one. */
static int teardown(void **state)
{
    assert_loop_idle();
    email_shutdown();
    email_set_callback_thread(EMAIL_CALLBACK_DISPATCH);
    email_set_log_callback(NULL, NULL);
    email_dispatch();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_shutdown_on_loop_thread, teardown),
        cmocka_unit_test_teardown(test_close_on_loop_thread, teardown),
        cmocka_unit_test_teardown(test_free_on_loop_thread, teardown),
        cmocka_unit_test_teardown(test_shutdown_on_use_loop, teardown),
        cmocka_unit_test_teardown(test_close_on_use_loop, teardown),
        cmocka_unit_test_teardown(test_free_on_use_loop, teardown),
        cmocka_unit_test_teardown(test_shutdown_in_dispatch, teardown),
        cmocka_unit_test_teardown(test_close_in_dispatch, teardown),
        cmocka_unit_test_teardown(test_free_in_dispatch, teardown),
        cmocka_unit_test_teardown(test_log_lines_dispatched, teardown),
        cmocka_unit_test_teardown(test_log_change_waits_loop_thread, teardown),
        cmocka_unit_test_teardown(test_log_change_waits_dispatch, teardown),
        cmocka_unit_test_teardown(test_log_unset_inside_loop_thread, teardown),
        cmocka_unit_test_teardown(test_log_unset_inside_dispatch, teardown),
        cmocka_unit_test_teardown(test_stress, teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* the caller's loop runs on this thread (email_use_loop) */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
