/*
 * The engine's insides, shared by its files: protocol.c (the core: bytes in and out, the FIFO of
 * expected replies, the end of the session), protocol_setup.c (greeting, EHLO/HELO, STARTTLS,
 * AUTH), protocol_txn.c (MAIL, RCPT, DATA or BDAT, bodies, each job's outcome) and
 * protocol_envelope.c (the MAIL and RCPT lines: their parameters, international addresses).
 * Not for use outside lib/protocol*.c. Functions one file lends another start with smtp__.
 */
#ifndef EMAIL_PROTOCOL_INTERNAL_H
#define EMAIL_PROTOCOL_INTERNAL_H

#include "auth_scram.h"
#include "encode.h"
#include "protocol.h"
#include "reply.h"
#include "ring.h"

/* Session states; the names in protocol.c's table follow this order. */
enum state {
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_STARTTLS,
    ST_TLS_HANDSHAKE,
    ST_AUTH,
    ST_READY,
    ST_QUIT,
    ST_CLOSED,
    ST_CONNECTING       /* made with wait_start: nothing happens before email__smtp_engine_start */
};

/* What a reply at the head of the FIFO answers. */
enum cmd { CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_EOD, CMD_RSET, CMD_BDAT, CMD_BDAT_LAST };

/* Phases of a job. */
enum phase { PH_QUEUED, PH_SENT, PH_BODY, PH_EOD, PH_DONE };

typedef struct pending_reply {
    enum cmd cmd;
    smtp_job_t *job;
    uint64_t end;            /* output offset just past the command (and its data) */
} pending_reply_t;

#define BODY_CHUNK 65536

struct smtp_engine {
    smtp_engine_config_t cfg;
    smtp_engine_callbacks_t cb;
    void *ud;
    enum state state;
    smtp_reply_parser_t parser;
    email_status_t status;   /* setup outcome, and the reason the session ended */

    unsigned caps;
    uint64_t size_limit;
    unsigned auth_mechs;
    auth_mech_t auth_used;
    int auth_step;
    scram_t *scram;          /* the SCRAM exchange under way (its keys) */
    int auth_error;          /* we cancelled the exchange ("*"): why, as an EMAIL_E... code */
    const char *auth_why;    /* and in words (static), reported at the server's answer */

    email_buf_t out;         /* bytes not yet taken */
    uint64_t taken;          /* bytes handed to the caller so far */
    uint64_t written;        /* bytes the caller reported written */

    /* jobs: queued (not started) in a list; in flight are referenced by the FIFO */
    queue_t queue;           /* jobs submitted, not started (smtp_job_t.node) */
    smtp_job_t *body_job;    /* job whose body is being sent */
    email_dotstuff_t dot;
    bool body_wait;          /* a DATA awaits its 354, or a BDAT LAST its reply: nothing more
                                may be sent before it */
    bool bdat;               /* the body being sent goes as BDAT chunks (RFC 3030) */
    email_crlf_t crlf;       /* line-end normalisation of BDAT chunks */
    email_buf_t chunk;       /* one normalised BDAT chunk */

    email_ring_t fifo;       /* pending_reply_t: the replies expected, oldest first */
    size_t jobs_in_flight;

    size_t handed;           /* bytes at the start of out given by the last take */
    uint64_t setup_end;      /* output offset just past the last setup command (or QUIT) */
    uint64_t feed_seen;      /* bytes handed over before the bytes being fed arrived */
    uint64_t replies;        /* complete replies received */
    smtp_job_t *progress_job; /* job whose body is being written out */

    bool quit_wanted;
    bool dsn_noted;          /* the log said the server does not offer DSN (once a session) */
    bool ready_reported;
    bool dying;              /* a body could not be read: the session ends, nothing more goes */
    bool server_closing;     /* a 421 came: the session ends, nothing more goes */
    bool quit_failure;       /* the setup failed with the server still listening: the failure is
                                in status, QUIT went, the session ends at its reply */
};

/* The FIFO of expected replies: one entry per command sent, popped by its reply. */
static inline pending_reply_t *fifo_at(const smtp_engine_t *e, size_t i)
{
    return email_ring_at(&e->fifo, sizeof(pending_reply_t), i);
}

static inline int fifo_push(smtp_engine_t *e, enum cmd cmd, smtp_job_t *job)
{
    pending_reply_t *p = email_ring_push(&e->fifo, sizeof *p, 16);
    if (!p)
        return EMAIL_ENOMEM;
    *p = (pending_reply_t){cmd, job, e->taken + e->out.len};
    return 0;
}

static inline pending_reply_t fifo_pop(smtp_engine_t *e)
{
    pending_reply_t p = *fifo_at(e, 0);
    email_ring_drop(&e->fifo);
    return p;
}

/* protocol.c */
void email__smtp_logf(smtp_engine_t *e, char kind, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* The ONLY way the session state changes (reported to the optional state callback). */
void email__smtp_set_state(smtp_engine_t *e, enum state s);
/* A command line: logged (shown may mask secrets), CRLF appended. */
int email__smtp_send_line(smtp_engine_t *e, const char *line, const char *shown);
/* The session is over at once (a 421, a protocol error, a broken transport...). */
void email__smtp_fail_session(smtp_engine_t *e, int error, const smtp_reply_t *r, const char *fmt,
                        ...) EMAIL_PRINTF(4, 5);
/* A setup failure while the server still listens: QUIT, and the session ends at its reply. */
void email__smtp_quit_after_failure(smtp_engine_t *e, int error, const smtp_reply_t *r,
                              const char *fmt, ...) EMAIL_PRINTF(4, 5);
/* Every job still here gets its outcome, then `closed` once. */
void email__smtp_end_session(smtp_engine_t *e, int error, const char *text);

/* protocol_setup.c */
/* A reply before ready (or to QUIT): handled by the state that awaited it. */
void email__smtp_setup_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left);

/* protocol_envelope.c */
/* Whether job j can go to this server (SMTPUTF8); else false with the reason in why. Notes in the
 * log, once, that DSN requests go without DSN. */
bool email__smtp_envelope_fits(smtp_engine_t *e, const smtp_job_t *j, char *why, size_t size);
/* "MAIL FROM:<...>" and its parameters (SIZE, BODY, SMTPUTF8, RET, ENVID) into line. */
int email__smtp_mail_line(const smtp_engine_t *e, const smtp_job_t *j, email_buf_t *line);
/* "RCPT TO:<...>" for recipient i and its parameters (NOTIFY, ORCPT) into line. */
int email__smtp_rcpt_line(const smtp_engine_t *e, const smtp_job_t *j, size_t i,
                          email_buf_t *line);

/* protocol_txn.c */
/* Sends what can be sent now: the next jobs' commands, or QUIT once they are done. */
void email__smtp_pump(smtp_engine_t *e);
/* A reply once ready: handled by the command that awaited it (p, popped from the FIFO). */
void email__smtp_job_reply(smtp_engine_t *e, pending_reply_t p, const smtp_reply_t *r);
/* Pulls the body of the job being sent into the output buffer, one chunk. */
void email__smtp_fill_body(smtp_engine_t *e);
/* The session ended (error, text): every job in flight or queued gets its outcome. */
void email__smtp_end_jobs(smtp_engine_t *e, int error, const char *text);
/* The connection never came: each queued job fails with text as it is. */
void email__smtp_fail_queued(smtp_engine_t *e, int error, const char *text);

#endif
