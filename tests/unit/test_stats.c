/* Unit tests of the statistics arithmetic (src/broker/stats.c, msg.c's tally):
 * Mosquitto-style load averages, the queue depth sampling, live message counts. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "broker/msg.h"
#include "broker/stats.h"

#define assert_near(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

/* A constant rate settles at that rate per minute in every window. */
static void test_constant_rate_converges(void **state) {
    (void)state;
    double l[3] = {0, 0, 0};
    for (int i = 0; i < 4 * 3600; i++)
        stats_load_step(l, 10, 1.0); /* 10 per second = 600 per minute */
    for (int k = 0; k < 3; k++)
        assert_near(l[k], 600.0, 0.5);
}

/* From zero, one minute of 600/min gives 600 (1 - e^(-60/T)) for T = 60, 300, 900 s. */
static void test_step_response(void **state) {
    (void)state;
    double l[3] = {0, 0, 0};
    for (int i = 0; i < 60; i++)
        stats_load_step(l, 10, 1.0);
    assert_near(l[0], 600 * (1 - exp(-1.0)), 1e-6);
    assert_near(l[1], 600 * (1 - exp(-0.2)), 1e-6);
    assert_near(l[2], 600 * (1 - exp(-60.0 / 900)), 1e-6);
}

/* The result does not depend on the tick: sys_interval 1 and 10 agree. */
static void test_interval_independent(void **state) {
    (void)state;
    double a[3] = {0, 0, 0}, b[3] = {0, 0, 0};
    for (int i = 0; i < 120; i++)
        stats_load_step(a, 5, 1.0);
    for (int i = 0; i < 12; i++)
        stats_load_step(b, 50, 10.0);
    for (int k = 0; k < 3; k++)
        assert_near(a[k], b[k], 1e-9);
}

/* Silence decays by e per window length; a zero or negative interval changes nothing. */
static void test_decay_and_bad_interval(void **state) {
    (void)state;
    double l[3] = {600, 600, 600};
    stats_load_step(l, 0, 60.0);
    assert_near(l[0], 600 / M_E, 1e-9);
    assert_near(l[1], 600 * exp(-0.2), 1e-9);
    double before[3];
    memcpy(before, l, sizeof(l));
    stats_load_step(l, 1000, 0);
    stats_load_step(l, 1000, -1);
    assert_memory_equal(before, l, sizeof(l));
}

/* One delivery in STATS_QDEPTH_SAMPLE is recorded, in the bucket of its depth. */
static void test_qdepth_sampling(void **state) {
    (void)state;
    struct stats_counters sc;
    memset(&sc, 0, sizeof(sc));
    for (int i = 0; i < 10 * STATS_QDEPTH_SAMPLE; i++)
        stats_qdepth_sample(&sc, 7);
    unsigned long total = 0;
    for (int i = 0; i <= STATS_HISTO_MAX; i++)
        total += atomic_load(&sc.qd_counts[i]);
    assert_int_equal(total, 10);
    assert_int_equal(atomic_load(&sc.qd_sum), 70);
}

/* Messages made and freed on a thread with counters of its own are counted there. */
static void test_live_message_tally(void **state) {
    (void)state;
    atomic_llong count = 0, bytes = 0;
    msg_tally_thread(&count, &bytes);
    struct msg *a = msg_new("a", 1, (const uint8_t *)"12345", 5, 0, false, NULL, 0, NULL);
    struct msg *b = msg_new("b", 1, (const uint8_t *)"xy", 2, 0, false, NULL, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(atomic_load(&count), 2);
    assert_int_equal(atomic_load(&bytes), 7);
    msg_ref(a);
    msg_unref(a); /* not the last reference */
    assert_int_equal(atomic_load(&count), 2);
    msg_unref(a);
    msg_unref(b);
    assert_int_equal(atomic_load(&count), 0);
    assert_int_equal(atomic_load(&bytes), 0);
    msg_tally_thread(NULL, NULL);
    long long oc = -1, ob = -1;
    struct msg *c = msg_new("c", 1, (const uint8_t *)"z", 1, 0, false, NULL, 0, NULL);
    msg_tally_other(&oc, &ob);
    assert_int_equal(oc, 1); /* the shared pair, for threads without counters */
    assert_int_equal(ob, 1);
    msg_unref(c);
    msg_tally_other(&oc, &ob);
    assert_int_equal(oc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_rate_converges),
        cmocka_unit_test(test_step_response),
        cmocka_unit_test(test_interval_independent),
        cmocka_unit_test(test_decay_and_bad_interval),
        cmocka_unit_test(test_qdepth_sampling),
        cmocka_unit_test(test_live_message_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
