/*
 * emailsession-send: a whole message given as text (sendmail's way).
 */
#ifndef CLI_WHOLE_H
#define CLI_WHOLE_H

#include <stdbool.h>

#include "cli.h"

typedef struct cli_whole {
    char *data;         /* the message's text, NUL-terminated */
    size_t len;
    char *header_from;  /* the value of its From field, once prepared; NULL if none */
    bool has_date;
} cli_whole_t;

/* Reads the message: --message-file, else standard input up to a lone "." line (to its end
 * with -i). 0, EX_NOINPUT, or EX_DATAERR for an empty message or a NUL byte. */
int cli_whole_read(const cli_options_t *o, cli_whole_t *w);

/*
 * Makes the text to send: Bcc fields removed; "From: from_field" added when the message has no
 * From (EX_USAGE when it has none and from_field is NULL), a Date field when it has none. With
 * read_rcpts (-t) the addresses of To, Cc and Bcc are appended to rcpts (EX_DATAERR for a
 * malformed list).
 */
int cli_whole_prepare(cli_whole_t *w, bool read_rcpts, const char *from_field, strv_t *rcpts);

void cli_whole_free(cli_whole_t *w);

#endif
