/*
 * The conversation log in 4D's format:
 *   <counter> <YYYY-MM-DDTHH:MM:SS.mmm> <pid> <session id> <event>
 * written to the global log file (rotated), the log callback and the extended logs (sinks).
 * The engine never hands secrets here: AUTH payloads arrive already masked ("****").
 *
 * Every file has one mutex (the global log: g_lock; a sink: its own) that guards its buffer, its
 * counter and its descriptor. Events are formatted outside the locks and appended to the buffer
 * under it; the buffer is written with one write(2) when email_log_flush is called (after every
 * burst of events, when a session ends), when it holds 64 KB, when its oldest line is a second
 * old, and by a small flusher thread that runs while something is buffered (so nothing waits in
 * memory more than about a second). The callback is called with no lock held, where completion
 * callbacks run (runtime_deliver).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "emailsession.h"
#include "encode.h"
#include "error.h"
#include "runtime.h"
#include "util.h"

#define WRITE_AT (64 * 1024) /* a buffer this large is written at once */
#define FLUSH_MS 1000        /* no line waits longer than this in a buffer */
#define MAX_OPEN_MSGS 16     /* messages begun and not ended, remembered per sink */
#define LOG_MODE 0600        /* the logs hold addresses and (extended) whole messages */

/* ------------------------------------------------------------------------------------------- */
/* One log file                                                                                 */

typedef struct lf {
    int fd;                /* -1: none */
    char *path;            /* absolute; for the rotation of the global log */
    bool rotates;
    uint64_t counter;      /* lines numbered so far in this file */
    uint64_t size;         /* bytes written to the file */
    email_buf_t buf;       /* not written yet */
    int64_t pending_since; /* monotonic ms when buf became non-empty */
} lf_t;

static atomic_long rotate_bytes = EMAIL_LOG_ROTATE_BYTES;

void email_log_set_rotate_size(long bytes)
{
    atomic_store(&rotate_bytes, bytes > 0 ? bytes : EMAIL_LOG_ROTATE_BYTES);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void format_time(char *out, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    time_t secs = tv.tv_sec;
    localtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

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

/* Writes the buffer out (a failed write drops it: a full disk must not grow memory). */
static void lf_write(lf_t *lf)
{
    if (lf->buf.len && lf->fd >= 0 && write_all(lf->fd, lf->buf.data, lf->buf.len) == 0)
        lf->size += lf->buf.len;
    if (lf->buf.cap > 4 * WRITE_AT)
        email_buf_free(&lf->buf); /* after a burst of large data: do not keep the memory */
    else
        email_buf_reset(&lf->buf);
}

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

/*
 * Opens (creating) a log file for appending and reads where it stands: its size, the counter of
 * its last line (numbering goes on from there), whether it lacks a final LF. -1 + errno.
 */
static int lf_open(const char *path, uint64_t *counter, uint64_t *size, bool *needs_lf)
{
    *counter = 0;
    *size = 0;
    *needs_lf = false;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, LOG_MODE);
    bool readable = fd >= 0;
    if (fd < 0 && errno == EACCES)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_MODE);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || !readable)
        return fd;
    *size = (uint64_t)st.st_size;
    char tail[8192];
    size_t want = *size < sizeof tail ? (size_t)*size : sizeof tail;
    ssize_t got = pread(fd, tail, want, st.st_size - (off_t)want);
    if (got != (ssize_t)want)
        return fd;
    if (tail[want - 1] != '\n')
        *needs_lf = true;
    /* whole lines, the last first; an unterminated end is not one of ours */
    size_t stop = want;
    while (stop > 0 && tail[stop - 1] != '\n')
        stop--;
    while (stop > 0) {
        size_t end = stop - 1; /* the LF */
        size_t start = end;
        while (start > 0 && tail[start - 1] != '\n')
            start--;
        if (start == 0 && want < *size)
            break; /* may be cut: not a whole line */
        uint64_t n = line_counter(tail + start, tail + end);
        if (n) {
            *counter = n;
            break;
        }
        stop = start;
    }
    return fd;
}

/* Something was appended to lf's buffer, which was empty before if was_empty. */
static void lf_appended(lf_t *lf, bool was_empty, bool *kick)
{
    if (!lf->buf.len)
        return;
    int64_t now = now_ms();
    if (was_empty) {
        lf->pending_since = now;
        *kick = true;
    }
    if (lf->buf.len >= WRITE_AT || now - lf->pending_since >= FLUSH_MS)
        lf_write(lf);
}

/* path -> path.1 -> ... -> path.KEEP (dropped), then a fresh path. */
static void lf_rotate(lf_t *lf)
{
    size_t n = strlen(lf->path) + 24;
    char *from = malloc(n), *to = malloc(n);
    if (!from || !to)
        goto out;
    for (int i = EMAIL_LOG_KEEP; i >= 1; i--) {
        if (i == 1)
            snprintf(from, n, "%s", lf->path);
        else
            snprintf(from, n, "%s.%d", lf->path, i - 1);
        snprintf(to, n, "%s.%d", lf->path, i);
        rename(from, to);
    }
    uint64_t counter, size;
    bool needs_lf;
    int fd = lf_open(lf->path, &counter, &size, &needs_lf);
    if (fd >= 0) {
        close(lf->fd);
        lf->fd = fd;
        lf->counter = counter;
        lf->size = size;
        if (needs_lf)
            email_buf_putc(&lf->buf, '\n');
    } else {
        lf->size = 0; /* keep writing where we were; try again after another limit's worth */
    }
out:
    free(from);
    free(to);
}

/* One line: "<counter> " + rest + LF. */
static void lf_line(lf_t *lf, const char *rest, size_t restlen, bool *kick)
{
    char num[32];
    int k = snprintf(num, sizeof num, "%llu ", (unsigned long long)(lf->counter + 1));
    size_t linelen = (size_t)k + restlen + 1;
    if (lf->rotates) {
        uint64_t used = lf->size + lf->buf.len;
        uint64_t limit = (uint64_t)atomic_load(&rotate_bytes);
        if (used > 0 && used + linelen > limit) {
            lf_write(lf);
            lf_rotate(lf);
            k = snprintf(num, sizeof num, "%llu ", (unsigned long long)(lf->counter + 1));
            linelen = (size_t)k + restlen + 1;
        }
    }
    bool was_empty = lf->buf.len == 0;
    if (email_buf_reserve(&lf->buf, linelen))
        return;
    lf->counter++;
    email_buf_append(&lf->buf, num, (size_t)k);
    email_buf_append(&lf->buf, rest, restlen);
    email_buf_putc(&lf->buf, '\n');
    lf_appended(lf, was_empty, kick);
}

static void lf_close(lf_t *lf)
{
    lf_write(lf);
    if (lf->fd >= 0)
        close(lf->fd);
    lf->fd = -1;
    free(lf->path);
    lf->path = NULL;
    email_buf_free(&lf->buf);
}

/* Length of the UTF-8 character at p (n bytes left) when it is valid and printable, else 0:
 * the C1 controls (U+0080..U+009F) are terminal escapes too (0x9B is CSI). */
static size_t printable_utf8(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xC2 && p[0] <= 0xDF   ? 2
                 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
                 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
                                                : 0;
    if (!len || len > n || !email_utf8_valid((const char *)p, len))
        return 0;
    return p[0] == 0xC2 && p[1] <= 0x9F ? 0 : len;
}

/*
 * Appends text as a log line may hold it (API.md section 6): control characters (C0, DEL, C1)
 * and bytes that are not UTF-8 as \xHH, '\' as "\\", and inside a quoted field (C > "...",
 * S < "...") '"' as "\"". So a server's text can neither end the line, nor close the quotes and
 * forge the rest of it ("220 x" fake ### ...), nor reach a terminal that tails the log; and a
 * reader can undo it, since every '\' starts an escape.
 *
 * The MIME in an extended log's message blocks is not escaped: it is no quoted field but the
 * message itself, byte for byte (ISO-2022-JP text holds ESC by design). A message holding lines
 * that look like ours cannot pass for the framing: a block's end is found by the byte count of
 * its closing line, and lines are numbered consecutively per file, so a closing line forged
 * inside the data takes the number the true closing line also has (the opening line's + 1),
 * and the numbering shows the forgery.
 */
static int escape_text(email_buf_t *b, const char *text, bool quoted)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text);
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t len = p[i] >= 0x80 ? printable_utf8(p + i, n - i) : 1;
        if (len > 1) {
            rc = email_buf_append(b, p + i, len);
            i += len;
            continue;
        }
        unsigned char c = p[i++];
        if (c < 0x20 || c >= 0x7F)
            rc = email_buf_printf(b, "\\x%02x", c);
        else if (c == '\\' || (quoted && c == '"'))
            rc = email_buf_printf(b, "\\%c", c);
        else
            rc = email_buf_putc(b, (char)c);
    }
    return rc;
}

/* "<time> <pid> <session> <event>", the event's text escaped (escape_text). */
static int format_rest(email_buf_t *b, const char *when, uint64_t session_id, char kind,
                       const char *text)
{
    if (email_buf_printf(b, "%s %ld %llu ", when, (long)getpid(),
                         (unsigned long long)session_id))
        return -1;
    bool quoted = kind == 'C' || kind == 'S';
    const char *open = kind == 'C' ? "C > \"" : kind == 'S' ? "S < \"" : "### ";
    if (email_buf_puts(b, open) || escape_text(b, text ? text : "", quoted))
        return -1;
    if (quoted && email_buf_putc(b, '"'))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The flusher thread: runs while something is buffered, writes everything once a second        */

static pthread_mutex_t fl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fl_cond = PTHREAD_COND_INITIALIZER;
static bool fl_running, fl_joinable, fl_pending, fl_stop;
static pthread_t fl_thread;

static void flush_all(void);

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fl_lock);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += FLUSH_MS / 1000;
        while (!fl_stop && pthread_cond_timedwait(&fl_cond, &fl_lock, &until) != ETIMEDOUT)
            ;
        if (fl_stop)
            break;
        fl_pending = false;
        pthread_mutex_unlock(&fl_lock);
        flush_all();
        pthread_mutex_lock(&fl_lock);
        if (!fl_pending)
            break; /* nothing was buffered since the flush began: rest until the next kick */
    }
    fl_running = false;
    pthread_mutex_unlock(&fl_lock);
    return NULL;
}

/* A buffer went from empty to non-empty: make sure the flusher runs. Called with no file lock. */
static void flusher_kick(void)
{
    pthread_mutex_lock(&fl_lock);
    fl_pending = true;
    if (!fl_running && !fl_stop) {
        if (fl_joinable) {
            pthread_join(fl_thread, NULL); /* it has left its loop: returns at once */
            fl_joinable = false;
        }
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* no signal is ever delivered to it */
        if (pthread_create(&fl_thread, NULL, flusher_main, NULL) == 0)
            fl_running = fl_joinable = true;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_mutex_unlock(&fl_lock);
}

/* ------------------------------------------------------------------------------------------- */
/* The global log and the callback                                                              */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lf_t g_lf = {.fd = -1};
static atomic_bool g_on;

/*
 * The callback gets each line where completion callbacks run (email_dispatch, or at once on the
 * loop's thread). Every change of callback starts a new generation: a line of an older one is
 * dropped, and email_set_log_callback waits until the invocations of older generations have
 * returned (cb_old) -- except those of its own thread, which are parked while it waits.
 */
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cond = PTHREAD_COND_INITIALIZER;
static void (*cb_fn)(const char *line, void *user_data);
static void *cb_data;
static uint64_t cb_counter; /* lines given to the callback since it was set */
static uint64_t cb_gen;     /* the callback's generation */
static unsigned cb_current; /* invocations of this generation running */
static unsigned cb_old;     /* invocations of older generations running, not parked */
static unsigned cb_parked;  /* older invocations whose thread waits in email_set_log_callback */
static _Thread_local unsigned cb_depth; /* invocations running on this thread */
static atomic_bool cb_on;

static atomic_uint_fast64_t next_session = 1;

uint64_t email_log_session_id(void)
{
    return atomic_fetch_add(&next_session, 1);
}

int email_log_active(const log_sink_t *sink)
{
    return sink || atomic_load(&g_on) || atomic_load(&cb_on);
}

/* ------------------------------------------------------------------------------------------- */
/* Where relative log paths go (4D resolves them against its Logs folder)                       */

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_dir; /* absolute; NULL: the current directory */

/* path if absolute, else base/path (base NULL: the current directory). NULL: out of memory. */
static char *join_path(const char *base, const char *path)
{
    char cwd[4096];
    if (path[0] == '/')
        return email_strdup(path);
    if (!base) {
        if (!getcwd(cwd, sizeof cwd))
            return email_strdup(path); /* the kernel resolves it then, against the same cwd */
        base = cwd;
    }
    email_buf_t b;
    email_buf_init(&b);
    if (email_buf_printf(&b, "%s/%s", base, path)) {
        email_buf_free(&b);
        return NULL;
    }
    return email_buf_steal(&b, NULL);
}

/* A log path made absolute now, at the call that takes it: later changes of the log directory
 * or of the current directory do not move a log already open. */
static char *absolute_path(const char *path)
{
    pthread_mutex_lock(&dir_lock);
    char *abs = join_path(log_dir, path);
    pthread_mutex_unlock(&dir_lock);
    return abs;
}

int email_set_log_directory(const char *dir)
{
    if (dir && !*dir)
        return email__error_set(EMAIL_EINVAL, "email_set_log_directory: the path is empty (NULL "
                                              "resets to the current directory)");
    char *abs = NULL;
    if (dir) {
        struct stat st;
        int rc = stat(dir, &st) != 0 ? EMAIL_EIO : !S_ISDIR(st.st_mode) ? EMAIL_EINVAL : 0;
        if (rc)
            return email__error_set(rc, "email_set_log_directory: \"%s\" %s%s", dir,
                                    rc == EMAIL_EIO ? "cannot be used: " : "is not a directory",
                                    rc == EMAIL_EIO ? strerror(errno) : "");
        if (!(abs = join_path(NULL, dir)))
            return email__error_set(EMAIL_ENOMEM, "email_set_log_directory: out of memory");
    }
    pthread_mutex_lock(&dir_lock);
    free(log_dir);
    log_dir = abs;
    pthread_mutex_unlock(&dir_lock);
    email__error_clear();
    return 0;
}

int email_set_log(const char *path)
{
    char msg[1024];
    if (path && !*path)
        return email__error_set(EMAIL_EINVAL, "email_set_log: the path is empty (NULL stops "
                                              "the log)");
    int fd = -1;
    char *copy = NULL;
    uint64_t counter = 0, size = 0;
    bool needs_lf = false;
    if (path) {
        copy = absolute_path(path);
        if (!copy)
            return email__error_set(EMAIL_ENOMEM, "email_set_log: out of memory");
        /* opened before the lock: the current log goes on if this one cannot be written */
        fd = open(copy, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_MODE);
        if (fd < 0) {
            int e = errno;
            email__error_set(EMAIL_EIO, "email_set_log: \"%s\" cannot be opened for writing: %s",
                             copy, strerror(e));
            free(copy);
            return EMAIL_EIO;
        }
        close(fd);
        fd = -1;
    }
    pthread_mutex_lock(&g_lock);
    lf_close(&g_lf); /* flushed first: reopening the same file numbers on from its last line */
    if (copy) {
        fd = lf_open(copy, &counter, &size, &needs_lf);
        if (fd < 0) {
            snprintf(msg, sizeof msg, "email_set_log: \"%s\" cannot be opened: %s", copy,
                     strerror(errno));
            free(copy);
            copy = NULL;
        }
    }
    g_lf.fd = fd;
    g_lf.path = copy;
    g_lf.rotates = true;
    g_lf.counter = counter;
    g_lf.size = size;
    if (needs_lf)
        email_buf_putc(&g_lf.buf, '\n');
    atomic_store(&g_on, fd >= 0);
    pthread_mutex_unlock(&g_lock);
    if (path && fd < 0)
        return email__error_set(EMAIL_EIO, "%s", msg);
    email__error_clear();
    return 0;
}

int email_set_log_callback(void (*cb)(const char *line, void *user_data), void *user_data)
{
    pthread_mutex_lock(&cb_lock);
    cb_fn = cb;
    cb_data = user_data;
    cb_counter = 0;
    cb_gen++;
    cb_old += cb_current;
    cb_current = 0;
    atomic_store(&cb_on, cb != NULL);
    /* Inside a log callback: its own invocations cannot end while it waits. They are parked,
     * and other threads waiting here from a callback do not wait for them either (no two of
     * them wait for each other); a caller outside any callback still waits for them. */
    unsigned mine = cb_depth;
    cb_old -= mine;
    cb_parked += mine;
    while (cb_old || (!mine && cb_parked))
        pthread_cond_wait(&cb_cond, &cb_lock);
    cb_parked -= mine;
    cb_old += mine;
    pthread_mutex_unlock(&cb_lock);
    email__error_clear();
    return 0;
}

typedef struct cb_line {
    uint64_t gen;
    char text[];
} cb_line_t;

/* Runs on the thread that delivers callbacks: the line, unless the callback changed since. */
static void cb_run(void *arg)
{
    cb_line_t *l = arg;
    pthread_mutex_lock(&cb_lock);
    void (*fn)(const char *, void *) = l->gen == cb_gen ? cb_fn : NULL;
    void *data = cb_data;
    if (fn)
        cb_current++;
    pthread_mutex_unlock(&cb_lock);
    if (fn) {
        cb_depth++;
        fn(l->text, data);
        cb_depth--;
        pthread_mutex_lock(&cb_lock);
        if (l->gen == cb_gen)
            cb_current--;
        else
            cb_old--;
        pthread_cond_broadcast(&cb_cond);
        pthread_mutex_unlock(&cb_lock);
    }
    free(l);
}

/* Numbers the line for the callback now and hands it to where callbacks run. */
static void cb_deliver(const char *rest)
{
    pthread_mutex_lock(&cb_lock);
    bool on = cb_fn != NULL;
    uint64_t n = on ? ++cb_counter : 0, gen = cb_gen;
    pthread_mutex_unlock(&cb_lock);
    if (!on)
        return;
    char num[24];
    int numlen = snprintf(num, sizeof num, "%llu ", (unsigned long long)n);
    size_t restlen = strlen(rest);
    cb_line_t *l = malloc(sizeof *l + (size_t)numlen + restlen + 1);
    if (!l)
        return;
    l->gen = gen;
    memcpy(l->text, num, (size_t)numlen);
    memcpy(l->text + numlen, rest, restlen + 1);
    runtime_deliver(cb_run, l);
}

/* ------------------------------------------------------------------------------------------- */
/* Extended logs                                                                                */

typedef struct msg_state {
    struct msg_state *next;
    uint64_t session, id;
    email_crlf_t crlf;
    uint64_t total; /* bytes of the message logged so far */
    uint64_t block; /* of them, in the block open now */
    char last;      /* the last byte logged */
} msg_state_t;

struct log_sink {
    pthread_mutex_t lock;
    atomic_int refs;
    dev_t dev;
    ino_t ino;
    lf_t lf;
    msg_state_t *msgs; /* begun and not ended, most recently used first */
    msg_state_t *open; /* the message whose block is open in the file, or NULL */
    log_sink_t *next;  /* in sinks */
};

/* Every open sink; guards the list, lookups by file, and the last release. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static log_sink_t *sinks;

/* A line of the sink's own ("### message ..."), under its lock. */
static void sink_note(log_sink_t *s, uint64_t session_id, bool *kick, const char *fmt, ...)
    EMAIL_PRINTF(4, 5);
static void sink_note(log_sink_t *s, uint64_t session_id, bool *kick, const char *fmt, ...)
{
    char text[200], when[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    format_time(when, sizeof when);
    email_buf_t rest;
    email_buf_init(&rest);
    if (format_rest(&rest, when, session_id, '#', text) == 0)
        lf_line(&s->lf, rest.data, rest.len, kick);
    email_buf_free(&rest);
}

static void block_open(log_sink_t *s, msg_state_t *m, bool continues, bool *kick)
{
    sink_note(s, m->session, kick, "message %llu %s", (unsigned long long)m->id,
              continues ? "continues" : "begins");
    s->open = m;
    m->block = 0;
}

static void block_close(log_sink_t *s, bool ended, bool *kick)
{
    msg_state_t *m = s->open;
    if (!m)
        return;
    s->open = NULL;
    if (!ended && m->block && m->last != '\n') {
        bool was_empty = s->lf.buf.len == 0;
        email_buf_putc(&s->lf.buf, '\n'); /* the closing line starts a line: one LF, uncounted */
        lf_appended(&s->lf, was_empty, kick);
    }
    sink_note(s, m->session, kick, "message %llu %s (%llu bytes)", (unsigned long long)m->id,
              ended ? "ends" : "interrupted", (unsigned long long)m->block);
}

static msg_state_t *msg_find(log_sink_t *s, uint64_t session_id)
{
    for (msg_state_t **p = &s->msgs; *p; p = &(*p)->next) {
        msg_state_t *m = *p;
        if (m->session == session_id) {
            *p = m->next; /* to the front */
            m->next = s->msgs;
            s->msgs = m;
            return m;
        }
    }
    return NULL;
}

static void msg_remove(log_sink_t *s, msg_state_t *m)
{
    for (msg_state_t **p = &s->msgs; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (s->open == m)
        s->open = NULL;
    free(m);
}

/* A fresh message of session_id (an older one of the same session is forgotten). */
static msg_state_t *msg_start(log_sink_t *s, uint64_t session_id, uint64_t message_id)
{
    msg_state_t *m = msg_find(s, session_id);
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m)
            return NULL;
        m->session = session_id;
        m->next = s->msgs;
        s->msgs = m;
        /* sessions that died in the middle of a message leave theirs: keep a bounded number */
        int n = 0;
        for (msg_state_t *q = s->msgs; q; q = q->next)
            if (++n > MAX_OPEN_MSGS && q->next && q->next != s->open) {
                msg_state_t *drop = q->next;
                q->next = drop->next;
                free(drop);
                break;
            }
    }
    m->id = message_id;
    email_crlf_init(&m->crlf);
    m->total = m->block = 0;
    m->last = 0;
    return m;
}

/* m's block open in the file (closing another one first). */
static void msg_make_open(log_sink_t *s, msg_state_t *m, bool *kick)
{
    if (s->open == m)
        return;
    block_close(s, false, kick);
    block_open(s, m, true, kick);
}

static void msg_append(log_sink_t *s, msg_state_t *m, const char *data, size_t n, bool *kick)
{
    bool was_empty = s->lf.buf.len == 0;
    size_t before = s->lf.buf.len;
    email_crlf_feed(&m->crlf, &s->lf.buf, data, n); /* on ENOMEM nothing is added */
    size_t added = s->lf.buf.len - before;
    if (!added)
        return;
    m->block += added;
    m->total += added;
    m->last = s->lf.buf.data[s->lf.buf.len - 1];
    lf_appended(&s->lf, was_empty, kick);
}

void email_log_data_begin(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    if (!sink)
        return;
    bool kick = false;
    pthread_mutex_lock(&sink->lock);
    block_close(sink, false, &kick); /* e.g. the previous attempt of the same message */
    msg_state_t *m = msg_start(sink, session_id, message_id);
    if (m)
        block_open(sink, m, false, &kick);
    pthread_mutex_unlock(&sink->lock);
    if (kick)
        flusher_kick();
}

void email_log_data(log_sink_t *sink, uint64_t session_id, const char *data, size_t n)
{
    if (!sink || !n)
        return;
    bool kick = false;
    pthread_mutex_lock(&sink->lock);
    msg_state_t *m = msg_find(sink, session_id);
    if (!m) { /* no email_log_data_begin: a message without an id */
        block_close(sink, false, &kick);
        if ((m = msg_start(sink, session_id, 0)))
            block_open(sink, m, false, &kick);
    } else {
        msg_make_open(sink, m, &kick);
    }
    if (m)
        msg_append(sink, m, data, n, &kick);
    pthread_mutex_unlock(&sink->lock);
    if (kick)
        flusher_kick();
}

void email_log_data_end(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    if (!sink)
        return;
    bool kick = false;
    pthread_mutex_lock(&sink->lock);
    msg_state_t *m = msg_find(sink, session_id);
    if (!m) { /* an empty message whose begin was never logged */
        block_close(sink, false, &kick);
        if ((m = msg_start(sink, session_id, message_id)))
            block_open(sink, m, false, &kick);
    } else {
        msg_make_open(sink, m, &kick);
    }
    if (m) {
        if (m->total && m->last != '\n')
            msg_append(sink, m, "\r\n", 2, &kick); /* as the end of data adds it */
        block_close(sink, true, &kick);
        msg_remove(sink, m);
    }
    pthread_mutex_unlock(&sink->lock);
    if (kick)
        flusher_kick();
}

log_sink_t *log_sink_open(const char *path, char *err, size_t errlen)
{
    if (!path || !*path) {
        snprintf(err, errlen, "the log file's path is empty");
        return NULL;
    }
    uint64_t counter, size;
    bool needs_lf;
    char *abs = absolute_path(path);
    if (!abs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&reg_lock); /* the file's last lines are all out: no sink of it closing */
    int fd = lf_open(abs, &counter, &size, &needs_lf);
    if (fd < 0) {
        snprintf(err, errlen, "\"%s\" cannot be opened for writing: %s", abs, strerror(errno));
        pthread_mutex_unlock(&reg_lock);
        free(abs);
        return NULL;
    }
    free(abs);
    struct stat st;
    if (fstat(fd, &st) == 0) {
        for (log_sink_t *s = sinks; s; s = s->next)
            if (s->dev == st.st_dev && s->ino == st.st_ino) {
                atomic_fetch_add(&s->refs, 1); /* registered sinks have refs > 0 */
                pthread_mutex_unlock(&reg_lock);
                close(fd);
                return s;
            }
    } else {
        memset(&st, 0, sizeof st);
    }
    log_sink_t *s = calloc(1, sizeof *s);
    if (!s || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        pthread_mutex_unlock(&reg_lock);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->lf.fd = fd;
    s->lf.counter = counter;
    s->lf.size = size;
    email_buf_init(&s->lf.buf);
    if (needs_lf)
        email_buf_putc(&s->lf.buf, '\n');
    s->next = sinks;
    sinks = s;
    pthread_mutex_unlock(&reg_lock);
    return s;
}

log_sink_t *log_sink_ref(log_sink_t *sink)
{
    if (sink)
        atomic_fetch_add(&sink->refs, 1);
    return sink;
}

void log_sink_release(log_sink_t *sink)
{
    if (!sink)
        return;
    /* under reg_lock: a log_sink_open of the same file waits until this one is written out */
    pthread_mutex_lock(&reg_lock);
    if (atomic_fetch_sub(&sink->refs, 1) != 1) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    for (log_sink_t **p = &sinks; *p; p = &(*p)->next)
        if (*p == sink) {
            *p = sink->next;
            break;
        }
    pthread_mutex_lock(&sink->lock);
    bool kick = false;
    block_close(sink, false, &kick); /* a message cut off: the file says so */
    while (sink->msgs)
        msg_remove(sink, sink->msgs);
    lf_close(&sink->lf);
    pthread_mutex_unlock(&sink->lock);
    pthread_mutex_unlock(&reg_lock);
    pthread_mutex_destroy(&sink->lock);
    free(sink);
}

/* ------------------------------------------------------------------------------------------- */
/* Events                                                                                       */

void email_log_event(log_sink_t *sink, uint64_t session_id, char kind, const char *text)
{
    bool to_global = atomic_load(&g_on), to_cb = atomic_load(&cb_on);
    if (!sink && !to_global && !to_cb)
        return;
    char when[40];
    format_time(when, sizeof when);
    email_buf_t rest;
    email_buf_init(&rest);
    if (format_rest(&rest, when, session_id, kind, text) != 0) {
        email_buf_free(&rest);
        return;
    }
    bool kick = false;
    if (to_global) {
        pthread_mutex_lock(&g_lock);
        if (g_lf.fd >= 0)
            lf_line(&g_lf, rest.data, rest.len, &kick);
        pthread_mutex_unlock(&g_lock);
    }
    if (sink) {
        pthread_mutex_lock(&sink->lock);
        block_close(sink, false, &kick);
        lf_line(&sink->lf, rest.data, rest.len, &kick);
        pthread_mutex_unlock(&sink->lock);
    }
    if (to_cb)
        cb_deliver(rest.data);
    email_buf_free(&rest);
    if (kick)
        flusher_kick();
}

void email_log_flush(log_sink_t *sink)
{
    if (atomic_load(&g_on)) {
        pthread_mutex_lock(&g_lock);
        lf_write(&g_lf);
        pthread_mutex_unlock(&g_lock);
    }
    if (sink) {
        pthread_mutex_lock(&sink->lock);
        lf_write(&sink->lf);
        pthread_mutex_unlock(&sink->lock);
    }
}

static void flush_all(void)
{
    pthread_mutex_lock(&g_lock);
    lf_write(&g_lf);
    pthread_mutex_unlock(&g_lock);
    pthread_mutex_lock(&reg_lock);
    for (log_sink_t *s = sinks; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        lf_write(&s->lf);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* At exit (or when the library is unloaded): the flusher stopped, every buffer written. */
__attribute__((destructor)) static void log_fini(void)
{
    pthread_mutex_lock(&fl_lock);
    fl_stop = true;
    pthread_cond_broadcast(&fl_cond);
    bool join = fl_joinable;
    fl_joinable = false;
    pthread_mutex_unlock(&fl_lock);
    if (join)
        pthread_join(fl_thread, NULL);
    flush_all();
}
