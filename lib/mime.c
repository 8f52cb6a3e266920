/*
 * Message → RFC 5322 / MIME bytes: the composer, as a stream for sending and whole for
 * email_message_to_mime. Everything the message holds in memory is rendered when the reader is
 * made; attachment files are read and base64-encoded chunk by chunk as bytes are pulled, their
 * encoded size being known from their size beforehand.
 */
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "charset.h"
#include "encode.h"
#include "error.h"
#include "message.h"
#include "message_content.h"
#include "mime_headers.h"
#include "util.h"

#define LINE_HARD 998         /* RFC 5322 2.1.1: lines MUST stay within 998 octets */
#define FILE_CHUNK (57 * 512) /* raw bytes per read: a whole number of 76-character lines */

/* The message in order: ranges of the memory buffer, and files sent as base64. */
typedef struct segment {
    size_t start, len;  /* memory: mem.data[start .. start + len) */
    const char *path;   /* a file (owned by the message), or NULL for memory */
    uint64_t raw_size;  /* the file's size when the reader was made */
} segment_t;

struct mime_reader {
    email_buf_t mem;
    segment_t *seg;
    size_t nseg;
    uint64_t size;
    bool eightbit;
    size_t cur;          /* segment being read */
    size_t off;          /* bytes of a memory segment already returned */
    int fd;              /* the file being read, or -1 */
    uint64_t raw_left;   /* its bytes not read yet */
    email_buf_t chunk;   /* its encoded bytes, returned from chunk_off on */
    size_t chunk_off;
    int error;           /* a failed read fails every later one */
    char why[320];       /* ... and what happened, naming the file */
    unsigned char *raw;  /* FILE_CHUNK bytes, allocated when a file is first read: a queued
                            message without attachments costs no more than its own bytes */
};

/* State while the reader is being made. */
typedef struct builder {
    mime_out_t o;      /* o.m is &r->mem */
    mime_reader_t *r;
    size_t seg_start;  /* where the memory segment being written starts */
    char seed[33];     /* boundaries are "=_" seed "." counter */
    unsigned boundaries;
} builder_t;

/* ---- Segments ---- */

static int add_segment(mime_reader_t *r, segment_t s)
{
    segment_t *v = realloc(r->seg, (r->nseg + 1) * sizeof *v);
    if (!v)
        return EMAIL_ENOMEM;
    r->seg = v;
    r->seg[r->nseg++] = s;
    return 0;
}

static int close_memory(builder_t *b)
{
    size_t start = b->seg_start;
    size_t end = b->o.m->len;
    b->seg_start = end;
    return end > start ? add_segment(b->r, (segment_t){start, end - start, NULL, 0}) : 0;
}

static int add_file(builder_t *b, const message_part_t *p)
{
    uint64_t size;
    int e = email__file_size(p->path, &size);
    if (e)
        return email__mime_fail(&b->o, EMAIL_EIO, "Attachment \"%.100s\": %s", p->path,
                                strerror(e));
    int rc = close_memory(b);
    return rc ? rc : add_segment(b->r, (segment_t){0, 0, p->path, size});
}

/* ---- Parts ---- */

/*
 * Text as text/<subtype>: CRLF line endings, ending with one. US-ASCII when the text is ASCII,
 * else the body mode's charset: UTF-8 quoted-printable (or base64 in the B64 mode), ISO-8859-1
 * quoted-printable, ISO-2022-JP 7bit (it is a 7-bit encoding). In the ISO-2022-JP mode a text
 * ISO-2022-JP cannot hold (an emoji, an accented letter) goes in UTF-8 quoted-printable, the whole
 * part. 7bit whenever the octets are ASCII in lines of at most 998, quoted-printable when a line is
 * longer.
 */
static int put_text(builder_t *b, const char *subtype, const char *text, const char *field)
{
    email_buf_t t, converted;
    email__buf_init(&t);
    email__buf_init(&converted);
    email_crlf_t crlf;
    email__crlf_init(&crlf);
    size_t n = text ? strlen(text) : 0;
    int rc = email__crlf_feed(&crlf, &t, text ? text : "", n);
    if (!rc && t.len && t.data[t.len - 1] != '\n')
        rc = email__buf_append(&t, "\r\n", 2);
    mail_mode_t mode = b->o.c->body_mode;
    bool ascii = email__is_ascii(t.data, t.len);
    const char *charset = ascii ? "US-ASCII" : email__mime_mode_charset(mode);
    if (!rc && !ascii && (mode == MAIL_MODE_ISO88591 || mode == MAIL_MODE_ISO2022JP)) {
        rc = email__charset_from_utf8(charset, &converted, t.data, t.len, NULL);
        if (rc == EMAIL_ECHARSET && mode == MAIL_MODE_ISO2022JP) {
            charset = "UTF-8"; /* 4D's "US-ASCII_ISO-2022-JP_UTF8_QP": t stays as it is */
            rc = 0;
        } else if (!rc) {
            email_buf_t swap = t;
            t = converted;
            converted = swap;
        }
        rc = email__mime_charset_failure(&b->o, rc, field, charset);
    }
    bool long_line = false;
    for (size_t i = 0, start = 0; !rc && i < t.len; i++) {
        if (t.data[i] == '\n') {
            long_line = long_line || i - 1 - start > LINE_HARD;
            start = i + 1;
        }
    }
    enum { SEVEN_BIT, QUOTED_PRINTABLE, BASE64 } cte = QUOTED_PRINTABLE;
    static const char *const cte_names[] = {"7bit", "quoted-printable", "base64"};
    if (email__is_ascii(t.data, t.len) && !long_line)
        cte = SEVEN_BIT;
    else if (!ascii && mode == MAIL_MODE_UTF8_B64)
        cte = BASE64;
    if (!rc)
        rc = email__buf_printf(b->o.m,
                              "Content-Type: text/%s; charset=%s\r\n"
                              "Content-Transfer-Encoding: %s\r\n\r\n",
                              subtype, email__mime_charset_label(charset), cte_names[cte]);
    if (!rc)
        rc = cte == SEVEN_BIT ? email__buf_append(b->o.m, t.data, t.len)
             : cte == BASE64  ? email__base64_encode_lines(b->o.m, t.data, t.len)
                              : email__qp_encode(b->o.m, t.data, t.len);
    email__buf_free(&t);
    email__buf_free(&converted);
    return rc;
}

/* An attachment or inline part, always base64. */
static int put_part(builder_t *b, const message_part_t *p)
{
    email_buf_t *m = b->o.m;
    bool is_inline = p->kind == MESSAGE_INLINE;
    const char *field = is_inline ? "Inline part name" : "Attachment name";
    size_t col = 14;
    int rc = email__buf_puts(m, "Content-Type: ");
    rc = rc ? rc : email__mime_put_folded(m, &col, p->content_type, strlen(p->content_type));
    if (!rc && p->name)
        rc = email__mime_put_param(&b->o, field, "name", p->name);
    if (!rc)
        rc =
            email__buf_printf(m, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s",
                              is_inline ? "inline" : "attachment");
    if (!rc && p->name)
        rc = email__mime_put_param(&b->o, field, "filename", p->name);
    rc = rc ? rc : email__buf_append(m, "\r\n", 2);
    if (!rc && p->content_id)
        rc = email__buf_printf(m, "Content-ID: <%s>\r\n", p->content_id);
    rc = rc ? rc : email__buf_append(m, "\r\n", 2);
    if (rc)
        return rc;
    return p->path ? add_file(b, p) : email__base64_encode_lines(m, p->data, p->length);
}

/* Random enough that no content holds "--" + boundary: taken from the Message-ID's random part, so
   a retry of a frozen message sends the same bytes; fresh random bytes without one. */
static int make_seed(builder_t *b)
{
    size_t n = 0;
    for (const char *p = b->o.c->message_id; p && *p && *p != '@' && n < 32; p++)
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            b->seed[n++] = *p;
    if (n < 16) {
        unsigned char rnd[12];
        if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
            return email__mime_fail(&b->o, EMAIL_EIO, "Message: no random numbers available");
        for (n = 0; n < 2 * sizeof rnd; n++)
            b->seed[n] = "0123456789abcdef"[(rnd[n / 2] >> (n % 2 ? 0 : 4)) & 15];
    }
    b->seed[n] = '\0';
    return 0;
}

/* Opens a multipart entity: its Content-Type and the blank line; the boundary goes in boundary. */
static int open_multipart(builder_t *b, const char *type, char boundary[64])
{
    snprintf(boundary, 64, "=_%s.%u", b->seed, ++b->boundaries);
    return email__buf_printf(b->o.m, "Content-Type: multipart/%s;\r\n boundary=\"%s\"\r\n\r\n",
                             type, boundary);
}

/* The delimiter before a body part; the CRLF before "--" belongs to it (RFC 2046 5.1.1). */
static int put_delimiter(builder_t *b, const char *boundary, bool first)
{
    return email__buf_printf(b->o.m, "%s--%s\r\n", first ? "" : "\r\n", boundary);
}

static int close_multipart(builder_t *b, const char *boundary)
{
    return email__buf_printf(b->o.m, "\r\n--%s--\r\n", boundary);
}

/* The HTML body, with its inline parts in multipart/related when it has some. */
static int put_related(builder_t *b)
{
    const message_content_t *c = b->o.c;
    size_t i = 0;
    while (i < c->nparts && c->parts[i].kind != MESSAGE_INLINE)
        i++;
    if (i == c->nparts)
        return put_text(b, "html", c->html, "HTML body");
    char boundary[64];
    int rc = open_multipart(b, "related; type=\"text/html\"", boundary);
    rc = rc ? rc : put_delimiter(b, boundary, true);
    rc = rc ? rc : put_text(b, "html", c->html, "HTML body");
    for (; !rc && i < c->nparts; i++)
        if (c->parts[i].kind == MESSAGE_INLINE && !(rc = put_delimiter(b, boundary, false)))
            rc = put_part(b, &c->parts[i]);
    return rc ? rc : close_multipart(b, boundary);
}

/* The readable body: text, HTML, or both in multipart/alternative (plainest first). */
static int put_alternative(builder_t *b)
{
    const message_content_t *c = b->o.c;
    if (!c->html)
        return put_text(b, "plain", c->text, "Text body");
    if (!c->text)
        return put_related(b);
    char boundary[64];
    int rc = open_multipart(b, "alternative", boundary);
    rc = rc ? rc : put_delimiter(b, boundary, true);
    rc = rc ? rc : put_text(b, "plain", c->text, "Text body");
    rc = rc ? rc : put_delimiter(b, boundary, false);
    rc = rc ? rc : put_related(b);
    return rc ? rc : close_multipart(b, boundary);
}

/* The whole body: the readable body, then in multipart/mixed the attachments (and the inline
   parts when there is no HTML to show them). */
static bool beside_body(const message_content_t *c, const message_part_t *p)
{
    return p->kind == MESSAGE_ATTACHMENT || !c->html;
}

static int put_body(builder_t *b)
{
    const message_content_t *c = b->o.c;
    size_t mixed = 0;
    for (size_t i = 0; i < c->nparts; i++)
        mixed += beside_body(c, &c->parts[i]);
    if (!mixed)
        return put_alternative(b);
    char boundary[64];
    int rc = open_multipart(b, "mixed", boundary);
    rc = rc ? rc : put_delimiter(b, boundary, true);
    rc = rc ? rc : put_alternative(b);
    for (size_t i = 0; !rc && i < c->nparts; i++)
        if (beside_body(c, &c->parts[i]) && !(rc = put_delimiter(b, boundary, false)))
            rc = put_part(b, &c->parts[i]);
    return rc ? rc : close_multipart(b, boundary);
}

/* ---- The reader ---- */

int email__mime_reader_new(const email_message_t *message, mime_reader_t **reader, char *err,
                    size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    mime_reader_t *r = calloc(1, sizeof *r);
    if (!r) {
        if (err && errlen)
            email__strlcpy(err, "Message: out of memory", errlen);
        return EMAIL_ENOMEM;
    }
    r->fd = -1;
    builder_t b = {{&r->mem, email__message_content(message), err, errlen}, r, 0, "", 0};
    int rc = make_seed(&b);
    rc = rc ? rc : email__mime_put_message_headers(&b.o);
    rc = rc ? rc : put_body(&b);
    rc = rc ? rc : close_memory(&b);
    if (rc) {
        if (err && errlen && !err[0])
            email__strlcpy(err, "Message: out of memory", errlen);
        email__mime_reader_free(r);
        return rc;
    }
    for (size_t i = 0; i < r->nseg; i++)
        r->size += r->seg[i].path ? email__base64_lines_size(r->seg[i].raw_size) : r->seg[i].len;
    r->eightbit = !email__is_ascii(r->mem.data, r->mem.len);
    *reader = r;
    return 0;
}

uint64_t email__mime_reader_size(const mime_reader_t *reader)
{
    return reader->size;
}

bool email__mime_reader_8bit(const mime_reader_t *reader)
{
    return reader->eightbit;
}

/* Reads and encodes the next chunk of the current file segment; at its end checks that the file
   has not grown, closes it and moves to the next segment. */
static int file_failed(mime_reader_t *r, const segment_t *s, const char *what)
{
    snprintf(r->why, sizeof r->why, "attachment \"%.200s\": %s", s->path, what);
    return EMAIL_EIO;
}

static int refill(mime_reader_t *r, const segment_t *s)
{
    if (r->fd < 0) {
        if ((r->fd = open(s->path, O_RDONLY | O_CLOEXEC)) < 0)
            return file_failed(r, s, strerror(errno));
        r->raw_left = s->raw_size;
    }
    email__buf_reset(&r->chunk);
    r->chunk_off = 0;
    if (!r->raw_left) {
        char extra;
        ssize_t k;
        while ((k = read(r->fd, &extra, 1)) < 0 && errno == EINTR)
            ;
        int err = errno;
        close(r->fd);
        r->fd = -1;
        if (k > 0)
            return file_failed(r, s, "the file grew after the message was made");
        if (k < 0)
            return file_failed(r, s, strerror(err));
        r->cur++;
        return 0;
    }
    if (!r->raw && !(r->raw = malloc(FILE_CHUNK)))
        return EMAIL_ENOMEM;
    size_t want = r->raw_left < FILE_CHUNK ? (size_t)r->raw_left : FILE_CHUNK, have = 0;
    while (have < want) {
        ssize_t k = read(r->fd, r->raw + have, want - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return file_failed(r, s, strerror(errno));
        if (k == 0)
            return file_failed(r, s, "the file shrank after the message was made");
        have += (size_t)k;
    }
    r->raw_left -= want;
    return email__base64_encode_lines(&r->chunk, r->raw, want);
}

ssize_t email__mime_reader_read(mime_reader_t *r, char *buf, size_t n)
{
    if (r->error)
        return r->error;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    size_t got = 0;
    while (got < n && r->cur < r->nseg) {
        const segment_t *s = &r->seg[r->cur];
        const char *from;
        size_t avail;
        if (!s->path) {
            from = r->mem.data + s->start + r->off;
            avail = s->len - r->off;
        } else if (r->chunk_off < r->chunk.len) {
            from = r->chunk.data + r->chunk_off;
            avail = r->chunk.len - r->chunk_off;
        } else {
            int rc = refill(r, s);
            if (rc) {
                /* the bytes already copied are returned; the error comes with the next call */
                r->error = rc;
                return got ? (ssize_t)got : rc;
            }
            continue;
        }
        size_t k = avail < n - got ? avail : n - got;
        memcpy(buf + got, from, k);
        got += k;
        if (s->path) {
            r->chunk_off += k;
        } else if ((r->off += k) == s->len) {
            r->cur++;
            r->off = 0;
        }
    }
    return (ssize_t)got;
}

const char *email__mime_reader_error(const mime_reader_t *reader)
{
    return reader->why[0] ? reader->why : email_strerror(reader->error);
}

void email__mime_reader_free(mime_reader_t *reader)
{
    if (!reader)
        return;
    if (reader->fd >= 0)
        close(reader->fd);
    email__buf_free(&reader->mem);
    email__buf_free(&reader->chunk);
    free(reader->raw);
    free(reader->seg);
    free(reader);
}

/* ---- The whole message at once (email_message_to_mime) ---- */

/* Everything r produces, in a malloc'ed NUL-terminated buffer; ErrorInfo on failure. */
static int read_all(mime_reader_t *r, char **mime, size_t *length)
{
    uint64_t size = email__mime_reader_size(r);
    char *buf = size < SIZE_MAX ? malloc((size_t)size + 1) : NULL;
    if (!buf)
        return email__error_set(EMAIL_ENOMEM, "Message: out of memory");
    size_t got = 0;
    ssize_t k = 1;
    while (got < size && (k = email__mime_reader_read(r, buf + got, (size_t)size - got)) > 0)
        got += (size_t)k;
    if (got != size) {
        free(buf);
        return email__error_set(k < 0 ? (int)k : EMAIL_EIO,
                                "Attachment: a file could not be read or changed size");
    }
    buf[got] = '\0';
    *mime = buf;
    *length = got;
    return 0;
}

int email_message_to_mime(const email_message_t *message, char **mime, size_t *length)
{
    if (!mime)
        return email__error_set(EMAIL_EINVAL, "Message: no place for the result");
    email_message_t *frozen; /* Date and Message-ID fixed, as a send would */
    int rc = email__message_freeze_draft(message, &frozen);
    if (rc)
        return rc;
    mime_reader_t *r;
    char err[256];
    if ((rc = email__mime_reader_new(frozen, &r, err, sizeof err))) {
        email_message_free(frozen);
        return email__error_set(rc, "%s", err);
    }
    size_t got = 0;
    rc = read_all(r, mime, &got);
    email__mime_reader_free(r);
    email_message_free(frozen);
    if (rc)
        return rc;
    if (length)
        *length = got;
    email__error_clear();
    return 0;
}
