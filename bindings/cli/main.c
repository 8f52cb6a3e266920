/*
 * emailsession-send: sends one message over SMTP with libemailsession, composed from options or
 * given whole on standard input (so that it can stand in for /usr/sbin/sendmail). See
 * emailsession-send(1).
 */
#include <emailsession.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "account.h"
#include "addresses.h"
#include "cli.h"
#include "compose.h"
#include "exitcodes.h"
#include "options.h"
#include "outbox.h"
#include "password.h"
#include "send.h"
#include "whole.h"

static const char usage_text[] =
    "usage: " CLI_NAME " [options] [recipient...] < message\n"
    "       " CLI_NAME " [options] --to ADDR --subject TEXT [--body TEXT] [--attach FILE]\n"
    "\n"
    "Server (each may come from the account file instead):\n"
    "  --server HOST  --port N  --security starttls|tls|none  --ca-file PEM  --helo NAME\n"
    "  --user NAME    --password-file FILE  --password-env NAME\n"
    "  --password SECRET     visible to other users through ps: prefer the two above\n"
    "                        (without any, passwordeval or a prompt on the terminal)\n"
    "  --account NAME  --config FILE   (default $XDG_CONFIG_HOME/emailsession/config)\n"
    "Message:\n"
    "  --from ADDR  --to/--cc/--bcc ADDR[,ADDR...] (repeatable)  --subject TEXT\n"
    "  --body TEXT | --body-file FILE (else standard input)  --attach FILE (repeatable)\n"
    "  --message-file FILE   a whole message (else one on standard input, when no\n"
    "                        --subject, --body, --body-file or --attach is given)\n"
    "sendmail's interface:\n"
    "  -t  recipients from To, Cc, Bcc too (Bcc is always removed)   -f ADDR  envelope sender\n"
    "  -i, -oi  a lone '.' line does not end the input   -F NAME  full name for the From added\n"
    "  -bm -odi -oem -B -N -R -V -X -O -L -h -C -A -m -n -U -G: accepted and ignored\n"
    "Other:\n"
    "  -v, --verbose  the conversation log on stderr (secrets masked)\n"
    "  --dry-run  print the message instead of sending it   --version   --help\n"
    "Outbox (default $XDG_DATA_HOME/emailsession/outbox, or ~/.local/share/...):\n"
    "  --queue   put the message into the outbox and return; nothing is sent before --flush\n"
    "  --flush   send what waits for the server, a line per message\n"
    "  --list    print what waits (id, queued at, for, subject)\n"
    "  --outbox DIR   another outbox (also `outbox` in the account file)\n"
    "  --resend-unknown | --drop-unknown   with --flush: a message whose outcome is unknown\n"
    "                 (the connection was lost after its end) is sent again, or forgotten\n"
    "\n"
    "Exit codes (sysexits.h):\n";

/* The envelope sender: -f ("<>" or "" for the null sender), else the address of --from or the
 * account's from, else of the message's From field. */
static int envelope_sender(const cli_options_t *o, const char *header_from, strv_t *out)
{
    const char *source = o->envelope_from ? o->envelope_from
                         : o->set.from    ? o->set.from
                                          : header_from;
    if (!source)
        return cli_fail(EX_USAGE, "no sender: give -f, --from or `from` in the account file");
    int rc = cli_address_list(source, out);
    if (rc == 0 && out->n == 0 && strv_push(out, ""))
        rc = cli_fail(EX_OSERR, "out of memory");
    return rc;
}

/* Every recipient of the envelope once: -t's, then the arguments, --to, --cc and --bcc. */
static int envelope_recipients(const cli_options_t *o, const strv_t *from_headers, strv_t *out)
{
    strv_t all = {0};
    const strv_t *lists[] = {from_headers, &o->recipients, &o->to, &o->cc, &o->bcc};
    int rc = 0;
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        for (size_t j = 0; rc == 0 && j < lists[i]->n; j++)
            rc = cli_address_list(lists[i]->v[j], &all);
    for (size_t i = 0; rc == 0 && i < all.n; i++)
        if (!strv_contains(out, all.v[i]) && strv_push(out, all.v[i]))
            rc = cli_fail(EX_OSERR, "out of memory");
    strv_free(&all);
    return rc;
}

/* Prints text (--dry-run); with -v, the envelope on stderr. */
static int print_message(const cli_options_t *o, const char *text, size_t len, const char *from,
                         const strv_t *rcpts)
{
    if (o->verbose && from) {
        fprintf(stderr, "envelope: from <%s> to", from);
        for (size_t i = 0; i < rcpts->n; i++)
            fprintf(stderr, " <%s>", rcpts->v[i]);
        fputc('\n', stderr);
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
        return cli_fail(EX_OSERR, "cannot write the message on standard output");
    return 0;
}

/* --queue needs no password: the outbox never holds one, --flush asks for it. */
static int send_or_queue(cli_options_t *o, const cli_send_t *what)
{
    if (o->queue)
        return cli_queue(&o->set, o->verbose, what);
    int rc = cli_password_resolve(&o->set);
    return rc ? rc : cli_send(&o->set, o->verbose, what);
}

/* A text with its envelope: printed, queued or sent. */
static int deliver(cli_options_t *o, const char *text, size_t len, const char *from,
                   const strv_t *rcpts)
{
    if (o->dry_run)
        return print_message(o, text, len, from, rcpts);
    if (rcpts->n == 0)
        return cli_fail(EX_USAGE, "no recipient: give them as arguments, with --to, or -t");
    cli_send_t what = {.from = from, .rcpts = rcpts, .mime = text, .len = len};
    return send_or_queue(o, &what);
}

static int run_whole(cli_options_t *o)
{
    cli_whole_t w;
    strv_t from = {0}, from_headers = {0}, rcpts = {0};
    char *from_field = NULL;
    int rc = cli_whole_read(o, &w);
    if (rc == 0)
        rc = cli_from_field(o, true, &from_field);
    if (rc == 0)
        rc = cli_whole_prepare(&w, o->read_headers, from_field, &from_headers);
    if (rc == 0)
        rc = envelope_sender(o, w.header_from, &from);
    if (rc == 0)
        rc = envelope_recipients(o, &from_headers, &rcpts);
    if (rc == 0)
        rc = deliver(o, w.data, w.len, from.v[0], &rcpts);
    strv_free(&from);
    strv_free(&from_headers);
    strv_free(&rcpts);
    free(from_field);
    cli_whole_free(&w);
    return rc;
}

/* A composed message: as the library builds it, or as text when -f names another sender. */
static int send_composed(cli_options_t *o, email_message_t *m)
{
    if (!o->dry_run && !o->envelope_from) {
        if (!o->to.n && !o->cc.n && !o->bcc.n && !o->recipients.n)
            return cli_fail(EX_USAGE, "no recipient: give --to, --cc, --bcc or arguments");
        cli_send_t what = {.message = m};
        return send_or_queue(o, &what);
    }
    char *text = NULL;
    size_t len = 0;
    strv_t from = {0}, rcpts = {0}, none = {0};
    int rc = email_message_to_mime(m, &text, &len);
    if (rc)
        rc = cli_fail(cli_exit_code(rc, 0), "%s", email_error_info());
    if (rc == 0)
        rc = envelope_sender(o, NULL, &from);
    if (rc == 0)
        rc = envelope_recipients(o, &none, &rcpts);
    if (rc == 0)
        rc = deliver(o, text, len, from.v[0], &rcpts);
    strv_free(&from);
    strv_free(&rcpts);
    free(text);
    return rc;
}

static int run_compose(cli_options_t *o)
{
    char *from_field = NULL;
    email_message_t *m = NULL;
    int rc = cli_from_field(o, false, &from_field);
    if (rc == 0)
        rc = cli_compose(o, from_field, &m);
    if (rc == 0)
        rc = send_composed(o, m);
    email_message_free(m);
    free(from_field);
    return rc;
}

static int run(cli_options_t *o)
{
    if (o->action == CLI_HELP) {
        fputs(usage_text, stdout);
        cli_print_exit_codes(stdout);
        return 0;
    }
    if (o->action == CLI_VERSION) {
        printf(CLI_NAME " %s (libemailsession %s)\n", EMAIL_VERSION_STRING, email_version());
        return 0;
    }
    /* neither of these two calls the library: cli_queue_prepare must come first */
    int rc = cli_password_from_options(o);
    if (rc == 0)
        rc = cli_account_load(o->config, o->account, &o->set);
    if (rc == 0 && o->queue)
        rc = cli_queue_prepare(&o->set);
    if (rc == 0 && o->action == CLI_LIST)
        return cli_list(&o->set);
    if (rc == 0 && o->action == CLI_FLUSH) {
        rc = cli_password_resolve(&o->set);
        return rc ? rc : cli_flush(&o->set, o->verbose, o->unknown_flags);
    }
    if (rc == 0)
        rc = o->compose ? run_compose(o) : run_whole(o);
    return rc;
}

int main(int argc, char **argv)
{
    cli_options_t o;
    int rc = cli_parse_options(&o, argc, argv);
    if (rc == 0)
        rc = run(&o);
    cli_options_free(&o);
    email_shutdown();
    return rc;
}
