/*
 * emailsession-send: the account file, in msmtp's syntax.
 *
 *   # comment
 *   defaults                      settings every account declared after it starts from
 *   account NAME [: PARENT,...]   an account, starting from its parents' settings
 *   host, port, security, user, password, passwordeval, from, ca_file, helo, outbox   KEY VALUE
 *   account default : NAME        the account used without --account
 *
 * Values may be written in double quotes (with \" and \\). A setting of the account wins over
 * its parents', which win over the defaults.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "account.h"
#include "cli.h"

typedef struct account {
    char *name;
    cli_settings_t set;
} account_t;

typedef struct parser {
    const char *path;
    int line;
    account_t *accounts;
    size_t n;
    cli_settings_t defaults;
    cli_settings_t *current; /* where the settings go: the defaults or the last account */
    int password_line;       /* the first `password` line, 0 if none */
} parser_t;

__attribute__((format(printf, 2, 3))) static int config_error(const parser_t *p,
                                                              const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, CLI_NAME ": %s:%d: ", p->path, p->line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EX_CONFIG;
}

static account_t *find_account(parser_t *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->accounts[i].name, name) == 0)
            return &p->accounts[i];
    return NULL;
}

/* The value of a line: the rest, or a quoted string. *value points into line (modified). */
static int unquote(const parser_t *p, char *s, char **value)
{
    if (*s != '"') {
        *value = s;
        return 0;
    }
    char *out = s, *in = s + 1;
    *value = s;
    for (; *in && *in != '"'; in++) {
        if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
            in++;
        *out++ = *in;
    }
    if (*in != '"' || in[1])
        return config_error(p, "%s", "unterminated quoted value, or text after it");
    *out = '\0';
    return 0;
}

/* Replaces *dst with a copy of value. */
static int replace(char **dst, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return cli_fail(EX_OSERR, "out of memory");
    free(*dst);
    *dst = copy;
    return 0;
}

static int set_password(parser_t *p, bool eval, const char *value)
{
    cli_settings_t *s = p->current;
    char at[600];
    snprintf(at, sizeof at, "%s:%d", p->path, p->line);
    if (!eval && !p->password_line)
        p->password_line = p->line;
    /* one of the two: the later line wins over an inherited or earlier one */
    if (eval) {
        free(s->password);
        s->password = NULL;
    } else {
        free(s->passwordeval);
        s->passwordeval = NULL;
    }
    int rc = replace(eval ? &s->passwordeval : &s->password, value);
    return rc ? rc : replace(&s->password_at, at);
}

static int set_number(parser_t *p, int *dst, const char *key, const char *value)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < 1 || v > 65535)
        return config_error(p, "%s wants a number from 1 to 65535", key);
    *dst = (int)v;
    return 0;
}

static int set_key(parser_t *p, const char *key, const char *value)
{
    cli_settings_t *s = p->current;
    static const struct { const char *key; size_t offset; } strings[] = {
        {"host", offsetof(cli_settings_t, host)},    {"user", offsetof(cli_settings_t, user)},
        {"from", offsetof(cli_settings_t, from)},    {"ca_file", offsetof(cli_settings_t, ca_file)},
        {"helo", offsetof(cli_settings_t, helo)},    {"outbox", offsetof(cli_settings_t, outbox)},
    };
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
        if (strcmp(key, strings[i].key) == 0)
            return replace((char **)((char *)s + strings[i].offset), value);
    if (strcmp(key, "password") == 0 || strcmp(key, "passwordeval") == 0)
        return set_password(p, key[8] == 'e', value);
    if (strcmp(key, "port") == 0)
        return set_number(p, &s->port, key, value);
    if (strcmp(key, "security") == 0) {
        if ((s->security = cli_parse_security(value)) < 0)
            return config_error(p, "security %s: expected starttls, tls or none", value);
        return 0;
    }
    return config_error(p, "unknown keyword '%s'", key);
}

/* "account NAME [: PARENT, ...]": the parents' settings, then the defaults. */
static int start_account(parser_t *p, char *value)
{
    char *colon = strchr(value, ':');
    char *name = strtok(value, " \t:");
    if (!name)
        return config_error(p, "%s", "account needs a name");
    if (find_account(p, name))
        return config_error(p, "account %s defined twice", name);
    account_t *grown = realloc(p->accounts, (p->n + 1) * sizeof *grown);
    if (!grown)
        return cli_fail(EX_OSERR, "out of memory");
    p->accounts = grown;
    account_t *a = &p->accounts[p->n];
    cli_settings_init(&a->set);
    if (!(a->name = strdup(name)))
        return cli_fail(EX_OSERR, "out of memory");
    p->n++;
    p->current = &a->set;
    for (char *parent = colon ? strtok(colon + 1, " \t,") : NULL; parent;
         parent = strtok(NULL, " \t,")) {
        account_t *from = find_account(p, parent);
        if (!from)
            return config_error(p, "account %s is not defined before this line", parent);
        if (cli_settings_merge(&a->set, &from->set))
            return EX_OSERR;
    }
    return cli_settings_merge(&a->set, &p->defaults);
}

static int parse_line(parser_t *p, char *line)
{
    line += strspn(line, " \t");
    size_t len = strlen(line);
    while (len && strchr(" \t\r", line[len - 1]))
        line[--len] = '\0';
    if (!*line || *line == '#')
        return 0;
    char *key = line, *value = line + strcspn(line, " \t");
    if (*value)
        *value++ = '\0';
    value += strspn(value, " \t");
    if (strcmp(key, "defaults") == 0) {
        p->current = &p->defaults;
        return 0;
    }
    if (strcmp(key, "account") == 0)
        return start_account(p, value);
    if (!*value)
        return config_error(p, "%s needs a value", key);
    int rc = unquote(p, value, &value);
    return rc ? rc : set_key(p, key, value);
}

/* Other users must not read (nor change) a file that holds a password. */
static int check_mode(const parser_t *p)
{
    struct stat st;
    if (!p->password_line)
        return 0;
    if (stat(p->path, &st) != 0)
        return cli_fail(EX_NOINPUT, "%s: %s", p->path, strerror(errno));
    if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH))
        return cli_fail(EX_CONFIG, "%s:%d: a password in a file other users can read or write "
                        "(mode %03o): chmod 600 it, or use passwordeval", p->path,
                        p->password_line, (unsigned)(st.st_mode & 0777));
    return 0;
}

static int parse_text(parser_t *p, char *text)
{
    int rc = 0;
    char *next;
    for (char *line = text; rc == 0 && line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        p->line++;
        rc = parse_line(p, line);
    }
    return rc ? rc : check_mode(p);
}

/* The chosen account's settings into out. */
static int choose(parser_t *p, const char *account, cli_settings_t *out)
{
    account_t *a = find_account(p, account ? account : "default");
    if (!a && account)
        return cli_fail(EX_CONFIG, "%s: no account '%s'", p->path, account);
    return cli_settings_merge(out, a ? &a->set : &p->defaults);
}

/* The file to read: --config, else under $XDG_CONFIG_HOME (or ~/.config). */
static int config_path(const char *config, char *path, size_t size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;
    if (config)
        n = snprintf(path, size, "%s", config);
    else if (xdg && *xdg == '/')
        n = snprintf(path, size, "%s/emailsession/config", xdg);
    else if (home && *home)
        n = snprintf(path, size, "%s/.config/emailsession/config", home);
    else
        n = snprintf(path, size, "%s", "");
    return n < 0 || (size_t)n >= size ? cli_fail(EX_CONFIG, "configuration path too long") : 0;
}

int cli_account_load(const char *config, const char *account, cli_settings_t *out)
{
    char path[4096];
    int rc = config_path(config, path, sizeof path);
    if (rc)
        return rc;
    if (!config && (!*path || access(path, F_OK) != 0))
        return account ? cli_fail(EX_CONFIG, "--account %s: no configuration file (%s)", account,
                                  *path ? path : "neither XDG_CONFIG_HOME nor HOME is set")
                       : 0;
    char *text;
    size_t len;
    if ((rc = cli_read_file(path, &text, &len)))
        return rc;
    parser_t p = {.path = path};
    cli_settings_init(&p.defaults);
    p.current = &p.defaults;
    rc = parse_text(&p, text);
    if (rc == 0)
        rc = choose(&p, account, out);
    for (size_t i = 0; i < p.n; i++) {
        free(p.accounts[i].name);
        cli_settings_free(&p.accounts[i].set);
    }
    free(p.accounts);
    cli_settings_free(&p.defaults);
    memset(text, 0, len); /* it may hold a password */
    free(text);
    return rc;
}
