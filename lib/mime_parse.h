/*
 * MIME bytes → email_message_t: the streaming parser behind email_message_from_mime, fed the
 * message in pieces of any size as they arrive (a POP3 RETR body, an IMAP literal). The result
 * is the same however the bytes are cut. Nothing is ever allocated from a size the message
 * announces; caps (EMAIL_PARSE_LIMIT) bound the header, the nesting, the parts and the decoded
 * bytes.
 */
#ifndef EMAIL_MIME_PARSE_H
#define EMAIL_MIME_PARSE_H

#include <stddef.h>
#include "emailsession.h"

typedef struct mime_parser mime_parser_t;

/* A new parser. 0 or EMAIL_ENOMEM. */
int email__mime_parser_new(mime_parser_t **parser);
/* The next n bytes. 0, EMAIL_ENOMEM, or EMAIL_EIO (a large part's temporary file could not be
   made or written: spill.h); the parser is then only good for freeing. */
int email__mime_parser_feed(mime_parser_t *parser, const char *data, size_t n);
/* The end of the message: the parsed message goes to *out (the caller's, for
   email_message_free). 0, EMAIL_ENOMEM or EMAIL_EIO. The parser is freed either way. */
int email__mime_parser_finish(mime_parser_t *parser, email_message_t **out);
/* Frees a parser that is not finished (NULL is fine). */
void email__mime_parser_free(mime_parser_t *parser);

#endif
