/* The global settings of named sessions (lib/settings.c). */
#ifndef EMAIL_SETTINGS_H
#define EMAIL_SETTINGS_H

#include <stdbool.h>

/* The pool size and a copy of the CA file (NULL: none; the caller frees it) for a session that
 * starts now. The timeout is email_get_timeout(). */
void email__settings_get(int *max_connections, char **ca_file);
/* email_session_set_log_file for a name without a session: path (copied; NULL: none) is the
 * log of the name's next start. 0 or EMAIL_ENOMEM. */
int email__settings_set_log_preset(const char *name, const char *path);
/* A copy of the name's preset log file (the caller frees it), or NULL; take: a start takes it,
 * so that the name has none afterwards. */
char *email__settings_log_preset(const char *name, bool take);
/* email_shutdown: forgets the CA file and the preset log files. */
void email__settings_reset(void);

#endif
