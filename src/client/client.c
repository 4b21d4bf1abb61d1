/*
 * hato client library: connection state machine, queues, packet handling.
 * See include/hato/client.h for the interface and docs/internals/client.md
 * for the design. TLS setup lives in tls.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"
#include "transport/tls.h"
#include "transport/ws.h"

#define READ_CHUNK (16 * 1024)
#define DEFAULT_INFLIGHT 20

static _Thread_local char config_error[256];

const char *hc_config_error(void) {
    return config_error;
}

void hc__config_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(config_error, sizeof config_error, fmt, ap);
    va_end(ap);
}

uint64_t hc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hc__set_error(struct hc_client *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* ---- buffers ----------------------------------------------------------- */

static int buf_reserve(struct hc_buf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return 0;
    }
    size_t n = b->cap ? b->cap : 4096;
    while (n < b->len + more)
        n *= 2;
    uint8_t *p = realloc(b->p, n);
    if (!p)
        return -1;
    b->p = p;
    b->cap = n;
    return 0;
}

static void buf_reset(struct hc_buf *b) {
    b->off = b->len = 0;
}

/* ---- small helpers ----------------------------------------------------- */

static char *dupstr(const char *s) {
    return s ? strdup(s) : NULL;
}

static void notify_packet(struct hc_client *c, bool sent, const uint8_t *bytes, size_t len) {
    if (!c->cb.on_packet)
        return;
    struct mqtt_packet p;
    struct mqtt_frame f;
    if (mqtt_frame_parse(bytes, len, 0, &f, NULL) != MQTT_OK || f.total != len)
        return;
    uint8_t ver = f.type == MQTT_CONNECT ? 0 : c->version;
    if (mqtt_decode(bytes, len, ver, sent, &p, NULL) == MQTT_OK)
        c->cb.on_packet(c, c->ud, sent, &p);
}

/* Append encoded bytes to the output buffer. */
static int out_bytes(struct hc_client *c, const uint8_t *bytes, size_t len, uint64_t now) {
    if (buf_reserve(&c->out, len) < 0)
        return HC_ERR_NOMEM;
    memcpy(c->out.p + c->out.len, bytes, len);
    c->out.len += len;
    c->last_send = now;
    notify_packet(c, true, bytes, len);
    return HC_OK;
}

/* Encode packet p straight into the output buffer. */
static int out_packet(struct hc_client *c, const struct mqtt_packet *p, uint64_t now) {
    size_t n = mqtt_encode(NULL, 0, c->version, p);
    if (!n)
        return HC_ERR_INVAL;
    if (buf_reserve(&c->out, n) < 0)
        return HC_ERR_NOMEM;
    mqtt_encode(c->out.p + c->out.len, n, c->version, p);
    c->out.len += n;
    c->last_send = now;
    notify_packet(c, true, c->out.p + c->out.len - n, n);
    return HC_OK;
}

static int out_ack(struct hc_client *c, uint8_t type, uint16_t pid, uint64_t now) {
    struct mqtt_packet p = {.type = type, .packet_id = pid};
    if (type == MQTT_PUBREL)
        p.flags = 2;
    return out_packet(c, &p, now);
}

static bool mid_in_use(const struct hc_client *c, uint16_t m) {
    for (const struct hc_qmsg *q = c->q_head; q; q = q->next)
        if (q->mid == m && q->qos)
            return true;
    return false;
}

/*
 * Next free packet id. Ids are handed out in increasing order and the
 * publish list is in that order too, so the candidate last_mid + 1 can only
 * be taken when the oldest QoS 1/2 entry has it (the ids wrapped all the
 * way round): O(1) normally, a scan only then.
 */
static uint16_t next_mid(struct hc_client *c) {
    for (int tries = 0; tries < 65536; tries++) {
        uint16_t m = ++c->last_mid;
        if (!m)
            m = c->last_mid = 1;
        const struct hc_qmsg *oldest = c->q_head;
        while (oldest && !oldest->qos)
            oldest = oldest->next;
        if (!oldest || (oldest->mid != m && !c->mids_wrapped))
            return m;
        if (!mid_in_use(c, m))
            return m;
        c->mids_wrapped = true; /* slow path from now on */
    }
    return 0;
}

/* ---- life cycle -------------------------------------------------------- */

static int build_connect(struct hc_client *c, const struct hc_config *cfg) {
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.connect.version = c->version;
    p.connect.clean = cfg->clean;
    p.connect.keep_alive = cfg->keepalive;
    p.connect.bridge = cfg->try_private && c->version != MQTT_V5;
    const char *id = cfg->client_id ? cfg->client_id : "";
    p.connect.client_id = (struct mqtt_str){(const uint8_t *)id, (uint32_t)strlen(id)};
    if (cfg->will_topic) {
        p.connect.will = true;
        p.connect.will_qos = cfg->will_qos;
        p.connect.will_retain = cfg->will_retain;
        p.connect.will_topic =
            (struct mqtt_str){(const uint8_t *)cfg->will_topic, (uint32_t)strlen(cfg->will_topic)};
        p.connect.will_payload =
            (struct mqtt_str){cfg->will_payload, (uint32_t)cfg->will_payload_len};
        if (cfg->will_props && c->version == MQTT_V5)
            p.connect.will_props = *cfg->will_props;
    }
    if (cfg->username) {
        p.connect.has_username = true;
        p.connect.username =
            (struct mqtt_str){(const uint8_t *)cfg->username, (uint32_t)strlen(cfg->username)};
    }
    if (cfg->password) {
        p.connect.has_password = true;
        p.connect.password = (struct mqtt_str){cfg->password, (uint32_t)cfg->password_len};
    }
    if (cfg->connect_props && c->version == MQTT_V5)
        p.props = *cfg->connect_props;
    if (cfg->receive_maximum && c->version == MQTT_V5) {
        p.props.receive_maximum = cfg->receive_maximum;
        p.props.present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
    }
    size_t n = mqtt_encode(NULL, 0, c->version, &p);
    if (!n) {
        hc__config_fail("CONNECT cannot be encoded (a field over 65535 bytes or a bad QoS)");
        return HC_ERR_INVAL;
    }
    c->connect_pkt = malloc(n);
    if (!c->connect_pkt)
        return HC_ERR_NOMEM;
    c->connect_len = mqtt_encode(c->connect_pkt, n, c->version, &p);
    /* Our own CONNECT must pass the broker-side checks (UTF-8, topic rules). */
    struct mqtt_packet chk;
    uint8_t reason = 0;
    if (mqtt_decode(c->connect_pkt, c->connect_len, 0, true, &chk, &reason) != MQTT_OK) {
        if (reason == MQTT_RC_CLIENT_ID_NOT_VALID)
            hc__config_fail("an empty client id needs a clean session in this MQTT version");
        else if (reason == MQTT_RC_TOPIC_NAME_INVALID)
            hc__config_fail("invalid will topic");
        else
            hc__config_fail("invalid connection settings: %s", mqtt_reason_text(reason));
        return HC_ERR_INVAL;
    }
    return HC_OK;
}

/* The TLS context from the settings (transport/tls.c builds it): the option
 * checks that are about flags stay here. */
static int tls_setup(struct hc_client *c, const struct hc_config *cfg) {
    if (cfg->ssl_ctx) {
        c->tls_ctx = tls_client_ctx_wrap(cfg->ssl_ctx);
        return c->tls_ctx ? HC_OK : HC_ERR_NOMEM;
    }
    unsigned char psk[256];
    size_t psk_len = 0;
    if (cfg->psk_hex) {
        ssize_t n = tls_hex_key(cfg->psk_hex, strlen(cfg->psk_hex), psk, sizeof psk);
        if (n == -1) {
            hc__config_fail("--psk: expected an even number of hex digits (at most %zu)",
                            sizeof psk * 2);
            return HC_ERR_INVAL;
        }
        if (n < 0) {
            hc__config_fail("--psk: '%s' is not hexadecimal", cfg->psk_hex);
            return HC_ERR_INVAL;
        }
        psk_len = (size_t)n;
        if (!cfg->psk_identity) {
            hc__config_fail("--psk needs --psk-identity");
            return HC_ERR_INVAL;
        }
    }
    if (cfg->tls_version && strcmp(cfg->tls_version, "tlsv1.3") &&
        strcmp(cfg->tls_version, "tlsv1.2") && strcmp(cfg->tls_version, "tlsv1.1")) {
        hc__config_fail("--tls-version: expected tlsv1.3, tlsv1.2 or tlsv1.1, not '%s'",
                        cfg->tls_version);
        return HC_ERR_INVAL;
    }
    if (!cfg->certfile != !cfg->keyfile) {
        hc__config_fail("--cert and --key go together");
        return HC_ERR_INVAL;
    }
    if (cfg->alpn && (!cfg->alpn[0] || strlen(cfg->alpn) > 255)) {
        hc__config_fail("--tls-alpn: 1 to 255 characters");
        return HC_ERR_INVAL;
    }
    struct tls_client_opts o = {
        .cafile = cfg->cafile,
        .capath = cfg->capath,
        .use_os_certs = cfg->tls_use_os_certs,
        .certfile = cfg->certfile,
        .keyfile = cfg->keyfile,
        .tls_version = cfg->tls_version,
        .ciphers = cfg->ciphers,
        .alpn = cfg->alpn,
        .psk_identity = cfg->psk_hex ? cfg->psk_identity : NULL,
        .psk = psk,
        .psk_len = psk_len,
    };
    char err[300];
    c->tls_ctx = tls_client_ctx_new(&o, err, sizeof err);
    memset(psk, 0, sizeof psk);
    if (!c->tls_ctx) {
        hc__config_fail("%s", err);
        return HC_ERR_TLS;
    }
    return HC_OK;
}

struct hc_client *hc_new(const struct hc_config *cfg, const struct hc_callbacks *cb, void *ud,
                         int *err) {
    int e = HC_ERR_NOMEM;
    config_error[0] = 0;
    struct hc_client *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->fd = -1;
    if (cb)
        c->cb = *cb;
    c->ud = ud;
    c->version = cfg->version ? cfg->version : MQTT_V311;
    if (c->version != MQTT_V31 && c->version != MQTT_V311 && c->version != MQTT_V5) {
        hc__config_fail("unknown MQTT version %u", c->version);
        e = HC_ERR_INVAL;
        goto fail;
    }
    if (cfg->will_qos > 2) {
        hc__config_fail("will QoS must be 0, 1 or 2");
        e = HC_ERR_INVAL;
        goto fail;
    }
    c->tls = cfg->tls || cfg->cafile || cfg->capath || cfg->psk_hex || cfg->tls_use_os_certs ||
             cfg->ssl_ctx;
    c->host = dupstr(cfg->host ? cfg->host : "localhost");
    c->port = cfg->port ? cfg->port : (c->tls ? 8883 : 1883);
    c->unix_path = dupstr(cfg->unix_path);
    c->bind_address = dupstr(cfg->bind_address);
    c->client_id = dupstr(cfg->client_id ? cfg->client_id : "");
    c->cfg_id_empty = !cfg->client_id || !cfg->client_id[0];
    if (!c->host || !c->client_id || (cfg->unix_path && !c->unix_path) ||
        (cfg->bind_address && !c->bind_address))
        goto fail;
    c->nodelay = cfg->nodelay;
    c->keepalive = cfg->keepalive;
    c->max_inflight = cfg->max_inflight ? cfg->max_inflight : DEFAULT_INFLIGHT;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = c->keepalive ? c->keepalive * 1500u : 30000u;
    c->insecure = cfg->insecure;
    c->manual_ack = cfg->manual_ack;
    if (cfg->connect_props && c->version == MQTT_V5 &&
        (cfg->connect_props->present & MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)))
        c->max_in_packet = cfg->connect_props->maximum_packet_size;
    if ((e = build_connect(c, cfg)) != HC_OK)
        goto fail;
    if (c->tls && (e = tls_setup(c, cfg)) != HC_OK)
        goto fail;
    if (cfg->ws_path && !HATO_WITH_WEBSOCKETS) {
        hc__config_fail("hato was built without WebSockets (WITH_WEBSOCKETS=OFF)");
        e = HC_ERR_INVAL;
        goto fail;
    }
    if (cfg->ws_path && !(c->ws_path = dupstr(cfg->ws_path)))
        goto fail;
    if (err)
        *err = HC_OK;
    return c;
fail:
    if (e == HC_ERR_NOMEM && !config_error[0])
        hc__config_fail("out of memory");
    hc_free(c);
    if (err)
        *err = e;
    return NULL;
}

static void free_queue(struct hc_client *c) {
    struct hc_qmsg *q = c->q_head;
    while (q) {
        struct hc_qmsg *n = q->next;
        free(q);
        q = n;
    }
    c->q_head = c->q_tail = NULL;
    struct hc_qmsg *k = c->ctrl_head;
    while (k) {
        struct hc_qmsg *n = k->next;
        free(k);
        k = n;
    }
    c->ctrl_head = c->ctrl_tail = NULL;
}

static void close_socket(struct hc_client *c) {
    if (c->st)
        stream_free(c->st); /* closes the socket */
    else if (c->fd >= 0)
        close(c->fd);
    c->st = NULL;
    stream_info_clear(&c->si);
    c->fd = -1;
    if (c->ai_list) {
        freeaddrinfo(c->ai_list);
        c->ai_list = c->ai_next = NULL;
    }
    buf_reset(&c->in);
    buf_reset(&c->out);
    c->state = HC_ST_IDLE;
    c->ping_outstanding = false;
    c->inflight = 0;
}

void hc_free(struct hc_client *c) {
    if (!c)
        return;
    close_socket(c);
    tls_ctx_unref(c->tls_ctx);
    free(c->ws_path);
    free_queue(c);
    free(c->in.p);
    free(c->out.p);
    free(c->rx_qos2);
    free(c->held);
    free(c->connect_pkt);
    free(c->host);
    free(c->unix_path);
    free(c->bind_address);
    free(c->client_id);
    free(c->msg_topic);
    free(c);
}

/* Close after an error; report it. Returns err. */
int hc__fail(struct hc_client *c, int err) {
    if (c->state == HC_ST_IDLE && c->fd < 0)
        return err;
    c->fail_err = err;
    close_socket(c);
    if (c->cb.on_disconnect)
        c->cb.on_disconnect(c, c->ud, err);
    return err;
}

/* ---- connecting -------------------------------------------------------- */

static int set_socket_options(struct hc_client *c, int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (c->nodelay && !c->unix_path) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

static int bind_local(struct hc_client *c, int fd, int family) {
    struct addrinfo hints = {
        .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(c->bind_address, NULL, &hints, &res);
    if (rc != 0) {
        hc__set_error(c, "cannot resolve bind address %s: %s", c->bind_address, gai_strerror(rc));
        return -1;
    }
    int ok = bind(fd, res->ai_addr, res->ai_addrlen);
    if (ok < 0)
        hc__set_error(c, "cannot bind to %s: %s", c->bind_address, strerror(errno));
    freeaddrinfo(res);
    return ok;
}

static int start_mqtt(struct hc_client *c, uint64_t now);

/* Try the next resolved address; HC_OK when a connect is under way or done. */
static int try_next_address(struct hc_client *c, uint64_t now, int last_errno) {
    while (c->ai_next) {
        struct addrinfo *ai = c->ai_next;
        c->ai_next = ai->ai_next;
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (set_socket_options(c, fd) < 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        if (c->bind_address && bind_local(c, fd, ai->ai_family) < 0) {
            close(fd);
            if (!c->ai_next) {
                freeaddrinfo(c->ai_list);
                c->ai_list = c->ai_next = NULL;
                return HC_ERR_CONNECT;
            }
            continue;
        }
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return start_mqtt(c, now);
        if (errno == EINPROGRESS) {
            c->state = HC_ST_CONNECTING;
            return HC_OK;
        }
        last_errno = errno;
        close(fd);
        c->fd = -1;
    }
    if (c->ai_list) {
        freeaddrinfo(c->ai_list);
        c->ai_list = c->ai_next = NULL;
    }
    if (c->unix_path)
        hc__set_error(c, "%s: %s", c->unix_path, strerror(last_errno));
    else
        hc__set_error(c, "%s port %u: %s", c->host, c->port, strerror(last_errno));
    return HC_ERR_CONNECT;
}

int hc_connect(struct hc_client *c, uint64_t now) {
    if (c->state != HC_ST_IDLE || c->fd >= 0)
        return HC_ERR_STATE;
    c->err[0] = 0;
    c->disconnecting = false;
    c->connect_deadline = now + c->connect_timeout_ms;
    buf_reset(&c->in);
    buf_reset(&c->out);
    if (c->unix_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(c->unix_path) >= sizeof sa.sun_path) {
            hc__set_error(c, "%s: socket path too long", c->unix_path);
            return HC_ERR_INVAL;
        }
        strcpy(sa.sun_path, c->unix_path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || set_socket_options(c, fd) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            hc__set_error(c, "%s: %s", c->unix_path, strerror(e));
            return HC_ERR_CONNECT;
        }
        c->fd = fd;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return start_mqtt(c, now);
        if (errno == EINPROGRESS || errno == EAGAIN) {
            c->state = HC_ST_CONNECTING;
            return HC_OK;
        }
        int e = errno;
        close(fd);
        c->fd = -1;
        hc__set_error(c, "%s: %s", c->unix_path, strerror(e));
        return HC_ERR_CONNECT;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", c->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int rc = getaddrinfo(c->host, port, &hints, &c->ai_list);
    if (rc != 0) {
        c->ai_list = NULL;
        hc__set_error(c, "cannot resolve %s: %s", c->host, gai_strerror(rc));
        return HC_ERR_RESOLVE;
    }
    c->ai_next = c->ai_list;
    return try_next_address(c, now, ECONNREFUSED);
}

int hc_connect_fd(struct hc_client *c, int fd, uint64_t now) {
    if (c->state != HC_ST_IDLE || c->fd >= 0 || fd < 0)
        return HC_ERR_STATE;
    c->err[0] = 0;
    c->disconnecting = false;
    c->connect_deadline = now + c->connect_timeout_ms;
    buf_reset(&c->in);
    buf_reset(&c->out);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        hc__set_error(c, "socket: %s", strerror(errno));
        close(fd);
        return HC_ERR_IO;
    }
    c->fd = fd;
    return start_mqtt(c, now);
}

/* The layers over the connected socket: TLS, then WebSocket. The stack
 * owns the descriptor from here on. */
static int build_stack(struct hc_client *c) {
    memset(&c->si, 0, sizeof c->si);
    struct stream *st = tcp_stream_new(c->fd, &c->si);
    if (!st)
        return HC_ERR_NOMEM;
    c->st = st;
    if (c->tls) {
        st = tls_stream_new(c->st, c->tls_ctx, c->unix_path ? NULL : c->host, c->insecure);
        if (!st)
            return HC_ERR_NOMEM;
        c->st = st;
    }
    if (c->ws_path) {
        char host[300];
        bool v6 = strchr(c->host, ':') != NULL;
        snprintf(host, sizeof host, "%s%s%s:%u", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
        st = ws_stream_new_client(c->st, host, c->ws_path,
                                  c->version == MQTT_V31 ? "mqttv3.1" : "mqtt");
        if (!st)
            return HC_ERR_NOMEM;
        c->st = st;
    }
    return HC_OK;
}

/* The stream failed: its reason, and the kind of error. */
static int stream_error(struct hc_client *c, int err, bool eof) {
    struct stream *tls = c->st ? stream_find(c->st, &tls_stream_ops) : NULL;
    if (tls && !c->si.tls_done) {
        hc__set_error(c, "%s", c->si.why ? c->si.why : "TLS handshake failed");
        return HC_ERR_TLS;
    }
    if (c->si.why && (!eof || tls)) {
        hc__set_error(c, "%s", c->si.why);
        return c->ws_path && !c->si.upgraded ? HC_ERR_CONNECT
               : tls && (err == EPROTO)      ? HC_ERR_TLS
                                             : HC_ERR_CLOSED;
    }
    if (eof) {
        hc__set_error(c, c->state == HC_ST_WAIT_CONNACK
                             ? "the broker closed the connection before CONNACK"
                             : "the broker closed the connection");
        return HC_ERR_CLOSED;
    }
    hc__set_error(c, "%s: %s", c->state == HC_ST_WAIT_CONNACK ? "read" : "write", strerror(err));
    return err == EPIPE || err == ECONNRESET ? HC_ERR_CLOSED : HC_ERR_IO;
}

/* TCP (or Unix) connect finished: build the stream and send CONNECT. */
static int start_mqtt(struct hc_client *c, uint64_t now) {
    if (c->ai_list) {
        freeaddrinfo(c->ai_list);
        c->ai_list = c->ai_next = NULL;
    }
    int rc = build_stack(c);
    if (rc != HC_OK) {
        close_socket(c);
        return rc;
    }
    /* The CONNECT is queued at once: TLS and the WebSocket upgrade run
     * inside the stream's writes and reads and send it when they are done. */
    return hc__send_connect(c, now);
}

int hc__send_connect(struct hc_client *c, uint64_t now) {
    c->state = HC_ST_WAIT_CONNACK;
    int rc = out_bytes(c, c->connect_pkt, c->connect_len, now);
    if (rc != HC_OK)
        return rc;
    return hc__flush(c, now);
}

static int check_connect_done(struct hc_client *c, uint64_t now) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr == 0)
        return start_mqtt(c, now);
    close(c->fd);
    c->fd = -1;
    if (c->ai_list) {
        int rc = try_next_address(c, now, soerr);
        if (rc == HC_OK)
            return HC_OK;
        return hc__fail(c, rc);
    }
    if (c->unix_path)
        hc__set_error(c, "%s: %s", c->unix_path, strerror(soerr));
    else
        hc__set_error(c, "%s port %u: %s", c->host, c->port, strerror(soerr));
    c->state = HC_ST_CONNECTING; /* so hc__fail reports it */
    return hc__fail(c, HC_ERR_CONNECT);
}

/* ---- output ------------------------------------------------------------ */

static void finish_disconnect(struct hc_client *c) {
    if (c->st)
        stream_shutdown(c->st); /* TLS close_notify, WebSocket close: no waiting */
    close_socket(c);
    if (c->cb.on_disconnect)
        c->cb.on_disconnect(c, c->ud, HC_OK);
}

int hc__flush(struct hc_client *c, uint64_t now) {
    (void)now;
    if (!c->st)
        return HC_OK;
    while (c->out.off < c->out.len) {
        struct iovec iov = {.iov_base = c->out.p + c->out.off, .iov_len = c->out.len - c->out.off};
        ssize_t n = stream_writev(c->st, &iov, 1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return hc__fail(c, stream_error(c, errno, false));
        }
        if (n == 0)
            break;
        c->out.off += (size_t)n;
    }
    /* What the layers keep (TLS records, WebSocket frames). */
    int kept = stream_flush(c->st);
    if (kept < 0)
        return hc__fail(c, stream_error(c, errno, false));
    if (c->out.off == c->out.len) {
        buf_reset(&c->out);
        if (c->state == HC_ST_DISCONNECTING && !kept)
            finish_disconnect(c);
    }
    return HC_OK;
}

/* Move queued messages into the output buffer as the window allows. */
static int pump(struct hc_client *c, uint64_t now) {
    if (c->state != HC_ST_CONNECTED)
        return HC_OK;
    struct hc_qmsg **pp = &c->q_head;
    struct hc_qmsg *prev = NULL;
    while (*pp) {
        struct hc_qmsg *q = *pp;
        if (q->state != HC_Q_QUEUED) {
            prev = q;
            pp = &q->next;
            continue;
        }
        if (q->qos && c->inflight >= c->window)
            break; /* keep order: nothing overtakes a waiting QoS 1/2 message */
        int rc = out_bytes(c, q->data, q->len, now);
        if (rc != HC_OK)
            return rc;
        if (q->qos) {
            q->state = HC_Q_SENT;
            c->inflight++;
            prev = q;
            pp = &q->next;
        } else {
            uint16_t mid = q->mid;
            *pp = q->next;
            if (c->q_tail == q)
                c->q_tail = prev;
            free(q);
            c->queued--;
            if (c->cb.on_publish)
                c->cb.on_publish(c, c->ud, mid, 0);
            if (c->state != HC_ST_CONNECTED)
                return HC_OK;
        }
    }
    return HC_OK;
}

/* ---- public operations ------------------------------------------------- */

static struct hc_qmsg *qmsg_new(size_t len) {
    struct hc_qmsg *q = calloc(1, sizeof *q + len);
    if (q)
        q->len = len;
    return q;
}

int hc_publish(struct hc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos,
               bool retain, const struct mqtt_props *props, uint16_t *mid) {
    if (qos > 2 || !topic || !mqtt_topic_name_valid((const uint8_t *)topic, strlen(topic)) ||
        len > MQTT_MAX_REMAINING_LENGTH)
        return HC_ERR_INVAL;
    if (c->disconnecting)
        return HC_ERR_STATE;
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.publish.topic = (struct mqtt_str){(const uint8_t *)topic, (uint32_t)strlen(topic)};
    p.publish.qos = qos;
    p.publish.retain = retain;
    p.publish.payload = (struct mqtt_str){payload, (uint32_t)len};
    p.flags = (uint8_t)((qos << 1) | (retain ? 1 : 0));
    if (props && c->version == MQTT_V5)
        p.props = *props;
    uint16_t id;
    if (qos) {
        id = next_mid(c);
        if (!id)
            return HC_ERR_STATE; /* 65535 messages unacknowledged */
        p.packet_id = id;
    } else {
        id = ++c->last_qos0_mid;
        if (!id)
            id = c->last_qos0_mid = 1;
    }
    size_t n = mqtt_encode(NULL, 0, c->version, &p);
    if (!n)
        return HC_ERR_INVAL;
    uint64_t now = hc_now_ms();
    if (!qos && c->state == HC_ST_CONNECTED && !c->queued) {
        if (buf_reserve(&c->out, n) < 0)
            return HC_ERR_NOMEM;
        mqtt_encode(c->out.p + c->out.len, n, c->version, &p);
        c->out.len += n;
        c->last_send = now;
        notify_packet(c, true, c->out.p + c->out.len - n, n);
        if (mid)
            *mid = id;
        if (c->cb.on_publish)
            c->cb.on_publish(c, c->ud, id, 0);
        return HC_OK;
    }
    struct hc_qmsg *q = qmsg_new(n);
    if (!q)
        return HC_ERR_NOMEM;
    mqtt_encode(q->data, n, c->version, &p);
    q->mid = id;
    q->qos = qos;
    q->state = HC_Q_QUEUED;
    if (c->q_tail)
        c->q_tail->next = q;
    else
        c->q_head = q;
    c->q_tail = q;
    c->queued++;
    if (mid)
        *mid = id;
    return pump(c, now);
}

static int send_or_hold(struct hc_client *c, const struct mqtt_packet *p) {
    size_t n = mqtt_encode(NULL, 0, c->version, p);
    if (!n)
        return HC_ERR_INVAL;
    if (c->state == HC_ST_CONNECTED)
        return out_packet(c, p, hc_now_ms());
    struct hc_qmsg *q = qmsg_new(n);
    if (!q)
        return HC_ERR_NOMEM;
    mqtt_encode(q->data, n, c->version, p);
    if (c->ctrl_tail)
        c->ctrl_tail->next = q;
    else
        c->ctrl_head = q;
    c->ctrl_tail = q;
    return HC_OK;
}

int hc_subscribe(struct hc_client *c, uint32_t count, const struct mqtt_sub_entry *entries,
                 const struct mqtt_props *props, uint16_t *mid) {
    if (!count || c->disconnecting)
        return count ? HC_ERR_STATE : HC_ERR_INVAL;
    for (uint32_t i = 0; i < count; i++)
        if (entries[i].qos > 2 || entries[i].retain_handling > 2 ||
            !mqtt_topic_filter_valid(entries[i].filter.p, entries[i].filter.len))
            return HC_ERR_INVAL;
    struct mqtt_packet p = {.type = MQTT_SUBSCRIBE, .flags = 2};
    p.packet_id = next_mid(c);
    if (!p.packet_id)
        return HC_ERR_STATE;
    p.subscribe.count = count;
    p.subscribe.list = entries;
    if (props && c->version == MQTT_V5)
        p.props = *props;
    int rc = send_or_hold(c, &p);
    if (rc == HC_OK && mid)
        *mid = p.packet_id;
    return rc;
}

int hc_subscribe1(struct hc_client *c, const char *filter, uint8_t qos, uint16_t *mid) {
    struct mqtt_sub_entry e = {.filter = {(const uint8_t *)filter, (uint32_t)strlen(filter)},
                               .qos = qos};
    return hc_subscribe(c, 1, &e, NULL, mid);
}

int hc_unsubscribe(struct hc_client *c, uint32_t count, const char *const *filters,
                   const struct mqtt_props *props, uint16_t *mid) {
    if (!count)
        return HC_ERR_INVAL;
    if (c->disconnecting)
        return HC_ERR_STATE;
    struct mqtt_str *list = calloc(count, sizeof *list);
    if (!list)
        return HC_ERR_NOMEM;
    for (uint32_t i = 0; i < count; i++) {
        list[i] = (struct mqtt_str){(const uint8_t *)filters[i], (uint32_t)strlen(filters[i])};
        if (!mqtt_topic_filter_valid(list[i].p, list[i].len)) {
            free(list);
            return HC_ERR_INVAL;
        }
    }
    struct mqtt_packet p = {.type = MQTT_UNSUBSCRIBE, .flags = 2};
    p.packet_id = next_mid(c);
    p.unsubscribe.count = count;
    p.unsubscribe.list = list;
    if (props && c->version == MQTT_V5)
        p.props = *props;
    int rc = p.packet_id ? send_or_hold(c, &p) : HC_ERR_STATE;
    free(list);
    if (rc == HC_OK && mid)
        *mid = p.packet_id;
    return rc;
}

int hc_disconnect(struct hc_client *c, uint8_t reason, const struct mqtt_props *props) {
    c->disconnecting = true;
    if (c->state == HC_ST_IDLE)
        return HC_ERR_STATE;
    if (c->state != HC_ST_CONNECTED) {
        /* Not connected yet: just give up the attempt. */
        close_socket(c);
        if (c->cb.on_disconnect)
            c->cb.on_disconnect(c, c->ud, HC_OK);
        return HC_OK;
    }
    struct mqtt_packet p = {.type = MQTT_DISCONNECT, .reason = reason};
    if (props && c->version == MQTT_V5)
        p.props = *props;
    int rc = out_packet(c, &p, hc_now_ms());
    if (rc != HC_OK)
        return rc;
    c->state = HC_ST_DISCONNECTING;
    return HC_OK;
}

/* ---- input ------------------------------------------------------------- */

static bool rx_has(struct hc_client *c, uint16_t id, size_t *at) {
    for (size_t i = 0; i < c->rx_count; i++)
        if (c->rx_qos2[i] == id) {
            if (at)
                *at = i;
            return true;
        }
    return false;
}

static int rx_add(struct hc_client *c, uint16_t id) {
    if (c->rx_count == c->rx_cap) {
        size_t n = c->rx_cap ? c->rx_cap * 2 : 8;
        uint16_t *p = realloc(c->rx_qos2, n * sizeof *p);
        if (!p)
            return HC_ERR_NOMEM;
        c->rx_qos2 = p;
        c->rx_cap = n;
    }
    c->rx_qos2[c->rx_count++] = id;
    return HC_OK;
}

/* manual_ack: the delivered QoS 1/2 messages waiting for hc_ack. */
static bool held_has(const struct hc_client *c, uint16_t id, size_t *at) {
    for (size_t i = 0; i < c->held_count; i++)
        if (c->held[i].id == id) {
            if (at)
                *at = i;
            return true;
        }
    return false;
}

static int held_add(struct hc_client *c, uint16_t id, uint8_t qos) {
    if (c->held_count == c->held_cap) {
        size_t n = c->held_cap ? c->held_cap * 2 : 8;
        struct hc_held *h = realloc(c->held, n * sizeof *h);
        if (!h)
            return HC_ERR_NOMEM;
        c->held = h;
        c->held_cap = n;
    }
    c->held[c->held_count++] = (struct hc_held){.id = id, .qos = qos};
    return HC_OK;
}

static int deliver(struct hc_client *c, const struct mqtt_packet *p) {
    if (!c->cb.on_message)
        return HC_OK;
    size_t tl = p->publish.topic.len;
    if (tl + 1 > c->msg_topic_cap) {
        char *t = realloc(c->msg_topic, tl + 1);
        if (!t)
            return HC_ERR_NOMEM;
        c->msg_topic = t;
        c->msg_topic_cap = tl + 1;
    }
    memcpy(c->msg_topic, p->publish.topic.p, tl);
    c->msg_topic[tl] = 0;
    struct hc_message m = {
        .topic = c->msg_topic,
        .topic_len = tl,
        .payload = p->publish.payload.p,
        .payload_len = p->publish.payload.len,
        .mid = p->packet_id,
        .qos = p->publish.qos,
        .retain = p->publish.retain,
        .dup = p->publish.dup,
        .props = &p->props,
    };
    c->cb.on_message(c, c->ud, &m);
    return HC_OK;
}

/* Find the in-flight message with packet id `id`; *prevp gets its predecessor. */
static struct hc_qmsg *find_inflight(struct hc_client *c, uint16_t id, struct hc_qmsg **prevp) {
    struct hc_qmsg *prev = NULL;
    for (struct hc_qmsg *q = c->q_head; q; prev = q, q = q->next) {
        if (q->state == HC_Q_QUEUED)
            break;
        if (q->mid == id) {
            *prevp = prev;
            return q;
        }
    }
    return NULL;
}

static void complete(struct hc_client *c, struct hc_qmsg *q, struct hc_qmsg *prev, uint8_t reason) {
    if (prev)
        prev->next = q->next;
    else
        c->q_head = q->next;
    if (c->q_tail == q)
        c->q_tail = prev;
    uint16_t mid = q->mid;
    free(q);
    c->inflight--;
    c->queued--;
    if (c->cb.on_publish)
        c->cb.on_publish(c, c->ud, mid, reason);
}

/* MQTT 5: remember the client id the broker assigned (MQTT-3.2.2-16). */
static void take_assigned_id(struct hc_client *c, const struct mqtt_packet *p) {
    const struct mqtt_props *pr = &p->props;
    if (c->version != MQTT_V5 || p->reason != 0 || !c->cfg_id_empty ||
        !(pr->present & MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID)))
        return;
    char *id = malloc(pr->assigned_client_id.len + 1);
    if (!id)
        return;
    memcpy(id, pr->assigned_client_id.p, pr->assigned_client_id.len);
    id[pr->assigned_client_id.len] = 0;
    free(c->client_id);
    c->client_id = id;
}

static int on_connack(struct hc_client *c, const struct mqtt_packet *p, uint64_t now) {
    if (c->state != HC_ST_WAIT_CONNACK) {
        hc__set_error(c, "unexpected CONNACK");
        return hc__fail(c, HC_ERR_PROTOCOL);
    }
    c->connack_code = p->reason;
    if (p->reason != 0) {
        hc__set_error(c, "%s", hc_connack_text(c->version, p->reason));
        if (c->cb.on_connect)
            c->cb.on_connect(c, c->ud, p->reason, false, &p->props);
        return hc__fail(c, HC_ERR_REFUSED);
    }
    c->state = HC_ST_CONNECTED;
    c->window = c->max_inflight;
    if (!p->connack.session_present) {
        /* The broker starts afresh (MQTT-3.1.2-6): incoming ids of the old
         * session mean nothing now and may be reused. */
        c->rx_count = 0;
        c->held_count = 0;
    }
    if (c->version == MQTT_V5) {
        const struct mqtt_props *pr = &p->props;
        if ((pr->present & MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM)) &&
            pr->receive_maximum < c->window)
            c->window = pr->receive_maximum;
        if (pr->present & MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE))
            c->keepalive = pr->server_keep_alive;
    }
    /* MQTT-4.4.0-1: re-send unacknowledged PUBLISH and PUBREL first. Without
     * a session on the broker they are simply sent again, as new. */
    c->inflight = 0;
    for (struct hc_qmsg *q = c->q_head; q && q->state != HC_Q_QUEUED; q = q->next) {
        int rc;
        if (q->state == HC_Q_SENT) {
            /* DUP only when the broker may have seen it (MQTT-3.3.1-1). */
            if (p->connack.session_present)
                q->data[0] |= 0x08;
            else
                q->data[0] &= (uint8_t)~0x08;
            rc = out_bytes(c, q->data, q->len, now);
        } else {
            rc = out_ack(c, MQTT_PUBREL, q->mid, now);
        }
        if (rc != HC_OK)
            return hc__fail(c, rc);
        c->inflight++;
    }
    while (c->ctrl_head) {
        struct hc_qmsg *k = c->ctrl_head;
        int rc = out_bytes(c, k->data, k->len, now);
        if (rc != HC_OK)
            return hc__fail(c, rc);
        c->ctrl_head = k->next;
        free(k);
    }
    c->ctrl_tail = NULL;
    int rc = pump(c, now);
    if (rc != HC_OK)
        return hc__fail(c, rc);
    if (c->cb.on_connect)
        c->cb.on_connect(c, c->ud, 0, p->connack.session_present, &p->props);
    return HC_OK;
}

/*
 * manual_ack: a QoS 1/2 PUBLISH is delivered and held until hc_ack. A copy
 * re-sent while held is not delivered again; a QoS 2 copy re-sent after
 * hc_ack (PUBREC lost) gets PUBREC again (MQTT-4.3.3, method B).
 */
static int publish_held(struct hc_client *c, const struct mqtt_packet *p, uint64_t now) {
    uint16_t id = p->packet_id;
    if (held_has(c, id, NULL))
        return HC_OK;
    if (p->publish.qos == 2 && rx_has(c, id, NULL))
        return out_ack(c, MQTT_PUBREC, id, now);
    int rc = held_add(c, id, p->publish.qos);
    if (rc == HC_OK && p->publish.qos == 2 && (rc = rx_add(c, id)) != HC_OK)
        c->held_count--;
    if (rc == HC_OK)
        rc = deliver(c, p);
    return rc;
}

int hc_ack(struct hc_client *c, uint16_t packet_id) {
    size_t at;
    if (c->state != HC_ST_CONNECTED || !held_has(c, packet_id, &at))
        return HC_ERR_STATE;
    uint8_t qos = c->held[at].qos;
    uint64_t now = hc_now_ms();
    int rc = out_ack(c, qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, packet_id, now);
    if (rc != HC_OK)
        return rc;
    c->held[at] = c->held[--c->held_count];
    return HC_OK;
}

static int handle_packet(struct hc_client *c, const uint8_t *buf, size_t len, uint64_t now) {
    struct mqtt_packet p;
    uint8_t reason = 0;
    if (mqtt_decode(buf, len, c->version, false, &p, &reason) != MQTT_OK) {
        hc__set_error(c, "bad packet from the broker (type %u): %s", buf[0] >> 4,
                      mqtt_reason_text(reason));
        return hc__fail(c, HC_ERR_PROTOCOL);
    }
    if (c->state == HC_ST_DISCONNECTING)
        return HC_OK; /* nothing may follow our DISCONNECT */
    if (p.type == MQTT_CONNACK)
        take_assigned_id(c, &p);
    if (c->cb.on_packet)
        c->cb.on_packet(c, c->ud, false, &p);
    if (p.type != MQTT_CONNACK && c->state == HC_ST_WAIT_CONNACK) {
        hc__set_error(c, "%s before CONNACK", mqtt_type_name(p.type));
        return hc__fail(c, HC_ERR_PROTOCOL);
    }
    struct hc_qmsg *q, *prev = NULL;
    int rc = HC_OK;
    switch (p.type) {
    case MQTT_CONNACK:
        return on_connack(c, &p, now);
    case MQTT_PUBLISH:
        if (!p.publish.topic.len) {
            hc__set_error(c, "PUBLISH with a topic alias we did not allow");
            return hc__fail(c, HC_ERR_PROTOCOL);
        }
        /* Acknowledge first, then deliver (as libmosquitto orders it): a
         * callback that disconnects must not leave the ack unsent. */
        if (p.publish.qos == 0) {
            rc = deliver(c, &p);
        } else if (c->manual_ack) {
            rc = publish_held(c, &p, now);
        } else if (p.publish.qos == 1) {
            rc = out_ack(c, MQTT_PUBACK, p.packet_id, now);
            if (rc == HC_OK)
                rc = deliver(c, &p);
        } else {
            bool dup = rx_has(c, p.packet_id, NULL);
            rc = out_ack(c, MQTT_PUBREC, p.packet_id, now);
            if (rc == HC_OK && !dup) {
                rc = rx_add(c, p.packet_id);
                if (rc == HC_OK)
                    rc = deliver(c, &p);
            }
        }
        break;
    case MQTT_PUBACK:
        q = find_inflight(c, p.packet_id, &prev);
        if (q && q->qos == 1 && q->state == HC_Q_SENT)
            complete(c, q, prev, p.reason);
        break;
    case MQTT_PUBREC:
        q = find_inflight(c, p.packet_id, &prev);
        if (q && q->qos == 2 && q->state == HC_Q_SENT) {
            if (p.reason >= 0x80) {
                complete(c, q, prev, p.reason);
            } else {
                q->state = HC_Q_PUBREL;
                rc = out_ack(c, MQTT_PUBREL, p.packet_id, now);
            }
        } else if (q && q->state == HC_Q_PUBREL) {
            rc = out_ack(c, MQTT_PUBREL, p.packet_id, now);
        } else if (!q && c->version != MQTT_V5) {
            rc = out_ack(c, MQTT_PUBREL, p.packet_id, now);
        }
        break;
    case MQTT_PUBREL: {
        size_t at;
        if (rx_has(c, p.packet_id, &at))
            c->rx_qos2[at] = c->rx_qos2[--c->rx_count];
        if (held_has(c, p.packet_id, &at)) /* PUBREL before our PUBREC: broker's error */
            c->held[at] = c->held[--c->held_count];
        rc = out_ack(c, MQTT_PUBCOMP, p.packet_id, now);
        break;
    }
    case MQTT_PUBCOMP:
        q = find_inflight(c, p.packet_id, &prev);
        if (q && q->qos == 2)
            complete(c, q, prev, p.reason);
        break;
    case MQTT_SUBACK:
        if (c->cb.on_subscribe)
            c->cb.on_subscribe(c, c->ud, p.packet_id, p.ack_list.count, p.ack_list.codes, &p.props);
        break;
    case MQTT_UNSUBACK:
        if (c->cb.on_unsubscribe)
            c->cb.on_unsubscribe(c, c->ud, p.packet_id, p.ack_list.count, p.ack_list.codes,
                                 &p.props);
        break;
    case MQTT_PINGRESP:
        c->ping_outstanding = false;
        break;
    case MQTT_DISCONNECT:
        c->disconnect_reason = p.reason;
        hc__set_error(c, "the broker disconnected: %s", mqtt_reason_text(p.reason));
        return hc__fail(c, HC_ERR_DISCONNECTED);
    default:
        hc__set_error(c, "unexpected %s from the broker", mqtt_type_name(p.type));
        return hc__fail(c, HC_ERR_PROTOCOL);
    }
    if (rc != HC_OK && c->fd >= 0)
        return hc__fail(c, rc);
    if (c->fd >= 0 && c->state == HC_ST_CONNECTED)
        return pump(c, now);
    return HC_OK;
}

/* Decode every whole packet in the input buffer. */
static int parse_input(struct hc_client *c, uint64_t now) {
    while (c->fd >= 0 && c->in.off < c->in.len) {
        struct mqtt_frame f;
        uint8_t reason = 0;
        const uint8_t *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        int r = mqtt_frame_parse(p, avail, c->max_in_packet, &f, &reason);
        if (r == MQTT_AGAIN)
            break;
        if (r != MQTT_OK) {
            hc__set_error(c, "bad packet from the broker: %s", mqtt_reason_text(reason));
            return hc__fail(c, HC_ERR_PROTOCOL);
        }
        if (avail < f.total) {
            if (buf_reserve(&c->in, f.total - avail) < 0)
                return hc__fail(c, HC_ERR_NOMEM);
            break;
        }
        c->in.off += f.total;
        int rc = handle_packet(c, p, f.total, now);
        if (rc != HC_OK)
            return rc;
    }
    if (c->in.off == c->in.len)
        buf_reset(&c->in);
    return HC_OK;
}

int hc_on_readable(struct hc_client *c, uint64_t now) {
    if (c->fd < 0)
        return HC_ERR_STATE;
    if (c->state == HC_ST_CONNECTING)
        return check_connect_done(c, now);
    for (int rounds = 0; rounds < 64; rounds++) {
        if (buf_reserve(&c->in, READ_CHUNK) < 0)
            return hc__fail(c, HC_ERR_NOMEM);
        ssize_t n = stream_read(c->st, c->in.p + c->in.len, c->in.cap - c->in.len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return hc__fail(c, stream_error(c, errno, false));
        }
        if (n == 0)
            return hc__fail(c, stream_error(c, 0, true));
        c->in.len += (size_t)n;
        int rc = parse_input(c, now);
        if (rc != HC_OK || c->fd < 0)
            return rc;
    }
    /* A read may have finished a handshake (the CONNECT can go now) or
     * queued an answer in a layer (a WebSocket pong). */
    return hc__flush(c, now);
}

int hc_on_writable(struct hc_client *c, uint64_t now) {
    if (c->fd < 0)
        return HC_ERR_STATE;
    if (c->state == HC_ST_CONNECTING)
        return check_connect_done(c, now);
    int rc = hc__flush(c, now);
    /* A layer may hold bytes to read: the read rounds ran out, or a flush
     * went on with a TLS read that had to write (a renegotiation). */
    if (rc == HC_OK && c->fd >= 0 && c->st && stream_pending(c->st))
        rc = hc_on_readable(c, now);
    return rc;
}

bool hc_want_write(const struct hc_client *c) {
    if (c->fd < 0)
        return false;
    if (c->state == HC_ST_CONNECTING)
        return true;
    if (!c->st)
        return false;
    /* A layer that waits to read (a TLS handshake, a WebSocket upgrade)
     * cannot take our bytes before that: no write readiness then. */
    unsigned wants = stream_wants(c->st);
    if (wants & STREAM_WANT_WRITE)
        return true;
    /* Bytes a layer holds (decrypted TLS, decoded WebSocket payload) make
     * no POLLIN: ask for write readiness, which the socket has at once, and
     * hc_on_writable reads them. */
    if (stream_pending(c->st))
        return true;
    return c->out.len > c->out.off && !(wants & STREAM_WANT_READ);
}

int hc_tick(struct hc_client *c, uint64_t now) {
    if (c->fd < 0)
        return -1;
    if (c->state != HC_ST_CONNECTED && c->state != HC_ST_DISCONNECTING) {
        if (now >= c->connect_deadline) {
            struct stream *tls = c->st ? stream_find(c->st, &tls_stream_ops) : NULL;
            if (tls && !c->si.tls_done)
                hc__set_error(c, "TLS handshake with %s port %u not finished in %u ms", c->host,
                              c->port, c->connect_timeout_ms);
            else if (c->ws_path && c->st && !c->si.upgraded)
                hc__set_error(c, "WebSocket upgrade with %s port %u not finished in %u ms", c->host,
                              c->port, c->connect_timeout_ms);
            else if (c->state == HC_ST_WAIT_CONNACK)
                hc__set_error(c, "no CONNACK from the broker in %u ms", c->connect_timeout_ms);
            else
                hc__set_error(c, "timed out connecting to %s port %u", c->host, c->port);
            hc__fail(c, HC_ERR_TIMEOUT);
            return -1;
        }
        return (int)(c->connect_deadline - now);
    }
    if (!c->keepalive || c->state != HC_ST_CONNECTED)
        return -1;
    uint64_t ka = (uint64_t)c->keepalive * 1000u;
    if (c->ping_outstanding) {
        if (now >= c->ping_sent + ka) {
            hc__set_error(c, "no PINGRESP from the broker within the keep-alive (%u s)",
                          c->keepalive);
            hc__fail(c, HC_ERR_TIMEOUT);
            return -1;
        }
    } else if (now >= c->last_send + ka) {
        if (out_ack(c, MQTT_PINGREQ, 0, now) != HC_OK) {
            hc__fail(c, HC_ERR_NOMEM);
            return -1;
        }
        c->ping_outstanding = true;
        c->ping_sent = now;
        if (hc__flush(c, now) != HC_OK || c->fd < 0)
            return -1;
    }
    uint64_t next = c->ping_outstanding ? c->ping_sent + ka : c->last_send + ka;
    return next > now ? (int)(next - now) : 0;
}

int hc_loop(struct hc_client *c, int timeout_ms) {
    if (c->fd < 0)
        return HC_ERR_STATE;
    c->fail_err = HC_OK;
    uint64_t now = hc_now_ms();
    int t = hc_tick(c, now);
    if (c->fd < 0) {
        c->fail_err = HC_OK;
        return HC_ERR_TIMEOUT;
    }
    if (t < 0 || (timeout_ms >= 0 && timeout_ms < t))
        t = timeout_ms;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN | (hc_want_write(c) ? POLLOUT : 0)};
    int n = poll(&pfd, 1, t);
    if (n < 0 && errno != EINTR) {
        hc__set_error(c, "poll: %s", strerror(errno));
        return hc__fail(c, HC_ERR_IO);
    }
    now = hc_now_ms();
    return hc_handle_events(c, n > 0 ? pfd.revents : 0, now);
}

int hc_handle_events(struct hc_client *c, short revents, uint64_t now) {
    int rc = HC_OK;
    if (c->fd < 0)
        return HC_ERR_STATE;
    c->fail_err = HC_OK;
    if (revents & (POLLIN | POLLHUP | POLLERR))
        rc = hc_on_readable(c, now);
    if (rc == HC_OK && c->fd >= 0 && (revents & POLLOUT))
        rc = hc_on_writable(c, now);
    if (rc == HC_OK && c->fd >= 0)
        hc_tick(c, now);
    if (rc == HC_OK && c->fail_err)
        rc = c->fail_err;
    c->fail_err = HC_OK;
    return rc;
}

/* ---- accessors --------------------------------------------------------- */

int hc_fd(const struct hc_client *c) {
    return c->fd;
}
enum hc_state hc_state(const struct hc_client *c) {
    return c->state;
}
size_t hc_pending(const struct hc_client *c) {
    return c->queued;
}
size_t hc_out_pending(const struct hc_client *c) {
    return c->out.len - c->out.off;
}
const char *hc_client_id(const struct hc_client *c) {
    return c->client_id;
}
uint8_t hc_version(const struct hc_client *c) {
    return c->version;
}
const char *hc_error_text(const struct hc_client *c) {
    return c->err;
}
uint8_t hc_connack_code(const struct hc_client *c) {
    return c->connack_code;
}
uint8_t hc_disconnect_reason(const struct hc_client *c) {
    return c->disconnect_reason;
}

const char *hc_connack_text(uint8_t version, uint8_t code) {
    if (version != MQTT_V5) {
        switch (code) {
        case 0:
            return "Connection Accepted.";
        case 1:
            return "Connection Refused: unacceptable protocol version.";
        case 2:
            return "Connection Refused: identifier rejected.";
        case 3:
            return "Connection Refused: broker unavailable.";
        case 4:
            return "Connection Refused: bad user name or password.";
        case 5:
            return "Connection Refused: not authorised.";
        default:
            return "Connection Refused: unknown reason.";
        }
    }
    return mqtt_reason_text(code);
}

const char *hc_strerror(int err) {
    switch (err) {
    case HC_OK:
        return "success";
    case HC_ERR_NOMEM:
        return "out of memory";
    case HC_ERR_INVAL:
        return "invalid argument";
    case HC_ERR_STATE:
        return "not possible in this state";
    case HC_ERR_RESOLVE:
        return "host name not found";
    case HC_ERR_CONNECT:
        return "connection failed";
    case HC_ERR_TLS:
        return "TLS error";
    case HC_ERR_REFUSED:
        return "connection refused by the broker";
    case HC_ERR_PROTOCOL:
        return "protocol error";
    case HC_ERR_TIMEOUT:
        return "timeout";
    case HC_ERR_CLOSED:
        return "connection closed by the broker";
    case HC_ERR_IO:
        return "I/O error";
    case HC_ERR_DISCONNECTED:
        return "disconnected by the broker";
    default:
        return "unknown error";
    }
}
