/*
 * The IMAP client engine, sans I/O (RFC 3501; RFC 4959 SASL-IR, RFC 7888 LITERAL+): server bytes
 * go in (email__imap_engine_feed), bytes to write come out (email__imap_engine_take), events come
 * back through engine_events_t, imap_mailbox_events_t and each command's callbacks. No sockets,
 * clocks, threads, libuv or GnuTLS here. Literals are streamed: a message body goes out in pieces
 * as it arrives, never gathered whole; lines, literals and nesting are capped.
 *
 * Callbacks may submit commands and ask for LOGOUT, never free the engine.
 */
#ifndef EMAIL_IMAP_H
#define EMAIL_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "engine.h"
#include "imap_parse.h"
#include "queue.h"

typedef struct imap_engine imap_engine_t;

enum imap_tls_policy { IMAP_TLS_NEVER = 0, IMAP_TLS_IF_OFFERED, IMAP_TLS_REQUIRED };

/* Untagged mailbox news, whenever it arrives (all optional). */
typedef struct imap_mailbox_events {
    void (*exists)(void *ud, uint32_t count);
    void (*expunged)(void *ud, uint32_t seq);
    /* a FETCH no UID FETCH in flight asked for (a flag change): flags NULL when not given */
    void (*fetched)(void *ud, uint32_t seq, uint32_t uid, const char *flags);
} imap_mailbox_events_t;

typedef struct imap_engine_config {
    auth_creds_t creds;         /* copied; user is mandatory */
    auth_mech_t auth_mech;      /* AUTH_NONE: the strongest SASL offered, else LOGIN */
    bool client_cert;           /* TLS presents a client certificate: EXTERNAL may be used */
    int starttls;               /* enum imap_tls_policy */
    bool tls_active;            /* TLS from the first byte */
    bool allow_cleartext_auth;  /* a password may go over an unencrypted connection */
    unsigned window;            /* most UID commands in flight (0 → 128) */
    bool wait_start;            /* no greeting expected until email__imap_engine_start */
    uint64_t max_literal;       /* the largest literal accepted (0 → IMAP_MAX_LITERAL) */
    imap_mailbox_events_t mailbox;
} imap_engine_config_t;

enum imap_kind {
    IMAP_SELECT, IMAP_EXAMINE, IMAP_SEARCH, IMAP_FETCH, IMAP_STORE, IMAP_EXPUNGE,
    IMAP_UID_EXPUNGE, IMAP_NOOP, IMAP_LIST
};

/* What UID FETCH asks for (bits). */
enum {
    IMAP_F_FLAGS = 1 << 0, IMAP_F_SIZE = 1 << 1, IMAP_F_BODY = 1 << 2, IMAP_F_HEADER = 1 << 3
};

/* One command. The caller fills the first block, owns the command and keeps it alive (and its
 * strings) until done is called (exactly once, also when the session fails). */
typedef struct imap_cmd imap_cmd_t;
struct imap_cmd {
    enum imap_kind kind;
    const char *mailbox;        /* SELECT, EXAMINE (UTF-8 names are sent as they are); LIST:
                                   the pattern (LIST "" pattern) */
    /* SEARCH: the criteria (IMAP syntax, ASCII, e.g. "UNSEEN SUBJECT"), then an optional string
     * argument sent quoted or as a literal; "CHARSET UTF-8" goes first when it is not ASCII */
    const char *criteria, *text;
    /* FETCH, STORE, UID EXPUNGE: the UIDs (sorted or not); FETCH sends them in chunks so that no
     * line exceeds IMAP_MAX_COMMAND */
    const uint32_t *uids;
    size_t nuids;
    unsigned items;             /* FETCH: IMAP_F_... */
    const char *store;          /* STORE: e.g. "+FLAGS.SILENT (\\Seen)" */

    /* FETCH: the body (BODY.PEEK[] / BODY.PEEK[HEADER]) bytes of message uid as they come;
     * nonzero (an EMAIL_E... code) ends the session with that error */
    int (*body)(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n);
    /* FETCH: a message's data once its response ended (flags NULL or "\\Seen \\Flagged");
     * SEARCH: each UID found (seq 0, size 0, flags NULL). Nonzero ends the session. */
    int (*item)(imap_cmd_t *cmd, uint32_t seq, uint32_t uid, uint64_t size, const char *flags);
    /* LIST: each mailbox (attributes "\\Noselect \\HasChildren" or "", the hierarchy
     * delimiter or '\0' for none, the name unquoted); nonzero ends the session. */
    int (*listed)(imap_cmd_t *cmd, const char *attributes, char delimiter, const char *name);
    void (*done)(imap_cmd_t *cmd);
    void *user;

    /* set by the engine, final at done: status 1 OK, -1 NO, -2 BAD, 0 not the server's;
     * enhanced_code the response code (e.g. "TRYCREATE") */
    email_status_t status;
    uint64_t bytes;

    queue_t node;               /* engine-private: */
    unsigned tag_first, tags, answered;  /* its tagged lines (chunks) sent, and answered */
    bool searched;              /* SEARCH: its one untagged SEARCH response came */
};

#define IMAP_MAX_COMMAND 8000   /* the longest command line we write */

imap_engine_t *email__imap_engine_new(const imap_engine_config_t *config,
                                      const engine_events_t *events, void *ud);
void email__imap_engine_free(imap_engine_t *e);
void email__imap_engine_start(imap_engine_t *e, bool allow_cleartext_auth);
/* Server bytes: 0, or <0 once the session failed (closed was reported). */
int email__imap_engine_feed(imap_engine_t *e, const char *data, size_t n);
size_t email__imap_engine_take(imap_engine_t *e, const char **data);
void email__imap_engine_written(imap_engine_t *e, size_t n);
/* Queues a command: 0, EMAIL_ESHUTDOWN after LOGOUT or the end, EMAIL_EINVAL when malformed. */
int email__imap_engine_submit(imap_engine_t *e, imap_cmd_t *cmd);
/* LOGOUT once the queued commands are answered. */
void email__imap_engine_quit(imap_engine_t *e);
void email__imap_engine_abort(imap_engine_t *e, int error, const char *text);
/* The STARTTLS handshake is done: CAPABILITY again, the old capabilities forgotten. */
void email__imap_engine_tls_established(imap_engine_t *e);
bool email__imap_engine_waiting(const imap_engine_t *e);
bool email__imap_engine_quitting(const imap_engine_t *e);
bool email__imap_engine_is_ready(const imap_engine_t *e);
bool email__imap_engine_is_closed(const imap_engine_t *e);
uint64_t email__imap_engine_replies(const imap_engine_t *e);
const email_status_t *email__imap_engine_status(const imap_engine_t *e);

enum {
    IMAP_CAP_IMAP4REV1 = 1 << 0, IMAP_CAP_STARTTLS = 1 << 1, IMAP_CAP_LOGINDISABLED = 1 << 2,
    IMAP_CAP_SASL_IR = 1 << 3, IMAP_CAP_LITERALPLUS = 1 << 4, IMAP_CAP_UIDPLUS = 1 << 5,
    IMAP_CAP_KNOWN = 1 << 6      /* a capability list was read */
};
unsigned email__imap_engine_caps(const imap_engine_t *e);
/* The selected mailbox: messages, recent ones, UIDVALIDITY and UIDNEXT (0 when unknown). */
uint32_t email__imap_engine_exists(const imap_engine_t *e);
uint32_t email__imap_engine_recent(const imap_engine_t *e);
uint32_t email__imap_engine_uidvalidity(const imap_engine_t *e);
uint32_t email__imap_engine_uidnext(const imap_engine_t *e);

#endif
