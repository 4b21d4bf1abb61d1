/*
 * Stateful libFuzzer target: one client connection of the real broker.
 *
 * Each input gets a fresh broker (two workers with their event loops, the
 * subscription tree, the retained store) and a connection over a
 * socketpair, adopted by worker 0 exactly as a connection handed over after
 * accept; its CONNECT may move it to worker 1 (the owner of its client id),
 * as in the broker. Both loops are turned in this one thread. The input's bytes
 * are written to the client end in chunks and the workers' loops are turned
 * after each chunk, so the real read path (partial packets kept between
 * reads), the protocol state machine (proto.c), sessions, routing and
 * output all run; whatever the broker writes back is read and discarded.
 *
 * Input: byte 0 picks one of two configurations (defaults with a window of
 * 100, or tight limits with a mount point). Then chunks of [n][n bytes], n in 1..253. Two n
 * values are commands: 0 closes the connection (the broker sees EOF: will,
 * session detach) and opens a new one (a reconnect resumes a persistent
 * session); 255 runs the session timers far in the future (delayed wills,
 * session expiry). At the end the connection is closed and everything is
 * freed: LeakSanitizer checks that nothing is left.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/broker.h"
#include "check.h"

int worker_init(struct worker *w, struct broker *b, int id);
void worker_free(struct worker *w);

static const char *const configs[2] = {
    /* Defaults, but a window wide enough for the packet id bitmaps (64+). */
    "listener 1883 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\n",
    "listener 1883 127.0.0.1\nallow_anonymous true\nmount_point m/\nmax_qos 1\n"
    "max_topic_alias 3\nmax_packet_size 300\nmessage_size_limit 100\n"
    "max_inflight_messages 2\nmax_queued_messages 3\nmax_queued_bytes 200\n"
    "max_subscriptions_per_client 4\nqueue_qos0_messages true\nretain_available false\n"
    "max_keepalive 30\nallow_zero_length_clientid false\n",
};
static struct hato_config cfgs[2];

static bool available(void *owner) {
    struct session *s = owner;
    return atomic_load_explicit(&s->online, memory_order_relaxed);
}

static void setup(void) {
    /* FUZZ_BROKER_LOG=1 shows the broker's log (to debug one input). */
    if (!getenv("FUZZ_BROKER_LOG"))
        log_set_fd(-1);
    else
        log_set_mask(~0u);
    for (int i = 0; i < 2; i++) {
        char err[256];
        hato_config_init(&cfgs[i]);
        CHECK(hato_config_parse_string(&cfgs[i], "fuzz.conf", configs[i], err, sizeof err) == 0);
        CHECK(hato_config_finish(&cfgs[i], err, sizeof err) == 0);
    }
}

#define NW 2 /* two workers: a CONNECT may hand the connection over */

struct rig {
    struct broker b;
    struct worker w[NW];
    struct lsock ls;
    atomic_int nconns;
    int peer; /* client end; -1 when none */
};

static void drain(struct rig *r) {
    uint8_t buf[65536];
    while (r->peer >= 0 && recv(r->peer, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

/* One turn of every worker (twice: a hand-over or a delivery posted by one
 * is taken by the other on the next turn), then read what was sent. */
static void turn(struct rig *r) {
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NW; i++)
            ev_run_once(r->w[i].loop, 0);
    drain(r);
}

static void timers(struct rig *r) {
    for (int i = 0; i < NW; i++)
        session_timers(&r->w[i], ev_now(r->w[i].loop) + 365LL * 86400 * 1000);
    turn(r);
}

static void open_conn(struct rig *r) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct conn *c = calloc(1, sizeof(*c));
    CHECK(c);
    tcp_stream_init(&c->tcp, sv[0], &c->si);
    c->st = &c->tcp;
    c->ls = &r->ls;
    c->lcfg = r->ls.cfg; /* as on_accept: the settings it was accepted with */
    c->state = CS_NEW;
    c->last_rx = ev_now(r->w[0].loop);
    strcpy(c->si.peer, "fuzz");
    r->peer = sv[1];
    struct item *it = calloc(1, sizeof(*it));
    CHECK(it);
    it->kind = IT_ADOPT;
    it->c = c;
    worker_post(NULL, &r->w[0], it); /* as after accept on another worker */
    turn(r);
}

static void close_conn(struct rig *r) {
    if (r->peer < 0)
        return;
    close(r->peer);
    r->peer = -1;
    turn(r); /* the broker reads EOF */
}

static void feed(struct rig *r, const uint8_t *p, size_t n) {
    /* Bounded: a broker that stops reading cannot hang the fuzzer. */
    for (int tries = 0; n && r->peer >= 0 && tries < 64; tries++) {
        ssize_t k = send(r->peer, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0)
            break; /* closed by the broker, or full: the turn below drains */
        p += k;
        n -= (size_t)k;
        turn(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 1 || size > 1 << 16)
        return 0;
    struct rig r;
    memset(&r, 0, sizeof r);
    r.peer = -1;
    struct hato_config *cfg = &cfgs[data[0] & 1];
    r.b.cfg = cfg;
    r.b.subs = sub_tree_new(available);
    r.b.retain = retain_new();
    r.b.nworkers = NW;
    r.b.workers = r.w;
    r.b.started = 1;
    CHECK(r.b.subs && r.b.retain);
    for (int i = 0; i < NW; i++)
        CHECK(worker_init(&r.w[i], &r.b, i) == 0);
    r.ls.fd = -1;
    r.ls.cfg = &cfg->listeners[0];
    r.ls.nconns = &r.nconns;
    open_conn(&r);

    size_t off = 1;
    while (off < size) {
        uint8_t n = data[off++];
        if (n == 0) {
            close_conn(&r);
            open_conn(&r);
        } else if (n == 255) {
            timers(&r);
        } else {
            size_t len = n < size - off ? n : size - off;
            feed(&r, data + off, len);
            off += len;
        }
    }
    close_conn(&r);
    /* Anything still open is closed as at shutdown. */
    for (int i = 0; i < NW; i++) {
        while (r.w[i].conns) {
            struct conn *c = r.w[i].conns;
            c->will_pending = false;
            conn_close(c, NULL);
        }
    }
    turn(&r);
    timers(&r);
    for (int i = 0; i < NW; i++)
        worker_free(&r.w[i]);
    sub_tree_free(r.b.subs);
    retain_free(r.b.retain);
    return 0;
}
