/*
 * The durable outbox (issue #13) against real servers on 127.0.0.1 (aiosmtpd, tests/servers/
 * smtpd.py), counting what arrives by the "Subject: msg <n>" of each message.
 *   - The kill test: tests/integration/outbox_child queues 500 messages and is killed with
 *     SIGKILL at a seeded random point; a second run resumes. Every message whose send had
 *     returned true arrives; none arrives twice but those reported EMAIL_EUNKNOWN. Again with a
 *     server that drops connections and answers 451 at random (smtpd.py --chaos).
 *   - What the server refuses for good leaves the outbox, a 4xx keeps it; ids survive.
 *   - Damaged entries (truncated, bad checksum, a temporary file left by a crash) are moved
 *     aside and counted, never sent; the rest is.
 *   - Two processes resuming one outbox send each entry once.
 *   - A transporter's own outbox, a prebuilt message too, resumed by another transporter.
 *   - A path that is a file, an unwritable folder, a full disk (a small tmpfs, as root): a clear
 *     error, and the send returns false with nothing left on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

#define MSGS 500
#define MAXSEQ 2048

static char child_path[512];

/* How many times each "msg <n>" arrived at the server. */
static void delivered(const test_server_t *s, int counts[MAXSEQ])
{
    memset(counts, 0, MAXSEQ * sizeof *counts);
    int n = test_spool_count(s);
    for (int i = 1; i <= n; i++) {
        char *eml = test_spool_read(s, i, "eml", NULL);
        assert_non_null(eml);
        const char *subj = strstr(eml, "Subject: msg ");
        assert_non_null(subj);
        int seq = atoi(subj + 13);
        assert_true(seq > 0 && seq < MAXSEQ);
        counts[seq]++;
        free(eml);
    }
}

/* Starts outbox_child with args; its stdout in *out (read end). */
static pid_t spawn(int *out, const char *mode, const char *dir, int port, int n)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char ports[16], ns[16];
        snprintf(ports, sizeof ports, "%d", port);
        snprintf(ns, sizeof ns, "%d", n);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(child_path, child_path, mode, dir, ports, ns, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Reads one line of the child (NULL at its end). */
static char *read_line(int fd, char *line, size_t size)
{
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t r = read(fd, line + len, 1);
        if (r <= 0)
            return len ? (line[len] = '\0', line) : NULL;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    return line;
}

/* The child's remaining lines: acknowledged sends into acked, "unknown <n>" into unknown. */
static void read_child(int fd, bool acked[MAXSEQ], bool unknown[MAXSEQ], int *nacked,
                       int stop_after)
{
    char line[128];
    while ((stop_after < 0 || *nacked < stop_after) && read_line(fd, line, sizeof line)) {
        int n;
        if (sscanf(line, "unknown %d", &n) == 1 && n > 0 && n < MAXSEQ)
            unknown[n] = true;
        else if (sscanf(line, "%d", &n) == 1 && n > 0 && n < MAXSEQ) {
            acked[n] = true;
            (*nacked)++;
        }
    }
}

static int wait_child(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* One round of the kill test: queue, SIGKILL after a seeded number of acknowledgments, resume,
 * then compare what arrived with what was acknowledged. */
static void kill_round(unsigned seed, bool chaos)
{
    test_server_t srv;
    char spec[32];
    snprintf(spec, sizeof spec, "0.08:%u", seed);
    const char *args[] = {"--pipelining", chaos ? "--chaos" : NULL, spec, NULL};
    assert_int_equal(test_server_start(&srv, "smtpd.py", args), 0);
    char *dir = test_tmpdir();
    assert_non_null(dir);
    srand(seed);
    int kill_at = rand() % (MSGS + 1);
    static bool acked[MAXSEQ], unknown[MAXSEQ];
    memset(acked, 0, sizeof acked);
    memset(unknown, 0, sizeof unknown);
    int nacked = 0, fd;
    pid_t pid = spawn(&fd, "queue", dir, srv.port, MSGS);
    read_child(fd, acked, unknown, &nacked, kill_at);
    if (rand() % 2)
        usleep((useconds_t)(rand() % 3000)); /* now and then between two acknowledgments */
    kill(pid, SIGKILL);
    read_child(fd, acked, unknown, &nacked, -1);
    close(fd);
    wait_child(pid);

    pid = spawn(&fd, "resume", dir, srv.port, 0);
    read_child(fd, acked, unknown, &nacked, -1);
    close(fd);
    assert_int_equal(wait_child(pid), 0);

    static int counts[MAXSEQ];
    delivered(&srv, counts);
    int dups = 0;
    for (int i = 1; i < MAXSEQ; i++) {
        if (acked[i] && counts[i] == 0)
            fail_msg("seed %u: msg %d was acknowledged but never arrived", seed, i);
        if (counts[i] > 1 && !unknown[i])
            fail_msg("seed %u: msg %d arrived %d times without an EMAIL_EUNKNOWN", seed, i,
                     counts[i]);
        dups += counts[i] > 1;
    }
    printf("# seed %u%s: killed after %d acknowledgments (%d in all), %d duplicates reported "
           "unknown\n", seed, chaos ? " (chaos)" : "", kill_at, nacked, dups);
    test_server_stop(&srv);
    test_rmtree(dir);
    free(dir);
}

/* Seeds per kill test: EMAIL_TEST_KILL_SEEDS, or n (1 under valgrind). */
static int kill_seeds(int n)
{
    const char *env = getenv("EMAIL_TEST_KILL_SEEDS");
    return env && atoi(env) > 0 ? atoi(env) : test_under_valgrind() ? 1 : n;
}

static void test_kill(void **state)
{
    (void)state;
    int seeds = kill_seeds(5);
    for (int s = 1; s <= seeds; s++)
        kill_round((unsigned)s * 7919u, false);
}

static void test_kill_chaos(void **state)
{
    (void)state;
    int seeds = kill_seeds(4);
    for (int s = 1; s <= seeds; s++)
        kill_round((unsigned)s * 104729u, true);
}

/* ---------------------------------------------------------------------------------------------
 * In this process
 * ------------------------------------------------------------------------------------------- */

typedef struct outcomes {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n, ok, unknown;
    uint64_t ids[64];
    int errors[64];
} outcomes_t;

static outcomes_t got = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, {0}, {0}};

static void on_done(uint64_t id, const email_status_t *st, void *data)
{
    (void)data;
    pthread_mutex_lock(&got.lock);
    if (got.n < 64) {
        got.ids[got.n] = id;
        got.errors[got.n] = st->error;
    }
    got.n++;
    got.ok += st->success;
    got.unknown += st->error == EMAIL_EUNKNOWN;
    pthread_cond_broadcast(&got.cond);
    pthread_mutex_unlock(&got.lock);
}

static void reset_outcomes(void)
{
    pthread_mutex_lock(&got.lock);
    got.n = got.ok = got.unknown = 0;
    pthread_mutex_unlock(&got.lock);
}

static void wait_outcomes(int n)
{
    struct timespec deadline = test_deadline_in(30000);
    pthread_mutex_lock(&got.lock);
    while (got.n < n && pthread_cond_timedwait(&got.cond, &got.lock, &deadline) == 0) {
    }
    int have = got.n;
    pthread_mutex_unlock(&got.lock);
    assert_int_equal(have, n);
}

/* Opens session "s" on port with the outbox dir and queues msg 1..n; their ids in ids. */
static void queue_some(const char *dir, int port, int n, uint64_t *ids)
{
    assert_int_equal(email_set_outbox(dir), 0);
    assert_true(email_start_smtp_session("s", NULL, "127.0.0.1", port, EMAIL_ASYNCHRONOUS, 0));
    assert_int_equal(email_session_set_callback("s", on_done, NULL), 0);
    for (int i = 1; i <= n; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "msg %d", i);
        email_message_t *m = test_message("a@example.org", "b@example.org", subject, "hi\n");
        ids[i - 1] = email_message_id(m);
        assert_true(email_send_message("s", m));
        email_message_free(m);
    }
}

static uint64_t listed[64];
static int nlisted;

static void on_entry(uint64_t id, const char *user, const char *subject, int64_t when, void *d)
{
    (void)when, (void)d;
    assert_string_equal(user, "s");
    assert_non_null(subject);
    if (nlisted < 64)
        listed[nlisted++] = id;
}

/* A 4xx keeps every entry (ids as they were given); a 5xx removes them. */
static void test_temporary_and_permanent(void **state)
{
    (void)state;
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    char *dir = test_tmpdir();
    test_server_t later, refuse;
    const char *a451[] = {"--data-reply", "451 4.3.0 later", NULL};
    const char *a554[] = {"--data-reply", "554 5.7.1 never", NULL};
    assert_int_equal(test_server_start(&later, "smtpd.py", a451), 0);
    assert_int_equal(test_server_start(&refuse, "smtpd.py", a554), 0);
    uint64_t ids[3];
    reset_outcomes();
    queue_some(dir, later.port, 3, ids);
    wait_outcomes(3);
    assert_int_equal(got.ok, 0);
    assert_true(email_close_session("s"));
    nlisted = 0;
    assert_int_equal(email_outbox_list("s", on_entry, NULL), 3);
    assert_int_equal(email_outbox_list("nobody", NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_true(listed[0] == ids[i] || listed[1] == ids[i] || listed[2] == ids[i]);
    /* a new process' worth of ids: a fresh outbox handle leases above the entries */
    email_shutdown();
    assert_int_equal(email_set_outbox(NULL), 0);
    assert_int_equal(email_set_outbox(dir), 0);
    email_message_t *m = email_message_new();
    assert_true(email_message_id(m) > ids[2]);
    email_message_free(m);
    /* resumed on a server that refuses for good: reported under the same ids, then gone */
    assert_true(email_start_smtp_session("s", NULL, "127.0.0.1", refuse.port,
                                         EMAIL_ASYNCHRONOUS, 0));
    assert_int_equal(email_session_set_callback("s", on_done, NULL), 0);
    reset_outcomes();
    assert_int_equal(email_outbox_resume("s"), 3);
    wait_outcomes(3);
    for (int i = 0; i < 3; i++) {
        assert_true(got.ids[i] == ids[0] || got.ids[i] == ids[1] || got.ids[i] == ids[2]);
        assert_int_equal(email_message_status(got.ids[i]), EMAIL_ERROR);
    }
    assert_true(email_close_session("s"));
    assert_int_equal(email_outbox_list(NULL, NULL, NULL), 0);
    email_shutdown();
    email_set_outbox(NULL);
    test_server_stop(&later);
    test_server_stop(&refuse);
    test_rmtree(dir);
    free(dir);
}

/* The entry files (<id>.msg) in dir. */
static int entries_in(const char *dir)
{
    char cmd[700];
    int n = -1;
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.msg$'", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* A transporter's own outbox (email_server_t.outbox): a message and a prebuilt one kept by a
 * 451, then resumed by another transporter for the same server, once it accepts them. */
static void test_transporter_outbox(void **state)
{
    (void)state;
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    char *dir = test_tmpdir();
    test_server_t srv;
    const char *a451[] = {"--data-reply", "451 4.3.0 later", NULL};
    assert_int_equal(test_server_start(&srv, "smtpd.py", a451), 0);
    email_server_t settings;
    test_plain_server(&settings, srv.port);
    settings.outbox = dir;
    email_transporter_t *t = email_transporter_new(&settings);
    assert_non_null(t);
    email_server_t back;
    assert_int_equal(email_transporter_get_server(t, &back), 0);
    assert_string_equal(back.outbox, dir);
    reset_outcomes();
    email_message_t *m = test_message("a@example.org", "b@example.org", "msg 1", "hi\n");
    uint64_t id1, id2;
    assert_int_equal(email_transporter_send_async(t, m, on_done, NULL, &id1), 0);
    email_message_free(m);
    const char *rcpts[] = {"b@example.org", NULL};
    const char *mime = "From: a@example.org\r\nSubject: msg 2\r\n\r\nprebuilt\r\n";
    assert_int_equal(email_transporter_send_mime_async(t, "a@example.org", rcpts, mime,
                                                       strlen(mime), on_done, NULL, &id2), 0);
    wait_outcomes(2);
    assert_int_equal(got.ok, 0);
    email_transporter_free(t);
    assert_int_equal(entries_in(dir), 2);
    /* the same server, accepting now */
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    test_server_stop(&srv);
    const char *again[] = {"--port", port, NULL};
    assert_int_equal(test_server_start(&srv, "smtpd.py", again), 0);
    t = email_transporter_new(&settings);
    assert_non_null(t);
    reset_outcomes();
    assert_int_equal(email_transporter_outbox_resume(t, 0, on_done, NULL), 2);
    wait_outcomes(2);
    assert_int_equal(got.ok, 2);
    assert_true((got.ids[0] == id1 && got.ids[1] == id2) ||
                (got.ids[0] == id2 && got.ids[1] == id1));
    assert_int_equal(test_spool_wait(&srv, 2, 5000), 2);
    assert_int_equal(email_transporter_outbox_resume(t, 0, on_done, NULL), 0);
    email_transporter_free(t);
    assert_int_equal(entries_in(dir), 0);
    email_shutdown();
    test_server_stop(&srv);
    test_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------
 * The mark is made off the loop thread. fdatasync (the marks' sync: entries use fsync) is
 * interposed here: while the gate is closed it waits in its caller's thread, except on the
 * loop's thread, where it is counted and never waits (the test fails instead of hanging).
 * ------------------------------------------------------------------------------------------- */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_closed, loop_known;
static int gate_waiting, loop_syncs;
static pthread_t loop_thread;

int fdatasync(int fd)
{
    pthread_mutex_lock(&gate_lock);
    if (loop_known && pthread_equal(pthread_self(), loop_thread)) {
        loop_syncs++;
        pthread_cond_broadcast(&gate_cond);
    } else if (gate_closed) {
        gate_waiting++;
        pthread_cond_broadcast(&gate_cond);
        while (gate_closed)
            pthread_cond_wait(&gate_cond, &gate_lock);
        gate_waiting--;
    }
    pthread_mutex_unlock(&gate_lock);
    return (int)syscall(SYS_fdatasync, fd);
}

static void set_gate(bool closed)
{
    pthread_mutex_lock(&gate_lock);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

/* Learns which thread is the loop's (callbacks run there). */
static void on_warm(uint64_t id, const email_status_t *st, void *data)
{
    pthread_mutex_lock(&gate_lock);
    loop_thread = pthread_self();
    loop_known = true;
    pthread_mutex_unlock(&gate_lock);
    on_done(id, st, data);
}

static void send_subject(email_transporter_t *t, const char *subject, email_send_cb cb)
{
    email_message_t *m = test_message("a@example.org", "b@example.org", subject, "hi\n");
    if (cb) {
        assert_int_equal(email_transporter_send_async(t, m, cb, NULL, NULL), 0);
    } else {
        email_status_t st;
        assert_int_equal(email_transporter_send(t, m, &st), 0);
        email_status_clear(&st);
    }
    email_message_free(m);
}

/* While a mark waits for the disk, the loop serves another transporter, and the marked
 * message's end of data waits: the server does not have it until the mark is done. */
static void test_mark_off_the_loop(void **state)
{
    (void)state;
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    char *dir = test_tmpdir();
    test_server_t srv;
    assert_int_equal(test_server_start(&srv, "smtpd.py", NULL), 0);
    email_server_t plain, boxed;
    test_plain_server(&plain, srv.port);
    boxed = plain;
    boxed.outbox = dir;
    email_transporter_t *a = email_transporter_new(&boxed), *b = email_transporter_new(&plain);
    assert_non_null(a);
    assert_non_null(b);
    reset_outcomes();
    send_subject(b, "warm", on_warm);
    wait_outcomes(1);
    set_gate(true);
    send_subject(a, "marked", on_done);
    pthread_mutex_lock(&gate_lock);
    while (!gate_waiting && !loop_syncs)
        pthread_cond_wait(&gate_cond, &gate_lock);
    int on_loop = loop_syncs;
    pthread_mutex_unlock(&gate_lock);
    if (on_loop) {
        set_gate(false);
        fail_msg("the mark's fdatasync ran on the loop thread");
    }
    send_subject(b, "meanwhile", NULL);
    assert_int_equal(test_spool_count(&srv), 2);
    assert_int_equal(got.n, 1);
    set_gate(false);
    wait_outcomes(2);
    assert_int_equal(got.ok, 2);
    assert_int_equal(test_spool_wait(&srv, 3, 5000), 3);
    email_transporter_free(a);
    email_transporter_free(b);
    email_shutdown();
    loop_known = false;
    test_server_stop(&srv);
    test_rmtree(dir);
    free(dir);
}

/* Byte `at` of the file flipped (a bad checksum), or the file cut to len. */
static void damage(const char *dir, uint64_t id, long at, long len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%016llx.msg", dir, (unsigned long long)id);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    if (len >= 0) {
        assert_int_equal(ftruncate(fd, len), 0);
    } else {
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        char c;
        off_t off = at < 0 ? st.st_size + at : at;
        assert_int_equal(pread(fd, &c, 1, off), 1);
        c ^= 0x20;
        assert_int_equal(pwrite(fd, &c, 1, off), 1);
    }
    close(fd);
}

static void test_corrupt_entries(void **state)
{
    (void)state;
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    char *dir = test_tmpdir();
    test_server_t later, good;
    const char *a451[] = {"--data-reply", "451 4.3.0 later", NULL};
    assert_int_equal(test_server_start(&later, "smtpd.py", a451), 0);
    assert_int_equal(test_server_start(&good, "smtpd.py", NULL), 0);
    uint64_t ids[4];
    reset_outcomes();
    queue_some(dir, later.port, 4, ids);
    wait_outcomes(4);
    assert_true(email_close_session("s"));
    damage(dir, ids[0], -3, -1);  /* a byte of the body: bad checksum */
    damage(dir, ids[1], 0, 100);  /* truncated */
    damage(dir, ids[2], 40, -1);  /* the checksum itself */
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp-%016llx", dir, (unsigned long long)ids[3] + 1000);
    assert_int_equal(test_write_file(path, "EMOUTBOX half", 13), 0);
    assert_int_equal(email_outbox_corrupt_count(), 0);
    assert_true(email_start_smtp_session("s", NULL, "127.0.0.1", good.port, EMAIL_ASYNCHRONOUS,
                                         0));
    assert_int_equal(email_session_set_callback("s", on_done, NULL), 0);
    reset_outcomes();
    assert_int_equal(email_outbox_resume("s"), 1);
    wait_outcomes(1);
    assert_int_equal(got.ok, 1);
    assert_int_equal(got.ids[0], ids[3]);
    assert_int_equal(email_outbox_corrupt_count(), 4);
    assert_int_equal(email_outbox_list(NULL, NULL, NULL), 0);
    assert_int_equal(test_spool_wait(&good, 1, 5000), 1);
    assert_true(email_close_session("s"));
    email_shutdown();
    email_set_outbox(NULL);
    test_server_stop(&later);
    test_server_stop(&good);
    test_rmtree(dir);
    free(dir);
}

/* Two processes resume one outbox at once: every entry arrives once. */
static void test_two_processes(void **state)
{
    (void)state;
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    char *dir = test_tmpdir();
    test_server_t later, good;
    const char *a451[] = {"--data-reply", "451 4.3.0 later", NULL};
    const char *pipelining[] = {"--pipelining", NULL};
    assert_int_equal(test_server_start(&later, "smtpd.py", a451), 0);
    assert_int_equal(test_server_start(&good, "smtpd.py", pipelining), 0);
    /* entries of session "kill" (what outbox_child resumes), kept by the 451 */
    assert_int_equal(email_set_outbox(dir), 0);
    assert_true(email_start_smtp_session("kill", NULL, "127.0.0.1", later.port,
                                         EMAIL_ASYNCHRONOUS, 0));
    assert_int_equal(email_session_set_callback("kill", on_done, NULL), 0);
    reset_outcomes();
    int n = test_under_valgrind() ? 20 : 200;
    for (int i = 1; i <= n; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "msg %d", i);
        email_message_t *m = test_message("a@example.org", "b@example.org", subject, "hi\n");
        assert_true(email_send_message("kill", m));
        email_message_free(m);
    }
    wait_outcomes(n);
    assert_true(email_close_session("kill"));
    email_shutdown();
    email_set_outbox(NULL);
    int fd1, fd2;
    pid_t p1 = spawn(&fd1, "resume", dir, good.port, 0);
    pid_t p2 = spawn(&fd2, "resume", dir, good.port, 0);
    static bool acked[MAXSEQ], unknown[MAXSEQ];
    int none = 0;
    read_child(fd1, acked, unknown, &none, -1);
    read_child(fd2, acked, unknown, &none, -1);
    close(fd1);
    close(fd2);
    assert_int_equal(wait_child(p1), 0);
    assert_int_equal(wait_child(p2), 0);
    static int counts[MAXSEQ];
    delivered(&good, counts);
    for (int i = 1; i <= n; i++)
        if (counts[i] != 1)
            fail_msg("msg %d arrived %d times", i, counts[i]);
    test_server_stop(&later);
    test_server_stop(&good);
    test_rmtree(dir);
    free(dir);
}

static void test_bad_paths(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/file", dir);
    assert_int_equal(test_write_file(path, "x", 1), 0);
    assert_int_equal(email_set_outbox(path), EMAIL_EIO);
    assert_non_null(strstr(email_error_info(), "is not a directory"));
    snprintf(path, sizeof path, "%s/file/sub", dir);
    assert_int_equal(email_set_outbox(path), EMAIL_EIO);
    assert_non_null(strstr(email_error_info(), "cannot be created"));
    /* unwritable: root writes anywhere but on a read-only file system such as /proc */
    snprintf(path, sizeof path, "%s/ro", dir);
    assert_int_equal(mkdir(path, 0500), 0);
    const char *ro = geteuid() == 0 ? "/proc" : path;
    assert_int_equal(email_set_outbox(ro), EMAIL_EIO);
    assert_non_null(strstr(email_error_info(), "not writable"));
    /* the transporter's own outbox is checked when it is made */
    email_server_t srv;
    test_plain_server(&srv, test_dead_port());
    srv.outbox = ro;
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EIO);
    assert_int_equal(email_outbox_list(NULL, NULL, NULL), EMAIL_EINVAL);
    test_rmtree(dir);
    free(dir);
}

/* A full disk: the send returns false with the reason, and nothing is left on disk. */
static void test_disk_full(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    if (geteuid() != 0 || mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        printf("# skipped: a small tmpfs needs root (%s)\n", strerror(errno));
        test_rmtree(dir);
        free(dir);
        skip();
    }
    email_server_t srv;
    test_plain_server(&srv, test_dead_port());
    srv.outbox = dir;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    size_t big = 256 * 1024;
    char *data = malloc(big);
    memset(data, 'x', big);
    email_message_t *m = test_message("a@example.org", "b@example.org", "big", "hi\n");
    assert_int_equal(email_message_add_attachment_data(m, data, big, "big.bin", NULL), 0);
    uint64_t id = 1;
    assert_int_equal(email_transporter_send_async(t, m, on_done, NULL, &id), EMAIL_EIO);
    if (!strstr(email_error_info(), "No space left"))
        fail_msg("%s", email_error_info());
    assert_int_equal(email_message_status(email_message_id(m)), EMAIL_ERROR);
    email_message_free(m);
    free(data);
    email_transporter_free(t);
    int left = 0;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -v '^\\.ids$\\|^\\.lock$\\|^\\.marks$' | wc -l",
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &left), 1);
    pclose(p);
    assert_int_equal(left, 0);
    umount(dir);
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const char *builddir = getenv("EMAIL_TEST_BUILDDIR");
    snprintf(child_path, sizeof child_path, "%s/tests/integration/outbox_child",
             builddir ? builddir : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_paths, test_teardown_loop_idle),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_temporary_and_permanent),
        cmocka_unit_test(test_corrupt_entries),
        cmocka_unit_test(test_transporter_outbox),
        cmocka_unit_test(test_mark_off_the_loop),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_kill_chaos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
