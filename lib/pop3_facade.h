/* What email_close_session and email_shutdown (facade.c) need of the named POP3 sessions. */
#ifndef EMAIL_POP3_FACADE_H
#define EMAIL_POP3_FACADE_H

#include <stddef.h>

/* Ends the POP3 session `name` with QUIT (deletions committed) and frees it: 0 when there is
 * none, 1 when closed, or the EMAIL_E... code of a QUIT that failed (ErrorInfo says why; the
 * session is freed anyway and its deletions are lost). On the loop's thread it does not wait. */
int email__pop3_facade_close(const char *name);
/* email_session_set_log_file: the POP3 session `name`'s log from now on is path (NULL: none).
 * 0 when there is no such session, 1 when set, or EMAIL_EIO (why in err). */
int email__pop3_facade_set_log(const char *name, const char *path, char *err, size_t errlen);
/* email_shutdown: every POP3 session closed; ErrorInfo left as it was. */
void email__pop3_facade_close_all(void);

#endif
