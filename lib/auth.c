/* SASL mechanisms for SMTP AUTH (RFC 4954, 4616, 2195; Google's XOAUTH2; RFC 7628). */
#include "auth.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

#include "auth_scram.h"
#include "emailsession.h"
#include "encode.h"

static const struct {
    auth_mech_t mech;
    const char *name;
} mechs[] = {
    {AUTH_OAUTHBEARER, "OAUTHBEARER"},
    {AUTH_XOAUTH2, "XOAUTH2"},
    {AUTH_SCRAM_SHA256, "SCRAM-SHA-256"},
    {AUTH_SCRAM_SHA1, "SCRAM-SHA-1"},
    {AUTH_CRAM_MD5, "CRAM-MD5"},
    {AUTH_PLAIN, "PLAIN"},
    {AUTH_LOGIN, "LOGIN"},
    {AUTH_EXTERNAL, "EXTERNAL"},
};
#define NMECHS (sizeof mechs / sizeof mechs[0])

/* 4D's name for "an OAuth 2.0 bearer token, however the server takes it": not a SASL name, so
 * it stays out of mechs[] (a server advertising "OAUTH2" offers nothing we know). */
#define OAUTH2_NAME "OAUTH2"

auth_mech_t email__auth_mech_from_name(const char *name)
{
    if (!email__strcasecmp(name, OAUTH2_NAME))
        return AUTH_OAUTH2;
    for (size_t i = 0; i < NMECHS; i++)
        if (!email__strcasecmp(name, mechs[i].name))
            return mechs[i].mech;
    return AUTH_NONE;
}

const char *email__auth_mech_name(auth_mech_t mech)
{
    if (mech == AUTH_OAUTH2)
        return OAUTH2_NAME;
    for (size_t i = 0; i < NMECHS; i++)
        if (mechs[i].mech == mech)
            return mechs[i].name;
    return "NONE";
}

bool email__auth_mech_is_scram(auth_mech_t mech)
{
    return mech == AUTH_SCRAM_SHA256 || mech == AUTH_SCRAM_SHA1;
}

unsigned email__auth_parse_mechs(const char *list)
{
    unsigned set = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - start);
        for (size_t i = 0; n && i < NMECHS; i++)
            if (strlen(mechs[i].name) == n && !email__strncasecmp(start, mechs[i].name, n))
                set |= mechs[i].mech;
    }
    return set;
}

/* Whether the credentials allow mechanism m when choosing the strongest. */
static bool usable(auth_mech_t m, const auth_creds_t *c, bool have_cert)
{
    bool password = c->password && *c->password, token = c->token && *c->token;
    switch (m) {
    case AUTH_XOAUTH2:
    case AUTH_OAUTHBEARER:
        return token;
    case AUTH_SCRAM_SHA256:
    case AUTH_SCRAM_SHA1:
        return password && email__scram_password_ok(c->password);
    case AUTH_EXTERNAL:
        return have_cert && !password && !token;
    default:
        return password;
    }
}

auth_mech_t email__auth_choose(unsigned offered, auth_mech_t wanted, unsigned limit,
                               const auth_creds_t *creds, bool have_cert)
{
    if (limit)
        offered &= limit;
    if (wanted == AUTH_OAUTH2) /* the older, more widely offered one first */
        return (offered & AUTH_XOAUTH2)      ? AUTH_XOAUTH2
               : (offered & AUTH_OAUTHBEARER) ? AUTH_OAUTHBEARER
                                              : AUTH_NONE;
    if (wanted != AUTH_NONE)
        return (offered & wanted) ? wanted : AUTH_NONE;
    /* mechs[] is ordered strongest first */
    for (size_t i = 0; i < NMECHS; i++)
        if ((offered & mechs[i].mech) && usable(mechs[i].mech, creds, have_cert))
            return mechs[i].mech;
    return AUTH_NONE;
}

/* RFC 5801's saslname: "," would end the gs2-header's field and "=" starts an escape. */
static int put_saslname(email_buf_t *b, const char *name)
{
    int rc = 0;
    for (const char *p = name; *p && !rc; p++)
        rc = *p == ',' ? email__buf_puts(b, "=2C")
             : *p == '=' ? email__buf_puts(b, "=3D")
                         : email__buf_putc(b, *p);
    return rc;
}

/* The user name and the token were checked free of control characters (email__transporter_new_ex):
 * \001 separates the fields of both payloads. */
static int oauth_payload(auth_mech_t mech, const auth_creds_t *c, email_buf_t *raw)
{
    const char *user = c->user ? c->user : "";
    if (mech == AUTH_XOAUTH2)
        return email__buf_printf(raw, "user=%s\001auth=Bearer %s\001\001", user, c->token);
    /* RFC 7628 gs2-header: "n,a=<saslname>," or, without a user name, "n,," */
    int rc = email__buf_puts(raw, *user ? "n,a=" : "n,");
    if (!rc)
        rc = put_saslname(raw, user);
    if (!rc)
        rc = email__buf_printf(raw, ",\001auth=Bearer %s\001\001", c->token);
    return rc;
}

int email__auth_start(auth_mech_t mech, const auth_creds_t *c, email_buf_t *cmd, email_buf_t *shown)
{
    int rc = 0;
    email_buf_t raw;
    email__buf_init(&raw);
    const char *name = email__auth_mech_name(mech);

    rc = email__buf_printf(cmd, "AUTH %s", name);
    if (!rc)
        rc = email__buf_printf(shown, "AUTH %s", name);
    if (rc)
        goto out;
    switch (mech) {
    case AUTH_PLAIN: {
        /* authzid NUL authcid NUL password, sent as the initial response */
        const char *u = c->user ? c->user : "", *p = c->password ? c->password : "";
        if ((rc = email__buf_putc(&raw, '\0')) || (rc = email__buf_puts(&raw, u)) ||
            (rc = email__buf_putc(&raw, '\0')) || (rc = email__buf_puts(&raw, p)))
            goto out;
        break;
    }
    case AUTH_XOAUTH2:
    case AUTH_OAUTHBEARER:
        if ((rc = oauth_payload(mech, c, &raw)))
            goto out;
        break;
    case AUTH_EXTERNAL:
        /* an empty initial response ("="): the identity is the certificate's (RFC 4954) */
        rc = email__buf_puts(cmd, " =");
        if (!rc)
            rc = email__buf_puts(shown, " =");
        goto out;
    case AUTH_LOGIN:
    case AUTH_CRAM_MD5:
        goto out; /* no initial response: the server's 334 challenges come first */
    default:
        rc = EMAIL_EINVAL;
        goto out;
    }
    if ((rc = email__buf_putc(cmd, ' ')) || (rc = email__base64_encode(cmd, raw.data, raw.len)) ||
        (rc = email__buf_puts(shown, " ****")))
        goto out;
out:
    if (raw.data)
        memset(raw.data, 0, raw.len);
    email__buf_free(&raw);
    return rc;
}

int email__auth_step(auth_mech_t mech, const auth_creds_t *c, int step, const char *challenge,
              email_buf_t *resp)
{
    int rc;
    email_buf_t raw;
    email__buf_init(&raw);

    switch (mech) {
    case AUTH_LOGIN: {
        /* 334 "Username:" then 334 "Password:"; answer in that order whatever the prompt says */
        const char *v = step == 0 ? c->user : step == 1 ? c->password : NULL;
        if (!v) {
            rc = EMAIL_EPROTO;
            break;
        }
        rc = email__base64_encode(resp, v, strlen(v));
        break;
    }
    case AUTH_CRAM_MD5: {
        if (step != 0 || (rc = email__base64_decode(&raw, challenge, strlen(challenge)))) {
            rc = EMAIL_EPROTO;
            break;
        }
        unsigned char mac[16];
        const char *p = c->password ? c->password : "";
        if (gnutls_hmac_fast(GNUTLS_MAC_MD5, p, strlen(p), raw.data, raw.len, mac) < 0) {
            rc = EMAIL_EAUTH;
            break;
        }
        email_buf_t line;
        email__buf_init(&line);
        rc = email__buf_printf(&line, "%s ", c->user ? c->user : "");
        for (size_t i = 0; !rc && i < sizeof mac; i++)
            rc = email__buf_printf(&line, "%02x", mac[i]);
        if (!rc)
            rc = email__base64_encode(resp, line.data, line.len);
        memset(line.data, 0, line.len);
        email__buf_free(&line);
        break;
    }
    case AUTH_XOAUTH2:
    case AUTH_OAUTHBEARER:
        /* a 334 here carries the server's error details; the answer is an empty line (RFC 7628) */
        rc = step == 0 ? email__buf_puts(resp, "") : EMAIL_EPROTO;
        if (!rc && mech == AUTH_OAUTHBEARER)
            rc = email__buf_puts(resp, "AQ==");
        break;
    default:
        rc = EMAIL_EPROTO;
    }
    if (raw.data)
        memset(raw.data, 0, raw.len);
    email__buf_free(&raw);
    return rc;
}

int email__auth_apop(const char *timestamp, const char *password, char hex[33])
{
    email_buf_t text;
    email__buf_init(&text);
    unsigned char digest[16];
    int rc = email__buf_printf(&text, "%s%s", timestamp, password ? password : "");
    if (!rc && gnutls_hash_fast(GNUTLS_DIG_MD5, text.data, text.len, digest) < 0)
        rc = EMAIL_EAUTH;
    for (size_t i = 0; !rc && i < sizeof digest; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (text.data)
        memset(text.data, 0, text.len);
    email__buf_free(&text);
    memset(digest, 0, sizeof digest);
    return rc;
}
