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
uint64_t email__log_session_id(void);

/* True when something would receive events for this sink (a global log, a callback, or sink
 * itself), so callers can skip formatting. */
int email__log_active(const log_sink_t *sink);

/* One event of a session (kind 'C', 'S' or '#') to the global log, the callback and sink
 * (may be NULL). Any thread; lines of concurrent sessions never interleave inside a line. */
void email__log_event(log_sink_t *sink, uint64_t session_id, char kind, const char *text);

/* Message bytes as they go out (the MIME, before dot-stuffing), for the extended log only. */
void email__log_data(log_sink_t *sink, uint64_t session_id, const char *data, size_t n);
/* The message whose bytes follow / ended (framing lines in the extended log). */
void email__log_data_begin(log_sink_t *sink, uint64_t session_id, uint64_t message_id);
void email__log_data_end(log_sink_t *sink, uint64_t session_id, uint64_t message_id);

/* Hands the buffered lines of the global log and of sink (may be NULL) to the writer (called
 * when a burst of events is over and when a session ends): written before it returns off the
 * loop's thread; on it, by libuv's thread pool right after (log_file.h). */
void email__log_flush(log_sink_t *sink);

/* An extended log file (appended; no size limit). NULL + err when it cannot be opened.
 * Reference counted: a transporter and its connections share one. */
log_sink_t *email__log_sink_open(const char *path, char *err, size_t errlen);
log_sink_t *email__log_sink_ref(log_sink_t *sink);
void email__log_sink_release(log_sink_t *sink);

/*
 * The extended log's message blocks. email__log_data_begin writes the line
 *   ... ### message <id> begins
 * then the MIME follows verbatim, exactly as the server stores it (bare CR / bare LF made CRLF, a
 * final CRLF added when missing, no dot-stuffing), then the line
 *   ... ### message <id> ends (<N> bytes)
 * where N counts the MIME bytes between the two lines: a reader takes the N bytes that follow the
 * "begins" line. If an event comes between two pieces of a message (an error in the middle of the
 * data, another session logging into the same file), the block is closed with
 *   ... ### message <id> interrupted (<N> bytes)
 * (preceded by one LF, not counted, when the N bytes do not end with LF) and the rest of the
 * message comes later in a block opened by "### message <id> continues"; the message is the
 * concatenation of its blocks' bytes. The same file opened twice (by path or by link) is one sink.
 */

/* The global log's size limit before it is recycled (path -> path.1 -> ... path.EMAIL_LOG_KEEP).
 * bytes <= 0 restores EMAIL_LOG_ROTATE_BYTES. For tests. */
#define EMAIL_LOG_ROTATE_BYTES (10L * 1024 * 1024)
#define EMAIL_LOG_KEEP 5
void email__log_set_rotate_size(long bytes);

#endif
