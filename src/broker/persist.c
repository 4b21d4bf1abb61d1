/*
 * Persistence glue: broker objects <-> store records. See persist.h and
 * docs/internals/store.md.
 */
#include "broker/persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/reload.h"
#include "store/mosqimport.h"
#include "store/record.h"

#define KEYMAX (2 + 65535 + 8)

static bool on(const struct broker *b) {
    return b->store != NULL;
}

/* ---- encoding --------------------------------------------------------- */

static void msg_to_rec(const struct msg *m, struct rec_msg *r) {
    memset(r, 0, sizeof(*r));
    r->qos = m->qos;
    r->retain = m->retain;
    r->expiry_at = m->expiry_at;
    r->topic = (const uint8_t *)m->topic;
    r->topic_len = m->topic_len;
    r->payload = m->payload;
    r->payload_len = m->payload_len;
    r->props_present = m->props.present;
    r->payload_format = m->props.payload_format;
    r->content_type = m->props.content_type.p;
    r->content_type_len = m->props.content_type.len;
    r->response_topic = m->props.response_topic.p;
    r->response_topic_len = m->props.response_topic.len;
    r->correlation_data = m->props.correlation_data.p;
    r->correlation_data_len = m->props.correlation_data.len;
    r->user_props = m->props.user_props.p;
    r->user_props_len = m->props.user_props.len;
}

static struct msg *msg_from_rec(const struct rec_msg *r) {
    struct mqtt_props p = {0};
    p.present = r->props_present;
    p.payload_format = r->payload_format;
    p.content_type = (struct mqtt_str){r->content_type, r->content_type_len};
    p.response_topic = (struct mqtt_str){r->response_topic, r->response_topic_len};
    p.correlation_data = (struct mqtt_str){r->correlation_data, r->correlation_data_len};
    p.user_props = (struct mqtt_str){r->user_props, r->user_props_len};
    struct msg *m = msg_new((const char *)r->topic, r->topic_len, r->payload, r->payload_len,
                            r->qos, r->retain, &p, 0, NULL);
    if (m)
        m->expiry_at = r->expiry_at;
    return m;
}

/* Encoded size of m (rec_msg_encode). */
static size_t msg_rec_size(const struct msg *m) {
    return 1 + 1 + 1 + 8 + 2 + m->topic_len + 4 + m->payload_len + 8 + 1 + 16 +
           m->props.content_type.len + m->props.response_topic.len + m->props.correlation_data.len +
           m->props.user_props.len;
}

static int encode_msg(const struct msg *m, struct rbuf *b) {
    struct rec_msg r;
    msg_to_rec(m, &r);
    rec_msg_encode(b, &r);
    return b->failed ? -1 : 0;
}

static void entry_put(struct store_batch *sb, struct session *s, const struct deliv *d) {
    uint8_t key[KEYMAX];
    size_t kl = rec_key_entry(key, s->client_id, s->id_len, d->seq);
    /* A message with this one receiver travels inside its entry (smid 0). */
    uint8_t mbuf[1024];
    struct rbuf mb = {0};
    if (d->smid == 0) {
        if (msg_rec_size(d->m) <= sizeof(mbuf))
            mb = (struct rbuf){mbuf, 0, sizeof(mbuf), false};
        if (encode_msg(d->m, &mb) < 0) {
            if (mb.p != mbuf)
                rbuf_free(&mb);
            log_error("Error: out of memory storing a message; it is not durable.");
            return;
        }
    }
    struct rec_entry e = {.msg_id = d->smid,
                          .qos = d->qos,
                          .retain = d->retain,
                          .state = d->state,
                          .pid = d->pid,
                          .nsub = d->nsub};
    uint8_t small[64 + sizeof(mbuf)];
    struct rbuf b = {small, 0, sizeof(small), false};
    if (d->nsub > 8 || mb.len > sizeof(mbuf))
        b = (struct rbuf){0};
    rec_entry_encode(&b, &e, d->nsub == 1 ? &d->subid : d->subids, mb.p, (uint32_t)mb.len);
    if (!b.failed)
        store_put(sb, SDB_QUEUE, key, kl, b.p, b.len);
    if (b.p != small)
        rbuf_free(&b);
    if (mb.p != mbuf)
        rbuf_free(&mb);
}

/* ---- hooks ------------------------------------------------------------ */

void persist_flush(struct worker *w) {
    if (w->b->store && w->sb.head)
        store_submit(w->b->store, &w->sb);
}

static bool stores_deliv(struct broker *b, struct session *s, const struct deliv *d) {
    if (!atomic_load_explicit(&s->durable, memory_order_relaxed))
        return false;
    return d->qos > 0 ||
           (b->cfg->queue_qos0_messages && !atomic_load_explicit(&s->online, memory_order_relaxed));
}

void persist_route(struct worker *w, struct msg *m, struct pending_deliv *pd, size_t n) {
    struct broker *b = w->b;
    if (!on(b))
        return;
    uint32_t refs = 0;
    for (size_t i = 0; i < n; i++)
        if (stores_deliv(b, pd[i].s, &pd[i].d))
            refs++;
    if (!refs)
        return;
    if (refs == 1) {
        /* One durable receiver: the message goes inside its entry. */
        for (size_t i = 0; i < n; i++) {
            struct pending_deliv *p = &pd[i];
            if (stores_deliv(b, p->s, &p->d)) {
                p->d.smid = 0;
                p->d.seq = store_next_id(b->store);
                entry_put(&w->sb, p->s, &p->d);
                break;
            }
        }
        return;
    }
    /* Small messages are encoded on the stack (the batch copies them). */
    uint8_t small[1024];
    struct rbuf mb = {0};
    if (msg_rec_size(m) <= sizeof(small))
        mb = (struct rbuf){small, 0, sizeof(small), false};
    if (encode_msg(m, &mb) < 0) {
        if (mb.p != small)
            rbuf_free(&mb);
        log_error("Error: out of memory storing a message; it is not durable.");
        return;
    }
    uint64_t id = store_next_id(b->store);
    store_msg_put(&w->sb, id, mb.p, mb.len, refs);
    if (mb.p != small)
        rbuf_free(&mb);
    for (size_t i = 0; i < n; i++) {
        struct pending_deliv *p = &pd[i];
        if (!stores_deliv(b, p->s, &p->d))
            continue;
        p->d.smid = id;
        p->d.seq = store_next_id(b->store);
        entry_put(&w->sb, p->s, &p->d);
    }
}

void persist_deliv_new(struct session *s, struct deliv *d) {
    struct broker *b = s->w->b;
    if (!on(b) || d->seq || !stores_deliv(b, s, d))
        return;
    d->smid = 0; /* inline */
    d->seq = store_next_id(b->store);
    entry_put(&s->w->sb, s, d);
}

void persist_deliv_update(struct session *s, const struct deliv *d) {
    if (!on(s->w->b) || !d->seq)
        return;
    entry_put(&s->w->sb, s, d);
}

/*
 * A QoS 1 delivery's packet id is not written when it is sent (the PUBACK usually comes
 * within a few commits and deletes the entry: two B-tree operations per message instead of
 * three). It is written here, when the connection goes (session_detach; at shutdown the
 * workers close their connections the same way before the store closes), so a restart
 * re-sends it with DUP and the same id (MQTT-4.4.0-1). After a crash the entry is restored
 * as queued and sent again under a new id: a duplicate, which QoS 1 allows.
 */
void persist_session_inflight(struct session *s) {
    if (!on(s->w->b))
        return;
    for (uint32_t i = 0; i < s->ninflight; i++) {
        const struct deliv *d = &s->inflight[s->inflight_head + i];
        if (d->seq && d->qos == 1 && d->state == DS_WAIT_PUBACK)
            entry_put(&s->w->sb, s, d);
    }
}

void persist_deliv_done(struct session *s, struct deliv *d) {
    if (!on(s->w->b) || !d->seq)
        return;
    uint8_t key[KEYMAX];
    size_t kl = rec_key_entry(key, s->client_id, s->id_len, d->seq);
    store_entry_del(&s->w->sb, key, kl, d->smid);
    d->seq = 0;
}

void persist_session(struct session *s) {
    struct broker *b = s->w->b;
    if (!on(b) || !atomic_load(&s->durable))
        return;
    int64_t now = msg_now_ms();
    struct rec_sess r = {.version = s->version, .expiry = s->expiry, .will_delay = s->will_delay};
    if (!s->conn)
        r.offline_at = now;
    if (s->will && s->will_at)
        r.will_at = now + (s->will_at - ev_clock_ms());
    struct rec_msg will;
    if (s->will)
        msg_to_rec(s->will, &will);
    r.has_user = s->username != NULL;
    if (s->username) {
        r.user = (const uint8_t *)s->username;
        r.user_len = (uint32_t)strlen(s->username);
    }
    r.listener = -1;
    const struct hato_config *cfg = b->cfg;
    size_t li = hato_listener_index(cfg, s->lcfg); /* lcfg may be from an older config */
    if (li != (size_t)-1)
        r.listener = (int32_t)li;
    r.nsubs = (uint32_t)s->nsubs;
    struct rbuf buf = {0};
    rec_sess_encode_head(&buf, &r, s->will ? &will : NULL);
    for (struct sess_sub *x = s->subs; x; x = x->next) {
        struct rec_sub sub = {.filter = (const uint8_t *)x->filter,
                              .len = x->len,
                              .qos = x->opts.qos,
                              .retain_handling = x->opts.retain_handling,
                              .no_local = x->opts.no_local,
                              .retain_as_published = x->opts.retain_as_published,
                              .sub_id = x->opts.sub_id};
        rec_sess_sub_encode(&buf, &sub);
    }
    if (buf.failed) {
        rbuf_free(&buf);
        log_error("Error: out of memory saving session %s.", s->client_id);
        return;
    }
    store_put_take(&s->w->sb, SDB_SESS, s->client_id, s->id_len, buf.p, buf.len);
}

void persist_session_end(struct session *s) {
    if (!on(s->w->b) || !atomic_load(&s->durable))
        return;
    atomic_store(&s->durable, false);
    uint8_t key[KEYMAX];
    size_t kl = rec_key_session(key, s->client_id, s->id_len);
    store_del(&s->w->sb, SDB_SESS, s->client_id, s->id_len);
    store_session_purge(&s->w->sb, key, kl);
    /* In-memory deliveries keep their numbers; deleting a purged entry is harmless. */
}

void persist_inpid(struct session *s, uint16_t pid, bool add) {
    if (!on(s->w->b) || !atomic_load(&s->durable))
        return;
    uint8_t key[KEYMAX];
    size_t kl = rec_key_inpid(key, s->client_id, s->id_len, pid);
    if (add) {
        uint8_t v = REC_FORMAT;
        store_put(&s->w->sb, SDB_INPID, key, kl, &v, 1);
    } else {
        store_del(&s->w->sb, SDB_INPID, key, kl);
    }
}

/* The publisher of a retained message, after it in the record (check_retain_source). */
static void encode_source(struct broker *b, const struct msg *m, struct rbuf *buf) {
    if (!m->src)
        return;
    struct rec_source r = {.id = (const uint8_t *)m->src->id,
                           .id_len = (uint16_t)strlen(m->src->id),
                           .has_user = m->src->user != NULL,
                           .listener = -1};
    if (m->src->user) {
        r.user = (const uint8_t *)m->src->user;
        r.user_len = (uint32_t)strlen(m->src->user);
    }
    size_t li = m->src->lcfg ? hato_listener_index(broker_config(b), m->src->lcfg) : (size_t)-1;
    if (li != (size_t)-1)
        r.listener = (int32_t)li;
    rec_source_encode(buf, &r);
}

/* Writer thread: the retained message of a topic as it is now. */
struct cur_ret {
    struct msg *m;
};

static void take_retained(void *ctx, struct msg *m) {
    struct cur_ret *c = ctx;
    if (!c->m)
        c->m = msg_ref(m);
}

static int retained_now(void *ctx, const uint8_t *key, size_t klen, uint8_t **val, size_t *vlen) {
    struct broker *b = ctx;
    struct cur_ret c = {0};
    retain_match(b->retain, (const char *)key, klen, take_retained, &c);
    if (!c.m)
        return 0;
    struct rbuf buf = {0};
    encode_msg(c.m, &buf);
    encode_source(b, c.m, &buf);
    msg_unref(c.m);
    if (buf.failed) {
        rbuf_free(&buf);
        *val = NULL;
        return 1; /* the writer reports the failure */
    }
    *val = buf.p;
    *vlen = buf.len;
    return 1;
}

void persist_retain(struct worker *w, const struct msg *m) {
    if (!on(w->b))
        return;
    store_put_current(&w->sb, SDB_RETAIN, m->topic, m->topic_len, retained_now, w->b);
}

/* ---- acknowledgements ------------------------------------------------- */

static int hold(struct conn *c, const struct mqtt_packet *p, bool connack, bool present) {
    struct session *s = c->s;
    uint8_t small[64];
    size_t n = mqtt_encode(small, sizeof(small), c->version, p);
    struct item *it = calloc(1, sizeof(*it));
    uint8_t *buf = n ? malloc(n) : NULL;
    if (!it || !buf) {
        free(it);
        free(buf);
        return -1;
    }
    if (n <= sizeof(small))
        memcpy(buf, small, n);
    else
        mqtt_encode(buf, n, c->version, p);
    it->kind = IT_ACK;
    it->s = s;
    session_ref(s);
    it->abuf = buf;
    it->alen = (uint32_t)n;
    it->gen = s->conn_gen;
    it->ok = true;
    it->connack = connack;
    it->present = present;
    store_release(&c->w->sb, it);
    return 0;
}

int persist_send_ack(struct conn *c, const struct mqtt_packet *p) {
    if (!on(c->w->b) || !c->s)
        return conn_send(c, p);
    return hold(c, p, false, false);
}

int persist_send_connack(struct conn *c, const struct mqtt_packet *p, bool present) {
    if (hold(c, p, true, present) < 0)
        return -1;
    c->connack_held = true;
    return 0;
}

void persist_release_deliver(struct worker *w, struct session *s, struct deliv *d) {
    struct item *it = calloc(1, sizeof(*it));
    if (!it) {
        persist_deliv_done(s, d);
        deliv_clear(d);
        session_unref(s);
        return;
    }
    it->kind = IT_DELIVER;
    it->s = s; /* the caller's reference moves to the item */
    it->d = *d;
    it->ok = true;
    store_release(&w->sb, it);
}

void persist_send_publish(struct session *s, uint16_t pid) {
    struct item *it = calloc(1, sizeof(*it));
    if (!it) {
        session_send_inflight(s, pid); /* out of memory: send now rather than never */
        return;
    }
    it->kind = IT_ACK;
    it->s = s;
    session_ref(s);
    it->gen = s->conn_gen;
    it->ok = true;
    it->send_pid = pid;
    store_release(&s->w->sb, it);
}

/* Writer thread: hand released acknowledgements to their workers, one batch each. */
static void release(void *ctx, void **args, size_t n, bool ok) {
    struct broker *b = ctx;
    struct item **head = calloc((size_t)b->nworkers * 2, sizeof(*head));
    if (!head)
        return; /* cannot happen in practice; the acknowledgements are lost (logged below) */
    struct item **tail = head + b->nworkers;
    for (size_t i = 0; i < n; i++) {
        struct item *it = args[i];
        it->ok = ok;
        it->next = NULL;
        if (!ok && it->kind == IT_DELIVER) {
            /* Not stored, so not acknowledged to its publisher either: not delivered. */
            deliv_clear(&it->d);
            it->kind = IT_ACK;
        }
        int k = it->s->w->id;
        if (tail[k])
            tail[k]->next = it;
        else
            head[k] = it;
        tail[k] = it;
    }
    for (int k = 0; k < b->nworkers; k++) {
        if (!head[k])
            continue;
        struct worker *to = &b->workers[k];
        pthread_mutex_lock(&to->inbox_lock);
        if (to->inbox_tail)
            to->inbox_tail->next = head[k];
        else
            to->inbox_head = head[k];
        to->inbox_tail = tail[k];
        pthread_mutex_unlock(&to->inbox_lock);
        ev_wake(to->loop);
    }
    free(head);
}

void persist_ack_arrived(struct worker *w, struct item *it) {
    (void)w;
    struct session *s = it->s;
    struct conn *c = s->conn;
    if (c && s->conn_gen == it->gen && c->state == CS_CONNECTED) {
        if (!it->ok) {
            if (it->connack) {
                c->connack_held = false;
                conn_close(c, "session could not be saved");
            }
        } else if (it->send_pid) {
            session_send_inflight(s, it->send_pid);
        } else {
            if (conn_write(c, it->abuf, it->alen) == 0)
                stat_inc(&c->w->sc.pkts_out);
            if (it->connack) {
                c->connack_held = false;
                if (it->present)
                    session_resend(s);
                session_pump(s);
                if (c->inlen && c->state == CS_CONNECTED)
                    conn_handle_input(c, c->in, c->inlen);
            }
        }
    }
    free(it->abuf);
    session_unref(s);
    free(it);
}

/* ---- open, restore, close --------------------------------------------- */

char *persist_store_path(const struct hato_config *cfg) {
    const char *dir = cfg->persistence_location ? cfg->persistence_location : ".";
    const char *file = cfg->persistence_file ? cfg->persistence_file : "mosquitto.db";
    size_t dl = strlen(dir);
    char *path = malloc(dl + strlen(file) + 2);
    if (path)
        sprintf(path, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", file);
    return path;
}

/*
 * Migration from Mosquitto (docs/migration.md): when the store's path holds a Mosquitto
 * persistence file, import it in one transaction and rename it *.imported; a damaged
 * file stops start-up with nothing written. A Mosquitto file of the default name beside
 * a store of another name is left alone, with a warning.
 */
static int import_mosquitto(const struct hato_config *cfg, const char *path, enum store_sync sync) {
    char err[1200];
    int r = mosq_import_resume(path, err, sizeof(err));
    if (r < 0) {
        log_error("Error: %s. Refusing to start.", err);
        return -1;
    }
    if (r > 0)
        log_notice("Persistence: finished the import of a Mosquitto file: %s.import is now %s.",
                   path, path);
    int is = mosq_import_is_mosquitto_file(path);
    if (is == 1) {
        struct mosq_import_counts c;
        char *renamed = NULL;
        if (mosq_import_file(path, path, sync, msg_now_ms(), &c, &renamed, err, sizeof(err)) < 0) {
            log_error("Error: cannot import the Mosquitto persistence file: %s. Refusing to "
                      "start (nothing was written; the file is unchanged).",
                      err);
            return -1;
        }
        char line[600];
        mosq_import_describe(&c, line, sizeof(line));
        log_notice("Persistence: imported Mosquitto's %s: %s. The original is now %s.", path, line,
                   renamed);
        free(renamed);
        return 0;
    }
    const char *file = cfg->persistence_file ? cfg->persistence_file : "mosquitto.db";
    if (strcmp(file, "mosquitto.db") != 0) {
        const char *dir = cfg->persistence_location ? cfg->persistence_location : ".";
        size_t dl = strlen(dir);
        char *other = malloc(dl + 16);
        if (other) {
            sprintf(other, "%s%smosquitto.db", dir, dl && dir[dl - 1] == '/' ? "" : "/");
            if (mosq_import_is_mosquitto_file(other) == 1)
                log_warn("Warning: %s is a Mosquitto persistence file, but the store is %s "
                         "(persistence_file %s): not imported. Import it with hato-store "
                         "import-mosquitto %s -c CONFIG, or set persistence_file mosquitto.db.",
                         other, path, file, other);
            free(other);
        }
    }
    return 0;
}

int persist_open(struct broker *b) {
    const struct hato_config *cfg = b->cfg;
    if (!cfg->persistence)
        return 0;
    char *path = persist_store_path(cfg);
    if (!path)
        return -1;
    enum store_sync sync = cfg->persistence_sync == HATO_SYNC_BATCH  ? STORE_SYNC_BATCH
                           : cfg->persistence_sync == HATO_SYNC_NONE ? STORE_SYNC_NONE
                                                                     : STORE_SYNC_ALWAYS;
    if (import_mosquitto(cfg, path, sync) < 0) {
        free(path);
        return -1;
    }
    char err[700];
    b->store = store_open(path, sync, false, err, sizeof(err));
    if (!b->store) {
        log_error("Error: cannot open the persistence store: %s. Refusing to start (nothing "
                  "was changed on disk).",
                  err);
        free(path);
        return -1;
    }
    log_notice("Persistence: store %s (persistence_sync %s).", path,
               sync == STORE_SYNC_ALWAYS  ? "always"
               : sync == STORE_SYNC_BATCH ? "batch"
                                          : "none");
    free(path);
    return 0;
}

struct loaded_msg {
    uint64_t id;
    struct msg *m;
    uint32_t used;
};

struct restore {
    struct broker *b;
    struct store_batch purge;
    int64_t now_wall, now_mono;
    struct loaded_msg *msgs;
    size_t nmsgs, capmsgs;
    size_t sessions, subs, queued, inflight, inpids, retained;
    size_t expired_sessions, expired_msgs, dangling, over_limit;
    const char *damaged; /* table of the first damaged record */
};

static int load_msg(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct restore *r = ctx;
    struct rread rd = {v, vl, 0, false};
    struct rec_msg rm;
    if (kl != 8 || rec_msg_decode(&rd, &rm) < 0) {
        r->damaged = "msgs";
        return 1;
    }
    if (r->nmsgs == r->capmsgs) {
        size_t n = r->capmsgs ? r->capmsgs * 2 : 1024;
        struct loaded_msg *a = realloc(r->msgs, n * sizeof(*a));
        if (!a)
            return 2;
        r->msgs = a;
        r->capmsgs = n;
    }
    struct msg *m = msg_from_rec(&rm);
    if (!m)
        return 2;
    uint64_t id = rec_key_get_u64(k);
    store_id_seen(r->b->store, id);
    r->msgs[r->nmsgs++] = (struct loaded_msg){id, m, 0};
    return 0;
}

static struct loaded_msg *find_msg(struct restore *r, uint64_t id) {
    size_t lo = 0, hi = r->nmsgs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->msgs[mid].id == id)
            return &r->msgs[mid];
        if (r->msgs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int load_sess(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct restore *r = ctx;
    struct broker *b = r->b;
    struct rread rd = {v, vl, 0, false};
    struct rec_sess rs;
    if (kl == 0 || kl > 65535 || rec_sess_decode(&rd, &rs) < 0) {
        r->damaged = "sess";
        return 1;
    }
    int64_t offline = rs.offline_at ? rs.offline_at : r->now_wall;
    int64_t left = -1; /* ms of expiry left, -1 never */
    if (rs.expiry != UINT32_MAX) {
        left = offline + (int64_t)rs.expiry * 1000 - r->now_wall;
        if (left <= 0) {
            uint8_t key[KEYMAX];
            size_t pl = rec_key_session(key, (const char *)k, kl);
            store_del(&r->purge, SDB_SESS, k, kl);
            store_session_purge(&r->purge, key, pl);
            r->expired_sessions++;
            return 0;
        }
    }
    struct worker *w = broker_owner(b, (const char *)k, kl);
    struct session *s = session_new(w, (const char *)k, kl);
    if (!s)
        return 2;
    s->version = rs.version;
    s->expiry = rs.expiry;
    s->will_delay = rs.will_delay;
    /* The identity ACLs check deliveries against while the client is away. */
    if (rs.has_user) {
        s->username = strndup((const char *)rs.user, rs.user_len);
        if (!s->username)
            return 2;
    }
    if (rs.listener >= 0 && (size_t)rs.listener < b->cfg->n_listeners)
        s->lcfg = &b->cfg->listeners[rs.listener];
    atomic_store(&s->durable, true);
    struct rec_sub sub;
    int rc;
    while ((rc = rec_sess_sub_next(&rs, &sub)) == 1) {
        struct sub_opts o = {.qos = sub.qos,
                             .no_local = sub.no_local,
                             .retain_as_published = sub.retain_as_published,
                             .retain_handling = sub.retain_handling,
                             .sub_id = sub.sub_id};
        if (session_sub_add(s, (const char *)sub.filter, sub.len, &o) < 0)
            return 2;
        r->subs++;
    }
    if (rc < 0) {
        r->damaged = "sess";
        return 1;
    }
    /* A will still waiting for its delay keeps waiting; the will of a client that was
     * connected when the broker stopped is not published (as on a clean shutdown). */
    if (rs.has_will && rs.will_at) {
        s->will = msg_from_rec(&rs.will);
        int64_t due = rs.will_at - r->now_wall;
        s->will_at = r->now_mono + (due > 0 ? due : 0);
    }
    if (left >= 0)
        s->expire_at = r->now_mono + left;
    if (s->will_at || s->expire_at)
        session_timer_add(s);
    r->sessions++;
    return 0;
}

static struct session *find_session(struct broker *b, const uint8_t *id, size_t len) {
    struct worker *w = broker_owner(b, (const char *)id, len);
    return strmap_get(&w->sessions, (const char *)id, len);
}

static int load_entry(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct restore *r = ctx;
    const uint8_t *id, *rest;
    size_t idl, rl;
    struct rread rd = {v, vl, 0, false};
    struct rec_entry e;
    if (rec_key_split(k, kl, &id, &idl, &rest, &rl) < 0 || rl != 8 ||
        rec_entry_decode(&rd, &e) < 0) {
        r->damaged = "queue";
        return 1;
    }
    uint64_t seq = rec_key_get_u64(rest);
    store_id_seen(r->b->store, seq);
    struct session *s = find_session(r->b, id, idl);
    struct loaded_msg *lm = NULL;
    struct msg *m = NULL; /* one reference, for the delivery */
    if (e.msg_id) {
        lm = find_msg(r, e.msg_id);
        if (lm)
            m = msg_ref(lm->m);
        else
            r->dangling++;
    } else {
        struct rec_msg rm;
        if (rec_msg_decode(&e.msg, &rm) < 0) {
            r->damaged = "queue";
            return 1;
        }
        if (!(m = msg_from_rec(&rm)))
            return 2;
    }
    if (!s || !m) {
        msg_unref(m);
        store_entry_del(&r->purge, k, kl, e.msg_id);
        return 0;
    }
    if (msg_remaining_expiry(m, r->now_wall) == 0) {
        msg_unref(m);
        store_entry_del(&r->purge, k, kl, e.msg_id);
        r->expired_msgs++;
        return 0;
    }
    struct deliv d = {.m = m,
                      .qos = e.qos,
                      .retain = e.retain,
                      .state = e.state,
                      .pid = e.pid,
                      .nsub = e.nsub,
                      .seq = seq,
                      .smid = e.msg_id};
    if (e.nsub == 1) {
        d.subid = rread_u32(&e.subids);
    } else if (e.nsub > 1) {
        d.subids = malloc(e.nsub * sizeof(uint32_t));
        if (!d.subids) {
            msg_unref(d.m);
            return 2;
        }
        for (uint16_t i = 0; i < e.nsub; i++)
            d.subids[i] = rread_u32(&e.subids);
    }
    if (e.state != REC_QUEUED && e.pid == 0) {
        d.state = REC_QUEUED; /* cannot be in flight without a packet id: send it anew */
    }
    int rc = session_restore_deliv(s, &d);
    if (rc != 0) {
        deliv_clear(&d);
        if (rc < 0)
            return 2;
        store_entry_del(&r->purge, k, kl, e.msg_id); /* over the queue limits */
        r->over_limit++;
        return 0;
    }
    if (lm)
        lm->used++;
    if (d.state == DS_QUEUED)
        r->queued++;
    else
        r->inflight++;
    return 0;
}

static int load_inpid(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct restore *r = ctx;
    const uint8_t *id, *rest;
    size_t idl, rl;
    (void)v;
    if (rec_key_split(k, kl, &id, &idl, &rest, &rl) < 0 || rl != 2 || vl < 1) {
        r->damaged = "inpid";
        return 1;
    }
    struct session *s = find_session(r->b, id, idl);
    if (!s) {
        store_del(&r->purge, SDB_INPID, k, kl);
        return 0;
    }
    if (session_in_pid_add(s, (uint16_t)((rest[0] << 8) | rest[1])) < 0)
        return 2;
    r->inpids++;
    return 0;
}

static int load_retained(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct restore *r = ctx;
    struct rread rd = {v, vl, 0, false};
    struct rec_msg rm;
    if (rec_msg_decode(&rd, &rm) < 0 || rm.topic_len != kl || memcmp(rm.topic, k, kl) != 0) {
        r->damaged = "retain";
        return 1;
    }
    if (rm.expiry_at && rm.expiry_at <= r->now_wall) {
        store_del(&r->purge, SDB_RETAIN, k, kl);
        r->expired_msgs++;
        return 0;
    }
    struct rec_source src;
    int hs = rec_source_decode(&rd, &src);
    if (hs < 0) {
        r->damaged = "retain";
        return 1;
    }
    struct msg *m = msg_from_rec(&rm);
    if (m && hs == 1) {
        const struct hato_config *cfg = r->b->cfg;
        const struct hato_listener *l = src.listener >= 0 && (size_t)src.listener < cfg->n_listeners
                                            ? &cfg->listeners[src.listener]
                                            : NULL;
        if (msg_set_source(m, (const char *)src.id, src.id_len, (const char *)src.user,
                           src.user_len, l) < 0) {
            msg_unref(m);
            return 2;
        }
    }
    if (!m || retain_set(r->b->retain, m) < 0) {
        msg_unref(m);
        return 2;
    }
    msg_unref(m);
    r->retained++;
    return 0;
}

int persist_restore(struct broker *b) {
    if (!on(b))
        return 0;
    int64_t t0 = ev_clock_ms();
    struct restore r = {.b = b, .now_wall = msg_now_ms(), .now_mono = ev_clock_ms()};
    static const struct {
        enum store_db db;
        store_each_fn fn;
    } steps[] = {{SDB_MSGS, load_msg},
                 {SDB_SESS, load_sess},
                 {SDB_QUEUE, load_entry},
                 {SDB_INPID, load_inpid},
                 {SDB_RETAIN, load_retained}};
    int rc = 0;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == 0; i++) {
        rc = store_each(b->store, steps[i].db, steps[i].fn, &r);
        if (rc == 1) {
            log_error("Error: persistence store is damaged (bad record in table '%s'); "
                      "refusing to start. Check it with hato-store check; nothing was changed.",
                      r.damaged ? r.damaged : store_db_names[steps[i].db]);
        } else if (rc == 2) {
            log_error("Error: out of memory restoring the persistence store.");
        } else if (rc < 0) {
            log_error("Error: cannot read the persistence store (table '%s').",
                      store_db_names[steps[i].db]);
        }
    }
    if (rc == 0) {
        /* Messages no entry refers to go; reference counts are rewritten to what is there. */
        size_t orphans = 0;
        for (size_t i = 0; i < r.nmsgs; i++) {
            uint8_t key[8];
            rec_key_u64(key, r.msgs[i].id);
            if (!r.msgs[i].used) {
                store_del(&r.purge, SDB_MSGS, key, 8);
                store_del(&r.purge, SDB_MREFS, key, 8);
                orphans++;
            } else if (r.msgs[i].used == 1) {
                store_del(&r.purge, SDB_MREFS, key, 8); /* no count means one */
            } else {
                uint32_t u = r.msgs[i].used;
                uint8_t c[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16),
                                (uint8_t)(u >> 24)};
                store_put(&r.purge, SDB_MREFS, key, 8, c, 4);
            }
        }
        store_submit(b->store, &r.purge);
        log_notice("Persistence: restored %zu session%s (%zu subscription%s), %zu queued and "
                   "%zu in-flight message%s, %zu QoS 2 id%s awaiting PUBREL, %zu retained "
                   "message%s in %lld ms; purged %zu expired session%s and %zu expired "
                   "message%s.",
                   r.sessions, r.sessions == 1 ? "" : "s", r.subs, r.subs == 1 ? "" : "s", r.queued,
                   r.inflight, r.inflight == 1 ? "" : "s", r.inpids, r.inpids == 1 ? "" : "s",
                   r.retained, r.retained == 1 ? "" : "s", (long long)(ev_clock_ms() - t0),
                   r.expired_sessions, r.expired_sessions == 1 ? "" : "s", r.expired_msgs,
                   r.expired_msgs == 1 ? "" : "s");
        if (r.over_limit)
            log_warn("Warning: %zu stored message%s dropped: over max_queued_messages or "
                     "max_queued_bytes.",
                     r.over_limit, r.over_limit == 1 ? "" : "s");
        if (r.dangling || orphans)
            log_warn("Warning: persistence store had %zu queue entr%s without message and %zu "
                     "unreferenced message%s; removed.",
                     r.dangling, r.dangling == 1 ? "y" : "ies", orphans, orphans == 1 ? "" : "s");
    } else {
        store_batch_discard(&r.purge);
    }
    for (size_t i = 0; i < r.nmsgs; i++)
        msg_unref(r.msgs[i].m);
    free(r.msgs);
    return rc == 0 ? 0 : -1;
}

static void commit_done(void *ctx, double seconds) {
    stats_commit_observe(ctx, seconds);
}

int persist_start(struct broker *b) {
    if (!on(b))
        return 0;
    char err[700];
    if (store_reopen_after_fork(b->store, err, sizeof(err)) < 0) {
        log_error("Error: cannot open the persistence store again after daemonizing: %s.", err);
        return -1;
    }
    /* Every completed commit feeds the store commit histogram ($SYS, metrics). */
    store_set_commit_hook(b->store, commit_done, b->stats);
    if (store_start(b->store, release, b) < 0) {
        log_error("Error: cannot start the store writer thread.");
        return -1;
    }
    return 0;
}

void persist_close(struct broker *b) {
    if (!on(b))
        return;
    for (int i = 0; i < b->nworkers && b->workers; i++)
        persist_flush(&b->workers[i]);
    struct store_stats st;
    store_get_stats(b->store, &st);
    store_close(b->store);
    b->store = NULL;
    log_info("Persistence: store closed (%llu commits, %llu failed, %llu operations).",
             (unsigned long long)st.commits, (unsigned long long)st.failed,
             (unsigned long long)st.ops);
}
