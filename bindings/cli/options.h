/*
 * emailsession-send: the command line.
 */
#ifndef CLI_OPTIONS_H
#define CLI_OPTIONS_H

#include "cli.h"

/* Fills o from argv (o need not be initialised; free it with cli_options_free whatever this
 * returns). 0, or EX_USAGE (EX_OSERR) with a message. --password is wiped from argv. */
int cli_parse_options(cli_options_t *o, int argc, char **argv);
void cli_options_free(cli_options_t *o);

#endif
