/*
 * WLanguage's POP3 sessions: EmailStartPOP3Session, EmailReadFirst / Next / Previous / Last,
 * EmailDeleteMessage and the mailbox's count, each on a POP3 transporter of its own. The start
 * takes the mailbox's list (LIST and UIDL, pipelined): a POP3 maildrop stays as it is for the
 * session (RFC 1939 locks it), so the cursor walks that list, skipping what this session deleted.
 * The registry of names and the reading functions' entry points are recv_session.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pop3_transporter.h"
#include "recv_session.h"
#include "settings.h"

typedef struct pop3_session {
    recv_session_t base;           /* first: the registry's */
    email_pop3_transporter_t *t;
    email_pop3_mail_info_t *list;  /* the mailbox at the start, in the server's order */
    bool *deleted;                 /* marked by this session (committed by QUIT) */
    size_t n;
    uint64_t generation;           /* the transporter's session the list's numbers belong to */
    long cursor;                   /* the message read last; -1 before the first, n past the last */
} pop3_session_t;

/* Says QUIT and frees s (ErrorInfo: set when QUIT failed, else cleared). */
static void session_free(recv_session_t *base)
{
    pop3_session_t *s = (pop3_session_t *)base;
    email_pop3_transporter_free(s->t);
    free(s->list);
    free(s->deleted);
    email__recv_free_head(&s->base);
    free(s);
}

/* The session's transporter with the options' rules (those of SMTP); NULL and ErrorInfo. */
static email_pop3_transporter_t *make_transporter(const char *user, const char *password,
                                                  const char *server, int port, int option)
{
    email_server_t srv;
    transporter_policy_t policy;
    char *ca, err[512];
    email__recv_settings(user, password, server, port, option, 110, 995, &srv, &policy, &ca);
    /* email_session_set_log_file before the start, as for SMTP: the start takes it */
    char *log = email__settings_log_preset(user, true);
    srv.log_file = log;
    email_pop3_transporter_t *t = email__pop3_transporter_new_ex(&srv, &policy, err, sizeof err);
    free(ca);
    free(log);
    if (!t)
        email__recv_fail(EMAIL_EINVAL, "email_start_pop3_session: %s", err);
    return t;
}

static bool pop3_read(recv_session_t *base, int options, email_message_t **out,
                      enum recv_from from, const char *fn);
static bool pop3_remove(recv_session_t *base, const email_message_t *message);
static int pop3_count(recv_session_t *base, int options);

static int pop3_set_log(recv_session_t *base, const char *path, char *err, size_t errlen)
{
    return email__pop3_transporter_set_log(((pop3_session_t *)base)->t, path, err, errlen);
}

static const recv_session_ops_t pop3_ops = {
    .protocol = "POP3", .read = pop3_read, .remove = pop3_remove, .count = pop3_count,
    .set_log = pop3_set_log, .free = session_free};

bool email_start_pop3_session(const char *user, const char *password, const char *server,
                              int port, int option)
{
    if (!email__recv_check_start("email_start_pop3_session", user, server, port, option) ||
        email__recv_taken(user))
        return false;
    pop3_session_t *s = calloc(1, sizeof *s);
    if (!s || email__recv_init(&s->base, &pop3_ops, user)) {
        if (s)
            email__recv_free_head(&s->base);
        free(s);
        return email__recv_fail(EMAIL_ENOMEM, "out of memory");
    }
    s->cursor = -1;
    if (!(s->t = make_transporter(user, password, server, port, option)))
        return email__recv_abandon(&s->base);
    email_status_t st;
    int rc = email__pop3_list(s->t, &s->list, &s->n, &s->generation, &st,
                              "email_start_pop3_session");
    if (rc)
        email__error_set_status(rc, "email_start_pop3_session", &st);
    email_status_clear(&st);
    if (rc)
        return email__recv_abandon(&s->base);
    if (!(s->deleted = calloc(s->n + 1, sizeof *s->deleted))) {
        email__recv_fail(EMAIL_ENOMEM, "out of memory");
        return email__recv_abandon(&s->base);
    }
    if (!email__recv_register(&s->base))
        return email__recv_abandon(&s->base);
    email__error_clear();
    return true;
}

/* The index to read from s->cursor in that direction, skipping deleted messages: -1 or n when
 * there is none. */
static long pick(const pop3_session_t *s, enum recv_from from)
{
    long n = (long)s->n;
    long step = from == RECV_FIRST || from == RECV_NEXT ? 1 : -1;
    long i = from == RECV_FIRST ? 0 : from == RECV_LAST ? n - 1 : s->cursor + step;
    while (i >= 0 && i < n && s->deleted[i])
        i += step;
    return i < 0 ? -1 : i > n ? n : i;
}

static bool pop3_read(recv_session_t *base, int options, email_message_t **out,
                      enum recv_from from, const char *fn)
{
    pop3_session_t *s = (pop3_session_t *)base;
    long i = pick(s, from);
    if (i < 0 || i >= (long)s->n) { /* WLanguage's Email.Out: not an error */
        s->cursor = i;
        email__error_clear();
        return false;
    }
    if (email__pop3_fetch(s->t, s->list[i].number, options & EMAIL_READ_HEADERS, s->generation,
                          &s->list[i], out, NULL, fn) != 0)
        return false;
    s->cursor = i;
    return true;
}

static bool pop3_remove(recv_session_t *base, const email_message_t *message)
{
    pop3_session_t *s = (pop3_session_t *)base;
    const char *uid = email_message_get_uid(message);
    if (!uid)
        return email__recv_fail(EMAIL_EINVAL, "email_delete_message: the message was not read "
                                "from a server with UIDL");
    size_t i = 0;
    while (i < s->n && (s->deleted[i] || strcmp(s->list[i].uid, uid) != 0))
        i++;
    if (i == s->n)
        return email__recv_fail(EMAIL_ENOTFOUND, "email_delete_message: no message of UIDL "
                                "\"%s\" in the mailbox of \"%s\"", uid, s->base.name);
    if (email__pop3_delete_in(s->t, s->list[i].number, s->generation, "email_delete_message"))
        return false;
    s->deleted[i] = true;
    return true;
}

static int pop3_count(recv_session_t *base, int options)
{
    pop3_session_t *s = (pop3_session_t *)base;
    (void)options;
    int count = 0;
    for (size_t i = 0; i < s->n; i++)
        count += !s->deleted[i];
    email__error_clear();
    return count;
}
