/*
 * WLanguage-style named sessions: EmailStartSMTPSession, EmailSendMessage, EmailCloseSession,
 * EmailSetTimeOut, ErrorOccurred / ErrorInfo, built on transporters.
 */
#include "facade.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "emailsession.h"
#include "message.h"
#include "protocol.h"
#include "registry.h"
#include "runtime.h"
#include "status.h"
#include "transporter.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------- */
/* ErrorInfo, per thread                                                                        */

static _Thread_local struct {
    int code;
    char text[1024];
} last_error;

void facade_set_error(int code, const char *text)
{
    last_error.code = code;
    if (!code)
        last_error.text[0] = '\0';
    else
        email_strlcpy(last_error.text, text && *text ? text : email_strerror(code),
                      sizeof last_error.text);
}

static bool fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static bool fail(int code, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    facade_set_error(code, text);
    return false;
}

/* ErrorInfo for a failed send or start, with the server's reply when there was one. */
static bool fail_status(int rc, const char *what, const email_status_t *s)
{
    if (s->status && s->enhanced_code[0])
        return fail(rc, "%s: %s (server reply %d %s)", what, s->status_text, s->status,
                    s->enhanced_code);
    if (s->status)
        return fail(rc, "%s: %s (server reply %d)", what, s->status_text, s->status);
    return fail(rc, "%s: %s", what, s->status_text[0] ? s->status_text : email_strerror(rc));
}

static bool succeed(void)
{
    facade_set_error(0, NULL);
    return true;
}

bool email_error_occurred(void)
{
    return last_error.code != 0;
}

const char *email_error_info(void)
{
    return last_error.text;
}

int email_last_error(void)
{
    return last_error.code;
}

const char *email_version(void)
{
    return PACKAGE_VERSION;
}

/* ------------------------------------------------------------------------------------------- */
/* Global settings                                                                              */

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static int timeout_seconds = 60;
static char *ca_file;

void email_set_timeout(int seconds)
{
    if (seconds < 1 || seconds > EMAIL_TIMEOUT_MAX) {
        fail(EMAIL_EINVAL, "email_set_timeout: %d is not a number of seconds from 1 to %d",
             seconds, EMAIL_TIMEOUT_MAX);
        return;
    }
    pthread_mutex_lock(&settings_lock);
    timeout_seconds = seconds;
    pthread_mutex_unlock(&settings_lock);
    succeed();
}

int email_get_timeout(void)
{
    pthread_mutex_lock(&settings_lock);
    int s = timeout_seconds;
    pthread_mutex_unlock(&settings_lock);
    return s;
}

int email_set_ca_file(const char *pem_path)
{
    char *copy = NULL;
    if (pem_path) {
        if (access(pem_path, R_OK) != 0) {
            fail(EMAIL_EIO, "email_set_ca_file: \"%s\" cannot be read", pem_path);
            return EMAIL_EIO;
        }
        if (!(copy = email_strdup(pem_path)))
            return EMAIL_ENOMEM;
    }
    pthread_mutex_lock(&settings_lock);
    free(ca_file);
    ca_file = copy;
    pthread_mutex_unlock(&settings_lock);
    succeed();
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The registry of named sessions                                                               */

typedef struct session {
    char *name;
    email_transporter_t *t;
    int mode;
    int refs;            /* calls using the session right now */
    email_send_cb cb;    /* asynchronous outcome, for messages sent afterwards */
    void *cb_data;
    email_progress_cb progress;
    void *progress_data;
    bool open;           /* started (false while starting) */
    bool closed;         /* closed on the loop's thread while in use: its last user frees it */
    struct session *next;
} session_t;

static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sessions_cond = PTHREAD_COND_INITIALIZER;
static session_t *sessions;

static session_t **find_locked(const char *name)
{
    session_t **p = &sessions;
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

/* The open session named `name` with a reference taken, or NULL. */
static session_t *acquire(const char *name)
{
    pthread_mutex_lock(&sessions_lock);
    session_t *s = *find_locked(name);
    if (s && s->open)
        s->refs++;
    else
        s = NULL;
    pthread_mutex_unlock(&sessions_lock);
    return s;
}

static void session_free(session_t *s)
{
    email_transporter_free(s->t);
    free(s->name);
    free(s);
}

static void release(session_t *s)
{
    pthread_mutex_lock(&sessions_lock);
    bool last = --s->refs == 0;
    if (last)
        pthread_cond_broadcast(&sessions_cond);
    bool orphan = last && s->closed;
    pthread_mutex_unlock(&sessions_lock);
    if (orphan) {
        /* closed from a callback meanwhile: finish that close without making this call wait */
        transporter_free_later(s->t);
        free(s->name);
        free(s);
    }
}

/* Takes the open session `name` out of the registry (false: there is none) and waits until no
 * call uses it. On the loop's own thread nothing may wait for the loop: a session that another
 * thread is using is left to that call to free (*out NULL). */
static bool unregister(const char *name, session_t **out)
{
    bool may_wait = !runtime_on_loop_thread();
    pthread_mutex_lock(&sessions_lock);
    session_t **p = find_locked(name);
    session_t *s = *p;
    bool found = s && s->open;
    if (found) {
        *p = s->next;
        while (may_wait && s->refs)
            pthread_cond_wait(&sessions_cond, &sessions_lock);
        if (s->refs) {
            s->closed = true;
            s = NULL;
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    *out = found ? s : NULL;
    return found;
}

static bool check_name(const char *user)
{
    if (!user || !*user)
        return fail(EMAIL_EINVAL, "the session name (user) is empty");
    return true;
}

bool email_start_smtp_session(const char *user, const char *password, const char *server,
                              int port, int mode, int option)
{
    if (!check_name(user))
        return false;
    if (!server || !*server)
        return fail(EMAIL_EINVAL, "email_start_smtp_session: no server given");
    if (port < 0 || port > 65535)
        return fail(EMAIL_EINVAL, "email_start_smtp_session: port %d is out of range", port);
    if (mode != EMAIL_SYNCHRONOUS && mode != EMAIL_ASYNCHRONOUS)
        return fail(EMAIL_EINVAL, "email_start_smtp_session: mode %d is not EMAIL_SYNCHRONOUS "
                                  "or EMAIL_ASYNCHRONOUS",
                    mode);
    int base = option & 0xFF;
    int flags = option & ~0xFF;
    if (base > EMAIL_OPTION_TLS ||
        (flags & ~(EMAIL_OPTION_ALLOW_INSECURE_AUTH | EMAIL_OPTION_NO_VERIFY)))
        return fail(EMAIL_EINVAL, "email_start_smtp_session: option 0x%x is not a combination "
                                  "of EMAIL_OPTION_ values",
                    (unsigned)option);
    /* reserve the name first, so that two threads cannot open it twice */
    session_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = email_strdup(user))) {
        free(s);
        return fail(EMAIL_ENOMEM, "out of memory");
    }
    s->mode = mode;
    pthread_mutex_lock(&sessions_lock);
    if (*find_locked(user)) {
        pthread_mutex_unlock(&sessions_lock);
        free(s->name);
        free(s);
        return fail(EMAIL_EEXIST, "a session named \"%s\" is already open", user);
    }
    s->next = sessions;
    sessions = s;
    pthread_mutex_unlock(&sessions_lock);

    email_server_t srv;
    email_server_init(&srv);
    srv.host = server;
    srv.port = port ? port : base == EMAIL_OPTION_TLS ? 465 : base == EMAIL_OPTION_STARTTLS ? 587
                                                                                           : 25;
    bool auth = password && *password;
    srv.user = auth ? user : NULL;
    srv.password = auth ? password : NULL;
    srv.connection_timeout = srv.send_timeout = email_get_timeout();
    pthread_mutex_lock(&settings_lock);
    char *ca = email_strdup(ca_file);
    pthread_mutex_unlock(&settings_lock);
    srv.ca_file = ca;

    transporter_extra_t x = {
        .tls_policy = base == EMAIL_OPTION_STARTTLS ? SMTP_TLS_REQUIRED : SMTP_TLS_IF_OFFERED,
        .implicit_tls = base == EMAIL_OPTION_TLS,
        .auth_limit = AUTH_PLAIN | AUTH_LOGIN,
        .auth_optional = true,
        .allow_insecure_auth = (option & EMAIL_OPTION_ALLOW_INSECURE_AUTH) != 0,
        .no_verify = (option & EMAIL_OPTION_NO_VERIFY) != 0,
    };
    char err[512];
    email_transporter_t *t = transporter_new_ex(&srv, &x, err, sizeof err);
    free(ca);
    email_status_t st;
    email_status_init(&st);
    /* an asynchronous session connects in the background: failures reach the callbacks */
    int rc = !t ? EMAIL_EINVAL
             : mode == EMAIL_ASYNCHRONOUS ? transporter_connect_async(t)
                                          : transporter_open(t, &st);
    if (rc && mode == EMAIL_ASYNCHRONOUS && t)
        email_status_fail(&st, rc, "%s", email_strerror(rc));

    pthread_mutex_lock(&sessions_lock);
    if (rc == 0) {
        s->t = t;
        s->open = true;
    } else {
        *find_locked(user) = s->next;
    }
    pthread_mutex_unlock(&sessions_lock);
    if (rc == 0)
        return succeed();
    free(s->name);
    free(s);
    if (!t)
        return fail(EMAIL_EINVAL, "email_start_smtp_session: %s", err);
    email_transporter_free(t);
    char what[300];
    snprintf(what, sizeof what, "cannot start the session with %s port %d", server, srv.port);
    return fail_status(rc, what, &st);
}

bool email_send_message(const char *user, const email_message_t *message)
{
    if (!check_name(user))
        return false;
    if (!message)
        return fail(EMAIL_EINVAL, "email_send_message: the message is NULL");
    session_t *s = acquire(user);
    if (!s)
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
    if (s->mode == EMAIL_ASYNCHRONOUS) {
        pthread_mutex_lock(&sessions_lock);
        email_send_cb cb = s->cb;
        void *cb_data = s->cb_data;
        email_progress_cb progress = s->progress;
        void *progress_data = s->progress_data;
        pthread_mutex_unlock(&sessions_lock);
        char err[512] = "";
        int rc = transporter_send_async_ex(s->t, message, cb, cb_data, progress, progress_data,
                                           NULL, err, sizeof err);
        release(s);
        if (rc)
            return fail(rc, "the message was not queued: %s", err[0] ? err : email_strerror(rc));
        return succeed();
    }
    email_status_t st;
    email_status_init(&st);
    int rc = email_transporter_send(s->t, message, &st);
    release(s);
    bool ok = rc == 0 ? succeed() : fail_status(rc, "the message was not sent", &st);
    email_status_clear(&st); /* its refused recipients, if some were */
    return ok;
}

/* An envelope address: no line breaks, no angle brackets, something@something or empty. */
static bool envelope_address_ok(const char *a, bool may_be_empty)
{
    if (!a || email_has_crlf(a) || strpbrk(a, "<> \t"))
        return false;
    if (!*a)
        return may_be_empty;
    const char *at = strrchr(a, '@');
    return at && at != a && at[1];
}

bool email_send_mime(const char *user, const char *from, const char *const *recipients,
                     const char *mime, size_t length)
{
    if (!check_name(user))
        return false;
    if (!envelope_address_ok(from, true))
        return fail(EMAIL_EINVAL, "email_send_mime: from \"%s\" is not an envelope address",
                    from ? from : "(null)");
    if (!recipients || !recipients[0])
        return fail(EMAIL_EINVAL, "email_send_mime: no recipient");
    for (size_t i = 0; recipients[i]; i++)
        if (!envelope_address_ok(recipients[i], false))
            return fail(EMAIL_EINVAL, "email_send_mime: recipient \"%s\" is not an address",
                        recipients[i]);
    if (!mime || !length)
        return fail(EMAIL_EINVAL, "email_send_mime: the message is empty");
    if (memchr(mime, '\0', length))
        return fail(EMAIL_EINVAL, "email_send_mime: the message contains a NUL byte");
    session_t *s = acquire(user);
    if (!s)
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
    email_status_t st;
    email_status_init(&st);
    int rc;
    if (s->mode == EMAIL_ASYNCHRONOUS) {
        pthread_mutex_lock(&sessions_lock);
        email_send_cb cb = s->cb;
        void *cb_data = s->cb_data;
        pthread_mutex_unlock(&sessions_lock);
        rc = transporter_send_raw(s->t, from, recipients, mime, length, cb, cb_data, NULL);
        release(s);
        if (rc)
            return fail(rc, "the message was not queued: %s", email_strerror(rc));
        return succeed();
    }
    rc = transporter_send_raw(s->t, from, recipients, mime, length, NULL, NULL, &st);
    release(s);
    bool ok = rc == 0 ? succeed() : fail_status(rc, "the message was not sent", &st);
    email_status_clear(&st); /* its refused recipients, if some were */
    return ok;
}

bool email_close_session(const char *user)
{
    if (!check_name(user))
        return false;
    session_t *s;
    if (!unregister(user, &s))
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
    if (s)
        session_free(s); /* on the loop's thread: finishes in the background */
    return succeed();
}

int email_message_status(uint64_t message_id)
{
    return registry_get(message_id);
}

static int set_session_callbacks(const char *user, bool progress, void *cb, void *user_data)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    pthread_mutex_lock(&sessions_lock);
    session_t *s = *find_locked(user);
    bool found = s && s->open;
    if (found) {
        if (progress) {
            s->progress = (email_progress_cb)cb;
            s->progress_data = user_data;
        } else {
            s->cb = (email_send_cb)cb;
            s->cb_data = user_data;
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    if (!found) {
        fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
        return EMAIL_ENOSESSION;
    }
    succeed();
    return 0;
}

int email_session_set_callback(const char *user, email_send_cb cb, void *user_data)
{
    return set_session_callbacks(user, false, (void *)cb, user_data);
}

int email_session_set_progress(const char *user, email_progress_cb cb, void *user_data)
{
    return set_session_callbacks(user, true, (void *)cb, user_data);
}

int email_session_set_log_file(const char *user, const char *path)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    session_t *s = acquire(user);
    if (!s) {
        fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
        return EMAIL_ENOSESSION;
    }
    char err[512];
    int rc = transporter_set_log(s->t, path, err, sizeof err);
    release(s);
    if (rc)
        fail(rc, "email_session_set_log_file: %s", err);
    else
        succeed();
    return rc;
}

void email_shutdown(void)
{
    for (;;) {
        pthread_mutex_lock(&sessions_lock);
        session_t *s = sessions;
        while (s && !s->open)
            s = s->next;
        char *name = s ? email_strdup(s->name) : NULL;
        pthread_mutex_unlock(&sessions_lock);
        if (!name)
            break;
        email_close_session(name);
        free(name);
    }
    transporter_quiesce_all();
    runtime_stop();
    pthread_mutex_lock(&settings_lock);
    free(ca_file);
    ca_file = NULL;
    pthread_mutex_unlock(&settings_lock);
    email_status_release_all();
}
