/*
 * The MIME parser's stream: bytes cut into lines (CRLF or LF; a line longer than LINE_CAP is
 * handled in pieces, which only a boundary could have needed whole), header blocks unfolded,
 * multipart boundaries followed through a stack, and each leaf part decoded as it comes into a
 * body or an attachment of the message being built. The line break before a boundary belongs to
 * it (RFC 2046 5.1.1): a content line's break is held back until the next line shows it is none.
 * An attachment or inline part whose decoded bytes reach SPILL_THRESHOLD (1 MiB) goes on to an
 * unlinked temporary file, mapped read-only at its end (spill.h): a large part never sits whole
 * on the heap. The text and HTML bodies stay in memory (they are converted to UTF-8 strings).
 */
#include "mime_parse.h"

#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "mime_parse_internal.h"
#include "registry.h"
#include "spill.h"

#define LINE_CAP 4096          /* longer lines are handled in pieces */
#define HEAD_CAP (256 * 1024)  /* one part's header block */
#define MAX_DEPTH 32           /* nested multiparts */
#define MAX_PARTS 1000         /* body parts in all */
#define RUN_CAP (64 * 1024)    /* base64 body text decoded in one pass (body_run) */

enum { ST_HEAD, ST_BODY, ST_SKIP };
enum { LEAF_DROP, LEAF_TEXT, LEAF_HTML, LEAF_PART };

typedef struct leaf {
    int kind;
    mp_decoder_t dec;
    email_buf_t data;   /* decoded bytes not yet spilled */
    spill_t spill;      /* LEAF_PART past SPILL_THRESHOLD: its file (fd -1 while in memory) */
    char *charset;      /* text bodies: their charset parameter, or NULL */
    message_part_t part;
    bool full;          /* EMAIL_PARSE_MAX_DECODED reached: the rest is dropped */
} leaf_t;

struct mime_parser {
    email_message_t *m;
    email_buf_t line;
    bool in_line;           /* line continues a physical line whose start was handled */
    bool drop_line;         /* ... and the rest of that line is to be ignored */
    int state;
    char *bounds[MAX_DEPTH];  /* open multipart boundaries, innermost last */
    bool digest[MAX_DEPTH];   /* multipart/digest: parts default to message/rfc822 */
    size_t nbounds;
    bool in_digest;         /* the entity being read is a part of a digest */
    email_buf_t head;       /* its fields, unfolded, separated by '\n' */
    bool top;               /* it is the message itself */
    bool first_line;
    leaf_t leaf;
    bool held_crlf;
    uint64_t decoded, size;
    size_t entities;
    int error;
};

static unsigned *problems(mime_parser_t *p)
{
    return &p->m->parsed->problems;
}

static int oom(mime_parser_t *p)
{
    p->error = EMAIL_ENOMEM;
    return EMAIL_ENOMEM;
}

int email__mime_parser_new(mime_parser_t **parser)
{
    mime_parser_t *p = calloc(1, sizeof *p);
    email_message_t *m = calloc(1, sizeof *m);
    message_parsed_t *parsed = calloc(1, sizeof *parsed);
    if (!p || !m || !parsed) {
        free(p), free(m), free(parsed);
        return EMAIL_ENOMEM;
    }
    m->id = email__registry_new_id();
    m->parsed = parsed;
    p->m = m;
    p->top = p->first_line = true;
    email__spill_init(&p->leaf.spill);
    *parser = p;
    return 0;
}

static void leaf_clear(leaf_t *l)
{
    email__buf_free(&l->data);
    email__spill_close(&l->spill);
    free(l->charset);
    email__message_part_clear(&l->part);
    memset(l, 0, sizeof *l);
    email__spill_init(&l->spill);
}

void email__mime_parser_free(mime_parser_t *p)
{
    if (!p)
        return;
    email_message_free(p->m);
    email__buf_free(&p->line);
    email__buf_free(&p->head);
    for (size_t i = 0; i < p->nbounds; i++)
        free(p->bounds[i]);
    leaf_clear(&p->leaf);
    free(p);
}

/* ---- Leaf parts ---- */

static int fail(mime_parser_t *p, int rc)
{
    p->error = rc;
    return rc;
}

/* An attachment's decoded bytes to its spill file: opened once they reach SPILL_THRESHOLD, then
   written SPILL_CHUNK at a time (all of them at the part's end), the heap buffer kept small. */
static int leaf_spill(mime_parser_t *p, bool end)
{
    leaf_t *l = &p->leaf;
    bool open = l->spill.fd >= 0;
    if (!open && l->data.len < SPILL_THRESHOLD)
        return 0;
    if (open && !end && l->data.len < SPILL_CHUNK)
        return 0;
    int rc = open ? 0 : email__spill_open(&l->spill);
    rc = rc ? rc : email__spill_write(&l->spill, l->data.data, l->data.len);
    if (rc)
        return fail(p, rc);
    if (open)
        email__buf_reset(&l->data);
    else
        email__buf_free(&l->data); /* its 1 MiB: SPILL_CHUNK is enough from now on */
    return 0;
}

static int leaf_data(mime_parser_t *p, const char *s, size_t n, bool newline)
{
    leaf_t *l = &p->leaf;
    if (l->kind == LEAF_DROP || l->full)
        return 0;
    if (p->decoded + n + 2 > EMAIL_PARSE_MAX_DECODED) {
        l->full = true;
        *problems(p) |= EMAIL_PARSE_LIMIT;
        return 0;
    }
    size_t before = l->data.len;
    int rc = newline ? email__mp_decode_newline(&l->dec, &l->data)
                     : email__mp_decode(&l->dec, &l->data, s, n);
    p->decoded += l->data.len - before;
    if (rc)
        return oom(p);
    return l->kind == LEAF_PART ? leaf_spill(p, false) : 0;
}

static int add_part(message_content_t *c, message_part_t *part)
{
    message_part_t *v = realloc(c->parts, (c->nparts + 1) * sizeof *v);
    if (!v)
        return EMAIL_ENOMEM;
    c->parts = v;
    v[c->nparts++] = *part;
    memset(part, 0, sizeof *part);
    return 0;
}

/* The part is complete: its bytes become a body (in UTF-8) or an attachment. */
static int leaf_end(mime_parser_t *p)
{
    leaf_t *l = &p->leaf;
    message_content_t *c = &p->m->c;
    int rc = 0;
    if (l->kind != LEAF_DROP && !(rc = email__mp_decode_end(&l->dec, &l->data)) &&
        !(rc = email__buf_reserve(&l->data, 0))) {
        *problems(p) |= l->dec.bad ? EMAIL_PARSE_ENCODING : 0;
        if (l->kind == LEAF_PART && l->spill.fd >= 0) {
            rc = leaf_spill(p, true);
            rc = rc ? rc : email__spill_map(&l->spill, &l->part.data, &l->part.length);
            l->part.mapped = l->part.data != NULL;
            rc = rc ? rc : add_part(c, &l->part);
        } else if (l->kind == LEAF_PART) {
            l->part.data = email__buf_steal(&l->data, &l->part.length);
            rc = add_part(c, &l->part);
        } else {
            email_buf_t u;
            email__buf_init(&u);
            int r = email__charset_to_utf8(l->charset, &u, l->data.data, l->data.len);
            *problems(p) |= r > 0 ? EMAIL_PARSE_CHARSET : 0;
            rc = r < 0 ? r : email__buf_reserve(&u, 0);
            char **dst = l->kind == LEAF_TEXT ? &c->text : &c->html;
            if (!rc && !*dst)
                *dst = email__buf_steal(&u, NULL);
            email__buf_free(&u);
        }
    }
    leaf_clear(l);
    p->held_crlf = false;
    return rc ? fail(p, rc) : 0;
}

/* ---- Entities: what a header block makes of the part ---- */

/* A malloc'ed copy of a field's value, or NULL (none, or out of memory: *rc). */
static char *field_copy(mime_parser_t *p, const char *name, int *rc)
{
    size_t n;
    const char *v = email__mp_field(p->head.data ? p->head.data : "", name, &n);
    char *copy = v ? email__strndup(v, n) : NULL;
    if (v && !copy)
        *rc = EMAIL_ENOMEM;
    return copy;
}

static int content_id(mime_parser_t *p, message_part_t *part)
{
    int rc = 0;
    char *id = field_copy(p, "Content-ID", &rc);
    if (!id)
        return rc;
    char *s = id, *e;
    while (*s == ' ' || *s == '\t' || *s == '<')
        s++;
    for (e = s; *e && *e != '>' && *e != ' ' && *e != '\t'; e++)
        ;
    bool nomem = false;
    email_buf_t b;
    email__buf_init(&b);
    if (e > s)
        email__utf8_sanitize(&b, s, (size_t)(e - s), &nomem);
    part->content_id = e > s ? email__buf_steal(&b, NULL) : NULL;
    email__buf_free(&b);
    free(id);
    return nomem || (e > s && !part->content_id) ? EMAIL_ENOMEM : 0;
}

static int cte_of(mime_parser_t *p)
{
    size_t n;
    const char *v = email__mp_field(p->head.data ? p->head.data : "", "Content-Transfer-Encoding",
                                    &n);
    char t[32] = "";
    if (v)
        email__mp_token(v, t, sizeof t);
    return !strcmp(t, "base64") ? CTE_BASE64 : !strcmp(t, "quoted-printable") ? CTE_QP
                                                                               : CTE_IDENTITY;
}

/* A leaf part: a body when it is the first text/plain (text/html) that is not an attachment,
   else an attachment or inline part with its name. */
static int begin_leaf(mime_parser_t *p, const char *type, const char *ct, const char *charset)
{
    leaf_t *l = &p->leaf;
    int rc = 0;
    char *cd = field_copy(p, "Content-Disposition", &rc), disp[32] = "", *name = NULL;
    if (cd)
        email__mp_token(cd, disp, sizeof disp);
    if (!rc && cd)
        rc = email__mp_param(cd, "filename", charset, &name, problems(p));
    if (rc >= 0 && !name && ct)
        rc = email__mp_param(ct, "name", charset, &name, problems(p));
    free(cd);
    bool attachment = !strcmp(disp, "attachment") || name;
    const message_content_t *c = &p->m->c;
    email__mp_decoder_init(&l->dec, cte_of(p));
    if (rc >= 0 && !attachment && !strcmp(type, "text/plain") && !c->text) {
        l->kind = LEAF_TEXT;
    } else if (rc >= 0 && !attachment && !strcmp(type, "text/html") && !c->html) {
        l->kind = LEAF_HTML;
    } else if (rc >= 0) {
        l->kind = LEAF_PART;
        l->part.name = name;
        name = NULL;
        rc = content_id(p, &l->part);
        l->part.kind = l->part.content_id && strcmp(disp, "attachment") ? MESSAGE_INLINE
                                                                         : MESSAGE_ATTACHMENT;
        if (!rc && !(l->part.content_type = email__strdup(type)))
            rc = EMAIL_ENOMEM;
    }
    free(name);
    if (rc >= 0 && l->kind != LEAF_PART && charset && !(l->charset = email__strdup(charset)))
        rc = EMAIL_ENOMEM;
    return rc < 0 ? oom(p) : 0;
}

/* type/subtype in RFC 2045 token characters (what the composer can write again). */
static bool type_valid(const char *type)
{
    const char *slash = strchr(type, '/');
    if (!slash || slash == type || !slash[1] || strchr(slash + 1, '/'))
        return false;
    for (const char *c = type; *c; c++)
        if (*c <= ' ' || *c > '~' || (*c != '/' && strchr("()<>@,;:\\\"[]?=", *c)))
            return false;
    return true;
}

/* The part's type: its Content-Type's, or the default (text/plain; message/rfc822 in a digest). */
static void entity_type(mime_parser_t *p, const char *ct, char type[128])
{
    type[0] = '\0';
    if (ct)
        email__mp_token(ct, type, 128);
    if (!type_valid(type)) {
        if (ct)
            *problems(p) |= EMAIL_PARSE_HEADER;
        strcpy(type, p->in_digest ? "message/rfc822" : "text/plain");
    }
}

/* A multipart: its boundary pushed, the preamble skipped. False when it cannot be one. */
static bool begin_multipart(mime_parser_t *p, const char *type, const char *ct, int *rc)
{
    char *boundary = NULL;
    *rc = email__mp_param(ct, "boundary", NULL, &boundary, problems(p));
    if (*rc < 0)
        return true;
    *rc = 0;
    if (!boundary || !*boundary || strlen(boundary) > 200) {
        *problems(p) |= EMAIL_PARSE_MULTIPART;
        free(boundary);
        return false;
    }
    if (p->nbounds == MAX_DEPTH) {
        *problems(p) |= EMAIL_PARSE_LIMIT;
        free(boundary);
        p->state = ST_SKIP; /* its content is dropped, up to a boundary of an outer one */
        return true;
    }
    p->digest[p->nbounds] = !strcmp(type, "multipart/digest");
    p->bounds[p->nbounds++] = boundary;
    p->state = ST_SKIP;
    return true;
}

/* The header block is complete: the message's fields (at the top), then the part. */
static int begin_entity(mime_parser_t *p)
{
    int rc = 0;
    char *ct = field_copy(p, "Content-Type", &rc), *charset = NULL, type[128];
    if (!rc && ct && email__mp_param(ct, "charset", NULL, &charset, problems(p)) < 0)
        rc = EMAIL_ENOMEM;
    if (!rc && p->top)
        rc = email__mp_message_fields(p->m, p->head.data ? p->head.data : "", charset);
    p->top = false;
    entity_type(p, ct, type);
    p->state = ST_BODY;
    if (!rc && (p->entities > MAX_PARTS)) {
        *problems(p) |= EMAIL_PARSE_LIMIT;
        p->leaf.kind = LEAF_DROP;
    } else if (!rc && !(!strncmp(type, "multipart/", 10) && begin_multipart(p, type, ct, &rc))) {
        if (!strncmp(type, "multipart/", 10))
            strcpy(type, "text/plain");
        rc = begin_leaf(p, type, ct, charset);
    }
    free(ct);
    free(charset);
    email__buf_reset(&p->head);
    return rc ? oom(p) : 0;
}

/* ---- Boundaries ---- */

/* The level of the open boundary s[0..n) is a delimiter of (innermost first), or -1; *close
   when it is the final one ("--" after it). White space may follow (transport padding). */
static long boundary_level(const mime_parser_t *p, const char *s, size_t n, bool *close)
{
    if (n < 3 || s[0] != '-' || s[1] != '-')
        return -1;
    for (size_t i = p->nbounds; i-- > 0;) {
        size_t bl = strlen(p->bounds[i]);
        if (n < 2 + bl || memcmp(s + 2, p->bounds[i], bl))
            continue;
        const char *rest = s + 2 + bl;
        size_t rl = n - 2 - bl;
        *close = rl >= 2 && rest[0] == '-' && rest[1] == '-';
        if (*close)
            rest += 2, rl -= 2;
        while (rl && (*rest == ' ' || *rest == '\t'))
            rest++, rl--;
        if (!rl)
            return (long)i;
    }
    return -1;
}

/* A delimiter of level: the part being read ends (and the multiparts inside it with no final
   boundary); then a new part starts, or (close) the epilogue. */
static int on_boundary(mime_parser_t *p, size_t level, bool close)
{
    int rc = p->state == ST_HEAD ? begin_entity(p) : 0;
    rc = rc ? rc : leaf_end(p);
    if (level + 1 < p->nbounds)
        *problems(p) |= EMAIL_PARSE_MULTIPART;
    while (p->nbounds > level + 1)
        free(p->bounds[--p->nbounds]);
    p->in_digest = p->digest[level];
    if (close) {
        free(p->bounds[--p->nbounds]);
        p->state = ST_SKIP;
        return rc;
    }
    p->entities++;
    p->state = ST_HEAD;
    email__buf_reset(&p->head);
    return rc;
}

/* ---- Lines ---- */

/* A field name: printable ASCII up to ':' (white space before the colon is an obsolete form). */
static bool is_field(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] > ' ' && s[i] < 127 && s[i] != ':')
        i++;
    size_t name = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return name && i < n && s[i] == ':';
}

/* Appends to the header block, NUL and CR written as spaces; past HEAD_CAP it is dropped. */
static int head_append(mime_parser_t *p, const char *s, size_t n, bool new_field)
{
    if (p->head.len + n + 1 > HEAD_CAP) {
        *problems(p) |= EMAIL_PARSE_LIMIT;
        p->drop_line = true;
        return 0;
    }
    size_t start = p->head.len;
    if ((new_field && p->head.len && email__buf_putc(&p->head, '\n')) ||
        email__buf_append(&p->head, s, n))
        return oom(p);
    for (size_t i = start; i < p->head.len; i++)
        if (p->head.data[i] == '\0' || p->head.data[i] == '\r')
            p->head.data[i] = ' ';
    return 0;
}

static int body_piece(mime_parser_t *p, const char *s, size_t n, bool starts, bool ends);

/* A piece of a header line: starts when it begins the line; the line ends after it. */
static int head_piece(mime_parser_t *p, const char *s, size_t n, bool starts, bool ends)
{
    if (!starts)
        return p->drop_line ? 0 : head_append(p, s, n, false);
    bool first = p->first_line;
    p->first_line = false;
    p->drop_line = false;
    if (!n)
        return begin_entity(p); /* the blank line */
    if (s[0] == ' ' || s[0] == '\t') {
        if (p->head.len)
            return head_append(p, s, n, false);
        *problems(p) |= EMAIL_PARSE_HEADER; /* folded before any field */
        p->drop_line = true;
        return 0;
    }
    if (first && p->top && n >= 5 && !memcmp(s, "From ", 5)) {
        p->drop_line = true; /* an mbox separator */
        return 0;
    }
    if (is_field(s, n))
        return head_append(p, s, n, true);
    /* not a field: the header ends without its blank line, and this starts the body */
    *problems(p) |= EMAIL_PARSE_HEADER;
    int rc = begin_entity(p);
    return rc ? rc : body_piece(p, s, n, true, ends);
}

static int body_piece(mime_parser_t *p, const char *s, size_t n, bool starts, bool ends)
{
    bool close;
    long level = starts && n < LINE_CAP ? boundary_level(p, s, n, &close) : -1;
    if (level >= 0 && ends)
        return on_boundary(p, (size_t)level, close);
    if (p->state == ST_SKIP)
        return 0;
    int rc = 0;
    if (starts && p->held_crlf) {
        p->held_crlf = false;
        rc = leaf_data(p, NULL, 0, true);
    }
    rc = rc ? rc : leaf_data(p, s, n, false);
    p->held_crlf = ends;
    return rc;
}

/* One piece of a line (ends: the line break came right after it). */
static int piece(mime_parser_t *p, const char *s, size_t n, bool ends)
{
    bool starts = !p->in_line;
    p->in_line = !ends;
    if (p->state == ST_HEAD)
        return head_piece(p, s, n, starts, ends);
    return body_piece(p, s, n, starts, ends);
}

/* A whole line (ends) or LINE_CAP octets of one, s[0..n), handled; returns how many octets it
   used (a CR at the end of a piece is left: the LF after it makes it part of the line break). */
static size_t take_line(mime_parser_t *p, const char *s, size_t n, bool ends, int *rc)
{
    size_t len = n, keep = 0;
    if (ends) {
        len -= s[len - 1] == '\n';
        len -= len && s[len - 1] == '\r';
    } else if (s[len - 1] == '\r') {
        keep = 1;
        len--;
    }
    *rc = piece(p, s, len, ends);
    return n - keep;
}

/* The line buffer is full (LINE_CAP) or holds a whole line: handled, and emptied. */
static int flush_line(mime_parser_t *p, bool ends)
{
    int rc;
    email__buf_consume(&p->line, take_line(p, p->line.data, p->line.len, ends, &rc));
    return rc;
}

/* A base64 leaf's body text, many lines in one pass (a large attachment's path): the lines up
   to one that starts with '-' (perhaps a boundary, left to take_line), at most RUN_CAP octets.
   What the lines one by one would do (decoded alike, the last line break held back alike), but
   for the decoded-size limit: a run that could reach it is left to the lines. *used octets. */
static int body_run(mime_parser_t *p, const char *s, size_t n, size_t *used)
{
    leaf_t *l = &p->leaf;
    *used = 0;
    if (p->state != ST_BODY || p->line.len || l->kind == LEAF_DROP || l->full ||
        l->dec.cte != CTE_BASE64)
        return 0;
    n = n < RUN_CAP ? n : RUN_CAP;
    if (p->decoded + n + 2 > EMAIL_PARSE_MAX_DECODED)
        return 0;
    bool bol = !p->in_line;
    size_t before = l->data.len;
    int rc = email__mp_decode_b64_lines(&l->dec, &l->data, s, n, &bol, used);
    p->decoded += l->data.len - before;
    if (rc)
        return oom(p);
    if (*used) {
        p->in_line = !bol;
        p->held_crlf = bol; /* base64 decodes nothing of a line break: only the state moves */
    }
    return l->kind == LEAF_PART ? leaf_spill(p, false) : 0;
}

int email__mime_parser_feed(mime_parser_t *p, const char *data, size_t n)
{
    if (p->error)
        return p->error;
    p->size += n;
    while (n) {
        size_t run;
        if (body_run(p, data, n, &run))
            return p->error;
        data += run;
        n -= run;
        if (!n)
            break;
        const char *nl = memchr(data, '\n', n);
        size_t k = nl ? (size_t)(nl - data) + 1 : n, room = LINE_CAP - p->line.len;
        if (nl && !p->line.len && k <= LINE_CAP) {
            /* a whole line in data: handled where it is, without a copy (the common case) */
            int rc;
            take_line(p, data, k, true, &rc);
            if (rc)
                return p->error ? p->error : oom(p);
            data += k;
            n -= k;
            continue;
        }
        bool ends = nl && k <= room;
        if (k > room)
            k = room;
        if (email__buf_append(&p->line, data, k))
            return oom(p);
        data += k;
        n -= k;
        if ((ends || p->line.len == LINE_CAP) && flush_line(p, ends))
            return p->error ? p->error : oom(p);
    }
    return 0;
}

int email__mime_parser_finish(mime_parser_t *p, email_message_t **out)
{
    int rc = p->error;
    if (!rc && p->line.len) {
        /* the last line, without its line break */
        rc = piece(p, p->line.data, p->line.len, true);
        p->held_crlf = false;
    }
    if (!rc && p->state == ST_HEAD)
        rc = begin_entity(p);
    if (!rc && p->held_crlf)
        rc = leaf_data(p, NULL, 0, true); /* the last line break is the content's */
    rc = rc ? rc : leaf_end(p);
    if (p->nbounds)
        *problems(p) |= EMAIL_PARSE_MULTIPART; /* no final boundary */
    p->m->parsed->size = p->size;
    if (!rc) {
        *out = p->m;
        p->m = NULL;
    }
    email__mime_parser_free(p);
    return rc;
}
