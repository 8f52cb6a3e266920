/*
 * Message → RFC 5322 / MIME bytes, produced as a stream (attachments read while sending); the
 * public email_message_to_mime (emailsession.h) is this reader run to the end.
 */
#ifndef EMAIL_MIME_H
#define EMAIL_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "emailsession.h"

typedef struct mime_reader mime_reader_t;

/*
 * A reader producing the message's bytes with CRLF line endings, lines of at most 998 octets,
 * Bcc left out. The message must stay alive and unchanged while the reader is used (the library
 * passes a frozen copy). EMAIL_EINVAL / EMAIL_ECHARSET with a text in err naming the field,
 * EMAIL_EIO when an attachment file cannot be opened.
 */
int email__mime_reader_new(const email_message_t *message, mime_reader_t **reader, char *err,
                    size_t errlen);
/* Exact total size in bytes of what read() will produce (known before the first read). */
uint64_t email__mime_reader_size(const mime_reader_t *reader);
/* True when the bytes contain octets >= 0x80 (needs BODY=8BITMIME). */
bool email__mime_reader_8bit(const mime_reader_t *reader);
/*
 * Copies up to n next bytes into buf: returns how many (0 at the end), or a negative EMAIL_E...
 * code (EMAIL_EIO when an attachment file cannot be read or changed size since the reader was
 * made).
 */
ssize_t email__mime_reader_read(mime_reader_t *reader, char *buf, size_t n);
/* The last read failure in words, naming the attachment file that failed. */
const char *email__mime_reader_error(const mime_reader_t *reader);
void email__mime_reader_free(mime_reader_t *reader);

#endif
