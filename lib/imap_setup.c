/*
 * The IMAP engine's setup, one command at a time: greeting (OK, PREAUTH, BYE), CAPABILITY,
 * STARTTLS, then AUTHENTICATE (with the initial response when SASL-IR is offered) or LOGIN.
 * Every secret is logged as "****".
 */
#include "imap_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* Sends one tagged setup command; false when out of memory (the session is then over). */
static bool send_setup(imap_engine_t *e, enum im_state next, imap_line_t *l)
{
    email__imap_set_state(e, next);
    int rc = email__imap_line_send(e, l);
    email__imap_line_free(l);
    if (!rc)
        return true;
    email__imap_fail(e, rc, "%s", email_strerror(rc));
    return false;
}

static void simple(imap_engine_t *e, enum im_state next, const char *verb)
{
    imap_line_t l;
    email__imap_line_init(&l);
    if (email__imap_line_tag(e, &l, &e->setup_tag) || email__imap_line_raw(&l, verb, false)) {
        email__imap_line_free(&l);
        email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
        return;
    }
    send_setup(e, next, &l);
}

static bool want_starttls(const imap_engine_t *e)
{
    if (e->cfg.tls_active || e->cfg.starttls == IMAP_TLS_NEVER)
        return false;
    return e->cfg.starttls == IMAP_TLS_REQUIRED || (e->caps & IMAP_CAP_STARTTLS);
}

static void authenticate(imap_engine_t *e);

/* The capabilities are known: STARTTLS or authentication. */
static void capabilities_known(imap_engine_t *e)
{
    if (want_starttls(e))
        simple(e, IM_STARTTLS, "STARTTLS");
    else
        authenticate(e);
}

void email__imap_greeting(imap_engine_t *e, const char *word, const char *text)
{
    if (!email__strcasecmp(word, "BYE") || (email__strcasecmp(word, "OK") &&
                                            email__strcasecmp(word, "PREAUTH"))) {
        email__imap_fail(e, EMAIL_ECLOSED, "the server refused the connection: %.300s", text);
        return;
    }
    if (!email__strcasecmp(word, "PREAUTH")) {
        /* authenticated already, so STARTTLS may no longer come (RFC 3501 section 6.2.1) */
        if (!e->cfg.tls_active && e->cfg.starttls == IMAP_TLS_REQUIRED) {
            email__imap_fail(e, EMAIL_ETLSREQUIRED, "TLS is required and the server greeted "
                             "with PREAUTH on an unencrypted connection: %.300s", text);
            return;
        }
        email__status_set_reply(&e->status, 1, "", text);
        email__imap_ready(e);
        return;
    }
    if (e->caps & IMAP_CAP_KNOWN)
        capabilities_known(e);
    else
        simple(e, IM_CAPABILITY, "CAPABILITY");
}

/* AUTHENTICATE with a SASL mechanism: its initial response inline with SASL-IR, else kept for
 * the first "+". */
static void start_sasl(imap_engine_t *e, auth_mech_t m)
{
    email_buf_t cmd, shown;
    email__buf_init(&cmd);
    email__buf_init(&shown);
    int rc = 0;
    e->mech = m;
    e->auth_step = 0;
    if (email__auth_mech_is_scram(m)) {
        e->scram = email__scram_new(m == AUTH_SCRAM_SHA256, e->cfg.creds.user,
                                    e->cfg.creds.password);
        rc = !e->scram || email__buf_printf(&cmd, "AUTH %s ", email__auth_mech_name(m))
             ? EMAIL_ENOMEM : email__scram_client_first(e->scram, &cmd);
    } else {
        rc = email__auth_start(m, &e->cfg.creds, &cmd, &shown);
    }
    /* cmd is "AUTH MECH[ response]" (SMTP's form): the response goes inline or waits */
    const char *mech = email__auth_mech_name(m);
    const char *resp = rc ? NULL : strchr(cmd.data + 5, ' ');
    imap_line_t l;
    email__imap_line_init(&l);
    email__buf_reset(&e->ir);
    if (!rc && (email__imap_line_tag(e, &l, &e->setup_tag) ||
                email__buf_printf(&l.wire, "AUTHENTICATE %s", mech) ||
                email__buf_printf(&l.shown, "AUTHENTICATE %s", mech)))
        rc = EMAIL_ENOMEM;
    if (!rc && resp && (e->caps & IMAP_CAP_SASL_IR))
        rc = email__imap_line_raw(&l, " ", false) || email__imap_line_raw(&l, resp + 1, true)
             ? EMAIL_ENOMEM : 0;
    else if (!rc && resp)
        rc = email__buf_puts(&e->ir, resp + 1);
    email__free_secret(email__buf_steal(&cmd, NULL));
    email__buf_free(&shown);
    if (rc) {
        email__imap_line_free(&l);
        email__imap_fail(e, rc, "authentication with %s: %s", mech, email_strerror(rc));
        return;
    }
    send_setup(e, IM_AUTH, &l);
}

static void login(imap_engine_t *e)
{
    imap_line_t l;
    email__imap_line_init(&l);
    const char *p = e->cfg.creds.password ? e->cfg.creds.password : "";
    int rc = email__imap_line_tag(e, &l, &e->setup_tag);
    rc = rc ? rc : email__imap_line_raw(&l, "LOGIN ", false);
    rc = rc ? rc : email__imap_line_string(e, &l, e->cfg.creds.user, false);
    rc = rc ? rc : email__imap_line_raw(&l, " ", false);
    rc = rc ? rc : email__imap_line_string(e, &l, p, true);
    if (rc) {
        email__imap_line_free(&l);
        email__imap_fail(e, rc, "LOGIN: %s", email_strerror(rc));
        return;
    }
    e->mech = AUTH_NONE;
    send_setup(e, IM_AUTH, &l);
}

static void authenticate(imap_engine_t *e)
{
    const auth_creds_t *c = &e->cfg.creds;
    if (!c->user || !*c->user) {
        email__imap_logout_after_failure(e, EMAIL_EAUTH, "no user name to log in with");
        return;
    }
    bool cert = e->cfg.client_cert && e->cfg.tls_active;
    auth_mech_t m = email__auth_choose(e->sasl, e->cfg.auth_mech, 0, c, cert);
    if (e->cfg.auth_mech && m == AUTH_NONE) {
        email__imap_logout_after_failure(e, EMAIL_EAUTHMECH, "the server does not offer %s",
                                         email__auth_mech_name(e->cfg.auth_mech));
        return;
    }
    if (!e->cfg.tls_active && !e->cfg.allow_cleartext_auth) {
        email__imap_logout_after_failure(e, EMAIL_EINSECURE,
                                         "refusing to send credentials over an unencrypted "
                                         "connection%s", (e->caps & IMAP_CAP_STARTTLS) ? ""
                                         : " (the server does not offer STARTTLS)");
        return;
    }
    if (m != AUTH_NONE)
        start_sasl(e, m);
    else if (e->caps & IMAP_CAP_LOGINDISABLED)
        email__imap_logout_after_failure(e, EMAIL_EAUTHMECH, "the server disabled LOGIN and "
                                         "offers no usable SASL mechanism");
    else
        login(e);
}

/* A "+ challenge" during AUTHENTICATE: the mechanism's next answer, always a secret. */
void email__imap_continuation(imap_engine_t *e, const char *text)
{
    if (e->state != IM_AUTH || e->mech == AUTH_NONE) {
        email__imap_fail(e, EMAIL_EPROTO, "unexpected continuation from the server");
        return;
    }
    email_buf_t resp;
    email__buf_init(&resp);
    const char *why = NULL;
    int rc;
    if (e->ir.len && e->auth_step == 0) {
        rc = email__buf_append(&resp, e->ir.data, e->ir.len) ? EMAIL_ENOMEM : 0;
        email__buf_reset(&e->ir);
        e->auth_step--; /* the mechanism's own steps follow */
    } else if (e->scram && e->auth_step == 0)
        rc = email__scram_client_final(e->scram, text, &resp, &why);
    else if (e->scram && e->auth_step == 1)
        rc = email__scram_verify(e->scram, text, &why);
    else if (e->scram)
        rc = EMAIL_EPROTO;
    else
        rc = email__auth_step(e->mech, &e->cfg.creds, e->auth_step, text, &resp);
    e->auth_step++;
    if (!rc)
        rc = email__buf_puts(&resp, "\r\n") ? EMAIL_ENOMEM : 0;
    if (rc == EMAIL_ENOMEM)
        email__imap_fail(e, rc, "out of memory");
    else if (rc)
        email__imap_logout_after_failure(e, rc, "authentication with %s failed: %s",
                                         email__auth_mech_name(e->mech),
                                         why ? why : "unexpected challenge from the server");
    else if (email__buf_append(&e->out, resp.data, resp.len))
        email__imap_fail(e, EMAIL_ENOMEM, "out of memory");
    else if (e->ev.log)
        e->ev.log(e->ud, 'C', "****");
    email__free_secret(email__buf_steal(&resp, NULL));
}

static void auth_done(imap_engine_t *e, int status, const char *line)
{
    const char *how = e->mech ? email__auth_mech_name(e->mech) : "LOGIN";
    if (status != 1) {
        e->mech = AUTH_NONE; /* the exchange is over: no "*" to cancel it */
        email__imap_logout_after_failure(e, EMAIL_EAUTH, "authentication with %s failed: %.300s",
                                         how, line);
        email__status_set_reply(&e->status, status, "", line);
        return;
    }
    if (e->scram && !email__scram_verified(e->scram)) {
        email__imap_logout_after_failure(e, EMAIL_EAUTH, "authentication with %s: the server "
                                         "never proved it knows the password", how);
        return;
    }
    email__status_set_reply(&e->status, 1, "", line);
    email__imap_ready(e);
}

void email__imap_setup_tagged(imap_engine_t *e, int status, const char *line, const char *text)
{
    switch (e->state) {
    case IM_CAPABILITY:
        if (status != 1)
            email__imap_fail(e, EMAIL_EPROTO, "CAPABILITY failed: %.300s", text);
        else if (!(e->caps & IMAP_CAP_KNOWN)) /* LOGINDISABLED, STARTTLS: unknown, not absent */
            email__imap_fail(e, EMAIL_EPROTO, "the server answered CAPABILITY without the "
                             "capability list: %.300s", line);
        else
            capabilities_known(e);
        return;
    case IM_STARTTLS:
        if (status == 1) {
            email__imap_set_state(e, IM_TLS_HANDSHAKE);
            if (e->ev.starttls)
                e->ev.starttls(e->ud);
        } else if (e->cfg.starttls == IMAP_TLS_REQUIRED) {
            email__imap_logout_after_failure(e, EMAIL_ETLSREQUIRED, "STARTTLS is required and "
                                             "the server refused it: %.300s", line);
        } else {
            authenticate(e);
        }
        return;
    case IM_AUTH:
        auth_done(e, status, line);
        return;
    default:
        email__imap_fail(e, EMAIL_EPROTO, "answer without a command: \"%.200s\"", line);
    }
}

void email__imap_engine_tls_established(imap_engine_t *e)
{
    if (e->state != IM_TLS_HANDSHAKE)
        return;
    /* RFC 3501 section 6.2.1: what was learnt in plain text is forgotten */
    e->cfg.tls_active = true;
    e->caps = 0;
    e->sasl = 0;
    simple(e, IM_CAPABILITY, "CAPABILITY");
}
