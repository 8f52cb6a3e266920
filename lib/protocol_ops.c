/* The SMTP engine as lib/connection.c drives any engine (lib/engine.h). */
#include "engine.h"
#include "protocol.h"

static void op_free(void *e) { email__smtp_engine_free(e); }
static void op_start(void *e, bool clear) { email__smtp_engine_start(e, clear); }
static int op_feed(void *e, const char *d, size_t n) { return email__smtp_engine_feed(e, d, n); }
static size_t op_take(void *e, const char **d) { return email__smtp_engine_take(e, d); }
static void op_written(void *e, size_t n) { email__smtp_engine_written(e, n); }
static bool op_waiting(const void *e) { return email__smtp_engine_waiting(e); }
static bool op_quitting(const void *e) { return email__smtp_engine_quitting(e); }
static uint64_t op_replies(const void *e) { return email__smtp_engine_replies(e); }
static void op_quit(void *e) { email__smtp_engine_quit(e); }
static void op_abort(void *e, int err, const char *t) { email__smtp_engine_abort(e, err, t); }
static void op_tls(void *e) { email__smtp_engine_tls_established(e); }
static const email_status_t *op_status(const void *e) { return email__smtp_engine_status(e); }

const engine_ops_t email__smtp_ops = {
    .name = "SMTP", .free = op_free, .start = op_start, .feed = op_feed, .take = op_take,
    .written = op_written, .waiting = op_waiting, .quitting = op_quitting,
    .replies = op_replies, .quit = op_quit, .abort = op_abort, .tls_established = op_tls,
    .status = op_status,
};
