/*
 * The transporter's queue, on the loop thread only: requests wait in t->waiting until the
 * keep-alive connection takes them (t->in_conn); a request the connection lost before its end of
 * data is parked until the connection's end says whether it is tried again. A free QUITs after
 * what is queued, within a deadline.
 */
#include "transporter_internal.h"

#include <stdlib.h>

#include "util.h"

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

static connection_t *open_connection(email_transporter_t *t)
{
    connection_config_t cfg;
    email__transporter_make_config(t, &cfg);
    t->conn_session = cfg.session_id;
    connection_t *c = email__connection_new(email__runtime_loop(), &cfg, &conn_cbs, t);
    if (c)
        email__connection_start(c); /* a failure aborts it: conn_closed brings the reason */
    return c;
}

/* Gives the waiting requests to the connection, opening one when needed. */
static void kick(email_transporter_t *t)
{
    if (queue_empty(&t->waiting))
        return;
    if (!t->conn && !(t->conn = open_connection(t))) {
        email_status_t s;
        email__status_init(&s);
        email__status_fail(&s, EMAIL_ENOMEM, "out of memory");
        fail_all(&t->waiting, &s);
        return;
    }
    send_req_t *r;
    while ((r = pop(&t->waiting))) {
        /* in the connection before submitting: the job can end inside email__connection_submit (too
         * large, or its body unreadable), and its job_done takes it out and completes it */
        r->session = t->conn_session;
        queue_insert_tail(&t->in_conn, &r->node);
        if (email__connection_submit(t->conn, &r->job) != 0) {
            /* closing: it goes on the next connection, first in line */
            queue_remove(&r->node);
            queue_insert_head(&t->waiting, &r->node);
            return;
        }
    }
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

/* Ends the opens waiting for the connection: rc 0 with its ready status, or the failure. */
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
    email_transporter_t *t = ud;
    openers_finish(t, 0, email__connection_ready_status(c));
    if (!t->keep_alive && queue_empty(&t->in_conn) && queue_empty(&t->waiting))
        email__connection_quit(c);
}

static void conn_job_done(void *ud, connection_t *c, smtp_job_t *job)
{
    email_transporter_t *t = ud;
    send_req_t *r = job->user;
    queue_remove(&r->node);
    if (job->outcome == SMTP_JOB_RETRYABLE)
        queue_insert_tail(&t->parked, &r->node); /* decided once the connection's end is known */
    else
        email__send_req_complete_job(r);
    if ((!t->keep_alive || t->freeing) && queue_empty(&t->in_conn) && queue_empty(&t->waiting) &&
        email__connection_is_ready(c))
        email__connection_quit(c);
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

/* Messages cut off before their end of data: once more on a fresh connection (first in line, in
 * their original order) when the lost one had worked; otherwise the reason the session failed is
 * theirs. */
static void decide_parked(email_transporter_t *t, bool was_ready, const email_status_t *why)
{
    queue_t retry;
    queue_init(&retry);
    send_req_t *r;
    while ((r = pop(&t->parked))) {
        if (was_ready && r->attempts < 2 && !t->expired) {
            char err[256];
            r->attempts++;
            /* a link of the chain of causes, should the next attempt fail too */
            if (r->job.status.error)
                email__errors_add(&r->earlier, r->job.status.error, r->job.status.status_text,
                                 NULL);
            if (email__send_req_rewind(r, err, sizeof err) == 0) {
                queue_insert_tail(&retry, &r->node);
                continue;
            }
        }
        email__send_req_fail(r, was_ready ? &r->job.status : why);
    }
    queue_add(&retry, &t->waiting);
    queue_move(&retry, &t->waiting);
}

static void conn_closed(void *ud, connection_t *c, const email_status_t *why)
{
    email_transporter_t *t = ud;
    bool was_ready = email__connection_was_ready(c);
    if (t->conn == c)
        t->conn = NULL;
    openers_finish(t, why->error ? why->error : EMAIL_ECLOSED, why);
    decide_parked(t, was_ready, why);
    if (!was_ready)
        fail_all(&t->waiting, why); /* the connection never worked: what waits fails the same */
    kick(t);
    maybe_finish_free(t);
}

void email__transporter_op_open(void *arg)
{
    open_op_t *o = arg;
    email_transporter_t *t = o->t;
    if (t->conn && email__connection_is_ready(t->conn)) {
        opener_finish(t, o, 0, email__connection_ready_status(t->conn));
        return;
    }
    queue_insert_tail(&t->openers, &o->node);
    /* no connection came of it, so nothing has ended o meanwhile */
    if (!t->conn && !(t->conn = open_connection(t))) {
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

int email__transporter_cancel_queued(email_transporter_t *t, uint64_t id)
{
    send_req_t *r = find(&t->waiting, id);
    if (!r) {
        /* given to the connection: only while its commands have not gone out */
        r = find(&t->in_conn, id);
        if (!r)
            return EMAIL_ENOTFOUND;
        if (!t->conn || email__connection_cancel(t->conn, &r->job) != 0)
            return EMAIL_EBUSY;
    }
    queue_remove(&r->node);
    email_status_t s;
    email__status_init(&s);
    email__status_fail(&s, EMAIL_ECANCELED, "the message was canceled before it was sent");
    email__send_req_fail(r, &s);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Freeing: QUIT after what is queued, wait for the connection to close                         */

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
    if (!t->freeing || t->conn || !queue_empty(&t->waiting) || !queue_empty(&t->parked) ||
        !queue_empty(&t->in_conn))
        return;
    if (t->free_deadline) {
        uv_close((uv_handle_t *)t->free_deadline, on_deadline_closed);
        t->free_deadline = NULL;
        return;
    }
    free_now(t);
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
    if (t->conn)
        email__connection_abort(t->conn, EMAIL_ETIMEDOUT,
                         "the session was closed before every message could be sent (timeout)");
    maybe_finish_free(t);
}

void email__transporter_start_free(email_transporter_t *t)
{
    t->freeing = true;
    if (t->conn || !queue_empty(&t->waiting)) {
        t->free_deadline = malloc(sizeof *t->free_deadline);
        if (t->free_deadline) {
            uv_timer_init(email__runtime_loop(), t->free_deadline);
            t->free_deadline->data = t;
            uv_timer_start(t->free_deadline, on_free_deadline,
                           (uint64_t)t->reply_timeout_ms, 0);
        }
    }
    if (t->conn) {
        if (email__connection_is_ready(t->conn) || !queue_empty(&t->in_conn) ||
            !queue_empty(&t->waiting))
            email__connection_quit(t->conn);
        else
            email__connection_abort(t->conn, EMAIL_ECANCELED, "the transporter was freed");
    }
    maybe_finish_free(t);
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
