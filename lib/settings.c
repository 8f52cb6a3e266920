/*
 * The global settings of named sessions (EmailSetTimeOut, the CA file, the pool size) and the
 * library's version: set from any thread, read by the facade when a session starts.
 */
#include "settings.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
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

void email__settings_reset(void)
{
    pthread_mutex_lock(&settings_lock);
    free(ca_file);
    ca_file = NULL;
    pthread_mutex_unlock(&settings_lock);
}
