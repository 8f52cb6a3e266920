/*
 * emailsession-send: the transporter, the conversation log (-v), the progress bar, and what is
 * said when a send fails (also for --queue and --flush, in outbox.c).
 */
#include <emailsession.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "exitcodes.h"
#include "send.h"

/* Below this, a message goes out too fast for a bar to say anything. */
#define PROGRESS_MIN_BYTES (512u * 1024u)
#define PROGRESS_WIDTH 40

/* Runs on the library's thread (EMAIL_CALLBACK_LOOP_THREAD): lines appear as they happen. */
static void show_log_line(const char *line, void *user_data)
{
    (void)user_data;
    fprintf(stderr, "%s\n", line);
}

/* One bar per message: a --flush sends several, one after the other. */
static void show_progress(uint64_t message_id, uint64_t sent, uint64_t total, void *user_data)
{
    cli_watch_t *p = user_data;
    if (total < PROGRESS_MIN_BYTES)
        return;
    if (p->drawn && message_id != p->message_id) {
        fputc('\n', stderr);
        p->drawn = false;
    }
    p->message_id = message_id;
    int percent = (int)(sent * 100 / total);
    if (p->drawn && percent == p->last_percent)
        return;
    int filled = percent * PROGRESS_WIDTH / 100;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %.1f/%.1f MiB", filled,
            "########################################", PROGRESS_WIDTH - filled, "", percent,
            (double)sent / 1048576.0, (double)total / 1048576.0);
    p->last_percent = percent;
    p->drawn = true;
}

/* The server's words and, for a failure that was not the server's, the chain of causes. */
void cli_report(const email_status_t *st)
{
    if (st->status)
        fprintf(stderr, CLI_NAME ": not sent: the server replied %d%s%s: %s\n", st->status,
                *st->enhanced_code ? " " : "", st->enhanced_code, st->status_text);
    else
        fprintf(stderr, CLI_NAME ": not sent: %s\n", st->status_text);
    for (size_t i = 0; i < st->rejected; i++) {
        int code = 0;
        const char *who = email_status_recipient(st, i, &code);
        const char *text = email_status_recipient_text(st, i);
        fprintf(stderr, "  refused recipient %s: %d %s\n", who ? who : "?", code,
                text ? text : "");
    }
    for (size_t i = 0; i < email_status_error_count(st); i++) {
        const char *component = NULL, *text = email_status_error(st, i, NULL, &component);
        fprintf(stderr, "  cause (%s): %s\n", component ? component : "?", text ? text : "");
    }
    if (st->error == EMAIL_EUNKNOWN)
        fprintf(stderr, CLI_NAME ": the message may have been delivered: check before sending "
                        "it again\n");
}

int cli_transporter_new(const cli_settings_t *s, email_transporter_t **t)
{
    email_server_t srv;
    email_server_init(&srv);
    if (!s->host)
        return cli_fail(EX_USAGE, "no server: give --server, or host in the account file");
    srv.host = s->host;
    srv.port = s->port > 0 ? s->port : 0;
    srv.security = s->security >= 0 ? s->security : EMAIL_SECURITY_STARTTLS;
    srv.user = s->user;
    srv.password = s->password;
    srv.ca_file = s->ca_file;
    srv.helo_name = s->helo;
    srv.keep_alive = false; /* one message: QUIT right after it */
    if (!(*t = email_transporter_new(&srv)))
        return cli_fail(email_last_error() == EMAIL_EINVAL ? EX_USAGE
                                                           : cli_exit_code(email_last_error(), 0),
                        "%s", email_error_info());
    return 0;
}

void cli_watch_start(email_transporter_t *t, bool verbose, cli_watch_t *w)
{
    memset(w, 0, sizeof *w);
    w->verbose = verbose;
    if (verbose || isatty(2))
        email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    if (verbose)
        email_set_log_callback(show_log_line, NULL);
    else if (isatty(2))
        email_transporter_set_progress(t, show_progress, w);
}

void cli_watch_stop(cli_watch_t *w)
{
    if (w->verbose)
        email_set_log_callback(NULL, NULL);
    if (w->drawn)
        fputc('\n', stderr);
    w->drawn = false;
}

int cli_send(const cli_settings_t *s, bool verbose, const cli_send_t *what)
{
    email_transporter_t *t;
    int rc = cli_transporter_new(s, &t);
    if (rc)
        return rc;
    cli_watch_t watch;
    cli_watch_start(t, verbose, &watch);
    email_status_t st = {0};
    if (what->message)
        email_transporter_send(t, what->message, &st);
    else
        email_transporter_send_mime(t, what->from, (const char *const *)what->rcpts->v, what->mime,
                                    what->len, &st);
    email_transporter_free(t); /* after it, no callback runs any more */
    cli_watch_stop(&watch);
    rc = st.success ? 0 : cli_exit_code(st.error, st.status);
    if (!st.success)
        cli_report(&st);
    email_status_clear(&st);
    return rc;
}
