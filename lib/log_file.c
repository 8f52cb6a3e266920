/*
 * The log's files and their writer (log_file.h).
 *
 * Locks, always taken in this order: reg_lock (the registry: every open file, refs), a file's
 * lock (its numbering and buffer), w_lock (the writer's queue and timer). Nobody waits for the
 * writer while holding one of them, so the writer may take them all.
 *
 * A buffer goes to the writer (sealed into an operation) when it holds 64 KB, when its oldest
 * line is a second old (a timer on the loop arms when a buffer starts filling there), at
 * email__log_flush (a burst of events is over, a session ends), and when the file is released or
 * changed. The operations of every file form one queue, performed one at a time in order by
 * whoever holds the writer's token: a work item on libuv's thread pool, or a thread off the
 * loop that waits for the writing (email_set_log, the release of a sink off the loop).
 */
#include "log_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "queue.h"
#include "runtime.h"

#define WRITE_AT (64 * 1024) /* a buffer this large is written at once */
#define FLUSH_MS 1000        /* no line waits longer than this in a buffer */
#define LOG_MODE 0600        /* the logs hold addresses and (extended) whole messages */

static atomic_long rotate_bytes = EMAIL_LOG_ROTATE_BYTES;

void email__log_set_rotate_size(long bytes)
{
    atomic_store(&rotate_bytes, bytes > 0 ? bytes : EMAIL_LOG_ROTATE_BYTES);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------------------------- */
/* Opening: where a file stands                                                                 */

/* "<digits> YYYY-MM-DDT...": the counter of one of our lines, or 0. */
static uint64_t line_counter(const char *p, const char *end)
{
    uint64_t n = 0;
    const char *q = p;
    while (q < end && q - p < 20 && *q >= '0' && *q <= '9')
        n = n * 10 + (uint64_t)(*q++ - '0');
    if (q == p || end - q < 12 || q[0] != ' ' || q[5] != '-' || q[8] != '-' || q[11] != 'T')
        return 0;
    return n;
}

/* The counter of the last whole line of ours in tail[0..want) (the file's last want bytes of
 * size), or 0. */
static uint64_t last_counter(const char *tail, size_t want, uint64_t size)
{
    size_t stop = want;
    while (stop > 0 && tail[stop - 1] != '\n')
        stop--; /* an unterminated end is not one of ours */
    while (stop > 0) {
        size_t end = stop - 1; /* the LF */
        size_t start = end;
        while (start > 0 && tail[start - 1] != '\n')
            start--;
        if (start == 0 && want < size)
            return 0; /* may be cut: not a whole line */
        uint64_t n = line_counter(tail + start, tail + end);
        if (n)
            return n;
        stop = start;
    }
    return 0;
}

/* Reads where the open file fd stands: its size, the counter of its last line (numbering goes
 * on from there), whether it lacks a final LF. */
static void scan_tail(int fd, const struct stat *st, log_sink_t *f, bool *needs_lf)
{
    *needs_lf = false;
    if (!S_ISREG(st->st_mode) || st->st_size <= 0)
        return;
    f->size = (uint64_t)st->st_size;
    char tail[8192];
    size_t want = f->size < sizeof tail ? (size_t)f->size : sizeof tail;
    ssize_t got = pread(fd, tail, want, st->st_size - (off_t)want);
    if (got != (ssize_t)want)
        return;
    *needs_lf = tail[want - 1] != '\n';
    f->counter = last_counter(tail, want, f->size);
}

/* Opens (creating) path for appending, readable when allowed (to read its last line). */
static int open_append(const char *path, bool *readable)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, LOG_MODE);
    *readable = fd >= 0;
    if (fd < 0 && errno == EACCES)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_MODE);
    return fd;
}

/* ------------------------------------------------------------------------------------------- */
/* The writer                                                                                   */

enum { OP_WRITE, OP_ROTATE };

typedef struct op {
    queue_t node; /* in w_ops */
    int kind;
    log_sink_t *f;
    email_buf_t data;
} op_t;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static log_sink_t *files; /* every open file, and released ones the writer has not finished */

static pthread_mutex_t w_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t w_idle = PTHREAD_COND_INITIALIZER;
static queue_t w_ops = QUEUE_INITIALIZER(w_ops);
static bool w_busy;          /* someone holds the token: performs w_ops until empty */
static uv_timer_t *w_timer;  /* armed on the loop while a buffer fills there */
static atomic_int dirty;     /* files whose buffer holds something */

static int write_all(int fd, const char *data, size_t n)
{
    while (n) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* path -> path.1 -> ... -> path.KEEP (dropped), then a fresh path. If it cannot be opened, the
 * writing goes on in the file it was (now path.1). */
static void rotate(log_sink_t *f)
{
    size_t n = strlen(f->path) + 24;
    char *from = malloc(n), *to = malloc(n);
    if (from && to) {
        for (int i = EMAIL_LOG_KEEP; i >= 1; i--) {
            if (i == 1)
                snprintf(from, n, "%s", f->path);
            else
                snprintf(from, n, "%s.%d", f->path, i - 1);
            snprintf(to, n, "%s.%d", f->path, i);
            rename(from, to);
        }
        bool readable;
        int fd = open_append(f->path, &readable);
        if (fd >= 0) {
            close(f->fd);
            f->fd = fd;
        }
    }
    free(from);
    free(to);
}

static void destroy(log_sink_t *f)
{
    if (f->fd >= 0)
        close(f->fd);
    email__buf_free(&f->buf);
    pthread_mutex_destroy(&f->lock);
    free(f->path);
    free(f);
}

/* Called with reg_lock held: f off the registry when nobody uses it any more. */
static bool unlink_if_done_locked(log_sink_t *f)
{
    pthread_mutex_lock(&w_lock);
    bool busy = f->queued > 0;
    pthread_mutex_unlock(&w_lock);
    if (f->refs || busy)
        return false;
    for (log_sink_t **p = &files; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    return true;
}

static void perform(op_t *op)
{
    log_sink_t *f = op->f;
    if (op->kind == OP_ROTATE)
        rotate(f);
    else if (f->fd >= 0)
        write_all(f->fd, op->data.data, op->data.len); /* a failure drops it: a full disk must
                                                          not grow memory */
    email__buf_free(&op->data);
    struct stat st;
    bool moved = op->kind == OP_ROTATE && fstat(f->fd, &st) == 0;
    pthread_mutex_lock(&reg_lock);
    if (moved) { /* the path is a new file: opening it again finds this object */
        f->dev = st.st_dev;
        f->ino = st.st_ino;
    }
    pthread_mutex_lock(&w_lock);
    f->queued--;
    pthread_mutex_unlock(&w_lock);
    bool done = unlink_if_done_locked(f);
    pthread_mutex_unlock(&reg_lock);
    if (done)
        destroy(f);
    free(op);
}

/* The token held: performs the queue until it is empty, then gives the token back. */
static void perform_all(void)
{
    pthread_mutex_lock(&w_lock);
    while (!queue_empty(&w_ops)) {
        op_t *op = queue_data(queue_head(&w_ops), op_t, node);
        queue_remove(&op->node);
        pthread_mutex_unlock(&w_lock);
        perform(op);
        pthread_mutex_lock(&w_lock);
    }
    w_busy = false;
    pthread_cond_broadcast(&w_idle);
    pthread_mutex_unlock(&w_lock);
}

/* Off the loop's thread: takes the token (after whoever holds it), performs what is queued. */
static void drain_here(void)
{
    pthread_mutex_lock(&w_lock);
    while (w_busy)
        pthread_cond_wait(&w_idle, &w_lock);
    bool work = !queue_empty(&w_ops);
    w_busy = work;
    pthread_mutex_unlock(&w_lock);
    if (work)
        perform_all();
}

static void on_work(uv_work_t *req)
{
    (void)req;
    perform_all();
}

static void on_work_done(uv_work_t *req, int status)
{
    (void)status;
    free(req);
}

/* On the loop's thread: a work item on the thread pool performs the queue, unless someone does
 * already (it performs what is queued now before it gives the token back). */
static void drain_on_pool(uv_loop_t *loop)
{
    pthread_mutex_lock(&w_lock);
    bool start = !w_busy && !queue_empty(&w_ops);
    w_busy = w_busy || start;
    pthread_mutex_unlock(&w_lock);
    if (!start)
        return;
    uv_work_t *req = malloc(sizeof *req);
    if (!req || uv_queue_work(loop, req, on_work, on_work_done) != 0) {
        free(req); /* left queued: the next flush tries again */
        pthread_mutex_lock(&w_lock);
        w_busy = false;
        pthread_cond_broadcast(&w_idle);
        pthread_mutex_unlock(&w_lock);
    }
}

static void drain(void)
{
    uv_loop_t *loop = email__runtime_on_loop_thread() ? email__runtime_loop() : NULL;
    if (loop)
        drain_on_pool(loop);
    else
        drain_here();
}

static void queue_op(log_sink_t *f, int kind, email_buf_t *data)
{
    op_t *op = calloc(1, sizeof *op);
    if (!op) {
        email__buf_free(data); /* dropped, as a failed write */
        return;
    }
    op->kind = kind;
    op->f = f;
    if (data)
        op->data = *data;
    email__buf_init(data ? data : &op->data);
    pthread_mutex_lock(&w_lock);
    f->queued++;
    queue_insert_tail(&w_ops, &op->node);
    pthread_mutex_unlock(&w_lock);
}

void email__log_file_seal(log_sink_t *f)
{
    if (!f->buf.len)
        return;
    f->size += f->buf.len;
    atomic_fetch_sub(&dirty, 1);
    queue_op(f, OP_WRITE, &f->buf);
}

/* ------------------------------------------------------------------------------------------- */
/* The timer: no line waits in a buffer filled on the loop more than about a second            */

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Called with w_lock held, on the loop's thread. */
static void close_timer_locked(void)
{
    if (w_timer)
        uv_close((uv_handle_t *)w_timer, on_timer_closed);
    w_timer = NULL;
}

static void seal_all(void)
{
    pthread_mutex_lock(&reg_lock);
    for (log_sink_t *f = files; f; f = f->next) {
        pthread_mutex_lock(&f->lock);
        email__log_file_seal(f);
        pthread_mutex_unlock(&f->lock);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Fires once: every buffer goes to the pool; the next line that starts a buffer arms it again. */
static void on_timer(uv_timer_t *t)
{
    seal_all();
    drain_on_pool(t->loop);
    pthread_mutex_lock(&w_lock);
    if (w_timer == t)
        close_timer_locked();
    pthread_mutex_unlock(&w_lock);
}

/* On the loop's thread. The timer keeps the loop alive: a line waiting is work under way. */
static void arm_timer(void)
{
    uv_loop_t *loop = email__runtime_loop();
    pthread_mutex_lock(&w_lock);
    if (!w_timer && loop && (w_timer = malloc(sizeof *w_timer))) {
        uv_timer_init(loop, w_timer);
        uv_timer_start(w_timer, on_timer, FLUSH_MS, 0);
    }
    pthread_mutex_unlock(&w_lock);
}

/* On the loop's thread, once nothing is buffered (every session flushed its lines). */
static void disarm_timer_if_idle(void)
{
    pthread_mutex_lock(&w_lock);
    if (atomic_load(&dirty) == 0)
        close_timer_locked();
    pthread_mutex_unlock(&w_lock);
}

void email__log_file_after(int todo)
{
    if (!todo)
        return;
    bool on_loop = email__runtime_on_loop_thread();
    if (todo & LOG_FILE_DRAIN)
        drain();
    else if (on_loop)
        arm_timer();
}

/* ------------------------------------------------------------------------------------------- */
/* Lines                                                                                        */

void email__log_file_appended(log_sink_t *f, bool was_empty, int *todo)
{
    if (!f->buf.len)
        return;
    int64_t now = now_ms();
    if (was_empty) {
        f->pending_since = now;
        atomic_fetch_add(&dirty, 1);
        *todo |= LOG_FILE_ARM;
    }
    if (f->buf.len >= WRITE_AT || now - f->pending_since >= FLUSH_MS) {
        email__log_file_seal(f);
        *todo |= LOG_FILE_DRAIN;
    }
}

void email__log_file_line(log_sink_t *f, const char *rest, size_t restlen, int *todo)
{
    char num[32];
    int k = snprintf(num, sizeof num, "%llu ", (unsigned long long)(f->counter + 1));
    size_t linelen = (size_t)k + restlen + 1;
    uint64_t used = f->size + f->buf.len;
    if (f->rotates && used > 0 && used + linelen > (uint64_t)atomic_load(&rotate_bytes)) {
        email__log_file_seal(f);
        queue_op(f, OP_ROTATE, NULL);
        *todo |= LOG_FILE_DRAIN;
        f->counter = f->size = 0; /* the writer renames before it writes what follows */
        k = snprintf(num, sizeof num, "%llu ", 1ULL);
        linelen = (size_t)k + restlen + 1;
    }
    bool was_empty = f->buf.len == 0;
    if (email__buf_reserve(&f->buf, linelen))
        return;
    f->counter++;
    email__buf_append(&f->buf, num, (size_t)k);
    email__buf_append(&f->buf, rest, restlen);
    email__buf_putc(&f->buf, '\n');
    email__log_file_appended(f, was_empty, todo);
}

void email__log_file_flush(log_sink_t *f)
{
    if (f) {
        pthread_mutex_lock(&f->lock);
        email__log_file_seal(f);
        pthread_mutex_unlock(&f->lock);
    }
    bool on_loop = email__runtime_on_loop_thread();
    drain();
    if (on_loop)
        disarm_timer_if_idle();
}

void email__log_file_settle(void)
{
    drain_here();
}

void email__log_file_flush_all(void)
{
    seal_all();
    drain_here();
}

/* ------------------------------------------------------------------------------------------- */
/* Opening and releasing                                                                        */

/* A new object for the open file fd (st its status); the registry's lock held. */
static log_sink_t *create_locked(int fd, const struct stat *st, bool readable, const char *path,
                                 bool rotates)
{
    log_sink_t *f = calloc(1, sizeof *f);
    char *copy = email__strdup(path);
    if (!f || !copy || pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f);
        free(copy);
        return NULL;
    }
    bool needs_lf = false;
    if (readable)
        scan_tail(fd, st, f, &needs_lf);
    else
        f->size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    email__buf_init(&f->buf);
    f->refs = 1;
    f->rotates = rotates;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->fd = fd;
    f->path = copy;
    f->next = files;
    files = f;
    if (needs_lf) { /* our next line starts a line */
        int todo = 0;
        email__buf_putc(&f->buf, '\n');
        email__log_file_appended(f, true, &todo);
    }
    return f;
}

log_sink_t *email__log_file_open(const char *path, bool rotates, char *err, size_t errlen)
{
    /* a synchronous call returns once the lines its work handed to the pool are written */
    email__runtime_set_after_call(email__log_file_settle);
    bool readable;
    int fd = open_append(path, &readable);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "\"%s\" cannot be opened for writing: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    pthread_mutex_lock(&reg_lock);
    log_sink_t *f;
    for (f = files; f; f = f->next)
        if (f->dev == st.st_dev && f->ino == st.st_ino && f->rotates == rotates)
            break;
    bool created = !f;
    if (f) /* maybe released and not written out yet: it numbers on */
        f->refs++;
    else
        f = create_locked(fd, &st, readable, path, rotates);
    pthread_mutex_unlock(&reg_lock);
    if (!f || !created)
        close(fd);
    if (!f)
        snprintf(err, errlen, "out of memory");
    return f;
}

log_sink_t *email__log_sink_ref(log_sink_t *sink)
{
    if (sink) {
        pthread_mutex_lock(&reg_lock);
        sink->refs++;
        pthread_mutex_unlock(&reg_lock);
    }
    return sink;
}

void email__log_file_release(log_sink_t *f, void (*finalize)(log_sink_t *f))
{
    if (!f)
        return;
    pthread_mutex_lock(&reg_lock);
    bool last = --f->refs == 0, done = false;
    if (last) {
        pthread_mutex_lock(&f->lock);
        if (finalize)
            finalize(f);
        email__log_file_seal(f);
        pthread_mutex_unlock(&f->lock);
        done = unlink_if_done_locked(f);
    }
    pthread_mutex_unlock(&reg_lock);
    if (done)
        destroy(f);
    else if (last)
        email__log_file_flush(NULL); /* the writer closes it after its last operation */
}

/* At exit (or when the library is unloaded): every buffer written. */
__attribute__((destructor)) static void log_file_fini(void)
{
    email__log_file_flush_all();
}
