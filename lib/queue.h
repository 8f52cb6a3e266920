/*
 * An intrusive queue: a circular doubly-linked list whose links live inside the queued objects,
 * so queueing never allocates and an object leaves its queue in O(1) without a walk. A queue is a
 * queue_t head; an object embeds a queue_t node per queue it can be in at the same time, and
 * queue_data() turns a node back into its object. The head's next is the first node, its prev
 * the last; an empty head points at itself both ways.
 *
 * A node taken out with queue_remove points at itself again, so queue_empty(node) on a node
 * answers "in no queue": a cancel can tell "still queued" without searching. Ask that only of a
 * node that was initialised (queue_init) or inserted once: a zeroed node is neither.
 */
#ifndef EMAIL_QUEUE_H
#define EMAIL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct queue {
    struct queue *next;
    struct queue *prev;
} queue_t;

/* The object of type `type` whose member `field` is the node. */
#define queue_data(node, type, field) ((type *)(void *)((char *)(node) - offsetof(type, field)))

/* A static initializer of the empty queue q: static queue_t q = QUEUE_INITIALIZER(q); */
#define QUEUE_INITIALIZER(q) {&(q), &(q)}

/* Every node of q in order, in n; the body must not remove n (use queue_head in a loop then). */
#define queue_foreach(n, q) for ((n) = (q)->next; (n) != (q); (n) = (n)->next)

static inline void queue_init(queue_t *q)
{
    q->next = q;
    q->prev = q;
}

static inline bool queue_empty(const queue_t *q)
{
    return q->next == q;
}

/* The first node; q itself when q is empty. */
static inline queue_t *queue_head(const queue_t *q)
{
    return q->next;
}

/* The node after n; the head when n is the last. */
static inline queue_t *queue_next(const queue_t *n)
{
    return n->next;
}

static inline void queue_insert_tail(queue_t *q, queue_t *n)
{
    n->next = q;
    n->prev = q->prev;
    q->prev->next = n;
    q->prev = n;
}

static inline void queue_insert_head(queue_t *q, queue_t *n)
{
    n->next = q->next;
    n->prev = q;
    q->next->prev = n;
    q->next = n;
}

/* Takes n out of its queue; n is then in none (queue_empty(n)), and removing it again is
 * harmless. */
static inline void queue_remove(queue_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    queue_init(n);
}

/* Appends every node of from to the tail of q, in order; from is left empty. */
static inline void queue_add(queue_t *q, queue_t *from)
{
    if (queue_empty(from))
        return;
    from->next->prev = q->prev;
    q->prev->next = from->next;
    from->prev->next = q;
    q->prev = from->prev;
    queue_init(from);
}

/* Every node of from, in order, now in to (whatever to held is dropped); from is left empty. */
static inline void queue_move(queue_t *from, queue_t *to)
{
    queue_init(to);
    queue_add(to, from);
}

#endif
