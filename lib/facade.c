/*
 * WLanguage-style named sessions: EmailStartSMTPSession, EmailSendMessage, EmailCloseSession,
 * EmailSetTimeOut, EmailStatus, built on transporters. Each public call sets or clears the
 * calling thread's ErrorInfo (error.c).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "emailsession.h"
#include "message.h"
#include "recv_session.h"
#include "registry.h"
#include "runtime.h"
#include "settings.h"
#include "status.h"
#include "transporter.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------- */
/* ErrorInfo                                                                                    */

static bool fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static bool fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    return false;
}

/* ErrorInfo for a failed send or start, with the server's reply when there was one. */
static bool fail_status(int rc, const char *what, const email_status_t *s)
{
    email__error_set_status(rc, what, s);
    return false;
}

static bool succeed(void)
{
    email__error_clear();
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* The registry of named sessions                                                               */

typedef struct start_op start_op_t;

/* A session is in the registry from its start on; while start is set it is not open yet (what
 * is sent meanwhile waits in its transporter for the start's connection). */
typedef struct session {
    char *name;
    email_transporter_t *t;
    int mode;
    int refs;            /* calls using the session right now */
    email_send_cb cb;    /* asynchronous outcome, for messages sent afterwards */
    void *cb_data;
    email_progress_cb progress;
    void *progress_data;
    start_op_t *start;   /* its start, until the verdict */
    bool closed;         /* closed on the loop's thread while in use: its last user frees it */
    struct session *next;
} session_t;

/* A start waiting for its verdict, which goes to done (where callbacks run) or wakes the
 * blocking starter. */
struct start_op {
    session_t *session;        /* NULL once the session was closed meanwhile (sessions_lock) */
    char *name;
    email_start_cb done;
    void *user_data;
    runtime_call_t *call;      /* email_start_smtp_session's caller, waiting */
    email_status_t *status;    /* where the verdict goes (the blocking starter's, or room after
                                  this struct when done needs it); NULL when nobody reads it:
                                  a thousand sessions may be starting at once */
};

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

/* The session named `name` (open or starting) with a reference taken, or NULL. */
static session_t *acquire(const char *name)
{
    pthread_mutex_lock(&sessions_lock);
    session_t *s = *find_locked(name);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&sessions_lock);
    return s;
}

static void session_free(session_t *s)
{
    email_transporter_free(s->t);
    free(s->name);
    free(s);
}

/* On the loop's thread: the transporter closes in the background. */
static void session_free_later(session_t *s)
{
    email__transporter_free_later(s->t);
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
    if (orphan)
        session_free_later(s); /* closed meanwhile: finish that without making this call wait */
}

/* Takes *p out of the registry (lock held; its start reports to nobody from now on) and waits
 * until no call uses it. On the loop's own thread nothing may wait for the loop: a session that
 * another thread is using is left to that call to free (NULL). */
static session_t *take_out_locked(session_t **p, bool may_wait)
{
    session_t *s = *p;
    *p = s->next;
    if (s->start) {
        s->start->session = NULL;
        s->start = NULL;
    }
    while (may_wait && s->refs)
        pthread_cond_wait(&sessions_cond, &sessions_lock);
    if (s->refs) {
        s->closed = true;
        return NULL;
    }
    return s;
}

/* Takes the session `name` out of the registry (false: there is none); *out as above. */
static bool unregister(const char *name, session_t **out)
{
    bool may_wait = !email__runtime_on_loop_thread();
    pthread_mutex_lock(&sessions_lock);
    session_t **p = find_locked(name);
    bool found = *p != NULL;
    *out = found ? take_out_locked(p, may_wait) : NULL;
    pthread_mutex_unlock(&sessions_lock);
    return found;
}

static bool check_name(const char *user)
{
    if (!user || !*user)
        return fail(EMAIL_EINVAL, "the session name (user) is empty");
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Starting a session                                                                           */

static void start_op_free(start_op_t *op)
{
    free(op->name);
    free(op);
}

static void deliver_start(void *arg)
{
    start_op_t *op = arg;
    op->done(op->name, op->status, op->user_data);
    start_op_free(op);
}

/* The start's verdict, on the loop thread: the session is open, or its name is free again
 * before done runs (done may start it again). */
static void start_finished(void *arg, const email_status_t *status)
{
    start_op_t *op = arg;
    if (op->status)
        email__status_copy_into(op->status, status);
    session_t *failed = NULL;
    pthread_mutex_lock(&sessions_lock);
    session_t *s = op->session;
    if (s) {
        s->start = NULL;
        if (status->error) {
            session_t **p = &sessions;
            while (*p != s)
                p = &(*p)->next;
            failed = take_out_locked(p, false);
        }
    } else if (status->error == EMAIL_ECANCELED && op->status) {
        email__strlcpy(op->status->status_text, "the session was closed before it was open",
                      sizeof op->status->status_text);
    }
    pthread_mutex_unlock(&sessions_lock);
    if (failed)
        session_free_later(failed);
    if (op->call)
        email__runtime_call_done(op->call); /* the starter owns op from here */
    else if (op->done)
        email__runtime_deliver(deliver_start, op);
    else
        start_op_free(op);
}

static bool check_start_args(const char *user, const char *server, int port, int mode,
                             int option)
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
    return true;
}

static int default_port(int port, int option)
{
    int base = option & 0xFF;
    return port ? port : base == EMAIL_OPTION_TLS ? 465 : base == EMAIL_OPTION_STARTTLS ? 587 : 25;
}

static bool name_in_use(const char *user)
{
    return fail(EMAIL_EEXIST, "a session named \"%s\" is already open", user);
}

/* False when the name is in use; else *log_path is a copy of its preset log file, or NULL. */
static bool name_free(const char *user, char **log_path)
{
    pthread_mutex_lock(&sessions_lock);
    bool taken = *find_locked(user) != NULL;
    *log_path = taken ? NULL : email__settings_log_preset(user, false);
    pthread_mutex_unlock(&sessions_lock);
    return taken ? name_in_use(user) : true;
}

/* The session's transporter, with WLanguage's rules; NULL and ErrorInfo on bad settings. */
static email_transporter_t *facade_transporter(const char *user, const char *password,
                                               const char *server, int port, int option,
                                               const char *log_path)
{
    int base = option & 0xFF;
    email_server_t srv;
    email_server_init(&srv);
    srv.host = server;
    srv.port = default_port(port, option);
    bool auth = password && *password;
    srv.user = auth ? user : NULL;
    srv.password = auth ? password : NULL;
    srv.connection_timeout = srv.send_timeout = email_get_timeout();
    srv.log_file = log_path;
    char *ca = NULL;
    email__settings_get(&srv.max_connections, &ca);
    srv.ca_file = ca;

    transporter_policy_t policy = {
        .tls = base == EMAIL_OPTION_TLS        ? TRANSPORTER_TLS_IMPLICIT
               : base == EMAIL_OPTION_STARTTLS ? TRANSPORTER_TLS_STARTTLS
                                               : TRANSPORTER_TLS_OPPORTUNISTIC,
        .auth = TRANSPORTER_AUTH_WLANGUAGE,
        .allow_insecure_auth = (option & EMAIL_OPTION_ALLOW_INSECURE_AUTH) != 0,
        .no_verify = (option & EMAIL_OPTION_NO_VERIFY) != 0,
        .session_name = user,
    };
    char err[512];
    email_transporter_t *t = email__transporter_new_ex(&srv, &policy, err, sizeof err);
    free(ca);
    if (!t)
        fail(EMAIL_EINVAL, "email_start_smtp_session: %s", err);
    return t;
}

/* Puts s in the registry (false: the name was taken meanwhile). The start takes the name's
 * preset log file, whatever its outcome. */
static bool register_session(session_t *s)
{
    pthread_mutex_lock(&sessions_lock);
    bool free_name = *find_locked(s->name) == NULL;
    if (free_name) {
        s->next = sessions;
        sessions = s;
        free(email__settings_log_preset(s->name, true));
    }
    pthread_mutex_unlock(&sessions_lock);
    return free_name;
}

/* Registers the session (arguments checked): it comes with the start's reference (released
 * once the open is under way). NULL + ErrorInfo for what is known at once. */
static session_t *register_start(const char *user, const char *password, const char *server,
                                 int port, int mode, int option, start_op_t *op)
{
    char *log_path;
    if (!name_free(user, &log_path))
        return NULL;
    email_transporter_t *t = facade_transporter(user, password, server, port, option, log_path);
    free(log_path);
    if (!t)
        return NULL;
    session_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = email__strdup(user)) || !(op->name = email__strdup(user))) {
        free(s ? s->name : NULL);
        free(s);
        email_transporter_free(t);
        fail(EMAIL_ENOMEM, "out of memory");
        return NULL;
    }
    s->t = t;
    s->mode = mode;
    s->start = op;
    s->refs = 1; /* a close meanwhile waits until the start is under way */
    op->session = s;
    if (!register_session(s)) {
        session_free(s);
        name_in_use(user);
        return NULL;
    }
    return s;
}

/* A start that will not be under way: the session out of the registry again (unless a close
 * took it meanwhile) and the start's reference released, which frees it. */
static void unregister_start(session_t *s, start_op_t *op)
{
    pthread_mutex_lock(&sessions_lock);
    if (op->session)
        take_out_locked(find_locked(op->name), false);
    pthread_mutex_unlock(&sessions_lock);
    release(s);
}

/* Starts connecting the registered session s (any thread); op reports the verdict. 0, or why it
 * could not start (s is then gone). */
static int open_session(session_t *s, start_op_t *op)
{
    int rc = email__transporter_open_async(s->t, start_finished, op);
    if (rc)
        unregister_start(s, op);
    else
        release(s);
    return rc;
}

typedef struct blocking_start {
    session_t *session;
    start_op_t *op;
    int rc;
} blocking_start_t;

/* On the loop thread, so that op->call is set before any verdict: the call ends with it. */
static void open_and_wait(runtime_call_t *call, void *arg)
{
    blocking_start_t *b = arg;
    b->op->call = call;
    b->rc = open_session(b->session, b->op);
    if (b->rc)
        email__runtime_call_done(call); /* no verdict will come */
}

bool email_start_smtp_session(const char *user, const char *password, const char *server,
                              int port, int mode, int option)
{
    if (!check_start_args(user, server, port, mode, option))
        return false;
    if (email__runtime_on_loop_thread())
        return fail(EMAIL_EWOULDBLOCK, "email_start_smtp_session waits for the server: on the "
                                       "loop's own thread, use email_start_smtp_session_async");
    start_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return fail(EMAIL_ENOMEM, "out of memory");
    email_status_t verdict;
    email__status_init(&verdict);
    op->status = &verdict;
    blocking_start_t b = {.op = op};
    b.session = register_start(user, password, server, port, mode, option, op);
    bool ok = b.session != NULL;
    if (ok) {
        int rc = email__runtime_loop_call(open_and_wait, &b);
        if (rc)
            unregister_start(b.session, op); /* open_and_wait did not run */
        else
            rc = b.rc;
        if (rc) {
            ok = fail(rc, "email_start_smtp_session: %s", email_strerror(rc));
        } else if (verdict.error) {
            char what[300];
            snprintf(what, sizeof what, "cannot start the session with %s port %d", server,
                     default_port(port, option));
            ok = fail_status(verdict.error, what, &verdict);
        } else {
            succeed();
        }
    }
    start_op_free(op);
    return ok;
}

bool email_start_smtp_session_async(const char *user, const char *password, const char *server,
                                    int port, int mode, int option, email_start_cb done,
                                    void *user_data)
{
    if (!check_start_args(user, server, port, mode, option))
        return false;
    start_op_t *op = calloc(1, sizeof *op + (done ? sizeof *op->status : 0));
    if (!op)
        return fail(EMAIL_ENOMEM, "out of memory");
    if (done)
        op->status = (email_status_t *)(op + 1);
    op->done = done;
    op->user_data = user_data;
    session_t *s = register_start(user, password, server, port, mode, option, op);
    if (!s) {
        start_op_free(op);
        return false;
    }
    int rc = open_session(s, op);
    if (rc) {
        start_op_free(op);
        return fail(rc, "email_start_smtp_session: %s", email_strerror(rc));
    }
    return succeed();
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
        int rc = email__transporter_send_async_ex(s->t, message, cb, cb_data, progress,
                                                  progress_data, NULL, err, sizeof err);
        release(s);
        if (rc)
            return fail(rc, "the message was not queued: %s", err[0] ? err : email_strerror(rc));
        return succeed();
    }
    email_status_t st;
    email__status_init(&st);
    int rc = email_transporter_send(s->t, message, &st);
    release(s);
    bool ok = rc == 0 ? succeed() : fail_status(rc, "the message was not sent", &st);
    email_status_clear(&st); /* its refused recipients, if some were */
    return ok;
}

bool email_send_mime_id(const char *user, const char *from, const char *const *recipients,
                        const char *mime, size_t length, uint64_t *message_id)
{
    if (message_id)
        *message_id = 0;
    if (!check_name(user))
        return false;
    char err[512], why[512] = "";
    transporter_raw_t raw = {.from = from, .rcpts = recipients, .mime = mime, .length = length,
                             .message_id = message_id, .err = why, .errlen = sizeof why};
    int rc = email__transporter_raw_check(&raw, "email_send_mime", err, sizeof err);
    if (rc)
        return fail(rc, "%s", err);
    session_t *s = acquire(user);
    if (!s)
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
    if (s->mode == EMAIL_ASYNCHRONOUS) {
        pthread_mutex_lock(&sessions_lock);
        raw.done = s->cb;
        raw.user_data = s->cb_data;
        raw.progress = s->progress;
        raw.progress_data = s->progress_data;
        pthread_mutex_unlock(&sessions_lock);
        rc = email__transporter_send_raw(s->t, &raw, NULL);
        release(s);
        if (rc)
            return fail(rc, "the message was not queued: %s", why[0] ? why : email_strerror(rc));
        return succeed();
    }
    email_status_t st;
    email__status_init(&st);
    rc = email__transporter_send_raw(s->t, &raw, &st);
    release(s);
    bool ok = rc == 0 ? succeed() : fail_status(rc, "the message was not sent", &st);
    email_status_clear(&st); /* its refused recipients, if some were */
    return ok;
}

bool email_send_mime(const char *user, const char *from, const char *const *recipients,
                     const char *mime, size_t length)
{
    return email_send_mime_id(user, from, recipients, mime, length, NULL);
}

/* Closes the session named user (false: there is none); ErrorInfo is the caller's to set. */
static bool close_session(const char *user)
{
    session_t *s;
    if (!unregister(user, &s))
        return false;
    if (s)
        session_free(s); /* on the loop's thread: finishes in the background */
    return true;
}

bool email_close_session(const char *user)
{
    if (!check_name(user))
        return false;
    bool smtp = close_session(user);
    int recv = email__recv_close(user); /* a name may have both kinds: both end */
    if (recv < 0)
        return false; /* ErrorInfo: its QUIT failed, its deletions are lost */
    if (!smtp && !recv)
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user);
    return succeed();
}

int email_message_status(uint64_t message_id)
{
    int state = email__registry_get(message_id);
    if (state < 0)
        fail(state, "email_message_status: no message has the id %" PRIu64, message_id);
    else
        succeed();
    return state;
}

static int set_session_callbacks(const char *user, bool progress, void *cb, void *user_data)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    pthread_mutex_lock(&sessions_lock);
    session_t *s = *find_locked(user);
    bool found = s != NULL;
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

int email_outbox_resume_ex(const char *user, int flags)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    session_t *s = acquire(user);
    if (!s)
        return fail(EMAIL_ENOSESSION, "no session named \"%s\" is open", user), EMAIL_ENOSESSION;
    pthread_mutex_lock(&sessions_lock);
    email_send_cb cb = s->cb;
    void *cb_data = s->cb_data;
    pthread_mutex_unlock(&sessions_lock);
    char err[512];
    int n = email__transporter_outbox_resume(s->t, user, cb, cb_data, flags, err, sizeof err);
    release(s);
    if (n < 0)
        return fail(n, "email_outbox_resume: %s", err), n;
    return succeed(), n;
}

int email_outbox_resume(const char *user)
{
    return email_outbox_resume_ex(user, 0);
}

/* Remembers path (NULL: forgets) for the next start of `name`, unless the session is there
 * already: then *s is that session, with a reference taken. */
static int preset_log(const char *name, const char *path, session_t **s)
{
    pthread_mutex_lock(&sessions_lock);
    *s = *find_locked(name);
    int rc = 0;
    if (*s)
        (*s)->refs++;
    else
        rc = email__settings_set_log_preset(name, path);
    pthread_mutex_unlock(&sessions_lock);
    return rc;
}

int email_session_set_log_file(const char *user, const char *path)
{
    if (!check_name(user))
        return EMAIL_EINVAL;
    char err[512];
    int rc = 0;
    if (path) { /* a path that cannot be written is refused now, not at the start */
        log_sink_t *check = email__log_sink_open(path, err, sizeof err);
        if (!check)
            rc = EMAIL_EIO;
        email__log_sink_release(check);
    }
    /* a POP3 or IMAP session of that name takes it now; then no later start does */
    int recv = rc ? 0 : email__recv_set_log(user, path, err, sizeof err);
    if (recv < 0)
        rc = recv;
    session_t *s = NULL;
    if (!rc)
        rc = preset_log(user, recv ? NULL : path, &s);
    if (!rc && s) {
        rc = email__transporter_set_log(s->t, path, err, sizeof err);
        release(s);
    }
    if (rc == EMAIL_ENOMEM)
        snprintf(err, sizeof err, "out of memory");
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
        char *name = sessions ? email__strdup(sessions->name) : NULL;
        pthread_mutex_unlock(&sessions_lock);
        if (!name)
            break;
        close_session(name); /* not email_close_session: the shutdown leaves ErrorInfo alone */
        free(name);
    }
    email__recv_close_all();
    email__transporter_quiesce_all();
    email__runtime_stop();
    email__settings_reset();
    email__status_release_all();
}
