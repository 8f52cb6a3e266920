/* The header fields of the MIME writer: folding, RFC 2047 encoded words in the header mode's
   charset, mailboxes, RFC 2231 parameters. Everything is appended to one buffer. */
#ifndef EMAIL_MIME_HEADERS_H
#define EMAIL_MIME_HEADERS_H

#include <stddef.h>
#include "message_content.h"
#include "util.h"

#define MIME_LINE_SOFT 78 /* RFC 5322 2.1.1: lines SHOULD stay within 78 characters */

typedef struct mime_out {
    email_buf_t *m;              /* where the text goes */
    const message_content_t *c;  /* the message, for its fields and charset modes */
    char *err;                   /* a failure's text, naming the field (may be NULL) */
    size_t errlen;
} mime_out_t;

/* Writes the failure's text and returns code. */
int email__mime_fail(mime_out_t *o, int code, const char *fmt, ...) EMAIL_PRINTF(3, 4);

/* The charset a mode writes text in where US-ASCII is not enough: "UTF-8", "ISO-8859-1",
   "ISO-2022-JP" (where the ISO-2022-JP mode falls back to UTF-8 for text it cannot hold, see
   email__mime_text_charset). */
const char *email__mime_mode_charset(mail_mode_t mode);
/*
 * The charset one field's text (utf8[0..n), a header, a display name, a file name, a body) goes in
 * where US-ASCII is not enough, in *charset: the mode's, except in the ISO-2022-JP mode
 * ("US-ASCII_ISO-2022-JP_UTF8_QP") for text ISO-2022-JP cannot hold (an emoji, an accented
 * letter), which goes in UTF-8 as a whole. The ISO-8859-1 mode has no fallback: its charset is
 * given, and the conversion then refuses what it lacks. 0, or EMAIL_ENOTSUP / EMAIL_ENOMEM with
 * the failure's text naming field.
 */
int email__mime_text_charset(mime_out_t *o, mail_mode_t mode, const char *field, const char *utf8,
                      size_t n, const char **charset);
/* The name a charset parameter gives it (lower case, as most mailers write it). */
const char *email__mime_charset_label(const char *charset);
/* rc, with the text "<field> cannot be written in <charset>" for EMAIL_ECHARSET (and one for
   EMAIL_ENOTSUP, a system without the charset). */
int email__mime_charset_failure(mime_out_t *o, int rc, const char *field, const char *charset);

/* Appends ASCII text folded before white space so that lines stay within 78 where possible;
   *col is the column of the line being written. */
int email__mime_put_folded(email_buf_t *m, size_t *col, const char *s, size_t n);

/* Date, the address fields (no Bcc), Subject, Message-ID, MIME-Version, priority, notification
   and the caller's headers, each ending with CRLF. EMAIL_ECHARSET naming the field, ENOMEM. */
int email__mime_put_message_headers(mime_out_t *o);

/* ";" CRLF " attr=value" for a parameter such as filename: a quoted string when short printable
   ASCII, else RFC 2231 sections in US-ASCII or the charset the header mode gives the value
   (email__mime_text_charset). field names the value in error texts ("Attachment name"). */
int email__mime_put_param(mime_out_t *o, const char *field, const char *attr, const char *value);

#endif
