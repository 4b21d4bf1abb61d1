/*
 * Unit tests of the TLS layer (src/transport/tls.h): a server layer and a
 * client layer over the two ends of a non-blocking socketpair, driven in a
 * bounded loop in one process. The certificates (two CAs, server and
 * client certificates, a CRL) are made at run time with OpenSSL's API in a
 * temporary directory, so nothing committed can expire.
 *
 * A "spy" layer between the socket and the TLS layer shows what the TLS
 * layer hands down (the records it writes), can refuse writes (to force
 * WANT_WRITE) and can read everything the socket has ahead of the TLS layer
 * (as a PROXY layer reading past its header does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/stream.h"
#include "transport/tls.h"

/* ---- OpenSSL's live heap, for the memory test ---------------------------- */

static atomic_long ossl_live;

static void *count_malloc(size_t n, const char *file, int line) {
    (void)file, (void)line;
    size_t *p = malloc(n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    atomic_fetch_add(&ossl_live, (long)n);
    return (char *)p + 16;
}

static void *count_realloc(void *q, size_t n, const char *file, int line) {
    if (!q)
        return count_malloc(n, file, line);
    size_t *p = (size_t *)((char *)q - 16);
    size_t old = p[0];
    size_t *np = realloc(p, n + 16);
    if (!np)
        return NULL;
    np[0] = n;
    atomic_fetch_add(&ossl_live, (long)n - (long)old);
    return (char *)np + 16;
}

static void count_free(void *q, const char *file, int line) {
    (void)file, (void)line;
    if (!q)
        return;
    size_t *p = (size_t *)((char *)q - 16);
    atomic_fetch_sub(&ossl_live, (long)p[0]);
    free(p);
}

/* ---- certificates made at run time --------------------------------------- */

static char dir[64];

/* dir/name, the same stable string for the same name. */
static const char *path(const char *name) {
    static struct { char name[32], full[160]; } known[64];
    int k = 0;
    for (; k < 64 && known[k].name[0]; k++)
        if (strcmp(known[k].name, name) == 0)
            return known[k].full;
    assert_true(k < 64);
    snprintf(known[k].name, sizeof(known[k].name), "%s", name);
    snprintf(known[k].full, sizeof(known[k].full), "%s/%s", dir, name);
    return known[k].full;
}

static void ext(X509 *x, X509 *issuer, int nid, const char *value) {
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

enum kind { CA, SERVER, CLIENT };

/* A certificate for key with subject name, signed by issuer (self-signed
 * when NULL). The name is freed. */
static X509 *cert(EVP_PKEY *key, X509_NAME *name, X509 *issuer, EVP_PKEY *ikey, enum kind k,
                  long serial) {
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400);
    X509_set_pubkey(x, key);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
    ext(x, issuer ? issuer : x, NID_authority_key_identifier, "keyid:always");
    switch (k) {
    case CA:
        ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
        break;
    case SERVER:
        ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        ext(x, issuer, NID_ext_key_usage, "serverAuth");
        ext(x, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
        break;
    case CLIENT:
        ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        ext(x, issuer, NID_ext_key_usage, "clientAuth");
        break;
    }
    assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
    return x;
}

static X509_NAME *name_cn(const char *cn) {
    X509_NAME *n = X509_NAME_new();
    assert_non_null(n);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0),
        1);
    return n;
}

/* A CN in a given ASN.1 type, bytes as they are (e.g. a BMPString, or a
 * UTF8String with an embedded NUL). */
static X509_NAME *name_raw_cn(int type, const void *bytes, int len) {
    X509_NAME *n = X509_NAME_new();
    assert_non_null(n);
    assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_commonName, type,
                                                (const unsigned char *)bytes, len, -1, 0),
                     1);
    return n;
}

static void write_cert(const char *name, X509 *x) {
    FILE *f = fopen(path(name), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, const char *password) {
    FILE *f = fopen(path(name), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, password ? EVP_aes_128_cbc() : NULL,
                                          (unsigned char *)password,
                                          password ? (int)strlen(password) : 0, NULL, NULL),
                     1);
    fclose(f);
}

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(path(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A leaf certificate and its key, files NAME.pem and NAME.key. */
static X509 *leaf(const char *base, X509_NAME *subject, X509 *ca, EVP_PKEY *cakey, enum kind k,
                  long serial) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = cert(key, subject, ca, cakey, k, serial);
    char n[64];
    snprintf(n, sizeof(n), "%s.pem", base);
    write_cert(n, x);
    snprintf(n, sizeof(n), "%s.key", base);
    write_key(n, key, NULL);
    EVP_PKEY_free(key);
    return x;
}

/* ca.pem signs server, client (CN "Jürgen"), subject (O, CN), bmp (a
 * BMPString CN), nul (a CN with a NUL inside); other-ca.pem signs
 * stranger (a client) and other-server. crl.pem (from ca) revokes client. */
static int setup_certs(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/hato-tls-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));

    EVP_PKEY *cakey = EVP_EC_gen("P-256"), *okey = EVP_EC_gen("P-256");
    assert_non_null(cakey);
    assert_non_null(okey);
    X509 *ca = cert(cakey, name_cn("hato test CA"), NULL, NULL, CA, 1);
    X509 *other = cert(okey, name_cn("another CA"), NULL, NULL, CA, 1);
    write_cert("ca.pem", ca);
    write_key("ca.key", cakey, NULL);
    write_cert("other-ca.pem", other);

    X509_free(leaf("server", name_cn("localhost"), ca, cakey, SERVER, 2));
    X509 *client = leaf("client", name_cn("J\xc3\xbcrgen"), ca, cakey, CLIENT, 3);

    X509_NAME *sn = X509_NAME_new();
    X509_NAME_add_entry_by_txt(sn, "C", MBSTRING_ASC, (const unsigned char *)"JP", -1, -1, 0);
    X509_NAME_add_entry_by_txt(sn, "O", MBSTRING_ASC, (const unsigned char *)"hato, ltd", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(sn, "CN", MBSTRING_ASC, (const unsigned char *)"sensor-7", -1, -1,
                               0);
    X509_free(leaf("subject", sn, ca, cakey, CLIENT, 4));
    /* "Jürgen" in UCS-2, big-endian. */
    static const unsigned char bmp[] = {0, 'J', 0, 0xfc, 0, 'r', 0, 'g', 0, 'e', 0, 'n'};
    X509_free(leaf("bmp", name_raw_cn(V_ASN1_BMPSTRING, bmp, sizeof(bmp)), ca, cakey, CLIENT, 5));
    X509_free(
        leaf("nul", name_raw_cn(V_ASN1_UTF8STRING, "admin\0.evil", 11), ca, cakey, CLIENT, 6));
    X509_free(leaf("stranger", name_cn("stranger"), other, okey, CLIENT, 7));
    X509_free(leaf("other-server", name_cn("localhost"), other, okey, SERVER, 8));

    /* A CRL from ca revoking client. */
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    ASN1_TIME *t = X509_gmtime_adj(NULL, -60);
    X509_CRL_set1_lastUpdate(crl, t);
    X509_gmtime_adj(t, 7 * 86400);
    X509_CRL_set1_nextUpdate(crl, t);
    X509_REVOKED *r = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(client));
    X509_gmtime_adj(t, -60);
    X509_REVOKED_set_revocationDate(r, t);
    X509_CRL_add0_revoked(crl, r);
    ASN1_TIME_free(t);
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, cakey, EVP_sha256()) > 0);
    FILE *f = fopen(path("crl.pem"), "w");
    assert_non_null(f);
    PEM_write_X509_CRL(f, crl);
    fclose(f);
    X509_CRL_free(crl);

    /* An encrypted copy of the server key. */
    EVP_PKEY *sk = NULL;
    f = fopen(path("server.key"), "r");
    assert_non_null(f);
    sk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(sk);
    write_key("encrypted.key", sk, "secret");
    EVP_PKEY_free(sk);

    write_text("psk.txt", "# identities\n"
                          "alice:00112233445566778899aabbccddeeff\n"
                          "\n"
                          "bob:0102030405060708\n");
    write_text("psk-no-alice.txt", "bob:0102030405060708\n");
    write_text("psk-new-key.txt", "alice:ffeeddccbbaa99887766554433221100\n");
    write_text("psk-bad.txt", "alice:0011\n"
                              "# fine\n"
                              "nocolon\n");
    write_text("psk-odd.txt", "alice:001\n");

    X509_free(client);
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(okey);
    return 0;
}

static int teardown_certs(void **state) {
    (void)state;
    static const char *names[] = {
        "ca.pem",           "ca.key",           "other-ca.pem", "server.pem",    "server.key",
        "client.pem",       "client.key",       "subject.pem",  "subject.key",   "bmp.pem",
        "bmp.key",          "nul.pem",          "nul.key",      "stranger.pem",  "stranger.key",
        "other-server.pem", "other-server.key", "crl.pem",      "encrypted.key", "psk.txt",
        "psk-no-alice.txt", "psk-new-key.txt",  "psk-bad.txt",  "psk-odd.txt"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path(names[i]));
    rmdir(dir);
    return 0;
}

/* ---- contexts ------------------------------------------------------------ */

static char err[512];

static struct tls_ctx *server_ctx(struct tls_server_opts o) {
    if (!o.certfile && !o.psk_hint) {
        o.certfile = path("server.pem");
        o.keyfile = path("server.key");
    }
    err[0] = 0;
    struct tls_ctx *c = tls_server_ctx_new(&o, err, sizeof(err));
    if (!c)
        fail_msg("server context: %s", err);
    return c;
}

static struct tls_ctx *client_ctx(struct tls_client_opts o) {
    if (!o.cafile && !o.psk_identity)
        o.cafile = path("ca.pem");
    err[0] = 0;
    struct tls_ctx *c = tls_client_ctx_new(&o, err, sizeof(err));
    if (!c)
        fail_msg("client context: %s", err);
    return c;
}

/* The client certificate NAME.pem / NAME.key, trusting ca.pem. */
static struct tls_client_opts with_cert(const char *name) {
    static char c[160], k[160];
    snprintf(c, sizeof(c), "%s/%s.pem", dir, name);
    snprintf(k, sizeof(k), "%s/%s.key", dir, name);
    return (struct tls_client_opts){.cafile = path("ca.pem"), .certfile = c, .keyfile = k};
}

/* ---- the spy layer -------------------------------------------------------- */

struct spy {
    struct stream s;
    bool limit;    /* writes are refused once budget is spent */
    size_t budget; /* bytes the spy takes before EAGAIN */
    bool hoard;    /* reads drain the socket into hold first */
    unsigned char hold[1 << 17];
    size_t hold_len, hold_off;
    unsigned char *wire; /* every byte written down */
    size_t wire_len, wire_cap;
    size_t reads; /* read calls from above */
};

static ssize_t spy_read(struct stream *s, void *buf, size_t len) {
    struct spy *p = (struct spy *)s;
    p->reads++;
    if (!p->hoard)
        return stream_read(s->lower, buf, len);
    ssize_t r = 1;
    while (p->hold_len < sizeof(p->hold) &&
           (r = stream_read(s->lower, p->hold + p->hold_len, sizeof(p->hold) - p->hold_len)) > 0)
        p->hold_len += (size_t)r;
    if (p->hold_off == p->hold_len) {
        p->hold_off = p->hold_len = 0;
        return r; /* 0 at the end, -1 with the socket's errno */
    }
    size_t n = p->hold_len - p->hold_off;
    if (n > len)
        n = len;
    memcpy(buf, p->hold + p->hold_off, n);
    p->hold_off += n;
    return (ssize_t)n;
}

static ssize_t spy_writev(struct stream *s, const struct iovec *iov, int n) {
    struct spy *p = (struct spy *)s;
    if (p->limit && p->budget == 0) {
        errno = EAGAIN;
        return -1;
    }
    struct iovec cut[64];
    int m = 0;
    size_t room = p->limit ? p->budget : SIZE_MAX;
    for (int i = 0; i < n && m < 64 && room; i++) {
        cut[m] = iov[i];
        if (cut[m].iov_len > room)
            cut[m].iov_len = room;
        room -= cut[m].iov_len;
        m++;
    }
    ssize_t w = stream_writev(s->lower, cut, m);
    if (w <= 0)
        return w;
    if (p->limit)
        p->budget -= (size_t)w;
    if (p->wire_len + (size_t)w > p->wire_cap) {
        p->wire_cap = (p->wire_len + (size_t)w) * 2;
        p->wire = realloc(p->wire, p->wire_cap);
        assert_non_null(p->wire);
    }
    size_t left = (size_t)w;
    for (int i = 0; left; i++) {
        size_t k = cut[i].iov_len < left ? cut[i].iov_len : left;
        memcpy(p->wire + p->wire_len, cut[i].iov_base, k);
        p->wire_len += k;
        left -= k;
    }
    return w;
}

static int spy_flush(struct stream *s) {
    return stream_flush(s->lower);
}
static unsigned spy_wants(const struct stream *s) {
    return stream_wants(s->lower);
}
static bool spy_pending(const struct stream *s) {
    const struct spy *p = (const struct spy *)s;
    return p->hold_off < p->hold_len || stream_pending(s->lower);
}
static void spy_shutdown(struct stream *s) {
    stream_shutdown(s->lower);
}
static void spy_destroy(struct stream *s) {
    struct spy *p = (struct spy *)s;
    free(p->wire);
    free(p);
}

static const struct stream_ops spy_ops = {
    .name = "spy",
    .read = spy_read,
    .writev = spy_writev,
    .flush = spy_flush,
    .wants = spy_wants,
    .pending = spy_pending,
    .shutdown = spy_shutdown,
    .destroy = spy_destroy,
};

/* The application-data records in the spy's wire bytes from `from` on:
 * their count, their lengths in len[]. */
static int records(const struct spy *p, size_t from, size_t *len, int max) {
    int n = 0;
    size_t at = from;
    while (at + 5 <= p->wire_len) {
        size_t l = (size_t)p->wire[at + 3] << 8 | p->wire[at + 4];
        if (p->wire[at] == 23 && n < max)
            len[n++] = l;
        at += 5 + l;
    }
    assert_int_equal(at, p->wire_len); /* whole records only */
    return n;
}

/* ---- a connection over a socketpair -------------------------------------- */

struct side {
    struct stream_info info;
    struct stream *top; /* the TLS layer */
    struct spy *spy;    /* NULL unless asked for */
    bool failed, eof;
    unsigned char *rx;
    size_t rx_len, rx_cap;
};

struct conn {
    struct side srv, cli;
};

static void side_open(struct side *s, int fd, struct tls_ctx *ctx, const char *host, bool spy) {
    memset(s, 0, sizeof(*s));
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    struct stream *low = tcp_stream_new(fd, &s->info);
    assert_non_null(low);
    if (spy) {
        s->spy = calloc(1, sizeof(*s->spy));
        assert_non_null(s->spy);
        s->spy->s = (struct stream){.ops = &spy_ops, .lower = low, .info = &s->info, .fd = fd};
        low = &s->spy->s;
    }
    s->top = tls_stream_new(low, ctx, host, false);
    assert_non_null(s->top);
}

/* Server and client layers (each over a spy when asked) on a socketpair.
 * The layers hold their own references on the contexts. */
static void conn_open(struct conn *c, struct tls_ctx *sctx, struct tls_ctx *cctx, const char *host,
                      bool spies) {
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    side_open(&c->srv, fds[0], sctx, NULL, spies);
    side_open(&c->cli, fds[1], cctx, host, spies);
}

static void side_close(struct side *s) {
    if (s->top)
        stream_free(s->top);
    s->top = NULL;
    stream_info_clear(&s->info);
    free(s->rx);
    s->rx = NULL;
}

static void conn_close(struct conn *c) {
    side_close(&c->srv);
    side_close(&c->cli);
}

static bool terminal(const struct side *s) {
    return s->failed || s->eof;
}

/* What the event loop does when the socket is readable (or pending() says
 * there is more): read until EAGAIN, then flush. At most `max` bytes are
 * taken (0: no limit). */
static void side_poll_max(struct side *s, size_t max) {
    if (terminal(s))
        return;
    for (int k = 0; k < 256; k++) {
        unsigned char buf[4096];
        size_t want = sizeof(buf);
        if (max && want > max - s->rx_len)
            want = max - s->rx_len;
        if (max && want == 0)
            break;
        ssize_t r = stream_read(s->top, buf, want);
        if (r > 0) {
            if (s->rx_len + (size_t)r > s->rx_cap) {
                s->rx_cap = (s->rx_len + (size_t)r) * 2;
                s->rx = realloc(s->rx, s->rx_cap);
                assert_non_null(s->rx);
            }
            memcpy(s->rx + s->rx_len, buf, (size_t)r);
            s->rx_len += (size_t)r;
            continue;
        }
        if (r == 0)
            s->eof = true;
        else if (errno != EAGAIN)
            s->failed = true;
        break;
    }
    if (!terminal(s) && stream_flush(s->top) < 0)
        s->failed = true;
}

static void side_poll(struct side *s) {
    side_poll_max(s, 0);
}

/* Drive both sides until both handshakes are done or both sides stopped;
 * bounded. Returns true when both are done. */
static bool handshake(struct conn *c) {
    for (int round = 0; round < 200; round++) {
        if (c->srv.info.tls_done && c->cli.info.tls_done)
            return true;
        if (terminal(&c->srv) && terminal(&c->cli))
            return false;
        side_poll(&c->cli);
        side_poll(&c->srv);
    }
    return c->srv.info.tls_done && c->cli.info.tls_done;
}

static void must_handshake(struct conn *c) {
    if (!handshake(c))
        fail_msg("handshake failed: server '%s', client '%s'",
                 c->srv.info.why ? c->srv.info.why : "", c->cli.info.why ? c->cli.info.why : "");
}

/* iov[] from byte offset off on, into out (at most 64). */
static int iov_from(const struct iovec *iov, int n, size_t off, struct iovec *out) {
    int m = 0;
    for (int i = 0; i < n && m < 64; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        out[m].iov_base = (char *)iov[i].iov_base + off;
        out[m].iov_len = iov[i].iov_len - off;
        off = 0;
        m++;
    }
    return m;
}

/* Offer the iovecs from `from` until all is taken and flushed, the other
 * side reading as it goes; then wait until it has received all. */
static void send_iov(struct side *from, struct side *to, const struct iovec *iov, int n) {
    size_t total = 0, off = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    size_t want = to->rx_len + total;
    for (int round = 0; round < 100000; round++) {
        if (off < total) {
            struct iovec rest[64];
            int m = iov_from(iov, n, off, rest);
            ssize_t w = stream_writev(from->top, rest, m);
            if (w > 0)
                off += (size_t)w;
            else if (errno != EAGAIN)
                fail_msg("writev: %s (%s)", strerror(errno), from->info.why ? from->info.why : "");
        }
        int f = stream_flush(from->top);
        assert_true(f >= 0);
        side_poll(to);
        side_poll(from);
        assert_false(terminal(to));
        if (off == total && f == 0 && to->rx_len >= want)
            break;
        if (from->spy && from->spy->limit)
            from->spy->budget += 1000; /* the socket drains a little */
    }
    assert_int_equal(off, total);
    assert_int_equal(to->rx_len, want);
}

static void send_bytes(struct side *from, struct side *to, const void *p, size_t n) {
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    send_iov(from, to, &iov, 1);
}

static unsigned char *pattern(size_t n, unsigned seed) {
    unsigned char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 31 + seed + (i >> 8) * 7) & 0xff);
    return p;
}

static void received(struct side *s, const void *p, size_t n) {
    assert_int_equal(s->rx_len, n);
    assert_memory_equal(s->rx, p, n);
    s->rx_len = 0;
}

/* ---- handshake and data --------------------------------------------------- */

static void test_handshake_and_data_both_ways(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    tls_ctx_unref(sctx); /* the layers hold their own references */
    tls_ctx_unref(cctx);
    /* Before the handshake a server takes nothing and reads nothing. */
    struct iovec early = {.iov_base = "x", .iov_len = 1};
    assert_int_equal(stream_writev(c.srv.top, &early, 1), -1);
    assert_int_equal(errno, EAGAIN);
    char b[8];
    assert_int_equal(stream_read(c.srv.top, b, sizeof(b)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_false(c.srv.info.tls_done);

    must_handshake(&c);
    assert_null(c.srv.info.identity); /* no identity asked for */
    assert_null(c.srv.info.why);
    char d[128];
    tls_stream_describe(c.srv.top, d, sizeof(d));
    assert_true(strncmp(d, "TLSv1.3, TLS_", 13) == 0);

    send_bytes(&c.cli, &c.srv, "hello server", 12);
    received(&c.srv, "hello server", 12);
    send_bytes(&c.srv, &c.cli, "hello client", 12);
    received(&c.cli, "hello client", 12);
    conn_close(&c);
}

static void test_tls12_minimum_on_server(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *c12 = client_ctx((struct tls_client_opts){.tls_version = "tlsv1.2"});
    struct tls_ctx *c11 = client_ctx((struct tls_client_opts){.tls_version = "tlsv1.1"});
    struct conn c;
    conn_open(&c, sctx, c12, "localhost", false);
    must_handshake(&c);
    char d[128];
    tls_stream_describe(c.cli.top, d, sizeof(d));
    assert_true(strncmp(d, "TLSv1.2, ", 9) == 0);
    send_bytes(&c.cli, &c.srv, "v1.2", 4);
    received(&c.srv, "v1.2", 4);
    conn_close(&c);

    /* "tlsv1.1" on the client allows 1.1 up to 1.3: the server picks 1.3. */
    conn_open(&c, sctx, c11, "localhost", false);
    must_handshake(&c);
    tls_stream_describe(c.cli.top, d, sizeof(d));
    assert_true(strncmp(d, "TLSv1.3, ", 9) == 0);
    conn_close(&c);

    /* A server asked for tlsv1.3 refuses a TLS 1.2 client. */
    struct tls_ctx *s13 = server_ctx((struct tls_server_opts){.tls_version = "tlsv1.3"});
    conn_open(&c, s13, c12, "localhost", false);
    assert_false(handshake(&c));
    assert_non_null(c.srv.info.why);
    assert_non_null(strstr(c.srv.info.why, "unsupported protocol"));
    conn_close(&c);
    tls_ctx_unref(s13);
    tls_ctx_unref(sctx);
    tls_ctx_unref(c12);
    tls_ctx_unref(c11);
}

/* Large writes both ways, through a spy that makes the lower layer take
 * little at a time (WANT_WRITE retries with moved, grown buffers). */
static void test_large_writes_no_loss_order_kept(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", true);
    must_handshake(&c);
    size_t n = 5 * TLS_RECORD + 1234;
    unsigned char *a = pattern(n, 1), *b = pattern(n, 2);

    /* Plain socket back-pressure (the socketpair fills up). */
    send_bytes(&c.cli, &c.srv, a, n);
    received(&c.srv, a, n);
    send_bytes(&c.srv, &c.cli, b, n);
    received(&c.cli, b, n);

    /* The lower layer takes 1000 bytes per round. */
    c.cli.spy->limit = c.srv.spy->limit = true;
    c.cli.spy->budget = c.srv.spy->budget = 0;
    struct iovec iov[4] = {
        {a, 100}, {a + 100, 7}, {a + 107, 3 * TLS_RECORD}, {a + 107 + 3 * TLS_RECORD, 9000}};
    size_t m = 107 + 3 * TLS_RECORD + 9000;
    send_iov(&c.cli, &c.srv, iov, 4);
    received(&c.srv, a, m);
    send_bytes(&c.srv, &c.cli, b, n);
    received(&c.cli, b, n);
    free(a);
    free(b);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* Small iovecs go out as one record; a large iovec as full records of
 * TLS_RECORD bytes; a mix fills every record but the last. */
static void test_records_gathered(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", true);
    must_handshake(&c);
    /* TLS 1.3 with AES-GCM or ChaCha20: content type byte + 16-byte tag. */
    const size_t over = 17;
    unsigned char *a = pattern(4 * TLS_RECORD, 3);
    size_t len[16];

    struct iovec small[50];
    for (int i = 0; i < 50; i++)
        small[i] = (struct iovec){a + 10 * i, 10};
    size_t from = c.cli.spy->wire_len;
    send_iov(&c.cli, &c.srv, small, 50);
    received(&c.srv, a, 500);
    assert_int_equal(records(c.cli.spy, from, len, 16), 1);
    assert_int_equal(len[0], 500 + over);

    from = c.cli.spy->wire_len;
    send_bytes(&c.cli, &c.srv, a, 3 * TLS_RECORD + 100);
    received(&c.srv, a, 3 * TLS_RECORD + 100);
    assert_int_equal(records(c.cli.spy, from, len, 16), 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(len[i], TLS_RECORD + over);
    assert_int_equal(len[3], 100 + over);

    /* 100 bytes, then 40000: the first record takes 100 + 16284, the next
     * is a full one straight from the large buffer, the last the rest with
     * the following 50 bytes. */
    struct iovec mix[3] = {{a, 100}, {a + 100, 40000}, {a + 40100, 50}};
    from = c.cli.spy->wire_len;
    send_iov(&c.cli, &c.srv, mix, 3);
    received(&c.srv, a, 40150);
    assert_int_equal(records(c.cli.spy, from, len, 16), 3);
    assert_int_equal(len[0], TLS_RECORD + over);
    assert_int_equal(len[1], TLS_RECORD + over);
    assert_int_equal(len[2], 40150 - 2 * TLS_RECORD + over);
    free(a);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

static bool readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* After a small read of a large record the rest is in OpenSSL: pending()
 * says so, and reads return it without the socket being readable. */
static void test_pending_after_small_read(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    side_poll(&c.cli); /* session tickets */
    unsigned char *a = pattern(TLS_RECORD, 4);
    struct iovec iov = {a, TLS_RECORD};
    assert_int_equal(stream_writev(c.srv.top, &iov, 1), TLS_RECORD);
    assert_int_equal(stream_flush(c.srv.top), 0);

    unsigned char buf[TLS_RECORD];
    assert_true(readable(c.cli.top->fd));
    assert_int_equal(stream_read(c.cli.top, buf, 100), 100);
    assert_false(readable(c.cli.top->fd)); /* the whole record was read */
    assert_true(stream_pending(c.cli.top));
    size_t got = 100;
    for (int k = 0; k < 1000 && got < TLS_RECORD && stream_pending(c.cli.top); k++) {
        ssize_t r = stream_read(c.cli.top, buf + got, 1000);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, TLS_RECORD);
    assert_memory_equal(buf, a, TLS_RECORD);
    /* Drained: the next read wants the socket and pending() turns false. */
    assert_int_equal(stream_read(c.cli.top, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_false(stream_pending(c.cli.top));
    free(a);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* The server reads ahead: several records come in one read from the
 * socket. An event loop that reads only when the socket is readable or
 * pending() is true still gets every byte. */
static void test_pending_with_read_ahead(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    unsigned char *a = pattern(3000, 5);
    for (int i = 0; i < 3; i++) {
        struct iovec iov = {a + 1000 * i, 1000};
        assert_int_equal(stream_writev(c.cli.top, &iov, 1), 1000);
    }
    assert_int_equal(stream_flush(c.cli.top), 0);
    unsigned char buf[3000];
    size_t got = 0;
    int fd = c.srv.top->fd;
    for (int k = 0; k < 100 && (readable(fd) || stream_pending(c.srv.top)); k++) {
        ssize_t r = stream_read(c.srv.top, buf + got, 600); /* less than a record */
        if (r > 0)
            got += (size_t)r;
        else
            assert_int_equal(errno, EAGAIN);
    }
    assert_int_equal(got, 3000);
    assert_memory_equal(buf, a, 3000);
    assert_false(stream_pending(c.srv.top));
    free(a);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* Records go through the lower layer, never the descriptor: a lower layer
 * that has read everything from the socket ahead of TLS (as a PROXY layer
 * that read past its header) still serves the whole handshake and data. */
static void test_records_through_lower_layer(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", true);
    c.srv.spy->hoard = c.cli.spy->hoard = true;
    must_handshake(&c);
    assert_true(c.srv.spy->reads > 0);
    unsigned char *a = pattern(70000, 6);
    send_bytes(&c.cli, &c.srv, a, 70000);
    received(&c.srv, a, 70000);
    send_bytes(&c.srv, &c.cli, a, 70000);
    received(&c.cli, a, 70000);
    /* Small records held in the lower layer: pending() comes from below. */
    for (int i = 0; i < 3; i++) {
        struct iovec iov = {a + 10 * i, 10};
        assert_int_equal(stream_writev(c.cli.top, &iov, 1), 10);
    }
    unsigned char buf[64];
    assert_int_equal(stream_read(c.srv.top, buf, 10), 10);
    assert_false(readable(c.srv.top->fd));
    size_t got = 10;
    for (int k = 0; k < 10 && stream_pending(c.srv.top); k++) {
        ssize_t r = stream_read(c.srv.top, buf + got, sizeof(buf) - got);
        if (r > 0)
            got += (size_t)r;
    }
    assert_int_equal(got, 30);
    assert_memory_equal(buf, a, 30);
    free(a);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* ---- readiness ----------------------------------------------------------- */

static void test_wants(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", true);
    /* The client's lower layer takes nothing: its handshake waits to write. */
    c.cli.spy->limit = true;
    char b[16];
    assert_int_equal(stream_read(c.cli.top, b, sizeof(b)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(stream_wants(c.cli.top) & STREAM_WANT_WRITE);
    assert_int_equal(stream_flush(c.cli.top), 1);
    c.cli.spy->limit = false;
    assert_int_equal(stream_flush(c.cli.top), 0); /* the ClientHello went out */
    assert_false(stream_wants(c.cli.top) & STREAM_WANT_WRITE);
    /* A client write during the handshake starts it and waits for the
     * server's answer: it wants read, not write (which would spin). */
    struct iovec iov = {.iov_base = "CONNECT", .iov_len = 7};
    assert_int_equal(stream_writev(c.cli.top, &iov, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(stream_wants(c.cli.top) & STREAM_WANT_READ);
    assert_false(stream_wants(c.cli.top) & STREAM_WANT_WRITE);
    /* The server's answer blocked: it wants write. */
    c.srv.spy->limit = true;
    side_poll(&c.srv);
    assert_true(stream_wants(c.srv.top) & STREAM_WANT_WRITE);
    c.srv.spy->limit = false;
    assert_int_equal(stream_flush(c.srv.top), 0);
    assert_int_equal(stream_wants(c.srv.top), 0);
    must_handshake(&c);
    assert_int_equal(stream_writev(c.cli.top, &iov, 1), 7);
    assert_int_equal(stream_wants(c.cli.top), 0);
    side_poll(&c.srv);
    received(&c.srv, "CONNECT", 7);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* A read that must write: a TLS 1.2 server (plain OpenSSL over the other
 * end) asks for a renegotiation while the client's lower layer takes
 * nothing, so the client's new ClientHello cannot go. The read wants
 * write; once the lower layer takes bytes again, flush sends it (it does
 * not wait for the next read or write: an idle connection would spin on
 * write readiness meanwhile). */
static void test_read_that_must_write_finished_by_flush(void **state) {
    (void)state;
    SSL_CTX *pctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(pctx);
    SSL_CTX_set_max_proto_version(pctx, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(pctx, path("server.pem")), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(pctx, path("server.key"), SSL_FILETYPE_PEM), 1);
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    struct side cli;
    side_open(&cli, fds[1], cctx, "localhost", true);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    SSL *peer = SSL_new(pctx);
    assert_non_null(peer);
    SSL_set_fd(peer, fds[0]);
    SSL_set_accept_state(peer);
    int r = 0;
    for (int i = 0; i < 100 && !(r == 1 && cli.info.tls_done); i++) {
        side_poll(&cli);
        r = SSL_do_handshake(peer);
    }
    assert_int_equal(r, 1);
    assert_true(cli.info.tls_done);

    assert_int_equal(SSL_renegotiate(peer), 1);
    SSL_do_handshake(peer); /* the HelloRequest goes */
    cli.spy->limit = true;
    char b[16];
    assert_int_equal(stream_read(cli.top, b, sizeof(b)), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(stream_wants(cli.top) & STREAM_WANT_WRITE);
    assert_int_equal(stream_flush(cli.top), 1); /* still blocked */
    cli.spy->limit = false;
    size_t wire = cli.spy->wire_len;
    assert_int_equal(stream_flush(cli.top), 0);
    assert_true(cli.spy->wire_len > wire); /* the ClientHello went out */
    assert_int_equal(stream_wants(cli.top), 0);
    /* The renegotiation completes, and data flows both ways. */
    size_t n = 0;
    for (int i = 0; i < 100 && SSL_renegotiate_pending(peer); i++) {
        assert_int_equal(SSL_read_ex(peer, b, sizeof(b), &n), 0); /* the server's handshake */
        side_poll(&cli);
    }
    assert_false(SSL_renegotiate_pending(peer));
    assert_int_equal(SSL_write_ex(peer, "x", 1, &n), 1);
    side_poll(&cli);
    received(&cli, "x", 1);
    struct iovec iov = {.iov_base = "y", .iov_len = 1};
    assert_int_equal(stream_writev(cli.top, &iov, 1), 1);
    assert_int_equal(SSL_read_ex(peer, b, sizeof(b), &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(b[0], 'y');
    SSL_free(peer);
    SSL_CTX_free(pctx);
    side_close(&cli);
    close(fds[0]);
    tls_ctx_unref(cctx);
}

/* ---- close ---------------------------------------------------------------- */

static void test_shutdown_close_notify_once(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", true);
    must_handshake(&c);
    side_poll(&c.cli);
    size_t before = c.cli.spy->wire_len;
    stream_shutdown(c.cli.top);
    size_t once = c.cli.spy->wire_len;
    assert_true(once > before);
    stream_shutdown(c.cli.top);
    assert_int_equal(c.cli.spy->wire_len, once);
    side_poll(&c.srv);
    assert_true(c.srv.eof); /* close_notify read as the end of the stream */
    assert_false(c.srv.failed);
    conn_close(&c);

    /* Nothing is sent before the handshake is done, nor after a failure. */
    conn_open(&c, sctx, cctx, "localhost", true);
    stream_shutdown(c.srv.top);
    assert_int_equal(c.srv.spy->wire_len, 0);
    conn_close(&c);
    struct tls_ctx *strange = client_ctx((struct tls_client_opts){.cafile = path("other-ca.pem")});
    conn_open(&c, sctx, strange, "localhost", true);
    assert_false(handshake(&c));
    assert_true(c.cli.failed);
    before = c.cli.spy->wire_len;
    stream_shutdown(c.cli.top);
    assert_int_equal(c.cli.spy->wire_len, before);
    conn_close(&c);
    tls_ctx_unref(strange);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* The peer closes the socket in the middle of the handshake: after its
 * ClientHello (the server's answer then meets a closed socket: EPIPE, and
 * no SIGPIPE kills the process), or after the server's answer. */
static void test_eof_during_handshake(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    side_poll(&c.cli); /* ClientHello */
    side_close(&c.cli);
    side_poll(&c.srv);
    assert_true(c.srv.failed);
    assert_false(c.srv.info.tls_done);
    assert_string_equal(c.srv.info.why, "Broken pipe");
    conn_close(&c);

    conn_open(&c, sctx, cctx, "localhost", false);
    side_poll(&c.cli);                /* ClientHello */
    side_poll(&c.srv);                /* ServerHello ... Finished */
    shutdown(c.cli.top->fd, SHUT_WR); /* (a close with unread bytes would be a reset) */
    side_poll(&c.srv);
    assert_true(terminal(&c.srv));
    assert_false(c.srv.info.tls_done);
    assert_string_equal(c.srv.info.why, "connection closed by the client during the handshake");
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* ---- certificate checks and identities ------------------------------------ */

static void test_client_verify_failure_reason(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *strange = client_ctx((struct tls_client_opts){.cafile = path("other-ca.pem")});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, strange, "localhost", false);
    assert_false(handshake(&c));
    assert_true(c.cli.failed);
    assert_string_equal(c.cli.info.why,
                        "TLS: certificate verify failed: unable to get local issuer certificate");
    assert_true(tls_stream_verify_failed(c.cli.top));
    assert_false(c.srv.info.tls_done);
    assert_non_null(c.srv.info.why); /* the client's alert */
    conn_close(&c);

    /* The name the client asked for is not the certificate's. */
    conn_open(&c, sctx, cctx, "broker.example", false);
    assert_false(handshake(&c));
    assert_string_equal(c.cli.info.why, "TLS: certificate verify failed: hostname mismatch");
    assert_true(tls_stream_verify_failed(c.cli.top));
    conn_close(&c);

    /* An IP address is checked against the certificate's IP entries. */
    conn_open(&c, sctx, cctx, "127.0.0.1", false);
    must_handshake(&c);
    assert_false(tls_stream_verify_failed(c.cli.top));
    conn_close(&c);
    conn_open(&c, sctx, cctx, "127.0.0.2", false);
    assert_false(handshake(&c));
    assert_string_equal(c.cli.info.why, "TLS: certificate verify failed: IP address mismatch");
    conn_close(&c);

    /* insecure: the name is not checked, the chain still is. */
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    side_open(&c.srv, fds[0], sctx, NULL, false);
    memset(&c.cli, 0, sizeof(c.cli));
    assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    c.cli.top = tls_stream_new(tcp_stream_new(fds[1], &c.cli.info), cctx, "broker.example", true);
    assert_non_null(c.cli.top);
    must_handshake(&c);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
    tls_ctx_unref(strange);
}

/* The identity a handshake gives the server, per its context's rule. */
static char *identity_of(enum tls_identity rule, const char *client_cert, bool *ok) {
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){
        .cafile = path("ca.pem"), .require_certificate = true, .identity = rule});
    struct tls_ctx *cctx = client_ctx(with_cert(client_cert));
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    *ok = handshake(&c);
    char *id = c.srv.info.identity ? strdup(c.srv.info.identity) : NULL;
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
    return id;
}

static void test_identity_cn_and_subject(void **state) {
    (void)state;
    bool ok;
    char *id = identity_of(TLS_ID_CN, "client", &ok);
    assert_true(ok);
    assert_string_equal(id, "J\xc3\xbcrgen"); /* UTF-8 */
    free(id);
    id = identity_of(TLS_ID_CN, "bmp", &ok); /* a BMPString CN, as UTF-8 */
    assert_true(ok);
    assert_string_equal(id, "J\xc3\xbcrgen");
    free(id);
    id = identity_of(TLS_ID_CN, "nul", &ok); /* "admin\0.evil" is no name */
    assert_true(ok);
    assert_null(id);
    id = identity_of(TLS_ID_SUBJECT, "subject", &ok);
    assert_true(ok);
    assert_string_equal(id, "CN=sensor-7,O=hato\\, ltd,C=JP"); /* RFC 2253 */
    free(id);
    id = identity_of(TLS_ID_NONE, "subject", &ok);
    assert_true(ok);
    assert_null(id);

    /* Asked for but not required: no certificate, no identity. */
    struct tls_ctx *sctx =
        server_ctx((struct tls_server_opts){.cafile = path("ca.pem"), .identity = TLS_ID_CN});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    assert_null(c.srv.info.identity);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

static void test_client_certificate_refused(void **state) {
    (void)state;
    struct tls_ctx *sctx =
        server_ctx((struct tls_server_opts){.cafile = path("ca.pem"), .require_certificate = true});
    struct tls_ctx *stranger = client_ctx(with_cert("stranger"));
    struct tls_ctx *none = client_ctx((struct tls_client_opts){0});
    struct conn c;
    conn_open(&c, sctx, stranger, "localhost", false);
    assert_false(handshake(&c));
    assert_false(c.srv.info.tls_done);
    assert_non_null(c.srv.info.why);
    assert_non_null(strstr(c.srv.info.why, "certificate verify failed"));
    assert_non_null(
        strstr(c.srv.info.why, "(client certificate: unable to get local issuer certificate)"));
    assert_false(tls_stream_verify_failed(c.cli.top)); /* the server's check, not ours */
    conn_close(&c);

    /* require_certificate: none at all is refused too. */
    conn_open(&c, sctx, none, "localhost", false);
    for (int i = 0; i < 50 && !terminal(&c.srv); i++) {
        side_poll(&c.cli);
        side_poll(&c.srv);
    }
    assert_true(c.srv.failed);
    assert_non_null(strstr(c.srv.info.why, "peer did not return a certificate"));
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(stranger);
    tls_ctx_unref(none);
}

/* ---- PSK ------------------------------------------------------------------ */

static struct tls_ctx *psk_client(const char *identity, const char *hexkey, const char *version) {
    unsigned char key[64];
    size_t n = strlen(hexkey) / 2;
    for (size_t i = 0; i < n; i++)
        sscanf(hexkey + 2 * i, "%2hhx", &key[i]);
    return client_ctx((struct tls_client_opts){
        .psk_identity = identity, .psk = key, .psk_len = n, .tls_version = version});
}

static struct tls_ctx *psk_server(const char *file) {
    return server_ctx((struct tls_server_opts){
        .psk_hint = "hato", .psk_file = path(file), .identity = TLS_ID_CN});
}

static void test_psk_identity(void **state) {
    (void)state;
    struct tls_ctx *sctx = psk_server("psk.txt");
    const char *versions[] = {NULL, "tlsv1.2"};
    for (int v = 0; v < 2; v++) {
        struct tls_ctx *cctx = psk_client("alice", "00112233445566778899aabbccddeeff", versions[v]);
        struct conn c;
        conn_open(&c, sctx, cctx, "localhost", false);
        must_handshake(&c);
        assert_string_equal(c.srv.info.identity, "alice");
        send_bytes(&c.cli, &c.srv, "psk", 3);
        received(&c.srv, "psk", 3);
        conn_close(&c);
        tls_ctx_unref(cctx);
    }
    tls_ctx_unref(sctx);
}

static void test_psk_unknown_identity_refused(void **state) {
    (void)state;
    struct tls_ctx *sctx = psk_server("psk.txt");
    struct tls_ctx *cctx = psk_client("mallory", "00112233445566778899aabbccddeeff", NULL);
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    assert_false(handshake(&c));
    assert_false(c.srv.info.tls_done);
    assert_null(c.srv.info.identity);
    assert_string_equal(c.srv.info.why, "unknown PSK identity 'mallory'");
    assert_true(c.cli.failed);
    conn_close(&c);
    tls_ctx_unref(cctx);

    /* A known identity with the wrong key fails too. */
    cctx = psk_client("bob", "0807060504030201", "tlsv1.2");
    conn_open(&c, sctx, cctx, "localhost", false);
    assert_false(handshake(&c));
    assert_false(c.srv.info.tls_done);
    assert_non_null(c.srv.info.why);
    conn_close(&c);
    tls_ctx_unref(cctx);
    tls_ctx_unref(sctx);
}

/* ---- reload re-check ------------------------------------------------------ */

static void test_recheck_certificate(void **state) {
    (void)state;
    struct tls_server_opts o = {.cafile = path("ca.pem"), .require_certificate = true};
    struct tls_ctx *sctx = server_ctx(o);
    struct tls_ctx *cctx = client_ctx(with_cert("client"));
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    struct stream *tls = stream_find(c.srv.top, &tls_stream_ops);
    assert_ptr_equal(tls, c.srv.top);
    char buf[256];

    assert_null(tls_stream_recheck(tls, sctx, buf, sizeof(buf))); /* the same context */
    struct tls_ctx *same = server_ctx(o);
    assert_null(tls_stream_recheck(tls, same, buf, sizeof(buf))); /* the same CA again */
    tls_ctx_unref(same);

    struct tls_server_opts other = o;
    other.cafile = path("other-ca.pem");
    struct tls_ctx *octx = server_ctx(other);
    const char *why = tls_stream_recheck(tls, octx, buf, sizeof(buf));
    assert_non_null(why);
    /* The client sent its chain up to the CA: not trusted any more. */
    assert_string_equal(why, "client certificate no longer accepted: self-signed certificate in "
                             "certificate chain");
    tls_ctx_unref(octx);

    struct tls_server_opts revoked = o;
    revoked.crlfile = path("crl.pem");
    struct tls_ctx *rctx = server_ctx(revoked);
    why = tls_stream_recheck(tls, rctx, buf, sizeof(buf));
    assert_non_null(why);
    assert_string_equal(why, "client certificate no longer accepted: certificate revoked");
    tls_ctx_unref(rctx);

    /* The connection itself goes on. */
    send_bytes(&c.cli, &c.srv, "still", 5);
    received(&c.srv, "still", 5);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

static void test_recheck_psk(void **state) {
    (void)state;
    struct tls_ctx *sctx = psk_server("psk.txt");
    /* TLS 1.3 PSK sessions do not remember the identity: the layer does. */
    struct tls_ctx *cctx = psk_client("alice", "00112233445566778899aabbccddeeff", NULL);
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    char buf[256];
    struct tls_ctx *same = psk_server("psk.txt"), *gone = psk_server("psk-no-alice.txt"),
                   *changed = psk_server("psk-new-key.txt");
    assert_null(tls_stream_recheck(c.srv.top, same, buf, sizeof(buf)));
    assert_string_equal(tls_stream_recheck(c.srv.top, gone, buf, sizeof(buf)),
                        "PSK identity no longer in psk_file");
    assert_string_equal(tls_stream_recheck(c.srv.top, changed, buf, sizeof(buf)),
                        "PSK key changed in psk_file");
    tls_ctx_unref(same);
    tls_ctx_unref(gone);
    tls_ctx_unref(changed);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* ---- context errors ------------------------------------------------------- */

static void server_error(struct tls_server_opts o, const char *expect_prefix) {
    char e[512] = "";
    struct tls_ctx *c = tls_server_ctx_new(&o, e, sizeof(e));
    if (c) {
        tls_ctx_unref(c);
        fail_msg("expected the error '%s...'", expect_prefix);
    }
    if (strncmp(e, expect_prefix, strlen(expect_prefix)) != 0)
        fail_msg("'%s' does not start with '%s'", e, expect_prefix);
}

static void client_error(struct tls_client_opts o, const char *expect_prefix) {
    char e[512] = "";
    struct tls_ctx *c = tls_client_ctx_new(&o, e, sizeof(e));
    if (c) {
        tls_ctx_unref(c);
        fail_msg("expected the error '%s...'", expect_prefix);
    }
    if (strncmp(e, expect_prefix, strlen(expect_prefix)) != 0)
        fail_msg("'%s' does not start with '%s'", e, expect_prefix);
}

static void test_server_context_errors(void **state) {
    (void)state;
    char want[512], missing[160];
    snprintf(missing, sizeof(missing), "%s", path("missing.pem"));
    snprintf(want, sizeof(want), "cannot read certfile %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.certfile = missing, .keyfile = path("server.key")},
                 want);
    snprintf(want, sizeof(want), "cannot read keyfile %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.certfile = path("server.pem"), .keyfile = missing},
                 want);
    snprintf(want, sizeof(want), "cannot read cafile %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.certfile = path("server.pem"),
                                          .keyfile = path("server.key"),
                                          .cafile = missing},
                 want);
    snprintf(want, sizeof(want), "cannot read capath %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.certfile = path("server.pem"),
                                          .keyfile = path("server.key"),
                                          .capath = missing},
                 want);
    snprintf(want, sizeof(want), "cannot read crlfile %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.certfile = path("server.pem"),
                                          .keyfile = path("server.key"),
                                          .crlfile = missing},
                 want);
    snprintf(want, sizeof(want), "keyfile %s does not match certfile %s: ", path("client.key"),
             path("server.pem"));
    server_error(
        (struct tls_server_opts){.certfile = path("server.pem"), .keyfile = path("client.key")},
        want);
    snprintf(want, sizeof(want), "cannot load keyfile %s: ", path("encrypted.key"));
    server_error(
        (struct tls_server_opts){.certfile = path("server.pem"), .keyfile = path("encrypted.key")},
        want);
    snprintf(want, sizeof(want), "cannot load certfile %s: ", path("psk.txt"));
    server_error(
        (struct tls_server_opts){.certfile = path("psk.txt"), .keyfile = path("server.key")}, want);
    server_error((struct tls_server_opts){.certfile = path("server.pem"),
                                          .keyfile = path("server.key"),
                                          .ciphers = "NO-SUCH-CIPHER"},
                 "ciphers 'NO-SUCH-CIPHER': ");
    /* psk_file: line-numbered. */
    snprintf(want, sizeof(want), "%s:3: expected identity:hexkey", path("psk-bad.txt"));
    server_error((struct tls_server_opts){.psk_hint = "h", .psk_file = path("psk-bad.txt")}, want);
    snprintf(want, sizeof(want), "%s:1: the key must be an even number of hex digits",
             path("psk-odd.txt"));
    server_error((struct tls_server_opts){.psk_hint = "h", .psk_file = path("psk-odd.txt")}, want);
    snprintf(want, sizeof(want), "cannot read psk_file %s: No such file or directory", missing);
    server_error((struct tls_server_opts){.psk_hint = "h", .psk_file = missing}, want);
}

static void test_encrypted_key_never_prompts(void **state) {
    (void)state;
    char e[512] = "";
    struct tls_server_opts o = {.certfile = path("server.pem"), .keyfile = path("encrypted.key")};
    assert_null(tls_server_ctx_new(&o, e, sizeof(e)));
    assert_non_null(strstr(e, "(an encrypted key must be decrypted first: hato never prompts)"));
}

static void test_client_context_errors(void **state) {
    (void)state;
    char want[512], missing[160];
    snprintf(missing, sizeof(missing), "%s", path("missing.pem"));
    snprintf(want, sizeof(want), "cannot load CA certificates from %s: ", missing);
    client_error((struct tls_client_opts){.cafile = missing}, want);
    client_error((struct tls_client_opts){.tls_version = "sslv3"},
                 "--tls-version: expected tlsv1.3, tlsv1.2 or tlsv1.1, not 'sslv3'");
    /* OpenSSL checks the pair when the key is loaded. */
    snprintf(want, sizeof(want), "cannot load client key %s: key values mismatch",
             path("server.key"));
    client_error((struct tls_client_opts){.cafile = path("ca.pem"),
                                          .certfile = path("client.pem"),
                                          .keyfile = path("server.key")},
                 want);
    snprintf(want, sizeof(want), "cannot load client certificate %s: ", missing);
    client_error((struct tls_client_opts){.certfile = missing, .keyfile = path("client.key")},
                 want);
    client_error((struct tls_client_opts){.ciphers = "NO-SUCH-CIPHER"},
                 "--ciphers 'NO-SUCH-CIPHER': ");
}

/* An application's own SSL_CTX (hc_config.ssl_ctx). */
static void test_client_ctx_wrap(void **state) {
    (void)state;
    SSL_CTX *app = SSL_CTX_new(TLS_client_method());
    assert_non_null(app);
    assert_int_equal(SSL_CTX_load_verify_locations(app, path("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(app, SSL_VERIFY_PEER, NULL);
    struct tls_ctx *cctx = tls_client_ctx_wrap(app);
    assert_non_null(cctx);
    SSL_CTX_free(app); /* the context keeps its own reference */
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    send_bytes(&c.srv, &c.cli, "wrapped", 7);
    received(&c.cli, "wrapped", 7);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

/* ---- memory --------------------------------------------------------------- */

/* An idle established server connection: what OpenSSL keeps for it (with
 * SSL_MODE_RELEASE_BUFFERS its record buffers go back when idle). The
 * client side is freed first so only the server's remains counted. */
static void test_idle_server_memory(void **state) {
    (void)state;
    struct tls_ctx *sctx = server_ctx((struct tls_server_opts){0});
    struct tls_ctx *cctx = client_ctx((struct tls_client_opts){0});
    long base = atomic_load(&ossl_live);
    struct conn c;
    conn_open(&c, sctx, cctx, "localhost", false);
    must_handshake(&c);
    unsigned char *a = pattern(40000, 7);
    send_bytes(&c.cli, &c.srv, a, 40000);
    received(&c.srv, a, 40000);
    send_bytes(&c.srv, &c.cli, a, 40000);
    received(&c.cli, a, 40000);
    free(a);
    long both = atomic_load(&ossl_live);
    side_close(&c.cli);
    long server = atomic_load(&ossl_live) - base;
    print_message("idle TLS 1.3 server connection: %ld bytes of OpenSSL memory (both ends: %ld)\n",
                  server, both - base);
    assert_true(server < 16 * 1024);
    conn_close(&c);
    tls_ctx_unref(sctx);
    tls_ctx_unref(cctx);
}

int main(void) {
    /* Before any OpenSSL allocation. */
    CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data_both_ways),
        cmocka_unit_test(test_tls12_minimum_on_server),
        cmocka_unit_test(test_large_writes_no_loss_order_kept),
        cmocka_unit_test(test_records_gathered),
        cmocka_unit_test(test_pending_after_small_read),
        cmocka_unit_test(test_pending_with_read_ahead),
        cmocka_unit_test(test_records_through_lower_layer),
        cmocka_unit_test(test_wants),
        cmocka_unit_test(test_read_that_must_write_finished_by_flush),
        cmocka_unit_test(test_shutdown_close_notify_once),
        cmocka_unit_test(test_eof_during_handshake),
        cmocka_unit_test(test_client_verify_failure_reason),
        cmocka_unit_test(test_identity_cn_and_subject),
        cmocka_unit_test(test_client_certificate_refused),
        cmocka_unit_test(test_psk_identity),
        cmocka_unit_test(test_psk_unknown_identity_refused),
        cmocka_unit_test(test_recheck_certificate),
        cmocka_unit_test(test_recheck_psk),
        cmocka_unit_test(test_server_context_errors),
        cmocka_unit_test(test_encrypted_key_never_prompts),
        cmocka_unit_test(test_client_context_errors),
        cmocka_unit_test(test_client_ctx_wrap),
        cmocka_unit_test(test_idle_server_memory),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
