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

int email_refusals_copy(email_refusals_t *dst, const email_refusals_t *src)
{
    email_refusals_init(dst);
    for (size_t i = 0; i < src->n; i++) {
        if (email_refusals_add(dst, src->v[i].address, src->v[i].code, src->v[i].text)) {
            email_refusals_free(dst);
            return EMAIL_ENOMEM;
        }
    }
    return 0;
}

/* The refusals handed to the public API live here, one list per thread. */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *p)
{
    email_refusals_free(p);
    free(p);
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

static email_refusals_t *thread_refusals(void)
{
    pthread_once(&tls_once, tls_init);
    email_refusals_t *r = pthread_getspecific(tls_key);
    if (!r) {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
        email_refusals_init(r);
        pthread_setspecific(tls_key, r);
    }
    return r;
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

void email_status_attach(email_status_t *s, email_refusals_t *r)
{
    email_refusals_t *mine = thread_refusals();
    if (!mine) {
        email_refusals_free(r);
        s->internal_ = NULL;
        return;
    }
    email_refusals_free(mine);
    *mine = *r;
    email_refusals_init(r);
    s->internal_ = mine;
}

int email_status_copy(email_status_t *dst, const email_status_t *src, email_refusals_t *owned)
{
    *dst = *src;
    dst->internal_ = NULL;
    email_refusals_init(owned);
    if (src->internal_) {
        if (email_refusals_copy(owned, src->internal_))
            return EMAIL_ENOMEM;
        dst->internal_ = owned;
    }
    return 0;
}

const char *email_status_recipient(const email_status_t *status, size_t i, int *code)
{
    const email_refusals_t *r = status ? status->internal_ : NULL;
    if (!r || i >= r->n)
        return NULL;
    if (code)
        *code = r->v[i].code;
    return r->v[i].address;
}

const char *email_status_recipient_text(const email_status_t *status, size_t i)
{
    const email_refusals_t *r = status ? status->internal_ : NULL;
    return r && i < r->n ? r->v[i].text : NULL;
}

void email_status_clear(email_status_t *status)
{
    if (!status)
        return;
    email_refusals_t *mine = thread_refusals();
    if (mine && status->internal_ == mine)
        email_refusals_free(mine);
    email_status_init(status);
}
