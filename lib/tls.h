/*
 * A GnuTLS client session driven over memory: ciphertext from the transport goes in with
 * email__tls_feed, plaintext comes out through a callback; plaintext goes in with email__tls_write,
 * ciphertext comes out through a callback that the caller writes to the transport. No I/O, no
 * blocking. Loop thread only.
 */
#ifndef EMAIL_TLS_H
#define EMAIL_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tls tls_t;
/* A finished session's data (its ticket), for the next connection to the same server. */
typedef struct tls_resume tls_resume_t;

typedef struct tls_config {
    const char *host;      /* the name (or address) the certificate must match; SNI for names */
    const char *ca_file;   /* extra trust anchors (PEM) besides the system store, or NULL */
    const char *cert_file; /* client certificate (PEM), or NULL */
    const char *key_file;  /* its private key (PEM); NULL: in cert_file */
    bool no_verify;        /* no certificate checks at all (tests only) */
    tls_resume_t **resume; /* NULL, or where the session to resume is kept: tried when set,
                              replaced when this session ends well */
} tls_config_t;

typedef struct tls_callbacks {
    /* Ciphertext to write to the transport: 0 or EMAIL_E... */
    int (*send)(void *ud, const char *data, size_t n);
    /* Plaintext from the server. */
    void (*recv)(void *ud, const char *data, size_t n);
    /* The handshake ended: error 0 (established) or EMAIL_E... with a text naming the reason. */
    void (*handshake)(void *ud, int error, const char *text);
    /* The session failed after the handshake (bad record, alert): EMAIL_ETLS and a text. */
    void (*failed)(void *ud, int error, const char *text);
} tls_callbacks_t;

/* 0, or EMAIL_ETLS and err naming the file when the certificate and key cannot be loaded. */
int email__tls_check_client_cert(const char *cert_file, const char *key_file, char *err,
                                 size_t errlen);
void email__tls_resume_free(tls_resume_t *r);

/* NULL + err when the credentials cannot be loaded (CA file unreadable, ...). */
tls_t *email__tls_new(const tls_config_t *cfg, const tls_callbacks_t *cb, void *ud, char *err,
               size_t errlen);
/* Sends the ClientHello. */
int email__tls_start(tls_t *t);
/* Ciphertext from the server. */
void email__tls_feed(tls_t *t, const char *data, size_t n);
/* Plaintext to the server (encrypted and handed to `send`). */
int email__tls_write(tls_t *t, const char *data, size_t n);
/* The server's first bytes (at most 8) and how many: what the peer was speaking, for the
 * caller to explain a failed handshake in its own protocol's words. */
size_t email__tls_first_bytes(const tls_t *t, const char **bytes);
/* True when the handshake resumed an earlier session (no full handshake). */
bool email__tls_resumed(const tls_t *t);
/* Sends close_notify (we write no more; the peer's is not awaited). */
void email__tls_bye(tls_t *t);
/* "TLS1.3 with AES-256-GCM ..." once established. */
void email__tls_describe(const tls_t *t, char *out, size_t size);
void email__tls_free(tls_t *t);

#endif
