/*
 * emailsession side of the benchmarks. One measurement per process (bench/run forks us once per
 * case and repetition) so that nothing warm from one case helps the next.
 *
 *   es_bench mime OUT                 write the small benchmark message (the peers send these bytes)
 *   es_bench warm-sync PORT N         named synchronous session, N sends one after another
 *   es_bench warm-async PORT N [C]    asynchronous session, N queued, wait for N callbacks; with
 *                                     C, its pool may open C connections (email_set_max_connections)
 *   es_bench warm-async-outbox PORT N DIR [THREADS]   the same with the durable outbox DIR,
 *                                     queued by THREADS threads at once (default 1)
 *   es_bench concurrent PORT N        N asynchronous sessions at once, one message each
 *   es_bench probe-attach FILE        prints "file" or "prebuilt": can the composer attach FILE?
 *   es_bench big-file PORT FILE       one message with FILE attached (streamed by the composer)
 *   es_bench big-mime PORT FILE       FILE is a prebuilt message, sent with email_send_mime
 */
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "emailsession.h"

/* Bounds so that a hung session fails the case instead of the whole run. */
#define WAIT_SECONDS 90
#define SESSION_TIMEOUT 30

static const char small_body[] =
    "Hello,\n"
    "\n"
    "This is a small plain-text message sent by the emailsession benchmark.\n"
    "It is about as long as a password-reset notice or an alert from a daemon:\n"
    "a few lines, ASCII only, one recipient.\n"
    "\n"
    "-- \n"
    "bench\n";

static email_message_t *small_message(void)
{
    email_message_t *m = email_message_new();
    if (!m)
        bench_die("email_message_new: out of memory");
    int rc;
    if ((rc = email_message_set_from(m, "Bench <" BENCH_FROM ">")) ||
        (rc = email_message_add_to(m, BENCH_RCPT)) ||
        (rc = email_message_set_subject(m, "emailsession benchmark")) ||
        (rc = email_message_set_text_body(m, small_body)))
        bench_die("building the message: %s (%s)", email_error_name(rc), email_strerror(rc));
    return m;
}

/* ---- waiting for asynchronous outcomes ---- */

typedef struct {
    uint64_t *ids;  /* sorted ids we queued, to catch duplicate or foreign callbacks */
    bool *seen;
    size_t nids;
    size_t done, failed, duplicate, foreign;
    char first_error[600];
} tally_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void tally_init(tally_t *t, email_message_t **msgs, size_t n)
{
    memset(t, 0, sizeof *t);
    t->ids = malloc((n ? n : 1) * sizeof *t->ids);
    t->seen = calloc(n ? n : 1, sizeof *t->seen);
    if (!t->ids || !t->seen)
        bench_die("out of memory");
    for (size_t i = 0; i < n; i++)
        t->ids[i] = email_message_id(msgs[i]);
    qsort(t->ids, n, sizeof *t->ids, cmp_u64);
    t->nids = n;
}

static void on_done(uint64_t id, const email_status_t *st, void *data)
{
    tally_t *t = data;
    t->done++;
    uint64_t *p = bsearch(&id, t->ids, t->nids, sizeof id, cmp_u64);
    if (!p)
        t->foreign++;
    else if (t->seen[p - t->ids])
        t->duplicate++;
    else
        t->seen[p - t->ids] = true;
    if (!st->success) {
        if (!t->failed)
            snprintf(t->first_error, sizeof t->first_error, "message %llu: %s %d %s (%s)",
                     (unsigned long long)id, email_error_name(st->error), st->status,
                     st->status_text, st->enhanced_code);
        t->failed++;
    }
}

/* Runs callbacks through the dispatch fd, as a GUI main loop would, until `target` arrived. */
static void wait_for(tally_t *t, size_t target, const char *what)
{
    int fd = email_dispatch_fd();
    if (fd < 0)
        bench_die("email_dispatch_fd: %d", fd);
    double deadline = bench_now() + WAIT_SECONDS;
    while (t->done < target) {
        double left = deadline - bench_now();
        if (left <= 0)
            bench_die("%s: timed out after %d s with %zu of %zu callbacks (%zu failed) %s", what,
                      WAIT_SECONDS, t->done, target, t->failed, t->first_error);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = left > 1 ? 1000 : (int)(left * 1000) + 1;
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
            bench_die("poll: %s", strerror(errno));
        email_dispatch();
    }
    if (t->done > target || t->duplicate || t->foreign)
        bench_die("%s: %zu callbacks for %zu messages (%zu duplicate, %zu foreign ids)", what,
                  t->done, target, t->duplicate, t->foreign);
}

static void start_session(const char *name, int port, int mode)
{
    if (!email_start_smtp_session(name, NULL, BENCH_HOST, port, mode, EMAIL_OPTION_DEFAULT))
        bench_die("email_start_smtp_session(%s): %s: %s", name,
                  email_error_name(email_last_error()), email_error_info());
}

static email_message_t **make_messages(size_t n)
{
    email_message_t **m = malloc(n * sizeof *m);
    if (!m)
        bench_die("out of memory");
    for (size_t i = 0; i < n; i++)
        m[i] = small_message(); /* one object per send: each gets its own id */
    return m;
}

static void free_messages(email_message_t **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        email_message_free(m[i]);
    free(m);
}

/* ---- cases ---- */

static void case_mime(const char *out)
{
    email_message_t *m = small_message();
    char *mime;
    size_t len;
    int rc = email_message_to_mime(m, &mime, &len);
    if (rc)
        bench_die("email_message_to_mime: %s", email_error_name(rc));
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(mime, 1, len, f) != len || fclose(f) != 0)
        bench_die("write %s: %s", out, strerror(errno));
    free(mime);
    email_message_free(m);
    printf("RESULT bytes=%zu version=%s\n", len, email_version());
}

static void case_warm_sync(int port, size_t n)
{
    email_set_timeout(SESSION_TIMEOUT);
    email_message_t **msgs = make_messages(n + 1);
    start_session("bench", port, EMAIL_SYNCHRONOUS);
    /* the first message warms the connection (and the composer); it is not timed */
    if (!email_send_message("bench", msgs[0]))
        bench_die("warm-up send: %s", email_error_info());
    double t0 = bench_now();
    for (size_t i = 1; i <= n; i++)
        if (!email_send_message("bench", msgs[i]))
            bench_die("send %zu of %zu: %s: %s", i, n, email_error_name(email_last_error()),
                      email_error_info());
    double secs = bench_now() - t0;
    if (!email_close_session("bench"))
        bench_die("email_close_session: %s", email_error_info());
    email_shutdown();
    free_messages(msgs, n + 1);
    printf("RESULT msgs=%zu secs=%.6f rate=%.2f\n", n, secs, (double)n / secs);
}

/* A share of the messages queued by one of several threads. */
typedef struct queuer {
    pthread_t thread;
    email_message_t **msgs;
    size_t from, to;
} queuer_t;

static void *queue_share(void *arg)
{
    queuer_t *q = arg;
    for (size_t i = q->from; i < q->to; i++)
        if (!email_send_message("bench", q->msgs[i]))
            bench_die("queue %zu: %s: %s", i, email_error_name(email_last_error()),
                      email_error_info());
    return NULL;
}

/* Messages 1..n queued by `threads` threads at once. */
static void queue_all(email_message_t **msgs, size_t n, int threads)
{
    queuer_t q[16];
    for (int k = 0; k < threads; k++) {
        q[k] = (queuer_t){.msgs = msgs, .from = 1 + n * (size_t)k / (size_t)threads,
                          .to = 1 + n * (size_t)(k + 1) / (size_t)threads};
        if (threads == 1)
            queue_share(&q[k]);
        else if (pthread_create(&q[k].thread, NULL, queue_share, &q[k]) != 0)
            bench_die("pthread_create failed");
    }
    for (int k = 0; threads > 1 && k < threads; k++)
        pthread_join(q[k].thread, NULL);
}

/* outbox: NULL, or the durable outbox every message is written to first (issue #13), with
 * `threads` threads queueing at once (1 to 16) */
static void case_warm_async(int port, size_t n, const char *outbox, int threads)
{
    email_set_timeout(SESSION_TIMEOUT);
    if (outbox && email_set_outbox(outbox) != 0) /* before the messages: ids leased above it */
        bench_die("email_set_outbox: %s", email_error_info());
    email_message_t **msgs = make_messages(n + 1);
    tally_t t;
    tally_init(&t, msgs, n + 1);
    start_session("bench", port, EMAIL_ASYNCHRONOUS);
    if (email_session_set_callback("bench", on_done, &t))
        bench_die("email_session_set_callback: %s", email_error_info());
    if (!email_send_message("bench", msgs[0]))
        bench_die("warm-up queue: %s", email_error_info());
    wait_for(&t, 1, "warm-up");
    if (t.failed)
        bench_die("warm-up: %s", t.first_error);
    double t0 = bench_now();
    queue_all(msgs, n, threads);
    double queued = bench_now() - t0;
    wait_for(&t, n + 1, "async sends");
    double secs = bench_now() - t0;
    if (t.failed)
        bench_die("%zu of %zu messages failed; first: %s", t.failed, n, t.first_error);
    if (!email_close_session("bench"))
        bench_die("email_close_session: %s", email_error_info());
    email_shutdown();
    if (outbox && (email_outbox_list(NULL, NULL, NULL) != 0 || email_set_outbox(NULL) != 0))
        bench_die("the outbox is not empty after every message was sent");
    free_messages(msgs, n + 1);
    printf("RESULT msgs=%zu secs=%.6f rate=%.2f queue_secs=%.6f\n", n, secs, (double)n / secs,
           queued);
}

static void case_concurrent(int port, size_t n)
{
    bench_raise_nofile((long)n + 64);
    email_set_timeout(SESSION_TIMEOUT);
    /*
     * One session first, so that the library's one-time costs (its thread, loop, GnuTLS global
     * state) are in the baseline and the delta is what each extra session costs.
     */
    email_message_t **warm = make_messages(1);
    tally_t tw;
    tally_init(&tw, warm, 1);
    start_session("warm", port, EMAIL_ASYNCHRONOUS);
    email_session_set_callback("warm", on_done, &tw);
    if (!email_send_message("warm", warm[0]))
        bench_die("warm-up queue: %s", email_error_info());
    wait_for(&tw, 1, "warm-up");
    if (tw.failed)
        bench_die("warm-up: %s", tw.first_error);
    email_close_session("warm");
    free_messages(warm, 1);

    email_message_t **msgs = make_messages(n);
    char(*names)[24] = malloc(n * sizeof *names);
    if (!names)
        bench_die("out of memory");
    tally_t t;
    tally_init(&t, msgs, n);
    long rss0 = bench_vmrss_kb();
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "c%zu", i);
        /* the non-blocking start: the N sessions connect at once (email_start_smtp_session
         * returns only once its session is open, so N of them would connect one by one) */
        if (!email_start_smtp_session_async(names[i], NULL, BENCH_HOST, port, EMAIL_ASYNCHRONOUS,
                                            EMAIL_OPTION_DEFAULT, NULL, NULL))
            bench_die("email_start_smtp_session_async(%s): %s", names[i], email_error_info());
        if (email_session_set_callback(names[i], on_done, &t))
            bench_die("email_session_set_callback(%s): %s", names[i], email_error_info());
        if (!email_send_message(names[i], msgs[i]))
            bench_die("queue on %s: %s: %s", names[i], email_error_name(email_last_error()),
                      email_error_info());
    }
    double started = bench_now() - t0;
    wait_for(&t, n, "concurrent sessions");
    double secs = bench_now() - t0;
    /* every session is connected and idle (keep-alive) here: this is the memory they hold */
    long rss1 = bench_vmrss_kb();
    if (t.failed)
        bench_die("%zu of %zu sessions failed; first: %s", t.failed, n, t.first_error);
    double c0 = bench_now();
    for (size_t i = 0; i < n; i++)
        if (!email_close_session(names[i]))
            bench_die("email_close_session(%s): %s", names[i], email_error_info());
    double close_secs = bench_now() - c0;
    email_shutdown();
    free_messages(msgs, n);
    free(names);
    printf("RESULT sessions=%zu secs=%.6f start_secs=%.6f close_secs=%.6f rss0_kb=%ld "
           "rss1_kb=%ld kb_per_session=%.2f\n",
           n, secs, started, close_secs, rss0, rss1, (double)(rss1 - rss0) / (double)n);
}

static void case_probe_attach(const char *file)
{
    email_message_t *m = small_message();
    int rc = email_message_add_attachment_file(m, file, "big.bin", "application/octet-stream");
    email_message_free(m);
    if (rc == EMAIL_ENOTSUP) {
        printf("RESULT variant=prebuilt\n");
        return;
    }
    if (rc)
        bench_die("email_message_add_attachment_file: %s (%s)", email_error_name(rc),
                  email_strerror(rc));
    printf("RESULT variant=file\n");
}

static void case_big_file(int port, const char *file)
{
    email_set_timeout(60);
    long size = bench_file_size(file);
    start_session("bench", port, EMAIL_SYNCHRONOUS);
    double t0 = bench_now();
    email_message_t *m = small_message();
    int rc = email_message_add_attachment_file(m, file, "big.bin", "application/octet-stream");
    if (rc)
        bench_die("email_message_add_attachment_file: %s", email_error_name(rc));
    if (!email_send_message("bench", m))
        bench_die("send: %s: %s", email_error_name(email_last_error()), email_error_info());
    double secs = bench_now() - t0;
    email_message_free(m);
    email_close_session("bench");
    email_shutdown();
    printf("RESULT bytes=%ld secs=%.6f mbps=%.2f maxrss_kb=%ld\n", size, secs,
           (double)size / 1e6 / secs, bench_maxrss_kb());
}

static void case_big_mime(int port, const char *file)
{
    email_set_timeout(60);
    size_t len;
    char *buf = bench_slurp(file, &len);
    start_session("bench", port, EMAIL_SYNCHRONOUS);
    const char *rcpts[] = {BENCH_RCPT, NULL};
    double t0 = bench_now();
    if (!email_send_mime("bench", BENCH_FROM, rcpts, buf, len))
        bench_die("email_send_mime: %s: %s", email_error_name(email_last_error()),
                  email_error_info());
    double secs = bench_now() - t0;
    free(buf);
    email_close_session("bench");
    email_shutdown();
    printf("RESULT bytes=%zu secs=%.6f mbps=%.2f maxrss_kb=%ld\n", len, secs,
           (double)len / 1e6 / secs, bench_maxrss_kb());
}

int main(int argc, char **argv)
{
    if (argc < 3)
        bench_die("usage: es_bench mime OUT | warm-sync|warm-async|concurrent PORT N | "
                  "warm-async PORT N C | warm-async-outbox PORT N DIR [THREADS] | "
                  "probe-attach FILE | big-file|big-mime PORT FILE");
    const char *c = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(c, "mime"))
        case_mime(argv[2]);
    else if (!strcmp(c, "probe-attach"))
        case_probe_attach(argv[2]);
    else if (argc == 5 && !strcmp(c, "warm-async")) {
        if (email_set_max_connections((int)bench_atol(argv[4], "C")))
            bench_die("email_set_max_connections: %s", email_error_info());
        case_warm_async((int)bench_atol(argv[2], "port"), (size_t)bench_atol(argv[3], "N"), NULL,
                        1);
    } else if (argc == 4) {
        int port = (int)bench_atol(argv[2], "port");
        if (!strcmp(c, "warm-sync"))
            case_warm_sync(port, (size_t)bench_atol(argv[3], "N"));
        else if (!strcmp(c, "warm-async"))
            case_warm_async(port, (size_t)bench_atol(argv[3], "N"), NULL, 1);
        else if (!strcmp(c, "concurrent"))
            case_concurrent(port, (size_t)bench_atol(argv[3], "N"));
        else if (!strcmp(c, "big-file"))
            case_big_file(port, argv[3]);
        else if (!strcmp(c, "big-mime"))
            case_big_mime(port, argv[3]);
        else
            bench_die("unknown case %s", c);
    } else if ((argc == 5 || argc == 6) && !strcmp(c, "warm-async-outbox")) {
        long threads = argc == 6 ? bench_atol(argv[5], "THREADS") : 1;
        if (threads < 1 || threads > 16)
            bench_die("THREADS: 1 to 16");
        case_warm_async((int)bench_atol(argv[2], "port"), (size_t)bench_atol(argv[3], "N"),
                        argv[4], (int)threads);
    } else
        bench_die("unknown case or wrong arguments: %s", c);
    return 0;
}
