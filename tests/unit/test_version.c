/*
 * The version macros of <emailsession-version.h> (written by configure) and email_version()
 * agree, and EMAIL_VERSION_NUM is MAJOR << 16 | MINOR << 8 | PATCH (API.md section 9).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macros_and_runtime_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
