/*
 * The records of the durable store, as bytes. Knows nothing of LMDB nor of
 * the broker's structures: the broker encodes from its objects into these
 * plain views, the store tool decodes them for check and dump.
 *
 * Every value starts with a format byte (REC_FORMAT); integers are
 * little-endian, keys are big-endian where their order matters (message
 * ids, queue sequence numbers) so that LMDB's byte order is their order.
 *
 * Tables (LMDB named databases):
 *   meta    "format" -> u32 format number
 *   msgs    u64 id (BE)              -> message
 *   mrefs   u64 id (BE)              -> u32 number of queue entries using it, when not 1
 *   retain  topic                    -> message
 *   sess    client id                -> session
 *   queue   u16 idlen (BE), id, u64 seq (BE) -> entry (queued or in flight), with the
 *           message inline when it has this one receiver, else its id in msgs
 *   inpid   u16 idlen (BE), id, u16 packet id (BE) -> (format byte only)
 *
 * Decoders never read past the value and return -1 on any inconsistency:
 * a damaged record is reported, never guessed at.
 */
#ifndef HATO_STORE_RECORD_H
#define HATO_STORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REC_FORMAT 1

/* A growable byte buffer (malloc'd). `failed` is set on out of memory. */
struct rbuf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};
void rbuf_u8(struct rbuf *b, uint8_t v);
void rbuf_u16(struct rbuf *b, uint16_t v);
void rbuf_u32(struct rbuf *b, uint32_t v);
void rbuf_u64(struct rbuf *b, uint64_t v);
void rbuf_bytes(struct rbuf *b, const void *p, size_t len);
/* u32 length, then the bytes. */
void rbuf_blob(struct rbuf *b, const void *p, uint32_t len);
void rbuf_free(struct rbuf *b);

/* A bounded reader: every read fails (and stays failed) past the end. */
struct rread {
    const uint8_t *p;
    size_t len, off;
    bool failed;
};
uint8_t rread_u8(struct rread *r);
uint16_t rread_u16(struct rread *r);
uint32_t rread_u32(struct rread *r);
uint64_t rread_u64(struct rread *r);
const uint8_t *rread_bytes(struct rread *r, size_t len);

/* A message as stored (views into the value). */
struct rec_msg {
    uint8_t qos;
    bool retain;
    int64_t expiry_at; /* CLOCK_REALTIME ms, 0 = never */
    const uint8_t *topic;
    uint16_t topic_len;
    const uint8_t *payload;
    uint32_t payload_len;
    uint64_t props_present; /* MQTT_PROP_BIT set of the forwarded properties */
    uint8_t payload_format;
    const uint8_t *content_type, *response_topic, *correlation_data, *user_props;
    uint32_t content_type_len, response_topic_len, correlation_data_len, user_props_len;
};
void rec_msg_encode(struct rbuf *b, const struct rec_msg *m);
int rec_msg_decode(struct rread *r, struct rec_msg *m);

/*
 * The publisher of a retained message (check_retain_source), an optional
 * trailer after the message in a `retain` value: u8 REC_TAG_SOURCE, u16
 * id length, id, u8 has_user, [u32 user length, user], i32 listener index
 * (-1 = unknown). Records written before it existed simply end after the
 * message; readers that predate it ignore it.
 */
#define REC_TAG_SOURCE 0x53
struct rec_source {
    const uint8_t *id;
    uint16_t id_len;
    bool has_user;
    const uint8_t *user;
    uint32_t user_len;
    int32_t listener;
};
void rec_source_encode(struct rbuf *b, const struct rec_source *s);
/* 1 decoded, 0 none (the value ends here), -1 damaged. */
int rec_source_decode(struct rread *r, struct rec_source *s);

struct rec_sub {
    const uint8_t *filter;
    uint16_t len;
    uint8_t qos, retain_handling;
    bool no_local, retain_as_published;
    uint32_t sub_id;
};

/* A session as stored. Subscriptions are walked with rec_sess_sub_next. */
struct rec_sess {
    uint8_t version;     /* MQTT protocol version */
    uint32_t expiry;     /* session expiry interval, s (UINT32_MAX = never) */
    int64_t offline_at;  /* CLOCK_REALTIME ms of the disconnect, 0 = was online */
    uint32_t will_delay; /* s */
    int64_t will_at;     /* CLOCK_REALTIME ms a pending will is due, 0 = none pending */
    bool has_will;
    struct rec_msg will;
    /* Identity for ACL checks while offline: user name of the last
     * connection (has_user false = anonymous) and the index of its
     * listener in the configuration (-1 = unknown). */
    bool has_user;
    const uint8_t *user;
    uint32_t user_len;
    int32_t listener;
    uint32_t nsubs;
    struct rread subs; /* positioned at the first subscription */
};
/* Encode the head; then nsubs times rec_sess_sub_encode. */
void rec_sess_encode_head(struct rbuf *b, const struct rec_sess *s, const struct rec_msg *will);
void rec_sess_sub_encode(struct rbuf *b, const struct rec_sub *sub);
int rec_sess_decode(struct rread *r, struct rec_sess *s);
/* Next subscription; 1, 0 at the end, -1 damaged. */
int rec_sess_sub_next(struct rec_sess *s, struct rec_sub *sub);

/* A queue entry: a message delivered to one session, queued or in flight. */
enum rec_state { REC_QUEUED = 0, REC_WAIT_PUBACK, REC_WAIT_PUBREC, REC_WAIT_PUBCOMP };
struct rec_entry {
    uint64_t msg_id; /* 0: the message is inline (a message with one receiver) */
    uint8_t qos;
    bool retain;
    uint8_t state; /* enum rec_state */
    uint16_t pid;
    uint16_t nsub;
    struct rread subids; /* nsub u32 values */
    struct rread msg;    /* msg_id == 0: the encoded message (rec_msg_decode it) */
};
/* msg/msglen: the encoded message when e->msg_id == 0. */
void rec_entry_encode(struct rbuf *b, const struct rec_entry *e, const uint32_t *subids,
                      const uint8_t *msg, uint32_t msglen);
int rec_entry_decode(struct rread *r, struct rec_entry *e);

/* Keys. Buffers must hold 2 + id_len + 8 bytes. Return the key length. */
size_t rec_key_u64(uint8_t out[8], uint64_t id);
uint64_t rec_key_get_u64(const uint8_t *p);
size_t rec_key_session(uint8_t *out, const char *id, size_t id_len); /* prefix: u16 + id */
size_t rec_key_entry(uint8_t *out, const char *id, size_t id_len, uint64_t seq);
size_t rec_key_inpid(uint8_t *out, const char *id, size_t id_len, uint16_t pid);
/* Split a queue/inpid key into client id and the rest. -1 if malformed. */
int rec_key_split(const uint8_t *key, size_t len, const uint8_t **id, size_t *id_len,
                  const uint8_t **rest, size_t *rest_len);

#endif
