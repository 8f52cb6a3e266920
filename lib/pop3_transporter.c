/*
 * 4D's POP3 transporter: one server's settings (validated and kept by an SMTP transporter of the
 * same email_server_t, whose connection configuration is reused with the POP3 engine) and one
 * POP3 session, opened by the first call and kept until email_pop3_transporter_free says QUIT
 * (which commits deletions; a connection lost before commits none). Each synchronous call
 * crosses to the loop thread and waits there for its commands' answers; synchronous calls on one
 * transporter take turns. The asynchronous ones (pop3_transporter_async.c) post the same calls
 * without waiting, so that all of them reach the session's queue in the order they were made.
 * Each session opened counts as a generation: the named sessions bind their message numbers to
 * the one they listed on, and a call bound to a lost one fails with EMAIL_ESTALE.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pop3_transporter_internal.h"

static void release(email_pop3_transporter_t *t)
{
    /* email_shutdown must not reach t once freed: the settings may outlive it a while */
    email__transporter_set_quiesce(t->settings, NULL, NULL);
    email_transporter_free(t->settings);
    pthread_mutex_destroy(&t->turn);
    free(t);
}

static int on_body(pop3_cmd_t *cmd, const char *data, size_t n)
{
    pop3_call_t *c = cmd->user;
    if (c->parser)
        return email__mime_parser_feed(c->parser, data, n);
    return email__buf_append(&c->body, data, n);
}

/* STAT gives count and size; LIST adds an entry per message; UIDL fills their uids. */
static int on_item(pop3_cmd_t *cmd, unsigned number, uint64_t size, const char *uid)
{
    pop3_call_t *c = cmd->user;
    if (cmd->kind == POP3_STAT) {
        c->count = number;
        c->size = size;
        return 0;
    }
    if (cmd->kind == POP3_UIDL) {
        for (size_t i = 0; i < c->ninfos; i++)
            if (c->infos[i].number == number)
                email__strlcpy(c->infos[i].uid, uid, sizeof c->infos[i].uid);
        return 0;
    }
    if (c->ninfos == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        void *p = realloc(c->infos, cap * sizeof *c->infos);
        if (!p)
            return EMAIL_ENOMEM;
        c->infos = p;
        c->cap = cap;
    }
    c->infos[c->ninfos++] = (email_pop3_mail_info_t){.number = number, .size = size};
    return 0;
}

/* The first failing command's status is the call's; else the last one's. */
static void on_done(pop3_cmd_t *cmd)
{
    pop3_call_t *c = cmd->user;
    bool no_uidl = cmd->kind == POP3_UIDL && c->uidl_optional && cmd->status.status == -1;
    if (!c->rc && !no_uidl) {
        email__status_copy_into(&c->status, &cmd->status);
        if (!cmd->status.success)
            c->rc = cmd->status.error ? cmd->status.error : EMAIL_ESERVER;
    }
    if (--c->pending > 0)
        return;
    if (c->call)
        email__runtime_call_done(c->call);
    else
        c->finish(c);
}

static void conn_closed(void *ud, connection_t *conn, const email_status_t *why)
{
    email_pop3_transporter_t *t = ud;
    (void)why;
    if (t->conn == conn)
        t->conn = NULL;
    if (t->freeing) {
        release(t);
        return;
    }
    if (t->quitting) {
        pop3_call_t *c = t->quitting;
        t->quitting = NULL;
        email__status_copy_into(&c->status, why);
        c->rc = why->error;
        email__runtime_call_done(c->call);
    }
}

/* Commands in flight with PIPELINING: a thousand queued reads go in a few round trips (the
 * loop reads the answers while it writes, so the server never waits on a full socket). */
#define POP3_WINDOW 512

static int open_session(email_pop3_transporter_t *t)
{
    static const connection_callbacks_t cbs = {.closed = conn_closed};
    connection_config_t cfg;
    email__transporter_make_config(t->settings, &cfg);
    smtp_engine_config_t *s = &cfg.engine;
    cfg.protocol = CONN_POP3;
    cfg.pop3_engine = (pop3_engine_config_t){
        .creds = s->creds,
        .auth_mech = s->auth_mech,
        .client_cert = s->client_cert,
        .stls = s->starttls == SMTP_TLS_REQUIRED      ? POP3_TLS_REQUIRED
                : s->starttls == SMTP_TLS_IF_OFFERED ? POP3_TLS_IF_OFFERED
                                                     : POP3_TLS_NEVER,
        .tls_active = s->tls_active,
    };
    cfg.pop3_engine.window = POP3_WINDOW;
    t->generation++;
    t->conn = email__connection_new(email__runtime_loop(), &cfg, &cbs, t);
    if (!t->conn)
        return EMAIL_ENOMEM;
    return email__connection_start(t->conn); /* a failure still reports closed */
}

/* A call bound to an earlier session (its message numbers) finds it gone: numbers from the
 * old session's list may name other messages now, and its deletions were lost. */
static int session_check(email_pop3_transporter_t *t, const pop3_call_t *c)
{
    if (!c->want_generation)
        return t->conn ? 0 : open_session(t);
    return t->conn && t->generation == c->want_generation ? 0 : EMAIL_ESTALE;
}

static const char *failure_text(int rc)
{
    if (rc == EMAIL_ESTALE)
        return "the connection to the POP3 server was lost, so the message numbers of the "
               "session's list may no longer be valid and its deletions were not committed "
               "(close the session and start it again)";
    return email_strerror(rc);
}

void email__pop3_call_submit(pop3_call_t *c)
{
    email_pop3_transporter_t *t = c->t;
    int rc = session_check(t, c);
    c->generation = t->generation;
    c->pending = c->ncmds;
    for (size_t i = 0; i < c->ncmds; i++) {
        pop3_cmd_t *cmd = &c->cmds[i];
        cmd->body = on_body;
        cmd->item = on_item;
        cmd->done = on_done;
        cmd->user = c;
        rc = rc ? rc : !t->conn ? EMAIL_ECLOSED : email__connection_pop3_submit(t->conn, cmd);
        if (rc) {
            email__status_fail(&cmd->status, rc, "%s", failure_text(rc));
            on_done(cmd);
        }
    }
}

/* Loop thread: a synchronous call's commands go to the session. */
static void run_call(runtime_call_t *call, void *arg)
{
    pop3_call_t *c = arg;
    c->call = call;
    email__pop3_call_submit(c);
}

void email__pop3_call_init(pop3_call_t *c, email_pop3_transporter_t *t)
{
    c->t = t;
    email__buf_init(&c->body);
    email__status_init(&c->status);
}

/* Runs the call's commands and waits; sets ErrorInfo. 0 or the EMAIL_E... code. */
static int do_call(email_pop3_transporter_t *t, pop3_call_t *c, const char *what,
                   email_status_t *status)
{
    email__pop3_call_init(c, t);
    pthread_mutex_lock(&t->turn);
    int rc = email__runtime_loop_call(run_call, c);
    pthread_mutex_unlock(&t->turn);
    if (rc)
        email__status_fail(&c->status, rc, "%s", email_strerror(rc));
    else
        rc = c->rc;
    c->status.success = rc == 0;
    c->status.error = rc;
    if (status)
        email__status_copy_into(status, &c->status);
    if (rc)
        email__error_set_status(rc, what, &c->status);
    else
        email__error_clear();
    return rc;
}

/* email_shutdown: the session says QUIT now, so the loop can end; the next call opens another. */
static void quiesce(void *arg)
{
    email_pop3_transporter_t *t = arg;
    if (t->conn)
        email__connection_quit(t->conn);
}

/* A transporter around settings already made (freed here on failure), or NULL: no memory. */
static email_pop3_transporter_t *adopt(email_transporter_t *settings)
{
    email_pop3_transporter_t *t = calloc(1, sizeof *t);
    if (!t) {
        email_transporter_free(settings);
        return NULL;
    }
    t->settings = settings;
    pthread_mutex_init(&t->turn, NULL);
    email__transporter_set_quiesce(t->settings, quiesce, t);
    return t;
}

email_pop3_transporter_t *email_pop3_transporter_new(const email_server_t *server)
{
    if (!server) {
        email__error_set(EMAIL_EINVAL, "email_pop3_transporter_new: no server settings");
        return NULL;
    }
    email_server_t s = *server;
    if (!s.port)
        s.port = s.security == EMAIL_SECURITY_TLS ? 995 : 110;
    email_transporter_t *settings = email_transporter_new(&s);
    if (!settings) /* ErrorInfo says why */
        return NULL;
    email_pop3_transporter_t *t = adopt(settings);
    if (!t)
        email__error_set(EMAIL_ENOMEM, "out of memory");
    return t;
}

email_pop3_transporter_t *email__pop3_transporter_new_ex(const email_server_t *server,
                                                        const transporter_policy_t *policy,
                                                        char *err, size_t errlen)
{
    email_transporter_t *settings = email__transporter_new_ex(server, policy, err, errlen);
    if (!settings)
        return NULL;
    email_pop3_transporter_t *t = adopt(settings);
    if (!t)
        snprintf(err, errlen, "out of memory");
    return t;
}

static void run_quit(runtime_call_t *call, void *arg)
{
    pop3_call_t *c = arg;
    c->call = call;
    if (!c->t->conn) {
        email__runtime_call_done(call);
        return;
    }
    c->t->quitting = c;
    email__connection_quit(c->t->conn);
}

/* On the loop's own thread nothing can wait: QUIT goes (after the calls posted before the free,
 * so that they are answered first), and the end of the session frees. */
static void quit_later(void *arg)
{
    email_pop3_transporter_t *t = arg;
    if (!t->conn) {
        release(t);
        return;
    }
    t->freeing = true;
    email__connection_quit(t->conn);
}

void email_pop3_transporter_free(email_pop3_transporter_t *t)
{
    if (!t)
        return;
    pop3_call_t c = {.t = t};
    email__status_init(&c.status);
    int rc = email__runtime_loop_call(run_quit, &c);
    if (rc == EMAIL_EWOULDBLOCK) {
        email__error_clear();
        if (email__runtime_post(quit_later, t))
            quit_later(t);
        return;
    }
    if (!rc && c.rc)
        email__error_set_status(c.rc, "POP3 QUIT", &c.status);
    else
        email__error_clear();
    release(t);
}

typedef struct log_op {
    email_pop3_transporter_t *t;
    log_sink_t *log;
} log_op_t;

static void run_set_log(runtime_call_t *call, void *arg)
{
    log_op_t *o = arg;
    log_sink_t *old = o->t->settings->log;
    o->t->settings->log = o->log; /* the next sessions' */
    if (o->t->conn)
        email__connection_set_log(o->t->conn, o->log);
    email__log_sink_release(old);
    email__runtime_call_done(call);
}

int email__pop3_transporter_set_log(email_pop3_transporter_t *t, const char *path, char *err,
                                    size_t errlen)
{
    log_op_t o = {.t = t};
    if (path && !(o.log = email__log_sink_open(path, err, errlen)))
        return EMAIL_EIO;
    int rc = email__runtime_loop_call(run_set_log, &o);
    if (rc) {
        email__log_sink_release(o.log);
        snprintf(err, errlen, "%s", email_strerror(rc));
    }
    return rc;
}

/* One command without data of its own (on session `generation` unless 0). */
static int simple_in(email_pop3_transporter_t *t, enum pop3_kind kind, unsigned number,
                     uint64_t generation, const char *what, email_status_t *status)
{
    if (!t)
        return email__status_refuse(status, EMAIL_EINVAL, "%s: the transporter is NULL", what);
    pop3_call_t c = {.ncmds = 1, .want_generation = generation};
    c.cmds[0] = (pop3_cmd_t){.kind = kind, .number = number};
    return do_call(t, &c, what, status);
}

static int simple(email_pop3_transporter_t *t, enum pop3_kind kind, unsigned number,
                  const char *what, email_status_t *status)
{
    return simple_in(t, kind, number, 0, what, status);
}

int email__pop3_delete_in(email_pop3_transporter_t *t, unsigned number, uint64_t generation,
                          const char *what)
{
    return simple_in(t, POP3_DELE, number, generation, what, NULL);
}

int email_pop3_check_connection(email_pop3_transporter_t *t, email_status_t *status)
{
    return simple(t, POP3_NOOP, 0, "email_pop3_check_connection", status);
}

int email_pop3_delete(email_pop3_transporter_t *t, unsigned number, email_status_t *status)
{
    if (!number)
        return email__status_refuse(status, EMAIL_EINVAL,
                                    "email_pop3_delete: messages count from 1");
    return simple(t, POP3_DELE, number, "email_pop3_delete", status);
}

int email_pop3_undelete_all(email_pop3_transporter_t *t, email_status_t *status)
{
    return simple(t, POP3_RSET, 0, "email_pop3_undelete_all", status);
}

int email_pop3_get_box_info(email_pop3_transporter_t *t, email_pop3_box_info_t *info,
                            email_status_t *status)
{
    if (!t || !info)
        return email__status_refuse(status, EMAIL_EINVAL, "email_pop3_get_box_info: %s is NULL",
                                    t ? "info" : "the transporter");
    pop3_call_t c = {.ncmds = 1};
    c.cmds[0] = (pop3_cmd_t){.kind = POP3_STAT};
    int rc = do_call(t, &c, "email_pop3_get_box_info", status);
    info->count = rc ? 0 : c.count;
    info->size = rc ? 0 : c.size;
    return rc;
}

int email__pop3_list(email_pop3_transporter_t *t, email_pop3_mail_info_t **list,
                     size_t *count, uint64_t *generation, email_status_t *status,
                     const char *what)
{
    *list = NULL;
    *count = 0;
    /* a server without UIDL still lists its messages: their uids stay "" */
    pop3_call_t c = {.ncmds = 2, .uidl_optional = true};
    c.cmds[0] = (pop3_cmd_t){.kind = POP3_LIST};
    c.cmds[1] = (pop3_cmd_t){.kind = POP3_UIDL}; /* pipelined with LIST when offered */
    int rc = do_call(t, &c, what, status);
    if (rc) {
        free(c.infos);
        return rc;
    }
    *list = c.infos;
    *count = c.ninfos;
    if (generation)
        *generation = c.generation;
    return 0;
}

int email_pop3_get_mail_info_list(email_pop3_transporter_t *t, email_pop3_mail_info_t **list,
                                  size_t *count, email_status_t *status)
{
    if (!t || !list || !count)
        return email__status_refuse(status, EMAIL_EINVAL,
                                    "email_pop3_get_mail_info_list: %s is NULL",
                                    !t ? "the transporter" : !list ? "list" : "count");
    return email__pop3_list(t, list, count, NULL, status, "email_pop3_get_mail_info_list");
}

int email_pop3_get_mail_raw(email_pop3_transporter_t *t, unsigned number, char **data,
                            size_t *length, email_status_t *status)
{
    if (!t || !data || !length || !number)
        return email__status_refuse(status, EMAIL_EINVAL, "email_pop3_get_mail_raw: %s",
                                    !number ? "messages count from 1" : "an argument is NULL");
    *data = NULL;
    *length = 0;
    pop3_call_t c = {.ncmds = 1};
    c.cmds[0] = (pop3_cmd_t){.kind = POP3_RETR, .number = number};
    int rc = do_call(t, &c, "email_pop3_get_mail_raw", status);
    if (!rc && email__buf_putc(&c.body, '\0'))
        rc = email__error_set(EMAIL_ENOMEM, "out of memory");
    if (rc) {
        email__buf_free(&c.body);
        return rc;
    }
    *length = c.body.len - 1;
    *data = email__buf_steal(&c.body, NULL);
    return 0;
}

int email__pop3_fetch(email_pop3_transporter_t *t, unsigned number, bool headers_only,
                      uint64_t generation, const email_pop3_mail_info_t *known,
                      email_message_t **out, email_status_t *status, const char *what)
{
    *out = NULL;
    /* LIST and UIDL give the message's size and uid, pipelined with its RETR (or TOP), unless
     * the caller knows them (a listing of this same session) */
    pop3_call_t c = {.ncmds = known ? 1 : 3, .uidl_optional = true, .want_generation = generation};
    enum pop3_kind read = headers_only ? POP3_TOP : POP3_RETR;
    c.cmds[0] = (pop3_cmd_t){.kind = known ? read : POP3_LIST, .number = number};
    c.cmds[1] = (pop3_cmd_t){.kind = POP3_UIDL, .number = number};
    c.cmds[2] = (pop3_cmd_t){.kind = read, .number = number};
    if (known) {
        c.infos = malloc(sizeof *c.infos);
        if (!c.infos)
            return email__status_refuse(status, EMAIL_ENOMEM, "%s: out of memory", what);
        c.infos[0] = *known;
        c.ninfos = c.cap = 1;
    }
    if (email__mime_parser_new(&c.parser)) {
        free(c.infos);
        return email__status_refuse(status, EMAIL_ENOMEM, "%s: out of memory", what);
    }
    int rc = do_call(t, &c, what, status);
    email_message_t *m = NULL;
    if (rc) {
        email__mime_parser_free(c.parser);
    } else if ((rc = email__mime_parser_finish(c.parser, &m)) ||
               (rc = email__message_set_received(m, c.ninfos ? c.infos[0].uid : NULL,
                                                 c.ninfos ? c.infos[0].size : 0))) {
        email_message_free(m);
        m = NULL;
        rc = email__message_parse_error(rc, what);
        if (status)
            email__status_fail(status, rc, "%s", email_strerror(rc));
    }
    free(c.infos);
    *out = m;
    return rc;
}

int email_pop3_get_mail(email_pop3_transporter_t *t, unsigned number, email_message_t **out,
                        email_status_t *status)
{
    if (out)
        *out = NULL;
    if (!t || !out || !number)
        return email__status_refuse(status, EMAIL_EINVAL, "email_pop3_get_mail: %s",
                                    !number ? "messages count from 1" : "an argument is NULL");
    return email__pop3_fetch(t, number, false, 0, NULL, out, status, "email_pop3_get_mail");
}
