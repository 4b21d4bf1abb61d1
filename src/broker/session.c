/*
 * Sessions: subscriptions, the outgoing QoS 1/2 window and queue, incoming
 * QoS 2 state, the will and the expiry. All of it is touched only by the
 * owning worker's thread.
 */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/alias.h"
#include "broker/bp_inline.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/limits.h"
#include "broker/security.h"
#include "broker/persist.h"

/* Above max_output_buffer unsent bytes on a connection (default 4 MiB),
 * QoS 0 messages are dropped and QoS 1/2 wait in the session queue (slow
 * consumer protection). */
static bool out_full(const struct conn *c) {
    return c->out_bytes > output_limit(c->w->b->cfg);
}

struct session *session_new(struct worker *w, const char *id, size_t len) {
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->client_id = malloc(len + 1);
    if (!s->client_id) {
        free(s);
        return NULL;
    }
    memcpy(s->client_id, id, len);
    s->client_id[len] = 0;
    s->id_len = len;
    strmap_init(&s->submap);
    s->w = w;
    s->next_pid = 1;
    atomic_init(&s->refs, 1); /* the registry's */
    if (strmap_put(&w->sessions, s->client_id, len, s) < 0) {
        free(s->client_id);
        free(s);
        return NULL;
    }
    stat_inc(&w->sc.nsessions);
    limits_session_add(w->b);
    return s;
}

void session_ref(struct session *s) {
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void deliv_clear(struct deliv *d) {
    msg_unref(d->m);
    d->m = NULL;
    free(d->jsack); /* not acknowledged: JetStream sends it again (cluster.c) */
    d->jsack = NULL;
    if (d->nsub > 1)
        free(d->subids);
    d->subids = NULL;
    d->nsub = 0;
}

static void drop_queues(struct session *s) {
    for (uint32_t i = 0; i < s->ninflight; i++)
        deliv_clear(&s->inflight[s->inflight_head + i]);
    s->ninflight = 0;
    s->inflight_head = 0;
    s->inflight_bytes = 0;
    free(s->pid_bits);
    s->pid_bits = NULL;
    for (uint32_t i = 0; i < s->qlen; i++)
        deliv_clear(&s->queue[(s->qhead + i) % s->qcap]);
    s->qlen = s->qhead = 0;
    s->qbytes = 0;
    s->nin_pids = 0;
    free(s->in_pid_bits);
    s->in_pid_bits = NULL;
}

void session_unref(struct session *s) {
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->cl)
        cluster_session_end(s);
    drop_queues(s);
    free(s->inflight);
    free(s->queue);
    free(s->in_pids);
    free(s->in_pid_bits);
    msg_unref(s->will);
    struct sess_sub *sub = s->subs;
    while (sub) {
        struct sess_sub *n = sub->next;
        free(sub);
        sub = n;
    }
    strmap_free(&s->submap);
    free(s->client_id);
    free(s->username);
    free(s);
}

/* ---- subscriptions ----------------------------------------------------- */

/*
 * A session's subscriptions: a list (in s->subs) indexed by filter (in
 * s->submap), so that adding, checking and removing one costs the same with
 * 10 or 100000 of them. (Scanning the list made one client subscribing
 * 40000 filters cost its worker 19 s.)
 */
int session_sub_add(struct session *s, const char *filter, size_t len, const struct sub_opts *o) {
    struct broker *b = s->w->b;
    struct sess_sub *x = strmap_get(&s->submap, filter, len);
    if (x) {
        x->opts = *o;
        if (sub_tree_add(b->subs, filter, len, s, o) < 0)
            return -1;
        return 0;
    }
    x = malloc(sizeof(*x) + len + 1);
    if (!x)
        return -1;
    x->opts = *o;
    x->len = (uint32_t)len;
    memcpy(x->filter, filter, len);
    x->filter[len] = 0;
    if (strmap_put(&s->submap, x->filter, len, x) < 0) {
        free(x);
        return -1;
    }
    int r = sub_tree_add(b->subs, filter, len, s, o);
    if (r < 0) {
        strmap_del(&s->submap, x->filter, len);
        free(x);
        return -1;
    }
    if (r == 1)
        cluster_interest(b, filter, len, 1);
    x->next = s->subs;
    if (x->next)
        x->next->pprev = &x->next;
    x->pprev = &s->subs;
    s->subs = x;
    s->nsubs++;
    return 1;
}

bool session_has_sub(struct session *s, const char *filter, size_t len) {
    return strmap_get(&s->submap, filter, len) != NULL;
}

int session_sub_remove(struct session *s, const char *filter, size_t len) {
    struct sess_sub *x = strmap_del(&s->submap, filter, len);
    if (!x)
        return 0;
    if (sub_tree_remove(s->w->b->subs, filter, len, s) == 1)
        cluster_interest(s->w->b, filter, len, -1);
    *x->pprev = x->next;
    if (x->next)
        x->next->pprev = x->pprev;
    free(x);
    s->nsubs--;
    return 1;
}

void session_subs_clear(struct session *s) {
    while (s->subs) {
        struct sess_sub *x = s->subs;
        if (sub_tree_remove(s->w->b->subs, x->filter, x->len, s) == 1)
            cluster_interest(s->w->b, x->filter, x->len, -1);
        s->subs = x->next;
        free(x);
    }
    s->nsubs = 0;
    strmap_free(&s->submap);
    strmap_init(&s->submap);
}

/* ---- timers (will delay, session expiry) ------------------------------ */

void session_timer_add(struct session *s) {
    if (s->on_timer_list)
        return;
    session_ref(s);
    s->on_timer_list = true;
    s->timer_next = s->w->timed;
    s->w->timed = s;
}

static void publish_will(struct session *s) {
    struct msg *will = s->will;
    s->will = NULL;
    s->will_at = 0;
    if (!will)
        return;
    if (!s->dead)
        persist_session(s); /* published: a restart must not publish it again */
    /* The ACL may have changed since CONNECT (reload). */
    if (security_acl_active(s->w) && !security_acl(s->w, s->lcfg, s->username, s->client_id,
                                                   will->topic, will->topic_len, AUTH_ACL_WRITE)) {
        log_notice("Will of client %s on '%s' dropped: not writable by the ACL.", s->client_id,
                   will->topic);
        msg_unref(will);
        return;
    }
    log_info("Publishing will of client %s on '%s'.", s->client_id, will->topic);
    route_will(s->w, will);
    msg_unref(will);
}

void session_end(struct session *s) {
    if (s->dead)
        return;
    /* A will still waiting for its delay goes out when the session ends. */
    if (s->will_at)
        publish_will(s);
    s->dead = true;
    persist_session_end(s);
    cluster_session_end(s);
    session_subs_clear(s);
    drop_queues(s);
    msg_unref(s->will);
    s->will = NULL;
    if (strmap_get(&s->w->sessions, s->client_id, s->id_len) == s) {
        strmap_del(&s->w->sessions, s->client_id, s->id_len);
        stat_add(&s->w->sc.nsessions, (unsigned long)-1);
        limits_session_gone(s->w->b);
    }
    session_unref(s);
}

void session_timers(struct worker *w, int64_t now) {
    struct session **pp = &w->timed;
    while (*pp) {
        struct session *s = *pp;
        if (!s->dead && s->will_at && now >= s->will_at)
            publish_will(s);
        if (!s->dead && !s->conn && s->expire_at && now >= s->expire_at) {
            log_info("Session of client %s expired.", s->client_id);
            stat_inc(&w->sc.expired);
            session_end(s);
        }
        bool pending = !s->dead && !s->conn && (s->will_at || s->expire_at);
        if (!pending) {
            *pp = s->timer_next;
            s->on_timer_list = false;
            session_unref(s);
        } else {
            pp = &s->timer_next;
        }
    }
}

void session_detach(struct session *s, bool publish) {
    struct broker *b = s->w->b;
    int64_t now = ev_now(s->w->loop);
    if (publish && s->will) {
        if (s->will_delay == 0 || s->expiry == 0) {
            publish_will(s);
        } else {
            uint32_t delay = s->will_delay < s->expiry ? s->will_delay : s->expiry;
            s->will_at = now + (int64_t)delay * 1000;
            session_timer_add(s);
        }
    } else {
        msg_unref(s->will);
        s->will = NULL;
        s->will_at = 0;
    }
    if (s->expiry == 0) {
        session_end(s);
        return;
    }
    if (s->expiry != UINT32_MAX) {
        s->expire_at = now + (int64_t)s->expiry * 1000;
        session_timer_add(s);
    }
    persist_session_inflight(s); /* packet ids of QoS 1 in flight, for the resend */
    persist_session(s);          /* offline since now, will, expiry as the DISCONNECT left them */
    (void)b;
}

/* ---- outgoing messages -------------------------------------------------- */

static uint32_t window(struct session *s) {
    /* One of our bridges' local side says what it holds (bridge.c). */
    if (s->bridge_local && s->conn && s->conn->receive_max_out)
        return s->conn->receive_max_out;
    uint32_t w = s->w->b->cfg->max_inflight_messages;
    if (w == 0 || w > 65535)
        w = 65535;
    if (s->conn && s->conn->receive_max_out && s->conn->receive_max_out < w)
        w = s->conn->receive_max_out;
    return w;
}

/*
 * Room in the window for one more QoS 1/2 message: under the count
 * (max_inflight_messages, the client's Receive Maximum) and, with
 * max_inflight_bytes, under the bytes, the stricter winning. As Mosquitto
 * (db__ready_for_flight), the byte test is "below the limit before this
 * one": the message that crosses it still goes, the next one waits.
 */
static bool window_room(struct session *s, uint32_t win) {
    if (s->ninflight >= win)
        return false;
    int64_t maxb = s->w->b->cfg->max_inflight_bytes;
    return maxb <= 0 || s->inflight_bytes < (uint64_t)maxb;
}

/*
 * Packet ids in use. A short window is scanned; from PID_BITS_FROM messages
 * in flight on (max_inflight_messages raised by the operator) a bitmap of
 * all 65536 ids is kept instead, so that finding a free id stays O(1)
 * amortised: scanning would cost O(window) per message, O(window^2) to fill
 * the window, which a client that never acknowledges could make the worker
 * spend on purpose.
 */
#define PID_BITS_FROM 64

static void pid_mark(struct session *s, uint16_t pid, bool used) {
    if (!s->pid_bits)
        return;
    if (used)
        s->pid_bits[pid >> 6] |= 1ull << (pid & 63);
    else
        s->pid_bits[pid >> 6] &= ~(1ull << (pid & 63));
}

static bool pid_in_use(struct session *s, uint16_t pid) {
    if (!s->pid_bits && s->ninflight >= PID_BITS_FROM) {
        s->pid_bits = calloc(65536 / 64, sizeof(uint64_t));
        for (uint32_t i = 0; s->pid_bits && i < s->ninflight; i++)
            pid_mark(s, s->inflight[s->inflight_head + i].pid, true);
    }
    if (s->pid_bits)
        return s->pid_bits[pid >> 6] & (1ull << (pid & 63));
    for (uint32_t i = 0; i < s->ninflight; i++)
        if (s->inflight[s->inflight_head + i].pid == pid)
            return true;
    return false;
}

/* Remove in-flight entry i (order kept). */
static void deliv_drop(struct session *s, struct deliv *d);

/* Remove in-flight entry i: done with (acknowledged) or discarded. */
static void inflight_del(struct session *s, uint32_t i) {
    struct deliv *d = &s->inflight[s->inflight_head + i];
    pid_mark(s, d->pid, false);
    s->inflight_bytes -= d->m->payload_len;
    deliv_drop(s, d);
    /* Acknowledgements come mostly in order: the oldest entry goes by
     * moving the start, not the window (O(1), not O(window) per ack). */
    if (i == 0)
        s->inflight_head++;
    else
        memmove(d, d + 1, (s->ninflight - i - 1) * sizeof(*d));
    s->ninflight--;
    if (s->ninflight == 0) {
        s->inflight_head = 0;
        free(s->pid_bits);
        s->pid_bits = NULL;
    }
}

static uint16_t next_pid(struct session *s) {
    for (int tries = 0; tries < 65536; tries++) {
        uint16_t pid = s->next_pid++;
        if (s->next_pid == 0)
            s->next_pid = 1;
        if (pid && !pid_in_use(s, pid))
            return pid;
    }
    return 0;
}

/*
 * Encode and queue one PUBLISH for the session's connection. Returns 0 when
 * sent, 1 when the client's maximum packet size forbids it (the message is
 * discarded for this client, MQTT-3.1.2-25), -1 on error.
 */
/* True when m has an expiry and it has passed. The clock is read only for
 * messages that carry an expiry (most do not). */
static bool expired(const struct msg *m) {
    return m->expiry_at && msg_remaining_expiry(m, msg_now_ms()) == 0;
}

/*
 * The common PUBLISH: MQTT 3.1/3.1.1, or 5.0 with no property to send,
 * encoded from its fields (no struct mqtt_packet, 616 bytes, to clear per
 * delivery). Header and a small payload go out in one conn_write. Returns 0,
 * 1 when the client's Maximum Packet Size forbids it, -1 on error, or 2
 * when the header does not fit the stack buffer (the caller uses the
 * generic path).
 */
static int send_publish_plain(struct conn *c, const struct deliv *d, bool dup, const char *topic,
                              size_t tlen) {
    struct msg *m = d->m;
    uint8_t buf[512];
    size_t head = mqtt_encode_publish_plain(buf, sizeof(buf), c->version, topic, tlen, d->qos,
                                            d->retain, dup, d->pid, m->payload_len);
    if (!head)
        return -1;
    if (c->version == MQTT_V5 && c->max_packet_out && head + m->payload_len > c->max_packet_out)
        return 1; /* MQTT-3.1.2-25 */
    if (head > sizeof(buf))
        return 2;
    if (m->payload_len && m->payload_len <= sizeof(buf) - head) {
        memcpy(buf + head, m->payload, m->payload_len);
        return conn_write(c, buf, head + m->payload_len) < 0 ? -1 : 0;
    }
    if (conn_write(c, buf, head) < 0 || conn_write_payload(c, m) < 0)
        return -1;
    return 0;
}

/* One PUBLISH went out (statistics of the owning worker). */
static void count_sent(struct session *s, const struct msg *m) {
    stat_inc(&s->w->msgs_out);
    s->conn->msgs_out++;
    stat_inc(&s->w->sc.pkts_out);
    stat_add(&s->w->sc.pub_bytes_out, m->payload_len);
    bp_sent(s->conn); /* past the soft limit: its publishers are held (bp.c) */
}

/*
 * The property block of an MQTT 5 PUBLISH of d, in Mosquitto 2.0's layout:
 * the subscription identifiers, the publisher's properties in the order
 * they came (msg.wire_props), then the Message Expiry Interval `left` (when
 * > 0), then the outgoing Topic Alias (when not 0). Writes into buf when
 * cap suffices; returns the size.
 */
static size_t publish_props(const struct msg *m, const struct deliv *d, int64_t left,
                            uint16_t alias, uint8_t *buf, size_t cap) {
    uint8_t tmp[16];
    size_t n = 0;
    const uint32_t *ids = d->nsub == 1 ? &d->subid : d->subids;
    bool write = buf && cap >= publish_props(m, d, left, alias, NULL, 0);
    for (uint32_t i = 0; i < d->nsub; i++) {
        size_t k = 0;
        uint32_t v = ids[i];
        tmp[k++] = MQTT_PROP_SUBSCRIPTION_ID;
        do {
            tmp[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
            v >>= 7;
        } while (v);
        if (write)
            memcpy(buf + n, tmp, k);
        n += k;
    }
    if (write && m->wire_props.len)
        memcpy(buf + n, m->wire_props.p, m->wire_props.len);
    n += m->wire_props.len;
    if (left > 0) {
        uint32_t e = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
        if (write) {
            buf[n] = MQTT_PROP_MESSAGE_EXPIRY;
            buf[n + 1] = (uint8_t)(e >> 24);
            buf[n + 2] = (uint8_t)(e >> 16);
            buf[n + 3] = (uint8_t)(e >> 8);
            buf[n + 4] = (uint8_t)e;
        }
        n += 5;
    }
    if (alias) { /* hato's outgoing alias (Mosquitto 2.0 has none): last */
        if (write) {
            buf[n] = MQTT_PROP_TOPIC_ALIAS;
            buf[n + 1] = (uint8_t)(alias >> 8);
            buf[n + 2] = (uint8_t)alias;
        }
        n += 3;
    }
    return n;
}

/* Encode and write the head (all but the payload) of PUBLISH p: 0, 1 when
 * the client's Maximum Packet Size forbids it, -1 on error. */
static int send_publish_head(struct session *s, const struct mqtt_packet *p, size_t payload_len) {
    struct conn *c = s->conn;
    uint8_t head[512];
    size_t n = mqtt_encode_publish_head(head, sizeof(head), c->version, p);
    if (!n)
        return -1;
    if (c->max_packet_out && n + payload_len > c->max_packet_out) {
        stats_drop(s->w, STATS_DROP_TOO_LARGE);
        return 1;
    }
    if (n <= sizeof(head))
        return conn_write(c, head, n) < 0 ? -1 : 0;
    uint8_t *big = malloc(n);
    if (!big)
        return -1;
    mqtt_encode_publish_head(big, n, c->version, p);
    int r = conn_write(c, big, n);
    free(big);
    return r < 0 ? -1 : 0;
}

static int send_publish(struct session *s, const struct deliv *d, bool dup) {
    struct conn *c = s->conn;
    struct msg *m = d->m;
    const char *topic = m->topic;
    size_t tlen = m->topic_len;
    const char *mount = c->lcfg->mount_point;
    if (mount) {
        size_t ml = strlen(mount);
        if (tlen >= ml && memcmp(topic, mount, ml) == 0) {
            topic += ml;
            tlen -= ml;
        }
    }
    if (log_enabled(LOG_DEBUG)) /* log_type debug, Mosquitto's words */
        log_client(LOG_DEBUG, s->client_id, NULL, c->si.peer,
                   "Sending PUBLISH to %s (d%d, q%d, r%d, m%u, '%.*s', ... (%u bytes))",
                   s->client_id, dup, d->qos, d->retain, d->pid, (int)tlen, topic, m->payload_len);
    if (c->version != MQTT_V5 ||
        (!m->props.present && !m->expiry_at && !d->nsub && !c->alias_out)) {
        int r = send_publish_plain(c, d, dup, topic, tlen);
        if (r != 2) {
            if (r == 0)
                count_sent(s, m);
            else if (r == 1)
                stats_drop(s->w, STATS_DROP_TOO_LARGE);
            return r;
        }
    }
    struct mqtt_packet p = {.type = MQTT_PUBLISH, .packet_id = d->pid};
    p.publish.topic = (struct mqtt_str){(const uint8_t *)topic, (uint32_t)tlen};
    p.publish.qos = d->qos;
    p.publish.retain = d->retain;
    p.publish.dup = dup;
    p.publish.payload = (struct mqtt_str){m->payload, m->payload_len};
    /* Outgoing topic alias (alias.h): the topic once with its alias, then the
     * alias alone with a zero-length topic (MQTT-3.3.2-8, -11; 3.3.2.3.4). */
    bool fresh = false;
    uint16_t alias = c->alias_out ? alias_out_find(c->alias_out, topic, tlen, &fresh) : 0;
    if (alias && !fresh)
        p.publish.topic = (struct mqtt_str){(const uint8_t *)"", 0};
    uint8_t pbuf[256];
    uint8_t *block = pbuf;
    if (c->version == MQTT_V5) {
        int64_t left = m->expiry_at ? msg_remaining_expiry(m, msg_now_ms()) : -1;
        size_t bl = publish_props(m, d, left, alias, NULL, 0);
        if (bl > sizeof(pbuf) && !(block = malloc(bl)))
            return -1;
        publish_props(m, d, left, alias, block, bl);
        p.props.encoded = (struct mqtt_str){block, (uint32_t)bl};
    }
    int r = send_publish_head(s, &p, m->payload_len);
    if (block != pbuf)
        free(block);
    if (r != 0)
        return r; /* 1: not sent, so a fresh alias stays unassigned */
    if (fresh && alias_out_commit(c->alias_out, topic, tlen) < 0)
        return -1;
    if (conn_write_payload(c, m) < 0)
        return -1;
    count_sent(s, m);
    return 0;
}

static void send_pubrel(struct session *s, uint16_t pid) {
    struct mqtt_packet p = {.type = MQTT_PUBREL, .packet_id = pid};
    conn_send(s->conn, &p);
}

static bool online(struct session *s) {
    return s->conn && s->conn->state == CS_CONNECTED && !s->conn->connack_held;
}

/* Drop a delivery for good (and its stored copy). */
static void deliv_drop(struct session *s, struct deliv *d) {
    persist_deliv_done(s, d);
    cluster_deliv_done(d);
    deliv_clear(d);
}

static int ring_push(struct session *s, struct deliv *d);

static int queue_push(struct session *s, struct deliv *d) {
    struct config_limits {
        uint32_t msgs;
        uint64_t bytes;
    } lim = {(uint32_t)s->w->b->cfg->max_queued_messages, (uint64_t)s->w->b->cfg->max_queued_bytes};
    if (s->bridge_qmax)
        lim.msgs = s->bridge_qmax; /* bridge_max_queued_messages */
    if (s->conn && s->conn->bp.full) {
        /* Holding its publishers back (bp.c): what was already on its way
         * from other workers' inboxes when it filled is queued, not lost (the
         * publishers are held, so that is bounded by the inbox backlog). */
        lim.msgs = 0;
        lim.bytes = 0;
    }
    if ((lim.msgs && s->qlen >= lim.msgs) ||
        (lim.bytes && s->qbytes + d->m->payload_len > lim.bytes)) {
        if (!s->queue_full)
            log_notice("Queue of %s %s is full (%u messages, %zu bytes): dropping new "
                       "messages for it (%s, max_queued_bytes).",
                       s->bridge_local ? "bridge" : "client", s->client_id, s->qlen, s->qbytes,
                       s->bridge_qmax ? "bridge_max_queued_messages" : "max_queued_messages");
        s->queue_full = true;
        stats_drop(s->w, s->bridge_local ? STATS_DROP_BRIDGE_QUEUE : STATS_DROP_QUEUE_FULL);
        return -1;
    }
    /* The episode ends when the queue is down to half (a queue hovering at
     * its limit would otherwise log for every message). */
    if (s->queue_full && (!lim.msgs || s->qlen <= lim.msgs / 2) &&
        (!lim.bytes || s->qbytes <= lim.bytes / 2))
        s->queue_full = false;
    if (ring_push(s, d) < 0)
        return -1;
    if (s->conn)
        bp_queued(s->conn); /* a long queue holds its publishers back too (bp.c) */
    return 0;
}

static int ring_push(struct session *s, struct deliv *d) {
    if (s->qlen == s->qcap) {
        uint32_t n = s->qcap ? s->qcap * 2 : 8;
        struct deliv *q = malloc(n * sizeof(*q));
        if (!q)
            return -1;
        for (uint32_t i = 0; i < s->qlen; i++)
            q[i] = s->queue[(s->qhead + i) % s->qcap];
        free(s->queue);
        s->queue = q;
        s->qcap = n;
        s->qhead = 0;
    }
    s->queue[(s->qhead + s->qlen) % s->qcap] = *d;
    s->qlen++;
    s->qbytes += d->m->payload_len;
    return 0;
}

static int inflight_push(struct session *s, struct deliv *d) {
    if (s->inflight_head + s->ninflight == s->capinflight) {
        if (s->inflight_head && s->ninflight <= s->capinflight / 2) {
            /* At least half the array is acknowledged space at the front:
             * one move per capacity/2 acknowledgements. */
            memmove(s->inflight, s->inflight + s->inflight_head, s->ninflight * sizeof(*d));
            s->inflight_head = 0;
        } else {
            uint32_t n = s->capinflight ? s->capinflight * 2 : 4;
            struct deliv *a = realloc(s->inflight, n * sizeof(*a));
            if (!a)
                return -1;
            s->inflight = a;
            s->capinflight = n;
        }
    }
    s->inflight[s->inflight_head + s->ninflight++] = *d;
    s->inflight_bytes += d->m->payload_len;
    pid_mark(s, d->pid, true);
    return 0;
}

int session_restore_deliv(struct session *s, struct deliv *d) {
    if (d->state == DS_QUEUED) {
        /* Within max_queued_messages / max_queued_bytes as when it was queued. */
        return queue_push(s, d) < 0 ? 1 : 0;
    }
    return inflight_push(s, d);
}

/* Send d now (the caller checked the window); takes d's contents. */
static void send_now(struct session *s, struct deliv *d) {
    if (d->qos == 0) {
        send_publish(s, d, false);
        deliv_drop(s, d);
        return;
    }
    d->pid = next_pid(s);
    d->state = d->qos == 1 ? DS_WAIT_PUBACK : DS_WAIT_PUBREC;
    if (d->seq && d->qos == 2) {
        /* Stored QoS 2: the packet id is committed before the client sees it, so a restart
         * resends this very PUBLISH (same id), never a second copy under a new id that the
         * client would deliver again. */
        if (inflight_push(s, d) < 0) {
            deliv_drop(s, d);
            return;
        }
        persist_deliv_update(s, d);
        persist_send_publish(s, d->pid);
        return;
    }
    int r = send_publish(s, d, false);
    if (r != 0 || inflight_push(s, d) < 0) {
        deliv_drop(s, d); /* too large for this client: discarded */
        return;
    }
    /* QoS 1 goes out at once; its packet id is saved only if the connection goes before the
     * PUBACK (persist_session_inflight): a crash re-sends it under a new id, a duplicate,
     * which QoS 1 allows. */
}

void session_send_inflight(struct session *s, uint16_t pid) {
    if (!online(s))
        return; /* resent on reconnect */
    for (uint32_t i = 0; i < s->ninflight; i++) {
        struct deliv *d = &s->inflight[s->inflight_head + i];
        if (d->pid != pid || d->state == DS_WAIT_PUBCOMP)
            continue;
        if (send_publish(s, d, false) != 0) {
            inflight_del(s, i); /* too large for this client: discarded */
            session_pump(s);
        }
        return;
    }
}

/* A subscriber holding its publishers back (bp.c) that would pass
 * max_output_buffer keeps QoS 0 in its queue instead of dropping it: what
 * crossed from other workers before the hold took effect (bounded, the
 * publishers are held). Later QoS 0 queue behind it while any waits, so the
 * order stays. A copy of d is queued; true when it was. */
static bool keep_held_qos0(struct session *s, const struct deliv *d) {
    struct conn *c = s->conn;
    if (c->bp.q0 && !s->qlen)
        c->bp.q0 = false;
    if (d->answer || c->bp.stalled || !((c->bp.full && out_full(c)) || c->bp.q0))
        return false;
    struct deliv q = *d;
    q.seq = q.smid = 0; /* QoS 0: no stored copy to follow */
    q.subids = NULL;
    if (d->nsub > 1) {
        q.subids = malloc(d->nsub * sizeof(uint32_t));
        if (!q.subids)
            return false;
        memcpy(q.subids, d->subids, d->nsub * sizeof(uint32_t));
    }
    msg_ref(q.m);
    if (ring_push(s, &q) < 0) {
        deliv_clear(&q);
        return false;
    }
    c->bp.q0 = true;
    return true;
}

/* QoS 0 to the session's connection: sent now, or dropped and counted when
 * the client is over max_output_buffer. d is left to the caller. */
static void send_qos0(struct session *s, const struct deliv *d) {
    struct conn *c = s->conn;
    const struct hato_config *cfg = s->w->b->cfg;
    if (__builtin_expect(c->bp.full || c->bp.q0, 0) && keep_held_qos0(s, d))
        return;
    /* The retained messages a SUBSCRIBE asked for are all sent: they are
     * bounded by the retained store, and a client over its output limit
     * sends no further SUBSCRIBE (its input waits). */
    if ((out_full(c) || c->bp.stalled) && !d->answer) {
        /* Logged once per episode, counted always. */
        if (!c->dropping && !c->bp.stalled) /* a stall is logged by bp.c */
            log_notice("Client %s is not reading: more than %lld bytes unsent, dropping "
                       "QoS 0 messages for it (max_output_buffer).",
                       s->client_id, (long long)output_limit(cfg));
        c->dropping = true;
        stats_drop(s->w, STATS_DROP_OUTPUT_FULL);
        return;
    }
    /* Episode over when the output is down to half the limit. */
    if (c->dropping && c->out_bytes <= output_limit(cfg) / 2)
        c->dropping = false;
    send_publish(s, d, false);
}

/* Not for this session (any more): ended, expired, or not readable by it (counted). */
static bool undeliverable(struct session *s, const struct deliv *d) {
    if (s->dead)
        return true;
    if (expired(d->m)) {
        stats_drop(s->w, STATS_DROP_EXPIRED);
        return true;
    }
    if (!security_may_read(s->w, s, d->m->topic, d->m->topic_len)) {
        stats_drop(s->w, STATS_DROP_ACL);
        return true;
    }
    return false;
}

bool session_send_qos0(struct session *s, const struct deliv *d) {
    if (!online(s))
        return false;
    if (!undeliverable(s, d))
        send_qos0(s, d);
    return true;
}

void session_deliver(struct session *s, struct deliv *d) {
    if (undeliverable(s, d)) {
        deliv_drop(s, d);
        return;
    }
    stats_qdepth_sample(&s->w->sc, s->qlen);
    struct broker *b = s->w->b;
    if (b->store)
        persist_deliv_new(s, d);
    if (online(s)) {
        struct conn *c = s->conn;
        if (d->qos == 0) {
            send_qos0(s, d);
            deliv_drop(s, d);
            return;
        }
        if (s->qlen == 0 && window_room(s, window(s)) && !out_full(c)) {
            send_now(s, d);
            return;
        }
    } else if (d->qos == 0 && !b->cfg->queue_qos0_messages) {
        stats_drop(s->w, STATS_DROP_QOS0_OFFLINE);
        deliv_drop(s, d);
        return;
    }
    if (queue_push(s, d) < 0)
        deliv_drop(s, d);
}

void session_pump(struct session *s) {
    if (!online(s))
        return;
    uint32_t win = window(s);
    while (s->qlen && !out_full(s->conn)) {
        struct deliv *head = &s->queue[s->qhead];
        if (head->qos > 0 && !window_room(s, win))
            break;
        if (undeliverable(s, head)) {
            /* expired, or no longer readable (ACL reloaded) */
            s->qbytes -= head->m->payload_len;
            deliv_drop(s, head);
        } else {
            struct deliv d = *head;
            s->qbytes -= d.m->payload_len;
            send_now(s, &d);
        }
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
}

void session_resend(struct session *s) {
    /* MQTT-4.4.0-1: unacknowledged PUBLISH (DUP) and PUBREL, in order. */
    for (uint32_t i = 0; i < s->ninflight;) {
        struct deliv *d = &s->inflight[s->inflight_head + i];
        if (d->state == DS_WAIT_PUBCOMP) {
            send_pubrel(s, d->pid);
        } else if (expired(d->m) || send_publish(s, d, true)) {
            inflight_del(s, i);
            continue;
        }
        i++;
    }
}

void session_puback(struct session *s, uint16_t pid, uint8_t type, uint8_t reason) {
    for (uint32_t i = 0; i < s->ninflight; i++) {
        struct deliv *d = &s->inflight[s->inflight_head + i];
        if (d->pid != pid)
            continue;
        bool done = false;
        if (type == MQTT_PUBACK && d->state == DS_WAIT_PUBACK) {
            done = true;
        } else if (type == MQTT_PUBREC &&
                   (d->state == DS_WAIT_PUBREC || d->state == DS_WAIT_PUBCOMP)) {
            if (reason >= 0x80) {
                done = true; /* MQTT 5: the client refused it; no PUBREL */
            } else {
                if (d->state != DS_WAIT_PUBCOMP) {
                    d->state = DS_WAIT_PUBCOMP;
                    persist_deliv_update(s, d);
                }
                cluster_deliv_done(d); /* the client has it: JetStream need not resend it */
                if (d->seq) {
                    /* After the commit: a restart then sends PUBREL, never the PUBLISH. */
                    struct mqtt_packet rel = {.type = MQTT_PUBREL, .packet_id = pid};
                    persist_send_ack(s->conn, &rel);
                } else {
                    send_pubrel(s, pid);
                }
            }
        } else if (type == MQTT_PUBCOMP && d->state == DS_WAIT_PUBCOMP) {
            done = true;
        }
        if (done) {
            inflight_del(s, i);
            session_pump(s);
        }
        return;
    }
}
