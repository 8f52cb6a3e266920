/*
 * Asynchronous sessions against real servers on 127.0.0.1: thousands of messages over several
 * named sessions to postfix's smtp-sink, callbacks through the dispatch descriptor (in the test
 * thread or a second thread) or on the library thread, email_transporter_send_async and
 * email_message_status, faulty servers (scripted.py: drops, 421 and stalls at every step),
 * a retry that reaches a working server, cancel, progress, keep-alive, closing and shutting
 * down with messages queued, and a thousand concurrent sessions.
 *
 * Every test counts the callbacks per message id: each queued message must get exactly one
 * outcome. Waits are bounded by deadlines: a hang fails the test instead of blocking it.
 */
#define _GNU_SOURCE /* memmem */
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

#define FROM "a@example.org"
#define TO "b@example.org"

/* SIGPIPEs raised in the process (see on_sigpipe). */
static atomic_int sigpipes;

/* Under valgrind (make check-valgrind) everything is slower: fewer messages, longer waits. */
static bool under_valgrind;

static int slack(int ms)
{
    return under_valgrind ? ms * 10 : ms;
}

/* ---------------------------------------------------------------------------------------------
 * Outcome tracker: one slot per queued message id, filled by the completion callback
 * (which may run on any thread, so it only records; the test thread asserts).
 * ------------------------------------------------------------------------------------------- */

typedef struct outcome {
    uint64_t id;        /* 0: free slot */
    int index;          /* the test's number for the message */
    int count;          /* callbacks received for this id */
    bool success;
    int error;
    int code;           /* SMTP reply code in the status */
    size_t rejected;
    char text[512];
    pthread_t thread;   /* where the (first) callback ran */
    int registry_in_cb; /* email_message_status(id) seen inside the callback */
} outcome_t;

typedef struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    outcome_t *slots;
    size_t cap;
    int registered;
    int done;           /* registered ids with at least one callback */
    int calls;          /* every callback */
    int unknown;        /* callbacks for ids that were never registered */
    int duplicates;     /* callbacks beyond the first for an id */
    uint64_t unknown_id;
    int starts_failed;  /* non-blocking starts that reported a failure */
} tracker_t;

static void tracker_init(tracker_t *tr, size_t expected)
{
    memset(tr, 0, sizeof *tr);
    pthread_mutex_init(&tr->lock, NULL);
    pthread_cond_init(&tr->cond, NULL);
    tr->cap = 64;
    while (tr->cap < expected * 2 + 16)
        tr->cap *= 2;
    tr->slots = calloc(tr->cap, sizeof *tr->slots);
    assert_non_null(tr->slots);
}

static void tracker_free(tracker_t *tr)
{
    free(tr->slots);
    tr->slots = NULL;
    pthread_cond_destroy(&tr->cond);
    pthread_mutex_destroy(&tr->lock);
}

/* The slot of id (lock held): its own, or the free one where it would go. */
static outcome_t *tracker_slot(tracker_t *tr, uint64_t id)
{
    size_t i = (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (tr->cap - 1);
    while (tr->slots[i].id && tr->slots[i].id != id)
        i = (i + 1) & (tr->cap - 1);
    return &tr->slots[i];
}

static void tracker_add(tracker_t *tr, uint64_t id, int index)
{
    assert_true(id != 0);
    pthread_mutex_lock(&tr->lock);
    outcome_t *o = tracker_slot(tr, id);
    bool fresh = o->id == 0 && (size_t)tr->registered * 2 < tr->cap;
    if (fresh) {
        o->id = id;
        o->index = index;
        tr->registered++;
    }
    pthread_mutex_unlock(&tr->lock);
    if (!fresh)
        fail_msg("message id %llu registered twice (or the tracker is full)",
                 (unsigned long long)id);
}

/* A copy of id's outcome (the test thread reads it after the callbacks). */
static outcome_t tracker_get(tracker_t *tr, uint64_t id)
{
    pthread_mutex_lock(&tr->lock);
    outcome_t o = *tracker_slot(tr, id);
    pthread_mutex_unlock(&tr->lock);
    if (o.id != id)
        fail_msg("message id %llu was never registered", (unsigned long long)id);
    return o;
}

static int tracker_done(tracker_t *tr)
{
    pthread_mutex_lock(&tr->lock);
    int d = tr->done;
    pthread_mutex_unlock(&tr->lock);
    return d;
}

/* The completion callback of every test: user_data is the tracker. */
static void on_outcome(uint64_t id, const email_status_t *st, void *user_data)
{
    tracker_t *tr = user_data;
    int reg = email_message_status(id);
    pthread_mutex_lock(&tr->lock);
    tr->calls++;
    outcome_t *o = tracker_slot(tr, id);
    if (o->id != id || id == 0) {
        tr->unknown++;
        tr->unknown_id = id;
    } else if (o->count++ > 0) {
        tr->duplicates++;
    } else {
        tr->done++;
        o->success = st->success;
        o->error = st->error;
        o->code = st->status;
        o->rejected = st->rejected;
        snprintf(o->text, sizeof o->text, "%s", st->status_text);
        o->thread = pthread_self();
        o->registry_in_cb = reg;
    }
    pthread_cond_broadcast(&tr->cond);
    pthread_mutex_unlock(&tr->lock);
}

/* Dispatches once if the descriptor is readable within wait_ms. */
static void dispatch_ready(int wait_ms)
{
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    assert_true(p.fd >= 0);
    if (poll(&p, 1, wait_ms) > 0)
        email_dispatch();
}

/*
 * Runs email_dispatch() each time email_dispatch_fd() becomes readable (never otherwise: a
 * descriptor that does not signal makes this time out), until `want` messages of tr have an
 * outcome or timeout_ms passes. Returns how many have one.
 */
static int dispatch_until(tracker_t *tr, int want, int timeout_ms)
{
    int fd = email_dispatch_fd();
    assert_true(fd >= 0);
    long long deadline = test_now_ms() + slack(timeout_ms);
    for (;;) {
        int done = tracker_done(tr);
        if (done >= want)
            return done;
        long long left = deadline - test_now_ms();
        if (left <= 0)
            return done;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left > 200 ? 200 : (int)left) > 0)
            email_dispatch();
    }
}

/* For callbacks that run on another thread: waits on the tracker's condition variable. */
static int wait_outcomes(tracker_t *tr, int want, int timeout_ms)
{
    struct timespec until = test_deadline_in(slack(timeout_ms));
    pthread_mutex_lock(&tr->lock);
    while (tr->done < want && pthread_cond_timedwait(&tr->cond, &tr->lock, &until) == 0)
        ;
    int done = tr->done;
    pthread_mutex_unlock(&tr->lock);
    return done;
}

/* No callback for an unknown id, none twice (after a last dispatch of late arrivals). */
static void assert_no_strays(tracker_t *tr)
{
    email_dispatch();
    pthread_mutex_lock(&tr->lock);
    int unknown = tr->unknown, dups = tr->duplicates;
    uint64_t uid = tr->unknown_id;
    pthread_mutex_unlock(&tr->lock);
    if (unknown)
        fail_msg("%d callback(s) for ids never queued (e.g. %llu)", unknown,
                 (unsigned long long)uid);
    if (dups)
        fail_msg("%d duplicate callback(s): a message got more than one outcome", dups);
}

/* Lists the ids that have no outcome yet (for failure messages). */
static void report_missing(tracker_t *tr, const char *what)
{
    pthread_mutex_lock(&tr->lock);
    int shown = 0, missing = 0;
    for (size_t i = 0; i < tr->cap; i++) {
        if (tr->slots[i].id && tr->slots[i].count == 0) {
            if (shown++ < 10)
                fprintf(stderr, "%s: message %d (id %llu) has no outcome (status %d)\n", what,
                        tr->slots[i].index, (unsigned long long)tr->slots[i].id,
                        email_message_status(tr->slots[i].id));
            missing++;
        }
    }
    pthread_mutex_unlock(&tr->lock);
    if (missing)
        fprintf(stderr, "%s: %d message(s) without an outcome\n", what, missing);
}

/* ---------------------------------------------------------------------------------------------
 * Messages and sessions
 * ------------------------------------------------------------------------------------------- */

static email_message_t *make_message(const char *subject)
{
    return test_message(FROM, TO, subject, "Hello,\n.leading dot\nBye.\n");
}

static void on_started(const char *user, const email_status_t *st, void *user_data)
{
    tracker_t *tr = user_data;
    pthread_mutex_lock(&tr->lock);
    tr->starts_failed += !st->success;
    pthread_mutex_unlock(&tr->lock);
}

static bool start_failed(tracker_t *tr)
{
    pthread_mutex_lock(&tr->lock);
    bool failed = tr->starts_failed > 0;
    pthread_mutex_unlock(&tr->lock);
    return failed;
}

/* A non-blocking start: what is queued at once waits for the session, and shares the fate of
 * its start when that fails. */
static void start_async(const char *name, int port, tracker_t *tr)
{
    if (!email_start_smtp_session_async(name, NULL, "127.0.0.1", port, EMAIL_ASYNCHRONOUS,
                                        EMAIL_OPTION_DEFAULT, on_started, tr))
        fail_msg("start %s: %s", name, email_error_info());
    assert_int_equal(email_session_set_callback(name, on_outcome, tr), 0);
}

/* Queues m on the named session, registering its id first (the callback may come at once). */
static uint64_t queue_message(const char *name, tracker_t *tr, int index, email_message_t *m)
{
    uint64_t id = email_message_id(m);
    tracker_add(tr, id, index);
    if (!email_send_message(name, m))
        fail_msg("%s: message %d was not queued: %s", name, index, email_error_info());
    return id;
}

static uint64_t queue_simple(const char *name, tracker_t *tr, int index, const char *subject)
{
    email_message_t *m = make_message(subject);
    uint64_t id = queue_message(name, tr, index, m);
    email_message_free(m);
    return id;
}

static void close_session(const char *name)
{
    if (!email_close_session(name))
        fail_msg("close %s: %s", name, email_error_info());
}

/* A transporter for plain SMTP on 127.0.0.1:port. */
static email_transporter_t *plain_transporter(int port, bool keep_alive, int timeout)
{
    email_server_t srv;
    test_plain_server(&srv, port);
    srv.keep_alive = keep_alive;
    srv.connection_timeout = timeout;
    srv.send_timeout = timeout;
    email_transporter_t *t = email_transporter_new(&srv);
    if (!t)
        fail_msg("transporter: %s", email_error_info());
    return t;
}

/* smtp-sink's counters (-c): the last value of "name=" ("sess", "quit", "mesg"), or -1. */
static int sink_counter(const test_server_t *s, const char *name)
{
    char path[512], key[32];
    snprintf(path, sizeof path, "%s/counters", s->dir);
    snprintf(key, sizeof key, "%s=", name);
    char *text = test_read_file(path, NULL);
    if (!text)
        return -1;
    int v = 0;
    for (const char *p = text; (p = strstr(p, key)) != NULL; p += strlen(key))
        v = atoi(p + strlen(key));
    free(text);
    return v;
}

/*
 * Sessions smtp-sink counted before the test's own: the harness's probe that checked it
 * listens is one (it connects and closes). Waits for it, then returns the count.
 */
static int sink_sessions_base(const test_server_t *s)
{
    long long deadline = test_now_ms() + 2000;
    int v;
    while ((v = sink_counter(s, "sess")) < 1 && test_now_ms() < deadline)
        test_sleep_ms(10);
    test_sleep_ms(50);
    return sink_counter(s, "sess") < 0 ? 0 : sink_counter(s, "sess");
}

static int sink_counter_wait(const test_server_t *s, const char *name, int want, int timeout_ms)
{
    long long deadline = test_now_ms() + timeout_ms;
    int v;
    while ((v = sink_counter(s, name)) < want && test_now_ms() < deadline)
        test_sleep_ms(20);
    return v;
}

/* Occurrences of needle in the first len bytes of hay. */
static int count_in(const char *hay, size_t len, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    const char *p = hay, *end = hay + len;
    while (p < end && (p = memmem(p, (size_t)(end - p), needle, nl)) != NULL) {
        n++;
        p += nl;
    }
    return n;
}

/* Waits until scripted.py's record holds needle; false after timeout_ms. */
static bool record_wait(const test_server_t *s, const char *needle, int timeout_ms)
{
    long long deadline = test_now_ms() + timeout_ms;
    for (;;) {
        size_t len = 0;
        char *rec = test_scripted_record(s, &len);
        bool found = rec && count_in(rec, len, needle) > 0;
        free(rec);
        if (found)
            return true;
        if (test_now_ms() >= deadline)
            return false;
        test_sleep_ms(20);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Thousands of messages over several sessions
 * ------------------------------------------------------------------------------------------- */

#define MANY_MAX 3000
#define MANY_SESSIONS 4

static void many_messages(bool dispatch_thread)
{
    const int many = under_valgrind ? MANY_MAX / 10 : MANY_MAX;
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    email_dispatch(); /* nothing of an earlier test left */
    tracker_t tr;
    tracker_init(&tr, many);
    char names[MANY_SESSIONS][32];
    for (int i = 0; i < MANY_SESSIONS; i++) {
        snprintf(names[i], sizeof names[i], "many-%d", i);
        start_async(names[i], sink.port, &tr);
    }
    test_dispatcher_t d;
    if (dispatch_thread)
        test_dispatcher_start(&d);

    uint64_t *ids = calloc(many, sizeof *ids);
    assert_non_null(ids);
    long long t0 = test_now_ms();
    for (int i = 0; i < many; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "many %d", i);
        ids[i] = queue_simple(names[i % MANY_SESSIONS], &tr, i, subject);
        if (!dispatch_thread && i % 100 == 99)
            dispatch_ready(0); /* outcomes come in while messages are still being queued */
    }
    long long queued = test_now_ms();
    int done = dispatch_thread ? wait_outcomes(&tr, many, 30000)
                               : dispatch_until(&tr, many, 30000);
    long long finished = test_now_ms();
    if (dispatch_thread)
        test_dispatcher_stop(&d);
    if (done != many)
        report_missing(&tr, "many");
    assert_int_equal(done, many);
    print_message("%d messages over %d sessions: queued in %lld ms, all outcomes after %lld ms "
                  "(%s)\n",
                  many, MANY_SESSIONS, queued - t0, finished - t0,
                  dispatch_thread ? "dispatch thread" : "dispatch in the test thread");
    for (int i = 0; i < MANY_SESSIONS; i++)
        close_session(names[i]);
    assert_no_strays(&tr);

    pthread_t want = dispatch_thread ? d.thread : pthread_self();
    for (int i = 0; i < many; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        if (o.count != 1 || !o.success)
            fail_msg("message %d: %d outcome(s), success %d, %s: %s", i, o.count, o.success,
                     email_error_name(o.error), o.text);
        assert_int_equal(o.code, 250);
        if (!pthread_equal(o.thread, want))
            fail_msg("message %d: callback ran on the wrong thread", i);
        /* the status is final before its callback runs */
        assert_int_equal(o.registry_in_cb, EMAIL_SENT);
        assert_int_equal(email_message_status(ids[i]), EMAIL_SENT);
    }
    /* the sink received each message once: exactly many, none lost, none sent twice */
    assert_int_equal(test_sink_wait(&sink, many, 10000), many);
    test_sleep_ms(200);
    assert_int_equal(test_sink_count(&sink), many);
    free(ids);
    tracker_free(&tr);
    test_server_stop(&sink);
}

static void test_many_dispatch_poll(void **state)
{
    many_messages(false);
}

static void test_many_dispatch_thread(void **state)
{
    many_messages(true);
}

/* ---------------------------------------------------------------------------------------------
 * Callbacks on the library thread
 * ------------------------------------------------------------------------------------------- */

static void test_callback_loop_thread(void **state)
{
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    email_dispatch();
    assert_int_equal(email_set_callback_thread(7), EMAIL_EINVAL);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    tracker_t tr;
    tracker_init(&tr, 40);
    start_async("loop-thread", sink.port, &tr);
    const int n = 20;
    uint64_t ids[20];
    for (int i = 0; i < n; i++)
        ids[i] = queue_simple("loop-thread", &tr, i, "on the loop thread");
    /* nobody dispatches: the callbacks come by themselves */
    int done = wait_outcomes(&tr, n, 10000);
    if (done != n)
        report_missing(&tr, "loop thread");
    assert_int_equal(done, n);
    /* and nothing went through the dispatch queue */
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(email_dispatch(), 0);
    outcome_t first = tracker_get(&tr, ids[0]);
    for (int i = 0; i < n; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        assert_int_equal(o.count, 1);
        assert_true(o.success);
        if (pthread_equal(o.thread, pthread_self()))
            fail_msg("message %d: callback ran on the caller's thread", i);
        if (!pthread_equal(o.thread, first.thread))
            fail_msg("message %d: callbacks ran on more than one thread", i);
    }
    close_session("loop-thread");
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);

    /* back to the default: the next outcome waits for email_dispatch() in this thread */
    tracker_t tr2;
    tracker_init(&tr2, 4);
    start_async("dispatch-again", sink.port, &tr2);
    uint64_t id = queue_simple("dispatch-again", &tr2, 0, "dispatched again");
    assert_int_equal(dispatch_until(&tr2, 1, 10000), 1);
    outcome_t o = tracker_get(&tr2, id);
    assert_true(o.success);
    assert_true(pthread_equal(o.thread, pthread_self()));
    close_session("dispatch-again");
    assert_no_strays(&tr);
    assert_no_strays(&tr2);
    assert_int_equal(test_sink_wait(&sink, n + 1, 5000), n + 1);
    tracker_free(&tr);
    tracker_free(&tr2);
    test_server_stop(&sink);
}

/* ---------------------------------------------------------------------------------------------
 * email_transporter_send_async and email_message_status
 * ------------------------------------------------------------------------------------------- */

#define GREET "send 220 scripted ESMTP\n"
#define EHLO_OK "expect EHLO .*\nsend 250 scripted\n"
#define EHLO_PIPELINING "expect EHLO .*\nsend 250-scripted\\r\\n250 PIPELINING\n"
#define MAIL "expect MAIL FROM:<a@example.org>.*\n"
#define RCPT "expect RCPT TO:<b@example.org>\n"
#define DATA "expect DATA\n"
#define TXN_OK MAIL "send 250 ok\n" RCPT "send 250 ok\n" DATA "send 354 go\nexpect-data\n"      \
                    "send 250 2.0.0 queued\n"

static void test_send_async_status(void **state)
{
    test_server_t s;
    const char *script = GREET EHLO_OK
        MAIL "sleep 1.5\n" /* the first message stays pending meanwhile */
        "send 250 ok\n" RCPT "send 250 ok\n" DATA "send 354 go\nexpect-data\n"
        "send 250 2.0.0 queued as A1\n"
        MAIL "send 250 ok\n" RCPT "send 550 5.1.1 no such user\n"
        "expect RSET\nsend 250 ok\n"
        "expect QUIT\nsend 221 bye\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_dispatch();
    email_transporter_t *t = plain_transporter(s.port, true, 10);
    tracker_t tr;
    tracker_init(&tr, 4);

    email_message_t *m0 = make_message("async 0");
    email_message_t *m1 = make_message("async 1");
    uint64_t id0 = email_message_id(m0), id1 = email_message_id(m1), got = 0;
    /* never queued: not found */
    assert_int_equal(email_message_status(id0), EMAIL_ENOTFOUND);
    tracker_add(&tr, id0, 0);
    tracker_add(&tr, id1, 1);
    assert_int_equal(email_transporter_send_async(t, m0, on_outcome, &tr, &got), 0);
    assert_true(got == id0);
    assert_int_equal(email_transporter_send_async(t, m1, on_outcome, &tr, NULL), 0);
    /* the caller may free its message at once: it was copied */
    email_message_free(m0);
    email_message_free(m1);
    assert_int_equal(email_message_status(id0), EMAIL_PENDING);
    assert_int_equal(email_message_status(id1), EMAIL_PENDING);
    test_sleep_ms(500);
    assert_int_equal(email_message_status(id0), EMAIL_PENDING); /* the server stalls */
    assert_int_equal(tracker_done(&tr), 0);

    int done = dispatch_until(&tr, 2, 10000);
    if (done != 2)
        report_missing(&tr, "send_async");
    assert_int_equal(done, 2);
    outcome_t o0 = tracker_get(&tr, id0), o1 = tracker_get(&tr, id1);
    assert_true(o0.success);
    assert_int_equal(o0.error, 0);
    assert_int_equal(o0.code, 250);
    assert_non_null(strstr(o0.text, "queued as A1"));
    assert_int_equal(email_message_status(id0), EMAIL_SENT);
    assert_false(o1.success);
    assert_int_equal(o1.error, EMAIL_ERECIPIENTS);
    assert_int_equal(o1.code, 550);
    assert_int_equal(o1.rejected, 1);
    assert_int_equal(email_message_status(id1), EMAIL_ERROR);

    /* an id that was never queued, and no id at all */
    email_message_t *never = make_message("never queued");
    assert_int_equal(email_message_status(email_message_id(never)), EMAIL_ENOTFOUND);
    email_message_free(never);
    assert_int_equal(email_message_status(0), EMAIL_ENOTFOUND);
    assert_int_equal(email_message_status(UINT64_MAX), EMAIL_ENOTFOUND);

    /* an invalid message is refused at once, nothing queued */
    email_message_t *bad = email_message_new();
    assert_int_equal(email_transporter_send_async(t, bad, on_outcome, &tr, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_status(email_message_id(bad)), EMAIL_ENOTFOUND);
    email_message_free(bad);

    email_transporter_free(t);
    assert_no_strays(&tr);
    assert_int_equal(test_server_wait(&s, 5000), 0); /* the whole script, QUIT included */
    tracker_free(&tr);
    test_server_stop(&s);
}

/* ---------------------------------------------------------------------------------------------
 * Faulty servers
 * ------------------------------------------------------------------------------------------- */

enum want {
    W_SENT,     /* delivered */
    W_CONN,     /* not delivered, a connection error (ECLOSED, or ECONNECT from the retry) */
    W_UNKNOWN,  /* end of data sent, never answered: EMAIL_EUNKNOWN */
    W_TIMEOUT,  /* the session never got ready: EMAIL_ETIMEDOUT */
    W_421       /* the server's 421 is the answer: not delivered, status 421, not EUNKNOWN */
};

static const char *want_name(enum want w)
{
    static const char *names[] = {"SENT", "connection error", "EUNKNOWN", "ETIMEDOUT",
                                  "421 refusal"};
    return names[w];
}

#define FAULT_MESSAGES 3

typedef struct fault {
    const char *name;
    const char *script;
    bool big_first;    /* message 0 is far larger than the socket buffers */
    int timeout;       /* email_set_timeout before the session starts */
    bool stall;        /* the server is still sleeping at the end: do not wait for it */
    enum want want[FAULT_MESSAGES];
} fault_t;

/* After the session is ready, one full transaction up to DATA's 354. */
#define UP_TO_354 MAIL "send 250 ok\n" RCPT "send 250 ok\n" DATA "send 354 go\n"

static const fault_t faults[] = {
    /* a short sleep first when the fault comes before the session is ready: the three messages
       are queued by then, so they all share that session's fate */
    {"drop after greeting", "sleep 0.3\n" GREET "close\n", false, 5, false,
     {W_CONN, W_CONN, W_CONN}},
    {"drop after EHLO", "sleep 0.3\n" GREET "expect EHLO .*\nclose\n", false, 5, false,
     {W_CONN, W_CONN, W_CONN}},
    {"drop after MAIL", GREET EHLO_OK MAIL "close\n", false, 5, false, {W_CONN, W_CONN, W_CONN}},
    {"drop after RCPT", GREET EHLO_OK MAIL "send 250 ok\n" RCPT "close\n", false, 5, false,
     {W_CONN, W_CONN, W_CONN}},
    {"drop after DATA", GREET EHLO_OK MAIL "send 250 ok\n" RCPT "send 250 ok\n" DATA "close\n",
     false, 5, false, {W_CONN, W_CONN, W_CONN}},
    {"drop in the body", GREET EHLO_OK UP_TO_354 "expect-bytes 4096\nclose\n", true, 5, false,
     {W_CONN, W_CONN, W_CONN}},
    {"drop after end of data", GREET EHLO_OK UP_TO_354 "expect-data\nclose\n", false, 5, false,
     {W_UNKNOWN, W_CONN, W_CONN}},
    {"drop after the second end of data", GREET EHLO_OK TXN_OK UP_TO_354 "expect-data\nclose\n",
     false, 5, false, {W_SENT, W_UNKNOWN, W_CONN}},
    {"421 greeting", "sleep 0.3\nsend 421 4.3.2 not now\nclose\n", false, 5, false,
     {W_421, W_421, W_421}},
    {"421 after EHLO", "sleep 0.3\n" GREET "expect EHLO .*\nsend 421 4.3.2 bye\nclose\n", false,
     5, false, {W_421, W_421, W_421}},
    {"421 after MAIL", GREET EHLO_OK MAIL "send 421 4.3.2 bye\nclose\n", false, 5, false,
     {W_CONN, W_CONN, W_CONN}},
    {"421 after RCPT", GREET EHLO_OK MAIL "send 250 ok\n" RCPT "send 421 4.3.2 bye\nclose\n",
     false, 5, false, {W_CONN, W_CONN, W_CONN}},
    {"421 after DATA",
     GREET EHLO_OK MAIL "send 250 ok\n" RCPT "send 250 ok\n" DATA "send 421 4.3.2 bye\nclose\n",
     false, 5, false, {W_CONN, W_CONN, W_CONN}},
    {"421 in the body", GREET EHLO_OK UP_TO_354 "expect-bytes 4096\nsend 421 4.3.2 bye\nclose\n",
     true, 5, false, {W_CONN, W_CONN, W_CONN}},
    {"421 after end of data", GREET EHLO_OK UP_TO_354 "expect-data\nsend 421 4.3.2 bye\nclose\n",
     false, 5, false, {W_421, W_CONN, W_CONN}},
    {"stall before greeting", "sleep 4\n", false, 1, true, {W_TIMEOUT, W_TIMEOUT, W_TIMEOUT}},
    {"stall after MAIL", GREET EHLO_OK MAIL "sleep 4\n", false, 1, true,
     {W_CONN, W_CONN, W_CONN}},
    {"stall after end of data", GREET EHLO_OK UP_TO_354 "expect-data\nsleep 4\n", false, 1, true,
     {W_UNKNOWN, W_CONN, W_CONN}},
    /* pipelining: the second message's MAIL/RCPT/DATA must come right behind the first one's
       end of data, before its reply (the script waits for them before answering) */
    {"pipelined, drop after the second end of data",
     GREET EHLO_PIPELINING MAIL RCPT DATA "send 250 ok\\r\\n250 ok\\r\\n354 go\n"
     "expect-data\n" MAIL RCPT DATA "send 250 ok\\r\\n250 ok\\r\\n250 ok\\r\\n354 go\n"
     "expect-data\nclose\n",
     false, 5, false, {W_SENT, W_UNKNOWN, W_CONN}},
};

static char *big_data;
#define BIG_SIZE (12 * 1024 * 1024)

static email_message_t *fault_message(int scenario, int i, bool big)
{
    char subject[96];
    snprintf(subject, sizeof subject, "fault %d m%d", scenario, i);
    email_message_t *m = make_message(subject);
    if (big) {
        if (!big_data) {
            big_data = malloc(BIG_SIZE);
            assert_non_null(big_data);
            for (size_t k = 0; k < BIG_SIZE; k++)
                big_data[k] = (char)(k * 2654435761u >> 13);
        }
        assert_int_equal(email_message_add_attachment_data(m, big_data, BIG_SIZE, "big.bin",
                                                           "application/octet-stream"),
                         0);
    }
    return m;
}

static void check_outcome(const fault_t *f, int i, const outcome_t *o)
{
    enum want w = f->want[i];
    bool ok;
    switch (w) {
    case W_SENT:
        ok = o->success && o->error == 0;
        break;
    case W_CONN:
        ok = !o->success && (o->error == EMAIL_ECLOSED || o->error == EMAIL_ECONNECT);
        break;
    case W_UNKNOWN:
        ok = !o->success && o->error == EMAIL_EUNKNOWN;
        break;
    case W_TIMEOUT:
        ok = !o->success && o->error == EMAIL_ETIMEDOUT;
        break;
    case W_421:
        ok = !o->success && o->code == 421 &&
             (o->error == EMAIL_ECLOSED || o->error == EMAIL_ESERVER);
        break;
    default:
        ok = false;
    }
    if (!ok)
        fail_msg("%s: message %d: want %s, got success %d %s (status %d): %s", f->name, i,
                 want_name(w), o->success, email_error_name(o->error), o->code, o->text);
    if (!o->success && !o->text[0])
        fail_msg("%s: message %d failed without a reason", f->name, i);
    int reg = email_message_status(o->id);
    if (reg != (w == W_SENT ? EMAIL_SENT : EMAIL_ERROR))
        fail_msg("%s: message %d: email_message_status %d", f->name, i, reg);
}

static void run_fault(int k)
{
    const fault_t *f = &faults[k];
    test_server_t s;
    const char *args[] = {"--timeout", "5", NULL};
    assert_int_equal(test_scripted_start(&s, f->script, args), 0);
    email_dispatch();
    int old = email_get_timeout();
    email_set_timeout(f->timeout);
    tracker_t tr;
    tracker_init(&tr, FAULT_MESSAGES);
    char name[32];
    snprintf(name, sizeof name, "fault-%d", k);
    start_async(name, s.port, &tr);
    email_set_timeout(old); /* sessions keep the timeout they started with */
    uint64_t ids[FAULT_MESSAGES];
    for (int i = 0; i < FAULT_MESSAGES; i++) {
        email_message_t *m = fault_message(k, i, f->big_first && i == 0);
        ids[i] = queue_message(name, &tr, i, m);
        email_message_free(m);
    }
    long long t0 = test_now_ms();
    /* bounded: each message needs at most one timeout (their retries are refused at once) */
    int limit_ms = f->timeout * 1000 + slack(2500);
    int done = dispatch_until(&tr, FAULT_MESSAGES, limit_ms + 5000);
    long long elapsed = test_now_ms() - t0;
    if (done != FAULT_MESSAGES) {
        report_missing(&tr, f->name);
        fail_msg("%s: only %d of %d messages have an outcome after %lld ms", f->name, done,
                 FAULT_MESSAGES, elapsed);
    }
    if (elapsed > limit_ms)
        fail_msg("%s: the outcomes took %lld ms (timeout %d s)", f->name, elapsed, f->timeout);
    for (int i = 0; i < FAULT_MESSAGES; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        check_outcome(f, i, &o);
    }
    long long c0 = test_now_ms();
    if (start_failed(&tr)) { /* the failed start freed the name */
        assert_false(email_close_session(name));
        assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    } else {
        close_session(name);
    }
    if (test_now_ms() - c0 > slack(2000))
        fail_msg("%s: closing the failed session took %lld ms", f->name, test_now_ms() - c0);
    assert_no_strays(&tr);

    /* what the server saw: each message at most once, never resent after its end of data */
    if (!f->stall) {
        int st = test_server_wait(&s, 5000);
        if (st != 0)
            fail_msg("%s: scripted.py exited with %d (a step of the script failed)", f->name, st);
    }
    size_t len = 0;
    char *rec = test_scripted_record(&s, &len);
    for (int i = 0; rec && i < FAULT_MESSAGES; i++) {
        char subject[96];
        snprintf(subject, sizeof subject, "Subject: fault %d m%d\r\n", k, i);
        if (count_in(rec, len, subject) > 1)
            fail_msg("%s: message %d went to the server twice", f->name, i);
    }
    int eods = rec ? count_in(rec, len, "\r\n.\r\n") : 0;
    int reached = 0;
    for (int i = 0; i < FAULT_MESSAGES; i++)
        reached += f->want[i] == W_SENT || f->want[i] == W_UNKNOWN || f->want[i] == W_421;
    if (eods > reached)
        fail_msg("%s: %d ends of data for %d message(s) that could reach it", f->name, eods,
                 reached);
    free(rec);
    tracker_free(&tr);
    test_server_stop(&s);
}

static void test_faulty_servers(void **state)
{
    for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++) {
        /* a reset in the middle of a body: a few times, since it depends on timing whether
           the library writes again into the reset socket (see check_sigpipe) */
        int times = faults[k].big_first ? 3 : 1;
        for (int r = 0; r < times; r++) {
            long long t0 = test_now_ms();
            int pipes = atomic_load(&sigpipes);
            run_fault((int)k);
            if (atomic_load(&sigpipes) != pipes)
                fprintf(stderr, "fault %s: SIGPIPE raised\n", faults[k].name);
            print_message("fault %-45s ok (%lld ms)\n", faults[k].name, test_now_ms() - t0);
        }
    }
    free(big_data);
    big_data = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Retry on a fresh connection that works: the scripted server drops the connection while a
 * real server (smtpd.py) has taken over its port.
 * ------------------------------------------------------------------------------------------- */

/*
 * script: what the first server does before it hangs on (the test then starts smtpd.py on the
 * same port and ends the scripted server, which closes the connection). trigger: what its
 * record must hold first. want_sent[i]: message i must end up delivered; spooled_by_retry: how
 * many of them smtpd.py must receive.
 */
static void retry_case(const char *label, const char *script, const char *trigger,
                       const enum want *want, int spooled_by_retry)
{
    test_server_t s, real;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_dispatch();
    int old = email_get_timeout();
    email_set_timeout(10);
    tracker_t tr;
    tracker_init(&tr, FAULT_MESSAGES);
    char name[64];
    snprintf(name, sizeof name, "retry-%s", label);
    start_async(name, s.port, &tr);
    email_set_timeout(old);
    uint64_t ids[FAULT_MESSAGES];
    for (int i = 0; i < FAULT_MESSAGES; i++) {
        char subject[96];
        snprintf(subject, sizeof subject, "retry %s m%d", label, i);
        ids[i] = queue_simple(name, &tr, i, subject);
    }
    if (!record_wait(&s, trigger, 5000))
        fail_msg("%s: the client never sent %s", label, trigger);
    char port[16];
    snprintf(port, sizeof port, "%d", s.port);
    const char *args[] = {"--port", port, NULL};
    assert_int_equal(test_server_start(&real, "smtpd.py", args), 0);
    assert_int_equal(real.port, s.port);
    /* EOF on its stdin ends scripted.py, which closes the client's connection */
    close(s.stdin_fd);
    s.stdin_fd = -1;

    int done = dispatch_until(&tr, FAULT_MESSAGES, 10000);
    if (done != FAULT_MESSAGES)
        report_missing(&tr, label);
    assert_int_equal(done, FAULT_MESSAGES);
    for (int i = 0; i < FAULT_MESSAGES; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        bool ok = want[i] == W_SENT ? o.success : want[i] == W_UNKNOWN
                                                       ? !o.success && o.error == EMAIL_EUNKNOWN
                                                       : false;
        if (!ok)
            fail_msg("%s: message %d: want %s, got success %d %s: %s", label, i,
                     want_name(want[i]), o.success, email_error_name(o.error), o.text);
    }
    close_session(name);
    assert_no_strays(&tr);

    /* smtpd.py got exactly the retried messages, each once; never one whose end of data had
       already gone to the first server */
    assert_int_equal(test_spool_wait(&real, spooled_by_retry, 5000), spooled_by_retry);
    test_sleep_ms(200);
    assert_int_equal(test_spool_count(&real), spooled_by_retry);
    for (int n = 1; n <= spooled_by_retry; n++) {
        char *eml = test_spool_read(&real, n, "eml", NULL);
        assert_non_null(eml);
        for (int i = 0; i < FAULT_MESSAGES; i++) {
            char subject[96];
            snprintf(subject, sizeof subject, "Subject: retry %s m%d\r\n", label, i);
            if (strstr(eml, subject) && want[i] == W_UNKNOWN)
                fail_msg("%s: message %d was resent after its end of data", label, i);
        }
        free(eml);
    }
    tracker_free(&tr);
    test_server_stop(&real);
    test_server_stop(&s);
}

static void test_retry_fresh_connection(void **state)
{
    /* dropped after MAIL of the first message: all three go again, over smtpd.py */
    static const enum want all_sent[] = {W_SENT, W_SENT, W_SENT};
    retry_case("mail", GREET EHLO_OK MAIL "sleep 30\n", "MAIL FROM:", all_sent, 3);
    /* the first is delivered, the second's end of data is unanswered when the connection
       drops: unknown, not resent; the third goes again */
    static const enum want mixed[] = {W_SENT, W_UNKNOWN, W_SENT};
    retry_case("eod", GREET EHLO_OK TXN_OK UP_TO_354 "expect-data\nsleep 30\n",
               "Subject: retry eod m1", mixed, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Cancel
 * ------------------------------------------------------------------------------------------- */

static void test_cancel(void **state)
{
    test_server_t s;
    /* the first message's MAIL stalls 2 s; then the server takes m0, m1 and m3 */
    const char *script = GREET EHLO_OK MAIL "sleep 2\nsend 250 ok\n" RCPT "send 250 ok\n" DATA
        "send 354 go\nexpect-data\nsend 250 ok\n" TXN_OK TXN_OK "expect QUIT\nsend 221 bye\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    email_dispatch();
    email_transporter_t *t = plain_transporter(s.port, true, 10);
    tracker_t tr;
    tracker_init(&tr, 8);
    const int n = 5;
    uint64_t ids[5];
    for (int i = 0; i < n; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "cancel m%d", i);
        email_message_t *m = make_message(subject);
        ids[i] = email_message_id(m);
        tracker_add(&tr, ids[i], i);
        assert_int_equal(email_transporter_send_async(t, m, on_outcome, &tr, NULL), 0);
        email_message_free(m);
    }
    assert_true(record_wait(&s, "MAIL FROM:", 5000)); /* m0 is in flight */
    email_message_t *never = make_message("never queued");
    assert_int_equal(email_transporter_cancel(t, ids[2]), 0);
    assert_int_equal(email_transporter_cancel(t, ids[4]), 0);
    assert_int_equal(email_transporter_cancel(t, ids[0]), EMAIL_EBUSY);
    assert_int_equal(email_transporter_cancel(t, ids[2]), EMAIL_ENOTFOUND); /* already done */
    assert_int_equal(email_transporter_cancel(t, email_message_id(never)), EMAIL_ENOTFOUND);
    assert_int_equal(email_transporter_cancel(t, 0), EMAIL_EINVAL);
    assert_int_equal(email_transporter_cancel(NULL, ids[1]), EMAIL_EINVAL);
    email_message_free(never);

    int done = dispatch_until(&tr, n, 15000);
    if (done != n)
        report_missing(&tr, "cancel");
    assert_int_equal(done, n);
    for (int i = 0; i < n; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        if (i == 2 || i == 4) {
            assert_false(o.success);
            assert_int_equal(o.error, EMAIL_ECANCELED);
            assert_int_equal(email_message_status(ids[i]), EMAIL_ERROR);
        } else {
            if (!o.success)
                fail_msg("message %d: %s: %s", i, email_error_name(o.error), o.text);
            assert_int_equal(email_message_status(ids[i]), EMAIL_SENT);
        }
    }
    /* once sent, too late */
    assert_int_equal(email_transporter_cancel(t, ids[1]), EMAIL_ENOTFOUND);
    email_transporter_free(t);
    assert_no_strays(&tr);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    size_t len = 0;
    char *rec = test_scripted_record(&s, &len);
    assert_non_null(rec);
    assert_int_equal(count_in(rec, len, "Subject: cancel m2\r\n"), 0);
    assert_int_equal(count_in(rec, len, "Subject: cancel m4\r\n"), 0);
    assert_int_equal(count_in(rec, len, "Subject: cancel m3\r\n"), 1);
    free(rec);
    tracker_free(&tr);
    test_server_stop(&s);
}

/* ---------------------------------------------------------------------------------------------
 * Progress
 * ------------------------------------------------------------------------------------------- */

typedef struct progress_log {
    int n;
    uint64_t id[4096], sent[4096], total[4096];
    int outcomes_before[4096]; /* outcomes of the tracker when the progress came */
    tracker_t *tr;
    pthread_t thread;
    bool wrong_thread;
} progress_log_t;

static void on_progress(uint64_t id, uint64_t sent, uint64_t total, void *user_data)
{
    progress_log_t *p = user_data;
    if (!pthread_equal(pthread_self(), p->thread))
        p->wrong_thread = true;
    if (p->n < 4096) {
        p->id[p->n] = id;
        p->sent[p->n] = sent;
        p->total[p->n] = total;
        p->outcomes_before[p->n] = tracker_done(p->tr);
        p->n++;
    }
}

static email_message_t *big_text_message(const char *subject, size_t bytes)
{
    email_message_t *m = make_message(subject);
    char *body = malloc(bytes + 1);
    assert_non_null(body);
    for (size_t i = 0; i < bytes; i++)
        body[i] = (i % 72 == 71) ? '\n' : (char)('a' + i % 26);
    body[bytes] = '\0';
    assert_int_equal(email_message_set_text_body(m, body), 0);
    free(body);
    return m;
}

static void check_progress(const progress_log_t *p, uint64_t id, size_t at_least)
{
    assert_false(p->wrong_thread);
    int n = 0;
    uint64_t last = 0, total = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->id[i] != id)
            continue;
        if (n == 0)
            total = p->total[i];
        if (p->total[i] != total)
            fail_msg("progress %d: total changed from %llu to %llu", n,
                     (unsigned long long)total, (unsigned long long)p->total[i]);
        if (n > 0 && p->sent[i] <= last)
            fail_msg("progress %d: %llu after %llu", n, (unsigned long long)p->sent[i],
                     (unsigned long long)last);
        if (p->sent[i] < total && p->sent[i] - last < 64 * 1024)
            fail_msg("progress %d: %llu bytes after the previous one (less than 64 KiB)", n,
                     (unsigned long long)(p->sent[i] - last));
        if (p->sent[i] > total)
            fail_msg("progress %d: %llu of %llu", n, (unsigned long long)p->sent[i],
                     (unsigned long long)total);
        if (p->outcomes_before[i] != 0)
            fail_msg("progress %d came after the outcome", n);
        last = p->sent[i];
        n++;
    }
    if (n < 3)
        fail_msg("%d progress call(s) for a %llu-byte message", n, (unsigned long long)total);
    assert_true(total >= at_least);
    assert_true(last == total); /* ends with everything sent */
}

static void test_progress(void **state)
{
    const size_t body = 1536 * 1024;
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    email_dispatch();

    /* a transporter's progress */
    tracker_t tr;
    tracker_init(&tr, 4);
    progress_log_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->tr = &tr;
    p->thread = pthread_self();
    email_transporter_t *t = plain_transporter(sink.port, true, 10);
    assert_int_equal(email_transporter_set_progress(t, on_progress, p), 0);
    email_message_t *m = big_text_message("progress transporter", body);
    uint64_t id = email_message_id(m);
    tracker_add(&tr, id, 0);
    assert_int_equal(email_transporter_send_async(t, m, on_outcome, &tr, NULL), 0);
    email_message_free(m);
    assert_int_equal(dispatch_until(&tr, 1, 15000), 1);
    outcome_t o = tracker_get(&tr, id);
    if (!o.success)
        fail_msg("%s: %s", email_error_name(o.error), o.text);
    check_progress(p, id, body);
    email_transporter_free(t);
    assert_no_strays(&tr);
    tracker_free(&tr);

    /* a named session's progress */
    tracker_init(&tr, 4);
    memset(p, 0, sizeof *p);
    p->tr = &tr;
    p->thread = pthread_self();
    start_async("progress", sink.port, &tr);
    assert_int_equal(email_session_set_progress("progress", on_progress, p), 0);
    m = big_text_message("progress session", body);
    id = queue_message("progress", &tr, 0, m);
    email_message_free(m);
    assert_int_equal(dispatch_until(&tr, 1, 15000), 1);
    o = tracker_get(&tr, id);
    if (!o.success)
        fail_msg("%s: %s", email_error_name(o.error), o.text);
    check_progress(p, id, body);
    close_session("progress");
    assert_no_strays(&tr);
    tracker_free(&tr);
    free(p);
    assert_int_equal(test_sink_wait(&sink, 2, 5000), 2);
    test_server_stop(&sink);
}

/* ---------------------------------------------------------------------------------------------
 * Keep-alive
 * ------------------------------------------------------------------------------------------- */

static void test_keep_alive(void **state)
{
    const int n = 4;
    email_status_t st;

    /* keep_alive false: one connection per send */
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    int base = sink_sessions_base(&sink);
    email_transporter_t *t = plain_transporter(sink.port, false, 10);
    for (int i = 0; i < n; i++) {
        email_message_t *m = make_message("no keep-alive");
        if (email_transporter_send(t, m, &st) != 0)
            fail_msg("send %d: %s", i, st.status_text);
        email_message_free(m);
        /* the connection is closed after the send, before the next one */
        assert_int_equal(sink_counter_wait(&sink, "sess", base + i + 1, 5000), base + i + 1);
    }
    email_transporter_free(t);
    test_sleep_ms(200);
    assert_int_equal(sink_counter(&sink, "sess"), base + n);
    assert_int_equal(sink_counter(&sink, "quit"), n);
    assert_int_equal(test_sink_count(&sink), n);
    test_server_stop(&sink);

    /* keep_alive true: one connection for every send */
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    base = sink_sessions_base(&sink);
    t = plain_transporter(sink.port, true, 10);
    for (int i = 0; i < n; i++) {
        email_message_t *m = make_message("keep-alive");
        if (email_transporter_send(t, m, &st) != 0)
            fail_msg("send %d: %s", i, st.status_text);
        email_message_free(m);
    }
    assert_int_equal(test_sink_wait(&sink, n, 5000), n);
    test_sleep_ms(200);
    assert_int_equal(sink_counter(&sink, "sess"), base); /* still open */
    email_transporter_free(t);
    assert_int_equal(sink_counter_wait(&sink, "sess", base + 1, 5000), base + 1);
    test_sleep_ms(200);
    assert_int_equal(sink_counter(&sink, "sess"), base + 1);
    assert_int_equal(sink_counter(&sink, "quit"), 1);
    test_server_stop(&sink);
}

/* The server closes an idle connection: the next message opens a new one. */
static void test_idle_connection_reopened(void **state)
{
    test_server_t sink;
    const char *args[] = {"-t", "1", NULL}; /* smtp-sink drops a client silent for 1 s */
    assert_int_equal(test_sink_start(&sink, args), 0);
    email_dispatch();
    email_status_t st;
    email_transporter_t *t = plain_transporter(sink.port, true, 10);
    tracker_t tr;
    tracker_init(&tr, 4);
    int base = sink_sessions_base(&sink);
    start_async("idle", sink.port, &tr);

    email_message_t *m = make_message("before idle");
    assert_int_equal(email_transporter_send(t, m, &st), 0);
    email_message_free(m);
    uint64_t id0 = queue_simple("idle", &tr, 0, "before idle (session)");
    assert_int_equal(dispatch_until(&tr, 1, 10000), 1);
    assert_true(tracker_get(&tr, id0).success);
    /* both connections are dropped by the server */
    assert_int_equal(sink_counter_wait(&sink, "sess", base + 2, 5000), base + 2);
    test_sleep_ms(300);

    m = make_message("after idle");
    if (email_transporter_send(t, m, &st) != 0)
        fail_msg("transporter after idle: %s: %s", email_error_name(st.error), st.status_text);
    email_message_free(m);
    uint64_t id1 = queue_simple("idle", &tr, 1, "after idle (session)");
    assert_int_equal(dispatch_until(&tr, 2, 10000), 2);
    outcome_t o = tracker_get(&tr, id1);
    if (!o.success)
        fail_msg("session after idle: %s: %s", email_error_name(o.error), o.text);
    email_transporter_free(t);
    close_session("idle");
    assert_no_strays(&tr);
    assert_int_equal(test_sink_wait(&sink, 4, 5000), 4);
    tracker_free(&tr);
    test_server_stop(&sink);
}

/* ---------------------------------------------------------------------------------------------
 * Closing a session, shutting down
 * ------------------------------------------------------------------------------------------- */

/* Messages queued to a stalled server: close returns within about the timeout, each message
   has one outcome, the undelivered ones an error with a reason. */
static void test_close_stalled(void **state)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, GREET EHLO_OK MAIL "sleep 10\n", NULL), 0);
    email_dispatch();
    int old = email_get_timeout();
    email_set_timeout(1);
    tracker_t tr;
    tracker_init(&tr, 8);
    start_async("closing", s.port, &tr);
    email_set_timeout(old);
    const int n = 3;
    uint64_t ids[3];
    for (int i = 0; i < n; i++)
        ids[i] = queue_simple("closing", &tr, i, "closed before sent");
    assert_true(record_wait(&s, "MAIL FROM:", 5000));
    long long t0 = test_now_ms();
    close_session("closing");
    long long took = test_now_ms() - t0;
    if (took > 1000 + slack(2000))
        fail_msg("email_close_session took %lld ms with a 1 s timeout", took);
    /* every outcome was decided before close returned */
    assert_int_equal(dispatch_until(&tr, n, 2000), n);
    for (int i = 0; i < n; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        assert_false(o.success);
        assert_true(o.error != 0);
        assert_true(o.error != EMAIL_EUNKNOWN); /* none reached its end of data */
        assert_true(o.text[0] != '\0');
        assert_int_equal(email_message_status(ids[i]), EMAIL_ERROR);
    }
    assert_no_strays(&tr);
    print_message("close with a stalled server: %lld ms\n", took);
    tracker_free(&tr);
    test_server_stop(&s);
}

/* Messages queued to a working server: close delivers them before it returns. */
static void test_close_delivers_queued(void **state)
{
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    email_dispatch();
    tracker_t tr;
    tracker_init(&tr, 64);
    start_async("close-delivers", sink.port, &tr);
    const int n = 30;
    for (int i = 0; i < n; i++)
        queue_simple("close-delivers", &tr, i, "delivered by close");
    close_session("close-delivers");
    /* the outcomes are all waiting: one dispatch runs them, no waiting needed */
    email_dispatch();
    assert_int_equal(tracker_done(&tr), n);
    pthread_mutex_lock(&tr.lock);
    for (size_t i = 0; i < tr.cap; i++)
        if (tr.slots[i].id && !tr.slots[i].success)
            fail_msg("message %d: %s: %s", tr.slots[i].index, email_error_name(tr.slots[i].error),
                     tr.slots[i].text);
    pthread_mutex_unlock(&tr.lock);
    assert_no_strays(&tr);
    assert_int_equal(test_sink_wait(&sink, n, 3000), n);
    tracker_free(&tr);
    test_server_stop(&sink);
}

/* ---------------------------------------------------------------------------------------------
 * A thousand concurrent sessions
 * ------------------------------------------------------------------------------------------- */

static void test_thousand_sessions(void **state)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int n = under_valgrind ? 100 : 1000;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)(2 * n + 100)) {
        n = (int)(rl.rlim_max - 100) / 2;
        print_message("RLIMIT_NOFILE hard limit %llu: %d sessions instead of 1000\n",
                      (unsigned long long)rl.rlim_max, n);
    }
    char maxconn[16];
    snprintf(maxconn, sizeof maxconn, "%d", n + 100);
    const char *args[] = {"-m", maxconn, NULL}; /* smtp-sink serves 256 at once by default */
    test_server_t sink, silent;
    assert_int_equal(test_sink_start(&sink, args), 0);
    assert_int_equal(test_scripted_start(&silent, "sleep 60\n", NULL), 0);
    email_dispatch();
    tracker_t tr, slow;
    tracker_init(&tr, (size_t)n + 1);
    tracker_init(&slow, 1);
    int old = email_get_timeout();
    email_set_timeout(30);

    /* a dead port and a server that never speaks, started first */
    int dead = test_dead_port();
    assert_false(email_start_smtp_session("c-dead", NULL, "127.0.0.1", dead, EMAIL_ASYNCHRONOUS,
                                          EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_ECONNECT);
    start_async("c-silent", silent.port, &slow);
    uint64_t silent_id = queue_simple("c-silent", &slow, 0, "silent");

    uint64_t *ids = calloc((size_t)n, sizeof *ids);
    assert_non_null(ids);
    long long t0 = test_now_ms();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "c-%d", i);
        start_async(name, sink.port, &tr);
    }
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "c-%d", i);
        ids[i] = queue_simple(name, &tr, i, name);
    }
    int done = dispatch_until(&tr, n, 25000);
    long long took = test_now_ms() - t0;
    email_set_timeout(old);
    if (done != n)
        report_missing(&tr, "thousand");
    assert_int_equal(done, n);
    print_message("%d concurrent sessions: every outcome after %lld ms\n", n, took);
    for (int i = 0; i < n; i++) {
        outcome_t o = tracker_get(&tr, ids[i]);
        if (o.count != 1 || !o.success)
            fail_msg("session %d: %d outcome(s), %s: %s", i, o.count, email_error_name(o.error),
                     o.text);
    }
    /* the silent server has not delayed anyone: its message is still pending */
    assert_int_equal(email_message_status(silent_id), EMAIL_PENDING);
    assert_int_equal(tracker_done(&slow), 0);
    assert_int_equal(test_sink_wait(&sink, n, 10000), n);

    /* now it goes away: its message fails at once, not after the 30 s timeout */
    long long s0 = test_now_ms();
    test_server_stop(&silent);
    assert_int_equal(dispatch_until(&slow, 1, 10000), 1);
    assert_true(test_now_ms() - s0 < slack(5000));
    outcome_t so = tracker_get(&slow, silent_id);
    assert_false(so.success);
    assert_true(so.error == EMAIL_ECLOSED || so.error == EMAIL_ECONNECT);

    long long c0 = test_now_ms();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "c-%d", i);
        close_session(name);
    }
    assert_true(start_failed(&slow)); /* its name went with its start */
    assert_false(email_close_session("c-silent"));
    print_message("closing %d sessions: %lld ms\n", n, test_now_ms() - c0);
    assert_no_strays(&tr);
    assert_no_strays(&slow);
    test_sleep_ms(200);
    assert_int_equal(test_sink_count(&sink), n);
    free(ids);
    tracker_free(&tr);
    tracker_free(&slow);
    test_server_stop(&sink);
}

/* email_shutdown: what is queued is delivered and reported before it returns. Last: it stops
   the library thread (a later call would start it again). */
static void test_shutdown_delivers(void **state)
{
    test_server_t sink;
    assert_int_equal(test_sink_start(&sink, NULL), 0);
    email_dispatch();
    tracker_t tr;
    tracker_init(&tr, 128);
    start_async("shut-1", sink.port, &tr);
    start_async("shut-2", sink.port, &tr);
    const int n = 50;
    for (int i = 0; i < n; i++) {
        queue_simple("shut-1", &tr, i, "shutdown 1");
        queue_simple("shut-2", &tr, n + i, "shutdown 2");
    }
    long long t0 = test_now_ms();
    email_shutdown();
    long long took = test_now_ms() - t0;
    /* delivered before it returned (the sink's counter file may lag a moment) */
    assert_int_equal(test_sink_wait(&sink, 2 * n, 2000), 2 * n);
    /* the outcomes wait for the caller: one dispatch runs them all */
    email_dispatch();
    assert_int_equal(tracker_done(&tr), 2 * n);
    pthread_mutex_lock(&tr.lock);
    for (size_t i = 0; i < tr.cap; i++)
        if (tr.slots[i].id && !tr.slots[i].success)
            fail_msg("message %d: %s: %s", tr.slots[i].index, email_error_name(tr.slots[i].error),
                     tr.slots[i].text);
    pthread_mutex_unlock(&tr.lock);
    assert_no_strays(&tr);
    /* the sessions are gone */
    assert_false(email_close_session("shut-1"));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    print_message("email_shutdown with %d messages queued: %lld ms\n", 2 * n, took);
    tracker_free(&tr);
    test_server_stop(&sink);
}

/*
 * SIGPIPE: a server that resets the connection while the library writes must not kill the
 * program (the default disposition of SIGPIPE terminates it). The test counts the signals
 * instead of dying, and fails the test during which one was raised.
 */
static void on_sigpipe(int sig)
{
    atomic_fetch_add(&sigpipes, 1);
}

/* Also: nothing of the test left on the library's loop. */
static int check_sigpipe(void **state)
{
    assert_loop_idle();
    int n = atomic_exchange(&sigpipes, 0);
    if (n) {
        fprintf(stderr, "FAILED: SIGPIPE was raised %d time(s) during this test: with the default "
                        "disposition the library would have killed the program\n",
                n);
        return -1;
    }
    return 0;
}

static int teardown_all(void **state)
{
    email_shutdown();
    email_dispatch();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_many_dispatch_poll, check_sigpipe),
        cmocka_unit_test_teardown(test_many_dispatch_thread, check_sigpipe),
        cmocka_unit_test_teardown(test_callback_loop_thread, check_sigpipe),
        cmocka_unit_test_teardown(test_send_async_status, check_sigpipe),
        cmocka_unit_test_teardown(test_faulty_servers, check_sigpipe),
        cmocka_unit_test_teardown(test_retry_fresh_connection, check_sigpipe),
        cmocka_unit_test_teardown(test_cancel, check_sigpipe),
        cmocka_unit_test_teardown(test_progress, check_sigpipe),
        cmocka_unit_test_teardown(test_keep_alive, check_sigpipe),
        cmocka_unit_test_teardown(test_idle_connection_reopened, check_sigpipe),
        cmocka_unit_test_teardown(test_close_stalled, check_sigpipe),
        cmocka_unit_test_teardown(test_close_delivers_queued, check_sigpipe),
        cmocka_unit_test_teardown(test_thousand_sessions, check_sigpipe),
        cmocka_unit_test_teardown(test_shutdown_delivers, check_sigpipe),
    };
    under_valgrind = getenv("EMAIL_UNDER_VALGRIND") != NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
