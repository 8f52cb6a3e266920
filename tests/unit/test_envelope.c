/*
 * The envelope's extensions: delivery status notifications (RFC 3461) on MAIL and RCPT, and
 * international addresses (RFC 5890 A-labels where the server lacks SMTPUTF8, UTF-8 where it has
 * it, RFC 6532 header addresses only in a message that needs SMTPUTF8 anyway); the checks behind
 * them (email_message_set_dsn, IDNA2008), and the lines the engine writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_script.h"
#include "idn.h"
#include "message.h"
#include "message_content.h"

#define BUCHER "b\xc3\xbc" "cher.example"          /* bücher.example */
#define BUCHER_ACE "xn--bcher-kva.example"
#define JOERG "j\xc3\xb6rg"                         /* a local part that is not ASCII */
#define SNOWMAN "\xe2\x98\x83.example"              /* not a valid IDNA2008 name */

#define A "a@x.example"
#define B "b@x.example"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_AHEAD "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 Ok: queued\r\n"

static void assert_error_contains(const char *part)
{
    if (!strstr(email_error_info(), part))
        fail_msg("error text \"%s\" lacks \"%s\"", email_error_info(), part);
}

/* ---- A-labels ---- */

static void expect_ace(const char *addr, const char *want)
{
    char *out = NULL, why[300] = "";
    int rc = email__idn_addr_ascii(addr, &out, why, sizeof why);
    if (rc)
        fail_msg("\"%s\": %d %s", addr, rc, why);
    assert_string_equal(out, want);
    free(out);
}

static void test_a_labels(void **state)
{
    (void)state;
    expect_ace("info@" BUCHER, "info@" BUCHER_ACE);
    expect_ace(JOERG "@" BUCHER, JOERG "@" BUCHER_ACE); /* the local part is never touched */
    expect_ace("a@x.example", "a@x.example");
    expect_ace("a@[192.0.2.1]", "a@[192.0.2.1]");
    expect_ace("", "");
    /* IDNA2008 nontransitional: sharp s stays itself (IDNA2003 made it "ss") */
    expect_ace("a@stra\xc3\x9f" "e.de", "a@xn--strae-oqa.de");
    /* the same name typed with a combining diaeresis has the same A-label */
    expect_ace("a@bu\xcc\x88" "cher.example", "a@" BUCHER_ACE);

    assert_true(email__idn_domain_utf8("a@" BUCHER));
    assert_false(email__idn_domain_utf8(JOERG "@x.example"));
    assert_true(email__idn_local_utf8(JOERG "@x.example"));
    assert_false(email__idn_local_utf8("a@" BUCHER));
}

static void test_a_label_refused(void **state)
{
    (void)state;
    const char *bad[] = {"a@" SNOWMAN, "a@-b\xc3\xbc" "cher.example",
                         "a@\xd8\xa7\xd9\x84" "a.example" /* Arabic and Latin in one label */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL, why[300] = "";
        assert_int_equal(email__idn_addr_ascii(bad[i], &out, why, sizeof why), EMAIL_EINVAL);
        assert_null(out);
        char want[200];
        snprintf(want, sizeof want, "\"%s\" has a domain that is not a valid international domain "
                                    "name: ", bad[i]);
        if (strncmp(why, want, strlen(want)))
            fail_msg("\"%s\" does not start with \"%s\"", why, want);
    }
}

/* An address whose domain has no A-label is refused where it is given, naming it. */
static void test_idn_refused_when_added(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_add_to(m, "ok@" BUCHER ", Snow <s@" SNOWMAN ">"),
                     EMAIL_EINVAL);
    assert_error_contains("To: \"s@" SNOWMAN "\" has a domain that is not a valid international "
                          "domain name");
    const char *const *rcpts;
    assert_int_equal(email__message_recipients(m, &rcpts), 0); /* the message is unchanged */
    assert_int_equal(email_message_set_from(m, "s@" SNOWMAN), EMAIL_EINVAL);
    assert_error_contains("From: \"s@" SNOWMAN "\"");
    assert_int_equal(email_message_add_to(m, "Ok <ok@" BUCHER ">"), 0);
    email_message_free(m);
}

/* ---- Header addresses ---- */

static char *headers_of(const email_message_t *m)
{
    char *mime = NULL;
    size_t n;
    if (email_message_to_mime(m, &mime, &n))
        fail_msg("to_mime: %s", email_error_info());
    char *end = strstr(mime, "\r\n\r\n");
    assert_non_null(end);
    end[2] = '\0';
    return mime;
}

/* ASCII local parts: the header goes to any server, so every address in it is ASCII. */
static void test_headers_a_labels(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "J\xc3\xb6rg <joerg@" BUCHER ">"), 0);
    assert_int_equal(email_message_add_to(m, "info@" BUCHER), 0);
    assert_int_equal(email_message_add_cc(m, "c@x.example"), 0);
    assert_int_equal(email_message_set_disposition_notification(m, true), 0);
    assert_null(email__message_utf8_address(email__message_content(m)));
    char *h = headers_of(m);
    assert_true(email__is_ascii(h, strlen(h)));
    assert_non_null(strstr(h, "\r\nFrom: =?UTF-8?Q?J=C3=B6rg?= <joerg@" BUCHER_ACE ">\r\n"));
    assert_non_null(strstr(h, "\r\nTo: info@" BUCHER_ACE "\r\n"));
    assert_non_null(strstr(h, "\r\nDisposition-Notification-To: =?UTF-8?Q?J=C3=B6rg?=\r\n <joerg@"
                              BUCHER_ACE ">\r\n"));
    assert_non_null(strstr(h, "@" BUCHER_ACE ">\r\nMIME-Version:")); /* Message-ID's domain */
    free(h);
    email_message_free(m);
}

/* A local part that is not ASCII, even in Reply-To: the message needs SMTPUTF8, and its header
   addresses are UTF-8 as given (RFC 6532). */
static void test_headers_utf8(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    assert_int_equal(email_message_set_from(m, "joerg@" BUCHER), 0);
    assert_int_equal(email_message_add_to(m, "info@x.example"), 0);
    assert_int_equal(email_message_set_reply_to(m, JOERG "@" BUCHER), 0);
    assert_string_equal(email__message_utf8_address(email__message_content(m)),
                        JOERG "@" BUCHER);
    char *h = headers_of(m);
    assert_non_null(strstr(h, "\r\nFrom: joerg@" BUCHER "\r\n"));
    assert_non_null(strstr(h, "\r\nReply-To: " JOERG "@" BUCHER "\r\n"));
    free(h);
    email_message_free(m);
}

/* ---- email_message_set_dsn ---- */

static void test_dsn_checks(void **state)
{
    (void)state;
    email_message_t *m = email_message_new();
    const message_dsn_t *d = email__message_dsn(m);
    assert_int_equal(d->notify, 0);
    assert_null(d->ret);
    assert_null(d->envid);

    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_NEVER | EMAIL_NOTIFY_FAILURE, NULL,
                                           NULL),
                     EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "DSN: notify EMAIL_NOTIFY_NEVER cannot be combined "
                                            "with SUCCESS, FAILURE or DELAY");
    assert_int_equal(email_message_set_dsn(m, 16, NULL, NULL), EMAIL_EINVAL);
    assert_string_equal(email_error_info(),
                        "DSN: notify 0x10 is not made of EMAIL_NOTIFY_... flags");
    assert_int_equal(email_message_set_dsn(m, -1, NULL, NULL), EMAIL_EINVAL);
    assert_int_equal(email_message_set_dsn(m, 0, "BODY", NULL), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "DSN: ret \"BODY\" is not \"FULL\" or \"HDRS\"");
    char envid[102];
    memset(envid, 'e', 101);
    envid[101] = '\0';
    assert_int_equal(email_message_set_dsn(m, 0, NULL, envid), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "DSN: envid is 101 characters long, 100 at most");
    assert_int_equal(email_message_set_dsn(m, 0, NULL, "caf\xc3\xa9"), EMAIL_EINVAL);
    assert_string_equal(email_error_info(),
                        "DSN: envid must be printable ASCII (character 4 is not)");
    assert_int_equal(email_message_set_dsn(m, 0, NULL, "a\tb"), EMAIL_EINVAL);
    assert_int_equal(email_message_set_dsn(NULL, 0, NULL, NULL), EMAIL_EINVAL);
    assert_string_equal(email_error_info(), "DSN: no message");
    /* every refusal left the message as it was */
    assert_int_equal(d->notify, 0);
    assert_null(d->ret);
    assert_null(d->envid);

    envid[100] = '\0';
    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_DELAY, "hdrs",
                                           envid),
                     0);
    assert_false(email_error_occurred());
    assert_int_equal(d->notify, EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_DELAY);
    assert_string_equal(d->ret, "HDRS");
    assert_string_equal(d->envid, envid);
    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_NEVER, "FULL", "id +=1"), 0);
    assert_int_equal(d->notify, EMAIL_NOTIFY_NEVER);

    /* the frozen copy that is queued keeps it */
    assert_int_equal(email_message_set_from(m, A), 0);
    assert_int_equal(email_message_add_to(m, B), 0);
    email_message_t *frozen;
    char err[200];
    assert_int_equal(email__message_freeze(m, NULL, NULL, &frozen, err, sizeof err), 0);
    const message_dsn_t *f = email__message_dsn(frozen);
    assert_int_equal(f->notify, EMAIL_NOTIFY_NEVER);
    assert_string_equal(f->ret, "FULL");
    assert_string_equal(f->envid, "id +=1");
    assert_ptr_not_equal(f->envid, d->envid);
    email_message_free(frozen);

    assert_int_equal(email_message_set_dsn(m, 0, NULL, ""), 0); /* asks for nothing again */
    assert_int_equal(d->notify, 0);
    assert_null(d->ret);
    assert_null(d->envid);
    email_message_free(m);
}

/* ---- The engine's MAIL and RCPT lines ---- */

static void expect_feed(test_session_t *s, const char *server, const char *client)
{
    assert_int_equal(ts_feed(s, server), 0);
    assert_string_equal(ts_take(s), client);
}

/* One whole transaction without pipelining: MAIL, each RCPT, DATA and the body. */
static void run_job(test_session_t *s, test_job_t *t, const char *mail, const char *const *rcpt)
{
    assert_int_equal(email__smtp_engine_submit(s->e, &t->job), 0);
    assert_string_equal(ts_take(s), mail);
    for (size_t i = 0; rcpt[i]; i++)
        expect_feed(s, i ? OK_RCPT : OK_MAIL, rcpt[i]);
    expect_feed(s, OK_RCPT, "DATA\r\n");
    expect_feed(s, GO_AHEAD, "x\r\n.\r\n");
    expect_feed(s, QUEUED, "");
}

static void test_dsn_offered(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 DSN\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "x\r\n", B, "c+tag=1@x.example", NULL);
    m1.job.dsn_notify = EMAIL_NOTIFY_DELAY | EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_FAILURE;
    m1.job.dsn_ret = "HDRS";
    m1.job.dsn_envid = "id+1=x y\x7e";
    run_job(s, &m1, "MAIL FROM:<" A "> RET=HDRS ENVID=id+2B1+3Dx+20y~\r\n",
            (const char *const[]){"RCPT TO:<" B "> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;"
                                  B "\r\n",
                                  "RCPT TO:<c+tag=1@x.example> NOTIFY=SUCCESS,FAILURE,DELAY "
                                  "ORCPT=rfc822;c+2Btag+3D1@x.example\r\n",
                                  NULL});
    /* NOTIFY=NEVER alone; no RET or ENVID asked: none sent, ORCPT still */
    test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
    m2.job.dsn_notify = EMAIL_NOTIFY_NEVER;
    run_job(s, &m2, "MAIL FROM:<" A ">\r\n",
            (const char *const[]){"RCPT TO:<" B "> NOTIFY=NEVER ORCPT=rfc822;" B "\r\n", NULL});
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    assert_false(ts_log_has(s, "#: SMTP DSN not offered by the server: messages go without "
                               "delivery status notification requests"));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* A server without DSN gets the messages without the parameters; the log says so once. */
static void test_dsn_not_offered(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 HELP\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
    m1.job.dsn_notify = EMAIL_NOTIFY_FAILURE;
    m1.job.dsn_ret = "FULL";
    m1.job.dsn_envid = "e1";
    test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
    m2.job.dsn_envid = "e2";
    const char *const rcpt[] = {"RCPT TO:<" B ">\r\n", NULL};
    run_job(s, &m1, "MAIL FROM:<" A ">\r\n", rcpt);
    run_job(s, &m2, "MAIL FROM:<" A ">\r\n", rcpt);
    EXPECT_EVENTS(s, "job m1 SENT EMAIL_OK 250 2.0.0 rejected=0\n"
                     "job m2 SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    const char *line = "#: SMTP DSN not offered by the server: messages go without delivery "
                       "status notification requests\n";
    const char *first = strstr(buf_str(&s->log), line);
    assert_non_null(first);
    assert_null(strstr(first + 1, line));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* International domains: A-labels for a server without SMTPUTF8 (ORCPT too), no SMTPUTF8. */
static void test_idn_without_smtputf8(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-8BITMIME\r\n250 DSN\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m;
    test_job_init(&m, "m", "a@" BUCHER, "x\r\n", B, "c@" BUCHER, NULL);
    const char *ace[] = {B, "c@" BUCHER_ACE};
    m.job.from_ace = "a@" BUCHER_ACE;
    m.job.rcpts_ace = ace;
    m.job.dsn_notify = EMAIL_NOTIFY_FAILURE;
    run_job(s, &m, "MAIL FROM:<a@" BUCHER_ACE ">\r\n",
            (const char *const[]){"RCPT TO:<" B "> NOTIFY=FAILURE ORCPT=rfc822;" B "\r\n",
                                  "RCPT TO:<c@" BUCHER_ACE "> NOTIFY=FAILURE ORCPT=rfc822;c@"
                                  BUCHER_ACE "\r\n",
                                  NULL});
    EXPECT_EVENTS(s, "job m SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m);
}

/* With SMTPUTF8 the addresses go as they are; ORCPT then in RFC 6533's utf-8 form. */
static void test_idn_with_smtputf8(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250-SMTPUTF8\r\n250 DSN\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m;
    test_job_init(&m, "m", A, "x\r\n", "c+1@" BUCHER, NULL);
    const char *ace[] = {"c+1@" BUCHER_ACE};
    m.job.rcpts_ace = ace;
    m.job.dsn_notify = EMAIL_NOTIFY_SUCCESS;
    run_job(s, &m, "MAIL FROM:<" A "> SMTPUTF8\r\n",
            (const char *const[]){"RCPT TO:<c+1@" BUCHER "> NOTIFY=SUCCESS "
                                  "ORCPT=utf-8;c\\x{2B}1@b\\x{FC}cher.example\r\n",
                                  NULL});
    EXPECT_EVENTS(s, "job m SENT EMAIL_OK 250 2.0.0 rejected=0\n");
    test_job_free(&m);
}

/* A local part that is not ASCII cannot go without SMTPUTF8: refused before MAIL, naming it. */
static void test_utf8_local_part_refused(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 8BITMIME\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m;
    test_job_init(&m, "m", A, "x\r\n", JOERG "@" BUCHER, NULL);
    m.job.smtputf8 = true;
    m.job.utf8_address = JOERG "@" BUCHER;
    assert_int_equal(email__smtp_engine_submit(s->e, &m.job), 0);
    EXPECT_EVENTS(s, "job m FAILED EMAIL_ENOTSUP 0 rejected=0\n");
    assert_string_equal(m.job.status.status_text,
                        "the address \"" JOERG "@" BUCHER "\" has a local part that is not "
                        "ASCII and the server does not offer SMTPUTF8");
    assert_string_equal(ts_take(s), "");
    test_job_free(&m);
}

/* ---- Enhanced status codes in our texts ---- */

/* Every text quoting a reply carries its enhanced code (RFC 3463) when the server gave one. */
static void test_enhanced_codes_in_texts(void **state)
{
    test_session_t *s = *state;
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 ENHANCEDSTATUSCODES\r\n"), 0);
    EXPECT_EVENTS(s, "ready\n");
    test_job_t m1, m2;
    test_job_init(&m1, "m1", A, "x\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m1.job), 0);
    assert_string_equal(ts_take(s), "MAIL FROM:<" A ">\r\n");
    expect_feed(s, OK_MAIL, "RCPT TO:<" B ">\r\n");
    expect_feed(s, "550 5.1.1 <b@x.example>: no such user\r\n", "RSET\r\n");
    EXPECT_EVENTS(s, "job m1 FAILED EMAIL_ERECIPIENTS 550 5.1.1 rejected=1\n");
    assert_string_equal(m1.job.status.status_text,
                        "every recipient was refused: 550 5.1.1 <b@x.example>: no such user");
    assert_string_equal(m1.job.refusals.v[0].text, "<b@x.example>: no such user");

    test_job_init(&m2, "m2", A, "x\r\n", B, NULL);
    assert_int_equal(email__smtp_engine_submit(s->e, &m2.job), 0);
    expect_feed(s, "250 2.0.0 Ok\r\n", "MAIL FROM:<" A ">\r\n");
    assert_int_equal(ts_feed(s, "421 4.3.2 shutting down\r\n"), EMAIL_ECLOSED);
    EXPECT_EVENTS(s, "job m2 RETRYABLE EMAIL_ECLOSED 421 4.3.2 rejected=0\n"
                     "closed EMAIL_ECLOSED 421 4.3.2\n");
    assert_string_equal(s->closed_status.status_text,
                        "the server is closing the connection: 421 4.3.2 shutting down");
    assert_true(ts_log_has(s, "#: SMTP Error: the server is closing the connection: 421 4.3.2 "
                              "shutting down"));
    test_job_free(&m1);
    test_job_free(&m2);
}

/* STARTTLS refused where it is optional: the log line names both codes. */
static void test_enhanced_code_starttls_refused(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.starttls = SMTP_TLS_IF_OFFERED;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 STARTTLS\r\n"), 0);
    assert_string_equal(ts_take(s), "STARTTLS\r\n");
    expect_feed(s, "454 4.7.0 TLS not available\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_true(ts_log_has(s, "#: SMTP STARTTLS refused (454 4.7.0): going on unencrypted"));
}

#define SESSION_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup, ts_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_labels),
        cmocka_unit_test(test_a_label_refused),
        cmocka_unit_test(test_idn_refused_when_added),
        cmocka_unit_test(test_headers_a_labels),
        cmocka_unit_test(test_headers_utf8),
        cmocka_unit_test(test_dsn_checks),
        SESSION_TEST(test_dsn_offered),
        SESSION_TEST(test_dsn_not_offered),
        SESSION_TEST(test_idn_without_smtputf8),
        SESSION_TEST(test_idn_with_smtputf8),
        SESSION_TEST(test_utf8_local_part_refused),
        SESSION_TEST(test_enhanced_codes_in_texts),
        SESSION_TEST(test_enhanced_code_starttls_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
