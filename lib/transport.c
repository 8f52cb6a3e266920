/* libuv TCP transport: resolve, connect to each address in turn, read, write queue, close. */
#include "transport.h"

#include <netinet/in.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "util.h"

struct transport {
    uv_loop_t *loop;
    transport_callbacks_t cb;
    void *ud;
    uv_tcp_t *tcp;           /* the socket of the current attempt (NULL between attempts) */
    uv_getaddrinfo_t resolve;
    uv_connect_t connect;
    struct addrinfo *addrs, *next_addr;
    char host[256];
    int port;
    int last_error;          /* libuv error of the last connect attempt */
    bool failed, closing, loopback;
    size_t pending;
    int busy;                /* handles open + requests in flight; freed at 0 once closing */
};

/* Every read is consumed (copied or parsed) before the read callback returns, so all the
 * connections of a loop share one buffer instead of holding 64 KiB each. */
static _Thread_local char read_buffer[65536];

typedef struct write_req {
    uv_write_t req;
    transport_t *t;
    size_t n;
    char data[];
} write_req_t;

static void maybe_free(transport_t *t)
{
    if (!t->closing || t->busy)
        return;
    void (*closed)(void *) = t->cb.closed;
    void *ud = t->ud;
    if (t->addrs)
        uv_freeaddrinfo(t->addrs);
    free(t);
    if (closed)
        closed(ud);
}

static void fail(transport_t *t, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
static void fail(transport_t *t, int error, const char *fmt, ...)
{
    if (t->failed || t->closing)
        return;
    t->failed = true;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (t->cb.failed)
        t->cb.failed(t->ud, error, text);
}

transport_t *email__transport_new(uv_loop_t *loop, const transport_callbacks_t *cb, void *ud)
{
    transport_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->loop = loop;
    t->cb = *cb;
    t->ud = ud;
    return t;
}

static void on_tcp_close(uv_handle_t *h)
{
    transport_t *t = h->data;
    free(h);
    t->busy--;
    maybe_free(t);
}

static void drop_socket(transport_t *t)
{
    if (t->tcp) {
        uv_close((uv_handle_t *)t->tcp, on_tcp_close);
        t->tcp = NULL;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = read_buffer;
    buf->len = sizeof read_buffer;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    transport_t *t = s->data;
    if (t->closing || t->failed)
        return;
    if (n > 0) {
        if (t->cb.read)
            t->cb.read(t->ud, buf->base, (size_t)n);
    } else if (n == UV_EOF) {
        uv_read_stop(s);
        fail(t, EMAIL_ECLOSED, "the server closed the connection");
    } else if (n < 0) {
        uv_read_stop(s);
        fail(t, EMAIL_ECLOSED, "reading from the server failed: %s", uv_strerror((int)n));
    }
}

static void peer_name(transport_t *t, char *ip, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    ip[0] = '\0';
    if (uv_tcp_getpeername(t->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, size);
        t->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, size);
        t->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                      (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
    }
}

static void try_next(transport_t *t);

static void on_connect(uv_connect_t *req, int status)
{
    transport_t *t = req->data;
    t->busy--;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (status < 0) {
        t->last_error = status;
        drop_socket(t);
        try_next(t);
        return;
    }
    char ip[64];
    peer_name(t, ip, sizeof ip);
    uv_tcp_nodelay(t->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)t->tcp, on_alloc, on_read);
    if (rc < 0) {
        fail(t, EMAIL_ECONNECT, "cannot read from %s: %s", ip, uv_strerror(rc));
        return;
    }
    if (t->cb.connected)
        t->cb.connected(t->ud, ip, t->port);
}

/* Connects to the next resolved address, or fails when none is left. */
static void try_next(transport_t *t)
{
    while (t->next_addr) {
        struct addrinfo *ai = t->next_addr;
        t->next_addr = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        t->tcp = malloc(sizeof *t->tcp);
        if (!t->tcp) {
            fail(t, EMAIL_ENOMEM, "out of memory");
            return;
        }
        uv_tcp_init(t->loop, t->tcp);
        t->tcp->data = t;
        t->busy++;
        t->connect.data = t;
        int rc = uv_tcp_connect(&t->connect, t->tcp, ai->ai_addr, on_connect);
        if (rc == 0) {
            t->busy++;
            return;
        }
        t->last_error = rc;
        drop_socket(t);
    }
    fail(t, EMAIL_ECONNECT, "could not connect to %s port %d: %s", t->host, t->port,
         t->last_error ? uv_strerror(t->last_error) : "no usable address");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    transport_t *t = req->data;
    t->busy--;
    t->addrs = res;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (status < 0) {
        fail(t, EMAIL_ERESOLVE, "cannot resolve %s: %s", t->host, uv_strerror(status));
        return;
    }
    t->next_addr = res;
    try_next(t);
}

int email__transport_connect(transport_t *t, const char *host, int port)
{
    if (!host || !*host || port <= 0 || port > 65535)
        return EMAIL_EINVAL;
    email__strlcpy(t->host, host, sizeof t->host);
    t->port = port;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_ADDRCONFIG;
    t->resolve.data = t;
    int rc = uv_getaddrinfo(t->loop, &t->resolve, on_resolved, host, service, &hints);
    if (rc < 0)
        return EMAIL_ERESOLVE;
    t->busy++;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    transport_t *t = w->t;
    size_t n = w->n;
    free(w);
    t->busy--;
    t->pending -= n;
    if (t->closing) {
        maybe_free(t);
        return;
    }
    if (status < 0) {
        fail(t, EMAIL_ECLOSED, "writing to the server failed: %s", uv_strerror(status));
        return;
    }
    if (!t->failed && t->cb.written)
        t->cb.written(t->ud, n);
}

int email__transport_write(transport_t *t, const char *data, size_t n)
{
    if (!t->tcp || t->failed || t->closing)
        return EMAIL_ECLOSED;
    if (!n)
        return 0;
    write_req_t *w = malloc(sizeof *w + n);
    if (!w)
        return EMAIL_ENOMEM;
    w->t = t;
    w->n = n;
    memcpy(w->data, data, n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)t->tcp, &buf, 1, on_write);
    if (rc < 0) {
        free(w);
        return EMAIL_ECLOSED;
    }
    t->busy++;
    t->pending += n;
    return 0;
}

int email__transport_write_now(transport_t *t, const char *data, size_t n)
{
    if (!t->tcp || t->failed || t->closing)
        return EMAIL_ECLOSED;
    if (t->pending)
        return EMAIL_EBUSY;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)n);
    int rc = uv_try_write((uv_stream_t *)t->tcp, &buf, 1);
    return rc == (int)n ? 0 : rc == UV_EAGAIN || rc >= 0 ? EMAIL_EBUSY : EMAIL_ECLOSED;
}

size_t email__transport_pending(const transport_t *t)
{
    return t->pending;
}

size_t email__transport_unacked(const transport_t *t)
{
#ifdef SIOCOUTQ
    uv_os_fd_t fd;
    int n = 0;
    if (t->tcp && uv_fileno((const uv_handle_t *)t->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &n) == 0
        && n > 0)
        return (size_t)n;
#else
    (void)t;
#endif
    return 0;
}

bool email__transport_is_loopback(const transport_t *t)
{
    return t->loopback;
}

void email__transport_close(transport_t *t)
{
    if (!t || t->closing)
        return;
    t->closing = true;
    if (t->busy && t->resolve.data && t->addrs == NULL)
        uv_cancel((uv_req_t *)&t->resolve);
    drop_socket(t); /* cancels the pending connect and writes with UV_ECANCELED */
    maybe_free(t);
}
