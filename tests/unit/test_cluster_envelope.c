/*
 * Unit tests of the cluster's message envelope (src/cluster/envelope.h):
 * round trips of every field, sizes, and refusal of every malformed input
 * (short, unknown version, bad flags, lengths past the end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/envelope.h"

static struct cl_env sample(void) {
    static const uint8_t props[] = {0x26, 0, 1, 'k', 0, 1, 'v'};
    return (struct cl_env){
        .qos = 2,
        .retain = true,
        .via_bridge = true,
        .origin = 0x0102030405060708ull,
        .seq = 0xfffffffffffffffeull,
        .publisher = 42,
        .sent_ms = 1796655000123,
        .expiry_at = -1,
        .topic = (const uint8_t *)"a/b/c",
        .topic_len = 5,
        .props = props,
        .props_len = sizeof props,
        .payload = (const uint8_t *)"hello",
        .payload_len = 5,
    };
}

static void test_round_trip(void **state) {
    (void)state;
    struct cl_env e = sample(), d;
    uint8_t buf[256];
    size_t n = cl_env_encode(&e, buf, sizeof buf);
    assert_int_equal(n, cl_env_size(&e));
    assert_int_equal(n, CL_ENV_FIXED + 2 + 5 + 4 + 7 + 5);
    const char *why = NULL;
    assert_int_equal(cl_env_decode(buf, n, &d, &why), 0);
    assert_int_equal(d.qos, 2);
    assert_true(d.retain);
    assert_true(d.via_bridge);
    assert_true(d.origin == e.origin && d.seq == e.seq && d.publisher == 42);
    assert_true(d.sent_ms == e.sent_ms && d.expiry_at == -1);
    assert_int_equal(d.topic_len, 5);
    assert_memory_equal(d.topic, "a/b/c", 5);
    assert_int_equal(d.props_len, 7);
    assert_memory_equal(d.props, e.props, 7);
    assert_int_equal(d.payload_len, 5);
    assert_memory_equal(d.payload, "hello", 5);
}

/* Every QoS and flag combination; an empty payload and no properties. */
static void test_flags_and_empty(void **state) {
    (void)state;
    for (int q = 0; q < 3; q++)
        for (int f = 0; f < 4; f++) {
            struct cl_env e = sample(), d;
            e.qos = (uint8_t)q;
            e.retain = f & 1;
            e.via_bridge = f & 2;
            e.props_len = 0;
            e.payload_len = 0;
            uint8_t buf[128];
            size_t n = cl_env_encode(&e, buf, sizeof buf);
            assert_true(n > 0);
            const char *why = NULL;
            assert_int_equal(cl_env_decode(buf, n, &d, &why), 0);
            assert_int_equal(d.qos, q);
            assert_int_equal(d.retain, (f & 1) != 0);
            assert_int_equal(d.via_bridge, (f & 2) != 0);
            assert_int_equal(d.payload_len, 0);
            assert_int_equal(d.props_len, 0);
        }
}

static void test_encode_refuses(void **state) {
    (void)state;
    struct cl_env e = sample();
    uint8_t buf[256];
    assert_int_equal(cl_env_encode(&e, buf, cl_env_size(&e) - 1), 0); /* too small */
    e.qos = 3;
    assert_int_equal(cl_env_encode(&e, buf, sizeof buf), 0);
}

static void test_decode_refuses(void **state) {
    (void)state;
    struct cl_env e = sample(), d;
    uint8_t buf[256];
    size_t n = cl_env_encode(&e, buf, sizeof buf);
    const char *why = NULL;
    /* Every truncation before the payload is refused (cutting the payload is not detectable). */
    for (size_t k = 0; k < CL_ENV_FIXED + 2 + 5 + 4 + 7; k++) {
        why = NULL;
        assert_int_equal(cl_env_decode(buf, k, &d, &why), -1);
        assert_non_null(why);
    }
    uint8_t bad[256];
    memcpy(bad, buf, n);
    bad[0] = 2; /* version */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
    memcpy(bad, buf, n);
    bad[1] = 3; /* QoS 3 */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
    memcpy(bad, buf, n);
    bad[1] |= 0x10; /* reserved bit */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
    memcpy(bad, buf, n);
    bad[CL_ENV_FIXED] = 0xff; /* topic length past the end */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
    memcpy(bad, buf, n);
    bad[CL_ENV_FIXED] = 0;
    bad[CL_ENV_FIXED + 1] = 0; /* empty topic */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
    memcpy(bad, buf, n);
    bad[CL_ENV_FIXED + 2 + 5] = 0x7f; /* properties length past the end */
    assert_int_equal(cl_env_decode(bad, n, &d, &why), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_flags_and_empty),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_decode_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
