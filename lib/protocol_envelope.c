/*
 * The engine's envelope commands: MAIL FROM and RCPT TO with their parameters (RFC 1870 SIZE,
 * 6152 BODY, 6531 SMTPUTF8, 3461 DSN), and which form of an international address goes: as it is
 * when the server offers SMTPUTF8, with its domain as an A-label otherwise.
 */
#include "protocol_internal.h"

#include <stdio.h>
#include <string.h>

/* The envelope goes in UTF-8 (with the SMTPUTF8 parameter) when it has to, or when an address
   is not ASCII and the server takes it so. */
static bool utf8_envelope(const smtp_engine_t *e, const smtp_job_t *j)
{
    return (e->caps & SMTP_CAP_SMTPUTF8) && (j->smtputf8 || j->from_ace || j->rcpts_ace);
}

static bool dsn_wanted(const smtp_job_t *j)
{
    return j->dsn_notify || j->dsn_ret || j->dsn_envid;
}

static bool dsn_sent(const smtp_engine_t *e, const smtp_job_t *j)
{
    return (e->caps & SMTP_CAP_DSN) && dsn_wanted(j);
}

bool email__smtp_envelope_fits(smtp_engine_t *e, const smtp_job_t *j, char *why, size_t size)
{
    if (j->smtputf8 && !(e->caps & SMTP_CAP_SMTPUTF8)) {
        if (j->utf8_address)
            snprintf(why, size,
                     "the address \"%.200s\" has a local part that is not ASCII and the server "
                     "does not offer SMTPUTF8",
                     j->utf8_address);
        else
            snprintf(why, size, "an address is not ASCII and the server does not offer SMTPUTF8");
        return false;
    }
    if (dsn_wanted(j) && !(e->caps & SMTP_CAP_DSN) && !e->dsn_noted) {
        /* a request, not a condition: the message goes, the server's own rules apply */
        e->dsn_noted = true;
        email__smtp_logf(e, '#', "SMTP DSN not offered by the server: messages go without "
                                 "delivery status notification requests");
    }
    return true;
}

/* RFC 3461 4: xtext, '+' and two upper-case hex digits for '+', '=' and anything not graphic. */
static int put_xtext(email_buf_t *b, const char *s)
{
    int rc = 0;
    for (; !rc && *s; s++) {
        unsigned char c = (unsigned char)*s;
        rc = c > ' ' && c < 0x7F && c != '+' && c != '='
                 ? email__buf_putc(b, (char)c)
                 : email__buf_printf(b, "+%02X", c);
    }
    return rc;
}

/* The code point of the (valid) UTF-8 sequence at *s, which moves past it. */
static unsigned long utf8_next(const char **s)
{
    const unsigned char *p = (const unsigned char *)*s;
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC0 ? 2 : 1;
    unsigned long cp = n == 1 ? p[0] : p[0] & (0x7F >> n);
    for (size_t i = 1; i < n && p[i]; i++)
        cp = cp << 6 | (p[i] & 0x3F);
    *s += n;
    return cp;
}

/* RFC 6533 3: utf-8-addr-xtext, "\x{HEX}" for '+', '=', '\', and what is not graphic ASCII. */
static int put_utf8_xtext(email_buf_t *b, const char *s)
{
    int rc = 0;
    while (!rc && *s) {
        unsigned long cp = utf8_next(&s);
        rc = cp > ' ' && cp < 0x7F && cp != '+' && cp != '=' && cp != '\\'
                 ? email__buf_putc(b, (char)cp)
                 : email__buf_printf(b, "\\x{%02lX}", cp);
    }
    return rc;
}

int email__smtp_mail_line(const smtp_engine_t *e, const smtp_job_t *j, email_buf_t *line)
{
    bool utf8 = utf8_envelope(e, j);
    const char *from = utf8 || !j->from_ace ? j->from : j->from_ace;
    int rc = email__buf_printf(line, "MAIL FROM:<%s>", from);
    if (!rc && (e->caps & SMTP_CAP_SIZE) && j->size)
        rc = email__buf_printf(line, " SIZE=%llu", (unsigned long long)j->size);
    if (!rc && j->eight_bit && (e->caps & SMTP_CAP_8BITMIME))
        rc = email__buf_puts(line, " BODY=8BITMIME");
    if (!rc && utf8)
        rc = email__buf_puts(line, " SMTPUTF8");
    if (!rc && dsn_sent(e, j) && j->dsn_ret)
        rc = email__buf_printf(line, " RET=%s", j->dsn_ret);
    if (!rc && dsn_sent(e, j) && j->dsn_envid) {
        rc = email__buf_puts(line, " ENVID=");
        rc = rc ? rc : put_xtext(line, j->dsn_envid);
    }
    return rc;
}

/* NOTIFY=NEVER, or the conditions asked for in RFC 3461's order. */
static int put_notify(email_buf_t *line, int notify)
{
    if (notify & EMAIL_NOTIFY_NEVER)
        return email__buf_puts(line, " NOTIFY=NEVER");
    static const struct {
        int flag;
        const char *name;
    } names[] = {{EMAIL_NOTIFY_SUCCESS, "SUCCESS"},
                 {EMAIL_NOTIFY_FAILURE, "FAILURE"},
                 {EMAIL_NOTIFY_DELAY, "DELAY"}};
    int rc = email__buf_puts(line, " NOTIFY=");
    bool first = true;
    for (size_t i = 0; !rc && i < sizeof names / sizeof *names; i++) {
        if (!(notify & names[i].flag))
            continue;
        rc = email__buf_printf(line, "%s%s", first ? "" : ",", names[i].name);
        first = false;
    }
    return rc;
}

int email__smtp_rcpt_line(const smtp_engine_t *e, const smtp_job_t *j, size_t i,
                          email_buf_t *line)
{
    const char *to = utf8_envelope(e, j) || !j->rcpts_ace ? j->rcpts[i] : j->rcpts_ace[i];
    int rc = email__buf_printf(line, "RCPT TO:<%s>", to);
    if (rc || !dsn_sent(e, j))
        return rc;
    if (j->dsn_notify)
        rc = put_notify(line, j->dsn_notify);
    /* the original recipient as it went in RCPT TO: RFC 6533's utf-8 type when not ASCII */
    bool ascii = email__is_ascii(to, strlen(to));
    rc = rc ? rc : email__buf_puts(line, ascii ? " ORCPT=rfc822;" : " ORCPT=utf-8;");
    return rc ? rc : ascii ? put_xtext(line, to) : put_utf8_xtext(line, to);
}
