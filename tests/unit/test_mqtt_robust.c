/*
 * Robustness regressions of the codec: decisions taken on hostile input
 * (issue 7) and any input a fuzzer found to crash or misbehave. Every case
 * names the rule or the fuzz target it comes from.
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

/* MQTT-1.5.5-1: MQTT 5 Remaining Length must be minimal; 3.1/3.1.1 keep
 * accepting longer forms (no such rule in 3.1.1 2.2.3; Mosquitto accepts). */
static void test_non_minimal_remaining_length_v5_malformed_MQTT_1_5_5_1(void **state) {
    (void)state;
    struct mqtt_packet p;
    uint8_t rc = 0;
    /* PINGREQ, remaining length 0 in two bytes. */
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x80, 0x00), MQTT_V5, true, &p, &rc), MQTT_ERR);
    assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x80, 0x00), MQTT_V311, true, &p, &rc), MQTT_OK);
    assert_int_equal(mqtt_decode(BYTES(0xC0, 0x80, 0x00), MQTT_V31, true, &p, &rc), MQTT_OK);
    /* Minimal multi-byte lengths stay fine: PUBLISH "t" + 200 bytes (len 203 = 0xCB 0x01). */
    uint8_t pub[3 + 203] = {0x30, 0xCB, 0x01, 0x00, 0x01, 't', 0x00};
    assert_int_equal(mqtt_decode(pub, sizeof pub, MQTT_V5, true, &p, &rc), MQTT_OK);
    /* The same with a three-byte length: malformed in 5, fine in 3.1.1. */
    uint8_t pub3[4 + 202] = {0x30, 0xCA, 0x81, 0x00, 0x00, 0x01, 't'};
    assert_int_equal(mqtt_decode(pub3, sizeof pub3, MQTT_V5, true, &p, &rc), MQTT_ERR);
    assert_int_equal(mqtt_decode(pub3, sizeof pub3, MQTT_V311, true, &p, &rc), MQTT_OK);
}

/* A CONNECT announcing MQTT 5 is checked as MQTT 5 (decoded before any version). */
static void test_non_minimal_connect_v5_malformed_MQTT_1_5_5_1(void **state) {
    (void)state;
    struct mqtt_packet p;
    uint8_t rc = 0;
    /* CONNECT v5, clean start, keep alive 60, no properties, client id "c". */
    static const uint8_t body[] = {0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 1, 'c'};
    uint8_t minimal[2 + sizeof body] = {0x10, sizeof body};
    memcpy(minimal + 2, body, sizeof body);
    assert_int_equal(mqtt_decode(minimal, sizeof minimal, 0, true, &p, &rc), MQTT_OK);
    uint8_t longer[3 + sizeof body] = {0x10, 0x80 | sizeof body, 0x00};
    memcpy(longer + 3, body, sizeof body);
    assert_int_equal(mqtt_decode(longer, sizeof longer, 0, true, &p, &rc), MQTT_ERR);
    assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_non_minimal_remaining_length_v5_malformed_MQTT_1_5_5_1),
        cmocka_unit_test(test_non_minimal_connect_v5_malformed_MQTT_1_5_5_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
