/*
 * MQTT 5 properties: decoding with full validation, encoding in a stable
 * order, and walking user properties. Table 2-4 of the MQTT 5.0 spec is the
 * source for the property types and the packets that may carry each one.
 */
#include "internal.h"

enum prop_type {
    PT_NONE = 0, /* not a property identifier */
    PT_BYTE,
    PT_U16,
    PT_U32,
    PT_VARINT,
    PT_STR,
    PT_BIN,
    PT_PAIR,
};

/* Packet mask: bit `type` for a packet type, bit 0 for will properties. */
#define PK(t) ((uint16_t)(1u << (t)))
#define PK_WILL PK(0)
#define PK_ACKS (PK(MQTT_PUBACK) | PK(MQTT_PUBREC) | PK(MQTT_PUBREL) | PK(MQTT_PUBCOMP))

struct prop_def {
    uint8_t type;     /* enum prop_type */
    uint16_t packets; /* where the property may appear */
};

#define PROP_ID_LIMIT (MQTT_PROP_SHARED_SUB_AVAILABLE + 1)

static const struct prop_def prop_defs[PROP_ID_LIMIT] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = {PT_BYTE, PK(MQTT_PUBLISH) | PK_WILL},
    [MQTT_PROP_MESSAGE_EXPIRY] = {PT_U32, PK(MQTT_PUBLISH) | PK_WILL},
    [MQTT_PROP_CONTENT_TYPE] = {PT_STR, PK(MQTT_PUBLISH) | PK_WILL},
    [MQTT_PROP_RESPONSE_TOPIC] = {PT_STR, PK(MQTT_PUBLISH) | PK_WILL},
    [MQTT_PROP_CORRELATION_DATA] = {PT_BIN, PK(MQTT_PUBLISH) | PK_WILL},
    [MQTT_PROP_SUBSCRIPTION_ID] = {PT_VARINT, PK(MQTT_PUBLISH) | PK(MQTT_SUBSCRIBE)},
    [MQTT_PROP_SESSION_EXPIRY] = {PT_U32,
                                  PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT)},
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = {PT_STR, PK(MQTT_CONNACK)},
    [MQTT_PROP_SERVER_KEEP_ALIVE] = {PT_U16, PK(MQTT_CONNACK)},
    [MQTT_PROP_AUTH_METHOD] = {PT_STR, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH)},
    [MQTT_PROP_AUTH_DATA] = {PT_BIN, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH)},
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = {PT_BYTE, PK(MQTT_CONNECT)},
    [MQTT_PROP_WILL_DELAY] = {PT_U32, PK_WILL},
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = {PT_BYTE, PK(MQTT_CONNECT)},
    [MQTT_PROP_RESPONSE_INFO] = {PT_STR, PK(MQTT_CONNACK)},
    [MQTT_PROP_SERVER_REFERENCE] = {PT_STR, PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT)},
    [MQTT_PROP_REASON_STRING] = {PT_STR, PK(MQTT_CONNACK) | PK_ACKS | PK(MQTT_SUBACK) |
                                             PK(MQTT_UNSUBACK) | PK(MQTT_DISCONNECT) |
                                             PK(MQTT_AUTH)},
    [MQTT_PROP_RECEIVE_MAXIMUM] = {PT_U16, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = {PT_U16, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [MQTT_PROP_TOPIC_ALIAS] = {PT_U16, PK(MQTT_PUBLISH)},
    [MQTT_PROP_MAXIMUM_QOS] = {PT_BYTE, PK(MQTT_CONNACK)},
    [MQTT_PROP_RETAIN_AVAILABLE] = {PT_BYTE, PK(MQTT_CONNACK)},
    [MQTT_PROP_USER_PROPERTY] = {PT_PAIR, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_PUBLISH) |
                                              PK_WILL | PK_ACKS | PK(MQTT_SUBSCRIBE) |
                                              PK(MQTT_SUBACK) | PK(MQTT_UNSUBSCRIBE) |
                                              PK(MQTT_UNSUBACK) | PK(MQTT_DISCONNECT) |
                                              PK(MQTT_AUTH)},
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = {PT_U32, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {PT_BYTE, PK(MQTT_CONNACK)},
    [MQTT_PROP_SUB_ID_AVAILABLE] = {PT_BYTE, PK(MQTT_CONNACK)},
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = {PT_BYTE, PK(MQTT_CONNACK)},
};

static uint8_t prop_type(uint32_t id) {
    return id < PROP_ID_LIMIT ? prop_defs[id].type : PT_NONE;
}

/* One property's value as read from the wire. */
struct prop_val {
    uint32_t num; /* byte, two-byte, four-byte and varint values */
    struct mqtt_str s, s2;
};

/* Read one property (identifier and value) without judging it. False if the
 * identifier is unknown (its length cannot be known) or the value overruns. */
static bool prop_read(struct mqtt_rd *r, uint32_t *id, struct prop_val *v) {
    size_t start = r->pos;
    if (!mqtt_rd_varint(r, id))
        return false;
    /* MQTT-1.5.5-1: the identifier's varint must use the fewest bytes. */
    if (r->pos - start != mqtt_varint_size(*id))
        return false;
    uint8_t b;
    uint16_t h;
    switch (prop_type(*id)) {
    case PT_BYTE:
        if (!mqtt_rd_u8(r, &b))
            return false;
        v->num = b;
        return true;
    case PT_U16:
        if (!mqtt_rd_u16(r, &h))
            return false;
        v->num = h;
        return true;
    case PT_U32:
        return mqtt_rd_u32(r, &v->num);
    case PT_VARINT:
        return mqtt_rd_varint(r, &v->num);
    case PT_STR:
        return mqtt_rd_str(r, &v->s);
    case PT_BIN:
        return mqtt_rd_bin(r, &v->s);
    case PT_PAIR:
        return mqtt_rd_str(r, &v->s) && mqtt_rd_str(r, &v->s2);
    default:
        return false;
    }
}

static int fail(uint8_t *reason, uint8_t rc) {
    *reason = rc;
    return MQTT_ERR;
}

/* Store a validated value; returns a reason code (0 when the value is
 * acceptable). */
static uint8_t prop_store(struct mqtt_props *out, uint32_t id, const struct prop_val *v) {
    /* Byte properties that are booleans or a QoS limited to 0/1. */
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
    case MQTT_PROP_MAXIMUM_QOS:
    case MQTT_PROP_RETAIN_AVAILABLE:
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
    case MQTT_PROP_SUB_ID_AVAILABLE:
    case MQTT_PROP_SHARED_SUB_AVAILABLE:
        if (v->num > 1)
            return MQTT_RC_PROTOCOL_ERROR;
        break;
    case MQTT_PROP_SUBSCRIPTION_ID:     /* 3.3.2.3.8: 0 is a Protocol Error */
    case MQTT_PROP_RECEIVE_MAXIMUM:     /* 3.1.2.11.3 */
    case MQTT_PROP_MAXIMUM_PACKET_SIZE: /* 3.1.2.11.4 */
        if (v->num == 0)
            return MQTT_RC_PROTOCOL_ERROR;
        break;
    case MQTT_PROP_TOPIC_ALIAS: /* MQTT-3.3.2-8: 0 is "Topic Alias invalid" (3.3.2.3.4) */
        if (v->num == 0)
            return MQTT_RC_TOPIC_ALIAS_INVALID;
        break;
    default:
        break;
    }
    uint8_t b = (uint8_t)v->num;
    uint16_t h = (uint16_t)v->num;
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
        out->payload_format = b;
        break;
    case MQTT_PROP_MESSAGE_EXPIRY:
        out->message_expiry = v->num;
        break;
    case MQTT_PROP_CONTENT_TYPE:
        out->content_type = v->s;
        break;
    case MQTT_PROP_RESPONSE_TOPIC:
        /* MQTT-3.3.2-14: a Topic Name, so no wildcards and not empty. */
        if (!mqtt_topic_name_valid(v->s.p, v->s.len))
            return MQTT_RC_PROTOCOL_ERROR;
        out->response_topic = v->s;
        break;
    case MQTT_PROP_CORRELATION_DATA:
        out->correlation_data = v->s;
        break;
    case MQTT_PROP_SUBSCRIPTION_ID:
        if (out->sub_id_count < MQTT_MAX_SUB_IDS)
            out->sub_id[out->sub_id_count] = v->num;
        out->sub_id_count++;
        break;
    case MQTT_PROP_SESSION_EXPIRY:
        out->session_expiry = v->num;
        break;
    case MQTT_PROP_ASSIGNED_CLIENT_ID:
        out->assigned_client_id = v->s;
        break;
    case MQTT_PROP_SERVER_KEEP_ALIVE:
        out->server_keep_alive = h;
        break;
    case MQTT_PROP_AUTH_METHOD:
        out->auth_method = v->s;
        break;
    case MQTT_PROP_AUTH_DATA:
        out->auth_data = v->s;
        break;
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
        out->request_problem_info = b;
        break;
    case MQTT_PROP_WILL_DELAY:
        out->will_delay = v->num;
        break;
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
        out->request_response_info = b;
        break;
    case MQTT_PROP_RESPONSE_INFO:
        out->response_info = v->s;
        break;
    case MQTT_PROP_SERVER_REFERENCE:
        out->server_reference = v->s;
        break;
    case MQTT_PROP_REASON_STRING:
        out->reason_string = v->s;
        break;
    case MQTT_PROP_RECEIVE_MAXIMUM:
        out->receive_maximum = h;
        break;
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
        out->topic_alias_maximum = h;
        break;
    case MQTT_PROP_TOPIC_ALIAS:
        out->topic_alias = h;
        break;
    case MQTT_PROP_MAXIMUM_QOS:
        out->maximum_qos = b;
        break;
    case MQTT_PROP_RETAIN_AVAILABLE:
        out->retain_available = b;
        break;
    case MQTT_PROP_USER_PROPERTY:
        break; /* walked from `raw` */
    case MQTT_PROP_MAXIMUM_PACKET_SIZE:
        out->maximum_packet_size = v->num;
        break;
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
        out->wildcard_sub_available = b;
        break;
    case MQTT_PROP_SUB_ID_AVAILABLE:
        out->sub_id_available = b;
        break;
    case MQTT_PROP_SHARED_SUB_AVAILABLE:
        out->shared_sub_available = b;
        break;
    default:
        break;
    }
    out->present |= MQTT_PROP_BIT(id);
    return 0;
}

int mqtt_props_decode(struct mqtt_rd *r, uint8_t type, bool is_server, struct mqtt_props *out,
                      uint8_t *reason) {
    memset(out, 0, sizeof *out);
    uint32_t n;
    if (!mqtt_rd_varint(r, &n) || !mqtt_rd_raw(r, n, &out->raw))
        return fail(reason, MQTT_RC_MALFORMED_PACKET);
    struct mqtt_rd pr = {out->raw.p, out->raw.len, 0};
    uint16_t mask = PK(type); /* type 0 is PK_WILL */
    while (mqtt_rd_left(&pr) > 0) {
        uint32_t id;
        struct prop_val v = {0};
        /* An unknown identifier cannot be skipped: its length is unknown. */
        if (!prop_read(&pr, &id, &v))
            return fail(reason, MQTT_RC_MALFORMED_PACKET);
        if (!(prop_defs[id].packets & mask))
            return fail(reason, MQTT_RC_MALFORMED_PACKET); /* 2.2.2.2: not valid here */
        bool repeatable = id == MQTT_PROP_USER_PROPERTY ||
                          (id == MQTT_PROP_SUBSCRIPTION_ID && type == MQTT_PUBLISH);
        if (!repeatable && (out->present & MQTT_PROP_BIT(id)))
            return fail(reason, MQTT_RC_PROTOCOL_ERROR); /* 2.2.2.2: at most once */
        if (id == MQTT_PROP_SUBSCRIPTION_ID && type == MQTT_PUBLISH && is_server)
            return fail(reason, MQTT_RC_PROTOCOL_ERROR); /* MQTT-3.3.4-6 */
        uint8_t rc = prop_store(out, id, &v);
        if (rc)
            return fail(reason, rc);
    }
    /* 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3: data without a method. */
    if ((out->present & MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA)) &&
        !(out->present & MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD)))
        return fail(reason, MQTT_RC_PROTOCOL_ERROR);
    return MQTT_OK;
}

/* Write the user properties: `user_props` verbatim, else those found in `raw`. */
static void props_write_user(struct mqtt_wr *w, const struct mqtt_props *p) {
    if (p->user_props.len > 0) {
        mqtt_wr_bytes(w, p->user_props.p, p->user_props.len);
    } else if (p->raw.len > 0) {
        uint32_t off = 0;
        struct mqtt_str k, v;
        while (mqtt_user_prop_next(p, &off, &k, &v)) {
            mqtt_wr_u8(w, MQTT_PROP_USER_PROPERTY);
            mqtt_wr_bin(w, k);
            mqtt_wr_bin(w, v);
        }
    }
}

static void props_write_sub_ids(struct mqtt_wr *w, const struct mqtt_props *p) {
    const uint32_t *ids = p->sub_ids ? p->sub_ids : p->sub_id;
    if (!p->sub_ids && p->sub_id_count > MQTT_MAX_SUB_IDS) {
        w->err = true; /* decoded more than were stored: cannot re-encode */
        return;
    }
    for (uint32_t i = 0; i < p->sub_id_count; i++) {
        mqtt_wr_u8(w, MQTT_PROP_SUBSCRIPTION_ID);
        mqtt_wr_varint(w, ids[i]);
    }
}

/* Write property `id` of p (known to be present). */
static void props_write_one(struct mqtt_wr *w, const struct mqtt_props *p, uint32_t id) {
    if (id == MQTT_PROP_USER_PROPERTY) {
        props_write_user(w, p);
        return;
    }
    if (id == MQTT_PROP_SUBSCRIPTION_ID) {
        props_write_sub_ids(w, p);
        return;
    }
    mqtt_wr_u8(w, (uint8_t)id);
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
        mqtt_wr_u8(w, p->payload_format);
        break;
    case MQTT_PROP_MESSAGE_EXPIRY:
        mqtt_wr_u32(w, p->message_expiry);
        break;
    case MQTT_PROP_CONTENT_TYPE:
        mqtt_wr_bin(w, p->content_type);
        break;
    case MQTT_PROP_RESPONSE_TOPIC:
        mqtt_wr_bin(w, p->response_topic);
        break;
    case MQTT_PROP_CORRELATION_DATA:
        mqtt_wr_bin(w, p->correlation_data);
        break;
    case MQTT_PROP_SESSION_EXPIRY:
        mqtt_wr_u32(w, p->session_expiry);
        break;
    case MQTT_PROP_ASSIGNED_CLIENT_ID:
        mqtt_wr_bin(w, p->assigned_client_id);
        break;
    case MQTT_PROP_SERVER_KEEP_ALIVE:
        mqtt_wr_u16(w, p->server_keep_alive);
        break;
    case MQTT_PROP_AUTH_METHOD:
        mqtt_wr_bin(w, p->auth_method);
        break;
    case MQTT_PROP_AUTH_DATA:
        mqtt_wr_bin(w, p->auth_data);
        break;
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
        mqtt_wr_u8(w, p->request_problem_info);
        break;
    case MQTT_PROP_WILL_DELAY:
        mqtt_wr_u32(w, p->will_delay);
        break;
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
        mqtt_wr_u8(w, p->request_response_info);
        break;
    case MQTT_PROP_RESPONSE_INFO:
        mqtt_wr_bin(w, p->response_info);
        break;
    case MQTT_PROP_SERVER_REFERENCE:
        mqtt_wr_bin(w, p->server_reference);
        break;
    case MQTT_PROP_REASON_STRING:
        mqtt_wr_bin(w, p->reason_string);
        break;
    case MQTT_PROP_RECEIVE_MAXIMUM:
        mqtt_wr_u16(w, p->receive_maximum);
        break;
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
        mqtt_wr_u16(w, p->topic_alias_maximum);
        break;
    case MQTT_PROP_TOPIC_ALIAS:
        mqtt_wr_u16(w, p->topic_alias);
        break;
    case MQTT_PROP_MAXIMUM_QOS:
        mqtt_wr_u8(w, p->maximum_qos);
        break;
    case MQTT_PROP_RETAIN_AVAILABLE:
        mqtt_wr_u8(w, p->retain_available);
        break;
    case MQTT_PROP_MAXIMUM_PACKET_SIZE:
        mqtt_wr_u32(w, p->maximum_packet_size);
        break;
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
        mqtt_wr_u8(w, p->wildcard_sub_available);
        break;
    case MQTT_PROP_SUB_ID_AVAILABLE:
        mqtt_wr_u8(w, p->sub_id_available);
        break;
    case MQTT_PROP_SHARED_SUB_AVAILABLE:
        mqtt_wr_u8(w, p->shared_sub_available);
        break;
    default:
        break;
    }
}

/* True when property `id` is to be written: present (subscription ids:
 * counted) and a known identifier. */
static bool props_has(const struct mqtt_props *p, uint32_t id) {
    if (id == MQTT_PROP_SUBSCRIPTION_ID)
        return p->sub_id_count > 0;
    if (id == MQTT_PROP_USER_PROPERTY)
        return p->user_props.len > 0 || (p->raw.len > 0 && (p->present & MQTT_PROP_BIT(id)));
    return id < PROP_ID_LIMIT && prop_type(id) != PT_NONE && (p->present & MQTT_PROP_BIT(id));
}

/* The property block's content: `encoded` verbatim if set; else the ids of
 * `order` first, then the other fixed properties in identifier order, user
 * properties, subscription ids. */
static void props_write_content(struct mqtt_wr *w, const struct mqtt_props *p) {
    if (p->encoded.p) {
        mqtt_wr_bytes(w, p->encoded.p, p->encoded.len);
        return;
    }
    uint64_t done = 0;
    for (uint8_t i = 0; i < p->norder; i++) {
        uint32_t id = p->order[i];
        if (id >= PROP_ID_LIMIT || (done & MQTT_PROP_BIT(id)) || !props_has(p, id))
            continue;
        props_write_one(w, p, id);
        done |= MQTT_PROP_BIT(id);
    }
    for (uint32_t id = 1; id < PROP_ID_LIMIT; id++) {
        if (id == MQTT_PROP_USER_PROPERTY || id == MQTT_PROP_SUBSCRIPTION_ID ||
            (done & MQTT_PROP_BIT(id)) || !props_has(p, id))
            continue;
        props_write_one(w, p, id);
    }
    if (!(done & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY)))
        props_write_user(w, p);
    if (!(done & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
        props_write_sub_ids(w, p);
}

size_t mqtt_props_copy_entries(const struct mqtt_props *props, uint64_t ids, uint8_t *dst,
                               size_t cap) {
    if (!props || ((props->present & ids) == 0 && !props->encoded.p))
        return 0; /* the common case (a PUBLISH without properties): no walk */
    if (props->raw.len == 0 || props->encoded.p) {
        struct mqtt_props q = *props;
        q.present &= ids;
        q.order = NULL;
        q.norder = 0;
        if (!(ids & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY)))
            q.user_props = (struct mqtt_str){0};
        if (!(ids & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
            q.sub_id_count = 0;
        if (props->encoded.p) /* walk the encoded block as if decoded */
            q.raw = props->encoded, q.encoded = (struct mqtt_str){0};
        else {
            struct mqtt_wr cw = {0};
            props_write_content(&cw, &q);
            if (cw.err)
                return 0;
            if (dst && cap >= cw.pos) {
                struct mqtt_wr wr = {dst, 0, false};
                props_write_content(&wr, &q);
            }
            return cw.pos;
        }
        return mqtt_props_copy_entries(&q, ids, dst, cap);
    }
    size_t need = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct mqtt_rd r = {props->raw.p, props->raw.len, 0};
        size_t pos = 0;
        while (mqtt_rd_left(&r) > 0) {
            size_t from = r.pos;
            uint32_t id;
            struct prop_val v = {0};
            if (!prop_read(&r, &id, &v))
                break; /* decoded blocks are valid: not reached */
            if (id < 64 && (ids & MQTT_PROP_BIT(id))) {
                if (pass == 1)
                    memcpy(dst + pos, props->raw.p + from, r.pos - from);
                pos += r.pos - from;
            }
        }
        need = pos;
        if (pass == 0 && (!dst || cap < need || need == 0))
            break;
    }
    return need;
}

void mqtt_props_write(struct mqtt_wr *w, const struct mqtt_props *props) {
    struct mqtt_wr cw = {0};
    props_write_content(&cw, props);
    if (cw.err || cw.pos > MQTT_MAX_REMAINING_LENGTH) {
        w->err = true;
        return;
    }
    mqtt_wr_varint(w, (uint32_t)cw.pos);
    props_write_content(w, props);
}

size_t mqtt_props_size(const struct mqtt_props *props) {
    struct mqtt_wr cw = {0};
    mqtt_props_write(&cw, props);
    return cw.err ? 0 : cw.pos;
}

bool mqtt_props_empty(const struct mqtt_props *props) {
    /* Nothing set (every ack and most PUBLISHes): no trial encoding, which
     * walks every identifier twice; a fifth of the bridge thread's CPU when
     * it acknowledged each message over MQTT 5 (docs/benchmarks.md). */
    if (!props->encoded.p && !props->present && !props->sub_id_count && !props->user_props.len)
        return true;
    return mqtt_props_size(props) == 1;
}

bool mqtt_user_prop_next(const struct mqtt_props *props, uint32_t *off, struct mqtt_str *key,
                         struct mqtt_str *value) {
    struct mqtt_str blk = props->raw.len > 0 ? props->raw : props->user_props;
    if (!blk.p || *off >= blk.len)
        return false;
    struct mqtt_rd r = {blk.p, blk.len, *off};
    while (mqtt_rd_left(&r) > 0) {
        uint32_t id;
        struct prop_val v = {0};
        if (!prop_read(&r, &id, &v))
            break; /* only reachable with a hand-made user_props region */
        if (id == MQTT_PROP_USER_PROPERTY) {
            *off = r.pos;
            *key = v.s;
            *value = v.s2;
            return true;
        }
    }
    *off = blk.len;
    return false;
}

size_t mqtt_encode_user_prop(uint8_t *dst, size_t cap, struct mqtt_str key, struct mqtt_str value) {
    if (key.len > 0xFFFF || value.len > 0xFFFF)
        return 0;
    size_t need = 5 + (size_t)key.len + value.len;
    if (dst && cap >= need) {
        struct mqtt_wr w = {dst, 0, false};
        mqtt_wr_u8(&w, MQTT_PROP_USER_PROPERTY);
        mqtt_wr_bin(&w, key);
        mqtt_wr_bin(&w, value);
    }
    return need;
}

size_t mqtt_user_props_collect(const struct mqtt_props *props, uint8_t *dst, size_t cap) {
    size_t need = 0;
    uint32_t off = 0;
    struct mqtt_str k, v;
    while (mqtt_user_prop_next(props, &off, &k, &v))
        need += 5 + (size_t)k.len + v.len;
    if (!dst || cap < need)
        return need;
    size_t pos = 0;
    off = 0;
    while (mqtt_user_prop_next(props, &off, &k, &v))
        pos += mqtt_encode_user_prop(dst + pos, cap - pos, k, v);
    return need;
}

int mqtt_props_parse(const uint8_t *buf, size_t len, uint8_t type, bool is_server,
                     struct mqtt_props *out, size_t *used, uint8_t *reason) {
    uint8_t rc = 0;
    struct mqtt_rd r = {buf, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len, 0};
    int res = mqtt_props_decode(&r, type, is_server, out, reason ? reason : &rc);
    if (res == MQTT_OK && used)
        *used = r.pos;
    return res;
}
