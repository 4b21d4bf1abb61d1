/*
 * libFuzzer target for the MQTT decoder. Every input is framed and decoded
 * for each protocol level (0 = before CONNECT, 3, 4, 5) and both sides. What
 * decodes is walked with the iterators and re-encoded; the re-encoding must
 * decode again and re-encode to the same bytes (encode . decode is a fixed
 * point), which checks encoder and decoder against each other.
 */
// Build and run (from the repository root):
//   clang -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//       src/mqtt/*.c tests/fuzz/fuzz_mqtt_decode.c -o /tmp/fuzz_dec
//   /tmp/fuzz_dec -dict=tests/fuzz/mqtt.dict tests/fuzz/corpus/mqtt_decode
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hato/mqtt.h"
#include "check.h"

static uint8_t enc1[1 << 17], enc2[1 << 17];

static void walk(const struct mqtt_packet *p) {
    uint32_t off = 0, n = 0;
    struct mqtt_str k, v;
    while (mqtt_user_prop_next(&p->props, &off, &k, &v))
        CHECK(mqtt_utf8_valid(k.p, k.len) && mqtt_utf8_valid(v.p, v.len));
    size_t need = mqtt_user_props_collect(&p->props, NULL, 0);
    (void)need;
    if (p->type == MQTT_SUBSCRIBE) {
        struct mqtt_sub_entry e;
        off = 0;
        while (mqtt_sub_next(p, &off, &e)) {
            CHECK(mqtt_topic_filter_valid(e.filter.p, e.filter.len));
            CHECK(e.qos <= 2 && e.retain_handling <= 2);
            n++;
        }
        CHECK(n == p->subscribe.count && n > 0);
    } else if (p->type == MQTT_UNSUBSCRIBE) {
        struct mqtt_str f;
        off = 0;
        while (mqtt_unsub_next(p, &off, &f)) {
            CHECK(mqtt_topic_filter_valid(f.p, f.len));
            n++;
        }
        CHECK(n == p->unsubscribe.count && n > 0);
    } else if (p->type == MQTT_PUBLISH && p->publish.topic.len > 0) {
        /* A valid name matches itself as a filter, and "#" unless it is a $-topic. */
        const struct mqtt_str t = p->publish.topic;
        CHECK(mqtt_topic_match(t.p, t.len, t.p, t.len));
        CHECK(mqtt_topic_match((const uint8_t *)"#", 1, t.p, t.len) == (t.p[0] != '$'));
    }
}

static void one(const uint8_t *data, size_t size, uint8_t version, bool is_server) {
    struct mqtt_frame f;
    uint8_t reason;
    int fr = mqtt_frame_parse(data, size, 0, &f, &reason);
    struct mqtt_packet p;
    int rc = mqtt_decode(data, size, version, is_server, &p, &reason);
    if (rc != MQTT_OK) {
        CHECK(rc == MQTT_ERR && reason >= 0x80);
        return;
    }
    CHECK(fr == MQTT_OK && f.total == size);
    walk(&p);
    uint8_t ver = p.type == MQTT_CONNECT ? p.connect.version : version;
    size_t n1 = mqtt_encode(NULL, 0, ver, &p);
    if (n1 == 0) {
        /* Only more subscription ids than were stored can prevent it. */
        CHECK(p.props.sub_id_count > MQTT_MAX_SUB_IDS);
        return;
    }
    CHECK(n1 <= sizeof enc1 && n1 <= size + 16);
    CHECK(mqtt_encode(enc1, n1, ver, &p) == n1);
    if (p.type == MQTT_PUBLISH) {
        size_t h = mqtt_encode_publish_head(enc2, sizeof enc2, ver, &p);
        CHECK(h + p.publish.payload.len == n1 && memcmp(enc1, enc2, h) == 0);
    }
    struct mqtt_packet q;
    rc = mqtt_decode(enc1, n1, version, is_server, &q, &reason);
    CHECK(rc == MQTT_OK);
    CHECK(q.type == p.type && q.packet_id == p.packet_id && q.reason == p.reason);
    size_t n2 = mqtt_encode(enc2, sizeof enc2, ver, &q);
    CHECK(n2 == n1 && memcmp(enc1, enc2, n1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint8_t versions[] = {0, MQTT_V31, MQTT_V311, MQTT_V5};
    if (size > (1 << 16))
        return 0;
    for (size_t i = 0; i < sizeof versions; i++) {
        one(data, size, versions[i], true);
        one(data, size, versions[i], false);
    }
    return 0;
}
