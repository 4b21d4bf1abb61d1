/*
 * The broker's runtime: workers, connections and sessions.
 *
 * Threading model. N workers, each a thread with its own event loop. A
 * session (client id) belongs for its whole life to one worker, chosen by a
 * hash of the client id; the connection of that client is moved to that
 * worker once its CONNECT has been read. So everything about a session (its
 * connection, queue, in-flight window, will) is touched by one thread only,
 * and a session takeover is always local. The subscription tree and the
 * retained store are shared and locked inside (readers in parallel).
 *
 * Delivery to a session owned by another worker goes through that worker's
 * inbox: items collected during a loop turn are handed over in one batch at
 * the end of the turn, with one eventfd wake-up. Items hold references on
 * the message and the session, so neither can vanish in flight.
 */
#ifndef HATO_BROKER_BROKER_H
#define HATO_BROKER_BROKER_H

#include <hato/mqtt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/strmap.h"
#include "config/config.h"
#include "broker/bp.h"
#include "broker/msg.h"
#include "broker/retain.h"
#include "broker/stats.h"
#include "broker/subtree.h"
#include "event/loop.h"
#include "store/store.h"
#include "transport/stream.h"

#define HATO_VERSION "0.1.0"

struct broker;
struct worker;
struct session;
struct adminq;

/*
 * A listening socket (one listener line may give two: IPv4 and IPv6).
 * Allocated one by one and never moved or freed before exit: connections
 * keep a pointer to theirs. A reload (reload.c) points a listener that
 * stays at its new settings (cfg, ws: atomic, read by workers) and closes
 * the socket of one that goes (fd -1, retired), its connections staying.
 */
struct lsock {
    int fd;
    const struct hato_listener *_Atomic cfg;
    atomic_int *nconns;     /* open connections of its listener (shared by its sockets) */
    atomic_ulong *accepted; /* connections its listener accepted since start (stats) */
    struct ev_io *ios;      /* one per worker (EPOLLEXCLUSIVE); io->data is the lsock */
    /* WebSocket listeners: the layer's settings (broker.c, from the config). */
    struct ws_server_opts *_Atomic ws;
    struct broker *b;
    int conf_port; /* the port as configured (0 = ephemeral): its identity across reloads */
    bool owner;    /* first socket of its listener: owns nconns */
    bool retired;  /* removed by a reload: not listening any more */
    /* `protocol metrics`: HTTP /metrics and /healthz (metrics.c), not MQTT. */
    bool metrics;
    /* `protocol admin`: the HTTP admin API (admin.c), not MQTT. */
    bool admin;
};

/* One message as a session delivers it (queued or in flight). */
struct deliv {
    struct msg *m;
    uint8_t qos;      /* QoS of this delivery */
    bool retain;      /* retain flag to send */
    bool answer;      /* retained message answering a SUBSCRIBE: never dropped for a full output */
    uint8_t state;    /* enum deliv_state, for in-flight entries */
    uint16_t pid;     /* packet id, in flight only */
    uint16_t nsub;    /* number of subscription identifiers */
    uint32_t subid;   /* the identifier when nsub == 1 */
    uint32_t *subids; /* malloc'd, when nsub > 1 */
    /* Durable copy (persistence): queue entry sequence and stored message id, 0 = none. */
    uint64_t seq;
    uint64_t smid;
    /* Cluster: the JetStream reply subject to acknowledge once done, NULL = none. */
    char *jsack;
};

enum deliv_state {
    DS_QUEUED = 0,
    DS_WAIT_PUBACK,  /* QoS 1 sent */
    DS_WAIT_PUBREC,  /* QoS 2 sent */
    DS_WAIT_PUBCOMP, /* PUBREL sent */
};

/* A subscription as the session remembers it (for unsubscribe and cleanup). */
struct sess_sub {
    struct sess_sub *next;
    struct sess_sub **pprev; /* the pointer to this one: unlinked in O(1) */
    struct sub_opts opts;
    uint32_t len;  /* with a mount point it may pass 65535 */
    char filter[]; /* full filter, mount point included; NUL-terminated */
};

struct session {
    atomic_uint refs;
    struct worker *w; /* owner, fixed */
    char *client_id;
    size_t id_len;
    struct conn *conn;  /* NULL while offline */
    atomic_bool online; /* conn != NULL, readable by other threads (shared subs) */
    uint8_t version;
    bool dead;         /* removed from the registry: drop what arrives */
    uint32_t expiry;   /* session expiry interval, seconds (UINT32_MAX = never) */
    int64_t expire_at; /* monotonic ms at which an offline session ends; 0 = not set */
    struct sess_sub *subs;
    size_t nsubs;
    struct strmap submap; /* filter -> sess_sub in subs: O(1) lookups */

    /* Outgoing QoS 1/2: in flight (sent, unacknowledged) and queued. */
    struct deliv *inflight;
    uint32_t ninflight, capinflight;
    uint32_t inflight_head;  /* live entries: inflight[inflight_head ..][0 .. ninflight) */
    uint64_t inflight_bytes; /* payload bytes of the in-flight entries (max_inflight_bytes) */
    struct deliv *queue;     /* ring */
    uint32_t qhead, qlen, qcap;
    size_t qbytes;
    uint16_t next_pid;
    uint64_t *pid_bits; /* ids in flight, when many are (session.c) */

    /* Incoming QoS 2 packet ids received, PUBREL not yet (exactly once). */
    uint16_t *in_pids;
    uint32_t nin_pids, capin_pids;
    uint64_t *in_pid_bits; /* replaces in_pids when many (proto.c); nin_pids counts both */

    /* Will: published on abnormal loss, after will_delay seconds. */
    struct msg *will;
    uint32_t will_delay;
    int64_t will_at; /* monotonic ms when pending, 0 otherwise */

    bool queue_full; /* dropping for max_queued_*: logged once per episode */
    /* The local side of one of our bridges (set at each CONNECT): its queue
     * bound (bridge_max_queued_messages, 0 = max_queued_messages), and
     * whether it skips messages that came over a bridge (read by routing
     * on every worker). */
    bool bridge_local;
    atomic_bool bridge_nofwd;
    uint32_t bridge_qmax;

    struct session *timer_next; /* in the worker's list of timed sessions */
    bool on_timer_list;

    /* Identity for ACL checks (also while offline): user name of the last
     * connection (NULL = anonymous) and its listener. */
    char *username;
    const struct hato_listener *lcfg;
    /* Persistence: the session is in the store and its deliveries are stored
     * (read by other workers when routing). conn_gen tells connections apart
     * for acknowledgements released by the store. */
    atomic_bool durable;
    uint32_t conn_gen;
    struct bp_sess bp; /* back-pressure (bp.h): over its soft limit, who waits */
    /* Cluster (cluster.c): its QoS 1/2 messages come from JetStream consumers
     * (read by routing on every worker); the owner's state. */
    atomic_bool cl_durable;
    struct cl_sess *cl;
};

enum conn_state {
    CS_NEW,       /* waiting for CONNECT */
    CS_CONNECTED, /* CONNACK sent */
    CS_CLOSING,   /* closed, freed at the end of the turn */
};

/* Output: bytes in wbuf and large payloads by reference, written by writev. */
struct oseg {
    struct msg *m; /* NULL: bytes wbuf[off..off+len) */
    uint32_t off;
    uint32_t len;
};

struct conn {
    struct ev_io io;
    struct worker *w;
    struct lsock *ls;
    /* Its listener's settings as they were when it was accepted: a reload
     * changes the listener for new connections only (reload.c). */
    const struct hato_listener *lcfg;
    /* The byte stream: st is the top of the stack (transport/stream.h); a
     * plain connection's stack is only `tcp`, embedded here. NULL once
     * closed (conn_close frees the stack and closes the socket). si is what
     * the layers learned: the peer address (PROXY header, trusted
     * X-Forwarded-For), the TLS identity, why the stack failed. */
    struct stream *st;
    struct stream tcp;
    struct stream_info si;
    enum conn_state state;
    /* Small fields together (every idle connection carries them). */
    uint8_t version;   /* 0 until CONNECT */
    bool is_bridge;    /* CONNECT level 0x83/0x84: a Mosquitto bridge (internals/bridge-peer.md) */
    bool bridge_local; /* the local side of one of our bridges (bridge.c) */
    bool bridge_nofwd; /* ... with bridge_forward_bridged false */
    bool dirty;        /* on the worker's flush list */
    bool will_pending; /* publish the will if the connection is lost */
    bool counted;      /* counted in ls->nconns */
    bool connack_held; /* CONNACK waits for a store commit: input and output wait too */
    bool dropping;     /* over max_output_buffer: QoS 0 dropped (logged once) */
    bool via_logged;   /* the address from a PROXY header / X-Forwarded-For was logged */
    bool ws_logged;    /* the WebSocket upgrade was logged */
    /* Close once the output is written (an HTTP response, metrics.c). */
    bool close_when_sent;
    /* username was set from the TLS client certificate or PSK identity
     * (use_identity_as_username / use_subject_as_username): CONNECT's user
     * name does not replace it and no password is checked for it. */
    bool username_from_tls;
    uint8_t refuse_v3, refuse_v5; /* the refusing CONNACK's codes (refuse_at) */
    /* Admin API (admin.c): what the answer waits for until refuse_at
     * (ADMIN_WAIT_*), and the reload it waits for. */
    uint8_t admin_wait;
    unsigned admin_reload_seq;
    uint16_t keep_alive;        /* seconds, 0 = none */
    uint16_t receive_max_out;   /* MQTT 5: the client's receive maximum */
    uint16_t nalias;            /* entries of aliases */
    uint32_t max_packet_out;    /* MQTT 5: largest packet we may send it */
    uint32_t session_expiry_in; /* from CONNECT, for the DISCONNECT check */
    uint32_t bridge_qmax;       /* bridge_local: bridge_max_queued_messages */
    /* Outgoing topic aliases (alias.h), MQTT 5 clients that accept them; NULL = none.
     * Next to max_packet_out: send_publish reads both for every MQTT 5 delivery. */
    struct alias_out *alias_out;
    char *username;
    /* Failed login waiting for its slowdown delay (security.c): monotonic
     * ms at which the refusing CONNACK goes out, 0 = none. */
    int64_t refuse_at;
    char *assigned_id;   /* client id we assigned (empty id in CONNECT) */
    bool id_is_username; /* assigned_id is the user name (use_username_as_clientid) */
    /* Password check in the pool (authpool.h): parked while auth_id is not 0
     * (on w->parked through auth_next); then auth_done holds the verdict for
     * the CONNECT's second run, valid for the security generation auth_gen. */
    uint64_t auth_id;
    struct conn *auth_next;
    unsigned auth_gen;
    uint8_t auth_done; /* AUTH_DONE_* */

    struct conn *next, *prev; /* worker's list */
    struct conn *dirty_next;  /* worker's flush list */

    /* Input: a partial packet kept between reads (complete ones are
     * handled straight from the worker's read buffer). */
    uint8_t *in;
    size_t inlen, incap;

    /* Output. */
    uint8_t *wbuf;
    size_t wlen, wcap;
    struct oseg *segs;
    uint32_t seghead, nsegs, capsegs;
    uint32_t segoff; /* bytes of segs[seghead] already written */
    size_t out_bytes;

    int64_t last_rx;
    struct session *s;
    /* Incoming topic aliases: alias -> topic, array of cfg max_topic_alias. */
    char **aliases;
    struct bp_conn bp; /* back-pressure (bp.h): held publisher, full or stalled subscriber */
    /* Admin API (admin_clients.c): the query a parked admin request waits
     * for (adminq.h); an MQTT connection's figures since its CONNECT. */
    uint64_t admin_qid;
    int64_t connected_at; /* unix seconds */
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
    bool clean_start;
};

/* Cross-thread work item. */
enum item_kind {
    IT_DELIVER,
    IT_ADOPT,
    IT_ACK,
    IT_AUTH,
    IT_PUBLISH,  /* d.m: broker_publish_internal */
    IT_DELIVERS, /* a batch of deliveries from route.c (route_batch_run / _free) */
    IT_CLUSTER,  /* from the cluster (cl: cluster_item_run / _free) */
    IT_ADMIN     /* an admin API query or its answer (aq: adminq.h) */
};
enum { AUTH_DONE_NONE, AUTH_DONE_OK, AUTH_DONE_BAD };
struct item {
    struct item *next;
    enum item_kind kind;
    struct session *s;
    struct conn *c;
    struct deliv d;
    /* IT_ACK: encoded packet released by the store after its commit. */
    uint8_t *abuf;
    uint32_t alen;
    uint32_t gen;      /* s->conn_gen it was made for */
    bool ok;           /* false: the commit failed, withhold it */
    bool connack;      /* a held CONNACK: then resend, pump and resume input */
    bool present;      /* with connack: session present */
    uint16_t send_pid; /* not 0: send the in-flight PUBLISH with this id (no abuf) */
    uint64_t auth_id;  /* IT_AUTH: the parked connection; ok = password right */
    void *cl;          /* IT_CLUSTER: the cluster's part */
    struct adminq *aq; /* IT_ADMIN: the query (ok: its answer) */
};

struct worker {
    struct broker *b;
    int id;
    pthread_t thread;
    struct ev_loop *loop;

    pthread_mutex_t inbox_lock;
    struct item *inbox_head, *inbox_tail;
    /* Items for other workers collected this turn (index = worker id). */
    struct item **out_head, **out_tail;
    bool out_pending;

    struct strmap sessions; /* client id -> session */
    struct conn *conns;
    struct conn *dirty;
    struct conn *closed;   /* freed at the end of the turn */
    struct session *timed; /* sessions with a will or expiry pending */
    struct conn *parked;   /* waiting for a password check (authpool.h) */

    uint8_t *rbuf; /* read buffer shared by this worker's connections */
    size_t rcap;

    /* Scratch for routing one message. */
    struct match *matches;
    size_t nmatches, capmatches;
    struct route_cache *rcache; /* route.c: the last topic's matches */
    const void **seen;          /* route.c: hash set of matched sessions */
    size_t capseen;
    uint32_t *subid_scratch;
    size_t nsubid_scratch, capsubid_scratch;

    bool accept_paused; /* out of descriptors: accepting resumes on the next tick */
    /* The listening sockets this worker watches (reload.c: worker_listen_sync). */
    struct lsock **wls;
    size_t nwls;
    atomic_uint ls_seen;       /* generation of the broker's listener set it has adopted */
    atomic_llong last_tick_ms; /* monotonic ms of its last tick (systemd watchdog) */
    unsigned tls_gen;          /* TLS contexts generation this worker's clients were checked for */

    /* Security snapshot in use by this worker (security.c) and its generation. */
    struct sec_snap *sec;
    unsigned sec_gen;
    bool sec_recheck; /* connected clients to re-check against sec (next tick/wake) */

    /* Store operations of this turn, handed to the store writer at its end. */
    struct store_batch sb;
    /* Deliveries of one routed message (persistence numbers them before dispatch). */
    struct pending_deliv *pend;
    size_t npend, cappend;

    /* Statistics, read by other threads without locks (approximate). */
    atomic_ulong msgs_in, msgs_out, dropped; /* written by the owner only: stat_inc */
    atomic_uint nclients;
    /* The rest of its statistics (stats.h), on cache lines of their own: the
     * owner writes them on the message path, other threads only read. */
    _Alignas(64) struct stats_counters sc;
    struct sys_state *sys; /* $SYS publication state (sys.c), worker 0 only */
    struct bp_worker bp;   /* back-pressure (bp.h): held publishers */
    /* Cluster: the message routed last waits for JetStream (its sequence), 0 = not. */
    uint64_t cl_hold;
    uint64_t cl_seq; /* cluster.c: number of the last message this worker published */
    bool cl_group;   /* route.c: delivering a shared message NATS picked this node for */
    bool cl_local;   /* the message routed now did not go to NATS (too long): all local */
};

struct pending_deliv {
    struct session *s;
    struct deliv d;
};

/* Count in a statistic that only its worker writes: a plain load and store
 * (no locked instruction, which would wait for every pending store of the
 * delivery path); readers on other threads see it a little late. */
static inline void stat_inc(atomic_ulong *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* One matching subscription of a routed message (per worker scratch). */
struct match {
    struct session *s;
    struct sub_opts opts;
    bool shared;
};

struct broker {
    /* The configuration in force: replaced (never modified) by a reload;
     * read it with broker_config(). Retired ones live until exit. */
    struct hato_config *_Atomic cfg;
    struct sub_tree *subs;
    struct retain_store *retain;
    int nworkers;
    struct worker *workers;
    /* The listening sockets workers watch now (reload.c), under ls_lock;
     * ls_gen counts changes. */
    pthread_mutex_t ls_lock;
    struct lsock **lsocks;
    size_t nlsocks;
    atomic_uint ls_gen;
    struct reload_state *reload; /* reload.c: retired configs and sockets, the config path */
    struct stats *stats;         /* load averages, maxima, store commit histogram (stats.c) */
    atomic_bool stopping;
    /* Every worker runs and no stop was asked: /healthz answers 200. */
    atomic_bool serving;
    atomic_ulong id_counter;   /* for assigned client ids */
    struct security *security; /* password files, ACLs, login failures (security.c) */
    struct admin *admin;       /* admin API accounts and sessions (admin.c) */
    int64_t started;
    struct tls_state *tls;     /* broker/tls.c: contexts of the TLS listeners */
    struct store *store;       /* NULL unless persistence is on */
    struct authpool *authpool; /* password checks (authpool.h) */
    /* Broker-wide counts for global_max_connections / global_max_clients (limits.h). */
    atomic_long nconns_all, nsessions_all;
    struct cluster *cluster; /* NULL unless cluster_nats_url (cluster.h) */
};

/* The configuration in force (any thread). A reload may replace it between
 * two calls; a retired one stays valid until exit. */
static inline const struct hato_config *broker_config(const struct broker *b) {
    return atomic_load_explicit(&((struct broker *)b)->cfg, memory_order_acquire);
}

/* Effective max_output_buffer: 0 stands for the ceiling, 1 GiB, which keeps
 * a connection's output offsets within 32 bits. */
static inline uint64_t output_limit(const struct hato_config *cfg) {
    return cfg->max_output_buffer > 0 ? (uint64_t)cfg->max_output_buffer : (uint64_t)1 << 30;
}

/* logconf.c: set the log module from the config (start-up, reload); -1
 * after logging why (the log file cannot be opened: the old settings stay). */
int hato_config_apply_logging(const struct hato_config *cfg);
/* SIGHUP: reopen the log file by its name (logrotate); errors are logged. */
void hato_log_reopen(void);

/* logtopic.c: log_dest topic, drained and published by worker 0. */
void logtopic_attach(struct worker *w);
void logtopic_detach(struct worker *w);
void logtopic_drain(struct worker *w);

/* broker.c */
int broker_init(struct broker *b, struct hato_config *cfg);
int broker_run(struct broker *b); /* until a stop signal; returns exit status */
void broker_free(struct broker *b);
struct worker *broker_owner(struct broker *b, const char *id, size_t len);

/* worker.c */
void worker_post(struct worker *from, struct worker *to, struct item *it);
void conn_close(struct conn *c, const char *why);
void conn_mark_dirty(struct conn *c);
/* Set the epoll interest from the connection's state (output, held input). */
void conn_update_events(struct conn *c);
/* Append bytes for output (copied). 0 or -1 out of memory. */
int conn_write(struct conn *c, const void *p, size_t len);
/* Append a reference to a message's payload for output. */
int conn_write_payload(struct conn *c, struct msg *m);
/* Encode and queue a packet; returns 0, or -1 (out of memory / too large). */
int conn_send(struct conn *c, const struct mqtt_packet *p);
void conn_handle_input(struct conn *c, const uint8_t *data, size_t len);
/* Read what the connection has and handle it (TLS: after the handshake). */
void conn_readable(struct conn *c);
/* Output bookkeeping for transports: n bytes of the segments were written;
 * all written (drop the large buffers). */
void conn_out_consumed(struct conn *c, size_t n);
void conn_out_done(struct conn *c);

/* proto.c: one function per packet, after decoding. */
void proto_packet(struct conn *c, struct mqtt_packet *p, const uint8_t *raw, size_t rawlen);
/* Close with a reason: MQTT 5 gets DISCONNECT(reason) first. */
void proto_fail(struct conn *c, uint8_t reason, const char *why);
/* Finish a CONNECT on the owning worker (after adoption). */
void proto_connect_owned(struct conn *c, struct mqtt_packet *p);
/* Send the refusing CONNACK of a failed login whose delay is over, close. */
void proto_refuse_due(struct conn *c);

/* session.c */
struct session *session_new(struct worker *w, const char *id, size_t len);
void session_ref(struct session *s);
void session_unref(struct session *s);
/* End a session: unsubscribe everything, drop queues, remove from registry. */
void session_end(struct session *s);
/* Deliver a message to a session owned by the calling worker. */
void session_deliver(struct session *s, struct deliv *d);
/* QoS 0 to a connected session of this worker, sent now: d->m is borrowed
 * (nothing here keeps it). Returns false when the session needs the full
 * path (session_deliver, with a reference of its own). No store. */
bool session_send_qos0(struct session *s, const struct deliv *d);
/* Send what the in-flight window allows (after acks, on connect). */
void session_pump(struct session *s);
/* Re-send in-flight messages (DUP) and PUBRELs on session resume. */
void session_resend(struct session *s);
/* Send the in-flight message with this packet id (released by the store). */
void session_send_inflight(struct session *s, uint16_t pid);
/* Outgoing acknowledgements from the client. */
void session_puback(struct session *s, uint16_t pid, uint8_t type, uint8_t reason);
void session_timer_add(struct session *s);
void session_timers(struct worker *w, int64_t now);
void deliv_clear(struct deliv *d);
/* Subscription bookkeeping. */
int session_sub_add(struct session *s, const char *filter, size_t len, const struct sub_opts *o);
int session_sub_remove(struct session *s, const char *filter, size_t len);
bool session_has_sub(struct session *s, const char *filter, size_t len);
void session_subs_clear(struct session *s);
/* Drop a client's disconnect: will handling, expiry start. */
void session_detach(struct session *s, bool publish_will);
/* Restore (start-up): put a stored delivery in the queue or in flight (by d->state).
 * 0, 1 when the queue is full (not taken), -1 out of memory. */
int session_restore_deliv(struct session *s, struct deliv *d);
/* Record an incoming QoS 2 packet id awaiting PUBREL. */
int session_in_pid_add(struct session *s, uint16_t pid);

/* route.c */
/* Route a message from worker w to every matching session. Returns the
 * number of sessions it was delivered to. Takes no reference of m's own. */
size_t route_publish(struct worker *w, struct msg *m);
/* A message from the cluster for shared subscription SHARE ("$share/G/F"): one local member. */
void route_group(struct worker *w, struct msg *m, const char *share, size_t len);
/* Release the last-match cache of route_publish (its session references). */
void route_cache_free(struct worker *w);
/* Publish a will (or any broker-made message): retain handling included. */
void route_will(struct worker *w, struct msg *m);
/* Route a broker-made message (an IT_PUBLISH item): retained as flagged, $SYS
 * retained messages kept out of the store (as Mosquitto). Takes m's reference. */
void route_internal(struct worker *w, struct msg *m);
/* Flush the items collected for other workers (end of turn). */
void route_flush(struct worker *w);
/* Hand one delivery to its session (here, or through its worker's inbox); takes the
 * session reference and the delivery. */
void route_dispatch(struct worker *w, struct session *s, struct deliv *d);
/* An IT_DELIVERS item arrived at w: deliver each entry, free the batch. */
void route_batch_run(struct worker *w, struct item *it);
/* An IT_DELIVERS item never delivered (shutdown): drop its entries, free it. */
void route_batch_free(struct item *it);

/* sys.c */
/*
 * Publish a message made by the broker ($SYS topics, `log_dest topic`):
 * QoS 0..2, retained or not, routed to every matching subscription with the
 * ACLs applied (MQTT 3 clients see it like any PUBLISH). Callable from any
 * thread at any point, even inside routing: the message is queued as an
 * item (to the calling worker, handed over at the end of its turn, or to
 * worker 0 from other threads) and routed from that worker's inbox, so
 * messages of one thread keep their order. 0, or -1 (out of memory, bad
 * length, or no worker running). payload is copied.
 */
int broker_publish_internal(struct broker *b, const char *topic, const void *payload, size_t len,
                            int qos, bool retain);
/* The worker the calling thread runs, NULL on other threads. */
struct worker *broker_current_worker(void);
/* Worker 0's tick: load averages, then $SYS every sys_interval seconds
 * (read from b->cfg on every call, so a reloaded config applies). */
void sys_tick(struct worker *w, int64_t now_ms);
void sys_free(struct worker *w);

#endif
