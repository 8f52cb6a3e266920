/*
 * SCRAM (lib/auth_scram.c) against the examples of RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677
 * section 3 (SCRAM-SHA-256), with their client nonces through the test hook; what a client must
 * refuse (a nonce that is not ours extended, a wrong server signature, too few iterations, a
 * mandatory extension); and the engine's side: a server that says 235 without proving anything,
 * or proves the wrong thing, is not an authenticated session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth_scram.h"
#include "encode.h"
#include "engine_script.h"

static email_buf_t b64_out;

/* The base64 of a text, as SMTP AUTH carries SCRAM's messages (one at a time). */
static const char *b64(const char *text)
{
    email_buf_t out = b64_out;
    email__buf_free(&out);
    email__buf_init(&out);
    assert_int_equal(email__base64_encode(&out, text, strlen(text)), 0);
    assert_int_equal(email__buf_putc(&out, '\0'), 0);
    b64_out = out;
    return out.data;
}

static int free_b64(void **state)
{
    (void)state;
    email__buf_free(&b64_out);
    return 0;
}

/* The text a base64 answer stands for (malloc'ed). */
static char *unb64(const email_buf_t *b)
{
    email_buf_t out;
    email__buf_init(&out);
    assert_int_equal(email__base64_decode(&out, b->data, b->len), 0);
    assert_int_equal(email__buf_putc(&out, '\0'), 0);
    return out.data;
}

typedef struct vector {
    bool sha256;
    const char *nonce, *client_first, *server_first, *client_final, *server_final;
} vector_t;

static const vector_t rfc5802 = {
    false,
    "fyko+d2lbbFgONRv9qkxdawL",
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const vector_t rfc7677 = {
    true,
    "rOprNGfwEbeRWgbNEkqO",
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/* The exchange of v up to the client-final message, checked; the caller verifies. */
static scram_t *run_to_final(const vector_t *v)
{
    email__scram_test_nonce(v->nonce);
    scram_t *s = email__scram_new(v->sha256, "user", "pencil");
    email__scram_test_nonce(NULL);
    assert_non_null(s);
    email_buf_t out;
    email__buf_init(&out);
    assert_int_equal(email__scram_client_first(s, &out), 0);
    char *text = unb64(&out);
    assert_string_equal(text, v->client_first);
    free(text);
    email__buf_reset(&out);
    const char *why = NULL;
    assert_int_equal(email__scram_client_final(s, b64(v->server_first), &out, &why), 0);
    text = unb64(&out);
    assert_string_equal(text, v->client_final);
    free(text);
    email__buf_free(&out);
    assert_false(email__scram_verified(s));
    return s;
}

static void test_rfc_vectors(void **state)
{
    (void)state;
    const vector_t *vectors[] = {&rfc5802, &rfc7677};
    for (size_t i = 0; i < 2; i++) {
        scram_t *s = run_to_final(vectors[i]);
        const char *why = NULL;
        assert_int_equal(email__scram_verify(s, b64(vectors[i]->server_final), &why), 0);
        assert_true(email__scram_verified(s));
        email__scram_free(s);
    }
}

/* A server that does not know the password cannot sign: refused, never "verified". */
static void test_wrong_server_signature(void **state)
{
    (void)state;
    scram_t *s = run_to_final(&rfc7677);
    const char *why = NULL;
    /* the RFC's signature with its first byte changed */
    assert_int_equal(
        email__scram_verify(s, b64("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), &why),
        EMAIL_EAUTH);
    assert_non_null(strstr(why, "signature"));
    assert_false(email__scram_verified(s));
    email__scram_free(s);
    /* SCRAM-SHA-1's signature where SHA-256's is due (the wrong length) */
    s = run_to_final(&rfc7677);
    assert_int_equal(email__scram_verify(s, b64(rfc5802.server_final), &why), EMAIL_EAUTH);
    assert_false(email__scram_verified(s));
    email__scram_free(s);
    /* the server's own error */
    s = run_to_final(&rfc7677);
    assert_int_equal(email__scram_verify(s, b64("e=invalid-proof"), &why), EMAIL_EAUTH);
    assert_false(email__scram_verified(s));
    email__scram_free(s);
}

/* The server-first message of the RFC 7677 exchange refused, and why. */
static void refused_first(const char *server_first, int error, const char *why_part)
{
    email__scram_test_nonce(rfc7677.nonce);
    scram_t *s = email__scram_new(true, "user", "pencil");
    email__scram_test_nonce(NULL);
    email_buf_t out;
    email__buf_init(&out);
    const char *why = NULL;
    assert_int_equal(email__scram_client_final(s, b64(server_first), &out, &why), error);
    assert_int_equal(out.len, 0);
    if (!strstr(why, why_part))
        fail_msg("[%s]: why is \"%s\", not about \"%s\"", server_first, why, why_part);
    email__buf_free(&out);
    email__scram_free(s);
}

static void test_server_first_refused(void **state)
{
    (void)state;
    /* the nonce must be ours, extended */
    refused_first("r=XXprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ=="
                  ",i=4096",
                  EMAIL_EAUTH, "nonce");
    refused_first("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", EMAIL_EAUTH, "nonce");
    refused_first("r=rOprNGfwEbeRWgbNEk,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", EMAIL_EAUTH, "nonce");
    /* a cheap proof for whoever listens */
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", EMAIL_EAUTH,
                  "4096");
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1", EMAIL_EAUTH, "4096");
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001", EMAIL_EAUTH,
                  "iterations");
    refused_first("m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                  EMAIL_EAUTH, "extension");
    refused_first("e=other-error", EMAIL_EAUTH, "refused");
    /* malformed */
    refused_first("s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", EMAIL_EPROTO,
                  "malformed");
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=40x", EMAIL_EPROTO,
                  "malformed");
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096", EMAIL_EPROTO, "malformed");
    refused_first("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==", EMAIL_EPROTO,
                  "malformed");
}

/* SASLprep leaves printable ASCII alone; anything else is refused, not sent unprepared. */
static void test_password_ok(void **state)
{
    (void)state;
    assert_true(email__scram_password_ok("pencil"));
    assert_true(email__scram_password_ok(" !~ a b "));
    assert_false(email__scram_password_ok("p\xc3\xa9nc\xc3\xaell"));
    assert_false(email__scram_password_ok("tab\there"));
    assert_false(email__scram_password_ok(NULL));
}

/* A user name with "," and "=" goes as a saslname ("=2C", "=3D"), random nonces differ. */
static void test_saslname_and_nonce(void **state)
{
    (void)state;
    scram_t *a = email__scram_new(true, "a,b=c", "pw"), *b = email__scram_new(true, "a,b=c", "pw");
    email_buf_t out;
    email__buf_init(&out);
    assert_int_equal(email__scram_client_first(a, &out), 0);
    char *ta = unb64(&out);
    email__buf_reset(&out);
    assert_int_equal(email__scram_client_first(b, &out), 0);
    char *tb = unb64(&out);
    assert_memory_equal(ta, "n,,n=a=2Cb=3Dc,r=", 17);
    assert_true(strlen(ta) > 17 + 16);
    assert_string_not_equal(ta, tb);
    free(ta);
    free(tb);
    email__buf_free(&out);
    email__scram_free(a);
    email__scram_free(b);
}

/* ------------------------------------------------------------------------------------------- */
/* The engine                                                                                   */

static smtp_engine_config_t scram_config(void)
{
    smtp_engine_config_t cfg = ts_config();
    cfg.creds.user = "user";
    cfg.creds.password = "pencil";
    cfg.tls_active = true;
    return cfg;
}

static void feed_take(test_session_t *s, const char *server, const char *client)
{
    assert_int_equal(ts_feed(s, server), 0);
    assert_string_equal(ts_take(s), client);
}

/* Greets, and answers RFC 7677's server-first: SCRAM-SHA-256 is chosen over the others. */
static void engine_to_final(test_session_t *s)
{
    smtp_engine_config_t cfg = scram_config();
    ts_restart(s, &cfg);
    email__scram_test_nonce(rfc7677.nonce);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 "
                                  "SCRAM-SHA-256\r\n"),
                     0);
    email__scram_test_nonce(NULL);
    char want[256];
    snprintf(want, sizeof want, "AUTH SCRAM-SHA-256 %s\r\n", b64(rfc7677.client_first));
    assert_string_equal(ts_take(s), want);
    char reply[256];
    snprintf(reply, sizeof reply, "334 %s\r\n", b64(rfc7677.server_first));
    snprintf(want, sizeof want, "%s\r\n", b64(rfc7677.client_final));
    feed_take(s, reply, want);
    assert_true(ts_log_has(s, "C: AUTH SCRAM-SHA-256 ****"));
    assert_true(ts_log_has(s, "C: ****"));
    assert_null(strstr(buf_str(&s->log), "pencil"));
    assert_null(strstr(buf_str(&s->log), b64(rfc7677.client_final)));
}

static void test_engine_scram_sha256(void **state)
{
    test_session_t *s = *state;
    engine_to_final(s);
    char reply[256];
    snprintf(reply, sizeof reply, "334 %s\r\n", b64(rfc7677.server_final));
    feed_take(s, reply, "\r\n");
    EXPECT_EVENTS(s, "");
    feed_take(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    assert_true(ts_log_has(s, "#: SMTP Authenticated as 'user' (SCRAM-SHA-256)"));
}

/* The QUIT that ends a failed setup, and the failure reported with the session's end. */
static void expect_failure(test_session_t *s, int error, const char *why)
{
    assert_string_equal(ts_take(s), "QUIT\r\n");
    EXPECT_EVENTS(s, "");
    assert_int_equal(ts_feed(s, "221 2.0.0 Bye\r\n"), error);
    assert_true(email__smtp_engine_is_closed(s->e));
    assert_false(email__smtp_engine_is_ready(s->e));
    assert_int_equal(s->closed_status.error, error);
    if (!strstr(s->closed_status.status_text, why))
        fail_msg("status text \"%s\" without \"%s\"", s->closed_status.status_text, why);
}

/* 235 before the server proved anything: the client is not authenticated to a real server. */
static void test_engine_235_without_proof(void **state)
{
    test_session_t *s = *state;
    engine_to_final(s);
    assert_int_equal(ts_feed(s, "235 2.7.0 Authentication successful\r\n"), 0);
    expect_failure(s, EMAIL_EAUTH, "without proving it knows the password");
    EXPECT_EVENTS(s, "closed EMAIL_EAUTH 235 2.7.0\n");
}

/* A wrong signature: the exchange is cancelled ("*"), then QUIT; never ready. */
static void test_engine_wrong_signature(void **state)
{
    test_session_t *s = *state;
    engine_to_final(s);
    char reply[256];
    snprintf(reply, sizeof reply, "334 %s\r\n",
             b64("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
    feed_take(s, reply, "*\r\n");
    assert_true(ts_log_has(s, "C: *"));
    assert_int_equal(ts_feed(s, "501 5.7.0 Authentication cancelled\r\n"), 0);
    expect_failure(s, EMAIL_EAUTH, "signature is wrong");
    EXPECT_EVENTS(s, "closed EMAIL_EAUTH 0\n");
}

/* A nonce that is not ours extended: cancelled before any proof goes. */
static void test_engine_bad_nonce(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = scram_config();
    ts_restart(s, &cfg);
    email__scram_test_nonce(rfc7677.nonce);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH SCRAM-SHA-256\r\n"), 0);
    email__scram_test_nonce(NULL);
    ts_take(s);
    char reply[256];
    snprintf(reply, sizeof reply, "334 %s\r\n",
             b64("r=XXprNGfwEbeRWgbNEkqO%hvYDp,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
    feed_take(s, reply, "*\r\n");
    assert_int_equal(ts_feed(s, "501 5.7.0 Authentication cancelled\r\n"), 0);
    expect_failure(s, EMAIL_EAUTH, "nonce");
}

/* A password SCRAM cannot take as it is: NULL mode falls back to the next mechanism. */
static void test_engine_non_ascii_password_skips_scram(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = scram_config();
    cfg.creds.password = "p\xc3\xa9ncil";
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN SCRAM-SHA-256 SCRAM-SHA-1\r\n"),
                     0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcMOpbmNpbA==\r\n");
}

/* A client certificate and no secret: EXTERNAL when offered, with an empty initial response. */
static void test_engine_external(void **state)
{
    test_session_t *s = *state;
    smtp_engine_config_t cfg = ts_config();
    cfg.tls_active = true;
    cfg.client_cert = true;
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN EXTERNAL\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH EXTERNAL =\r\n");
    feed_take(s, "235 2.7.0 Authentication successful\r\n", "");
    EXPECT_EVENTS(s, "ready\n");
    /* not offered: the certificate alone must do */
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN\r\n"), 0);
    assert_string_equal(ts_take(s), "");
    EXPECT_EVENTS(s, "ready\n");
    /* with a password, the password's mechanisms */
    cfg.creds.user = "user";
    cfg.creds.password = "pass";
    ts_restart(s, &cfg);
    assert_int_equal(ts_greet(s, "250-mx.example\r\n250 AUTH PLAIN EXTERNAL\r\n"), 0);
    assert_string_equal(ts_take(s), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_vectors),
        cmocka_unit_test(test_wrong_server_signature),
        cmocka_unit_test(test_server_first_refused),
        cmocka_unit_test(test_password_ok),
        cmocka_unit_test(test_saslname_and_nonce),
        cmocka_unit_test_setup_teardown(test_engine_scram_sha256, ts_setup, ts_teardown),
        cmocka_unit_test_setup_teardown(test_engine_235_without_proof, ts_setup, ts_teardown),
        cmocka_unit_test_setup_teardown(test_engine_wrong_signature, ts_setup, ts_teardown),
        cmocka_unit_test_setup_teardown(test_engine_bad_nonce, ts_setup, ts_teardown),
        cmocka_unit_test_setup_teardown(test_engine_non_ascii_password_skips_scram, ts_setup,
                                        ts_teardown),
        cmocka_unit_test_setup_teardown(test_engine_external, ts_setup, ts_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, free_b64);
}
