/*
 * Subscription tree: which sessions subscribed to which topic filters, and
 * which of them a published topic reaches.
 *
 * A trie with one node per filter level. Literal levels are kept in a small
 * open-addressing hash per node; '+' and '#' have dedicated slots. Matching
 * a topic walks its levels and visits only nodes that can match, so its cost
 * grows with the number of topic levels (and of matching '+' branches), not
 * with the number of subscriptions. The walk allocates nothing and does not
 * recurse: the topic itself is the stack (see docs/internals/subtree.md).
 *
 * Thread safety: one pthread rwlock per tree. sub_tree_match runs under the
 * read lock and may run on many threads at once; add and remove take the
 * write lock. The callbacks (sub_avail_fn, sub_match_fn) run with the read
 * lock held: they must not call back into the same tree, and should be
 * quick.
 *
 * Ownership: the tree never dereferences, copies or frees `owner` pointers;
 * it copies filters and options.
 */
#ifndef HATO_BROKER_SUBTREE_H
#define HATO_BROKER_SUBTREE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sub_opts {
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
    uint32_t sub_id; /* 0 = none */
};

/*
 * Called for each matching subscription. `opts` points into the tree and is
 * valid only during the call. `shared` is true when the subscription is the
 * chosen member of a shared group.
 */
typedef void (*sub_match_fn)(void *ctx, void *owner, const struct sub_opts *opts, bool shared);
/* May `owner` take a shared message now (is it online)? Called under the read lock. */
typedef bool (*sub_avail_fn)(void *owner);

/* New empty tree; `avail` may be NULL (every member available). NULL when out of memory. */
struct sub_tree *sub_tree_new(sub_avail_fn avail);
/* Free the tree and all its nodes. NULL is accepted. No other thread may use it. */
void sub_tree_free(struct sub_tree *t);

/*
 * Add or replace the subscription of `owner` to `filter` (filter[0..len),
 * already validated by the caller; may be "$share/GROUP/FILTER", in which
 * case the subscription joins group GROUP at FILTER's node). The filter is
 * copied. Returns 1 if new, 0 if it replaced an existing one (options
 * updated), -1 when out of memory (or for a malformed $share filter, which
 * the caller must have rejected); on -1 the tree is unchanged.
 */
int sub_tree_add(struct sub_tree *t, const char *filter, size_t len, void *owner,
                 const struct sub_opts *opts);
/* Remove the subscription of `owner` to `filter`; returns 1 if removed, 0 if there was none. */
int sub_tree_remove(struct sub_tree *t, const char *filter, size_t len, void *owner);

/*
 * For shared subscription `share` ("$share/GROUP/FILTER", exactly as
 * subscribed): call fn for one member, picked as sub_tree_match picks
 * (shared=true); no call when the group has no member here. Read lock.
 */
void sub_tree_group_pick(struct sub_tree *t, const char *share, size_t len, sub_match_fn fn,
                         void *ctx);

/*
 * Call fn for every subscription matching `topic` (a valid topic name).
 *
 * Non-shared: every matching (owner, filter) pair, so one owner may be
 * reported several times (the caller merges per owner: highest QoS, all
 * subscription ids). Shared: for each matching group (same GROUP and same
 * FILTER) exactly one member, round robin among the members for which
 * avail(owner) is true (among all members if none is), with shared=true.
 * Topics starting with '$' are not matched by filters whose first level is
 * '+' or '#' (MQTT-4.7.2-1).
 *
 * Runs under the read lock; does not allocate. fn must not call back into
 * this tree.
 */
void sub_tree_match(struct sub_tree *t, const char *topic, size_t len, sub_match_fn fn, void *ctx);

/*
 * The tree's generation: changes with every add (new or replaced options)
 * and every remove. Two sub_tree_match calls for one topic report the same
 * non-shared subscriptions, in the same order, when the generation read
 * before the first is still the generation read before the second (shared
 * groups pick a member per call: never the same answer twice).
 */
uint64_t sub_tree_gen(struct sub_tree *t);

/* Number of subscriptions (shared members included), for $SYS and metrics. */
size_t sub_tree_count(struct sub_tree *t);
/* Of those, the members of shared subscriptions ($share/...). */
size_t sub_tree_shared_count(struct sub_tree *t);
/* Number of trie nodes besides the root (0 for an empty tree): tests and debugging. */
size_t sub_tree_node_count(struct sub_tree *t);

/*
 * Internal: the per-node map of literal levels, shared with retain.c.
 *
 * A node embeds a struct sub_key (its level name and hash); the map holds
 * pointers to those keys with linear probing and backward-shift deletion.
 * It never owns the keys. Hashes come from sub_level_hash with a per-tree
 * random seed, so children names chosen by clients cannot be made to
 * collide on purpose without knowing it.
 */
struct sub_key {
    const char *name; /* not NUL-terminated */
    uint32_t len;
    uint32_t hash;
};
struct sub_lslot {
    uint32_t hash;
    struct sub_key *key; /* NULL = empty */
};
struct sub_lmap {
    struct sub_lslot *slots; /* NULL when cap == 0 */
    uint32_t cap;            /* 0 or a power of two */
    uint32_t n;
};

uint64_t sub_level_seed(void);
uint32_t sub_level_hash(uint64_t seed, const char *s, size_t len);
/* The key equal to s[0..len) with hash h, or NULL. */
struct sub_key *sub_lmap_find(const struct sub_lmap *m, const char *s, size_t len, uint32_t h);
/* Insert k (not present). 0, or -1 when out of memory (map unchanged). */
int sub_lmap_put(struct sub_lmap *m, struct sub_key *k);
/* Remove k (present); may shrink the table. Moves other entries (backward shift). */
void sub_lmap_del(struct sub_lmap *m, struct sub_key *k);
/* Slot index of k (present). */
uint32_t sub_lmap_index(const struct sub_lmap *m, const struct sub_key *k);
/* First key at slot index >= i, its index in *at; NULL if none. */
struct sub_key *sub_lmap_next(const struct sub_lmap *m, uint32_t i, uint32_t *at);
void sub_lmap_free(struct sub_lmap *m);

/* Initialise a writer-preferring rwlock (tree and retained store). 0 or an errno. */
int sub_rwlock_init(pthread_rwlock_t *lock);

#endif
