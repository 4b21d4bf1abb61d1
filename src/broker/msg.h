/*
 * Published messages: one immutable, reference-counted object per PUBLISH,
 * shared by every receiver, the retained store and the session queues.
 * Fan-out copies the pointer and takes a reference; nobody copies the
 * payload.
 */
#ifndef HATO_BROKER_MSG_H
#define HATO_BROKER_MSG_H

#include <hato/mqtt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct hato_listener;

/*
 * Who published a retained message (check_retain_source): its client id,
 * user name and listener at publish time. One allocation, owned by the
 * message. Listener configurations are never freed before exit (a reload
 * retires them), so the pointer stays valid; NULL when unknown.
 */
struct msg_source {
    const struct hato_listener *lcfg;
    const char *user; /* NULL = anonymous; inside this allocation */
    char id[];        /* NUL-terminated */
};

struct msg {
    atomic_uint refs;
    uint8_t qos; /* QoS it was published with */
    bool retain; /* retain flag as published */
    uint16_t topic_len;
    uint32_t payload_len;
    /* It reached this broker over a bridge (a peer's bridge connection or
     * one of ours): bridges with bridge_forward_bridged false skip it. */
    bool via_bridge;
    /* It came from another node of the cluster (cluster.c): not sent back to NATS. */
    bool from_cluster;
    /* Absolute expiry (CLOCK_REALTIME, milliseconds), 0 = never. */
    int64_t expiry_at;
    /* Identity of the publishing session (for no-local), never dereferenced. */
    const void *origin;
    const char *topic;      /* NUL-terminated, inside this allocation */
    const uint8_t *payload; /* inside this allocation */
    /*
     * Properties forwarded to receivers (payload format, content type,
     * response topic, correlation data, user properties), as views into
     * this allocation. message_expiry, topic_alias and subscription ids are
     * per delivery and never set here.
     */
    struct mqtt_props props;
    /*
     * The same forwarded properties encoded (identifier and value entries),
     * in the order the publisher sent them, inside this allocation: what an
     * MQTT 5 PUBLISH to a receiver carries between its subscription
     * identifiers and its message expiry, Mosquitto 2.0's layout. Empty
     * when there are none.
     */
    struct mqtt_str wire_props;
    /* The publisher, kept for retained messages only (NULL otherwise, and for
     * the broker's own): set once by msg_set_source before the message is shared. */
    struct msg_source *src;
};

/*
 * Make a message with one reference, copying topic, payload and the
 * forwardable properties of `props` (may be NULL) into one allocation.
 * `expiry_interval` seconds (0 = none) is turned into expiry_at.
 * Returns NULL when out of memory.
 */
struct msg *msg_new(const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len,
                    uint8_t qos, bool retain, const struct mqtt_props *props,
                    uint32_t expiry_interval, const void *origin);

/* Record the publisher of m (before m is shared). Returns 0, -1 when out of memory. */
int msg_set_source(struct msg *m, const char *id, size_t idlen, const char *user, size_t userlen,
                   const struct hato_listener *lcfg);

/* Take one more reference; returns m. */
static inline struct msg *msg_ref(struct msg *m) {
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

/* Drop a reference; the last one frees the message. NULL is accepted. */
void msg_unref(struct msg *m);

/*
 * Messages alive, for $SYS store/messages/{count,bytes}: each thread counts
 * what it makes and frees in the counters it registered (a worker's own,
 * written only by it); threads that registered none share one atomic pair.
 */
void msg_tally_thread(atomic_llong *count, atomic_llong *bytes);
/* The shared pair (threads without counters of their own). */
void msg_tally_other(long long *count, long long *bytes);

/* Current CLOCK_REALTIME in milliseconds. */
int64_t msg_now_ms(void);

/*
 * Remaining expiry interval in seconds at time now_ms: -1 when the message
 * has no expiry, 0 when it has expired (do not deliver), else >= 1.
 */
int64_t msg_remaining_expiry(const struct msg *m, int64_t now_ms);

#endif
