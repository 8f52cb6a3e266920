/*
 * emailsession-send: string lists, the settings record, reading files, and error messages.
 */
#include <emailsession.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "cli.h"

int strv_pushn(strv_t *l, const char *s, size_t n)
{
    if (l->n + 1 >= l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strndup(s, n)))
        return -1;
    l->v[++l->n] = NULL; /* so that the list can be passed as a NULL-terminated array */
    return 0;
}

int strv_push(strv_t *l, const char *s)
{
    return strv_pushn(l, s, strlen(s));
}

bool strv_contains(const strv_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

void strv_free(strv_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int cli_parse_security(const char *word)
{
    if (strcasecmp(word, "starttls") == 0)
        return EMAIL_SECURITY_STARTTLS;
    if (strcasecmp(word, "tls") == 0)
        return EMAIL_SECURITY_TLS;
    if (strcasecmp(word, "none") == 0)
        return EMAIL_SECURITY_NONE;
    return -1;
}

void cli_settings_init(cli_settings_t *s)
{
    memset(s, 0, sizeof *s);
    s->port = -1;
    s->security = -1;
}

/* Frees a string that may hold a secret, wiping it first. */
static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

void cli_settings_free(cli_settings_t *s)
{
    char *plain[] = {s->host, s->user, s->passwordeval, s->from, s->ca_file, s->helo,
                     s->outbox, s->password_at};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        free(plain[i]);
    free_secret(s->password);
    cli_settings_init(s);
}

static int take(char **dst, const char *src)
{
    if (*dst || !src)
        return 0;
    return (*dst = strdup(src)) ? 0 : -1;
}

int cli_settings_merge(cli_settings_t *dst, const cli_settings_t *src)
{
    /* a password source set on the command line hides both of the account's */
    bool has_password = dst->password || dst->passwordeval;
    int rc = take(&dst->host, src->host) | take(&dst->user, src->user) |
             take(&dst->from, src->from) | take(&dst->ca_file, src->ca_file) |
             take(&dst->helo, src->helo) | take(&dst->outbox, src->outbox);
    if (!has_password)
        rc |= take(&dst->password, src->password) | take(&dst->passwordeval, src->passwordeval) |
              take(&dst->password_at, src->password_at);
    if (dst->port < 0)
        dst->port = src->port;
    if (dst->security < 0)
        dst->security = src->security;
    return rc ? cli_fail(EX_OSERR, "out of memory") : 0;
}

int cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    fputs(CLI_NAME ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_read_file(const char *path, char **data, size_t *len)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return cli_fail(EX_NOINPUT, "cannot open %s: %s", path, strerror(errno));
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger)
            free(buf);
        buf = bigger;
        cap *= 2;
    }
    int err = ferror(f) ? errno : 0;
    if (!is_stdin)
        fclose(f);
    if (!buf)
        return cli_fail(EX_OSERR, "out of memory reading %s", path);
    if (err) {
        free(buf);
        return cli_fail(EX_NOINPUT, "cannot read %s: %s", is_stdin ? "standard input" : path,
                        strerror(err));
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
