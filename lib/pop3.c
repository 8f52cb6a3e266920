/*
 * The POP3 engine's core: bytes in (status lines, multi-line answers, bodies streamed with their
 * dots unstuffed), bytes out, the commands of the transaction state (pipelined when CAPA offers
 * PIPELINING) and the end of the session. The setup (greeting to authentication) is pop3_setup.c.
 */
#include "pop3_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define DEFAULT_WINDOW 64

static const char *const state_names[] = {
    "CONNECTING", "GREETING", "CAPA", "STLS", "TLS_HANDSHAKE", "AUTH", "USER", "PASS",
    "APOP", "READY", "QUIT", "CLOSED"};

/* Where a body's reading is: at a line's start, after its first dot, after ".\r", inside. */
enum { B_BOL, B_DOT, B_DOTCR, B_MID };

void email__pop3_set_state(pop3_engine_t *e, enum p3_state s)
{
    if (e->ev.state && s != e->state)
        e->ev.state(e->ud, state_names[e->state], state_names[s]);
    e->state = s;
}

static void log_line(pop3_engine_t *e, char kind, const char *text)
{
    if (e->ev.log)
        e->ev.log(e->ud, kind, text);
}

int email__pop3_send_line(pop3_engine_t *e, const char *line, const char *shown)
{
    if (email__buf_puts(&e->out, line) || email__buf_puts(&e->out, "\r\n"))
        return EMAIL_ENOMEM;
    log_line(e, 'C', shown ? shown : line);
    return 0;
}

static void finish_cmd(pop3_cmd_t *cmd)
{
    cmd->status.success = cmd->status.error == 0 && cmd->status.status == 1;
    if (cmd->done)
        cmd->done(cmd);
}

/* Every command still queued or in flight ends with the session's failure. */
static void fail_cmds(pop3_engine_t *e, queue_t *q)
{
    while (!queue_empty(q)) {
        pop3_cmd_t *cmd = queue_data(queue_head(q), pop3_cmd_t, node);
        queue_remove(&cmd->node);
        if (!cmd->status.error) {
            cmd->status.error = e->status.error ? e->status.error : EMAIL_ECLOSED;
            cmd->status.status = 0;
            email__strlcpy(cmd->status.status_text, e->status.status_text,
                           sizeof cmd->status.status_text);
        }
        finish_cmd(cmd);
    }
}

static void end_session(pop3_engine_t *e)
{
    if (e->state == P3_CLOSED)
        return;
    email__pop3_set_state(e, P3_CLOSED);
    email__scram_free(e->scram);
    e->scram = NULL;
    e->current = NULL;
    e->nflight = 0;
    fail_cmds(e, &e->flight);
    fail_cmds(e, &e->queue);
    e->status.success = !e->status.error;
    if (e->ev.closed)
        e->ev.closed(e->ud, &e->status);
}

static void record_failure(pop3_engine_t *e, int error, const char *fmt, va_list ap)
    EMAIL_PRINTF(3, 0);
static void record_failure(pop3_engine_t *e, int error, const char *fmt, va_list ap)
{
    if (e->failed)
        return; /* the first failure is the one that says why */
    e->failed = true;
    e->status.error = error;
    vsnprintf(e->status.status_text, sizeof e->status.status_text, fmt, ap);
}

void email__pop3_fail(pop3_engine_t *e, int error, const char *fmt, ...)
{
    if (e->state == P3_CLOSED)
        return;
    va_list ap;
    va_start(ap, fmt);
    record_failure(e, error, fmt, ap);
    va_end(ap);
    end_session(e);
}

void email__pop3_quit_after_failure(pop3_engine_t *e, int error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_failure(e, error, fmt, ap);
    va_end(ap);
    email__pop3_set_state(e, P3_QUIT);
    if (email__pop3_send_line(e, "QUIT", NULL))
        email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
}

/* ------------------------------------------------------------------------------------------- */
/* Commands out                                                                                 */

static int format_cmd(const pop3_cmd_t *cmd, char *line, size_t size)
{
    static const char *const verbs[] = {"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE",
                                        "RSET", "NOOP"};
    const char *verb = verbs[cmd->kind];
    switch (cmd->kind) {
    case POP3_LIST:
    case POP3_UIDL:
        if (!cmd->number)
            return snprintf(line, size, "%s", verb);
        return snprintf(line, size, "%s %u", verb, cmd->number);
    case POP3_RETR:
    case POP3_DELE:
        return snprintf(line, size, "%s %u", verb, cmd->number);
    case POP3_TOP:
        return snprintf(line, size, "%s %u %u", verb, cmd->number, cmd->lines);
    default:
        return snprintf(line, size, "%s", verb);
    }
}

/* Sends what may go now: everything queued within the window with PIPELINING, else one
 * command at a time; QUIT once nothing is left. */
static void pump(pop3_engine_t *e)
{
    if (e->state != P3_READY)
        return;
    size_t window = !(e->caps & POP3_CAP_PIPELINING) ? 1
                    : e->cfg.window                  ? e->cfg.window
                                                     : DEFAULT_WINDOW;
    while (!queue_empty(&e->queue) && e->nflight < window) {
        pop3_cmd_t *cmd = queue_data(queue_head(&e->queue), pop3_cmd_t, node);
        char line[64];
        format_cmd(cmd, line, sizeof line);
        if (email__pop3_send_line(e, line, NULL)) {
            email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
            return;
        }
        queue_remove(&cmd->node);
        queue_insert_tail(&e->flight, &cmd->node);
        e->nflight++;
    }
    if (e->quit_asked && !e->nflight && queue_empty(&e->queue)) {
        email__pop3_set_state(e, P3_QUIT);
        if (email__pop3_send_line(e, "QUIT", NULL))
            email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
    }
}

void email__pop3_ready(pop3_engine_t *e)
{
    email__scram_free(e->scram);
    e->scram = NULL;
    email__pop3_set_state(e, P3_READY);
    if (e->ev.ready)
        e->ev.ready(e->ud);
    pump(e);
}

/* ------------------------------------------------------------------------------------------- */
/* Answers in                                                                                   */

static bool is_multi(const pop3_cmd_t *cmd)
{
    return cmd->kind == POP3_RETR || cmd->kind == POP3_TOP ||
           ((cmd->kind == POP3_LIST || cmd->kind == POP3_UIDL) && !cmd->number);
}

static void cmd_finished(pop3_engine_t *e, pop3_cmd_t *cmd)
{
    queue_remove(&cmd->node);
    e->nflight--;
    e->current = NULL;
    e->reading = R_STATUS;
    finish_cmd(cmd);
    pump(e);
}

/* A decimal number of at most max at *p (digits only: no sign, no overflow), *p moved past it. */
static bool read_decimal(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return true;
}

/* "n size" (LIST, STAT) or "n uid" (UIDL: 1 to 70 printable characters, RFC 1939 section 7):
 * one entry to the command's item callback; anything else breaks the protocol. */
static void cmd_item(pop3_engine_t *e, pop3_cmd_t *cmd, const char *text)
{
    const char *p = text;
    uint64_t number, size = 0;
    bool ok = read_decimal(&p, UINT32_MAX, &number) && *p == ' ';
    while (ok && *p == ' ')
        p++;
    char uid[71];
    if (ok && cmd->kind == POP3_UIDL) {
        size_t n = 0;
        while (p[n] > 0x20 && p[n] < 0x7f)
            n++;
        ok = n >= 1 && n <= 70 && (p[n] == '\0' || p[n] == ' ');
        if (ok) {
            memcpy(uid, p, n);
            uid[n] = '\0';
        }
    } else if (ok) {
        ok = read_decimal(&p, UINT64_MAX, &size) && (*p == '\0' || *p == ' ');
    }
    if (!ok) {
        email__pop3_fail(e, EMAIL_EPROTO, "malformed answer from the server: \"%.200s\"", text);
        return;
    }
    const char *u = cmd->kind == POP3_UIDL ? uid : NULL;
    int rc = cmd->item ? cmd->item(cmd, (unsigned)number, size, u) : 0;
    if (rc)
        email__pop3_fail(e, rc, "%s", email_strerror(rc));
}

/* An RFC 2449 response code ("[IN-USE] ...") into the status's enhanced code. */
static void response_code(email_status_t *s, const char *text)
{
    const char *end = text[0] == '[' ? strchr(text, ']') : NULL;
    if (end && (size_t)(end - text - 1) < sizeof s->enhanced_code)
        snprintf(s->enhanced_code, sizeof s->enhanced_code, "%.*s", (int)(end - text - 1),
                 text + 1);
}

static void cmd_status(pop3_engine_t *e, bool ok, const char *line)
{
    if (!e->nflight) {
        email__pop3_fail(e, EMAIL_EPROTO, "answer without a command: \"%.200s\"", line);
        return;
    }
    pop3_cmd_t *cmd = queue_data(queue_head(&e->flight), pop3_cmd_t, node);
    email__status_set_reply(&cmd->status, ok ? 1 : -1, "", line);
    if (!ok) {
        response_code(&cmd->status, email__pop3_text(line));
        cmd_finished(e, cmd);
        return;
    }
    if (is_multi(cmd)) {
        e->current = cmd;
        e->reading = cmd->kind == POP3_RETR || cmd->kind == POP3_TOP ? R_BODY : R_LINES;
        e->body_state = B_BOL;
        return;
    }
    if (cmd->kind == POP3_STAT || cmd->kind == POP3_LIST || cmd->kind == POP3_UIDL)
        cmd_item(e, cmd, email__pop3_text(line));
    if (e->state != P3_CLOSED)
        cmd_finished(e, cmd);
}

/* A status line: to the setup, QUIT, or the oldest command in flight. */
static void on_status(pop3_engine_t *e, const char *line)
{
    bool ok = strncmp(line, "+OK", 3) == 0 && (!line[3] || line[3] == ' ');
    bool err = strncmp(line, "-ERR", 4) == 0 && (!line[4] || line[4] == ' ');
    bool cont = line[0] == '+' && (!line[1] || line[1] == ' ') && e->state == P3_AUTH;
    log_line(e, 'S', line);
    if (!ok && !err && !cont) {
        email__pop3_fail(e, EMAIL_EPROTO, "invalid answer from the server: \"%.200s\"", line);
        return;
    }
    e->replies++;
    if (e->state == P3_READY)
        cmd_status(e, ok, line);
    else if (e->state == P3_QUIT && !e->failed && ok)
        end_session(e);
    else if (e->state == P3_QUIT && !e->failed)
        email__pop3_fail(e, EMAIL_ESERVER, "QUIT failed (deletions may not be done): %s", line);
    else if (e->state == P3_QUIT)
        end_session(e);
    else
        email__pop3_setup_status(e, ok, cont, line);
}

/* A line of a multi-line answer (its leading dot already removed), or its end. */
static void on_multi_line(pop3_engine_t *e, const char *line, bool end)
{
    if (end) {
        e->replies++;
        e->reading = R_STATUS;
        if (e->current)
            cmd_finished(e, e->current);
        else
            email__pop3_capa_end(e);
    } else if (e->current) {
        cmd_item(e, e->current, line);
    } else {
        email__pop3_capa_line(e, line);
    }
}

static void on_line(pop3_engine_t *e, char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    if (memchr(line, '\0', len)) {
        email__pop3_fail(e, EMAIL_EPROTO, "the server sent a NUL byte");
        return;
    }
    if (e->reading == R_STATUS)
        on_status(e, line);
    else if (line[0] == '.')
        on_multi_line(e, line + 1, len == 1);
    else
        on_multi_line(e, line, false);
}

/* Gathers a line (bounded); returns the bytes used. */
static size_t line_bytes(pop3_engine_t *e, const char *data, size_t n)
{
    const char *nl = memchr(data, '\n', n);
    size_t take = nl ? (size_t)(nl - data) : n;
    if (e->line.len + take > POP3_MAX_LINE) {
        email__pop3_fail(e, EMAIL_EPROTO, "the server sent a line longer than %d bytes",
                         POP3_MAX_LINE);
        return n;
    }
    if (email__buf_append(&e->line, data, take) || email__buf_putc(&e->line, '\0')) {
        email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
        return n;
    }
    e->line.len--; /* the NUL stays after the text, outside the count */
    if (!nl)
        return n;
    on_line(e, e->line.data, e->line.len);
    email__buf_reset(&e->line);
    return take + 1;
}

static bool deliver(pop3_engine_t *e, const char *data, size_t n)
{
    pop3_cmd_t *cmd = e->current;
    cmd->bytes += n;
    if (cmd->bytes - e->body_mark >= POP3_PROGRESS_BYTES) {
        e->body_mark = cmd->bytes;
        e->replies++; /* a body arriving is progress for the caller's timer */
    }
    int rc = cmd->body ? cmd->body(cmd, data, n) : 0;
    if (rc)
        email__pop3_fail(e, rc, "%s", email_strerror(rc));
    return rc == 0;
}

static void body_end(pop3_engine_t *e)
{
    e->replies++;
    e->body_mark = 0;
    cmd_finished(e, e->current);
}

/* Where the first line after data[i] that starts with a dot starts, or n. */
static size_t next_dot_line(const char *data, size_t i, size_t n)
{
    for (size_t at = i + 1; at < n; at++) {
        const char *dot = memchr(data + at, '.', n - at);
        if (!dot)
            break;
        at = (size_t)(dot - data);
        if (data[at - 1] == '\n')
            return at;
    }
    return n;
}

/* A body's bytes, handed out as they come: a line's first dot removed, ".CRLF" ends it. */
static size_t body_bytes(pop3_engine_t *e, const char *data, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char ch = data[i];
        if (e->body_state == B_BOL && ch == '.') {
            e->body_state = B_DOT;
            i++;
            continue;
        }
        if (e->body_state == B_DOT && (ch == '\r' || ch == '\n')) {
            e->body_state = B_DOTCR;
            if (ch == '\r') {
                i++;
                continue;
            }
        }
        if (e->body_state == B_DOTCR) {
            if (ch == '\n') {
                body_end(e);
                return i + 1;
            }
            if (!deliver(e, "\r", 1)) /* ".\r" then something else: a line, unstuffed */
                return n;
        }
        /* the lines up to the next one starting with a dot go out in one piece: a large body
           crosses to the reader once per read, not once per line; the search is for the dots
           (none in base64 text), not for the line breaks */
        size_t end = next_dot_line(data, i, n);
        e->body_state = data[end - 1] == '\n' ? B_BOL : B_MID;
        if (!deliver(e, data + i, end - i))
            return n;
        i = end;
    }
    return n;
}

int email__pop3_engine_feed(pop3_engine_t *e, const char *data, size_t n)
{
    if (e->state == P3_CLOSED)
        return e->status.error ? e->status.error : EMAIL_ECLOSED;
    while (n && e->state != P3_CLOSED) {
        if (e->state == P3_TLS_HANDSHAKE || e->state == P3_CONNECTING) {
            email__pop3_fail(e, EMAIL_EPROTO, e->state == P3_CONNECTING
                                 ? "the server spoke before the connection was set up"
                                 : "the server sent plain-text bytes after its +OK to STLS "
                                   "instead of a TLS handshake (possible response injection)");
            break;
        }
        size_t used = e->reading == R_BODY ? body_bytes(e, data, n) : line_bytes(e, data, n);
        data += used;
        n -= used;
    }
    return e->state == P3_CLOSED ? e->status.error : 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The rest of the interface                                                                    */

pop3_engine_t *email__pop3_engine_new(const pop3_engine_config_t *config,
                                      const engine_events_t *events, void *ud)
{
    pop3_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *config;
    e->ev = *events;
    e->ud = ud;
    e->cfg.creds.user = email__strdup(config->creds.user);
    e->cfg.creds.password = email__strdup(config->creds.password);
    e->cfg.creds.token = email__strdup(config->creds.token);
    if ((config->creds.user && !e->cfg.creds.user) ||
        (config->creds.password && !e->cfg.creds.password) ||
        (config->creds.token && !e->cfg.creds.token)) {
        email__pop3_engine_free(e);
        return NULL;
    }
    email__buf_init(&e->line);
    email__buf_init(&e->out);
    email__status_init(&e->status);
    queue_init(&e->queue);
    queue_init(&e->flight);
    e->state = config->wait_start ? P3_CONNECTING : P3_GREETING;
    return e;
}

void email__pop3_engine_free(pop3_engine_t *e)
{
    if (!e)
        return;
    email__free_secret((char *)e->cfg.creds.password);
    email__free_secret((char *)e->cfg.creds.token);
    free((char *)e->cfg.creds.user);
    email__scram_free(e->scram);
    email__buf_free(&e->line);
    email__buf_free(&e->out);
    free(e);
}

void email__pop3_engine_start(pop3_engine_t *e, bool allow_cleartext_auth)
{
    if (e->state != P3_CONNECTING)
        return;
    e->cfg.allow_cleartext_auth = allow_cleartext_auth;
    email__pop3_set_state(e, P3_GREETING);
}

size_t email__pop3_engine_take(pop3_engine_t *e, const char **data)
{
    size_t n = e->out.len - e->handed;
    *data = n ? e->out.data + e->handed : "";
    e->handed = e->out.len;
    return n;
}

void email__pop3_engine_written(pop3_engine_t *e, size_t n)
{
    if (n > e->handed)
        n = e->handed;
    email__buf_consume(&e->out, n);
    e->handed -= n;
}

int email__pop3_engine_submit(pop3_engine_t *e, pop3_cmd_t *cmd)
{
    if (e->quit_asked || e->state >= P3_QUIT)
        return EMAIL_ESHUTDOWN;
    email__status_init(&cmd->status);
    cmd->bytes = 0;
    queue_insert_tail(&e->queue, &cmd->node);
    pump(e);
    return 0;
}

void email__pop3_engine_quit(pop3_engine_t *e)
{
    if (e->quit_asked || e->state >= P3_QUIT)
        return;
    e->quit_asked = true;
    pump(e);
}

void email__pop3_engine_abort(pop3_engine_t *e, int error, const char *text)
{
    error = error ? error : EMAIL_ECLOSED;
    email__pop3_fail(e, error, "%s", text ? text : email_strerror(error));
}

bool email__pop3_engine_waiting(const pop3_engine_t *e)
{
    return e->state != P3_CLOSED && e->state != P3_CONNECTING &&
           e->state != P3_TLS_HANDSHAKE && (e->state != P3_READY || e->nflight);
}

bool email__pop3_engine_quitting(const pop3_engine_t *e)
{
    return e->state == P3_QUIT;
}

bool email__pop3_engine_is_ready(const pop3_engine_t *e)
{
    return e->state == P3_READY;
}

bool email__pop3_engine_is_closed(const pop3_engine_t *e)
{
    return e->state == P3_CLOSED;
}

uint64_t email__pop3_engine_replies(const pop3_engine_t *e)
{
    return e->replies;
}

const email_status_t *email__pop3_engine_status(const pop3_engine_t *e)
{
    return &e->status;
}

unsigned email__pop3_engine_caps(const pop3_engine_t *e)
{
    return e->caps;
}

/* ------------------------------------------------------------------------------------------- */
/* For lib/connection.c                                                                         */

static void op_free(void *e) { email__pop3_engine_free(e); }
static void op_start(void *e, bool clear) { email__pop3_engine_start(e, clear); }
static int op_feed(void *e, const char *d, size_t n) { return email__pop3_engine_feed(e, d, n); }
static size_t op_take(void *e, const char **d) { return email__pop3_engine_take(e, d); }
static void op_written(void *e, size_t n) { email__pop3_engine_written(e, n); }
static bool op_waiting(const void *e) { return email__pop3_engine_waiting(e); }
static bool op_quitting(const void *e) { return email__pop3_engine_quitting(e); }
static uint64_t op_replies(const void *e) { return email__pop3_engine_replies(e); }
static void op_quit(void *e) { email__pop3_engine_quit(e); }
static void op_abort(void *e, int err, const char *t) { email__pop3_engine_abort(e, err, t); }
static void op_tls(void *e) { email__pop3_engine_tls_established(e); }
static const email_status_t *op_status(const void *e) { return email__pop3_engine_status(e); }

const engine_ops_t email__pop3_ops = {
    .name = "POP3", .free = op_free, .start = op_start, .feed = op_feed, .take = op_take,
    .written = op_written, .waiting = op_waiting, .quitting = op_quitting,
    .replies = op_replies, .quit = op_quit, .abort = op_abort, .tls_established = op_tls,
    .status = op_status,
};
