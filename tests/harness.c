/* Test harness: see harness.h. */
#define _XOPEN_SOURCE 700

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 5000
#define SINK_ATTEMPTS 5
#define POLL_STEP_MS 10

/* ---------------------------------------------------------------------------------------------
 * Small utilities
 * ------------------------------------------------------------------------------------------- */

long long test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

struct timespec test_deadline_in(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static void server_reset(test_server_t *s)
{
    memset(s, 0, sizeof *s);
    s->stdin_fd = -1;
}

/* snprintf into a fixed buffer; -1 (and a message) if it does not fit. */
static int path_join(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "harness: path too long: %s/%s\n", dir, name);
        return -1;
    }
    return 0;
}

char *test_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (used + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
        } else if (n == 0) {
            buf[used] = '\0';
            if (len)
                *len = used;
            break;
        } else {
            used += (size_t)n;
        }
    }
    close(fd);
    return buf;
}

int test_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

char *test_tmpdir(void)
{
    const char *base = env_or("TMPDIR", "/tmp");
    size_t size = strlen(base) + sizeof "/emailsession-XXXXXX";
    char *path = malloc(size);
    if (!path)
        return NULL;
    snprintf(path, size, "%s/emailsession-XXXXXX", base);
    if (!mkdtemp(path)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int rmtree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int test_rmtree(const char *path)
{
    return nftw(path, rmtree_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------------------------- */

/*
 * fork + exec argv with the given fds as stdin and stdout. The test may have other threads, so
 * the child only makes async-signal-safe calls. Returns the pid or -1.
 */
static pid_t spawn(char *const argv[], int child_stdin, int child_stdout)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0)
        return pid;

#ifdef __linux__
    /* Dies with the test even if the test is killed before it can stop the server. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
#else
    (void)parent;
#endif
    /* A test runner's ignored or blocked signals would otherwise reach the server. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(child_stdin, STDIN_FILENO) < 0 || dup2(child_stdout, STDOUT_FILENO) < 0)
        _exit(127);
    execv(argv[0], argv);
    static const char msg[] = "harness: exec failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

/* Reaps pid if it has exited within timeout_ms; its wait status, or -1 if still running. */
static int reap(pid_t pid, int timeout_ms)
{
    long long deadline = test_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return 0; /* not our child any more: nothing left to wait for */
        if (test_now_ms() >= deadline)
            return -1;
        test_sleep_ms(POLL_STEP_MS);
    }
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int test_server_wait(test_server_t *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    int status = reap(s->pid, timeout_ms);
    if (status < 0)
        return -1;
    s->pid = 0;
    return exit_code(status);
}

void test_server_stop(test_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (reap(s->pid, STOP_TIMEOUT_MS) < 0) {
            fprintf(stderr, "harness: server %d ignored SIGTERM, killing it\n", (int)s->pid);
            kill(s->pid, SIGKILL);
            while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
        s->pid = 0;
    }
    if (s->stdin_fd >= 0) {
        close(s->stdin_fd);
        s->stdin_fd = -1;
    }
    if (s->dir[0]) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "harness: kept %s\n", s->dir);
        else if (test_rmtree(s->dir) != 0)
            fprintf(stderr, "harness: could not remove %s: %s\n", s->dir, strerror(errno));
        s->dir[0] = '\0';
    }
    s->port = 0;
}

/*
 * Close-on-exec, so that no other child inherits a server's stdin and keeps it alive when the
 * test dies. (pipe2 is not available everywhere; tests do not fork from several threads.)
 */
static int cloexec_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Creates s->dir. */
static int make_dir(test_server_t *s)
{
    char *dir = test_tmpdir();
    if (!dir)
        return -1;
    int n = snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof s->dir) {
        fprintf(stderr, "harness: temporary folder name too long: %s\n", dir);
        test_rmtree(dir);
        s->dir[0] = '\0';
        free(dir);
        return -1;
    }
    free(dir);
    return 0;
}

/* Reads the server's "PORT n [more...]" line from fd within timeout_ms: n, or -1. The ports after
 * the first (up to TEST_MORE_PORTS) go to more. */
static int read_port_line(int fd, pid_t pid, int timeout_ms, int *more)
{
    char line[64];
    size_t used = 0;
    long long deadline = test_now_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - test_now_ms();
        if (left <= 0) {
            fprintf(stderr, "harness: server %d did not report its port in time\n", (int)pid);
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r == 0 || (r < 0 && errno == EINTR))
            continue; /* a timeout is caught at the top */
        if (r < 0) {
            fprintf(stderr, "harness: poll: %s\n", strerror(errno));
            return -1;
        }
        ssize_t n = read(fd, line + used, sizeof line - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "harness: server %d exited before reporting its port\n", (int)pid);
            return -1;
        }
        used += (size_t)n;
        line[used] = '\0';
        char *nl = strchr(line, '\n');
        if (nl) {
            int port;
            char end;
            *nl = '\0';
            int got = sscanf(line, "PORT %d %d %d %d%c", &port, &more[0], &more[1], &more[2], &end);
            if (got < 1 || got > 1 + TEST_MORE_PORTS || port <= 0 || port > 65535) {
                fprintf(stderr, "harness: unexpected first line from server: %s\n", line);
                return -1;
            }
            return port;
        }
        if (used == sizeof line - 1) {
            fprintf(stderr, "harness: unexpected first line from server: %s\n", line);
            return -1;
        }
    }
}

static size_t count_args(const char *const *args)
{
    size_t n = 0;
    while (args && args[n])
        n++;
    return n;
}

static int server_start(test_server_t *s, const char *script_name, const char *script_text,
                        const char *const *args)
{
    server_reset(s);
    if (make_dir(s) != 0)
        return -1;

    char script_path[4096], auto_path[512], text_path[512];
    const char *auto_opt = NULL;
    if (path_join(script_path, sizeof script_path, env_or("EMAIL_TEST_SERVERS", "tests/servers"),
                  script_name)
        != 0)
        goto fail;
    if (strcmp(script_name, "smtpd.py") == 0 || strcmp(script_name, "postfix.py") == 0) {
        auto_opt = "--spool";
        if (path_join(auto_path, sizeof auto_path, s->dir, "spool") != 0)
            goto fail;
    } else if (strcmp(script_name, "scripted.py") == 0) {
        auto_opt = "--record";
        if (path_join(auto_path, sizeof auto_path, s->dir, "record") != 0)
            goto fail;
    }
    if (script_text) {
        if (path_join(text_path, sizeof text_path, s->dir, "script") != 0)
            goto fail;
        if (test_write_file(text_path, script_text, strlen(script_text)) != 0) {
            fprintf(stderr, "harness: cannot write %s: %s\n", text_path, strerror(errno));
            goto fail;
        }
    }

    size_t nargs = count_args(args);
    const char **argv = calloc(nargs + 10, sizeof *argv);
    if (!argv)
        goto fail;
    size_t i = 0;
    argv[i++] = env_or("PYTHON3", "/usr/bin/python3");
    argv[i++] = script_path;
    argv[i++] = "--port";
    argv[i++] = "0";
    if (auto_opt) {
        argv[i++] = auto_opt;
        argv[i++] = auto_path;
    }
    if (script_text) {
        argv[i++] = "--script";
        argv[i++] = text_path;
    }
    for (size_t k = 0; k < nargs; k++)
        argv[i++] = args[k];
    argv[i] = NULL;

    int in[2], out[2];
    if (cloexec_pipe(in) != 0) {
        free(argv);
        goto fail;
    }
    if (cloexec_pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        free(argv);
        goto fail;
    }
    /* execv's argv is not const-qualified, but exec does not modify it. */
    s->pid = spawn((char *const *)(uintptr_t)argv, in[0], out[1]);
    free(argv);
    close(in[0]);
    close(out[1]);
    s->stdin_fd = in[1];
    if (s->pid < 0) {
        s->pid = 0;
        close(out[0]);
        goto fail;
    }
    s->port = read_port_line(out[0], s->pid, START_TIMEOUT_MS, s->more_ports);
    close(out[0]);
    if (s->port < 0 && test_server_wait(s, STOP_TIMEOUT_MS) == TEST_SKIP) {
        test_server_stop(s); /* it said why on stderr */
        return TEST_SKIP;
    }
    if (s->port < 0)
        goto fail;
    return 0;

fail:
    fprintf(stderr, "harness: could not start %s\n", script_name);
    test_server_stop(s);
    return -1;
}

int test_server_start(test_server_t *s, const char *script_name, const char *const *args)
{
    return server_start(s, script_name, NULL, args);
}

int test_scripted_start(test_server_t *s, const char *script, const char *const *args)
{
    return server_start(s, "scripted.py", script, args);
}

char *test_scripted_record(const test_server_t *s, size_t *len)
{
    char path[512];
    if (path_join(path, sizeof path, s->dir, "record") != 0)
        return NULL;
    return test_read_file(path, len);
}

/* ---------------------------------------------------------------------------------------------
 * smtp-sink
 * ------------------------------------------------------------------------------------------- */

/*
 * Binds 127.0.0.1:port (0: any) and closes again: the port that was free a moment ago, or -1.
 * (smtp-sink cannot be told to pick a free port itself.)
 */
static int free_port(int wanted)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)wanted),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* One attempt on one port: 1 = listening, 0 = smtp-sink exited (port taken?), -1 = error. */
static int sink_try(test_server_t *s, const char *const *extra_args, int port)
{
    char listen_arg[64], counters[512], user[64] = "";
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", port);
    if (path_join(counters, sizeof counters, s->dir, "counters") != 0)
        return -1;
    if (geteuid() == 0) {
        /* smtp-sink insists on -u as root; staying root keeps PR_SET_PDEATHSIG in force. */
        struct passwd *pw = getpwuid(0);
        snprintf(user, sizeof user, "%s", pw ? pw->pw_name : "root");
    }

    size_t nargs = count_args(extra_args);
    const char **argv = calloc(nargs + 8, sizeof *argv);
    if (!argv)
        return -1;
    size_t i = 0;
    argv[i++] = env_or("SMTP_SINK", "/usr/sbin/smtp-sink");
    argv[i++] = "-c"; /* counters on stdout, one line per change: how test_sink_count counts */
    if (user[0]) {
        argv[i++] = "-u";
        argv[i++] = user;
    }
    for (size_t k = 0; k < nargs; k++)
        argv[i++] = extra_args[k];
    argv[i++] = listen_arg;
    argv[i++] = "1000";
    argv[i] = NULL;

    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = open(counters, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_t pid = in >= 0 && out >= 0 ? spawn((char *const *)(uintptr_t)argv, in, out) : -1;
    free(argv);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (pid < 0)
        return -1;

    long long deadline = test_now_ms() + START_TIMEOUT_MS;
    while (test_now_ms() < deadline) {
        int status = reap(pid, 0);
        if (status >= 0)
            return exit_code(status) == 127 ? -1 : 0; /* 127: could not even run it */
        if (port_accepts(port)) {
            s->pid = pid;
            s->port = port;
            return 1;
        }
        test_sleep_ms(POLL_STEP_MS);
    }
    kill(pid, SIGKILL);
    reap(pid, STOP_TIMEOUT_MS);
    fprintf(stderr, "harness: smtp-sink did not listen on port %d in time\n", port);
    return -1;
}

int test_sink_start(test_server_t *s, const char *const *extra_args)
{
    server_reset(s);
    if (make_dir(s) != 0)
        return -1;
    for (int attempt = 0; attempt < SINK_ATTEMPTS; attempt++) {
        int port = free_port(0);
        int r = port > 0 ? sink_try(s, extra_args, port) : -1;
        if (r == 1)
            return 0;
        /* Retry only if someone else took the port; otherwise it failed for another reason. */
        if (r < 0 || free_port(port) == port)
            break;
    }
    fprintf(stderr, "harness: could not start smtp-sink\n");
    test_server_stop(s);
    return -1;
}

int test_sink_count(const test_server_t *s)
{
    char path[512];
    if (path_join(path, sizeof path, s->dir, "counters") != 0)
        return -1;
    char *text = test_read_file(path, NULL);
    if (!text)
        return -1;
    int count = 0;
    for (const char *p = text; (p = strstr(p, "mesg=")) != NULL; p += 5)
        count = atoi(p + 5);
    free(text);
    return count;
}

int test_sink_wait(const test_server_t *s, int count, int timeout_ms)
{
    long long deadline = test_now_ms() + timeout_ms;
    int n;
    while ((n = test_sink_count(s)) < count && test_now_ms() < deadline)
        test_sleep_ms(POLL_STEP_MS);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * smtpd.py's spool
 * ------------------------------------------------------------------------------------------- */

int test_spool_count(const test_server_t *s)
{
    char path[512];
    if (path_join(path, sizeof path, s->dir, "spool") != 0)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strlen(n) == 9 && strcmp(n + 4, ".json") == 0 && n[0] >= '0' && n[0] <= '9'
            && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' && n[2] <= '9' && n[3] >= '0'
            && n[3] <= '9')
            count++;
    }
    closedir(d);
    return count;
}

char *test_spool_read(const test_server_t *s, int n, const char *ext, size_t *len)
{
    char path[512];
    int r = snprintf(path, sizeof path, "%s/spool/%04d.%s", s->dir, n, ext);
    if (n < 1 || r < 0 || (size_t)r >= sizeof path)
        return NULL;
    return test_read_file(path, len);
}

int test_spool_wait(const test_server_t *s, int count, int timeout_ms)
{
    long long deadline = test_now_ms() + timeout_ms;
    int n;
    while ((n = test_spool_count(s)) < count && test_now_ms() < deadline)
        test_sleep_ms(POLL_STEP_MS);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * JSON: just enough to read the spool's envelopes
 * ------------------------------------------------------------------------------------------- */

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at '"': returns just past the closing quote, or NULL. */
static const char *json_skip_string(const char *p)
{
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!p[1])
                return NULL;
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* p at a value: returns just past it, or NULL. */
static const char *json_skip_value(const char *p)
{
    p = json_ws(p);
    if (*p == '"')
        return json_skip_string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || !(p = json_skip_string(p)))
                    return NULL;
                p = json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            if (!(p = json_skip_value(p)))
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
            p = json_ws(p);
        }
    }
    if (!*p || strchr(",:}]", *p))
        return NULL;
    while (*p && !strchr(" \t\r\n,:}]", *p)) /* number, true, false, null */
        p++;
    return p;
}

/* The value of member name (name_len bytes, no escapes) in the object at p, or NULL. */
static const char *json_member(const char *p, const char *name, size_t name_len)
{
    p = json_ws(p);
    if (*p != '{')
        return NULL;
    p = json_ws(p + 1);
    while (*p == '"') {
        const char *key = p + 1, *end = json_skip_string(p);
        if (!end)
            return NULL;
        p = json_ws(end);
        if (*p++ != ':')
            return NULL;
        p = json_ws(p);
        if ((size_t)(end - 1 - key) == name_len && memcmp(key, name, name_len) == 0)
            return p;
        if (!(p = json_skip_value(p)))
            return NULL;
        p = json_ws(p);
        if (*p != ',')
            return NULL;
        p = json_ws(p + 1);
    }
    return NULL;
}

/* Element index of the array at p, or NULL. */
static const char *json_element(const char *p, long index)
{
    p = json_ws(p);
    if (*p != '[')
        return NULL;
    p = json_ws(p + 1);
    if (*p == ']')
        return NULL;
    for (long i = 0;; i++) {
        if (i == index)
            return p;
        if (!(p = json_skip_value(p)))
            return NULL;
        p = json_ws(p);
        if (*p != ',')
            return NULL;
        p = json_ws(p + 1);
    }
}

/* Follows a dotted path ("auth.login", "rcpt_tos.0") from the top-level value. */
static const char *json_lookup(const char *json, const char *path)
{
    const char *p = json;
    while (p && *path) {
        size_t len = strcspn(path, ".");
        p = json_ws(p);
        if (*p == '[') {
            char *end;
            long index = strtol(path, &end, 10);
            p = end == path + len && index >= 0 ? json_element(p, index) : NULL;
        } else {
            p = json_member(p, path, len);
        }
        path += len;
        if (*path == '.')
            path++;
    }
    return p ? json_ws(p) : NULL;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *utf8_put(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

char *test_json_string(const char *json, const char *key)
{
    const char *p = json_lookup(json, key);
    const char *end = p && *p == '"' ? json_skip_string(p) : NULL;
    if (!end)
        return NULL;
    /* Decoded text is never longer than its escaped form. */
    char *out = malloc((size_t)(end - p)), *o = out;
    if (!out)
        return NULL;
    for (p++; p < end - 1; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        unsigned cp, lo;
        switch (*++p) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            if (hex4(p + 1, &cp) != 0)
                goto bad;
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u'
                && hex4(p + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            if (cp >= 0xDC80 && cp <= 0xDCFF)
                *o++ = (char)(cp - 0xDC00); /* Python's surrogateescape: the original byte */
            else
                o = utf8_put(o, cp);
            break;
        default: *o++ = *p; break; /* \" \\ \/ */
        }
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

int test_json_array_count(const char *json, const char *key)
{
    const char *p = json_lookup(json, key);
    if (!p || *p != '[')
        return -1;
    p = json_ws(p + 1);
    if (*p == ']')
        return 0;
    for (int n = 1;; n++) {
        if (!(p = json_skip_value(p)))
            return -1;
        p = json_ws(p);
        if (*p == ']')
            return n;
        if (*p != ',')
            return -1;
        p++;
    }
}

int test_json_int(const char *json, const char *key, long long *out)
{
    const char *p = json_lookup(json, key);
    if (!p || !(*p == '-' || (*p >= '0' && *p <= '9')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || (*end && strchr(".eE", *end)))
        return -1;
    *out = v;
    return 0;
}

int test_json_bool(const char *json, const char *key)
{
    const char *p = json_lookup(json, key);
    if (p && strncmp(p, "true", 4) == 0)
        return 1;
    if (p && strncmp(p, "false", 5) == 0)
        return 0;
    return -1;
}
