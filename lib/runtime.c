/* The library's loop and thread, the cross-thread command queue, the dispatch queue. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "emailsession-uv.h"
#include "emailsession.h"
#include "error.h"
#include "queue.h"

typedef struct task {
    runtime_fn fn;
    void *arg;
    queue_t node; /* in rt.posted or rt.dispatch */
} task_t;

/*
 * Every field is read and written under rt.lock. A loop goes through these states:
 *   running: the async handle is open and work can be posted;
 *   stopping (set by email__runtime_stop): the handle closes once the posted work is done, then
 *     running is false while the loop finishes what its handles still do (QUITs); work posted
 *     from the loop's own thread then runs from a one-shot timer;
 *   ended: our own loop's thread clears rt.loop when uv_run returns; the caller's loop stays
 *     in rt.loop until another loop is taken (its callbacks may still run on it).
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t ended;  /* broadcast when our own loop's thread has finished its loop */
    bool running;          /* the async handle is open: posted work will run */
    bool stopping;         /* close the async handle once the posted work is done */
    bool external;         /* the caller's loop (email_use_loop) */
    uv_loop_t own_loop;
    uv_loop_t *loop;       /* the loop in use, NULL when none */
    pthread_t loop_thread; /* the thread that runs it */
    pthread_t thread;      /* our own loop's thread */
    bool joinable;         /* our own loop's thread ended and was not joined yet */
    uint64_t epoch;        /* our own loops that have ended */
    uv_async_t async;
    queue_t posted;       /* of task_t */

    int dispatch_fd;      /* eventfd: readable while callbacks wait */
    queue_t dispatch;     /* of task_t */
    int callback_thread;  /* EMAIL_CALLBACK_... */
    void (*after_call)(void); /* email__runtime_set_after_call */
} rt = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .ended = PTHREAD_COND_INITIALIZER,
        .posted = QUEUE_INITIALIZER(rt.posted),
        .dispatch = QUEUE_INITIALIZER(rt.dispatch),
        .dispatch_fd = -1};

static void push_locked(queue_t *q, runtime_fn fn, void *arg, task_t *t)
{
    t->fn = fn;
    t->arg = arg;
    queue_insert_tail(q, &t->node);
}

/* Runs and frees every task of q (taken out of the shared queue first); how many ran. */
static int run_all(queue_t *q)
{
    int n = 0;
    while (!queue_empty(q)) {
        task_t *t = queue_data(queue_head(q), task_t, node);
        queue_remove(&t->node);
        t->fn(t->arg);
        free(t);
        n++;
    }
    return n;
}

/* Library work (a task, a callback) running on this thread: after a stop, the caller's thread is
 * the loop's thread only while the loop runs our work, not once its owner has closed it. */
static _Thread_local int in_loop_work;

/* Called with rt.lock held. */
static bool on_loop_thread_locked(void)
{
    if (!rt.loop || !pthread_equal(pthread_self(), rt.loop_thread))
        return false;
    return !rt.external || rt.running || in_loop_work > 0;
}

static void on_async_closed(uv_handle_t *h)
{
    (void)h;
    /* the caller's loop: the library is idle again (a later call may take a loop). Our own
     * loop: its thread resets the state when uv_run returns */
    pthread_mutex_lock(&rt.lock);
    if (rt.external)
        rt.stopping = false;
    pthread_mutex_unlock(&rt.lock);
}

static void on_async(uv_async_t *a)
{
    queue_t work;
    pthread_mutex_lock(&rt.lock);
    queue_move(&rt.posted, &work);
    pthread_mutex_unlock(&rt.lock);
    in_loop_work++;
    run_all(&work);
    in_loop_work--;
    pthread_mutex_lock(&rt.lock);
    bool idle = queue_empty(&rt.posted);
    bool close_now = idle && rt.stopping && rt.running;
    if (close_now)
        rt.running = false; /* from here on nothing can be posted to the handle */
    /* the caller's loop may end when we have no work */
    bool unref = idle && rt.external && !close_now;
    pthread_mutex_unlock(&rt.lock);
    if (close_now)
        uv_close((uv_handle_t *)a, on_async_closed);
    else if (unref)
        uv_unref((uv_handle_t *)a);
}

static void loop_main(void *arg)
{
    uv_loop_t *loop = arg;
    /* a server resetting the connection must fail a write with EPIPE, not kill the program */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    /* every handle is closed (the async one last, after email__runtime_stop): nobody else touches
     * the loop, whichever thread asked for the stop (maybe this one, from a callback) */
    uv_loop_close(loop);
    pthread_mutex_lock(&rt.lock);
    rt.loop = NULL;
    rt.stopping = false;
    rt.joinable = true;
    rt.epoch++;
    pthread_cond_broadcast(&rt.ended);
    pthread_mutex_unlock(&rt.lock);
}

/* Joins our own loop's thread once it has ended. Called with rt.lock held (the thread no longer
 * needs it). */
static void reap_locked(void)
{
    if (rt.joinable) {
        pthread_join(rt.thread, NULL);
        rt.joinable = false;
    }
}

/* Waits until our own loop, stopping, has ended. Called with rt.lock held, off its thread. */
static void wait_ended_locked(void)
{
    uint64_t epoch = rt.epoch;
    while (rt.loop && !rt.external && rt.epoch == epoch)
        pthread_cond_wait(&rt.ended, &rt.lock);
    reap_locked();
}

/* Called with rt.lock held. */
static int setup_loop(uv_loop_t *loop)
{
    if (uv_async_init(loop, &rt.async, on_async) < 0)
        return EMAIL_ENOMEM;
    rt.loop = loop;
    rt.running = true;
    rt.stopping = false;
    return 0;
}

static void *loop_thread_main(void *arg)
{
    loop_main(arg);
    return NULL;
}

/* Starts our own loop and its thread unless a loop accepts work. Called with rt.lock held, off
 * the loop's thread. */
static int start_locked(void)
{
    if (rt.running)
        return 0;
    wait_ended_locked(); /* a stopping loop of ours ends before the next one starts */
    if (rt.running)
        return 0; /* another thread started one meanwhile */
    if (uv_loop_init(&rt.own_loop) < 0)
        return EMAIL_ENOMEM;
    if (setup_loop(&rt.own_loop) != 0) {
        uv_loop_close(&rt.own_loop);
        rt.loop = NULL;
        return EMAIL_ENOMEM;
    }
    rt.external = false;
    if (pthread_create(&rt.thread, NULL, loop_thread_main, &rt.own_loop) != 0) {
        rt.running = false;
        uv_close((uv_handle_t *)&rt.async, NULL);
        uv_run(&rt.own_loop, UV_RUN_DEFAULT);
        uv_loop_close(&rt.own_loop);
        rt.loop = NULL;
        return EMAIL_ENOMEM;
    }
    rt.loop_thread = rt.thread;
    return 0;
}

int email_use_loop(uv_loop_t *loop)
{
    if (!loop)
        return email__error_set(EMAIL_EINVAL, "email_use_loop: the loop is NULL");
    pthread_mutex_lock(&rt.lock);
    int rc = EMAIL_EBUSY;
    /* not while a loop accepts work, nor while our own one is still ending */
    if (!rt.running && !(rt.loop && !rt.external)) {
        reap_locked();
        rc = setup_loop(loop);
        if (!rc) {
            rt.external = true;
            rt.loop_thread = pthread_self();
            /* the caller's loop must be able to end: our handle does not keep it alive */
            uv_unref((uv_handle_t *)&rt.async);
        }
    }
    pthread_mutex_unlock(&rt.lock);
    if (rc == EMAIL_EBUSY)
        return email__error_set(rc, "email_use_loop: the library already runs a loop");
    if (rc)
        return email__error_set(rc, "email_use_loop: %s", email_strerror(rc));
    email__error_clear();
    return 0;
}

uv_loop_t *email__runtime_loop(void)
{
    pthread_mutex_lock(&rt.lock);
    uv_loop_t *loop = rt.loop;
    pthread_mutex_unlock(&rt.lock);
    return loop;
}

bool email__runtime_running(void)
{
    pthread_mutex_lock(&rt.lock);
    bool running = rt.running;
    pthread_mutex_unlock(&rt.lock);
    return running;
}

bool email__runtime_on_loop_thread(void)
{
    pthread_mutex_lock(&rt.lock);
    bool on = on_loop_thread_locked();
    pthread_mutex_unlock(&rt.lock);
    return on;
}

/* Work posted from the loop's thread after its async handle closed (a callback during the
 * stop): it runs from a timer of its own, which keeps the loop alive until then. */
typedef struct later {
    uv_timer_t timer;
    runtime_fn fn;
    void *arg;
} later_t;

static void on_later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_later(uv_timer_t *h)
{
    later_t *l = h->data;
    in_loop_work++;
    l->fn(l->arg);
    in_loop_work--;
    uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

static int post_later_locked(runtime_fn fn, void *arg)
{
    later_t *l = malloc(sizeof *l);
    if (!l)
        return EMAIL_ENOMEM;
    l->fn = fn;
    l->arg = arg;
    uv_timer_init(rt.loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_later, 0, 0);
    return 0;
}

int email__runtime_post(runtime_fn fn, void *arg)
{
    pthread_mutex_lock(&rt.lock);
    bool on_loop = on_loop_thread_locked();
    int rc = 0;
    if (on_loop && !rt.running) {
        rc = post_later_locked(fn, arg);
        pthread_mutex_unlock(&rt.lock);
        return rc;
    }
    task_t *t = malloc(sizeof *t);
    if (!t || (rc = start_locked()) != 0) {
        pthread_mutex_unlock(&rt.lock);
        free(t);
        return t ? rc : EMAIL_ENOMEM;
    }
    push_locked(&rt.posted, fn, arg, t);
    /* on the caller's loop, work keeps the loop alive until done (only its thread may ref) */
    if (rt.external && on_loop)
        uv_ref((uv_handle_t *)&rt.async);
    uv_async_send(&rt.async);
    pthread_mutex_unlock(&rt.lock);
    return 0;
}

/* Lives on the stack of the thread waiting in email__runtime_loop_call. */
struct runtime_call {
    uv_mutex_t lock;
    uv_cond_t cond;
    bool done;
    runtime_call_fn fn;
    void *arg;
};

static void run_call(void *arg)
{
    runtime_call_t *call = arg;
    call->fn(call, call->arg);
}

int email__runtime_loop_call(runtime_call_fn fn, void *arg)
{
    if (email__runtime_on_loop_thread())
        return EMAIL_EWOULDBLOCK;
    runtime_call_t call = {.fn = fn, .arg = arg};
    uv_mutex_init(&call.lock);
    uv_cond_init(&call.cond);
    int rc = email__runtime_post(run_call, &call);
    if (!rc) {
        uv_mutex_lock(&call.lock);
        while (!call.done)
            uv_cond_wait(&call.cond, &call.lock);
        uv_mutex_unlock(&call.lock);
        pthread_mutex_lock(&rt.lock);
        void (*after)(void) = rt.after_call;
        pthread_mutex_unlock(&rt.lock);
        if (after)
            after(); /* e.g. the log lines the work handed to the thread pool reach the disk */
    }
    uv_cond_destroy(&call.cond);
    uv_mutex_destroy(&call.lock);
    return rc;
}

void email__runtime_set_after_call(void (*fn)(void))
{
    pthread_mutex_lock(&rt.lock);
    rt.after_call = fn;
    pthread_mutex_unlock(&rt.lock);
}

void email__runtime_call_done(runtime_call_t *call)
{
    uv_mutex_lock(&call->lock);
    call->done = true;
    uv_cond_signal(&call->cond);
    uv_mutex_unlock(&call->lock);
}

/* ------------------------------------------------------------------------------------------- */
/* Dispatch                                                                                     */

static int dispatch_fd_locked(void)
{
    if (rt.dispatch_fd < 0)
        rt.dispatch_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return rt.dispatch_fd;
}

int email_dispatch_fd(void)
{
    pthread_mutex_lock(&rt.lock);
    int fd = dispatch_fd_locked();
    int why = errno;
    pthread_mutex_unlock(&rt.lock);
    if (fd < 0)
        return email__error_set(EMAIL_EIO, "email_dispatch_fd: the eventfd could not be made (%s)",
                                strerror(why));
    email__error_clear();
    return fd;
}

int email_set_callback_thread(int where)
{
    if (where != EMAIL_CALLBACK_DISPATCH && where != EMAIL_CALLBACK_LOOP_THREAD)
        return email__error_set(EMAIL_EINVAL,
                                "email_set_callback_thread: %d is not EMAIL_CALLBACK_DISPATCH or "
                                "EMAIL_CALLBACK_LOOP_THREAD",
                                where);
    pthread_mutex_lock(&rt.lock);
    rt.callback_thread = where;
    pthread_mutex_unlock(&rt.lock);
    email__error_clear();
    return 0;
}

void email__runtime_deliver(runtime_fn fn, void *arg)
{
    pthread_mutex_lock(&rt.lock);
    bool now = rt.callback_thread == EMAIL_CALLBACK_LOOP_THREAD || rt.external;
    if (!now) {
        task_t *t = malloc(sizeof *t);
        int fd = dispatch_fd_locked();
        if (t && fd >= 0) {
            push_locked(&rt.dispatch, fn, arg, t);
            uint64_t one = 1;
            ssize_t w = write(fd, &one, sizeof one);
            (void)w; /* the counter only signals; a full counter is still readable */
        } else {
            free(t);
            now = true; /* better on the wrong thread than lost */
        }
    }
    pthread_mutex_unlock(&rt.lock);
    if (now) {
        in_loop_work++;
        fn(arg);
        in_loop_work--;
    }
}

int email_dispatch(void)
{
    queue_t waiting;
    pthread_mutex_lock(&rt.lock);
    queue_move(&rt.dispatch, &waiting);
    if (rt.dispatch_fd >= 0) {
        uint64_t v;
        ssize_t r = read(rt.dispatch_fd, &v, sizeof v);
        (void)r; /* EAGAIN when nothing was signalled */
    }
    pthread_mutex_unlock(&rt.lock);
    return run_all(&waiting);
}

/* ------------------------------------------------------------------------------------------- */

void email__runtime_stop(void)
{
    pthread_mutex_lock(&rt.lock);
    if (rt.running && !rt.stopping) {
        /* after the work already posted (a transporter's QUIT, say), never before it */
        rt.stopping = true;
        if (rt.external && on_loop_thread_locked())
            uv_ref((uv_handle_t *)&rt.async); /* the caller's loop runs until it is closed */
        uv_async_send(&rt.async);
    }
    /* the loop's own thread cannot wait for itself (a callback): the loop ends after it
     * returns. The caller's loop ends when its owner runs it. */
    if (!rt.external && !on_loop_thread_locked())
        wait_ended_locked();
    pthread_mutex_unlock(&rt.lock);
}

/* ------------------------------------------------------------------------------------------- */
/* Test hook                                                                                    */

typedef struct handle_count {
    uv_walk_cb each;
    void *arg;
    size_t n;
} handle_count_t;

static void count_handle(uv_handle_t *h, void *arg)
{
    handle_count_t *c = arg;
    if (h == (uv_handle_t *)&rt.async)
        return; /* ours for as long as the loop runs */
    c->n++;
    if (c->each)
        c->each(h, c->arg);
}

static void count_handles(runtime_call_t *call, void *arg)
{
    handle_count_t *c = arg;
    uv_walk(email__runtime_loop(), count_handle, c);
    email__runtime_call_done(call);
}

size_t email__runtime_debug_open_handles(uv_walk_cb each, void *arg)
{
    pthread_mutex_lock(&rt.lock);
    bool own = rt.running && !rt.external;
    bool external = rt.running && rt.external;
    pthread_mutex_unlock(&rt.lock);
    if (!own)
        return external ? (size_t)-1 : 0; /* posting now would start a loop of ours */
    handle_count_t c = {.each = each, .arg = arg};
    int rc = email__runtime_loop_call(count_handles, &c);
    return rc ? (size_t)-1 : c.n;
}
