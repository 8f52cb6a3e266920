/*
 * The IMAP transporter's insides, shared by lib/imap_transporter.c (the session, a call's
 * commands on the loop thread), lib/imap_transporter_sync.c (the synchronous calls) and
 * lib/imap_transporter_async.c (the asynchronous twins, whose outcome goes to a callback where
 * the other callbacks run).
 */
#ifndef EMAIL_IMAP_TRANSPORTER_INTERNAL_H
#define EMAIL_IMAP_TRANSPORTER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "imap.h"
#include "imap_transporter.h"
#include "mime_parse.h"
#include "runtime.h"
#include "transporter_internal.h"
#include "util.h"

struct email_imap_transporter_s {
    email_transporter_t *settings;
    pthread_mutex_t turn;         /* one synchronous call at a time */
    connection_t *conn;           /* loop thread; NULL until the first call, and once closed */
    struct imap_call *quitting;   /* a free waiting for the session's end */
    bool freeing;                 /* freed from the loop's thread: gone once the session ends */
    char *box;                    /* the mailbox chosen last (NULL: none yet) */
    int mode;                     /* its EMAIL_IMAP_READ_... */
    bool selected;                /* box is selected on conn */
    uint32_t uidvalidity;         /* box's when last selected, 0 unknown */
    unsigned caps;                /* IMAP_CAP_... of the last session */
    /* loop thread: */
    unsigned selecting;           /* the calls' own SELECT / EXAMINE in flight */
    bool reselecting;             /* box is being selected again on a new session */
    struct imap_call *waiting, *waiting_tail; /* calls queued meanwhile, in their order */
    bool quit_pending;            /* LOGOUT once those calls went */
    struct imap_call *fetching;   /* calls with a FETCH in flight, in order */
    mime_parser_t *orphan;        /* a body that came before its response's UID */
};

/* A message being fetched: its UID, its place in the caller's array, its parser meanwhile. */
typedef struct fetch_slot {
    uint32_t uid;
    size_t index;
    mime_parser_t *parser;
    bool done;
} fetch_slot_t;

#define IMAP_MAX_CMDS 2

/* One public call on the loop thread: up to two pipelined commands and what they gathered. */
typedef struct imap_call {
    email_imap_transporter_t *t;
    runtime_call_t *call;             /* a synchronous caller waiting, or NULL */
    void (*finish)(struct imap_call *c); /* asynchronous: every command done (loop thread) */
    struct imap_call *next_waiting;   /* t->waiting */
    struct imap_call *next_fetch;     /* t->fetching */
    imap_cmd_t cmds[IMAP_MAX_CMDS];
    size_t ncmds, pending;
    imap_cmd_t reselect;              /* the chosen mailbox selected again on a new session */
    bool selects;                     /* the call selects a mailbox itself */
    uint32_t *found;                  /* SEARCH */
    size_t nfound, capfound;
    email_imap_box_t *boxes;          /* LIST */
    size_t nboxes, capboxes;
    fetch_slot_t *slots;              /* FETCH, sorted by UID */
    size_t nslots;
    email_message_t **out;
    email_imap_box_info_t info;       /* SELECT */
    int rc;
    email_status_t status;
} imap_call_t;

/* Loop thread: the call's commands (c->ncmds of c->cmds, kind and arguments set; c->t, c->status
 * initialised) go to the session, opened if needed, after the chosen mailbox when the session
 * has not selected it yet; the outcome comes back through c (c->call ended, or c->finish). */
void email__imap_call_start(imap_call_t *c);
/* Runs the call's commands (c->ncmds of c->cmds, kind and arguments set) and waits; sets
 * ErrorInfo and *status (may be NULL) as the public calls do. 0 or the EMAIL_E... code. */
int email__imap_do_call(email_imap_transporter_t *t, imap_call_t *c, const char *what,
                        email_status_t *status);

/* c->slots for uids, sorted, each UID once (at its first place); those UIDs in *list (the
 * caller's, as c->slots). 0 or EMAIL_ENOMEM. */
int email__imap_make_slots(imap_call_t *c, const uint32_t *uids, size_t count, uint32_t **list);
/* The options a read takes, and UIDs from 1: 0, or EMAIL_EINVAL set (ErrorInfo naming what). */
int email__imap_check_read(const uint32_t *uids, size_t count, int options, const char *what);
/* Flag names separated by single spaces: "\Seen", "$Label" (atoms, with one leading "\"). */
bool email__imap_valid_flags(const char *flags);

#endif
