/* email_status_t helpers and the refused-recipient list behind it. */
#ifndef EMAIL_STATUS_H
#define EMAIL_STATUS_H

#include "emailsession.h"
#include "util.h"

/* Refused recipients of one transaction, owned by whoever holds the list. */
typedef struct email_rcpt_refusal {
    char *address;
    int code;
    char *text;
} email_rcpt_refusal_t;

typedef struct email_refusals {
    email_rcpt_refusal_t *v;
    size_t n, cap;
} email_refusals_t;

void email_refusals_init(email_refusals_t *r);
void email_refusals_free(email_refusals_t *r);
int email_refusals_add(email_refusals_t *r, const char *address, int code, const char *text);
/* A deep copy (for handing a status to another thread). */
int email_refusals_copy(email_refusals_t *dst, const email_refusals_t *src);

/* Zeroes a status without looking at what it held (for fresh, uninitialised storage). */
void email_status_init(email_status_t *s);
/* Sets the failure fields: error code, our text (printf-style), reply code 0. */
void email_status_fail(email_status_t *s, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Sets reply fields from a server reply. */
void email_status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text);
/*
 * Gives the status its refused recipients: takes ownership of *r (emptied). The list is attached
 * to the calling thread's storage; it stays valid until the thread's next status_attach (or
 * email_status_clear), so callers of the public API never have to free anything.
 */
void email_status_attach(email_status_t *s, email_refusals_t *r);
/* Copies a status (and its refusals) into dst, for delivering it to another thread. */
int email_status_copy(email_status_t *dst, const email_status_t *src, email_refusals_t *owned);

#endif
