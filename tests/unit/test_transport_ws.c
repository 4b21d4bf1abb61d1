/*
 * Unit tests of the WebSocket layer (src/transport/ws.h) over socketpairs.
 *
 * First a server layer and a client layer talk to each other (both ends
 * non-blocking, driven by a bounded loop of reads and flushes): the
 * upgrade, bytes both ways, 200 KiB each way. Then frames written by hand
 * on a raw client end check the server against RFC 6455 (5.1 masking, 5.4
 * fragmentation, 5.5 control frames, 5.5.1 close, 5.5.2 ping, 7.4 close
 * codes) and MQTT 5.0 section 6 (MQTT-6.0.0-1: binary frames only), the
 * HTTP refusals of the upgrade, and X-Forwarded-For from trusted proxies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/stream.h"
#include "transport/ws.h"

#define LOOPS 2000

static void nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* ---- a server layer and a client layer ---------------------------------- */

struct acc {
    uint8_t *p;
    size_t len, cap;
    bool eof;
    int err;
};

static void acc_init(struct acc *a, size_t cap) {
    a->p = malloc(cap);
    assert_non_null(a->p);
    a->len = 0;
    a->cap = cap;
    a->eof = false;
    a->err = 0;
}

struct duo {
    struct stream_info si, ci;
    struct stream *srv, *cli;
    struct acc sa, ca; /* bytes the server read, bytes the client read */
};

static const struct ws_server_opts plain_opts = {0};

static void duo_open(struct duo *d, const struct ws_server_opts *o) {
    int sv[2];
    memset(d, 0, sizeof(*d));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
    snprintf(d->si.peer, sizeof(d->si.peer), "192.0.2.10:40000");
    snprintf(d->ci.peer, sizeof(d->ci.peer), "198.51.100.1:8080");
    struct stream *t = tcp_stream_new(sv[0], &d->si);
    assert_non_null(t);
    d->srv = ws_stream_new_server(t, o);
    assert_non_null(d->srv);
    t = tcp_stream_new(sv[1], &d->ci);
    assert_non_null(t);
    d->cli = ws_stream_new_client(t, "broker.example:8080", "/mqtt", "mqtt");
    assert_non_null(d->cli);
    acc_init(&d->sa, 4 << 20);
    acc_init(&d->ca, 4 << 20);
}

static void duo_close(struct duo *d) {
    stream_free(d->srv);
    stream_free(d->cli);
    stream_info_clear(&d->si);
    stream_info_clear(&d->ci);
    free(d->sa.p);
    free(d->ca.p);
}

/* Read what one side has now into its accumulator. */
static void drain(struct stream *s, struct acc *a) {
    for (int i = 0; i < 64 && !a->eof && !a->err && a->len < a->cap; i++) {
        ssize_t r = stream_read(s, a->p + a->len, a->cap - a->len);
        if (r > 0) {
            a->len += (size_t)r;
            continue;
        }
        if (r == 0)
            a->eof = true;
        else if (errno != EAGAIN)
            a->err = errno;
        break;
    }
}

static void duo_step(struct duo *d) {
    assert_true(stream_flush(d->cli) >= 0);
    assert_true(stream_flush(d->srv) >= 0);
    drain(d->srv, &d->sa);
    drain(d->cli, &d->ca);
    assert_int_equal(d->sa.err, 0);
    assert_int_equal(d->ca.err, 0);
}

static void duo_upgrade(struct duo *d) {
    for (int i = 0; i < LOOPS && !(d->si.upgraded && d->ci.upgraded); i++)
        duo_step(d);
    assert_true(d->si.upgraded);
    assert_true(d->ci.upgraded);
    assert_null(d->si.why);
    assert_null(d->ci.why);
}

/* Write all of p through s, stepping the pair while the layer pushes back. */
static void duo_write(struct duo *d, struct stream *s, const void *p, size_t n) {
    size_t off = 0;
    for (int i = 0; i < LOOPS && off < n; i++) {
        struct iovec iov = {.iov_base = (uint8_t *)p + off, .iov_len = n - off};
        ssize_t r = stream_writev(s, &iov, 1);
        if (r > 0)
            off += (size_t)r;
        else
            assert_int_equal(errno, EAGAIN);
        duo_step(d);
    }
    assert_int_equal(off, n);
}

static void duo_wait(struct duo *d, const struct acc *a, size_t n) {
    for (int i = 0; i < LOOPS && a->len < n; i++)
        duo_step(d);
    assert_int_equal(a->len, n);
}

static void test_upgrade_client_server(void **state) {
    (void)state;
    struct duo d;
    duo_open(&d, &plain_opts);
    /* Nothing goes to a client before its upgrade. */
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    errno = 0;
    assert_int_equal(stream_writev(d.srv, &iov, 1), -1);
    assert_int_equal(errno, EAGAIN);
    assert_false(d.si.upgraded);
    duo_upgrade(&d);
    /* The socket's address stays without a trusted X-Forwarded-For. */
    assert_string_equal(d.si.peer, "192.0.2.10:40000");
    assert_null(d.si.via);
    /* Bytes both ways, one frame per writev, gathered. */
    struct iovec two[2] = {{.iov_base = "\x10\x0c\x00\x04", .iov_len = 4},
                           {.iov_base = "MQTT\x05\x02\x00\x3c\x00\x00\x00\x00", .iov_len = 12}};
    assert_int_equal(stream_writev(d.cli, two, 2), 16);
    duo_wait(&d, &d.sa, 16);
    assert_memory_equal(d.sa.p, "\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00\x00", 16);
    duo_write(&d, d.srv, "\x20\x03\x00\x00\x00", 5);
    duo_wait(&d, &d.ca, 5);
    assert_memory_equal(d.ca.p, "\x20\x03\x00\x00\x00", 5);
    /* An empty writev takes nothing and sends nothing. */
    struct iovec none = {.iov_base = "", .iov_len = 0};
    assert_int_equal(stream_writev(d.cli, &none, 1), 0);
    /* Idle: trimming the frame contexts loses nothing. */
    ws_stream_trim(d.srv);
    ws_stream_trim(d.cli);
    duo_write(&d, d.cli, "\xc0\x00", 2);
    duo_wait(&d, &d.sa, 18);
    assert_memory_equal(d.sa.p + 16, "\xc0\x00", 2);
    /* The orderly end: the client's close is echoed, both reads end. */
    stream_shutdown(d.cli);
    for (int i = 0; i < LOOPS && !(d.sa.eof && d.ca.eof); i++)
        duo_step(&d);
    assert_true(d.sa.eof);
    assert_true(d.ca.eof);
    duo_close(&d);
}

/* The client's first bytes may be written before the 101: they are held,
 * then sent once the answer has been checked. */
static void test_client_writes_before_upgrade(void **state) {
    (void)state;
    struct duo d;
    duo_open(&d, &plain_opts);
    struct iovec iov = {.iov_base = "\x10\x02\xab\xcd", .iov_len = 4};
    assert_int_equal(stream_writev(d.cli, &iov, 1), 4);
    duo_upgrade(&d);
    duo_wait(&d, &d.sa, 4);
    assert_memory_equal(d.sa.p, "\x10\x02\xab\xcd", 4);
    duo_close(&d);
}

static void pattern(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + (i >> 9) + seed);
}

/* 200 KiB each way at once: order kept, nothing lost, the output cap
 * pushing back on both writers. */
static void test_large_both_ways(void **state) {
    (void)state;
    struct duo d;
    duo_open(&d, &plain_opts);
    duo_upgrade(&d);
    size_t total = 200 * 1024;
    uint8_t *up = malloc(total), *down = malloc(total);
    assert_non_null(up);
    assert_non_null(down);
    pattern(up, total, 1);
    pattern(down, total, 7);
    size_t uoff = 0, doff = 0;
    for (int i = 0; i < 20000 && (d.sa.len < total || d.ca.len < total); i++) {
        if (uoff < total) {
            struct iovec iov[2] = {{.iov_base = up + uoff, .iov_len = (total - uoff) / 2},
                                   {.iov_base = up + uoff + (total - uoff) / 2,
                                    .iov_len = total - uoff - (total - uoff) / 2}};
            ssize_t r = stream_writev(d.cli, iov, 2);
            if (r > 0) {
                assert_true((size_t)r <= WS_OUT_CAP);
                uoff += (size_t)r;
            } else {
                assert_int_equal(errno, EAGAIN);
            }
        }
        if (doff < total) {
            struct iovec iov = {.iov_base = down + doff, .iov_len = total - doff};
            ssize_t r = stream_writev(d.srv, &iov, 1);
            if (r > 0)
                doff += (size_t)r;
            else
                assert_int_equal(errno, EAGAIN);
        }
        duo_step(&d);
    }
    assert_int_equal(d.sa.len, total);
    assert_int_equal(d.ca.len, total);
    assert_memory_equal(d.sa.p, up, total);
    assert_memory_equal(d.ca.p, down, total);
    assert_int_equal(stream_flush(d.cli), 0);
    assert_int_equal(stream_flush(d.srv), 0);
    free(up);
    free(down);
    duo_close(&d);
}

/* A reader that does not read pushes back: once the socket is full,
 * writev takes nothing (EAGAIN) while more than WS_OUT_CAP waits, and the
 * layer asks for write readiness; then everything taken arrives. */
static void test_backpressure(void **state) {
    (void)state;
    struct duo d;
    duo_open(&d, &plain_opts);
    duo_upgrade(&d);
    size_t total = 4 << 20, off = 0;
    uint8_t *down = malloc(total);
    assert_non_null(down);
    pattern(down, total, 3);
    bool pushed_back = false;
    for (int i = 0; i < 1000 && off < total && !pushed_back; i++) {
        struct iovec iov = {.iov_base = down + off, .iov_len = total - off};
        ssize_t r = stream_writev(d.srv, &iov, 1);
        if (r > 0) {
            assert_true((size_t)r <= WS_OUT_CAP);
            off += (size_t)r;
        } else {
            assert_int_equal(errno, EAGAIN);
            pushed_back = true;
        }
        stream_flush(d.srv);
    }
    assert_true(pushed_back);
    assert_true(off < total);
    assert_int_equal(stream_flush(d.srv), 1);
    assert_true(stream_wants(d.srv) & STREAM_WANT_WRITE);
    duo_wait(&d, &d.ca, off);
    assert_memory_equal(d.ca.p, down, off);
    assert_int_equal(stream_flush(d.srv), 0);
    assert_false(stream_wants(d.srv) & STREAM_WANT_WRITE);
    free(down);
    duo_close(&d);
}

/* ---- a raw client end against the server layer -------------------------- */

struct raw {
    struct stream_info info;
    struct stream *srv;
    int fd;
    uint8_t in[256 * 1024]; /* what the server sent, not yet looked at */
    size_t inlen;
    uint8_t got[64 * 1024]; /* what the server's reads returned */
    size_t gotlen;
};

static struct raw *raw_open(const struct ws_server_opts *o, const char *peer) {
    struct raw *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
    snprintf(r->info.peer, sizeof(r->info.peer), "%s", peer ? peer : "192.0.2.10:40000");
    struct stream *t = tcp_stream_new(sv[0], &r->info);
    assert_non_null(t);
    r->srv = ws_stream_new_server(t, o);
    assert_non_null(r->srv);
    r->fd = sv[1];
    return r;
}

static void raw_close(struct raw *r) {
    stream_free(r->srv);
    close(r->fd);
    stream_info_clear(&r->info);
    free(r);
}

static void raw_send(struct raw *r, const void *p, size_t n) {
    assert_int_equal(write(r->fd, p, n), (ssize_t)n);
}

static void raw_recv(struct raw *r) {
    for (;;) {
        ssize_t n = read(r->fd, r->in + r->inlen, sizeof(r->in) - r->inlen);
        if (n <= 0)
            break;
        r->inlen += (size_t)n;
    }
}

/* Drive the server: read (into r->got) and flush, bounded. Returns 0 at the
 * end of its stream, -1 on a failure (errno kept), 1 when the layer has
 * nothing more to do now. */
static int srv_drive(struct raw *r) {
    int idle = 0;
    for (int i = 0; i < LOOPS && idle < 3; i++) {
        ssize_t n = stream_read(r->srv, r->got + r->gotlen, sizeof(r->got) - r->gotlen);
        if (n > 0) {
            r->gotlen += (size_t)n;
            idle = 0;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno != EAGAIN)
            return -1;
        idle++;
        assert_true(stream_flush(r->srv) >= 0);
    }
    raw_recv(r);
    return 1;
}

static void consume(struct raw *r, size_t n) {
    memmove(r->in, r->in + n, r->inlen - n);
    r->inlen -= n;
}

/* The next frame the server sent: opcode (with FIN bit in *fin), payload. */
static bool next_frame(struct raw *r, uint8_t *op, bool *fin, uint8_t *payload, size_t *plen) {
    raw_recv(r);
    if (r->inlen < 2)
        return false;
    assert_int_equal(r->in[1] & 0x80, 0); /* a server never masks */
    size_t n = r->in[1] & 0x7f, hl = 2;
    if (n == 126) {
        n = (size_t)r->in[2] << 8 | r->in[3];
        hl = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | r->in[2 + i];
        hl = 10;
    }
    if (r->inlen < hl + n)
        return false;
    *op = r->in[0] & 0x0f;
    *fin = r->in[0] & 0x80;
    memcpy(payload, r->in + hl, n);
    *plen = n;
    consume(r, hl + n);
    return true;
}

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A frame: b0 is FIN, RSV and opcode; masked unless told not. */
static size_t frame(uint8_t *out, uint8_t b0, bool mask, const void *payload, size_t n) {
    const uint8_t *p = payload;
    size_t k = 0;
    uint8_t m = mask ? 0x80 : 0;
    out[k++] = b0;
    if (n < 126) {
        out[k++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        out[k++] = m | 126;
        out[k++] = (uint8_t)(n >> 8);
        out[k++] = (uint8_t)n;
    } else {
        out[k++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (mask) {
        memcpy(out + k, mask_key, 4);
        k += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[k + i] = p[i] ^ (mask ? mask_key[i % 4] : 0);
    return k + n;
}

static void send_frame(struct raw *r, uint8_t b0, bool mask, const void *p, size_t n) {
    uint8_t *buf = malloc(n + 14);
    assert_non_null(buf);
    size_t k = frame(buf, b0, mask, p, n);
    raw_send(r, buf, k);
    free(buf);
}

#define HOST "Host: broker.example\r\n"
#define UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define REQUEST "GET /mqtt HTTP/1.1\r\n" HOST UPGRADE KEY VERSION

/* The server's whole answer head, NUL-terminated, consumed from r->in. */
static void answer_head(struct raw *r, char *out, size_t cap) {
    raw_recv(r);
    const uint8_t *e = memmem(r->in, r->inlen, "\r\n\r\n", 4);
    if (!e)
        fail_msg("no complete answer head in %zu bytes", r->inlen);
    size_t n = (size_t)(e - r->in) + 4;
    assert_true(n < cap);
    memcpy(out, r->in, n);
    out[n] = 0;
    consume(r, n);
}

/* Upgrade with this request; check the 101 (RFC 6455 4.2.2). */
static void raw_upgrade_with(struct raw *r, const char *request, const char *proto) {
    raw_send(r, request, strlen(request));
    assert_int_equal(srv_drive(r), 1);
    char head[1024];
    answer_head(r, head, sizeof(head));
    if (strncmp(head, "HTTP/1.1 101 ", 13) != 0)
        fail_msg("answer: %s (why: %s)", head, r->info.why ? r->info.why : "");
    assert_non_null(strstr(head, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(head, "\r\nConnection: Upgrade\r\n"));
    /* The accept key of the RFC's example. */
    assert_non_null(strstr(head, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    if (proto) {
        char want[64];
        snprintf(want, sizeof(want), "\r\nSec-WebSocket-Protocol: %s\r\n", proto);
        assert_non_null(strstr(head, want));
    } else {
        assert_null(strstr(head, "Sec-WebSocket-Protocol"));
    }
    assert_true(r->info.upgraded);
}

static void raw_upgrade(struct raw *r) {
    raw_upgrade_with(r, REQUEST "Sec-WebSocket-Protocol: mqtt\r\n\r\n", "mqtt");
}

/* The server closed with this code, then its reads fail (EPROTO, a reason). */
static void expect_close(struct raw *r, uint16_t code) {
    errno = 0;
    int rc = srv_drive(r);
    if (rc != -1 || errno != EPROTO)
        fail_msg("drive -> %d errno %d, expected a failure with EPROTO", rc, errno);
    uint8_t op, p[256];
    bool fin;
    size_t n;
    /* Skip pongs queued before the violation. */
    do {
        assert_true(next_frame(r, &op, &fin, p, &n));
    } while (op == 0xA);
    assert_int_equal(op, 0x8);
    assert_true(fin);
    assert_int_equal(n, 2);
    uint16_t got = (uint16_t)(p[0] << 8 | p[1]);
    if (got != code)
        fail_msg("close code %u, expected %u (why: %s)", got, code, r->info.why ? r->info.why : "");
    assert_non_null(r->info.why);
    char want[32];
    snprintf(want, sizeof(want), "closed with %u", code);
    assert_non_null(strstr(r->info.why, want));
    /* Nothing more is sent; reads keep failing; no writes are taken. */
    assert_false(next_frame(r, &op, &fin, p, &n));
    uint8_t b[8];
    errno = 0;
    assert_int_equal(stream_read(r->srv, b, sizeof(b)), -1);
    assert_int_equal(errno, EPROTO);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    assert_int_equal(stream_writev(r->srv, &iov, 1), -1);
}

static void test_upgrade_raw(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x82, true, "\x10\x00", 2);
    assert_int_equal(srv_drive(r), 1);
    assert_int_equal(r->gotlen, 2);
    assert_memory_equal(r->got, "\x10\x00", 2);
    raw_close(r);
    /* mqttv3.1 when that is what the client has; none when none asked. */
    r = raw_open(&plain_opts, NULL);
    raw_upgrade_with(r, REQUEST "Sec-WebSocket-Protocol: chat, mqttv3.1\r\n\r\n", "mqttv3.1");
    raw_close(r);
    r = raw_open(&plain_opts, NULL);
    raw_upgrade_with(r, REQUEST "\r\n", NULL);
    raw_close(r);
    /* The first frame in the same segment as the request. */
    r = raw_open(&plain_opts, NULL);
    uint8_t buf[512];
    size_t n = strlen(REQUEST "\r\n");
    memcpy(buf, REQUEST "\r\n", n);
    n += frame(buf + n, 0x82, true, "\x30\x03\x00\x01t", 5);
    raw_send(r, buf, n);
    assert_int_equal(srv_drive(r), 1);
    assert_true(r->info.upgraded);
    assert_int_equal(r->gotlen, 5);
    assert_memory_equal(r->got, "\x30\x03\x00\x01t", 5);
    raw_close(r);
}

/* RFC 6455 5.1: "a client MUST mask all frames that it sends"; the server
 * closes with 1002. */
static void test_rfc6455_5_1_unmasked_client_frame(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x82, false, "\x10\x00", 2);
    expect_close(r, 1002);
    assert_int_equal(r->gotlen, 0);
    raw_close(r);
}

/* MQTT-6.0.0-1: MQTT control packets are sent in binary data frames; a
 * text frame closes the connection (1003, data it cannot accept). */
static void test_mqtt_6_0_0_1_text_frame(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x81, true, "hello", 5);
    expect_close(r, 1003);
    assert_int_equal(r->gotlen, 0);
    raw_close(r);
}

/* RFC 6455 5.4: a fragmented message is its frames' payloads in order;
 * control frames may come between fragments. MQTT 6.0: the payload is one
 * byte stream whatever the framing. */
static void test_rfc6455_5_4_fragmented(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x02, true, "\x30\x0a", 2); /* binary, not FIN */
    send_frame(r, 0x00, true,
               "\x00\x03"
               "a/b",
               5);                            /* continuation */
    send_frame(r, 0x89, true, "p1", 2);       /* a ping in between */
    send_frame(r, 0x00, true, "", 0);         /* an empty fragment */
    send_frame(r, 0x80, true, "xyz", 3);      /* the last fragment */
    send_frame(r, 0x82, true, "\xc0\x00", 2); /* then a new message */
    assert_int_equal(srv_drive(r), 1);
    assert_int_equal(r->gotlen, 12);
    assert_memory_equal(r->got,
                        "\x30\x0a\x00\x03"
                        "a/bxyz\xc0\x00",
                        12);
    uint8_t op, p[256];
    bool fin;
    size_t n;
    assert_true(next_frame(r, &op, &fin, p, &n));
    assert_int_equal(op, 0xA);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "p1", 2);
    /* One frame may also carry several packets, a packet span frames. */
    send_frame(r, 0x82, true, "\xc0\x00\xc0\x00\x30", 5);
    send_frame(r, 0x82, true, "\x02\x00\x00", 3);
    assert_int_equal(srv_drive(r), 1);
    assert_int_equal(r->gotlen, 20);
    assert_memory_equal(r->got + 12, "\xc0\x00\xc0\x00\x30\x02\x00\x00", 8);
    raw_close(r);
}

/* RFC 6455 5.2: frames are a byte stream too: data and control frames
 * arriving one byte at a time come out the same. */
static void test_rfc6455_5_2_frames_in_pieces(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    uint8_t payload[300], buf[1024];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    size_t n = frame(buf, 0x02, true, payload, 200);
    n += frame(buf + n, 0x89, true, "split ping", 10);
    n += frame(buf + n, 0x80, true, payload + 200, 100);
    for (size_t i = 0; i < n; i++) {
        raw_send(r, buf + i, 1);
        assert_int_equal(srv_drive(r), 1);
    }
    assert_int_equal(r->gotlen, 300);
    assert_memory_equal(r->got, payload, 300);
    uint8_t op, p[256];
    bool fin;
    size_t pn;
    assert_true(next_frame(r, &op, &fin, p, &pn));
    assert_int_equal(op, 0xA);
    assert_int_equal(pn, 10);
    assert_memory_equal(p, "split ping", 10);
    raw_close(r);
}

/* More than WS_MAX_FRAGMENTS frames in one message: 1008. */
static void test_too_many_fragments(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    size_t cap = (WS_MAX_FRAGMENTS + 2) * 6, n = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    n += frame(buf + n, 0x02, true, "a", 1);
    for (int i = 1; i < WS_MAX_FRAGMENTS; i++)
        n += frame(buf + n, 0x00, true, "", 0);
    raw_send(r, buf, n);
    assert_int_equal(srv_drive(r), 1);
    assert_int_equal(r->gotlen, 1);
    n = frame(buf, 0x00, true, "", 0); /* fragment number WS_MAX_FRAGMENTS + 1 */
    raw_send(r, buf, n);
    expect_close(r, 1008);
    free(buf);
    raw_close(r);
}

/* shutdown() sends a close with the status set by ws_stream_set_close. */
static void test_rfc6455_5_5_1_shutdown_code(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    ws_stream_set_close(r->srv, 1001);
    stream_shutdown(r->srv);
    uint8_t op, p[256];
    bool fin;
    size_t n;
    assert_true(next_frame(r, &op, &fin, p, &n));
    assert_int_equal(op, 0x8);
    assert_int_equal(n, 2);
    assert_int_equal(p[0] << 8 | p[1], 1001);
    /* Once: a second shutdown sends nothing more. */
    stream_shutdown(r->srv);
    assert_false(next_frame(r, &op, &fin, p, &n));
    raw_close(r);
}

/* RFC 6455 5.4: a continuation frame needs a message to continue. */
static void test_rfc6455_5_4_continuation_without_start(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x80, true, "ab", 2);
    expect_close(r, 1002);
    raw_close(r);
    /* Nor after a message that has ended. */
    r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x82, true, "ab", 2);
    send_frame(r, 0x80, true, "cd", 2);
    expect_close(r, 1002);
    assert_int_equal(r->gotlen, 2);
    raw_close(r);
}

/* RFC 6455 5.4: no new data message inside a fragmented one. */
static void test_rfc6455_5_4_interleaved_message(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x02, true, "ab", 2);
    send_frame(r, 0x82, true, "cd", 2);
    expect_close(r, 1002);
    raw_close(r);
}

/* RFC 6455 5.5: "All control frames MUST have a payload length of 125
 * bytes or less and MUST NOT be fragmented." */
static void test_rfc6455_5_5_control_frames(void **state) {
    (void)state;
    uint8_t big[200];
    memset(big, 'p', sizeof(big));
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x89, true, big, 126);
    expect_close(r, 1002);
    raw_close(r);
    r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x8A, true, big, 200); /* a pong, too */
    expect_close(r, 1002);
    raw_close(r);
    r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x09, true, "ab", 2); /* a ping without FIN */
    expect_close(r, 1002);
    raw_close(r);
    /* 125 bytes is fine: answered in full. */
    r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x89, true, big, 125);
    assert_int_equal(srv_drive(r), 1);
    uint8_t op, p[256];
    bool fin;
    size_t n;
    assert_true(next_frame(r, &op, &fin, p, &n));
    assert_int_equal(op, 0xA);
    assert_int_equal(n, 125);
    assert_memory_equal(p, big, 125);
    raw_close(r);
}

/* RFC 6455 5.2: reserved bits without an extension, reserved opcodes. */
static void test_rfc6455_5_2_reserved(void **state) {
    (void)state;
    static const uint8_t bad[] = {0xC2, 0xA2, 0x92, 0x83, 0x84, 0x87, 0x8B, 0x8F};
    for (size_t i = 0; i < sizeof(bad); i++) {
        struct raw *r = raw_open(&plain_opts, NULL);
        raw_upgrade(r);
        send_frame(r, bad[i], true, "ab", 2);
        expect_close(r, 1002);
        assert_int_equal(r->gotlen, 0);
        raw_close(r);
    }
}

/* RFC 6455 5.5.2: a ping is answered by a pong with the same payload;
 * 5.5.3: an unsolicited pong is ignored. */
static void test_rfc6455_5_5_2_ping(void **state) {
    (void)state;
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x89, true, "hato\x00\xff", 6);
    send_frame(r, 0x8A, true, "unsolicited", 11);
    send_frame(r, 0x89, true, "", 0);
    assert_int_equal(srv_drive(r), 1);
    uint8_t op, p[256];
    bool fin;
    size_t n;
    assert_true(next_frame(r, &op, &fin, p, &n));
    assert_int_equal(op, 0xA);
    assert_true(fin);
    assert_int_equal(n, 6);
    assert_memory_equal(p, "hato\x00\xff", 6);
    assert_true(next_frame(r, &op, &fin, p, &n));
    assert_int_equal(op, 0xA);
    assert_int_equal(n, 0);
    assert_false(next_frame(r, &op, &fin, p, &n)); /* nothing for the pong */
    assert_int_equal(r->gotlen, 0);
    assert_null(r->info.why);
    raw_close(r);
}

/* RFC 6455 5.5.1: a close is answered by a close (the same code), then the
 * stream ends: read returns 0. */
static void test_rfc6455_5_5_1_close(void **state) {
    (void)state;
    static const struct {
        const char *payload;
        size_t n;
        uint16_t echo;
    } cases[] = {
        {"\x03\xe8", 2, 1000},
        {"\x03\xe9going away", 12, 1001},
        {"\x0f\xa0", 2, 4000},
        {"", 0, 1000}, /* no code: the echo says 1000 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct raw *r = raw_open(&plain_opts, NULL);
        raw_upgrade(r);
        send_frame(r, 0x82, true, "\xe0\x00", 2);
        send_frame(r, 0x88, true, cases[i].payload, cases[i].n);
        assert_int_equal(srv_drive(r), 0);
        assert_int_equal(r->gotlen, 2); /* the data before the close came up */
        uint8_t op, p[256];
        bool fin;
        size_t n;
        assert_true(next_frame(r, &op, &fin, p, &n));
        assert_int_equal(op, 0x8);
        assert_int_equal(n, 2);
        assert_int_equal(p[0] << 8 | p[1], cases[i].echo);
        assert_false(next_frame(r, &op, &fin, p, &n));
        uint8_t b[4];
        assert_int_equal(stream_read(r->srv, b, sizeof(b)), 0);
        /* Nothing is sent after the close. */
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        assert_int_equal(stream_writev(r->srv, &iov, 1), -1);
        stream_shutdown(r->srv);
        assert_false(next_frame(r, &op, &fin, p, &n));
        raw_close(r);
    }
}

/* RFC 6455 7.4: 1005, 1006 and 1015 "MUST NOT be set as a status code in a
 * Close control frame by an endpoint"; neither may codes outside the
 * defined ranges; a 1-byte close payload has no code (5.5.1). */
static void test_rfc6455_7_4_close_codes(void **state) {
    (void)state;
    static const uint16_t bad[] = {1005, 1006, 1015, 0, 999, 1004, 1012, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct raw *r = raw_open(&plain_opts, NULL);
        raw_upgrade(r);
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        send_frame(r, 0x88, true, p, 2);
        expect_close(r, 1002);
        raw_close(r);
    }
    struct raw *r = raw_open(&plain_opts, NULL);
    raw_upgrade(r);
    send_frame(r, 0x88, true, "\x03", 1);
    expect_close(r, 1002);
    raw_close(r);
}

/* A message over the listener's max_message: 1009; in one frame or in
 * fragments that add up. */
static void test_rfc6455_7_4_1_message_too_big(void **state) {
    (void)state;
    static const struct ws_server_opts o = {.max_message = 16};
    uint8_t p[64];
    memset(p, 'm', sizeof(p));
    struct raw *r = raw_open(&o, NULL);
    raw_upgrade(r);
    send_frame(r, 0x82, true, p, 16); /* at the limit */
    assert_int_equal(srv_drive(r), 1);
    assert_int_equal(r->gotlen, 16);
    send_frame(r, 0x82, true, p, 17);
    expect_close(r, 1009);
    assert_int_equal(r->gotlen, 16);
    raw_close(r);
    r = raw_open(&o, NULL);
    raw_upgrade(r);
    send_frame(r, 0x02, true, p, 10);
    send_frame(r, 0x00, true, p, 6);
    send_frame(r, 0x80, true, p, 1);
    expect_close(r, 1009);
    raw_close(r);
    /* A large length in the header is refused before the payload comes. */
    r = raw_open(&o, NULL);
    raw_upgrade(r);
    uint8_t hdr[18] = {0x82, 0xFF, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 2, 3, 4, 'a', 'b', 'c', 'd'};
    raw_send(r, hdr, sizeof(hdr));
    expect_close(r, 1009);
    raw_close(r);
}

/* ---- the HTTP side of the upgrade ----------------------------------------- */

/* The request is refused with this status; the answer carries `has`; then
 * the server's reads fail with EPROTO and the reason. */
static void expect_http(const struct ws_server_opts *o, const char *request, int status,
                        const char *has) {
    struct raw *r = raw_open(o, NULL);
    raw_send(r, request, strlen(request));
    errno = 0;
    int rc = srv_drive(r);
    if (rc != -1 || errno != EPROTO)
        fail_msg("drive -> %d errno %d for %s", rc, errno, request);
    raw_recv(r);
    char head[2048];
    answer_head(r, head, sizeof(head));
    char want[32];
    snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
    if (strncmp(head, want, strlen(want)) != 0)
        fail_msg("answer '%s', expected %d", head, status);
    if (has && !strstr(head, has))
        fail_msg("answer '%s' lacks '%s'", head, has);
    assert_non_null(strstr(head, "\r\nConnection: close\r\n"));
    assert_false(r->info.upgraded);
    assert_non_null(r->info.why);
    snprintf(want, sizeof(want), "HTTP %d", status);
    if (!strstr(r->info.why, want))
        fail_msg("why '%s' lacks '%s'", r->info.why, want);
    uint8_t b[8];
    errno = 0;
    assert_int_equal(stream_read(r->srv, b, sizeof(b)), -1);
    assert_int_equal(errno, EPROTO);
    raw_close(r);
}

static void test_http_missing_key(void **state) {
    (void)state;
    expect_http(&plain_opts, "GET /mqtt HTTP/1.1\r\n" HOST UPGRADE VERSION "\r\n", 400, NULL);
    /* A key that is no base64 of 16 bytes. */
    expect_http(&plain_opts,
                "GET /mqtt HTTP/1.1\r\n" HOST UPGRADE VERSION "Sec-WebSocket-Key: abc\r\n\r\n", 400,
                NULL);
    expect_http(&plain_opts, REQUEST KEY "\r\n", 400, NULL); /* two keys */
}

static void test_http_version_426(void **state) {
    (void)state;
    expect_http(&plain_opts,
                "GET /mqtt HTTP/1.1\r\n" HOST UPGRADE KEY "Sec-WebSocket-Version: 12\r\n\r\n", 426,
                "\r\nSec-WebSocket-Version: 13\r\n");
    expect_http(&plain_opts, "GET /mqtt HTTP/1.1\r\n" HOST UPGRADE KEY "\r\n", 426,
                "\r\nSec-WebSocket-Version: 13\r\n");
}

static void test_http_origin_403(void **state) {
    (void)state;
    static const char *const origins[] = {"https://app.example", "http://localhost:8080"};
    static const struct ws_server_opts o = {.origins = origins, .norigins = 2};
    expect_http(&o, REQUEST "Origin: https://evil.example\r\n\r\n", 403, NULL);
    expect_http(&o, REQUEST "\r\n", 403, NULL); /* none at all */
    expect_http(&o, REQUEST "Origin: https://app.example.evil\r\n\r\n", 403, NULL);
    expect_http(&o, REQUEST "Origin: https://app.example\r\nOrigin: https://app.example\r\n\r\n",
                403, NULL);
    struct raw *r = raw_open(&o, NULL);
    raw_upgrade_with(r, REQUEST "Origin: http://localhost:8080\r\n\r\n", NULL);
    raw_close(r);
}

static void test_http_head_too_large_431(void **state) {
    (void)state;
    static const struct ws_server_opts o = {.max_header = 256};
    char req[1024];
    snprintf(req, sizeof(req), "%sX-Pad: %0300d\r\n\r\n", REQUEST, 0);
    expect_http(&o, req, 431, NULL);
    /* The default bound, 4096. */
    char big[8192];
    int n = snprintf(big, sizeof(big), "%sX-Pad: ", REQUEST);
    memset(big + n, 'a', 4200);
    memcpy(big + n + 4200, "\r\n\r\n", 5);
    expect_http(&plain_opts, big, 431, NULL);
    /* Just under it is fine. */
    snprintf(req, sizeof(req), "%sX-Pad: %040d\r\n\r\n", REQUEST, 0);
    assert_true(strlen(req) < 256);
    struct raw *r = raw_open(&o, NULL);
    raw_upgrade_with(r, req, NULL);
    raw_close(r);
}

static void test_http_method_405(void **state) {
    (void)state;
    expect_http(&plain_opts, "POST /mqtt HTTP/1.1\r\n" HOST UPGRADE KEY VERSION "\r\n", 405,
                "\r\nAllow: GET, HEAD\r\n");
    expect_http(&plain_opts, "PUT / HTTP/1.1\r\n" HOST "\r\n", 405, NULL);
    /* HEAD may fetch a file, but never upgrade. */
    expect_http(&plain_opts, "HEAD /mqtt HTTP/1.1\r\n" HOST UPGRADE KEY VERSION "\r\n", 405,
                "\r\nAllow: GET\r\n");
}

static void test_http_other_refusals(void **state) {
    (void)state;
    /* A plain GET without http_dir. */
    expect_http(&plain_opts, "GET / HTTP/1.1\r\n" HOST "\r\n", 404, NULL);
    /* Malformed heads get the parser's status. */
    expect_http(&plain_opts, "GET / HTTP/2.0\r\n" HOST "\r\n", 505, NULL);
    expect_http(&plain_opts, "GET /mqtt HTTP/1.1\r\n" UPGRADE KEY VERSION "\r\n", 400, NULL);
    expect_http(&plain_opts, "GET /mqtt HTTP/1.1\nHost: a\n\n", 400, NULL);
    /* Upgrade needs HTTP/1.1 and Connection: Upgrade. */
    expect_http(&plain_opts, "GET /mqtt HTTP/1.0\r\n" HOST UPGRADE KEY VERSION "\r\n", 400, NULL);
    expect_http(&plain_opts,
                "GET /mqtt HTTP/1.1\r\n" HOST "Upgrade: websocket\r\n" KEY VERSION "\r\n", 400,
                NULL);
    /* No body on the upgrade. */
    expect_http(&plain_opts, REQUEST "Content-Length: 5\r\n\r\nhello", 400, NULL);
    expect_http(&plain_opts, REQUEST "Transfer-Encoding: chunked\r\n\r\n", 400, NULL);
    /* Subprotocols offered, none of them MQTT's. */
    expect_http(&plain_opts, REQUEST "Sec-WebSocket-Protocol: chat, mqttv5\r\n\r\n", 400, NULL);
}

/* ---- X-Forwarded-For -------------------------------------------------------- */

static const char *const trusted[] = {"10.0.0.0/8", "2001:db8:1::/48", "192.0.2.1"};
static const struct ws_server_opts xff_opts = {.trusted_proxies = trusted, .ntrusted = 3};

/* Upgrade from a socket address with this X-Forwarded-For (NULL: none);
 * check the resulting peer and via. */
static void xff(const struct ws_server_opts *o, const char *sock, const char *header,
                const char *peer, const char *via) {
    struct raw *r = raw_open(o, sock);
    char req[1024];
    snprintf(req, sizeof(req), "%s%s%s%s\r\n", REQUEST, header ? "X-Forwarded-For: " : "",
             header ? header : "", header ? "\r\n" : "");
    raw_upgrade_with(r, req, NULL);
    if (strcmp(r->info.peer, peer) != 0)
        fail_msg("%s via %s: peer '%s', expected '%s'", header, sock, r->info.peer, peer);
    if (via) {
        assert_non_null(r->info.via);
        assert_string_equal(r->info.via, via);
    } else {
        assert_null(r->info.via);
    }
    raw_close(r);
}

static void test_xff_trusted(void **state) {
    (void)state;
    xff(&xff_opts, "10.1.2.3:5555", "203.0.113.9", "203.0.113.9:0", "10.1.2.3:5555");
    /* The rightmost address that is not a trusted proxy. */
    xff(&xff_opts, "10.1.2.3:5555", "198.51.100.1, 203.0.113.9, 10.9.9.9", "203.0.113.9:0",
        "10.1.2.3:5555");
    xff(&xff_opts, "10.1.2.3:5555", "198.51.100.1,203.0.113.9,10.9.9.9,192.0.2.1", "203.0.113.9:0",
        "10.1.2.3:5555");
    xff(&xff_opts, "192.0.2.1:80", "2001:db8::5", "[2001:db8::5]:0", "192.0.2.1:80");
    xff(&xff_opts, "[2001:db8:1::7]:443", "203.0.113.9, 2001:db8:1:ffff::1", "203.0.113.9:0",
        "[2001:db8:1::7]:443");
    /* All of them trusted: the leftmost is the best there is. */
    xff(&xff_opts, "10.1.2.3:5555", "10.0.0.1, 10.0.0.2", "10.0.0.1:0", "10.1.2.3:5555");
}

static void test_xff_untrusted(void **state) {
    (void)state;
    /* From a socket that is not a trusted proxy: ignored. */
    xff(&xff_opts, "203.0.113.50:6000", "198.51.100.1", "203.0.113.50:6000", NULL);
    xff(&xff_opts, "11.1.2.3:5555", "198.51.100.1", "11.1.2.3:5555", NULL);
    xff(&xff_opts, "192.0.2.2:5555", "198.51.100.1", "192.0.2.2:5555", NULL);
    xff(&xff_opts, "[2001:db8:2::1]:1", "198.51.100.1", "[2001:db8:2::1]:1", NULL);
    /* No trusted proxies configured: never believed. */
    xff(&plain_opts, "10.1.2.3:5555", "198.51.100.1", "10.1.2.3:5555", NULL);
    /* None sent. */
    xff(&xff_opts, "10.1.2.3:5555", NULL, "10.1.2.3:5555", NULL);
    /* Malformed lists are not believed at all. */
    xff(&xff_opts, "10.1.2.3:5555", "198.51.100.1, not-an-ip", "10.1.2.3:5555", NULL);
    xff(&xff_opts, "10.1.2.3:5555", "198.51.100.1:4000", "10.1.2.3:5555", NULL);
    xff(&xff_opts, "10.1.2.3:5555", "198.51.100.1,", "10.1.2.3:5555", NULL);
    xff(&xff_opts, "10.1.2.3:5555", "", "10.1.2.3:5555", NULL);
    /* Two X-Forwarded-For fields: which one is the proxy's? Neither. */
    struct raw *r = raw_open(&xff_opts, "10.1.2.3:5555");
    raw_upgrade_with(
        r, REQUEST "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 198.51.100.2\r\n\r\n", NULL);
    assert_string_equal(r->info.peer, "10.1.2.3:5555");
    raw_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_client_server),
        cmocka_unit_test(test_client_writes_before_upgrade),
        cmocka_unit_test(test_large_both_ways),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_upgrade_raw),
        cmocka_unit_test(test_rfc6455_5_1_unmasked_client_frame),
        cmocka_unit_test(test_mqtt_6_0_0_1_text_frame),
        cmocka_unit_test(test_rfc6455_5_4_fragmented),
        cmocka_unit_test(test_rfc6455_5_2_frames_in_pieces),
        cmocka_unit_test(test_too_many_fragments),
        cmocka_unit_test(test_rfc6455_5_5_1_shutdown_code),
        cmocka_unit_test(test_rfc6455_5_4_continuation_without_start),
        cmocka_unit_test(test_rfc6455_5_4_interleaved_message),
        cmocka_unit_test(test_rfc6455_5_5_control_frames),
        cmocka_unit_test(test_rfc6455_5_2_reserved),
        cmocka_unit_test(test_rfc6455_5_5_2_ping),
        cmocka_unit_test(test_rfc6455_5_5_1_close),
        cmocka_unit_test(test_rfc6455_7_4_close_codes),
        cmocka_unit_test(test_rfc6455_7_4_1_message_too_big),
        cmocka_unit_test(test_http_missing_key),
        cmocka_unit_test(test_http_version_426),
        cmocka_unit_test(test_http_origin_403),
        cmocka_unit_test(test_http_head_too_large_431),
        cmocka_unit_test(test_http_method_405),
        cmocka_unit_test(test_http_other_refusals),
        cmocka_unit_test(test_xff_trusted),
        cmocka_unit_test(test_xff_untrusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
