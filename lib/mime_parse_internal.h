/*
 * Shared by the MIME parser's files: mime_parse.c (lines, boundaries, parts), mime_parse_decode.c
 * (base64 and quoted-printable as streams), mime_parse_words.c (RFC 2047 words, RFC 2231
 * parameters, dates) and mime_parse_fields.c (the message's header fields into the message).
 */
#ifndef EMAIL_MIME_PARSE_INTERNAL_H
#define EMAIL_MIME_PARSE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "address.h"
#include "message_internal.h"
#include "util.h"

/* ---- Content-Transfer-Encoding as a stream (mime_parse_decode.c) ---- */

enum { CTE_IDENTITY, CTE_BASE64, CTE_QP };

typedef struct mp_decoder {
    int cte;
    uint32_t acc;      /* base64: bits not written yet */
    int nbits;
    int qp;            /* quoted-printable: 0, after '=', after '=' and a hex digit, '=' + space */
    char qp_hex;
    char ws[64];       /* spaces and tabs held back: dropped before a line break */
    size_t nws;
    bool bad;          /* something could not be decoded */
} mp_decoder_t;

void email__mp_decoder_init(mp_decoder_t *d, int cte);
/* Decodes s[0..n), part of a line; appends at most n + 2 octets. 0 or EMAIL_ENOMEM. */
int email__mp_decode(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n);
/*
 * Base64 text of whole runs of lines at once (the parser's path for a large encoded body):
 * s[0..n) decoded as email__mp_decode would decode its lines one by one, the line breaks (LF,
 * and CR as white space) skipped, up to the first line start whose first octet is '-' (which may
 * be a boundary: the caller reads that line as any other). *bol: s starts a line; on return,
 * whether the text used ends one. *used: the octets used. 0 or EMAIL_ENOMEM.
 */
int email__mp_decode_b64_lines(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n,
                               bool *bol, size_t *used);
/* The base64 block decoder used: -1 (the default) the widest the processor has, 0 none (the
   scalar decoder alone), 1 SSSE3, 2 AVX2; the tests set it to compare them. Not for threads
   parsing at the time. */
extern int email__mp_b64_level;
/* A line break of the encoded text (CRLF in identity and quoted-printable text). */
int email__mp_decode_newline(mp_decoder_t *d, email_buf_t *out);
/* The end of the part: what is held back; d->bad tells whether the encoding was broken. */
int email__mp_decode_end(mp_decoder_t *d, email_buf_t *out);

/* ---- Header field text (mime_parse_words.c) ---- */

/*
 * Appends the unstructured text s[0..n) decoded: RFC 2047 encoded words anywhere (adjacent words
 * of one charset joined before conversion, the white space between them dropped), the rest
 * UTF-8 as it is, or read in fallback (the part's charset, may be NULL) when its 8-bit octets
 * are not UTF-8. EMAIL_PARSE_... bits go to *problems. 0 or EMAIL_ENOMEM.
 */
int email__mp_decode_text(email_buf_t *out, const char *s, size_t n, const char *fallback,
                          unsigned *problems);
/*
 * The parameter attr (lower case) of a Content-Type or Content-Disposition value: RFC 2231
 * sections joined and decoded, or a (quoted) value with encoded words decoded, in UTF-8 in *out
 * (malloc'ed). 1 when found, 0 when not (*out NULL), EMAIL_ENOMEM.
 */
int email__mp_param(const char *value, const char *attr, const char *fallback, char **out,
                    unsigned *problems);
/* The leading token of a field value in lower case ("text/plain", "attachment", "base64"), at
   most size - 1 characters; "" when none. */
void email__mp_token(const char *value, char *dst, size_t size);
/* RFC 5322 date-time (obsolete forms too) as Unix time; 0 when it is none. */
int64_t email__mp_date(const char *value);

/* ---- The message's own fields (mime_parse_fields.c) ---- */

/*
 * Reads the top-level header block (fields separated by '\n', unfolded) into m: every field
 * decoded in m->parsed->all, the address lists, Subject, Date, Message-ID, and the fields kept
 * for sending again in m->c.headers. fallback: the body's charset for raw 8-bit text.
 * 0 or EMAIL_ENOMEM.
 */
int email__mp_message_fields(email_message_t *m, const char *head, const char *fallback);
/* The value of the first field called name in a header block, or NULL; its length in *n. */
const char *email__mp_field(const char *head, const char *name, size_t *n);

#endif
