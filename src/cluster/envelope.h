/*
 * One MQTT message as it travels between hato nodes in a NATS message's
 * payload (docs/internals/cluster.md). Pure: no NATS library, no broker.
 *
 * Layout, integers big-endian:
 *   0  u8  version (CL_ENV_VERSION)
 *   1  u8  flags: bits 0-1 QoS, bit 2 retain, bit 3 came over a bridge
 *   2  u64 origin: the publishing node's incarnation (random at start)
 *  10  u64 seq: that incarnation's message number (one per NATS publish)
 *  18  u64 publisher: a hash of the publishing client (who orders what)
 *  26  i64 sent_ms: wall clock when it left (routing lag)
 *  34  i64 expiry_at: absolute wall-clock expiry in ms, 0 = never
 *  42  u16 topic length, topic
 *      u32 properties length, the forwarded MQTT 5 property entries
 *      payload: the rest
 */
#ifndef HATO_CLUSTER_ENVELOPE_H
#define HATO_CLUSTER_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CL_ENV_VERSION 1
#define CL_ENV_FIXED 42

struct cl_env {
    uint8_t qos;
    bool retain;
    bool via_bridge;
    uint64_t origin, seq, publisher;
    int64_t sent_ms, expiry_at;
    const uint8_t *topic; /* views into the encoded buffer when decoded */
    uint16_t topic_len;
    const uint8_t *props;
    uint32_t props_len;
    const uint8_t *payload;
    size_t payload_len;
};

/* Size of e encoded. */
size_t cl_env_size(const struct cl_env *e);
/* Encode e into out[0..cap); returns the size, 0 when cap is too small. */
size_t cl_env_encode(const struct cl_env *e, uint8_t *out, size_t cap);
/* Decode buf[0..len) into e (views into buf). 0, or -1 with *why set. */
int cl_env_decode(const uint8_t *buf, size_t len, struct cl_env *e, const char **why);

#endif
