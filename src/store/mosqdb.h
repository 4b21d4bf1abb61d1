/*
 * Reader of Mosquitto's persistence file (mosquitto.db), format versions 5
 * (Mosquitto 1.6) and 6 (Mosquitto 2.0). Knows nothing of the broker
 * nor of hato's store: it parses a byte buffer into plain records that are
 * views into that buffer (valid while it lives). See
 * docs/internals/mosqdb.md for the layout.
 *
 * The reader is strict: anything that is not exactly what Mosquitto writes
 * (a chunk cut short, a length past the end or not matching its fields, an
 * unknown chunk, a client message or retained entry naming a message store
 * id that is not in the file, a subscription or message of a client that
 * has no client chunk, a bad MQTT 5 property block, bad UTF-8 in a client
 * id, user name, topic or filter) fails with the byte offset and reason.
 */
#ifndef HATO_STORE_MOSQDB_H
#define HATO_STORE_MOSQDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hato/mqtt.h"

/* The file starts with these 15 bytes ("\0\xB5\0mosquitto db"). */
#define MOSQDB_MAGIC_LEN 15
bool mosqdb_is_mosquitto(const uint8_t *head, size_t n);

/* Mosquitto's message states (enum mosquitto_msg_state) and directions. */
enum mosqdb_state {
    MOSQDB_PUBLISH_QOS0 = 1,
    MOSQDB_PUBLISH_QOS1 = 2,
    MOSQDB_WAIT_PUBACK = 3,
    MOSQDB_PUBLISH_QOS2 = 4,
    MOSQDB_WAIT_PUBREC = 5,
    MOSQDB_RESEND_PUBREL = 6,
    MOSQDB_WAIT_PUBREL = 7,
    MOSQDB_RESEND_PUBCOMP = 8,
    MOSQDB_WAIT_PUBCOMP = 9,
    MOSQDB_SEND_PUBREC = 10,
    MOSQDB_QUEUED = 11,
};
enum mosqdb_dir { MOSQDB_IN = 0, MOSQDB_OUT = 1 };

/* A message store chunk (one message, shared by retained and client messages). */
struct mosqdb_msg {
    uint64_t store_id;
    int64_t expiry_time; /* wall clock, seconds; 0 = never */
    const uint8_t *topic, *payload, *source_id, *source_user;
    uint16_t topic_len, source_id_len, source_user_len, source_mid, source_port;
    uint32_t payload_len;
    uint8_t qos;
    bool retain;
    struct mqtt_props props; /* PUBLISH properties (views) */
    size_t offset;           /* of the chunk header */
};

/* A client (a session Mosquitto kept: clean start false). */
struct mosqdb_client {
    const uint8_t *id, *username; /* username NULL when none */
    uint16_t id_len, username_len, last_mid, listener_port;
    int64_t session_expiry_time; /* wall clock, seconds; 0 = not set */
    uint32_t session_expiry_interval;
    size_t offset;
};

/* A message queued for or in flight with a client. */
struct mosqdb_cmsg {
    uint64_t store_id;
    const uint8_t *client_id;
    uint16_t id_len, mid;
    uint8_t qos, state, direction;
    bool retain, dup;
    uint32_t sub_id; /* 0 = none */
    size_t msg;      /* index into mosqdb.msgs */
    size_t client;   /* index into mosqdb.clients */
    size_t offset;
};

struct mosqdb_sub {
    const uint8_t *client_id, *filter;
    uint16_t id_len, filter_len;
    uint32_t identifier;
    uint8_t qos, options; /* options: the MQTT 5 subscription option bits 2..5 */
    size_t client;
    size_t offset;
};

struct mosqdb_retain {
    uint64_t store_id;
    size_t msg;
    size_t offset;
};

struct mosqdb_idx {
    uint64_t id;
    size_t i;
};

struct mosqdb {
    uint32_t version;
    uint64_t last_db_id;
    bool shutdown; /* the file was written by a clean shutdown */
    struct mosqdb_msg *msgs;
    struct mosqdb_client *clients;
    struct mosqdb_cmsg *cmsgs;
    struct mosqdb_sub *subs;
    struct mosqdb_retain *retains;
    size_t nmsgs, nclients, ncmsgs, nsubs, nretains;
    struct mosqdb_idx *msg_index; /* msgs by store_id */
};

/*
 * Parse buf[0..len) into db (zeroed first). Returns 0, or -1 with
 * "offset N: reason" in err (db is then empty). Out of memory is reported
 * the same way, at the offset reached.
 */
int mosqdb_parse(const uint8_t *buf, size_t len, struct mosqdb *db, char *err, size_t errlen);
void mosqdb_free(struct mosqdb *db);
/* Index in db->msgs of the message with this store id, or (size_t)-1. */
size_t mosqdb_find_msg(const struct mosqdb *db, uint64_t store_id);
/* Index in db->clients of the client with this id, or (size_t)-1. */
size_t mosqdb_find_client(const struct mosqdb *db, const uint8_t *id, size_t len);

#endif
