/*
 * Unit tests of the engine's life before its transport is connected (smtp_engine_config_t's
 * wait_start, email__smtp_engine_start), of its state channel (the `state` callback, apart from the
 * conversation log), and of the ring (lib/ring.h) that holds its expected replies. The engine is
 * driven with scripted server bytes; every callback becomes a line of an event transcript.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/types.h>

#include "emailsession.h"
#include "protocol.h"
#include "ring.h"
#include "util.h"

typedef struct job {
    smtp_job_t job;
    const char *name;
    const char *body;
    size_t pos;
    const char *rcpts[1];
} job_t;

typedef struct run {
    smtp_engine_t *e;
    email_buf_t events;   /* one line per callback */
    email_buf_t wire;     /* every byte taken */
    job_t *chained;       /* submitted from the first job_done, when set */
    int chain_rc;
} run_t;

static ssize_t body_read(void *ctx, char *buf, size_t n)
{
    job_t *j = ctx;
    size_t left = strlen(j->body) - j->pos;
    if (n > left)
        n = left;
    memcpy(buf, j->body + j->pos, n);
    j->pos += n;
    return (ssize_t)n;
}

static void job_init(job_t *j, const char *name, const char *rcpt)
{
    memset(j, 0, sizeof *j);
    j->name = name;
    j->body = "Subject: hi\r\n\r\nhello\r\n";
    j->rcpts[0] = rcpt;
    j->job.from = "a@example.org";
    j->job.rcpts = j->rcpts;
    j->job.nrcpts = 1;
    j->job.read = body_read;
    j->job.ctx = j;
    j->job.user = j;
}

static void ev(run_t *r, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static void ev(run_t *r, const char *fmt, ...)
{
    char line[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    assert_int_equal(email__buf_printf(&r->events, "%s\n", line), 0);
}

static void cb_log(void *ud, char kind, const char *text)
{
    assert_true(kind == 'C' || kind == 'S' || kind == '#');
    ev(ud, "%c: %s", kind, text);
}

static void cb_ready(void *ud)
{
    ev(ud, "ready");
}

static void cb_job_done(void *ud, smtp_job_t *job)
{
    run_t *r = ud;
    job_t *j = job->user;
    ev(r, "done %s: outcome %d error %d status %d \"%s\"", j->name, (int)job->outcome,
       job->status.error, job->status.status, job->status.status_text);
    email__refusals_free(&job->refusals);
    if (r->chained) {
        job_t *next = r->chained;
        r->chained = NULL;
        r->chain_rc = email__smtp_engine_submit(r->e, &next->job);
    }
}

static void cb_closed(void *ud, const email_status_t *why)
{
    ev(ud, "closed: error %d \"%s\"", why->error, why->status_text);
}

static void cb_state(void *ud, const char *from, const char *to)
{
    ev(ud, "state %s -> %s", from, to);
}

static void run_init(run_t *r, const smtp_engine_config_t *cfg, bool with_state)
{
    memset(r, 0, sizeof *r);
    email__buf_init(&r->events);
    email__buf_init(&r->wire);
    smtp_engine_callbacks_t cb = {.log = cb_log, .ready = cb_ready, .job_done = cb_job_done,
                                  .closed = cb_closed};
    if (with_state)
        cb.state = cb_state;
    r->e = email__smtp_engine_new(cfg, &cb, r);
    assert_non_null(r->e);
}

static void run_free(run_t *r)
{
    email__smtp_engine_free(r->e);
    email__buf_free(&r->events);
    email__buf_free(&r->wire);
}

/* Everything the engine has to write, reported written. */
static void take_all(run_t *r)
{
    const char *d;
    size_t n;
    while ((n = email__smtp_engine_take(r->e, &d)) > 0) {
        assert_int_equal(email__buf_append(&r->wire, d, n), 0);
        email__smtp_engine_written(r->e, n);
    }
}

static void feed(run_t *r, const char *s)
{
    take_all(r); /* a reply answers only what was handed over before it */
    email__smtp_engine_feed(r->e, s, strlen(s));
    take_all(r);
}

static const char *text(const email_buf_t *b)
{
    return b->data ? b->data : "";
}

static const smtp_engine_config_t plain_cfg = {
    .helo_name = "client.example",
    .wait_start = true,
};

/* ------------------------------------------------------------------------------------------- */

/* Jobs and QUIT given before the transport connects wait; nothing goes until the greeting. */
static void test_jobs_wait_for_start(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, &plain_cfg, false);
    job_t j;
    job_init(&j, "j", "b@example.org");
    assert_int_equal(email__smtp_engine_submit(r.e, &j.job), 0);
    email__smtp_engine_quit(r.e);
    take_all(&r);
    assert_int_equal(r.wire.len, 0);
    assert_false(email__smtp_engine_waiting(r.e)); /* no reply is awaited yet */
    assert_false(email__smtp_engine_is_closed(r.e));

    email__smtp_engine_start(r.e, false);
    assert_true(email__smtp_engine_waiting(r.e)); /* the greeting now */
    feed(&r, "220 mx ESMTP\r\n");
    feed(&r, "250 mx\r\n");
    feed(&r, "250 ok\r\n");
    feed(&r, "250 ok\r\n");
    feed(&r, "354 go\r\n");
    feed(&r, "250 queued\r\n");
    feed(&r, "221 bye\r\n");
    assert_string_equal(text(&r.wire), "EHLO client.example\r\n"
                                       "MAIL FROM:<a@example.org>\r\n"
                                       "RCPT TO:<b@example.org>\r\n"
                                       "DATA\r\n"
                                       "Subject: hi\r\n\r\nhello\r\n.\r\n"
                                       "QUIT\r\n");
    assert_non_null(strstr(text(&r.events), "done j: outcome 0 error 0 status 250 \"queued\"\n"));
    assert_true(email__smtp_engine_is_closed(r.e));
    run_free(&r);
}

/* Bytes before the start answer nothing: a protocol error, as any reply without a command. */
static void test_reply_before_start(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, &plain_cfg, false);
    assert_int_equal(email__smtp_engine_feed(r.e, "220 mx\r\n", 8), EMAIL_EPROTO);
    assert_true(email__smtp_engine_is_closed(r.e));
    assert_int_equal(email__smtp_engine_status(r.e)->error, EMAIL_EPROTO);
    run_free(&r);
}

/*
 * Never connected: the failure is logged first, then each job (one submitted from another's
 * job_done too) ends once, retryable, with the transport's words as they are; closed once.
 */
static void test_abort_before_start(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, &plain_cfg, false);
    job_t a, b;
    job_init(&a, "a", "b@example.org");
    job_init(&b, "b", "c@example.org");
    assert_int_equal(email__smtp_engine_submit(r.e, &a.job), 0);
    r.chained = &b;
    email__smtp_engine_abort(r.e, EMAIL_ECONNECT, "cannot connect to \"mx\" port 25: refused");
    assert_int_equal(r.chain_rc, 0);
    char expect[600];
    snprintf(expect, sizeof expect,
             "#: SMTP Error: cannot connect to \"mx\" port 25: refused\n"
             "done a: outcome %d error %d status 0 \"cannot connect to \"mx\" port 25: refused\"\n"
             "done b: outcome %d error %d status 0 \"cannot connect to \"mx\" port 25: refused\"\n"
             "closed: error %d \"cannot connect to \"mx\" port 25: refused\"\n",
             SMTP_JOB_RETRYABLE, EMAIL_ECONNECT, SMTP_JOB_RETRYABLE, EMAIL_ECONNECT,
             EMAIL_ECONNECT);
    assert_string_equal(text(&r.events), expect);
    assert_int_equal(a.job.status.recipients, 1);
    assert_false(a.job.status.success);
    assert_int_equal(email__smtp_engine_submit(r.e, &a.job), EMAIL_ESHUTDOWN);
    assert_int_equal(r.wire.len, 0);
    run_free(&r);
}

/* A job cancelled before the start is the caller's again: no outcome at the abort. */
static void test_cancel_before_start(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, &plain_cfg, false);
    job_t a;
    job_init(&a, "a", "b@example.org");
    assert_int_equal(email__smtp_engine_submit(r.e, &a.job), 0);
    assert_int_equal(email__smtp_engine_cancel(r.e, &a.job), 0);
    email__smtp_engine_abort(r.e, EMAIL_ETIMEDOUT, "timed out");
    char expect[100];
    snprintf(expect, sizeof expect, "#: SMTP Error: timed out\nclosed: error %d \"timed out\"\n",
             EMAIL_ETIMEDOUT);
    assert_string_equal(text(&r.events), expect);
    run_free(&r);
}

/* Whether credentials may go in cleartext is the start's to say (a loopback peer). */
static void auth_run(bool allow, const char *expect_wire)
{
    smtp_engine_config_t cfg = plain_cfg;
    cfg.creds = (auth_creds_t){.user = "u", .password = "p"};
    cfg.auth_mech = AUTH_PLAIN;
    cfg.allow_cleartext_auth = !allow; /* the start's word wins */
    run_t r;
    run_init(&r, &cfg, false);
    email__smtp_engine_start(r.e, allow);
    feed(&r, "220 mx\r\n");
    feed(&r, "250-mx\r\n250 AUTH PLAIN\r\n");
    assert_string_equal(text(&r.wire), expect_wire);
    run_free(&r);
}

static void test_start_sets_cleartext_auth(void **state)
{
    (void)state;
    auth_run(true, "EHLO client.example\r\nAUTH PLAIN AHUAcA==\r\n");
    auth_run(false, "EHLO client.example\r\nQUIT\r\n");
}

/* An engine made without wait_start is started already: a start changes nothing. */
static void test_start_without_wait(void **state)
{
    (void)state;
    smtp_engine_config_t cfg = plain_cfg;
    cfg.wait_start = false;
    run_t r;
    run_init(&r, &cfg, true);
    email__smtp_engine_start(r.e, true);
    feed(&r, "220 mx\r\n");
    assert_string_equal(text(&r.wire), "EHLO client.example\r\n");
    assert_string_equal(text(&r.events), "S: 220 mx\n"
                                         "state GREETING -> EHLO\n"
                                         "C: EHLO client.example\n");
    run_free(&r);
}

/* Each state change goes to the state callback by name, and only there: the conversation log
 * of a session is the same with and without it. */
static void test_state_channel(void **state)
{
    (void)state;
    email_buf_t logs[2];
    for (int with = 0; with < 2; with++) {
        run_t r;
        run_init(&r, &plain_cfg, with);
        email__smtp_engine_start(r.e, false);
        feed(&r, "220 mx\r\n");
        feed(&r, "250-mx\r\n250 STARTTLS\r\n");
        email__smtp_engine_quit(r.e);
        take_all(&r);
        feed(&r, "221 bye\r\n");
        logs[with] = r.events;
        email__buf_init(&r.events);
        run_free(&r);
    }
    const char *expect = "state CONNECTING -> GREETING\n"
                         "S: 220 mx\n"
                         "state GREETING -> EHLO\n"
                         "C: EHLO client.example\n"
                         "S: 250-mx\n"
                         "S: 250 STARTTLS\n"
                         "state EHLO -> READY\n"
                         "ready\n"
                         "state READY -> QUIT\n"
                         "C: QUIT\n"
                         "S: 221 bye\n"
                         "state QUIT -> CLOSED\n"
                         "closed: error 0 \"bye\"\n";
    assert_string_equal(text(&logs[1]), expect);
    /* without the callback: the same lines less the states */
    email_buf_t plain;
    email__buf_init(&plain);
    for (const char *p = expect; *p;) {
        const char *nl = strchr(p, '\n') + 1;
        if (strncmp(p, "state ", 6) != 0)
            assert_int_equal(email__buf_append(&plain, p, (size_t)(nl - p)), 0);
        p = nl;
    }
    assert_string_equal(text(&logs[0]), text(&plain));
    email__buf_free(&plain);
    email__buf_free(&logs[0]);
    email__buf_free(&logs[1]);
}

/* ------------------------------------------------------------------------------------------- */
/* lib/ring.h                                                                                   */

typedef struct item {
    uint64_t a;
    int b;
} item_t;

/* Pushes and drops across the wrap and through two growths: always FIFO order, and the
 * memory only grows when full (the first push allocates first_cap elements). */
static void test_ring_order(void **state)
{
    (void)state;
    email_ring_t r = {0};
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 200; round++) {
        int pushes = 1 + round % 7, drops = round % 5;
        for (int i = 0; i < pushes; i++) {
            item_t *it = email_ring_push(&r, sizeof *it, 4);
            assert_non_null(it);
            *it = (item_t){next_in, (int)(next_in * 3)};
            next_in++;
        }
        for (int i = 0; i < drops && r.len; i++) {
            item_t *it = email_ring_at(&r, sizeof *it, 0);
            assert_int_equal(it->a, next_out);
            assert_int_equal(it->b, (int)(next_out * 3));
            email_ring_drop(&r);
            next_out++;
        }
        for (size_t i = 0; i < r.len; i++)
            assert_int_equal(((item_t *)email_ring_at(&r, sizeof(item_t), i))->a, next_out + i);
        assert_true(r.len <= r.cap);
    }
    assert_int_equal(r.len, next_in - next_out);
    size_t cap = r.cap;
    assert_true(cap >= 4 && (cap & (cap - 1)) == 0); /* 4, doubled */
    email_ring_free(&r);
    assert_null(r.v);
    assert_int_equal(r.len + r.cap + r.head, 0);
}

/* Growing a ring whose elements wrap past the end keeps their order. */
static void test_ring_grow_wrapped(void **state)
{
    (void)state;
    email_ring_t r = {0};
    for (int i = 0; i < 4; i++)
        *(int *)email_ring_push(&r, sizeof(int), 4) = i;
    email_ring_drop(&r);
    email_ring_drop(&r);
    *(int *)email_ring_push(&r, sizeof(int), 4) = 4;
    *(int *)email_ring_push(&r, sizeof(int), 4) = 5; /* full, head at 2 */
    assert_int_equal(r.cap, 4);
    *(int *)email_ring_push(&r, sizeof(int), 4) = 6; /* grows */
    assert_int_equal(r.cap, 8);
    assert_int_equal(r.len, 5);
    for (size_t i = 0; i < r.len; i++)
        assert_int_equal(*(int *)email_ring_at(&r, sizeof(int), i), (int)i + 2);
    email_ring_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_wait_for_start),
        cmocka_unit_test(test_reply_before_start),
        cmocka_unit_test(test_abort_before_start),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_start_sets_cleartext_auth),
        cmocka_unit_test(test_start_without_wait),
        cmocka_unit_test(test_state_channel),
        cmocka_unit_test(test_ring_order),
        cmocka_unit_test(test_ring_grow_wrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
