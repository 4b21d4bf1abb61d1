/*
 * Load generator for bench/persistence (not a test). MQTT 3.1.1 over plain TCP, one
 * thread, poll(2).
 *
 *   persist_load run  PORT NPUB SECONDS WINDOW PAYLOAD
 *       NPUB persistent subscribers (bsub-i on bench/i, QoS 1, clean session 0), then
 *       NPUB publishers (bpub-i on bench/i, QoS 1, WINDOW unacknowledged each) for SECONDS.
 *       Prints: acked/s, delivered/s, p50 and p99 of PUBLISH -> PUBACK in microseconds.
 *   persist_load fill PORT COUNT TOPIC RETAIN
 *       One publisher sends COUNT QoS 1 messages (window 64). TOPIC may contain %d (the
 *       message number: distinct topics). RETAIN 1 sets the retain flag.
 *   persist_load sub  PORT CLIENTID FILTER
 *       Make a persistent subscription and leave (for fill to queue behind it).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct cl {
    int fd;
    uint8_t in[1 << 16];
    size_t inlen;
    uint8_t out[1 << 16];
    size_t outlen;
    int inflight;
    uint16_t pid;
    int64_t *sent_at; /* by packet id */
    int idx;
    int ready;
};

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static size_t put_str(uint8_t *p, const char *s) {
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

static size_t put_len(uint8_t *p, size_t n) {
    size_t i = 0;
    do {
        uint8_t b = n % 128;
        n /= 128;
        p[i++] = (uint8_t)(b | (n ? 0x80 : 0));
    } while (n);
    return i;
}

static void queue(struct cl *c, const uint8_t *p, size_t n) {
    if (c->outlen + n > sizeof(c->out)) {
        fprintf(stderr, "output overflow\n");
        exit(1);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void flush(struct cl *c) {
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t w = write(c->fd, c->out + off, c->outlen - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            perror("write");
            exit(1);
        }
        off += (size_t)w;
    }
    c->outlen = 0;
}

static void send_connect(struct cl *c, const char *id, int clean) {
    uint8_t body[256], pkt[300];
    size_t n = put_str(body, "MQTT");
    body[n++] = 4;
    body[n++] = clean ? 2 : 0;
    body[n++] = 0;
    body[n++] = 0; /* keep alive 0 */
    n += put_str(body + n, id);
    pkt[0] = 0x10;
    size_t h = 1 + put_len(pkt + 1, n);
    memcpy(pkt + h, body, n);
    queue(c, pkt, h + n);
}

static void send_subscribe(struct cl *c, const char *filter) {
    uint8_t body[256], pkt[300];
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 1;
    n += put_str(body + n, filter);
    body[n++] = 1;
    pkt[0] = 0x82;
    size_t h = 1 + put_len(pkt + 1, n);
    memcpy(pkt + h, body, n);
    queue(c, pkt, h + n);
}

static void send_publish(struct cl *c, const char *topic, const uint8_t *payload, size_t plen,
                         int retain) {
    uint8_t pkt[512];
    c->pid = (uint16_t)(c->pid % 65535 + 1);
    size_t tl = strlen(topic);
    size_t rl = 2 + tl + 2 + plen;
    pkt[0] = (uint8_t)(0x32 | (retain ? 1 : 0));
    size_t h = 1 + put_len(pkt + 1, rl);
    h += put_str(pkt + h, topic);
    pkt[h++] = (uint8_t)(c->pid >> 8);
    pkt[h++] = (uint8_t)c->pid;
    memcpy(pkt + h, payload, plen);
    queue(c, pkt, h + plen);
    if (c->sent_at)
        c->sent_at[c->pid] = now_us();
    c->inflight++;
}

/* Read what is there; call fn for each complete packet. Returns -1 on close. */
typedef void (*pkt_fn)(struct cl *c, uint8_t type, const uint8_t *body, size_t len);
static int pump(struct cl *c, pkt_fn fn) {
    ssize_t r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
    if (r <= 0)
        return r < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->inlen += (size_t)r;
    size_t off = 0;
    for (;;) {
        if (c->inlen - off < 2)
            break;
        size_t len = 0, mult = 1, i = off + 1;
        int ok = 0;
        while (i < c->inlen && i < off + 5) {
            len += (c->in[i] & 127) * mult;
            mult *= 128;
            if (!(c->in[i++] & 128)) {
                ok = 1;
                break;
            }
        }
        if (!ok || c->inlen - i < len)
            break;
        fn(c, c->in[off], c->in + i, len);
        off = i + len;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return 0;
}

static int64_t *lat;
static size_t nlat, caplat;
static long acked, delivered;

static void on_pub_pkt(struct cl *c, uint8_t type, const uint8_t *b, size_t len) {
    if ((type >> 4) == 2) {
        c->ready = 1;
    } else if ((type >> 4) == 4 && len >= 2) {
        uint16_t pid = (uint16_t)(b[0] << 8 | b[1]);
        c->inflight--;
        acked++;
        if (c->sent_at) {
            if (nlat == caplat) {
                caplat = caplat ? caplat * 2 : 1 << 16;
                lat = realloc(lat, caplat * sizeof(*lat));
            }
            lat[nlat++] = now_us() - c->sent_at[pid];
        }
    }
}

static void on_sub_pkt(struct cl *c, uint8_t type, const uint8_t *b, size_t len) {
    if ((type >> 4) == 2 || (type >> 4) == 9) {
        c->ready++;
    } else if ((type >> 4) == 3) {
        int qos = (type >> 1) & 3;
        delivered++;
        if (qos) {
            size_t tl = (size_t)(b[0] << 8 | b[1]);
            if (tl + 4 <= len) {
                uint8_t ack[4] = {0x40, 2, b[2 + tl], b[3 + tl]};
                queue(c, ack, 4);
            }
        }
    }
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void wait_ready(struct cl *cs, int n, int want, pkt_fn fn) {
    for (int i = 0; i < n; i++) {
        while (cs[i].ready < want) {
            if (pump(&cs[i], fn) < 0) {
                fprintf(stderr, "connection closed during set-up\n");
                exit(1);
            }
            flush(&cs[i]);
        }
    }
}

static int run(int port, int npub, int seconds, int window, int psize) {
    struct cl *subs = calloc((size_t)npub, sizeof(*subs));
    struct cl *pubs = calloc((size_t)npub, sizeof(*pubs));
    uint8_t payload[256];
    memset(payload, 'x', sizeof(payload));
    if (psize > 256)
        psize = 256;
    char buf[64];
    for (int i = 0; i < npub; i++) {
        subs[i].fd = dial(port);
        snprintf(buf, sizeof(buf), "bsub-%d", i);
        send_connect(&subs[i], buf, 0);
        snprintf(buf, sizeof(buf), "bench/%d", i);
        send_subscribe(&subs[i], buf);
        flush(&subs[i]);
    }
    wait_ready(subs, npub, 2, on_sub_pkt);
    for (int i = 0; i < npub; i++) {
        pubs[i].fd = dial(port);
        pubs[i].sent_at = calloc(65536, sizeof(int64_t));
        snprintf(buf, sizeof(buf), "bpub-%d", i);
        send_connect(&pubs[i], buf, 1);
        flush(&pubs[i]);
    }
    wait_ready(pubs, npub, 1, on_pub_pkt);
    struct pollfd *pfd = calloc((size_t)npub * 2, sizeof(*pfd));
    for (int i = 0; i < npub; i++) {
        pfd[i] = (struct pollfd){.fd = pubs[i].fd, .events = POLLIN};
        pfd[npub + i] = (struct pollfd){.fd = subs[i].fd, .events = POLLIN};
    }
    int64_t t0 = now_us(), end = t0 + (int64_t)seconds * 1000000;
    long warm_acked = 0, warm_delivered = 0;
    int64_t warm_end = t0 + 1000000; /* first second is warm-up */
    int warm = 1;
    while (now_us() < end) {
        for (int i = 0; i < npub; i++) {
            snprintf(buf, sizeof(buf), "bench/%d", i);
            while (pubs[i].inflight < window)
                send_publish(&pubs[i], buf, payload, (size_t)psize, 0);
            flush(&pubs[i]);
        }
        if (poll(pfd, (nfds_t)npub * 2, 100) < 0)
            continue;
        for (int i = 0; i < npub; i++) {
            if (pfd[i].revents && pump(&pubs[i], on_pub_pkt) < 0)
                return 1;
            if (pfd[npub + i].revents && pump(&subs[i], on_sub_pkt) < 0)
                return 1;
            flush(&subs[i]);
        }
        if (warm && now_us() >= warm_end) {
            warm = 0;
            warm_acked = acked;
            warm_delivered = delivered;
            nlat = 0;
        }
    }
    double secs = (double)(now_us() - warm_end) / 1e6;
    qsort(lat, nlat, sizeof(*lat), cmp64);
    printf("acked_per_s=%.0f delivered_per_s=%.0f p50_us=%lld p99_us=%lld samples=%zu\n",
           (double)(acked - warm_acked) / secs, (double)(delivered - warm_delivered) / secs,
           nlat ? (long long)lat[nlat / 2] : -1LL, nlat ? (long long)lat[nlat * 99 / 100] : -1LL,
           nlat);
    for (int i = 0; i < npub; i++) {
        uint8_t d[2] = {0xE0, 0};
        queue(&pubs[i], d, 2);
        flush(&pubs[i]);
        queue(&subs[i], d, 2);
        flush(&subs[i]);
        close(pubs[i].fd);
        close(subs[i].fd);
    }
    return 0;
}

static int fill(int port, long count, const char *topic, int retain) {
    struct cl *c = calloc(1, sizeof(*c));
    c->fd = dial(port);
    send_connect(c, "bfill", 1);
    flush(c);
    wait_ready(c, 1, 1, on_pub_pkt);
    long sent = 0;
    char t[256];
    uint8_t payload[16];
    memset(payload, 'p', sizeof(payload));
    while (acked < count) {
        while (sent < count && c->inflight < 64) {
            snprintf(t, sizeof(t), topic, (int)sent);
            send_publish(c, t, payload, sizeof(payload), retain);
            sent++;
        }
        flush(c);
        if (pump(c, on_pub_pkt) < 0)
            return 1;
    }
    close(c->fd);
    return 0;
}

static int sub(int port, const char *id, const char *filter) {
    struct cl *c = calloc(1, sizeof(*c));
    c->fd = dial(port);
    send_connect(c, id, 0);
    send_subscribe(c, filter);
    flush(c);
    wait_ready(c, 1, 2, on_sub_pkt);
    uint8_t d[2] = {0xE0, 0};
    queue(c, d, 2);
    flush(c);
    close(c->fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "run"))
        return run(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (argc == 6 && !strcmp(argv[1], "fill"))
        return fill(atoi(argv[2]), atol(argv[3]), argv[4], atoi(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "sub"))
        return sub(atoi(argv[2]), argv[3], argv[4]);
    fprintf(stderr, "usage: see the comment at the top of persist_load.c\n");
    return 2;
}
