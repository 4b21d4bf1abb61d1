#include "broker/subtree.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Level hash and the per-node map of literal levels                         */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t rotl64(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

uint64_t sub_level_seed(void) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&seed;
    }
    return mix64(seed);
}

static inline uint64_t load64(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t load32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t fold(uint64_t h, uint64_t v) {
    return rotl64(h ^ (v * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
}

/*
 * A fast seeded hash: 8-byte words, the tail read with overlapping loads
 * (no byte-by-byte copy, which stalls store forwarding). Not a
 * cryptographic PRF; the seed only makes deliberate collisions impractical
 * to aim without feedback.
 */
uint32_t sub_level_hash(uint64_t seed, const char *s, size_t len) {
    uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL);
    if (len >= 8) {
        size_t i = 0;
        for (; i + 8 < len; i += 8)
            h = fold(h, load64(s + i));
        h = fold(h, load64(s + len - 8)); /* last word, may overlap */
    } else if (len >= 4) {
        h = fold(h, ((uint64_t)load32(s) << 32) | load32(s + len - 4));
    } else if (len) {
        uint64_t v = ((uint64_t)(uint8_t)s[0] << 16) | ((uint64_t)(uint8_t)s[len >> 1] << 8) |
                     (uint8_t)s[len - 1];
        h = fold(h, v);
    }
    return (uint32_t)mix64(h);
}

/* Equality of two level names of length len; short ones without a libc call. */
static inline bool name_eq(const char *a, const char *b, size_t len) {
    if (len >= 8) {
        if (len > 16)
            return memcmp(a, b, len) == 0;
        return load64(a) == load64(b) && load64(a + len - 8) == load64(b + len - 8);
    }
    if (len >= 4)
        return load32(a) == load32(b) && load32(a + len - 4) == load32(b + len - 4);
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

#define LMAP_MIN 4

struct sub_key *sub_lmap_find(const struct sub_lmap *m, const char *s, size_t len, uint32_t h) {
    if (!m->cap)
        return NULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const struct sub_lslot *sl = &m->slots[i];
        if (!sl->key)
            return NULL;
        if (sl->hash == h && sl->key->len == len && name_eq(sl->key->name, s, len))
            return sl->key;
    }
}

static int lmap_resize(struct sub_lmap *m, uint32_t cap) {
    struct sub_lslot *s = calloc(cap, sizeof(*s));
    if (!s)
        return -1;
    uint32_t mask = cap - 1;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        uint32_t j = m->slots[i].hash & mask;
        while (s[j].key)
            j = (j + 1) & mask;
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int sub_lmap_put(struct sub_lmap *m, struct sub_key *k) {
    /* Load factor at most 3/4. */
    if ((uint64_t)(m->n + 1) * 4 > (uint64_t)m->cap * 3) {
        if (m->cap >= (1u << 30) || lmap_resize(m, m->cap ? m->cap * 2 : LMAP_MIN) < 0)
            return -1;
    }
    uint32_t mask = m->cap - 1, i = k->hash & mask;
    while (m->slots[i].key)
        i = (i + 1) & mask;
    m->slots[i].hash = k->hash;
    m->slots[i].key = k;
    m->n++;
    return 0;
}

uint32_t sub_lmap_index(const struct sub_lmap *m, const struct sub_key *k) {
    uint32_t mask = m->cap - 1, i = k->hash & mask;
    while (m->slots[i].key != k)
        i = (i + 1) & mask;
    return i;
}

/* Is `home` outside the cyclic interval (hole, j]? Then the entry at j may move to hole. */
static inline bool may_shift(uint32_t hole, uint32_t j, uint32_t home) {
    if (hole <= j)
        return home <= hole || home > j;
    return home <= hole && home > j;
}

void sub_lmap_del(struct sub_lmap *m, struct sub_key *k) {
    uint32_t mask = m->cap - 1, hole = sub_lmap_index(m, k);
    for (uint32_t j = (hole + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        if (may_shift(hole, j, m->slots[j].hash & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = NULL;
    m->slots[hole].hash = 0;
    m->n--;
    if (m->n == 0) {
        sub_lmap_free(m);
    } else if (m->cap > LMAP_MIN && (uint64_t)m->n * 8 < m->cap) {
        (void)lmap_resize(m, m->cap / 2); /* on failure keep the larger table */
    }
}

struct sub_key *sub_lmap_next(const struct sub_lmap *m, uint32_t i, uint32_t *at) {
    for (; i < m->cap; i++) {
        if (m->slots[i].key) {
            *at = i;
            return m->slots[i].key;
        }
    }
    return NULL;
}

void sub_lmap_free(struct sub_lmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Subscriber sets: compact array of (owner, opts), owner index when large   */

struct sub_entry {
    void *owner;
    struct sub_opts opts;
};

struct sub_set {
    struct sub_entry *v;
    uint32_t *idx; /* open addressing of positions + 1 (0 = empty), or NULL */
    uint32_t n, cap, icap;
};

/* Sets up to this size are searched linearly; above it they get an index. */
#define SET_LINEAR 8

static inline uint32_t ptr_hash(const void *p) {
    return (uint32_t)mix64((uint64_t)(uintptr_t)p);
}

static int set_index_build(struct sub_set *s, uint32_t icap) {
    uint32_t *idx = calloc(icap, sizeof(*idx));
    if (!idx)
        return -1;
    uint32_t mask = icap - 1;
    for (uint32_t p = 0; p < s->n; p++) {
        uint32_t i = ptr_hash(s->v[p].owner) & mask;
        while (idx[i])
            i = (i + 1) & mask;
        idx[i] = p + 1;
    }
    free(s->idx);
    s->idx = idx;
    s->icap = icap;
    return 0;
}

/* Position of owner in s->v or -1; with an index, *slot is its index slot. */
static int64_t set_find(const struct sub_set *s, const void *owner, uint32_t *slot) {
    if (!s->idx) {
        for (uint32_t p = 0; p < s->n; p++)
            if (s->v[p].owner == owner)
                return p;
        return -1;
    }
    uint32_t mask = s->icap - 1;
    for (uint32_t i = ptr_hash(owner) & mask; s->idx[i]; i = (i + 1) & mask) {
        if (s->v[s->idx[i] - 1].owner == owner) {
            *slot = i;
            return s->idx[i] - 1;
        }
    }
    return -1;
}

static int set_add(struct sub_set *s, void *owner, const struct sub_opts *opts) {
    uint32_t slot = 0;
    int64_t p = set_find(s, owner, &slot);
    if (p >= 0) {
        s->v[p].opts = *opts;
        return 0;
    }
    if (s->n == UINT32_MAX / 8)
        return -1;
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 2;
        struct sub_entry *v = realloc(s->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    if (s->n + 1 > SET_LINEAR && (uint64_t)(s->n + 1) * 2 > s->icap) {
        uint32_t icap = 16;
        while (icap < (s->n + 1) * 4)
            icap *= 2;
        if (set_index_build(s, icap) < 0)
            return -1;
    }
    s->v[s->n].owner = owner;
    s->v[s->n].opts = *opts;
    s->n++;
    if (s->idx) {
        uint32_t mask = s->icap - 1, i = ptr_hash(owner) & mask;
        while (s->idx[i])
            i = (i + 1) & mask;
        s->idx[i] = s->n;
    }
    return 1;
}

static void set_free(struct sub_set *s) {
    free(s->v);
    free(s->idx);
    memset(s, 0, sizeof(*s));
}

static void set_del_at(struct sub_set *s, uint32_t p, uint32_t slot) {
    uint32_t last = s->n - 1;
    if (s->idx) {
        uint32_t mask = s->icap - 1, hole = slot;
        for (uint32_t j = (hole + 1) & mask; s->idx[j]; j = (j + 1) & mask) {
            if (may_shift(hole, j, ptr_hash(s->v[s->idx[j] - 1].owner) & mask)) {
                s->idx[hole] = s->idx[j];
                hole = j;
            }
        }
        s->idx[hole] = 0;
        if (p != last) {
            uint32_t i = ptr_hash(s->v[last].owner) & mask;
            while (s->idx[i] != last + 1)
                i = (i + 1) & mask;
            s->idx[i] = p + 1;
        }
    }
    if (p != last)
        s->v[p] = s->v[last];
    s->n--;
    if (s->n == 0) {
        set_free(s);
        return;
    }
    if (s->cap > 8 && s->n * 4 <= s->cap) {
        struct sub_entry *v = realloc(s->v, (size_t)(s->cap / 2) * sizeof(*v));
        if (v) {
            s->v = v;
            s->cap /= 2;
        }
    }
    if (s->idx && s->n <= SET_LINEAR / 2) {
        free(s->idx);
        s->idx = NULL;
        s->icap = 0;
    } else if (s->idx && s->icap > 16 && (uint64_t)s->n * 16 < s->icap) {
        (void)set_index_build(s, s->icap / 4);
    }
}

static int set_del(struct sub_set *s, const void *owner) {
    uint32_t slot = 0;
    int64_t p = set_find(s, owner, &slot);
    if (p < 0)
        return 0;
    set_del_at(s, (uint32_t)p, slot);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Nodes and the tree                                                        */

struct sub_group {
    struct sub_set members; /* never empty: an empty group is dropped */
    atomic_uint cursor;     /* next member to try; advanced under the read lock */
    uint32_t name_len;
    char name[];
};

struct sub_node {
    struct sub_key key; /* level name, inside this allocation */
    struct sub_node *parent;
    struct sub_node *plus; /* '+' child */
    struct sub_node *hash; /* '#' child (never has children) */
    struct sub_lmap kids;  /* literal children */
    struct sub_set subs;   /* non-shared subscriptions of this exact filter */
    struct sub_group **groups;
    uint32_t ngroups, gcap;
    char name[];
};

struct sub_tree {
    pthread_rwlock_t lock;
    sub_avail_fn avail;
    uint64_t seed;
    struct sub_node *root;
    atomic_size_t count;
    atomic_size_t shared_count; /* of count, the shared members */
    size_t nodes;               /* besides the root; changed under the write lock */
    atomic_uint_least64_t gen;  /* sub_tree_gen: bumped by every change, under the write lock */
};

static struct sub_node *node_new(struct sub_node *parent, const char *name, size_t len,
                                 uint32_t hash) {
    struct sub_node *n = calloc(1, sizeof(*n) + len + 1);
    if (!n)
        return NULL;
    memcpy(n->name, name, len);
    n->key.name = n->name;
    n->key.len = (uint32_t)len;
    n->key.hash = hash;
    n->parent = parent;
    return n;
}

static void node_free(struct sub_node *n) {
    sub_lmap_free(&n->kids);
    set_free(&n->subs);
    for (uint32_t i = 0; i < n->ngroups; i++) {
        set_free(&n->groups[i]->members);
        free(n->groups[i]);
    }
    free(n->groups);
    free(n);
}

static bool node_empty(const struct sub_node *n) {
    return !n->subs.n && !n->ngroups && !n->kids.n && !n->plus && !n->hash;
}

int sub_rwlock_init(pthread_rwlock_t *lock) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Publishers hold the read lock nearly all the time: let writers in. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int r = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return r;
}

struct sub_tree *sub_tree_new(sub_avail_fn avail) {
    struct sub_tree *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->root = node_new(NULL, "", 0, 0);
    if (!t->root) {
        free(t);
        return NULL;
    }
    if (sub_rwlock_init(&t->lock) != 0) {
        free(t->root);
        free(t);
        return NULL;
    }
    t->avail = avail;
    t->seed = sub_level_seed();
    atomic_init(&t->count, 0);
    atomic_init(&t->shared_count, 0);
    return t;
}

/*
 * Take any child of n out of the tree without reorganizing n's map (which
 * is only good for more takes and freeing afterwards). Teardown only.
 */
static struct sub_node *node_take_child(struct sub_node *n) {
    struct sub_node *c;
    if ((c = n->plus)) {
        n->plus = NULL;
        return c;
    }
    if ((c = n->hash)) {
        n->hash = NULL;
        return c;
    }
    while (n->kids.cap) {
        struct sub_lslot *s = &n->kids.slots[--n->kids.cap];
        if (s->key) {
            n->kids.n--;
            return (struct sub_node *)s->key;
        }
    }
    return NULL;
}

void sub_tree_free(struct sub_tree *t) {
    if (!t)
        return;
    /* Iterative post-order: trees may be deeper than the C stack allows. */
    struct sub_node *n = t->root;
    while (n) {
        struct sub_node *c = node_take_child(n);
        if (c) {
            n = c;
            continue;
        }
        struct sub_node *p = n->parent;
        node_free(n);
        n = p;
    }
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

/* Remove empty nodes from n up to (not including) the root. Write lock held. */
static void prune(struct sub_tree *t, struct sub_node *n) {
    while (n != t->root && node_empty(n)) {
        struct sub_node *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            sub_lmap_del(&p->kids, &n->key);
        node_free(n);
        t->nodes--;
        n = p;
    }
}

/* Child of n for one filter level, created when `create`. NULL if absent or out of memory. */
static struct sub_node *child_get(struct sub_tree *t, struct sub_node *n, const char *lv, size_t ll,
                                  bool create) {
    struct sub_node **slot = NULL;
    if (ll == 1 && lv[0] == '+')
        slot = &n->plus;
    else if (ll == 1 && lv[0] == '#')
        slot = &n->hash;
    if (slot) {
        if (!*slot && create) {
            *slot = node_new(n, lv, ll, 0);
            if (*slot)
                t->nodes++;
        }
        return *slot;
    }
    uint32_t h = sub_level_hash(t->seed, lv, ll);
    struct sub_node *c = (struct sub_node *)sub_lmap_find(&n->kids, lv, ll, h);
    if (c || !create)
        return c;
    c = node_new(n, lv, ll, h);
    if (!c)
        return NULL;
    if (sub_lmap_put(&n->kids, &c->key) < 0) {
        node_free(c);
        return NULL;
    }
    t->nodes++;
    return c;
}

/* Node of filter[0..len); created (with its path) when `create`. NULL if absent / OOM. */
static struct sub_node *node_walk(struct sub_tree *t, const char *f, size_t len, bool create) {
    struct sub_node *n = t->root;
    size_t pos = 0;
    for (;;) {
        const char *lv = f + pos;
        const char *sl = memchr(lv, '/', len - pos);
        size_t ll = sl ? (size_t)(sl - lv) : len - pos;
        if (ll > UINT32_MAX)
            return NULL;
        struct sub_node *c = child_get(t, n, lv, ll, create);
        if (!c) {
            if (create)
                prune(t, n); /* drop what this call created */
            return NULL;
        }
        n = c;
        if (!sl)
            return n;
        pos = (size_t)(sl - f) + 1;
    }
}

/* Split "$share/GROUP/FILTER". 1 = shared, 0 = not shared, -1 = malformed. */
static int split_shared(const char **f, size_t *len, const char **group, size_t *glen) {
    static const char pfx[] = "$share/";
    const size_t pl = sizeof(pfx) - 1;
    if (*len < pl || memcmp(*f, pfx, pl) != 0)
        return 0;
    const char *g = *f + pl, *end = *f + *len;
    const char *sl = memchr(g, '/', (size_t)(end - g));
    if (!sl || sl == g || sl + 1 >= end)
        return -1;
    *group = g;
    *glen = (size_t)(sl - g);
    *f = sl + 1;
    *len = (size_t)(end - (sl + 1));
    return 1;
}

static struct sub_group *group_find(struct sub_node *n, const char *g, size_t glen, uint32_t *at) {
    for (uint32_t i = 0; i < n->ngroups; i++) {
        struct sub_group *gr = n->groups[i];
        if (gr->name_len == glen && memcmp(gr->name, g, glen) == 0) {
            *at = i;
            return gr;
        }
    }
    return NULL;
}

static struct sub_group *group_create(struct sub_node *n, const char *g, size_t glen) {
    if (glen > UINT32_MAX)
        return NULL;
    if (n->ngroups == n->gcap) {
        uint32_t cap = n->gcap ? n->gcap * 2 : 1;
        struct sub_group **v = realloc(n->groups, (size_t)cap * sizeof(*v));
        if (!v)
            return NULL;
        n->groups = v;
        n->gcap = cap;
    }
    struct sub_group *gr = calloc(1, sizeof(*gr) + glen);
    if (!gr)
        return NULL;
    memcpy(gr->name, g, glen);
    gr->name_len = (uint32_t)glen;
    atomic_init(&gr->cursor, 0);
    n->groups[n->ngroups++] = gr;
    return gr;
}

static void group_drop(struct sub_node *n, uint32_t at) {
    struct sub_group *gr = n->groups[at];
    set_free(&gr->members);
    free(gr);
    n->groups[at] = n->groups[--n->ngroups];
    if (!n->ngroups) {
        free(n->groups);
        n->groups = NULL;
        n->gcap = 0;
    }
}

int sub_tree_add(struct sub_tree *t, const char *filter, size_t len, void *owner,
                 const struct sub_opts *opts) {
    const char *group = NULL;
    size_t glen = 0;
    if (split_shared(&filter, &len, &group, &glen) < 0)
        return -1;
    pthread_rwlock_wrlock(&t->lock);
    int r = -1;
    struct sub_node *n = node_walk(t, filter, len, true);
    if (n) {
        if (group) {
            uint32_t at = 0;
            struct sub_group *gr = group_find(n, group, glen, &at);
            if (!gr && (gr = group_create(n, group, glen)))
                at = n->ngroups - 1;
            if (gr) {
                r = set_add(&gr->members, owner, opts);
                if (r < 0 && !gr->members.n)
                    group_drop(n, at);
            }
        } else {
            r = set_add(&n->subs, owner, opts);
        }
        if (r < 0)
            prune(t, n);
        else
            atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
        if (r == 1) {
            atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
            if (group)
                atomic_fetch_add_explicit(&t->shared_count, 1, memory_order_relaxed);
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return r;
}

int sub_tree_remove(struct sub_tree *t, const char *filter, size_t len, void *owner) {
    const char *group = NULL;
    size_t glen = 0;
    if (split_shared(&filter, &len, &group, &glen) < 0)
        return 0;
    pthread_rwlock_wrlock(&t->lock);
    int r = 0;
    struct sub_node *n = node_walk(t, filter, len, false);
    if (n) {
        if (group) {
            uint32_t at = 0;
            struct sub_group *gr = group_find(n, group, glen, &at);
            if (gr) {
                r = set_del(&gr->members, owner);
                if (!gr->members.n)
                    group_drop(n, at);
            }
        } else {
            r = set_del(&n->subs, owner);
        }
        if (r) {
            atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
            atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
            if (group)
                atomic_fetch_sub_explicit(&t->shared_count, 1, memory_order_relaxed);
        }
        prune(t, n);
    }
    pthread_rwlock_unlock(&t->lock);
    return r;
}

/*
 * Choose one member: the first available one from the cursor on (any one
 * if none is available), then move the cursor past it. Under the read lock
 * several threads may race on the cursor; a lost compare-and-swap rescans
 * from the newer cursor a few times, then keeps its choice (a rare repeat
 * is harmless; a lost message is not possible).
 */
static const struct sub_entry *group_pick(struct sub_group *g, sub_avail_fn avail) {
    const uint32_t n = g->members.n;
    const struct sub_entry *v = g->members.v;
    unsigned c = atomic_load_explicit(&g->cursor, memory_order_relaxed);
    for (int tries = 0;; tries++) {
        uint32_t start = c % n, pick = start;
        if (avail) {
            for (uint32_t i = 0; i < n; i++) {
                uint32_t j = start + i < n ? start + i : start + i - n;
                if (avail(v[j].owner)) {
                    pick = j;
                    break;
                }
            }
        }
        if (atomic_compare_exchange_strong_explicit(&g->cursor, &c, pick + 1, memory_order_relaxed,
                                                    memory_order_relaxed) ||
            tries >= 3)
            return &v[pick];
    }
}

void sub_tree_group_pick(struct sub_tree *t, const char *share, size_t len, sub_match_fn fn,
                         void *ctx) {
    const char *group = NULL;
    size_t glen = 0;
    if (split_shared(&share, &len, &group, &glen) != 1)
        return;
    pthread_rwlock_rdlock(&t->lock);
    struct sub_node *n = node_walk(t, share, len, false);
    uint32_t at = 0;
    struct sub_group *gr = n ? group_find(n, group, glen, &at) : NULL;
    if (gr) {
        const struct sub_entry *e = group_pick(gr, t->avail);
        fn(ctx, e->owner, &e->opts, true);
    }
    pthread_rwlock_unlock(&t->lock);
}

static inline void report(struct sub_tree *t, struct sub_node *n, sub_match_fn fn, void *ctx) {
    const struct sub_entry *v = n->subs.v;
    for (uint32_t i = 0, k = n->subs.n; i < k; i++)
        fn(ctx, v[i].owner, &v[i].opts, false);
    for (uint32_t i = 0; i < n->ngroups; i++) {
        const struct sub_entry *e = group_pick(n->groups[i], t->avail);
        fn(ctx, e->owner, &e->opts, true);
    }
}

/*
 * Depth-first walk without a stack. A node at depth d is always paired with
 * the start of topic level d (or END when the topic has exactly d levels):
 * positions depend on depth only, so going up one level is a backward scan
 * to the previous '/'. From a node the walk goes first into the literal
 * child, then into the '+' child; coming back up from the literal child it
 * tries the parent's '+' child, coming back from '+' it goes further up.
 * `forks` counts the '+' children still to visit on the current path, so
 * the walk stops as soon as there are none (no climb for exact matches).
 */
void sub_tree_match(struct sub_tree *t, const char *topic, size_t len, sub_match_fn fn, void *ctx) {
    pthread_rwlock_rdlock(&t->lock);
    struct sub_node *const root = t->root;
    const bool dollar = len > 0 && topic[0] == '$';
    const size_t end = len + 1;
    struct sub_node *n = root;
    size_t pos = 0;
    size_t forks = 0; /* nodes on the path whose '+' child is still to visit */
    for (;;) {
        /* Wildcards at the first level do not match '$' topics (MQTT-4.7.2-1). */
        const bool wild = n != root || !dollar;
        if (n->hash && wild)
            report(t, n->hash, fn, ctx); /* '#' also matches the parent level */
        struct sub_node *next = NULL;
        size_t npos = end;
        if (pos == end) {
            report(t, n, fn, ctx);
        } else {
            const char *lv = topic + pos;
            const char *sl = memchr(lv, '/', len - pos);
            size_t ll = sl ? (size_t)(sl - lv) : len - pos;
            if (sl)
                npos = (size_t)(sl - topic) + 1;
            if (n->kids.n)
                next = (struct sub_node *)sub_lmap_find(&n->kids, lv, ll,
                                                        sub_level_hash(t->seed, lv, ll));
            if (!wild)
                ;
            else if (!next)
                next = n->plus;
            else if (n->plus)
                forks++;
        }
        if (next) {
            n = next;
            pos = npos;
            continue;
        }
        /* Go up until an unvisited '+' sibling is found. */
        for (;;) {
            if (!forks || n == root)
                goto done;
            struct sub_node *p = n->parent;
            if (n != p->plus && p->plus && (p != root || !dollar)) {
                n = p->plus; /* same depth, same pos */
                forks--;
                break;
            }
            n = p;
            size_t e = pos == end ? len : pos - 1;
            const char *s = e ? memrchr(topic, '/', e) : NULL;
            pos = s ? (size_t)(s - topic) + 1 : 0;
        }
    }
done:
    pthread_rwlock_unlock(&t->lock);
}

uint64_t sub_tree_gen(struct sub_tree *t) {
    return atomic_load_explicit(&t->gen, memory_order_acquire);
}

size_t sub_tree_count(struct sub_tree *t) {
    return atomic_load_explicit(&t->count, memory_order_relaxed);
}

size_t sub_tree_shared_count(struct sub_tree *t) {
    return atomic_load_explicit(&t->shared_count, memory_order_relaxed);
}

size_t sub_tree_node_count(struct sub_tree *t) {
    pthread_rwlock_rdlock(&t->lock);
    size_t n = t->nodes;
    pthread_rwlock_unlock(&t->lock);
    return n;
}
