/*
 * libFuzzer target: the MIME composer (lib/mime.c, lib/mime_headers.c) through the message
 * builder, read back by a small MIME reader written here.
 *
 * Input: byte 0 (bit 0 an HTML body, 1 an attachment, 2 an inline part, 3 Cc and Bcc, 4 a
 * priority, 5 a read receipt, 6 a custom header holding the subject text, 7 In-Reply-To), byte 1
 * (header mode bits 0-1, body mode bits 2-3: UTF-8 QP, UTF-8 base64, ISO-8859-1, ISO-2022-JP;
 * bits 4-7 the read size for the streaming check), then NUL-separated: display name, subject,
 * text body, HTML body, attachment bytes (the rest; the inline part holds them reversed).
 * Fields the builder refuses (not UTF-8, CR/LF in the subject...) are left out.
 *
 * Checked: the bytes read in small pieces are the bytes read at once, their count is the size
 * announced; every line ends with CRLF and is at most 998 octets; octets >= 0x80 only when the
 * reader says 8-bit; no Bcc header; the header block parses (names, folding); Subject, the custom
 * header and From's display name decode (RFC 2047, quoted strings) to the texts given; the MIME
 * tree parses (boundaries, Content-Transfer-Encoding, charsets) and its leaves decode to the text
 * body and HTML body (line endings CRLF, a final one added) and the attachment bytes, each once;
 * the attachment's file name decodes (RFC 2231) to the name given. ISO-8859-1 may refuse a text
 * it cannot hold (EMAIL_ECHARSET), nothing else.
 */
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "charset.h"
#include "emailsession.h"
#include "fuzz_common.h"
#include "message.h"
#include "mime.h"
#include "util.h"

#define MAX_LEAVES 16

typedef struct leaf {
    char type[64];      /* lower case "text/plain" */
    char cid[128];      /* Content-ID without brackets, "" none */
    char filename[512]; /* decoded, "" none */
    bool has_filename;
    fuzz_str_t data;    /* decoded body (text: UTF-8) */
} leaf_t;

typedef struct tree {
    leaf_t leaves[MAX_LEAVES];
    int n;
} tree_t;

/* ---- small helpers ---- */

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool ieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* Text in charset cs to UTF-8; false when iconv refuses it. */
static bool to_utf8(const char *cs, size_t csn, const char *s, size_t n, fuzz_str_t *out)
{
    char name[64];
    if (csn == 0 || csn >= sizeof name)
        return false;
    memcpy(name, cs, csn);
    name[csn] = '\0';
    if (ieq(name, csn, "utf-8") || ieq(name, csn, "us-ascii")) {
        if (ieq(name, csn, "us-ascii"))
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] >= 0x80)
                    return false;
        fuzz_str_add(out, s, n);
        return true;
    }
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return false;
    char *in = (char *)s;
    size_t left = n;
    bool ok = true;
    while (left) {
        char buf[512], *o = buf;
        size_t room = sizeof buf;
        size_t r = iconv(cd, &in, &left, &o, &room);
        fuzz_str_add(out, buf, sizeof buf - room);
        if (r == (size_t)-1 && errno == E2BIG)
            continue;
        if (r != 0) {
            ok = false;
            break;
        }
    }
    iconv_close(cd);
    return ok;
}

/* ---- headers ---- */

typedef struct header {
    const char *name;
    size_t namelen;
    fuzz_str_t value; /* unfolded: CRLF before white space removed */
} header_t;

typedef struct headers {
    header_t h[64];
    int n;
} headers_t;

static void headers_free(headers_t *hs)
{
    for (int i = 0; i < hs->n; i++)
        fuzz_str_free(&hs->h[i].value);
    hs->n = 0;
}

/* Parses the header block at s; returns the offset of the body (after the blank line). */
FUZZ_NOCOV static size_t parse_headers(const char *s, size_t n, headers_t *hs)
{
    size_t pos = 0;
    hs->n = 0;
    for (;;) {
        FUZZ_CHECK(pos + 1 < n, "the header block does not end");
        if (s[pos] == '\r' && s[pos + 1] == '\n')
            return pos + 2;
        const char *line = s + pos;
        const char *end = memchr(line, '\r', n - pos);
        FUZZ_CHECK(end, "header line without CRLF");
        size_t ln = (size_t)(end - line);
        const char *colon = memchr(line, ':', ln);
        FUZZ_CHECK(colon && colon > line, "header line without a name: %.*s", (int)ln, line);
        for (const char *c = line; c < colon; c++)
            FUZZ_CHECK(*c > 32 && *c < 127, "bad octet in a header name");
        FUZZ_CHECK(hs->n < 64, "too many header fields");
        header_t *h = &hs->h[hs->n++];
        h->name = line;
        h->namelen = (size_t)(colon - line);
        memset(&h->value, 0, sizeof h->value);
        fuzz_str_add(&h->value, "", 0);
        const char *v = colon + 1;
        if (v < end && *v == ' ')
            v++;
        fuzz_str_add(&h->value, v, (size_t)(end - v));
        pos += ln + 2;
        /* continuation lines */
        while (pos < n && (s[pos] == ' ' || s[pos] == '\t')) {
            const char *c = s + pos;
            const char *e = memchr(c, '\r', n - pos);
            FUZZ_CHECK(e, "continuation line without CRLF");
            bool blank = true;
            for (const char *k = c; k < e; k++)
                blank = blank && (*k == ' ' || *k == '\t');
            FUZZ_CHECK(!blank, "a folded line of white space only");
            fuzz_str_add(&h->value, c, (size_t)(e - c));
            pos += (size_t)(e - c) + 2;
        }
    }
}

static const header_t *find(const headers_t *hs, const char *name)
{
    for (int i = 0; i < hs->n; i++)
        if (ieq(hs->h[i].name, hs->h[i].namelen, name))
            return &hs->h[i];
    return NULL;
}

/* One encoded word at s[0..n) decoded (to UTF-8) into out; false when it is not one. */
static bool decode_word(const char *s, size_t n, fuzz_str_t *out)
{
    if (n < 8 || s[0] != '=' || s[1] != '?' || s[n - 2] != '?' || s[n - 1] != '=')
        return false;
    const char *cs = s + 2;
    const char *q1 = memchr(cs, '?', n - 2);
    if (!q1 || q1 + 3 > s + n - 2 || q1[2] != '?')
        return false;
    char enc = q1[1];
    const char *p = q1 + 3;
    size_t pn = (size_t)((s + n - 2) - p);
    fuzz_str_t raw = {0};
    fuzz_str_add(&raw, "", 0);
    bool ok = true;
    if (enc == 'B' || enc == 'b') {
        ok = fuzz_b64_decode(p, pn, &raw);
    } else if (enc == 'Q' || enc == 'q') {
        for (size_t i = 0; ok && i < pn; i++) {
            if (p[i] == '_') {
                fuzz_str_add(&raw, " ", 1);
            } else if (p[i] == '=') {
                ok = i + 2 < pn && hexv(p[i + 1]) >= 0 && hexv(p[i + 2]) >= 0;
                if (ok) {
                    char c = (char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
                    fuzz_str_add(&raw, &c, 1);
                    i += 2;
                }
            } else {
                ok = p[i] > 32 && p[i] < 127 && p[i] != '?';
                fuzz_str_add(&raw, p + i, 1);
            }
        }
    } else {
        ok = false;
    }
    /* a word decodes on its own (lib/encode.h) */
    ok = ok && to_utf8(cs, (size_t)(q1 - cs), raw.p, raw.len, out);
    fuzz_str_free(&raw);
    return ok;
}

/* Unstructured text (RFC 5322 + 2047): encoded words decoded, white space between two encoded
   words dropped, everything else as it is. */
static void decode_text(const char *s, size_t n, fuzz_str_t *out)
{
    size_t i = 0;
    bool last_word = false;
    fuzz_str_t ws = {0};
    fuzz_str_add(&ws, "", 0);
    while (i < n) {
        size_t j = i;
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
            j++;
        ws.len = 0;
        fuzz_str_add(&ws, s + i, j - i);
        size_t k = j;
        while (k < n && s[k] != ' ' && s[k] != '\t')
            k++;
        if (k == j) {
            fuzz_str_add(out, ws.p, ws.len);
            break;
        }
        fuzz_str_t w = {0};
        fuzz_str_add(&w, "", 0);
        bool is_word = decode_word(s + j, k - j, &w);
        if (!(is_word && last_word))
            fuzz_str_add(out, ws.p, ws.len);
        if (is_word)
            fuzz_str_add(out, w.p, w.len);
        else
            fuzz_str_add(out, s + j, k - j);
        fuzz_str_free(&w);
        last_word = is_word;
        i = k;
    }
    fuzz_str_free(&ws);
}

/* A parameter of a structured header (Content-Type, Content-Disposition), RFC 2045 + 2231. */
static bool get_param(const char *v, size_t n, const char *attr, fuzz_str_t *out)
{
    size_t an = strlen(attr);
    fuzz_str_t sections[32];
    bool have[32] = {false}, ext[32] = {false};
    memset(sections, 0, sizeof sections);
    const char *charset = NULL;
    size_t charsetn = 0;
    bool plain = false, found = false;
    size_t i = 0;
    while (i < n) {
        const char *semi = memchr(v + i, ';', n - i);
        if (!semi)
            break;
        i = (size_t)(semi - v) + 1;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t k = i;
        while (k < n && v[k] != '=')
            k++;
        if (k == n)
            break;
        const char *name = v + i;
        size_t nn = k - i;
        i = k + 1;
        fuzz_str_t val = {0};
        fuzz_str_add(&val, "", 0);
        if (i < n && v[i] == '"') {
            i++;
            while (i < n && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < n)
                    i++;
                fuzz_str_add(&val, v + i, 1);
                i++;
            }
            i++;
        } else {
            size_t e = i;
            while (e < n && v[e] != ';' && v[e] != ' ' && v[e] != '\t')
                e++;
            fuzz_str_add(&val, v + i, e - i);
            i = e;
        }
        int sec = -1;
        bool star = false;
        if (ieq(name, nn, attr)) {
            plain = true;
            found = true;
            out->len = 0;
            fuzz_str_add(out, val.p, val.len);
        } else if (nn > an && ieq(name, an, attr) && name[an] == '*') {
            const char *p = name + an + 1;
            size_t pn = nn - an - 1;
            if (pn == 0) {
                sec = 0;
                star = true;
            } else {
                sec = 0;
                size_t d = 0;
                while (d < pn && p[d] >= '0' && p[d] <= '9')
                    sec = sec * 10 + (p[d++] - '0');
                FUZZ_CHECK(d > 0 && sec < 32, "parameter section %.*s", (int)nn, name);
                star = d < pn && p[d] == '*';
            }
        }
        if (sec >= 0) {
            FUZZ_CHECK(!have[sec], "section %d twice", sec);
            have[sec] = true;
            ext[sec] = star;
            fuzz_str_add(&sections[sec], "", 0);
            const char *s = val.p;
            size_t sn = val.len;
            if (star && sec == 0) {
                /* charset'language'value */
                const char *q1 = memchr(s, '\'', sn);
                FUZZ_CHECK(q1, "extended parameter without charset");
                const char *q2 = memchr(q1 + 1, '\'', sn - (size_t)(q1 + 1 - s));
                FUZZ_CHECK(q2, "extended parameter without language");
                charsetn = (size_t)(q1 - s);
                static char csbuf[64]; /* val is freed below: the charset is copied */
                FUZZ_CHECK(charsetn < sizeof csbuf);
                memcpy(csbuf, s, charsetn);
                charset = csbuf;
                sn -= (size_t)(q2 + 1 - s);
                s = q2 + 1;
            }
            fuzz_str_add(&sections[sec], s, sn);
        }
        fuzz_str_free(&val);
    }
    int nsec = 0;
    while (nsec < 32 && have[nsec])
        nsec++;
    for (int k = nsec; k < 32; k++)
        FUZZ_CHECK(!have[k], "parameter section %d without %d", k, nsec);
    if (nsec) {
        FUZZ_CHECK(!plain, "both %s and %s*", attr, attr);
        fuzz_str_t raw = {0};
        fuzz_str_add(&raw, "", 0);
        for (int k = 0; k < nsec; k++) {
            const fuzz_str_t *sct = &sections[k];
            for (size_t c = 0; c < sct->len; c++) {
                if (ext[k] && sct->p[c] == '%') {
                    FUZZ_CHECK(c + 2 < sct->len && hexv(sct->p[c + 1]) >= 0 &&
                                   hexv(sct->p[c + 2]) >= 0,
                               "bad %% escape");
                    char ch = (char)(hexv(sct->p[c + 1]) * 16 + hexv(sct->p[c + 2]));
                    fuzz_str_add(&raw, &ch, 1);
                    c += 2;
                } else {
                    fuzz_str_add(&raw, sct->p + c, 1);
                }
            }
        }
        out->len = 0;
        if (charset) {
            FUZZ_CHECK(to_utf8(charset, charsetn, raw.p, raw.len, out), "parameter charset");
        } else {
            fuzz_str_add(out, raw.p, raw.len);
        }
        fuzz_str_free(&raw);
        found = true;
    }
    for (int k = 0; k < 32; k++)
        fuzz_str_free(&sections[k]);
    return found;
}

/* ---- the MIME tree ---- */

FUZZ_NOCOV static void parse_entity(const char *s, size_t n, tree_t *t, int depth)
{
    FUZZ_CHECK(depth < 6, "MIME nesting too deep");
    headers_t hs;
    size_t body = parse_headers(s, n, &hs);
    const header_t *ct = find(&hs, "Content-Type");
    const header_t *cte = find(&hs, "Content-Transfer-Encoding");
    char type[64] = "text/plain";
    if (ct) {
        size_t k = 0;
        while (k < ct->value.len && k < sizeof type - 1 && ct->value.p[k] != ';' &&
               ct->value.p[k] != ' ')
            type[k] = (char)(ct->value.p[k] >= 'A' && ct->value.p[k] <= 'Z'
                                 ? ct->value.p[k] - 'A' + 'a'
                                 : ct->value.p[k]),
            k++;
        type[k] = '\0';
    }
    const char *b = s + body;
    size_t bn = n - body;
    if (!strncmp(type, "multipart/", 10)) {
        fuzz_str_t boundary = {0};
        fuzz_str_add(&boundary, "", 0);
        FUZZ_CHECK(get_param(ct->value.p, ct->value.len, "boundary", &boundary),
                   "multipart without a boundary");
        FUZZ_CHECK(boundary.len >= 1 && boundary.len <= 70, "boundary of %zu", boundary.len);
        fuzz_str_t delim = {0};
        fuzz_str_add(&delim, "--", 2);
        fuzz_str_add(&delim, boundary.p, boundary.len);
        /* the first delimiter opens the body (no preamble is written) */
        FUZZ_CHECK(bn >= delim.len + 2 && !memcmp(b, delim.p, delim.len) &&
                       !memcmp(b + delim.len, "\r\n", 2),
                   "multipart body does not open with its delimiter");
        size_t pos = delim.len + 2;
        int parts = 0;
        for (;;) {
            /* the next "\r\n--boundary" */
            size_t next = SIZE_MAX;
            for (size_t k = pos; k + 2 + delim.len <= bn; k++)
                if (b[k] == '\r' && b[k + 1] == '\n' && !memcmp(b + k + 2, delim.p, delim.len)) {
                    next = k;
                    break;
                }
            FUZZ_CHECK(next != SIZE_MAX, "part without a closing delimiter");
            parse_entity(b + pos, next - pos, t, depth + 1);
            parts++;
            size_t after = next + 2 + delim.len;
            if (after + 4 <= bn && !memcmp(b + after, "--\r\n", 4)) {
                FUZZ_CHECK(after + 4 == bn, "bytes after the closing delimiter");
                break;
            }
            FUZZ_CHECK(after + 2 <= bn && !memcmp(b + after, "\r\n", 2), "bad delimiter line");
            pos = after + 2;
        }
        FUZZ_CHECK(parts >= 1);
        fuzz_str_free(&boundary);
        fuzz_str_free(&delim);
        headers_free(&hs);
        return;
    }
    FUZZ_CHECK(t->n < MAX_LEAVES, "too many parts");
    leaf_t *l = &t->leaves[t->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->type, sizeof l->type, "%s", type);
    fuzz_str_add(&l->data, "", 0);
    fuzz_str_t raw = {0};
    fuzz_str_add(&raw, "", 0);
    const char *enc = cte ? cte->value.p : "7bit";
    size_t encn = cte ? cte->value.len : 4;
    if (ieq(enc, encn, "base64")) {
        fuzz_str_t joined = {0};
        fuzz_str_add(&joined, "", 0);
        for (size_t k = 0; k < bn; k++)
            if (b[k] != '\r' && b[k] != '\n')
                fuzz_str_add(&joined, b + k, 1);
        FUZZ_CHECK(fuzz_b64_decode(joined.p, joined.len, &raw), "bad base64 body");
        fuzz_str_free(&joined);
    } else if (ieq(enc, encn, "quoted-printable")) {
        for (size_t k = 0; k < bn; k++) {
            if (b[k] == '=') {
                if (k + 1 < bn && b[k + 1] == '\r') {
                    FUZZ_CHECK(k + 2 < bn && b[k + 2] == '\n', "QP soft break");
                    k += 2;
                    continue;
                }
                FUZZ_CHECK(k + 2 < bn && hexv(b[k + 1]) >= 0 && hexv(b[k + 2]) >= 0, "bad QP");
                char c = (char)(hexv(b[k + 1]) * 16 + hexv(b[k + 2]));
                fuzz_str_add(&raw, &c, 1);
                k += 2;
            } else {
                fuzz_str_add(&raw, b + k, 1);
            }
        }
    } else {
        FUZZ_CHECK(ieq(enc, encn, "7bit") || ieq(enc, encn, "8bit"), "encoding %.*s",
                   (int)encn, enc);
        fuzz_str_add(&raw, b, bn);
    }
    if (!strncmp(type, "text/", 5)) {
        fuzz_str_t cs = {0};
        fuzz_str_add(&cs, "", 0);
        if (!ct || !get_param(ct->value.p, ct->value.len, "charset", &cs))
            fuzz_str_add(&cs, "us-ascii", 8);
        FUZZ_CHECK(to_utf8(cs.p, cs.len, raw.p, raw.len, &l->data), "%s body is not %s", type,
                   cs.p);
        fuzz_str_free(&cs);
    } else {
        fuzz_str_add(&l->data, raw.p, raw.len);
    }
    fuzz_str_free(&raw);
    const header_t *cid = find(&hs, "Content-ID");
    if (cid) {
        FUZZ_CHECK(cid->value.len >= 2 && cid->value.p[0] == '<' &&
                       cid->value.p[cid->value.len - 1] == '>' &&
                       cid->value.len - 2 < sizeof l->cid,
                   "Content-ID %s", cid->value.p);
        memcpy(l->cid, cid->value.p + 1, cid->value.len - 2);
    }
    const header_t *cd = find(&hs, "Content-Disposition");
    if (cd) {
        fuzz_str_t fn = {0};
        fuzz_str_add(&fn, "", 0);
        if (get_param(cd->value.p, cd->value.len, "filename", &fn)) {
            l->has_filename = true;
            snprintf(l->filename, sizeof l->filename, "%s", fn.p);
        }
        fuzz_str_free(&fn);
    }
    headers_free(&hs);
}

static void tree_free(tree_t *t)
{
    for (int i = 0; i < t->n; i++)
        fuzz_str_free(&t->leaves[i].data);
    t->n = 0;
}

/* ---- the run ---- */

static const char *next_field(fuzz_input_t *in, size_t *len)
{
    const char *s = (const char *)in->p;
    const void *nul = memchr(in->p, 0, in->n);
    size_t n = nul ? (size_t)((const uint8_t *)nul - in->p) : in->n;
    in->p += n + (nul ? 1 : 0);
    in->n -= n + (nul ? 1 : 0);
    *len = n;
    return s;
}

static char *dup0(const char *s, size_t n)
{
    char *d = fuzz_xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static bool same(const fuzz_str_t *a, const char *b, size_t bn)
{
    return a->len == bn && (!bn || !memcmp(a->p, b, bn));
}

FUZZ_NOCOV static void squeeze(const char *s, size_t n, fuzz_str_t *out)
{
    fuzz_str_add(out, "", 0);
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' || s[i] == '\t') {
            space = true;
            continue;
        }
        if (space && out->len)
            fuzz_str_add(out, " ", 1);
        space = false;
        fuzz_str_add(out, s + i, 1);
    }
}

/* The text as the composer writes it: line endings CRLF, ending with one (unless empty). */
static void expected_text(const char *t, fuzz_str_t *out)
{
    fuzz_str_add(out, "", 0);
    fuzz_crlf_normalise(out, (const uint8_t *)t, strlen(t));
    if (out->len && (out->len < 2 || memcmp(out->p + out->len - 2, "\r\n", 2)))
        fuzz_str_add(out, "\r\n", 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t flags = fuzz_byte(&in), modes = fuzz_byte(&in);
    size_t nl, sl, tl, hl, al;
    const char *name_p = next_field(&in, &nl);
    const char *subj_p = next_field(&in, &sl);
    const char *text_p = next_field(&in, &tl);
    const char *html_p = next_field(&in, &hl);
    const char *att_p = (const char *)in.p;
    al = in.n;
    if (nl > 200 || sl > 2000 || tl > 20000 || hl > 20000)
        return 0;
    char *name = dup0(name_p, nl), *subject = dup0(subj_p, sl), *text = dup0(text_p, tl),
         *html = dup0(html_p, hl);
    static const char *const mode_names[4] = {EMAIL_MAIL_MODE_UTF8, EMAIL_MAIL_MODE_UTF8_IN_BASE64,
                                              EMAIL_MAIL_MODE_ISO88591,
                                              EMAIL_MAIL_MODE_ISO2022JP};
    int hmode = modes & 3, bmode = (modes >> 2) & 3;

    email_message_t *m = email_message_new();
    FUZZ_CHECK(m != NULL);
    FUZZ_CHECK(email_message_set_charsets(m, mode_names[hmode], mode_names[bmode]) == 0);
    /* From with the display name as a quoted string */
    bool have_name = false;
    if (nl) {
        fuzz_str_t a = {0};
        fuzz_str_puts(&a, "\"");
        for (size_t i = 0; i < nl; i++) {
            if (name[i] == '"' || name[i] == '\\')
                fuzz_str_add(&a, "\\", 1);
            fuzz_str_add(&a, name + i, 1);
        }
        fuzz_str_puts(&a, "\" <me@example.org>");
        have_name = email_message_set_from(m, a.p) == 0;
        fuzz_str_free(&a);
    }
    if (!have_name)
        FUZZ_CHECK(email_message_set_from(m, "me@example.org") == 0);
    FUZZ_CHECK(email_message_add_to(m, "you@example.org") == 0);
    if (flags & 8) {
        FUZZ_CHECK(email_message_add_cc(m, "Carbon <cc@example.org>") == 0);
        FUZZ_CHECK(email_message_add_bcc(m, "hidden@example.org") == 0);
    }
    bool have_subject = email_message_set_subject(m, subject) == 0;
    bool have_text = email_message_set_text_body(m, text) == 0;
    bool have_html = (flags & 1) && email_message_set_html_body(m, html) == 0;
    bool have_header = (flags & 64) && email_message_add_header(m, "X-Fuzz", subject) == 0;
    bool have_att = (flags & 2) && email_message_add_attachment_data(
                                       m, att_p, al, have_name ? name : NULL,
                                       "application/octet-stream") == 0;
    char *rev = fuzz_xrealloc(NULL, al + 1);
    for (size_t i = 0; i < al; i++)
        rev[i] = att_p[al - 1 - i];
    bool have_inline = (flags & 4) && email_message_add_inline(m, NULL, rev, al, "part1@fuzz",
                                                               "image/png") == 0;
    if (flags & 16)
        FUZZ_CHECK(email_message_set_priority(m, EMAIL_PRIORITY_HIGH) == 0);
    if (flags & 32)
        FUZZ_CHECK(email_message_set_disposition_notification(m, true) == 0);
    if (flags & 128)
        FUZZ_CHECK(email_message_set_in_reply_to(m, "<abc.123@example.org>") == 0);

    email_message_t *frozen = NULL;
    char err[256];
    int rc = email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err);
    FUZZ_CHECK(rc == 0, "freeze: %d %s", rc, err);
    mime_reader_t *r1 = NULL, *r2 = NULL;
    rc = email__mime_reader_new(frozen, &r1, err, sizeof err);
    if (rc) {
        /* only ISO-8859-1 (no fallback) may refuse a text */
        FUZZ_CHECK(rc == EMAIL_ECHARSET && (hmode == 2 || bmode == 2), "reader: %d %s", rc, err);
        email_message_free(frozen);
        goto out;
    }
    FUZZ_CHECK(email__mime_reader_new(frozen, &r2, err, sizeof err) == 0);
    uint64_t total = email__mime_reader_size(r1);
    FUZZ_CHECK(total < ((uint64_t)1 << 26), "size %llu", (unsigned long long)total);
    char *whole = fuzz_xrealloc(NULL, (size_t)total + 1);
    size_t got = 0;
    ssize_t k;
    while ((k = email__mime_reader_read(r1, whole + got, (size_t)total + 1 - got)) > 0)
        got += (size_t)k;
    FUZZ_CHECK(k == 0 && got == total, "read %zu of %llu (last %zd)", got,
               (unsigned long long)total, k);
    whole[got] = '\0';
    /* again, in small pieces */
    size_t piece = 1 + (size_t)(modes >> 4) * 37;
    fuzz_str_t bits = {0};
    fuzz_str_add(&bits, "", 0);
    char buf[1024];
    while ((k = email__mime_reader_read(r2, buf, piece)) > 0) {
        FUZZ_CHECK((size_t)k <= piece);
        fuzz_str_add(&bits, buf, (size_t)k);
    }
    FUZZ_CHECK(k == 0 && bits.len == got && !memcmp(bits.p, whole, got),
               "read in pieces of %zu: different bytes", piece);
    fuzz_str_free(&bits);
    bool eightbit = email__mime_reader_8bit(r1);
    email__mime_reader_free(r1);
    email__mime_reader_free(r2);
    email_message_free(frozen);

    if (getenv("FUZZ_TRACE")) /* FUZZ_TRACE=1 ./fuzz_mime INPUT: the message */
        fprintf(stderr, "%s\n(text %d html %d attachment %d inline %d name %d subject %d)\n",
                whole, have_text, have_html, have_att, have_inline, have_name, have_subject);
    /* lines */
    for (size_t i = 0, start = 0; i < got; i++) {
        unsigned char c = (unsigned char)whole[i];
        FUZZ_CHECK(c < 0x80 || eightbit, "octet %#x, yet the reader says 7-bit", c);
        if (c == '\r')
            FUZZ_CHECK(i + 1 < got && whole[i + 1] == '\n', "bare CR at %zu", i);
        if (c == '\n') {
            FUZZ_CHECK(i > 0 && whole[i - 1] == '\r', "bare LF at %zu", i);
            FUZZ_CHECK(i - 1 - start <= 998, "a line of %zu octets", i - 1 - start);
            start = i + 1;
        }
        FUZZ_CHECK(c != 0, "NUL at %zu", i);
    }
    FUZZ_CHECK(got >= 2 && !memcmp(whole + got - 2, "\r\n", 2),
               "the message does not end with CRLF");

    /* headers */
    headers_t hs;
    parse_headers(whole, got, &hs);
    FUZZ_CHECK(!find(&hs, "Bcc"), "a Bcc header");
    FUZZ_CHECK(find(&hs, "Date") && find(&hs, "Message-ID") && find(&hs, "From") &&
               find(&hs, "MIME-Version"));
    if (have_subject && sl) {
        const header_t *h = find(&hs, "Subject");
        FUZZ_CHECK(h, "no Subject");
        fuzz_str_t d = {0};
        fuzz_str_add(&d, "", 0);
        decode_text(h->value.p, h->value.len, &d);
        FUZZ_CHECK(same(&d, subject, sl), "Subject reads \"%s\", not \"%s\" (written \"%s\")", d.p,
                   subject, h->value.p);
        fuzz_str_free(&d);
    }
    if (have_header && sl) {
        const header_t *h = find(&hs, "X-Fuzz");
        FUZZ_CHECK(h, "no X-Fuzz");
        fuzz_str_t d = {0};
        fuzz_str_add(&d, "", 0);
        decode_text(h->value.p, h->value.len, &d);
        FUZZ_CHECK(same(&d, subject, sl), "X-Fuzz reads \"%s\", not \"%s\"", d.p, subject);
        fuzz_str_free(&d);
    }
    if (have_name) {
        const header_t *h = find(&hs, "From");
        const char *v = h->value.p;
        size_t vn = h->value.len;
        const char *addr = " <me@example.org>";
        size_t an = strlen(addr);
        fuzz_str_t d = {0};
        fuzz_str_add(&d, "", 0);
        if (vn == an - 1 && !memcmp(v, addr + 1, vn)) {
            /* no display name written: only right when the name is empty of text */
        } else {
            FUZZ_CHECK(vn > an && !memcmp(v + vn - an, addr, an), "From: %s", v);
            vn -= an;
            if (v[0] == '"') {
                FUZZ_CHECK(vn >= 2 && v[vn - 1] == '"', "From: unbalanced quotes: %s", v);
                fuzz_str_t q = {0};
                fuzz_str_add(&q, "", 0);
                for (size_t i = 1; i + 1 < vn; i++) {
                    if (v[i] == '\\')
                        i++;
                    fuzz_str_add(&q, v + i, 1);
                }
                decode_text(q.p, q.len, &d); /* lenient readers decode words in quotes too */
                if (!same(&d, name, nl)) {
                    d.len = 0;
                    fuzz_str_add(&d, q.p, q.len);
                }
                fuzz_str_free(&q);
            } else {
                decode_text(v, vn, &d);
            }
        }
        /* a phrase's white space is not kept exactly (address.c folds it; words are split at
           it): compare with runs of white space as one space, none at the ends */
        fuzz_str_t a = {0}, b = {0};
        squeeze(d.p, d.len, &a);
        squeeze(name, nl, &b);
        FUZZ_CHECK(same(&a, b.p, b.len), "From's name reads \"%s\", not \"%s\" (written %s)",
                   d.p, name, h->value.p);
        fuzz_str_free(&a);
        fuzz_str_free(&b);
        fuzz_str_free(&d);
    }

    /* the MIME tree */
    static tree_t t;
    t.n = 0;
    parse_entity(whole, got, &t, 0);
    int seen_text = 0, seen_html = 0, seen_att = 0, seen_inline = 0;
    fuzz_str_t want = {0};
    for (int i = 0; i < t.n; i++) {
        leaf_t *l = &t.leaves[i];
        want.len = 0;
        if (!strcmp(l->type, "text/plain")) {
            seen_text++;
            expected_text(have_text ? text : "", &want);
            FUZZ_CHECK(same(&l->data, want.p, want.len), "text body differs (%zu vs %zu octets)",
                       l->data.len, want.len);
        } else if (!strcmp(l->type, "text/html")) {
            seen_html++;
            expected_text(html, &want);
            FUZZ_CHECK(have_html && same(&l->data, want.p, want.len), "HTML body differs");
        } else if (!strcmp(l->type, "image/png")) {
            seen_inline++;
            FUZZ_CHECK(!strcmp(l->cid, "part1@fuzz"), "inline part's Content-ID %s", l->cid);
            FUZZ_CHECK(same(&l->data, rev, al), "inline part's bytes differ");
        } else if (!strcmp(l->type, "application/octet-stream")) {
            seen_att++;
            FUZZ_CHECK(same(&l->data, att_p, al), "attachment bytes differ");
            if (have_name)
                FUZZ_CHECK(l->has_filename && !strcmp(l->filename, name),
                           "attachment file name \"%s\", given \"%s\"", l->filename, name);
        } else {
            FUZZ_CHECK(false, "a part of type %s", l->type);
        }
    }
    fuzz_str_free(&want);
    FUZZ_CHECK(seen_text == (have_text || !have_html ? 1 : 0), "%d text parts", seen_text);
    FUZZ_CHECK(seen_html == (have_html ? 1 : 0), "%d HTML parts", seen_html);
    FUZZ_CHECK(seen_att == (have_att ? 1 : 0), "%d attachments", seen_att);
    FUZZ_CHECK(seen_inline == (have_inline ? 1 : 0), "%d inline parts", seen_inline);
    tree_free(&t);
    headers_free(&hs);
    free(whole);
out:
    email_message_free(m);
    free(rev);
    free(name);
    free(subject);
    free(text);
    free(html);
    return 0;
}
