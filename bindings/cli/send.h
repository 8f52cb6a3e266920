/*
 * emailsession-send: sending.
 */
#ifndef CLI_SEND_H
#define CLI_SEND_H

#include <emailsession.h>
#include <stdbool.h>

#include "cli.h"

/* What goes out: a composed message, or a whole message's text with its envelope. */
typedef struct cli_send {
    const email_message_t *message; /* NULL: the fields below */
    const char *from;               /* envelope sender ("" for the null sender) */
    const strv_t *rcpts;
    const char *mime;
    size_t len;
} cli_send_t;

/* A transporter made of s (EX_USAGE without a host); a failure is printed. 0 or the exit code. */
int cli_transporter_new(const cli_settings_t *s, email_transporter_t **t);

/* What is shown while messages go out: the -v log, or a progress bar on a terminal. */
typedef struct cli_watch {
    bool verbose, drawn;
    int last_percent;
    uint64_t message_id; /* whose bar is drawn */
} cli_watch_t;

/* Before the sends; w lives until cli_watch_stop, called once t is freed (no callback runs). */
void cli_watch_start(email_transporter_t *t, bool verbose, cli_watch_t *w);
void cli_watch_stop(cli_watch_t *w);

/* Prints why a send failed: the server's reply, the refused recipients, the causes. */
void cli_report(const email_status_t *st);

/*
 * Sends over a transporter made of s (EX_USAGE without a host). verbose: the conversation log
 * on stderr as it happens (secrets masked by the library); else a progress bar on stderr when
 * it is a terminal and the message large. A failure prints the server's reply (code, enhanced
 * code, text), the refused recipients or the chain of causes, and returns its exit code.
 */
int cli_send(const cli_settings_t *s, bool verbose, const cli_send_t *what);

#endif
