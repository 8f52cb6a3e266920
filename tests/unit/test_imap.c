/*
 * Unit tests for the sans-I/O IMAP engine (lib/imap*.c): scripted server transcripts go in; what
 * the engine writes, the events it reports, the log it keeps and what each command receives are
 * checked byte for byte. Hostile servers too: STARTTLS injection, PREAUTH without TLS, a 4 GB
 * literal, a nesting bomb, a drop in the middle of a literal.
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

#include "imap.h"
#include "status.h"
#include "util.h"

typedef struct session {
    imap_engine_t *e;
    email_buf_t events, log, out;
} session_t;

typedef struct tcmd {
    imap_cmd_t cmd;
    session_t *s;
    const char *name;
    email_buf_t got;     /* items "seq uid size flags;" and body bytes "[uid:...]" */
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
    email__buf_printf(&((session_t *)ud)->log, "%c: %s\n", kind, text);
}

static void ev_ready(void *ud) { email__buf_puts(&((session_t *)ud)->events, "ready\n"); }
static void ev_starttls(void *ud) { email__buf_puts(&((session_t *)ud)->events, "starttls\n"); }

static void ev_closed(void *ud, const email_status_t *why)
{
    email__buf_printf(&((session_t *)ud)->events, "closed %s\n", email_error_name(why->error));
}

static void mb_exists(void *ud, uint32_t n)
{
    email__buf_printf(&((session_t *)ud)->events, "exists %u\n", n);
}

static void mb_expunged(void *ud, uint32_t seq)
{
    email__buf_printf(&((session_t *)ud)->events, "expunged %u\n", seq);
}

static void mb_fetched(void *ud, uint32_t seq, uint32_t uid, const char *flags)
{
    email__buf_printf(&((session_t *)ud)->events, "fetched %u %u %s\n", seq, uid,
                      flags ? flags : "-");
}

static imap_engine_config_t config(void)
{
    return (imap_engine_config_t){
        .creds = {.user = "fred", .password = "se\"cret"},
        .allow_cleartext_auth = true,
        .mailbox = {.exists = mb_exists, .expunged = mb_expunged, .fetched = mb_fetched}};
}

static void start(session_t *s, const imap_engine_config_t *cfg)
{
    static const engine_events_t ev = {
        .log = ev_log, .ready = ev_ready, .starttls = ev_starttls, .closed = ev_closed};
    memset(s, 0, sizeof *s);
    email__buf_init(&s->events);
    email__buf_init(&s->log);
    email__buf_init(&s->out);
    s->e = email__imap_engine_new(cfg, &ev, s);
    assert_non_null(s->e);
}

static void stop(session_t *s)
{
    email__imap_engine_free(s->e);
    email__buf_free(&s->events);
    email__buf_free(&s->log);
    email__buf_free(&s->out);
}

static const char *take(session_t *s)
{
    email__buf_reset(&s->out);
    const char *data;
    size_t n;
    while ((n = email__imap_engine_take(s->e, &data)) > 0) {
        email__buf_append(&s->out, data, n);
        email__imap_engine_written(s->e, n);
    }
    return str(&s->out);
}

static int feed(session_t *s, const char *data)
{
    return email__imap_engine_feed(s->e, data, strlen(data));
}

/* Feeds in pieces of `piece` bytes: every boundary of lines and literals is crossed. */
static int feed_pieces(session_t *s, const char *data, size_t piece)
{
    int rc = 0;
    size_t n = strlen(data);
    for (size_t i = 0; i < n && !rc; i += piece)
        rc = email__imap_engine_feed(s->e, data + i, n - i < piece ? n - i : piece);
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

static int on_body(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->got, "[%u:", uid);
    email__buf_append(&t->got, data, n);
    email__buf_puts(&t->got, "]");
    return 0;
}

/* Body pieces of one message joined: "[uid:" once per message. */
static int on_body_joined(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    tcmd_t *t = cmd->user;
    email__buf_append(&t->got, data, n);
    (void)uid;
    return 0;
}

static int on_item(imap_cmd_t *cmd, uint32_t seq, uint32_t uid, uint64_t size, const char *flags)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->got, "%u %u %" PRIu64 " %s;", seq, uid, size, flags ? flags : "-");
    return 0;
}

static void on_done(imap_cmd_t *cmd)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->s->events, "done %s %s %d %s%s%s\n", t->name,
                      cmd->status.success ? "ok" : "failed", cmd->status.status,
                      email_error_name(cmd->status.error), cmd->status.enhanced_code[0] ? " " : "",
                      cmd->status.enhanced_code);
}

static void submit(session_t *s, tcmd_t *t, const char *name, imap_cmd_t cmd)
{
    memset(t, 0, sizeof *t);
    email__buf_init(&t->got);
    t->s = s;
    t->name = name;
    t->cmd = cmd;
    if (!t->cmd.body)
        t->cmd.body = on_body;
    t->cmd.item = on_item;
    t->cmd.done = on_done;
    t->cmd.user = t;
    assert_int_equal(email__imap_engine_submit(s->e, &t->cmd), 0);
}

#define GREETING "* OK IMAP4rev1 ready\r\n"
#define CAPS "* CAPABILITY IMAP4rev1\r\n"

/* Greeting, CAPABILITY, LOGIN (the password quoted and escaped, "****" in the log). */
static void login(session_t *s, const char *caps)
{
    expect(s, GREETING, "A1 CAPABILITY\r\n");
    expect(s, caps, "");
    expect(s, "A1 OK done\r\n", "A2 LOGIN \"fred\" \"se\\\"cret\"\r\n");
    expect(s, "A2 OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
}

static void test_login(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, "* CAPABILITY IMAP4rev1 LITERAL+\r\n");
    assert_true(email__imap_engine_caps(s.e) & IMAP_CAP_UIDPLUS);
    assert_string_equal(str(&s.log), "S: * OK IMAP4rev1 ready\nC: A1 CAPABILITY\n"
                                     "S: * CAPABILITY IMAP4rev1 LITERAL+\nS: A1 OK done\n"
                                     "C: A2 LOGIN \"fred\" ****\n"
                                     "S: A2 OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\n");
    email__imap_engine_quit(s.e);
    expect(&s, "", "A3 LOGOUT\r\n");
    assert_true(email__imap_engine_quitting(s.e));
    expect(&s, "* BYE bye\r\nA3 OK done\r\n", "");
    EXPECT_EVENTS(&s, "closed EMAIL_OK\n");
    stop(&s);
}

/* A password that cannot be quoted goes as a literal: synchronising (awaits "+") without
 * LITERAL+, inline with it; masked in the log either way. */
static void test_login_literal(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    cfg.creds.password = "p\xc3\xa4ss";
    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1] hi\r\n", "A1 LOGIN \"fred\" {5}\r\n");
    expect(&s, "+ go on\r\n", "p\xc3\xa4ss\r\n");
    expect(&s, "A1 OK in\r\n", "");
    assert_non_null(strstr(str(&s.log), "C: A1 LOGIN \"fred\" {5} ****\n"));
    assert_null(strstr(str(&s.log), "ss"));
    stop(&s);

    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n",
           "A1 LOGIN \"fred\" {5+}\r\np\xc3\xa4ss\r\n");
    stop(&s);
}

/* AUTHENTICATE PLAIN with SASL-IR inline; without SASL-IR after the first "+". */
static void test_authenticate(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    cfg.creds.password = "pw";
    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n",
           "A1 AUTHENTICATE PLAIN AGZyZWQAcHc=\r\n");
    expect(&s, "A1 OK\r\n", "");
    EXPECT_EVENTS(&s, "ready\n");
    assert_non_null(strstr(str(&s.log), "C: A1 AUTHENTICATE PLAIN ****\n"));
    stop(&s);

    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", "A1 AUTHENTICATE PLAIN\r\n");
    expect(&s, "+ \r\n", "AGZyZWQAcHc=\r\n");
    expect(&s, "A1 NO [AUTHENTICATIONFAILED] bad\r\n", "A2 LOGOUT\r\n");
    assert_int_equal(feed(&s, "A2 OK\r\n"), EMAIL_EAUTH);
    EXPECT_EVENTS(&s, "closed EMAIL_EAUTH\n");
    assert_null(strstr(str(&s.log), "AGZyZWQAcHc="));
    stop(&s);
}

/* Bytes after "A2 OK" to STARTTLS in the same read are refused (CVE-2020-15953 class). */
static void test_starttls_injection(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    cfg.starttls = IMAP_TLS_REQUIRED;
    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "A1 STARTTLS\r\n");
    assert_int_equal(feed(&s, "A1 OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
                     EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "starttls\nclosed EMAIL_EPROTO\n");
    assert_non_null(strstr(email__imap_engine_status(s.e)->status_text, "injection"));
    stop(&s);

    /* the same without the injection: CAPABILITY again after the handshake */
    start(&s, &cfg);
    expect(&s, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "A1 STARTTLS\r\n");
    expect(&s, "A1 OK begin TLS\r\n", "");
    email__imap_engine_tls_established(s.e);
    assert_string_equal(take(&s), "A2 CAPABILITY\r\n");
    assert_int_equal(email__imap_engine_caps(s.e), 0);
    stop(&s);
}

/* A PREAUTH greeting on a plain connection when TLS is required ends the session. */
static void test_preauth(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    cfg.starttls = IMAP_TLS_REQUIRED;
    start(&s, &cfg);
    assert_int_equal(feed(&s, "* PREAUTH welcome, no login needed\r\n"), EMAIL_ETLSREQUIRED);
    EXPECT_EVENTS(&s, "closed EMAIL_ETLSREQUIRED\n");
    assert_string_equal(take(&s), "");
    stop(&s);

    cfg.starttls = IMAP_TLS_IF_OFFERED;
    start(&s, &cfg);
    expect(&s, "* PREAUTH welcome\r\n", "");
    EXPECT_EVENTS(&s, "ready\n");
    stop(&s);
}

#define SELECT_REPLY                                                                              \
    "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"                    \
    "* OK [UIDNEXT 9] next\r\n* FLAGS (\\Seen \\Deleted)\r\nA3 OK [READ-WRITE] selected\r\n"

static void test_select_search(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t sel, search, search8;
    submit(&s, &sel, "select", (imap_cmd_t){.kind = IMAP_SELECT, .mailbox = "INBOX"});
    submit(&s, &search, "search", (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "UNSEEN"});
    assert_string_equal(take(&s), "A3 SELECT \"INBOX\"\r\n"); /* SELECT goes alone */
    expect(&s, SELECT_REPLY, "A4 UID SEARCH UNSEEN\r\n");
    EXPECT_EVENTS(&s, "exists 3\ndone select ok 1 EMAIL_OK READ-WRITE\n");
    assert_int_equal(email__imap_engine_exists(s.e), 3);
    assert_int_equal(email__imap_engine_uidvalidity(s.e), 3857529045u);
    assert_int_equal(email__imap_engine_uidnext(s.e), 9);
    submit(&s, &search8, "search8",
           (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "SUBJECT", .text = "caf\xc3\xa9"});
    assert_string_equal(take(&s), "A5 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\n");
    expect(&s, "* SEARCH 4 7 8\r\nA4 OK done\r\n", "");
    expect(&s, "+ ok\r\n", "caf\xc3\xa9\r\n");
    expect(&s, "* SEARCH\r\nA5 OK done\r\n", "");
    EXPECT_EVENTS(&s, "done search ok 1 EMAIL_OK\ndone search8 ok 1 EMAIL_OK\n");
    assert_string_equal(str(&search.got), "0 4 0 -;0 7 0 -;0 8 0 -;");
    assert_string_equal(str(&search8.got), "");
    email__buf_free(&sel.got);
    email__buf_free(&search.got);
    email__buf_free(&search8.got);
    stop(&s);
}

#define FETCH_REPLY                                                                               \
    "* 1 FETCH (UID 4 FLAGS (\\Seen) RFC822.SIZE 5 BODY[] {5}\r\nHello)\r\n"                      \
    "* 2 FETCH (UID 7 RFC822.SIZE 0 FLAGS () BODY[] {0}\r\n)\r\n"                                 \
    "* 3 FETCH (FLAGS (\\Seen \\Flagged) BODY[] {13}\r\nab\r\n{3}\r\n)(x) UID 8)\r\n"

/* Several UID FETCHes pipelined (and a chunked set); bodies streamed, kept apart by UID, whatever
 * the pieces the bytes come in. */
/* Two UID SEARCH in flight (as pipelined asynchronous calls send them): each gets its own
 * untagged SEARCH, also when the second's comes before the first's tagged OK (dovecot does). */
static void test_searches_pipelined(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t s1, s2;
    submit(&s, &s1, "s1", (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "ALL"});
    submit(&s, &s2, "s2", (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "ANSWERED"});
    assert_string_equal(take(&s), "A3 UID SEARCH ALL\r\nA4 UID SEARCH ANSWERED\r\n");
    expect(&s, "* SEARCH 1 2\r\n* SEARCH 2\r\nA3 OK\r\nA4 OK\r\n", "");
    EXPECT_EVENTS(&s, "done s1 ok 1 EMAIL_OK\ndone s2 ok 1 EMAIL_OK\n");
    assert_string_equal(str(&s1.got), "0 1 0 -;0 2 0 -;");
    assert_string_equal(str(&s2.got), "0 2 0 -;");
    email__buf_free(&s1.got);
    email__buf_free(&s2.got);
    stop(&s);
}

static void test_fetch_pipelined(void **state)
{
    (void)state;
    for (size_t piece = 1; piece <= 300; piece += piece < 20 ? 1 : 37) {
        session_t s;
        imap_engine_config_t cfg = config();
        start(&s, &cfg);
        login(&s, CAPS);
        tcmd_t f1, f2;
        static const uint32_t a[] = {4, 7}, b[] = {8};
        submit(&s, &f1, "f1", (imap_cmd_t){.kind = IMAP_FETCH, .uids = a, .nuids = 2,
                                           .items = IMAP_F_FLAGS | IMAP_F_SIZE | IMAP_F_BODY,
                                           .body = on_body_joined});
        submit(&s, &f2, "f2", (imap_cmd_t){.kind = IMAP_FETCH, .uids = b, .nuids = 1,
                                           .items = IMAP_F_BODY, .body = on_body_joined});
        assert_string_equal(take(&s), "A3 UID FETCH 4,7 (UID FLAGS RFC822.SIZE BODY.PEEK[])\r\n"
                                      "A4 UID FETCH 8 (UID BODY.PEEK[])\r\n");
        assert_int_equal(feed_pieces(&s, FETCH_REPLY "A3 OK\r\nA4 OK\r\n", piece), 0);
        EXPECT_EVENTS(&s, "done f1 ok 1 EMAIL_OK\ndone f2 ok 1 EMAIL_OK\n");
        assert_string_equal(str(&f1.got), "Hello1 4 5 \\Seen;2 7 0 ;ab\r\n{3}\r\n)(x)");
        /* message 3's UID comes after its body: the oldest FETCH took the bytes, the item
         * went by UID */
        assert_string_equal(str(&f2.got), "3 8 0 \\Seen \\Flagged;");
        email__buf_free(&f1.got);
        email__buf_free(&f2.got);
        stop(&s);
    }
}

/* A long UID list goes in several tagged chunks under the line cap; done once all answered. */
static void test_fetch_chunks(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    enum { N = 3000 };
    uint32_t *uids = malloc(N * sizeof *uids);
    for (uint32_t i = 0; i < N; i++)
        uids[i] = 2 * i + 1; /* no ranges */
    tcmd_t f;
    submit(&s, &f, "f", (imap_cmd_t){.kind = IMAP_FETCH, .uids = uids, .nuids = N,
                                     .items = IMAP_F_FLAGS});
    const char *out = take(&s);
    unsigned lines = 0;
    for (const char *p = out; (p = strstr(p, "\r\n")); p += 2)
        lines++;
    assert_true(lines >= 2);
    const char *line = out;
    for (unsigned i = 0; i < lines; i++) {
        const char *end = strstr(line, "\r\n");
        assert_true(end - line <= IMAP_MAX_COMMAND);
        line = end + 2;
    }
    char reply[64];
    for (unsigned i = 0; i < lines; i++) {
        EXPECT_EVENTS(&s, "");
        snprintf(reply, sizeof reply, "A%u OK\r\n", 3 + i);
        expect(&s, reply, "");
    }
    EXPECT_EVENTS(&s, "done f ok 1 EMAIL_OK\n");
    free(uids);
    email__buf_free(&f.got);
    stop(&s);
}

/* An untagged EXPUNGE between FETCH responses is applied; the FETCH goes on by UID. */
static void test_expunge_during_fetch(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t sel, f;
    submit(&s, &sel, "select", (imap_cmd_t){.kind = IMAP_SELECT, .mailbox = "INBOX"});
    expect(&s, "", "A3 SELECT \"INBOX\"\r\n");
    expect(&s, SELECT_REPLY, "");
    submit(&s, &f, "f", (imap_cmd_t){.kind = IMAP_FETCH, .items = IMAP_F_BODY});
    assert_string_equal(take(&s), "A4 UID FETCH 1:* (UID BODY.PEEK[])\r\n");
    expect(&s, "* 1 FETCH (UID 4 BODY[] {2}\r\nab)\r\n* 2 EXPUNGE\r\n"
               "* 2 FETCH (UID 8 BODY[] {2}\r\ncd)\r\n* 1 FETCH (FLAGS (\\Deleted))\r\n"
               "A4 OK\r\n", "");
    EXPECT_EVENTS(&s, "exists 3\ndone select ok 1 EMAIL_OK READ-WRITE\nexpunged 2\n"
                      "fetched 1 0 \\Deleted\ndone f ok 1 EMAIL_OK\n");
    assert_int_equal(email__imap_engine_exists(s.e), 2);
    assert_string_equal(str(&f.got), "[4:ab]1 4 0 -;[8:cd]2 8 0 -;");
    email__buf_free(&sel.got);
    email__buf_free(&f.got);
    stop(&s);
}

/* A 4 GB literal announced ends the session at once, with a clear error; nothing allocated. */
static void test_huge_literal(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t f;
    submit(&s, &f, "f", (imap_cmd_t){.kind = IMAP_FETCH, .items = IMAP_F_BODY});
    take(&s);
    assert_int_equal(feed(&s, "* 1 FETCH (UID 4 BODY[] {4294967296}\r\nxx"), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "done f failed 0 EMAIL_EPROTO\nclosed EMAIL_EPROTO\n");
    assert_string_equal(email__imap_engine_status(s.e)->status_text,
                        "the server announced a literal of 4294967296 bytes (the limit is "
                        "1073741824)");
    email__buf_free(&f.got);
    stop(&s);
}

/* A BODYSTRUCTURE nesting bomb ends with a clear error. */
static void test_nesting_bomb(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t f;
    submit(&s, &f, "f", (imap_cmd_t){.kind = IMAP_FETCH, .items = IMAP_F_FLAGS});
    take(&s);
    email_buf_t bomb;
    email__buf_init(&bomb);
    email__buf_puts(&bomb, "* 1 FETCH (UID 4 BODYSTRUCTURE ");
    for (int i = 0; i < 100000; i++)
        email__buf_putc(&bomb, '(');
    email__buf_puts(&bomb, "\r\n");
    assert_int_equal(feed(&s, str(&bomb)), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "done f failed 0 EMAIL_EPROTO\nclosed EMAIL_EPROTO\n");
    assert_string_equal(email__imap_engine_status(s.e)->status_text,
                        "malformed FETCH response for message 1: lists nested too deep");
    email__buf_free(&bomb);
    email__buf_free(&f.got);
    stop(&s);
}

/* The connection drops in the middle of a literal: the FETCH fails, the reason says so. */
static void test_drop_in_literal(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t f;
    submit(&s, &f, "f", (imap_cmd_t){.kind = IMAP_FETCH, .items = IMAP_F_BODY});
    take(&s);
    expect(&s, "* 1 FETCH (UID 4 BODY[] {100}\r\npart of it", "");
    email__imap_engine_abort(s.e, EMAIL_ECLOSED, NULL);
    EXPECT_EVENTS(&s, "done f failed 0 EMAIL_ECLOSED\nclosed EMAIL_ECLOSED\n");
    assert_string_equal(email__imap_engine_status(s.e)->status_text,
                        "the connection ended in the middle of a response");
    assert_string_equal(str(&f.got), "[4:part of it]");
    email__buf_free(&f.got);
    stop(&s);
}

static int on_listed(imap_cmd_t *cmd, const char *attributes, char delimiter, const char *name)
{
    tcmd_t *t = cmd->user;
    email__buf_printf(&t->got, "[%s|%c|%s]", attributes, delimiter ? delimiter : '-', name);
    return 0;
}

/* LIST: attributes, a delimiter or NIL, names as atoms, quoted strings (unescaped) and
 * literals; RECENT kept with the selected box. */
static void test_list_and_recent(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t list, sel;
    submit(&s, &list, "list",
           (imap_cmd_t){.kind = IMAP_LIST, .mailbox = "*", .listed = on_listed});
    assert_string_equal(take(&s), "A3 LIST \"\" \"*\"\r\n");
    expect(&s, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
               "* LIST (\\Noselect \\HasChildren) \"/\" \"Work \\\"x\\\"\"\r\n"
               "* LIST () NIL {5}\r\nab cd\r\n"
               "A3 OK done\r\n", "");
    assert_string_equal(str(&list.got), "[\\HasNoChildren|/|INBOX]"
                                        "[\\Noselect \\HasChildren|/|Work \"x\"][|-|ab cd]");
    submit(&s, &sel, "select", (imap_cmd_t){.kind = IMAP_EXAMINE, .mailbox = "INBOX"});
    assert_string_equal(take(&s), "A4 EXAMINE \"INBOX\"\r\n");
    expect(&s, "* 3 EXISTS\r\n* 2 RECENT\r\nA4 OK [READ-ONLY] done\r\n", "");
    assert_int_equal(email__imap_engine_recent(s.e), 2);
    EXPECT_EVENTS(&s, "done list ok 1 EMAIL_OK\nexists 3\ndone select ok 1 EMAIL_OK READ-ONLY\n");
    assert_int_equal(feed(&s, "* LIST (\\Noselect\r\n"), 0); /* no LIST in flight: ignored */
    email__buf_free(&list.got);
    email__buf_free(&sel.got);
    stop(&s);
}

/* A command answered before the "+" its synchronising literal awaits: the literal never goes,
 * the next command does, and a late "+" is a protocol error (found by fuzz_imap). */
static void test_literal_answered_early(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    tcmd_t search, fetch;
    static const uint32_t uids[] = {4};
    submit(&s, &search, "search", (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "TEXT",
                                               .text = "Gr\xc3\xbc\xc3\x9f" "e"});
    assert_string_equal(take(&s), "A3 UID SEARCH CHARSET UTF-8 TEXT {7}\r\n");
    submit(&s, &fetch, "fetch", (imap_cmd_t){.kind = IMAP_FETCH, .uids = uids, .nuids = 1,
                                             .items = IMAP_F_FLAGS});
    expect(&s, "A3 NO [BADCHARSET] no\r\n", "A4 UID FETCH 4 (UID FLAGS)\r\n");
    EXPECT_EVENTS(&s, "done search failed -1 EMAIL_OK BADCHARSET\n");
    assert_int_equal(feed(&s, "+ go on\r\n"), EMAIL_EPROTO);
    assert_string_equal(take(&s), "");
    EXPECT_EVENTS(&s, "done fetch failed 0 EMAIL_EPROTO\nclosed EMAIL_EPROTO\n");
    email__buf_free(&search.got);
    email__buf_free(&fetch.got);
    stop(&s);
}

/* An OK to CAPABILITY without the list: whether LOGIN is disabled is unknown, so no LOGIN (found
 * by fuzz_imap). */
static void test_capability_without_list(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    expect(&s, GREETING, "A1 CAPABILITY\r\n");
    assert_int_equal(feed(&s, "A1 OK done\r\n"), EMAIL_EPROTO);
    assert_string_equal(take(&s), "");
    EXPECT_EVENTS(&s, "closed EMAIL_EPROTO\n");
    assert_non_null(strstr(email__imap_engine_status(s.e)->status_text, "capability list"));
    stop(&s);
}

/* uids given to a command that takes none: one line, not a loop (found by fuzz_imap). */
static void test_uids_ignored(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    static const uint32_t uids[] = {4, 9};
    tcmd_t expunge;
    submit(&s, &expunge, "expunge", (imap_cmd_t){.kind = IMAP_EXPUNGE, .uids = uids, .nuids = 2});
    assert_string_equal(take(&s), "A3 EXPUNGE\r\n");
    expect(&s, "A3 OK\r\n", "");
    EXPECT_EVENTS(&s, "done expunge ok 1 EMAIL_OK\n");
    email__buf_free(&expunge.got);
    stop(&s);
}

/* A line over the cap, an answer with an unknown tag: protocol errors. */
static void test_protocol_errors(void **state)
{
    (void)state;
    session_t s;
    imap_engine_config_t cfg = config();
    start(&s, &cfg);
    login(&s, CAPS);
    assert_int_equal(feed(&s, "A77 OK who asked\r\n"), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "closed EMAIL_EPROTO\n");
    stop(&s);

    start(&s, &cfg);
    char *big = malloc(IMAP_MAX_LINE + 10);
    memset(big, 'x', IMAP_MAX_LINE + 9);
    big[IMAP_MAX_LINE + 9] = '\0';
    assert_int_equal(feed(&s, big), EMAIL_EPROTO);
    EXPECT_EVENTS(&s, "closed EMAIL_EPROTO\n");
    free(big);
    stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_literal),
        cmocka_unit_test(test_authenticate),
        cmocka_unit_test(test_starttls_injection),
        cmocka_unit_test(test_preauth),
        cmocka_unit_test(test_select_search),
        cmocka_unit_test(test_searches_pipelined),
        cmocka_unit_test(test_fetch_pipelined),
        cmocka_unit_test(test_fetch_chunks),
        cmocka_unit_test(test_expunge_during_fetch),
        cmocka_unit_test(test_huge_literal),
        cmocka_unit_test(test_nesting_bomb),
        cmocka_unit_test(test_drop_in_literal),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_list_and_recent),
        cmocka_unit_test(test_literal_answered_early),
        cmocka_unit_test(test_capability_without_list),
        cmocka_unit_test(test_uids_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
