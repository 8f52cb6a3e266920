/*
 * The IMAP engine's commands in the authenticated state: composed (UID sets in chunks under the
 * line cap), sent (UID commands overlap within the window; the others go alone), answered, and
 * the untagged data they bring (FETCH, SEARCH) handed to the command that asked.
 */
#include "imap_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* UID commands in flight at once. get_mails_async reads each message with its own FETCH (and
   STORE), so the window bounds how many messages a round trip brings: 1,000 at 10 ms RTT take
   0.33 s with 128 against 0.86 s with 32 (bench/RESULTS.md). The commands are short and the
   engine reads while it writes, so the server's replies never wait on us. */
#define DEFAULT_WINDOW 128

static bool is_uid(const imap_cmd_t *cmd)
{
    return cmd->kind == IMAP_SEARCH || cmd->kind == IMAP_FETCH || cmd->kind == IMAP_STORE ||
           cmd->kind == IMAP_UID_EXPUNGE;
}

/* The kinds whose line carries the UID set (the others ignore uids: one line each). */
static bool takes_uids(const imap_cmd_t *cmd)
{
    return cmd->kind == IMAP_FETCH || cmd->kind == IMAP_STORE || cmd->kind == IMAP_UID_EXPUNGE;
}

static void finish_cmd(imap_cmd_t *cmd)
{
    cmd->status.success = cmd->status.error == 0 && cmd->status.status == 1;
    if (cmd->done)
        cmd->done(cmd);
}

static void fail_queue(imap_engine_t *e, queue_t *q)
{
    while (!queue_empty(q)) {
        imap_cmd_t *cmd = queue_data(queue_head(q), imap_cmd_t, node);
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

void email__imap_fail_cmds(imap_engine_t *e)
{
    e->nflight = 0;
    fail_queue(e, &e->flight);
    fail_queue(e, &e->queue);
}

/* The UIDs from *i on as a set ("4:9,12"), within the room a line has; *i moves past them. */
static int uid_set(const imap_cmd_t *cmd, size_t *i, email_buf_t *b, size_t room)
{
    if (!cmd->nuids)
        return email__buf_puts(b, "1:*");
    size_t start = b->len;
    while (*i < cmd->nuids && b->len - start + 24 < room) {
        size_t j = *i;
        while (j + 1 < cmd->nuids && cmd->uids[j + 1] == cmd->uids[j] + 1)
            j++;
        int rc = j > *i ? email__buf_printf(b, "%s%u:%u", b->len > start ? "," : "",
                                            cmd->uids[*i], cmd->uids[j])
                        : email__buf_printf(b, "%s%u", b->len > start ? "," : "", cmd->uids[*i]);
        if (rc)
            return rc;
        *i = j + 1;
    }
    return 0;
}

static int fetch_items(const imap_cmd_t *cmd, imap_line_t *l)
{
    return email__buf_printf(&l->wire, " (UID%s%s%s)", cmd->items & IMAP_F_FLAGS ? " FLAGS" : "",
                             cmd->items & IMAP_F_SIZE ? " RFC822.SIZE" : "",
                             cmd->items & IMAP_F_BODY     ? " BODY.PEEK[]"
                             : cmd->items & IMAP_F_HEADER ? " BODY.PEEK[HEADER]"
                                                          : "");
}

/* One tagged line of a command (a chunk of its UIDs from *i on). */
static int compose(imap_engine_t *e, imap_cmd_t *cmd, size_t *i, imap_line_t *l)
{
    static const char *const verbs[] = {"SELECT ", "EXAMINE ", "UID SEARCH ", "UID FETCH ",
                                        "UID STORE ", "EXPUNGE", "UID EXPUNGE ", "NOOP",
                                        "LIST \"\" "};
    unsigned tag;
    int rc = email__imap_line_tag(e, l, &tag);
    if (!cmd->tags)
        cmd->tag_first = tag;
    cmd->tags++;
    rc = rc ? rc : email__buf_puts(&l->wire, verbs[cmd->kind]);
    if (rc)
        return EMAIL_ENOMEM;
    switch (cmd->kind) {
    case IMAP_SELECT:
    case IMAP_EXAMINE:
        e->exists = e->recent = e->uidvalidity = e->uidnext = 0; /* the new box's come untagged */
        return email__imap_line_string(e, l, cmd->mailbox, false);
    case IMAP_LIST:
        return email__imap_line_string(e, l, cmd->mailbox, false);
    case IMAP_SEARCH:
        if (cmd->text && !email__is_ascii(cmd->text, strlen(cmd->text)))
            rc = email__buf_puts(&l->wire, "CHARSET UTF-8 ");
        rc = rc ? rc : email__buf_puts(&l->wire, cmd->criteria);
        if (!rc && cmd->text)
            rc = email__buf_putc(&l->wire, ' ') ? EMAIL_ENOMEM
                                                : email__imap_line_string(e, l, cmd->text, false);
        return rc;
    case IMAP_FETCH:
    case IMAP_STORE:
    case IMAP_UID_EXPUNGE:
        rc = uid_set(cmd, i, &l->wire, IMAP_MAX_COMMAND - 100);
        if (!rc && cmd->kind == IMAP_FETCH)
            rc = fetch_items(cmd, l);
        if (!rc && cmd->kind == IMAP_STORE)
            rc = email__buf_printf(&l->wire, " %s", cmd->store);
        return rc;
    default:
        return 0;
    }
}

/* No command of this state carries a secret: the log shows its wire bytes, a literal's line
 * end as a space. */
static int show_wire(imap_line_t *l)
{
    email__buf_reset(&l->shown);
    for (size_t i = 0; i < l->wire.len; i++) {
        char c = l->wire.data[i];
        if (c != '\r' && email__buf_putc(&l->shown, c == '\n' ? ' ' : c))
            return EMAIL_ENOMEM;
    }
    return 0;
}

/* Sends a command whole (every chunk of its UIDs; UIDs given to a command without a UID set
 * are not its business). */
static int send_cmd(imap_engine_t *e, imap_cmd_t *cmd)
{
    size_t i = 0;
    int rc = 0;
    do {
        imap_line_t l;
        email__imap_line_init(&l);
        rc = compose(e, cmd, &i, &l);
        rc = rc ? rc : show_wire(&l);
        rc = rc ? rc : email__imap_line_send(e, &l);
        email__imap_line_free(&l);
    } while (!rc && takes_uids(cmd) && i < cmd->nuids);
    return rc;
}

/* Sends what may go now: UID commands within the window while no other command is in flight;
 * another command alone; nothing while a synchronising literal awaits "+"; LOGOUT at the end. */
void email__imap_pump(imap_engine_t *e)
{
    if (e->state != IM_READY)
        return;
    size_t window = e->cfg.window ? e->cfg.window : DEFAULT_WINDOW;
    while (!queue_empty(&e->queue) && !e->pending.len && e->nflight < window) {
        imap_cmd_t *cmd = queue_data(queue_head(&e->queue), imap_cmd_t, node);
        imap_cmd_t *first = e->nflight ? queue_data(queue_head(&e->flight), imap_cmd_t, node)
                                       : NULL;
        if (first && (!is_uid(cmd) || !is_uid(first)))
            break;
        queue_remove(&cmd->node);
        queue_insert_tail(&e->flight, &cmd->node);
        e->nflight++;
        if (send_cmd(e, cmd)) {
            email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
            return;
        }
    }
    if (e->quit_asked && !e->nflight && queue_empty(&e->queue))
        email__imap_logout(e);
}

void email__imap_ready(imap_engine_t *e)
{
    email__scram_free(e->scram);
    e->scram = NULL;
    email__imap_set_state(e, IM_READY);
    if (e->ev.ready)
        e->ev.ready(e->ud);
    email__imap_pump(e);
}

static bool well_formed(const imap_cmd_t *cmd)
{
    switch (cmd->kind) {
    case IMAP_SELECT:
    case IMAP_EXAMINE:
    case IMAP_LIST:
        return cmd->mailbox && *cmd->mailbox;
    case IMAP_SEARCH:
        return cmd->criteria && *cmd->criteria && email__is_ascii(cmd->criteria,
               strlen(cmd->criteria)) && !email__has_crlf(cmd->criteria);
    case IMAP_STORE:
        return cmd->store && !email__has_crlf(cmd->store) && (cmd->nuids || !cmd->uids);
    case IMAP_UID_EXPUNGE:
        return cmd->nuids > 0;
    default:
        return (unsigned)cmd->kind <= IMAP_LIST;
    }
}

int email__imap_engine_submit(imap_engine_t *e, imap_cmd_t *cmd)
{
    if (e->quit_asked || e->state >= IM_LOGOUT)
        return EMAIL_ESHUTDOWN;
    if (!well_formed(cmd))
        return EMAIL_EINVAL;
    email__status_init(&cmd->status);
    cmd->bytes = 0;
    cmd->tags = cmd->answered = 0;
    cmd->searched = false;
    queue_insert_tail(&e->queue, &cmd->node);
    email__imap_pump(e);
    return 0;
}

bool email__imap_cmd_tagged(imap_engine_t *e, unsigned tag, int status, const char *line,
                            const char *text)
{
    queue_t *q;
    imap_cmd_t *cmd = NULL;
    queue_foreach(q, &e->flight) {
        imap_cmd_t *c = queue_data(q, imap_cmd_t, node);
        if (tag >= c->tag_first && tag - c->tag_first < c->tags)
            cmd = c;
    }
    if (!cmd)
        return false;
    if (!cmd->status.status || (status != 1 && cmd->status.status == 1)) {
        /* the first refusal among its chunks says why */
        email__status_set_reply(&cmd->status, status, "", line);
        const char *end = text[0] == '[' ? strchr(text, ']') : NULL;
        if (end && (size_t)(end - text - 1) < sizeof cmd->status.enhanced_code)
            snprintf(cmd->status.enhanced_code, sizeof cmd->status.enhanced_code, "%.*s",
                     (int)(end - text - 1), text + 1);
    }
    if (++cmd->answered < cmd->tags)
        return true;
    queue_remove(&cmd->node);
    e->nflight--;
    finish_cmd(cmd);
    email__imap_pump(e);
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Untagged data                                                                                */

/* The FETCH in flight that asked for uid (uid 0, not yet known: the oldest FETCH). */
static imap_cmd_t *fetch_for(imap_engine_t *e, uint32_t uid)
{
    queue_t *q;
    queue_foreach(q, &e->flight) {
        imap_cmd_t *c = queue_data(q, imap_cmd_t, node);
        if (c->kind != IMAP_FETCH)
            continue;
        if (!uid || !c->nuids)
            return c;
        for (size_t i = 0; i < c->nuids; i++)
            if (c->uids[i] == uid)
                return c;
    }
    return NULL;
}

int email__imap_body_data(imap_engine_t *e, uint32_t uid, const char *data, size_t n)
{
    imap_cmd_t *cmd = fetch_for(e, uid);
    if (!cmd)
        return 0;
    cmd->bytes += n;
    return cmd->body ? cmd->body(cmd, uid, data, n) : 0;
}

/* A FLAGS list as "\Seen \Flagged" (bounded); false when malformed. */
static bool read_flags(imap_lex_t *lx, char *flags, size_t size)
{
    size_t len = 0;
    flags[0] = '\0';
    for (;;) {
        imap_tok_t t = email__imap_lex(lx);
        if (t.kind == T_CLOSE)
            return true;
        if (t.kind != T_ATOM)
            return false;
        if (len + t.n + 2 < size) {
            len += (size_t)snprintf(flags + len, size - len, "%s%.*s", len ? " " : "", (int)t.n,
                                    t.p);
        }
    }
}

static void deliver_fetch(imap_engine_t *e, uint32_t seq, uint32_t uid, uint64_t size,
                          const char *flags)
{
    imap_cmd_t *cmd = uid ? fetch_for(e, uid) : NULL;
    if (!cmd) {
        if (e->cfg.mailbox.fetched)
            e->cfg.mailbox.fetched(e->ud, seq, uid, flags);
        return;
    }
    int rc = cmd->item ? cmd->item(cmd, seq, uid, size, flags) : 0;
    if (rc)
        email__imap_fail(e, rc, "%s", email_strerror(rc));
}

void email__imap_fetch_data(imap_engine_t *e, uint32_t seq, imap_lex_t *lx)
{
    uint32_t uid = 0;
    uint64_t size = 0;
    char flags[1024];
    bool have_flags = false;
    imap_tok_t t = email__imap_lex(lx);
    const char *why = t.kind == T_OPEN ? NULL : "no list";
    while (!why) {
        imap_tok_t name = email__imap_lex(lx);
        if (name.kind == T_CLOSE)
            break;
        imap_tok_t value = email__imap_lex(lx);
        if (name.kind != T_ATOM || value.kind == T_END || value.kind == T_ERROR)
            why = lx->why ? lx->why : "malformed item";
        else if (email__imap_tok_is(&name, "UID") && !email__imap_tok_u32(&value, &uid))
            why = "malformed UID";
        else if (email__imap_tok_is(&name, "RFC822.SIZE") && !email__imap_tok_u64(&value, &size))
            why = "malformed RFC822.SIZE";
        else if (email__imap_tok_is(&name, "FLAGS"))
            why = value.kind == T_OPEN && (have_flags = read_flags(lx, flags, sizeof flags))
                  ? NULL : "malformed FLAGS";
        else if (value.kind == T_OPEN && !email__imap_skip_list(lx))
            why = lx->why ? lx->why : "unclosed list";
    }
    if (why)
        email__imap_fail(e, EMAIL_EPROTO, "malformed FETCH response for message %u: %s", seq, why);
    else
        deliver_fetch(e, seq, uid, size, have_flags ? flags : NULL);
}

/* Each SEARCH gets one untagged SEARCH response, in the order the commands went: with several
 * in flight the answers of later ones may come before the tagged end of the first. */
void email__imap_search_data(imap_engine_t *e, imap_lex_t *lx)
{
    imap_cmd_t *cmd = NULL;
    queue_t *q;
    queue_foreach(q, &e->flight) {
        imap_cmd_t *c = queue_data(q, imap_cmd_t, node);
        if (c->kind == IMAP_SEARCH && !c->searched && !cmd)
            cmd = c;
    }
    if (cmd)
        cmd->searched = true;
    for (imap_tok_t t = email__imap_lex(lx); cmd && t.kind != T_END; t = email__imap_lex(lx)) {
        uint32_t uid;
        if (t.kind == T_OPEN && email__imap_skip_list(lx)) /* (MODSEQ n) */
            continue;
        if (!email__imap_tok_u32(&t, &uid)) {
            email__imap_fail(e, EMAIL_EPROTO, "malformed SEARCH response");
            return;
        }
        int rc = cmd->item ? cmd->item(cmd, 0, uid, 0, NULL) : 0;
        if (rc) {
            email__imap_fail(e, rc, "%s", email_strerror(rc));
            return;
        }
    }
}

/* A LIST name or delimiter: an atom, NIL, or a string (a quoted one unescaped). */
static bool list_string(const imap_tok_t *t, char *out, size_t size)
{
    if (t->kind != T_ATOM && t->kind != T_STRING && t->kind != T_NIL)
        return false;
    size_t n = 0;
    bool quoted = t->kind == T_STRING && t->p[-1] == '"';
    for (size_t i = 0; t->kind != T_NIL && i < t->n; i++) {
        if (quoted && t->p[i] == '\\' && i + 1 < t->n)
            i++;
        if (n + 1 >= size || t->p[i] == '\0')
            return false;
        out[n++] = t->p[i];
    }
    out[n] = '\0';
    return true;
}

void email__imap_list_data(imap_engine_t *e, imap_lex_t *lx)
{
    imap_cmd_t *cmd = NULL;
    queue_t *q;
    queue_foreach(q, &e->flight) {
        imap_cmd_t *c = queue_data(q, imap_cmd_t, node);
        if (c->kind == IMAP_LIST && !cmd)
            cmd = c;
    }
    if (!cmd)
        return;
    char attrs[512], delim[8], name[1024];
    imap_tok_t t = email__imap_lex(lx);
    bool ok = t.kind == T_OPEN && read_flags(lx, attrs, sizeof attrs);
    imap_tok_t d = email__imap_lex(lx), n = email__imap_lex(lx);
    ok = ok && list_string(&d, delim, sizeof delim) && strlen(delim) <= 1 &&
         list_string(&n, name, sizeof name);
    if (!ok) {
        email__imap_fail(e, EMAIL_EPROTO, "malformed LIST response");
        return;
    }
    int rc = cmd->listed ? cmd->listed(cmd, attrs, delim[0], name) : 0;
    if (rc)
        email__imap_fail(e, rc, "%s", email_strerror(rc));
}
