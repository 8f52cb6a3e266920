/*
 * Unit tests of lib/tls.c: a tls_t driven over memory against a GnuTLS server session in the same
 * process, with throwaway certificates made at start-up with GnuTLS's x509 API (a test CA; a good
 * certificate for localhost, 127.0.0.1 and ::1; one for another name; an expired one; a
 * self-signed one). No socket: the bytes each side writes are handed to the other by pump(), in
 * pieces of a chosen size (1 byte at a time too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <time.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "emailsession.h"
#include "tls.h"
#include "util.h"

#include "harness.h"

/* ---- Certificates ---- */

typedef enum { CERT_GOOD, CERT_OTHER, CERT_EXPIRED, CERT_SELF, NCERTS } cert_kind_t;

static gnutls_x509_privkey_t ca_key;
static gnutls_x509_crt_t ca_crt;
static gnutls_certificate_credentials_t server_creds[NCERTS];
static gnutls_datum_t ticket_key;
static char *tmpdir, ca_path[512], empty_path[512];
/* The credentials of a CA file (with the system store, slow to parse under valgrind) are shared
   while a session uses them: idle sessions keep both sets loaded for the whole run. */
static tls_t *keep_loaded[2];

#define Y2000 ((time_t)946684800)   /* 2000-01-01 */
#define Y2001 ((time_t)978307200)   /* 2001-01-01 */
#define Y2002 ((time_t)1009843200)  /* 2002-01-01 */
#define Y2099 ((time_t)4070908800)  /* 2099-01-01 */

#define CHECK(call)                                                                            \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ < 0) {                                                                         \
            fprintf(stderr, "test_tls: %s: %s\n", #call, gnutls_strerror(rc_));              \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

static int new_key(gnutls_x509_privkey_t *key)
{
    CHECK(gnutls_x509_privkey_init(key));
    CHECK(gnutls_x509_privkey_generate(*key, GNUTLS_PK_ECDSA,
                                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
    return 0;
}

/* A certificate for key, valid [from, to), for the names given (NULL-terminated; "ip:" before
   an address), signed by the CA or (issuer NULL) by itself. */
static int new_cert(gnutls_x509_crt_t *crt, gnutls_x509_privkey_t key, const char *cn,
                    const char *const *names, time_t from, time_t to, bool ca)
{
    static unsigned char serial = 1;
    CHECK(gnutls_x509_crt_init(crt));
    CHECK(gnutls_x509_crt_set_version(*crt, 3));
    CHECK(gnutls_x509_crt_set_serial(*crt, &serial, 1));
    serial++;
    CHECK(gnutls_x509_crt_set_activation_time(*crt, from));
    CHECK(gnutls_x509_crt_set_expiration_time(*crt, to));
    CHECK(gnutls_x509_crt_set_dn_by_oid(*crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)));
    CHECK(gnutls_x509_crt_set_key(*crt, key));
    CHECK(gnutls_x509_crt_set_basic_constraints(*crt, ca, -1));
    CHECK(gnutls_x509_crt_set_key_usage(*crt, ca ? GNUTLS_KEY_KEY_CERT_SIGN
                                                 : GNUTLS_KEY_DIGITAL_SIGNATURE));
    for (size_t i = 0; names && names[i]; i++) {
        unsigned char ip[16];
        const char *n = names[i];
        if (!strncmp(n, "ip:", 3)) {
            int v6 = strchr(n, ':') != strrchr(n, ':');
            if (inet_pton(v6 ? AF_INET6 : AF_INET, n + 3, ip) != 1)
                return -1;
            CHECK(gnutls_x509_crt_set_subject_alt_name(*crt, GNUTLS_SAN_IPADDRESS, ip,
                                                       v6 ? 16 : 4, GNUTLS_FSAN_APPEND));
        } else {
            CHECK(gnutls_x509_crt_set_subject_alt_name(*crt, GNUTLS_SAN_DNSNAME, n, strlen(n),
                                                       GNUTLS_FSAN_APPEND));
        }
    }
    return 0;
}

/* Server credentials holding a new key and its certificate (signed by the CA unless self). */
static int server_cert(cert_kind_t kind, const char *cn, const char *const *names, time_t from,
                       time_t to)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    if (new_key(&key) || new_cert(&crt, key, cn, names, from, to, false))
        return -1;
    if (kind == CERT_SELF)
        CHECK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0));
    else
        CHECK(gnutls_x509_crt_sign2(crt, ca_crt, ca_key, GNUTLS_DIG_SHA256, 0));
    CHECK(gnutls_certificate_allocate_credentials(&server_creds[kind]));
    CHECK(gnutls_certificate_set_x509_key(server_creds[kind], &crt, 1, key));
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    return 0;
}

static int write_ca_files(void)
{
    gnutls_datum_t pem;
    CHECK(gnutls_x509_crt_export2(ca_crt, GNUTLS_X509_FMT_PEM, &pem));
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    snprintf(empty_path, sizeof empty_path, "%s/empty.pem", tmpdir);
    int rc = test_write_file(ca_path, pem.data, pem.size);
    gnutls_free(pem.data);
    return rc ? rc : test_write_file(empty_path, "not a certificate\n", 18);
}

static int ignore_send(void *ud, const char *data, size_t n)
{
    (void)ud, (void)data, (void)n;
    return 0;
}

static void ignore_data(void *ud, const char *data, size_t n)
{
    (void)ud, (void)data, (void)n;
}

static void ignore_event(void *ud, int error, const char *text)
{
    (void)ud, (void)error, (void)text;
}

static int keep_credentials_loaded(void)
{
    tls_callbacks_t cb = {ignore_send, ignore_data, ignore_event, ignore_event};
    char err[256];
    for (int i = 0; i < 2; i++) {
        tls_config_t cfg = {.host = "localhost", .ca_file = i ? ca_path : NULL};
        keep_loaded[i] = email__tls_new(&cfg, &cb, NULL, err, sizeof err);
        if (!keep_loaded[i]) {
            fprintf(stderr, "test_tls: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    static const char *const local[] = {"localhost", "ip:127.0.0.1", "ip:::1", NULL};
    static const char *const other[] = {"mail.example.com", NULL};
    time_t now = time(NULL);
    if (new_key(&ca_key) || new_cert(&ca_crt, ca_key, "emailsession unit test CA", NULL, Y2000,
                                     Y2099, true))
        return -1;
    CHECK(gnutls_x509_crt_sign2(ca_crt, ca_crt, ca_key, GNUTLS_DIG_SHA256, 0));
    if (server_cert(CERT_GOOD, "localhost", local, now - 3600, now + 86400) ||
        server_cert(CERT_OTHER, "mail.example.com", other, now - 3600, now + 86400) ||
        server_cert(CERT_EXPIRED, "localhost", local, Y2001, Y2002) ||
        server_cert(CERT_SELF, "localhost", local, now - 3600, now + 86400))
        return -1;
    CHECK(gnutls_session_ticket_key_generate(&ticket_key));
    tmpdir = test_tmpdir();
    if (!tmpdir || write_ca_files() || keep_credentials_loaded())
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    email__tls_free(keep_loaded[0]);
    email__tls_free(keep_loaded[1]);
    for (int i = 0; i < NCERTS; i++)
        gnutls_certificate_free_credentials(server_creds[i]);
    gnutls_x509_crt_deinit(ca_crt);
    gnutls_x509_privkey_deinit(ca_key);
    gnutls_free(ticket_key.data);
    if (tmpdir)
        test_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/* ---- A client tls_t and a GnuTLS server over memory ---- */

typedef struct pair {
    tls_t *client;
    gnutls_session_t server;
    size_t piece;             /* most bytes handed over at once, each way */
    email_buf_t c2s, s2c;     /* ciphertext in flight */
    size_t c2s_off, s2c_off;
    char server_first[8];     /* the first bytes the server wrote */
    size_t nserver_first;
    int send_rc;              /* what the client's send callback returns */
    /* what the client reported */
    email_buf_t plain;
    int handshakes, hs_error, failures, fail_error;
    char hs_text[512], fail_text[256];
    /* the server's side */
    bool server_ready;
    int server_rc;            /* its handshake's error, 0 while none */
    email_buf_t server_plain;
} pair_t;

static int client_send(void *ud, const char *data, size_t n)
{
    pair_t *p = ud;
    if (p->send_rc)
        return p->send_rc;
    assert_int_equal(email__buf_append(&p->c2s, data, n), 0);
    return 0;
}

static void client_recv(void *ud, const char *data, size_t n)
{
    pair_t *p = ud;
    assert_true(n > 0);
    assert_int_equal(email__buf_append(&p->plain, data, n), 0);
}

static void client_handshake(void *ud, int error, const char *text)
{
    pair_t *p = ud;
    p->handshakes++;
    p->hs_error = error;
    email__strlcpy(p->hs_text, text, sizeof p->hs_text);
}

static void client_failed(void *ud, int error, const char *text)
{
    pair_t *p = ud;
    p->failures++;
    p->fail_error = error;
    email__strlcpy(p->fail_text, text, sizeof p->fail_text);
}

static ssize_t server_pull(gnutls_transport_ptr_t ptr, void *buf, size_t n)
{
    pair_t *p = ptr;
    size_t left = p->c2s.len - p->c2s_off;
    if (!left) {
        gnutls_transport_set_errno(p->server, EAGAIN);
        return -1;
    }
    n = n < left ? n : left;
    n = n < p->piece ? n : p->piece;
    memcpy(buf, p->c2s.data + p->c2s_off, n);
    p->c2s_off += n;
    return (ssize_t)n;
}

static ssize_t server_push(gnutls_transport_ptr_t ptr, const void *data, size_t n)
{
    pair_t *p = ptr;
    if (p->nserver_first < sizeof p->server_first) {
        size_t k = sizeof p->server_first - p->nserver_first;
        k = n < k ? n : k;
        memcpy(p->server_first + p->nserver_first, data, k);
        p->nserver_first += k;
    }
    assert_int_equal(email__buf_append(&p->s2c, data, n), 0);
    return (ssize_t)n;
}

/* A client for host (ca_file, no_verify as given) and a server showing the certificate kind. */
static void pair_open(pair_t *p, cert_kind_t kind, const char *host, const char *ca_file,
                      bool no_verify, size_t piece)
{
    memset(p, 0, sizeof *p);
    p->piece = piece;
    email__buf_init(&p->c2s);
    email__buf_init(&p->s2c);
    email__buf_init(&p->plain);
    email__buf_init(&p->server_plain);
    tls_config_t cfg = {.host = host, .ca_file = ca_file, .no_verify = no_verify};
    tls_callbacks_t cb = {client_send, client_recv, client_handshake, client_failed};
    char err[256] = "";
    p->client = email__tls_new(&cfg, &cb, p, err, sizeof err);
    if (!p->client)
        fail_msg("email__tls_new: %s", err);
    gnutls_session_t s;
    assert_int_equal(gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK), 0);
    p->server = s;
    assert_int_equal(gnutls_set_default_priority(s), 0);
    assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server_creds[kind]), 0);
    /* TLS 1.3 servers send session tickets once the handshake is over: the client must read
       through them */
    assert_int_equal(gnutls_session_ticket_enable_server(s, &ticket_key), 0);
    gnutls_transport_set_ptr(s, p);
    gnutls_transport_set_pull_function(s, server_pull);
    gnutls_transport_set_push_function(s, server_push);
}

static void pair_close(pair_t *p)
{
    email__tls_free(p->client);
    gnutls_deinit(p->server);
    email__buf_free(&p->c2s);
    email__buf_free(&p->s2c);
    email__buf_free(&p->plain);
    email__buf_free(&p->server_plain);
}

/* One piece of the server's ciphertext to the client. */
static void feed_client(pair_t *p)
{
    size_t n = p->s2c.len - p->s2c_off;
    n = n < p->piece ? n : p->piece;
    size_t off = p->s2c_off;
    p->s2c_off += n;
    email__tls_feed(p->client, p->s2c.data + off, n);
}

/* The server reads what the client sent: its handshake, then records. */
static void server_step(pair_t *p)
{
    if (!p->server_ready) {
        int rc = gnutls_handshake(p->server);
        if (rc == 0)
            p->server_ready = true;
        else if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED)
            p->server_rc = rc;
        return;
    }
    char buf[4096];
    ssize_t got;
    while ((got = gnutls_record_recv(p->server, buf, sizeof buf)) > 0)
        assert_int_equal(email__buf_append(&p->server_plain, buf, (size_t)got), 0);
    if (got != GNUTLS_E_AGAIN && got != GNUTLS_E_INTERRUPTED)
        fail_msg("the server's record_recv: %s", gnutls_strerror((int)got));
}

/* Hands bytes over both ways until neither side has anything left to read. */
static void pump(pair_t *p)
{
    for (long guard = 0; guard < 10000000; guard++) {
        bool moved = false;
        if (p->s2c_off < p->s2c.len) {
            feed_client(p);
            moved = true;
        }
        if (p->c2s_off < p->c2s.len && !p->server_rc) {
            server_step(p);
            moved = true;
        }
        if (!moved)
            return;
    }
    fail_msg("the two sides never stop talking");
}

/* The client's handshake, to its end (its callback called once). */
static void handshake(pair_t *p)
{
    assert_int_equal(email__tls_start(p->client), 0);
    pump(p);
    assert_int_equal(p->handshakes, 1);
}

/* Plaintext from the server, pumped to the client. */
static void server_says(pair_t *p, const char *data, size_t n)
{
    while (n) {
        ssize_t sent = gnutls_record_send(p->server, data, n);
        assert_true(sent > 0);
        data += sent;
        n -= (size_t)sent;
    }
    pump(p);
}

#define WHOLE ((size_t)1 << 30) /* pieces as large as what is there */

static void assert_starts(const char *text, const char *prefix)
{
    if (strncmp(text, prefix, strlen(prefix)))
        fail_msg("\"%s\" does not start with \"%s\"", text, prefix);
}

/* b holds exactly text. */
static void assert_buf(const email_buf_t *b, const char *text)
{
    if (b->len != strlen(text) || (b->len && memcmp(b->data, text, b->len)))
        fail_msg("got \"%.*s\" (%zu bytes), not \"%s\"", (int)b->len, b->data ? b->data : "",
                 b->len, text);
}

/* The name the client asked for in SNI ("" when none). */
static void server_sni(const pair_t *p, char *name, size_t size)
{
    unsigned type;
    name[0] = '\0';
    int rc = gnutls_server_name_get(p->server, name, &size, &type, 0);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        name[0] = '\0';
    else
        assert_int_equal(rc, 0);
}

/* ---- Verification ---- */

static void test_handshake_with_ca_file(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(p.hs_error, 0);
    assert_string_equal(p.hs_text, "");
    assert_true(p.server_ready);
    assert_int_equal(p.failures, 0);
    char sni[256];
    server_sni(&p, sni, sizeof sni);
    assert_string_equal(sni, "localhost");
    char desc[256];
    email__tls_describe(p.client, desc, sizeof desc);
    assert_starts(desc, "TLS1.3, cipher ");
    /* the session tickets the server sent after the handshake gave the client no data */
    assert_int_equal(p.plain.len, 0);
    assert_int_equal(email__tls_write(p.client, "EHLO me\r\n", 9), 0);
    pump(&p);
    assert_buf(&p.server_plain, "EHLO me\r\n");
    server_says(&p, "250 hello\r\n", 11);
    assert_buf(&p.plain, "250 hello\r\n");
    assert_int_equal(p.failures, 0);
    pair_close(&p);
}

/* An address is checked against the certificate's IP addresses, and is never sent as SNI. */
static void test_address_host(void **state)
{
    (void)state;
    static const char *const hosts[] = {"127.0.0.1", "::1"};
    for (size_t i = 0; i < 2; i++) {
        pair_t p;
        pair_open(&p, CERT_GOOD, hosts[i], ca_path, false, WHOLE);
        handshake(&p);
        assert_int_equal(p.hs_error, 0);
        char sni[256];
        server_sni(&p, sni, sizeof sni);
        assert_string_equal(sni, "");
        pair_close(&p);
    }
    pair_t p;
    pair_open(&p, CERT_GOOD, "127.0.0.2", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(p.hs_error, EMAIL_ECERTNAME);
    pair_close(&p);
}

static void test_name_mismatch(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_OTHER, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(p.hs_error, EMAIL_ECERTNAME);
    assert_starts(p.hs_text, "the server's certificate does not match \"localhost\": ");
    /* the client never finished its side */
    assert_false(p.server_ready);
    /* nothing goes through a failed session, and nothing more is reported */
    assert_int_equal(email__tls_write(p.client, "QUIT\r\n", 6), EMAIL_ETLS);
    email__tls_feed(p.client, "\x17\x03\x03\x00\x01x", 6);
    assert_int_equal(p.handshakes, 1);
    assert_int_equal(p.failures, 0);
    pair_close(&p);
}

static void test_untrusted(void **state)
{
    (void)state;
    /* self-signed, and signed by a CA the client was not given */
    static const struct {
        cert_kind_t kind;
        const char *ca_file;
    } v[] = {{CERT_SELF, ca_path}, {CERT_GOOD, NULL}};
    for (size_t i = 0; i < 2; i++) {
        pair_t p;
        pair_open(&p, v[i].kind, "localhost", v[i].ca_file, false, WHOLE);
        handshake(&p);
        assert_int_equal(p.hs_error, EMAIL_ECERT);
        assert_starts(p.hs_text, "the server's certificate is not trusted: ");
        assert_false(p.server_ready);
        pair_close(&p);
    }
}

static void test_expired(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_EXPIRED, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(p.hs_error, EMAIL_ECERTEXPIRED);
    assert_starts(p.hs_text, "the server's certificate has expired or is not yet valid: ");
    pair_close(&p);
}

/* no_verify: neither trust, nor name, nor dates are checked. */
static void test_no_verify(void **state)
{
    (void)state;
    static const cert_kind_t kinds[] = {CERT_SELF, CERT_OTHER, CERT_EXPIRED};
    for (size_t i = 0; i < 3; i++) {
        pair_t p;
        pair_open(&p, kinds[i], "nothing.example", NULL, true, WHOLE);
        handshake(&p);
        assert_int_equal(p.hs_error, 0);
        assert_true(p.server_ready);
        server_says(&p, "220 ok\r\n", 8);
        assert_buf(&p.plain, "220 ok\r\n");
        pair_close(&p);
    }
}

static void test_bad_ca_file(void **state)
{
    (void)state;
    tls_config_t cfg = {.host = "localhost"};
    tls_callbacks_t cb = {client_send, client_recv, client_handshake, client_failed};
    char err[512], want[600];
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.pem", tmpdir);
    const char *files[] = {missing, empty_path};
    for (size_t i = 0; i < 2; i++) {
        cfg.ca_file = files[i];
        err[0] = '\0';
        assert_null(email__tls_new(&cfg, &cb, NULL, err, sizeof err));
        snprintf(want, sizeof want, "CA file \"%s\": ", files[i]);
        assert_starts(err, want);
        assert_true(strlen(err) > strlen(want));
    }
}

/* ---- Data ---- */

/* n bytes of a pattern that shows a byte lost, doubled or moved. */
static void pattern(char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('!' + (i * 7 + i / 251 + seed) % 90);
}

/* Handshake and data both ways, every hand-over at most piece bytes; the client writes its text
   in writes of `chunk` bytes. The server's text spans more than one record. */
static void data_both_ways(size_t piece, size_t chunk)
{
    enum { UP = 3000, DOWN = 20000 };
    static char up[UP], down[DOWN];
    pattern(up, UP, 1);
    pattern(down, DOWN, 2);
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, piece);
    handshake(&p);
    assert_int_equal(p.hs_error, 0);
    for (size_t i = 0; i < UP; i += chunk) {
        assert_int_equal(email__tls_write(p.client, up + i, UP - i < chunk ? UP - i : chunk), 0);
        pump(&p);
    }
    assert_int_equal(p.server_plain.len, UP);
    assert_memory_equal(p.server_plain.data, up, UP);
    server_says(&p, down, DOWN);
    assert_int_equal(p.plain.len, DOWN);
    assert_memory_equal(p.plain.data, down, DOWN);
    assert_int_equal(p.failures, 0);
    pair_close(&p);
}

static void test_data_whole(void **state)
{
    (void)state;
    data_both_ways(WHOLE, 3000);
}

static void test_data_one_byte_at_a_time(void **state)
{
    (void)state;
    data_both_ways(1, 1);
}

static void test_data_odd_pieces(void **state)
{
    (void)state;
    data_both_ways(5, 7);
    data_both_ways(1000, 333);
}

/* A TLS 1.3 NewSessionTicket in the middle of the data, in the same piece as records after it
   or split with them: the data comes through whole, in order. */
static void test_session_ticket_between_data(void **state)
{
    (void)state;
    static const size_t pieces[] = {WHOLE, 1, 9};
    for (size_t i = 0; i < 3; i++) {
        pair_t p;
        pair_open(&p, CERT_GOOD, "localhost", ca_path, false, pieces[i]);
        handshake(&p);
        assert_int_equal(p.hs_error, 0);
        assert_int_equal(gnutls_record_send(p.server, "250-first\r\n", 11), 11);
        assert_int_equal(gnutls_session_ticket_send(p.server, 2, 0), 0);
        assert_int_equal(gnutls_record_send(p.server, "250 second\r\n", 12), 12);
        pump(&p);
        assert_buf(&p.plain, "250-first\r\n250 second\r\n");
        /* a ticket alone, then more data */
        assert_int_equal(gnutls_session_ticket_send(p.server, 1, 0), 0);
        pump(&p);
        server_says(&p, "354 go\r\n", 8);
        assert_buf(&p.plain, "250-first\r\n250 second\r\n354 go\r\n");
        assert_int_equal(p.failures, 0);
        pair_close(&p);
    }
}

/* ---- Ends ---- */

/* The server's close_notify after its last data: the data first, then ECLOSED; the session is
   over for writing too. */
static void test_server_closes(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(gnutls_record_send(p.server, "221 bye\r\n", 9), 9);
    assert_int_equal(gnutls_bye(p.server, GNUTLS_SHUT_WR), 0);
    pump(&p);
    assert_buf(&p.plain, "221 bye\r\n");
    assert_int_equal(p.failures, 1);
    assert_int_equal(p.fail_error, EMAIL_ECLOSED);
    assert_string_equal(p.fail_text, "the server closed the TLS session");
    assert_int_equal(email__tls_write(p.client, "QUIT\r\n", 6), EMAIL_ETLS);
    pair_close(&p);
}

/* A record that does not decrypt (its MAC is wrong): EMAIL_ETLS through `failed`, once. */
static void test_bad_record(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    static const char forged[] = "\x17\x03\x03\x00\x20" "0123456789abcdef0123456789abcdef";
    email__tls_feed(p.client, forged, sizeof forged - 1);
    assert_int_equal(p.failures, 1);
    assert_int_equal(p.fail_error, EMAIL_ETLS);
    assert_starts(p.fail_text, "TLS failure: ");
    server_says(&p, "250 late\r\n", 10);
    assert_int_equal(p.plain.len, 0);
    assert_int_equal(p.failures, 1);
    pair_close(&p);
}

/* The transport refusing ciphertext fails the handshake, or the write. */
static void test_send_fails(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    p.send_rc = EMAIL_EIO;
    assert_int_equal(email__tls_start(p.client), 0);
    assert_int_equal(p.handshakes, 1);
    assert_int_equal(p.hs_error, EMAIL_ETLS);
    assert_starts(p.hs_text, "TLS handshake failed: ");
    pair_close(&p);
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    handshake(&p);
    assert_int_equal(p.hs_error, 0);
    p.send_rc = EMAIL_EIO;
    assert_int_equal(email__tls_write(p.client, "DATA\r\n", 6), EMAIL_ETLS);
    pair_close(&p);
}

/* Writing before the handshake ended is refused (nothing is sent in clear). */
static void test_write_before_handshake(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    assert_int_equal(email__tls_write(p.client, "EHLO\r\n", 6), EMAIL_ETLS);
    assert_int_equal(p.c2s.len, 0);
    assert_int_equal(email__tls_start(p.client), 0);
    assert_int_equal(email__tls_write(p.client, "EHLO\r\n", 6), EMAIL_ETLS);
    pair_close(&p);
}

/* ---- email__tls_first_bytes ---- */

static void test_first_bytes_of_a_tls_server(void **state)
{
    (void)state;
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, 3);
    const char *bytes = NULL;
    assert_int_equal(email__tls_first_bytes(p.client, &bytes), 0);
    handshake(&p);
    assert_int_equal(p.nserver_first, 8);
    assert_int_equal(email__tls_first_bytes(p.client, &bytes), 8);
    assert_memory_equal(bytes, p.server_first, 8);
    /* a handshake record: type 22 */
    assert_int_equal(bytes[0], 0x16);
    pair_close(&p);
}

/* A server that answers in SMTP: the handshake fails and the first bytes say what it spoke,
   whether they came in one piece or several. */
static void test_first_bytes_of_a_plain_server(void **state)
{
    (void)state;
    static const char banner[] = "220 mail.example.org ESMTP ready\r\n";
    pair_t p;
    pair_open(&p, CERT_GOOD, "localhost", ca_path, false, WHOLE);
    assert_int_equal(email__tls_start(p.client), 0);
    assert_true(p.c2s.len > 0);
    const char *bytes;
    email__tls_feed(p.client, "22", 2);
    assert_int_equal(email__tls_first_bytes(p.client, &bytes), 2);
    assert_memory_equal(bytes, "22", 2);
    email__tls_feed(p.client, banner + 2, sizeof banner - 3);
    assert_int_equal(p.handshakes, 1);
    assert_int_equal(p.hs_error, EMAIL_ETLS);
    assert_starts(p.hs_text, "TLS handshake failed: ");
    assert_int_equal(email__tls_first_bytes(p.client, &bytes), 8);
    assert_memory_equal(bytes, "220 mail", 8);
    /* nothing more once failed */
    email__tls_feed(p.client, "250 x\r\n", 7);
    assert_int_equal(email__tls_first_bytes(p.client, &bytes), 8);
    assert_int_equal(p.handshakes, 1);
    assert_int_equal(p.failures, 0);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_with_ca_file),
        cmocka_unit_test(test_address_host),
        cmocka_unit_test(test_name_mismatch),
        cmocka_unit_test(test_untrusted),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_no_verify),
        cmocka_unit_test(test_bad_ca_file),
        cmocka_unit_test(test_data_whole),
        cmocka_unit_test(test_data_one_byte_at_a_time),
        cmocka_unit_test(test_data_odd_pieces),
        cmocka_unit_test(test_session_ticket_between_data),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_bad_record),
        cmocka_unit_test(test_send_fails),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_first_bytes_of_a_tls_server),
        cmocka_unit_test(test_first_bytes_of_a_plain_server),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
