/* What the integration tests share besides the servers: see harness_email.h. */
#define _XOPEN_SOURCE 700

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "harness_email.h"
#include "runtime.h"

/* How long closes in flight may take (a QUIT's answer, a transporter freed in the background). */
#define CLOSES_MS 5000

bool test_under_valgrind(void)
{
    return getenv("EMAIL_UNDER_VALGRIND") != NULL;
}

email_message_t *test_message(const char *from, const char *to, const char *subject,
                              const char *body)
{
    email_message_t *m = email_message_new();
    assert_non_null(m);
    assert_int_equal(email_message_set_from(m, from), 0);
    assert_int_equal(email_message_add_to(m, to), 0);
    assert_int_equal(email_message_set_subject(m, subject), 0);
    assert_int_equal(email_message_set_text_body(m, body), 0);
    return m;
}

void test_plain_server(email_server_t *srv, int port)
{
    email_server_init(srv);
    srv->host = "127.0.0.1";
    srv->port = port;
    srv->security = EMAIL_SECURITY_NONE;
}

email_transporter_t *test_plain_transporter(int port)
{
    email_server_t srv;
    test_plain_server(&srv, port);
    email_transporter_t *t = email_transporter_new(&srv);
    if (!t)
        fail_msg("transporter: %s", email_error_info());
    return t;
}

void test_transporter_send_ok(email_transporter_t *t, email_message_t *m)
{
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    if (rc)
        fail_msg("send: %s", st.status_text);
    email_status_clear(&st);
}

int test_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

int test_make_certs(const char *dir, const char *who)
{
    const char *servers = getenv("EMAIL_TEST_SERVERS");
    char script[1024];
    if (servers && *servers)
        snprintf(script, sizeof script, "%s/../certs.sh", servers);
    else
        snprintf(script, sizeof script, "tests/certs.sh");
    if (strchr(script, '\'') || strchr(dir, '\'')) {
        fprintf(stderr, "%s: quote in %s or %s\n", who, script, dir);
        return -1;
    }
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "/bin/sh '%s' '%s'", script, dir);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s: \"%s\" failed (status %d)\n", who, cmd, st);
        return -1;
    }
    return 0;
}

static void *dispatcher_main(void *arg)
{
    test_dispatcher_t *d = arg;
    while (!atomic_load(&d->stop)) {
        struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
        if (poll(&p, 1, 50) > 0)
            email_dispatch();
    }
    return NULL;
}

void test_dispatcher_start(test_dispatcher_t *d)
{
    atomic_init(&d->stop, false);
    assert_int_equal(pthread_create(&d->thread, NULL, dispatcher_main, d), 0);
}

void test_dispatcher_stop(test_dispatcher_t *d)
{
    atomic_store(&d->stop, true);
    pthread_join(d->thread, NULL);
}

void test_print_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "  handle left on the loop: %s%s%s\n", uv_handle_type_name(h->type),
            uv_is_active(h) ? " (active)" : "", uv_is_closing(h) ? " (closing)" : "");
}

void assert_uv_loop_closes(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        uv_walk(loop, test_print_handle, NULL);
        fail_msg("uv_loop_close: %s: the library left handles on the caller's loop",
                 uv_err_name(rc));
    }
}

void assert_loop_idle(void)
{
    long long deadline = test_now_ms() + (test_under_valgrind() ? CLOSES_MS * 5 : CLOSES_MS);
    size_t n;
    while ((n = email__runtime_debug_open_handles(NULL, NULL)) != 0 && n != (size_t)-1
           && test_now_ms() < deadline)
        test_sleep_ms(10);
    if (n == (size_t)-1)
        fail_msg("the test ended on the caller's loop: it must shut the library down first");
    if (n) {
        fprintf(stderr, "the test left %zu handle(s) on the library's loop:\n", n);
        email__runtime_debug_open_handles(test_print_handle, NULL);
        fail_msg("%zu handle(s) left open on the library's loop", n);
    }
}

int test_teardown_loop_idle(void **state)
{
    (void)state;
    assert_loop_idle();
    return 0;
}
