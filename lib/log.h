/*
 * The conversation log in 4D's format:
 *   <counter> <YYYY-MM-DDTHH:MM:SS.mmm> <pid> <session id> <event>
 * events: C > "..." (client), S < "..." (server), ### ... (what happened).
 * Three destinations: the global log file (email_set_log: no message bodies, rotated at 10 MB),
 * the log callback (email_set_log_callback), and per-session extended logs (log_sink_t: the
 * conversation plus the full MIME of every message sent). Secrets never reach this module: the
 * engine hands AUTH lines over already masked ("****").
 */
#ifndef EMAIL_LOG_H
#define EMAIL_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct log_sink log_sink_t;

/* A fresh session id, unique for the life of the process. */
uint64_t email_log_session_id(void);

/* True when something would receive events for this sink (a global log, a callback, or sink
 * itself), so callers can skip formatting. */
int email_log_active(const log_sink_t *sink);

/* One event of a session (kind 'C', 'S' or '#') to the global log, the callback and sink
 * (may be NULL). Any thread; lines of concurrent sessions never interleave inside a line. */
void email_log_event(log_sink_t *sink, uint64_t session_id, char kind, const char *text);

/* Message bytes as they go out (the MIME, before dot-stuffing), for the extended log only. */
void email_log_data(log_sink_t *sink, uint64_t session_id, const char *data, size_t n);
/* The message whose bytes follow / ended (framing lines in the extended log). */
void email_log_data_begin(log_sink_t *sink, uint64_t session_id, uint64_t message_id);
void email_log_data_end(log_sink_t *sink, uint64_t session_id, uint64_t message_id);

/* Writes buffered lines out (called when a burst of events is over and when a session ends). */
void email_log_flush(log_sink_t *sink);

/* An extended log file (appended; no size limit). NULL + err when it cannot be opened.
 * Reference counted: a transporter and its connections share one. */
log_sink_t *log_sink_open(const char *path, char *err, size_t errlen);
log_sink_t *log_sink_ref(log_sink_t *sink);
void log_sink_release(log_sink_t *sink);

#endif
