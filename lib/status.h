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

/* What a status's internal_ points to: the refused recipients and the one status they belong to
 * (a copy of the struct, or a status filled later, does not see another one's list). */
typedef struct email_status_refusals {
    email_refusals_t list;
    const email_status_t *owner;
} email_status_refusals_t;

/* Zeroes a status without looking at what it held (for fresh, uninitialised storage). */
void email_status_init(email_status_t *s);
/* Sets the failure fields: error code, our text (printf-style), reply code 0. */
void email_status_fail(email_status_t *s, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Sets reply fields from a server reply. */
void email_status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text);
/*
 * Gives the status its refused recipients: takes *r (emptied) into one of the calling thread's
 * EMAIL_STATUS_KEPT slots, used in turn, so callers of the public API never have to free
 * anything: the list stays readable through this status until that many more statuses were
 * filled in the thread, or email_status_clear.
 */
#define EMAIL_STATUS_KEPT 16
void email_status_attach(email_status_t *s, email_refusals_t *r);
/* The same into a holder of the caller's (a callback's status: valid during the call). */
void email_status_hold(email_status_t *s, email_status_refusals_t *holder, email_refusals_t *r);

#endif
