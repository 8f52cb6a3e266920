/*
 * emailsession-send: where the password comes from. In this order: --password, --password-file,
 * --password-env (one of them), the account's password or passwordeval, a prompt on the
 * terminal. Nothing here ever prints the password.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "password.h"

/* The first line of text (without CR LF), copied; text is wiped. */
static char *first_line(char *text, size_t len)
{
    char *line = strndup(text, strcspn(text, "\r\n"));
    memset(text, 0, len);
    return line;
}

static int from_file(cli_options_t *o)
{
    char *text;
    size_t len;
    int rc = cli_read_file(o->password_file, &text, &len);
    if (rc)
        return rc;
    o->set.password = first_line(text, len);
    free(text);
    return o->set.password ? 0 : cli_fail(EX_OSERR, "out of memory");
}

int cli_password_from_options(cli_options_t *o)
{
    if (o->password_file)
        return from_file(o);
    if (o->password_env) {
        const char *value = getenv(o->password_env);
        if (!value)
            return cli_fail(EX_USAGE, "--password-env %s: no such environment variable",
                            o->password_env);
        if (!(o->set.password = strdup(value)))
            return cli_fail(EX_OSERR, "out of memory");
    }
    return 0;
}

/* passwordeval: the first line the command writes on its standard output. */
static int evaluate(cli_settings_t *s)
{
    FILE *f = popen(s->passwordeval, "r");
    if (!f)
        return cli_fail(EX_OSERR, "%s: passwordeval: %s", s->password_at, strerror(errno));
    char buf[1024];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = '\0';
    /* read the rest, so that a command writing more does not block on a full pipe */
    char scratch[256];
    while (fread(scratch, 1, sizeof scratch, f) > 0)
        continue;
    int status = pclose(f);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        memset(buf, 0, sizeof buf);
        return cli_fail(EX_CONFIG, "%s: passwordeval failed (exit status %d)", s->password_at,
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (!(s->password = first_line(buf, sizeof buf)))
        return cli_fail(EX_OSERR, "out of memory");
    return 0;
}

/* Reads a line from the terminal with echo off. Returns 0, or -1 when there is no terminal. */
static int prompt(const cli_settings_t *s, char *buf, size_t size)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios old, quiet;
    if (tcgetattr(fd, &old) != 0) {
        close(fd);
        return -1;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    tcsetattr(fd, TCSAFLUSH, &quiet); /* before the prompt: once it shows, echo is off */
    dprintf(fd, "Password for %s at %s: ", s->user, s->host ? s->host : "?");
    ssize_t n = 0, r;
    while ((size_t)n < size - 1 && (r = read(fd, buf + n, 1)) == 1 && buf[n] != '\n')
        n++;
    buf[n] = '\0';
    tcsetattr(fd, TCSAFLUSH, &old);
    dprintf(fd, "\n");
    close(fd);
    return 0;
}

int cli_password_resolve(cli_settings_t *s)
{
    if (!s->user || s->password)
        return 0;
    if (s->passwordeval)
        return evaluate(s);
    char buf[1024];
    if (prompt(s, buf, sizeof buf) != 0)
        return cli_fail(EX_USAGE, "no password for %s: give --password-file, --password-env, "
                        "passwordeval in the account file, or run on a terminal", s->user);
    s->password = first_line(buf, sizeof buf);
    return s->password ? 0 : cli_fail(EX_OSERR, "out of memory");
}
