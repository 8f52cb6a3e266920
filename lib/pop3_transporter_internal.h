/*
 * The POP3 transporter's insides, shared by lib/pop3_transporter.c (the session, a call's
 * commands on the loop thread, the synchronous calls) and lib/pop3_transporter_async.c (the
 * asynchronous twins, whose outcome goes to a callback where the other callbacks run).
 */
#ifndef EMAIL_POP3_TRANSPORTER_INTERNAL_H
#define EMAIL_POP3_TRANSPORTER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mime_parse.h"
#include "pop3.h"
#include "pop3_transporter.h"
#include "runtime.h"
#include "transporter_internal.h"
#include "util.h"

struct email_pop3_transporter_s {
    email_transporter_t *settings;
    pthread_mutex_t turn;         /* one synchronous call at a time */
    connection_t *conn;           /* loop thread; NULL until the first call, and once closed */
    uint64_t generation;          /* loop thread: sessions opened so far (message numbers are
                                     valid in one session only) */
    struct pop3_call *quitting;   /* a free waiting for the session's end */
    bool freeing;                 /* freed from the loop's thread: gone once the session ends */
};

#define POP3_MAX_CMDS 3

/* One public call on the loop thread: up to three pipelined commands and what they gathered. */
typedef struct pop3_call {
    email_pop3_transporter_t *t;
    runtime_call_t *call;             /* a synchronous caller waiting, or NULL */
    void (*finish)(struct pop3_call *c); /* asynchronous: every command done (loop thread) */
    pop3_cmd_t cmds[POP3_MAX_CMDS];
    size_t ncmds, pending;
    email_buf_t body;                 /* RETR, unless parsed */
    mime_parser_t *parser;            /* RETR or TOP parsed as the bytes come, or NULL */
    bool uidl_optional;               /* a server without UIDL: the message has no uid */
    uint64_t want_generation;         /* nonzero: only on that session, else EMAIL_ESTALE */
    uint64_t generation;              /* the session the commands went to */
    email_pop3_mail_info_t *infos;    /* LIST, then UIDL */
    size_t ninfos, cap;
    uint64_t count, size;             /* STAT */
    int rc;
    email_status_t status;
} pop3_call_t;

/* Loop thread: the call's commands (c->ncmds of c->cmds, kind and number set) go to the session,
 * opened if needed; each outcome comes back through c (c->finish, or c->call ended). */
void email__pop3_call_submit(pop3_call_t *c);
/* Sets up c's gathering for `t` (body buffer, status). */
void email__pop3_call_init(pop3_call_t *c, email_pop3_transporter_t *t);

#endif
