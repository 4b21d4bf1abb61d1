/*
 * Decoding and validation of whole control packets (MQTT 3.1, 3.1.1, 5.0),
 * and the iterators over the validated SUBSCRIBE and UNSUBSCRIBE payloads.
 *
 * Each decode_* function reads the variable header and payload from a cursor
 * over exactly the packet's remaining length; mqtt_decode then requires that
 * nothing is left over. Result codes follow MQTT 5.0 4.13: bytes that cannot
 * be parsed are a Malformed Packet, parseable but forbidden content is a
 * Protocol Error; 3.x connections get the same codes for logging.
 */
#include "base/zero.h"
#include "internal.h"

static int fail(uint8_t *reason, uint8_t rc) {
    *reason = rc;
    return MQTT_ERR;
}

#define MALFORMED(reason) fail((reason), MQTT_RC_MALFORMED_PACKET)
#define PROTOCOL(reason) fail((reason), MQTT_RC_PROTOCOL_ERROR)

static bool in_list(uint8_t v, const uint8_t *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return true;
    return false;
}
#define IN(v, ...)                                                                                 \
    in_list((v), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Reason codes each MQTT 5 packet may carry (MQTT 5.0 3.x.2.1 tables). */
static bool reason_valid(uint8_t type, uint8_t rc) {
    switch (type) {
    case MQTT_CONNACK:
        return IN(rc, 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
                  0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
        return IN(rc, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99);
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return IN(rc, 0x00, 0x92);
    case MQTT_SUBACK:
        return IN(rc, 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2);
    case MQTT_UNSUBACK:
        return IN(rc, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91);
    case MQTT_DISCONNECT:
        return IN(rc, 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
                  0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
                  0xA0, 0xA1, 0xA2);
    case MQTT_AUTH:
        return IN(rc, 0x00, 0x18, 0x19);
    default:
        return false;
    }
}

static bool str_eq(struct mqtt_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Packet identifier, non-zero (MQTT-2.3.1-1). */
static int read_packet_id(struct mqtt_rd *r, struct mqtt_packet *out, uint8_t *reason) {
    if (!mqtt_rd_u16(r, &out->packet_id))
        return MALFORMED(reason);
    if (out->packet_id == 0)
        return PROTOCOL(reason);
    return MQTT_OK;
}

static int decode_connect(struct mqtt_rd *r, bool is_server, struct mqtt_packet *out,
                          uint8_t *reason) {
    struct mqtt_str name;
    uint8_t level, cf;
    if (!mqtt_rd_str(r, &name) || !mqtt_rd_u8(r, &level))
        return MALFORMED(reason);
    out->connect.version = level;
    bool mqisdp = str_eq(name, "MQIsdp"), mqtt = str_eq(name, "MQTT");
    /* Not MQTT at all (MQTT-3.1.2-1): no CONNACK is owed, just close. */
    if (!mqisdp && !mqtt)
        return PROTOCOL(reason);
    /* A Mosquitto bridge with try_private sets the level's high bit (0x83
     * "MQIsdp", 0x84 "MQTT"). Every other level with it stays refused, 0x85
     * too (Mosquitto 2.0.11 half-accepts it: 5.0 replies, but the CONNECT
     * read without properties; see docs/internals/bridge-peer.md). */
    if ((mqisdp && level == (0x80 | MQTT_V31)) || (mqtt && level == (0x80 | MQTT_V311))) {
        out->connect.bridge = true;
        level &= 0x7F;
        out->connect.version = level;
    }
    /* Known name, unknown level (MQTT-3.1.2-2): answer with a CONNACK. */
    if ((mqisdp && level != MQTT_V31) || (mqtt && level != MQTT_V311 && level != MQTT_V5))
        return fail(reason, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);

    if (!mqtt_rd_u8(r, &cf) || !mqtt_rd_u16(r, &out->connect.keep_alive))
        return MALFORMED(reason);
    if (cf & 0x01) /* MQTT-3.1.2-3: reserved flag */
        return MALFORMED(reason);
    out->connect.clean = cf & 0x02;
    out->connect.will = cf & 0x04;
    out->connect.will_qos = (cf >> 3) & 3;
    out->connect.will_retain = cf & 0x20;
    out->connect.has_password = cf & 0x40;
    out->connect.has_username = cf & 0x80;
    if (out->connect.will_qos == 3) /* MQTT-3.1.2-14 (3.1.1), MQTT-3.1.2-12 (5.0) */
        return MALFORMED(reason);
    /* Will QoS and Will Retain without a will (MQTT-3.1.2-11, -13, -15). */
    if (!out->connect.will && (out->connect.will_qos || out->connect.will_retain))
        return MALFORMED(reason);
    /* Password without user name: forbidden before 5.0 (MQTT-3.1.2-22). */
    if (level < MQTT_V5 && out->connect.has_password && !out->connect.has_username)
        return PROTOCOL(reason);
    if (level == MQTT_V5 && mqtt_props_decode(r, MQTT_CONNECT, is_server, &out->props, reason))
        return MQTT_ERR;
    if (!mqtt_rd_str(r, &out->connect.client_id)) /* MQTT-3.1.3-4 */
        return MALFORMED(reason);
    if (out->connect.will) {
        if (level == MQTT_V5 &&
            mqtt_props_decode(r, 0, is_server, &out->connect.will_props, reason))
            return MQTT_ERR;
        if (!mqtt_rd_str(r, &out->connect.will_topic) ||
            !mqtt_rd_bin(r, &out->connect.will_payload))
            return MALFORMED(reason);
        if (!mqtt_topic_name_valid(out->connect.will_topic.p, out->connect.will_topic.len))
            return fail(reason, MQTT_RC_TOPIC_NAME_INVALID);
        /* MQTT-3.1.3-11 ... payload format indicator 1 means UTF-8. */
        const struct mqtt_props *wp = &out->connect.will_props;
        if ((wp->present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) && wp->payload_format == 1 &&
            !mqtt_utf8_valid(out->connect.will_payload.p, out->connect.will_payload.len))
            return fail(reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
    }
    if (out->connect.has_username && !mqtt_rd_str(r, &out->connect.username))
        return MALFORMED(reason);
    if (out->connect.has_password && !mqtt_rd_bin(r, &out->connect.password))
        return MALFORMED(reason);
    if (mqtt_rd_left(r) != 0)
        return MALFORMED(reason);
    /*
     * Client identifier rules that need no policy: 3.1 requires 1..23
     * characters (the upper bound is left to the broker), 3.1.1 allows an
     * empty one only with a clean session (MQTT-3.1.3-8). MQTT 5 lets the
     * server assign one (MQTT-3.1.3-6).
     */
    if (out->connect.client_id.len == 0 &&
        (level == MQTT_V31 || (level == MQTT_V311 && !out->connect.clean)))
        return fail(reason, MQTT_RC_CLIENT_ID_NOT_VALID);
    return MQTT_OK;
}

static int decode_connack(struct mqtt_rd *r, uint8_t version, bool is_server,
                          struct mqtt_packet *out, uint8_t *reason) {
    uint8_t af;
    if (!mqtt_rd_u8(r, &af) || !mqtt_rd_u8(r, &out->reason))
        return MALFORMED(reason);
    if (af & 0xFE) /* reserved acknowledge flags (MQTT-3.2.2-1 in 5.0) */
        return MALFORMED(reason);
    out->connack.session_present = af & 1;
    if (version < MQTT_V5) {
        if (out->reason > MQTT_CONNACK_NOT_AUTHORIZED) /* 6..255 reserved */
            return MALFORMED(reason);
    } else {
        if (!reason_valid(MQTT_CONNACK, out->reason))
            return MALFORMED(reason);
        if (mqtt_props_decode(r, MQTT_CONNACK, is_server, &out->props, reason))
            return MQTT_ERR;
    }
    /* Session present only on success (MQTT-3.2.2-4 in 3.1.1, -6 in 5.0). */
    if (out->reason != 0 && out->connack.session_present)
        return PROTOCOL(reason);
    return MQTT_OK;
}

static int decode_publish(struct mqtt_rd *r, uint8_t version, bool is_server,
                          struct mqtt_packet *out, uint8_t *reason) {
    out->publish.qos = (out->flags >> 1) & 3;
    out->publish.dup = out->flags & 0x08;
    out->publish.retain = out->flags & 0x01;
    if (!mqtt_rd_str(r, &out->publish.topic))
        return MALFORMED(reason);
    if (out->publish.qos > 0 && read_packet_id(r, out, reason))
        return MQTT_ERR;
    if (version == MQTT_V5 && mqtt_props_decode(r, MQTT_PUBLISH, is_server, &out->props, reason))
        return MQTT_ERR;
    if (out->publish.topic.len == 0) {
        /* 3.3.2.1: empty topic only with a Topic Alias (MQTT 5). */
        if (!(out->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS)))
            return PROTOCOL(reason);
    } else if (!mqtt_topic_name_valid(out->publish.topic.p, out->publish.topic.len)) {
        return fail(reason, MQTT_RC_TOPIC_NAME_INVALID); /* MQTT-3.3.2-2 */
    }
    mqtt_rd_raw(r, mqtt_rd_left(r), &out->publish.payload);
    /* 3.3.2.3.2: payload format indicator 1 promises UTF-8. */
    if ((out->props.present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) &&
        out->props.payload_format == 1 &&
        !mqtt_utf8_valid(out->publish.payload.p, out->publish.payload.len))
        return fail(reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
    return MQTT_OK;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int decode_pub_ack(struct mqtt_rd *r, uint8_t version, bool is_server,
                          struct mqtt_packet *out, uint8_t *reason) {
    if (read_packet_id(r, out, reason))
        return MQTT_ERR;
    if (version < MQTT_V5 || mqtt_rd_left(r) == 0)
        return MQTT_OK; /* 5.0 3.4.2.1: remaining length 2 means Success */
    mqtt_rd_u8(r, &out->reason);
    if (!reason_valid(out->type, out->reason))
        return MALFORMED(reason);
    if (mqtt_rd_left(r) == 0)
        return MQTT_OK; /* 3.4.2.2.1: no property length, no properties */
    return mqtt_props_decode(r, out->type, is_server, &out->props, reason);
}

/*
 * One topic filter of SUBSCRIBE or UNSUBSCRIBE, already read as a UTF-8
 * string. Shared subscriptions are checked in every version, since the
 * broker honours $share/ for 3.1.1 clients too.
 */
static int check_filter(struct mqtt_str f, bool *shared, uint8_t *reason) {
    struct mqtt_str group, inner;
    if (!mqtt_topic_filter_valid(f.p, f.len))
        return fail(reason, MQTT_RC_TOPIC_FILTER_INVALID); /* MQTT-4.7.1-1..3 */
    int s = mqtt_shared_split(f.p, f.len, &group, &inner);
    if (s < 0)
        return fail(reason, MQTT_RC_TOPIC_FILTER_INVALID); /* MQTT-4.8.2-1, -2 */
    *shared = s == 1;
    return MQTT_OK;
}

static int decode_subscribe(struct mqtt_rd *r, uint8_t version, bool is_server,
                            struct mqtt_packet *out, uint8_t *reason) {
    if (read_packet_id(r, out, reason))
        return MQTT_ERR;
    if (version == MQTT_V5 && mqtt_props_decode(r, MQTT_SUBSCRIBE, is_server, &out->props, reason))
        return MQTT_ERR;
    mqtt_rd_raw(r, mqtt_rd_left(r), &out->subscribe.raw);
    if (out->subscribe.raw.len == 0) /* MQTT-3.8.3-3 (5.0: -2) */
        return PROTOCOL(reason);
    struct mqtt_rd pr = {out->subscribe.raw.p, out->subscribe.raw.len, 0};
    while (mqtt_rd_left(&pr) > 0) {
        struct mqtt_str f;
        uint8_t o;
        bool shared;
        if (!mqtt_rd_str(&pr, &f) || !mqtt_rd_u8(&pr, &o))
            return MALFORMED(reason);
        if ((o & 3) ==
            3) /* QoS 3: malformed in 3.1.1 (MQTT-3.8.3-4), 3.8.3.1 (5.0): protocol error */
            return version == MQTT_V5 ? PROTOCOL(reason) : MALFORMED(reason);
        if (version < MQTT_V5 && (o & 0xFC)) /* MQTT-3.8.3-4 (3.1.1): reserved bits */
            return MALFORMED(reason);
        if (version == MQTT_V5 && (o & 0xC0)) /* MQTT-3.8.3-5: reserved bits */
            return MALFORMED(reason);
        if (version == MQTT_V5 && ((o >> 4) & 3) == 3) /* 3.8.3.1: Retain Handling 3 */
            return PROTOCOL(reason);
        if (check_filter(f, &shared, reason))
            return MQTT_ERR;
        if (version == MQTT_V5 && shared && (o & 0x04)) /* MQTT-3.8.3-4 (5.0) */
            return PROTOCOL(reason);
        out->subscribe.count++;
    }
    return MQTT_OK;
}

static int decode_unsubscribe(struct mqtt_rd *r, uint8_t version, bool is_server,
                              struct mqtt_packet *out, uint8_t *reason) {
    if (read_packet_id(r, out, reason))
        return MQTT_ERR;
    if (version == MQTT_V5 &&
        mqtt_props_decode(r, MQTT_UNSUBSCRIBE, is_server, &out->props, reason))
        return MQTT_ERR;
    mqtt_rd_raw(r, mqtt_rd_left(r), &out->unsubscribe.raw);
    if (out->unsubscribe.raw.len == 0) /* MQTT-3.10.3-2 */
        return PROTOCOL(reason);
    struct mqtt_rd pr = {out->unsubscribe.raw.p, out->unsubscribe.raw.len, 0};
    while (mqtt_rd_left(&pr) > 0) {
        struct mqtt_str f;
        bool shared;
        if (!mqtt_rd_str(&pr, &f))
            return MALFORMED(reason);
        if (check_filter(f, &shared, reason))
            return MQTT_ERR;
        out->unsubscribe.count++;
    }
    return MQTT_OK;
}

/* SUBACK, and UNSUBACK of MQTT 5 (3.x UNSUBACK has no payload). */
static int decode_ack_list(struct mqtt_rd *r, uint8_t version, bool is_server,
                           struct mqtt_packet *out, uint8_t *reason) {
    if (read_packet_id(r, out, reason))
        return MQTT_ERR;
    if (out->type == MQTT_UNSUBACK && version < MQTT_V5)
        return MQTT_OK;
    if (version == MQTT_V5 && mqtt_props_decode(r, out->type, is_server, &out->props, reason))
        return MQTT_ERR;
    struct mqtt_str codes;
    mqtt_rd_raw(r, mqtt_rd_left(r), &codes);
    if (codes.len == 0) /* one code per filter, and there is at least one */
        return PROTOCOL(reason);
    for (uint32_t i = 0; i < codes.len; i++) {
        uint8_t c = codes.p[i];
        bool ok = version == MQTT_V5 ? reason_valid(out->type, c) : IN(c, 0x00, 0x01, 0x02, 0x80);
        if (!ok)
            return MALFORMED(reason);
    }
    out->ack_list.codes = codes.p;
    out->ack_list.count = codes.len;
    return MQTT_OK;
}

static int decode_disconnect(struct mqtt_rd *r, uint8_t version, bool is_server,
                             struct mqtt_packet *out, uint8_t *reason) {
    if (version < MQTT_V5 || mqtt_rd_left(r) == 0)
        return MQTT_OK; /* 3.14.2.1: remaining length 0 means normal disconnection */
    mqtt_rd_u8(r, &out->reason);
    if (!reason_valid(MQTT_DISCONNECT, out->reason))
        return MALFORMED(reason);
    if (mqtt_rd_left(r) == 0)
        return MQTT_OK; /* 3.14.2.2.1: remaining length 1 means no properties */
    if (mqtt_props_decode(r, MQTT_DISCONNECT, is_server, &out->props, reason))
        return MQTT_ERR;
    /* MQTT-3.14.2-2: a server does not send a Session Expiry Interval. */
    if (!is_server && (out->props.present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY)))
        return PROTOCOL(reason);
    return MQTT_OK;
}

static int decode_auth(struct mqtt_rd *r, bool is_server, struct mqtt_packet *out,
                       uint8_t *reason) {
    if (mqtt_rd_left(r) == 0)
        return MQTT_OK; /* 3.15.2.1: remaining length 0 means Success */
    mqtt_rd_u8(r, &out->reason);
    if (!reason_valid(MQTT_AUTH, out->reason))
        return MALFORMED(reason);
    /* Unlike DISCONNECT, the property length may only go with the reason. */
    return mqtt_props_decode(r, MQTT_AUTH, is_server, &out->props, reason);
}

/* Which side may receive each packet type (MQTT 5.0 2.1.2 table 2-1). */
static bool direction_ok(uint8_t type, uint8_t version, bool is_server) {
    switch (type) {
    case MQTT_CONNECT:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
    case MQTT_PINGREQ:
        return is_server;
    case MQTT_CONNACK:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGRESP:
        return !is_server;
    case MQTT_PUBLISH:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return true;
    case MQTT_DISCONNECT: /* before 5.0 only the client sends DISCONNECT */
        return is_server || version == MQTT_V5;
    case MQTT_AUTH:
        return version == MQTT_V5;
    default:
        return false;
    }
}

/* Fixed header flags (MQTT-2.2.2-1, -2; MQTT-3.3.1-2, -4). MQTT 3.1 had
 * no reserved flags: its PUBREL, SUBSCRIBE and UNSUBSCRIBE carry QoS 1 and
 * DUP on a retry (a PUBREL re-sent after a reconnect), and Mosquitto reads
 * their flags not at all; so does hato. */
static bool flags_ok(uint8_t type, uint8_t flags, uint8_t version) {
    switch (type) {
    case MQTT_PUBLISH: {
        uint8_t qos = (flags >> 1) & 3;
        if (qos == 3)
            return false; /* MQTT-3.3.1-4 */
        if (qos == 0 && (flags & 0x08))
            return false; /* MQTT-3.3.1-2: DUP set on QoS 0 */
        return true;
    }
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return version == MQTT_V31 || flags == 0x02; /* MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1 */
    default:
        return flags == 0;
    }
}

int mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, bool is_server,
                struct mqtt_packet *out, uint8_t *reason) {
    uint8_t dummy;
    if (!reason)
        reason = &dummy;
    *reason = MQTT_RC_SUCCESS;
    /* A PUBLISH (the hot path) writes nothing past its union member: clear
     * only up to there, and without an inlined `rep stos` (base/zero.h). */
    size_t used = buf && len && (buf[0] >> 4) == MQTT_PUBLISH
                      ? offsetof(struct mqtt_packet, publish) + sizeof out->publish
                      : sizeof *out;
    base_zero(out, used);
    struct mqtt_frame f;
    if (!buf || mqtt_frame_parse(buf, len, 0, &f, reason) != MQTT_OK || f.total != len)
        return MALFORMED(reason);
    out->type = f.type;
    out->flags = f.flags;
    if (f.type == 0) /* reserved packet type */
        return MALFORMED(reason);
    if (version == 0) {
        if (f.type != MQTT_CONNECT || !is_server) /* only CONNECT opens a connection */
            return PROTOCOL(reason);
    } else if (version < MQTT_V31 || version > MQTT_V5) {
        return PROTOCOL(reason); /* caller error: not a protocol level */
    }
    if (!direction_ok(f.type, version, is_server))
        return PROTOCOL(reason);
    if (!flags_ok(f.type, f.flags, version))
        return MALFORMED(reason);

    struct mqtt_rd r = {buf + f.header_len, f.remaining, 0};
    int rc;
    switch (f.type) {
    case MQTT_CONNECT:
        rc = decode_connect(&r, is_server, out, reason);
        break;
    case MQTT_CONNACK:
        rc = decode_connack(&r, version, is_server, out, reason);
        break;
    case MQTT_PUBLISH:
        rc = decode_publish(&r, version, is_server, out, reason);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        rc = decode_pub_ack(&r, version, is_server, out, reason);
        break;
    case MQTT_SUBSCRIBE:
        rc = decode_subscribe(&r, version, is_server, out, reason);
        break;
    case MQTT_UNSUBSCRIBE:
        rc = decode_unsubscribe(&r, version, is_server, out, reason);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        rc = decode_ack_list(&r, version, is_server, out, reason);
        break;
    case MQTT_DISCONNECT:
        rc = decode_disconnect(&r, version, is_server, out, reason);
        break;
    case MQTT_AUTH:
        rc = decode_auth(&r, is_server, out, reason);
        break;
    default: /* PINGREQ, PINGRESP: no content */
        rc = MQTT_OK;
        break;
    }
    if (rc != MQTT_OK)
        return rc;
    if (mqtt_rd_left(&r) != 0) /* bytes after the last field */
        return MALFORMED(reason);
    /* MQTT-1.5.5-1: in MQTT 5 the Remaining Length is a Variable Byte
     * Integer and must use the fewest bytes. MQTT 3.1.1 (2.2.3) states no
     * such rule and Mosquitto accepts longer forms, so 3.1/3.1.1 do too. */
    uint8_t v = f.type == MQTT_CONNECT ? out->connect.version : version;
    if (v == MQTT_V5 && f.header_len != 1 + mqtt_varint_size(f.remaining))
        return MALFORMED(reason);
    return MQTT_OK;
}

bool mqtt_sub_next(const struct mqtt_packet *p, uint32_t *off, struct mqtt_sub_entry *out) {
    if (p->type != MQTT_SUBSCRIBE || !p->subscribe.raw.p)
        return false;
    struct mqtt_rd r = {p->subscribe.raw.p, p->subscribe.raw.len, *off};
    uint8_t o;
    if (*off >= r.len || !mqtt_rd_bin(&r, &out->filter) || !mqtt_rd_u8(&r, &o))
        return false;
    out->qos = o & 3;
    out->no_local = o & 0x04;
    out->retain_as_published = o & 0x08;
    out->retain_handling = (o >> 4) & 3;
    *off = r.pos;
    return true;
}

bool mqtt_unsub_next(const struct mqtt_packet *p, uint32_t *off, struct mqtt_str *filter) {
    if (p->type != MQTT_UNSUBSCRIBE || !p->unsubscribe.raw.p)
        return false;
    struct mqtt_rd r = {p->unsubscribe.raw.p, p->unsubscribe.raw.len, *off};
    if (*off >= r.len || !mqtt_rd_bin(&r, filter))
        return false;
    *off = r.pos;
    return true;
}
