/*
 * emailsession on the caller's own libuv loop.
 */
#ifndef EMAILSESSION_UV_H
#define EMAILSESSION_UV_H

#include <uv.h>

#include "emailsession.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Runs everything on the caller's loop instead of the library's own thread. Call it before any
 * other function of the library, from the thread that runs `loop`. Callbacks then run on that
 * thread; a synchronous call made on it fails with EMAIL_EWOULDBLOCK instead of deadlocking.
 * EMAIL_EBUSY when the library already runs a loop. The library's handles keep the loop alive
 * only while work is under way. email_shutdown() closes them: run the loop once more afterwards
 * (uv_run(loop, UV_RUN_DEFAULT)) so that they finish closing before uv_loop_close.
 * Work queued from the loop's thread keeps the loop running until it is done; work queued
 * from other threads needs the loop to be running. As with any program writing to sockets,
 * ignore or block SIGPIPE in the loop's thread (signal(SIGPIPE, SIG_IGN)): a server that
 * resets the connection then fails a write with EPIPE instead of ending the program (the
 * library's own thread blocks SIGPIPE by itself).
 */
EMAIL_EXTERN int email_use_loop(uv_loop_t *loop);

#ifdef __cplusplus
}
#endif
#endif
