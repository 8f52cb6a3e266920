/*
 * A read-only view of a message's fields, for the composer (mime.c, mime_headers.c): the MIME
 * writer reads them here and never reaches into email_message_t. message.c owns every pointer.
 */
#ifndef EMAIL_MESSAGE_CONTENT_H
#define EMAIL_MESSAGE_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include "address.h"
#include "emailsession.h"

typedef struct message_header {
    char *name, *value;  /* value: UTF-8 without CR/LF */
} message_header_t;

typedef enum { MESSAGE_ATTACHMENT, MESSAGE_INLINE } message_part_kind_t;

typedef struct message_part {
    message_part_kind_t kind;
    char *path;          /* a file read while sending, or NULL when the bytes are in data */
    char *data;
    size_t length;
    bool mapped;         /* data is a read-only mapping of a spill file (parsed parts over
                            SPILL_THRESHOLD, spill.h): unmapped, not freed */
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

typedef struct email__message_content {
    address_list_t from, sender, reply_to, to, cc, bcc;
    char *subject, *text, *html;  /* NULL when not set */
    message_header_t *headers;    /* the caller's own, in the order added */
    size_t nheaders;
    message_part_t *parts;        /* attachments and inline parts, in the order added */
    size_t nparts;
    int priority;                 /* EMAIL_PRIORITY_... */
    bool notification;            /* Disposition-Notification-To */
    mail_mode_t header_mode, body_mode;
    char *date, *message_id; /* set by email__message_freeze; message_id with its angle brackets */
} message_content_t;

const message_content_t *email__message_content(const email_message_t *message);
/*
 * The first address of c (From, Sender, Reply-To, To, Cc, Bcc) whose local part is not ASCII, or
 * NULL. Such a message needs SMTPUTF8 and its header addresses go in UTF-8 (RFC 6532); in any
 * other, every header address is ASCII, a UTF-8 domain written as its A-label.
 */
const char *email__message_utf8_address(const message_content_t *c);

#endif
