/*
 * WLanguage's POP3 sessions: EmailStartPOP3Session, EmailReadFirst / Next / Previous / Last,
 * EmailDeleteMessage and the mailbox's count, each on a POP3 transporter of its own. The start
 * takes the mailbox's list (LIST and UIDL, pipelined): a POP3 maildrop stays as it is for the
 * session (RFC 1939 locks it), so the cursor walks that list, skipping what this session deleted.
 * A POP3 and an SMTP session may share a name; email_close_session (facade.c) ends both.
 * Each public call sets or clears the calling thread's ErrorInfo (error.c).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pop3_facade.h"
#include "pop3_transporter.h"
#include "runtime.h"
#include "settings.h"
#include "util.h"

typedef struct pop3_session {
    char *name;
    email_pop3_transporter_t *t;
    email_pop3_mail_info_t *list;  /* the mailbox at the start, in the server's order */
    bool *deleted;                 /* marked by this session (committed by QUIT) */
    size_t n;
    uint64_t generation;           /* the transporter's session the list's numbers belong to */
    long cursor;                   /* the message read last; -1 before the first, n past the last */
    pthread_mutex_t turn;          /* one call at a time moves the cursor */
    int refs;                      /* calls using it right now (lock) */
    bool closed;                   /* closed on the loop thread while in use: last user frees */
    struct pop3_session *next;
} pop3_session_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t unused = PTHREAD_COND_INITIALIZER;
static pop3_session_t *sessions;

static bool fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static bool fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    return false;
}

static pop3_session_t **find_locked(const char *name)
{
    pop3_session_t **p = &sessions;
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

/* Frees s and says QUIT (ErrorInfo: set when QUIT failed, else cleared). */
static void session_free(pop3_session_t *s)
{
    email_pop3_transporter_free(s->t);
    pthread_mutex_destroy(&s->turn);
    free(s->list);
    free(s->deleted);
    free(s->name);
    free(s);
}

/* session_free with the calling thread's ErrorInfo kept as it was. */
static void free_keeping_error(pop3_session_t *s)
{
    int code = email_last_error();
    char *text = code ? email__strdup(email__error_text()) : NULL;
    session_free(s);
    if (code)
        email__error_set(code, "%s", text ? text : email_strerror(code));
    else
        email__error_clear();
    free(text);
}

/* The POP3 session `name`, taken for this call (its turn held), or NULL and ErrorInfo. */
static pop3_session_t *acquire(const char *name)
{
    pthread_mutex_lock(&lock);
    pop3_session_t *s = *find_locked(name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&lock);
    if (!s) {
        fail(EMAIL_ENOSESSION, "no POP3 session named \"%s\" is open", name);
        return NULL;
    }
    pthread_mutex_lock(&s->turn);
    return s;
}

static void release(pop3_session_t *s)
{
    pthread_mutex_unlock(&s->turn);
    pthread_mutex_lock(&lock);
    bool last = --s->refs == 0;
    if (last)
        pthread_cond_broadcast(&unused);
    bool orphan = last && s->closed;
    pthread_mutex_unlock(&lock);
    if (orphan) /* closed meanwhile on the loop's thread: QUIT goes without waiting */
        free_keeping_error(s);
}

static bool check_name(const char *user)
{
    if (!user || !*user)
        return fail(EMAIL_EINVAL, "the session name (user) is empty");
    return true;
}

static bool check_start(const char *user, const char *server, int port, int option)
{
    if (!check_name(user))
        return false;
    if (!server || !*server)
        return fail(EMAIL_EINVAL, "email_start_pop3_session: no server given");
    if (port < 0 || port > 65535)
        return fail(EMAIL_EINVAL, "email_start_pop3_session: port %d is out of range", port);
    int flags = option & ~0xFF;
    if ((option & 0xFF) > EMAIL_OPTION_TLS ||
        (flags & ~(EMAIL_OPTION_ALLOW_INSECURE_AUTH | EMAIL_OPTION_NO_VERIFY)))
        return fail(EMAIL_EINVAL, "email_start_pop3_session: option 0x%x is not a combination "
                                  "of EMAIL_OPTION_ values",
                    (unsigned)option);
    return true;
}

static bool name_taken(const char *user)
{
    pthread_mutex_lock(&lock);
    bool taken = *find_locked(user) != NULL;
    pthread_mutex_unlock(&lock);
    return taken;
}

/* The session's transporter with the options' rules (those of SMTP); NULL and ErrorInfo. */
static email_pop3_transporter_t *make_transporter(const char *user, const char *password,
                                                  const char *server, int port, int option)
{
    int base = option & 0xFF;
    email_server_t srv;
    email_server_init(&srv);
    srv.host = server;
    srv.port = port ? port : base == EMAIL_OPTION_TLS ? 995 : 110;
    srv.user = user; /* the name is the login */
    srv.password = password ? password : "";
    srv.connection_timeout = srv.send_timeout = email_get_timeout();
    char *ca = NULL;
    email__settings_get(&srv.max_connections, &ca);
    srv.ca_file = ca;
    /* email_session_set_log_file before the start, as for SMTP: the start takes it */
    char *log = email__settings_log_preset(user, true);
    srv.log_file = log;
    transporter_policy_t policy = {
        .tls = base == EMAIL_OPTION_TLS        ? TRANSPORTER_TLS_IMPLICIT
               : base == EMAIL_OPTION_STARTTLS ? TRANSPORTER_TLS_STARTTLS
                                               : TRANSPORTER_TLS_OPPORTUNISTIC,
        .auth = TRANSPORTER_AUTH_STRONGEST, /* POP3 always logs in */
        .allow_insecure_auth = (option & EMAIL_OPTION_ALLOW_INSECURE_AUTH) != 0,
        .no_verify = (option & EMAIL_OPTION_NO_VERIFY) != 0,
        .session_name = user,
    };
    char err[512];
    email_pop3_transporter_t *t = email__pop3_transporter_new_ex(&srv, &policy, err, sizeof err);
    free(ca);
    free(log);
    if (!t)
        fail(EMAIL_EINVAL, "email_start_pop3_session: %s", err);
    return t;
}

/* Frees a session that never was registered; ErrorInfo stays the start's. */
static bool abandon(pop3_session_t *s)
{
    free_keeping_error(s);
    return false;
}

bool email_start_pop3_session(const char *user, const char *password, const char *server,
                              int port, int option)
{
    if (!check_start(user, server, port, option))
        return false;
    if (name_taken(user))
        return fail(EMAIL_EEXIST, "a POP3 session named \"%s\" is already open", user);
    pop3_session_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = email__strdup(user))) {
        free(s);
        return fail(EMAIL_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&s->turn, NULL);
    s->cursor = -1;
    if (!(s->t = make_transporter(user, password, server, port, option)))
        return abandon(s);
    email_status_t st;
    int rc = email__pop3_list(s->t, &s->list, &s->n, &s->generation, &st,
                              "email_start_pop3_session");
    if (rc)
        email__error_set_status(rc, "email_start_pop3_session", &st);
    email_status_clear(&st);
    if (rc)
        return abandon(s);
    if (!(s->deleted = calloc(s->n + 1, sizeof *s->deleted))) {
        fail(EMAIL_ENOMEM, "out of memory");
        return abandon(s);
    }
    pthread_mutex_lock(&lock);
    pop3_session_t **p = find_locked(user);
    bool taken = *p != NULL;
    if (!taken)
        *p = s;
    pthread_mutex_unlock(&lock);
    if (taken) {
        fail(EMAIL_EEXIST, "a POP3 session named \"%s\" is already open", user);
        return abandon(s);
    }
    email__error_clear();
    return true;
}

/* EMAIL_READ_UNREAD and EMAIL_READ_PEEK are IMAP's: POP3 has no flags. */
static bool check_read_options(int options, const char *fn)
{
    if (options & ~(EMAIL_READ_HEADERS | EMAIL_READ_UNREAD | EMAIL_READ_PEEK))
        return fail(EMAIL_EINVAL, "%s: options 0x%x are not EMAIL_READ_ values", fn,
                    (unsigned)options);
    if (options & (EMAIL_READ_UNREAD | EMAIL_READ_PEEK))
        return fail(EMAIL_ENOTSUP, "%s: EMAIL_READ_UNREAD and EMAIL_READ_PEEK are for IMAP "
                                   "sessions (POP3 has no flags)",
                    fn);
    return true;
}

enum read_from { FROM_FIRST, FROM_NEXT, FROM_PREVIOUS, FROM_LAST };

/* The index to read from s->cursor in that direction, skipping deleted messages: -1 or n when
 * there is none. */
static long pick(const pop3_session_t *s, enum read_from from)
{
    long n = (long)s->n;
    long step = from == FROM_FIRST || from == FROM_NEXT ? 1 : -1;
    long i = from == FROM_FIRST ? 0 : from == FROM_LAST ? n - 1 : s->cursor + step;
    while (i >= 0 && i < n && s->deleted[i])
        i += step;
    return i < 0 ? -1 : i > n ? n : i;
}

static bool read_message(const char *user, int options, email_message_t **out,
                         enum read_from from, const char *fn)
{
    if (out)
        *out = NULL;
    if (!check_name(user))
        return false;
    if (!out)
        return fail(EMAIL_EINVAL, "%s: no place for the message", fn);
    if (!check_read_options(options, fn))
        return false;
    pop3_session_t *s = acquire(user);
    if (!s)
        return false;
    long i = pick(s, from);
    bool ok = false;
    if (i < 0 || i >= (long)s->n) { /* WLanguage's Email.Out: not an error */
        s->cursor = i;
        email__error_clear();
    } else if (email__pop3_fetch(s->t, s->list[i].number, options & EMAIL_READ_HEADERS,
                                 s->generation, out, NULL, fn) == 0) {
        s->cursor = i;
        ok = true;
    }
    release(s);
    return ok;
}

bool email_read_first(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, FROM_FIRST, "email_read_first");
}

bool email_read_next(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, FROM_NEXT, "email_read_next");
}

bool email_read_previous(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, FROM_PREVIOUS, "email_read_previous");
}

bool email_read_last(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, FROM_LAST, "email_read_last");
}

bool email_delete_message(const char *user, const email_message_t *message)
{
    if (!check_name(user))
        return false;
    const char *uid = email_message_get_uid(message);
    if (!uid)
        return fail(EMAIL_EINVAL, "email_delete_message: %s", message ? "the message was not "
                    "read from a server with UIDL" : "the message is NULL");
    pop3_session_t *s = acquire(user);
    if (!s)
        return false;
    size_t i = 0;
    while (i < s->n && (s->deleted[i] || strcmp(s->list[i].uid, uid) != 0))
        i++;
    int rc = EMAIL_ENOTFOUND;
    if (i == s->n)
        fail(rc, "email_delete_message: no message of UIDL \"%s\" in the mailbox of \"%s\"",
             uid, user);
    else if (!(rc = email__pop3_delete_in(s->t, s->list[i].number, s->generation,
                                          "email_delete_message")))
        s->deleted[i] = true;
    release(s);
    return rc == 0;
}

int email_mailbox_count(const char *user, int options)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    if (!check_read_options(options, "email_mailbox_count"))
        return email_last_error();
    pop3_session_t *s = acquire(user);
    if (!s)
        return EMAIL_ENOSESSION;
    int count = 0;
    for (size_t i = 0; i < s->n; i++)
        count += !s->deleted[i];
    release(s);
    email__error_clear();
    return count;
}

int email__pop3_facade_set_log(const char *name, const char *path, char *err, size_t errlen)
{
    pthread_mutex_lock(&lock);
    pop3_session_t *s = *find_locked(name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&lock);
    if (!s)
        return 0;
    pthread_mutex_lock(&s->turn);
    int rc = email__pop3_transporter_set_log(s->t, path, err, errlen);
    release(s);
    return rc ? rc : 1;
}

int email__pop3_facade_close(const char *name)
{
    bool may_wait = !email__runtime_on_loop_thread();
    pthread_mutex_lock(&lock);
    pop3_session_t **p = find_locked(name);
    pop3_session_t *s = *p;
    if (s)
        *p = s->next;
    while (s && may_wait && s->refs)
        pthread_cond_wait(&unused, &lock);
    bool busy = s && s->refs;
    if (busy)
        s->closed = true; /* its last user frees it */
    pthread_mutex_unlock(&lock);
    if (!s)
        return 0;
    if (busy)
        return 1;
    session_free(s);
    int rc = email_last_error();
    return rc < 0 ? rc : 1;
}

void email__pop3_facade_close_all(void)
{
    int code = email_last_error();
    char *text = code ? email__strdup(email__error_text()) : NULL;
    for (;;) {
        pthread_mutex_lock(&lock);
        char *name = sessions ? email__strdup(sessions->name) : NULL;
        pthread_mutex_unlock(&lock);
        if (!name)
            break;
        email__pop3_facade_close(name);
        free(name);
    }
    if (code) /* email_shutdown leaves ErrorInfo alone */
        email__error_set(code, "%s", text ? text : email_strerror(code));
    else
        email__error_clear();
    free(text);
}
