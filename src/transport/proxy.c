/*
 * The PROXY protocol v1/v2 parser and layer. See proxy.h.
 */
#include "transport/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

enum {
    PP2_TYPE_CRC32C = 0x03,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_CLIENT_SSL = 0x01,
    PP2_CLIENT_CERT_CONN = 0x02,
    PP2_CLIENT_CERT_SESS = 0x04,
};

static uint16_t be16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int proxy_detect(const uint8_t *buf, size_t len) {
    if (len == 0)
        return 0;
    size_t n1 = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
    size_t n2 = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    bool may1 = !memcmp(buf, v1_sig, n1), may2 = !memcmp(buf, v2_sig, n2);
    if (may1 && n1 == sizeof(v1_sig) - 1)
        return 1;
    if (may2 && n2 == sizeof(v2_sig))
        return 2;
    return may1 || may2 ? 0 : -1;
}

/* ---- v1 ------------------------------------------------------------------ */

/* A decimal port 0..65535: digits only, no sign, no leading zero. */
static bool v1_port(const char *s, size_t n, uint16_t *out) {
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool v1_addr(int fam, const char *s, size_t n, uint16_t port, struct sockaddr_storage *ss,
                    socklen_t *sl) {
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    memset(ss, 0, sizeof(*ss));
    if (fam == AF_INET) {
        /* glibc's inet_pton takes exactly a.b.c.d, each 0..255 without
         * leading zeros: the spec's canonical form. */
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        *sl = sizeof(*a);
        return inet_pton(AF_INET, tmp, &a->sin_addr) == 1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    *sl = sizeof(*a);
    return inet_pton(AF_INET6, tmp, &a->sin6_addr) == 1;
}

/* Can the n bytes at p (no LF among them) still begin a valid v1 line?
 * Printable ASCII only, CR only as the last byte (before the LF to come),
 * a protocol field that is, or may become, TCP4, TCP6 or UNKNOWN, and after
 * TCP4/TCP6 only the characters of addresses, ports and single spaces. */
static const char *v1_prefix_bad(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 || p[i] > 0x7e) && !(p[i] == '\r' && i == n - 1))
            return p[i] == '\r' ? "v1 header: CR not followed by LF"
                                : "v1 header with a byte that is not printable ASCII";
    static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
    size_t i = sizeof(v1_sig) - 1, j = i;
    while (j < n && p[j] != ' ' && p[j] != '\r')
        j++;
    size_t fl = j - i;
    int proto = -1;
    for (int k = 0; k < 3; k++) {
        size_t pl = strlen(protos[k]);
        if (j < n ? fl == pl && !memcmp(p + i, protos[k], pl)
                  : fl <= pl && !memcmp(p + i, protos[k], fl)) {
            proto = k;
            break;
        }
    }
    if (proto < 0)
        return "v1 header: the protocol must be TCP4, TCP6 or UNKNOWN";
    if (proto == 2 || j == n)
        return NULL; /* anything may follow UNKNOWN */
    for (size_t k = j; k < n; k++) {
        uint8_t c = p[k];
        bool ok = c == ' ' || c == '\r' || (c >= '0' && c <= '9') || c == '.' ||
                  (proto == 1 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok || (c == ' ' && p[k - 1] == ' '))
            return proto == 0 ? "v1 header: bad IPv4 address" : "v1 header: bad IPv6 address";
    }
    return NULL;
}

static int parse_v1(const uint8_t *buf, size_t len, struct proxy_header *h, const char **why) {
    const char *p = (const char *)buf;
    size_t scan = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    const char *end = memchr(p, '\n', scan);
    size_t n = end ? (size_t)(end - p) : scan; /* bytes before the LF */
    if ((*why = v1_prefix_bad(buf, n)))
        return -1;
    if (!end) {
        if (len >= PROXY_V1_MAX) {
            *why = "v1 header: no CRLF within 107 bytes";
            return -1;
        }
        return 0;
    }
    if (n == 0 || p[n - 1] != '\r') {
        *why = "v1 header: LF without CR";
        return -1;
    }
    size_t total = n + 1;
    n--; /* without CRLF */
    /* Split on single spaces: PROXY PROTO SRC DST SPORT DPORT */
    const char *f[7];
    size_t fl[7], nf = 0;
    size_t i = 0;
    while (i <= n && nf < 7) {
        size_t j = i;
        while (j < n && p[j] != ' ')
            j++;
        f[nf] = p + i;
        fl[nf] = j - i;
        nf++;
        i = j + 1;
    }
    memset(h, 0, sizeof(*h));
    h->version = 1;
    if (fl[1] == 7 && !memcmp(f[1], "UNKNOWN", 7)) {
        /* Anything may follow UNKNOWN; the socket's addresses stay. */
        h->local = true;
        h->family = AF_UNSPEC;
        return (int)total;
    }
    int fam = fl[1] == 4 && !memcmp(f[1], "TCP4", 4) ? AF_INET : AF_INET6;
    uint16_t sport, dport;
    if (nf != 6 || i != n + 1) {
        *why = "v1 header: expected PROXY TCPn SRC DST SPORT DPORT separated by single spaces";
        return -1;
    }
    if (!v1_port(f[4], fl[4], &sport) || !v1_port(f[5], fl[5], &dport)) {
        *why = "v1 header: a port must be a number 0..65535 without leading zeros";
        return -1;
    }
    if (!v1_addr(fam, f[2], fl[2], sport, &h->src, &h->srclen) ||
        !v1_addr(fam, f[3], fl[3], dport, &h->dst, &h->dstlen)) {
        *why = fam == AF_INET ? "v1 header: bad IPv4 address" : "v1 header: bad IPv6 address";
        return -1;
    }
    h->family = fam;
    return (int)total;
}

/* ---- v2 ------------------------------------------------------------------ */

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: a
 * header is at most a couple of KiB, once per connection. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return crc;
}

/* The SSL TLV's value: client flags, verify, then sub-TLVs. */
static int parse_ssl(const uint8_t *v, size_t l, struct proxy_header *h, const char **why) {
    if (l < 5) {
        *why = "v2 header: SSL TLV shorter than 5 bytes";
        return -1;
    }
    uint8_t client = v[0];
    h->verify = be32(v + 1);
    h->ssl = client & PP2_CLIENT_SSL;
    h->cert_verified =
        h->ssl && (client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) && h->verify == 0;
    const uint8_t *s = v + 5;
    size_t sn = l - 5;
    bool seen_cn = false;
    while (sn) {
        if (sn < 3 || be16(s + 1) > sn - 3) {
            *why = "v2 header: SSL sub-TLV longer than the SSL TLV";
            return -1;
        }
        size_t sl = be16(s + 1);
        const uint8_t *sv = s + 3;
        if (s[0] == PP2_SUBTYPE_SSL_CN) {
            if (seen_cn) {
                *why = "v2 header: two SSL CN sub-TLVs";
                return -1;
            }
            seen_cn = true;
            if (sl == 0 || sl >= sizeof(h->cn) || memchr(sv, 0, sl)) {
                *why = "v2 header: SSL CN empty, longer than 255 bytes or with a NUL byte";
                return -1;
            }
            memcpy(h->cn, sv, sl);
            h->cn[sl] = 0;
        } else if (s[0] == PP2_SUBTYPE_SSL_VERSION) {
            /* Informational: kept when it fits and is a string. */
            if (sl < sizeof(h->tls_version) && !memchr(sv, 0, sl)) {
                memcpy(h->tls_version, sv, sl);
                h->tls_version[sl] = 0;
            }
        }
        s += 3 + sl;
        sn -= 3 + sl;
    }
    return 0;
}

/* The TLVs from offset `at` to the end of the header (hdr, total bytes):
 * PP2_TYPE_SSL read, PP2_TYPE_CRC32C checked, the others skipped. */
static int parse_tlvs(const uint8_t *hdr, size_t total, size_t at, struct proxy_header *h,
                      const char **why) {
    size_t crc_at = 0;
    bool seen_ssl = false;
    while (at < total) {
        if (total - at < 3) {
            *why = "v2 header: truncated TLV";
            return -1;
        }
        uint8_t type = hdr[at];
        size_t l = be16(hdr + at + 1);
        if (l > total - at - 3) {
            *why = "v2 header: TLV longer than the header";
            return -1;
        }
        const uint8_t *v = hdr + at + 3;
        if (type == PP2_TYPE_SSL) {
            if (seen_ssl) {
                *why = "v2 header: two SSL TLVs";
                return -1;
            }
            seen_ssl = true;
            if (parse_ssl(v, l, h, why) < 0)
                return -1;
        } else if (type == PP2_TYPE_CRC32C) {
            if (l != 4) {
                *why = "v2 header: CRC32C TLV not 4 bytes long";
                return -1;
            }
            if (crc_at) {
                *why = "v2 header: two CRC32C TLVs";
                return -1;
            }
            crc_at = at + 3;
        }
        at += 3 + l;
    }
    if (crc_at) {
        static const uint8_t zero[4] = {0};
        uint32_t c = crc32c(0xFFFFFFFFu, hdr, crc_at);
        c = crc32c(c, zero, 4);
        c = crc32c(c, hdr + crc_at + 4, total - crc_at - 4) ^ 0xFFFFFFFFu;
        if (c != be32(hdr + crc_at)) {
            *why = "v2 header: CRC32C mismatch";
            return -1;
        }
        h->crc32c = true;
    }
    return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, struct proxy_header *h, const char **why) {
    /* The fixed part is checked byte by byte as it arrives. */
    if (len > 12 && buf[12] >> 4 != 2) {
        *why = "v2 header: version is not 2";
        return -1;
    }
    if (len > 12 && (buf[12] & 0x0F) > 1) {
        *why = "v2 header: command is neither LOCAL nor PROXY";
        return -1;
    }
    if (len > 13 && (buf[13] >> 4 > 3 || (buf[13] & 0x0F) > 2)) {
        *why = "v2 header: unknown address family or transport protocol";
        return -1;
    }
    if (len < 16)
        return 0;
    uint8_t cmd = buf[12] & 0x0F, fam = buf[13] >> 4, proto = buf[13] & 0x0F;
    size_t body = be16(buf + 14);
    if (body > PROXY_V2_MAX_BODY) {
        *why = "v2 header longer than 16 + 2048 bytes";
        return -1;
    }
    if (len < 16 + body)
        return 0;
    memset(h, 0, sizeof(*h));
    h->version = 2;
    if (cmd == 0 || fam == 0) {
        /* LOCAL: "discard the protocol block including the family"; an
         * AF_UNSPEC block has no address to read either. */
        h->local = true;
        h->family = AF_UNSPEC;
        return (int)(16 + body);
    }
    if (proto != 1) {
        *why = "v2 header: only STREAM connections are proxied to an MQTT listener";
        return -1;
    }
    const uint8_t *a = buf + 16;
    size_t alen = fam == 1 ? 12 : fam == 2 ? 36 : 216;
    if (body < alen) {
        *why = "v2 header: shorter than its addresses";
        return -1;
    }
    if (fam == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        h->srclen = h->dstlen = sizeof(*s);
        h->family = AF_INET;
    } else if (fam == 2) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src,
                            *d = (struct sockaddr_in6 *)&h->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        h->srclen = h->dstlen = sizeof(*s);
        h->family = AF_INET6;
    } else {
        struct sockaddr_un *s = (struct sockaddr_un *)&h->src, *d = (struct sockaddr_un *)&h->dst;
        s->sun_family = d->sun_family = AF_UNIX;
        memcpy(s->sun_path, a, 108);
        memcpy(d->sun_path, a + 108, 108);
        s->sun_path[sizeof(s->sun_path) - 1] = d->sun_path[sizeof(d->sun_path) - 1] = 0;
        h->srclen = h->dstlen = sizeof(*s);
        h->family = AF_UNIX;
    }
    if (parse_tlvs(buf, 16 + body, 16 + alen, h, why) < 0)
        return -1;
    return (int)(16 + body);
}

int proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h, const char **why) {
    *why = NULL;
    switch (proxy_detect(buf, len)) {
    case 1:
        return parse_v1(buf, len, h, why);
    case 2:
        return parse_v2(buf, len, h, why);
    case 0:
        return 0;
    default:
        *why = "no PROXY protocol header";
        return -1;
    }
}

/* ---- the layer ---------------------------------------------------------- */

struct proxy_stream {
    struct stream s;
    int version;
    bool require_tls;
    bool done;
    bool failed;
    uint8_t *buf; /* the header while it arrives; then the bytes read past it */
    size_t len, off, cap;
};

static ssize_t give_kept(struct proxy_stream *p, void *buf, size_t len) {
    size_t n = p->len - p->off;
    if (n > len)
        n = len;
    memcpy(buf, p->buf + p->off, n);
    p->off += n;
    if (p->off == p->len) {
        free(p->buf);
        p->buf = NULL;
        p->len = p->off = p->cap = 0;
    }
    return (ssize_t)n;
}

static int accept_header(struct proxy_stream *p, const struct proxy_header *h) {
    struct stream_info *info = p->s.info;
    if (p->require_tls && !h->ssl)
        return stream_fail(&p->s, EPROTO,
                           "PROXY header: the client did not use TLS "
                           "(proxy_protocol_v2_require_tls)");
    if (info) {
        info->proxy_tls = h->ssl;
        if (h->cert_verified && h->cn[0]) {
            char *cn = strdup(h->cn);
            if (!cn)
                return stream_fail(&p->s, ENOMEM, "out of memory");
            free(info->identity);
            info->identity = cn;
        }
        if (!h->local) {
            char *via = strdup(info->peer);
            if (!via)
                return stream_fail(&p->s, ENOMEM, "out of memory");
            free(info->via);
            info->via = via;
            stream_format_addr((const struct sockaddr *)&h->src, h->srclen, info->peer,
                               sizeof(info->peer));
        }
    }
    return 0;
}

static ssize_t proxy_read(struct stream *s, void *buf, size_t len) {
    struct proxy_stream *p = (struct proxy_stream *)s;
    if (p->failed) {
        errno = EPROTO;
        return -1;
    }
    if (p->done) {
        if (p->len > p->off)
            return give_kept(p, buf, len);
        return stream_read(s->lower, buf, len);
    }
    /* Each round reads at least one byte into a buffer no longer than the
     * longest header of the listener's version, so the loop is bounded. */
    for (;;) {
        if (!p->buf) {
            p->cap = p->version == 1 ? PROXY_V1_MAX : 16 + PROXY_V2_MAX_BODY;
            if (!(p->buf = malloc(p->cap)))
                return stream_fail(s, ENOMEM, "out of memory");
        }
        ssize_t r = stream_read(s->lower, p->buf + p->len, p->cap - p->len);
        if (r < 0)
            return -1;
        if (r == 0) {
            p->failed = true;
            if (p->len)
                return stream_fail(s, EPROTO, "PROXY header: connection closed in the middle");
            return 0;
        }
        p->len += (size_t)r;
        /* The other version is refused as soon as its signature shows. */
        int v = proxy_detect(p->buf, p->len);
        if (v > 0 && v != p->version) {
            p->failed = true;
            return stream_fail(s, EPROTO, "PROXY header: version %d, but the listener takes %d", v,
                               p->version);
        }
        struct proxy_header h;
        const char *why;
        int n = proxy_parse(p->buf, p->len, &h, &why);
        if (n < 0) {
            p->failed = true;
            return stream_fail(s, EPROTO, "PROXY header: %s", why);
        }
        if (n == 0) {
            if (p->len == p->cap) { /* cannot happen: both parsers decide by then */
                p->failed = true;
                return stream_fail(s, EPROTO, "PROXY header: too long");
            }
            continue; /* read again: EAGAIN from below ends the loop */
        }
        if (accept_header(p, &h) < 0) {
            p->failed = true;
            return -1;
        }
        p->done = true;
        p->off = (size_t)n;
        if (p->off == p->len) {
            free(p->buf);
            p->buf = NULL;
            p->len = p->off = p->cap = 0;
            return stream_read(s->lower, buf, len);
        }
        return give_kept(p, buf, len);
    }
}

static ssize_t proxy_writev(struct stream *s, const struct iovec *iov, int n) {
    return stream_writev(s->lower, iov, n);
}

static int proxy_flush(struct stream *s) {
    return stream_flush(s->lower);
}

static unsigned proxy_wants(const struct stream *s) {
    return stream_wants(s->lower);
}

static bool proxy_pending(const struct stream *s) {
    const struct proxy_stream *p = (const struct proxy_stream *)s;
    return (p->done && p->len > p->off) || stream_pending(s->lower);
}

static void proxy_shutdown(struct stream *s) {
    stream_shutdown(s->lower);
}

static void proxy_destroy(struct stream *s) {
    struct proxy_stream *p = (struct proxy_stream *)s;
    free(p->buf);
    free(p);
}

const struct stream_ops proxy_stream_ops = {
    .name = "proxy",
    .read = proxy_read,
    .writev = proxy_writev,
    .flush = proxy_flush,
    .wants = proxy_wants,
    .pending = proxy_pending,
    .shutdown = proxy_shutdown,
    .destroy = proxy_destroy,
};

struct stream *proxy_stream_new(struct stream *lower, int version, bool require_tls) {
    struct proxy_stream *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->s = (struct stream){
        .ops = &proxy_stream_ops, .lower = lower, .info = lower->info, .fd = lower->fd};
    p->version = version;
    p->require_tls = require_tls;
    return &p->s;
}

bool proxy_stream_done(const struct stream *s) {
    return ((const struct proxy_stream *)s)->done;
}
