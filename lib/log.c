/*
 * The conversation log in 4D's format, written to the global log file and the log callback.
 *   <counter> <YYYY-MM-DDTHH:MM:SS.mmm> <pid> <session id> <event>
 * The engine never hands secrets here: AUTH payloads arrive already masked ("****").
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "emailsession.h"
#include "util.h"

#define LOG_ROTATE_BYTES (10L * 1024 * 1024)
#define LOG_KEEP 5 /* path.1 ... path.5 */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static char *log_path;
static uint64_t log_counter;
static long log_size;
static void (*log_cb)(const char *line, void *user_data);
static void *log_cb_data;
static uint64_t cb_counter; /* lines given to the callback */
static atomic_int log_on;
static atomic_uint_fast64_t next_session = 1;

uint64_t email_log_session_id(void)
{
    return atomic_fetch_add(&next_session, 1);
}

int email_log_active(const log_sink_t *sink)
{
    return sink || atomic_load(&log_on);
}

static void update_active(void)
{
    atomic_store(&log_on, log_file != NULL || log_cb != NULL);
}

/* Opens path for appending; the counter goes on from the lines already there. */
static FILE *open_log(const char *path, uint64_t *counter, long *size)
{
    FILE *f = fopen(path, "a+");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    *counter = 0;
    if (*size > 0) {
        rewind(f);
        int ch;
        while ((ch = getc(f)) != EOF)
            if (ch == '\n')
                (*counter)++;
        fseek(f, 0, SEEK_END);
    }
    return f;
}

static void rotate(void)
{
    char from[4096], to[4096];
    fclose(log_file);
    log_file = NULL;
    for (int i = LOG_KEEP; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%s", log_path);
        else
            snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
        snprintf(to, sizeof to, "%s.%d", log_path, i);
        rename(from, to);
    }
    log_file = open_log(log_path, &log_counter, &log_size);
}

int email_set_log(const char *path)
{
    FILE *f = NULL;
    uint64_t counter = 0;
    long size = 0;
    char *copy = NULL;
    if (path) {
        if (!*path)
            return EMAIL_EINVAL;
        copy = email_strdup(path);
        if (!copy)
            return EMAIL_ENOMEM;
        f = open_log(path, &counter, &size);
        if (!f) {
            free(copy);
            return EMAIL_EIO;
        }
    }
    pthread_mutex_lock(&log_lock);
    if (log_file)
        fclose(log_file);
    free(log_path);
    log_file = f;
    log_path = copy;
    log_counter = counter;
    log_size = size;
    update_active();
    pthread_mutex_unlock(&log_lock);
    return 0;
}

int email_set_log_callback(void (*cb)(const char *line, void *user_data), void *user_data)
{
    pthread_mutex_lock(&log_lock);
    log_cb = cb;
    log_cb_data = user_data;
    update_active();
    pthread_mutex_unlock(&log_lock);
    return 0;
}

/* The event text with its direction marker: C > "...", S < "...", ### ... */
static void format_event(email_buf_t *b, char kind, const char *text)
{
    if (kind == 'C')
        email_buf_printf(b, "C > \"%s\"", text);
    else if (kind == 'S')
        email_buf_printf(b, "S < \"%s\"", text);
    else
        email_buf_printf(b, "### %s", text);
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

void email_log_event(log_sink_t *sink, uint64_t session_id, char kind, const char *text)
{
    (void)sink;
    if (!email_log_active(NULL))
        return;
    email_buf_t event, line;
    email_buf_init(&event);
    email_buf_init(&line);
    format_event(&event, kind, text);
    char when[40];
    format_time(when, sizeof when);

    pthread_mutex_lock(&log_lock);
    if (log_file) {
        if (log_size >= LOG_ROTATE_BYTES)
            rotate();
        if (log_file) {
            int n = fprintf(log_file, "%llu %s %ld %llu %s\n",
                            (unsigned long long)++log_counter, when, (long)getpid(),
                            (unsigned long long)session_id, event.data ? event.data : "");
            if (n > 0)
                log_size += n;
            fflush(log_file);
        }
    }
    void (*cb)(const char *, void *) = log_cb;
    void *cb_data = log_cb_data;
    uint64_t cb_line = cb ? ++cb_counter : 0;
    pthread_mutex_unlock(&log_lock);

    if (cb) {
        email_buf_printf(&line, "%llu %s %ld %llu %s", (unsigned long long)cb_line, when,
                         (long)getpid(), (unsigned long long)session_id,
                         event.data ? event.data : "");
        if (line.data)
            cb(line.data, cb_data);
    }
    email_buf_free(&event);
    email_buf_free(&line);
}

void email_log_data(log_sink_t *sink, uint64_t session_id, const char *data, size_t n)
{
    (void)sink, (void)session_id, (void)data, (void)n;
}

void email_log_data_begin(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    (void)sink, (void)session_id, (void)message_id;
}

void email_log_data_end(log_sink_t *sink, uint64_t session_id, uint64_t message_id)
{
    (void)sink, (void)session_id, (void)message_id;
}

void email_log_flush(log_sink_t *sink)
{
    (void)sink;
}

log_sink_t *log_sink_open(const char *path, char *err, size_t errlen)
{
    snprintf(err, errlen, "extended logs are not implemented yet (%s)", path);
    return NULL;
}

log_sink_t *log_sink_ref(log_sink_t *sink)
{
    return sink;
}

void log_sink_release(log_sink_t *sink)
{
    (void)sink;
}
