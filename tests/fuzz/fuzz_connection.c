/*
 * libFuzzer target: lib/connection.c (the engine driven over a transport, with its timers) over
 * an in-memory transport defined here in place of lib/transport.c, with the fuzzer as the server
 * and as the file system under the message bodies.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0  credentials (0), the peer is loopback (1), no_chunking (2), window (bits 3-4: the
 *           default, 1, 2, 8), the reply timeout fires at the next turn of the loop (5), the
 *           connect fails instead of connecting (6), the connect timeout fires first (7)
 *   byte 1  jobs (bits 0-1: 0..3), when QUIT is asked (bits 2-3: never, at once, after the last
 *           server byte, from the last job's job_done), a job_done submits the next job (4)
 *           instead of all at once, writes are reported done only before the next server bytes
 *           (5), the stream ends with a transport failure instead of the server closing (6),
 *           the first job is cancelled after the second piece (7)
 *   byte 2  how the server bytes are cut: 0 whole, 1..127 pieces of that size, 128.. pieces
 *           of 1..(b-127) bytes from a generator
 *   per job: flags (recipients - 1 in bits 0-1; bits 2-3: the body reads whole, fails with
 *           EMAIL_EIO after `at` bytes (the file vanished), ends after `at` bytes (shrank), or
 *           goes on `at` bytes past its size (grew); the size is announced (4)), the body
 *           length, `at`, then the body bytes
 *   the rest: what the server sends, in pieces; after each piece the loop runs once.
 *
 * Properties checked:
 *   - nothing is written to a transport that failed or was closed, nor to none at all (a read
 *     failure used to close the connection inside flush(), which then wrote on);
 *   - every submitted job gets exactly one job_done (a cancelled one none), none after closed;
 *     closed comes exactly once, after every handle is closed, and the loop is empty after it;
 *   - a job whose body could not be read ends FAILED with that error, never SENT or UNKNOWN;
 *   - statuses are NUL-terminated, success agrees with the outcome, no leak (LeakSanitizer).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <uv.h>

#include "connection.h"
#include "emailsession.h"
#include "fuzz_common.h"
#include "protocol.h"
#include "status.h"
#include "transport.h"

#define MAX_JOBS 3
#define MAX_RCPTS 4

/* ---- the in-memory transport (replaces lib/transport.c in this program) ---- */

struct transport {
    transport_callbacks_t cb;
    void *ud;
    bool connecting, failed, closing, closed_sent;
    bool loopback;
    size_t pending;   /* written, not yet reported */
    size_t wire;      /* bytes written in all */
};

static transport_t *the_transport;

transport_t *email__transport_new(uv_loop_t *loop, const transport_callbacks_t *cb, void *ud)
{
    (void)loop;
    FUZZ_CHECK(the_transport == NULL, "a second transport for one connection");
    transport_t *t = calloc(1, sizeof *t);
    FUZZ_CHECK(t != NULL);
    t->cb = *cb;
    t->ud = ud;
    the_transport = t;
    return t;
}

int email__transport_connect(transport_t *t, const char *host, int port)
{
    FUZZ_CHECK(t && host && *host && port > 0, "connect to \"%s\" port %d", host ? host : "",
               port);
    t->connecting = true;
    return 0;
}

int email__transport_write(transport_t *t, const char *data, size_t n)
{
    FUZZ_CHECK(t != NULL, "write of %zu bytes to no transport", n);
    FUZZ_CHECK(!t->closing, "write of %zu bytes to a closed transport", n);
    FUZZ_CHECK(!t->connecting, "write before connected");
    FUZZ_CHECK(data != NULL || !n);
    if (t->failed)
        return EMAIL_ECLOSED;
    t->pending += n;
    t->wire += n;
    return 0;
}

/* Last words before a close (TLS's close_notify): taken at once, or not at all. */
int email__transport_write_now(transport_t *t, const char *data, size_t n)
{
    FUZZ_CHECK(t != NULL, "write of %zu bytes to no transport", n);
    FUZZ_CHECK(!t->closing, "write of %zu bytes to a closed transport", n);
    FUZZ_CHECK(data != NULL || !n);
    if (t->failed)
        return EMAIL_ECLOSED;
    if (t->pending)
        return EMAIL_EBUSY;
    t->wire += n;
    return 0;
}

size_t email__transport_pending(const transport_t *t)
{
    return t->pending;
}

size_t email__transport_unacked(const transport_t *t)
{
    (void)t;
    return 0; /* every byte written is at once acknowledged */
}

bool email__transport_is_loopback(const transport_t *t)
{
    return t->loopback;
}

void email__transport_close(transport_t *t)
{
    if (!t || t->closing)
        return;
    t->closing = true; /* `closed` comes later, from the harness, as uv_close's would */
}

/* ---- the harness ---- */

typedef struct fjob {
    smtp_job_t job;
    int index;
    char rcpt_store[MAX_RCPTS][32];
    const char *rcpts[MAX_RCPTS];
    const uint8_t *body;
    size_t body_len, pos, at;
    int mode;            /* 0 whole, 1 fails at `at`, 2 shrank to `at`, 3 grew by `at` */
    bool read_failed;
    bool submitted, cancelled;
    int ndone;
} fjob_t;

typedef struct harness {
    uv_loop_t loop;
    connection_t *c;
    fjob_t jobs[MAX_JOBS];
    int njobs;
    bool chained;
    int quit_mode;
    bool late_written;
    bool timers_fire;    /* a timeout of 0: the loop runs at every step */
    int nclosed;
} harness_t;

FUZZ_NOCOV static ssize_t job_read(void *ctx, char *buf, size_t n)
{
    fjob_t *j = ctx;
    FUZZ_CHECK(n > 0, "read asked for 0 bytes");
    FUZZ_CHECK(!j->read_failed, "read again after a failure");
    size_t end = j->body_len;
    if (j->mode == 1 && j->pos >= j->at) {
        j->read_failed = true;
        return EMAIL_EIO;
    }
    if (j->mode == 1 || j->mode == 2)
        end = j->at < j->body_len ? j->at : j->body_len;
    if (j->mode == 3)
        end = j->body_len + j->at;
    size_t left = end - j->pos;
    if (n > left)
        n = left;
    for (size_t i = 0; i < n; i++) /* past its bytes, a grown file repeats them */
        buf[i] = j->body_len ? (char)j->body[(j->pos + i) % j->body_len] : 'x';
    j->pos += n;
    return (ssize_t)n;
}

static void submit(harness_t *h, fjob_t *j)
{
    j->submitted = true; /* job_done may come from inside submit */
    int rc = email__connection_submit(h->c, &j->job);
    FUZZ_CHECK(rc == 0 || rc == EMAIL_ESHUTDOWN, "submit: %d", rc);
    if (rc) {
        FUZZ_CHECK(!j->ndone, "job_done for a job refused by submit");
        j->submitted = false;
    }
}

static void cb_ready(void *ud, connection_t *c)
{
    harness_t *h = ud;
    FUZZ_CHECK(c == h->c && h->nclosed == 0, "ready after closed");
}

static void cb_job_done(void *ud, connection_t *c, smtp_job_t *job)
{
    harness_t *h = ud;
    fjob_t *j = job->user;
    FUZZ_CHECK(c == h->c);
    FUZZ_CHECK(j && j >= h->jobs && j < h->jobs + h->njobs, "job_done for a job never given");
    FUZZ_CHECK(h->nclosed == 0, "job_done after closed");
    FUZZ_CHECK(j->submitted && !j->cancelled, "job_done for job %d, never submitted", j->index);
    FUZZ_CHECK(++j->ndone == 1, "job %d done twice", j->index);
    FUZZ_CHECK(job->status.success == (job->outcome == SMTP_JOB_SENT));
    FUZZ_CHECK(memchr(job->status.status_text, '\0', sizeof job->status.status_text));
    FUZZ_CHECK(memchr(job->status.enhanced_code, '\0', sizeof job->status.enhanced_code));
    if (j->read_failed)
        FUZZ_CHECK(job->outcome == SMTP_JOB_FAILED && job->status.error == EMAIL_EIO,
                   "job %d could not be read, yet outcome %d error %d", j->index, job->outcome,
                   job->status.error);
    email__refusals_free(&job->refusals);
    if (h->chained && j->index + 1 < h->njobs)
        submit(h, &h->jobs[j->index + 1]);
    if (h->quit_mode == 3 && j->index + 1 == h->njobs)
        email__connection_quit(h->c);
}

static void cb_closed(void *ud, connection_t *c, const email_status_t *why)
{
    harness_t *h = ud;
    FUZZ_CHECK(c == h->c && why != NULL);
    FUZZ_CHECK(++h->nclosed == 1, "closed twice");
    FUZZ_CHECK(memchr(why->status_text, '\0', sizeof why->status_text));
    FUZZ_CHECK(the_transport == NULL || the_transport->closed_sent,
               "closed before the transport was");
}

/* What the kernel and libuv would do between two reads: report writes, close, run timers. */
static void settle(harness_t *h, bool report_written)
{
    for (int guard = 0; guard < 1000; guard++) {
        transport_t *t = the_transport;
        if (t && t->closing && !t->closed_sent) {
            t->closed_sent = true;
            the_transport = NULL;
            t->cb.closed(t->ud); /* the connection may be freed inside */
            free(t);
            continue;
        }
        if (t && report_written && t->pending && !t->failed && !t->closing) {
            size_t n = t->pending;
            t->pending = 0;
            t->cb.written(t->ud, n);
            continue;
        }
        /* the loop only has work when a timer can fire (a timeout of 0) or handles close */
        if (h->timers_fire || !the_transport || the_transport->closing || h->nclosed)
            uv_run(&h->loop, UV_RUN_NOWAIT);
        t = the_transport;
        if (!(t && ((t->closing && !t->closed_sent) ||
                    (report_written && t->pending && !t->failed && !t->closing))))
            return;
    }
    FUZZ_CHECK(0, "the connection never settles");
}

static void fail_transport(int error, const char *text)
{
    transport_t *t = the_transport;
    if (!t || t->failed || t->closing)
        return;
    t->failed = true;
    t->cb.failed(t->ud, error, text);
}

static void count_handle(uv_handle_t *handle, void *arg)
{
    (void)handle;
    ++*(size_t *)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t b0 = fuzz_byte(&in), b1 = fuzz_byte(&in), b2 = fuzz_byte(&in);
    static harness_t hh;
    static bool loop_ready;
    harness_t *h = &hh;
    memset(&h->c, 0, sizeof *h - offsetof(harness_t, c)); /* all but the loop */
    if (!loop_ready) { /* one loop for every input: each must leave it empty */
        FUZZ_CHECK(uv_loop_init(&h->loop) == 0);
        loop_ready = true;
    }
    h->njobs = b1 & 3;
    h->quit_mode = (b1 >> 2) & 3;
    h->chained = b1 & 0x10;
    h->late_written = b1 & 0x20;
    h->timers_fire = b0 & 0xa0;
    for (int i = 0; i < h->njobs; i++) {
        fjob_t *j = &h->jobs[i];
        uint8_t flags = fuzz_byte(&in);
        size_t len = fuzz_byte(&in);
        j->at = fuzz_byte(&in);
        const uint8_t *body;
        j->body_len = fuzz_bytes(&in, len, &body);
        j->body = body;
        j->index = i;
        j->mode = (flags >> 2) & 3;
        size_t nr = 1 + (flags & 3);
        for (size_t r = 0; r < nr; r++) {
            snprintf(j->rcpt_store[r], sizeof j->rcpt_store[r], "r%d.%zu@example.org", i, r);
            j->rcpts[r] = j->rcpt_store[r];
        }
        j->job.from = "sender@example.org";
        j->job.rcpts = j->rcpts;
        j->job.nrcpts = nr;
        j->job.size = (flags & 0x10) ? j->body_len : 0;
        j->job.read = job_read;
        j->job.ctx = j;
        j->job.user = j;
    }

    static const unsigned windows[4] = {0, 1, 2, 8};
    connection_config_t cfg = {
        .host = "mx.example.org",
        .port = 25,
        .engine = {.helo_name = "client.example.org",
                   .creds = {.user = (b0 & 1) ? "user" : NULL,
                             .password = (b0 & 1) ? "secret" : NULL},
                   .starttls = SMTP_TLS_NEVER,
                   .window = windows[(b0 >> 3) & 3],
                   .no_chunking = b0 & 4,
                   .auth_optional = true},
        .connect_timeout_ms = (b0 & 0x80) ? 0 : 600000,
        .reply_timeout_ms = (b0 & 0x20) ? 0 : 600000,
        .session_id = 1,
    };
    static const connection_callbacks_t cbs = {
        .ready = cb_ready, .job_done = cb_job_done, .closed = cb_closed};
    h->c = email__connection_new(&h->loop, &cfg, &cbs, h);
    FUZZ_CHECK(h->c != NULL);
    FUZZ_CHECK(email__connection_start(h->c) == 0, "start");
    FUZZ_CHECK(the_transport && the_transport->connecting);
    the_transport->loopback = b0 & 2;
    if (!h->chained)
        for (int i = 0; i < h->njobs; i++)
            submit(h, &h->jobs[i]);
    else if (h->njobs)
        submit(h, &h->jobs[0]);
    if (h->quit_mode == 1)
        email__connection_quit(h->c);

    settle(h, true); /* a connect timeout of 0 fires here */
    if (the_transport && !the_transport->closing) {
        the_transport->connecting = false;
        if (b0 & 0x40)
            fail_transport(EMAIL_ECONNECT, "connection refused");
        else
            the_transport->cb.connected(the_transport->ud, "127.0.0.1", 25);
    }
    settle(h, !h->late_written);

    uint64_t rng = fuzz_hash(in.p, in.n);
    for (int piece = 0; in.n && h->nclosed == 0; piece++) {
        size_t want = in.n;
        if (b2 >= 1 && b2 <= 127)
            want = b2;
        else if (b2 >= 128)
            want = 1 + fuzz_xorshift(&rng) % (size_t)(b2 - 127);
        const uint8_t *p;
        size_t n = fuzz_bytes(&in, want, &p);
        settle(h, true); /* late writes reach the kernel before the server answers them */
        transport_t *t = the_transport;
        if (!t || t->failed || t->closing)
            break;
        t->cb.read(t->ud, (const char *)p, n);
        settle(h, !h->late_written);
        if (piece == 1 && (b1 & 0x80) && h->njobs && h->nclosed == 0 &&
            h->jobs[0].submitted && !h->jobs[0].ndone &&
            email__connection_cancel(h->c, &h->jobs[0].job) == 0)
            h->jobs[0].cancelled = true;
    }
    if (h->nclosed == 0 && h->quit_mode == 2)
        email__connection_quit(h->c);
    settle(h, true);
    if (h->nclosed == 0) {
        if (b1 & 0x40)
            fail_transport(EMAIL_ECLOSED, "writing to the server failed");
        else
            fail_transport(EMAIL_ECLOSED, "the server closed the connection");
        if (h->nclosed == 0 && the_transport == NULL)
            FUZZ_CHECK(0, "transport gone but the connection never closed");
        settle(h, true);
    }
    if (h->nclosed == 0) /* never connected and no failure could reach it: abort */
        email__connection_abort(h->c, EMAIL_ECANCELED, "the harness gives up");
    settle(h, true);
    FUZZ_CHECK(h->nclosed == 1, "the connection never closed");
    FUZZ_CHECK(the_transport == NULL, "the transport outlived its connection");

    for (int i = 0; i < h->njobs; i++) {
        fjob_t *j = &h->jobs[i];
        if (j->submitted && !j->cancelled)
            FUZZ_CHECK(j->ndone == 1, "job %d submitted, %d outcomes", i, j->ndone);
        else
            FUZZ_CHECK(j->ndone == 0, "job %d never went in, yet %d outcomes", i, j->ndone);
    }
    uv_run(&h->loop, UV_RUN_DEFAULT);
    size_t handles = 0;
    uv_walk(&h->loop, count_handle, &handles);
    FUZZ_CHECK(handles == 0, "%zu handles left on the loop", handles);
    return 0;
}
