/*
 * Faulty and hostile servers, and files that change under a message (issue #9): attachments
 * that vanish, shrink or grow while the message goes out (aiosmtpd with PIPELINING, with
 * CHUNKING, and lockstep; synchronous and asynchronous sessions), replies trickled a byte at a
 * time, replies no command awaits, a 421 followed by a message queued from its completion, and
 * plain-text bytes where a TLS handshake was due (scripted.py).
 *
 * Every check is on what the server received or on the outcome the library reports; waits are
 * bounded by deadlines, never measured.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

#define FROM "a@example.org"
#define TO "b@example.org"

/* Under valgrind everything is slower: longer deadlines (never shorter timeouts). */
static int slack(int ms)
{
    return getenv("EMAIL_UNDER_VALGRIND") ? ms * 10 : ms;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" not in \"%s\"", needle, hay ? hay : "(null)");
}

static email_message_t *simple_message(const char *subject)
{
    email_message_t *m = email_message_new();
    assert_non_null(m);
    assert_int_equal(email_message_set_from(m, FROM), 0);
    assert_int_equal(email_message_add_to(m, TO), 0);
    assert_int_equal(email_message_set_subject(m, subject), 0);
    assert_int_equal(email_message_set_text_body(m, "Hello,\nthis is the text.\n"), 0);
    return m;
}

/* Starts scripted.py with script, or fails the test. */
static void start_scripted(test_server_t *s, const char *script)
{
    assert_int_equal(test_scripted_start(s, script, NULL), 0);
}

/* The record once the script ended (the server exits after its one connection). */
static char *finished_record(test_server_t *s, size_t *len)
{
    int st = test_server_wait(s, slack(15000));
    if (st != 0)
        fail_msg("scripted.py ended with status %d", st);
    char *rec = test_scripted_record(s, len);
    return rec ? rec : strdup("");
}

/* ---------------------------------------------------------------------------------------------
 * Outcomes of asynchronous sends (callbacks run on the library thread)
 * ------------------------------------------------------------------------------------------- */

typedef struct outcomes {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t ids[4];
    email_status_t st[4];
    int done[4];
    int n;
    int strays;
} outcomes_t;

static void outcomes_init(outcomes_t *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
}

static void outcomes_free(outcomes_t *o)
{
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
}

static void on_outcome(uint64_t id, const email_status_t *st, void *user_data)
{
    outcomes_t *o = user_data;
    pthread_mutex_lock(&o->lock);
    int i = 0;
    while (i < o->n && o->ids[i] != id)
        i++;
    if (i == o->n) {
        o->strays++;
    } else if (o->done[i]++ == 0) {
        o->st[i] = *st;
        o->st[i].internal_ = NULL; /* valid during the call only */
    }
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

/* Queues m on the named asynchronous session as outcome number i. */
static void queue(outcomes_t *o, const char *name, email_message_t *m)
{
    pthread_mutex_lock(&o->lock);
    assert_true(o->n < 4);
    o->ids[o->n++] = email_message_id(m);
    pthread_mutex_unlock(&o->lock);
    if (!email_send_message(name, m))
        fail_msg("not queued: %s", email_error_info());
}

/* Waits until every queued message has an outcome (fails after the deadline). */
static void wait_outcomes(outcomes_t *o)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += slack(30000) / 1000;
    pthread_mutex_lock(&o->lock);
    bool all = false;
    for (;;) {
        all = true;
        for (int i = 0; i < o->n; i++)
            all = all && o->done[i];
        if (all || pthread_cond_timedwait(&o->cond, &o->lock, &until) != 0)
            break;
    }
    int strays = o->strays;
    pthread_mutex_unlock(&o->lock);
    if (!all)
        fail_msg("a queued message got no outcome");
    assert_int_equal(strays, 0);
    for (int i = 0; i < o->n; i++)
        assert_int_equal(o->done[i], 1);
}

/* ---------------------------------------------------------------------------------------------
 * Item 1: an attachment file that changes after it was measured
 * ------------------------------------------------------------------------------------------- */

enum change { VANISH, SHRINK, GROW };
static const char *const change_names[] = {"vanish", "shrink", "grow"};

/* What the log callback does, once, when the first RCPT goes out: the message is measured
 * by then, and its attachment not opened yet. */
static struct {
    atomic_bool armed;
    enum change change;
    char path[600];
} trigger;

#define ATTACHMENT_BYTES (200 * 1024)

static void change_file(void)
{
    switch (trigger.change) {
    case VANISH:
        assert_int_equal(unlink(trigger.path), 0);
        break;
    case SHRINK:
        assert_int_equal(truncate(trigger.path, ATTACHMENT_BYTES / 2), 0);
        break;
    case GROW: {
        FILE *f = fopen(trigger.path, "ab");
        assert_non_null(f);
        assert_int_equal(fputs("more bytes than were measured\n", f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        break;
    }
    }
}

static void on_log_line(const char *line, void *user_data)
{
    (void)user_data;
    if (strstr(line, "C > \"RCPT TO:") && atomic_exchange(&trigger.armed, false))
        change_file();
}

static email_message_t *message_with_attachment(const char *dir)
{
    snprintf(trigger.path, sizeof trigger.path, "%s/attachment.bin", dir);
    char *data = malloc(ATTACHMENT_BYTES);
    assert_non_null(data);
    for (size_t i = 0; i < ATTACHMENT_BYTES; i++)
        data[i] = (char)(i * 7 + i / 251);
    assert_int_equal(test_write_file(trigger.path, data, ATTACHMENT_BYTES), 0);
    free(data);
    email_message_t *m = simple_message("with attachment");
    assert_int_equal(email_message_add_attachment_file(m, trigger.path, NULL, NULL), 0);
    return m;
}

/* The outcome of the message whose file changed: EMAIL_EIO naming the file. */
static void assert_file_failure(int error, const char *text)
{
    if (error != EMAIL_EIO)
        fail_msg("%s: %s (%s)", change_names[trigger.change], email_error_name(error), text);
    assert_contains(text, trigger.path);
}

/* One send of the changing message then a plain one, synchronous or asynchronous. */
static void send_pair(int port, bool async, const char *dir)
{
    email_message_t *m1 = message_with_attachment(dir);
    email_message_t *m2 = simple_message("next");
    atomic_store(&trigger.armed, true);
    if (!email_start_smtp_session("changing", NULL, "127.0.0.1", port,
                                  async ? EMAIL_ASYNCHRONOUS : EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_DEFAULT))
        fail_msg("start: %s", email_error_info());
    if (async) {
        outcomes_t o;
        outcomes_init(&o);
        assert_int_equal(email_session_set_callback("changing", on_outcome, &o), 0);
        queue(&o, "changing", m1);
        queue(&o, "changing", m2);
        wait_outcomes(&o);
        assert_false(o.st[0].success);
        assert_file_failure(o.st[0].error, o.st[0].status_text);
        if (!o.st[1].success)
            fail_msg("the next message: %s", o.st[1].status_text);
        assert_true(email_close_session("changing"));
        outcomes_free(&o);
    } else {
        assert_false(email_send_message("changing", m1));
        assert_file_failure(email_last_error(), email_error_info());
        if (!email_send_message("changing", m2))
            fail_msg("the next message: %s", email_error_info());
        assert_true(email_close_session("changing"));
    }
    assert_false(atomic_load(&trigger.armed));
    email_message_free(m1);
    email_message_free(m2);
}

static void test_attachment_changes(void **state)
{
    (void)state;
    static const char *const pipelining[] = {"--pipelining", NULL};
    static const char *const chunking[] = {"--pipelining", "--chunking", NULL};
    static const char *const *const servers[] = {pipelining, chunking, NULL};
    static const char *const server_names[] = {"pipelining", "chunking", "lockstep"};
    char *dir = test_tmpdir();
    assert_non_null(dir);
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    email_set_log_callback(on_log_line, NULL);
    for (int srv = 0; srv < 3; srv++) {
        for (int async = 0; async < 2; async++) {
            for (int change = VANISH; change <= GROW; change++) {
                trigger.change = (enum change)change;
                test_server_t s;
                start_smtpd(&s, servers[srv]);
                print_message("%s, %s, %s\n", server_names[srv], async ? "async" : "sync",
                              change_names[change]);
                send_pair(s.port, async, dir);
                /* only the next message arrived: nothing cut, nothing twice */
                assert_int_equal(test_spool_wait(&s, 1, slack(10000)), 1);
                char *eml = test_spool_read(&s, 1, "eml", NULL);
                assert_non_null(eml);
                assert_contains(eml, "Subject: next");
                free(eml);
                assert_int_equal(test_spool_count(&s), 1);
                test_server_stop(&s);
            }
        }
    }
    email_set_log_callback(NULL, NULL);
    email_set_callback_thread(EMAIL_CALLBACK_DISPATCH);
    unlink(trigger.path);
    test_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Item 5: replies trickled a byte at a time
 * ------------------------------------------------------------------------------------------- */

/* A script step per byte of text + CRLF, `gap` seconds apart. */
static void trickle(char *script, size_t size, const char *text, const char *gap)
{
    size_t n = strlen(script);
    for (const char *p = text; *p; p++)
        n += (size_t)snprintf(script + n, size - n, "sendraw %c\nsleep %s\n", *p, gap);
    n += (size_t)snprintf(script + n, size - n, "sendraw \\r\\n\n");
    assert_true(n < size);
}

static atomic_int timeouts_logged;

static void count_timeouts(const char *line, void *user_data)
{
    (void)user_data;
    if (strstr(line, "### SMTP Error: timed out after"))
        atomic_fetch_add(&timeouts_logged, 1);
}

/* Once ready, a reply trickled a byte every 0.4 s never completes within the 1 s timeout,
 * though no gap reaches it: the session times out and nothing after MAIL goes out (the
 * message then fails: its one retry finds the scripted server gone). */
static void test_trickled_reply(void **state)
{
    (void)state;
    char script[4096] = "send 220 scripted ESMTP\n"
                        "expect EHLO .*\n"
                        "send 250 scripted\n"
                        "expect MAIL FROM:.*\n";
    trickle(script, sizeof script, "250 2.1.0 sender ok", "0.4");
    strcat(script, "expect RCPT TO:.*\n"
                   "send 250 ok\n"
                   "expect DATA\n"
                   "send 354 go\n"
                   "expect-data\n"
                   "send 250 queued\n"
                   "expect QUIT\n"
                   "send 221 bye\n");
    test_server_t s;
    start_scripted(&s, script);
    int old = email_get_timeout();
    email_set_timeout(1);
    atomic_store(&timeouts_logged, 0);
    email_set_log_callback(count_timeouts, NULL);
    assert_true(email_start_smtp_session("trickle", NULL, "127.0.0.1", s.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    email_message_t *m = simple_message("trickled");
    bool sent = email_send_message("trickle", m);
    email_message_free(m);
    email_dispatch(); /* the log lines wait for it (the default callback thread) */
    email_set_log_callback(NULL, NULL);
    email_close_session("trickle");
    email_set_timeout(old);
    assert_false(sent);
    assert_int_equal(atomic_load(&timeouts_logged), 1);
    test_server_wait(&s, slack(20000));
    size_t len;
    char *rec = test_scripted_record(&s, &len);
    assert_non_null(rec);
    assert_null(strstr(rec, "RCPT TO:"));
    free(rec);
    test_server_stop(&s);
}

/* The same during setup: a greeting or an EHLO reply trickled ends within the timeout. */
static void test_trickled_setup(void **state)
{
    (void)state;
    for (int ehlo = 0; ehlo < 2; ehlo++) {
        char script[4096] = "";
        if (ehlo)
            strcat(script, "send 220 scripted ESMTP\nexpect EHLO .*\n");
        trickle(script, sizeof script, ehlo ? "250 scripted" : "220 scripted ESMTP", "0.4");
        strcat(script, "expect (EHLO|QUIT).*\n");
        test_server_t s;
        start_scripted(&s, script);
        int old = email_get_timeout();
        email_set_timeout(1);
        bool ok = email_start_smtp_session("trickle", NULL, "127.0.0.1", s.port,
                                           EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT);
        int error = email_last_error();
        email_set_timeout(old);
        if (ok || error != EMAIL_ETIMEDOUT)
            fail_msg("%s: started %d, %s: %s", ehlo ? "EHLO" : "greeting", ok,
                     email_error_name(error), email_error_info());
        test_server_stop(&s);
    }
}

/* A large message over a slow link: the body moves all along, so the timer (1 s) that ends a
 * trickled reply never cuts it. */
static void test_large_body_slow_link(void **state)
{
    (void)state;
    test_server_t srv, proxy;
    start_smtpd(&srv, NULL);
    char to[16];
    snprintf(to, sizeof to, "%d", srv.port);
    const char *const args[] = {"--to", to, "--rate", "400000", NULL};
    assert_int_equal(test_server_start(&proxy, "slowproxy.py", args), 0);
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    size_t size = 2 * 1024 * 1024;
    char *data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 13 + i / 4093);
    assert_int_equal(test_write_file(path, data, size), 0);
    free(data);
    email_message_t *m = simple_message("large");
    assert_int_equal(email_message_add_attachment_file(m, path, NULL, NULL), 0);
    int old = email_get_timeout();
    email_set_timeout(1);
    assert_true(email_start_smtp_session("slow", NULL, "127.0.0.1", proxy.port,
                                         EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    bool sent = email_send_message("slow", m);
    if (!sent)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    email_close_session("slow");
    email_set_timeout(old);
    email_message_free(m);
    assert_int_equal(test_spool_wait(&srv, 1, slack(10000)), 1);
    test_server_stop(&proxy);
    test_server_stop(&srv);
    test_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Item 6: replies no command awaits
 * ------------------------------------------------------------------------------------------- */

static atomic_int strays_logged;

static void count_strays(const char *line, void *user_data)
{
    (void)user_data;
    if (strstr(line, "### SMTP Error: reply without a command"))
        atomic_fetch_add(&strays_logged, 1);
}

/* A greeting followed by an unsolicited 250 in the same write: EMAIL_EPROTO, "reply without a
 * command", and the client closes at once (wait-close passes) without a transaction. */
static void test_reply_without_command_at_greeting(void **state)
{
    (void)state;
    test_server_t s;
    start_scripted(&s, "send 220 scripted ESMTP\\r\\n250 2.0.0 unsolicited\n"
                       "wait-close\n");
    int old = email_get_timeout();
    email_set_timeout(30); /* a hang shows as a failed script, never as a slow pass */
    bool ok = email_start_smtp_session("stray", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                       EMAIL_OPTION_DEFAULT);
    int error = email_last_error();
    char info[600];
    snprintf(info, sizeof info, "%s", email_error_info());
    email_set_timeout(old);
    assert_false(ok);
    if (error != EMAIL_EPROTO)
        fail_msg("%s: %s", email_error_name(error), info);
    assert_contains(info, "reply without a command");
    size_t len;
    char *rec = finished_record(&s, &len);
    assert_null(strstr(rec, "MAIL FROM"));
    free(rec);
    test_server_stop(&s);
}

/* A stray reply behind the EHLO answer, ahead of the pipelined MAIL/RCPT/DATA of a message
 * queued meanwhile: not taken as MAIL's answer; the session ends without writing them. */
static void test_reply_ahead_of_pipelined_commands(void **state)
{
    (void)state;
    test_server_t s;
    start_scripted(&s, "send 220 scripted ESMTP\n"
                       "expect EHLO .*\n"
                       "send 250-scripted\\r\\n250 PIPELINING\\r\\n250 2.0.0 stray\n"
                       "wait-close\n");
    atomic_store(&strays_logged, 0);
    email_set_log_callback(count_strays, NULL);
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    outcomes_t o;
    outcomes_init(&o);
    assert_true(email_start_smtp_session("stray", NULL, "127.0.0.1", s.port, EMAIL_ASYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_session_set_callback("stray", on_outcome, &o), 0);
    email_message_t *m = simple_message("stray");
    queue(&o, "stray", m);
    email_message_free(m);
    size_t len;
    char *rec = finished_record(&s, &len);
    wait_outcomes(&o); /* its retry finds the scripted server gone */
    assert_false(o.st[0].success);
    email_close_session("stray");
    email_set_callback_thread(EMAIL_CALLBACK_DISPATCH);
    email_set_log_callback(NULL, NULL);
    assert_int_equal(atomic_load(&strays_logged), 1);
    assert_null(strstr(rec, "MAIL FROM"));
    free(rec);
    outcomes_free(&o);
    test_server_stop(&s);
}

/* ---------------------------------------------------------------------------------------------
 * Item 7: after 421, nothing more is written
 * ------------------------------------------------------------------------------------------- */

typedef struct resubmit {
    outcomes_t o;
    email_message_t *next;
} resubmit_t;

/* The first outcome queues the next message from inside the completion (library thread). */
static void on_outcome_resubmit(uint64_t id, const email_status_t *st, void *user_data)
{
    resubmit_t *r = user_data;
    on_outcome(id, st, &r->o);
    email_message_t *next = r->next;
    r->next = NULL;
    if (next) {
        queue(&r->o, "after421", next);
        email_message_free(next); /* queued as a copy */
    }
}

/* The server answers RCPT with 421; the message queued from that completion must not go out
 * on this connection (the server sees nothing after its 421 but, at most, QUIT). */
static void test_nothing_after_421(void **state)
{
    (void)state;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:.*\n"
                         "send 250 ok\n"
                         "expect RCPT TO:.*\n"
                         "send 421 4.3.2 shutting down\n"
                         "sleep 0.5\n";
    test_server_t s;
    start_scripted(&s, script);
    resubmit_t r;
    outcomes_init(&r.o);
    r.next = simple_message("queued from the completion");
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    assert_true(email_start_smtp_session("after421", NULL, "127.0.0.1", s.port,
                                         EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_session_set_callback("after421", on_outcome_resubmit, &r), 0);
    email_message_t *m = simple_message("first");
    queue(&r.o, "after421", m);
    email_message_free(m);
    size_t len;
    char *rec = finished_record(&s, &len);
    wait_outcomes(&r.o);
    email_close_session("after421");
    email_set_callback_thread(EMAIL_CALLBACK_DISPATCH);
    const char *rcpt = strstr(rec, "RCPT TO:");
    assert_non_null(rcpt);
    const char *after = strstr(rcpt, "\r\n") + 2;
    if (*after && strcmp(after, "QUIT\r\n") != 0)
        fail_msg("written after the 421: %s", after);
    assert_int_equal(r.o.n, 2);
    assert_false(r.o.st[0].success);
    assert_false(r.o.st[1].success); /* the scripted server takes one connection only */
    free(rec);
    outcomes_free(&r.o);
    test_server_stop(&s);
}

/* ---------------------------------------------------------------------------------------------
 * Item 10: plain text where a TLS handshake was due
 * ------------------------------------------------------------------------------------------- */

/* After its 220 to STARTTLS the server sends plain text in a later segment (after our
 * ClientHello): response injection, not "a plain SMTP port". */
static void test_plain_text_after_starttls(void **state)
{
    (void)state;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250-scripted\\r\\n250 STARTTLS\n"
                         "expect STARTTLS\n"
                         "send 220 go ahead\n"
                         "expect-bytes 5\n"
                         "send 250 injected\n"
                         "wait-close\n";
    test_server_t s;
    start_scripted(&s, script);
    assert_false(email_start_smtp_session("inject2", NULL, "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_STARTTLS));
    if (email_last_error() != EMAIL_EPROTO)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "after its 220 to STARTTLS");
    assert_contains(email_error_info(), "injection");
    assert_null(strstr(email_error_info(), "plain SMTP")); /* not the wrong-port advice */
    size_t len;
    char *rec = finished_record(&s, &len);
    free(rec);
    test_server_stop(&s);
}

/* Implicit TLS to a server that greets in plain text: the advice is STARTTLS. */
static void test_plain_greeting_on_tls(void **state)
{
    (void)state;
    const char *script = "send 220 scripted ESMTP\n"
                         "wait-close\n";
    test_server_t s;
    start_scripted(&s, script);
    assert_false(email_start_smtp_session("plaingreet", NULL, "127.0.0.1", s.port,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_TLS));
    if (email_last_error() != EMAIL_ETLS)
        fail_msg("%s: %s", email_error_name(email_last_error()), email_error_info());
    assert_contains(email_error_info(), "plain SMTP");
    assert_contains(email_error_info(), "STARTTLS");
    assert_null(strstr(email_error_info(), "injection"));
    size_t len;
    char *rec = finished_record(&s, &len);
    free(rec);
    test_server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_attachment_changes),
        LOOP_IDLE_TEST(test_trickled_reply),
        LOOP_IDLE_TEST(test_trickled_setup),
        LOOP_IDLE_TEST(test_large_body_slow_link),
        LOOP_IDLE_TEST(test_reply_without_command_at_greeting),
        LOOP_IDLE_TEST(test_reply_ahead_of_pipelined_commands),
        LOOP_IDLE_TEST(test_nothing_after_421),
        LOOP_IDLE_TEST(test_plain_text_after_starttls),
        LOOP_IDLE_TEST(test_plain_greeting_on_tls),
    };
    if (getenv("EMAIL_TEST_ONLY")) /* one test by name (a pattern), e.g. test_trickled_* */
        cmocka_set_test_filter(getenv("EMAIL_TEST_ONLY"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    email_shutdown();
    return rc;
}
