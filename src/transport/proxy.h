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
 * = the CN of a client certificate the proxy verified. A v2 CRC32C TLV,
 * when present, is checked. A missing, invalid or other-version header
 * fails the read (errno EPROTO, info->why "PROXY header: ..."): a listener
 * takes only the version it was configured for, as Mosquitto 2.1 does.
 * docs/internals/proxy.md has the rules.
 */
#ifndef HATO_TRANSPORT_PROXY_H
#define HATO_TRANSPORT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transport/stream.h"

/* The longest v1 header (with CRLF, the spec's worst case), and the longest
 * v2 header accepted: 16 bytes of fixed part and at most PROXY_V2_MAX_BODY
 * of addresses and TLVs (a proxy's header with the SSL TLV, a CN and a few
 * more TLVs is a few hundred bytes; the field itself allows 64 KiB). */
#define PROXY_V1_MAX 107
#define PROXY_V2_MAX_BODY 2048

struct proxy_header {
    int version; /* 1 or 2 */
    /* No client address: v2 LOCAL (a health check), a v2 AF_UNSPEC block,
     * or v1 UNKNOWN. The socket's addresses stay; the v2 block is skipped
     * unread (TLVs included), as the spec asks for LOCAL. */
    bool local;
    int family; /* AF_INET, AF_INET6, AF_UNIX; AF_UNSPEC when local */
    struct sockaddr_storage src, dst;
    socklen_t srclen, dstlen;
    /* v2 PP2_TYPE_SSL (at most one), else all false/zero/"" */
    bool ssl;             /* PP2_CLIENT_SSL: the client used TLS to the proxy */
    bool cert_verified;   /* PP2_CLIENT_SSL, a certificate (PP2_CLIENT_CERT_CONN or
                             _SESS) and verify == 0 */
    uint32_t verify;      /* the SSL TLV's verify field as sent (0: verified) */
    char tls_version[32]; /* PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"; "" when absent,
                             empty, longer than 31 bytes or holding a NUL */
    char cn[256];         /* PP2_SUBTYPE_SSL_CN, NUL-terminated; "" when absent */
    bool crc32c;          /* a PP2_TYPE_CRC32C TLV was present (and matched) */
};

/* Parse one header at buf. Returns the header's length (> 0), 0 when more
 * bytes are needed, or -1 when the bytes can never be a valid header (*why
 * then says why, static text). Every proper prefix of a valid header gives
 * 0; invalid bytes give -1 as soon as they are seen. */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h, const char **why);
/* Which version's signature buf starts with: 1 ("PROXY "), 2 (the 12-byte
 * v2 signature), 0 when too few bytes tell, -1 when neither. */
int proxy_detect(const uint8_t *buf, size_t len);

/* A PROXY layer over `lower` that takes only `version` (1 or 2); with
 * require_tls (v2 only) a header whose SSL TLV does not say the client used
 * TLS is refused. NULL out of memory. */
struct stream *proxy_stream_new(struct stream *lower, int version, bool require_tls);
/* The header has been read and accepted. */
bool proxy_stream_done(const struct stream *s);
extern const struct stream_ops proxy_stream_ops;

#endif
