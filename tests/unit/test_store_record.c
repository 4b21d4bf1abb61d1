/* Unit tests of the store's record encoding (src/store/record.c) and of the store itself
 * (src/store/store.c): round trips, every truncation refused, group commit and release. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/record.h"
#include "store/store.h"

static void msg_round_trip(void **state) {
    (void)state;
    struct rec_msg m = {.qos = 2,
                        .retain = true,
                        .expiry_at = 1234567890123,
                        .topic = (const uint8_t *)"a/b",
                        .topic_len = 3,
                        .payload = (const uint8_t *)"\0\1\2",
                        .payload_len = 3,
                        .props_present = 2,
                        .payload_format = 1,
                        .content_type = (const uint8_t *)"text/plain",
                        .content_type_len = 10};
    struct rbuf b = {0};
    rec_msg_encode(&b, &m);
    assert_false(b.failed);
    struct rread r = {b.p, b.len, 0, false};
    struct rec_msg d;
    assert_int_equal(rec_msg_decode(&r, &d), 0);
    assert_int_equal(d.qos, 2);
    assert_true(d.retain);
    assert_int_equal(d.expiry_at, 1234567890123);
    assert_memory_equal(d.topic, "a/b", 3);
    assert_int_equal(d.payload_len, 3);
    assert_memory_equal(d.payload, "\0\1\2", 3);
    assert_int_equal(d.content_type_len, 10);
    /* Every shorter prefix is refused, never read past. */
    for (size_t n = 0; n < b.len; n++) {
        struct rread t = {b.p, n, 0, false};
        assert_int_equal(rec_msg_decode(&t, &d), -1);
    }
    rbuf_free(&b);
}

/* The publisher trailer of a retained record (check_retain_source): round trip,
 * absent in a record written before it existed, every truncation refused. */
static void source_trailer(void **state) {
    (void)state;
    struct rec_msg m = {.qos = 1, .topic = (const uint8_t *)"r", .topic_len = 1};
    struct rbuf old = {0};
    rec_msg_encode(&old, &m);
    struct rread r = {old.p, old.len, 0, false};
    struct rec_msg d;
    struct rec_source src;
    assert_int_equal(rec_msg_decode(&r, &d), 0);
    assert_int_equal(rec_source_decode(&r, &src), 0); /* an old record: no trailer */
    assert_int_equal(src.listener, -1);

    struct rec_source in = {.id = (const uint8_t *)"alice-1",
                            .id_len = 7,
                            .has_user = true,
                            .user = (const uint8_t *)"alice",
                            .user_len = 5,
                            .listener = 2};
    struct rbuf b = {0};
    rec_msg_encode(&b, &m);
    size_t msg_len = b.len;
    rec_source_encode(&b, &in);
    assert_false(b.failed);
    struct rread t = {b.p, b.len, 0, false};
    assert_int_equal(rec_msg_decode(&t, &d), 0);
    assert_int_equal(rec_source_decode(&t, &src), 1);
    assert_int_equal(src.id_len, 7);
    assert_memory_equal(src.id, "alice-1", 7);
    assert_true(src.has_user);
    assert_int_equal(src.user_len, 5);
    assert_memory_equal(src.user, "alice", 5);
    assert_int_equal(src.listener, 2);
    for (size_t n = msg_len + 1; n < b.len; n++) {
        struct rread u = {b.p, n, 0, false};
        assert_int_equal(rec_msg_decode(&u, &d), 0);
        assert_int_equal(rec_source_decode(&u, &src), -1);
    }
    /* Trailing garbage and an unknown tag are damage, not a guess. */
    rbuf_u8(&b, 0);
    struct rread g = {b.p, b.len, 0, false};
    assert_int_equal(rec_msg_decode(&g, &d), 0);
    assert_int_equal(rec_source_decode(&g, &src), -1);
    b.p[msg_len] = 0x54;
    struct rread x = {b.p, b.len - 1, 0, false};
    assert_int_equal(rec_msg_decode(&x, &d), 0);
    assert_int_equal(rec_source_decode(&x, &src), -1);
    rbuf_free(&b);
    rbuf_free(&old);
}

static void session_round_trip(void **state) {
    (void)state;
    struct rec_sess s = {
        .version = 5, .expiry = 60, .offline_at = 99, .will_delay = 5, .will_at = 1000, .nsubs = 2};
    struct rec_msg will = {.qos = 1, .topic = (const uint8_t *)"w", .topic_len = 1};
    struct rbuf b = {0};
    rec_sess_encode_head(&b, &s, &will);
    struct rec_sub a = {
        .filter = (const uint8_t *)"x/#", .len = 3, .qos = 1, .sub_id = 7, .no_local = true};
    struct rec_sub c = {.filter = (const uint8_t *)"$share/g/y",
                        .len = 10,
                        .qos = 2,
                        .retain_handling = 2,
                        .retain_as_published = true};
    rec_sess_sub_encode(&b, &a);
    rec_sess_sub_encode(&b, &c);
    struct rread r = {b.p, b.len, 0, false};
    struct rec_sess d;
    assert_int_equal(rec_sess_decode(&r, &d), 0);
    assert_int_equal(d.version, 5);
    assert_int_equal(d.expiry, 60);
    assert_true(d.has_will);
    assert_int_equal(d.will.topic_len, 1);
    struct rec_sub x;
    assert_int_equal(rec_sess_sub_next(&d, &x), 1);
    assert_int_equal(x.sub_id, 7);
    assert_true(x.no_local);
    assert_int_equal(rec_sess_sub_next(&d, &x), 1);
    assert_int_equal(x.retain_handling, 2);
    assert_true(x.retain_as_published);
    assert_int_equal(rec_sess_sub_next(&d, &x), 0);
    /* A cut inside the subscriptions is reported. */
    struct rread t = {b.p, b.len - 1, 0, false};
    assert_int_equal(rec_sess_decode(&t, &d), 0);
    assert_int_equal(rec_sess_sub_next(&d, &x), 1);
    assert_int_equal(rec_sess_sub_next(&d, &x), -1);
    rbuf_free(&b);
}

static void entry_and_keys(void **state) {
    (void)state;
    uint32_t ids[3] = {1, 2, 268435455};
    struct rec_entry e = {
        .msg_id = 42, .qos = 2, .state = REC_WAIT_PUBCOMP, .pid = 65535, .nsub = 3};
    struct rbuf b = {0};
    rec_entry_encode(&b, &e, ids, NULL, 0);
    struct rread r = {b.p, b.len, 0, false};
    struct rec_entry d;
    assert_int_equal(rec_entry_decode(&r, &d), 0);
    assert_int_equal(d.msg_id, 42);
    assert_int_equal(d.pid, 65535);
    assert_int_equal(rread_u32(&d.subids), 1);
    assert_int_equal(rread_u32(&d.subids), 2);
    assert_int_equal(rread_u32(&d.subids), 268435455);
    rbuf_free(&b);
    /* A message with one receiver is inline. */
    struct rec_entry in = {.msg_id = 0, .qos = 1};
    struct rbuf mb = {0};
    struct rec_msg m = {.qos = 1, .topic = (const uint8_t *)"t", .topic_len = 1};
    rec_msg_encode(&mb, &m);
    b = (struct rbuf){0};
    rec_entry_encode(&b, &in, NULL, mb.p, (uint32_t)mb.len);
    r = (struct rread){b.p, b.len, 0, false};
    assert_int_equal(rec_entry_decode(&r, &d), 0);
    struct rec_msg dm;
    assert_int_equal(rec_msg_decode(&d.msg, &dm), 0);
    assert_memory_equal(dm.topic, "t", 1);
    r = (struct rread){b.p, b.len - 1, 0, false};
    assert_int_equal(rec_entry_decode(&r, &d), -1);
    rbuf_free(&mb);
    rbuf_free(&b);
    /* Keys sort by client then sequence. */
    uint8_t k1[32], k2[32];
    size_t n1 = rec_key_entry(k1, "c", 1, 255), n2 = rec_key_entry(k2, "c", 1, 256);
    assert_int_equal(n1, n2);
    assert_true(memcmp(k1, k2, n1) < 0);
    const uint8_t *id, *rest;
    size_t idl, rl;
    assert_int_equal(rec_key_split(k1, n1, &id, &idl, &rest, &rl), 0);
    assert_int_equal(idl, 1);
    assert_int_equal(rl, 8);
    assert_int_equal(rec_key_get_u64(rest), 255);
    assert_int_equal(rec_key_split(k1, 2, &id, &idl, &rest, &rl), -1);
}

static int released;
static void on_release(void *ctx, void **args, size_t n, bool ok) {
    (void)ctx;
    (void)args;
    assert_true(ok);
    __atomic_add_fetch(&released, (int)n, __ATOMIC_SEQ_CST);
}

static int count_cb(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    (void)k, (void)kl, (void)v, (void)vl;
    (*(int *)ctx)++;
    return 0;
}

static void store_commit_and_refs(void **state) {
    (void)state;
    char dir[] = "/tmp/hato-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/s.db", dir);
    char err[256];
    struct store *st = store_open(path, STORE_SYNC_ALWAYS, false, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_start(st, on_release, NULL), 0);
    struct store_batch b = {0};
    uint8_t k1[32], k2[32];
    size_t n1 = rec_key_entry(k1, "c", 1, 1), n2 = rec_key_entry(k2, "d", 1, 2);
    store_msg_put(&b, 7, "m", 1, 2);
    store_put(&b, SDB_QUEUE, k1, n1, "e", 1);
    store_put(&b, SDB_QUEUE, k2, n2, "e", 1);
    store_release(&b, NULL);
    store_submit(st, &b);
    store_entry_del(&b, k1, n1, 7);
    store_release(&b, NULL);
    store_submit(st, &b);
    store_close(st); /* commits what is pending */
    assert_int_equal(released, 2);
    st = store_open(path, STORE_SYNC_ALWAYS, true, err, sizeof(err));
    assert_non_null(st);
    int n = 0;
    assert_int_equal(store_each(st, SDB_MSGS, count_cb, &n), 0);
    assert_int_equal(n, 1); /* one reference left */
    store_close(st);
    /* The last reference takes the message with it. */
    st = store_open(path, STORE_SYNC_ALWAYS, false, err, sizeof(err));
    store_entry_del(&b, k2, n2, 7);
    store_submit(st, &b); /* writer not started: applied at once */
    n = 0;
    assert_int_equal(store_each(st, SDB_MSGS, count_cb, &n), 0);
    assert_int_equal(n, 0);
    store_close(st);
    unlink(path);
    snprintf(path, sizeof(path), "%s/s.db-lock", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(msg_round_trip),        cmocka_unit_test(session_round_trip),
        cmocka_unit_test(source_trailer),        cmocka_unit_test(entry_and_keys),
        cmocka_unit_test(store_commit_and_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
