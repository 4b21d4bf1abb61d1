/*
 * Protocol handling: one function per control packet, each called with a
 * packet the codec has fully decoded and validated. Policy lives here
 * (client ids, limits, retained, sessions); turning an error into a
 * DISCONNECT or CONNACK happens in proto_fail and connack_fail only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include "base/log.h"
#include "broker/alias.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/limits.h"
#include "broker/security.h"
#include "broker/persist.h"
#include "broker/plugin.h"

#define PROP(x) MQTT_PROP_BIT(MQTT_PROP_##x)

void proto_fail(struct conn *c, uint8_t reason, const char *why) {
    if (c->state == CS_CONNECTED && c->version == MQTT_V5 && reason >= 0x80) {
        struct mqtt_packet d = {.type = MQTT_DISCONNECT, .reason = reason};
        conn_send(c, &d);
    }
    conn_close(c, why);
}

/* Refuse a CONNECT: CONNACK with the code of the client's version, close. */
static void connack_fail(struct conn *c, uint8_t v3code, uint8_t v5reason, const char *why) {
    struct mqtt_packet ack = {.type = MQTT_CONNACK};
    ack.reason = c->version == MQTT_V5 ? v5reason : v3code;
    conn_send(c, &ack);
    c->will_pending = false;
    conn_close(c, why);
}

static const struct hato_listener *lcfg(struct conn *c) {
    return c->lcfg;
}

/* The mount point of the client's listener, or "". */
static const char *mount(struct conn *c) {
    return lcfg(c)->mount_point ? lcfg(c)->mount_point : "";
}

/* mount + s as a new NUL-terminated string (caller frees), or NULL. */
static char *mounted(struct conn *c, const uint8_t *s, size_t len, size_t *outlen) {
    const char *mp = mount(c);
    size_t ml = strlen(mp);
    char *t = malloc(ml + len + 1);
    if (!t)
        return NULL;
    memcpy(t, mp, ml);
    memcpy(t + ml, s, len);
    t[ml + len] = 0;
    *outlen = ml + len;
    return t;
}

/* ACL check for this connection's client (true when no ACL applies). */
static bool acl_ok(struct conn *c, const char *topic, size_t tlen, int access) {
    struct worker *w = c->w;
    if (!security_acl_active(w))
        return true;
    const char *id = c->s ? c->s->client_id : c->assigned_id;
    return security_acl(w, lcfg(c), c->username, id ? id : "", topic, tlen, access);
}

static bool w_has_acl(struct conn *c) {
    return security_acl_active(c->w);
}

/*
 * A failed login: logged with user and address, then refused after the
 * slowdown delay of its address (auth_fail_delay). The connection reads
 * nothing more meanwhile; the worker's tick sends the CONNACK
 * (proto_refuse_due), so the thread never waits.
 */
static void refuse_login(struct conn *c, const char *id, size_t idlen, uint8_t v3, uint8_t v5,
                         const char *why, const char *detail) {
    char u[128], i[128], idz[128];
    snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
    int64_t delay = security_fail_delay(c->w->b, c->si.peer);
    const char *user = c->username ? security_printable(c->username, u, sizeof(u)) : NULL;
    const char *cid = security_printable(idz, i, sizeof(i));
    /* A warning, whatever connection_messages says: the line to grep for
     * intrusions ("refused:"), with the precise reason after the user. */
    log_client(LOG_WARNING, cid, user, c->si.peer,
               "Client %s [%s] refused: %s (user '%s')%s%s; answered after %lld ms.", cid,
               c->si.peer, why, user ? user : "<anonymous>", detail ? ", " : "",
               detail ? detail : "", (long long)delay);
    if (delay <= 0) {
        connack_fail(c, v3, v5, why);
        return;
    }
    c->refuse_at = ev_now(c->w->loop) + delay;
    if (c->refuse_at == 0)
        c->refuse_at = 1;
    c->refuse_v3 = v3;
    c->refuse_v5 = v5;
    ev_io_stop(c->w->loop, &c->io);
}

void proto_refuse_due(struct conn *c) {
    c->refuse_at = 0;
    connack_fail(c, c->refuse_v3, c->refuse_v5, "authentication failed");
}

/* More levels than max_topic_levels (a hato limit against very deep topics;
 * the default, 201, is Mosquitto's fixed limit of 200 separators). Answered
 * as Mosquitto 2.0 answers its limit: a PUBLISH with DISCONNECT 0x82, a
 * SUBSCRIBE or UNSUBSCRIBE with DISCONNECT 0x81 (MQTT 3: the connection
 * closed), a will topic by closing without CONNACK. */
static bool too_deep(const struct conn *c, const uint8_t *t, size_t len) {
    int max = c->w->b->cfg->max_topic_levels;
    if (max <= 0 || len < (size_t)max)
        return false;
    size_t levels = 1;
    for (size_t i = 0; i < len; i++)
        if (t[i] == '/' && ++levels > (size_t)max)
            return true;
    return false;
}

/* A topic that the mount point would take past 65535 bytes (the most a
 * message topic can be; MQTT-4.7.3-3 applies to what is routed). */
static bool mount_too_long(struct conn *c, size_t len) {
    return strlen(mount(c)) + len > 65535;
}

static bool reserved_topic(const uint8_t *topic, size_t len);

/* ---- CONNECT ---------------------------------------------------------- */

/*
 * An id for a client that sent none: the prefix (auto_id_prefix, "auto-" by
 * default) and 16 random bytes written as Mosquitto 2.0 writes them, 36
 * upper-case hex digits and dashes in UUID form (8-4-4-4-12), so the id has
 * the length and shape a Mosquitto user's tools expect.
 */
static void assign_id(struct conn *c) {
    static const char hex[] = "0123456789ABCDEF";
    const char *prefix = lcfg(c)->auto_id_prefix ? lcfg(c)->auto_id_prefix : "auto-";
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* Never on Linux >= 3.17 with a seeded pool; stay unique anyway. */
        unsigned long n = atomic_fetch_add(&c->w->b->id_counter, 1);
        uint64_t x = (uint64_t)c->w->b->started * 6364136223846793005ULL + n;
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (uint8_t)(x >> (8 * (i % 8))) ^ (uint8_t)(i < 8 ? 0 : n >> (8 * (i - 8)));
    }
    size_t pl = strlen(prefix);
    char *id = malloc(pl + 37);
    if (!id)
        return;
    memcpy(id, prefix, pl);
    char *o = id + pl;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[rnd[i] >> 4];
        *o++ = hex[rnd[i] & 15];
    }
    *o = 0;
    c->assigned_id = id;
}

/*
 * Properties of a successful MQTT 5 CONNACK, those Mosquitto 2.0 sends and
 * in its order (the spec leaves the order free, harnesses written against
 * Mosquitto compare bytes): Topic Alias Maximum (when not 0), Server Keep
 * Alive (`server_ka` when not 0), Assigned Client Identifier, then Retain
 * Available (when false), Maximum Packet Size (when set), Receive Maximum
 * (when max_inflight_messages is not 0, unlimited), Maximum QoS (below 2).
 */
static void connack_props(struct conn *c, struct mqtt_props *ap, uint16_t server_ka) {
    static const uint8_t order[] = {
        MQTT_PROP_TOPIC_ALIAS_MAXIMUM, MQTT_PROP_SERVER_KEEP_ALIVE, MQTT_PROP_ASSIGNED_CLIENT_ID,
        MQTT_PROP_AUTH_METHOD,         MQTT_PROP_AUTH_DATA,         MQTT_PROP_RETAIN_AVAILABLE,
        MQTT_PROP_MAXIMUM_PACKET_SIZE, MQTT_PROP_RECEIVE_MAXIMUM,   MQTT_PROP_MAXIMUM_QOS,
    };
    const struct hato_config *cfg = c->w->b->cfg;
    ap->order = order;
    ap->norder = (uint8_t)sizeof(order);
    if (lcfg(c)->max_topic_alias > 0) {
        ap->present |= PROP(TOPIC_ALIAS_MAXIMUM);
        ap->topic_alias_maximum = (uint16_t)lcfg(c)->max_topic_alias;
    }
    if (server_ka) {
        ap->present |= PROP(SERVER_KEEP_ALIVE);
        ap->server_keep_alive = server_ka;
    }
    if (c->assigned_id && !c->id_is_username) {
        ap->present |= PROP(ASSIGNED_CLIENT_ID); /* MQTT-3.2.2-16 */
        ap->assigned_client_id =
            (struct mqtt_str){(const uint8_t *)c->assigned_id, (uint32_t)strlen(c->assigned_id)};
    }
    if (!cfg->retain_available) {
        ap->present |= PROP(RETAIN_AVAILABLE);
        ap->retain_available = 0;
    }
    if (cfg->max_packet_size) {
        ap->present |= PROP(MAXIMUM_PACKET_SIZE);
        ap->maximum_packet_size = cfg->max_packet_size;
    }
    uint32_t rm = cfg->max_inflight_messages;
    if (rm > 0) {
        ap->present |= PROP(RECEIVE_MAXIMUM);
        ap->receive_maximum = rm > 65535 ? 65535 : (uint16_t)rm;
    }
    if (lcfg(c)->max_qos < 2) {
        ap->present |= PROP(MAXIMUM_QOS);
        ap->maximum_qos = (uint8_t)lcfg(c)->max_qos;
    }
}

static struct msg *make_will(struct conn *c, const struct mqtt_packet *p) {
    size_t tlen;
    char *topic = mounted(c, p->connect.will_topic.p, p->connect.will_topic.len, &tlen);
    if (!topic)
        return NULL;
    const struct mqtt_props *wp = c->version == MQTT_V5 ? &p->connect.will_props : NULL;
    uint32_t expiry = wp && (wp->present & PROP(MESSAGE_EXPIRY)) ? wp->message_expiry : 0;
    struct msg *m = msg_new(topic, tlen, p->connect.will_payload.p, p->connect.will_payload.len,
                            p->connect.will_qos, p->connect.will_retain, wp, expiry, NULL);
    free(topic);
    return m;
}

/* Called on the worker that received the CONNECT. */
static void handle_connect(struct conn *c, struct mqtt_packet *p) {
    struct broker *b = c->w->b;
    if (c->state != CS_NEW) {
        proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT"); /* MQTT-3.1.0-2 */
        return;
    }
    c->version = p->connect.version;
    c->is_bridge = p->connect.bridge;
    const uint8_t *id = p->connect.client_id.p;
    size_t idlen = p->connect.client_id.len;
    const struct hato_listener *l = lcfg(c);
    if (l->use_username_as_clientid && !c->assigned_id) {
        /* Mosquitto's use_username_as_clientid: the user name (from CONNECT,
         * or the TLS identity where that is the name) is the client id, so
         * one user has one session; no user name, no connection. */
        bool by_identity = l->use_identity_as_username || l->use_subject_as_username;
        const char *tls_name = by_identity ? c->si.identity : NULL;
        if (tls_name)
            c->assigned_id = strdup(tls_name);
        else if (p->connect.has_username && !by_identity)
            c->assigned_id = strndup((const char *)p->connect.username.p, p->connect.username.len);
        else {
            connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED,
                         "use_username_as_clientid and no user name");
            return;
        }
        if (!c->assigned_id) {
            conn_close(c, "out of memory");
            return;
        }
        c->id_is_username = true;
    }
    if (c->assigned_id) {
        id = (const uint8_t *)c->assigned_id;
        idlen = strlen(c->assigned_id);
    } else if (idlen == 0) {
        if (!c->assigned_id) {
            bool ok = lcfg(c)->allow_zero_length_clientid > 0 &&
                      (c->version == MQTT_V5 || (c->version == MQTT_V311 && p->connect.clean));
            if (!ok) {
                /* MQTT-3.1.3-8 */
                connack_fail(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_CLIENT_ID_NOT_VALID,
                             "empty client id refused");
                return;
            }
            assign_id(c);
            if (!c->assigned_id) {
                conn_close(c, "out of memory");
                return;
            }
        }
        id = (const uint8_t *)c->assigned_id;
        idlen = strlen(c->assigned_id);
    }
    struct worker *owner = broker_owner(b, (const char *)id, idlen);
    if (owner != c->w) {
        /* Move the connection to the worker that owns this client id. */
        struct worker *from = c->w;
        ev_io_stop(from->loop, &c->io);
        if (c->prev)
            c->prev->next = c->next;
        else if (from->conns == c)
            from->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->next = c->prev = NULL;
        c->w = owner;
        c->version = 0;
        struct item *it = calloc(1, sizeof(*it));
        if (!it) {
            /* Cannot happen often; put it back and refuse. */
            c->w = from;
            conn_close(c, "out of memory");
            return;
        }
        it->kind = IT_ADOPT;
        it->c = c;
        worker_post(from, owner, it);
        return;
    }
    proto_connect_owned(c, p);
}

/* global_max_clients reached (limits.h): as Mosquitto 2.1, MQTT 5 gets
 * CONNACK 0x89 Server busy, MQTT 3 is closed without a CONNACK. */
static void refuse_full(struct conn *c, const char *id, size_t idlen) {
    char idz[128], i[128];
    snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
    const char *cid = security_printable(idz, i, sizeof(i));
    log_client(LOG_NOTICE, cid, NULL, c->si.peer,
               "Client %s [%s] refused: global_max_clients (%d) reached.", cid, c->si.peer,
               c->w->b->cfg->global_max_clients);
    if (c->version == MQTT_V5) {
        connack_fail(c, 0, MQTT_RC_SERVER_BUSY, "global_max_clients reached");
    } else {
        c->will_pending = false;
        conn_close(c, "global_max_clients reached");
    }
}

void proto_connect_owned(struct conn *c, struct mqtt_packet *p) {
    struct worker *w = c->w;
    struct broker *b = w->b;
    const struct hato_config *cfg = b->cfg;
    const char *id = c->assigned_id ? c->assigned_id : (const char *)p->connect.client_id.p;
    size_t idlen = c->assigned_id ? strlen(c->assigned_id) : p->connect.client_id.len;
    const struct mqtt_props *props = &p->props;
    bool v5 = c->version == MQTT_V5;

    if (!(lcfg(c)->accept_protocol_versions & (1u << c->version))) {
        connack_fail(c, MQTT_CONNACK_BAD_PROTOCOL, MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION,
                     "protocol version not accepted on this listener");
        return;
    }
    if (cfg->clientid_prefixes &&
        (idlen < strlen(cfg->clientid_prefixes) ||
         memcmp(id, cfg->clientid_prefixes, strlen(cfg->clientid_prefixes)) != 0)) {
        connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_CLIENT_ID_NOT_VALID,
                     "client id does not start with clientid_prefixes");
        return;
    }
    if (c->version == MQTT_V31 && idlen > 23 && !c->id_is_username) {
        connack_fail(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_CLIENT_ID_NOT_VALID,
                     "MQTT 3.1 client id longer than 23 bytes");
        return;
    }
    if (v5 && (props->present & PROP(AUTH_METHOD))) {
        /* No extended authentication method is configured. */
        connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_BAD_AUTHENTICATION_METHOD,
                     "unsupported authentication method");
        return;
    }
    /* use_identity_as_username / use_subject_as_username: the name comes
     * from the TLS client certificate or PSK identity, never from CONNECT. */
    const struct hato_listener *tl = lcfg(c);
    bool by_identity = tl->use_identity_as_username || tl->use_subject_as_username;
    if (by_identity && c->si.identity && !c->username_from_tls) {
        /* Established by the TLS layer, or by a PROXY v2 header from a load
         * balancer that terminated TLS (its client certificate's CN). */
        free(c->username);
        c->username = c->si.identity;
        c->si.identity = NULL;
        c->username_from_tls = true;
    }
    if ((hato_listener_wants_tls(tl) || tl->enable_proxy_protocol == 2) && by_identity &&
        !c->username_from_tls) {
        char idz[128], i[128];
        snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
        const char *cid = security_printable(idz, i, sizeof(i));
        log_client(LOG_WARNING, cid, NULL, c->si.peer,
                   "Client %s [%s] refused: no TLS identity for the user name.", cid, c->si.peer);
        connack_fail(c, MQTT_CONNACK_BAD_CREDENTIALS, MQTT_RC_BAD_USERNAME_OR_PASSWORD,
                     "no TLS client identity");
        return;
    }
    if (p->connect.has_username && !c->username_from_tls) {
        free(c->username);
        c->username = strndup((const char *)p->connect.username.p, p->connect.username.len);
        if (!c->username) {
            connack_fail(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_UNSPECIFIED, "out of memory");
            return;
        }
    }
    /* MQTT 3.1.1 has no code for a bad password but 0x04; Mosquitto (and
     * hato) answer 0x05 "not authorised" to both failures. */
    if (c->username && !c->username_from_tls && c->auth_done == AUTH_DONE_NONE &&
        security_fail_pending(c->w->b, c->si.peer)) {
        refuse_login(c, id, idlen, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_BAD_USERNAME_OR_PASSWORD,
                     "address held back after failed logins", NULL);
        return;
    }
    enum sec_auth auth = security_authenticate(c, p);
    switch (auth) {
    case SEC_AUTH_OK:
        break;
    case SEC_AUTH_BAD_CREDENTIALS:
    case SEC_AUTH_UNKNOWN_USER:
    case SEC_AUTH_NO_PASSWORD:
        refuse_login(c, id, idlen, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_BAD_USERNAME_OR_PASSWORD,
                     "bad user name or password", security_auth_reason(auth));
        return;
    case SEC_AUTH_NOT_AUTHORISED:
        refuse_login(c, id, idlen, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED,
                     "not authorised", security_auth_reason(auth));
        return;
    case SEC_AUTH_PENDING: {
        /* Parked: the pool's verdict runs this CONNECT again (authpool.h). */
        char u[128], i[128], idz[128];
        snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
        log_debug("Client %s [%s] (user '%s'): password check queued.",
                  security_printable(idz, i, sizeof(i)), c->si.peer,
                  security_printable(c->username, u, sizeof(u)));
        c->version = 0;
        return;
    }
    case SEC_AUTH_BUSY:
        connack_fail(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_SERVER_BUSY,
                     "too many password checks waiting");
        return;
    }
    if (p->connect.will && p->connect.will_qos > lcfg(c)->max_qos && v5) {
        /* MQTT-3.2.2-12: a will QoS above the server's Maximum QoS. */
        connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_QOS_NOT_SUPPORTED,
                     "will QoS above max_qos");
        return;
    }
    if (p->connect.will && p->connect.will_retain && !cfg->retain_available) {
        connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_RETAIN_NOT_SUPPORTED,
                     "retained will refused: retain_available is false");
        return;
    }

    /* Keep alive, capped by max_keepalive (MQTT 5 is told, MQTT-3.2.2-21). */
    uint16_t ka = p->connect.keep_alive;
    bool server_ka = false;
    if (cfg->max_keepalive > 0 && (ka > cfg->max_keepalive || (ka == 0 && v5))) {
        if (v5) {
            ka = (uint16_t)cfg->max_keepalive;
            server_ka = true;
        } else if (ka > cfg->max_keepalive) {
            connack_fail(c, MQTT_CONNACK_ID_REJECTED, MQTT_RC_UNSPECIFIED,
                         "keep alive above max_keepalive");
            return;
        }
    }

    if (p->connect.will && too_deep(c, p->connect.will_topic.p, p->connect.will_topic.len)) {
        c->will_pending = false;
        conn_close(c, "will topic over max_topic_levels"); /* no CONNACK, as Mosquitto */
        return;
    }
    if (p->connect.will && mount_too_long(c, p->connect.will_topic.len)) {
        if (v5) {
            connack_fail(c, 0, MQTT_RC_TOPIC_NAME_INVALID, "will topic too long");
        } else {
            c->will_pending = false;
            conn_close(c, "will topic too long"); /* no 3.1.1 code fits */
        }
        return;
    }
    struct msg *will = NULL;
    if (p->connect.will && reserved_topic(p->connect.will_topic.p, p->connect.will_topic.len)) {
        /* A will to $SYS... or $share/...: the connection is accepted and the
         * will dropped, as Mosquitto 2.0 does (a client must not feed $SYS,
         * not even by disconnecting). */
        char idz[128], i[128];
        snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
        log_client(LOG_NOTICE, security_printable(idz, i, sizeof(i)), c->username, c->si.peer,
                   "Client %s [%s]: will to reserved topic '%.*s' dropped.",
                   security_printable(idz, i, sizeof(i)), c->si.peer,
                   (int)p->connect.will_topic.len, (const char *)p->connect.will_topic.p);
    } else if (p->connect.will) {
        will = make_will(c, p);
        if (will && will->retain && will->payload_len &&
            msg_set_source(will, id, idlen, c->username, c->username ? strlen(c->username) : 0,
                           lcfg(c)) < 0) {
            msg_unref(will);
            will = NULL;
        }
        if (!will) {
            connack_fail(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_UNSPECIFIED, "out of memory");
            return;
        }
        bool acl = security_acl_active(w);
        char *cid = acl ? strndup(id, idlen) : NULL;
        bool allowed = !acl || (cid && security_acl(w, lcfg(c), c->username, cid, will->topic,
                                                    will->topic_len, AUTH_ACL_WRITE));
        free(cid);
        if (acl && !allowed) {
            char idz[128], i[128];
            snprintf(idz, sizeof(idz), "%.*s", (int)idlen, id);
            char u[128];
            const char *cid = security_printable(idz, i, sizeof(i));
            const char *user = c->username ? security_printable(c->username, u, sizeof(u)) : NULL;
            log_client(LOG_WARNING, cid, user, c->si.peer,
                       "Client %s [%s] refused: not authorised (user '%s'), will topic '%s' not "
                       "writable by the ACL.",
                       cid, c->si.peer, user ? user : "<anonymous>", will->topic);
            msg_unref(will);
            connack_fail(c, MQTT_CONNACK_NOT_AUTHORIZED, MQTT_RC_NOT_AUTHORIZED,
                         "will topic not authorised");
            return;
        }
    }

    /* Session: take over, resume or start. */
    bool clean = p->connect.clean;
    struct session *s = strmap_get(&w->sessions, id, idlen);
    if (s && s->conn) {
        struct conn *old = s->conn;
        log_client(LOG_NOTICE | LOG_CONN, s->client_id, old->username, old->si.peer,
                   "Client %s already connected, closing old connection.", s->client_id);
        if (old->version == MQTT_V5) {
            struct mqtt_packet d = {.type = MQTT_DISCONNECT, .reason = MQTT_RC_SESSION_TAKEN_OVER};
            conn_send(old, &d); /* MQTT-3.1.4-3 */
        }
        /* The old connection's will: a delayed one is cancelled below if
         * the session continues (MQTT-3.1.3-9 area). */
        conn_close(old, "session taken over");
        s = strmap_get(&w->sessions, id, idlen);
    }
    bool present = false;
    c->clean_start = clean;
    c->connected_at = (int64_t)time(NULL);
    bool was_durable = s && atomic_load(&s->durable);
    if (s && clean) {
        session_end(s);
        s = NULL;
    }
    if (s) {
        present = true;
        /* Reconnected before the will delay ran out: no will. */
        msg_unref(s->will);
        s->will = NULL;
        s->will_at = 0;
        s->expire_at = 0;
    } else {
        if (!limits_session_reserve(b)) {
            msg_unref(will);
            refuse_full(c, id, idlen);
            return;
        }
        s = session_new(w, id, idlen); /* counts itself: the reservation is given back */
        limits_session_unreserve(b);
        if (!s) {
            msg_unref(will);
            connack_fail(c, MQTT_CONNACK_SERVER_UNAVAILABLE, MQTT_RC_UNSPECIFIED, "out of memory");
            return;
        }
    }
    s->version = c->version;
    free(s->username);
    s->username = c->username ? strdup(c->username) : NULL;
    s->lcfg = lcfg(c);
    if (v5) {
        s->expiry = (props->present & PROP(SESSION_EXPIRY)) ? props->session_expiry : 0;
        c->session_expiry_in = s->expiry;
    } else if (clean) {
        s->expiry = 0;
    } else {
        int64_t pce = cfg->persistent_client_expiration;
        s->expiry = pce > 0 && pce < UINT32_MAX ? (uint32_t)pce : UINT32_MAX;
    }
    s->will = will;
    s->will_delay = v5 && will && (p->connect.will_props.present & PROP(WILL_DELAY))
                        ? p->connect.will_props.will_delay
                        : 0;
    s->bridge_local = c->bridge_local;
    s->bridge_qmax = c->bridge_qmax;
    atomic_store_explicit(&s->bridge_nofwd, c->bridge_nofwd, memory_order_relaxed);
    s->conn = c;
    s->conn_gen++;
    atomic_store_explicit(&s->online, true, memory_order_relaxed);
    c->s = s;
    c->keep_alive = ka;
    c->will_pending = true;
    c->state = CS_CONNECTED;
    c->max_packet_out =
        v5 && (props->present & PROP(MAXIMUM_PACKET_SIZE)) ? props->maximum_packet_size : 0;
    c->receive_max_out =
        v5 && (props->present & PROP(RECEIVE_MAXIMUM)) ? props->receive_maximum : 0;
    alias_out_free(c->alias_out); /* aliases are per connection (MQTT-3.3.2-7) */
    c->alias_out = NULL;
    if (v5 && (props->present & PROP(TOPIC_ALIAS_MAXIMUM)) && props->topic_alias_maximum &&
        lcfg(c)->max_topic_alias_broker > 0) {
        int amax = lcfg(c)->max_topic_alias_broker;
        if (props->topic_alias_maximum < amax)
            amax = props->topic_alias_maximum;
        c->alias_out = alias_out_new((uint16_t)amax); /* none when out of memory */
    }
    atomic_fetch_add(&w->nclients, 1);
    stat_inc(&w->sc.connections);

    /* Cluster: registered as this node's; what it had on another node comes here. */
    if (b->cluster && cluster_connect(s, clean, &present) < 0) {
        session_ref(s);
        conn_close(c, "its session's JetStream consumers could not be taken over (logged above)");
        session_end(s); /* nothing of it stays here: the next CONNECT starts again */
        session_unref(s);
        return;
    }
    struct mqtt_packet ack = {.type = MQTT_CONNACK, .reason = 0};
    ack.connack.session_present = present && c->version != MQTT_V31; /* 3.1 has no such flag */
    if (v5)
        connack_props(c, &ack.props, server_ka ? ka : 0);
    /* Persistence: a session that outlives its connection is saved before the CONNACK
     * promises it; one that stops being durable leaves the store first. */
    bool durable = b->store && s->expiry > 0;
    bool held = false;
    if (b->store && (durable || was_durable)) {
        if (durable) {
            atomic_store(&s->durable, true);
            persist_session(s);
        } else {
            persist_session_end(s);
        }
        held = persist_send_connack(c, &ack, present) == 0;
        if (!held) {
            conn_close(c, "out of memory");
            return;
        }
    } else {
        conn_send(c, &ack);
    }
    log_client(LOG_NOTICE | LOG_CONN, s->client_id, c->username, c->si.peer,
               "New %s connected from %s as %s (p%d, c%d, k%d%s%s%s).",
               c->is_bridge ? "bridge" : "client", c->si.peer, s->client_id,
               c->version == MQTT_V31    ? 1
               : c->version == MQTT_V311 ? 2
                                         : 5,
               clean ? 1 : 0, ka, c->username ? ", u'" : "", c->username ? c->username : "",
               c->username ? "'" : "");
    if (held)
        return; /* resend and pump when the CONNACK is released */
    if (present)
        session_resend(s);
    session_pump(s);
}

/* ---- PUBLISH and acknowledgements ------------------------------------- */

/*
 * Incoming QoS 2 packet ids not yet released. Few: a small array, scanned.
 * From IN_PID_BITS_FROM on (an MQTT 3 client has no Receive Maximum and may
 * leave all 65535 unreleased) a bitmap of the 65536 ids replaces the array,
 * so that each PUBLISH and PUBREL stays O(1) instead of costing the worker
 * O(n) (measured: 65535 unreleased, then released in reverse, took seconds
 * of the worker's time). nin_pids counts the ids in either form.
 */
#define IN_PID_BITS_FROM 64
#define BIT(pid) (1ull << ((pid)&63))

static bool in_pid_has(struct session *s, uint16_t pid) {
    if (s->in_pid_bits)
        return s->in_pid_bits[pid >> 6] & BIT(pid);
    for (uint32_t i = 0; i < s->nin_pids; i++)
        if (s->in_pids[i] == pid)
            return true;
    return false;
}

int session_in_pid_add(struct session *s, uint16_t pid) {
    if (!s->in_pid_bits && s->nin_pids >= IN_PID_BITS_FROM) {
        uint64_t *bits = calloc(65536 / 64, sizeof(*bits));
        if (!bits)
            return -1;
        for (uint32_t i = 0; i < s->nin_pids; i++)
            bits[s->in_pids[i] >> 6] |= BIT(s->in_pids[i]);
        free(s->in_pids);
        s->in_pids = NULL;
        s->capin_pids = 0;
        s->in_pid_bits = bits;
    }
    if (s->in_pid_bits) {
        s->in_pid_bits[pid >> 6] |= BIT(pid);
        s->nin_pids++;
        return 0;
    }
    if (s->nin_pids == s->capin_pids) {
        uint32_t n = s->capin_pids ? s->capin_pids * 2 : 4;
        uint16_t *a = realloc(s->in_pids, n * sizeof(*a));
        if (!a)
            return -1;
        s->in_pids = a;
        s->capin_pids = n;
    }
    s->in_pids[s->nin_pids++] = pid;
    return 0;
}

static bool in_pid_del(struct session *s, uint16_t pid) {
    if (s->in_pid_bits) {
        if (!(s->in_pid_bits[pid >> 6] & BIT(pid)))
            return false;
        s->in_pid_bits[pid >> 6] &= ~BIT(pid);
        if (--s->nin_pids == 0) {
            free(s->in_pid_bits); /* back to the small form */
            s->in_pid_bits = NULL;
        }
        persist_inpid(s, pid, false);
        return true;
    }
    for (uint32_t i = 0; i < s->nin_pids; i++) {
        if (s->in_pids[i] == pid) {
            s->in_pids[i] = s->in_pids[--s->nin_pids];
            persist_inpid(s, pid, false);
            return true;
        }
    }
    return false;
}

/* Acknowledgements go out after the store committed what they promise. */
static void send_ack(struct conn *c, uint8_t type, uint16_t pid, uint8_t reason) {
    struct mqtt_packet a = {.type = type, .packet_id = pid, .reason = reason};
    persist_send_ack(c, &a);
}

/* Topics a client may not publish to, whatever the ACL says (as Mosquitto,
 * which compares the first four characters with "$SYS"): $SYS... is the
 * broker's own (a client must not feed its statistics or its log), and
 * $share/... names a shared subscription, not a topic. Except, as in
 * Mosquitto, $SYS/broker/connection/+/state: a bridge connecting to us
 * publishes its state there (notifications; its will says 0). */
static bool reserved_topic(const uint8_t *topic, size_t len) {
    static const char sys[] = "$SYS", share[] = "$share/",
                      state[] = "$SYS/broker/connection/+/state";
    if (len >= 4 && memcmp(topic, sys, 4) == 0) /* "$SYSTEM/x" too, as Mosquitto */
        return !mqtt_topic_match((const uint8_t *)state, sizeof(state) - 1, topic, len);
    return len >= sizeof(share) - 1 && memcmp(topic, share, sizeof(share) - 1) == 0;
}

/*
 * memory_limit reached (limits.h): the PUBLISH is not taken, and counted
 * (dropped/memory_limit). MQTT 5 is told: PUBACK/PUBREC 0x97 Quota
 * exceeded. MQTT 3 has no such code: QoS 0 is dropped; QoS 1/2 closes the
 * connection without acknowledging, so that the client keeps the message
 * and sends it again after reconnecting (Mosquitto, whose allocation then
 * fails, closes the connection too). Logged once per episode.
 */
static atomic_bool memory_over; /* the episode lasts until a PUBLISH fits again */

static void memory_refuse(struct conn *c, uint8_t qos, uint16_t pid, const uint8_t *topic,
                          size_t tlen, uint32_t len) {
    stats_drop(c->w, STATS_DROP_MEMORY_LIMIT);
    if (!atomic_exchange(&memory_over, true))
        log_warn("Refusing PUBLISH from %s on '%.*s' (%u bytes): memory_limit (%lld bytes) "
                 "reached, %lld bytes of messages held.",
                 c->s->client_id, (int)tlen, (const char *)topic, len,
                 (long long)c->w->b->cfg->memory_limit, (long long)limits_memory_used(c->w->b));
    if (c->version == MQTT_V5) {
        if (qos == 1)
            send_ack(c, MQTT_PUBACK, pid, MQTT_RC_QUOTA_EXCEEDED);
        else if (qos == 2)
            send_ack(c, MQTT_PUBREC, pid, MQTT_RC_QUOTA_EXCEEDED);
    } else if (qos > 0) {
        conn_close(c, "memory_limit reached");
    }
}

static void handle_publish(struct conn *c, struct mqtt_packet *p) {
    struct broker *b = c->w->b;
    const struct hato_config *cfg = b->cfg;
    struct session *s = c->s;
    uint8_t qos = p->publish.qos;
    uint16_t pid = p->packet_id;
    const uint8_t *topic = p->publish.topic.p;
    size_t tlen = p->publish.topic.len;
    stat_inc(&c->w->msgs_in);
    c->msgs_in++;
    stat_add(&c->w->sc.pub_bytes_in, p->publish.payload.len);

    if (c->version == MQTT_V5 && (p->props.present & PROP(TOPIC_ALIAS))) {
        uint16_t alias = p->props.topic_alias;
        /* The limit the client was told (a reload may change the listener's since). */
        int max_alias = c->aliases ? c->nalias : lcfg(c)->max_topic_alias;
        if (alias == 0 || alias > max_alias) {
            proto_fail(c, MQTT_RC_TOPIC_ALIAS_INVALID,
                       "topic alias out of range"); /* MQTT-3.3.2-9, -10 */
            return;
        }
        if (!c->aliases) {
            c->nalias = (uint16_t)lcfg(c)->max_topic_alias;
            c->aliases = calloc(c->nalias, sizeof(char *));
            if (!c->aliases) {
                conn_close(c, "out of memory");
                return;
            }
        }
        if (tlen) {
            char *t = strndup((const char *)topic, tlen);
            if (!t) {
                conn_close(c, "out of memory");
                return;
            }
            free(c->aliases[alias - 1]);
            c->aliases[alias - 1] = t;
        } else if (c->aliases[alias - 1]) {
            topic = (const uint8_t *)c->aliases[alias - 1];
            tlen = strlen(c->aliases[alias - 1]);
        } else {
            proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "unknown topic alias");
            return;
        }
    }
    if (too_deep(c, topic, tlen)) {
        proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "topic over max_topic_levels");
        return;
    }
    if (mount_too_long(c, tlen)) {
        proto_fail(c, MQTT_RC_TOPIC_NAME_INVALID, "topic too long with the mount point");
        return;
    }
    if (qos > lcfg(c)->max_qos) {
        proto_fail(c, MQTT_RC_QOS_NOT_SUPPORTED, "QoS above the listener's max_qos");
        return;
    }
    if (p->publish.retain && !cfg->retain_available) {
        proto_fail(c, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain not available");
        return;
    }
    if (qos == 2 && in_pid_has(s, pid)) {
        /* A re-sent QoS 2 PUBLISH before PUBREL: acknowledge, never deliver
         * twice (MQTT-4.3.3-2 area: exactly once). */
        send_ack(c, MQTT_PUBREC, pid, 0);
        return;
    }
    if (qos == 2) {
        uint32_t rm = cfg->max_inflight_messages ? cfg->max_inflight_messages : 65535;
        if (c->version == MQTT_V5 && s->nin_pids >= rm) {
            proto_fail(c, MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
            return;
        }
    }
    if (cfg->message_size_limit && p->publish.payload.len > (uint32_t)cfg->message_size_limit) {
        log_notice("Dropped message from %s on '%.*s': %u bytes over message_size_limit.",
                   s->client_id, (int)tlen, (const char *)topic, p->publish.payload.len);
        if (qos == 1)
            send_ack(c, MQTT_PUBACK, pid,
                     MQTT_RC_QUOTA_EXCEEDED); /* a valid PUBACK code (MQTT-3.4.2-1) */
        else if (qos == 2) {
            send_ack(c, MQTT_PUBREC, pid, MQTT_RC_QUOTA_EXCEEDED);
        }
        return;
    }

    if (cfg->memory_limit) {
        if (!limits_memory_room(b, p->publish.payload.len)) {
            memory_refuse(c, qos, pid, topic, tlen, p->publish.payload.len);
            return;
        }
        if (atomic_load_explicit(&memory_over, memory_order_relaxed))
            atomic_store(&memory_over, false);
    }

    /* The topic goes into the message as it is, unless a mount point is
     * prefixed: no copy of it per message on the usual path. */
    size_t full_len = tlen;
    char *full = *mount(c) ? mounted(c, topic, tlen, &full_len) : NULL;
    const char *ftopic = full ? full : (const char *)topic;
    uint32_t expiry = c->version == MQTT_V5 && (p->props.present & PROP(MESSAGE_EXPIRY))
                          ? p->props.message_expiry
                          : 0;
    struct msg *m =
        full || !*mount(c)
            ? msg_new(ftopic, full_len, p->publish.payload.p, p->publish.payload.len, qos,
                      p->publish.retain, c->version == MQTT_V5 ? &p->props : NULL, expiry, s)
            : NULL;
    free(full);
    if (!m) {
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    bool reserved = reserved_topic(topic, tlen);
    if (reserved || !acl_ok(c, m->topic, m->topic_len, AUTH_ACL_WRITE) ||
        !plugin_message_ok(c, &m)) { /* MOSQ_EVT_MESSAGE may also change m */
        /* MQTT 5 is told (0x87); MQTT 3 has no way to say it: the message
         * is dropped and acknowledged as usual (what Mosquitto does). */
        char u[128];
        const char *user = c->username ? security_printable(c->username, u, sizeof(u)) : NULL;
        log_client(LOG_NOTICE, s->client_id, user, c->si.peer,
                   "Denied PUBLISH from %s [%s] (user '%s') to '%s': %s.", s->client_id, c->si.peer,
                   user ? user : "<anonymous>", m->topic, reserved ? "reserved topic" : "ACL");
        msg_unref(m);
        bool v5 = c->version == MQTT_V5;
        uint8_t rc = v5 ? MQTT_RC_NOT_AUTHORIZED : 0;
        if (qos == 1) {
            send_ack(c, MQTT_PUBACK, pid, rc);
        } else if (qos == 2) {
            if (!v5) {
                if (session_in_pid_add(s, pid) < 0) {
                    proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
                    return;
                }
                persist_inpid(s, pid, true);
            }
            send_ack(c, MQTT_PUBREC, pid, rc);
        }
        return;
    }
    if (m->retain && m->payload_len &&
        msg_set_source(m, s->client_id, s->id_len, c->username,
                       c->username ? strlen(c->username) : 0, lcfg(c)) < 0) {
        msg_unref(m); /* kept for check_retain_source */
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    /* Set before the message is shared (retained or routed). */
    m->via_bridge = c->is_bridge || c->bridge_local;
    bool control = plugin_is_control_topic(m->topic, m->topic_len);
    if (!control && m->retain &&
        retain_set(b->retain, m) == 0) { /* empty payload clears, MQTT-3.3.1-10 */
        persist_retain(c->w, m);
        cluster_retain(c->w, m);
    }
    /* In a cluster, PUBREC waits (like PUBACK) for JetStream to hold the message. */
    bool clustered = b->cluster && !control;
    if (qos == 2 && !clustered) {
        /* PUBREC (Success, whether anyone subscribes or not) before any
         * copy to this connection, the order Mosquitto 2.0 writes. */
        if (session_in_pid_add(s, pid) < 0) {
            msg_unref(m);
            proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
            return;
        }
        persist_inpid(s, pid, true);
        send_ack(c, MQTT_PUBREC, pid, 0);
    }
    if (qos == 2 && clustered && session_in_pid_add(s, pid) < 0) {
        msg_unref(m);
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    size_t n = 1;
    if (control)
        plugin_control(c, m); /* $CONTROL/...: to its plugin, never to subscribers (Mosquitto) */
    else
        n = (c->w->cl_hold = 0, bp_route_publish(c, m)); /* route_publish; may hold c */
    msg_unref(m);
    if (clustered && qos) {
        /* Sent once JetStream has it (cluster.c); other nodes' subscribers
         * are not counted, so the reason is always Success. */
        struct mqtt_packet a = {.type = qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, .packet_id = pid};
        if (cluster_send_ack(c, &a) < 0)
            proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    /* QoS 1: the copies first, then PUBACK (also Mosquitto's order). */
    if (qos == 1)
        send_ack(c, MQTT_PUBACK, pid, n ? MQTT_RC_SUCCESS : MQTT_RC_NO_MATCHING_SUBSCRIBERS);
}

static void handle_pubrel(struct conn *c, struct mqtt_packet *p) {
    bool found = in_pid_del(c->s, p->packet_id);
    send_ack(c, MQTT_PUBCOMP, p->packet_id, found ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------ */

struct retained_list {
    struct msg **v;
    size_t n, cap;
};

static void collect_retained(void *ctx, struct msg *m) {
    struct retained_list *l = ctx;
    if (l->n == l->cap) {
        size_t n = l->cap ? l->cap * 2 : 16;
        struct msg **v = realloc(l->v, n * sizeof(*v));
        if (!v)
            return;
        l->v = v;
        l->cap = n;
    }
    l->v[l->n++] = msg_ref(m);
}

/* Full filter for the tree: mount point applied (inside $share/NAME/). */
static char *full_filter(struct conn *c, const struct mqtt_str *f, size_t *outlen, int *shared,
                         struct mqtt_str *inner) {
    struct mqtt_str group;
    *shared = mqtt_shared_split(f->p, f->len, &group, inner);
    if (*shared < 0)
        return NULL;
    if (*shared == 0) {
        *inner = *f;
        return mounted(c, f->p, f->len, outlen);
    }
    const char *mp = mount(c);
    size_t ml = strlen(mp);
    size_t n = 7 + group.len + 1 + ml + inner->len;
    char *t = malloc(n + 1);
    if (!t)
        return NULL;
    snprintf(t, n + 1, "$share/%.*s/%s%.*s", (int)group.len, (const char *)group.p, mp,
             (int)inner->len, (const char *)inner->p);
    *outlen = n;
    return t;
}

/* A filter over max_topic_levels (for $share/NAME/F, counted in F). */
static bool filter_too_deep(const struct conn *c, const struct mqtt_str *f) {
    struct mqtt_str group, inner;
    if (mqtt_shared_split(f->p, f->len, &group, &inner) != 1)
        inner = *f;
    return too_deep(c, inner.p, inner.len);
}

static void handle_subscribe(struct conn *c, struct mqtt_packet *p) {
    struct session *s = c->s;
    struct broker *b = c->w->b;
    const struct hato_config *cfg = b->cfg;
    bool v5 = c->version == MQTT_V5;
    uint8_t codes[256];
    uint8_t *rc = p->subscribe.count <= sizeof(codes) ? codes : malloc(p->subscribe.count);
    struct retained_list ret = {0};
    if (!rc) {
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    /* Per filter: retained messages to send, with the granted options. */
    struct rsend {
        size_t from, to;
        struct sub_opts o;
    } *rs = calloc(p->subscribe.count, sizeof(*rs));
    if (!rs) {
        if (rc != codes)
            free(rc);
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    uint32_t off = 0, i = 0;
    struct mqtt_sub_entry e;
    while (mqtt_sub_next(p, &off, &e)) {
        if (filter_too_deep(c, &e.filter)) {
            if (rc != codes)
                free(rc);
            free(rs);
            proto_fail(c, MQTT_RC_MALFORMED_PACKET, "topic filter over max_topic_levels");
            return;
        }
    }
    off = 0;
    while (mqtt_sub_next(p, &off, &e)) {
        size_t flen;
        int shared;
        struct mqtt_str inner;
        char *f = full_filter(c, &e.filter, &flen, &shared, &inner);
        rs[i].from = rs[i].to = ret.n;
        if (!f) {
            rc[i++] = v5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            continue;
        }
        if (w_has_acl(c)) {
            size_t alen;
            char *af = mounted(c, inner.p, inner.len, &alen);
            bool ok = af && acl_ok(c, af, alen, AUTH_ACL_SUBSCRIBE);
            if (!ok) {
                char u[128];
                const char *user =
                    c->username ? security_printable(c->username, u, sizeof(u)) : NULL;
                log_client(LOG_NOTICE, s->client_id, user, c->si.peer,
                           "Denied SUBSCRIBE from %s [%s] (user '%s') to '%s': ACL.", s->client_id,
                           c->si.peer, user ? user : "<anonymous>", f);
            }
            free(af);
            if (!ok) {
                free(f);
                rc[i++] = v5 ? MQTT_RC_NOT_AUTHORIZED : 0x80;
                continue;
            }
        }
        uint8_t maxq = (uint8_t)lcfg(c)->max_qos;
        struct sub_opts o = {.qos = e.qos > maxq ? maxq : e.qos,
                             .no_local = e.no_local,
                             .retain_as_published = e.retain_as_published,
                             .retain_handling = e.retain_handling};
        if (c->is_bridge && !v5) {
            /* As Mosquitto does for a 3.x bridge: never echo its own
             * messages back (loops), and keep their retain flag. */
            o.no_local = true;
            o.retain_as_published = true;
        }
        if (v5 && (p->props.present & PROP(SUBSCRIPTION_ID)))
            o.sub_id = p->props.sub_id[0];
        if (cfg->max_subscriptions_per_client > 0 &&
            s->nsubs >= (size_t)cfg->max_subscriptions_per_client && !session_has_sub(s, f, flen)) {
            /* Over the cap; replacing an existing subscription is still fine. */
            free(f);
            rc[i++] = v5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
            continue;
        }
        int added = session_sub_add(s, f, flen, &o);
        if (added < 0) {
            free(f);
            rc[i++] = v5 ? MQTT_RC_UNSPECIFIED : 0x80;
            continue;
        }
        if (b->cluster && cluster_session_sub(s, f, flen, true) < 0) {
            /* Its durable consumer could not be made: not granted. */
            session_sub_remove(s, f, flen);
            free(f);
            rc[i++] = v5 ? MQTT_RC_UNSPECIFIED : 0x80;
            continue;
        }
        /* Mosquitto's line: "CLIENT QOS FILTER". */
        log_client(LOG_SUBSCRIBE, s->client_id, c->username, c->si.peer, "%s %d %s", s->client_id,
                   o.qos, f);
        rc[i] = o.qos;
        /* Retained messages: never for shared subscriptions; retain
         * handling 1 only for a new subscription, 2 never (MQTT-3.3.1-9..11). */
        bool send_retained =
            !shared && (o.retain_handling == 0 || (o.retain_handling == 1 && added == 1));
        if (send_retained) {
            size_t mlen;
            char *mf = mounted(c, inner.p, inner.len, &mlen);
            if (mf) {
                retain_match(b->retain, mf, mlen, collect_retained, &ret);
                free(mf);
            }
        }
        rs[i].to = ret.n;
        rs[i].o = o;
        free(f);
        i++;
    }
    struct mqtt_packet ack = {.type = MQTT_SUBACK, .packet_id = p->packet_id};
    ack.ack_list.codes = rc;
    ack.ack_list.count = i;
    persist_session(s);
    persist_send_ack(c, &ack);
    /* Retained messages go after the SUBACK, with retain set (MQTT-3.3.1-8). */
    for (uint32_t k = 0; k < i; k++) {
        for (size_t j = rs[k].from; j < rs[k].to; j++) {
            struct msg *m = ret.v[j];
            if (cfg->check_retain_source && !security_retain_source_ok(c->w, m)) {
                log_debug("Retained message on '%s' not sent to %s: its publisher %s may no "
                          "longer write it (check_retain_source).",
                          m->topic, s->client_id, m->src->id);
                stats_drop(c->w, STATS_DROP_ACL);
                msg_unref(m);
                continue;
            }
            if (m->via_bridge && c->bridge_nofwd) {
                msg_unref(m); /* bridge_forward_bridged false (bridge.c) */
                continue;
            }
            struct deliv d = {.m = m, .retain = true, .answer = true};
            d.qos = cfg->upgrade_outgoing_qos ? rs[k].o.qos
                                              : (m->qos < rs[k].o.qos ? m->qos : rs[k].o.qos);
            if (rs[k].o.sub_id) {
                d.nsub = 1;
                d.subid = rs[k].o.sub_id;
            }
            if (b->store) {
                /* After the held SUBACK, and stored first for a durable session. */
                persist_deliv_new(s, &d);
                session_ref(s);
                persist_release_deliver(c->w, s, &d);
            } else {
                session_deliver(s, &d);
            }
        }
    }
    free(ret.v);
    free(rs);
    if (rc != codes)
        free(rc);
}

static void handle_unsubscribe(struct conn *c, struct mqtt_packet *p) {
    struct session *s = c->s;
    uint8_t codes[256];
    uint8_t *rc = p->unsubscribe.count <= sizeof(codes) ? codes : malloc(p->unsubscribe.count);
    if (!rc) {
        proto_fail(c, MQTT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    uint32_t off = 0, i = 0;
    struct mqtt_str f;
    while (mqtt_unsub_next(p, &off, &f)) {
        if (filter_too_deep(c, &f)) {
            if (rc != codes)
                free(rc);
            proto_fail(c, MQTT_RC_MALFORMED_PACKET, "topic filter over max_topic_levels");
            return;
        }
    }
    off = 0;
    while (mqtt_unsub_next(p, &off, &f)) {
        size_t flen;
        int shared;
        struct mqtt_str inner;
        char *full = full_filter(c, &f, &flen, &shared, &inner);
        if (full && plugin_unsubscribe_denied(lcfg(c), c->username, s->client_id, full)) {
            /* Mosquitto 2.0: plugins are asked (MOSQ_ACL_UNSUBSCRIBE); the
             * subscription stays. */
            free(full);
            rc[i++] = MQTT_RC_NOT_AUTHORIZED;
            continue;
        }
        int r = full ? session_sub_remove(s, full, flen) : 0;
        if (r == 1 && c->w->b->cluster)
            cluster_session_sub(s, full, flen, false);
        if (full)
            log_client(LOG_UNSUBSCRIBE, s->client_id, c->username, c->si.peer, "%s %s",
                       s->client_id, full);
        free(full);
        rc[i++] = r == 1 ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    struct mqtt_packet ack = {.type = MQTT_UNSUBACK, .packet_id = p->packet_id};
    ack.ack_list.codes = rc;
    ack.ack_list.count = c->version == MQTT_V5 ? i : 0;
    persist_session(s);
    persist_send_ack(c, &ack);
    if (rc != codes)
        free(rc);
}

/* ---- DISCONNECT ------------------------------------------------------- */

static void handle_disconnect(struct conn *c, struct mqtt_packet *p) {
    struct session *s = c->s;
    if (c->version == MQTT_V5) {
        if (p->props.present & PROP(SESSION_EXPIRY)) {
            if (c->session_expiry_in == 0 && p->props.session_expiry != 0) {
                /* MQTT-3.14.2-2 */
                proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "session expiry set after 0");
                return;
            }
            s->expiry = p->props.session_expiry;
        }
        /* 0x04: disconnect with will message (MQTT-3.14.4-3 otherwise). */
        c->will_pending = p->reason == MQTT_RC_DISCONNECT_WITH_WILL;
    } else {
        c->will_pending = false;
    }
    conn_close(c, "client disconnected");
}

/* log_type debug: every packet received, in Mosquitto's words. */
static void log_received(const struct conn *c, const struct mqtt_packet *p) {
    const char *id = c->s ? c->s->client_id : NULL, *who = id ? id : c->si.peer;
    if (p->type == MQTT_PUBLISH)
        log_client(LOG_DEBUG, id, NULL, c->si.peer,
                   "Received PUBLISH from %s (d%d, q%d, r%d, m%u, '%.*s', ... (%u bytes))", who,
                   p->publish.dup, p->publish.qos, p->publish.retain, p->packet_id,
                   (int)p->publish.topic.len, (const char *)p->publish.topic.p,
                   p->publish.payload.len);
    else if (p->type >= MQTT_PUBACK && p->type <= MQTT_PUBCOMP)
        log_client(LOG_DEBUG, id, NULL, c->si.peer, "Received %s from %s (Mid: %u, RC:%u)",
                   mqtt_type_name(p->type), who, p->packet_id, p->reason);
    else
        log_client(LOG_DEBUG, id, NULL, c->si.peer, "Received %s from %s", mqtt_type_name(p->type),
                   who);
}

void proto_packet(struct conn *c, struct mqtt_packet *p, const uint8_t *raw, size_t rawlen) {
    (void)raw;
    (void)rawlen;
    if (log_enabled(LOG_DEBUG))
        log_received(c, p);
    if (p->type == MQTT_CONNECT) {
        handle_connect(c, p);
        return;
    }
    if (c->state != CS_CONNECTED) {
        proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "first packet is not CONNECT"); /* MQTT-3.1.0-1 */
        return;
    }
    switch (p->type) {
    case MQTT_PUBLISH:
        handle_publish(c, p);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        session_puback(c->s, p->packet_id, p->type, p->reason);
        break;
    case MQTT_PUBREL:
        handle_pubrel(c, p);
        break;
    case MQTT_SUBSCRIBE:
        handle_subscribe(c, p);
        break;
    case MQTT_UNSUBSCRIBE:
        handle_unsubscribe(c, p);
        break;
    case MQTT_PINGREQ: {
        struct mqtt_packet r = {.type = MQTT_PINGRESP};
        conn_send(c, &r); /* MQTT-3.12.4-1 */
        break;
    }
    case MQTT_DISCONNECT:
        handle_disconnect(c, p);
        break;
    case MQTT_AUTH:
        /* No authentication method was agreed in CONNECT. */
        proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "AUTH without an authentication method");
        break;
    default:
        proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "unexpected packet");
        break;
    }
}
