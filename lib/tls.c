/*
 * GnuTLS over memory buffers (the knot-resolver way): the pull function reads what email__tls_feed
 * queued and says EAGAIN when nothing is left; the push function hands ciphertext to the caller,
 * which writes it with uv_write. Verification: system trust store + optional CA file, host name
 * (or IP address) checked against the certificate, SNI for names.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "util.h"

/* Credentials are costly to build (the system store is parsed): one per CA file and client
 * certificate, shared. */
typedef struct creds {
    gnutls_certificate_credentials_t x509;
    char *ca_file, *cert_file, *key_file;
    int refs;
    struct creds *next;
} creds_t;

struct tls_resume {
    gnutls_datum_t data;
};

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static creds_t *creds_list;

struct tls {
    tls_callbacks_t cb;
    void *ud;
    gnutls_session_t session;
    creds_t *creds;
    char *host;
    tls_resume_t **resume;
    bool no_verify;
    bool handshaking, established, failed;
    bool kept;               /* this session is in *resume */
    email_buf_t in;          /* ciphertext received, not yet pulled by GnuTLS */
    size_t in_off;
    size_t received;         /* ciphertext bytes received in all */
    char first[8];           /* the server's first bytes, for the caller's diagnosis */
    size_t nfirst;
};

static bool same_path(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int load_client_cert(gnutls_certificate_credentials_t x509, const char *cert,
                            const char *key, char *err, size_t errlen)
{
    int rc = gnutls_certificate_set_x509_key_file(x509, cert, key ? key : cert,
                                                  GNUTLS_X509_FMT_PEM);
    if (rc >= 0)
        return 0;
    snprintf(err, errlen, "client certificate \"%s\"%s%s%s: %s", cert, key ? " with key \"" : "",
             key ? key : "", key ? "\"" : "", gnutls_strerror(rc));
    return EMAIL_ETLS;
}

int email__tls_check_client_cert(const char *cert_file, const char *key_file, char *err,
                                 size_t errlen)
{
    gnutls_certificate_credentials_t x509;
    if (gnutls_certificate_allocate_credentials(&x509) < 0) {
        snprintf(err, errlen, "out of memory");
        return EMAIL_ENOMEM;
    }
    int rc = load_client_cert(x509, cert_file, key_file, err, errlen);
    gnutls_certificate_free_credentials(x509);
    return rc;
}

/* The trust anchors and the client certificate into fresh credentials: 0, or err. */
static int creds_load(creds_t *c, const char *ca_file, const char *cert, const char *key,
                      char *err, size_t errlen)
{
    int rc = gnutls_certificate_allocate_credentials(&c->x509);
    if (rc < 0) {
        snprintf(err, errlen, "TLS credentials: %s", gnutls_strerror(rc));
        return EMAIL_ETLS;
    }
    /* a machine without a system store still works with an explicit CA file */
    gnutls_certificate_set_x509_system_trust(c->x509);
    if (ca_file) {
        rc = gnutls_certificate_set_x509_trust_file(c->x509, ca_file, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            snprintf(err, errlen, "CA file \"%s\": %s", ca_file,
                     rc == 0 ? "no certificate in it" : gnutls_strerror(rc));
            return EMAIL_ETLS;
        }
    }
    if (cert && load_client_cert(c->x509, cert, key, err, errlen))
        return EMAIL_ETLS;
    c->ca_file = email__strdup(ca_file);
    c->cert_file = email__strdup(cert);
    c->key_file = email__strdup(key);
    if ((ca_file && !c->ca_file) || (cert && !c->cert_file) || (key && !c->key_file)) {
        snprintf(err, errlen, "out of memory");
        return EMAIL_ENOMEM;
    }
    return 0;
}

static void creds_destroy(creds_t *c)
{
    if (c->x509)
        gnutls_certificate_free_credentials(c->x509);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

static creds_t *creds_get(const tls_config_t *cfg, char *err, size_t errlen)
{
    pthread_mutex_lock(&creds_lock);
    creds_t *c = creds_list;
    while (c && !(same_path(c->ca_file, cfg->ca_file) && same_path(c->cert_file, cfg->cert_file) &&
                  same_path(c->key_file, cfg->key_file)))
        c = c->next;
    if (c) {
        c->refs++;
        pthread_mutex_unlock(&creds_lock);
        return c;
    }
    c = calloc(1, sizeof *c);
    if (!c || creds_load(c, cfg->ca_file, cfg->cert_file, cfg->key_file, err, errlen)) {
        if (!c)
            snprintf(err, errlen, "out of memory");
        else
            creds_destroy(c);
        pthread_mutex_unlock(&creds_lock);
        return NULL;
    }
    c->refs = 1;
    c->next = creds_list;
    creds_list = c;
    pthread_mutex_unlock(&creds_lock);
    return c;
}

static void creds_put(creds_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&creds_lock);
    if (--c->refs == 0) {
        creds_t **p = &creds_list;
        while (*p != c)
            p = &(*p)->next;
        *p = c->next;
        creds_destroy(c);
    }
    pthread_mutex_unlock(&creds_lock);
}

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    tls_t *t = p;
    size_t left = t->in.len - t->in_off;
    if (!left) {
        gnutls_transport_set_errno(t->session, EAGAIN);
        return -1;
    }
    if (n > left)
        n = left;
    memcpy(buf, t->in.data + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in.len) {
        email__buf_reset(&t->in);
        t->in_off = 0;
    }
    return (ssize_t)n;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
    tls_t *t = p;
    if (t->cb.send(t->ud, data, n) != 0) {
        gnutls_transport_set_errno(t->session, EPIPE);
        return -1;
    }
    return (ssize_t)n;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

tls_t *email__tls_new(const tls_config_t *cfg, const tls_callbacks_t *cb, void *ud, char *err,
               size_t errlen)
{
    tls_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cb = *cb;
    t->ud = ud;
    t->no_verify = cfg->no_verify;
    t->host = email__strdup(cfg->host);
    email__buf_init(&t->in);
    t->resume = cfg->resume;
    t->creds = creds_get(cfg, err, errlen);
    if (!t->host || !t->creds) {
        email__tls_free(t);
        return NULL;
    }
    int rc = gnutls_init(&t->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (rc == 0)
        rc = gnutls_set_default_priority(t->session);
    if (rc == 0)
        rc = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->creds->x509);
    /* SNI carries names only (RFC 6066), never a literal address */
    if (rc == 0 && !is_ip(t->host))
        rc = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, t->host, strlen(t->host));
    /* a stale or refused ticket only costs the full handshake */
    if (rc == 0 && t->resume && *t->resume)
        gnutls_session_set_data(t->session, (*t->resume)->data.data, (*t->resume)->data.size);
    if (rc < 0) {
        snprintf(err, errlen, "TLS setup: %s", gnutls_strerror(rc));
        email__tls_free(t);
        return NULL;
    }
    if (!t->no_verify)
        gnutls_session_set_verify_cert(t->session, t->host, 0);
    gnutls_transport_set_ptr(t->session, t);
    gnutls_transport_set_pull_function(t->session, pull);
    gnutls_transport_set_push_function(t->session, push);
    return t;
}

void email__tls_resume_free(tls_resume_t *r)
{
    if (!r)
        return;
    gnutls_free(r->data.data);
    free(r);
}

/* The session is kept for the next connection as soon as it can be resumed: after the
 * handshake with TLS 1.2, once the server's ticket came with TLS 1.3 (after the handshake). The
 * next connection may start before this one ends, so not at the end. */
static void keep_session(tls_t *t)
{
    if (!t->resume || t->kept || !t->established)
        return;
    if (gnutls_protocol_get_version(t->session) == GNUTLS_TLS1_3 &&
        !(gnutls_session_get_flags(t->session) & GNUTLS_SFLAGS_SESSION_TICKET))
        return;
    tls_resume_t *r = calloc(1, sizeof *r);
    if (!r || gnutls_session_get_data2(t->session, &r->data) < 0) {
        free(r);
        return;
    }
    t->kept = true;
    email__tls_resume_free(*t->resume);
    *t->resume = r;
}

void email__tls_free(tls_t *t)
{
    if (!t)
        return;
    if (t->session)
        gnutls_deinit(t->session);
    creds_put(t->creds);
    email__buf_free(&t->in);
    free(t->host);
    free(t);
}

/* The reason a verification failed, in words and as an error code. */
static int verify_error(tls_t *t, char *text, size_t size)
{
    unsigned status = gnutls_session_get_verify_cert_status(t->session);
    gnutls_datum_t out = {NULL, 0};
    gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
    const char *why = out.data ? (const char *)out.data : "verification failed";
    int code = EMAIL_ECERT;
    if (status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
        code = EMAIL_ECERTEXPIRED;
    else if (status & GNUTLS_CERT_UNEXPECTED_OWNER)
        code = EMAIL_ECERTNAME;
    if (code == EMAIL_ECERTNAME)
        snprintf(text, size, "the server's certificate does not match \"%s\": %s", t->host, why);
    else if (code == EMAIL_ECERTEXPIRED)
        snprintf(text, size, "the server's certificate has expired or is not yet valid: %s", why);
    else
        snprintf(text, size, "the server's certificate is not trusted: %s", why);
    gnutls_free(out.data);
    return code;
}

static void handshake_step(tls_t *t)
{
    int rc = gnutls_handshake(t->session);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
        return;
    t->handshaking = false;
    if (rc == 0) {
        t->established = true;
        keep_session(t);
        t->cb.handshake(t->ud, 0, "");
        return;
    }
    char text[512];
    int code = EMAIL_ETLS;
    t->failed = true;
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        code = verify_error(t, text, sizeof text);
    } else {
        snprintf(text, sizeof text, "TLS handshake failed: %s", gnutls_strerror(rc));
    }
    t->cb.handshake(t->ud, code, text);
}

int email__tls_start(tls_t *t)
{
    t->handshaking = true;
    handshake_step(t);
    return 0;
}

void email__tls_feed(tls_t *t, const char *data, size_t n)
{
    if (t->failed)
        return;
    if (t->nfirst < sizeof t->first) {
        size_t k = sizeof t->first - t->nfirst;
        memcpy(t->first + t->nfirst, data, n < k ? n : k);
        t->nfirst += n < k ? n : k;
    }
    t->received += n;
    if (email__buf_append(&t->in, data, n)) {
        t->failed = true;
        t->cb.failed(t->ud, EMAIL_ENOMEM, "out of memory");
        return;
    }
    if (t->handshaking) {
        handshake_step(t);
        if (!t->established)
            return;
    }
    char buf[16384];
    /* read every whole record we have: GnuTLS may hold decrypted bytes beyond what we asked */
    while (t->established && !t->failed) {
        ssize_t got = gnutls_record_recv(t->session, buf, sizeof buf);
        keep_session(t); /* a TLS 1.3 ticket may have come */
        if (got > 0) {
            t->cb.recv(t->ud, buf, (size_t)got);
            continue;
        }
        if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED) {
            /* TLS 1.3: after a NewSessionTicket GnuTLS says AGAIN even with records still
             * queued; only stop once nothing is left to decrypt */
            if (t->in.len - t->in_off > 0 || gnutls_record_check_pending(t->session) > 0)
                continue;
            break;
        }
        t->failed = true;
        if (got == 0)
            t->cb.failed(t->ud, EMAIL_ECLOSED, "the server closed the TLS session");
        else {
            char text[256];
            snprintf(text, sizeof text, "TLS failure: %s", gnutls_strerror((int)got));
            t->cb.failed(t->ud, EMAIL_ETLS, text);
        }
    }
}

int email__tls_write(tls_t *t, const char *data, size_t n)
{
    if (!t->established || t->failed)
        return EMAIL_ETLS;
    while (n) {
        ssize_t sent = gnutls_record_send(t->session, data, n);
        if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED)
            continue; /* push never blocks: only an interrupted call comes back */
        if (sent < 0)
            return EMAIL_ETLS;
        data += sent;
        n -= (size_t)sent;
    }
    return 0;
}

bool email__tls_resumed(const tls_t *t)
{
    return t->established && gnutls_session_is_resumed(t->session);
}

void email__tls_bye(tls_t *t)
{
    if (t->established && !t->failed)
        gnutls_bye(t->session, GNUTLS_SHUT_WR); /* push never blocks: one call does it */
}

size_t email__tls_first_bytes(const tls_t *t, const char **bytes)
{
    *bytes = t->first;
    return t->nfirst;
}

void email__tls_describe(const tls_t *t, char *out, size_t size)
{
    const char *version = gnutls_protocol_get_name(gnutls_protocol_get_version(t->session));
    const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(t->session));
    char *desc = gnutls_session_get_desc(t->session);
    snprintf(out, size, "%s, cipher %s%s%s", version ? version : "TLS", cipher ? cipher : "?",
             desc ? ", " : "", desc ? desc : "");
    gnutls_free(desc);
}
