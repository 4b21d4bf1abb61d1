/*
 * The WebSocket layer (RFC 6455) on wslay's frame API. See ws.h.
 */
#include "transport/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "transport/http.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum ws_state {
    WS_HANDSHAKE, /* reading the upgrade request (server) or its answer (client) */
    WS_OPEN,      /* frames */
    WS_ENDING,    /* an answer or close frame is flushed, then read() reports the end */
};

struct ws_stream {
    struct stream s;
    const struct ws_server_opts *o; /* server; NULL on the client side */
    enum ws_state state;

    /* Handshake: the request (server) or response (client) head. */
    char *hbuf;
    size_t hlen, hcap;
    /* Bytes read past the head, given to wslay before the socket's. */
    uint8_t *pre;
    size_t prelen, preoff;

    /* wslay's frame context: only while a frame is in progress. */
    wslay_frame_context_ptr fx;
    uint64_t fed, used; /* bytes given to wslay, bytes of frames it parsed */
    bool stalled;       /* wslay waits for the socket */
    bool lower_eof;
    int lower_err;

    /* The frame being read. */
    bool in_frame;
    uint8_t op;
    uint64_t flen, fgot;
    /* The data message being read (fragments). */
    bool in_msg;
    uint64_t msg_bytes;
    unsigned frags;
    /* Payload wslay returned that did not fit the caller's buffer: it
     * points into wslay's buffer, valid until the next wslay_frame_recv. */
    const uint8_t *chunk;
    size_t chunklen;
    uint8_t ctl[125];
    size_t ctllen;

    /* Output: frames (and HTTP answers) not yet taken by the layer below. */
    uint8_t *obuf;
    size_t olen, ooff, ocap;
    size_t ohold; /* client: only obuf[0..ohold) goes out before the 101 */

    /* http_dir answer being sent. */
    int file_fd;
    off_t file_left;

    /* The end. */
    uint16_t close_code; /* for shutdown() */
    bool close_sent;
    int end_errno; /* 0: read() returns 0 at the end; else -1 with this errno */

    /* Client. */
    char accept[32];
    char *subproto;
};

/* ---- output buffer ---------------------------------------------------- */

static int out_reserve(struct ws_stream *w, size_t more) {
    if (w->ooff && w->ooff == w->olen)
        w->ooff = w->olen = 0;
    if (w->olen + more <= w->ocap)
        return 0;
    if (w->ooff) {
        memmove(w->obuf, w->obuf + w->ooff, w->olen - w->ooff);
        w->olen -= w->ooff;
        if (w->ohold != SIZE_MAX)
            w->ohold = w->ohold > w->ooff ? w->ohold - w->ooff : 0;
        w->ooff = 0;
        if (w->olen + more <= w->ocap)
            return 0;
    }
    size_t n = w->ocap ? w->ocap : 512;
    while (n < w->olen + more)
        n *= 2;
    uint8_t *p = realloc(w->obuf, n);
    if (!p)
        return -1;
    w->obuf = p;
    w->ocap = n;
    return 0;
}

static int out_add(struct ws_stream *w, const void *p, size_t n) {
    if (out_reserve(w, n) < 0)
        return -1;
    memcpy(w->obuf + w->olen, p, n);
    w->olen += n;
    return 0;
}

static size_t out_sendable(const struct ws_stream *w) {
    size_t limit = w->olen;
    if (w->ohold != SIZE_MAX && w->ohold < limit)
        limit = w->ohold;
    return limit > w->ooff ? limit - w->ooff : 0;
}

/* Write out what is kept (and more of a file being served). 0 all out,
 * 1 some left, -1 failed. */
static int out_flush(struct ws_stream *w) {
    for (;;) {
        size_t n = out_sendable(w);
        if (n) {
            struct iovec iov = {.iov_base = w->obuf + w->ooff, .iov_len = n};
            ssize_t r = stream_writev(w->s.lower, &iov, 1);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                return -1;
            }
            if (r == 0)
                break;
            w->ooff += (size_t)r;
            continue;
        }
        if (w->ooff == w->olen && w->ohold == SIZE_MAX) {
            /* All out: no buffer is kept between writes (an idle
             * connection holds none; malloc reuses the block at once). */
            free(w->obuf);
            w->obuf = NULL;
            w->ooff = w->olen = w->ocap = 0;
        }
        if (w->file_fd >= 0 && w->ooff == w->olen) {
            size_t chunk = w->file_left > 65536 ? 65536 : (size_t)w->file_left;
            if (chunk && out_reserve(w, chunk) == 0) {
                ssize_t r = read(w->file_fd, w->obuf + w->olen, chunk);
                if (r > 0) {
                    w->olen += (size_t)r;
                    w->file_left -= r;
                    continue;
                }
            }
            close(w->file_fd);
            w->file_fd = -1;
            continue;
        }
        break;
    }
    if (stream_flush(w->s.lower) < 0)
        return -1;
    return out_sendable(w) || w->file_fd >= 0 ? 1 : 0;
}

/* ---- wslay callbacks -------------------------------------------------- */

/* wslay's context is only used for input (see put_frame): its send
 * callbacks are never called. */
static ssize_t send_cb(const uint8_t *data, size_t len, int flags, void *ud) {
    (void)data, (void)len, (void)flags, (void)ud;
    return -1;
}

/* The layer wslay is reading for: contexts are shared between the
 * connections of a thread (see spare_fx), so wslay's user data is not it. */
static _Thread_local struct ws_stream *reading;

static ssize_t recv_cb(uint8_t *buf, size_t len, int flags, void *ud) {
    (void)flags, (void)ud;
    struct ws_stream *w = reading;
    if (w->preoff < w->prelen) {
        size_t n = w->prelen - w->preoff;
        if (n > len)
            n = len;
        memcpy(buf, w->pre + w->preoff, n);
        w->preoff += n;
        if (w->preoff == w->prelen) {
            free(w->pre);
            w->pre = NULL;
            w->prelen = w->preoff = 0;
        }
        w->fed += n;
        return (ssize_t)n;
    }
    ssize_t r = stream_read(w->s.lower, buf, len);
    if (r > 0) {
        w->fed += (uint64_t)r;
        w->stalled = false;
        return r;
    }
    if (r == 0)
        w->lower_eof = true;
    else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        w->stalled = true;
    else
        w->lower_err = errno ? errno : EIO;
    return -1; /* wslay: WSLAY_ERR_WANT_READ */
}

static int genmask_cb(uint8_t *buf, size_t len, void *ud) {
    (void)buf, (void)len, (void)ud;
    return -1;
}

static const struct wslay_frame_callbacks frame_cbs = {
    .send_callback = send_cb, .recv_callback = recv_cb, .genmask_callback = genmask_cb};

/*
 * wslay's frame context carries a 4 KiB input buffer. A connection needs
 * one only while a frame is partly read; between frames the context is
 * clean (no state, empty buffer) and goes back to a spare slot of the
 * thread, so a thread with thousands of quiet connections keeps one
 * context, not thousands, and a busy one does not malloc per read. The
 * spare is freed when the thread ends (a key destructor).
 */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_free(void *p) {
    wslay_frame_context_free(p);
}

static void spare_init(void) {
    pthread_key_create(&spare_key, spare_free);
}

static int ensure_fx(struct ws_stream *w) {
    if (w->fx)
        return 0;
    pthread_once(&spare_once, spare_init);
    w->fx = pthread_getspecific(spare_key);
    if (w->fx) {
        pthread_setspecific(spare_key, NULL);
    } else if (wslay_frame_context_init(&w->fx, &frame_cbs, NULL) != 0) {
        w->fx = NULL;
        return -1;
    }
    w->fed = w->used = 0;
    return 0;
}

/* Give back the context of a connection between frames. */
static void release_fx(struct ws_stream *w) {
    if (!pthread_getspecific(spare_key) && pthread_setspecific(spare_key, w->fx) == 0)
        ; /* kept as the thread's spare */
    else
        wslay_frame_context_free(w->fx);
    w->fx = NULL;
    w->fed = w->used = 0;
}

/*
 * Output frames are encoded here rather than by wslay_frame_send: a frame
 * header is 2 to 14 bytes of arithmetic, and wslay's send needs its frame
 * context, whose 4 KiB input buffer an idle connection should not carry
 * just to be written to. One whole frame (header and payload, masked on
 * the client side) is appended to the output buffer; the payload comes
 * from up to n iovecs, `len` bytes in all.
 */
static int put_frame(struct ws_stream *w, uint8_t op, const struct iovec *iov, int n, size_t len) {
    if (out_reserve(w, len + 14) < 0)
        return -1;
    uint8_t *h = w->obuf + w->olen;
    size_t hl = 2;
    h[0] = (uint8_t)(0x80 | op); /* FIN, no reserved bits */
    uint8_t maskbit = w->o ? 0 : 0x80;
    if (len < 126) {
        h[1] = (uint8_t)(maskbit | len);
    } else if (len < 65536) {
        h[1] = (uint8_t)(maskbit | 126);
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = (uint8_t)(maskbit | 127);
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    uint8_t key[4] = {0};
    if (maskbit) {
        if (RAND_bytes(key, 4) != 1)
            return -1;
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    uint8_t *p = h + hl;
    size_t left = len, k = 0;
    for (int i = 0; i < n && left; i++) {
        size_t part = iov[i].iov_len < left ? iov[i].iov_len : left;
        const uint8_t *src = iov[i].iov_base;
        if (maskbit)
            for (size_t j = 0; j < part; j++, k++)
                p[k] = src[j] ^ key[k & 3];
        else {
            memcpy(p + k, src, part);
            k += part;
        }
        left -= part;
    }
    w->olen += hl + len;
    return 0;
}

/* Queue one whole frame (control frames, the close). */
static int send_frame(struct ws_stream *w, uint8_t op, const uint8_t *p, size_t n) {
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    return put_frame(w, op, &iov, 1, n);
}

/* Close with a status: the close frame is queued; once it is flushed read()
 * fails with EPROTO and the reason (for a violation) or returns 0. */
static ssize_t ws_close(struct ws_stream *w, uint16_t code, int err, const char *fmt,
                        const char *what) {
    if (!w->close_sent) {
        uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        send_frame(w, WSLAY_CONNECTION_CLOSE, b, 2);
        w->close_sent = true;
    }
    w->state = WS_ENDING;
    w->end_errno = err;
    if (fmt)
        stream_fail(&w->s, err ? err : EPROTO, fmt, code, what);
    errno = EAGAIN;
    return -1;
}

#define VIOLATION(w, code, what) ws_close(w, code, EPROTO, "WebSocket closed with %u: %s", what)

/* ---- HTTP answers ------------------------------------------------------ */

/* Queue a refusal; the connection ends once it is flushed. */
static ssize_t http_refuse(struct ws_stream *w, int status, const char *extra, const char *why) {
    const char *reason = http_reason(status);
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s\n",
                     status, reason, strlen(reason) + 1, extra ? extra : "", reason);
    if (n > 0 && (size_t)n < sizeof(head))
        out_add(w, head, (size_t)n);
    w->state = WS_ENDING;
    w->end_errno = EPROTO;
    free(w->hbuf);
    w->hbuf = NULL;
    stream_fail(&w->s, EPROTO, "HTTP %d %s: %s", status, reason, why);
    errno = EAGAIN;
    return -1;
}

/* A plain GET/HEAD: a file from http_dir. */
static ssize_t http_serve(struct ws_stream *w, const struct http_head *h, bool head_only) {
    if (!w->o->http_dir)
        return http_refuse(w, 404, NULL, "no http_dir for a plain GET");
    char root[PATH_MAX];
    if (!realpath(w->o->http_dir, root))
        return http_refuse(w, 404, NULL, "http_dir is gone");
    off_t size = 0;
    const char *type = NULL;
    int fd = http_open_file(root, h->target, h->tlen, &size, &type);
    char shown[128];
    snprintf(shown, sizeof(shown), "%.*s", (int)(h->tlen > 100 ? 100 : h->tlen), h->target);
    if (fd < 0)
        return http_refuse(w, -fd, NULL, shown);
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                     "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
                     type, (long long)size);
    if (n < 0 || (size_t)n >= sizeof(hdr) || out_add(w, hdr, (size_t)n) < 0) {
        close(fd);
        return http_refuse(w, 500, NULL, "out of memory");
    }
    if (head_only || size == 0)
        close(fd);
    else {
        w->file_fd = fd;
        w->file_left = size;
    }
    w->state = WS_ENDING;
    w->end_errno = ECONNABORTED;
    free(w->hbuf);
    w->hbuf = NULL;
    stream_fail(&w->s, ECONNABORTED, "HTTP %s %s: 200 (%lld bytes)", head_only ? "HEAD" : "GET",
                shown, (long long)size);
    errno = EAGAIN;
    return -1;
}

static void accept_key(const char *key, size_t klen, char out[32]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char buf[64 + sizeof(ws_guid)];
    memcpy(buf, key, klen);
    memcpy(buf + klen, ws_guid, sizeof(ws_guid) - 1);
    EVP_Digest(buf, klen + sizeof(ws_guid) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 28 characters and a NUL */
}

/* A Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 4.1). */
static bool valid_key(const char *v, size_t n) {
    if (n != 24 || v[22] != '=' || v[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

/* Is the address (text, no port) in the list of IPs and IP/BITS? */
static bool addr_trusted(const char *ip, const char *const *list, size_t n) {
    unsigned char a[16];
    int fam = inet_pton(AF_INET, ip, a) == 1    ? AF_INET
              : inet_pton(AF_INET6, ip, a) == 1 ? AF_INET6
                                                : 0;
    if (!fam)
        return false;
    for (size_t i = 0; i < n; i++) {
        char net[64];
        snprintf(net, sizeof(net), "%s", list[i]);
        char *slash = strchr(net, '/');
        int bits = fam == AF_INET ? 32 : 128;
        if (slash) {
            *slash = 0;
            bits = atoi(slash + 1);
        }
        unsigned char b[16];
        if (inet_pton(fam, net, b) != 1)
            continue;
        int full = bits / 8, rest = bits % 8;
        if (memcmp(a, b, (size_t)full) != 0)
            continue;
        if (rest && ((a[full] ^ b[full]) & (0xff00 >> rest) & 0xff))
            continue;
        return true;
    }
    return false;
}

/* The address part of "ip:port" or "[ip6]:port". */
static void peer_ip(const char *peer, char *out, size_t cap) {
    if (peer[0] == '[') {
        const char *e = strchr(peer, ']');
        size_t n = e ? (size_t)(e - peer - 1) : 0;
        snprintf(out, cap, "%.*s", (int)n, peer + 1);
        return;
    }
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    snprintf(out, cap, "%.*s", (int)n, peer);
}

/* X-Forwarded-For from a trusted proxy: the rightmost address that is not
 * itself a trusted proxy names the client. */
static void apply_forwarded(struct ws_stream *w, const struct http_head *h) {
    struct stream_info *info = w->s.info;
    int count = 0;
    const struct http_field *f = http_field(h, "X-Forwarded-For", &count);
    if (!info || !f || count != 1 || !w->o->ntrusted)
        return;
    char sock[64];
    peer_ip(info->peer, sock, sizeof(sock));
    if (!addr_trusted(sock, w->o->trusted_proxies, w->o->ntrusted))
        return;
    char pick[64] = "";
    size_t end = f->vlen;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && f->value[start - 1] != ',')
            start--;
        size_t s = start, e = end;
        while (s < e && (f->value[s] == ' ' || f->value[s] == '\t'))
            s++;
        while (e > s && (f->value[e - 1] == ' ' || f->value[e - 1] == '\t'))
            e--;
        char one[64];
        if (e - s == 0 || e - s >= sizeof(one))
            return; /* not an address: believe nothing */
        memcpy(one, f->value + s, e - s);
        one[e - s] = 0;
        unsigned char tmp[16];
        if (inet_pton(AF_INET, one, tmp) != 1 && inet_pton(AF_INET6, one, tmp) != 1)
            return;
        memcpy(pick, one, e - s + 1);
        if (!addr_trusted(one, w->o->trusted_proxies, w->o->ntrusted))
            break;
        end = start ? start - 1 : 0;
    }
    if (!pick[0])
        return;
    char *via = strdup(info->peer);
    if (!via)
        return;
    free(info->via);
    info->via = via;
    snprintf(info->peer, sizeof(info->peer), strchr(pick, ':') ? "[%s]:0" : "%s:0", pick);
}

/* Keep the bytes read past the head for wslay. */
static int keep_rest(struct ws_stream *w, size_t headlen) {
    size_t rest = w->hlen - headlen;
    if (rest) {
        w->pre = malloc(rest);
        if (!w->pre)
            return -1;
        memcpy(w->pre, w->hbuf + headlen, rest);
        w->prelen = rest;
        w->preoff = 0;
    }
    free(w->hbuf);
    w->hbuf = NULL;
    w->hlen = w->hcap = 0;
    return 0;
}

/* The upgrade request is complete: answer it. 0 upgraded, -1 refused. */
static ssize_t server_upgrade(struct ws_stream *w, const struct http_head *h, size_t headlen) {
    bool get = h->mlen == 3 && !memcmp(h->method, "GET", 3);
    bool head = h->mlen == 4 && !memcmp(h->method, "HEAD", 4);
    const struct http_field *up = http_field(h, "Upgrade", NULL);
    bool upgrade = up && http_has_token(up->value, up->vlen, "websocket");
    int n_cl = 0, n_te = 0;
    const struct http_field *cl = http_field(h, "Content-Length", &n_cl);
    http_field(h, "Transfer-Encoding", &n_te);
    if (!get && !head)
        return http_refuse(w, 405, "Allow: GET, HEAD\r\n", "method not allowed");
    if (n_te || n_cl > 1 || (cl && !(cl->vlen == 1 && cl->value[0] == '0')))
        return http_refuse(w, 400, NULL, "a body on GET");
    if (!upgrade)
        return http_serve(w, h, head);
    if (!get)
        return http_refuse(w, 405, "Allow: GET\r\n", "the upgrade must be a GET (RFC 6455 4.1)");
    const struct http_field *conn = http_field(h, "Connection", NULL);
    if (h->minor < 1 || !conn || !http_has_token(conn->value, conn->vlen, "upgrade"))
        return http_refuse(w, 400, NULL, "not an HTTP/1.1 upgrade (RFC 6455 4.2.1)");
    int nv = 0;
    const struct http_field *ver = http_field(h, "Sec-WebSocket-Version", &nv);
    if (nv != 1 || ver->vlen != 2 || memcmp(ver->value, "13", 2) != 0)
        return http_refuse(w, 426, "Sec-WebSocket-Version: 13\r\n",
                           "Sec-WebSocket-Version is not 13 (RFC 6455 4.4)");
    int nk = 0;
    const struct http_field *key = http_field(h, "Sec-WebSocket-Key", &nk);
    if (nk != 1 || !valid_key(key->value, key->vlen))
        return http_refuse(w, 400, NULL, "no valid Sec-WebSocket-Key (RFC 6455 4.2.1)");
    if (w->o->norigins) {
        int no = 0;
        const struct http_field *org = http_field(h, "Origin", &no);
        bool ok = false;
        for (size_t i = 0; org && no == 1 && i < w->o->norigins && !ok; i++)
            ok = strlen(w->o->origins[i]) == org->vlen &&
                 strncasecmp(w->o->origins[i], org->value, org->vlen) == 0;
        if (!ok) {
            char why[160];
            snprintf(why, sizeof(why), "origin '%.*s' not allowed",
                     org ? (int)(org->vlen > 100 ? 100 : org->vlen) : 0, org ? org->value : "");
            return http_refuse(w, 403, NULL, why);
        }
    }
    /* The subprotocol: the first of the client's that MQTT has. */
    const char *proto = NULL;
    int np = 0;
    http_field(h, "Sec-WebSocket-Protocol", &np);
    for (size_t i = 0; i < h->nf && !proto; i++) {
        const struct http_field *f = &h->f[i];
        if (f->nlen != 22 || strncasecmp(f->name, "Sec-WebSocket-Protocol", 22) != 0)
            continue;
        if (http_has_token(f->value, f->vlen, "mqtt"))
            proto = "mqtt";
        else if (http_has_token(f->value, f->vlen, "mqttv3.1"))
            proto = "mqttv3.1";
    }
    if (np && !proto)
        return http_refuse(w, 400, NULL, "no MQTT subprotocol offered (mqtt, mqttv3.1)");
    apply_forwarded(w, h);
    char acc[32];
    accept_key(key->value, key->vlen, acc);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     acc, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                     proto ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(resp) || out_add(w, resp, (size_t)n) < 0 ||
        keep_rest(w, headlen) < 0)
        return stream_fail(&w->s, ENOMEM, "out of memory");
    w->state = WS_OPEN;
    if (w->s.info)
        w->s.info->upgraded = true;
    return 0;
}

/* The server's answer to our upgrade. 0 upgraded, -1 failed. */
static ssize_t client_upgraded(struct ws_stream *w, const struct http_head *h, size_t headlen) {
    if (h->status != 101)
        return stream_fail(&w->s, ECONNREFUSED, "WebSocket upgrade refused: HTTP %d %.*s",
                           h->status, (int)(h->rlen > 80 ? 80 : h->rlen), h->reason);
    const struct http_field *up = http_field(h, "Upgrade", NULL);
    const struct http_field *conn = http_field(h, "Connection", NULL);
    const struct http_field *acc = http_field(h, "Sec-WebSocket-Accept", NULL);
    const struct http_field *proto = http_field(h, "Sec-WebSocket-Protocol", NULL);
    if (!up || !http_has_token(up->value, up->vlen, "websocket") || !conn ||
        !http_has_token(conn->value, conn->vlen, "upgrade"))
        return stream_fail(&w->s, EPROTO, "WebSocket upgrade: no Upgrade/Connection in the 101");
    if (!acc || acc->vlen != strlen(w->accept) || memcmp(acc->value, w->accept, acc->vlen) != 0)
        return stream_fail(&w->s, EPROTO, "WebSocket upgrade: wrong Sec-WebSocket-Accept");
    if (proto && (!w->subproto || proto->vlen != strlen(w->subproto) ||
                  strncasecmp(proto->value, w->subproto, proto->vlen) != 0))
        return stream_fail(&w->s, EPROTO, "WebSocket upgrade: the server chose subprotocol '%.*s'",
                           (int)(proto->vlen > 40 ? 40 : proto->vlen), proto->value);
    if (keep_rest(w, headlen) < 0)
        return stream_fail(&w->s, ENOMEM, "out of memory");
    w->state = WS_OPEN;
    w->ohold = SIZE_MAX; /* the frames written meanwhile may go */
    if (w->s.info)
        w->s.info->upgraded = true;
    if (out_flush(w) < 0)
        return -1;
    return 0;
}

/* Read the head (request or answer). 1 upgraded, -1 with errno (EAGAIN). */
static ssize_t handshake(struct ws_stream *w) {
    for (;;) {
        size_t max = w->o && w->o->max_header ? w->o->max_header : WS_DEFAULT_MAX_HEADER;
        if (w->hlen == w->hcap) {
            if (w->hcap >= max) {
                if (w->o)
                    return http_refuse(w, 431, NULL,
                                       "request head larger than websockets_headers_size");
                return stream_fail(&w->s, EPROTO, "WebSocket upgrade: answer head too large");
            }
            /* Start small (a browser's upgrade is about 500 bytes), grow to the cap. */
            size_t n = w->hcap ? w->hcap * 2 : 1024;
            if (n > max)
                n = max;
            char *p = realloc(w->hbuf, n + 1);
            if (!p)
                return stream_fail(&w->s, ENOMEM, "out of memory");
            w->hbuf = p;
            w->hcap = n;
        }
        ssize_t r = stream_read(w->s.lower, w->hbuf + w->hlen, w->hcap - w->hlen);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (!w->o && w->hlen == 0)
                return stream_fail(&w->s, ECONNRESET,
                                   "the broker closed the connection "
                                   "before the WebSocket upgrade");
            return 0;
        }
        w->hlen += (size_t)r;
        struct http_head h;
        int n = w->o ? http_parse_request(w->hbuf, w->hlen, &h)
                     : http_parse_response(w->hbuf, w->hlen, &h);
        if (n == 0)
            continue;
        if (n < 0) {
            if (w->o)
                return http_refuse(w, -n, NULL, "malformed request head");
            return stream_fail(&w->s, EPROTO, "WebSocket upgrade: malformed HTTP answer");
        }
        if ((w->o ? server_upgrade(w, &h, (size_t)n) : client_upgraded(w, &h, (size_t)n)) < 0)
            return -1;
        return 1;
    }
}

/* ---- frames in ------------------------------------------------------- */

static bool valid_close_code(uint16_t c) {
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

static ssize_t control_done(struct ws_stream *w) {
    if (w->op == WSLAY_PING) {
        if (!w->close_sent && send_frame(w, WSLAY_PONG, w->ctl, w->ctllen) < 0)
            return stream_fail(&w->s, ENOMEM, "out of memory");
        return 0;
    }
    if (w->op == WSLAY_PONG)
        return 0;
    /* A close: echo its code (RFC 6455 5.5.1), then the stream ends. */
    uint16_t code = 1000;
    if (w->ctllen == 1)
        return VIOLATION(w, 1002, "close frame with a 1-byte payload (RFC 6455 5.5.1)");
    if (w->ctllen >= 2) {
        code = (uint16_t)(w->ctl[0] << 8 | w->ctl[1]);
        if (!valid_close_code(code))
            return VIOLATION(w, 1002, "invalid close code (RFC 6455 7.4)");
    }
    ws_close(w, code, 0, NULL, NULL);
    return -1;
}

/* The first bytes of a frame: the rules on what may come when. */
static ssize_t frame_start(struct ws_stream *w, const struct wslay_frame_iocb *io) {
    w->in_frame = true;
    w->op = io->opcode;
    w->flen = io->payload_length;
    w->fgot = 0;
    w->used += 2 + (io->payload_length >= 126 ? (io->payload_length >= 65536 ? 8 : 2) : 0) +
               (io->mask ? 4 : 0);
    if (io->rsv)
        return VIOLATION(w, 1002, "reserved bits set (RFC 6455 5.2)");
    if (w->o && !io->mask)
        return VIOLATION(w, 1002, "unmasked client frame (RFC 6455 5.1)");
    if (!w->o && io->mask)
        return VIOLATION(w, 1002, "masked server frame (RFC 6455 5.1)");
    if (wslay_is_ctrl_frame(io->opcode)) {
        if (io->opcode != WSLAY_CONNECTION_CLOSE && io->opcode != WSLAY_PING &&
            io->opcode != WSLAY_PONG)
            return VIOLATION(w, 1002, "unknown control opcode (RFC 6455 5.2)");
        w->ctllen = 0;
        return 0;
    }
    if (io->opcode == WSLAY_TEXT_FRAME)
        return VIOLATION(w, 1003, "text frame: MQTT travels in binary frames (MQTT-6.0.0-1)");
    if (io->opcode == WSLAY_CONTINUATION_FRAME) {
        if (!w->in_msg)
            return VIOLATION(w, 1002, "continuation frame outside a message (RFC 6455 5.4)");
        if (++w->frags > WS_MAX_FRAGMENTS)
            return VIOLATION(w, 1008, "too many fragments in one message");
    } else if (io->opcode == WSLAY_BINARY_FRAME) {
        if (w->in_msg)
            return VIOLATION(w, 1002, "new message inside a fragmented one (RFC 6455 5.4)");
        w->in_msg = true;
        w->msg_bytes = 0;
        w->frags = 1;
    } else {
        return VIOLATION(w, 1002, "unknown data opcode (RFC 6455 5.2)");
    }
    if (w->o && w->o->max_message && w->msg_bytes + io->payload_length > w->o->max_message)
        return VIOLATION(w, 1009, "message larger than the listener's packet limit");
    if (io->fin)
        w->in_msg = false; /* the message ends with this frame */
    return 0;
}

static ssize_t give(struct ws_stream *w, void *buf, size_t len) {
    size_t n = w->chunklen < len ? w->chunklen : len;
    memcpy(buf, w->chunk, n);
    w->chunk += n;
    w->chunklen -= n;
    return (ssize_t)n;
}

static ssize_t read_frames(struct ws_stream *w, void *buf, size_t len) {
    for (;;) {
        if (w->chunklen)
            return give(w, buf, len);
        if (ensure_fx(w) < 0)
            return stream_fail(&w->s, ENOMEM, "out of memory");
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        reading = w;
        ssize_t r = wslay_frame_recv(w->fx, &io);
        reading = NULL;
        if (r == WSLAY_ERR_WANT_READ) {
            if (w->lower_err)
                return stream_fail(&w->s, w->lower_err, "%s", strerror(w->lower_err));
            if (w->lower_eof)
                return 0;
            /* Between frames with nothing buffered: give the context back
             * now, so idle connections never hold its 4 KiB buffer. */
            ws_stream_trim(&w->s);
            errno = EAGAIN;
            return -1;
        }
        if (r == WSLAY_ERR_PROTO)
            return VIOLATION(w, 1002, "malformed frame (RFC 6455 5.2)");
        if (r < 0)
            return stream_fail(&w->s, EPROTO, "WebSocket framing failed");
        if (!w->in_frame && frame_start(w, &io) < 0)
            return -1;
        w->used += io.data_length;
        w->fgot += io.data_length;
        bool done = w->fgot == w->flen;
        if (wslay_is_ctrl_frame(w->op)) {
            memcpy(w->ctl + w->ctllen, io.data, io.data_length); /* wslay: at most 125 */
            w->ctllen += io.data_length;
            if (done) {
                w->in_frame = false;
                if (control_done(w) < 0)
                    return -1;
            }
            continue;
        }
        w->msg_bytes += io.data_length;
        if (done)
            w->in_frame = false;
        if (io.data_length) {
            w->chunk = io.data;
            w->chunklen = io.data_length;
        }
    }
}

/* ---- the layer -------------------------------------------------------- */

static ssize_t ending(struct ws_stream *w) {
    if (out_flush(w) != 0) {
        errno = EAGAIN;
        return -1;
    }
    if (w->end_errno) {
        errno = w->end_errno;
        return -1;
    }
    return 0;
}

static ssize_t ws_read(struct stream *s, void *buf, size_t len) {
    struct ws_stream *w = (struct ws_stream *)s;
    if (w->state == WS_HANDSHAKE) {
        ssize_t r = handshake(w);
        if (r <= 0 && w->state != WS_ENDING)
            return r;
    }
    if (w->state == WS_ENDING)
        return ending(w);
    ssize_t r = read_frames(w, buf, len);
    if (r < 0 && w->state == WS_ENDING && errno == EAGAIN)
        return ending(w);
    return r;
}

static ssize_t ws_writev(struct stream *s, const struct iovec *iov, int n) {
    struct ws_stream *w = (struct ws_stream *)s;
    if (w->state == WS_ENDING || w->close_sent) {
        errno = EPIPE;
        return -1;
    }
    if (w->o && w->state != WS_OPEN) {
        errno = EAGAIN; /* nothing goes to a client before its upgrade */
        return -1;
    }
    if (w->olen - w->ooff > WS_OUT_CAP) {
        if (out_flush(w) < 0)
            return -1;
        if (w->olen - w->ooff > WS_OUT_CAP) {
            errno = EAGAIN;
            return -1;
        }
    }
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    size_t take = total < WS_OUT_CAP ? total : WS_OUT_CAP;
    if (!take)
        return 0;
    if (put_frame(w, WSLAY_BINARY_FRAME, iov, n, take) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return (ssize_t)take;
}

static int ws_flush(struct stream *s) {
    struct ws_stream *w = (struct ws_stream *)s;
    return out_flush(w);
}

static unsigned ws_wants(const struct stream *s) {
    const struct ws_stream *w = (const struct ws_stream *)s;
    unsigned want = stream_wants(s->lower);
    /* Kept bytes need write readiness, unless the layer below must read
     * first (a TLS handshake under us). */
    if ((out_sendable(w) || w->file_fd >= 0) && !(want & STREAM_WANT_READ))
        want |= STREAM_WANT_WRITE;
    return want;
}

static bool ws_pending(const struct stream *s) {
    const struct ws_stream *w = (const struct ws_stream *)s;
    if (w->state == WS_ENDING)
        return !out_sendable(w) && w->file_fd < 0; /* read() would report the end */
    return w->chunklen || w->preoff < w->prelen || (w->fx && !w->stalled && w->fed > w->used) ||
           stream_pending(s->lower);
}

static void ws_shutdown(struct stream *s) {
    struct ws_stream *w = (struct ws_stream *)s;
    if (w->state == WS_OPEN && !w->close_sent) {
        uint8_t b[2] = {(uint8_t)(w->close_code >> 8), (uint8_t)w->close_code};
        send_frame(w, WSLAY_CONNECTION_CLOSE, b, 2);
        w->close_sent = true;
    }
    out_flush(w);
    stream_shutdown(s->lower);
}

static void ws_destroy(struct stream *s) {
    struct ws_stream *w = (struct ws_stream *)s;
    if (w->fx)
        wslay_frame_context_free(w->fx);
    if (w->file_fd >= 0)
        close(w->file_fd);
    free(w->hbuf);
    free(w->pre);
    free(w->obuf);
    free(w->subproto);
    free(w);
}

const struct stream_ops ws_stream_ops = {
    .name = "ws",
    .read = ws_read,
    .writev = ws_writev,
    .flush = ws_flush,
    .wants = ws_wants,
    .pending = ws_pending,
    .shutdown = ws_shutdown,
    .destroy = ws_destroy,
};

static struct ws_stream *ws_alloc(struct stream *lower) {
    struct ws_stream *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->s = (struct stream){
        .ops = &ws_stream_ops, .lower = lower, .info = lower->info, .fd = lower->fd};
    w->file_fd = -1;
    w->close_code = 1000;
    w->ohold = SIZE_MAX;
    return w;
}

struct stream *ws_stream_new_server(struct stream *lower, const struct ws_server_opts *o) {
    struct ws_stream *w = ws_alloc(lower);
    if (!w)
        return NULL;
    w->o = o;
    return &w->s;
}

struct stream *ws_stream_new_client(struct stream *lower, const char *host, const char *path,
                                    const char *subprotocol) {
    struct ws_stream *w = ws_alloc(lower);
    if (!w)
        return NULL;
    unsigned char raw[16];
    char key[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        goto fail;
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    accept_key(key, strlen(key), w->accept);
    if (subprotocol && !(w->subproto = strdup(subprotocol)))
        goto fail;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path && *path ? path : "/", host, key,
                     subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
                     subprotocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || out_add(w, req, (size_t)n) < 0)
        goto fail;
    w->ohold = (size_t)n;
    return &w->s;
fail:
    ws_destroy(&w->s);
    return NULL;
}

void ws_stream_set_close(struct stream *s, uint16_t code) {
    ((struct ws_stream *)s)->close_code = code;
}

void ws_stream_trim(struct stream *s) {
    struct ws_stream *w = (struct ws_stream *)s;
    if (w->fx && !w->in_frame && !w->chunklen && w->fed == w->used)
        release_fx(w);
    if (w->obuf && w->ooff == w->olen && w->ohold == SIZE_MAX) {
        free(w->obuf);
        w->obuf = NULL;
        w->olen = w->ooff = w->ocap = 0;
    }
}
