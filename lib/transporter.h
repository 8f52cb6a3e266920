/* What the facade needs of a transporter beyond the public API. */
#ifndef EMAIL_TRANSPORTER_H
#define EMAIL_TRANSPORTER_H

#include "emailsession.h"
#include "protocol.h"

/* Settings the facade sets that email_server_t has no field for. */
typedef struct transporter_extra {
    int tls_policy;            /* enum smtp_tls_policy for plain connections */
    bool implicit_tls;
    unsigned auth_limit;       /* AUTH_PLAIN | AUTH_LOGIN for WLanguage sessions */
    bool auth_optional;        /* WLanguage: neither offered → go on without */
    bool allow_insecure_auth;
    bool no_verify;
} transporter_extra_t;

/* A transporter with the facade's rules; extra NULL = 4D's rules from server->security. */
email_transporter_t *transporter_new_ex(const email_server_t *server,
                                        const transporter_extra_t *extra, char *err,
                                        size_t errlen);
/* The verdict of an open, on the loop thread: status->error is 0 once the session is ready. */
typedef void (*transporter_open_cb)(void *arg, const email_status_t *status);
/*
 * Connects, greets, secures and authenticates the keep-alive connection without waiting; done
 * reports (exactly once, also when the transporter is freed first). Sends queued meanwhile wait
 * for that connection. Once an open has failed, every send fails with its status (a named
 * session whose start failed never tries another connection).
 */
int transporter_open_async(email_transporter_t *t, transporter_open_cb done, void *arg);

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
} transporter_raw_t;
/* Sends a prebuilt message: waits and fills status when status is given, else queues it. */
int transporter_send_raw(email_transporter_t *t, const transporter_raw_t *raw,
                         email_status_t *status);
/* email_transporter_send_async with a progress callback of its own and the error text. */
int transporter_send_async_ex(email_transporter_t *t, const email_message_t *m, email_send_cb done,
                              void *user_data, email_progress_cb progress, void *progress_data,
                              uint64_t *message_id, char *err, size_t errlen);

/* email_shutdown: QUIT on every transporter's connection once its queue is done. */
void transporter_quiesce_all(void);

/* email_transporter_free without waiting: t is freed on the loop once its queue is done. */
void transporter_free_later(email_transporter_t *t);

/* Starts (path) or stops (NULL) the extended log of the transporter's next connections. */
int transporter_set_log(email_transporter_t *t, const char *path, char *err, size_t errlen);

#endif
