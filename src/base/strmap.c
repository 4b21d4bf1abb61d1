#include "base/strmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

/*
 * Seeded per process: keys come from clients (client ids, topic filters),
 * and an unseeded hash would let a client choose keys that all land in one
 * bucket, turning every lookup into a list walk that the other clients of
 * its worker wait through. FNV-1a from a random basis, then a full
 * avalanche so the bucket bits depend on the whole state. Not a
 * cryptographic PRF; the seed only makes aimed collisions impractical.
 */
static uint64_t hash_seed;
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void hash_seed_init(void) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&seed;
    }
    hash_seed = seed;
}

uint64_t strmap_hash(const void *key, size_t len) {
    pthread_once(&hash_once, hash_seed_init);
    const uint8_t *p = key;
    uint64_t h = 1469598103934665603ull ^ hash_seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

void strmap_init(struct strmap *m) {
    memset(m, 0, sizeof(*m));
}

void strmap_free(struct strmap *m) {
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_entry *e = m->buckets[i];
        while (e) {
            struct strmap_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(m->buckets);
    strmap_init(m);
}

static struct strmap_entry **find(const struct strmap *m, const char *key, size_t len, uint64_t h) {
    if (!m->nbuckets)
        return NULL;
    struct strmap_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp) {
        struct strmap_entry *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return pp;
        pp = &e->next;
    }
    return pp;
}

void *strmap_get(const struct strmap *m, const char *key, size_t len) {
    struct strmap_entry **pp = find(m, key, len, strmap_hash(key, len));
    return pp && *pp ? (*pp)->val : NULL;
}

static int grow(struct strmap *m) {
    size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
    struct strmap_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct strmap_entry *e = m->buckets[i];
        while (e) {
            struct strmap_entry *next = e->next;
            size_t k = e->hash & (n - 1);
            e->next = b[k];
            b[k] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

int strmap_put(struct strmap *m, const char *key, size_t len, void *val) {
    uint64_t h = strmap_hash(key, len);
    struct strmap_entry **pp = find(m, key, len, h);
    if (pp && *pp) {
        (*pp)->key = key;
        (*pp)->val = val;
        return 0;
    }
    if (m->count + 1 > m->nbuckets * 3 / 4) {
        if (grow(m) < 0)
            return -1;
        pp = find(m, key, len, h);
    }
    struct strmap_entry *e = malloc(sizeof(*e));
    if (!e)
        return -1;
    *e = (struct strmap_entry){NULL, key, len, h, val};
    *pp = e;
    m->count++;
    return 0;
}

void *strmap_del(struct strmap *m, const char *key, size_t len) {
    struct strmap_entry **pp = find(m, key, len, strmap_hash(key, len));
    if (!pp || !*pp)
        return NULL;
    struct strmap_entry *e = *pp;
    void *val = e->val;
    *pp = e->next;
    free(e);
    m->count--;
    return val;
}

void strmap_each(const struct strmap *m, void (*fn)(void *ctx, void *val), void *ctx) {
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct strmap_entry *e = m->buckets[i]; e; e = e->next)
            fn(ctx, e->val);
}
