/*
 * mosquitto.db -> hato store. See mosqimport.h and docs/internals/mosqdb.md.
 *
 * Mapping:
 *   retain chunk       -> retain table (topic -> message, retain set)
 *   client chunk       -> sess table (client id -> session with its sub chunks)
 *   client msg, out    -> queue entries in file order (Mosquitto writes each
 *                         client's in-flight list, then its queue): queued, or
 *                         in flight with the packet id and state kept
 *   client msg, in     -> an incoming QoS 2 message Mosquitto acknowledged with
 *                         PUBREC and holds until PUBREL: its packet id goes to
 *                         the inpid table (the PUBREL is answered, a resent
 *                         PUBLISH is not delivered twice) and the message is
 *                         queued now to the imported sessions it matches
 *   message store      -> inside its one queue entry, or once in msgs (with a
 *                         reference count) when several entries share it
 */
#include "store/mosqimport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/record.h"

#define FORWARDED                                                                                  \
    (MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |             \
     MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) |         \
     MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY))

/* One queue entry to write. */
struct pend {
    size_t client, msg;
    uint8_t qos, state;
    bool retain;
    uint16_t pid;
    uint16_t nsub;
    uint32_t subid;   /* nsub == 1 */
    uint32_t *subids; /* nsub > 1, malloc'd */
};

struct imp {
    struct store *st;
    const struct mosqdb *db;
    int64_t now_ms;
    struct store_batch b;
    struct mosq_import_counts *c;
    bool *keep;      /* per client */
    uint32_t *refs;  /* per message: entries using it */
    uint64_t *hid;   /* per message: hato msgs id when refs > 1 */
    size_t *subord;  /* sub indexes grouped by client */
    size_t *subfrom; /* per client: first index into subord; [nclients] = nsubs */
    struct pend *pend;
    size_t npend, cappend;
    char *err;
    size_t errlen;
};

static bool msg_expired(const struct imp *im, const struct mosqdb_msg *m) {
    return m->expiry_time > 0 && m->expiry_time * 1000 <= im->now_ms;
}

/* Encode m as an hato message record (retain as given). */
static int encode_msg(const struct mosqdb_msg *m, bool retain, struct rbuf *out) {
    struct rec_msg r = {0};
    r.qos = m->qos;
    r.retain = retain;
    r.expiry_at = m->expiry_time > 0 ? m->expiry_time * 1000 : 0;
    r.topic = m->topic;
    r.topic_len = m->topic_len;
    r.payload = m->payload;
    r.payload_len = m->payload_len;
    const struct mqtt_props *p = &m->props;
    r.props_present = p->present & FORWARDED;
    r.payload_format = p->payload_format;
    if (p->present & MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE)) {
        r.content_type = p->content_type.p;
        r.content_type_len = p->content_type.len;
    }
    if (p->present & MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC)) {
        r.response_topic = p->response_topic.p;
        r.response_topic_len = p->response_topic.len;
    }
    if (p->present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA)) {
        r.correlation_data = p->correlation_data.p;
        r.correlation_data_len = p->correlation_data.len;
    }
    uint8_t *up = NULL;
    if (p->present & MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY)) {
        size_t n = mqtt_user_props_collect(p, NULL, 0);
        up = malloc(n ? n : 1);
        if (!up)
            return -1;
        mqtt_user_props_collect(p, up, n);
        r.user_props = up;
        r.user_props_len = (uint32_t)n;
    }
    rec_msg_encode(out, &r);
    free(up);
    return out->failed ? -1 : 0;
}

static int oom(struct imp *im) {
    snprintf(im->err, im->errlen, "out of memory");
    return -1;
}

static int add_pend(struct imp *im, const struct pend *p) {
    if (im->npend == im->cappend) {
        size_t n = im->cappend ? im->cappend * 2 : 256;
        struct pend *a = realloc(im->pend, n * sizeof(*a));
        if (!a)
            return oom(im);
        im->pend = a;
        im->cappend = n;
    }
    im->pend[im->npend++] = *p;
    im->refs[p->msg]++;
    return 0;
}

/* Session expired by the time of the import (or one that ends with its connection). */
static bool session_gone(const struct imp *im, const struct mosqdb_client *c) {
    if (c->session_expiry_interval == 0)
        return true;
    return c->session_expiry_interval != UINT32_MAX && c->session_expiry_time > 0 &&
           c->session_expiry_time * 1000 <= im->now_ms;
}

static int group_subs(struct imp *im) {
    const struct mosqdb *db = im->db;
    im->subfrom = calloc(db->nclients + 1, sizeof(size_t));
    im->subord = malloc((db->nsubs ? db->nsubs : 1) * sizeof(size_t));
    if (!im->subfrom || !im->subord)
        return oom(im);
    for (size_t i = 0; i < db->nsubs; i++)
        im->subfrom[db->subs[i].client + 1]++;
    for (size_t k = 0; k < db->nclients; k++)
        im->subfrom[k + 1] += im->subfrom[k];
    size_t *fill = calloc(db->nclients + 1, sizeof(size_t));
    if (!fill)
        return oom(im);
    for (size_t i = 0; i < db->nsubs; i++) {
        size_t k = db->subs[i].client;
        im->subord[im->subfrom[k] + fill[k]++] = i;
    }
    free(fill);
    return 0;
}

/* Outgoing client message -> queue entry. */
static int out_msg(struct imp *im, const struct mosqdb_cmsg *cm) {
    struct pend p = {.client = cm->client, .msg = cm->msg, .qos = cm->qos, .retain = cm->retain};
    if (cm->sub_id) {
        p.nsub = 1;
        p.subid = cm->sub_id;
    }
    /* A message that went out once (dup) or is waiting for its acknowledgement keeps its
     * packet id: the client may hold it; one never sent is simply queued. */
    uint8_t st = REC_QUEUED;
    switch (cm->state) {
    case MOSQDB_QUEUED:
    case MOSQDB_PUBLISH_QOS0:
        break;
    case MOSQDB_PUBLISH_QOS1:
    case MOSQDB_PUBLISH_QOS2:
        if (cm->dup)
            st = cm->qos == 1 ? REC_WAIT_PUBACK : REC_WAIT_PUBREC;
        break;
    case MOSQDB_WAIT_PUBACK:
        st = REC_WAIT_PUBACK;
        break;
    case MOSQDB_WAIT_PUBREC:
        st = REC_WAIT_PUBREC;
        break;
    case MOSQDB_RESEND_PUBREL:
    case MOSQDB_WAIT_PUBCOMP:
        st = REC_WAIT_PUBCOMP;
        break;
    default:
        snprintf(im->err, im->errlen,
                 "offset %zu: outgoing client message in state %u, which only an incoming one "
                 "has",
                 cm->offset, cm->state);
        return -1;
    }
    if (st != REC_QUEUED) {
        if (cm->qos == 0 || cm->mid == 0 || (st == REC_WAIT_PUBACK) != (cm->qos == 1)) {
            snprintf(im->err, im->errlen,
                     "offset %zu: client message in flight with QoS %u, state %u and packet id %u",
                     cm->offset, cm->qos, cm->state, cm->mid);
            return -1;
        }
        p.pid = cm->mid;
    }
    p.state = st;
    if (add_pend(im, &p) < 0)
        return -1;
    if (st == REC_QUEUED)
        im->c->queued++;
    else
        im->c->inflight++;
    return 0;
}

/* An incoming QoS 2 message held for PUBREL: queue it now to the imported sessions it
 * matches (as Mosquitto does on PUBREL), once per session with the highest QoS and every
 * subscription identifier, one member of each shared group. */
static int in_release(struct imp *im, const struct mosqdb_cmsg *cm) {
    const struct mosqdb *db = im->db;
    const struct mosqdb_msg *m = &db->msgs[cm->msg];
    struct mqtt_str *groups = NULL;
    size_t ngroups = 0;
    int rc = 0;
    for (size_t k = 0; k < db->nclients && rc == 0; k++) {
        if (!im->keep[k])
            continue;
        int qos = -1;
        bool retain = false;
        uint32_t *ids = NULL;
        uint16_t nids = 0;
        for (size_t j = im->subfrom[k]; j < im->subfrom[k + 1]; j++) {
            const struct mosqdb_sub *s = &db->subs[im->subord[j]];
            struct mqtt_str group = {0}, inner = {s->filter, s->filter_len};
            int shared = mqtt_shared_split(s->filter, s->filter_len, &group, &inner);
            if (shared < 0 || !mqtt_topic_match(inner.p, inner.len, m->topic, m->topic_len))
                continue;
            if ((s->options & 0x04) && k == cm->client)
                continue; /* no local */
            if (shared == 1) {
                bool taken = false;
                for (size_t g = 0; g < ngroups; g++)
                    if (groups[g].len == s->filter_len &&
                        memcmp(groups[g].p, s->filter, s->filter_len) == 0)
                        taken = true;
                if (taken)
                    continue;
                struct mqtt_str *a = realloc(groups, (ngroups + 1) * sizeof(*a));
                if (!a) {
                    free(ids);
                    free(groups);
                    return oom(im);
                }
                groups = a;
                groups[ngroups++] = (struct mqtt_str){s->filter, s->filter_len};
            }
            int q = s->qos < m->qos ? s->qos : m->qos;
            if (q > qos)
                qos = q;
            if ((s->options & 0x08) && m->retain)
                retain = true;
            if (s->identifier) {
                uint32_t *a = realloc(ids, (nids + 1u) * sizeof(*a));
                if (!a) {
                    free(ids);
                    free(groups);
                    return oom(im);
                }
                ids = a;
                ids[nids++] = s->identifier;
            }
        }
        if (qos <= 0) {
            /* No match, or QoS 0, which Mosquitto does not queue for an offline client by
             * default (queue_qos0_messages false). */
            free(ids);
            continue;
        }
        struct pend p = {.client = k,
                         .msg = cm->msg,
                         .qos = (uint8_t)qos,
                         .retain = retain,
                         .state = REC_QUEUED,
                         .nsub = nids};
        if (nids == 1) {
            p.subid = ids[0];
            free(ids);
        } else {
            p.subids = ids;
        }
        rc = add_pend(im, &p);
        if (rc < 0)
            free(p.subids);
        else
            im->c->queued++;
    }
    free(groups);
    if (rc == 0)
        im->c->released++;
    return rc;
}

static void put_retained(struct imp *im, const struct mosqdb_msg *m, struct rbuf *buf) {
    if (m->payload_len == 0) {
        store_del(&im->b, SDB_RETAIN, m->topic, m->topic_len);
        return;
    }
    buf->len = 0;
    if (encode_msg(m, true, buf) == 0)
        store_put(&im->b, SDB_RETAIN, m->topic, m->topic_len, buf->p, buf->len);
}

/* Retained messages (before the incoming messages, which are newer). */
static int write_retained(struct imp *im) {
    const struct mosqdb *db = im->db;
    struct rbuf buf = {0};
    for (size_t i = 0; i < db->nretains; i++) {
        const struct mosqdb_msg *m = &db->msgs[db->retains[i].msg];
        if (msg_expired(im, m)) {
            im->c->expired_msgs++;
            continue;
        }
        put_retained(im, m, &buf);
        im->c->retained++;
    }
    bool failed = buf.failed;
    rbuf_free(&buf);
    return failed ? oom(im) : 0;
}

static int write_all(struct imp *im) {
    const struct mosqdb *db = im->db;
    struct rbuf buf = {0};
    uint8_t key[2 + 65535 + 8];
    /* Sessions with their subscriptions. */
    for (size_t k = 0; k < db->nclients; k++) {
        if (!im->keep[k])
            continue;
        const struct mosqdb_client *c = &db->clients[k];
        struct rec_sess s = {0};
        /* Mosquitto does not record the protocol; an MQTT 3.1.1 persistent session has the
         * infinite interval. The connection's own version replaces it on reconnect. */
        s.version = c->session_expiry_interval == UINT32_MAX ? 4 : 5;
        s.expiry = c->session_expiry_interval;
        s.offline_at = im->now_ms;
        if (c->session_expiry_time > 0 && c->session_expiry_interval != UINT32_MAX) {
            int64_t off = (c->session_expiry_time - (int64_t)c->session_expiry_interval) * 1000;
            if (off > 0 && off < im->now_ms)
                s.offline_at = off;
        }
        s.has_user = c->username != NULL;
        s.user = c->username;
        s.user_len = c->username_len;
        s.listener = -1;
        s.nsubs = (uint32_t)(im->subfrom[k + 1] - im->subfrom[k]);
        buf.len = 0;
        rec_sess_encode_head(&buf, &s, NULL);
        for (size_t j = im->subfrom[k]; j < im->subfrom[k + 1]; j++) {
            const struct mosqdb_sub *x = &db->subs[im->subord[j]];
            struct rec_sub r = {.filter = x->filter,
                                .len = x->filter_len,
                                .qos = x->qos,
                                .no_local = (x->options & 0x04) != 0,
                                .retain_as_published = (x->options & 0x08) != 0,
                                .retain_handling = (uint8_t)((x->options >> 4) & 3),
                                .sub_id = x->identifier};
            rec_sess_sub_encode(&buf, &r);
            im->c->subs++;
        }
        if (buf.failed)
            break;
        store_put(&im->b, SDB_SESS, c->id, c->id_len, buf.p, buf.len);
        im->c->sessions++;
    }
    /* Messages shared by several entries go once into msgs. */
    for (size_t i = 0; i < db->nmsgs && !buf.failed; i++) {
        if (im->refs[i] < 2)
            continue;
        im->hid[i] = store_next_id(im->st);
        buf.len = 0;
        if (encode_msg(&db->msgs[i], db->msgs[i].retain, &buf) == 0)
            store_msg_put(&im->b, im->hid[i], buf.p, buf.len, im->refs[i]);
    }
    /* Queue entries, in order. */
    struct rbuf mb = {0};
    for (size_t i = 0; i < im->npend && !buf.failed && !mb.failed; i++) {
        const struct pend *p = &im->pend[i];
        const struct mosqdb_client *c = &db->clients[p->client];
        const struct mosqdb_msg *m = &db->msgs[p->msg];
        struct rec_entry e = {.msg_id = im->refs[p->msg] > 1 ? im->hid[p->msg] : 0,
                              .qos = p->qos,
                              .retain = p->retain,
                              .state = p->state,
                              .pid = p->pid,
                              .nsub = p->nsub};
        mb.len = 0;
        if (e.msg_id == 0 && encode_msg(m, m->retain, &mb) < 0)
            break;
        buf.len = 0;
        rec_entry_encode(&buf, &e, p->nsub == 1 ? &p->subid : p->subids, mb.p, (uint32_t)mb.len);
        size_t kl = rec_key_entry(key, (const char *)c->id, c->id_len, store_next_id(im->st));
        if (!buf.failed)
            store_put(&im->b, SDB_QUEUE, key, kl, buf.p, buf.len);
    }
    bool failed = buf.failed || mb.failed;
    rbuf_free(&mb);
    rbuf_free(&buf);
    return failed ? oom(im) : 0;
}

int mosq_import(struct store *st, const struct mosqdb *db, int64_t now_ms,
                struct mosq_import_counts *counts, char *err, size_t errlen) {
    memset(counts, 0, sizeof(*counts));
    struct imp im = {
        .st = st, .db = db, .now_ms = now_ms, .c = counts, .err = err, .errlen = errlen};
    size_t nm = db->nmsgs ? db->nmsgs : 1, nc = db->nclients ? db->nclients : 1;
    im.keep = calloc(nc, sizeof(bool));
    im.refs = calloc(nm, sizeof(uint32_t));
    im.hid = calloc(nm, sizeof(uint64_t));
    int rc = (!im.keep || !im.refs || !im.hid) ? oom(&im) : group_subs(&im);
    for (size_t k = 0; k < db->nclients && rc == 0; k++) {
        im.keep[k] = !session_gone(&im, &db->clients[k]);
        if (!im.keep[k])
            counts->expired_sessions++;
    }
    if (rc == 0)
        rc = write_retained(&im);
    /* Outgoing messages first, in file order; then incoming ones held for PUBREL. */
    for (size_t i = 0; i < db->ncmsgs && rc == 0; i++) {
        const struct mosqdb_cmsg *cm = &db->cmsgs[i];
        if (cm->direction != MOSQDB_OUT || !im.keep[cm->client])
            continue;
        if (msg_expired(&im, &db->msgs[cm->msg])) {
            counts->expired_msgs++;
            continue;
        }
        rc = out_msg(&im, cm);
    }
    for (size_t i = 0; i < db->ncmsgs && rc == 0; i++) {
        const struct mosqdb_cmsg *cm = &db->cmsgs[i];
        if (cm->direction != MOSQDB_IN || !im.keep[cm->client])
            continue;
        if (cm->qos == 2 && cm->mid) {
            uint8_t key[2 + 65535 + 2];
            const struct mosqdb_client *c = &db->clients[cm->client];
            size_t kl = rec_key_inpid(key, (const char *)c->id, c->id_len, cm->mid);
            uint8_t v = REC_FORMAT;
            store_put(&im.b, SDB_INPID, key, kl, &v, 1);
            counts->inpids++;
        }
        const struct mosqdb_msg *m = &db->msgs[cm->msg];
        if (msg_expired(&im, m)) {
            counts->expired_msgs++;
            continue;
        }
        struct rbuf rb = {0};
        if (m->retain)
            put_retained(&im, m, &rb);
        bool failed = rb.failed;
        rbuf_free(&rb);
        rc = failed ? oom(&im) : in_release(&im, cm);
    }
    if (rc == 0)
        rc = write_all(&im);
    if (rc == 0)
        rc = store_commit_now(st, &im.b, err, errlen);
    else
        store_batch_discard(&im.b);
    for (size_t i = 0; i < im.npend; i++)
        free(im.pend[i].subids);
    free(im.pend);
    free(im.keep);
    free(im.refs);
    free(im.hid);
    free(im.subord);
    free(im.subfrom);
    if (rc < 0) {
        struct mosq_import_counts zero = {0};
        *counts = zero;
    }
    return rc;
}

static int count_any(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    *(bool *)ctx = true;
    return 1;
}

bool mosq_import_store_empty(struct store *st) {
    static const enum store_db dbs[] = {SDB_MSGS, SDB_RETAIN, SDB_SESS, SDB_QUEUE, SDB_INPID};
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        bool any = false;
        if (store_each(st, dbs[i], count_any, &any) < 0 || any)
            return false;
    }
    return true;
}

void mosq_import_describe(const struct mosq_import_counts *c, char *out, size_t outlen) {
    snprintf(out, outlen,
             "%zu retained message%s, %zu session%s (%zu subscription%s), %zu queued and %zu "
             "in-flight message%s, %zu QoS 2 id%s awaiting PUBREL (%zu such message%s queued to "
             "subscribers); skipped %zu expired session%s and %zu expired message%s",
             c->retained, c->retained == 1 ? "" : "s", c->sessions, c->sessions == 1 ? "" : "s",
             c->subs, c->subs == 1 ? "" : "s", c->queued, c->inflight, c->inflight == 1 ? "" : "s",
             c->inpids, c->inpids == 1 ? "" : "s", c->released, c->released == 1 ? "" : "s",
             c->expired_sessions, c->expired_sessions == 1 ? "" : "s", c->expired_msgs,
             c->expired_msgs == 1 ? "" : "s");
}

int mosq_import_load(const char *path, uint8_t **bufp, size_t *lenp, struct mosqdb *db, char *err,
                     size_t errlen) {
    *bufp = NULL;
    *lenp = 0;
    memset(db, 0, sizeof(*db));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory (%zu bytes)", path, len);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "file shrank");
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    char why[600];
    if (mosqdb_parse(buf, len, db, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        free(buf);
        return -1;
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}

int mosq_import_is_mosquitto_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    uint8_t head[MOSQDB_MAGIC_LEN];
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    if (n < 0)
        return -1;
    return mosqdb_is_mosquitto(head, (size_t)n) ? 1 : 0;
}

static char *path_plus(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", a, b);
    return p;
}

static void unlink_store(const char *path) {
    char *lock = path_plus(path, "-lock");
    unlink(path);
    if (lock)
        unlink(lock);
    free(lock);
}

/* Rename `from` to from.imported, or from.imported.N (N = 2..99) if taken: never over a file. */
static char *rename_aside(const char *from, char *err, size_t errlen) {
    for (int i = 1; i < 100; i++) {
        char suffix[32];
        snprintf(suffix, sizeof(suffix), i == 1 ? ".imported" : ".imported.%d", i);
        char *to = path_plus(from, suffix);
        if (!to) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        /* link + unlink: fails instead of replacing an existing file. */
        if (link(from, to) == 0) {
            if (unlink(from) == 0)
                return to;
            snprintf(err, errlen, "cannot remove %s after linking it to %s: %s", from, to,
                     strerror(errno));
            unlink(to);
            free(to);
            return NULL;
        }
        int e = errno;
        if (e != EEXIST) {
            /* A file system without hard links: rename, after checking the name is free. */
            struct stat sb;
            if (stat(to, &sb) != 0 && errno == ENOENT && rename(from, to) == 0)
                return to;
            snprintf(err, errlen, "cannot rename %s to %s: %s", from, to, strerror(e));
            free(to);
            return NULL;
        }
        free(to);
    }
    snprintf(err, errlen, "cannot rename %s: %s.imported to .imported.99 all exist", from, from);
    return NULL;
}

static bool same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0)
        return true;
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

int mosq_import_file(const char *mosq_path, const char *store_path, enum store_sync sync,
                     int64_t now_ms, struct mosq_import_counts *counts, char **renamed_to,
                     char *err, size_t errlen) {
    memset(counts, 0, sizeof(*counts));
    *renamed_to = NULL;
    uint8_t *buf;
    size_t len;
    struct mosqdb db;
    if (mosq_import_load(mosq_path, &buf, &len, &db, err, errlen) < 0)
        return -1;
    bool same = same_file(mosq_path, store_path);
    struct stat orig;
    bool have_orig = stat(mosq_path, &orig) == 0;
    char *target = same ? path_plus(store_path, ".import") : strdup(store_path);
    if (!target) {
        snprintf(err, errlen, "out of memory");
        mosqdb_free(&db);
        free(buf);
        return -1;
    }
    if (same)
        unlink_store(target); /* an earlier attempt that stopped before its commit */
    char why[800];
    int rc = -1;
    struct store *st = store_open(target, sync, false, why, sizeof(why));
    if (!st) {
        snprintf(err, errlen, "%s", why);
    } else if (!mosq_import_store_empty(st)) {
        snprintf(err, errlen, "%s: the hato store is not empty; import only into an empty store",
                 target);
    } else if (mosq_import(st, &db, now_ms, counts, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", mosq_path, why);
    } else {
        rc = 0;
    }
    if (st)
        store_close(st);
    mosqdb_free(&db);
    free(buf);
    if (rc < 0) {
        if (same)
            unlink_store(target);
        free(target);
        return -1;
    }
    /* Committed and synced: now, and only now, the original moves aside. */
    *renamed_to = rename_aside(mosq_path, err, errlen);
    if (!*renamed_to) {
        if (same)
            unlink_store(target);
        free(target);
        return -1;
    }
    if (same) {
        char *lock = path_plus(target, "-lock");
        if (rename(target, store_path) != 0) {
            snprintf(err, errlen, "cannot rename %s to %s: %s (the import is complete in %s)",
                     target, store_path, strerror(errno), target);
            free(lock);
            free(target);
            return -1;
        }
        if (lock)
            unlink(lock);
        free(lock);
        /* The store takes the place of the file: give it the file's owner (Debian's
         * mosquitto.db belongs to the mosquitto account the broker runs as). */
        if (have_orig && geteuid() == 0 && chown(store_path, orig.st_uid, orig.st_gid) < 0) {
            snprintf(err, errlen, "cannot give %s to uid %u: %s", store_path, (unsigned)orig.st_uid,
                     strerror(errno));
            free(target);
            return -1;
        }
    }
    free(target);
    return 0;
}

int mosq_import_resume(const char *store_path, char *err, size_t errlen) {
    struct stat sb;
    if (stat(store_path, &sb) == 0 || errno != ENOENT)
        return 0;
    char *tmp = path_plus(store_path, ".import");
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    if (stat(tmp, &sb) == 0) {
        if (rename(tmp, store_path) == 0) {
            char *lock = path_plus(tmp, "-lock");
            if (lock)
                unlink(lock);
            free(lock);
            rc = 1;
        } else {
            snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, store_path, strerror(errno));
            rc = -1;
        }
    }
    free(tmp);
    return rc;
}
