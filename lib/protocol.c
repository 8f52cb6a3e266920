/*
 * The SMTP client engine, sans I/O (RFC 5321, 2920 pipelining, 3207 STARTTLS, 4954 AUTH,
 * 1870 SIZE, 6152 8BITMIME, 6531 SMTPUTF8, 2034 enhanced codes): its core. Bytes in and out, the
 * state and its one setter, the end of the session. The setup (greeting to ready) is in
 * protocol_setup.c, the transactions in protocol_txn.c.
 *
 * Every command sent pushes an entry on a FIFO of expected replies; every reply pops the head and
 * is handled by what that entry says. Without PIPELINING the FIFO never holds more than one
 * entry; with it, MAIL + RCPT... + DATA go out as one group, and the next message's group right
 * behind the previous end of data, so a stream of messages costs one round trip each.
 */
#include "protocol_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* For the state callback, in the order of enum state. */
static const char *const state_names[] = {
    "GREETING", "EHLO", "HELO", "STARTTLS", "TLS_HANDSHAKE", "AUTH", "READY", "QUIT", "CLOSED",
    "CONNECTING",
};
_Static_assert(sizeof state_names / sizeof *state_names == ST_CONNECTING + 1,
               "one name per state");

void email__smtp_logf(smtp_engine_t *e, char kind, const char *fmt, ...)
{
    if (!e->cb.log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* an event is one line: a multi-line reply quoted in it (a Gmail 535) is joined */
    for (char *p = line; (p = strpbrk(p, "\r\n"));)
        *p = ' ';
    e->cb.log(e->ud, kind, line);
}

void email__smtp_set_state(smtp_engine_t *e, enum state s)
{
    enum state old = e->state;
    e->state = s;
    if (s != old && e->cb.state)
        e->cb.state(e->ud, state_names[old], state_names[s]);
}

int email__smtp_send_line(smtp_engine_t *e, const char *line, const char *shown)
{
    if (email__buf_puts(&e->out, line) || email__buf_puts(&e->out, "\r\n"))
        return EMAIL_ENOMEM;
    e->setup_end = e->taken + e->out.len;
    if (e->cb.log)
        e->cb.log(e->ud, 'C', shown ? shown : line);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */

smtp_engine_t *email__smtp_engine_new(const smtp_engine_config_t *config,
                               const smtp_engine_callbacks_t *callbacks, void *ud)
{
    smtp_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *config;
    e->cfg.helo_name = email__strdup(config->helo_name ? config->helo_name : "localhost");
    e->cfg.creds.user = email__strdup(config->creds.user);
    e->cfg.creds.password = email__strdup(config->creds.password);
    e->cfg.creds.token = email__strdup(config->creds.token);
    if (!e->cfg.window)
        e->cfg.window = 100;
    e->cb = *callbacks;
    e->ud = ud;
    queue_init(&e->queue);
    email__smtp_reply_parser_init(&e->parser);
    email__buf_init(&e->out);
    email__status_init(&e->status);
    if (!e->cfg.helo_name || (config->creds.user && !e->cfg.creds.user) ||
        (config->creds.password && !e->cfg.creds.password) ||
        (config->creds.token && !e->cfg.creds.token)) {
        email__smtp_engine_free(e);
        return NULL;
    }
    e->state = config->wait_start ? ST_CONNECTING : ST_GREETING; /* the first state, no change */
    return e;
}

void email__smtp_engine_free(smtp_engine_t *e)
{
    if (!e)
        return;
    free((char *)e->cfg.helo_name);
    free((char *)e->cfg.creds.user);
    email__free_secret((char *)e->cfg.creds.password);
    email__free_secret((char *)e->cfg.creds.token);
    email__scram_free(e->scram);
    email__smtp_reply_parser_free(&e->parser);
    email__buf_free(&e->out);
    email__buf_free(&e->chunk);
    email_ring_free(&e->fifo);
    free(e);
}

/* ------------------------------------------------------------------------------------------- */
/* Ending the session                                                                           */

/*
 * Never connected: nothing reached the server. The failure is logged first, then each queued
 * job gets it in the transport's own words. The state stays CONNECTING meanwhile, so a job that
 * a job_done submits is queued and fails the same way.
 */
static void end_unconnected(smtp_engine_t *e, int error, const char *text)
{
    email__status_fail(&e->status, error, "%s", text);
    if (e->cb.log) {
        char line[1024];
        snprintf(line, sizeof line, "SMTP Error: %s", text);
        e->cb.log(e->ud, '#', line);
    }
    email__smtp_fail_queued(e, error, text);
    if (e->state == ST_CLOSED)
        return; /* a job_done aborted again: that abort reported closed */
    email__smtp_set_state(e, ST_CLOSED);
    if (e->cb.closed)
        e->cb.closed(e->ud, &e->status);
}

void email__smtp_end_session(smtp_engine_t *e, int error, const char *text)
{
    if (e->state == ST_CLOSED)
        return;
    if (e->state == ST_CONNECTING) {
        end_unconnected(e, error, text);
        return;
    }
    char kept[sizeof e->status.status_text];
    if (e->quit_failure) {
        /* the setup failure stays the outcome; this only says why QUIT's answer never came */
        if (error)
            email__smtp_logf(e, '#', "SMTP Error: %s", text);
        error = e->status.error;
        email__strlcpy(kept, e->status.status_text, sizeof kept);
        text = kept;
    }
    email__smtp_set_state(e, ST_CLOSED);
    email__smtp_end_jobs(e, error, text);
    if (error && !e->status.error) {
        /* not the server's refusal: the last reply's code must not stand as the reason */
        e->status.success = false;
        e->status.error = error;
        e->status.status = 0;
        e->status.enhanced_code[0] = '\0';
        email__strlcpy(e->status.status_text, text, sizeof e->status.status_text);
    }
    if (error)
        email__smtp_logf(e, '#', "SMTP Error: %s", text);
    if (e->cb.closed)
        e->cb.closed(e->ud, &e->status);
}

/* The session's outcome (what `closed` reports): our words, the server's code when it refused. */
static void record_failure(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *text)
{
    if (e->quit_failure)
        return; /* the setup failure that made us QUIT stays the outcome */
    email__status_fail(&e->status, error, "%s", text);
    if (r) {
        e->status.status = r->code;
        email__strlcpy(e->status.enhanced_code, r->enhanced, sizeof e->status.enhanced_code);
    }
}

void email__smtp_fail_session(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *fmt,
                              ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record_failure(e, error, r, text);
    email__smtp_end_session(e, error, text);
}

/*
 * QUIT before closing, as 4D does (and as RFC 5321 asks after a 554 greeting). The failure stays
 * the outcome; the session ends at QUIT's reply, or when the caller gives up waiting for it
 * (abort). Never after a 421, a protocol error or a broken transport: those end the session at
 * once (email__smtp_fail_session).
 */
void email__smtp_quit_after_failure(smtp_engine_t *e, int error, const smtp_reply_t *r,
                              const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record_failure(e, error, r, text);
    e->quit_failure = true;
    email__smtp_set_state(e, ST_QUIT);
    if (email__smtp_send_line(e, "QUIT", NULL))
        email__smtp_end_session(e, EMAIL_ENOMEM, "out of memory");
}

void email__smtp_engine_abort(smtp_engine_t *e, int error, const char *text)
{
    email__smtp_end_session(e, error ? error : EMAIL_ECLOSED, text ? text : email_strerror(error));
}

/* ------------------------------------------------------------------------------------------- */
/* Bytes in                                                                                     */

static void log_reply(smtp_engine_t *e, const smtp_reply_t *r)
{
    if (!e->cb.log)
        return;
    for (size_t i = 0; i < r->nlines; i++)
        e->cb.log(e->ud, 'S', r->lines[i]);
}

/* The output offset just past the command the next reply answers; false when none is awaited. */
static bool awaited_end(const smtp_engine_t *e, uint64_t *end)
{
    if (e->state == ST_CONNECTING)
        return false;
    if (e->state == ST_READY) {
        if (!e->fifo.len)
            return false;
        *end = fifo_at(e, 0)->end;
        return true;
    }
    *end = e->state == ST_GREETING ? 0 : e->setup_end;
    return true;
}

static void on_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    log_reply(e, r);
    e->replies++;
    uint64_t end;
    if (!awaited_end(e, &end) || end > e->feed_seen) {
        /* sent before the server could have read the command: taken as its answer, it would
         * shift every later reply onto the wrong command */
        int first_line = (int)strcspn(r->text, "\n");
        if (r->code == 421)
            email__smtp_fail_session(e, EMAIL_ECLOSED, r,
                               "the server is closing the connection: %d %.*s", r->code,
                               first_line, r->text);
        else
            email__smtp_fail_session(e, EMAIL_EPROTO, r, "reply without a command: %d %.*s",
                                     r->code, first_line, r->text);
        return;
    }
    if (e->state != ST_READY)
        email__smtp_setup_reply(e, r, left);
    else
        email__smtp_job_reply(e, fifo_pop(e), r);
}

int email__smtp_engine_feed(smtp_engine_t *e, const char *data, size_t n)
{
    if (e->state == ST_CLOSED)
        return e->status.error ? e->status.error : EMAIL_ECLOSED;
    if (e->state == ST_TLS_HANDSHAKE && n) {
        email__smtp_fail_session(e, EMAIL_EPROTO, NULL, "unexpected data during the TLS handshake");
        return EMAIL_EPROTO;
    }
    e->feed_seen = e->taken + e->handed;
    while (n && e->state != ST_CLOSED) {
        smtp_reply_t r;
        size_t used = 0;
        const char *err = NULL;
        int rc = email__smtp_reply_parse(&e->parser, data, n, &used, &r, &err);
        if (rc < 0) {
            email__smtp_fail_session(e, EMAIL_EPROTO, NULL, "invalid reply from the server: %s",
                               err ? err : "malformed");
            return EMAIL_EPROTO;
        }
        data += used;
        n -= used;
        if (rc == 0)
            break;
        on_reply(e, &r, n);
        email__smtp_reply_free(&r);
        if (e->state == ST_TLS_HANDSHAKE)
            break; /* bytes after the 220 to STARTTLS were refused by its handler */
    }
    return e->state == ST_CLOSED && e->status.error ? e->status.error : 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Bytes out                                                                                    */

size_t email__smtp_engine_take(smtp_engine_t *e, const char **data)
{
    static const char empty[1];
    /* the previous take's bytes are the caller's now; out[0] is at offset `taken` */
    email__buf_consume(&e->out, e->handed);
    e->taken += e->handed;
    e->handed = 0;
    if (e->body_job && e->state != ST_CLOSED)
        email__smtp_fill_body(e);
    e->handed = e->out.len;
    *data = e->out.len ? e->out.data : empty;
    return e->out.len;
}

void email__smtp_engine_written(smtp_engine_t *e, size_t n)
{
    e->written += n;
    smtp_job_t *j = e->progress_job;
    if (!j || !e->cb.progress || e->written <= j->body_start)
        return;
    /* wire bytes include dot-stuffing: clamp to the message size, which is what users know */
    bool done = j->phase == PH_EOD && e->written >= j->eod_offset;
    uint64_t sent = done ? j->size : e->written - j->body_start;
    if (sent > j->size)
        sent = j->size;
    if (done)
        e->progress_job = NULL;
    if (sent != j->progress_sent || done) {
        j->progress_sent = sent;
        e->cb.progress(e->ud, j, sent, j->size);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The caller's requests and questions                                                          */

bool email__smtp_engine_waiting(const smtp_engine_t *e)
{
    switch (e->state) {
    case ST_READY:
        return e->fifo.len > 0 || e->body_job;
    case ST_CLOSED:
    case ST_CONNECTING:
        return false;
    default:
        return true;
    }
}

bool email__smtp_engine_idle(const smtp_engine_t *e)
{
    return e->state == ST_READY && !e->fifo.len && !e->body_job && queue_empty(&e->queue);
}

bool email__smtp_engine_is_ready(const smtp_engine_t *e)
{
    return e->ready_reported && e->state != ST_CLOSED;
}

bool email__smtp_engine_quitting(const smtp_engine_t *e)
{
    return e->state == ST_QUIT;
}

bool email__smtp_engine_is_closed(const smtp_engine_t *e)
{
    return e->state == ST_CLOSED;
}

uint64_t email__smtp_engine_replies(const smtp_engine_t *e)
{
    return e->replies;
}

int email__smtp_engine_submit(smtp_engine_t *e, smtp_job_t *j)
{
    if (e->state == ST_CLOSED || e->state == ST_QUIT || e->quit_wanted || e->dying)
        return EMAIL_ESHUTDOWN;
    if (!j->nrcpts || !j->read)
        return EMAIL_EINVAL;
    j->phase = PH_QUEUED;
    j->mail_ok = j->mail_replied = false;
    j->chunk_failed = false;
    j->accepted = j->replied = 0;
    j->fail_code = 0;
    j->fail_text = NULL;
    j->body_bytes = 0;
    j->body_read = j->eod_held = false;
    email__status_init(&j->status);
    email__refusals_init(&j->refusals);
    queue_insert_tail(&e->queue, &j->node);
    email__smtp_pump(e);
    return 0;
}

int email__smtp_engine_cancel(smtp_engine_t *e, smtp_job_t *job)
{
    /* never submitted (a zeroed node), or taken off the queue when its commands went out */
    if (!job->node.next || queue_empty(&job->node))
        return EMAIL_EBUSY;
    queue_remove(&job->node);
    return 0;
}

void email__smtp_engine_quit(smtp_engine_t *e)
{
    if (e->state == ST_CLOSED || e->state == ST_QUIT)
        return;
    /* before ready, QUIT goes once the setup is done and what was queued is sent */
    e->quit_wanted = true;
    if (e->state == ST_READY)
        email__smtp_pump(e);
}

const email_status_t *email__smtp_engine_status(const smtp_engine_t *e)
{
    return &e->status;
}

unsigned email__smtp_engine_caps(const smtp_engine_t *e)
{
    return e->caps;
}

uint64_t email__smtp_engine_size_limit(const smtp_engine_t *e)
{
    return e->size_limit;
}

unsigned email__smtp_engine_auth_mechs(const smtp_engine_t *e)
{
    return e->auth_mechs;
}
