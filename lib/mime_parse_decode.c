/* Content-Transfer-Encoding decoders as streams, for the MIME parser: base64, quoted-printable
   and identity (7bit, 8bit, binary), fed pieces of lines and line breaks as they come. Loose: what
   cannot be decoded is skipped (base64) or kept as written (quoted-printable), and flagged. */
#include "mime_parse_internal.h"

#include <string.h>

#include "emailsession.h"

enum { QP_PLAIN, QP_EQUALS, QP_HEX, QP_EQUALS_SPACE };

void email__mp_decoder_init(mp_decoder_t *d, int cte)
{
    memset(d, 0, sizeof *d);
    d->cte = cte;
}

/* The base64 alphabet's values, -1 for any other octet: one load a character (this decoder is
   the hot path of a large attachment). */
static const signed char b64_values[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* Whole quanta of four alphabet characters at s, while no bits are pending: 3 octets each to
   dst. Returns the characters consumed (a multiple of 4; it stops before anything else). */
static size_t b64_quanta(const unsigned char *s, size_t n, unsigned char **dst)
{
    size_t i = 0;
    unsigned char *d = *dst;
    for (; i + 4 <= n; i += 4) {
        int a = b64_values[s[i]], b = b64_values[s[i + 1]], c = b64_values[s[i + 2]],
            e = b64_values[s[i + 3]];
        if ((a | b | c | e) < 0)
            break;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)e;
        d[0] = (unsigned char)(v >> 16);
        d[1] = (unsigned char)(v >> 8);
        d[2] = (unsigned char)v;
        d += 3;
    }
    *dst = d;
    return i;
}

/* White space is skipped; '=' ends a quantum (a second base64 text may follow: some mailers
   concatenate them); anything else is skipped and flagged. */
static int b64_feed(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n)
{
    if (email__buf_reserve(out, n))
        return EMAIL_ENOMEM;
    unsigned char *dst = (unsigned char *)out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        if (d->nbits == 0 && (i += b64_quanta((const unsigned char *)s + i, n - i, &dst)) == n)
            break;
        unsigned char c = (unsigned char)s[i];
        int v = b64_values[c];
        if (v >= 0) {
            d->acc = (d->acc << 6 | (uint32_t)v) & 0xFFFFFF;
            if ((d->nbits += 6) >= 8) {
                d->nbits -= 8;
                *dst++ = (unsigned char)(d->acc >> d->nbits);
            }
        } else if (c == '=') {
            /* one character alone in a quantum cannot make an octet */
            d->bad = d->bad || d->nbits == 6;
            d->nbits = 0;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            d->bad = true;
        }
    }
    out->len = (size_t)((char *)dst - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10; /* lower case is not allowed, but written by some */
    return -1;
}

/* The spaces held back, written out because something follows them on the line. */
static int qp_flush_ws(mp_decoder_t *d, email_buf_t *out)
{
    int rc = email__buf_append(out, d->ws, d->nws);
    d->nws = 0;
    return rc;
}

/* An '=' that starts no escape: written as it was, with what followed it. */
static int qp_literal(mp_decoder_t *d, email_buf_t *out)
{
    d->bad = true;
    int rc = email__buf_putc(out, '=');
    if (!rc && d->qp == QP_HEX)
        rc = email__buf_putc(out, d->qp_hex);
    if (!rc && d->qp == QP_EQUALS_SPACE)
        rc = qp_flush_ws(d, out);
    d->qp = QP_PLAIN;
    return rc;
}

static int qp_char(mp_decoder_t *d, email_buf_t *out, char c)
{
    bool space = c == ' ' || c == '\t';
    switch (d->qp) {
    case QP_EQUALS:
    case QP_EQUALS_SPACE:
        if (space) {
            /* "=" then spaces before the line break is still a soft break */
            d->qp = QP_EQUALS_SPACE;
            if (d->nws < sizeof d->ws)
                d->ws[d->nws++] = c;
            return 0;
        }
        if (d->qp == QP_EQUALS && hex_value(c) >= 0) {
            d->qp = QP_HEX;
            d->qp_hex = c;
            return 0;
        }
        break;
    case QP_HEX:
        if (hex_value(c) >= 0) {
            d->qp = QP_PLAIN;
            return email__buf_putc(out, (char)(hex_value(d->qp_hex) << 4 | hex_value(c)));
        }
        break;
    default:
        if (space) {
            if (d->nws == sizeof d->ws && qp_flush_ws(d, out))
                return EMAIL_ENOMEM;
            d->ws[d->nws++] = c;
            return 0;
        }
        if (d->nws && qp_flush_ws(d, out))
            return EMAIL_ENOMEM;
        if (c == '=') {
            d->qp = QP_EQUALS;
            return 0;
        }
        return email__buf_putc(out, c);
    }
    int rc = qp_literal(d, out);
    return rc ? rc : qp_char(d, out, c);
}

int email__mp_decode(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n)
{
    if (d->cte == CTE_BASE64)
        return b64_feed(d, out, s, n);
    if (d->cte == CTE_IDENTITY)
        return email__buf_append(out, s, n);
    for (size_t i = 0; i < n; i++)
        if (qp_char(d, out, s[i]))
            return EMAIL_ENOMEM;
    return 0;
}

int email__mp_decode_newline(mp_decoder_t *d, email_buf_t *out)
{
    if (d->cte == CTE_BASE64)
        return 0;
    if (d->cte == CTE_IDENTITY)
        return email__buf_append(out, "\r\n", 2);
    d->nws = 0; /* trailing white space was added in transport (RFC 2045 6.7 (3)) */
    if (d->qp == QP_EQUALS || d->qp == QP_EQUALS_SPACE) {
        d->qp = QP_PLAIN; /* a soft line break */
        return 0;
    }
    int rc = d->qp == QP_HEX ? qp_literal(d, out) : 0;
    return rc ? rc : email__buf_append(out, "\r\n", 2);
}

int email__mp_decode_end(mp_decoder_t *d, email_buf_t *out)
{
    if (d->cte == CTE_BASE64) {
        d->bad = d->bad || d->nbits == 6;
        return 0;
    }
    if (d->cte != CTE_QP)
        return 0;
    d->nws = 0;
    if (d->qp == QP_HEX)
        return qp_literal(d, out);
    d->qp = QP_PLAIN; /* "=" at the very end: a soft break before nothing */
    return 0;
}
