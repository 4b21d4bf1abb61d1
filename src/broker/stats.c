/*
 * Broker statistics: per-worker counters summed into one snapshot, load
 * averages, maxima and the store commit histogram. See stats.h and
 * docs/internals/stats.md.
 */
#include "broker/stats.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"

const char *const stats_drop_reason[STATS_DROP_N] = {
    [STATS_DROP_OUTPUT_FULL] = "output_full",   [STATS_DROP_QUEUE_FULL] = "queue_full",
    [STATS_DROP_QOS0_OFFLINE] = "qos0_offline", [STATS_DROP_EXPIRED] = "expired",
    [STATS_DROP_TOO_LARGE] = "too_large",       [STATS_DROP_ACL] = "acl",
    [STATS_DROP_MEMORY_LIMIT] = "memory_limit", [STATS_DROP_BRIDGE_QUEUE] = "bridge_queue_full",
};

/* Store commit durations, seconds. */
static const double commit_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
#define NCOMMIT (sizeof(commit_bounds) / sizeof(commit_bounds[0]))
/* Session queue depth (messages queued, in-flight ones not included). */
static const double qdepth_bounds[] = {0,   1,   2,   5,    10,   20,   50,
                                       100, 200, 500, 1000, 2000, 5000, 10000};
#define NQDEPTH (sizeof(qdepth_bounds) / sizeof(qdepth_bounds[0]))
_Static_assert(NCOMMIT <= STATS_HISTO_MAX && NQDEPTH <= STATS_HISTO_MAX, "histogram too wide");

struct stats {
    /* Load averages and maxima: written by stats_tick and stats_snapshot,
     * once a second or per scrape, never on the message path. */
    pthread_mutex_t lock;
    int64_t last_ms; /* last load update, 0 = none yet */
    uint64_t prev[STATS_LOAD_N];
    double load[STATS_LOAD_N][3];
    uint64_t clients_max, heap_max;
    /* Per worker: busy fraction of the last update interval, and the loop's busy
     * nanoseconds at that update (ev_busy_ns). */
    size_t nbusy;
    double *busy;
    uint64_t *busy_prev;
    /* Store commits: one writer thread observes (off the message path). */
    atomic_ulong commit_counts[STATS_HISTO_MAX + 1];
    atomic_ulong commit_ns;
};

struct stats *stats_new(void) {
    struct stats *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    pthread_mutex_init(&st->lock, NULL);
    return st;
}

void stats_free(struct stats *st) {
    if (!st)
        return;
    pthread_mutex_destroy(&st->lock);
    free(st->busy);
    free(st->busy_prev);
    free(st);
}

static unsigned long ld(const atomic_ulong *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

static size_t bucket(const double *bounds, size_t n, double v) {
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    return i; /* n: the +Inf bucket */
}

void stats_commit_observe(struct stats *st, double seconds) {
    if (!st)
        return;
    size_t i = bucket(commit_bounds, NCOMMIT, seconds);
    atomic_fetch_add_explicit(&st->commit_counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->commit_ns, (unsigned long)(seconds * 1e9), memory_order_relaxed);
}

void stats_qdepth_sample(struct stats_counters *sc, uint32_t depth) {
    if (++sc->qd_tick < STATS_QDEPTH_SAMPLE)
        return;
    sc->qd_tick = 0;
    stat_inc(&sc->qd_counts[bucket(qdepth_bounds, NQDEPTH, (double)depth)]);
    stat_add(&sc->qd_sum, depth);
}

void stats_drop(struct worker *w, enum stats_drop why) {
    stat_inc(&w->sc.dropped[why]);
    /* An ACL that hides a message from a subscriber is not a loss. */
    if (why != STATS_DROP_ACL)
        stat_inc(&w->dropped);
}

void stats_load_step(double cur[3], double delta, double dt_s) {
    static const double window[3] = {60, 300, 900};
    if (dt_s <= 0)
        return;
    double rate = delta * 60.0 / dt_s; /* per minute */
    for (int k = 0; k < 3; k++) {
        double e = exp(-dt_s / window[k]);
        cur[k] = rate + e * (cur[k] - rate);
    }
}

/* The totals the load averages follow, summed over the workers. */
static void load_totals(struct broker *b, uint64_t tot[STATS_LOAD_N]) {
    memset(tot, 0, STATS_LOAD_N * sizeof(*tot));
    for (int i = 0; i < b->nworkers; i++) {
        struct worker *w = &b->workers[i];
        tot[STATS_LOAD_MSGS_RECEIVED] += ld(&w->sc.pkts_in);
        tot[STATS_LOAD_MSGS_SENT] += ld(&w->sc.pkts_out);
        tot[STATS_LOAD_PUB_DROPPED] += ld(&w->dropped);
        tot[STATS_LOAD_PUB_RECEIVED] += ld(&w->msgs_in);
        tot[STATS_LOAD_PUB_SENT] += ld(&w->msgs_out);
        tot[STATS_LOAD_BYTES_RECEIVED] += ld(&w->sc.bytes_in);
        tot[STATS_LOAD_BYTES_SENT] += ld(&w->sc.bytes_out);
        tot[STATS_LOAD_SOCKETS] += ld(&w->sc.sockets);
        tot[STATS_LOAD_CONNECTIONS] += ld(&w->sc.connections);
    }
}

void stats_tick(struct broker *b, int64_t now_ms) {
    struct stats *st = b->stats;
    if (!st)
        return;
    uint64_t tot[STATS_LOAD_N];
    pthread_mutex_lock(&st->lock);
    if (st->last_ms && now_ms - st->last_ms < 1000) {
        pthread_mutex_unlock(&st->lock);
        return;
    }
    load_totals(b, tot);
    size_t nw = b->nworkers > 0 ? (size_t)b->nworkers : 0;
    if (!st->busy && nw) {
        st->busy = calloc(nw, sizeof(*st->busy));
        st->busy_prev = calloc(nw, sizeof(*st->busy_prev));
        if (st->busy && st->busy_prev) {
            st->nbusy = nw;
        } else {
            free(st->busy);
            free(st->busy_prev);
            st->busy = NULL;
            st->busy_prev = NULL;
        }
    }
    for (size_t i = 0; i < st->nbusy; i++) {
        uint64_t ns = ev_busy_ns(b->workers[i].loop);
        if (st->last_ms && now_ms > st->last_ms) {
            double f = (double)(ns - st->busy_prev[i]) / ((double)(now_ms - st->last_ms) * 1e6);
            st->busy[i] = f < 0 ? 0 : f > 1 ? 1 : f;
        }
        st->busy_prev[i] = ns;
    }
    if (st->last_ms) {
        double dt = (double)(now_ms - st->last_ms) / 1000.0;
        for (int k = 0; k < STATS_LOAD_N; k++)
            stats_load_step(st->load[k], (double)(tot[k] - st->prev[k]), dt);
    }
    memcpy(st->prev, tot, sizeof(tot));
    st->last_ms = now_ms;
    pthread_mutex_unlock(&st->lock);
}

/*
 * Heap in use, from glibc's allocator (mallinfo2): bytes handed out by
 * malloc in every arena plus large blocks served by mmap. Mosquitto counts
 * its own allocations instead; the order of magnitude is what compares.
 * Sanitizer builds replace malloc and report 0 here.
 */
static uint64_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
#else
    return 0;
#endif
}

static void histo_fill(struct stats_histo *h, const double *bounds, size_t n,
                       const uint64_t *counts, double sum) {
    h->nbounds = n;
    h->count = 0;
    for (size_t i = 0; i < n; i++) {
        h->bounds[i] = bounds[i];
        h->counts[i] = counts[i];
        h->count += counts[i];
    }
    h->count += counts[n];
    h->sum = sum;
}

static void listener_name(const struct hato_listener *l, char *out, size_t n) {
    if (l->unix_path)
        snprintf(out, n, "%s", l->unix_path);
    else if (l->bind_address)
        snprintf(out, n, "%s%s%s:%d", strchr(l->bind_address, ':') ? "[" : "", l->bind_address,
                 strchr(l->bind_address, ':') ? "]" : "", l->port);
    else
        snprintf(out, n, "%d", l->port);
}

/* One entry per listener open now: the first socket of each (its IPv6 twin
 * shares the counters), read under the lock a reload changes the set under. */
static int listeners_snapshot(struct broker *b, struct stats_snapshot *out) {
    pthread_mutex_lock(&b->ls_lock);
    size_t n = 0;
    for (size_t i = 0; i < b->nlsocks; i++)
        n += b->lsocks[i]->owner && !b->lsocks[i]->retired;
    out->listeners = calloc(n ? n : 1, sizeof(*out->listeners));
    for (size_t i = 0; out->listeners && i < b->nlsocks; i++) {
        const struct lsock *ls = b->lsocks[i];
        if (!ls->owner || ls->retired)
            continue;
        const struct hato_listener *l = atomic_load(&ls->cfg);
        struct stats_listener *sl = &out->listeners[out->nlisteners++];
        listener_name(l, sl->name, sizeof(sl->name));
        sl->protocol = l->protocol ? l->protocol : "mqtt";
        int c = atomic_load_explicit(ls->nconns, memory_order_relaxed);
        sl->connections = c > 0 ? (uint64_t)c : 0;
        sl->accepted = atomic_load_explicit(ls->accepted, memory_order_relaxed);
    }
    pthread_mutex_unlock(&b->ls_lock);
    return out->listeners ? 0 : -1;
}

int stats_snapshot(struct broker *b, struct stats_snapshot *out) {
    memset(out, 0, sizeof(*out));
    size_t nw = b->nworkers > 0 ? (size_t)b->nworkers : 0;
    out->workers = calloc(nw ? nw : 1, sizeof(*out->workers));
    if (!out->workers || listeners_snapshot(b, out) < 0) {
        stats_snapshot_free(out);
        return -1;
    }
    int64_t up = (int64_t)time(NULL) - b->started;
    out->uptime = up > 0 ? (uint64_t)up : 0;

    uint64_t sessions = 0, qd[STATS_HISTO_MAX + 1] = {0}, qd_sum = 0;
    long long live = 0, live_bytes = 0;
    for (size_t i = 0; i < nw; i++) {
        struct worker *w = &b->workers[i];
        struct stats_counters *sc = &w->sc;
        uint64_t nc = atomic_load_explicit(&w->nclients, memory_order_relaxed);
        out->clients_connected += nc;
        sessions += ld(&sc->nsessions);
        out->clients_expired += ld(&sc->expired);
        out->msgs_received += ld(&sc->pkts_in);
        out->msgs_sent += ld(&sc->pkts_out);
        out->pub_received += ld(&w->msgs_in);
        out->pub_sent += ld(&w->msgs_out);
        out->pub_dropped += ld(&w->dropped);
        out->pub_bytes_received += ld(&sc->pub_bytes_in);
        out->pub_bytes_sent += ld(&sc->pub_bytes_out);
        out->bytes_received += ld(&sc->bytes_in);
        out->bytes_sent += ld(&sc->bytes_out);
        out->sockets_accepted += ld(&sc->sockets);
        out->connections_accepted += ld(&sc->connections);
        for (int k = 0; k < STATS_DROP_N; k++)
            out->dropped[k] += ld(&sc->dropped[k]);
        live += atomic_load_explicit(&sc->live_msgs, memory_order_relaxed);
        live_bytes += atomic_load_explicit(&sc->live_bytes, memory_order_relaxed);
        for (size_t k = 0; k <= NQDEPTH; k++)
            qd[k] += ld(&sc->qd_counts[k]);
        qd_sum += ld(&sc->qd_sum);
        out->workers[i] = (struct stats_worker){
            .clients = nc, .msgs_received = ld(&w->msgs_in), .msgs_sent = ld(&w->msgs_out)};
    }
    out->nworkers = nw;
    long long oc = 0, ob = 0;
    msg_tally_other(&oc, &ob);
    live += oc;
    live_bytes += ob;
    /* A session is registered a moment after its client is counted: never negative. */
    out->clients_total = sessions > out->clients_connected ? sessions : out->clients_connected;
    out->clients_disconnected = out->clients_total - out->clients_connected;
    out->msgs_stored = out->store_messages_count = live > 0 ? (uint64_t)live : 0;
    out->store_messages_bytes = live_bytes > 0 ? (uint64_t)live_bytes : 0;
    out->retained_count = retain_count(b->retain);
    out->subscriptions_count = sub_tree_count(b->subs);
    out->shared_subscriptions_count = sub_tree_shared_count(b->subs);
    out->heap_current = heap_in_use();
    histo_fill(&out->queue_depth, qdepth_bounds, NQDEPTH, qd, (double)qd_sum);

    struct stats *st = b->stats;
    if (st) {
        uint64_t cc[STATS_HISTO_MAX + 1];
        for (size_t k = 0; k <= NCOMMIT; k++)
            cc[k] = ld(&st->commit_counts[k]);
        histo_fill(&out->store_commit_seconds, commit_bounds, NCOMMIT, cc,
                   (double)ld(&st->commit_ns) / 1e9);
        pthread_mutex_lock(&st->lock);
        if (out->clients_connected > st->clients_max)
            st->clients_max = out->clients_connected;
        if (out->heap_current > st->heap_max)
            st->heap_max = out->heap_current;
        out->clients_maximum = st->clients_max;
        out->heap_maximum = st->heap_max;
        memcpy(out->load, st->load, sizeof(out->load));
        for (size_t i = 0; i < nw && i < st->nbusy; i++)
            out->workers[i].busy = st->busy[i];
        pthread_mutex_unlock(&st->lock);
    } else {
        histo_fill(&out->store_commit_seconds, commit_bounds, NCOMMIT,
                   (const uint64_t[STATS_HISTO_MAX + 1]){0}, 0);
        out->clients_maximum = out->clients_connected;
        out->heap_maximum = out->heap_current;
    }

    return 0;
}

void stats_snapshot_free(struct stats_snapshot *s) {
    free(s->workers);
    free(s->listeners);
    s->workers = NULL;
    s->listeners = NULL;
    s->nworkers = s->nlisteners = 0;
}
