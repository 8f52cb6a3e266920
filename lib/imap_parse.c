/*
 * IMAP responses as they stream in: the reader (line segments, literals kept or streamed, the
 * caps) and the lexer over a gathered response (lib/imap_parse.h).
 */
#include "imap_parse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "emailsession.h"

enum { RD_LINE, RD_KEEP, RD_STREAM };

/* ------------------------------------------------------------------------------------------- */
/* The lexer                                                                                    */

void email__imap_lex_init(imap_lex_t *lx, const char *p, size_t n)
{
    *lx = (imap_lex_t){.p = p, .n = n};
}

static imap_tok_t lex_error(imap_lex_t *lx, const char *why)
{
    lx->why = why;
    lx->pos = lx->n;
    return (imap_tok_t){.kind = T_ERROR};
}

/* "{n}" or "{n+}", then a line end: n in *v, pos after the line end; false when malformed. */
static bool literal_head(const char *p, size_t n, size_t *pos, uint64_t *v)
{
    size_t i = *pos + 1, digits = 0;
    uint64_t x = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        if (x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    if (i < n && p[i] == '+')
        i++;
    if (!digits || i >= n || p[i++] != '}')
        return false;
    if (i < n && p[i] == '\r')
        i++;
    if (i >= n || p[i++] != '\n')
        return false;
    *pos = i;
    *v = x;
    return true;
}

static imap_tok_t lex_quoted(imap_lex_t *lx)
{
    size_t start = ++lx->pos;
    for (; lx->pos < lx->n; lx->pos++) {
        char c = lx->p[lx->pos];
        if (c == '\r' || c == '\n')
            break;
        if (c == '\\' && lx->pos + 1 < lx->n)
            lx->pos++;
        else if (c == '"')
            return (imap_tok_t){.kind = T_STRING, .p = lx->p + start, .n = lx->pos++ - start};
    }
    return lex_error(lx, "unterminated quoted string");
}

static imap_tok_t lex_literal(imap_lex_t *lx)
{
    uint64_t len;
    size_t pos = lx->pos;
    if (!literal_head(lx->p, lx->n, &pos, &len) || len > lx->n - pos)
        return lex_error(lx, "malformed literal");
    lx->pos = pos + (size_t)len;
    return (imap_tok_t){.kind = T_STRING, .p = lx->p + pos, .n = (size_t)len};
}

static imap_tok_t lex_atom(imap_lex_t *lx)
{
    size_t start = lx->pos;
    while (lx->pos < lx->n) {
        char c = lx->p[lx->pos];
        if (c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' || c == '\r' || c == '\n')
            break;
        if (c == '[') { /* a section may hold spaces and lists: up to its ']' */
            const char *end = memchr(lx->p + lx->pos, ']', lx->n - lx->pos);
            if (!end || memchr(lx->p + lx->pos, '\n', (size_t)(end - lx->p) - lx->pos))
                return lex_error(lx, "unterminated [section]");
            lx->pos = (size_t)(end - lx->p);
        }
        lx->pos++;
    }
    imap_tok_t t = {.kind = T_ATOM, .p = lx->p + start, .n = lx->pos - start};
    if (email__imap_tok_is(&t, "NIL"))
        t.kind = T_NIL;
    return t;
}

imap_tok_t email__imap_lex(imap_lex_t *lx)
{
    while (lx->pos < lx->n && lx->p[lx->pos] == ' ')
        lx->pos++;
    if (lx->pos >= lx->n)
        return (imap_tok_t){.kind = T_END};
    switch (lx->p[lx->pos]) {
    case '(':
        if (++lx->depth > IMAP_MAX_DEPTH)
            return lex_error(lx, "lists nested too deep");
        lx->pos++;
        return (imap_tok_t){.kind = T_OPEN, .p = lx->p + lx->pos - 1, .n = 1};
    case ')':
        if (lx->depth-- == 0)
            return lex_error(lx, "unbalanced ')'");
        lx->pos++;
        return (imap_tok_t){.kind = T_CLOSE, .p = lx->p + lx->pos - 1, .n = 1};
    case '"':
        return lex_quoted(lx);
    case '{':
        return lex_literal(lx);
    case '\r':
    case '\n':
        return lex_error(lx, "line end inside a response");
    default:
        return lex_atom(lx);
    }
}

bool email__imap_skip_list(imap_lex_t *lx)
{
    int depth = lx->depth;
    for (;;) {
        imap_tok_t t = email__imap_lex(lx);
        if (t.kind == T_ERROR || t.kind == T_END)
            return false;
        if (t.kind == T_CLOSE && lx->depth < depth)
            return true;
    }
}

bool email__imap_tok_is(const imap_tok_t *t, const char *atom)
{
    size_t n = strlen(atom);
    return (t->kind == T_ATOM || t->kind == T_NIL) && t->n == n &&
           email__strncasecmp(t->p, atom, n) == 0;
}

bool email__imap_tok_u64(const imap_tok_t *t, uint64_t *v)
{
    if (t->kind != T_ATOM || !t->n || t->n > 19)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->p[i] < '0' || t->p[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(t->p[i] - '0');
    }
    *v = x;
    return true;
}

bool email__imap_tok_u32(const imap_tok_t *t, uint32_t *v)
{
    uint64_t x;
    if (!email__imap_tok_u64(t, &x) || x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

static bool prefix_is(const imap_tok_t *t, const char *prefix)
{
    size_t n = strlen(prefix);
    return t->kind == T_ATOM && t->n >= n && email__strncasecmp(t->p, prefix, n) == 0;
}

bool email__imap_is_body_item(const imap_tok_t *t)
{
    return prefix_is(t, "BODY[") || prefix_is(t, "BINARY[") || email__imap_tok_is(t, "RFC822") ||
           email__imap_tok_is(t, "RFC822.TEXT") || email__imap_tok_is(t, "RFC822.HEADER");
}

/* ------------------------------------------------------------------------------------------- */
/* The reader                                                                                   */

void email__imap_reader_init(imap_reader_t *r, const imap_reader_ops_t *ops, void *ud,
                             uint64_t max_literal)
{
    memset(r, 0, sizeof *r);
    r->ops = *ops;
    r->ud = ud;
    r->max_literal = max_literal ? max_literal : IMAP_MAX_LITERAL;
    email__buf_init(&r->text);
}

void email__imap_reader_free(imap_reader_t *r)
{
    email__buf_free(&r->text);
}

bool email__imap_reader_busy(const imap_reader_t *r)
{
    return r->text.len || r->mode != RD_LINE;
}

static int fail(imap_reader_t *r, int rc, const char *why)
{
    email__strlcpy(r->why, why, sizeof r->why);
    return rc;
}

/* Whether the literal announced at the end of text (len bytes before its '{') is the value of a
 * FETCH body item: "* seq FETCH (... UID uid ... BODY[] {". */
static bool streamed(const char *text, size_t len, uint32_t *seq, uint32_t *uid)
{
    imap_lex_t lx;
    email__imap_lex_init(&lx, text, len);
    imap_tok_t star = email__imap_lex(&lx), num = email__imap_lex(&lx);
    imap_tok_t verb = email__imap_lex(&lx), open = email__imap_lex(&lx);
    if (!email__imap_tok_is(&star, "*") || !email__imap_tok_u32(&num, seq) ||
        !email__imap_tok_is(&verb, "FETCH") || open.kind != T_OPEN)
        return false;
    *uid = 0;
    for (;;) {
        imap_tok_t name = email__imap_lex(&lx);
        if (name.kind != T_ATOM)
            return false;
        imap_tok_t value = email__imap_lex(&lx);
        if (value.kind == T_END)
            return email__imap_is_body_item(&name);
        if (email__imap_tok_is(&name, "UID"))
            email__imap_tok_u32(&value, uid);
        if ((value.kind == T_OPEN && !email__imap_skip_list(&lx)) || value.kind == T_ERROR ||
            value.kind == T_CLOSE)
            return false;
    }
}

/* A literal announced at the end of the segment (between brace and end): kept or streamed. */
static int literal(imap_reader_t *r, size_t brace, uint64_t len)
{
    char num[48];
    if (len > r->max_literal) {
        snprintf(r->why, sizeof r->why, "the server announced a literal of %" PRIu64
                 " bytes (the limit is %" PRIu64 ")", len, r->max_literal);
        return EMAIL_EPROTO;
    }
    bool stream = streamed(r->text.data, brace, &r->seq, &r->uid);
    if (!stream && len > IMAP_MAX_LINE - brace)
        return fail(r, EMAIL_EPROTO, "the server sent a response longer than the line cap");
    r->text.len = brace;
    snprintf(num, sizeof num, "{%" PRIu64 "}\r\n", stream ? 0 : len);
    if (email__buf_puts(&r->text, num))
        return fail(r, EMAIL_ENOMEM, "out of memory");
    r->left = len;
    r->mode = stream ? RD_STREAM : RD_KEEP;
    r->seg = r->text.len;
    if (stream && !len) {
        r->mode = RD_LINE;
        return r->ops.body(r->ud, r->seq, r->uid, "", 0);
    }
    return 0;
}

/* A line segment ended (text[seg..len) ends with LF): a literal follows, or the response ends. */
static int segment_end(imap_reader_t *r)
{
    char *s = r->text.data + r->seg;
    size_t n = r->text.len - r->seg - 1;
    if (n && s[n - 1] == '\r')
        n--;
    if (memchr(s, '\0', n))
        return fail(r, EMAIL_EPROTO, "the server sent a NUL byte");
    if (n && s[n - 1] == '}') {
        size_t b = n - 1;
        while (b > 0 && s[b - 1] != '{' && s[b - 1] != ' ' && s[b - 1] != '(')
            b--;
        uint64_t len;
        size_t pos = b - 1;
        if (b > 0 && s[b - 1] == '{' && literal_head(s, r->text.len - r->seg, &pos, &len))
            return literal(r, r->seg + b - 1, len);
    }
    r->text.len = r->seg + n;
    r->text.data[r->text.len] = '\0';
    size_t total = r->text.len;
    r->text.len = 0;
    r->seg = 0;
    return r->ops.response(r->ud, r->text.data, total);
}

static size_t line_bytes(imap_reader_t *r, const char *data, size_t n, int *rc)
{
    const char *nl = memchr(data, '\n', n);
    size_t take = nl ? (size_t)(nl - data) + 1 : n;
    if (r->text.len + take > IMAP_MAX_LINE) {
        snprintf(r->why, sizeof r->why, "the server sent a response longer than %d bytes",
                 IMAP_MAX_LINE);
        *rc = EMAIL_EPROTO;
        return n;
    }
    if (email__buf_append(&r->text, data, take) || email__buf_reserve(&r->text, 1)) {
        *rc = fail(r, EMAIL_ENOMEM, "out of memory");
        return n;
    }
    if (nl)
        *rc = segment_end(r);
    return take;
}

size_t email__imap_reader_feed(imap_reader_t *r, const char *data, size_t n, int *rc)
{
    size_t used = 0;
    *rc = 0;
    while (used < n && !*rc) {
        size_t avail = n - used;
        size_t take = r->left < avail ? (size_t)r->left : avail;
        if (r->mode == RD_LINE) {
            used += line_bytes(r, data + used, avail, rc);
            continue;
        }
        if (r->mode == RD_KEEP && email__buf_append(&r->text, data + used, take))
            *rc = fail(r, EMAIL_ENOMEM, "out of memory");
        else if (r->mode == RD_STREAM)
            *rc = r->ops.body(r->ud, r->seq, r->uid, data + used, take);
        used += take;
        r->left -= take;
        if (!r->left && !*rc) {
            if (r->mode == RD_STREAM)
                *rc = r->ops.body(r->ud, r->seq, r->uid, "", 0);
            r->mode = RD_LINE;
            r->seg = r->text.len;
        }
    }
    return used;
}
