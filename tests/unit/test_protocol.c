/*
 * Unit tests for the sans-I/O SMTP engine (lib/protocol.c): scripted server transcripts go in,
 * and what the engine asks to write, the callbacks it makes and the log it keeps are checked byte
 * for byte (tests/unit/engine_script.h has the driver).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_script.h"

#define EHLO_BASIC "250-mx.example\r\n250 HELP\r\n"
#define EHLO_PIPE                                                                                  \
    "250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"

#define A "a@x.example"
#define B "b@x.example"
#define C "c@x.example"
#define D "d@x.example"

#define MAIL_A "MAIL FROM:<" A ">\r\n"
#define RCPT_B "RCPT TO:<" B ">\r\n"
#define RCPT_C "RCPT TO:<" C ">\r\n"
#define RCPT_D "RCPT TO:<" D ">\r\n"

#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_AHEAD "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 Ok: queued\r\n"
#define USER_UNKNOWN "550 5.1.1 <c@x.example>: Recipient address rejected: User unknown\r\n"

static void expect_feed(test_session_t *s, const char *server, const char *client)
{
    assert_int_equal(ts_feed(s, server), 0);
    assert_string_equal(ts_take(s), client);
}

#define BYE "221 2.0.0 Bye\r\n"

/*
 * The setup failed with the server still listening: QUIT goes at once (as 4D does), nothing is
 * reported before its answer, and that answer does not replace the failure (`events`: what
 * comes with it, the closed line with the failure's code). Returns nothing; checks the wire.
 */
static void expect_quit_then_closed(test_session_t *s, int error, const char *events)
{
    assert_string_equal(ts_take(s), "QUIT\r\n");
    EXPECT_EVENTS(s, "");
    assert_false(email__smtp_engine_is_closed(s->e));
    assert_true(email__smtp_engine_quitting(s->e));
    assert_true(email__smtp_engine_waiting(s->e));
    assert_int_equal(ts_feed(s, BYE), error);
    EXPECT_EVENTS(s, events);
    assert_true(email__smtp_engine_is_closed(s->e));
    assert_int_equal(s->closed_status.error, error);
    assert_null(strstr(s->closed_status.status_text, "Bye"));
    assert_string_equal(ts_take(s), "");
}

/* The log never shows any of these (NULL-terminated). */
static void assert_log_hides(const test_session_t *s, const char *const *secrets)
{
    for (; *secrets; secrets++)
        if (strstr(buf_str(&s->log), *secrets))
            fail_msg("the log shows the secret \"%s\":\n%s", *secrets, buf_str(&s->log));
}

/* The bytes written after the first "DATA\r\n". */
static const char *after_data(const test_session_t *s)
{
    const char *p = strstr(buf_str(&s->wire), "DATA\r\n");
    assert_non_null(p);
    return p + 6;
}

/* ------------------------------------------------------------------------------------------- */
/* A plain session                                                                              */

static void test_plain_session(void **state)
{
    test_session_t *s = *state;
    static const char body[] = "Subject: hi\r\n\r\nhello\r\n.dot line\r\n";

    assert_true(email__smtp_engine_waiting(s->e)); /* the greeting is awaited */
    assert_false(email__smtp_engine_is_ready(s->e));
    assert_false(email__smtp_engine_idle(s->e));
    assert_string_equal(ts_take(s), ""); /* the client never speaks first */
    expect_feed(s, GREETING, EHLO_LINE);
    EXPECT_EVENTS(s, "");
    expect_feed(s, "250-mx.example greets client.example\r\n250 HELP\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_true(email__smtp_engine_is_ready(s->e));
    assert_true(email__smtp_engine_idle(s->e));
    assert_false(email__smtp_engine_waiting(s->e));
    assert_int_equal(email__smtp_engine_caps(s->e), SMTP_CAP_EHLO);

    test_job_t m1;
    test_job_init(&m1, "m1", A, body, B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_false(email__smtp_engine_idle(s->e));
    assert_string_equal(ts_take_one(s), MAIL_A);
    assert_true(email__smtp_engine_waiting(s->e));
    assert_string_equal(ts_take(s), ""); /* nothing more before the reply */
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "Subject: hi\r\n\r\nhello\r\n..dot line\r\n.\r\n");
    EXPECT_EVENTS(s, "");
    assert_true(email__smtp_engine_waiting(s->e));
    expect_feed(s, "250 2.0.0 Ok: queued as 4BC9F2\r\n", "");
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_string_equal(m1.job.status.status_text, "Ok: queued as 4BC9F2");
    assert_int_equal(m1.job.body_bytes, sizeof body - 1);
    assert_int_equal(m1.job.refusals.n, 0);
    assert_true(email__smtp_engine_idle(s->e));
    assert_false(email__smtp_engine_waiting(s->e));

    email__smtp_engine_quit(s->e);
    assert_string_equal(ts_take(s), "QUIT\r\n");
    EXPECT_EVENTS(s, "");
    assert_int_equal(ts_feed(s, "221 2.0.0 Bye\r\n"), 0);
    EXPECT_EVENTS(s, "closed EMAIL_OK 221 2.0.0\n");
    assert_true(s->closed_status.success);
    assert_true(email__smtp_engine_is_closed(s->e));
    assert_false(email__smtp_engine_is_ready(s->e));
    assert_false(email__smtp_engine_waiting(s->e));
    /* the session is over: no more bytes either way, no more events */
    assert_string_equal(ts_take(s), "");
    assert_true(ts_feed(s, "250 late\r\n") < 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), EMAIL_ESHUTDOWN);
    EXPECT_EVENTS(s, "");

    assert_string_equal(buf_str(&s->wire), EHLO_LINE MAIL_A RCPT_B
                        "DATA\r\nSubject: hi\r\n\r\nhello\r\n..dot line\r\n.\r\nQUIT\r\n");
    char bytes_line[64];
    snprintf(bytes_line, sizeof bytes_line, "C: <%zu bytes of message data>\n", sizeof body - 1);
    email_buf_t log;
    email__buf_init(&log);
    assert_int_equal(email__buf_printf(&log,
                                      "S: 220 mx.example ESMTP\n"
                                      "C: EHLO client.example\n"
                                      "S: 250-mx.example greets client.example\n"
                                      "S: 250 HELP\n"
                                      "C: MAIL FROM:<a@x.example>\n"
                                      "S: 250 2.1.0 Ok\n"
                                      "C: RCPT TO:<b@x.example>\n"
                                      "S: 250 2.1.5 Ok\n"
                                      "C: DATA\n"
                                      "S: 354 End data with <CR><LF>.<CR><LF>\n"
                                      "%s"
                                      "C: .\n"
                                      "S: 250 2.0.0 Ok: queued as 4BC9F2\n"
                                      "C: QUIT\n"
                                      "S: 221 2.0.0 Bye\n",
                                      bytes_line),
                     0);
    assert_string_equal(buf_str(&s->log), log.data);
    email__buf_free(&log);
    test_job_free(&m1);
}

/* ------------------------------------------------------------------------------------------- */
/* Pipelining                                                                                   */

typedef struct step {
    const char *server;  /* fed to the engine */
    const char *client;  /* everything it must write in answer */
} step_t;

static void run_steps(test_session_t *s, const step_t *steps, size_t n, size_t split)
{
    for (size_t i = 0; i < n; i++) {
        int rc;
        const char *got = ts_feed_take(s, steps[i].server, strlen(steps[i].server), split, &rc);
        if (rc || strcmp(got, steps[i].client))
            fail_msg("step %zu, pieces of %zu bytes: rc %d, wrote \"%s\", expected \"%s\"", i,
                     split, rc, got, steps[i].client);
    }
}

/*
 * Two messages on one connection with PIPELINING: one group per message, the second group right
 * behind the first end of data, QUIT after the last answer; the server's replies arriving all in
 * one chunk and in pieces of every size down to single bytes.
 */
static void test_pipelining_every_split(void **state)
{
    test_session_t *s = *state;
    static const step_t steps[] = {
        {GREETING, EHLO_LINE},
        {EHLO_PIPE, MAIL_A RCPT_B RCPT_C "DATA\r\n"},
        {OK_MAIL OK_RCPT OK_RCPT "354 go ahead\r\n", "one\r\n.\r\n" MAIL_A RCPT_D "DATA\r\n"},
        {"250 2.0.0 queued as 1\r\n" OK_MAIL OK_RCPT "354 go ahead\r\n", "two\r\n.\r\n"},
        {"250 2.0.0 queued as 2\r\n", "QUIT\r\n"},
        {"221 2.0.0 Bye\r\n", ""},
    };
    size_t longest = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (strlen(steps[i].server) > longest)
            longest = strlen(steps[i].server);

    for (size_t split = 0; split <= longest; split++) {
        ts_restart(s, NULL);
        test_job_t m1, m2;
        test_job_init(&m1, "m1", A, "one", B, C, NULL);
        test_job_init(&m2, "m2", A, "two\n", D, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
        email__smtp_engine_quit(s->e);
        run_steps(s, steps, sizeof steps / sizeof steps[0], split);
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "closed EMAIL_OK 221 2.0.0\n");
        assert_string_equal(m1.job.status.status_text, "queued as 1");
        assert_string_equal(m2.job.status.status_text, "queued as 2");
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

/* MAIL + every RCPT + DATA in one take; body, end of data and the next group in the next one. */
static void test_pipelining_one_take(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_true(email__smtp_engine_caps(s->e) & SMTP_CAP_PIPELINING);

    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, C, D, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take_one(s), MAIL_A RCPT_B RCPT_C RCPT_D "DATA\r\n");
    assert_string_equal(ts_take_one(s), "");
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take_one(s), ""); /* behind m1's DATA: waits for the 354 */

    assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_AHEAD), 0);
    assert_string_equal(ts_take_one(s), "one\r\n.\r\n" MAIL_A RCPT_D "DATA\r\n");
    assert_string_equal(ts_take_one(s), "");
    EXPECT_EVENTS(s, "");

    assert_int_equal(ts_feed(s, QUEUED OK_MAIL OK_RCPT GO_AHEAD), 0);
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_string_equal(ts_take_one(s), "two\r\n.\r\n");
    assert_int_equal(ts_feed(s, QUEUED), 0);
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_true(email__smtp_engine_idle(s->e));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* The next group waits while it would pass the window of unanswered commands. */
static void test_pipelining_window_between_jobs(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.window = 4;
    ts_restart(s, &cfg);
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "three\r\n", B, C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    /* end of data + m2's three commands = 4 */
    expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n.\r\n" MAIL_A RCPT_C "DATA\r\n");
    /* end of data + m3's four commands = 5 > 4: m3 waits for the answer to the end of data */
    expect_feed(s, QUEUED OK_MAIL OK_RCPT GO_AHEAD, "two\r\n.\r\n");
    expect_feed(s, QUEUED, MAIL_A RCPT_B RCPT_C "DATA\r\n");
    expect_feed(s, OK_MAIL OK_RCPT OK_RCPT GO_AHEAD, "three\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m3 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}

/*
 * protocol.h: window = "most commands awaiting a reply when pipelining". A transaction with more
 * recipients than the window must not put them all in flight at once.
 */
static void test_pipelining_window_large_transaction(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.window = 4;
    ts_restart(s, &cfg);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", "r1@x.example", "r2@x.example", "r3@x.example",
                  "r4@x.example", "r5@x.example", NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    email__smtp_engine_quit(s->e);
    fake_server_t f;
    fake_server_init(&f, EHLO_PIPE);
    fake_server_run(&f, s, NULL);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "closed EMAIL_OK 221 2.0.0\n");
    if (f.max_burst > cfg.window)
        fail_msg("%zu commands in flight at once with a window of %u", f.max_burst, cfg.window);
    fake_server_free(&f);
    test_job_free(&m1);
}

/* ------------------------------------------------------------------------------------------- */
/* SIZE, 8BITMIME, SMTPUTF8                                                                     */

#define EHLO_EXT "250-mx.example\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"

static void test_mail_parameters(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_EXT), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_int_equal(email__smtp_engine_caps(s->e),
                     SMTP_CAP_EHLO | SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8);
    assert_int_equal(email__smtp_engine_size_limit(s->e), 1000);

    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "caf\xc3\xa9\r\n", "b\xc3\xa9@x.example", NULL);
    m1.job.size = 500;
    m1.job.eight_bit = true;
    m1.job.smtputf8 = true;
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<a@x.example> SIZE=500 BODY=8BITMIME SMTPUTF8\r\n");
    expect_feed(s, OK_MAIL, "RCPT TO:<b\xc3\xa9@x.example>\r\n");
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "caf\xc3\xa9\r\n.\r\n");
    expect_feed(s, QUEUED, "");

    /* exactly the limit is fine; size 0 (unknown) sends no SIZE= */
    test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
    m2.job.size = 1000;
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<a@x.example> SIZE=1000\r\n");
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "x\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    test_job_init(&m3, "m3", "", "x\r\n", B, NULL); /* the null sender */
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<>\r\n");
    expect_feed(s, OK_MAIL, RCPT_B);
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
    test_job_free(&m3);
}

static void test_size_limit_refused_early(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_EXT), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t big, small;
    test_job_init(&big, "big", A, "x\r\n", B, NULL);
    big.job.size = 1001;
    assert_int_equal(email__smtp_engine_submit(s->e, &big.job), 0);
    EXPECT_EVENTS(s, "job big FAILED EMAIL_ESIZE 0 rejected=0\n");
    assert_string_equal(ts_take(s), "");
    assert_int_equal(big.body.pos, 0); /* not even read */
    assert_true(email__smtp_engine_idle(s->e));

    test_job_init(&small, "small", A, "x\r\n", B, NULL);
    small.job.size = 3;
    assert_int_equal(email__smtp_engine_submit(s->e, &small.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<a@x.example> SIZE=3\r\n");
    assert_string_equal(buf_str(&s->wire), EHLO_LINE "MAIL FROM:<a@x.example> SIZE=3\r\n");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
    test_job_free(&big);
    test_job_free(&small);
}

/* With pipelining: a too large job between two others is skipped, the next goes in its place. */
static void test_size_limit_refused_pipelined(void **state)
{
    test_session_t *s = *state;
    test_job_t m1, big, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&big, "big", A, "x\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "three\r\n", D, NULL);
    big.job.size = 5000;
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &big.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n.\r\n" MAIL_A RCPT_D "DATA\r\n");
    EXPECT_EVENTS(s, "ready\njob big FAILED EMAIL_ESIZE 0 rejected=0\n");
    expect_feed(s, QUEUED OK_MAIL OK_RCPT GO_AHEAD, "three\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m3 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_null(strstr(buf_str(&s->wire), C));
    test_job_free(&m1);
    test_job_free(&big);
    test_job_free(&m3);
}

/* A server without the extensions: no parameters; an SMTPUTF8 job cannot go at all. */
static void test_no_extensions(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    EXPECT_EVENTS(s, "ready\n");

    test_job_t utf8, m2;
    test_job_init(&utf8, "utf8", A, "x\r\n", "b\xc3\xa9@x.example", NULL);
    utf8.job.smtputf8 = true;
    assert_int_equal(email__smtp_engine_submit(s->e, &utf8.job), 0);
    EXPECT_EVENTS(s, "job utf8 FAILED EMAIL_ENOTSUP 0 rejected=0\n");
    assert_string_equal(ts_take(s), "");

    test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
    m2.job.size = 500;
    m2.job.eight_bit = true;
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    assert_string_equal(buf_str(&s->wire), EHLO_LINE MAIL_A);
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
    test_job_free(&utf8);
    test_job_free(&m2);
}

/* ------------------------------------------------------------------------------------------- */
/* AUTH                                                                                         */

static const char *const user_pass_secrets[] = {
    "pass",               /* the password */
    "cGFzcw",             /* its base64 */
    "AHVzZXIAcGFzcw",     /* PLAIN's initial response */
    "dXNlcg",             /* the user name as LOGIN sends it (a secret answer too) */
    NULL,
};

static smtp_engine_config_t auth_config(const char *user, const char *password)
{
    smtp_engine_config_t cfg = ts_config();
    cfg.creds.user = user;
    cfg.creds.password = password;
    cfg.tls_active = true;
    return cfg;
}

static void test_auth_plain(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.starttls = SMTP_TLS_REQUIRED; /* TLS from the first byte: no STARTTLS on top of it */
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-STARTTLS\r\n250-AUTH LOGIN PLAIN\r\n"
                                  "250 PIPELINING\r\n"),
                     0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    EXPECT_EVENTS(s, "");
    assert_false(email__smtp_engine_is_ready(s->e));
    assert_true(email__smtp_engine_waiting(s->e));
    assert_int_equal(email__smtp_engine_auth_mechs(s->e), AUTH_LOGIN | AUTH_PLAIN);
    expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_int_equal(email__smtp_engine_status(s->e)->status, 235);
    assert_true(email__smtp_engine_status(s->e)->success);
    assert_true(ts_log_has(s, "C: AUTH PLAIN ****"));
    assert_log_hides(s, user_pass_secrets);
}

static void test_auth_login(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    /* the old "AUTH=" syntax of some servers */
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH=LOGIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH LOGIN\r\n");
    expect_feed(s, "334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n");
    expect_feed(s, "334 UGFzc3dvcmQ6\r\n", "cGFzcw==\r\n");
    EXPECT_EVENTS(s, "");
    expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_true(ts_log_has(s, "C: AUTH LOGIN"));
    assert_true(ts_log_has(s, "C: ****"));
    assert_true(ts_log_has(s, "S: 334 VXNlcm5hbWU6"));
    assert_log_hides(s, user_pass_secrets);
}

/*
 * RFC 2195's example (its shared secret is "tanstaaftanstaaf"), CRAM-MD5 being the strongest of
 * the three offered.
 */
static void test_auth_cram_md5(void **state)
{
    test_session_t *s = *state;
    static const char *const secrets[] = {
        "tanstaaf", "dGFuc3RhYWZ0YW5zdGFhZg", "b913a602c7eda7a495b4e6e7334d3890",
        "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw", NULL,
    };
    smtp_engine_config_t cfg = auth_config("tim", "tanstaaftanstaaf");
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH CRAM-MD5\r\n");
    expect_feed(s, "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
                "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
    expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_true(ts_log_has(s, "C: AUTH CRAM-MD5"));
    assert_true(ts_log_has(s, "C: ****"));
    assert_log_hides(s, secrets);
}

static void test_auth_refused(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    assert_int_equal(ts_feed(s, "535 5.7.8 Error: authentication failed: bad credentials\r\n"),
                     0);
    expect_quit_then_closed(s, EMAIL_EAUTH,
                            "job m1 RETRYABLE EMAIL_EAUTH 0 rejected=0\n"
                            "closed EMAIL_EAUTH 535 5.7.8\n");
    assert_false(s->closed_status.success);
    const email_status_t *st = email__smtp_engine_status(s->e);
    assert_int_equal(st->error, EMAIL_EAUTH);
    assert_int_equal(st->status, 535);
    assert_string_equal(st->enhanced_code, "5.7.8");
    assert_non_null(strstr(st->status_text, "bad credentials"));
    /* 4D's order: the refusal, QUIT, its answer; then why the session ended */
    const char *log = buf_str(&s->log);
    const char *tail = strstr(log, "S: 535 ");
    assert_non_null(tail);
    assert_string_equal(tail, "S: 535 5.7.8 Error: authentication failed: bad credentials\n"
                              "C: QUIT\n"
                              "S: 221 2.0.0 Bye\n"
                              "#: SMTP Error: authentication with PLAIN failed: 535 5.7.8 "
                              "Error: authentication failed: bad credentials\n");
    assert_false(email__smtp_engine_is_ready(s->e));
    assert_true(email__smtp_engine_is_closed(s->e));
    assert_log_hides(s, user_pass_secrets);
    test_job_free(&m1);
}

/* Whatever the refusal (not 421), and however far the exchange went: QUIT, the refusal stays. */
static void test_quit_after_auth_refusals(void **state)
{
    test_session_t *s = *state;
    static const struct {
        const char *reply, *closed;
        bool login;
    } cases[] = {
        {"534 5.7.9 Authentication mechanism is too weak\r\n", "closed EMAIL_EAUTH 534 5.7.9\n",
         false},
        {"454 4.7.0 Temporary authentication failure\r\n", "closed EMAIL_EAUTH 454 4.7.0\n",
         false},
        {"535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n",
         "closed EMAIL_EAUTH 535 5.7.8\n", false},
        {"535 5.7.8 Authentication credentials invalid\r\n", "closed EMAIL_EAUTH 535 5.7.8\n",
         true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smtp_engine_config_t cfg = auth_config("user", "pass");
        ts_restart(s, &cfg);
        if (cases[i].login) {
            assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH LOGIN\r\n"), 0);
            assert_string_equal(ts_take(s), "AUTH LOGIN\r\n");
            expect_feed(s, "334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n");
            expect_feed(s, "334 UGFzc3dvcmQ6\r\n", "cGFzcw==\r\n");
        } else {
            assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
            assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
        }
        assert_int_equal(ts_feed(s, cases[i].reply), 0);
        expect_quit_then_closed(s, EMAIL_EAUTH, cases[i].closed);
        assert_log_hides(s, user_pass_secrets);
    }
}

/* After 421 the server is gone: no QUIT. */
static void test_no_quit_after_auth_421(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    assert_int_equal(ts_feed(s, "421 4.7.0 Too many errors, closing\r\n"), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "closed EMAIL_ECLOSED 421 4.7.0\n");
    assert_string_equal(ts_take(s), "");
    assert_null(strstr(buf_str(&s->wire), "QUIT"));
}

/*
 * QUIT's answer never comes (the caller's reply timer fires, or the server hangs up): the session
 * ends with the refusal all the same, and the log says why the answer is missing.
 */
static void test_quit_after_failure_unanswered(void **state)
{
    test_session_t *s = *state;
    static const int errors[] = {EMAIL_ETIMEDOUT, EMAIL_ECLOSED};
    for (size_t i = 0; i < 2; i++) {
        smtp_engine_config_t cfg = auth_config("user", "pass");
        ts_restart(s, &cfg);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
        assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
        expect_feed(s, "535 5.7.8 bad credentials\r\n", "QUIT\r\n");
        assert_true(email__smtp_engine_waiting(s->e));
        test_job_t m2;
        test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), EMAIL_ESHUTDOWN);
        EXPECT_EVENTS(s, "");
        email__smtp_engine_abort(s->e, errors[i], "no answer to QUIT");
        EXPECT_EVENTS(s, "job m1 RETRYABLE EMAIL_EAUTH 0 rejected=0\n"
                         "closed EMAIL_EAUTH 535 5.7.8\n");
        assert_non_null(strstr(s->closed_status.status_text, "bad credentials"));
        assert_true(ts_log_has(s, "#: SMTP Error: no answer to QUIT"));
        assert_true(ts_log_has(s, "#: SMTP Error: authentication with PLAIN failed: 535 5.7.8 "
                                   "bad credentials"));
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

/* A reply that no command awaits, while QUIT waits: a protocol error, the refusal stays. */
static void test_quit_after_failure_reply_out_of_turn(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    /* the 221 came before QUIT was handed over: it cannot be QUIT's answer */
    assert_int_equal(ts_feed(s, "535 5.7.8 bad credentials\r\n221 bye\r\n"), EMAIL_EAUTH);
    EXPECT_EVENTS(s, "closed EMAIL_EAUTH 535 5.7.8\n");
    assert_true(ts_log_has(s, "#: SMTP Error: reply without a command: 221 bye"));
}

/* EHLO and HELO both refused, or EHLO refused for now: the server still talks, QUIT. */
static void test_quit_after_hello_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "500 5.5.1 Command unrecognized\r\n"), 0);
    assert_string_equal(ts_take(s), "HELO client.example\r\n");
    assert_int_equal(ts_feed(s, "550 5.7.1 Go away\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_ESERVER, "closed EMAIL_ESERVER 550 5.7.1\n");

    ts_restart(s, NULL);
    assert_int_equal(ts_greet(s, "451 4.3.0 Try again later\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_ESERVER, "closed EMAIL_ESERVER 451 4.3.0\n");
}

/* The WLanguage rule: no usable mechanism offered and auth optional → go on without. */
static void test_auth_optional_without_usable_mechanism(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.auth_optional = true;
    cfg.auth_limit = AUTH_PLAIN | AUTH_LOGIN;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH CRAM-MD5\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_string_equal(ts_take(s), "");
    assert_null(strstr(buf_str(&s->wire), "AUTH"));
}

static void test_auth_required_without_usable_mechanism(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.auth_limit = AUTH_PLAIN | AUTH_LOGIN;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH CRAM-MD5\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_EAUTHMECH, "closed EMAIL_EAUTHMECH 0\n");
    assert_string_equal(buf_str(&s->wire), EHLO_LINE "QUIT\r\n");
}

/* A mechanism asked for by name that the server does not offer: the error says which. */
static void test_auth_wanted_mechanism_not_offered(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.auth_mech = AUTH_LOGIN;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_EAUTHMECH, "closed EMAIL_EAUTHMECH 0\n");
    const char *text = s->closed_status.status_text;
    assert_non_null(strstr(text, "LOGIN"));
    size_t open = 0, close = 0;
    for (const char *p = text; *p; p++)
        open += *p == '(', close += *p == ')';
    if (open != close)
        fail_msg("unbalanced parentheses in \"%s\"", text);
}

/* A server without AUTH at all: ready, even when authentication is not optional. */
static void test_auth_not_offered(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_string_equal(ts_take(s), "");
}

/* Credentials never go over cleartext unless allowed; the AUTH line is never written. */
static void test_auth_refuses_cleartext(void **state)
{
    test_session_t *s = *state;
    static const int policies[] = {SMTP_TLS_NEVER, SMTP_TLS_IF_OFFERED};
    for (size_t i = 0; i < 2; i++) {
        smtp_engine_config_t cfg = auth_config("user", "pass");
        cfg.tls_active = false;
        cfg.starttls = policies[i];
        ts_restart(s, &cfg);
        assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n"), 0);
        expect_quit_then_closed(s, EMAIL_EINSECURE, "closed EMAIL_EINSECURE 0\n");
        assert_string_equal(buf_str(&s->wire), EHLO_LINE "QUIT\r\n");
        assert_log_hides(s, user_pass_secrets);
    }
}

static void test_auth_cleartext_allowed(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.tls_active = false;
    cfg.allow_cleartext_auth = true;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_log_hides(s, user_pass_secrets);
}

/* ------------------------------------------------------------------------------------------- */
/* EHLO refused: HELO                                                                           */

static void test_helo_fallback(void **state)
{
    test_session_t *s = *state;
    static const char *const refusals[] = {
        "500 5.5.1 Syntax error, command unrecognized\r\n",
        "502 5.5.2 Error: command not recognized\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, refusals[i]), 0);
        assert_string_equal(ts_take(s), "HELO client.example\r\n");
        EXPECT_EVENTS(s, "");
        expect_feed(s, "250 mx.example\r\n", "");
        EXPECT_EVENTS(s, "ready\n");
        assert_int_equal(email__smtp_engine_caps(s->e), 0);

        test_job_t m1;
        test_job_init(&m1, "m1", A, "x\r\n", B, C, NULL);
        m1.job.size = 3;
        m1.job.eight_bit = true;
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_string_equal(ts_take(s), MAIL_A); /* no SIZE=, no BODY=, no pipelining */
        expect_feed(s, "250 ok\r\n", RCPT_B);
        expect_feed(s, "250 ok\r\n", RCPT_C);
        expect_feed(s, "250 ok\r\n", "DATA\r\n");
        expect_feed(s, "354 go\r\n", "x\r\n.\r\n");
        expect_feed(s, "250 ok\r\n", "");
        EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 rejected=0\n");
        test_job_free(&m1);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* STARTTLS                                                                                     */

#define EHLO_TLS "250-mx.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"

static void test_starttls_required_not_offered(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.tls_active = false;
    cfg.starttls = SMTP_TLS_REQUIRED;
    ts_restart(s, &cfg);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
                     0);
    expect_quit_then_closed(s, EMAIL_ETLSREQUIRED,
                            "job m1 RETRYABLE EMAIL_ETLSREQUIRED 0 rejected=0\n"
                            "closed EMAIL_ETLSREQUIRED 0\n");
    assert_string_equal(buf_str(&s->wire), EHLO_LINE "QUIT\r\n");
    test_job_free(&m1);
}

/* STARTTLS, the handshake, EHLO again with the old capabilities forgotten, then AUTH. */
static void test_starttls_then_ehlo_again(void **state)
{
    test_session_t *s = *state;
    static const int policies[] = {SMTP_TLS_IF_OFFERED, SMTP_TLS_REQUIRED};
    for (size_t i = 0; i < 2; i++) {
        smtp_engine_config_t cfg = auth_config("user", "pass");
        cfg.tls_active = false;
        cfg.starttls = policies[i];
        ts_restart(s, &cfg);
        assert_int_equal(ts_greet(s, EHLO_TLS), 0);
        assert_string_equal(ts_take(s), "STARTTLS\r\n"); /* not AUTH: not yet encrypted */
        assert_int_equal(ts_feed(s, "220 2.0.0 Ready to start TLS\r\n"), 0);
        EXPECT_EVENTS(s, "starttls\n");
        assert_string_equal(ts_take(s), "");
        assert_false(email__smtp_engine_is_ready(s->e));

        email__smtp_engine_tls_established(s->e);
        assert_int_equal(email__smtp_engine_caps(s->e), 0);
        assert_int_equal(email__smtp_engine_auth_mechs(s->e), 0);
        assert_string_equal(ts_take(s), EHLO_LINE);
        /* the server offers other things once encrypted: only these count now */
        expect_feed(s, "250-mx.example\r\n250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n");
        expect_feed(s, "334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n");
        expect_feed(s, "334 UGFzc3dvcmQ6\r\n", "cGFzcw==\r\n");
        expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
        EXPECT_EVENTS(s, "ready\n");
        assert_false(email__smtp_engine_caps(s->e) & SMTP_CAP_PIPELINING);

        test_job_t m1;
        test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_string_equal(ts_take_one(s), MAIL_A); /* no pipelining any more */
        assert_log_hides(s, user_pass_secrets);
        email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
        EXPECT_EVENTS(s, "job m1 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                         "closed EMAIL_ECLOSED 0\n");
        test_job_free(&m1);
    }
}

/* Bytes behind the 220 arrived in clear and may be an attacker's: the session ends. */
static void test_starttls_response_injection(void **state)
{
    test_session_t *s = *state;
    static const char *const chunks[] = {
        "220 go\r\n250 fake\r\n",
        "220 go\r\n250",
        "220 go\r\n\r\n",
        "220-go\r\n220 go\r\n250-mx.example\r\n250 AUTH PLAIN\r\n",
    };
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        smtp_engine_config_t cfg = ts_config();
        cfg.starttls = SMTP_TLS_REQUIRED;
        ts_restart(s, &cfg);
        assert_int_equal(ts_greet(s, EHLO_TLS), 0);
        assert_string_equal(ts_take(s), "STARTTLS\r\n");
        assert_int_equal(ts_feed(s, chunks[i]), EMAIL_EPROTO);
        EXPECT_EVENTS(s, "closed EMAIL_EPROTO 220\n");
        email__smtp_engine_tls_established(s->e); /* too late: nothing happens */
        assert_string_equal(ts_take(s), "");
        EXPECT_EVENTS(s, "");
        assert_string_equal(buf_str(&s->wire), EHLO_LINE "STARTTLS\r\n");
    }

    /* the same bytes in a later read, before the handshake is done */
    smtp_engine_config_t cfg = ts_config();
    cfg.starttls = SMTP_TLS_REQUIRED;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, EHLO_TLS), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    assert_int_equal(ts_feed(s, "220 go\r\n"), 0);
    EXPECT_EVENTS(s, "starttls\n");
    assert_int_equal(ts_feed(s, "250 fake\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(s, "closed EMAIL_EPROTO 0\n");
    email__smtp_engine_tls_established(s->e);
    assert_string_equal(ts_take(s), "");
}

/* The handshake fails: the transport says so with abort; queued jobs may go elsewhere. */
static void test_starttls_handshake_fails(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.starttls = SMTP_TLS_REQUIRED;
    ts_restart(s, &cfg);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(ts_greet(s, EHLO_TLS), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    assert_int_equal(ts_feed(s, "220 2.0.0 Ready to start TLS\r\n"), 0);
    email__smtp_engine_abort(s->e, EMAIL_ECERT, "the server's certificate is not trusted");
    EXPECT_EVENTS(s, "starttls\n"
                     "job m1 RETRYABLE EMAIL_ECERT 0 rejected=0\n"
                     "closed EMAIL_ECERT 0\n");
    email__smtp_engine_tls_established(s->e); /* too late: nothing happens */
    assert_string_equal(ts_take(s), "");
    assert_string_equal(buf_str(&s->wire), EHLO_LINE "STARTTLS\r\n");
    test_job_free(&m1);
}

static void test_starttls_refused_required(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    cfg.tls_active = false;
    cfg.starttls = SMTP_TLS_REQUIRED;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, EHLO_TLS), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    assert_int_equal(ts_feed(s, "454 4.7.0 TLS not available due to local problem\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_ETLSREQUIRED, "closed EMAIL_ETLSREQUIRED 454 4.7.0\n");
    assert_string_equal(buf_str(&s->wire), EHLO_LINE "STARTTLS\r\nQUIT\r\n");
    assert_true(ts_log_has(s, "C: QUIT")); /* in clear: TLS never started */
}

static void test_starttls_refused_if_offered(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.starttls = SMTP_TLS_IF_OFFERED;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, EHLO_TLS), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    expect_feed(s, "454 4.7.0 TLS not available due to local problem\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1;
    test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
    test_job_free(&m1);

    /* going on unencrypted does not make it fine to send credentials */
    cfg = auth_config("user", "pass");
    cfg.tls_active = false;
    cfg.starttls = SMTP_TLS_IF_OFFERED;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, EHLO_TLS), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    assert_int_equal(ts_feed(s, "454 4.7.0 TLS not available\r\n"), 0);
    expect_quit_then_closed(s, EMAIL_EINSECURE, "closed EMAIL_EINSECURE 0\n");
    assert_log_hides(s, user_pass_secrets);
}

/* ------------------------------------------------------------------------------------------- */
/* Refused recipients, refused sender                                                           */

static void test_partial_recipients(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "x\r\n", B, C, D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, RCPT_C);
    expect_feed(s, USER_UNKNOWN, RCPT_D);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "x\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=1\n");
    assert_int_equal(m1.job.refusals.n, 1);
    assert_string_equal(m1.job.refusals.v[0].address, C);
    assert_int_equal(m1.job.refusals.v[0].code, 550);
    assert_string_equal(m1.job.refusals.v[0].text,
                        "<c@x.example>: Recipient address rejected: User unknown");
    assert_int_equal(m1.job.status.recipients, 3);
    test_job_free(&m1);
}

static void test_partial_recipients_pipelined(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "x\r\n", B, C, D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B RCPT_C RCPT_D "DATA\r\n");
    expect_feed(s, OK_MAIL OK_RCPT "450 4.2.0 <c@x.example>: greylisted\r\n" OK_RCPT GO_AHEAD,
                "x\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=1\n");
    assert_string_equal(m1.job.refusals.v[0].address, C);
    assert_int_equal(m1.job.refusals.v[0].code, 450);
    assert_string_equal(m1.job.refusals.v[0].text, "<c@x.example>: greylisted");
    test_job_free(&m1);
}

static void test_all_recipients_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "secret body\r\n", B, C, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, "550 5.1.1 <b@x.example>: User unknown\r\n", RCPT_C);
    expect_feed(s, "553 5.1.3 <c@x.example>: Bad address syntax\r\n", "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=2\n");
    assert_int_equal(m1.job.refusals.n, 2);
    assert_string_equal(m1.job.refusals.v[1].address, C);
    assert_int_equal(m1.job.refusals.v[1].code, 553);
    expect_feed(s, "250 2.0.0 Ok\r\n", MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_D);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "two\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_null(strstr(buf_str(&s->wire), "secret body"));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* Pipelined, every recipient refused, DATA refused too: RSET, and the next message goes. */
static void test_all_recipients_refused_pipelined(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "secret body\r\n", B, C, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B RCPT_C "DATA\r\n");
    assert_int_equal(ts_feed(s, OK_MAIL "550 5.1.1 <b@x.example>: User unknown\r\n"
                                 "550 5.1.1 <c@x.example>: User unknown\r\n"
                                 "554 5.5.1 Error: no valid recipients\r\n"),
                     0);
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=2\n");
    assert_string_equal(ts_take_one(s), "RSET\r\n" MAIL_A RCPT_D "DATA\r\n");
    expect_feed(s, "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT GO_AHEAD, "two\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_null(strstr(buf_str(&s->wire), "secret body"));
    test_job_free(&m1);
    test_job_free(&m2);
}

/*
 * Pipelined, every recipient refused, yet the server answers DATA with 354 (RFC 2920 3.1): the
 * data is ended empty, never with the message, and the job fails whatever the server says.
 */
static void test_all_recipients_refused_pipelined_354(void **state)
{
    test_session_t *s = *state;
    static const char *const answers[] = {"554 5.5.1 no valid recipients\r\n", "250 2.0.0 Ok\r\n"};
    for (size_t i = 0; i < 2; i++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
        test_job_t m1, m2;
        test_job_init(&m1, "m1", A, "secret body\r\n", B, C, NULL);
        test_job_init(&m2, "m2", A, "two\r\n", D, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
        assert_string_equal(ts_take(s), MAIL_A RCPT_B RCPT_C "DATA\r\n");
        assert_int_equal(ts_feed(s, OK_MAIL "550 5.1.1 <b@x.example>: User unknown\r\n"
                                     "550 5.1.1 <c@x.example>: User unknown\r\n" GO_AHEAD),
                         0);
        assert_string_equal(ts_take(s), ".\r\n");
        EXPECT_EVENTS(s, "ready\n");
        assert_int_equal(ts_feed(s, answers[i]), 0);
        EXPECT_EVENTS(s, "job m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=2\n");
        assert_string_equal(ts_take(s), MAIL_A RCPT_D "DATA\r\n");
        assert_null(strstr(buf_str(&s->wire), "secret body"));
        assert_int_equal(m1.body.pos, 0);
        email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

static void test_mail_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", "bad@x.example", "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<bad@x.example>\r\n");
    expect_feed(s, "553 5.7.1 <bad@x.example>: Sender address rejected: Access denied\r\n",
                "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 553 5.7.1 rejected=0\n");
    assert_string_equal(m1.job.status.status_text,
                        "<bad@x.example>: Sender address rejected: Access denied");
    expect_feed(s, "250 2.0.0 Ok\r\n", MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "two\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* job_done may ask for QUIT or queue the next message: the RSET of the failed transaction
 * still goes first (found by fuzzing). */
static void quit_on_done(test_session_t *s, smtp_job_t *job)
{
    email__smtp_engine_quit(s->e);
}

static void test_rset_before_quit_from_job_done(void **state)
{
    test_session_t *s = *state;
    s->on_job_done = quit_on_done;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", "bad@x.example", "one\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<bad@x.example>\r\n");
    expect_feed(s, "550 5.7.1 sender rejected\r\n", "RSET\r\n");
    expect_feed(s, "250 2.0.0 Ok\r\n", "QUIT\r\n");
    test_job_free(&m1);
}

/* A body that cannot be read ends the session: whatever job_done queues is never written
 * behind the partial body (found by fuzzing). */
static void submit_or_quit_on_done(test_session_t *s, smtp_job_t *job)
{
    test_job_t *next = s->user;
    if (next)
        assert_int_equal(email__smtp_engine_submit(s->e, &next->job), EMAIL_ESHUTDOWN);
    else
        email__smtp_engine_quit(s->e);
}

static void test_nothing_behind_unreadable_body(void **state)
{
    test_session_t *s = *state;
    for (int submit = 0; submit < 2; submit++) {
        ts_restart(s, NULL);
        test_job_t m1, m2;
        test_job_init(&m1, "m1", A, "hello, world\r\n", B, NULL);
        test_job_init(&m2, "m2", A, "hi\r\n", B, NULL);
        m1.body.fail_at = 7;
        m1.body.error = EMAIL_EIO;
        s->on_job_done = submit_or_quit_on_done;
        s->user = submit ? &m2 : NULL;
        assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        ts_take(s);
        ts_feed(s, "250 Ok\r\n");
        ts_take(s);
        ts_feed(s, "250 Ok\r\n");
        ts_take(s);
        ts_feed(s, "354 go\r\n");
        ts_take(s);
        const char *wire = buf_str(&s->wire);
        const char *data = strstr(wire, "DATA\r\n");
        assert_non_null(data);
        assert_null(strstr(data, "MAIL FROM"));
        assert_null(strstr(data, "QUIT"));
        assert_null(strstr(data, "\r\n.\r\n"));
        assert_int_equal(s->nclosed, 1);
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

static void test_mail_refused_pipelined(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", "bad@x.example", "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<bad@x.example>\r\n" RCPT_B "DATA\r\n");
    expect_feed(s,
                "553 5.7.1 <bad@x.example>: Sender address rejected: Access denied\r\n"
                "503 5.5.1 Error: need MAIL command\r\n"
                "503 5.5.1 Error: need RCPT command\r\n",
                "RSET\r\n" MAIL_A RCPT_B "DATA\r\n");
    /* the reason is the sender's refusal, not the errors that followed from it */
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 553 5.7.1 rejected=0\n");
    expect_feed(s, "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT GO_AHEAD, "two\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
}

/*
 * One recipient accepted, one refused, then DATA refused: the message failed because of the DATA
 * refusal, and that is the code and text its status must carry (the refused recipient is in the
 * refusals list already).
 */
static void test_data_refused_after_partial_refusal(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", B, C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, RCPT_C);
    expect_feed(s, USER_UNKNOWN, "DATA\r\n");
    expect_feed(s, "554 5.3.4 Message too big for system\r\n", "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 554 5.3.4 rejected=1\n");
    assert_string_equal(m1.job.status.status_text, "Message too big for system");
    test_job_free(&m1);
}

/* ------------------------------------------------------------------------------------------- */
/* 421 and connection loss                                                                      */

#define CLOSING "421 4.4.2 mx.example Error: timeout exceeded\r\n"

static void test_421_before_end_of_data(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    EXPECT_EVENTS(s, "ready\n");
    assert_int_equal(ts_feed(s, CLOSING), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "job m1 RETRYABLE EMAIL_ECLOSED 421 4.4.2 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.4.2\n");
    assert_string_equal(ts_take(s), "");
    assert_true(email__smtp_engine_is_closed(s->e));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* 421 in answer to a RCPT of a pipelined group; the rest of the group is never answered. */
static void test_421_pipelined_rcpt(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, C, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B RCPT_C "DATA\r\n");
    assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT CLOSING), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 RETRYABLE EMAIL_ECLOSED 421 4.4.2 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.4.2\n");
    assert_string_equal(ts_take(s), "");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* 421 as the answer to the end of data is the server's answer: failed, not unknown. */
static void test_421_answer_to_end_of_data(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "one\r\n.\r\n");
    assert_int_equal(ts_feed(s, "421 4.3.0 mx.example shutting down\r\n"), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 FAILED EMAIL_ESERVER 421 4.3.0 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.3.0\n");
    assert_string_equal(m1.job.status.status_text, "mx.example shutting down");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* A fresh session brought to the point where m1's body was taken (and reported written or not). */
static void start_to_body(test_session_t *s, test_job_t *m1, test_job_t *m2, bool write_body)
{
    ts_restart(s, NULL); /* a fresh one for each case */
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_init(m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(m2, "m2", A, "two\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1->job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2->job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    assert_int_equal(ts_feed(s, GO_AHEAD), 0);
    s->no_written = !write_body;
    assert_string_equal(ts_take(s), "one\r\n.\r\n");
    EXPECT_EVENTS(s, "ready\n");
}

static void test_abort_after_end_of_data_written(void **state)
{
    test_session_t *s = *state;
    test_job_t m1, m2;
    start_to_body(s, &m1, &m2, true);
    assert_true(email__smtp_engine_waiting(s->e));
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
    EXPECT_EVENTS(s, "job m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 0\n");
    assert_true(email__smtp_engine_is_closed(s->e));
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "again"); /* reported once */
    EXPECT_EVENTS(s, "");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* Not all of the end of data reached the transport: the server cannot have taken the message. */
static void test_abort_before_end_of_data_written(void **state)
{
    test_session_t *s = *state;
    size_t n = strlen("one\r\n.\r\n");
    for (size_t written = 0; written <= n; written++) {
        test_job_t m1, m2;
        start_to_body(s, &m1, &m2, false);
        email__smtp_engine_written(s->e, written);
        email__smtp_engine_abort(s->e, EMAIL_ETIMEDOUT, "timed out");
        if (written == n)
            EXPECT_EVENTS(s, "job m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                             "job m2 RETRYABLE EMAIL_ETIMEDOUT 0 rejected=0\n"
                             "closed EMAIL_ETIMEDOUT 0\n");
        else
            EXPECT_EVENTS(s, "job m1 RETRYABLE EMAIL_ETIMEDOUT 0 rejected=0\n"
                             "job m2 RETRYABLE EMAIL_ETIMEDOUT 0 rejected=0\n"
                             "closed EMAIL_ETIMEDOUT 0\n");
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

/* Before the 354, and after the 354 but before the body was taken. */
static void test_abort_before_body(void **state)
{
    test_session_t *s = *state;
    for (int at354 = 0; at354 < 2; at354++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_string_equal(ts_take(s), MAIL_A);
        expect_feed(s, OK_MAIL, RCPT_B);
        expect_feed(s, OK_RCPT, "DATA\r\n");
        if (at354)
            assert_int_equal(ts_feed(s, GO_AHEAD), 0);
        email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                         "closed EMAIL_ECLOSED 0\n");
        assert_string_equal(ts_take(s), "");
        test_job_free(&m1);
    }
}

/* Pipelined: m1's end of data and m2's group written, nothing answered. */
static void test_abort_pipelined(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "three\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n.\r\n" MAIL_A RCPT_C "DATA\r\n");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "job m3 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 0\n");
    assert_non_null(strstr(m1.job.status.status_text, "may have been delivered"));
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}

/*
 * Every recipient was refused, the server answered DATA with 354 anyway and the engine ended the
 * empty data; the connection drops before the answer. Nothing can have been delivered (no
 * recipient was accepted): the job failed, its outcome is not unknown.
 */
static void test_abort_after_empty_data_of_refused_transaction(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    expect_feed(s, OK_MAIL "550 5.1.1 <b@x.example>: User unknown\r\n" GO_AHEAD, ".\r\n");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=1\n"
                     "closed EMAIL_ECLOSED 0\n");
    test_job_free(&m1);
}


/*
 * The status `closed` reports after the transport failed: our error and text, and no server reply
 * code (email_status_t.status: "0 when the failure was not the server's") — not the code of the
 * last setup reply (here AUTH's 235 2.7.0).
 */
static void test_abort_closed_status(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = auth_config("user", "pass");
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    expect_feed(s, "235 2.7.0 Authentication successful\r\n", "");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
    EXPECT_EVENTS(s, "ready\nclosed EMAIL_ECLOSED 0\n");
    assert_false(s->closed_status.success);
    assert_string_equal(s->closed_status.enhanced_code, "");
    assert_string_equal(s->closed_status.status_text, "connection reset by peer");
}

/* ------------------------------------------------------------------------------------------- */
/* Broken replies                                                                               */

static void test_garbage_at_setup(void **state)
{
    test_session_t *s = *state;
    static const struct {
        const char *data;
        size_t n;
        bool after_greeting;
    } cases[] = {
#define CASE(bytes, after_greeting) {bytes, sizeof(bytes) - 1, after_greeting}
        CASE("hello\r\n", false),
        CASE("220 mx\0.example\r\n", false),
        CASE("199 too low\r\n", false),
        CASE("600 too high\r\n", false),
        CASE("2200 four digits\r\n", false),
        CASE("250-mx.example\r\n251 PIPELINING\r\n", true), /* code mismatch */
        CASE("250-mx.example\r\n250-PIPE\0LINING\r\n250 HELP\r\n", true),
#undef CASE
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_restart(s, NULL);
        if (cases[i].after_greeting) {
            assert_int_equal(ts_feed(s, GREETING), 0);
            assert_string_equal(ts_take(s), EHLO_LINE);
        }
        assert_int_equal(ts_feedn(s, cases[i].data, cases[i].n), EMAIL_EPROTO);
        EXPECT_EVENTS(s, "closed EMAIL_EPROTO 0\n");
        assert_string_equal(ts_take(s), "");
        assert_true(email__smtp_engine_is_closed(s->e));
        assert_true(ts_feed(s, GREETING) < 0);
        EXPECT_EVENTS(s, "");
    }
}

static void test_garbage_in_transaction(void **state)
{
    test_session_t *s = *state;
    /* before end of data: retryable; after it was written: unknown */
    for (int after_eod = 0; after_eod < 2; after_eod++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_string_equal(ts_take(s), MAIL_A);
        if (after_eod) {
            expect_feed(s, OK_MAIL, RCPT_B);
            expect_feed(s, OK_RCPT, "DATA\r\n");
            expect_feed(s, GO_AHEAD, "one\r\n.\r\n");
            assert_int_equal(ts_feedn(s, "250 queued\0\r\n", sizeof "250 queued\0\r\n" - 1),
                             EMAIL_EPROTO);
            EXPECT_EVENTS(s, "ready\n"
                             "job m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                             "closed EMAIL_EPROTO 0\n");
        } else {
            assert_int_equal(ts_feed(s, "hello\r\n"), EMAIL_EPROTO);
            EXPECT_EVENTS(s, "ready\n"
                             "job m1 RETRYABLE EMAIL_EPROTO 0 rejected=0\n"
                             "closed EMAIL_EPROTO 0\n");
        }
        assert_string_equal(ts_take(s), "");
        test_job_free(&m1);
    }
}

/* A reply when none is awaited; a 421 out of the blue. */
static void test_unexpected_replies(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    assert_int_equal(ts_feed(s, "250 spurious\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(s, "ready\nclosed EMAIL_EPROTO 250\n");

    ts_restart(s, NULL);
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    assert_int_equal(ts_feed(s, "421 4.4.2 mx.example Error: timeout exceeded\r\n"),
                     EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\nclosed EMAIL_ECLOSED 421 4.4.2\n");

    /* a greeting that refuses */
    ts_restart(s, NULL);
    assert_int_equal(ts_feed(s, "554 5.3.2 mx.example no service here\r\n"), 0);
    /* RFC 5321 3.1: the server waits for QUIT after a 554 greeting */
    expect_quit_then_closed(s, EMAIL_ESERVER, "closed EMAIL_ESERVER 554 5.3.2\n");

    /* a 421 greeting: the server is going away, nothing more is said */
    ts_restart(s, NULL);
    assert_int_equal(ts_feed(s, "421 4.3.2 mx.example shutting down\r\n"), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "closed EMAIL_ECLOSED 421 4.3.2\n");
    assert_string_equal(ts_take(s), "");
    assert_string_equal(buf_str(&s->wire), "");
}

/*
 * An EHLO reply whose last line is a bare "250" (no text). Invalid (RFC 5321 4.1.1.1 wants
 * "250 " ehlo-line) but seen in the wild; it must not be read past its end (run under valgrind
 * or ASan to see it).
 */
static void test_ehlo_bare_last_line(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-PIPELINING\r\n250\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_true(email__smtp_engine_caps(s->e) & SMTP_CAP_PIPELINING);
}

/* Keywords are case-insensitive; unknown ones are ignored. */
static void test_ehlo_keywords(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example Hello\r\n250-pipelining\r\n250-Size 2048\r\n"
                                  "250-X-EXPS GSSAPI NTLM\r\n250-chunking\r\n250-DSN\r\n"
                                  "250-ENHANCEDSTATUSCODES\r\n250-VRFY\r\n250 8bitmime\r\n"),
                     0);
    assert_int_equal(email__smtp_engine_caps(s->e),
                     SMTP_CAP_EHLO | SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_CHUNKING |
                         SMTP_CAP_DSN | SMTP_CAP_ENHANCEDSTATUSCODES | SMTP_CAP_8BITMIME);
    assert_int_equal(email__smtp_engine_size_limit(s->e), 2048);
    assert_int_equal(email__smtp_engine_auth_mechs(s->e), 0);
}

/* ------------------------------------------------------------------------------------------- */
/* Message bodies                                                                               */

/* The body source fails part way: never a truncated message ended as if complete. */
static void test_body_error(void **state)
{
    test_session_t *s = *state;
    static const long fail_ats[] = {0, 1, 5000, 70000, 100000};
    email_buf_t body;
    email__buf_init(&body);
    for (int i = 0; body.len < 150000; i++)
        assert_int_equal(email__buf_printf(&body, "line %06d of the message\r\n", i), 0);

    for (size_t k = 0; k < sizeof fail_ats / sizeof fail_ats[0]; k++) {
        for (int pipelined = 0; pipelined < 2; pipelined++) {
            ts_restart(s, NULL);
            assert_int_equal(ts_greet(s, pipelined ? EHLO_PIPE : EHLO_BASIC), 0);
            test_job_t m1, m2;
            test_job_init(&m1, "m1", A, body.data, B, NULL);
            test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
            m1.body.fail_at = fail_ats[k];
            m1.body.error = EMAIL_EIO;
            m1.body.max_read = 3000;
            assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
            assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
            if (pipelined) {
                assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
                assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT GO_AHEAD), 0);
            } else {
                assert_string_equal(ts_take(s), MAIL_A);
                expect_feed(s, OK_MAIL, RCPT_B);
                expect_feed(s, OK_RCPT, "DATA\r\n");
                assert_int_equal(ts_feed(s, GO_AHEAD), 0);
            }
            ts_take(s);
            EXPECT_EVENTS(s, "ready\n"
                             "job m1 FAILED EMAIL_EIO 0 rejected=0\n"
                             "job m2 RETRYABLE EMAIL_EIO 0 rejected=0\n"
                             "closed EMAIL_EIO 0\n");
            assert_true(email__smtp_engine_is_closed(s->e));
            const char *data = after_data(s);
            size_t n = strlen(data);
            assert_true(n <= (size_t)fail_ats[k]);
            assert_memory_equal(data, body.data, n); /* what went out is the start of the body */
            assert_null(strstr(data, "\r\n.\r\n"));
            assert_false(n == 3 && !strcmp(data, ".\r\n"));
            assert_null(strstr(data, "MAIL FROM")); /* m2 never started */
            assert_string_equal(ts_take(s), "");
            test_job_free(&m1);
            test_job_free(&m2);
        }
    }
    email__buf_free(&body);
}

/*
 * Dot-stuffing and line endings, with the body handed over in reads of every size: a line
 * starting with "." gets another, bare CR and bare LF become CRLF, a "\r\n.\r\n" inside the body
 * never ends the data, and the end of data is written exactly once.
 */
static void test_dot_stuffing(void **state)
{
    test_session_t *s = *state;
    static const struct {
        const char *body, *wire;
    } cases[] = {
        {".starts\nbare LF\rbare CR\r\n..two\r\n.\r\nend\r\n.\r\n.\r\nlast",
         "..starts\r\nbare LF\r\nbare CR\r\n...two\r\n..\r\nend\r\n..\r\n..\r\nlast\r\n.\r\n"},
        {"", ".\r\n"},
        {"\r\n", "\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {".\r\n", "..\r\n.\r\n"},
        {"\r\n.\r\n", "\r\n..\r\n.\r\n"},
        {"a\r", "a\r\n.\r\n"},
        {"a\n.\n", "a\r\n..\r\n.\r\n"},
        {"a\r\r\n\n.", "a\r\n\r\n\r\n..\r\n.\r\n"},
        {"x.\r\n .\r\n", "x.\r\n .\r\n.\r\n"},
        {"\n\n", "\r\n\r\n.\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].body);
        for (size_t max_read = 0; max_read <= len + 1; max_read++) {
            ts_restart(s, NULL);
            assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
            test_job_t m1;
            test_job_init(&m1, "m1", A, cases[i].body, B, NULL);
            m1.body.max_read = max_read;
            assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
            assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
            assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT GO_AHEAD), 0);
            const char *got = ts_take(s);
            if (strcmp(got, cases[i].wire))
                fail_msg("case %zu, reads of %zu: wrote \"%s\", expected \"%s\"", i, max_read,
                         got, cases[i].wire);
            expect_feed(s, QUEUED, "");
            EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
            assert_int_equal(m1.job.body_bytes, len);
            test_job_free(&m1);
        }
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Round trips against the fake server                                                          */

static char *random_body(uint64_t *rng, size_t len)
{
    static const char alphabet[] = "..\r\n\r\nab c";
    char *b = malloc(len + 1);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++)
        b[i] = alphabet[xorshift64(rng) % (sizeof alphabet - 1)];
    b[len] = '\0';
    return b;
}

/*
 * Random bodies (dots, bare CR and LF everywhere), random read sizes, random reply splits, with
 * and without pipelining, one body larger than the engine's output chunk: what the server gets,
 * dot-stuffing undone, is each body with its line endings made CRLF.
 */
static void test_round_trips(void **state)
{
    test_session_t *s = *state;
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 60; round++) {
        bool pipelining = round % 2;
        size_t njobs = 1 + xorshift64(&rng) % 5;
        test_job_t jobs[5];
        char *bodies[5];
        char names[5][8];
        ts_restart(s, NULL);
        for (size_t j = 0; j < njobs; j++) {
            size_t len = round == 7 && j == 0 ? 300000 : xorshift64(&rng) % 3000;
            bodies[j] = random_body(&rng, len);
            snprintf(names[j], sizeof names[j], "m%zu", j + 1);
            test_job_init(&jobs[j], names[j], A, bodies[j], B, C, NULL);
            jobs[j].body.len = len;
            jobs[j].body.max_read = xorshift64(&rng) % 3 ? 1 + xorshift64(&rng) % 5000 : 0;
            assert_int_equal(email__smtp_engine_submit(s->e, &jobs[j].job), 0);
        }
        email__smtp_engine_quit(s->e);
        fake_server_t f;
        fake_server_init(&f, pipelining ? EHLO_PIPE : EHLO_BASIC);
        fake_server_run(&f, s, &rng);

        email_buf_t want;
        email__buf_init(&want);
        assert_int_equal(email__buf_puts(&want, "ready\n"), 0);
        for (size_t j = 0; j < njobs; j++)
            assert_int_equal(
                email__buf_printf(&want, "job %s SENT EMAIL_OK 250 2.0.0 rejected=0\n", names[j]),
                0);
        assert_int_equal(email__buf_puts(&want, "closed EMAIL_OK 221 2.0.0\n"), 0);
        assert_string_equal(buf_str(&s->events), want.data);
        email__buf_free(&want);
        assert_int_equal(f.nmessages, njobs);
        for (size_t j = 0; j < njobs; j++) {
            char *expected = expected_body(bodies[j], jobs[j].body.len, true);
            assert_int_equal(f.lengths[j], strlen(expected));
            assert_memory_equal(f.messages[j], expected, f.lengths[j]);
            free(expected);
            free(bodies[j]);
            test_job_free(&jobs[j]);
        }
        if (!pipelining)
            assert_true(f.max_burst <= 1);
        fake_server_free(&f);
    }
}

/*
 * Many pipelined recipients, so that the queue of awaited replies grows while it wraps around:
 * each reply must still be matched with its own command.
 */
static void test_many_recipients(void **state)
{
    test_session_t *s = *state;
    static char addrs[60][32];
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", NULL);
    test_job_init(&m2, "m2", A, "two\r\n", NULL);
    test_job_init(&m3, "m3", A, "three\r\n", NULL);
    for (size_t i = 0; i < 60; i++) {
        snprintf(addrs[i], sizeof addrs[i], i == 27 || i == 41 ? "r%zu-refuse@x.example"
                                                                : "r%zu@x.example",
                 i);
        test_job_t *t = i < 10 ? &m1 : i < 50 ? &m2 : &m3;
        t->rcpts[t->job.nrcpts++] = addrs[i];
    }
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    email__smtp_engine_quit(s->e);
    fake_server_t f;
    fake_server_init(&f, EHLO_PIPE);
    uint64_t rng = 42;
    fake_server_run(&f, s, &rng);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=2\n"
                     "job m3 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "closed EMAIL_OK 221 2.0.0\n");
    assert_string_equal(m2.job.refusals.v[0].address, "r27-refuse@x.example");
    assert_string_equal(m2.job.refusals.v[1].address, "r41-refuse@x.example");
    assert_int_equal(m2.job.refusals.v[1].code, 550);
    assert_int_equal(f.nmessages, 3);
    assert_string_equal(f.messages[1], "two\r\n");
    fake_server_free(&f);
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}


/* ------------------------------------------------------------------------------------------- */
/* CHUNKING (BDAT, RFC 3030)                                                                    */

#define EHLO_CHUNK "250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"

/* MAIL, RCPT and the body as BDAT in one take: no DATA, no 354, no dot-stuffing. */
static void test_bdat(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, ".one\nx\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take_one(s), MAIL_A RCPT_B "BDAT 9 LAST\r\n.one\r\nx\r\n");
    assert_true(ts_log_has(s, "C: BDAT 9 LAST"));
    /* a stream: the next message goes right behind BDAT LAST, before its reply */
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), "RSET\r\n" MAIL_A RCPT_C "BDAT 5 LAST\r\ntwo\r\n");
    expect_feed(s, OK_MAIL OK_RCPT QUEUED, "");
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    expect_feed(s, "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_null(strstr(buf_str(&s->wire), "DATA"));
    assert_int_equal(m1.job.body_bytes, 8);
    test_job_free(&m1);
    test_job_free(&m2);
}

/* CHUNKING is not used without PIPELINING, nor when the configuration says no. */
static void test_bdat_not_used(void **state)
{
    test_session_t *s = *state;
    for (int k = 0; k < 2; k++) {
        smtp_engine_config_t cfg = ts_config();
        cfg.no_chunking = k == 1;
        ts_restart(s, &cfg);
        assert_int_equal(ts_greet(s, k == 0 ? "250-mx.example\r\n250 CHUNKING\r\n" : EHLO_CHUNK),
                         0);
        test_job_t m1;
        test_job_init(&m1, "m1", A, ".one\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        if (k == 0) {
            assert_string_equal(ts_take(s), MAIL_A);
            expect_feed(s, OK_MAIL, RCPT_B);
            expect_feed(s, OK_RCPT, "DATA\r\n");
        } else {
            assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
            assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT), 0);
        }
        expect_feed(s, GO_AHEAD, "..one\r\n.\r\n");
        expect_feed(s, QUEUED, "");
        EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
        assert_null(strstr(buf_str(&s->wire), "BDAT"));
        test_job_free(&m1);
    }
}

/* How many BDAT commands the client wrote: command lines are read, chunk payloads skipped. */
static size_t count_bdat(const char *wire)
{
    size_t n = 0;
    const char *p = wire;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        size_t skip = 0;
        if (!strncmp(p, "BDAT ", 5)) {
            n++;
            skip = (size_t)strtoull(p + 5, NULL, 10);
        }
        p = eol + 2;
        assert_true(strlen(p) >= skip);
        p += skip;
    }
    return n;
}

static char *lines_body(size_t min_len)
{
    email_buf_t b;
    email__buf_init(&b);
    for (int i = 0; b.len < min_len; i++)
        assert_int_equal(email__buf_printf(&b, "line %06d of the message\r\n", i), 0);
    return buf_take(&b, NULL);
}

/* A body larger than one chunk: several BDAT commands, each announcing exactly its bytes. */
static void test_bdat_chunks(void **state)
{
    test_session_t *s = *state;
    char *body = lines_body(200000);
    uint64_t rng = 7;
    for (int round = 0; round < 4; round++) {
        ts_restart(s, NULL);
        test_job_t m1, m2;
        test_job_init(&m1, "m1", A, body, B, NULL);
        test_job_init(&m2, "m2", A, "a\rb\nc", C, NULL);
        m1.body.max_read = round == 0 ? 0 : 1 + xorshift64(&rng) % 20000;
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
        email__smtp_engine_quit(s->e);
        fake_server_t f;
        fake_server_init(&f, EHLO_CHUNK);
        fake_server_run(&f, s, &rng);
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "closed EMAIL_OK 221 2.0.0\n");
        assert_int_equal(f.nmessages, 2);
        assert_int_equal(f.lengths[0], strlen(body));
        assert_memory_equal(f.messages[0], body, f.lengths[0]);
        /* line endings made CRLF (whether a final one is added is not settled here) */
        assert_true(!strcmp(f.messages[1], "a\r\nb\r\nc") ||
                    !strcmp(f.messages[1], "a\r\nb\r\nc\r\n"));
        assert_null(strstr(buf_str(&s->wire), "DATA"));
        assert_non_null(strstr(buf_str(&s->wire), " LAST\r\n"));
        fake_server_free(&f);
        test_job_free(&m1);
        test_job_free(&m2);
    }
    free(body);
}

/* BDAT LAST refused: the job fails with that reply, RSET ends the transaction (nothing of the
 * next message had gone yet: it was submitted after). */
static void test_bdat_last_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, C, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B RCPT_C "BDAT 5 LAST\r\none\r\n");
    expect_feed(s, OK_MAIL OK_RCPT USER_UNKNOWN "552 5.3.4 Message size exceeds limit\r\n",
                "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 552 5.3.4 rejected=1\n");
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_D "BDAT 5 LAST\r\ntwo\r\n");
    expect_feed(s, "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* BDAT streams: three messages go in one take, each after the first behind an RSET (the server
 * may keep a failed transaction open); message 1's BDAT LAST refused, message 2's MAIL refused
 * (its RCPT and BDAT then answered 503 and 554, RFC 3030): each fails alone with its own reason,
 * no RSET lands inside a transaction, and message 3 is sent. */
static void test_bdat_stream_refusals(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "six\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    email__smtp_engine_quit(s->e);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n"
                                    "RSET\r\n" MAIL_A RCPT_C "BDAT 5 LAST\r\ntwo\r\n"
                                    "RSET\r\n" MAIL_A RCPT_D "BDAT 5 LAST\r\nsix\r\n");
    expect_feed(s, OK_MAIL OK_RCPT "554 5.7.1 Message rejected as spam\r\n", "");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 554 5.7.1 rejected=0\n");
    expect_feed(s, "250 2.0.0 Ok\r\n"
                   "452 4.3.1 Insufficient system storage\r\n"
                   "503 5.5.1 Error: need MAIL command\r\n"
                   "554 5.5.1 Error: no valid recipients\r\n", "");
    EXPECT_EVENTS(s, "job m2 FAILED EMAIL_ESERVER 452 4.3.1 rejected=0\n");
    /* QUIT only once message 3 has its answer, and no other RSET */
    expect_feed(s, "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT QUEUED, "QUIT\r\n");
    EXPECT_EVENTS(s, "job m3 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}

/* The connection drops in the middle of a BDAT stream: the messages answered keep their
 * outcomes, the one whose BDAT LAST went unanswered is unknown, the one cut before its end is
 * retryable: each gets exactly one. */
static void test_bdat_stream_dropped(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "six\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    s->no_written = true;
    const char *w = ts_take(s);
    size_t upto_m2 = strlen(MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n" "RSET\r\n" MAIL_A RCPT_C
                            "BDAT 5 LAST\r\ntwo\r\n");
    assert_true(strlen(w) > upto_m2 + 10);
    email__smtp_engine_written(s->e, upto_m2 + 10); /* message 3 is cut */
    expect_feed(s, OK_MAIL OK_RCPT QUEUED "250 2.0.0 Ok\r\n" OK_MAIL, "");
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
    EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                     "job m3 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 0\n");
    assert_int_equal(m1.ndone + m2.ndone + m3.ndone, 3);
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}

/* A chunk refused before the last: that refusal is the reason, not the recipient's. */
static void test_bdat_chunk_refused(void **state)
{
    test_session_t *s = *state;
    char *body = lines_body(50000);
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, body, B, C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    const char *w = ts_take(s);
    assert_int_equal(strncmp(w, MAIL_A RCPT_B RCPT_C "BDAT ", strlen(MAIL_A RCPT_B RCPT_C) + 5),
                     0);
    assert_int_equal(count_bdat(w), 2);
    expect_feed(s, OK_MAIL OK_RCPT USER_UNKNOWN "451 4.3.0 Chunk lost\r\n"
                    "554 5.5.0 Transaction failed\r\n",
                "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 451 4.3.0 rejected=1\n");
    test_job_free(&m1);
    free(body);
}

/* A chunk refused while the body is still going out: no chunk follows it (RFC 3030), RSET at once;
 * the replies to the chunks already on their way find no job, and the next message goes. */
static void test_bdat_refused_chunk_stops_the_body(void **state)
{
    test_session_t *s = *state;
    char *body = lines_body(3000000);
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, body, B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    const char *w = ts_take_one(s);
    assert_int_equal(strncmp(w, MAIL_A RCPT_B "BDAT ", strlen(MAIL_A RCPT_B) + 5), 0);
    size_t sent = count_bdat(w);
    assert_true(sent >= 1);
    assert_null(strstr(w, " LAST\r\n"));
    expect_feed(s, OK_MAIL OK_RCPT "552 5.3.4 Message size exceeds fixed limit\r\n", "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ESERVER 552 5.3.4 rejected=0\n");
    assert_string_equal(ts_take(s), ""); /* not one more chunk */
    for (size_t i = 1; i < sent; i++)
        expect_feed(s, "554 5.5.0 Transaction failed\r\n", "");
    expect_feed(s, "250 2.0.0 Ok\r\n", "");
    EXPECT_EVENTS(s, "");
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_C "BDAT 5 LAST\r\ntwo\r\n");
    expect_feed(s, OK_MAIL OK_RCPT QUEUED, "");
    EXPECT_EVENTS(s, "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
    free(body);
}

/* Every recipient refused: the chunks went, but the job fails with ERECIPIENTS, RSET follows. */
static void test_bdat_all_recipients_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_C "BDAT 5 LAST\r\none\r\n");
    expect_feed(s, OK_MAIL USER_UNKNOWN "554 5.5.1 Error: no valid recipients\r\n", "RSET\r\n");
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=1\n");
    test_job_free(&m1);
}

/* 421 as the answer to BDAT LAST is the server's answer to the end of data, as with DATA. */
static void test_bdat_421_answer_to_last(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n");
    assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT "421 4.3.0 mx.example shutting down\r\n"),
                     EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 FAILED EMAIL_ESERVER 421 4.3.0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.3.0\n");
    test_job_free(&m1);
}

/* A 421 in the middle of a stream (postfix's "too many errors", in answer to the RSET before
 * message 2): the server read nothing after it, so the messages behind it, their BDAT LAST sent,
 * were not delivered: retryable, not unknown. */
static void test_bdat_stream_421(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1, m2, m3;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    test_job_init(&m3, "m3", A, "six\r\n", D, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n"
                                    "RSET\r\n" MAIL_A RCPT_C "BDAT 5 LAST\r\ntwo\r\n"
                                    "RSET\r\n" MAIL_A RCPT_D "BDAT 5 LAST\r\nsix\r\n");
    assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT QUEUED
                                "421 4.7.0 mx.example Error: too many errors\r\n"),
                     EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "job m3 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.7.0\n");
    assert_string_equal(ts_take(s), "");
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
}

/* Connection lost: after BDAT LAST reached the transport unknown, before it retryable. */
static void test_bdat_abort(void **state)
{
    test_session_t *s = *state;
    size_t n = strlen("BDAT 5 LAST\r\none\r\n");
    for (size_t written = 0; written <= n; written++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        s->no_written = true;
        assert_string_equal(ts_take(s), MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n");
        email__smtp_engine_written(s->e, strlen(MAIL_A RCPT_B) + written);
        email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
        if (written == n)
            EXPECT_EVENTS(s, "ready\njob m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                             "closed EMAIL_ECLOSED 0\n");
        else
            EXPECT_EVENTS(s, "ready\njob m1 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                             "closed EMAIL_ECLOSED 0\n");
        test_job_free(&m1);
    }
}

/* job_done may free its job: the engine must not touch it afterwards, even with more of its
 * commands (RCPT, BDAT...) still awaiting replies when the connection drops. */
static void free_job_on_done(test_session_t *s, smtp_job_t *job)
{
    test_job_t *t = job->user;
    test_job_free(t);
    free(t);
}

static void test_job_freed_in_done(void **state)
{
    test_session_t *s = *state;
    for (int chunking = 0; chunking < 2; chunking++) {
        ts_restart(s, NULL);
        s->on_job_done = free_job_on_done;
        assert_int_equal(ts_greet(s, chunking ? EHLO_CHUNK : EHLO_PIPE), 0);
        test_job_t *m1 = malloc(sizeof *m1);
        test_job_init(m1, "m1", A, "one\r\n", B, C, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1->job), 0);
        ts_take(s); /* everything written, nothing answered */
        if (!chunking) {
            ts_feed(s, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
            ts_take(s);
        }
        email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
        EXPECT_EVENTS(s, "ready\njob m1 UNKNOWN EMAIL_EUNKNOWN 0 rejected=0\n"
                         "closed EMAIL_ECLOSED 0\n");
    }
}

/* The body source fails after some chunks went: never a BDAT LAST. */
static void test_bdat_body_error(void **state)
{
    test_session_t *s = *state;
    char *body = lines_body(150000);
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, body, B, NULL);
    m1.body.fail_at = 100000;
    m1.body.error = EMAIL_EIO;
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    ts_take(s);
    EXPECT_EVENTS(s, "ready\njob m1 FAILED EMAIL_EIO 0 rejected=0\nclosed EMAIL_EIO 0\n");
    assert_true(count_bdat(buf_str(&s->wire)) >= 1);
    assert_null(strstr(buf_str(&s->wire), "LAST"));
    assert_string_equal(ts_take(s), "");
    test_job_free(&m1);
    free(body);
}

/* ------------------------------------------------------------------------------------------- */
/* A held end of data (hold_eod): the outbox's mark reaches the disk before the end of data     */

static int holds;       /* hold_eod calls */
static int hold_answer; /* what hold_eod answers */

static int hold_eod(void *ctx)
{
    (void)ctx;
    holds++;
    return hold_answer;
}

/* Pipelined DATA: the body goes; its "." and the next message's commands wait for the release,
 * asked once. */
static void test_held_end_of_data(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    m1.job.hold_eod = m2.job.hold_eod = hold_eod;
    holds = 0;
    hold_answer = 1;
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
    expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n");
    assert_int_equal(holds, 1);
    assert_string_equal(ts_take(s), "");
    assert_int_equal(holds, 1);
    assert_true(email__smtp_engine_waiting(s->e));
    email__smtp_engine_release(s->e, &m2.job, 0); /* not the one held: nothing moves */
    assert_string_equal(ts_take(s), "");
    hold_answer = 0; /* m2's goes at once */
    email__smtp_engine_release(s->e, &m1.job, 0);
    assert_string_equal(ts_take(s), ".\r\n" MAIL_A RCPT_C "DATA\r\n");
    email__smtp_engine_release(s->e, &m1.job, 0); /* released already: nothing more */
    assert_string_equal(ts_take(s), "");
    expect_feed(s, QUEUED OK_MAIL OK_RCPT GO_AHEAD, "two\r\n.\r\n");
    assert_int_equal(holds, 2);
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
}

/* BDAT: the last chunk and its BDAT LAST wait, and so does the next message's body. */
static void test_held_bdat_last(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_CHUNK), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
    m1.job.hold_eod = m2.job.hold_eod = hold_eod;
    holds = 0;
    hold_answer = 1;
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A RCPT_B);
    email__smtp_engine_release(s->e, &m1.job, 0);
    assert_string_equal(ts_take(s), "BDAT 5 LAST\r\none\r\nRSET\r\n" MAIL_A RCPT_C);
    assert_int_equal(holds, 2);
    email__smtp_engine_release(s->e, &m2.job, 0);
    assert_string_equal(ts_take(s), "BDAT 5 LAST\r\ntwo\r\n");
    expect_feed(s, OK_MAIL OK_RCPT QUEUED "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT QUEUED, "");
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m1);
    test_job_free(&m2);
}

/*
 * The hold ends otherwise: the session is lost meanwhile (the message never reached the server:
 * retryable, and a late release does nothing), the release refuses (k 1), or the hold itself
 * fails (k 2): the job fails, the session is dropped, the end of data never goes.
 */
static void test_held_end_of_data_fails(void **state)
{
    test_session_t *s = *state;
    static const char *const events[] = {
        "job m1 RETRYABLE EMAIL_ECLOSED 0 rejected=0\nclosed EMAIL_ECLOSED 0\n",
        "job m1 FAILED EMAIL_EIO 0 rejected=0\nclosed EMAIL_EIO 0\n",
        "job m1 FAILED EMAIL_ENOMEM 0 rejected=0\nclosed EMAIL_ENOMEM 0\n",
    };
    for (int k = 0; k < 3; k++) {
        ts_restart(s, NULL);
        assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
        EXPECT_EVENTS(s, "ready\n");
        test_job_t m1;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        m1.job.hold_eod = hold_eod;
        hold_answer = k == 2 ? EMAIL_ENOMEM : 1;
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
        assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT GO_AHEAD), 0);
        ts_take(s);
        if (k == 0)
            email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "connection reset by peer");
        if (k < 2)
            email__smtp_engine_release(s->e, &m1.job, k ? EMAIL_EIO : 0);
        EXPECT_EVENTS(s, events[k]);
        assert_string_equal(ts_take(s), "");
        assert_null(strstr(after_data(s), "\r\n.\r\n"));
        test_job_free(&m1);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Progress and cancel                                                                          */

/* Progress follows what was written, never passes the size, and ends at the size exactly. */
static void test_progress(void **state)
{
    test_session_t *s = *state;
    char *body = lines_body(150000);
    for (int chunking = 0; chunking < 2; chunking++) {
        ts_restart(s, NULL);
        test_job_t m1;
        test_job_init(&m1, "m1", A, body, B, NULL);
        m1.job.size = strlen(body);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        email__smtp_engine_quit(s->e);
        fake_server_t f;
        fake_server_init(&f, chunking ? EHLO_CHUNK : EHLO_PIPE);
        fake_server_run(&f, s, NULL);
        EXPECT_EVENTS(s, "ready\njob m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "closed EMAIL_OK 221 2.0.0\n");
        assert_true(m1.nprogress >= 2); /* the body takes more than one write */
        assert_int_equal(m1.progress_sent, m1.job.size);
        fake_server_free(&f);
        test_job_free(&m1);
    }
    free(body);
}

/* A queued job can be taken back; one whose commands went cannot. */
static void test_cancel(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1, m2, m3, m4;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    test_job_init(&m3, "m3", A, "three\r\n", B, NULL);
    test_job_init(&m4, "m4", A, "four\r\n", C, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m3.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    assert_int_equal(email__smtp_engine_cancel(s->e, &m1.job), EMAIL_EBUSY);
    assert_int_equal(email__smtp_engine_cancel(s->e, &m3.job), 0); /* the last one */
    assert_int_equal(email__smtp_engine_submit(s->e, &m4.job), 0); /* queued behind m2 */
    assert_int_equal(email__smtp_engine_cancel(s->e, &m2.job), 0); /* the first one */
    assert_int_equal(email__smtp_engine_cancel(s->e, &m2.job), EMAIL_EBUSY);
    expect_feed(s, OK_MAIL, RCPT_B);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "one\r\n.\r\n");
    expect_feed(s, QUEUED, MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_C);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "four\r\n.\r\n");
    expect_feed(s, QUEUED, "");
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m4 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_true(email__smtp_engine_idle(s->e));
    /* a cancelled job is the caller's again: it can be submitted anew */
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    email__smtp_engine_abort(s->e, EMAIL_ECLOSED, "test over");
    EXPECT_EVENTS(s, "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\nclosed EMAIL_ECLOSED 0\n");
    test_job_free(&m1);
    test_job_free(&m2);
    test_job_free(&m3);
    test_job_free(&m4);
}

/* ------------------------------------------------------------------------------------------- */
/* A server answering at random                                                                 */

/*
 * Refusals, 421s, 354 to refused transactions, lost connections, at random, with and without
 * PIPELINING and CHUNKING: whatever happens, each job is reported exactly once, the session
 * always ends (never waits for a reply the server will not send), closed comes once, and a job
 * reported sent was received by the server whole.
 */
static void test_chaos(void **state)
{
    test_session_t *s = *state;
    static const char *const ehlos[] = {EHLO_BASIC, EHLO_PIPE, EHLO_CHUNK};
    uint64_t rng = 0x2545f4914f6cdd1du;
    for (int round = 0; round < 300; round++) {
        smtp_engine_config_t cfg = ts_config();
        cfg.window = 1 + xorshift64(&rng) % 12;
        ts_restart(s, &cfg);
        size_t njobs = 1 + xorshift64(&rng) % 6;
        test_job_t jobs[6];
        char names[6][8];
        static const char *const bodies[] = {"", "one\r\n", ".\r\n", "a\nb\r.c", "x"};
        for (size_t j = 0; j < njobs; j++) {
            snprintf(names[j], sizeof names[j], "m%zu", j + 1);
            test_job_init(&jobs[j], names[j], A, bodies[xorshift64(&rng) % 5], B, NULL);
            size_t extra = xorshift64(&rng) % 3;
            jobs[j].rcpts[jobs[j].job.nrcpts++] = extra == 2 ? "c-refuse@x.example" : C;
            if (extra == 1)
                jobs[j].rcpts[jobs[j].job.nrcpts++] = "d-refuse@x.example";
            assert_int_equal(email__smtp_engine_submit(s->e, &jobs[j].job), 0);
        }
        email__smtp_engine_quit(s->e);
        fake_server_t f;
        fake_server_init(&f, ehlos[xorshift64(&rng) % 3]);
        f.chaos = &rng;
        fake_server_run(&f, s, &rng);
        if (!email__smtp_engine_is_closed(s->e))
            fail_msg("round %d: the session is stuck; it wrote:\n%s", round, buf_str(&s->wire));
        assert_int_equal(s->nclosed, 1);
        /* what the server kept is a whole body, or the empty data of a refused transaction */
        for (size_t k = 0; k < f.nmessages; k++) {
            bool whole = f.lengths[k] == 0;
            for (size_t j = 0; j < njobs && !whole; j++) {
                char *data = expected_body(jobs[j].body.data, jobs[j].body.len, true);
                char *bdat = expected_body(jobs[j].body.data, jobs[j].body.len, false);
                whole = !strcmp(f.messages[k], data) || !strcmp(f.messages[k], bdat);
                free(data);
                free(bdat);
            }
            if (!whole)
                fail_msg("round %d: the server kept a broken message \"%s\"", round,
                         f.messages[k]);
        }
        size_t sent = 0;
        for (size_t j = 0; j < njobs; j++) {
            assert_int_equal(jobs[j].ndone, 1);
            if (jobs[j].job.outcome == SMTP_JOB_SENT) {
                /* DATA adds a final CRLF, BDAT sends the text as it is */
                char *data = expected_body(jobs[j].body.data, jobs[j].body.len, true);
                char *bdat = expected_body(jobs[j].body.data, jobs[j].body.len, false);
                /* messages the server kept, in order; empty data of refused ones may sit between */
                bool found = false;
                while (sent < f.nmessages && !found) {
                    found = !strcmp(f.messages[sent], data) || !strcmp(f.messages[sent], bdat);
                    sent++;
                }
                if (!found)
                    fail_msg("round %d: %s reported sent, the server has no such message", round,
                             names[j]);
                free(data);
                free(bdat);
            }
            test_job_free(&jobs[j]);
        }
        fake_server_free(&f);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The API around the conversation                                                              */

static void test_submit_rules(void **state)
{
    test_session_t *s = *state;
    test_job_t none, noread, m1;
    test_job_init(&none, "none", A, "x", NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &none.job), EMAIL_EINVAL);
    test_job_init(&noread, "noread", A, "x", B, NULL);
    noread.job.read = NULL;
    assert_int_equal(email__smtp_engine_submit(s->e, &noread.job), EMAIL_EINVAL);
    email__smtp_engine_quit(s->e);
    test_job_init(&m1, "m1", A, "x", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), EMAIL_ESHUTDOWN);

    /* QUIT asked before the setup finished: it goes once the session is ready */
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    EXPECT_EVENTS(s, "ready\n");
    assert_string_equal(ts_take(s), "QUIT\r\n");
    assert_int_equal(ts_feed(s, "221 2.0.0 Bye\r\n"), 0);
    EXPECT_EVENTS(s, "closed EMAIL_OK 221 2.0.0\n");
}

/* job_done may submit the next message and ask for QUIT. */
static void chain_next(test_session_t *s, smtp_job_t *job)
{
    test_job_t *next = s->user;
    if (job == &next->job) {
        email__smtp_engine_quit(s->e);
        return;
    }
    assert_int_equal(email__smtp_engine_submit(s->e, &next->job), 0);
}

static void test_callbacks_submit_and_quit(void **state)
{
    test_session_t *s = *state;
    for (int pipelining = 0; pipelining < 2; pipelining++) {
        ts_restart(s, NULL);
        test_job_t m1, m2;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        test_job_init(&m2, "m2", A, "two\r\n", C, NULL);
        s->on_job_done = chain_next;
        s->user = &m2;
        assert_int_equal(ts_greet(s, pipelining ? EHLO_PIPE : EHLO_BASIC), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        if (pipelining) {
            assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
            expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n.\r\n");
            expect_feed(s, QUEUED, MAIL_A RCPT_C "DATA\r\n");
            expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "two\r\n.\r\n");
        } else {
            assert_string_equal(ts_take(s), MAIL_A);
            expect_feed(s, OK_MAIL, RCPT_B);
            expect_feed(s, OK_RCPT, "DATA\r\n");
            expect_feed(s, GO_AHEAD, "one\r\n.\r\n");
            expect_feed(s, QUEUED, MAIL_A);
            expect_feed(s, OK_MAIL, RCPT_C);
            expect_feed(s, OK_RCPT, "DATA\r\n");
            expect_feed(s, GO_AHEAD, "two\r\n.\r\n");
        }
        expect_feed(s, QUEUED, "QUIT\r\n");
        expect_feed(s, "221 2.0.0 Bye\r\n", "");
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                         "closed EMAIL_OK 221 2.0.0\n");
        test_job_free(&m1);
        test_job_free(&m2);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Issue #9: hostile and faulty servers                                                         */

/* A job_done that submits the job in s->user (accepted: it must wait for a fresh connection). */
static void submit_on_done(test_session_t *s, smtp_job_t *job)
{
    (void)job;
    test_job_t *next = s->user;
    s->user = NULL;
    if (next)
        assert_int_equal(email__smtp_engine_submit(s->e, &next->job), 0);
}

/* The wire from the server's 421 on holds no command: the engine ended before writing one. */
static void assert_nothing_after(test_session_t *s, size_t wire_before)
{
    assert_true(s->wire.len >= wire_before);
    if (s->wire.len != wire_before)
        fail_msg("written after the 421: %.*s", (int)(s->wire.len - wire_before),
                 s->wire.data + wire_before);
    assert_string_equal(ts_take(s), "");
}

/* 421 to a RCPT (no pipelining), the job's job_done submits another: no MAIL goes out after
 * the 421 (tests/fuzz/crashes/fuzz_engine-421-min), the new job comes back RETRYABLE. */
static void test_421_then_submit_from_job_done(void **state)
{
    test_session_t *s = *state;
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
    s->on_job_done = submit_on_done;
    s->user = &m2;
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    expect_feed(s, OK_MAIL, RCPT_B);
    size_t before = s->wire.len;
    assert_int_equal(ts_feed(s, "421 4.3.2 bye\r\n"), EMAIL_ECLOSED);
    assert_nothing_after(s, before);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 RETRYABLE EMAIL_ECLOSED 421 4.3.2 rejected=0\n"
                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.3.2\n");
    assert_false(ts_log_has(s, "C: MAIL FROM:<" A "> "));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* The same when the 421 answers an end of data (pipelined, and BDAT LAST), or a QUIT is asked
 * from job_done: nothing more is written, not even QUIT's line behind the 421. */
static void test_421_answer_to_end_then_submit_or_quit(void **state)
{
    test_session_t *s = *state;
    static const char *const ehlos[] = {EHLO_PIPE, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"};
    for (int chunking = 0; chunking < 2; chunking++) {
        for (int quit = 0; quit < 2; quit++) {
            ts_restart(s, NULL);
            test_job_t m1, m2;
            test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
            test_job_init(&m2, "m2", A, "two\r\n", B, NULL);
            s->on_job_done = quit ? quit_on_done : submit_on_done;
            s->user = &m2;
            assert_int_equal(ts_greet(s, ehlos[chunking]), 0);
            assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
            if (chunking) {
                assert_string_equal(ts_take(s), MAIL_A RCPT_B "BDAT 5 LAST\r\none\r\n");
                assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT), 0);
            } else {
                assert_string_equal(ts_take(s), MAIL_A RCPT_B "DATA\r\n");
                expect_feed(s, OK_MAIL OK_RCPT GO_AHEAD, "one\r\n.\r\n");
            }
            size_t before = s->wire.len;
            assert_int_equal(ts_feed(s, "421 4.3.0 shutting down\r\n"), EMAIL_ECLOSED);
            assert_nothing_after(s, before);
            EXPECT_EVENTS(s, quit ? "ready\n"
                                     "job m1 FAILED EMAIL_ESERVER 421 4.3.0 rejected=0\n"
                                     "closed EMAIL_ECLOSED 421 4.3.0\n"
                                   : "ready\n"
                                     "job m1 FAILED EMAIL_ESERVER 421 4.3.0 rejected=0\n"
                                     "job m2 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                                     "closed EMAIL_ECLOSED 421 4.3.0\n");
            test_job_free(&m1);
            test_job_free(&m2);
        }
    }
}

/* A reply in the same bytes as the greeting answers nothing: the session ends at once, the
 * EHLO queued meanwhile never goes out and the extra reply is never taken for its answer. */
static void test_reply_without_command_at_setup(void **state)
{
    test_session_t *s = *state;
    static const char *const inputs[] = {
        GREETING "250 mx.example unsolicited\r\n",
        GREETING "250-mx.example\r\n250 PIPELINING\r\n", /* an EHLO answer before the EHLO */
    };
    for (size_t i = 0; i < 2; i++) {
        smtp_engine_config_t cfg = ts_config();
        ts_restart(s, &cfg);
        assert_int_equal(ts_feed(s, inputs[i]), EMAIL_EPROTO);
        EXPECT_EVENTS(s, "closed EMAIL_EPROTO 250\n");
        assert_non_null(strstr(s->closed_status.status_text, "reply without a command"));
        assert_int_equal(ts_feed(s, "250 more\r\n"), EMAIL_EPROTO);
    }
    /* the EHLO taken, then a stray reply behind its answer: not taken for the next command's */
    smtp_engine_config_t cfg = ts_config();
    cfg.creds.user = "u";
    cfg.creds.password = "secret";
    cfg.allow_cleartext_auth = true;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx\r\n250 AUTH PLAIN\r\n235 2.7.0 ok\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(s, "closed EMAIL_EPROTO 235 2.7.0\n");
}

/* Replies ahead of pipelined commands: the 250s meant for nothing must not become MAIL's and
 * RCPT's, or a later 250 to DATA would be read as a refusal (shifted by one). */
static void test_reply_without_command_pipelined(void **state)
{
    test_session_t *s = *state;
    for (int lockstep = 0; lockstep < 2; lockstep++) {
        smtp_engine_config_t cfg = ts_config();
        ts_restart(s, &cfg);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        assert_int_equal(ts_feed(s, GREETING), 0);
        assert_string_equal(ts_take(s), EHLO_LINE);
        /* the EHLO reply and an extra 250 in one segment: ready sends at once, the extra reply
         * arrives before the server can have read a single one of those commands */
        const char *ehlo = lockstep ? EHLO_BASIC : EHLO_PIPE;
        email_buf_t in;
        email__buf_init(&in);
        assert_int_equal(email__buf_printf(&in, "%s250 2.0.0 stray\r\n", ehlo), 0);
        assert_int_equal(ts_feedn(s, in.data, in.len), EMAIL_EPROTO);
        email__buf_free(&in);
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 RETRYABLE EMAIL_EPROTO 0 rejected=0\n"
                         "closed EMAIL_EPROTO 250 2.0.0\n");
        test_job_free(&m1);
    }
    /* lockstep, MAIL answered twice: the second 250 is not RCPT's */
    ts_restart(s, NULL);
    assert_int_equal(ts_greet(s, EHLO_BASIC), 0);
    test_job_t m1;
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), MAIL_A);
    assert_int_equal(ts_feed(s, OK_MAIL OK_RCPT), EMAIL_EPROTO);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 RETRYABLE EMAIL_EPROTO 0 rejected=0\n"
                     "closed EMAIL_EPROTO 250 2.1.5\n");
    test_job_free(&m1);

    /* a 421 ahead of the commands is the server leaving, not their answer: nothing goes out */
    ts_restart(s, NULL);
    test_job_init(&m1, "m1", A, "one\r\n", B, NULL);
    assert_int_equal(ts_greet(s, EHLO_PIPE), 0);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_int_equal(ts_feed(s, "421 4.3.2 going away\r\n"), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "ready\n"
                     "job m1 RETRYABLE EMAIL_ECLOSED 0 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.3.2\n");
    test_job_free(&m1);
}

static void name_the_file(void *ctx, int error, char *text, size_t size)
{
    (void)ctx;
    snprintf(text, size, "attachment \"/tmp/x.bin\": %s", email_error_name(error));
}

/* A body that fails while it is being pulled: the error names what failed (read_error), and
 * nothing of the cut body is handed over once the session is over (the transport is gone). */
static void test_unreadable_body_named_nothing_handed(void **state)
{
    test_session_t *s = *state;
    static const char *const ehlos[] = {EHLO_BASIC, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"};
    for (int chunking = 0; chunking < 2; chunking++) {
        ts_restart(s, NULL);
        test_job_t m1;
        test_job_init(&m1, "m1", A, "hello, world\r\n", B, NULL);
        m1.body.fail_at = 7;
        m1.body.error = EMAIL_EIO;
        m1.job.read_error = name_the_file;
        assert_int_equal(ts_greet(s, ehlos[chunking]), 0);
        assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
        if (chunking) {
            /* the commands logged before the body; the chunk never was (7 bytes, no LAST) */
            assert_string_equal(ts_take(s), MAIL_A RCPT_B);
        } else {
            assert_string_equal(ts_take(s), MAIL_A);
            expect_feed(s, OK_MAIL, RCPT_B);
            expect_feed(s, OK_RCPT, "DATA\r\n");
            assert_int_equal(ts_feed(s, GO_AHEAD), 0);
            assert_string_equal(ts_take(s), "");
        }
        EXPECT_EVENTS(s, "ready\n"
                         "job m1 FAILED EMAIL_EIO 0 rejected=0\n"
                         "closed EMAIL_EIO 0\n");
        assert_string_equal(m1.job.status.status_text,
                            "reading the message failed: attachment \"/tmp/x.bin\": EMAIL_EIO");
        test_job_free(&m1);
    }
}

/* A test that gets a fresh session with the default configuration as *state. */
#define SESSION_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup, ts_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SESSION_TEST(test_plain_session),
        SESSION_TEST(test_pipelining_every_split),
        SESSION_TEST(test_pipelining_one_take),
        SESSION_TEST(test_pipelining_window_between_jobs),
        SESSION_TEST(test_pipelining_window_large_transaction),
        SESSION_TEST(test_mail_parameters),
        SESSION_TEST(test_size_limit_refused_early),
        SESSION_TEST(test_size_limit_refused_pipelined),
        SESSION_TEST(test_no_extensions),
        SESSION_TEST(test_auth_plain),
        SESSION_TEST(test_auth_login),
        SESSION_TEST(test_auth_cram_md5),
        SESSION_TEST(test_auth_refused),
        SESSION_TEST(test_quit_after_auth_refusals),
        SESSION_TEST(test_no_quit_after_auth_421),
        SESSION_TEST(test_quit_after_failure_unanswered),
        SESSION_TEST(test_quit_after_failure_reply_out_of_turn),
        SESSION_TEST(test_quit_after_hello_refused),
        SESSION_TEST(test_auth_optional_without_usable_mechanism),
        SESSION_TEST(test_auth_required_without_usable_mechanism),
        SESSION_TEST(test_auth_wanted_mechanism_not_offered),
        SESSION_TEST(test_auth_not_offered),
        SESSION_TEST(test_auth_refuses_cleartext),
        SESSION_TEST(test_auth_cleartext_allowed),
        SESSION_TEST(test_helo_fallback),
        SESSION_TEST(test_starttls_required_not_offered),
        SESSION_TEST(test_starttls_then_ehlo_again),
        SESSION_TEST(test_starttls_response_injection),
        SESSION_TEST(test_starttls_handshake_fails),
        SESSION_TEST(test_starttls_refused_required),
        SESSION_TEST(test_starttls_refused_if_offered),
        SESSION_TEST(test_partial_recipients),
        SESSION_TEST(test_partial_recipients_pipelined),
        SESSION_TEST(test_all_recipients_refused),
        SESSION_TEST(test_all_recipients_refused_pipelined),
        SESSION_TEST(test_all_recipients_refused_pipelined_354),
        SESSION_TEST(test_mail_refused),
        SESSION_TEST(test_mail_refused_pipelined),
        SESSION_TEST(test_rset_before_quit_from_job_done),
        SESSION_TEST(test_nothing_behind_unreadable_body),
        SESSION_TEST(test_data_refused_after_partial_refusal),
        SESSION_TEST(test_421_before_end_of_data),
        SESSION_TEST(test_421_pipelined_rcpt),
        SESSION_TEST(test_421_answer_to_end_of_data),
        SESSION_TEST(test_abort_after_end_of_data_written),
        SESSION_TEST(test_abort_before_end_of_data_written),
        SESSION_TEST(test_abort_before_body),
        SESSION_TEST(test_abort_pipelined),
        SESSION_TEST(test_abort_after_empty_data_of_refused_transaction),
        SESSION_TEST(test_abort_closed_status),
        SESSION_TEST(test_garbage_at_setup),
        SESSION_TEST(test_garbage_in_transaction),
        SESSION_TEST(test_unexpected_replies),
        SESSION_TEST(test_ehlo_keywords),
        SESSION_TEST(test_body_error),
        SESSION_TEST(test_dot_stuffing),
        SESSION_TEST(test_round_trips),
        SESSION_TEST(test_many_recipients),
        SESSION_TEST(test_bdat),
        SESSION_TEST(test_bdat_not_used),
        SESSION_TEST(test_bdat_chunks),
        SESSION_TEST(test_bdat_last_refused),
        SESSION_TEST(test_bdat_stream_refusals),
        SESSION_TEST(test_bdat_stream_dropped),
        SESSION_TEST(test_bdat_chunk_refused),
        SESSION_TEST(test_bdat_refused_chunk_stops_the_body),
        SESSION_TEST(test_bdat_all_recipients_refused),
        SESSION_TEST(test_bdat_421_answer_to_last),
        SESSION_TEST(test_bdat_stream_421),
        SESSION_TEST(test_held_end_of_data),
        SESSION_TEST(test_held_bdat_last),
        SESSION_TEST(test_held_end_of_data_fails),
        SESSION_TEST(test_bdat_abort),
        SESSION_TEST(test_job_freed_in_done),
        SESSION_TEST(test_bdat_body_error),
        SESSION_TEST(test_progress),
        SESSION_TEST(test_cancel),
        SESSION_TEST(test_chaos),
        SESSION_TEST(test_submit_rules),
        SESSION_TEST(test_callbacks_submit_and_quit),
        /* last: under ASan its out-of-bounds read (a bug to fix) stops the program */
        SESSION_TEST(test_ehlo_bare_last_line),
        SESSION_TEST(test_421_then_submit_from_job_done),
        SESSION_TEST(test_421_answer_to_end_then_submit_or_quit),
        SESSION_TEST(test_reply_without_command_at_setup),
        SESSION_TEST(test_reply_without_command_pipelined),
        SESSION_TEST(test_unreadable_body_named_nothing_handed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
