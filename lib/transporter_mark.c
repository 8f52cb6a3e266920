/*
 * The end of data of a message from the outbox waits until its entry is marked on disk (see
 * lib/outbox_marks.c: a crash before the reply then reports it EMAIL_EUNKNOWN instead of sending
 * it again). The mark is made on libuv's thread pool, so that the loop never waits for the disk:
 * the engine holds the end of data (and what follows it) until the mark is done. With it go the
 * marks of the next messages its connection holds (MARK_AHEAD in all), so that one fsync covers
 * a flight; a crash can then report those EMAIL_EUNKNOWN although their end of data never went
 * out, never send one twice unreported. Loop thread.
 */
#include "transporter_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK_AHEAD 8

typedef struct mark_batch {
    uv_work_t work;
    outbox_t *ob;
    send_req_t *reqs[MARK_AHEAD];
    uint64_t ids[MARK_AHEAD];
    size_t n;
    int rc;                      /* the mark's errno */
} mark_batch_t;

static void mark_work(uv_work_t *w)
{
    mark_batch_t *b = w->data;
    b->rc = email__outbox_mark(b->ob, b->ids, b->n);
}

/* The request's end of data may go (or fails, the mark failed) and what waited for the mark
 * happens: r may be freed. */
static void mark_settled(send_req_t *r, bool ok)
{
    bool held = r->held, later = r->complete_later;
    r->mark = NULL;
    r->held = r->complete_later = false;
    if (held)
        email__connection_release(r->pc->conn, &r->job, ok ? 0 : EMAIL_EIO);
    else if (later)
        email__send_req_complete(r);
}

static void mark_done(uv_work_t *w, int status)
{
    mark_batch_t *b = w->data;
    bool ok = !status && !b->rc;
    /* every flag first: a release can bring the next message's end of data at once */
    for (size_t i = 0; i < b->n; i++) {
        outbox_entry_t *e = b->reqs[i]->entry;
        if (ok)
            e->flags |= OUTBOX_F_EOD_SENT;
        else
            snprintf(e->error, sizeof e->error, "outbox entry %llu cannot be marked: %s",
                     (unsigned long long)e->meta.id, strerror(status ? EIO : b->rc));
    }
    /* the requests not yet settled keep their mark pointer: their completion waits for this
     * loop even when a release ends them meanwhile */
    for (size_t i = 0; i < b->n; i++)
        mark_settled(b->reqs[i], ok);
    email__outbox_release(b->ob);
    free(b);
}

static bool needs_mark(const send_req_t *r, const outbox_t *ob)
{
    return r->entry && r->entry->ob == ob && !(r->entry->flags & OUTBOX_F_EOD_SENT) && !r->mark;
}

static void batch_add(mark_batch_t *b, send_req_t *r)
{
    r->mark = b;
    b->reqs[b->n] = r;
    b->ids[b->n++] = r->entry->meta.id;
}

/* Starts the mark of r's entry, with those of the next requests of its connection. */
static int start_batch(send_req_t *r)
{
    mark_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return EMAIL_ENOMEM;
    b->ob = r->entry->ob;
    batch_add(b, r);
    for (queue_t *n = queue_next(&r->node); r->pc && n != &r->pc->in_conn && b->n < MARK_AHEAD;
         n = queue_next(n)) {
        send_req_t *o = queue_data(n, send_req_t, node);
        if (needs_mark(o, b->ob))
            batch_add(b, o);
    }
    b->work.data = b;
    email__outbox_ref(b->ob);
    if (uv_queue_work(email__runtime_loop(), &b->work, mark_work, mark_done) != 0) {
        for (size_t i = 0; i < b->n; i++)
            b->reqs[i]->mark = NULL;
        email__outbox_release(b->ob);
        free(b);
        return EMAIL_ENOMEM;
    }
    return 0;
}

int email__send_req_hold_eod(void *ctx)
{
    send_req_t *r = ctx;
    if (!r->entry || (r->entry->flags & OUTBOX_F_EOD_SENT))
        return 0;
    if (!r->mark && start_batch(r) != 0) {
        snprintf(r->entry->error, sizeof r->entry->error,
                 "outbox entry %llu cannot be marked: out of memory",
                 (unsigned long long)r->entry->meta.id);
        return EMAIL_ENOMEM;
    }
    r->held = true;
    return 1;
}
