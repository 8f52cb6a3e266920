/*
 * The IMAP engine's insides, shared by lib/imap.c (bytes in and out, responses dispatched, the
 * end of the session), lib/imap_setup.c (greeting, CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE)
 * and lib/imap_cmd.c (the commands of the authenticated state and their untagged data).
 * Functions one file lends the others start with email__imap_.
 */
#ifndef EMAIL_IMAP_INTERNAL_H
#define EMAIL_IMAP_INTERNAL_H

#include "auth_scram.h"
#include "imap.h"
#include "util.h"

/* Session states; the names in imap.c's table follow this order. */
enum im_state {
    IM_CONNECTING, IM_GREETING, IM_CAPABILITY, IM_STARTTLS, IM_TLS_HANDSHAKE, IM_AUTH,
    IM_READY, IM_LOGOUT, IM_CLOSED
};

/* A command line being composed: the wire bytes, what the log shows, and where the server's
 * "+" must be awaited (after each synchronising literal's "{n}\r\n"). */
#define IMAP_MAX_SPLITS 4
typedef struct imap_line {
    email_buf_t wire, shown;
    size_t splits[IMAP_MAX_SPLITS];
    int nsplits;
} imap_line_t;

struct imap_engine {
    imap_engine_config_t cfg;
    engine_events_t ev;
    void *ud;
    enum im_state state;
    imap_reader_t rd;
    email_buf_t out;         /* bytes not yet written */
    size_t handed;           /* bytes at the start of out given by the last take */
    email_buf_t pending;     /* the rest of a command, after a synchronising literal */
    unsigned pending_tag;    /* the tag of that command */
    size_t splits[IMAP_MAX_SPLITS];
    int nsplits;
    email_status_t status;   /* setup outcome, then why the session ended */
    bool failed;

    unsigned caps, sasl;     /* IMAP_CAP_..., the AUTH= mechanisms */
    auth_mech_t mech;        /* the SASL mechanism under way */
    int auth_step;
    email_buf_t ir;          /* the initial response, when the server has no SASL-IR */
    scram_t *scram;

    unsigned tag;            /* the last tag used ("A<n>") */
    unsigned setup_tag;      /* the setup command in flight, 0 none */
    queue_t queue;           /* imap_cmd_t submitted, not sent */
    queue_t flight;          /* sent, awaiting their tagged answers */
    size_t nflight;
    uint32_t exists, recent, uidvalidity, uidnext;
    uint64_t replies, body_mark;
    bool quit_asked;
};

/* imap.c */
void email__imap_set_state(imap_engine_t *e, enum im_state s);
void email__imap_fail(imap_engine_t *e, int error, const char *fmt, ...) EMAIL_PRINTF(3, 4);
/* Records the failure and says LOGOUT (after "*" when a SASL exchange is open). */
void email__imap_logout_after_failure(imap_engine_t *e, int error, const char *fmt, ...)
    EMAIL_PRINTF(3, 4);
void email__imap_logout(imap_engine_t *e);
/* Composing a command: "A<tag> " (tag 0: a line without tag, e.g. a SASL answer). */
void email__imap_line_init(imap_line_t *l);
void email__imap_line_free(imap_line_t *l);
int email__imap_line_tag(imap_engine_t *e, imap_line_t *l, unsigned *tag);
int email__imap_line_raw(imap_line_t *l, const char *text, bool secret);
/* A string as an atom-safe quoted string, else a literal ({n+} with LITERAL+); a secret is
 * "****" in the log. */
int email__imap_line_string(imap_engine_t *e, imap_line_t *l, const char *s, bool secret);
/* CRLF, then out (up to the first synchronising literal; the rest awaits "+"); logged. */
int email__imap_line_send(imap_engine_t *e, imap_line_t *l);
/* The caps of a capability list (after "CAPABILITY"). */
void email__imap_read_caps(imap_engine_t *e, const char *list, size_t n);

/* imap_setup.c */
/* An untagged status at the greeting (OK, PREAUTH, BYE; text after the word). */
void email__imap_greeting(imap_engine_t *e, const char *word, const char *text);
void email__imap_setup_tagged(imap_engine_t *e, int status, const char *line, const char *text);
void email__imap_continuation(imap_engine_t *e, const char *text);

/* imap_cmd.c */
void email__imap_pump(imap_engine_t *e);
void email__imap_ready(imap_engine_t *e);
/* A tagged answer for a command in flight; false when no command has that tag. */
bool email__imap_cmd_tagged(imap_engine_t *e, unsigned tag, int status, const char *line,
                            const char *text);
/* "* n FETCH (...)" (lx after FETCH), "* SEARCH ..." (lx after SEARCH). */
void email__imap_fetch_data(imap_engine_t *e, uint32_t seq, imap_lex_t *lx);
void email__imap_search_data(imap_engine_t *e, imap_lex_t *lx);
/* "* LIST (attributes) delimiter name" (lx after LIST). */
void email__imap_list_data(imap_engine_t *e, imap_lex_t *lx);
int email__imap_body_data(imap_engine_t *e, uint32_t uid, const char *data, size_t n);
void email__imap_fail_cmds(imap_engine_t *e);

#endif
