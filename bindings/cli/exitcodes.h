/*
 * emailsession-send: the exit codes (sysexits.h), from the library's outcome.
 */
#ifndef CLI_EXITCODES_H
#define CLI_EXITCODES_H

#include <emailsession.h>
#include <stdio.h>

/* The exit code for a failed send or for a library call's EMAIL_E... code, with the server's
 * reply code (0 if none): a 4xx refusal is a temporary failure whatever the code says. */
int cli_exit_code(int error, int reply_code);

/* Of two exit codes, the one that says more is wrong (0 only when both are). */
int cli_exit_worst(int a, int b);

/* The list of exit codes and what they mean, for --help. */
void cli_print_exit_codes(FILE *out);

#endif
