/*
 * The IMAP transporter's asynchronous calls against a private dovecot
 * (tests/servers/dovecot_mail.py): every twin's outcome through email_dispatch(), in the order
 * the calls were made, with synchronous calls among them; calls queued behind a select in
 * flight working in its box; a few hundred messages read by one
 * get_mails_async (each UID's outcome exactly once, in the order given, missing UIDs and a UID
 * given twice included) with the FETCH commands pipelined; a callback queuing the next read
 * (through email_dispatch() and on the loop thread); a free with calls queued, from a thread and
 * from the loop's; a changed UIDVALIDITY (EMAIL_ESTALE for the calls naming UIDs queued before
 * it was seen); a connection dropped with calls queued (scripted server: one error each); bad
 * arguments refused without a callback.
 */
#include <dirent.h>
#include <limits.h>
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

static char *dir;
static int timeout_s = 5;

static const char *const fixtures[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\nbody one\r\n",
    "From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n",
    "From: c@example.org\r\nSubject: three\r\n\r\nbody three\r\n",
};
static const char *const subjects[] = {"one", "two", "three"};
#define NFIX 3
#define NBULK 300

static const char *dpath(const char *name)
{
    static char bufs[8][600];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

/* dovecot with alice's INBOX holding the fixtures (then NBULK generated ones when asked) and
 * an empty "Archive"; its folder in *folder. */
static void start_dovecot(test_server_t *dv, bool bulk, char *folder, size_t size)
{
    char specs[NFIX][700], gen[40];
    snprintf(folder, size, "/tmp/emailsession-imap-XXXXXX");
    assert_non_null(mkdtemp(folder));
    const char *args[16 + 2 * NFIX] = {"--certs", dir, "--folder", folder,
                                       "--mailbox", "alice:Archive"};
    int n = 6;
    for (int i = 0; i < NFIX; i++) {
        snprintf(specs[i], sizeof specs[i], "alice:%s/fixture%d.eml", dir, i + 1);
        args[n++] = "--message";
        args[n++] = specs[i];
    }
    if (bulk) {
        snprintf(gen, sizeof gen, "alice:%d", NBULK);
        args[n++] = "--generate";
        args[n++] = gen;
    }
    assert_int_equal(test_server_start(dv, "dovecot_mail.py", args), 0);
}

static email_imap_transporter_t *open_box(int port, int security, const char *log)
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
    srv.log_file = log ? dpath(log) : NULL;
    email_imap_transporter_t *t = email_imap_transporter_new(&srv);
    if (!t)
        fail_msg("email_imap_transporter_new: %s", email_error_info());
    return t;
}

static email_imap_transporter_t *open_dovecot(const test_server_t *dv, const char *log)
{
    return open_box(dv->more_ports[1], EMAIL_SECURITY_STARTTLS, log);
}

/* The UIDs a synchronous search finds (the caller frees them). */
static uint32_t *search(email_imap_transporter_t *t, const char *criteria, size_t *n)
{
    uint32_t *uids = NULL;
    if (email_imap_search(t, criteria, NULL, &uids, n, NULL))
        fail_msg("email_imap_search(%s): %s", criteria, email_error_info());
    return uids;
}

static size_t search_count(email_imap_transporter_t *t, const char *criteria)
{
    size_t n;
    free(search(t, criteria, &n));
    return n;
}

/* ------------------------------------------------------------------------------------------- */
/* Outcomes, recorded from whichever thread the callbacks run on                                */

#define MAX_OUTCOMES 512

typedef struct outcome {
    int calls;               /* how many times its callback ran (exactly once, always) */
    int order;               /* its rank among the outcomes */
    bool success;
    int error;
    bool got_message;
    char subject[64];
    char uid[16];
    uint64_t count;          /* mailbox calls: result->count */
    uint32_t unseen, uidvalidity; /* select */
    bool uidvalidity_changed;
    bool inbox_listed;       /* get_box_list: INBOX and Archive among the boxes */
    bool archive_listed;
    uint32_t first_uid;      /* search */
} outcome_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    outcome_t v[MAX_OUTCOMES];
    int done;
    email_imap_transporter_t *t; /* for the callbacks that queue more */
    uint32_t chain[NFIX];        /* the chain's UIDs */
    int chain_next;
} rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.lock);
    memset(rec.v, 0, sizeof rec.v);
    rec.done = 0;
    rec.t = NULL;
    rec.chain_next = 0;
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
        o->got_message = true;
        const char *s = email_message_get_subject(m);
        snprintf(o->subject, sizeof o->subject, "%s", s ? s : "");
        const char *uid = email_message_get_uid(m);
        snprintf(o->uid, sizeof o->uid, "%s", uid ? uid : "");
        email_message_free(m);
    }
    rec_end();
}

static void on_mailbox(const email_mailbox_result_t *r, const email_status_t *status,
                       void *user_data)
{
    outcome_t *o = rec_begin(user_data, status);
    o->count = r->count;
    if (r->imap_box_info) {
        o->unseen = r->imap_box_info->unseen;
        o->uidvalidity = r->imap_box_info->uidvalidity;
        o->uidvalidity_changed = r->imap_box_info->uidvalidity_changed;
    }
    for (size_t i = 0; r->imap_boxes && i < r->count; i++) {
        o->inbox_listed |= strcmp(r->imap_boxes[i].name, "INBOX") == 0;
        o->archive_listed |= strcmp(r->imap_boxes[i].name, "Archive") == 0;
    }
    if (r->uids && r->count)
        o->first_uid = r->uids[0];
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
/* Runs what email_dispatch() has until `want` outcomes came or `ms` milliseconds passed; the
   outcomes so far. */
static int dispatch_within(int want, long long ms)
{
    int fd = email_dispatch_fd();
    assert_true(fd >= 0);
    long long deadline = test_now_ms() + ms;
    while (rec_done() < want && test_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0)
            email_dispatch();
    }
    return rec_done();
}

static int dispatch_until(int want)
{
    return dispatch_within(want, 1000LL * 6 * timeout_s);
}

/* To see that nothing more comes: a stray outcome would be queued by the time the call that
   caused it returned, so half a second of dispatching shows it. */
static int dispatch_for(int ms)
{
    return dispatch_within(INT_MAX, ms);
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

static void assert_once_in_order(int n)
{
    for (int i = 0; i < n; i++) {
        if (rec.v[i].calls != 1 || rec.v[i].order != i)
            fail_msg("outcome %d: %d calls, rank %d", i, rec.v[i].calls, rec.v[i].order);
    }
}

/* ------------------------------------------------------------------------------------------- */

/* Every twin, each outcome once and in the order of the calls; synchronous calls made among
 * them wait their turn behind the ones queued before. */
static void test_every_twin_in_order(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, "twins.log");
    size_t n;
    uint32_t *uids = search(t, "ALL", &n);
    assert_int_equal(n, NFIX);
    assert_int_equal(email_imap_check_connection_async(t, on_message, TAG(0)), 0);
    assert_false(email_error_occurred());
    assert_int_equal(email_imap_select_box_async(t, "INBOX", EMAIL_IMAP_READ_WRITE, on_mailbox,
                                                 TAG(1)), 0);
    assert_int_equal(email_imap_get_box_list_async(t, on_mailbox, TAG(2)), 0);
    assert_int_equal(email_imap_search_async(t, "SUBJECT", "two", on_mailbox, TAG(3)), 0);
    assert_int_equal(email_imap_get_mail_async(t, uids[0], EMAIL_READ_PEEK, on_message, TAG(4)),
                     0);
    assert_int_equal(email_imap_get_mail_async(t, 99999, 0, on_message, TAG(5)), 0);
    assert_int_equal(email_imap_add_flags_async(t, &uids[1], 1, "\\Flagged \\Answered", on_message,
                                                TAG(6)), 0);
    /* synchronous, behind the flag queued before it */
    assert_int_equal(search_count(t, "FLAGGED"), 1);
    assert_int_equal(email_imap_remove_flags_async(t, &uids[1], 1, "\\Flagged", on_message,
                                                   TAG(7)), 0);
    assert_int_equal(email_imap_delete_async(t, &uids[2], 1, on_message, TAG(8)), 0);
    assert_int_equal(email_imap_expunge_async(t, on_message, TAG(9)), 0);
    assert_int_equal(email_imap_search_async(t, "ALL", NULL, on_mailbox, TAG(10)), 0);
    assert_int_equal(email_imap_get_mail_async(t, uids[1], EMAIL_READ_HEADERS, on_message,
                                               TAG(11)), 0);
    assert_int_equal(search_count(t, "ANSWERED"), 1);
    assert_int_equal(search_count(t, "FLAGGED"), 0);
    assert_int_equal(dispatch_until(12), 12);
    assert_once_in_order(12);
    for (int i = 0; i < 12; i++)
        if (rec.v[i].success != (i != 5))
            fail_msg("outcome %d: error %s", i, email_error_name(rec.v[i].error));
    assert_int_equal(rec.v[1].count, NFIX);
    assert_int_equal(rec.v[1].unseen, NFIX);
    assert_true(rec.v[1].uidvalidity != 0);
    assert_true(rec.v[2].inbox_listed && rec.v[2].archive_listed);
    assert_int_equal(rec.v[3].count, 1);
    assert_int_equal(rec.v[3].first_uid, uids[1]);
    assert_string_equal(rec.v[4].subject, "one");
    char uid[16];
    snprintf(uid, sizeof uid, "%u", uids[0]);
    assert_string_equal(rec.v[4].uid, uid);
    assert_false(rec.v[5].got_message);
    assert_int_equal(rec.v[5].error, EMAIL_ENOTFOUND);
    assert_int_equal(rec.v[10].count, NFIX - 1);
    assert_string_equal(rec.v[11].subject, "two");
    assert_int_equal(search_count(t, "SEEN"), 0); /* PEEK and HEADERS leave \Seen alone */
    email_imap_transporter_free(t);
    assert_int_equal(dispatch_until(12), 12); /* nothing more */
    free(uids);
    test_server_stop(&dv);
    rec_reset();
}

/* On a session not yet open, calls queued behind select_box_async work in the box it chooses
 * (not in INBOX, which a call naming UIDs selects when no box was chosen). */
static void test_queued_behind_select(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    assert_int_equal(email_imap_select_box_async(t, "Archive", EMAIL_IMAP_READ_WRITE,
                                                 on_mailbox, TAG(0)), 0);
    assert_int_equal(email_imap_search_async(t, "ALL", NULL, on_mailbox, TAG(1)), 0);
    assert_int_equal(email_imap_select_box_async(t, "INBOX", EMAIL_IMAP_READ_ONLY, on_mailbox,
                                                 TAG(2)), 0);
    assert_int_equal(email_imap_search_async(t, "ALL", NULL, on_mailbox, TAG(3)), 0);
    assert_int_equal(email_imap_select_box_async(t, "No such box", EMAIL_IMAP_READ_WRITE,
                                                 on_mailbox, TAG(4)), 0);
    assert_int_equal(dispatch_until(5), 5);
    assert_once_in_order(5);
    for (int i = 0; i < 4; i++)
        assert_true(rec.v[i].success);
    assert_int_equal(rec.v[0].count, 0);
    assert_int_equal(rec.v[1].count, 0);
    assert_int_equal(rec.v[2].count, NFIX);
    assert_int_equal(rec.v[3].count, NFIX);
    assert_false(rec.v[4].success);
    assert_int_equal(rec.v[4].error, EMAIL_ESERVER);
    assert_int_equal(rec.v[4].count, 0);
    email_imap_transporter_free(t);
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

/* Each outcome tagged by its rank: the order of get_mails_async's outcomes, one by one. */
static void on_bulk(email_message_t *m, const email_status_t *status, void *user_data)
{
    (void)user_data;
    pthread_mutex_lock(&rec.lock);
    intptr_t next = rec.chain_next++;
    pthread_mutex_unlock(&rec.lock);
    on_message(m, status, TAG(next));
}

/* A few hundred messages by one get_mails_async: newest first, a UID given twice, two UIDs
 * that do not exist; each UID's outcome exactly once, in the order given. */
static void test_get_mails_bulk(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, true, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, "bulk.log");
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    assert_int_equal(n, NFIX + NBULK);
    size_t want = NBULK + 3;
    uint32_t *uids = calloc(want, sizeof *uids);
    for (size_t i = 0; i < NBULK; i++)
        uids[i] = all[n - 1 - i];
    uids[NBULK] = 100000;
    uids[NBULK + 1] = uids[0];
    uids[NBULK + 2] = 100001;
    /* each outcome tagged by its rank (on_bulk): their order is the UIDs' */
    assert_int_equal(email_imap_get_mails_async(t, uids, want, 0, on_bulk, NULL), 0);
    assert_int_equal(dispatch_until((int)want), (int)want);
    assert_once_in_order((int)want);
    for (size_t i = 0; i < NBULK; i++) {
        char subject[40], uid[16];
        snprintf(subject, sizeof subject, "bulk %zu", NBULK - i);
        snprintf(uid, sizeof uid, "%u", uids[i]);
        assert_true(rec.v[i].success);
        assert_string_equal(rec.v[i].subject, subject);
        assert_string_equal(rec.v[i].uid, uid);
    }
    assert_int_equal(rec.v[NBULK].error, EMAIL_ENOTFOUND);
    assert_string_equal(rec.v[NBULK + 1].subject, rec.v[0].subject); /* given twice */
    assert_int_equal(rec.v[NBULK + 2].error, EMAIL_ENOTFOUND);
    assert_int_equal(search_count(t, "UNSEEN"), NFIX); /* reading marked the bulk read */
    email_imap_transporter_free(t);
    assert_int_equal(dispatch_for(500), (int)want); /* nothing more */
    /* pipelined: the FETCH and STORE lines of many reads before the server's first answer */
    char *log = test_read_file(dpath("bulk.log"), NULL);
    assert_non_null(log);
    int flight = longest_flight(log);
    if (flight < 16)
        fail_msg("the longest flight of commands is %d lines", flight);
    free(log);
    free(all);
    free(uids);
    test_server_stop(&dv);
    rec_reset();
}

static void test_get_mails_order(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    uint32_t uids[] = {all[2], 77777, all[0], all[1], all[2]};
    email_shutdown(); /* the calls wait for the box to be selected again */
    assert_int_equal(email_imap_get_mails_async(t, uids, 5, EMAIL_READ_PEEK, on_bulk, NULL), 0);
    assert_int_equal(dispatch_until(5), 5);
    assert_once_in_order(5);
    const char *want[] = {"three", "", "one", "two", "three"};
    for (int i = 0; i < 5; i++) {
        assert_true(rec.v[i].success == (i != 1));
        assert_string_equal(rec.v[i].subject, want[i]);
    }
    assert_int_equal(rec.v[1].error, EMAIL_ENOTFOUND);
    email_imap_transporter_free(t);
    free(all);
    test_server_stop(&dv);
    rec_reset();
}

/* A callback that reads the next message, until the last. */
static void chain_read(email_message_t *m, const email_status_t *status, void *user_data)
{
    on_message(m, status, user_data);
    pthread_mutex_lock(&rec.lock);
    int next = rec.chain_next < NFIX ? rec.chain_next++ : -1;
    email_imap_transporter_t *t = rec.t;
    pthread_mutex_unlock(&rec.lock);
    if (next >= 0 && status->success)
        assert_int_equal(email_imap_get_mail_async(t, rec.chain[next], 0, chain_read,
                                                   TAG(next)), 0);
}

static void check_chain(void)
{
    for (int i = 0; i < NFIX; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_true(rec.v[i].success);
        assert_string_equal(rec.v[i].subject, subjects[i]);
    }
}

/* A callback queues the next read: through email_dispatch(), then on the loop thread. */
static void test_callback_queues_next(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    memcpy(rec.chain, all, sizeof rec.chain);
    rec.t = t;
    rec.chain_next = 1;
    assert_int_equal(email_imap_get_mail_async(t, all[0], 0, chain_read, TAG(0)), 0);
    assert_int_equal(dispatch_until(NFIX), NFIX);
    check_chain();

    rec_reset();
    memcpy(rec.chain, all, sizeof rec.chain);
    rec.t = t;
    rec.chain_next = 1;
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_imap_get_mail_async(t, all[0], 0, chain_read, TAG(0)), 0);
    assert_int_equal(wait_outcomes(NFIX), NFIX);
    check_chain();
    email_imap_transporter_free(t);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    free(all);
    test_server_stop(&dv);
    rec_reset();
}

/* Freed with calls queued before the session even opened: each gets exactly one outcome, and
 * the flag queued among them was set before the LOGOUT. */
static void test_free_with_calls_queued(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    email_shutdown(); /* the next session selects the box again first */
    enum { N = 20 };
    for (int i = 0; i < N; i++)
        assert_int_equal(email_imap_get_mail_async(t, all[i % NFIX], EMAIL_READ_PEEK,
                                                   on_message, TAG(i)), 0);
    assert_int_equal(email_imap_add_flags_async(t, &all[1], 1, "\\Flagged", on_message,
                                                TAG(N)), 0);
    assert_int_equal(email_imap_check_connection_async(t, NULL, NULL), 0); /* dropped */
    email_imap_transporter_free(t);
    assert_int_equal(dispatch_until(N + 1), N + 1);
    assert_once_in_order(N + 1);
    for (int i = 0; i <= N; i++)
        assert_true(rec.v[i].success);
    assert_string_equal(rec.v[4].subject, subjects[1]);

    t = open_dovecot(&dv, NULL);
    assert_int_equal(search_count(t, "FLAGGED"), 1);
    email_imap_transporter_free(t);
    free(all);
    test_server_stop(&dv);
    rec_reset();
}

/* A loop-thread callback queues reads and frees the transporter (it cannot wait there): the
 * reads are answered before the LOGOUT, each once. */
static void queue_and_free(email_message_t *m, const email_status_t *status, void *user_data)
{
    on_message(m, status, user_data);
    for (int i = 0; i < NFIX; i++)
        assert_int_equal(email_imap_get_mail_async(rec.t, rec.chain[i], 0, on_message,
                                                   TAG(i + 1)), 0);
    email_imap_transporter_free(rec.t);
}

static void test_free_on_loop_thread(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    memcpy(rec.chain, all, sizeof rec.chain);
    rec.t = t;
    email_shutdown();
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD), 0);
    assert_int_equal(email_imap_check_connection_async(t, queue_and_free, TAG(0)), 0);
    assert_int_equal(wait_outcomes(NFIX + 1), NFIX + 1);
    assert_int_equal(email_set_callback_thread(EMAIL_CALLBACK_DISPATCH), 0);
    for (int i = 0; i <= NFIX; i++) {
        assert_int_equal(rec.v[i].calls, 1);
        assert_true(rec.v[i].success);
    }
    for (int i = 0; i < NFIX; i++)
        assert_string_equal(rec.v[i + 1].subject, subjects[i]);
    email_shutdown(); /* the session's end is over */
    free(all);
    test_server_stop(&dv);
    rec_reset();
}

/* The maildir's UID list and indexes replaced by a list of another UIDVALIDITY. */
static void renumber(const char *folder, const char *list)
{
    char path[900];
    snprintf(path, sizeof path, "%s/home/alice/Maildir", folder);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (strncmp(de->d_name, "dovecot", 7) == 0) {
            char file[1200];
            snprintf(file, sizeof file, "%s/%s", path, de->d_name);
            unlink(file);
        }
    }
    closedir(d);
    char file[1000];
    snprintf(file, sizeof file, "%s/dovecot-uidlist", path);
    assert_int_equal(test_write_file(file, list, strlen(list)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(chown(file, st.st_uid, st.st_gid), 0);
}

/* UIDVALIDITY changed while no session was open: the calls naming UIDs queued before the change
 * was seen fail with EMAIL_ESTALE and do nothing; NOOP goes; SELECT and the calls after it go. */
static void test_estale(void **state)
{
    (void)state;
    rec_reset();
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_imap_transporter_t *t = open_dovecot(&dv, NULL);
    size_t n;
    uint32_t *all = search(t, "ALL", &n);
    email_shutdown();
    renumber(folder, "3 V4242 N100\n");
    assert_int_equal(email_imap_add_flags_async(t, all, 1, "\\Flagged", on_message, TAG(0)), 0);
    assert_int_equal(email_imap_get_mail_async(t, all[1], 0, on_message, TAG(1)), 0);
    assert_int_equal(email_imap_check_connection_async(t, on_message, TAG(2)), 0);
    assert_int_equal(email_imap_search_async(t, "ALL", NULL, on_mailbox, TAG(3)), 0);
    assert_int_equal(email_imap_select_box_async(t, "INBOX", EMAIL_IMAP_READ_ONLY, on_mailbox,
                                                 TAG(4)), 0);
    assert_int_equal(email_imap_search_async(t, "ALL", NULL, on_mailbox, TAG(5)), 0);
    assert_int_equal(dispatch_until(6), 6);
    assert_once_in_order(6); /* the stale ones in their turn too */
    const bool ok[] = {false, false, true, false, true, true};
    for (int i = 0; i < 6; i++) {
        assert_true(rec.v[i].success == ok[i]);
        if (!ok[i])
            assert_int_equal(rec.v[i].error, EMAIL_ESTALE);
    }
    assert_false(rec.v[1].got_message);
    assert_int_equal(rec.v[4].uidvalidity, 4242);
    assert_false(rec.v[4].uidvalidity_changed); /* known since the EMAIL_ESTALE */
    assert_int_equal(rec.v[5].count, NFIX);
    assert_int_equal(search_count(t, "FLAGGED"), 0); /* nothing was done */
    assert_int_equal(search_count(t, "SEEN"), 0);
    email_imap_transporter_free(t);
    free(all);
    test_server_stop(&dv);
    rec_reset();
}

/* A scripted server drops the connection with three reads and a flag queued: each call gets
 * one error outcome; the call queued after the drop opens a new session (refused here). */
static void test_connection_dropped(void **state)
{
    (void)state;
    rec_reset();
    test_server_t s;
    assert_int_equal(test_scripted_start(&s,
        "send * OK [CAPABILITY IMAP4rev1] scripted\n"
        "expect A\\d+ LOGIN \"alice\" \"pencil\"\n"
        "send A1 OK logged in\n"
        "expect A\\d+ SELECT \"INBOX\"\n"
        "send * 3 EXISTS\\r\\n* OK [UIDVALIDITY 7] ok\\r\\nA2 OK [READ-WRITE] selected\n"
        "expect A\\d+ UID FETCH 1 .*\n"
        "send * 1 FETCH (UID 1 RFC822.SIZE 100 BODY[] {100}\\r\\nSubject: cut\\r\\n\n"
        "close\n", NULL), 0);
    email_imap_transporter_t *t = open_box(s.port, EMAIL_SECURITY_NONE, NULL);
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(email_imap_get_mail_async(t, i, EMAIL_READ_PEEK, on_message,
                                                   TAG(i - 1)), 0);
    uint32_t two = 2;
    assert_int_equal(email_imap_add_flags_async(t, &two, 1, "\\Seen", on_message, TAG(3)), 0);
    assert_int_equal(dispatch_until(4), 4);
    assert_once_in_order(4);
    for (int i = 0; i < 4; i++) {
        assert_false(rec.v[i].success);
        assert_false(rec.v[i].got_message);
        assert_true(rec.v[i].error == EMAIL_ECLOSED || rec.v[i].error == EMAIL_EPROTO);
    }
    assert_int_equal(test_server_wait(&s, 15000 * (test_under_valgrind() ? 10 : 1)), 0);
    test_server_stop(&s);
    email_imap_transporter_free(t);
    rec_reset();
}

/* Bad arguments: refused at once, ErrorInfo set, the callback never called. */
static void test_bad_arguments(void **state)
{
    (void)state;
    rec_reset();
    assert_int_equal(email_imap_get_mail_async(NULL, 1, 0, on_message, TAG(0)), EMAIL_EINVAL);
    assert_true(email_error_occurred());
    assert_non_null(strstr(email_error_info(), "email_imap_get_mail_async"));
    email_imap_transporter_t *t = open_box(9, EMAIL_SECURITY_NONE, NULL); /* never connects */
    uint32_t uids[] = {1, 0};
    assert_int_equal(email_imap_get_mail_async(t, 0, 0, on_message, TAG(0)), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "UID 0"));
    assert_int_equal(email_imap_get_mail_async(t, 1, 0x40, on_message, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_imap_get_mails_async(t, uids, 2, 0, on_message, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_get_mails_async(t, NULL, 2, 0, on_message, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_get_mails_async(t, uids, 0, 0, on_message, TAG(0)), 0);
    assert_false(email_error_occurred());
    assert_int_equal(email_imap_select_box_async(t, "", 0, on_mailbox, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_imap_select_box_async(t, "INBOX", 7, on_mailbox, TAG(0)),
                     EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "mode 7"));
    assert_int_equal(email_imap_select_box_async(t, "IN\r\nBOX", 0, on_mailbox, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_search_async(t, "ALL\r\n", NULL, on_mailbox, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_search_async(t, NULL, NULL, on_mailbox, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_imap_add_flags_async(t, uids, 1, "(\\Seen)", on_message, TAG(0)),
                     EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "flags"));
    assert_int_equal(email_imap_remove_flags_async(t, uids, 0, "\\Seen", on_message, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_delete_async(t, uids, 2, on_message, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_imap_expunge_async(NULL, on_message, TAG(0)), EMAIL_EINVAL);
    assert_int_equal(email_imap_check_connection_async(NULL, on_message, TAG(0)),
                     EMAIL_EINVAL);
    assert_int_equal(email_imap_get_box_list_async(NULL, on_mailbox, TAG(0)), EMAIL_EINVAL);
    email_imap_transporter_free(t);
    email_dispatch();
    assert_int_equal(rec_done(), 0);
}

static int group_setup(void **state)
{
    (void)state;
    if (test_under_valgrind())
        timeout_s = 30;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_imap_async") != 0)
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
            fprintf(stderr, "test_imap_async: files kept in %s\n", dir);
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
        LOOP_IDLE_TEST(test_every_twin_in_order),
        LOOP_IDLE_TEST(test_queued_behind_select),
        LOOP_IDLE_TEST(test_get_mails_bulk),
        LOOP_IDLE_TEST(test_get_mails_order),
        LOOP_IDLE_TEST(test_callback_queues_next),
        LOOP_IDLE_TEST(test_free_with_calls_queued),
        LOOP_IDLE_TEST(test_free_on_loop_thread),
        LOOP_IDLE_TEST(test_estale),
        LOOP_IDLE_TEST(test_connection_dropped),
        LOOP_IDLE_TEST(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
