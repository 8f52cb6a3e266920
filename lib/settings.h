/* The global settings of named sessions (lib/settings.c). */
#ifndef EMAIL_SETTINGS_H
#define EMAIL_SETTINGS_H

/* The pool size and a copy of the CA file (NULL: none; the caller frees it) for a session that
 * starts now. The timeout is email_get_timeout(). */
void email__settings_get(int *max_connections, char **ca_file);
/* email_shutdown: forgets the CA file. */
void email__settings_reset(void);

#endif
