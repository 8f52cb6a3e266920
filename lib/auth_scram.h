/*
 * SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677), client side, without channel binding:
 * the messages of one exchange, base64-encoded as SMTP AUTH carries them. No I/O.
 */
#ifndef EMAIL_AUTH_SCRAM_H
#define EMAIL_AUTH_SCRAM_H

#include <stdbool.h>
#include "util.h"

typedef struct scram scram_t;

/* The fewest iterations accepted (RFC 5802 section 5.1 and RFC 7677 section 4: servers SHOULD
 * announce at least 4096). A man in the middle announcing fewer would get a proof that is cheap
 * to attack offline. */
#define SCRAM_MIN_ITERATIONS 4096
/* The most: each iteration runs on the event loop's thread (10^6 of SHA-256 take ~0.3 s). */
#define SCRAM_MAX_ITERATIONS 1000000

/*
 * An exchange for user/password; sha256 picks SCRAM-SHA-256, else SCRAM-SHA-1. NULL when out of
 * memory. The password must pass email__scram_password_ok.
 */
scram_t *email__scram_new(bool sha256, const char *user, const char *password);
/* Forgets every secret and frees. */
void email__scram_free(scram_t *s);
/*
 * A password SASLprep (RFC 4013) leaves as it is: printable ASCII. Others are refused rather than
 * sent unprepared (the server would derive another key and refuse with no clue why).
 */
bool email__scram_password_ok(const char *password);

/* The client-first message (the AUTH command's initial response), base64, appended to out. */
int email__scram_client_first(scram_t *s, email_buf_t *out);
/*
 * The answer to the server-first message (base64 in b64): the client-final message with its
 * proof, appended to out. EMAIL_EAUTH when the server's message is unacceptable (its nonce does
 * not extend ours, too few or too many iterations, a mandatory extension, an error), EMAIL_EPROTO
 * when it is malformed; *why says which in words (a static string).
 */
int email__scram_client_final(scram_t *s, const char *b64, email_buf_t *out, const char **why);
/*
 * Checks the server-final message (base64): 0 when its signature proves the server knows the
 * password, else EMAIL_EAUTH (or EMAIL_EPROTO when malformed) and *why.
 */
int email__scram_verify(scram_t *s, const char *b64, const char **why);
/* True once email__scram_verify accepted the server's signature. */
bool email__scram_verified(const scram_t *s);

/* Tests only: the next exchanges use this client nonce (NULL: random ones again). */
void email__scram_test_nonce(const char *nonce);

#endif
