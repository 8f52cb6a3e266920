/*
 * Who owns the refused recipients and the chain of causes of an email_status_t (lib/status.c):
 * the status itself, at its address, until email_status_clear, a refill of the same status or
 * email_shutdown, whatever thread filled it and however many other statuses were filled since.
 * Copies, zeroed and uninitialised statuses never reach a list. Run under valgrind (make
 * check-valgrind): a list freed too early shows as an invalid read, one never freed as a leak.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "emailsession.h"
#include "status.h"

/* Gives s the refused recipients "<prefix>-0@example.org" ... with codes 550, 551, ... */
static void fill(email_status_t *s, const char *prefix, size_t n)
{
    email_refusals_t r;
    email__refusals_init(&r);
    for (size_t i = 0; i < n; i++) {
        char address[64], text[64];
        snprintf(address, sizeof address, "%s-%zu@example.org", prefix, i);
        snprintf(text, sizeof text, "5.1.1 %s-%zu unknown", prefix, i);
        assert_int_equal(email__refusals_add(&r, address, 550 + (int)i, text), 0);
    }
    s->recipients = n + 1;
    s->rejected = n;
    email__status_attach(s, &r, NULL);
    assert_int_equal(r.n, 0); /* taken */
}

/* Every recipient fill(s, prefix, n) gave, read back through the public API. */
static void assert_list(const email_status_t *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char address[64], text[64];
        snprintf(address, sizeof address, "%s-%zu@example.org", prefix, i);
        snprintf(text, sizeof text, "5.1.1 %s-%zu unknown", prefix, i);
        int code = 0;
        const char *got = email_status_recipient(s, i, &code);
        if (!got || strcmp(got, address) != 0)
            fail_msg("recipient %zu: got %s, want %s", i, got ? got : "(null)", address);
        assert_int_equal(code, 550 + (int)i);
        assert_string_equal(email_status_recipient_text(s, i), text);
    }
    assert_null(email_status_recipient(s, n, NULL));
    assert_null(email_status_recipient_text(s, n));
}

static void *fill_in_thread(void *arg)
{
    fill(arg, "thread", 3);
    return NULL;
}

/* The thread that filled the status has exited: the list is still the status's (it was freed
 * with the thread's storage). */
static void test_read_after_filling_thread_exited(void **state)
{
    email_status_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fill_in_thread, s), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_list(s, "thread", 3);
    email_status_clear(s);
    assert_null(email_status_recipient(s, 0, NULL));
    free(s);
}

static void *clear_in_thread(void *arg)
{
    email_status_clear(arg);
    return NULL;
}

/* Filled here, cleared in another thread (the table is shared, not per thread). */
static void test_clear_from_another_thread(void **state)
{
    email_status_t s;
    email__status_init(&s);
    fill(&s, "here", 2);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, clear_in_thread, &s), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(s.rejected, 0);
    assert_null(email_status_recipient(&s, 0, NULL));
}

/* A copy of the struct has the fields, not the list; clearing it frees nothing of the original. */
static void test_copies(void **state)
{
    email_status_t s, copy;
    email__status_init(&s);
    fill(&s, "orig", 2);
    copy = s;
    assert_int_equal(copy.rejected, 2);
    assert_null(email_status_recipient(&copy, 0, NULL));
    assert_null(email_status_recipient_text(&copy, 0));
    email_status_clear(&copy);
    assert_int_equal(copy.rejected, 0);
    assert_list(&s, "orig", 2);

    /* the library's own copy helper: the same rule */
    email_status_t dst;
    memset(&dst, 0x5a, sizeof dst);
    email__status_copy_into(&dst, &s);
    assert_int_equal(dst.rejected, 2);
    assert_null(email_status_recipient(&dst, 0, NULL));
    assert_list(&s, "orig", 2);

    /* a copy made into the address that held the list: fields back, list back */
    email_status_t saved = s;
    s = copy;
    assert_null(email_status_recipient(&s, 0, NULL));
    s = saved;
    assert_list(&s, "orig", 2);

    email_status_clear(&s);
    email_status_clear(&s); /* twice is fine */
    assert_null(email_status_recipient(&s, 0, NULL));
}

/* Refilling a status frees its old list first; a cleared status is filled again. */
static void test_reuse(void **state)
{
    email_status_t s;
    email__status_init(&s);
    fill(&s, "first", 3);
    fill(&s, "second", 2);
    assert_list(&s, "second", 2);
    email_status_clear(&s);
    fill(&s, "third", 1);
    assert_list(&s, "third", 1);

    /* refilled with nothing: no list at all */
    email_refusals_t none;
    email__refusals_init(&none);
    email__status_attach(&s, &none, NULL);
    assert_null(email_status_recipient(&s, 0, NULL));
    email_status_clear(&s);
}

/* A status zeroed by hand (not cleared) at the same address no longer reaches its old list,
 * and the next fill or clear of that address frees it. */
static void test_zeroed_and_uninitialised(void **state)
{
    email_status_t s;
    email__status_init(&s);
    fill(&s, "old", 2);
    memset(&s, 0, sizeof s);
    assert_null(email_status_recipient(&s, 0, NULL));
    fill(&s, "new", 1);
    assert_list(&s, "new", 1);
    email_status_clear(&s);

    /* garbage where internal_ is: never read as a list, filled and cleared all the same */
    email_status_t g;
    memset(&g, 0xa5, sizeof g);
    assert_null(email_status_recipient(&g, 0, NULL));
    email_status_clear(&g);
    assert_int_equal(g.rejected, 0);
    memset(&g, 0xa5, sizeof g);
    fill(&g, "garbage", 2);
    assert_list(&g, "garbage", 2);

    /* another status forged with g's handle: not g's list */
    email_status_t forged;
    email__status_init(&forged);
    forged.internal_ = g.internal_;
    forged.rejected = 2;
    assert_null(email_status_recipient(&forged, 0, NULL));
    email_status_clear(&forged);
    assert_list(&g, "garbage", 2);
    email_status_clear(&g);
    email_status_clear(NULL);
}

/* Many statuses at once, none cleared until the end: every one still reads its own list. */
static void test_thousand_statuses(void **state)
{
    enum { N = 1000 };
    email_status_t *v = calloc(N, sizeof *v);
    assert_non_null(v);
    char prefix[32];
    for (size_t i = 0; i < N; i++) {
        snprintf(prefix, sizeof prefix, "s%zu", i);
        fill(&v[i], prefix, 1 + i % 3);
    }
    for (size_t i = 0; i < N; i++) {
        snprintf(prefix, sizeof prefix, "s%zu", i);
        assert_list(&v[i], prefix, 1 + i % 3);
    }
    /* half cleared: the others are untouched */
    for (size_t i = 0; i < N; i += 2)
        email_status_clear(&v[i]);
    for (size_t i = 1; i < N; i += 2) {
        snprintf(prefix, sizeof prefix, "s%zu", i);
        assert_list(&v[i], prefix, 1 + i % 3);
        email_status_clear(&v[i]);
    }
    free(v);
}

/* email_shutdown frees what is still held; the statuses read NULL and clear safely after. */
static void test_shutdown_frees_lists(void **state)
{
    email_status_t a, b;
    email__status_init(&a);
    email__status_init(&b);
    fill(&a, "a", 2);
    fill(&b, "b", 1);
    email_shutdown();
    assert_null(email_status_recipient(&a, 0, NULL));
    assert_null(email_status_recipient(&b, 0, NULL));
    email_status_clear(&a);
    fill(&b, "after", 1); /* the table works again after a shutdown */
    assert_list(&b, "after", 1);
    email_status_clear(&b);
}

/* A failure's chain of causes, outermost first: kept beside the refused recipients, read in
 * order, with the same ownership. */
static void fill_chain(email_status_t *s, const char *tag)
{
    char outer[64], inner[64];
    snprintf(outer, sizeof outer, "%s: could not connect", tag);
    snprintf(inner, sizeof inner, "%s: certificate not trusted", tag);
    email_errors_t e;
    email__errors_init(&e);
    assert_int_equal(email__errors_add(&e, EMAIL_ECONNECT, outer, NULL), 0);
    assert_int_equal(email__errors_add(&e, EMAIL_ECERT, inner, "tls"), 0);
    assert_int_equal(email__errors_add(&e, EMAIL_EINVAL, NULL, "mime"), 0);
    email__status_attach(s, NULL, &e);
    assert_int_equal(e.n, 0); /* taken */
}

static void assert_chain(const email_status_t *s, const char *tag)
{
    char outer[64], inner[64];
    snprintf(outer, sizeof outer, "%s: could not connect", tag);
    snprintf(inner, sizeof inner, "%s: certificate not trusted", tag);
    assert_int_equal(email_status_error_count(s), 3);
    int code = 0;
    const char *component = NULL;
    assert_string_equal(email_status_error(s, 0, &code, &component), outer);
    assert_int_equal(code, EMAIL_ECONNECT);
    assert_string_equal(component, "transport"); /* from the code */
    assert_string_equal(email_status_error(s, 1, &code, &component), inner);
    assert_int_equal(code, EMAIL_ECERT);
    assert_string_equal(component, "tls");
    /* no text given: the code's */
    assert_string_equal(email_status_error(s, 2, NULL, &component), email_strerror(EMAIL_EINVAL));
    assert_string_equal(component, "mime");
    assert_null(email_status_error(s, 3, &code, &component));
}

static void test_error_chain(void **state)
{
    email_status_t s;
    email__status_init(&s);
    assert_int_equal(email_status_error_count(&s), 0);
    assert_null(email_status_error(&s, 0, NULL, NULL));
    fill_chain(&s, "first");
    assert_chain(&s, "first");

    /* both lists at once, each read on its own */
    email_refusals_t r;
    email__refusals_init(&r);
    assert_int_equal(email__refusals_add(&r, "x@example.org", 550, "no"), 0);
    email_errors_t e;
    email__errors_init(&e);
    assert_int_equal(email__errors_add(&e, EMAIL_ETIMEDOUT, "silence", NULL), 0);
    email__status_attach(&s, &r, &e); /* refilled: the first chain is freed */
    assert_string_equal(email_status_recipient(&s, 0, NULL), "x@example.org");
    assert_int_equal(email_status_error_count(&s), 1);
    assert_string_equal(email_status_error(&s, 0, NULL, NULL), "silence");

    /* a copy reaches neither; clearing frees both */
    fill_chain(&s, "again");
    email_status_t copy = s;
    assert_int_equal(email_status_error_count(&copy), 0);
    assert_null(email_status_error(&copy, 0, NULL, NULL));
    email_status_clear(&copy);
    assert_chain(&s, "again");
    email_status_clear(&s);
    assert_int_equal(email_status_error_count(&s), 0);

    /* email_shutdown frees what is still held */
    fill_chain(&s, "kept");
    email_shutdown();
    assert_int_equal(email_status_error_count(&s), 0);
    email_status_clear(&s);
    email_status_clear(NULL);
    assert_int_equal(email_status_error_count(NULL), 0);
}

/* Every code has a component, in 4D's componentSignature manner. */
static void test_error_components(void **state)
{
    assert_string_equal(email__error_component(EMAIL_ECONNECT), "transport");
    assert_string_equal(email__error_component(EMAIL_ETIMEDOUT), "transport");
    assert_string_equal(email__error_component(EMAIL_ECERTNAME), "tls");
    assert_string_equal(email__error_component(EMAIL_EAUTH), "auth");
    assert_string_equal(email__error_component(EMAIL_EUNKNOWN), "smtp");
    assert_string_equal(email__error_component(EMAIL_ECHARSET), "mime");
    assert_string_equal(email__error_component(EMAIL_ECANCELED), "transporter");
#define XX(name, value, text) assert_non_null(email__error_component(EMAIL_##name));
    EMAIL_ERRNO_MAP(XX)
#undef XX
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_after_filling_thread_exited),
        cmocka_unit_test(test_clear_from_another_thread),
        cmocka_unit_test(test_copies),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_zeroed_and_uninitialised),
        cmocka_unit_test(test_thousand_statuses),
        cmocka_unit_test(test_shutdown_frees_lists),
        cmocka_unit_test(test_error_chain),
        cmocka_unit_test(test_error_components),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
