/*
 * libFuzzer target: the sans-I/O SMTP engine (lib/protocol.c), with the fuzzer as the server.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0  credentials (bits 0-1: none, password, token, both), STARTTLS policy (bits 2-3),
 *           tls_active (4), allow_cleartext_auth (5), auth_optional (6), no_chunking (7)
 *   byte 1  window (bits 0-2, 0 = the default), jobs - 1 (bits 3-4, 1..3), when the jobs are
 *           submitted (bits 5-6: at once; in `ready`; one after another from `job_done`; at once,
 *           then the last one cancelled), the TLS handshake fails (7)
 *   byte 2  mechanism asked for (bits 0-2), when QUIT is asked (bits 3-4: never, at once, after
 *           the last server byte, from the last job's job_done), auth_limit (bits 5-7)
 *   byte 3  how the server bytes are cut: 0 whole, 1..126 pieces of that size, 127 a line at a
 *           time, 128.. pieces of 1..(b-127) bytes from a generator
 *   byte 4  the TLS handshake ends only after the next piece of server bytes (0), bytes taken
 *           are reported written only before the next feed (1), every job not started yet is
 *           cancelled after the second piece (2)
 *   per job: flags (recipients - 1 in bits 0-1, 8-bit 2, SMTPUTF8 3, SIZE= mode 4-5, a read
 *           error halfway 6, written reported in two calls 7), body length, a repeat count
 *           (k = bits 0-3: the body bytes repeated 1 + k/4 times; k = 14: 2^11 times, 15: 2^14,
 *           capped at 96 KiB) and the largest read (bits 4-7), then the body bytes
 *   the rest: what the server sends, fed in pieces; everything the engine writes is taken and
 *           reported written after each piece; at the end the connection is aborted.
 *
 * Properties checked:
 *   - every submitted job gets exactly one job_done, a cancelled one none; closed comes exactly
 *     once, and no callback after it;
 *   - the bytes written, read by a model SMTP server that follows the conversation (the engine's
 *     'C'/'S' log lines say which command each reply answers): every command line matches its log
 *     line, holds no CR or LF, is at most 1000 octets; data (or the lone "." of an empty
 *     transaction) is sent only after a 354 to DATA, is exactly the body with line endings
 *     normalised and dots stuffed, and ends with "\r\n.\r\n" exactly once; a BDAT chunk holds
 *     exactly the octets announced and the chunks of one message are its normalised body; nothing
 *     follows QUIT;
 *   - "\r\n.\r\n" never appears on the wire before the server's first 354 (no smuggling);
 *   - outcomes agree with the wire: SENT means the whole body went out and its end of data got a
 *     2xx; UNKNOWN means its end of data went out unanswered; a RETRYABLE job without a server
 *     reply, or one that failed reading its body, never had its end of data sent.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "protocol.h"
#include "status.h"
#include "util.h"

#define MAX_JOBS 3
#define MAX_RCPTS 4
#define MAX_BODY (96 * 1024)       /* past BDAT's 32 KiB chunks */
#define MAX_BODY_SMALL_READS 4096  /* when reads are tiny: keep runs fast */

typedef struct fjob {
    smtp_job_t job;
    int index;
    char from[32];
    char rcpt_store[MAX_RCPTS][40];
    const char *rcpts[MAX_RCPTS];
    const uint8_t *pattern;
    size_t pattern_len, body_len, pos;
    size_t max_read;
    long fail_at;
    bool submitted, cancelled;
    int ndone;
    uint64_t progress_sent;
    int nprogress;
    fuzz_str_t expect;   /* the body as it must arrive: CRLF-normalised */
    /* what the model server saw */
    bool eod_on_wire;    /* its end of data (or BDAT LAST) went out */
    bool body_ok;        /* ... with exactly the expected body */
    bool empty_eod;      /* the lone "." after a 354 to a failed transaction */
    int eod_reply;       /* the reply to that end of data, 0 none */
    bool reset;          /* a RSET followed its MAIL */
    fuzz_str_t bdat;     /* BDAT chunks received so far */
} fjob_t;

typedef struct event {
    char kind;
    char *text;
} event_t;

typedef struct harness {
    bool body_failed;    /* a body could not be read: the engine refuses new work */
    smtp_engine_t *e;
    fjob_t jobs[MAX_JOBS];
    int njobs;
    int submit_mode;     /* 0 at once, 1 in ready, 2 chained, 3 at once + cancel the last */
    int quit_mode;
    bool handshake_fails;
    bool tls_pending;
    bool written_split;
    bool slow_handshake, tls_waited;
    bool late_written;
    size_t unwritten;    /* taken, not reported written yet (late_written) */
    int nclosed;
    int nready;
    fuzz_str_t wire;
    event_t *events;
    size_t nevents, capevents;
    size_t wire_at_first_354; /* wire length when the first 354 was handled; SIZE_MAX none */
} harness_t;

/* ---- the body source ---- */

FUZZ_NOCOV static ssize_t job_read(void *ctx, char *buf, size_t n)
{
    fjob_t *j = ctx;
    FUZZ_CHECK(n > 0, "read asked for 0 bytes");
    if (j->fail_at >= 0 && j->pos >= (size_t)j->fail_at)
        return EMAIL_EIO;
    size_t left = j->body_len - j->pos;
    if (j->fail_at >= 0 && left > (size_t)j->fail_at - j->pos)
        left = (size_t)j->fail_at - j->pos;
    if (j->max_read && n > j->max_read)
        n = j->max_read;
    if (n > left)
        n = left;
    for (size_t i = 0; i < n;) {
        size_t at = (j->pos + i) % j->pattern_len;
        size_t run = j->pattern_len - at < n - i ? j->pattern_len - at : n - i;
        memcpy(buf + i, j->pattern + at, run);
        i += run;
    }
    j->pos += n;
    return (ssize_t)n;
}

/* ---- callbacks ---- */

static void add_event(harness_t *h, char kind, const char *text)
{
    if (h->nevents == h->capevents) {
        h->capevents = h->capevents ? h->capevents * 2 : 64;
        h->events = fuzz_xrealloc(h->events, h->capevents * sizeof *h->events);
    }
    size_t n = strlen(text);
    char *t = fuzz_xrealloc(NULL, n + 1);
    memcpy(t, text, n + 1);
    h->events[h->nevents++] = (event_t){kind, t};
}

static void submit(harness_t *h, fjob_t *j)
{
    j->submitted = true; /* job_done may come from inside submit (a job the server cannot take) */
    int rc = email__smtp_engine_submit(h->e, &j->job);
    FUZZ_CHECK(rc == 0 || rc == EMAIL_ESHUTDOWN, "submit: %d", rc);
    if (rc) {
        FUZZ_CHECK(!j->ndone, "job_done for a job refused by submit");
        j->submitted = false;
        /* quitting: after a setup failure QUIT goes before the session closes */
        FUZZ_CHECK(email__smtp_engine_is_closed(h->e) || email__smtp_engine_quitting(h->e) ||
                       h->quit_mode || h->body_failed,
                   "submit refused while open");
    }
}

static void cb_log(void *ud, char kind, const char *text)
{
    harness_t *h = ud;
    FUZZ_CHECK(kind == 'C' || kind == 'S' || kind == '#', "log kind %c", kind);
    FUZZ_CHECK(text != NULL);
    /* a client line is one line; a server line may keep a lone CR (lib/reply.h); '#' notes
       may quote a multi-line reply's text, joined with LF */
    if (kind == 'C')
        FUZZ_CHECK(!strpbrk(text, "\r\n"), "a client log line holds CR or LF: %s", text);
    if (kind == 'S')
        FUZZ_CHECK(!strchr(text, '\n'), "a server log line holds a LF: %s", text);
    if (kind != '#')
        add_event(h, kind, text);
}

static void cb_ready(void *ud)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "ready after closed");
    FUZZ_CHECK(++h->nready == 1, "ready twice");
    if (h->submit_mode == 1)
        for (int i = 0; i < h->njobs; i++)
            submit(h, &h->jobs[i]);
}

static void cb_starttls(void *ud)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "starttls after closed");
    FUZZ_CHECK(!h->tls_pending, "starttls twice without a handshake");
    h->tls_pending = true;
}

static void cb_job_done(void *ud, smtp_job_t *job)
{
    harness_t *h = ud;
    fjob_t *j = job->user;
    FUZZ_CHECK(j && j >= h->jobs && j < h->jobs + h->njobs, "job_done for a job never given");
    FUZZ_CHECK(h->nclosed == 0, "job_done after closed");
    FUZZ_CHECK(j->submitted && !j->cancelled, "job_done for job %d, not in the engine", j->index);
    FUZZ_CHECK(++j->ndone == 1, "job %d done twice", j->index);
    char idx[8];
    snprintf(idx, sizeof idx, "%d", j->index);
    add_event(h, 'J', idx); /* the model server needs to know when a transaction was given up */
    FUZZ_CHECK(job->status.success == (job->outcome == SMTP_JOB_SENT));
    FUZZ_CHECK((job->outcome == SMTP_JOB_SENT) == (job->status.error == 0), "outcome %d error %d",
               job->outcome, job->status.error);
    FUZZ_CHECK(job->status.recipients == job->nrcpts);
    FUZZ_CHECK(job->status.rejected == job->refusals.n);
    FUZZ_CHECK(job->refusals.n <= job->nrcpts, "%zu refusals of %zu", job->refusals.n,
               job->nrcpts);
    FUZZ_CHECK(memchr(job->status.status_text, '\0', sizeof job->status.status_text));
    FUZZ_CHECK(memchr(job->status.enhanced_code, '\0', sizeof job->status.enhanced_code));
    if (job->status.error == EMAIL_EIO)
        h->body_failed = true;
    /* protocol.h allows both from a callback (crashes/fuzz_engine-*: the RSET of a failed
       transaction, and the data of an unreadable body, must still come first) */
    if (h->submit_mode == 2 && j->index + 1 < h->njobs)
        submit(h, &h->jobs[j->index + 1]);
    if (h->quit_mode == 3 && j->index + 1 == h->njobs)
        email__smtp_engine_quit(h->e);
}

static void cb_progress(void *ud, smtp_job_t *job, uint64_t sent, uint64_t total)
{
    harness_t *h = ud;
    fjob_t *j = job->user;
    FUZZ_CHECK(h->nclosed == 0, "progress after closed");
    FUZZ_CHECK(j->nprogress == 0 || sent >= j->progress_sent, "progress went back");
    FUZZ_CHECK(sent <= total && total == job->size, "progress %llu of %llu (size %llu)",
               (unsigned long long)sent, (unsigned long long)total,
               (unsigned long long)job->size);
    j->nprogress++;
    j->progress_sent = sent;
}

static void cb_closed(void *ud, const email_status_t *why)
{
    harness_t *h = ud;
    FUZZ_CHECK(why != NULL);
    FUZZ_CHECK(++h->nclosed == 1, "closed twice");
    FUZZ_CHECK(memchr(why->status_text, '\0', sizeof why->status_text));
}

/* ---- driving ---- */

static void take_all(harness_t *h)
{
    for (int guard = 0;; guard++) {
        FUZZ_CHECK(guard < 100000, "take never runs dry");
        const char *data = NULL;
        size_t n = email__smtp_engine_take(h->e, &data);
        FUZZ_CHECK(data != NULL, "take gave NULL");
        if (!n)
            return;
        fuzz_str_add(&h->wire, data, n);
        if (h->late_written) {
            h->unwritten += n;
            continue;
        }
        if (h->written_split && n > 1) {
            email__smtp_engine_written(h->e, n / 2);
            email__smtp_engine_written(h->e, n - n / 2);
        } else {
            email__smtp_engine_written(h->e, n);
        }
    }
}

static void flush_written(harness_t *h)
{
    if (h->unwritten)
        email__smtp_engine_written(h->e, h->unwritten);
    h->unwritten = 0;
}

/* What every state must agree on. */
static void check_state(harness_t *h)
{
    smtp_engine_t *e = h->e;
    FUZZ_CHECK(email__smtp_engine_status(e) != NULL);
    if (email__smtp_engine_is_closed(e))
        FUZZ_CHECK(!email__smtp_engine_waiting(e) && !email__smtp_engine_idle(e) &&
                       !email__smtp_engine_is_ready(e),
                   "closed, yet waiting %d idle %d ready %d", email__smtp_engine_waiting(e),
                   email__smtp_engine_idle(e), email__smtp_engine_is_ready(e));
    if (email__smtp_engine_idle(e))
        FUZZ_CHECK(email__smtp_engine_is_ready(e) && !email__smtp_engine_waiting(e),
                   "idle but not ready");
    if (email__smtp_engine_is_ready(e))
        FUZZ_CHECK(h->nready == 1 && !h->nclosed, "is_ready without ready");
}

static void after_feed(harness_t *h)
{
    if (h->tls_pending && h->slow_handshake && !h->tls_waited) {
        h->tls_waited = true; /* the server's next bytes arrive during the handshake */
    } else if (h->tls_pending) {
        h->tls_waited = false;
        h->tls_pending = false;
        if (h->handshake_fails)
            email__smtp_engine_abort(h->e, EMAIL_ETLS, "handshake failed");
        else
            email__smtp_engine_tls_established(h->e);
    }
    take_all(h);
}

/* ---- the model server ---- */

enum mcmd { M_SETUP, M_MAIL, M_RCPT, M_DATA, M_EOD, M_RSET, M_BDAT, M_BDAT_LAST, M_QUIT };

typedef struct model {
    harness_t *h;
    size_t pos;          /* in h->wire */
    struct {
        enum mcmd cmd;
        int job;
    } fifo[4096];
    size_t head, len;
    bool data_ok;        /* a 354 to DATA came: the next thing written is data */
    int data_job;
    int cur_job;         /* the job of the last MAIL */
    bool after_data;     /* the data just read: the next "." log line is its end */
    bool quit_sent;
    bool bdat_seen;
    bool txn_open;       /* MAIL sent, neither its end of data nor RSET yet */
} model_t;

static void push(model_t *m, enum mcmd cmd, int job)
{
    FUZZ_CHECK(m->len < sizeof m->fifo / sizeof m->fifo[0], "model: too many commands pending");
    size_t cap = sizeof m->fifo / sizeof m->fifo[0];
    m->fifo[(m->head + m->len) % cap].cmd = cmd;
    m->fifo[(m->head + m->len) % cap].job = job;
    m->len++;
}

/* The next CRLF-terminated line on the wire, in command mode. */
FUZZ_NOCOV static const char *wire_line(model_t *m, size_t *len)
{
    fuzz_str_t *w = &m->h->wire;
    FUZZ_CHECK(m->pos < w->len, "log line with nothing on the wire at %zu", m->pos);
    const char *s = w->p + m->pos;
    const char *lf = memchr(s, '\n', w->len - m->pos);
    FUZZ_CHECK(lf != NULL, "command without a line ending at %zu", m->pos);
    size_t n = (size_t)(lf - s);
    FUZZ_CHECK(n >= 1 && s[n - 1] == '\r', "command ended by a bare LF at %zu", m->pos);
    n--;
    FUZZ_CHECK(!memchr(s, '\r', n), "bare CR inside a command at %zu", m->pos);
    FUZZ_CHECK(n + 2 <= 1000, "command line of %zu octets", n + 2);
    m->pos += n + 2;
    *len = n;
    return s;
}

static int job_of_from(model_t *m, const char *line, size_t n)
{
    for (int i = 0; i < m->h->njobs; i++) {
        char want[64];
        snprintf(want, sizeof want, "MAIL FROM:<%s>", m->h->jobs[i].from);
        size_t wl = strlen(want);
        if (n >= wl && !memcmp(line, want, wl) && (n == wl || line[wl] == ' '))
            return i;
    }
    fuzz_fail(__FILE__, __LINE__, "MAIL", "MAIL for no job: %.*s", (int)n, line);
}

/* Data in DATA mode: lines up to the lone ".", dots unstuffed. Returns false at the wire's end. */
FUZZ_NOCOV static bool read_data(model_t *m, fuzz_str_t *got)
{
    fuzz_str_t *w = &m->h->wire;
    while (m->pos < w->len) {
        const char *s = w->p + m->pos;
        const char *lf = memchr(s, '\n', w->len - m->pos);
        if (!lf) {
            /* a CR is always written with its LF: a cut body never ends inside a line break */
            FUZZ_CHECK(!memchr(s, '\r', w->len - m->pos), "bare CR in data at %zu", m->pos);
            m->pos = w->len;
            return false;
        }
        size_t n = (size_t)(lf - s);
        FUZZ_CHECK(n >= 1 && s[n - 1] == '\r', "bare LF in data at %zu", m->pos);
        n--;
        FUZZ_CHECK(!memchr(s, '\r', n), "bare CR in data at %zu", m->pos);
        m->pos += n + 2;
        if (n == 1 && s[0] == '.')
            return true;
        if (n && s[0] == '.') {
            FUZZ_CHECK(n >= 2 && s[1] == '.', "data line starting with one '.'");
            s++, n--;
        }
        fuzz_str_add(got, s, n);
        fuzz_str_add(got, "\r\n", 2);
    }
    return false;
}

static void model_command(model_t *m, const char *t)
{
    harness_t *h = m->h;
    size_t tl = strlen(t);
    unsigned long long nbytes;
    char tail;

    if (t[0] == '<' && sscanf(t, "<%llu bytes of message data%c", &nbytes, &tail) == 2 &&
        tail == '>') {
        FUZZ_CHECK(m->data_ok, "message data without a 354");
        fjob_t *j = &h->jobs[m->data_job];
        FUZZ_CHECK(!j->reset, "data for job %d after RSET", j->index);
        fuzz_str_t got = {0};
        fuzz_str_add(&got, "", 0);
        bool ended = read_data(m, &got);
        FUZZ_CHECK(ended, "data of job %d not ended", j->index);
        FUZZ_CHECK(nbytes == j->body_len, "logged %llu body bytes of %zu", nbytes, j->body_len);
        /* the text as the server stores it: lines each with CRLF */
        fuzz_str_t want = {0};
        fuzz_str_add(&want, j->expect.p, j->expect.len);
        if (want.len && (want.len < 2 || memcmp(want.p + want.len - 2, "\r\n", 2)))
            fuzz_str_add(&want, "\r\n", 2);
        FUZZ_CHECK(got.len == want.len && (!got.len || !memcmp(got.p, want.p, got.len)),
                   "job %d: the server got %zu data octets, not the %zu of the body", j->index,
                   got.len, want.len);
        fuzz_str_free(&got);
        fuzz_str_free(&want);
        j->eod_on_wire = true;
        j->body_ok = true;
        m->data_ok = false;
        m->txn_open = false;
        m->after_data = true;
        push(m, M_EOD, m->data_job);
        return;
    }
    if (!strcmp(t, ".")) {
        if (m->after_data) {
            m->after_data = false;
            return;
        }
        FUZZ_CHECK(m->data_ok, "a lone \".\" while the server is not reading data");
        size_t n;
        const char *l = wire_line(m, &n);
        FUZZ_CHECK(n == 1 && l[0] == '.', "empty data is not \".\"");
        h->jobs[m->data_job].eod_on_wire = true;
        h->jobs[m->data_job].empty_eod = true;
        m->data_ok = false;
        m->txn_open = false;
        push(m, M_EOD, m->data_job);
        return;
    }
    FUZZ_CHECK(!m->after_data, "data not followed by its \".\" log line");
    FUZZ_CHECK(!m->data_ok, "command \"%s\" while the server reads data", t);
    FUZZ_CHECK(!m->quit_sent, "command \"%s\" after QUIT", t);

    size_t n;
    const char *l = wire_line(m, &n);
    const char *mask = strstr(t, "****");
    if (mask) {
        size_t pre = (size_t)(mask - t);
        FUZZ_CHECK(n >= pre && !memcmp(l, t, pre), "masked line \"%s\" vs \"%.*s\"", t, (int)n,
                   l);
    } else {
        FUZZ_CHECK(n == tl && !memcmp(l, t, n), "wire \"%.*s\", log \"%s\"", (int)n, l, t);
    }

    if (!strncmp(t, "MAIL FROM:", 10)) {
        FUZZ_CHECK(!m->txn_open, "MAIL for a new message while job %d's transaction is open",
                   m->cur_job);
        m->cur_job = job_of_from(m, l, n);
        FUZZ_CHECK(!h->jobs[m->cur_job].cancelled, "MAIL for job %d, cancelled", m->cur_job);
        m->txn_open = true;
        push(m, M_MAIL, m->cur_job);
    } else if (!strncmp(t, "RCPT TO:", 8)) {
        FUZZ_CHECK(m->cur_job >= 0, "RCPT before MAIL");
        FUZZ_CHECK(!h->jobs[m->cur_job].reset, "RCPT for job %d after RSET", m->cur_job);
        push(m, M_RCPT, m->cur_job);
    } else if (!strcmp(t, "DATA")) {
        FUZZ_CHECK(m->cur_job >= 0, "DATA before MAIL");
        FUZZ_CHECK(!h->jobs[m->cur_job].reset, "DATA for job %d after RSET", m->cur_job);
        push(m, M_DATA, m->cur_job);
    } else if (!strcmp(t, "RSET")) {
        /* RSET ends the current transaction: nothing more for it, and it cannot be SENT */
        if (m->cur_job >= 0)
            h->jobs[m->cur_job].reset = true;
        m->txn_open = false;
        push(m, M_RSET, -1);
    } else if (!strcmp(t, "QUIT")) {
        m->quit_sent = true;
        push(m, M_QUIT, -1);
    } else if (!strncmp(t, "BDAT ", 5)) {
        FUZZ_CHECK(m->cur_job >= 0, "BDAT before MAIL");
        FUZZ_CHECK(!h->jobs[m->cur_job].reset, "BDAT for job %d after RSET", m->cur_job);
        unsigned long long size;
        char last[8] = "";
        int k = sscanf(t, "BDAT %llu %7s", &size, last);
        FUZZ_CHECK(k >= 1 && (k == 1 || !strcmp(last, "LAST")), "BDAT line \"%s\"", t);
        fuzz_str_t *w = &h->wire;
        FUZZ_CHECK(size <= w->len - m->pos, "BDAT %llu with %zu octets on the wire", size,
                   w->len - m->pos);
        fjob_t *j = &h->jobs[m->cur_job];
        fuzz_str_add(&j->bdat, w->p + m->pos, (size_t)size);
        m->pos += (size_t)size;
        m->bdat_seen = true;
        if (k == 2) {
            j->eod_on_wire = true;
            m->txn_open = false;
            j->body_ok = j->bdat.len == j->expect.len &&
                         (!j->bdat.len || !memcmp(j->bdat.p, j->expect.p, j->bdat.len));
            FUZZ_CHECK(j->body_ok, "job %d: BDAT chunks of %zu octets, body %zu", j->index,
                       j->bdat.len, j->expect.len);
            push(m, M_BDAT_LAST, m->cur_job);
        } else {
            push(m, M_BDAT, m->cur_job);
        }
    } else {
        FUZZ_CHECK(!strncmp(t, "EHLO ", 5) || !strncmp(t, "HELO ", 5) || !strcmp(t, "STARTTLS") ||
                       !strncmp(t, "AUTH ", 5) || !strcmp(t, "****"),
                   "unknown command \"%s\"", t);
        push(m, M_SETUP, -1);
    }
}

static void model_reply_line(model_t *m, const char *t)
{
    size_t n = strlen(t);
    FUZZ_CHECK(n >= 3, "reply line \"%s\"", t);
    if (n > 3 && t[3] == '-')
        return;
    /* a complete reply: it answers the oldest command not yet answered */
    int code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
    if (!m->len)
        return; /* unexpected: the engine ends the session */
    size_t cap = sizeof m->fifo / sizeof m->fifo[0];
    enum mcmd cmd = m->fifo[m->head].cmd;
    int job = m->fifo[m->head].job;
    m->head = (m->head + 1) % cap;
    m->len--;
    if (cmd == M_DATA && code == 354) {
        m->data_ok = true;
        m->data_job = job;
    }
    if ((cmd == M_EOD || cmd == M_BDAT_LAST) && job >= 0 && !m->h->jobs[job].eod_reply)
        m->h->jobs[job].eod_reply = code;
}

static void run_model(harness_t *h)
{
    static model_t m;
    memset(&m, 0, sizeof m);
    m.h = h;
    m.cur_job = -1;
    push(&m, M_SETUP, -1); /* the greeting answers nothing we sent */
    for (size_t i = 0; i < h->nevents; i++) {
        if (h->events[i].kind == 'C')
            model_command(&m, h->events[i].text);
        else if (h->events[i].kind == 'S')
            model_reply_line(&m, h->events[i].text);
        /* else 'J' (a job_done) only makes FUZZ_TRACE readable */
    }
    FUZZ_CHECK(!m.after_data, "data without its \".\" log line");
    /* what is left must be a body cut short (the connection ended while it was going out) */
    if (m.pos < h->wire.len) {
        FUZZ_CHECK(m.data_ok, "%zu octets on the wire that no log line accounts for",
                   h->wire.len - m.pos);
        fuzz_str_t got = {0};
        bool ended = read_data(&m, &got);
        FUZZ_CHECK(!ended, "data ended on the wire without being logged");
        fuzz_str_free(&got);
    }
    /* no smuggling: no end of data on the wire before a 354 (BDAT chunks may hold anything) */
    if (!m.bdat_seen) {
        const char *w = h->wire.p ? h->wire.p : "";
        const char *eod = h->wire.len >= 3 && !memcmp(w, ".\r\n", 3) ? w : NULL;
        if (!eod) {
            const char *at = memmem(w, h->wire.len, "\r\n.\r\n", 5);
            eod = at ? at + 2 : NULL;
        }
        if (eod)
            FUZZ_CHECK(h->wire_at_first_354 != SIZE_MAX &&
                           (size_t)(eod - w) >= h->wire_at_first_354,
                       "end of data at %zu, before any 354 (at %zu)", (size_t)(eod - w),
                       h->wire_at_first_354);
    }
}

/* ---- the whole run ---- */

static const auth_mech_t mech_table[8] = {AUTH_NONE,    AUTH_LOGIN,       AUTH_PLAIN, AUTH_CRAM_MD5,
                                          AUTH_XOAUTH2, AUTH_OAUTHBEARER, AUTH_NONE,  AUTH_NONE};
static const unsigned limit_table[8] = {0,
                                        AUTH_PLAIN | AUTH_LOGIN,
                                        AUTH_CRAM_MD5,
                                        AUTH_XOAUTH2 | AUTH_OAUTHBEARER,
                                        AUTH_LOGIN,
                                        AUTH_PLAIN,
                                        AUTH_OAUTHBEARER | AUTH_CRAM_MD5,
                                        0x1f};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static harness_t h;
    memset(&h, 0, sizeof h);
    h.wire_at_first_354 = SIZE_MAX;
    fuzz_input_t in = {data, size};

    uint8_t b0 = fuzz_byte(&in), b1 = fuzz_byte(&in), b2 = fuzz_byte(&in), b3 = fuzz_byte(&in),
            b4 = fuzz_byte(&in);
    h.slow_handshake = b4 & 1;
    h.late_written = b4 & 2;
    bool cancel_mid = b4 & 4;
    smtp_engine_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.helo_name = "client.example";
    cfg.creds.user = "user@example.org";
    if (b0 & 1)
        cfg.creds.password = "secret";
    if (b0 & 2)
        cfg.creds.token = "ya29.token";
    static const int policy[4] = {SMTP_TLS_NEVER, SMTP_TLS_IF_OFFERED, SMTP_TLS_REQUIRED,
                                  SMTP_TLS_IF_OFFERED};
    cfg.starttls = policy[(b0 >> 2) & 3];
    cfg.tls_active = b0 & 0x10;
    cfg.allow_cleartext_auth = b0 & 0x20;
    cfg.auth_optional = b0 & 0x40;
    cfg.no_chunking = b0 & 0x80;
    cfg.window = b1 & 7;
    h.njobs = 1 + ((b1 >> 3) & 3) % MAX_JOBS;
    h.submit_mode = (b1 >> 5) & 3;
    h.handshake_fails = b1 & 0x80;
    cfg.auth_mech = mech_table[b2 & 7];
    h.quit_mode = (b2 >> 3) & 3;
    cfg.auth_limit = limit_table[(b2 >> 5) & 7];

    for (int i = 0; i < h.njobs; i++) {
        fjob_t *j = &h.jobs[i];
        uint8_t flags = fuzz_byte(&in), len = fuzz_byte(&in), shape = fuzz_byte(&in);
        j->index = i;
        snprintf(j->from, sizeof j->from, "j%d@sender.example", i);
        size_t nr = 1 + (flags & 3);
        for (size_t r = 0; r < nr; r++) {
            snprintf(j->rcpt_store[r], sizeof j->rcpt_store[r], "r%zu.j%d@rcpt.example", r, i);
            j->rcpts[r] = j->rcpt_store[r];
        }
        const uint8_t *body;
        j->pattern_len = fuzz_bytes(&in, len, &body);
        j->pattern = body;
        /* mostly short bodies; now and then one long enough for several BDAT chunks */
        unsigned k = shape & 15;
        unsigned rep = k < 14 ? 1 + k / 4 : k == 14 ? 1u << 11 : 1u << 14;
        j->body_len = j->pattern_len * rep;
        if (j->body_len > MAX_BODY)
            j->body_len = MAX_BODY - MAX_BODY % (j->pattern_len ? j->pattern_len : 1);
        if (!j->pattern_len)
            j->body_len = 0;
        j->max_read = (shape >> 4) ? (size_t)1 << ((shape >> 4) - 1) : 0;
        if (j->max_read && j->max_read < 64 && j->body_len > MAX_BODY_SMALL_READS)
            j->body_len = MAX_BODY_SMALL_READS - MAX_BODY_SMALL_READS % j->pattern_len;
        j->fail_at = (flags & 0x40) ? (long)(j->body_len / 2) : -1;
        h.written_split |= (flags & 0x80) != 0;
        j->job.from = j->from;
        j->job.rcpts = j->rcpts;
        j->job.nrcpts = nr;
        j->job.eight_bit = flags & 4;
        j->job.smtputf8 = flags & 8;
        switch ((flags >> 4) & 3) {
        case 0: j->job.size = 0; break;
        case 1: j->job.size = j->body_len; break;
        case 2: j->job.size = (uint64_t)j->body_len * 1000 + 1; break;
        default: j->job.size = j->body_len + 17; break;
        }
        j->job.read = job_read;
        j->job.ctx = j;
        j->job.user = j;
        /* the expected wire body: the whole body, line endings normalised */
        fuzz_str_add(&j->expect, "", 0);
        uint8_t *full = fuzz_xrealloc(NULL, j->body_len);
        for (size_t k = 0; k < j->body_len; k += j->pattern_len)
            memcpy(full + k, j->pattern,
                   j->body_len - k < j->pattern_len ? j->body_len - k : j->pattern_len);
        fuzz_crlf_normalise(&j->expect, full, j->body_len);
        free(full);
    }

    smtp_engine_callbacks_t cb = {
        .log = cb_log, .ready = cb_ready, .starttls = cb_starttls,
        .job_done = cb_job_done, .progress = cb_progress, .closed = cb_closed,
    };
    h.e = email__smtp_engine_new(&cfg, &cb, &h);
    FUZZ_CHECK(h.e != NULL, "email__smtp_engine_new");

    if (h.submit_mode == 0 || h.submit_mode == 3)
        for (int i = 0; i < h.njobs; i++)
            submit(&h, &h.jobs[i]);
    else if (h.submit_mode == 2)
        submit(&h, &h.jobs[0]);
    if (h.submit_mode == 3 && h.jobs[h.njobs - 1].submitted) {
        int rc = email__smtp_engine_cancel(h.e, &h.jobs[h.njobs - 1].job);
        FUZZ_CHECK(rc == 0 || rc == EMAIL_EBUSY, "cancel: %d", rc);
        if (rc == 0)
            h.jobs[h.njobs - 1].cancelled = true;
    }
    if (h.quit_mode == 1)
        email__smtp_engine_quit(h.e);
    take_all(&h);
    FUZZ_CHECK(h.wire.len == 0, "the client spoke before the greeting");

    /* the server bytes */
    uint64_t seed = fuzz_hash(in.p, in.n) ^ b3;
    size_t pos = 0, pieces = 0;
    while (pos < in.n) {
        size_t piece = in.n - pos;
        if (b3 >= 128) {
            piece = 1 + fuzz_xorshift(&seed) % (size_t)(b3 - 127);
        } else if (b3 == 127) {
            const void *lf = memchr(in.p + pos, '\n', in.n - pos);
            if (lf)
                piece = (size_t)((const uint8_t *)lf - (in.p + pos)) + 1;
        } else if (b3) {
            piece = b3;
        }
        if (piece > in.n - pos)
            piece = in.n - pos;
        /* each reply answers what came before: a 354 marks the wire where data may begin */
        size_t before = h.nevents;
        flush_written(&h);
        int rc = email__smtp_engine_feed(h.e, (const char *)in.p + pos, piece);
        FUZZ_CHECK(rc <= 0, "feed: %d", rc);
        FUZZ_CHECK(rc == 0 || email__smtp_engine_is_closed(h.e), "feed failed, session open");
        for (size_t k = before; k < h.nevents && h.wire_at_first_354 == SIZE_MAX; k++)
            if (h.events[k].kind == 'S' && !strncmp(h.events[k].text, "354", 3))
                h.wire_at_first_354 = h.wire.len;
        after_feed(&h);
        check_state(&h);
        if (cancel_mid && ++pieces == 2) {
            for (int i = 0; i < h.njobs; i++) {
                fjob_t *j = &h.jobs[i];
                if (!j->submitted || j->cancelled || j->ndone)
                    continue;
                int crc = email__smtp_engine_cancel(h.e, &j->job);
                FUZZ_CHECK(crc == 0 || crc == EMAIL_EBUSY, "cancel: %d", crc);
                if (crc == 0)
                    j->cancelled = true;
            }
            take_all(&h);
        }
        pos += piece;
    }
    if (h.quit_mode == 2)
        email__smtp_engine_quit(h.e);
    take_all(&h);
    flush_written(&h);
    check_state(&h);
    email__smtp_engine_abort(h.e, EMAIL_ECLOSED, "end of the fuzz input");
    check_state(&h);
    FUZZ_CHECK(email__smtp_engine_is_closed(h.e), "not closed after abort");
    FUZZ_CHECK(!email__smtp_engine_is_ready(h.e), "ready after abort");
    {
        const char *d = NULL;
        FUZZ_CHECK(email__smtp_engine_take(h.e, &d) == 0, "bytes to write after abort");
    }

    /* every job ended exactly once; closed once */
    FUZZ_CHECK(h.nclosed == 1, "closed %d times", h.nclosed);
    for (int i = 0; i < h.njobs; i++) {
        fjob_t *j = &h.jobs[i];
        FUZZ_CHECK(j->ndone == (j->submitted && !j->cancelled ? 1 : 0), "job %d: %d job_done",
                   i, j->ndone);
    }

    if (getenv("FUZZ_TRACE")) {
        /* FUZZ_TRACE=1 ./fuzz_engine INPUT: the conversation and the outcomes */
        for (size_t i = 0; i < h.nevents; i++)
            fprintf(stderr, "%c: %s\n", h.events[i].kind, h.events[i].text);
        for (int i = 0; i < h.njobs; i++)
            fprintf(stderr, "job %d: submitted %d done %d outcome %d error %d status %d (%s)\n", i,
                    h.jobs[i].submitted, h.jobs[i].ndone, h.jobs[i].job.outcome,
                    h.jobs[i].job.status.error, h.jobs[i].job.status.status,
                    h.jobs[i].job.status.status_text);
        fprintf(stderr, "wire: %zu octets\n", h.wire.len);
    }
    run_model(&h);

    /* outcomes against the wire */
    for (int i = 0; i < h.njobs; i++) {
        fjob_t *j = &h.jobs[i];
        if (!j->ndone)
            continue;
        const smtp_job_t *job = &j->job;
        switch (job->outcome) {
        case SMTP_JOB_SENT:
            FUZZ_CHECK(j->eod_on_wire && j->body_ok && !j->empty_eod,
                       "job %d SENT but its body did not go out whole", i);
            FUZZ_CHECK(!j->reset, "job %d SENT though its transaction was reset", i);
            FUZZ_CHECK(j->eod_reply >= 200 && j->eod_reply < 300,
                       "job %d SENT after a %d to its end of data", i, j->eod_reply);
            FUZZ_CHECK(job->status.status == j->eod_reply, "job %d: status %d, reply %d", i,
                       job->status.status, j->eod_reply);
            break;
        case SMTP_JOB_UNKNOWN:
            FUZZ_CHECK(j->eod_on_wire && !j->eod_reply,
                       "job %d UNKNOWN: end of data %s, answered %d", i,
                       j->eod_on_wire ? "sent" : "never sent", j->eod_reply);
            FUZZ_CHECK(job->status.error == EMAIL_EUNKNOWN);
            break;
        case SMTP_JOB_RETRYABLE:
            if (job->status.status == 0)
                FUZZ_CHECK(!j->eod_on_wire,
                           "job %d RETRYABLE though its end of data went out", i);
            break;
        case SMTP_JOB_FAILED:
            if (job->status.error == EMAIL_EIO)
                FUZZ_CHECK(!j->eod_on_wire, "job %d: a read error, yet the data was ended", i);
            break;
        default:
            FUZZ_CHECK(false, "job %d: outcome %d", i, job->outcome);
        }
    }

    email__smtp_engine_free(h.e);
    for (int i = 0; i < h.njobs; i++) {
        email__refusals_free(&h.jobs[i].job.refusals);
        fuzz_str_free(&h.jobs[i].expect);
        fuzz_str_free(&h.jobs[i].bdat);
    }
    for (size_t i = 0; i < h.nevents; i++)
        free(h.events[i].text);
    free(h.events);
    fuzz_str_free(&h.wire);
    return 0;
}
