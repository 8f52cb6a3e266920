/*
 * email_message_t's insides, shared by message.c (the builder, its validation, freezing) and
 * message_parts.c (attachments and inline parts). Nothing else reaches into the struct: the
 * composer reads message_content.h, the sending side message.h.
 */
#ifndef EMAIL_MESSAGE_INTERNAL_H
#define EMAIL_MESSAGE_INTERNAL_H

#include "message.h"
#include "message_content.h"

/* What a message read by email_message_from_mime (or a receiving engine) holds beyond c. */
typedef struct message_parsed {
    message_header_t *all;  /* every field of the message's header in order, decoded, UTF-8 */
    size_t nall;
    int64_t date;           /* the Date field as Unix time, 0 when none or unreadable */
    char *uid;              /* UIDL or IMAP UID, set by the receiving side; NULL otherwise */
    uint64_t size;          /* bytes on the server, or as parsed */
    unsigned problems;      /* EMAIL_PARSE_... */
    size_t bad_addresses;   /* addresses in c that are not addr-specs: it cannot be sent again */
} message_parsed_t;

/* One address list as the getters give it: "Name <addr>" (or "addr") per address, and all of
   them joined with ", " (what email_message_get_header answers for the field). */
typedef struct message_shown {
    char **v;
    size_t n;
    char *joined;
} message_shown_t;

enum { SHOWN_FROM, SHOWN_SENDER, SHOWN_REPLY_TO, SHOWN_TO, SHOWN_CC, SHOWN_BCC, SHOWN_LISTS };

struct email_message_s {
    uint64_t id;
    message_content_t c;
    /* envelope recipients: pointers into c.to, c.cc and c.bcc, rebuilt whenever those change */
    const char **rcpt;
    size_t nrcpt;
    message_dsn_t dsn;
    message_parsed_t *parsed;             /* NULL for a built message */
    message_shown_t shown[SHOWN_LISTS];   /* rebuilt whenever an address list changes */
};

/* Every public call starts here: ErrorInfo cleared (it describes the latest call only), and
   EMAIL_EINVAL naming field when m is NULL. */
int email__message_begin(const email_message_t *m, const char *field);
/* Frees what a part owns (not the part itself). */
void email__message_part_clear(message_part_t *p);

/* After m->c's address lists were filled in directly (the parser): the envelope recipients and
   m->shown rebuilt. 0 or EMAIL_ENOMEM. */
int email__message_lists_changed(email_message_t *m);
/* Rebuilds m->shown from m->c's address lists (message_read.c). 0 or EMAIL_ENOMEM. */
int email__message_show(email_message_t *m);
/* Frees m->shown and m->parsed (message_read.c). */
void email__message_read_free(email_message_t *m);

#endif
