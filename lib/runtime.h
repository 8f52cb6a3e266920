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

/* Starts the loop thread if needed (after a stopping one has ended). 0 or EMAIL_E... */
int runtime_start(void);
uv_loop_t *runtime_loop(void);
/* True while a loop is set up (started and not stopped). */
bool runtime_running(void);
/* True on the thread that runs the loop (also while a stopped loop finishes its handles). */
bool runtime_on_loop_thread(void);
/* Runs fn(arg) on the loop thread, soon (also when called from it, even during a stop). */
int runtime_post(runtime_fn fn, void *arg);

/* A one-shot completion a synchronous caller waits for. */
typedef struct runtime_waiter {
    uv_mutex_t lock;
    uv_cond_t cond;
    bool done;
} runtime_waiter_t;
void runtime_waiter_init(runtime_waiter_t *w);
void runtime_waiter_destroy(runtime_waiter_t *w);
/* Posts fn(arg) to the loop and waits until runtime_waiter_signal(w) (EMAIL_EWOULDBLOCK when
 * called on the loop thread: waiting there would deadlock). */
int runtime_call(runtime_fn fn, void *arg, runtime_waiter_t *w);
void runtime_waiter_signal(runtime_waiter_t *w);

/* Hands a callback to where callbacks run: now (loop thread mode) or the dispatch queue. */
void runtime_deliver(runtime_fn fn, void *arg);

/* Stops the loop: after the work already posted has run and every handle is closed. Off the
 * loop's thread, waits for the library's thread to end; on the loop's thread (a callback) or on
 * the caller's loop, returns at once and the loop finishes the stop. */
void runtime_stop(void);

/* Test hook: the handles open on the library's own loop besides its wake-up (closing ones too),
 * each also passed to each(h, arg) unless each is NULL; walked on the loop's thread, so that
 * nothing changes meanwhile. 0 when no loop of ours runs; (size_t)-1 on the caller's loop
 * (email_use_loop: its owner walks it with uv_walk) or from the loop's own thread. */
size_t runtime_debug_open_handles(uv_walk_cb each, void *arg);

#endif
