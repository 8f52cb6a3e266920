/*
 * The header fields of the MIME writer. Text that cannot go in a header as it is becomes RFC 2047
 * encoded words in the header mode's charset (ISO-2022-JP words each a complete unit ending in
 * ASCII; in the ISO-2022-JP mode a field ISO-2022-JP cannot hold goes in UTF-8 Q words as a
 * whole); display names keep their plain words; long or non-ASCII parameter values (file names)
 * use RFC 2231 in the same charset.
 */
#include "mime_headers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "emailsession.h"
#include "encode.h"
#include "idn.h"

#define LINE_HARD 998 /* RFC 5322 2.1.1: lines MUST stay within 998 octets */

int email__mime_fail(mime_out_t *o, int code, const char *fmt, ...)
{
    if (o->err && o->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->err, o->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

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
const char *email__mime_mode_charset(mail_mode_t mode)
{
    return mode == MAIL_MODE_ISO88591 ? "ISO-8859-1"
           : mode == MAIL_MODE_ISO2022JP ? "ISO-2022-JP"
                                         : "UTF-8";
}

int email__mime_text_charset(mime_out_t *o, mail_mode_t mode, const char *field, const char *utf8,
                      size_t n, const char **charset)
{
    *charset = email__mime_mode_charset(mode);
    if (mode != MAIL_MODE_ISO2022JP)
        return 0;
    int rc = email__charset_fits(*charset, utf8, n, NULL);
    if (rc == EMAIL_ECHARSET) {
        *charset = "UTF-8"; /* 4D's "US-ASCII_ISO-2022-JP_UTF8_QP": UTF-8 when all else fails */
        rc = 0;
    }
    return email__mime_charset_failure(o, rc, field, *charset);
}

/* The charset parameter of a text part: the same name in the lower case most mailers write. */
const char *email__mime_charset_label(const char *charset)
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
int email__mime_charset_failure(mime_out_t *o, int rc, const char *field, const char *charset)
{
    if (rc == EMAIL_ECHARSET)
        return email__mime_fail(o, rc, "%s cannot be written in %s", field, charset);
    if (rc == EMAIL_ENOTSUP)
        return email__mime_fail(o, rc, "%s: the system cannot convert text to %s", field, charset);
    return rc;
}

/* The charset of a header field's encoded words (email__mime_text_charset for the whole field). */
static int header_charset(mime_out_t *o, const char *field, const char *text, size_t n,
                          const char **charset)
{
    return email__mime_text_charset(o, o->c->header_mode, field, text, n, charset);
}

/* Encoded words in charset (header_charset): Q for ISO-8859-1 and for UTF-8 (the ISO-2022-JP
   mode's fallback too), B for UTF-8 in the base64 mode and for ISO-2022-JP (RFC 1468: its escape
   sequences would make Q words mostly "=1B"). */
static int put_encoded(mime_out_t *o, const char *field, const char *charset, size_t *col,
                       const char *text, size_t n)
{
    char encoding = o->c->header_mode == MAIL_MODE_UTF8_B64 || !strcmp(charset, "ISO-2022-JP")
                        ? 'B'
                        : 'Q';
    int rc = email__rfc2047_encode(o->m, col, text, n, charset, encoding);
    return email__mime_charset_failure(o, rc, field, charset);
}

/* Appends ASCII text folded before white space so that lines stay within 78 where possible. */
int email__mime_put_folded(email_buf_t *m, size_t *col, const char *s, size_t n)
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
        if (i > 0 && j > word && *col + (j - i) > MIME_LINE_SOFT) {
            if (email__buf_append(m, "\r\n", 2))
                return EMAIL_ENOMEM;
            *col = 0;
        }
        if (email__buf_append(m, s + i, j - i))
            return EMAIL_ENOMEM;
        *col += j - i;
        i = j;
    }
    return 0;
}

/* Subject and the caller's headers; field names the header in error texts. */
static int put_unstructured(mime_out_t *o, const char *field, const char *name, const char *value)
{
    size_t n = strlen(value), col = strlen(name) + 2;
    if (email__buf_printf(o->m, n ? "%s: " : "%s:", name))
        return EMAIL_ENOMEM;
    int rc = 0;
    if (n && needs_encoded_words(value, n)) {
        const char *charset;
        rc = header_charset(o, field, value, n, &charset);
        rc = rc ? rc : put_encoded(o, field, charset, &col, value, n);
    } else if (n) {
        rc = email__mime_put_folded(o->m, &col, value, n);
    }
    return rc ? rc : email__buf_append(o->m, "\r\n", 2);
}

static int put_quoted(email_buf_t *m, const char *s, size_t n)
{
    int rc = email__buf_putc(m, '"');
    for (size_t i = 0; !rc && i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc = email__buf_putc(m, '\\');
        rc = rc ? rc : email__buf_putc(m, s[i]);
    }
    return rc ? rc : email__buf_putc(m, '"');
}

/* Only atext (and spaces when a whole phrase is checked): needs no quotes. */
static bool atext_only(const char *s, size_t n, bool spaces)
{
    for (size_t i = 0; i < n; i++)
        if (!email__address_atext((unsigned char)s[i]) && !(spaces && s[i] == ' '))
            return false;
    return true;
}

/* A word of a display name that can stay as it is: an atom that fits on a line (a longer one is
   encoded, as encoded words fold) and does not look like an encoded word. */
static bool word_plain(const char *s, size_t n)
{
    return n <= MIME_LINE_SOFT - 2 && atext_only(s, n, false) && !needs_encoded_words(s, n);
}

/*
 * A run of encoded words in a display name. Decoders must drop the white space between two encoded
 * words, but some keep it inside a phrase (Python's email package does): a run that fits in one
 * word on a line of its own goes there, the space before it becoming the fold, rather than being
 * cut at the end of this line.
 */
static int put_run(mime_out_t *o, const char *field, const char *charset, size_t *col,
                   const char *s, size_t n)
{
    email_buf_t *m = o->m;
    size_t start = m->len, end_col = *col;
    int rc = put_encoded(o, field, charset, &end_col, s, n);
    bool cut = !rc && memchr(m->data + start, '\n', m->len - start);
    if (!cut || *col <= 1 || !start || m->data[start - 1] != ' ') {
        *col = end_col;
        return rc;
    }
    email_buf_t alone;
    email__buf_init(&alone);
    mime_out_t fresh = *o;
    fresh.m = &alone;
    size_t alone_col = 1;
    rc = put_encoded(&fresh, field, charset, &alone_col, s, n);
    if (!rc && !memchr(alone.data, '\n', alone.len)) {
        m->len = start - 1;
        rc = email__buf_append(m, "\r\n ", 3);
        rc = rc ? rc : email__buf_append(m, alone.data, alone.len);
        end_col = alone_col;
    }
    email__buf_free(&alone);
    *col = end_col;
    return rc;
}

/*
 * A display name that needs encoded words: its plain words stay plain and each run of other words
 * becomes encoded words, the spaces inside a run encoded with it. Spaces between an encoded word
 * and a plain one are then ordinary white space, which every decoder keeps (some wrongly keep the
 * space between two encoded words too, so runs are not cut at their spaces). The charset is chosen
 * for the whole name, so that all its runs are in the same one.
 */
static int put_encoded_phrase(mime_out_t *o, const char *field, size_t *col, const char *name)
{
    size_t n = strlen(name), i = 0;
    const char *charset;
    bool first = true;
    int rc = header_charset(o, field, name, n, &charset);
    while (!rc && i < n) {
        size_t j = i;
        while (j < n && name[j] != ' ')
            j++;
        if (j == i) {
            /* a run of spaces between plain words is one separator (white space there is
             * folding white space); writing each would allow a line of white space only */
            i = j + 1;
            continue;
        }
        bool plain = word_plain(name + i, j - i);
        /* extend an encoded run over the next words that are not plain either, and over the
         * empty ones between two spaces: decoders drop the white space between two encoded
         * words, so the spaces must stay inside the run */
        while (!plain && j < n) {
            size_t k = j + 1;
            while (k < n && name[k] != ' ')
                k++;
            if (k > j + 1 && word_plain(name + j + 1, k - j - 1))
                break;
            j = k;
        }
        if (!first) {
            /* an encoded word needs some room: fold before it rather than inside it */
            bool fold = *col + 1 + (plain ? j - i : 20) > MIME_LINE_SOFT;
            rc = email__buf_puts(o->m, fold ? "\r\n " : " ");
            *col = fold ? 1 : *col + 1;
        }
        if (!rc && plain) {
            rc = email__buf_append(o->m, name + i, j - i);
            *col += j - i;
        } else if (!rc) {
            rc = put_run(o, field, charset, col, name + i, j - i);
        }
        first = false;
        i = j + 1;
    }
    return rc;
}

/* A mailbox: the display name (if any), then the address addr. */
static int put_mailbox_as(mime_out_t *o, const char *field, size_t *col, const address_t *a,
                          const char *addr)
{
    email_buf_t *m = o->m;
    size_t alen = strlen(addr);
    if (!a->name) {
        *col += alen;
        return email__buf_append(m, addr, alen);
    }
    size_t n = strlen(a->name);
    int rc = 0;
    /* a long name goes in encoded words too: they fold, a quoted string cannot */
    if (needs_encoded_words(a->name, n) || n > 200) {
        rc = put_encoded_phrase(o, field, col, a->name);
    } else if (atext_only(a->name, n, true)) {
        rc = email__buf_append(m, a->name, n);
        *col += n;
    } else {
        size_t before = m->len;
        rc = put_quoted(m, a->name, n);
        *col += m->len - before;
    }
    if (rc)
        return rc;
    bool fold = *col + alen + 3 > MIME_LINE_SOFT;
    *col = fold ? alen + 2 : *col + alen + 3;
    return email__buf_printf(m, "%s<%s>", fold ? "\r\n " : " ", addr);
}

/* UTF-8 addresses (RFC 6532) only in a message that needs SMTPUTF8 anyway (a local part is not
   ASCII); in any other a UTF-8 domain goes as its A-label, so the header stays ASCII. */
static int put_mailbox(mime_out_t *o, const char *field, size_t *col, const address_t *a)
{
    char *ace = NULL;
    if (email__idn_domain_utf8(a->addr) && !email__message_utf8_address(o->c)) {
        char why[300];
        int rc = email__idn_addr_ascii(a->addr, &ace, why, sizeof why);
        if (rc)
            return rc == EMAIL_EINVAL ? email__mime_fail(o, rc, "%s: %s", field, why) : rc;
    }
    int rc = put_mailbox_as(o, field, col, a, ace ? ace : a->addr);
    free(ace);
    return rc;
}

static int put_addresses(mime_out_t *o, const char *name, const address_list_t *l)
{
    email_buf_t *m = o->m;
    if (!l->n)
        return 0;
    size_t col = strlen(name) + 1;
    int rc = email__buf_printf(m, "%s:", name);
    for (size_t i = 0; !rc && i < l->n; i++) {
        if (i && (rc = email__buf_putc(m, ',')))
            break;
        size_t mark = m->len, mark_col = col + (i ? 1 : 0);
        col = mark_col + 1;
        if (!(rc = email__buf_putc(m, ' ')))
            rc = put_mailbox(o, name, &col, &l->v[i]);
        /* a mailbox that does not fit on the line starts the next one */
        if (!rc && i && (col > MIME_LINE_SOFT || memchr(m->data + mark, '\n', m->len - mark))) {
            m->len = mark;
            m->data[mark] = '\0';
            col = 1;
            if (!(rc = email__buf_append(m, "\r\n ", 3)))
                rc = put_mailbox(o, name, &col, &l->v[i]);
        }
    }
    return rc ? rc : email__buf_append(m, "\r\n", 2);
}

int email__mime_put_message_headers(mime_out_t *o)
{
    const message_content_t *c = o->c;
    email_buf_t *m = o->m;
    static const char *const priorities[] = {NULL, "1 (Highest)", "2 (High)", NULL, "4 (Low)",
                                             "5 (Lowest)"};
    int rc = c->date ? email__buf_printf(m, "Date: %s\r\n", c->date) : 0;
    rc = rc ? rc : put_addresses(o, "From", &c->from);
    rc = rc ? rc : put_addresses(o, "Sender", &c->sender);
    rc = rc ? rc : put_addresses(o, "Reply-To", &c->reply_to);
    rc = rc ? rc : put_addresses(o, "To", &c->to);
    rc = rc ? rc : put_addresses(o, "Cc", &c->cc);
    if (!rc && c->subject)
        rc = put_unstructured(o, "Subject", "Subject", c->subject);
    if (!rc && c->message_id)
        rc = email__buf_printf(m, "Message-ID: %s\r\n", c->message_id);
    rc = rc ? rc : email__buf_puts(m, "MIME-Version: 1.0\r\n");
    if (!rc && c->priority > 0 && c->priority < 6 && priorities[c->priority])
        rc = email__buf_printf(m, "X-Priority: %s\r\nImportance: %s\r\n", priorities[c->priority],
                              c->priority < 3 ? "high" : "low");
    if (!rc && c->notification)
        rc = put_addresses(o, "Disposition-Notification-To", &c->from);
    for (size_t i = 0; !rc && i < c->nheaders; i++) {
        char field[100];
        snprintf(field, sizeof field, "Header \"%s\"", c->headers[i].name);
        rc = put_unstructured(o, field, c->headers[i].name, c->headers[i].value);
    }
    return rc;
}

/* RFC 2231 attribute-char: what a parameter value may hold unencoded. */
static bool attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$&+-.^_`|~", c));
}

static size_t pct_width(const email_buf_t *v)
{
    size_t w = 0;
    for (size_t i = 0; i < v->len; i++)
        w += attr_char((unsigned char)v->data[i]) ? 1 : 3;
    return w;
}

static int put_pct(email_buf_t *m, const email_buf_t *v)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < v->len; i++) {
        unsigned char c = (unsigned char)v->data[i];
        rc = attr_char(c) ? email__buf_putc(m, (char)c) : email__buf_printf(m, "%%%02X", c);
    }
    return rc;
}

#define PARAM_WIDTH 48 /* percent-encoded characters per section: lines stay within 78 */

/*
 * RFC 2231 sections of value (UTF-8) in charset: the longest runs of whole characters whose
 * percent-encoding fits PARAM_WIDTH, each converted on its own so that a decoder reading the
 * sections one by one (Python does) sees complete characters, ISO-2022-JP back in ASCII.
 */
static int put_sections(email_buf_t *m, charset_conv_t *conv, const char *attr,
                        const char *label, const char *value)
{
    size_t n = strlen(value);
    email_buf_t run, next;
    email__buf_init(&run);
    email__buf_init(&next);
    int rc = email__charset_convert(conv, &run, value, n, NULL);
    if (!rc && pct_width(&run) <= PARAM_WIDTH) {
        rc = email__buf_printf(m, ";\r\n %s*=%s''", attr, label);
        rc = rc ? rc : put_pct(m, &run);
        n = 0;
    }
    for (size_t i = 0, section = 0; !rc && i < n; section++) {
        size_t j = i;
        email__buf_reset(&run);
        while (!rc && j < n) {
            size_t k = 1;
            while (j + k < n && ((unsigned char)value[j + k] & 0xC0) == 0x80)
                k++;
            email__buf_reset(&next);
            if ((rc = email__charset_convert(conv, &next, value + i, j + k - i, NULL)))
                break;
            if (j > i && pct_width(&next) > PARAM_WIDTH)
                break;
            email_buf_t swap = run;
            run = next;
            next = swap;
            j += k;
        }
        if (!rc)
            rc = email__buf_printf(m, ";\r\n %s*%zu*=%s%s", attr, section, section ? "" : label,
                                  section ? "" : "''");
        rc = rc ? rc : put_pct(m, &run);
        i = j;
    }
    email__buf_free(&run);
    email__buf_free(&next);
    return rc;
}

/*
 * ";" CRLF " attr=value": a quoted string when short printable ASCII, else RFC 2231 sections in
 * US-ASCII when the value allows, else in the charset the header mode gives it (ISO-2022-JP mode:
 * UTF-8 when ISO-2022-JP cannot hold it).
 */
int email__mime_put_param(mime_out_t *o, const char *field, const char *attr, const char *value)
{
    size_t n = strlen(value);
    bool printable = true;
    for (size_t i = 0; i < n; i++)
        printable = printable && value[i] >= ' ' && value[i] < 0x7F;
    if (printable && n <= PARAM_WIDTH) {
        int rc = email__buf_printf(o->m, ";\r\n %s=", attr);
        return rc ? rc : put_quoted(o->m, value, n);
    }
    bool ascii = email__is_ascii(value, n);
    const char *charset = "UTF-8";
    int rc = ascii ? 0 : email__mime_text_charset(o, o->c->header_mode, field, value, n, &charset);
    if (rc)
        return rc;
    charset_conv_t conv;
    rc = email__charset_open(&conv, charset);
    if (!rc) {
        const char *label = email__mime_charset_label(ascii ? "US-ASCII" : charset);
        rc = put_sections(o->m, &conv, attr, label, value);
        email__charset_close(&conv);
    }
    return email__mime_charset_failure(o, rc, field, charset);
}

