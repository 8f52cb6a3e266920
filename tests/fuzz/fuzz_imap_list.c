/*
 * libFuzzer target: the sans-I/O IMAP engine (lib/imap.c, lib/imap_setup.c, lib/imap_cmd.c,
 * lib/imap_parse.c), with the fuzzer as the server, every command kind the transporter uses
 * (LIST included, which fuzz_imap's engine part does not submit); fuzz_imap's model of the wire
 * is the finer one, this one checks the properties below.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0  credentials (bit 0: a password, else a token), STARTTLS policy (bits 1-2),
 *           tls_active (3), allow_cleartext_auth (4), the TLS handshake is reported done when
 *           asked (5), LOGOUT is asked at once (6), window 1 (7)
 *   byte 1  mechanism asked for (bits 0-2: none, PLAIN, LOGIN, CRAM-MD5, XOAUTH2,
 *           SCRAM-SHA-256, OAUTHBEARER, SCRAM-SHA-1), commands (bits 3-5: 0..7)
 *   byte 2  how the server bytes are cut: 0 whole, 1..127 pieces of that size, 128.. pieces of
 *           1..(b-127) bytes from a generator
 *   per command: kind (bits 0-3, modulo 9), UIDs (bits 4-6: how many of a fixed list, also
 *           for the kinds that take none), the variant (bit 7: FETCH's header only, SEARCH's
 *           UTF-8 text, SELECT's UTF-8 name)
 *   the rest: what the server sends, fed in pieces; everything the engine writes is taken and
 *           reported written after each piece; at the end the connection is aborted.
 *
 * Properties checked:
 *   - every submitted command gets exactly one done, before closed; closed comes exactly once,
 *     and no callback after it;
 *   - every line written ends with CRLF and holds no other CR or LF, within the command cap
 *     (a literal's bytes included);
 *   - the password and the token never reach the log (in our lines); the password never reaches
 *     the wire in clear when neither TLS is on nor cleartext allowed;
 *   - bodies never hold more bytes than the server sent; LIST names stay within their cap.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "imap.h"
#include "status.h"

#define PASSWORD "s3cr3t-PW"
#define TOKEN "t0k3n-XYZ"
#define MAX_CMDS 7

typedef struct harness {
    imap_engine_t *e;
    int nclosed;
    bool tls_asked;
    int ndone[MAX_CMDS];
    imap_cmd_t cmds[MAX_CMDS];
    uint64_t fed, body;
    bool cleartext_ok;
} harness_t;

static harness_t *H;
static const uint32_t uids[] = {1, 2, 3, 7, 8, 9, 4000000000u};

FUZZ_NOCOV static void ev_log(void *ud, char kind, const char *text)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "log after closed");
    FUZZ_CHECK(kind == 'S' || (!strstr(text, PASSWORD) && !strstr(text, TOKEN)),
               "secret in the log: %s", text);
}

static void ev_ready(void *ud)
{
    harness_t *h = ud;
    FUZZ_CHECK(h->nclosed == 0, "ready after closed");
}

static void ev_starttls(void *ud)
{
    ((harness_t *)ud)->tls_asked = true;
}

static void ev_closed(void *ud, const email_status_t *why)
{
    harness_t *h = ud;
    (void)why;
    h->nclosed++;
    FUZZ_CHECK(h->nclosed == 1, "closed twice");
}

static int on_body(imap_cmd_t *cmd, uint32_t uid, const char *data, size_t n)
{
    (void)cmd;
    (void)uid;
    (void)data;
    H->body += n;
    FUZZ_CHECK(H->body <= H->fed, "bodies larger than the server's bytes");
    return 0;
}

static int on_item(imap_cmd_t *cmd, uint32_t seq, uint32_t uid, uint64_t size, const char *flags)
{
    (void)cmd;
    (void)seq;
    (void)uid;
    (void)size;
    FUZZ_CHECK(!flags || strlen(flags) < 1024, "flags too long");
    return 0;
}

static int on_listed(imap_cmd_t *cmd, const char *attributes, char delimiter, const char *name)
{
    (void)cmd;
    (void)delimiter;
    FUZZ_CHECK(strlen(attributes) < 512 && strlen(name) < 1024, "LIST data too long");
    return 0;
}

static void on_done(imap_cmd_t *cmd)
{
    harness_t *h = cmd->user;
    size_t i = (size_t)(cmd - h->cmds);
    FUZZ_CHECK(h->nclosed == 0, "done after closed");
    h->ndone[i]++;
    FUZZ_CHECK(h->ndone[i] == 1, "done twice");
}

FUZZ_NOCOV static void check_wire(harness_t *h, const char *data, size_t n)
{
    FUZZ_CHECK(h->cleartext_ok || !memmem(data, n, PASSWORD, strlen(PASSWORD)),
               "password in clear");
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            FUZZ_CHECK(i > start && data[i - 1] == '\r', "LF without CR");
            FUZZ_CHECK(i - start + 1 <= IMAP_MAX_COMMAND + 1100, "line too long");
            start = i + 1;
        } else if (data[i] == '\r') {
            FUZZ_CHECK(i + 1 < n && data[i + 1] == '\n', "CR alone");
        }
    }
    /* a command may stop after a synchronising literal's "{n}\r\n": always at a line's end */
    FUZZ_CHECK(start == n, "a partial line written");
}

static void drain(harness_t *h)
{
    const char *data;
    size_t n;
    while ((n = email__imap_engine_take(h->e, &data)) > 0) {
        check_wire(h, data, n);
        email__imap_engine_written(h->e, n);
    }
}

static imap_cmd_t command(harness_t *h, uint8_t c)
{
    enum imap_kind kind = (enum imap_kind)((c & 15) % (IMAP_LIST + 1));
    size_t n = (c >> 4) & 7;
    bool alt = c & 0x80;
    imap_cmd_t cmd = {.kind = kind, .uids = n ? uids : NULL, .nuids = n,
                      .body = on_body, .item = on_item, .listed = on_listed, .done = on_done,
                      .user = h};
    if (kind == IMAP_SELECT || kind == IMAP_EXAMINE)
        cmd.mailbox = alt ? "Bo\xc3\xaete" : "INBOX";
    else if (kind == IMAP_LIST)
        cmd.mailbox = "*";
    else if (kind == IMAP_SEARCH)
        cmd.criteria = alt ? "SUBJECT" : "UNSEEN", cmd.text = alt ? "caf\xc3\xa9" : NULL;
    else if (kind == IMAP_FETCH)
        cmd.items = IMAP_F_FLAGS | IMAP_F_SIZE | (alt ? IMAP_F_HEADER : IMAP_F_BODY);
    else if (kind == IMAP_STORE)
        cmd.store = "+FLAGS.SILENT (\\Seen)";
    else if (kind == IMAP_UID_EXPUNGE && !n)
        cmd.uids = uids, cmd.nuids = 1;
    return cmd;
}

static void setup(harness_t *h, fuzz_input_t *in, uint8_t b0, uint8_t b1)
{
    static const auth_mech_t mechs[] = {AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM_MD5,
                                        AUTH_XOAUTH2, AUTH_SCRAM_SHA256, AUTH_OAUTHBEARER,
                                        AUTH_SCRAM_SHA1};
    static const engine_events_t ev = {
        .log = ev_log, .ready = ev_ready, .starttls = ev_starttls, .closed = ev_closed};
    imap_engine_config_t cfg = {
        .creds = {.user = "user", .password = (b0 & 1) ? PASSWORD : NULL,
                  .token = (b0 & 1) ? NULL : TOKEN},
        .starttls = (b0 >> 1) & 3,
        .tls_active = (b0 >> 3) & 1,
        .allow_cleartext_auth = (b0 >> 4) & 1,
        .window = (b0 & 0x80) ? 1 : 0,
        .auth_mech = mechs[b1 & 7],
    };
    if (cfg.starttls > IMAP_TLS_REQUIRED)
        cfg.starttls = IMAP_TLS_REQUIRED;
    h->cleartext_ok = cfg.tls_active || cfg.allow_cleartext_auth;
    h->e = email__imap_engine_new(&cfg, &ev, h);
    FUZZ_CHECK(h->e != NULL, "engine");
    size_t ncmds = (b1 >> 3) & 7;
    for (size_t i = 0; i < ncmds; i++) {
        h->cmds[i] = command(h, fuzz_byte(in));
        FUZZ_CHECK(email__imap_engine_submit(h->e, &h->cmds[i]) == 0, "submit");
    }
    for (size_t i = ncmds; i < MAX_CMDS; i++)
        h->ndone[i] = 1; /* never submitted */
    if (b0 & 0x40)
        email__imap_engine_quit(h->e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in = {data, size};
    uint8_t b0 = fuzz_byte(&in), b1 = fuzz_byte(&in), cut = fuzz_byte(&in);
    harness_t h;
    memset(&h, 0, sizeof h);
    H = &h;
    setup(&h, &in, b0, b1);
    drain(&h);
    uint64_t rng = fuzz_hash(in.p, in.n);
    while (in.n && !email__imap_engine_is_closed(h.e)) {
        size_t piece = cut == 0 ? in.n : cut < 128 ? cut : 1 + fuzz_xorshift(&rng) % (cut - 127);
        const uint8_t *p;
        size_t n = fuzz_bytes(&in, piece, &p);
        h.fed += n;
        email__imap_engine_feed(h.e, (const char *)p, n);
        if (h.tls_asked && (b0 & 0x20)) {
            h.tls_asked = false;
            email__imap_engine_tls_established(h.e);
            h.cleartext_ok = true;
        }
        drain(&h);
    }
    email__imap_engine_abort(h.e, EMAIL_ECLOSED, "end of input");
    FUZZ_CHECK(h.nclosed == 1, "closed %d times", h.nclosed);
    for (size_t i = 0; i < MAX_CMDS; i++)
        FUZZ_CHECK(h.ndone[i] == 1, "command %zu done %d times", i, h.ndone[i]);
    email__imap_engine_free(h.e);
    return 0;
}
