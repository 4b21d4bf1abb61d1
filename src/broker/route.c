/*
 * Routing: from one published message to every matching session. The tree
 * reports each matching subscription; subscriptions of one session are
 * merged into one delivery (highest QoS, every subscription identifier,
 * MQTT-3.3.4-3..5); shared groups give one member each. Sessions of this
 * worker get the message at once, others through their worker's inbox.
 */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/bp_inline.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/persist.h"

static void collect(void *ctx, void *owner, const struct sub_opts *opts, bool shared) {
    struct worker *w = ctx;
    if (w->nmatches == w->capmatches) {
        size_t n = w->capmatches ? w->capmatches * 2 : 64;
        struct match *m = realloc(w->matches, n * sizeof(*m));
        if (!m)
            return; /* out of memory: this receiver misses the message */
        w->matches = m;
        w->capmatches = n;
    }
    struct session *s = owner;
    /* The tree's lock keeps s alive now; the reference keeps it alive after. */
    session_ref(s);
    w->matches[w->nmatches++] = (struct match){s, *opts, shared};
}

static int by_session(const void *a, const void *b) {
    const struct match *x = a, *y = b;
    if (x->shared != y->shared)
        return x->shared - y->shared;
    if (x->s != y->s)
        return (uintptr_t)x->s < (uintptr_t)y->s ? -1 : 1;
    return 0;
}

/*
 * True when a session has more than one non-shared match (overlapping
 * subscriptions), the only case where the matches must be sorted so that
 * its runs can be merged. Most messages have one match per session: a hash
 * set of the session pointers finds that in O(n) instead of sorting.
 */
static bool has_repeats(struct worker *w) {
    size_t n = w->nmatches, cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > w->capseen) {
        const void **p = realloc(w->seen, cap * sizeof(*p));
        if (!p)
            return true; /* sorting is always correct */
        w->seen = p;
        w->capseen = cap;
    }
    memset(w->seen, 0, cap * sizeof(*w->seen));
    for (size_t i = 0; i < n; i++) {
        if (w->matches[i].shared)
            continue;
        const void *s = w->matches[i].s;
        size_t h = ((uintptr_t)s >> 4) * 0x9E3779B97F4A7C15u;
        for (size_t k = h & (cap - 1);; k = (k + 1) & (cap - 1)) {
            if (!w->seen[k]) {
                w->seen[k] = s;
                break;
            }
            if (w->seen[k] == s)
                return true;
        }
    }
    return false;
}

/*
 * Deliveries for another worker travel in batches: one item (one malloc,
 * one free on the other side) per BATCH_CAP deliveries instead of one per
 * delivery. A batch is only appended to while it is the last item queued
 * for that worker this turn, so the order of everything sent there holds.
 */
#define BATCH_CAP 64

struct batch {
    struct item it; /* kind IT_DELIVERS; first, so an item pointer is the batch */
    uint32_t n;
    struct pending_deliv v[BATCH_CAP];
};

void route_dispatch(struct worker *w, struct session *s, struct deliv *d) {
    if (d->seq) {
        /* Stored: handed over once committed, so nothing is sent that a crash could undo. */
        persist_release_deliver(w, s, d);
        return;
    }
    if (s->w == w) {
        session_deliver(s, d);
        session_unref(s);
        return;
    }
    struct item *tail = w->out_tail[s->w->id];
    struct batch *bt = tail && tail->kind == IT_DELIVERS ? (struct batch *)tail : NULL;
    if (!bt || bt->n == BATCH_CAP) {
        bt = malloc(sizeof(*bt));
        if (!bt) {
            deliv_clear(d);
            session_unref(s);
            return;
        }
        memset(&bt->it, 0, sizeof(bt->it));
        bt->it.kind = IT_DELIVERS;
        bt->n = 0;
        worker_post(w, s->w, &bt->it);
    }
    /* The reference taken in collect moves to the batch. */
    bt->v[bt->n++] = (struct pending_deliv){s, *d};
}

void route_batch_run(struct worker *w, struct item *it) {
    (void)w;
    struct batch *bt = (struct batch *)it;
    for (uint32_t i = 0; i < bt->n; i++) {
        session_deliver(bt->v[i].s, &bt->v[i].d);
        session_unref(bt->v[i].s);
    }
    free(bt);
}

void route_batch_free(struct item *it) {
    struct batch *bt = (struct batch *)it;
    for (uint32_t i = 0; i < bt->n; i++) {
        deliv_clear(&bt->v[i].d);
        session_unref(bt->v[i].s);
    }
    free(bt);
}

static int pend_push(struct worker *w, struct session *s, struct deliv *d) {
    if (w->npend == w->cappend) {
        size_t n = w->cappend ? w->cappend * 2 : 64;
        struct pending_deliv *p = realloc(w->pend, n * sizeof(*p));
        if (!p)
            return -1;
        w->pend = p;
        w->cappend = n;
    }
    w->pend[w->npend++] = (struct pending_deliv){s, *d};
    return 0;
}

/*
 * The last match of this worker, for the next message on the same topic: a
 * publisher's read batch is hundreds of PUBLISH packets on one topic
 * (fan-in), a fan-out topic is the same for every message. The entry holds
 * a reference on each of its sessions, so a hit borrows them: no tree walk,
 * no read lock, no reference pair per receiver. It is used only while the
 * tree's generation (sub_tree_gen) is the one read before the walk that
 * filled it, and never for matches with a shared group (a member is picked
 * per message).
 */
#define RCACHE_TOPIC 256 /* longer topics are not cached */
#define RCACHE_MATCHES 1024

struct route_cache {
    uint64_t gen;
    bool valid;
    bool repeats; /* the matches were sorted: a session has several */
    bool busy;    /* a delivery loop borrows v: a nested route_publish walks */
    uint16_t topic_len;
    char topic[RCACHE_TOPIC];
    size_t n, cap;
    struct match *v;
};

static void rcache_clear(struct route_cache *rc) {
    for (size_t i = 0; i < rc->n; i++)
        session_unref(rc->v[i].s);
    rc->n = 0;
    rc->valid = false;
}

void route_cache_free(struct worker *w) {
    struct route_cache *rc = w->rcache;
    if (!rc)
        return;
    rcache_clear(rc);
    free(rc->v);
    free(rc);
    w->rcache = NULL;
}

static bool rcache_hit(const struct route_cache *rc, uint64_t gen, const struct msg *m) {
    return rc && rc->valid && !rc->busy && rc->gen == gen && rc->topic_len == m->topic_len &&
           memcmp(rc->topic, m->topic, m->topic_len) == 0;
}

/* Keep w->matches (n of them, with their references) as the last match. */
static void rcache_store(struct worker *w, uint64_t gen, const struct msg *m, bool repeats) {
    struct route_cache *rc = w->rcache;
    size_t n = w->nmatches;
    if (m->topic_len > RCACHE_TOPIC || n > RCACHE_MATCHES || (rc && rc->busy))
        return;
    for (size_t i = 0; i < n; i++)
        if (w->matches[i].shared)
            return;
    if (!rc) {
        rc = w->rcache = calloc(1, sizeof(*rc));
        if (!rc)
            return;
    }
    rcache_clear(rc);
    if (n > rc->cap) {
        size_t cap = rc->cap ? rc->cap : 8;
        while (cap < n)
            cap *= 2;
        struct match *v = realloc(rc->v, cap * sizeof(*v));
        if (!v)
            return;
        rc->v = v;
        rc->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        rc->v[i] = w->matches[i];
        session_ref(rc->v[i].s);
    }
    rc->n = n;
    rc->gen = gen;
    rc->repeats = repeats;
    rc->topic_len = (uint16_t)m->topic_len;
    memcpy(rc->topic, m->topic, m->topic_len);
    rc->valid = true;
}

static size_t deliver(struct worker *w, struct msg *m, struct match *mv, size_t n, bool borrowed);

size_t route_publish(struct worker *w, struct msg *m) {
    struct broker *b = w->b;
    w->npend = 0;
    if (b->cluster)
        cluster_publish(w, m); /* to the other nodes first (cluster.c) */
    /* Read before the walk: a change during it makes the entry stale. */
    uint64_t gen = sub_tree_gen(b->subs);
    struct route_cache *rc = w->rcache;
    struct match *mv;
    size_t n;
    /* Borrowed: the matches' sessions are held by the cache entry, not by
     * one reference each taken for this message. */
    const bool borrowed = rcache_hit(rc, gen, m);
    if (borrowed) {
        mv = rc->v;
        n = rc->n;
        rc->busy = true;
    } else {
        w->nmatches = 0;
        sub_tree_match(b->subs, m->topic, m->topic_len, collect, w);
        n = w->nmatches;
        bool repeats = n > 1 && has_repeats(w);
        if (repeats)
            qsort(w->matches, n, sizeof(*w->matches), by_session);
        rcache_store(w, gen, m, repeats);
        mv = w->matches;
    }
    size_t delivered = deliver(w, m, mv, n, borrowed);
    if (borrowed)
        rc->busy = false;
    else
        w->nmatches = 0;
    if (b->store) {
        /* The message is stored once for all durable receivers, before any gets it. */
        persist_route(w, m, w->pend, w->npend);
        for (size_t k = 0; k < w->npend; k++)
            route_dispatch(w, w->pend[k].s, &w->pend[k].d);
        w->npend = 0;
    }
    return delivered;
}

void route_group(struct worker *w, struct msg *m, const char *share, size_t len) {
    w->npend = 0;
    w->nmatches = 0;
    sub_tree_group_pick(w->b->subs, share, len, collect, w);
    w->cl_group = true;
    deliver(w, m, w->matches, w->nmatches, false);
    w->cl_group = false;
    w->nmatches = 0;
}

/* Deliver m to the matches mv[0..n) (sorted by session when one has several). */
static size_t deliver(struct worker *w, struct msg *m, struct match *mv, size_t n, bool borrowed) {
    struct broker *b = w->b;
    size_t delivered = 0;
    bool upgrade = b->cfg->upgrade_outgoing_qos;
    /* In a cluster, a shared group's member is chosen by NATS (a queue group
     * over every node): local members get their messages from cluster.c,
     * unless the node is cut off from NATS. */
    bool skip_shared = b->cluster && !w->cl_group &&
                       (m->from_cluster || (!w->cl_local && !cluster_shared_local(b)));
    for (size_t i = 0; i < n;) {
        struct match *first = &mv[i];
        struct session *s = first->s;
        size_t j = i;
        uint8_t qos = 0;
        bool any = false, rap = false;
        uint32_t nsub = 0;
        uint32_t subid = 0;
        /* Merge the run of non-shared matches of one session. */
        size_t end = i + 1;
        if (!first->shared)
            while (end < n && !mv[end].shared && mv[end].s == s)
                end++;
        for (j = i; j < end; j++) {
            struct match *mt = &mv[j];
            if (mt->opts.no_local && m->origin == s)
                continue; /* MQTT-3.8.3-3 */
            if (m->via_bridge && atomic_load_explicit(&s->bridge_nofwd, memory_order_relaxed))
                break; /* bridge_forward_bridged false (bridge.c) */
            any = true;
            if (mt->opts.qos > qos)
                qos = mt->opts.qos;
            if (mt->opts.retain_as_published)
                rap = true;
            if (mt->opts.sub_id)
                nsub++, subid = mt->opts.sub_id;
        }
        if (any && first->shared && skip_shared)
            any = false;
        /* A persistent session of a cluster gets its QoS 1/2 messages from its
         * JetStream consumers (cluster.c), not from here. */
        if (any && b->cluster && !w->cl_local && !first->shared &&
            (upgrade ? qos : (m->qos < qos ? m->qos : qos)) &&
            atomic_load_explicit(&s->cl_durable, memory_order_relaxed))
            any = false;
        if (!any) {
            if (!borrowed)
                for (j = i; j < end; j++)
                    session_unref(mv[j].s);
            i = end;
            continue;
        }
        bp_check(w, s);            /* over its soft limit: the publisher is held (bp.c) */
        struct deliv d = {.m = m}; /* borrowed until dispatched (see below) */
        d.qos = upgrade ? qos : (m->qos < qos ? m->qos : qos);
        d.retain = rap && m->retain; /* MQTT-3.3.1-12, -13 */
        /* The count is kept in 16 bits: at most 65535 identifiers go out
         * (a session may hold more matching filters with identifiers). */
        if (nsub > UINT16_MAX)
            nsub = UINT16_MAX;
        d.nsub = (uint16_t)nsub;
        if (nsub == 1) {
            d.subid = subid;
        } else if (nsub > 1) {
            d.subids = malloc(nsub * sizeof(uint32_t));
            if (!d.subids) {
                d.nsub = 0;
            } else {
                uint32_t k = 0;
                for (j = i; j < end; j++) {
                    struct match *mt = &mv[j];
                    if (k < nsub && mt->opts.sub_id && !(mt->opts.no_local && m->origin == s))
                        d.subids[k++] = mt->opts.sub_id;
                }
            }
        }
        /* One reference per run goes with the delivery; drop the others. */
        if (!borrowed)
            for (j = i + 1; j < end; j++)
                session_unref(mv[j].s);
        if (!b->store && s->w == w && d.qos == 0 && session_send_qos0(s, &d)) {
            /* Sent (or refused) at once from the route's own reference (or
             * the cache's): no reference pair per subscriber on the
             * fan-out path. */
            if (d.nsub > 1)
                free(d.subids);
            if (!borrowed)
                session_unref(s);
        } else {
            msg_ref(m); /* the delivery's own, from here on */
            if (borrowed)
                session_ref(s); /* the delivery's own, as collect gives it */
            if (!b->store) {
                route_dispatch(w, s, &d);
            } else if (pend_push(w, s, &d) < 0) {
                deliv_clear(&d);
                session_unref(s);
            }
        }
        delivered++;
        i = end;
    }
    return delivered;
}

void route_internal(struct worker *w, struct msg *m) {
    bool sys = m->topic_len >= 5 && memcmp(m->topic, "$SYS/", 5) == 0;
    /* $SYS values are made again on start: not worth a store write each. */
    if (m->retain && retain_set(w->b->retain, m) == 0 && !sys) {
        persist_retain(w, m);
        cluster_retain(w, m);
    }
    route_publish(w, m);
    msg_unref(m);
}

void route_will(struct worker *w, struct msg *m) {
    if (m->retain && w->b->cfg->retain_available && retain_set(w->b->retain, m) == 0) {
        persist_retain(w, m);
        cluster_retain(w, m);
    }
    route_publish(w, m);
}
