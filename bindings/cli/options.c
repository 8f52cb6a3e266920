/*
 * emailsession-send: the command line, ours (--server ...) and sendmail's (-t -f -i -oi -F,
 * recipients as arguments, and the flags callers of sendmail pass that change nothing here).
 */
#include <emailsession.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "options.h"

enum {
    OPT_SERVER = 256, OPT_PORT, OPT_SECURITY, OPT_USER, OPT_PASSWORD, OPT_PASSWORD_FILE,
    OPT_PASSWORD_ENV, OPT_CA_FILE, OPT_FROM, OPT_TO, OPT_CC, OPT_BCC, OPT_SUBJECT, OPT_ATTACH,
    OPT_BODY, OPT_BODY_FILE, OPT_MESSAGE_FILE, OPT_HELO, OPT_ACCOUNT, OPT_CONFIG, OPT_DRY_RUN,
    OPT_VERSION, OPT_HELP, OPT_QUEUE, OPT_FLUSH, OPT_LIST, OPT_OUTBOX, OPT_RESEND_UNKNOWN,
    OPT_DROP_UNKNOWN
};

static const struct option long_options[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"port", required_argument, NULL, OPT_PORT},
    {"security", required_argument, NULL, OPT_SECURITY},
    {"user", required_argument, NULL, OPT_USER},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"password-env", required_argument, NULL, OPT_PASSWORD_ENV},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"cc", required_argument, NULL, OPT_CC},
    {"bcc", required_argument, NULL, OPT_BCC},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"attach", required_argument, NULL, OPT_ATTACH},
    {"body", required_argument, NULL, OPT_BODY},
    {"body-file", required_argument, NULL, OPT_BODY_FILE},
    {"message-file", required_argument, NULL, OPT_MESSAGE_FILE},
    {"helo", required_argument, NULL, OPT_HELO},
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"verbose", no_argument, NULL, 'v'},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {"queue", no_argument, NULL, OPT_QUEUE},
    {"flush", no_argument, NULL, OPT_FLUSH},
    {"list", no_argument, NULL, OPT_LIST},
    {"outbox", required_argument, NULL, OPT_OUTBOX},
    {"resend-unknown", no_argument, NULL, OPT_RESEND_UNKNOWN},
    {"drop-unknown", no_argument, NULL, OPT_DROP_UNKNOWN},
    {NULL, 0, NULL, 0},
};

/* sendmail's flags: ours, then those taken and ignored (-B -N -R -V -X -O -L -h -r -C -A take
 * an argument; -m -n -U -G none). -r is sendmail's old name of -f. */
static const char short_options[] = "tif:F:o:b:vB:N:R:V:X:O:L:h:r:C:A:mnUG";

/* Stores a copy of arg in *dst; a second occurrence of the same option is a usage error. */
static int set_once(char **dst, const char *arg, const char *name)
{
    if (*dst)
        return cli_fail(EX_USAGE, "%s given twice", name);
    if (!(*dst = strdup(arg)))
        return cli_fail(EX_OSERR, "out of memory");
    return 0;
}

static int push(strv_t *l, const char *arg)
{
    return strv_push(l, arg) ? cli_fail(EX_OSERR, "out of memory") : 0;
}

static int parse_port(cli_options_t *o, const char *arg)
{
    char *end;
    long port = strtol(arg, &end, 10);
    if (!*arg || *end || port < 1 || port > 65535)
        return cli_fail(EX_USAGE, "--port %s: expected a number from 1 to 65535", arg);
    o->set.port = (int)port;
    return 0;
}

/* --password: kept, then wiped from our argv so that ps shows it for as short a time as we can
 * (it was visible until now: the documentation says so). */
static int take_password(cli_options_t *o, char *arg)
{
    int rc = set_once(&o->set.password, arg, "--password");
    memset(arg, 'x', strlen(arg));
    o->password_options++;
    return rc;
}

static int sendmail_option(cli_options_t *o, int c, const char *arg)
{
    switch (c) {
    case 't':
        o->read_headers = true;
        return 0;
    case 'i':
        o->ignore_dots = true;
        return 0;
    case 'f':
    case 'r':
        return set_once(&o->envelope_from, arg, "-f");
    case 'F':
        return set_once(&o->full_name, arg, "-F");
    case 'o':
        if (strcmp(arg, "i") == 0)
            o->ignore_dots = true;
        return 0; /* -oem, -odi, -oee...: delivery modes of a local MTA */
    case 'b':
        if (strcmp(arg, "m") != 0)
            return cli_fail(EX_USAGE, "-b%s is not supported (only -bm: send a message)", arg);
        return 0;
    case 'v':
        o->verbose = true;
        return 0;
    default:
        return 0; /* the ignored sendmail flags */
    }
}

static int compose_option(cli_options_t *o, int c, const char *arg)
{
    o->compose = true;
    switch (c) {
    case OPT_SUBJECT:
        return set_once(&o->subject, arg, "--subject");
    case OPT_ATTACH:
        return push(&o->attach, arg);
    case OPT_BODY:
        return set_once(&o->body, arg, "--body");
    default:
        return set_once(&o->body_file, arg, "--body-file");
    }
}

/* --queue, --flush, --list and what goes with them; then the composing options. */
static int outbox_option(cli_options_t *o, int c, const char *arg)
{
    switch (c) {
    case OPT_QUEUE: o->queue = true; return 0;
    case OPT_FLUSH: o->action = CLI_FLUSH; return 0;
    case OPT_LIST: o->action = CLI_LIST; return 0;
    case OPT_OUTBOX: return set_once(&o->set.outbox, arg, "--outbox");
    case OPT_RESEND_UNKNOWN: o->unknown_flags |= EMAIL_OUTBOX_RESEND_UNKNOWN; return 0;
    case OPT_DROP_UNKNOWN: o->unknown_flags |= EMAIL_OUTBOX_DROP_UNKNOWN; return 0;
    default: return compose_option(o, c, arg);
    }
}

static int long_option(cli_options_t *o, int c, char *arg)
{
    cli_settings_t *s = &o->set;
    switch (c) {
    case OPT_SERVER: return set_once(&s->host, arg, "--server");
    case OPT_PORT: return parse_port(o, arg);
    case OPT_SECURITY:
        if ((s->security = cli_parse_security(arg)) < 0)
            return cli_fail(EX_USAGE, "--security %s: expected starttls, tls or none", arg);
        return 0;
    case OPT_USER: return set_once(&s->user, arg, "--user");
    case OPT_PASSWORD: return take_password(o, arg);
    case OPT_PASSWORD_FILE:
        o->password_options++;
        return set_once(&o->password_file, arg, "--password-file");
    case OPT_PASSWORD_ENV:
        o->password_options++;
        return set_once(&o->password_env, arg, "--password-env");
    case OPT_CA_FILE: return set_once(&s->ca_file, arg, "--ca-file");
    case OPT_FROM: return set_once(&s->from, arg, "--from");
    case OPT_TO: return push(&o->to, arg);
    case OPT_CC: return push(&o->cc, arg);
    case OPT_BCC: return push(&o->bcc, arg);
    case OPT_MESSAGE_FILE: return set_once(&o->message_file, arg, "--message-file");
    case OPT_HELO: return set_once(&s->helo, arg, "--helo");
    case OPT_ACCOUNT: return set_once(&o->account, arg, "--account");
    case OPT_CONFIG: return set_once(&o->config, arg, "--config");
    case OPT_DRY_RUN: o->dry_run = true; return 0;
    case OPT_VERSION: o->action = CLI_VERSION; return 0;
    case OPT_HELP: o->action = CLI_HELP; return 0;
    default: return outbox_option(o, c, arg);
    }
}

/* --queue, --flush and --list: one at a time; the last two take no message. */
static int check_outbox_options(const cli_options_t *o)
{
    bool outbox_action = o->action == CLI_FLUSH || o->action == CLI_LIST;
    if (o->queue + outbox_action > 1 || (o->queue && o->dry_run))
        return cli_fail(EX_USAGE, "give one of --queue, --flush, --list, --dry-run");
    if (o->unknown_flags == (EMAIL_OUTBOX_RESEND_UNKNOWN | EMAIL_OUTBOX_DROP_UNKNOWN))
        return cli_fail(EX_USAGE, "give --resend-unknown or --drop-unknown, not both");
    if (o->unknown_flags && o->action != CLI_FLUSH)
        return cli_fail(EX_USAGE, "--resend-unknown and --drop-unknown go with --flush");
    if (outbox_action && (o->compose || o->message_file || o->read_headers || o->to.n ||
                          o->cc.n || o->bcc.n || o->recipients.n || o->dry_run))
        return cli_fail(EX_USAGE, "%s sends no new message: it takes no message, recipient "
                        "or --dry-run", o->action == CLI_FLUSH ? "--flush" : "--list");
    return 0;
}

/* The combinations that make no sense. */
static int check_options(const cli_options_t *o)
{
    if (o->password_options > 1)
        return cli_fail(EX_USAGE, "give one of --password, --password-file, --password-env");
    if (o->body && o->body_file)
        return cli_fail(EX_USAGE, "give --body or --body-file, not both");
    if (o->compose && (o->message_file || o->read_headers))
        return cli_fail(EX_USAGE, "%s sends a whole message: it does not go with --subject, "
                        "--body, --body-file or --attach",
                        o->read_headers ? "-t" : "--message-file");
    return check_outbox_options(o);
}

int cli_parse_options(cli_options_t *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    cli_settings_init(&o->set);
    opterr = 0; /* our own messages, with the exit code */
    int c, rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        if (c == '?' || c == ':')
            return cli_fail(EX_USAGE, "%s: unknown option or missing argument (see --help)",
                            argv[optind - 1]);
        rc = c < 256 ? sendmail_option(o, c, optarg) : long_option(o, c, optarg);
    }
    for (int i = optind; rc == 0 && i < argc; i++)
        rc = push(&o->recipients, argv[i]);
    return rc ? rc : check_options(o);
}

void cli_options_free(cli_options_t *o)
{
    cli_settings_free(&o->set);
    char *strings[] = {o->password_file, o->password_env, o->account, o->config, o->subject,
                       o->body, o->body_file, o->message_file, o->envelope_from, o->full_name};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
        free(strings[i]);
    strv_t *lists[] = {&o->to, &o->cc, &o->bcc, &o->attach, &o->recipients};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        strv_free(lists[i]);
    memset(o, 0, sizeof *o);
}
