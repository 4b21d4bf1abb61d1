/*
 * Variable Byte Integers (MQTT 5.0 1.5.5, 3.1.1 2.2.3) and the fixed header.
 */
#include "internal.h"

bool mqtt_rd_varint(struct mqtt_rd *r, uint32_t *v) {
    uint32_t val = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;
        if (!mqtt_rd_u8(r, &b))
            return false;
        val |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *v = val;
            return true;
        }
    }
    return false; /* a fifth byte would be needed: malformed */
}

size_t mqtt_varint_size(uint32_t v) {
    if (v < 128u)
        return 1;
    if (v < 16384u)
        return 2;
    if (v < 2097152u)
        return 3;
    if (v <= MQTT_MAX_REMAINING_LENGTH)
        return 4;
    return 0;
}

void mqtt_wr_varint(struct mqtt_wr *w, uint32_t v) {
    if (v > MQTT_MAX_REMAINING_LENGTH) {
        w->err = true;
        return;
    }
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (v)
            b |= 0x80;
        mqtt_wr_u8(w, b);
    } while (v);
}

int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_size, struct mqtt_frame *frame,
                     uint8_t *reason) {
    uint8_t dummy;
    if (!reason)
        reason = &dummy;
    if (len < 2)
        return MQTT_AGAIN;
    uint32_t rem = 0;
    unsigned i;
    for (i = 0; i < 4; i++) {
        if (1 + (size_t)i >= len)
            return MQTT_AGAIN;
        uint8_t b = buf[1 + i];
        rem |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    if (i == 4) {
        /* The fourth length byte has its continuation bit set (MQTT-1.5.5). */
        *reason = MQTT_RC_MALFORMED_PACKET;
        return MQTT_ERR;
    }
    frame->type = buf[0] >> 4;
    frame->flags = buf[0] & 0x0F;
    frame->remaining = rem;
    frame->header_len = 2 + i;
    frame->total = frame->header_len + rem;
    if (max_size && frame->total > max_size) {
        *reason = MQTT_RC_PACKET_TOO_LARGE;
        return MQTT_ERR;
    }
    return MQTT_OK;
}
