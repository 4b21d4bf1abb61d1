/*
 * Broker statistics: one snapshot read by $SYS (sys.c) and the metrics
 * endpoint (metrics.c), so both report the same numbers.
 *
 * Counters are kept per worker and written only by their worker (stat_inc
 * in broker.h: no locked instruction, no shared cache line on the message
 * path); a snapshot sums them. Readers on other threads see values a
 * little late, never torn. Totals only grow; gauges (connected clients,
 * retained count, ...) are read at snapshot time.
 */
#ifndef HATO_BROKER_STATS_H
#define HATO_BROKER_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct stats;

/* Load averages, as Mosquitto's $SYS/broker/load/...: rates per minute
 * averaged over 1, 5 and 15 minutes. */
enum stats_load {
    STATS_LOAD_MSGS_RECEIVED,  /* load/messages/received */
    STATS_LOAD_MSGS_SENT,      /* load/messages/sent */
    STATS_LOAD_PUB_DROPPED,    /* load/publish/dropped */
    STATS_LOAD_PUB_RECEIVED,   /* load/publish/received */
    STATS_LOAD_PUB_SENT,       /* load/publish/sent */
    STATS_LOAD_BYTES_RECEIVED, /* load/bytes/received */
    STATS_LOAD_BYTES_SENT,     /* load/bytes/sent */
    STATS_LOAD_SOCKETS,        /* load/sockets: sockets accepted */
    STATS_LOAD_CONNECTIONS,    /* load/connections: CONNECTs accepted */
    STATS_LOAD_N,
};

/* Why a message to a subscriber was not delivered (hato's own). */
enum stats_drop {
    STATS_DROP_OUTPUT_FULL,  /* QoS 0 over max_output_buffer */
    STATS_DROP_QUEUE_FULL,   /* over max_queued_messages / max_queued_bytes */
    STATS_DROP_QOS0_OFFLINE, /* QoS 0 to an offline session (queue_qos0_messages false) */
    STATS_DROP_EXPIRED,      /* message expiry interval passed while queued */
    STATS_DROP_TOO_LARGE,    /* larger than the client's maximum packet size */
    STATS_DROP_ACL,          /* not readable by the subscriber (ACL) */
    STATS_DROP_MEMORY_LIMIT, /* a PUBLISH refused: memory_limit reached (limits.h) */
    STATS_DROP_BRIDGE_QUEUE, /* a bridge's queue full (bridge_max_queued_messages) */
    STATS_DROP_N,
};
/* The reason label of each drop counter ("queue_full", ...): the Prometheus
 * label (metrics.c) and the admin API's key (admin.c). */
extern const char *const stats_drop_reason[STATS_DROP_N];

/* A histogram with fixed upper bounds (Prometheus style: counts[i] are the
 * observations <= bounds[i], not cumulative here; the +Inf bucket is
 * count - sum of counts). */
#define STATS_HISTO_MAX 16
struct stats_histo {
    size_t nbounds;
    double bounds[STATS_HISTO_MAX];
    uint64_t counts[STATS_HISTO_MAX];
    uint64_t count; /* all observations */
    double sum;
};

struct stats_worker {
    uint64_t clients;       /* connected clients owned by it */
    uint64_t msgs_received; /* PUBLISH packets in */
    uint64_t msgs_sent;     /* PUBLISH packets out */
    double busy; /* fraction of the last second (stats_tick) spent outside epoll_wait, 0..1 */
};

struct stats_listener {
    char name[64];        /* "1883", "127.0.0.1:1883", "/run/hato.sock" */
    const char *protocol; /* "mqtt", "websockets", "metrics" (from the config) */
    uint64_t connections; /* open now */
    uint64_t accepted;    /* since start */
};

struct stats_snapshot {
    uint64_t uptime; /* seconds */
    /* Clients (Mosquitto's meaning: disconnected = persistent sessions offline). */
    uint64_t clients_connected, clients_disconnected, clients_expired, clients_maximum,
        clients_total;
    /* messages/...: every packet, all types; publish/...: PUBLISH only. */
    uint64_t msgs_received, msgs_sent, msgs_stored;
    uint64_t pub_received, pub_sent, pub_dropped;
    uint64_t pub_bytes_received, pub_bytes_sent;
    uint64_t bytes_received, bytes_sent;
    uint64_t sockets_accepted, connections_accepted;
    uint64_t retained_count, subscriptions_count; /* subscriptions: shared members included */
    uint64_t shared_subscriptions_count;
    uint64_t store_messages_count, store_messages_bytes;
    uint64_t heap_current, heap_maximum; /* bytes, from the allocator */
    double load[STATS_LOAD_N][3];        /* [kind][0: 1 min, 1: 5 min, 2: 15 min] */
    uint64_t dropped[STATS_DROP_N];
    struct stats_histo store_commit_seconds; /* store group commit durations */
    struct stats_histo queue_depth;          /* per-session queue depth at delivery */
    size_t nworkers;
    struct stats_worker *workers; /* nworkers entries */
    size_t nlisteners;
    struct stats_listener *listeners; /* one per configured listener */
};

/*
 * What one worker counts (struct worker's `sc`). Written only by the owning
 * worker with stat_inc/stat_add (relaxed load + store: no locked
 * instruction), read by any thread with relaxed loads. Gauges marked so go
 * up and down; the rest only grow.
 */
#define STATS_QDEPTH_SAMPLE 16 /* one delivery in this many samples its queue depth */
struct stats_counters {
    atomic_ulong pkts_in, pkts_out;   /* MQTT packets of every type */
    atomic_ulong bytes_in, bytes_out; /* MQTT bytes (under TLS / WebSocket: before framing) */
    atomic_ulong pub_bytes_in, pub_bytes_out; /* PUBLISH payload bytes */
    atomic_ulong sockets;                     /* connections accepted by this worker */
    atomic_ulong connections;                 /* CONNECTs accepted (CONNACK 0) on this worker */
    atomic_ulong expired;                     /* sessions ended by their expiry interval */
    atomic_ulong nsessions;                   /* gauge: sessions in this worker's registry */
    atomic_ulong dropped[STATS_DROP_N];
    /* Messages alive (struct msg) counted by the thread that made or freed
     * them (msg.c): the sum over workers is right, one worker's may be negative. */
    atomic_llong live_msgs, live_bytes;
    /* Queue depth histogram (bounds: stats_qdepth_bounds), sampled. */
    atomic_ulong qd_counts[STATS_HISTO_MAX + 1], qd_sum;
    unsigned qd_tick; /* owner only */
};

static inline void stat_add(atomic_ulong *c, unsigned long n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* The broker-wide part (load averages, maxima, the store commit histogram). */
struct stats *stats_new(void);
void stats_free(struct stats *st);
/* Advance the load averages: called from one thread (worker 0's tick) about
 * once a second or more rarely; now_ms is monotonic. Updates when at least
 * 1 s passed since the last update. */
void stats_tick(struct broker *b, int64_t now_ms);
/* One store commit took `seconds` (the store writer's thread). */
void stats_commit_observe(struct stats *st, double seconds);
/* Sample a session queue depth at delivery (owning worker only; cheap). */
void stats_qdepth_sample(struct stats_counters *sc, uint32_t depth);
/* Count a dropped delivery (owning worker only). */
struct worker;
void stats_drop(struct worker *w, enum stats_drop why);

/* The load average arithmetic (exposed for the unit test): one EMA step of
 * a per-minute rate. `cur` holds [1 min, 5 min, 15 min]; delta events in dt_s seconds. */
void stats_load_step(double cur[3], double delta, double dt_s);

/* Fill *out (allocates workers/listeners). 0, or -1 out of memory. Any thread. */
int stats_snapshot(struct broker *b, struct stats_snapshot *out);
void stats_snapshot_free(struct stats_snapshot *s);

#endif
