/* Unit tests of the mosquitto.db reader (src/store/mosqdb.c) and importer
 * (src/store/mosqimport.c). Files are built here byte by byte in Mosquitto's
 * layout (format 5, as Mosquitto 1.6 writes, which the integration tests
 * cannot get from Debian's 2.0), then damaged in each way the reader must
 * refuse, each refusal checked for its offset. Every truncation is refused. */
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

#include "store/mosqdb.h"
#include "store/mosqimport.h"
#include "store/record.h"
#include "store/store.h"

struct out {
    uint8_t b[4096];
    size_t n;
};

static void put(struct out *o, const void *p, size_t n) {
    assert_true(o->n + n <= sizeof(o->b));
    if (n)
        memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void u8(struct out *o, uint8_t v) {
    put(o, &v, 1);
}
static void be16(struct out *o, uint16_t v) {
    u8(o, (uint8_t)(v >> 8));
    u8(o, (uint8_t)v);
}
static void be32(struct out *o, uint32_t v) {
    be16(o, (uint16_t)(v >> 16));
    be16(o, (uint16_t)v);
}
static void le64(struct out *o, uint64_t v) {
    for (int i = 0; i < 8; i++)
        u8(o, (uint8_t)(v >> (8 * i)));
}
static void zeros(struct out *o, size_t n) {
    while (n--)
        u8(o, 0);
}

static void header(struct out *o, uint32_t version) {
    put(o, "\0\xb5\0mosquitto db", 15);
    be32(o, 0);
    be32(o, version);
    be32(o, 1); /* config */
    be32(o, 16);
    le64(o, 42);
    u8(o, 1);
    u8(o, 8);
    zeros(o, 6);
}

/* Offsets of the chunks written, for the error checks. */
static size_t off_msg, off_client, off_cmsg, off_sub, off_retain;

static void msg(struct out *o, uint64_t id, const char *topic, const char *payload, uint8_t qos,
                bool retain, const uint8_t *props, size_t plen) {
    off_msg = o->n;
    size_t tl = strlen(topic), pl = strlen(payload);
    be32(o, 2);
    be32(o, (uint32_t)(32 + tl + pl + plen));
    le64(o, id);
    le64(o, 0); /* expiry */
    be32(o, (uint32_t)pl);
    be16(o, 0);
    be16(o, 0);
    be16(o, 0);
    be16(o, (uint16_t)tl);
    be16(o, 0);
    u8(o, qos);
    u8(o, retain);
    put(o, topic, tl);
    put(o, payload, pl);
    put(o, props, plen);
}

static void client_v5(struct out *o, const char *id, uint32_t expiry) {
    off_client = o->n;
    size_t n = strlen(id);
    be32(o, 6);
    be32(o, (uint32_t)(16 + n));
    le64(o, 0);
    be32(o, expiry);
    be16(o, 0);
    be16(o, (uint16_t)n);
    put(o, id, n);
}

static void cmsg(struct out *o, uint64_t id, const char *client, uint16_t mid, uint8_t qos,
                 uint8_t state, uint8_t dir, uint32_t subid) {
    off_cmsg = o->n;
    size_t n = strlen(client);
    be32(o, 3);
    be32(o, (uint32_t)(16 + n + (subid ? 3 : 0)));
    le64(o, id);
    be16(o, mid);
    be16(o, (uint16_t)n);
    u8(o, qos);
    u8(o, state);
    u8(o, 0);
    u8(o, dir);
    put(o, client, n);
    if (subid) {
        u8(o, 2);    /* property length */
        u8(o, 0x0B); /* subscription identifier */
        u8(o, (uint8_t)subid);
    }
}

static void subc(struct out *o, const char *client, const char *filter, uint8_t qos,
                 uint8_t options, uint32_t ident) {
    off_sub = o->n;
    size_t n = strlen(client), f = strlen(filter);
    be32(o, 5);
    be32(o, (uint32_t)(12 + n + f));
    be32(o, ident);
    be16(o, (uint16_t)n);
    be16(o, (uint16_t)f);
    u8(o, qos);
    u8(o, options);
    zeros(o, 2);
    put(o, client, n);
    put(o, filter, f);
}

static void retain(struct out *o, uint64_t id) {
    off_retain = o->n;
    be32(o, 4);
    be32(o, 8);
    le64(o, id);
}

/* content type "t/p", user property ("k", "v") */
static const uint8_t props[] = {13, 0x03, 0, 3, 't', '/', 'p', 0x26, 0, 1, 'k', 0, 1, 'v'};

static void sample(struct out *o) {
    memset(o, 0, sizeof(*o));
    header(o, 5);
    msg(o, 7, "a/b", "hello", 1, true, props, sizeof(props));
    msg(o, 9, "c/d", "world", 2, false, NULL, 0);
    client_v5(o, "dev1", 3600);
    cmsg(o, 9, "dev1", 5, 2, 5 /* wait for PUBREC */, 1, 4);
    cmsg(o, 7, "dev1", 0, 1, 11 /* queued */, 1, 0);
    subc(o, "dev1", "c/#", 2, 0x04 | 0x08, 4);
    retain(o, 7);
}

static void parses_a_format_5_file(void **state) {
    (void)state;
    struct out o;
    sample(&o);
    struct mosqdb db;
    char err[256];
    assert_int_equal(mosqdb_parse(o.b, o.n, &db, err, sizeof(err)), 0);
    assert_int_equal(db.version, 5);
    assert_int_equal(db.last_db_id, 42);
    assert_int_equal(db.nmsgs, 2);
    assert_int_equal(db.nclients, 1);
    assert_int_equal(db.ncmsgs, 2);
    assert_int_equal(db.nsubs, 1);
    assert_int_equal(db.nretains, 1);
    const struct mosqdb_msg *m = &db.msgs[db.retains[0].msg];
    assert_memory_equal(m->topic, "a/b", 3);
    assert_true(m->retain);
    assert_int_equal(m->props.content_type.len, 3);
    assert_true(m->props.present & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY));
    assert_int_equal(db.cmsgs[0].sub_id, 4);
    assert_int_equal(db.cmsgs[0].state, MOSQDB_WAIT_PUBREC);
    assert_int_equal(db.cmsgs[0].mid, 5);
    assert_int_equal(db.msgs[db.cmsgs[0].msg].store_id, 9);
    assert_int_equal(db.clients[0].session_expiry_interval, 3600);
    assert_int_equal(db.subs[0].options, 0x0C);
    mosqdb_free(&db);
}

static void expect_error(const uint8_t *b, size_t n, size_t off, const char *what) {
    struct mosqdb db;
    char err[256], want[64];
    assert_int_equal(mosqdb_parse(b, n, &db, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "offset %zu: ", off);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, what))
        fail_msg("expected '%s...%s', got '%s'", want, what, err);
    assert_int_equal(db.nmsgs + db.nclients + db.ncmsgs, 0);
}

static size_t be32_at(const uint8_t *p) {
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

static void every_truncation_is_refused(void **state) {
    (void)state;
    struct out o;
    sample(&o);
    for (size_t n = 0; n < o.n; n++) {
        struct mosqdb db;
        char err[256];
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, o.b, n);
        int rc = mosqdb_parse(copy, n, &db, err, sizeof(err));
        /* Cut at a chunk boundary, the file is short but well formed; then a reference to
         * what is missing (or the missing config chunk) must be refused instead. */
        if (rc == 0) {
            assert_true(n > 0);
            mosqdb_free(&db);
            bool boundary = false;
            for (size_t at = 23; at <= o.n && !boundary; at += 8 + be32_at(o.b + at + 4))
                boundary = at == n;
            if (!boundary)
                fail_msg("truncated at %zu accepted", n);
        } else {
            assert_non_null(strstr(err, "offset "));
        }
        free(copy);
    }
}

static void inconsistencies_are_refused(void **state) {
    (void)state;
    struct out o;
    /* A client message naming a message store id that is not in the file. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    msg(&o, 7, "a/b", "x", 1, false, NULL, 0);
    client_v5(&o, "c", 60);
    cmsg(&o, 8, "c", 1, 1, 3, 1, 0);
    expect_error(o.b, o.n, off_cmsg, "message store id 8");
    /* A retained entry likewise. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    retain(&o, 3);
    expect_error(o.b, o.n, off_retain, "message store id 3");
    /* A subscription of an unknown client. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    subc(&o, "ghost", "a/#", 1, 0, 0);
    expect_error(o.b, o.n, off_sub, "no client chunk");
    /* An unknown chunk type. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    size_t at = o.n;
    be32(&o, 99);
    be32(&o, 0);
    expect_error(o.b, o.n, at, "unknown chunk type 99");
    /* A property block that is not one. */
    static const uint8_t bad[] = {3, 0x03, 0, 9};
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    msg(&o, 1, "a", "x", 0, false, bad, sizeof(bad));
    expect_error(o.b, o.n, off_msg + 8 + 32 + 2, "property block");
    /* Bad UTF-8 in a topic. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    msg(&o, 1, "a\xff", "x", 0, false, NULL, 0);
    expect_error(o.b, o.n, off_msg + 8 + 32, "topic");
    /* A chunk length past the end. */
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    at = o.n;
    be32(&o, 4);
    be32(&o, 800);
    le64(&o, 1);
    expect_error(o.b, o.n, at, "truncated");
    /* An unsupported version and no magic. */
    memset(&o, 0, sizeof(o));
    header(&o, 7);
    expect_error(o.b, o.n, 19, "version 7");
    expect_error((const uint8_t *)"SQLite format 3\0\0\0\0\0\0\0\0", 23, 0, "magic");
}

static void import_writes_one_transaction(void **state) {
    (void)state;
#if !HATO_WITH_PERSISTENCE
    skip();
#endif
    char dir[] = "/tmp/hato-mosqdb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/store.db", dir);
    char err[512];
    struct store *st = store_open(path, STORE_SYNC_NONE, false, err, sizeof(err));
    assert_non_null(st);
    assert_true(mosq_import_store_empty(st));
    struct out o;
    sample(&o);
    struct mosqdb db;
    assert_int_equal(mosqdb_parse(o.b, o.n, &db, err, sizeof(err)), 0);
    struct mosq_import_counts c;
    assert_int_equal(mosq_import(st, &db, 1000, &c, err, sizeof(err)), 0);
    assert_int_equal(c.retained, 1);
    assert_int_equal(c.sessions, 1);
    assert_int_equal(c.subs, 1);
    assert_int_equal(c.queued, 1);
    assert_int_equal(c.inflight, 1);
    assert_int_equal(store_count(st, SDB_RETAIN), 1);
    assert_int_equal(store_count(st, SDB_SESS), 1);
    assert_int_equal(store_count(st, SDB_QUEUE), 2);
    assert_int_equal(store_count(st, SDB_MSGS), 0); /* each message has one receiver: inline */
    assert_false(mosq_import_store_empty(st));
    mosqdb_free(&db);
    store_close(st);
    char lock[160];
    snprintf(lock, sizeof(lock), "%s-lock", path);
    unlink(path);
    unlink(lock);
    rmdir(dir);
}

/* Sessions and messages whose expiry time passed are not imported, and counted. */
static void expired_are_skipped(void **state) {
    (void)state;
#if !HATO_WITH_PERSISTENCE
    skip();
#endif
    struct out o;
    memset(&o, 0, sizeof(o));
    header(&o, 5);
    msg(&o, 1, "old", "x", 1, true, NULL, 0);
    o.b[off_msg + 8 + 8] = 100; /* expiry time 100 s */
    msg(&o, 2, "new", "y", 1, true, NULL, 0);
    client_v5(&o, "gone", 60);
    o.b[off_client + 8] = 200; /* session expiry time 200 s */
    cmsg(&o, 2, "gone", 0, 1, 11, 1, 0);
    client_v5(&o, "kept", 3600);
    cmsg(&o, 1, "kept", 0, 1, 11, 1, 0);
    cmsg(&o, 2, "kept", 0, 1, 11, 1, 0);
    retain(&o, 1);
    retain(&o, 2);
    char dir[] = "/tmp/hato-mosqdb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], lock[160], err[512];
    snprintf(path, sizeof(path), "%s/store.db", dir);
    snprintf(lock, sizeof(lock), "%s-lock", path);
    struct store *st = store_open(path, STORE_SYNC_NONE, false, err, sizeof(err));
    assert_non_null(st);
    struct mosqdb db;
    assert_int_equal(mosqdb_parse(o.b, o.n, &db, err, sizeof(err)), 0);
    struct mosq_import_counts c;
    assert_int_equal(mosq_import(st, &db, 300 * 1000, &c, err, sizeof(err)), 0);
    assert_int_equal(c.expired_sessions, 1);
    assert_int_equal(c.sessions, 1);
    assert_int_equal(c.expired_msgs, 2); /* the retained one and kept's queued copy */
    assert_int_equal(c.retained, 1);
    assert_int_equal(c.queued, 1);
    assert_int_equal(store_count(st, SDB_QUEUE), 1);
    assert_int_equal(store_count(st, SDB_SESS), 1);
    mosqdb_free(&db);
    store_close(st);
    unlink(path);
    unlink(lock);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_a_format_5_file),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(inconsistencies_are_refused),
        cmocka_unit_test(import_writes_one_transaction),
        cmocka_unit_test(expired_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
