/* What the facade needs of a transporter beyond the public API. */
#ifndef EMAIL_TRANSPORTER_H
#define EMAIL_TRANSPORTER_H

#include "emailsession.h"

/* How a transporter secures its connections. */
enum transporter_tls {
    TRANSPORTER_TLS_OPPORTUNISTIC, /* STARTTLS when the server offers it, else plaintext */
    TRANSPORTER_TLS_STARTTLS,      /* STARTTLS or fail: never a plaintext fallback */
    TRANSPORTER_TLS_IMPLICIT,      /* TLS from the first byte */
    TRANSPORTER_TLS_NONE           /* plaintext, never STARTTLS */
};

/* How a transporter chooses its authentication mechanism. */
enum transporter_auth_rule {
    TRANSPORTER_AUTH_STRONGEST, /* 4D: authentication_mode, or the strongest offered */
    TRANSPORTER_AUTH_WLANGUAGE  /* LOGIN or PLAIN only; neither offered → go on without */
};

/* The facade's rules, for what email_server_t has no field for. */
typedef struct transporter_policy {
    enum transporter_tls tls;
    enum transporter_auth_rule auth;
    bool allow_insecure_auth; /* credentials may go over a connection without TLS */
    bool no_verify;           /* no certificate checks */
    const char *session_name; /* the named session's, recorded in its outbox entries */
} transporter_policy_t;

/* A transporter with the facade's rules; policy NULL = 4D's rules from server->security and
 * server->accept_unsecure_connection. */
email_transporter_t *email__transporter_new_ex(const email_server_t *server,
                                        const transporter_policy_t *policy, char *err,
                                        size_t errlen);
/* The verdict of an open, on the loop thread: status->error is 0 once the session is ready. */
typedef void (*transporter_open_cb)(void *arg, const email_status_t *status);
/*
 * Connects, greets, secures and authenticates the keep-alive connection without waiting; done
 * reports (exactly once, also when the transporter is freed first). Sends queued meanwhile wait
 * for that connection. Once an open has failed, every send fails with its status (a named
 * session whose start failed never tries another connection).
 */
int email__transporter_open_async(email_transporter_t *t, transporter_open_cb done, void *arg);

/* A prebuilt message (email_send_mime). */
typedef struct transporter_raw {
    const char *from;
    const char *const *rcpts;      /* NULL-terminated */
    const char *mime;
    size_t length;
    email_send_cb done;            /* asynchronous: its outcome (may be NULL) */
    void *user_data;
    email_progress_cb progress;    /* NULL: the transporter's */
    void *progress_data;
    uint64_t *message_id;          /* may be NULL: receives its id */
    char *err;                     /* may be NULL: why it could not be queued (errlen bytes) */
    size_t errlen;
} transporter_raw_t;
/* 0 when raw's envelope and text may go out, else EMAIL_EINVAL and why in err (after "fn: "). */
int email__transporter_raw_check(const transporter_raw_t *raw, const char *fn, char *err,
                                 size_t errlen);
/* Sends a prebuilt message (checked): waits and fills status when status is given, else queues it.
 */
int email__transporter_send_raw(email_transporter_t *t, const transporter_raw_t *raw,
                         email_status_t *status);
/* email_transporter_send_async with a progress callback of its own and the error text. */
int email__transporter_send_async_ex(email_transporter_t *t, const email_message_t *m,
                                     email_send_cb done, void *user_data,
                                     email_progress_cb progress, void *progress_data,
                                     uint64_t *message_id, char *err, size_t errlen);

/* Takes t's entries waiting in its outbox (t's own, or the global one; for the named session
 * `name`, or with name NULL those of t's server) and queues them to cb; entries whose end of
 * data went out in an earlier run are reported EMAIL_EUNKNOWN unless flags say otherwise
 * (EMAIL_OUTBOX_...). The number of entries taken (each one's outcome comes to cb), or <0 and
 * err. */
int email__transporter_outbox_resume(email_transporter_t *t, const char *name, email_send_cb cb,
                                     void *cb_data, int flags, char *err, size_t errlen);

/* email_shutdown: QUIT on every transporter's connection once its queue is done. */
void email__transporter_quiesce_all(void);

/* email_transporter_free without waiting: t is freed on the loop once its queue is done. */
void email__transporter_free_later(email_transporter_t *t);

/* Starts (path) or stops (NULL) the extended log of the transporter's next connections. */
int email__transporter_set_log(email_transporter_t *t, const char *path, char *err, size_t errlen);

#endif
