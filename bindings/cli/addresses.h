/*
 * emailsession-send: reading address lists.
 */
#ifndef CLI_ADDRESSES_H
#define CLI_ADDRESSES_H

#include "cli.h"

/* Appends to out the address (addr-spec) of each mailbox of an RFC 5322 address list, such as
 * "Ada <ada@example.org>, \"Doe, J.\" <j@example.org>, team: b@example.org;". 0, or EX_DATAERR
 * naming the list (a mailbox without an address, an unterminated quote). */
int cli_address_list(const char *list, strv_t *out);

#endif
