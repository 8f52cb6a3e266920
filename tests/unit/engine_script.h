/*
 * Driving the sans-I/O SMTP engine (lib/protocol.c) from a test, the way nghttp2's session tests
 * drive theirs: scripted server bytes go in, every byte the engine asks to write is collected, and
 * every callback becomes one line of an event transcript, so a whole conversation is checked with
 * a few string comparisons. A small fake server (fake_server_*) answers whatever the engine sends,
 * for round trips whose transcript is too long to write by hand.
 *
 * Include after <cmocka.h>; the code is in engine_script.c (tests/unit/libenginescript.la).
 */
#ifndef EMAIL_TEST_ENGINE_SCRIPT_H
#define EMAIL_TEST_ENGINE_SCRIPT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "emailsession.h"
#include "protocol.h"
#include "status.h"
#include "util.h"

#define GREETING "220 mx.example ESMTP\r\n"
#define EHLO_LINE "EHLO client.example\r\n"

/* The buffer's text ("" when it never held anything). */
const char *buf_str(const email_buf_t *b);

/*
 * The bytes of b as a malloc'ed NUL-terminated copy (b emptied). Not email__buf_steal: on a
 * buffer that never held anything it returns memory without a terminating NUL.
 */
char *buf_take(email_buf_t *b, size_t *len);

/* The same sequence on every platform, unlike rand(). */
uint64_t xorshift64(uint64_t *state);

/* ------------------------------------------------------------------------------------------- */
/* Message bodies and jobs                                                                      */

/*
 * A body served from memory: at most max_read bytes per read (0: as many as asked for); once
 * fail_at bytes were served (fail_at >= 0), every read returns `error`.
 */
typedef struct test_body {
    const char *data;
    size_t len, pos;
    size_t max_read;
    long fail_at;
    int error;
} test_body_t;

#define TEST_MAX_RCPTS 64

typedef struct test_job {
    smtp_job_t job;
    test_body_t body;
    const char *rcpts[TEST_MAX_RCPTS];
    const char *name;
    size_t ndone;              /* job_done calls (never more than one) */
    size_t nprogress;          /* progress calls */
    uint64_t progress_sent;    /* the last one's `sent` */
} test_job_t;

/* A job named `name` (for the event transcript), recipients as NULL-terminated varargs. */
void test_job_init(test_job_t *t, const char *name, const char *from, const char *body, ...);

/* Frees what the engine attached to the job (its refusals). */
void test_job_free(test_job_t *t);

/* ------------------------------------------------------------------------------------------- */
/* A session under test                                                                         */

typedef struct test_session test_session_t;
struct test_session {
    smtp_engine_t *e;
    email_buf_t events;   /* "ready", "starttls", "job NAME OUTCOME ERROR CODE [ENH] rejected=N",
                             "closed ERROR CODE [ENH]", one per line */
    email_buf_t log;      /* every log call as "K: text\n" */
    email_buf_t wire;     /* every byte taken, in order */
    email_buf_t taken;    /* what the last ts_take / ts_take_one / ts_feed_take returned */
    bool no_written;      /* do not report taken bytes with email__smtp_engine_written */
    int nclosed;
    email_status_t closed_status;
    void (*on_job_done)(test_session_t *s, smtp_job_t *job);
    void *user;
};

/* The default configuration: HELO name client.example, no STARTTLS. */
smtp_engine_config_t ts_config(void);

/* A fresh session (s->e the engine) with the callbacks that write the transcript. */
void ts_init(test_session_t *s, const smtp_engine_config_t *cfg);
void ts_free(test_session_t *s);
/* Frees the session and starts a fresh one with cfg (NULL: ts_config()): a test's own
 * configuration, or a fresh session for each case of a loop. */
void ts_restart(test_session_t *s, const smtp_engine_config_t *cfg);

/* cmocka fixtures: *state becomes a test_session_t with ts_config(), freed after the test (also
 * when it fails). */
int ts_setup(void **state);
int ts_teardown(void **state);

/* Exactly one take: what the engine hands over in one go. */
const char *ts_take_one(test_session_t *s);

/* Takes until the engine has nothing more to write; returns all of it. */
const char *ts_take(test_session_t *s);

/* email__smtp_engine_feed: n bytes, or the whole string. */
int ts_feedn(test_session_t *s, const char *data, size_t n);
int ts_feed(test_session_t *s, const char *data);

/*
 * Feeds data in pieces of `step` bytes (0: whole), taking everything after each piece, and
 * returns everything taken (also left in s->taken). *rc gets the first failure, or 0.
 */
const char *ts_feed_take(test_session_t *s, const char *data, size_t n, size_t step, int *rc);

/* The events so far, checked and forgotten. */
#define EXPECT_EVENTS(s, expected)                                                                 \
    do {                                                                                           \
        assert_string_equal(buf_str(&(s)->events), expected);                                      \
        email__buf_reset(&(s)->events);                                                            \
    } while (0)

/* True when the log holds exactly this line ("C: QUIT"). */
bool ts_log_has(const test_session_t *s, const char *line);

/* Greeting, EHLO and its reply. Returns the feed's result. */
int ts_greet(test_session_t *s, const char *ehlo_reply);

/* ------------------------------------------------------------------------------------------- */
/* A fake server: answers what the engine writes, keeps the messages it receives                */

#define FAKE_MAX_MESSAGES 64

typedef struct fake_server {
    const char *ehlo;         /* the EHLO reply */
    uint64_t *chaos;          /* set: MAIL, RCPT, DATA, end of data, BDAT get random answers */
    bool in_data;
    bool mail_ok;
    size_t bdat_left;         /* bytes of the current BDAT chunk still to come */
    bool bdat_last;
    size_t accepted;          /* recipients accepted in the current transaction */
    email_buf_t line;         /* partial line */
    email_buf_t msg;          /* message being received, dot-stuffing undone */
    email_buf_t replies;      /* replies not yet fed to the engine */
    char *messages[FAKE_MAX_MESSAGES];
    size_t lengths[FAKE_MAX_MESSAGES];
    size_t nmessages;
    bool quit;
    size_t burst;             /* commands (end of data included) in the current receive */
    size_t max_burst;         /* the most in one receive: all awaiting a reply at once */
} fake_server_t;

/* A fake server that greets, then answers EHLO with ehlo. */
void fake_server_init(fake_server_t *f, const char *ehlo);
void fake_server_free(fake_server_t *f);

/*
 * Runs a session against the fake server until it ends: whatever the engine writes is answered,
 * the answers fed back in random pieces (rng NULL: whole). Returns how many rounds it took.
 */
size_t fake_server_run(fake_server_t *f, test_session_t *s, uint64_t *rng);

/*
 * What the server must receive for a body: CRLF, bare CR and bare LF each become CRLF, and (when
 * final_crlf) a text not ending with a line break gets one.
 */
char *expected_body(const char *body, size_t n, bool final_crlf);

#endif
