/*
 * The global settings of named sessions (EmailSetTimeOut, the CA file, the pool size, the log
 * files set for names before their start) and the library's version: set from any thread, read
 * by the facades (SMTP and POP3) when a session starts.
 */
#include "settings.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emailsession.h"
#include "error.h"
#include "util.h"

/* ErrorInfo for a refused setting. */
static void fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
}

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static int timeout_seconds = 60;
static int max_connections = 1;
static char *ca_file;

/* An extended log set for a name before its start (email_session_set_log_file). */
typedef struct log_preset {
    char *name, *path;
    struct log_preset *next;
} log_preset_t;

static log_preset_t *presets;

const char *email_version(void)
{
    return EMAIL_VERSION_STRING; /* the macros' own string: they agree by construction */
}

void email_set_timeout(int seconds)
{
    if (seconds < 1 || seconds > EMAIL_TIMEOUT_MAX) {
        fail(EMAIL_EINVAL, "email_set_timeout: %d is not a number of seconds from 1 to %d",
             seconds, EMAIL_TIMEOUT_MAX);
        return;
    }
    pthread_mutex_lock(&settings_lock);
    timeout_seconds = seconds;
    pthread_mutex_unlock(&settings_lock);
    email__error_clear();
}

int email_set_max_connections(int n)
{
    if (n < 1 || n > EMAIL_MAX_CONNECTIONS) {
        fail(EMAIL_EINVAL, "email_set_max_connections: %d is not 1 to %d", n,
             EMAIL_MAX_CONNECTIONS);
        return EMAIL_EINVAL;
    }
    pthread_mutex_lock(&settings_lock);
    max_connections = n;
    pthread_mutex_unlock(&settings_lock);
    email__error_clear();
    return 0;
}

int email_get_timeout(void)
{
    pthread_mutex_lock(&settings_lock);
    int s = timeout_seconds;
    pthread_mutex_unlock(&settings_lock);
    return s;
}

int email_set_ca_file(const char *pem_path)
{
    char *copy = NULL;
    if (pem_path) {
        if (access(pem_path, R_OK) != 0) {
            fail(EMAIL_EIO, "email_set_ca_file: \"%s\" cannot be read", pem_path);
            return EMAIL_EIO;
        }
        if (!(copy = email__strdup(pem_path))) {
            fail(EMAIL_ENOMEM, "email_set_ca_file: out of memory");
            return EMAIL_ENOMEM;
        }
    }
    pthread_mutex_lock(&settings_lock);
    free(ca_file);
    ca_file = copy;
    pthread_mutex_unlock(&settings_lock);
    email__error_clear();
    return 0;
}

void email__settings_get(int *max, char **ca)
{
    pthread_mutex_lock(&settings_lock);
    *max = max_connections;
    *ca = email__strdup(ca_file); /* NULL when none (or out of memory: the system store only) */
    pthread_mutex_unlock(&settings_lock);
}

static log_preset_t **find_preset_locked(const char *name)
{
    log_preset_t **p = &presets;
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

static void preset_free(log_preset_t *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->path);
    free(p);
}

int email__settings_set_log_preset(const char *name, const char *path)
{
    log_preset_t *fresh = NULL;
    if (path) {
        fresh = calloc(1, sizeof *fresh);
        if (!fresh || !(fresh->name = email__strdup(name)) ||
            !(fresh->path = email__strdup(path))) {
            preset_free(fresh);
            return EMAIL_ENOMEM;
        }
    }
    pthread_mutex_lock(&settings_lock);
    log_preset_t **p = find_preset_locked(name), *old = *p;
    if (old)
        *p = old->next;
    if (fresh) {
        fresh->next = presets;
        presets = fresh;
    }
    pthread_mutex_unlock(&settings_lock);
    preset_free(old);
    return 0;
}

char *email__settings_log_preset(const char *name, bool take)
{
    pthread_mutex_lock(&settings_lock);
    log_preset_t **p = find_preset_locked(name), *preset = *p;
    char *path = preset ? email__strdup(preset->path) : NULL;
    if (preset && take)
        *p = preset->next;
    pthread_mutex_unlock(&settings_lock);
    if (take)
        preset_free(preset);
    return path;
}

void email__settings_reset(void)
{
    pthread_mutex_lock(&settings_lock);
    free(ca_file);
    ca_file = NULL;
    log_preset_t *p = presets;
    presets = NULL;
    pthread_mutex_unlock(&settings_lock);
    while (p) {
        log_preset_t *next = p->next;
        preset_free(p);
        p = next;
    }
}
