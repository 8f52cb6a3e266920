/*
 * What the sending side needs of an email_message_t (the struct is message.c's own): a frozen
 * copy to queue and its envelope. The composer reads the fields through email__message_content.h.
 */
#ifndef EMAIL_MESSAGE_H
#define EMAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "emailsession.h"

/*
 * Validates a message for sending and makes the copy that is queued: every field deep-copied
 * (file attachments keep their path: they are read while sending), the same id, and Date and
 * Message-ID fixed now when the caller did not set them, so that a retry sends the same bytes.
 * header_mode / body_mode (may be NULL) are the transporter's defaults, used where the message
 * did not choose its charsets.
 * EMAIL_EINVAL with a text naming the field in err and in email_error_info() (no sender, no
 * recipient, ...), EMAIL_ENOMEM.
 */
int email__message_freeze(const email_message_t *message, const char *header_mode,
                   const char *body_mode, email_message_t **copy, char *err, size_t errlen);
/*
 * email__message_freeze for email_message_to_mime: no recipient needed (a message built to be sent
 * later by email_send_mime may name its recipients there), the default charset modes, and the
 * failure's text in email_error_info() only.
 */
int email__message_freeze_draft(const email_message_t *message, email_message_t **copy);


/* Envelope sender: the addr-spec of Sender when set, else of From ("" when none). */
const char *email__message_envelope_from(const email_message_t *message);
/* Envelope recipients: addr-specs of To, Cc and Bcc in that order, each once. */
size_t email__message_recipients(const email_message_t *message, const char *const **list);
/* The DSN request (email_message_set_dsn): all zero when none. */
typedef struct message_dsn {
    int notify;          /* EMAIL_NOTIFY_... flags, 0 for no NOTIFY */
    const char *ret;     /* "FULL", "HDRS" or NULL */
    char *envid;         /* printable ASCII, or NULL */
} message_dsn_t;
const message_dsn_t *email__message_dsn(const email_message_t *message);
/* A parsed message received from a server: its UIDL or IMAP UID (copied; NULL or "" leaves
 * none) and its size there. 0, EMAIL_EINVAL for a built message, EMAIL_ENOMEM. */
int email__message_set_received(email_message_t *message, const char *uid, uint64_t size);
/* ErrorInfo for the MIME parser's failure rc (EMAIL_ENOMEM, or EMAIL_EIO: a large part's
   temporary file), prefixed with what; returns the code set. */
int email__message_parse_error(int rc, const char *what);

#endif
