/*
 * A hash map from byte strings to pointers. Keys are borrowed: the caller
 * keeps each key's bytes alive and unchanged while it is in the map (the
 * broker keys sessions by the client id stored in the session itself).
 * Not thread-safe: one owner.
 */
#ifndef HATO_BASE_STRMAP_H
#define HATO_BASE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap_entry {
    struct strmap_entry *next;
    const char *key;
    size_t len;
    uint64_t hash;
    void *val;
};

struct strmap {
    struct strmap_entry **buckets;
    size_t nbuckets; /* power of two, or 0 before the first put */
    size_t count;
};

/* Seeded once per process (client-chosen keys cannot aim at one bucket):
 * the same within a process, across its threads; never store it. */
uint64_t strmap_hash(const void *key, size_t len);
void strmap_init(struct strmap *m);
/* Frees the map's own memory, not keys or values. */
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key, size_t len);
/* Insert or replace. Returns 0, or -1 when out of memory. */
int strmap_put(struct strmap *m, const char *key, size_t len, void *val);
/* Remove; returns the value that was there, or NULL. */
void *strmap_del(struct strmap *m, const char *key, size_t len);
/* Call fn for every value; fn must not change the map. */
void strmap_each(const struct strmap *m, void (*fn)(void *ctx, void *val), void *ctx);

#endif
