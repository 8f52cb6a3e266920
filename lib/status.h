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

void email__refusals_init(email_refusals_t *r);
void email__refusals_free(email_refusals_t *r);
int email__refusals_add(email_refusals_t *r, const char *address, int code, const char *text);

/* One link of the chain of causes of a failure that was not the server's (4D's errors). */
typedef struct email_error_entry {
    int code;                  /* EMAIL_E... */
    char *message;
    const char *component;     /* static: "transport", "tls", "smtp", "auth", "mime", ... */
} email_error_entry_t;

typedef struct email_errors {
    email_error_entry_t *v;
    size_t n, cap;
} email_errors_t;

void email__errors_init(email_errors_t *e);
void email__errors_free(email_errors_t *e);
/* Appends a cause (the chain reads outermost first); component NULL: email__error_component. */
int email__errors_add(email_errors_t *e, int code, const char *message, const char *component);
/* The layer an EMAIL_E... code comes from, in 4D's componentSignature manner; "transporter"
 * for the library's own refusals (arguments, memory, cancel, shutdown). Static storage. */
const char *email__error_component(int code);

/* Zeroes a status without looking at what it held (for fresh storage of the library's own). */
void email__status_init(email_status_t *s);
/* Sets the failure fields: error code, our text (printf-style), reply code 0. */
void email__status_fail(email_status_t *s, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* A public call refused before anything went (bad arguments, no memory): ErrorInfo set to the
 * text, and s (when not NULL) zeroed and failed with the same code and text, so that a caller's
 * status is always filled; returns code. */
int email__status_refuse(email_status_t *s, int code, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Sets reply fields from a server reply. */
void email__status_set_reply(email_status_t *s, int code, const char *enhanced, const char *text);
/*
 * The way to copy a status: dst gets src's fields and no refused-recipient list (src keeps its
 * own); the list dst held before is freed. dst may be uninitialised. Never assign the struct.
 */
void email__status_copy_into(email_status_t *dst, const email_status_t *src);
/*
 * Gives the status its refused recipients and its chain of causes: takes *r and *e (emptied;
 * either may be NULL) as the lists of this very status, freeing those it held before. They stay
 * readable until email_status_clear(s), until s is filled again, or email_shutdown. Nothing to
 * keep (or no memory to keep it): no lists.
 */
void email__status_attach(email_status_t *s, email_refusals_t *r, email_errors_t *e);
/* Frees every list still held (email_shutdown). */
void email__status_release_all(void);

#endif
