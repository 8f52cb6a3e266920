/*
 * 4D's IMAP transporter: one server's settings (validated and kept by an SMTP transporter of the
 * same email_server_t, whose connection configuration is reused with the IMAP engine) and one
 * IMAP session, opened by the first call and kept until email_imap_transporter_free says
 * LOGOUT. The mailbox chosen last is selected again on a new session before anything that names
 * messages by UID, and a changed UIDVALIDITY stops that call (EMAIL_ESTALE) before its UIDs can
 * touch other messages. Each public call crosses to the loop thread and waits there for its
 * commands' answers; calls on one transporter take turns.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imap.h"
#include "imap_transporter.h"
#include "message.h"
#include "mime_parse.h"
#include "transporter_internal.h"
#include "util.h"

struct email_imap_transporter_s {
    email_transporter_t *settings;
    pthread_mutex_t turn;         /* one call at a time */
    connection_t *conn;           /* loop thread; NULL until the first call, and once closed */
    struct imap_call *quitting;   /* a free waiting for the session's end */
    bool freeing;                 /* freed from the loop's thread: gone once the session ends */
    char *box;                    /* the mailbox chosen last (NULL: none yet) */
    int mode;                     /* its EMAIL_IMAP_READ_... */
    bool selected;                /* box is selected on conn */
    uint32_t uidvalidity;         /* box's when last selected, 0 unknown */
    unsigned caps;                /* IMAP_CAP_... of the last session */
};

static void release(email_imap_transporter_t *t)
{
    /* email_shutdown must not reach t once freed: the settings may outlive it a while */
    email__transporter_set_quiesce(t->settings, NULL, NULL);
    email_transporter_free(t->settings);
    pthread_mutex_destroy(&t->turn);
    free(t->box);
    free(t);
}

/* A message being fetched: its UID, its place in the caller's array, its parser meanwhile. */
typedef struct fetch_slot {
    uint32_t uid;
    size_t index;
    mime_parser_t *parser;
    bool done;
} fetch_slot_t;

#define MAX_CMDS 2

/* One public call on the loop thread: up to two pipelined commands and what they gathered. */
typedef struct imap_call {
    email_imap_transporter_t *t;
    runtime_call_t *call;
    imap_cmd_t cmds[MAX_CMDS];
    size_t ncmds, pending;
    imap_cmd_t reselect;              /* the chosen mailbox selected again on a new session */
    bool selects;                     /* the call selects a mailbox itself */
    uint32_t *found;                  /* SEARCH */
    size_t nfound, capfound;
    email_imap_box_t *boxes;          /* LIST */
    size_t nboxes, capboxes;
    fetch_slot_t *slots;              /* FETCH, sorted by UID */
    size_t nslots;
    mime_parser_t *orphan;            /* a body that came before its response's UID */
    email_message_t **out;
    email_imap_box_info_t info;       /* SELECT */
    int rc;
    email_status_t status;
} imap_call_t;

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

static int on_body(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    imap_call_t *c = cmd->user;
    /* FETCH items come in any order: a UID given after the body claims it at the end */
    fetch_slot_t *s = uid ? slot_of(c, uid) : NULL;
    mime_parser_t **p = !uid ? &c->orphan : s && !s->done ? &s->parser : NULL;
    if (!p)
        return 0;
    if (!*p && email__mime_parser_new(p))
        return EMAIL_ENOMEM;
    return email__mime_parser_feed(*p, data, n);
}

/* A FETCH response ended: its message is whole (an empty body when none came). */
static int fetched(imap_call_t *c, uint32_t uid, uint64_t size)
{
    fetch_slot_t *s = slot_of(c, uid);
    mime_parser_t *orphan = c->orphan;
    c->orphan = NULL;
    if (!s || s->done) { /* a flag change of a message already read */
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

/* The first failing command's status is the call's; else the last one's. */
static void on_done(imap_cmd_t *cmd)
{
    imap_call_t *c = cmd->user;
    if (cmd->kind == IMAP_SELECT || cmd->kind == IMAP_EXAMINE)
        box_selected(c, cmd);
    if (!c->rc) {
        email__status_copy_into(&c->status, &cmd->status);
        if (!cmd->status.success)
            c->rc = cmd->status.error ? cmd->status.error : EMAIL_ESERVER;
    }
    if (--c->pending == 0)
        email__runtime_call_done(c->call);
}

static void conn_closed(void *ud, connection_t *conn, const email_status_t *why)
{
    email_imap_transporter_t *t = ud;
    if (t->conn == conn) {
        t->conn = NULL;
        t->selected = false;
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
        rc = rc ? rc : !t->conn ? EMAIL_ECLOSED : email__connection_imap_submit(t->conn, cmd);
        if (rc) {
            email__status_fail(&cmd->status, rc, "%s", rc == EMAIL_EINVAL
                               ? "the command is malformed (CR, LF or non-ASCII criteria?)"
                               : email_strerror(rc));
            on_done(cmd);
        }
    }
}

/* The chosen mailbox is selected again: the call's commands go, unless its UIDs are stale. */
static void reselected(imap_cmd_t *cmd)
{
    imap_call_t *c = cmd->user;
    email_imap_transporter_t *t = c->t;
    const imap_engine_t *e = t->conn ? email__connection_imap_engine(t->conn) : NULL;
    if (!cmd->status.success || !e) {
        email__status_copy_into(&c->status, &cmd->status);
        c->rc = cmd->status.error ? cmd->status.error : EMAIL_ESERVER;
        email__runtime_call_done(c->call);
        return;
    }
    t->selected = true;
    t->caps = email__imap_engine_caps(e);
    uint32_t uv = email__imap_engine_uidvalidity(e), old = t->uidvalidity;
    t->uidvalidity = uv;
    if (old && uv != old) {
        c->rc = EMAIL_ESTALE;
        email__status_fail(&c->status, EMAIL_ESTALE, "the mailbox \"%s\" changed while the "
                           "session was closed (UIDVALIDITY %u, now %u): its UIDs are no longer "
                           "valid", cmd->mailbox, old, uv);
        email__runtime_call_done(c->call);
        return;
    }
    submit_all(c, 0);
}

/* Loop thread: the call's commands go to the session (opened if needed), after the chosen
 * mailbox when this session has not selected it yet. */
static void run_call(runtime_call_t *call, void *arg)
{
    imap_call_t *c = arg;
    c->call = call;
    email_imap_transporter_t *t = c->t;
    int rc = t->conn ? 0 : open_session(t);
    if (rc || c->selects || t->selected || !c->ncmds || c->cmds[0].kind == IMAP_NOOP ||
        c->cmds[0].kind == IMAP_LIST) {
        submit_all(c, rc);
        return;
    }
    if (!t->box && !(t->box = email__strdup("INBOX")))
        rc = EMAIL_ENOMEM;
    c->reselect = (imap_cmd_t){
        .kind = t->mode == EMAIL_IMAP_READ_ONLY ? IMAP_EXAMINE : IMAP_SELECT,
        .mailbox = t->box, .done = reselected, .user = c};
    rc = rc ? rc : !t->conn ? EMAIL_ECLOSED : email__connection_imap_submit(t->conn, &c->reselect);
    if (rc) {
        email__status_fail(&c->reselect.status, rc, "%s", email_strerror(rc));
        reselected(&c->reselect);
    }
}

/* Runs the call's commands and waits; sets ErrorInfo. 0 or the EMAIL_E... code. */
static int do_call(email_imap_transporter_t *t, imap_call_t *c, const char *what,
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

static void run_quit(runtime_call_t *call, void *arg)
{
    imap_call_t *c = arg;
    c->call = call;
    if (!c->t->conn) {
        email__runtime_call_done(call);
        return;
    }
    c->t->quitting = c;
    email__connection_quit(c->t->conn);
}

void email_imap_transporter_free(email_imap_transporter_t *t)
{
    if (!t)
        return;
    imap_call_t c = {.t = t};
    email__status_init(&c.status);
    int rc = email__runtime_loop_call(run_quit, &c);
    if (rc == EMAIL_EWOULDBLOCK) { /* the loop's own thread cannot wait: the end frees */
        email__error_clear();
        if (!t->conn) {
            release(t);
            return;
        }
        t->freeing = true;
        email__connection_quit(t->conn);
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

/* ------------------------------------------------------------------------------------------- */
/* The calls                                                                                    */

static int null_arg(const char *what, const char *name)
{
    return email__error_set(EMAIL_EINVAL, "%s: %s is NULL", what, name);
}

/* A call refused before anything went: the caller's status says so too, as on any failure. */
static int refused(email_status_t *status, int rc)
{
    if (status) {
        email__status_init(status);
        email__status_fail(status, rc, "%s", email__error_text());
    }
    return rc;
}

int email_imap_check_connection(email_imap_transporter_t *t, email_status_t *status)
{
    if (!t)
        return refused(status, null_arg("email_imap_check_connection", "the transporter"));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_NOOP};
    return do_call(t, &c, "email_imap_check_connection", status);
}

int email_imap_select_box(email_imap_transporter_t *t, const char *name, int mode,
                          email_imap_box_info_t *info, email_status_t *status)
{
    const char *what = "email_imap_select_box";
    if (info)
        memset(info, 0, sizeof *info);
    if (!t || !name)
        return refused(status, null_arg(what, t ? "the mailbox name" : "the transporter"));
    if (!*name || email__has_crlf(name))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: the mailbox name is empty "
                                                "or holds CR or LF", what));
    if (mode != EMAIL_IMAP_READ_WRITE && mode != EMAIL_IMAP_READ_ONLY)
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: mode %d is not "
                                                "EMAIL_IMAP_READ_WRITE or EMAIL_IMAP_READ_ONLY",
                                                what, mode));
    imap_call_t c = {.ncmds = 2, .selects = true};
    c.cmds[0] = (imap_cmd_t){.kind = mode == EMAIL_IMAP_READ_ONLY ? IMAP_EXAMINE : IMAP_SELECT,
                             .mailbox = name};
    c.cmds[1] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "UNSEEN"};
    int rc = do_call(t, &c, what, status);
    free(c.found);
    if (!rc && info) {
        *info = c.info;
        info->unseen = (uint32_t)c.nfound;
    }
    return rc;
}

void email_imap_box_list_free(email_imap_box_t *list, size_t count)
{
    for (size_t i = 0; list && i < count; i++)
        free(list[i].name);
    free(list);
    email__error_clear();
}

int email_imap_get_box_list(email_imap_transporter_t *t, email_imap_box_t **list, size_t *count,
                            email_status_t *status)
{
    const char *what = "email_imap_get_box_list";
    if (!t || !list || !count)
        return refused(status, null_arg(what, !t ? "the transporter" : !list ? "list" : "count"));
    *list = NULL;
    *count = 0;
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_LIST, .mailbox = "*"};
    int rc = do_call(t, &c, what, status);
    if (rc) {
        for (size_t i = 0; i < c.nboxes; i++)
            free(c.boxes[i].name);
        free(c.boxes);
        return rc;
    }
    *list = c.boxes;
    *count = c.nboxes;
    return 0;
}

static int by_uid(const void *a, const void *b)
{
    const fetch_slot_t *x = a, *y = b;
    return x->uid != y->uid ? (x->uid < y->uid ? -1 : 1) : (x->index > y->index) - (x->index < y->index);
}

/* The slots of uids, sorted, each UID once (at its first place); the UIDs in *list. */
static int make_slots(imap_call_t *c, const uint32_t *uids, size_t count, uint32_t **list)
{
    c->slots = calloc(count, sizeof *c->slots);
    *list = calloc(count, sizeof **list);
    if (!c->slots || !*list)
        return EMAIL_ENOMEM;
    for (size_t i = 0; i < count; i++)
        c->slots[i] = (fetch_slot_t){.uid = uids[i], .index = i};
    qsort(c->slots, count, sizeof *c->slots, by_uid);
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (!n || c->slots[i].uid != c->slots[n - 1].uid)
            c->slots[n++] = c->slots[i];
    c->nslots = n;
    for (size_t i = 0; i < n; i++)
        (*list)[i] = c->slots[i].uid;
    return 0;
}

static int fetch_messages(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                          int options, email_message_t **out, email_status_t *status,
                          const char *what)
{
    imap_call_t c = {.out = out};
    uint32_t *list = NULL;
    if (make_slots(&c, uids, count, &list)) {
        free(c.slots);
        free(list);
        return refused(status, email__error_set(EMAIL_ENOMEM, "%s: out of memory", what));
    }
    c.cmds[c.ncmds++] = (imap_cmd_t){
        .kind = IMAP_FETCH, .uids = list, .nuids = c.nslots,
        .items = IMAP_F_SIZE | (options & EMAIL_READ_HEADERS ? IMAP_F_HEADER : IMAP_F_BODY)};
    if (!(options & (EMAIL_READ_PEEK | EMAIL_READ_HEADERS))) /* reading marks it read */
        c.cmds[c.ncmds++] = (imap_cmd_t){.kind = IMAP_STORE, .uids = list, .nuids = c.nslots,
                                         .store = "+FLAGS.SILENT (\\Seen)"};
    int rc = do_call(t, &c, what, status);
    for (size_t i = 0; i < c.nslots; i++)
        email__mime_parser_free(c.slots[i].parser); /* a message cut short */
    email__mime_parser_free(c.orphan);
    for (size_t i = 0; rc && i < count; i++) {
        email_message_free(out[i]);
        out[i] = NULL;
    }
    free(c.slots);
    free(list);
    return rc;
}

/* The options a read takes, and UIDs from 1: 0, or EMAIL_EINVAL set. */
static int check_read(const uint32_t *uids, size_t count, int options, const char *what)
{
    if (options & ~(EMAIL_READ_HEADERS | EMAIL_READ_PEEK))
        return email__error_set(EMAIL_EINVAL, "%s: options 0x%x are not EMAIL_READ_HEADERS or "
                                "EMAIL_READ_PEEK", what, (unsigned)options);
    for (size_t i = 0; i < count; i++)
        if (!uids[i])
            return email__error_set(EMAIL_EINVAL, "%s: UID 0 (UIDs count from 1)", what);
    return 0;
}

int email_imap_get_mail(email_imap_transporter_t *t, uint32_t uid, int options,
                        email_message_t **out, email_status_t *status)
{
    const char *what = "email_imap_get_mail";
    if (out)
        *out = NULL;
    if (!t || !out)
        return refused(status, null_arg(what, t ? "out" : "the transporter"));
    int rc = check_read(&uid, 1, options, what);
    if (rc)
        return refused(status, rc);
    rc = fetch_messages(t, &uid, 1, options, out, status, what);
    if (!rc && !*out) {
        rc = email__error_set(EMAIL_ENOTFOUND, "%s: no message of UID %u in the mailbox", what,
                              uid);
        if (status)
            email__status_fail(status, rc, "no message of UID %u in the mailbox", uid);
    }
    return rc;
}

int email_imap_get_mails(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                         int options, email_message_t **out, email_status_t *status)
{
    const char *what = "email_imap_get_mails";
    if (!t || (count && (!uids || !out)))
        return refused(status, null_arg(what, !t ? "the transporter" : !uids ? "uids" : "out"));
    for (size_t i = 0; i < count; i++)
        out[i] = NULL;
    int rc = check_read(uids, count, options, what);
    if (rc || !count) {
        if (!rc && status) /* nothing to read: an OK of our own */
            *status = (email_status_t){.success = true, .status = 1};
        return rc ? refused(status, rc) : (email__error_clear(), 0);
    }
    return fetch_messages(t, uids, count, options, out, status, what);
}

int email_imap_search(email_imap_transporter_t *t, const char *criteria, const char *text,
                      uint32_t **uids, size_t *count, email_status_t *status)
{
    const char *what = "email_imap_search";
    if (!t || !criteria || !uids || !count)
        return refused(status, null_arg(what, !t ? "the transporter" : !criteria ? "criteria"
                                                    : !uids ? "uids" : "count"));
    *uids = NULL;
    *count = 0;
    if (!*criteria || email__has_crlf(criteria) || !email__is_ascii(criteria, strlen(criteria)))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: the criteria are empty or "
                                                "hold CR, LF or non-ASCII bytes", what));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = criteria, .text = text};
    int rc = do_call(t, &c, what, status);
    if (rc || !c.nfound) {
        free(c.found);
        return rc;
    }
    *uids = c.found;
    *count = c.nfound;
    return 0;
}

/* Flag names separated by single spaces: "\Seen", "$Label" (atoms, with one leading "\"). */
static bool valid_flags(const char *flags)
{
    const char *p = flags;
    do {
        p += *p == '\\';
        size_t n = 0;
        for (; p[n] && p[n] != ' '; n++) {
            unsigned char ch = (unsigned char)p[n];
            if (ch <= 0x20 || ch >= 0x7f || strchr("(){\"\\]%*", ch))
                return false;
        }
        if (!n)
            return false;
        p += n;
    } while (*p == ' ' && *++p);
    return *p == '\0' && p[-1] != ' ';
}

static int store(email_imap_transporter_t *t, const uint32_t *uids, size_t count, char sign,
                 const char *flags, email_status_t *status, const char *what)
{
    if (!t || !uids || !flags)
        return refused(status, null_arg(what, !t ? "the transporter" : !uids ? "uids" : "flags"));
    if (!count)
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: no UIDs given", what));
    if (!*flags || !valid_flags(flags))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: flags \"%.100s\" are not "
                                                "flag names separated by spaces (such as "
                                                "\"\\\\Seen \\\\Flagged\")", what, flags));
    int rc = check_read(uids, count, 0, what);
    if (rc)
        return refused(status, rc);
    email_buf_t item;
    email__buf_init(&item);
    if (email__buf_printf(&item, "%cFLAGS.SILENT (%s)", sign, flags)) {
        email__buf_free(&item);
        return refused(status, email__error_set(EMAIL_ENOMEM, "%s: out of memory", what));
    }
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_STORE, .uids = uids, .nuids = count, .store = item.data};
    rc = do_call(t, &c, what, status);
    email__buf_free(&item);
    return rc;
}

int email_imap_add_flags(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                         const char *flags, email_status_t *status)
{
    return store(t, uids, count, '+', flags, status, "email_imap_add_flags");
}

int email_imap_remove_flags(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            const char *flags, email_status_t *status)
{
    return store(t, uids, count, '-', flags, status, "email_imap_remove_flags");
}

int email_imap_delete(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                      email_status_t *status)
{
    return store(t, uids, count, '+', "\\Deleted", status, "email_imap_delete");
}

int email_imap_expunge(email_imap_transporter_t *t, email_status_t *status)
{
    if (!t)
        return refused(status, null_arg("email_imap_expunge", "the transporter"));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_EXPUNGE};
    return do_call(t, &c, "email_imap_expunge", status);
}

int email__imap_uid_expunge(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            email_status_t *status, const char *what)
{
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_UID_EXPUNGE, .uids = uids, .nuids = count};
    return do_call(t, &c, what, status);
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
