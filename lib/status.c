/* Error codes (one X-macro table → enum, texts, names) and email_status_t. */
#include "status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void email_refusals_init(email_refusals_t *r)
{
    r->v = NULL;
    r->n = r->cap = 0;
}

void email_refusals_free(email_refusals_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].address);
        free(r->v[i].text);
    }
    free(r->v);
    email_refusals_init(r);
}

int email_refusals_add(email_refusals_t *r, const char *address, int code, const char *text)
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
    e->address = email_strdup(address);
    e->text = email_strdup(text ? text : "");
    e->code = code;
    if (!e->address || !e->text) {
        free(e->address);
        free(e->text);
        return EMAIL_ENOMEM;
    }
    r->n++;
    return 0;
}

/* The refusals handed to the public API live here: EMAIL_STATUS_KEPT slots per thread. */
typedef struct thread_slots {
    email_status_refusals_t slot[EMAIL_STATUS_KEPT];
    unsigned next;
} thread_slots_t;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *p)
{
    thread_slots_t *t = p;
    for (size_t i = 0; i < EMAIL_STATUS_KEPT; i++)
        email_refusals_free(&t->slot[i].list);
    free(t);
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

static thread_slots_t *thread_slots(void)
{
    pthread_once(&tls_once, tls_init);
    thread_slots_t *t = pthread_getspecific(tls_key);
    if (!t && (t = calloc(1, sizeof *t)))
        pthread_setspecific(tls_key, t);
    return t;
}

void email_status_init(email_status_t *s)
{
    memset(s, 0, sizeof *s);
}

void email_status_fail(email_status_t *s, int error, const char *fmt, ...)
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

void email_status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text)
{
    s->status = code;
    email_strlcpy(s->enhanced_code, enhanced ? enhanced : "", sizeof s->enhanced_code);
    email_strlcpy(s->status_text, text ? text : "", sizeof s->status_text);
}

void email_status_hold(email_status_t *s, email_status_refusals_t *holder, email_refusals_t *r)
{
    email_refusals_free(&holder->list);
    holder->list = *r;
    holder->owner = s;
    email_refusals_init(r);
    s->internal_ = holder;
}

void email_status_attach(email_status_t *s, email_refusals_t *r)
{
    s->internal_ = NULL;
    if (!r->n) {
        email_refusals_free(r);
        return;
    }
    thread_slots_t *t = thread_slots();
    if (!t) {
        email_refusals_free(r);
        return;
    }
    email_status_hold(s, &t->slot[t->next++ % EMAIL_STATUS_KEPT], r);
}

/* The list behind a status, when it is still this status's. */
static const email_refusals_t *refusals_of(const email_status_t *status)
{
    const email_status_refusals_t *h = status ? status->internal_ : NULL;
    return h && h->owner == status ? &h->list : NULL;
}

const char *email_status_recipient(const email_status_t *status, size_t i, int *code)
{
    const email_refusals_t *r = refusals_of(status);
    if (!r || i >= r->n)
        return NULL;
    if (code)
        *code = r->v[i].code;
    return r->v[i].address;
}

const char *email_status_recipient_text(const email_status_t *status, size_t i)
{
    const email_refusals_t *r = refusals_of(status);
    return r && i < r->n ? r->v[i].text : NULL;
}

void email_status_clear(email_status_t *status)
{
    if (!status)
        return;
    email_status_refusals_t *h = status->internal_;
    if (h && h->owner == status) {
        email_refusals_free(&h->list);
        h->owner = NULL;
    }
    email_status_init(status);
}
