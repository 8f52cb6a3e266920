/* What the rest of the library needs of an email_message_t (the struct is message.c's own). */
#ifndef EMAIL_MESSAGE_H
#define EMAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include "address.h"
#include "emailsession.h"

/*
 * Validates a message for sending and makes the copy that is queued: every field deep-copied
 * (file attachments keep their path: they are read while sending), the same id, and Date and
 * Message-ID fixed now when the caller did not set them, so that a retry sends the same bytes.
 * header_mode / body_mode (may be NULL) are the transporter's defaults, used where the message
 * did not choose its charsets.
 * EMAIL_EINVAL with a text naming the field in err (no sender, no recipient, ...), EMAIL_ENOMEM.
 */
int message_freeze(const email_message_t *message, const char *header_mode,
                   const char *body_mode, email_message_t **copy, char *err, size_t errlen);

/* A fresh message id (what email_message_new gives), for prebuilt messages. */
uint64_t message_new_id(void);

/* Envelope sender: the addr-spec of Sender when set, else of From ("" when none). */
const char *message_envelope_from(const email_message_t *message);
/* Envelope recipients: addr-specs of To, Cc and Bcc in that order, each once. */
size_t message_recipients(const email_message_t *message, const char *const **list);
/* True when an envelope address is not ASCII (needs the server's SMTPUTF8). */
bool message_needs_smtputf8(const email_message_t *message);

/*
 * The calling thread's text for the last failure of an email_message_* call, naming the field
 * ("To: \"foo\" is not a valid address"); "" after a success.
 */
const char *message_last_error(void);

/* ---- A read-only view of the fields, for the MIME writer (message.c owns every pointer) ---- */

typedef struct message_header {
    char *name, *value;  /* value: UTF-8 without CR/LF */
} message_header_t;

typedef enum { MESSAGE_ATTACHMENT, MESSAGE_INLINE } message_part_kind_t;

typedef struct message_part {
    message_part_kind_t kind;
    char *path;          /* a file read while sending, or NULL when the bytes are in data */
    char *data;
    size_t length;
    char *name;          /* file name shown to the recipient (UTF-8), NULL when none */
    char *content_type;  /* always set */
    char *content_id;    /* inline parts, without angle brackets; NULL for attachments */
} message_part_t;

/* The charset modes; MAIL_MODE_UNSET until the message or a transporter chooses one. */
typedef enum {
    MAIL_MODE_UNSET,
    MAIL_MODE_UTF8_QP,
    MAIL_MODE_UTF8_B64,
    MAIL_MODE_ISO88591,
    MAIL_MODE_ISO2022JP
} mail_mode_t;

typedef struct message_content {
    address_list_t from, sender, reply_to, to, cc, bcc;
    char *subject, *text, *html;  /* NULL when not set */
    message_header_t *headers;    /* the caller's own, in the order added */
    size_t nheaders;
    message_part_t *parts;        /* attachments and inline parts, in the order added */
    size_t nparts;
    int priority;                 /* EMAIL_PRIORITY_... */
    bool notification;            /* Disposition-Notification-To */
    mail_mode_t header_mode, body_mode;
    char *date, *message_id;      /* set by message_freeze; message_id with its angle brackets */
} message_content_t;

const message_content_t *message_content(const email_message_t *message);

#endif
