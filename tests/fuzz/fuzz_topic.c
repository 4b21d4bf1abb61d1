/*
 * Differential libFuzzer target for topics: the codec's topic name and
 * filter validation, shared subscription parsing and matching, and the
 * broker's subscription tree (src/broker/subtree.c), all checked against
 * the small, obviously-correct reference implementation below (split into
 * levels, compare level by level).
 *
 * Input: strings separated by '\n'. Each is checked for validity as a name
 * and as a filter. The valid filters (duplicates skipped) are subscribed in
 * the tree, each with its own owner; then every valid name is matched and
 * the set of owners the tree reports must be exactly the set the reference
 * finds, each once, with the right shared flag. Then every other filter is
 * removed and the check repeated; at the end the tree must be empty.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/subtree.h"
#include "hato/mqtt.h"
#include "check.h"

#define MAXS 64

/* ---- reference ---------------------------------------------------------- */

/* Well-formed UTF-8 per Unicode table 3-7, without U+0000 (MQTT 1.5.4). */
static bool ref_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t k;
        if (c == 0)
            return false;
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c == 0xE0) {
            k = 2, lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            k = 2;
        } else if (c == 0xED) {
            k = 2, hi = 0x9F; /* no surrogates */
        } else if (c == 0xF0) {
            k = 3, lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            k = 3;
        } else if (c == 0xF4) {
            k = 3, hi = 0x8F;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF)
                return false;
        i += k + 1;
    }
    return true;
}

struct levels {
    const uint8_t *p[1024];
    size_t len[1024];
    size_t n;
};

/* Split on '/'; false if there are more levels than we keep. */
static bool split(const uint8_t *s, size_t n, struct levels *l) {
    l->n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (l->n == 1024)
                return false;
            l->p[l->n] = s + start;
            l->len[l->n++] = i - start;
            start = i + 1;
        }
    }
    return true;
}

static bool has(const uint8_t *s, size_t n, uint8_t c) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == c)
            return true;
    return false;
}

static bool ref_name_valid(const uint8_t *s, size_t n) {
    return n >= 1 && n <= 65535 && !has(s, n, '+') && !has(s, n, '#') && ref_utf8(s, n);
}

static struct levels la, lb;

static bool ref_filter_valid(const uint8_t *s, size_t n) {
    if (n < 1 || n > 65535 || !ref_utf8(s, n))
        return false;
    if (!split(s, n, &la))
        return true; /* too deep for the reference: skip (caller checks) */
    for (size_t i = 0; i < la.n; i++) {
        bool wild = has(la.p[i], la.len[i], '+') || has(la.p[i], la.len[i], '#');
        if (wild && la.len[i] != 1)
            return false;
        if (la.len[i] == 1 && la.p[i][0] == '#' && i != la.n - 1)
            return false;
    }
    return true;
}

/* 1 shared (group/inner set), 0 not shared, -1 malformed shared. */
static int ref_shared(const uint8_t *s, size_t n, const uint8_t **inner, size_t *ilen) {
    if (n < 7 || memcmp(s, "$share/", 7) != 0)
        return 0;
    size_t g = 7;
    while (g < n && s[g] != '/')
        g++;
    if (g == n || g == 7 || has(s + 7, g - 7, '+') || has(s + 7, g - 7, '#'))
        return -1;
    *inner = s + g + 1;
    *ilen = n - g - 1;
    return *ilen > 0 ? 1 : -1;
}

static bool ref_match(const uint8_t *f, size_t fn, const uint8_t *t, size_t tn) {
    if (tn && t[0] == '$' && fn && (f[0] == '+' || f[0] == '#'))
        return false;
    split(f, fn, &la);
    split(t, tn, &lb);
    for (size_t i = 0; i < la.n; i++) {
        if (la.len[i] == 1 && la.p[i][0] == '#')
            return true; /* also the parent level: "a/#" matches "a" */
        if (i == lb.n)
            return false;
        if (la.len[i] == 1 && la.p[i][0] == '+')
            continue;
        if (la.len[i] != lb.len[i] || memcmp(la.p[i], lb.p[i], la.len[i]) != 0)
            return false;
    }
    return la.n == lb.n;
}

/* ---- the target ----------------------------------------------------------- */

struct str {
    const uint8_t *p;
    size_t n;
};

struct seen {
    int count[MAXS];
    bool shared[MAXS];
};

static void on_match(void *ctx, void *owner, const struct sub_opts *o, bool shared) {
    struct seen *sn = ctx;
    intptr_t i = (intptr_t)owner - 1;
    CHECK(i >= 0 && i < MAXS);
    CHECK(o->sub_id == (uint32_t)i + 1);
    sn->count[i]++;
    sn->shared[i] = shared;
}

static void check_tree(struct sub_tree *t, struct str *s, size_t ns, const bool *subscribed) {
    for (size_t k = 0; k < ns; k++) {
        if (!ref_name_valid(s[k].p, s[k].n) || !split(s[k].p, s[k].n, &lb))
            continue;
        struct seen sn;
        memset(&sn, 0, sizeof sn);
        sub_tree_match(t, (const char *)s[k].p, s[k].n, on_match, &sn);
        for (size_t i = 0; i < ns; i++) {
            bool want = false, shared = false;
            if (subscribed[i]) {
                const uint8_t *in = s[i].p;
                size_t il = s[i].n;
                shared = ref_shared(s[i].p, s[i].n, &in, &il) == 1;
                want = ref_match(in, il, s[k].p, s[k].n);
            }
            CHECK(sn.count[i] == (want ? 1 : 0));
            if (want)
                CHECK(sn.shared[i] == shared);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 14)
        return 0;
    struct str s[MAXS];
    size_t ns = 0, start = 0;
    for (size_t i = 0; i <= size && ns < MAXS; i++) {
        if (i == size || data[i] == '\n') {
            s[ns++] = (struct str){data + start, i - start};
            start = i + 1;
        }
    }
    bool subscribed[MAXS] = {0};
    struct sub_tree *t = sub_tree_new(NULL);
    CHECK(t);
    size_t nsubs = 0;
    for (size_t i = 0; i < ns; i++) {
        const uint8_t *p = s[i].p;
        size_t n = s[i].n;
        bool deep = !split(p, n, &la);
        /* Validation against the reference. */
        CHECK(mqtt_utf8_valid(p, n) == ref_utf8(p, n));
        CHECK(mqtt_topic_name_valid(p, n) == ref_name_valid(p, n));
        bool fv = ref_filter_valid(p, n);
        if (!deep)
            CHECK(mqtt_topic_filter_valid(p, n) == fv);
        const uint8_t *in = NULL;
        size_t il = 0;
        int rs = ref_shared(p, n, &in, &il);
        if (rs == 1 && !ref_filter_valid(in, il))
            rs = -1;
        struct mqtt_str g, inner;
        int cs = mqtt_shared_split(p, n, &g, &inner);
        if (!deep)
            CHECK(cs == rs);
        if (cs == 1)
            CHECK(inner.p == in && inner.len == il && g.p == p + 7);
        /* Matching: the codec's reference matcher against ours. */
        if (!deep && fv && rs >= 0) {
            for (size_t k = 0; k < ns; k++)
                if (ref_name_valid(s[k].p, s[k].n) && split(s[k].p, s[k].n, &lb))
                    CHECK(mqtt_topic_match(p, n, s[k].p, s[k].n) ==
                          ref_match(p, n, s[k].p, s[k].n));
        }
        /* Subscribe valid filters once each. */
        if (deep || !fv || rs < 0)
            continue;
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            if (subscribed[j] && s[j].n == n && memcmp(s[j].p, p, n) == 0)
                dup = true;
        if (dup)
            continue;
        struct sub_opts o = {.qos = (uint8_t)(i % 3), .sub_id = (uint32_t)i + 1};
        CHECK(sub_tree_add(t, (const char *)p, n, (void *)(intptr_t)(i + 1), &o) == 1);
        subscribed[i] = true;
        nsubs++;
    }
    CHECK(sub_tree_count(t) == nsubs);
    check_tree(t, s, ns, subscribed);
    /* Remove every other subscription, check again, then the rest. */
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < ns; i++) {
            if (!subscribed[i] || (pass == 0 && (k++ & 1)))
                continue;
            CHECK(sub_tree_remove(t, (const char *)s[i].p, s[i].n, (void *)(intptr_t)(i + 1)) == 1);
            CHECK(sub_tree_remove(t, (const char *)s[i].p, s[i].n, (void *)(intptr_t)(i + 1)) == 0);
            subscribed[i] = false;
            nsubs--;
        }
        CHECK(sub_tree_count(t) == nsubs);
        check_tree(t, s, ns, subscribed);
    }
    CHECK(sub_tree_node_count(t) == 0);
    sub_tree_free(t);
    return 0;
}
