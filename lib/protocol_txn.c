/*
 * The engine's transactions: MAIL, RCPT, DATA or BDAT for each job, its body, and its outcome.
 * Each command's reply has its own handler, chosen by the FIFO entry the reply pops.
 */
#include "protocol_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------- */
/* Ending jobs                                                                                  */

static void job_set_failure(smtp_job_t *j, const smtp_reply_t *r)
{
    if (j->fail_code)
        return; /* the first failure is the reason */
    j->fail_code = r->code;
    email__strlcpy(j->fail_enhanced, r->enhanced, sizeof j->fail_enhanced);
    j->fail_text = email__strdup(r->text);
}

/* Replaces the recorded reason (a later, more telling refusal). */
static void job_set_reason(smtp_job_t *j, const smtp_reply_t *r)
{
    j->fail_code = 0;
    free(j->fail_text);
    j->fail_text = NULL;
    job_set_failure(j, r);
}

/* Forgets every reference to a job that is ending. */
static void job_unlink(smtp_engine_t *e, smtp_job_t *j)
{
    if (e->progress_job == j)
        e->progress_job = NULL;
    if (e->body_job == j)
        e->body_job = NULL;
    for (size_t i = 0; i < e->fifo.len; i++) {
        pending_reply_t *p = fifo_at(e, i);
        if (p->job == j)
            p->job = NULL;
    }
    if (j->phase != PH_QUEUED)
        e->jobs_in_flight--;
}

static void job_finish(smtp_engine_t *e, smtp_job_t *j, enum smtp_job_outcome outcome, int error,
                       const smtp_reply_t *r, const char *fmt, ...) EMAIL_PRINTF(6, 7);
static void job_finish(smtp_engine_t *e, smtp_job_t *j, enum smtp_job_outcome outcome, int error,
                       const smtp_reply_t *r, const char *fmt, ...)
{
    if (j->phase == PH_DONE)
        return;
    job_unlink(e, j); /* job_done may free the job: nothing here may point at it afterwards */
    j->phase = PH_DONE;
    j->outcome = outcome;
    email_status_t *s = &j->status;
    s->success = outcome == SMTP_JOB_SENT;
    s->error = error;
    s->recipients = j->nrcpts;
    s->rejected = j->refusals.n;
    if (r) {
        email__status_set_reply(s, r->code, r->enhanced, r->text);
    } else if (j->fail_code && error != EMAIL_EUNKNOWN && outcome != SMTP_JOB_RETRYABLE) {
        email__status_set_reply(s, j->fail_code, j->fail_enhanced, j->fail_text);
    } else {
        s->status = 0;
        s->enhanced_code[0] = '\0';
    }
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->status_text, sizeof s->status_text, fmt, ap);
        va_end(ap);
    }
    free(j->fail_text);
    j->fail_text = NULL;
    if (e->cb.job_done)
        e->cb.job_done(e->ud, j);
}

/* A transaction that cannot complete: the job fails with the reason its replies gave. */
static void finish_refused(smtp_engine_t *e, smtp_job_t *j)
{
    if (j->accepted == 0 && j->mail_ok && j->refusals.n)
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ERECIPIENTS, NULL,
                   "every recipient was refused: %s %s",
                   email__smtp_codes(j->fail_code, j->fail_enhanced).s,
                   j->fail_text ? j->fail_text : "");
    else
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ESERVER, NULL, NULL);
}

/* The first queued job, unlinked (the queue is consistent before its job_done may submit). */
static smtp_job_t *job_pop(smtp_engine_t *e)
{
    if (queue_empty(&e->queue))
        return NULL;
    queue_t *n = queue_head(&e->queue);
    queue_remove(n);
    return queue_data(n, smtp_job_t, node);
}

void email__smtp_end_jobs(smtp_engine_t *e, int error, const char *text)
{
    /* jobs in flight, in order */
    while (e->fifo.len) {
        pending_reply_t p = fifo_pop(e);
        smtp_job_t *j = p.job;
        if (!j || j->phase == PH_DONE)
            continue;
        if (j->phase == PH_EOD && ((j->mail_replied && !j->mail_ok) ||
                                   (j->replied == j->nrcpts && !j->accepted)))
            finish_refused(e, j); /* no recipient was accepted: nothing can be delivered */
        else if (j->phase == PH_EOD && e->written >= j->eod_offset && !e->server_closing)
            job_finish(e, j, SMTP_JOB_UNKNOWN, EMAIL_EUNKNOWN, NULL,
                       "the connection ended after the end of the message was sent and before "
                       "the server answered: the message may have been delivered (%s)",
                       text);
        else
            job_finish(e, j, SMTP_JOB_RETRYABLE, error, NULL,
                       "the connection ended before the message was sent: %s", text);
    }
    if (e->body_job && e->body_job->phase != PH_DONE)
        job_finish(e, e->body_job, SMTP_JOB_RETRYABLE, error, NULL,
                   "the connection ended before the message was sent: %s", text);
    e->body_job = NULL;
    for (smtp_job_t *j; (j = job_pop(e));)
        job_finish(e, j, SMTP_JOB_RETRYABLE, error, NULL,
                   "the connection ended before the message was sent: %s", text);
}

void email__smtp_fail_queued(smtp_engine_t *e, int error, const char *text)
{
    for (smtp_job_t *j; (j = job_pop(e));)
        job_finish(e, j, SMTP_JOB_RETRYABLE, error, NULL, "%s", text);
}

/* ------------------------------------------------------------------------------------------- */
/* Sending                                                                                      */

/* A command whose reply goes to cmd's handler for job j. */
static int send_cmd(smtp_engine_t *e, const char *line, enum cmd cmd, smtp_job_t *j)
{
    int rc = email__smtp_send_line(e, line, NULL);
    return rc ? rc : fifo_push(e, cmd, j);
}

/* An addr-spec is sent as is; angle brackets are added here. */
static int send_mail(smtp_engine_t *e, smtp_job_t *j)
{
    email_buf_t line;
    email__buf_init(&line);
    int rc = email__smtp_mail_line(e, j, &line);
    if (!rc)
        rc = send_cmd(e, line.data, CMD_MAIL, j);
    email__buf_free(&line);
    return rc;
}

static int send_rcpt(smtp_engine_t *e, smtp_job_t *j, size_t i)
{
    email_buf_t line;
    email__buf_init(&line);
    int rc = email__smtp_rcpt_line(e, j, i, &line);
    if (!rc)
        rc = send_cmd(e, line.data, CMD_RCPT, j);
    email__buf_free(&line);
    return rc;
}

/* Checks a job can go to this server at all; false when it was finished here. */
static bool job_fits(smtp_engine_t *e, smtp_job_t *j)
{
    if (e->size_limit && j->size > e->size_limit) {
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ESIZE, NULL,
                   "the message (%llu bytes) is larger than the server accepts (%llu bytes)",
                   (unsigned long long)j->size, (unsigned long long)e->size_limit);
        return false;
    }
    char why[400];
    if (!email__smtp_envelope_fits(e, j, why, sizeof why)) {
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ENOTSUP, NULL, "%s", why);
        return false;
    }
    return true;
}

/* CHUNKING is used only with PIPELINING: BDAT chunks then go without waiting for replies. */
static bool use_chunking(const smtp_engine_t *e)
{
    unsigned both = SMTP_CAP_CHUNKING | SMTP_CAP_PIPELINING;
    return !e->cfg.no_chunking && (e->caps & both) == both;
}

/* A job's commands go as one group only when the server pipelines and they fit the window. */
static bool pipelined(const smtp_engine_t *e, const smtp_job_t *j)
{
    return (e->caps & SMTP_CAP_PIPELINING) && !j->lockstep;
}

static void start_body(smtp_engine_t *e, smtp_job_t *j, bool bdat)
{
    j->phase = PH_BODY;
    j->body_start = e->taken + e->out.len;
    j->progress_sent = 0;
    e->body_job = j;
    e->progress_job = j;
    e->bdat = bdat;
    email__crlf_init(&e->crlf);
    email__dotstuff_init(&e->dot);
}

/* MAIL, and with pipelining every RCPT and DATA (or BDAT and the body) behind it. 0, or
 * EMAIL_ENOMEM; *more is false when nothing may follow until replies come. */
static int send_transaction(smtp_engine_t *e, smtp_job_t *j, bool pipelining, bool *more)
{
    j->phase = PH_SENT;
    e->jobs_in_flight++;
    *more = false;
    int rc = 0;
    /* A BDAT stream: the previous transaction is unanswered, and a server that keeps a failed
     * one open (RFC 3030 leaves that to it) would take this MAIL as nested, or these RCPTs into
     * that transaction. RSET pipelines, costs no round trip, and is a no-op after a success. */
    if (pipelining && use_chunking(e) && e->fifo.len &&
        fifo_at(e, e->fifo.len - 1)->cmd != CMD_RSET)
        rc = send_cmd(e, "RSET", CMD_RSET, NULL);
    if (!rc)
        rc = send_mail(e, j);
    if (!pipelining)
        return rc;
    for (size_t i = 0; !rc && i < j->nrcpts; i++)
        rc = send_rcpt(e, j, i);
    if (!rc && use_chunking(e)) {
        /* BDAT: the body follows at once, no 354 to wait for, no dot-stuffing */
        start_body(e, j, true);
        return 0;
    }
    if (!rc)
        rc = send_cmd(e, "DATA", CMD_DATA, j);
    e->body_wait = true;
    *more = true;
    return rc;
}

void email__smtp_pump(smtp_engine_t *e)
{
    while (e->state == ST_READY && !e->dying && !e->server_closing && !e->body_wait &&
           !e->body_job) {
        smtp_job_t *j = NULL;
        if (!queue_empty(&e->queue))
            j = queue_data(queue_head(&e->queue), smtp_job_t, node);
        if (!j) {
            if (e->quit_wanted && !e->fifo.len) {
                email__smtp_set_state(e, ST_QUIT);
                if (email__smtp_send_line(e, "QUIT", NULL))
                    email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            }
            return;
        }
        j->lockstep = j->nrcpts + 2 > e->cfg.window;
        bool pipelining = pipelined(e, j);
        if (e->fifo.len && (!pipelining || e->fifo.len + j->nrcpts + 2 > e->cfg.window))
            return; /* lockstep jobs wait for an empty pipe too */
        job_pop(e);
        if (!job_fits(e, j))
            continue;
        bool more;
        int rc = send_transaction(e, j, pipelining, &more);
        if (rc) {
            email__smtp_fail_session(e, rc, NULL, "%s", email_strerror(rc));
            return;
        }
        if (!more)
            return;
    }
}

/* A transaction that cannot complete: end the job, reset the server's transaction. */
static void abandon_transaction(smtp_engine_t *e, smtp_job_t *j)
{
    /* RSET first: job_done may queue the next message or ask for QUIT, which must come after */
    if (send_cmd(e, "RSET", CMD_RSET, NULL)) {
        email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
        return;
    }
    finish_refused(e, j);
}

/* ------------------------------------------------------------------------------------------- */
/* One handler per command that awaits a reply                                                  */

static bool positive(const smtp_reply_t *r)
{
    return r->code >= 200 && r->code < 300;
}

static void on_mail_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    bool ok = positive(r);
    j->mail_ok = ok;
    j->mail_replied = true;
    if (!ok)
        job_set_failure(j, r);
    if (pipelined(e, j))
        return; /* the rest of the transaction already went */
    if (!ok)
        abandon_transaction(e, j);
    else if (send_rcpt(e, j, 0))
        email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
}

static void on_rcpt_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    size_t i = j->replied++;
    if (positive(r)) {
        j->accepted++;
    } else if (j->mail_ok) {
        if (email__refusals_add(&j->refusals, j->rcpts[i], r->code, r->text)) {
            email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            return;
        }
        job_set_failure(j, r);
    }
    if (pipelined(e, j))
        return;
    int rc;
    if (j->replied < j->nrcpts) {
        rc = send_rcpt(e, j, j->replied);
    } else if (j->accepted) {
        rc = send_cmd(e, "DATA", CMD_DATA, j);
        e->body_wait = true;
    } else {
        abandon_transaction(e, j);
        return;
    }
    if (rc)
        email__smtp_fail_session(e, rc, NULL, "out of memory");
}

/* RFC 2920: DATA accepted though the transaction failed: end it empty. */
static void send_empty_data(smtp_engine_t *e, smtp_job_t *j)
{
    if (email__buf_puts(&e->out, ".\r\n")) {
        email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
        return;
    }
    email__smtp_logf(e, 'C', ".");
    j->phase = PH_EOD;
    j->eod_offset = e->taken + e->out.len;
    if (fifo_push(e, CMD_EOD, j))
        email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
}

static void on_data_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    e->body_wait = false;
    if (r->code == 354) {
        if (j->mail_ok && j->accepted)
            start_body(e, j, false);
        else
            send_empty_data(e, j);
        return;
    }
    if (j->mail_ok && j->accepted)
        job_set_reason(j, r); /* DATA's refusal, not a recipient's, is the reason */
    abandon_transaction(e, j);
    email__smtp_pump(e);
}

static void on_eod_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    if (!j->mail_ok || !j->accepted)
        finish_refused(e, j); /* the empty data that closed a failed pipelined transaction */
    else if (positive(r))
        job_finish(e, j, SMTP_JOB_SENT, 0, r, NULL);
    else
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ESERVER, r, NULL);
    email__smtp_pump(e);
}

static void on_rset_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    (void)j;
    (void)r;
    email__smtp_pump(e);
}

static void on_bdat_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    if (positive(r) || j->chunk_failed)
        return;
    j->chunk_failed = true;
    if (j->mail_ok && j->accepted)
        job_set_reason(j, r); /* this refusal, not a recipient's, is the reason */
    if (e->body_job != j)
        return; /* BDAT LAST went: its reply ends the job */
    /* RFC 3030: no chunk may follow a refused one. The server discards those already on their
     * way (their replies find no job); RSET ends the transaction, then the next message. */
    email__buf_reset(&e->chunk);
    abandon_transaction(e, j);
    email__smtp_pump(e);
}

static void on_bdat_last_reply(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r)
{
    bool going = j->mail_ok && j->accepted && !j->chunk_failed;
    if (going && positive(r)) {
        job_finish(e, j, SMTP_JOB_SENT, 0, r, NULL);
        email__smtp_pump(e);
        return;
    }
    if (going)
        job_set_reason(j, r);
    /* A stream: the next message's RSET already went (send_transaction); another one now would
     * land inside its transaction. */
    if (e->fifo.len)
        finish_refused(e, j);
    else
        abandon_transaction(e, j); /* RSET, then the next message */
    email__smtp_pump(e);
}

/* A 421 once ready: this command's job has its answer, the rest end with the session. The
 * server read none of the commands behind it (RFC 5321 3.8: it closes after the 421), so a
 * message whose end went out in a stream was not delivered either: retryable, never unknown. */
static void on_closing_reply(smtp_engine_t *e, pending_reply_t p, const smtp_reply_t *r)
{
    /* whatever job_done submits or asks meanwhile must not go out */
    e->server_closing = true;
    if (p.job && (p.cmd == CMD_EOD || p.cmd == CMD_BDAT_LAST))
        job_finish(e, p.job, SMTP_JOB_FAILED, EMAIL_ESERVER, r, NULL);
    else if (p.job)
        job_finish(e, p.job, SMTP_JOB_RETRYABLE, EMAIL_ECLOSED, r, NULL);
    email__smtp_fail_session(e, EMAIL_ECLOSED, r, "the server is closing the connection: %s %s",
                             email__smtp_reply_codes(r).s, r->text);
}

typedef void job_handler_t(smtp_engine_t *e, smtp_job_t *j, const smtp_reply_t *r);

static job_handler_t *const job_handlers[] = {
    [CMD_MAIL] = on_mail_reply,
    [CMD_RCPT] = on_rcpt_reply,
    [CMD_DATA] = on_data_reply,
    [CMD_EOD] = on_eod_reply,
    [CMD_RSET] = on_rset_reply,
    [CMD_BDAT] = on_bdat_reply,
    [CMD_BDAT_LAST] = on_bdat_last_reply,
};

void email__smtp_job_reply(smtp_engine_t *e, pending_reply_t p, const smtp_reply_t *r)
{
    if (r->code == 421)
        on_closing_reply(e, p, r);
    else if (p.job || p.cmd == CMD_RSET) /* else its job already ended (read error) */
        job_handlers[p.cmd](e, p.job, r);
}

/* ------------------------------------------------------------------------------------------- */
/* Bodies                                                                                       */

/* Appends "BDAT n[ LAST]" and the chunk. */
static int put_bdat(smtp_engine_t *e, smtp_job_t *j, bool last)
{
    char line[64];
    snprintf(line, sizeof line, "BDAT %zu%s", e->chunk.len, last ? " LAST" : "");
    int rc = email__smtp_send_line(e, line, NULL);
    if (!rc)
        rc = email__buf_append(&e->out, e->chunk.data, e->chunk.len);
    email__buf_reset(&e->chunk);
    if (!rc && last) {
        j->phase = PH_EOD;
        j->eod_offset = e->taken + e->out.len;
        e->body_job = NULL; /* the next message's commands may follow at once (a stream) */
    }
    return rc ? rc : fifo_push(e, last ? CMD_BDAT_LAST : CMD_BDAT, j);
}

/*
 * The body could not be read: the data cannot be ended without delivering a truncated message.
 * The session is dropped, and nothing that job_done queues is written behind the partial body.
 */
static void body_unreadable(smtp_engine_t *e, smtp_job_t *j, int error)
{
    char why[300];
    if (j->read_error)
        j->read_error(j->ctx, error, why, sizeof why);
    else
        email__strlcpy(why, email_strerror(error), sizeof why);
    e->dying = true;
    e->body_job = NULL;
    /* DATA: the cut body is never handed over (BDAT: out holds whole, logged chunks) */
    uint64_t keep = j->body_start > e->taken ? j->body_start - e->taken : 0;
    if (!e->bdat && e->out.len > keep)
        e->out.len = (size_t)keep;
    job_finish(e, j, SMTP_JOB_FAILED, error, NULL, "reading the message failed: %s", why);
    email__smtp_fail_session(e, error, NULL, "reading the message failed, connection dropped");
}

/* got bytes of body (0 at its end) into the output: a BDAT chunk, or dot-stuffed data. */
static int put_body(smtp_engine_t *e, smtp_job_t *j, const char *data, ssize_t got)
{
    if (e->bdat) {
        if (got > 0)
            j->body_bytes += (uint64_t)got;
        int rc = got ? email__crlf_feed(&e->crlf, &e->chunk, data, (size_t)got)
                     : email__crlf_finish(&e->crlf, &e->chunk);
        if (!rc && (got == 0 || e->chunk.len >= BODY_CHUNK / 2))
            rc = put_bdat(e, j, got == 0);
        return rc;
    }
    if (got) {
        j->body_bytes += (uint64_t)got;
        return email__dotstuff_feed(&e->dot, &e->out, data, (size_t)got);
    }
    int rc = email__dotstuff_finish(&e->dot, &e->out);
    if (rc)
        return rc;
    email__smtp_logf(e, 'C', "<%llu bytes of message data>", (unsigned long long)j->body_bytes);
    email__smtp_logf(e, 'C', ".");
    j->phase = PH_EOD;
    j->eod_offset = e->taken + e->out.len;
    e->body_job = NULL;
    return fifo_push(e, CMD_EOD, j);
}

/* The next piece of j's body into chunk: its size, 0 at its end (once any hold is over), <0 on
 * a failure, or 1 with *held when the end of data must wait. */
static ssize_t next_piece(smtp_job_t *j, char *chunk, size_t size, bool *held)
{
    *held = false;
    if (j->body_read)
        return 0; /* released after a hold: the end of data goes now */
    ssize_t got = j->read(j->ctx, chunk, size);
    if (got != 0)
        return got;
    j->body_read = true;
    int hold = j->hold_eod ? j->hold_eod(j->ctx) : 0;
    *held = hold > 0;
    return hold < 0 ? hold : 0;
}

void email__smtp_fill_body(smtp_engine_t *e)
{
    smtp_job_t *j = e->body_job;
    char chunk[BODY_CHUNK / 4];
    while (e->body_job == j && !j->eod_held && e->out.len < BODY_CHUNK) {
        bool held;
        ssize_t got = next_piece(j, chunk, sizeof chunk, &held);
        if (got < 0) {
            body_unreadable(e, j, (int)got);
            return;
        }
        if (held) {
            j->eod_held = true; /* nothing goes behind it either: the session waits */
            return;
        }
        int rc = put_body(e, j, chunk, got);
        if (rc) {
            email__smtp_fail_session(e, rc, NULL, "out of memory");
            return;
        }
    }
    if (!e->body_job)
        email__smtp_pump(
            e); /* pipelining: the next message's commands go right behind end of data */
}

void email__smtp_engine_release(smtp_engine_t *e, smtp_job_t *job, int error)
{
    if (e->body_job != job || !job->eod_held || e->state == ST_CLOSED)
        return;
    job->eod_held = false;
    if (error)
        body_unreadable(e, job, error);
}
