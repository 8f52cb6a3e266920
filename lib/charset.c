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
