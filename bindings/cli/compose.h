/*
 * emailsession-send: composing a message from the options.
 */
#ifndef CLI_COMPOSE_H
#define CLI_COMPOSE_H

#include <emailsession.h>
#include <stdbool.h>

#include "cli.h"

/*
 * The From field the tool writes: --from (or the account's from), else -f; with -F's name when
 * that address has none ("Name" <address>, or an RFC 2047 word when encode and the name is not
 * ASCII). *field is malloc'ed, NULL when there is no sender at all. 0, or EX_DATAERR.
 */
int cli_from_field(const cli_options_t *o, bool encode, char **field);

/* The message of --subject, --body / --body-file (else standard input when it is not a
 * terminal), --attach, --to, --cc, --bcc and the recipients given as arguments (To). */
int cli_compose(const cli_options_t *o, const char *from_field, email_message_t **out);

#endif
