/* Outcome of every message id handed out (WLanguage's EmailStatus). Any thread. */
#ifndef EMAIL_REGISTRY_H
#define EMAIL_REGISTRY_H

#include <stdint.h>

/* A fresh message id (what email_message_new gives; prebuilt messages too). */
uint64_t email__registry_new_id(void);
/* Ids from now on are above floor (an outbox's lease): the counter's value afterwards. */
uint64_t email__registry_ids_above(uint64_t floor);

/* The message is queued: EMAIL_PENDING. */
void email__registry_pending(uint64_t id);
/* The message has its outcome: EMAIL_SENT or EMAIL_ERROR. */
void email__registry_done(uint64_t id, int state);
/* EMAIL_PENDING, EMAIL_SENT, EMAIL_ERROR, or EMAIL_ENOTFOUND. */
int email__registry_get(uint64_t id);

#endif
