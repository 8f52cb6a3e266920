/*
 * Outcome of every message id: an open-addressing hash table under a mutex. Finished outcomes
 * are kept for the last REGISTRY_KEEP messages (a ring of ids), so a daemon sending for months
 * does not grow without bound; pending ones are always kept.
 */
#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "emailsession.h"

#define REGISTRY_KEEP 65536

typedef struct entry {
    uint64_t id; /* 0 = empty */
    int state;
} entry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *table;
static size_t cap, used; /* used counts live entries and tombstones */
static uint64_t *ring;   /* finished ids, oldest evicted first */
static size_t ring_pos, ring_len;

#define DELETED (-1)

static atomic_uint_fast64_t last_id;

uint64_t email__registry_new_id(void)
{
    return atomic_fetch_add(&last_id, 1) + 1;
}

uint64_t email__registry_ids_above(uint64_t floor)
{
    uint_fast64_t cur = atomic_load(&last_id);
    while (cur < floor && !atomic_compare_exchange_weak(&last_id, &cur, floor)) {
    }
    return cur > floor ? cur : floor;
}

static size_t slot_of(uint64_t id, size_t n)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (n - 1);
}

static entry_t *find(uint64_t id)
{
    if (!table)
        return NULL;
    for (size_t i = slot_of(id, cap);; i = (i + 1) & (cap - 1)) {
        if (table[i].id == 0)
            return NULL;
        if (table[i].id == id && table[i].state != DELETED)
            return &table[i];
    }
}

/*
 * Rehashes the table, dropping the tombstones of forgotten outcomes: at the same size when the
 * live entries fill at most half of it (a daemon's steady state: the table stays bounded),
 * twice the size otherwise.
 */
static int grow(void)
{
    size_t live = 0;
    for (size_t i = 0; i < cap; i++)
        live += table[i].id && table[i].state != DELETED;
    size_t ncap = !cap ? 1024 : live * 2 <= cap ? cap : cap * 2;
    entry_t *t = calloc(ncap, sizeof *t);
    if (!t)
        return -1;
    live = 0;
    for (size_t i = 0; i < cap; i++) {
        if (!table[i].id || table[i].state == DELETED)
            continue;
        size_t j = slot_of(table[i].id, ncap);
        while (t[j].id)
            j = (j + 1) & (ncap - 1);
        t[j] = table[i];
        live++;
    }
    free(table);
    table = t;
    cap = ncap;
    used = live;
    return 0;
}

static void put(uint64_t id, int state)
{
    entry_t *e = find(id);
    if (e) {
        e->state = state;
        return;
    }
    if ((used + 1) * 4 > cap * 3 && grow() != 0)
        return;
    size_t i = slot_of(id, cap);
    while (table[i].id)
        i = (i + 1) & (cap - 1);
    table[i].id = id;
    table[i].state = state;
    used++;
}

void email__registry_pending(uint64_t id)
{
    pthread_mutex_lock(&lock);
    put(id, EMAIL_PENDING);
    pthread_mutex_unlock(&lock);
}

void email__registry_done(uint64_t id, int state)
{
    pthread_mutex_lock(&lock);
    put(id, state);
    if (!ring)
        ring = calloc(REGISTRY_KEEP, sizeof *ring);
    if (ring) {
        if (ring_len == REGISTRY_KEEP) {
            entry_t *old = find(ring[ring_pos]);
            if (old && old->state != EMAIL_PENDING)
                old->state = DELETED;
        } else {
            ring_len++;
        }
        ring[ring_pos] = id;
        ring_pos = (ring_pos + 1) % REGISTRY_KEEP;
    }
    pthread_mutex_unlock(&lock);
}

int email__registry_get(uint64_t id)
{
    pthread_mutex_lock(&lock);
    entry_t *e = find(id);
    int state = e ? e->state : EMAIL_ENOTFOUND;
    pthread_mutex_unlock(&lock);
    return state;
}
