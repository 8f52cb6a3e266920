/*
 * Unit tests for the sans-I/O POP3 engine (lib/pop3.c, lib/pop3_setup.c): scripted server
 * transcripts go in; what the engine writes, the events it reports, the log it keeps and what
 * each command receives are checked byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3.h"
#include "status.h"
#include "util.h"

typedef struct session {
    pop3_engine_t *e;
    email_buf_t events, log, out;
} session_t;

typedef struct tcmd {
    pop3_cmd_t cmd;
    session_t *s;
    const char *name;
    email_buf_t got;     /* body bytes, or "n size uid;" items */
    int fail_body;       /* returned by the body callback */
} tcmd_t;

static const char *str(email_buf_t *b)
{
    if (email__buf_putc(b, '\0'))
        return "";
    b->len--;
    return b->data;
}

static void ev_log(void *ud, char kind, const char *text)
{
    session_t *s = ud;
    email__buf_printf(&s->log, "%c: %s\n", kind, text);
}

static void ev_ready(void *ud)
{
    email__buf_puts(&((session_t *)ud)->events, "ready\n");
}

static void ev_starttls(void *ud)
{
    email__buf_puts(&((session_t *)ud)->events, "starttls\n");
}

static void ev_closed(void *ud, const email_status_t *why)
{
    email__buf_printf(&((session_t *)ud)->events, "closed %s\n", email_error_name(why->error));
}

static void start(session_t *s, const pop3_engine_config_t *cfg)
{
    static const engine_events_t ev = {
        .log = ev_log, .ready = ev_ready, .starttls = ev_starttls, .closed = ev_closed};
    memset(s, 0, sizeof *s);
    email__buf_init(&s->events);
    email__buf_init(&s->log);
    email__buf_init(&s->out);
    s->e = email__pop3_engine_new(cfg, &ev, s);
    assert_non_null(s->e);
}

static void stop(session_t *s)
{
    email__pop3_engine_free(s->e);
    email__buf_free(&s->events);
    email__buf_free(&s->log);
    email__buf_free(&s->out);
}

static pop3_engine_config_t config(void)
{
    return (pop3_engine_config_t){.creds = {.user = "mrose", .password = "tanstaaf"},
                                  .allow_cleartext_auth = true};
}

/* Everything the engine has to write, reported written. */
static const char *take(session_t *s)
{
    email__buf_reset(&s->out);
    const char *data;
    size_t n;
    while ((n = email__pop3_engine_take(s->e, &data)) > 0) {
        email__buf_append(&s->out, data, n);
        email__pop3_engine_written(s->e, n);
    }
    return str(&s->out);
}

static int feed(session_t *s, const char *data)
{
    return email__pop3_engine_feed(s->e, data, strlen(data));
}

/* Feeds one byte at a time: every boundary of lines and bodies is crossed. */
static int feed_bytewise(session_t *s, const char *data)
{
    int rc = 0;
    for (size_t i = 0; data[i] && !rc; i++)
        rc = email__pop3_engine_feed(s->e, data + i, 1);
    return rc;
}

#define EXPECT_EVENTS(s, text)                                                                     \
    do {                                                                                           \
        assert_string_equal(str(&(s)->events), text);                                              \
        email__buf_reset(&(s)->events);                                                            \
    } while (0)

static void expect(session_t *s, const char *server, const char *client)
{
    assert_int_equal(feed(s, server), 0);
    assert_string_equal(take(s), client);
}

static int on_body(pop3_cmd_t *cmd, const char *data, size_t n)
{
    tcmd_t *t = cmd->user;
    email__buf_append(&t->got, data, n);
    return t->fail_body;
}

static int on_item(pop3_cmd_t *cmd, unsigned number, uint64_t size, const char *uid)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->got, "%u %" PRIu64 " %s;", number, size, uid ? uid : "-");
    return 0;
}

static void on_done(pop3_cmd_t *cmd)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->s->events, "done %s %s %d %s%s%s\n", t->name,
                      cmd->status.success ? "ok" : "failed", cmd->status.status,
                      email_error_name(cmd->status.error), cmd->status.enhanced_code[0] ? " " : "",
                      cmd->status.enhanced_code);
}

static void submit(session_t *s, tcmd_t *t, const char *name, enum pop3_kind kind, unsigned n)
{
    memset(t, 0, sizeof *t);
    email__buf_init(&t->got);
    t->s = s;
    t->name = name;
    t->cmd = (pop3_cmd_t){.kind = kind, .number = n, .body = on_body, .item = on_item,
                          .done = on_done, .user = t};
    assert_int_equal(email__pop3_engine_submit(s->e, &t->cmd), 0);
}

#define GREETING "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
#define CAPA_PLAIN "+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n"
#define CAPA_PIPE "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n"

/* USER/PASS when no SASL is offered and the greeting has no timestamp; PASS masked. */
static void test_user_pass(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    expect(&s, "+OK hello\r\n", "CAPA\r\n");
    expect(&s, CAPA_PLAIN, "USER mrose\r\n");
    expect(&s, "+OK\r\n", "PASS tanstaaf\r\n");
    EXPECT_EVENTS(&s, "");
    expect(&s, "+OK maildrop has 2 messages\r\n", "");
    EXPECT_EVENTS(&s, "ready\n");
    assert_string_equal(str(&s.log), "S: +OK hello\nC: CAPA\nS: +OK\nS: USER\nS: UIDL\nS: TOP\n"
                                     "C: USER mrose\nS: +OK\nC: PASS ****\n"
                                     "S: +OK maildrop has 2 messages\n");
    email__pop3_engine_quit(s.e);
    expect(&s, "", "QUIT\r\n");
    assert_true(email__pop3_engine_quitting(s.e));
    expect(&s, "+OK bye\r\n", "");
    EXPECT_EVENTS(&s, "closed EMAIL_OK\n");
    stop(&s);
}

/* RFC 1939 section 7's own example digest; the log shows "****" in its place. */
static void test_apop(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    expect(&s, GREETING, "CAPA\r\n");
    expect(&s, "-ERR no CAPA here\r\n", "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    expect(&s, "+OK mrose's maildrop has 2 messages\r\n", "");
    EXPECT_EVENTS(&s, "ready\n");
    assert_non_null(strstr(str(&s.log), "C: APOP mrose ****\n"));
    assert_null(strstr(str(&s.log), "c4c9334b"));
    stop(&s);
}

/* SASL PLAIN with its initial response masked; CRAM-MD5 (stronger) is chosen over APOP. */
static void test_sasl(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    expect(&s, "+OK hi\r\n", "CAPA\r\n");
    expect(&s, "+OK\r\nSASL PLAIN LOGIN\r\n.\r\n", "AUTH PLAIN AG1yb3NlAHRhbnN0YWFm\r\n");
    expect(&s, "+OK logged in\r\n", "");
    EXPECT_EVENTS(&s, "ready\n");
    assert_non_null(strstr(str(&s.log), "C: AUTH PLAIN ****\n"));
    stop(&s);

    start(&s, &cfg);
    expect(&s, GREETING, "CAPA\r\n");
    expect(&s, "+OK\r\nSASL CRAM-MD5\r\n.\r\n", "AUTH CRAM-MD5\r\n");
    /* RFC 2195's challenge; the answer is "mrose" and the HMAC, base64 */
    assert_int_equal(feed(&s, "+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"), 0);
    const char *answer = take(&s);
    assert_int_equal(strncmp(answer, "bXJvc2Ug", 8), 0);
    assert_non_null(strstr(str(&s.log), "C: ****\n"));
    expect(&s, "-ERR [AUTH] no\r\n", "QUIT\r\n");
    assert_int_equal(feed(&s, "+OK\r\n"), EMAIL_EAUTH);
    EXPECT_EVENTS(&s, "closed EMAIL_EAUTH\n");
    assert_int_equal(email__pop3_engine_status(s.e)->status, -1);
    stop(&s);
}

/* STLS: the bytes after "+OK" in the same read are an injection and end the session. */
static void test_stls_injection(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    cfg.stls = POP3_TLS_REQUIRED;
    start(&s, &cfg);
    expect(&s, "+OK hi\r\n", "CAPA\r\n");
    expect(&s, "+OK\r\nSTLS\r\nUSER\r\n.\r\n", "STLS\r\n");
    assert_int_equal(feed(&s, "+OK begin TLS\r\n+OK injected\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "starttls\nclosed EMAIL_EPROTO\n");
    stop(&s);

    /* the clean case: CAPA again after the handshake, its answers then trusted */
    start(&s, &cfg);
    expect(&s, "+OK hi\r\n", "CAPA\r\n");
    expect(&s, "+OK\r\nSTLS\r\nSASL PLAIN\r\n.\r\n", "STLS\r\n");
    expect(&s, "+OK begin TLS\r\n", "");
    EXPECT_EVENTS(&s, "starttls\n");
    email__pop3_engine_tls_established(s.e);
    assert_string_equal(take(&s), "CAPA\r\n");
    expect(&s, "+OK\r\nUSER\r\n.\r\n", "USER mrose\r\n");
    stop(&s);
}

/* STLS required: a server without it ends the session (QUIT first), never a fallback. */
static void test_stls_required_refused(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    cfg.stls = POP3_TLS_REQUIRED;
    start(&s, &cfg);
    expect(&s, "+OK hi\r\n", "CAPA\r\n");
    expect(&s, CAPA_PLAIN, "STLS\r\n");
    expect(&s, "-ERR not here\r\n", "QUIT\r\n");
    assert_int_equal(feed(&s, "+OK\r\n"), EMAIL_ETLSREQUIRED);
    EXPECT_EVENTS(&s, "closed EMAIL_ETLSREQUIRED\n");
    stop(&s);
}

/* No password in clear to a peer that is not loopback. */
static void test_no_cleartext(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    cfg.allow_cleartext_auth = false;
    start(&s, &cfg);
    expect(&s, GREETING, "CAPA\r\n");
    expect(&s, CAPA_PLAIN, "QUIT\r\n");
    assert_int_equal(feed(&s, "+OK\r\n"), EMAIL_EINSECURE);
    EXPECT_EVENTS(&s, "closed EMAIL_EINSECURE\n");
    stop(&s);
}

static void login(session_t *s, const char *capa)
{
    expect(s, "+OK hi\r\n", "CAPA\r\n");
    assert_int_equal(feed(s, capa), 0);
    take(s);
    if (strstr(capa, "SASL PLAIN"))
        expect(s, "+OK in\r\n", "");
    else {
        expect(s, "+OK\r\n", "PASS tanstaaf\r\n");
        expect(s, "+OK in\r\n", "");
    }
    EXPECT_EVENTS(s, "ready\n");
}

#define BODY1 "Subject: a\r\n\r\n..leading dot\r\n.\r\nend\r\n"
#define BODY1_WIRE "Subject: a\r\n\r\n...leading dot\r\n..\r\nend\r\n.\r\n"

/* PIPELINING: LIST, UIDL, RETR x2 and DELE x2 in one flight; the answers fed one byte at a time,
 * bodies unstuffed. */
static void test_pipelined(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPA_PIPE);
    tcmd_t t[6];
    submit(&s, &t[0], "list", POP3_LIST, 0);
    submit(&s, &t[1], "uidl", POP3_UIDL, 0);
    submit(&s, &t[2], "retr1", POP3_RETR, 1);
    submit(&s, &t[3], "retr2", POP3_RETR, 2);
    submit(&s, &t[4], "dele1", POP3_DELE, 1);
    submit(&s, &t[5], "dele2", POP3_DELE, 2);
    assert_string_equal(take(&s), "LIST\r\nUIDL\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\nDELE 2\r\n");
    assert_true(email__pop3_engine_waiting(s.e));
    assert_int_equal(feed_bytewise(&s, "+OK 2 messages\r\n1 36\r\n2 5\r\n.\r\n"
                                       "+OK\r\n1 u-1\r\n2 u-2\r\n.\r\n"
                                       "+OK 36 octets\r\n" BODY1_WIRE
                                       "+OK\r\nabc\r\n.\r\n"
                                       "+OK deleted\r\n-ERR [IN-USE] locked\r\n"), 0);
    EXPECT_EVENTS(&s, "done list ok 1 EMAIL_OK\ndone uidl ok 1 EMAIL_OK\n"
                      "done retr1 ok 1 EMAIL_OK\ndone retr2 ok 1 EMAIL_OK\n"
                      "done dele1 ok 1 EMAIL_OK\ndone dele2 failed -1 EMAIL_OK IN-USE\n");
    assert_string_equal(str(&t[0].got), "1 36 -;2 5 -;");
    assert_string_equal(str(&t[1].got), "1 0 u-1;2 0 u-2;");
    assert_string_equal(str(&t[2].got), BODY1);
    assert_string_equal(str(&t[3].got), "abc\r\n");
    assert_int_equal(t[2].cmd.bytes, strlen(BODY1));
    assert_false(email__pop3_engine_waiting(s.e));
    for (int i = 0; i < 6; i++)
        email__buf_free(&t[i].got);
    stop(&s);
}

/* Dots in a body's lines and at their starts, the answer cut in two at every place (the body
 * is handed over in runs between the lines that start with a dot, searched by their dots). */
#define BODY2 "a.b.c\r\n.x\r\n\r\n.\r\nQUJD.\r\n.\n..\r\n"
#define BODY2_WIRE "a.b.c\r\n..x\r\n\r\n..\r\nQUJD.\r\n..\n...\r\n.\r\n"

static void test_body_cut(void **state)
{
    (void)state;
    const char *wire = "+OK\r\n" BODY2_WIRE "+OK\r\nz.\r\n.\r\n";
    for (size_t cut = 0; cut <= strlen(wire); cut++) {
        session_t s;
        pop3_engine_config_t cfg = config();
        start(&s, &cfg);
        login(&s, CAPA_PIPE);
        tcmd_t t[2];
        submit(&s, &t[0], "retr1", POP3_RETR, 1);
        submit(&s, &t[1], "retr2", POP3_RETR, 2);
        assert_string_equal(take(&s), "RETR 1\r\nRETR 2\r\n");
        assert_int_equal(email__pop3_engine_feed(s.e, wire, cut), 0);
        assert_int_equal(feed(&s, wire + cut), 0);
        EXPECT_EVENTS(&s, "done retr1 ok 1 EMAIL_OK\ndone retr2 ok 1 EMAIL_OK\n");
        assert_string_equal(str(&t[0].got), BODY2);
        assert_string_equal(str(&t[1].got), "z.\r\n");
        email__buf_free(&t[0].got);
        email__buf_free(&t[1].got);
        stop(&s);
    }
}

/* Without PIPELINING one command at a time; STAT and LIST n are single-line. */
static void test_lockstep(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPA_PLAIN);
    tcmd_t t[3];
    submit(&s, &t[0], "stat", POP3_STAT, 0);
    submit(&s, &t[1], "list2", POP3_LIST, 2);
    submit(&s, &t[2], "rset", POP3_RSET, 0);
    email__pop3_engine_quit(s.e);
    assert_string_equal(take(&s), "STAT\r\n");
    expect(&s, "+OK 2 320\r\n", "LIST 2\r\n");
    expect(&s, "+OK 2 200\r\n", "RSET\r\n");
    expect(&s, "+OK\r\n", "QUIT\r\n");
    assert_int_equal(email__pop3_engine_submit(s.e, &t[0].cmd), EMAIL_ESHUTDOWN);
    expect(&s, "+OK bye\r\n", "");
    EXPECT_EVENTS(&s, "done stat ok 1 EMAIL_OK\ndone list2 ok 1 EMAIL_OK\n"
                      "done rset ok 1 EMAIL_OK\nclosed EMAIL_OK\n");
    assert_string_equal(str(&t[0].got), "2 320 -;");
    assert_string_equal(str(&t[1].got), "2 200 -;");
    for (int i = 0; i < 3; i++)
        email__buf_free(&t[i].got);
    stop(&s);
}

/* A line past the cap, a broken body and a dropped connection end the session; every command
 * gets its outcome. */
static void test_failures(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    char *longline = malloc(10000);
    memset(longline, 'x', 9999);
    longline[9999] = '\0';
    memcpy(longline, "+OK ", 4);
    assert_int_equal(feed(&s, longline), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "closed EMAIL_EPROTO\n");
    free(longline);
    stop(&s);

    start(&s, &cfg);
    login(&s, CAPA_PIPE);
    tcmd_t t[2];
    submit(&s, &t[0], "retr", POP3_RETR, 1);
    submit(&s, &t[1], "dele", POP3_DELE, 1);
    take(&s);
    assert_int_equal(feed(&s, "+OK\r\npart of a bo"), 0);
    email__pop3_engine_abort(s.e, EMAIL_ECLOSED, "the server closed the connection");
    EXPECT_EVENTS(&s, "done retr failed 0 EMAIL_ECLOSED\ndone dele failed 0 EMAIL_ECLOSED\n"
                      "closed EMAIL_ECLOSED\n");
    assert_string_equal(str(&t[0].got), "part of a bo");
    email__buf_free(&t[0].got);
    email__buf_free(&t[1].got);
    stop(&s);

    start(&s, &cfg);
    login(&s, CAPA_PIPE);
    submit(&s, &t[0], "retr", POP3_RETR, 1);
    t[0].fail_body = EMAIL_EIO;
    take(&s);
    assert_int_equal(feed(&s, "+OK\r\nline\r\n.\r\n"), EMAIL_EIO);
    EXPECT_EVENTS(&s, "done retr failed 0 EMAIL_EIO\nclosed EMAIL_EIO\n");
    email__buf_free(&t[0].got);
    stop(&s);
}

/* An answer nothing asked for is a protocol error. */
static void test_unsolicited(void **state)
{
    (void)state;
    session_t s;
    pop3_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPA_PLAIN);
    assert_int_equal(feed(&s, "+OK surprise\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "closed EMAIL_EPROTO\n");
    stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_pass),
        cmocka_unit_test(test_apop),
        cmocka_unit_test(test_sasl),
        cmocka_unit_test(test_stls_injection),
        cmocka_unit_test(test_stls_required_refused),
        cmocka_unit_test(test_no_cleartext),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_body_cut),
        cmocka_unit_test(test_lockstep),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_unsolicited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
