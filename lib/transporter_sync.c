/*
 * The transporter's calls from the caller's thread. Each one crosses to the loop thread: a
 * synchronous one through email__runtime_loop_call (EMAIL_EWOULDBLOCK on the loop's own thread), an
 * asynchronous one through email__runtime_post.
 */
#include "transporter_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "idn.h"
#include "registry.h"
#include "util.h"

/* Runs a check operation on the loop and waits for the connection's verdict. */
static int run_connection_op(email_transporter_t *t, runtime_call_fn fn, email_status_t *status)
{
    op_t o = {.t = t};
    email__status_init(&o.status);
    int rc = email__runtime_loop_call(fn, &o);
    if (rc)
        email__status_fail(&o.status, rc, "%s", email_strerror(rc));
    else
        rc = o.rc;
    o.status.success = rc == 0;
    o.status.error = rc;
    if (status)
        email__status_copy_into(status, &o.status);
    return rc;
}

int email__transporter_open_async(email_transporter_t *t, transporter_open_cb done, void *arg)
{
    open_op_t *o = calloc(1, sizeof *o);
    if (!o)
        return EMAIL_ENOMEM;
    o->t = t;
    o->done = done;
    o->done_arg = arg;
    queue_init(&o->node);
    int rc = email__runtime_post(email__transporter_op_open, o);
    if (rc)
        free(o);
    return rc;
}

/* check_connection: its own connection, QUIT as soon as it is ready. */
static void check_ready(void *ud, connection_t *c)
{
    op_t *o = ud;
    email__status_copy_into(&o->status, email__connection_ready_status(c));
    o->rc = 0;
    email__connection_quit(c);
}

static void check_closed(void *ud, connection_t *c, const email_status_t *why)
{
    op_t *o = ud;
    if (!email__connection_was_ready(c)) {
        email__status_copy_into(&o->status, why);
        o->rc = why->error ? why->error : EMAIL_ECLOSED;
    }
    email__runtime_call_done(o->call);
}

static void op_check(runtime_call_t *call, void *arg)
{
    static const connection_callbacks_t cbs = {.ready = check_ready, .closed = check_closed};
    op_t *o = arg;
    o->call = call;
    connection_config_t cfg;
    email__transporter_make_config(o->t, &cfg);
    o->rc = EMAIL_ECLOSED;
    connection_t *c = email__connection_new(email__runtime_loop(), &cfg, &cbs, o);
    if (!c) {
        email__status_fail(&o->status, EMAIL_ENOMEM, "out of memory");
        o->rc = EMAIL_ENOMEM;
        email__runtime_call_done(call);
        return;
    }
    email__connection_quit(c);
    email__connection_start(c);
}

int email_transporter_check_connection(email_transporter_t *t, email_status_t *status)
{
    if (!t)
        return email__error_set(EMAIL_EINVAL,
                                "email_transporter_check_connection: the transporter is NULL");
    /* ErrorInfo says what the status would have said */
    email_status_t local;
    email_status_t *st = status ? status : &local;
    email__status_init(&local);
    int rc = run_connection_op(t, op_check, st);
    email__transporter_status_finish(st, NULL, NULL, t->texts_4d, NULL);
    if (rc)
        email__error_set_status(rc, "email_transporter_check_connection", st);
    else
        email__error_clear();
    email_status_clear(&local);
    return rc;
}

static void op_send_and_wait(runtime_call_t *call, void *arg)
{
    send_req_t *r = arg;
    r->call = call;
    email__transporter_op_send(r);
}

/* Waits for r's outcome and frees r: 0 or its failure's code, filling status unless NULL. */
static int send_and_wait(send_req_t *r, email_status_t *status)
{
    int rc = email__runtime_loop_call(op_send_and_wait, r);
    if (rc) {
        if (status) {
            email_status_clear(status);
            email__status_fail(status, rc, "%s", email_strerror(rc));
            email__transporter_status_finish(status, NULL, NULL, r->texts_4d, NULL);
        }
        if (r->id)
            email__registry_done(r->id, EMAIL_ERROR); /* never queued: not pending forever */
        email__send_req_free(r);
        return rc;
    }
    rc = r->status.success ? 0 : (r->status.error ? r->status.error : EMAIL_ESERVER);
    if (status) {
        email__status_copy_into(status, &r->status);
        status->error = rc;
        email__transporter_status_finish(status, &r->refusals, &r->earlier, r->texts_4d, NULL);
    }
    email__send_req_free(r);
    return rc;
}

/* A request that could not be made: its status (when asked for) and ErrorInfo. */
static int send_refused(email_transporter_t *t, const email_message_t *m, int rc, const char *err,
                        email_status_t *status)
{
    if (status) {
        email_status_clear(status);
        email__status_fail(status, rc, "%s", err[0] ? err : email_strerror(rc));
        /* the message could not be composed; a NULL argument is the caller's */
        email__transporter_status_finish(status, NULL, NULL, !t || t->texts_4d,
                                  t && m && rc != EMAIL_ENOMEM ? "mime" : NULL);
    }
    return email__error_set(rc, "email_transporter_send: %s", err[0] ? err : email_strerror(rc));
}

int email_transporter_send(email_transporter_t *t, const email_message_t *m,
                           email_status_t *status)
{
    char err[512] = "";
    send_req_t *r;
    int rc = email__send_req_new_message(t, m, &r, err, sizeof err);
    if (rc)
        return send_refused(t, m, rc, err, status);
    /* ErrorInfo says what the status would have said */
    email_status_t local;
    email_status_t *st = status ? status : &local;
    email__status_init(&local);
    rc = send_and_wait(r, st);
    if (rc)
        email__error_set_status(rc, "email_transporter_send", st);
    else
        email__error_clear();
    email_status_clear(&local);
    return rc;
}

/* An envelope address: no line breaks, no angle brackets, something@something or empty. */
static bool envelope_address_ok(const char *a, bool may_be_empty)
{
    if (!a || email__has_crlf(a) || strpbrk(a, "<> \t"))
        return false;
    if (!*a)
        return may_be_empty;
    const char *at = strrchr(a, '@');
    return at && at != a && at[1];
}

/* A UTF-8 domain that has no A-label could not go to a server without SMTPUTF8. */
static int check_idn(const char *fn, const char *addr, char *err, size_t errlen)
{
    char why[300], *ace;
    int rc = email__idn_addr_ascii(addr, &ace, why, sizeof why);
    if (rc == EMAIL_EINVAL)
        snprintf(err, errlen, "%s: %s", fn, why);
    else if (rc)
        snprintf(err, errlen, "%s: out of memory", fn);
    else
        free(ace);
    return rc;
}

int email__transporter_raw_check(const transporter_raw_t *raw, const char *fn, char *err,
                                 size_t errlen)
{
    int rc;
    if (!envelope_address_ok(raw->from, true)) {
        snprintf(err, errlen, "%s: from \"%s\" is not an envelope address", fn,
                 raw->from ? raw->from : "(null)");
        return EMAIL_EINVAL;
    }
    if (!raw->rcpts || !raw->rcpts[0]) {
        snprintf(err, errlen, "%s: no recipient", fn);
        return EMAIL_EINVAL;
    }
    for (size_t i = 0; raw->rcpts[i]; i++) {
        if (!envelope_address_ok(raw->rcpts[i], false)) {
            snprintf(err, errlen, "%s: recipient \"%s\" is not an address", fn, raw->rcpts[i]);
            return EMAIL_EINVAL;
        }
        if ((rc = check_idn(fn, raw->rcpts[i], err, errlen)))
            return rc;
    }
    if ((rc = check_idn(fn, raw->from, err, errlen)))
        return rc;
    if (!raw->mime || !raw->length) {
        snprintf(err, errlen, "%s: the message is empty", fn);
        return EMAIL_EINVAL;
    }
    if (memchr(raw->mime, '\0', raw->length)) {
        snprintf(err, errlen, "%s: the message contains a NUL byte", fn);
        return EMAIL_EINVAL;
    }
    return 0;
}

/* A request that will not be queued after all: failed in the registry, out of the outbox. */
static void unqueue(send_req_t *r)
{
    email__registry_done(r->id, EMAIL_ERROR);
    if (r->entry) {
        email__outbox_entry_settle(r->entry, OUTBOX_REMOVE);
        r->entry = NULL;
    }
    email__send_req_free(r);
}

int email__transporter_send_raw(email_transporter_t *t, const transporter_raw_t *raw,
                         email_status_t *status)
{
    if (status)
        email_status_clear(status);
    send_req_t *r;
    int rc = email__send_req_new_raw(t, raw, &r);
    if (rc)
        return rc;
    if (raw->message_id)
        *raw->message_id = r->id;
    if (status)
        return send_and_wait(r, status);
    char err[512];
    if ((rc = email__send_req_maybe_outbox(r, err, sizeof err)) != 0) {
        unqueue(r);
        if (raw->message_id)
            *raw->message_id = 0;
        if (raw->err)
            snprintf(raw->err, raw->errlen, "%s", err);
        return rc;
    }
    r->cb = raw->done;
    r->cb_data = raw->user_data;
    r->progress = raw->progress;
    r->progress_data = raw->progress_data;
    rc = email__runtime_post(email__transporter_op_send, r);
    if (rc)
        unqueue(r);
    return rc;
}

int email__transporter_send_async_ex(email_transporter_t *t, const email_message_t *m,
                                     email_send_cb done, void *user_data,
                                     email_progress_cb progress, void *progress_data,
                                     uint64_t *message_id, char *err, size_t errlen)
{
    send_req_t *r;
    int rc = email__send_req_new_message(t, m, &r, err, errlen);
    if (rc)
        return rc;
    r->cb = done;
    r->cb_data = user_data;
    if (progress) {
        r->progress = progress;
        r->progress_data = progress_data;
    }
    if ((rc = email__send_req_maybe_outbox(r, err, errlen)) != 0) {
        unqueue(r);
        return rc;
    }
    if (message_id)
        *message_id = r->id;
    rc = email__runtime_post(email__transporter_op_send, r);
    if (rc) {
        unqueue(r);
        snprintf(err, errlen, "%s", email_strerror(rc));
    }
    return rc;
}

int email_transporter_send_async(email_transporter_t *t, const email_message_t *m,
                                 email_send_cb done, void *user_data, uint64_t *message_id)
{
    char err[512] = "";
    int rc = email__transporter_send_async_ex(t, m, done, user_data, NULL, NULL, message_id, err,
                                       sizeof err);
    if (rc)
        email__error_set(rc, "%s", err);
    else
        email__error_clear();
    return rc;
}

int email_transporter_send_mime(email_transporter_t *t, const char *from,
                                const char *const *recipients, const char *mime, size_t length,
                                email_status_t *status)
{
    if (status)
        email_status_clear(status);
    char err[512];
    transporter_raw_t raw = {.from = from, .rcpts = recipients, .mime = mime, .length = length};
    int rc = t ? email__transporter_raw_check(&raw, "email_transporter_send_mime", err, sizeof err)
               : EMAIL_EINVAL;
    if (rc) {
        if (status) {
            email__status_fail(status, rc, "%s", t ? err : "the transporter is NULL");
            status->error = rc;
        }
        return email__error_set(rc, "%s", t ? err : "email_transporter_send_mime: the "
                                                   "transporter is NULL");
    }
    email_status_t local;
    email_status_t *st = status ? status : &local;
    email__status_init(&local);
    rc = email__transporter_send_raw(t, &raw, st);
    if (rc)
        email__error_set_status(rc, "email_transporter_send_mime", st);
    else
        email__error_clear();
    email_status_clear(&local);
    return rc;
}

int email_transporter_send_mime_async(email_transporter_t *t, const char *from,
                                      const char *const *recipients, const char *mime,
                                      size_t length, email_send_cb done, void *user_data,
                                      uint64_t *message_id)
{
    if (message_id)
        *message_id = 0;
    char err[512];
    transporter_raw_t raw = {.from = from, .rcpts = recipients, .mime = mime, .length = length,
                             .done = done, .user_data = user_data, .message_id = message_id};
    char why[512] = "";
    raw.err = why;
    raw.errlen = sizeof why;
    if (!t)
        return email__error_set(EMAIL_EINVAL, "email_transporter_send_mime_async: the "
                                              "transporter is NULL");
    int rc =
        email__transporter_raw_check(&raw, "email_transporter_send_mime_async", err, sizeof err);
    if (!rc && (rc = email__transporter_send_raw(t, &raw, NULL)) != 0)
        snprintf(err, sizeof err, "email_transporter_send_mime_async: the message was not "
                                  "queued: %s", why[0] ? why : email_strerror(rc));
    if (rc)
        return email__error_set(rc, "%s", err);
    email__error_clear();
    return 0;
}

typedef struct cancel_op {
    email_transporter_t *t;
    uint64_t id;
    int rc;
} cancel_op_t;

static void op_cancel(runtime_call_t *call, void *arg)
{
    cancel_op_t *o = arg;
    o->rc = email__transporter_cancel_queued(o->t, o->id);
    email__runtime_call_done(call);
}

int email_transporter_cancel(email_transporter_t *t, uint64_t message_id)
{
    if (!t || !message_id)
        return email__error_set(EMAIL_EINVAL, "email_transporter_cancel: %s",
                                t ? "the message id is 0" : "the transporter is NULL");
    cancel_op_t o = {.t = t, .id = message_id};
    int rc = email__runtime_loop_call(op_cancel, &o);
    if (!rc)
        rc = o.rc;
    if (rc == EMAIL_EBUSY)
        return email__error_set(rc, "email_transporter_cancel: message %" PRIu64
                                    " has already started going out", message_id);
    if (rc == EMAIL_ENOTFOUND)
        return email__error_set(rc, "email_transporter_cancel: the transporter holds no message %"
                                    PRIu64 " waiting to go out", message_id);
    if (rc)
        return email__error_set(rc, "email_transporter_cancel: %s", email_strerror(rc));
    email__error_clear();
    return 0;
}

typedef struct progress_op {
    email_transporter_t *t;
    email_progress_cb cb;
    void *data;
} progress_op_t;

static void op_set_progress(runtime_call_t *call, void *arg)
{
    progress_op_t *o = arg;
    o->t->progress = o->cb;
    o->t->progress_data = o->data;
    email__runtime_call_done(call);
}

int email_transporter_set_progress(email_transporter_t *t, email_progress_cb cb, void *user_data)
{
    if (!t)
        return email__error_set(EMAIL_EINVAL,
                                "email_transporter_set_progress: the transporter is NULL");
    progress_op_t o = {.t = t, .cb = cb, .data = user_data};
    int rc = email__runtime_loop_call(op_set_progress, &o);
    if (rc)
        return email__error_set(rc, "email_transporter_set_progress: %s", email_strerror(rc));
    email__error_clear();
    return 0;
}

typedef struct log_op {
    email_transporter_t *t;
    log_sink_t *log;
} log_op_t;

static void op_set_log(runtime_call_t *call, void *arg)
{
    log_op_t *o = arg;
    log_sink_t *old = o->t->log;
    o->t->log = o->log;
    queue_t *n;
    queue_foreach (n, &o->t->conns)
        email__connection_set_log(queue_data(n, pool_conn_t, node)->conn, o->log);
    email__log_sink_release(old);
    email__runtime_call_done(call);
}

int email__transporter_set_log(email_transporter_t *t, const char *path, char *err, size_t errlen)
{
    log_op_t o = {.t = t};
    if (path && !(o.log = email__log_sink_open(path, err, errlen)))
        return EMAIL_EIO;
    int rc = email__runtime_loop_call(op_set_log, &o);
    if (rc) {
        email__log_sink_release(o.log);
        snprintf(err, errlen, "%s", email_strerror(rc));
    }
    return rc;
}

static void op_free(runtime_call_t *call, void *arg)
{
    op_t *o = arg;
    o->call = call;
    o->t->freer = o;
    email__transporter_start_free(o->t);
}

void email_transporter_free(email_transporter_t *t)
{
    if (!t)
        return;
    if (email__runtime_on_loop_thread()) {
        email__transporter_free_later(t); /* waiting on the loop's own thread would never end */
        return;
    }
    op_t o = {.t = t};
    if (email__runtime_loop_call(op_free, &o) == 0)
        email__transporter_destroy(t);
}

/* ------------------------------------------------------------------------------------------- */
/* The outbox: what an earlier run (or a 4xx, or a lost connection) left there                  */

static void complete_on_loop(void *arg)
{
    email__send_req_complete(arg);
}

/* An entry whose end of data went out in an earlier run: reported, not sent; kept for the next
 * resume unless dropped. */
static void report_unknown(send_req_t *r, bool drop)
{
    email__status_fail(&r->status, EMAIL_EUNKNOWN,
                       "the end of this message went out in an earlier run and no reply came: "
                       "it may have been delivered (resume with EMAIL_OUTBOX_RESEND_UNKNOWN to "
                       "send it again)");
    r->status.recipients = r->nrcpts;
    if (drop) {
        email__outbox_entry_settle(r->entry, OUTBOX_REMOVE);
        r->entry = NULL;
    }
    if (email__runtime_post(complete_on_loop, r) != 0) {
        email__registry_done(r->id, EMAIL_ERROR);
        email__send_req_free(r);
    }
}

int email__transporter_outbox_resume(email_transporter_t *t, const char *name, email_send_cb cb,
                                     void *cb_data, int flags, char *err, size_t errlen)
{
    outbox_t *ob = t->outbox ? email__outbox_ref(t->outbox) : email__outbox_global();
    if (!ob) {
        snprintf(err, errlen, "no outbox is set (email_set_outbox%s)",
                 name ? "" : " or the server's outbox");
        return EMAIL_EINVAL;
    }
    outbox_filter_t f = {.name = name, .host = t->host, .user = t->user, .port = t->port};
    outbox_entry_t **v;
    size_t n;
    int rc = email__outbox_take(ob, &f, &v, &n, err, errlen);
    email__outbox_release(ob);
    if (rc)
        return rc;
    int taken = 0;
    for (size_t i = 0; i < n; i++) {
        bool unknown = v[i]->flags & OUTBOX_F_EOD_SENT;
        send_req_t *r;
        if (email__send_req_new_entry(t, v[i], &r) != 0)
            continue; /* out of memory: the entry waits for another resume */
        r->cb = cb;
        r->cb_data = cb_data;
        r->texts_4d = t->texts_4d;
        taken++;
        if (unknown && !(flags & EMAIL_OUTBOX_RESEND_UNKNOWN)) {
            report_unknown(r, flags & EMAIL_OUTBOX_DROP_UNKNOWN);
        } else if (email__runtime_post(email__transporter_op_send, r) != 0) {
            email__registry_done(r->id, EMAIL_ERROR);
            email__send_req_free(r); /* the entry stays, unclaimed */
            taken--;
        }
    }
    free(v);
    return taken;
}

int email_transporter_outbox_resume(email_transporter_t *t, int flags, email_send_cb done,
                                    void *user_data)
{
    if (!t)
        return email__error_set(EMAIL_EINVAL,
                                "email_transporter_outbox_resume: the transporter is NULL");
    char err[512];
    int n = email__transporter_outbox_resume(t, NULL, done, user_data, flags, err, sizeof err);
    if (n < 0)
        return email__error_set(n, "email_transporter_outbox_resume: %s", err);
    email__error_clear();
    return n;
}
