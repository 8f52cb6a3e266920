/*
 * One SMTP session over one TCP connection: the protocol engine driven over the transport,
 * with the connect timeout and a silence timer that restarts whenever bytes move.
 */
#include "connection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "transport.h"
#include "util.h"

/* Bytes handed to the kernel before more of a body is read. */
#define WRITE_HIGH_WATER (256 * 1024)

#define PREQUEUE_MAX 64

struct connection {
    uv_loop_t *loop;
    connection_config_t cfg;
    connection_callbacks_t cb;
    void *ud;
    char *host;

    transport_t *transport;
    smtp_engine_t *engine;
    uv_timer_t timer;
    bool timer_open;

    /* jobs submitted before the engine exists (while connecting) */
    smtp_job_t *pre_head, *pre_tail;
    bool quit_wanted;

    bool ready, closing, engine_closed, flushing;
    email_status_t ready_status;
    email_status_t why;           /* why the session ended */
    int closes_pending;           /* transport + timer */
};

static void log_event(connection_t *c, char kind, const char *fmt, ...) EMAIL_PRINTF(3, 4);
static void log_event(connection_t *c, char kind, const char *fmt, ...)
{
    if (!email_log_active())
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    email_log_event(c->cfg.session_id, kind, text);
}

static void finish(connection_t *c)
{
    if (--c->closes_pending > 0)
        return;
    if (c->engine)
        smtp_engine_free(c->engine);
    free(c->host);
    if (c->cb.closed)
        c->cb.closed(c->ud, c, &c->why);
    free(c);
}

static void on_timer_close(uv_handle_t *h)
{
    finish(h->data);
}

static void on_transport_closed(void *ud)
{
    finish(ud);
}

/* Tears down handles; `finish` runs when both are closed. */
static void close_all(connection_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (!c->why.error)
        log_event(c, '#', "connection closed");
    c->closes_pending = 1 + (c->transport ? 1 : 0);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_close);
    if (c->transport) {
        transport_t *t = c->transport;
        c->transport = NULL;
        transport_close(t);
    }
}

/* Restarts the silence timer while something is awaited; stops it otherwise. */
static void arm_timer(connection_t *c);

static void on_timeout(uv_timer_t *h)
{
    connection_t *c = h->data;
    bool connecting = !c->ready;
    int ms = connecting ? c->cfg.connect_timeout_ms : c->cfg.reply_timeout_ms;
    char text[256];
    snprintf(text, sizeof text, "timed out after %d s %s", ms / 1000,
             connecting ? "connecting to the server" : "waiting for the server");
    connection_abort(c, EMAIL_ETIMEDOUT, text);
}

static void arm_timer(connection_t *c)
{
    if (c->closing)
        return;
    if (!c->ready) {
        return; /* the connect timer runs from connection_start until ready */
    }
    if (c->engine && smtp_engine_waiting(c->engine))
        uv_timer_start(&c->timer, on_timeout, (uint64_t)c->cfg.reply_timeout_ms, 0);
    else
        uv_timer_stop(&c->timer);
}

/* Writes what the engine has to say, as long as the kernel keeps up. */
static void flush(connection_t *c)
{
    if (c->flushing || !c->engine || !c->transport)
        return;
    c->flushing = true;
    while (c->transport && transport_pending(c->transport) < WRITE_HIGH_WATER) {
        const char *data;
        size_t n = smtp_engine_take(c->engine, &data);
        if (!n)
            break;
        int rc = transport_write(c->transport, data, n);
        if (rc) {
            c->flushing = false;
            connection_abort(c, rc, "writing to the server failed");
            return;
        }
    }
    c->flushing = false;
}

/* ------------------------------------------------------------------------------------------- */
/* Engine events                                                                                */

static void eng_log(void *ud, char kind, const char *text)
{
    connection_t *c = ud;
    if (email_log_active())
        email_log_event(c->cfg.session_id, kind, text);
}

static void eng_ready(void *ud)
{
    connection_t *c = ud;
    c->ready = true;
    c->ready_status = *smtp_engine_status(c->engine);
    c->ready_status.internal_ = NULL;
    if (c->cb.ready)
        c->cb.ready(c->ud, c);
}

static void eng_starttls(void *ud)
{
    connection_t *c = ud;
    /* TLS arrives with tls.c; until then a session never asks for STARTTLS (see transporter) */
    connection_abort(c, EMAIL_ENOTSUP, "STARTTLS is not available in this build");
}

static void eng_job_done(void *ud, smtp_job_t *job)
{
    connection_t *c = ud;
    if (c->cb.job_done)
        c->cb.job_done(c->ud, c, job);
}

static void eng_closed(void *ud, const email_status_t *why)
{
    connection_t *c = ud;
    c->engine_closed = true;
    if (!c->why.error || why->error)
        c->why = *why;
    c->why.internal_ = NULL;
    /* after QUIT's reply, or an error, there is nothing more to say */
    close_all(c);
}

/* ------------------------------------------------------------------------------------------- */
/* Transport events                                                                             */

static void tr_connected(void *ud, const char *ip, int port)
{
    connection_t *c = ud;
    log_event(c, '#', "connected to %s (%s) on port %d (not secure)", c->host, ip, port);
    smtp_engine_config_t ecfg = c->cfg.engine;
    ecfg.allow_cleartext_auth = c->cfg.allow_insecure_auth || transport_is_loopback(c->transport);
    static const smtp_engine_callbacks_t cbs = {
        .log = eng_log,
        .ready = eng_ready,
        .starttls = eng_starttls,
        .job_done = eng_job_done,
        .closed = eng_closed,
    };
    c->engine = smtp_engine_new(&ecfg, &cbs, c);
    if (!c->engine) {
        connection_abort(c, EMAIL_ENOMEM, "out of memory");
        return;
    }
    while (c->pre_head) {
        smtp_job_t *j = c->pre_head;
        c->pre_head = j->next;
        smtp_engine_submit(c->engine, j);
    }
    c->pre_tail = NULL;
    if (c->quit_wanted)
        smtp_engine_quit(c->engine);
}

static void tr_read(void *ud, const char *data, size_t n)
{
    connection_t *c = ud;
    if (!c->engine || c->engine_closed)
        return;
    smtp_engine_feed(c->engine, data, n);
    if (c->closing)
        return;
    flush(c);
    arm_timer(c);
}

static void tr_written(void *ud, size_t n)
{
    connection_t *c = ud;
    if (!c->engine)
        return;
    smtp_engine_written(c->engine, n);
    flush(c);
    arm_timer(c);
}

static void tr_failed(void *ud, int error, const char *text)
{
    connection_t *c = ud;
    connection_abort(c, error, text);
}

/* ------------------------------------------------------------------------------------------- */

connection_t *connection_new(uv_loop_t *loop, const connection_config_t *cfg,
                             const connection_callbacks_t *cb, void *ud)
{
    connection_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->cfg = *cfg;
    c->cb = *cb;
    c->ud = ud;
    c->host = email_strdup(cfg->host);
    c->cfg.host = c->host;
    if (!c->host) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    return c;
}

int connection_start(connection_t *c)
{
    static const transport_callbacks_t tcb = {
        .connected = tr_connected,
        .read = tr_read,
        .written = tr_written,
        .failed = tr_failed,
        .closed = on_transport_closed,
    };
    c->transport = transport_new(c->loop, &tcb, c);
    if (!c->transport)
        return EMAIL_ENOMEM;
    int rc = transport_connect(c->transport, c->host, c->cfg.port);
    if (rc) {
        connection_abort(c, rc, "cannot start connecting");
        return rc;
    }
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->cfg.connect_timeout_ms, 0);
    return 0;
}

int connection_submit(connection_t *c, smtp_job_t *job)
{
    if (c->closing || c->engine_closed || c->quit_wanted)
        return EMAIL_ESHUTDOWN;
    if (c->engine) {
        int rc = smtp_engine_submit(c->engine, job);
        flush(c);
        arm_timer(c);
        return rc;
    }
    job->next = NULL;
    if (c->pre_tail)
        c->pre_tail->next = job;
    else
        c->pre_head = job;
    c->pre_tail = job;
    return 0;
}

void connection_quit(connection_t *c)
{
    if (c->closing)
        return;
    c->quit_wanted = true;
    if (c->engine) {
        smtp_engine_quit(c->engine);
        flush(c);
        arm_timer(c);
    }
}

void connection_abort(connection_t *c, int error, const char *text)
{
    if (c->closing)
        return;
    if (!c->engine_closed) {
        if (c->engine) {
            smtp_engine_abort(c->engine, error, text); /* jobs get outcomes, eng_closed runs */
        } else {
            /* never connected: the queued jobs could not go, nothing reached the server */
            email_status_fail(&c->why, error, "%s", text);
            log_event(c, '#', "error: %s", text);
            while (c->pre_head) {
                smtp_job_t *j = c->pre_head;
                c->pre_head = j->next;
                j->outcome = SMTP_JOB_RETRYABLE;
                email_status_init(&j->status);
                email_refusals_init(&j->refusals);
                email_status_fail(&j->status, error, "%s", text);
                j->status.recipients = j->nrcpts;
                if (c->cb.job_done)
                    c->cb.job_done(c->ud, c, j);
            }
            c->pre_tail = NULL;
        }
    }
    close_all(c);
}

bool connection_is_ready(const connection_t *c)
{
    return c->ready && !c->closing && !c->engine_closed;
}

bool connection_is_idle(const connection_t *c)
{
    return connection_is_ready(c) && smtp_engine_idle(c->engine);
}

const email_status_t *connection_ready_status(const connection_t *c)
{
    return &c->ready_status;
}

bool connection_was_ready(const connection_t *c)
{
    return c->ready;
}
