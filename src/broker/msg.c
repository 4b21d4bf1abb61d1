#include "broker/msg.h"

#include "base/zero.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local atomic_llong *tally_count, *tally_bytes;
static atomic_llong other_count, other_bytes;

void msg_tally_thread(atomic_llong *count, atomic_llong *bytes) {
    tally_count = count;
    tally_bytes = bytes;
}

void msg_tally_other(long long *count, long long *bytes) {
    *count = atomic_load_explicit(&other_count, memory_order_relaxed);
    *bytes = atomic_load_explicit(&other_bytes, memory_order_relaxed);
}

/* Plain load and store on the thread's own counters: no locked instruction. */
static void tally(long long n, long long bytes) {
    if (tally_count) {
        atomic_store_explicit(tally_count,
                              atomic_load_explicit(tally_count, memory_order_relaxed) + n,
                              memory_order_relaxed);
        atomic_store_explicit(tally_bytes,
                              atomic_load_explicit(tally_bytes, memory_order_relaxed) + bytes,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&other_count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&other_bytes, bytes, memory_order_relaxed);
    }
}

int64_t msg_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy a view into the allocation at *cur and return the new view. */
static struct mqtt_str put(uint8_t **cur, struct mqtt_str s) {
    struct mqtt_str out = {*cur, s.len};
    if (s.len)
        memcpy(*cur, s.p, s.len);
    *cur += s.len;
    return out;
}

struct msg *msg_new(const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len,
                    uint8_t qos, bool retain, const struct mqtt_props *props,
                    uint32_t expiry_interval, const void *origin) {
    static const uint64_t forward =
        MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
        MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) |
        MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
    if (topic_len > UINT16_MAX || payload_len > UINT32_MAX)
        return NULL;
    size_t user_len = 0, extra = 0;
    size_t wire_len = mqtt_props_copy_entries(props, forward, NULL, 0);
    if (props) {
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY))
            user_len = mqtt_user_props_collect(props, NULL, 0);
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE))
            extra += props->content_type.len;
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC))
            extra += props->response_topic.len;
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA))
            extra += props->correlation_data.len;
    }
    struct msg *m = malloc(sizeof(*m) + topic_len + 1 + payload_len + user_len + extra + wire_len);
    if (!m)
        return NULL;
    base_zero(m, sizeof(*m)); /* a call to libc, not a `rep stos` (base/zero.h) */
    atomic_init(&m->refs, 1);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->origin = origin;
    if (expiry_interval)
        m->expiry_at = msg_now_ms() + (int64_t)expiry_interval * 1000;
    uint8_t *cur = (uint8_t *)(m + 1);
    memcpy(cur, topic, topic_len);
    cur[topic_len] = 0;
    m->topic = (const char *)cur;
    cur += topic_len + 1;
    m->payload = cur;
    if (payload_len)
        memcpy(cur, payload, payload_len);
    cur += payload_len;
    tally(1, (long long)payload_len);
    if (props) {
        m->props.present = props->present & forward;
        m->props.payload_format = props->payload_format;
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE))
            m->props.content_type = put(&cur, props->content_type);
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC))
            m->props.response_topic = put(&cur, props->response_topic);
        if (props->present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA))
            m->props.correlation_data = put(&cur, props->correlation_data);
        if (user_len) {
            mqtt_user_props_collect(props, cur, user_len);
            m->props.user_props.p = cur;
            m->props.user_props.len = (uint32_t)user_len;
            cur += user_len;
        }
        if (wire_len) {
            mqtt_props_copy_entries(props, forward, cur, wire_len);
            m->wire_props = (struct mqtt_str){cur, (uint32_t)wire_len};
        }
    }
    return m;
}

int msg_set_source(struct msg *m, const char *id, size_t idlen, const char *user, size_t userlen,
                   const struct hato_listener *lcfg) {
    struct msg_source *x = malloc(sizeof(*x) + idlen + 1 + (user ? userlen + 1 : 0));
    if (!x)
        return -1;
    x->lcfg = lcfg;
    memcpy(x->id, id, idlen);
    x->id[idlen] = 0;
    x->user = NULL;
    if (user) {
        char *u = x->id + idlen + 1;
        memcpy(u, user, userlen);
        u[userlen] = 0;
        x->user = u;
    }
    free(m->src);
    m->src = x;
    return 0;
}

void msg_unref(struct msg *m) {
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        tally(-1, -(long long)m->payload_len);
        free(m->src);
        free(m);
    }
}

int64_t msg_remaining_expiry(const struct msg *m, int64_t now_ms) {
    if (!m->expiry_at)
        return -1;
    int64_t left = m->expiry_at - now_ms;
    if (left <= 0)
        return 0;
    return (left + 999) / 1000;
}
