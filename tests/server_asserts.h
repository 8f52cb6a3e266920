/*
 * Assertions shared by the integration tests that read what a test server received. Include
 * after <cmocka.h> and "harness.h".
 */
#ifndef EMAIL_TEST_SERVER_ASSERTS_H
#define EMAIL_TEST_SERVER_ASSERTS_H

#include <stdlib.h>
#include <string.h>

/* Starts tests/servers/smtpd.py with args (NULL-terminated, may be NULL), or fails the test. */
static inline void start_smtpd(test_server_t *s, const char *const *args)
{
    assert_int_equal(test_server_start(s, "smtpd.py", args), 0);
}

/* A string field of a spooled envelope (harness key syntax: "auth.login", "rcpt_tos.0"). */
static inline void assert_json_field(const char *json, const char *key, const char *want)
{
    char *v = test_json_string(json, key);
    if (!v || strcmp(v, want) != 0)
        fail_msg("json %s: got \"%s\", want \"%s\" in %s", key, v ? v : "(null)", want, json);
    free(v);
}

#endif
