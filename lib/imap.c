/*
 * The IMAP engine's core: bytes in (through the streaming reader of lib/imap_parse.c), responses
 * dispatched (tagged, untagged, continuations), bytes out (commands composed with quoted strings
 * or literals), the end of the session. The setup is imap_setup.c, the commands imap_cmd.c.
 */
#include "imap_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static const char *const state_names[] = {
    "CONNECTING", "GREETING", "CAPABILITY", "STARTTLS", "TLS_HANDSHAKE", "AUTH", "READY",
    "LOGOUT", "CLOSED"};

void email__imap_set_state(imap_engine_t *e, enum im_state s)
{
    if (e->ev.state && s != e->state)
        e->ev.state(e->ud, state_names[e->state], state_names[s]);
    e->state = s;
}

static void log_line(imap_engine_t *e, char kind, const char *text)
{
    if (e->ev.log)
        e->ev.log(e->ud, kind, text);
}

static void end_session(imap_engine_t *e)
{
    if (e->state == IM_CLOSED)
        return;
    email__imap_set_state(e, IM_CLOSED);
    email__scram_free(e->scram);
    e->scram = NULL;
    email__imap_fail_cmds(e);
    e->status.success = !e->status.error;
    if (e->ev.closed)
        e->ev.closed(e->ud, &e->status);
}

static void record_failure(imap_engine_t *e, int error, const char *fmt, va_list ap)
    EMAIL_PRINTF(3, 0);
static void record_failure(imap_engine_t *e, int error, const char *fmt, va_list ap)
{
    if (e->failed)
        return; /* the first failure is the one that says why */
    e->failed = true;
    e->status.error = error;
    vsnprintf(e->status.status_text, sizeof e->status.status_text, fmt, ap);
}

void email__imap_fail(imap_engine_t *e, int error, const char *fmt, ...)
{
    if (e->state == IM_CLOSED)
        return;
    va_list ap;
    va_start(ap, fmt);
    record_failure(e, error, fmt, ap);
    va_end(ap);
    end_session(e);
}

void email__imap_logout(imap_engine_t *e)
{
    imap_line_t l;
    email__imap_line_init(&l);
    email__imap_set_state(e, IM_LOGOUT);
    e->setup_tag = 0;
    if (email__imap_line_tag(e, &l, &e->setup_tag) || email__imap_line_raw(&l, "LOGOUT", false) ||
        email__imap_line_send(e, &l))
        email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
    email__imap_line_free(&l);
}

void email__imap_logout_after_failure(imap_engine_t *e, int error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_failure(e, error, fmt, ap);
    va_end(ap);
    /* a SASL exchange waits for an answer: "*" cancels it (RFC 3501 section 6.2.2) */
    if (e->state == IM_AUTH && e->mech && email__buf_puts(&e->out, "*\r\n")) {
        email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
        return;
    }
    email__buf_reset(&e->pending);
    email__imap_logout(e);
}

/* ------------------------------------------------------------------------------------------- */
/* Commands out                                                                                 */

void email__imap_line_init(imap_line_t *l)
{
    memset(l, 0, sizeof *l);
    email__buf_init(&l->wire);
    email__buf_init(&l->shown);
}

void email__imap_line_free(imap_line_t *l)
{
    email__free_secret(email__buf_steal(&l->wire, NULL));
    email__buf_free(&l->shown);
}

int email__imap_line_tag(imap_engine_t *e, imap_line_t *l, unsigned *tag)
{
    *tag = ++e->tag;
    return email__buf_printf(&l->wire, "A%u ", *tag) || email__buf_printf(&l->shown, "A%u ", *tag)
               ? EMAIL_ENOMEM : 0;
}

int email__imap_line_raw(imap_line_t *l, const char *text, bool secret)
{
    return email__buf_puts(&l->wire, text) || email__buf_puts(&l->shown, secret ? "****" : text)
               ? EMAIL_ENOMEM : 0;
}

/* Quoted when every byte may be (7-bit, no CR, LF or NUL) and it is short. */
static bool quotable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] > 0x7e || s[n] == '\r' || s[n] == '\n')
            return false;
    return n < 1000;
}

int email__imap_line_string(imap_engine_t *e, imap_line_t *l, const char *s, bool secret)
{
    int rc = 0;
    if (quotable(s)) {
        rc = email__buf_putc(&l->wire, '"');
        for (size_t i = 0; s[i] && !rc; i++)
            rc = (s[i] == '"' || s[i] == '\\') && email__buf_putc(&l->wire, '\\')
                     ? EMAIL_ENOMEM : email__buf_putc(&l->wire, s[i]);
        rc = rc || email__buf_putc(&l->wire, '"') ? EMAIL_ENOMEM : 0;
        if (!rc && secret)
            rc = email__buf_puts(&l->shown, "****");
        else if (!rc)
            rc = email__buf_printf(&l->shown, "\"%s\"", s);
        return rc ? EMAIL_ENOMEM : 0;
    }
    bool plus = e->caps & IMAP_CAP_LITERALPLUS;
    if (!plus && l->nsplits == IMAP_MAX_SPLITS)
        return EMAIL_EINVAL;
    size_t n = strlen(s);
    if (email__buf_printf(&l->wire, "{%zu%s}\r\n", n, plus ? "+" : ""))
        return EMAIL_ENOMEM;
    if (!plus)
        l->splits[l->nsplits++] = l->wire.len;
    if (email__buf_append(&l->wire, s, n) ||
        email__buf_printf(&l->shown, "{%zu%s} %s", n, plus ? "+" : "", secret ? "****" : s))
        return EMAIL_ENOMEM;
    return 0;
}

/* The command's bytes up to the next place where "+" is awaited (the rest stays pending). */
static int send_part(imap_engine_t *e)
{
    size_t upto = e->nsplits ? e->splits[0] : e->pending.len;
    if (email__buf_append(&e->out, e->pending.data, upto))
        return EMAIL_ENOMEM;
    memset(e->pending.data, 0, upto);
    email__buf_consume(&e->pending, upto);
    for (int i = 1; i < e->nsplits; i++)
        e->splits[i - 1] = e->splits[i] - upto;
    if (e->nsplits)
        e->nsplits--;
    return 0;
}

int email__imap_line_send(imap_engine_t *e, imap_line_t *l)
{
    if (email__buf_puts(&l->wire, "\r\n") || email__buf_putc(&l->shown, '\0'))
        return EMAIL_ENOMEM;
    log_line(e, 'C', l->shown.data);
    email__buf_reset(&e->pending);
    e->pending_tag = e->tag; /* the line was tagged just before it is sent */
    if (email__buf_append(&e->pending, l->wire.data, l->wire.len))
        return EMAIL_ENOMEM;
    memcpy(e->splits, l->splits, sizeof l->splits);
    e->nsplits = l->nsplits;
    return send_part(e);
}

/* ------------------------------------------------------------------------------------------- */
/* Responses in                                                                                 */

void email__imap_read_caps(imap_engine_t *e, const char *list, size_t n)
{
    static const struct {
        const char *name;
        unsigned cap;
    } names[] = {{"IMAP4REV1", IMAP_CAP_IMAP4REV1}, {"STARTTLS", IMAP_CAP_STARTTLS},
                 {"LOGINDISABLED", IMAP_CAP_LOGINDISABLED}, {"SASL-IR", IMAP_CAP_SASL_IR},
                 {"LITERAL+", IMAP_CAP_LITERALPLUS}, {"UIDPLUS", IMAP_CAP_UIDPLUS}};
    imap_lex_t lx;
    email__imap_lex_init(&lx, list, n);
    e->caps = IMAP_CAP_KNOWN;
    e->sasl = 0;
    for (imap_tok_t t = email__imap_lex(&lx); t.kind == T_ATOM; t = email__imap_lex(&lx)) {
        char word[64];
        if (t.n >= sizeof word)
            continue;
        memcpy(word, t.p, t.n);
        word[t.n] = '\0';
        if (email__strncasecmp(word, "AUTH=", 5) == 0)
            e->sasl |= email__auth_parse_mechs(word + 5);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (email__strcasecmp(word, names[i].name) == 0)
                e->caps |= names[i].cap;
    }
}

/* A response code ("[UIDVALIDITY 3] ..."): what the engine tracks. */
static void response_code(imap_engine_t *e, const char *text)
{
    const char *end = text[0] == '[' ? strchr(text, ']') : NULL;
    if (!end)
        return;
    imap_lex_t lx;
    email__imap_lex_init(&lx, text + 1, (size_t)(end - text - 1));
    imap_tok_t name = email__imap_lex(&lx), value = email__imap_lex(&lx);
    if (email__imap_tok_is(&name, "CAPABILITY"))
        email__imap_read_caps(e, value.p ? value.p : "", (size_t)(end - (value.p ? value.p : end)));
    else if (email__imap_tok_is(&name, "UIDVALIDITY"))
        email__imap_tok_u32(&value, &e->uidvalidity);
    else if (email__imap_tok_is(&name, "UIDNEXT"))
        email__imap_tok_u32(&value, &e->uidnext);
}

static void untagged_number(imap_engine_t *e, uint32_t n, imap_lex_t *lx)
{
    imap_tok_t what = email__imap_lex(lx);
    if (email__imap_tok_is(&what, "EXISTS")) {
        e->exists = n;
        if (e->cfg.mailbox.exists)
            e->cfg.mailbox.exists(e->ud, n);
    } else if (email__imap_tok_is(&what, "RECENT")) {
        e->recent = n;
    } else if (email__imap_tok_is(&what, "EXPUNGE")) {
        if (!n || n > e->exists) {
            email__imap_fail(e, EMAIL_EPROTO, "the server expunged message %u of %u", n,
                             e->exists);
            return;
        }
        e->exists--;
        if (e->cfg.mailbox.expunged)
            e->cfg.mailbox.expunged(e->ud, n);
    } else if (email__imap_tok_is(&what, "FETCH")) {
        email__imap_fetch_data(e, n, lx);
    }
}

static void untagged(imap_engine_t *e, const char *text, size_t n)
{
    imap_lex_t lx;
    email__imap_lex_init(&lx, text, n);
    imap_tok_t t = email__imap_lex(&lx);
    uint32_t num;
    const char *rest = text + lx.pos + (lx.pos < n);
    if (email__imap_tok_u32(&t, &num))
        untagged_number(e, num, &lx);
    else if (email__imap_tok_is(&t, "CAPABILITY"))
        email__imap_read_caps(e, text + lx.pos, n - lx.pos);
    else if (email__imap_tok_is(&t, "SEARCH"))
        email__imap_search_data(e, &lx);
    else if (email__imap_tok_is(&t, "LIST"))
        email__imap_list_data(e, &lx);
    else if (email__imap_tok_is(&t, "BYE") && e->state != IM_LOGOUT && e->state != IM_GREETING)
        email__imap_fail(e, EMAIL_ECLOSED, "the server ended the session: %.300s", rest);
    else if (email__imap_tok_is(&t, "OK") || email__imap_tok_is(&t, "NO") ||
             email__imap_tok_is(&t, "BAD") || email__imap_tok_is(&t, "PREAUTH") ||
             email__imap_tok_is(&t, "BYE")) {
        response_code(e, rest);
        if (e->state == IM_GREETING) {
            char word[8];
            snprintf(word, sizeof word, "%.*s", (int)t.n, t.p);
            email__imap_greeting(e, word, rest);
        }
    }
}

/* "A<n> OK|NO|BAD text": to the setup, LOGOUT or the command with that tag. */
static void tagged(imap_engine_t *e, const char *text)
{
    unsigned tag;
    char word[4];
    int used = 0;
    if (sscanf(text, "A%u %3s%n", &tag, word, &used) != 2 || (text[used] && text[used] != ' ')) {
        email__imap_fail(e, EMAIL_EPROTO, "invalid response from the server: \"%.200s\"", text);
        return;
    }
    const char *rest = text[used] ? text + used + 1 : "";
    int status = !email__strcasecmp(word, "OK") ? 1 : !email__strcasecmp(word, "NO") ? -1
                 : !email__strcasecmp(word, "BAD") ? -2 : 0;
    if (!status) {
        email__imap_fail(e, EMAIL_EPROTO, "invalid response from the server: \"%.200s\"", text);
        return;
    }
    response_code(e, rest);
    if (e->pending.len && tag == e->pending_tag) {
        /* answered before its "+": the rest of the command must never go, nor hold up the
         * commands after it (nor linger: it may be a password) */
        memset(e->pending.data, 0, e->pending.len);
        email__buf_reset(&e->pending);
        e->nsplits = 0;
    }
    if (e->state == IM_LOGOUT) {
        if (tag == e->setup_tag)
            end_session(e);
    } else if (e->setup_tag && tag == e->setup_tag) {
        e->setup_tag = 0;
        email__imap_setup_tagged(e, status, text, rest);
    } else if (!email__imap_cmd_tagged(e, tag, status, text, rest)) {
        email__imap_fail(e, EMAIL_EPROTO, "answer without a command: \"%.200s\"", text);
    }
}

static int on_response(void *ud, const char *text, size_t n)
{
    imap_engine_t *e = ud;
    log_line(e, 'S', text);
    e->replies++;
    if (text[0] == '+' && (n == 1 || text[1] == ' ')) {
        if (e->pending.len && e->state != IM_LOGOUT) {
            if (send_part(e))
                email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
        } else {
            email__imap_continuation(e, n > 1 ? text + 2 : "");
        }
    } else if (text[0] == '*' && text[1] == ' ') {
        untagged(e, text + 2, n - 2);
    } else {
        tagged(e, text);
    }
    /* the TLS handshake comes next: the reader must not read on (see feed) */
    return e->state == IM_CLOSED || e->state == IM_TLS_HANDSHAKE ? 1 : 0;
}

static int on_body(void *ud, uint32_t seq, uint32_t uid, const char *data, size_t n)
{
    imap_engine_t *e = ud;
    (void)seq;
    e->body_mark += n;
    if (e->body_mark >= 65536) {
        e->body_mark = 0;
        e->replies++; /* a body arriving is progress for the caller's timer */
    }
    return n ? email__imap_body_data(e, uid, data, n) : 0;
}

int email__imap_engine_feed(imap_engine_t *e, const char *data, size_t n)
{
    if (e->state == IM_CLOSED)
        return e->status.error ? e->status.error : EMAIL_ECLOSED;
    while (n && e->state != IM_CLOSED) {
        if (e->state == IM_TLS_HANDSHAKE || e->state == IM_CONNECTING) {
            email__imap_fail(e, EMAIL_EPROTO, e->state == IM_CONNECTING
                                 ? "the server spoke before the connection was set up"
                                 : "the server sent plain-text bytes after its OK to STARTTLS "
                                   "instead of a TLS handshake (possible response injection)");
            break;
        }
        int rc;
        size_t used = email__imap_reader_feed(&e->rd, data, n, &rc);
        data += used;
        n -= used;
        if (rc < 0 && e->state != IM_CLOSED)
            email__imap_fail(e, rc, "%s", e->rd.why[0] ? e->rd.why : email_strerror(rc));
    }
    return e->state == IM_CLOSED ? e->status.error : 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The rest of the interface                                                                    */

imap_engine_t *email__imap_engine_new(const imap_engine_config_t *config,
                                      const engine_events_t *events, void *ud)
{
    static const imap_reader_ops_t rd_ops = {.body = on_body, .response = on_response};
    imap_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *config;
    e->ev = *events;
    e->ud = ud;
    e->cfg.creds.user = email__strdup(config->creds.user);
    e->cfg.creds.password = email__strdup(config->creds.password);
    e->cfg.creds.token = email__strdup(config->creds.token);
    email__imap_reader_init(&e->rd, &rd_ops, e, config->max_literal);
    email__buf_init(&e->out);
    email__buf_init(&e->pending);
    email__buf_init(&e->ir);
    email__status_init(&e->status);
    queue_init(&e->queue);
    queue_init(&e->flight);
    e->state = config->wait_start ? IM_CONNECTING : IM_GREETING;
    if ((config->creds.user && !e->cfg.creds.user) ||
        (config->creds.password && !e->cfg.creds.password) ||
        (config->creds.token && !e->cfg.creds.token)) {
        email__imap_engine_free(e);
        return NULL;
    }
    return e;
}

void email__imap_engine_free(imap_engine_t *e)
{
    if (!e)
        return;
    email__free_secret((char *)e->cfg.creds.password);
    email__free_secret((char *)e->cfg.creds.token);
    free((char *)e->cfg.creds.user);
    email__scram_free(e->scram);
    email__imap_reader_free(&e->rd);
    email__free_secret(email__buf_steal(&e->out, NULL));
    email__free_secret(email__buf_steal(&e->pending, NULL));
    email__free_secret(email__buf_steal(&e->ir, NULL));
    free(e);
}

void email__imap_engine_start(imap_engine_t *e, bool allow_cleartext_auth)
{
    if (e->state != IM_CONNECTING)
        return;
    e->cfg.allow_cleartext_auth = allow_cleartext_auth;
    email__imap_set_state(e, IM_GREETING);
}

size_t email__imap_engine_take(imap_engine_t *e, const char **data)
{
    size_t n = e->out.len - e->handed;
    *data = n ? e->out.data + e->handed : "";
    e->handed = e->out.len;
    return n;
}

void email__imap_engine_written(imap_engine_t *e, size_t n)
{
    if (n > e->handed)
        n = e->handed;
    email__buf_consume(&e->out, n);
    e->handed -= n;
}

void email__imap_engine_quit(imap_engine_t *e)
{
    if (e->quit_asked || e->state >= IM_LOGOUT)
        return;
    e->quit_asked = true;
    email__imap_pump(e);
}

void email__imap_engine_abort(imap_engine_t *e, int error, const char *text)
{
    error = error ? error : EMAIL_ECLOSED;
    if (email__imap_reader_busy(&e->rd)) /* a message cut short says so */
        email__imap_fail(e, error, "%s in the middle of a response",
                         text ? text : "the connection ended");
    else
        email__imap_fail(e, error, "%s", text ? text : email_strerror(error));
}

bool email__imap_engine_waiting(const imap_engine_t *e)
{
    return e->state != IM_CLOSED && e->state != IM_CONNECTING &&
           e->state != IM_TLS_HANDSHAKE && (e->state != IM_READY || e->nflight);
}

bool email__imap_engine_quitting(const imap_engine_t *e) { return e->state == IM_LOGOUT; }
bool email__imap_engine_is_ready(const imap_engine_t *e) { return e->state == IM_READY; }
bool email__imap_engine_is_closed(const imap_engine_t *e) { return e->state == IM_CLOSED; }
uint64_t email__imap_engine_replies(const imap_engine_t *e) { return e->replies; }
unsigned email__imap_engine_caps(const imap_engine_t *e) { return e->caps; }
uint32_t email__imap_engine_exists(const imap_engine_t *e) { return e->exists; }
uint32_t email__imap_engine_recent(const imap_engine_t *e) { return e->recent; }
uint32_t email__imap_engine_uidvalidity(const imap_engine_t *e) { return e->uidvalidity; }
uint32_t email__imap_engine_uidnext(const imap_engine_t *e) { return e->uidnext; }

const email_status_t *email__imap_engine_status(const imap_engine_t *e)
{
    return &e->status;
}

/* ------------------------------------------------------------------------------------------- */
/* For lib/connection.c                                                                         */

static void op_free(void *e) { email__imap_engine_free(e); }
static void op_start(void *e, bool clear) { email__imap_engine_start(e, clear); }
static int op_feed(void *e, const char *d, size_t n) { return email__imap_engine_feed(e, d, n); }
static size_t op_take(void *e, const char **d) { return email__imap_engine_take(e, d); }
static void op_written(void *e, size_t n) { email__imap_engine_written(e, n); }
static bool op_waiting(const void *e) { return email__imap_engine_waiting(e); }
static bool op_quitting(const void *e) { return email__imap_engine_quitting(e); }
static uint64_t op_replies(const void *e) { return email__imap_engine_replies(e); }
static void op_quit(void *e) { email__imap_engine_quit(e); }
static void op_abort(void *e, int err, const char *t) { email__imap_engine_abort(e, err, t); }
static void op_tls(void *e) { email__imap_engine_tls_established(e); }
static const email_status_t *op_status(const void *e) { return email__imap_engine_status(e); }

const engine_ops_t email__imap_ops = {
    .name = "IMAP", .free = op_free, .start = op_start, .feed = op_feed, .take = op_take,
    .written = op_written, .waiting = op_waiting, .quitting = op_quitting,
    .replies = op_replies, .quit = op_quit, .abort = op_abort, .tls_established = op_tls,
    .status = op_status,
};
