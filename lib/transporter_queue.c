/*
 * The transporter's queue, on the loop thread only: requests wait in t->waiting until a
 * connection of the pool takes them (its in_conn); a request a connection lost before its end of
 * data is parked until that connection's end says whether it is tried again. With
 * max_connections above 1, a connection holds at most POOL_DEPTH requests and another opens
 * while more wait; the ones beyond the first QUIT once idle. A free QUITs after what is queued,
 * within a deadline.
 */
#include "transporter_internal.h"

#include <stdint.h>
#include <stdlib.h>

#include "util.h"

/* Requests one connection of a pool holds (commands in flight and queued in its engine): enough
 * to keep a BDAT stream or a pipelined one busy over a round trip, few enough that a burst
 * spreads. A lone connection takes everything, as before pools. */
#define POOL_DEPTH 8

static void conn_ready(void *ud, connection_t *c);
static void conn_job_done(void *ud, connection_t *c, smtp_job_t *job);
static void conn_progress(void *ud, connection_t *c, smtp_job_t *job, uint64_t sent,
                          uint64_t total);
static void conn_closed(void *ud, connection_t *c, const email_status_t *why);

static const connection_callbacks_t conn_cbs = {
    .ready = conn_ready,
    .job_done = conn_job_done,
    .progress = conn_progress,
    .closed = conn_closed,
};

/* Only where nothing touches t afterwards: the end of conn_closed and of
 * email__transporter_start_free. */
static void maybe_finish_free(email_transporter_t *t);

static send_req_t *req_of(queue_t *n)
{
    return queue_data(n, send_req_t, node);
}

static pool_conn_t *pc_of(queue_t *n)
{
    return queue_data(n, pool_conn_t, node);
}

/* The first request of q, taken out; NULL when q is empty. */
static send_req_t *pop(queue_t *q)
{
    if (queue_empty(q))
        return NULL;
    send_req_t *r = req_of(queue_head(q));
    queue_remove(&r->node);
    return r;
}

/* Fails every request of q with why. */
static void fail_all(queue_t *q, const email_status_t *why)
{
    send_req_t *r;
    while ((r = pop(q)))
        email__send_req_fail(r, why);
}

static void fail_all_nomem(queue_t *q)
{
    email_status_t s;
    email__status_init(&s);
    email__status_fail(&s, EMAIL_ENOMEM, "out of memory");
    fail_all(q, &s);
}

static pool_conn_t *open_connection(email_transporter_t *t)
{
    pool_conn_t *pc = calloc(1, sizeof *pc);
    if (!pc)
        return NULL;
    connection_config_t cfg;
    email__transporter_make_config(t, &cfg);
    pc->t = t;
    pc->session = cfg.session_id;
    queue_init(&pc->in_conn);
    queue_init(&pc->parked);
    if (!(pc->conn = email__connection_new(email__runtime_loop(), &cfg, &conn_cbs, pc))) {
        free(pc);
        return NULL;
    }
    queue_insert_tail(&t->conns, &pc->node);
    t->nconns++;
    email__connection_start(pc->conn); /* a failure aborts it: conn_closed brings the reason */
    return pc;
}

/* The connection that should take the next request: the least loaded that takes more, or NULL
 * (open another, or wait). */
static pool_conn_t *pick(email_transporter_t *t)
{
    size_t depth = t->max_connections > 1 ? POOL_DEPTH : SIZE_MAX;
    pool_conn_t *best = NULL;
    queue_t *n;
    queue_foreach (n, &t->conns) {
        pool_conn_t *pc = pc_of(n);
        if (!pc->closing && pc->load < depth && (!best || pc->load < best->load))
            best = pc;
    }
    return best;
}

/* Gives the waiting requests to the pool, opening connections while they are all full. */
static void kick(email_transporter_t *t)
{
    while (!queue_empty(&t->waiting)) {
        pool_conn_t *pc = pick(t);
        if (!pc && t->nconns >= t->pool_limit)
            return; /* a connection that finishes a request takes the next */
        if (!pc && !(pc = open_connection(t))) {
            if (!t->nconns)
                fail_all_nomem(&t->waiting);
            return;
        }
        send_req_t *r = pop(&t->waiting);
        /* in the connection before submitting: the job can end inside email__connection_submit
         * (too large, or its body unreadable), and its job_done takes it out and completes it */
        r->session = pc->session;
        r->pc = pc;
        queue_insert_tail(&pc->in_conn, &r->node);
        pc->load++;
        if (email__connection_submit(pc->conn, &r->job) != 0) {
            /* closing: it goes on another connection, first in line */
            r->pc = NULL;
            queue_remove(&r->node);
            pc->load--;
            pc->closing = true;
            queue_insert_head(&t->waiting, &r->node);
        }
    }
}

/* QUITs pc when it has nothing to do and nothing waits, unless it is the one kept alive. */
static void maybe_quit(pool_conn_t *pc)
{
    email_transporter_t *t = pc->t;
    if (pc->closing || pc->load || !queue_empty(&t->waiting) ||
        !email__connection_is_ready(pc->conn))
        return;
    bool first = queue_head(&t->conns) == &pc->node;
    if (first && t->keep_alive && !t->freeing && !pc->drain)
        return;
    pc->closing = true;
    email__connection_quit(pc->conn);
}

/* An open has its verdict. A failed one is a named session's start failing: what is sent to
 * the transporter afterwards fails the same way instead of trying another connection. */
static void opener_finish(email_transporter_t *t, open_op_t *o, int rc,
                          const email_status_t *st)
{
    email_status_t verdict;
    email__status_copy_into(&verdict, st);
    verdict.success = rc == 0;
    verdict.error = rc;
    if (rc && !t->open_failed) {
        t->open_failed = true;
        if ((t->open_status = malloc(sizeof *t->open_status)))
            email__status_copy_into(t->open_status, &verdict);
    }
    o->done(o->done_arg, &verdict);
    free(o);
}

/* Ends the opens waiting for a connection: rc 0 with its ready status, or the failure. */
static void openers_finish(email_transporter_t *t, int rc, const email_status_t *st)
{
    queue_t ending;
    queue_move(&t->openers, &ending);
    while (!queue_empty(&ending)) {
        open_op_t *o = queue_data(queue_head(&ending), open_op_t, node);
        queue_remove(&o->node);
        opener_finish(t, o, rc, st);
    }
}

static void conn_ready(void *ud, connection_t *c)
{
    pool_conn_t *pc = ud;
    openers_finish(pc->t, 0, email__connection_ready_status(c));
    maybe_quit(pc);
}

static void conn_job_done(void *ud, connection_t *c, smtp_job_t *job)
{
    pool_conn_t *pc = ud;
    send_req_t *r = job->user;
    queue_remove(&r->node);
    r->pc = NULL;
    r->held = false; /* ended while its end of data waited for the mark: nothing to release */
    pc->load--;
    if (job->outcome == SMTP_JOB_RETRYABLE)
        queue_insert_tail(&pc->parked, &r->node); /* decided once the connection's end is known */
    else
        email__send_req_complete_job(r);
    kick(pc->t); /* room for one more here */
    maybe_quit(pc);
}

typedef struct progress_event {
    email_progress_cb cb;
    void *data;
    uint64_t id, sent, total;
} progress_event_t;

static void deliver_progress(void *arg)
{
    progress_event_t *p = arg;
    p->cb(p->id, p->sent, p->total, p->data);
    free(p);
}

/* Progress reaches the caller every 64 KiB and at the end, not at every write. */
#define PROGRESS_STEP (64 * 1024)

static void conn_progress(void *ud, connection_t *c, smtp_job_t *job, uint64_t sent,
                          uint64_t total)
{
    send_req_t *r = job->user;
    if (!r->progress || (sent < total && sent - r->progress_shown < PROGRESS_STEP))
        return;
    progress_event_t *p = malloc(sizeof *p);
    if (!p)
        return; /* progress is advisory: the outcome still comes */
    r->progress_shown = sent;
    *p = (progress_event_t){r->progress, r->progress_data, r->id, sent, total};
    email__runtime_deliver(deliver_progress, p);
}

/* A parked request may go again: once more on a fresh connection when the lost one had worked
 * (a link of the chain of causes kept, should that attempt fail too); as if never tried when
 * the lost one never worked but others of the pool live. False when it may not. */
static bool may_retry(email_transporter_t *t, send_req_t *r, bool was_ready, bool others)
{
    if (t->expired || (was_ready ? r->attempts >= 2 : !others))
        return false;
    if (was_ready) {
        r->attempts++;
        if (r->job.status.error)
            email__errors_add(&r->earlier, r->job.status.error, r->job.status.status_text,
                              NULL);
    }
    char err[256];
    return email__send_req_rewind(r, err, sizeof err) == 0;
}

/* Messages pc cut off before their end of data go again first in line, in their original order,
 * when they may; otherwise the reason the session failed is theirs. */
static void decide_parked(pool_conn_t *pc, bool was_ready, bool others,
                          const email_status_t *why)
{
    email_transporter_t *t = pc->t;
    queue_t retry;
    queue_init(&retry);
    send_req_t *r;
    while ((r = pop(&pc->parked))) {
        if (may_retry(t, r, was_ready, others))
            queue_insert_tail(&retry, &r->node);
        else
            email__send_req_fail(r, was_ready ? &r->job.status : why);
    }
    queue_add(&retry, &t->waiting);
    queue_move(&retry, &t->waiting);
}

static void conn_closed(void *ud, connection_t *c, const email_status_t *why)
{
    pool_conn_t *pc = ud;
    email_transporter_t *t = pc->t;
    bool was_ready = email__connection_was_ready(c);
    queue_remove(&pc->node);
    t->nconns--;
    bool others = t->nconns > 0;
    /* a connection of the pool refused while others work: the server takes no more */
    if (!was_ready && others && t->pool_limit > t->nconns)
        t->pool_limit = t->nconns;
    if (!others)
        openers_finish(t, why->error ? why->error : EMAIL_ECLOSED, why);
    decide_parked(pc, was_ready, others, why);
    free(pc);
    if (!was_ready && !others)
        fail_all(&t->waiting, why); /* the connection never worked: what waits fails the same */
    kick(t);
    maybe_finish_free(t);
}

void email__transporter_op_open(void *arg)
{
    open_op_t *o = arg;
    email_transporter_t *t = o->t;
    queue_t *n;
    queue_foreach (n, &t->conns) {
        if (email__connection_is_ready(pc_of(n)->conn)) {
            opener_finish(t, o, 0, email__connection_ready_status(pc_of(n)->conn));
            return;
        }
    }
    queue_insert_tail(&t->openers, &o->node);
    /* no connection came of it, so nothing has ended o meanwhile */
    if (!t->nconns && !open_connection(t)) {
        queue_remove(&o->node);
        email_status_t s;
        email__status_init(&s);
        email__status_fail(&s, EMAIL_ENOMEM, "out of memory");
        opener_finish(t, o, EMAIL_ENOMEM, &s);
    }
}

void email__transporter_op_send(void *arg)
{
    send_req_t *r = arg;
    email_transporter_t *t = r->t;
    if (t->open_failed) {
        email_status_t nomem;
        if (!t->open_status) {
            email__status_init(&nomem);
            email__status_fail(&nomem, EMAIL_ENOMEM, "the session could not be opened: out of "
                                                    "memory");
        }
        email__send_req_fail(r, t->open_status ? t->open_status : &nomem);
        return;
    }
    if (t->freeing) {
        email_status_t s;
        email__status_init(&s);
        email__status_fail(&s, EMAIL_ESHUTDOWN, "the transporter is being freed");
        email__send_req_fail(r, &s);
        return;
    }
    if (!r->progress) {
        r->progress = t->progress;
        r->progress_data = t->progress_data;
    }
    queue_insert_tail(&t->waiting, &r->node);
    kick(t);
}

/* The request of id in q, or NULL. */
static send_req_t *find(queue_t *q, uint64_t id)
{
    queue_t *n;
    queue_foreach (n, q)
        if (req_of(n)->id == id)
            return req_of(n);
    return NULL;
}

/* Takes back the request of id from the connection holding it while its commands have not gone
 * out: 0, EMAIL_EBUSY or EMAIL_ENOTFOUND. */
static int cancel_in_conn(email_transporter_t *t, uint64_t id, send_req_t **out)
{
    queue_t *n;
    queue_foreach (n, &t->conns) {
        pool_conn_t *pc = pc_of(n);
        send_req_t *r = find(&pc->in_conn, id);
        if (!r)
            continue;
        if (email__connection_cancel(pc->conn, &r->job) != 0)
            return EMAIL_EBUSY;
        pc->load--;
        *out = r;
        return 0;
    }
    return EMAIL_ENOTFOUND;
}

int email__transporter_cancel_queued(email_transporter_t *t, uint64_t id)
{
    send_req_t *r = find(&t->waiting, id);
    if (!r) {
        int rc = cancel_in_conn(t, id, &r);
        if (rc)
            return rc;
    }
    queue_remove(&r->node);
    email_status_t s;
    email__status_init(&s);
    email__status_fail(&s, EMAIL_ECANCELED, "the message was canceled before it was sent");
    email__send_req_fail(r, &s);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Freeing: QUIT after what is queued, wait for the connections to close                        */

static void free_now(email_transporter_t *t)
{
    if (t->freer)
        email__runtime_call_done(t->freer->call); /* the caller destroys t */
    else
        email__transporter_destroy(t);
}

static void on_deadline_closed(uv_handle_t *h)
{
    email_transporter_t *t = h->data;
    free(h);
    free_now(t);
}

static void maybe_finish_free(email_transporter_t *t)
{
    if (!t->freeing || t->nconns || !queue_empty(&t->waiting))
        return;
    if (t->free_deadline) {
        uv_close((uv_handle_t *)t->free_deadline, on_deadline_closed);
        t->free_deadline = NULL;
        return;
    }
    free_now(t);
}

/* Ends every connection now with (error, text). */
static void abort_all(email_transporter_t *t, int error, const char *text)
{
    queue_t *n;
    queue_foreach (n, &t->conns) {
        pool_conn_t *pc = pc_of(n);
        pc->closing = true;
        email__connection_abort(pc->conn, error, text); /* closed comes later: n stays */
    }
}

/* The time given to queued messages is over: what is left fails. */
static void on_free_deadline(uv_timer_t *h)
{
    email_transporter_t *t = h->data;
    email_status_t s;
    t->expired = true;
    email__status_init(&s);
    email__status_fail(&s, EMAIL_ETIMEDOUT,
                      "the session was closed before this message could be sent (timeout)");
    fail_all(&t->waiting, &s);
    abort_all(t, EMAIL_ETIMEDOUT,
              "the session was closed before every message could be sent (timeout)");
    maybe_finish_free(t);
}

void email__transporter_start_free(email_transporter_t *t)
{
    t->freeing = true;
    if (t->nconns || !queue_empty(&t->waiting)) {
        t->free_deadline = malloc(sizeof *t->free_deadline);
        if (t->free_deadline) {
            uv_timer_init(email__runtime_loop(), t->free_deadline);
            t->free_deadline->data = t;
            uv_timer_start(t->free_deadline, on_free_deadline,
                           (uint64_t)t->reply_timeout_ms, 0);
        }
    }
    queue_t *n;
    queue_foreach (n, &t->conns) {
        pool_conn_t *pc = pc_of(n);
        if (!pc->closing && !pc->load && queue_empty(&t->waiting) &&
            !email__connection_is_ready(pc->conn)) {
            pc->closing = true; /* still setting up, with nothing to carry */
            email__connection_abort(pc->conn, EMAIL_ECANCELED, "the transporter was freed");
        } else {
            maybe_quit(pc); /* the others QUIT once their last request is done */
        }
    }
    maybe_finish_free(t);
}

void email__transporter_quiesce(email_transporter_t *t)
{
    queue_t *n;
    queue_foreach (n, &t->conns) {
        pc_of(n)->drain = true;
        maybe_quit(pc_of(n));
    }
    if (t->on_quiesce)
        t->on_quiesce(t->quiesce_arg);
}

static void start_free_cb(void *arg)
{
    email__transporter_start_free(arg);
}

void email__transporter_free_later(email_transporter_t *t)
{
    /* from a fresh loop iteration: the caller may be inside one of t's own callbacks */
    email__runtime_post(start_free_cb, t);
}
