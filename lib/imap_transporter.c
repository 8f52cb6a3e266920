/*
 * 4D's IMAP transporter: one server's settings (validated and kept by an SMTP transporter of the
 * same email_server_t, whose connection configuration is reused with the IMAP engine) and one
 * IMAP session, opened by the first call and kept until email_imap_transporter_free says
 * LOGOUT. The mailbox chosen last is selected again on a new session before anything that names
 * messages by UID, and a changed UIDVALIDITY stops that call (EMAIL_ESTALE) before its UIDs can
 * touch other messages. Each synchronous call (imap_transporter_sync.c) crosses to the loop
 * thread and waits there for its commands' answers; the asynchronous ones
 * (imap_transporter_async.c) post the same calls without waiting, so that all of them reach the
 * session's queue in the order they were made. Calls that come while the box is being selected
 * again wait for it in order (one SELECT for all of them).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imap_transporter_internal.h"
#include "message.h"

static void release(email_imap_transporter_t *t)
{
    /* email_shutdown must not reach t once freed: the settings may outlive it a while */
    email__transporter_set_quiesce(t->settings, NULL, NULL);
    email_transporter_free(t->settings);
    pthread_mutex_destroy(&t->turn);
    email__mime_parser_free(t->orphan);
    free(t->box);
    free(t);
}

/* Room for one more item of `size` bytes in *p (cap items): 0 or EMAIL_ENOMEM. */
static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *q = realloc(*p, ncap * size);
    if (!q)
        return EMAIL_ENOMEM;
    *p = q;
    *cap = ncap;
    return 0;
}

static fetch_slot_t *slot_of(imap_call_t *c, uint32_t uid)
{
    size_t lo = 0, hi = c->nslots;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->slots[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nslots && c->slots[lo].uid == uid ? &c->slots[lo] : NULL;
}

/* The slot awaiting uid: *c's, else that of the first call with a FETCH in flight still wanting
 * it (the engine hands a response to the first FETCH that named its UID, so a UID read twice
 * by pipelined calls reaches the later one here); NULL when none does. */
static fetch_slot_t *wanted(imap_call_t **c, uint32_t uid)
{
    fetch_slot_t *s = slot_of(*c, uid);
    if (s && !s->done)
        return s;
    for (imap_call_t *x = (*c)->t->fetching; x; x = x->next_fetch)
        if ((s = slot_of(x, uid)) != NULL && !s->done) {
            *c = x;
            return s;
        }
    return NULL;
}

static int on_body(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    imap_call_t *c = cmd->user;
    /* FETCH items come in any order: a UID given after the body claims it at the end (the
     * body waits on the transporter: one response is read at a time, whichever call it is) */
    fetch_slot_t *s = uid ? wanted(&c, uid) : NULL;
    mime_parser_t **p = !uid ? &c->t->orphan : s ? &s->parser : NULL;
    if (!p)
        return 0;
    if (!*p && email__mime_parser_new(p))
        return EMAIL_ENOMEM;
    return email__mime_parser_feed(*p, data, n);
}

/* A FETCH response ended: its message is whole (an empty body when none came). */
static int fetched(imap_call_t *c, uint32_t uid, uint64_t size)
{
    fetch_slot_t *s = wanted(&c, uid);
    mime_parser_t *orphan = c->t->orphan;
    c->t->orphan = NULL;
    if (!s) { /* a flag change of a message already read */
        email__mime_parser_free(orphan);
        return 0;
    }
    if (orphan && !s->parser)
        s->parser = orphan;
    else
        email__mime_parser_free(orphan);
    if (!s->parser && email__mime_parser_new(&s->parser))
        return EMAIL_ENOMEM;
    email_message_t *m = NULL;
    char text[16];
    snprintf(text, sizeof text, "%u", uid);
    int rc = email__mime_parser_finish(s->parser, &m);
    s->parser = NULL;
    s->done = true;
    if (!rc && (rc = email__message_set_received(m, text, size)) != 0)
        email_message_free(m);
    else if (!rc)
        c->out[s->index] = m;
    return rc;
}

static int on_item(imap_cmd_t *cmd, uint32_t seq, uint32_t uid, uint64_t size, const char *flags)
{
    imap_call_t *c = cmd->user;
    (void)seq;
    (void)flags;
    if (cmd->kind == IMAP_FETCH)
        return fetched(c, uid, size);
    if (grow((void **)&c->found, &c->capfound, c->nfound, sizeof *c->found))
        return EMAIL_ENOMEM;
    c->found[c->nfound++] = uid;
    return 0;
}

static unsigned attributes_of(const char *attrs)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"\\Noselect", EMAIL_IMAP_NOSELECT}, {"\\NonExistent", EMAIL_IMAP_NOSELECT},
                 {"\\Noinferiors", EMAIL_IMAP_NOINFERIORS},
                 {"\\HasChildren", EMAIL_IMAP_HASCHILDREN},
                 {"\\HasNoChildren", EMAIL_IMAP_HASNOCHILDREN},
                 {"\\Marked", EMAIL_IMAP_MARKED}, {"\\Unmarked", EMAIL_IMAP_UNMARKED}};
    unsigned bits = 0;
    for (const char *p = attrs; *p;) {
        size_t n = strcspn(p, " ");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && email__strncasecmp(p, names[i].name, n) == 0)
                bits |= names[i].bit;
        p += n + (p[n] == ' ');
    }
    return bits;
}

static int on_listed(imap_cmd_t *cmd, const char *attributes, char delimiter, const char *name)
{
    imap_call_t *c = cmd->user;
    if (grow((void **)&c->boxes, &c->capboxes, c->nboxes, sizeof *c->boxes))
        return EMAIL_ENOMEM;
    email_imap_box_t *b = &c->boxes[c->nboxes];
    memset(b, 0, sizeof *b);
    if (!(b->name = email__strdup(name)))
        return EMAIL_ENOMEM;
    b->delimiter[0] = delimiter;
    b->attributes = attributes_of(attributes);
    b->selectable = !(b->attributes & EMAIL_IMAP_NOSELECT);
    c->nboxes++;
    return 0;
}

/* The call's own SELECT / EXAMINE answered: the box becomes the transporter's. */
static void box_selected(imap_call_t *c, imap_cmd_t *cmd)
{
    email_imap_transporter_t *t = c->t;
    const imap_engine_t *e = t->conn ? email__connection_imap_engine(t->conn) : NULL;
    t->selected = cmd->status.success && e;
    if (!t->selected)
        return;
    uint32_t uv = email__imap_engine_uidvalidity(e);
    c->info.messages = email__imap_engine_exists(e);
    c->info.recent = email__imap_engine_recent(e);
    c->info.uidvalidity = uv;
    c->info.uidnext = email__imap_engine_uidnext(e);
    c->info.uidvalidity_changed = t->box && strcmp(t->box, cmd->mailbox) == 0 &&
                                  t->uidvalidity && uv != t->uidvalidity;
    t->caps = email__imap_engine_caps(e);
    char *box = email__strdup(cmd->mailbox);
    if (!box) {
        c->rc = EMAIL_ENOMEM;
        email__status_fail(&c->status, EMAIL_ENOMEM, "out of memory");
        t->selected = false;
        return;
    }
    free(t->box);
    t->box = box;
    t->mode = cmd->kind == IMAP_EXAMINE ? EMAIL_IMAP_READ_ONLY : EMAIL_IMAP_READ_WRITE;
    t->uidvalidity = uv;
}

/* Every command of the call answered (or failed): its caller returns, or its finish runs. */
static void call_end(imap_call_t *c)
{
    if (c->call)
        email__runtime_call_done(c->call);
    else
        c->finish(c);
}

static void list_fetch(imap_call_t *c)
{
    imap_call_t **p = &c->t->fetching;
    while (*p)
        p = &(*p)->next_fetch;
    *p = c;
    c->next_fetch = NULL;
}

static void unlist_fetch(imap_call_t *c)
{
    for (imap_call_t **p = &c->t->fetching; *p; p = &(*p)->next_fetch)
        if (*p == c) {
            *p = c->next_fetch;
            return;
        }
}

/* The first failing command's status is the call's; else the last one's. */
static void on_done(imap_cmd_t *cmd)
{
    imap_call_t *c = cmd->user;
    if (cmd->kind == IMAP_SELECT || cmd->kind == IMAP_EXAMINE) {
        c->t->selecting--;
        box_selected(c, cmd);
    }
    if (!c->rc) {
        email__status_copy_into(&c->status, &cmd->status);
        if (!cmd->status.success)
            c->rc = cmd->status.error ? cmd->status.error : EMAIL_ESERVER;
    }
    if (cmd->kind == IMAP_FETCH)
        unlist_fetch(c);
    if (--c->pending == 0)
        call_end(c);
}

static void conn_closed(void *ud, connection_t *conn, const email_status_t *why)
{
    email_imap_transporter_t *t = ud;
    if (t->conn == conn) {
        t->conn = NULL;
        t->selected = false;
        email__mime_parser_free(t->orphan); /* a response cut short */
        t->orphan = NULL;
    }
    if (t->freeing) {
        release(t);
        return;
    }
    if (t->quitting) {
        imap_call_t *c = t->quitting;
        t->quitting = NULL;
        email__status_copy_into(&c->status, why);
        c->rc = why->error;
        email__runtime_call_done(c->call);
    }
}

static int open_session(email_imap_transporter_t *t)
{
    static const connection_callbacks_t cbs = {.closed = conn_closed};
    connection_config_t cfg;
    email__transporter_make_config(t->settings, &cfg);
    smtp_engine_config_t *s = &cfg.engine;
    cfg.protocol = CONN_IMAP;
    cfg.imap_engine = (imap_engine_config_t){
        .creds = s->creds,
        .auth_mech = s->auth_mech,
        .client_cert = s->client_cert,
        .starttls = s->starttls == SMTP_TLS_REQUIRED      ? IMAP_TLS_REQUIRED
                    : s->starttls == SMTP_TLS_IF_OFFERED ? IMAP_TLS_IF_OFFERED
                                                         : IMAP_TLS_NEVER,
        .tls_active = s->tls_active,
    };
    t->selected = false;
    t->conn = email__connection_new(email__runtime_loop(), &cfg, &cbs, t);
    if (!t->conn)
        return EMAIL_ENOMEM;
    return email__connection_start(t->conn); /* a failure still reports closed */
}

/* The call's commands go to the session (rc: why they cannot). */
static void submit_all(imap_call_t *c, int rc)
{
    email_imap_transporter_t *t = c->t;
    c->pending = c->ncmds;
    for (size_t i = 0; i < c->ncmds; i++) {
        imap_cmd_t *cmd = &c->cmds[i];
        cmd->body = on_body;
        cmd->item = on_item;
        cmd->listed = on_listed;
        cmd->done = on_done;
        cmd->user = c;
        if (cmd->kind == IMAP_FETCH)
            list_fetch(c); /* off the list again at its done */
        if (cmd->kind == IMAP_SELECT || cmd->kind == IMAP_EXAMINE)
            t->selecting++;  /* down again at its done */
        rc = rc ? rc : !t->conn ? EMAIL_ECLOSED : email__connection_imap_submit(t->conn, cmd);
        if (rc) {
            email__status_fail(&cmd->status, rc, "%s", rc == EMAIL_EINVAL
                               ? "the command is malformed (CR, LF or non-ASCII criteria?)"
                               : email_strerror(rc));
            on_done(cmd);
        }
    }
}

/* A call that names messages by UID: it needs the chosen mailbox selected first. */
static bool needs_box(const imap_call_t *c)
{
    return !c->selects && c->ncmds && c->cmds[0].kind != IMAP_NOOP &&
           c->cmds[0].kind != IMAP_LIST;
}

static void fail_call(imap_call_t *c, int rc, const email_status_t *why)
{
    email__status_copy_into(&c->status, why);
    c->rc = rc;
    call_end(c);
}

/* A call whose UIDs are stale fails in its turn: a NOOP stands for its commands, so that its
 * outcome comes after those of the calls before it. */
static void fail_in_turn(imap_call_t *c, const email_status_t *why)
{
    email__status_copy_into(&c->status, why);
    c->rc = EMAIL_ESTALE; /* kept whatever the NOOP's answer */
    if (c->t->reselecting) { /* the session was lost meanwhile: nothing to wait for */
        call_end(c);
        return;
    }
    c->ncmds = 1;
    c->cmds[0] = (imap_cmd_t){.kind = IMAP_NOOP};
    submit_all(c, 0);
}

/* The calls that came while the mailbox was being selected again go now, in their order: with
 * its error when that failed (they were queued on that session); those naming UIDs with
 * EMAIL_ESTALE (in their turn) up to the first that selects a mailbox itself when its
 * UIDVALIDITY changed. */
static void run_waiting(email_imap_transporter_t *t, int rc, const email_status_t *why)
{
    imap_call_t *c = t->waiting;
    t->waiting = t->waiting_tail = NULL;
    t->reselecting = false;
    bool stale = rc == EMAIL_ESTALE;
    while (c) {
        imap_call_t *next = c->next_waiting;
        stale = stale && !c->selects;
        if (rc && rc != EMAIL_ESTALE)
            fail_call(c, rc, why);
        else if (stale && needs_box(c))
            fail_in_turn(c, why);
        else
            email__imap_call_start(c); /* waits again behind a new selection if need be */
        c = next;
    }
    if (t->quit_pending && !t->reselecting) { /* a free waited for the calls before it */
        t->quit_pending = false;
        if (t->conn)
            email__connection_quit(t->conn);
    }
}

/* The chosen mailbox is selected again: the call's commands go, unless its UIDs are stale. */
static void reselected(imap_cmd_t *cmd)
{
    imap_call_t *c = cmd->user;
    email_imap_transporter_t *t = c->t;
    const imap_engine_t *e = t->conn ? email__connection_imap_engine(t->conn) : NULL;
    if (!cmd->status.success || !e) {
        int rc = cmd->status.error ? cmd->status.error : EMAIL_ESERVER;
        email_status_t why; /* c may be gone once its outcome went */
        email__status_init(&why);
        email__status_copy_into(&why, &cmd->status);
        fail_call(c, rc, &why);
        run_waiting(t, rc, &why);
        email_status_clear(&why);
        return;
    }
    t->selected = true;
    t->caps = email__imap_engine_caps(e);
    uint32_t uv = email__imap_engine_uidvalidity(e), old = t->uidvalidity;
    t->uidvalidity = uv;
    if (old && uv != old) {
        email_status_t why;
        email__status_init(&why);
        email__status_fail(&why, EMAIL_ESTALE, "the mailbox \"%s\" changed while the "
                           "session was closed (UIDVALIDITY %u, now %u): its UIDs are no longer "
                           "valid", cmd->mailbox, old, uv);
        fail_call(c, EMAIL_ESTALE, &why);
        run_waiting(t, EMAIL_ESTALE, &why);
        email_status_clear(&why);
        return;
    }
    submit_all(c, 0);
    run_waiting(t, 0, NULL);
}

void email__imap_call_start(imap_call_t *c)
{
    email_imap_transporter_t *t = c->t;
    if (t->reselecting) { /* behind the calls waiting for the mailbox, in order */
        c->next_waiting = NULL;
        if (t->waiting_tail)
            t->waiting_tail->next_waiting = c;
        else
            t->waiting = c;
        t->waiting_tail = c;
        return;
    }
    int rc = t->conn ? 0 : open_session(t);
    /* behind a SELECT in flight the call works in the box that one chooses */
    if (rc || t->selected || t->selecting || !needs_box(c)) {
        submit_all(c, rc);
        return;
    }
    if (!t->box && !(t->box = email__strdup("INBOX")))
        rc = EMAIL_ENOMEM;
    c->reselect = (imap_cmd_t){
        .kind = t->mode == EMAIL_IMAP_READ_ONLY ? IMAP_EXAMINE : IMAP_SELECT,
        .mailbox = t->box, .done = reselected, .user = c};
    t->reselecting = true;
    rc = rc ? rc : !t->conn ? EMAIL_ECLOSED : email__connection_imap_submit(t->conn, &c->reselect);
    if (rc) {
        email__status_fail(&c->reselect.status, rc, "%s", email_strerror(rc));
        reselected(&c->reselect);
    }
}

/* Loop thread: a synchronous call's commands go to the session. */
static void run_call(runtime_call_t *call, void *arg)
{
    imap_call_t *c = arg;
    c->call = call;
    email__imap_call_start(c);
}

int email__imap_do_call(email_imap_transporter_t *t, imap_call_t *c, const char *what,
                        email_status_t *status)
{
    c->t = t;
    email__status_init(&c->status);
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

/* email_shutdown: the session says LOGOUT now, so the loop can end; the next call opens another. */
static void quiesce(void *arg)
{
    email_imap_transporter_t *t = arg;
    if (t->conn)
        email__connection_quit(t->conn);
}

/* A transporter around settings already made (freed here on failure), or NULL: no memory. */
static email_imap_transporter_t *adopt(email_transporter_t *settings)
{
    email_imap_transporter_t *t = calloc(1, sizeof *t);
    if (!t) {
        email_transporter_free(settings);
        return NULL;
    }
    t->settings = settings;
    pthread_mutex_init(&t->turn, NULL);
    email__transporter_set_quiesce(t->settings, quiesce, t);
    return t;
}

email_imap_transporter_t *email_imap_transporter_new(const email_server_t *server)
{
    if (!server) {
        email__error_set(EMAIL_EINVAL, "email_imap_transporter_new: no server settings");
        return NULL;
    }
    email_server_t s = *server;
    if (!s.port)
        s.port = s.security == EMAIL_SECURITY_TLS ? 993 : 143;
    email_transporter_t *settings = email_transporter_new(&s);
    if (!settings) /* ErrorInfo says why */
        return NULL;
    email_imap_transporter_t *t = adopt(settings);
    if (!t)
        email__error_set(EMAIL_ENOMEM, "out of memory");
    return t;
}

email_imap_transporter_t *email__imap_transporter_new_ex(const email_server_t *server,
                                                        const transporter_policy_t *policy,
                                                        char *err, size_t errlen)
{
    email_transporter_t *settings = email__transporter_new_ex(server, policy, err, errlen);
    if (!settings)
        return NULL;
    email_imap_transporter_t *t = adopt(settings);
    if (!t)
        snprintf(err, errlen, "out of memory");
    return t;
}

/* LOGOUT after the calls queued before it: those waiting for the mailbox go first. */
static void quit_after_calls(email_imap_transporter_t *t)
{
    if (t->reselecting)
        t->quit_pending = true;
    else
        email__connection_quit(t->conn);
}

static void run_quit(runtime_call_t *call, void *arg)
{
    imap_call_t *c = arg;
    c->call = call;
    if (!c->t->conn) {
        email__runtime_call_done(call);
        return;
    }
    c->t->quitting = c;
    quit_after_calls(c->t);
}

/* On the loop's own thread nothing can wait: LOGOUT goes (after the calls posted before the
 * free, so that they are answered first), and the end of the session frees. */
static void quit_later(void *arg)
{
    email_imap_transporter_t *t = arg;
    if (!t->conn) {
        release(t);
        return;
    }
    t->freeing = true;
    quit_after_calls(t);
}

void email_imap_transporter_free(email_imap_transporter_t *t)
{
    if (!t)
        return;
    imap_call_t c = {.t = t};
    email__status_init(&c.status);
    int rc = email__runtime_loop_call(run_quit, &c);
    if (rc == EMAIL_EWOULDBLOCK) {
        email__error_clear();
        if (email__runtime_post(quit_later, t))
            quit_later(t);
        return;
    }
    if (!rc && c.rc)
        email__error_set_status(c.rc, "IMAP LOGOUT", &c.status);
    else
        email__error_clear();
    release(t);
}

bool email__imap_transporter_uidplus(email_imap_transporter_t *t)
{
    return t->caps & IMAP_CAP_UIDPLUS;
}

typedef struct log_op {
    email_imap_transporter_t *t;
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

int email__imap_transporter_set_log(email_imap_transporter_t *t, const char *path, char *err,
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
