/*
 * International domain names in addresses (RFC 5890, IDNA2008 through libidn2): a UTF-8 domain
 * becomes its A-label ("xn--...") for the servers and readers that know only ASCII addresses.
 */
#ifndef EMAIL_IDN_H
#define EMAIL_IDN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * addr ("local@domain") with its domain as an A-label, in *out (malloc'ed; a copy of addr when
 * its domain is ASCII or an address literal; the local part is never changed). EMAIL_EINVAL when
 * the domain is not a valid international domain name, the reason in why ("\"a@b\" has a domain
 * that is not a valid international domain name: ..."), EMAIL_ENOMEM.
 */
int email__idn_addr_ascii(const char *addr, char **out, char *why, size_t whylen);
/* True when the domain of addr (after its last '@') is not ASCII. */
bool email__idn_domain_utf8(const char *addr);
/* True when the local part of addr (before its last '@') is not ASCII: only SMTPUTF8 carries it. */
bool email__idn_local_utf8(const char *addr);

#endif
