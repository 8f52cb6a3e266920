/*
 * The raw reader of the receiving benchmarks' large message (bench/run-receive): a plain socket
 * client saying USER, PASS and RETR 1 and dropping the bytes until the ending ".CRLF" — what
 * reading a POP3 message costs at the least (no parsing, no dot-unstuffing, no copies).
 *
 *   raw_recv PORT        prints RESULT secs= cpu_secs= bytes= maxrss_kb=
 *   raw_recv imap PORT   the same for IMAP: LOGIN and SELECT INBOX before the clock, then one
 *                        "UID FETCH 1 (BODY.PEEK[])": the literal's bytes counted and dropped,
 *                        the clock stopped at the tagged OK (bytes= is the literal's size)
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

static int dial(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)bench_atol(port, "PORT"))};
    inet_pton(AF_INET, BENCH_HOST, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa))
        bench_die("connect: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* ---- IMAP: a buffered reader over buf ---- */

static size_t have, at; /* buf[at..have) not consumed yet */

static void fill(int fd, const char *what)
{
    if (at == have)
        at = have = 0;
    ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
    if (r <= 0)
        bench_die("%s: connection closed", what);
    have += (size_t)r;
}

/* One line (CRLF stripped, NUL-terminated) into line[cap]. */
static void read_line(int fd, char *line, size_t cap, const char *what)
{
    size_t n = 0;
    for (;;) {
        if (at == have)
            fill(fd, what);
        char c = buf[at++];
        if (c == '\n')
            break;
        if (n + 1 < cap && c != '\r')
            line[n++] = c;
    }
    line[n] = '\0';
}

/* Lines until the one tagged tag; dies unless it is OK. */
static void until_tagged(int fd, const char *tag, const char *what)
{
    char line[1024];
    size_t n = strlen(tag);
    do
        read_line(fd, line, sizeof line, what);
    while (strncmp(line, tag, n) || line[n] != ' ');
    if (strncmp(line + n + 1, "OK", 2))
        bench_die("%s: %s", what, line);
}

static int imap_main(const char *port)
{
    int fd = dial(port);
    char line[1024];
    read_line(fd, line, sizeof line, "greeting");
    if (strncmp(line, "* OK", 4))
        bench_die("greeting: %s", line);
    say(fd, "a LOGIN alice pencil\r\n");
    until_tagged(fd, "a", "LOGIN");
    say(fd, "b SELECT INBOX\r\n");
    until_tagged(fd, "b", "SELECT");
    say(fd, "c0 UID FETCH 1 (BODY.PEEK[HEADER])\r\n"); /* a first FETCH, as every client */
    until_tagged(fd, "c0", "a first UID FETCH"); /* (no header line starts with "c0 ") */
    double t0 = bench_now(), c0 = bench_cpu();
    say(fd, "c UID FETCH 1 (BODY.PEEK[])\r\n");
    unsigned long long size = 0;
    for (;;) { /* the untagged FETCH line ends with the literal's {size} */
        read_line(fd, line, sizeof line, "UID FETCH");
        char *brace = strrchr(line, '{');
        if (!strncmp(line, "* ", 2) && brace && sscanf(brace, "{%llu}", &size) == 1)
            break;
        if (!strncmp(line, "c ", 2))
            bench_die("UID FETCH: %s", line);
    }
    unsigned long long left = size;
    while (left) {
        if (at == have)
            fill(fd, "the literal");
        size_t take = have - at < left ? have - at : (size_t)left;
        at += take, left -= take;
    }
    until_tagged(fd, "c", "UID FETCH");
    double secs = bench_now() - t0, cpu = bench_cpu() - c0;
    say(fd, "d LOGOUT\r\n");
    close(fd);
    printf("RESULT secs=%.4f cpu_secs=%.4f bytes=%llu maxrss_kb=%ld\n", secs, cpu, size,
           bench_maxrss_kb());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "imap"))
        return imap_main(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: raw_recv PORT | raw_recv imap PORT\n");
        return 2;
    }
    int fd = dial(argv[1]);
    expect_ok(fd, "greeting");
    say(fd, "USER alice\r\n");
    expect_ok(fd, "USER");
    say(fd, "PASS pencil\r\n");
    expect_ok(fd, "PASS");
    double t0 = bench_now(), c0 = bench_cpu();
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
    double secs = bench_now() - t0, cpu = bench_cpu() - c0;
    say(fd, "QUIT\r\n");
    close(fd);
    printf("RESULT secs=%.4f cpu_secs=%.4f bytes=%llu maxrss_kb=%ld\n", secs, cpu, bytes,
           bench_maxrss_kb());
    return 0;
}
