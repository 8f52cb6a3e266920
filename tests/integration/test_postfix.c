/*
 * Against a real third-party server: postfix's smtpd (tests/servers/postfix.py, a private
 * instance that relays at once to smtpd.py, whose spool the tests read; its maillog lies beside
 * the spool). BDAT streams with CHUNKING and PIPELINING (a large message, dot lines, a refused
 * recipient, a message over the size limit, a 421 in the middle), the same stream with DATA,
 * the connection pool, DSN parameters relayed by postfix, SMTPUTF8 and A-labels, STARTTLS with
 * the test CA, and postfix's enhanced status codes in a refusal. Three instances, started once
 * for all the tests; skipped (77) where postfix.py cannot run (not root).
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"

#define REFUSED "nobody@example.org"
#define BUCHER "b\xc3\xbc" "cher.example"
#define BUCHER_JSON "b\\u00fccher.example" /* how Python's json writes it */
#define BUCHER_ACE "xn--bcher-kva.example"
#define MAX_MSGS 48
#define LIMIT "4000000" /* the full instance's message_size_limit */
#define SPOOL_WAIT_MS 15000

/* full: every extension, STARTTLS, REFUSED refused; ascii: without SMTPUTF8, DSN, CHUNKING. */
static struct {
    bool skipped;
    test_server_t full, ascii, strict;
    char *dir; /* certificates and the client's logs */
} fx;

static char *path_in(const char *dir, const char *name)
{
    size_t size = strlen(dir) + strlen(name) + 2;
    char *p = malloc(size);
    assert_non_null(p);
    snprintf(p, size, "%s/%s", dir, name);
    return p;
}

static int start_postfix(test_server_t *s, const char *const *args)
{
    int rc = test_server_start(s, "postfix.py", args);
    if (rc == TEST_SKIP)
        fx.skipped = true;
    return rc == TEST_SKIP ? 0 : rc;
}

static int group_setup(void **state)
{
    (void)state;
    fx.dir = test_tmpdir();
    if (!fx.dir || test_make_certs(fx.dir, "test_postfix") != 0)
        return -1;
    char *cert = path_in(fx.dir, "good.pem"), *key = path_in(fx.dir, "good.key");
    /* SIZE hidden: the library cannot refuse a message over the limit itself */
    const char *full[] = {"--starttls", cert, key, "--reject-rcpt", REFUSED,
                          "--size", LIMIT, "--hide", "size", NULL};
    const char *ascii[] = {"--hide", "smtputf8", "--hide", "dsn", "--hide", "chunking", NULL};
    /* after the first error postfix waits a second before each reply: the whole stream has
     * gone out by the time its 421 comes */
    const char *strict[] = {"--reject-rcpt", REFUSED, "--set", "smtpd_hard_error_limit=2",
                            "--set", "smtpd_soft_error_limit=1",
                            "--set", "smtpd_error_sleep_time=1s", NULL};
    int rc = start_postfix(&fx.full, full);
    if (rc == 0 && !fx.skipped)
        rc = start_postfix(&fx.ascii, ascii);
    if (rc == 0 && !fx.skipped)
        rc = start_postfix(&fx.strict, strict);
    free(cert);
    free(key);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    test_server_stop(&fx.full);
    test_server_stop(&fx.ascii);
    test_server_stop(&fx.strict);
    if (fx.dir)
        test_rmtree(fx.dir);
    free(fx.dir);
    return 0;
}

static void assert_has(const char *text, const char *part)
{
    if (!text || !strstr(text, part))
        fail_msg("\"%s\" not in:\n%s", part, text ? text : "(null)");
}

/* ---------------------------------------------------------------------------------------------
 * Outcomes of asynchronous sends
 * ------------------------------------------------------------------------------------------- */

typedef struct slot {
    int calls, error, status, refusal_code;
    char enhanced[16];
    size_t rejected;
    char text[512];    /* the status text */
    char refusal[256]; /* the first refused recipient's text */
} slot_t;

typedef struct outcomes {
    slot_t slot[MAX_MSGS];
    int n, calls;
} outcomes_t;

static outcomes_t out;

static void on_done(uint64_t id, const email_status_t *st, void *user_data)
{
    (void)id;
    slot_t *s = user_data;
    s->calls++;
    out.calls++;
    s->error = st->success ? 0 : st->error;
    s->rejected = st->rejected;
    s->status = st->status;
    snprintf(s->enhanced, sizeof s->enhanced, "%s", st->enhanced_code);
    snprintf(s->text, sizeof s->text, "%s", st->status_text);
    s->refusal_code = 0;
    email_status_recipient(st, 0, &s->refusal_code);
    const char *text = email_status_recipient_text(st, 0);
    snprintf(s->refusal, sizeof s->refusal, "%s", text ? text : "");
}

static void wait_calls(int want)
{
    struct pollfd p = {.fd = email_dispatch_fd(), .events = POLLIN};
    for (int i = 0; i < 600 && out.calls < want; i++)
        if (poll(&p, 1, 100) > 0)
            email_dispatch();
    if (out.calls < want)
        fail_msg("%d outcomes of %d", out.calls, want);
}

/* ---------------------------------------------------------------------------------------------
 * What the next hop received
 * ------------------------------------------------------------------------------------------- */

/* The spooled message (from first on) whose text contains key, which must be there once. */
static char *spooled_once(const test_server_t *s, int first, const char *key, const char *ext)
{
    char *found = NULL;
    int n = test_spool_count(s);
    for (int i = first; i <= n; i++) {
        char *text = test_spool_read(s, i, "eml", NULL);
        if (text && strstr(text, key)) {
            if (found)
                fail_msg("\"%s\" delivered twice", key);
            found = strcmp(ext, "eml") ? test_spool_read(s, i, ext, NULL) : strdup(text);
        }
        free(text);
    }
    if (!found)
        fail_msg("\"%s\" not delivered", key);
    return found;
}

/* Waits until count more messages than before reached the next hop. */
static void wait_spool(const test_server_t *s, int before, int count)
{
    assert_int_equal(test_spool_wait(s, before + count, SPOOL_WAIT_MS), before + count);
}

static email_server_t settings(const test_server_t *s, const char *log)
{
    email_server_t srv;
    test_plain_server(&srv, s->port);
    srv.log_file = log;
    return srv;
}

#define SKIP_IF_NO_POSTFIX()                                                                       \
    do {                                                                                           \
        if (fx.skipped)                                                                            \
            skip();                                                                                \
    } while (0)

/* Polls postfix's maillog (beside the spool) until it has part; its text. */
static char *wait_maillog(const test_server_t *s, const char *part)
{
    char *log = path_in(s->dir, "maillog"), *text = NULL;
    for (int i = 0; i < 500; i++, test_sleep_ms(10)) {
        free(text);
        text = test_read_file(log, NULL);
        if (text && strstr(text, part))
            break;
    }
    free(log);
    assert_has(text, part);
    return text;
}

/* ---------------------------------------------------------------------------------------------
 * BDAT streams
 * ------------------------------------------------------------------------------------------- */

/* A whole message with every header postfix would add otherwise, so that what the next hop
 * gets is exactly this behind postfix's Received: header. Malloc'ed. */
static char *mime_text(const char *tag, const char *body)
{
    static const char fmt[] = "From: a@example.org\r\nTo: b@example.org\r\n"
                              "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                              "Message-ID: <%s@emailsession.test>\r\nSubject: %s\r\n\r\n%s";
    size_t size = sizeof fmt + 2 * strlen(tag) + strlen(body);
    char *m = malloc(size);
    assert_non_null(m);
    snprintf(m, size, fmt, tag, tag, body);
    return m;
}

/* About `bytes` of numbered 78-character lines (a corruption anywhere shows). Malloc'ed. */
static char *big_body(size_t bytes)
{
    size_t lines = bytes / 80 + 1;
    char *b = malloc(lines * 80 + 1);
    assert_non_null(b);
    for (size_t i = 0; i < lines; i++)
        snprintf(b + i * 80, 81, "%08zu %.*s\r\n", i, 69,
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_.,;");
    return b;
}

/* The message tagged `tag` reached the next hop once, as sent: postfix's Received: header,
 * then the very bytes of mime. */
static void assert_relayed_intact(const test_server_t *s, int first, const char *tag,
                                  const char *mime)
{
    char key[128];
    snprintf(key, sizeof key, "Message-ID: <%s@", tag);
    char *eml = spooled_once(s, first, key, "eml");
    size_t elen = strlen(eml), mlen = strlen(mime);
    assert_true(strncmp(eml, "Received: from ", 15) == 0);
    if (elen < mlen || memcmp(eml + elen - mlen, mime, mlen) != 0)
        fail_msg("%s changed on the way (%zu bytes received, %zu sent)", tag, elen, mlen);
    free(eml);
}

static void send_mime_async(email_transporter_t *t, const char *const *rcpts, const char *mime)
{
    assert_true(out.n < MAX_MSGS);
    assert_int_equal(email_transporter_send_mime_async(t, "a@example.org", rcpts, mime,
                                                       strlen(mime), on_done, &out.slot[out.n],
                                                       NULL),
                     0);
    out.n++;
}

#define N_STREAM 10
#define BIG 5 /* which one is large */
#define DOTS 2 /* which one has lines starting with '.' */

/* Ten messages on one connection, as BDAT transactions pipelined one behind the other: each
 * one reached the next hop once with its bytes intact, and postfix counted the BDATs. */
static void test_stream(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.full);
    char *log = path_in(fx.dir, "stream.log");
    email_server_t srv = settings(&fx.full, log);
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    char *mime[N_STREAM], *big = big_body(3 << 20);
    const char *rcpts[] = {"b@example.org", NULL};
    for (int i = 0; i < N_STREAM; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "stream%d", i);
        mime[i] = mime_text(tag, i == BIG    ? big
                                 : i == DOTS ? ".\r\n..\r\n.x\r\n..y\r\n. \r\nend\r\n"
                                             : "Hello.\r\n");
        send_mime_async(t, rcpts, mime[i]);
    }
    wait_calls(N_STREAM);
    email_transporter_free(t); /* QUIT: postfix logs the session's counts */
    for (int i = 0; i < N_STREAM; i++)
        if (out.slot[i].calls != 1 || out.slot[i].error)
            fail_msg("message %d: %d outcomes, error %d", i, out.slot[i].calls,
                     out.slot[i].error);
    wait_spool(&fx.full, before, N_STREAM);
    for (int i = 0; i < N_STREAM; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "stream%d", i);
        assert_relayed_intact(&fx.full, before + 1, tag, mime[i]);
        free(mime[i]);
    }
    char *text = test_read_file(log, NULL);
    assert_has(text, "BDAT ");
    free(text);
    /* one session: ten transactions, all by BDAT (postfix counts "data=" between the two) */
    free(wait_maillog(&fx.full, " mail=10 rcpt=10 bdat="));
    free(big);
    free(log);
}

/* A refused recipient in the middle of a stream: the message with another recipient goes to
 * that one, the one with none fails alone (postfix answers its BDAT 554), the rest go. */
static void test_stream_refusal(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.full);
    email_server_t srv = settings(&fx.full, NULL);
    email_transporter_t *t = email_transporter_new(&srv);
    const char *good[] = {"b@example.org", NULL}, *some[] = {REFUSED, "c@example.org", NULL};
    const char *none[] = {REFUSED, NULL};
    char *mime[8];
    for (int i = 0; i < 8; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "refusal%d", i);
        mime[i] = mime_text(tag, "Hello.\r\n");
        send_mime_async(t, i == 3 ? some : i == 4 ? none : good, mime[i]);
    }
    wait_calls(8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(out.slot[i].calls, 1);
        assert_int_equal(out.slot[i].error, i == 4 ? EMAIL_ERECIPIENTS : 0);
        assert_int_equal(out.slot[i].rejected, i == 3 || i == 4);
        if (i == 3 || i == 4) {
            assert_int_equal(out.slot[i].refusal_code, 550);
            assert_has(out.slot[i].refusal, "<" REFUSED ">: Recipient address rejected");
        }
    }
    assert_has(out.slot[4].text, "550 5.1.1 <" REFUSED ">");
    wait_spool(&fx.full, before, 7);
    for (int i = 0; i < 8; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "refusal%d", i);
        if (i != 4)
            assert_relayed_intact(&fx.full, before + 1, tag, mime[i]);
    }
    char *json = spooled_once(&fx.full, before + 1, "<refusal3@", "json");
    assert_has(json, "\"rcpt_tos\": [\n  \"c@example.org\"\n ]");
    free(json);
    for (int i = 0; i < 8; i++)
        free(mime[i]);
    email_transporter_free(t);
}

/* A message over postfix's message_size_limit (SIZE hidden: the library cannot know) in the
 * middle of a stream fails alone; the replies to its remaining chunks shift nothing. */
static void test_stream_too_large(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.full);
    char *log = path_in(fx.dir, "large.log");
    email_server_t srv = settings(&fx.full, log);
    email_transporter_t *t = email_transporter_new(&srv);
    const char *rcpts[] = {"b@example.org", NULL};
    char *mime[3], *big = big_body(5000000);
    for (int i = 0; i < 3; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "large%d", i);
        mime[i] = mime_text(tag, i == 1 ? big : "Hello.\r\n");
        send_mime_async(t, rcpts, mime[i]);
    }
    wait_calls(3);
    email_transporter_free(t);
    assert_int_equal(out.slot[0].error, 0);
    assert_int_equal(out.slot[2].error, 0);
    /* postfix cuts the message at the chunk past its limit and discards the rest (551) */
    assert_int_equal(out.slot[1].error, EMAIL_ESERVER);
    assert_int_equal(out.slot[1].status, 552);
    assert_string_equal(out.slot[1].enhanced, "5.3.4");
    char *text = test_read_file(log, NULL);
    assert_has(text, "\"552 5.3.4 ");
    free(text);
    wait_spool(&fx.full, before, 2);
    assert_int_equal(test_spool_count(&fx.full), before + 2); /* refused: never relayed */
    for (int i = 0; i < 3; i += 2) {
        char tag[16];
        snprintf(tag, sizeof tag, "large%d", i);
        assert_relayed_intact(&fx.full, before + 1, tag, mime[i]);
    }
    for (int i = 0; i < 3; i++)
        free(mime[i]);
    free(big);
    free(log);
}

/* Postfix ends the session with 421 at its second error (a refused RCPT and its BDAT), in
 * answer to the RSET ahead of the next message: it read nothing after, so the messages behind,
 * their BDAT LAST already sent, were not delivered; they go again on a new connection. */
static void test_stream_421(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.strict);
    char *log = path_in(fx.dir, "421.log");
    email_server_t srv = settings(&fx.strict, log);
    email_transporter_t *t = email_transporter_new(&srv);
    const char *good[] = {"b@example.org", NULL}, *bad[] = {REFUSED, NULL};
    char *mime[5];
    for (int i = 0; i < 5; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "e421-%d", i);
        mime[i] = mime_text(tag, "Hello.\r\n");
        send_mime_async(t, i == 1 ? bad : good, mime[i]);
    }
    wait_calls(5);
    email_transporter_free(t);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(out.slot[i].calls, 1);
        if (out.slot[i].error != (i == 1 ? EMAIL_ERECIPIENTS : 0))
            fail_msg("message %d: %s", i, out.slot[i].text);
    }
    char *text = test_read_file(log, NULL);
    assert_has(text, "\"421 4.7.0 postfix.test Error: too many errors\"");
    free(text);
    wait_spool(&fx.strict, before, 4);
    for (int i = 0; i < 5; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "e421-%d", i);
        if (i != 1)
            assert_relayed_intact(&fx.strict, before + 1, tag, mime[i]);
        free(mime[i]);
    }
    free(log);
}

/* Without CHUNKING: the same stream with DATA (dots stuffed by the library, unstuffed by
 * postfix); without DSN: the request dropped, as the library's log says. */
static void test_stream_data(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.ascii);
    char *log = path_in(fx.dir, "data.log");
    email_server_t srv = settings(&fx.ascii, log);
    email_transporter_t *t = email_transporter_new(&srv);
    const char *rcpts[] = {"b@example.org", NULL};
    char *mime[3];
    for (int i = 0; i < 3; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "data%d", i);
        mime[i] = mime_text(tag, i == 1 ? ".\r\n..\r\n.x\r\nend\r\n" : "Hello.\r\n");
        send_mime_async(t, rcpts, mime[i]);
    }
    email_message_t *m = test_message("a@example.org", "b@example.org", "nodsn", "x\n");
    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_FAILURE, "FULL", "e1"), 0);
    assert_int_equal(email_transporter_send_async(t, m, on_done, &out.slot[3], NULL), 0);
    email_message_free(m);
    wait_calls(4);
    email_transporter_free(t);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out.slot[i].error, 0);
    wait_spool(&fx.ascii, before, 4);
    for (int i = 0; i < 3; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "data%d", i);
        assert_relayed_intact(&fx.ascii, before + 1, tag, mime[i]);
        free(mime[i]);
    }
    char *json = spooled_once(&fx.ascii, before + 1, "Subject: nodsn", "json");
    assert_has(json, "\"dsn_mail\": []");
    free(json);
    char *text = test_read_file(log, NULL);
    assert_has(text, "SMTP DSN not offered by the server");
    assert_null(strstr(text, "BDAT"));
    free(text);
    free(wait_maillog(&fx.ascii, " mail=4 rcpt=4 data=4 "));
    free(log);
}

/* ---------------------------------------------------------------------------------------------
 * The pool
 * ------------------------------------------------------------------------------------------- */

/* The most connections postfix's smtpd had open at once, from its maillog. */
static int most_open(const char *maillog)
{
    int open = 0, most = 0;
    for (const char *p = maillog; (p = strstr(p, "/smtpd[")) != NULL; p++) {
        const char *event = strchr(p, ' ');
        if (event && !strncmp(event, " connect from", 13) && ++open > most)
            most = open;
        else if (event && !strncmp(event, " disconnect from", 16))
            open--;
    }
    return most;
}

/* 40 messages over up to 4 connections: each reached the next hop once, over several. */
static void test_pool(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    memset(&out, 0, sizeof out);
    int before = test_spool_count(&fx.full);
    email_server_t srv = settings(&fx.full, NULL);
    srv.max_connections = 4;
    email_transporter_t *t = email_transporter_new(&srv);
    const char *rcpts[] = {"b@example.org", NULL};
    char *mime[40];
    for (int i = 0; i < 40; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "pool%d", i);
        mime[i] = mime_text(tag, "Hello.\r\n");
        send_mime_async(t, rcpts, mime[i]);
    }
    wait_calls(40);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(out.slot[i].calls, 1);
        assert_int_equal(out.slot[i].error, 0);
    }
    email_transporter_free(t);
    wait_spool(&fx.full, before, 40);
    for (int i = 0; i < 40; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "pool%d", i);
        assert_relayed_intact(&fx.full, before + 1, tag, mime[i]);
        free(mime[i]);
    }
    char *maillog = wait_maillog(&fx.full, "disconnect from");
    assert_true(most_open(maillog) >= 2);
    free(maillog);
}

/* ---------------------------------------------------------------------------------------------
 * DSN, SMTPUTF8, STARTTLS, enhanced status codes
 * ------------------------------------------------------------------------------------------- */

/* Sends m synchronously and returns the next hop's envelope of it (malloc'ed). */
static char *send_and_record(test_server_t *s, email_server_t *srv, email_message_t *m,
                             const char *key)
{
    int before = test_spool_count(s);
    email_transporter_t *t = email_transporter_new(srv);
    assert_non_null(t);
    test_transporter_send_ok(t, m);
    email_transporter_free(t);
    wait_spool(s, before, 1);
    return spooled_once(s, before + 1, key, "json");
}

/* Postfix takes RET/ENVID/NOTIFY/ORCPT from the library and relays them to the next hop. */
static void test_dsn(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    email_message_t *m = test_message("a@example.org", "b+1@example.org", "dsn1", "x\n");
    assert_int_equal(email_message_set_dsn(m, EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_FAILURE, "HDRS",
                                           "Q1 id=7+x"),
                     0);
    email_server_t srv = settings(&fx.full, NULL);
    char *json = send_and_record(&fx.full, &srv, m, "Subject: dsn1");
    assert_has(json, "\"RET=HDRS\"");
    assert_has(json, "\"ENVID=Q1+20id+3D7+2Bx\"");
    assert_has(json, "\"NOTIFY=SUCCESS,FAILURE\"");
    assert_has(json, "\"ORCPT=rfc822;b+2B1@example.org\"");
    free(json);
    email_message_free(m);
}

/* A UTF-8 local part through postfix with SMTPUTF8; an IDN domain as it is with it, as its
 * A-label through the instance that hides it. */
static void test_smtputf8(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    email_message_t *m = test_message("a@example.org", "j\xc3\xb6rg@" BUCHER, "utf8", "x\n");
    email_server_t srv = settings(&fx.full, NULL);
    char *json = send_and_record(&fx.full, &srv, m, "Subject: utf8");
    assert_has(json, "\"j\\u00f6rg@" BUCHER_JSON "\"");
    assert_has(json, "\"smtputf8\": true");
    free(json);
    email_message_free(m);

    m = test_message("a@" BUCHER, "info@" BUCHER, "idn", "x\n");
    srv = settings(&fx.ascii, NULL);
    json = send_and_record(&fx.ascii, &srv, m, "Subject: idn");
    assert_has(json, "\"mail_from\": \"a@" BUCHER_ACE "\"");
    assert_has(json, "\"info@" BUCHER_ACE "\"");
    assert_has(json, "\"smtputf8\": false");
    free(json);
    email_message_free(m);
}

/* STARTTLS with postfix's certificate from the test CA, verified; postfix logs the TLS. */
static void test_starttls(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    char *ca = path_in(fx.dir, "ca.pem"), *log = path_in(fx.dir, "tls.log");
    email_server_t srv = settings(&fx.full, log);
    srv.security = EMAIL_SECURITY_STARTTLS;
    srv.accept_unsecure_connection = false;
    srv.ca_file = ca;
    email_message_t *m = test_message("a@example.org", "b@example.org", "tls1", "x\n");
    free(send_and_record(&fx.full, &srv, m, "Subject: tls1"));
    char *text = test_read_file(log, NULL);
    assert_has(text, "STARTTLS");
    free(text);
    free(wait_maillog(&fx.full, "TLS connection established from"));
    email_message_free(m);
    free(ca);
    free(log);
}

/* Postfix's refusal with its enhanced status code, in the status and in the library's log. */
static void test_enhanced_refusal(void **state)
{
    (void)state;
    SKIP_IF_NO_POSTFIX();
    char *log = path_in(fx.dir, "refusal.log");
    email_server_t srv = settings(&fx.full, log);
    email_transporter_t *t = email_transporter_new(&srv);
    email_message_t *m = test_message("a@example.org", REFUSED, "refused", "x\n");
    email_status_t st;
    assert_int_equal(email_transporter_send(t, m, &st), EMAIL_ERECIPIENTS);
    assert_int_equal(st.rejected, 1);
    int code = 0;
    assert_string_equal(email_status_recipient(&st, 0, &code), REFUSED);
    assert_int_equal(code, 550);
    assert_string_equal(st.enhanced_code, "5.1.1");
    assert_has(st.status_text, "550 5.1.1 <" REFUSED ">: Recipient address rejected");
    email_status_clear(&st);
    email_transporter_free(t);
    char *text = test_read_file(log, NULL);
    assert_has(text, "550 5.1.1");
    free(text);
    email_message_free(m);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        LOOP_IDLE_TEST(test_stream),           LOOP_IDLE_TEST(test_stream_refusal),
        LOOP_IDLE_TEST(test_stream_too_large), LOOP_IDLE_TEST(test_stream_421),
        LOOP_IDLE_TEST(test_stream_data),      LOOP_IDLE_TEST(test_pool),
        LOOP_IDLE_TEST(test_dsn),              LOOP_IDLE_TEST(test_smtputf8),
        LOOP_IDLE_TEST(test_starttls),         LOOP_IDLE_TEST(test_enhanced_refusal),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    email_shutdown();
    return fx.skipped ? TEST_SKIP : rc;
}
