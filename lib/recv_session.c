/*
 * WLanguage's receiving sessions, what POP3's and IMAP's share: the registry of names, the turn
 * of each call, the start's checks and settings, the reading functions' entry points dispatched
 * to the session's kind, and closing. A name holds one receiving session (POP3 or IMAP); an
 * SMTP session may share it, and email_close_session (facade.c) ends both.
 * Each public call sets or clears the calling thread's ErrorInfo (error.c).
 */
#include "recv_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "runtime.h"
#include "settings.h"
#include "util.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t unused = PTHREAD_COND_INITIALIZER;
static recv_session_t *sessions;

bool email__recv_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    return false;
}

static recv_session_t **find_locked(const char *name)
{
    recv_session_t **p = &sessions;
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

int email__recv_init(recv_session_t *s, const recv_session_ops_t *ops, const char *name)
{
    s->ops = ops;
    s->name = email__strdup(name);
    pthread_mutex_init(&s->turn, NULL);
    return s->name ? 0 : EMAIL_ENOMEM;
}

void email__recv_free_head(recv_session_t *s)
{
    pthread_mutex_destroy(&s->turn);
    free(s->name);
}

/* The kind's free with the calling thread's ErrorInfo kept as it was. */
static void free_keeping_error(recv_session_t *s)
{
    int code = email_last_error();
    char *text = code ? email__strdup(email__error_text()) : NULL;
    s->ops->free(s);
    if (code)
        email__error_set(code, "%s", text ? text : email_strerror(code));
    else
        email__error_clear();
    free(text);
}

bool email__recv_abandon(recv_session_t *s)
{
    free_keeping_error(s);
    return false;
}

/* The session `name`, taken for this call (its turn held), or NULL and ErrorInfo. */
static recv_session_t *acquire(const char *name)
{
    pthread_mutex_lock(&lock);
    recv_session_t *s = *find_locked(name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&lock);
    if (!s) {
        email__recv_fail(EMAIL_ENOSESSION, "no POP3 or IMAP session named \"%s\" is open", name);
        return NULL;
    }
    pthread_mutex_lock(&s->turn);
    return s;
}

static void release(recv_session_t *s)
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
        return email__recv_fail(EMAIL_EINVAL, "the session name (user) is empty");
    return true;
}

bool email__recv_check_start(const char *fn, const char *user, const char *server, int port,
                             int option)
{
    if (!check_name(user))
        return false;
    if (!server || !*server)
        return email__recv_fail(EMAIL_EINVAL, "%s: no server given", fn);
    if (port < 0 || port > 65535)
        return email__recv_fail(EMAIL_EINVAL, "%s: port %d is out of range", fn, port);
    int flags = option & ~0xFF;
    if ((option & 0xFF) > EMAIL_OPTION_TLS ||
        (flags & ~(EMAIL_OPTION_ALLOW_INSECURE_AUTH | EMAIL_OPTION_NO_VERIFY)))
        return email__recv_fail(EMAIL_EINVAL, "%s: option 0x%x is not a combination of "
                                "EMAIL_OPTION_ values", fn, (unsigned)option);
    return true;
}

void email__recv_settings(const char *user, const char *password, const char *server, int port,
                          int option, int plain_port, int tls_port, email_server_t *srv,
                          transporter_policy_t *policy, char **ca)
{
    int base = option & 0xFF;
    email_server_init(srv);
    srv->host = server;
    srv->port = port ? port : base == EMAIL_OPTION_TLS ? tls_port : plain_port;
    srv->user = user; /* the name is the login */
    srv->password = password ? password : "";
    srv->connection_timeout = srv->send_timeout = email_get_timeout();
    *ca = NULL;
    email__settings_get(&srv->max_connections, ca);
    srv->ca_file = *ca;
    *policy = (transporter_policy_t){
        .tls = base == EMAIL_OPTION_TLS        ? TRANSPORTER_TLS_IMPLICIT
               : base == EMAIL_OPTION_STARTTLS ? TRANSPORTER_TLS_STARTTLS
                                               : TRANSPORTER_TLS_OPPORTUNISTIC,
        .auth = TRANSPORTER_AUTH_STRONGEST, /* receiving always logs in */
        .allow_insecure_auth = (option & EMAIL_OPTION_ALLOW_INSECURE_AUTH) != 0,
        .no_verify = (option & EMAIL_OPTION_NO_VERIFY) != 0,
        .session_name = user,
    };
}

static bool name_exists(const char *name)
{
    return email__recv_fail(EMAIL_EEXIST, "a POP3 or IMAP session named \"%s\" is already "
                            "open", name);
}

bool email__recv_taken(const char *name)
{
    pthread_mutex_lock(&lock);
    bool taken = *find_locked(name) != NULL;
    pthread_mutex_unlock(&lock);
    if (taken)
        name_exists(name);
    return taken;
}

bool email__recv_register(recv_session_t *s)
{
    pthread_mutex_lock(&lock);
    recv_session_t **p = find_locked(s->name);
    bool taken = *p != NULL;
    if (!taken)
        *p = s;
    pthread_mutex_unlock(&lock);
    return taken ? name_exists(s->name) : true;
}

/* ------------------------------------------------------------------------------------------- */
/* The reading functions                                                                        */

static bool check_read_options(const recv_session_t *s, int options, const char *fn)
{
    if (options & ~(EMAIL_READ_HEADERS | EMAIL_READ_UNREAD | EMAIL_READ_PEEK))
        return email__recv_fail(EMAIL_EINVAL, "%s: options 0x%x are not EMAIL_READ_ values",
                                fn, (unsigned)options);
    if (!s->ops->unread_ok && (options & (EMAIL_READ_UNREAD | EMAIL_READ_PEEK)))
        return email__recv_fail(EMAIL_ENOTSUP, "%s: EMAIL_READ_UNREAD and EMAIL_READ_PEEK are "
                                "for IMAP sessions (%s has no flags)", fn, s->ops->protocol);
    return true;
}

static bool read_message(const char *user, int options, email_message_t **out,
                         enum recv_from from, const char *fn)
{
    if (out)
        *out = NULL;
    if (!check_name(user))
        return false;
    if (!out)
        return email__recv_fail(EMAIL_EINVAL, "%s: no place for the message", fn);
    recv_session_t *s = acquire(user);
    if (!s)
        return false;
    bool ok = check_read_options(s, options, fn) && s->ops->read(s, options, out, from, fn);
    release(s);
    return ok;
}

bool email_read_first(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, RECV_FIRST, "email_read_first");
}

bool email_read_next(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, RECV_NEXT, "email_read_next");
}

bool email_read_previous(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, RECV_PREVIOUS, "email_read_previous");
}

bool email_read_last(const char *user, int options, email_message_t **out)
{
    return read_message(user, options, out, RECV_LAST, "email_read_last");
}

bool email_delete_message(const char *user, const email_message_t *message)
{
    if (!check_name(user))
        return false;
    if (!message)
        return email__recv_fail(EMAIL_EINVAL, "email_delete_message: the message is NULL");
    recv_session_t *s = acquire(user);
    if (!s)
        return false;
    bool ok = s->ops->remove(s, message);
    release(s);
    return ok;
}

int email_mailbox_count(const char *user, int options)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    recv_session_t *s = acquire(user);
    if (!s)
        return EMAIL_ENOSESSION;
    int count = check_read_options(s, options, "email_mailbox_count")
                    ? s->ops->count(s, options) : email_last_error();
    release(s);
    return count;
}

/* ------------------------------------------------------------------------------------------- */

int email__recv_close(const char *name)
{
    bool may_wait = !email__runtime_on_loop_thread();
    pthread_mutex_lock(&lock);
    recv_session_t **p = find_locked(name);
    recv_session_t *s = *p;
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
    s->ops->free(s);
    int rc = email_last_error();
    return rc < 0 ? rc : 1;
}

int email__recv_set_log(const char *name, const char *path, char *err, size_t errlen)
{
    pthread_mutex_lock(&lock);
    recv_session_t *s = *find_locked(name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&lock);
    if (!s)
        return 0;
    pthread_mutex_lock(&s->turn);
    int rc = s->ops->set_log(s, path, err, errlen);
    release(s);
    return rc ? rc : 1;
}

void email__recv_close_all(void)
{
    int code = email_last_error();
    char *text = code ? email__strdup(email__error_text()) : NULL;
    for (;;) {
        pthread_mutex_lock(&lock);
        char *name = sessions ? email__strdup(sessions->name) : NULL;
        pthread_mutex_unlock(&lock);
        if (!name)
            break;
        email__recv_close(name);
        free(name);
    }
    if (code) /* email_shutdown leaves ErrorInfo alone */
        email__error_set(code, "%s", text ? text : email_strerror(code));
    else
        email__error_clear();
    free(text);
}
