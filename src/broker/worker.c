/*
 * Workers: the per-thread event loop, connections' input and output, and
 * the cross-thread inbox.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/authpool.h"
#include "broker/alias.h"
#include "broker/bp_inline.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/limits.h"
#include "broker/metrics.h"
#include "broker/admin.h"
#include "broker/adminq.h"
#include "broker/persist.h"
#include "broker/reload.h"
#include "broker/security.h"
#include "broker/plugin.h"
#include "broker/tls.h"
#include "transport/proxy.h"
#include "transport/tls.h"
#include "transport/ws.h"

#define READ_CHUNK (64 * 1024)
/* Payloads at least this long are written by reference (writev), shorter
 * ones are copied: a copy is cheaper than an iovec for small messages. */
#define PAYLOAD_BY_REF 1024
/* Largest output buffer kept for reuse after it drained (conn_out_done). */
#define OUT_KEEP_MAX (16u * 1024 * 1024)
/* Largest packet accepted before CONNECT is handled. */
#define PRECONNECT_MAX (256 * 1024)

/* ---- output ---------------------------------------------------------- */

static int seg_push(struct conn *c, struct msg *m, uint32_t off, uint32_t len) {
    /* Extend the last byte segment when possible. */
    if (!m && c->nsegs) {
        struct oseg *last = &c->segs[c->seghead + c->nsegs - 1];
        if (!last->m && last->off + last->len == off) {
            last->len += len;
            return 0;
        }
    }
    if (c->seghead + c->nsegs == c->capsegs) {
        if (c->seghead) {
            memmove(c->segs, c->segs + c->seghead, c->nsegs * sizeof(*c->segs));
            c->seghead = 0;
        } else {
            uint32_t n = c->capsegs ? c->capsegs * 2 : 2;
            struct oseg *s = realloc(c->segs, n * sizeof(*s));
            if (!s)
                return -1;
            c->segs = s;
            c->capsegs = n;
        }
    }
    c->segs[c->seghead + c->nsegs++] = (struct oseg){m, off, len};
    return 0;
}

void conn_mark_dirty(struct conn *c) {
    if (!c->dirty && c->state != CS_CLOSING) {
        c->dirty = true;
        c->dirty_next = c->w->dirty;
        c->w->dirty = c;
    }
}

/*
 * Move the unsent bytes of wbuf to its start when at least half of what it
 * holds was already sent: a subscriber with a standing backlog (fan-in,
 * output partly flushed every turn) then reuses the same pages instead of
 * growing the buffer into fresh ones (a page fault and a page clear per
 * 4 KiB written). Each byte is moved at most as often as an older byte
 * was sent, so the cost per byte written is bounded.
 */
static void wbuf_compact(struct conn *c) {
    size_t first = c->wlen;
    for (uint32_t i = 0; i < c->nsegs; i++) {
        const struct oseg *s = &c->segs[c->seghead + i];
        if (!s->m) {
            /* The head segment may be partly sent (segoff). */
            first = s->off + (i == 0 ? c->segoff : 0);
            break;
        }
    }
    if (!first || first < c->wlen - first)
        return;
    memmove(c->wbuf, c->wbuf + first, c->wlen - first);
    if (c->nsegs && !c->segs[c->seghead].m) {
        struct oseg *h = &c->segs[c->seghead];
        h->len -= c->segoff;
        h->off += c->segoff;
        c->segoff = 0;
    }
    for (uint32_t i = 0; i < c->nsegs; i++) {
        struct oseg *s = &c->segs[c->seghead + i];
        if (!s->m)
            s->off -= (uint32_t)first;
    }
    c->wlen -= first;
}

static int wbuf_reserve(struct conn *c, size_t len) {
    if (c->wlen + len <= c->wcap)
        return 0;
    wbuf_compact(c);
    if (c->wlen + len <= c->wcap)
        return 0;
    size_t n = c->wcap ? c->wcap : 64;
    while (n < c->wlen + len)
        n *= 2;
    uint8_t *p = realloc(c->wbuf, n);
    if (!p)
        return -1;
    c->wbuf = p;
    c->wcap = n;
    return 0;
}

int conn_write(struct conn *c, const void *p, size_t len) {
    if (c->state == CS_CLOSING || !len)
        return 0;
    if (wbuf_reserve(c, len) < 0)
        return -1;
    memcpy(c->wbuf + c->wlen, p, len);
    if (seg_push(c, NULL, (uint32_t)c->wlen, (uint32_t)len) < 0)
        return -1;
    c->wlen += len;
    c->out_bytes += len;
    conn_mark_dirty(c);
    return 0;
}

int conn_write_payload(struct conn *c, struct msg *m) {
    if (c->state == CS_CLOSING || !m->payload_len)
        return 0;
    if (m->payload_len < PAYLOAD_BY_REF)
        return conn_write(c, m->payload, m->payload_len);
    if (seg_push(c, m, 0, m->payload_len) < 0)
        return -1;
    msg_ref(m);
    c->out_bytes += m->payload_len;
    conn_mark_dirty(c);
    return 0;
}

/* log_type debug: every packet sent (PUBLISH: session.c), in Mosquitto's words. */
static void conn_log_sending(const struct conn *c, const struct mqtt_packet *p) {
    const char *id = c->s ? c->s->client_id : NULL, *who = id ? id : c->si.peer;
    if (p->type == MQTT_CONNACK)
        log_client(LOG_DEBUG, id, NULL, c->si.peer, "Sending CONNACK to %s (%d, %u)", who,
                   p->connack.session_present, p->reason);
    else if (p->type >= MQTT_PUBACK && p->type <= MQTT_PUBCOMP)
        log_client(LOG_DEBUG, id, NULL, c->si.peer, "Sending %s to %s (m%u, rc%u)",
                   mqtt_type_name(p->type), who, p->packet_id, p->reason);
    else
        log_client(LOG_DEBUG, id, NULL, c->si.peer, "Sending %s to %s", mqtt_type_name(p->type),
                   who);
}

int conn_send(struct conn *c, const struct mqtt_packet *p) {
    if (log_enabled(LOG_DEBUG))
        conn_log_sending(c, p);
    uint8_t stack[256];
    size_t n = mqtt_encode(stack, sizeof(stack), c->version, p);
    if (!n)
        return -1;
    if (c->state != CS_CLOSING)
        stat_inc(&c->w->sc.pkts_out);
    if (n <= sizeof(stack))
        return conn_write(c, stack, n);
    if (c->state == CS_CLOSING)
        return 0;
    if (wbuf_reserve(c, n) < 0)
        return -1;
    mqtt_encode(c->wbuf + c->wlen, n, c->version, p);
    if (seg_push(c, NULL, (uint32_t)c->wlen, (uint32_t)n) < 0)
        return -1;
    c->wlen += n;
    c->out_bytes += n;
    conn_mark_dirty(c);
    return 0;
}

static void out_reset(struct conn *c) {
    for (uint32_t i = 0; i < c->nsegs; i++)
        if (c->segs[c->seghead + i].m)
            msg_unref(c->segs[c->seghead + i].m);
    c->nsegs = c->seghead = c->segoff = 0;
    c->wlen = 0;
    c->out_bytes = 0;
}

void conn_out_consumed(struct conn *c, size_t n) {
    c->out_bytes -= n;
    size_t left = n;
    while (left && c->nsegs) {
        struct oseg *s = &c->segs[c->seghead];
        size_t rem = s->len - c->segoff;
        if (left < rem) {
            c->segoff += (uint32_t)left;
            break;
        }
        left -= rem;
        if (s->m)
            msg_unref(s->m);
        c->seghead++;
        c->nsegs--;
        c->segoff = 0;
    }
}

/* Free the output buffers of a connection with nothing left to send. */
static void out_release(struct conn *c) {
    free(c->wbuf);
    free(c->segs);
    c->wbuf = NULL;
    c->segs = NULL;
    c->wcap = 0;
    c->capsegs = 0;
    c->seghead = 0;
}

void conn_out_done(struct conn *c) {
    c->seghead = 0;
    c->wlen = 0;
    /* Small buffers are freed at once: one malloc per turn when reused
     * costs less than holding them on thousands of quiet connections.
     * Larger ones stay until the tick finds them unused (at most 250 ms):
     * freed on every drain, a busy subscriber's buffer (fan-in writes
     * megabytes per turn) came back as fresh pages each turn, a page fault
     * and a page clear per 4 KiB written. Past OUT_KEEP_MAX a buffer is a
     * backlog's, not a turn's, and goes at once. */
    if (c->wcap > OUT_KEEP_MAX || c->wcap <= 1024)
        out_release(c);
}

/* A connection whose stack is only the socket: the fast path, where a
 * flush is writev(2) and nothing else. */
static inline bool conn_plain(const struct conn *c) {
    return c->st == &c->tcp;
}

/*
 * Over max_output_buffer: the client does not read what it is sent. Its
 * input is not read either until the output drains (TCP pushes back), so a
 * client that pipelines requests (PINGREQ, QoS 1 PUBLISH, SUBSCRIBE) without
 * reading the answers cannot make them pile up in the broker's memory.
 */
static bool conn_backlogged(const struct conn *c) {
    return c->out_bytes > output_limit(c->w->b->cfg);
}

/* The epoll interest from the output and what the stream's layers wait for.
 * A layer holding bytes that read would return (decrypted TLS, decoded
 * WebSocket payload) is served on the next turn: write readiness is asked
 * for, which the socket has at once. */
void conn_update_events(struct conn *c) {
    /* Held by back-pressure (bp.c): input waits like an over-full output. */
    bool backlogged = conn_backlogged(c) || c->bp.paused;
    /* A parked CONNECT (authpool.h) reads nothing until its verdict. */
    uint32_t ev = backlogged || c->auth_id ? 0 : EV_READ;
    if (conn_plain(c)) {
        if (c->nsegs)
            ev |= EV_WRITE;
    } else {
        unsigned wants = stream_wants(c->st);
        /* A layer that must read before it can write (TLS) is not helped by
         * write readiness. */
        if (c->nsegs && !(wants & STREAM_WANT_READ))
            ev |= EV_WRITE;
        ev |= wants;
        if (!backlogged && !c->auth_id && stream_pending(c->st))
            ev |= EV_WRITE;
    }
    ev_io_set(c->w->loop, &c->io, ev);
}

/* Offer the output segments to the stream until it takes no more, then
 * let its layers write what they keep. Returns -1 if the connection failed
 * (c->si.why may say why). */
static int conn_flush(struct conn *c) {
    size_t wrote = 0;
    while (c->nsegs) {
        struct iovec iov[64];
        int n = 0;
        for (uint32_t i = 0; i < c->nsegs && n < 64; i++) {
            struct oseg *s = &c->segs[c->seghead + i];
            const uint8_t *base = s->m ? s->m->payload + s->off : c->wbuf + s->off;
            uint32_t skip = i == 0 ? c->segoff : 0;
            iov[n].iov_base = (void *)(base + skip);
            iov[n].iov_len = s->len - skip;
            n++;
        }
        ssize_t w = stream_writev(c->st, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        if (w == 0)
            break;
        stat_add(&c->w->sc.bytes_out, (unsigned long)w);
        c->bytes_out += (size_t)w;
        conn_out_consumed(c, (size_t)w);
        wrote += (size_t)w;
    }
    int kept = conn_plain(c) ? 0 : stream_flush(c->st);
    if (kept < 0)
        return -1;
    if (!c->nsegs)
        conn_out_done(c);
    if (c->close_when_sent && !c->nsegs && kept == 0) {
        conn_close(c, NULL);
        return 0;
    }
    bp_flushed(c, wrote);
    conn_update_events(c);
    return 0;
}

/* ---- connection life ------------------------------------------------- */

static void conn_free(struct conn *c) {
    if (c->st)
        stream_free(c->st);
    stream_info_clear(&c->si);
    out_reset(c);
    free(c->wbuf);
    free(c->segs);
    free(c->in);
    free(c->username);
    free(c->assigned_id);
    if (c->aliases) {
        for (uint16_t i = 0; i < c->nalias; i++)
            free(c->aliases[i]);
        free(c->aliases);
    }
    alias_out_free(c->alias_out);
    free(c);
}

static void list_remove(struct conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else if (c->w->conns == c)
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void list_add(struct worker *w, struct conn *c) {
    c->w = w;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
}

void conn_close(struct conn *c, const char *why) {
    if (c->state == CS_CLOSING)
        return;
    struct worker *w = c->w;
    bp_conn_closed(c);  /* held publishers it held go on; held itself: leaves the list */
    authpool_unpark(c); /* a password check in flight: its verdict is dropped */
    if (c->s) {
        plugin_disconnect(c, why);
        const char *id = c->s->client_id;
        char u[128];
        const char *user = c->username ? security_printable(c->username, u, sizeof(u)) : NULL;
        if (why)
            log_client(LOG_NOTICE | LOG_CONN, id, user, c->si.peer,
                       "Client %s [%s] (user '%s') disconnected: %s.", id, c->si.peer,
                       user ? user : "<anonymous>", why);
        struct session *s = c->s;
        c->s = NULL;
        s->conn = NULL;
        atomic_store_explicit(&s->online, false, memory_order_relaxed);
        atomic_fetch_sub(&w->nclients, 1);
        session_detach(s, c->will_pending);
    } else if (why) {
        log_client(LOG_NOTICE | LOG_CONN, NULL, NULL, c->si.peer, "Connection from %s closed: %s.",
                   c->si.peer, why);
    }
    /* Last words (a DISCONNECT) go out before the close, then the layers'
     * own (TLS close_notify, WebSocket close frame), never waiting. */
    c->close_when_sent = false; /* closing now: that flush must not close again */
    if (c->nsegs)
        conn_flush(c);
    c->state = CS_CLOSING;
    ev_io_stop(w->loop, &c->io);
    if (!conn_plain(c)) {
        stream_shutdown(c->st);
        stream_flush(c->st);
    }
    stream_free(c->st);
    c->st = NULL;
    if (c->counted) {
        atomic_fetch_sub(c->ls->nconns, 1);
        limits_conn_gone(w->b);
    }
    list_remove(c);
    c->next = w->closed;
    w->closed = c;
}

/* ---- input ----------------------------------------------------------- */

/*
 * Handle the complete packets in data[0..len); keep a partial one. `data`
 * may be the worker's read buffer or the connection's own.
 */
void conn_handle_input(struct conn *c, const uint8_t *data, size_t len) {
    struct broker *b = c->w->b;
    size_t off = 0;
    if (__builtin_expect(c->state == CS_NEW, 0) && (c->ls->metrics || c->ls->admin)) {
        if (c->ls->admin)
            admin_input(c, data, len); /* HTTP, not MQTT */
        else
            metrics_input(c, data, len);
        return;
    }
    /* A refused login waiting for its delay, or a CONNACK waiting for the
     * store, reads nothing more. */
    while (off < len && c->state != CS_CLOSING && !c->refuse_at && !c->connack_held &&
           !c->auth_id && !c->bp.paused) {
        struct mqtt_frame f;
        uint8_t reason = 0;
        uint32_t limit = (uint32_t)b->cfg->max_packet_size; /* 0 = protocol maximum */
        uint32_t max = limit;
        if (c->state == CS_NEW && (!limit || limit > PRECONNECT_MAX))
            max = PRECONNECT_MAX;
        int r = mqtt_frame_parse(data + off, len - off, max, &f, &reason);
        if (r == MQTT_AGAIN)
            break;
        if (r == MQTT_ERR) {
            proto_fail(c, reason,
                       reason == MQTT_RC_PACKET_TOO_LARGE ? "packet too large"
                                                          : "malformed packet");
            return;
        }
        if (len - off < f.total)
            break;
        struct mqtt_packet p;
        const uint8_t *raw = data + off;
        r = mqtt_decode_frame(raw, &f, c->version, true, &p, &reason);
        if (r != MQTT_OK) {
            if (c->state == CS_NEW && reason == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION) {
                /* Answer in the form the client can read (MQTT-3.1.2-2). */
                struct mqtt_packet ack = {.type = MQTT_CONNACK};
                uint8_t v = p.connect.version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
                c->version = v;
                ack.reason =
                    v == MQTT_V5 ? MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION : MQTT_CONNACK_BAD_PROTOCOL;
                conn_send(c, &ack);
                conn_close(c, "unsupported protocol version");
                return;
            }
            if (c->state == CS_NEW && reason == MQTT_RC_CLIENT_ID_NOT_VALID &&
                p.connect.version >= MQTT_V31 && p.connect.version <= MQTT_V5) {
                /* MQTT-3.1.3-8: identifier rejected, with a CONNACK. */
                struct mqtt_packet ack = {.type = MQTT_CONNACK};
                c->version = p.connect.version;
                ack.reason =
                    c->version == MQTT_V5 ? MQTT_RC_CLIENT_ID_NOT_VALID : MQTT_CONNACK_ID_REJECTED;
                conn_send(c, &ack);
                conn_close(c, "client id not valid");
                return;
            }
            char why[96];
            snprintf(why, sizeof(why), "protocol error in %s: %s", mqtt_type_name(f.type),
                     mqtt_reason_text(reason));
            proto_fail(c, reason, why);
            return;
        }
        off += f.total;
        stat_inc(&c->w->sc.pkts_in);
        c->last_rx = ev_now(c->w->loop);
        struct worker *before = c->w;
        proto_packet(c, &p, raw, f.total);
        if (c->w != before || c->state == CS_NEW) {
            /* Handed to another worker (CONNECT), or waiting: the rest of
             * the bytes go with the connection. */
            if (c->state == CS_CLOSING)
                return;
            if (c->w != before || c->auth_id) {
                /* proto_packet left the CONNECT unconsumed for the owner,
                 * or for its second run once the password is checked. */
                off -= f.total;
                size_t rest = len - off;
                if (data != c->in) {
                    uint8_t *p2 = malloc(rest);
                    if (!p2) {
                        conn_close(c, "out of memory");
                        return;
                    }
                    memcpy(p2, data + off, rest);
                    free(c->in);
                    c->in = p2;
                    c->inlen = c->incap = rest;
                } else {
                    memmove(c->in, c->in + off, rest);
                    c->inlen = rest;
                }
                if (c->auth_id)
                    conn_update_events(c); /* parked: stop reading */
                return;
            }
        }
    }
    if (c->state == CS_CLOSING)
        return;
    /* Keep the partial packet. */
    size_t rest = len - off;
    if (data == c->in) {
        if (rest && off)
            memmove(c->in, c->in + off, rest);
        c->inlen = rest;
        if (!rest) {
            free(c->in);
            c->in = NULL;
            c->incap = 0;
        }
    } else if (rest) {
        size_t cap = rest < 1024 ? 1024 : rest;
        c->in = malloc(cap);
        if (!c->in) {
            conn_close(c, "out of memory");
            return;
        }
        memcpy(c->in, data + off, rest);
        c->inlen = rest;
        c->incap = cap;
    }
}

/* Why a stack that failed did (the layer's reason, else the socket's). */
static const char *stream_why(const struct conn *c, const char *dflt) {
    return c->si.why ? c->si.why : dflt;
}

/* A layer under MQTT failed or ended during its handshake: say which one,
 * in the words the log has always used for TLS. */
static void conn_stack_failed(struct conn *c, bool eof) {
    struct stream *tls = stream_find(c->st, &tls_stream_ops);
    if (tls && !c->si.tls_done) {
        /* A warning: a refused certificate is a failed login. */
        log_client(LOG_WARNING, NULL, NULL, c->si.peer,
                   "TLS handshake failed with client %s on port %d: %s", c->si.peer, c->lcfg->port,
                   stream_why(c, "connection closed by the client during the handshake"));
        conn_close(c, NULL);
        return;
    }
    if (eof) {
        conn_close(c, c->s ? "connection closed by client" : "closed before CONNECT");
        return;
    }
    conn_close(c, stream_why(c, "socket error"));
}

/* A PROXY header or a trusted X-Forwarded-For gave the client's address. */
static void conn_log_via(struct conn *c) {
    c->via_logged = true;
    log_client(LOG_NOTICE | LOG_CONN, NULL, NULL, c->si.peer,
               "Connection from %s is client %s (address from the %s).", c->si.via, c->si.peer,
               stream_find(c->st, &proxy_stream_ops) ? "PROXY header" : "X-Forwarded-For header");
}

static void conn_read_some(struct conn *c) {
    struct worker *w = c->w;
    bool plain = conn_plain(c);
    /* Layers return a record or frame per read, so more rounds for the same bytes. */
    int max_rounds = plain ? 4 : 16;
    for (int rounds = 0; rounds < max_rounds && c->state != CS_CLOSING && c->w == w &&
                         !c->refuse_at && !c->auth_id && !c->bp.paused && !conn_backlogged(c);
         rounds++) {
        uint8_t *dst;
        size_t room;
        if (c->inlen) {
            /* Grow the partial-packet buffer toward what the packet needs. */
            if (c->incap - c->inlen < READ_CHUNK / 4) {
                size_t n = c->incap * 2;
                if (n < c->inlen + READ_CHUNK)
                    n = c->inlen + READ_CHUNK;
                uint8_t *p = realloc(c->in, n);
                if (!p) {
                    conn_close(c, "out of memory");
                    return;
                }
                c->in = p;
                c->incap = n;
            }
            dst = c->in + c->inlen;
            room = c->incap - c->inlen;
        } else {
            dst = w->rbuf;
            room = w->rcap;
        }
        ssize_t r = stream_read(c->st, dst, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_stack_failed(c, false);
            return;
        }
        if (r == 0) {
            conn_stack_failed(c, true);
            return;
        }
        stat_add(&w->sc.bytes_in, (unsigned long)r);
        c->bytes_in += (size_t)r;
        if (c->si.via && !c->via_logged)
            conn_log_via(c);
        if (c->si.upgraded && !c->ws_logged) {
            c->ws_logged = true;
            if (log_enabled(LOG_WEBSOCKETS))
                log_msg(LOG_WEBSOCKETS, "WebSocket connection from %s on port %d upgraded.",
                        c->si.peer, c->lcfg->port);
        }
        if (c->inlen) {
            c->inlen += (size_t)r;
            conn_handle_input(c, c->in, c->inlen);
        } else {
            conn_handle_input(c, w->rbuf, (size_t)r);
        }
        if ((size_t)r < room && plain)
            return;
    }
}

void conn_readable(struct conn *c) {
    struct worker *w = c->w;
    conn_read_some(c);
    /* Layers: a handshake may wait to write, or bytes may be left decoded
     * when the rounds ran out. */
    if (!conn_plain(c) && c->state != CS_CLOSING && c->w == w) {
        if (stream_flush(c->st) < 0) {
            conn_stack_failed(c, false);
            return;
        }
        conn_update_events(c);
    }
}

static void conn_event(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    (void)loop;
    struct conn *c = io->data;
    if (c->state == CS_CLOSING)
        return;
    bool plain = conn_plain(c);
    /* A layer may need a read to finish a write (TLS), so a layered
     * connection flushes on any event. */
    if ((events & EV_WRITE) || !plain) {
        if (conn_flush(c) < 0) {
            conn_stack_failed(c, false);
            return;
        }
        if (c->s && !c->nsegs)
            session_pump(c->s);
        if (c->state == CS_CLOSING)
            return;
    }
    if ((events & EV_READ) || (!plain && stream_pending(c->st))) {
        if (conn_backlogged(c) || c->bp.paused) {
            /* Read again when the output has drained (conn_flush), or the
             * subscriber holding it back has (bp.c). */
            conn_update_events(c);
            return;
        }
        conn_readable(c);
    }
}

/* ---- accept ---------------------------------------------------------- */

/*
 * The layers over the socket a listener asks for, in wire order: PROXY
 * header, TLS, WebSocket. NULL, or why the stack could not be made (out of
 * memory).
 */
static const char *conn_build_stack(struct conn *c) {
    const struct hato_listener *l = c->lcfg;
    struct stream *st;
    if (l->enable_proxy_protocol) {
        st = proxy_stream_new(c->st, l->enable_proxy_protocol, l->proxy_protocol_v2_require_tls);
        if (!st)
            return "out of memory";
        c->st = st;
    }
    struct tls_ctx *ctx = broker_tls_ctx(c->w->b, l);
    if (ctx) {
        st = tls_stream_new(c->st, ctx, NULL, false);
        tls_ctx_unref(ctx);
        if (!st)
            return "TLS set-up failed";
        c->st = st;
    }
    struct ws_server_opts *ws = c->ls->ws; /* one load: a reload may replace it */
    if (ws) {
        st = ws_stream_new_server(c->st, ws);
        if (!st)
            return "out of memory";
        c->st = st;
    }
    return NULL;
}

static void on_accept(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    (void)events;
    struct lsock *ls = io->data;
    struct worker *w = &ls->b->workers[io - ls->ios];
    if (io->fd < 0)
        return; /* dropped by a reload earlier in this turn (worker_listen_sync) */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Level-triggered: waiting would spin. Pause until the next
                 * tick, when descriptors may have been freed. */
                log_warn("Cannot accept: %s; pausing new connections.", strerror(errno));
                for (size_t k = 0; k < w->nwls; k++)
                    ev_io_stop(loop, &w->wls[k]->ios[w->id]);
                w->accept_paused = true;
            }
            return;
        }
        const struct hato_listener *lcfg = ls->cfg; /* one load: a reload may replace it */
        stat_inc(&w->sc.sockets);
        atomic_fetch_add_explicit(ls->accepted, 1, memory_order_relaxed);
        char peer[STREAM_PEER_MAX] = "?";
        if (ss.ss_family == AF_UNIX)
            snprintf(peer, sizeof(peer), "%s", lcfg->unix_path ? lcfg->unix_path : "unix");
        else
            stream_format_addr((struct sockaddr *)&ss, sl, peer, sizeof(peer));
        int n = atomic_fetch_add(ls->nconns, 1) + 1;
        if (lcfg->max_connections >= 0 && n > lcfg->max_connections) {
            atomic_fetch_sub(ls->nconns, 1);
            log_client(LOG_NOTICE, NULL, NULL, peer,
                       "Refused connection from %s: max_connections (%d) reached.", peer,
                       lcfg->max_connections);
            close(fd);
            continue;
        }
        if (!limits_conn_admit(w->b)) {
            atomic_fetch_sub(ls->nconns, 1);
            log_client(LOG_NOTICE, NULL, NULL, peer,
                       "Refused connection from %s: global_max_connections (%d) reached.", peer,
                       w->b->cfg->global_max_connections);
            close(fd);
            continue;
        }
        if (ss.ss_family != AF_UNIX && w->b->cfg->set_tcp_nodelay) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            atomic_fetch_sub(ls->nconns, 1);
            limits_conn_gone(w->b);
            close(fd);
            continue;
        }
        tcp_stream_init(&c->tcp, fd, &c->si);
        c->st = &c->tcp;
        c->io.fd = -1; /* not watched yet: a close before ev_io_start unwatches nothing */
        c->ls = ls;
        c->lcfg = lcfg;
        c->counted = true;
        c->state = CS_NEW;
        c->last_rx = ev_now(loop);
        snprintf(c->si.peer, sizeof(c->si.peer), "%s", peer);
        list_add(w, c);
        const char *why = conn_build_stack(c);
        if (why) {
            conn_close(c, why);
            continue;
        }
        if (ev_io_start(loop, &c->io, fd, EV_READ, conn_event, c) < 0) {
            conn_close(c, "epoll failed");
            continue;
        }
        if (ls->metrics || ls->admin)
            log_debug("New %s connection from %s on port %d.", ls->admin ? "admin" : "metrics",
                      peer, lcfg->port);
        else
            log_client(LOG_NOTICE | LOG_CONN, NULL, NULL, peer,
                       "New connection from %s on port %d.", peer, lcfg->port);
    }
}

/* ---- cross-thread ---------------------------------------------------- */

void worker_post(struct worker *from, struct worker *to, struct item *it) {
    it->next = NULL;
    if (from) {
        /* Collected, handed over at the end of the turn in one batch. */
        if (from->out_tail[to->id])
            from->out_tail[to->id]->next = it;
        else
            from->out_head[to->id] = it;
        from->out_tail[to->id] = it;
        from->out_pending = true;
        return;
    }
    pthread_mutex_lock(&to->inbox_lock);
    if (to->inbox_tail)
        to->inbox_tail->next = it;
    else
        to->inbox_head = it;
    to->inbox_tail = it;
    pthread_mutex_unlock(&to->inbox_lock);
    ev_wake(to->loop);
}

void route_flush(struct worker *w) {
    if (!w->out_pending)
        return;
    w->out_pending = false;
    for (int i = 0; i < w->b->nworkers; i++) {
        struct item *h = w->out_head[i];
        if (!h)
            continue;
        struct worker *to = &w->b->workers[i];
        pthread_mutex_lock(&to->inbox_lock);
        if (to->inbox_tail)
            to->inbox_tail->next = h;
        else
            to->inbox_head = h;
        to->inbox_tail = w->out_tail[i];
        pthread_mutex_unlock(&to->inbox_lock);
        w->out_head[i] = w->out_tail[i] = NULL;
        ev_wake(to->loop);
    }
}

static void adopt(struct worker *w, struct conn *c) {
    list_add(w, c);
    if (ev_io_start(w->loop, &c->io, c->tcp.fd, EV_READ, conn_event, c) < 0) {
        conn_close(c, "epoll failed");
        return;
    }
    /* The CONNECT (and anything after it) waits in c->in. */
    if (c->inlen)
        conn_handle_input(c, c->in, c->inlen);
    /* Layers: more may wait decoded in them. */
    if (!conn_plain(c) && c->state != CS_CLOSING && c->w == w)
        conn_update_events(c);
}

/* The password check of a parked CONNECT is done: run it again with the
 * verdict, then what the client sent after it, then read again. */
static void auth_resume(struct worker *w, struct conn *c) {
    if (c->inlen)
        conn_handle_input(c, c->in, c->inlen);
    if (c->state != CS_CLOSING && c->w == w)
        conn_update_events(c);
}

static void on_inbox(struct ev_loop *loop, void *data) {
    (void)loop;
    struct worker *w = data;
    pthread_mutex_lock(&w->inbox_lock);
    struct item *it = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    security_worker_update(w); /* a reload wakes every worker */
    worker_listen_sync(w);
    plugin_worker_wake(w); /* kicks asked by a plugin */
    bp_worker_wake(w);     /* held publishers whose subscribers drained */
    while (it) {
        struct item *next = it->next;
        if (it->kind == IT_DELIVER) {
            session_deliver(it->s, &it->d);
            session_unref(it->s);
        } else if (it->kind == IT_ACK) {
            persist_ack_arrived(w, it); /* frees it */
            it = next;
            continue;
        } else if (it->kind == IT_AUTH) {
            struct conn *c = authpool_verdict(w, it); /* frees it */
            if (c)
                auth_resume(w, c);
            it = next;
            continue;
        } else if (it->kind == IT_PUBLISH) {
            route_internal(w, it->d.m);
        } else if (it->kind == IT_DELIVERS) {
            route_batch_run(w, it); /* frees it */
            it = next;
            continue;
        } else if (it->kind == IT_CLUSTER) {
            cluster_item_run(w, it); /* frees it */
            it = next;
            continue;
        } else if (it->kind == IT_ADMIN) {
            adminq_item_run(w, it); /* frees it (or passes it on) */
            it = next;
            continue;
        } else {
            adopt(w, it->c);
        }
        free(it);
        it = next;
    }
    logtopic_drain(w); /* log_dest topic: worker 0 is woken for it */
    if (atomic_load(&w->b->stopping))
        ev_stop(w->loop);
}

/* ---- periodic and end of turn ---------------------------------------- */

/* What a connection that sent no CONNECT in time was still waiting for. */
static const char *conn_pending_handshake(const struct conn *c) {
    if (c->ls->metrics || c->ls->admin)
        return "no HTTP request in time";
    if (!conn_plain(c)) {
        struct stream *p = stream_find(c->st, &proxy_stream_ops);
        if (p && !proxy_stream_done(p))
            return "PROXY header not received in time";
        if (stream_find(c->st, &tls_stream_ops) && !c->si.tls_done)
            return "TLS handshake not finished in time";
        if (stream_find(c->st, &ws_stream_ops) && !c->si.upgraded)
            return "WebSocket handshake not finished in time";
    }
    return "no CONNECT in time";
}

static void on_tick(struct ev_loop *loop, void *data) {
    struct worker *w = data;
    int64_t now = ev_now(loop);
    atomic_store_explicit(&w->last_tick_ms, now, memory_order_relaxed); /* watchdog */
    if (w->accept_paused) {
        w->accept_paused = false;
        for (size_t k = 0; k < w->nwls; k++)
            worker_listen(w, w->wls[k]);
    }
    worker_listen_sync(w);
    int timeout = w->b->cfg->connect_timeout;
    security_worker_update(w);
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        bp_conn_tick(c, now); /* stall timeout; a held publisher is not timed out */
        /* Idle connections hold no output buffers: the memory per held
         * connection is what bench/compare's idle scenario measures. */
        if (!c->nsegs && !c->wlen && !c->dirty) {
            out_release(c);
            /* And what the layers hold between frames (wslay's context). */
            struct stream *ws = conn_plain(c) ? NULL : stream_find(c->st, &ws_stream_ops);
            if (ws)
                ws_stream_trim(ws);
        }
        if (c->state == CS_NEW && c->refuse_at) {
            if (c->ls->admin)
                admin_tick(c, now); /* a refused admin login's delay, a reload's outcome */
            else if (now >= c->refuse_at)
                proto_refuse_due(c); /* failed login: its delay is over */
        } else if (c->state == CS_NEW && !c->auth_id) {
            /* A parked CONNECT did arrive: it waits for the pool, bounded by its queue. */
            if (timeout > 0 && now - c->last_rx >= (int64_t)timeout * 1000)
                conn_close(c, conn_pending_handshake(c));
        } else if (c->state == CS_CONNECTED && c->keep_alive) {
            /* MQTT-3.1.2-24: one and a half keep-alive periods. */
            if (now - c->last_rx >= (int64_t)c->keep_alive * 1500)
                proto_fail(c, MQTT_RC_KEEP_ALIVE_TIMEOUT, "keep alive timeout");
        }
    }
    bp_worker_tick(w);
    session_timers(w, now);
    tls_tick(w);
    /* One worker purges expired retained messages (the others only skip them),
     * and keeps the load averages and $SYS. */
    if (w->id == 0) {
        retain_expire(w->b->retain, msg_now_ms());
        sys_tick(w, now);
        plugin_tick(w);
    }
    logtopic_drain(w);
}

static void on_after(struct ev_loop *loop, void *data) {
    (void)loop;
    struct worker *w = data;
    while (w->dirty) {
        struct conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        if (c->state != CS_CLOSING && conn_flush(c) < 0)
            conn_close(c, "socket error");
    }
    /* Store first: what this turn stored is queued for commit before other workers can
     * act on the deliveries handed to them below. */
    persist_flush(w);
    route_flush(w);
    while (w->closed) {
        struct conn *c = w->closed;
        w->closed = c->next;
        conn_free(c);
    }
}

/* Close every connection (shutdown): MQTT 5 clients are told why. */
static void worker_close_all(struct worker *w) {
    while (w->conns) {
        struct conn *c = w->conns;
        if (c->state == CS_CONNECTED && c->version == MQTT_V5) {
            struct mqtt_packet d = {.type = MQTT_DISCONNECT,
                                    .reason = MQTT_RC_SERVER_SHUTTING_DOWN};
            conn_send(c, &d);
        }
        /* The will is not published at shutdown: every client goes. */
        c->will_pending = false;
        conn_close(c, NULL);
    }
    on_after(w->loop, w);
}

static _Thread_local struct worker *current_worker;

struct worker *broker_current_worker(void) {
    return current_worker;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    current_worker = w;
    msg_tally_thread(&w->sc.live_msgs, &w->sc.live_bytes);
    ev_run(w->loop);
    worker_close_all(w);
    return NULL;
}

int worker_init(struct worker *w, struct broker *b, int id) {
    memset(w, 0, sizeof(*w));
    w->b = b;
    w->id = id;
    pthread_mutex_init(&w->inbox_lock, NULL);
    strmap_init(&w->sessions);
    w->loop = ev_loop_new();
    w->rcap = READ_CHUNK;
    w->rbuf = malloc(w->rcap);
    w->out_head = calloc((size_t)b->nworkers, sizeof(*w->out_head));
    w->out_tail = calloc((size_t)b->nworkers, sizeof(*w->out_tail));
    if (!w->loop || !w->rbuf || !w->out_head || !w->out_tail)
        return -1;
    ev_set_wake(w->loop, on_inbox, w);
    ev_set_after(w->loop, on_after, w);
    ev_set_tick(w->loop, 250, on_tick, w);
    atomic_store(&w->last_tick_ms, ev_clock_ms()); /* the watchdog's grace until the first tick */
    security_worker_update(w);                     /* the snapshot loaded at start-up */
    logtopic_attach(w);
    return 0;
}

int worker_listen(struct worker *w, struct lsock *ls) {
    return ev_io_start_exclusive(w->loop, &ls->ios[w->id], ls->fd, on_accept, ls);
}

int worker_start(struct worker *w) {
    return pthread_create(&w->thread, NULL, worker_main, w);
}

static void end_session(void *ctx, void *val) {
    (void)ctx;
    struct session *s = val;
    s->dead = true;
    session_subs_clear(s);
    session_unref(s);
}

/* Free a chain of undelivered items. */
static void items_free(struct item *it) {
    while (it) {
        struct item *n = it->next;
        if (it->kind == IT_DELIVER) {
            deliv_clear(&it->d);
            session_unref(it->s);
        } else if (it->kind == IT_ACK) {
            free(it->abuf);
            session_unref(it->s);
        } else if (it->kind == IT_AUTH) {
            /* a verdict for a connection closed at shutdown */
        } else if (it->kind == IT_PUBLISH) {
            deliv_clear(&it->d);
        } else if (it->kind == IT_DELIVERS) {
            route_batch_free(it); /* frees it */
            it = n;
            continue;
        } else if (it->kind == IT_CLUSTER) {
            cluster_item_free(it); /* frees it */
            it = n;
            continue;
        } else if (it->kind == IT_ADMIN) {
            adminq_item_free(it); /* frees it */
            it = n;
            continue;
        } else {
            struct conn *c = it->c;
            if (c->counted) {
                atomic_fetch_sub(c->ls->nconns, 1);
                limits_conn_gone(c->w->b);
            }
            conn_free(c);
        }
        free(it);
        it = n;
    }
}

void worker_free(struct worker *w) {
    logtopic_detach(w);
    /* Undelivered items: the inbox, and what was collected after the last hand-over
     * (a broker-made message published during the final turn). */
    items_free(w->inbox_head);
    w->inbox_head = w->inbox_tail = NULL;
    for (int i = 0; w->out_head && i < w->b->nworkers; i++)
        items_free(w->out_head[i]);
    while (w->timed) {
        struct session *s = w->timed;
        w->timed = s->timer_next;
        s->on_timer_list = false;
        session_unref(s);
    }
    strmap_each(&w->sessions, end_session, NULL);
    strmap_free(&w->sessions);
    free(w->rbuf);
    free(w->out_head);
    free(w->out_tail);
    route_cache_free(w);
    free(w->matches);
    free(w->seen);
    free(w->pend);
    free(w->subid_scratch);
    security_worker_release(w);
    free(w->wls);
    sys_free(w);
    ev_loop_free(w->loop);
    pthread_mutex_destroy(&w->inbox_lock);
}
