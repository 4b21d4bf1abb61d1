/*
 * Mosquitto persistence file reader. See mosqdb.h and docs/internals/mosqdb.md.
 *
 * Layout (learnt from Mosquitto's persist_*.c; all written by hand here):
 *   15 bytes magic, u32 CRC (unused, 0), u32 BE format version, then chunks:
 *   u32 BE type, u32 BE length, `length` bytes. Fixed parts are C structs
 *   written as is: 16/32/64-bit fields that Mosquitto converts are
 *   big-endian; store ids and times it does not convert are in the writer's
 *   byte order (little-endian on every machine Debian's mosquitto runs on
 *   that matters here; read as little-endian).
 */
#include "store/mosqdb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CH_CFG = 1, CH_MSG = 2, CH_CMSG = 3, CH_RETAIN = 4, CH_SUB = 5, CH_CLIENT = 6 };

/* sizeof of Mosquitto's PF_* structs (with their padding). */
enum {
    SZ_CFG = 16,
    SZ_CLIENT_V5 = 16,
    SZ_CLIENT_V6 = 24,
    SZ_CMSG = 16,
    SZ_MSG = 32,
    SZ_RETAIN = 8,
    SZ_SUB = 12,
};

static const uint8_t magic[MOSQDB_MAGIC_LEN] = {0x00, 0xB5, 0x00, 'm', 'o', 's', 'q', 'u',
                                                'i',  't',  't',  'o', ' ', 'd', 'b'};

bool mosqdb_is_mosquitto(const uint8_t *head, size_t n) {
    return n >= MOSQDB_MAGIC_LEN && memcmp(head, magic, MOSQDB_MAGIC_LEN) == 0;
}

static uint16_t be16(const uint8_t *p) {
    return (uint16_t)((p[0] << 8) | p[1]);
}
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

struct parser {
    const uint8_t *buf;
    size_t len;
    struct mosqdb *db;
    char *err;
    size_t errlen;
    size_t capmsgs, capclients, capcmsgs, capsubs, capretains;
};

static int fail(struct parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t off, const char *fmt, ...) {
    if (p->errlen) {
        int n = snprintf(p->err, p->errlen, "offset %zu: ", off);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* Grow *arr (elements of size sz) to hold one more. */
static void *grow(void *arr, size_t n, size_t *cap, size_t sz) {
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 64;
    void *a = realloc(arr, c * sz);
    if (a)
        *cap = c;
    return a;
}

#define PUSH(p, field, nfield, capfield, off)                                                      \
    do {                                                                                           \
        void *a_ = grow((p)->db->field, (p)->db->nfield, &(p)->capfield, sizeof(*(p)->db->field)); \
        if (!a_)                                                                                   \
            return fail((p), (off), "out of memory");                                              \
        (p)->db->field = a_;                                                                       \
    } while (0)

static bool utf8_ok(const uint8_t *s, size_t n) {
    return mqtt_utf8_valid(s, n);
}

/* A property block that must fill exactly body[0..n). */
static int props(struct parser *p, size_t off, const uint8_t *body, size_t n, bool is_server,
                 struct mqtt_props *out) {
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    size_t used = 0;
    uint8_t reason = 0;
    if (mqtt_props_parse(body, n, MQTT_PUBLISH, is_server, out, &used, &reason) != MQTT_OK)
        return fail(p, off, "bad MQTT 5 property block (%s)", mqtt_reason_text(reason));
    if (used != n)
        return fail(p, off + used, "%zu bytes after the property block", n - used);
    return 0;
}

static int chunk_cfg(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    if (n != SZ_CFG)
        return fail(p, off, "config chunk of %u bytes (expected %d)", n, SZ_CFG);
    p->db->last_db_id = le64(b);
    p->db->shutdown = b[8] != 0;
    if (b[9] != 8)
        return fail(p, off + 8 + 9, "message store id size %u (only 8 is known)", b[9]);
    return 0;
}

static int chunk_msg(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    if (n < SZ_MSG)
        return fail(p, off, "message store chunk of %u bytes, shorter than its %d byte head", n,
                    SZ_MSG);
    struct mosqdb_msg m = {0};
    m.offset = off;
    m.store_id = le64(b);
    m.expiry_time = (int64_t)le64(b + 8);
    m.payload_len = be32(b + 16);
    m.source_mid = be16(b + 20);
    m.source_id_len = be16(b + 22);
    m.source_user_len = be16(b + 24);
    m.topic_len = be16(b + 26);
    m.source_port = be16(b + 28);
    m.qos = b[30];
    m.retain = b[31] != 0;
    size_t body = off + 8;
    if (m.qos > 2)
        return fail(p, body + 30, "message store id %llu: QoS %u", (unsigned long long)m.store_id,
                    m.qos);
    uint64_t need = (uint64_t)SZ_MSG + m.source_id_len + m.source_user_len + m.topic_len +
                    (uint64_t)m.payload_len;
    if (need > n)
        return fail(p, off, "message store id %llu: its fields need %llu bytes, the chunk has %u",
                    (unsigned long long)m.store_id, (unsigned long long)need, n);
    size_t k = SZ_MSG;
    m.source_id = b + k;
    k += m.source_id_len;
    m.source_user = b + k;
    k += m.source_user_len;
    m.topic = b + k;
    if (!mqtt_topic_name_valid(m.topic, m.topic_len))
        return fail(p, body + k, "message store id %llu: topic is not a valid topic name",
                    (unsigned long long)m.store_id);
    k += m.topic_len;
    m.payload = b + k;
    k += m.payload_len;
    if (props(p, body + k, b + k, n - k, true, &m.props) < 0)
        return -1;
    PUSH(p, msgs, nmsgs, capmsgs, off);
    p->db->msgs[p->db->nmsgs++] = m;
    return 0;
}

static int chunk_client(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    size_t fixed = p->db->version == 5 ? SZ_CLIENT_V5 : SZ_CLIENT_V6;
    if (n < fixed)
        return fail(p, off, "client chunk of %u bytes, shorter than its %zu byte head", n, fixed);
    struct mosqdb_client c = {0};
    c.offset = off;
    c.session_expiry_time = (int64_t)le64(b);
    c.session_expiry_interval = be32(b + 8);
    c.last_mid = be16(b + 12);
    c.id_len = be16(b + 14);
    if (fixed == SZ_CLIENT_V6) {
        c.listener_port = be16(b + 16);
        c.username_len = be16(b + 18);
    }
    if ((uint64_t)fixed + c.id_len + c.username_len != n)
        return fail(p, off, "client chunk of %u bytes, its fields make %zu", n,
                    fixed + c.id_len + c.username_len);
    size_t body = off + 8;
    c.id = b + fixed;
    if (c.id_len == 0 || !utf8_ok(c.id, c.id_len))
        return fail(p, body + fixed, "client id is %s", c.id_len ? "not valid UTF-8" : "empty");
    if (c.username_len) {
        c.username = b + fixed + c.id_len;
        if (!utf8_ok(c.username, c.username_len))
            return fail(p, body + fixed + c.id_len, "user name is not valid UTF-8");
    }
    PUSH(p, clients, nclients, capclients, off);
    p->db->clients[p->db->nclients++] = c;
    return 0;
}

static int chunk_cmsg(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    if (n < SZ_CMSG)
        return fail(p, off, "client message chunk of %u bytes, shorter than its %d byte head", n,
                    SZ_CMSG);
    struct mosqdb_cmsg c = {0};
    c.offset = off;
    c.store_id = le64(b);
    c.mid = be16(b + 8);
    c.id_len = be16(b + 10);
    c.qos = b[12];
    c.state = b[13];
    c.retain = (b[14] >> 4) != 0;
    c.dup = (b[14] & 0x0F) != 0;
    c.direction = b[15];
    size_t body = off + 8;
    if (c.qos > 2)
        return fail(p, body + 12, "client message: QoS %u", c.qos);
    if (c.state < MOSQDB_PUBLISH_QOS0 || c.state > MOSQDB_QUEUED)
        return fail(p, body + 13, "client message: unknown state %u", c.state);
    if (c.direction > MOSQDB_OUT)
        return fail(p, body + 15, "client message: unknown direction %u", c.direction);
    if ((uint64_t)SZ_CMSG + c.id_len > n)
        return fail(p, off, "client message chunk of %u bytes, its client id needs %u", n,
                    SZ_CMSG + c.id_len);
    c.client_id = b + SZ_CMSG;
    if (c.id_len == 0 || !utf8_ok(c.client_id, c.id_len))
        return fail(p, body + SZ_CMSG, "client message: client id is %s",
                    c.id_len ? "not valid UTF-8" : "empty");
    size_t k = SZ_CMSG + c.id_len;
    struct mqtt_props pr;
    if (props(p, body + k, b + k, n - k, false, &pr) < 0)
        return -1;
    if (pr.sub_id_count)
        c.sub_id = pr.sub_id[0];
    PUSH(p, cmsgs, ncmsgs, capcmsgs, off);
    p->db->cmsgs[p->db->ncmsgs++] = c;
    return 0;
}

static int chunk_retain(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    if (n != SZ_RETAIN)
        return fail(p, off, "retain chunk of %u bytes (expected %d)", n, SZ_RETAIN);
    PUSH(p, retains, nretains, capretains, off);
    p->db->retains[p->db->nretains++] = (struct mosqdb_retain){le64(b), 0, off};
    return 0;
}

static int chunk_sub(struct parser *p, size_t off, const uint8_t *b, uint32_t n) {
    if (n < SZ_SUB)
        return fail(p, off, "subscription chunk of %u bytes, shorter than its %d byte head", n,
                    SZ_SUB);
    struct mosqdb_sub s = {0};
    s.offset = off;
    s.identifier = be32(b);
    s.id_len = be16(b + 4);
    s.filter_len = be16(b + 6);
    s.qos = b[8];
    s.options = b[9];
    size_t body = off + 8;
    if (s.qos > 2)
        return fail(p, body + 8, "subscription: QoS %u", s.qos);
    if ((s.options & 0xC3) || ((s.options >> 4) & 3) == 3)
        return fail(p, body + 9, "subscription: bad options byte 0x%02x", s.options);
    if (s.identifier > 268435455u)
        return fail(p, body, "subscription identifier %u out of range", s.identifier);
    if ((uint64_t)SZ_SUB + s.id_len + s.filter_len != n)
        return fail(p, off, "subscription chunk of %u bytes, its fields make %u", n,
                    SZ_SUB + s.id_len + s.filter_len);
    s.client_id = b + SZ_SUB;
    if (s.id_len == 0 || !utf8_ok(s.client_id, s.id_len))
        return fail(p, body + SZ_SUB, "subscription: client id is %s",
                    s.id_len ? "not valid UTF-8" : "empty");
    s.filter = b + SZ_SUB + s.id_len;
    if (!mqtt_topic_filter_valid(s.filter, s.filter_len))
        return fail(p, body + SZ_SUB + s.id_len, "subscription: not a valid topic filter");
    PUSH(p, subs, nsubs, capsubs, off);
    p->db->subs[p->db->nsubs++] = s;
    return 0;
}

/* ---- indexes and references ------------------------------------------- */

static int cmp_msg(const void *a, const void *b) {
    uint64_t x = ((const struct mosqdb_idx *)a)->id, y = ((const struct mosqdb_idx *)b)->id;
    return x < y ? -1 : x > y;
}

static int cmp_bytes(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : al < bl ? -1 : al > bl;
}

static int cmp_client(const void *a, const void *b) {
    const struct mosqdb_client *x = a, *y = b;
    return cmp_bytes(x->id, x->id_len, y->id, y->id_len);
}

size_t mosqdb_find_msg(const struct mosqdb *db, uint64_t id) {
    size_t lo = 0, hi = db->nmsgs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t v = db->msg_index[mid].id;
        if (v == id)
            return db->msg_index[mid].i;
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

/* Clients are sorted by id once parsed (their file order carries no meaning). */
size_t mosqdb_find_client(const struct mosqdb *db, const uint8_t *id, size_t len) {
    size_t lo = 0, hi = db->nclients;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_bytes(db->clients[mid].id, db->clients[mid].id_len, id, len);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

static int link_refs(struct parser *p) {
    struct mosqdb *db = p->db;
    if (db->nmsgs) {
        db->msg_index = malloc(db->nmsgs * sizeof(*db->msg_index));
        if (!db->msg_index)
            return fail(p, p->len, "out of memory");
        for (size_t i = 0; i < db->nmsgs; i++)
            db->msg_index[i] = (struct mosqdb_idx){db->msgs[i].store_id, i};
        qsort(db->msg_index, db->nmsgs, sizeof(*db->msg_index), cmp_msg);
        for (size_t i = 1; i < db->nmsgs; i++) {
            const struct mosqdb_msg *a = &db->msgs[db->msg_index[i - 1].i];
            const struct mosqdb_msg *b = &db->msgs[db->msg_index[i].i];
            if (a->store_id == b->store_id)
                return fail(p, a->offset > b->offset ? a->offset : b->offset,
                            "message store id %llu appears twice", (unsigned long long)b->store_id);
        }
    }
    if (db->nclients) {
        qsort(db->clients, db->nclients, sizeof(*db->clients), cmp_client);
        for (size_t i = 1; i < db->nclients; i++) {
            const struct mosqdb_client *a = &db->clients[i - 1], *b = &db->clients[i];
            if (cmp_client(a, b) == 0)
                return fail(p, a->offset > b->offset ? a->offset : b->offset,
                            "client '%.*s' appears twice", (int)b->id_len, (const char *)b->id);
        }
    }
    for (size_t i = 0; i < db->ncmsgs; i++) {
        struct mosqdb_cmsg *c = &db->cmsgs[i];
        c->msg = mosqdb_find_msg(db, c->store_id);
        if (c->msg == (size_t)-1)
            return fail(p, c->offset,
                        "client message refers to message store id %llu, which is "
                        "not in the file",
                        (unsigned long long)c->store_id);
        c->client = mosqdb_find_client(db, c->client_id, c->id_len);
        if (c->client == (size_t)-1)
            return fail(p, c->offset, "client message for client '%.*s', which has no client chunk",
                        (int)c->id_len, (const char *)c->client_id);
        if (c->qos > db->msgs[c->msg].qos)
            return fail(p, c->offset, "client message QoS %u above its message's QoS %u", c->qos,
                        db->msgs[c->msg].qos);
    }
    for (size_t i = 0; i < db->nsubs; i++) {
        struct mosqdb_sub *s = &db->subs[i];
        s->client = mosqdb_find_client(db, s->client_id, s->id_len);
        if (s->client == (size_t)-1)
            return fail(p, s->offset, "subscription of client '%.*s', which has no client chunk",
                        (int)s->id_len, (const char *)s->client_id);
    }
    for (size_t i = 0; i < db->nretains; i++) {
        struct mosqdb_retain *r = &db->retains[i];
        r->msg = mosqdb_find_msg(db, r->store_id);
        if (r->msg == (size_t)-1)
            return fail(p, r->offset,
                        "retained message refers to message store id %llu, which is not in "
                        "the file",
                        (unsigned long long)r->store_id);
    }
    return 0;
}

int mosqdb_parse(const uint8_t *buf, size_t len, struct mosqdb *db, char *err, size_t errlen) {
    memset(db, 0, sizeof(*db));
    struct parser p = {.buf = buf, .len = len, .db = db, .err = err, .errlen = errlen};
    if (errlen)
        err[0] = 0;
    if (len < MOSQDB_MAGIC_LEN || !mosqdb_is_mosquitto(buf, len)) {
        fail(&p, 0, "not a Mosquitto persistence file (no magic)");
        return -1;
    }
    if (len < MOSQDB_MAGIC_LEN + 8) {
        fail(&p, len, "truncated: the file ends inside its header");
        return -1;
    }
    db->version = be32(buf + MOSQDB_MAGIC_LEN + 4);
    if (db->version != 5 && db->version != 6) {
        fail(&p, MOSQDB_MAGIC_LEN + 4,
             "format version %u is not supported (5: Mosquitto 1.6, 6: Mosquitto 2.0; "
             "an older file can be brought to 6 by starting and stopping Mosquitto 2.0 on it)",
             db->version);
        return -1;
    }
    size_t off = MOSQDB_MAGIC_LEN + 8;
    bool cfg = false;
    int rc = 0;
    while (off < len && rc == 0) {
        if (len - off < 8) {
            rc = fail(&p, off, "truncated: %zu bytes left, a chunk header needs 8", len - off);
            break;
        }
        uint32_t type = be32(buf + off), n = be32(buf + off + 4);
        if ((uint64_t)n > len - off - 8) {
            rc = fail(&p, off, "truncated: chunk of type %u claims %u bytes, %zu are left", type, n,
                      len - off - 8);
            break;
        }
        const uint8_t *body = buf + off + 8;
        if (type != CH_CFG && !cfg) {
            rc = fail(&p, off, "chunk of type %u before the config chunk", type);
            break;
        }
        switch (type) {
        case CH_CFG:
            if (cfg)
                rc = fail(&p, off, "second config chunk");
            else
                rc = chunk_cfg(&p, off, body, n);
            cfg = true;
            break;
        case CH_MSG:
            rc = chunk_msg(&p, off, body, n);
            break;
        case CH_CMSG:
            rc = chunk_cmsg(&p, off, body, n);
            break;
        case CH_RETAIN:
            rc = chunk_retain(&p, off, body, n);
            break;
        case CH_SUB:
            rc = chunk_sub(&p, off, body, n);
            break;
        case CH_CLIENT:
            rc = chunk_client(&p, off, body, n);
            break;
        default:
            rc = fail(&p, off, "unknown chunk type %u", type);
            break;
        }
        off += 8 + (size_t)n;
    }
    if (rc == 0 && !cfg)
        rc = fail(&p, off, "no config chunk");
    if (rc == 0)
        rc = link_refs(&p);
    if (rc < 0) {
        mosqdb_free(db);
        return -1;
    }
    return 0;
}

void mosqdb_free(struct mosqdb *db) {
    free(db->msgs);
    free(db->clients);
    free(db->cmsgs);
    free(db->subs);
    free(db->retains);
    free(db->msg_index);
    uint32_t v = db->version;
    memset(db, 0, sizeof(*db));
    db->version = v;
}
