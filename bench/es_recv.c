/*
 * emailsession side of the receiving benchmarks (bench/run-receive), one measurement per process.
 * The mailbox is alice's (password "pencil") on tests/servers/dovecot_mail.py.
 *
 *   es_recv make-big FILE MIB     writes the large message: MIB MiB of xorshift32 bytes (checked
 *                                 again by big) attached by the composer, base64, CRLF
 *   es_recv fetch PORT N          email_pop3_get_mail of messages 1..N, one call after another on
 *                                 one transporter (each call: LIST, UIDL and RETR pipelined, the
 *                                 body parsed as it arrives); plain POP3 on loopback
 *   es_recv headers PORT N CA     a named session (email_start_pop3_session, STLS required: the
 *                                 named sessions have no plain-text option) and N calls of
 *                                 email_read_next(EMAIL_READ_HEADERS) (TOP n 0); the first
 *                                 before the clock, so the rate is of messages 2..N
 *   (fetch, fetch-async: message 1 is read once before the clock; see open_box)
 *   es_recv big PORT              email_pop3_get_mail of message 1 (one large attachment, which
 *                                 the parser spills to a temporary file), peak RSS before the
 *                                 attachment's pages are read; then its bytes are checked
 *   es_recv big-raw PORT          email_pop3_get_mail_raw of message 1 (held in memory by
 *                                 contract: its RSS is the message's size and more)
 *
 *   es_recv imap-fetch PORT N     IMAP (PORT: dovecot's IMAP port, plain on loopback): one
 *                                 email_imap_get_mails for UIDs 1..N (options 0: the library sends
 *                                 UID FETCH (UID RFC822.SIZE BODY.PEEK[]) and UID STORE +FLAGS
 *                                 (\Seen) pipelined, the UIDs in a few chunked commands)
 *   es_recv imap-fetch-each PORT N  email_imap_get_mail(uid) for uid = 1..N, one call after another
 *   es_recv imap-fetch-peek PORT N, imap-fetch-each-peek PORT N   the same with EMAIL_READ_PEEK
 *                                 (no UID STORE): diagnostics, not in the runner's table
 *   es_recv imap-headers PORT N   one email_imap_get_mails(EMAIL_READ_HEADERS|EMAIL_READ_PEEK)
 *                                 of UIDs 1..N (BODY.PEEK[HEADER])
 *   es_recv imap-headers-each PORT N  email_imap_get_mail(uid, EMAIL_READ_HEADERS|EMAIL_READ_PEEK)
 *                                 one call after another
 *   es_recv imap-big PORT         email_imap_get_mail(1, EMAIL_READ_PEEK) of the large message:
 *                                 RSS and the check as big
 *   es_recv imap-fetch-async PORT N  UIDs 1..N with one email_imap_get_mails_async (each
 *                                 message to the callback as soon as it is parsed, in order;
 *                                 marked \Seen as imap-fetch does), the callbacks run by
 *                                 email_dispatch()
 *   For every IMAP mode the transporter logs in and selects INBOX before the clock starts.
 *
 *   es_recv fetch-async PORT N    the same N messages queued at once with email_pop3_get_mail_async
 *                                 (pipelined by the library), the callbacks run by
 *                                 email_dispatch(); only when the library has the asynchronous
 *                                 POP3 calls (bench.mk defines ES_POP3_ASYNC when the header
 *                                 declares email_pop3_get_mail_async), else it says "not yet"
 * Prints one "RESULT key=value ..." line (common.h).
 */
#include "common.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "emailsession.h"

#define TIMEOUT 60

/* warm: read message 1 before the clock too (see open_imap: dovecot's first read of a session
 * costs ~1 s on the 10,000-message box, for POP3 as for IMAP); not for the one large message */
static email_pop3_transporter_t *open_box(int port, bool warm)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = BENCH_HOST;
    srv.port = port;
    srv.security = EMAIL_SECURITY_NONE; /* loopback: the password may go in clear */
    srv.user = "alice";
    srv.password = "pencil";
    srv.connection_timeout = TIMEOUT;
    srv.send_timeout = TIMEOUT;
    email_pop3_transporter_t *t = email_pop3_transporter_new(&srv);
    if (!t)
        bench_die("email_pop3_transporter_new: %s", email_error_info());
    /* logged in before the clock starts, as every peer is */
    if (email_pop3_check_connection(t, NULL))
        bench_die("email_pop3_check_connection: %s", email_error_info());
    email_message_t *first = NULL;
    if (warm && email_pop3_get_mail(t, 1, &first, NULL))
        bench_die("a first RETR: %s", email_error_info());
    email_message_free(first);
    return t;
}

/* "generated message N" (tests/servers/dovecot_mail.py --generate) */
static void check_subject(const email_message_t *m, long n)
{
    char want[64];
    snprintf(want, sizeof want, "generated message %ld", n);
    const char *s = email_message_get_subject(m);
    if (!s || strcmp(s, want))
        bench_die("message %ld: subject \"%s\", expected \"%s\"", n, s ? s : "(none)", want);
}

static int do_fetch(int port, long n)
{
    email_pop3_transporter_t *t = open_box(port, true);
    uint64_t bytes = 0;
    double t0 = bench_now();
    for (long i = 1; i <= n; i++) {
        email_message_t *m = NULL;
        if (email_pop3_get_mail(t, (unsigned)i, &m, NULL))
            bench_die("email_pop3_get_mail(%ld): %s", i, email_error_info());
        check_subject(m, i);
        const char *body = email_message_get_text_body(m);
        bytes += body ? strlen(body) : 0;
        email_message_free(m);
    }
    double secs = bench_now() - t0;
    email_pop3_transporter_free(t);
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld body_bytes=%llu maxrss_kb=%ld\n", n / secs, secs,
           n, (unsigned long long)bytes, bench_maxrss_kb());
    return 0;
}

typedef struct {
    long done, failed, wrong;
    char first_error[600]; /* "message N: " and a status_text */
} async_tally_t;

/* One outcome for message `number`: counted, checked against its subject. */
static void tally_mail(async_tally_t *t, long number, email_message_t *m,
                       const email_status_t *status)
{
    t->done++;
    char want[64];
    snprintf(want, sizeof want, "generated message %ld", number);
    const char *subject = m ? email_message_get_subject(m) : NULL;
    if (!m || !status->success) {
        if (!t->failed++)
            snprintf(t->first_error, sizeof t->first_error, "message %ld: %s", number,
                     status->status_text);
    } else if (!subject || strcmp(subject, want)) {
        t->wrong++;
    }
    email_message_free(m);
}

/* email_dispatch() until n outcomes came (or the timeout) */
static void dispatch_until(async_tally_t *tally, long n, double t0)
{
    int fd = email_dispatch_fd();
    if (fd < 0)
        bench_die("email_dispatch_fd: %d", fd);
    double deadline = t0 + TIMEOUT;
    while (tally->done < n) {
        if (bench_now() > deadline)
            bench_die("timed out with %ld of %ld callbacks", tally->done, n);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            bench_die("poll: %s", strerror(errno));
        email_dispatch();
    }
    if (tally->failed || tally->wrong)
        bench_die("%ld failed, %ld wrong subjects: %s", tally->failed, tally->wrong,
                  tally->first_error);
}

#ifdef ES_POP3_ASYNC

/* Each message checked against the number it was asked for (user_data carries it). */
typedef struct {
    async_tally_t *tally;
    long number;
} async_req_t;

static void on_mail(email_message_t *m, const email_status_t *status, void *user_data)
{
    async_req_t *r = user_data;
    tally_mail(r->tally, r->number, m, status);
}

static int do_fetch_async(int port, long n)
{
    email_pop3_transporter_t *t = open_box(port, true);
    async_tally_t tally = {0};
    async_req_t *reqs = calloc((size_t)n, sizeof *reqs);
    if (!reqs)
        bench_die("out of memory");
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        reqs[i] = (async_req_t){&tally, i + 1};
        if (email_pop3_get_mail_async(t, (unsigned)(i + 1), on_mail, &reqs[i]))
            bench_die("email_pop3_get_mail_async(%ld): %s", i + 1, email_error_info());
    }
    dispatch_until(&tally, n, t0);
    double secs = bench_now() - t0;
    email_pop3_transporter_free(t);
    free(reqs);
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld maxrss_kb=%ld\n", n / secs, secs, n,
           bench_maxrss_kb());
    return 0;
}
#else
static int do_fetch_async(int port, long n)
{
    (void)port, (void)n;
    bench_die("not yet: this library has no email_pop3_get_mail_async (branch pop3async)");
}
#endif

static int do_headers(int port, long n, const char *ca)
{
    if (email_set_ca_file(ca))
        bench_die("email_set_ca_file: %s", email_error_info());
    email_set_timeout(TIMEOUT);
    if (!email_start_pop3_session("alice", "pencil", BENCH_HOST, port, EMAIL_OPTION_STARTTLS))
        bench_die("email_start_pop3_session: %s", email_error_info());
    if (n < 2)
        bench_die("headers: N must be 2 or more (message 1 is read before the clock)");
    /* message 1 before the clock (dovecot's first read of a session: see open_box); a named
     * session reads in order, so the clock covers messages 2..N */
    double t0 = 0;
    for (long i = 1; i <= n; i++) {
        email_message_t *m = NULL;
        if (!email_read_next("alice", EMAIL_READ_HEADERS, &m) || !m)
            bench_die("email_read_next(%ld): %s", i, m ? "" : email_error_info());
        check_subject(m, i);
        email_message_free(m);
        if (i == 1)
            t0 = bench_now();
    }
    double secs = bench_now() - t0;
    email_close_session("alice");
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld maxrss_kb=%ld\n", (n - 1) / secs, secs, n - 1,
           bench_maxrss_kb());
    return 0;
}

/* ---- IMAP ---- */

static email_imap_transporter_t *open_imap(int port)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = BENCH_HOST;
    srv.port = port;
    srv.security = EMAIL_SECURITY_NONE; /* loopback: LOGIN may go in clear */
    srv.user = "alice";
    srv.password = "pencil";
    srv.connection_timeout = TIMEOUT;
    srv.send_timeout = TIMEOUT;
    email_imap_transporter_t *t = email_imap_transporter_new(&srv);
    if (!t)
        bench_die("email_imap_transporter_new: %s", email_error_info());
    /* logged in, INBOX selected and a first FETCH done before the clock starts, as every peer
     * does: dovecot reads its maildir's uidlist at a session's first FETCH (~2.7 s with the
     * benchmark's 10,000 messages), a fixed cost that is the server's, not the client's */
    email_imap_box_info_t info;
    email_message_t *first = NULL;
    if (email_imap_check_connection(t, NULL) ||
        email_imap_select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE, &info, NULL) ||
        email_imap_get_mail(t, 1, EMAIL_READ_HEADERS | EMAIL_READ_PEEK, &first, NULL))
        bench_die("logging in, selecting INBOX, a first FETCH: %s", email_error_info());
    email_message_free(first);
    return t;
}

static uint64_t body_len(const email_message_t *m)
{
    const char *body = email_message_get_text_body(m);
    return body ? strlen(body) : 0;
}

/* UIDs 1..n: dovecot_mail.py seeds a fresh box, so UID i is generated message i. */
static int do_imap_fetch(int port, long n, int options, bool each)
{
    email_imap_transporter_t *t = open_imap(port);
    uint32_t *uids = malloc((size_t)n * sizeof *uids);
    email_message_t **out = calloc((size_t)n, sizeof *out);
    if (!uids || !out)
        bench_die("out of memory");
    for (long i = 0; i < n; i++)
        uids[i] = (uint32_t)(i + 1);
    uint64_t bytes = 0;
    double t0 = bench_now();
    if (!each && email_imap_get_mails(t, uids, (size_t)n, options, out, NULL))
        bench_die("email_imap_get_mails(%ld UIDs): %s", n, email_error_info());
    for (long i = 0; i < n; i++) {
        if (each && email_imap_get_mail(t, uids[i], options, &out[i], NULL))
            bench_die("email_imap_get_mail(%u): %s", uids[i], email_error_info());
        if (!out[i])
            bench_die("UID %u: no message", uids[i]);
        check_subject(out[i], i + 1);
        bytes += body_len(out[i]);
        if (each) { /* a loop frees as it goes */
            email_message_free(out[i]);
            out[i] = NULL;
        }
    }
    double secs = bench_now() - t0;
    for (long i = 0; i < n; i++)
        email_message_free(out[i]);
    email_imap_transporter_free(t);
    free(out);
    free(uids);
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld body_bytes=%llu maxrss_kb=%ld\n", n / secs, secs,
           n, (unsigned long long)bytes, bench_maxrss_kb());
    return 0;
}

/* get_mails_async gives the messages in the order of the UIDs: the k-th outcome is UID k */
static void on_imap_mail(email_message_t *m, const email_status_t *status, void *user_data)
{
    async_tally_t *t = user_data;
    tally_mail(t, t->done + 1, m, status);
}

static int do_imap_fetch_async(int port, long n)
{
    email_imap_transporter_t *t = open_imap(port);
    uint32_t *uids = malloc((size_t)n * sizeof *uids);
    if (!uids)
        bench_die("out of memory");
    for (long i = 0; i < n; i++)
        uids[i] = (uint32_t)(i + 1);
    async_tally_t tally = {0};
    double t0 = bench_now();
    if (email_imap_get_mails_async(t, uids, (size_t)n, 0, on_imap_mail, &tally))
        bench_die("email_imap_get_mails_async(%ld UIDs): %s", n, email_error_info());
    dispatch_until(&tally, n, t0);
    double secs = bench_now() - t0;
    email_imap_transporter_free(t);
    free(uids);
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld maxrss_kb=%ld\n", n / secs, secs, n,
           bench_maxrss_kb());
    return 0;
}

/* The attachment's bytes, as the runner wrote them: xorshift32 from a fixed seed. */
static void check_attachment(const unsigned char *d, size_t len)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        if (d[i] != (unsigned char)x)
            bench_die("the attachment differs at byte %zu", i);
    }
}

static unsigned char *attachment_bytes(size_t len)
{
    unsigned char *d = malloc(len);
    if (!d)
        bench_die("out of memory");
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        d[i] = (unsigned char)x;
    }
    return d;
}

static int do_make_big(const char *path, long mib)
{
    size_t len = (size_t)mib << 20;
    unsigned char *d = attachment_bytes(len);
    email_message_t *m = email_message_new();
    char *mime;
    size_t n;
    if (!m || email_message_set_from(m, "Bench <" BENCH_FROM ">") ||
        email_message_add_to(m, "alice@example.test") ||
        email_message_set_subject(m, "large message") ||
        email_message_set_text_body(m, "The attachment follows.\r\n") ||
        email_message_add_attachment_data(m, d, len, "big.bin", "application/octet-stream") ||
        email_message_to_mime(m, &mime, &n))
        bench_die("composing the large message: %s", email_error_info());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(mime, 1, n, f) != n || fclose(f))
        bench_die("writing %s: %s", path, strerror(errno));
    printf("RESULT bytes=%zu attachment=%zu\n", n, len);
    free(mime);
    free(d);
    email_message_free(m);
    return 0;
}

/* imap: email_imap_get_mail of UID 1 instead of POP3 (raw is then unused) */
static int do_big(int port, bool raw, bool imap)
{
    email_pop3_transporter_t *t = imap ? NULL : open_box(port, false);
    email_imap_transporter_t *it = imap ? open_imap(port) : NULL;
    email_message_t *m = NULL;
    char *data = NULL;
    size_t len = 0;
    double t0 = bench_now(), c0 = bench_cpu();
    int rc = imap  ? email_imap_get_mail(it, 1, EMAIL_READ_PEEK, &m, NULL)
             : raw ? email_pop3_get_mail_raw(t, 1, &data, &len, NULL)
                   : email_pop3_get_mail(t, 1, &m, NULL);
    double secs = bench_now() - t0, cpu = bench_cpu() - c0;
    long rss = bench_maxrss_kb();
    if (rc)
        bench_die("email_%s_get_mail%s: %s", imap ? "imap" : "pop3", raw ? "_raw" : "",
                  email_error_info());
    if (!raw) {
        const void *part;
        if (email_message_get_attachment(m, 0, NULL, NULL, &part, &len))
            bench_die("no attachment: %s", email_error_info());
        check_attachment(part, len);
    }
    printf("RESULT secs=%.4f cpu_secs=%.4f bytes=%zu maxrss_kb=%ld maxrss_after_check_kb=%ld\n",
           secs, cpu, len, rss, bench_maxrss_kb());
    email_message_free(m);
    free(data);
    email_pop3_transporter_free(t);
    email_imap_transporter_free(it);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int port = argc > 2 && strcmp(mode, "make-big") ? (int)bench_atol(argv[2], "PORT") : 0;
    if (!strcmp(mode, "make-big") && argc == 4)
        return do_make_big(argv[2], bench_atol(argv[3], "MIB"));
    if (!strcmp(mode, "fetch") && argc == 4)
        return do_fetch(port, bench_atol(argv[3], "N"));
    if (!strcmp(mode, "fetch-async") && argc == 4)
        return do_fetch_async(port, bench_atol(argv[3], "N"));
    if (!strcmp(mode, "headers") && argc == 5)
        return do_headers(port, bench_atol(argv[3], "N"), argv[4]);
    if (!strcmp(mode, "big") && argc == 3)
        return do_big(port, false, false);
    if (!strcmp(mode, "big-raw") && argc == 3)
        return do_big(port, true, false);
    const int hdr = EMAIL_READ_HEADERS | EMAIL_READ_PEEK;
    if (!strcmp(mode, "imap-fetch") && argc == 4)
        return do_imap_fetch(port, bench_atol(argv[3], "N"), 0, false);
    if (!strcmp(mode, "imap-fetch-peek") && argc == 4) /* diagnostic: no UID STORE */
        return do_imap_fetch(port, bench_atol(argv[3], "N"), EMAIL_READ_PEEK, false);
    if (!strcmp(mode, "imap-fetch-each-peek") && argc == 4)
        return do_imap_fetch(port, bench_atol(argv[3], "N"), EMAIL_READ_PEEK, true);
    if (!strcmp(mode, "imap-fetch-each") && argc == 4)
        return do_imap_fetch(port, bench_atol(argv[3], "N"), 0, true);
    if (!strcmp(mode, "imap-headers") && argc == 4)
        return do_imap_fetch(port, bench_atol(argv[3], "N"), hdr, false);
    if (!strcmp(mode, "imap-headers-each") && argc == 4)
        return do_imap_fetch(port, bench_atol(argv[3], "N"), hdr, true);
    if (!strcmp(mode, "imap-fetch-async") && argc == 4)
        return do_imap_fetch_async(port, bench_atol(argv[3], "N"));
    if (!strcmp(mode, "imap-big") && argc == 3)
        return do_big(port, false, true);
    fprintf(stderr, "usage: es_recv make-big FILE MIB | fetch PORT N | fetch-async PORT N | "
                    "headers PORT N CAFILE | big PORT | big-raw PORT | imap-fetch PORT N | "
                    "imap-fetch-each PORT N | imap-headers PORT N | imap-headers-each PORT N | "
                    "imap-fetch-async PORT N | imap-big PORT\n");
    return 2;
}
