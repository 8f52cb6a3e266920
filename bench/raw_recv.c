/*
 * The raw reader of the receiving benchmarks' large message (bench/run-receive): a plain socket
 * client saying USER, PASS and RETR 1 and dropping the bytes until the ending ".CRLF" — what
 * reading a POP3 message costs at the least (no parsing, no dot-unstuffing, no copies).
 *
 *   raw_recv PORT        prints RESULT secs= bytes= maxrss_kb=
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[256 * 1024];

/* One reply line; dies unless it is "+OK". */
static void expect_ok(int fd, const char *what)
{
    size_t n = 0;
    while (n < 1000) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r <= 0)
            bench_die("%s: connection closed", what);
        if (buf[n++] == '\n')
            break;
    }
    if (n < 3 || memcmp(buf, "+OK", 3))
        bench_die("%s: %.*s", what, (int)n, buf);
}

static void say(int fd, const char *line)
{
    size_t n = strlen(line);
    if (send(fd, line, n, 0) != (ssize_t)n)
        bench_die("send: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: raw_recv PORT\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)bench_atol(argv[1], "PORT"))};
    inet_pton(AF_INET, BENCH_HOST, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa))
        bench_die("connect: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    expect_ok(fd, "greeting");
    say(fd, "USER alice\r\n");
    expect_ok(fd, "USER");
    say(fd, "PASS pencil\r\n");
    expect_ok(fd, "PASS");
    double t0 = bench_now();
    say(fd, "RETR 1\r\n");
    expect_ok(fd, "RETR");
    unsigned long long bytes = 0;
    char tail[5] = {0}; /* the last 5 bytes seen: "\r\n.\r\n" ends the message */
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            bench_die("RETR: connection closed after %llu bytes", bytes);
        bytes += (unsigned long long)r;
        if (r >= 5) {
            memcpy(tail, buf + r - 5, 5);
        } else {
            memmove(tail, tail + r, (size_t)(5 - r));
            memcpy(tail + 5 - r, buf, (size_t)r);
        }
        if (!memcmp(tail, "\r\n.\r\n", 5))
            break;
    }
    double secs = bench_now() - t0;
    say(fd, "QUIT\r\n");
    close(fd);
    printf("RESULT secs=%.4f bytes=%llu maxrss_kb=%ld\n", secs, bytes, bench_maxrss_kb());
    return 0;
}
