/*
 * One SMTP, POP3 or IMAP session over one TCP connection: drives a protocol engine over a transport, with the
 * connect timeout and the silence timer. Loop thread only. With EMAIL_DEBUG_ENGINE set in the
 * environment (read when a connection is made), the engine's state changes go to stderr, never
 * to the conversation log.
 */
#ifndef EMAIL_CONNECTION_H
#define EMAIL_CONNECTION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "imap.h"
#include "pop3.h"
#include "protocol.h"

typedef struct connection connection_t;

typedef struct connection_config {
    const char *host;
    int port;
    smtp_engine_config_t engine;  /* allow_cleartext_auth is also set for loopback peers */
    /* which engine: SMTP with engine, POP3 with pop3_engine, IMAP with imap_engine */
    enum connection_protocol { CONN_SMTP = 0, CONN_POP3, CONN_IMAP } protocol;
    pop3_engine_config_t pop3_engine;
    imap_engine_config_t imap_engine;
    bool allow_insecure_auth;     /* credentials may go in cleartext to any peer */
    bool implicit_tls;            /* TLS from the first byte */
    const char *ca_file;          /* extra trust anchors */
    /* The client certificate and key (NULL: none), and where the TLS session to resume is
     * kept (NULL: none): the transporter's, which outlives its connections. */
    const char *cert_file, *key_file;
    struct tls_resume **resume;
    bool no_verify;               /* no certificate checks (tests only; logged) */
    int connect_timeout_ms;       /* resolve + connect + greeting + TLS + EHLO + AUTH */
    int reply_timeout_ms;         /* silence allowed while a reply is awaited */
    uint64_t session_id;          /* for the log */
    struct log_sink *log;         /* extended log (shared, may be NULL) */
} connection_config_t;

typedef struct connection_callbacks {
    void (*ready)(void *ud, connection_t *c);
    void (*job_done)(void *ud, connection_t *c, smtp_job_t *job);
    void (*progress)(void *ud, connection_t *c, smtp_job_t *job, uint64_t sent, uint64_t total);
    /* The session is over and every handle closed; `why` is the setup status or the failure.
     * The connection is freed right after this returns. */
    void (*closed)(void *ud, connection_t *c, const email_status_t *why);
} connection_callbacks_t;

connection_t *email__connection_new(uv_loop_t *loop, const connection_config_t *cfg,
                             const connection_callbacks_t *cb, void *ud);
/* Starts resolving and connecting. */
int email__connection_start(connection_t *c);
/* Queues a job; it goes once the session is ready. EMAIL_ESHUTDOWN when closing. */
int email__connection_submit(connection_t *c, smtp_job_t *job);
/* Takes back a job that has not started (0), EMAIL_EBUSY once it has. */
int email__connection_cancel(connection_t *c, smtp_job_t *job);
/* POP3: queues a command (sent once ready; its done callback always comes). EMAIL_ESHUTDOWN when
 * closing, EMAIL_EINVAL on an SMTP connection (and submit/cancel on a POP3 one). */
int email__connection_pop3_submit(connection_t *c, pop3_cmd_t *cmd);
/* IMAP: queues a command (sent once ready; its done callback always comes). EMAIL_ESHUTDOWN when
 * closing, EMAIL_EINVAL on another protocol's connection or for a malformed command. */
int email__connection_imap_submit(connection_t *c, imap_cmd_t *cmd);
/* IMAP: the engine, for what it knows of the selected mailbox and the capabilities (NULL on
 * another protocol's connection). */
const imap_engine_t *email__connection_imap_engine(const connection_t *c);
/* The end of data of job, held by its hold_eod, may go (error 0) or fails the job (error <0,
 * the session is dropped): email__smtp_engine_release, then what is to write is written. */
void email__connection_release(connection_t *c, smtp_job_t *job, int error);
/* QUIT once what is queued is done (before ready: once ready). */
void email__connection_quit(connection_t *c);
/* Ends the connection now: jobs get their outcomes, then closed. */
void email__connection_abort(connection_t *c, int error, const char *text);
/* Switches the extended log (NULL: none) from now on. */
void email__connection_set_log(connection_t *c, struct log_sink *log);
/* True once ready and not closing. */
bool email__connection_is_ready(const connection_t *c);
/* The setup status at the moment the session became ready (greeting/EHLO/AUTH reply). */
const email_status_t *email__connection_ready_status(const connection_t *c);
bool email__connection_was_ready(const connection_t *c);

#endif
