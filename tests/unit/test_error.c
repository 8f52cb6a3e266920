/*
 * ErrorInfo (lib/error.c and the rule written above email_error_occurred): every public call
 * that fails sets the calling thread's code and a text naming the argument at fault, every one
 * that succeeds clears it, the readers and the calls that cannot fail leave it alone, and each
 * thread has its own. One table over the calls that need no server (the message builder and
 * composer, the settings, the log, the facade's checks, the transporter's and the runtime's
 * calls); a sentinel error is put in place before each call, so a call that forgets ErrorInfo
 * shows. The transporter's failures that need a server are in tests/integration.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession-uv.h"
#include "emailsession.h"
#include "error.h"
#include "registry.h"

#define MISSING "/nonexistent-emailsession-test/dir"
#define KNOWN_ID ((uint64_t)7 << 44) /* far from email_message_new's ids */
#define UNKNOWN_ID ((uint64_t)9 << 44)

static email_message_t *good;  /* From, To, Subject, text: composes */
static email_message_t *blank; /* nothing set */
static char dir[64];           /* a directory of this test's own */
static char log_path[128];     /* a log file in it */
static const char *const rcpts[] = {"bob@example.org", NULL};
static const char *const no_rcpts[] = {NULL};
static email_transporter_t *tp; /* to 127.0.0.1:1, never connected by the table */
static uv_loop_t caller_loop;   /* for email_use_loop */

/* A failure of a public call, which the next call must replace or clear. */
static void put_sentinel(void)
{
    assert_false(email_send_message("sentinel-session", good));
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
}

/* ---- The calls, each as an int: the call's own return, or for a bool call 0 (true) or
 * FALSE_RET, for a void call 0 ---- */

#define FALSE_RET 1
#define INT_CALL(fn, expr)                                                                         \
    static int fn(void)                                                                            \
    {                                                                                              \
        return (expr);                                                                             \
    }
#define BOOL_CALL(fn, expr)                                                                        \
    static int fn(void)                                                                            \
    {                                                                                              \
        return (expr) ? 0 : FALSE_RET;                                                             \
    }
#define VOID_CALL(fn, expr)                                                                        \
    static int fn(void)                                                                            \
    {                                                                                              \
        expr;                                                                                      \
        return 0;                                                                                  \
    }

static int message_new(void)
{
    email_message_t *m = email_message_new();
    email_message_free(m); /* leaves ErrorInfo as the new left it */
    return m ? 0 : EMAIL_ENOMEM;
}

static int to_mime_good(void)
{
    char *mime = NULL;
    size_t n = 0;
    int rc = email_message_to_mime(good, &mime, &n);
    if (!rc && (!mime || n != strlen(mime) || !strstr(mime, "Subject: Hello")))
        rc = -1000; /* not what the table expects: the row fails */
    free(mime);
    return rc;
}

static int to_mime_blank(void)
{
    char *mime = NULL;
    int rc = email_message_to_mime(blank, &mime, NULL);
    free(mime);
    return rc;
}

/* email_message_status's states are not failures: 0 for any of them. */
static int status_known(void)
{
    int s = email_message_status(KNOWN_ID);
    return s == EMAIL_PENDING ? 0 : s;
}

static int send_mime_id_refused(void)
{
    uint64_t id = 1;
    bool ok = email_send_mime_id("u", "a@example.org", no_rcpts, "x", 1, &id);
    return ok ? 0 : id == 0 ? FALSE_RET : -1000;
}

/* A transporter with host; freed at once (email_transporter_free leaves ErrorInfo alone). */
static int transporter_new_with(const char *host)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = host;
    email_transporter_t *t = email_transporter_new(&srv);
    email_transporter_free(t);
    return t ? 0 : EMAIL_EINVAL;
}

static int get_server_good(void)
{
    email_server_t out;
    int rc = email_transporter_get_server(tp, &out);
    return rc || !strcmp(out.host, "127.0.0.1") ? rc : -1000;
}

static int dispatch_fd_good(void)
{
    int fd = email_dispatch_fd();
    return fd >= 0 ? 0 : fd;
}

/* The builder */
INT_CALL(from_null_message, email_message_set_from(NULL, "a@example.org"))
INT_CALL(from_bad, email_message_set_from(good, "foo"))
INT_CALL(from_good, email_message_set_from(good, "Alice <alice@example.org>"))
INT_CALL(sender_bad, email_message_set_sender(good, "a@example.org, b@example.org"))
INT_CALL(sender_good, email_message_set_sender(good, NULL))
INT_CALL(reply_to_bad, email_message_set_reply_to(good, "bad"))
INT_CALL(to_empty, email_message_add_to(good, ""))
INT_CALL(to_good, email_message_add_to(good, "bob@example.org"))
INT_CALL(cc_bad, email_message_add_cc(good, "Doe"))
INT_CALL(bcc_crlf, email_message_add_bcc(good, "eve@example.org\r\nX: y"))
INT_CALL(bcc_null_message, email_message_add_bcc(NULL, "eve@example.org"))
INT_CALL(subject_crlf, email_message_set_subject(good, "a\r\nb"))
INT_CALL(subject_good, email_message_set_subject(good, "Hello"))
INT_CALL(text_bad_utf8, email_message_set_text_body(good, "caf\xe9"))
INT_CALL(text_good, email_message_set_text_body(good, "Hi Bob\n"))
INT_CALL(html_bad_utf8, email_message_set_html_body(good, "\xff"))
INT_CALL(attach_no_file, email_message_add_attachment_file(good, NULL, NULL, NULL))
INT_CALL(attach_missing, email_message_add_attachment_file(good, MISSING "/a.pdf", NULL, NULL))
INT_CALL(attach_no_data, email_message_add_attachment_data(good, NULL, 5, "a.bin", NULL))
INT_CALL(attach_bad_type, email_message_add_attachment_data(good, "x", 1, "a.txt", "text"))
INT_CALL(inline_bad_cid, email_message_add_inline(good, NULL, "x", 1, "a b", "image/png"))
INT_CALL(header_bad_name, email_message_add_header(good, "X:Bad", "v"))
INT_CALL(header_reserved, email_message_add_header(good, "Subject", "v"))
INT_CALL(header_good, email_message_add_header(good, "X-Note", "v"))
INT_CALL(in_reply_to_bad, email_message_set_in_reply_to(good, "no-brackets@example.org"))
INT_CALL(reference_bad, email_message_add_reference(good, "<nohost>"))
INT_CALL(priority_bad, email_message_set_priority(good, 9))
INT_CALL(priority_good, email_message_set_priority(good, EMAIL_PRIORITY_HIGH))
INT_CALL(notification_null_message, email_message_set_disposition_notification(NULL, true))
INT_CALL(notification_good, email_message_set_disposition_notification(good, false))
INT_CALL(charsets_bad, email_message_set_charsets(good, "bogus-mode", NULL))
INT_CALL(charsets_good, email_message_set_charsets(good, EMAIL_MAIL_MODE_UTF8, NULL))
INT_CALL(to_mime_no_place, email_message_to_mime(good, NULL, NULL))

/* Settings and the log */
VOID_CALL(timeout_zero, email_set_timeout(0))
VOID_CALL(timeout_good, email_set_timeout(60))
INT_CALL(ca_file_missing, email_set_ca_file(MISSING "/ca.pem"))
INT_CALL(ca_file_none, email_set_ca_file(NULL))
INT_CALL(log_empty, email_set_log(""))
INT_CALL(log_missing, email_set_log(MISSING "/all.log"))
INT_CALL(log_good, email_set_log(log_path))
INT_CALL(log_off, email_set_log(NULL))
INT_CALL(log_dir_empty, email_set_log_directory(""))
INT_CALL(log_dir_missing, email_set_log_directory(MISSING))
INT_CALL(log_dir_file, email_set_log_directory(log_path))
INT_CALL(log_dir_good, email_set_log_directory(dir))
INT_CALL(log_dir_reset, email_set_log_directory(NULL))
INT_CALL(log_callback_off, email_set_log_callback(NULL, NULL))
INT_CALL(session_log_no_user, email_session_set_log_file(NULL, log_path))
INT_CALL(session_log_missing, email_session_set_log_file("u", MISSING "/u.log"))
INT_CALL(session_log_good, email_session_set_log_file("u", log_path))
INT_CALL(session_log_forget, email_session_set_log_file("u", NULL))

/* The facade's checks, before any network */
BOOL_CALL(start_no_user, email_start_smtp_session("", "pw", "localhost", 0, 0, 0))
BOOL_CALL(start_no_server, email_start_smtp_session("u", "pw", NULL, 0, 0, 0))
BOOL_CALL(start_bad_port, email_start_smtp_session("u", "pw", "localhost", 70000, 0, 0))
BOOL_CALL(start_bad_mode, email_start_smtp_session("u", "pw", "localhost", 0, 7, 0))
BOOL_CALL(start_bad_option, email_start_smtp_session("u", "pw", "localhost", 0, 0, 0x4000))
BOOL_CALL(start_async_bad_port,
          email_start_smtp_session_async("u", NULL, "localhost", -1, 0, 0, NULL, NULL))
BOOL_CALL(send_no_session, email_send_message("nosuch-session", good))
BOOL_CALL(send_null_message, email_send_message("u", NULL))
BOOL_CALL(send_mime_bad_from, email_send_mime("u", "a<b>@x", rcpts, "x", 1))
BOOL_CALL(send_mime_bad_rcpt, email_send_mime("u", "a@example.org",
                                              (const char *const[]){"bob", NULL}, "x", 1))
BOOL_CALL(send_mime_empty, email_send_mime("u", "a@example.org", rcpts, NULL, 0))
BOOL_CALL(send_mime_no_session, email_send_mime("nosuch-session", "", rcpts, "x", 1))
BOOL_CALL(close_no_user, email_close_session(NULL))
BOOL_CALL(close_no_session, email_close_session("nosuch-session"))
INT_CALL(callback_no_session, email_session_set_callback("nosuch-session", NULL, NULL))
INT_CALL(progress_no_user, email_session_set_progress("", NULL, NULL))
INT_CALL(status_unknown, email_message_status(UNKNOWN_ID))

/* The transporter (no server: the table never lets one connect) */
INT_CALL(transporter_new_no_host, transporter_new_with(NULL))
INT_CALL(transporter_new_good, transporter_new_with("127.0.0.1"))
INT_CALL(get_server_no_transporter, email_transporter_get_server(NULL, NULL))
INT_CALL(get_server_no_out, email_transporter_get_server(tp, NULL))
INT_CALL(check_no_transporter, email_transporter_check_connection(NULL, NULL))
INT_CALL(tsend_no_transporter, email_transporter_send(NULL, good, NULL))
INT_CALL(tsend_no_message, email_transporter_send(tp, NULL, NULL))
INT_CALL(tsend_blank, email_transporter_send(tp, blank, NULL))
INT_CALL(tsend_async_no_message, email_transporter_send_async(tp, NULL, NULL, NULL, NULL))
INT_CALL(tsend_async_blank, email_transporter_send_async(tp, blank, NULL, NULL, NULL))
INT_CALL(cancel_no_transporter, email_transporter_cancel(NULL, KNOWN_ID))
INT_CALL(cancel_no_id, email_transporter_cancel(tp, 0))
INT_CALL(cancel_unknown, email_transporter_cancel(tp, UNKNOWN_ID))
INT_CALL(progress_no_transporter, email_transporter_set_progress(NULL, NULL, NULL))
INT_CALL(progress_good, email_transporter_set_progress(tp, NULL, NULL))

/* The runtime */
INT_CALL(callback_thread_bad, email_set_callback_thread(7))
INT_CALL(callback_thread_good, email_set_callback_thread(EMAIL_CALLBACK_DISPATCH))
INT_CALL(use_loop_null, email_use_loop(NULL))
INT_CALL(use_loop_busy, email_use_loop(&caller_loop)) /* after progress_good started ours */

typedef enum { RET_INT, RET_BOOL, RET_VOID } ret_t;

typedef struct row {
    const char *what;
    int (*call)(void);
    ret_t ret;
    int code;          /* ErrorInfo's code afterwards: 0 for a success */
    const char *names; /* what its text must contain: the argument or field at fault */
} row_t;

#define INT(fn, code, names) {#fn, fn, RET_INT, code, names}
#define BOOL(fn, code, names) {#fn, fn, RET_BOOL, code, names}
#define VOID(fn, code, names) {#fn, fn, RET_VOID, code, names}

static const row_t rows[] = {
    INT(message_new, 0, NULL),
    INT(from_null_message, EMAIL_EINVAL, "no message"),
    INT(from_bad, EMAIL_EINVAL, "From: \"foo\""),
    INT(from_good, 0, NULL),
    INT(sender_bad, EMAIL_EINVAL, "Sender"),
    INT(sender_good, 0, NULL),
    INT(reply_to_bad, EMAIL_EINVAL, "Reply-To: \"bad\""),
    INT(to_empty, EMAIL_EINVAL, "To: no address"),
    INT(to_good, 0, NULL),
    INT(cc_bad, EMAIL_EINVAL, "Cc: \"Doe\""),
    INT(bcc_crlf, EMAIL_EINVAL, "Bcc: line breaks"),
    INT(bcc_null_message, EMAIL_EINVAL, "no message"),
    INT(subject_crlf, EMAIL_EINVAL, "Subject: line breaks"),
    INT(subject_good, 0, NULL),
    INT(text_bad_utf8, EMAIL_EINVAL, "Text body"),
    INT(text_good, 0, NULL),
    INT(html_bad_utf8, EMAIL_EINVAL, "HTML body"),
    INT(attach_no_file, EMAIL_EINVAL, "no file given"),
    INT(attach_missing, EMAIL_EIO, MISSING "/a.pdf"),
    INT(attach_no_data, EMAIL_EINVAL, "Attachment: no data"),
    INT(attach_bad_type, EMAIL_EINVAL, "\"text\" is not a content type"),
    INT(inline_bad_cid, EMAIL_EINVAL, "\"a b\" is not a content id"),
    INT(header_bad_name, EMAIL_EINVAL, "Header: the name"),
    INT(header_reserved, EMAIL_EINVAL, "Header \"Subject\""),
    INT(header_good, 0, NULL),
    INT(in_reply_to_bad, EMAIL_EINVAL, "In-Reply-To: \"no-brackets@example.org\""),
    INT(reference_bad, EMAIL_EINVAL, "References: \"<nohost>\""),
    INT(priority_bad, EMAIL_EINVAL, "Priority: 9"),
    INT(priority_good, 0, NULL),
    INT(notification_null_message, EMAIL_EINVAL, "no message"),
    INT(notification_good, 0, NULL),
    INT(charsets_bad, EMAIL_EINVAL, "\"bogus-mode\""),
    INT(charsets_good, 0, NULL),
    INT(to_mime_no_place, EMAIL_EINVAL, "no place for the result"),
    INT(to_mime_blank, EMAIL_EINVAL, "From: the message has no sender"),
    INT(to_mime_good, 0, NULL),
    VOID(timeout_zero, EMAIL_EINVAL, "0 is not a number of seconds"),
    VOID(timeout_good, 0, NULL),
    INT(ca_file_missing, EMAIL_EIO, MISSING "/ca.pem"),
    INT(ca_file_none, 0, NULL),
    INT(log_empty, EMAIL_EINVAL, "email_set_log: the path is empty"),
    INT(log_missing, EMAIL_EIO, MISSING "/all.log"),
    INT(log_good, 0, NULL),
    INT(log_off, 0, NULL),
    INT(log_dir_empty, EMAIL_EINVAL, "email_set_log_directory: the path is empty"),
    INT(log_dir_missing, EMAIL_EIO, MISSING),
    INT(log_dir_file, EMAIL_EINVAL, "is not a directory"),
    INT(log_dir_good, 0, NULL),
    INT(log_dir_reset, 0, NULL),
    INT(log_callback_off, 0, NULL),
    INT(session_log_no_user, EMAIL_EINVAL, "session name (user)"),
    INT(session_log_missing, EMAIL_EIO, MISSING "/u.log"),
    INT(session_log_good, 0, NULL),
    INT(session_log_forget, 0, NULL),
    BOOL(start_no_user, EMAIL_EINVAL, "session name (user)"),
    BOOL(start_no_server, EMAIL_EINVAL, "no server"),
    BOOL(start_bad_port, EMAIL_EINVAL, "port 70000"),
    BOOL(start_bad_mode, EMAIL_EINVAL, "mode 7"),
    BOOL(start_bad_option, EMAIL_EINVAL, "option 0x4000"),
    BOOL(start_async_bad_port, EMAIL_EINVAL, "port -1"),
    BOOL(send_no_session, EMAIL_ENOSESSION, "\"nosuch-session\""),
    BOOL(send_null_message, EMAIL_EINVAL, "the message is NULL"),
    BOOL(send_mime_bad_from, EMAIL_EINVAL, "from \"a<b>@x\""),
    BOOL(send_mime_bad_rcpt, EMAIL_EINVAL, "recipient \"bob\""),
    BOOL(send_mime_empty, EMAIL_EINVAL, "the message is empty"),
    BOOL(send_mime_id_refused, EMAIL_EINVAL, "no recipient"),
    BOOL(send_mime_no_session, EMAIL_ENOSESSION, "\"nosuch-session\""),
    BOOL(close_no_user, EMAIL_EINVAL, "session name (user)"),
    BOOL(close_no_session, EMAIL_ENOSESSION, "\"nosuch-session\""),
    INT(callback_no_session, EMAIL_ENOSESSION, "\"nosuch-session\""),
    INT(progress_no_user, EMAIL_EINVAL, "session name (user)"),
    INT(status_unknown, EMAIL_ENOTFOUND, "no message has the id 158329674399744"),
    INT(status_known, 0, NULL),
    INT(transporter_new_no_host, EMAIL_EINVAL, "server: host is missing"),
    INT(transporter_new_good, 0, NULL),
    INT(get_server_no_transporter, EMAIL_EINVAL,
        "email_transporter_get_server: the transporter is NULL"),
    INT(get_server_no_out, EMAIL_EINVAL, "email_transporter_get_server: out is NULL"),
    INT(get_server_good, 0, NULL),
    INT(check_no_transporter, EMAIL_EINVAL,
        "email_transporter_check_connection: the transporter is NULL"),
    INT(tsend_no_transporter, EMAIL_EINVAL, "email_transporter_send: transporter is NULL"),
    INT(tsend_no_message, EMAIL_EINVAL, "email_transporter_send: message is NULL"),
    INT(tsend_blank, EMAIL_EINVAL, "email_transporter_send: From: the message has no sender"),
    INT(tsend_async_no_message, EMAIL_EINVAL, "message is NULL"),
    INT(tsend_async_blank, EMAIL_EINVAL, "From: the message has no sender"),
    INT(cancel_no_transporter, EMAIL_EINVAL, "email_transporter_cancel: the transporter is NULL"),
    INT(cancel_no_id, EMAIL_EINVAL, "email_transporter_cancel: the message id is 0"),
    INT(cancel_unknown, EMAIL_ENOTFOUND, "holds no message 158329674399744 waiting"),
    INT(progress_no_transporter, EMAIL_EINVAL,
        "email_transporter_set_progress: the transporter is NULL"),
    INT(progress_good, 0, NULL),
    INT(dispatch_fd_good, 0, NULL),
    INT(callback_thread_bad, EMAIL_EINVAL, "email_set_callback_thread: 7 is not"),
    INT(callback_thread_good, 0, NULL),
    INT(use_loop_null, EMAIL_EINVAL, "email_use_loop: the loop is NULL"),
    INT(use_loop_busy, EMAIL_EBUSY, "email_use_loop: the library already runs a loop"),
};

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_error.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(log_path, sizeof log_path, "%s/session.log", dir);
    good = email_message_new();
    blank = email_message_new();
    email__registry_pending(KNOWN_ID);
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.port = 1;
    tp = email_transporter_new(&srv);
    return good && blank && tp && uv_loop_init(&caller_loop) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    email_message_free(good);
    email_message_free(blank);
    email__registry_done(KNOWN_ID, EMAIL_SENT);
    unlink(log_path);
    rmdir(dir);
    email_transporter_free(tp);
    email_shutdown();
    uv_run(&caller_loop, UV_RUN_DEFAULT); /* the library's handles on it finish closing */
    return uv_loop_close(&caller_loop) == 0 ? 0 : -1;
}

/* One row: the return value agrees with the code, and ErrorInfo is the row's. */
static void check_row(const row_t *r)
{
    put_sentinel();
    int ret = r->call();
    int want = r->ret == RET_VOID ? 0 : r->ret == RET_BOOL ? (r->code ? FALSE_RET : 0) : r->code;
    if (ret != want)
        fail_msg("%s returned %d, not %d", r->what, ret, want);
    if (email_last_error() != r->code)
        fail_msg("%s: ErrorInfo's code is %s, not %s (text \"%s\")", r->what,
                 email_error_name(email_last_error()), email_error_name(r->code),
                 email_error_info());
    if (email_error_occurred() != (r->code != 0))
        fail_msg("%s: email_error_occurred() disagrees with the code", r->what);
    if (!r->code && strcmp(email_error_info(), ""))
        fail_msg("%s succeeded but ErrorInfo says \"%s\"", r->what, email_error_info());
    if (r->code && !strstr(email_error_info(), r->names))
        fail_msg("%s: \"%s\" does not name \"%s\"", r->what, email_error_info(), r->names);
}

static void test_every_call_sets_or_clears(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        check_row(&rows[i]);
}

/* The readers and the calls that cannot fail leave a failure where it is, to be read after. */
static void test_readers_leave_it_alone(void **state)
{
    (void)state;
    email_message_t *spare = email_message_new();
    assert_non_null(spare);
    email_set_timeout(0);
    char text[1024];
    snprintf(text, sizeof text, "%s", email_error_info());
    assert_int_equal(email_last_error(), EMAIL_EINVAL);

    email_status_t st;
    memset(&st, 0, sizeof st);
    email_server_t srv;
    assert_string_equal(email_strerror(email_last_error()), "invalid argument");
    assert_string_equal(email_error_name(email_last_error()), "EMAIL_EINVAL");
    assert_non_null(email_version());
    assert_true(email_get_timeout() > 0);
    assert_true(email_message_id(good) > 0);
    assert_int_equal(email_message_id(NULL), 0);
    assert_null(email_status_recipient(&st, 0, NULL));
    assert_null(email_status_recipient_text(&st, 0));
    assert_int_equal(email_status_error_count(&st), 0);
    assert_null(email_status_error(&st, 0, NULL, NULL));
    email_status_clear(&st);
    email_server_init(&srv);
    email_message_free(spare);
    email_message_free(NULL);
    email_transporter_free(NULL);
    assert_int_equal(email_dispatch(), 0);
    email_shutdown();

    assert_true(email_error_occurred());
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), text);
}

/* Without a descriptor to spare, email_dispatch_fd says why; once it can make one, it clears.
 * Runs first: the descriptor, once made, is kept. */
static void test_dispatch_fd_failure(void **state)
{
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest_free = open("/dev/null", O_RDONLY);
    assert_true(lowest_free >= 0);
    close(lowest_free);
    struct rlimit low = {.rlim_cur = (rlim_t)lowest_free, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    put_sentinel();
    int fd = email_dispatch_fd();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(fd, EMAIL_EIO);
    assert_int_equal(email_last_error(), EMAIL_EIO);
    if (!strstr(email_error_info(), "email_dispatch_fd: the eventfd could not be made"))
        fail_msg("ErrorInfo: \"%s\"", email_error_info());

    put_sentinel();
    assert_true(email_dispatch_fd() >= 0);
    assert_false(email_error_occurred());
}

/* email_use_loop succeeding clears: once the library's own loop has stopped. Runs last. */
static void test_use_loop_clears(void **state)
{
    (void)state;
    email_transporter_free(tp);
    tp = NULL;
    email_shutdown();
    put_sentinel();
    assert_int_equal(email_use_loop(&caller_loop), 0);
    assert_false(email_error_occurred());
    assert_string_equal(email_error_info(), "");
}

/* ---- Per thread ---- */

typedef struct seen {
    int code_before, code_after, code_cleared;
    char text_before[64], text_after[128];
} seen_t;

static void *other_thread(void *arg)
{
    seen_t *s = arg;
    s->code_before = email_last_error();
    snprintf(s->text_before, sizeof s->text_before, "%s", email_error_info());
    email_message_set_priority(good, 42);
    s->code_after = email_last_error();
    snprintf(s->text_after, sizeof s->text_after, "%s", email_error_info());
    email_message_set_priority(good, EMAIL_PRIORITY_NORMAL);
    s->code_cleared = email_last_error();
    return NULL;
}

/* One thread's failure is not another's, and one thread's success clears its own only. */
static void test_per_thread(void **state)
{
    (void)state;
    assert_int_equal(email_close_session("nosuch-session"), false);
    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);

    seen_t s;
    memset(&s, 0xff, sizeof s);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);

    assert_int_equal(s.code_before, 0);
    assert_string_equal(s.text_before, "");
    assert_int_equal(s.code_after, EMAIL_EINVAL);
    assert_string_equal(s.text_after, "Priority: 42 is not an EMAIL_PRIORITY_... value");
    assert_int_equal(s.code_cleared, 0);

    assert_int_equal(email_last_error(), EMAIL_ENOSESSION);
    assert_string_equal(email_error_info(), "no session named \"nosuch-session\" is open");
}

/* The text is made before the old one is replaced: it may quote it. */
static void test_text_quotes_itself(void **state)
{
    (void)state;
    email__error_set(EMAIL_EIO, "inner %d", 1);
    email__error_set(EMAIL_ECONNECT, "outer: %s", email__error_text());
    assert_int_equal(email_last_error(), EMAIL_ECONNECT);
    assert_string_equal(email_error_info(), "outer: inner 1");
    email__error_set(EMAIL_ETIMEDOUT, "%s", "");
    assert_string_equal(email_error_info(), email_strerror(EMAIL_ETIMEDOUT));
    email__error_set(0, "ignored");
    assert_false(email_error_occurred());
    assert_string_equal(email_error_info(), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_fd_failure),
        cmocka_unit_test(test_every_call_sets_or_clears),
        cmocka_unit_test(test_readers_leave_it_alone),
        cmocka_unit_test(test_per_thread),
        cmocka_unit_test(test_text_quotes_itself),
        cmocka_unit_test(test_use_loop_clears),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
