/*
 * The SMTP client engine, sans I/O (RFC 5321, 2920 pipelining, 3207 STARTTLS, 4954 AUTH,
 * 1870 SIZE, 6152 8BITMIME, 6531 SMTPUTF8, 2034 enhanced codes).
 *
 * Every command sent pushes an entry on a FIFO of expected replies; every reply pops the head and
 * is handled by what that entry says. Without PIPELINING the FIFO never holds more than one
 * entry; with it, MAIL + RCPT... + DATA go out as one group, and the next message's group right
 * behind the previous end of data, so a stream of messages costs one round trip each.
 */
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "reply.h"

enum state {
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_STARTTLS,
    ST_TLS_HANDSHAKE,
    ST_AUTH,
    ST_READY,
    ST_QUIT,
    ST_CLOSED
};

/* What a reply at the head of the FIFO answers. */
enum cmd { CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_EOD, CMD_RSET, CMD_BDAT, CMD_BDAT_LAST };

/* Phases of a job. */
enum phase { PH_QUEUED, PH_SENT, PH_BODY, PH_EOD, PH_DONE };

typedef struct pending_reply {
    enum cmd cmd;
    smtp_job_t *job;
    uint64_t end;            /* output offset just past the command (and its data) */
} pending_reply_t;

#define BODY_CHUNK 65536

struct smtp_engine {
    smtp_engine_config_t cfg;
    smtp_engine_callbacks_t cb;
    void *ud;
    enum state state;
    smtp_reply_parser_t parser;
    email_status_t status;   /* setup outcome, and the reason the session ended */

    unsigned caps;
    uint64_t size_limit;
    unsigned auth_mechs;
    auth_mech_t auth_used;
    int auth_step;

    email_buf_t out;         /* bytes not yet taken */
    uint64_t taken;          /* bytes handed to the caller so far */
    uint64_t written;        /* bytes the caller reported written */

    /* jobs: queued (not started) in a list; in flight are referenced by the FIFO */
    smtp_job_t *queue_head, *queue_tail;
    smtp_job_t *body_job;    /* job whose body is being sent */
    email_dotstuff_t dot;
    bool body_wait;          /* a DATA awaits its 354, or a BDAT LAST its reply: nothing more
                                may be sent before it */
    bool bdat;               /* the body being sent goes as BDAT chunks (RFC 3030) */
    email_crlf_t crlf;       /* line-end normalisation of BDAT chunks */
    email_buf_t chunk;       /* one normalised BDAT chunk */

    pending_reply_t *fifo;
    size_t fifo_head, fifo_len, fifo_cap;
    size_t jobs_in_flight;

    size_t handed;           /* bytes at the start of out given by the last take */
    uint64_t setup_end;      /* output offset just past the last setup command (or QUIT) */
    uint64_t feed_seen;      /* bytes handed over before the bytes being fed arrived */
    uint64_t replies;        /* complete replies received */
    smtp_job_t *progress_job; /* job whose body is being written out */

    bool quit_wanted;
    bool ready_reported;
    bool dying;              /* a body could not be read: the session ends, nothing more goes */
    bool server_closing;     /* a 421 came: the session ends, nothing more goes */
    bool quit_failure;       /* the setup failed with the server still listening: the failure is
                                in status, QUIT went, the session ends at its reply */
};

static void pump(smtp_engine_t *e);
static void fail_session(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *fmt, ...)
    EMAIL_PRINTF(4, 5);

/* ------------------------------------------------------------------------------------------- */

static void logf_(smtp_engine_t *e, char kind, const char *fmt, ...) EMAIL_PRINTF(3, 4);
static void logf_(smtp_engine_t *e, char kind, const char *fmt, ...)
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

/* The ONLY place where the session state changes. */
static void set_state(smtp_engine_t *e, enum state s)
{
    e->state = s;
}

/* A command line: logged (shown may mask secrets), CRLF appended. */
static int send_line(smtp_engine_t *e, const char *line, const char *shown)
{
    if (email_buf_puts(&e->out, line) || email_buf_puts(&e->out, "\r\n"))
        return EMAIL_ENOMEM;
    e->setup_end = e->taken + e->out.len;
    if (e->cb.log)
        e->cb.log(e->ud, 'C', shown ? shown : line);
    return 0;
}

static int fifo_push(smtp_engine_t *e, enum cmd cmd, smtp_job_t *job)
{
    if (e->fifo_len == e->fifo_cap) {
        size_t cap = e->fifo_cap ? e->fifo_cap * 2 : 16;
        pending_reply_t *f = malloc(cap * sizeof *f);
        if (!f)
            return EMAIL_ENOMEM;
        for (size_t i = 0; i < e->fifo_len; i++)
            f[i] = e->fifo[(e->fifo_head + i) % e->fifo_cap];
        free(e->fifo);
        e->fifo = f;
        e->fifo_head = 0;
        e->fifo_cap = cap;
    }
    e->fifo[(e->fifo_head + e->fifo_len) % e->fifo_cap] =
        (pending_reply_t){cmd, job, e->taken + e->out.len};
    e->fifo_len++;
    return 0;
}

static pending_reply_t fifo_pop(smtp_engine_t *e)
{
    pending_reply_t p = e->fifo[e->fifo_head];
    e->fifo_head = (e->fifo_head + 1) % e->fifo_cap;
    e->fifo_len--;
    return p;
}

/* ------------------------------------------------------------------------------------------- */

smtp_engine_t *smtp_engine_new(const smtp_engine_config_t *config,
                               const smtp_engine_callbacks_t *callbacks, void *ud)
{
    smtp_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *config;
    e->cfg.helo_name = email_strdup(config->helo_name ? config->helo_name : "localhost");
    e->cfg.creds.user = email_strdup(config->creds.user);
    e->cfg.creds.password = email_strdup(config->creds.password);
    e->cfg.creds.token = email_strdup(config->creds.token);
    if (!e->cfg.window)
        e->cfg.window = 100;
    e->cb = *callbacks;
    e->ud = ud;
    smtp_reply_parser_init(&e->parser);
    email_buf_init(&e->out);
    email_status_init(&e->status);
    if (!e->cfg.helo_name || (config->creds.user && !e->cfg.creds.user) ||
        (config->creds.password && !e->cfg.creds.password) ||
        (config->creds.token && !e->cfg.creds.token)) {
        smtp_engine_free(e);
        return NULL;
    }
    set_state(e, ST_GREETING);
    return e;
}

void smtp_engine_free(smtp_engine_t *e)
{
    if (!e)
        return;
    free((char *)e->cfg.helo_name);
    free((char *)e->cfg.creds.user);
    email_free_secret((char *)e->cfg.creds.password);
    email_free_secret((char *)e->cfg.creds.token);
    smtp_reply_parser_free(&e->parser);
    email_buf_free(&e->out);
    email_buf_free(&e->chunk);
    free(e->fifo);
    free(e);
}

/* ------------------------------------------------------------------------------------------- */
/* Ending jobs and the session                                                                  */

static void job_set_failure(smtp_job_t *j, const smtp_reply_t *r)
{
    if (j->fail_code)
        return; /* the first failure is the reason */
    j->fail_code = r->code;
    email_strlcpy(j->fail_enhanced, r->enhanced, sizeof j->fail_enhanced);
    j->fail_text = email_strdup(r->text);
}

/* Replaces the recorded reason (a later, more telling refusal). */
static void job_set_reason(smtp_job_t *j, const smtp_reply_t *r)
{
    j->fail_code = 0;
    free(j->fail_text);
    j->fail_text = NULL;
    job_set_failure(j, r);
}

static void job_finish(smtp_engine_t *e, smtp_job_t *j, enum smtp_job_outcome outcome, int error,
                       const smtp_reply_t *r, const char *fmt, ...) EMAIL_PRINTF(6, 7);
static void job_finish(smtp_engine_t *e, smtp_job_t *j, enum smtp_job_outcome outcome, int error,
                       const smtp_reply_t *r, const char *fmt, ...)
{
    if (j->phase == PH_DONE)
        return;
    /* job_done may free the job: nothing here may point at it afterwards */
    if (e->progress_job == j)
        e->progress_job = NULL;
    if (e->body_job == j)
        e->body_job = NULL;
    for (size_t i = 0; i < e->fifo_len; i++) {
        pending_reply_t *p = &e->fifo[(e->fifo_head + i) % e->fifo_cap];
        if (p->job == j)
            p->job = NULL;
    }
    if (j->phase != PH_QUEUED)
        e->jobs_in_flight--;
    j->phase = PH_DONE;
    j->outcome = outcome;
    email_status_t *s = &j->status;
    s->success = outcome == SMTP_JOB_SENT;
    s->error = error;
    s->recipients = j->nrcpts;
    s->rejected = j->refusals.n;
    if (r) {
        email_status_set_reply(s, r->code, r->enhanced, r->text);
    } else if (j->fail_code && error != EMAIL_EUNKNOWN && outcome != SMTP_JOB_RETRYABLE) {
        email_status_set_reply(s, j->fail_code, j->fail_enhanced, j->fail_text);
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

static void finish_refused(smtp_engine_t *e, smtp_job_t *j);

/* The session is over: every job still here gets its outcome, then `closed` once. */
static void end_session(smtp_engine_t *e, int error, const char *text)
{
    if (e->state == ST_CLOSED)
        return;
    char kept[sizeof e->status.status_text];
    if (e->quit_failure) {
        /* the setup failure stays the outcome; this only says why QUIT's answer never came */
        if (error)
            logf_(e, '#', "SMTP Error: %s", text);
        error = e->status.error;
        email_strlcpy(kept, e->status.status_text, sizeof kept);
        text = kept;
    }
    set_state(e, ST_CLOSED);
    /* jobs in flight, in order */
    while (e->fifo_len) {
        pending_reply_t p = fifo_pop(e);
        smtp_job_t *j = p.job;
        if (!j || j->phase == PH_DONE)
            continue;
        if (j->phase == PH_EOD && ((j->mail_replied && !j->mail_ok) ||
                                   (j->replied == j->nrcpts && !j->accepted)))
            finish_refused(e, j); /* no recipient was accepted: nothing can be delivered */
        else if (j->phase == PH_EOD && e->written >= j->eod_offset)
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
    while (e->queue_head) {
        smtp_job_t *j = e->queue_head;
        e->queue_head = j->next;
        job_finish(e, j, SMTP_JOB_RETRYABLE, error, NULL,
                   "the connection ended before the message was sent: %s", text);
    }
    e->queue_tail = NULL;
    if (error && !e->status.error) {
        /* not the server's refusal: the last reply's code must not stand as the reason */
        e->status.success = false;
        e->status.error = error;
        e->status.status = 0;
        e->status.enhanced_code[0] = '\0';
        email_strlcpy(e->status.status_text, text, sizeof e->status.status_text);
    }
    if (error)
        logf_(e, '#', "SMTP Error: %s", text);
    if (e->cb.closed)
        e->cb.closed(e->ud, &e->status);
}

/* The session's outcome (what `closed` reports): our words, the server's code when it refused. */
static void record_failure(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *text)
{
    if (e->quit_failure)
        return; /* the setup failure that made us QUIT stays the outcome */
    email_status_fail(&e->status, error, "%s", text);
    if (r) {
        e->status.status = r->code;
        email_strlcpy(e->status.enhanced_code, r->enhanced, sizeof e->status.enhanced_code);
    }
}

static void fail_session(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record_failure(e, error, r, text);
    end_session(e, error, text);
}

/*
 * A setup failure while the server still listens: QUIT before closing, as 4D does (and as RFC
 * 5321 asks after a 554 greeting). The failure stays the outcome; the session ends at QUIT's
 * reply, or when the caller gives up waiting for it (abort). Never after a 421, a protocol error
 * or a broken transport: those end the session at once (fail_session).
 */
static void quit_after_failure(smtp_engine_t *e, int error, const smtp_reply_t *r,
                               const char *fmt, ...) EMAIL_PRINTF(4, 5);
static void quit_after_failure(smtp_engine_t *e, int error, const smtp_reply_t *r,
                               const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record_failure(e, error, r, text);
    e->quit_failure = true;
    set_state(e, ST_QUIT);
    if (send_line(e, "QUIT", NULL))
        end_session(e, EMAIL_ENOMEM, "out of memory");
}

void smtp_engine_abort(smtp_engine_t *e, int error, const char *text)
{
    end_session(e, error ? error : EMAIL_ECLOSED, text ? text : email_strerror(error));
}

/* ------------------------------------------------------------------------------------------- */
/* Session setup: greeting, EHLO/HELO, STARTTLS, AUTH                                            */

static void send_ehlo(smtp_engine_t *e, bool helo)
{
    char line[600];
    snprintf(line, sizeof line, "%s %s", helo ? "HELO" : "EHLO", e->cfg.helo_name);
    set_state(e, helo ? ST_HELO : ST_EHLO);
    if (send_line(e, line, NULL))
        fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
}

static void parse_ehlo(smtp_engine_t *e, const smtp_reply_t *r)
{
    e->caps = SMTP_CAP_EHLO;
    e->size_limit = 0;
    e->auth_mechs = 0;
    /* the first line is the greeting; each further line is "KEYWORD [params]" */
    for (size_t i = 1; i < r->nlines; i++) {
        if (strlen(r->lines[i]) <= 4)
            continue; /* "250" or "250-" alone: no keyword */
        const char *kw = r->lines[i] + 4;
        size_t n = strcspn(kw, " =");
        const char *arg = kw[n] ? kw + n + 1 : "";
#define IS(word) (n == sizeof(word) - 1 && !email_strncasecmp(kw, word, n))
        if (IS("PIPELINING"))
            e->caps |= SMTP_CAP_PIPELINING;
        else if (IS("SIZE")) {
            e->caps |= SMTP_CAP_SIZE;
            e->size_limit = strtoull(arg, NULL, 10);
        } else if (IS("8BITMIME"))
            e->caps |= SMTP_CAP_8BITMIME;
        else if (IS("SMTPUTF8"))
            e->caps |= SMTP_CAP_SMTPUTF8;
        else if (IS("CHUNKING"))
            e->caps |= SMTP_CAP_CHUNKING;
        else if (IS("DSN"))
            e->caps |= SMTP_CAP_DSN;
        else if (IS("ENHANCEDSTATUSCODES"))
            e->caps |= SMTP_CAP_ENHANCEDSTATUSCODES;
        else if (IS("STARTTLS"))
            e->caps |= SMTP_CAP_STARTTLS;
        else if (IS("AUTH")) {
            e->caps |= SMTP_CAP_AUTH;
            e->auth_mechs |= auth_parse_mechs(arg);
        }
#undef IS
    }
}

static bool have_secret(const smtp_engine_t *e)
{
    return (e->cfg.creds.password && *e->cfg.creds.password) ||
           (e->cfg.creds.token && *e->cfg.creds.token);
}

static void become_ready(smtp_engine_t *e)
{
    set_state(e, ST_READY);
    e->status.success = true;
    if (!e->ready_reported) {
        e->ready_reported = true;
        if (e->cb.ready)
            e->cb.ready(e->ud);
    }
    if (e->state == ST_READY)
        pump(e);
}

static void start_auth(smtp_engine_t *e)
{
    bool has_pw = e->cfg.creds.password && *e->cfg.creds.password;
    bool has_tok = e->cfg.creds.token && *e->cfg.creds.token;
    auth_mech_t m = auth_choose(e->auth_mechs, e->cfg.auth_mech, e->cfg.auth_limit, has_pw,
                                has_tok);
    if (m == AUTH_NONE) {
        if (!(e->caps & SMTP_CAP_AUTH) || e->cfg.auth_optional) {
            logf_(e, '#', "SMTP No authentication: the server offers no %s mechanism",
                  e->cfg.auth_mech ? auth_mech_name(e->cfg.auth_mech) : "usable");
            become_ready(e);
            return;
        }
        quit_after_failure(e, EMAIL_EAUTHMECH, NULL,
                           "the server offers no authentication mechanism we can use%s%s%s",
                           e->cfg.auth_mech ? " (asked for " : "",
                           e->cfg.auth_mech ? auth_mech_name(e->cfg.auth_mech) : "",
                           e->cfg.auth_mech ? ")" : "");
        return;
    }
    if (!e->cfg.tls_active && !e->cfg.allow_cleartext_auth) {
        quit_after_failure(e, EMAIL_EINSECURE, NULL,
                           "refusing to send credentials over an unencrypted connection%s",
                           (e->caps & SMTP_CAP_STARTTLS)
                               ? ""
                               : " (the server does not offer STARTTLS)");
        return;
    }
    email_buf_t cmd, shown;
    email_buf_init(&cmd);
    email_buf_init(&shown);
    int rc = auth_start(m, &e->cfg.creds, &cmd, &shown);
    if (!rc) {
        e->auth_used = m;
        e->auth_step = 0;
        set_state(e, ST_AUTH);
        rc = send_line(e, cmd.data, shown.data);
    }
    if (cmd.data)
        memset(cmd.data, 0, cmd.len);
    email_buf_free(&cmd);
    email_buf_free(&shown);
    if (rc)
        fail_session(e, rc, NULL, "authentication: %s", email_strerror(rc));
}

/* After a (secure) EHLO/HELO: STARTTLS, AUTH or ready. */
static void after_hello(smtp_engine_t *e)
{
    if (!e->cfg.tls_active && e->cfg.starttls != SMTP_TLS_NEVER) {
        if (e->caps & SMTP_CAP_STARTTLS) {
            set_state(e, ST_STARTTLS);
            if (send_line(e, "STARTTLS", NULL))
                fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            return;
        }
        if (e->cfg.starttls == SMTP_TLS_REQUIRED) {
            quit_after_failure(e, EMAIL_ETLSREQUIRED, NULL,
                               "the server does not offer STARTTLS and encryption is required");
            return;
        }
    }
    if (have_secret(e))
        start_auth(e);
    else
        become_ready(e);
}

static void on_starttls_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    if (r->code == 220) {
        /* Anything the server sent behind its 220 arrived before TLS and could have been
         * injected by a man in the middle (CVE-2011-0411 family): refuse it. */
        if (left || smtp_reply_parser_busy(&e->parser)) {
            fail_session(e, EMAIL_EPROTO, r,
                         "the server sent data after its answer to STARTTLS (possible "
                         "response injection)");
            return;
        }
        set_state(e, ST_TLS_HANDSHAKE);
        if (e->cb.starttls)
            e->cb.starttls(e->ud);
        return;
    }
    if (r->code == 421) {
        fail_session(e, EMAIL_ECLOSED, r, "the server refused STARTTLS: %d %s", r->code,
                     r->text);
        return;
    }
    if (e->cfg.starttls == SMTP_TLS_REQUIRED) {
        quit_after_failure(e, EMAIL_ETLSREQUIRED, r, "the server refused STARTTLS: %d %s",
                           r->code, r->text);
        return;
    }
    logf_(e, '#', "SMTP STARTTLS refused (%d): going on unencrypted", r->code);
    e->cfg.starttls = SMTP_TLS_NEVER;
    after_hello(e);
}

static void on_auth_reply(smtp_engine_t *e, const smtp_reply_t *r)
{
    if (r->code == 235) {
        logf_(e, '#', "SMTP Authenticated as '%s' (%s)",
              e->cfg.creds.user ? e->cfg.creds.user : "", auth_mech_name(e->auth_used));
        become_ready(e);
    } else if (r->code == 334) {
        email_buf_t resp;
        email_buf_init(&resp);
        int rc = auth_step(e->auth_used, &e->cfg.creds, e->auth_step++, r->text, &resp);
        if (!rc)
            rc = send_line(e, resp.data ? resp.data : "", "****");
        if (resp.data)
            memset(resp.data, 0, resp.len);
        email_buf_free(&resp);
        if (rc)
            fail_session(e, rc, r, "authentication with %s failed: unexpected challenge",
                         auth_mech_name(e->auth_used));
    } else if (r->code == 421) {
        fail_session(e, EMAIL_ECLOSED, r, "authentication with %s failed: %d %s",
                     auth_mech_name(e->auth_used), r->code, r->text);
    } else {
        quit_after_failure(e, EMAIL_EAUTH, r, "authentication with %s failed: %d %s",
                           auth_mech_name(e->auth_used), r->code, r->text);
    }
}

static void on_setup_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    if (!e->quit_failure) /* QUIT's answer does not replace the failure that made us QUIT */
        email_status_set_reply(&e->status, r->code, r->enhanced, r->text);
    switch (e->state) {
    case ST_GREETING:
        if (r->code == 421)
            fail_session(e, EMAIL_ECLOSED, r, "the server refused the connection: %d %s", r->code,
                         r->text);
        else if (r->code != 220)
            quit_after_failure(e, EMAIL_ESERVER, r, "the server refused the connection: %d %s",
                               r->code, r->text);
        else
            send_ehlo(e, false);
        return;
    case ST_EHLO:
        if (r->code == 250) {
            parse_ehlo(e, r);
            after_hello(e);
        } else if (r->code == 421) {
            fail_session(e, EMAIL_ECLOSED, r, "%d %s", r->code, r->text);
        } else if (r->code >= 500) {
            send_ehlo(e, true); /* an old server: HELO, no extensions */
        } else {
            quit_after_failure(e, EMAIL_ESERVER, r, "EHLO refused: %d %s", r->code, r->text);
        }
        return;
    case ST_HELO:
        if (r->code == 421) {
            fail_session(e, EMAIL_ECLOSED, r, "HELO refused: %d %s", r->code, r->text);
            return;
        }
        if (r->code != 250) {
            quit_after_failure(e, EMAIL_ESERVER, r, "HELO refused: %d %s", r->code, r->text);
            return;
        }
        e->caps = 0;
        e->auth_mechs = 0;
        after_hello(e);
        return;
    case ST_STARTTLS:
        on_starttls_reply(e, r, left);
        return;
    case ST_AUTH:
        on_auth_reply(e, r);
        return;
    case ST_QUIT:
        end_session(e, 0, "");
        return;
    default:
        fail_session(e, EMAIL_EPROTO, r, "unexpected reply from the server: %d %s", r->code,
                     r->text);
    }
}

void smtp_engine_tls_established(smtp_engine_t *e)
{
    if (e->state != ST_TLS_HANDSHAKE)
        return;
    e->cfg.tls_active = true;
    e->caps = 0; /* what the server said before TLS is not to be trusted */
    e->auth_mechs = 0;
    send_ehlo(e, false);
}

/* ------------------------------------------------------------------------------------------- */
/* Transactions                                                                                 */

/* An addr-spec is sent as is; angle brackets are added here. */
static int send_mail(smtp_engine_t *e, smtp_job_t *j)
{
    email_buf_t line;
    email_buf_init(&line);
    int rc = email_buf_printf(&line, "MAIL FROM:<%s>", j->from);
    if (!rc && (e->caps & SMTP_CAP_SIZE) && j->size)
        rc = email_buf_printf(&line, " SIZE=%llu", (unsigned long long)j->size);
    if (!rc && j->eight_bit && (e->caps & SMTP_CAP_8BITMIME))
        rc = email_buf_puts(&line, " BODY=8BITMIME");
    if (!rc && j->smtputf8)
        rc = email_buf_puts(&line, " SMTPUTF8");
    if (!rc)
        rc = send_line(e, line.data, NULL);
    email_buf_free(&line);
    return rc ? rc : fifo_push(e, CMD_MAIL, j);
}

static int send_rcpt(smtp_engine_t *e, smtp_job_t *j, size_t i)
{
    email_buf_t line;
    email_buf_init(&line);
    int rc = email_buf_printf(&line, "RCPT TO:<%s>", j->rcpts[i]);
    if (!rc)
        rc = send_line(e, line.data, NULL);
    email_buf_free(&line);
    return rc ? rc : fifo_push(e, CMD_RCPT, j);
}

static int send_cmd(smtp_engine_t *e, const char *line, enum cmd cmd, smtp_job_t *j)
{
    int rc = send_line(e, line, NULL);
    return rc ? rc : fifo_push(e, cmd, j);
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
    if (j->smtputf8 && !(e->caps & SMTP_CAP_SMTPUTF8)) {
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ENOTSUP, NULL,
                   "an address is not ASCII and the server does not offer SMTPUTF8");
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

static void start_body(smtp_engine_t *e, smtp_job_t *j, bool bdat);

/* A job's commands go as one group only when the server pipelines and they fit the window. */
static bool pipelined(const smtp_engine_t *e, const smtp_job_t *j)
{
    return (e->caps & SMTP_CAP_PIPELINING) && !j->lockstep;
}

/* Sends what can be sent now. */
static void pump(smtp_engine_t *e)
{
    while (e->state == ST_READY && !e->dying && !e->server_closing && !e->body_wait &&
           !e->body_job) {
        smtp_job_t *j = e->queue_head;
        if (j)
            j->lockstep = j->nrcpts + 2 > e->cfg.window;
        bool pipelining = j && pipelined(e, j);
        if (!j) {
            if (e->quit_wanted && !e->fifo_len) {
                set_state(e, ST_QUIT);
                if (send_line(e, "QUIT", NULL))
                    fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            }
            return;
        }
        if (e->fifo_len && (!pipelining || e->fifo_len + j->nrcpts + 2 > e->cfg.window))
            return; /* lockstep jobs wait for an empty pipe too */
        e->queue_head = j->next;
        if (!e->queue_head)
            e->queue_tail = NULL;
        if (!job_fits(e, j))
            continue;
        j->phase = PH_SENT;
        e->jobs_in_flight++;
        int rc = send_mail(e, j);
        if (pipelining) {
            for (size_t i = 0; !rc && i < j->nrcpts; i++)
                rc = send_rcpt(e, j, i);
            if (!rc && use_chunking(e)) {
                /* BDAT: the body follows at once, no 354 to wait for, no dot-stuffing */
                start_body(e, j, true);
                return;
            }
            if (!rc)
                rc = send_cmd(e, "DATA", CMD_DATA, j);
            e->body_wait = true;
        }
        if (rc) {
            fail_session(e, rc, NULL, "%s", email_strerror(rc));
            return;
        }
        if (!pipelining)
            return;
    }
}

static void start_body(smtp_engine_t *e, smtp_job_t *j, bool bdat)
{
    j->phase = PH_BODY;
    j->body_start = e->taken + e->out.len;
    j->progress_sent = 0;
    e->body_job = j;
    e->progress_job = j;
    e->bdat = bdat;
    email_crlf_init(&e->crlf);
    email_dotstuff_init(&e->dot);
}

/* A transaction that cannot complete: end the job, reset the server's transaction. */
static void finish_refused(smtp_engine_t *e, smtp_job_t *j)
{
    if (j->accepted == 0 && j->mail_ok && j->refusals.n)
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ERECIPIENTS, NULL,
                   "every recipient was refused: %d %s", j->refusals.v[0].code,
                   j->refusals.v[0].text);
    else
        job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ESERVER, NULL, NULL);
}

static void abandon_transaction(smtp_engine_t *e, smtp_job_t *j)
{
    /* RSET first: job_done may queue the next message or ask for QUIT, which must come after */
    if (send_cmd(e, "RSET", CMD_RSET, NULL)) {
        fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
        return;
    }
    finish_refused(e, j);
}

static void on_job_reply(smtp_engine_t *e, pending_reply_t p, const smtp_reply_t *r)
{
    smtp_job_t *j = p.job;
    if (!j && p.cmd != CMD_RSET)
        return; /* its job already ended (read error); the session is closing */
    bool pipelining = j && pipelined(e, j);
    bool ok = r->code >= 200 && r->code < 300;

    switch (p.cmd) {
    case CMD_MAIL:
        j->mail_ok = ok;
        j->mail_replied = true;
        if (!ok)
            job_set_failure(j, r);
        if (!pipelining) {
            if (ok && send_rcpt(e, j, 0) == 0)
                return;
            if (ok)
                fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            else
                abandon_transaction(e, j);
        }
        return;
    case CMD_RCPT: {
        size_t i = j->replied++;
        if (ok) {
            j->accepted++;
        } else if (j->mail_ok) {
            if (email_refusals_add(&j->refusals, j->rcpts[i], r->code, r->text)) {
                fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
                return;
            }
            job_set_failure(j, r);
        }
        if (!pipelining) {
            int rc;
            if (j->replied < j->nrcpts)
                rc = send_rcpt(e, j, j->replied);
            else if (j->accepted)
                rc = send_cmd(e, "DATA", CMD_DATA, j), e->body_wait = true;
            else {
                abandon_transaction(e, j);
                return;
            }
            if (rc)
                fail_session(e, rc, NULL, "out of memory");
        }
        return;
    }
    case CMD_DATA:
        e->body_wait = false;
        if (r->code == 354) {
            if (j->mail_ok && j->accepted) {
                start_body(e, j, false);
            } else {
                /* RFC 2920: DATA accepted though the transaction failed: end it empty */
                if (email_buf_puts(&e->out, ".\r\n")) {
                    fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
                    return;
                }
                logf_(e, 'C', ".");
                j->phase = PH_EOD;
                j->eod_offset = e->taken + e->out.len;
                if (fifo_push(e, CMD_EOD, j))
                    fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            }
            return;
        }
        if (j->mail_ok && j->accepted)
            job_set_reason(j, r); /* DATA's refusal, not a recipient's, is the reason */
        abandon_transaction(e, j);
        pump(e);
        return;
    case CMD_EOD:
        if (!j->mail_ok || !j->accepted) {
            /* the empty data that closed a failed pipelined transaction */
            finish_refused(e, j);
        } else if (ok) {
            job_finish(e, j, SMTP_JOB_SENT, 0, r, NULL);
        } else {
            job_finish(e, j, SMTP_JOB_FAILED, EMAIL_ESERVER, r, NULL);
        }
        pump(e);
        return;
    case CMD_RSET:
        pump(e);
        return;
    case CMD_BDAT:
        if (!ok && j->mail_ok && j->accepted && !j->chunk_failed) {
            j->chunk_failed = true;
            job_set_reason(j, r); /* this refusal, not a recipient's, is the reason */
        }
        return;
    case CMD_BDAT_LAST:
        e->body_wait = false;
        if (j->mail_ok && j->accepted && ok && !j->chunk_failed) {
            job_finish(e, j, SMTP_JOB_SENT, 0, r, NULL);
            pump(e);
            return;
        }
        if (j->mail_ok && j->accepted && !ok && !j->chunk_failed)
            job_set_reason(j, r);
        abandon_transaction(e, j); /* RSET (RFC 3030), then the next message */
        pump(e);
        return;
    }
}

/* ------------------------------------------------------------------------------------------- */

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
    if (e->state == ST_READY) {
        if (!e->fifo_len)
            return false;
        *end = e->fifo[e->fifo_head].end;
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
            fail_session(e, EMAIL_ECLOSED, r, "the server is closing the connection: %d %.*s",
                         r->code, first_line, r->text);
        else
            fail_session(e, EMAIL_EPROTO, r, "reply without a command: %d %.*s", r->code,
                         first_line, r->text);
        return;
    }
    if (e->state != ST_READY) {
        on_setup_reply(e, r, left);
        return;
    }
    pending_reply_t p = fifo_pop(e);
    if (r->code != 421) {
        on_job_reply(e, p, r);
        return;
    }
    /* the server is closing: this command's job has its answer, the rest end below; whatever
     * job_done submits or asks meanwhile must not go out */
    e->server_closing = true;
    if (p.job && (p.cmd == CMD_EOD || p.cmd == CMD_BDAT_LAST))
        job_finish(e, p.job, SMTP_JOB_FAILED, EMAIL_ESERVER, r, NULL);
    else if (p.job)
        job_finish(e, p.job, SMTP_JOB_RETRYABLE, EMAIL_ECLOSED, r, NULL);
    fail_session(e, EMAIL_ECLOSED, r, "the server is closing the connection: %d %s", r->code,
                 r->text);
}

int smtp_engine_feed(smtp_engine_t *e, const char *data, size_t n)
{
    if (e->state == ST_CLOSED)
        return e->status.error ? e->status.error : EMAIL_ECLOSED;
    if (e->state == ST_TLS_HANDSHAKE && n) {
        fail_session(e, EMAIL_EPROTO, NULL, "unexpected data during the TLS handshake");
        return EMAIL_EPROTO;
    }
    e->feed_seen = e->taken + e->handed;
    while (n && e->state != ST_CLOSED) {
        smtp_reply_t r;
        size_t used = 0;
        const char *err = NULL;
        int rc = smtp_reply_parse(&e->parser, data, n, &used, &r, &err);
        if (rc < 0) {
            fail_session(e, EMAIL_EPROTO, NULL, "invalid reply from the server: %s",
                         err ? err : "malformed");
            return EMAIL_EPROTO;
        }
        data += used;
        n -= used;
        if (rc == 0)
            break;
        on_reply(e, &r, n);
        smtp_reply_free(&r);
        if (e->state == ST_TLS_HANDSHAKE)
            break; /* bytes after the 220 to STARTTLS were refused in on_setup_reply */
    }
    return e->state == ST_CLOSED && e->status.error ? e->status.error : 0;
}

/* Appends "BDAT n[ LAST]" and the chunk. */
static int put_bdat(smtp_engine_t *e, smtp_job_t *j, bool last)
{
    char line[64];
    snprintf(line, sizeof line, "BDAT %zu%s", e->chunk.len, last ? " LAST" : "");
    int rc = send_line(e, line, NULL);
    if (!rc)
        rc = email_buf_append(&e->out, e->chunk.data, e->chunk.len);
    email_buf_reset(&e->chunk);
    if (!rc && last) {
        j->phase = PH_EOD;
        j->eod_offset = e->taken + e->out.len;
        e->body_job = NULL;
        e->body_wait = true; /* the next message waits for this one's outcome (RSET on failure) */
    }
    return rc ? rc : fifo_push(e, last ? CMD_BDAT_LAST : CMD_BDAT, j);
}

/* Pulls the body of the job being sent into the output buffer, one chunk. */
static void fill_body(smtp_engine_t *e)
{
    smtp_job_t *j = e->body_job;
    char chunk[BODY_CHUNK / 4];
    while (e->body_job == j && e->out.len < BODY_CHUNK) {
        ssize_t got = j->read(j->ctx, chunk, sizeof chunk);
        if (got < 0) {
            /* the data cannot be ended without delivering a truncated message: drop the session,
             * and let nothing that job_done queues be written behind the partial body */
            char why[300];
            if (j->read_error)
                j->read_error(j->ctx, (int)got, why, sizeof why);
            else
                email_strlcpy(why, email_strerror((int)got), sizeof why);
            e->dying = true;
            e->body_job = NULL;
            /* DATA: the cut body is never handed over (BDAT: out holds whole, logged chunks) */
            uint64_t keep = j->body_start > e->taken ? j->body_start - e->taken : 0;
            if (!e->bdat && e->out.len > keep)
                e->out.len = (size_t)keep;
            job_finish(e, j, SMTP_JOB_FAILED, (int)got, NULL, "reading the message failed: %s",
                       why);
            fail_session(e, (int)got, NULL, "reading the message failed, connection dropped");
            return;
        }
        int rc;
        if (e->bdat) {
            if (got > 0)
                j->body_bytes += (uint64_t)got;
            rc = got ? email_crlf_feed(&e->crlf, &e->chunk, chunk, (size_t)got)
                     : email_crlf_finish(&e->crlf, &e->chunk);
            if (!rc && (got == 0 || e->chunk.len >= BODY_CHUNK / 2))
                rc = put_bdat(e, j, got == 0);
        } else if (got == 0) {
            rc = email_dotstuff_finish(&e->dot, &e->out);
            if (!rc) {
                logf_(e, 'C', "<%llu bytes of message data>", (unsigned long long)j->body_bytes);
                logf_(e, 'C', ".");
                j->phase = PH_EOD;
                j->eod_offset = e->taken + e->out.len;
                e->body_job = NULL;
                rc = fifo_push(e, CMD_EOD, j);
            }
        } else {
            j->body_bytes += (uint64_t)got;
            rc = email_dotstuff_feed(&e->dot, &e->out, chunk, (size_t)got);
        }
        if (rc) {
            fail_session(e, rc, NULL, "out of memory");
            return;
        }
    }
    if (!e->body_job)
        pump(e); /* pipelining: the next message's commands go right behind end of data */
}

size_t smtp_engine_take(smtp_engine_t *e, const char **data)
{
    static const char empty[1];
    /* the previous take's bytes are the caller's now; out[0] is at offset `taken` */
    email_buf_consume(&e->out, e->handed);
    e->taken += e->handed;
    e->handed = 0;
    if (e->body_job && e->state != ST_CLOSED)
        fill_body(e);
    e->handed = e->out.len;
    *data = e->out.len ? e->out.data : empty;
    return e->out.len;
}

void smtp_engine_written(smtp_engine_t *e, size_t n)
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

bool smtp_engine_waiting(const smtp_engine_t *e)
{
    switch (e->state) {
    case ST_READY:
        return e->fifo_len > 0 || e->body_job;
    case ST_CLOSED:
        return false;
    default:
        return true;
    }
}

bool smtp_engine_idle(const smtp_engine_t *e)
{
    return e->state == ST_READY && !e->fifo_len && !e->body_job && !e->queue_head;
}

bool smtp_engine_is_ready(const smtp_engine_t *e)
{
    return e->ready_reported && e->state != ST_CLOSED;
}

bool smtp_engine_quitting(const smtp_engine_t *e)
{
    return e->state == ST_QUIT;
}

bool smtp_engine_is_closed(const smtp_engine_t *e)
{
    return e->state == ST_CLOSED;
}

uint64_t smtp_engine_replies(const smtp_engine_t *e)
{
    return e->replies;
}

int smtp_engine_submit(smtp_engine_t *e, smtp_job_t *j)
{
    if (e->state == ST_CLOSED || e->state == ST_QUIT || e->quit_wanted || e->dying)
        return EMAIL_ESHUTDOWN;
    if (!j->nrcpts || !j->read)
        return EMAIL_EINVAL;
    j->next = NULL;
    j->phase = PH_QUEUED;
    j->mail_ok = j->mail_replied = false;
    j->chunk_failed = false;
    j->accepted = j->replied = 0;
    j->fail_code = 0;
    j->fail_text = NULL;
    j->body_bytes = 0;
    email_status_init(&j->status);
    email_refusals_init(&j->refusals);
    if (e->queue_tail)
        e->queue_tail->next = j;
    else
        e->queue_head = j;
    e->queue_tail = j;
    pump(e);
    return 0;
}

int smtp_engine_cancel(smtp_engine_t *e, smtp_job_t *job)
{
    smtp_job_t **p = &e->queue_head, *prev = NULL;
    while (*p && *p != job) {
        prev = *p;
        p = &(*p)->next;
    }
    if (!*p)
        return EMAIL_EBUSY;
    *p = job->next;
    if (e->queue_tail == job)
        e->queue_tail = prev;
    job->next = NULL;
    return 0;
}

void smtp_engine_quit(smtp_engine_t *e)
{
    if (e->state == ST_CLOSED || e->state == ST_QUIT)
        return;
    /* before ready, QUIT goes once the setup is done and what was queued is sent */
    e->quit_wanted = true;
    if (e->state == ST_READY)
        pump(e);
}

const email_status_t *smtp_engine_status(const smtp_engine_t *e)
{
    return &e->status;
}

unsigned smtp_engine_caps(const smtp_engine_t *e)
{
    return e->caps;
}

uint64_t smtp_engine_size_limit(const smtp_engine_t *e)
{
    return e->size_limit;
}

unsigned smtp_engine_auth_mechs(const smtp_engine_t *e)
{
    return e->auth_mechs;
}
