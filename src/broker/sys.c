/*
 * $SYS topics, as Mosquitto 2.0 publishes them, plus hato's own under
 * $SYS/broker/hato/. Worker 0's tick publishes every sys_interval seconds
 * (read from the current config each time); only values that changed since
 * their last publication go out (uptime always does), all retained, QoS 2.
 * With sys_interval 0 only the version is published, once. The numbers come
 * from one stats snapshot (stats.c), the same the metrics endpoint reads.
 * See docs/sys.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/strmap.h"
#include "broker/broker.h"
#include "broker/cluster.h"

/* Mosquitto publishes $SYS at QoS 2: a subscriber gets its subscription's QoS. */
#define SYS_QOS 2

struct sys_state {
    int64_t next_ms;    /* monotonic ms of the next publication, 0 = at once */
    bool version_done;  /* the static topic went out */
    struct strmap last; /* topic -> struct sys_value: what was last published */
};

struct sys_value {
    char *topic;
    char val[];
};

int broker_publish_internal(struct broker *b, const char *topic, const void *payload, size_t len,
                            int qos, bool retain) {
    /* Before worker 0 has its loop (early start-up) or after the workers are gone: dropped. */
    if (!b->workers || b->nworkers < 1 || !b->workers[0].loop || qos < 0 || qos > 2)
        return -1;
    struct msg *m =
        msg_new(topic, strlen(topic), payload, len, (uint8_t)qos, retain, NULL, 0, NULL);
    if (!m)
        return -1;
    struct item *it = calloc(1, sizeof(*it));
    if (!it) {
        msg_unref(m);
        return -1;
    }
    it->kind = IT_PUBLISH;
    it->d.m = m;
    struct worker *self = broker_current_worker();
    if (self && self->b == b)
        worker_post(self, self, it); /* handed over at the end of this turn, in order */
    else
        worker_post(NULL, &b->workers[0], it);
    return 0;
}

static void value_free(void *ctx, void *val) {
    (void)ctx;
    struct sys_value *v = val;
    free(v->topic);
    free(v);
}

void sys_free(struct worker *w) {
    if (!w->sys)
        return;
    strmap_each(&w->sys->last, value_free, NULL);
    strmap_free(&w->sys->last);
    free(w->sys);
    w->sys = NULL;
}

/* Publish topic=val unless that is what it last published (always, with force). */
static void put(struct worker *w, const char *topic, const char *val, bool force) {
    struct sys_state *ss = w->sys;
    size_t tl = strlen(topic), vl = strlen(val);
    struct sys_value *v = strmap_get(&ss->last, topic, tl);
    if (v && !force && strcmp(v->val, val) == 0)
        return;
    if (broker_publish_internal(w->b, topic, val, vl, SYS_QOS, true) < 0)
        return; /* tried again next time: the value is not recorded */
    if (v && strlen(v->val) >= vl) {
        memcpy(v->val, val, vl + 1);
        return;
    }
    struct sys_value *n = malloc(sizeof(*n) + vl + 1 + 16);
    if (!n)
        return;
    memcpy(n->val, val, vl + 1);
    if (v) {
        strmap_del(&ss->last, topic, tl);
        n->topic = v->topic;
        free(v);
    } else {
        n->topic = strdup(topic);
        if (!n->topic) {
            free(n);
            return;
        }
    }
    if (strmap_put(&ss->last, n->topic, tl, n) < 0)
        value_free(NULL, n);
}

static void put_u(struct worker *w, const char *topic, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    put(w, topic, buf, false);
}

static void put_f(struct worker *w, const char *topic, double v) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%.2f", v); /* Mosquitto's format */
    put(w, topic, buf, false);
}

static const char *const load_names[STATS_LOAD_N] = {
    [STATS_LOAD_MSGS_RECEIVED] = "messages/received",
    [STATS_LOAD_MSGS_SENT] = "messages/sent",
    [STATS_LOAD_PUB_DROPPED] = "publish/dropped",
    [STATS_LOAD_PUB_RECEIVED] = "publish/received",
    [STATS_LOAD_PUB_SENT] = "publish/sent",
    [STATS_LOAD_BYTES_RECEIVED] = "bytes/received",
    [STATS_LOAD_BYTES_SENT] = "bytes/sent",
    [STATS_LOAD_SOCKETS] = "sockets",
    [STATS_LOAD_CONNECTIONS] = "connections",
};

static const char *const drop_names[STATS_DROP_N] = {
    [STATS_DROP_OUTPUT_FULL] = "output_full",   [STATS_DROP_QUEUE_FULL] = "queue_full",
    [STATS_DROP_QOS0_OFFLINE] = "qos0_offline", [STATS_DROP_EXPIRED] = "expired",
    [STATS_DROP_TOO_LARGE] = "too_large",       [STATS_DROP_ACL] = "acl",
    [STATS_DROP_MEMORY_LIMIT] = "memory_limit", [STATS_DROP_BRIDGE_QUEUE] = "bridge_queue_full",
};

static void publish_all(struct worker *w) {
    struct stats_snapshot s;
    if (stats_snapshot(w->b, &s) < 0)
        return;
    char buf[64], topic[128];
    snprintf(buf, sizeof(buf), "%" PRIu64 " seconds", s.uptime);
    put(w, "$SYS/broker/uptime", buf, true);
    put_u(w, "$SYS/broker/clients/total", s.clients_total);
    put_u(w, "$SYS/broker/clients/connected", s.clients_connected);
    put_u(w, "$SYS/broker/clients/active", s.clients_connected); /* deprecated names */
    put_u(w, "$SYS/broker/clients/disconnected", s.clients_disconnected);
    put_u(w, "$SYS/broker/clients/inactive", s.clients_disconnected);
    put_u(w, "$SYS/broker/clients/expired", s.clients_expired);
    put_u(w, "$SYS/broker/clients/maximum", s.clients_maximum);
    static const char *const win[3] = {"1min", "5min", "15min"};
    for (int k = 0; k < STATS_LOAD_N; k++)
        for (int j = 0; j < 3; j++) {
            snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s", load_names[k], win[j]);
            put_f(w, topic, s.load[k][j]);
        }
    put_u(w, "$SYS/broker/messages/stored", s.msgs_stored);
    put_u(w, "$SYS/broker/messages/received", s.msgs_received);
    put_u(w, "$SYS/broker/messages/sent", s.msgs_sent);
    put_u(w, "$SYS/broker/store/messages/count", s.store_messages_count);
    put_u(w, "$SYS/broker/store/messages/bytes", s.store_messages_bytes);
    put_u(w, "$SYS/broker/subscriptions/count", s.subscriptions_count);
    put_u(w, "$SYS/broker/shared_subscriptions/count", s.shared_subscriptions_count);
    put_u(w, "$SYS/broker/retained messages/count", s.retained_count);
    put_u(w, "$SYS/broker/heap/current", s.heap_current);
    put_u(w, "$SYS/broker/heap/maximum", s.heap_maximum);
    put_u(w, "$SYS/broker/publish/messages/dropped", s.pub_dropped);
    put_u(w, "$SYS/broker/publish/messages/received", s.pub_received);
    put_u(w, "$SYS/broker/publish/messages/sent", s.pub_sent);
    put_u(w, "$SYS/broker/publish/bytes/received", s.pub_bytes_received);
    put_u(w, "$SYS/broker/publish/bytes/sent", s.pub_bytes_sent);
    put_u(w, "$SYS/broker/bytes/received", s.bytes_received);
    put_u(w, "$SYS/broker/bytes/sent", s.bytes_sent);

    /* hato's own. */
    for (size_t i = 0; i < s.nworkers; i++) {
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/worker/%zu/clients", i);
        put_u(w, topic, s.workers[i].clients);
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/worker/%zu/publish/messages/received", i);
        put_u(w, topic, s.workers[i].msgs_received);
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/worker/%zu/publish/messages/sent", i);
        put_u(w, topic, s.workers[i].msgs_sent);
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/worker/%zu/busy", i);
        put_f(w, topic, s.workers[i].busy);
    }
    for (size_t i = 0; i < s.nlisteners; i++) {
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/listener/%zu/connections", i);
        put_u(w, topic, s.listeners[i].connections);
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/listener/%zu/accepted", i);
        put_u(w, topic, s.listeners[i].accepted);
    }
    for (int k = 0; k < STATS_DROP_N; k++) {
        snprintf(topic, sizeof(topic), "$SYS/broker/hato/publish/messages/dropped/%s",
                 drop_names[k]);
        put_u(w, topic, s.dropped[k]);
    }
    const struct stats_histo *h = &s.store_commit_seconds;
    put_u(w, "$SYS/broker/hato/store/commits", h->count);
    snprintf(buf, sizeof(buf), "%.6f", h->count ? h->sum / (double)h->count : 0.0);
    put(w, "$SYS/broker/hato/store/commit/seconds/average", buf, false);
    /* The upper bound under which 99 % of commits finished ("+Inf" above the last bound). */
    if (h->count) {
        uint64_t need = h->count - h->count / 100, acc = 0;
        size_t i = 0;
        while (i < h->nbounds && (acc += h->counts[i]) < need)
            i++;
        if (i < h->nbounds)
            snprintf(buf, sizeof(buf), "%g", h->bounds[i]);
        else
            snprintf(buf, sizeof(buf), "+Inf");
    } else {
        snprintf(buf, sizeof(buf), "0");
    }
    put(w, "$SYS/broker/hato/store/commit/seconds/p99_bound", buf, false);
    stats_snapshot_free(&s);
    struct cluster_stats c;
    cluster_stats(w->b, &c);
    if (c.enabled) {
        put(w, "$SYS/broker/cluster/node", c.node, false);
        put_u(w, "$SYS/broker/cluster/nodes", c.nodes);
        put(w, "$SYS/broker/cluster/nats/state", c.state, false);
        put_u(w, "$SYS/broker/cluster/nats/reconnects", c.reconnects);
        put_u(w, "$SYS/broker/cluster/messages/sent", c.sent);
        put_u(w, "$SYS/broker/cluster/messages/received", c.received);
        put_u(w, "$SYS/broker/cluster/messages/refused", c.refused);
        put_u(w, "$SYS/broker/cluster/jetstream/pending", c.js_pending);
        put_u(w, "$SYS/broker/cluster/jetstream/failed", c.js_failed);
        put_f(w, "$SYS/broker/cluster/lag/seconds", c.lag_ms / 1000.0);
    }
}

void sys_tick(struct worker *w, int64_t now_ms) {
    struct broker *b = w->b;
    stats_tick(b, now_ms);
    if (!w->sys) {
        w->sys = calloc(1, sizeof(*w->sys));
        if (!w->sys)
            return;
        strmap_init(&w->sys->last);
    }
    struct sys_state *ss = w->sys;
    if (!ss->version_done) {
        put(w, "$SYS/broker/version", "hato version " HATO_VERSION, true);
        ss->version_done = true;
    }
    int interval = b->cfg->sys_interval; /* the live config: a reload changes it */
    if (interval <= 0) {
        ss->next_ms = 0; /* publish at once when a reload turns it on */
        return;
    }
    if (ss->next_ms && now_ms < ss->next_ms)
        return;
    ss->next_ms = now_ms + (int64_t)interval * 1000;
    publish_all(w);
}
