/*
 * The engine's session setup: greeting, EHLO (HELO for an old server), STARTTLS, AUTH, until
 * ready. Each command is a pair, in curl's manner: a function that sends it and sets the state,
 * and one handler for the reply that state awaits.
 */
#include "protocol_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void send_ehlo(smtp_engine_t *e, bool helo)
{
    char line[600];
    snprintf(line, sizeof line, "%s %s", helo ? "HELO" : "EHLO", e->cfg.helo_name);
    email__smtp_set_state(e, helo ? ST_HELO : ST_EHLO);
    if (email__smtp_send_line(e, line, NULL))
        email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
}

static void parse_ehlo(smtp_engine_t *e, const smtp_reply_t *r)
{
    e->caps = SMTP_CAP_EHLO;
    e->size_limit = 0;
    e->auth_mechs = 0;
    /* the first line is the greeting; each further line is "KEYWORD [params]" */
    for (size_t i = 1; i < r->nlines; i++) {
        if (strlen(r->lines[i]) <= 4)
            continue; /* "250" or "250-" alone: no keyword */
        const char *kw = r->lines[i] + 4;
        size_t n = strcspn(kw, " =");
        const char *arg = kw[n] ? kw + n + 1 : "";
#define IS(word) (n == sizeof(word) - 1 && !email__strncasecmp(kw, word, n))
        if (IS("PIPELINING"))
            e->caps |= SMTP_CAP_PIPELINING;
        else if (IS("SIZE")) {
            e->caps |= SMTP_CAP_SIZE;
            e->size_limit = strtoull(arg, NULL, 10);
        } else if (IS("8BITMIME"))
            e->caps |= SMTP_CAP_8BITMIME;
        else if (IS("SMTPUTF8"))
            e->caps |= SMTP_CAP_SMTPUTF8;
        else if (IS("CHUNKING"))
            e->caps |= SMTP_CAP_CHUNKING;
        else if (IS("DSN"))
            e->caps |= SMTP_CAP_DSN;
        else if (IS("ENHANCEDSTATUSCODES"))
            e->caps |= SMTP_CAP_ENHANCEDSTATUSCODES;
        else if (IS("STARTTLS"))
            e->caps |= SMTP_CAP_STARTTLS;
        else if (IS("AUTH")) {
            e->caps |= SMTP_CAP_AUTH;
            e->auth_mechs |= email__auth_parse_mechs(arg);
        }
#undef IS
    }
}

static bool have_secret(const smtp_engine_t *e)
{
    return (e->cfg.creds.password && *e->cfg.creds.password) ||
           (e->cfg.creds.token && *e->cfg.creds.token);
}

/* A client certificate without a secret: EXTERNAL when asked for, or when offered (a relay
 * that authenticates by certificate); else the certificate alone may be enough. */
static bool wants_external(const smtp_engine_t *e)
{
    if (!e->cfg.client_cert || !e->cfg.tls_active)
        return false;
    return e->cfg.auth_mech == AUTH_EXTERNAL ||
           (e->cfg.auth_mech == AUTH_NONE && (e->auth_mechs & AUTH_EXTERNAL));
}

static void become_ready(smtp_engine_t *e)
{
    email__scram_free(e->scram); /* its keys are of no more use */
    e->scram = NULL;
    email__smtp_set_state(e, ST_READY);
    e->status.success = true;
    if (!e->ready_reported) {
        e->ready_reported = true;
        if (e->cb.ready)
            e->cb.ready(e->ud);
    }
    if (e->state == ST_READY)
        email__smtp_pump(e);
}

/* No mechanism to use: ready without authentication when allowed, else QUIT. */
static void no_auth_mechanism(smtp_engine_t *e)
{
    if (!(e->caps & SMTP_CAP_AUTH) || e->cfg.auth_optional) {
        email__smtp_logf(e, '#', "SMTP No authentication: the server offers no %s mechanism",
                   e->cfg.auth_mech ? email__auth_mech_name(e->cfg.auth_mech) : "usable");
        become_ready(e);
        return;
    }
    email__smtp_quit_after_failure(e, EMAIL_EAUTHMECH, NULL,
                             "the server offers no authentication mechanism we can use%s%s%s",
                             e->cfg.auth_mech ? " (asked for " : "",
                             e->cfg.auth_mech ? email__auth_mech_name(e->cfg.auth_mech) : "",
                             e->cfg.auth_mech ? ")" : "");
}

/* The AUTH command: SCRAM's initial response comes from its exchange, kept until the end. */
static int auth_command(smtp_engine_t *e, auth_mech_t m, email_buf_t *cmd, email_buf_t *shown)
{
    if (!email__auth_mech_is_scram(m))
        return email__auth_start(m, &e->cfg.creds, cmd, shown);
    const char *name = email__auth_mech_name(m);
    e->scram = email__scram_new(m == AUTH_SCRAM_SHA256, e->cfg.creds.user, e->cfg.creds.password);
    int rc = e->scram ? email__buf_printf(cmd, "AUTH %s ", name) : EMAIL_ENOMEM;
    if (!rc)
        rc = email__scram_client_first(e->scram, cmd);
    if (!rc)
        rc = email__buf_printf(shown, "AUTH %s ****", name);
    return rc;
}

static void send_auth(smtp_engine_t *e)
{
    auth_mech_t m = email__auth_choose(e->auth_mechs, e->cfg.auth_mech, e->cfg.auth_limit,
                                       &e->cfg.creds, e->cfg.client_cert && e->cfg.tls_active);
    if (m == AUTH_NONE) {
        no_auth_mechanism(e);
        return;
    }
    if (!e->cfg.tls_active && !e->cfg.allow_cleartext_auth) {
        email__smtp_quit_after_failure(e, EMAIL_EINSECURE, NULL,
                                 "refusing to send credentials over an unencrypted connection%s",
                                 (e->caps & SMTP_CAP_STARTTLS)
                                     ? ""
                                     : " (the server does not offer STARTTLS)");
        return;
    }
    email_buf_t cmd, shown;
    email__buf_init(&cmd);
    email__buf_init(&shown);
    int rc = auth_command(e, m, &cmd, &shown);
    if (!rc) {
        e->auth_used = m;
        e->auth_step = 0;
        email__smtp_set_state(e, ST_AUTH);
        rc = email__smtp_send_line(e, cmd.data, shown.data);
    }
    if (cmd.data)
        memset(cmd.data, 0, cmd.len);
    email__buf_free(&cmd);
    email__buf_free(&shown);
    if (rc)
        email__smtp_fail_session(e, rc, NULL, "authentication: %s", email_strerror(rc));
}

/* After a (secure) EHLO/HELO: STARTTLS, AUTH or ready. */
static void after_hello(smtp_engine_t *e)
{
    if (!e->cfg.tls_active && e->cfg.starttls != SMTP_TLS_NEVER) {
        if (e->caps & SMTP_CAP_STARTTLS) {
            email__smtp_set_state(e, ST_STARTTLS);
            if (email__smtp_send_line(e, "STARTTLS", NULL))
                email__smtp_fail_session(e, EMAIL_ENOMEM, NULL, "out of memory");
            return;
        }
        if (e->cfg.starttls == SMTP_TLS_REQUIRED) {
            email__smtp_quit_after_failure(
                e, EMAIL_ETLSREQUIRED, NULL,
                "the server does not offer STARTTLS and encryption is required");
            return;
        }
    }
    if (have_secret(e) || wants_external(e))
        send_auth(e);
    else
        become_ready(e);
}

/* ------------------------------------------------------------------------------------------- */
/* One handler per state that awaits a reply                                                    */

static void on_greeting_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    (void)left;
    if (r->code == 421)
        email__smtp_fail_session(e, EMAIL_ECLOSED, r, "the server refused the connection: %s %s",
                                 email__smtp_reply_codes(r).s, r->text);
    else if (r->code != 220)
        email__smtp_quit_after_failure(e, EMAIL_ESERVER, r,
                                       "the server refused the connection: %s %s",
                                       email__smtp_reply_codes(r).s, r->text);
    else
        send_ehlo(e, false);
}

static void on_ehlo_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    (void)left;
    if (r->code == 250) {
        parse_ehlo(e, r);
        after_hello(e);
    } else if (r->code == 421) {
        email__smtp_fail_session(e, EMAIL_ECLOSED, r, "%s %s", email__smtp_reply_codes(r).s,
                                 r->text);
    } else if (r->code >= 500) {
        send_ehlo(e, true); /* an old server: HELO, no extensions */
    } else {
        email__smtp_quit_after_failure(e, EMAIL_ESERVER, r, "EHLO refused: %s %s",
                                       email__smtp_reply_codes(r).s, r->text);
    }
}

static void on_helo_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    (void)left;
    if (r->code == 421) {
        email__smtp_fail_session(e, EMAIL_ECLOSED, r, "HELO refused: %s %s",
                                 email__smtp_reply_codes(r).s, r->text);
        return;
    }
    if (r->code != 250) {
        email__smtp_quit_after_failure(e, EMAIL_ESERVER, r, "HELO refused: %s %s",
                                       email__smtp_reply_codes(r).s, r->text);
        return;
    }
    e->caps = 0;
    e->auth_mechs = 0;
    after_hello(e);
}

static void on_starttls_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    if (r->code == 220) {
        /* Anything the server sent behind its 220 arrived before TLS and could have been
         * injected by a man in the middle (CVE-2011-0411 family): refuse it. */
        if (left || email__smtp_reply_parser_busy(&e->parser)) {
            email__smtp_fail_session(e, EMAIL_EPROTO, r,
                               "the server sent data after its answer to STARTTLS (possible "
                               "response injection)");
            return;
        }
        email__smtp_set_state(e, ST_TLS_HANDSHAKE);
        if (e->cb.starttls)
            e->cb.starttls(e->ud);
        return;
    }
    if (r->code == 421) {
        email__smtp_fail_session(e, EMAIL_ECLOSED, r, "the server refused STARTTLS: %s %s",
                                 email__smtp_reply_codes(r).s, r->text);
        return;
    }
    if (e->cfg.starttls == SMTP_TLS_REQUIRED) {
        email__smtp_quit_after_failure(e, EMAIL_ETLSREQUIRED, r,
                                       "the server refused STARTTLS: %s %s",
                                       email__smtp_reply_codes(r).s, r->text);
        return;
    }
    email__smtp_logf(e, '#', "SMTP STARTTLS refused (%s): going on unencrypted",
                     email__smtp_reply_codes(r).s);
    e->cfg.starttls = SMTP_TLS_NEVER;
    after_hello(e);
}

/* SCRAM's answer to a 334: the proof, then (once the server's signature is checked) an empty
 * line. What the server said wrong cancels the exchange ("*", RFC 4954), reported at its answer. */
static int scram_step(smtp_engine_t *e, const smtp_reply_t *r, email_buf_t *resp)
{
    const char *why = "the server sent more challenges than SCRAM has";
    int rc = EMAIL_EPROTO;
    int step = e->auth_step++;
    if (step == 0)
        rc = email__scram_client_final(e->scram, r->text, resp, &why);
    else if (step == 1)
        rc = email__scram_verify(e->scram, r->text, &why);
    if (!rc || rc == EMAIL_ENOMEM)
        return rc;
    e->auth_error = rc;
    e->auth_why = why;
    email__buf_reset(resp);
    return email__buf_putc(resp, '*');
}

/* A 334 challenge: the mechanism's next answer, always a secret in the log. */
static void answer_challenge(smtp_engine_t *e, const smtp_reply_t *r)
{
    email_buf_t resp;
    email__buf_init(&resp);
    int rc = e->scram ? scram_step(e, r, &resp)
                      : email__auth_step(e->auth_used, &e->cfg.creds, e->auth_step++, r->text,
                                         &resp);
    if (!rc)
        rc = email__smtp_send_line(e, resp.data ? resp.data : "", e->auth_error ? "*" : "****");
    if (resp.data)
        memset(resp.data, 0, resp.len);
    email__buf_free(&resp);
    if (rc)
        email__smtp_fail_session(e, rc, r, "authentication with %s failed: unexpected challenge",
                           email__auth_mech_name(e->auth_used));
}

/* The server accepted: with SCRAM, only once it proved it knows the password too. */
static void on_auth_success(smtp_engine_t *e, const smtp_reply_t *r)
{
    const char *name = email__auth_mech_name(e->auth_used);
    if (e->scram && !email__scram_verified(e->scram)) {
        email__smtp_quit_after_failure(e, EMAIL_EAUTH, r,
                                       "authentication with %s failed: the server accepted "
                                       "without proving it knows the password",
                                       name);
        return;
    }
    email__smtp_logf(e, '#', "SMTP Authenticated as '%s' (%s)",
                     e->cfg.creds.user ? e->cfg.creds.user : "", name);
    become_ready(e);
}

static void on_auth_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    (void)left;
    const char *name = email__auth_mech_name(e->auth_used);
    if (e->auth_error && r->code != 421) {
        /* our "*" is answered (501 as a rule): the failure is what made us cancel */
        email__smtp_quit_after_failure(e, e->auth_error, NULL, "authentication with %s failed: %s",
                                       name, e->auth_why);
    } else if (r->code == 235) {
        on_auth_success(e, r);
    } else if (r->code == 334) {
        answer_challenge(e, r);
    } else if (r->code == 421) {
        email__smtp_fail_session(e, EMAIL_ECLOSED, r, "authentication with %s failed: %s %s",
                                 name, email__smtp_reply_codes(r).s, r->text);
    } else {
        email__smtp_quit_after_failure(e, EMAIL_EAUTH, r, "authentication with %s failed: %s %s",
                                       name, email__smtp_reply_codes(r).s, r->text);
    }
}

static void on_quit_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    (void)r;
    (void)left;
    email__smtp_end_session(e, 0, "");
}

typedef void setup_handler_t(smtp_engine_t *e, const smtp_reply_t *r, size_t left);

static setup_handler_t *const setup_handlers[] = {
    [ST_GREETING] = on_greeting_reply,
    [ST_EHLO] = on_ehlo_reply,
    [ST_HELO] = on_helo_reply,
    [ST_STARTTLS] = on_starttls_reply,
    [ST_AUTH] = on_auth_reply,
    [ST_QUIT] = on_quit_reply,
};

void email__smtp_setup_reply(smtp_engine_t *e, const smtp_reply_t *r, size_t left)
{
    if (!e->quit_failure) /* QUIT's answer does not replace the failure that made us QUIT */
        email__status_set_reply(&e->status, r->code, r->enhanced, r->text);
    size_t n = sizeof setup_handlers / sizeof *setup_handlers;
    setup_handler_t *handle = (size_t)e->state < n ? setup_handlers[e->state] : NULL;
    if (handle)
        handle(e, r, left);
    else
        email__smtp_fail_session(e, EMAIL_EPROTO, r, "unexpected reply from the server: %s %s",
                                 email__smtp_reply_codes(r).s, r->text);
}

/* ------------------------------------------------------------------------------------------- */

void email__smtp_engine_start(smtp_engine_t *e, bool allow_cleartext_auth)
{
    if (e->state != ST_CONNECTING)
        return;
    e->cfg.allow_cleartext_auth = allow_cleartext_auth;
    email__smtp_set_state(e, ST_GREETING);
}

void email__smtp_engine_tls_established(smtp_engine_t *e)
{
    if (e->state != ST_TLS_HANDSHAKE)
        return;
    e->cfg.tls_active = true;
    e->caps = 0; /* what the server said before TLS is not to be trusted */
    e->auth_mechs = 0;
    send_ehlo(e, false);
}
