/*
 * Retained messages: at most one message per topic, kept in a trie by
 * level so that a filter visits only the topics it can match ("#" over N
 * topics is one walk of N nodes; "a/+/c" looks at a's children and then
 * one exact child each).
 *
 * Thread safety: one pthread rwlock per store. retain_match, retain_foreach
 * and retain_count may run on many threads at once (read lock); retain_set
 * and retain_expire take the write lock. Callbacks run under the read lock
 * and must not call back into the store.
 *
 * Ownership: the store holds one reference (msg_ref) on every message it
 * keeps and drops it when the message is replaced, deleted, expired or the
 * store is freed. Callbacks get borrowed pointers: msg_ref to keep one.
 */
#ifndef HATO_BROKER_RETAIN_H
#define HATO_BROKER_RETAIN_H

#include <stddef.h>
#include <stdint.h>

#include "broker/msg.h"

/* New empty store, NULL when out of memory. */
struct retain_store *retain_new(void);
/* Drop every message and free the store. NULL is accepted. */
void retain_free(struct retain_store *rs);

/*
 * Keep m (taking a new reference) as the retained message of m->topic,
 * replacing and unreferencing any previous one. If m->payload_len == 0,
 * delete the topic's retained message instead and keep nothing
 * (MQTT-3.3.1-10, -11). Returns 0, or -1 when out of memory (the store is
 * then unchanged; the old message, if any, stays).
 */
int retain_set(struct retain_store *rs, struct msg *m);

/*
 * Call fn for each retained message whose topic matches `filter` (a valid
 * filter, not $share), in no particular order. Filters whose first level is
 * '+' or '#' do not match topics starting with '$' (MQTT-4.7.2-1). Expired
 * messages are skipped (and left for retain_expire). fn gets a borrowed
 * pointer; it runs under the read lock and must not call back into the store.
 */
typedef void (*retain_fn)(void *ctx, struct msg *m);
void retain_match(struct retain_store *rs, const char *filter, size_t len, retain_fn fn, void *ctx);

/* Number of retained messages held (expired ones not yet removed included). */
size_t retain_count(struct retain_store *rs);

/* Visit every retained message, expired or not (persistence, dumps). Read lock. */
void retain_foreach(struct retain_store *rs, retain_fn fn, void *ctx);

/*
 * Remove the messages expired at now_ms (CLOCK_REALTIME milliseconds, see
 * msg_now_ms) and prune their nodes. Returns how many were removed. Cheap
 * (no walk) until the earliest known expiry is reached; call it
 * periodically, e.g. once a second.
 */
size_t retain_expire(struct retain_store *rs, int64_t now_ms);

/* Number of trie nodes besides the root: tests and debugging. */
size_t retain_node_count(struct retain_store *rs);

#endif
