/* SMTP reply parser: bytes in, complete replies out. No I/O. */
#ifndef EMAIL_REPLY_H
#define EMAIL_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_MAX_LINE                                                                        \
    2048 /* octets per line, CRLF excluded (RFC 5321 says 512; be lenient) */
#define SMTP_REPLY_MAX_LINES 256  /* lines in one multi-line reply */

typedef struct smtp_reply {
    int code;              /* 3-digit code, 200..599 (first digit 2..5) */
    char enhanced[16];     /* "x.y.z" from the first line when present (RFC 3463), else "" */
    size_t nlines;
    char **lines;          /* each whole line as received, CRLF stripped, NUL-terminated */
    char *text;            /* the text after "NNN-"/"NNN " (and after the enhanced code of each
                              line, when the reply carries one), lines joined with '\n' */
} smtp_reply_t;

typedef struct smtp_reply_parser {
    char *line;            /* partial line being accumulated */
    size_t len, cap;
    bool cr;               /* last byte seen was CR */
    smtp_reply_t cur;      /* reply being accumulated */
    size_t cur_cap;
} smtp_reply_parser_t;

void email__smtp_reply_parser_init(smtp_reply_parser_t *p);
void email__smtp_reply_parser_free(smtp_reply_parser_t *p);
/* True when the parser holds bytes of a reply not yet complete (a partial line or lines). */
bool email__smtp_reply_parser_busy(const smtp_reply_parser_t *p);

/*
 * Consumes bytes from data[0..n). Returns:
 *   1  a complete reply is in *out (the caller owns it: email__smtp_reply_free); *consumed says how
 * many bytes were used — call again with the rest; 0  all n bytes consumed (*consumed == n), no
 * complete reply yet; <0  EMAIL_EPROTO: a line without a valid 3-digit code, a NUL byte, a line too
 * long, too many lines, or a continuation line whose code differs; *errmsg (static) says which.
 *      Errors are final: the parser is unusable until email__smtp_reply_parser_free + init.
 * Lines end with CRLF; a bare LF also ends a line (some servers send it), a CR alone is kept.
 */
int email__smtp_reply_parse(smtp_reply_parser_t *p, const char *data, size_t n, size_t *consumed,
                     smtp_reply_t *out, const char **errmsg);

void email__smtp_reply_free(smtp_reply_t *r);

/* A reply's codes as every text quoting it gives them: "550 5.1.1", or "550" when the server gave
   no enhanced code. The result is a temporary: use .s within the expression that made it. */
typedef struct smtp_codes {
    char s[24];
} smtp_codes_t;
smtp_codes_t email__smtp_codes(int code, const char *enhanced);
/* email__smtp_codes of a reply. */
smtp_codes_t email__smtp_reply_codes(const smtp_reply_t *r);

#endif
