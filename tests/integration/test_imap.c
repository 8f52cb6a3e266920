/*
 * The IMAP transporter against a private dovecot (tests/servers/dovecot_mail.py) seeded with
 * fixture messages: SELECT / EXAMINE and the box's numbers, the box list, messages parsed as
 * they arrive with their UID and size, many at once in a few round trips, \Seen set by reading
 * and left by PEEK, flags added and removed, searches (ASCII and UTF-8), delete and expunge, a
 * UIDVALIDITY changed between sessions, TLS from the first byte and STARTTLS, a wrong password,
 * and the conversation log with its secrets masked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

static char *dir;
static int timeout_s = 5;

static const char *const fixtures[] = {
    "From: a@example.org\r\nSubject: one\r\n\r\nbody one\r\n",
    "From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n",
    ("From: c@example.org\r\nSubject: =?UTF-8?Q?caf=C3=A9_cr=C3=A8me?=\r\nContent-Type: "
     "text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     "un caf\xc3\xa9 cr\xc3\xa8me\r\n"),
};
#define NFIX 3
#define NBULK 250

static const char *dpath(const char *name)
{
    static char bufs[16][600];
    static unsigned next;
    char *b = bufs[next++ % 16];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        fail_msg("\"%s\" not found in \"%s\"", needle, haystack ? haystack : "(null)");
}

static size_t count_of(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* dovecot with alice's INBOX holding the fixtures (then bulk messages when asked), and an
 * empty "Archive"; its folder in *folder (under dir). */
static void start_dovecot(test_server_t *dv, bool bulk, char *folder, size_t size)
{
    char specs[NFIX][700], gen[40];
    /* outside dir (0700): dovecot's unprivileged processes must reach it; the server removes it */
    snprintf(folder, size, "/tmp/emailsession-imap-XXXXXX");
    assert_non_null(mkdtemp(folder));
    const char *args[16 + 2 * NFIX] = {"--certs", dir, "--folder", folder,
                                       "--mailbox", "alice:Archive"};
    int n = 6;
    for (int i = 0; i < NFIX; i++) {
        snprintf(specs[i], sizeof specs[i], "alice:%s/fixture%d.eml", dir, i + 1);
        args[n++] = "--message";
        args[n++] = specs[i];
    }
    if (bulk) {
        snprintf(gen, sizeof gen, "alice:%d", NBULK);
        args[n++] = "--generate";
        args[n++] = gen;
    }
    assert_int_equal(test_server_start(dv, "dovecot_mail.py", args), 0);
}

static email_server_t server_on(int port, int security, const char *password, const char *log)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = port;
    srv.security = security;
    srv.user = "alice";
    srv.password = password;
    srv.ca_file = dpath("ca.pem");
    srv.connection_timeout = timeout_s;
    srv.send_timeout = timeout_s;
    srv.log_file = log ? dpath(log) : NULL;
    return srv;
}

static email_imap_transporter_t *open_box(const email_server_t *srv)
{
    email_imap_transporter_t *t = email_imap_transporter_new(srv);
    if (!t)
        fail_msg("email_imap_transporter_new: %s", email_error_info());
    return t;
}

static email_imap_box_info_t select_box(email_imap_transporter_t *t, const char *name, int mode)
{
    email_imap_box_info_t info;
    email_status_t st;
    if (email_imap_select_box(t, name, mode, &info, &st))
        fail_msg("email_imap_select_box(%s): %s", name, email_error_info());
    assert_true(st.success);
    assert_int_equal(st.status, 1);
    assert_false(email_error_occurred());
    email_status_clear(&st);
    return info;
}

/* The UIDs a search finds (the caller frees them). */
static uint32_t *search(email_imap_transporter_t *t, const char *criteria, const char *text,
                        size_t *n)
{
    uint32_t *uids = NULL;
    email_status_t st;
    if (email_imap_search(t, criteria, text, &uids, n, &st))
        fail_msg("email_imap_search(%s): %s", criteria, email_error_info());
    assert_true(st.success);
    email_status_clear(&st);
    return uids;
}

static size_t search_count(email_imap_transporter_t *t, const char *criteria, const char *text)
{
    size_t n;
    free(search(t, criteria, text, &n));
    return n;
}

/* SELECT's numbers, EXAMINE, the box list, a message read whole and its headers only. */
static void test_select_and_read(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_imap_transporter_t *t = open_box(&srv);
    assert_int_equal(email_imap_check_connection(t, NULL), 0);

    email_imap_box_t *boxes;
    size_t nboxes;
    assert_int_equal(email_imap_get_box_list(t, &boxes, &nboxes, NULL), 0);
    bool inbox = false, archive = false;
    for (size_t i = 0; i < nboxes; i++) {
        inbox |= strcmp(boxes[i].name, "INBOX") == 0 && boxes[i].selectable;
        archive |= strcmp(boxes[i].name, "Archive") == 0 && boxes[i].selectable;
    }
    assert_true(inbox && archive);
    email_imap_box_list_free(boxes, nboxes);

    email_imap_box_info_t info = select_box(t, "INBOX", EMAIL_IMAP_READ_ONLY);
    assert_int_equal(info.messages, NFIX);
    assert_int_equal(info.unseen, NFIX);
    assert_true(info.uidvalidity != 0);
    assert_int_equal(info.uidnext, NFIX + 1);
    assert_false(info.uidvalidity_changed);
    info = select_box(t, "Archive", EMAIL_IMAP_READ_WRITE);
    assert_int_equal(info.messages, 0);
    info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    assert_int_equal(info.messages, NFIX);

    size_t n;
    uint32_t *uids = search(t, "ALL", NULL, &n);
    assert_int_equal(n, NFIX);
    static const char *const subjects[] = {"one", "two", "caf\xc3\xa9 cr\xc3\xa8me"};
    for (size_t i = 0; i < n; i++) {
        email_message_t *m = NULL;
        email_status_t st;
        if (email_imap_get_mail(t, uids[i], EMAIL_READ_PEEK, &m, &st))
            fail_msg("email_imap_get_mail(%u): %s", uids[i], email_error_info());
        assert_true(st.success);
        email_status_clear(&st);
        assert_string_equal(email_message_get_subject(m), subjects[i]);
        char uid[16];
        snprintf(uid, sizeof uid, "%u", uids[i]);
        assert_string_equal(email_message_get_uid(m), uid);
        assert_int_equal(email_message_get_size(m), strlen(fixtures[i]));
        email_message_free(m);
    }
    email_message_t *m = NULL;
    assert_int_equal(email_imap_get_mail(t, uids[2], EMAIL_READ_HEADERS, &m, NULL), 0);
    assert_string_equal(email_message_get_subject(m), subjects[2]);
    assert_null(strstr(email_message_get_text_body(m) ? email_message_get_text_body(m) : "",
                       "caf"));
    email_message_free(m);
    m = (email_message_t *)1;
    assert_int_equal(email_imap_get_mail(t, 999, 0, &m, NULL), EMAIL_ENOTFOUND);
    assert_null(m);
    assert_int_equal(email_imap_get_mail(t, 0, 0, &m, NULL), EMAIL_EINVAL);
    assert_int_equal(email_imap_select_box(t, "NoSuchBox", 0, &info, NULL), EMAIL_ESERVER);
    assert_int_equal(info.messages, 0);
    /* the box chosen before the failed SELECT is selected again for the next call */
    assert_int_equal(search_count(t, "ALL", NULL), NFIX);
    /* PEEK and headers only left every message unseen */
    assert_int_equal(search_count(t, "UNSEEN", NULL), NFIX);
    free(uids);
    email_imap_transporter_free(t);
    assert_false(email_error_occurred());
    test_server_stop(&dv);
}

/* Reading marks \Seen; flags added and removed are seen by the server's search. */
static void test_flags(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_imap_transporter_t *t = open_box(&srv);
    size_t n;
    uint32_t *uids = search(t, "ALL", NULL, &n); /* INBOX, read-write, chosen by default */
    assert_int_equal(n, NFIX);
    email_message_t *m = NULL;
    assert_int_equal(email_imap_get_mail(t, uids[0], 0, &m, NULL), 0);
    email_message_free(m);
    assert_int_equal(search_count(t, "SEEN", NULL), 1);

    uint32_t two[] = {uids[1], uids[2]};
    email_status_t st;
    assert_int_equal(email_imap_add_flags(t, two, 2, "\\Flagged $Label1", &st), 0);
    assert_true(st.success);
    assert_int_equal(st.status, 1);
    assert_int_equal(search_count(t, "FLAGGED", NULL), 2);
    assert_int_equal(search_count(t, "KEYWORD $Label1", NULL), 2);
    assert_int_equal(email_imap_remove_flags(t, &uids[1], 1, "\\Flagged", NULL), 0);
    assert_int_equal(search_count(t, "FLAGGED", NULL), 1);
    assert_int_equal(email_imap_remove_flags(t, uids, 1, "\\Seen", NULL), 0);
    assert_int_equal(search_count(t, "SEEN", NULL), 0);

    /* injection refused before anything goes */
    static const char *const bad[] = {"\\Seen)", "(\\Seen", "\\Seen\r\nA1 LOGOUT", "",
                                      "\\Seen  \\Flagged", "a\"b", "\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(email_imap_add_flags(t, uids, 1, bad[i], NULL), EMAIL_EINVAL);
        assert_contains(email_error_info(), "flags");
    }
    assert_int_equal(email_imap_add_flags(t, uids, 0, "\\Seen", NULL), EMAIL_EINVAL);
    assert_int_equal(search_count(t, "SEEN", NULL), 0);
    free(uids);
    email_imap_transporter_free(t);
    test_server_stop(&dv);
}

/* Searches with ASCII and UTF-8 text; criteria with CR/LF refused. */
static void test_search(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil",
                                   "search.log");
    email_imap_transporter_t *t = open_box(&srv);
    size_t n;
    uint32_t *all = search(t, "ALL", NULL, &n);
    uint32_t *uids = search(t, "SUBJECT", "two", &n);
    assert_int_equal(n, 1);
    assert_int_equal(uids[0], all[1]);
    free(uids);
    uids = search(t, "FROM", "c@example.org", &n);
    assert_int_equal(n, 1);
    assert_int_equal(uids[0], all[2]);
    free(uids);
    uids = search(t, "SUBJECT", "caf\xc3\xa9", &n);
    assert_int_equal(n, 1);
    assert_int_equal(uids[0], all[2]);
    free(uids);
    uids = search(t, "BODY", "cr\xc3\xa8me", &n);
    assert_int_equal(n, 1);
    free(uids);
    uids = search(t, "SUBJECT", "nothing like it", &n);
    assert_int_equal(n, 0);
    assert_null(uids);
    assert_int_equal(email_imap_search(t, "ALL\r\nA1 LOGOUT", NULL, &uids, &n, NULL),
                     EMAIL_EINVAL);
    email_status_t st;
    assert_int_equal(email_imap_search(t, "NOSUCHKEY", NULL, &uids, &n, &st), EMAIL_ESERVER);
    assert_int_equal(st.status, -2);
    assert_contains(st.status_text, "BAD");
    email_status_clear(&st);
    free(all);
    email_imap_transporter_free(t);
    char *log = test_read_file(dpath("search.log"), NULL);
    assert_contains(log, "CHARSET UTF-8");
    free(log);
    test_server_stop(&dv);
}

/* Many messages in a few round trips, the UIDs not found as NULL. */
static void test_get_mails(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, true, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil",
                                   "many.log");
    email_imap_transporter_t *t = open_box(&srv);
    email_imap_box_info_t info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    assert_int_equal(info.messages, NFIX + NBULK);
    size_t n;
    uint32_t *all = search(t, "ALL", NULL, &n);
    assert_int_equal(n, NFIX + NBULK);
    /* newest first, with two UIDs that do not exist */
    size_t want = n + 2;
    uint32_t *uids = calloc(want, sizeof *uids);
    email_message_t **out = calloc(want, sizeof *out);
    for (size_t i = 0; i < n; i++)
        uids[i] = all[n - 1 - i];
    uids[n] = 100000;
    uids[n + 1] = 100001;
    email_status_t st;
    if (email_imap_get_mails(t, uids, want, EMAIL_READ_PEEK, out, &st))
        fail_msg("email_imap_get_mails: %s", email_error_info());
    assert_true(st.success);
    email_status_clear(&st);
    for (size_t i = 0; i < NBULK; i++) {
        char subject[40];
        snprintf(subject, sizeof subject, "bulk %zu", NBULK - i);
        assert_non_null(out[i]);
        assert_string_equal(email_message_get_subject(out[i]), subject);
        char uid[16];
        snprintf(uid, sizeof uid, "%u", uids[i]);
        assert_string_equal(email_message_get_uid(out[i]), uid);
    }
    assert_null(out[n]);
    assert_null(out[n + 1]);
    for (size_t i = 0; i < want; i++)
        email_message_free(out[i]);
    assert_int_equal(search_count(t, "SEEN", NULL), 0);
    /* without PEEK: all read and marked */
    assert_int_equal(email_imap_get_mails(t, all, n, 0, out, NULL), 0);
    for (size_t i = 0; i < n; i++)
        email_message_free(out[i]);
    assert_int_equal(search_count(t, "UNSEEN", NULL), 0);
    email_imap_transporter_free(t);
    /* a few commands carry the UIDs, not one per message */
    char *log = test_read_file(dpath("many.log"), NULL);
    size_t fetches = count_of(log, "UID FETCH");
    if (fetches > 4)
        fail_msg("%zu UID FETCH commands for %zu messages", fetches, 2 * n);
    assert_null(strstr(log, "bulk body"));
    free(log);
    free(all);
    free(uids);
    free(out);
    test_server_stop(&dv);
}

/* \Deleted marks, EXPUNGE removes. */
static void test_delete_expunge(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_imap_transporter_t *t = open_box(&srv);
    size_t n;
    uint32_t *uids = search(t, "ALL", NULL, &n);
    assert_int_equal(email_imap_delete(t, &uids[1], 1, NULL), 0);
    assert_int_equal(search_count(t, "DELETED", NULL), 1);
    assert_int_equal(search_count(t, "ALL", NULL), NFIX);
    email_status_t st;
    assert_int_equal(email_imap_expunge(t, &st), 0);
    assert_true(st.success);
    assert_int_equal(search_count(t, "ALL", NULL), NFIX - 1);
    email_message_t *m;
    assert_int_equal(email_imap_get_mail(t, uids[1], 0, &m, NULL), EMAIL_ENOTFOUND);
    email_imap_transporter_free(t);
    t = open_box(&srv);
    email_imap_box_info_t info = select_box(t, "INBOX", EMAIL_IMAP_READ_ONLY);
    assert_int_equal(info.messages, NFIX - 1);
    email_imap_transporter_free(t);
    free(uids);
    test_server_stop(&dv);
}

/* The maildir's UID list and indexes replaced by a list of another UIDVALIDITY. */
static void renumber(const char *folder, const char *list)
{
    char path[900];
    snprintf(path, sizeof path, "%s/home/alice/Maildir", folder);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (strncmp(de->d_name, "dovecot", 7) == 0) {
            char file[1200];
            snprintf(file, sizeof file, "%s/%s", path, de->d_name);
            unlink(file);
        }
    }
    closedir(d);
    char file[1000];
    snprintf(file, sizeof file, "%s/dovecot-uidlist", path);
    assert_int_equal(test_write_file(file, list, strlen(list)), 0);
    struct stat st; /* the mail user's, as the rest of the maildir */
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(chown(file, st.st_uid, st.st_gid), 0);
}

/* A session lost and opened again: the box is selected again; a new UIDVALIDITY stops the call
 * that names UIDs (EMAIL_ESTALE), and SELECT says so. */
static void test_uidvalidity(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil", NULL);
    email_imap_transporter_t *t = open_box(&srv);
    email_imap_box_info_t info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    assert_true(info.uidvalidity != 4242);
    size_t n;
    uint32_t *uids = search(t, "ALL", NULL, &n);
    email_shutdown(); /* LOGOUT: the next call opens another session */
    assert_int_equal(search_count(t, "ALL", NULL), NFIX); /* same box, same UIDVALIDITY */
    email_shutdown();
    renumber(folder, "3 V4242 N100\n");
    email_status_t st;
    assert_int_equal(email_imap_add_flags(t, uids, 1, "\\Flagged", &st), EMAIL_ESTALE);
    assert_contains(st.status_text, "UIDVALIDITY");
    assert_contains(email_error_info(), "4242");
    email_status_clear(&st);
    assert_int_equal(search_count(t, "FLAGGED", NULL), 0); /* nothing was done */
    info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    assert_int_equal(info.uidvalidity, 4242);
    assert_false(info.uidvalidity_changed); /* known since the EMAIL_ESTALE */
    email_imap_transporter_free(t);

    /* SELECT itself reports the change when the box is chosen again */
    t = open_box(&srv);
    info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    email_shutdown();
    renumber(folder, "3 V5353 N200\n");
    info = select_box(t, "INBOX", EMAIL_IMAP_READ_WRITE);
    assert_int_equal(info.uidvalidity, 5353);
    assert_true(info.uidvalidity_changed);
    email_imap_transporter_free(t);
    free(uids);
    test_server_stop(&dv);
}

/* TLS from the first byte (993-like), STARTTLS, in the log in 4D's words, secrets masked. */
static void test_tls_and_log(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[2], EMAIL_SECURITY_TLS, "pencil", "tls.log");
    email_imap_transporter_t *t = open_box(&srv);
    assert_int_equal(email_imap_check_connection(t, NULL), 0);
    email_imap_transporter_free(t);
    char *log = test_read_file(dpath("tls.log"), NULL);
    char want[200];
    snprintf(want, sizeof want, "IMAP Connected to '127.0.0.1' on port %d. (secure)",
             dv.more_ports[2]);
    assert_contains(log, want);
    assert_contains(log, "IMAP TLS established");
    free(log);

    srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "pencil", "starttls.log");
    t = open_box(&srv);
    assert_int_equal(email_imap_check_connection(t, NULL), 0);
    email_imap_transporter_free(t);
    log = test_read_file(dpath("starttls.log"), NULL);
    assert_contains(log, "STARTTLS");
    assert_contains(log, "IMAP TLS established");
    free(log);

    static const char *const modes[] = {"PLAIN", "LOGIN", "SCRAM-SHA-256", NULL};
    for (int i = 0; i < 4; i++) {
        char name[40];
        snprintf(name, sizeof name, "masked%d.log", i);
        srv = server_on(dv.more_ports[1], EMAIL_SECURITY_NONE, "pencil", name);
        srv.authentication_mode = modes[i];
        t = open_box(&srv);
        email_message_t *m = NULL;
        assert_int_equal(email_imap_get_mail(t, 1, 0, &m, NULL), 0);
        email_message_free(m);
        email_imap_transporter_free(t);
        log = test_read_file(dpath(name), NULL);
        assert_contains(log, "IMAP Connected to '127.0.0.1'");
        assert_contains(log, "****");
        assert_null(strstr(log, "pencil"));
        assert_null(strstr(log, "AGFsaWNlAHBlbmNpbA==")); /* PLAIN's payload */
        assert_null(strstr(log, "cGVuY2ls"));             /* LOGIN's password */
        assert_null(strstr(log, "body one"));
        free(log);
    }
    test_server_stop(&dv);
}

/* A wrong password: EMAIL_EAUTH with the server's line. */
static void test_wrong_password(void **state)
{
    (void)state;
    test_server_t dv;
    char folder[700];
    start_dovecot(&dv, false, folder, sizeof folder);
    email_server_t srv = server_on(dv.more_ports[1], EMAIL_SECURITY_STARTTLS, "wrong", NULL);
    email_imap_transporter_t *t = open_box(&srv);
    email_status_t st;
    assert_int_equal(email_imap_check_connection(t, &st), EMAIL_EAUTH);
    assert_false(st.success);
    assert_true(email_error_occurred());
    email_status_clear(&st);
    email_imap_transporter_free(t);
    test_server_stop(&dv);
}

static int group_setup(void **state)
{
    (void)state;
    if (test_under_valgrind())
        timeout_s = 30;
    dir = test_tmpdir();
    if (!dir || test_make_certs(dir, "test_imap") != 0)
        return -1;
    for (int i = 0; i < NFIX; i++) {
        char name[40];
        snprintf(name, sizeof name, "fixture%d.eml", i + 1);
        if (test_write_file(dpath(name), fixtures[i], strlen(fixtures[i])) != 0)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email_shutdown();
    if (dir) {
        if (getenv("EMAIL_TEST_KEEP"))
            fprintf(stderr, "test_imap: files kept in %s\n", dir);
        else
            test_rmtree(dir);
        free(dir);
        dir = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_select_and_read),
        LOOP_IDLE_TEST(test_flags),
        LOOP_IDLE_TEST(test_search),
        LOOP_IDLE_TEST(test_get_mails),
        LOOP_IDLE_TEST(test_delete_expunge),
        LOOP_IDLE_TEST(test_uidvalidity),
        LOOP_IDLE_TEST(test_tls_and_log),
        LOOP_IDLE_TEST(test_wrong_password),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
