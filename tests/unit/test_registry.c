/*
 * Unit tests of lib/registry.c: the outcome of every message id (EMAIL_PENDING, EMAIL_SENT,
 * EMAIL_ERROR, EMAIL_ENOTFOUND), the last REGISTRY_KEEP (65536) finished ones kept, pending ones
 * always, and the same answers when several threads write and read at once. The registry is
 * global: each test uses ids of its own range, and email_message_new gives the unique ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>

#include "emailsession.h"
#include "registry.h"

#define KEEP 65536 /* REGISTRY_KEEP: finished outcomes kept */

/* Ids of one test: base + i, far from the other tests' and from email_message_new's. */
#define RANGE(n) ((uint64_t)(n) << 40)

enum { ID_THREADS = 4, IDS_EACH = 1000 };

/* Messages made (and freed) by one thread, their ids written to arg. */
static void *make_ids(void *arg)
{
    uint64_t *ids = arg;
    for (int i = 0; i < IDS_EACH; i++) {
        email_message_t *m = email_message_new();
        ids[i] = m ? email_message_id(m) : 0;
        email_message_free(m);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Ids made in several threads at once are all different, never 0, and unknown to the registry
   until queued. */
static void test_ids_unique(void **state)
{
    (void)state;
    static uint64_t ids[ID_THREADS * IDS_EACH];
    pthread_t t[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, make_ids, ids + i * IDS_EACH), 0);
    for (int i = 0; i < ID_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    qsort(ids, ID_THREADS * IDS_EACH, sizeof *ids, cmp_id);
    assert_true(ids[0] != 0);
    for (int i = 1; i < ID_THREADS * IDS_EACH; i++)
        if (ids[i] == ids[i - 1])
            fail_msg("id %llu handed out twice", (unsigned long long)ids[i]);
    for (int i = 0; i < ID_THREADS * IDS_EACH; i++)
        assert_int_equal(email__registry_get(ids[i]), EMAIL_ENOTFOUND);
}

static void test_transitions(void **state)
{
    (void)state;
    uint64_t a = RANGE(1) + 1, b = RANGE(1) + 2;
    assert_int_equal(email__registry_get(a), EMAIL_ENOTFOUND);
    email__registry_pending(a);
    email__registry_pending(b);
    assert_int_equal(email__registry_get(a), EMAIL_PENDING);
    assert_int_equal(email__registry_get(b), EMAIL_PENDING);
    email__registry_done(a, EMAIL_SENT);
    email__registry_done(b, EMAIL_ERROR);
    assert_int_equal(email__registry_get(a), EMAIL_SENT);
    assert_int_equal(email__registry_get(b), EMAIL_ERROR);
    /* an id queued again (the same message sent twice) is pending again, then has its new
       outcome */
    email__registry_pending(a);
    assert_int_equal(email__registry_get(a), EMAIL_PENDING);
    email__registry_done(a, EMAIL_ERROR);
    assert_int_equal(email__registry_get(a), EMAIL_ERROR);
    /* an outcome without a pending state before it (a message refused before being queued) */
    email__registry_done(RANGE(1) + 3, EMAIL_ERROR);
    assert_int_equal(email__registry_get(RANGE(1) + 3), EMAIL_ERROR);
}

static void test_unknown_ids(void **state)
{
    (void)state;
    email__registry_pending(RANGE(2) + 10);
    static const uint64_t unknown[] = {0, 1u << 20, RANGE(2) + 9, RANGE(2) + 11, UINT64_MAX,
                                       RANGE(2) + 10 + ((uint64_t)1 << 63)};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        assert_int_equal(email__registry_get(unknown[i]), EMAIL_ENOTFOUND);
    assert_int_equal(email__registry_get(RANGE(2) + 10), EMAIL_PENDING);
}

/* Many ids: the table grows and every one is still found, with its own state. */
static void test_many_ids(void **state)
{
    (void)state;
    enum { N = 20000 };
    for (uint64_t i = 0; i < N; i++)
        email__registry_pending(RANGE(3) + i * 1024);
    for (uint64_t i = 0; i < N; i += 2)
        email__registry_done(RANGE(3) + i * 1024, i % 4 ? EMAIL_ERROR : EMAIL_SENT);
    for (uint64_t i = 0; i < N; i++) {
        int want = i % 2 ? EMAIL_PENDING : i % 4 ? EMAIL_ERROR : EMAIL_SENT;
        assert_int_equal(email__registry_get(RANGE(3) + i * 1024), want);
        assert_int_equal(email__registry_get(RANGE(3) + i * 1024 + 1), EMAIL_ENOTFOUND);
    }
}

/* The last KEEP finished outcomes are kept, older ones forgotten; a pending id never is. */
static void test_keeps_the_last_outcomes(void **state)
{
    (void)state;
    uint64_t base = RANGE(4), pending = RANGE(4) - 1;
    email__registry_pending(pending);
    for (uint64_t i = 0; i < KEEP + 100; i++)
        email__registry_done(base + i, EMAIL_SENT);
    /* the ring holds these last KEEP: the first 100 left it */
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(email__registry_get(base + i), EMAIL_ENOTFOUND);
    for (uint64_t i = 100; i < KEEP + 100; i++)
        assert_int_equal(email__registry_get(base + i), EMAIL_SENT);
    assert_int_equal(email__registry_get(pending), EMAIL_PENDING);
    /* a pending id whose old outcome leaves the ring stays pending */
    email__registry_pending(base + 100);
    for (uint64_t i = 0; i < 10; i++)
        email__registry_done(base + KEEP + 100 + i, EMAIL_SENT);
    assert_int_equal(email__registry_get(base + 100), EMAIL_PENDING);
    assert_int_equal(email__registry_get(base + 110), EMAIL_SENT);
    email__registry_done(base + 100, EMAIL_ERROR);
    assert_int_equal(email__registry_get(base + 100), EMAIL_ERROR);
    email__registry_done(pending, EMAIL_SENT);
}

/* ---- Several threads ---- */

enum { THREADS = 4, PER_THREAD = 5000 };
static const uint64_t watched = RANGE(5) - 1; /* pending while the threads run */

typedef struct worker {
    uint64_t base;
    int wrong;      /* answers that were not what this thread had just written */
} worker_t;

/* Each thread queues and finishes ids of its own, checking each answer as it goes, and reads
   the watched id, which no thread changes. */
static void *work(void *arg)
{
    worker_t *w = arg;
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        uint64_t id = w->base + i;
        email__registry_pending(id);
        w->wrong += email__registry_get(id) != EMAIL_PENDING;
        int outcome = i % 3 ? EMAIL_SENT : EMAIL_ERROR;
        email__registry_done(id, outcome);
        w->wrong += email__registry_get(id) != outcome;
        w->wrong += email__registry_get(watched) != EMAIL_PENDING;
        w->wrong += email__registry_get(w->base - 1 - i) != EMAIL_ENOTFOUND;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    email__registry_pending(watched);
    pthread_t t[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){RANGE(6 + i), 0};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].wrong, 0);
    }
    /* fewer outcomes than the ring keeps: every one is still there */
    for (int k = 0; k < THREADS; k++)
        for (uint64_t i = 0; i < PER_THREAD; i++)
            assert_int_equal(email__registry_get(w[k].base + i), i % 3 ? EMAIL_SENT : EMAIL_ERROR);
    assert_int_equal(email__registry_get(watched), EMAIL_PENDING);
    email__registry_done(watched, EMAIL_SENT);
}

/* ---- Memory ---- */

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* small blocks + the large ones mmap'ed */
}

/*
 * The header promises that a daemon sending for months does not grow without bound. Forgotten
 * outcomes leave tombstones that only grow() removes, and grow() used to double the table
 * however few entries were live: the table grew with every message ever sent (about 22 octets
 * a message, 67 MB after 3 million). Skipped under valgrind, whose allocator mallinfo2 does not
 * see.
 */
static void test_memory_bounded(void **state)
{
    (void)state;
    if (heap_in_use() == 0)
        skip();
    uint64_t base = RANGE(20);
    for (uint64_t i = 0; i < 1000000; i++)
        email__registry_done(base + i, EMAIL_SENT);
    size_t before = heap_in_use();
    for (uint64_t i = 1000000; i < 3000000; i++)
        email__registry_done(base + i, EMAIL_SENT);
    size_t after = heap_in_use();
    /* the same KEEP outcomes live before and after: the table need not be any larger */
    if (after > before + (1u << 20))
        fail_msg("the heap grew from %zu to %zu octets for the same %d outcomes kept", before,
                 after, KEEP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_unique),
        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_unknown_ids),
        cmocka_unit_test(test_many_ids),
        cmocka_unit_test(test_keeps_the_last_outcomes),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_memory_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
