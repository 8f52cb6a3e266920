/* What the named POP3 sessions (pop3_facade.c) need of a POP3 transporter beyond the public API. */
#ifndef EMAIL_POP3_TRANSPORTER_H
#define EMAIL_POP3_TRANSPORTER_H

#include <stdbool.h>
#include <stddef.h>

#include "emailsession.h"
#include "transporter.h"

/* A POP3 transporter with the facade's rules (server->port already chosen); NULL and why in
 * err on bad settings or no memory. ErrorInfo is left alone. */
email_pop3_transporter_t *email__pop3_transporter_new_ex(const email_server_t *server,
                                                        const transporter_policy_t *policy,
                                                        char *err, size_t errlen);
/* The conversation log from now on, this session's included: path (NULL: none). 0, or EMAIL_EIO
 * (err says why) or EMAIL_EWOULDBLOCK on the loop's thread. */
int email__pop3_transporter_set_log(email_pop3_transporter_t *t, const char *path, char *err,
                                    size_t errlen);
/* LIST and UIDL (uids "" when the server has no UIDL) as email_pop3_get_mail_info_list, and
 * the session they were read on in *generation (may be NULL): numbers are valid on that one. */
int email__pop3_list(email_pop3_transporter_t *t, email_pop3_mail_info_t **list,
                     size_t *count, uint64_t *generation, email_status_t *status,
                     const char *what);
/* Message `number` parsed as RETR (or TOP n 0 with headers_only) brings it in, with its uid
 * (none when the server has no UIDL) and its size on the server: *out (the caller's) or NULL.
 * generation nonzero: only on that session (EMAIL_ESTALE once it was lost), 0: any. known: its
 * number, size and uid from a listing of that session (RETR or TOP alone then), or NULL.
 * Sets ErrorInfo (naming `what`) and status as the public calls do; 0 or the EMAIL_E... code. */
int email__pop3_fetch(email_pop3_transporter_t *t, unsigned number, bool headers_only,
                      uint64_t generation, const email_pop3_mail_info_t *known,
                      email_message_t **out, email_status_t *status, const char *what);
/* DELE on session `generation` (EMAIL_ESTALE once it was lost); ErrorInfo as the public calls. */
int email__pop3_delete_in(email_pop3_transporter_t *t, unsigned number, uint64_t generation,
                          const char *what);

#endif
