/*
 * WLanguage's IMAP sessions: EmailStartIMAPSession selects INBOX and takes its UIDs (UID SEARCH
 * ALL); the reading functions walk them by UID (EMAIL_READ_UNREAD: those UID SEARCH UNSEEN finds
 * at the time of the read), skipping what this session deleted; reading without EMAIL_READ_PEEK
 * marks a message \Seen, as WLanguage does. A deletion is \Deleted then UID EXPUNGE when the
 * server has UIDPLUS, else EXPUNGE when the session closes. The registry of names and the
 * reading functions' entry points are recv_session.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imap_transporter.h"
#include "recv_session.h"
#include "settings.h"

typedef struct imap_session {
    recv_session_t base;           /* first: the registry's */
    email_imap_transporter_t *t;
    uint32_t *uids;                /* INBOX's at the start, ascending */
    bool *deleted;                 /* by this session */
    size_t n;
    uint32_t at;                   /* the UID read last: 0 before the first, UINT32_MAX past */
    bool expunge_at_close;         /* \Deleted marked on a server without UIDPLUS */
} imap_session_t;

/* EXPUNGE when deletions wait for it, LOGOUT, frees (ErrorInfo: set when either failed). */
static void session_free(recv_session_t *base)
{
    imap_session_t *s = (imap_session_t *)base;
    int rc = s->expunge_at_close ? email_imap_expunge(s->t, NULL) : 0;
    char *text = rc ? email__strdup(email__error_text()) : NULL;
    email_imap_transporter_free(s->t);
    if (rc && !email_last_error())
        email__error_set(rc, "%s", text ? text : email_strerror(rc));
    free(text);
    free(s->uids);
    free(s->deleted);
    email__recv_free_head(&s->base);
    free(s);
}

static int by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The place of uid in the session's list, or -1. */
static long place_of(const imap_session_t *s, uint32_t uid)
{
    const uint32_t *p = s->n ? bsearch(&uid, s->uids, s->n, sizeof uid, by_value) : NULL;
    return p ? (long)(p - s->uids) : -1;
}

static bool deleted_here(const imap_session_t *s, uint32_t uid)
{
    long i = place_of(s, uid);
    return i >= 0 && s->deleted[i];
}

/* The UIDs a read may choose from, ascending, this session's deletions left out (*u the
 * caller's): 0 or an EMAIL_E... code with ErrorInfo. */
static int candidates(imap_session_t *s, bool unread, uint32_t **u, size_t *n, const char *fn)
{
    *u = NULL;
    *n = 0;
    if (unread) {
        email_status_t st;
        int rc = email_imap_search(s->t, "UNSEEN", NULL, u, n, &st);
        if (rc)
            email__error_set_status(rc, fn, &st);
        email_status_clear(&st);
        if (rc)
            return rc;
        if (*n)
            qsort(*u, *n, sizeof **u, by_value);
    } else if (s->n && !(*u = malloc(s->n * sizeof **u))) {
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", fn);
    } else if (s->n) {
        memcpy(*u, s->uids, s->n * sizeof **u);
        *n = s->n;
    }
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++)
        if (!deleted_here(s, (*u)[i]))
            (*u)[kept++] = (*u)[i];
    *n = kept;
    return 0;
}

/* The UID to read from s->at in that direction, or 0 when there is none. */
static uint32_t pick(const imap_session_t *s, const uint32_t *u, size_t n, enum recv_from from)
{
    if (!n)
        return 0;
    switch (from) {
    case RECV_FIRST:
        return u[0];
    case RECV_LAST:
        return u[n - 1];
    case RECV_NEXT:
        for (size_t i = 0; i < n; i++)
            if (u[i] > s->at && s->at != UINT32_MAX)
                return u[i];
        return 0;
    default:
        for (size_t i = n; i-- > 0;)
            if (u[i] < s->at)
                return u[i];
        return 0;
    }
}

static bool imap_read(recv_session_t *base, int options, email_message_t **out,
                      enum recv_from from, const char *fn)
{
    imap_session_t *s = (imap_session_t *)base;
    uint32_t *u;
    size_t n;
    if (candidates(s, options & EMAIL_READ_UNREAD, &u, &n, fn))
        return false;
    uint32_t uid = pick(s, u, n, from);
    free(u);
    if (!uid) { /* WLanguage's Email.Out: not an error */
        s->at = from == RECV_FIRST || from == RECV_NEXT ? UINT32_MAX : 0;
        email__error_clear();
        return false;
    }
    email_status_t st;
    int rc = email_imap_get_mail(s->t, uid, options & (EMAIL_READ_HEADERS | EMAIL_READ_PEEK),
                                 out, &st);
    if (rc)
        email__error_set_status(rc, fn, &st);
    email_status_clear(&st);
    if (rc)
        return false;
    s->at = uid;
    return true;
}

static bool imap_remove(recv_session_t *base, const email_message_t *message)
{
    imap_session_t *s = (imap_session_t *)base;
    const char *text = email_message_get_uid(message);
    char *end = NULL;
    unsigned long uid = text ? strtoul(text, &end, 10) : 0;
    if (!uid || uid > UINT32_MAX || *end)
        return email__recv_fail(EMAIL_EINVAL, "email_delete_message: the message was not read "
                                "from an IMAP server (no UID)");
    long i = place_of(s, (uint32_t)uid);
    if (i < 0 || s->deleted[i])
        return email__recv_fail(EMAIL_ENOTFOUND, "email_delete_message: no message of UID %lu "
                                "in the mailbox of \"%s\"", uid, s->base.name);
    uint32_t u = (uint32_t)uid;
    if (email_imap_delete(s->t, &u, 1, NULL))
        return false;
    s->deleted[i] = true;
    if (!email__imap_transporter_uidplus(s->t)) {
        s->expunge_at_close = true;
        return true;
    }
    email_status_t st;
    int rc = email__imap_uid_expunge(s->t, &u, 1, &st, "email_delete_message");
    email_status_clear(&st);
    return rc == 0;
}

static int imap_count(recv_session_t *base, int options)
{
    imap_session_t *s = (imap_session_t *)base;
    uint32_t *u;
    size_t n;
    int rc = candidates(s, options & EMAIL_READ_UNREAD, &u, &n, "email_mailbox_count");
    free(u);
    if (rc)
        return rc;
    email__error_clear();
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

static int imap_set_log(recv_session_t *base, const char *path, char *err, size_t errlen)
{
    return email__imap_transporter_set_log(((imap_session_t *)base)->t, path, err, errlen);
}

static const recv_session_ops_t imap_ops = {
    .protocol = "IMAP", .unread_ok = true, .read = imap_read, .remove = imap_remove,
    .count = imap_count, .set_log = imap_set_log, .free = session_free};

/* The session's transporter with the options' rules (those of SMTP); NULL and ErrorInfo. */
static email_imap_transporter_t *make_transporter(const char *user, const char *password,
                                                  const char *server, int port, int option)
{
    email_server_t srv;
    transporter_policy_t policy;
    char *ca, err[512];
    email__recv_settings(user, password, server, port, option, 143, 993, &srv, &policy, &ca);
    /* email_session_set_log_file before the start, as for SMTP: the start takes it */
    char *log = email__settings_log_preset(user, true);
    srv.log_file = log;
    email_imap_transporter_t *t = email__imap_transporter_new_ex(&srv, &policy, err, sizeof err);
    free(ca);
    free(log);
    if (!t)
        email__recv_fail(EMAIL_EINVAL, "email_start_imap_session: %s", err);
    return t;
}

/* INBOX selected and its UIDs listed: 0, or the code with ErrorInfo. */
static int open_inbox(imap_session_t *s)
{
    email_status_t st;
    int rc = email_imap_select_box(s->t, "INBOX", EMAIL_IMAP_READ_WRITE, NULL, &st);
    if (!rc)
        rc = email_imap_search(s->t, "ALL", NULL, &s->uids, &s->n, &st);
    if (rc)
        email__error_set_status(rc, "email_start_imap_session", &st);
    email_status_clear(&st);
    if (rc)
        return rc;
    if (s->n)
        qsort(s->uids, s->n, sizeof *s->uids, by_value);
    if (!(s->deleted = calloc(s->n + 1, sizeof *s->deleted)))
        return email__error_set(EMAIL_ENOMEM, "out of memory");
    return 0;
}

bool email_start_imap_session(const char *user, const char *password, const char *server,
                              int port, int option)
{
    if (!email__recv_check_start("email_start_imap_session", user, server, port, option) ||
        email__recv_taken(user))
        return false;
    imap_session_t *s = calloc(1, sizeof *s);
    if (!s || email__recv_init(&s->base, &imap_ops, user)) {
        if (s)
            email__recv_free_head(&s->base);
        free(s);
        return email__recv_fail(EMAIL_ENOMEM, "out of memory");
    }
    if (!(s->t = make_transporter(user, password, server, port, option)) || open_inbox(s) ||
        !email__recv_register(&s->base))
        return email__recv_abandon(&s->base);
    email__error_clear();
    return true;
}
