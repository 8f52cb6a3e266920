/* Encoders: base64, quoted-printable, RFC 2047 encoded words, SMTP dot-stuffing. No I/O. */
#ifndef EMAIL_ENCODE_H
#define EMAIL_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

/* Plain base64 (RFC 4648) of data[0..n), no line breaks, appended to out. 0 or EMAIL_ENOMEM. */
int email__base64_encode(email_buf_t *out, const void *data, size_t n);
/* Decodes base64 (no white space allowed); appended to out. EMAIL_EINVAL on bad input. */
int email__base64_decode(email_buf_t *out, const char *b64, size_t n);
/* The value (0..63) of a base64 digit, -1 for any other byte. */
int email__b64_value(unsigned char c);

/*
 * SMTP DATA transparency (RFC 5321 4.5.2) as a stream: bare CR and bare LF become CRLF, a line
 * starting with '.' gets another '.', and email__dotstuff_finish ends the data with exactly one
 * "\r\n.\r\n" (adding the CRLF when the text did not end with one; an empty text ends as ".\r\n",
 * the DATA command's own CRLF being the first half). Chunks may split anywhere (also between CR
 * and LF). A feed that fails (EMAIL_ENOMEM) leaves out and the state as they were.
 */
typedef struct email_dotstuff {
    int state;  /* internal */
} email_dotstuff_t;
void email__dotstuff_init(email_dotstuff_t *d);
int email__dotstuff_feed(email_dotstuff_t *d, email_buf_t *out, const char *data, size_t n);
int email__dotstuff_finish(email_dotstuff_t *d, email_buf_t *out);

/*
 * CRLF normalisation only (for BDAT, where no dot-stuffing happens): bare CR / bare LF → CRLF.
 * Same streaming rules; email__crlf_finish flushes a pending CR.
 */
typedef struct email_crlf {
    int state;
} email_crlf_t;
void email__crlf_init(email_crlf_t *c);
int email__crlf_feed(email_crlf_t *c, email_buf_t *out, const char *data, size_t n);
int email__crlf_finish(email_crlf_t *c, email_buf_t *out);

/* ---- What the MIME writer needs ---- */

/* Base64 of data[0..n) as a MIME body: lines of 76 characters, each line ending with CRLF. */
int email__base64_encode_lines(email_buf_t *out, const void *data, size_t n);
/* Exact size of what email__base64_encode_lines writes for n input bytes. */
uint64_t email__base64_lines_size(uint64_t n);

/*
 * Quoted-printable (RFC 2045 6.7) of data[0..n): CRLF, bare CR and bare LF are hard line breaks,
 * written CRLF; output lines are at most 76 characters (soft breaks "=" CRLF); '=', bytes outside
 * printable ASCII, a space or tab before a line break or the end, and a '.' starting a line are
 * written =XX.
 */
int email__qp_encode(email_buf_t *out, const char *data, size_t n);

/*
 * RFC 2047 encoded words for the UTF-8 text utf8[0..n) (n > 0) converted to `charset` ("UTF-8",
 * "ISO-8859-1", "ISO-2022-JP", ...), encoding 'B' or 'Q' (the Q alphabet is the strict one allowed
 * in phrases, so the result can stand for a display name too). Every word holds whole characters
 * and is a complete text in its charset (with ISO-2022-JP it starts in ASCII and ends in it),
 * so words can be decoded one by one. *col is the column the first word starts at (what the line
 * already holds); words are folded with CRLF + space so that no line passes 78 characters, and
 * *col is left at the end of the last line. EMAIL_ECHARSET when a character has no equivalent in
 * the charset (out is then unchanged), EMAIL_ENOTSUP when iconv lacks the charset, EMAIL_ENOMEM.
 */
int email__rfc2047_encode(email_buf_t *out, size_t *col, const char *utf8, size_t n,
                         const char *charset, char encoding);

#endif
