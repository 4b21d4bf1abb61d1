/*
 * The bridge engine (docs/internals/bridge.md).
 *
 * One thread with its own event loop drives every bridge. A bridge is a
 * remote client (the other broker) and a local client (hato itself, over a
 * socketpair adopted by worker 0 as an internal connection: user name
 * local_username, password checked only when local_password is set,
 * ACLs apply). The local client is
 * MQTT 5 and subscribes to the out/both patterns with no-local and
 * retain-as-published; the remote one subscribes to the in/both patterns.
 *
 * No loss across reconnects: both clients acknowledge by hand
 * (hc_config.manual_ack). A QoS 1/2 message is acknowledged to the side it
 * came from only once the other side has acknowledged its copy; a message
 * in flight when a side is lost is sent again by its sender (hato's session
 * or the remote session), so it is delivered at least once (QoS 1).
 *
 * The local client is connected only while the remote one is: when the
 * remote broker is away, hato's session of the bridge (local_clientid)
 * queues what the out patterns match, as for any offline client
 * (bridge_max_queued_messages bounds that queue). So that the session and
 * its subscriptions exist before the remote was ever reached, a bridge with
 * local_cleansession false first connects its local side alone, subscribes
 * and disconnects (B_REG), then makes its first remote attempt.
 *
 * start_type lazy turns it around: the local client is connected first and
 * what it receives waits in the engine (QoS 1/2 unacknowledged, so hato
 * still holds them) until more than `threshold` messages wait; then the
 * remote connection is made and they go out in order. After idle_timeout
 * seconds without a message either way the remote connection is closed.
 *
 * round_robin false with several addresses: while on a later address, the
 * first one is probed (a TCP connect) every restart_timeout; once it
 * answers, the bridge moves back to it.
 */
#include "broker/bridge.h"
#include "base/log.h"
#include "broker/broker.h"
#include "config/bridge_conf.h"
#include "config/config.h"
#include "event/loop.h"
#include "hato/client.h"
#include "transport/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS 100

/* A message in flight across the bridge: the copy's id on the sending
 * client, and the original's packet id to acknowledge on the other. */
struct bmap {
    uint16_t mid; /* on the client the copy went out through */
    uint16_t pid; /* on the client the original came from */
};

struct bmaps {
    struct bmap *v;
    size_t n, cap;
};

enum bstate {
    B_WAIT,    /* waiting for the next attempt (next_try) */
    B_REMOTE,  /* remote connection under way */
    B_UP,      /* remote connected; local connection started */
    B_STOPPED, /* start_type once, after its connection ended */
    B_LAZY,    /* start_type lazy: local side connected, messages counted */
    B_REG,     /* local side alone, to leave hato a session that queues */
};

/* start_type lazy: a message from hato waiting for the remote connection. */
struct bpend {
    char *topic;
    uint8_t *payload;
    size_t len;
    uint8_t *props; /* forwarded properties' entries (fwd_props), NULL = none */
    size_t nprops;
    uint16_t mid; /* to acknowledge to hato (QoS 1/2) */
    uint8_t qos;
    bool retain;
};

/* QoS 0 messages a lazy bridge keeps waiting at most (QoS 1/2 are bounded
 * by the local side's Receive Maximum). */
#define LAZY_MAX_QOS0 65536

/* The PUBLISH properties that travel from publisher to subscriber (MQTT 5
 * section 3.3.2.3): they cross the bridge. Topic aliases and subscription
 * identifiers belong to one connection and stay behind. */
#define FWD_PROPS                                                                                  \
    (MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) |           \
     MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |             \
     MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY))

/* The forwarded properties of a received message, encoded (their entries,
 * in wire order) into buf[0..cap) or a malloc'd block put in *heap (free
 * it). Returns them, *n their size; NULL and 0 when there are none. */
static const uint8_t *fwd_props(const struct mqtt_props *in, uint8_t *buf, size_t cap,
                                uint8_t **heap, size_t *n) {
    *heap = NULL;
    *n = 0;
    if (!in || !(in->present & FWD_PROPS))
        return NULL;
    size_t need = mqtt_props_copy_entries(in, FWD_PROPS, buf, cap);
    if (need > cap) {
        *heap = malloc(need);
        if (!*heap || mqtt_props_copy_entries(in, FWD_PROPS, *heap, need) != need) {
            free(*heap);
            *heap = NULL;
            return NULL;
        }
        buf = *heap;
    }
    *n = need;
    return need ? buf : NULL;
}

struct bconn;

struct bside {
    struct ev_io io; /* io.fd -1: not watched */
    struct hc_client *c;
    struct bconn *bc;
    bool remote;
};

struct bconn {
    struct engine *e;
    const struct hato_bridge *cfg; /* in a config that lives until exit */
    struct bside r, l;
    enum bstate st;
    size_t addr; /* index into cfg->addrs of the current attempt */
    int64_t next_try;
    int wait_ms;        /* last back-off wait (restart_timeout base cap) */
    bool remote_up;     /* remote CONNACK 0 seen in this attempt */
    bool once_up;       /* start_type once: a connection was up (then it is not made again) */
    bool local_up;      /* local CONNACK 0 seen */
    bool notified;      /* "1" published locally: "0" is due when it ends */
    bool dead;          /* torn down at the end of the turn */
    char why[256];      /* why it ended (logged by the tear-down) */
    struct bmaps out;   /* remote mid -> local pid */
    struct bmaps in;    /* local mid -> remote pid */
    bool registered;    /* hato has the local session (B_REG done, or was connected) */
    bool reg_done;      /* B_REG: the local side subscribed and disconnected */
    uint32_t reg_subs;  /* B_REG: SUBACKs still awaited before the DISCONNECT */
    bool graceful;      /* tear down with a DISCONNECT (idle, back to the first address) */
    bool to_main;       /* the first address answers: the next attempt is on it, at once */
    int64_t last_msg;   /* lazy: the last message either way (idle_timeout) */
    int64_t probe_at;   /* round_robin false on a later address: next probe of the first */
    struct ev_io probe; /* that probe's connect (io.fd -1: none) */
    struct bpend *pend; /* lazy: messages from hato waiting for the remote */
    size_t npend, cappend, npend0;
    bool pend_full_logged;
    struct bconn *next; /* engine's list */
};

struct engine {
    struct broker *b;
    struct ev_loop *loop;
    pthread_t thread;
    bool running;
    struct bconn *list;
    /* Retired bridges, freed by on_after: an event of the same epoll batch
     * may still point into one (a reload or stop in on_wake). */
    struct bconn *graveyard;
    /* The socket identity internal connections are accepted on. */
    struct lsock ls;
    atomic_int nconns;
    atomic_ulong accepted;
    /* Cross-thread requests (under lock), handled on wake. */
    pthread_mutex_t lock;
    const struct hato_config *pending_cfg;
    bool stop;
    unsigned rnd;
};

static struct engine *g_engine; /* one broker per process */

/* ---- helpers ----------------------------------------------------------- */

static const struct hato_bridge_addr *cur_addr(const struct bconn *bc) {
    return &bc->cfg->addrs[bc->addr];
}

static bool bridge_tls(const struct hato_bridge *cfg) {
    return cfg->cafile || cfg->capath || cfg->certfile || cfg->tls_use_os_certs || cfg->psk;
}

/* The port of address i: its own, else by its kind. */
static uint16_t addr_port_at(const struct bconn *bc, size_t i) {
    const struct hato_bridge_addr *a = &bc->cfg->addrs[i];
    if (a->port)
        return a->port;
    bool tls = bridge_tls(bc->cfg) || a->ws_tls;
    if (a->ws_path) /* a URL: the web's ports */
        return tls ? 443 : 80;
    return tls ? 8883 : 1883;
}

static uint16_t addr_port(const struct bconn *bc) {
    return addr_port_at(bc, bc->addr);
}

/* Room for one more element in a doubling array *v of *cap (first: the
 * first size). 0, or -1 with the array unchanged. */
static int grow(void **v, size_t *cap, size_t n, size_t elem, size_t first) {
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : first;
    void *nv = realloc(*v, c * elem);
    if (!nv)
        return -1;
    *v = nv;
    *cap = c;
    return 0;
}

static int map_add(struct bmaps *m, uint16_t mid, uint16_t pid) {
    void *v = m->v;
    if (grow(&v, &m->cap, m->n, sizeof *m->v, 32) < 0)
        return -1;
    m->v = v;
    m->v[m->n++] = (struct bmap){mid, pid};
    return 0;
}

/* The original's packet id for a completed copy, 0 when none (QoS 0, or
 * an acknowledgement of a message the bridge did not forward). */
static uint16_t map_take(struct bmaps *m, uint16_t mid) {
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].mid == mid) {
            uint16_t pid = m->v[i].pid;
            m->v[i] = m->v[--m->n];
            return pid;
        }
    return 0;
}

/* Topic filter a rule subscribes to on one side: prefix + pattern; for the
 * empty pattern the prefix alone (a topic renamed as a whole). */
static char *rule_filter(const struct hato_bridge_topic *t, bool remote) {
    const char *pfx = remote ? t->remote_prefix : t->local_prefix;
    if (!pfx)
        pfx = "";
    size_t n = strlen(pfx) + strlen(t->pattern) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", pfx, t->pattern);
    return s;
}

/*
 * The topic on the other side for a message on `topic` that arrived from
 * the local side (to_remote) or the remote side: the first rule of that
 * direction whose filter matches it gives the prefixes and the QoS.
 * Returns the new topic (malloc'd) and *qos, or NULL when no rule matches.
 */
static char *map_topic(const struct hato_bridge *cfg, const char *topic, bool to_remote,
                       uint8_t *qos) {
    size_t tlen = strlen(topic);
    for (size_t i = 0; i < cfg->n_topics; i++) {
        const struct hato_bridge_topic *t = &cfg->topics[i];
        if (!(t->direction & (to_remote ? BRIDGE_OUT : BRIDGE_IN)))
            continue;
        const char *from = to_remote ? t->local_prefix : t->remote_prefix;
        const char *to = to_remote ? t->remote_prefix : t->local_prefix;
        char *f = rule_filter(t, !to_remote);
        if (!f)
            return NULL;
        bool hit =
            *f && mqtt_topic_match((const uint8_t *)f, strlen(f), (const uint8_t *)topic, tlen);
        free(f);
        if (!hit)
            continue;
        size_t flen = from ? strlen(from) : 0;
        const char *rest = topic + flen; /* the filter starts with the prefix */
        if (t->pattern[0] == '\0')
            rest = ""; /* the whole topic is the prefix */
        if (!to)
            to = "";
        size_t n = strlen(to) + strlen(rest) + 1;
        char *s = malloc(n);
        if (!s)
            return NULL;
        snprintf(s, n, "%s%s", to, rest);
        if (!*s) {
            free(s);
            continue;
        }
        *qos = t->qos;
        return s;
    }
    return NULL;
}

/* restart_timeout: constant, or Mosquitto's back-off with jitter between
 * base and three times the last wait, capped. */
static int next_wait_ms(struct bconn *bc) {
    const struct hato_bridge *cfg = bc->cfg;
    int base = cfg->restart_base * 1000;
    if (cfg->restart_cap == 0)
        return base;
    int cap = cfg->restart_cap * 1000;
    int hi = bc->wait_ms ? bc->wait_ms * 3 : base;
    if (hi > cap)
        hi = cap;
    if (hi < base)
        hi = base;
    bc->e->rnd = bc->e->rnd * 1103515245u + 12345u;
    int w = base + (int)((bc->e->rnd >> 8) % (unsigned)(hi - base + 1));
    bc->wait_ms = w;
    return w;
}

static void side_watch(struct bside *s) {
    struct ev_loop *loop = s->bc->e->loop;
    int fd = s->c ? hc_fd(s->c) : -1;
    if (s->io.fd >= 0 && s->io.fd != fd) {
        ev_io_stop(loop, &s->io);
        s->io.fd = -1;
    }
    if (fd < 0)
        return;
    uint32_t ev = EV_READ | (hc_want_write(s->c) ? EV_WRITE : 0);
    if (s->io.fd < 0)
        ev_io_start(loop, &s->io, fd, ev, s->io.fn, s);
    else
        ev_io_set(loop, &s->io, ev);
}

static void side_close(struct bside *s, bool graceful) {
    if (s->io.fd >= 0) {
        ev_io_stop(s->bc->e->loop, &s->io);
        s->io.fd = -1;
    }
    if (!s->c)
        return;
    if (graceful && hc_state(s->c) == HC_ST_CONNECTED) {
        /* DISCONNECT (no will, the session stays), written at once: the
         * socket has room for a few bytes; what does not fit is dropped. */
        if (hc_disconnect(s->c, 0, NULL) == HC_OK)
            for (int i = 0; i < 4 && hc_fd(s->c) >= 0 && hc_want_write(s->c); i++)
                hc_on_writable(s->c, (uint64_t)ev_clock_ms());
    }
    hc_free(s->c);
    s->c = NULL;
}

static bool lazy(const struct bconn *bc) {
    return bc->cfg->start_type == BRIDGE_START_LAZY;
}

static void pend_clear(struct bconn *bc) {
    for (size_t i = 0; i < bc->npend; i++) {
        free(bc->pend[i].topic);
        free(bc->pend[i].payload);
        free(bc->pend[i].props);
    }
    bc->npend = bc->npend0 = 0;
    bc->pend_full_logged = false;
}

/* Keep a message from hato until the remote is up. -1: not kept (a QoS
 * 1/2 one stays unacknowledged, so hato sends it again). */
static int pend_add(struct bconn *bc, const struct hc_message *m) {
    if (m->qos == 0 && bc->npend0 >= LAZY_MAX_QOS0) {
        if (!bc->pend_full_logged)
            log_notice("Bridge %s: %d QoS 0 messages wait for the remote broker: dropping "
                       "more until it is connected.",
                       bc->cfg->name, LAZY_MAX_QOS0);
        bc->pend_full_logged = true;
        return -1;
    }
    void *v = bc->pend;
    if (grow(&v, &bc->cappend, bc->npend, sizeof *bc->pend, 16) < 0)
        return -1;
    bc->pend = v;
    struct bpend *p = &bc->pend[bc->npend];
    p->topic = strdup(m->topic);
    p->payload = malloc(m->payload_len ? m->payload_len : 1);
    if (!p->topic || !p->payload) {
        free(p->topic);
        free(p->payload);
        return -1;
    }
    if (m->payload_len)
        memcpy(p->payload, m->payload, m->payload_len);
    p->len = m->payload_len;
    /* No buffer: any forwarded properties come back in a malloc'd block. */
    fwd_props(m->props, NULL, 0, &p->props, &p->nprops);
    if (m->props && (m->props->present & FWD_PROPS) && !p->props) {
        free(p->topic);
        free(p->payload);
        return -1;
    }
    p->mid = m->mid;
    p->qos = m->qos;
    p->retain = m->retain;
    bc->npend++;
    if (m->qos == 0)
        bc->npend0++;
    return 0;
}

static void probe_stop(struct bconn *bc) {
    if (bc->probe.fd < 0)
        return;
    int fd = bc->probe.fd;
    ev_io_stop(bc->e->loop, &bc->probe);
    bc->probe.fd = -1;
    close(fd);
}

static void notify_local(struct bconn *bc, const char *state) {
    if (!bc->cfg->notifications)
        return;
    broker_publish_internal(bc->e->b, bc->cfg->notification_topic, state, 1, 1, true);
}

/* ---- tear-down and attempts -------------------------------------------- */

/* Mark the bridge for tear-down at the end of the turn (callbacks must not
 * free clients). The first reason is kept. */
static void bridge_fail(struct bconn *bc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bridge_fail(struct bconn *bc, const char *fmt, ...) {
    if (bc->dead)
        return;
    bc->dead = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bc->why, sizeof bc->why, fmt, ap);
    va_end(ap);
}

static void schedule(struct bconn *bc, int64_t now) {
    if (bc->graceful || bc->to_main) {
        /* Idle (lazy) or back to the first address: no failure to wait for. */
        bc->graceful = bc->to_main = false;
        bc->st = B_WAIT;
        bc->next_try = now;
        return;
    }
    /* once: connected at start and not again after that connection ends;
     * attempts that never got a CONNACK (the remote not up yet) are retried. */
    if (bc->cfg->start_type == BRIDGE_START_ONCE && bc->once_up) {
        bc->st = B_STOPPED;
        log_notice("Bridge %s: start_type once: not reconnecting.", bc->cfg->name);
        return;
    }
    bc->st = B_WAIT;
    bc->next_try = now + next_wait_ms(bc);
}

static void teardown(struct bconn *bc, bool graceful) {
    const struct hato_bridge_addr *a = cur_addr(bc);
    bool was_up = bc->remote_up;
    if (bc->why[0]) {
        if (bc->graceful)
            log_notice("Bridge %s: %s: disconnecting from %s:%u.", bc->cfg->name, bc->why, a->host,
                       addr_port(bc));
        else if (was_up)
            log_notice("Bridge %s: connection to %s:%u lost: %s.", bc->cfg->name, a->host,
                       addr_port(bc), bc->why);
        else
            log_warn("Bridge %s: connecting to %s:%u failed: %s.", bc->cfg->name, a->host,
                     addr_port(bc), bc->why);
    }
    if (bc->notified) {
        notify_local(bc, "0");
        bc->notified = false;
    }
    /* The local side first, with its acknowledgements of what the remote
     * took; what it did not acknowledge hato sends again next time. */
    side_close(&bc->l, true);
    side_close(&bc->r, graceful);
    probe_stop(bc);
    pend_clear(bc); /* QoS 1/2 ones come again from hato; QoS 0 ones are lost */
    bc->out.n = bc->in.n = 0;
    bc->remote_up = bc->local_up = false;
    bc->dead = false;
    bc->why[0] = '\0';
    /* Next address: after a failed attempt always; after a lost connection
     * with round_robin, else back to the first (the primary). */
    if (bc->to_main)
        bc->addr = 0;
    else if (bc->cfg->n_addrs > 1 && !bc->graceful) {
        if (!was_up || bc->cfg->round_robin)
            bc->addr = (bc->addr + 1) % bc->cfg->n_addrs;
        else
            bc->addr = 0;
    }
}

static void remote_on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                              const struct mqtt_props *props);
static void remote_on_disconnect(struct hc_client *c, void *ud, int err);
static void remote_on_message(struct hc_client *c, void *ud, const struct hc_message *m);
static void remote_on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason);
static void local_on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                             const struct mqtt_props *props);
static void local_on_disconnect(struct hc_client *c, void *ud, int err);
static void local_on_message(struct hc_client *c, void *ud, const struct hc_message *m);
static void local_on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                               const uint8_t *codes, const struct mqtt_props *props);
static void local_on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason);
static void both_up(struct bconn *bc);

/* round_robin false: how often the first address is probed. */
static int64_t probe_period(const struct bconn *bc) {
    return bc->cfg->restart_base > 0 ? (int64_t)bc->cfg->restart_base * 1000 : 1000;
}

static void attempt(struct bconn *bc, int64_t now) {
    const struct hato_bridge *cfg = bc->cfg;
    const struct hato_bridge_addr *a = cur_addr(bc);
    struct mqtt_props cp = {0};
    if (cfg->version == MQTT_V5) {
        if (!cfg->clean) {
            cp.session_expiry = UINT32_MAX; /* the remote keeps the session */
            cp.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        }
        if (cfg->max_packet_size) {
            cp.maximum_packet_size = cfg->max_packet_size;
            cp.present |= MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
        }
    }
    struct hc_config hc = {
        .host = a->host,
        .port = addr_port(bc),
        .bind_address = cfg->bind_address,
        .version = cfg->version,
        .client_id = cfg->remote_clientid,
        .clean = cfg->clean,
        .keepalive = (uint16_t)cfg->keepalive,
        .username = cfg->remote_username,
        .password = (const uint8_t *)cfg->remote_password,
        .password_len = cfg->remote_password ? strlen(cfg->remote_password) : 0,
        .connect_props = cp.present ? &cp : NULL,
        .tls = bridge_tls(cfg) || a->ws_tls,
        .cafile = cfg->cafile,
        .capath = cfg->capath,
        .tls_use_os_certs = cfg->tls_use_os_certs,
        .certfile = cfg->certfile,
        .keyfile = cfg->keyfile,
        .tls_version = cfg->tls_version,
        .insecure = cfg->insecure,
        .psk_hex = cfg->psk,
        .psk_identity = cfg->identity,
        .alpn = cfg->alpn,
        .ws_path = a->ws_path,
        .manual_ack = true,
        .try_private = cfg->try_private,
    };
    if (cfg->notifications && !cfg->notifications_local_only) {
        hc.will_topic = cfg->notification_topic;
        hc.will_payload = (const uint8_t *)"0";
        hc.will_payload_len = 1;
        hc.will_qos = 1;
        hc.will_retain = true;
    }
    struct hc_callbacks cb = {.on_connect = remote_on_connect,
                              .on_disconnect = remote_on_disconnect,
                              .on_message = remote_on_message,
                              .on_publish = remote_on_publish};
    log_notice("Connecting bridge %s (%s:%u)", cfg->name, a->host, addr_port(bc));
    int err = 0;
    bc->r.c = hc_new(&hc, &cb, bc, &err);
    if (!bc->r.c) {
        snprintf(bc->why, sizeof bc->why, "%s", hc_config_error());
        teardown(bc, false);
        schedule(bc, now);
        return;
    }
    err = hc_connect(bc->r.c, (uint64_t)now);
    if (err != HC_OK) {
        snprintf(bc->why, sizeof bc->why, "%s", hc_error_text(bc->r.c));
        teardown(bc, false);
        schedule(bc, now);
        return;
    }
    bc->st = B_REMOTE;
    side_watch(&bc->r);
}

/* ---- the local side ---------------------------------------------------- */

/* A connection of hato's own over a socketpair, handed to worker 0 as if
 * accepted: it reads the CONNECT and moves it to the owning worker. */
static int adopt_local(struct bconn *bc, int fd) {
    struct engine *e = bc->e;
    struct broker *b = e->b;
    struct conn *c = calloc(1, sizeof *c);
    struct item *it = calloc(1, sizeof *it);
    if (!c || !it)
        goto fail;
    /* Without local_password the user name is the bridge's, fixed, with
     * no password to check (Mosquitto's local side is trusted too); with
     * one, the local CONNECT carries both and hato checks them. */
    bool trusted = !bc->cfg->local_password;
    if (trusted && bc->cfg->local_username && !(c->username = strdup(bc->cfg->local_username)))
        goto fail;
    tcp_stream_init(&c->tcp, fd, &c->si);
    c->st = &c->tcp;
    c->io.fd = -1;
    c->ls = &e->ls;
    c->lcfg = &broker_config(b)->default_listener;
    c->counted = false;
    c->state = CS_NEW;
    c->last_rx = ev_clock_ms();
    c->username_from_tls = trusted;
    c->bridge_local = true;
    c->bridge_nofwd = !bc->cfg->forward_bridged;
    c->bridge_qmax = bc->cfg->max_queued;
    snprintf(c->si.peer, sizeof c->si.peer, "bridge:%s", bc->cfg->name);
    it->kind = IT_ADOPT;
    it->c = c;
    c->w = &b->workers[0];
    worker_post(NULL, &b->workers[0], it);
    return 0;
fail:
    if (c)
        free(c->username);
    free(c);
    free(it);
    close(fd);
    return -1;
}

static void start_local(struct bconn *bc, int64_t now) {
    const struct hato_bridge *cfg = bc->cfg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        bridge_fail(bc, "local connection: socketpair: %s", strerror(errno));
        return;
    }
    struct mqtt_props cp = {0};
    if (!cfg->local_clean) {
        cp.session_expiry = UINT32_MAX; /* hato keeps what the out patterns match */
        cp.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    }
    /* What hato may leave unacknowledged with us: lazy counts up to
     * more than `threshold` of them. */
    int rmax = lazy(bc) && cfg->threshold + 1 > 100 ? cfg->threshold + 1 : 100;
    struct hc_config hc = {
        .version = MQTT_V5,
        .client_id = cfg->local_clientid,
        .clean = cfg->local_clean,
        .keepalive = 0,
        .connect_props = cp.present ? &cp : NULL,
        .manual_ack = true,
        .max_inflight = 100,
        .receive_maximum = (uint16_t)rmax,
        .username = cfg->local_password ? cfg->local_username : NULL,
        .password = (const uint8_t *)cfg->local_password,
        .password_len = cfg->local_password ? strlen(cfg->local_password) : 0,
    };
    struct hc_callbacks cb = {.on_connect = local_on_connect,
                              .on_disconnect = local_on_disconnect,
                              .on_message = local_on_message,
                              .on_publish = local_on_publish,
                              .on_subscribe = local_on_subscribe};
    int err = 0;
    bc->l.c = hc_new(&hc, &cb, bc, &err);
    if (!bc->l.c) {
        close(sv[0]);
        close(sv[1]);
        bridge_fail(bc, "local connection: %s", hc_config_error());
        return;
    }
    if (adopt_local(bc, sv[1]) < 0) {
        close(sv[0]);
        bridge_fail(bc, "local connection: out of memory");
        return;
    }
    if (hc_connect_fd(bc->l.c, sv[0], (uint64_t)now) != HC_OK) {
        bridge_fail(bc, "local connection: %s", hc_error_text(bc->l.c));
        return;
    }
    side_watch(&bc->l);
}

/* B_REG: the subscriptions are in hato's session (their SUBACKs came):
 * leave it, it stays and queues. Before the SUBACKs, a message published
 * right after the remote's first failed attempt could find no subscription. */
static void reg_leave(struct bconn *bc) {
    int rc = hc_disconnect(bc->l.c, 0, NULL);
    if (rc != HC_OK)
        bridge_fail(bc, "local disconnect: %s", hc_strerror(rc));
}

static void local_on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                               const uint8_t *codes, const struct mqtt_props *props) {
    (void)c;
    (void)mid;
    (void)props;
    struct bconn *bc = ud;
    for (uint32_t i = 0; i < count; i++)
        if (codes[i] >= 0x80)
            log_warn("Bridge %s: the local broker refused a subscription (reason 0x%02x).",
                     bc->cfg->name, codes[i]);
    if (bc->st == B_REG && bc->reg_subs && --bc->reg_subs == 0)
        reg_leave(bc);
}

static void local_on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                             const struct mqtt_props *props) {
    (void)sp;
    (void)props;
    struct bconn *bc = ud;
    if (reason != 0) {
        bridge_fail(bc, "the local connection was refused: %s (reason 0x%02x)",
                    hc_connack_text(MQTT_V5, reason), reason);
        return;
    }
    bc->local_up = true;
    bc->registered = true;
    bc->reg_subs = 0;
    const struct hato_bridge *cfg = bc->cfg;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        const struct hato_bridge_topic *t = &cfg->topics[i];
        if (!(t->direction & BRIDGE_OUT))
            continue;
        char *f = rule_filter(t, false);
        if (!f) {
            bridge_fail(bc, "out of memory");
            return;
        }
        struct mqtt_sub_entry e = {.filter = {(const uint8_t *)f, (uint32_t)strlen(f)},
                                   .qos = t->qos,
                                   .no_local = true,
                                   .retain_as_published = true};
        int rc = hc_subscribe(c, 1, &e, NULL, NULL);
        free(f);
        if (rc != HC_OK) {
            bridge_fail(bc, "local subscribe: %s", hc_strerror(rc));
            return;
        }
        bc->reg_subs++;
    }
    if (bc->st == B_REG) {
        if (bc->reg_subs == 0)
            reg_leave(bc);
        return; /* local_on_subscribe leaves once every SUBACK is in */
    }
    if (bc->remote_up)
        both_up(bc);
}

static void local_on_disconnect(struct hc_client *c, void *ud, int err) {
    struct bconn *bc = ud;
    if (bc->st == B_REG && err == HC_OK && bc->local_up) {
        bc->reg_done = true; /* on_after closes it and goes on */
        return;
    }
    bridge_fail(bc, "the local connection ended: %s",
                err == HC_OK          ? "closed"
                : hc_error_text(c)[0] ? hc_error_text(c)
                                      : hc_strerror(err));
}

/* Estimated size of the PUBLISH for bridge_max_packet_size. */
static size_t publish_size(const struct bconn *bc, size_t tlen, size_t plen, uint8_t qos,
                           size_t nprops) {
    size_t rem = 2 + tlen + (qos ? 2 : 0) + plen +
                 (bc->cfg->version == MQTT_V5 ? nprops + (nprops < 128 ? 1 : 4) : 0);
    size_t hdr = 1 + (rem < 128 ? 1 : rem < 16384 ? 2 : rem < 2097152 ? 3 : 4);
    return hdr + rem;
}

/* A message from hato for the remote broker (connected): sent, and its
 * acknowledgement to hato left for the remote's; or acknowledged now when
 * no copy that needs one went out. */
static void forward_out(struct bconn *bc, const char *ltopic, const uint8_t *payload, size_t len,
                        uint8_t mqos, bool mretain, uint16_t pid, const uint8_t *props,
                        size_t nprops) {
    uint8_t rq = 0;
    char *topic = map_topic(bc->cfg, ltopic, true, &rq);
    uint8_t qos = mqos < rq ? mqos : rq;
    bool sent = false;
    bc->last_msg = ev_now(bc->e->loop);
    if (topic) {
        bool retain = bc->cfg->outgoing_retain ? mretain : false;
        size_t limit = bc->cfg->max_packet_size;
        if (bc->cfg->version != MQTT_V5)
            nprops = 0; /* MQTT 3.1.1 has no properties */
        if (limit && publish_size(bc, strlen(topic), len, qos, nprops) > limit) {
            log_notice("Bridge %s: message on %s (%zu bytes) over bridge_max_packet_size %zu: not "
                       "sent.",
                       bc->cfg->name, ltopic, len, limit);
        } else {
            uint16_t mid = 0;
            struct mqtt_props pr = {.present = 1, .encoded = {props, (uint32_t)nprops}};
            int rc =
                hc_publish(bc->r.c, topic, payload, len, qos, retain, nprops ? &pr : NULL, &mid);
            if (rc == HC_OK && qos > 0 && mqos > 0) {
                if (map_add(&bc->out, mid, pid) < 0)
                    bridge_fail(bc, "out of memory");
                sent = true;
            } else if (rc != HC_OK) {
                log_warn("Bridge %s: cannot forward %s: %s.", bc->cfg->name, ltopic,
                         hc_strerror(rc));
            }
        }
        free(topic);
    }
    if (!sent && mqos > 0 && bc->l.c)
        hc_ack(bc->l.c, pid);
}

static void local_on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c;
    struct bconn *bc = ud;
    if (bc->r.c && bc->remote_up) {
        uint8_t buf[512], *heap;
        size_t n;
        const uint8_t *pb = fwd_props(m->props, buf, sizeof buf, &heap, &n);
        forward_out(bc, m->topic, m->payload, m->payload_len, m->qos, m->retain, m->mid, pb, n);
        free(heap);
        return;
    }
    /* Not acknowledged: hato sends it again on the next connection. A lazy
     * bridge keeps it and counts it towards its threshold. */
    if (lazy(bc))
        pend_add(bc, m);
}

/* Both sides connected: the state is "1", and what a lazy bridge kept goes
 * out in the order it came. */
static void both_up(struct bconn *bc) {
    notify_local(bc, "1");
    bc->notified = bc->cfg->notifications;
    bc->last_msg = ev_now(bc->e->loop);
    for (size_t i = 0; i < bc->npend && !bc->dead; i++) {
        struct bpend *p = &bc->pend[i];
        forward_out(bc, p->topic, p->payload, p->len, p->qos, p->retain, p->mid, p->props,
                    p->nprops);
    }
    pend_clear(bc);
}

/* The remote broker took a copy: acknowledge the original to hato. */
static void remote_on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    (void)c;
    (void)reason;
    struct bconn *bc = ud;
    uint16_t pid = map_take(&bc->out, mid);
    if (pid && bc->l.c)
        hc_ack(bc->l.c, pid);
}

/* ---- the remote side --------------------------------------------------- */

static void remote_on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                              const struct mqtt_props *props) {
    (void)sp;
    (void)props;
    struct bconn *bc = ud;
    const struct hato_bridge *cfg = bc->cfg;
    if (reason != 0) {
        /* "Connection Refused: not authorised (CONNACK code 5)" */
        const char *t = hc_connack_text(cfg->version, reason);
        size_t n = strlen(t);
        if (n && t[n - 1] == '.')
            n--;
        bridge_fail(bc, "%.*s (CONNACK code %u)", (int)n, t, reason);
        return;
    }
    bc->remote_up = true;
    bc->once_up = true;
    bc->wait_ms = 0; /* the back-off starts again */
    bc->st = B_UP;
    log_notice("Bridge %s connected to %s:%u.", cfg->name, cur_addr(bc)->host, addr_port(bc));
    bool v5 = cfg->version == MQTT_V5;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        const struct hato_bridge_topic *t = &cfg->topics[i];
        char *f = rule_filter(t, true);
        if (!f) {
            bridge_fail(bc, "out of memory");
            return;
        }
        int rc = HC_OK;
        if (t->direction & BRIDGE_IN) {
            struct mqtt_sub_entry e = {.filter = {(const uint8_t *)f, (uint32_t)strlen(f)},
                                       .qos = t->qos,
                                       .no_local = v5,
                                       .retain_as_published = v5};
            rc = hc_subscribe(c, 1, &e, NULL, NULL);
        } else if (cfg->attempt_unsubscribe && *f) {
            /* An out-only pattern: an older session may hold it as in. */
            const char *fl[1] = {f};
            rc = hc_unsubscribe(c, 1, fl, NULL, NULL);
        }
        free(f);
        if (rc != HC_OK) {
            bridge_fail(bc, "subscribe: %s", hc_strerror(rc));
            return;
        }
    }
    if (cfg->notifications && !cfg->notifications_local_only)
        hc_publish(c, cfg->notification_topic, "1", 1, 1, true, NULL, NULL);
    if (bc->l.c && bc->local_up)
        both_up(bc); /* lazy: the local side was there first */
    else if (!bc->l.c)
        start_local(bc, ev_now(bc->e->loop));
    if (cfg->n_addrs > 1 && !cfg->round_robin && bc->addr != 0)
        bc->probe_at = ev_now(bc->e->loop) + probe_period(bc);
}

static void remote_on_disconnect(struct hc_client *c, void *ud, int err) {
    struct bconn *bc = ud;
    if (err == HC_ERR_REFUSED && bc->dead)
        return; /* on_connect said why */
    const char *t = hc_error_text(c);
    bridge_fail(bc, "%s", err == HC_OK ? "closed" : t[0] ? t : hc_strerror(err));
}

/* A message from the remote broker for hato. */
static void remote_on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    struct bconn *bc = ud;
    uint8_t rq = 0;
    bc->last_msg = ev_now(bc->e->loop);
    char *topic = bc->l.c ? map_topic(bc->cfg, m->topic, false, &rq) : NULL;
    uint8_t qos = m->qos < rq ? m->qos : rq;
    bool sent = false;
    if (topic) {
        uint16_t mid = 0;
        uint8_t buf[512], *heap;
        size_t n;
        const uint8_t *pb = fwd_props(m->props, buf, sizeof buf, &heap, &n);
        struct mqtt_props pr = {.present = 1, .encoded = {pb, (uint32_t)n}};
        int rc = hc_publish(bc->l.c, topic, m->payload, m->payload_len, qos, m->retain,
                            n ? &pr : NULL, &mid);
        free(heap);
        if (rc == HC_OK && qos > 0 && m->qos > 0) {
            if (map_add(&bc->in, mid, m->mid) < 0)
                bridge_fail(bc, "out of memory");
            sent = true;
        } else if (rc != HC_OK) {
            log_warn("Bridge %s: cannot forward %s: %s.", bc->cfg->name, m->topic, hc_strerror(rc));
        }
        free(topic);
    }
    if (!sent && m->qos > 0)
        hc_ack(c, m->mid);
}

/* hato took the copy: acknowledge the original to the remote broker. */
static void local_on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    (void)c;
    (void)reason;
    struct bconn *bc = ud;
    uint16_t pid = map_take(&bc->in, mid);
    if (pid && bc->r.c)
        hc_ack(bc->r.c, pid);
}

/* ---- back to the first address (round_robin false) -------------------- */

static void probe_done(struct bconn *bc, int err) {
    probe_stop(bc);
    if (err || bc->dead || bc->st != B_UP)
        return;
    const struct hato_bridge_addr *a = &bc->cfg->addrs[0];
    char why[200];
    snprintf(why, sizeof why, "the first address %s:%u answers again (round_robin false)", a->host,
             addr_port_at(bc, 0));
    bc->to_main = true;
    bc->graceful = true;
    bridge_fail(bc, "%s", why);
}

static void probe_io(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    (void)loop;
    (void)events;
    struct bconn *bc = io->data;
    if (io->fd < 0 || bc->dead)
        return; /* stopped earlier in this batch */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    probe_done(bc, err);
}

/* A TCP connect to the first address; probe_io sees whether it answered.
 * The name is resolved here, as for a connection attempt. */
static void probe_start(struct bconn *bc, int64_t now) {
    bc->probe_at = now + probe_period(bc);
    const struct hato_bridge_addr *a = &bc->cfg->addrs[0];
    char ps[8];
    snprintf(ps, sizeof ps, "%u", addr_port_at(bc, 0));
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    if (getaddrinfo(a->host, ps, &hints, &res) != 0 || !res)
        return;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int rc = connect(fd, res->ai_addr, res->ai_addrlen);
        if (rc == 0 || errno == EINPROGRESS) {
            ev_io_start(bc->e->loop, &bc->probe, fd, EV_WRITE, probe_io, bc);
        } else {
            close(fd);
        }
    }
    freeaddrinfo(res);
}

/* ---- the loop ---------------------------------------------------------- */

static void on_io(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    struct bside *s = io->data;
    if (!s->c || s->bc->dead)
        return;
    hc_handle_events(s->c, (short)events, (uint64_t)ev_now(loop));
}

static struct bconn *bconn_new(struct engine *e, const struct hato_bridge *cfg) {
    struct bconn *bc = calloc(1, sizeof *bc);
    if (!bc)
        return NULL;
    bc->e = e;
    bc->cfg = cfg;
    bc->probe.fd = -1;
    bc->r = (struct bside){.io = {.fd = -1, .fn = on_io}, .bc = bc, .remote = true};
    bc->l = (struct bside){.io = {.fd = -1, .fn = on_io}, .bc = bc};
    bc->st = B_WAIT;
    bc->next_try = 0; /* at once */
    return bc;
}

/* Close a bridge now; its memory goes when the event batch is over. */
static void bconn_retire(struct bconn *bc, bool graceful) {
    bc->why[0] = '\0';
    teardown(bc, graceful);
    probe_stop(bc);
    bc->dead = true; /* on_io ignores what is left of the batch */
    bc->next = bc->e->graveyard;
    bc->e->graveyard = bc;
}

static void bconn_free(struct bconn *bc) {
    free(bc->out.v);
    free(bc->in.v);
    free(bc->pend);
    free(bc);
}

static void on_tick(struct ev_loop *loop, void *data) {
    struct engine *e = data;
    int64_t now = ev_now(loop);
    for (struct bconn *bc = e->list; bc; bc = bc->next) {
        const struct hato_bridge *cfg = bc->cfg;
        if (bc->st == B_WAIT && now >= bc->next_try) {
            if (!lazy(bc) && !bc->registered && !cfg->local_clean) {
                bc->st = B_REG;
                start_local(bc, now);
            } else if (lazy(bc)) {
                bc->st = B_LAZY; /* the local side first; the remote when messages wait */
                start_local(bc, now);
            } else {
                attempt(bc, now);
            }
        }
        if (bc->st == B_LAZY && !bc->dead && bc->npend > (size_t)cfg->threshold) {
            log_notice("Bridge %s: %zu messages wait (threshold %d): connecting.", cfg->name,
                       bc->npend, cfg->threshold);
            attempt(bc, now);
        }
        if (lazy(bc) && bc->st == B_UP && !bc->dead &&
            now - bc->last_msg >= (int64_t)cfg->idle_timeout * 1000) {
            if (bc->r.c && cfg->notifications && !cfg->notifications_local_only)
                hc_publish(bc->r.c, cfg->notification_topic, "0", 1, 1, true, NULL, NULL);
            bc->graceful = true;
            bridge_fail(bc, "no message for %d s (idle_timeout, start_type lazy)",
                        cfg->idle_timeout);
        }
        if (bc->st == B_UP && !bc->dead && cfg->n_addrs > 1 && !cfg->round_robin && bc->addr != 0 &&
            now >= bc->probe_at) {
            probe_stop(bc); /* one not answered in a period: given up */
            probe_start(bc, now);
        }
        if (bc->r.c)
            hc_tick(bc->r.c, (uint64_t)now);
        if (bc->l.c)
            hc_tick(bc->l.c, (uint64_t)now);
    }
}

static void on_after(struct ev_loop *loop, void *data) {
    struct engine *e = data;
    while (e->graveyard) {
        struct bconn *bc = e->graveyard;
        e->graveyard = bc->next;
        bconn_free(bc);
    }
    for (struct bconn *bc = e->list; bc; bc = bc->next) {
        if (bc->st == B_REG && bc->reg_done && !bc->dead) {
            side_close(&bc->l, false);
            bc->local_up = bc->reg_done = false;
            bc->st = B_WAIT;
            bc->next_try = ev_now(loop); /* the first remote attempt, now */
            on_tick(loop, e);
            continue;
        }
        if (bc->dead) {
            teardown(bc, bc->graceful);
            schedule(bc, ev_now(loop));
            continue;
        }
        if (bc->r.c)
            side_watch(&bc->r);
        if (bc->l.c)
            side_watch(&bc->l);
    }
}

/* Apply a new config: same-named bridges with the same settings keep
 * running, the others stop and the new ones start. */
static void apply_config(struct engine *e, const struct hato_config *cfg) {
    struct bconn *keep = NULL, **tail = &keep;
    for (size_t i = 0; i < cfg->n_bridges; i++) {
        const struct hato_bridge *nb = &cfg->bridges[i];
        struct bconn *found = NULL, **pp = &e->list;
        for (; *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->cfg->name, nb->name) == 0) {
                found = *pp;
                *pp = found->next;
                break;
            }
        if (found && !bridge_conf_equal(found->cfg, nb)) {
            log_notice("Bridge %s: changed by the reload; restarting it.", nb->name);
            bconn_retire(found, true);
            found = NULL;
        }
        if (!found) {
            found = bconn_new(e, nb);
            if (!found) {
                log_error("Bridge %s: out of memory.", nb->name);
                continue;
            }
        }
        found->next = NULL;
        *tail = found;
        tail = &found->next;
    }
    while (e->list) {
        struct bconn *bc = e->list;
        e->list = bc->next;
        log_notice("Bridge %s: removed by the reload; stopping it.", bc->cfg->name);
        bconn_retire(bc, true);
    }
    e->list = keep;
}

static void on_wake(struct ev_loop *loop, void *data) {
    struct engine *e = data;
    pthread_mutex_lock(&e->lock);
    const struct hato_config *cfg = e->pending_cfg;
    e->pending_cfg = NULL;
    bool stop = e->stop;
    pthread_mutex_unlock(&e->lock);
    if (cfg && !stop) {
        apply_config(e, cfg);
        on_tick(loop, e); /* new bridges connect now */
    }
    if (stop) {
        while (e->list) {
            struct bconn *bc = e->list;
            e->list = bc->next;
            bconn_retire(bc, true);
        }
        ev_stop(loop);
    }
}

static void *bridge_main(void *arg) {
    struct engine *e = arg;
    ev_run(e->loop);
    return NULL;
}

static int engine_start(struct broker *b) {
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->b = b;
    e->ls.fd = -1;
    e->ls.nconns = &e->nconns;
    e->ls.accepted = &e->accepted;
    e->ls.b = b;
    e->rnd = (unsigned)getpid() ^ (unsigned)ev_clock_ms();
    pthread_mutex_init(&e->lock, NULL);
    e->loop = ev_loop_new();
    if (!e->loop) {
        pthread_mutex_destroy(&e->lock);
        free(e);
        return -1;
    }
    ev_set_tick(e->loop, TICK_MS, on_tick, e);
    ev_set_after(e->loop, on_after, e);
    ev_set_wake(e->loop, on_wake, e);
    /* Signals stay with the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&e->thread, NULL, bridge_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        ev_loop_free(e->loop);
        pthread_mutex_destroy(&e->lock);
        free(e);
        errno = rc;
        return -1;
    }
    e->running = true;
    g_engine = e;
    return 0;
}

int bridge_start(struct broker *b) {
    const struct hato_config *cfg = broker_config(b);
    if (cfg->n_bridges == 0)
        return 0;
    if (engine_start(b) < 0) {
        log_error("Error: cannot start the bridge thread: %s", strerror(errno));
        return -1;
    }
    bridge_reload(b, cfg);
    return 0;
}

void bridge_reload(struct broker *b, const struct hato_config *cfg) {
    if (!g_engine) {
        if (cfg->n_bridges == 0)
            return;
        if (engine_start(b) < 0) {
            log_error("Error: cannot start the bridge thread: %s", strerror(errno));
            return;
        }
    }
    struct engine *e = g_engine;
    pthread_mutex_lock(&e->lock);
    e->pending_cfg = cfg;
    pthread_mutex_unlock(&e->lock);
    ev_wake(e->loop);
}

void bridge_stop(struct broker *b) {
    (void)b;
    struct engine *e = g_engine;
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stop = true;
    pthread_mutex_unlock(&e->lock);
    ev_wake(e->loop);
    pthread_join(e->thread, NULL);
    ev_loop_free(e->loop);
    pthread_mutex_destroy(&e->lock);
    free(e);
    g_engine = NULL;
}
