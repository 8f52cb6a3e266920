/*
 * The POP3 engine's insides, shared by lib/pop3.c (bytes in and out, reading replies and
 * multi-line answers, the commands of the transaction state, the end of the session) and
 * lib/pop3_setup.c (greeting, CAPA, STLS, USER/PASS, APOP, SASL). Functions one file lends the
 * other start with email__pop3_.
 */
#ifndef EMAIL_POP3_INTERNAL_H
#define EMAIL_POP3_INTERNAL_H

#include "auth_scram.h"
#include "pop3.h"
#include "util.h"

/* Session states; the names in pop3.c's table follow this order. */
enum p3_state {
    P3_CONNECTING, P3_GREETING, P3_CAPA, P3_STLS, P3_TLS_HANDSHAKE, P3_AUTH, P3_USER, P3_PASS,
    P3_APOP, P3_READY, P3_QUIT, P3_CLOSED
};

/* How the next bytes are read: a status line, the lines of a multi-line answer, or a body. */
enum p3_reading { R_STATUS, R_LINES, R_BODY };

/* The longest line accepted (RFC 2449 allows 512 octets for a status line; be lenient). */
#define POP3_MAX_LINE 4096
/* Body bytes after which a RETR counts as progress for the caller's reply timer. */
#define POP3_PROGRESS_BYTES 65536

struct pop3_engine {
    pop3_engine_config_t cfg;
    engine_events_t ev;
    void *ud;
    enum p3_state state;
    enum p3_reading reading;
    int body_state;
    email_buf_t line;        /* the line being read */
    email_buf_t out;         /* bytes not yet written */
    size_t handed;           /* bytes at the start of out given by the last take */
    email_status_t status;   /* setup outcome, then why the session ended */
    bool failed;             /* status holds a failure (kept through QUIT's reply) */

    unsigned caps, sasl;     /* POP3_CAP_..., the SASL mechanisms of CAPA */
    char timestamp[256];     /* the greeting's APOP timestamp ("" none) */
    auth_mech_t mech;        /* the SASL mechanism under way */
    int auth_step;
    scram_t *scram;

    queue_t queue;           /* pop3_cmd_t submitted, not sent */
    queue_t flight;          /* sent, awaiting their answers, oldest first */
    size_t nflight;
    pop3_cmd_t *current;     /* the command whose multi-line answer is being read */
    uint64_t replies, body_mark;
    bool quit_asked;
};

/* pop3.c */
void email__pop3_set_state(pop3_engine_t *e, enum p3_state s);
/* Appends a command line (CRLF added) and logs it as `shown` (NULL: as it is). 0 or ENOMEM. */
int email__pop3_send_line(pop3_engine_t *e, const char *line, const char *shown);
/* Ends the session now with that failure (closed is reported). */
void email__pop3_fail(pop3_engine_t *e, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Records the failure and says QUIT; the session ends at its reply. */
void email__pop3_quit_after_failure(pop3_engine_t *e, int error, const char *fmt, ...)
    EMAIL_PRINTF(3, 4);
/* Authenticated: the transaction state begins. */
void email__pop3_ready(pop3_engine_t *e);

/* pop3_setup.c */
/* A status line before the transaction state (ok: "+OK"; cont: a SASL "+ " continuation). */
void email__pop3_setup_status(pop3_engine_t *e, bool ok, bool cont, const char *line);
/* A line of CAPA's answer, and its end. */
void email__pop3_capa_line(pop3_engine_t *e, const char *line);
void email__pop3_capa_end(pop3_engine_t *e);
/* The text after "+OK " / "-ERR " ("" when none). */
const char *email__pop3_text(const char *line);

#endif
