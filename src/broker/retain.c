#include "broker/retain.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "broker/subtree.h" /* the level map */

struct ret_node {
    struct sub_key key; /* level name, inside this allocation */
    struct ret_node *parent;
    struct sub_lmap kids;
    struct msg *msg; /* one reference, or NULL */
    char name[];
};

struct retain_store {
    pthread_rwlock_t lock;
    uint64_t seed;
    struct ret_node *root;
    atomic_size_t count;
    size_t nodes;        /* besides the root; write lock */
    int64_t next_expiry; /* no message expires before this; INT64_MAX = none */
};

static struct ret_node *node_new(struct ret_node *parent, const char *name, size_t len,
                                 uint32_t hash) {
    struct ret_node *n = calloc(1, sizeof(*n) + len + 1);
    if (!n)
        return NULL;
    memcpy(n->name, name, len);
    n->key.name = n->name;
    n->key.len = (uint32_t)len;
    n->key.hash = hash;
    n->parent = parent;
    return n;
}

struct retain_store *retain_new(void) {
    struct retain_store *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    rs->root = node_new(NULL, "", 0, 0);
    if (!rs->root) {
        free(rs);
        return NULL;
    }
    if (sub_rwlock_init(&rs->lock) != 0) {
        free(rs->root);
        free(rs);
        return NULL;
    }
    rs->seed = sub_level_seed();
    rs->next_expiry = INT64_MAX;
    atomic_init(&rs->count, 0);
    return rs;
}

void retain_free(struct retain_store *rs) {
    if (!rs)
        return;
    /* Iterative post-order; each map is emptied from its end and only freed. */
    struct ret_node *n = rs->root;
    while (n) {
        struct ret_node *c = NULL;
        while (n->kids.cap && !c) {
            struct sub_lslot *s = &n->kids.slots[--n->kids.cap];
            c = (struct ret_node *)s->key;
        }
        if (c) {
            n = c;
            continue;
        }
        struct ret_node *p = n->parent;
        msg_unref(n->msg);
        free(n->kids.slots);
        free(n);
        n = p;
    }
    pthread_rwlock_destroy(&rs->lock);
    free(rs);
}

/* Free empty nodes from n up to (not including) the root. Write lock held. */
static void prune(struct retain_store *rs, struct ret_node *n) {
    while (n != rs->root && !n->msg && !n->kids.n) {
        struct ret_node *p = n->parent;
        sub_lmap_del(&p->kids, &n->key);
        free(n);
        rs->nodes--;
        n = p;
    }
}

/* Node of topic[0..len), created with its path when `create`. NULL if absent / OOM. */
static struct ret_node *node_walk(struct retain_store *rs, const char *topic, size_t len,
                                  bool create) {
    struct ret_node *n = rs->root;
    size_t pos = 0;
    for (;;) {
        const char *lv = topic + pos;
        const char *sl = memchr(lv, '/', len - pos);
        size_t ll = sl ? (size_t)(sl - lv) : len - pos;
        uint32_t h = sub_level_hash(rs->seed, lv, ll);
        struct ret_node *c = (struct ret_node *)sub_lmap_find(&n->kids, lv, ll, h);
        if (!c && create) {
            c = node_new(n, lv, ll, h);
            if (c && sub_lmap_put(&n->kids, &c->key) < 0) {
                free(c);
                c = NULL;
            }
            if (c)
                rs->nodes++;
            else
                prune(rs, n);
        }
        if (!c)
            return NULL;
        n = c;
        if (!sl)
            return n;
        pos = (size_t)(sl - topic) + 1;
    }
}

int retain_set(struct retain_store *rs, struct msg *m) {
    struct msg *old = NULL;
    int r = 0;
    pthread_rwlock_wrlock(&rs->lock);
    if (m->payload_len == 0) {
        struct ret_node *n = node_walk(rs, m->topic, m->topic_len, false);
        if (n) {
            old = n->msg;
            n->msg = NULL;
            prune(rs, n);
        }
        if (old)
            atomic_fetch_sub_explicit(&rs->count, 1, memory_order_relaxed);
    } else {
        struct ret_node *n = node_walk(rs, m->topic, m->topic_len, true);
        if (n) {
            old = n->msg;
            n->msg = msg_ref(m);
            if (!old)
                atomic_fetch_add_explicit(&rs->count, 1, memory_order_relaxed);
            if (m->expiry_at && m->expiry_at < rs->next_expiry)
                rs->next_expiry = m->expiry_at;
        } else {
            r = -1;
        }
    }
    pthread_rwlock_unlock(&rs->lock);
    msg_unref(old);
    return r;
}

/* First child of n at slot >= i, skipping names that start with '$' when `nodollar`. */
static struct ret_node *child_from(const struct ret_node *n, uint32_t i, bool nodollar) {
    uint32_t at;
    struct sub_key *k;
    while ((k = sub_lmap_next(&n->kids, i, &at))) {
        if (!nodollar || !k->len || k->name[0] != '$')
            return (struct ret_node *)k;
        i = at + 1;
    }
    return NULL;
}

static struct ret_node *next_sibling(const struct ret_node *c, bool nodollar) {
    return child_from(c->parent, sub_lmap_index(&c->parent->kids, &c->key) + 1, nodollar);
}

struct emit {
    retain_fn fn;
    void *ctx;
    int64_t now; /* 0: report expired messages too */
};

static inline void emit(const struct emit *e, const struct ret_node *n) {
    struct msg *m = n->msg;
    if (m && (!e->now || !m->expiry_at || msg_remaining_expiry(m, e->now) != 0))
        e->fn(e->ctx, m);
}

/* Visit every node strictly below s, without recursion. */
static void walk_below(const struct emit *e, struct ret_node *s, bool nodollar) {
    struct ret_node *c = child_from(s, 0, nodollar);
    while (c) {
        emit(e, c);
        struct ret_node *f = child_from(c, 0, false);
        if (f) {
            c = f;
            continue;
        }
        for (;;) {
            struct ret_node *p = c->parent;
            struct ret_node *nx = next_sibling(c, p == s && nodollar);
            if (nx) {
                c = nx;
                break;
            }
            c = p;
            if (c == s) {
                c = NULL;
                break;
            }
        }
    }
}

/*
 * Depth-first walk without a stack, as in sub_tree_match: a node at depth d
 * pairs with the start of filter level d (or END), so going up is a
 * backward scan of the filter to the previous '/'. Under a '+' level the
 * walk moves to the next sibling when it comes back up; under a literal
 * level it goes further up.
 */
void retain_match(struct retain_store *rs, const char *filter, size_t len, retain_fn fn,
                  void *ctx) {
    const struct emit e = {fn, ctx, msg_now_ms()};
    pthread_rwlock_rdlock(&rs->lock);
    struct ret_node *const root = rs->root;
    const size_t end = len + 1;
    struct ret_node *n = root;
    size_t pos = 0;
    for (;;) {
        struct ret_node *next = NULL;
        size_t npos = end;
        if (pos == end) {
            emit(&e, n);
        } else {
            const char *lv = filter + pos;
            const char *sl = memchr(lv, '/', len - pos);
            size_t ll = sl ? (size_t)(sl - lv) : len - pos;
            if (sl)
                npos = (size_t)(sl - filter) + 1;
            if (ll == 1 && lv[0] == '#') {
                emit(&e, n); /* "a/#" matches "a" too */
                walk_below(&e, n, n == root);
            } else if (ll == 1 && lv[0] == '+') {
                next = child_from(n, 0, n == root);
            } else if (n->kids.n) {
                next = (struct ret_node *)sub_lmap_find(&n->kids, lv, ll,
                                                        sub_level_hash(rs->seed, lv, ll));
            }
        }
        if (next) {
            n = next;
            pos = npos;
            continue;
        }
        for (;;) {
            if (n == root)
                goto done;
            struct ret_node *p = n->parent;
            size_t le = pos == end ? len : pos - 1; /* end of the parent's level */
            const char *s = le ? memrchr(filter, '/', le) : NULL;
            size_t ppos = s ? (size_t)(s - filter) + 1 : 0;
            if (le - ppos == 1 && filter[ppos] == '+') {
                struct ret_node *nx = next_sibling(n, p == root);
                if (nx) {
                    n = nx; /* same depth, same pos */
                    break;
                }
            }
            n = p;
            pos = ppos;
        }
    }
done:
    pthread_rwlock_unlock(&rs->lock);
}

size_t retain_count(struct retain_store *rs) {
    return atomic_load_explicit(&rs->count, memory_order_relaxed);
}

void retain_foreach(struct retain_store *rs, retain_fn fn, void *ctx) {
    const struct emit e = {fn, ctx, 0};
    pthread_rwlock_rdlock(&rs->lock);
    walk_below(&e, rs->root, false);
    pthread_rwlock_unlock(&rs->lock);
}

struct expire_scan {
    int64_t now;
    int64_t next; /* earliest expiry among the survivors */
    struct ret_node **v;
    size_t n, cap;
    bool oom;
};

size_t retain_expire(struct retain_store *rs, int64_t now_ms) {
    pthread_rwlock_wrlock(&rs->lock);
    if (now_ms < rs->next_expiry) {
        pthread_rwlock_unlock(&rs->lock);
        return 0;
    }
    /* Collect first: pruning moves map entries, which would upset the walk. */
    struct expire_scan x = {now_ms, INT64_MAX, NULL, 0, 0, false};
    struct ret_node *s = rs->root, *c = child_from(s, 0, false);
    while (c) {
        struct msg *m = c->msg;
        if (m && m->expiry_at) {
            if (msg_remaining_expiry(m, now_ms) != 0) {
                if (m->expiry_at < x.next)
                    x.next = m->expiry_at;
            } else {
                if (x.n == x.cap && !x.oom) {
                    size_t cap = x.cap ? x.cap * 2 : 64;
                    struct ret_node **v = realloc(x.v, cap * sizeof(*v));
                    if (v) {
                        x.v = v;
                        x.cap = cap;
                    } else {
                        x.oom = true;
                    }
                }
                if (x.n < x.cap)
                    x.v[x.n++] = c;
                else if (m->expiry_at < x.next)
                    x.next = m->expiry_at; /* out of memory: left for the next call */
            }
        }
        struct ret_node *f = child_from(c, 0, false);
        if (f) {
            c = f;
            continue;
        }
        for (;;) {
            struct ret_node *nx = next_sibling(c, false);
            if (nx) {
                c = nx;
                break;
            }
            c = c->parent;
            if (c == s) {
                c = NULL;
                break;
            }
        }
    }
    /* A node holding a message is never pruned, so the pointers stay valid. */
    for (size_t i = 0; i < x.n; i++) {
        struct ret_node *n = x.v[i];
        msg_unref(n->msg);
        n->msg = NULL;
        prune(rs, n);
    }
    atomic_fetch_sub_explicit(&rs->count, x.n, memory_order_relaxed);
    rs->next_expiry = x.next;
    pthread_rwlock_unlock(&rs->lock);
    free(x.v);
    return x.n;
}

size_t retain_node_count(struct retain_store *rs) {
    pthread_rwlock_rdlock(&rs->lock);
    size_t n = rs->nodes;
    pthread_rwlock_unlock(&rs->lock);
    return n;
}
