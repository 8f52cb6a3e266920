/*
 * emailsession-send: the account file (~/.config/emailsession/config, msmtp's syntax).
 */
#ifndef CLI_ACCOUNT_H
#define CLI_ACCOUNT_H

#include "cli.h"

/*
 * Reads config (NULL: $XDG_CONFIG_HOME/emailsession/config, else ~/.config/emailsession/config)
 * and fills what out leaves unset with the settings of `account` (NULL: the account named
 * "default", else the defaults section). A missing default file sets nothing, unless an
 * account was asked for. 0, or EX_CONFIG naming file:line, EX_NOINPUT for an unreadable file;
 * EX_CONFIG as well for a file holding a password that group or others may read or write.
 */
int cli_account_load(const char *config, const char *account, cli_settings_t *out);

#endif
