/* Encoders: base64, quoted-printable, RFC 2047 encoded words, SMTP dot-stuffing. No I/O. */
#include "encode.h"

#include <string.h>

#include "charset.h"
#include "emailsession.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char hex_digits[] = "0123456789ABCDEF";

/* Writes the base64 of in[0..n) at dst (which has room for 4 * ceil(n / 3)); returns the end. */
static char *base64_put(char *dst, const unsigned char *in, size_t n)
{
    for (; n >= 3; n -= 3, in += 3) {
        *dst++ = b64_alphabet[in[0] >> 2];
        *dst++ = b64_alphabet[((in[0] & 3) << 4) | (in[1] >> 4)];
        *dst++ = b64_alphabet[((in[1] & 15) << 2) | (in[2] >> 6)];
        *dst++ = b64_alphabet[in[2] & 63];
    }
    if (n) {
        unsigned b1 = n == 2 ? in[1] : 0;
        *dst++ = b64_alphabet[in[0] >> 2];
        *dst++ = b64_alphabet[((in[0] & 3) << 4) | (b1 >> 4)];
        *dst++ = n == 2 ? b64_alphabet[(b1 & 15) << 2] : '=';
        *dst++ = '=';
    }
    return dst;
}

int email__base64_encode(email_buf_t *out, const void *data, size_t n)
{
    if (n > (SIZE_MAX - 3) / 4 * 3)
        return EMAIL_ENOMEM;
    size_t len = (n + 2) / 3 * 4;
    if (email__buf_reserve(out, len))
        return EMAIL_ENOMEM;
    base64_put(out->data + out->len, data, n);
    out->len += len;
    out->data[out->len] = '\0';
    return 0;
}

int email__b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int email__base64_decode(email_buf_t *out, const char *b64, size_t n)
{
    if (n % 4)
        return EMAIL_EINVAL;
    if (email__buf_reserve(out, n / 4 * 3))
        return EMAIL_ENOMEM;
    unsigned char *dst = (unsigned char *)out->data + out->len;
    for (size_t i = 0; i < n; i += 4) {
        const unsigned char *q = (const unsigned char *)b64 + i;
        /* padding only in the last quantum, "x=" never before "xx" */
        size_t pad = q[3] == '=' ? (q[2] == '=' ? 2 : 1) : 0;
        if (pad && i + 4 != n)
            goto bad;
        int v[4] = {0, 0, 0, 0};
        for (size_t k = 0; k < 4 - pad; k++)
            if ((v[k] = email__b64_value(q[k])) < 0)
                goto bad;
        *dst++ = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            *dst++ = (unsigned char)(v[1] << 4 | v[2] >> 2);
        if (pad < 1)
            *dst++ = (unsigned char)(v[2] << 6 | v[3]);
    }
    out->len = (size_t)((char *)dst - out->data);
    out->data[out->len] = '\0';
    return 0;
bad:
    /* bytes were written past len: terminate again where the buffer really ends */
    out->data[out->len] = '\0';
    return EMAIL_EINVAL;
}

uint64_t email__base64_lines_size(uint64_t n)
{
    return (n + 2) / 3 * 4 + (n + 56) / 57 * 2;
}

int email__base64_encode_lines(email_buf_t *out, const void *data, size_t n)
{
    uint64_t len = email__base64_lines_size(n);
    if (len >= SIZE_MAX || email__buf_reserve(out, (size_t)len))
        return EMAIL_ENOMEM;
    const unsigned char *in = data;
    char *dst = out->data + out->len;
    /* 57 input bytes make one 76-character line */
    for (size_t i = 0; i < n; i += 57) {
        dst = base64_put(dst, in + i, n - i < 57 ? n - i : 57);
        *dst++ = '\r';
        *dst++ = '\n';
    }
    out->len += (size_t)len;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- Line endings and dot-stuffing ---- */

enum {
    LINE_START, /* nothing written yet, or the last thing written was a line break */
    IN_LINE,
    AFTER_CR    /* a CR was written as CRLF: a LF right after it is the same line break */
};

/* Shared by both streams: they differ only in the doubling of a leading '.'. */
static int normalize(int *state, email_buf_t *out, const char *data, size_t n, bool stuff)
{
    int st = *state;
    size_t start = out->len;
    size_t i = 0;
    while (i < n) {
        char c = data[i];
        if (c == '\n' && st == AFTER_CR) {
            st = LINE_START;
            i++;
            continue;
        }
        if (c == '\r' || c == '\n') {
            if (email__buf_append(out, "\r\n", 2))
                goto nomem;
            st = c == '\r' ? AFTER_CR : LINE_START;
            i++;
            continue;
        }
        if (stuff && st != IN_LINE && c == '.' && email__buf_putc(out, '.'))
            goto nomem;
        size_t j = i;
        while (j < n && data[j] != '\r' && data[j] != '\n')
            j++;
        if (email__buf_append(out, data + i, j - i))
            goto nomem;
        st = IN_LINE;
        i = j;
    }
    *state = st;
    return 0;
nomem:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return EMAIL_ENOMEM;
}

void email__dotstuff_init(email_dotstuff_t *d)
{
    d->state = LINE_START;
}

int email__dotstuff_feed(email_dotstuff_t *d, email_buf_t *out, const char *data, size_t n)
{
    return normalize(&d->state, out, data, n, true);
}

int email__dotstuff_finish(email_dotstuff_t *d, email_buf_t *out)
{
    int rc = d->state == IN_LINE ? email__buf_append(out, "\r\n.\r\n", 5)
                                 : email__buf_append(out, ".\r\n", 3);
    if (!rc)
        email__dotstuff_init(d);
    return rc;
}

void email__crlf_init(email_crlf_t *c)
{
    c->state = LINE_START;
}

int email__crlf_feed(email_crlf_t *c, email_buf_t *out, const char *data, size_t n)
{
    return normalize(&c->state, out, data, n, false);
}

int email__crlf_finish(email_crlf_t *c, email_buf_t *out)
{
    /* a CR is written as CRLF as soon as it is seen: nothing is ever held back */
    (void)out;
    email__crlf_init(c);
    return 0;
}

/* ---- Quoted-printable ---- */

int email__qp_encode(email_buf_t *out, const char *data, size_t n)
{
    /* worst case: every byte as =XX plus a 3-byte soft break every 25 of them */
    if (n > (SIZE_MAX - 8) / 4 || email__buf_reserve(out, 4 * n + 8))
        return EMAIL_ENOMEM;
    char *dst = out->data + out->len;
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && data[i + 1] == '\n')
                i++;
            *dst++ = '\r';
            *dst++ = '\n';
            col = 0;
            continue;
        }
        bool last = i + 1 == n || data[i + 1] == '\r' || data[i + 1] == '\n';
        for (;;) {
            /* a '.' alone on a line start could end SMTP DATA if dot-stuffing were skipped */
            bool literal = (c > 32 && c < 127 && c != '=' && !(c == '.' && col == 0)) ||
                           ((c == ' ' || c == '\t') && !last);
            size_t width = literal ? 1 : 3;
            /* keep room for the '=' of a soft break unless this ends the line anyway */
            if (col + width > (last ? 76u : 75u)) {
                memcpy(dst, "=\r\n", 3);
                dst += 3;
                col = 0;
                continue;
            }
            if (literal) {
                *dst++ = (char)c;
            } else {
                *dst++ = '=';
                *dst++ = hex_digits[c >> 4];
                *dst++ = hex_digits[c & 15];
            }
            col += width;
            break;
        }
    }
    out->len = (size_t)(dst - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- RFC 2047 encoded words ---- */

#define HEADER_LINE_MAX 78
#define ENCODED_WORD_MAX 75

/* Characters RFC 2047 5(3) allows unencoded in a Q word in any header context. */
static bool q_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

static size_t q_width(unsigned char c)
{
    return q_plain(c) || c == ' ' ? 1 : 3;
}

/* Length of the UTF-8 character starting at s[0], bounded by n. */
static size_t char_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t len = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return len < n ? len : n;
}

/* Characters an encoded word of these octets takes between "?X?" and "?=". */
static size_t encoded_len(const email_buf_t *b, char encoding)
{
    if (encoding == 'B')
        return (b->len + 2) / 3 * 4;
    size_t len = 0;
    for (size_t i = 0; i < b->len; i++)
        len += q_width((unsigned char)b->data[i]);
    return len;
}

static int put_word(email_buf_t *out, const char *charset, char encoding, const char *s, size_t n)
{
    if (email__buf_printf(out, "=?%s?%c?", charset, encoding))
        return EMAIL_ENOMEM;
    if (encoding == 'B') {
        if (email__base64_encode(out, s, n))
            return EMAIL_ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            int rc = c == ' '    ? email__buf_putc(out, '_')
                     : q_plain(c) ? email__buf_putc(out, (char)c)
                                  : email__buf_printf(out, "=%c%c", hex_digits[c >> 4],
                                                     hex_digits[c & 15]);
            if (rc)
                return EMAIL_ENOMEM;
        }
    }
    return email__buf_append(out, "?=", 2);
}

/*
 * Each word is converted on its own from whole characters, so that it is a complete text in its
 * charset (ISO-2022-JP: it starts in ASCII and returns to it). The longest run of characters that
 * still fits is found by converting one character more each time: words are short.
 */
int email__rfc2047_encode(email_buf_t *out, size_t *col, const char *utf8, size_t n,
                         const char *charset, char encoding)
{
    charset_conv_t conv;
    int rc = email__charset_open(&conv, charset);
    if (rc)
        return rc;
    email_buf_t word, next; /* the octets of the longest run that fits, of that run + 1 */
    email__buf_init(&word);
    email__buf_init(&next);
    size_t overhead = strlen(charset) + 7; /* "=?" charset "?X?" ... "?=" */
    size_t begin = out->len, c = *col, i = 0;
    while (i < n) {
        size_t room = c < HEADER_LINE_MAX ? HEADER_LINE_MAX - c : 0;
        if (room > ENCODED_WORD_MAX)
            room = ENCODED_WORD_MAX;
        size_t j = i;
        email__buf_reset(&word);
        while (j < n) {
            size_t k = char_len(utf8 + j, n - j);
            email__buf_reset(&next);
            if ((rc = email__charset_convert(&conv, &next, utf8 + i, j + k - i, NULL)))
                goto fail;
            if (overhead + encoded_len(&next, encoding) > room)
                break;
            email_buf_t swap = word;
            word = next;
            next = swap;
            j += k;
        }
        if (j > i) {
            size_t before = out->len;
            if ((rc = put_word(out, charset, encoding, word.data, word.len)))
                goto fail;
            c += out->len - before;
            i = j;
            if (i == n)
                break;
        } else if (c <= 1) {
            /* cannot happen with the library's charsets: a character takes at most 8 octets */
            rc = EMAIL_EINVAL;
            goto fail;
        }
        if ((rc = email__buf_append(out, "\r\n ", 3)))
            goto fail;
        c = 1;
    }
    *col = c;
fail:
    if (rc) {
        out->len = begin;
        if (out->data)
            out->data[begin] = '\0';
    }
    email__charset_close(&conv);
    email__buf_free(&word);
    email__buf_free(&next);
    return rc;
}
