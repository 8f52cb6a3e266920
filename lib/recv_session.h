/*
 * What WLanguage's named receiving sessions share, POP3's (pop3_facade.c) and IMAP's
 * (imap_facade.c): one registry of names (a name holds one receiving session, of either kind;
 * an SMTP session may share it), the turn each call takes, the checks of the start's arguments,
 * the reading functions' public entry points (email_read_first ..., email_delete_message,
 * email_mailbox_count), which dispatch to the session's kind, and the closing.
 */
#ifndef EMAIL_RECV_SESSION_H
#define EMAIL_RECV_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emailsession.h"
#include "transporter.h"
#include "util.h"

enum recv_from { RECV_FIRST, RECV_NEXT, RECV_PREVIOUS, RECV_LAST };

typedef struct recv_session recv_session_t;

/* A kind's work; each sets or clears ErrorInfo (the session's turn is held). */
typedef struct recv_session_ops {
    const char *protocol;     /* "POP3", "IMAP": for messages */
    bool unread_ok;           /* EMAIL_READ_UNREAD and EMAIL_READ_PEEK are understood */
    /* The message in that direction into *out: true; false with ErrorInfo 0 past either end. */
    bool (*read)(recv_session_t *s, int options, email_message_t **out, enum recv_from from,
                 const char *fn);
    bool (*remove)(recv_session_t *s, const email_message_t *message);
    int (*count)(recv_session_t *s, int options);
    /* email_session_set_log_file on an open session: its log from now on (NULL: none);
     * 0 or EMAIL_EIO (why in err) */
    int (*set_log)(recv_session_t *s, const char *path, char *err, size_t errlen);
    /* Ends the session (QUIT, LOGOUT) and frees it; ErrorInfo set when that failed. */
    void (*free)(recv_session_t *s);
} recv_session_ops_t;

/* The head of each kind's session. */
struct recv_session {
    const recv_session_ops_t *ops;
    char *name;
    pthread_mutex_t turn;     /* one call at a time moves the cursor */
    int refs;                 /* calls using it right now (the registry's lock) */
    bool closed;              /* closed on the loop thread while in use: last user frees */
    recv_session_t *next;
};

/* Sets ErrorInfo; false. */
bool email__recv_fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
/* The name, then the start's server, port and option (fn names the start): false + ErrorInfo. */
bool email__recv_check_start(const char *fn, const char *user, const char *server, int port,
                             int option);
/* The session's settings by the options' rules (those of SMTP); port 0 → plain_port, or
 * tls_port with EMAIL_OPTION_TLS. *ca (the global CA file, or NULL) is the caller's to free. */
void email__recv_settings(const char *user, const char *password, const char *server, int port,
                          int option, int plain_port, int tls_port, email_server_t *srv,
                          transporter_policy_t *policy, char **ca);
/* Sets up s's head (name copied): 0 or EMAIL_ENOMEM. */
int email__recv_init(recv_session_t *s, const recv_session_ops_t *ops, const char *name);
/* True when a receiving session has that name (EMAIL_EEXIST set). */
bool email__recv_taken(const char *name);
/* Registers s under its name: true, or false with EMAIL_EEXIST set (s is not registered). */
bool email__recv_register(recv_session_t *s);
/* Frees a session never registered (or closed), ErrorInfo kept as it was: false. */
bool email__recv_abandon(recv_session_t *s);
/* Frees the head's own parts (the kind's free calls it last). */
void email__recv_free_head(recv_session_t *s);

/* Ends the receiving session `name`: 0 when there is none, 1 when closed, or the EMAIL_E...
 * code of a QUIT / LOGOUT that failed (ErrorInfo says why; the session is freed anyway). On the
 * loop's thread it does not wait. */
int email__recv_close(const char *name);
/* email_session_set_log_file: the receiving session `name`'s log from now on is path (NULL:
 * none). 0 when there is no such session, 1 when set, or EMAIL_EIO (why in err). */
int email__recv_set_log(const char *name, const char *path, char *err, size_t errlen);
/* email_shutdown: every receiving session closed; ErrorInfo left as it was. */
void email__recv_close_all(void);

#endif
