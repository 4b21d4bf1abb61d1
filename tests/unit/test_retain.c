/* Unit tests of the retained-message store (src/broker/retain.c). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/msg.h"
#include "broker/retain.h"

/* ---- helpers ------------------------------------------------------------ */

static struct msg *mk(const char *topic, const char *payload) {
    struct msg *m = msg_new(topic, strlen(topic), (const uint8_t *)payload, strlen(payload), 1,
                            true, NULL, 0, NULL);
    assert_non_null(m);
    return m;
}

/* Store a message for topic and drop the test's own reference. */
static void put(struct retain_store *rs, const char *topic, const char *payload) {
    struct msg *m = mk(topic, payload);
    assert_int_equal(retain_set(rs, m), 0);
    msg_unref(m);
}

struct seen {
    char **topics;
    size_t n, cap;
};

static void collect(void *ctx, struct msg *m) {
    struct seen *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->topics = realloc(s->topics, s->cap * sizeof(*s->topics));
        assert_non_null(s->topics);
    }
    s->topics[s->n++] = (char *)m->topic;
}

static void match(struct retain_store *rs, const char *filter, struct seen *s) {
    s->n = 0;
    retain_match(rs, filter, strlen(filter), collect, s);
}

static bool has(const struct seen *s, const char *topic) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->topics[i], topic) == 0)
            return true;
    return false;
}

/* Reference matcher by whole levels, with the '$' rule. */
static bool ref_match(const char *filter, const char *topic) {
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {
        const char *fe = strchr(f, '/'), *te = t ? strchr(t, '/') : NULL;
        size_t fl = fe ? (size_t)(fe - f) : strlen(f);
        if (fl == 1 && f[0] == '#')
            return true;
        if (!t)
            return false;
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        if (!fe)
            return !te;
        f = fe + 1;
        t = te ? te + 1 : NULL;
    }
}

static const char *corpus[] = {"a",
                               "a/b",
                               "a/b/c",
                               "a/c",
                               "a/b/c/d",
                               "b",
                               "/",
                               "/a",
                               "a//b",
                               "a/",
                               "//",
                               "$SYS",
                               "$SYS/x",
                               "$SYS/x/y",
                               "a/$x",
                               "x/y/z",
                               "sport/tennis/player1"};
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

static struct retain_store *corpus_store(void) {
    struct retain_store *rs = retain_new();
    assert_non_null(rs);
    for (size_t i = 0; i < NCORPUS; i++)
        put(rs, corpus[i], "p");
    assert_int_equal(retain_count(rs), NCORPUS);
    return rs;
}

/* Check `filter` against the whole corpus: exactly the reference's topics. */
static void check_filter(struct retain_store *rs, const char *filter) {
    struct seen s = {0};
    match(rs, filter, &s);
    size_t want = 0;
    for (size_t i = 0; i < NCORPUS; i++) {
        bool m = ref_match(filter, corpus[i]);
        want += m;
        if (m != has(&s, corpus[i]))
            fail_msg("filter '%s' topic '%s': store %d, reference %d", filter, corpus[i],
                     has(&s, corpus[i]), m);
    }
    assert_int_equal(s.n, want);
    free(s.topics);
}

/* ---- tests -------------------------------------------------------------- */

static void test_set_replace_delete(void **state) {
    (void)state;
    struct retain_store *rs = retain_new();
    struct seen s = {0};
    struct msg *m1 = mk("a/b", "one");
    assert_int_equal(retain_set(rs, m1), 0);
    assert_int_equal(atomic_load(&m1->refs), 2); /* the store took its own reference */
    assert_int_equal(retain_count(rs), 1);
    match(rs, "a/b", &s);
    assert_int_equal(s.n, 1);

    struct msg *m2 = mk("a/b", "two");
    assert_int_equal(retain_set(rs, m2), 0);
    assert_int_equal(atomic_load(&m1->refs), 1); /* replaced: released */
    assert_int_equal(atomic_load(&m2->refs), 2);
    assert_int_equal(retain_count(rs), 1);
    match(rs, "a/b", &s);
    assert_int_equal(s.n, 1);
    assert_ptr_equal(s.topics[0], m2->topic);

    /* MQTT-3.3.1-10/-11: an empty payload deletes and is not stored. */
    struct msg *del = mk("a/b", "");
    assert_int_equal(retain_set(rs, del), 0);
    assert_int_equal(atomic_load(&del->refs), 1);
    assert_int_equal(atomic_load(&m2->refs), 1);
    assert_int_equal(retain_count(rs), 0);
    match(rs, "a/b", &s);
    assert_int_equal(s.n, 0);
    assert_int_equal(retain_node_count(rs), 0);
    /* Deleting what is not there is a no-op. */
    assert_int_equal(retain_set(rs, del), 0);
    struct msg *del2 = mk("x/y", "");
    assert_int_equal(retain_set(rs, del2), 0);
    assert_int_equal(retain_node_count(rs), 0);

    msg_unref(m1);
    msg_unref(m2);
    msg_unref(del);
    msg_unref(del2);
    free(s.topics);
    retain_free(rs);
}

static void test_match_exact_plus_hash(void **state) {
    (void)state;
    struct retain_store *rs = corpus_store();
    static const char *filters[] = {"a",
                                    "a/b",
                                    "a/b/c",
                                    "zz",
                                    "+",
                                    "+/b",
                                    "a/+",
                                    "+/+",
                                    "a/+/c",
                                    "+/+/+",
                                    "#",
                                    "a/#",
                                    "a/b/#",
                                    "+/#",
                                    "a/+/#",
                                    "sport/tennis/player1/#",
                                    "sport/+/player1",
                                    "x/#"};
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        check_filter(rs, filters[i]);
    struct seen s = {0};
    match(rs, "a/#", &s); /* parent level */
    assert_true(has(&s, "a"));
    assert_true(has(&s, "a/b/c/d"));
    free(s.topics);
    retain_free(rs);
}

static void test_empty_levels(void **state) {
    (void)state;
    struct retain_store *rs = corpus_store();
    static const char *filters[] = {"/",  "/a",  "+/a", "/+",    "+/+", "a//b", "a/+/b",
                                    "a/", "a/+", "//",  "+/+/+", "/#",  "+",    "a//#"};
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        check_filter(rs, filters[i]);
    retain_free(rs);
}

static void test_mqtt_4_7_2_1_dollar_topics_not_matched_by_first_level_wildcards(void **state) {
    (void)state;
    struct retain_store *rs = corpus_store();
    struct seen s = {0};
    match(rs, "#", &s);
    assert_false(has(&s, "$SYS"));
    assert_false(has(&s, "$SYS/x"));
    assert_true(has(&s, "a/$x"));
    match(rs, "+/x", &s);
    assert_int_equal(s.n, 0);
    match(rs, "$SYS/#", &s);
    assert_int_equal(s.n, 3);
    match(rs, "$SYS/+", &s);
    assert_int_equal(s.n, 1);
    match(rs, "a/+", &s);
    assert_true(has(&s, "a/$x"));
    static const char *filters[] = {"#", "+", "+/+", "+/#", "$SYS", "$SYS/x/+", "a/+"};
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
        check_filter(rs, filters[i]);
    free(s.topics);
    retain_free(rs);
}

static void test_prune_and_foreach(void **state) {
    (void)state;
    struct retain_store *rs = corpus_store();
    struct seen s = {0};
    retain_foreach(rs, collect, &s);
    assert_int_equal(s.n, NCORPUS);
    for (size_t i = 0; i < NCORPUS; i++)
        assert_true(has(&s, corpus[i]));
    assert_true(retain_node_count(rs) > 0);
    for (size_t i = NCORPUS; i-- > 0;)
        put(rs, corpus[(i * 5) % NCORPUS], "");
    assert_int_equal(retain_count(rs), 0);
    assert_int_equal(retain_node_count(rs), 0);
    s.n = 0;
    retain_foreach(rs, collect, &s);
    assert_int_equal(s.n, 0);
    free(s.topics);
    retain_free(rs);
}

static void test_expiry(void **state) {
    (void)state;
    struct retain_store *rs = retain_new();
    struct seen s = {0};
    int64_t now = msg_now_ms();
    struct msg *old = mk("e/old", "x");
    old->expiry_at = now - 1000; /* already expired */
    struct msg *later = mk("e/later", "x");
    later->expiry_at = now + 3600 * 1000;
    struct msg *deep = mk("e/d/e/e/p", "x");
    deep->expiry_at = now - 1;
    assert_int_equal(retain_set(rs, old), 0);
    assert_int_equal(retain_set(rs, later), 0);
    assert_int_equal(retain_set(rs, deep), 0);
    put(rs, "e/never", "x");
    assert_int_equal(retain_count(rs), 4);

    /* Expired messages are skipped by matching, visible to foreach until removed. */
    match(rs, "e/#", &s);
    assert_int_equal(s.n, 2);
    assert_true(has(&s, "e/later"));
    assert_true(has(&s, "e/never"));
    match(rs, "e/old", &s);
    assert_int_equal(s.n, 0);
    s.n = 0;
    retain_foreach(rs, collect, &s);
    assert_int_equal(s.n, 4);

    assert_int_equal(retain_expire(rs, now), 2);
    assert_int_equal(atomic_load(&old->refs), 1);
    assert_int_equal(atomic_load(&deep->refs), 1);
    assert_int_equal(retain_count(rs), 2);
    assert_int_equal(retain_expire(rs, now), 0); /* nothing due until "later" */
    assert_int_equal(retain_expire(rs, now + 3600 * 1000 + 1), 1);
    assert_int_equal(retain_count(rs), 1);
    put(rs, "e/never", "");
    assert_int_equal(retain_node_count(rs), 0);

    msg_unref(old);
    msg_unref(later);
    msg_unref(deep);
    free(s.topics);
    retain_free(rs);
}

static void test_many_topics(void **state) {
    (void)state;
    enum { N = 100000 };
    struct retain_store *rs = retain_new();
    struct seen s = {0};
    char t[64];
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "dev/%d/%s", i, i % 2 ? "temp" : "hum");
        put(rs, t, "v");
    }
    assert_int_equal(retain_count(rs), N);
    match(rs, "#", &s);
    assert_int_equal(s.n, N);
    match(rs, "dev/+/temp", &s);
    assert_int_equal(s.n, N / 2);
    match(rs, "dev/777/+", &s);
    assert_int_equal(s.n, 1);
    assert_true(has(&s, "dev/777/temp"));
    match(rs, "dev/+", &s);
    assert_int_equal(s.n, 0);
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "dev/%d/%s", i, i % 2 ? "temp" : "hum");
        put(rs, t, "");
    }
    assert_int_equal(retain_count(rs), 0);
    assert_int_equal(retain_node_count(rs), 0);
    free(s.topics);
    retain_free(rs);
}

static void test_deep_topic_without_recursion(void **state) {
    (void)state;
    enum { L = 30000 };
    char *topic = malloc(2 * L), *filter = malloc(2 * L);
    assert_non_null(topic);
    assert_non_null(filter);
    for (int i = 0; i < L; i++) {
        topic[2 * i] = 'a';
        filter[2 * i] = '+';
        topic[2 * i + 1] = filter[2 * i + 1] = '/';
    }
    size_t tl = 2 * L - 1;
    topic[tl] = filter[tl] = 0;
    struct retain_store *rs = retain_new();
    struct seen s = {0};
    put(rs, topic, "deep");
    put(rs, "a", "shallow");
    match(rs, filter, &s);
    assert_int_equal(s.n, 1);
    match(rs, "#", &s);
    assert_int_equal(s.n, 2);
    match(rs, "a/#", &s);
    assert_int_equal(s.n, 2);
    filter[tl - 1] = '#';
    match(rs, filter, &s);
    assert_int_equal(s.n, 1);
    free(topic);
    free(filter);
    free(s.topics);
    retain_free(rs); /* deep teardown */
}

/* Random topics and filters against the reference. */
static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void test_differential_random(void **state) {
    (void)state;
    enum { NT = 300, NF = 2000 };
    static char topics[NT][64];
    static bool live[NT];
    static const char *tl[] = {"a", "b", "", "ab"};
    static const char *fl[] = {"a", "b", "", "+", "+", "ab"};
    struct retain_store *rs = retain_new();
    struct seen s = {0};
    for (int i = 0; i < NT; i++) {
        int n = 1 + (int)rnd(5);
        topics[i][0] = 0;
        for (int k = 0; k < n; k++) {
            if (k)
                strcat(topics[i], "/");
            strcat(topics[i], k == 0 && rnd(6) == 0 ? "$s" : tl[rnd(4)]);
        }
    }
    for (int j = 0; j < NF; j++) {
        int i = (int)rnd(NT);
        put(rs, topics[i], live[i] ? "" : "v");
        live[i] = !live[i];
        /* duplicate topics share liveness */
        for (int k = 0; k < NT; k++)
            if (strcmp(topics[k], topics[i]) == 0)
                live[k] = live[i];

        char f[64] = "";
        int n = 1 + (int)rnd(5);
        for (int k = 0; k < n; k++) {
            if (k)
                strcat(f, "/");
            if (k == n - 1 && rnd(4) == 0)
                strcat(f, "#");
            else
                strcat(f, k == 0 && rnd(8) == 0 ? "$s" : fl[rnd(6)]);
        }
        match(rs, f, &s);
        size_t want = 0;
        for (int k = 0; k < NT; k++) {
            bool dup = false;
            for (int q = 0; q < k && !dup; q++)
                dup = strcmp(topics[q], topics[k]) == 0;
            if (dup)
                continue;
            bool m = live[k] && ref_match(f, topics[k]);
            want += m;
            if (m != has(&s, topics[k]))
                fail_msg("filter '%s' topic '%s': store %d, reference %d", f, topics[k],
                         has(&s, topics[k]), m);
        }
        assert_int_equal(s.n, want);
    }
    free(s.topics);
    retain_free(rs);
}

/* ---- concurrency smoke -------------------------------------------------- */

struct conc {
    struct retain_store *rs;
    int iters;
    int failures;
};

static void count_stable(void *ctx, struct msg *m) {
    size_t *n = ctx;
    if (strncmp(m->topic, "stable/", 7) == 0)
        (*n)++;
}

static void *reader(void *arg) {
    struct conc *c = arg;
    static const char *filters[] = {"#", "stable/+", "+/1", "churn/#", "stable/#"};
    for (int i = 0; i < c->iters; i++) {
        const char *f = filters[i % 5];
        size_t n = 0;
        retain_match(c->rs, f, strlen(f), count_stable, &n);
        size_t want = f[0] == '#' || f[0] == 's' ? 3 : f[0] == '+' ? 1 : 0;
        if (n != want)
            c->failures++;
        if (i % 100 == 0)
            retain_foreach(c->rs, count_stable, &n);
    }
    return NULL;
}

static void *writer(void *arg) {
    struct conc *c = arg;
    char t[64];
    for (int i = 0; i < c->iters; i++) {
        snprintf(t, sizeof(t), "churn/%d/%d", i % 17, i % 5);
        struct msg *m = msg_new(t, strlen(t), (const uint8_t *)"v", (i / 3) % 2 ? 0 : 1, 0, true,
                                NULL, 0, NULL);
        if (m) {
            retain_set(c->rs, m);
            msg_unref(m);
        }
    }
    return NULL;
}

static void test_concurrency_smoke(void **state) {
    (void)state;
    struct retain_store *rs = retain_new();
    put(rs, "stable/1", "a");
    put(rs, "stable/2", "b");
    put(rs, "stable/3", "c");
    struct conc r1 = {rs, 5000, 0}, r2 = {rs, 5000, 0}, w = {rs, 20000, 0};
    pthread_t a, b, c;
    assert_int_equal(pthread_create(&a, NULL, reader, &r1), 0);
    assert_int_equal(pthread_create(&b, NULL, reader, &r2), 0);
    assert_int_equal(pthread_create(&c, NULL, writer, &w), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    assert_int_equal(r1.failures, 0);
    assert_int_equal(r2.failures, 0);
    retain_free(rs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_replace_delete),
        cmocka_unit_test(test_match_exact_plus_hash),
        cmocka_unit_test(test_empty_levels),
        cmocka_unit_test(test_mqtt_4_7_2_1_dollar_topics_not_matched_by_first_level_wildcards),
        cmocka_unit_test(test_prune_and_foreach),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_many_topics),
        cmocka_unit_test(test_deep_topic_without_recursion),
        cmocka_unit_test(test_differential_random),
        cmocka_unit_test(test_concurrency_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
