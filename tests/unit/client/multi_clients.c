/*
 * Many clients driven from one thread through the caller-driven API (the
 * way hato-bench uses the library), against a real broker:
 *
 *   multi_clients HOST PORT CLIENTS MESSAGES QOS
 *
 * Each client i subscribes to multi/<i>, then publishes MESSAGES messages to
 * multi/<i+1 mod CLIENTS>. Exits 0 once every client has received all of
 * them in order, 1 on any error or after 30 s. Prints one summary line.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hato/client.h"

struct peer {
    struct hc_client *c;
    int index;
    bool subscribed;
    long sent, received, completed;
    int failed;
};

static int nclients;
static long nmessages;
static uint8_t qos;

static void on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props) {
    (void)c, (void)mid, (void)props;
    struct peer *p = ud;
    p->subscribed = count == 1 && codes[0] < 0x80;
    if (!p->subscribed)
        p->failed = 1;
}

static void on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c;
    struct peer *p = ud;
    char want[32];
    int n = snprintf(want, sizeof want, "%ld", p->received);
    if ((size_t)n != m->payload_len || memcmp(want, m->payload, (size_t)n) != 0) {
        fprintf(stderr, "client %d: message %ld out of order: %.*s\n", p->index, p->received,
                (int)m->payload_len, (const char *)m->payload);
        p->failed = 1;
    }
    p->received++;
}

static void on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    (void)c, (void)mid;
    struct peer *p = ud;
    p->completed++;
    if (reason >= 0x80)
        p->failed = 1;
}

static void on_disconnect(struct hc_client *c, void *ud, int err) {
    struct peer *p = ud;
    if (err != HC_OK) {
        fprintf(stderr, "client %d: %s\n", p->index, hc_error_text(c));
        p->failed = 1;
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: multi_clients HOST PORT CLIENTS MESSAGES QOS\n");
        return 1;
    }
    nclients = atoi(argv[3]);
    nmessages = atol(argv[4]);
    qos = (uint8_t)atoi(argv[5]);
    struct peer *peers = calloc((size_t)nclients, sizeof *peers);
    struct pollfd *pfd = calloc((size_t)nclients, sizeof *pfd);
    if (!peers || !pfd)
        return 1;
    struct hc_callbacks cb = {.on_subscribe = on_subscribe,
                              .on_message = on_message,
                              .on_publish = on_publish,
                              .on_disconnect = on_disconnect};
    uint64_t start = hc_now_ms();
    for (int i = 0; i < nclients; i++) {
        char id[32], topic[32];
        snprintf(id, sizeof id, "multi-%d", i);
        struct hc_config cfg = {.host = argv[1],
                                .port = (uint16_t)atoi(argv[2]),
                                .version = i % 2 ? MQTT_V5 : MQTT_V311,
                                .client_id = id,
                                .clean = true,
                                .keepalive = 30,
                                .max_inflight = 10};
        int err;
        peers[i].index = i;
        peers[i].c = hc_new(&cfg, &cb, &peers[i], &err);
        if (!peers[i].c || hc_connect(peers[i].c, start) != HC_OK) {
            fprintf(stderr, "client %d: cannot connect\n", i);
            return 1;
        }
        snprintf(topic, sizeof topic, "multi/%d", i);
        hc_subscribe1(peers[i].c, topic, qos, NULL); /* queued until CONNACK */
    }
    long total = (long)nclients * nmessages, got = 0;
    uint64_t now = start;
    while (got < total && now - start < 30000) {
        got = 0;
        bool all_subscribed = true;
        for (int i = 0; i < nclients; i++) {
            if (peers[i].failed)
                return 1;
            all_subscribed &= peers[i].subscribed;
            got += peers[i].received;
        }
        /* Publish once everyone is subscribed, keeping at most 50 queued. */
        for (int i = 0; all_subscribed && i < nclients; i++) {
            struct peer *p = &peers[i];
            char topic[32], payload[32];
            snprintf(topic, sizeof topic, "multi/%d", (i + 1) % nclients);
            while (p->sent < nmessages && hc_pending(p->c) < 50) {
                int n = snprintf(payload, sizeof payload, "%ld", p->sent);
                if (hc_publish(p->c, topic, payload, (size_t)n, qos, false, NULL, NULL) != HC_OK)
                    return 1;
                p->sent++;
            }
        }
        int timeout = 100;
        for (int i = 0; i < nclients; i++) {
            int t = hc_tick(peers[i].c, now);
            if (t >= 0 && t < timeout)
                timeout = t;
            pfd[i].fd = hc_fd(peers[i].c);
            pfd[i].events = (short)(POLLIN | (hc_want_write(peers[i].c) ? POLLOUT : 0));
        }
        if (poll(pfd, (nfds_t)nclients, timeout) < 0)
            return 1;
        now = hc_now_ms();
        for (int i = 0; i < nclients; i++)
            if (pfd[i].revents)
                hc_handle_events(peers[i].c, pfd[i].revents, now);
    }
    for (int i = 0; i < nclients; i++) {
        hc_disconnect(peers[i].c, 0, NULL);
        for (int k = 0; k < 100 && hc_state(peers[i].c) != HC_ST_IDLE; k++)
            hc_loop(peers[i].c, 10);
        hc_free(peers[i].c);
    }
    printf("clients=%d messages=%ld received=%ld qos=%u ms=%llu\n", nclients, total, got, qos,
           (unsigned long long)(hc_now_ms() - start));
    free(peers);
    free(pfd);
    return got == total ? 0 : 1;
}
