/* The library's loop and thread, the cross-thread command queue, the dispatch queue. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "emailsession-uv.h"
#include "emailsession.h"

typedef struct task {
    runtime_fn fn;
    void *arg;
    struct task *next;
} task_t;

typedef struct task_queue {
    task_t *head, *tail;
} task_queue_t;

static struct {
    pthread_mutex_t lock;
    bool running;         /* a loop is set up and accepts work */
    bool external;        /* the caller's loop (email_use_loop) */
    uv_loop_t own_loop;
    uv_loop_t *loop;
    uv_thread_t thread;
    pthread_t loop_thread;
    uv_async_t async;
    task_queue_t posted;
    bool stopping;        /* close the async handle once the posted work is done */
    bool async_closed;    /* no more work can be posted */

    int dispatch_fd;      /* eventfd: readable while callbacks wait */
    task_queue_t dispatch;
    int callback_thread;  /* EMAIL_CALLBACK_... */
} rt = {.lock = PTHREAD_MUTEX_INITIALIZER, .dispatch_fd = -1};

static void push(task_queue_t *q, task_t *t)
{
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static task_t *take_all(task_queue_t *q)
{
    task_t *t = q->head;
    q->head = q->tail = NULL;
    return t;
}

static void on_async_closed(uv_handle_t *h)
{
    /* the caller's loop: the library is idle again. Our own loop: runtime_stop resets the state
     * after the join, so that a post meanwhile gets EMAIL_ESHUTDOWN instead of a second loop */
    pthread_mutex_lock(&rt.lock);
    if (rt.external)
        rt.running = rt.stopping = rt.async_closed = false;
    pthread_mutex_unlock(&rt.lock);
}

static void on_async(uv_async_t *a)
{
    pthread_mutex_lock(&rt.lock);
    task_t *t = take_all(&rt.posted);
    pthread_mutex_unlock(&rt.lock);
    while (t) {
        task_t *next = t->next;
        t->fn(t->arg);
        free(t);
        t = next;
    }
    pthread_mutex_lock(&rt.lock);
    bool idle = !rt.posted.head;
    bool close_now = idle && rt.stopping && !rt.async_closed;
    if (close_now)
        rt.async_closed = true;
    pthread_mutex_unlock(&rt.lock);
    if (close_now)
        uv_close((uv_handle_t *)&rt.async, on_async_closed);
    else if (idle && rt.external)
        uv_unref((uv_handle_t *)&rt.async); /* the caller's loop may end when we have no work */
}

static void loop_main(void *arg)
{
    /* a server resetting the connection must fail a write with EPIPE, not kill the program */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    rt.loop_thread = pthread_self();
    uv_run(rt.loop, UV_RUN_DEFAULT);
}

/* Called with rt.lock held. */
static int setup_loop(uv_loop_t *loop)
{
    rt.loop = loop;
    int rc = uv_async_init(loop, &rt.async, on_async);
    if (rc < 0)
        return EMAIL_ENOMEM;
    rt.running = true;
    return 0;
}

int runtime_start(void)
{
    int rc = 0;
    pthread_mutex_lock(&rt.lock);
    if (!rt.running) {
        if (uv_loop_init(&rt.own_loop) < 0) {
            rc = EMAIL_ENOMEM;
        } else if ((rc = setup_loop(&rt.own_loop)) == 0) {
            rt.external = false;
            if (uv_thread_create(&rt.thread, loop_main, NULL) < 0) {
                rt.running = false;
                uv_close((uv_handle_t *)&rt.async, NULL);
                uv_run(&rt.own_loop, UV_RUN_DEFAULT);
                uv_loop_close(&rt.own_loop);
                rc = EMAIL_ENOMEM;
            }
        } else {
            uv_loop_close(&rt.own_loop);
        }
    }
    pthread_mutex_unlock(&rt.lock);
    return rc;
}

int email_use_loop(uv_loop_t *loop)
{
    if (!loop)
        return EMAIL_EINVAL;
    pthread_mutex_lock(&rt.lock);
    int rc = EMAIL_EBUSY;
    if (!rt.running) {
        rc = setup_loop(loop);
        if (!rc) {
            rt.external = true;
            rt.loop_thread = pthread_self();
            /* the caller's loop must be able to end: our handle does not keep it alive */
            uv_unref((uv_handle_t *)&rt.async);
        }
    }
    pthread_mutex_unlock(&rt.lock);
    return rc;
}

uv_loop_t *runtime_loop(void)
{
    return rt.loop;
}

bool runtime_running(void)
{
    pthread_mutex_lock(&rt.lock);
    bool running = rt.running && !rt.async_closed;
    pthread_mutex_unlock(&rt.lock);
    return running;
}

bool runtime_on_loop_thread(void)
{
    return rt.running && pthread_equal(pthread_self(), rt.loop_thread);
}

int runtime_post(runtime_fn fn, void *arg)
{
    int rc = runtime_start();
    if (rc)
        return rc;
    task_t *t = malloc(sizeof *t);
    if (!t)
        return EMAIL_ENOMEM;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&rt.lock);
    if (rt.async_closed) {
        pthread_mutex_unlock(&rt.lock);
        free(t);
        return EMAIL_ESHUTDOWN;
    }
    push(&rt.posted, t);
    /* on the caller's loop, work keeps the loop alive until done (only its thread may ref) */
    if (rt.external && pthread_equal(pthread_self(), rt.loop_thread))
        uv_ref((uv_handle_t *)&rt.async);
    uv_async_send(&rt.async);
    pthread_mutex_unlock(&rt.lock);
    return 0;
}

void runtime_waiter_init(runtime_waiter_t *w)
{
    uv_mutex_init(&w->lock);
    uv_cond_init(&w->cond);
    w->done = false;
}

void runtime_waiter_destroy(runtime_waiter_t *w)
{
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->lock);
}

int runtime_call(runtime_fn fn, void *arg, runtime_waiter_t *w)
{
    if (runtime_on_loop_thread())
        return EMAIL_EWOULDBLOCK;
    int rc = runtime_post(fn, arg);
    if (rc)
        return rc;
    uv_mutex_lock(&w->lock);
    while (!w->done)
        uv_cond_wait(&w->cond, &w->lock);
    uv_mutex_unlock(&w->lock);
    return 0;
}

void runtime_waiter_signal(runtime_waiter_t *w)
{
    uv_mutex_lock(&w->lock);
    w->done = true;
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->lock);
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
    pthread_mutex_unlock(&rt.lock);
    return fd < 0 ? EMAIL_EIO : fd;
}

int email_set_callback_thread(int where)
{
    if (where != EMAIL_CALLBACK_DISPATCH && where != EMAIL_CALLBACK_LOOP_THREAD)
        return EMAIL_EINVAL;
    pthread_mutex_lock(&rt.lock);
    rt.callback_thread = where;
    pthread_mutex_unlock(&rt.lock);
    return 0;
}

void runtime_deliver(runtime_fn fn, void *arg)
{
    pthread_mutex_lock(&rt.lock);
    bool now = rt.callback_thread == EMAIL_CALLBACK_LOOP_THREAD || rt.external;
    if (!now) {
        task_t *t = malloc(sizeof *t);
        int fd = dispatch_fd_locked();
        if (t && fd >= 0) {
            t->fn = fn;
            t->arg = arg;
            push(&rt.dispatch, t);
            uint64_t one = 1;
            ssize_t w = write(fd, &one, sizeof one);
            (void)w; /* the counter only signals; a full counter is still readable */
        } else {
            free(t);
            now = true; /* better on the wrong thread than lost */
        }
    }
    pthread_mutex_unlock(&rt.lock);
    if (now)
        fn(arg);
}

int email_dispatch(void)
{
    pthread_mutex_lock(&rt.lock);
    task_t *t = take_all(&rt.dispatch);
    if (rt.dispatch_fd >= 0) {
        uint64_t v;
        ssize_t r = read(rt.dispatch_fd, &v, sizeof v);
        (void)r; /* EAGAIN when nothing was signalled */
    }
    pthread_mutex_unlock(&rt.lock);
    int n = 0;
    while (t) {
        task_t *next = t->next;
        t->fn(t->arg);
        free(t);
        t = next;
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------- */

static void stop_on_loop(void *arg)
{
    pthread_mutex_lock(&rt.lock);
    rt.stopping = true; /* on_async closes the handle once what was posted has run */
    pthread_mutex_unlock(&rt.lock);
}

void runtime_stop(void)
{
    pthread_mutex_lock(&rt.lock);
    bool running = rt.running && !rt.stopping, external = rt.external;
    pthread_mutex_unlock(&rt.lock);
    if (!running)
        return;
    /* after the work already posted (a transporter's QUIT, say), never before it */
    if (runtime_post(stop_on_loop, NULL) != 0)
        return;
    if (external)
        return; /* the caller's loop finishes the closing when it runs */
    uv_thread_join(&rt.thread);
    /* the loop ended: every handle is closed (the transporters closed theirs before) */
    uv_loop_close(&rt.own_loop);
    pthread_mutex_lock(&rt.lock);
    rt.running = rt.stopping = rt.async_closed = false;
    rt.loop = NULL;
    pthread_mutex_unlock(&rt.lock);
}
