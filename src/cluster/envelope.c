/* The cluster's message envelope (envelope.h). */
#include "cluster/envelope.h"

#include <string.h>

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

size_t cl_env_size(const struct cl_env *e) {
    return CL_ENV_FIXED + 2 + e->topic_len + 4 + e->props_len + e->payload_len;
}

size_t cl_env_encode(const struct cl_env *e, uint8_t *out, size_t cap) {
    size_t n = cl_env_size(e);
    if (cap < n || e->qos > 2)
        return 0;
    out[0] = CL_ENV_VERSION;
    out[1] = (uint8_t)(e->qos | (e->retain ? 4 : 0) | (e->via_bridge ? 8 : 0));
    put64(out + 2, e->origin);
    put64(out + 10, e->seq);
    put64(out + 18, e->publisher);
    put64(out + 26, (uint64_t)e->sent_ms);
    put64(out + 34, (uint64_t)e->expiry_at);
    uint8_t *p = out + CL_ENV_FIXED;
    *p++ = (uint8_t)(e->topic_len >> 8);
    *p++ = (uint8_t)e->topic_len;
    if (e->topic_len)
        memcpy(p, e->topic, e->topic_len);
    p += e->topic_len;
    *p++ = (uint8_t)(e->props_len >> 24);
    *p++ = (uint8_t)(e->props_len >> 16);
    *p++ = (uint8_t)(e->props_len >> 8);
    *p++ = (uint8_t)e->props_len;
    if (e->props_len)
        memcpy(p, e->props, e->props_len);
    p += e->props_len;
    if (e->payload_len)
        memcpy(p, e->payload, e->payload_len);
    return n;
}

int cl_env_decode(const uint8_t *buf, size_t len, struct cl_env *e, const char **why) {
    memset(e, 0, sizeof(*e));
    if (len < CL_ENV_FIXED + 6) {
        *why = "shorter than an envelope";
        return -1;
    }
    if (buf[0] != CL_ENV_VERSION) {
        *why = "unknown envelope version";
        return -1;
    }
    uint8_t f = buf[1];
    if ((f & 3) == 3 || (f & 0xF0)) {
        *why = "bad flags";
        return -1;
    }
    e->qos = f & 3;
    e->retain = f & 4;
    e->via_bridge = f & 8;
    e->origin = get64(buf + 2);
    e->seq = get64(buf + 10);
    e->publisher = get64(buf + 18);
    e->sent_ms = (int64_t)get64(buf + 26);
    e->expiry_at = (int64_t)get64(buf + 34);
    size_t off = CL_ENV_FIXED;
    e->topic_len = (uint16_t)(buf[off] << 8 | buf[off + 1]);
    off += 2;
    if (e->topic_len == 0 || len - off < (size_t)e->topic_len + 4) {
        *why = "bad topic length";
        return -1;
    }
    e->topic = buf + off;
    off += e->topic_len;
    e->props_len = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
                   (uint32_t)buf[off + 2] << 8 | buf[off + 3];
    off += 4;
    if (e->props_len > len - off) {
        *why = "bad properties length";
        return -1;
    }
    e->props = buf + off;
    off += e->props_len;
    e->payload = buf + off;
    e->payload_len = len - off;
    return 0;
}
