/*
 * libFuzzer target: IMAP receiving, two parts chosen by bit 0 of the first byte.
 *
 * Part 0, the response reader and lexer (lib/imap_parse.c). Input layout:
 *   byte 0  0 in bit 0
 *   byte 1  the literal cap (0: the default, else 4 * b)
 *   byte 2  the response callback stops the reader every b-th response (0: never); the rest of
 *           the bytes is then fed again
 *   byte 3  how the generator cuts the bytes: 0 whole, 1..127 pieces of 1..b bytes
 *   the rest: server bytes.
 * Properties: fed whole, one byte at a time and in generator-cut pieces, the reader gives the same
 * responses, the same streamed literal bytes (per seq and UID) and the same outcome; each response
 * is NUL-terminated, within IMAP_MAX_LINE, and the lexer walks it to its end or an error without
 * nesting deeper than IMAP_MAX_DEPTH or reading outside it; a streamed literal is never longer
 * than the cap; when the bytes hold no '{' the responses are exactly the input's lines (a
 * reference reading: split at LF, one CR before it dropped).
 *
 * Part 1, the engine (lib/imap.c, imap_setup.c, imap_cmd.c) with the fuzzer as the server. Layout:
 *   byte 0  1 in bit 0; credentials (bit 1: a password, else a token), the handshake is
 *           reported done when STARTTLS asks for it (bit 2), QUIT asked at once (bit 3), window 1
 *           (bit 4), mechanism asked for (bits 5-7: none, PLAIN, LOGIN, CRAM-MD5, XOAUTH2,
 *           SCRAM-SHA-256, OAUTHBEARER, SCRAM-SHA-1)
 *   byte 1  STARTTLS policy (bits 0-1), tls_active (2), allow_cleartext_auth (3), commands
 *           (bits 4-5: 1 + b % 3), QUIT asked after piece (bits 6-7: never, 1, 2, 4)
 *   byte 2  how the server bytes are cut: 0 whole, 1..127 pieces of that size, 128.. pieces of
 *           1..(b-127) bytes from a generator
 *   byte 3  the literal cap (0: the default, else 16 * b)
 *   per command two bytes: kind (bits 0-2: SELECT, SEARCH, FETCH, STORE, EXPUNGE, UID EXPUNGE,
 *           EXAMINE, NOOP), its mailbox or search text (bits 3-5), FETCH items (bits 6-7: body,
 *           header, flags+size, body+flags); then UIDs: count (bits 0-2), first UID (bits 3-7)
 *   the rest: what the server sends.
 * Properties: a model reads everything the engine writes: lines end with CRLF, no bare CR or LF
 * but in a literal announced with {n} or {n+}, each line (literals aside) within
 * IMAP_MAX_COMMAND + 2 octets, a synchronising literal only after a "+" that came after its
 * announcement, tags unique and increasing, SASL answers only inside AUTHENTICATE, nothing after
 * LOGOUT; LOGIN, AUTHENTICATE or a password only over TLS or with cleartext allowed, no command
 * but CAPABILITY, STARTTLS and LOGOUT before TLS when it is required, LOGIN only once the
 * capabilities are known and do not say LOGINDISABLED; no secret in the log; every command done
 * exactly once, closed exactly once and nothing after it; body bytes given to a command are
 * exactly the bytes of a BODY[]-like literal the server sent for that UID (checked against a
 * reference reading of the server's bytes, offset by offset), given whole, in order, to a FETCH
 * that asked for that UID, and cmd->bytes counts them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "imap.h"
#include "imap_parse.h"
#include "status.h"

#define PASSWORD "s3cr3t-PW"
#define TOKEN "t0k3n-XYZ"

/* ------------------------------------------------------------------------------------------- */
/* Part 0: the reader                                                                           */

typedef struct rd_run {
    imap_reader_t r;
    fuzz_str_t ev;        /* what the reader reported, streamed pieces joined */
    bool in_body;         /* the last event was a body piece */
    uint32_t bseq, buid;
    uint64_t blen, cap;   /* bytes of the literal being streamed, the cap */
    unsigned nresp, stop_every;
} rd_run_t;

FUZZ_NOCOV static void check_lex(const char *text, size_t n)
{
    imap_lex_t lx;
    email__imap_lex_init(&lx, text, n);
    for (size_t guard = 0;; guard++) {
        FUZZ_CHECK(guard <= n + 1, "the lexer does not advance");
        imap_tok_t t = email__imap_lex(&lx);
        FUZZ_CHECK(t.kind == T_ERROR || lx.depth <= IMAP_MAX_DEPTH, "nested %d deep", lx.depth);
        FUZZ_CHECK(lx.pos <= n, "lexer past the end");
        if (t.kind == T_END || t.kind == T_ERROR) {
            FUZZ_CHECK(t.kind == T_END || lx.why, "an error without a reason");
            return;
        }
        FUZZ_CHECK(t.p >= text && t.p + t.n <= text + n, "token outside the response");
    }
}

static int rd_response(void *ud, const char *text, size_t n)
{
    rd_run_t *x = ud;
    FUZZ_CHECK(text[n] == '\0', "response not NUL-terminated");
    FUZZ_CHECK(n <= IMAP_MAX_LINE + 64, "response of %zu bytes", n);
    check_lex(text, n);
    char head[32];
    snprintf(head, sizeof head, "R%zu:", n);
    fuzz_str_puts(&x->ev, head);
    fuzz_str_add(&x->ev, text, n);
    fuzz_str_puts(&x->ev, "\n");
    x->in_body = false;
    x->nresp++;
    return x->stop_every && x->nresp % x->stop_every == 0;
}

static int rd_body(void *ud, uint32_t seq, uint32_t uid, const char *data, size_t n)
{
    rd_run_t *x = ud;
    if (!x->in_body || seq != x->bseq || uid != x->buid) {
        char head[48];
        snprintf(head, sizeof head, "B%u/%u:", seq, uid);
        fuzz_str_puts(&x->ev, head);
        x->in_body = true;
        x->bseq = seq;
        x->buid = uid;
        x->blen = 0;
    }
    x->blen += n;
    FUZZ_CHECK(x->blen <= x->cap, "a streamed literal beyond the cap");
    fuzz_str_add(&x->ev, data, n);
    if (!n) {
        fuzz_str_puts(&x->ev, "|E\n");
        x->in_body = false;
    }
    return 0;
}

/* One reading: cut 0 whole, 1 byte by byte, else pieces from the generator. */
FUZZ_NOCOV static void rd_read(rd_run_t *x, const uint8_t *p, size_t n, unsigned cut,
                               uint64_t cap, unsigned stop_every)
{
    static const imap_reader_ops_t ops = {.body = rd_body, .response = rd_response};
    memset(x, 0, sizeof *x);
    x->cap = cap ? cap : IMAP_MAX_LITERAL;
    x->stop_every = stop_every;
    email__imap_reader_init(&x->r, &ops, x, cap);
    uint64_t rng = fuzz_hash(p, n) | 1;
    int rc = 0;
    size_t at = 0;
    while (at < n && rc >= 0) {
        size_t piece = cut == 0 ? n - at : cut == 1 ? 1 : 1 + fuzz_xorshift(&rng) % cut;
        if (piece > n - at)
            piece = n - at;
        size_t used = email__imap_reader_feed(&x->r, (const char *)p + at, piece, &rc);
        FUZZ_CHECK(used <= piece, "used more than given");
        FUZZ_CHECK(rc != 0 || used == piece, "stopped without a reason");
        at += rc < 0 ? piece : used;
    }
    char tail[256];
    snprintf(tail, sizeof tail, "X%d %s busy=%d\n", rc < 0 ? rc : 0, rc < 0 ? x->r.why : "",
             rc < 0 ? 0 : (int)email__imap_reader_busy(&x->r));
    fuzz_str_puts(&x->ev, tail);
    email__imap_reader_free(&x->r);
}

/* The reference for inputs without literals: the lines, one CR before each LF dropped. */
FUZZ_NOCOV static void rd_reference(fuzz_str_t *out, const uint8_t *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        size_t len = i - start;
        if (len && p[i - 1] == '\r')
            len--;
        char head[32];
        snprintf(head, sizeof head, "R%zu:", len);
        fuzz_str_puts(out, head);
        fuzz_str_add(out, p + start, len);
        fuzz_str_puts(out, "\n");
        start = i + 1;
    }
}

FUZZ_NOCOV static void part_reader(fuzz_input_t *in)
{
    uint64_t cap = 4u * fuzz_byte(in);
    unsigned stop_every = fuzz_byte(in), cut = fuzz_byte(in) & 127;
    rd_run_t whole, bytes, pieces;
    rd_read(&whole, in->p, in->n, 0, cap, stop_every);
    rd_read(&bytes, in->p, in->n, 1, cap, stop_every);
    rd_read(&pieces, in->p, in->n, cut < 2 ? 7 : cut, cap, stop_every);
    FUZZ_CHECK(whole.ev.len == bytes.ev.len && !memcmp(whole.ev.p, bytes.ev.p, whole.ev.len),
               "byte by byte differs:\n%s\n---\n%s", whole.ev.p, bytes.ev.p);
    FUZZ_CHECK(whole.ev.len == pieces.ev.len && !memcmp(whole.ev.p, pieces.ev.p, whole.ev.len),
               "in pieces differs:\n%s\n---\n%s", whole.ev.p, pieces.ev.p);
    if (!in->n || (!memchr(in->p, '{', in->n) && !memchr(in->p, '\0', in->n))) {
        fuzz_str_t ref = {0};
        rd_reference(&ref, in->p, in->n);
        FUZZ_CHECK(whole.ev.len >= ref.len && (!ref.len || !memcmp(whole.ev.p, ref.p, ref.len)) &&
                       whole.ev.p[ref.len] == 'X',
                   "not the input's lines:\n%s\n---\n%s", whole.ev.p, ref.p ? ref.p : "");
        fuzz_str_free(&ref);
    }
    fuzz_str_free(&whole.ev);
    fuzz_str_free(&bytes.ev);
    fuzz_str_free(&pieces.ev);
}

/* ------------------------------------------------------------------------------------------- */
/* Part 1: a reference reading of the server's bytes: where the body literals are               */

#define MAX_LITS 256

typedef struct ref_lit {
    uint64_t start, len;  /* stream offsets of its bytes */
    uint32_t uid;
    uint64_t got;         /* bytes the engine gave a callback (from the start on) */
} ref_lit_t;

typedef struct ref {
    fuzz_str_t text;      /* the response so far (kept literals included) */
    size_t seg;           /* where the line segment being read starts (after a literal) */
    uint64_t off;         /* stream offset of the next byte */
    uint64_t left;        /* literal bytes still to come */
    bool in_lit, body;
    ref_lit_t lits[MAX_LITS];
    size_t nlits;
} ref_t;

/* The lexer of the reference: skips one value at *i (atom, quoted, literal, list); false when it
 * is not one. */
FUZZ_NOCOV static bool ref_skip_value(const char *s, size_t n, size_t *i, int depth);

FUZZ_NOCOV static bool ref_skip_literal(const char *s, size_t n, size_t *i)
{
    uint64_t len = 0;
    size_t j = *i + 1, digits = 0;
    for (; j < n && s[j] >= '0' && s[j] <= '9'; j++, digits++) {
        if (len > (UINT64_MAX - 9) / 10)
            return false;
        len = len * 10 + (uint64_t)(s[j] - '0');
    }
    if (j < n && s[j] == '+')
        j++;
    if (!digits || j >= n || s[j++] != '}')
        return false;
    if (j < n && s[j] == '\r')
        j++;
    if (j >= n || s[j++] != '\n' || len > n - j)
        return false;
    *i = j + (size_t)len;
    return true;
}

FUZZ_NOCOV static bool ref_skip_value(const char *s, size_t n, size_t *i, int depth)
{
    if (*i >= n)
        return false;
    if (s[*i] == '"') {
        for (size_t j = *i + 1; j < n && s[j] != '\r' && s[j] != '\n'; j++) {
            if (s[j] == '\\' && j + 1 < n)
                j++;
            else if (s[j] == '"') {
                *i = j + 1;
                return true;
            }
        }
        return false;
    }
    if (s[*i] == '{')
        return ref_skip_literal(s, n, i);
    if (s[*i] == '(') {
        if (depth + 1 > IMAP_MAX_DEPTH)
            return false;
        (*i)++;
        for (;;) {
            while (*i < n && s[*i] == ' ')
                (*i)++;
            if (*i < n && s[*i] == ')') {
                (*i)++;
                return true;
            }
            if (!ref_skip_value(s, n, i, depth + 1))
                return false;
        }
    }
    size_t start = *i;
    while (*i < n && !memchr(" ()\"{\r\n", s[*i], 7)) {
        if (s[*i] == '[') {
            const char *end = memchr(s + *i, ']', n - *i);
            if (!end || memchr(s + *i, '\n', (size_t)(end - s) - *i))
                return false;
            *i = (size_t)(end - s);
        }
        (*i)++;
    }
    return *i > start;
}

FUZZ_NOCOV static bool ref_word(const char *s, size_t n, const char *w, bool prefix)
{
    size_t k = strlen(w);
    if (n < k || (!prefix && n != k))
        return false;
    for (size_t i = 0; i < k; i++)
        if ((s[i] & ~0x20) != (w[i] & ~0x20) && s[i] != w[i])
            return false;
    return true;
}

FUZZ_NOCOV static bool ref_number(const char *s, size_t n, uint32_t *v)
{
    uint64_t x = 0;
    if (!n || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

/* Whether the literal announced at s[n] ('{') is a FETCH body item's, and for which UID. */
FUZZ_NOCOV static bool ref_is_body(const char *s, size_t n, uint32_t *uid)
{
    size_t i = 0, a;
    uint32_t seq;
#define SP() while (i < n && s[i] == ' ') i++
#define ATOM() (a = i, ref_skip_value(s, n, &i, 0) && s[a] != '"' && s[a] != '{' && s[a] != '(')
    SP();
    if (!ATOM() || !ref_word(s + a, i - a, "*", false))
        return false;
    SP();
    if (!ATOM() || !ref_number(s + a, i - a, &seq))
        return false;
    SP();
    if (!ATOM() || !ref_word(s + a, i - a, "FETCH", false))
        return false;
    SP();
    if (i >= n || s[i++] != '(')
        return false;
    *uid = 0;
    for (;;) {
        SP();
        if (!ATOM())
            return false;
        size_t name = a, name_n = i - a;
        if (ref_word(s + name, name_n, "NIL", false))
            return false;
        SP();
        if (i >= n)
            return ref_word(s + name, name_n, "BODY[", true) ||
                   ref_word(s + name, name_n, "BINARY[", true) ||
                   ref_word(s + name, name_n, "RFC822", false) ||
                   ref_word(s + name, name_n, "RFC822.TEXT", false) ||
                   ref_word(s + name, name_n, "RFC822.HEADER", false);
        a = i;
        if (s[i] == ')' || !ref_skip_value(s, n, &i, 1))
            return false;
        if (ref_word(s + name, name_n, "UID", false))
            ref_number(s + a, i - a, uid);
    }
#undef SP
#undef ATOM
}

/* "digits}" or "digits+}" (s holds what follows the '{'): the literal's length. */
FUZZ_NOCOV static bool ref_literal_head(const char *s, size_t n, uint64_t *len)
{
    size_t i = 0;
    *len = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (*len > (UINT64_MAX - 9) / 10)
            return false;
        *len = *len * 10 + (uint64_t)(s[i] - '0');
    }
    if (i < n && i > 0 && s[i] == '+')
        i++;
    return i > 0 && i + 1 == n && s[i] == '}' && s[0] != '+';
}

FUZZ_NOCOV static void ref_feed(ref_t *r, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++, r->off++) {
        if (r->in_lit) {
            if (!r->body)
                fuzz_str_add(&r->text, p + i, 1);
            if (--r->left == 0) {
                r->in_lit = false;
                r->seg = r->text.len;
            }
            continue;
        }
        fuzz_str_add(&r->text, p + i, 1);
        if (p[i] != '\n')
            continue;
        const char *s = r->text.p;
        size_t len = r->text.len - 1;
        if (len && s[len - 1] == '\r')
            len--;
        size_t b = len;
        while (b > r->seg && s[b - 1] != '{')
            b--;
        uint64_t lit;
        uint32_t uid;
        if (b > r->seg && ref_literal_head(s + b, len - b, &lit)) {
            r->body = ref_is_body(s, b - 1, &uid);
            if (r->body && r->nlits < MAX_LITS)
                r->lits[r->nlits++] = (ref_lit_t){.start = r->off + 1, .len = lit, .uid = uid};
            r->in_lit = lit > 0;
            r->left = lit;
            if (r->body) { /* kept as the engine keeps it: "{0}" */
                r->text.len = b - 1;
                fuzz_str_puts(&r->text, "{0}\r\n");
            }
            r->seg = r->text.len; /* a literal's bytes are no part of the next segment */
            continue;
        }
        r->text.len = 0;
        r->seg = 0;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Part 1: the engine and a model of what it writes                                             */

#define MAX_CMDS 3

typedef struct wire {
    int state;            /* 0 line start, 1 in a line, 2 in a literal */
    fuzz_str_t line;      /* the line so far, literals left out */
    uint64_t left;        /* literal bytes to come */
    bool sync_wait;       /* a synchronising literal announced, not yet released */
    uint64_t plus_before; /* "+" responses counted before its announcement could be written */
    uint64_t plus_used;
    bool cr, logout, auth_open;
    unsigned long last_tag, cur_tag;
} wire_t;

typedef struct harness {
    imap_engine_t *e;
    int nclosed;
    bool tls_asked, tls_done, tls_required, tls_active, cleartext;
    int ndone[MAX_CMDS];
    imap_cmd_t cmds[MAX_CMDS];
    uint32_t uids[MAX_CMDS][8];
    uint64_t body[MAX_CMDS];
    wire_t w;
    uint64_t plus, plus_at_take;
    uint64_t answered[512]; /* tags the server answered: 1 + the "+" count then (a literal
                               awaiting "+" is then off) */
    ref_t ref;
    const uint8_t *piece;   /* the bytes being fed and their stream offset */
    size_t piece_n;
    uint64_t piece_off;
} harness_t;

static harness_t *H;

FUZZ_NOCOV static bool has_word(const char *line, const char *verb)
{
    const char *sp = strchr(line, ' ');
    return sp && !strncmp(sp + 1, verb, strlen(verb)) &&
           (sp[1 + strlen(verb)] == ' ' || sp[1 + strlen(verb)] == '\0');
}

FUZZ_NOCOV static void ev_log(void *ud, char kind, const char *text)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "log after closed");
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "%c: %s\n", kind, text);
    if (kind == 'S') {
        if (text[0] == '+' && (text[1] == '\0' || text[1] == ' '))
            h->plus++;
        unsigned long tag;
        if (text[0] == 'A' && sscanf(text + 1, "%lu", &tag) == 1 && tag < 512)
            h->answered[tag] = h->plus + 1;
        return;
    }
    FUZZ_CHECK(!strstr(text, PASSWORD) && !strstr(text, TOKEN), "secret in the log: %s", text);
    if (kind == 'C' && has_word(text, "LOGIN")) {
        unsigned caps = email__imap_engine_caps(h->e);
        FUZZ_CHECK((caps & IMAP_CAP_KNOWN) && !(caps & IMAP_CAP_LOGINDISABLED),
                   "LOGIN with capabilities %#x", caps);
    }
}

static void ev_ready(void *ud)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "ready after closed");
}

static void ev_starttls(void *ud)
{
    ((harness_t *)ud)->tls_asked = true;
}

static void drain(harness_t *h);

static void ev_closed(void *ud, const email_status_t *why)
{
    harness_t *h = ud;
    drain(h); /* what was written before the end may still go; nothing after it */
    h->nclosed++;
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "closed: %s\n", why->status_text);
    FUZZ_CHECK(h->nclosed == 1, "closed twice");
}

static bool cmd_has_uid(const imap_cmd_t *cmd, uint32_t uid)
{
    if (!cmd->nuids || !uid)
        return true;
    for (size_t i = 0; i < cmd->nuids; i++)
        if (cmd->uids[i] == uid)
            return true;
    return false;
}

FUZZ_NOCOV static int on_body(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    harness_t *h = cmd->user;
    FUZZ_CHECK(h->nclosed == 0, "body after closed");
    FUZZ_CHECK(cmd->kind == IMAP_FETCH && cmd_has_uid(cmd, uid), "body of %u to a command "
               "that did not ask for it", uid);
    const uint8_t *d = (const uint8_t *)data;
    FUZZ_CHECK(n && d >= h->piece && d + n <= h->piece + h->piece_n,
               "body bytes not from the server's bytes");
    uint64_t off = h->piece_off + (uint64_t)(d - h->piece);
    ref_lit_t *lit = NULL;
    for (size_t i = 0; i < h->ref.nlits; i++)
        if (off >= h->ref.lits[i].start && off < h->ref.lits[i].start + h->ref.lits[i].len)
            lit = &h->ref.lits[i];
    if (h->ref.nlits == MAX_LITS && !lit)
        return 0; /* beyond what the reference keeps */
    FUZZ_CHECK(lit, "body bytes at %llu not in a body literal", (unsigned long long)off);
    FUZZ_CHECK(lit->uid == uid, "body of UID %u delivered as %u", lit->uid, uid);
    FUZZ_CHECK(off == lit->start + lit->got && lit->got + n <= lit->len,
               "body bytes out of order or past the literal");
    lit->got += n;
    h->body[cmd - h->cmds] += n;
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "body of %u: %zu bytes\n", uid, n);
    return 0;
}

static int on_item(imap_cmd_t *cmd, uint32_t seq, uint32_t uid, uint64_t size, const char *flags)
{
    harness_t *h = cmd->user;
    (void)seq;
    (void)size;
    FUZZ_CHECK(h->nclosed == 0, "item after closed");
    FUZZ_CHECK(cmd->kind == IMAP_SEARCH || (cmd->kind == IMAP_FETCH && cmd_has_uid(cmd, uid)),
               "item of UID %u to a command that did not ask for it", uid);
    FUZZ_CHECK(!flags || strlen(flags) < 1024, "flags too long");
    return 0;
}

static void on_done(imap_cmd_t *cmd)
{
    harness_t *h = cmd->user;
    size_t i = (size_t)(cmd - h->cmds);
    FUZZ_CHECK(h->nclosed == 0, "done after closed");
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "done %zu: %d %s\n", i, cmd->status.status, cmd->status.status_text);
    h->ndone[i]++;
    FUZZ_CHECK(h->ndone[i] == 1, "done twice");
    FUZZ_CHECK(cmd->bytes == h->body[i], "bytes %llu, bodies %llu",
               (unsigned long long)cmd->bytes, (unsigned long long)h->body[i]);
}

/* A whole line (its literals left out) was written. */
FUZZ_NOCOV static void wire_line(harness_t *h, const char *s, size_t n)
{
    wire_t *w = &h->w;
    bool secure = h->tls_active || h->tls_done || h->cleartext;
    FUZZ_CHECK(n <= IMAP_MAX_COMMAND, "line of %zu octets", n + 2);
    if (n == 0 || s[0] != 'A' || n < 2 || s[1] < '0' || s[1] > '9') {
        /* a SASL answer or "*" */
        FUZZ_CHECK(w->auth_open, "untagged line outside AUTHENTICATE: %.*s", (int)n, s);
        FUZZ_CHECK(secure, "SASL answer in clear");
        return;
    }
    char *end;
    unsigned long tag = strtoul(s + 1, &end, 10);
    FUZZ_CHECK(tag > w->last_tag, "tag A%lu after A%lu", tag, w->last_tag);
    w->last_tag = tag;
    w->cur_tag = tag;
    FUZZ_CHECK(*end == ' ', "tag without a space");
    const char *verb = end + 1;
    size_t vn = n - (size_t)(verb - s);
#define VERB(v) (vn >= strlen(v) && !strncmp(verb, v, strlen(v)))
    w->auth_open = VERB("AUTHENTICATE ");
    if (VERB("LOGIN ") || VERB("AUTHENTICATE "))
        FUZZ_CHECK(secure, "credentials in clear: %.*s", (int)n, s);
    if (h->tls_required && !h->tls_active && !h->tls_done)
        FUZZ_CHECK(VERB("CAPABILITY") || VERB("STARTTLS") || VERB("LOGOUT"),
                   "before TLS: %.*s", (int)n, s);
    if (VERB("LOGOUT"))
        w->logout = true;
#undef VERB
}

FUZZ_NOCOV static void wire_literal_head(harness_t *h)
{
    wire_t *w = &h->w;
    const char *s = w->line.p;
    size_t n = w->line.len;
    if (!n || s[n - 1] != '}')
        return;
    size_t b = n - 1;
    bool plus = b > 0 && s[b - 1] == '+';
    if (plus)
        b--;
    size_t dend = b;
    while (b > 0 && s[b - 1] >= '0' && s[b - 1] <= '9')
        b--;
    if (b == 0 || s[b - 1] != '{' || b == dend)
        return;
    uint64_t len = 0;
    for (size_t i = b; i < dend; i++)
        len = len * 10 + (uint64_t)(s[i] - '0');
    w->left = len;
    w->state = 2;
    w->cur_tag = s[0] == 'A' ? strtoul(s + 1, NULL, 10) : 0;
    w->sync_wait = !plus;
    w->plus_before = h->plus_at_take;
}

FUZZ_NOCOV static void wire_byte(harness_t *h, char c)
{
    wire_t *w = &h->w;
    FUZZ_CHECK(!w->logout, "bytes after LOGOUT");
    if (w->sync_wait) {
        uint64_t after = w->plus_before > w->plus_used ? w->plus_before : w->plus_used;
        w->sync_wait = false;
        uint64_t answered = w->cur_tag < 512 ? h->answered[w->cur_tag] : 0;
        if (answered && answered - 1 <= after) {
            /* answered before a "+" came: the literal is off, a new line begins (bytes of the
             * literal sent anyway read as a line here and fail the checks) */
            w->state = 0;
            w->left = 0;
            w->line.len = 0;
        } else {
            FUZZ_CHECK(h->plus > after, "a synchronising literal sent without a \"+\"");
            w->plus_used = after + 1;
        }
    }
    if (w->state == 2 && w->left) {
        if (--w->left == 0)
            w->state = 1;
        return;
    }
    w->state = 1;
    if (w->cr) {
        FUZZ_CHECK(c == '\n', "CR alone");
        w->cr = false;
        wire_literal_head(h);
        if (w->state == 2) {
            fuzz_str_add(&w->line, " ", 1);
            if (!w->left)
                w->state = 1;
            return;
        }
        wire_line(h, w->line.p ? w->line.p : "", w->line.len);
        w->line.len = 0;
        w->state = 0;
        return;
    }
    FUZZ_CHECK(c != '\n', "LF alone");
    if (c == '\r')
        w->cr = true;
    else
        fuzz_str_add(&w->line, &c, 1);
}

FUZZ_NOCOV static void check_wire(harness_t *h, const char *data, size_t n)
{
    bool secure = h->tls_active || h->tls_done || h->cleartext;
    FUZZ_CHECK(secure || !memmem(data, n, PASSWORD, strlen(PASSWORD)), "password in clear");
    for (size_t i = 0; i < n; i++)
        wire_byte(h, data[i]);
}

static void drain(harness_t *h)
{
    const char *data;
    size_t n;
    while ((n = email__imap_engine_take(h->e, &data)) > 0) {
        FUZZ_CHECK(h->nclosed == 0, "bytes to write after closed");
        check_wire(h, data, n);
        email__imap_engine_written(h->e, n);
    }
    h->plus_at_take = h->plus;
}

static const char *const mailboxes[] = {"INBOX", "Archive/2026", "Entw\xc3\xbcrfe",
                                        "a\"b\\c", "Sent Items", "\xe6\x97\xa5\xe6\x9c\xac",
                                        "x", "INBOX.Trash"};
static const char *const texts[] = {"invoice", "Gr\xc3\xbc\xc3\x9f" "e",
                                    "\xe4\xbd\xa0\xe5\xa5\xbd", "say \"hi\"", NULL,
                                    "caf\xc3\xa9 au lait", "a\\b", ""};

FUZZ_NOCOV static void setup_cmd(harness_t *h, size_t i, uint8_t c0, uint8_t c1)
{
    static const enum imap_kind kinds[] = {IMAP_SELECT, IMAP_SEARCH, IMAP_FETCH, IMAP_STORE,
                                           IMAP_EXPUNGE, IMAP_UID_EXPUNGE, IMAP_EXAMINE,
                                           IMAP_NOOP};
    static const unsigned items[] = {IMAP_F_BODY, IMAP_F_HEADER, IMAP_F_FLAGS | IMAP_F_SIZE,
                                     IMAP_F_BODY | IMAP_F_FLAGS};
    imap_cmd_t *cmd = &h->cmds[i];
    size_t nuids = c1 & 7;
    for (size_t k = 0; k < nuids; k++)
        h->uids[i][k] = (uint32_t)(c1 >> 3) + (uint32_t)(k * (k + 1) / 2) + 1;
    *cmd = (imap_cmd_t){.kind = kinds[c0 & 7], .mailbox = mailboxes[(c0 >> 3) & 7],
                        .criteria = "TEXT", .text = texts[(c0 >> 3) & 7], .uids = h->uids[i],
                        .nuids = nuids, .items = items[c0 >> 6], .store = "+FLAGS (\\Seen)",
                        .body = on_body, .item = on_item, .done = on_done, .user = h};
    if (cmd->kind == IMAP_UID_EXPUNGE && !nuids)
        cmd->nuids = 1, h->uids[i][0] = 1;
    if (!cmd->nuids)
        cmd->uids = NULL; /* all of them ("1:*") */
    if (cmd->kind == IMAP_SEARCH && (c0 & 0x40))
        cmd->criteria = "UNSEEN SUBJECT";
    FUZZ_CHECK(email__imap_engine_submit(h->e, cmd) == 0, "submit");
}

FUZZ_NOCOV static void setup(harness_t *h, fuzz_input_t *in, uint8_t b0, uint8_t b1, uint8_t b3)
{
    static const auth_mech_t mechs[] = {AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM_MD5,
                                        AUTH_XOAUTH2, AUTH_SCRAM_SHA256, AUTH_OAUTHBEARER,
                                        AUTH_SCRAM_SHA1};
    static const engine_events_t ev = {
        .log = ev_log, .ready = ev_ready, .starttls = ev_starttls, .closed = ev_closed};
    imap_engine_config_t cfg = {
        .creds = {.user = "user", .password = (b0 & 2) ? PASSWORD : NULL,
                  .token = (b0 & 2) ? NULL : TOKEN},
        .auth_mech = mechs[b0 >> 5],
        .starttls = (b1 & 3) > IMAP_TLS_REQUIRED ? IMAP_TLS_REQUIRED : (b1 & 3),
        .tls_active = (b1 >> 2) & 1,
        .allow_cleartext_auth = (b1 >> 3) & 1,
        .window = (b0 & 0x10) ? 1 : 0,
        .max_literal = 16u * b3,
    };
    h->tls_active = cfg.tls_active;
    h->cleartext = cfg.allow_cleartext_auth;
    h->tls_required = cfg.starttls == IMAP_TLS_REQUIRED;
    h->e = email__imap_engine_new(&cfg, &ev, h);
    FUZZ_CHECK(h->e != NULL, "engine");
    size_t ncmds = 1 + ((b1 >> 4) & 3) % 3;
    for (size_t i = 0; i < ncmds; i++) {
        uint8_t c0 = fuzz_byte(in), c1 = fuzz_byte(in);
        setup_cmd(h, i, c0, c1);
    }
    for (size_t i = ncmds; i < MAX_CMDS; i++)
        h->ndone[i] = 1; /* never submitted */
    if (b0 & 0x08)
        email__imap_engine_quit(h->e);
}

FUZZ_NOCOV static void part_engine(fuzz_input_t *in, uint8_t b0)
{
    uint8_t b1 = fuzz_byte(in), cut = fuzz_byte(in), b3 = fuzz_byte(in);
    static const unsigned quit_after[] = {0, 1, 2, 4};
    harness_t *h = calloc(1, sizeof *h);
    FUZZ_CHECK(h, "harness");
    H = h;
    setup(h, in, b0, b1, b3);
    drain(h);
    uint64_t rng = fuzz_hash(in->p, in->n);
    unsigned pieces = 0;
    while (in->n && !email__imap_engine_is_closed(h->e)) {
        size_t piece = cut == 0 ? in->n : cut < 128 ? cut : 1 + fuzz_xorshift(&rng) % (cut - 127);
        const uint8_t *p;
        size_t n = fuzz_bytes(in, piece, &p);
        ref_feed(&h->ref, p, n);
        h->piece = p;
        h->piece_n = n;
        email__imap_engine_feed(h->e, (const char *)p, n);
        h->piece_off += n;
        h->piece = NULL;
        h->piece_n = 0;
        if (h->tls_asked && (b0 & 0x04)) {
            h->tls_asked = false;
            drain(h);
            h->tls_done = true;
            email__imap_engine_tls_established(h->e);
        }
        if (++pieces == quit_after[b1 >> 6])
            email__imap_engine_quit(h->e);
        drain(h);
    }
    bool closed = email__imap_engine_is_closed(h->e);
    email__imap_engine_abort(h->e, EMAIL_ECLOSED, "end of input");
    FUZZ_CHECK(h->nclosed == 1, "closed %d times", h->nclosed);
    for (size_t i = 0; i < MAX_CMDS; i++)
        FUZZ_CHECK(h->ndone[i] == 1, "command %zu done %d times", i, h->ndone[i]);
    /* a literal the engine began to give is given whole, unless the session ended in it */
    for (size_t i = 0; i < h->ref.nlits && !closed; i++) {
        ref_lit_t *l = &h->ref.lits[i];
        FUZZ_CHECK(!l->got || l->got == l->len || l->start + l->len > h->piece_off,
                   "literal of UID %u given in part: %llu of %llu", l->uid,
                   (unsigned long long)l->got, (unsigned long long)l->len);
    }
    email__imap_engine_free(h->e);
    fuzz_str_free(&h->ref.text);
    fuzz_str_free(&h->w.line);
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t b0 = fuzz_byte(&in);
    if (b0 & 1)
        part_engine(&in, b0);
    else
        part_reader(&in);
    return 0;
}
