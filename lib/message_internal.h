/*
 * email_message_t's insides, shared by message.c (the builder, its validation, freezing) and
 * message_parts.c (attachments and inline parts). Nothing else reaches into the struct: the
 * composer reads message_content.h, the sending side message.h.
 */
#ifndef EMAIL_MESSAGE_INTERNAL_H
#define EMAIL_MESSAGE_INTERNAL_H

#include "message.h"
#include "message_content.h"

struct email_message_s {
    uint64_t id;
    message_content_t c;
    /* envelope recipients: pointers into c.to, c.cc and c.bcc, rebuilt whenever those change */
    const char **rcpt;
    size_t nrcpt;
    message_dsn_t dsn;
};

/* Every public call starts here: ErrorInfo cleared (it describes the latest call only), and
   EMAIL_EINVAL naming field when m is NULL. */
int email__message_begin(const email_message_t *m, const char *field);
/* Frees what a part owns (not the part itself). */
void email__message_part_clear(message_part_t *p);

#endif
