/*
 * What lib/connection.c needs of a sans-I/O protocol engine (SMTP's lib/protocol*.c, POP3's
 * lib/pop3*.c, IMAP's lib/imap*.c): a small table of functions over an opaque engine, and the events every engine
 * reports. The protocol's own work (SMTP jobs, POP3 commands) goes to the engine directly.
 */
#ifndef EMAIL_ENGINE_H
#define EMAIL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emailsession.h"

/* Events of any engine (SMTP's smtp_engine_callbacks_t has these and its jobs' own). */
typedef struct engine_events {
    /* A conversation event: kind 'C' (client line, secrets masked), 'S' (server line), '#'. */
    void (*log)(void *ud, char kind, const char *text);
    /* Greeted, secured and authenticated: work can go (once per engine). */
    void (*ready)(void *ud);
    /* The server agreed to STARTTLS / STLS: handshake, then the engine's tls_established. */
    void (*starttls)(void *ud);
    /* The session is over (why: the setup status, or the failure): close the transport. */
    void (*closed)(void *ud, const email_status_t *why);
    /* Optional, debugging: state changes by name (static strings); must not call the engine. */
    void (*state)(void *ud, const char *from, const char *to);
} engine_events_t;

typedef struct engine_ops {
    const char *name;           /* "SMTP", "POP3", "IMAP": the log's words */
    void (*free)(void *e);
    void (*start)(void *e, bool allow_cleartext_auth);
    int (*feed)(void *e, const char *data, size_t n);
    size_t (*take)(void *e, const char **data);
    void (*written)(void *e, size_t n);
    bool (*waiting)(const void *e);
    /* QUIT went after a setup failure, or at the end: its reply is awaited */
    bool (*quitting)(const void *e);
    uint64_t (*replies)(const void *e);
    void (*quit)(void *e);
    void (*abort)(void *e, int error, const char *text);
    void (*tls_established)(void *e);
    const email_status_t *(*status)(const void *e);
} engine_ops_t;

/* lib/protocol_ops.c, lib/pop3.c and lib/imap.c */
extern const engine_ops_t email__smtp_ops;
extern const engine_ops_t email__pop3_ops;
extern const engine_ops_t email__imap_ops;

#endif
