/*
 * libFuzzer target: the encoders (lib/encode.c): base64, base64 in MIME lines, quoted-printable,
 * SMTP dot-stuffing and CRLF normalisation as streams, RFC 2047 encoded words.
 *
 * Input: one selector byte (RFC 2047 charset bits 0-1: UTF-8, ISO-8859-1, ISO-2022-JP, UTF-8;
 * encoding bit 2: B or Q; starting column bits 3-7, times 3), then the data. Every encoder runs on
 * every input; each result is decoded by a decoder written here and must give the input back:
 *   - base64: decode(encode(x)) == x; a decode that succeeds is stable under encode + decode, a
 *     decode that fails leaves the buffer as it was;
 *   - base64 lines: 76 characters per line, CRLF, size as announced, decodes to the input;
 *   - quoted-printable: lines of at most 76, only printable ASCII, no white space before a line
 *     break, no '.' opening a line, decodes to the input with line breaks as CRLF;
 *   - dot-stuffing, fed in pieces cut by the data: read back as an SMTP server does, the text is
 *     the CRLF-normalised input (with a final CRLF added when missing), ended exactly once by
 *     "\r\n.\r\n", the same bytes as fed whole; CRLF normalisation likewise;
 *   - RFC 2047: every word at most 75 characters, lines folded at 78, Q words in the strict
 *     phrase alphabet, *col right, and the words decoded (iconv back to UTF-8) are the text; a
 *     character the charset lacks is refused, the buffer untouched.
 */
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "emailsession.h"
#include "encode.h"
#include "fuzz_common.h"
#include "util.h"

/* ---- reference decoders ---- */

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* the encoder writes upper case only */
}

/* ---- base64 ---- */

FUZZ_NOCOV static void check_base64(const uint8_t *d, size_t n)
{
    email_buf_t enc;
    email__buf_init(&enc);
    FUZZ_CHECK(email__base64_encode(&enc, d, n) == 0);
    FUZZ_CHECK(enc.len == (n + 2) / 3 * 4, "base64 of %zu octets: %zu characters", n, enc.len);
    fuzz_str_t dec = {0};
    fuzz_str_add(&dec, "", 0);
    FUZZ_CHECK(fuzz_b64_decode(enc.data ? enc.data : "", enc.len, &dec), "not canonical base64");
    FUZZ_CHECK(dec.len == n && !memcmp(dec.p, d, n), "base64 does not decode to its input");
    /* the library's own decoder agrees */
    email_buf_t back;
    email__buf_init(&back);
    FUZZ_CHECK(email__base64_decode(&back, enc.data ? enc.data : "", enc.len) == 0);
    FUZZ_CHECK(back.len == n && (!n || !memcmp(back.data, d, n)), "decode(encode(x)) != x");
    email__buf_free(&back);
    email__buf_free(&enc);
    fuzz_str_free(&dec);

    /* the input as base64 text: a success is stable, a failure changes nothing */
    email_buf_t out;
    email__buf_init(&out);
    FUZZ_CHECK(email__buf_puts(&out, "keep") == 0);
    int rc = email__base64_decode(&out, (const char *)d, n);
    if (rc) {
        FUZZ_CHECK(rc == EMAIL_EINVAL, "decode: %d", rc);
        FUZZ_CHECK(out.len == 4 && !strcmp(out.data, "keep"), "a failed decode changed the buffer");
    } else {
        size_t got = out.len - 4;
        FUZZ_CHECK(n % 4 == 0 && got <= n / 4 * 3 && got + 2 >= n / 4 * 3,
                   "%zu octets from %zu characters", got, n);
        FUZZ_CHECK(out.data[out.len] == '\0');
        /* every character was base64 or final padding */
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(fuzz_b64v(d[i]) >= 0 || (d[i] == '=' && i + 3 >= n), "accepted %#x at %zu",
                       d[i], i);
        email_buf_t again, twice;
        email__buf_init(&again);
        email__buf_init(&twice);
        FUZZ_CHECK(email__base64_encode(&again, out.data + 4, got) == 0);
        FUZZ_CHECK(email__base64_decode(&twice, again.data, again.len) == 0);
        FUZZ_CHECK(twice.len == got && (!got || !memcmp(twice.data, out.data + 4, got)));
        email__buf_free(&again);
        email__buf_free(&twice);
    }
    email__buf_free(&out);

    /* MIME lines */
    email_buf_t lines;
    email__buf_init(&lines);
    FUZZ_CHECK(email__base64_encode_lines(&lines, d, n) == 0);
    FUZZ_CHECK(lines.len == email__base64_lines_size(n), "lines: %zu, announced %llu", lines.len,
               (unsigned long long)email__base64_lines_size(n));
    fuzz_str_t joined = {0}, dec2 = {0};
    fuzz_str_add(&joined, "", 0);
    fuzz_str_add(&dec2, "", 0);
    size_t pos = 0;
    while (pos < lines.len) {
        const char *crlf = memchr(lines.data + pos, '\r', lines.len - pos);
        FUZZ_CHECK(crlf && crlf[1] == '\n', "base64 line without CRLF");
        size_t len = (size_t)(crlf - (lines.data + pos));
        FUZZ_CHECK(len >= 4 && len <= 76, "base64 line of %zu", len);
        FUZZ_CHECK(len == 76 || pos + len + 2 == lines.len, "short base64 line inside");
        fuzz_str_add(&joined, lines.data + pos, len);
        pos += len + 2;
    }
    FUZZ_CHECK(fuzz_b64_decode(joined.p, joined.len, &dec2));
    FUZZ_CHECK(dec2.len == n && !memcmp(dec2.p, d, n), "base64 lines do not decode to the input");
    email__buf_free(&lines);
    fuzz_str_free(&joined);
    fuzz_str_free(&dec2);
}

/* ---- quoted-printable ---- */

FUZZ_NOCOV static void check_qp(const uint8_t *d, size_t n)
{
    email_buf_t qp;
    email__buf_init(&qp);
    FUZZ_CHECK(email__qp_encode(&qp, (const char *)d, n) == 0);
    fuzz_str_t dec = {0}, want = {0};
    fuzz_str_add(&dec, "", 0);
    fuzz_str_add(&want, "", 0);
    const char *s = qp.data ? qp.data : "";
    size_t len = qp.len, pos = 0;
    while (pos < len) {
        const char *end = memchr(s + pos, '\r', len - pos);
        size_t ln = end ? (size_t)(end - (s + pos)) : len - pos;
        if (end)
            FUZZ_CHECK(pos + ln + 1 < len && end[1] == '\n', "QP: CR without LF");
        const char *l = s + pos;
        FUZZ_CHECK(ln <= 76, "QP line of %zu characters", ln);
        FUZZ_CHECK(!(ln && l[0] == '.'), "QP line starting with '.'");
        bool soft = ln && l[ln - 1] == '=' && end;
        size_t body = soft ? ln - 1 : ln;
        if (body && !soft)
            FUZZ_CHECK(l[body - 1] != ' ' && l[body - 1] != '\t', "white space ends a QP line");
        for (size_t i = 0; i < body; i++) {
            unsigned char c = (unsigned char)l[i];
            if (c == '=') {
                FUZZ_CHECK(i + 2 < body && hexv(l[i + 1]) >= 0 && hexv(l[i + 2]) >= 0,
                           "QP: '=' without two hex digits");
                unsigned char v = (unsigned char)(hexv(l[i + 1]) * 16 + hexv(l[i + 2]));
                fuzz_str_add(&dec, &v, 1);
                i += 2;
            } else {
                FUZZ_CHECK((c >= 33 && c <= 126) || c == ' ' || c == '\t', "QP: octet %#x", c);
                fuzz_str_add(&dec, &c, 1);
            }
        }
        if (end && !soft)
            fuzz_str_add(&dec, "\r\n", 2);
        pos += ln + (end ? 2 : 0);
    }
    fuzz_crlf_normalise(&want, d, n);
    FUZZ_CHECK(dec.len == want.len && !memcmp(dec.p, want.p, dec.len),
               "QP decodes to %zu octets, not the %zu of the input", dec.len, want.len);
    email__buf_free(&qp);
    fuzz_str_free(&dec);
    fuzz_str_free(&want);
}

/* ---- dot-stuffing and CRLF streams ---- */

static void stream(bool stuff, const uint8_t *d, size_t n, uint64_t seed, email_buf_t *out)
{
    email_dotstuff_t ds;
    email_crlf_t cr;
    email__dotstuff_init(&ds);
    email__crlf_init(&cr);
    size_t pos = 0;
    while (pos < n) {
        size_t piece = seed ? 1 + fuzz_xorshift(&seed) % 9 : n - pos;
        if (piece > n - pos)
            piece = n - pos;
        int rc = stuff ? email__dotstuff_feed(&ds, out, (const char *)d + pos, piece)
                       : email__crlf_feed(&cr, out, (const char *)d + pos, piece);
        FUZZ_CHECK(rc == 0, "feed: %d", rc);
        pos += piece;
    }
    int rc = stuff ? email__dotstuff_finish(&ds, out) : email__crlf_finish(&cr, out);
    FUZZ_CHECK(rc == 0, "finish: %d", rc);
}

FUZZ_NOCOV static void check_dotstuff(const uint8_t *d, size_t n, uint64_t seed)
{
    email_buf_t whole, pieces;
    email__buf_init(&whole);
    email__buf_init(&pieces);
    stream(true, d, n, 0, &whole);
    stream(true, d, n, seed, &pieces);
    FUZZ_CHECK(whole.len == pieces.len && !memcmp(whole.data, pieces.data, whole.len),
               "dot-stuffing depends on where the input is cut");

    /* read back as a server does, right after "DATA\r\n" */
    fuzz_str_t got = {0}, want = {0};
    fuzz_str_add(&got, "", 0);
    fuzz_str_add(&want, "", 0);
    const char *s = whole.data;
    size_t len = whole.len, pos = 0;
    bool ended = false;
    while (pos < len) {
        const char *lf = memchr(s + pos, '\n', len - pos);
        FUZZ_CHECK(lf, "stuffed data does not end with a line break");
        size_t ln = (size_t)(lf - (s + pos));
        FUZZ_CHECK(ln >= 1 && s[pos + ln - 1] == '\r', "bare LF in stuffed data");
        ln--;
        const char *l = s + pos;
        FUZZ_CHECK(!memchr(l, '\r', ln), "bare CR in stuffed data");
        pos += ln + 2;
        if (ln == 1 && l[0] == '.') {
            ended = true;
            break;
        }
        if (ln && l[0] == '.') {
            FUZZ_CHECK(ln >= 2 && l[1] == '.', "unstuffed '.' opening a line");
            l++, ln--;
        }
        fuzz_str_add(&got, l, ln);
        fuzz_str_add(&got, "\r\n", 2);
    }
    FUZZ_CHECK(ended, "no end of data");
    FUZZ_CHECK(pos == len, "%zu octets after the end of data (smuggling)", len - pos);
    fuzz_crlf_normalise(&want, d, n);
    if (want.len && (want.len < 2 || memcmp(want.p + want.len - 2, "\r\n", 2)))
        fuzz_str_add(&want, "\r\n", 2);
    FUZZ_CHECK(got.len == want.len && !memcmp(got.p, want.p, got.len),
               "unstuffed data is not the normalised input");

    /* finish resets the stream: the same input again gives the same bytes */
    email_buf_t again;
    email__buf_init(&again);
    stream(true, d, n, seed ^ 0x5555, &again);
    FUZZ_CHECK(again.len == whole.len && !memcmp(again.data, whole.data, whole.len));

    /* plain CRLF normalisation (BDAT) */
    email_buf_t c1, c2;
    email__buf_init(&c1);
    email__buf_init(&c2);
    stream(false, d, n, 0, &c1);
    stream(false, d, n, seed, &c2);
    fuzz_str_t norm = {0};
    fuzz_str_add(&norm, "", 0);
    fuzz_crlf_normalise(&norm, d, n);
    FUZZ_CHECK(c1.len == norm.len && (!norm.len || !memcmp(c1.data, norm.p, norm.len)),
               "CRLF normalisation differs from the reference");
    FUZZ_CHECK(c2.len == c1.len && (!c1.len || !memcmp(c2.data, c1.data, c1.len)),
               "CRLF normalisation depends on where the input is cut");
    email__buf_free(&c1);
    email__buf_free(&c2);
    fuzz_str_free(&norm);
    email__buf_free(&again);
    email__buf_free(&whole);
    email__buf_free(&pieces);
    fuzz_str_free(&got);
    fuzz_str_free(&want);
}

/* ---- RFC 2047 ---- */

/* The input as valid UTF-8 (RFC 3629): each invalid octet becomes '?'. */
FUZZ_NOCOV static void make_utf8(const uint8_t *d, size_t n, fuzz_str_t *out)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = d[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                                 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        bool ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (d[i + k] & 0xC0) == 0x80;
        if (ok && len == 3) {
            uint8_t c1 = d[i + 1];
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
        }
        if (ok && len == 4) {
            uint8_t c1 = d[i + 1];
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) {
            fuzz_str_add(out, d + i, len);
            i += len;
        } else {
            fuzz_str_add(out, "?", 1);
            i++;
        }
    }
}

/* iconv from -> to of the whole of s; false when it cannot be converted exactly. */
static bool convert(const char *to, const char *from, const char *s, size_t n, fuzz_str_t *out)
{
    if (!strcmp(to, from)) {
        fuzz_str_add(out, s, n);
        return true;
    }
    iconv_t cd = iconv_open(to, from);
    FUZZ_CHECK(cd != (iconv_t)-1, "iconv_open %s -> %s", from, to);
    char *in = (char *)s;
    size_t left = n;
    bool ok = true;
    for (;;) {
        char buf[512], *o = buf;
        size_t room = sizeof buf;
        size_t r = iconv(cd, left ? &in : NULL, left ? &left : NULL, &o, &room);
        fuzz_str_add(out, buf, sizeof buf - room);
        if (r == (size_t)-1 && errno == E2BIG)
            continue;
        if (r != 0) {
            ok = false;
            break;
        }
        if (!left) {
            /* the flush (returns a stateful charset to its initial state) */
            o = buf;
            room = sizeof buf;
            r = iconv(cd, NULL, NULL, &o, &room);
            fuzz_str_add(out, buf, sizeof buf - room);
            ok = r == 0;
            break;
        }
    }
    iconv_close(cd);
    return ok;
}

static bool q_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

static void check_rfc2047(const uint8_t *d, size_t n, uint8_t sel)
{
    static const char *const charsets[4] = {"UTF-8", "ISO-8859-1", "ISO-2022-JP", "UTF-8"};
    const char *cs = charsets[sel & 3];
    char enc = (sel & 4) ? 'Q' : 'B';
    size_t col0 = (size_t)(sel >> 3) * 3;
    fuzz_str_t text = {0};
    fuzz_str_add(&text, "", 0);
    make_utf8(d, n, &text);
    if (!text.len) {
        fuzz_str_free(&text);
        return;
    }

    email_buf_t out;
    email__buf_init(&out);
    FUZZ_CHECK(email__buf_puts(&out, "Subject: ") == 0);
    size_t col = col0;
    int rc = email__rfc2047_encode(&out, &col, text.p, text.len, cs, enc);
    /* the charset holds the text when it converts there and back unchanged; the shift codes
       ESC, SO and SI are refused in ISO-2022 charsets whatever iconv does with them (they
       would switch the reader's character set: crashes/fuzz_encode-iso2022jp-*) */
    bool shift = !strncmp(cs, "ISO-2022", 8) && (memchr(text.p, 0x1B, text.len) ||
                                                 memchr(text.p, 0x0E, text.len) ||
                                                 memchr(text.p, 0x0F, text.len));
    fuzz_str_t there = {0}, back = {0};
    fuzz_str_add(&there, "", 0);
    fuzz_str_add(&back, "", 0);
    bool fits = !shift && convert(cs, "UTF-8", text.p, text.len, &there) &&
                convert("UTF-8", cs, there.p, there.len, &back) && back.len == text.len &&
                !memcmp(back.p, text.p, text.len);
    fuzz_str_free(&there);
    fuzz_str_free(&back);
    if (rc) {
        FUZZ_CHECK(rc == EMAIL_ECHARSET, "rfc2047 %s: %d", cs, rc);
        FUZZ_CHECK(!fits, "%s refused a text it can hold", cs);
        FUZZ_CHECK(email__charset_fits(cs, text.p, text.len, NULL) == EMAIL_ECHARSET,
                   "email__charset_fits disagrees with the encoder");
        FUZZ_CHECK(out.len == 9 && !strcmp(out.data, "Subject: "), "a refusal changed the buffer");
        FUZZ_CHECK(col == col0, "a refusal moved the column");
        goto done;
    }

    /* the words, one per line */
    fuzz_str_t decoded = {0};
    fuzz_str_add(&decoded, "", 0);
    const char *s = out.data + 9;
    size_t len = out.len - 9, pos = 0, line = 0, lastlen = 0;
    while (pos <= len) {
        const char *nl = pos < len ? memchr(s + pos, '\r', len - pos) : NULL;
        size_t wl = nl ? (size_t)(nl - (s + pos)) : len - pos;
        const char *w = s + pos;
        size_t linelen = (line == 0 ? col0 : 1) + wl;
        FUZZ_CHECK(linelen <= 78 || (line == 0 && wl == 0), "a line of %zu characters", linelen);
        FUZZ_CHECK(!memchr(w, '\n', wl), "LF inside a word");
        if (wl == 0) {
            FUZZ_CHECK(line == 0 && nl, "an empty word");
        } else {
            FUZZ_CHECK(wl <= 75, "an encoded word of %zu characters", wl);
            size_t csl = strlen(cs);
            FUZZ_CHECK(wl >= csl + 7 && !memcmp(w, "=?", 2) && !memcmp(w + 2, cs, csl) &&
                           w[2 + csl] == '?' && w[3 + csl] == enc && w[4 + csl] == '?' &&
                           !memcmp(w + wl - 2, "?=", 2),
                       "not an encoded word: %.*s", (int)wl, w);
            const char *pl = w + csl + 5;
            size_t pn = wl - csl - 7;
            fuzz_str_t raw = {0};
            fuzz_str_add(&raw, "", 0);
            if (enc == 'B') {
                FUZZ_CHECK(fuzz_b64_decode(pl, pn, &raw), "bad base64 in a word");
            } else {
                for (size_t i = 0; i < pn; i++) {
                    unsigned char c = (unsigned char)pl[i];
                    if (c == '_') {
                        fuzz_str_add(&raw, " ", 1);
                    } else if (c == '=') {
                        FUZZ_CHECK(i + 2 < pn && hexv(pl[i + 1]) >= 0 && hexv(pl[i + 2]) >= 0,
                                   "bad =XX in a Q word");
                        unsigned char v = (unsigned char)(hexv(pl[i + 1]) * 16 + hexv(pl[i + 2]));
                        fuzz_str_add(&raw, &v, 1);
                        i += 2;
                    } else {
                        FUZZ_CHECK(q_plain(c), "'%c' in a Q word", c);
                        fuzz_str_add(&raw, &c, 1);
                    }
                }
            }
            FUZZ_CHECK(raw.len > 0, "an empty encoded word");
            /* each word decodes alone: a complete text in its charset */
            FUZZ_CHECK(convert("UTF-8", cs, raw.p, raw.len, &decoded),
                       "a word is not a complete %s text: %.*s", cs, (int)wl, w);
            fuzz_str_free(&raw);
        }
        lastlen = linelen;
        line++;
        if (!nl)
            break;
        FUZZ_CHECK(nl + 2 < s + len && nl[1] == '\n' && nl[2] == ' ', "fold is not CRLF SP");
        pos = (size_t)(nl - s) + 3;
    }
    FUZZ_CHECK(col == lastlen, "*col %zu, the last line is %zu long", col, lastlen);
    FUZZ_CHECK(decoded.len == text.len && !memcmp(decoded.p, text.p, text.len),
               "the words decode to another text (%s, %c)", cs, enc);
    fuzz_str_free(&decoded);
done:
    fuzz_str_free(&text);
    email__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    check_base64(d, n);
    check_qp(d, n);
    check_dotstuff(d, n, fuzz_hash(data, size));
    if (n <= 2048) /* words are converted one character more at a time: keep runs fast */
        check_rfc2047(d, n, sel);
    return 0;
}
