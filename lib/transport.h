/*
 * libuv TCP: resolve a host, connect to each of its addresses in turn, read, queue writes,
 * close. Runs on the loop's thread only. Knows nothing of SMTP or TLS.
 */
#ifndef EMAIL_TRANSPORT_H
#define EMAIL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct transport transport_t;

typedef struct transport_callbacks {
    /* Connected to ip:port (numeric). */
    void (*connected)(void *ud, const char *ip, int port);
    /* Bytes arrived. */
    void (*read)(void *ud, const char *data, size_t n);
    /* n bytes of the queued writes reached the kernel. */
    void (*written)(void *ud, size_t n);
    /* Resolving, connecting, reading or writing failed, or the peer ended the stream
     * (EMAIL_ECLOSED). Called at most once; no read/written callback follows. */
    void (*failed)(void *ud, int error, const char *text);
    /* After email__transport_close: every handle is closed; the transport is freed after this. */
    void (*closed)(void *ud);
} transport_callbacks_t;

transport_t *email__transport_new(uv_loop_t *loop, const transport_callbacks_t *cb, void *ud);
/* Resolves host and connects to its addresses in turn (IPv6 and IPv4, as the resolver orders). */
int email__transport_connect(transport_t *t, const char *host, int port);
/* Queues n bytes (copied). */
int email__transport_write(transport_t *t, const char *data, size_t n);
/* Writes n bytes at once if the kernel takes them all now, behind nothing queued: 0, or
 * EMAIL_EBUSY / EMAIL_ECLOSED (then nothing, or part, was written). Never waits, no `written`
 * follows: for last words before a close. */
int email__transport_write_now(transport_t *t, const char *data, size_t n);
/* Bytes queued and not yet written. */
size_t email__transport_pending(const transport_t *t);
/* Bytes the kernel took that the peer has not acknowledged yet (0 where the system cannot say):
 * they may still be crossing a slow link after every write completed. */
size_t email__transport_unacked(const transport_t *t);
/* True when connected to a loopback address (127.0.0.0/8, ::1). */
bool email__transport_is_loopback(const transport_t *t);
/* Closes everything; `closed` follows, after which the transport is gone. Idempotent. */
void email__transport_close(transport_t *t);

#endif
