/*
 * POP3 reading benchmark (issue #16): N messages read from dovecot, alice / pencil on
 * 127.0.0.1:PORT (plain text on loopback, usually through bench/delayproxy.py), after one
 * warm-up round trip on the same connection. Prints one RESULT line (see common.h).
 *
 *   pop3_bench es-async PORT N   email_pop3_get_mail_async for 1..N at once, outcomes through
 *                                email_dispatch() (pipelined: a few round trips in all)
 *   pop3_bench es-sync PORT N    email_pop3_get_mail for 1..N, one after the other
 *   pop3_bench curl PORT N       libcurl, one easy handle reused, pop3://.../i for 1..N
 *
 * Run by bench/pop3_run, which seeds dovecot and starts the proxy.
 */
#include "common.h"

#include <curl/curl.h>
#include <poll.h>

#include "emailsession.h"

static int done, failed;
static unsigned long long bytes;

static void on_mail(email_message_t *m, const email_status_t *status, void *user_data)
{
    (void)user_data;
    done++;
    if (!status->success)
        failed++;
    else
        bytes += email_message_get_size(m);
    email_message_free(m);
}

static email_pop3_transporter_t *es_open(int port)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = BENCH_HOST;
    srv.port = port;
    srv.user = "alice";
    srv.password = "pencil";
    srv.security = EMAIL_SECURITY_NONE; /* as libcurl: plain text, loopback only */
    srv.connection_timeout = srv.send_timeout = 120;
    email_pop3_transporter_t *t = email_pop3_transporter_new(&srv);
    if (!t || email_pop3_check_connection(t, NULL))
        bench_die("es: %s", email_error_info());
    return t;
}

static double es_async(int port, int n)
{
    email_pop3_transporter_t *t = es_open(port);
    double t0 = bench_now();
    for (int i = 1; i <= n; i++)
        if (email_pop3_get_mail_async(t, (unsigned)i, on_mail, NULL))
            bench_die("es-async: %s", email_error_info());
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    while (done < n)
        if (poll(&p, 1, 1000) > 0)
            email_dispatch();
    double t1 = bench_now();
    email_pop3_transporter_free(t);
    return t1 - t0;
}

static double es_sync(int port, int n)
{
    email_pop3_transporter_t *t = es_open(port);
    double t0 = bench_now();
    for (int i = 1; i <= n; i++) {
        email_message_t *m;
        email_status_t st;
        int rc = email_pop3_get_mail(t, (unsigned)i, &m, &st);
        on_mail(m, &st, NULL);
        if (rc)
            bench_die("es-sync: %s", email_error_info());
    }
    double t1 = bench_now();
    email_pop3_transporter_free(t);
    return t1 - t0;
}

static size_t on_curl_data(char *data, size_t size, size_t nmemb, void *user)
{
    (void)data;
    *(unsigned long long *)user += size * nmemb;
    return size * nmemb;
}

static void curl_get(CURL *c, int port, const char *path, bool nobody)
{
    char url[128];
    snprintf(url, sizeof url, "pop3://%s:%d/%s", BENCH_HOST, port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, nobody ? 1L : 0L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        bench_die("curl %s: %s", url, curl_easy_strerror(rc));
}

static double curl_run(int port, int n)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_USERNAME, "alice");
    curl_easy_setopt(c, CURLOPT_PASSWORD, "pencil");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_curl_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bytes);
    curl_get(c, port, "1", true); /* warm-up: connected and logged in */
    bytes = 0;
    double t0 = bench_now();
    for (int i = 1; i <= n; i++) {
        char path[16];
        snprintf(path, sizeof path, "%d", i);
        curl_get(c, port, path, false);
        done++;
    }
    double t1 = bench_now();
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return t1 - t0;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        bench_die("usage: pop3_bench es-async|es-sync|curl PORT N");
    int port = atoi(argv[2]), n = atoi(argv[3]);
    double secs = !strcmp(argv[1], "es-async") ? es_async(port, n)
                  : !strcmp(argv[1], "es-sync") ? es_sync(port, n)
                  : !strcmp(argv[1], "curl")    ? curl_run(port, n)
                                                : (bench_die("unknown mode %s", argv[1]), 0);
    if (done != n || failed)
        bench_die("%s: %d of %d read, %d failed", argv[1], done, n, failed);
    printf("RESULT client=%s messages=%d seconds=%.3f msg_per_s=%.1f bytes=%llu\n", argv[1], n,
           secs, n / secs, bytes);
    email_shutdown();
    return 0;
}
