/*
 * IMAP responses read as they stream in (RFC 3501 section 9 syntax): a reader gathers one
 * response at a time (line segments and the small literals between them, within IMAP_MAX_LINE)
 * and streams the literals of FETCH body items to a callback in pieces; a lexer walks a gathered
 * response's tokens (atoms, numbers, quoted strings, literals, NIL, parentheses) within
 * IMAP_MAX_DEPTH. No I/O.
 */
#ifndef EMAIL_IMAP_PARSE_H
#define EMAIL_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Caps: a response's text with its kept literals, a literal, lists within lists. */
#define IMAP_MAX_LINE (1024 * 1024)
#define IMAP_MAX_LITERAL ((uint64_t)1 << 30)
#define IMAP_MAX_DEPTH 64

enum imap_tok_kind { T_END, T_ATOM, T_STRING, T_NIL, T_OPEN, T_CLOSE, T_ERROR };

typedef struct imap_tok {
    enum imap_tok_kind kind;
    const char *p;       /* atom text (with any [section]<partial>), quoted text as sent
                            (escapes kept), literal bytes */
    size_t n;
} imap_tok_t;

typedef struct imap_lex {
    const char *p;
    size_t n, pos;
    int depth;
    const char *why;     /* T_ERROR: what was wrong (static) */
} imap_lex_t;

void email__imap_lex_init(imap_lex_t *lx, const char *p, size_t n);
/* The next token; T_END at the end of the text (an unclosed list is the caller's business). */
imap_tok_t email__imap_lex(imap_lex_t *lx);
/* Skips the rest of the list whose T_OPEN was just read (false on T_ERROR or the end). */
bool email__imap_skip_list(imap_lex_t *lx);
bool email__imap_tok_is(const imap_tok_t *t, const char *atom);   /* case-insensitive */
bool email__imap_tok_u32(const imap_tok_t *t, uint32_t *v);
bool email__imap_tok_u64(const imap_tok_t *t, uint64_t *v);

/* FETCH items whose literal is streamed, not kept: BODY[...], BINARY[...], RFC822 (.TEXT,
 * .HEADER). */
bool email__imap_is_body_item(const imap_tok_t *t);

typedef struct imap_reader imap_reader_t;
typedef struct imap_reader_ops {
    /* A streamed literal's bytes (seq and uid as known so far; n == 0 at its end); nonzero (an
     * EMAIL_E... code) stops the reading. */
    int (*body)(void *ud, uint32_t seq, uint32_t uid, const char *data, size_t n);
    /* A whole response (its final CRLF removed, NUL-terminated; streamed literals appear as
     * "{0}"); nonzero stops the reading. */
    int (*response)(void *ud, const char *text, size_t n);
} imap_reader_ops_t;

struct imap_reader {
    imap_reader_ops_t ops;
    void *ud;
    uint64_t max_literal;
    email_buf_t text;    /* the response so far */
    size_t seg;          /* where the line segment being read starts */
    int mode;
    uint64_t left;       /* literal bytes still to come */
    uint32_t seq, uid;   /* the FETCH whose literal is streamed */
    char why[160];       /* after a failure: why, in words */
};

void email__imap_reader_init(imap_reader_t *r, const imap_reader_ops_t *ops, void *ud,
                             uint64_t max_literal);
void email__imap_reader_free(imap_reader_t *r);
/* Reads bytes: how many were used (all of them unless a callback stopped it or *rc was set),
 * *rc 0, a callback's code, or EMAIL_EPROTO / EMAIL_ENOMEM with r->why. */
size_t email__imap_reader_feed(imap_reader_t *r, const char *data, size_t n, int *rc);
/* True in the middle of a response (a drop now cuts it). */
bool email__imap_reader_busy(const imap_reader_t *r);

#endif
