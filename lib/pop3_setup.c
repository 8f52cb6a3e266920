/*
 * The POP3 engine's setup, one command at a time (nothing is pipelined across STLS or
 * authentication): greeting (its APOP timestamp), CAPA, STLS, then SASL AUTH (RFC 5034), APOP or
 * USER/PASS. Every secret is logged as "****".
 */
#include "pop3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

const char *email__pop3_text(const char *line)
{
    const char *sp = strchr(line, ' ');
    return sp ? sp + 1 : "";
}

/* Sends one setup command; false when out of memory (the session is then over). */
static bool send_setup(pop3_engine_t *e, enum p3_state next, const char *line, const char *shown)
{
    email__pop3_set_state(e, next);
    if (!email__pop3_send_line(e, line, shown))
        return true;
    email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
    return false;
}

/* The greeting's "<...>" timestamp, kept when it looks like one (no spaces, bounded). */
static void keep_timestamp(pop3_engine_t *e, const char *text)
{
    const char *lt = strchr(text, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    if (!gt || (size_t)(gt - lt + 1) >= sizeof e->timestamp || memchr(lt, ' ', (size_t)(gt - lt)))
        return;
    memcpy(e->timestamp, lt, (size_t)(gt - lt + 1));
    e->timestamp[gt - lt + 1] = '\0';
}

void email__pop3_capa_line(pop3_engine_t *e, const char *line)
{
    static const struct {
        const char *name;
        unsigned cap;
    } names[] = {{"TOP", POP3_CAP_TOP},   {"UIDL", POP3_CAP_UIDL},
                 {"USER", POP3_CAP_USER}, {"STLS", POP3_CAP_STLS},
                 {"PIPELINING", POP3_CAP_PIPELINING}};
    if (e->ev.log)
        e->ev.log(e->ud, 'S', line);
    if (email__strncasecmp(line, "SASL", 4) == 0 && (line[4] == ' ' || !line[4])) {
        e->caps |= POP3_CAP_SASL;
        e->sasl |= email__auth_parse_mechs(line + 4);
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (email__strcasecmp(line, names[i].name) == 0)
            e->caps |= names[i].cap;
}

static bool want_stls(const pop3_engine_t *e)
{
    if (e->cfg.tls_active || e->cfg.stls == POP3_TLS_NEVER)
        return false;
    return e->cfg.stls == POP3_TLS_REQUIRED || (e->caps & POP3_CAP_STLS);
}

static void authenticate(pop3_engine_t *e);

void email__pop3_capa_end(pop3_engine_t *e)
{
    e->caps |= POP3_CAP_CAPA;
    if (want_stls(e))
        send_setup(e, P3_STLS, "STLS", NULL);
    else
        authenticate(e);
}

/* AUTH with a SASL mechanism: its first line (the initial response inside, masked in the log). */
static void start_sasl(pop3_engine_t *e, auth_mech_t m)
{
    email_buf_t cmd, shown;
    email__buf_init(&cmd);
    email__buf_init(&shown);
    int rc;
    e->mech = m;
    e->auth_step = 0;
    if (email__auth_mech_is_scram(m)) {
        e->scram = email__scram_new(m == AUTH_SCRAM_SHA256, e->cfg.creds.user,
                                    e->cfg.creds.password);
        rc = e->scram ? email__buf_printf(&cmd, "AUTH %s ", email__auth_mech_name(m))
                      : EMAIL_ENOMEM;
        if (!rc)
            rc = email__buf_printf(&shown, "AUTH %s ****", email__auth_mech_name(m));
        if (!rc)
            rc = email__scram_client_first(e->scram, &cmd);
    } else {
        rc = email__auth_start(m, &e->cfg.creds, &cmd, &shown);
    }
    if (!rc)
        rc = email__buf_putc(&cmd, '\0') || email__buf_putc(&shown, '\0') ? EMAIL_ENOMEM : 0;
    if (rc)
        email__pop3_fail(e, rc, "authentication with %s: %s", email__auth_mech_name(m),
                         email_strerror(rc));
    else
        send_setup(e, P3_AUTH, cmd.data, shown.data);
    email__free_secret(email__buf_steal(&cmd, NULL));
    email__buf_free(&shown);
}

static void start_apop(pop3_engine_t *e)
{
    char digest[33], line[600], shown[300];
    if (email__auth_apop(e->timestamp, e->cfg.creds.password, digest)) {
        email__pop3_fail(e, EMAIL_ENOMEM, "out of memory");
        return;
    }
    snprintf(line, sizeof line, "APOP %s %s", e->cfg.creds.user, digest);
    snprintf(shown, sizeof shown, "APOP %.200s ****", e->cfg.creds.user);
    send_setup(e, P3_APOP, line, shown);
    memset(line, 0, sizeof line);
    memset(digest, 0, sizeof digest);
}

/* Which way to log in: a mechanism asked for (through AUTH, or not at all); else the strongest
 * SASL mechanism offered, APOP rather than a password in PLAIN or LOGIN, else USER/PASS. */
static void authenticate(pop3_engine_t *e)
{
    const auth_creds_t *c = &e->cfg.creds;
    if (!c->user || !*c->user) {
        email__pop3_quit_after_failure(e, EMAIL_EAUTH, "no user name to log in with");
        return;
    }
    bool cert = e->cfg.client_cert && e->cfg.tls_active;
    auth_mech_t m = email__auth_choose(e->sasl, e->cfg.auth_mech, 0, c, cert);
    if (e->cfg.auth_mech && m == AUTH_NONE) {
        email__pop3_quit_after_failure(e, EMAIL_EAUTHMECH,
                                       "the server does not offer %s (SASL:%s%s)",
                                       email__auth_mech_name(e->cfg.auth_mech),
                                       e->sasl ? "" : " none", e->sasl ? " others" : "");
        return;
    }
    if (!e->cfg.tls_active && !e->cfg.allow_cleartext_auth) {
        email__pop3_quit_after_failure(e, EMAIL_EINSECURE,
                                       "refusing to send credentials over an unencrypted "
                                       "connection%s", (e->caps & POP3_CAP_STLS) ? ""
                                       : " (the server does not offer STLS)");
        return;
    }
    bool apop = e->timestamp[0] && c->password && !e->cfg.auth_mech;
    if (apop && (m == AUTH_NONE || m == AUTH_PLAIN || m == AUTH_LOGIN))
        start_apop(e);
    else if (m != AUTH_NONE)
        start_sasl(e, m);
    else {
        char line[300];
        snprintf(line, sizeof line, "USER %s", c->user);
        send_setup(e, P3_USER, line, NULL);
    }
}

/* A "+ challenge" during AUTH: the mechanism's next answer, always a secret. */
static void sasl_step(pop3_engine_t *e, const char *line)
{
    const char *challenge = line[1] ? line + 2 : "";
    email_buf_t resp;
    email__buf_init(&resp);
    const char *why = NULL;
    int rc;
    if (e->scram && e->auth_step == 0)
        rc = email__scram_client_final(e->scram, challenge, &resp, &why);
    else if (e->scram && e->auth_step == 1)
        rc = email__scram_verify(e->scram, challenge, &why);
    else if (e->scram)
        rc = EMAIL_EPROTO;
    else
        rc = email__auth_step(e->mech, &e->cfg.creds, e->auth_step, challenge, &resp);
    e->auth_step++;
    if (!rc)
        rc = email__buf_putc(&resp, '\0') ? EMAIL_ENOMEM : 0;
    if (rc == EMAIL_ENOMEM)
        email__pop3_fail(e, rc, "out of memory");
    else if (rc)
        /* the server reads QUIT as a (wrong) answer: its -ERR then ends the session */
        email__pop3_quit_after_failure(e, rc, "authentication with %s failed: %s",
                                       email__auth_mech_name(e->mech),
                                       why ? why : "unexpected challenge from the server");
    else
        send_setup(e, P3_AUTH, resp.data, "****");
    email__free_secret(email__buf_steal(&resp, NULL));
}

static void auth_refused(pop3_engine_t *e, const char *line)
{
    const char *how = e->state == P3_APOP ? "APOP"
                      : e->state == P3_AUTH ? email__auth_mech_name(e->mech)
                                            : "USER/PASS";
    email__pop3_quit_after_failure(e, EMAIL_EAUTH, "authentication with %s failed: %s", how, line);
    email__status_set_reply(&e->status, -1, "", line);
}

static void greeted(pop3_engine_t *e, bool ok, const char *line)
{
    if (!ok) { /* the server's refusal (ESERVER, as SMTP's 554 greeting), with its line */
        email__pop3_fail(e, EMAIL_ESERVER, "the server refused the connection: %s", line);
        email__status_set_reply(&e->status, -1, "", line);
        return;
    }
    keep_timestamp(e, email__pop3_text(line));
    send_setup(e, P3_CAPA, "CAPA", NULL);
}

void email__pop3_setup_status(pop3_engine_t *e, bool ok, bool cont, const char *line)
{
    switch (e->state) {
    case P3_GREETING:
        greeted(e, ok, line);
        return;
    case P3_CAPA:
        if (ok)
            e->reading = R_LINES; /* its lines follow */
        else
            email__pop3_capa_end(e); /* no CAPA (RFC 1939 server): nothing known */
        return;
    case P3_STLS:
        if (ok) {
            email__pop3_set_state(e, P3_TLS_HANDSHAKE);
            if (e->ev.starttls)
                e->ev.starttls(e->ud);
        } else if (e->cfg.stls == POP3_TLS_REQUIRED) {
            email__pop3_quit_after_failure(e, EMAIL_ETLSREQUIRED,
                                           "STLS is required and the server refused it: %s", line);
        } else {
            authenticate(e);
        }
        return;
    case P3_USER:
        if (!ok) {
            auth_refused(e, line);
            return;
        }
        char pass[600];
        snprintf(pass, sizeof pass, "PASS %s",
                 e->cfg.creds.password ? e->cfg.creds.password : "");
        send_setup(e, P3_PASS, pass, "PASS ****");
        memset(pass, 0, sizeof pass);
        return;
    case P3_AUTH:
        if (cont) {
            sasl_step(e, line);
            return;
        }
        if (ok && e->scram && !email__scram_verified(e->scram)) {
            email__pop3_quit_after_failure(e, EMAIL_EAUTH, "authentication with %s: the server "
                                           "never proved it knows the password",
                                           email__auth_mech_name(e->mech));
            return;
        }
        /* fall through */
    case P3_PASS:
    case P3_APOP:
        if (!ok) {
            auth_refused(e, line);
            return;
        }
        email__status_set_reply(&e->status, 1, "", line);
        email__pop3_ready(e);
        return;
    default:
        email__pop3_fail(e, EMAIL_EPROTO, "answer without a command: \"%.200s\"", line);
    }
}

void email__pop3_engine_tls_established(pop3_engine_t *e)
{
    if (e->state != P3_TLS_HANDSHAKE)
        return;
    /* RFC 2595: what was learnt in plain text is forgotten */
    e->cfg.tls_active = true;
    e->caps = 0;
    e->sasl = 0;
    send_setup(e, P3_CAPA, "CAPA", NULL);
}
