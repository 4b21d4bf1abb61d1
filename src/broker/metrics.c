/*
 * The Prometheus endpoint (metrics.h): request handling on a metrics
 * connection and the text exposition format (0.0.4) of a stats snapshot.
 */
#include "broker/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/hash.h"
#include "base/log.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/httpconn.h"
#include "broker/security.h"
#include "broker/stats.h"
#include "transport/http.h"

/* Largest request head taken (a scraper's is a few hundred bytes). */
#define METRICS_HEAD_MAX 8192
/* Largest decoded Basic credentials (user:password). */
#define METRICS_CRED_MAX 1024

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

/* ---- rendering --------------------------------------------------------- */

struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void mb_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mb_printf(struct mbuf *b, const char *fmt, ...) {
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A label value with the format's escapes: backslash, double quote, newline. */
static void mb_label(struct mbuf *b, const char *v) {
    char tmp[256];
    size_t n = 0;
    for (; *v && n + 3 < sizeof(tmp); v++) {
        if (*v == '\\' || *v == '"') {
            tmp[n++] = '\\';
            tmp[n++] = *v;
        } else if (*v == '\n') {
            tmp[n++] = '\\';
            tmp[n++] = 'n';
        } else {
            tmp[n++] = *v;
        }
    }
    tmp[n] = 0;
    mb_printf(b, "%s", tmp);
}

/* A sample value or bound as Prometheus parses floats. */
static const char *fmt_double(double v, char out[40]) {
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(out, 40, "%.15g", v);
    return out;
}

static void family(struct mbuf *b, const char *name, const char *type, const char *help) {
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void u64_family(struct mbuf *b, const char *name, const char *type, const char *help,
                       uint64_t v) {
    family(b, name, type, help);
    mb_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct mbuf *b, const char *name, const char *help, uint64_t v) {
    u64_family(b, name, "gauge", help, v);
}

static void counter(struct mbuf *b, const char *name, const char *help, uint64_t v) {
    u64_family(b, name, "counter", help, v);
}

/* A histogram from the snapshot's per-bucket counts: cumulative buckets,
 * +Inf, _sum and _count. */
/* One sample of a per-listener family: NAME{listener="...",protocol="..."} V. */
static void listener_sample(struct mbuf *b, const char *name, const struct stats_listener *l,
                            uint64_t v) {
    mb_printf(b, "%s{listener=\"", name);
    mb_label(b, l->name);
    mb_printf(b, "\",protocol=\"");
    mb_label(b, l->protocol ? l->protocol : "mqtt");
    mb_printf(b, "\"} %" PRIu64 "\n", v);
}

static void histogram(struct mbuf *b, const char *name, const char *help,
                      const struct stats_histo *h) {
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    char d[40];
    size_t nb = h->nbounds < STATS_HISTO_MAX ? h->nbounds : STATS_HISTO_MAX;
    for (size_t i = 0; i < nb; i++) {
        cum += h->counts[i];
        /* A snapshot read while a worker counts may be a little ahead in
         * the buckets: keep the series monotonic. */
        mb_printf(b, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, fmt_double(h->bounds[i], d),
                  cum < h->count ? cum : h->count);
    }
    mb_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    mb_printf(b, "%s_sum %s\n", name, fmt_double(h->sum, d));
    mb_printf(b, "%s_count %" PRIu64 "\n", name, h->count);
}

/* $SYS/broker/load/...: one family per kind, a sample per averaging window. */
static const struct {
    const char *name, *help;
} load_names[STATS_LOAD_N] = {
    [STATS_LOAD_MSGS_RECEIVED] =
        {"hato_load_messages_received",
         "Packets received per minute, averaged ($SYS load/messages/received)."},
    [STATS_LOAD_MSGS_SENT] = {"hato_load_messages_sent",
                              "Packets sent per minute, averaged ($SYS load/messages/sent)."},
    [STATS_LOAD_PUB_DROPPED] =
        {"hato_load_publish_dropped",
         "PUBLISH messages dropped per minute, averaged ($SYS load/publish/dropped)."},
    [STATS_LOAD_PUB_RECEIVED] =
        {"hato_load_publish_received",
         "PUBLISH messages received per minute, averaged ($SYS load/publish/received)."},
    [STATS_LOAD_PUB_SENT] =
        {"hato_load_publish_sent",
         "PUBLISH messages sent per minute, averaged ($SYS load/publish/sent)."},
    [STATS_LOAD_BYTES_RECEIVED] =
        {"hato_load_bytes_received",
         "Bytes received per minute, averaged ($SYS load/bytes/received)."},
    [STATS_LOAD_BYTES_SENT] = {"hato_load_bytes_sent",
                               "Bytes sent per minute, averaged ($SYS load/bytes/sent)."},
    [STATS_LOAD_SOCKETS] = {"hato_load_sockets",
                            "Sockets accepted per minute, averaged ($SYS load/sockets)."},
    [STATS_LOAD_CONNECTIONS] = {"hato_load_connections",
                                "CONNECTs accepted per minute, averaged ($SYS load/connections)."},
};

static void render(struct mbuf *b, const struct stats_snapshot *s, int64_t started) {
    char d[40];
    family(b, "hato_build_info", "gauge", "The broker's version, as a label; always 1.");
    mb_printf(b, "hato_build_info{version=\"%s\"} 1\n", HATO_VERSION);
    gauge(b, "hato_uptime_seconds", "Seconds since the broker started ($SYS uptime).", s->uptime);
    gauge(b, "hato_start_time_seconds", "When the broker started, seconds since the Unix epoch.",
          (uint64_t)started);

    gauge(b, "hato_clients_connected", "Clients connected now ($SYS clients/connected).",
          s->clients_connected);
    gauge(b, "hato_clients_disconnected",
          "Persistent sessions whose client is not connected ($SYS clients/disconnected).",
          s->clients_disconnected);
    counter(b, "hato_clients_expired_total",
            "Persistent sessions ended by their expiry ($SYS clients/expired).",
            s->clients_expired);
    gauge(b, "hato_clients_maximum", "Most clients connected at once ($SYS clients/maximum).",
          s->clients_maximum);
    gauge(b, "hato_clients_known",
          "Connected clients plus offline persistent sessions ($SYS clients/total).",
          s->clients_total);

    counter(b, "hato_messages_received_total",
            "MQTT packets of every type received ($SYS messages/received).", s->msgs_received);
    counter(b, "hato_messages_sent_total", "MQTT packets of every type sent ($SYS messages/sent).",
            s->msgs_sent);
    gauge(b, "hato_messages_stored", "Messages held by the broker ($SYS messages/stored).",
          s->msgs_stored);
    counter(b, "hato_publish_messages_received_total",
            "PUBLISH packets received ($SYS publish/messages/received).", s->pub_received);
    counter(b, "hato_publish_messages_sent_total",
            "PUBLISH packets sent ($SYS publish/messages/sent).", s->pub_sent);
    counter(b, "hato_publish_messages_dropped_total",
            "Messages not delivered to a subscriber ($SYS publish/messages/dropped).",
            s->pub_dropped);
    family(b, "hato_publish_dropped_total", "counter",
           "Messages not delivered to a subscriber, by reason ($SYS hato/publish/dropped/...).");
    for (int i = 0; i < STATS_DROP_N; i++)
        mb_printf(b, "hato_publish_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
                  stats_drop_reason[i], s->dropped[i]);
    counter(b, "hato_publish_received_bytes_total",
            "Payload bytes of PUBLISH packets received ($SYS publish/bytes/received).",
            s->pub_bytes_received);
    counter(b, "hato_publish_sent_bytes_total",
            "Payload bytes of PUBLISH packets sent ($SYS publish/bytes/sent).", s->pub_bytes_sent);
    counter(b, "hato_received_bytes_total", "Bytes received from clients ($SYS bytes/received).",
            s->bytes_received);
    counter(b, "hato_sent_bytes_total", "Bytes sent to clients ($SYS bytes/sent).", s->bytes_sent);
    counter(b, "hato_sockets_accepted_total", "Sockets accepted on every listener.",
            s->sockets_accepted);
    counter(b, "hato_connections_accepted_total", "CONNECTs accepted.", s->connections_accepted);

    gauge(b, "hato_retained_messages", "Retained messages ($SYS retained messages/count).",
          s->retained_count);
    gauge(b, "hato_subscriptions", "Subscriptions ($SYS subscriptions/count).",
          s->subscriptions_count);
    gauge(b, "hato_shared_subscriptions", "Shared subscriptions ($SYS shared_subscriptions/count).",
          s->shared_subscriptions_count);
    gauge(b, "hato_store_messages", "Messages in the store ($SYS store/messages/count).",
          s->store_messages_count);
    gauge(b, "hato_store_messages_bytes",
          "Payload bytes of the messages in the store ($SYS store/messages/bytes).",
          s->store_messages_bytes);
    gauge(b, "hato_heap_bytes", "Heap in use, bytes ($SYS heap/current).", s->heap_current);
    gauge(b, "hato_heap_max_bytes", "Most heap in use at once, bytes ($SYS heap/maximum).",
          s->heap_maximum);

    static const char *const windows[3] = {"1min", "5min", "15min"};
    for (int k = 0; k < STATS_LOAD_N; k++) {
        family(b, load_names[k].name, "gauge", load_names[k].help);
        for (int i = 0; i < 3; i++)
            mb_printf(b, "%s{window=\"%s\"} %s\n", load_names[k].name, windows[i],
                      fmt_double(s->load[k][i], d));
    }

    histogram(b, "hato_store_commit_seconds", "Durations of the store's group commits, seconds.",
              &s->store_commit_seconds);
    histogram(b, "hato_delivery_queue_depth",
              "Depth of a session's queue when a message is delivered to it.", &s->queue_depth);

    family(b, "hato_listener_connections", "gauge", "Connections open now, per listener.");
    for (size_t i = 0; i < s->nlisteners; i++)
        listener_sample(b, "hato_listener_connections", &s->listeners[i],
                        s->listeners[i].connections);
    family(b, "hato_listener_accepted_total", "counter", "Connections accepted, per listener.");
    for (size_t i = 0; i < s->nlisteners; i++)
        listener_sample(b, "hato_listener_accepted_total", &s->listeners[i],
                        s->listeners[i].accepted);

    family(b, "hato_worker_clients", "gauge", "Connected clients owned by each worker thread.");
    for (size_t i = 0; i < s->nworkers; i++)
        mb_printf(b, "hato_worker_clients{worker=\"%zu\"} %" PRIu64 "\n", i, s->workers[i].clients);
    family(b, "hato_worker_publish_received_total", "counter",
           "PUBLISH packets received by each worker thread.");
    for (size_t i = 0; i < s->nworkers; i++)
        mb_printf(b, "hato_worker_publish_received_total{worker=\"%zu\"} %" PRIu64 "\n", i,
                  s->workers[i].msgs_received);
    family(b, "hato_worker_publish_sent_total", "counter",
           "PUBLISH packets sent by each worker thread.");
    for (size_t i = 0; i < s->nworkers; i++)
        mb_printf(b, "hato_worker_publish_sent_total{worker=\"%zu\"} %" PRIu64 "\n", i,
                  s->workers[i].msgs_sent);
    family(b, "hato_worker_busy_ratio", "gauge",
           "Share of the last interval each worker thread spent outside its event wait, 0 to 1.");
    for (size_t i = 0; i < s->nworkers; i++)
        mb_printf(b, "hato_worker_busy_ratio{worker=\"%zu\"} %s\n", i,
                  fmt_double(s->workers[i].busy, d));
}

/* The cluster's families, only when the node is in one (cluster.h). */
static void render_cluster(struct mbuf *b, struct broker *br) {
    struct cluster_stats c;
    cluster_stats(br, &c);
    if (!c.enabled)
        return;
    char d[40];
    gauge(b, "hato_cluster_nats_connected", "1 while the node is connected to a NATS server.",
          c.connected);
    gauge(b, "hato_cluster_nodes", "Nodes of the cluster alive now (this one included).", c.nodes);
    counter(b, "hato_cluster_messages_sent_total", "Messages this node published to the cluster.",
            c.sent);
    counter(b, "hato_cluster_messages_received_total",
            "Messages this node received from other nodes (and from its JetStream consumers).",
            c.received);
    counter(b, "hato_cluster_messages_refused_total",
            "Topics and filters too long for a NATS subject: kept on this node.", c.refused);
    gauge(b, "hato_cluster_jetstream_pending",
          "Publishes waiting for JetStream's acknowledgement (held PUBACKs and PUBRECs).",
          c.js_pending);
    counter(b, "hato_cluster_jetstream_failed_total",
            "Publishes JetStream did not take (their publishers were not acknowledged).",
            c.js_failed);
    counter(b, "hato_cluster_reconnects_total", "Reconnections to NATS.", c.reconnects);
    family(b, "hato_cluster_routing_lag_seconds", "gauge",
           "Mean time from publish on another node to arrival here (recent messages).");
    mb_printf(b, "hato_cluster_routing_lag_seconds %s\n", fmt_double(c.lag_ms / 1000.0, d));
}

char *metrics_render(struct broker *b, size_t *len) {
    struct stats_snapshot s;
    if (stats_snapshot(b, &s) < 0)
        return NULL;
    struct mbuf m = {.cap = 16384};
    m.p = malloc(m.cap);
    if (!m.p) {
        stats_snapshot_free(&s);
        return NULL;
    }
    render(&m, &s, b->started);
    render_cluster(&m, b);
    stats_snapshot_free(&s);
    if (m.oom) {
        free(m.p);
        return NULL;
    }
    *len = m.len;
    return m.p;
}

/* ---- requests ---------------------------------------------------------- */

static void respond_text(struct conn *c, int status, const char *extra, bool head_only) {
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", status == 200 ? "ok" : http_reason(status));
    httpc_respond(c, status, CT_TEXT, extra, body, (size_t)n, head_only);
}

/*
 * The last credentials this worker verified, by digest: a scraper sends the
 * same header every few seconds, and an argon2id check costs ~0.1 s of the
 * worker's time. Valid for one listener and one security generation (a
 * reload of the password file forgets it). Per thread: nothing shared, and
 * the password itself is never kept.
 */
static _Thread_local struct {
    const struct hato_listener *l;
    unsigned gen;
    unsigned char digest[32];
    bool valid;
} auth_cache;

static bool digest_of(const char *v, size_t n, unsigned char out[32]) {
    unsigned len = 0;
    return EVP_Digest(v, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32;
}

/* Does the request carry the credentials of a user of the password file?
 * NULL when it does, else why not (for the log). */
static const char *check_auth(struct conn *c, const struct http_head *h, char *user,
                              size_t usercap) {
    int count = 0;
    const struct http_field *f = http_field(h, "Authorization", &count);
    snprintf(user, usercap, "?");
    if (!f)
        return "no credentials";
    if (count > 1)
        return "more than one Authorization header";
    if (f->vlen < 6 || strncasecmp(f->value, "Basic ", 6) != 0)
        return "not Basic authentication";
    const char *v = f->value + 6;
    size_t vlen = f->vlen - 6;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    unsigned gen = security_generation(c->w->b);
    unsigned char digest[32];
    bool have_digest = digest_of(v, vlen, digest);
    if (have_digest && auth_cache.valid && auth_cache.l == c->lcfg && auth_cache.gen == gen &&
        CRYPTO_memcmp(auth_cache.digest, digest, sizeof(digest)) == 0)
        return NULL;
    uint8_t cred[METRICS_CRED_MAX];
    long n = auth_b64_decode(v, vlen, cred, sizeof(cred));
    if (n < 0)
        return "malformed Basic credentials";
    const uint8_t *colon = memchr(cred, ':', (size_t)n);
    if (!colon)
        return "malformed Basic credentials";
    size_t ulen = (size_t)(colon - cred);
    char raw[128];
    snprintf(raw, sizeof(raw), "%.*s", (int)(ulen < sizeof(raw) ? ulen : sizeof(raw) - 1),
             (const char *)cred);
    security_printable(raw, user, usercap);
    if (memchr(cred, 0, ulen))
        return "malformed Basic credentials";
    bool ok = security_check_password(c->w, c->lcfg, (const char *)cred, ulen,
                                      (const char *)colon + 1, (size_t)n - ulen - 1);
    OPENSSL_cleanse(cred, sizeof(cred));
    if (!ok)
        return "wrong user or password";
    if (have_digest) {
        auth_cache.l = c->lcfg;
        auth_cache.gen = gen;
        memcpy(auth_cache.digest, digest, sizeof(digest));
        auth_cache.valid = true;
    }
    return NULL;
}

static void handle(struct conn *c, const struct http_head *h) {
    bool get = httpc_method_is(h, "GET");
    bool head_only = httpc_method_is(h, "HEAD");
    if (!get && !head_only) {
        respond_text(c, 405, "Allow: GET, HEAD\r\n", false);
        return;
    }
    if (c->lcfg->metrics_auth) {
        char user[128];
        const char *why = check_auth(c, h, user, sizeof(user));
        if (why) {
            log_warn("Metrics request from %s on port %d refused (user '%s'): %s.", c->si.peer,
                     c->lcfg->port, user, why);
            respond_text(c, 401, "WWW-Authenticate: Basic realm=\"hato\", charset=\"UTF-8\"\r\n",
                         head_only);
            return;
        }
    }
    size_t plen = httpc_path_len(h);
    if (plen == 8 && memcmp(h->target, "/metrics", 8) == 0) {
        size_t blen = 0;
        char *body = metrics_render(c->w->b, &blen);
        if (!body) {
            respond_text(c, 500, NULL, head_only);
            return;
        }
        httpc_respond(c, 200, CT_METRICS, NULL, body, blen, head_only);
        free(body);
    } else if (plen == 8 && memcmp(h->target, "/healthz", 8) == 0) {
        bool up = atomic_load(&c->w->b->serving) && !atomic_load(&c->w->b->stopping);
        respond_text(c, up ? 200 : 503, NULL, head_only);
    } else {
        respond_text(c, 404, NULL, head_only);
    }
}

void metrics_input(struct conn *c, const uint8_t *data, size_t len) {
    if (c->close_when_sent) {
        httpc_drop_input(c);
        return;
    }
    struct http_head h;
    int r = http_parse_request((const char *)data, len, &h);
    if (r == 0 && len < METRICS_HEAD_MAX) {
        httpc_keep(c, data, len); /* the partial head, for the next read */
        return;
    }
    int status = r == 0 || r > METRICS_HEAD_MAX ? 431 : r < 0 ? -r : 200;
    if (status != 200) {
        log_notice("Metrics request from %s on port %d refused: %d %s.", c->si.peer, c->lcfg->port,
                   status, http_reason(status));
        respond_text(c, status, NULL, false);
    } else {
        handle(c, &h); /* h points into data: before the input goes */
    }
    httpc_drop_input(c);
}
