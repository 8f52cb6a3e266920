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

/* Zeroes a status without looking at what it held (for fresh storage of the library's own). */
void email_status_init(email_status_t *s);
/* Sets the failure fields: error code, our text (printf-style), reply code 0. */
void email_status_fail(email_status_t *s, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Sets reply fields from a server reply. */
void email_status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text);
/*
 * The way to copy a status: dst gets src's fields and no refused-recipient list (src keeps its
 * own); the list dst held before is freed. dst may be uninitialised. Never assign the struct.
 */
void email_status_copy_into(email_status_t *dst, const email_status_t *src);
/*
 * Gives the status its refused recipients: takes *r (emptied) as the list of this very status,
 * freeing the one it held before. It stays readable until email_status_clear(s), until s is
 * filled again, or email_shutdown. No refusal (or no memory to keep them): no list.
 */
void email_status_attach(email_status_t *s, email_refusals_t *r);
/* Frees every list still held (email_shutdown). */
void email_status_release_all(void);

#endif
