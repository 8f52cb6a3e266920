/*
 * Test harness for the integration tests: starts and stops the local SMTP peers (tests/servers/
 * smtpd.py, tests/servers/scripted.py, postfix's smtp-sink) on 127.0.0.1 with free ports, reads
 * what they received, and extracts fields from the spool's JSON. POSIX only, no libuv.
 *
 * Environment: PYTHON3 (default /usr/bin/python3, which has aiosmtpd), EMAIL_TEST_SERVERS (the
 * folder with the scripts; default tests/servers under the current directory), SMTP_SINK
 * (default /usr/sbin/smtp-sink), EMAIL_TEST_KEEP (if set, stopping a server keeps its temporary
 * folder and prints where it is).
 *
 * Every server gets a fresh temporary folder (s->dir) that test_server_stop() removes. Servers
 * also die with the test: the Python ones when their stdin pipe closes, all of them (on Linux)
 * when the thread that started them exits, so start them from the main thread.
 */
#ifndef EMAIL_TEST_HARNESS_H
#define EMAIL_TEST_HARNESS_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define TEST_MORE_PORTS 3

typedef struct test_server {
    pid_t pid;      /* 0 once reaped */
    int port;       /* on 127.0.0.1 */
    int more_ports[TEST_MORE_PORTS]; /* a "PORT a b c d" line's others (dovecot_mail.py: POP3
                                        with TLS, IMAP, IMAP with TLS), else 0 */
    int stdin_fd;   /* write end of the server's stdin (-1 if none); closing it stops it */
    char dir[256];  /* temporary folder: the spool, the record, the counters */
} test_server_t;

/* The exit status of a test that cannot run here (automake's SKIP), and of a server script that
 * cannot (postfix.py when not root). */
#define TEST_SKIP 77

/*
 * Starts $EMAIL_TEST_SERVERS/<script_name> with "--port 0", then the automatic options, then args
 * (NULL-terminated, may be NULL; later options win): for smtpd.py and postfix.py "--spool <dir>",
 * for scripted.py "--record <dir>/record". Waits (10 s at most) for its "PORT n" line. Returns 0,
 * TEST_SKIP if the script exited with that status instead, or -1 with a message on stderr (s is
 * then safe to pass to test_server_stop).
 */
int test_server_start(test_server_t *s, const char *script_name, const char *const *args);

/* Starts scripted.py playing script (the text of a script, see scripted.py) plus args. */
int test_scripted_start(test_server_t *s, const char *script, const char *const *args);

/* Everything the client sent to scripted.py so far (malloc'ed, NUL-terminated; NULL if none). */
char *test_scripted_record(const test_server_t *s, size_t *len);

/*
 * Waits for the server to exit by itself (scripted.py does after its one connection) and reaps
 * it. Returns its exit status (0 = script passed, 3 = a step failed), 128 + signal if it was
 * killed, or -1 if it is still running after timeout_ms (it keeps running).
 */
int test_server_wait(test_server_t *s, int timeout_ms);

/* SIGTERM, then SIGKILL if needed, reap, close the pipe, remove the folder. Idempotent. */
void test_server_stop(test_server_t *s);

/*
 * Starts $SMTP_SINK on 127.0.0.1 with a free port ("smtp-sink -c [-u <user if root>]
 * <extra_args> 127.0.0.1:PORT 1000"; see smtp-sink(1) for extra_args, e.g. "-Q", "RCPT") and
 * waits until it accepts connections. Returns 0 or -1 (message on stderr).
 */
int test_sink_start(test_server_t *s, const char *const *extra_args);

/* Messages smtp-sink has received (its "." count), or -1 if it cannot be read. */
int test_sink_count(const test_server_t *s);

/* Polls test_sink_count() until it reaches count or timeout_ms passes; returns the last count. */
int test_sink_wait(const test_server_t *s, int count, int timeout_ms);

/* Messages smtpd.py has spooled (NNNN.json files). */
int test_spool_count(const test_server_t *s);

/*
 * Spooled message n (from 1): ext "eml" for the DATA bytes, "json" for the envelope. Malloc'ed,
 * NUL-terminated (len excludes the NUL; len may be NULL), NULL if absent.
 */
char *test_spool_read(const test_server_t *s, int n, const char *ext, size_t *len);

/* Polls test_spool_count() until it reaches count or timeout_ms passes; returns the last count. */
int test_spool_wait(const test_server_t *s, int count, int timeout_ms);

/*
 * Tiny JSON readers for the spool's envelopes. key is a path: "mail_from", "auth.login",
 * "rcpt_tos.1" (object members and array indexes, separated by dots).
 * test_json_string: the decoded string, malloc'ed (\uDC80-\uDCFF, Python's surrogateescape,
 * become the raw bytes 0x80-0xFF); NULL if absent or not a string (e.g. null).
 * test_json_array_count: the array's length, -1 if absent or not an array.
 * test_json_int: 0 and *out set, or -1 if absent or not an integer.
 * test_json_bool: 1 for true, 0 for false, -1 otherwise.
 */
char *test_json_string(const char *json, const char *key);
int test_json_array_count(const char *json, const char *key);
int test_json_int(const char *json, const char *key, long long *out);
int test_json_bool(const char *json, const char *key);

/* The whole file, malloc'ed and NUL-terminated (len excludes the NUL; may be NULL); NULL if it
 * cannot be read. */
char *test_read_file(const char *path, size_t *len);

/* Creates or truncates path with data. Returns 0 or -1. */
int test_write_file(const char *path, const void *data, size_t len);

/* Milliseconds of the monotonic clock; a sleep of ms milliseconds. */
long long test_now_ms(void);
void test_sleep_ms(int ms);

/* The CLOCK_REALTIME time ms milliseconds from now, for pthread_cond_timedwait. */
struct timespec test_deadline_in(int ms);

/* A new private folder under $TMPDIR (default /tmp), malloc'ed path; NULL on failure. */
char *test_tmpdir(void);

/* Removes path and everything under it (symbolic links are not followed). Returns 0 or -1. */
int test_rmtree(const char *path);

#endif
