/* The engine driver and the fake server of the protocol tests: see engine_script.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine_script.h"

const char *buf_str(const email_buf_t *b)
{
    return b->data ? b->data : "";
}

char *buf_take(email_buf_t *b, size_t *len)
{
    char *s = email__strndup(b->data ? b->data : "", b->len);
    assert_non_null(s);
    if (len)
        *len = b->len;
    email__buf_free(b);
    return s;
}

uint64_t xorshift64(uint64_t *state)
{
    /* the same sequence on every platform, unlike rand() */
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static ssize_t test_body_read(void *ctx, char *buf, size_t n)
{
    test_body_t *b = ctx;
    assert_true(n > 0);
    if (b->fail_at >= 0 && b->pos >= (size_t)b->fail_at)
        return b->error;
    size_t left = b->len - b->pos;
    if (b->fail_at >= 0 && left > (size_t)b->fail_at - b->pos)
        left = (size_t)b->fail_at - b->pos;
    if (b->max_read && n > b->max_read)
        n = b->max_read;
    if (n > left)
        n = left;
    memcpy(buf, b->data + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

void test_job_init(test_job_t *t, const char *name, const char *from, const char *body, ...)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->body.data = body;
    t->body.len = strlen(body);
    t->body.fail_at = -1;
    va_list ap;
    va_start(ap, body);
    const char *r;
    size_t n = 0;
    while ((r = va_arg(ap, const char *)) != NULL) {
        assert_true(n < TEST_MAX_RCPTS);
        t->rcpts[n++] = r;
    }
    va_end(ap);
    t->job.from = from;
    t->job.rcpts = t->rcpts;
    t->job.nrcpts = n;
    t->job.read = test_body_read;
    t->job.ctx = &t->body;
    t->job.user = t;
}

void test_job_free(test_job_t *t)
{
    email__refusals_free(&t->job.refusals);
}

static const char *outcome_name(enum smtp_job_outcome o)
{
    switch (o) {
    case SMTP_JOB_SENT:
        return "SENT";
    case SMTP_JOB_FAILED:
        return "FAILED";
    case SMTP_JOB_RETRYABLE:
        return "RETRYABLE";
    case SMTP_JOB_UNKNOWN:
        return "UNKNOWN";
    }
    return "?";
}

static void status_words(email_buf_t *b, const email_status_t *st)
{
    assert_int_equal(email__buf_printf(b, "%s %d", email_error_name(st->error), st->status), 0);
    if (st->enhanced_code[0])
        assert_int_equal(email__buf_printf(b, " %s", st->enhanced_code), 0);
}

static void cb_log(void *ud, char kind, const char *text)
{
    test_session_t *s = ud;
    assert_true(kind == 'C' || kind == 'S' || kind == '#');
    assert_non_null(text);
    assert_null(strpbrk(text, "\r\n"));
    assert_int_equal(email__buf_printf(&s->log, "%c: %s\n", kind, text), 0);
}

static void cb_ready(void *ud)
{
    test_session_t *s = ud;
    assert_int_equal(email__buf_puts(&s->events, "ready\n"), 0);
}

static void cb_starttls(void *ud)
{
    test_session_t *s = ud;
    assert_int_equal(email__buf_puts(&s->events, "starttls\n"), 0);
}

static void cb_job_done(void *ud, smtp_job_t *job)
{
    test_session_t *s = ud;
    test_job_t *t = job->user;
    assert_int_equal(++t->ndone, 1);
    const char *outcome = outcome_name(job->outcome);
    assert_int_equal(email__buf_printf(&s->events, "job %s %s ", t->name, outcome), 0);
    status_words(&s->events, &job->status);
    assert_int_equal(email__buf_printf(&s->events, " rejected=%zu\n", job->status.rejected), 0);
    /* what every finished job must say about itself */
    assert_int_equal(job->status.success, job->outcome == SMTP_JOB_SENT);
    assert_int_equal(job->status.recipients, job->nrcpts);
    assert_int_equal(job->status.rejected, job->refusals.n);
    assert_int_equal(job->outcome == SMTP_JOB_SENT, job->status.error == 0);
    if (s->on_job_done)
        s->on_job_done(s, job);
}

static void cb_progress(void *ud, smtp_job_t *job, uint64_t sent, uint64_t total)
{
    (void)ud;
    test_job_t *t = job->user;
    /* never backwards, never past the total, which is the size the caller gave */
    assert_true(t->nprogress == 0 || sent >= t->progress_sent);
    assert_true(sent <= total);
    assert_int_equal(total, job->size);
    t->nprogress++;
    t->progress_sent = sent;
}

static void cb_closed(void *ud, const email_status_t *why)
{
    test_session_t *s = ud;
    s->nclosed++;
    assert_int_equal(s->nclosed, 1); /* closed is reported once */
    s->closed_status = *why;
    assert_int_equal(email__buf_puts(&s->events, "closed "), 0);
    status_words(&s->events, why);
    assert_int_equal(email__buf_putc(&s->events, '\n'), 0);
}

smtp_engine_config_t ts_config(void)
{
    smtp_engine_config_t c;
    memset(&c, 0, sizeof c);
    c.helo_name = "client.example";
    c.starttls = SMTP_TLS_NEVER;
    return c;
}

void ts_init(test_session_t *s, const smtp_engine_config_t *cfg)
{
    memset(s, 0, sizeof *s);
    email__buf_init(&s->events);
    email__buf_init(&s->log);
    email__buf_init(&s->wire);
    email__buf_init(&s->taken);
    smtp_engine_callbacks_t cb = {
        .log = cb_log,
        .ready = cb_ready,
        .starttls = cb_starttls,
        .job_done = cb_job_done,
        .progress = cb_progress,
        .closed = cb_closed,
    };
    s->e = email__smtp_engine_new(cfg, &cb, s);
    assert_non_null(s->e);
}

void ts_free(test_session_t *s)
{
    email__smtp_engine_free(s->e);
    email__buf_free(&s->events);
    email__buf_free(&s->log);
    email__buf_free(&s->wire);
    email__buf_free(&s->taken);
}

void ts_restart(test_session_t *s, const smtp_engine_config_t *cfg)
{
    smtp_engine_config_t def = ts_config();
    ts_free(s);
    ts_init(s, cfg ? cfg : &def);
}

int ts_setup(void **state)
{
    test_session_t *s = malloc(sizeof *s);
    if (!s)
        return -1;
    smtp_engine_config_t cfg = ts_config();
    ts_init(s, &cfg);
    *state = s;
    return 0;
}

int ts_teardown(void **state)
{
    ts_free(*state);
    free(*state);
    return 0;
}

/* One email__smtp_engine_take, appended to s->taken and s->wire, reported written. Returns its
 * size. */
static size_t ts_take_into(test_session_t *s)
{
    const char *data = NULL;
    size_t n = email__smtp_engine_take(s->e, &data);
    assert_non_null(data);
    if (n) {
        assert_int_equal(email__buf_append(&s->taken, data, n), 0);
        assert_int_equal(email__buf_append(&s->wire, data, n), 0);
        if (!s->no_written)
            email__smtp_engine_written(s->e, n);
    }
    return n;
}

const char *ts_take_one(test_session_t *s)
{
    email__buf_reset(&s->taken);
    ts_take_into(s);
    return buf_str(&s->taken);
}

const char *ts_take(test_session_t *s)
{
    email__buf_reset(&s->taken);
    while (ts_take_into(s) > 0)
        ;
    return buf_str(&s->taken);
}

int ts_feedn(test_session_t *s, const char *data, size_t n)
{
    return email__smtp_engine_feed(s->e, data, n);
}

int ts_feed(test_session_t *s, const char *data)
{
    return email__smtp_engine_feed(s->e, data, strlen(data));
}

const char *ts_feed_take(test_session_t *s, const char *data, size_t n, size_t step, int *rc)
{
    email__buf_reset(&s->taken);
    *rc = 0;
    size_t pos = 0;
    do {
        size_t piece = step && step < n - pos ? step : n - pos;
        int r = email__smtp_engine_feed(s->e, data + pos, piece);
        pos += piece;
        if (r && !*rc)
            *rc = r;
        while (ts_take_into(s) > 0)
            ;
    } while (pos < n && !*rc);
    return buf_str(&s->taken);
}

bool ts_log_has(const test_session_t *s, const char *line)
{
    const char *log = buf_str(&s->log);
    size_t n = strlen(line);
    for (const char *p = strstr(log, line); p; p = strstr(p + 1, line))
        if ((p == log || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

int ts_greet(test_session_t *s, const char *ehlo_reply)
{
    assert_int_equal(ts_feed(s, GREETING), 0);
    assert_string_equal(ts_take(s), EHLO_LINE);
    return ts_feed(s, ehlo_reply);
}

void fake_server_init(fake_server_t *f, const char *ehlo)
{
    memset(f, 0, sizeof *f);
    f->ehlo = ehlo;
    email__buf_init(&f->line);
    email__buf_init(&f->msg);
    email__buf_init(&f->replies);
    assert_int_equal(email__buf_puts(&f->replies, GREETING), 0);
}

void fake_server_free(fake_server_t *f)
{
    for (size_t i = 0; i < f->nmessages; i++)
        free(f->messages[i]);
    email__buf_free(&f->line);
    email__buf_free(&f->msg);
    email__buf_free(&f->replies);
}

static void fake_reply(fake_server_t *f, const char *r)
{
    assert_int_equal(email__buf_puts(&f->replies, r), 0);
}

/* The normal answer, or in chaos mode one of the others now and then. */
static const char *fake_pick(fake_server_t *f, const char *normal, const char *const *others)
{
    if (!f->chaos || xorshift64(f->chaos) % 4)
        return normal;
    size_t n = 0;
    while (others[n])
        n++;
    return others[xorshift64(f->chaos) % n];
}

static void fake_store_message(fake_server_t *f)
{
    assert_true(f->nmessages < FAKE_MAX_MESSAGES);
    f->messages[f->nmessages] = buf_take(&f->msg, &f->lengths[f->nmessages]);
    f->nmessages++;
}

/* The answer to an end of data (DATA's "." or BDAT LAST). */
static const char *fake_end_reply(fake_server_t *f)
{
    static const char *const others[] = {
        "554 5.7.1 rejected as spam\r\n", "451 4.3.0 try again later\r\n",
        "421 4.3.2 shutting down\r\n", NULL,
    };
    return fake_pick(f, "250 2.0.0 queued\r\n", others);
}

/* The end of a BDAT chunk. */
static void fake_bdat_done(fake_server_t *f)
{
    if (!f->accepted) {
        email__buf_free(&f->msg);
        fake_reply(f, "554 5.5.1 No valid recipients\r\n");
        return;
    }
    if (!f->bdat_last) {
        static const char *const others[] = {"451 4.3.0 chunk lost\r\n", NULL};
        fake_reply(f, fake_pick(f, "250 2.0.0 chunk received\r\n", others));
        return;
    }
    const char *r = fake_end_reply(f);
    if (r[0] == '2')
        fake_store_message(f);
    else
        email__buf_free(&f->msg);
    fake_reply(f, r);
}

/* One line from the client, without its CRLF. */
static void fake_server_line(fake_server_t *f, const char *l, size_t n)
{
    if (f->in_data) {
        if (n == 1 && l[0] == '.') {
            f->burst++;
            f->in_data = false;
            const char *r = fake_end_reply(f);
            if (r[0] == '2')
                fake_store_message(f);
            else
                email__buf_free(&f->msg);
            fake_reply(f, r);
            return;
        }
        if (n && l[0] == '.')
            l++, n--;
        assert_int_equal(email__buf_append(&f->msg, l, n), 0);
        assert_int_equal(email__buf_puts(&f->msg, "\r\n"), 0);
        return;
    }
    assert_false(f->quit); /* nothing after QUIT */
    f->burst++;
    assert_null(memchr(l, '\r', n)); /* a command never holds a bare CR */
    if (n >= 5 && !strncmp(l, "EHLO ", 5))
        fake_reply(f, f->ehlo);
    else if (n >= 10 && !strncmp(l, "MAIL FROM:", 10)) {
        static const char *const others[] = {
            "553 5.7.1 Sender address rejected\r\n", "451 4.7.1 Try again later\r\n",
            "421 4.4.2 Timeout exceeded\r\n", NULL,
        };
        f->accepted = 0;
        f->mail_ok = false;
        email__buf_free(&f->msg);
        const char *r = fake_pick(f, "250 2.1.0 Ok\r\n", others);
        f->mail_ok = r[0] == '2';
        fake_reply(f, r);
    } else if (n >= 8 && !strncmp(l, "RCPT TO:", 8)) {
        static const char *const others[] = {
            "550 5.1.1 User unknown\r\n", "450 4.2.0 Greylisted\r\n",
            "421 4.4.2 Timeout exceeded\r\n", NULL,
        };
        /* an address holding "refuse" is refused */
        bool refuse = false;
        for (size_t i = 0; i + 6 <= n; i++)
            refuse |= !strncmp(l + i, "refuse", 6);
        const char *r = !f->mail_ok ? "503 5.5.1 Error: need MAIL command\r\n"
                        : refuse    ? "550 5.1.1 User unknown\r\n"
                                    : fake_pick(f, "250 2.1.5 Ok\r\n", others);
        if (r[0] == '2')
            f->accepted++;
        fake_reply(f, r);
    } else if (n == 4 && !strncmp(l, "DATA", 4)) {
        static const char *const others[] = {
            "354 go ahead anyway\r\n", "451 4.3.0 Not now\r\n", "421 4.4.2 Timeout exceeded\r\n",
            NULL,
        };
        const char *r = f->accepted ? fake_pick(f, "354 End data with <CR><LF>.<CR><LF>\r\n",
                                                others)
                                    : fake_pick(f, "554 5.5.1 No valid recipients\r\n", others);
        f->in_data = r[0] == '3';
        fake_reply(f, r);
    } else if (n >= 5 && !strncmp(l, "BDAT ", 5)) {
        char *end = NULL;
        unsigned long long size = strtoull(l + 5, &end, 10);
        assert_true(end > l + 5);
        size_t rest = n - (size_t)(end - l);
        f->bdat_last = rest == 5 && !strncmp(end, " LAST", 5);
        assert_true(rest == 0 || f->bdat_last);
        f->bdat_left = (size_t)size;
        if (size == 0)
            fake_bdat_done(f);
    } else if (n == 4 && !strncmp(l, "RSET", 4))
        fake_reply(f, "250 2.0.0 Ok\r\n");
    else if (n == 4 && !strncmp(l, "QUIT", 4)) {
        f->quit = true;
        fake_reply(f, "221 2.0.0 Bye\r\n");
    } else
        fail_msg("the fake server got an unknown command: %.*s", (int)n, l);
}

/* Bytes from the client (any split). Every line must end with CRLF. */
static void fake_server_receive(fake_server_t *f, const char *data, size_t n)
{
    f->burst = 0;
    for (size_t i = 0; i < n; i++) {
        if (f->bdat_left) {
            /* chunk bytes are taken as they are: no lines, no dot-stuffing */
            size_t k = n - i < f->bdat_left ? n - i : f->bdat_left;
            assert_int_equal(email__buf_append(&f->msg, data + i, k), 0);
            f->bdat_left -= k;
            i += k - 1;
            if (!f->bdat_left)
                fake_bdat_done(f);
            continue;
        }
        char c = data[i];
        assert_int_equal(email__buf_putc(&f->line, c), 0);
        if (c == '\n') {
            /* a bare LF in what the client writes is a line ending bug (SMTP smuggling) */
            assert_true(f->line.len >= 2 && f->line.data[f->line.len - 2] == '\r');
            fake_server_line(f, f->line.data, f->line.len - 2);
            email__buf_reset(&f->line);
        }
    }
    if (f->burst > f->max_burst)
        f->max_burst = f->burst;
}

size_t fake_server_run(fake_server_t *f, test_session_t *s, uint64_t *rng)
{
    size_t rounds = 0;
    while (!email__smtp_engine_is_closed(s->e)) {
        assert_true(++rounds < 100000);
        if (f->chaos && xorshift64(f->chaos) % 50 == 0) {
            email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
            break;
        }
        size_t n = f->replies.len;
        if (n == 0) {
            ts_take(s);
            if (s->taken.len == 0)
                break; /* nobody has anything to say */
            fake_server_receive(f, s->taken.data, s->taken.len);
            continue;
        }
        char *r = buf_take(&f->replies, NULL);
        size_t step = rng ? 1 + xorshift64(rng) % 40 : 0;
        int rc;
        ts_feed_take(s, r, n, step, &rc);
        free(r);
        assert_true(rc == 0 || (f->chaos && rc == EMAIL_ECLOSED));
        if (s->taken.len)
            fake_server_receive(f, s->taken.data, s->taken.len);
    }
    return rounds;
}

char *expected_body(const char *body, size_t n, bool final_crlf)
{
    email_buf_t b;
    email__buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        if (body[i] == '\r' || body[i] == '\n') {
            if (body[i] == '\r' && i + 1 < n && body[i + 1] == '\n')
                i++;
            assert_int_equal(email__buf_puts(&b, "\r\n"), 0);
        } else {
            assert_int_equal(email__buf_putc(&b, body[i]), 0);
        }
    }
    if (final_crlf && b.len && (b.len < 2 || memcmp(b.data + b.len - 2, "\r\n", 2)))
        assert_int_equal(email__buf_puts(&b, "\r\n"), 0);
    return buf_take(&b, NULL);
}
