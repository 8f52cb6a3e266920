/*
 * The SMTP client engine, sans I/O: server bytes go in (email__smtp_engine_feed), bytes to write
 * come out (email__smtp_engine_take), events come back through callbacks. No sockets, clocks,
 * threads, libuv or GnuTLS here: everything about SMTP ordering is decided in this one place, so
 * the same code runs under a test feeding scripted replies, a fuzzer, and connection.c over a real
 * socket.
 *
 * Callbacks may call email__smtp_engine_submit / email__smtp_engine_quit, never
 * email__smtp_engine_free.
 */
#ifndef EMAIL_PROTOCOL_H
#define EMAIL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth.h"
#include "emailsession.h"
#include "queue.h"
#include "status.h"

typedef struct smtp_engine smtp_engine_t;

enum smtp_tls_policy {
    SMTP_TLS_NEVER = 0,     /* never send STARTTLS */
    SMTP_TLS_IF_OFFERED,    /* STARTTLS when the server offers it */
    SMTP_TLS_REQUIRED       /* STARTTLS or fail: never a plaintext fallback */
};

typedef struct smtp_engine_config {
    const char *helo_name;      /* EHLO/HELO argument */
    auth_creds_t creds;         /* copied; password/token NULL or "" → no authentication */
    auth_mech_t auth_mech;      /* AUTH_NONE: choose the strongest offered */
    unsigned auth_limit;        /* mechanisms allowed when choosing (0 = all) */
    bool auth_optional;         /* WLanguage rule: no usable mechanism offered → go on without */
    bool client_cert;           /* TLS presents a client certificate: EXTERNAL may be used */
    int starttls;               /* enum smtp_tls_policy */
    bool tls_active;            /* TLS from the first byte: the connection is already secure */
    bool allow_cleartext_auth;  /* credentials may go over an unencrypted connection */
    unsigned window;            /* most commands awaiting a reply when pipelining (0 → 100) */
    bool no_chunking;           /* never BDAT, even when the server offers CHUNKING */
    bool wait_start;            /* the transport is not connected yet: jobs and QUIT wait, and
                                   no greeting is expected, until email__smtp_engine_start */
} smtp_engine_config_t;

/* What is known about a message's delivery when its job ends. */
enum smtp_job_outcome {
    SMTP_JOB_SENT = 0,        /* accepted (maybe with some recipients refused) */
    SMTP_JOB_FAILED,          /* refused or failed before end of data: not delivered */
    SMTP_JOB_RETRYABLE,       /* the connection ended before end of data: safe to send again */
    SMTP_JOB_UNKNOWN          /* end of data was sent but never answered: maybe delivered */
};

/* One message transaction. The caller fills the first block and owns the job. */
typedef struct smtp_job {
    const char *from;                 /* envelope sender addr-spec ("" for the null sender) */
    const char *const *rcpts;         /* envelope recipients */
    size_t nrcpts;
    uint64_t size;                    /* size of the body (0 unknown), for SIZE= */
    bool eight_bit;                   /* BODY=8BITMIME wanted */
    bool smtputf8;                    /* SMTPUTF8 needed: the job fails without it */
    const char *utf8_address;         /* with smtputf8: the address needing it (for the error
                                         text), or NULL */
    /* International domains: from and each recipient with its domain as an A-label, sent to a
     * server without SMTPUTF8 (with it, from and rcpts go as they are). NULL: all ASCII. */
    const char *from_ace;
    const char *const *rcpts_ace;
    /* RFC 3461, sent only when the server offers DSN: NOTIFY (EMAIL_NOTIFY_... flags, 0 none),
     * RET ("FULL", "HDRS" or NULL), ENVID (printable ASCII, xtext-encoded here, or NULL). */
    int dsn_notify;
    const char *dsn_ret, *dsn_envid;
    /* Body source: up to n bytes into buf, 0 at the end, <0 EMAIL_E... on error. */
    ssize_t (*read)(void *ctx, char *buf, size_t n);
    /* Optional: the last read failure in words (naming the file that failed), into text. */
    void (*read_error)(void *ctx, int error, char *text, size_t size);
    /* Optional: the body was read to its end, and its end of data (".", or BDAT LAST with the
     * last chunk) comes next. 0 lets it go now; 1 holds it, and everything behind it, until
     * email__smtp_engine_release; <0 (EMAIL_E...) is a read failure (read_error says why). */
    int (*hold_eod)(void *ctx);
    void *ctx;
    void *user;

    /* Set by the engine; final when job_done is called. */
    enum smtp_job_outcome outcome;
    email_status_t status;            /* code, text, enhanced code, error, recipients, rejected */
    email_refusals_t refusals;        /* refused recipients (owned by the job: free them) */
    uint64_t body_bytes;              /* body bytes read so far */

    /* engine-private */
    queue_t node;                     /* in the engine's queue until its commands go out */
    int phase;
    bool mail_ok, mail_replied;
    bool chunk_failed;       /* a BDAT chunk was refused */
    bool lockstep;           /* one command at a time (more recipients than the window) */
    size_t accepted, replied;
    uint64_t eod_offset;
    bool body_read;          /* read returned 0: the end of data is next */
    bool eod_held;           /* hold_eod held it: waiting for email__smtp_engine_release */
    uint64_t body_start;     /* output offset where the body begins */
    uint64_t progress_sent;  /* last progress reported */
    int fail_code;
    char fail_enhanced[16];
    char *fail_text;
} smtp_job_t;

typedef struct smtp_engine_callbacks {
    /* A conversation event: kind 'C' (client line, secrets masked), 'S' (server line), '#'. */
    void (*log)(void *ud, char kind, const char *text);
    /* Greeted, secured and authenticated: messages can go (once per engine). */
    void (*ready)(void *ud);
    /* The server agreed to STARTTLS: do the handshake, then email__smtp_engine_tls_established. */
    void (*starttls)(void *ud);
    /* A job ended (see job->outcome and job->status). */
    void (*job_done)(void *ud, smtp_job_t *job);
    /* Body bytes of a job reached the transport: sent of total (total = job->size). */
    void (*progress)(void *ud, smtp_job_t *job, uint64_t sent, uint64_t total);
    /* The session is over (after QUIT, or a fatal error in why). Close the transport. A setup
     * failure with the server still listening (AUTH refused, STARTTLS required and refused...)
     * sends QUIT first and comes here at its reply (or abort), why still that failure. */
    void (*closed)(void *ud, const email_status_t *why);
    /* Optional, for debugging: the session state changed, by name ("GREETING", "EHLO", "HELO",
     * "STARTTLS", "TLS_HANDSHAKE", "AUTH", "READY", "QUIT", "CLOSED", "CONNECTING"; static
     * strings). A channel apart from `log`, so the conversation log never gains a line. It must
     * not call into the engine. */
    void (*state)(void *ud, const char *from, const char *to);
} smtp_engine_callbacks_t;

smtp_engine_t *email__smtp_engine_new(const smtp_engine_config_t *config,
                               const smtp_engine_callbacks_t *callbacks, void *ud);
/* Frees the engine. Jobs still inside are not reported: abort first. */
void email__smtp_engine_free(smtp_engine_t *e);
/*
 * For an engine made with wait_start: the transport is connected (and secured, with TLS from the
 * first byte), so the greeting may come. allow_cleartext_auth replaces the configuration's, since
 * whether the peer is loopback is known only now. Ignored otherwise. Until then, an abort fails
 * each queued job with the abort's text as it is (nothing reached the server).
 */
void email__smtp_engine_start(smtp_engine_t *e, bool allow_cleartext_auth);

/*
 * Bytes received from the server. 0, or <0 when the session failed (closed was called). A reply
 * can only answer a command handed over by email__smtp_engine_take before this call: any other
 * reply is a protocol error (EMAIL_EPROTO, "reply without a command"), so feed what arrived before
 * taking.
 */
int email__smtp_engine_feed(smtp_engine_t *e, const char *data, size_t n);
/*
 * Bytes to write now (pulls message bodies as needed); *data stays valid until the next engine
 * call. The bytes count as handed over: report their writing with email__smtp_engine_written. Never
 * the start of a body whose reading failed (the session is then over: close, write nothing).
 */
size_t email__smtp_engine_take(smtp_engine_t *e, const char **data);
/* n more bytes reached the transport (in order). */
void email__smtp_engine_written(smtp_engine_t *e, size_t n);
/* True while a server reply is awaited (the caller runs its silence timer then). */
bool email__smtp_engine_waiting(const smtp_engine_t *e);
/* True when ready with nothing queued or in flight. */
bool email__smtp_engine_idle(const smtp_engine_t *e);
/* True once ready was reported and the session is not over. */
bool email__smtp_engine_is_ready(const smtp_engine_t *e);
/* True when QUIT went and its reply is awaited: also after a setup failure (a refused AUTH...),
 * before ready, where the caller waits for that reply no longer than for any other. */
bool email__smtp_engine_quitting(const smtp_engine_t *e);
/* True when the session is over (closed was reported). */
bool email__smtp_engine_is_closed(const smtp_engine_t *e);
/* Complete replies received so far: the caller's reply timer restarts only when this moves. */
uint64_t email__smtp_engine_replies(const smtp_engine_t *e);

/* Queues a job (validated by the caller). EMAIL_ESHUTDOWN once QUIT was asked or closed. */
int email__smtp_engine_submit(smtp_engine_t *e, smtp_job_t *job);
/* Takes back a job that has not started (0; it is the caller's again, no job_done follows);
 * EMAIL_EBUSY once its commands went out. */
int email__smtp_engine_cancel(smtp_engine_t *e, smtp_job_t *job);
/*
 * The end of data job's hold_eod held may go (error 0: take the bytes next), or may not (error
 * <0: the body counts as unreadable, read_error says why: the job fails and the session is
 * dropped). Ignored when job is not held.
 */
void email__smtp_engine_release(smtp_engine_t *e, smtp_job_t *job, int error);
/* QUIT once the queued jobs are done. */
void email__smtp_engine_quit(smtp_engine_t *e);
/*
 * The transport failed (error, text): every job gets its outcome (retryable before end of data,
 * unknown after), then closed. Also for an end of stream from the server (EMAIL_ECLOSED).
 */
void email__smtp_engine_abort(smtp_engine_t *e, int error, const char *text);
/* The TLS handshake after STARTTLS succeeded: EHLO again with the old capabilities forgotten. */
void email__smtp_engine_tls_established(smtp_engine_t *e);
/* The outcome of the session setup so far: reply code/text of greeting, EHLO, AUTH. */
const email_status_t *email__smtp_engine_status(const smtp_engine_t *e);

/* Capabilities from the last EHLO (SMTP_CAP_...), and SIZE's limit (0 none). */
enum {
    SMTP_CAP_PIPELINING = 1 << 0,
    SMTP_CAP_SIZE = 1 << 1,
    SMTP_CAP_8BITMIME = 1 << 2,
    SMTP_CAP_SMTPUTF8 = 1 << 3,
    SMTP_CAP_CHUNKING = 1 << 4,
    SMTP_CAP_DSN = 1 << 5,
    SMTP_CAP_ENHANCEDSTATUSCODES = 1 << 6,
    SMTP_CAP_STARTTLS = 1 << 7,
    SMTP_CAP_AUTH = 1 << 8,
    SMTP_CAP_EHLO = 1 << 9     /* EHLO worked (not HELO) */
};
unsigned email__smtp_engine_caps(const smtp_engine_t *e);
uint64_t email__smtp_engine_size_limit(const smtp_engine_t *e);
unsigned email__smtp_engine_auth_mechs(const smtp_engine_t *e);

#endif
