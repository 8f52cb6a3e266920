/*
 * lib/queue.h, the one intrusive queue: order, O(1) removal from anywhere, "in no queue" after a
 * removal, appending and moving whole queues, and a random sequence checked against an array
 * model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "queue.h"

typedef struct item {
    int value;
    queue_t node;
} item_t;

/* The values of q in order, as a -1-terminated array of at most n; checks the back links too. */
static size_t values(const queue_t *q, int *out, size_t n)
{
    size_t k = 0;
    const queue_t *prev = q;
    queue_t *it;
    queue_foreach(it, (queue_t *)q)
    {
        assert_ptr_equal(it->prev, prev);
        assert_true(k < n);
        out[k++] = queue_data(it, item_t, node)->value;
        prev = it;
    }
    assert_ptr_equal(q->prev, prev);
    return k;
}

static void assert_values(const queue_t *q, const int *want, size_t n)
{
    int got[64];
    size_t k = values(q, got, 64);
    assert_int_equal(k, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

static void test_order_and_removal(void **state)
{
    (void)state;
    static queue_t q = QUEUE_INITIALIZER(q);
    assert_true(queue_empty(&q));
    assert_ptr_equal(queue_head(&q), &q);
    item_t it[5];
    for (int i = 0; i < 5; i++) {
        it[i].value = i;
        queue_insert_tail(&q, &it[i].node);
    }
    assert_values(&q, (int[]){0, 1, 2, 3, 4}, 5);
    assert_ptr_equal(queue_data(queue_head(&q), item_t, node), &it[0]);
    assert_ptr_equal(queue_next(&it[4].node), &q);

    queue_remove(&it[2].node); /* middle */
    assert_true(queue_empty(&it[2].node));
    queue_remove(&it[2].node); /* again: harmless */
    queue_remove(&it[0].node); /* head */
    queue_remove(&it[4].node); /* tail */
    assert_values(&q, (int[]){1, 3}, 2);
    assert_false(queue_empty(&it[1].node));

    queue_insert_head(&q, &it[0].node);
    queue_insert_tail(&q, &it[4].node);
    assert_values(&q, (int[]){0, 1, 3, 4}, 4);
    while (!queue_empty(&q))
        queue_remove(queue_head(&q));
    assert_values(&q, NULL, 0);
}

static void test_add_and_move(void **state)
{
    (void)state;
    queue_t a, b, c;
    queue_init(&a);
    queue_init(&b);
    item_t it[6];
    for (int i = 0; i < 6; i++) {
        it[i].value = i;
        queue_insert_tail(i < 3 ? &a : &b, &it[i].node);
    }
    queue_add(&a, &b);
    assert_values(&a, (int[]){0, 1, 2, 3, 4, 5}, 6);
    assert_true(queue_empty(&b));
    queue_add(&a, &b); /* an empty one adds nothing */
    assert_values(&a, (int[]){0, 1, 2, 3, 4, 5}, 6);
    queue_add(&b, &a); /* into an empty one */
    assert_values(&b, (int[]){0, 1, 2, 3, 4, 5}, 6);
    assert_true(queue_empty(&a));
    queue_move(&b, &c);
    assert_true(queue_empty(&b));
    assert_values(&c, (int[]){0, 1, 2, 3, 4, 5}, 6);
    queue_remove(&it[3].node);
    assert_values(&c, (int[]){0, 1, 2, 4, 5}, 5);
}

/* A random sequence of inserts and removals against an array holding the expected order. */
static void test_random_against_model(void **state)
{
    (void)state;
    enum { N = 32 };
    item_t it[N];
    bool in[N] = {false};
    int model[N];
    size_t len = 0;
    queue_t q;
    queue_init(&q);
    for (int i = 0; i < N; i++) {
        it[i].value = i;
        queue_init(&it[i].node);
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int step = 0; step < 20000; step++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int i = (int)(s % N);
        assert_int_equal(queue_empty(&it[i].node), !in[i]);
        if (in[i]) {
            queue_remove(&it[i].node);
            size_t k = 0;
            while (model[k] != i)
                k++;
            for (; k + 1 < len; k++)
                model[k] = model[k + 1];
            len--;
        } else if (s & 0x100) {
            queue_insert_tail(&q, &it[i].node);
            model[len++] = i;
        } else {
            queue_insert_head(&q, &it[i].node);
            for (size_t k = len; k > 0; k--)
                model[k] = model[k - 1];
            model[0] = i;
            len++;
        }
        in[i] = !in[i];
        if (step % 97 == 0)
            assert_values(&q, model, len);
    }
    assert_values(&q, model, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_removal),
        cmocka_unit_test(test_add_and_move),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
