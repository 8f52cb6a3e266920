/*
 * Starting named sessions as WLanguage does, against real servers on 127.0.0.1 (aiosmtpd with
 * AUTH, smtp-sink) and scripted.py: the start connects, secures and authenticates before it
 * returns in both modes; the non-blocking start (email_start_smtp_session_async) and the
 * messages sent before its verdict; an extended log set before the start; the ids of prebuilt
 * messages (email_send_mime_id).
 *
 * Callbacks run through email_dispatch() in this thread; waits are bounded by deadlines, so a
 * hang fails the test instead of blocking it.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

#define FROM "a@example.org"
#define TO "b@example.org"
#define MAX_OUTCOMES 16

static bool under_valgrind;

/* ---------------------------------------------------------------------------------------------
 * What the callbacks saw (they all run in this thread, from email_dispatch)
 * ------------------------------------------------------------------------------------------- */

typedef struct seen {
    int starts;                    /* done calls */
    bool start_ok;
    int start_error, start_code;
    char start_text[512];
    char start_user[64];
    int outcomes;                  /* completion calls */
    uint64_t ids[MAX_OUTCOMES];
    bool success[MAX_OUTCOMES];
    int errors[MAX_OUTCOMES], codes[MAX_OUTCOMES];
    char texts[MAX_OUTCOMES][512];
    int outcomes_before_start;     /* completions that came before done */
    int progress_calls;
    uint64_t progress_ids[MAX_OUTCOMES];
    uint64_t progress_last_total;
} seen_t;

static void on_started(const char *user, const email_status_t *st, void *user_data)
{
    seen_t *s = user_data;
    s->starts++;
    s->start_ok = st->success;
    s->start_error = st->error;
    s->start_code = st->status;
    snprintf(s->start_text, sizeof s->start_text, "%s", st->status_text);
    snprintf(s->start_user, sizeof s->start_user, "%s", user);
}

static void on_outcome(uint64_t id, const email_status_t *st, void *user_data)
{
    seen_t *s = user_data;
    if (s->starts == 0)
        s->outcomes_before_start++;
    if (s->outcomes < MAX_OUTCOMES) {
        int i = s->outcomes;
        s->ids[i] = id;
        s->success[i] = st->success;
        s->errors[i] = st->error;
        s->codes[i] = st->status;
        snprintf(s->texts[i], sizeof s->texts[i], "%s", st->status_text);
    }
    s->outcomes++;
}

static void on_progress(uint64_t id, uint64_t sent, uint64_t total, void *user_data)
{
    seen_t *s = user_data;
    if (s->progress_calls < MAX_OUTCOMES)
        s->progress_ids[s->progress_calls] = id;
    s->progress_calls++;
    if (sent == total)
        s->progress_last_total = total;
}

/* Runs email_dispatch() whenever its descriptor is readable, until done calls and completions
 * reach the counts (or the deadline passes). */
static void dispatch_until(seen_t *s, int starts, int outcomes, int timeout_ms)
{
    long long deadline = test_now_ms() + (under_valgrind ? timeout_ms * 10 : timeout_ms);
    while ((s->starts < starts || s->outcomes < outcomes) && test_now_ms() < deadline) {
        struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    }
    if (s->starts < starts || s->outcomes < outcomes)
        fail_msg("after %d ms: %d start verdict(s) of %d, %d outcome(s) of %d", timeout_ms,
                 s->starts, starts, s->outcomes, outcomes);
}

/* Nothing more arrives: each start and each message had exactly one callback. */
static void assert_no_more(seen_t *s)
{
    int starts = s->starts, outcomes = s->outcomes;
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    if (poll(&p, 1, 200) > 0)
        email_dispatch();
    assert_int_equal(s->starts, starts);
    assert_int_equal(s->outcomes, outcomes);
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static email_message_t *make_message(const char *subject)
{
    return test_message(FROM, TO, subject, "Hello.\n");
}

static uint64_t send_one(const char *name, const char *subject)
{
    email_message_t *m = make_message(subject);
    uint64_t id = email_message_id(m);
    if (!email_send_message(name, m))
        fail_msg("%s: not sent: %s", subject, email_error_info());
    email_message_free(m);
    return id;
}

/* The log's first line is the connect event ("connected to 127.0.0.1", or 4D's wording
 * "SMTP Connected to '127.0.0.1'"). */
static bool starts_with_connect(const char *log)
{
    const char *eol = strchr(log, '\n'), *c = strstr(log, "onnected to ");
    return eol && c && c < eol && strstr(c, "127.0.0.1") && strstr(c, "127.0.0.1") < eol;
}

/* Occurrences of needle in text. */
static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* smtpd.py with AUTH for carol and its line log in dir/server.log. */
static void start_auth_server(test_server_t *s, char *log_path, size_t size, char **dir)
{
    *dir = test_tmpdir();
    assert_non_null(*dir);
    snprintf(log_path, size, "%s/server.log", *dir);
    const char *args[] = {"--auth", "carol:right", "--auth-required", "--log", log_path, NULL};
    start_smtpd(s, args);
}

static void stop_auth_server(test_server_t *s, char *dir)
{
    test_server_stop(s);
    test_rmtree(dir);
    free(dir);
}

/* The name is free: closing it says there is no such session. */
static void assert_name_free(const char *name)
{
    assert_false(email_close_session(name));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
}

/* ---------------------------------------------------------------------------------------------
 * 1. The start connects, secures and authenticates before it returns, in both modes
 * ------------------------------------------------------------------------------------------- */

static void test_async_mode_start_closed_port(void **state)
{
    int port = test_dead_port();
    for (int mode = EMAIL_SYNCHRONOUS; mode <= EMAIL_ASYNCHRONOUS; mode++) {
        assert_false(email_start_smtp_session("closed", NULL, "127.0.0.1", port, mode,
                                              EMAIL_OPTION_DEFAULT));
        assert_true(email_error_occurred());
        assert_int_equal(email_last_error(), EMAIL_ECONNECT);
        char where[64];
        snprintf(where, sizeof where, "127.0.0.1 port %d", port);
        if (!strstr(email_error_info(), where))
            fail_msg("mode %d: ErrorInfo does not say where: %s", mode, email_error_info());
        assert_name_free("closed");
    }
}

static void test_async_mode_start_wrong_password(void **state)
{
    test_server_t s;
    char log_path[512], *dir;
    start_auth_server(&s, log_path, sizeof log_path, &dir);
    assert_false(email_start_smtp_session("carol", "wrong", "127.0.0.1", s.port,
                                          EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EAUTH);
    if (!strstr(email_error_info(), "535"))
        fail_msg("ErrorInfo without the server's 535: %s", email_error_info());
    assert_name_free("carol");
    assert_int_equal(test_spool_count(&s), 0);
    stop_auth_server(&s, dir);
}

/* A good start is open when it returns; the message then goes over that same connection. */
static void test_async_mode_start_then_send(void **state)
{
    test_server_t s;
    char log_path[512], *dir;
    start_auth_server(&s, log_path, sizeof log_path, &dir);
    assert_true(email_start_smtp_session("carol", "right", "127.0.0.1", s.port,
                                         EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_false(email_error_occurred());
    /* authenticated before it returned: the server has already answered AUTH */
    char *log = test_read_file(log_path, NULL);
    assert_non_null(log);
    if (!strstr(log, "S: 235"))
        fail_msg("the start returned before the session was authenticated:\n%s", log);
    free(log);

    seen_t seen = {0};
    assert_int_equal(email_session_set_callback("carol", on_outcome, &seen), 0);
    uint64_t id = send_one("carol", "after an open start");
    dispatch_until(&seen, 0, 1, 10000);
    assert_true(seen.ids[0] == id);
    if (!seen.success[0])
        fail_msg("not sent: %s", seen.texts[0]);
    assert_true(email_close_session("carol"));
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    log = test_read_file(log_path, NULL);
    assert_int_equal(count_of(log, "-- connect"), 1);
    free(log);
    stop_auth_server(&s, dir);
}

/* ---------------------------------------------------------------------------------------------
 * 2. The non-blocking start
 * ------------------------------------------------------------------------------------------- */

/* Messages sent at once wait for the start, then go over its connection. */
static void test_start_async_then_sends(void **state)
{
    test_server_t s;
    char log_path[512], *dir;
    start_auth_server(&s, log_path, sizeof log_path, &dir);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("carol", "right", "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    assert_int_equal(seen.starts, 0); /* done runs from email_dispatch only */
    assert_int_equal(email_session_set_callback("carol", on_outcome, &seen), 0);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = send_one("carol", "queued before the start's verdict");
    dispatch_until(&seen, 1, 3, 10000);
    if (!seen.start_ok)
        fail_msg("start: %s: %s", email_error_name(seen.start_error), seen.start_text);
    assert_int_equal(seen.start_error, 0);
    assert_int_equal(seen.start_code, 235);
    assert_string_equal(seen.start_user, "carol");
    for (int i = 0; i < 3; i++) {
        assert_true(seen.ids[i] == ids[i]);
        if (!seen.success[i])
            fail_msg("message %d: %s", i, seen.texts[i]);
        assert_int_equal(email_message_status(ids[i]), EMAIL_SENT);
    }
    assert_no_more(&seen);
    assert_true(email_close_session("carol"));
    assert_int_equal(test_spool_wait(&s, 3, 5000), 3);
    char *log = test_read_file(log_path, NULL);
    assert_int_equal(count_of(log, "-- connect"), 1);
    free(log);
    stop_auth_server(&s, dir);
}

/* A refused login: done reports the 535, each queued message fails once with it, the name is
 * free again, and nothing was sent. */
static void test_start_async_wrong_password(void **state)
{
    test_server_t s;
    char log_path[512], *dir;
    start_auth_server(&s, log_path, sizeof log_path, &dir);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("carol", "wrong", "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    assert_int_equal(email_session_set_callback("carol", on_outcome, &seen), 0);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = send_one("carol", "waits for a start that fails");
    dispatch_until(&seen, 1, 3, 10000);
    assert_false(seen.start_ok);
    assert_int_equal(seen.start_error, EMAIL_EAUTH);
    assert_int_equal(seen.start_code, 535);
    assert_int_equal(seen.outcomes_before_start, 0);
    for (int i = 0; i < 3; i++) {
        assert_true(seen.ids[i] == ids[i]);
        assert_false(seen.success[i]);
        assert_int_equal(seen.errors[i], EMAIL_EAUTH);
        assert_int_equal(seen.codes[i], 535);
        assert_int_equal(email_message_status(ids[i]), EMAIL_ERROR);
    }
    assert_no_more(&seen);
    assert_name_free("carol");
    assert_int_equal(test_spool_count(&s), 0);
    char *log = test_read_file(log_path, NULL);
    assert_int_equal(count_of(log, "-- connect"), 1); /* no second try for the messages */
    free(log);
    stop_auth_server(&s, dir);
}

/* A synchronous session started without waiting: a send waits for the start. */
static void test_start_async_sync_mode_send_waits(void **state)
{
    test_server_t s;
    const char *script = "sleep 0.5\nsend 220 scripted ESMTP\nexpect EHLO .*\nsend 250 scripted\n"
                         "expect MAIL FROM:<a@example.org>.*\nsend 250 ok\n"
                         "expect RCPT TO:<b@example.org>\nsend 250 ok\nexpect DATA\n"
                         "send 354 go\nexpect-data\nsend 250 2.0.0 queued\n"
                         "expect QUIT\nsend 221 bye\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("slow", NULL, "127.0.0.1", s.port,
                                               EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    email_message_t *m = make_message("sent once the start is done");
    if (!email_send_message("slow", m))
        fail_msg("send: %s", email_error_info());
    email_message_free(m);
    dispatch_until(&seen, 1, 0, 5000);
    assert_true(seen.start_ok);
    assert_true(email_close_session("slow"));
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
}

/* Arguments known to be wrong, and a name in use while its start is pending: refused at once,
 * and done is never called for them. */
static void test_start_async_refused_at_once(void **state)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "sleep 3\n", NULL), 0);
    seen_t seen = {0};
    assert_false(email_start_smtp_session_async("", NULL, "127.0.0.1", s.port, 0, 0, on_started,
                                                &seen));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_false(email_start_smtp_session_async("x", NULL, "127.0.0.1", 70000, 0, 0, on_started,
                                                &seen));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_false(email_start_smtp_session_async("x", NULL, NULL, s.port, 0, 0, on_started,
                                                &seen));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);

    assert_true(email_start_smtp_session_async("pending", NULL, "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    assert_false(email_start_smtp_session_async("pending", NULL, "127.0.0.1", s.port,
                                                EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                                on_started, &seen));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    assert_false(email_start_smtp_session("pending", NULL, "127.0.0.1", s.port,
                                          EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EEXIST);
    /* the pending one is a session: it can be closed (nothing queued: the start is abandoned) */
    assert_true(email_close_session("pending"));
    dispatch_until(&seen, 1, 0, 5000);
    assert_false(seen.start_ok);
    assert_int_equal(seen.start_error, EMAIL_ECANCELED);
    assert_no_more(&seen);
    test_server_stop(&s);
}

/* Closed before done with messages queued: they are delivered first, as for any close. */
static void test_start_async_close_delivers(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("closing", NULL, "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    assert_int_equal(email_session_set_callback("closing", on_outcome, &seen), 0);
    uint64_t id = send_one("closing", "queued, then closed");
    assert_true(email_close_session("closing"));
    assert_name_free("closing");
    dispatch_until(&seen, 1, 1, 5000);
    assert_true(seen.start_ok);
    assert_true(seen.ids[0] == id);
    assert_true(seen.success[0]);
    assert_int_equal(test_spool_count(&s), 1); /* the close waited for it */
    assert_no_more(&seen);
    test_server_stop(&s);
}

/* email_shutdown while a start waits for a silent server: it returns, and done says why. */
static void test_start_async_shutdown(void **state)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "sleep 5\n", NULL), 0);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("shut", NULL, "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    alarm(30); /* a hang fails the test instead of blocking the suite */
    email_shutdown();
    alarm(0);
    assert_int_equal(email_dispatch(), 1);
    assert_int_equal(seen.starts, 1);
    assert_false(seen.start_ok);
    assert_int_equal(seen.start_error, EMAIL_ECANCELED);
    assert_name_free("shut");
    test_server_stop(&s);
}

/* A blocking start in its own thread, against a silent server. */
typedef struct blocking_start {
    int port;
    bool ok;
    int error;
    char info[512];
} blocking_start_t;

static void *run_blocking_start(void *arg)
{
    blocking_start_t *b = arg;
    b->ok = email_start_smtp_session("waiting", NULL, "127.0.0.1", b->port, EMAIL_SYNCHRONOUS,
                                     EMAIL_OPTION_DEFAULT);
    b->error = email_last_error(); /* ErrorInfo is the starting thread's */
    snprintf(b->info, sizeof b->info, "%s", email_error_info());
    return NULL;
}

/* Closed from another thread while a blocking start waits for the server: the close does not
 * wait for the start's verdict (it would be the server's silence then), the start fails as
 * closed. */
static void test_start_blocking_closed_meanwhile(void **state)
{
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, "sleep 10\n", NULL), 0);
    blocking_start_t b = {.port = s.port};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_blocking_start, &b), 0);
    /* the name is taken once the start has registered it */
    long long deadline = test_now_ms() + 10000;
    bool closed;
    while (!(closed = email_close_session("waiting")) && test_now_ms() < deadline)
        usleep(1000);
    assert_true(closed);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_false(b.ok);
    assert_int_equal(b.error, EMAIL_ECANCELED);
    if (!strstr(b.info, "closed before it was open"))
        fail_msg("ErrorInfo: %s", b.info);
    assert_name_free("waiting");
    test_server_stop(&s);
}

/* The name is free again when done reports a failure: done may start it again. */
typedef struct retry {
    int port, attempts;
    bool restarted;
    seen_t seen;
} retry_t;

static void on_started_retry(const char *user, const email_status_t *st, void *user_data)
{
    retry_t *r = user_data;
    r->attempts++;
    if (!st->success && r->attempts == 1)
        r->restarted = email_start_smtp_session_async(user, "right", "127.0.0.1", r->port,
                                                      EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                                      on_started, &r->seen);
}

static void test_start_async_retry_from_done(void **state)
{
    test_server_t s;
    char log_path[512], *dir;
    start_auth_server(&s, log_path, sizeof log_path, &dir);
    retry_t r = {.port = s.port};
    assert_true(email_start_smtp_session_async("carol", "wrong", "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started_retry, &r));
    long long deadline = test_now_ms() + 10000;
    while (r.seen.starts == 0 && test_now_ms() < deadline) {
        struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    }
    assert_int_equal(r.attempts, 1);
    assert_true(r.restarted);
    assert_int_equal(r.seen.starts, 1);
    assert_true(r.seen.start_ok);
    assert_true(email_close_session("carol"));
    stop_auth_server(&s, dir);
}

/* ---------------------------------------------------------------------------------------------
 * 3. An extended log set before the start
 * ------------------------------------------------------------------------------------------- */

/* The failed login is all in the log, from the connect line on, the secret masked; the start
 * took the setting: a later start of the name logs nothing more there. */
static void test_log_file_before_failed_start(void **state)
{
    test_server_t s;
    const char *args[] = {"--auth", "carol:right", "--auth-required", NULL};
    start_smtpd(&s, args);
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/carol.log", dir);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.log", dir);
    assert_int_equal(email_session_set_log_file("carol", bad), EMAIL_EIO);
    assert_int_equal(email_session_set_log_file("carol", path), 0);
    const char *secret = "Tr0ub4dor&3";
    assert_false(email_start_smtp_session("carol", secret, "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EAUTH);

    size_t len;
    char *log = test_read_file(path, &len);
    assert_non_null(log);
    /* the first line is the connection; then EHLO, the masked AUTH and the server's 535 */
    if (!starts_with_connect(log))
        fail_msg("the log does not start with the connect line:\n%s", log);
    const char *ehlo = strstr(log, "C > \"EHLO ");
    const char *auth = strstr(log, "C > \"AUTH PLAIN ****\"");
    const char *refusal = strstr(log, "S < \"535");
    if (!ehlo || !auth || !refusal || !(ehlo < auth && auth < refusal))
        fail_msg("EHLO, AUTH and 535 missing or out of order:\n%s", log);
    assert_null(strstr(log, secret));
    assert_null(strstr(log, "AGNhcm9sAFRyMHViNGRvciYz")); /* nor the PLAIN payload */
    free(log);

    /* the failed start took the setting with it */
    assert_true(email_start_smtp_session("carol", "right", "127.0.0.1", s.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_true(email_close_session("carol"));
    size_t after;
    log = test_read_file(path, &after);
    assert_int_equal(after, len);
    free(log);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
}

/* A log set before a non-blocking start holds the whole session: connect, the message's MIME,
 * the close. */
static void test_log_file_before_start_async(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/whole.log", dir);
    assert_int_equal(email_session_set_log_file("whole", path), 0);
    seen_t seen = {0};
    assert_true(email_start_smtp_session_async("whole", NULL, "127.0.0.1", s.port,
                                               EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT,
                                               on_started, &seen));
    assert_int_equal(email_session_set_callback("whole", on_outcome, &seen), 0);
    send_one("whole", "logged whole");
    dispatch_until(&seen, 1, 1, 5000);
    assert_true(seen.success[0]);
    assert_true(email_close_session("whole"));
    char *log = test_read_file(path, NULL);
    assert_non_null(log);
    if (!starts_with_connect(log) || !strstr(log, "Subject: logged whole\r\n"))
        fail_msg("connect line or message missing:\n%s", log);
    free(log);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------
 * 4. Prebuilt messages have ids
 * ------------------------------------------------------------------------------------------- */

static void test_send_mime_ids_async(void **state)
{
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "nobody", NULL};
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("raw", NULL, "127.0.0.1", s.port, EMAIL_ASYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    seen_t seen = {0};
    assert_int_equal(email_session_set_callback("raw", on_outcome, &seen), 0);
    assert_int_equal(email_session_set_progress("raw", on_progress, &seen), 0);
    const char *mime = "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\nbody\r\n";
    const char *good[] = {"b@example.org", NULL}, *refused[] = {"nobody@example.org", NULL};
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        assert_true(email_send_mime_id("raw", FROM, i == 1 ? refused : good, mime, strlen(mime),
                                       &ids[i]));
    assert_true(ids[0] != 0 && ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    /* the same series as the builder's ids */
    email_message_t *m = email_message_new();
    assert_true(email_message_id(m) > ids[2]);
    email_message_free(m);
    assert_true(email_send_mime("raw", FROM, good, mime, strlen(mime))); /* without the id */

    dispatch_until(&seen, 0, 4, 10000);
    for (int i = 0; i < 3; i++) {
        assert_true(seen.ids[i] == ids[i]);
        assert_int_equal(seen.success[i], i != 1);
        assert_int_equal(email_message_status(ids[i]), i == 1 ? EMAIL_ERROR : EMAIL_SENT);
    }
    assert_true(seen.ids[3] != 0 && seen.ids[3] != ids[2]);
    /* the session's progress applies to prebuilt messages, under their ids */
    assert_true(seen.progress_calls >= 2);
    bool found = false;
    for (int i = 0; i < seen.progress_calls && i < MAX_OUTCOMES; i++) {
        assert_true(seen.progress_ids[i] != 0);
        found |= seen.progress_ids[i] == ids[0];
    }
    assert_true(found);
    assert_true(seen.progress_last_total > 0);
    assert_true(email_close_session("raw"));
    assert_int_equal(test_spool_wait(&s, 3, 5000), 3);
    test_server_stop(&s);
}

static void test_send_mime_ids_sync(void **state)
{
    test_server_t s;
    const char *args[] = {"--reject-rcpt", "nobody", NULL};
    start_smtpd(&s, args);
    assert_true(email_start_smtp_session("raw-sync", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    const char *mime = "Subject: raw\r\n\r\nbody\r\n";
    const char *good[] = {"b@example.org", NULL}, *refused[] = {"nobody@example.org", NULL};
    uint64_t sent = 0, failed = 0, invalid = 99;
    assert_true(email_send_mime_id("raw-sync", FROM, good, mime, strlen(mime), &sent));
    assert_false(email_send_mime_id("raw-sync", FROM, refused, mime, strlen(mime), &failed));
    assert_int_equal(email_last_error(), EMAIL_ERECIPIENTS);
    assert_true(sent != 0 && failed != 0 && sent != failed);
    assert_int_equal(email_message_status(sent), EMAIL_SENT);
    assert_int_equal(email_message_status(failed), EMAIL_ERROR);
    /* refused before it got an id */
    assert_false(email_send_mime_id("raw-sync", "bad address", good, mime, strlen(mime), &invalid));
    assert_true(invalid == 0);
    assert_true(email_close_session("raw-sync"));
    test_server_stop(&s);
}

static int teardown_all(void **state)
{
    email_shutdown();
    return 0;
}

int main(void)
{
    under_valgrind = getenv("EMAIL_UNDER_VALGRIND") != NULL;
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_async_mode_start_closed_port),
        LOOP_IDLE_TEST(test_async_mode_start_wrong_password),
        LOOP_IDLE_TEST(test_async_mode_start_then_send),
        LOOP_IDLE_TEST(test_start_async_then_sends),
        LOOP_IDLE_TEST(test_start_async_wrong_password),
        LOOP_IDLE_TEST(test_start_async_sync_mode_send_waits),
        LOOP_IDLE_TEST(test_start_async_refused_at_once),
        LOOP_IDLE_TEST(test_start_async_close_delivers),
        LOOP_IDLE_TEST(test_start_async_retry_from_done),
        LOOP_IDLE_TEST(test_log_file_before_failed_start),
        LOOP_IDLE_TEST(test_log_file_before_start_async),
        LOOP_IDLE_TEST(test_send_mime_ids_async),
        LOOP_IDLE_TEST(test_send_mime_ids_sync),
        LOOP_IDLE_TEST(test_start_async_shutdown),
        LOOP_IDLE_TEST(test_start_blocking_closed_meanwhile),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
