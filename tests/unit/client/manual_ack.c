/*
 * The client library in manual-acknowledge mode (hc_config.manual_ack),
 * driven line by line from stdin by tests/integration/test_client_manual_ack.py
 * against a real broker:
 *
 *   manual_ack HOST PORT VERSION CLIENT_ID RECEIVE_MAXIMUM
 *
 * Connects with a persistent session (clean = false) and then reads
 * commands, one a line:
 *   sub FILTER QOS   subscribe
 *   ack ID           hc_ack(ID); prints "ack ID RC"
 *   drop             close the socket under the library (no DISCONNECT)
 *   connect          hc_connect again after a drop
 *   quit             DISCONNECT and exit
 * and prints events, one a line, flushed:
 *   connected SESSION_PRESENT / disconnected ERR / suback CODE
 *   msg ID QOS DUP RETAIN TOPIC PAYLOAD     (on_message)
 *   in TYPE ID DUP                          (every packet received, on_packet)
 * Exits 1 on a library error it did not ask for, or after 60 s.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hato/client.h"

static bool dropping, done;

static void on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)c, (void)ud, (void)props;
    printf("connected %d %u\n", sp ? 1 : 0, reason);
}

static void on_disconnect(struct hc_client *c, void *ud, int err) {
    (void)c, (void)ud;
    printf("disconnected %d\n", err);
    if (!dropping)
        done = true;
}

static void on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props) {
    (void)c, (void)ud, (void)mid, (void)props;
    printf("suback %u\n", count ? codes[0] : 255);
}

static void on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c, (void)ud;
    printf("msg %u %u %d %d %s %.*s\n", m->mid, m->qos, m->dup, m->retain, m->topic,
           (int)m->payload_len, (const char *)m->payload);
}

static void on_packet(struct hc_client *c, void *ud, bool sent, const struct mqtt_packet *p) {
    (void)c, (void)ud;
    if (sent)
        return;
    printf("in %s %u %d\n", mqtt_type_name(p->type), p->packet_id,
           p->type == MQTT_PUBLISH && p->publish.dup);
}

static void command(struct hc_client *c, char *line) {
    char a[256];
    unsigned n;
    if (sscanf(line, "sub %255s %u", a, &n) == 2) {
        hc_subscribe1(c, a, (uint8_t)n, NULL);
    } else if (sscanf(line, "ack %u", &n) == 1) {
        printf("ack %u %d\n", n, hc_ack(c, (uint16_t)n));
    } else if (!strncmp(line, "drop", 4)) {
        dropping = true;
        shutdown(hc_fd(c), SHUT_RDWR); /* the library sees the close on its next read */
    } else if (!strncmp(line, "connect", 7)) {
        dropping = false;
        int rc = hc_connect(c, hc_now_ms());
        if (rc != HC_OK)
            printf("connect failed %d\n", rc);
    } else if (!strncmp(line, "quit", 4)) {
        hc_disconnect(c, 0, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: manual_ack HOST PORT VERSION CLIENT_ID RECEIVE_MAXIMUM\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct hc_config cfg = {
        .host = argv[1],
        .port = (uint16_t)atoi(argv[2]),
        .version = (uint8_t)atoi(argv[3]),
        .client_id = argv[4],
        .clean = false,
        .keepalive = 60,
        .manual_ack = true,
        .receive_maximum = (uint16_t)atoi(argv[5]),
    };
    struct hc_callbacks cb = {.on_connect = on_connect,
                              .on_disconnect = on_disconnect,
                              .on_subscribe = on_subscribe,
                              .on_message = on_message,
                              .on_packet = on_packet};
    int err = 0;
    struct hc_client *c = hc_new(&cfg, &cb, NULL, &err);
    if (!c) {
        fprintf(stderr, "hc_new: %s\n", hc_config_error());
        return 1;
    }
    if (hc_connect(c, hc_now_ms()) != HC_OK) {
        fprintf(stderr, "connect: %s\n", hc_error_text(c));
        hc_free(c);
        return 1;
    }
    char line[512];
    size_t used = 0;
    uint64_t deadline = hc_now_ms() + 60000;
    int status = 0;
    while (!done && hc_now_ms() < deadline) {
        struct pollfd pf[2] = {{.fd = 0, .events = POLLIN}, {.fd = hc_fd(c), .events = POLLIN}};
        if (hc_want_write(c))
            pf[1].events |= POLLOUT;
        int t = hc_tick(c, hc_now_ms());
        if (poll(pf, pf[1].fd >= 0 ? 2 : 1, t < 0 || t > 200 ? 200 : t) < 0)
            break;
        if (pf[0].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(0, line + used, sizeof line - 1 - used);
            if (r <= 0)
                break;
            used += (size_t)r;
            char *nl;
            while ((nl = memchr(line, '\n', used))) {
                *nl = 0;
                command(c, line);
                size_t rest = used - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest);
                used = rest;
            }
            if (used == sizeof line - 1)
                used = 0;
        }
        if (pf[1].fd >= 0) {
            int rc = hc_handle_events(c, pf[1].revents, hc_now_ms());
            if (rc != HC_OK && !dropping) {
                fprintf(stderr, "error: %s\n", hc_error_text(c));
                status = 1;
                break;
            }
        }
    }
    hc_free(c);
    return status;
}
