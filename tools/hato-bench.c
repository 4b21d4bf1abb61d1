/*
 * hato-bench: an MQTT load generator on the hato client library.
 *
 * One thread drives every connection through one epoll instance, so the
 * tool costs little next to the broker it measures (it reports its own CPU
 * time). With -j N the clients are dealt over N processes (client i to
 * process i mod N), each with its own loop, so the generator can drive
 * several broker cores; the parent holds them at a barrier until every
 * subscriber is subscribed, then merges their counts and latencies into one
 * summary. Publishers stamp each payload with their index, a sequence number
 * and the send time (CLOCK_MONOTONIC, shared by all processes of the
 * machine); subscribers check every message against what they expect, so a
 * run reports end-to-end latency percentiles, losses, duplicates and
 * reordering, not only rates.
 *
 * Modes: conn (open and hold connections), pub, sub, run (publishers and
 * subscribers in one process: the only mode that knows what is expected),
 * retained (store N retained topics, time a '#' subscriber receiving them).
 * --sub-host/--sub-port put the subscribers on another broker than the
 * publishers (bench/bridge: end to end across a bridge, still exact).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hato/client.h"

#define STAMP_MAGIC 0x68626e31u /* "hbn1" */
#define STAMP_SIZE 24u          /* magic u32, publisher u32, seq u64, send time ns u64 */
#define QOS0_OUT_CAP (64u * 1024u)
#define MAX_LAT_SAMPLES (20u * 1000u * 1000u)

enum mode { M_CONN, M_PUB, M_SUB, M_RUN, M_RETAINED };
enum role { R_CONN, R_PUB, R_SUB };

struct opts {
    enum mode mode;
    const char *host;
    uint16_t port;
    const char *sub_host; /* --sub-host/--sub-port: subscribers' broker, NULL/0 = -h/-p */
    uint16_t sub_port;
    uint8_t version;
    int conns;      /* conn mode */
    int pubs, subs; /* pub/sub/run */
    const char *topic, *filter;
    uint8_t qos;
    size_t size;
    uint64_t count;   /* per publisher; topics for retained */
    double rate;      /* per publisher msg/s, 0 = unlimited */
    double conn_rate; /* connections per second, 0 = unlimited */
    int inflight;
    double duration; /* hard bound, seconds */
    double hold;     /* conn mode: seconds to hold once all are up */
    double idle;     /* seconds without a message before giving up on the rest */
    int source_ips;  /* bind to 127.0.0.1 .. 127.0.0.N in turn */
    uint16_t keepalive;
    bool json;
    bool quiet;
    const char *id_prefix;
    const char *ws_path; /* --ws PATH: MQTT over WebSocket */
    int jobs;            /* -j N: generator processes */
    bool persistent;     /* --persistent: subscribers keep their sessions */
    bool go_stdin;       /* --go-stdin: publish after a line on stdin */
};

struct seqmap { /* what one subscriber got from one publisher */
    uint64_t *bits;
    uint64_t max_seen;
    bool any;
};

struct bclient {
    struct hc_client *hc;
    enum role role;
    int index;
    char topic[256]; /* publisher: its topic; subscriber: its filter */
    uint32_t mask;   /* events registered with epoll */
    int fd;
    bool connected, subscribed, done, failed, ever_connected;
    uint64_t sent, acked;
    struct seqmap *seq; /* subscriber: one per publisher */
};

static struct opts O = {
    .host = "127.0.0.1",
    .port = 1883,
    .version = MQTT_V311,
    .conns = 100,
    .pubs = 1,
    .subs = 1,
    .topic = "bench/%i",
    .filter = "bench/#",
    .size = 64,
    .count = 10000,
    .inflight = 64,
    .duration = 60,
    .idle = 3,
    .keepalive = 120,
    .id_prefix = "hb",
    .jobs = 1,
};

/* -j: this process's share of the clients, and its pipes to the parent. */
static int job;                /* 0 .. O.jobs-1 */
static int ready_fd = -1;      /* child -> parent: u64 subscribed/connected count */
static int go_fd = -1;         /* parent -> children: one byte each, "start" */
static int result_fd = -1;     /* child -> parent: struct job_result + latencies */
static uint64_t held_merged;   /* parent: connections held by all children */
static bool merged;            /* parent: the totals below come from the children */
static double gen_load;        /* busiest process's CPU / wall during traffic, 0..1 */
static uint64_t traffic_t0_ns; /* start of the traffic phase */
static double traffic_cpu0;

static bool mine(int i) {
    return i % O.jobs == job;
}

static struct bclient *clients;
static int nclients;
static int epfd;
static uint8_t *payload_buf;
static uint64_t t_start_ns;
static volatile sig_atomic_t stop_flag;

/* Totals. */
static uint64_t n_up_ever, n_failed_early; /* connections that came up; that never did */
static uint64_t n_connected, n_errors, n_sent, n_received, n_unique, n_dup, n_reorder, n_expected;
static uint64_t first_send_ns, last_recv_ns, all_connected_ns;
static uint16_t retained_last_mid; /* retained mode: the QoS 1 publish that closes the set */
static uint32_t *lat;              /* microseconds */
static size_t nlat, caplat;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hato-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void on_sig(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* "bench/%i" -> "bench/7". */
static void expand(char *out, size_t cap, const char *tmpl, int index) {
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < cap; p++) {
        if (p[0] == '%' && p[1] == 'i') {
            int n = snprintf(out + o, cap - o, "%d", index);
            if (n < 0 || (size_t)n >= cap - o)
                break;
            o += (size_t)n;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
}

/* ---- epoll bookkeeping ----------------------------------------------- */

static void watch(struct bclient *b) {
    int fd = hc_fd(b->hc);
    uint32_t want = EPOLLIN | (hc_want_write(b->hc) ? EPOLLOUT : 0);
    if (fd != b->fd) {
        if (fd >= 0) {
            struct epoll_event ev = {.events = want, .data.ptr = b};
            if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                die(1, "epoll_ctl: %s", strerror(errno));
        }
        b->fd = fd;
        b->mask = want;
        return;
    }
    if (fd >= 0 && want != b->mask) {
        struct epoll_event ev = {.events = want, .data.ptr = b};
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
        b->mask = want;
    }
}

/* ---- callbacks -------------------------------------------------------- */

static void cb_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)c, (void)sp, (void)props;
    struct bclient *b = ud;
    if (reason) {
        if (!O.quiet)
            fprintf(stderr, "hato-bench: client %d refused: %s\n", b->index,
                    hc_connack_text(O.version, reason));
        return;
    }
    b->connected = true;
    b->ever_connected = true;
    n_connected++;
    n_up_ever++;
    if (b->role == R_SUB)
        hc_subscribe1(b->hc, b->topic, O.qos, NULL);
}

static void cb_disconnect(struct hc_client *c, void *ud, int err) {
    struct bclient *b = ud;
    if (b->connected)
        n_connected--;
    b->connected = false;
    if (err != HC_OK && !b->failed) {
        b->failed = true;
        if (!b->ever_connected)
            n_failed_early++;
        n_errors++;
        if (!O.quiet)
            fprintf(stderr, "hato-bench: client %d: %s\n", b->index, hc_error_text(c));
    }
}

static void cb_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props) {
    (void)c, (void)mid, (void)props;
    struct bclient *b = ud;
    if (count < 1 || codes[0] >= 0x80) {
        n_errors++;
        fprintf(stderr, "hato-bench: subscriber %d: subscription to %s refused\n", b->index,
                b->topic);
        return;
    }
    b->subscribed = true;
}

static void cb_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    (void)c, (void)mid;
    struct bclient *b = ud;
    b->acked++;
    if (O.mode == M_RETAINED && mid == retained_last_mid)
        b->done = true;
    if (reason >= 0x80)
        n_errors++;
}

static void record_latency(uint64_t us) {
    if (nlat == caplat) {
        if (caplat >= MAX_LAT_SAMPLES)
            return;
        size_t n = caplat ? caplat * 2 : 65536;
        uint32_t *p = realloc(lat, n * sizeof(*p));
        if (!p)
            return;
        lat = p;
        caplat = n;
    }
    lat[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void cb_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c;
    struct bclient *b = ud;
    uint64_t t = now_ns();
    n_received++;
    last_recv_ns = t;
    if (O.mode == M_RETAINED) {
        n_unique++;
        return;
    }
    if (m->payload_len < STAMP_SIZE)
        return;
    uint32_t magic, pub;
    uint64_t seq, sent;
    memcpy(&magic, m->payload, 4);
    memcpy(&pub, m->payload + 4, 4);
    memcpy(&seq, m->payload + 8, 8);
    memcpy(&sent, m->payload + 16, 8);
    if (magic != STAMP_MAGIC)
        return;
    if (t > sent)
        record_latency((t - sent) / 1000u);
    if (!b->seq || (int)pub >= O.pubs || seq >= O.count) {
        n_unique++;
        return;
    }
    struct seqmap *s = &b->seq[pub];
    if (!s->bits) {
        s->bits = calloc((O.count + 63) / 64, sizeof(uint64_t));
        if (!s->bits)
            die(1, "out of memory");
    }
    uint64_t bit = 1ull << (seq % 64);
    if (s->bits[seq / 64] & bit) {
        n_dup++;
        return;
    }
    s->bits[seq / 64] |= bit;
    n_unique++;
    if (s->any && seq < s->max_seen)
        n_reorder++;
    if (!s->any || seq > s->max_seen)
        s->max_seen = seq;
    s->any = true;
}

/* ---- set-up ----------------------------------------------------------- */

static char bind_buf[32];

static struct bclient *add_client(enum role role, int index) {
    struct bclient *b = &clients[nclients++];
    b->role = role;
    b->index = index;
    b->fd = -1;
    char id[96];
    const char *kind = role == R_PUB ? "p" : role == R_SUB ? "s" : "c";
    snprintf(id, sizeof(id), "%s-%d-%s%d", O.id_prefix, (int)getpid(), kind, index);
    if (role == R_PUB)
        expand(b->topic, sizeof(b->topic), O.topic, index);
    else if (role == R_SUB)
        expand(b->topic, sizeof(b->topic), O.filter, index);
    struct hc_config cfg = {
        .host = role == R_SUB && O.sub_host ? O.sub_host : O.host,
        .port = role == R_SUB && O.sub_port ? O.sub_port : O.port,
        .version = O.version,
        .client_id = id,
        .clean = !(role == R_SUB && O.persistent),
        .keepalive = O.keepalive,
        .nodelay = true,
        .max_inflight = (uint16_t)(O.inflight > 65535 ? 65535 : O.inflight),
        .connect_timeout_ms = 30000,
        .ws_path = O.ws_path,
    };
    /* --persistent on MQTT 5: clean start 0 alone ends the session at the
     * disconnect; an expiry keeps it (and makes it durable in a cluster). */
    static struct mqtt_props persist_props;
    if (role == R_SUB && O.persistent && O.version == MQTT_V5) {
        persist_props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        persist_props.session_expiry = 3600;
        cfg.connect_props = &persist_props;
    }
    if (O.source_ips > 1) {
        snprintf(bind_buf, sizeof(bind_buf), "127.0.0.%d", 1 + index % O.source_ips);
        cfg.bind_address = bind_buf;
    }
    static const struct hc_callbacks cb = {
        .on_connect = cb_connect,
        .on_disconnect = cb_disconnect,
        .on_message = cb_message,
        .on_publish = cb_publish,
        .on_subscribe = cb_subscribe,
    };
    int err;
    b->hc = hc_new(&cfg, &cb, b, &err);
    if (!b->hc)
        die(1, "cannot create client: %s", hc_config_error());
    return b;
}

static int start_connect(struct bclient *b) {
    if (hc_connect(b->hc, hc_now_ms()) != HC_OK) {
        n_errors++;
        n_failed_early++;
        b->failed = true;
        if (!O.quiet)
            fprintf(stderr, "hato-bench: client %d: %s\n", b->index, hc_error_text(b->hc));
        return -1;
    }
    watch(b);
    return 0;
}

/* ---- the loop ---------------------------------------------------------- */

static void handle(struct bclient *b, uint32_t ev) {
    uint64_t now = hc_now_ms();
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        hc_on_readable(b->hc, now);
    if ((ev & EPOLLOUT) && hc_fd(b->hc) >= 0)
        hc_on_writable(b->hc, now);
    watch(b);
}

static int poll_wait(const struct timespec *timeout) {
    struct epoll_event evs[256];
    int n = epoll_pwait2(epfd, evs, 256, timeout, NULL);
    for (int i = 0; i < n; i++)
        handle(evs[i].data.ptr, evs[i].events);
    return n;
}

static int poll_once(int timeout_ms) {
    struct epoll_event evs[256];
    int n = epoll_wait(epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++)
        handle(evs[i].data.ptr, evs[i].events);
    return n;
}

static void tick_all(void) {
    uint64_t now = hc_now_ms();
    for (int i = 0; i < nclients; i++) {
        if (hc_fd(clients[i].hc) >= 0) {
            hc_tick(clients[i].hc, now);
            watch(&clients[i]);
        }
    }
}

static double secs_since(uint64_t t0) {
    return (double)(now_ns() - t0) / 1e9;
}

/* Open clients[from..to) at O.conn_rate, at most `window` connecting at once. */
static void connect_range(int from, int to, double deadline_s) {
    int next = from;
    uint64_t t0 = now_ns(), last_tick = t0;
    uint64_t base = n_up_ever + n_failed_early;
    const int window = 512;
    while (!stop_flag && secs_since(t_start_ns) < deadline_s) {
        uint64_t finished = n_up_ever + n_failed_early - base;
        if (next == to && finished >= (uint64_t)(to - from))
            return;
        uint64_t connecting = (uint64_t)(next - from) - finished;
        uint64_t allowed = (uint64_t)(to - from);
        if (O.conn_rate > 0)
            allowed = (uint64_t)(secs_since(t0) * O.conn_rate) + 1;
        while (next < to && connecting < (uint64_t)window && (uint64_t)(next - from) < allowed) {
            if (start_connect(&clients[next]) == 0)
                connecting++;
            next++;
        }
        poll_once(next < to ? 1 : 100);
        if (now_ns() - last_tick > 500000000u) {
            tick_all();
            last_tick = now_ns();
        }
    }
}

/* The offset of publisher b's paced schedule (-r) from the first one's. */
static uint64_t pub_phase_ns(const struct bclient *b) {
    if (O.rate <= 0 || O.pubs <= 1)
        return 0;
    return (uint64_t)((double)b->index * 1e9 / ((double)O.pubs * O.rate));
}

/* Nanoseconds from tnow until the next paced publish of pubs [from, to) is
 * due, at most 1 ms (0: one is due now). */
static uint64_t next_due_ns(int from, int to, uint64_t tnow) {
    uint64_t best = 1000000;
    double period = 1e9 / O.rate;
    for (int i = from; i < to; i++) {
        const struct bclient *b = &clients[i];
        /* A publisher at its in-flight window waits for an acknowledgement,
         * which is an event. */
        if (!b->connected || b->sent >= O.count ||
            (O.qos == 0 ? hc_out_pending(b->hc) >= QOS0_OUT_CAP
                        : hc_pending(b->hc) >= (size_t)O.inflight))
            continue;
        double at = (double)(first_send_ns + pub_phase_ns(b)) + (double)b->sent * period;
        if (at <= (double)tnow)
            return 0;
        uint64_t d = (uint64_t)(at - (double)tnow);
        if (d < best)
            best = d;
    }
    return best;
}

/* Fill publisher b's output as far as its budget allows. */
static void pump_pub(struct bclient *b, uint64_t tnow) {
    if (!b->connected || b->sent >= O.count)
        return;
    uint64_t budget = O.count - b->sent;
    if (O.rate > 0) {
        /* Publisher i's schedule starts i / (pubs x rate) later than the
         * first one's: independent clients do not publish in lockstep, and
         * a burst of every publisher at the same instant would measure the
         * burst's queue (in the broker and in this generator), not the
         * latency of a message (docs/internals/performance.md). */
        uint64_t phase = pub_phase_ns(b);
        if (tnow < first_send_ns + phase)
            return;
        uint64_t due = (uint64_t)((double)(tnow - first_send_ns - phase) / 1e9 * O.rate) + 1;
        if (due > O.count)
            due = O.count;
        budget = due > b->sent ? due - b->sent : 0;
    }
    while (budget--) {
        if (O.qos == 0 ? hc_out_pending(b->hc) >= QOS0_OUT_CAP
                       : hc_pending(b->hc) >= (size_t)O.inflight)
            break;
        uint32_t magic = STAMP_MAGIC, pub = (uint32_t)b->index;
        uint64_t seq = b->sent, t = now_ns();
        memcpy(payload_buf, &magic, 4);
        memcpy(payload_buf + 4, &pub, 4);
        memcpy(payload_buf + 8, &seq, 8);
        memcpy(payload_buf + 16, &t, 8);
        if (hc_publish(b->hc, b->topic, payload_buf, O.size, O.qos, O.mode == M_RETAINED, NULL,
                       NULL) != HC_OK) {
            n_errors++;
            break;
        }
        b->sent++;
        n_sent++;
    }
    if (hc_want_write(b->hc))
        hc_on_writable(b->hc, hc_now_ms());
    watch(b);
}

static bool pub_finished(const struct bclient *b) {
    if (b->failed)
        return true;
    if (b->sent < O.count)
        return false;
    return O.qos == 0 ? hc_out_pending(b->hc) == 0 : b->acked >= O.count;
}

static uint64_t last_progress_ns, last_report_ns, report_sent, report_recv;

/* Latency of the last interval: p50 and p99 of (a sample of at most 4096 of)
 * the latencies recorded since the previous report, in microseconds. */
static size_t report_lat; /* index in lat[] of the interval's first sample */

static int cmp_u32(const void *a, const void *b);

static void interval_latency(double *p50, double *p99) {
    static uint32_t sample[4096];
    size_t n = nlat - report_lat, step = n / 4096 + 1, k = 0;
    for (size_t i = report_lat; i < nlat && k < 4096; i += step)
        sample[k++] = lat[i];
    report_lat = nlat;
    *p50 = *p99 = 0;
    if (!k)
        return;
    qsort(sample, k, sizeof(*sample), cmp_u32);
    *p50 = sample[(size_t)(0.5 * (double)(k - 1) + 0.5)];
    *p99 = sample[(size_t)(0.99 * (double)(k - 1) + 0.5)];
}

static void progress(bool force) {
    uint64_t t = now_ns();
    if (!force && t - last_report_ns < 1000000000u)
        return;
    double dt = (double)(t - last_report_ns) / 1e9;
    double p50, p99;
    interval_latency(&p50, &p99);
    if (!O.quiet && O.jobs == 1 && dt > 0)
        fprintf(stderr,
                "%6.1fs sent %" PRIu64 " (%.0f/s) received %" PRIu64 " (%.0f/s)"
                " latency p50 %.3f ms p99 %.3f ms connected %" PRIu64 "\n",
                secs_since(t_start_ns), n_sent, (double)(n_sent - report_sent) / dt, n_received,
                (double)(n_received - report_recv) / dt, p50 / 1000, p99 / 1000, n_connected);
    report_sent = n_sent;
    report_recv = n_received;
    last_report_ns = t;
}

/* Publish from every publisher until all is sent and received (or idle). */
static double cpu_seconds(void);

static void load_begin(void) {
    traffic_t0_ns = now_ns();
    traffic_cpu0 = cpu_seconds();
}

static void load_end(void) {
    double wall = secs_since(traffic_t0_ns);
    if (wall > 0)
        gen_load = (cpu_seconds() - traffic_cpu0) / wall;
}

static void traffic(int pub_from, int pub_to) {
    load_begin();
    first_send_ns = now_ns();
    last_progress_ns = first_send_ns;
    uint64_t last_tick = first_send_ns, seen = 0;
    while (!stop_flag && secs_since(t_start_ns) < O.duration) {
        uint64_t t = now_ns();
        bool all_sent = true, can_send = false;
        for (int i = pub_from; i < pub_to; i++) {
            pump_pub(&clients[i], t);
            if (!pub_finished(&clients[i]))
                all_sent = false;
            if (clients[i].connected && clients[i].sent < O.count && O.rate == 0 &&
                (O.qos == 0 ? hc_out_pending(clients[i].hc) < QOS0_OUT_CAP
                            : hc_pending(clients[i].hc) < (size_t)O.inflight))
                can_send = true;
        }
        if (n_received != seen) {
            seen = n_received;
            last_progress_ns = t;
        }
        if (all_sent && (n_expected ? n_unique >= n_expected : true))
            break;
        if (all_sent && (double)(t - last_progress_ns) / 1e9 > O.idle)
            break; /* the rest is not coming: losses */
        if (pub_to == pub_from && O.mode == M_SUB && n_expected && n_unique >= n_expected)
            break;
        if (O.rate > 0 && !can_send) {
            /* Wake when the next paced publish is due, not at the next
             * millisecond: the schedules of -r are staggered finer. */
            uint64_t d = next_due_ns(pub_from, pub_to, now_ns());
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)d};
            poll_wait(&ts);
        } else {
            poll_once(can_send ? 0 : 100);
        }
        if (t - last_tick > 500000000u) {
            tick_all();
            last_tick = t;
        }
        progress(false);
    }
    load_end();
}

/* ---- results ------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (!nlat)
        return 0;
    size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
    return lat[i];
}

static double ru_seconds(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* This process's CPU; the parent of -j adds its (reaped) children's. */
static double cpu_seconds(void) {
    return ru_seconds(RUSAGE_SELF) + (merged ? ru_seconds(RUSAGE_CHILDREN) : 0);
}

/* ---- -j: several generator processes ------------------------------------ */

struct job_result {
    uint64_t sent, expected, received, unique, dup, reorder, errors, connected, held;
    uint64_t first_send, last_recv, nlat;
    double connect_s, load;
};

static bool write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w, n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r, n -= (size_t)r;
    }
    return true;
}

/* Child: report `count` (subscribed or connected clients) and wait for the
 * parent's go, so no process publishes before every subscriber is in. */
static void job_barrier(uint64_t count) {
    if (ready_fd < 0)
        return;
    uint8_t go;
    if (!write_all(ready_fd, &count, sizeof(count)) || !read_all(go_fd, &go, 1))
        die(1, "job %d: lost the parent", job);
}

static void job_send_result(double connect_s, uint64_t held) {
    struct job_result r = {n_sent,       n_expected,     n_received,  n_unique, n_dup,
                           n_reorder,    n_errors,       n_connected, held,     first_send_ns,
                           last_recv_ns, (uint64_t)nlat, connect_s,   gen_load};
    if (!write_all(result_fd, &r, sizeof(r)) ||
        (nlat && !write_all(result_fd, lat, nlat * sizeof(*lat))))
        die(1, "job %d: cannot send its results", job);
    close(result_fd);
}

static int summarise(double connect_s);

/* --go-stdin: say that every subscriber is in ("# subscribed N" on
 * stderr), then wait for a line on stdin before any publisher connects, so
 * a caller can first see the subscriptions arrive somewhere else (a
 * cluster's interest, a bridge). Bounded by -d; EOF is a go too. */
static void await_go(uint64_t subscribed) {
    if (!O.go_stdin)
        return;
    fprintf(stderr, "# subscribed %" PRIu64 "\n", subscribed);
    fflush(stderr);
    double left = O.duration - secs_since(t_start_ns);
    struct pollfd pf = {.fd = 0, .events = POLLIN};
    int r = poll(&pf, 1, left > 0 ? (int)(left * 1000) : 0);
    if (r <= 0)
        die(1, "--go-stdin: no go within -d %g s", O.duration);
    char line[64];
    if (read(0, line, sizeof(line)) < 0)
        die(1, "--go-stdin: %s", strerror(errno));
}

/* Parent of -j N: fork the children (each returns from here into main with
 * its `job`), hold them at the barrier, merge their results, summarise. */
static void run_jobs(void) {
    int ready[2], go[2], *res = calloc((size_t)O.jobs, sizeof(int));
    pid_t *pids = calloc((size_t)O.jobs, sizeof(pid_t));
    if (!res || !pids || pipe(ready) < 0 || pipe(go) < 0)
        die(1, "-j: %s", strerror(errno));
    for (int k = 0; k < O.jobs; k++) {
        int rp[2];
        if (pipe(rp) < 0)
            die(1, "-j: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die(1, "-j: fork: %s", strerror(errno));
        if (pid == 0) {
            for (int j = 0; j < k; j++)
                close(res[j]);
            close(rp[0]), close(ready[0]), close(go[1]);
            job = k, ready_fd = ready[1], go_fd = go[0], result_fd = rp[1];
            free(res), free(pids);
            return;
        }
        close(rp[1]);
        res[k] = rp[0];
        pids[k] = pid;
    }
    close(ready[1]), close(go[0]);
    uint64_t total = 0;
    int up = 0;
    for (; up < O.jobs; up++) { /* EOF if every child died: no hang */
        uint64_t n;
        if (!read_all(ready[0], &n, sizeof(n)))
            break;
        total += n;
    }
    if (O.mode == M_CONN)
        fprintf(stderr, "# connected %" PRIu64 "\n", total);
    else if (O.mode == M_RUN)
        await_go(total);
    for (int k = 0; k < up; k++)
        write_all(go[1], "g", 1);
    close(go[1]);
    double connect_s = 0;
    uint64_t first = 0;
    for (int k = 0; k < O.jobs; k++) {
        struct job_result r;
        if (!read_all(res[k], &r, sizeof(r))) {
            n_errors++;
            fprintf(stderr, "hato-bench: job %d ended without results\n", k);
            continue;
        }
        n_sent += r.sent, n_expected += r.expected, n_received += r.received;
        n_unique += r.unique, n_dup += r.dup, n_reorder += r.reorder, n_errors += r.errors;
        n_connected += r.connected, held_merged += r.held;
        if (r.first_send && (!first || r.first_send < first))
            first = r.first_send;
        if (r.last_recv > last_recv_ns)
            last_recv_ns = r.last_recv;
        if (r.connect_s > connect_s)
            connect_s = r.connect_s;
        if (r.load > gen_load)
            gen_load = r.load;
        if (r.nlat) {
            uint32_t *p = realloc(lat, (nlat + r.nlat) * sizeof(*lat));
            if (!p)
                die(1, "out of memory");
            lat = p;
            if (!read_all(res[k], lat + nlat, r.nlat * sizeof(*lat)))
                die(1, "job %d: short latency record", k);
            nlat += r.nlat;
        }
        close(res[k]);
    }
    for (int k = 0; k < O.jobs; k++) {
        int st;
        while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR)
            ;
    }
    first_send_ns = first;
    merged = true;
    int rc = summarise(connect_s);
    exit(rc);
}

static const char *mode_name(void) {
    static const char *names[] = {"conn", "pub", "sub", "run", "retained"};
    return names[O.mode];
}

static int summarise(double connect_s) {
    if (result_fd >= 0) { /* a child of -j: the parent summarises */
        uint64_t held = 0;
        for (int i = 0; i < nclients; i++)
            held += clients[i].connected;
        job_send_result(connect_s, held);
        return 0;
    }
    if (nlat)
        qsort(lat, nlat, sizeof(*lat), cmp_u32);
    double elapsed = last_recv_ns > first_send_ns
                         ? (double)(last_recv_ns - first_send_ns) / 1e9
                         : secs_since(first_send_ns ? first_send_ns : t_start_ns);
    uint64_t lost = n_expected > n_unique ? n_expected - n_unique : 0;
    double send_elapsed = secs_since(first_send_ns ? first_send_ns : t_start_ns);
    uint64_t held = 0;
    for (int i = 0; i < nclients; i++)
        held += clients[i].connected;
    if (merged)
        held = held_merged;
    uint64_t nconns =
        merged ? (uint64_t)(O.mode == M_CONN ? O.conns : O.pubs + O.subs) : (uint64_t)nclients;
    if (O.json) {
        printf("{\"mode\": \"%s\", \"sent\": %" PRIu64 ", \"expected\": %" PRIu64
               ", \"received\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"duplicates\": %" PRIu64
               ", \"reordered\": %" PRIu64 ", \"elapsed_s\": %.6f, \"send_rate\": %.1f"
               ", \"recv_rate\": %.1f, \"latency_us\": {\"p50\": %.0f, \"p99\": %.0f"
               ", \"p999\": %.0f, \"max\": %.0f}, \"connected\": %" PRIu64
               ", \"connect_rate\": %.1f, \"errors\": %" PRIu64 ", \"cpu_s\": %.3f"
               ", \"jobs\": %d, \"gen_load\": %.3f}\n",
               mode_name(), n_sent, n_expected, n_received, lost, n_dup, n_reorder, elapsed,
               send_elapsed > 0 ? (double)n_sent / send_elapsed : 0,
               elapsed > 0 ? (double)n_received / elapsed : 0, pct(0.5), pct(0.99), pct(0.999),
               nlat ? (double)lat[nlat - 1] : 0, O.mode == M_CONN ? held : n_connected,
               connect_s > 0 ? (double)(O.mode == M_CONN ? held : nconns) / connect_s : 0, n_errors,
               cpu_seconds(), O.jobs, gen_load);
    } else {
        printf("%s: sent %" PRIu64 ", received %" PRIu64 " of %" PRIu64 " expected in %.3f s"
               " (%.0f msg/s); lost %" PRIu64 ", duplicates %" PRIu64 ", reordered %" PRIu64 "\n",
               mode_name(), n_sent, n_received, n_expected, elapsed,
               elapsed > 0 ? (double)n_received / elapsed : 0, lost, n_dup, n_reorder);
        if (nlat)
            printf("latency: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
                   pct(0.5) / 1000, pct(0.99) / 1000, pct(0.999) / 1000,
                   (double)lat[nlat - 1] / 1000);
        printf("connections: %" PRIu64 " held, %.0f/s; errors %" PRIu64 "; hato-bench CPU %.3f s"
               " (%d process%s, busiest %.0f%% of a core)\n",
               held, connect_s > 0 ? (double)nconns / connect_s : 0, n_errors, cpu_seconds(),
               O.jobs, O.jobs == 1 ? "" : "es", gen_load * 100);
    }
    fflush(stdout);
    if (n_errors)
        return 1;
    return lost || n_dup || n_reorder ? 3 : 0;
}

static void disconnect_all(void) {
    for (int i = 0; i < nclients; i++)
        if (clients[i].connected)
            hc_disconnect(clients[i].hc, 0, NULL);
    uint64_t t0 = now_ns();
    while (n_connected && secs_since(t0) < 5) {
        for (int i = 0; i < nclients; i++)
            watch(&clients[i]);
        if (poll_once(50) <= 0)
            break;
    }
    for (int i = 0; i < nclients; i++)
        hc_free(clients[i].hc);
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f, "Usage: hato-bench conn|pub|sub|run|retained [options]\n"
               "  -h HOST        broker host [127.0.0.1]\n"
               "  -p PORT        broker port [1883]\n"
               "  --sub-host HOST, --sub-port PORT\n"
               "                 subscribers' broker, e.g. across a bridge [-h, -p]\n"
               "  -V 3|4|5       MQTT version (3.1, 3.1.1, 5.0) [4]\n"
               "  -c N           connections (conn), publishers (pub) or subscribers (sub)\n"
               "  --pubs N       publishers (run) [1]\n"
               "  --subs N       subscribers (run) [1]\n"
               "  -t TOPIC       publish topic, %%i = publisher index [bench/%%i]\n"
               "  -T FILTER      subscription filter, %%i = subscriber index [bench/#]\n"
               "  -q QOS         0, 1 or 2 [0]\n"
               "  -s BYTES       payload size (at least 24: the stamp) [64]\n"
               "  -n COUNT       messages per publisher; topics in retained mode [10000]\n"
               "  -r RATE        messages per second per publisher, 0 = unlimited [0]\n"
               "  -W N           QoS 1/2 messages in flight per publisher [64]\n"
               "  -R RATE        new connections per second, 0 = unlimited [0]\n"
               "  -d SECONDS     stop after this long whatever happens [60]\n"
               "  --hold SECONDS conn: keep the connections this long once all are up [0]\n"
               "  --idle SECONDS give up waiting for the rest after this long [3]\n"
               "  --source-ips N bind connections to 127.0.0.1 .. 127.0.0.N in turn\n"
               "  -k SECONDS     keep-alive [120]\n"
               "  -i PREFIX      client id prefix [hb]\n"
               "  --ws PATH      MQTT over WebSocket, upgrading at PATH (e.g. /mqtt)\n"
               "  -j N, --jobs N generator processes, client i in process i mod N [1]\n"
               "  --persistent   subscribers keep their sessions (clean session 0; MQTT 5:\n"
               "                 clean start 0, session expiry 3600 s)\n"
               "  --go-stdin     after every SUBACK print '# subscribed N' on stderr and\n"
               "                 connect the publishers after a line on stdin\n"
               "  --json         final summary as one JSON object on stdout\n"
               "  --quiet        no per-second progress on stderr\n");
}

static double num(const char *opt, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < lo || d > hi)
        die(2, "option %s expects a number from %g to %g, not '%s'", opt, lo, hi, v);
    return d;
}

static void parse(int argc, char **argv) {
    if (argc < 2)
        usage(stderr), exit(2);
    const char *m = argv[1];
    if (!strcmp(m, "conn"))
        O.mode = M_CONN;
    else if (!strcmp(m, "pub"))
        O.mode = M_PUB;
    else if (!strcmp(m, "sub"))
        O.mode = M_SUB;
    else if (!strcmp(m, "run"))
        O.mode = M_RUN;
    else if (!strcmp(m, "retained"))
        O.mode = M_RETAINED;
    else if (!strcmp(m, "--help"))
        usage(stdout), exit(0);
    else
        die(2, "unknown mode '%s' (conn, pub, sub, run or retained)", m);
    enum {
        O_PUBS = 256,
        O_SUBS,
        O_HOLD,
        O_IDLE,
        O_SRC,
        O_JSON,
        O_QUIET,
        O_HELP,
        O_WS,
        O_JOBS,
        O_SUBHOST,
        O_SUBPORT,
        O_PERSIST,
        O_GO
    };
    static const struct option lo[] = {
        {"pubs", required_argument, 0, O_PUBS},
        {"subs", required_argument, 0, O_SUBS},
        {"hold", required_argument, 0, O_HOLD},
        {"idle", required_argument, 0, O_IDLE},
        {"source-ips", required_argument, 0, O_SRC},
        {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},
        {"ws", required_argument, 0, O_WS},
        {"jobs", required_argument, 0, O_JOBS},
        {"sub-host", required_argument, 0, O_SUBHOST},
        {"sub-port", required_argument, 0, O_SUBPORT},
        {"persistent", no_argument, 0, O_PERSIST},
        {"go-stdin", no_argument, 0, O_GO},
        {0, 0, 0, 0},
    };
    int c;
    bool count_given = false;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h:p:V:c:t:T:q:s:n:r:W:R:d:k:i:j:", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            O.host = optarg;
            break;
        case 'p':
            O.port = (uint16_t)num("-p", optarg, 1, 65535);
            break;
        case 'V': {
            int v = (int)num("-V", optarg, 3, 5);
            O.version = v == 3 ? MQTT_V31 : v == 4 ? MQTT_V311 : MQTT_V5;
            break;
        }
        case 'c':
            O.conns = O.pubs = O.subs = (int)num("-c", optarg, 1, 1000000);
            break;
        case 't':
            O.topic = optarg;
            break;
        case 'T':
            O.filter = optarg;
            break;
        case 'q':
            O.qos = (uint8_t)num("-q", optarg, 0, 2);
            break;
        case 's':
            O.size = (size_t)num("-s", optarg, STAMP_SIZE, 256 * 1024 * 1024);
            break;
        case 'n':
            O.count = (uint64_t)num("-n", optarg, 1, 1e12);
            count_given = true;
            break;
        case 'r':
            O.rate = num("-r", optarg, 0, 1e9);
            break;
        case 'W':
            O.inflight = (int)num("-W", optarg, 1, 65535);
            break;
        case 'R':
            O.conn_rate = num("-R", optarg, 0, 1e9);
            break;
        case 'd':
            O.duration = num("-d", optarg, 0.1, 86400);
            break;
        case 'k':
            O.keepalive = (uint16_t)num("-k", optarg, 0, 65535);
            break;
        case 'i':
            O.id_prefix = optarg;
            break;
        case O_PUBS:
            O.pubs = (int)num("--pubs", optarg, 0, 1000000);
            break;
        case O_SUBS:
            O.subs = (int)num("--subs", optarg, 0, 1000000);
            break;
        case O_HOLD:
            O.hold = num("--hold", optarg, 0, 86400);
            break;
        case O_IDLE:
            O.idle = num("--idle", optarg, 0, 3600);
            break;
        case O_SRC:
            O.source_ips = (int)num("--source-ips", optarg, 1, 254);
            break;
        case O_JSON:
            O.json = true;
            break;
        case O_QUIET:
            O.quiet = true;
            break;
        case O_WS:
            if (optarg[0] != '/')
                die(2, "--ws expects an HTTP path starting with /, not '%s'", optarg);
            O.ws_path = optarg;
            break;
        case 'j':
        case O_JOBS:
            O.jobs = (int)num(c == 'j' ? "-j" : "--jobs", optarg, 1, 256);
            break;
        case O_SUBHOST:
            O.sub_host = optarg;
            break;
        case O_SUBPORT:
            O.sub_port = (uint16_t)num("--sub-port", optarg, 1, 65535);
            break;
        case O_PERSIST:
            O.persistent = true;
            break;
        case O_GO:
            O.go_stdin = true;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die(2, "unexpected argument '%s'", argv[optind]);
    if (O.mode == M_RETAINED && !count_given)
        O.count = 10000;
    if (O.mode == M_RETAINED)
        O.jobs = 1; /* one publisher, one subscriber: nothing to share out */
    if (O.mode == M_RETAINED && !strcmp(O.topic, "bench/%i"))
        O.topic = "bench/r/%i";
}

/* Messages each subscriber should get: publishers whose topic its filter matches. */
static void compute_expected(int npub, int sub_from, int sub_to) {
    char t[256];
    for (int s = sub_from; s < sub_to; s++) {
        struct bclient *sb = &clients[s];
        sb->seq = calloc((size_t)O.pubs, sizeof(*sb->seq));
        if (!sb->seq)
            die(1, "out of memory");
        for (int p = 0; p < npub; p++) { /* every publisher, in whichever process */
            expand(t, sizeof(t), O.topic, p);
            if (mqtt_topic_match((const uint8_t *)sb->topic, strlen(sb->topic), (const uint8_t *)t,
                                 strlen(t)))
                n_expected += O.count;
        }
    }
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    t_start_ns = now_ns();
    if (O.jobs > 1)
        run_jobs(); /* the parent does not return; each child does, with its `job` */
    epfd = epoll_create1(EPOLL_CLOEXEC);
    payload_buf = calloc(1, O.size);
    if (epfd < 0 || !payload_buf)
        die(1, "start-up failed: %s", strerror(errno));

    int npub = 0, nsub = 0;
    switch (O.mode) {
    case M_CONN:
        break;
    case M_PUB:
        npub = O.pubs;
        break;
    case M_SUB:
        nsub = O.subs;
        break;
    case M_RUN:
        npub = O.pubs, nsub = O.subs;
        break;
    case M_RETAINED:
        npub = 1, nsub = 1, O.pubs = 1;
        break;
    }
    int total = O.mode == M_CONN ? O.conns : npub + nsub;
    clients = calloc((size_t)total, sizeof(*clients));
    if (!clients)
        die(1, "out of memory");

    double connect_s = 0;
    if (O.mode == M_CONN) {
        for (int i = 0; i < O.conns; i++)
            if (mine(i))
                add_client(R_CONN, i);
        load_begin();
        connect_range(0, nclients, O.duration);
        load_end();
        connect_s = secs_since(t_start_ns);
        uint64_t up = 0;
        for (int i = 0; i < nclients; i++)
            up += clients[i].connected;
        if (ready_fd < 0)
            fprintf(stderr, "# connected %" PRIu64 "\n", up);
        job_barrier(up);
        all_connected_ns = now_ns();
        while (!stop_flag && secs_since(all_connected_ns) < O.hold &&
               secs_since(t_start_ns) < O.duration) {
            poll_once(200);
            tick_all();
        }
        int rc = summarise(connect_s);
        disconnect_all();
        return rc;
    }

    if (O.mode == M_RETAINED) {
        /* Store the retained topics with one publisher (in order on one
         * connection), the last at QoS 1 so its PUBACK says all are in. */
        struct bclient *p = add_client(R_PUB, 0);
        connect_range(0, 1, O.duration);
        if (!p->connected)
            return summarise(0);
        uint64_t tstore = now_ns();
        char topic[256];
        for (uint64_t i = 0; i < O.count && !stop_flag; i++) {
            expand(topic, sizeof(topic), O.topic, (int)i);
            uint8_t q = i + 1 == O.count ? 1 : 0;
            uint16_t mid = 0;
            if (hc_publish(p->hc, topic, payload_buf, O.size, q, true, NULL, &mid) != HC_OK)
                n_errors++;
            if (q)
                retained_last_mid = mid;
            n_sent++;
            while (hc_out_pending(p->hc) > QOS0_OUT_CAP && secs_since(t_start_ns) < O.duration) {
                hc_on_writable(p->hc, hc_now_ms());
                watch(p);
                if (hc_out_pending(p->hc) > QOS0_OUT_CAP)
                    poll_once(10);
            }
        }
        while (!p->done && !stop_flag && secs_since(t_start_ns) < O.duration) {
            watch(p);
            poll_once(100);
        }
        if (!O.quiet)
            fprintf(stderr, "stored %" PRIu64 " retained topics in %.3f s\n", O.count,
                    secs_since(tstore));
        /* Now time a subscriber to the whole tree receiving them. */
        char filter[256];
        snprintf(filter, sizeof(filter), "%s", O.topic);
        char *slash = strrchr(filter, '/');
        if (slash)
            strcpy(slash, "/#");
        else
            strcpy(filter, "#");
        struct bclient *s = add_client(R_SUB, 0);
        snprintf(s->topic, sizeof(s->topic), "%s", filter);
        connect_range(1, 2, O.duration);
        first_send_ns = now_ns();
        n_expected = O.count;
        uint64_t last = now_ns(), seen = 0;
        while (!stop_flag && n_received < O.count && secs_since(t_start_ns) < O.duration) {
            poll_once(100);
            if (n_received != seen)
                seen = n_received, last = now_ns();
            else if (secs_since(last) > O.idle)
                break;
        }
        int rc = summarise(0);
        disconnect_all();
        return rc;
    }

    /* pub, sub, run: subscribers first (all subscribed), then publishers. */
    for (int i = 0; i < nsub; i++)
        if (mine(i))
            add_client(R_SUB, i);
    int nsub_all = nsub;
    nsub = nclients; /* from here on: this process's subscribers */
    for (int i = 0; i < npub; i++)
        if (mine(i))
            add_client(R_PUB, i);
    npub = nclients - nsub;
    if (nsub) {
        connect_range(0, nsub, O.duration);
        while (!stop_flag && secs_since(t_start_ns) < O.duration) {
            int subscribed = 0, failed = 0;
            for (int i = 0; i < nsub; i++)
                subscribed += clients[i].subscribed, failed += clients[i].failed;
            if (subscribed + failed == nsub)
                break;
            poll_once(100);
        }
    }
    uint64_t subscribed = 0;
    for (int i = 0; i < nsub; i++)
        subscribed += clients[i].subscribed;
    if (ready_fd < 0 && O.mode == M_RUN)
        await_go(subscribed);
    job_barrier(subscribed);
    if (O.mode == M_RUN)
        compute_expected(O.pubs, 0, nsub);
    if (O.mode == M_SUB) {
        /* Without publishers here, -n is the total to wait for (shared out
         * over the processes of -j by their subscribers). */
        n_expected = 0;
        for (int i = 0; i < nsub; i++) {
            uint64_t k = (uint64_t)clients[i].index, all = (uint64_t)nsub_all;
            n_expected += O.count * (k + 1) / all - O.count * k / all;
        }
        for (int i = 0; i < nsub; i++) {
            clients[i].seq = NULL;
        }
    }
    double t_conn0 = secs_since(t_start_ns);
    if (npub)
        connect_range(nsub, nsub + npub, O.duration);
    connect_s = secs_since(t_start_ns) - t_conn0;
    if (O.mode == M_SUB) {
        load_begin();
        first_send_ns = now_ns();
        uint64_t last = now_ns(), seen = 0;
        while (!stop_flag && n_received < n_expected && secs_since(t_start_ns) < O.duration) {
            poll_once(100);
            progress(false);
            if (n_received != seen)
                seen = n_received, last = now_ns();
            else if (n_received && secs_since(last) > O.idle)
                break;
        }
        load_end();
    } else {
        traffic(nsub, nsub + npub);
    }
    progress(true);
    if (O.mode == M_PUB)
        n_expected = 0;
    int rc = summarise(connect_s);
    disconnect_all();
    return rc;
}
