/* UTF-8 → the charsets of the mail modes (ISO-8859-1, ISO-2022-JP), through glibc's iconv. */
#ifndef EMAIL_CHARSET_H
#define EMAIL_CHARSET_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include "util.h"

/* A converter from UTF-8; "UTF-8" itself needs none (the bytes are copied). Not thread-safe:
   one per thread at a time. */
typedef struct charset_conv {
    iconv_t cd;     /* (iconv_t)-1 for UTF-8 */
    bool stateful;  /* ISO-2022-*: the text may not carry shift codes of its own */
} charset_conv_t;

/* 0, EMAIL_ENOTSUP when iconv does not know the charset, EMAIL_ENOMEM. */
int email__charset_open(charset_conv_t *conv, const char *charset);
void email__charset_close(charset_conv_t *conv);

/*
 * Appends utf8[0..n) (valid UTF-8) converted to out, as a complete text on its own: a stateful
 * charset (ISO-2022-JP) starts in its initial state (ASCII) and is returned to it at the end, so
 * pieces converted separately can be read separately. Never substitutes: EMAIL_ECHARSET when a
 * character has no equivalent, with its offset in utf8 in *bad (bad may be NULL); EMAIL_ENOMEM.
 * out is unchanged on failure.
 */
int email__charset_convert(charset_conv_t *conv, email_buf_t *out, const char *utf8, size_t n,
                    size_t *bad);

/*
 * 0 when utf8[0..n) (valid UTF-8) can be written in charset without substituting anything,
 * EMAIL_ECHARSET when it cannot (the first character without an equivalent at offset *bad, bad
 * may be NULL), EMAIL_ENOTSUP, EMAIL_ENOMEM. Nothing is kept: the text goes through a small buffer
 * on the stack.
 */
int email__charset_fits(const char *charset, const char *utf8, size_t n, size_t *bad);

/* email__charset_open + email__charset_convert + email__charset_close. */
int email__charset_from_utf8(const char *charset, email_buf_t *out, const char *utf8, size_t n,
                      size_t *bad);

/* ---- The other way, for the MIME parser: whatever mail carries → UTF-8, never failing ---- */

/*
 * Appends in[0..n) as valid UTF-8: valid sequences copied, every invalid byte and NUL written
 * U+FFFD. Returns true when something was replaced; EMAIL_ENOMEM is reported through *nomem.
 */
bool email__utf8_sanitize(email_buf_t *out, const char *in, size_t n, bool *nomem);

/* What email__charset_to_utf8 found: bits of its result. */
enum { CHARSET_LOSSY = 1, CHARSET_UNKNOWN = 2 };

/*
 * Appends in[0..n), text in the charset mail labels `charset` (NULL: none given), to out as
 * valid UTF-8 without NUL, read loosely: GB2312 and GBK as GB18030, ISO-2022-JP with its common
 * extensions (ISO-2022-JP-2, then ISO-2022-JP-3), Shift_JIS as CP932, EUC-KR as CP949, US-ASCII
 * and ISO-8859-1 as windows-1252 (what their 8-bit octets mean in practice). No charset or
 * US-ASCII: UTF-8 when the octets are, else windows-1252. An octet the charset cannot read
 * becomes U+FFFD (CHARSET_LOSSY); a charset iconv lacks keeps the octets, made valid UTF-8
 * (CHARSET_UNKNOWN). Returns those bits, or EMAIL_ENOMEM (negative; out may hold part).
 */
int email__charset_to_utf8(const char *charset, email_buf_t *out, const char *in, size_t n);

#endif
