/* SASL mechanisms for SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034), and POP3's APOP: which to
 * use, and what to answer. No I/O. */
#ifndef EMAIL_AUTH_H
#define EMAIL_AUTH_H

#include <stdbool.h>
#include "util.h"

typedef enum {
    AUTH_NONE = 0,
    AUTH_LOGIN = 1 << 0,
    AUTH_PLAIN = 1 << 1,
    AUTH_CRAM_MD5 = 1 << 2,
    AUTH_XOAUTH2 = 1 << 3,
    AUTH_OAUTHBEARER = 1 << 4,
    AUTH_SCRAM_SHA256 = 1 << 5,
    AUTH_SCRAM_SHA1 = 1 << 6,
    AUTH_EXTERNAL = 1 << 7,     /* RFC 4422 appendix A: the TLS client certificate */
    /* 4D's "OAUTH2": XOAUTH2, or OAUTHBEARER when only that is offered (never on the wire) */
    AUTH_OAUTH2 = AUTH_XOAUTH2 | AUTH_OAUTHBEARER
} auth_mech_t;

/* Bit set of the mechanisms named in an EHLO "AUTH" line's arguments (unknown ones ignored). */
unsigned email__auth_parse_mechs(const char *list);
/* AUTH_... for a name ("PLAIN", case-insensitive; 4D's "OAUTH2" too), AUTH_NONE when unknown. */
auth_mech_t email__auth_mech_from_name(const char *name);
/* The name of a mechanism ("OAUTH2" for AUTH_OAUTH2), "NONE" for anything else. */
const char *email__auth_mech_name(auth_mech_t mech);
/* True for SCRAM-SHA-256 and SCRAM-SHA-1, whose exchange lib/auth_scram.c keeps. */
bool email__auth_mech_is_scram(auth_mech_t mech);

typedef struct auth_creds {
    const char *user, *password, *token;
} auth_creds_t;

/*
 * The mechanism to use among `offered`: `wanted` when set (AUTH_NONE if not offered; for
 * AUTH_OAUTH2, XOAUTH2 before OAUTHBEARER), else the strongest offered one the credentials
 * allow: OAuth with a token; SCRAM with a password SASLprep leaves as it is; CRAM-MD5, PLAIN,
 * LOGIN with any password; EXTERNAL with a client certificate and neither password nor token.
 * `limit` restricts the candidates (a bit set; 0 = all).
 */
auth_mech_t email__auth_choose(unsigned offered, auth_mech_t wanted, unsigned limit,
                               const auth_creds_t *creds, bool have_cert);

/*
 * The AUTH command line (without CRLF) of a mechanism other than SCRAM into cmd, and the same
 * with every secret masked as "****" into shown (for logs). The server's 334 challenges, if any,
 * are answered with email__auth_step. SCRAM's exchange is lib/auth_scram.c's.
 */
int email__auth_start(auth_mech_t mech, const auth_creds_t *creds, email_buf_t *cmd,
                      email_buf_t *shown);
/*
 * The answer to the step-th 334 challenge (step counts from 0), challenge = the base64 text of the
 * 334 reply. The answer is written into resp (without CRLF); it is always a secret (log "****").
 * EMAIL_EPROTO when the challenge is malformed or more steps come than the mechanism has.
 */
int email__auth_step(auth_mech_t mech, const auth_creds_t *creds, int step, const char *challenge,
              email_buf_t *resp);
/* POP3's APOP (RFC 1939 section 7): MD5 of the greeting's timestamp and the password, in
 * lower-case hex (a secret: log "****"). 0, EMAIL_ENOMEM or EMAIL_EAUTH. */
int email__auth_apop(const char *timestamp, const char *password, char hex[33]);

#endif
