/* UTF-8 → ISO-8859-1 / ISO-2022-JP with glibc's iconv, never substituting a character. */
#include "charset.h"

#include <errno.h>
#include <string.h>

#include "emailsession.h"

#define NO_ICONV ((iconv_t)-1)

static bool is_utf8(const char *charset)
{
    return !email__strcasecmp(charset, "UTF-8") || !email__strcasecmp(charset, "UTF8");
}

/* ESC, SO and SI in the text would be copied through by iconv and switch the reader's
 * character set: in a stateful charset they are refused like any character it cannot hold. */
static bool has_shift_codes(const char *s, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0x1B || s[i] == 0x0E || s[i] == 0x0F) {
            *at = i;
            return true;
        }
    }
    return false;
}

int email__charset_open(charset_conv_t *conv, const char *charset)
{
    conv->cd = NO_ICONV;
    conv->stateful = !email__strncasecmp(charset, "ISO-2022", 8);
    if (is_utf8(charset))
        return 0;
    /* no "//TRANSLIT": a character the charset lacks must fail, not become '?' */
    conv->cd = iconv_open(charset, "UTF-8");
    if (conv->cd == NO_ICONV)
        return errno == ENOMEM ? EMAIL_ENOMEM : EMAIL_ENOTSUP;
    return 0;
}

void email__charset_close(charset_conv_t *conv)
{
    if (conv->cd != NO_ICONV)
        iconv_close(conv->cd);
    conv->cd = NO_ICONV;
}

/* One iconv() step (in NULL: the flush that returns to the initial state), growing out on E2BIG. */
static int step(iconv_t cd, email_buf_t *out, char **in, size_t *inleft)
{
    for (;;) {
        /* about as many octets as come in; E2BIG asks for more (a character needs at most 8) */
        if (email__buf_reserve(out, (in ? *inleft : 0) + 16))
            return EMAIL_ENOMEM;
        char *dst = out->data + out->len;
        size_t room = out->cap - out->len - 1;
        size_t r = iconv(cd, in, inleft, &dst, &room);
        out->len = (size_t)(dst - out->data);
        if (r == 0)
            return 0;
        if (r == (size_t)-1 && errno == E2BIG)
            continue;
        /* EILSEQ: no equivalent; r > 0: characters replaced by something close, a substitution
           all the same; EINVAL (an incomplete character) cannot happen with valid UTF-8 */
        return EMAIL_ECHARSET;
    }
}

int email__charset_convert(charset_conv_t *conv, email_buf_t *out, const char *utf8, size_t n,
                    size_t *bad)
{
    if (conv->cd == NO_ICONV)
        return email__buf_append(out, utf8, n);
    size_t at;
    if (conv->stateful && has_shift_codes(utf8, n, &at)) {
        if (bad)
            *bad = at;
        return EMAIL_ECHARSET;
    }
    size_t start = out->len;
    char *in = (char *)utf8; /* iconv's prototype; the input is not written */
    size_t left = n;
    iconv(conv->cd, NULL, NULL, NULL, NULL); /* back to the initial state */
    int rc = step(conv->cd, out, &in, &left);
    if (!rc)
        rc = step(conv->cd, out, NULL, NULL);
    if (rc) {
        if (bad)
            *bad = n - left;
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc;
    }
    out->data[out->len] = '\0';
    return 0;
}

int email__charset_fits(const char *charset, const char *utf8, size_t n, size_t *bad)
{
    charset_conv_t conv;
    int rc = email__charset_open(&conv, charset);
    if (rc || conv.cd == NO_ICONV)
        return rc;
    size_t at;
    if (conv.stateful && has_shift_codes(utf8, n, &at)) {
        if (bad)
            *bad = at;
        email__charset_close(&conv);
        return EMAIL_ECHARSET;
    }
    char *in = (char *)utf8; /* iconv's prototype; the input is not written */
    size_t left = n;
    for (;;) {
        char buf[256], *dst = buf;
        size_t room = sizeof buf;
        size_t r = iconv(conv.cd, &in, &left, &dst, &room);
        if (r == (size_t)-1 && errno == E2BIG)
            continue; /* the output is not kept: the next piece goes in the same buffer */
        /* as in step(): EILSEQ, or characters replaced by something close */
        if (r != 0)
            rc = EMAIL_ECHARSET;
        break;
    }
    if (rc && bad)
        *bad = n - left;
    email__charset_close(&conv);
    return rc;
}

int email__charset_from_utf8(const char *charset, email_buf_t *out, const char *utf8, size_t n,
                      size_t *bad)
{
    charset_conv_t conv;
    int rc = email__charset_open(&conv, charset);
    if (rc)
        return rc;
    rc = email__charset_convert(&conv, out, utf8, n, bad);
    email__charset_close(&conv);
    return rc;
}

/* ---- Reading mail's charsets ---- */

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Length of the valid UTF-8 sequence at s[0] (not NUL), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] && s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4                                  ? 4
                                                                                 : 0;
    return len && len <= n && email__utf8_valid((const char *)s, len) ? len : 0;
}

bool email__utf8_sanitize(email_buf_t *out, const char *in, size_t n, bool *nomem)
{
    const unsigned char *s = (const unsigned char *)in;
    bool replaced = false;
    size_t i = 0;
    while (i < n) {
        size_t j = i, k;
        while (j < n && (k = utf8_seq(s + j, n - j)))
            j += k;
        if (email__buf_append(out, in + i, j - i))
            goto nomem;
        if (j == n)
            break;
        if (email__buf_append(out, replacement, 3))
            goto nomem;
        replaced = true;
        i = j + 1;
    }
    if (email__buf_reserve(out, 0)) /* an empty result is still a string */
        goto nomem;
    return replaced;
nomem:
    *nomem = true;
    return replaced;
}

/* The decoders iconv should use for a label, best first; NULL for US-ASCII and no label. */
static void read_aliases(const char *label, const char *names[2])
{
    static const char *const table[][3] = {
        {"gb2312", "GB18030", NULL},      {"gbk", "GB18030", NULL},
        {"x-gbk", "GB18030", NULL},       {"cp936", "GB18030", NULL},
        {"euc-cn", "GB18030", NULL},      {"csgb2312", "GB18030", NULL},
        {"iso-2022-jp", "ISO-2022-JP-2", "ISO-2022-JP-3"},
        {"csiso2022jp", "ISO-2022-JP-2", "ISO-2022-JP-3"},
        {"shift_jis", "CP932", NULL},     {"sjis", "CP932", NULL},
        {"x-sjis", "CP932", NULL},        {"windows-31j", "CP932", NULL},
        {"euc-kr", "CP949", NULL},        {"ks_c_5601-1987", "CP949", NULL},
        {"iso-8859-1", "WINDOWS-1252", NULL}, {"latin1", "WINDOWS-1252", NULL},
        {"iso_8859-1", "WINDOWS-1252", NULL}, {"utf8", "UTF-8", NULL}};
    names[0] = label;
    names[1] = NULL;
    if (!label || !*label || !email__strcasecmp(label, "us-ascii") ||
        !email__strcasecmp(label, "ascii")) {
        names[0] = NULL;
        return;
    }
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        if (!email__strcasecmp(label, table[i][0])) {
            names[0] = table[i][1];
            names[1] = table[i][2];
            return;
        }
    }
}

/* A name iconv_open may be given: short, letters, digits and "-_.:" (no "//" suffix, no path). */
static bool label_safe(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("-_.:", s[i])))
            return false;
    return n && n <= 40;
}

/* in → UTF-8 through iconv, U+FFFD for what it cannot read; -1 when iconv lacks the charset. */
static int decode_with(const char *charset, email_buf_t *out, const char *in, size_t n)
{
    if (!label_safe(charset))
        return -1;
    iconv_t cd = iconv_open("UTF-8", charset);
    if (cd == NO_ICONV)
        return errno == ENOMEM ? EMAIL_ENOMEM : -1;
    char *src = (char *)in; /* iconv's prototype; the input is not written */
    size_t left = n;
    int result = 0;
    for (bool flushing = false;;) {
        if (email__buf_reserve(out, left + 16)) {
            result = EMAIL_ENOMEM;
            break;
        }
        char *dst = out->data + out->len;
        size_t room = out->cap - out->len - 1;
        size_t r = flushing ? iconv(cd, NULL, NULL, &dst, &room)
                            : iconv(cd, &src, &left, &dst, &room);
        out->len = (size_t)(dst - out->data);
        out->data[out->len] = '\0';
        if (r != (size_t)-1) {
            if (flushing)
                break;
            flushing = true; /* back to the initial state: what a shift may still hold */
        } else if (errno != E2BIG) {
            /* EILSEQ: an octet it cannot read; EINVAL: a character cut by the end */
            if (email__buf_append(out, replacement, 3)) {
                result = EMAIL_ENOMEM;
                break;
            }
            result = CHARSET_LOSSY;
            size_t skip = errno == EILSEQ && !flushing ? 1 : left;
            src += skip;
            left -= skip;
            if (flushing)
                break;
        }
    }
    iconv_close(cd);
    return result;
}

/* One ISO-2022-JP character set designation at in[0] (ESC): its set and length, 0 if unknown. */
static size_t jis_escape(const char *in, size_t n, int *set)
{
    static const struct {
        const char *seq;
        int set;
    } escapes[] = {{"\x1b(B", 0}, {"\x1b(J", 0}, {"\x1b$B", 1}, {"\x1b$@", 1},
                   {"\x1b(I", 2}, {"\x1b$(D", 3}};
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        size_t len = strlen(escapes[i].seq);
        if (n >= len && !memcmp(in, escapes[i].seq, len)) {
            *set = escapes[i].set;
            return len;
        }
    }
    return 0;
}

/*
 * ISO-2022-JP as Japanese mailers write it (Microsoft's CP50220/CP50221: the NEC special and
 * NEC-selected IBM extension rows inside ESC $ B, half-width katakana after ESC ( I), which
 * neither of glibc's ISO-2022-JP-2/-3 reads, rewritten as CP932 (Shift_JIS with those rows),
 * which glibc reads. False when the text is not shaped like that (JIS X 0212 is not in CP932:
 * ISO-2022-JP-2 reads it).
 */
static bool jis_to_cp932(email_buf_t *out, const char *in, size_t n)
{
    int set = 0; /* 0 ASCII, 1 JIS X 0208 (and extensions), 2 katakana, 3 JIS X 0212 */
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)in[i], d = i + 1 < n ? (unsigned char)in[i + 1] : 0;
        size_t esc = c == 0x1b ? jis_escape(in + i, n - i, &set) : 0;
        int rc = 0;
        if ((c == 0x1b && !esc) || set == 3 || c >= 0x80)
            return false;
        if (esc) {
            i += esc - 1;
            continue;
        }
        if (set == 2 && c >= 0x21 && c <= 0x5f) {
            rc = email__buf_putc(out, (char)(c | 0x80));
        } else if (set == 1 && c >= 0x21 && c <= 0x7e && d >= 0x21 && d <= 0x7e) {
            unsigned s1 = ((c + 1) >> 1) + (c <= 0x5e ? 0x70 : 0xb0);
            unsigned s2 = d + ((c & 1) ? (d < 0x60 ? 0x1f : 0x20) : 0x7e);
            rc = email__buf_putc(out, (char)s1) || email__buf_putc(out, (char)s2);
            i++;
        } else if (set == 1 && c != '\r' && c != '\n') {
            return false;
        } else {
            rc = email__buf_putc(out, (char)c);
        }
        if (rc)
            return false;
    }
    return true;
}

/* The ISO-2022-JP extensions' reading (see jis_to_cp932): -1 when it does not apply. */
static int decode_jis_ms(email_buf_t *out, const char *in, size_t n)
{
    email_buf_t sjis;
    email__buf_init(&sjis);
    int rc = jis_to_cp932(&sjis, in, n) ? decode_with("CP932", out, sjis.data ? sjis.data : "",
                                                      sjis.len)
                                        : -1;
    email__buf_free(&sjis);
    return rc;
}

/* The first decoder of names that reads in without loss wins; else the first one's reading. */
static int decode_best(const char *const names[2], email_buf_t *out, const char *in, size_t n)
{
    email_buf_t tmp;
    email__buf_init(&tmp);
    int rc = decode_with(names[0], &tmp, in, n);
    if (rc == CHARSET_LOSSY && names[1]) {
        email_buf_t other;
        email__buf_init(&other);
        int rc2 = decode_with(names[1], &other, in, n);
        if (rc2 == 0 || rc2 == EMAIL_ENOMEM) {
            email__buf_free(&tmp);
            tmp = other;
            rc = rc2;
        } else {
            email__buf_free(&other);
        }
    }
    if (rc == CHARSET_LOSSY && !email__strcasecmp(names[0], "ISO-2022-JP-2")) {
        email_buf_t other;
        email__buf_init(&other);
        int rc2 = decode_jis_ms(&other, in, n);
        if (rc2 == 0 || rc2 == EMAIL_ENOMEM) {
            email__buf_free(&tmp);
            tmp = other;
            rc = rc2;
        } else {
            email__buf_free(&other);
        }
    }
    if (rc >= 0) {
        bool nomem = false;
        /* iconv's output is UTF-8, but a NUL read from the input would cut a C string */
        if (email__utf8_sanitize(out, tmp.data ? tmp.data : "", tmp.len, &nomem))
            rc |= CHARSET_LOSSY;
        rc = nomem ? EMAIL_ENOMEM : rc;
    }
    email__buf_free(&tmp);
    return rc;
}

int email__charset_to_utf8(const char *charset, email_buf_t *out, const char *in, size_t n)
{
    const char *names[2];
    read_aliases(charset, names);
    bool nomem = false, lossy;
    if ((!names[0] || is_utf8(names[0])) && (names[0] || email__utf8_valid(in, n))) {
        lossy = email__utf8_sanitize(out, in, n, &nomem);
        return nomem ? EMAIL_ENOMEM : lossy ? CHARSET_LOSSY : 0;
    }
    if (!names[0]) /* 8-bit octets with no charset, not UTF-8 */
        names[0] = "WINDOWS-1252";
    int rc = decode_best(names, out, in, n);
    if (rc != -1)
        return rc;
    lossy = email__utf8_sanitize(out, in, n, &nomem);
    return nomem ? EMAIL_ENOMEM : CHARSET_UNKNOWN | (lossy ? CHARSET_LOSSY : 0);
}
