#include "store/record.h"

#include <stdlib.h>
#include <string.h>

static int reserve(struct rbuf *b, size_t n) {
    if (b->failed)
        return -1;
    if (b->len + n <= b->cap)
        return 0;
    size_t c = b->cap ? b->cap : 128;
    while (c < b->len + n)
        c *= 2;
    uint8_t *p = realloc(b->p, c);
    if (!p) {
        b->failed = true;
        return -1;
    }
    b->p = p;
    b->cap = c;
    return 0;
}

void rbuf_bytes(struct rbuf *b, const void *p, size_t len) {
    if (!len || reserve(b, len) < 0)
        return;
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

void rbuf_u8(struct rbuf *b, uint8_t v) {
    rbuf_bytes(b, &v, 1);
}

void rbuf_u16(struct rbuf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    rbuf_bytes(b, x, 2);
}

void rbuf_u32(struct rbuf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    rbuf_bytes(b, x, 4);
}

void rbuf_u64(struct rbuf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    rbuf_bytes(b, x, 8);
}

void rbuf_blob(struct rbuf *b, const void *p, uint32_t len) {
    rbuf_u32(b, len);
    rbuf_bytes(b, p, len);
}

void rbuf_free(struct rbuf *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}

const uint8_t *rread_bytes(struct rread *r, size_t len) {
    if (r->failed || len > r->len - r->off) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += len;
    return p;
}

static uint64_t rd(struct rread *r, int n) {
    const uint8_t *p = rread_bytes(r, (size_t)n);
    uint64_t v = 0;
    if (!p)
        return 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t rread_u8(struct rread *r) {
    return (uint8_t)rd(r, 1);
}
uint16_t rread_u16(struct rread *r) {
    return (uint16_t)rd(r, 2);
}
uint32_t rread_u32(struct rread *r) {
    return (uint32_t)rd(r, 4);
}
uint64_t rread_u64(struct rread *r) {
    return rd(r, 8);
}

static const uint8_t *rread_blob(struct rread *r, uint32_t *len) {
    *len = rread_u32(r);
    return rread_bytes(r, *len);
}

/* ---- messages ---------------------------------------------------------- */

void rec_msg_encode(struct rbuf *b, const struct rec_msg *m) {
    rbuf_u8(b, REC_FORMAT);
    rbuf_u8(b, m->qos);
    rbuf_u8(b, m->retain);
    rbuf_u64(b, (uint64_t)m->expiry_at);
    rbuf_u16(b, m->topic_len);
    rbuf_bytes(b, m->topic, m->topic_len);
    rbuf_blob(b, m->payload, m->payload_len);
    rbuf_u64(b, m->props_present);
    rbuf_u8(b, m->payload_format);
    rbuf_blob(b, m->content_type, m->content_type_len);
    rbuf_blob(b, m->response_topic, m->response_topic_len);
    rbuf_blob(b, m->correlation_data, m->correlation_data_len);
    rbuf_blob(b, m->user_props, m->user_props_len);
}

int rec_msg_decode(struct rread *r, struct rec_msg *m) {
    memset(m, 0, sizeof(*m));
    if (rread_u8(r) != REC_FORMAT)
        return -1;
    m->qos = rread_u8(r);
    m->retain = rread_u8(r) != 0;
    m->expiry_at = (int64_t)rread_u64(r);
    m->topic_len = rread_u16(r);
    m->topic = rread_bytes(r, m->topic_len);
    m->payload = rread_blob(r, &m->payload_len);
    m->props_present = rread_u64(r);
    m->payload_format = rread_u8(r);
    m->content_type = rread_blob(r, &m->content_type_len);
    m->response_topic = rread_blob(r, &m->response_topic_len);
    m->correlation_data = rread_blob(r, &m->correlation_data_len);
    m->user_props = rread_blob(r, &m->user_props_len);
    if (r->failed || m->qos > 2 || m->topic_len == 0)
        return -1;
    return 0;
}

void rec_source_encode(struct rbuf *b, const struct rec_source *s) {
    rbuf_u8(b, REC_TAG_SOURCE);
    rbuf_u16(b, s->id_len);
    rbuf_bytes(b, s->id, s->id_len);
    rbuf_u8(b, s->has_user);
    if (s->has_user)
        rbuf_blob(b, s->user, s->user_len);
    rbuf_u32(b, (uint32_t)s->listener);
}

int rec_source_decode(struct rread *r, struct rec_source *s) {
    memset(s, 0, sizeof(*s));
    s->listener = -1;
    if (r->failed)
        return -1;
    if (r->off == r->len)
        return 0;
    if (rread_u8(r) != REC_TAG_SOURCE)
        return -1;
    s->id_len = rread_u16(r);
    s->id = rread_bytes(r, s->id_len);
    uint8_t hu = rread_u8(r);
    if (hu > 1)
        return -1;
    s->has_user = hu;
    if (s->has_user)
        s->user = rread_blob(r, &s->user_len);
    s->listener = (int32_t)rread_u32(r);
    if (r->failed || s->listener < -1 || r->off != r->len)
        return -1;
    return 1;
}

/* ---- sessions ---------------------------------------------------------- */

void rec_sess_encode_head(struct rbuf *b, const struct rec_sess *s, const struct rec_msg *will) {
    rbuf_u8(b, REC_FORMAT);
    rbuf_u8(b, s->version);
    rbuf_u32(b, s->expiry);
    rbuf_u64(b, (uint64_t)s->offline_at);
    rbuf_u32(b, s->will_delay);
    rbuf_u64(b, (uint64_t)s->will_at);
    rbuf_u8(b, will != NULL);
    if (will) {
        struct rbuf w = {0};
        rec_msg_encode(&w, will);
        if (w.failed)
            b->failed = true;
        rbuf_blob(b, w.p, (uint32_t)w.len);
        rbuf_free(&w);
    }
    rbuf_u8(b, s->has_user);
    if (s->has_user)
        rbuf_blob(b, s->user, s->user_len);
    rbuf_u32(b, (uint32_t)(s->listener + 1));
    rbuf_u32(b, s->nsubs);
}

void rec_sess_sub_encode(struct rbuf *b, const struct rec_sub *sub) {
    rbuf_u16(b, sub->len);
    rbuf_bytes(b, sub->filter, sub->len);
    rbuf_u8(b, sub->qos);
    rbuf_u8(b, (uint8_t)(sub->no_local | (sub->retain_as_published << 1)));
    rbuf_u8(b, sub->retain_handling);
    rbuf_u32(b, sub->sub_id);
}

int rec_sess_decode(struct rread *r, struct rec_sess *s) {
    memset(s, 0, sizeof(*s));
    if (rread_u8(r) != REC_FORMAT)
        return -1;
    s->version = rread_u8(r);
    s->expiry = rread_u32(r);
    s->offline_at = (int64_t)rread_u64(r);
    s->will_delay = rread_u32(r);
    s->will_at = (int64_t)rread_u64(r);
    s->has_will = rread_u8(r) != 0;
    if (s->has_will) {
        uint32_t wl;
        const uint8_t *wp = rread_blob(r, &wl);
        if (!wp)
            return -1;
        struct rread wr = {wp, wl, 0, false};
        if (rec_msg_decode(&wr, &s->will) < 0)
            return -1;
    }
    s->has_user = rread_u8(r) != 0;
    if (s->has_user) {
        s->user = rread_blob(r, &s->user_len);
        if (!s->user)
            return -1;
    }
    s->listener = (int32_t)rread_u32(r) - 1;
    s->nsubs = rread_u32(r);
    if (r->failed || s->version < 3 || s->version > 5)
        return -1;
    s->subs = (struct rread){r->p + r->off, r->len - r->off, 0, false};
    return 0;
}

int rec_sess_sub_next(struct rec_sess *s, struct rec_sub *sub) {
    struct rread *r = &s->subs;
    if (r->off == r->len)
        return 0;
    sub->len = rread_u16(r);
    sub->filter = rread_bytes(r, sub->len);
    sub->qos = rread_u8(r);
    uint8_t fl = rread_u8(r);
    sub->no_local = fl & 1;
    sub->retain_as_published = (fl >> 1) & 1;
    sub->retain_handling = rread_u8(r);
    sub->sub_id = rread_u32(r);
    if (r->failed || sub->len == 0 || sub->qos > 2 || sub->retain_handling > 2)
        return -1;
    return 1;
}

/* ---- queue entries ----------------------------------------------------- */

void rec_entry_encode(struct rbuf *b, const struct rec_entry *e, const uint32_t *subids,
                      const uint8_t *msg, uint32_t msglen) {
    rbuf_u8(b, REC_FORMAT);
    rbuf_u64(b, e->msg_id);
    rbuf_u8(b, e->qos);
    rbuf_u8(b, e->retain);
    rbuf_u8(b, e->state);
    rbuf_u16(b, e->pid);
    rbuf_u16(b, e->nsub);
    for (uint16_t i = 0; i < e->nsub; i++)
        rbuf_u32(b, subids[i]);
    if (e->msg_id == 0)
        rbuf_blob(b, msg, msglen);
}

int rec_entry_decode(struct rread *r, struct rec_entry *e) {
    memset(e, 0, sizeof(*e));
    if (rread_u8(r) != REC_FORMAT)
        return -1;
    e->msg_id = rread_u64(r);
    e->qos = rread_u8(r);
    e->retain = rread_u8(r) != 0;
    e->state = rread_u8(r);
    e->pid = rread_u16(r);
    e->nsub = rread_u16(r);
    const uint8_t *ids = rread_bytes(r, (size_t)e->nsub * 4);
    if (e->msg_id == 0) {
        uint32_t ml;
        const uint8_t *m = rread_blob(r, &ml);
        e->msg = (struct rread){m, ml, 0, false};
    }
    if (r->failed || e->qos > 2 || e->state > REC_WAIT_PUBCOMP || r->off != r->len)
        return -1;
    e->subids = (struct rread){ids, (size_t)e->nsub * 4, 0, false};
    return 0;
}

/* ---- keys -------------------------------------------------------------- */

size_t rec_key_u64(uint8_t out[8], uint64_t id) {
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(id >> (56 - 8 * i));
    return 8;
}

uint64_t rec_key_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

size_t rec_key_session(uint8_t *out, const char *id, size_t id_len) {
    out[0] = (uint8_t)(id_len >> 8);
    out[1] = (uint8_t)id_len;
    memcpy(out + 2, id, id_len);
    return 2 + id_len;
}

size_t rec_key_entry(uint8_t *out, const char *id, size_t id_len, uint64_t seq) {
    size_t n = rec_key_session(out, id, id_len);
    return n + rec_key_u64(out + n, seq);
}

size_t rec_key_inpid(uint8_t *out, const char *id, size_t id_len, uint16_t pid) {
    size_t n = rec_key_session(out, id, id_len);
    out[n] = (uint8_t)(pid >> 8);
    out[n + 1] = (uint8_t)pid;
    return n + 2;
}

int rec_key_split(const uint8_t *key, size_t len, const uint8_t **id, size_t *id_len,
                  const uint8_t **rest, size_t *rest_len) {
    if (len < 2)
        return -1;
    size_t n = ((size_t)key[0] << 8) | key[1];
    if (len < 2 + n)
        return -1;
    *id = key + 2;
    *id_len = n;
    *rest = key + 2 + n;
    *rest_len = len - 2 - n;
    return 0;
}
