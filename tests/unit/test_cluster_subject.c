/*
 * Unit tests of the MQTT topic <-> NATS subject mapping (src/cluster/subject.h,
 * docs/internals/cluster-subject.md). The main check is semantic: for every
 * pair of a set of filters and topics, MQTT matching (mqtt_topic_match,
 * MQTT-4.7) agrees with NATS matching of the mapped subjects, done here by a
 * small matcher written from the NATS subject rules ('*' one token, '>' one
 * or more final tokens).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/subject.h"
#include "hato/mqtt.h"

#define P "hato.c1"
#define U(s) (const uint8_t *)(s), strlen(s)

/* NATS matching: subject tokens against pattern tokens. */
static bool nats_match(const char *pat, const char *subj) {
    for (;;) {
        const char *pe = strchr(pat, '.'), *se = strchr(subj, '.');
        size_t pn = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sn = se ? (size_t)(se - subj) : strlen(subj);
        if (pn == 1 && pat[0] == '>')
            return sn > 0; /* one or more tokens left */
        if (!(pn == 1 && pat[0] == '*') && (pn != sn || memcmp(pat, subj, pn) != 0))
            return false;
        if (!pe || !se)
            return !pe && !se;
        pat = pe + 1;
        subj = se + 1;
    }
}

static void check_subject_chars(const char *s) {
    /* NATS: no whitespace in a subject, no empty token. */
    for (const char *c = s; *c; c++)
        assert_false(*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n');
    assert_null(strstr(s, ".."));
    assert_true(s[strlen(s) - 1] != '.');
}

/* A topic's subject is also a valid JetStream key-value key. */
static void check_kv_key(const char *s) {
    for (const char *c = s; *c; c++)
        if (!(strchr("-/_=.", *c) || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9')))
            fail_msg("'%s': '%c' is not allowed in a key-value key", s, *c);
}

static const char *const topics[] = {
    "a",
    "a/b",
    "a/b/c",
    "/",
    "/a",
    "a/",
    "a//b",
    "//",
    "$SYS",
    "$SYS/x",
    "$SYS/x/y",
    "$",
    "$a/b",
    "a/$b",
    "a.b",
    "a*b",
    "a>b",
    "*",
    ">",
    "a/*/>",
    "sp ace",
    "tab\tx",
    "%",
    "%25",
    "%2",
    "a%/b",
    "_",
    "-",
    "caf\xc3\xa9/th\xc3\xa9",
    "\xe6\x97\xa5\xe6\x9c\xac",
    "m",
    "s",
    "s/a",
    "b/a",
    "A/B",
    "a/b/c/d/e",
    "sensors/temp",
    "sensors/temp/1",
    "sensors",
};

static const char *const filters[] = {
    "#",
    "+",
    "a",
    "a/#",
    "a/+",
    "+/b",
    "+/+",
    "a/b/#",
    "a/+/c",
    "/#",
    "+/#",
    "$SYS/#",
    "$SYS/+",
    "$SYS",
    "+/x",
    "a//b",
    "//",
    "a/",
    "/",
    "a.b",
    "a*b",
    "*",
    ">",
    "%",
    "sensors/#",
    "sensors/+",
    "sensors/+/1",
    "$a/#",
    "+/$b",
    "s/#",
    "m/#",
    "A/#",
    "caf\xc3\xa9/#",
    "\xe6\x97\xa5\xe6\x9c\xac",
};

/* Every filter and topic pair: MQTT's answer is NATS's on the subjects. */
static void test_matching_agrees(void **state) {
    (void)state;
    size_t nt = sizeof topics / sizeof *topics, nf = sizeof filters / sizeof *filters;
    for (size_t f = 0; f < nf; f++) {
        char s0[CL_SUBJECT_MAX + 1], s1[CL_SUBJECT_MAX + 1];
        int n = cl_filter_subjects(P, U(filters[f]), s0, s1, sizeof s0);
        assert_true(n == 1 || n == 2);
        check_subject_chars(s0);
        if (n == 2)
            check_subject_chars(s1);
        for (size_t t = 0; t < nt; t++) {
            char st[CL_SUBJECT_MAX + 1];
            assert_true(cl_topic_subject(P, U(topics[t]), st, sizeof st) > 0);
            bool mqtt = mqtt_topic_match(U(filters[f]), U(topics[t]));
            bool nats = nats_match(s0, st) || (n == 2 && nats_match(s1, st));
            if (mqtt != nats)
                fail_msg("filter '%s' topic '%s': MQTT %d, NATS %d (%s | %s vs %s)", filters[f],
                         topics[t], mqtt, nats, s0, n == 2 ? s1 : "-", st);
        }
    }
}

/* Reversible: the subject gives back the topic, byte for byte; and distinct
 * topics give distinct subjects. */
static void test_round_trip(void **state) {
    (void)state;
    size_t nt = sizeof topics / sizeof *topics;
    char seen[sizeof topics / sizeof *topics][CL_SUBJECT_MAX + 1];
    for (size_t t = 0; t < nt; t++) {
        int n = cl_topic_subject(P, U(topics[t]), seen[t], sizeof seen[t]);
        assert_true(n > 0);
        check_subject_chars(seen[t]);
        check_kv_key(seen[t]);
        uint8_t back[256];
        int m = cl_subject_topic(P, seen[t], (size_t)n, back, sizeof back);
        assert_int_equal(m, (int)strlen(topics[t]));
        assert_memory_equal(back, topics[t], (size_t)m);
        for (size_t u = 0; u < t; u++)
            assert_string_not_equal(seen[u], seen[t]);
    }
    /* Every byte value that MQTT allows in a level, alone. */
    for (int c = 1; c < 256; c++) {
        if (c == '/' || c == '+' || c == '#')
            continue;
        uint8_t topic[3] = {'x', '/', (uint8_t)c};
        char s[64];
        int n = cl_topic_subject(P, topic, 3, s, sizeof s);
        assert_true(n > 0);
        check_subject_chars(s);
        check_kv_key(s);
        uint8_t back[8];
        assert_int_equal(cl_subject_topic(P, s, (size_t)n, back, sizeof back), 3);
        assert_memory_equal(back, topic, 3);
    }
}

static void test_examples(void **state) {
    (void)state;
    char s[128], s1[128];
    assert_int_equal(cl_topic_subject(P, U("sensors/temp"), s, sizeof s), 22);
    assert_string_equal(s, "hato.c1.m.sensors.temp");
    cl_topic_subject(P, U("$SYS/broker"), s, sizeof s);
    assert_string_equal(s, "hato.c1.s.=24SYS.broker");
    cl_topic_subject(P, U("a//b.c"), s, sizeof s);
    assert_string_equal(s, "hato.c1.m.a.=.b=2Ec");
    assert_int_equal(cl_filter_subjects(P, U("#"), s, s1, sizeof s), 1);
    assert_string_equal(s, "hato.c1.m.>");
    assert_int_equal(cl_filter_subjects(P, U("a/+/#"), s, s1, sizeof s), 2);
    assert_string_equal(s, "hato.c1.m.a.*");
    assert_string_equal(s1, "hato.c1.m.a.*.>");
    assert_int_equal(cl_filter_subjects(P, U("$SYS/#"), s, s1, sizeof s), 2);
    assert_string_equal(s, "hato.c1.s.=24SYS");
    assert_int_equal(cl_subject_prefix("prod.eu 1", s, sizeof s), 18);
    assert_string_equal(s, "hato.prod=2Eeu=201");
}

static void test_refusals(void **state) {
    (void)state;
    char s[CL_SUBJECT_MAX + 1], s1[CL_SUBJECT_MAX + 1];
    uint8_t t[64];
    /* Not topics / filters. */
    assert_int_equal(cl_topic_subject(P, U("a/+"), s, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_topic_subject(P, U("a/#"), s, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_topic_subject(P, (const uint8_t *)"", 0, s, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_topic_subject(P, (const uint8_t *)"a\0b", 3, s, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_filter_subjects(P, U("a/#/b"), s, s1, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_filter_subjects(P, U("a+"), s, s1, sizeof s), CL_SUBJ_INVALID);
    assert_int_equal(cl_filter_subjects(P, U("a/b#"), s, s1, sizeof s), CL_SUBJ_INVALID);
    /* Too long: a topic whose subject is over CL_SUBJECT_MAX, or over cap. */
    static uint8_t big[CL_SUBJECT_MAX];
    memset(big, '.', sizeof big); /* each '.' is 3 bytes escaped */
    assert_int_equal(cl_topic_subject(P, big, CL_SUBJECT_MAX / 3, s, sizeof s), CL_SUBJ_TOO_LONG);
    assert_true(cl_topic_subject(P, big, 100, s, sizeof s) > 0);
    assert_int_equal(cl_topic_subject(P, U("abc"), s, 8), CL_SUBJ_TOO_LONG);
    assert_int_equal(cl_filter_subjects(P, big, CL_SUBJECT_MAX / 3, s, s1, sizeof s),
                     CL_SUBJ_TOO_LONG);
    /* Subjects no topic maps to. */
    const char *bad[] = {
        "hato.c2.m.a",      /* another cluster */
        "hato.c1.x.a",      /* no such section */
        "hato.c1.m",        /* no level */
        "hato.c1.m.",       /* empty token */
        "hato.c1.m.a..b",   /* empty token */
        "hato.c1.m.*",      /* a wildcard */
        "hato.c1.m.a.>",    /* a wildcard */
        "hato.c1.m.=2",     /* short escape */
        "hato.c1.m.=2e",    /* lower-case hex: never written */
        "hato.c1.m.=41",    /* 'A' escaped: never written */
        "hato.c1.m.=2F",    /* '/' inside a level */
        "hato.c1.m.=2B",    /* '+' */
        "hato.c1.m.=00",    /* NUL */
        "hato.c1.m.=24SYS", /* a '$' topic under .m */
        "hato.c1.s.SYS",    /* a non-'$' topic under .s */
        "hato.c1.s.=",      /* the empty level under .s */
        "hato.c1.m.a=b",    /* '=' not an escape */
        "hato.c1.m.=",      /* the empty topic, which MQTT has not */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (cl_subject_topic(P, bad[i], strlen(bad[i]), t, sizeof t) != CL_SUBJ_INVALID)
            fail_msg("'%s' was taken as a topic", bad[i]);
    /* The output bound of the reverse direction. */
    assert_int_equal(cl_subject_topic(P, "hato.c1.m.abc.d", 15, t, 3), CL_SUBJ_TOO_LONG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching_agrees),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
