/*
 * Encoding of every control packet for MQTT 3.1, 3.1.1 and 5.0.
 *
 * Each packet body is produced by one function run twice: first with a
 * counting writer to learn the remaining length (and so the total size),
 * then, only when the caller's buffer is large enough, for real. Fields the
 * target version lacks (properties, reason codes before 5.0) are left out.
 */
#include "internal.h"

static void wr_props(struct mqtt_wr *w, const struct mqtt_props *props) {
    mqtt_props_write(w, props);
}

static void body_connect(struct mqtt_wr *w, uint8_t version, const struct mqtt_packet *p) {
    static const uint8_t mqisdp[] = "MQIsdp", mqtt[] = "MQTT";
    struct mqtt_str name =
        version == MQTT_V31 ? (struct mqtt_str){mqisdp, 6} : (struct mqtt_str){mqtt, 4};
    uint8_t cf = 0;
    if (p->connect.clean)
        cf |= 0x02;
    if (p->connect.will) {
        if (p->connect.will_qos > 2) {
            w->err = true;
            return;
        }
        cf |= 0x04 | (uint8_t)(p->connect.will_qos << 3);
        if (p->connect.will_retain)
            cf |= 0x20;
    }
    if (p->connect.has_password)
        cf |= 0x40;
    if (p->connect.has_username)
        cf |= 0x80;
    mqtt_wr_bin(w, name);
    /* Mosquitto's bridge marker (try_private), 3.x only. */
    mqtt_wr_u8(w, p->connect.bridge && version != MQTT_V5 ? (uint8_t)(version | 0x80) : version);
    mqtt_wr_u8(w, cf);
    mqtt_wr_u16(w, p->connect.keep_alive);
    if (version == MQTT_V5)
        wr_props(w, &p->props);
    mqtt_wr_bin(w, p->connect.client_id);
    if (p->connect.will) {
        if (version == MQTT_V5)
            wr_props(w, &p->connect.will_props);
        mqtt_wr_bin(w, p->connect.will_topic);
        mqtt_wr_bin(w, p->connect.will_payload);
    }
    if (p->connect.has_username)
        mqtt_wr_bin(w, p->connect.username);
    if (p->connect.has_password)
        mqtt_wr_bin(w, p->connect.password);
}

static void body_publish(struct mqtt_wr *w, uint8_t version, const struct mqtt_packet *p,
                         bool with_payload) {
    mqtt_wr_bin(w, p->publish.topic);
    if (p->publish.qos > 0)
        mqtt_wr_u16(w, p->packet_id);
    if (version == MQTT_V5)
        wr_props(w, &p->props);
    if (with_payload)
        mqtt_wr_bytes(w, p->publish.payload.p, p->publish.payload.len);
}

static void body_subscribe(struct mqtt_wr *w, uint8_t version, const struct mqtt_packet *p) {
    mqtt_wr_u16(w, p->packet_id);
    if (version == MQTT_V5)
        wr_props(w, &p->props);
    if (!p->subscribe.list) { /* re-encoding a decoded packet: same version */
        mqtt_wr_bytes(w, p->subscribe.raw.p, p->subscribe.raw.len);
        return;
    }
    for (uint32_t i = 0; i < p->subscribe.count; i++) {
        const struct mqtt_sub_entry *e = &p->subscribe.list[i];
        if (e->qos > 2 || e->retain_handling > 2) {
            w->err = true;
            return;
        }
        uint8_t o = e->qos;
        if (version == MQTT_V5)
            o |= (uint8_t)((e->no_local ? 0x04 : 0) | (e->retain_as_published ? 0x08 : 0) |
                           (e->retain_handling << 4));
        mqtt_wr_bin(w, e->filter);
        mqtt_wr_u8(w, o);
    }
}

static void body_unsubscribe(struct mqtt_wr *w, uint8_t version, const struct mqtt_packet *p) {
    mqtt_wr_u16(w, p->packet_id);
    if (version == MQTT_V5)
        wr_props(w, &p->props);
    if (!p->unsubscribe.list) {
        mqtt_wr_bytes(w, p->unsubscribe.raw.p, p->unsubscribe.raw.len);
        return;
    }
    for (uint32_t i = 0; i < p->unsubscribe.count; i++)
        mqtt_wr_bin(w, p->unsubscribe.list[i]);
}

/*
 * Reason code and properties of MQTT 5 PUBACK..PUBCOMP, DISCONNECT and AUTH:
 * both omitted for Success without properties; the property length alone
 * omitted when there are none, except for AUTH whose property length always
 * follows its reason code (3.15.2.2.1).
 */
static void reason_and_props(struct mqtt_wr *w, const struct mqtt_packet *p) {
    bool empty = mqtt_props_empty(&p->props);
    if (p->reason == 0 && empty)
        return;
    mqtt_wr_u8(w, p->reason);
    if (!empty || p->type == MQTT_AUTH)
        wr_props(w, &p->props);
}

static void body(struct mqtt_wr *w, uint8_t version, const struct mqtt_packet *p,
                 bool with_payload) {
    bool v5 = version == MQTT_V5;
    switch (p->type) {
    case MQTT_CONNECT:
        body_connect(w, version, p);
        break;
    case MQTT_CONNACK:
        mqtt_wr_u8(w, p->connack.session_present ? 1 : 0);
        mqtt_wr_u8(w, p->reason);
        if (v5)
            wr_props(w, &p->props);
        break;
    case MQTT_PUBLISH:
        body_publish(w, version, p, with_payload);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        mqtt_wr_u16(w, p->packet_id);
        if (v5)
            reason_and_props(w, p);
        break;
    case MQTT_SUBSCRIBE:
        body_subscribe(w, version, p);
        break;
    case MQTT_UNSUBSCRIBE:
        body_unsubscribe(w, version, p);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        mqtt_wr_u16(w, p->packet_id);
        if (p->type == MQTT_UNSUBACK && !v5)
            break;
        if (v5)
            wr_props(w, &p->props);
        mqtt_wr_bytes(w, p->ack_list.codes, p->ack_list.count);
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        if (v5)
            reason_and_props(w, p);
        break;
    default: /* PINGREQ, PINGRESP */
        break;
    }
}

static uint8_t first_byte(const struct mqtt_packet *p) {
    uint8_t flags = 0;
    switch (p->type) {
    case MQTT_PUBLISH:
        flags = (uint8_t)((p->publish.dup ? 0x08 : 0) | (p->publish.qos << 1) |
                          (p->publish.retain ? 0x01 : 0));
        break;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        flags = 0x02;
        break;
    default:
        break;
    }
    return (uint8_t)(p->type << 4) | flags;
}

/*
 * Shared by mqtt_encode and mqtt_encode_publish_head. `with_payload` false
 * leaves the PUBLISH payload out of the bytes written and of the returned
 * size, but not out of the remaining length.
 */
static size_t encode(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_packet *p,
                     bool with_payload) {
    if (version < MQTT_V31 || version > MQTT_V5 || p->type < MQTT_CONNECT || p->type > MQTT_AUTH)
        return 0;
    if (p->type == MQTT_AUTH && version != MQTT_V5)
        return 0; /* AUTH exists only in MQTT 5 */
    if (p->type == MQTT_PUBLISH && p->publish.qos > 2)
        return 0;
    struct mqtt_wr cw = {0};
    body(&cw, version, p, with_payload);
    if (cw.err)
        return 0;
    size_t rem = cw.pos;
    if (!with_payload)
        rem += p->publish.payload.len;
    if (rem > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t total = 1 + mqtt_varint_size((uint32_t)rem) + cw.pos;
    if (!buf || cap < total)
        return total;
    struct mqtt_wr w = {buf, 0, false};
    mqtt_wr_u8(&w, first_byte(p));
    mqtt_wr_varint(&w, (uint32_t)rem);
    body(&w, version, p, with_payload);
    return total;
}

size_t mqtt_encode(uint8_t *buf, size_t cap, uint8_t version, const struct mqtt_packet *p) {
    return encode(buf, cap, version, p, true);
}

size_t mqtt_encode_publish_head(uint8_t *buf, size_t cap, uint8_t version,
                                const struct mqtt_packet *p) {
    if (p->type != MQTT_PUBLISH)
        return 0;
    return encode(buf, cap, version, p, false);
}

size_t mqtt_encode_publish_plain(uint8_t *buf, size_t cap, uint8_t version, const char *topic,
                                 size_t topic_len, uint8_t qos, bool retain, bool dup,
                                 uint16_t packet_id, size_t payload_len) {
    if (version < MQTT_V31 || version > MQTT_V5 || qos > 2 || topic_len > 0xFFFF)
        return 0;
    size_t vh = 2 + topic_len + (qos ? 2 : 0) + (version == MQTT_V5 ? 1 : 0);
    if (vh + payload_len > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    uint32_t rem = (uint32_t)(vh + payload_len);
    size_t total = 1 + mqtt_varint_size(rem) + vh;
    if (!buf || cap < total)
        return total;
    struct mqtt_wr w = {buf, 0, false};
    mqtt_wr_u8(&w, (uint8_t)(MQTT_PUBLISH << 4 | (dup ? 8 : 0) | qos << 1 | (retain ? 1 : 0)));
    mqtt_wr_varint(&w, rem);
    mqtt_wr_u16(&w, (uint16_t)topic_len);
    mqtt_wr_bytes(&w, topic, topic_len);
    if (qos)
        mqtt_wr_u16(&w, packet_id);
    if (version == MQTT_V5)
        mqtt_wr_u8(&w, 0); /* property length: none */
    return total;
}
