/*
 * emailsession-send: the outbox, as msmtpq has it: --queue puts a message there and returns,
 * --flush sends what waits, --list shows it.
 */
#ifndef CLI_OUTBOX_H
#define CLI_OUTBOX_H

#include <stdbool.h>

#include "cli.h"
#include "send.h"

/* For --queue, before any other call of the library and before the message is made: the
 * library on a loop of ours that never runs (see outbox.c), and the outbox opened; s->outbox
 * becomes its folder. 0, or the exit code. */
int cli_queue_prepare(cli_settings_t *s);
/* Puts what into the outbox (cli_queue_prepare) for s's server and returns once it is on disk,
 * not sent. */
int cli_queue(const cli_settings_t *s, bool verbose, const cli_send_t *what);
/* Sends what waits for s's server, a line per message on stdout; the worst exit code. flags:
 * EMAIL_OUTBOX_RESEND_UNKNOWN or EMAIL_OUTBOX_DROP_UNKNOWN, or 0. */
int cli_flush(const cli_settings_t *s, bool verbose, int flags);
/* Prints what waits: for s's server's user (or host) when there is a server, else all. */
int cli_list(const cli_settings_t *s);

#endif
