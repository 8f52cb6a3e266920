/*
 * Throughput past one round trip, against real servers on 127.0.0.1: a transporter's pool of
 * connections (max_connections) as the server sees it — several connections at once, never more
 * than asked, the ones past the first closed once idle, one dying while the others go on, cancel
 * and free while busy — and BDAT streams (aiosmtpd's CHUNKING, and the scripted server for a
 * refusal and a drop in the middle of a stream). Every message gets exactly one outcome and
 * reaches the server at most once.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

#define MAX_MSGS 64

/* One message's outcomes, as its callback saw them. */
typedef struct slot {
    struct outcomes *all;
    int calls;
    int error;
    uint64_t id;
} slot_t;

typedef struct outcomes {
    slot_t slot[MAX_MSGS];
    int n;          /* messages queued */
    int calls;      /* callbacks so far, all messages */
} outcomes_t;

static void on_done(uint64_t id, const email_status_t *st, void *user_data)
{
    slot_t *s = user_data;
    s->calls++;
    s->all->calls++;
    s->error = st->success ? 0 : st->error;
    assert_int_equal(id, s->id);
}

/* Runs email_dispatch until want callbacks came (bounded: a hang fails instead). */
static void wait_calls(outcomes_t *o, int want)
{
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    for (int i = 0; i < 600 && o->calls < want; i++)
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    if (o->calls < want)
        fail_msg("%d outcomes of %d", o->calls, want);
}

/* Queues n messages on t, subjects "m<i>", recipient rcpt (NULL: b@example.org). */
static void queue_messages(email_transporter_t *t, outcomes_t *o, int n, const char *rcpt)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    for (int i = 0; i < n; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "m%d", i);
        email_message_t *m = test_message("tim@example.org", rcpt ? rcpt : "b@example.org",
                                          subject, "Hello.\n");
        o->slot[i].all = o;
        assert_int_equal(email_message_id(m) != 0, 1);
        o->slot[i].id = email_message_id(m);
        uint64_t id = 0;
        assert_int_equal(email_transporter_send_async(t, m, on_done, &o->slot[i], &id), 0);
        assert_int_equal(id, o->slot[i].id);
        email_message_free(m);
    }
}

/* Each message got exactly one outcome; how many of them with error `error` (0: sent). */
static int count_outcomes(const outcomes_t *o, int error)
{
    int k = 0;
    for (int i = 0; i < o->n; i++) {
        assert_int_equal(o->slot[i].calls, 1);
        k += o->slot[i].error == error;
    }
    return k;
}

/* smtpd.py with a log of its connections (in a folder of the test's own, since the server's
 * is known only once it runs). */
typedef struct logged_server {
    test_server_t s;
    char *logdir;
    char log[400];
} logged_server_t;

/* With PIPELINING, CHUNKING when asked, and extra (may be NULL) with its value. */
static void start_logged(logged_server_t *ls, bool chunking, const char *extra, const char *value)
{
    ls->logdir = test_tmpdir();
    assert_non_null(ls->logdir);
    snprintf(ls->log, sizeof ls->log, "%s/conn.log", ls->logdir);
    const char *args[8] = {"--pipelining", "--log", ls->log};
    int n = 3;
    if (chunking)
        args[n++] = "--chunking";
    if (extra) {
        args[n++] = extra;
        args[n++] = value;
    }
    args[n] = NULL;
    start_smtpd(&ls->s, args);
}

static void stop_logged(logged_server_t *ls)
{
    test_server_stop(&ls->s);
    test_rmtree(ls->logdir);
    free(ls->logdir);
}

/* What the server's log says of its connections: how many were opened, how many are open, the
 * most open at once. */
typedef struct conn_counts {
    int opened, open, most;
} conn_counts_t;

static conn_counts_t server_connections(const logged_server_t *ls)
{
    char *log = test_read_file(ls->log, NULL);
    conn_counts_t c = {0};
    for (const char *p = log; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *mark = memchr(p, ']', len);
        if (mark && !strncmp(mark, "] -- connect", 12)) {
            c.opened++;
            if (++c.open > c.most)
                c.most = c.open;
        } else if (mark && !strncmp(mark, "] -- closed", 11)) {
            c.open--;
        }
        p = eol ? eol + 1 : p + len;
    }
    free(log);
    return c;
}

/* Polls the server's log until `open` connections are open (bounded). */
static conn_counts_t wait_open(const logged_server_t *ls, int open)
{
    conn_counts_t c = server_connections(ls);
    for (int i = 0; i < 300 && c.open != open; i++) {
        test_sleep_ms(20);
        c = server_connections(ls);
    }
    return c;
}

static email_transporter_t *pool_transporter(int port, int max_connections)
{
    email_server_t srv;
    test_plain_server(&srv, port);
    srv.max_connections = max_connections;
    email_transporter_t *t = email_transporter_new(&srv);
    if (!t)
        fail_msg("%s", email_error_info());
    return t;
}

/* Every subject m0..m<n-1> reached the server exactly once. */
static void assert_spooled_once(const test_server_t *s, int n)
{
    assert_int_equal(test_spool_wait(s, n, 5000), n);
    int seen[MAX_MSGS] = {0};
    for (int k = 1; k <= n; k++) {
        char *eml = test_spool_read(s, k, "eml", NULL);
        assert_non_null(eml);
        const char *subj = strstr(eml, "\nSubject: m");
        assert_non_null(subj);
        int i = atoi(subj + strlen("\nSubject: m"));
        assert_true(i >= 0 && i < n);
        seen[i]++;
        free(eml);
    }
    for (int i = 0; i < n; i++)
        if (seen[i] != 1)
            fail_msg("m%d reached the server %d times", i, seen[i]);
}

/* ------------------------------------------------------------------------------------------- */
/* The pool                                                                                     */

/* A burst of 40 spreads over several connections, never more than 4 at once; every message
 * once; once idle, the connections past the first close, and the free closes that one. */
static void test_pool_spreads_and_closes_idle(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, false, NULL, NULL);
    email_transporter_t *t = pool_transporter(ls.s.port, 4);
    email_server_t back;
    assert_int_equal(email_transporter_get_server(t, &back), 0);
    assert_int_equal(back.max_connections, 4);
    outcomes_t o;
    queue_messages(t, &o, 40, NULL);
    wait_calls(&o, 40);
    assert_int_equal(count_outcomes(&o, 0), 40);
    assert_spooled_once(&ls.s, 40);
    conn_counts_t c = wait_open(&ls, 1); /* keep_alive: the first stays */
    assert_int_equal(c.open, 1);
    assert_true(c.most >= 2);
    assert_true(c.most <= 4);
    email_transporter_free(t);
    assert_int_equal(wait_open(&ls, 0).open, 0);
    stop_logged(&ls);
}

/* keep_alive false: every connection QUITs once idle. max_connections 0 is 1. */
static void test_pool_no_keep_alive(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, false, NULL, NULL);
    email_server_t srv;
    test_plain_server(&srv, ls.s.port);
    srv.keep_alive = false;
    srv.max_connections = 3;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    outcomes_t o;
    queue_messages(t, &o, 30, NULL);
    wait_calls(&o, 30);
    assert_int_equal(count_outcomes(&o, 0), 30);
    assert_int_equal(wait_open(&ls, 0).open, 0);
    assert_true(server_connections(&ls).most <= 3);
    email_transporter_free(t);
    /* the default is one connection */
    t = pool_transporter(ls.s.port, 0);
    email_server_t back;
    assert_int_equal(email_transporter_get_server(t, &back), 0);
    assert_int_equal(back.max_connections, 1);
    int before = server_connections(&ls).opened;
    queue_messages(t, &o, 20, NULL);
    wait_calls(&o, 20);
    assert_int_equal(count_outcomes(&o, 0), 20);
    assert_int_equal(server_connections(&ls).opened, before + 1);
    email_transporter_free(t);
    stop_logged(&ls);
}

/* Out-of-range settings are refused up front. */
static void test_pool_bad_setting(void **state)
{
    (void)state;
    email_server_t srv;
    test_plain_server(&srv, 25);
    srv.max_connections = -1;
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    srv.max_connections = EMAIL_MAX_CONNECTIONS + 1;
    assert_null(email_transporter_new(&srv));
    assert_non_null(strstr(email_error_info(), "max_connections"));
    assert_int_equal(email_set_max_connections(0), EMAIL_EINVAL);
    assert_int_equal(email_set_max_connections(EMAIL_MAX_CONNECTIONS), 0);
    assert_false(email_error_occurred());
    assert_int_equal(email_set_max_connections(1), 0);
}

/* The server drops the second connection at its third MAIL: the messages it had not finished
 * go again on another connection, the other connections go on; each message once. */
static void run_connection_dies(bool chunking)
{
    logged_server_t ls;
    start_logged(&ls, chunking, "--drop-at-mail", "2:3");
    email_transporter_t *t = pool_transporter(ls.s.port, 3);
    outcomes_t o;
    queue_messages(t, &o, 48, NULL);
    wait_calls(&o, 48);
    /* with BDAT streams a message whose BDAT LAST went before the drop may be unknown: never
     * resent, never counted twice */
    int unknown = count_outcomes(&o, EMAIL_EUNKNOWN);
    assert_int_equal(count_outcomes(&o, 0) + unknown, 48);
    if (!chunking)
        assert_int_equal(unknown, 0);
    assert_true(server_connections(&ls).opened >= 3);
    int spooled = test_spool_wait(&ls.s, 48, 5000);
    assert_true(spooled <= 48 && spooled >= 48 - unknown);
    email_transporter_free(t);
    stop_logged(&ls);
}

static void test_pool_connection_dies(void **state)
{
    (void)state;
    run_connection_dies(false);
    run_connection_dies(true);
}

/* Cancel reaches a message still waiting for room in the pool. */
static void test_pool_cancel(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, false, NULL, NULL);
    email_transporter_t *t = pool_transporter(ls.s.port, 2);
    outcomes_t o;
    queue_messages(t, &o, 40, NULL);
    /* two connections hold 16 at most: the last one waits */
    assert_int_equal(email_transporter_cancel(t, o.slot[39].id), 0);
    wait_calls(&o, 40);
    assert_int_equal(count_outcomes(&o, 0), 39);
    assert_int_equal(o.slot[39].error, EMAIL_ECANCELED);
    assert_int_equal(email_transporter_cancel(t, o.slot[39].id), EMAIL_ENOTFOUND);
    assert_int_equal(test_spool_wait(&ls.s, 39, 5000), 39);
    email_transporter_free(t);
    stop_logged(&ls);
}

/* Freed with its queue full: every message delivered first, then every connection closed. */
static void test_pool_free_while_busy(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, true, NULL, NULL);
    email_transporter_t *t = pool_transporter(ls.s.port, 4);
    outcomes_t o;
    queue_messages(t, &o, 50, NULL);
    email_transporter_free(t);
    wait_calls(&o, 50);
    assert_int_equal(count_outcomes(&o, 0), 50);
    assert_spooled_once(&ls.s, 50);
    assert_int_equal(wait_open(&ls, 0).open, 0);
    stop_logged(&ls);
}

/* An asynchronous session with email_set_max_connections spreads its messages too. */
static void test_pool_session(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, true, NULL, NULL);
    assert_int_equal(email_set_max_connections(3), 0);
    assert_true(email_start_smtp_session("pool", NULL, "127.0.0.1", ls.s.port,
                                         EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_set_max_connections(1), 0); /* sessions started afterwards */
    for (int i = 0; i < 40; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "m%d", i);
        email_message_t *m = test_message("tim@example.org", "b@example.org", subject, "Hi.\n");
        assert_true(email_send_message("pool", m));
        email_message_free(m);
    }
    assert_true(email_close_session("pool"));
    assert_spooled_once(&ls.s, 40);
    conn_counts_t c = wait_open(&ls, 0);
    assert_true(c.most >= 2 && c.most <= 3);
    stop_logged(&ls);
}

/* ------------------------------------------------------------------------------------------- */
/* BDAT streams                                                                                 */

/* aiosmtpd's CHUNKING on one connection: a stream of 30, a refused recipient in the middle
 * (the one message fails alone), each delivered once. */
static void test_stream_aiosmtpd(void **state)
{
    (void)state;
    logged_server_t ls;
    start_logged(&ls, true, "--reject-rcpt", "nobody");
    email_transporter_t *t = test_plain_transporter(ls.s.port);
    outcomes_t o;
    queue_messages(t, &o, 10, NULL);
    outcomes_t bad;
    queue_messages(t, &bad, 1, "nobody@example.org");
    outcomes_t o2;
    queue_messages(t, &o2, 20, NULL);
    wait_calls(&o, 10);
    wait_calls(&bad, 1);
    wait_calls(&o2, 20);
    assert_int_equal(count_outcomes(&o, 0), 10);
    assert_int_equal(count_outcomes(&bad, EMAIL_ERECIPIENTS), 1);
    assert_int_equal(count_outcomes(&o2, 0), 20);
    assert_int_equal(test_spool_wait(&ls.s, 30, 5000), 30);
    assert_int_equal(server_connections(&ls).opened, 1);
    char *log = test_read_file(ls.log, NULL);
    assert_non_null(strstr(log, "C: BDAT "));
    free(log);
    email_transporter_free(t);
    stop_logged(&ls);
}

#define MIME(n) "Subject: " n "\r\n\r\nbody\r\n"

/* The script's part for one pipelined transaction of MIME(n). */
#define TXN(n)                                                                                     \
    "expect MAIL FROM:<a@example.org>\n"                                                           \
    "expect RCPT TO:<b@example.org>\n"                                                             \
    "expect BDAT 21 LAST\n"                                                                        \
    "expect-bytes 21\n"

/* Three prebuilt messages queued before the connection is ready: they go as one stream. */
static void queue_three(email_transporter_t *t, outcomes_t *o)
{
    static const char *const mimes[] = {MIME("m0"), MIME("m1"), MIME("m2")};
    const char *rcpts[] = {"b@example.org", NULL};
    memset(o, 0, sizeof *o);
    o->n = 3;
    for (int i = 0; i < 3; i++) {
        o->slot[i].all = o;
        assert_int_equal(email_transporter_send_mime_async(t, "a@example.org", rcpts, mimes[i],
                                                           strlen(mimes[i]), on_done,
                                                           &o->slot[i], &o->slot[i].id),
                         0);
    }
}

/* Each transaction after the first comes behind an RSET: the previous one is unanswered. */
#define STREAM_GREETING                                                                            \
    "send 220 mx.example ESMTP\n"                                                                  \
    "expect EHLO .*\n"                                                                             \
    "send 250-mx.example\\r\\n250-PIPELINING\\r\\n250 CHUNKING\n" TXN("m0")                       \
    "expect RSET\n" TXN("m1") "expect RSET\n" TXN("m2")

/* Message 2 of 3 refused at MAIL (its RCPT and BDAT answered 503 and 554 as RFC 3030 says):
 * it fails alone with the MAIL's reason; message 3 is not disturbed, no other RSET goes. */
static void test_stream_refusal_scripted(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, STREAM_GREETING
                                         "send 250 2.1.0 Ok\\r\\n250 2.1.5 Ok\\r\\n250 2.0.0 queued 1"
                                         "\\r\\n250 2.0.0 Ok\\r\\n550 5.7.1 Sender refused\\r\\n503 5.5.1 need MAIL"
                                         "\\r\\n554 5.5.1 no valid recipients\\r\\n250 2.0.0 Ok\\r\\n250 2.1.0 Ok"
                                         "\\r\\n250 2.1.5 Ok\\r\\n250 2.0.0 queued 3\n"
                                         "expect QUIT\n"
                                         "send 221 bye\n"
                                         "close\n",
                                         NULL),
                     0);
    email_transporter_t *t = test_plain_transporter(s.port);
    outcomes_t o;
    queue_three(t, &o);
    wait_calls(&o, 3);
    assert_int_equal(o.slot[0].error, 0);
    assert_int_equal(o.slot[1].error, EMAIL_ESERVER);
    assert_int_equal(o.slot[2].error, 0);
    email_transporter_free(t);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    char *rec = test_scripted_record(&s, NULL);
    int rsets = 0;
    for (const char *p = rec; (p = strstr(p, "RSET\r\n")); p++)
        rsets++;
    assert_int_equal(rsets, 2);
    free(rec);
    test_server_stop(&s);
}

/* The connection drops after the first message's replies: the two whose BDAT LAST went out
 * unanswered are unknown (never resent), each message has exactly one outcome. */
static void test_stream_dropped_scripted(void **state)
{
    (void)state;
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, STREAM_GREETING
                                         "send 250 2.1.0 Ok\\r\\n250 2.1.5 Ok\\r\\n250 2.0.0 queued 1\n"
                                         "close\n",
                                         NULL),
                     0);
    email_transporter_t *t = test_plain_transporter(s.port);
    outcomes_t o;
    queue_three(t, &o);
    wait_calls(&o, 3);
    assert_int_equal(o.slot[0].error, 0);
    assert_int_equal(o.slot[1].error, EMAIL_EUNKNOWN);
    assert_int_equal(o.slot[2].error, EMAIL_EUNKNOWN);
    email_transporter_free(t);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_pool_spreads_and_closes_idle),
        LOOP_IDLE_TEST(test_pool_no_keep_alive),
        LOOP_IDLE_TEST(test_pool_bad_setting),
        LOOP_IDLE_TEST(test_pool_connection_dies),
        LOOP_IDLE_TEST(test_pool_cancel),
        LOOP_IDLE_TEST(test_pool_free_while_busy),
        LOOP_IDLE_TEST(test_pool_session),
        LOOP_IDLE_TEST(test_stream_aiosmtpd),
        LOOP_IDLE_TEST(test_stream_refusal_scripted),
        LOOP_IDLE_TEST(test_stream_dropped_scripted),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    email_shutdown();
    return rc;
}
