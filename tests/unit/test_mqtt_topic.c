/*
 * Unit tests of UTF-8 validation, topic name / filter validation, shared
 * subscription parsing and topic matching (MQTT 5.0 1.5.4, 4.7, 4.8.2; the
 * same rules in 3.1.1 1.5.3, 4.7). Spec statement ids are in the comments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hato/mqtt.h"

#define U(s) (const uint8_t *)(s), strlen(s)

static bool utf8(const char *s, size_t n) {
    return mqtt_utf8_valid((const uint8_t *)s, n);
}

/* MQTT-1.5.4-1 (ill-formed, surrogates), MQTT-1.5.4-2 (U+0000). */
static void test_utf8(void **state) {
    (void)state;
    assert_true(utf8("", 0));
    assert_true(utf8("plain/ascii", 11));
    assert_true(utf8("\xC2\x80", 2));         /* U+0080 */
    assert_true(utf8("\xDF\xBF", 2));         /* U+07FF */
    assert_true(utf8("\xE0\xA0\x80", 3));     /* U+0800 */
    assert_true(utf8("\xED\x9F\xBF", 3));     /* U+D7FF */
    assert_true(utf8("\xEE\x80\x80", 3));     /* U+E000 */
    assert_true(utf8("\xEF\xBF\xBF", 3));     /* U+FFFF: allowed (SHOULD NOT only) */
    assert_true(utf8("\xEF\xBB\xBF", 3));     /* U+FEFF BOM is not skipped (MQTT-1.5.4-3) */
    assert_true(utf8("\xF0\x90\x80\x80", 4)); /* U+10000 */
    assert_true(utf8("\xF4\x8F\xBF\xBF", 4)); /* U+10FFFF */
    assert_true(utf8("\x01\x1F\x7F", 3));     /* control characters: SHOULD NOT only */
    assert_false(utf8("\x00", 1));            /* U+0000 */
    assert_false(utf8("a\x00"
                      "b",
                      3));
    assert_false(utf8("\xC0\x80", 2));         /* overlong U+0000 */
    assert_false(utf8("\xC1\xBF", 2));         /* overlong */
    assert_false(utf8("\xE0\x9F\xBF", 3));     /* overlong */
    assert_false(utf8("\xF0\x8F\xBF\xBF", 4)); /* overlong */
    assert_false(utf8("\xED\xA0\x80", 3));     /* U+D800 */
    assert_false(utf8("\xED\xBF\xBF", 3));     /* U+DFFF */
    assert_false(utf8("\xF4\x90\x80\x80", 4)); /* U+110000 */
    assert_false(utf8("\xF5\x80\x80\x80", 4));
    assert_false(utf8("\xF8\x88\x80\x80\x80", 5)); /* five-byte form */
    assert_false(utf8("\xFF", 1));
    assert_false(utf8("\x80", 1)); /* lone continuation */
    assert_false(utf8("\xC2", 1)); /* truncated */
    assert_false(utf8("\xE2\x82", 2));
    assert_false(utf8("\xF0\x9F\x98", 3));
    assert_false(utf8("\xC2\x41", 2)); /* bad continuation */
    assert_false(utf8("\xE2\x28\xA1", 3));
}

/* MQTT-4.7.3-1 (non-empty), MQTT-3.3.2-2 / 4.7.1-1 (no wildcards). */
/* The eight-bytes-at-a-time path must see a forbidden byte wherever it
 * is, and take UTF-8 characters cut by a word boundary
 * (MQTT-3.3.2-2, MQTT-1.5.4-1, MQTT-1.5.4-2). */
static void test_topic_name_valid_every_position(void **state) {
    (void)state;
    uint8_t t[40];
    for (size_t len = 1; len <= sizeof(t); len++) {
        for (size_t at = 0; at < len; at++) {
            static const uint8_t bad[] = {'+', '#', 0, 0x80, 0xFF};
            for (size_t k = 0; k < sizeof(bad); k++) {
                memset(t, 'a', len);
                t[at] = bad[k];
                assert_false(mqtt_topic_name_valid(t, len));
            }
            memset(t, 'a', len);
            t[at] = '/';
            assert_true(mqtt_topic_name_valid(t, len));
            if (at + 1 < len) { /* U+00E9 over bytes at, at+1; then cut */
                t[at] = 0xC3, t[at + 1] = 0xA9;
                assert_true(mqtt_topic_name_valid(t, len));
                t[at + 1] = 'a';
                assert_false(mqtt_topic_name_valid(t, len));
            }
        }
    }
}

static void test_topic_name_valid(void **state) {
    (void)state;
    assert_true(mqtt_topic_name_valid(U("a")));
    assert_true(mqtt_topic_name_valid(U("/")));
    assert_true(mqtt_topic_name_valid(U("a//b/")));
    assert_true(mqtt_topic_name_valid(U("$SYS/broker")));
    assert_true(mqtt_topic_name_valid(U("sport/tennis/player1")));
    assert_true(mqtt_topic_name_valid(U(" ")));
    assert_false(mqtt_topic_name_valid(U("")));
    assert_false(mqtt_topic_name_valid(U("a/+")));
    assert_false(mqtt_topic_name_valid(U("a/#")));
    assert_false(mqtt_topic_name_valid(U("a+b")));
    assert_false(mqtt_topic_name_valid((const uint8_t *)"a\0b", 3));
    assert_false(mqtt_topic_name_valid((const uint8_t *)"\xED\xA0\x80", 3));
    /* MQTT-4.7.3-3: at most 65535 bytes. */
    static uint8_t big[65536];
    memset(big, 'a', sizeof big);
    assert_true(mqtt_topic_name_valid(big, 65535));
    assert_false(mqtt_topic_name_valid(big, 65536));
    assert_true(mqtt_topic_filter_valid(big, 65535));
    assert_false(mqtt_topic_filter_valid(big, 65536));
}

/* MQTT-4.7.1-2 ('#' alone and last), MQTT-4.7.1-3 ('+' alone in its level). */
static void test_topic_filter_valid(void **state) {
    (void)state;
    static const char *const good[] = {
        "#",   "+", "+/+", "/+",   "a/#",    "a/+/b",      "sport/tennis/#",
        "+/#", "/", "//",  "a//#", "$SYS/#", "$share/g/a", "+/tennis/#",
    };
    static const char *const bad[] = {
        "", "a#", "#/a", "a/#/b", "a/b#", "a+", "+a", "a/+b/c", "sport/tennis#", "##", "++",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(mqtt_topic_filter_valid(U(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(mqtt_topic_filter_valid(U(bad[i])));
    assert_false(mqtt_topic_filter_valid((const uint8_t *)"a/\0", 3)); /* MQTT-1.5.4-2 */
}

static bool str_is(struct mqtt_str s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* MQTT-4.8.2-1 (share name non-empty, no wildcards), MQTT-4.8.2-2 (filter). */
static void test_shared_split(void **state) {
    (void)state;
    struct mqtt_str g, f;
    assert_int_equal(mqtt_shared_split(U("$share/group/a/b"), &g, &f), 1);
    assert_true(str_is(g, "group") && str_is(f, "a/b"));
    assert_int_equal(mqtt_shared_split(U("$share/g/#"), &g, &f), 1);
    assert_true(str_is(g, "g") && str_is(f, "#"));
    assert_int_equal(mqtt_shared_split(U("$share/g//"), &g, &f), 1);
    assert_true(str_is(f, "/"));
    assert_int_equal(mqtt_shared_split(U("$share/g/a"), NULL, NULL), 1);
    /* Not shared subscriptions. */
    assert_int_equal(mqtt_shared_split(U("a/b"), &g, &f), 0);
    assert_int_equal(mqtt_shared_split(U("$share"), &g, &f), 0);
    assert_int_equal(mqtt_shared_split(U("$SHARE/g/a"), &g, &f), 0);
    assert_int_equal(mqtt_shared_split(U("$sharex/g/a"), &g, &f), 0);
    assert_int_equal(mqtt_shared_split(U("$SYS/a"), &g, &f), 0);
    /* Malformed shared subscriptions. */
    assert_int_equal(mqtt_shared_split(U("$share/"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share/g"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share/g/"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share//a"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share/+/a"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share/g#/a"), &g, &f), -1);
    assert_int_equal(mqtt_shared_split(U("$share/g/a/#/b"), &g, &f), -1);
}

static bool match(const char *filter, const char *topic) {
    return mqtt_topic_match(U(filter), U(topic));
}

/* 4.7.1.2 (multi-level wildcard), 4.7.1.3 (single-level wildcard), 4.7.2
 * (topics beginning with $), 4.7.3 (levels, case sensitivity). */
static void test_topic_match(void **state) {
    (void)state;
    /* 4.7.1.2 examples. */
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
    assert_true(match("sport/#", "sport"));
    assert_false(match("sport/tennis/#", "sport/tennisx"));
    assert_false(match("sport/tennis/player1/#", "sport/tennis"));
    assert_true(match("#", "a"));
    assert_true(match("#", "a/b/c"));
    assert_true(match("#", "/"));
    assert_true(match("a/#", "a/"));
    /* 4.7.1.3 examples. */
    assert_true(match("sport/tennis/+", "sport/tennis/player1"));
    assert_true(match("sport/tennis/+", "sport/tennis/player2"));
    assert_false(match("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert_false(match("sport/+", "sport"));
    assert_true(match("sport/+", "sport/"));
    assert_true(match("+", "a"));
    assert_false(match("+", "a/b"));
    assert_false(match("+", "/a"));
    assert_true(match("+/+", "/finance"));
    assert_true(match("/+", "/finance"));
    assert_false(match("+", "/finance"));
    assert_true(match("+/+", "/"));
    assert_true(match("/+", "/"));
    assert_true(match("+/tennis/#", "sport/tennis/player1"));
    assert_true(match("+/tennis/#", "sport/tennis"));
    assert_true(match("a/+/c", "a//c"));
    assert_false(match("a/+/c", "a/c"));
    assert_true(match("+/#", "a"));
    assert_true(match("+/+/#", "a/b"));
    assert_false(match("a/+/#", "a"));
    /* MQTT-4.7.2-1: $-topics are not matched by a leading wildcard. */
    assert_false(match("#", "$SYS"));
    assert_false(match("#", "$SYS/x"));
    assert_false(match("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert_false(match("+/monitor", "$SYS/monitor"));
    assert_true(match("$SYS/#", "$SYS/x"));
    assert_true(match("$SYS/#", "$SYS"));
    assert_true(match("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert_true(match("$/+", "$/x"));
    assert_true(match("a/#", "a/$b")); /* only the first level is special */
    assert_true(match("+/$b", "a/$b"));
    /* Literal levels: exact and case-sensitive (4.7.3). */
    assert_true(match("a/b", "a/b"));
    assert_false(match("a/b", "A/b"));
    assert_false(match("a/b", "a/b/"));
    assert_false(match("a/b/", "a/b"));
    assert_false(match("a/b", "a/bc"));
    assert_false(match("a/bc", "a/b"));
    assert_false(match("a", "a/b"));
    assert_true(match("/", "/"));
    assert_true(match("//", "//"));
    assert_false(match("//", "/"));
    assert_true(match("\xC3\xA9/+", "\xC3\xA9/x"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_topic_name_valid),
        cmocka_unit_test(test_topic_name_valid_every_position),
        cmocka_unit_test(test_topic_filter_valid),
        cmocka_unit_test(test_shared_split),
        cmocka_unit_test(test_topic_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
