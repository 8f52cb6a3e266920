/*
 * SASL payloads (lib/auth.c) against known answers: RFC 4616 (PLAIN), RFC 2195 (CRAM-MD5),
 * Google's XOAUTH2 example, RFC 7628 (OAUTHBEARER, with RFC 5801's saslname escapes); and the
 * credentials email_transporter_new refuses because they would split a payload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth.h"
#include "emailsession.h"
#include "encode.h"
#include "util.h"

/* email__auth_start's command line and its masked twin. */
static void start(auth_mech_t mech, const char *user, const char *password, const char *token,
                  const char *want_cmd, const char *want_shown)
{
    auth_creds_t c = {.user = user, .password = password, .token = token};
    email_buf_t cmd, shown;
    email__buf_init(&cmd);
    email__buf_init(&shown);
    assert_int_equal(email__auth_start(mech, &c, &cmd, &shown), 0);
    assert_string_equal(cmd.data, want_cmd);
    assert_string_equal(shown.data, want_shown);
    email__buf_free(&cmd);
    email__buf_free(&shown);
}

/* The decoded initial response of an OAuth mechanism must be want[0..n). */
static void assert_oauth_raw(auth_mech_t mech, const char *user, const char *token,
                             const char *want, size_t n)
{
    auth_creds_t c = {.user = user, .token = token};
    email_buf_t cmd, shown, raw;
    email__buf_init(&cmd);
    email__buf_init(&shown);
    email__buf_init(&raw);
    assert_int_equal(email__auth_start(mech, &c, &cmd, &shown), 0);
    const char *b64 = strchr(strchr(cmd.data, ' ') + 1, ' ');
    assert_non_null(b64);
    assert_int_equal(email__base64_decode(&raw, b64 + 1, strlen(b64 + 1)), 0);
    if (raw.len != n || memcmp(raw.data, want, n) != 0)
        fail_msg("payload for user [%s]: got %zu bytes [%s]", user ? user : "(null)", raw.len,
                 raw.data);
    email__buf_free(&cmd);
    email__buf_free(&shown);
    email__buf_free(&raw);
}

/* RFC 4616 section 4: "tim" / "tanstaaftanstaaf", no authorization identity. */
static void test_plain_rfc4616(void **state)
{
    start(AUTH_PLAIN, "tim", "tanstaaftanstaaf", NULL, "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
          "AUTH PLAIN ****");
}

/* RFC 2195 section 2: the challenge <1896.697170952@postoffice.reston.mci.net>. */
static void test_cram_md5_rfc2195(void **state)
{
    start(AUTH_CRAM_MD5, "tim", "tanstaaftanstaaf", NULL, "AUTH CRAM-MD5", "AUTH CRAM-MD5");
    auth_creds_t c = {.user = "tim", .password = "tanstaaftanstaaf"};
    email_buf_t resp;
    email__buf_init(&resp);
    assert_int_equal(email__auth_step(AUTH_CRAM_MD5, &c, 0,
                               "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+", &resp),
                     0);
    assert_string_equal(resp.data, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    email__buf_reset(&resp);
    assert_int_equal(email__auth_step(AUTH_CRAM_MD5, &c, 1, "eA==", &resp), EMAIL_EPROTO);
    email__buf_free(&resp);
}

static void test_login(void **state)
{
    start(AUTH_LOGIN, "tim", "tanstaaftanstaaf", NULL, "AUTH LOGIN", "AUTH LOGIN");
    auth_creds_t c = {.user = "tim", .password = "tanstaaftanstaaf"};
    email_buf_t resp;
    email__buf_init(&resp);
    assert_int_equal(email__auth_step(AUTH_LOGIN, &c, 0, "VXNlcm5hbWU6", &resp), 0);
    assert_string_equal(resp.data, "dGlt");
    email__buf_reset(&resp);
    assert_int_equal(email__auth_step(AUTH_LOGIN, &c, 1, "UGFzc3dvcmQ6", &resp), 0);
    assert_string_equal(resp.data, "dGFuc3RhYWZ0YW5zdGFhZg==");
    email__buf_reset(&resp);
    assert_int_equal(email__auth_step(AUTH_LOGIN, &c, 2, "", &resp), EMAIL_EPROTO);
    email__buf_free(&resp);
}

/* Google's XOAUTH2 documentation example, byte for byte. */
static void test_xoauth2_known_answer(void **state)
{
    start(AUTH_XOAUTH2, "someuser@example.com", NULL,
          "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
          "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk"
          "52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==",
          "AUTH XOAUTH2 ****");
}

/* RFC 7628 section 4.1's example (we send no host/port pairs, which are optional). */
static void test_oauthbearer_rfc7628(void **state)
{
    static const char want[] = "n,a=user@example.com,\001auth=Bearer "
                               "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\001\001";
    assert_oauth_raw(AUTH_OAUTHBEARER, "user@example.com",
                     "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", want, sizeof want - 1);
    /* the error step: the client answers %x01 (RFC 7628 section 3.2.3) */
    auth_creds_t c = {.user = "u", .token = "t"};
    email_buf_t resp;
    email__buf_init(&resp);
    assert_int_equal(email__auth_step(AUTH_OAUTHBEARER, &c, 0, "eyJzdGF0dXMiOiI0MDEifQ==", &resp),
                     0);
    assert_string_equal(resp.data, "AQ==");
    email__buf_free(&resp);
}

/* RFC 5801 saslname: "," as "=2C", "=" as "=3D" (else the server reads another user name). */
static void test_oauthbearer_saslname_escapes(void **state)
{
    static const char want[] = "n,a=a=2Cb=3Dc=3D=2C@example.org,\001auth=Bearer tok\001\001";
    assert_oauth_raw(AUTH_OAUTHBEARER, "a,b=c=,@example.org", "tok", want, sizeof want - 1);
    static const char want_plain[] = "n,a=plain@example.org,\001auth=Bearer tok\001\001";
    assert_oauth_raw(AUTH_OAUTHBEARER, "plain@example.org", "tok", want_plain,
                     sizeof want_plain - 1);
    /* no user name: no authorization identity at all (an empty saslname is not allowed) */
    static const char want_none[] = "n,,\001auth=Bearer tok\001\001";
    assert_oauth_raw(AUTH_OAUTHBEARER, NULL, "tok", want_none, sizeof want_none - 1);
    /* XOAUTH2 has no escapes: "," and "=" go as they are */
    static const char want_x[] = "user=a,b=c\001auth=Bearer tok\001\001";
    assert_oauth_raw(AUTH_XOAUTH2, "a,b=c", "tok", want_x, sizeof want_x - 1);
}

/* email_transporter_new refuses, naming the field, what would split a payload. */
static void refused(const char *user, const char *token, const char *field)
{
    email_server_t srv;
    email_server_init(&srv);
    srv.host = "127.0.0.1";
    srv.security = EMAIL_SECURITY_NONE;
    srv.user = user;
    srv.password = "pw";
    srv.oauth2_token = token;
    assert_null(email_transporter_new(&srv));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    char want[64];
    snprintf(want, sizeof want, "%s contains a control character", field);
    if (!strstr(email_error_info(), want))
        fail_msg("ErrorInfo [%s] does not say \"%s\"", email_error_info(), want);
}

static void test_control_characters_refused(void **state)
{
    refused("evil\001auth=Bearer stolen", "tok", "user");
    refused("esc\033[31m", NULL, "user");
    refused("del\177", NULL, "user");
    refused("tim", "tok\001auth=Bearer x", "oauth2_token");
    refused("tim", "tab\there", "oauth2_token");
    /* the named session's user is the SMTP user: the same rule */
    assert_false(email_start_smtp_session("evil\001user", "pw", "127.0.0.1", 25,
                                          EMAIL_SYNCHRONOUS, EMAIL_OPTION_DEFAULT));
    assert_int_equal(email_last_error(), EMAIL_EINVAL);
    assert_non_null(strstr(email_error_info(), "user contains a control character"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_rfc4616),
        cmocka_unit_test(test_cram_md5_rfc2195),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_xoauth2_known_answer),
        cmocka_unit_test(test_oauthbearer_rfc7628),
        cmocka_unit_test(test_oauthbearer_saslname_escapes),
        cmocka_unit_test(test_control_characters_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
