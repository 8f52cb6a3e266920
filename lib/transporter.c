/*
 * The transporter (4D's SMTP transporter): one server's settings, its keep-alive connection and
 * the queue of sends. Public calls post work to the loop thread; everything below the
 * "loop thread" line runs there only.
 */
#include "transporter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connection.h"
#include "facade.h"
#include "log.h"
#include "message.h"
#include "mime.h"
#include "registry.h"
#include "runtime.h"
#include "status.h"
#include "util.h"

typedef struct send_req {
    smtp_job_t job;
    email_transporter_t *t;
    email_message_t *msg;        /* frozen copy, or NULL for a prebuilt message */
    mime_reader_t *reader;
    char *raw;                   /* prebuilt message bytes */
    size_t raw_len, raw_off;
    char *from;
    char **rcpts;
    size_t nrcpts;
    int attempts;
    uint64_t id;
    uint64_t session;            /* log session id of the connection carrying it */
    bool logging;                /* its bytes are being copied to the extended log */

    runtime_waiter_t *waiter;    /* synchronous sender waiting */
    email_send_cb cb;            /* asynchronous completion */
    void *cb_data;
    email_progress_cb progress;  /* progress of its body, taken when it was queued */
    void *progress_data;
    uint64_t progress_shown;     /* last progress handed to the caller */
    bool texts_4d;               /* its transporter's t->texts_4d (t may be gone at delivery) */
    email_errors_t earlier;      /* why the earlier attempt failed (one retry at most) */
    struct send_req *conn_prev, *conn_next; /* in t->in_conn while the connection has it */
    email_status_t status;       /* final outcome */
    email_refusals_t refusals;
    struct send_req *next;
} send_req_t;

typedef struct req_list {
    send_req_t *head, *tail;
} req_list_t;

/* A check or free waiting for the connection's fate, or an open reporting to its callback. */
typedef struct op {
    email_transporter_t *t;
    runtime_waiter_t waiter;
    email_status_t status;
    int rc;
    send_req_t *req;
    connection_t *conn;          /* check_connection's own connection */
    transporter_open_cb done;    /* an open's verdict */
    void *done_arg;
    struct op *next;
} op_t;

struct email_transporter_s {
    struct email_transporter_s *live_prev, *live_next; /* every transporter, for shutdown */
    /* settings, immutable after creation */
    char *host, *user, *password, *token, *log_file, *ca_file, *helo_name;
    char *header_charset, *body_charset;
    int port;
    auth_mech_t auth_mech;
    transporter_extra_t x;
    int connect_timeout_ms, reply_timeout_ms;
    bool keep_alive;
    int security;                /* as given, for email_transporter_get_server */
    bool accept_unsecure;
    bool texts_4d;               /* 4D's status texts (not the facade's, which ErrorInfo shows) */

    log_sink_t *log;             /* extended log, or NULL (swapped on the loop thread) */

    /* loop thread state */
    connection_t *conn;
    uint64_t conn_session;       /* log session id of conn */
    req_list_t waiting;          /* not yet given to a connection */
    size_t in_flight;            /* given to the current connection, not done */
    send_req_t *in_conn;         /* those requests (for cancel) */
    req_list_t parked;           /* ended with the connection, decided when it closes */
    op_t *openers;               /* transporter_open_async callers waiting for ready */
    bool open_failed;            /* an open failed: every send fails with open_status */
    email_status_t open_status;
    bool freeing;                /* email_transporter_free was called */
    uv_timer_t *free_deadline;   /* bounds how long queued messages may delay the free */
    bool expired;                /* that deadline passed: no more retries */
    op_t *freer;                 /* its caller waiting for the end (NULL: free here) */
    email_progress_cb progress;
    void *progress_data;
};

static void list_push(req_list_t *l, send_req_t *r)
{
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static send_req_t *list_pop(req_list_t *l)
{
    send_req_t *r = l->head;
    if (r) {
        l->head = r->next;
        if (!l->head)
            l->tail = NULL;
    }
    return r;
}

/* ------------------------------------------------------------------------------------------- */
/* Creation                                                                                     */

void email_server_init(email_server_t *server)
{
    if (!server)
        return;
    memset(server, 0, sizeof *server);
    server->keep_alive = true;
}

/* Every live transporter, so that email_shutdown can close their idle connections. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static email_transporter_t *live_head;

static void live_add(email_transporter_t *t)
{
    pthread_mutex_lock(&live_lock);
    t->live_prev = NULL;
    t->live_next = live_head;
    if (live_head)
        live_head->live_prev = t;
    live_head = t;
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(email_transporter_t *t)
{
    pthread_mutex_lock(&live_lock);
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else if (live_head == t)
        live_head = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    pthread_mutex_unlock(&live_lock);
}

static void transporter_destroy(email_transporter_t *t)
{
    live_remove(t);
    log_sink_release(t->log);
    free(t->host);
    free(t->user);
    email_free_secret(t->password);
    email_free_secret(t->token);
    free(t->log_file);
    free(t->ca_file);
    free(t->helo_name);
    free(t->header_charset);
    free(t->body_charset);
    free(t);
}

static bool valid_mode(const char *m)
{
    return !m || !strcmp(m, EMAIL_MAIL_MODE_UTF8) || !strcmp(m, EMAIL_MAIL_MODE_UTF8_IN_BASE64) ||
           !strcmp(m, EMAIL_MAIL_MODE_ISO88591) || !strcmp(m, EMAIL_MAIL_MODE_ISO2022JP);
}

static bool has_control(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* The authentication mode asked for: AUTH_NONE for "the strongest offered". */
static int check_auth_mode(const char *mode, auth_mech_t *mech, char *err, size_t errlen)
{
    *mech = AUTH_NONE;
    if (!mode || !*mode)
        return 0;
    if (auth_mech_unimplemented(mode)) {
        snprintf(err, errlen, "server: authentication_mode \"%s\" is not implemented yet", mode);
        return EMAIL_ENOTSUP;
    }
    if ((*mech = auth_mech_from_name(mode)) == AUTH_NONE) {
        snprintf(err, errlen,
                 "server: authentication_mode \"%s\" is not supported (CRAM-MD5, LOGIN, PLAIN, "
                 "OAUTH2, XOAUTH2, OAUTHBEARER)",
                 mode);
        return EMAIL_EINVAL;
    }
    return 0;
}

/* Everything that can be said of the settings without the network. */
static int check_settings(const email_server_t *s, auth_mech_t *mech, char *err, size_t errlen)
{
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return EMAIL_EINVAL;                                                                       \
    } while (0)
    if (!s)
        BAD("no server settings");
    if (!s->host || !*s->host)
        BAD("server: host is missing");
    if (email_has_crlf(s->host) || strchr(s->host, ' '))
        BAD("server: host \"%s\" is not a host name or address", s->host);
    if (s->port < 0 || s->port > 65535)
        BAD("server: port %d is out of range", s->port);
    if (s->security < EMAIL_SECURITY_STARTTLS || s->security > EMAIL_SECURITY_NONE)
        BAD("server: security %d is not an EMAIL_SECURITY_ value", s->security);
    if (s->connection_timeout < 0 || s->send_timeout < 0 ||
        s->connection_timeout > EMAIL_TIMEOUT_MAX || s->send_timeout > EMAIL_TIMEOUT_MAX)
        BAD("server: timeouts must be 0 to %d seconds", EMAIL_TIMEOUT_MAX);
    const char *fields[] = {s->user, s->password, s->oauth2_token, s->helo_name};
    const char *names[] = {"user", "password", "oauth2_token", "helo_name"};
    for (size_t i = 0; i < 4; i++)
        if (fields[i] && email_has_crlf(fields[i]))
            BAD("server: %s contains a line break", names[i]);
    /* control characters would split the SASL payloads (XOAUTH2 and OAUTHBEARER separate their
     * fields with \001); a password only ever goes whole, base64-encoded or as an HMAC key */
    if (has_control(s->user) || has_control(s->oauth2_token))
        BAD("server: %s contains a control character",
            has_control(s->user) ? "user" : "oauth2_token");
    if (s->helo_name && (!*s->helo_name || strchr(s->helo_name, ' ')))
        BAD("server: helo_name \"%s\" is not a domain or address literal", s->helo_name);
    if (!valid_mode(s->header_charset) || !valid_mode(s->body_charset))
        BAD("server: header_charset/body_charset must be an EMAIL_MAIL_MODE_ value");
    if (s->ca_file && access(s->ca_file, R_OK) != 0)
        BAD("server: ca_file \"%s\" cannot be read", s->ca_file);
    return check_auth_mode(s->authentication_mode, mech, err, errlen);
#undef BAD
}

/* The string settings, copied; false when out of memory. */
static bool copy_strings(email_transporter_t *t, const email_server_t *s)
{
    char hostname[256] = "localhost";
    if (!s->helo_name) {
        if (gethostname(hostname, sizeof hostname - 1) != 0 || !hostname[0] ||
            strchr(hostname, ' '))
            strcpy(hostname, "localhost");
        hostname[sizeof hostname - 1] = '\0';
    }
    t->host = email_strdup(s->host);
    t->user = email_strdup(s->user);
    t->password = email_strdup(s->password);
    t->token = email_strdup(s->oauth2_token);
    t->log_file = email_strdup(s->log_file);
    t->ca_file = email_strdup(s->ca_file);
    t->helo_name = email_strdup(s->helo_name ? s->helo_name : hostname);
    t->header_charset = email_strdup(s->header_charset);
    t->body_charset = email_strdup(s->body_charset);
    return t->host && t->helo_name && (!s->user || t->user) && (!s->password || t->password) &&
           (!s->oauth2_token || t->token) && (!s->log_file || t->log_file) &&
           (!s->ca_file || t->ca_file) && (!s->header_charset || t->header_charset) &&
           (!s->body_charset || t->body_charset);
}

/* transporter_new_ex, with the EMAIL_E... code of a refusal in *code. */
static email_transporter_t *transporter_create(const email_server_t *s,
                                               const transporter_extra_t *extra, char *err,
                                               size_t errlen, int *code)
{
    auth_mech_t mech;
    if ((*code = check_settings(s, &mech, err, errlen)))
        return NULL;
    log_sink_t *log = NULL;
    if (s->log_file) {
        char why[400];
        if (!(log = log_sink_open(s->log_file, why, sizeof why))) {
            snprintf(err, errlen, "server: log_file: %s", why);
            *code = EMAIL_EINVAL;
            return NULL;
        }
    }
    email_transporter_t *t = calloc(1, sizeof *t);
    if (t)
        t->log = log;
    else
        log_sink_release(log);
    if (!t || !copy_strings(t, s)) {
        if (t)
            transporter_destroy(t); /* releases the log */
        snprintf(err, errlen, "out of memory");
        *code = EMAIL_ENOMEM;
        return NULL;
    }
    t->auth_mech = mech;
    t->keep_alive = s->keep_alive;
    t->security = s->security;
    t->accept_unsecure = s->accept_unsecure_connection;
    t->connect_timeout_ms = (s->connection_timeout ? s->connection_timeout : 30) * 1000;
    t->reply_timeout_ms = (s->send_timeout ? s->send_timeout : 100) * 1000;
    t->texts_4d = !extra;
    if (extra) {
        t->x = *extra;
    } else {
        /* 4D: STARTTLS unless told otherwise; accept_unsecure_connection allows plaintext */
        t->x.implicit_tls = s->security == EMAIL_SECURITY_TLS;
        t->x.tls_policy = s->security == EMAIL_SECURITY_NONE ? SMTP_TLS_NEVER
                          : s->accept_unsecure_connection   ? SMTP_TLS_IF_OFFERED
                                                            : SMTP_TLS_REQUIRED;
        t->x.allow_insecure_auth = s->accept_unsecure_connection;
    }
    t->port = s->port ? s->port : t->x.implicit_tls ? 465 : 587;
    live_add(t);
    return t;
}

email_transporter_t *transporter_new_ex(const email_server_t *s, const transporter_extra_t *extra,
                                        char *err, size_t errlen)
{
    int code;
    return transporter_create(s, extra, err, errlen, &code);
}

email_transporter_t *email_transporter_new(const email_server_t *server)
{
    char err[512];
    int code;
    email_transporter_t *t = transporter_create(server, NULL, err, sizeof err, &code);
    facade_set_error(t ? 0 : code, t ? NULL : err);
    return t;
}

int email_transporter_get_server(const email_transporter_t *t, email_server_t *out)
{
    if (!t || !out)
        return EMAIL_EINVAL;
    email_server_init(out);
    out->host = t->host;
    out->port = t->port;
    out->user = t->user;
    out->authentication_mode = t->auth_mech != AUTH_NONE ? auth_mech_name(t->auth_mech) : NULL;
    out->security = t->security;
    out->accept_unsecure_connection = t->accept_unsecure;
    out->connection_timeout = t->connect_timeout_ms / 1000;
    out->send_timeout = t->reply_timeout_ms / 1000;
    out->keep_alive = t->keep_alive;
    out->log_file = t->log_file;
    /* what message_freeze applies to a message that chose none */
    out->header_charset = t->header_charset ? t->header_charset : EMAIL_MAIL_MODE_UTF8;
    out->body_charset = t->body_charset ? t->body_charset : EMAIL_MAIL_MODE_UTF8;
    out->ca_file = t->ca_file;
    out->helo_name = t->helo_name;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Loop thread                                                                                  */

static void conn_ready(void *ud, connection_t *c);
static void conn_job_done(void *ud, connection_t *c, smtp_job_t *job);
static void conn_closed(void *ud, connection_t *c, const email_status_t *why);

static void conn_progress(void *ud, connection_t *c, smtp_job_t *job, uint64_t sent,
                          uint64_t total);

static const connection_callbacks_t conn_cbs = {
    .ready = conn_ready,
    .job_done = conn_job_done,
    .progress = conn_progress,
    .closed = conn_closed,
};

static void make_config(email_transporter_t *t, connection_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = t->host;
    cfg->port = t->port;
    cfg->engine.helo_name = t->helo_name;
    cfg->engine.creds.user = t->user;
    cfg->engine.creds.password = t->password;
    cfg->engine.creds.token = t->token;
    cfg->engine.auth_mech = t->auth_mech;
    cfg->engine.auth_limit = t->x.auth_limit;
    cfg->engine.auth_optional = t->x.auth_optional;
    cfg->engine.starttls = t->x.implicit_tls ? SMTP_TLS_NEVER : t->x.tls_policy;
    cfg->engine.tls_active = t->x.implicit_tls;
    cfg->allow_insecure_auth = t->x.allow_insecure_auth;
    cfg->implicit_tls = t->x.implicit_tls;
    cfg->ca_file = t->ca_file;
    cfg->no_verify = t->x.no_verify;
    cfg->connect_timeout_ms = t->connect_timeout_ms;
    cfg->reply_timeout_ms = t->reply_timeout_ms;
    cfg->session_id = email_log_session_id();
    cfg->log = t->log;
}

static connection_t *open_connection(email_transporter_t *t, void *ud)
{
    connection_config_t cfg;
    make_config(t, &cfg);
    t->conn_session = cfg.session_id;
    connection_t *c = connection_new(runtime_loop(), &cfg, &conn_cbs, ud);
    if (c)
        connection_start(c); /* a failure aborts it: conn_closed brings the reason */
    return c;
}

/* The body of a job: a MIME reader or prebuilt bytes. */
static ssize_t req_read(void *ctx, char *buf, size_t n)
{
    send_req_t *r = ctx;
    log_sink_t *log = r->t->log;
    ssize_t got;
    if (r->reader) {
        got = mime_reader_read(r->reader, buf, n);
    } else {
        size_t left = r->raw_len - r->raw_off;
        got = (ssize_t)(n > left ? left : n);
        memcpy(buf, r->raw + r->raw_off, (size_t)got);
        r->raw_off += (size_t)got;
    }
    if (log && got >= 0) {
        /* the extended log holds the full MIME of every message sent */
        if (!r->logging) {
            r->logging = true;
            email_log_data_begin(log, r->session, r->id);
        }
        if (got > 0)
            email_log_data(log, r->session, buf, (size_t)got);
        else
            email_log_data_end(log, r->session, r->id);
    }
    return got;
}

static void req_read_error(void *ctx, int error, char *text, size_t size)
{
    send_req_t *r = ctx;
    email_strlcpy(text, r->reader ? mime_reader_error(r->reader) : email_strerror(error), size);
}

/* Prepares the job for (another) attempt: a fresh reader from the start of the message. */
static int req_rewind(send_req_t *r, char *err, size_t errlen)
{
    r->raw_off = 0;
    r->logging = false;
    if (r->msg) {
        mime_reader_free(r->reader);
        r->reader = NULL;
        int rc = mime_reader_new(r->msg, &r->reader, err, errlen);
        if (rc)
            return rc;
        r->job.size = mime_reader_size(r->reader);
        r->job.eight_bit = mime_reader_8bit(r->reader);
    }
    r->job.read = req_read;
    r->job.read_error = req_read_error;
    r->job.ctx = r;
    r->job.user = r;
    email_refusals_free(&r->job.refusals);
    return 0;
}

static void req_free(send_req_t *r)
{
    mime_reader_free(r->reader);
    email_message_free(r->msg);
    free(r->raw);
    free(r->from);
    for (size_t i = 0; r->rcpts && i < r->nrcpts; i++)
        free(r->rcpts[i]);
    free(r->rcpts);
    email_refusals_free(&r->job.refusals);
    email_refusals_free(&r->refusals);
    email_errors_free(&r->earlier);
    free(r);
}

/* 4D's statusText of a failure that was not the server's. */
#define FAILED_PREFIX "Failed to send email: "

/*
 * A status about to reach its caller, at its final address: for a failure that was not the
 * server's, the chain of causes (this failure, then why earlier attempts failed) and, with 4D's
 * texts, FAILED_PREFIX before ours; then its lists are attached. component NULL: by the code.
 */
static void status_finish(email_status_t *s, email_refusals_t *refusals,
                          const email_errors_t *earlier, bool texts_4d, const char *component)
{
    email_errors_t chain;
    email_errors_init(&chain);
    if (!s->success && !s->status && s->error) {
        /* without memory for all of it, the chain is shorter: still true */
        int rc = email_errors_add(&chain, s->error, s->status_text, component);
        for (size_t i = 0; !rc && earlier && i < earlier->n; i++)
            rc = email_errors_add(&chain, earlier->v[i].code, earlier->v[i].message,
                                  earlier->v[i].component);
        if (texts_4d) {
            char text[sizeof s->status_text];
            snprintf(text, sizeof text, "%s%.*s", FAILED_PREFIX,
                     (int)(sizeof text - sizeof FAILED_PREFIX), s->status_text);
            memcpy(s->status_text, text, sizeof text);
        }
    }
    email_status_attach(s, refusals, &chain);
}

static void deliver_async(void *arg)
{
    send_req_t *r = arg;
    status_finish(&r->status, &r->refusals, &r->earlier, r->texts_4d, NULL);
    r->cb(r->id, &r->status, r->cb_data);
    email_status_clear(&r->status); /* the callback's status is valid during the call only */
    req_free(r);
}

/* Only where nothing touches t afterwards: the end of conn_closed and of start_free. */
static void maybe_finish_free(email_transporter_t *t);

/* The request has its outcome: hand it to whoever waits. */
static void req_complete(send_req_t *r)
{
    if (r->id)
        registry_done(r->id, r->status.success ? EMAIL_SENT : EMAIL_ERROR);
    if (r->waiter) {
        runtime_waiter_signal(r->waiter); /* the sender owns r from here */
    } else if (r->cb) {
        runtime_deliver(deliver_async, r);
    } else {
        req_free(r);
    }
}

/* Completes with the job's own status (moving its refusals). */
static void req_complete_job(send_req_t *r)
{
    email_status_copy_into(&r->status, &r->job.status);
    r->refusals = r->job.refusals;
    email_refusals_init(&r->job.refusals);
    req_complete(r);
}

static void req_fail(send_req_t *r, const email_status_t *why, const char *prefix)
{
    email_status_copy_into(&r->status, why);
    r->status.success = false;
    if (!r->status.error)
        r->status.error = EMAIL_ECLOSED;
    r->status.recipients = r->nrcpts;
    r->status.rejected = 0;
    if (prefix) {
        char text[sizeof r->status.status_text];
        snprintf(text, sizeof text, "%s%s", prefix, why->status_text);
        email_strlcpy(r->status.status_text, text, sizeof r->status.status_text);
    }
    req_complete(r);
}

static void unlink_in_conn(email_transporter_t *t, send_req_t *r)
{
    if (r->conn_prev)
        r->conn_prev->conn_next = r->conn_next;
    else
        t->in_conn = r->conn_next;
    if (r->conn_next)
        r->conn_next->conn_prev = r->conn_prev;
    r->conn_prev = r->conn_next = NULL;
    t->in_flight--;
}

/* Gives the waiting requests to the connection, opening one when needed. */
static void kick(email_transporter_t *t)
{
    if (!t->waiting.head)
        return;
    if (!t->conn) {
        t->conn = open_connection(t, t);
        if (!t->conn) {
            email_status_t s;
            email_status_init(&s);
            email_status_fail(&s, EMAIL_ENOMEM, "out of memory");
            send_req_t *r;
            while ((r = list_pop(&t->waiting)))
                req_fail(r, &s, NULL);
            return;
        }
    }
    while (t->waiting.head) {
        /* in the connection before submitting: the job can end inside connection_submit (too
         * large, or its body unreadable), and its job_done unlinks and completes it */
        send_req_t *r = list_pop(&t->waiting);
        r->session = t->conn_session;
        r->conn_prev = NULL;
        r->conn_next = t->in_conn;
        if (t->in_conn)
            t->in_conn->conn_prev = r;
        t->in_conn = r;
        t->in_flight++;
        if (connection_submit(t->conn, &r->job) != 0) {
            /* closing: it goes on the next connection, first in line */
            unlink_in_conn(t, r);
            r->next = t->waiting.head;
            t->waiting.head = r;
            if (!t->waiting.tail)
                t->waiting.tail = r;
            return;
        }
    }
}

/* An open has its verdict. A failed one is a named session's start failing: what is sent to
 * the transporter afterwards fails the same way instead of trying another connection. */
static void opener_finish(email_transporter_t *t, op_t *o, int rc, const email_status_t *st)
{
    email_status_copy_into(&o->status, st);
    o->status.success = rc == 0;
    o->status.error = rc;
    if (rc && !t->open_failed) {
        t->open_failed = true;
        email_status_copy_into(&t->open_status, &o->status);
    }
    o->done(o->done_arg, &o->status);
    free(o);
}

static void openers_finish(email_transporter_t *t, int rc, const email_status_t *st)
{
    op_t *o = t->openers;
    t->openers = NULL;
    while (o) {
        op_t *next = o->next;
        opener_finish(t, o, rc, st);
        o = next;
    }
}

static void conn_ready(void *ud, connection_t *c)
{
    email_transporter_t *t = ud;
    openers_finish(t, 0, connection_ready_status(c));
    if (!t->keep_alive && !t->in_flight && !t->waiting.head)
        connection_quit(c);
}

static void conn_job_done(void *ud, connection_t *c, smtp_job_t *job)
{
    email_transporter_t *t = ud;
    send_req_t *r = job->user;
    unlink_in_conn(t, r);
    if (job->outcome == SMTP_JOB_RETRYABLE)
        list_push(&t->parked, r); /* decided once we know why the connection ended */
    else
        req_complete_job(r);
    if ((!t->keep_alive || t->freeing) && !t->in_flight && !t->waiting.head &&
        connection_is_ready(c))
        connection_quit(c);
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
    runtime_deliver(deliver_progress, p);
}

static void conn_closed(void *ud, connection_t *c, const email_status_t *why)
{
    email_transporter_t *t = ud;
    bool was_ready = connection_was_ready(c);
    if (t->conn == c)
        t->conn = NULL;
    openers_finish(t, why->error ? why->error : EMAIL_ECLOSED, why);

    /* Messages cut off before their end of data: once more on a fresh connection when the
     * lost one had worked; otherwise the reason the session failed is theirs. */
    send_req_t *r;
    req_list_t retry = {0};
    while ((r = list_pop(&t->parked))) {
        if (was_ready && r->attempts < 2 && !t->expired) {
            char err[256];
            r->attempts++;
            /* a link of the chain of causes, should the next attempt fail too */
            if (r->job.status.error)
                email_errors_add(&r->earlier, r->job.status.error, r->job.status.status_text,
                                 NULL);
            if (req_rewind(r, err, sizeof err) == 0) {
                list_push(&retry, r);
                continue;
            }
        }
        req_fail(r, was_ready ? &r->job.status : why, NULL);
    }
    /* retries go first, in their original order */
    if (retry.head) {
        retry.tail->next = t->waiting.head;
        if (!t->waiting.head)
            t->waiting.tail = retry.tail;
        t->waiting.head = retry.head;
    }
    if (!was_ready && t->waiting.head) {
        /* the connection never worked: what waits for it fails the same way */
        while ((r = list_pop(&t->waiting)))
            req_fail(r, why, NULL);
    }
    kick(t);
    maybe_finish_free(t);
}

/* ------------------------------------------------------------------------------------------- */
/* Operations posted from callers                                                               */

static void op_open(void *arg)
{
    op_t *o = arg;
    email_transporter_t *t = o->t;
    if (t->conn && connection_is_ready(t->conn)) {
        opener_finish(t, o, 0, connection_ready_status(t->conn));
        return;
    }
    o->next = t->openers;
    t->openers = o;
    if (!t->conn) {
        t->conn = open_connection(t, t);
        if (!t->conn && t->openers == o) {
            t->openers = o->next;
            email_status_t s;
            email_status_init(&s);
            email_status_fail(&s, EMAIL_ENOMEM, "out of memory");
            opener_finish(t, o, EMAIL_ENOMEM, &s);
        }
    }
}

int transporter_open_async(email_transporter_t *t, transporter_open_cb done, void *arg)
{
    op_t *o = calloc(1, sizeof *o);
    if (!o)
        return EMAIL_ENOMEM;
    o->t = t;
    o->done = done;
    o->done_arg = arg;
    int rc = runtime_post(op_open, o);
    if (rc)
        free(o);
    return rc;
}

/* Runs a check operation on the loop and waits for the connection's verdict. */
static int run_connection_op(email_transporter_t *t, runtime_fn fn, email_status_t *status)
{
    op_t o = {.t = t};
    runtime_waiter_init(&o.waiter);
    email_status_init(&o.status);
    int rc = runtime_call(fn, &o, &o.waiter);
    runtime_waiter_destroy(&o.waiter);
    if (rc)
        email_status_fail(&o.status, rc, "%s", email_strerror(rc));
    else
        rc = o.rc;
    o.status.success = rc == 0;
    o.status.error = rc;
    if (status)
        email_status_copy_into(status, &o.status);
    return rc;
}

/* check_connection: its own connection, QUIT as soon as it is ready. */
static void check_ready(void *ud, connection_t *c)
{
    op_t *o = ud;
    email_status_copy_into(&o->status, connection_ready_status(c));
    o->rc = 0;
    connection_quit(c);
}

static void check_closed(void *ud, connection_t *c, const email_status_t *why)
{
    op_t *o = ud;
    if (!connection_was_ready(c)) {
        email_status_copy_into(&o->status, why);
        o->rc = why->error ? why->error : EMAIL_ECLOSED;
    }
    runtime_waiter_signal(&o->waiter);
}

static void op_check(void *arg)
{
    static const connection_callbacks_t cbs = {.ready = check_ready, .closed = check_closed};
    op_t *o = arg;
    connection_config_t cfg;
    make_config(o->t, &cfg);
    o->rc = EMAIL_ECLOSED;
    connection_t *c = connection_new(runtime_loop(), &cfg, &cbs, o);
    if (!c) {
        email_status_fail(&o->status, EMAIL_ENOMEM, "out of memory");
        o->rc = EMAIL_ENOMEM;
        runtime_waiter_signal(&o->waiter);
        return;
    }
    connection_quit(c);
    connection_start(c);
}

int email_transporter_check_connection(email_transporter_t *t, email_status_t *status)
{
    if (!t)
        return EMAIL_EINVAL;
    int rc = run_connection_op(t, op_check, status);
    if (status)
        status_finish(status, NULL, NULL, t->texts_4d, NULL);
    return rc;
}

static void op_send(void *arg)
{
    send_req_t *r = arg;
    email_transporter_t *t = r->t;
    if (t->open_failed) {
        req_fail(r, &t->open_status, NULL);
        return;
    }
    if (t->freeing) {
        email_status_t s;
        email_status_init(&s);
        email_status_fail(&s, EMAIL_ESHUTDOWN, "the transporter is being freed");
        req_fail(r, &s, NULL);
        return;
    }
    if (!r->progress) {
        r->progress = t->progress;
        r->progress_data = t->progress_data;
    }
    list_push(&t->waiting, r);
    kick(t);
}

/* A request for a message: validated and frozen now, in the caller's thread. */
static int req_new_message(email_transporter_t *t, const email_message_t *m, send_req_t **out,
                           char *err, size_t errlen)
{
    if (!t || !m) {
        snprintf(err, errlen, "%s is NULL", t ? "message" : "transporter");
        return EMAIL_EINVAL;
    }
    send_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return EMAIL_ENOMEM;
    r->t = t;
    r->texts_4d = t->texts_4d;
    int rc = message_freeze(m, t->header_charset, t->body_charset, &r->msg, err, errlen);
    if (!rc)
        rc = req_rewind(r, err, errlen);
    if (rc) {
        req_free(r);
        return rc;
    }
    const char *const *rcpts;
    r->job.nrcpts = message_recipients(r->msg, &rcpts);
    r->job.rcpts = rcpts;
    r->job.from = message_envelope_from(r->msg);
    r->job.smtputf8 = message_needs_smtputf8(r->msg);
    r->id = email_message_id(r->msg);
    r->nrcpts = r->job.nrcpts;
    r->attempts = 1;
    registry_pending(r->id);
    *out = r;
    return 0;
}

static int send_and_wait(send_req_t *r, email_status_t *status)
{
    runtime_waiter_t w;
    runtime_waiter_init(&w);
    r->waiter = &w;
    int rc = runtime_call(op_send, r, &w);
    runtime_waiter_destroy(&w);
    if (rc) {
        if (status) {
            email_status_clear(status);
            email_status_fail(status, rc, "%s", email_strerror(rc));
            status_finish(status, NULL, NULL, r->texts_4d, NULL);
        }
        if (r->id)
            registry_done(r->id, EMAIL_ERROR); /* never queued: not pending forever */
        req_free(r);
        return rc;
    }
    rc = r->status.success ? 0 : (r->status.error ? r->status.error : EMAIL_ESERVER);
    if (status) {
        email_status_copy_into(status, &r->status);
        status->error = rc;
        status_finish(status, &r->refusals, &r->earlier, r->texts_4d, NULL);
    }
    req_free(r);
    return rc;
}

int email_transporter_send(email_transporter_t *t, const email_message_t *m,
                           email_status_t *status)
{
    char err[512] = "";
    send_req_t *r;
    int rc = req_new_message(t, m, &r, err, sizeof err);
    if (rc) {
        if (status) {
            email_status_clear(status);
            email_status_fail(status, rc, "%s", err[0] ? err : email_strerror(rc));
            /* the message could not be composed; a NULL argument is the caller's */
            status_finish(status, NULL, NULL, !t || t->texts_4d,
                          t && m && rc != EMAIL_ENOMEM ? "mime" : NULL);
        }
        return rc;
    }
    return send_and_wait(r, status);
}

int transporter_send_raw(email_transporter_t *t, const transporter_raw_t *raw,
                         email_status_t *status)
{
    const char *from = raw->from, *const *rcpts = raw->rcpts, *mime = raw->mime;
    size_t length = raw->length;
    if (status)
        email_status_clear(status);
    send_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return EMAIL_ENOMEM;
    r->t = t;
    r->texts_4d = t->texts_4d;
    size_t n = 0;
    while (rcpts[n])
        n++;
    r->from = email_strdup(from);
    r->rcpts = calloc(n ? n : 1, sizeof *r->rcpts);
    r->raw = malloc(length ? length : 1);
    if (!r->from || !r->rcpts || !r->raw) {
        req_free(r);
        return EMAIL_ENOMEM;
    }
    for (r->nrcpts = 0; r->nrcpts < n; r->nrcpts++) {
        r->rcpts[r->nrcpts] = email_strdup(rcpts[r->nrcpts]);
        if (!r->rcpts[r->nrcpts]) {
            req_free(r);
            return EMAIL_ENOMEM;
        }
    }
    memcpy(r->raw, mime, length);
    r->raw_len = length;
    r->job.from = r->from;
    r->job.rcpts = (const char *const *)r->rcpts;
    r->job.nrcpts = n;
    r->job.size = length;
    r->job.eight_bit = !email_is_ascii(mime, length);
    r->job.smtputf8 = !email_is_ascii(from, strlen(from));
    for (size_t i = 0; i < n; i++)
        r->job.smtputf8 |= !email_is_ascii(rcpts[i], strlen(rcpts[i]));
    r->attempts = 1;
    req_rewind(r, NULL, 0);
    r->id = message_new_id(); /* the same space as messages' ids: EmailStatus tracks it */
    if (raw->message_id)
        *raw->message_id = r->id;
    registry_pending(r->id);
    if (status)
        return send_and_wait(r, status);
    r->cb = raw->done;
    r->cb_data = raw->user_data;
    r->progress = raw->progress;
    r->progress_data = raw->progress_data;
    int rc = runtime_post(op_send, r);
    if (rc) {
        registry_done(r->id, EMAIL_ERROR);
        req_free(r);
    }
    return rc;
}

int transporter_send_async_ex(email_transporter_t *t, const email_message_t *m, email_send_cb done,
                              void *user_data, email_progress_cb progress, void *progress_data,
                              uint64_t *message_id, char *err, size_t errlen)
{
    send_req_t *r;
    int rc = req_new_message(t, m, &r, err, errlen);
    if (rc)
        return rc;
    r->cb = done;
    r->cb_data = user_data;
    if (progress) {
        r->progress = progress;
        r->progress_data = progress_data;
    }
    if (message_id)
        *message_id = r->id;
    rc = runtime_post(op_send, r);
    if (rc) {
        registry_done(r->id, EMAIL_ERROR);
        req_free(r);
        snprintf(err, errlen, "%s", email_strerror(rc));
    }
    return rc;
}

int email_transporter_send_async(email_transporter_t *t, const email_message_t *m,
                                 email_send_cb done, void *user_data, uint64_t *message_id)
{
    char err[512] = "";
    int rc = transporter_send_async_ex(t, m, done, user_data, NULL, NULL, message_id, err,
                                       sizeof err);
    facade_set_error(rc, rc ? (err[0] ? err : email_strerror(rc)) : NULL);
    return rc;
}

typedef struct cancel_op {
    email_transporter_t *t;
    uint64_t id;
    int rc;
    runtime_waiter_t waiter;
} cancel_op_t;

static send_req_t *unlink_waiting(email_transporter_t *t, uint64_t id)
{
    send_req_t *prev = NULL;
    for (send_req_t *r = t->waiting.head; r; prev = r, r = r->next) {
        if (r->id != id)
            continue;
        if (prev)
            prev->next = r->next;
        else
            t->waiting.head = r->next;
        if (t->waiting.tail == r)
            t->waiting.tail = prev;
        return r;
    }
    return NULL;
}

static void op_cancel(void *arg)
{
    cancel_op_t *o = arg;
    email_transporter_t *t = o->t;
    send_req_t *r = unlink_waiting(t, o->id);
    o->rc = EMAIL_ENOTFOUND;
    if (!r) {
        /* given to the connection: only while its commands have not gone out */
        for (send_req_t *q = t->in_conn; q; q = q->conn_next) {
            if (q->id != o->id)
                continue;
            o->rc = EMAIL_EBUSY;
            if (t->conn && connection_cancel(t->conn, &q->job) == 0) {
                unlink_in_conn(t, q);
                r = q;
            }
            break;
        }
    }
    if (r) {
        email_status_t s;
        email_status_init(&s);
        email_status_fail(&s, EMAIL_ECANCELED, "the message was canceled before it was sent");
        req_fail(r, &s, NULL);
        o->rc = 0;
    }
    runtime_waiter_signal(&o->waiter);
}

int email_transporter_cancel(email_transporter_t *t, uint64_t message_id)
{
    if (!t || !message_id)
        return EMAIL_EINVAL;
    cancel_op_t o = {.t = t, .id = message_id};
    runtime_waiter_init(&o.waiter);
    int rc = runtime_call(op_cancel, &o, &o.waiter);
    runtime_waiter_destroy(&o.waiter);
    return rc ? rc : o.rc;
}

typedef struct progress_op {
    email_transporter_t *t;
    email_progress_cb cb;
    void *data;
    runtime_waiter_t waiter;
} progress_op_t;

static void op_set_progress(void *arg)
{
    progress_op_t *o = arg;
    o->t->progress = o->cb;
    o->t->progress_data = o->data;
    runtime_waiter_signal(&o->waiter);
}

int email_transporter_set_progress(email_transporter_t *t, email_progress_cb cb, void *user_data)
{
    if (!t)
        return EMAIL_EINVAL;
    progress_op_t o = {.t = t, .cb = cb, .data = user_data};
    runtime_waiter_init(&o.waiter);
    int rc = runtime_call(op_set_progress, &o, &o.waiter);
    runtime_waiter_destroy(&o.waiter);
    return rc;
}

typedef struct log_op {
    email_transporter_t *t;
    log_sink_t *log;
    runtime_waiter_t waiter;
} log_op_t;

static void op_set_log(void *arg)
{
    log_op_t *o = arg;
    log_sink_t *old = o->t->log;
    o->t->log = o->log;
    if (o->t->conn)
        connection_set_log(o->t->conn, o->log);
    log_sink_release(old);
    runtime_waiter_signal(&o->waiter);
}

int transporter_set_log(email_transporter_t *t, const char *path, char *err, size_t errlen)
{
    log_op_t o = {.t = t};
    if (path && !(o.log = log_sink_open(path, err, errlen)))
        return EMAIL_EIO;
    runtime_waiter_init(&o.waiter);
    int rc = runtime_call(op_set_log, &o, &o.waiter);
    runtime_waiter_destroy(&o.waiter);
    if (rc) {
        log_sink_release(o.log);
        snprintf(err, errlen, "%s", email_strerror(rc));
    }
    return rc;
}

/* email_shutdown: every connection says QUIT once its queue is done, so the loop can end; the
 * transporters stay usable (a later send starts the library again). */
static void op_quiesce(void *arg)
{
    pthread_mutex_lock(&live_lock);
    for (email_transporter_t *t = live_head; t; t = t->live_next)
        if (t->conn)
            connection_quit(t->conn);
    pthread_mutex_unlock(&live_lock);
}

void transporter_quiesce_all(void)
{
    if (runtime_running())
        runtime_post(op_quiesce, NULL);
}

/* ------------------------------------------------------------------------------------------- */
/* Freeing: QUIT after what is queued, wait for the connection to close                         */

static void free_now(email_transporter_t *t)
{
    op_t *o = t->freer;
    if (o)
        runtime_waiter_signal(&o->waiter); /* the caller destroys t */
    else
        transporter_destroy(t);
}

static void on_deadline_closed(uv_handle_t *h)
{
    email_transporter_t *t = h->data;
    free(h);
    free_now(t);
}

static void maybe_finish_free(email_transporter_t *t)
{
    if (!t->freeing || t->conn || t->waiting.head || t->parked.head || t->in_flight)
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
    email_status_init(&s);
    email_status_fail(&s, EMAIL_ETIMEDOUT,
                      "the session was closed before this message could be sent (timeout)");
    send_req_t *r;
    while ((r = list_pop(&t->waiting)))
        req_fail(r, &s, NULL);
    if (t->conn)
        connection_abort(t->conn, EMAIL_ETIMEDOUT,
                         "the session was closed before every message could be sent (timeout)");
    maybe_finish_free(t);
}

static void start_free(email_transporter_t *t)
{
    t->freeing = true;
    if (t->conn || t->waiting.head) {
        t->free_deadline = malloc(sizeof *t->free_deadline);
        if (t->free_deadline) {
            uv_timer_init(runtime_loop(), t->free_deadline);
            t->free_deadline->data = t;
            uv_timer_start(t->free_deadline, on_free_deadline,
                           (uint64_t)t->reply_timeout_ms, 0);
        }
    }
    if (t->conn) {
        if (connection_is_ready(t->conn) || t->in_flight || t->waiting.head)
            connection_quit(t->conn);
        else
            connection_abort(t->conn, EMAIL_ECANCELED, "the transporter was freed");
    }
    maybe_finish_free(t);
}

static void start_free_cb(void *arg)
{
    start_free(arg);
}

static void op_free(void *arg)
{
    op_t *o = arg;
    o->t->freer = o;
    start_free(o->t);
}

void transporter_free_later(email_transporter_t *t)
{
    /* from a fresh loop iteration: the caller may be inside one of t's own callbacks */
    runtime_post(start_free_cb, t);
}

void email_transporter_free(email_transporter_t *t)
{
    if (!t)
        return;
    if (runtime_on_loop_thread()) {
        transporter_free_later(t); /* waiting on the loop's own thread would never end */
        return;
    }
    op_t o = {.t = t};
    runtime_waiter_init(&o.waiter);
    int rc = runtime_call(op_free, &o, &o.waiter);
    runtime_waiter_destroy(&o.waiter);
    if (rc == 0)
        transporter_destroy(t);
}
