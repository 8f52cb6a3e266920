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
#include <immintrin.h>
#define B64_SIMD 1

/*
 * Blocks of 16 (SSSE3) or 32 (AVX2) characters, up to the first character outside the alphabet;
 * they return the characters consumed (the quanta before it). With lines (the text of whole
 * lines, email__mp_decode_b64_lines) a CRLF after whole quanta is stepped over when the next
 * line, within s, does not start with '-': what the line path would make of it.
 *
 * A character is looked up by its two nibbles. lut_hi gives its high nibble's class as one bit
 * (0x01: 0x2_, 0x02: 0x3_, 0x04: 0x4_ and 0x6_, 0x08: 0x5_ and 0x7_, 0x10: any other, 8-bit
 * octets among them); lut_lo gives the classes in which its low nibble is NOT a base64
 * character (0x2_: only B '+' and F '/'; 0x3_: 0-9; 0x4_, 0x6_: 1-F; 0x5_, 0x7_: 0-A). The
 * character is in the alphabet when the two have no bit in common. Its value is the character
 * plus an offset chosen by its high nibble ('/' moved to index 1 to tell it from '+'):
 * '/' +16, '+' +19, digits +4, upper case -65, lower case -71. Four 6-bit values [a b c d] of a
 * 32-bit lane then become a << 18 | b << 12 | c << 6 | d (two multiply-adds) and its three
 * octets are picked in order.
 *
 * Each store writes 16 (32) octets, the last 4 (8) of them overwritten by the next block: dst
 * needs that room past the 12 (24) decoded, which the callers' reserve of n octets for n
 * characters gives.
 */
#define B64_LUT_LO 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, \
                   0x1B, 0x1B, 0x1A
#define B64_LUT_HI 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, \
                   0x10, 0x10, 0x10
#define B64_LUT_OFFSET 0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0
#define B64_ORDER 2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1

/* After a block stopped at `at` (< its width) at s + i: how far to go on. Returns true (and
   moves *i) to go on past a CRLF that follows whole quanta when the next line cannot be a
   boundary; false (with *i past the whole quanta before the stop) to stop. */
static inline bool b64_step(const unsigned char *s, size_t n, size_t *i, unsigned at, bool lines)
{
    if (lines && at % 4 == 0 && *i + at + 2 < n && s[*i + at] == '\r' && s[*i + at + 1] == '\n' &&
        s[*i + at + 2] != '-') {
        *i += at + 2;
        return true;
    }
    *i += at / 4 * 4;
    return false;
}

__attribute__((target("ssse3"))) static size_t b64_blocks16(const unsigned char *s, size_t n,
                                                            unsigned char **dst, bool lines)
{
    const __m128i lut_lo = _mm_setr_epi8(B64_LUT_LO), lut_hi = _mm_setr_epi8(B64_LUT_HI),
                  lut_offset = _mm_setr_epi8(B64_LUT_OFFSET), order = _mm_setr_epi8(B64_ORDER),
                  nibble = _mm_set1_epi8(0x0F), slash = _mm_set1_epi8('/'),
                  pairs = _mm_set1_epi32(0x01400140), quads = _mm_set1_epi32(0x00011000),
                  zero = _mm_setzero_si128();
    size_t i = 0;
    unsigned char *d = *dst;
    while (i + 16 <= n) {
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi32(c, 4), nibble);
        __m128i bad = _mm_and_si128(_mm_shuffle_epi8(lut_lo, _mm_and_si128(c, nibble)),
                                    _mm_shuffle_epi8(lut_hi, hi));
        unsigned valid = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(bad, zero)), at = 16;
        if (valid != 0xFFFF)
            at = (unsigned)__builtin_ctz(~valid);
        /* the block's whole quanta before `at` are decoded; what follows is overwritten */
        __m128i off = _mm_shuffle_epi8(lut_offset, _mm_add_epi8(hi, _mm_cmpeq_epi8(c, slash)));
        __m128i v = _mm_madd_epi16(_mm_maddubs_epi16(_mm_add_epi8(c, off), pairs), quads);
        _mm_storeu_si128((__m128i *)(void *)d, _mm_shuffle_epi8(v, order));
        d += 3 * (at / 4);
        if (at == 16)
            i += 16;
        else if (!b64_step(s, n, &i, at, lines))
            break;
    }
    *dst = d;
    return i;
}

__attribute__((target("avx2"))) static size_t b64_blocks32(const unsigned char *s, size_t n,
                                                           unsigned char **dst, bool lines)
{
    const __m256i lut_lo = _mm256_setr_epi8(B64_LUT_LO, B64_LUT_LO),
                  lut_hi = _mm256_setr_epi8(B64_LUT_HI, B64_LUT_HI),
                  lut_offset = _mm256_setr_epi8(B64_LUT_OFFSET, B64_LUT_OFFSET),
                  order = _mm256_setr_epi8(B64_ORDER, B64_ORDER),
                  /* each 128-bit lane's 12 octets, side by side */
                  pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7),
                  nibble = _mm256_set1_epi8(0x0F), slash = _mm256_set1_epi8('/'),
                  pairs = _mm256_set1_epi32(0x01400140), quads = _mm256_set1_epi32(0x00011000),
                  zero = _mm256_setzero_si256();
    size_t i = 0;
    unsigned char *d = *dst;
    while (i + 32 <= n) {
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(c, 4), nibble);
        __m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(lut_lo, _mm256_and_si256(c, nibble)),
                                       _mm256_shuffle_epi8(lut_hi, hi));
        unsigned valid = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(bad, zero)), at = 32;
        if (valid != 0xFFFFFFFFu)
            at = (unsigned)__builtin_ctz(~valid);
        __m256i off =
            _mm256_shuffle_epi8(lut_offset, _mm256_add_epi8(hi, _mm256_cmpeq_epi8(c, slash)));
        __m256i v = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_add_epi8(c, off), pairs), quads);
        v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, order), pack);
        _mm256_storeu_si256((__m256i *)(void *)d, v);
        d += 3 * (at / 4);
        if (at == 32)
            i += 32;
        else if (!b64_step(s, n, &i, at, lines))
            break;
    }
    *dst = d;
    return i;
}
#endif

/* The widest block decoder the processor has: 2 AVX2, 1 SSSE3, 0 none (scalar only), unless a
   test chose one (email__mp_b64_level). */
int email__mp_b64_level = -1;

static int b64_level(void)
{
#ifdef B64_SIMD
    if (email__mp_b64_level >= 0)
        return email__mp_b64_level;
    return __builtin_cpu_supports("avx2") ? 2 : __builtin_cpu_supports("ssse3") ? 1 : 0;
#else
    return 0;
#endif
}

/* Whole quanta, in blocks as wide as `level` allows; with lines, across CRLFs too (see the block
   decoders). */
static size_t b64_quanta(const unsigned char *s, size_t n, unsigned char **dst, int level,
                         bool lines)
{
    size_t i = 0;
#ifdef B64_SIMD
    if (level >= 2 && n >= 32)
        i = b64_blocks32(s, n, dst, lines);
    if (level >= 1 && n - i >= 16)
        i += b64_blocks16(s + i, n - i, dst, lines);
#else
    (void)level, (void)lines;
#endif
    return i + b64_quanta_scalar(s + i, n - i, dst);
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
    int level = n >= 16 ? b64_level() : 0;
    for (size_t i = 0; i < n; i++) {
        if (d->nbits == 0 && (i += b64_quanta(u + i, n - i, &dst, level, false)) == n)
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
    bool at_bol = *bol;
    int level = b64_level();
    size_t i = 0;
    while (i < n) {
        if (at_bol && u[i] == '-')
            break; /* perhaps a boundary: the caller looks at this line */
        at_bol = false;
        if (d->nbits == 0 && (i += b64_quanta(u + i, n - i, &dst, level, true)) == n)
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
