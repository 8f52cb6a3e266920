/*
 * A growable FIFO of fixed-size elements in a ring: pushed at the tail, read and dropped at the
 * head, grown by doubling and never shrunk, so a steady stream allocates nothing. The element
 * size is given at each call (a sizeof at the call site, which the compiler folds in). Used for
 * the engine's expected replies and the connection's TLS write credits.
 */
#ifndef EMAIL_RING_H
#define EMAIL_RING_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct email_ring {
    char *v;
    size_t head, len, cap;   /* in elements; zeroed = empty */
} email_ring_t;

/* The i-th element from the head (i < len). */
static inline void *email_ring_at(const email_ring_t *r, size_t size, size_t i)
{
    return r->v + (r->head + i) % r->cap * size;
}

/* A new element at the tail, for the caller to fill; first_cap elements at the first push.
 * NULL when out of memory (the ring is unchanged). */
static inline void *email_ring_push(email_ring_t *r, size_t size, size_t first_cap)
{
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : first_cap;
        char *v = malloc(cap * size);
        if (!v)
            return NULL;
        if (r->len) {
            /* full: from the head to the end of the array, then the part that wrapped */
            size_t first = r->cap - r->head;
            memcpy(v, r->v + r->head * size, first * size);
            memcpy(v + first * size, r->v, r->head * size);
        }
        free(r->v);
        r->v = v;
        r->head = 0;
        r->cap = cap;
    }
    r->len++;
    return email_ring_at(r, size, r->len - 1);
}

/* Drops the element at the head (the ring must not be empty). */
static inline void email_ring_drop(email_ring_t *r)
{
    r->head = (r->head + 1) % r->cap;
    r->len--;
}

static inline void email_ring_free(email_ring_t *r)
{
    free(r->v);
    *r = (email_ring_t){0};
}

#endif
