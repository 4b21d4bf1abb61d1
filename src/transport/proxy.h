/*
 * The PROXY protocol (HAProxy's spec, versions 1 and 2), inbound only: a
 * load balancer that accepted the client's connection starts ours with a
 * header naming the client. Two parts:
 *
 * proxy_parse: a pure parser of one header at the start of a buffer. It
 * never reads past `len`, never allocates, and tells "need more bytes"
 * apart from "this can never become a valid header" as early as it can
 * (a connection that starts with anything else is refused at once).
 *
 * The layer (proxy_stream_new): reads the header from the layer below
 * before anything else, then passes bytes through. Bytes read past the
 * header (the client's first TLS or MQTT bytes) are kept and returned by
 * the next reads. On a PROXY command the client's address replaces
 * info->peer (the socket's moves to info->via); a LOCAL command (a health
 * check) and v1 UNKNOWN keep the socket's address. From a v2 SSL TLV:
 * info->proxy_tls when the client used TLS to the proxy, and info->identity
 * = the CN of a client certificate the proxy verified. A missing, invalid
 * or other-version header fails the read (errno EPROTO, info->why says
 * why): the listener takes only what it was configured for.
 */
#ifndef HATO_TRANSPORT_PROXY_H
#define HATO_TRANSPORT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transport/stream.h"

/* The longest v1 header (with CRLF), and the longest v2 header accepted:
 * 16 bytes of fixed part and at most this much of addresses and TLVs. */
#define PROXY_V1_MAX 107
#define PROXY_V2_MAX_BODY 2048

struct proxy_header {
    int version; /* 1 or 2 */
    bool local;  /* v2 LOCAL, or v1 UNKNOWN: no client address */
    int family;  /* AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC */
    struct sockaddr_storage src, dst;
    socklen_t srclen, dstlen;
    /* v2 PP2_TYPE_SSL */
    bool ssl;           /* PP2_CLIENT_SSL: the client used TLS to the proxy */
    bool cert_verified; /* a client certificate was presented and verified */
    char cn[256];       /* PP2_SUBTYPE_SSL_CN, NUL-terminated; "" when absent */
};

/* Parse one header at buf. Returns the header's length (> 0), 0 when more
 * bytes are needed, or -1 when the bytes can never be a valid header (*why
 * then says why, static text). */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h, const char **why);

/* A PROXY layer over `lower` that takes only `version` (1 or 2); with
 * require_tls (v2 only) a header whose SSL TLV does not say the client used
 * TLS is refused. NULL out of memory. */
struct stream *proxy_stream_new(struct stream *lower, int version, bool require_tls);
/* The header has been read and accepted. */
bool proxy_stream_done(const struct stream *s);
extern const struct stream_ops proxy_stream_ops;

#endif
