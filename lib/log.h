/*
 * The conversation log in 4D's format:
 *   <counter> <YYYY-MM-DDTHH:MM:SS.mmm> <pid> <session id> <event>
 * events: C > "..." (client), S < "..." (server), ### ... (what happened).
 */
#ifndef EMAIL_LOG_H
#define EMAIL_LOG_H

#include <stdint.h>

/* A fresh session id, unique for the life of the process. */
uint64_t email_log_session_id(void);
/* One event of a session: kind 'C', 'S' or '#'. Any thread. */
void email_log_event(uint64_t session_id, char kind, const char *text);
/* True when a log or a log callback is set (to skip formatting when off). */
int email_log_active(void);

#endif
