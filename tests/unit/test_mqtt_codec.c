/*
 * Unit tests of the MQTT codec: framing, decoding and validation of every
 * packet type in MQTT 3.1, 3.1.1 and 5.0, encoding and round trips. Test
 * names and comments cite the normative statements they check
 * (MQTT-x.y.z-n of the 3.1.1 and 5.0 specifications).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hato/mqtt.h"

#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static struct mqtt_str S(const char *s) {
    return (struct mqtt_str){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static bool
str_is(struct mqtt_str s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* ---- packet builder: body bytes, then a fixed header around them ---- */

struct bld {
    uint8_t d[70000];
    size_t n;
};

static void b_u8(struct bld *b, uint8_t v) {
    b->d[b->n++] = v;
}
static void b_u16(struct bld *b, uint16_t v) {
    b_u8(b, (uint8_t)(v >> 8));
    b_u8(b, (uint8_t)v);
}
static void b_raw(struct bld *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void b_str(struct bld *b, const char *s) {
    b_u16(b, (uint16_t)strlen(s));
    b_raw(b, s, strlen(s));
}

/* The packet last framed; decoded views point into it. */
static uint8_t g_pkt[70010];
static size_t g_len;

static void frame(uint8_t first, const uint8_t *body, size_t n) {
    size_t i = 0;
    g_pkt[i++] = first;
    size_t v = n;
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        g_pkt[i++] = v ? (c | 0x80) : c;
    } while (v);
    memcpy(g_pkt + i, body, n);
    g_len = i + n;
}

/* Frame `body` behind `first`, decode it and check the result; failures
 * are reported at the caller's `line`. */
static void check_body_at(uint8_t first, const uint8_t *body, size_t n, uint8_t ver, bool srv,
                          int want_rc, struct mqtt_packet *out, int line) {
    struct mqtt_packet tmp;
    uint8_t reason = 0xEE;
    frame(first, body, n);
    int rc = mqtt_decode(g_pkt, g_len, ver, srv, out ? out : &tmp, &reason);
    if (want_rc == 0) {
        if (rc != MQTT_OK)
            print_error("expected OK, got reason 0x%02x\n", reason);
        _assert_int_equal(rc, MQTT_OK, __FILE__, line);
    } else {
        _assert_int_equal(rc, MQTT_ERR, __FILE__, line);
        _assert_int_equal(reason, want_rc, __FILE__, line);
    }
}
#define check_body(...) check_body_at(__VA_ARGS__, __LINE__)

#define OK 0
#define MAL MQTT_RC_MALFORMED_PACKET
#define PROTO MQTT_RC_PROTOCOL_ERROR
/* CHECK(first byte, version, is_server, expected reason or OK, body bytes...) */
#define CHECK(first, ver, srv, want, ...)                                                          \
    check_body(first, BYTES(__VA_ARGS__), ver, srv, want, NULL)
#define CHECKB(first, b, ver, srv, want, out) check_body(first, (b)->d, (b)->n, ver, srv, want, out)

/* ---- framing ---- */

static void test_frame_again(void **state) {
    (void)state;
    struct mqtt_frame f;
    uint8_t rc = 0;
    assert_int_equal(mqtt_frame_parse(BYTES(0x30), 0, &f, &rc), MQTT_AGAIN);
    assert_int_equal(mqtt_frame_parse((const uint8_t *)"", 0, 0, &f, &rc), MQTT_AGAIN);
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0x80), 0, &f, &rc), MQTT_AGAIN);
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xFF, 0xFF, 0xFF), 0, &f, &rc), MQTT_AGAIN);
    /* The header is complete even though the body is not. */
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0x05, 0x00), 0, &f, &rc), MQTT_OK);
    assert_int_equal(f.total, 7);
}

/* MQTT-1.5.5 / 3.1.1 2.2.3: boundary encodings of the remaining length. */
static void test_frame_remaining_length_boundaries(void **state) {
    (void)state;
    static const struct {
        uint8_t enc[4];
        uint32_t n, value;
    } cases[] = {
        {{0x00}, 1, 0},
        {{0x7F}, 1, 127},
        {{0x80, 0x01}, 2, 128},
        {{0xFF, 0x7F}, 2, 16383},
        {{0x80, 0x80, 0x01}, 3, 16384},
        {{0xFF, 0xFF, 0x7F}, 3, 2097151},
        {{0x80, 0x80, 0x80, 0x01}, 4, 2097152},
        {{0xFF, 0xFF, 0xFF, 0x7F}, 4, 268435455},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[5] = {0x30};
        memcpy(buf + 1, cases[i].enc, cases[i].n);
        struct mqtt_frame f;
        uint8_t rc;
        assert_int_equal(mqtt_frame_parse(buf, 1 + cases[i].n, 0, &f, &rc), MQTT_OK);
        assert_int_equal(f.remaining, cases[i].value);
        assert_int_equal(f.header_len, 1 + cases[i].n);
        assert_int_equal(f.total, 1 + cases[i].n + cases[i].value);
        assert_int_equal(f.type, MQTT_PUBLISH);
        assert_int_equal(mqtt_varint_size(cases[i].value), cases[i].n);
    }
    assert_int_equal(mqtt_varint_size(268435456u), 0);
}

/* MQTT-1.5.5: at most four bytes; a fifth is malformed. */
static void test_frame_five_byte_length_rejected(void **state) {
    (void)state;
    struct mqtt_frame f;
    uint8_t rc = 0;
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), 0, &f, &rc),
                     MQTT_ERR);
    assert_int_equal(rc, MAL);
    rc = 0;
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), 0, &f, &rc),
                     MQTT_ERR);
    assert_int_equal(rc, MAL);
    /* Rejected as soon as the fourth byte is seen, before any fifth. */
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0x80, 0x80, 0x80, 0x80), 0, &f, &rc), MQTT_ERR);
    /* And mqtt_decode rejects the same. */
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x80, 0x80, 0x80, 0x80, 0x00), 4, true, &p, &rc),
                     MQTT_ERR);
    assert_int_equal(rc, MAL);
}

static void test_frame_non_minimal_length_accepted(void **state) {
    (void)state;
    struct mqtt_frame f;
    uint8_t rc;
    assert_int_equal(mqtt_frame_parse(BYTES(0xC0, 0x80, 0x00), 0, &f, &rc), MQTT_OK);
    assert_int_equal(f.remaining, 0);
    assert_int_equal(f.header_len, 3);
}

static void test_frame_max_size(void **state) {
    (void)state;
    struct mqtt_frame f;
    uint8_t rc = 0;
    /* total 2 + 200 = 202 > 100: refused before the body arrives. */
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xC8, 0x01), 100, &f, &rc), MQTT_ERR);
    assert_int_equal(rc, MQTT_RC_PACKET_TOO_LARGE);
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xC8, 0x01), 203, &f, &rc), MQTT_OK);
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xC8, 0x01), 202, &f, &rc), MQTT_ERR);
    assert_int_equal(mqtt_frame_parse(BYTES(0x30, 0xC8, 0x01), 201, &f, &rc), MQTT_ERR);
}

/* A decode length that is not exactly the frame's total is malformed. */
static void test_decode_length_mismatch(void **state) {
    (void)state;
    struct mqtt_packet p;
    uint8_t rc;
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x00, 0x00), 4, true, &p, &rc), MQTT_ERR);
    assert_int_equal(rc, MAL);
    assert_int_equal(mqtt_decode(BYTES(0x62, 0x02, 0x00), 4, true, &p, &rc), MQTT_ERR);
    assert_int_equal(rc, MAL);
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x00), 4, true, &p, NULL), MQTT_OK);
}

/* mqtt_decode_frame (the read loop's: the frame parsed once) decodes as
 * mqtt_decode does, and refuses what it refuses. */
static void test_decode_frame_same_as_decode(void **state) {
    (void)state;
    /* PUBLISH QoS 1 "a/b" id 7 "hi" (3.1.1), then the same in MQTT 5 with a
     * message expiry of 9, then a PINGREQ; and a PUBLISH with a '+'. */
    static const uint8_t v4[] = {0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 'h', 'i'};
    static const uint8_t v5[] = {0x32, 0x0F, 0x00, 0x03, 'a',  '/',  'b', 0x00, 0x07,
                                 0x05, 0x02, 0x00, 0x00, 0x00, 0x09, 'h', 'i'};
    static const uint8_t ping[] = {0xC0, 0x00};
    static const uint8_t bad[] = {0x30, 0x05, 0x00, 0x03, 'a', '/', '+'};
    const struct {
        const uint8_t *b;
        size_t n;
        uint8_t version;
    } cases[] = {{v4, sizeof v4, MQTT_V311},
                 {v5, sizeof v5, MQTT_V5},
                 {ping, sizeof ping, MQTT_V311},
                 {bad, sizeof bad, MQTT_V311}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mqtt_frame f;
        struct mqtt_packet a, b;
        uint8_t ra = 0xEE, rb = 0xEE;
        assert_int_equal(mqtt_frame_parse(cases[i].b, cases[i].n, 0, &f, NULL), MQTT_OK);
        int x = mqtt_decode(cases[i].b, cases[i].n, cases[i].version, true, &a, &ra);
        int y = mqtt_decode_frame(cases[i].b, &f, cases[i].version, true, &b, &rb);
        assert_int_equal(x, y);
        assert_int_equal(x, i == 3 ? MQTT_ERR : MQTT_OK);
        assert_int_equal(ra, rb);
        assert_int_equal(a.type, b.type);
        assert_int_equal(a.flags, b.flags);
        if (x != MQTT_OK || a.type != MQTT_PUBLISH)
            continue;
        assert_int_equal(a.packet_id, 7);
        assert_int_equal(b.packet_id, 7);
        assert_int_equal(b.publish.qos, 1);
        assert_int_equal(b.publish.topic.len, 3);
        assert_memory_equal(b.publish.topic.p, "a/b", 3);
        assert_int_equal(b.publish.payload.len, 2);
        assert_memory_equal(b.publish.payload.p, "hi", 2);
        assert_true(a.props.present == b.props.present);
        assert_int_equal(a.props.message_expiry, b.props.message_expiry);
    }
    assert_int_equal(mqtt_decode(bad, sizeof bad, MQTT_V311, true, &(struct mqtt_packet){0}, NULL),
                     MQTT_ERR);
}

/* ---- CONNECT ---- */

/* CONNECT variable header for name/level/flags, keep alive 60. */
static void connect_head(struct bld *b, const char *name, uint8_t level, uint8_t flags) {
    b->n = 0;
    b_str(b, name);
    b_u8(b, level);
    b_u8(b, flags);
    b_u16(b, 60);
}

static void test_connect_valid_all_versions(void **state) {
    (void)state;
    static struct bld b;
    struct mqtt_packet p;
    /* 3.1: will QoS 1 retained, user name and password. */
    connect_head(&b, "MQIsdp", 3, 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02);
    b_str(&b, "cid");
    b_str(&b, "will/t");
    b_str(&b, "bye");
    b_str(&b, "user");
    b_str(&b, "pw");
    CHECKB(0x10, &b, 0, true, OK, &p);
    assert_int_equal(p.type, MQTT_CONNECT);
    assert_int_equal(p.connect.version, MQTT_V31);
    assert_true(p.connect.clean && p.connect.will && p.connect.will_retain);
    assert_int_equal(p.connect.will_qos, 1);
    assert_int_equal(p.connect.keep_alive, 60);
    assert_true(str_is(p.connect.client_id, "cid"));
    assert_true(str_is(p.connect.will_topic, "will/t"));
    assert_true(str_is(p.connect.will_payload, "bye"));
    assert_true(p.connect.has_username && str_is(p.connect.username, "user"));
    assert_true(p.connect.has_password && str_is(p.connect.password, "pw"));

    /* 3.1.1, minimal. */
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, OK, &p);
    assert_int_equal(p.connect.version, MQTT_V311);
    assert_false(p.connect.will || p.connect.has_username || p.connect.has_password);

    /* 5.0 with properties and will properties. */
    connect_head(&b, "MQTT", 5, 0x04 | 0x02);
    b_u8(&b, 5); /* property length */
    b_u8(&b, MQTT_PROP_SESSION_EXPIRY);
    b_u16(&b, 0);
    b_u16(&b, 300);
    b_str(&b, "c5");
    b_u8(&b, 5);
    b_u8(&b, MQTT_PROP_WILL_DELAY);
    b_u16(&b, 0);
    b_u16(&b, 10);
    b_str(&b, "w");
    b_str(&b, "");
    CHECKB(0x10, &b, 0, true, OK, &p);
    assert_int_equal(p.connect.version, MQTT_V5);
    assert_true(p.props.present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(p.props.session_expiry, 300);
    assert_int_equal(p.connect.will_props.will_delay, 10);
    assert_int_equal(p.connect.will_payload.len, 0); /* zero-length will payload */

    /* A second CONNECT (version already known) still decodes: the broker
     * decides what to do with it. */
    CHECKB(0x10, &b, MQTT_V311, true, OK, &p);
    assert_int_equal(p.connect.version, MQTT_V5);
}

/* MQTT-3.1.2-1: a protocol name other than MQTT / MQIsdp. */
static void test_connect_bad_protocol_name(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTX", 4, 0x02);
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    connect_head(&b, "mqtt", 4, 0x02);
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
}

/* MQTT-3.1.2-2: known name, unsupported level: report the level found. */
static void test_connect_unsupported_level(void **state) {
    (void)state;
    static struct bld b;
    struct mqtt_packet p;
    uint8_t rc;
    const struct {
        const char *name;
        uint8_t level;
    } cases[] = {{"MQTT", 6},    {"MQTT", 3},    {"MQIsdp", 4},    {"MQTT", 0},
                 {"MQTT", 0x85}, {"MQTT", 0x83}, {"MQIsdp", 0x84}, {"MQTT", 0xC4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        connect_head(&b, cases[i].name, cases[i].level, 0x02);
        b_str(&b, "c");
        frame(0x10, b.d, b.n);
        assert_int_equal(mqtt_decode(g_pkt, g_len, 0, true, &p, &rc), MQTT_ERR);
        assert_int_equal(rc, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
        assert_int_equal(p.connect.version, cases[i].level);
        assert_int_equal(p.type, MQTT_CONNECT);
    }
}

/* Mosquitto's bridge marker (try_private): "MQIsdp" 0x83 and "MQTT" 0x84
 * are 3.1 / 3.1.1 from a bridge; encoding puts the bit back. */
static void test_connect_bridge_level(void **state) {
    (void)state;
    static struct bld b;
    struct mqtt_packet p;
    const struct {
        const char *name;
        uint8_t level, version;
    } cases[] = {{"MQIsdp", 0x83, MQTT_V31}, {"MQTT", 0x84, MQTT_V311}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        connect_head(&b, cases[i].name, cases[i].level, 0x02);
        b_str(&b, "c");
        frame(0x10, b.d, b.n);
        assert_int_equal(mqtt_decode(g_pkt, g_len, 0, true, &p, NULL), MQTT_OK);
        assert_int_equal(p.connect.version, cases[i].version);
        assert_true(p.connect.bridge);
        uint8_t out[64];
        size_t n = mqtt_encode(out, sizeof out, cases[i].version, &p);
        assert_int_equal(n, g_len);
        assert_memory_equal(out, g_pkt, n);
    }
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "c");
    frame(0x10, b.d, b.n);
    assert_int_equal(mqtt_decode(g_pkt, g_len, 0, true, &p, NULL), MQTT_OK);
    assert_false(p.connect.bridge);
}

/* MQTT-3.1.2-3: the reserved connect flag must be 0. */
static void test_connect_reserved_flag(void **state) {
    (void)state;
    static struct bld b;
    for (uint8_t lvl = 4; lvl <= 5; lvl++) {
        connect_head(&b, "MQTT", lvl, 0x03);
        if (lvl == 5)
            b_u8(&b, 0);
        b_str(&b, "c");
        CHECKB(0x10, &b, 0, true, MAL, NULL);
    }
}

/* MQTT-3.1.2-14 (3.1.1) / -12 (5.0): will QoS 3 is malformed. */
static void test_connect_will_qos3(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 4, 0x18 | 0x04 | 0x02);
    b_str(&b, "c");
    b_str(&b, "t");
    b_str(&b, "m");
    CHECKB(0x10, &b, 0, true, MAL, NULL);
}

/* MQTT-3.1.2-11, -13, -15: no will, then will QoS and will retain are 0. */
static void test_connect_will_flags_without_will(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 4, 0x08 | 0x02); /* will QoS 1, no will */
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    connect_head(&b, "MQTT", 4, 0x20 | 0x02); /* will retain, no will */
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, MAL, NULL);
}

/* MQTT-3.1.2-22: password without user name in 3.1.1 (and 3.1); allowed in 5.0. */
static void test_connect_password_without_username(void **state) {
    (void)state;
    static struct bld b;
    struct mqtt_packet p;
    connect_head(&b, "MQTT", 4, 0x40 | 0x02);
    b_str(&b, "c");
    b_str(&b, "pw");
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    connect_head(&b, "MQIsdp", 3, 0x40 | 0x02);
    b_str(&b, "c");
    b_str(&b, "pw");
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    connect_head(&b, "MQTT", 5, 0x40 | 0x02);
    b_u8(&b, 0);
    b_str(&b, "c");
    b_str(&b, "pw");
    CHECKB(0x10, &b, 0, true, OK, &p);
    assert_true(p.connect.has_password && !p.connect.has_username);
    assert_true(str_is(p.connect.password, "pw"));
}

/* MQTT-3.1.3-4: the client id is a UTF-8 string (MQTT-1.5.4-1, -2). */
static void test_connect_client_id_utf8(void **state) {
    (void)state;
    static struct bld b;
    static const uint8_t bad[][4] = {
        {0x00},                   /* U+0000 */
        {0xED, 0xA0, 0x80},       /* surrogate U+D800 */
        {0xC0, 0x80},             /* overlong U+0000 */
        {0xF4, 0x90, 0x80, 0x80}, /* U+110000 */
        {0x80},                   /* stray continuation */
    };
    static const size_t lens[] = {1, 3, 2, 4, 1};
    for (size_t i = 0; i < 5; i++) {
        connect_head(&b, "MQTT", 4, 0x02);
        b_u16(&b, (uint16_t)lens[i]);
        b_raw(&b, bad[i], lens[i]);
        CHECKB(0x10, &b, 0, true, MAL, NULL);
    }
}

/* MQTT-3.1.3-8: empty client id needs clean session in 3.1.1; 3.1 needs
 * 1..23 characters; MQTT 5 lets the server assign one (MQTT-3.1.3-6). */
static void test_connect_empty_client_id(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 4, 0x00);
    b_str(&b, "");
    CHECKB(0x10, &b, 0, true, MQTT_RC_CLIENT_ID_NOT_VALID, NULL);
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "");
    CHECKB(0x10, &b, 0, true, OK, NULL);
    connect_head(&b, "MQIsdp", 3, 0x02);
    b_str(&b, "");
    CHECKB(0x10, &b, 0, true, MQTT_RC_CLIENT_ID_NOT_VALID, NULL);
    connect_head(&b, "MQTT", 5, 0x00);
    b_u8(&b, 0);
    b_str(&b, "");
    CHECKB(0x10, &b, 0, true, OK, NULL);
    /* Malformed wins over the client id problem. */
    connect_head(&b, "MQTT", 4, 0x00);
    b_str(&b, "");
    b_u8(&b, 0);
    CHECKB(0x10, &b, 0, true, MAL, NULL);
}

/* MQTT-3.1.3-10 area: the will topic is a topic name. */
static void test_connect_will_topic_invalid(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 4, 0x04 | 0x02);
    b_str(&b, "c");
    b_str(&b, "a/#");
    b_str(&b, "m");
    CHECKB(0x10, &b, 0, true, MQTT_RC_TOPIC_NAME_INVALID, NULL);
    connect_head(&b, "MQTT", 4, 0x04 | 0x02);
    b_str(&b, "c");
    b_str(&b, "");
    b_str(&b, "m");
    CHECKB(0x10, &b, 0, true, MQTT_RC_TOPIC_NAME_INVALID, NULL);
}

/* MQTT-3.1.3-? (5.0 3.1.3.2.3): will payload format indicator 1 requires UTF-8. */
static void test_connect_will_payload_format(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 5, 0x04 | 0x02);
    b_u8(&b, 0);
    b_str(&b, "c");
    b_u8(&b, 2);
    b_u8(&b, MQTT_PROP_PAYLOAD_FORMAT);
    b_u8(&b, 1);
    b_str(&b, "t");
    b_u16(&b, 2);
    b_u8(&b, 0xC3);
    b_u8(&b, 0x28);
    CHECKB(0x10, &b, 0, true, MQTT_RC_PAYLOAD_FORMAT_INVALID, NULL);
    b.d[b.n - 1] = 0xA9; /* "é": valid */
    CHECKB(0x10, &b, 0, true, OK, NULL);
}

static void test_connect_truncated_and_trailing(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 4, 0x80 | 0x02);
    b_str(&b, "c"); /* user name flag but no user name */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "c");
    b_u8(&b, 0); /* trailing byte */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    connect_head(&b, "MQTT", 4, 0x02);
    b.n -= 1; /* keep alive cut */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CHECK(0x10, 0, true, MAL, 0x00, 0x04, 'M', 'Q'); /* name cut */
    /* CONNECT flags: fixed header flags must be 0 (MQTT-2.2.2-2). */
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "c");
    CHECKB(0x11, &b, 0, true, MAL, NULL);
}

/* Before CONNECT only a CONNECT is accepted; a client never receives one. */
static void test_version0_only_connect(void **state) {
    (void)state;
    static struct bld b;
    CHECK(0xC0, 0, true, PROTO);
    CHECK(0x30, 0, true, PROTO, 0x00, 0x01, 'a');
    connect_head(&b, "MQTT", 4, 0x02);
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, false, PROTO, NULL);
    CHECKB(0x10, &b, MQTT_V311, false, PROTO, NULL);
    /* Not a protocol level. */
    CHECK(0xC0, 7, true, PROTO);
}

/* 2.2.2.2 / table 2-4: CONNECT property rules. */
static void test_connect_properties(void **state) {
    (void)state;
    static struct bld b;
    struct mqtt_packet p;
#define CONNECT_WITH_PROPS(...)                                                                    \
    do {                                                                                           \
        static const uint8_t pr[] = {__VA_ARGS__};                                                 \
        connect_head(&b, "MQTT", 5, 0x02);                                                         \
        b_u8(&b, sizeof pr);                                                                       \
        b_raw(&b, pr, sizeof pr);                                                                  \
        b_str(&b, "c");                                                                            \
    } while (0)
    CONNECT_WITH_PROPS(MQTT_PROP_REQUEST_PROBLEM_INFO, 2); /* 0/1 only */
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_REQUEST_RESPONSE_INFO, 2);
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_RECEIVE_MAXIMUM, 0, 0); /* 3.1.2.11.3: 0 */
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_MAXIMUM_PACKET_SIZE, 0, 0, 0, 0); /* 3.1.2.11.4: 0 */
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_SESSION_EXPIRY, 0, 0, 0, 1, MQTT_PROP_SESSION_EXPIRY, 0, 0, 0,
                       2); /* duplicate */
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_TOPIC_ALIAS, 0, 1); /* not a CONNECT property */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_WILL_DELAY, 0, 0, 0, 1); /* will-only property */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(0x7F, 0); /* unknown identifier: cannot be parsed */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(0x00, 0);
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_AUTH_DATA, 0, 1, 'x'); /* 3.1.2.11.10: data without method */
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_AUTH_METHOD, 0, 5, 'x'); /* string overruns the block */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_RECEIVE_MAXIMUM, 0); /* value cut by the block end */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    CONNECT_WITH_PROPS(MQTT_PROP_USER_PROPERTY, 0, 1, 'a', 0, 1, 0xFF); /* bad UTF-8 value */
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    /* Property length larger than the packet. */
    connect_head(&b, "MQTT", 5, 0x02);
    b_u8(&b, 50);
    b_str(&b, "c");
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    /* Property length itself longer than four bytes. */
    connect_head(&b, "MQTT", 5, 0x02);
    b_raw(&b, (const uint8_t[]){0x80, 0x80, 0x80, 0x80, 0x01}, 5);
    CHECKB(0x10, &b, 0, true, MAL, NULL);

    /* Repeated user properties are fine and walk in wire order, even when
     * interleaved with other properties. */
    CONNECT_WITH_PROPS(MQTT_PROP_USER_PROPERTY, 0, 1, 'a', 0, 1, '1', MQTT_PROP_RECEIVE_MAXIMUM, 0,
                       10, MQTT_PROP_USER_PROPERTY, 0, 1, 'a', 0, 1, '2', MQTT_PROP_AUTH_METHOD, 0,
                       1, 'm', MQTT_PROP_AUTH_DATA, 0, 0);
    CHECKB(0x10, &b, 0, true, OK, &p);
    assert_int_equal(p.props.receive_maximum, 10);
    assert_true(p.props.present & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY));
    assert_true(str_is(p.props.auth_method, "m"));
    assert_int_equal(p.props.auth_data.len, 0);
    uint32_t off = 0;
    struct mqtt_str k, v;
    assert_true(mqtt_user_prop_next(&p.props, &off, &k, &v));
    assert_true(str_is(k, "a") && str_is(v, "1"));
    assert_true(mqtt_user_prop_next(&p.props, &off, &k, &v));
    assert_true(str_is(k, "a") && str_is(v, "2"));
    assert_false(mqtt_user_prop_next(&p.props, &off, &k, &v));
    assert_false(mqtt_user_prop_next(&p.props, &off, &k, &v));
    /* MQTT-1.5.5-1: a non-minimal property identifier varint (0x91 0x00 = 0x11) is malformed. */
    CONNECT_WITH_PROPS(0x91, 0x00, 0, 0, 0, 5);
    CHECKB(0x10, &b, 0, true, MAL, NULL);
#undef CONNECT_WITH_PROPS
}

/* 3.1.3.2: will property rules (only will properties allowed there). */
static void test_connect_will_properties(void **state) {
    (void)state;
    static struct bld b;
    connect_head(&b, "MQTT", 5, 0x04 | 0x02);
    b_u8(&b, 0);
    b_str(&b, "c");
    b_u8(&b, 5);
    b_u8(&b, MQTT_PROP_SESSION_EXPIRY); /* a CONNECT property, not a will property */
    b_u16(&b, 0);
    b_u16(&b, 1);
    b_str(&b, "t");
    b_str(&b, "m");
    CHECKB(0x10, &b, 0, true, MAL, NULL);
    connect_head(&b, "MQTT", 5, 0x04 | 0x02);
    b_u8(&b, 0);
    b_str(&b, "c");
    b_u8(&b, 6);
    b_u8(&b, MQTT_PROP_RESPONSE_TOPIC); /* MQTT-3.3.2-14: no wildcards */
    b_str(&b, "r/+");
    b_str(&b, "t");
    b_str(&b, "m");
    CHECKB(0x10, &b, 0, true, PROTO, NULL);
}

/* ---- CONNACK ---- */

static void test_connack(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0x20, MQTT_V311, false, OK, 0x01, 0x00);
    CHECK(0x20, MQTT_V311, false, OK, 0x00, 0x05);
    CHECK(0x20, MQTT_V31, false, OK, 0x00, 0x02);
    CHECK(0x20, MQTT_V311, false, MAL, 0x00, 0x06);       /* return codes 6..255 reserved */
    CHECK(0x20, MQTT_V311, false, MAL, 0x02, 0x00);       /* reserved acknowledge flags */
    CHECK(0x20, MQTT_V311, false, PROTO, 0x01, 0x05);     /* MQTT-3.2.2-4 */
    CHECK(0x20, MQTT_V311, false, MAL, 0x00);             /* cut */
    CHECK(0x20, MQTT_V311, false, MAL, 0x00, 0x00, 0x00); /* trailing */
    CHECK(0x20, MQTT_V311, true, PROTO, 0x00, 0x00);      /* server never receives it */
    CHECK(0x21, MQTT_V311, false, MAL, 0x00, 0x00);       /* MQTT-2.2.2-2 */
    /* 5.0 */
    CHECK(0x20, MQTT_V5, false, MAL, 0x00, 0x00);         /* property length missing */
    CHECK(0x20, MQTT_V5, false, MAL, 0xFE, 0x00, 0x00);   /* MQTT-3.2.2-1 */
    CHECK(0x20, MQTT_V5, false, PROTO, 0x01, 0x80, 0x00); /* MQTT-3.2.2-6 */
    CHECK(0x20, MQTT_V5, false, MAL, 0x00, 0x01, 0x00);   /* not a CONNACK reason */
    CHECK(0x20, MQTT_V5, false, PROTO, 0x00, 0x00, 0x02, MQTT_PROP_MAXIMUM_QOS, 2);
    CHECK(0x20, MQTT_V5, false, PROTO, 0x00, 0x00, 0x02, MQTT_PROP_RETAIN_AVAILABLE, 2);
    CHECK(0x20, MQTT_V5, false, PROTO, 0x00, 0x00, 0x02, MQTT_PROP_WILDCARD_SUB_AVAILABLE, 2);
    CHECK(0x20, MQTT_V5, false, PROTO, 0x00, 0x00, 0x02, MQTT_PROP_SUB_ID_AVAILABLE, 2);
    CHECK(0x20, MQTT_V5, false, PROTO, 0x00, 0x00, 0x02, MQTT_PROP_SHARED_SUB_AVAILABLE, 2);
    CHECK(0x20, MQTT_V5, false, MAL, 0x00, 0x00, 0x05, MQTT_PROP_WILL_DELAY, 0, 0, 0, 2);
    check_body(0x20,
               BYTES(0x01, 0x00, 0x0A, MQTT_PROP_MAXIMUM_QOS, 1, MQTT_PROP_SERVER_KEEP_ALIVE, 0x00,
                     0x1E, MQTT_PROP_ASSIGNED_CLIENT_ID, 0x00, 0x02, 'i', 'd'),
               MQTT_V5, false, OK, &p);
    assert_true(p.connack.session_present);
    assert_int_equal(p.props.maximum_qos, 1);
    assert_int_equal(p.props.server_keep_alive, 30);
    assert_true(str_is(p.props.assigned_client_id, "id"));
}

/* ---- PUBLISH ---- */

static void test_publish_valid(void **state) {
    (void)state;
    struct mqtt_packet p;
    /* QoS 0, zero-length payload. */
    check_body(0x30, BYTES(0x00, 0x03, 'a', '/', 'b'), MQTT_V311, true, OK, &p);
    assert_true(str_is(p.publish.topic, "a/b"));
    assert_int_equal(p.publish.payload.len, 0);
    assert_int_equal(p.publish.qos, 0);
    /* QoS 2, dup, retain, payload. */
    check_body(0x3D, BYTES(0x00, 0x01, 't', 0x12, 0x34, 'h', 'i'), MQTT_V311, false, OK, &p);
    assert_int_equal(p.publish.qos, 2);
    assert_true(p.publish.dup && p.publish.retain);
    assert_int_equal(p.packet_id, 0x1234);
    assert_true(str_is(p.publish.payload, "hi"));
    /* 5.0 with properties. */
    check_body(0x32,
               BYTES(0x00, 0x01, 't', 0x00, 0x01, 0x0B, MQTT_PROP_PAYLOAD_FORMAT, 1,
                     MQTT_PROP_MESSAGE_EXPIRY, 0, 0, 0, 9, MQTT_PROP_CONTENT_TYPE, 0, 1, 'x', 'o',
                     'k'),
               MQTT_V5, true, OK, &p);
    assert_int_equal(p.props.payload_format, 1);
    assert_int_equal(p.props.message_expiry, 9);
    assert_true(str_is(p.props.content_type, "x"));
    assert_true(str_is(p.publish.payload, "ok"));
    /* A $ topic and a topic of only separators are valid names. */
    CHECK(0x30, MQTT_V311, true, OK, 0x00, 0x04, '$', 'S', 'Y', 'S');
    CHECK(0x30, MQTT_V311, true, OK, 0x00, 0x01, '/');
}

/* MQTT-3.3.1-4: QoS 3 malformed; MQTT-3.3.1-2: DUP must be 0 with QoS 0. */
static void test_publish_fixed_header_flags(void **state) {
    (void)state;
    CHECK(0x36, MQTT_V311, true, MAL, 0x00, 0x01, 't', 0x00, 0x01);
    CHECK(0x37, MQTT_V5, true, MAL, 0x00, 0x01, 't', 0x00, 0x01, 0x00);
    CHECK(0x38, MQTT_V311, true, MAL, 0x00, 0x01, 't');
    CHECK(0x39, MQTT_V5, false, MAL, 0x00, 0x01, 't', 0x00);
}

/* MQTT-2.3.1-1: packet id 0 with QoS > 0. */
static void test_publish_packet_id_zero(void **state) {
    (void)state;
    CHECK(0x32, MQTT_V311, true, PROTO, 0x00, 0x01, 't', 0x00, 0x00);
    CHECK(0x34, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x00, 0x00, 0x00);
    CHECK(0x32, MQTT_V311, true, MAL, 0x00, 0x01, 't', 0x00); /* id cut */
}

/* MQTT-3.3.2-2: no wildcards in a topic name; UTF-8 rules (MQTT-1.5.4-1). */
static void test_publish_topic_invalid(void **state) {
    (void)state;
    CHECK(0x30, MQTT_V311, true, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x03, 'a', '/', '+');
    CHECK(0x30, MQTT_V311, true, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x01, '#');
    CHECK(0x30, MQTT_V5, false, MQTT_RC_TOPIC_NAME_INVALID, 0x00, 0x02, 'a', '#', 0x00);
    CHECK(0x30, MQTT_V311, true, MAL, 0x00, 0x02, 'a', 0x00);
    CHECK(0x30, MQTT_V311, true, MAL, 0x00, 0x03, 0xED, 0xBF, 0xBF);
    CHECK(0x30, MQTT_V311, true, MAL, 0x00, 0x05, 'a'); /* length overruns */
}

/* 3.3.2.1 / 3.3.2.3.4: an empty topic needs a Topic Alias (MQTT 5 only). */
static void test_publish_empty_topic(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0x30, MQTT_V311, true, PROTO, 0x00, 0x00, 'x');
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x00, 0x00, 'x');
    check_body(0x30, BYTES(0x00, 0x00, 0x03, MQTT_PROP_TOPIC_ALIAS, 0x00, 0x07, 'x'), MQTT_V5, true,
               OK, &p);
    assert_int_equal(p.publish.topic.len, 0);
    assert_int_equal(p.props.topic_alias, 7);
    /* MQTT-3.3.2-8: Topic Alias 0 is not permitted: "Topic Alias invalid" (0x94). */
    CHECK(0x30, MQTT_V5, true, MQTT_RC_TOPIC_ALIAS_INVALID, 0x00, 0x01, 't', 0x03,
          MQTT_PROP_TOPIC_ALIAS, 0x00, 0x00);
}

/* 3.3.2.3.2: payload format indicator 0/1, and 1 means UTF-8 payload. */
static void test_publish_payload_format(void **state) {
    (void)state;
    CHECK(0x30, MQTT_V5, true, MQTT_RC_PAYLOAD_FORMAT_INVALID, 0x00, 0x01, 't', 0x02,
          MQTT_PROP_PAYLOAD_FORMAT, 1, 0xFF);
    CHECK(0x30, MQTT_V5, true, MQTT_RC_PAYLOAD_FORMAT_INVALID, 0x00, 0x01, 't', 0x02,
          MQTT_PROP_PAYLOAD_FORMAT, 1, 'a', 0x00);
    CHECK(0x30, MQTT_V5, true, OK, 0x00, 0x01, 't', 0x02, MQTT_PROP_PAYLOAD_FORMAT, 0, 0xFF);
    CHECK(0x30, MQTT_V5, true, OK, 0x00, 0x01, 't', 0x02, MQTT_PROP_PAYLOAD_FORMAT, 1);
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x02, MQTT_PROP_PAYLOAD_FORMAT, 2);
    /* 3.x payloads are opaque. */
    CHECK(0x30, MQTT_V311, true, OK, 0x00, 0x01, 't', 0xFF, 0x00);
}

/* MQTT-3.3.4-6: no Subscription Identifier from a client; several to a client. */
static void test_publish_subscription_ids(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x02, MQTT_PROP_SUBSCRIPTION_ID, 0x01);
    check_body(0x30,
               BYTES(0x00, 0x01, 't', 0x0E, MQTT_PROP_SUBSCRIPTION_ID, 0x01,
                     MQTT_PROP_SUBSCRIPTION_ID, 0x80, 0x01, MQTT_PROP_SUBSCRIPTION_ID, 0xFF, 0xFF,
                     0xFF, 0x7F, MQTT_PROP_SUBSCRIPTION_ID, 0x04, MQTT_PROP_SUBSCRIPTION_ID, 0x05),
               MQTT_V5, false, OK, &p);
    assert_int_equal(p.props.sub_id_count, 5);
    assert_int_equal(p.props.sub_id[0], 1);
    assert_int_equal(p.props.sub_id[1], 128);
    assert_int_equal(p.props.sub_id[2], 268435455);
    assert_int_equal(p.props.sub_id[3], 4);
    /* Five were counted, four stored: this cannot be re-encoded. */
    uint8_t buf[64];
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V5, &p), 0);
    /* 3.3.2.3.8: Subscription Identifier 0 is a Protocol Error. */
    CHECK(0x30, MQTT_V5, false, PROTO, 0x00, 0x01, 't', 0x02, MQTT_PROP_SUBSCRIPTION_ID, 0x00);
    /* A five-byte varint value is malformed. */
    CHECK(0x30, MQTT_V5, false, MAL, 0x00, 0x01, 't', 0x06, MQTT_PROP_SUBSCRIPTION_ID, 0x80, 0x80,
          0x80, 0x80, 0x01);
}

/* 2.2.2.2: PUBLISH property rules. */
static void test_publish_properties(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x0A, MQTT_PROP_MESSAGE_EXPIRY, 0, 0, 0, 1,
          MQTT_PROP_MESSAGE_EXPIRY, 0, 0, 0, 2);
    CHECK(0x30, MQTT_V5, true, MAL, 0x00, 0x01, 't', 0x05, MQTT_PROP_SESSION_EXPIRY, 0, 0, 0, 1);
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x04, MQTT_PROP_RESPONSE_TOPIC, 0, 1, '#');
    CHECK(0x30, MQTT_V5, true, PROTO, 0x00, 0x01, 't', 0x03, MQTT_PROP_RESPONSE_TOPIC, 0, 0);
    CHECK(0x30, MQTT_V5, true, MAL, 0x00, 0x01, 't', 0x04, MQTT_PROP_CORRELATION_DATA, 0, 2, 'x');
    CHECK(0x30, MQTT_V5, true, MAL, 0x00, 0x01, 't'); /* property length missing */
    check_body(0x30,
               BYTES(0x00, 0x01, 't', 0x0A, MQTT_PROP_RESPONSE_TOPIC, 0, 1, 'r',
                     MQTT_PROP_CORRELATION_DATA, 0, 3, 0x00, 0xFF, 0x01),
               MQTT_V5, true, OK, &p);
    assert_true(str_is(p.props.response_topic, "r"));
    assert_int_equal(p.props.correlation_data.len, 3);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---- */

static void test_pub_acks(void **state) {
    (void)state;
    struct mqtt_packet p;
    for (uint8_t t = MQTT_PUBACK; t <= MQTT_PUBCOMP; t++) {
        uint8_t first = (uint8_t)(t << 4) | (t == MQTT_PUBREL ? 2 : 0);
        check_body(first, BYTES(0x00, 0x07), MQTT_V311, true, OK, &p);
        assert_int_equal(p.type, t);
        assert_int_equal(p.packet_id, 7);
        CHECK(first, MQTT_V311, false, OK, 0x00, 0x07);
        CHECK(first, MQTT_V311, true, MAL, 0x00, 0x07, 0x00); /* 3.x: exactly 2 bytes */
        CHECK(first, MQTT_V311, true, MAL, 0x00);
        CHECK(first, MQTT_V311, true, PROTO, 0x00, 0x00); /* MQTT-2.3.1-1 */
        CHECK(first, MQTT_V5, true, PROTO, 0x00, 0x00, 0x00, 0x00);
        /* 5.0: reason and properties may be left out (3.4.2.1, 3.4.2.2.1). */
        check_body(first, BYTES(0x00, 0x07), MQTT_V5, true, OK, &p);
        assert_int_equal(p.reason, 0);
        check_body(first, BYTES(0x00, 0x07, 0x00), MQTT_V5, true, OK, &p);
        check_body(first, BYTES(0x00, 0x07, 0x00, 0x04, MQTT_PROP_REASON_STRING, 0, 1, 'r'),
                   MQTT_V5, false, OK, &p);
        assert_true(str_is(p.props.reason_string, "r"));
        CHECK(first, MQTT_V5, true, MAL, 0x00, 0x07, 0x00, 0x03, MQTT_PROP_TOPIC_ALIAS, 0, 1);
        CHECK(first, MQTT_V5, true, MAL, 0x00, 0x07, 0x00, 0x05, MQTT_PROP_REASON_STRING, 0, 1,
              'r');
        /* Wrong fixed header flags (MQTT-2.2.2-2; MQTT-3.6.1-1 for PUBREL). */
        CHECK(first ^ 2, MQTT_V311, true, MAL, 0x00, 0x07);
    }
    /* Reason codes per packet (3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1). */
    CHECK(0x40, MQTT_V5, true, OK, 0x00, 0x07, 0x10);
    CHECK(0x40, MQTT_V5, true, OK, 0x00, 0x07, 0x99);
    CHECK(0x40, MQTT_V5, true, MAL, 0x00, 0x07, 0x92);
    CHECK(0x50, MQTT_V5, true, MAL, 0x00, 0x07, 0x01);
    CHECK(0x62, MQTT_V5, true, OK, 0x00, 0x07, 0x92);
    CHECK(0x62, MQTT_V5, true, MAL, 0x00, 0x07, 0x10);
    CHECK(0x70, MQTT_V5, true, MAL, 0x00, 0x07, 0x80);
}

/* ---- SUBSCRIBE ---- */

static void test_subscribe_valid(void **state) {
    (void)state;
    struct mqtt_packet p;
    struct mqtt_sub_entry e;
    uint32_t off = 0;
    check_body(0x82, BYTES(0x00, 0x0A, 0x00, 0x03, 'a', '/', '#', 0x01, 0x00, 0x01, '+', 0x02),
               MQTT_V311, true, OK, &p);
    assert_int_equal(p.packet_id, 10);
    assert_int_equal(p.subscribe.count, 2);
    assert_true(mqtt_sub_next(&p, &off, &e));
    assert_true(str_is(e.filter, "a/#"));
    assert_int_equal(e.qos, 1);
    assert_true(mqtt_sub_next(&p, &off, &e));
    assert_true(str_is(e.filter, "+"));
    assert_int_equal(e.qos, 2);
    assert_false(mqtt_sub_next(&p, &off, &e));

    check_body(0x82,
               BYTES(0x00, 0x0B, 0x03, MQTT_PROP_SUBSCRIPTION_ID, 0x80, 0x01, 0x00, 0x01, 'x', 0x2E,
                     0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'y', 0x28),
               MQTT_V5, true, OK, &p);
    assert_int_equal(p.props.sub_id_count, 1);
    assert_int_equal(p.props.sub_id[0], 128);
    off = 0;
    assert_true(mqtt_sub_next(&p, &off, &e));
    assert_int_equal(e.qos, 2);
    assert_true(e.no_local && e.retain_as_published);
    assert_int_equal(e.retain_handling, 2);
    assert_true(mqtt_sub_next(&p, &off, &e));
    assert_true(str_is(e.filter, "$share/g/y"));
    assert_false(e.no_local);
    assert_true(e.retain_as_published);
    assert_int_equal(e.retain_handling, 2);
    assert_false(mqtt_sub_next(&p, &off, &e));
}

static void test_subscribe_invalid(void **state) {
    (void)state;
    /* MQTT-3.8.1-1: flags must be 0010. */
    CHECK(0x80, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
    CHECK(0x83, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
    /* MQTT-3.8.3-3: at least one filter. */
    CHECK(0x82, MQTT_V311, true, PROTO, 0x00, 0x01);
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x00);
    /* MQTT-2.3.1-1: packet id 0. */
    CHECK(0x82, MQTT_V311, true, PROTO, 0x00, 0x00, 0x00, 0x01, 'a', 0x00);
    /* MQTT-3-8.3-4 (3.1.1): reserved option bits 2-7, and QoS 3. */
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x04);
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x80);
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x03);
    CHECK(0x82, MQTT_V31, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x10);
    /* MQTT-3.8.3-5 (5.0): reserved bits 6-7; QoS 3; Retain Handling 3. */
    CHECK(0x82, MQTT_V5, true, MAL, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40);
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x03);
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30);
    /* MQTT-4.7.1-2, -3: wildcard placement. */
    CHECK(0x82, MQTT_V311, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x03, 'a', '#',
          'b', 0x00);
    CHECK(0x82, MQTT_V311, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x03, '#', '/',
          'b', 0x00);
    CHECK(0x82, MQTT_V311, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x02, 'a', '+',
          0x00);
    CHECK(0x82, MQTT_V311, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x00);
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 0xFF, 0x00); /* UTF-8 */
    /* MQTT-4.8.2-1, -2: shared subscription syntax. */
    CHECK(0x82, MQTT_V5, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x08, '$', 's',
          'h', 'a', 'r', 'e', '/', 'g', 0x00);
    CHECK(0x82, MQTT_V5, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x09, '$', 's',
          'h', 'a', 'r', 'e', '/', '/', 'a', 0x00);
    CHECK(0x82, MQTT_V5, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x01, 0x00, 0x00, 0x0A, '$', 's',
          'h', 'a', 'r', 'e', '/', '+', '/', 'a', 0x00);
    /* MQTT-3.8.3-4 (5.0): No Local on a shared subscription. */
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x00, 0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e',
          '/', 'g', '/', 'a', 0x04);
    /* Entry cut: options byte missing. */
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a');
    CHECK(0x82, MQTT_V311, true, MAL, 0x00, 0x01, 0x00, 0x01, 'a', 0x00, 0x00);
    /* 3.8.2.1.2: Subscription Identifier 0, twice, or another property. */
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x02, MQTT_PROP_SUBSCRIPTION_ID, 0x00, 0x00, 0x01,
          'a', 0x00);
    CHECK(0x82, MQTT_V5, true, PROTO, 0x00, 0x01, 0x04, MQTT_PROP_SUBSCRIPTION_ID, 0x01,
          MQTT_PROP_SUBSCRIPTION_ID, 0x02, 0x00, 0x01, 'a', 0x00);
    CHECK(0x82, MQTT_V5, true, MAL, 0x00, 0x01, 0x04, MQTT_PROP_REASON_STRING, 0, 1, 'x', 0x00,
          0x01, 'a', 0x00);
    /* Only a server receives SUBSCRIBE. */
    CHECK(0x82, MQTT_V311, false, PROTO, 0x00, 0x01, 0x00, 0x01, 'a', 0x00);
}

/* ---- UNSUBSCRIBE ---- */

static void test_unsubscribe(void **state) {
    (void)state;
    struct mqtt_packet p;
    struct mqtt_str f;
    uint32_t off = 0;
    check_body(0xA2, BYTES(0x00, 0x05, 0x00, 0x01, 'a', 0x00, 0x03, 'b', '/', '+'), MQTT_V311, true,
               OK, &p);
    assert_int_equal(p.unsubscribe.count, 2);
    assert_true(mqtt_unsub_next(&p, &off, &f) && str_is(f, "a"));
    assert_true(mqtt_unsub_next(&p, &off, &f) && str_is(f, "b/+"));
    assert_false(mqtt_unsub_next(&p, &off, &f));
    /* The SUBSCRIBE walker refuses an UNSUBSCRIBE. */
    struct mqtt_sub_entry e;
    off = 0;
    assert_false(mqtt_sub_next(&p, &off, &e));
    CHECK(0xA2, MQTT_V5, true, OK, 0x00, 0x05, 0x05, MQTT_PROP_USER_PROPERTY, 0, 0, 0, 0, 0x00,
          0x01, 'a');
    CHECK(0xA2, MQTT_V311, true, PROTO, 0x00, 0x05);                  /* MQTT-3.10.3-2 */
    CHECK(0xA2, MQTT_V5, true, PROTO, 0x00, 0x05, 0x00);              /* MQTT-3.10.3-2 */
    CHECK(0xA0, MQTT_V311, true, MAL, 0x00, 0x05, 0x00, 0x01, 'a');   /* MQTT-3.10.1-1 */
    CHECK(0xA2, MQTT_V311, true, PROTO, 0x00, 0x00, 0x00, 0x01, 'a'); /* MQTT-2.3.1-1 */
    CHECK(0xA2, MQTT_V311, true, MQTT_RC_TOPIC_FILTER_INVALID, 0x00, 0x05, 0x00, 0x02, '#', '#');
    CHECK(0xA2, MQTT_V311, true, MAL, 0x00, 0x05, 0x00, 0x02, 'a');
    CHECK(0xA2, MQTT_V5, true, MAL, 0x00, 0x05, 0x04, MQTT_PROP_REASON_STRING, 0, 1, 'x', 0x00,
          0x01, 'a');
    CHECK(0xA2, MQTT_V311, false, PROTO, 0x00, 0x05, 0x00, 0x01, 'a');
}

/* ---- SUBACK, UNSUBACK ---- */

static void test_suback_unsuback(void **state) {
    (void)state;
    struct mqtt_packet p;
    check_body(0x90, BYTES(0x00, 0x03, 0x00, 0x01, 0x02, 0x80), MQTT_V311, false, OK, &p);
    assert_int_equal(p.ack_list.count, 4);
    assert_int_equal(p.ack_list.codes[3], 0x80);
    CHECK(0x90, MQTT_V311, false, MAL, 0x00, 0x03, 0x03);   /* 3.9.3: 0,1,2,0x80 only */
    CHECK(0x90, MQTT_V311, false, PROTO, 0x00, 0x03);       /* no codes */
    CHECK(0x90, MQTT_V311, false, PROTO, 0x00, 0x00, 0x00); /* MQTT-2.3.1-1 */
    CHECK(0x90, MQTT_V311, true, PROTO, 0x00, 0x03, 0x00);  /* only a client receives it */
    CHECK(0x92, MQTT_V311, false, MAL, 0x00, 0x03, 0x00);
    check_body(0x90, BYTES(0x00, 0x03, 0x00, 0x8F, 0xA2, 0x01), MQTT_V5, false, OK, &p);
    assert_int_equal(p.ack_list.count, 3);
    CHECK(0x90, MQTT_V5, false, MAL, 0x00, 0x03, 0x00, 0x05);
    CHECK(0x90, MQTT_V5, false, PROTO, 0x00, 0x03, 0x00);
    CHECK(0x90, MQTT_V5, false, MAL, 0x00, 0x03, 0x02, MQTT_PROP_MAXIMUM_QOS, 1, 0x00);
    /* UNSUBACK: 3.x carries only the packet id. */
    check_body(0xB0, BYTES(0x00, 0x09), MQTT_V311, false, OK, &p);
    assert_int_equal(p.packet_id, 9);
    assert_int_equal(p.ack_list.count, 0);
    CHECK(0xB0, MQTT_V311, false, MAL, 0x00, 0x09, 0x00);
    CHECK(0xB0, MQTT_V311, false, PROTO, 0x00, 0x00);
    check_body(0xB0, BYTES(0x00, 0x09, 0x00, 0x00, 0x11), MQTT_V5, false, OK, &p);
    assert_int_equal(p.ack_list.count, 2);
    assert_int_equal(p.ack_list.codes[1], 0x11);
    CHECK(0xB0, MQTT_V5, false, MAL, 0x00, 0x09, 0x00, 0x10);
    CHECK(0xB0, MQTT_V5, false, PROTO, 0x00, 0x09, 0x00);
    CHECK(0xB0, MQTT_V5, true, PROTO, 0x00, 0x09, 0x00, 0x00);
}

/* ---- PINGREQ, PINGRESP, DISCONNECT, AUTH, reserved ---- */

static void test_ping(void **state) {
    (void)state;
    CHECK(0xC0, MQTT_V311, true, OK);
    CHECK(0xC0, MQTT_V311, true, MAL, 0x00); /* trailing byte */
    CHECK(0xC1, MQTT_V311, true, MAL);       /* MQTT-2.2.2-2 */
    CHECK(0xC0, MQTT_V311, false, PROTO);
    CHECK(0xD0, MQTT_V5, false, OK);
    CHECK(0xD0, MQTT_V5, true, PROTO);
    CHECK(0xD8, MQTT_V5, false, MAL);
}

static void test_disconnect(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0xE0, MQTT_V311, true, OK);
    CHECK(0xE0, MQTT_V311, true, MAL, 0x00); /* 3.x: no content */
    CHECK(0xE0, MQTT_V311, false, PROTO);    /* 3.x servers do not send it */
    CHECK(0xE2, MQTT_V311, true, MAL);
    check_body(0xE0, BYTES(), MQTT_V5, true, OK, &p);
    assert_int_equal(p.reason, 0);
    check_body(0xE0, BYTES(0x04), MQTT_V5, true, OK, &p); /* 3.14.2.2.1 */
    assert_int_equal(p.reason, MQTT_RC_DISCONNECT_WITH_WILL);
    check_body(0xE0, BYTES(0x8B, 0x03, MQTT_PROP_SERVER_REFERENCE, 0, 0), MQTT_V5, false, OK, &p);
    assert_int_equal(p.reason, MQTT_RC_SERVER_SHUTTING_DOWN);
    CHECK(0xE0, MQTT_V5, true, MAL, 0x01); /* not a DISCONNECT reason */
    CHECK(0xE0, MQTT_V5, true, OK, 0x00, 0x05, MQTT_PROP_SESSION_EXPIRY, 0, 0, 0, 0);
    CHECK(0xE0, MQTT_V5, false, PROTO, 0x00, 0x05, MQTT_PROP_SESSION_EXPIRY, 0, 0, 0,
          0); /* MQTT-3.14.2-2 */
    CHECK(0xE0, MQTT_V5, true, MAL, 0x00, 0x02, MQTT_PROP_PAYLOAD_FORMAT, 0);
    CHECK(0xE0, MQTT_V5, true, MAL, 0x00, 0x02, MQTT_PROP_REASON_STRING, 0);
}

static void test_auth(void **state) {
    (void)state;
    struct mqtt_packet p;
    CHECK(0xF0, MQTT_V311, true, PROTO); /* AUTH exists only in 5.0 */
    CHECK(0xF0, MQTT_V31, false, PROTO);
    check_body(0xF0, BYTES(), MQTT_V5, true, OK, &p); /* 3.15.2.1: Success */
    check_body(0xF0, BYTES(0x18, 0x07, MQTT_PROP_AUTH_METHOD, 0, 1, 'm', MQTT_PROP_AUTH_DATA, 0, 0),
               MQTT_V5, false, OK, &p);
    assert_int_equal(p.reason, MQTT_RC_CONTINUE_AUTHENTICATION);
    assert_true(str_is(p.props.auth_method, "m"));
    CHECK(0xF0, MQTT_V5, true, MAL, 0x18);       /* property length missing */
    CHECK(0xF0, MQTT_V5, true, MAL, 0x01, 0x00); /* not an AUTH reason */
    CHECK(0xF1, MQTT_V5, true, MAL);             /* MQTT-2.2.2-2 */
    CHECK(0xF0, MQTT_V5, true, PROTO, 0x19, 0x03, MQTT_PROP_AUTH_DATA, 0, 0); /* no method */
    CHECK(0xF0, MQTT_V5, true, MAL, 0x19, 0x05, MQTT_PROP_SESSION_EXPIRY, 0, 0, 0, 0);
}

/* Packet type 0 is reserved (2.1.2). */
static void test_reserved_type(void **state) {
    (void)state;
    CHECK(0x00, MQTT_V311, true, MAL);
    CHECK(0x00, MQTT_V5, false, MAL);
    CHECK(0x00, 0, true, MAL);
}

/* ---- encoding ---- */

static uint8_t g_user_props[64];

/* A user properties region with ("k1","v1"), ("k2","") for encoding. */
static struct mqtt_str user_props(void) {
    size_t n = mqtt_encode_user_prop(g_user_props, sizeof g_user_props, S("k1"), S("v1"));
    n += mqtt_encode_user_prop(g_user_props + n, sizeof g_user_props - n, S("k2"), S(""));
    return (struct mqtt_str){g_user_props, (uint32_t)n};
}

static void assert_str_eq(struct mqtt_str a, struct mqtt_str b) {
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.p, b.p, a.len);
}

static void assert_props_eq(const struct mqtt_props *a, const struct mqtt_props *b) {
    assert_int_equal(a->present, b->present);
    assert_int_equal(a->payload_format, b->payload_format);
    assert_int_equal(a->request_problem_info, b->request_problem_info);
    assert_int_equal(a->request_response_info, b->request_response_info);
    assert_int_equal(a->maximum_qos, b->maximum_qos);
    assert_int_equal(a->retain_available, b->retain_available);
    assert_int_equal(a->wildcard_sub_available, b->wildcard_sub_available);
    assert_int_equal(a->sub_id_available, b->sub_id_available);
    assert_int_equal(a->shared_sub_available, b->shared_sub_available);
    assert_int_equal(a->server_keep_alive, b->server_keep_alive);
    assert_int_equal(a->receive_maximum, b->receive_maximum);
    assert_int_equal(a->topic_alias_maximum, b->topic_alias_maximum);
    assert_int_equal(a->topic_alias, b->topic_alias);
    assert_int_equal(a->message_expiry, b->message_expiry);
    assert_int_equal(a->session_expiry, b->session_expiry);
    assert_int_equal(a->will_delay, b->will_delay);
    assert_int_equal(a->maximum_packet_size, b->maximum_packet_size);
    assert_str_eq(a->content_type, b->content_type);
    assert_str_eq(a->response_topic, b->response_topic);
    assert_str_eq(a->correlation_data, b->correlation_data);
    assert_str_eq(a->assigned_client_id, b->assigned_client_id);
    assert_str_eq(a->auth_method, b->auth_method);
    assert_str_eq(a->auth_data, b->auth_data);
    assert_str_eq(a->response_info, b->response_info);
    assert_str_eq(a->server_reference, b->server_reference);
    assert_str_eq(a->reason_string, b->reason_string);
    uint32_t oa = 0, ob = 0;
    struct mqtt_str ka, va, kb, vb;
    for (;;) {
        bool ha = mqtt_user_prop_next(a, &oa, &ka, &va);
        bool hb = mqtt_user_prop_next(b, &ob, &kb, &vb);
        assert_int_equal(ha, hb);
        if (!ha)
            break;
        assert_str_eq(ka, kb);
        assert_str_eq(va, vb);
    }
    assert_int_equal(a->sub_id_count, b->sub_id_count);
    const uint32_t *ia = a->sub_ids ? a->sub_ids : a->sub_id;
    const uint32_t *ib = b->sub_ids ? b->sub_ids : b->sub_id;
    for (uint32_t i = 0; i < a->sub_id_count && i < MQTT_MAX_SUB_IDS; i++)
        assert_int_equal(ia[i], ib[i]);
}

static uint8_t g_enc[4096];

/* Encode p for version, check the size contract, decode it back as the
 * receiving side `srv` and return the decoded packet in *out. */
static void encode_decode(const struct mqtt_packet *p, uint8_t version, bool srv,
                          struct mqtt_packet *out) {
    size_t n = mqtt_encode(NULL, 0, version, p);
    assert_true(n > 0 && n <= sizeof g_enc);
    /* Too small: nothing written. */
    memset(g_enc, 0xA5, sizeof g_enc);
    assert_int_equal(mqtt_encode(g_enc, n - 1, version, p), n);
    for (size_t i = 0; i < sizeof g_enc; i++)
        assert_int_equal(g_enc[i], 0xA5);
    assert_int_equal(mqtt_encode(g_enc, sizeof g_enc, version, p), n);
    assert_int_equal(g_enc[n], 0xA5); /* nothing past the packet */
    uint8_t rc = 0;
    uint8_t dver = p->type == MQTT_CONNECT ? 0 : version;
    int r = mqtt_decode(g_enc, n, dver, srv, out, &rc);
    if (r != MQTT_OK)
        print_error("type %u v%u: reason 0x%02x\n", p->type, version, rc);
    assert_int_equal(r, MQTT_OK);
    assert_int_equal(out->type, p->type);
    assert_int_equal(out->packet_id, p->packet_id);
    if (version == MQTT_V5) {
        assert_props_eq(&out->props, &p->props);
    } else {
        assert_int_equal(out->props.present, 0);
    }
    /* Re-encoding the decoded packet gives the same bytes. */
    static uint8_t again[4096];
    assert_int_equal(mqtt_encode(again, sizeof again, version, out), n);
    assert_memory_equal(again, g_enc, n);
}

static const uint8_t versions[] = {MQTT_V31, MQTT_V311, MQTT_V5};

static void test_roundtrip_connect(void **state) {
    (void)state;
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        struct mqtt_packet p = {.type = MQTT_CONNECT}, d;
        p.connect.clean = true;
        p.connect.keep_alive = 0xFFFF;
        p.connect.client_id = S("client-1");
        p.connect.will = true;
        p.connect.will_qos = 2;
        p.connect.will_retain = true;
        p.connect.will_topic = S("will/topic");
        p.connect.will_payload = S("gone");
        p.connect.has_username = true;
        p.connect.username = S("user");
        p.connect.has_password = true;
        p.connect.password = (struct mqtt_str){(const uint8_t *)"\x00\xFF", 2};
        if (v == MQTT_V5) {
            struct mqtt_props *pr = &p.props;
            pr->present =
                MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM) |
                MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                MQTT_PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFO) |
                MQTT_PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO) |
                MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA) |
                MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            pr->session_expiry = 0xFFFFFFFF;
            pr->receive_maximum = 100;
            pr->maximum_packet_size = 1 << 20;
            pr->topic_alias_maximum = 10;
            pr->request_response_info = 1;
            pr->request_problem_info = 0;
            pr->auth_method = S("SCRAM");
            pr->auth_data = S("data");
            pr->user_props = user_props();
            struct mqtt_props *w = &p.connect.will_props;
            w->present =
                MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY) | MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            w->will_delay = 5;
            w->payload_format = 1;
            w->message_expiry = 60;
            w->content_type = S("text/plain");
            w->response_topic = S("resp/x");
            w->correlation_data = S("corr");
            w->user_props = user_props();
        }
        encode_decode(&p, v, true, &d);
        assert_int_equal(d.connect.version, v);
        assert_true(d.connect.clean && d.connect.will && d.connect.will_retain);
        assert_int_equal(d.connect.will_qos, 2);
        assert_int_equal(d.connect.keep_alive, 0xFFFF);
        assert_str_eq(d.connect.client_id, p.connect.client_id);
        assert_str_eq(d.connect.will_topic, p.connect.will_topic);
        assert_str_eq(d.connect.will_payload, p.connect.will_payload);
        assert_str_eq(d.connect.username, p.connect.username);
        assert_str_eq(d.connect.password, p.connect.password);
        if (v == MQTT_V5)
            assert_props_eq(&d.connect.will_props, &p.connect.will_props);
        struct mqtt_frame f;
        assert_int_equal(mqtt_frame_parse(g_enc, sizeof g_enc, 0, &f, NULL), MQTT_OK);
        const uint8_t *vh = g_enc + f.header_len;
        if (v == MQTT_V31)
            assert_memory_equal(vh, "\x00\x06MQIsdp\x03", 9);
        else
            assert_memory_equal(vh, v == MQTT_V5 ? "\x00\x04MQTT\x05" : "\x00\x04MQTT\x04", 7);
        /* Minimal CONNECT: no will, no credentials. */
        struct mqtt_packet m = {.type = MQTT_CONNECT};
        m.connect.clean = true;
        m.connect.client_id = S("");
        encode_decode(&m, v == MQTT_V31 ? MQTT_V311 : v, true, &d);
        assert_false(d.connect.will || d.connect.has_username || d.connect.has_password);
    }
}

static void test_roundtrip_connack(void **state) {
    (void)state;
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        struct mqtt_packet p = {.type = MQTT_CONNACK}, d;
        p.connack.session_present = true;
        encode_decode(&p, v, false, &d);
        assert_true(d.connack.session_present);
        assert_int_equal(g_enc[1], v == MQTT_V5 ? 3 : 2);
        p.connack.session_present = false;
        p.reason = v == MQTT_V5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_CONNACK_NOT_AUTHORIZED;
        if (v == MQTT_V5) {
            struct mqtt_props *pr = &p.props;
            pr->present =
                MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM) |
                MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS) | MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
                MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |
                MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) |
                MQTT_PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) |
                MQTT_PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) |
                MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE) |
                MQTT_PROP_BIT(MQTT_PROP_RESPONSE_INFO) | MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE) |
                MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA) |
                MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            pr->session_expiry = 7;
            pr->receive_maximum = 65535;
            pr->maximum_qos = 1;
            pr->retain_available = 0;
            pr->maximum_packet_size = 268435460;
            pr->assigned_client_id = S("auto-1");
            pr->topic_alias_maximum = 0;
            pr->reason_string = S("no");
            pr->wildcard_sub_available = 1;
            pr->sub_id_available = 0;
            pr->shared_sub_available = 1;
            pr->server_keep_alive = 30;
            pr->response_info = S("ri");
            pr->server_reference = S("other:1883");
            pr->auth_method = S("m");
            pr->auth_data = S("");
            pr->user_props = user_props();
        }
        encode_decode(&p, v, false, &d);
        assert_int_equal(d.reason, p.reason);
        assert_false(d.connack.session_present);
    }
}

static void test_roundtrip_publish(void **state) {
    (void)state;
    static uint8_t big[3000];
    memset(big, 'z', sizeof big);
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        for (uint8_t qos = 0; qos <= 2; qos++) {
            struct mqtt_packet p = {.type = MQTT_PUBLISH}, d;
            p.publish.topic = S("a/b/c");
            p.publish.qos = qos;
            p.publish.retain = qos == 1;
            p.publish.dup = qos == 2;
            p.packet_id = qos ? 0xBEEF : 0;
            p.publish.payload = (struct mqtt_str){big, qos == 0 ? 0 : sizeof big};
            uint32_t ids[] = {1, 268435455};
            if (v == MQTT_V5) {
                struct mqtt_props *pr = &p.props;
                pr->present =
                    MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                    MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                    MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                    MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) |
                    MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
                pr->payload_format = 1;
                pr->message_expiry = 3600;
                pr->topic_alias = 3;
                pr->response_topic = S("r");
                pr->correlation_data = S("c");
                pr->content_type = S("t");
                pr->user_props = user_props();
            }
            encode_decode(&p, v, true, &d);
            assert_int_equal(d.publish.qos, qos);
            assert_int_equal(d.publish.retain, p.publish.retain);
            assert_int_equal(d.publish.dup, p.publish.dup);
            assert_str_eq(d.publish.topic, p.publish.topic);
            assert_str_eq(d.publish.payload, p.publish.payload);
            if (v == MQTT_V5) {
                /* To a client, with subscription identifiers. */
                p.props.present |= MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
                p.props.sub_ids = ids;
                p.props.sub_id_count = 2;
                encode_decode(&p, v, false, &d);
                /* Empty topic with an alias. */
                p.publish.topic = S("");
                encode_decode(&p, v, false, &d);
                assert_int_equal(d.publish.topic.len, 0);
            }
        }
    }
}

static void test_roundtrip_pub_acks(void **state) {
    (void)state;
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        for (uint8_t t = MQTT_PUBACK; t <= MQTT_PUBCOMP; t++) {
            struct mqtt_packet p = {.type = t, .packet_id = 1}, d;
            encode_decode(&p, v, true, &d);
            assert_int_equal(g_enc[0], (t << 4) | (t == MQTT_PUBREL ? 2 : 0));
            assert_int_equal(g_enc[1], 2); /* reason and properties omitted */
            if (v != MQTT_V5)
                continue;
            p.reason = t == MQTT_PUBREL || t == MQTT_PUBCOMP ? MQTT_RC_PACKET_ID_NOT_FOUND
                                                             : MQTT_RC_QUOTA_EXCEEDED;
            encode_decode(&p, v, false, &d);
            assert_int_equal(g_enc[1], 3); /* property length omitted */
            assert_int_equal(d.reason, p.reason);
            p.props.present =
                MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            p.props.reason_string = S("why");
            p.props.user_props = user_props();
            encode_decode(&p, v, true, &d);
            assert_int_equal(d.reason, p.reason);
            p.reason = 0; /* success with properties keeps the reason byte */
            encode_decode(&p, v, true, &d);
            assert_int_equal(g_enc[2 + 2], 0);
            /* Each kind of property alone is not "empty" (the encoder's
             * shortcut for a block with nothing set must not drop them). */
            p.props = (struct mqtt_props){.present = MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY),
                                          .user_props = user_props()};
            encode_decode(&p, v, true, &d);
            assert_true(g_enc[1] > 3);
            p.props = (struct mqtt_props){.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING),
                                          .reason_string = S("r")};
            encode_decode(&p, v, true, &d);
            assert_int_equal(g_enc[1], 2 + 1 + 1 + 4);
            p.props = (struct mqtt_props){0};
            encode_decode(&p, v, true, &d);
            assert_int_equal(g_enc[1], 2);
        }
    }
}

static void test_roundtrip_subscribe(void **state) {
    (void)state;
    const struct mqtt_sub_entry list[] = {
        {.filter = {(const uint8_t *)"a/+/c", 5}, .qos = 0},
        {.filter = {(const uint8_t *)"#", 1}, .qos = 1},
        {.filter = {(const uint8_t *)"$share/g/x/#", 12},
         .qos = 2,
         .retain_as_published = true,
         .retain_handling = 1},
        {.filter = {(const uint8_t *)"n", 1}, .qos = 1, .no_local = true, .retain_handling = 2},
    };
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        struct mqtt_packet p = {.type = MQTT_SUBSCRIBE, .packet_id = 65535}, d;
        p.subscribe.list = list;
        p.subscribe.count = 4;
        if (v == MQTT_V5) {
            p.props.present =
                MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            p.props.sub_id_count = 1;
            p.props.sub_id[0] = 12345;
            p.props.user_props = user_props();
        }
        encode_decode(&p, v, true, &d);
        assert_int_equal(g_enc[0], 0x82);
        assert_int_equal(d.subscribe.count, 4);
        uint32_t off = 0;
        struct mqtt_sub_entry e;
        for (int i = 0; i < 4; i++) {
            assert_true(mqtt_sub_next(&d, &off, &e));
            assert_str_eq(e.filter, list[i].filter);
            assert_int_equal(e.qos, list[i].qos);
            bool v5 = v == MQTT_V5;
            assert_int_equal(e.no_local, v5 && list[i].no_local);
            assert_int_equal(e.retain_as_published, v5 && list[i].retain_as_published);
            assert_int_equal(e.retain_handling, v5 ? list[i].retain_handling : 0);
        }
        assert_false(mqtt_sub_next(&d, &off, &e));
    }
}

static void test_roundtrip_unsubscribe(void **state) {
    (void)state;
    const struct mqtt_str list[] = {{(const uint8_t *)"a/#", 3}, {(const uint8_t *)"+", 1}};
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        struct mqtt_packet p = {.type = MQTT_UNSUBSCRIBE, .packet_id = 2}, d;
        p.unsubscribe.list = list;
        p.unsubscribe.count = 2;
        if (v == MQTT_V5) {
            p.props.present = MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            p.props.user_props = user_props();
        }
        encode_decode(&p, v, true, &d);
        assert_int_equal(g_enc[0], 0xA2);
        assert_int_equal(d.unsubscribe.count, 2);
        uint32_t off = 0;
        struct mqtt_str f;
        assert_true(mqtt_unsub_next(&d, &off, &f));
        assert_str_eq(f, list[0]);
        assert_true(mqtt_unsub_next(&d, &off, &f));
        assert_str_eq(f, list[1]);
        assert_false(mqtt_unsub_next(&d, &off, &f));
    }
}

static void test_roundtrip_suback_unsuback(void **state) {
    (void)state;
    static const uint8_t codes3[] = {0, 1, 2, 0x80};
    static const uint8_t codes5[] = {0, 0x87, 0xA1};
    static const uint8_t ucodes5[] = {0x11, 0x00};
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        bool v5 = v == MQTT_V5;
        struct mqtt_packet p = {.type = MQTT_SUBACK, .packet_id = 3}, d;
        p.ack_list.codes = v5 ? codes5 : codes3;
        p.ack_list.count = v5 ? 3 : 4;
        if (v5) {
            p.props.present =
                MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
            p.props.reason_string = S("r");
            p.props.user_props = user_props();
        }
        encode_decode(&p, v, false, &d);
        assert_int_equal(d.ack_list.count, p.ack_list.count);
        assert_memory_equal(d.ack_list.codes, p.ack_list.codes, p.ack_list.count);

        p.type = MQTT_UNSUBACK;
        p.ack_list.codes = ucodes5;
        p.ack_list.count = 2;
        encode_decode(&p, v, false, &d);
        if (v5) {
            assert_int_equal(d.ack_list.count, 2);
            assert_memory_equal(d.ack_list.codes, ucodes5, 2);
        } else {
            assert_int_equal(g_enc[1], 2); /* codes left out before 5.0 */
            assert_int_equal(d.ack_list.count, 0);
        }
    }
}

static void test_roundtrip_ping_disconnect_auth(void **state) {
    (void)state;
    for (size_t vi = 0; vi < 3; vi++) {
        uint8_t v = versions[vi];
        struct mqtt_packet p = {.type = MQTT_PINGREQ}, d;
        encode_decode(&p, v, true, &d);
        assert_memory_equal(g_enc, "\xC0\x00", 2);
        p.type = MQTT_PINGRESP;
        encode_decode(&p, v, false, &d);
        assert_memory_equal(g_enc, "\xD0\x00", 2);
        p.type = MQTT_DISCONNECT;
        encode_decode(&p, v, true, &d);
        assert_memory_equal(g_enc, "\xE0\x00", 2);
        p.reason = MQTT_RC_DISCONNECT_WITH_WILL;
        if (v != MQTT_V5) {
            encode_decode(&p, v, true, &d); /* reason left out */
            assert_memory_equal(g_enc, "\xE0\x00", 2);
            p.type = MQTT_AUTH;
            assert_int_equal(mqtt_encode(g_enc, sizeof g_enc, v, &p), 0);
            continue;
        }
        encode_decode(&p, v, true, &d);
        assert_memory_equal(g_enc, "\xE0\x01\x04", 3);
        p.reason = MQTT_RC_SESSION_TAKEN_OVER;
        p.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) |
                          MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE) |
                          MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
        p.props.reason_string = S("bye");
        p.props.server_reference = S("elsewhere");
        p.props.user_props = user_props();
        encode_decode(&p, v, false, &d);
        assert_int_equal(d.reason, MQTT_RC_SESSION_TAKEN_OVER);

        struct mqtt_packet a = {.type = MQTT_AUTH};
        encode_decode(&a, v, true, &d);
        assert_memory_equal(g_enc, "\xF0\x00", 2);
        a.reason = MQTT_RC_REAUTHENTICATE; /* property length always follows */
        a.props.present = MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
        a.props.auth_method = S("m");
        encode_decode(&a, v, false, &d);
        a.props = (struct mqtt_props){0};
        encode_decode(&a, v, true, &d);
        assert_memory_equal(g_enc, "\xF0\x02\x19\x00", 4);
    }
}

/* Remaining-length boundaries through the encoder (MQTT-1.5.5). */
static void test_encode_remaining_length_boundaries(void **state) {
    (void)state;
    static uint8_t payload[2097152];
    static uint8_t out[2097152 + 16];
    static const uint32_t rems[] = {127, 128, 16383, 16384, 2097151, 2097152};
    static const size_t hdr[] = {2, 3, 3, 4, 4, 5};
    for (size_t i = 0; i < 6; i++) {
        struct mqtt_packet p = {.type = MQTT_PUBLISH}, d;
        p.publish.topic = S("t");
        p.publish.payload = (struct mqtt_str){payload, rems[i] - 3};
        size_t n = mqtt_encode(out, sizeof out, MQTT_V311, &p);
        assert_int_equal(n, hdr[i] + rems[i]);
        struct mqtt_frame f;
        uint8_t rc;
        assert_int_equal(mqtt_frame_parse(out, n, 0, &f, &rc), MQTT_OK);
        assert_int_equal(f.remaining, rems[i]);
        assert_int_equal(f.header_len, hdr[i]);
        assert_int_equal(mqtt_decode(out, n, MQTT_V311, true, &d, &rc), MQTT_OK);
        assert_int_equal(d.publish.payload.len, rems[i] - 3);
    }
    /* The largest remaining length: head only, payload never touched. */
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.publish.topic = S("t");
    p.publish.payload = (struct mqtt_str){NULL, MQTT_MAX_REMAINING_LENGTH - 3};
    uint8_t head[16];
    assert_int_equal(mqtt_encode_publish_head(head, sizeof head, MQTT_V311, &p), 5 + 3);
    assert_memory_equal(head, "\x30\xFF\xFF\xFF\x7F\x00\x01t", 8);
    assert_int_equal(mqtt_encode(NULL, 0, MQTT_V311, &p), 5 + MQTT_MAX_REMAINING_LENGTH);
    p.publish.payload.len++;
    assert_int_equal(mqtt_encode_publish_head(head, sizeof head, MQTT_V311, &p), 0);
    assert_int_equal(mqtt_encode(NULL, 0, MQTT_V311, &p), 0);
}

static void test_encode_publish_head(void **state) {
    (void)state;
    struct mqtt_packet p = {.type = MQTT_PUBLISH, .packet_id = 9};
    p.publish.topic = S("x/y");
    p.publish.qos = 1;
    p.publish.payload = S("payload bytes");
    p.props.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
    p.props.message_expiry = 1;
    uint8_t full[128], head[128];
    size_t n = mqtt_encode(full, sizeof full, MQTT_V5, &p);
    size_t h = mqtt_encode_publish_head(head, sizeof head, MQTT_V5, &p);
    assert_int_equal(h + p.publish.payload.len, n);
    assert_memory_equal(head, full, h);
    assert_memory_equal(full + h, p.publish.payload.p, p.publish.payload.len);
    assert_int_equal(mqtt_encode_publish_head(NULL, 0, MQTT_V5, &p), h);
    struct mqtt_packet q = {.type = MQTT_PUBACK, .packet_id = 1};
    assert_int_equal(mqtt_encode_publish_head(head, sizeof head, MQTT_V5, &q), 0);
}

/* mqtt_encode_publish_plain writes the bytes of mqtt_encode_publish_head for
 * every version, QoS, flag and remaining-length size, and refuses what the
 * generic encoder refuses. */
static void test_encode_publish_plain(void **state) {
    (void)state;
    static const size_t payloads[] = {0, 5, 120, 130, 16380, 16390, 2097150, 2097160};
    static const uint8_t versions[] = {MQTT_V31, MQTT_V311, MQTT_V5};
    uint8_t a[64], b[64];
    for (size_t v = 0; v < 3; v++)
        for (uint8_t qos = 0; qos <= 2; qos++)
            for (int flags = 0; flags < 4; flags++)
                for (size_t k = 0; k < sizeof payloads / sizeof payloads[0]; k++) {
                    struct mqtt_packet p = {.type = MQTT_PUBLISH, .packet_id = qos ? 0x1234 : 0};
                    p.publish.topic = S("sensors/temp");
                    p.publish.qos = qos;
                    p.publish.retain = flags & 1;
                    p.publish.dup = (flags & 2) != 0;
                    p.publish.payload = (struct mqtt_str){NULL, (uint32_t)payloads[k]};
                    size_t want = mqtt_encode_publish_head(a, sizeof a, versions[v], &p);
                    size_t got =
                        mqtt_encode_publish_plain(b, sizeof b, versions[v], "sensors/temp", 12, qos,
                                                  flags & 1, flags & 2, 0x1234, payloads[k]);
                    assert_int_equal(got, want);
                    assert_memory_equal(a, b, want);
                }
    assert_int_equal(
        mqtt_encode_publish_plain(b, sizeof b, MQTT_V311, "t", 1, 0, false, false, 0, 10), 5);
    assert_int_equal(mqtt_encode_publish_plain(NULL, 0, MQTT_V5, "t", 1, 1, false, false, 1, 10),
                     8); /* size only */
    assert_int_equal(
        mqtt_encode_publish_plain(b, sizeof b, MQTT_V311, "t", 1, 3, false, false, 1, 0), 0);
    assert_int_equal(mqtt_encode_publish_plain(b, sizeof b, MQTT_V311, "t", 1, 0, false, false, 0,
                                               MQTT_MAX_REMAINING_LENGTH),
                     0);
    assert_int_equal(mqtt_encode_publish_plain(b, sizeof b, 2, "t", 1, 0, false, false, 0, 0), 0);
}

static void test_encode_cannot(void **state) {
    (void)state;
    static uint8_t big[70000];
    uint8_t buf[64];
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.publish.topic = (struct mqtt_str){big, 65536}; /* over a string's maximum */
    assert_int_equal(mqtt_encode(NULL, 0, MQTT_V311, &p), 0);
    p.publish.topic = S("t");
    p.publish.qos = 3;
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V311, &p), 0);
    p.publish.qos = 0;
    assert_int_equal(mqtt_encode(buf, sizeof buf, 2, &p), 0); /* not a version */
    p.type = 0;
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V311, &p), 0);
    struct mqtt_packet c = {.type = MQTT_CONNECT};
    c.connect.will = true;
    c.connect.will_qos = 3;
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V311, &c), 0);
    struct mqtt_packet a = {.type = MQTT_PUBACK, .packet_id = 1, .reason = 0x80};
    a.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
    a.props.reason_string = (struct mqtt_str){big, 65536};
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V5, &a), 0);
    assert_int_equal(mqtt_props_size(&a.props), 0);
    assert_int_equal(mqtt_encode(buf, sizeof buf, MQTT_V311, &a), 4); /* props left out */
}

/* Property block layout: identifier order, then user properties, then
 * subscription identifiers. */
static void test_props_encoding_order(void **state) {
    (void)state;
    struct mqtt_props pr = {0};
    assert_int_equal(mqtt_props_size(&pr), 1);
    pr.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                 MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID) | MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
    pr.topic_alias = 0x0102;
    pr.payload_format = 1;
    pr.sub_id_count = 2;
    pr.sub_id[0] = 1;
    pr.sub_id[1] = 16384;
    uint8_t up[16];
    size_t un = mqtt_encode_user_prop(up, sizeof up, S("k"), S("v"));
    assert_int_equal(un, 7);
    assert_int_equal(mqtt_encode_user_prop(NULL, 0, S("k"), S("v")), 7);
    pr.user_props = (struct mqtt_str){up, (uint32_t)un};
    static const uint8_t want[] = {18, 0x01, 1,   0x23, 0x01, 0x02, 0x26, 0,    1,   'k',
                                   0,  1,    'v', 0x0B, 0x01, 0x0B, 0x80, 0x80, 0x01};
    assert_int_equal(mqtt_props_size(&pr), sizeof want);
    struct mqtt_packet p = {.type = MQTT_PUBLISH, .props = pr};
    p.publish.topic = S("t");
    uint8_t buf[64];
    size_t n = mqtt_encode(buf, sizeof buf, MQTT_V5, &p);
    assert_int_equal(n, 2 + 3 + sizeof want);
    assert_memory_equal(buf + 5, want, sizeof want);
}

/* mqtt_user_props_collect turns decoded user properties into an encodable
 * region; the size contract holds. */
/* `order` puts the listed identifiers first (user properties and
 * subscription ids included), the rest in identifier order; `encoded` is
 * written verbatim; mqtt_props_copy_entries keeps the wire order of a
 * decoded block and picks only the identifiers asked for. */
static void test_props_order_encoded_copy(void **state) {
    (void)state;
    struct mqtt_props pr = {0};
    pr.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM) |
                 MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                 MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS) | MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    pr.receive_maximum = 20;
    pr.topic_alias_maximum = 10;
    pr.maximum_qos = 1;
    pr.sub_id_count = 1;
    pr.sub_id[0] = 5;
    static const uint8_t order[] = {MQTT_PROP_SUBSCRIPTION_ID, MQTT_PROP_TOPIC_ALIAS_MAXIMUM,
                                    MQTT_PROP_SERVER_KEEP_ALIVE, MQTT_PROP_TOPIC_ALIAS_MAXIMUM};
    pr.order = order;
    pr.norder = sizeof order;
    static const uint8_t want[] = {10,   0x0B, 5,  0x22, 0, 10, /* listed, absent one skipped */
                                   0x21, 0,    20, 0x24, 1};    /* the rest by identifier */
    struct mqtt_packet ack = {.type = MQTT_CONNACK, .props = pr};
    uint8_t buf[64];
    size_t n = mqtt_encode(buf, sizeof buf, MQTT_V5, &ack);
    assert_int_equal(n, 2 + 2 + sizeof want);
    assert_memory_equal(buf + 4, want, sizeof want);

    static const uint8_t blk[] = {0x26, 0,   1,    'k', 0, 1, 'v', 0x03, 0,
                                  1,    'c', 0x02, 0,   0, 0, 9,   0x01, 1};
    struct mqtt_props enc = {.encoded = {blk, sizeof blk}};
    assert_int_equal(mqtt_props_size(&enc), 1 + sizeof blk);

    /* Decode a PUBLISH whose properties come out of identifier order. */
    uint8_t pub[64] = {0x30, 0, 0, 1, 't', sizeof blk};
    memcpy(pub + 6, blk, sizeof blk);
    pub[1] = (uint8_t)(3 + 1 + sizeof blk); /* topic, property length, block */
    struct mqtt_packet d;
    uint8_t reason;
    assert_int_equal(mqtt_decode(pub, 2 + pub[1], MQTT_V5, true, &d, &reason), MQTT_OK);
    uint64_t fwd = MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                   MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT);
    uint8_t out[64];
    static const uint8_t kept[] = {0x26, 0, 1, 'k', 0, 1, 'v', 0x03, 0, 1, 'c', 0x01, 1};
    assert_int_equal(mqtt_props_copy_entries(&d.props, fwd, NULL, 0), sizeof kept);
    assert_int_equal(mqtt_props_copy_entries(&d.props, fwd, out, 3), sizeof kept); /* too small */
    assert_int_equal(mqtt_props_copy_entries(&d.props, fwd, out, sizeof out), sizeof kept);
    assert_memory_equal(out, kept, sizeof kept);
    assert_int_equal(
        mqtt_props_copy_entries(&d.props, MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS), out, sizeof out),
        0);
    assert_int_equal(mqtt_props_copy_entries(NULL, fwd, out, sizeof out), 0);
    /* Props built to encode (no raw): encoding order, filtered. */
    struct mqtt_props built = {0};
    built.present = MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    built.content_type = S("c");
    built.topic_alias = 3;
    static const uint8_t ct[] = {0x03, 0, 1, 'c'};
    assert_int_equal(mqtt_props_copy_entries(&built, fwd, out, sizeof out), sizeof ct);
    assert_memory_equal(out, ct, sizeof ct);
}

static void test_user_props_collect(void **state) {
    (void)state;
    struct mqtt_packet p;
    check_body(0x40,
               BYTES(0x00, 0x01, 0x00, 0x10, MQTT_PROP_USER_PROPERTY, 0, 1, 'a', 0, 1, 'b',
                     MQTT_PROP_REASON_STRING, 0, 0, MQTT_PROP_USER_PROPERTY, 0, 1, 'c', 0, 0),
               MQTT_V5, true, OK, &p);
    size_t need = mqtt_user_props_collect(&p.props, NULL, 0);
    assert_int_equal(need, 7 + 6);
    uint8_t buf[32];
    memset(buf, 0xA5, sizeof buf);
    assert_int_equal(mqtt_user_props_collect(&p.props, buf, need - 1), need);
    assert_int_equal(buf[0], 0xA5);
    assert_int_equal(mqtt_user_props_collect(&p.props, buf, sizeof buf), need);
    assert_memory_equal(buf,
                        "\x26\x00\x01"
                        "a\x00\x01"
                        "b\x26\x00\x01"
                        "c\x00\x00",
                        need);
    struct mqtt_props q = {0};
    q.user_props = (struct mqtt_str){buf, (uint32_t)need};
    uint32_t off = 0;
    struct mqtt_str k, v;
    assert_true(mqtt_user_prop_next(&q, &off, &k, &v) && str_is(k, "a") && str_is(v, "b"));
    assert_true(mqtt_user_prop_next(&q, &off, &k, &v) && str_is(k, "c") && v.len == 0);
    assert_false(mqtt_user_prop_next(&q, &off, &k, &v));
    /* A hand-made region that lies about its lengths ends the walk. */
    q.user_props = (struct mqtt_str){(const uint8_t *)"\x26\x00\x09k", 4};
    off = 0;
    assert_false(mqtt_user_prop_next(&q, &off, &k, &v));
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(mqtt_type_name(MQTT_CONNECT), "CONNECT");
    assert_string_equal(mqtt_type_name(MQTT_AUTH), "AUTH");
    assert_string_equal(mqtt_type_name(0), "?");
    assert_string_equal(mqtt_type_name(16), "?");
    assert_string_equal(mqtt_reason_text(MQTT_RC_NOT_AUTHORIZED), "Not authorized");
    assert_string_equal(mqtt_reason_text(MQTT_RC_MALFORMED_PACKET), "Malformed Packet");
    assert_non_null(mqtt_reason_text(0x7F));
}

/*
 * Hostile input sweep (the fuzzer's job in miniature, run on every build):
 * every prefix and every single-bit flip of valid packets is decoded for
 * each version and side. Nothing may crash, errors carry an error reason,
 * and whatever decodes re-encodes. Crash inputs found by
 * tests/fuzz/fuzz_mqtt_decode.c are to be added to `cases` (none so far).
 */
static void decode_all_ways(const uint8_t *b, size_t n) {
    static const uint8_t vs[] = {0, MQTT_V31, MQTT_V311, MQTT_V5};
    for (size_t i = 0; i < sizeof vs; i++) {
        for (int srv = 0; srv < 2; srv++) {
            struct mqtt_packet p;
            uint8_t rc = 0;
            int r = mqtt_decode(b, n, vs[i], srv, &p, &rc);
            if (r != MQTT_OK) {
                assert_int_equal(r, MQTT_ERR);
                assert_true(rc >= 0x80);
                continue;
            }
            uint8_t v = p.type == MQTT_CONNECT ? p.connect.version : vs[i];
            size_t need = mqtt_encode(NULL, 0, v, &p);
            assert_true(need > 0 && need <= sizeof g_enc);
            assert_int_equal(mqtt_encode(g_enc, sizeof g_enc, v, &p), need);
        }
    }
}

static void test_hostile_inputs(void **state) {
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        /* MQTT 5 CONNECT with will, properties, user name and password. */
        {"\x10\x2f\x00\x04\x4d\x51\x54\x54\x05\xce\x00\x3c\x0b\x11\x00\x00\x00\x05\x26\x00\x01\x6b"
         "\x00\x00\x00\x01\x63\x07\x01\x01\x08\x00\x02\x72\x2f\x00\x01\x74\x00\x02\x68\x69\x00\x01"
         "\x75\x00\x02\x70\x77",
         49},
        /* MQTT 5 PUBLISH QoS 1 with properties. */
        {"\x32\x11\x00\x03\x61\x2f\x62\x00\x07\x07\x23\x00\x01\x03\x00\x01\x78\x6f\x6b", 19},
        /* MQTT 5 SUBSCRIBE with a shared subscription. */
        {"\x82\x16\x00\x01\x02\x0b\x01\x00\x0a\x24\x73\x68\x61\x72\x65\x2f\x67\x2f\x61\x2a\x00\x01"
         "\x23\x01",
         24},
        /* 3.1.1 SUBACK. */
        {"\x90\x04\x00\x01\x00\x80", 6},
        /* 5.0 DISCONNECT. */
        {"\xe0\x07\x8e\x05\x1f\x00\x02\x6e\x6f", 9},
        /* 5.0 AUTH. */
        {"\xf0\x06\x18\x04\x15\x00\x01\x6d", 8},
    };
    static uint8_t buf[128];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint8_t *b = (const uint8_t *)cases[c].bytes;
        size_t n = cases[c].len;
        assert_true(n <= sizeof buf);
        decode_all_ways(b, n);
        for (size_t k = 0; k < n; k++)
            decode_all_ways(b, k); /* every truncation */
        for (size_t k = 0; k < n * 8; k++) {
            memcpy(buf, b, n);
            buf[k / 8] ^= (uint8_t)(1u << (k % 8));
            decode_all_ways(buf, n);
        }
    }
    /* The valid ones really are valid for some version and side. */
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode((const uint8_t *)cases[0].bytes, cases[0].len, 0, true, &p, NULL),
                     MQTT_OK);
    assert_int_equal(mqtt_decode((const uint8_t *)cases[1].bytes, cases[1].len, 5, false, &p, NULL),
                     MQTT_OK);
    assert_int_equal(mqtt_decode((const uint8_t *)cases[2].bytes, cases[2].len, 5, true, &p, NULL),
                     MQTT_OK);
    assert_int_equal(mqtt_decode((const uint8_t *)cases[3].bytes, cases[3].len, 4, false, &p, NULL),
                     MQTT_OK);
    assert_int_equal(mqtt_decode((const uint8_t *)cases[4].bytes, cases[4].len, 5, false, &p, NULL),
                     MQTT_OK);
    assert_int_equal(mqtt_decode((const uint8_t *)cases[5].bytes, cases[5].len, 5, true, &p, NULL),
                     MQTT_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_again),
        cmocka_unit_test(test_frame_remaining_length_boundaries),
        cmocka_unit_test(test_frame_five_byte_length_rejected),
        cmocka_unit_test(test_frame_non_minimal_length_accepted),
        cmocka_unit_test(test_frame_max_size),
        cmocka_unit_test(test_decode_frame_same_as_decode),
        cmocka_unit_test(test_decode_length_mismatch),
        cmocka_unit_test(test_connect_valid_all_versions),
        cmocka_unit_test(test_connect_bad_protocol_name),
        cmocka_unit_test(test_connect_unsupported_level),
        cmocka_unit_test(test_connect_bridge_level),
        cmocka_unit_test(test_connect_reserved_flag),
        cmocka_unit_test(test_connect_will_qos3),
        cmocka_unit_test(test_connect_will_flags_without_will),
        cmocka_unit_test(test_connect_password_without_username),
        cmocka_unit_test(test_connect_client_id_utf8),
        cmocka_unit_test(test_connect_empty_client_id),
        cmocka_unit_test(test_connect_will_topic_invalid),
        cmocka_unit_test(test_connect_will_payload_format),
        cmocka_unit_test(test_connect_truncated_and_trailing),
        cmocka_unit_test(test_version0_only_connect),
        cmocka_unit_test(test_connect_properties),
        cmocka_unit_test(test_connect_will_properties),
        cmocka_unit_test(test_connack),
        cmocka_unit_test(test_publish_valid),
        cmocka_unit_test(test_publish_fixed_header_flags),
        cmocka_unit_test(test_publish_packet_id_zero),
        cmocka_unit_test(test_publish_topic_invalid),
        cmocka_unit_test(test_publish_empty_topic),
        cmocka_unit_test(test_publish_payload_format),
        cmocka_unit_test(test_publish_subscription_ids),
        cmocka_unit_test(test_publish_properties),
        cmocka_unit_test(test_pub_acks),
        cmocka_unit_test(test_subscribe_valid),
        cmocka_unit_test(test_subscribe_invalid),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_suback_unsuback),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_disconnect),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_reserved_type),
        cmocka_unit_test(test_roundtrip_connect),
        cmocka_unit_test(test_roundtrip_connack),
        cmocka_unit_test(test_roundtrip_publish),
        cmocka_unit_test(test_roundtrip_pub_acks),
        cmocka_unit_test(test_roundtrip_subscribe),
        cmocka_unit_test(test_roundtrip_unsubscribe),
        cmocka_unit_test(test_roundtrip_suback_unsuback),
        cmocka_unit_test(test_roundtrip_ping_disconnect_auth),
        cmocka_unit_test(test_encode_remaining_length_boundaries),
        cmocka_unit_test(test_encode_publish_head),
        cmocka_unit_test(test_encode_publish_plain),
        cmocka_unit_test(test_encode_cannot),
        cmocka_unit_test(test_props_encoding_order),
        cmocka_unit_test(test_props_order_encoded_copy),
        cmocka_unit_test(test_user_props_collect),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hostile_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
