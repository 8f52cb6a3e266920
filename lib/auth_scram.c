/*
 * SCRAM client (RFC 5802; SHA-256 from RFC 7677) on GnuTLS's primitives. Without channel
 * binding ("n,,"): TLS already protects the exchange, and the server's signature still proves it
 * knows the password, so a server that does not is refused even when TLS was fooled.
 */
#include "auth_scram.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "encode.h"

#define SCRAM_MAX_HASH 32 /* SHA-256's; SHA-1's is 20 */
#define NONCE_BYTES 24    /* 32 base64 characters */

struct scram {
    gnutls_mac_algorithm_t mac;
    gnutls_digest_algorithm_t digest;
    size_t hlen;
    char *password;
    email_buf_t auth_message;     /* client-first-bare, then ",server-first,client-final-..." */
    size_t nonce_off, bare_len;   /* our nonce: auth_message.data[nonce_off, bare_len) */
    unsigned char server_signature[SCRAM_MAX_HASH];
    bool answered;                /* the client-final went: the server signature is known */
    bool verified;
};

static const char *test_nonce;

void email__scram_test_nonce(const char *nonce)
{
    test_nonce = nonce;
}

bool email__scram_password_ok(const char *password)
{
    for (const char *p = password; p && *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return password != NULL;
}

scram_t *email__scram_new(bool sha256, const char *user, const char *password)
{
    scram_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->mac = sha256 ? GNUTLS_MAC_SHA256 : GNUTLS_MAC_SHA1;
    s->digest = sha256 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1;
    s->hlen = sha256 ? 32 : 20;
    email__buf_init(&s->auth_message);
    s->password = email__strdup(password ? password : "");
    /* client-first-bare: "n=" saslname ",r=" nonce (RFC 5802 section 7) */
    int rc = s->password ? email__buf_puts(&s->auth_message, "n=") : EMAIL_ENOMEM;
    for (const char *p = user ? user : ""; *p && !rc; p++)
        rc = *p == ',' ? email__buf_puts(&s->auth_message, "=2C")
             : *p == '=' ? email__buf_puts(&s->auth_message, "=3D")
                         : email__buf_putc(&s->auth_message, *p);
    if (!rc)
        rc = email__buf_puts(&s->auth_message, ",r=");
    s->nonce_off = s->auth_message.len;
    if (!rc && test_nonce) {
        rc = email__buf_puts(&s->auth_message, test_nonce);
    } else if (!rc) {
        unsigned char raw[NONCE_BYTES];
        rc = gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof raw) < 0
                 ? EMAIL_EAUTH
                 : email__base64_encode(&s->auth_message, raw, sizeof raw);
    }
    if (rc) {
        email__scram_free(s);
        return NULL;
    }
    s->bare_len = s->auth_message.len;
    return s;
}

void email__scram_free(scram_t *s)
{
    if (!s)
        return;
    email__free_secret(s->password);
    email__buf_free(&s->auth_message);
    gnutls_memset(s, 0, sizeof *s);
    free(s);
}

bool email__scram_verified(const scram_t *s)
{
    return s && s->verified;
}

int email__scram_client_first(scram_t *s, email_buf_t *out)
{
    /* gs2-header "n,,": no channel binding, no authorization identity */
    email_buf_t msg;
    email__buf_init(&msg);
    int rc = email__buf_puts(&msg, "n,,");
    if (!rc)
        rc = email__buf_append(&msg, s->auth_message.data, s->bare_len);
    if (!rc)
        rc = email__base64_encode(out, msg.data, msg.len);
    email__buf_free(&msg);
    return rc;
}

/* Decodes base64 into a NUL-terminated text (no NUL inside): 0, or EMAIL_EPROTO. */
static int decode_text(const char *b64, email_buf_t *out)
{
    if (email__base64_decode(out, b64, strlen(b64)) || email__buf_putc(out, '\0'))
        return EMAIL_EPROTO;
    out->len--;
    return strlen(out->data) == out->len ? 0 : EMAIL_EPROTO;
}

/* The server-first message's attributes, pointing into its text (split at the commas). */
typedef struct server_first {
    const char *nonce, *salt;
    unsigned long iterations;
} server_first_t;

/* "r=...,s=...,i=...[,extensions]" (RFC 5802 section 7); text is cut at its commas. */
static int parse_server_first(char *text, server_first_t *sf, const char **why)
{
    if (!strncmp(text, "m=", 2)) {
        *why = "the server requires an extension of SCRAM we do not know";
        return EMAIL_EAUTH;
    }
    if (!strncmp(text, "e=", 2)) {
        *why = "the server refused the exchange";
        return EMAIL_EAUTH;
    }
    char *attr[3];
    const char *names = "rsi";
    char *p = text;
    for (int i = 0; i < 3; i++) {
        if (!p || p[0] != names[i] || p[1] != '=') {
            *why = "the server's first message is malformed";
            return EMAIL_EPROTO;
        }
        attr[i] = p + 2;
        p = strchr(p, ',');
        if (p)
            *p++ = '\0';
    }
    char *end;
    sf->nonce = attr[0];
    sf->salt = attr[1];
    sf->iterations = strtoul(attr[2], &end, 10);
    if (*end || attr[2][0] < '0' || attr[2][0] > '9' || !*sf->salt) {
        *why = "the server's first message is malformed";
        return EMAIL_EPROTO;
    }
    return 0;
}

/* The server's nonce must extend ours: else this answer was made for another exchange. */
static int check_server_first(const scram_t *s, const server_first_t *sf, const char **why)
{
    const char *ours = s->auth_message.data + s->nonce_off;
    size_t n = s->bare_len - s->nonce_off;
    if (strncmp(sf->nonce, ours, n) || !sf->nonce[n]) {
        *why = "the server's nonce does not extend ours";
        return EMAIL_EAUTH;
    }
    if (sf->iterations < SCRAM_MIN_ITERATIONS || sf->iterations > SCRAM_MAX_ITERATIONS) {
        *why = sf->iterations < SCRAM_MIN_ITERATIONS
                   ? "the server asks for fewer than 4096 iterations (too weak)"
                   : "the server asks for more than 1000000 iterations";
        return EMAIL_EAUTH;
    }
    return 0;
}

/* RFC 5802 section 3: the client proof, and the server signature kept for later. */
static int compute_proof(scram_t *s, const email_buf_t *salt, unsigned iterations,
                         unsigned char *proof)
{
    unsigned char salted[SCRAM_MAX_HASH], client_key[SCRAM_MAX_HASH];
    unsigned char stored_key[SCRAM_MAX_HASH], server_key[SCRAM_MAX_HASH];
    unsigned char signature[SCRAM_MAX_HASH];
    gnutls_datum_t key = {(unsigned char *)s->password, (unsigned)strlen(s->password)};
    gnutls_datum_t saltd = {(unsigned char *)salt->data, (unsigned)salt->len};
    const char *am = s->auth_message.data;
    size_t amlen = s->auth_message.len;
    int rc = EMAIL_EAUTH;
    if (gnutls_pbkdf2(s->mac, &key, &saltd, iterations, salted, s->hlen) < 0 ||
        gnutls_hmac_fast(s->mac, salted, s->hlen, "Client Key", 10, client_key) < 0 ||
        gnutls_hash_fast(s->digest, client_key, s->hlen, stored_key) < 0 ||
        gnutls_hmac_fast(s->mac, stored_key, s->hlen, am, amlen, signature) < 0 ||
        gnutls_hmac_fast(s->mac, salted, s->hlen, "Server Key", 10, server_key) < 0 ||
        gnutls_hmac_fast(s->mac, server_key, s->hlen, am, amlen, s->server_signature) < 0)
        goto out;
    for (size_t i = 0; i < s->hlen; i++)
        proof[i] = client_key[i] ^ signature[i];
    rc = 0;
out:
    gnutls_memset(salted, 0, sizeof salted);
    gnutls_memset(client_key, 0, sizeof client_key);
    gnutls_memset(stored_key, 0, sizeof stored_key);
    gnutls_memset(server_key, 0, sizeof server_key);
    gnutls_memset(signature, 0, sizeof signature);
    return rc;
}

int email__scram_client_final(scram_t *s, const char *b64, email_buf_t *out, const char **why)
{
    email_buf_t text, salt, final;
    email__buf_init(&text);
    email__buf_init(&salt);
    email__buf_init(&final);
    server_first_t sf;
    unsigned char proof[SCRAM_MAX_HASH];
    int rc = EMAIL_EPROTO;
    *why = "the server's first message is malformed";
    if (s->answered || decode_text(b64, &text) ||
        (rc = email__buf_printf(&s->auth_message, ",%s", text.data)) ||
        (rc = parse_server_first(text.data, &sf, why)) || (rc = check_server_first(s, &sf, why)))
        goto out;
    if (email__base64_decode(&salt, sf.salt, strlen(sf.salt))) {
        rc = EMAIL_EPROTO;
        goto out;
    }
    /* "c=biws" is base64("n,,"), the gs2-header of the client-first message */
    if ((rc = email__buf_printf(&final, "c=biws,r=%s", sf.nonce)) ||
        (rc = email__buf_printf(&s->auth_message, ",%s", final.data)))
        goto out;
    *why = "the key derivation failed";
    if ((rc = compute_proof(s, &salt, (unsigned)sf.iterations, proof)))
        goto out;
    if (!(rc = email__buf_puts(&final, ",p=")) &&
        !(rc = email__base64_encode(&final, proof, s->hlen)))
        rc = email__base64_encode(out, final.data, final.len);
    s->answered = rc == 0;
out:
    gnutls_memset(proof, 0, sizeof proof);
    if (final.data)
        gnutls_memset(final.data, 0, final.len);
    email__buf_free(&text);
    email__buf_free(&salt);
    email__buf_free(&final);
    return rc;
}

int email__scram_verify(scram_t *s, const char *b64, const char **why)
{
    email_buf_t text, sig;
    email__buf_init(&text);
    email__buf_init(&sig);
    int rc = EMAIL_EPROTO;
    *why = "the server's final message is malformed";
    if (!s->answered || s->verified || decode_text(b64, &text))
        goto out;
    if (!strncmp(text.data, "e=", 2)) {
        *why = "the server refused the proof";
        rc = EMAIL_EAUTH;
        goto out;
    }
    size_t n = strcspn(text.data, ",");
    if (strncmp(text.data, "v=", 2) || email__base64_decode(&sig, text.data + 2, n - 2))
        goto out;
    unsigned char diff = sig.len != s->hlen;
    for (size_t i = 0; i < s->hlen && i < sig.len; i++)
        diff |= (unsigned char)(sig.data[i] ^ s->server_signature[i]);
    rc = diff ? EMAIL_EAUTH : 0;
    *why = diff ? "the server's signature is wrong: it does not know the password" : "";
    s->verified = !diff;
out:
    email__buf_free(&text);
    email__buf_free(&sig);
    return rc;
}
