/*
 * What the integration tests share besides the servers (harness.h): messages and transporters
 * for 127.0.0.1, a port nobody listens on, the certificates of tests/certs.sh, a thread that
 * runs email_dispatch, and the end-of-test check that the library's loop has no handle left.
 * Include after <cmocka.h>: the helpers fail the test themselves.
 */
#ifndef EMAIL_TEST_HARNESS_EMAIL_H
#define EMAIL_TEST_HARNESS_EMAIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "emailsession.h"

/* True under make check-valgrind (EMAIL_UNDER_VALGRIND): slower, so fewer messages, longer
 * waits. */
bool test_under_valgrind(void);

/* A message from `from` to `to` with a text body. */
email_message_t *test_message(const char *from, const char *to, const char *subject,
                              const char *body);

/* The settings of plain SMTP to 127.0.0.1:port (no TLS), and a transporter made of them. */
void test_plain_server(email_server_t *srv, int port);
email_transporter_t *test_plain_transporter(int port);

/* One message, synchronously, on t: the test fails with the status's text if it is not sent. */
void test_transporter_send_ok(email_transporter_t *t, email_message_t *m);

/* A port on 127.0.0.1 that nobody listens on (bound a moment ago, then released). */
int test_dead_port(void);

/* Makes the certificates of tests/certs.sh in dir (found through EMAIL_TEST_SERVERS). 0 or -1
 * with a message on stderr naming who asked. */
int test_make_certs(const char *dir, const char *who);

/* A thread that runs email_dispatch whenever its descriptor says so, until stopped. */
typedef struct test_dispatcher {
    pthread_t thread;
    atomic_bool stop;
} test_dispatcher_t;
void test_dispatcher_start(test_dispatcher_t *d);
void test_dispatcher_stop(test_dispatcher_t *d);

/* uv_walk callback: prints the handle's type and state on stderr. */
void test_print_handle(uv_handle_t *h, void *arg);

/* The caller's loop (email_use_loop) at the end of a test, the test's own handles closed: runs
 * it until the closes are done, then uv_loop_close must succeed (else the handles are listed). */
void assert_uv_loop_closes(uv_loop_t *loop);

/* The library's own loop has no handle open besides its wake-up, once the closes in flight are
 * done (waited for, briefly): every session, transporter, connection and timer of the test is
 * gone. Fails the test listing what is left. */
void assert_loop_idle(void);

/* A cmocka teardown that runs assert_loop_idle, and a test that ends with it. */
int test_teardown_loop_idle(void **state);
#define LOOP_IDLE_TEST(f) cmocka_unit_test_teardown(f, test_teardown_loop_idle)

#endif
