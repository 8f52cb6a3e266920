/*
 * The transporter (4D's SMTP transporter): one server's settings, checked and copied at creation,
 * and the list of live transporters email_shutdown goes through. Its queue and connection are in
 * transporter_queue.c, its public calls in transporter_sync.c.
 */
#include "transporter_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth_scram.h"
#include "error.h"
#include "tls.h"
#include "util.h"

void email_server_init(email_server_t *server)
{
    if (!server)
        return;
    memset(server, 0, sizeof *server);
    server->keep_alive = true;
}

/* Every live transporter, so that email_shutdown can close their idle connections. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static queue_t live = QUEUE_INITIALIZER(live);

static void live_add(email_transporter_t *t)
{
    pthread_mutex_lock(&live_lock);
    queue_insert_tail(&live, &t->live);
    pthread_mutex_unlock(&live_lock);
}

void email__transporter_set_quiesce(email_transporter_t *t, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&live_lock);
    t->on_quiesce = fn;
    t->quiesce_arg = arg;
    pthread_mutex_unlock(&live_lock);
}

void email__transporter_destroy(email_transporter_t *t)
{
    pthread_mutex_lock(&live_lock);
    queue_remove(&t->live); /* harmless when it was never added */
    pthread_mutex_unlock(&live_lock);
    email__log_sink_release(t->log);
    free(t->host);
    free(t->user);
    email__free_secret(t->password);
    email__free_secret(t->token);
    free(t->log_file);
    free(t->ca_file);
    free(t->cert_file);
    free(t->key_file);
    email__tls_resume_free(t->resume);
    free(t->helo_name);
    free(t->header_charset);
    free(t->body_charset);
    free(t->open_status);
    free(t->name);
    email__outbox_release(t->outbox);
    free(t);
}

static bool valid_mode(const char *m)
{
    return !m || !strcmp(m, EMAIL_MAIL_MODE_UTF8) || !strcmp(m, EMAIL_MAIL_MODE_UTF8_IN_BASE64) ||
           !strcmp(m, EMAIL_MAIL_MODE_ISO88591) || !strcmp(m, EMAIL_MAIL_MODE_ISO2022JP);
}

static bool has_control(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* The authentication mode asked for: AUTH_NONE for "the strongest offered". */
static int check_auth_mode(const email_server_t *s, auth_mech_t *mech, char *err, size_t errlen)
{
    const char *mode = s->authentication_mode;
    *mech = AUTH_NONE;
    if (!mode || !*mode)
        return 0;
    if ((*mech = email__auth_mech_from_name(mode)) == AUTH_NONE) {
        snprintf(err, errlen,
                 "server: authentication_mode \"%s\" is not supported (CRAM-MD5, LOGIN, PLAIN, "
                 "OAUTH2, XOAUTH2, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-1, EXTERNAL)",
                 mode);
        return EMAIL_EINVAL;
    }
    if (email__auth_mech_is_scram(*mech) && s->password && !email__scram_password_ok(s->password)) {
        snprintf(err, errlen,
                 "server: authentication_mode \"%s\" takes a password of printable ASCII only "
                 "(other characters would need SASLprep, which is not supported)",
                 mode);
        return EMAIL_ENOTSUP;
    }
    if (*mech == AUTH_EXTERNAL && !s->client_cert_file) {
        snprintf(err, errlen, "server: authentication_mode \"%s\" needs client_cert_file", mode);
        return EMAIL_EINVAL;
    }
    return 0;
}

/* Everything that can be said of the settings without the network. */
static int check_settings(const email_server_t *s, auth_mech_t *mech, char *err, size_t errlen)
{
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return EMAIL_EINVAL;                                                                       \
    } while (0)
    if (!s)
        BAD("no server settings");
    if (!s->host || !*s->host)
        BAD("server: host is missing");
    if (email__has_crlf(s->host) || strchr(s->host, ' '))
        BAD("server: host \"%s\" is not a host name or address", s->host);
    if (s->port < 0 || s->port > 65535)
        BAD("server: port %d is out of range", s->port);
    if (s->security < EMAIL_SECURITY_STARTTLS || s->security > EMAIL_SECURITY_NONE)
        BAD("server: security %d is not an EMAIL_SECURITY_ value", s->security);
    if (s->connection_timeout < 0 || s->send_timeout < 0 ||
        s->connection_timeout > EMAIL_TIMEOUT_MAX || s->send_timeout > EMAIL_TIMEOUT_MAX)
        BAD("server: timeouts must be 0 to %d seconds", EMAIL_TIMEOUT_MAX);
    const char *fields[] = {s->user, s->password, s->oauth2_token, s->helo_name};
    const char *names[] = {"user", "password", "oauth2_token", "helo_name"};
    for (size_t i = 0; i < 4; i++)
        if (fields[i] && email__has_crlf(fields[i]))
            BAD("server: %s contains a line break", names[i]);
    /* control characters would split the SASL payloads (XOAUTH2 and OAUTHBEARER separate their
     * fields with \001); a password only ever goes whole, base64-encoded or as an HMAC key */
    if (has_control(s->user) || has_control(s->oauth2_token))
        BAD("server: %s contains a control character",
            has_control(s->user) ? "user" : "oauth2_token");
    if (s->helo_name && (!*s->helo_name || strchr(s->helo_name, ' ')))
        BAD("server: helo_name \"%s\" is not a domain or address literal", s->helo_name);
    if (!valid_mode(s->header_charset) || !valid_mode(s->body_charset))
        BAD("server: header_charset/body_charset must be an EMAIL_MAIL_MODE_ value");
    if (s->max_connections < 0 || s->max_connections > EMAIL_MAX_CONNECTIONS)
        BAD("server: max_connections %d is not 0 to %d", s->max_connections,
            EMAIL_MAX_CONNECTIONS);
    if (s->ca_file && access(s->ca_file, R_OK) != 0)
        BAD("server: ca_file \"%s\" cannot be read", s->ca_file);
    if (s->client_key_file && !s->client_cert_file)
        BAD("server: client_key_file without client_cert_file");
    if (s->client_cert_file &&
        email__tls_check_client_cert(s->client_cert_file, s->client_key_file, err, errlen))
        return EMAIL_EINVAL;
    return check_auth_mode(s, mech, err, errlen);
#undef BAD
}

/* The string settings, copied; false when out of memory. */
static bool copy_strings(email_transporter_t *t, const email_server_t *s,
                         const transporter_policy_t *policy)
{
    char hostname[256] = "localhost";
    if (!s->helo_name) {
        if (gethostname(hostname, sizeof hostname - 1) != 0 || !hostname[0] ||
            strchr(hostname, ' '))
            strcpy(hostname, "localhost");
        hostname[sizeof hostname - 1] = '\0';
    }
    t->host = email__strdup(s->host);
    t->user = email__strdup(s->user);
    t->password = email__strdup(s->password);
    t->token = email__strdup(s->oauth2_token);
    t->log_file = email__strdup(s->log_file);
    t->ca_file = email__strdup(s->ca_file);
    t->cert_file = email__strdup(s->client_cert_file);
    t->key_file = email__strdup(s->client_key_file);
    t->helo_name = email__strdup(s->helo_name ? s->helo_name : hostname);
    t->name = email__strdup(policy ? policy->session_name : NULL);
    t->header_charset = email__strdup(s->header_charset);
    t->body_charset = email__strdup(s->body_charset);
    return t->host && t->helo_name && (!s->user || t->user) && (!s->password || t->password) &&
           (!s->oauth2_token || t->token) && (!s->log_file || t->log_file) &&
           (!s->ca_file || t->ca_file) && (!s->client_cert_file || t->cert_file) &&
           (!s->client_key_file || t->key_file) && (!s->header_charset || t->header_charset) &&
           (!s->body_charset || t->body_charset) &&
           (!policy || !policy->session_name || t->name);
}

/* 4D's rules: STARTTLS unless told otherwise; accept_unsecure_connection allows plaintext. */
static transporter_policy_t policy_4d(const email_server_t *s)
{
    transporter_policy_t p = {.auth = TRANSPORTER_AUTH_STRONGEST};
    p.tls = s->security == EMAIL_SECURITY_TLS    ? TRANSPORTER_TLS_IMPLICIT
            : s->security == EMAIL_SECURITY_NONE ? TRANSPORTER_TLS_NONE
            : s->accept_unsecure_connection      ? TRANSPORTER_TLS_OPPORTUNISTIC
                                                 : TRANSPORTER_TLS_STARTTLS;
    p.allow_insecure_auth = s->accept_unsecure_connection;
    return p;
}

/* email__transporter_new_ex, with the EMAIL_E... code of a refusal in *code. */
static email_transporter_t *transporter_create(const email_server_t *s,
                                               const transporter_policy_t *policy, char *err,
                                               size_t errlen, int *code)
{
    auth_mech_t mech;
    if ((*code = check_settings(s, &mech, err, errlen)))
        return NULL;
    log_sink_t *log = NULL;
    if (s->log_file) {
        char why[400];
        if (!(log = email__log_sink_open(s->log_file, why, sizeof why))) {
            snprintf(err, errlen, "server: log_file: %s", why);
            *code = EMAIL_EINVAL;
            return NULL;
        }
    }
    email_transporter_t *t = calloc(1, sizeof *t);
    if (t) {
        t->log = log;
        queue_init(&t->live);
        queue_init(&t->waiting);
        queue_init(&t->conns);
        queue_init(&t->openers);
    } else {
        email__log_sink_release(log);
    }
    if (!t || !copy_strings(t, s, policy)) {
        if (t)
            email__transporter_destroy(t); /* releases the log */
        snprintf(err, errlen, "out of memory");
        *code = EMAIL_ENOMEM;
        return NULL;
    }
    if (s->outbox && !(t->outbox = email__outbox_open(s->outbox, err, errlen))) {
        *code = strstr(err, "memory") ? EMAIL_ENOMEM : EMAIL_EIO;
        email__transporter_destroy(t);
        return NULL;
    }
    t->auth_mech = mech;
    t->keep_alive = s->keep_alive;
    t->max_connections = s->max_connections ? (size_t)s->max_connections : 1;
    t->pool_limit = t->max_connections;
    t->security = s->security;
    t->accept_unsecure = s->accept_unsecure_connection;
    t->connect_timeout_ms = (s->connection_timeout ? s->connection_timeout : 30) * 1000;
    t->reply_timeout_ms = (s->send_timeout ? s->send_timeout : 100) * 1000;
    t->texts_4d = !policy;
    t->policy = policy ? *policy : policy_4d(s);
    t->port = s->port ? s->port : t->policy.tls == TRANSPORTER_TLS_IMPLICIT ? 465 : 587;
    live_add(t);
    return t;
}

email_transporter_t *email__transporter_new_ex(const email_server_t *s,
                                        const transporter_policy_t *policy, char *err,
                                        size_t errlen)
{
    int code;
    return transporter_create(s, policy, err, errlen, &code);
}

email_transporter_t *email_transporter_new(const email_server_t *server)
{
    char err[512];
    int code;
    email_transporter_t *t = transporter_create(server, NULL, err, sizeof err, &code);
    if (t)
        email__error_clear();
    else
        email__error_set(code, "%s", err);
    return t;
}

int email_transporter_get_server(const email_transporter_t *t, email_server_t *out)
{
    if (!t || !out)
        return email__error_set(EMAIL_EINVAL, "email_transporter_get_server: %s is NULL",
                                t ? "out" : "the transporter");
    email_server_init(out);
    out->host = t->host;
    out->port = t->port;
    out->user = t->user;
    out->authentication_mode =
        t->auth_mech != AUTH_NONE ? email__auth_mech_name(t->auth_mech) : NULL;
    out->security = t->security;
    out->accept_unsecure_connection = t->accept_unsecure;
    out->connection_timeout = t->connect_timeout_ms / 1000;
    out->send_timeout = t->reply_timeout_ms / 1000;
    out->keep_alive = t->keep_alive;
    out->log_file = t->log_file;
    /* what email__message_freeze applies to a message that chose none */
    out->header_charset = t->header_charset ? t->header_charset : EMAIL_MAIL_MODE_UTF8;
    out->body_charset = t->body_charset ? t->body_charset : EMAIL_MAIL_MODE_UTF8;
    out->ca_file = t->ca_file;
    out->helo_name = t->helo_name;
    out->max_connections = (int)t->max_connections;
    out->client_cert_file = t->cert_file;
    out->client_key_file = t->key_file;
    out->outbox = t->outbox ? email__outbox_dir(t->outbox) : NULL;
    email__error_clear();
    return 0;
}

void email__transporter_make_config(email_transporter_t *t, connection_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = t->host;
    cfg->port = t->port;
    cfg->engine.helo_name = t->helo_name;
    cfg->engine.creds.user = t->user;
    cfg->engine.creds.password = t->password;
    cfg->engine.creds.token = t->token;
    cfg->engine.auth_mech = t->auth_mech;
    if (t->policy.auth == TRANSPORTER_AUTH_WLANGUAGE) {
        cfg->engine.auth_limit = AUTH_PLAIN | AUTH_LOGIN;
        cfg->engine.auth_optional = true;
    }
    bool implicit = t->policy.tls == TRANSPORTER_TLS_IMPLICIT;
    cfg->engine.starttls = t->policy.tls == TRANSPORTER_TLS_STARTTLS        ? SMTP_TLS_REQUIRED
                           : t->policy.tls == TRANSPORTER_TLS_OPPORTUNISTIC ? SMTP_TLS_IF_OFFERED
                                                                            : SMTP_TLS_NEVER;
    cfg->engine.tls_active = implicit;
    cfg->allow_insecure_auth = t->policy.allow_insecure_auth;
    cfg->implicit_tls = implicit;
    cfg->ca_file = t->ca_file;
    cfg->cert_file = t->cert_file;
    cfg->key_file = t->key_file;
    cfg->engine.client_cert = t->cert_file != NULL;
    cfg->resume = &t->resume;
    cfg->no_verify = t->policy.no_verify;
    cfg->connect_timeout_ms = t->connect_timeout_ms;
    cfg->reply_timeout_ms = t->reply_timeout_ms;
    cfg->session_id = email__log_session_id();
    cfg->log = t->log;
}

/* email_shutdown: every connection says QUIT once its queue is done, so the loop can end; the
 * transporters stay usable (a later send starts the library again). */
static void op_quiesce(void *arg)
{
    queue_t *n;
    pthread_mutex_lock(&live_lock);
    queue_foreach (n, &live) {
        email__transporter_quiesce(queue_data(n, email_transporter_t, live));
    }
    pthread_mutex_unlock(&live_lock);
}

void email__transporter_quiesce_all(void)
{
    if (email__runtime_running())
        email__runtime_post(op_quiesce, NULL);
}
