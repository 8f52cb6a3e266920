/*
 * The escaping of event text in the conversation log (lib/log.c, API.md section 6): control
 * characters (C0, DEL, C1) and bytes that are not UTF-8 as \xHH, '\' as \\, and '"' as \" inside
 * the quoted fields of C and S events; the same in the global log, an extended log and the
 * callback. Driven through email__log_event, no server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emailsession.h"
#include "log.h"
#include "util.h"

#include "harness.h"

typedef struct escape_case {
    char kind;
    const char *text;
    const char *event; /* as the log must show it */
} escape_case_t;

static const escape_case_t cases[] = {
    /* a server closing the quotes to forge an event */
    {'S', "220 x\" fake ### authenticated as root",
     "S < \"220 x\\\" fake ### authenticated as root\""},
    /* terminal escapes: ESC, BEL, CSI in C1 (U+009B) */
    {'S', "250 \033]0;owned\007\033[2J", "S < \"250 \\x1b]0;owned\\x07\\x1b[2J\""},
    {'S', "250 \xc2\x9b" "31m", "S < \"250 \\xc2\\x9b31m\""},
    /* a line can never end or restart inside an event */
    {'S', "250 a\r\nb\tc\177", "S < \"250 a\\x0d\\x0ab\\x09c\\x7f\""},
    /* the backslash itself, so that every escape can be undone */
    {'S', "250 C:\\dir\\x1b", "S < \"250 C:\\\\dir\\\\x1b\""},
    /* valid UTF-8 stays (U+00A0 is the first character past C1), the rest is escaped bytes */
    {'S', "250 caf\xc3\xa9 \xc2\xa0 \xe2\x82\xac \xf0\x9f\x98\x80",
     "S < \"250 caf\xc3\xa9 \xc2\xa0 \xe2\x82\xac \xf0\x9f\x98\x80\""},
    {'S', "250 \xff \xc3 \xc0\xaf \xed\xa0\x80 \xe2\x82", "S < \"250 \\xff \\xc3 \\xc0\\xaf "
                                                         "\\xed\\xa0\\x80 \\xe2\\x82\""},
    /* the client's side is a quoted field too (a quoted local part) */
    {'C', "MAIL FROM:<\"a b\"@example.org>", "C > \"MAIL FROM:<\\\"a b\\\"@example.org>\""},
    {'C', "", "C > \"\""},
    /* ### events are not quoted: '"' stays, controls and '\' do not */
    {'#', "error: server said \"no\"\033[0m \\", "### error: server said \"no\"\\x1b[0m \\\\"},
};
#define NCASES (sizeof cases / sizeof cases[0])

static email_buf_t cb_lines;

static void collect(const char *line, void *user_data)
{
    email__buf_puts(user_data, line);
    email__buf_putc(user_data, '\n');
}

/* The event of each line of text ("<n> <time> <pid> <session> <event>"), checked in order. */
static void assert_events(const char *text, const char *what)
{
    const char *p = text;
    for (size_t i = 0; i < NCASES; i++) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            fail_msg("%s: %zu lines, want %zu", what, i, NCASES);
        const char *ev = p;
        for (int field = 0; field < 4 && ev; field++) {
            ev = memchr(ev, ' ', (size_t)(eol - ev));
            ev = ev ? ev + 1 : NULL;
        }
        assert_non_null(ev);
        size_t n = (size_t)(eol - ev);
        if (n != strlen(cases[i].event) || memcmp(ev, cases[i].event, n) != 0)
            fail_msg("%s, case %zu: got [%.*s], want [%s]", what, i, (int)n, ev, cases[i].event);
        p = eol + 1;
    }
    assert_string_equal(p, "");
}

static void test_escaped_in_every_destination(void **state)
{
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char global[600], ext[600], err[300];
    snprintf(global, sizeof global, "%s/global.log", dir);
    snprintf(ext, sizeof ext, "%s/ext.log", dir);
    assert_int_equal(email_set_log(global), 0);
    email__buf_init(&cb_lines);
    assert_int_equal(email_set_log_callback(collect, &cb_lines), 0);
    log_sink_t *sink = email__log_sink_open(ext, err, sizeof err);
    assert_non_null(sink);
    uint64_t session = email__log_session_id();
    for (size_t i = 0; i < NCASES; i++)
        email__log_event(sink, session, cases[i].kind, cases[i].text);
    email__log_sink_release(sink);
    assert_int_equal(email_set_log(NULL), 0);
    email_dispatch(); /* the callback's lines wait for it (the default callback thread) */
    assert_int_equal(email_set_log_callback(NULL, NULL), 0);

    char *g = test_read_file(global, NULL), *x = test_read_file(ext, NULL);
    assert_non_null(g);
    assert_non_null(x);
    assert_events(g, "global log");
    assert_events(x, "extended log");
    assert_non_null(cb_lines.data);
    assert_events(cb_lines.data, "callback");
    free(g);
    free(x);
    email__buf_free(&cb_lines);
    test_rmtree(dir);
    free(dir);
}

/* The MIME of an extended log's blocks is the message itself: never escaped (ISO-2022-JP
 * holds ESC by design), whatever it contains. */
static void test_message_data_verbatim(void **state)
{
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char ext[600], err[300];
    snprintf(ext, sizeof ext, "%s/ext.log", dir);
    log_sink_t *sink = email__log_sink_open(ext, err, sizeof err);
    assert_non_null(sink);
    uint64_t session = email__log_session_id();
    static const char mime[] = "Subject: \033$B$3$s\033(B \"q\" \\\r\n\r\nbody\r\n";
    email__log_data_begin(sink, session, 7);
    email__log_data(sink, session, mime, sizeof mime - 1);
    email__log_data_end(sink, session, 7);
    email__log_sink_release(sink);
    char *x = test_read_file(ext, NULL);
    assert_non_null(x);
    const char *begins = strstr(x, " ### message 7 begins\n");
    assert_non_null(begins);
    const char *data = strchr(begins, '\n') + 1;
    assert_memory_equal(data, mime, sizeof mime - 1);
    char ends[64];
    snprintf(ends, sizeof ends, " ### message 7 ends (%zu bytes)\n", sizeof mime - 1);
    assert_non_null(strstr(data + sizeof mime - 1, ends));
    free(x);
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaped_in_every_destination),
        cmocka_unit_test(test_message_data_verbatim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
