/*
 * emailsession-send: the password's sources.
 */
#ifndef CLI_PASSWORD_H
#define CLI_PASSWORD_H

#include "cli.h"

/* --password-file (its first line) or --password-env into o->set.password. 0, EX_NOINPUT for
 * an unreadable file, EX_USAGE for a variable not set. */
int cli_password_from_options(cli_options_t *o);

/* When s has a user and no password: the account's passwordeval (EX_CONFIG naming its line
 * when the command fails), else a prompt on the terminal without echo (EX_USAGE when there is
 * no terminal). */
int cli_password_resolve(cli_settings_t *s);

#endif
