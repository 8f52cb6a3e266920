/* Error codes (one X-macro table → enum, texts, names) and email_status_t with its lists. */
#include "status.h"

#include <stdarg.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

const char *email_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define XX(name, value, text)                                                                      \
    case EMAIL_##name:                                                                             \
        return text;
        EMAIL_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *email_error_name(int code)
{
    switch (code) {
    case 0:
        return "EMAIL_OK";
#define XX(name, value, text)                                                                      \
    case EMAIL_##name:                                                                             \
        return "EMAIL_" #name;
        EMAIL_ERRNO_MAP(XX)
#undef XX
    }
    return "EMAIL_UNKNOWN_ERROR";
}

void email__refusals_init(email_refusals_t *r)
{
    r->v = NULL;
    r->n = r->cap = 0;
}

void email__refusals_free(email_refusals_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].address);
        free(r->v[i].text);
    }
    free(r->v);
    email__refusals_init(r);
}

int email__refusals_add(email_refusals_t *r, const char *address, int code, const char *text)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        email_rcpt_refusal_t *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return EMAIL_ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    email_rcpt_refusal_t *e = &r->v[r->n];
    e->address = email__strdup(address);
    e->text = email__strdup(text ? text : "");
    e->code = code;
    if (!e->address || !e->text) {
        free(e->address);
        free(e->text);
        return EMAIL_ENOMEM;
    }
    r->n++;
    return 0;
}

void email__errors_init(email_errors_t *e)
{
    e->v = NULL;
    e->n = e->cap = 0;
}

void email__errors_free(email_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].message);
    free(e->v);
    email__errors_init(e);
}

int email__errors_add(email_errors_t *e, int code, const char *message, const char *component)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        email_error_entry_t *v = realloc(e->v, cap * sizeof *v);
        if (!v)
            return EMAIL_ENOMEM;
        e->v = v;
        e->cap = cap;
    }
    email_error_entry_t *x = &e->v[e->n];
    if (!(x->message = email__strdup(message ? message : email_strerror(code))))
        return EMAIL_ENOMEM;
    x->code = code;
    x->component = component ? component : email__error_component(code);
    e->n++;
    return 0;
}

const char *email__error_component(int code)
{
    switch (code) {
    case EMAIL_ERESOLVE:
    case EMAIL_ECONNECT:
    case EMAIL_ECLOSED:
    case EMAIL_ETIMEDOUT: /* the connection's silence timer */
        return "transport";
    case EMAIL_ETLS:
    case EMAIL_ETLSREQUIRED:
    case EMAIL_ECERT:
    case EMAIL_ECERTNAME:
    case EMAIL_ECERTEXPIRED:
        return "tls";
    case EMAIL_EAUTH:
    case EMAIL_EAUTHMECH:
    case EMAIL_EINSECURE:
        return "auth";
    case EMAIL_EPROTO:
    case EMAIL_ESERVER:
    case EMAIL_ERECIPIENTS:
    case EMAIL_ESIZE:
    case EMAIL_EUNKNOWN:
        return "smtp";
    case EMAIL_ECHARSET:
    case EMAIL_EIO: /* while sending: an attachment that cannot be read */
        return "mime";
    default:
        return "transporter";
    }
}

/*
 * The refused recipients and the chain of causes behind statuses (one entry holds both). A
 * status's internal_ holds a handle (a serial number in the pointer slot, never dereferenced);
 * the entry is found by the address of the status that owns it and must carry the same handle.
 * So a copy of the struct (another address) or a zeroed or reused status (another handle) never
 * reaches an entry, and garbage in an uninitialised status is never read to free anything:
 * filling or clearing the status at an address frees whatever entry that address held, since no
 * status can name it any more. At most one entry per address.
 */
typedef struct held {
    const email_status_t *owner;
    uintptr_t handle;
    email_refusals_t list;
    email_errors_t errors;
    struct held *next;
} held_t;

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static held_t **held_buckets;
static size_t held_nbuckets; /* a power of two, or 0 */
static size_t held_count;
static uintptr_t held_serial;

static size_t held_bucket(const email_status_t *owner, size_t nbuckets)
{
    uintptr_t a = (uintptr_t)owner;
    return (size_t)((a ^ (a >> 7) ^ (a >> 17)) & (nbuckets - 1));
}

/* The link that points to owner's entry, or NULL. Under held_lock. */
static held_t **held_find(const email_status_t *owner)
{
    if (!held_nbuckets)
        return NULL;
    held_t **p = &held_buckets[held_bucket(owner, held_nbuckets)];
    while (*p && (*p)->owner != owner)
        p = &(*p)->next;
    return *p ? p : NULL;
}

/* Unlinks and frees owner's entry, if any. Under held_lock. */
static void held_drop(const email_status_t *owner)
{
    held_t **p = held_find(owner);
    if (!p)
        return;
    held_t *h = *p;
    *p = h->next;
    held_count--;
    email__refusals_free(&h->list);
    email__errors_free(&h->errors);
    free(h);
}

/* Room for one more entry (buckets doubled past an average chain of 2). Under held_lock. */
static int held_grow(void)
{
    if (held_count < 2 * held_nbuckets)
        return 0;
    size_t n = held_nbuckets ? 2 * held_nbuckets : 64;
    held_t **b = calloc(n, sizeof *b);
    if (!b)
        return held_nbuckets ? 0 : EMAIL_ENOMEM; /* longer chains, still correct */
    for (size_t i = 0; i < held_nbuckets; i++)
        while (held_buckets[i]) {
            held_t *h = held_buckets[i];
            held_buckets[i] = h->next;
            size_t k = held_bucket(h->owner, n);
            h->next = b[k];
            b[k] = h;
        }
    free(held_buckets);
    held_buckets = b;
    held_nbuckets = n;
    return 0;
}

void email__status_init(email_status_t *s)
{
    memset(s, 0, sizeof *s);
}

void email__status_fail(email_status_t *s, int error, const char *fmt, ...)
{
    va_list ap;
    s->success = false;
    s->error = error;
    s->status = 0;
    s->enhanced_code[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(s->status_text, sizeof s->status_text, fmt, ap);
    va_end(ap);
}

void email__status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text)
{
    s->status = code;
    email__strlcpy(s->enhanced_code, enhanced ? enhanced : "", sizeof s->enhanced_code);
    email__strlcpy(s->status_text, text ? text : "", sizeof s->status_text);
}

void email__status_copy_into(email_status_t *dst, const email_status_t *src)
{
    if (dst == src)
        return;
    email_status_t fields = *src;
    fields.internal_ = NULL;
    email_status_clear(dst);
    *dst = fields;
}

void email__status_attach(email_status_t *s, email_refusals_t *r, email_errors_t *e)
{
    pthread_mutex_lock(&held_lock);
    held_drop(s);
    s->internal_ = NULL;
    bool some = (r && r->n) || (e && e->n);
    held_t *h = some && held_grow() == 0 ? malloc(sizeof *h) : NULL;
    if (h) {
        h->owner = s;
        if (!++held_serial)
            held_serial++; /* 0 is "no list" */
        h->handle = held_serial;
        email__refusals_init(&h->list);
        email__errors_init(&h->errors);
        if (r) {
            h->list = *r;
            email__refusals_init(r);
        }
        if (e) {
            h->errors = *e;
            email__errors_init(e);
        }
        size_t k = held_bucket(s, held_nbuckets);
        h->next = held_buckets[k];
        held_buckets[k] = h;
        held_count++;
        s->internal_ = (void *)h->handle;
    }
    pthread_mutex_unlock(&held_lock);
    /* nothing to keep, or no memory to keep it: the status has no lists */
    if (r)
        email__refusals_free(r);
    if (e)
        email__errors_free(e);
}

/* The entry behind a status, when it is still this status's. Under held_lock. */
static const held_t *held_of(const email_status_t *status)
{
    held_t **p = status ? held_find(status) : NULL;
    return p && (void *)(*p)->handle == status->internal_ ? *p : NULL;
}

static const email_refusals_t *refusals_of(const email_status_t *status)
{
    const held_t *h = held_of(status);
    return h ? &h->list : NULL;
}

size_t email_status_error_count(const email_status_t *status)
{
    pthread_mutex_lock(&held_lock);
    const held_t *h = held_of(status);
    size_t n = h ? h->errors.n : 0;
    pthread_mutex_unlock(&held_lock);
    return n;
}

const char *email_status_error(const email_status_t *status, size_t i, int *code,
                               const char **component)
{
    pthread_mutex_lock(&held_lock);
    const held_t *h = held_of(status);
    const email_error_entry_t *x = h && i < h->errors.n ? &h->errors.v[i] : NULL;
    if (x && code)
        *code = x->code;
    if (x && component)
        *component = x->component;
    const char *message = x ? x->message : NULL;
    pthread_mutex_unlock(&held_lock);
    return message;
}

const char *email_status_recipient(const email_status_t *status, size_t i, int *code)
{
    pthread_mutex_lock(&held_lock);
    const email_refusals_t *r = refusals_of(status);
    const char *address = r && i < r->n ? r->v[i].address : NULL;
    if (address && code)
        *code = r->v[i].code;
    pthread_mutex_unlock(&held_lock);
    return address;
}

const char *email_status_recipient_text(const email_status_t *status, size_t i)
{
    pthread_mutex_lock(&held_lock);
    const email_refusals_t *r = refusals_of(status);
    const char *text = r && i < r->n ? r->v[i].text : NULL;
    pthread_mutex_unlock(&held_lock);
    return text;
}

void email_status_clear(email_status_t *status)
{
    if (!status)
        return;
    pthread_mutex_lock(&held_lock);
    held_drop(status);
    pthread_mutex_unlock(&held_lock);
    email__status_init(status);
}

void email__status_release_all(void)
{
    pthread_mutex_lock(&held_lock);
    for (size_t i = 0; i < held_nbuckets; i++)
        while (held_buckets[i]) {
            held_t *h = held_buckets[i];
            held_buckets[i] = h->next;
            email__refusals_free(&h->list);
            email__errors_free(&h->errors);
            free(h);
        }
    free(held_buckets);
    held_buckets = NULL;
    held_nbuckets = held_count = 0;
    pthread_mutex_unlock(&held_lock);
}

int email__status_refuse(email_status_t *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    if (s) {
        email__status_init(s);
        email__status_fail(s, code, "%s", email__error_text());
    }
    return code;
}
