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
/* Connects, greets, secures and authenticates the keep-alive connection, and waits for it. */
int transporter_open(email_transporter_t *t, email_status_t *status);
/* Sends a prebuilt message (email_send_mime): waits and fills status when status is given,
 * else queues it and reports to done (may be NULL). */
int transporter_send_raw(email_transporter_t *t, const char *from, const char *const *rcpts,
                         const char *mime, size_t length, email_send_cb done, void *user_data,
                         email_status_t *status);

/* Starts connecting now without waiting (asynchronous named sessions). */
int transporter_connect_async(email_transporter_t *t);
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
