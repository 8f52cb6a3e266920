/*
 * libcurl side of the benchmarks, the same cases as es_bench where libcurl has an equivalent.
 *
 *   curl_bench warm PORT N MSG          one easy handle reused, curl_easy_perform per message
 *   curl_bench concurrent PORT N MSG    N easy handles on one multi handle, one message each
 *   curl_bench big-file PORT FILE       one message with FILE attached (curl_mime_filedata)
 *   curl_bench big-mime PORT FILE       FILE is a prebuilt message, sent from memory
 */
#include "common.h"

#include <curl/curl.h>
#include <poll.h>

typedef struct {
    const char *data;
    size_t len, pos;
} src_t;

/* libcurl pulls the message through this; it does the dot-stuffing itself. */
static size_t read_cb(char *buf, size_t size, size_t nitems, void *user)
{
    src_t *s = user;
    size_t n = size * nitems, left = s->len - s->pos;
    if (n > left)
        n = left;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return n;
}

static char url[64];
static struct curl_slist *rcpts;

static CURL *new_handle(src_t *src)
{
    CURL *h = curl_easy_init();
    if (!h)
        bench_die("curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, "<" BENCH_FROM ">");
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpts);
    if (src) {
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, src);
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    return h;
}

static void perform(CURL *h, const char *what)
{
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        bench_die("%s: curl_easy_perform: %s", what, curl_easy_strerror(rc));
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 250)
        bench_die("%s: final reply %ld", what, code);
}

static long new_connections(CURL *h)
{
    long n = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &n);
    return n;
}

static void case_warm(long n, const char *msgfile)
{
    size_t len;
    char *msg = bench_slurp(msgfile, &len);
    src_t src = {msg, len, 0};
    CURL *h = new_handle(&src);
    perform(h, "warm-up"); /* opens the connection, kept in the handle's cache afterwards */
    long reconnects = 0;
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        src.pos = 0;
        perform(h, "send");
        reconnects += new_connections(h);
    }
    double secs = bench_now() - t0;
    curl_easy_cleanup(h);
    free(msg);
    /* reconnects > 0 would mean the "warm connection" was not reused: the figure is then wrong */
    printf("RESULT msgs=%ld secs=%.6f rate=%.2f reconnects=%ld\n", n, secs, (double)n / secs,
           reconnects);
}

static void case_concurrent(long n, const char *msgfile)
{
    bench_raise_nofile(n + 64);
    size_t len;
    char *msg = bench_slurp(msgfile, &len);
    /* one transfer first, so that libcurl's one-time costs are in the baseline */
    src_t w = {msg, len, 0};
    CURL *wh = new_handle(&w);
    perform(wh, "warm-up");
    curl_easy_cleanup(wh);

    src_t *src = calloc((size_t)n, sizeof *src);
    CURL **h = calloc((size_t)n, sizeof *h);
    if (!src || !h)
        bench_die("out of memory");
    CURLM *m = curl_multi_init();
    long rss0 = bench_vmrss_kb();
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        src[i] = (src_t){msg, len, 0};
        h[i] = new_handle(&src[i]);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    long done = 0, failed = 0;
    char first[300] = "";
    double deadline = t0 + 90;
    while (running || done < n) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            bench_die("curl_multi_perform failed");
        CURLMsg *cm;
        int q;
        while ((cm = curl_multi_info_read(m, &q)))
            if (cm->msg == CURLMSG_DONE) {
                done++;
                if (cm->data.result != CURLE_OK && !failed++)
                    snprintf(first, sizeof first, "%s", curl_easy_strerror(cm->data.result));
            }
        if (bench_now() > deadline)
            bench_die("timed out with %ld of %ld transfers done", done, n);
        if (running)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        else if (done < n)
            bench_die("multi handle idle with %ld of %ld transfers done", done, n);
    }
    double secs = bench_now() - t0;
    /* transfers done, connections still in the multi handle's cache: like idle sessions */
    long rss1 = bench_vmrss_kb();
    if (failed)
        bench_die("%ld of %ld transfers failed; first: %s", failed, n, first);
    for (long i = 0; i < n; i++) {
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
    }
    curl_multi_cleanup(m);
    free(h);
    free(src);
    free(msg);
    printf("RESULT sessions=%ld secs=%.6f rss0_kb=%ld rss1_kb=%ld kb_per_session=%.2f\n", n, secs,
           rss0, rss1, (double)(rss1 - rss0) / (double)n);
}

static void case_big_file(const char *file)
{
    long size = bench_file_size(file);
    CURL *h = new_handle(NULL);
    double t0 = bench_now();
    /* the same shape as es_bench: a text part plus the file, base64, streamed from disk */
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "From: Bench <" BENCH_FROM ">");
    hdr = curl_slist_append(hdr, "To: " BENCH_RCPT);
    hdr = curl_slist_append(hdr, "Subject: emailsession benchmark");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_mime *mime = curl_mime_init(h);
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_data(p, "Hello,\r\n\r\nThe attachment follows.\r\n", CURL_ZERO_TERMINATED);
    curl_mime_type(p, "text/plain; charset=us-ascii");
    p = curl_mime_addpart(mime);
    if (curl_mime_filedata(p, file) != CURLE_OK)
        bench_die("curl_mime_filedata %s failed", file);
    curl_mime_filename(p, "big.bin");
    curl_mime_type(p, "application/octet-stream");
    curl_mime_encoder(p, "base64");
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
    perform(h, "big send");
    double secs = bench_now() - t0;
    curl_easy_cleanup(h);
    curl_mime_free(mime);
    curl_slist_free_all(hdr);
    printf("RESULT bytes=%ld secs=%.6f mbps=%.2f maxrss_kb=%ld\n", size, secs,
           (double)size / 1e6 / secs, bench_maxrss_kb());
}

static void case_big_mime(const char *file)
{
    size_t len;
    char *buf = bench_slurp(file, &len);
    src_t src = {buf, len, 0};
    CURL *h = new_handle(&src);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    double t0 = bench_now();
    perform(h, "big send");
    double secs = bench_now() - t0;
    curl_easy_cleanup(h);
    free(buf);
    printf("RESULT bytes=%zu secs=%.6f mbps=%.2f maxrss_kb=%ld\n", len, secs,
           (double)len / 1e6 / secs, bench_maxrss_kb());
}

int main(int argc, char **argv)
{
    if (argc < 4)
        bench_die("usage: curl_bench warm|concurrent PORT N MSG | big-file|big-mime PORT FILE");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *c = argv[1];
    long port = bench_atol(argv[2], "port");
    snprintf(url, sizeof url, "smtp://" BENCH_HOST ":%ld", port);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        bench_die("curl_global_init failed");
    rcpts = curl_slist_append(NULL, "<" BENCH_RCPT ">");
    if (!strcmp(c, "warm") && argc == 5)
        case_warm(bench_atol(argv[3], "N"), argv[4]);
    else if (!strcmp(c, "concurrent") && argc == 5)
        case_concurrent(bench_atol(argv[3], "N"), argv[4]);
    else if (!strcmp(c, "big-file"))
        case_big_file(argv[3]);
    else if (!strcmp(c, "big-mime"))
        case_big_mime(argv[3]);
    else
        bench_die("unknown case or wrong arguments: %s", c);
    curl_slist_free_all(rcpts);
    curl_global_cleanup();
    return 0;
}
