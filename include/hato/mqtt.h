/*
 * hato MQTT codec: decode and encode every control packet of MQTT 3.1
 * (MQIsdp), 3.1.1 and 5.0. Pure: no I/O, no globals, no allocation.
 *
 * Decoding is zero-copy: every string or binary field of a decoded packet is
 * a view (struct mqtt_str) into the caller's input buffer, valid as long as
 * that buffer is. A packet is decoded and validated whole (reserved bits,
 * lengths, UTF-8, topic rules, property types, duplicates, which properties
 * a packet may carry) before the caller sees it; multi-entry payloads
 * (SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK) and user properties are kept as
 * validated raw regions that the iterators below walk without failing.
 *
 * Encoding writes into a caller's buffer: every encoder returns the number
 * of bytes the packet needs and writes only when that fits in `cap`, so a
 * caller may ask for the size with (NULL, 0) first.
 */
#ifndef HATO_MQTT_H
#define HATO_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Protocol levels as carried in CONNECT. */
enum mqtt_version {
    MQTT_V31 = 3,  /* "MQIsdp" */
    MQTT_V311 = 4, /* "MQTT" level 4 */
    MQTT_V5 = 5,   /* "MQTT" level 5 */
};

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* Codec results: few codes, the detail is in an MQTT reason code. */
enum mqtt_status {
    MQTT_OK = 0,
    MQTT_AGAIN = 1, /* not enough bytes yet: a normal result */
    MQTT_ERR = -1,  /* malformed or protocol error: see the reason out-param */
};

/* MQTT 5 reason codes (also used internally for 3.x errors). */
enum mqtt_reason {
    MQTT_RC_SUCCESS = 0x00, /* also: normal disconnection, granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTHENTICATION = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED_PACKET = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    MQTT_RC_BAD_USERNAME_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTHENTICATION_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1/3.1.1 CONNACK return codes. */
enum mqtt_connack_v3 {
    MQTT_CONNACK_ACCEPTED = 0,
    MQTT_CONNACK_BAD_PROTOCOL = 1,
    MQTT_CONNACK_ID_REJECTED = 2,
    MQTT_CONNACK_SERVER_UNAVAILABLE = 3,
    MQTT_CONNACK_BAD_CREDENTIALS = 4,
    MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

/* MQTT 5 property identifiers. */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Bit for property `id` in mqtt_props.present. */
#define MQTT_PROP_BIT(id) (UINT64_C(1) << (id))

/* Subscription identifiers a decoded PUBLISH stores (more are counted). */
#define MQTT_MAX_SUB_IDS 4

/* Largest remaining length the variable-byte integer can carry. */
#define MQTT_MAX_REMAINING_LENGTH 268435455u

/* A view of bytes owned by someone else (input buffer or caller). */
struct mqtt_str {
    const uint8_t *p;
    uint32_t len;
};

/*
 * MQTT 5 properties of one packet (or of a will). A field is meaningful only
 * when its bit is set in `present`. Decoding fills the views into the input;
 * encoding writes every present field, in identifier order, then the user
 * properties region and the subscription identifiers. A decoded block can
 * be re-encoded as is: its user properties are then taken from `raw`.
 */
struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keep_alive;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t maximum_packet_size;
    struct mqtt_str content_type;
    struct mqtt_str response_topic;
    struct mqtt_str correlation_data;
    struct mqtt_str assigned_client_id;
    struct mqtt_str auth_method;
    struct mqtt_str auth_data;
    struct mqtt_str response_info;
    struct mqtt_str server_reference;
    struct mqtt_str reason_string;
    /*
     * User properties, for ENCODING: their encoded bytes, a sequence of
     * (0x26, UTF-8 string pair) entries in order, copied verbatim (as made by
     * mqtt_user_props_collect or mqtt_encode_user_prop). Decoding leaves this
     * empty (user properties may be interleaved with others on the wire):
     * walk decoded ones with mqtt_user_prop_next, which reads `raw`.
     * MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY) is set when there is at least one.
     */
    struct mqtt_str user_props;
    /*
     * Subscription identifiers. Decoding (SUBSCRIBE, or PUBLISH received by a
     * client): up to one stored in sub_id[0] for SUBSCRIBE; a PUBLISH may
     * carry several, all stored up to MQTT_MAX_SUB_IDS and counted in
     * sub_id_count. Encoding writes sub_id_count entries of sub_ids (or of
     * sub_id when sub_ids is NULL; then a count over MQTT_MAX_SUB_IDS
     * cannot be encoded and the encoder returns 0).
     */
    uint32_t sub_id_count;
    uint32_t sub_id[MQTT_MAX_SUB_IDS];
    const uint32_t *sub_ids;
    /* Decoding: the property block's content (after its length), so user
     * properties can be walked in order. Empty for props built to encode. */
    struct mqtt_str raw;
    /*
     * Encoding only (both zero by default). `order[0..norder)`: identifiers
     * written first, in that order, when present (MQTT_PROP_USER_PROPERTY
     * and MQTT_PROP_SUBSCRIPTION_ID included); the other present ones follow
     * as above. The spec leaves the order free; a broker uses this to write
     * another implementation's order. `encoded`: when its `p` is set, the
     * whole block's content (encoded entries, no length), written verbatim
     * instead of every field above; the caller vouches for its validity.
     */
    const uint8_t *order;
    uint8_t norder;
    struct mqtt_str encoded;
};

/* One entry of a SUBSCRIBE (decode or encode). */
struct mqtt_sub_entry {
    struct mqtt_str filter;
    uint8_t qos;              /* 0..2 */
    bool no_local;            /* MQTT 5 */
    bool retain_as_published; /* MQTT 5 */
    uint8_t retain_handling;  /* MQTT 5, 0..2 */
};

/*
 * A decoded (or to-be-encoded) control packet. Fields not used by `type`
 * are zero after decoding, except that after a PUBLISH the bytes of the
 * union past `publish` (other types' members) are left as they were.
 */
struct mqtt_packet {
    uint8_t type;  /* enum mqtt_type */
    uint8_t flags; /* low nibble of the fixed header */
    uint16_t packet_id;
    uint8_t reason; /* acks (v5), CONNACK, DISCONNECT, AUTH */
    struct mqtt_props props;
    union {
        struct {
            uint8_t version; /* enum mqtt_version found in the packet */
            /* Mosquitto's bridge marker (try_private): the level's high bit,
             * 0x83 / 0x84 for 3.1 / 3.1.1. Decoded into version + bridge;
             * encoded as level | 0x80 (3.x only). */
            bool bridge;
            bool clean; /* clean session (3.x) / clean start (5) */
            uint16_t keep_alive;
            struct mqtt_str client_id;
            bool will;
            uint8_t will_qos;
            bool will_retain;
            struct mqtt_props will_props;
            struct mqtt_str will_topic;
            struct mqtt_str will_payload;
            bool has_username;
            struct mqtt_str username;
            bool has_password;
            struct mqtt_str password;
        } connect;
        struct {
            bool session_present;
            /* reason: return code (3.x) or reason code (5) in packet.reason */
        } connack;
        struct {
            struct mqtt_str topic; /* may be empty in MQTT 5 with a topic alias */
            uint8_t qos;
            bool retain;
            bool dup;
            struct mqtt_str payload;
        } publish;
        struct {
            /* Decode: `raw` is the validated payload, walk it with
             * mqtt_sub_next; `count` is its number of entries and `list` is
             * NULL. Encode: `list` holds `count` entries (if `list` is NULL,
             * `raw` is copied verbatim: re-encoding for the same version). */
            struct mqtt_str raw;
            uint32_t count;
            const struct mqtt_sub_entry *list;
        } subscribe;
        struct {
            /* Decode: `raw` is the validated payload of filters, walk it with
             * mqtt_unsub_next; `count` is its number of filters. Encode:
             * `list` holds `count` filters (or, if NULL, `raw` is copied). */
            struct mqtt_str raw;
            uint32_t count;
            const struct mqtt_str *list;
        } unsubscribe;
        struct {
            /* SUBACK and UNSUBACK: `count` return/reason codes. Decode: views
             * into the input. Encode: from `codes`. (UNSUBACK of 3.x: count 0.) */
            const uint8_t *codes;
            uint32_t count;
        } ack_list;
    };
};

/* Fixed header of a packet at the start of a buffer. */
struct mqtt_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t remaining;  /* remaining length */
    uint32_t header_len; /* 2..5: bytes of the fixed header */
    uint32_t total;      /* header_len + remaining */
};

/*
 * Find the packet at the start of buf[0..len).
 * Returns MQTT_OK (frame filled; the whole packet is in the buffer when
 * len >= frame.total), MQTT_AGAIN (the fixed header itself is incomplete), or
 * MQTT_ERR with *reason = MQTT_RC_MALFORMED_PACKET (remaining length longer
 * than 4 bytes; a non-minimal encoding is accepted) or
 * MQTT_RC_PACKET_TOO_LARGE (total > max_size; max_size 0 means no limit
 * beyond the protocol's). Checking the size before the body has arrived lets
 * a caller refuse a packet before buffering it. The packet type and flags
 * are not judged here (mqtt_decode does). `reason` may be NULL.
 */
int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_size, struct mqtt_frame *frame,
                     uint8_t *reason);

/*
 * Decode and validate one whole packet buf[0..len) (len == frame.total).
 * `version` is the connection's protocol level; 0 before CONNECT, in which
 * case only a CONNECT is accepted and its level is reported in
 * out->connect.version. A CONNECT is decoded by its own level whatever
 * `version` is (refusing a second CONNECT is the caller's business).
 * Returns MQTT_OK or MQTT_ERR with *reason set:
 * MQTT_RC_MALFORMED_PACKET, MQTT_RC_PROTOCOL_ERROR (also: CONNECT whose
 * protocol name is neither "MQTT" nor "MQIsdp", MQTT-3.1.2-1: close without
 * CONNACK), MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION (CONNECT with a known name
 * and an unknown level; out->connect.version is then the level found, so
 * the caller can answer with the right CONNACK), MQTT_RC_TOPIC_NAME_INVALID,
 * MQTT_RC_TOPIC_FILTER_INVALID, MQTT_RC_PAYLOAD_FORMAT_INVALID,
 * MQTT_RC_CLIENT_ID_NOT_VALID (empty id in 3.1, or in 3.1.1 without clean
 * session, MQTT-3.1.3-8; reported only when the rest of the CONNECT is
 * valid. 3.1 ids over 23 bytes are NOT rejected here: policy belongs to the
 * broker). After MQTT_ERR only `type`, `flags` and connect.version are
 * meaningful. `reason` may be NULL.
 *
 * `is_server` says which side decodes: the server rejects packets only a
 * server may send (CONNACK, SUBACK, ...) and vice versa, and PUBLISH from a
 * client must not carry subscription identifiers.
 */
int mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, bool is_server,
                struct mqtt_packet *out, uint8_t *reason);

/* Walk a decoded SUBSCRIBE. *off starts at 0. Returns false at the end. */
bool mqtt_sub_next(const struct mqtt_packet *p, uint32_t *off, struct mqtt_sub_entry *out);
/* Walk a decoded UNSUBSCRIBE. *off starts at 0. Returns false at the end. */
bool mqtt_unsub_next(const struct mqtt_packet *p, uint32_t *off, struct mqtt_str *filter);
/*
 * Walk the user properties in order: those of decoded props (from `raw`) or,
 * when `raw` is empty, those of `user_props`. *off starts at 0. Returns false
 * at the end.
 */
bool mqtt_user_prop_next(const struct mqtt_props *props, uint32_t *off, struct mqtt_str *key,
                         struct mqtt_str *value);
/*
 * Copy the user properties of decoded props, in order, into dst[0..cap) as
 * consecutive 0x26 entries (the form mqtt_props.user_props takes for
 * encoding). Returns the bytes needed; writes only if they fit.
 */
size_t mqtt_user_props_collect(const struct mqtt_props *props, uint8_t *dst, size_t cap);
/* Encode one user property entry (0x26, key, value). Same size contract. */
size_t mqtt_encode_user_prop(uint8_t *dst, size_t cap, struct mqtt_str key, struct mqtt_str value);

/*
 * Encode packet `p` for protocol `version` into buf[0..cap). Returns the
 * total size (fixed header included) and writes only when it fits; returns 0
 * if the packet cannot be encoded (remaining length over the maximum, a
 * string or binary field over 65535 bytes, QoS 3, AUTH before 5.0, unknown
 * type or version). CONNECT is written for `version` (its name and level
 * follow from it; p->connect.version is not read). For
 * 3.x, properties and reason codes that the version lacks are left out
 * (PUBACK & co carry only the packet id; DISCONNECT is empty; CONNACK carries
 * `reason` as its return code). For MQTT 5 acks, the reason code and property
 * length are omitted when the spec allows it (reason 0 and no properties).
 * PUBLISH copies the payload; see mqtt_encode_publish_head for zero-copy.
 */
size_t mqtt_encode(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_packet *p);

/*
 * Encode a PUBLISH without its payload: fixed header (whose remaining length
 * accounts for p->publish.payload.len), topic, packet id, properties. The
 * caller sends the payload bytes right after. Same size contract as
 * mqtt_encode; the returned size excludes the payload.
 */
size_t mqtt_encode_publish_head(uint8_t *buf, size_t cap, uint8_t version,
                                const struct mqtt_packet *p);

/*
 * The same for the common PUBLISH that carries no property (MQTT 3.x, or
 * MQTT 5 with an empty property block), from its fields: no struct
 * mqtt_packet to fill, for a broker delivering one message to many
 * clients. Same bytes and size contract as mqtt_encode_publish_head; 0 for
 * QoS 3, a topic over 65535 bytes or a remaining length over the maximum.
 */
size_t mqtt_encode_publish_plain(uint8_t *buf, size_t cap, uint8_t version, const char *topic,
                                 size_t topic_len, uint8_t qos, bool retain, bool dup,
                                 uint16_t packet_id, size_t payload_len);

/*
 * Copy into dst[0..cap) the encoded entries (identifier and value) of the
 * properties whose MQTT_PROP_BIT is in `ids`: in the order they came on the
 * wire for decoded props (`raw` set), else in encoding order. Returns the
 * size needed (nothing written when cap is smaller); 0 when there are none
 * or props is NULL (a property counts when its MQTT_PROP_BIT is in
 * `present`).
 */
size_t mqtt_props_copy_entries(const struct mqtt_props *props, uint64_t ids, uint8_t *dst,
                               size_t cap);

/*
 * Decode one property block (variable-length prefix, then the properties) found
 * outside a packet, e.g. in a file, with the rules of packet `type` as seen by
 * a server (is_server) or a client. On success *used is the block's size.
 * Returns MQTT_OK, or MQTT_ERR with *reason (may be NULL) set.
 */
int mqtt_props_parse(const uint8_t *buf, size_t len, uint8_t type, bool is_server,
                     struct mqtt_props *out, size_t *used, uint8_t *reason);

/* Size of the encoded property block (length prefix included); 0 if it
 * cannot be encoded (a string over 65535 bytes, too many sub_id). */
size_t mqtt_props_size(const struct mqtt_props *props);

/* Variable byte integer: bytes needed for v (1..4), or 0 if v is too big. */
size_t mqtt_varint_size(uint32_t v);

/* UTF-8 as MQTT requires: well-formed, no U+0000, no surrogates (MQTT-1.5.4-1, -2). */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);
/* Topic name: 1..65535 bytes, valid UTF-8, no '+' or '#' (MQTT-4.7.3-1, 4.7.1-1). */
bool mqtt_topic_name_valid(const uint8_t *s, size_t len);
/*
 * Topic filter: non-empty, valid UTF-8, '#' only as last level and alone in
 * it, '+' alone in its level (MQTT-4.7.1-2, 4.7.1-3). Shared subscription
 * filters ($share/NAME/filter) are checked by mqtt_shared_split.
 */
bool mqtt_topic_filter_valid(const uint8_t *s, size_t len);
/*
 * If filter is "$share/NAME/FILTER", set *group and *inner and return 1 (0 if
 * it is not a shared subscription, -1 if it is one but malformed: empty or
 * wildcard NAME, missing FILTER; MQTT-4.8.2-1, -2).
 */
int mqtt_shared_split(const uint8_t *s, size_t len, struct mqtt_str *group, struct mqtt_str *inner);
/*
 * Reference topic matching: does `topic` match `filter`? Topics starting with
 * '$' are not matched by a filter starting with '+' or '#' (MQTT-4.7.2-1).
 * Both must be valid. Linear in the lengths; the broker's tree must agree.
 */
bool mqtt_topic_match(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);

/* Short names for logs: "CONNECT", ... ; "?" if unknown. */
const char *mqtt_type_name(uint8_t type);
/* Text of a reason code for logs and tools, e.g. "Not authorized". */
const char *mqtt_reason_text(uint8_t reason);

#ifdef __cplusplus
}
#endif
#endif
