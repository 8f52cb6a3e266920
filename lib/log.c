/*
 * The conversation log in 4D's format:
 *   <counter> <YYYY-MM-DDTHH:MM:SS.mmm> <pid> <session id> <event>
 * written to the global log file (rotated), the log callback and the extended logs (sinks).
 * The engine never hands secrets here: AUTH payloads arrive already masked ("****").
 *
 * Events are formatted outside the locks, then numbered and buffered under the lock of each file
 * they go to; log_file.c writes the buffers out (on libuv's thread pool from the loop's thread,
 * never on the loop's thread itself) and rotates the global log. The callback is called with no
 * lock held, where completion callbacks run (email__runtime_deliver).
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
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
#include "log_file.h"
#include "runtime.h"
#include "util.h"

#define MAX_OPEN_MSGS 16 /* messages begun and not ended, remembered per sink */

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

/* Length of the UTF-8 character at p (n bytes left) when it is valid and printable, else 0:
 * the C1 controls (U+0080..U+009F) are terminal escapes too (0x9B is CSI). */
static size_t printable_utf8(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xC2 && p[0] <= 0xDF   ? 2
                 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
                 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
                                                : 0;
    if (!len || len > n || !email__utf8_valid((const char *)p, len))
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
            rc = email__buf_append(b, p + i, len);
            i += len;
            continue;
        }
        unsigned char c = p[i++];
        if (c < 0x20 || c >= 0x7F)
            rc = email__buf_printf(b, "\\x%02x", c);
        else if (c == '\\' || (quoted && c == '"'))
            rc = email__buf_printf(b, "\\%c", c);
        else
            rc = email__buf_putc(b, (char)c);
    }
    return rc;
}

/* "<time> <pid> <session> <event>", the event's text escaped (escape_text). */
static int format_rest(email_buf_t *b, const char *when, uint64_t session_id, char kind,
                       const char *text)
{
    if (email__buf_printf(b, "%s %ld %llu ", when, (long)getpid(),
                         (unsigned long long)session_id))
        return -1;
    bool quoted = kind == 'C' || kind == 'S';
    const char *open = kind == 'C' ? "C > \"" : kind == 'S' ? "S < \"" : "### ";
    if (email__buf_puts(b, open) || escape_text(b, text ? text : "", quoted))
        return -1;
    if (quoted && email__buf_putc(b, '"'))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The global log and the callback                                                              */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static log_sink_t *g_file; /* the global log's file, or NULL */
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

uint64_t email__log_session_id(void)
{
    return atomic_fetch_add(&next_session, 1);
}

int email__log_active(const log_sink_t *sink)
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
        return email__strdup(path);
    if (!base) {
        if (!getcwd(cwd, sizeof cwd))
            return email__strdup(path); /* the kernel resolves it then, against the same cwd */
        base = cwd;
    }
    email_buf_t b;
    email__buf_init(&b);
    if (email__buf_printf(&b, "%s/%s", base, path)) {
        email__buf_free(&b);
        return NULL;
    }
    return email__buf_steal(&b, NULL);
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


/*
 * The old log's buffered lines are written before this returns, except on the loop's thread
 * (a callback on the caller's loop or with EMAIL_CALLBACK_LOOP_THREAD), which cannot wait for
 * the thread pool: there they are handed to it, in order, and reach the file shortly after.
 */
int email_set_log(const char *path)
{
    if (path && !*path)
        return email__error_set(EMAIL_EINVAL, "email_set_log: the path is empty (NULL stops "
                                              "the log)");
    log_sink_t *f = NULL;
    if (path) {
        char err[1024];
        char *abs = absolute_path(path);
        if (!abs)
            return email__error_set(EMAIL_ENOMEM, "email_set_log: out of memory");
        /* opened before the change: the current log goes on if this one cannot be written */
        f = email__log_file_open(abs, true, err, sizeof err);
        free(abs);
        if (!f)
            return email__error_set(strcmp(err, "out of memory") ? EMAIL_EIO : EMAIL_ENOMEM,
                                    "email_set_log: %s", err);
    }
    pthread_mutex_lock(&g_lock);
    log_sink_t *old = g_file;
    g_file = f;
    atomic_store(&g_on, f != NULL);
    pthread_mutex_unlock(&g_lock);
    /* flushed even when f is old itself: the same file set again numbers on */
    email__log_file_flush(old);
    email__log_file_release(old, NULL);
    email__error_clear();
    return 0;
}

int email_set_log_callback(email_log_cb cb, void *user_data)
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
    email__runtime_deliver(cb_run, l);
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

/* A line of the sink's own ("### message ..."), under its lock. */
static void sink_note(log_sink_t *s, uint64_t session_id, int *todo, const char *fmt, ...)
    EMAIL_PRINTF(4, 5);
static void sink_note(log_sink_t *s, uint64_t session_id, int *todo, const char *fmt, ...)
{
    char text[200], when[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    format_time(when, sizeof when);
    email_buf_t rest;
    email__buf_init(&rest);
    if (format_rest(&rest, when, session_id, '#', text) == 0)
        email__log_file_line(s, rest.data, rest.len, todo);
    email__buf_free(&rest);
}

static void block_open(log_sink_t *s, msg_state_t *m, bool continues, int *todo)
{
    sink_note(s, m->session, todo, "message %llu %s", (unsigned long long)m->id,
              continues ? "continues" : "begins");
    s->open = m;
    m->block = 0;
}

static void block_close(log_sink_t *s, bool ended, int *todo)
{
    msg_state_t *m = s->open;
    if (!m)
        return;
    s->open = NULL;
    if (!ended && m->block && m->last != '\n') {
        bool was_empty = s->buf.len == 0;
        email__buf_putc(&s->buf, '\n'); /* the closing line starts a line: one LF, uncounted */
        email__log_file_appended(s, was_empty, todo);
    }
    sink_note(s, m->session, todo, "message %llu %s (%llu bytes)", (unsigned long long)m->id,
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
    email__crlf_init(&m->crlf);
    m->total = m->block = 0;
    m->last = 0;
    return m;
}

/* m's block open in the file (closing another one first). */
static void msg_make_open(log_sink_t *s, msg_state_t *m, int *todo)
{
    if (s->open == m)
        return;
    block_close(s, false, todo);
    block_open(s, m, true, todo);
}

static void msg_append(log_sink_t *s, msg_state_t *m, const char *data, size_t n, int *todo)
{
    bool was_empty = s->buf.len == 0;
    size_t before = s->buf.len;
    email__crlf_feed(&m->crlf, &s->buf, data, n); /* on ENOMEM nothing is added */
    size_t added = s->buf.len - before;
    if (!added)
        return;
    m->block += added;
    m->total += added;
    m->last = s->buf.data[s->buf.len - 1];
    email__log_file_appended(s, was_empty, todo);
}

void email__log_data_begin(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    if (!sink)
        return;
    int todo = 0;
    pthread_mutex_lock(&sink->lock);
    block_close(sink, false, &todo); /* e.g. the previous attempt of the same message */
    msg_state_t *m = msg_start(sink, session_id, message_id);
    if (m)
        block_open(sink, m, false, &todo);
    pthread_mutex_unlock(&sink->lock);
    email__log_file_after(todo);
}

void email__log_data(log_sink_t *sink, uint64_t session_id, const char *data, size_t n)
{
    if (!sink || !n)
        return;
    int todo = 0;
    pthread_mutex_lock(&sink->lock);
    msg_state_t *m = msg_find(sink, session_id);
    if (!m) { /* no email__log_data_begin: a message without an id */
        block_close(sink, false, &todo);
        if ((m = msg_start(sink, session_id, 0)))
            block_open(sink, m, false, &todo);
    } else {
        msg_make_open(sink, m, &todo);
    }
    if (m)
        msg_append(sink, m, data, n, &todo);
    pthread_mutex_unlock(&sink->lock);
    email__log_file_after(todo);
}

void email__log_data_end(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    if (!sink)
        return;
    int todo = 0;
    pthread_mutex_lock(&sink->lock);
    msg_state_t *m = msg_find(sink, session_id);
    if (!m) { /* an empty message whose begin was never logged */
        block_close(sink, false, &todo);
        if ((m = msg_start(sink, session_id, message_id)))
            block_open(sink, m, false, &todo);
    } else {
        msg_make_open(sink, m, &todo);
    }
    if (m) {
        if (m->total && m->last != '\n')
            msg_append(sink, m, "\r\n", 2, &todo); /* as the end of data adds it */
        block_close(sink, true, &todo);
        msg_remove(sink, m);
    }
    pthread_mutex_unlock(&sink->lock);
    email__log_file_after(todo);
}


log_sink_t *email__log_sink_open(const char *path, char *err, size_t errlen)
{
    if (!path || !*path) {
        snprintf(err, errlen, "the log file's path is empty");
        return NULL;
    }
    char *abs = absolute_path(path);
    if (!abs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log_sink_t *s = email__log_file_open(abs, false, err, errlen);
    free(abs);
    return s;
}

/* The last reference is gone: a message cut off says so in the file. Under the sink's lock. */
static void sink_finalize(log_sink_t *sink)
{
    int todo = 0;
    block_close(sink, false, &todo);
    while (sink->msgs)
        msg_remove(sink, sink->msgs);
}

void email__log_sink_release(log_sink_t *sink)
{
    email__log_file_release(sink, sink_finalize);
}

/* ------------------------------------------------------------------------------------------- */
/* Events                                                                                       */

void email__log_event(log_sink_t *sink, uint64_t session_id, char kind, const char *text)
{
    bool to_global = atomic_load(&g_on), to_cb = atomic_load(&cb_on);
    if (!sink && !to_global && !to_cb)
        return;
    char when[40];
    format_time(when, sizeof when);
    email_buf_t rest;
    email__buf_init(&rest);
    if (format_rest(&rest, when, session_id, kind, text) != 0) {
        email__buf_free(&rest);
        return;
    }
    int todo = 0;
    if (to_global) {
        pthread_mutex_lock(&g_lock);
        if (g_file) {
            pthread_mutex_lock(&g_file->lock);
            email__log_file_line(g_file, rest.data, rest.len, &todo);
            pthread_mutex_unlock(&g_file->lock);
        }
        pthread_mutex_unlock(&g_lock);
    }
    if (sink) {
        pthread_mutex_lock(&sink->lock);
        block_close(sink, false, &todo);
        email__log_file_line(sink, rest.data, rest.len, &todo);
        pthread_mutex_unlock(&sink->lock);
    }
    if (to_cb)
        cb_deliver(rest.data);
    email__buf_free(&rest);
    email__log_file_after(todo);
}

void email__log_flush(log_sink_t *sink)
{
    if (atomic_load(&g_on)) {
        pthread_mutex_lock(&g_lock);
        if (g_file) {
            pthread_mutex_lock(&g_file->lock);
            email__log_file_seal(g_file);
            pthread_mutex_unlock(&g_file->lock);
        }
        pthread_mutex_unlock(&g_lock);
    }
    email__log_file_flush(sink);
}
