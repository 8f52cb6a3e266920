/*
 * The version macros of <emailsession-version.h> (written by configure) and email_version()
 * agree, and EMAIL_VERSION_NUM is MAJOR << 16 | MINOR << 8 | PATCH (API.md section 9); the
 * public structs keep their room to grow (include/emailsession.h, above email_server_t).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "emailsession.h"

static void test_macros_and_runtime_agree(void **state)
{
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", EMAIL_VERSION_MAJOR, EMAIL_VERSION_MINOR,
             EMAIL_VERSION_PATCH);
    assert_string_equal(EMAIL_VERSION_STRING, want);
    assert_string_equal(email_version(), want);
    assert_int_equal(EMAIL_VERSION_NUM,
                     (EMAIL_VERSION_MAJOR << 16) | (EMAIL_VERSION_MINOR << 8) | EMAIL_VERSION_PATCH);
    assert_true(EMAIL_VERSION_MINOR < 256 && EMAIL_VERSION_PATCH < 256);
#if !defined(EMAIL_VERSION_NUM) || EMAIL_VERSION_NUM < 0
#error "EMAIL_VERSION_NUM must be a number #if can evaluate"
#endif
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* reserved_ is the last member and nothing follows it, so a field taken from it moves nothing;
 * whatever the library fills leaves it zero (an old program's zeros mean "default"). */
static void test_room_to_grow(void **state)
{
    (void)state;
    assert_int_equal(offsetof(email_server_t, reserved_) + sizeof(((email_server_t *)0)->reserved_),
                     sizeof(email_server_t));
    assert_int_equal(offsetof(email_status_t, reserved_) + sizeof(((email_status_t *)0)->reserved_),
                     sizeof(email_status_t));
    /* the size of 1.0: helo_name, then 16 slots (fields taken from them since, and the rest) */
    assert_int_equal(sizeof(email_server_t), offsetof(email_server_t, helo_name) + 17 * sizeof(void *));
    email_server_t srv;
    memset(&srv, 0xa5, sizeof srv);
    email_server_init(&srv);
    assert_true(all_zero(srv.reserved_, sizeof srv.reserved_));
    srv.host = "127.0.0.1";
    email_transporter_t *t = email_transporter_new(&srv);
    assert_non_null(t);
    email_server_t out;
    memset(&out, 0xa5, sizeof out);
    assert_int_equal(email_transporter_get_server(t, &out), 0);
    assert_true(all_zero(out.reserved_, sizeof out.reserved_));
    email_transporter_free(t);
    email_status_t st;
    memset(&st, 0xa5, sizeof st);
    st.internal_ = NULL;
    email_status_clear(&st);
    assert_true(all_zero(st.reserved_, sizeof st.reserved_));
    email_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macros_and_runtime_agree),
        cmocka_unit_test(test_room_to_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
