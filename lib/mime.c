/*
 * Message → RFC 5322 / MIME bytes. Everything the message holds in memory is rendered when the
 * reader is made; attachment files are read and base64-encoded chunk by chunk as bytes are pulled,
 * their encoded size being known from their size beforehand.
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
#include "message.h"
#include "util.h"

#define LINE_SOFT 78          /* RFC 5322 2.1.1: lines SHOULD stay within 78 characters */
#define LINE_HARD 998         /* ... and MUST stay within 998 */
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
    unsigned char raw[FILE_CHUNK];
};

/* State while the reader is being made. */
typedef struct builder {
    mime_reader_t *r;
    email_buf_t *m;  /* &r->mem */
    const message_content_t *c;
    size_t seg_start;  /* where the memory segment being written starts */
    char seed[33];     /* boundaries are "=_" seed "." counter */
    unsigned boundaries;
    char *err;
    size_t errlen;
} builder_t;

static int fail(builder_t *b, int code, const char *fmt, ...) EMAIL_PRINTF(3, 4);
static int fail(builder_t *b, int code, const char *fmt, ...)
{
    if (b->err && b->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err, b->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

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
    b->seg_start = b->m->len;
    return b->m->len > start ? add_segment(b->r, (segment_t){start, b->m->len - start, NULL, 0})
                             : 0;
}

static int add_file(builder_t *b, const message_part_t *p)
{
    uint64_t size;
    int e = email_file_size(p->path, &size);
    if (e)
        return fail(b, EMAIL_EIO, "Attachment \"%.100s\": %s", p->path, strerror(e));
    int rc = close_memory(b);
    return rc ? rc : add_segment(b->r, (segment_t){0, 0, p->path, size});
}

/* ---- Header fields ---- */

/* Text that cannot go in a header as it is: not ASCII, control characters, something a reader
   would take for an encoded word, or a word too long for a line. */
static bool needs_encoded_words(const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x7F || (c < ' ' && c != '\t') || (c == '=' && i + 1 < n && s[i + 1] == '?'))
            return true;
        run = is_wsp(s[i]) ? 0 : run + 1;
        if (run > LINE_HARD - 100)  /* room for the longest header name before it */
            return true;
    }
    return false;
}

/* The charset a mode writes text in where US-ASCII is not enough (as encoded words name it). */
static const char *mode_charset(mail_mode_t mode)
{
    return mode == MAIL_MODE_ISO88591 ? "ISO-8859-1"
           : mode == MAIL_MODE_ISO2022JP ? "ISO-2022-JP"
                                         : "UTF-8";
}

/* The charset parameter of a text part: the same name in the lower case most mailers write. */
static const char *charset_label(const char *charset)
{
    static const char *const names[][2] = {{"US-ASCII", "us-ascii"},
                                           {"UTF-8", "utf-8"},
                                           {"ISO-8859-1", "iso-8859-1"},
                                           {"ISO-2022-JP", "iso-2022-jp"}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(charset, names[i][0]))
            return names[i][1];
    return charset;
}

/* The text of a conversion failure, naming the field. */
static int charset_failure(builder_t *b, int rc, const char *field, const char *charset)
{
    if (rc == EMAIL_ECHARSET)
        return fail(b, rc, "%s cannot be written in %s", field, charset);
    if (rc == EMAIL_ENOTSUP)
        return fail(b, rc, "%s: the system cannot convert text to %s", field, charset);
    return rc;
}

/* Encoded words in the header mode's charset: Q for the Latin ones, B for UTF-8 in base64 and for
   ISO-2022-JP (RFC 1468: its escape sequences would make Q words mostly "=1B"). */
static int put_encoded(builder_t *b, const char *field, size_t *col, const char *text, size_t n)
{
    mail_mode_t mode = b->c->header_mode;
    const char *charset = mode_charset(mode);
    char encoding = mode == MAIL_MODE_UTF8_B64 || mode == MAIL_MODE_ISO2022JP ? 'B' : 'Q';
    return charset_failure(b, email_rfc2047_encode(b->m, col, text, n, charset, encoding), field,
                           charset);
}

/* Appends ASCII text folded before white space so that lines stay within 78 where possible. */
static int put_folded(email_buf_t *m, size_t *col, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && is_wsp(s[j]))
            j++;
        size_t word = j;
        while (j < n && !is_wsp(s[j]))
            j++;
        /* a fold goes before white space followed by a word: no line may be only white space */
        if (i > 0 && j > word && *col + (j - i) > LINE_SOFT) {
            if (email_buf_append(m, "\r\n", 2))
                return EMAIL_ENOMEM;
            *col = 0;
        }
        if (email_buf_append(m, s + i, j - i))
            return EMAIL_ENOMEM;
        *col += j - i;
        i = j;
    }
    return 0;
}

/* Subject and the caller's headers; field names the header in error texts. */
static int put_unstructured(builder_t *b, const char *field, const char *name, const char *value)
{
    size_t n = strlen(value), col = strlen(name) + 2;
    if (email_buf_printf(b->m, n ? "%s: " : "%s:", name))
        return EMAIL_ENOMEM;
    int rc = !n                               ? 0
             : needs_encoded_words(value, n) ? put_encoded(b, field, &col, value, n)
                                             : put_folded(b->m, &col, value, n);
    return rc ? rc : email_buf_append(b->m, "\r\n", 2);
}

static int put_quoted(email_buf_t *m, const char *s, size_t n)
{
    int rc = email_buf_putc(m, '"');
    for (size_t i = 0; !rc && i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc = email_buf_putc(m, '\\');
        rc = rc ? rc : email_buf_putc(m, s[i]);
    }
    return rc ? rc : email_buf_putc(m, '"');
}

/* Only atext (and spaces when a whole phrase is checked): needs no quotes. */
static bool atext_only(const char *s, size_t n, bool spaces)
{
    for (size_t i = 0; i < n; i++)
        if (!address_atext((unsigned char)s[i]) && !(spaces && s[i] == ' '))
            return false;
    return true;
}

/* A word of a display name that can stay as it is: an atom that fits on a line (a longer one is
   encoded, as encoded words fold) and does not look like an encoded word. */
static bool word_plain(const char *s, size_t n)
{
    return n <= LINE_SOFT - 2 && atext_only(s, n, false) && !needs_encoded_words(s, n);
}

/*
 * A display name that needs encoded words: its plain words stay plain and each run of other words
 * becomes encoded words, the spaces inside a run encoded with it. Spaces between an encoded word
 * and a plain one are then ordinary white space, which every decoder keeps (some wrongly keep the
 * space between two encoded words too, so runs are not cut at their spaces).
 */
static int put_encoded_phrase(builder_t *b, const char *field, size_t *col, const char *name)
{
    size_t n = strlen(name), i = 0;
    int rc = 0;
    while (!rc && i < n) {
        size_t j = i;
        while (j < n && name[j] != ' ')
            j++;
        bool plain = word_plain(name + i, j - i);
        /* extend an encoded run over the next words that are not plain either */
        while (!plain && j < n) {
            size_t k = j + 1;
            while (k < n && name[k] != ' ')
                k++;
            if (word_plain(name + j + 1, k - j - 1))
                break;
            j = k;
        }
        if (i) {
            /* an encoded word needs some room: fold before it rather than inside it */
            bool fold = *col + 1 + (plain ? j - i : 20) > LINE_SOFT;
            rc = email_buf_puts(b->m, fold ? "\r\n " : " ");
            *col = fold ? 1 : *col + 1;
        }
        if (!rc && plain) {
            rc = email_buf_append(b->m, name + i, j - i);
            *col += j - i;
        } else if (!rc) {
            rc = put_encoded(b, field, col, name + i, j - i);
        }
        i = j + 1;
    }
    return rc;
}

static int put_mailbox(builder_t *b, const char *field, size_t *col, const address_t *a)
{
    email_buf_t *m = b->m;
    size_t alen = strlen(a->addr);
    if (!a->name) {
        *col += alen;
        return email_buf_append(m, a->addr, alen);
    }
    size_t n = strlen(a->name);
    int rc = 0;
    /* a long name goes in encoded words too: they fold, a quoted string cannot */
    if (needs_encoded_words(a->name, n) || n > 200) {
        rc = put_encoded_phrase(b, field, col, a->name);
    } else if (atext_only(a->name, n, true)) {
        rc = email_buf_append(m, a->name, n);
        *col += n;
    } else {
        size_t before = m->len;
        rc = put_quoted(m, a->name, n);
        *col += m->len - before;
    }
    if (rc)
        return rc;
    bool fold = *col + alen + 3 > LINE_SOFT;
    *col = fold ? alen + 2 : *col + alen + 3;
    return email_buf_printf(m, "%s<%s>", fold ? "\r\n " : " ", a->addr);
}

static int put_addresses(builder_t *b, const char *name, const address_list_t *l)
{
    email_buf_t *m = b->m;
    if (!l->n)
        return 0;
    size_t col = strlen(name) + 1;
    int rc = email_buf_printf(m, "%s:", name);
    for (size_t i = 0; !rc && i < l->n; i++) {
        if (i && (rc = email_buf_putc(m, ',')))
            break;
        size_t mark = m->len, mark_col = col + (i ? 1 : 0);
        col = mark_col + 1;
        if (!(rc = email_buf_putc(m, ' ')))
            rc = put_mailbox(b, name, &col, &l->v[i]);
        /* a mailbox that does not fit on the line starts the next one */
        if (!rc && i && (col > LINE_SOFT || memchr(m->data + mark, '\n', m->len - mark))) {
            m->len = mark;
            m->data[mark] = '\0';
            col = 1;
            if (!(rc = email_buf_append(m, "\r\n ", 3)))
                rc = put_mailbox(b, name, &col, &l->v[i]);
        }
    }
    return rc ? rc : email_buf_append(m, "\r\n", 2);
}

static int put_message_headers(builder_t *b)
{
    const message_content_t *c = b->c;
    email_buf_t *m = b->m;
    static const char *const priorities[] = {NULL, "1 (Highest)", "2 (High)", NULL, "4 (Low)",
                                             "5 (Lowest)"};
    int rc = c->date ? email_buf_printf(m, "Date: %s\r\n", c->date) : 0;
    rc = rc ? rc : put_addresses(b, "From", &c->from);
    rc = rc ? rc : put_addresses(b, "Sender", &c->sender);
    rc = rc ? rc : put_addresses(b, "Reply-To", &c->reply_to);
    rc = rc ? rc : put_addresses(b, "To", &c->to);
    rc = rc ? rc : put_addresses(b, "Cc", &c->cc);
    if (!rc && c->subject)
        rc = put_unstructured(b, "Subject", "Subject", c->subject);
    if (!rc && c->message_id)
        rc = email_buf_printf(m, "Message-ID: %s\r\n", c->message_id);
    rc = rc ? rc : email_buf_puts(m, "MIME-Version: 1.0\r\n");
    if (!rc && c->priority > 0 && c->priority < 6 && priorities[c->priority])
        rc = email_buf_printf(m, "X-Priority: %s\r\nImportance: %s\r\n", priorities[c->priority],
                              c->priority < 3 ? "high" : "low");
    if (!rc && c->notification)
        rc = put_addresses(b, "Disposition-Notification-To", &c->from);
    for (size_t i = 0; !rc && i < c->nheaders; i++) {
        char field[100];
        snprintf(field, sizeof field, "Header \"%s\"", c->headers[i].name);
        rc = put_unstructured(b, field, c->headers[i].name, c->headers[i].value);
    }
    return rc;
}

/* RFC 2231 attribute-char: what a parameter value may hold unencoded. */
static bool attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c));
}

/*
 * ";" CRLF " attr=value": a quoted string when short printable ASCII, else RFC 2231 percent-encoded
 * UTF-8, in continuation sections of about 48 characters that never split a character.
 */
static int put_param(email_buf_t *m, const char *attr, const char *value)
{
    size_t n = strlen(value), width = 0;
    bool printable = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        printable = printable && c >= ' ' && c < 0x7F;
        width += attr_char(c) ? 1 : 3;
    }
    int rc = 0;
    if (printable && n <= 48) {
        rc = email_buf_printf(m, ";\r\n %s=", attr);
        return rc ? rc : put_quoted(m, value, n);
    }
    if (width <= 48)
        rc = email_buf_printf(m, ";\r\n %s*=utf-8''", attr);
    size_t w = 0;
    for (size_t i = 0, section = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        bool starts_char = (c & 0xC0) != 0x80;
        if (width > 48 && (i == 0 || (starts_char && w >= 48))) {
            rc = email_buf_printf(m, ";\r\n %s*%zu*=%s", attr, section, section ? "" : "utf-8''");
            section++;
            w = 0;
        }
        if (rc || (rc = attr_char(c) ? email_buf_putc(m, (char)c)
                                     : email_buf_printf(m, "%%%02X", c)))
            return rc;
        w += attr_char(c) ? 1 : 3;
    }
    return rc;
}

/* ---- Parts ---- */

/*
 * Text as text/<subtype>: CRLF line endings, ending with one. US-ASCII when the text is ASCII,
 * else the body mode's charset: UTF-8 quoted-printable (or base64 in the B64 mode), ISO-8859-1
 * quoted-printable, ISO-2022-JP 7bit (it is a 7-bit encoding). 7bit whenever the octets are ASCII
 * in lines of at most 998, quoted-printable when a line is longer.
 */
static int put_text(builder_t *b, const char *subtype, const char *text, const char *field)
{
    email_buf_t t, converted;
    email_buf_init(&t);
    email_buf_init(&converted);
    email_crlf_t crlf;
    email_crlf_init(&crlf);
    size_t n = text ? strlen(text) : 0;
    int rc = email_crlf_feed(&crlf, &t, text ? text : "", n);
    if (!rc && t.len && t.data[t.len - 1] != '\n')
        rc = email_buf_append(&t, "\r\n", 2);
    mail_mode_t mode = b->c->body_mode;
    bool ascii = email_is_ascii(t.data, t.len);
    const char *charset = ascii ? "US-ASCII" : mode_charset(mode);
    if (!rc && !ascii && (mode == MAIL_MODE_ISO88591 || mode == MAIL_MODE_ISO2022JP)) {
        rc = charset_from_utf8(charset, &converted, t.data, t.len, NULL);
        rc = charset_failure(b, rc, field, charset);
        email_buf_t swap = t;
        t = converted;
        converted = swap;
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
    if (email_is_ascii(t.data, t.len) && !long_line)
        cte = SEVEN_BIT;
    else if (!ascii && mode == MAIL_MODE_UTF8_B64)
        cte = BASE64;
    if (!rc)
        rc = email_buf_printf(b->m,
                              "Content-Type: text/%s; charset=%s\r\n"
                              "Content-Transfer-Encoding: %s\r\n\r\n",
                              subtype, charset_label(charset), cte_names[cte]);
    if (!rc)
        rc = cte == SEVEN_BIT ? email_buf_append(b->m, t.data, t.len)
             : cte == BASE64  ? email_base64_encode_lines(b->m, t.data, t.len)
                              : email_qp_encode(b->m, t.data, t.len);
    email_buf_free(&t);
    email_buf_free(&converted);
    return rc;
}

/* An attachment or inline part, always base64. */
static int put_part(builder_t *b, const message_part_t *p)
{
    email_buf_t *m = b->m;
    bool is_inline = p->kind == MESSAGE_INLINE;
    size_t col = 14;
    int rc = email_buf_puts(m, "Content-Type: ");
    rc = rc ? rc : put_folded(m, &col, p->content_type, strlen(p->content_type));
    if (!rc && p->name)
        rc = put_param(m, "name", p->name);
    if (!rc)
        rc = email_buf_printf(m, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s",
                              is_inline ? "inline" : "attachment");
    if (!rc && p->name)
        rc = put_param(m, "filename", p->name);
    rc = rc ? rc : email_buf_append(m, "\r\n", 2);
    if (!rc && p->content_id)
        rc = email_buf_printf(m, "Content-ID: <%s>\r\n", p->content_id);
    rc = rc ? rc : email_buf_append(m, "\r\n", 2);
    if (rc)
        return rc;
    return p->path ? add_file(b, p) : email_base64_encode_lines(m, p->data, p->length);
}

/* Random enough that no content holds "--" + boundary: taken from the Message-ID's random part, so
   a retry of a frozen message sends the same bytes; fresh random bytes without one. */
static int make_seed(builder_t *b)
{
    size_t n = 0;
    for (const char *p = b->c->message_id; p && *p && *p != '@' && n < 32; p++)
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            b->seed[n++] = *p;
    if (n < 16) {
        unsigned char rnd[12];
        if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
            return fail(b, EMAIL_EIO, "Message: no random numbers available");
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
    return email_buf_printf(b->m, "Content-Type: multipart/%s;\r\n boundary=\"%s\"\r\n\r\n", type,
                            boundary);
}

/* The delimiter before a body part; the CRLF before "--" belongs to it (RFC 2046 5.1.1). */
static int put_delimiter(builder_t *b, const char *boundary, bool first)
{
    return email_buf_printf(b->m, "%s--%s\r\n", first ? "" : "\r\n", boundary);
}

static int close_multipart(builder_t *b, const char *boundary)
{
    return email_buf_printf(b->m, "\r\n--%s--\r\n", boundary);
}

/* The HTML body, with its inline parts in multipart/related when it has some. */
static int put_related(builder_t *b)
{
    const message_content_t *c = b->c;
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
    const message_content_t *c = b->c;
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
    const message_content_t *c = b->c;
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

int mime_reader_new(const email_message_t *message, mime_reader_t **reader, char *err,
                    size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    mime_reader_t *r = calloc(1, sizeof *r);
    if (!r) {
        if (err && errlen)
            email_strlcpy(err, "Message: out of memory", errlen);
        return EMAIL_ENOMEM;
    }
    r->fd = -1;
    builder_t b = {r, &r->mem, message_content(message), 0, "", 0, err, errlen};
    int rc = make_seed(&b);
    rc = rc ? rc : put_message_headers(&b);
    rc = rc ? rc : put_body(&b);
    rc = rc ? rc : close_memory(&b);
    if (rc) {
        if (err && errlen && !err[0])
            email_strlcpy(err, "Message: out of memory", errlen);
        mime_reader_free(r);
        return rc;
    }
    for (size_t i = 0; i < r->nseg; i++)
        r->size += r->seg[i].path ? email_base64_lines_size(r->seg[i].raw_size) : r->seg[i].len;
    r->eightbit = !email_is_ascii(r->mem.data, r->mem.len);
    *reader = r;
    return 0;
}

uint64_t mime_reader_size(const mime_reader_t *reader)
{
    return reader->size;
}

bool mime_reader_8bit(const mime_reader_t *reader)
{
    return reader->eightbit;
}

/* Reads and encodes the next chunk of the current file segment; at its end checks that the file
   has not grown, closes it and moves to the next segment. */
static int refill(mime_reader_t *r, const segment_t *s)
{
    if (r->fd < 0) {
        if ((r->fd = open(s->path, O_RDONLY | O_CLOEXEC)) < 0)
            return EMAIL_EIO;
        r->raw_left = s->raw_size;
    }
    email_buf_reset(&r->chunk);
    r->chunk_off = 0;
    if (!r->raw_left) {
        char extra;
        ssize_t k;
        while ((k = read(r->fd, &extra, 1)) < 0 && errno == EINTR)
            ;
        close(r->fd);
        r->fd = -1;
        if (k)
            return EMAIL_EIO;
        r->cur++;
        return 0;
    }
    size_t want = r->raw_left < FILE_CHUNK ? (size_t)r->raw_left : FILE_CHUNK, have = 0;
    while (have < want) {
        ssize_t k = read(r->fd, r->raw + have, want - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return EMAIL_EIO; /* a read error, or the file shrank */
        have += (size_t)k;
    }
    r->raw_left -= want;
    return email_base64_encode_lines(&r->chunk, r->raw, want);
}

ssize_t mime_reader_read(mime_reader_t *r, char *buf, size_t n)
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

void mime_reader_free(mime_reader_t *reader)
{
    if (!reader)
        return;
    if (reader->fd >= 0)
        close(reader->fd);
    email_buf_free(&reader->mem);
    email_buf_free(&reader->chunk);
    free(reader->seg);
    free(reader);
}
