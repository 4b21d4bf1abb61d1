/*
 * Private declarations shared by the files of the MQTT codec (src/mqtt/).
 * Nothing here is part of the public interface in include/hato/mqtt.h.
 *
 * Reading goes through struct mqtt_rd, a bounded cursor whose helpers fail
 * (return false) instead of reading past the end; any such failure is a
 * Malformed Packet to the caller. Writing goes through struct mqtt_wr: with
 * p == NULL it only counts bytes, which lets every encoder run once to size
 * a packet and once more to write it, from the same code.
 */
#ifndef HATO_MQTT_INTERNAL_H
#define HATO_MQTT_INTERNAL_H

#include "hato/mqtt.h"

#include <string.h>

/* Bounded read cursor over p[0..len). */
struct mqtt_rd {
    const uint8_t *p;
    uint32_t len;
    uint32_t pos;
};

static inline uint32_t mqtt_rd_left(const struct mqtt_rd *r) {
    return r->len - r->pos;
}

static inline bool mqtt_rd_u8(struct mqtt_rd *r, uint8_t *v) {
    if (mqtt_rd_left(r) < 1)
        return false;
    *v = r->p[r->pos++];
    return true;
}

static inline bool mqtt_rd_u16(struct mqtt_rd *r, uint16_t *v) {
    if (mqtt_rd_left(r) < 2)
        return false;
    *v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
    r->pos += 2;
    return true;
}

static inline bool mqtt_rd_u32(struct mqtt_rd *r, uint32_t *v) {
    if (mqtt_rd_left(r) < 4)
        return false;
    const uint8_t *s = r->p + r->pos;
    *v = ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
    r->pos += 4;
    return true;
}

/* n raw bytes as a view. */
static inline bool mqtt_rd_raw(struct mqtt_rd *r, uint32_t n, struct mqtt_str *out) {
    if (mqtt_rd_left(r) < n)
        return false;
    out->p = r->p + r->pos;
    out->len = n;
    r->pos += n;
    return true;
}

/* Binary Data: two-byte length, then bytes (MQTT 5.0 1.5.6). */
static inline bool mqtt_rd_bin(struct mqtt_rd *r, struct mqtt_str *out) {
    uint16_t n;
    return mqtt_rd_u16(r, &n) && mqtt_rd_raw(r, n, out);
}

/* UTF-8 Encoded String: like binary, and well-formed per MQTT-1.5.4-1/-2. */
static inline bool mqtt_rd_str(struct mqtt_rd *r, struct mqtt_str *out) {
    return mqtt_rd_bin(r, out) && mqtt_utf8_valid(out->p, out->len);
}

/*
 * Variable Byte Integer (1.5.5): at most 4 bytes. Non-minimal encodings are
 * accepted (a receiver cannot be harmed by them).
 */
bool mqtt_rd_varint(struct mqtt_rd *r, uint32_t *v);

/* Counting or writing cursor; see the file comment. `err` records a field
 * that cannot be encoded (a string over 65535 bytes, a varint too big). */
struct mqtt_wr {
    uint8_t *p;
    size_t pos;
    bool err;
};

static inline void mqtt_wr_bytes(struct mqtt_wr *w, const void *s, size_t n) {
    if (w->p && n)
        memcpy(w->p + w->pos, s, n);
    w->pos += n;
}

static inline void mqtt_wr_u8(struct mqtt_wr *w, uint8_t v) {
    mqtt_wr_bytes(w, &v, 1);
}

static inline void mqtt_wr_u16(struct mqtt_wr *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    mqtt_wr_bytes(w, b, 2);
}

static inline void mqtt_wr_u32(struct mqtt_wr *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    mqtt_wr_bytes(w, b, 4);
}

/* Two-byte length then bytes; over 65535 bytes sets err. */
static inline void mqtt_wr_bin(struct mqtt_wr *w, struct mqtt_str s) {
    if (s.len > 0xFFFF) {
        w->err = true;
        return;
    }
    mqtt_wr_u16(w, (uint16_t)s.len);
    mqtt_wr_bytes(w, s.p, s.len);
}

void mqtt_wr_varint(struct mqtt_wr *w, uint32_t v);

/*
 * Decode the property block at r (length varint, then properties) of a
 * packet of `type` (0 for the will properties of a CONNECT) into *out,
 * validating types, values, duplicates and which properties `type` may
 * carry (MQTT 5.0 table 2-4). `is_server` is the decoding side: PUBLISH to a
 * server must not carry Subscription Identifiers (MQTT-3.3.4-6). Returns
 * MQTT_OK, or MQTT_ERR with *reason MALFORMED_PACKET or PROTOCOL_ERROR.
 */
int mqtt_props_decode(struct mqtt_rd *r, uint8_t type, bool is_server, struct mqtt_props *out,
                      uint8_t *reason);

/* Write the property block (length prefix included). Sets w->err when a
 * field cannot be encoded. */
void mqtt_props_write(struct mqtt_wr *w, const struct mqtt_props *props);

/* True when props would encode as an empty block (a single 0 byte). */
bool mqtt_props_empty(const struct mqtt_props *props);

#endif
