/*
 * The transporter's insides, shared by its files, one concern each:
 *   transporter.c          its settings: validation, creation, the list of live ones, destruction;
 *   transporter_request.c  a send request: built from a message or prebuilt bytes, its body, the
 *                          outcome handed to whoever waits;
 *   transporter_queue.c    loop thread only: the queue, the pool of connections, retries, the
 *                          end of a free;
 *   transporter_sync.c     the public calls, which cross to the loop thread (and wait there);
 *   transporter_mark.c     loop thread: an outbox entry's end of data waits for its mark.
 */
#ifndef EMAIL_TRANSPORTER_INTERNAL_H
#define EMAIL_TRANSPORTER_INTERNAL_H

#include "auth.h"
#include "connection.h"
#include "log.h"
#include "message.h"
#include "mime.h"
#include "outbox.h"
#include "queue.h"
#include "runtime.h"
#include "status.h"
#include "transporter.h"

typedef struct send_req {
    smtp_job_t job;
    email_transporter_t *t;
    email_message_t *msg;        /* frozen copy, or NULL for a prebuilt message */
    mime_reader_t *reader;
    char *raw;                   /* prebuilt message bytes */
    outbox_entry_t *entry;       /* its outbox entry, the body's source (then no msg or raw) */
    size_t raw_len, raw_off;
    char *from;
    char **rcpts;
    size_t nrcpts;
    char *from_ace;              /* the envelope with A-label domains (job.from_ace, rcpts_ace; */
    char **rcpts_ace;            /* job.nrcpts of them), NULL when ASCII */
    int attempts;
    uint64_t id;
    uint64_t session;            /* log session id of the connection carrying it */
    bool logging;                /* its bytes are being copied to the extended log */

    runtime_call_t *call;        /* synchronous sender waiting */
    email_send_cb cb;            /* asynchronous completion */
    void *cb_data;
    email_progress_cb progress;  /* progress of its body, taken when it was queued */
    void *progress_data;
    uint64_t progress_shown;     /* last progress handed to the caller */
    bool texts_4d;               /* its transporter's t->texts_4d (t may be gone at delivery) */
    email_errors_t earlier;      /* why the earlier attempt failed (one retry at most) */
    queue_t node;                /* in t->waiting, a pool_conn_t's in_conn or parked */
    struct pool_conn *pc;        /* the connection its job is on, or NULL */
    struct mark_batch *mark;     /* its entry's mark under way (transporter_mark.c), or NULL */
    bool held;                   /* pc's engine holds its end of data until that mark is done */
    bool complete_later;         /* its outcome came during the mark: completed after it */
    email_status_t status;       /* final outcome */
    email_refusals_t refusals;
} send_req_t;

/* A check or free waiting for a connection's fate, or an open reporting to its callback. */
typedef struct op {
    email_transporter_t *t;
    runtime_call_t *call;        /* a check's or free's caller */
    email_status_t status;
    int rc;
} op_t;

/* An open waiting for its verdict: small, since a thousand sessions may be starting at once
 * (the verdict's status is made when it comes). */
typedef struct open_op {
    email_transporter_t *t;
    transporter_open_cb done;
    void *done_arg;
    queue_t node;                /* in t->openers while it waits for the connection */
} open_op_t;

/* One connection of a transporter's pool (loop thread). */
typedef struct pool_conn {
    email_transporter_t *t;
    connection_t *conn;
    uint64_t session;            /* its log session id */
    queue_t in_conn;             /* send_req_t given to it, not done */
    size_t load;                 /* how many */
    queue_t parked;              /* send_req_t it lost before their end of data, decided when it
                                    closes */
    bool closing;                /* QUIT or abort was asked (or refused a job): it takes no more */
    bool drain;                  /* email_shutdown: QUIT once idle, even the one kept alive */
    queue_t node;                /* in t->conns */
} pool_conn_t;

struct email_transporter_s {
    queue_t live;                /* in the list of every transporter, for shutdown */
    /* settings, immutable after creation */
    char *host, *user, *password, *token, *log_file, *ca_file, *helo_name;
    char *cert_file, *key_file;  /* TLS client certificate and key (NULL: none) */
    char *header_charset, *body_charset;
    int port;
    auth_mech_t auth_mech;
    transporter_policy_t policy;
    int connect_timeout_ms, reply_timeout_ms;
    bool keep_alive;
    size_t max_connections;      /* 1 or more */
    int security;                /* as given, for email_transporter_get_server */
    bool accept_unsecure;
    bool texts_4d;               /* 4D's status texts (not the facade's, which ErrorInfo shows) */
    char *name;                  /* the named session's (policy), NULL for a transporter */
    outbox_t *outbox;            /* its own (email_server_t.outbox), or NULL: the global one */

    log_sink_t *log;             /* extended log, or NULL (swapped on the loop thread) */

    /* loop thread state */
    queue_t conns;               /* pool_conn_t, oldest first: the first stays when idle */
    size_t nconns;
    size_t pool_limit;           /* max_connections, lowered when the server refuses more */
    struct tls_resume *resume;   /* the last TLS session, so the next connection resumes it */
    queue_t waiting;             /* send_req_t not yet given to a connection */
    queue_t openers; /* op_t of email__transporter_open_async callers waiting for ready */
    bool open_failed;            /* an open failed: every send fails with open_status */
    email_status_t *open_status; /* allocated then only: most transporters never need it */
    bool freeing;                /* email_transporter_free was called */
    uv_timer_t *free_deadline;   /* bounds how long queued messages may delay the free */
    bool expired;                /* that deadline passed: no more retries */
    op_t *freer;                 /* its caller waiting for the end (NULL: free here) */
    email_progress_cb progress;
    void *progress_data;
    /* Another user of these settings (a POP3 or IMAP transporter) ends its own session at
     * email_shutdown: called (loop thread, under the live list's lock) with quiesce_arg. Set
     * and cleared with email__transporter_set_quiesce. */
    void (*on_quiesce)(void *arg);
    void *quiesce_arg;
};

/* transporter.c */
/* Takes t out of the live list and frees it and its settings (not its loop state). */
void email__transporter_destroy(email_transporter_t *t);
/* A connection's configuration from t's settings and policy (translated into the engine's
 * terms here only), with a fresh log session id. */
void email__transporter_make_config(email_transporter_t *t, connection_config_t *cfg);

/* transporter_request.c (creation: any thread; the rest: loop thread) */
/* A request for a message: validated and frozen now, in the caller's thread. */
int email__send_req_new_message(email_transporter_t *t, const email_message_t *m, send_req_t **out,
                         char *err, size_t errlen);
/* A request for prebuilt bytes (all copied) with a fresh id, pending in the registry:
 * EMAIL_ENOMEM or 0. */
int email__send_req_new_raw(email_transporter_t *t, const transporter_raw_t *raw, send_req_t **out);
/* Prepares the job for (another) attempt: a fresh reader from the start of the message. */
int email__send_req_rewind(send_req_t *r, char *err, size_t errlen);
void email__send_req_free(send_req_t *r);
/* Writes r into ob (its body read from the entry from now on): 0, or why not in err. */
int email__send_req_to_outbox(send_req_t *r, outbox_t *ob, char *err, size_t errlen);
/* Writes r into t's outbox (t's own, or the global one) when there is one: 0, or why not. */
int email__send_req_maybe_outbox(send_req_t *r, char *err, size_t errlen);
/* A request for an entry taken from the outbox (pending in the registry under its id); the
 * request owns the entry from here, even when it fails (EMAIL_ENOMEM). */
int email__send_req_new_entry(email_transporter_t *t, outbox_entry_t *e, send_req_t **out);
/* The request has its outcome in r->status: hand it to whoever waits. */
void email__send_req_complete(send_req_t *r);
/* Completes with the job's own status (moving its refusals). */
void email__send_req_complete_job(send_req_t *r);
/* Completes as failed for why (EMAIL_ECLOSED when why has no error). */
void email__send_req_fail(send_req_t *r, const email_status_t *why);
/* A status about to reach its caller: the chain of causes, 4D's prefix, then its lists. */
void email__transporter_status_finish(email_status_t *s, email_refusals_t *refusals,
                               const email_errors_t *earlier, bool texts_4d,
                               const char *component);

/* transporter_mark.c (loop thread) */
/* The job's hold_eod (ctx: the request): 0 when its entry is marked on disk already (or it has
 * none), 1 while the mark is made (the connection's release follows), EMAIL_ENOMEM. */
int email__send_req_hold_eod(void *ctx);

/* transporter_queue.c (loop thread) */
/* Queues a request (email__runtime_post'ed; a synchronous sender has set r->call). */
void email__transporter_op_send(void *arg);
/* email__transporter_open_async's work (an op_t it allocated): the op reports to its callback and
 * is freed when the connection is ready or closed. */
void email__transporter_op_open(void *arg);
/* Cancels a request not yet on the wire: 0, EMAIL_EBUSY (too late) or EMAIL_ENOTFOUND. */
int email__transporter_cancel_queued(email_transporter_t *t, uint64_t id);
/* QUIT after what is queued; t is freed (or t->freer's call ended) once all is done. */
void email__transporter_start_free(email_transporter_t *t);
/* email_shutdown: every connection QUITs once idle; t stays usable. */
void email__transporter_quiesce(email_transporter_t *t);
/* Sets (or, fn NULL, clears) t's on_quiesce under the lock email_shutdown's walk holds: the
 * user of the settings clears it before it frees what arg points to, since freeing the settings
 * from the loop's thread is deferred and leaves them on the walk's list for a while. */
void email__transporter_set_quiesce(email_transporter_t *t, void (*fn)(void *arg), void *arg);

#endif
