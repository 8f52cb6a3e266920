/*
 * The durable outbox (issue #13): one file per asynchronous message, written and fsynced before
 * the send call returns, removed once the server accepted it or refused it for good.
 *   outbox.c       a directory shared by whoever names it: ids leased across restarts, claims
 *                  (a byte lock per id in <dir>/.lock, so two processes never send one entry),
 *                  the scan (order, leftovers and corrupt entries moved to <dir>/corrupt/);
 *   outbox_file.c  one entry: its format, writing it, reading its body, marking and settling.
 * Any thread, except where said.
 */
#ifndef EMAIL_OUTBOX_H
#define EMAIL_OUTBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "emailsession.h"

typedef struct outbox outbox_t;
typedef struct outbox_marks outbox_marks_t;

/* An entry's envelope and the server it is for (never a password or a token). */
typedef struct outbox_meta {
    uint64_t id;
    char *name;                  /* the named session's, or NULL for a transporter's */
    char *host, *user;           /* user NULL when no login */
    int port, security;          /* security: the transporter's EMAIL_SECURITY_... */
    char *from, *subject;        /* subject NULL when none */
    char **rcpts;
    size_t nrcpts;
    int64_t queued;              /* unix time */
    bool smtputf8, eight_bit;
} outbox_meta_t;

/* The entry's flags: the end of data went out (or was about to) and no reply came yet. Kept in
 * the marks journal (outbox_marks.c), or in the header at OUTBOX_FLAGS_AT. */
#define OUTBOX_F_EOD_SENT 1u
#define OUTBOX_FLAGS_AT 12

typedef struct outbox_entry {
    outbox_t *ob;
    outbox_meta_t meta;
    uint32_t flags;
    uint64_t body_len;
    uint64_t data_off;           /* where the body starts in the file */
    int fd;                      /* open while its body is read, else -1 */
    uint64_t body_off;           /* read position in the body */
    char error[160];             /* why a read failed */
} outbox_entry_t;

/* How an entry ends for this process. */
enum outbox_verdict {
    OUTBOX_REMOVE,       /* delivered, or refused for good */
    OUTBOX_KEEP,         /* for a later resume, not marked */
    OUTBOX_KEEP_UNKNOWN  /* for a later resume, reported EMAIL_EUNKNOWN there */
};

/* outbox.c */
/* The outbox in dir (created when missing), shared with whoever opened it already: NULL and err
 * when it is not a writable directory. */
outbox_t *email__outbox_open(const char *dir, char *err, size_t errlen);
outbox_t *email__outbox_ref(outbox_t *ob);
void email__outbox_release(outbox_t *ob);
/* The outbox of email_set_outbox with a reference taken, or NULL. */
outbox_t *email__outbox_global(void);
const char *email__outbox_dir(const outbox_t *ob);
int email__outbox_dirfd(const outbox_t *ob);
/* Claims id for this process (0) or says another holds it (EMAIL_EBUSY). */
int email__outbox_claim(outbox_t *ob, uint64_t id);
void email__outbox_unclaim(outbox_t *ob, uint64_t id);
/* Makes the renames done so far in the directory durable: several threads renaming at once
 * share one fsync (group commit). 0 or an errno. */
int email__outbox_sync_dir(outbox_t *ob);
/* Moves the file `name` aside into corrupt/ and logs why. */
void email__outbox_corrupt(outbox_t *ob, const char *name, const char *why);
/* The entry file name of id ("<16 hex digits>.msg"), and of its temporary file. */
void email__outbox_name(uint64_t id, bool temporary, char out[32]);

/* Which entries a scan takes: those of `name`, or (name NULL) a transporter's server. */
typedef struct outbox_filter {
    const char *name;
    const char *host, *user;
    int port;
} outbox_filter_t;
/*
 * Claims every valid entry the filter takes that nobody else holds, oldest first: *out (an
 * array of *n entries, freed by the caller with free() after each entry). Corrupt entries and
 * leftover temporary files met on the way are moved aside. 0 or EMAIL_E... with err.
 */
int email__outbox_take(outbox_t *ob, const outbox_filter_t *f, outbox_entry_t ***out, size_t *n,
                       char *err, size_t errlen);

/* Marks the entries ids (OUTBOX_F_EOD_SENT), on disk when it returns 0 (else an errno); marks
 * made at once share one fdatasync. It blocks on the disk: never on the loop thread. */
int email__outbox_mark(outbox_t *ob, const uint64_t *ids, size_t n);
outbox_marks_t *email__outbox_marks(const outbox_t *ob);

/* outbox_marks.c: the journal of marks, <dir>/.marks (the outbox's; see the file) */
/* Group commit: one fsync covers every change announced before it started. */
typedef struct outbox_gsync {
    pthread_cond_t cond;
    uint64_t announced, synced;
    bool syncing;
} outbox_gsync_t;
/* Announces a change already made (lock held), then waits until an fsync of fd (fdatasync with
 * data) started after it is done: 0 or an errno. */
int email__outbox_gsync(outbox_gsync_t *g, pthread_mutex_t *lock, int fd, bool data);
/* The journal of the outbox directory dirfd (borrowed), NULL with errno. */
outbox_marks_t *email__marks_open(int dirfd);
void email__marks_free(outbox_marks_t *m);
/* Writes a record per id (marked or cleared; 8 at most) and, with sync, waits until they are
 * on disk: 0 or an errno. */
int email__marks_append(outbox_marks_t *m, const uint64_t *ids, size_t n, bool marked,
                        bool sync);
/* Sets the flags of claimed entries from the journal (and their headers): 0 or an errno. */
int email__marks_apply(outbox_marks_t *m, outbox_entry_t **v, size_t n);
/* The flags in the header of entry id (0 when unreadable); with fd_out, its file is left open
 * there for writing (-1 when it could not be read). */
uint32_t email__marks_header_flags(int dirfd, uint64_t id, int *fd_out);
/* One id's state in the journal (seq: the record's order). */
typedef struct mark_state {
    uint64_t id;
    size_t seq;
    bool marked;
} mark_state_t;

/* outbox_file.c */
/* Writes meta (meta->queued set here) and the body read from read(ctx) (until 0, or <0 with
 * why in err) as the entry meta->id, claimed by this process: on disk when it returns 0. */
int email__outbox_put(outbox_t *ob, const outbox_meta_t *meta,
                      ssize_t (*read)(void *ctx, char *buf, size_t n), void *ctx,
                      outbox_entry_t **out, char *err, size_t errlen);
/* Reads the entry `name` of ob: header and envelope, and with verify its whole body against its
 * checksum. 0, EMAIL_ENOTFOUND (gone meanwhile), or EMAIL_EIO with why (corrupt) in err. */
int email__outbox_load(outbox_t *ob, const char *name, bool verify, outbox_entry_t **out,
                       char *err, size_t errlen);
/* The body: up to n bytes, 0 at its end, <0 on error (why in e->error). The caller marks the
 * entry (email__outbox_mark) before its end of data goes. Loop thread. */
ssize_t email__outbox_entry_read(outbox_entry_t *e, char *buf, size_t n);
/* Back to the start of the body (another attempt). */
void email__outbox_entry_rewind(outbox_entry_t *e);
/* Ends the entry for this process (removed, or kept with its mark set or cleared, without a
 * sync: a clear lost in a crash leaves a false EMAIL_EUNKNOWN, never a duplicate), releases its
 * claim and frees it. Does not block on the disk. */
void email__outbox_entry_settle(outbox_entry_t *e, enum outbox_verdict verdict);
/* Frees an entry without touching its file (a claim it holds is released). */
void email__outbox_entry_free(outbox_entry_t *e, bool claimed);
void email__outbox_meta_clear(outbox_meta_t *m);

#endif
