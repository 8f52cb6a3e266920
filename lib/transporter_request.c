/*
 * A send request: a message frozen (or prebuilt bytes copied) in the caller's thread, read back
 * as the job's body on the loop thread (and copied to the extended log), and its outcome handed
 * to whoever waits for it: a synchronous sender, a callback, or nobody.
 */
#include "transporter_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idn.h"
#include "message_content.h"
#include "registry.h"
#include "util.h"

/* The body of a job: a MIME reader or prebuilt bytes. */
static ssize_t req_read(void *ctx, char *buf, size_t n)
{
    send_req_t *r = ctx;
    log_sink_t *log = r->t->log;
    ssize_t got;
    if (r->entry) {
        got = email__outbox_entry_read(r->entry, buf, n);
    } else if (r->reader) {
        got = email__mime_reader_read(r->reader, buf, n);
    } else {
        size_t left = r->raw_len - r->raw_off;
        got = (ssize_t)(n > left ? left : n);
        memcpy(buf, r->raw + r->raw_off, (size_t)got);
        r->raw_off += (size_t)got;
    }
    if (log && got >= 0) {
        /* the extended log holds the full MIME of every message sent */
        if (!r->logging) {
            r->logging = true;
            email__log_data_begin(log, r->session, r->id);
        }
        if (got > 0)
            email__log_data(log, r->session, buf, (size_t)got);
        else
            email__log_data_end(log, r->session, r->id);
    }
    return got;
}

static void req_read_error(void *ctx, int error, char *text, size_t size)
{
    send_req_t *r = ctx;
    email__strlcpy(text, r->entry    ? r->entry->error
                         : r->reader ? email__mime_reader_error(r->reader)
                                     : email_strerror(error),
                   size);
}

int email__send_req_rewind(send_req_t *r, char *err, size_t errlen)
{
    r->raw_off = 0;
    r->logging = false;
    if (r->entry)
        email__outbox_entry_rewind(r->entry);
    if (r->msg) {
        email__mime_reader_free(r->reader);
        r->reader = NULL;
        int rc = email__mime_reader_new(r->msg, &r->reader, err, errlen);
        if (rc)
            return rc;
        r->job.size = email__mime_reader_size(r->reader);
        r->job.eight_bit = email__mime_reader_8bit(r->reader);
    }
    r->job.read = req_read;
    r->job.read_error = req_read_error;
    r->job.hold_eod = r->entry ? email__send_req_hold_eod : NULL;
    r->job.ctx = r;
    r->job.user = r;
    email__refusals_free(&r->job.refusals);
    return 0;
}

void email__send_req_free(send_req_t *r)
{
    if (r->entry) /* never settled: the entry stays for a later resume */
        email__outbox_entry_free(r->entry, true);
    email__mime_reader_free(r->reader);
    email_message_free(r->msg);
    free(r->raw);
    free(r->from);
    for (size_t i = 0; r->rcpts && i < r->nrcpts; i++)
        free(r->rcpts[i]);
    free(r->rcpts);
    free(r->from_ace);
    for (size_t i = 0; r->rcpts_ace && i < r->job.nrcpts; i++)
        free(r->rcpts_ace[i]);
    free(r->rcpts_ace);
    email__refusals_free(&r->job.refusals);
    email__refusals_free(&r->refusals);
    email__errors_free(&r->earlier);
    free(r);
}

/* 4D's statusText of a failure that was not the server's. */
#define FAILED_PREFIX "Failed to send email: "

/*
 * At the status's final address: for a failure that was not the server's, the chain of causes
 * (this failure, then why earlier attempts failed) and, with 4D's texts, FAILED_PREFIX before
 * ours; then its lists are attached. component NULL: by the code.
 */
void email__transporter_status_finish(email_status_t *s, email_refusals_t *refusals,
                               const email_errors_t *earlier, bool texts_4d,
                               const char *component)
{
    email_errors_t chain;
    email__errors_init(&chain);
    if (!s->success && !s->status && s->error) {
        /* without memory for all of it, the chain is shorter: still true */
        int rc = email__errors_add(&chain, s->error, s->status_text, component);
        for (size_t i = 0; !rc && earlier && i < earlier->n; i++)
            rc = email__errors_add(&chain, earlier->v[i].code, earlier->v[i].message,
                                  earlier->v[i].component);
        if (texts_4d) {
            char text[sizeof s->status_text];
            snprintf(text, sizeof text, "%s%.*s", FAILED_PREFIX,
                     (int)(sizeof text - sizeof FAILED_PREFIX), s->status_text);
            memcpy(s->status_text, text, sizeof text);
        }
    }
    email__status_attach(s, refusals, &chain);
}

static void deliver_async(void *arg)
{
    send_req_t *r = arg;
    email__transporter_status_finish(&r->status, &r->refusals, &r->earlier, r->texts_4d, NULL);
    r->cb(r->id, &r->status, r->cb_data);
    email_status_clear(&r->status); /* the callback's status is valid during the call only */
    email__send_req_free(r);
}

/* What becomes of an outbox entry with this outcome: removed once delivered, refused for good
 * (a 5xx to the message itself, or too large) or canceled; kept otherwise, marked when the
 * end of data went unanswered. */
static enum outbox_verdict outbox_verdict(const email_status_t *s)
{
    if (s->success || s->error == EMAIL_ECANCELED || s->error == EMAIL_ESIZE)
        return OUTBOX_REMOVE;
    if (s->error == EMAIL_EUNKNOWN)
        return OUTBOX_KEEP_UNKNOWN;
    bool refused = s->error == EMAIL_ESERVER || s->error == EMAIL_ERECIPIENTS;
    return refused && s->status >= 500 && s->status < 600 ? OUTBOX_REMOVE : OUTBOX_KEEP;
}

void email__send_req_complete(send_req_t *r)
{
    if (r->mark) {
        r->complete_later = true; /* its entry is settled once the mark is done */
        return;
    }
    if (r->entry) {
        email__outbox_entry_settle(r->entry, outbox_verdict(&r->status));
        r->entry = NULL;
    }
    if (r->id)
        email__registry_done(r->id, r->status.success ? EMAIL_SENT : EMAIL_ERROR);
    if (r->call) {
        email__runtime_call_done(r->call); /* the sender owns r from here */
    } else if (r->cb) {
        email__runtime_deliver(deliver_async, r);
    } else {
        email__send_req_free(r);
    }
}

void email__send_req_complete_job(send_req_t *r)
{
    email__status_copy_into(&r->status, &r->job.status);
    r->refusals = r->job.refusals;
    email__refusals_init(&r->job.refusals);
    email__send_req_complete(r);
}

void email__send_req_fail(send_req_t *r, const email_status_t *why)
{
    email__status_copy_into(&r->status, why);
    r->status.success = false;
    if (!r->status.error)
        r->status.error = EMAIL_ECLOSED;
    r->status.recipients = r->nrcpts;
    r->status.rejected = 0;
    email__send_req_complete(r);
}

/* A request of t's, in no queue yet; NULL when out of memory. */
static send_req_t *req_alloc(email_transporter_t *t)
{
    send_req_t *r = calloc(1, sizeof *r);
    if (r) {
        r->t = t;
        r->texts_4d = t->texts_4d;
        r->attempts = 1;
        queue_init(&r->node);
    }
    return r;
}

/* The envelope's A-label forms for servers without SMTPUTF8 (the addresses were checked). */
static int set_ace(send_req_t *r)
{
    smtp_job_t *j = &r->job;
    if (email__idn_domain_utf8(j->from)) {
        if (email__idn_addr_ascii(j->from, &r->from_ace, NULL, 0))
            return EMAIL_ENOMEM;
        j->from_ace = r->from_ace;
    }
    size_t i = 0;
    while (i < j->nrcpts && !email__idn_domain_utf8(j->rcpts[i]))
        i++;
    if (i == j->nrcpts)
        return 0;
    if (!(r->rcpts_ace = calloc(j->nrcpts, sizeof *r->rcpts_ace)))
        return EMAIL_ENOMEM;
    for (i = 0; i < j->nrcpts; i++)
        if (email__idn_addr_ascii(j->rcpts[i], &r->rcpts_ace[i], NULL, 0))
            return EMAIL_ENOMEM;
    j->rcpts_ace = (const char *const *)r->rcpts_ace;
    return 0;
}

/* What the job takes from the message: its envelope, SMTPUTF8, its DSN request. */
static int set_envelope(send_req_t *r)
{
    const char *const *rcpts;
    r->job.nrcpts = email__message_recipients(r->msg, &rcpts);
    r->job.rcpts = rcpts;
    r->job.from = email__message_envelope_from(r->msg);
    r->job.utf8_address = email__message_utf8_address(email__message_content(r->msg));
    r->job.smtputf8 = r->job.utf8_address != NULL;
    const message_dsn_t *dsn = email__message_dsn(r->msg);
    r->job.dsn_notify = dsn->notify;
    r->job.dsn_ret = dsn->ret;
    r->job.dsn_envid = dsn->envid;
    return set_ace(r);
}

int email__send_req_new_message(email_transporter_t *t, const email_message_t *m, send_req_t **out,
                         char *err, size_t errlen)
{
    if (!t || !m) {
        snprintf(err, errlen, "%s is NULL", t ? "message" : "transporter");
        return EMAIL_EINVAL;
    }
    send_req_t *r = req_alloc(t);
    if (!r)
        return EMAIL_ENOMEM;
    int rc = email__message_freeze(m, t->header_charset, t->body_charset, &r->msg, err, errlen);
    if (!rc)
        rc = email__send_req_rewind(r, err, errlen);
    if (!rc && (rc = set_envelope(r)))
        snprintf(err, errlen, "out of memory");
    if (rc) {
        email__send_req_free(r);
        return rc;
    }
    r->id = email_message_id(r->msg);
    r->nrcpts = r->job.nrcpts;
    email__registry_pending(r->id);
    *out = r;
    return 0;
}

/* The envelope and bytes of a prebuilt message, copied into r. */
static int copy_raw(send_req_t *r, const char *from, const char *const *rcpts, const char *mime,
                    size_t length)
{
    size_t n = 0;
    while (rcpts[n])
        n++;
    r->from = email__strdup(from);
    r->rcpts = calloc(n ? n : 1, sizeof *r->rcpts);
    r->raw = malloc(length ? length : 1);
    if (!r->from || !r->rcpts || !r->raw)
        return EMAIL_ENOMEM;
    for (r->nrcpts = 0; r->nrcpts < n; r->nrcpts++)
        if (!(r->rcpts[r->nrcpts] = email__strdup(rcpts[r->nrcpts])))
            return EMAIL_ENOMEM;
    memcpy(r->raw, mime, length);
    r->raw_len = length;
    return 0;
}

int email__send_req_new_raw(email_transporter_t *t, const transporter_raw_t *raw, send_req_t **out)
{
    send_req_t *r = req_alloc(t);
    if (!r)
        return EMAIL_ENOMEM;
    if (copy_raw(r, raw->from, raw->rcpts, raw->mime, raw->length) != 0) {
        email__send_req_free(r);
        return EMAIL_ENOMEM;
    }
    r->job.from = r->from;
    r->job.rcpts = (const char *const *)r->rcpts;
    r->job.nrcpts = r->nrcpts;
    r->job.size = raw->length;
    r->job.eight_bit = !email__is_ascii(raw->mime, raw->length);
    /* only a local part that is not ASCII needs SMTPUTF8: a domain has its A-label */
    if (email__idn_local_utf8(r->from))
        r->job.utf8_address = r->from;
    for (size_t i = 0; !r->job.utf8_address && i < r->nrcpts; i++)
        if (email__idn_local_utf8(r->rcpts[i]))
            r->job.utf8_address = r->rcpts[i];
    r->job.smtputf8 = r->job.utf8_address != NULL;
    if (set_ace(r)) {
        email__send_req_free(r);
        return EMAIL_ENOMEM;
    }
    email__send_req_rewind(r, NULL, 0);
    r->id = email__registry_new_id(); /* the same space as messages' ids: EmailStatus tracks it */
    email__registry_pending(r->id);
    *out = r;
    return 0;
}

typedef struct source {
    send_req_t *r;
    bool failed; /* the message could not be composed (an attachment unreadable...) */
} source_t;

/* The body as it is first written into the outbox (not the extended log: it is not sent yet). */
static ssize_t source_read(void *ctx, char *buf, size_t n)
{
    source_t *src = ctx;
    send_req_t *r = src->r;
    if (r->reader) {
        ssize_t got = email__mime_reader_read(r->reader, buf, n);
        src->failed = got < 0;
        return got;
    }
    size_t left = r->raw_len - r->raw_off;
    size_t got = n > left ? left : n;
    memcpy(buf, r->raw + r->raw_off, got);
    r->raw_off += got;
    return (ssize_t)got;
}

int email__send_req_to_outbox(send_req_t *r, outbox_t *ob, char *err, size_t errlen)
{
    email_transporter_t *t = r->t;
    outbox_meta_t m = {
        .id = r->id, .name = t->name, .host = t->host, .user = t->user, .port = t->port,
        .security = t->security, .from = (char *)r->job.from, .rcpts = (char **)r->job.rcpts,
        .nrcpts = r->job.nrcpts, .smtputf8 = r->job.smtputf8, .eight_bit = r->job.eight_bit,
        .subject = r->msg ? email__message_content(r->msg)->subject : NULL,
    };
    source_t src = {r, false};
    int rc = email__outbox_put(ob, &m, source_read, &src, &r->entry, err, errlen);
    if (rc) {
        if (src.failed)
            snprintf(err, errlen, "%s", email__mime_reader_error(r->reader));
        return rc;
    }
    /* from here the entry is the message: the copy in memory goes */
    r->job.from = r->entry->meta.from;
    r->job.rcpts = (const char *const *)r->entry->meta.rcpts;
    r->job.size = r->entry->body_len;
    r->job.eight_bit = r->entry->meta.eight_bit;
    email__mime_reader_free(r->reader);
    email_message_free(r->msg);
    free(r->raw);
    r->reader = NULL;
    r->msg = NULL;
    r->raw = NULL;
    return email__send_req_rewind(r, err, errlen);
}

int email__send_req_maybe_outbox(send_req_t *r, char *err, size_t errlen)
{
    outbox_t *ob = r->t->outbox ? email__outbox_ref(r->t->outbox) : email__outbox_global();
    int rc = ob ? email__send_req_to_outbox(r, ob, err, errlen) : 0;
    email__outbox_release(ob);
    return rc;
}

int email__send_req_new_entry(email_transporter_t *t, outbox_entry_t *e, send_req_t **out)
{
    send_req_t *r = req_alloc(t);
    if (!r) {
        email__outbox_entry_free(e, true);
        return EMAIL_ENOMEM;
    }
    r->entry = e;
    r->id = e->meta.id;
    r->nrcpts = e->meta.nrcpts;
    r->job.from = e->meta.from;
    r->job.rcpts = (const char *const *)e->meta.rcpts;
    r->job.nrcpts = e->meta.nrcpts;
    r->job.size = e->body_len;
    r->job.eight_bit = e->meta.eight_bit;
    r->job.smtputf8 = e->meta.smtputf8;
    email__send_req_rewind(r, NULL, 0);
    email__registry_pending(r->id);
    *out = r;
    return 0;
}
