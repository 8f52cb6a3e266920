/*
 * libFuzzer target: the SMTP reply parser (lib/reply.c).
 *
 * The input is what a server sends. It is parsed three ways: whole, one byte per call, and in
 * pieces whose sizes come from a generator seeded with a hash of the input; all three must give
 * the same replies and the same error (or the same "waiting for more" state) as a reference
 * parser written here from the contract in lib/reply.h. Every reply is also checked on its own:
 * code range, line shapes, the enhanced status code, and the joined text.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "reply.h"

/* ---- the reference ---- */

typedef struct ref_reply {
    int code;
    char enhanced[16];
    size_t nlines;
    const char **lines; /* into a copy of the input; lens gives each length */
    size_t *lens;
} ref_reply_t;

typedef struct outcome {
    smtp_reply_t *replies;
    size_t n;
    const char *err; /* NULL: no error */
    bool busy;       /* bytes of an incomplete reply held at the end */
} outcome_t;

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 3463 "class.subject.detail" at s (class = cls), ending at a space or the end: its length. */
static size_t ref_enhanced(const char *s, size_t n, char cls)
{
    if (cls != '2' && cls != '4' && cls != '5')
        return 0;
    if (n < 1 || s[0] != cls || n < 2 || s[1] != '.')
        return 0;
    size_t i = 2, a = 0, b = 0;
    while (i < n && digit(s[i]) && a < 4)
        i++, a++;
    if (a < 1 || a > 3 || i >= n || digit(s[i]) || s[i] != '.')
        return 0;
    i++;
    while (i < n && digit(s[i]) && b < 4)
        i++, b++;
    if (b < 1 || b > 3 || (i < n && s[i] != ' '))
        return 0;
    return i;
}

/* The text a line contributes to smtp_reply_t.text. */
static void ref_line_text(const char *line, size_t n, bool strip, const char **t, size_t *tn)
{
    size_t off = n > 3 ? 4 : 3;
    if (strip) {
        size_t e = ref_enhanced(line + off, n - off, line[0]);
        if (e)
            off += e + (off + e < n ? 1 : 0);
    }
    *t = line + off;
    *tn = n - off;
}

static char *ref_join(const ref_reply_t *r)
{
    fuzz_str_t s = {0};
    fuzz_str_add(&s, "", 0);
    for (size_t i = 0; i < r->nlines; i++) {
        const char *t;
        size_t tn;
        ref_line_text(r->lines[i], r->lens[i], r->enhanced[0] != '\0', &t, &tn);
        if (i)
            fuzz_str_add(&s, "\n", 1);
        fuzz_str_add(&s, t, tn);
    }
    return s.p;
}

static const char ERR_LONG[] = "long", ERR_CODE[] = "code", ERR_NUL[] = "nul",
                  ERR_MISMATCH[] = "mismatch", ERR_LINES[] = "lines";

static int ref_code(const char *s, size_t n)
{
    if (n < 3 || s[0] < '2' || s[0] > '5' || !digit(s[1]) || !digit(s[2]))
        return -1;
    if (n > 3 && s[3] != ' ' && s[3] != '-')
        return -1;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/*
 * Lines end at LF; one CR right before it belongs to the ending. A reply ends at a line whose
 * fourth character is not '-'. Fills expected replies (as smtp_reply_t, text included).
 */
static void ref_parse(const char *d, size_t n, outcome_t *o)
{
    memset(o, 0, sizeof *o);
    ref_reply_t cur = {0};
    size_t cap = 0;
    size_t pos = 0;
    while (pos < n) {
        const char *lf = memchr(d + pos, '\n', n - pos);
        size_t end = lf ? (size_t)(lf - d) : n;
        size_t len = end - pos;
        if (len && d[end - 1] == '\r')
            len--;
        if (!lf) {
            if (len > SMTP_REPLY_MAX_LINE)
                o->err = ERR_LONG;
            else
                o->busy = true; /* a partial line (maybe only a CR) */
            break;
        }
        const char *line = d + pos;
        int code = ref_code(line, len);
        if (len > SMTP_REPLY_MAX_LINE)
            o->err = ERR_LONG;
        else if (code < 0)
            o->err = ERR_CODE;
        else if (memchr(line, '\0', len))
            o->err = ERR_NUL;
        else if (cur.nlines && code != cur.code)
            o->err = ERR_MISMATCH;
        else if (cur.nlines == SMTP_REPLY_MAX_LINES)
            o->err = ERR_LINES;
        if (o->err)
            break;
        if (cur.nlines == cap) {
            cap = cap ? cap * 2 : 8;
            cur.lines = fuzz_xrealloc(cur.lines, cap * sizeof *cur.lines);
            cur.lens = fuzz_xrealloc(cur.lens, cap * sizeof *cur.lens);
        }
        cur.lines[cur.nlines] = line;
        cur.lens[cur.nlines] = len;
        if (cur.nlines++ == 0) {
            size_t off = len > 3 ? 4 : 3;
            size_t e = ref_enhanced(line + off, len - off, line[0]);
            memcpy(cur.enhanced, line + off, e);
            cur.enhanced[e] = '\0';
            cur.code = code;
        }
        pos = end + 1;
        if (len > 3 && line[3] == '-')
            continue;
        /* complete: store it as an smtp_reply_t */
        o->replies = fuzz_xrealloc(o->replies, (o->n + 1) * sizeof *o->replies);
        smtp_reply_t *r = &o->replies[o->n++];
        memset(r, 0, sizeof *r);
        r->code = cur.code;
        memcpy(r->enhanced, cur.enhanced, sizeof r->enhanced);
        r->nlines = cur.nlines;
        r->lines = fuzz_xrealloc(NULL, cur.nlines * sizeof *r->lines);
        for (size_t i = 0; i < cur.nlines; i++) {
            r->lines[i] = fuzz_xrealloc(NULL, cur.lens[i] + 1);
            memcpy(r->lines[i], cur.lines[i], cur.lens[i]);
            r->lines[i][cur.lens[i]] = '\0';
        }
        r->text = ref_join(&cur);
        cur.nlines = 0;
        cur.enhanced[0] = '\0';
    }
    if (!o->err && cur.nlines)
        o->busy = true;
    free(cur.lines);
    free(cur.lens);
}

/* ---- the library, fed in pieces ---- */

static const char *err_kind(const char *msg)
{
    /* the library's messages (reply.c), mapped to the reference's error kinds */
    if (!msg)
        return "null";
    if (strstr(msg, "too long"))
        return ERR_LONG;
    if (strstr(msg, "3-digit"))
        return ERR_CODE;
    if (strstr(msg, "NUL"))
        return ERR_NUL;
    if (strstr(msg, "different reply code"))
        return ERR_MISMATCH;
    if (strstr(msg, "too many lines"))
        return ERR_LINES;
    return msg;
}

/* One reply, as the library hands it over, against the contract. */
static void check_reply_shape(const smtp_reply_t *r)
{
    FUZZ_CHECK(r->code >= 200 && r->code <= 599, "code %d", r->code);
    FUZZ_CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_MAX_LINES, "%zu lines", r->nlines);
    FUZZ_CHECK(r->text != NULL);
    FUZZ_CHECK(memchr(r->enhanced, '\0', sizeof r->enhanced) != NULL);
    for (size_t i = 0; i < r->nlines; i++) {
        const char *l = r->lines[i];
        size_t n = strlen(l);
        FUZZ_CHECK(n >= 3 && n <= SMTP_REPLY_MAX_LINE, "line %zu: length %zu", i, n);
        FUZZ_CHECK(!strchr(l, '\n'), "line %zu holds a LF", i);
        FUZZ_CHECK((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0') == r->code,
                   "line %zu does not carry the reply code %d", i, r->code);
        bool last = i + 1 == r->nlines;
        FUZZ_CHECK(last ? (n == 3 || l[3] == ' ') : (n > 3 && l[3] == '-'),
                   "line %zu of %zu: wrong separator", i, r->nlines);
    }
    size_t e = strlen(r->enhanced);
    if (e) {
        /* the first line carries it right after the code, and it has the reply's class */
        FUZZ_CHECK(r->enhanced[0] == r->lines[0][0], "enhanced %s for %d", r->enhanced, r->code);
        FUZZ_CHECK(strlen(r->lines[0]) >= 4 + e && !memcmp(r->lines[0] + 4, r->enhanced, e));
        FUZZ_CHECK(ref_enhanced(r->enhanced, e, r->enhanced[0]) == e, "enhanced %s", r->enhanced);
    }
    /* text never longer than the lines it comes from */
    size_t total = 0;
    for (size_t i = 0; i < r->nlines; i++)
        total += strlen(r->lines[i]) + 1;
    FUZZ_CHECK(strlen(r->text) < total);
}

/* Feeds d[0..n) in pieces: piece(k) gives the size of the k-th piece (0 = all the rest). */
static void lib_parse(const char *d, size_t n, uint64_t seed, int mode, outcome_t *o)
{
    memset(o, 0, sizeof *o);
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    size_t pos = 0;
    uint64_t s = seed;
    while (pos < n) {
        size_t piece = n - pos;
        if (mode == 1)
            piece = 1;
        else if (mode == 2)
            piece = 1 + fuzz_xorshift(&s) % (((s >> 60) & 1) ? 7 : 300);
        if (piece > n - pos)
            piece = n - pos;
        const char *c = d + pos;
        size_t left = piece;
        int rc = 0;
        while (left) {
            smtp_reply_t r;
            memset(&r, 0, sizeof r);
            size_t used = (size_t)-1;
            const char *err = NULL;
            rc = email__smtp_reply_parse(&p, c, left, &used, &r, &err);
            if (rc < 0) {
                FUZZ_CHECK(rc == EMAIL_EPROTO, "error %d", rc);
                FUZZ_CHECK(err != NULL, "an error without a message");
                o->err = err_kind(err);
                break;
            }
            FUZZ_CHECK(used <= left, "consumed %zu of %zu", used, left);
            if (rc == 0) {
                FUZZ_CHECK(used == left, "no reply, yet only %zu of %zu consumed", used, left);
                break;
            }
            FUZZ_CHECK(rc == 1, "rc %d", rc);
            FUZZ_CHECK(used >= 1 && c[used - 1] == '\n', "a reply ends at a LF");
            check_reply_shape(&r);
            o->replies = fuzz_xrealloc(o->replies, (o->n + 1) * sizeof *o->replies);
            o->replies[o->n++] = r;
            c += used;
            left -= used;
        }
        if (rc < 0)
            break;
        pos += piece;
    }
    if (!o->err)
        o->busy = email__smtp_reply_parser_busy(&p);
    email__smtp_reply_parser_free(&p);
}

static void outcome_free(outcome_t *o)
{
    for (size_t i = 0; i < o->n; i++)
        email__smtp_reply_free(&o->replies[i]);
    free(o->replies);
}

static void compare(const outcome_t *want, const outcome_t *got, const char *how)
{
    FUZZ_CHECK(got->n == want->n, "%s: %zu replies, the reference has %zu", how, got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        const smtp_reply_t *a = &want->replies[i], *b = &got->replies[i];
        FUZZ_CHECK(a->code == b->code, "%s: reply %zu code %d vs %d", how, i, b->code, a->code);
        FUZZ_CHECK(!strcmp(a->enhanced, b->enhanced), "%s: reply %zu enhanced \"%s\" vs \"%s\"",
                   how, i, b->enhanced, a->enhanced);
        FUZZ_CHECK(a->nlines == b->nlines, "%s: reply %zu lines %zu vs %zu", how, i, b->nlines,
                   a->nlines);
        for (size_t k = 0; k < a->nlines; k++)
            FUZZ_CHECK(!strcmp(a->lines[k], b->lines[k]), "%s: reply %zu line %zu differs", how,
                       i, k);
        FUZZ_CHECK(!strcmp(a->text, b->text), "%s: reply %zu text \"%s\" vs \"%s\"", how, i,
                   b->text, a->text);
    }
    if (want->err || got->err)
        FUZZ_CHECK(want->err && got->err && !strcmp(want->err, got->err),
                   "%s: error \"%s\", the reference says \"%s\"", how,
                   got->err ? got->err : "none", want->err ? want->err : "none");
    else
        FUZZ_CHECK(want->busy == got->busy, "%s: busy %d, the reference says %d", how, got->busy,
                   want->busy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;
    outcome_t ref, whole, bytes, pieces;
    ref_parse(d, size, &ref);
    lib_parse(d, size, 0, 0, &whole);
    compare(&ref, &whole, "whole");
    lib_parse(d, size, 0, 1, &bytes);
    compare(&ref, &bytes, "byte by byte");
    lib_parse(d, size, fuzz_hash(data, size), 2, &pieces);
    compare(&ref, &pieces, "in pieces");
    outcome_free(&ref);
    outcome_free(&whole);
    outcome_free(&bytes);
    outcome_free(&pieces);
    return 0;
}
