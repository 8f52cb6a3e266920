/*
 * libFuzzer target: the engine's reading of the EHLO reply (lib/protocol.c) and what it does next.
 *
 * Input: byte 0 (STARTTLS policy bits 0-1, tls_active 2, credentials bits 3-4: none, password,
 * token, both; allow_cleartext_auth 5, auth_optional 6, a job is queued 7), byte 1 (the job: 8-bit
 * 0, SMTPUTF8 1, SIZE= mode bits 2-3; no_chunking 4; mechanism asked for bits 5-7), then the
 * server's answer to EHLO (after a fixed greeting).
 *
 * The capabilities, SIZE limit and AUTH mechanisms the engine reports must be what a reference
 * reading of the same reply lines finds (RFC 5321 4.1.1.1: the first line is the greeting, each
 * further line "keyword[ params]", keywords case-insensitive; AUTH=... as old servers write it),
 * and the engine's next step must follow the rules in DESIGN.md: STARTTLS when offered and wanted,
 * never a plaintext fallback when required, credentials never in clear unless allowed, HELO after
 * a 5xx, SIZE=/BODY=8BITMIME/SMTPUTF8 only as offered, MAIL+RCPT+DATA (or BDAT) grouped only with
 * PIPELINING. After STARTTLS the old capabilities are forgotten and the new EHLO reply is read the
 * same way.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "protocol.h"
#include "reply.h"
#include "status.h"
#include "util.h"

#define GREETING "220 mx.example ESMTP\r\n"
#define EHLO "EHLO client.example\r\n"

typedef struct ctx {
    int nclosed, nready, nstarttls, ndone;
    email_status_t closed;
    smtp_job_t *job;
    const char *body;
    size_t body_pos;
} ctx_t;

static void cb_ready(void *ud)
{
    ((ctx_t *)ud)->nready++;
}

static void cb_starttls(void *ud)
{
    ((ctx_t *)ud)->nstarttls++;
}

static void cb_job_done(void *ud, smtp_job_t *job)
{
    ctx_t *c = ud;
    FUZZ_CHECK(job == c->job, "job_done for another job");
    FUZZ_CHECK(++c->ndone == 1, "job_done twice");
}

static void cb_closed(void *ud, const email_status_t *why)
{
    ctx_t *c = ud;
    FUZZ_CHECK(++c->nclosed == 1, "closed twice");
    c->closed = *why;
}

static ssize_t body_read(void *ud, char *buf, size_t n)
{
    ctx_t *c = ud;
    size_t left = strlen(c->body) - c->body_pos;
    if (n > left)
        n = left;
    memcpy(buf, c->body + c->body_pos, n);
    c->body_pos += n;
    return (ssize_t)n;
}

static void take(smtp_engine_t *e, fuzz_str_t *out)
{
    out->len = 0;
    fuzz_str_add(out, "", 0);
    for (;;) {
        const char *d;
        size_t n = email__smtp_engine_take(e, &d);
        if (!n)
            return;
        fuzz_str_add(out, d, n);
        email__smtp_engine_written(e, n);
    }
}

/* ---- the reference reading of an EHLO reply ---- */

typedef struct caps {
    unsigned caps;
    unsigned mechs;
    bool size_known;   /* size is what the engine must report */
    uint64_t size;
} caps_t;

static bool word_is(const char *kw, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char a = kw[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (a != word[i])
            return false;
    }
    return true;
}

static unsigned ref_mechs(const char *s)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"LOGIN", AUTH_LOGIN},
                 {"PLAIN", AUTH_PLAIN},
                 {"CRAM-MD5", AUTH_CRAM_MD5},
                 {"XOAUTH2", AUTH_XOAUTH2},
                 {"OAUTHBEARER", AUTH_OAUTHBEARER}};
    unsigned set = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strcspn(s, " \t");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (n && word_is(s, n, names[i].name))
                set |= names[i].bit;
        s += n;
    }
    return set;
}

static caps_t ref_caps(const smtp_reply_t *r)
{
    caps_t c = {SMTP_CAP_EHLO, 0, true, 0};
    for (size_t i = 1; i < r->nlines; i++) {
        const char *l = r->lines[i];
        if (strlen(l) <= 4)
            continue;
        const char *kw = l + 4;
        size_t n = 0;
        while (kw[n] && kw[n] != ' ' && kw[n] != '=')
            n++;
        const char *arg = kw[n] ? kw + n + 1 : "";
        if (word_is(kw, n, "PIPELINING"))
            c.caps |= SMTP_CAP_PIPELINING;
        else if (word_is(kw, n, "8BITMIME"))
            c.caps |= SMTP_CAP_8BITMIME;
        else if (word_is(kw, n, "SMTPUTF8"))
            c.caps |= SMTP_CAP_SMTPUTF8;
        else if (word_is(kw, n, "CHUNKING"))
            c.caps |= SMTP_CAP_CHUNKING;
        else if (word_is(kw, n, "DSN"))
            c.caps |= SMTP_CAP_DSN;
        else if (word_is(kw, n, "ENHANCEDSTATUSCODES"))
            c.caps |= SMTP_CAP_ENHANCEDSTATUSCODES;
        else if (word_is(kw, n, "STARTTLS"))
            c.caps |= SMTP_CAP_STARTTLS;
        else if (word_is(kw, n, "AUTH")) {
            c.caps |= SMTP_CAP_AUTH;
            c.mechs |= ref_mechs(arg);
        } else if (word_is(kw, n, "SIZE")) {
            c.caps |= SMTP_CAP_SIZE;
            /* "SIZE 12345": the limit; anything stranger is not pinned down here */
            uint64_t v = 0;
            size_t k = 0;
            bool overflow = false;
            while (arg[k] >= '0' && arg[k] <= '9') {
                if (v > (UINT64_MAX - 9) / 10)
                    overflow = true;
                v = v * 10 + (uint64_t)(arg[k] - '0');
                k++;
            }
            bool any_digit = strpbrk(arg, "0123456789") != NULL;
            c.size_known = (k > 0 && !overflow) || !any_digit;
            c.size = k > 0 ? v : 0;
        }
    }
    return c;
}

static unsigned ref_choose(unsigned offered, unsigned wanted, bool pw, bool tok)
{
    if (wanted)
        return (offered & wanted) ? wanted : 0;
    static const unsigned order[] = {AUTH_OAUTHBEARER, AUTH_XOAUTH2, AUTH_CRAM_MD5, AUTH_PLAIN,
                                     AUTH_LOGIN};
    for (size_t i = 0; i < 5; i++) {
        bool oauth = order[i] == AUTH_XOAUTH2 || order[i] == AUTH_OAUTHBEARER;
        if ((offered & order[i]) && (oauth ? tok : pw))
            return order[i];
    }
    return 0;
}

static const char *mech_name(unsigned m)
{
    switch (m) {
    case AUTH_LOGIN: return "LOGIN";
    case AUTH_PLAIN: return "PLAIN";
    case AUTH_CRAM_MD5: return "CRAM-MD5";
    case AUTH_XOAUTH2: return "XOAUTH2";
    case AUTH_OAUTHBEARER: return "OAUTHBEARER";
    }
    return "?";
}

static bool starts(const fuzz_str_t *s, const char *p)
{
    return s->len >= strlen(p) && !memcmp(s->p, p, strlen(p));
}

typedef struct setup {
    smtp_engine_config_t cfg;
    bool have_job;
    smtp_job_t *job;
} setup_t;

/* A setup failure with the server still listening: QUIT written at once, the failure recorded,
 * closed only at QUIT's answer (or the abort at the end). */
static void check_quit(smtp_engine_t *e, const ctx_t *x, const fuzz_str_t *out, int error,
                       const char *what)
{
    FUZZ_CHECK(!x->nclosed && email__smtp_engine_quitting(e) &&
                   email__smtp_engine_status(e)->error == error,
               "%s: closed %d, error %d", what, x->nclosed, email__smtp_engine_status(e)->error);
    FUZZ_CHECK(!strcmp(out->p, "QUIT\r\n"), "%s: wrote \"%s\" instead of QUIT", what, out->p);
}

/* After a 250 to EHLO (caps read as c, TLS as `tls`): what the engine must have written. */
static void check_next_step(const setup_t *s, const caps_t *c, bool tls, smtp_engine_t *e,
                            ctx_t *x, const fuzz_str_t *out, bool *sent_starttls)
{
    const smtp_engine_config_t *cfg = &s->cfg;
    *sent_starttls = false;
    if (!tls && cfg->starttls != SMTP_TLS_NEVER && (c->caps & SMTP_CAP_STARTTLS)) {
        FUZZ_CHECK(!strcmp(out->p, "STARTTLS\r\n"), "STARTTLS offered and wanted: wrote \"%s\"",
                   out->p);
        FUZZ_CHECK(!email__smtp_engine_is_closed(e));
        *sent_starttls = true;
        return;
    }
    if (!tls && cfg->starttls == SMTP_TLS_REQUIRED) {
        check_quit(e, x, out, EMAIL_ETLSREQUIRED, "TLS required, not offered");
        return;
    }
    bool pw = cfg->creds.password && *cfg->creds.password;
    bool tok = cfg->creds.token && *cfg->creds.token;
    if (pw || tok) {
        unsigned m = ref_choose(c->mechs, cfg->auth_mech, pw, tok);
        if (!m) {
            if ((c->caps & SMTP_CAP_AUTH) && !cfg->auth_optional) {
                check_quit(e, x, out, EMAIL_EAUTHMECH, "no usable mechanism");
                return;
            }
            /* on without authentication */
        } else if (!tls && !cfg->allow_cleartext_auth) {
            check_quit(e, x, out, EMAIL_EINSECURE, "credentials over plaintext");
            return;
        } else {
            char want[64];
            snprintf(want, sizeof want, "AUTH %s", mech_name(m));
            FUZZ_CHECK(starts(out, want) && (out->p[strlen(want)] == ' ' ||
                                             out->p[strlen(want)] == '\r'),
                       "expected %s, wrote \"%s\"", want, out->p);
            FUZZ_CHECK(!x->nclosed);
            return;
        }
    }
    FUZZ_CHECK(x->nready == 1, "not ready after EHLO (closed %d)", x->nclosed);
    if (!s->have_job) {
        FUZZ_CHECK(out->len == 0, "wrote \"%s\" with nothing to send", out->p);
        return;
    }
    const smtp_job_t *j = s->job;
    if (c->size && j->size > c->size) {
        FUZZ_CHECK(x->ndone == 1 && j->outcome == SMTP_JOB_FAILED && j->status.error == EMAIL_ESIZE,
                   "a message over SIZE went ahead");
        FUZZ_CHECK(out->len == 0);
        return;
    }
    if (j->smtputf8 && !(c->caps & SMTP_CAP_SMTPUTF8)) {
        FUZZ_CHECK(x->ndone == 1 && j->status.error == EMAIL_ENOTSUP,
                   "SMTPUTF8 needed, not offered: went ahead");
        FUZZ_CHECK(out->len == 0);
        return;
    }
    char mail[256];
    fuzz_str_t want = {0};
    fuzz_str_puts(&want, "MAIL FROM:<");
    fuzz_str_puts(&want, j->from);
    fuzz_str_puts(&want, ">");
    if ((c->caps & SMTP_CAP_SIZE) && j->size) {
        snprintf(mail, sizeof mail, " SIZE=%llu", (unsigned long long)j->size);
        fuzz_str_puts(&want, mail);
    }
    if (j->eight_bit && (c->caps & SMTP_CAP_8BITMIME))
        fuzz_str_puts(&want, " BODY=8BITMIME");
    if (j->smtputf8)
        fuzz_str_puts(&want, " SMTPUTF8");
    fuzz_str_puts(&want, "\r\n");
    if (c->caps & SMTP_CAP_PIPELINING) {
        fuzz_str_puts(&want, "RCPT TO:<");
        fuzz_str_puts(&want, j->rcpts[0]);
        fuzz_str_puts(&want, ">\r\n");
        if ((c->caps & SMTP_CAP_CHUNKING) && !cfg->no_chunking) {
            snprintf(mail, sizeof mail, "BDAT %zu LAST\r\n%s", strlen(x->body), x->body);
            fuzz_str_puts(&want, mail);
        } else {
            fuzz_str_puts(&want, "DATA\r\n");
        }
    }
    FUZZ_CHECK(out->len == want.len && !memcmp(out->p, want.p, want.len),
               "caps %#x: wrote \"%s\", expected \"%s\"", c->caps, out->p, want.p);
    fuzz_str_free(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t b0 = fuzz_byte(&in), b1 = fuzz_byte(&in);
    const char *reply = (const char *)in.p;
    size_t rlen = in.n;

    setup_t s;
    memset(&s, 0, sizeof s);
    s.cfg.helo_name = "client.example";
    s.cfg.starttls = (b0 & 3) == 3 ? SMTP_TLS_IF_OFFERED : (int)(b0 & 3);
    s.cfg.tls_active = b0 & 4;
    s.cfg.creds.user = "user";
    if (b0 & 8)
        s.cfg.creds.password = "pw";
    if (b0 & 16)
        s.cfg.creds.token = "tok";
    s.cfg.allow_cleartext_auth = b0 & 32;
    s.cfg.auth_optional = b0 & 64;
    s.have_job = b0 & 128;
    s.cfg.no_chunking = b1 & 16;
    static const unsigned wanted[8] = {0, 0, 0, AUTH_LOGIN, AUTH_PLAIN, AUTH_CRAM_MD5,
                                       AUTH_XOAUTH2, AUTH_OAUTHBEARER};
    s.cfg.auth_mech = (auth_mech_t)wanted[(b1 >> 5) & 7];

    ctx_t x;
    memset(&x, 0, sizeof x);
    x.body = "Subject: t\r\n\r\nhi\r\n";
    static const char *rcpts[] = {"you@example.org"};
    smtp_job_t job;
    memset(&job, 0, sizeof job);
    job.from = "me@example.org";
    job.rcpts = rcpts;
    job.nrcpts = 1;
    job.eight_bit = b1 & 1;
    job.smtputf8 = b1 & 2;
    static const uint64_t sizes[4] = {0, 18, 100000, 1000000000000ull};
    job.size = sizes[(b1 >> 2) & 3];
    job.read = body_read;
    job.ctx = &x;
    x.job = &job;
    s.job = &job;

    smtp_engine_callbacks_t cb = {.ready = cb_ready, .starttls = cb_starttls,
                                  .job_done = cb_job_done, .closed = cb_closed};
    smtp_engine_t *e = email__smtp_engine_new(&s.cfg, &cb, &x);
    FUZZ_CHECK(e != NULL);
    if (s.have_job)
        FUZZ_CHECK(email__smtp_engine_submit(e, &job) == 0);
    fuzz_str_t out = {0};
    FUZZ_CHECK(email__smtp_engine_feed(e, GREETING, strlen(GREETING)) == 0);
    take(e, &out);
    FUZZ_CHECK(!strcmp(out.p, EHLO), "after the greeting: \"%s\"", out.p);

    /* the first reply in the input, read on its own */
    smtp_reply_parser_t p;
    email__smtp_reply_parser_init(&p);
    smtp_reply_t r;
    size_t used = 0;
    const char *err = NULL;
    int rc = email__smtp_reply_parse(&p, reply, rlen, &used, &r, &err);
    email__smtp_reply_parser_free(&p);

    int frc = email__smtp_engine_feed(e, reply, rc == 1 ? used : rlen);
    take(e, &out);
    if (rc < 0) {
        FUZZ_CHECK(frc == EMAIL_EPROTO && x.nclosed && x.closed.error == EMAIL_EPROTO,
                   "a malformed reply was taken (feed %d)", frc);
    } else if (rc == 0) {
        FUZZ_CHECK(frc == 0 && !x.nclosed && out.len == 0, "an incomplete reply acted on");
        FUZZ_CHECK(email__smtp_engine_caps(e) == 0);
    } else if (r.code == 250) {
        caps_t c = ref_caps(&r);
        FUZZ_CHECK(email__smtp_engine_caps(e) == c.caps, "caps %#x, the reference reads %#x",
                   email__smtp_engine_caps(e), c.caps);
        FUZZ_CHECK(email__smtp_engine_auth_mechs(e) == c.mechs, "mechanisms %#x, the reference %#x",
                   email__smtp_engine_auth_mechs(e), c.mechs);
        if (c.size_known)
            FUZZ_CHECK(email__smtp_engine_size_limit(e) == c.size, "SIZE %llu, the reference %llu",
                       (unsigned long long)email__smtp_engine_size_limit(e),
                       (unsigned long long)c.size);
        if (!c.size_known)
            c.size = email__smtp_engine_size_limit(e), c.size_known = true;
        bool starttls;
        check_next_step(&s, &c, s.cfg.tls_active, e, &x, &out, &starttls);
        if (starttls) {
            /* the upgrade: the same EHLO reply again, now over TLS */
            const char *go = "220 2.0.0 Ready to start TLS\r\n";
            FUZZ_CHECK(email__smtp_engine_feed(e, go, strlen(go)) == 0);
            FUZZ_CHECK(x.nstarttls == 1, "no starttls callback");
            take(e, &out);
            FUZZ_CHECK(out.len == 0, "wrote \"%s\" during the handshake", out.p);
            email__smtp_engine_tls_established(e);
            FUZZ_CHECK(email__smtp_engine_caps(e) == 0 && email__smtp_engine_auth_mechs(e) == 0,
                       "capabilities from before TLS kept");
            take(e, &out);
            FUZZ_CHECK(!strcmp(out.p, EHLO), "after TLS: \"%s\"", out.p);
            FUZZ_CHECK(email__smtp_engine_feed(e, reply, used) == 0 || x.nclosed);
            take(e, &out);
            FUZZ_CHECK(email__smtp_engine_caps(e) == c.caps, "caps after TLS %#x, before %#x",
                       email__smtp_engine_caps(e), c.caps);
            check_next_step(&s, &c, true, e, &x, &out, &starttls);
            FUZZ_CHECK(!starttls, "STARTTLS twice");
        }
    } else if (r.code >= 500) {
        FUZZ_CHECK(!strcmp(out.p, "HELO client.example\r\n"), "after %d to EHLO: \"%s\"", r.code,
                   out.p);
    } else if (r.code == 421) {
        FUZZ_CHECK(x.nclosed == 1 && out.len == 0, "421 to EHLO: closed %d, wrote \"%s\"",
                   x.nclosed, out.p);
        FUZZ_CHECK(x.closed.error == EMAIL_ECLOSED, "421 to EHLO: error %d", x.closed.error);
    } else {
        check_quit(e, &x, &out, EMAIL_ESERVER, "EHLO refused");
    }
    if (rc == 1)
        email__smtp_reply_free(&r);

    email__smtp_engine_abort(e, EMAIL_ECLOSED, "end of input");
    FUZZ_CHECK(x.nclosed == 1, "closed %d times", x.nclosed);
    FUZZ_CHECK(x.ndone == (s.have_job ? 1 : 0), "job_done %d times", x.ndone);
    email__smtp_engine_free(e);
    email__refusals_free(&job.refusals);
    fuzz_str_free(&out);
    return 0;
}
