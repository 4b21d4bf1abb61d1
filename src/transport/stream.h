/*
 * Byte streams stacked per connection: the one interface under MQTT.
 *
 * A connection's stack is a chain of layers, each a struct stream whose
 * `lower` is the layer under it; the bottom is always TCP (or a Unix
 * socket), owning the descriptor. Layers in order from the wire up:
 *
 *     tcp  ->  proxy (inbound PROXY v1/v2 header)  ->  tls  ->  ws
 *
 * Any of proxy, tls and ws may be absent. The user of a stack (the broker's
 * worker, the client library) holds the top layer and never asks which
 * layers are below it: it reads application bytes, writes application
 * bytes gathered in iovecs, flushes what the layers buffer, and asks which
 * readiness events the layers need. Handshakes (TLS, the WebSocket HTTP
 * upgrade, the PROXY header) run inside read/flush; until a layer is
 * established it reads nothing upward (-1, EAGAIN) and accepts no writes
 * (-1, EAGAIN) unless it can buffer them.
 *
 * Nothing in src/transport/ includes a broker or client header: layers know
 * bytes, not sessions or packets. What a layer learns about the peer (the
 * address a PROXY header or a trusted X-Forwarded-For gives, the TLS
 * identity) it writes into the stack's shared struct stream_info, which the
 * user reads. A layer never logs; a failure leaves its reason in
 * stream_info.why for the user to log.
 *
 * Threads: a stack is used by one thread at a time (its worker); it may be
 * handed to another thread between calls (a connection adopted by the
 * worker that owns its session).
 *
 * Ownership: stream_free(top) frees the whole chain, top to bottom; the TCP
 * layer closes its descriptor. The stream_info is owned by the user (it is
 * usually embedded in the user's connection struct) and outlives the stack.
 */
#ifndef HATO_TRANSPORT_STREAM_H
#define HATO_TRANSPORT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Readiness a stack needs from the event loop: the values of EPOLLIN and
 * EPOLLOUT, so they combine with the loop's EV_READ / EV_WRITE directly. */
enum { STREAM_WANT_READ = 1u, STREAM_WANT_WRITE = 4u };

/* Bytes of stream_info.peer, NUL included. */
#define STREAM_PEER_MAX 48

/* What the layers learned about the connection; shared by the whole stack,
 * owned by the user. Small on purpose: it lives in every connection, idle
 * ones included; what is rare is allocated. */
struct stream_info {
    /* The client's address as logged, checked by ACL patterns and counted by
     * the login slow-down: "ip:port", "[ip6]:port" or a Unix socket path.
     * Set from the socket by the user; replaced by a PROXY header, or by a
     * WebSocket X-Forwarded-For from a trusted proxy. 48 bytes hold the
     * longest IPv6 address inet_ntop writes with brackets and port; a long
     * Unix socket path is cut. */
    char peer[STREAM_PEER_MAX];
    /* The socket's own address when `peer` was replaced (the proxy or load
     * balancer), else NULL. malloc'd. */
    char *via;
    /* Set by the TLS layer when its handshake is done (server side: the
     * verified client certificate's CN, its RFC 2253 subject, or the PSK
     * identity, as the layer was asked). Also set by the PROXY layer from a
     * v2 SSL CN TLV. malloc'd. */
    char *identity;
    /* Why the stack failed (the last failure of any layer), for the user's
     * log; malloc'd by stream_fail, NULL while nothing failed. */
    char *why;
    bool tls_done;  /* a TLS layer finished its handshake */
    bool proxy_tls; /* PROXY v2: the client's connection to the proxy was TLS */
    bool upgraded;  /* the WebSocket upgrade is done */
};

struct stream;

struct stream_ops {
    const char *name; /* "tcp", "proxy", "tls", "ws" */
    /*
     * Read up to len application bytes into buf. Returns the count (> 0),
     * 0 at the orderly end of the stream, or -1 with errno: EAGAIN when
     * nothing can be read now (a handshake in progress counts), anything
     * else on failure (info->why says why). May write to the lower layers
     * (handshake answers, WebSocket pongs and close frames), which then
     * wait in the layer until flush.
     */
    ssize_t (*read)(struct stream *s, void *buf, size_t len);
    /*
     * Offer application bytes, gathered. Returns how many bytes of the
     * iovecs (in order) the layer took: written, or kept by the layer to be
     * written by flush; -1 with errno EAGAIN when it takes none now, other
     * errno on failure. The caller keeps the bytes not taken and offers them
     * again; a retry may offer more bytes, never fewer.
     */
    ssize_t (*writev)(struct stream *s, const struct iovec *iov, int iovcnt);
    /* Write out what this layer and the ones below keep. 0 when nothing is
     * left, 1 when some is left (the layer then wants write or read), -1 on
     * failure. */
    int (*flush)(struct stream *s);
    /* The events this layer and the ones below need beyond the user's own
     * (STREAM_WANT_*): e.g. write while a handshake or a kept frame waits. */
    unsigned (*wants)(const struct stream *s);
    /* Bytes that read would return without the socket being readable
     * (decrypted TLS bytes, decoded WebSocket payload). */
    bool (*pending)(const struct stream *s);
    /* The orderly end from this side, best effort and never waiting: TLS
     * close_notify, WebSocket close frame (status code from
     * stream_set_close), then the lower layer's. */
    void (*shutdown)(struct stream *s);
    /* Free this layer only (stream_free walks the chain). */
    void (*destroy)(struct stream *s);
};

struct stream {
    const struct stream_ops *ops;
    struct stream *lower;     /* NULL at the bottom */
    struct stream_info *info; /* shared by the stack */
    int fd;                   /* the socket (the same in every layer) */
};

/* Calls through the top of a stack. */
static inline ssize_t stream_read(struct stream *s, void *buf, size_t len) {
    return s->ops->read(s, buf, len);
}
static inline ssize_t stream_writev(struct stream *s, const struct iovec *iov, int n) {
    return s->ops->writev(s, iov, n);
}
static inline int stream_flush(struct stream *s) {
    return s->ops->flush(s);
}
static inline unsigned stream_wants(const struct stream *s) {
    return s->ops->wants(s);
}
static inline bool stream_pending(const struct stream *s) {
    return s->ops->pending(s);
}
static inline void stream_shutdown(struct stream *s) {
    s->ops->shutdown(s);
}

/* Free the whole chain from s down (the TCP layer closes the socket). */
void stream_free(struct stream *s);
/* The first layer at or below s with these ops, or NULL. */
struct stream *stream_find(struct stream *s, const struct stream_ops *ops);
/* Record a failure reason in s->info->why (printf style, replacing an
 * earlier one); returns -1 with errno = err, so a layer can
 * `return stream_fail(s, EPROTO, "...")`. */
int stream_fail(struct stream *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Free what stream_info holds (via, identity, why) and zero them. */
void stream_info_clear(struct stream_info *info);
/* Format a socket address as stream_info.peer does. */
void stream_format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);

/* The bottom layer: a connected non-blocking socket (TCP or Unix). Takes the
 * descriptor (closed by destroy). read is read(2), writev is writev(2),
 * flush has nothing to do, wants and pending are empty. NULL out of memory
 * (the descriptor is then not closed). */
struct stream *tcp_stream_new(int fd, struct stream_info *info);
/* The same layer in memory the user owns (embedded in its connection, so a
 * plain connection costs no allocation): destroy closes the descriptor and
 * frees nothing. */
void tcp_stream_init(struct stream *s, int fd, struct stream_info *info);
extern const struct stream_ops tcp_stream_ops, tcp_stream_embedded_ops;

#endif
