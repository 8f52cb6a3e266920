/*
 * The files behind the conversation log (private to log.c and log_file.c): one object per open
 * file, the global log's as well as each extended log's, shared by everyone who opens the same
 * file. Lines are numbered and buffered by whoever logs (under the file's lock); the bytes go to
 * the disk through one writer queue of the whole log, in order, one operation at a time: on
 * libuv's thread pool (uv_queue_work) when handed over on the loop's thread, in the caller's
 * own thread otherwise. So no write nor rotation (rename) ever runs on the loop's thread, and
 * the log has no thread of its own.
 */
#ifndef EMAIL_LOG_FILE_H
#define EMAIL_LOG_FILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "util.h"

typedef struct msg_state msg_state_t;

struct log_sink {
    pthread_mutex_t lock;  /* guards the fields up to refs */
    uint64_t counter;      /* lines numbered so far in the current file */
    uint64_t size;         /* bytes of the current file, written or handed to the writer */
    email_buf_t buf;       /* not handed to the writer yet */
    int64_t pending_since; /* monotonic ms when buf became non-empty */
    msg_state_t *msgs;     /* extended logs (log.c): messages begun and not ended */
    msg_state_t *open;     /* the message whose block is open in the file, or NULL */

    int refs;              /* under the registry's lock, as the fields below */
    unsigned queued;       /* writer operations not done yet (also under the writer's lock) */
    bool rotates;          /* the global log: recycled at the size limit */
    dev_t dev;
    ino_t ino;
    log_sink_t *next;      /* in the registry */

    int fd;                /* the writer's: whoever performs the operations */
    char *path;            /* absolute */
};

/* What to do once the file's lock is released (email__log_file_after). */
enum { LOG_FILE_ARM = 1, LOG_FILE_DRAIN = 2 };

/* The file at path (absolute), opened for appending, or the object already open for it (same
 * file, same rotates). The numbering goes on from the file's last line. NULL + err. */
log_sink_t *email__log_file_open(const char *path, bool rotates, char *err, size_t errlen);
/* Drops a reference; the last one hands what is buffered to the writer first, after
 * finalize(f) (may be NULL) ran under f's lock. Off the loop's thread, returns once it is
 * written; on it, at once (the thread pool writes it and then closes the file). */
void email__log_file_release(log_sink_t *f, void (*finalize)(log_sink_t *f));

/* One line "<counter> " + rest + LF (under f's lock); rotates first when it would not fit. */
void email__log_file_line(log_sink_t *f, const char *rest, size_t restlen, int *todo);
/* Bytes were appended to f->buf, which was empty before if was_empty (under f's lock). */
void email__log_file_appended(log_sink_t *f, bool was_empty, int *todo);
/* With no lock held: arms the one-second timer or hands the buffers over, as todo says. */
void email__log_file_after(int todo);

/* Hands f's buffer to the writer (under f's lock); email__log_file_flush(NULL) has it written. */
void email__log_file_seal(log_sink_t *f);
/* Hands f's buffer (f may be NULL) to the writer; waits until it is written off the loop's
 * thread; on it, returns at once. */
void email__log_file_flush(log_sink_t *f);
/* Waits until what was handed to the writer is written, writing it in this thread if nobody
 * does (off the loop's thread): a synchronous call returns with its session's log on disk. */
void email__log_file_settle(void);
/* Every file's buffer to the writer, and waits until written (not on the loop's thread). */
void email__log_file_flush_all(void);

#endif
