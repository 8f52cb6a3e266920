/*
 * One SMTP, POP3 or IMAP session over one TCP connection: its protocol engine (lib/engine.h) driven
 * over the transport, with the connect timeout and a reply timer that restarts when bytes leave
 * or a whole reply comes (never for part of one: a server trickling a reply cannot hold the session).
 */
#include "connection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ring.h"
#include "tls.h"
#include "transport.h"
#include "util.h"

/* Bytes handed to the kernel before more of a body is read. */
#define WRITE_HIGH_WATER (256 * 1024)

struct connection {
    uv_loop_t *loop;
    connection_config_t cfg;
    connection_callbacks_t cb;
    void *ud;
    char *host;
    char *ca_file;

    transport_t *transport;
    tls_t *tls;
    /* with TLS, plaintext handed to the engine's written() once its ciphertext is written */
    email_ring_t credits;         /* struct credit, oldest first */
    uint64_t cipher_queued, cipher_written;
    uint64_t received;            /* bytes from the server, for error messages */
    const engine_ops_t *ops;      /* SMTP's or POP3's engine */
    void *engine;                 /* from the start: work submitted while connecting waits in it */
    uv_timer_t timer;
    size_t unacked;               /* email__transport_unacked when the reply timer last started */
    bool debug_engine;            /* EMAIL_DEBUG_ENGINE: the engine's states to stderr */

    bool started;                 /* the engine has its transport (connected, and secured with
                                     TLS from the first byte): the greeting may come */
    bool ready, closing, engine_closed, flushing;
    bool feeding;                 /* inside the engine's feed: a job submitted from one of its
                                     callbacks is written after it, never in the middle */
    bool last_words;              /* TLS writes only what the kernel takes at once */
    email_status_t ready_status;
    email_status_t why;           /* why the session ended */
    int closes_pending;           /* transport + timer */
};

struct credit {
    uint64_t cipher_end;          /* the ciphertext written once this plaintext is */
    size_t plain;
};

static void log_event(connection_t *c, char kind, const char *fmt, ...) EMAIL_PRINTF(3, 4);
static void log_event(connection_t *c, char kind, const char *fmt, ...)
{
    if (!email__log_active(c->cfg.log))
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    email__log_event(c->cfg.log, c->cfg.session_id, kind, text);
}

static void finish(connection_t *c)
{
    if (--c->closes_pending > 0)
        return;
    c->ops->free(c->engine);
    email__log_flush(c->cfg.log);
    email__log_sink_release(c->cfg.log);
    email__tls_free(c->tls);
    email_ring_free(&c->credits);
    free(c->host);
    free(c->ca_file);
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

/* TLS's close_notify, so the server knows the session ended here and was not cut: written now
 * or never (nothing waits for a peer that does not read). */
static void say_bye(connection_t *c)
{
    if (!c->tls || !c->transport)
        return;
    c->last_words = true;
    email__tls_bye(c->tls);
}

/* Tears down handles; `finish` runs when both are closed. */
static void close_all(connection_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    say_bye(c);
    log_event(c, '#', "%s Connection closed", c->ops->name);
    c->closes_pending = 1 + (c->transport ? 1 : 0);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_close);
    if (c->transport) {
        transport_t *t = c->transport;
        c->transport = NULL;
        email__transport_close(t);
    }
}

/* Runs the reply timer while something is awaited (restarted when `progress`); stops it
 * otherwise. */
static void arm_timer(connection_t *c, bool progress);
static void start_timer(connection_t *c, size_t unacked);

/* Before ready the connect timeout applies, but to a QUIT after a failed setup (a refused AUTH):
 * its reply is awaited like any other. */
static bool setting_up(const connection_t *c)
{
    return !c->ready && !c->ops->quitting(c->engine);
}

static void on_timeout(uv_timer_t *h)
{
    connection_t *c = h->data;
    bool connecting = setting_up(c);
    int ms = connecting ? c->cfg.connect_timeout_ms : c->cfg.reply_timeout_ms;
    size_t unacked = c->transport && !connecting ? email__transport_unacked(c->transport) : 0;
    if (unacked < c->unacked) {
        /* what the kernel took was still crossing a slow link meanwhile: not silence */
        start_timer(c, unacked);
        return;
    }
    char text[400];
    if (connecting && c->started && !c->received && !c->cfg.implicit_tls)
        snprintf(text, sizeof text,
                 "timed out after %.3g s: the server did not greet (if this port expects TLS "
                 "from the first byte, such as %s, use EMAIL_OPTION_TLS / EMAIL_SECURITY_TLS)",
                 ms / 1000.0, c->cfg.protocol == CONN_POP3   ? "995"
                              : c->cfg.protocol == CONN_IMAP ? "993" : "465");
    else
        snprintf(text, sizeof text, "timed out after %.3g s %s", ms / 1000.0,
                 connecting ? "connecting to the server" : "waiting for the server");
    email__connection_abort(c, EMAIL_ETIMEDOUT, text);
}

static void start_timer(connection_t *c, size_t unacked)
{
    c->unacked = unacked;
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->cfg.reply_timeout_ms, 0);
}

static void arm_timer(connection_t *c, bool progress)
{
    if (c->closing || setting_up(c))
        return; /* the connect timer runs from email__connection_start until ready */
    if (!c->ops->waiting(c->engine))
        uv_timer_stop(&c->timer);
    else if (progress || !uv_is_active((uv_handle_t *)&c->timer))
        start_timer(c, c->transport ? email__transport_unacked(c->transport) : 0);
}

static int add_credit(connection_t *c, size_t plain)
{
    struct credit *k = email_ring_push(&c->credits, sizeof *k, 32);
    if (!k)
        return EMAIL_ENOMEM;
    *k = (struct credit){c->cipher_queued, plain};
    return 0;
}

/* The plaintext whose ciphertext is now all written reaches the engine. */
static void use_credits(connection_t *c)
{
    while (c->credits.len) {
        struct credit *k = email_ring_at(&c->credits, sizeof *k, 0);
        if (k->cipher_end > c->cipher_written)
            return;
        size_t plain = k->plain;
        email_ring_drop(&c->credits);
        c->ops->written(c->engine, plain);
    }
}

/* Plaintext to the server: through TLS when it is on. */
static int send_plain(connection_t *c, const char *data, size_t n)
{
    if (!c->tls)
        return email__transport_write(c->transport, data, n);
    int rc = email__tls_write(c->tls, data, n);
    return rc ? rc : add_credit(c, n);
}

/* Writes what the engine has to say, as long as the kernel keeps up. */
static void flush(connection_t *c)
{
    if (c->flushing || !c->started || !c->transport)
        return;
    c->flushing = true;
    while (c->transport && email__transport_pending(c->transport) < WRITE_HIGH_WATER) {
        const char *data;
        size_t n = c->ops->take(c->engine, &data);
        if (!n || c->closing)
            break; /* taking can end the session (an unreadable body): the transport is gone */
        int rc = send_plain(c, data, n);
        if (rc) {
            c->flushing = false;
            email__connection_abort(c, rc, "writing to the server failed");
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
    if (email__log_active(c->cfg.log))
        email__log_event(c->cfg.log, c->cfg.session_id, kind, text);
}

static void eng_ready(void *ud)
{
    connection_t *c = ud;
    c->ready = true;
    email__status_copy_into(&c->ready_status, c->ops->status(c->engine));
    if (c->cb.ready)
        c->cb.ready(c->ud, c);
}

static void start_tls(connection_t *c);

static void eng_starttls(void *ud)
{
    start_tls(ud);
}

static void eng_job_done(void *ud, smtp_job_t *job)
{
    connection_t *c = ud;
    if (c->cb.job_done)
        c->cb.job_done(c->ud, c, job);
}

static void eng_progress(void *ud, smtp_job_t *job, uint64_t sent, uint64_t total)
{
    connection_t *c = ud;
    if (c->cb.progress)
        c->cb.progress(c->ud, c, job, sent, total);
}

static void eng_state(void *ud, const char *from, const char *to)
{
    connection_t *c = ud;
    fprintf(stderr, "emailsession: session %llu: engine %s -> %s\n",
            (unsigned long long)c->cfg.session_id, from, to);
}

static void eng_closed(void *ud, const email_status_t *why)
{
    connection_t *c = ud;
    c->engine_closed = true;
    if (!c->why.error || why->error)
        email__status_copy_into(&c->why, why);
    /* after QUIT's reply, or an error, there is nothing more to say */
    close_all(c);
}

/* ------------------------------------------------------------------------------------------- */
/* Transport events                                                                             */

/* The transport is ready for the protocol: the engine may hear the greeting. */
static void start_engine(connection_t *c)
{
    c->started = true;
    c->ops->start(c->engine, c->cfg.allow_insecure_auth ||
                                     email__transport_is_loopback(c->transport));
}

static void tr_connected(void *ud, const char *ip, int port)
{
    connection_t *c = ud;
    /* 4D's words; "secure" is TLS from the first byte (STARTTLS comes later, in its own event) */
    log_event(c, '#', "%s Connected to '%s' on port %d. (%s)", c->ops->name, c->host, port,
              c->cfg.implicit_tls ? "secure" : "not secure");
    if (strcmp(ip, c->host) != 0)
        log_event(c, '#', "%s Server address: %s", c->ops->name, ip); /* which of the host's addresses */
    if (c->cfg.implicit_tls)
        start_tls(c); /* the engine starts once the handshake is done */
    else
        start_engine(c);
}

/* ------------------------------------------------------------------------------------------- */
/* TLS events                                                                                   */

static int tls_send(void *ud, const char *data, size_t n)
{
    connection_t *c = ud;
    if (!c->transport)
        return EMAIL_ECLOSED;
    if (c->last_words)
        return email__transport_write_now(c->transport, data, n);
    int rc = email__transport_write(c->transport, data, n);
    if (!rc)
        c->cipher_queued += n;
    return rc;
}

/* Server bytes in plaintext, wherever they came from. */
static void on_plain(connection_t *c, const char *data, size_t n)
{
    if (!c->started || c->engine_closed)
        return;
    uint64_t replies = c->ops->replies(c->engine);
    c->feeding = true;
    c->ops->feed(c->engine, data, n);
    c->feeding = false;
    if (c->closing)
        return;
    flush(c);
    arm_timer(c, c->ops->replies(c->engine) != replies);
}

static void tls_recv(void *ud, const char *data, size_t n)
{
    on_plain(ud, data, n);
}

/* True when the server's first bytes are text, not a TLS record (whose first byte, the content
 * type, is 20-24). */
static bool plain_text_seen(const connection_t *c)
{
    const char *b;
    size_t n = email__tls_first_bytes(c->tls, &b);
    return n && b[0] >= 0x20 && b[0] < 0x7f;
}

static void tls_handshake(void *ud, int error, const char *text)
{
    connection_t *c = ud;
    if (error == EMAIL_ETLS && plain_text_seen(c)) {
        char why[300];
        static const char *const ok[] = {"220", "+OK", "OK"}, *const verb[] = {
            "STARTTLS", "STLS", "STARTTLS"}, *const port[] = {"587", "110", "143"};
        enum connection_protocol p = c->cfg.protocol;
        if (c->started)
            snprintf(why, sizeof why, "the server sent plain-text bytes after its %s to %s "
                     "instead of a TLS handshake (possible response injection)", ok[p], verb[p]);
        else
            snprintf(why, sizeof why, "the server answered in plain %s, not TLS: is this a "
                     "STARTTLS port? Use EMAIL_OPTION_STARTTLS / EMAIL_SECURITY_STARTTLS "
                     "(usually port %s)", c->ops->name, port[p]);
        email__connection_abort(c, c->started ? EMAIL_EPROTO : EMAIL_ETLS, why);
        return;
    }
    if (error) {
        email__connection_abort(c, error, text);
        return;
    }
    char desc[300];
    email__tls_describe(c->tls, desc, sizeof desc);
    log_event(c, '#', "%s TLS established: %s", c->ops->name, desc);
    if (email__tls_resumed(c->tls))
        log_event(c, '#', "%s TLS session resumed", c->ops->name);
    if (c->started) {
        c->ops->tls_established(c->engine); /* STARTTLS: EHLO again */
        flush(c);
    } else {
        start_engine(c); /* implicit TLS: now the greeting can come */
    }
}

static void tls_failed(void *ud, int error, const char *text)
{
    email__connection_abort(ud, error, text);
}

static void start_tls(connection_t *c)
{
    static const tls_callbacks_t cbs = {
        .send = tls_send,
        .recv = tls_recv,
        .handshake = tls_handshake,
        .failed = tls_failed,
    };
    tls_config_t cfg = {.host = c->host,
                        .ca_file = c->ca_file,
                        .cert_file = c->cfg.cert_file,
                        .key_file = c->cfg.key_file,
                        .no_verify = c->cfg.no_verify,
                        .resume = c->cfg.resume};
    char err[512];
    c->tls = email__tls_new(&cfg, &cbs, c, err, sizeof err);
    if (!c->tls) {
        email__connection_abort(c, EMAIL_ETLS, err);
        return;
    }
    if (c->cfg.no_verify)
        log_event(c, '#', "%s Certificate verification is OFF (EMAIL_OPTION_NO_VERIFY): "
                          "the server's identity is not checked", c->ops->name);
    email__tls_start(c->tls);
}

static void tr_read(void *ud, const char *data, size_t n)
{
    connection_t *c = ud;
    c->received += n;
    if (c->tls)
        email__tls_feed(c->tls, data, n); /* plaintext comes back through tls_recv */
    else
        on_plain(c, data, n);
    /* no log flush here: the log's one-second timer hands its writes to libuv's thread pool, so
     * a slow disk never stalls the loop; the connection's end flushes what is left */
}

static void tr_written(void *ud, size_t n)
{
    connection_t *c = ud;
    if (c->tls) {
        c->cipher_written += n; /* handshake bytes too: credits count from the first byte */
        use_credits(c);
    } else if (c->started) {
        c->ops->written(c->engine, n);
    }
    if (!c->started)
        return;
    flush(c);
    arm_timer(c, true);
}

static void tr_failed(void *ud, int error, const char *text)
{
    connection_t *c = ud;
    email__connection_abort(c, error, text);
}

/* ------------------------------------------------------------------------------------------- */

/* The engine comes with the connection, waiting for the transport; work queues in it. */
static void *new_engine(connection_t *c)
{
    static const engine_events_t ev = {
        .log = eng_log, .ready = eng_ready, .starttls = eng_starttls, .closed = eng_closed};
    engine_events_t evs = ev;
    if (c->debug_engine)
        evs.state = eng_state;
    if (c->cfg.protocol == CONN_POP3) {
        pop3_engine_config_t pcfg = c->cfg.pop3_engine;
        pcfg.wait_start = true;
        c->ops = &email__pop3_ops;
        return email__pop3_engine_new(&pcfg, &evs, c);
    }
    if (c->cfg.protocol == CONN_IMAP) {
        imap_engine_config_t icfg = c->cfg.imap_engine;
        icfg.wait_start = true;
        c->ops = &email__imap_ops;
        return email__imap_engine_new(&icfg, &evs, c);
    }
    c->ops = &email__smtp_ops;
    static const smtp_engine_callbacks_t base = {
        .log = eng_log,
        .ready = eng_ready,
        .starttls = eng_starttls,
        .job_done = eng_job_done,
        .progress = eng_progress,
        .closed = eng_closed,
    };
    smtp_engine_callbacks_t cbs = base;
    if (c->debug_engine)
        cbs.state = eng_state;
    smtp_engine_config_t ecfg = c->cfg.engine;
    ecfg.wait_start = true;
    return email__smtp_engine_new(&ecfg, &cbs, c);
}

connection_t *email__connection_new(uv_loop_t *loop, const connection_config_t *cfg,
                             const connection_callbacks_t *cb, void *ud)
{
    connection_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->cfg = *cfg;
    c->cb = *cb;
    c->ud = ud;
    c->host = email__strdup(cfg->host);
    c->cfg.host = c->host;
    c->ca_file = email__strdup(cfg->ca_file);
    c->cfg.ca_file = c->ca_file;
    if (!c->host || (cfg->ca_file && !c->ca_file)) {
        free(c->host);
        free(c->ca_file);
        free(c);
        return NULL;
    }
    c->debug_engine = getenv("EMAIL_DEBUG_ENGINE") != NULL;
    if (!(c->engine = new_engine(c))) {
        free(c->host);
        free(c->ca_file);
        free(c);
        return NULL;
    }
    c->cfg.log = email__log_sink_ref(cfg->log);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    return c;
}

int email__connection_start(connection_t *c)
{
    static const transport_callbacks_t tcb = {
        .connected = tr_connected,
        .read = tr_read,
        .written = tr_written,
        .failed = tr_failed,
        .closed = on_transport_closed,
    };
    /* every failure goes through email__connection_abort, so `closed` always comes */
    c->transport = email__transport_new(c->loop, &tcb, c);
    if (!c->transport) {
        email__connection_abort(c, EMAIL_ENOMEM, "out of memory");
        return EMAIL_ENOMEM;
    }
    int rc = email__transport_connect(c->transport, c->host, c->cfg.port);
    if (rc) {
        char text[400];
        snprintf(text, sizeof text, "cannot connect to \"%s\" port %d: %s", c->host,
                 c->cfg.port, email_strerror(rc));
        email__connection_abort(c, rc, text);
        return rc;
    }
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->cfg.connect_timeout_ms, 0);
    return 0;
}

int email__connection_submit(connection_t *c, smtp_job_t *job)
{
    if (c->closing)
        return EMAIL_ESHUTDOWN;
    if (c->ops != &email__smtp_ops)
        return EMAIL_EINVAL;
    int rc = email__smtp_engine_submit(c->engine, job);
    if (!c->feeding)
        flush(c);
    arm_timer(c, false);
    return rc;
}

int email__connection_cancel(connection_t *c, smtp_job_t *job)
{
    if (c->ops != &email__smtp_ops)
        return EMAIL_EINVAL;
    return email__smtp_engine_cancel(c->engine, job);
}

int email__connection_pop3_submit(connection_t *c, pop3_cmd_t *cmd)
{
    if (c->closing)
        return EMAIL_ESHUTDOWN;
    if (c->ops != &email__pop3_ops)
        return EMAIL_EINVAL;
    int rc = email__pop3_engine_submit(c->engine, cmd);
    if (!c->feeding)
        flush(c);
    arm_timer(c, false);
    return rc;
}

int email__connection_imap_submit(connection_t *c, imap_cmd_t *cmd)
{
    if (c->closing)
        return EMAIL_ESHUTDOWN;
    if (c->ops != &email__imap_ops)
        return EMAIL_EINVAL;
    int rc = email__imap_engine_submit(c->engine, cmd);
    if (!c->feeding)
        flush(c);
    arm_timer(c, false);
    return rc;
}

const imap_engine_t *email__connection_imap_engine(const connection_t *c)
{
    return c->ops == &email__imap_ops ? c->engine : NULL;
}

void email__connection_release(connection_t *c, smtp_job_t *job, int error)
{
    if (c->closing || c->ops != &email__smtp_ops)
        return;
    email__smtp_engine_release(c->engine, job, error);
    if (!c->feeding)
        flush(c);
    arm_timer(c, false);
}

void email__connection_quit(connection_t *c)
{
    if (c->closing)
        return;
    c->ops->quit(c->engine);
    flush(c);
    arm_timer(c, false);
}

void email__connection_abort(connection_t *c, int error, const char *text)
{
    if (c->closing)
        return;
    if (!c->engine_closed)
        c->ops->abort(c->engine, error, text); /* jobs get outcomes, eng_closed runs */
    close_all(c);
}

void email__connection_set_log(connection_t *c, struct log_sink *log)
{
    email__log_flush(c->cfg.log);
    email__log_sink_release(c->cfg.log);
    c->cfg.log = email__log_sink_ref(log);
}

bool email__connection_is_ready(const connection_t *c)
{
    return c->ready && !c->closing && !c->engine_closed;
}

const email_status_t *email__connection_ready_status(const connection_t *c)
{
    return &c->ready_status;
}

bool email__connection_was_ready(const connection_t *c)
{
    return c->ready;
}
