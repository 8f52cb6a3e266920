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
static size_t b64_quanta_scalar(const unsigned char *s, size_t n, unsigned char **dst)
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <tmmintrin.h>
#define B64_SIMD 1

/* Blocks of 16 characters (4 quanta, 12 octets) with SSSE3, up to the first character outside the
   alphabet; returns the characters consumed (the quanta before it). With lines (the text of
   whole lines, email__mp_decode_b64_lines) a CRLF after whole quanta is stepped over when the next
   line, within s, does not start with '-': what the line path would make of it. Each store writes 16 octets, the
   last 4 of them overwritten by the next block: dst needs 4 octets of room past the 12, which the
   callers' reserve of n octets for n characters gives. */
__attribute__((target("ssse3"))) static size_t b64_blocks(const unsigned char *s, size_t n,
                                                          unsigned char **dst, bool lines)
{
    const __m128i upper_lo = _mm_set1_epi8('A' - 1), upper_hi = _mm_set1_epi8('Z' + 1),
                  lower_lo = _mm_set1_epi8('a' - 1), lower_hi = _mm_set1_epi8('z' + 1),
                  digit_lo = _mm_set1_epi8('0' - 1), digit_hi = _mm_set1_epi8('9' + 1),
                  plus = _mm_set1_epi8('+'), slash = _mm_set1_epi8('/');
    const __m128i upper_add = _mm_set1_epi8(-'A'), lower_add = _mm_set1_epi8(26 - 'a'),
                  digit_add = _mm_set1_epi8(52 - '0'), plus_add = _mm_set1_epi8(62 - '+'),
                  slash_add = _mm_set1_epi8(63 - '/');
    /* the 6-bit values of a lane [a b c d] into a << 18 | b << 12 | c << 6 | d, then its three
       octets in order */
    const __m128i pairs = _mm_set1_epi32(0x01400140), quads = _mm_set1_epi32(0x00011000),
                  order = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    size_t i = 0;
    unsigned char *d = *dst;
    while (i + 16 <= n) {
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* signed compares: octets 0x80 and above are negative, in no range */
        __m128i up = _mm_and_si128(_mm_cmpgt_epi8(c, upper_lo), _mm_cmplt_epi8(c, upper_hi));
        __m128i lo = _mm_and_si128(_mm_cmpgt_epi8(c, lower_lo), _mm_cmplt_epi8(c, lower_hi));
        __m128i dg = _mm_and_si128(_mm_cmpgt_epi8(c, digit_lo), _mm_cmplt_epi8(c, digit_hi));
        __m128i pl = _mm_cmpeq_epi8(c, plus), sl = _mm_cmpeq_epi8(c, slash);
        __m128i ok = _mm_or_si128(_mm_or_si128(up, lo), _mm_or_si128(dg, _mm_or_si128(pl, sl)));
        /* a block with something else in it: its whole quanta before that are still decoded */
        unsigned valid = (unsigned)_mm_movemask_epi8(ok), at = 16;
        if (valid != 0xFFFF)
            at = (unsigned)__builtin_ctz(~valid);
        __m128i add = _mm_or_si128(
            _mm_or_si128(_mm_and_si128(up, upper_add), _mm_and_si128(lo, lower_add)),
            _mm_or_si128(_mm_and_si128(dg, digit_add),
                         _mm_or_si128(_mm_and_si128(pl, plus_add), _mm_and_si128(sl, slash_add))));
        __m128i v = _mm_madd_epi16(_mm_maddubs_epi16(_mm_add_epi8(c, add), pairs), quads);
        _mm_storeu_si128((__m128i *)(void *)d, _mm_shuffle_epi8(v, order));
        d += 3 * (at / 4);
        if (at == 16) {
            i += 16;
        } else if (lines && at % 4 == 0 && i + at + 2 < n && s[i + at] == '\r' &&
                   s[i + at + 1] == '\n' && s[i + at + 2] != '-') {
            i += at + 2; /* a CRLF after whole quanta, and a line that cannot be a boundary */
        } else {
            i += at / 4 * 4;
            break;
        }
    }
    *dst = d;
    return i;
}
#endif

/* Whole quanta, 16 characters at a time when simd (the processor has SSSE3); with lines, across
   CRLFs too (see b64_blocks). */
static size_t b64_quanta(const unsigned char *s, size_t n, unsigned char **dst, bool simd,
                         bool lines)
{
    size_t i = 0;
#ifdef B64_SIMD
    if (simd && n >= 16)
        i = b64_blocks(s, n, dst, lines);
#else
    (void)simd, (void)lines;
#endif
    return i + b64_quanta_scalar(s + i, n - i, dst);
}

static bool b64_simd(void)
{
#ifdef B64_SIMD
    return __builtin_cpu_supports("ssse3");
#else
    return false;
#endif
}

/* One character outside whole quanta. White space is skipped; '=' ends a quantum (a second
   base64 text may follow: some mailers concatenate them); anything else is skipped and flagged. */
static void b64_char(mp_decoder_t *d, unsigned char c, unsigned char **dst)
{
    int v = b64_values[c];
    if (v >= 0) {
        d->acc = (d->acc << 6 | (uint32_t)v) & 0xFFFFFF;
        if ((d->nbits += 6) >= 8) {
            d->nbits -= 8;
            *(*dst)++ = (unsigned char)(d->acc >> d->nbits);
        }
    } else if (c == '=') {
        /* one character alone in a quantum cannot make an octet */
        d->bad = d->bad || d->nbits == 6;
        d->nbits = 0;
    } else if (c != ' ' && c != '\t' && c != '\r') {
        d->bad = true;
    }
}

static int b64_feed(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n)
{
    if (email__buf_reserve(out, n))
        return EMAIL_ENOMEM;
    const unsigned char *u = (const unsigned char *)s;
    unsigned char *dst = (unsigned char *)out->data + out->len;
    bool simd = n >= 16 && b64_simd();
    for (size_t i = 0; i < n; i++) {
        if (d->nbits == 0 && (i += b64_quanta(u + i, n - i, &dst, simd, false)) == n)
            break;
        b64_char(d, u[i], &dst);
    }
    out->len = (size_t)((char *)dst - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int email__mp_decode_b64_lines(mp_decoder_t *d, email_buf_t *out, const char *s, size_t n,
                               bool *bol, size_t *used)
{
    *used = 0;
    if (email__buf_reserve(out, n))
        return EMAIL_ENOMEM;
    const unsigned char *u = (const unsigned char *)s;
    unsigned char *dst = (unsigned char *)out->data + out->len;
    bool at_bol = *bol, simd = b64_simd();
    size_t i = 0;
    while (i < n) {
        if (at_bol && u[i] == '-')
            break; /* perhaps a boundary: the caller looks at this line */
        at_bol = false;
        if (d->nbits == 0 && (i += b64_quanta(u + i, n - i, &dst, simd, true)) == n)
            break;
        if (u[i] == '\r' && i + 1 < n && u[i + 1] == '\n') {
            i += 2; /* the usual line break, CR skipped as white space */
            at_bol = true;
            continue;
        }
        if (u[i] == '\n')
            at_bol = true;
        else
            b64_char(d, u[i], &dst);
        i++;
    }
    out->len = (size_t)((char *)dst - out->data);
    out->data[out->len] = '\0';
    *bol = at_bol;
    *used = i;
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
