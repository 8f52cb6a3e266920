/*
 * The conversation log (API.md section 6) against real servers on 127.0.0.1: the line format,
 * line by line; secrets masked in every destination (global log, extended log, callback); every
 * reply line; the global log's rotation; the exact MIME in the extended log; concurrent sessions;
 * errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <regex.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "emailsession.h"
#include "encode.h"
#include "harness.h"
#include "harness_email.h"
#include "log.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------- */
/* Reading logs                                                                                 */

#define TIME_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"
/* <counter> <time> <pid> <session id> <event> */
static const char line_re_text[] = "^([1-9][0-9]*) (" TIME_RE ") ([1-9][0-9]*) ([1-9][0-9]*) "
                                   "(C > \".*\"|S < \".*\"|### [^ ].*)$";
static const char open_re_text[] = "^### message ([0-9]+) (begins|continues)$";
static const char close_re_text[] =
    "^### message ([0-9]+) (ends|interrupted) \\(([0-9]+) bytes\\)$";

static regex_t line_re, open_re, close_re;

typedef struct log_line {
    unsigned long long counter, pid, session;
    char time[24];
    char *event;
    char *whole;
} log_line_t;

typedef struct log_msg {
    unsigned long long id, session;
    email_buf_t data;
} log_msg_t;

typedef struct parsed {
    log_line_t *lines;
    size_t n, cap;
    log_msg_t msgs[128];
    size_t nmsgs;
} parsed_t;

static unsigned long long group_ull(const char *s, const regmatch_t *m)
{
    return strtoull(s + m->rm_so, NULL, 10);
}

/* One line (NUL-terminated, no LF): 0 and *out filled, or -1 if it is not in the format. */
static int parse_line(const char *line, log_line_t *out)
{
    regmatch_t g[6];
    if (strchr(line, '\r') || regexec(&line_re, line, 6, g, 0) != 0)
        return -1;
    memset(out, 0, sizeof *out);
    out->counter = group_ull(line, &g[1]);
    memcpy(out->time, line + g[2].rm_so, (size_t)(g[2].rm_eo - g[2].rm_so));
    out->pid = group_ull(line, &g[3]);
    out->session = group_ull(line, &g[4]);
    out->event = email__strdup(line + g[5].rm_so);
    out->whole = email__strdup(line);
    return 0;
}

static void add_line(parsed_t *p, const log_line_t *l)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->lines = realloc(p->lines, p->cap * sizeof *p->lines);
        assert_non_null(p->lines);
    }
    p->lines[p->n++] = *l;
}

static char *dup_range(const char *s, size_t n)
{
    char *r = email__strndup(s, n);
    assert_non_null(r);
    return r;
}

/*
 * A whole log file. Every line must be in the format. With blocks (extended logs), the bytes
 * after "### message N begins|continues" up to the closing "### message N ends|interrupted (K
 * bytes)" line are message data: exactly K bytes (plus one uncounted LF before an "interrupted"
 * line when they do not end with LF).
 */
static void parse_log(const char *text, size_t len, parsed_t *p, bool blocks, const char *name)
{
    memset(p, 0, sizeof *p);
    size_t pos = 0;
    while (pos < len) {
        const char *eol = memchr(text + pos, '\n', len - pos);
        if (!eol)
            fail_msg("%s: unterminated last line at byte %zu", name, pos);
        size_t end = (size_t)(eol - text);
        char *line = dup_range(text + pos, end - pos);
        log_line_t l;
        if (parse_line(line, &l) != 0)
            fail_msg("%s: line at byte %zu not in the format: [%s]", name, pos, line);
        free(line);
        add_line(p, &l);
        pos = end + 1;
        regmatch_t g[4];
        if (!blocks || regexec(&open_re, l.event, 3, g, 0) != 0)
            continue;
        /* message data: find the closing line whose count lands exactly on it */
        unsigned long long id = group_ull(l.event, &g[1]);
        bool continues = l.event[g[2].rm_so] == 'c';
        size_t start = pos, q = pos;
        bool found = false;
        while (q < len && !found) {
            const char *e2 = memchr(text + q, '\n', len - q);
            if (!e2)
                break;
            size_t qend = (size_t)(e2 - text);
            char *cand = dup_range(text + q, qend - q);
            log_line_t c;
            if (parse_line(cand, &c) == 0) {
                if (regexec(&close_re, c.event, 4, g, 0) == 0 && group_ull(c.event, &g[1]) == id) {
                    size_t k = (size_t)group_ull(c.event, &g[3]);
                    bool interrupted = c.event[g[2].rm_so] == 'i';
                    if (q == start + k ||
                        (interrupted && q == start + k + 1 && text[start + k] == '\n')) {
                        found = true;
                        log_msg_t *m = NULL;
                        if (continues)
                            for (size_t i = p->nmsgs; i-- > 0;)
                                if (p->msgs[i].id == id && p->msgs[i].session == l.session) {
                                    m = &p->msgs[i];
                                    break;
                                }
                        if (!m) {
                            assert_true(p->nmsgs < sizeof p->msgs / sizeof p->msgs[0]);
                            m = &p->msgs[p->nmsgs++];
                            m->id = id;
                            m->session = l.session;
                            email__buf_init(&m->data);
                        }
                        assert_int_equal(email__buf_append(&m->data, text + start, k), 0);
                    }
                }
                free(c.event);
                free(c.whole);
            }
            free(cand);
            if (!found)
                q = qend + 1;
        }
        if (!found)
            fail_msg("%s: message %llu opened at byte %zu is never closed", name, id, start);
        pos = q; /* the closing line is read as a line */
    }
}

static void parsed_free(parsed_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->lines[i].event);
        free(p->lines[i].whole);
    }
    free(p->lines);
    for (size_t i = 0; i < p->nmsgs; i++)
        email__buf_free(&p->msgs[i].data);
    memset(p, 0, sizeof *p);
}

static void parse_file(const char *path, parsed_t *p, bool blocks)
{
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text)
        fail_msg("%s cannot be read", path);
    parse_log(text, len, p, blocks, path);
    free(text);
}

/* Counters first, first + 1, ...; this process's id on every line. */
static void assert_counters(const parsed_t *p, unsigned long long first, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->lines[i].counter != first + i)
            fail_msg("%s: line %zu has counter %llu, want %llu: %s", name, i + 1,
                     p->lines[i].counter, first + i, p->lines[i].whole);
        assert_int_equal(p->lines[i].pid, (unsigned long long)getpid());
    }
}

static bool is_message_line(const char *event)
{
    return strncmp(event, "### message ", 12) == 0;
}

static size_t count_event(const parsed_t *p, const char *event)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += strcmp(p->lines[i].event, event) == 0;
    return n;
}

static long find_prefix(const parsed_t *p, size_t from, const char *prefix)
{
    for (size_t i = from; i < p->n; i++)
        if (strncmp(p->lines[i].event, prefix, strlen(prefix)) == 0)
            return (long)i;
    return -1;
}

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

static char *b64(const void *data, size_t n)
{
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__base64_encode(&b, data, n), 0);
    return email__buf_steal(&b, NULL);
}

/* The password in no form at all, nor the user name in base64 (LOGIN's first line). */
static void assert_no_secrets(const char *text, size_t n, const char *user, const char *pass,
                              const char *what)
{
    char plain1[256], plain2[256];
    size_t ul = strlen(user), pl = strlen(pass);
    /* "\0user\0pass" and "user\0user\0pass" */
    plain1[0] = '\0';
    memcpy(plain1 + 1, user, ul);
    plain1[1 + ul] = '\0';
    memcpy(plain1 + 2 + ul, pass, pl);
    memcpy(plain2, user, ul);
    memcpy(plain2 + ul, plain1, 2 + ul + pl);
    char *forms[] = {email__strdup(pass), b64(pass, pl), b64(plain1, 2 + ul + pl),
                     b64(plain2, 2 + 2 * ul + pl), b64(user, ul)};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        if (contains(text, n, forms[i]))
            fail_msg("%s holds a secret (%s)", what, forms[i]);
        free(forms[i]);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The callback                                                                                 */

static pthread_mutex_t cb_mu = PTHREAD_MUTEX_INITIALIZER;
static email_buf_t cb_text;

static void collect(const char *line, void *user_data)
{
    (void)user_data; /* no cmocka assertion here: a callback may run on any thread */
    pthread_mutex_lock(&cb_mu);
    email__buf_puts(&cb_text, line);
    email__buf_putc(&cb_text, '\n');
    pthread_mutex_unlock(&cb_mu);
}

static char *cb_take(size_t *len)
{
    pthread_mutex_lock(&cb_mu);
    char *t = email__buf_steal(&cb_text, len);
    pthread_mutex_unlock(&cb_mu);
    if (!t) {
        t = email__strdup("");
        *len = 0;
    }
    return t;
}

/* ------------------------------------------------------------------------------------------- */
/* Helpers                                                                                      */

static char *path_in(const char *dir, const char *name)
{
    email_buf_t b;
    email__buf_init(&b);
    assert_int_equal(email__buf_printf(&b, "%s/%s", dir, name), 0);
    return email__buf_steal(&b, NULL);
}

static email_message_t *make_message(const char *subject, const char *body)
{
    email_message_t *m = email_message_new();
    assert_non_null(m);
    assert_int_equal(email_message_set_from(m, "Alice <alice@example.org>"), 0);
    assert_int_equal(email_message_add_to(m, "Bob <bob@example.net>"), 0);
    assert_int_equal(email_message_set_subject(m, subject), 0);
    assert_int_equal(email_message_set_text_body(m, body), 0);
    return m;
}

static void init_server(email_server_t *srv, int port)
{
    email_server_init(srv);
    srv->host = "127.0.0.1";
    srv->port = port;
    srv->security = EMAIL_SECURITY_NONE;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* The "S: " lines of smtpd.py's --log, in order. */
static size_t server_replies(const char *path, char ***out)
{
    size_t len;
    char *text = test_read_file(path, &len);
    assert_non_null(text);
    size_t n = 0, cap = 16;
    char **v = malloc(cap * sizeof *v);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *s = strstr(line, "] S: ");
        if (!s)
            continue;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = email__strdup(s + 5);
    }
    free(text);
    *out = v;
    return n;
}

/* ------------------------------------------------------------------------------------------- */
/* A session with AUTH: global log, extended log and callback at once                           */

static const char body_marker[] = "BODY-MARKER-7f3a";

static void auth_session(const char *mech)
{
    const char *user = "alice@example.org", *pass = "S3cr3t pw:42!";
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char *global = path_in(dir, "global.log"), *ext = path_in(dir, "ext.log");
    char *srvlog = path_in(dir, "server.log"), *account = NULL;
    email_buf_t acc;
    email__buf_init(&acc);
    email__buf_printf(&acc, "%s:%s", user, pass);
    account = email__buf_steal(&acc, NULL);
    const char *args[] = {"--auth", account, "--auth-mechs", mech, "--auth-required",
                          "--log", srvlog, NULL};
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", args), 0);

    assert_int_equal(email_set_log(global), 0);
    assert_int_equal(email_set_log_callback(collect, &cb_text), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    srv.user = user;
    srv.password = pass;
    srv.log_file = ext;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    char body[200];
    snprintf(body, sizeof body, "Hello,\n.leading dot\n%s\nBye.\n", body_marker);
    email_message_t *m = make_message("log test", body);
    test_transporter_send_ok(t, m);
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(email_set_log(NULL), 0);
    email_dispatch(); /* the callback's lines wait for it */
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);

    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);
    size_t eml_len;
    char *eml = test_spool_read(&s, 1, "eml", &eml_len);
    assert_non_null(eml);

    /* the global log, line by line */
    size_t glen;
    char *gtext = test_read_file(global, &glen);
    assert_non_null(gtext);
    parsed_t g;
    parse_log(gtext, glen, &g, false, "global log");
    assert_true(g.n > 10);
    assert_counters(&g, 1, "global log");
    for (size_t i = 0; i < g.n; i++)
        assert_int_equal(g.lines[i].session, g.lines[0].session);
    char want[300];
    /* 4D's words for the connect and close events (API.md section 6) */
    snprintf(want, sizeof want, "### SMTP Connected to '127.0.0.1' on port %d. (not secure)",
             s.port);
    assert_string_equal(g.lines[0].event, want);
    assert_string_equal(g.lines[g.n - 1].event, "### SMTP Connection closed");
    snprintf(want, sizeof want, "### SMTP Authenticated as '%s' (%s)", user, mech);
    if (count_event(&g, want) != 1)
        fail_msg("no \"%s\" line in the global log:\n%s", want, gtext);

    if (strcmp(mech, "PLAIN") == 0) {
        assert_int_equal(count_event(&g, "C > \"AUTH PLAIN ****\""), 1);
    } else {
        /* AUTH LOGIN, then the user name and the password lines, both masked */
        long a = find_prefix(&g, 0, "C > \"AUTH LOGIN");
        assert_true(a >= 0);
        assert_string_equal(g.lines[a].event, "C > \"AUTH LOGIN\"");
        long ok = find_prefix(&g, (size_t)a, "S < \"235");
        assert_true(ok > a);
        int masked = 0;
        for (long i = a + 1; i < ok; i++)
            if (g.lines[i].event[0] == 'C') {
                assert_string_equal(g.lines[i].event, "C > \"****\"");
                masked++;
            }
        assert_int_equal(masked, 2);
    }

    /* every reply line the server sent, in order, one line each (multi-line EHLO included) */
    char **replies;
    size_t nrep = server_replies(srvlog, &replies);
    assert_true(nrep >= 8);
    size_t k = 0, ehlo_lines = 0;
    for (size_t i = 0; i < g.n; i++) {
        if (g.lines[i].event[0] != 'S')
            continue;
        if (k >= nrep)
            fail_msg("more S lines than replies: %s", g.lines[i].event);
        snprintf(want, sizeof want, "S < \"%s\"", replies[k]);
        assert_string_equal(g.lines[i].event, want);
        ehlo_lines += strncmp(replies[k], "250-", 4) == 0;
        k++;
    }
    assert_int_equal(k, nrep);
    assert_true(ehlo_lines >= 2);
    for (size_t i = 0; i < nrep; i++)
        free(replies[i]);
    free(replies);

    /* no message bodies in the global log */
    assert_false(contains(gtext, glen, body_marker));
    assert_false(contains(gtext, glen, "Subject: log test"));
    assert_no_secrets(gtext, glen, user, pass, "the global log");

    /* the callback saw the same lines (numbered from 1 since it was set) */
    size_t clen;
    char *ctext = cb_take(&clen);
    assert_string_equal(ctext, gtext);
    assert_no_secrets(ctext, clen, user, pass, "the callback's lines");
    free(ctext);

    /* the extended log: the same conversation, numbered from 1, plus the exact MIME */
    size_t xlen;
    char *xtext = test_read_file(ext, &xlen);
    assert_non_null(xtext);
    parsed_t x;
    parse_log(xtext, xlen, &x, true, "extended log");
    assert_counters(&x, 1, "extended log");
    size_t gi = 0;
    for (size_t i = 0; i < x.n; i++) {
        assert_int_equal(x.lines[i].session, g.lines[0].session);
        if (is_message_line(x.lines[i].event))
            continue;
        assert_true(gi < g.n);
        assert_string_equal(x.lines[i].event, g.lines[gi].event);
        gi++;
    }
    assert_int_equal(gi, g.n);
    assert_int_equal(x.nmsgs, 1);
    assert_int_equal(x.msgs[0].data.len, eml_len);
    assert_memory_equal(x.msgs[0].data.data, eml, eml_len);
    assert_true(contains(xtext, xlen, body_marker));
    assert_non_null(strstr(xtext, " ### message "));
    assert_no_secrets(xtext, xlen, user, pass, "the extended log");

    parsed_free(&g);
    parsed_free(&x);
    free(gtext);
    free(xtext);
    free(eml);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(global);
    free(ext);
    free(srvlog);
    free(account);
}

static void test_auth_plain(void **state)
{
    auth_session("PLAIN");
}

static void test_auth_login(void **state)
{
    auth_session("LOGIN");
}

/* ------------------------------------------------------------------------------------------- */

static void test_rotation(void **state)
{
    const long limit = 3000;
    char *dir = test_tmpdir();
    char *path = path_in(dir, "rot.log");
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", NULL), 0);
    email__log_set_rotate_size(limit);
    assert_int_equal(email_set_log(path), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    for (int i = 0; i < 40; i++) {
        email_message_t *m = make_message("rotation", "text\n");
        assert_int_equal(email_transporter_send(t, m, NULL), 0);
        email_message_free(m);
    }
    email_transporter_free(t);
    assert_int_equal(email_set_log(NULL), 0);
    email__log_set_rotate_size(0);

    /* path, path.1 ... path.KEEP; nothing older */
    unsigned long long session = 0;
    for (int i = 0; i <= EMAIL_LOG_KEEP + 1; i++) {
        char name[600];
        if (i == 0)
            snprintf(name, sizeof name, "%s", path);
        else
            snprintf(name, sizeof name, "%s.%d", path, i);
        if (i == EMAIL_LOG_KEEP + 1) {
            assert_false(file_exists(name));
            break;
        }
        assert_true(file_exists(name));
        long size = file_size(name);
        assert_true(size > 0 && size <= limit);
        parsed_t p;
        parse_file(name, &p, false);
        assert_counters(&p, 1, name); /* every file numbers from 1 */
        if (!session)
            session = p.lines[0].session;
        for (size_t j = 0; j < p.n; j++)
            assert_int_equal(p.lines[j].session, session);
        /* full: the next file's first line would not have fitted */
        if (i > 0)
            assert_true(size > limit - 200);
        parsed_free(&p);
    }
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(path);
}

/* ------------------------------------------------------------------------------------------- */

/* email_session_set_log_file on a named session: the exact MIME of each message. */
static void test_extended_named_session(void **state)
{
    char *dir = test_tmpdir();
    char *path = path_in(dir, "session.log");
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", NULL), 0);
    assert_true(email_start_smtp_session("ext", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_session_set_log_file("ext", "/nonexistent/dir/x.log"), EMAIL_EIO);
    /* a name not started yet keeps it for its start; NULL forgets it */
    assert_int_equal(email_session_set_log_file("nobody", path), 0);
    assert_int_equal(email_session_set_log_file("nobody", NULL), 0);
    assert_int_equal(email_session_set_log_file("ext", path), 0);

    /* a body made to confuse a reader: a fake closing line, dots, 8-bit text */
    email_message_t *m = make_message("extended",
                                      "1 2020-01-01T00:00:00.000 1 1 ### message 1 ends (5 bytes)\n"
                                      ".\n..two dots\nh\xc3\xa9llo\n");
    static const char blob[] = "binary\0\r\n\x01\xff attachment";
    assert_int_equal(email_message_add_attachment_data(m, blob, sizeof blob, "a.bin", NULL), 0);
    assert_true(email_send_message("ext", m));
    email_message_free(m);
    /* prebuilt: bare LF, bare CR, no final line break; the log shows what the server got */
    const char *mime = "From: a@example.org\nTo: b@example.org\nSubject: raw\n\n"
                       "bare LF\nbare CR\rCRLF\r\n.\nlast line without newline";
    const char *rcpts[] = {"b@example.org", NULL};
    assert_true(email_send_mime("ext", "a@example.org", rcpts, mime, strlen(mime)));
    assert_true(email_close_session("ext"));

    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    parsed_t p;
    parse_file(path, &p, true);
    assert_counters(&p, 1, path);
    assert_int_equal(p.nmsgs, 2);
    for (int i = 0; i < 2; i++) {
        size_t len;
        char *eml = test_spool_read(&s, i + 1, "eml", &len);
        assert_non_null(eml);
        assert_int_equal(p.msgs[i].data.len, len);
        assert_memory_equal(p.msgs[i].data.data, eml, len);
        free(eml);
    }
    assert_int_not_equal(p.msgs[0].id, p.msgs[1].id);
    assert_string_equal(p.lines[p.n - 1].event, "### SMTP Connection closed");
    parsed_free(&p);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(path);
}

/* ------------------------------------------------------------------------------------------- */
/* Two sessions on two threads logging at once, into the same global and extended logs          */

#define PER_THREAD 15

typedef struct worker {
    int port, index;
    const char *ext;
    pthread_barrier_t *go;
    int failures;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    email_server_t srv;
    init_server(&srv, w->port);
    srv.log_file = w->ext;
    email_transporter_t *t = email_transporter_new(&srv);
    pthread_barrier_wait(w->go);
    if (!t) {
        w->failures = PER_THREAD;
        return NULL;
    }
    for (int i = 0; i < PER_THREAD; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "thread %d message %d", w->index, i);
        /* large enough to go out in several pieces, with the other session's lines between */
        size_t size = 150000, n = 0;
        char *body = malloc(size);
        if (!body)
            abort();
        while (n + 80 < size)
            n += (size_t)snprintf(body + n, size - n, "%s line %zu\n", subject, n);
        email_message_t *m = make_message(subject, body);
        free(body);
        if (email_transporter_send(t, m, NULL) != 0)
            w->failures++;
        email_message_free(m);
    }
    email_transporter_free(t);
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_two_sessions_at_once(void **state)
{
    char *dir = test_tmpdir();
    char *global = path_in(dir, "global.log"), *ext = path_in(dir, "shared-ext.log");
    test_server_t s[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(test_server_start(&s[i], "smtpd.py", NULL), 0);
    assert_int_equal(email_set_log(global), 0);
    assert_int_equal(email_set_log_callback(collect, &cb_text), 0);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    worker_t w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (worker_t){.port = s[i].port, .index = i, .ext = ext, .go = &go};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(email_set_log(NULL), 0);
    email_dispatch(); /* the callback's lines wait for it */
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);

    /* the global log: whole lines, one counter, two sessions, each a whole conversation */
    parsed_t g;
    parse_file(global, &g, false);
    assert_counters(&g, 1, "global log");
    unsigned long long ids[2] = {0, 0};
    for (size_t i = 0; i < g.n; i++) {
        unsigned long long id = g.lines[i].session;
        if (id == ids[0] || id == ids[1])
            continue;
        if (ids[1])
            fail_msg("a third session id: %s", g.lines[i].whole);
        assert_true(strncmp(g.lines[i].event, "### SMTP Connected to '", 23) == 0);
        ids[ids[0] ? 1 : 0] = id;
    }
    assert_true(ids[0] && ids[1] && ids[0] != ids[1]);
    bool interleaved = false;
    for (size_t i = 1; i < g.n; i++)
        interleaved |= g.lines[i].session != g.lines[i - 1].session;
    assert_true(interleaved);

    /* the callback: the same lines (perhaps in another order when two threads race) */
    size_t clen;
    char *ctext = cb_take(&clen);
    parsed_t c;
    parse_log(ctext, clen, &c, false, "callback lines");
    assert_int_equal(c.n, g.n);
    char **a = malloc(g.n * sizeof *a), **b = malloc(g.n * sizeof *b);
    for (size_t i = 0; i < g.n; i++) {
        a[i] = g.lines[i].whole;
        b[i] = c.lines[i].whole;
    }
    qsort(a, g.n, sizeof *a, cmp_str);
    qsort(b, g.n, sizeof *b, cmp_str);
    for (size_t i = 0; i < g.n; i++)
        assert_string_equal(a[i], b[i]);
    free(a);
    free(b);
    free(ctext);
    parsed_free(&c);

    /* the shared extended log: one file, one counter, every message exact */
    parsed_t x;
    parse_file(ext, &x, true);
    assert_counters(&x, 1, "shared extended log");
    assert_int_equal(x.nmsgs, 2 * PER_THREAD);
    bool used[2 * PER_THREAD] = {false};
    for (int si = 0; si < 2; si++) {
        assert_int_equal(test_spool_wait(&s[si], PER_THREAD, 5000), PER_THREAD);
        for (int n = 1; n <= PER_THREAD; n++) {
            size_t len;
            char *eml = test_spool_read(&s[si], n, "eml", &len);
            assert_non_null(eml);
            bool found = false;
            for (size_t i = 0; i < x.nmsgs && !found; i++)
                if (!used[i] && x.msgs[i].data.len == len &&
                    memcmp(x.msgs[i].data.data, eml, len) == 0)
                    found = used[i] = true;
            if (!found)
                fail_msg("server %d message %d is not in the extended log", si, n);
            free(eml);
        }
    }
    parsed_free(&x);
    parsed_free(&g);
    for (int i = 0; i < 2; i++)
        test_server_stop(&s[i]);
    test_rmtree(dir);
    free(dir);
    free(global);
    free(ext);
}

/* ------------------------------------------------------------------------------------------- */

static void check_connection(int port)
{
    email_server_t srv;
    init_server(&srv, port);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    assert_int_equal(email_transporter_check_connection(t, NULL), 0);
    email_transporter_free(t);
}

static void test_errors_and_stop(void **state)
{
    char *dir = test_tmpdir();
    char *path = path_in(dir, "a.log");
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", NULL), 0);

    assert_int_equal(email_set_log(path), 0);
    assert_false(email_error_occurred());
    /* an unwritable path: a clear error now, and the current log goes on */
    assert_int_equal(email_set_log("/nonexistent/dir/x.log"), EMAIL_EIO);
    assert_int_equal(email_last_error(), EMAIL_EIO);
    assert_non_null(strstr(email_error_info(), "/nonexistent/dir/x.log"));
    assert_int_equal(email_set_log(dir), EMAIL_EIO); /* a folder */
    assert_int_equal(email_set_log(""), EMAIL_EINVAL);
    check_connection(s.port);
    parsed_t p;
    parse_file(path, &p, false);
    assert_true(p.n >= 5);
    assert_counters(&p, 1, path);
    size_t first = p.n;
    parsed_free(&p);

    /* NULL stops it */
    assert_int_equal(email_set_log(NULL), 0);
    long size = file_size(path);
    check_connection(s.port);
    assert_int_equal(file_size(path), size);

    /* the same file again: appended, numbering goes on */
    assert_int_equal(email_set_log(path), 0);
    check_connection(s.port);
    assert_int_equal(email_set_log(NULL), 0);
    parse_file(path, &p, false);
    assert_true(p.n > first);
    assert_counters(&p, 1, path);
    assert_int_not_equal(p.lines[0].session, p.lines[p.n - 1].session);
    parsed_free(&p);

    /* a file we may not write */
    if (geteuid() != 0) {
        char *ro = path_in(dir, "ro.log");
        assert_int_equal(test_write_file(ro, "", 0), 0);
        chmod(ro, 0400);
        assert_int_equal(email_set_log(ro), EMAIL_EIO);
        assert_non_null(strstr(email_error_info(), "ro.log"));
        free(ro);
    }

    /* a transporter's log_file that cannot be opened: refused at once, named */
    email_server_t srv;
    init_server(&srv, s.port);
    srv.log_file = "/nonexistent/dir/ext.log";
    assert_null(email_transporter_new(&srv));
    assert_non_null(strstr(email_error_info(), "log_file"));

    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(path);
}

/* ------------------------------------------------------------------------------------------- */
/* The extended log's message blocks when events and other sessions come in between (the
 * internal interface the engine uses, driven directly) */

static void data(log_sink_t *sink, uint64_t session, const char *text)
{
    email__log_data(sink, session, text, strlen(text));
}

static const log_msg_t *find_msg(const parsed_t *p, unsigned long long id)
{
    for (size_t i = 0; i < p->nmsgs; i++)
        if (p->msgs[i].id == id)
            return &p->msgs[i];
    fail_msg("message %llu is not in the log", id);
    return NULL;
}

static void assert_msg(const parsed_t *p, unsigned long long id, const char *want)
{
    const log_msg_t *m = find_msg(p, id);
    if (m->data.len != strlen(want) || memcmp(m->data.data ? m->data.data : "", want, m->data.len))
        fail_msg("message %llu: got [%.*s], want [%s]", id, (int)m->data.len,
                 m->data.data ? m->data.data : "", want);
}

static void test_blocks_interleaved(void **state)
{
    char *dir = test_tmpdir();
    char *path = path_in(dir, "blocks.log"), *global = path_in(dir, "global.log");
    char *link = path_in(dir, "link.log");
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(email_set_log(global), 0);
    char err[300];
    log_sink_t *sink = email__log_sink_open(path, err, sizeof err);
    assert_non_null(sink);
    assert_ptr_equal(email__log_sink_open(link, err, sizeof err),
                     sink); /* the same file: one sink */
    email__log_sink_release(sink);
    assert_null(email__log_sink_open("/nonexistent/dir/x.log", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/x.log"));

    uint64_t a = email__log_session_id(), b = email__log_session_id();
    assert_true(b > a);
    email__log_event(sink, a, '#', "connected to A");
    email__log_data_begin(sink, a, 101);
    data(sink, a, "Subject: a\n\nfirst half of a li");
    email__log_event(sink, b, 'S', "250 two\r\nlines"); /* cuts A's block in the middle of a line */
    email__log_data_begin(sink, b, 202);
    data(sink, b, "Subject: b\r\n\r\nbody b\r"); /* ends with a bare CR */
    data(sink, a, "ne\nend of a");                 /* A continues, B is cut */
    email__log_data_end(sink, a, 101);                /* the missing CRLF is added */
    data(sink, b, "\nmore b\n");                    /* the LF of B's CRLF, then more */
    email__log_data_end(sink, b, 202);
    email__log_data_begin(sink, a, 103);              /* an empty message */
    email__log_data_end(sink, a, 103);
    email__log_data_begin(sink, b, 204);
    data(sink, b, "x");
    email__log_flush(sink);
    email__log_sink_release(sink); /* in the middle of 204: the file says it was cut */
    assert_int_equal(email_set_log(NULL), 0);

    parsed_t p;
    parse_file(path, &p, true);
    assert_counters(&p, 1, path);
    assert_msg(&p, 101, "Subject: a\r\n\r\nfirst half of a line\r\nend of a\r\n");
    assert_msg(&p, 202, "Subject: b\r\n\r\nbody b\r\nmore b\r\n");
    assert_msg(&p, 103, "");
    assert_msg(&p, 204, "x");
    assert_int_equal(count_event(&p, "### message 101 continues"), 1);
    assert_int_equal(count_event(&p, "### message 202 continues"), 1);
    assert_int_equal(count_event(&p, "### message 204 interrupted (1 bytes)"), 1);
    assert_int_equal(count_event(&p, "### message 103 ends (0 bytes)"), 1);
    /* CR LF never inside a line: escaped like every control character */
    assert_int_equal(count_event(&p, "S < \"250 two\\x0d\\x0alines\""), 1);
    size_t n1 = p.n;
    parsed_free(&p);

    /* the global log: the events, no message data */
    parse_file(global, &p, false);
    assert_counters(&p, 1, global);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.lines[1].event, "S < \"250 two\\x0d\\x0alines\"");
    parsed_free(&p);

    /* opened again: appended, numbered on */
    sink = email__log_sink_open(path, err, sizeof err);
    assert_non_null(sink);
    email__log_event(sink, a, '#', "again");
    email__log_sink_release(sink);
    parse_file(path, &p, true);
    assert_counters(&p, 1, path);
    assert_int_equal(p.n, n1 + 1);
    assert_string_equal(p.lines[n1].event, "### again");
    parsed_free(&p);

    test_rmtree(dir);
    free(dir);
    free(path);
    free(global);
    free(link);
}

/* ------------------------------------------------------------------------------------------- */
/* Lines buffered with no flush behind them reach the file within about a second               */

static void *send_in_thread(void *arg)
{
    (void)arg;
    email_message_t *m = make_message("slow", "x\n");
    email_send_message("slow", m); /* fails: the server never answers MAIL FROM */
    email_message_free(m);
    return NULL;
}

static double wall_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static double line_seconds(const char *when)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    sscanf(when, "%d-%d-%dT%d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
           &tm.tm_min, &tm.tm_sec, &ms);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    return (double)mktime(&tm) + ms / 1000.0;
}

static void test_flushed_within_a_second(void **state)
{
    char *dir = test_tmpdir();
    char *path = path_in(dir, "slow.log");
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:.*\n"
                         "sleep 5\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_int_equal(email_set_log(path), 0);
    int old_timeout = email_get_timeout();
    email_set_timeout(3); /* longer than the flusher takes, shorter than the server's sleep */
    assert_true(email_start_smtp_session("slow", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_in_thread, NULL), 0);
    /* poll the file until MAIL FROM shows; it must not have waited long in memory */
    double seen = 0, logged = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        usleep(50 * 1000);
        size_t len;
        char *text = test_read_file(path, &len);
        char *at = text ? strstr(text, " C > \"MAIL FROM:<alice@example.org>") : NULL;
        if (at) {
            seen = wall_seconds();
            while (at > text && at[-1] != '\n')
                at--;
            log_line_t l;
            char *nl = strchr(at, '\n');
            char *line = dup_range(at, (size_t)(nl - at));
            assert_int_equal(parse_line(line, &l), 0);
            logged = line_seconds(l.time);
            free(l.event);
            free(l.whole);
            free(line);
        }
        free(text);
    }
    assert_true(seen > 0);
    double slack = getenv("EMAIL_UNDER_VALGRIND") ? 2.5 : 1.6;
    if (seen - logged > slack)
        fail_msg("MAIL FROM reached the file %.2f s after it was logged", seen - logged);
    pthread_join(th, NULL);
    email_close_session("slow");
    email_set_timeout(old_timeout);
    assert_int_equal(email_set_log(NULL), 0);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(path);
}

/* ------------------------------------------------------------------------------------------- */
/* A server's text with control characters, quotes and backslashes                             */

/* The field of an event `S < "..."` with the log's escapes undone (malloc'ed), or NULL when it
 * holds a raw control character, an unescaped '"' or a malformed escape. */
static char *unescape_field(const char *event)
{
    size_t n = strlen(event);
    if (n < 6 || strncmp(event, "S < \"", 5) != 0 || event[n - 1] != '"')
        return NULL;
    email_buf_t b;
    email__buf_init(&b);
    for (size_t i = 5; i < n - 1; i++) {
        unsigned char c = (unsigned char)event[i];
        unsigned hex;
        if (c < 0x20 || c == 0x7f || c == '"') {
            email__buf_free(&b);
            return NULL;
        }
        if (c != '\\') {
            email__buf_putc(&b, (char)c);
        } else if (event[i + 1] == '\\' || event[i + 1] == '"') {
            email__buf_putc(&b, event[++i]);
        } else if (event[i + 1] == 'x' && sscanf(event + i + 2, "%2x", &hex) == 1) {
            email__buf_putc(&b, (char)hex);
            i += 3;
        } else {
            email__buf_free(&b);
            return NULL;
        }
    }
    return b.data ? email__buf_steal(&b, NULL) : email__strdup("");
}

/* Every S line of p undone must be one of the reply lines sent, in that order. */
static void assert_replies_escaped(const char *text, size_t len, bool blocks, const char *name,
                                   const char *const *sent, size_t nsent)
{
    parsed_t p;
    parse_log(text, len, &p, blocks, name);
    assert_counters(&p, 1, name);
    size_t k = 0;
    for (size_t i = 0; i < p.n; i++) {
        if (p.lines[i].event[0] == '#' && strstr(p.lines[i].event, "authenticated"))
            fail_msg("%s: a forged event: %s", name, p.lines[i].whole);
        if (p.lines[i].event[0] != 'S')
            continue;
        char *raw = unescape_field(p.lines[i].event);
        if (!raw || k >= nsent || strcmp(raw, sent[k]) != 0)
            fail_msg("%s: [%s] is not the escaped reply [%s]", name, p.lines[i].event,
                     k < nsent ? sent[k] : "(none)");
        free(raw);
        k++;
    }
    assert_int_equal(k, nsent);
    parsed_free(&p);
    /* nothing a terminal would act on: no ESC, BEL or C1 byte anywhere */
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\033' || text[i] == '\007' || (unsigned char)text[i] == 0x9b)
            fail_msg("%s: a raw control byte 0x%02x at %zu", name, (unsigned char)text[i], i);
}

static void test_server_text_escaped(void **state)
{
    /* the reply lines as the server sends them (scripted.py's escapes) and as bytes */
    const char *script = "send 220 x\" fake ### authenticated as root\n"
                         "expect EHLO .*\n"
                         "send 250-scripted \\x1b]0;owned\\x07\\x1b[2J\\r\\n250 8BITMIME\n"
                         "expect MAIL FROM:.*\n"
                         "send 250 ok C:\\\\dir\\\\ \"quoted\" \\xc2\\x9b31m caf\\xc3\\xa9 \\xff\n"
                         "expect RCPT TO:.*\n"
                         "send 250 ok\\x7f\\x01\n"
                         "expect DATA\n"
                         "send 354 go\n"
                         "expect-data\n"
                         "send 250 queued \\\\\"\n"
                         "expect QUIT\n"
                         "send 221 bye\n";
    const char *const sent[] = {"220 x\" fake ### authenticated as root",
                                "250-scripted \033]0;owned\007\033[2J",
                                "250 8BITMIME",
                                "250 ok C:\\dir\\ \"quoted\" \xc2\x9b\x33\x31m caf\xc3\xa9 \xff",
                                "250 ok\177\001",
                                "354 go",
                                "250 queued \\\"",
                                "221 bye"};
    const size_t nsent = sizeof sent / sizeof sent[0];
    char *dir = test_tmpdir();
    char *global = path_in(dir, "global.log"), *ext = path_in(dir, "ext.log");
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_int_equal(email_set_log(global), 0);
    assert_int_equal(email_set_log_callback(collect, &cb_text), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    srv.log_file = ext;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_message_t *m = make_message("escapes", "hello\n");
    email_status_t st;
    int rc = email_transporter_send(t, m, &st);
    if (rc)
        fail_msg("send: %s", st.status_text);
    email_message_free(m);
    email_transporter_free(t);
    assert_int_equal(email_set_log(NULL), 0);
    email_dispatch(); /* the callback's lines wait for it (the default callback thread) */
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);
    assert_int_equal(test_server_wait(&s, 5000), 0);

    size_t glen, clen, xlen;
    char *gtext = test_read_file(global, &glen), *ctext = cb_take(&clen);
    char *xtext = test_read_file(ext, &xlen);
    assert_non_null(gtext);
    assert_non_null(xtext);
    assert_replies_escaped(gtext, glen, false, "global log", sent, nsent);
    assert_replies_escaped(ctext, clen, false, "callback", sent, nsent);
    assert_replies_escaped(xtext, xlen, true, "extended log", sent, nsent);
    /* the exact text of two of them */
    assert_non_null(strstr(gtext, " S < \"220 x\\\" fake ### authenticated as root\"\n"));
    assert_non_null(strstr(gtext, " S < \"250-scripted \\x1b]0;owned\\x07\\x1b[2J\"\n"));
    free(gtext);
    free(ctext);
    free(xtext);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(global);
    free(ext);
}

/* ------------------------------------------------------------------------------------------- */
/* Fidelity to 4D's log: QUIT after a failed authentication, the log directory                  */

/* The index of the first line at or after `from` whose event starts with prefix; fails if none. */
static size_t must_find(const parsed_t *p, size_t from, const char *prefix, const char *text)
{
    long i = find_prefix(p, from, prefix);
    if (i < 0)
        fail_msg("no line starting with [%s] in:\n%s", prefix, text);
    return (size_t)i;
}

/* A wrong password against aiosmtpd: the log reads as 4D's (535, QUIT, 221); still the 535. */
static void test_quit_after_failed_auth(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *global = path_in(dir, "global.log"), *srvlog = path_in(dir, "server.log");
    const char *args[] = {"--auth", "alice@example.org:right", "--auth-mechs", "PLAIN",
                          "--auth-required", "--log", srvlog, NULL};
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", args), 0);
    assert_int_equal(email_set_log(global), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    srv.user = "alice@example.org";
    srv.password = "wrong";
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_EAUTH);
    assert_false(st.success);
    assert_int_equal(st.error, EMAIL_EAUTH);
    assert_int_equal(st.status, 535);
    assert_string_equal(st.enhanced_code, "5.7.8");
    assert_non_null(strstr(st.status_text, "535"));
    email_status_clear(&st);
    email_transporter_free(t);
    assert_int_equal(email_set_log(NULL), 0);

    size_t len;
    char *text = test_read_file(global, &len);
    assert_non_null(text);
    parsed_t g;
    parse_log(text, len, &g, false, "global log");
    size_t i = must_find(&g, 0, "S < \"535 ", text);
    assert_true(i + 3 < g.n);
    assert_string_equal(g.lines[i + 1].event, "C > \"QUIT\"");
    assert_int_equal(strncmp(g.lines[i + 2].event, "S < \"221 ", 9), 0);
    assert_int_equal(strncmp(g.lines[i + 3].event, "### SMTP Error: authentication with PLAIN "
                                                   "failed: 535 ", 52), 0);
    assert_string_equal(g.lines[g.n - 1].event, "### SMTP Connection closed");
    parsed_free(&g);
    free(text);
    /* the server did get QUIT, after the refused AUTH */
    char *srv_text = test_read_file(srvlog, NULL);
    assert_non_null(srv_text);
    const char *auth = strstr(srv_text, "] C: AUTH PLAIN");
    assert_non_null(auth);
    assert_non_null(strstr(auth, "] C: QUIT"));
    free(srv_text);
    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(global);
    free(srvlog);
}

/*
 * QUIT unanswered after a failed authentication: the wait is a reply's (send_timeout), not what is
 * left of the connection timeout, and the outcome is still the 535.
 */
static void test_quit_unanswered_after_failed_auth(void **state)
{
    (void)state;
    const char *script = "send 220 mx.example ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250-mx.example\\r\\n250 AUTH PLAIN\n"
                         "expect AUTH PLAIN .*\n"
                         "send 535 5.7.8 bad credentials\n"
                         "expect QUIT\n"
                         "wait-close\n";
    test_server_t s;
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    assert_int_equal(email_set_log_callback(collect, &cb_text), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    srv.user = "alice";
    srv.password = "wrong";
    srv.connection_timeout = 20;
    srv.send_timeout = 1;
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_status_t st;
    assert_int_equal(email_transporter_check_connection(t, &st), EMAIL_EAUTH);
    assert_int_equal(st.status, 535);
    email_status_clear(&st);
    email_transporter_free(t);
    email_dispatch(); /* the callback's lines wait for it (the default callback thread) */
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    size_t len;
    char *text = cb_take(&len);
    if (!strstr(text, " ### SMTP Error: timed out after 1 s waiting for the server\n"))
        fail_msg("QUIT's answer was not awaited as a reply:\n%s", text);
    assert_non_null(strstr(text, " ### SMTP Error: authentication with PLAIN failed: 535 "));
    free(text);
    test_server_stop(&s);
}

/* A log (global or extended) in path that saw a session end. */
static void assert_logged_to(const char *path)
{
    parsed_t p;
    parse_file(path, &p, true);
    assert_true(p.n >= 3);
    if (count_event(&p, "### SMTP Connection closed") < 1)
        fail_msg("%s: no session ended there", path);
    parsed_free(&p);
}

/* email_set_log_directory: errors name the path and change nothing. */
static void log_directory_errors(const char *dir, const char *logs)
{
    char *missing = path_in(dir, "missing"), *file = path_in(dir, "file.txt");
    assert_int_equal(test_write_file(file, "x", 1), 0);
    assert_int_equal(email_set_log_directory(logs), 0);
    assert_int_equal(email_set_log_directory(missing), EMAIL_EIO);
    assert_int_equal(email_last_error(), EMAIL_EIO);
    assert_non_null(strstr(email_error_info(), missing));
    assert_int_equal(email_set_log_directory(file), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), file));
    assert_int_equal(email_set_log_directory(""), EMAIL_EINVAL);
    free(missing);
    free(file);
}

/* Relative log paths go to the log directory: the global log, a session's, a transporter's. */
static void test_log_directory(void **state)
{
    (void)state;
    char *dir = test_tmpdir(), *logs = path_in(dir, "logs");
    assert_int_equal(mkdir(logs, 0700), 0);
    test_server_t s;
    assert_int_equal(test_server_start(&s, "smtpd.py", NULL), 0);
    log_directory_errors(dir, logs); /* leaves logs/ set */

    assert_int_equal(email_set_log("global.log"), 0);
    email_server_t srv;
    init_server(&srv, s.port);
    srv.log_file = "transporter.log";
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    assert_int_equal(email_transporter_check_connection(t, NULL), 0);
    email_transporter_free(t);
    assert_true(email_start_smtp_session("dir", NULL, "127.0.0.1", s.port, EMAIL_SYNCHRONOUS,
                                         EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_session_set_log_file("dir", "session.log"), 0);
    email_message_t *m = make_message("log directory", "hello\n");
    assert_true(email_send_message("dir", m));
    email_message_free(m);
    assert_true(email_close_session("dir"));
    assert_int_equal(email_set_log(NULL), 0);
    const char *names[] = {"global.log", "transporter.log", "session.log"};
    for (size_t i = 0; i < 3; i++) {
        char *in_logs = path_in(logs, names[i]);
        assert_logged_to(in_logs);
        assert_false(file_exists(names[i])); /* not in the current directory */
        free(in_logs);
    }

    /* a relative directory is taken against the current directory, at the call; NULL goes back
     * to the current directory, taken when each path is given */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(email_set_log_directory("logs"), 0);
    assert_int_equal(email_set_log("rel.log"), 0);
    assert_int_equal(email_set_log_directory(NULL), 0);
    srv.log_file = "cwd.log";
    t = email_transporter_new(&srv);
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(t);
    assert_int_equal(email_transporter_check_connection(t, NULL), 0); /* after chdir back */
    email_transporter_free(t);
    assert_int_equal(email_set_log(NULL), 0);
    char *rel = path_in(logs, "rel.log"), *in_dir = path_in(dir, "cwd.log");
    assert_logged_to(rel);
    assert_logged_to(in_dir);
    free(rel);
    free(in_dir);

    test_server_stop(&s);
    test_rmtree(dir);
    free(dir);
    free(logs);
}

/* ------------------------------------------------------------------------------------------- */

static int setup_all(void **state)
{
    if (regcomp(&line_re, line_re_text, REG_EXTENDED) ||
        regcomp(&open_re, open_re_text, REG_EXTENDED) ||
        regcomp(&close_re, close_re_text, REG_EXTENDED))
        return -1;
    email__buf_init(&cb_text);
    return 0;
}

static int teardown_all(void **state)
{
    email_shutdown();
    regfree(&line_re);
    regfree(&open_re);
    regfree(&close_re);
    email__buf_free(&cb_text);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_auth_plain),
        LOOP_IDLE_TEST(test_auth_login),
        LOOP_IDLE_TEST(test_rotation),
        LOOP_IDLE_TEST(test_extended_named_session),
        LOOP_IDLE_TEST(test_two_sessions_at_once),
        LOOP_IDLE_TEST(test_errors_and_stop),
        LOOP_IDLE_TEST(test_blocks_interleaved),
        LOOP_IDLE_TEST(test_flushed_within_a_second),
        LOOP_IDLE_TEST(test_server_text_escaped),
        LOOP_IDLE_TEST(test_quit_after_failed_auth),
        LOOP_IDLE_TEST(test_quit_unanswered_after_failed_auth),
        LOOP_IDLE_TEST(test_log_directory),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
