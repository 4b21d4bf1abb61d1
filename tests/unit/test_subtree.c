/* Unit tests of the subscription tree (src/broker/subtree.c). */
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

#include "broker/subtree.h"
#include <hato/mqtt.h>

#define OWNER(k) ((void *)(uintptr_t)(k))
#define KEY(p) ((uintptr_t)(p))

/* ---- helpers ------------------------------------------------------------ */

struct hit {
    uintptr_t owner;
    struct sub_opts opts;
    bool shared;
};

struct hits {
    struct hit *v;
    size_t n, cap;
};

static void collect(void *ctx, void *owner, const struct sub_opts *opts, bool shared) {
    struct hits *h = ctx;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->v = realloc(h->v, h->cap * sizeof(*h->v));
        assert_non_null(h->v);
    }
    h->v[h->n].owner = KEY(owner);
    h->v[h->n].opts = *opts;
    h->v[h->n].shared = shared;
    h->n++;
}

static void match(struct sub_tree *t, const char *topic, struct hits *h) {
    h->n = 0;
    sub_tree_match(t, topic, strlen(topic), collect, h);
}

static size_t hits_of(const struct hits *h, uintptr_t owner) {
    size_t c = 0;
    for (size_t i = 0; i < h->n; i++)
        c += h->v[i].owner == owner;
    return c;
}

static int add(struct sub_tree *t, const char *f, uintptr_t owner, uint8_t qos) {
    struct sub_opts o = {.qos = qos, .sub_id = (uint32_t)owner};
    return sub_tree_add(t, f, strlen(f), OWNER(owner), &o);
}

static int rm(struct sub_tree *t, const char *f, uintptr_t owner) {
    return sub_tree_remove(t, f, strlen(f), OWNER(owner));
}

/* Does `topic` match `filter`? Reference by whole levels, with the '$' rule. */
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

/* Expected hit counts per filter/topic pair, checked with a handful of owners. */
static void expect(const char *filter, const char *topic, bool want) {
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    assert_int_equal(add(t, filter, 1, 0), 1);
    match(t, topic, &h);
    if (hits_of(&h, 1) != (want ? 1u : 0u))
        fail_msg("filter '%s' topic '%s': expected %s", filter, topic, want ? "match" : "none");
    assert_int_equal(ref_match(filter, topic), want); /* the reference agrees */
    free(h.v);
    sub_tree_free(t);
}

/* ---- matching rules ----------------------------------------------------- */

static void test_exact(void **state) {
    (void)state;
    expect("a", "a", true);
    expect("a/b/c", "a/b/c", true);
    expect("a/b", "a/b/c", false);
    expect("a/b/c", "a/b", false);
    expect("a", "b", false);
    expect("A", "a", false);
    expect("sport/tennis", "sport/tennis", true);
}

static void test_plus(void **state) {
    (void)state;
    expect("+", "a", true);
    expect("+", "a/b", false);
    expect("a/+", "a/b", true);
    expect("a/+", "a", false);
    expect("a/+/c", "a/b/c", true);
    expect("a/+/c", "a/b/d", false);
    expect("+/+/+", "a/b/c", true);
    expect("+/b/+", "x/b/y", true);
    expect("sport/+/player1", "sport/tennis/player1", true);
}

static void test_hash(void **state) {
    (void)state;
    expect("#", "a", true);
    expect("#", "a/b/c", true);
    expect("a/#", "a/b", true);
    expect("a/#", "a/b/c/d", true);
    expect("a/#", "b/a", false);
    expect("a/+/#", "a/b/c", true);
    expect("+/#", "a", true);
}

static void test_hash_matches_parent_level(void **state) {
    (void)state;
    /* "sport/tennis/player1/#" matches "sport/tennis/player1" (4.7.1.2). */
    expect("a/#", "a", true);
    expect("sport/tennis/player1/#", "sport/tennis/player1", true);
    expect("a/b/#", "a", false);
    expect("a/+/#", "a/b", true);
    expect("a/+/#", "a", false);
}

static void test_empty_levels(void **state) {
    (void)state;
    expect("/a", "/a", true);
    expect("+/a", "/a", true);
    expect("/+", "/a", true);
    expect("#", "/a", true);
    expect("+", "/a", false);
    expect("+/+", "/x", true);
    expect("+/+", "/", true);
    expect("/", "/", true);
    expect("+", "/", false);
    expect("a//b", "a//b", true);
    expect("a/+/b", "a//b", true);
    expect("a/b", "a//b", false);
    expect("a/#", "a//b", true);
    expect("a/", "a/", true);
    expect("a/+", "a/", true);
    expect("a/#", "a/", true);
    expect("a", "a/", false);
    expect("a/", "a", false);
    expect("//", "//", true);
    expect("+/+/+", "//", true);
}

static void test_mqtt_4_7_2_1_dollar_topics_not_matched_by_first_level_wildcards(void **state) {
    (void)state;
    expect("#", "$SYS/broker", false);
    expect("#", "$SYS", false);
    expect("+/broker", "$SYS/broker", false);
    expect("+", "$SYS", false);
    expect("+/#", "$SYS/a", false);
    expect("$SYS/#", "$SYS/broker", true);
    expect("$SYS/#", "$SYS", true);
    expect("$SYS/+", "$SYS/broker", true);
    expect("$SYS/broker", "$SYS/broker", true);
    expect("a/+", "a/$x", true); /* only the first level is special */
    expect("a/#", "a/$x/y", true);
    expect("+/+", "a$/b", true);

    /* The inner filter of a shared subscription follows the same rule. */
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    assert_int_equal(add(t, "$share/g/#", 1, 0), 1);
    assert_int_equal(add(t, "$share/g/$SYS/#", 2, 0), 1);
    match(t, "$SYS/x", &h);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].owner, 2);
    assert_true(h.v[0].shared);
    free(h.v);
    sub_tree_free(t);
}

/* ---- bookkeeping -------------------------------------------------------- */

static void test_add_replace_remove(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    assert_int_equal(add(t, "a/b", 1, 0), 1);
    assert_int_equal(add(t, "a/b", 2, 1), 1);
    assert_int_equal(add(t, "a/+", 1, 2), 1);
    assert_int_equal(sub_tree_count(t), 3);

    /* Replace: options updated, count unchanged. */
    struct sub_opts o = {.qos = 2,
                         .no_local = true,
                         .retain_as_published = true,
                         .retain_handling = 2,
                         .sub_id = 77};
    assert_int_equal(sub_tree_add(t, "a/b", 3, OWNER(1), &o), 0);
    assert_int_equal(sub_tree_count(t), 3);
    match(t, "a/b", &h);
    assert_int_equal(h.n, 3);
    assert_int_equal(hits_of(&h, 1), 2); /* via "a/b" and "a/+": the caller merges */
    assert_int_equal(hits_of(&h, 2), 1);
    bool seen = false;
    for (size_t i = 0; i < h.n; i++) {
        if (h.v[i].owner == 1 && h.v[i].opts.sub_id == 77) {
            assert_int_equal(h.v[i].opts.qos, 2);
            assert_true(h.v[i].opts.no_local);
            assert_true(h.v[i].opts.retain_as_published);
            assert_int_equal(h.v[i].opts.retain_handling, 2);
            assert_false(h.v[i].shared);
            seen = true;
        }
    }
    assert_true(seen);

    assert_int_equal(rm(t, "a/b", 1), 1);
    assert_int_equal(rm(t, "a/b", 1), 0);
    assert_int_equal(rm(t, "a/c", 1), 0);
    assert_int_equal(rm(t, "a/b/c", 2), 0);
    assert_int_equal(rm(t, "$share/g/a/b", 2), 0);
    assert_int_equal(sub_tree_count(t), 2);
    match(t, "a/b", &h);
    assert_int_equal(hits_of(&h, 1), 1);
    assert_int_equal(hits_of(&h, 2), 1);

    assert_int_equal(rm(t, "a/b", 2), 1);
    assert_int_equal(rm(t, "a/+", 1), 1);
    assert_int_equal(sub_tree_count(t), 0);
    match(t, "a/b", &h);
    assert_int_equal(h.n, 0);

    /* A malformed $share filter is refused, not stored under "$share". */
    assert_int_equal(add(t, "$share/g", 1, 0), -1);
    assert_int_equal(add(t, "$share//a", 1, 0), -1);
    assert_int_equal(sub_tree_node_count(t), 0);
    free(h.v);
    sub_tree_free(t);
}

static void test_prune_node_count(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(NULL);
    static const char *filters[] = {
        "a",   "a/b", "a/b/c", "a/+/c",        "a/#",          "#",
        "+",   "/",   "//",    "a//b",         "$SYS/#",       "x/y/z/w",
        "+/+", "+/#", "a/b/+", "$share/g/a/b", "$share/h/a/b", "$share/g/+/+"};
    const size_t nf = sizeof(filters) / sizeof(filters[0]);
    assert_int_equal(sub_tree_node_count(t), 0);
    for (uintptr_t o = 1; o <= 3; o++)
        for (size_t i = 0; i < nf; i++)
            assert_int_equal(add(t, filters[i], o, 1), 1);
    assert_true(sub_tree_node_count(t) > 0);
    assert_int_equal(sub_tree_count(t), 3 * nf);
    /* Remove in a different order than added. */
    for (uintptr_t o = 1; o <= 3; o++)
        for (size_t i = nf; i-- > 0;)
            assert_int_equal(rm(t, filters[(i * 7) % nf], o), 1);
    assert_int_equal(sub_tree_count(t), 0);
    assert_int_equal(sub_tree_node_count(t), 0);

    /* Churn does not grow the tree: many distinct filters, added and removed. */
    char f[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(f, sizeof(f), "c/%d/%d/+", i % 50, i);
            assert_int_equal(add(t, f, 1, 0), 1);
        }
        for (int i = 0; i < 5000; i++) {
            snprintf(f, sizeof(f), "c/%d/%d/+", i % 50, i);
            assert_int_equal(rm(t, f, 1), 1);
        }
        assert_int_equal(sub_tree_node_count(t), 0);
    }
    sub_tree_free(t);
}

/* ---- shared subscriptions ----------------------------------------------- */

static void test_shared_round_robin(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    for (uintptr_t o = 1; o <= 3; o++)
        assert_int_equal(add(t, "$share/g/s/+", o, 1), 1);
    assert_int_equal(add(t, "$share/g/s/+", 2, 2), 0); /* replace */
    assert_int_equal(add(t, "s/+", 9, 0), 1);          /* a plain one alongside */
    assert_int_equal(sub_tree_count(t), 4);
    size_t per[4] = {0};
    for (int i = 0; i < 30; i++) {
        match(t, "s/x", &h);
        assert_int_equal(h.n, 2);
        assert_int_equal(hits_of(&h, 9), 1);
        for (size_t k = 0; k < h.n; k++) {
            if (h.v[k].owner == 9) {
                assert_false(h.v[k].shared);
                continue;
            }
            assert_true(h.v[k].shared);
            per[h.v[k].owner]++;
            if (h.v[k].owner == 2)
                assert_int_equal(h.v[k].opts.qos, 2);
        }
    }
    assert_int_equal(per[1], 10);
    assert_int_equal(per[2], 10);
    assert_int_equal(per[3], 10);

    /* No match, no group member chosen. */
    match(t, "s/x/y", &h);
    assert_int_equal(h.n, 0);

    /* Removing members keeps the others served. */
    assert_int_equal(rm(t, "$share/g/s/+", 2), 1);
    memset(per, 0, sizeof(per));
    for (int i = 0; i < 10; i++) {
        match(t, "s/x", &h);
        for (size_t k = 0; k < h.n; k++)
            if (h.v[k].shared)
                per[h.v[k].owner]++;
    }
    assert_int_equal(per[1], 5);
    assert_int_equal(per[2], 0);
    assert_int_equal(per[3], 5);
    assert_int_equal(rm(t, "$share/g/s/+", 1), 1);
    assert_int_equal(rm(t, "$share/g/s/+", 3), 1);
    assert_int_equal(rm(t, "s/+", 9), 1);
    assert_int_equal(sub_tree_node_count(t), 0);
    free(h.v);
    sub_tree_free(t);
}

static void test_shared_groups_are_per_name_and_filter(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    assert_int_equal(add(t, "$share/g/a/b", 1, 0), 1);
    assert_int_equal(add(t, "$share/g/a/b", 2, 0), 1);
    assert_int_equal(add(t, "$share/h/a/b", 3, 0), 1);
    assert_int_equal(add(t, "$share/g/a/+", 4, 0), 1);
    assert_int_equal(add(t, "$share/g/a/+", 5, 0), 1);
    assert_int_equal(add(t, "a/b", 1, 0), 1); /* same owner, plain subscription */
    match(t, "a/b", &h);
    /* One of {1,2}, 3, one of {4,5}, and 1 for the plain one. */
    assert_int_equal(h.n, 4);
    size_t shared = 0;
    for (size_t k = 0; k < h.n; k++)
        shared += h.v[k].shared;
    assert_int_equal(shared, 3);
    assert_int_equal(hits_of(&h, 3), 1);
    assert_int_equal(hits_of(&h, 4) + hits_of(&h, 5), 1);
    assert_int_equal(hits_of(&h, 1) + hits_of(&h, 2), 2);
    free(h.v);
    sub_tree_free(t);
}

static bool online[8];
static bool avail(void *owner) {
    return online[KEY(owner)];
}

static void test_shared_availability(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(avail);
    struct hits h = {0};
    for (uintptr_t o = 1; o <= 4; o++)
        assert_int_equal(add(t, "$share/g/x", o, 0), 1);
    memset(online, 0, sizeof(online));
    online[1] = online[3] = true;
    size_t per[5] = {0};
    for (int i = 0; i < 20; i++) {
        match(t, "x", &h);
        assert_int_equal(h.n, 1);
        per[h.v[0].owner]++;
    }
    assert_int_equal(per[1], 10);
    assert_int_equal(per[3], 10);
    assert_int_equal(per[2] + per[4], 0);

    /* Nobody online: round robin among all. */
    memset(online, 0, sizeof(online));
    memset(per, 0, sizeof(per));
    for (int i = 0; i < 20; i++) {
        match(t, "x", &h);
        assert_int_equal(h.n, 1);
        per[h.v[0].owner]++;
    }
    for (int o = 1; o <= 4; o++)
        assert_int_equal(per[o], 5);

    /* One online: always that one. */
    online[4] = true;
    for (int i = 0; i < 5; i++) {
        match(t, "x", &h);
        assert_int_equal(h.v[0].owner, 4);
    }
    free(h.v);
    sub_tree_free(t);
}

/* ---- scale -------------------------------------------------------------- */

static void test_many_subscriptions(void **state) {
    (void)state;
    enum { N = 100000 };
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    char f[64];
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "dev/%d/temp", i);
        assert_int_equal(add(t, f, (uintptr_t)i + 1, 0), 1);
    }
    /* 1000 owners on one filter (the indexed subscriber set). */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(add(t, "dev/+/temp", (uintptr_t)N + 1 + i, 0), 1);
    assert_int_equal(add(t, "dev/#", 1, 0), 1);
    assert_int_equal(sub_tree_count(t), N + 1001);

    for (int i = 0; i < N; i += 997) {
        snprintf(f, sizeof(f), "dev/%d/temp", i);
        match(t, f, &h);
        assert_int_equal(h.n, 1 + 1000 + 1);
        assert_int_equal(hits_of(&h, (uintptr_t)i + 1), i == 0 ? 2 : 1);
    }
    match(t, "dev/x/temp", &h);
    assert_int_equal(h.n, 1001);
    match(t, "dev/5/hum", &h);
    assert_int_equal(h.n, 1);

    /* Remove every other member of the big set, in a scattered order. */
    for (int i = 0; i < 1000; i += 2)
        assert_int_equal(rm(t, "dev/+/temp", (uintptr_t)N + 1 + (uintptr_t)((i * 7) % 1000)), 1);
    for (int i = 0; i < 1000; i += 2)
        assert_int_equal(add(t, "dev/+/temp", (uintptr_t)N + 1 + (uintptr_t)((i * 7) % 1000), 1),
                         1);
    for (int i = 1; i < 1000; i += 2)
        assert_int_equal(rm(t, "dev/+/temp", (uintptr_t)N + 1 + (uintptr_t)i), 1);
    match(t, "dev/x/temp", &h);
    assert_int_equal(h.n, 500 + 1); /* and "dev/#" */
    for (size_t k = 0; k < h.n; k++)
        if (h.v[k].owner > N)
            assert_int_equal((h.v[k].owner - N - 1) % 2, 0);

    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "dev/%d/temp", i);
        assert_int_equal(rm(t, f, (uintptr_t)i + 1), 1);
    }
    for (int i = 0; i < 1000; i += 2)
        assert_int_equal(rm(t, "dev/+/temp", (uintptr_t)N + 1 + (uintptr_t)i), 1);
    assert_int_equal(rm(t, "dev/#", 1), 1);
    assert_int_equal(sub_tree_count(t), 0);
    assert_int_equal(sub_tree_node_count(t), 0);
    free(h.v);
    sub_tree_free(t);
}

static void test_deep_topics_without_recursion(void **state) {
    (void)state;
    /* 30000 levels: "a/a/.../a" and a filter of '+' levels ending in '#'. */
    enum { L = 30000 };
    char *topic = malloc(2 * L);
    char *filter = malloc(2 * L);
    assert_non_null(topic);
    assert_non_null(filter);
    for (int i = 0; i < L; i++) {
        topic[2 * i] = 'a';
        topic[2 * i + 1] = '/';
        filter[2 * i] = '+';
        filter[2 * i + 1] = '/';
    }
    size_t tl = 2 * L - 1;
    topic[tl] = 0;
    filter[tl] = 0;
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    assert_int_equal(sub_tree_add(t, topic, tl, OWNER(1), &(struct sub_opts){0}), 1);
    assert_int_equal(sub_tree_add(t, filter, tl, OWNER(2), &(struct sub_opts){0}), 1);
    filter[tl - 1] = '#';
    assert_int_equal(sub_tree_add(t, filter, tl, OWNER(3), &(struct sub_opts){0}), 1);
    h.n = 0;
    sub_tree_match(t, topic, tl, collect, &h);
    assert_int_equal(h.n, 3);
    h.n = 0;
    sub_tree_match(t, topic, tl - 2, collect, &h); /* one level fewer */
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].owner, 3); /* "+/.../+/#" matches its parent level */
    assert_true(sub_tree_node_count(t) >= 2 * L - 1);
    assert_int_equal(rm(t, filter, 3), 1);
    free(h.v);
    free(topic);
    free(filter);
    sub_tree_free(t); /* deep teardown without recursion */
}

/* ---- differential test against the reference matcher -------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void random_topic(char *out) {
    static const char *lv[] = {"a", "b", "", "c", "ab"};
    int n = 1 + (int)rnd(5);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, "/");
        strcat(out, i == 0 && rnd(6) == 0 ? "$s" : lv[rnd(5)]);
    }
}

static void random_filter(char *out) {
    static const char *lv[] = {"a", "b", "", "+", "+", "ab"};
    int n = 1 + (int)rnd(5);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, "/");
        if (i == n - 1 && rnd(4) == 0)
            strcat(out, "#");
        else
            strcat(out, i == 0 && rnd(8) == 0 ? "$s" : lv[rnd(6)]);
    }
}

static void test_differential_random(void **state) {
    (void)state;
    enum { NF = 400, NT = 3000 };
    static char filters[NF][64];
    static bool live[NF];
    struct sub_tree *t = sub_tree_new(NULL);
    struct hits h = {0};
    size_t live_n = 0;
    for (int i = 0; i < NF; i++) {
        random_filter(filters[i]);
        live[i] = rnd(3) != 0;
        if (live[i]) {
            assert_int_equal(add(t, filters[i], (uintptr_t)i + 1, 0), 1);
            live_n++;
        }
    }
    char topic[64];
    for (int k = 0; k < NT; k++) {
        /* Churn a little between matches. */
        int j = (int)rnd(NF);
        if (live[j]) {
            assert_int_equal(rm(t, filters[j], (uintptr_t)j + 1), 1);
            live_n--;
        } else {
            assert_int_equal(add(t, filters[j], (uintptr_t)j + 1, 0), 1);
            live_n++;
        }
        live[j] = !live[j];
        assert_int_equal(sub_tree_count(t), live_n);

        random_topic(topic);
        match(t, topic, &h);
        size_t want = 0;
        for (int i = 0; i < NF; i++) {
            bool r = ref_match(filters[i], topic);
            /* The codec's reference matcher agrees with ours. */
            if (r != mqtt_topic_match((const uint8_t *)filters[i], strlen(filters[i]),
                                      (const uint8_t *)topic, strlen(topic)))
                fail_msg("mqtt_topic_match('%s', '%s') != %d", filters[i], topic, r);
            bool m = live[i] && r;
            want += m;
            if (hits_of(&h, (uintptr_t)i + 1) != (m ? 1u : 0u))
                fail_msg("filter '%s' topic '%s': tree %zu, reference %d", filters[i], topic,
                         hits_of(&h, (uintptr_t)i + 1), m);
        }
        assert_int_equal(h.n, want);
    }
    for (int i = 0; i < NF; i++)
        if (live[i])
            assert_int_equal(rm(t, filters[i], (uintptr_t)i + 1), 1);
    assert_int_equal(sub_tree_node_count(t), 0);
    free(h.v);
    sub_tree_free(t);
}

/* ---- concurrency smoke -------------------------------------------------- */

struct conc {
    struct sub_tree *t;
    int iters;
    int failures;
};

static void count_hit(void *ctx, void *owner, const struct sub_opts *opts, bool shared) {
    (void)opts;
    (void)shared;
    size_t *c = ctx;
    if (KEY(owner) < 100)
        (*c)++;
}

static void *reader(void *arg) {
    struct conc *c = arg;
    static const char *topics[] = {"s/1/x", "s/2/y", "s/3/x/z", "q/1", "$SYS/a"};
    for (int i = 0; i < c->iters; i++) {
        const char *tp = topics[i % 5];
        size_t n = 0;
        sub_tree_match(c->t, tp, strlen(tp), count_hit, &n);
        /* The stable subscriptions (owners < 100) are always seen. */
        size_t want = tp[0] == '$' ? 0 : 2;
        if (n != want)
            c->failures++;
    }
    return NULL;
}

static void *writer(void *arg) {
    struct conc *c = arg;
    char f[64];
    struct sub_opts o = {.qos = 1};
    for (int i = 0; i < c->iters; i++) {
        int k = i % 64;
        switch (i % 3) {
        case 0:
            snprintf(f, sizeof(f), "s/%d/+", k % 4);
            break;
        case 1:
            snprintf(f, sizeof(f), "$share/g%d/s/+/#", k % 3);
            break;
        default:
            snprintf(f, sizeof(f), "s/%d/x/%d", k, i % 7);
            break;
        }
        uintptr_t owner = 1000 + (uintptr_t)(i % 50);
        if ((i / 3) % 2 == 0)
            sub_tree_add(c->t, f, strlen(f), OWNER(owner), &o);
        else
            sub_tree_remove(c->t, f, strlen(f), OWNER(owner));
    }
    return NULL;
}

static void test_concurrency_smoke(void **state) {
    (void)state;
    struct sub_tree *t = sub_tree_new(NULL);
    assert_int_equal(add(t, "s/#", 1, 0), 1);
    assert_int_equal(add(t, "$share/stable/+/+/#", 2, 0), 1);
    assert_int_equal(add(t, "q/+", 3, 0), 1);
    struct conc r1 = {t, 20000, 0}, r2 = {t, 20000, 0}, w = {t, 20000, 0};
    pthread_t a, b, c;
    assert_int_equal(pthread_create(&a, NULL, reader, &r1), 0);
    assert_int_equal(pthread_create(&b, NULL, reader, &r2), 0);
    assert_int_equal(pthread_create(&c, NULL, writer, &w), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    assert_int_equal(r1.failures, 0);
    assert_int_equal(r2.failures, 0);
    sub_tree_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_plus),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_hash_matches_parent_level),
        cmocka_unit_test(test_empty_levels),
        cmocka_unit_test(test_mqtt_4_7_2_1_dollar_topics_not_matched_by_first_level_wildcards),
        cmocka_unit_test(test_add_replace_remove),
        cmocka_unit_test(test_prune_node_count),
        cmocka_unit_test(test_shared_round_robin),
        cmocka_unit_test(test_shared_groups_are_per_name_and_filter),
        cmocka_unit_test(test_shared_availability),
        cmocka_unit_test(test_many_subscriptions),
        cmocka_unit_test(test_deep_topics_without_recursion),
        cmocka_unit_test(test_differential_random),
        cmocka_unit_test(test_concurrency_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
