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

/*
 * Sends over a transporter made of s (EX_USAGE without a host). verbose: the conversation log
 * on stderr as it happens (secrets masked by the library); else a progress bar on stderr when
 * it is a terminal and the message large. A failure prints the server's reply (code, enhanced
 * code, text), the refused recipients or the chain of causes, and returns its exit code.
 */
int cli_send(const cli_settings_t *s, bool verbose, const cli_send_t *what);

#endif
