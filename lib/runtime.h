/*
 * Which loop, which thread. By default the library runs its own libuv loop on one thread,
 * started on first use; API calls from any thread post work to it (a mutex-protected queue and
 * uv_async_send) and synchronous calls wait on their own condition variable. Completion
 * callbacks reach the caller through the dispatch queue and its descriptor.
 */
#ifndef EMAIL_RUNTIME_H
#define EMAIL_RUNTIME_H

#include <stdbool.h>
#include <uv.h>

typedef void (*runtime_fn)(void *arg);

uv_loop_t *email__runtime_loop(void);
/* True while a loop is set up (started and not stopped). */
bool email__runtime_running(void);
/* True on the thread that runs the loop (also while a stopped loop finishes its handles). */
bool email__runtime_on_loop_thread(void);
/* Runs fn(arg) on the loop thread, soon (also when called from it, even during a stop); starts
 * the loop thread if needed (after a stopping one has ended). 0 or EMAIL_ENOMEM. */
int email__runtime_post(runtime_fn fn, void *arg);

/*
 * A synchronous call: a thread waits while the loop thread does the work. The work ends the call
 * with email__runtime_call_done, before it returns or later (an operation that waits for the
 * network keeps call and ends it from a callback). The call lives until then.
 */
typedef struct runtime_call runtime_call_t;
typedef void (*runtime_call_fn)(runtime_call_t *call, void *arg);
/* Runs fn(call, arg) on the loop thread and waits until email__runtime_call_done(call): 0. Without
 * running fn: EMAIL_EWOULDBLOCK on the loop's own thread (waiting there would deadlock), or
 * EMAIL_ENOMEM when it cannot be posted. */
int email__runtime_loop_call(runtime_call_fn fn, void *arg);
/* Ends the call: its caller returns. Loop thread, once per call. */
void email__runtime_call_done(runtime_call_t *call);
/*
 * fn runs in the caller's thread after each email__runtime_loop_call has waited (set by a layer
 * above: the log has the writes the call's work handed to the thread pool finish, so a synchronous
 * call's lines are on disk when it returns). The runtime itself knows nothing of the log.
 */
void email__runtime_set_after_call(void (*fn)(void));

/* Hands a callback to where callbacks run: now (loop thread mode) or the dispatch queue. */
void email__runtime_deliver(runtime_fn fn, void *arg);

/* Stops the loop: after the work already posted has run and every handle is closed. Off the
 * loop's thread, waits for the library's thread to end; on the loop's thread (a callback) or on
 * the caller's loop, returns at once and the loop finishes the stop. */
void email__runtime_stop(void);

/* Test hook: the handles open on the library's own loop besides its wake-up (closing ones too),
 * each also passed to each(h, arg) unless each is NULL; walked on the loop's thread, so that
 * nothing changes meanwhile. 0 when no loop of ours runs; (size_t)-1 on the caller's loop
 * (email_use_loop: its owner walks it with uv_walk) or from the loop's own thread. */
size_t email__runtime_debug_open_handles(uv_walk_cb each, void *arg);

#endif
