/*
 * libcurl side of the receiving benchmarks (bench/run-receive): one easy handle reused, one
 * transfer per message, as an application using libcurl's pop3:// would.
 *
 *   curl_recv fetch PORT N          RETR of messages 1..N (pop3://host:port/i), plain POP3
 *   curl_recv headers PORT N CA     "TOP i 0" (CURLOPT_CUSTOMREQUEST) for i = 1..N, STLS required
 *                                   (CURLOPT_USE_SSL), as emailsession's named session has it
 *   curl_recv big PORT              RETR 1, the bytes counted and dropped
 *   curl_recv imap-fetch PORT N     IMAP: imap://host:port/INBOX/;UID=i for i = 1..N (libcurl
 *                                   sends UID FETCH i BODY[]), plain IMAP
 *   curl_recv imap-headers PORT N   imap://host:port/INBOX/;UID=i/;SECTION=HEADER (BODY[HEADER])
 *   curl_recv imap-big PORT         imap://host:port/INBOX/;UID=1, the bytes counted and dropped
 *
 * IMAP: the login and SELECT INBOX (a NOOP on the mailbox's URL) come before the clock; libcurl
 * keeps the mailbox selected across transfers on the reused connection.
 *
 * The login is done (a NOOP transfer without body) before the clock starts. libcurl hands over
 * the raw message: it does not parse MIME, so its figures are of transport only.
 */
#include "common.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t bytes;
    char head[256]; /* the first bytes of the current transfer, to check what came */
    size_t nhead;
} sink_t;

static size_t write_cb(char *data, size_t size, size_t nitems, void *user)
{
    sink_t *s = user;
    size_t n = size * nitems;
    s->bytes += n;
    size_t room = sizeof s->head - 1 - s->nhead;
    memcpy(s->head + s->nhead, data, n < room ? n : room);
    s->nhead += n < room ? n : room;
    s->head[s->nhead] = '\0';
    return n;
}

static int port;
static bool imap; /* the imap-* modes */

static CURL *new_handle(sink_t *sink, const char *ca, bool warm)
{
    CURL *h = curl_easy_init();
    if (!h)
        bench_die("curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_USERNAME, "alice");
    curl_easy_setopt(h, CURLOPT_PASSWORD, "pencil");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (ca) {
        curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    }
    /* logged in before the clock starts */
    char url[64];
    if (imap) /* a custom command on a mailbox not selected yet: SELECT, then the command */
        snprintf(url, sizeof url, "imap://%s:%d/INBOX", BENCH_HOST, port);
    else
        snprintf(url, sizeof url, "pop3://%s:%d/", BENCH_HOST, port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "NOOP");
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        bench_die("login: curl_easy_perform: %s", curl_easy_strerror(rc));
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    /* a first read before the clock too (dovecot's first read of a session: es_recv.c's
     * open_imap and open_box); not for the one large message (warm false) */
    if (imap)
        snprintf(url, sizeof url, "imap://%s:%d/INBOX/;UID=1/;SECTION=HEADER", BENCH_HOST, port);
    else
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "TOP 1 0");
    if (warm) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        if ((rc = curl_easy_perform(h)) != CURLE_OK)
            bench_die("a first read: curl_easy_perform: %s", curl_easy_strerror(rc));
        sink->bytes = 0;
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    return h;
}

static void perform(CURL *h, sink_t *s, long i, long *connects)
{
    s->nhead = 0;
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        bench_die("message %ld: curl_easy_perform: %s", i, curl_easy_strerror(rc));
    long c = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &c);
    *connects += c;
}

/* "Subject: generated message N" in what came (tests/servers/dovecot_mail.py --generate). */
static void check_subject(const sink_t *s, long i)
{
    char want[64];
    snprintf(want, sizeof want, "Subject: generated message %ld\r", i);
    if (!strstr(s->head, want))
        bench_die("message %ld: \"%s\" not in its first bytes", i, want);
}

static int do_fetch(long n, const char *ca, bool headers)
{
    sink_t s = {0};
    CURL *h = new_handle(&s, ca, true);
    long connects = 0;
    double t0 = bench_now();
    for (long i = 1; i <= n; i++) {
        char url[96], cmd[32];
        if (imap) {
            snprintf(url, sizeof url, "imap://%s:%d/INBOX/;UID=%ld%s", BENCH_HOST, port, i,
                     headers ? "/;SECTION=HEADER" : "");
        } else if (headers) {
            snprintf(url, sizeof url, "pop3://%s:%d/", BENCH_HOST, port);
            snprintf(cmd, sizeof cmd, "TOP %ld 0", i);
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, cmd);
        } else {
            snprintf(url, sizeof url, "pop3://%s:%d/%ld", BENCH_HOST, port, i);
        }
        curl_easy_setopt(h, CURLOPT_URL, url);
        perform(h, &s, i, &connects);
        check_subject(&s, i);
    }
    double secs = bench_now() - t0;
    curl_easy_cleanup(h);
    printf("RESULT rate=%.1f secs=%.4f msgs=%ld bytes=%llu reconnects=%ld maxrss_kb=%ld\n",
           n / secs, secs, n, (unsigned long long)s.bytes, connects, bench_maxrss_kb());
    return 0;
}

static int do_big(void)
{
    sink_t s = {0};
    CURL *h = new_handle(&s, NULL, false);
    char url[64];
    if (imap)
        snprintf(url, sizeof url, "imap://%s:%d/INBOX/;UID=1", BENCH_HOST, port);
    else
        snprintf(url, sizeof url, "pop3://%s:%d/1", BENCH_HOST, port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    long connects = 0;
    double t0 = bench_now();
    perform(h, &s, 1, &connects);
    double secs = bench_now() - t0;
    curl_easy_cleanup(h);
    printf("RESULT secs=%.4f bytes=%llu reconnects=%ld maxrss_kb=%ld\n", secs,
           (unsigned long long)s.bytes, connects, bench_maxrss_kb());
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    port = argc > 2 ? (int)bench_atol(argv[2], "PORT") : 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!strcmp(mode, "fetch") && argc == 4)
        return do_fetch(bench_atol(argv[3], "N"), NULL, false);
    if (!strcmp(mode, "headers") && argc == 5)
        return do_fetch(bench_atol(argv[3], "N"), argv[4], true);
    if (!strcmp(mode, "big") && argc == 3)
        return do_big();
    imap = true;
    if (!strcmp(mode, "imap-fetch") && argc == 4)
        return do_fetch(bench_atol(argv[3], "N"), NULL, false);
    if (!strcmp(mode, "imap-headers") && argc == 4)
        return do_fetch(bench_atol(argv[3], "N"), NULL, true);
    if (!strcmp(mode, "imap-big") && argc == 3)
        return do_big();
    fprintf(stderr, "usage: curl_recv fetch PORT N | headers PORT N CAFILE | big PORT | "
                    "imap-fetch PORT N | imap-headers PORT N | imap-big PORT\n");
    return 2;
}
