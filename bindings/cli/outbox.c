/*
 * emailsession-send: the outbox (--queue, --flush, --list), msmtpq's way: --queue only puts the
 * message on disk, and nothing goes out before a --flush.
 */
#include <emailsession-uv.h>
#include <emailsession.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "exitcodes.h"
#include "outbox.h"
#include "send.h"

/* The library's loop for --queue. Static: the work posted on it stays reachable until exit. */
static uv_loop_t queue_loop;

/* Makes the folders above path (0700, as the library makes the outbox itself); what fails here
 * is reported by email_set_outbox, naming the outbox. */
static void make_parents(char *path)
{
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", a, b);
    return s;
}

/* The outbox: --outbox, the account's, else $XDG_DATA_HOME/emailsession/outbox (an absolute
 * XDG_DATA_HOME only, as the XDG specification says), else ~/.local/share/emailsession/outbox. */
static int open_outbox(const cli_settings_t *s, char **dir)
{
    const char *data = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (s->outbox)
        *dir = strdup(s->outbox);
    else if (data && data[0] == '/')
        *dir = join(data, "/emailsession/outbox");
    else if (home && *home)
        *dir = join(home, "/.local/share/emailsession/outbox");
    else
        return cli_fail(EX_USAGE, "no outbox: HOME is not set; give --outbox or outbox in the "
                                  "account file");
    if (!*dir)
        return cli_fail(EX_OSERR, "out of memory");
    if (!s->outbox)
        make_parents(*dir);
    if (email_set_outbox(*dir) != 0) {
        free(*dir);
        *dir = NULL;
        return cli_fail(cli_exit_code(email_last_error(), 0), "%s", email_error_info());
    }
    return 0;
}

/* An asynchronous send returns once its entry is on disk, and then starts on the library's
 * loop. On our own loop, which we never run, it never starts: the message waits in the outbox
 * for --flush, whatever the network is, and no connection can leave its end of data unanswered
 * (an entry marked of unknown outcome) when we exit. The entry's claim dies with the process.
 * The outbox is opened before the message is made: a message made earlier could take the id of
 * an entry (the library then refuses it). */
int cli_queue_prepare(cli_settings_t *s)
{
    int rc = uv_loop_init(&queue_loop);
    if (rc)
        return cli_fail(EX_OSERR, "cannot make an event loop: %s", uv_strerror(rc));
    if (email_use_loop(&queue_loop) != 0)
        return cli_fail(EX_SOFTWARE, "%s", email_error_info());
    char *dir = NULL;
    if ((rc = open_outbox(s, &dir)) != 0)
        return rc;
    free(s->outbox);
    s->outbox = dir;
    return 0;
}

int cli_queue(const cli_settings_t *s, bool verbose, const cli_send_t *what)
{
    email_transporter_t *t = NULL;
    int rc = cli_transporter_new(s, &t);
    if (rc)
        return rc;
    uint64_t id = 0;
    int err = what->message ? email_transporter_send_async(t, what->message, NULL, NULL, &id)
                            : email_transporter_send_mime_async(
                                  t, what->from, (const char *const *)what->rcpts->v,
                                  what->mime, what->len, NULL, NULL, &id);
    if (err)
        rc = cli_fail(cli_exit_code(err, 0), "not queued: %s", email_error_info());
    else if (verbose)
        fprintf(stderr, CLI_NAME ": queued as message %" PRIu64 " in %s\n", id, s->outbox);
    /* t is not freed: that would need the loop to run, and the send would start */
    return rc;
}

/* The outcomes of a --flush, counted on the library's thread. */
typedef struct flush {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, worst;
    cli_watch_t *watch;
} flush_t;

static void print_outcome(uint64_t id, const email_status_t *st)
{
    if (st->success)
        printf("message %" PRIu64 ": sent\n", id);
    else if (st->status)
        printf("message %" PRIu64 ": not sent: the server replied %d%s%s: %s\n", id, st->status,
               *st->enhanced_code ? " " : "", st->enhanced_code, st->status_text);
    else
        printf("message %" PRIu64 ": not sent: %s\n", id, st->status_text);
    fflush(stdout);
    if (st->error == EMAIL_EUNKNOWN)
        fprintf(stderr, CLI_NAME ": message %" PRIu64 " may have been delivered: --flush "
                        "--resend-unknown sends it again, --drop-unknown forgets it\n", id);
}

static void flushed(uint64_t id, const email_status_t *st, void *user_data)
{
    flush_t *f = user_data;
    pthread_mutex_lock(&f->lock);
    if (f->watch->drawn) { /* the bar's line ends before the outcome's */
        fputc('\n', stderr);
        f->watch->drawn = false;
    }
    print_outcome(id, st);
    f->worst = cli_exit_worst(f->worst, st->success ? 0 : cli_exit_code(st->error, st->status));
    f->done++;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* Whom the entries of s's server are listed for: its user, or its host (as the library names
 * a transporter's entries). NULL without a server: all. */
static const char *owner(const cli_settings_t *s)
{
    return s->user ? s->user : s->host;
}

/* What is left after a --flush, and what was found damaged, said on stderr. */
static void say_what_waits(const cli_settings_t *s, const char *dir)
{
    int left = email_outbox_list(owner(s), NULL, NULL);
    if (left > 0)
        fprintf(stderr, CLI_NAME ": %d message%s still wait%s in %s (--list)\n", left,
                left > 1 ? "s" : "", left > 1 ? "" : "s", dir);
    int damaged = email_outbox_corrupt_count();
    if (damaged > 0)
        fprintf(stderr, CLI_NAME ": %d damaged entr%s set aside in %s/corrupt\n", damaged,
                damaged > 1 ? "ies" : "y", dir);
}

int cli_flush(const cli_settings_t *s, bool verbose, int flags)
{
    char *dir = NULL;
    email_transporter_t *t = NULL;
    int rc = open_outbox(s, &dir);
    if (rc == 0)
        rc = cli_transporter_new(s, &t);
    if (rc) {
        free(dir);
        return rc;
    }
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD); /* outcomes counted under f.lock */
    cli_watch_t watch;
    cli_watch_start(t, verbose, &watch);
    flush_t f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, &watch};
    int n = email_transporter_outbox_resume(t, flags, flushed, &f);
    if (n < 0)
        rc = cli_fail(cli_exit_code(n, 0), "%s", email_error_info());
    pthread_mutex_lock(&f.lock);
    while (f.done < n)
        pthread_cond_wait(&f.cond, &f.lock);
    pthread_mutex_unlock(&f.lock);
    email_transporter_free(t);
    cli_watch_stop(&watch);
    if (rc == 0) {
        rc = f.worst;
        say_what_waits(s, dir);
    }
    free(dir);
    return rc;
}

static void listed(uint64_t id, const char *user, const char *subject, int64_t queued,
                   void *user_data)
{
    (void)user_data;
    time_t when = (time_t)queued;
    struct tm tm;
    char stamp[32] = "?";
    if (localtime_r(&when, &tm))
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    /* a whole message's subject is not kept apart from its text */
    printf("%" PRIu64 "\t%s\t%s\t%s\n", id, stamp, user ? user : "-", subject ? subject : "-");
}

int cli_list(const cli_settings_t *s)
{
    char *dir = NULL;
    int rc = open_outbox(s, &dir);
    if (rc)
        return rc;
    int n = email_outbox_list(owner(s), listed, NULL);
    if (n < 0)
        rc = cli_fail(cli_exit_code(n, 0), "%s", email_error_info());
    else if (fflush(stdout) != 0)
        rc = cli_fail(EX_OSERR, "cannot write on standard output");
    free(dir);
    return rc;
}
