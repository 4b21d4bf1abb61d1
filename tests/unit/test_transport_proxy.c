/*
 * Unit tests of the PROXY protocol parser and layer (src/transport/proxy.h)
 * against HAProxy's PROXY protocol spec (doc/proxy-protocol.txt, 2020/03/05,
 * as Debian's haproxy ships it): 2.1 the human-readable header (v1), 2.2 the
 * binary header (v2) and its TLVs, 2.2.3 PP2_TYPE_CRC32C, 2.2.6 PP2_TYPE_SSL
 * with the client flags and the PP2_SUBTYPE_SSL_VERSION / _CN sub-TLVs. Each
 * test is named after the section it checks. The layer is tested over a
 * socketpair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/proxy.h"
#include "transport/stream.h"

/* ---- helpers ------------------------------------------------------------- */

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int parse(const void *p, size_t n, struct proxy_header *h, const char **why) {
    return proxy_parse(p, n, h, why);
}

/* The whole string parses as one header of exactly its length. */
static void v1_ok(const char *s, struct proxy_header *h) {
    const char *why = "unset";
    int r = parse(s, strlen(s), h, &why);
    if (r != (int)strlen(s))
        fail_msg("'%s' -> %d (%s)", s, r, why ? why : "");
    assert_int_equal(h->version, 1);
}

/* The string (complete or not) is refused at once, with a reason. */
static void refused(const void *p, size_t n) {
    struct proxy_header h;
    const char *why = NULL;
    int r = parse(p, n, &h, &why);
    if (r != -1)
        fail_msg("%.*s -> %d, expected -1", (int)n, (const char *)p, r);
    assert_non_null(why);
}

static void v1_bad(const char *s) {
    refused(s, strlen(s));
}

/* Every strict prefix of a valid header asks for more, never fails. */
static void prefixes_need_more(const uint8_t *p, size_t n) {
    for (size_t k = 0; k < n; k++) {
        struct proxy_header h;
        const char *why = NULL;
        int r = parse(p, k, &h, &why);
        if (r != 0)
            fail_msg("prefix of %zu of %zu bytes -> %d (%s)", k, n, r, why ? why : "");
    }
}

static void ip4(const struct sockaddr_storage *ss, const char *ip, uint16_t port) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    assert_int_equal(a->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(a->sin_port), port);
}

static void ip6(const struct sockaddr_storage *ss, const char *ip, uint16_t port) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(a->sin6_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(a->sin6_port), port);
}

/* A v2 header: signature, ver/cmd, fam/proto, length, then body. */
static size_t v2(uint8_t *out, uint8_t vercmd, uint8_t famproto, const uint8_t *body, size_t blen) {
    memcpy(out, sig, 12);
    out[12] = vercmd;
    out[13] = famproto;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

/* IPv4 addresses 192.0.2.1:5000 -> 198.51.100.7:1883. */
static const uint8_t inet_addrs[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0x13, 0x88, 0x07, 0x5B};

/* Append a TLV; returns the new length. */
static size_t tlv(uint8_t *p, size_t at, uint8_t type, const void *v, size_t n) {
    p[at] = type;
    p[at + 1] = (uint8_t)(n >> 8);
    p[at + 2] = (uint8_t)n;
    if (n)
        memcpy(p + at + 3, v, n);
    return at + 3 + n;
}

/* The value of a PP2_TYPE_SSL TLV: client flags, verify, then sub-TLVs
 * (a CN when cn is given, cnlen bytes of it). */
static size_t ssl_value(uint8_t *v, uint8_t client, uint32_t verify, const char *cn, size_t cnlen) {
    v[0] = client;
    v[1] = (uint8_t)(verify >> 24);
    v[2] = (uint8_t)(verify >> 16);
    v[3] = (uint8_t)(verify >> 8);
    v[4] = (uint8_t)verify;
    size_t n = 5;
    n = tlv(v, n, 0x21, "TLSv1.3", 7); /* PP2_SUBTYPE_SSL_VERSION */
    if (cn)
        n = tlv(v, n, 0x22, cn, cnlen);
    return n;
}

/* A v2 PROXY TCP4 header with one SSL TLV. */
static size_t v2_ssl(uint8_t *out, uint8_t client, uint32_t verify, const char *cn, size_t cnlen) {
    uint8_t body[1024], val[512];
    memcpy(body, inet_addrs, 12);
    size_t vn = ssl_value(val, client, verify, cn, cnlen);
    size_t bn = tlv(body, 12, 0x20, val, vn);
    return v2(out, 0x21, 0x11, body, bn);
}

/* ---- 2.1 v1 ------------------------------------------------------------- */

static void test_2_1_v1_tcp4(void **state) {
    (void)state;
    struct proxy_header h;
    v1_ok("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &h);
    assert_false(h.local);
    assert_int_equal(h.family, AF_INET);
    ip4(&h.src, "192.168.0.1", 56324);
    ip4(&h.dst, "192.168.0.11", 443);
    assert_int_equal(h.srclen, sizeof(struct sockaddr_in));
    assert_false(h.ssl);
    assert_string_equal(h.cn, "");
    /* The extremes of the port range. */
    v1_ok("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", &h);
    ip4(&h.src, "0.0.0.0", 0);
    ip4(&h.dst, "255.255.255.255", 65535);
}

static void test_2_1_v1_tcp6(void **state) {
    (void)state;
    struct proxy_header h;
    v1_ok("PROXY TCP6 2001:db8::1 ::1 1 1883\r\n", &h);
    assert_int_equal(h.family, AF_INET6);
    ip6(&h.src, "2001:db8::1", 1);
    ip6(&h.dst, "::1", 1883);
    assert_int_equal(h.srclen, sizeof(struct sockaddr_in6));
    v1_ok("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
          &h);
    ip6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    v1_ok("PROXY TCP6 ::ffff:192.0.2.1 ::1 5 6\r\n", &h);
    ip6(&h.src, "::ffff:192.0.2.1", 5);
}

static void test_2_1_v1_unknown(void **state) {
    (void)state;
    struct proxy_header h;
    v1_ok("PROXY UNKNOWN\r\n", &h);
    assert_true(h.local);
    assert_int_equal(h.family, AF_UNSPEC);
    /* "the receiver must ignore anything presented before the CRLF" */
    v1_ok("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", &h);
    assert_true(h.local);
    v1_ok("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", &h);
    assert_true(h.local);
    /* UNKNOWN must be the whole word. */
    v1_bad("PROXY UNKNOWNX\r\n");
    v1_bad("PROXY unknown\r\n");
}

static void test_2_1_v1_protocol(void **state) {
    (void)state;
    v1_bad("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    v1_bad("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
    v1_bad("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
    v1_bad("PROXY \r\n");
    v1_bad("PROXY\r\n");
    v1_bad("PROXY TCP4\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");     /* a field missing */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"); /* one too many */
    v1_bad("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");   /* the signature is upper case */
    v1_bad("PROXY_TCP4 1.2.3.4 5.6.7.8 1 2\r\n");   /* and ends with a space */
}

static void test_2_1_v1_bad_ports(void **state) {
    (void)state;
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 100000 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 +1 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 01 1\r\n"); /* no leading zero */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1a 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 1\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 http 1\r\n");
}

static void test_2_1_v1_bad_addresses(void **state) {
    (void)state;
    v1_bad("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"); /* no octal-looking octets */
    v1_bad("PROXY TCP4 localhost 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"); /* the family must match TCP4 */
    v1_bad("PROXY TCP4 1.2.3.4 ::1 1 2\r\n");
    v1_bad("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"); /* and TCP6 */
    v1_bad("PROXY TCP6 ::1 1.2.3.4 1 2\r\n");
    v1_bad("PROXY TCP6 ::1::2 ::1 1 2\r\n");
    v1_bad("PROXY TCP6 [::1] ::1 1 2\r\n");
    v1_bad("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n");
    v1_bad("PROXY TCP6 12345::1 ::1 1 2\r\n");
}

static void test_2_1_v1_spacing(void **state) {
    (void)state;
    v1_bad("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n");
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"); /* trailing space */
    v1_bad("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"); /* a tab is no space */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n");
}

static void test_2_1_v1_crlf(void **state) {
    (void)state;
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");     /* LF alone */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"); /* CR in the last port */
    v1_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\r 2\r\n");
    v1_bad("PROXY UNKNOWN\n");
    v1_bad("PROXY \n");
    /* A control byte or NUL before the end fails at once, without waiting for the LF. */
    refused("PROXY TCP4 1.2.3.4\x00", 19);
    refused("PROXY TCP4 1.2.3.4\t", 19);
    refused("PROXY \x01", 7);
    /* The header ends at its CRLF: what follows is not read. */
    struct proxy_header h;
    const char *why;
    const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\x10\x0c\x00\x04MQTT";
    assert_int_equal(parse(s, strlen(s) + 5, &h, &why), 32);
    s = "PROXY UNKNOWN\r\nPROXY TCP4";
    assert_int_equal(parse(s, strlen(s), &h, &why), 15);
}

static void test_2_1_v1_length_bound(void **state) {
    (void)state;
    /* The worst case in the spec: 107 bytes with the CRLF. */
    const char *max = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(max), PROXY_V1_MAX);
    struct proxy_header h;
    v1_ok(max, &h);
    assert_true(h.local);
    /* 108 bytes: refused once 107 bytes came without the LF. */
    char over[256];
    snprintf(over, sizeof(over), "PROXY UNKNOWN %s\r\n",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
             "65535 655355");
    assert_int_equal(strlen(over), PROXY_V1_MAX + 1);
    const char *why;
    assert_int_equal(parse(over, PROXY_V1_MAX - 1, &h, &why), 0);
    refused(over, PROXY_V1_MAX);
    refused(over, strlen(over));
    /* A long run of printable bytes after UNKNOWN (anything may follow it)
     * without a LF: waited for up to 107 bytes, then refused. */
    char run[300];
    memset(run, 'a', sizeof(run));
    memcpy(run, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse(run, 106, &h, &why), 0);
    refused(run, 107);
    refused(run, sizeof(run));
}

static void test_2_1_v1_prefixes(void **state) {
    (void)state;
    const char *valid[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 2001:db8::1 ::1 1 1883\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        prefixes_need_more((const uint8_t *)valid[i], strlen(valid[i]));
}

/* "It is recommended to abort the connection as soon as possible": bytes no
 * valid line can hold are refused before its CRLF arrives. */
static void test_2_1_v1_early(void **state) {
    (void)state;
    refused("PROXY X", 7);               /* no protocol starts with X */
    refused("PROXY TCP44", 11);          /* TCP4 is the whole word */
    refused("PROXY UNKNOWNX", 14);       /* and so is UNKNOWN */
    refused("PROXY TCP4 1.2.3.a", 18);   /* a hex digit in an IPv4 line */
    refused("PROXY TCP4 ::1", 14);       /* a colon in an IPv4 line */
    refused("PROXY TCP6 ::g", 14);       /* no hex digit */
    refused("PROXY TCP4 1.2.3.4  ", 20); /* two spaces */
    refused("PROXY TCP4 1.2\r3", 16);    /* CR not followed by LF */
    refused("PROXY TCP4 1.2.3.4\x80", 19);
    refused("PROXY UNKNOWN \xff", 15); /* printable ASCII even after UNKNOWN */
    /* Still waiting: each of these can become a valid line. */
    const char *wait[] = {"PROXY T",
                          "PROXY TCP",
                          "PROXY UNK",
                          "PROXY TCP6 2001:DB8::",
                          "PROXY TCP6 ::ffff:1.2.3.4 ",
                          "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
                          "PROXY UNKNOWN whatever  the proxy  says"};
    for (size_t i = 0; i < sizeof(wait) / sizeof(wait[0]); i++) {
        struct proxy_header h;
        const char *why = NULL;
        int r = parse(wait[i], strlen(wait[i]), &h, &why);
        if (r != 0)
            fail_msg("'%s' -> %d (%s), expected 0", wait[i], r, why ? why : "");
    }
}

/* Bytes that cannot start either signature are refused at the first byte
 * that differs. */
static void test_2_garbage(void **state) {
    (void)state;
    struct proxy_header h;
    const char *why = "unset";
    assert_int_equal(parse("", 0, &h, &why), 0);
    refused("\x10", 1); /* an MQTT CONNECT */
    refused("\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c", 12);
    refused("\x16\x03\x01", 3); /* a TLS ClientHello */
    refused("GET / HTTP/1.1\r\n\r\n", 18);
    refused("G", 1);
    refused("PROXx", 5);
    refused("proxy", 5);
    refused(" PROXY TCP4", 11);
    refused("\r\n\r\n\x00\r\nQUIX", 12); /* the v2 signature, one byte off */
    refused("\r\n\r\n\x01", 5);
    refused("\r\x0d", 2);
    refused("\x00", 1);
    /* Yet every prefix of a signature waits. */
    prefixes_need_more((const uint8_t *)"PROXY ", 6);
    prefixes_need_more(sig, 12);
}

/* ---- 2.2 v2 ------------------------------------------------------------- */

static void test_2_2_v2_proxy_inet(void **state) {
    (void)state;
    uint8_t b[64];
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 12);
    struct proxy_header h;
    const char *why = NULL;
    assert_int_equal(parse(b, n, &h, &why), 28);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_int_equal(h.family, AF_INET);
    ip4(&h.src, "192.0.2.1", 5000);
    ip4(&h.dst, "198.51.100.7", 1883);
    assert_int_equal(h.srclen, sizeof(struct sockaddr_in));
    assert_int_equal(h.dstlen, sizeof(struct sockaddr_in));
    assert_false(h.ssl);
    assert_false(h.cert_verified);
    assert_string_equal(h.cn, "");
    /* Bytes after the header are not part of it. */
    memcpy(b + n, "\x10\x0c", 2);
    assert_int_equal(parse(b, n + 2, &h, &why), 28);
}

static void test_2_2_v2_proxy_inet6(void **state) {
    (void)state;
    uint8_t body[36] = {0}, b[64];
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 1; /* 2001:db8::1 */
    body[31] = 1;                                                                 /* ::1 */
    body[32] = 0xC0, body[33] = 0x01;                                             /* 49153 */
    body[34] = 0x22, body[35] = 0xB3;                                             /* 8883 */
    size_t n = v2(b, 0x21, 0x21, body, 36);
    struct proxy_header h;
    const char *why;
    assert_int_equal(parse(b, n, &h, &why), 52);
    assert_false(h.local);
    assert_int_equal(h.family, AF_INET6);
    ip6(&h.src, "2001:db8::1", 49153);
    ip6(&h.dst, "::1", 8883);
    assert_int_equal(h.srclen, sizeof(struct sockaddr_in6));
}

static void test_2_2_v2_proxy_unix(void **state) {
    (void)state;
    uint8_t body[216] = {0}, b[256];
    memcpy(body, "/run/client.sock", 16);
    memcpy(body + 108, "/run/hato.sock", 14);
    size_t n = v2(b, 0x21, 0x31, body, 216);
    struct proxy_header h;
    const char *why;
    assert_int_equal(parse(b, n, &h, &why), 232);
    assert_false(h.local);
    assert_int_equal(h.family, AF_UNIX);
    const struct sockaddr_un *s = (const struct sockaddr_un *)&h.src;
    const struct sockaddr_un *d = (const struct sockaddr_un *)&h.dst;
    assert_int_equal(s->sun_family, AF_UNIX);
    assert_string_equal(s->sun_path, "/run/client.sock");
    assert_string_equal(d->sun_path, "/run/hato.sock");
    /* A path filling all 108 bytes stays NUL-terminated. */
    memset(body, 'x', 108);
    n = v2(b, 0x21, 0x31, body, 216);
    assert_int_equal(parse(b, n, &h, &why), 232);
    s = (const struct sockaddr_un *)&h.src;
    assert_int_equal(strnlen(s->sun_path, sizeof(s->sun_path)), sizeof(s->sun_path) - 1);
    /* SOCK_DGRAM over UNIX is no MQTT connection. */
    n = v2(b, 0x21, 0x32, body, 216);
    refused(b, n);
}

static void test_2_2_v2_unspec(void **state) {
    (void)state;
    uint8_t b[64];
    struct proxy_header h;
    const char *why;
    /* PROXY over AF_UNSPEC: the receiver uses the real endpoints. */
    size_t n = v2(b, 0x21, 0x00, NULL, 0);
    assert_int_equal(parse(b, n, &h, &why), 16);
    assert_int_equal(h.version, 2);
    assert_true(h.local);
    assert_int_equal(h.family, AF_UNSPEC);
    /* ... and TLVs may still follow, with no address block. */
    uint8_t body[16];
    size_t bn = tlv(body, 0, 0x04, "\0\0\0", 3); /* PP2_TYPE_NOOP */
    n = v2(b, 0x21, 0x00, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.local);
}

static void test_2_2_v2_local(void **state) {
    (void)state;
    uint8_t b[64];
    struct proxy_header h;
    const char *why;
    /* A health check: LOCAL over UNSPEC, no body. */
    size_t n = v2(b, 0x20, 0x00, NULL, 0);
    assert_int_equal(parse(b, n, &h, &why), 16);
    assert_int_equal(h.version, 2);
    assert_true(h.local);
    assert_int_equal(h.family, AF_UNSPEC);
    /* LOCAL with an address block: "the receiver must accept this connection
     * as valid and must use the real connection endpoints and discard the
     * protocol block including the family which is ignored". */
    n = v2(b, 0x20, 0x11, inet_addrs, 12);
    why = NULL;
    int r = parse(b, n, &h, &why);
    if (r != 28)
        fail_msg("LOCAL TCP4 with addresses -> %d (%s)", r, why ? why : "");
    assert_true(h.local);
    assert_int_equal(h.family, AF_UNSPEC);
}

static void test_2_2_v2_bad_version_command(void **state) {
    (void)state;
    uint8_t b[64];
    size_t n;
    /* The version is the high nibble of byte 13: only 2. */
    n = v2(b, 0x11, 0x11, inet_addrs, 12);
    refused(b, n);
    refused(b, 13); /* known as soon as that byte is there */
    n = v2(b, 0x31, 0x11, inet_addrs, 12);
    refused(b, n);
    n = v2(b, 0x01, 0x11, inet_addrs, 12);
    refused(b, n);
    /* The command: LOCAL (0) or PROXY (1). */
    n = v2(b, 0x22, 0x11, inet_addrs, 12);
    refused(b, 13);
    n = v2(b, 0x2F, 0x11, inet_addrs, 12);
    refused(b, n);
    /* Families 0..3, protocols 0..2. */
    n = v2(b, 0x21, 0x41, inet_addrs, 12);
    refused(b, 14);
    n = v2(b, 0x21, 0x13, inet_addrs, 12);
    refused(b, 14);
    n = v2(b, 0x21, 0xF1, inet_addrs, 12);
    refused(b, n);
    /* Proxied datagrams or an unspecified protocol are no MQTT stream. */
    n = v2(b, 0x21, 0x12, inet_addrs, 12);
    refused(b, n);
    n = v2(b, 0x21, 0x10, inet_addrs, 12);
    refused(b, n);
}

static void test_2_2_v2_length(void **state) {
    (void)state;
    uint8_t b[16 + PROXY_V2_MAX_BODY + 16];
    struct proxy_header h;
    const char *why;
    /* Shorter than the addresses of its family. */
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 11);
    refused(b, n);
    uint8_t zero[216] = {0};
    n = v2(b, 0x21, 0x21, zero, 35);
    refused(b, n);
    n = v2(b, 0x21, 0x31, zero, 215);
    refused(b, n);
    /* Over the bound: refused from the fixed part alone. */
    b[12] = 0x21, b[13] = 0x11;
    b[14] = (uint8_t)((PROXY_V2_MAX_BODY + 1) >> 8);
    b[15] = (uint8_t)(PROXY_V2_MAX_BODY + 1);
    refused(b, 16);
    b[14] = 0xFF, b[15] = 0xFF;
    refused(b, 16);
    /* At the bound: addresses and a NOOP TLV filling the rest. */
    uint8_t body[PROXY_V2_MAX_BODY];
    memset(body, 0, sizeof(body));
    memcpy(body, inet_addrs, 12);
    size_t pad = PROXY_V2_MAX_BODY - 12 - 3;
    body[12] = 0x04;
    body[13] = (uint8_t)(pad >> 8);
    body[14] = (uint8_t)pad;
    n = v2(b, 0x21, 0x11, body, sizeof(body));
    assert_int_equal(n, 16 + PROXY_V2_MAX_BODY);
    assert_int_equal(parse(b, n - 1, &h, &why), 0);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    ip4(&h.src, "192.0.2.1", 5000);
}

static void test_2_2_v2_prefixes(void **state) {
    (void)state;
    uint8_t b[1024];
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 12);
    prefixes_need_more(b, n);
    n = v2(b, 0x20, 0x00, NULL, 0);
    prefixes_need_more(b, n);
    n = v2_ssl(b, 0x07, 0, "client.example", 14);
    prefixes_need_more(b, n);
    struct proxy_header h;
    const char *why;
    assert_int_equal(parse(b, n, &h, &why), (int)n);
}

/* ---- 2.2 TLVs, 2.2.3 CRC32C, 2.2.6 SSL ----------------------------------- */

static void test_2_2_v2_tlv_walk(void **state) {
    (void)state;
    uint8_t body[512], b[600];
    struct proxy_header h;
    const char *why;
    memcpy(body, inet_addrs, 12);
    size_t bn = 12;
    bn = tlv(body, bn, 0x01, "mqtt", 4);            /* PP2_TYPE_ALPN */
    bn = tlv(body, bn, 0x02, "broker.example", 14); /* PP2_TYPE_AUTHORITY */
    bn = tlv(body, bn, 0x04, NULL, 0);              /* PP2_TYPE_NOOP, empty */
    bn = tlv(body, bn, 0x05, "id", 2);              /* PP2_TYPE_UNIQUE_ID */
    bn = tlv(body, bn, 0xE0, "custom", 6);          /* PP2_TYPE_MIN_CUSTOM */
    bn = tlv(body, bn, 0x30, "ns", 2);              /* PP2_TYPE_NETNS */
    size_t n = v2(b, 0x21, 0x11, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    ip4(&h.src, "192.0.2.1", 5000);
    assert_false(h.ssl);
    /* Truncated: one or two bytes left after the last TLV. */
    body[bn] = 0x04;
    n = v2(b, 0x21, 0x11, body, bn + 1);
    refused(b, n);
    body[bn + 1] = 0;
    n = v2(b, 0x21, 0x11, body, bn + 2);
    refused(b, n);
    /* A TLV longer than what is left of the header. */
    bn = tlv(body, 12, 0x01, "mqtt", 4);
    body[14] = 5;
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    body[13] = 0xFF;
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
}

static void test_2_2_6_ssl_flags(void **state) {
    (void)state;
    uint8_t b[600];
    struct proxy_header h;
    const char *why;
    /* PP2_CLIENT_SSL alone: TLS to the proxy, no certificate. */
    size_t n = v2_ssl(b, 0x01, 0, NULL, 0);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.ssl);
    assert_false(h.cert_verified);
    assert_string_equal(h.cn, "");
    /* PP2_CLIENT_CERT_CONN with verify 0: verified. */
    n = v2_ssl(b, 0x03, 0, "alice", 5);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.ssl);
    assert_true(h.cert_verified);
    assert_string_equal(h.cn, "alice");
    /* PP2_CLIENT_CERT_SESS (a resumed session) counts as well. */
    n = v2_ssl(b, 0x05, 0, "bob", 3);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.cert_verified);
    assert_string_equal(h.cn, "bob");
    /* A certificate that failed verification (verify != 0). */
    n = v2_ssl(b, 0x07, 1, "mallory", 7);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.ssl);
    assert_false(h.cert_verified);
    n = v2_ssl(b, 0x03, 0x80000000u, "mallory", 7);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_false(h.cert_verified);
    /* No certificate flag: verify 0 means nothing. */
    n = v2_ssl(b, 0x01, 0, "eve", 3);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_false(h.cert_verified);
    /* Not over TLS at all. */
    n = v2_ssl(b, 0x00, 0, NULL, 0);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_false(h.ssl);
    assert_false(h.cert_verified);
}

static void test_2_2_6_ssl_malformed(void **state) {
    (void)state;
    uint8_t body[64], b[128];
    memcpy(body, inet_addrs, 12);
    /* The SSL TLV holds at least client (1) and verify (4). */
    size_t bn = tlv(body, 12, 0x20, "\x01\0\0\0", 4);
    size_t n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    bn = tlv(body, 12, 0x20, NULL, 0);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    /* A sub-TLV cut short, or longer than its SSL TLV. */
    bn = tlv(body, 12, 0x20, "\x01\0\0\0\0\x22\0", 7);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    bn = tlv(body, 12, 0x20,
             "\x01\0\0\0\0\x22\0\x05"
             "ab",
             10);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    /* ... even when the outer header has the bytes. */
    bn = tlv(body, 12, 0x20,
             "\x01\0\0\0\0\x22\0\x05"
             "ab",
             10);
    memcpy(body + bn, "cde", 3);
    n = v2(b, 0x21, 0x11, body, bn + 3);
    refused(b, n);
}

static void test_2_2_6_ssl_cn(void **state) {
    (void)state;
    uint8_t b[600];
    struct proxy_header h;
    const char *why;
    /* The longest CN that fits cn[256]. */
    char cn[300];
    memset(cn, 'c', sizeof(cn));
    size_t n = v2_ssl(b, 0x03, 0, cn, 255);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_int_equal(strlen(h.cn), 255);
    n = v2_ssl(b, 0x03, 0, cn, 256);
    refused(b, n);
    /* Empty. */
    n = v2_ssl(b, 0x03, 0, "", 0);
    refused(b, n);
    /* A NUL in the CN would cut the identity short: refused. */
    n = v2_ssl(b, 0x03, 0, "admin\0.evil", 11);
    refused(b, n);
    n = v2_ssl(b, 0x03, 0, "admin\0", 6);
    refused(b, n);
    n = v2_ssl(b, 0x03, 0, "\0admin", 6);
    refused(b, n);
    /* The CN is taken wherever it is among the sub-TLVs. */
    uint8_t val[64], body[128];
    memcpy(val, "\x03\0\0\0\0", 5);
    size_t vn = tlv(val, 5, 0x22, "carol", 5);
    vn = tlv(val, vn, 0x23, "TLS_AES_128_GCM_SHA256", 22); /* PP2_SUBTYPE_SSL_CIPHER */
    memcpy(body, inet_addrs, 12);
    size_t bn = tlv(body, 12, 0x20, val, vn);
    n = v2(b, 0x21, 0x11, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_string_equal(h.cn, "carol");
    assert_true(h.cert_verified);
}

/* CRC32C the table way (RFC 4960 appendix B), independent of the parser's
 * bitwise loop; checked against the standard check value below. */
static uint32_t crc32c_ref(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Fill in the CRC32C value whose 4 bytes start at b + at (zeroed first). */
static void put_crc(uint8_t *b, size_t n, size_t at) {
    memset(b + at, 0, 4);
    uint32_t c = crc32c_ref(b, n);
    b[at] = (uint8_t)(c >> 24), b[at + 1] = (uint8_t)(c >> 16);
    b[at + 2] = (uint8_t)(c >> 8), b[at + 3] = (uint8_t)c;
}

static void test_2_2_3_crc32c(void **state) {
    (void)state;
    assert_int_equal(crc32c_ref((const uint8_t *)"123456789", 9), 0xE3069283u);
    uint8_t body[600], b[700], val[512];
    struct proxy_header h;
    const char *why;
    /* The checksum covers the whole header, signature to last TLV, with its
     * own four bytes as zeros; the CRC TLV may sit before or after others. */
    memcpy(body, inet_addrs, 12);
    size_t vn = ssl_value(val, 0x03, 0, "crc-client", 10);
    size_t bn = tlv(body, 12, 0x03, "\0\0\0\0", 4);
    bn = tlv(body, bn, 0x20, val, vn);
    size_t n = v2(b, 0x21, 0x11, body, bn);
    size_t at = 16 + 12 + 3;
    put_crc(b, n, at);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.crc32c);
    assert_string_equal(h.cn, "crc-client");
    prefixes_need_more(b, n);
    /* Any byte changed, in the fixed part, the addresses, a TLV or the
     * checksum itself: "the receiver MUST treat the TCP connection providing
     * the header as invalid". */
    for (size_t i = 12; i < n; i++) {
        if (i == 14 || i == 15 || i == at - 3)
            continue; /* the length, or the CRC TLV's type: another header */
        b[i] ^= 0x20;
        struct proxy_header h2;
        const char *why2 = NULL;
        int r = parse(b, n, &h2, &why2);
        if (r != -1)
            fail_msg("byte %zu flipped -> %d", i, r);
        b[i] ^= 0x20;
    }
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    /* Last in the header. */
    bn = tlv(body, 12, 0x04, "pad", 3);
    bn = tlv(body, bn, 0x03, "\0\0\0\0", 4);
    n = v2(b, 0x21, 0x11, body, bn);
    put_crc(b, n, n - 4);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.crc32c);
    b[n - 1] ^= 1;
    refused(b, n);
    /* Without the TLV nothing is checked. */
    n = v2(b, 0x21, 0x11, inet_addrs, 12);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_false(h.crc32c);
    /* The value is exactly 4 bytes, and there is one. */
    bn = tlv(body, 12, 0x03, "\0\0\0", 3);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    bn = tlv(body, 12, 0x03, "\0\0\0\0\0", 5);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    bn = tlv(body, 12, 0x03, "\0\0\0\0", 4);
    bn = tlv(body, bn, 0x03, "\0\0\0\0", 4);
    n = v2(b, 0x21, 0x11, body, bn);
    put_crc(b, n, 16 + 12 + 3); /* right for the first, were the second zero */
    refused(b, n);
    /* A LOCAL header's block, CRC included, is discarded unread. */
    bn = tlv(body, 12, 0x03, "\xde\xad\xbe\xef", 4);
    n = v2(b, 0x20, 0x11, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_true(h.local);
}

static void test_2_2_6_ssl_version_and_repeats(void **state) {
    (void)state;
    uint8_t b[700], body[600], val[512];
    struct proxy_header h;
    const char *why;
    /* PP2_SUBTYPE_SSL_VERSION: "the US-ASCII string representation of the
     * TLS version", kept; the verify field is kept as sent. */
    size_t n = v2_ssl(b, 0x01, 0x12345678u, NULL, 0);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_string_equal(h.tls_version, "TLSv1.3");
    assert_int_equal(h.verify, 0x12345678u);
    /* Informational only: one too long or holding a NUL is left out, not refused. */
    char longv[40];
    memset(longv, 'v', sizeof(longv));
    memcpy(val, "\x01\0\0\0\0", 5);
    size_t vn = tlv(val, 5, 0x21, longv, 32);
    memcpy(body, inet_addrs, 12);
    size_t bn = tlv(body, 12, 0x20, val, vn);
    n = v2(b, 0x21, 0x11, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_string_equal(h.tls_version, "");
    assert_true(h.ssl);
    vn = tlv(val, 5, 0x21, "TLS\0v1", 6);
    bn = tlv(body, 12, 0x20, val, vn);
    n = v2(b, 0x21, 0x11, body, bn);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_string_equal(h.tls_version, "");
    /* Certificate flags without PP2_CLIENT_SSL: no verified certificate. */
    n = v2_ssl(b, 0x06, 0, "nossl", 5);
    assert_int_equal(parse(b, n, &h, &why), (int)n);
    assert_false(h.ssl);
    assert_false(h.cert_verified);
    /* Two CNs, or two SSL TLVs, would make the identity ambiguous: refused. */
    vn = tlv(val, 5, 0x22, "alice", 5);
    vn = tlv(val, vn, 0x22, "admin", 5);
    bn = tlv(body, 12, 0x20, val, vn);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
    vn = ssl_value(val, 0x03, 0, "alice", 5);
    bn = tlv(body, 12, 0x20, val, vn);
    bn = tlv(body, bn, 0x20, val, vn);
    n = v2(b, 0x21, 0x11, body, bn);
    refused(b, n);
}

/* ---- the layer ------------------------------------------------------------ */

struct pair {
    struct stream_info info;
    struct stream *top;
    int peer; /* the client's end: written by the test */
};

static void pair_open(struct pair *p, int version, bool require_tls) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    memset(&p->info, 0, sizeof(p->info));
    snprintf(p->info.peer, sizeof(p->info.peer), "10.0.0.9:40000");
    struct stream *tcp = tcp_stream_new(sv[0], &p->info);
    assert_non_null(tcp);
    p->top = proxy_stream_new(tcp, version, require_tls);
    assert_non_null(p->top);
    assert_ptr_equal(p->top->info, &p->info);
    p->peer = sv[1];
}

static void pair_close(struct pair *p) {
    stream_free(p->top);
    if (p->peer >= 0)
        close(p->peer);
    stream_info_clear(&p->info);
}

static void send_all(int fd, const void *p, size_t n) {
    assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Read until n bytes came (the socket has them all already). */
static void read_exact(struct stream *s, uint8_t *out, size_t n, size_t chunk) {
    size_t got = 0;
    for (int i = 0; got < n && i < 10000; i++) {
        size_t want = n - got < chunk ? n - got : chunk;
        ssize_t r = stream_read(s, out + got, want);
        if (r < 0 && errno == EAGAIN)
            continue;
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, n);
}

static void expect_eagain(struct stream *s) {
    uint8_t buf[16];
    errno = 0;
    assert_int_equal(stream_read(s, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN);
}

static const uint8_t mqtt_connect[] = {0x10, 0x10, 0x00, 0x04, 'M',  'Q',  'T', 'T', 0x05,
                                       0x02, 0x00, 0x3c, 0x00, 0x00, 0x03, 'a', 'b', 'c'};

static void test_layer_v2_then_mqtt(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    expect_eagain(p.top); /* nothing yet */
    assert_false(proxy_stream_done(p.top));
    uint8_t b[128];
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 12);
    memcpy(b + n, mqtt_connect, sizeof(mqtt_connect));
    send_all(p.peer, b, n + sizeof(mqtt_connect));
    uint8_t got[sizeof(mqtt_connect)];
    read_exact(p.top, got, sizeof(got), sizeof(got));
    assert_memory_equal(got, mqtt_connect, sizeof(got));
    assert_true(proxy_stream_done(p.top));
    assert_string_equal(p.info.peer, "192.0.2.1:5000");
    assert_non_null(p.info.via);
    assert_string_equal(p.info.via, "10.0.0.9:40000");
    assert_null(p.info.identity);
    assert_false(p.info.proxy_tls);
    assert_null(p.info.why);
    expect_eagain(p.top);
    /* Later bytes pass straight through. */
    send_all(p.peer, "\xc0\x00", 2);
    read_exact(p.top, got, 2, 16);
    assert_memory_equal(got, "\xc0\x00", 2);
    /* And so do writes, the other way. */
    struct iovec iov[2] = {{.iov_base = "\x20\x03", .iov_len = 2},
                           {.iov_base = "\x00\x00\x00", .iov_len = 3}};
    assert_int_equal(stream_writev(p.top, iov, 2), 5);
    assert_int_equal(stream_flush(p.top), 0);
    assert_int_equal(read(p.peer, got, sizeof(got)), 5);
    assert_memory_equal(got, "\x20\x03\x00\x00\x00", 5);
    assert_int_equal(stream_wants(p.top), 0);
    assert_false(stream_pending(p.top));
    pair_close(&p);
}

/* Bytes past the header come out in small reads, in order, flagged as
 * pending so the user reads them without waiting for the socket. */
static void test_layer_kept_bytes_small_reads(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 1, false);
    char b[128];
    int n = snprintf(b, sizeof(b), "PROXY TCP6 2001:db8::7 2001:db8::1 6000 1883\r\n");
    memcpy(b + n, mqtt_connect, sizeof(mqtt_connect));
    send_all(p.peer, b, (size_t)n + sizeof(mqtt_connect));
    uint8_t got[sizeof(mqtt_connect)];
    assert_int_equal(stream_read(p.top, got, 1), 1);
    assert_true(stream_pending(p.top));
    read_exact(p.top, got + 1, sizeof(got) - 1, 3);
    assert_memory_equal(got, mqtt_connect, sizeof(got));
    assert_false(stream_pending(p.top));
    assert_string_equal(p.info.peer, "[2001:db8::7]:6000");
    assert_string_equal(p.info.via, "10.0.0.9:40000");
    pair_close(&p);
}

/* The header split over several segments, one byte at a time. */
static void test_layer_header_in_pieces(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    uint8_t b[600];
    size_t n = v2_ssl(b, 0x07, 0, "device-17", 9);
    for (size_t i = 0; i < n; i++) {
        expect_eagain(p.top);
        send_all(p.peer, b + i, 1);
    }
    /* The header is complete; no application byte yet. */
    expect_eagain(p.top);
    assert_true(proxy_stream_done(p.top));
    assert_string_equal(p.info.peer, "192.0.2.1:5000");
    assert_non_null(p.info.identity);
    assert_string_equal(p.info.identity, "device-17");
    assert_true(p.info.proxy_tls);
    send_all(p.peer, mqtt_connect, sizeof(mqtt_connect));
    uint8_t got[sizeof(mqtt_connect)];
    read_exact(p.top, got, sizeof(got), sizeof(got));
    assert_memory_equal(got, mqtt_connect, sizeof(got));
    pair_close(&p);
}

/* A CN the proxy did not verify is not an identity. */
static void test_layer_unverified_cn(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    uint8_t b[600];
    size_t n = v2_ssl(b, 0x07, 18, "mallory", 7);
    send_all(p.peer, b, n);
    expect_eagain(p.top);
    assert_true(proxy_stream_done(p.top));
    assert_null(p.info.identity);
    assert_true(p.info.proxy_tls);
    pair_close(&p);
}

/* LOCAL and UNKNOWN keep the socket's address. */
static void test_layer_local_keeps_peer(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    uint8_t b[64];
    size_t n = v2(b, 0x20, 0x00, NULL, 0);
    memcpy(b + n, "\xc0\x00", 2);
    send_all(p.peer, b, n + 2);
    uint8_t got[2];
    read_exact(p.top, got, 2, 2);
    assert_memory_equal(got, "\xc0\x00", 2);
    assert_string_equal(p.info.peer, "10.0.0.9:40000");
    assert_null(p.info.via);
    pair_close(&p);

    pair_open(&p, 1, false);
    send_all(p.peer, "PROXY UNKNOWN\r\n\xc0\x00", 17);
    read_exact(p.top, got, 2, 2);
    assert_memory_equal(got, "\xc0\x00", 2);
    assert_string_equal(p.info.peer, "10.0.0.9:40000");
    assert_null(p.info.via);
    pair_close(&p);
}

static void expect_eproto(struct pair *p, const char *why_part) {
    uint8_t buf[64];
    errno = 0;
    assert_int_equal(stream_read(p->top, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EPROTO);
    assert_non_null(p->info.why);
    if (!strstr(p->info.why, why_part))
        fail_msg("why '%s' lacks '%s'", p->info.why, why_part);
    /* And the layer stays failed. */
    errno = 0;
    assert_int_equal(stream_read(p->top, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EPROTO);
    assert_false(proxy_stream_done(p->top));
}

static void test_layer_wrong_version(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    send_all(p.peer, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32);
    expect_eproto(&p, "version 1");
    assert_string_equal(p.info.peer, "10.0.0.9:40000");
    assert_null(p.info.via);
    pair_close(&p);

    pair_open(&p, 1, false);
    uint8_t b[64];
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 12);
    send_all(p.peer, b, n);
    expect_eproto(&p, "version 2");
    assert_string_equal(p.info.peer, "10.0.0.9:40000");
    pair_close(&p);
}

static void test_layer_require_tls(void **state) {
    (void)state;
    struct pair p;
    uint8_t b[600];
    /* No SSL TLV at all. */
    pair_open(&p, 2, true);
    size_t n = v2(b, 0x21, 0x11, inet_addrs, 12);
    send_all(p.peer, b, n);
    expect_eproto(&p, "TLS");
    assert_string_equal(p.info.peer, "10.0.0.9:40000");
    pair_close(&p);
    /* An SSL TLV without PP2_CLIENT_SSL. */
    pair_open(&p, 2, true);
    n = v2_ssl(b, 0x00, 0, NULL, 0);
    send_all(p.peer, b, n);
    expect_eproto(&p, "TLS");
    pair_close(&p);
    /* With it: accepted. */
    pair_open(&p, 2, true);
    n = v2_ssl(b, 0x01, 0, NULL, 0);
    memcpy(b + n, mqtt_connect, sizeof(mqtt_connect));
    send_all(p.peer, b, n + sizeof(mqtt_connect));
    uint8_t got[sizeof(mqtt_connect)];
    read_exact(p.top, got, sizeof(got), sizeof(got));
    assert_memory_equal(got, mqtt_connect, sizeof(got));
    assert_true(p.info.proxy_tls);
    assert_null(p.info.identity);
    assert_string_equal(p.info.peer, "192.0.2.1:5000");
    pair_close(&p);
}

/* A connection that starts with anything else is refused at once. */
static void test_layer_no_header(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    send_all(p.peer, mqtt_connect, 1);
    expect_eproto(&p, "no PROXY protocol header");
    pair_close(&p);

    pair_open(&p, 1, false);
    send_all(p.peer, "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", 36);
    expect_eproto(&p, "port");
    pair_close(&p);
}

static void test_layer_eof(void **state) {
    (void)state;
    struct pair p;
    uint8_t buf[16];
    /* Closed before a byte: the orderly end. */
    pair_open(&p, 2, false);
    close(p.peer);
    p.peer = -1;
    assert_int_equal(stream_read(p.top, buf, sizeof(buf)), 0);
    pair_close(&p);
    /* Closed in the middle of the header: a failure. */
    pair_open(&p, 1, false);
    send_all(p.peer, "PROXY TCP4 1.2", 14);
    expect_eagain(p.top);
    close(p.peer);
    p.peer = -1;
    expect_eproto(&p, "closed");
    pair_close(&p);
    /* After the header, the end of the stream passes through. */
    pair_open(&p, 1, false);
    send_all(p.peer, "PROXY UNKNOWN\r\nab", 17);
    close(p.peer);
    p.peer = -1;
    assert_int_equal(stream_read(p.top, buf, sizeof(buf)), 2);
    assert_int_equal(stream_read(p.top, buf, sizeof(buf)), 0);
    pair_close(&p);
}

/* A v1 line that never ends is refused at 107 bytes, not buffered on. */
static void test_layer_v1_too_long(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 1, false);
    char b[200];
    memset(b, '1', sizeof(b));
    memcpy(b, "PROXY UNKNOWN ", 14);
    send_all(p.peer, b, 106);
    expect_eagain(p.top);
    send_all(p.peer, b + 106, sizeof(b) - 106);
    expect_eproto(&p, "107");
    pair_close(&p);
}

/* The other version is refused at its signature, without waiting for the
 * rest of its header. */
static void test_layer_other_version_at_signature(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 2, false);
    send_all(p.peer, "PROXY ", 6);
    expect_eproto(&p, "version 1, but the listener takes 2");
    pair_close(&p);
    pair_open(&p, 1, false);
    send_all(p.peer, sig, 12);
    expect_eproto(&p, "version 2, but the listener takes 1");
    pair_close(&p);
    /* A prefix of the other signature is still nothing wrong. */
    pair_open(&p, 1, false);
    send_all(p.peer, sig, 11);
    expect_eagain(p.top);
    pair_close(&p);
}

/* Many bytes behind a short v1 header: the layer reads at most its header
 * buffer (107 bytes) before the header is done, keeps what came past it, and
 * every byte comes out once, in order. */
static void test_layer_v1_bytes_past_header(void **state) {
    (void)state;
    struct pair p;
    pair_open(&p, 1, false);
    uint8_t b[4096];
    int hn = snprintf((char *)b, sizeof(b), "PROXY TCP4 203.0.113.5 198.51.100.1 65535 1883\r\n");
    for (size_t i = (size_t)hn; i < sizeof(b); i++)
        b[i] = (uint8_t)(i * 7);
    send_all(p.peer, b, sizeof(b));
    uint8_t got[sizeof(b)];
    assert_int_equal(stream_read(p.top, got, sizeof(got)), PROXY_V1_MAX - hn);
    assert_false(stream_pending(p.top)); /* nothing kept: the rest is in the socket */
    read_exact(p.top, got + PROXY_V1_MAX - hn, sizeof(b) - PROXY_V1_MAX, 1000);
    assert_memory_equal(got, b + hn, sizeof(b) - (size_t)hn);
    assert_string_equal(p.info.peer, "203.0.113.5:65535");
    expect_eagain(p.top);
    pair_close(&p);
}

/* Named after the spec section each checks (the function names say the same). */
#define T(name, fn)                                                                                \
    { name, fn, NULL, NULL, NULL }

int main(void) {
    const struct CMUnitTest tests[] = {
        T("PROXY-2.1 v1 TCP4 header", test_2_1_v1_tcp4),
        T("PROXY-2.1 v1 TCP6 header", test_2_1_v1_tcp6),
        T("PROXY-2.1 v1 UNKNOWN keeps the socket address", test_2_1_v1_unknown),
        T("PROXY-2.1 v1 protocol TCP4, TCP6 or UNKNOWN", test_2_1_v1_protocol),
        T("PROXY-2.1 v1 ports 0..65535 without sign or leading zeros", test_2_1_v1_bad_ports),
        T("PROXY-2.1 v1 addresses in canonical form of the family", test_2_1_v1_bad_addresses),
        T("PROXY-2.1 v1 exactly one space between fields", test_2_1_v1_spacing),
        T("PROXY-2.1 v1 ends with CRLF", test_2_1_v1_crlf),
        T("PROXY-2.1 v1 CRLF within 107 bytes", test_2_1_v1_length_bound),
        T("PROXY-2.1 v1 truncated at every byte needs more", test_2_1_v1_prefixes),
        T("PROXY-2.1 v1 refused before the CRLF when it cannot be valid", test_2_1_v1_early),
        T("PROXY-2.2 neither signature refused at the first byte", test_2_garbage),
        T("PROXY-2.2 v2 PROXY TCP over IPv4", test_2_2_v2_proxy_inet),
        T("PROXY-2.2 v2 PROXY TCP over IPv6", test_2_2_v2_proxy_inet6),
        T("PROXY-2.2 v2 PROXY UNIX stream", test_2_2_v2_proxy_unix),
        T("PROXY-2.2 v2 AF_UNSPEC keeps the socket address", test_2_2_v2_unspec),
        T("PROXY-2.2 v2 LOCAL keeps socket address and discards its block", test_2_2_v2_local),
        T("PROXY-2.2 v2 version 2, command LOCAL or PROXY, known family and protocol",
          test_2_2_v2_bad_version_command),
        T("PROXY-2.2 v2 length: addresses fit, at most 2048 bytes", test_2_2_v2_length),
        T("PROXY-2.2 v2 truncated at every byte needs more", test_2_2_v2_prefixes),
        T("PROXY-2.2 v2 TLVs walked with bounds, unknown ones skipped", test_2_2_v2_tlv_walk),
        T("PROXY-2.2.3 CRC32C TLV checked", test_2_2_3_crc32c),
        T("PROXY-2.2.6 SSL TLV client flags and verify", test_2_2_6_ssl_flags),
        T("PROXY-2.2.6 SSL TLV malformed", test_2_2_6_ssl_malformed),
        T("PROXY-2.2.6 SSL TLV CN", test_2_2_6_ssl_cn),
        T("PROXY-2.2.6 SSL TLV version sub-TLV, repeated TLVs", test_2_2_6_ssl_version_and_repeats),
        T("layer: v2 header then MQTT, peer and via, pass-through", test_layer_v2_then_mqtt),
        T("layer: bytes past the header kept, pending, small reads",
          test_layer_kept_bytes_small_reads),
        T("layer: header one byte at a time, SSL CN identity", test_layer_header_in_pieces),
        T("layer: unverified CN is no identity", test_layer_unverified_cn),
        T("layer: PROXY-2.2 LOCAL and PROXY-2.1 UNKNOWN keep the socket address",
          test_layer_local_keeps_peer),
        T("layer: header of the other version refused", test_layer_wrong_version),
        T("layer: other version refused at its signature", test_layer_other_version_at_signature),
        T("layer: proxy_protocol_v2_require_tls", test_layer_require_tls),
        T("layer: no header refused", test_layer_no_header),
        T("layer: end of stream before, in and after the header", test_layer_eof),
        T("layer: PROXY-2.1 v1 line over 107 bytes refused", test_layer_v1_too_long),
        T("layer: v1 buffer bounded, every byte past the header once",
          test_layer_v1_bytes_past_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
