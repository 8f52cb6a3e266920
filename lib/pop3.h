/*
 * The POP3 client engine, sans I/O (RFC 1939, 2449 CAPA and PIPELINING, 2595 STLS, 5034 SASL):
 * server bytes go in (email__pop3_engine_feed), bytes to write come out (email__pop3_engine_take),
 * events come back through engine_events_t and each command's own callbacks. No sockets, clocks,
 * threads, libuv or GnuTLS here. Multi-line answers are read as they arrive: a message body goes
 * out in pieces (dots unstuffed), never gathered whole.
 *
 * Callbacks may submit commands and ask for QUIT, never free the engine.
 */
#ifndef EMAIL_POP3_H
#define EMAIL_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "engine.h"
#include "queue.h"

typedef struct pop3_engine pop3_engine_t;

enum pop3_tls_policy { POP3_TLS_NEVER = 0, POP3_TLS_IF_OFFERED, POP3_TLS_REQUIRED };

typedef struct pop3_engine_config {
    auth_creds_t creds;         /* copied; user is mandatory */
    auth_mech_t auth_mech;      /* AUTH_NONE: the strongest SASL offered, else APOP, else
                                   USER/PASS; a mechanism: that one through AUTH, or fail */
    bool client_cert;           /* TLS presents a client certificate: EXTERNAL may be used */
    int stls;                   /* enum pop3_tls_policy */
    bool tls_active;            /* TLS from the first byte */
    bool allow_cleartext_auth;  /* a password may go over an unencrypted connection */
    unsigned window;            /* most commands in flight with PIPELINING (0 → 64) */
    bool wait_start;            /* no greeting expected until email__pop3_engine_start */
} pop3_engine_config_t;

enum pop3_kind {
    POP3_STAT, POP3_LIST, POP3_UIDL, POP3_RETR, POP3_TOP, POP3_DELE, POP3_RSET, POP3_NOOP
};

/* One command. The caller fills the first block, owns the command and keeps it alive until
 * done is called (exactly once, also when the session fails). */
typedef struct pop3_cmd pop3_cmd_t;
struct pop3_cmd {
    enum pop3_kind kind;
    unsigned number;            /* message number (LIST and UIDL: 0 = every message) */
    unsigned lines;             /* TOP: body lines wanted */
    /* RETR/TOP: bytes of the message as they come, dots unstuffed, CRLF kept. Nonzero (an
     * EMAIL_E... code) ends the session with that error. */
    int (*body)(pop3_cmd_t *cmd, const char *data, size_t n);
    /* STAT, LIST, UIDL: one entry (number, size; uid for UIDL, else NULL). STAT gives its count
     * as number. Nonzero ends the session. */
    int (*item)(pop3_cmd_t *cmd, unsigned number, uint64_t size, const char *uid);
    void (*done)(pop3_cmd_t *cmd);
    void *user;

    /* set by the engine, final at done: success, status (status 1 "+OK", -1 "-ERR", 0 not the
     * server's; status_text the server's line; enhanced_code an RFC 2449 response code such as
     * "IN-USE"), and the body bytes handed out */
    email_status_t status;
    uint64_t bytes;

    queue_t node;               /* engine-private */
};

pop3_engine_t *email__pop3_engine_new(const pop3_engine_config_t *config,
                                      const engine_events_t *events, void *ud);
void email__pop3_engine_free(pop3_engine_t *e);
/* With wait_start: the transport is up (and secured with implicit TLS): the greeting may come. */
void email__pop3_engine_start(pop3_engine_t *e, bool allow_cleartext_auth);
/* Server bytes: 0, or <0 once the session failed (closed was reported). */
int email__pop3_engine_feed(pop3_engine_t *e, const char *data, size_t n);
/* Bytes to write now, valid until the next engine call; they count as handed over. */
size_t email__pop3_engine_take(pop3_engine_t *e, const char **data);
void email__pop3_engine_written(pop3_engine_t *e, size_t n);
/* Queues a command: 0, EMAIL_ESHUTDOWN after QUIT or the end. Sent once ready. */
int email__pop3_engine_submit(pop3_engine_t *e, pop3_cmd_t *cmd);
/* QUIT once the queued commands are answered (commits deletions). */
void email__pop3_engine_quit(pop3_engine_t *e);
/* The transport failed or ended: every command done with that error, then closed. */
void email__pop3_engine_abort(pop3_engine_t *e, int error, const char *text);
/* The STLS handshake is done: CAPA again, the old capabilities forgotten. */
void email__pop3_engine_tls_established(pop3_engine_t *e);
bool email__pop3_engine_waiting(const pop3_engine_t *e);
bool email__pop3_engine_quitting(const pop3_engine_t *e);
bool email__pop3_engine_is_ready(const pop3_engine_t *e);
bool email__pop3_engine_is_closed(const pop3_engine_t *e);
uint64_t email__pop3_engine_replies(const pop3_engine_t *e);
/* The setup outcome (greeting, authentication), and why the session ended. */
const email_status_t *email__pop3_engine_status(const pop3_engine_t *e);

enum {
    POP3_CAP_TOP = 1 << 0,
    POP3_CAP_UIDL = 1 << 1,
    POP3_CAP_USER = 1 << 2,
    POP3_CAP_SASL = 1 << 3,
    POP3_CAP_STLS = 1 << 4,
    POP3_CAP_PIPELINING = 1 << 5,
    POP3_CAP_CAPA = 1 << 6       /* CAPA answered */
};
unsigned email__pop3_engine_caps(const pop3_engine_t *e);

#endif
