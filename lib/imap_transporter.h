/* What the named IMAP sessions (imap_facade.c) need of an IMAP transporter beyond the public API. */
#ifndef EMAIL_IMAP_TRANSPORTER_H
#define EMAIL_IMAP_TRANSPORTER_H

#include <stdbool.h>
#include <stddef.h>

#include "emailsession.h"
#include "transporter.h"

/* An IMAP transporter with the facade's rules (server->port already chosen); NULL and why in
 * err on bad settings or no memory. ErrorInfo is left alone. */
email_imap_transporter_t *email__imap_transporter_new_ex(const email_server_t *server,
                                                        const transporter_policy_t *policy,
                                                        char *err, size_t errlen);
/* email_session_set_log_file on an open named session: the log from now on (NULL: none), for
 * this session and the next ones. 0, or EMAIL_EIO with why in err. */
int email__imap_transporter_set_log(email_imap_transporter_t *t, const char *path, char *err,
                                    size_t errlen);
/* True when the server offers UIDPLUS (UID EXPUNGE), once a session was opened. */
bool email__imap_transporter_uidplus(email_imap_transporter_t *t);
/* UID EXPUNGE of those messages (UIDPLUS); the public calls' conventions. */
int email__imap_uid_expunge(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            email_status_t *status, const char *what);

#endif
