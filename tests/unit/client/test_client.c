/*
 * Unit tests of the client library (src/client) on a real loopback socket.
 * The test plays the broker in the same thread: the library is non-blocking,
 * so the test alternates between driving the client (hc_loop with short
 * waits) and reading/writing the accepted socket. Time for keep-alive is
 * passed in (hc_tick), so nothing sleeps.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "hato/client.h"

struct srv {
    int lfd, fd;
    uint16_t port;
    uint8_t buf[65536];
    size_t len;
    struct mqtt_packet p; /* last packet read */
    uint8_t pkt[65536];
};

struct seen {
    int connects, disconnects, last_err;
    int published;
    uint16_t mids[16];
    uint8_t reasons[16];
    int messages;
    char last_payload[64];
};

static void on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)c, (void)reason, (void)sp, (void)props;
    ((struct seen *)ud)->connects++;
}
static void on_disconnect(struct hc_client *c, void *ud, int err) {
    (void)c;
    struct seen *s = ud;
    s->disconnects++;
    s->last_err = err;
}
static void on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    (void)c;
    struct seen *s = ud;
    if (s->published < 16) {
        s->mids[s->published] = mid;
        s->reasons[s->published] = reason;
    }
    s->published++;
}
static void on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c;
    struct seen *s = ud;
    s->messages++;
    snprintf(s->last_payload, sizeof s->last_payload, "%.*s", (int)m->payload_len,
             (const char *)m->payload);
}

static const struct hc_callbacks cbs = {.on_connect = on_connect,
                                        .on_disconnect = on_disconnect,
                                        .on_publish = on_publish,
                                        .on_message = on_message};

static void srv_listen(struct srv *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t sl = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &sl);
    s->port = ntohs(a.sin_port);
}

/* Drive the client until the server has a connection to accept. */
static void srv_accept(struct srv *s, struct hc_client *c) {
    for (int i = 0; i < 100; i++) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            break;
        hc_loop(c, 20);
    }
    s->fd = accept(s->lfd, NULL, NULL);
    assert_true(s->fd >= 0);
    s->len = 0;
}

/* Read the next client packet (driving the client meanwhile); decoded into s->p. */
static uint8_t srv_read(struct srv *s, struct hc_client *c) {
    for (int i = 0; i < 200; i++) {
        struct mqtt_frame f;
        if (s->len >= 2 && mqtt_frame_parse(s->buf, s->len, 0, &f, NULL) == MQTT_OK &&
            s->len >= f.total) {
            memcpy(s->pkt, s->buf, f.total);
            memmove(s->buf, s->buf + f.total, s->len - f.total);
            s->len -= f.total;
            uint8_t ver = f.type == MQTT_CONNECT ? 0 : MQTT_V311;
            assert_int_equal(mqtt_decode(s->pkt, f.total, ver, true, &s->p, NULL), MQTT_OK);
            return s->p.type;
        }
        if (c)
            hc_loop(c, 10);
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 10) == 1) {
            ssize_t n = recv(s->fd, s->buf + s->len, sizeof s->buf - s->len, 0);
            if (n <= 0)
                return 0;
            s->len += (size_t)n;
        }
    }
    fail_msg("no packet from the client");
    return 0;
}

static void srv_send(struct srv *s, const struct mqtt_packet *p) {
    uint8_t b[256];
    size_t n = mqtt_encode(b, sizeof b, MQTT_V311, p);
    assert_true(n > 0 && n <= sizeof b);
    assert_int_equal(send(s->fd, b, n, 0), (ssize_t)n);
}

static void srv_ack(struct srv *s, uint8_t type, uint16_t pid) {
    struct mqtt_packet p = {.type = type, .packet_id = pid, .flags = type == MQTT_PUBREL ? 2 : 0};
    srv_send(s, &p);
}

static void srv_connack(struct srv *s, bool session_present) {
    struct mqtt_packet p = {.type = MQTT_CONNACK};
    p.connack.session_present = session_present;
    srv_send(s, &p);
}

static void srv_drop(struct srv *s) {
    close(s->fd);
    s->fd = -1;
}

static struct hc_client *new_client(struct srv *s, struct seen *seen, uint16_t inflight,
                                    uint16_t keepalive) {
    struct hc_config cfg = {.host = "127.0.0.1",
                            .port = s->port,
                            .version = MQTT_V311,
                            .client_id = "unit",
                            .clean = false,
                            .keepalive = keepalive,
                            .max_inflight = inflight};
    int err;
    struct hc_client *c = hc_new(&cfg, &cbs, seen, &err);
    assert_non_null(c);
    return c;
}

/* Run the client a little (for things that must NOT happen). */
static void settle(struct hc_client *c) {
    for (int i = 0; i < 5; i++)
        hc_loop(c, 10);
}

/* Run the client until cond holds (bounded: 3 s); the machine may be slow. */
#define UNTIL(c, cond)                                                                             \
    do {                                                                                           \
        for (int i_ = 0; i_ < 300 && !(cond); i_++)                                                \
            hc_loop((c), 10);                                                                      \
        assert_true(cond);                                                                         \
    } while (0)

static bool readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void connect_ok(struct srv *s, struct hc_client *c, bool session_present) {
    assert_int_equal(hc_connect(c, hc_now_ms()), HC_OK);
    srv_accept(s, c);
    assert_int_equal(srv_read(s, c), MQTT_CONNECT);
    assert_false(s->p.connect.clean);
    srv_connack(s, session_present);
    UNTIL(c, hc_state(c) == HC_ST_CONNECTED);
}

/* MQTT-4.4.0-1: after reconnecting with a session, the client re-sends
 * unacknowledged PUBLISH packets (with DUP, MQTT-3.3.1-1) and PUBREL. */
static void test_resend_on_reconnect(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_client *c = new_client(&s, &seen, 10, 0);
    connect_ok(&s, c, false);

    uint16_t m1, m2;
    assert_int_equal(hc_publish(c, "t/1", "one", 3, 1, false, NULL, &m1), HC_OK);
    assert_int_equal(hc_publish(c, "t/2", "two", 3, 2, false, NULL, &m2), HC_OK);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, m1);
    assert_false(s.p.publish.dup);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, m2);
    srv_drop(&s); /* no acknowledgement */
    UNTIL(c, seen.disconnects == 1);
    assert_int_equal(hc_pending(c), 2);

    connect_ok(&s, c, true);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, m1);
    assert_true(s.p.publish.dup);
    assert_int_equal(s.p.publish.payload.len, 3);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, m2);
    assert_true(s.p.publish.dup);
    assert_int_equal(s.p.publish.qos, 2);
    srv_ack(&s, MQTT_PUBACK, m1);
    srv_ack(&s, MQTT_PUBREC, m2);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREL);
    assert_int_equal(s.p.packet_id, m2);
    assert_int_equal(seen.published, 1);
    assert_int_equal(seen.mids[0], m1);
    srv_drop(&s); /* lose the PUBCOMP */
    UNTIL(c, seen.disconnects == 2);

    connect_ok(&s, c, true);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREL); /* re-sent, not the PUBLISH */
    assert_int_equal(s.p.packet_id, m2);
    srv_ack(&s, MQTT_PUBCOMP, m2);
    UNTIL(c, seen.published == 2);
    assert_int_equal(seen.mids[1], m2);
    assert_int_equal(hc_pending(c), 0);

    assert_int_equal(hc_disconnect(c, 0, NULL), HC_OK);
    assert_int_equal(srv_read(&s, c), MQTT_DISCONNECT);
    UNTIL(c, hc_state(c) == HC_ST_IDLE);
    assert_int_equal(seen.last_err, HC_OK);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* Reconnected without a session on the broker: the message is sent again as
 * new, without DUP (the broker never saw it in this session). */
static void test_resend_without_session_has_no_dup(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_client *c = new_client(&s, &seen, 10, 0);
    connect_ok(&s, c, false);
    uint16_t m1;
    assert_int_equal(hc_publish(c, "t/1", "one", 3, 1, false, NULL, &m1), HC_OK);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    srv_drop(&s);
    UNTIL(c, seen.disconnects == 1);
    connect_ok(&s, c, false);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, m1);
    assert_false(s.p.publish.dup);
    srv_ack(&s, MQTT_PUBACK, m1);
    UNTIL(c, seen.published == 1);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* The in-flight window: with max_inflight 2, the third QoS 1 message waits
 * for an acknowledgement; order is kept. */
static void test_inflight_window(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_client *c = new_client(&s, &seen, 2, 0);
    connect_ok(&s, c, false);
    uint16_t mid[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(hc_publish(c, "w", "x", 1, 1, false, NULL, &mid[i]), HC_OK);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, mid[0]);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, mid[1]);
    settle(c);
    assert_int_equal(s.len, 0); /* nothing more on the wire */
    struct pollfd p = {.fd = s.fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    srv_ack(&s, MQTT_PUBACK, mid[1]); /* out of order is fine */
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, mid[2]);
    srv_ack(&s, MQTT_PUBACK, mid[0]);
    assert_int_equal(srv_read(&s, c), MQTT_PUBLISH);
    assert_int_equal(s.p.packet_id, mid[3]);
    srv_ack(&s, MQTT_PUBACK, mid[2]);
    srv_ack(&s, MQTT_PUBACK, mid[3]);
    UNTIL(c, seen.published == 4);
    assert_int_equal(hc_pending(c), 0);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* Incoming QoS 2: PUBREC, one delivery even if the PUBLISH is re-sent with
 * DUP before PUBREL (MQTT-4.3.3-... method B), PUBCOMP on PUBREL. */
static void test_incoming_qos2_delivered_once(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_client *c = new_client(&s, &seen, 10, 0);
    connect_ok(&s, c, false);
    struct mqtt_packet p = {.type = MQTT_PUBLISH, .packet_id = 7, .flags = 4};
    p.publish.qos = 2;
    p.publish.topic = (struct mqtt_str){(const uint8_t *)"in", 2};
    p.publish.payload = (struct mqtt_str){(const uint8_t *)"hello", 5};
    srv_send(&s, &p);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREC);
    assert_int_equal(s.p.packet_id, 7);
    p.publish.dup = true;
    p.flags |= 8;
    srv_send(&s, &p);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREC);
    assert_int_equal(seen.messages, 1);
    assert_string_equal(seen.last_payload, "hello");
    srv_ack(&s, MQTT_PUBREL, 7);
    assert_int_equal(srv_read(&s, c), MQTT_PUBCOMP);
    assert_int_equal(s.p.packet_id, 7);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* manual_ack: no PUBREC until hc_ack; a re-send while held or after the ack
 * is not delivered again (MQTT-4.3.3); a connection without the session
 * forgets the ids, so the same id is then a new message. */
static void test_manual_ack_qos2(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_config cfg = {.host = "127.0.0.1",
                            .port = s.port,
                            .version = MQTT_V311,
                            .client_id = "unit",
                            .manual_ack = true};
    int err;
    struct hc_client *c = hc_new(&cfg, &cbs, &seen, &err);
    assert_non_null(c);
    connect_ok(&s, c, false);
    struct mqtt_packet p = {.type = MQTT_PUBLISH, .packet_id = 7, .flags = 4};
    p.publish.qos = 2;
    p.publish.topic = (struct mqtt_str){(const uint8_t *)"in", 2};
    p.publish.payload = (struct mqtt_str){(const uint8_t *)"hello", 5};
    srv_send(&s, &p);
    UNTIL(c, seen.messages == 1);
    settle(c);
    assert_false(readable(s.fd)); /* no PUBREC yet */
    p.flags |= 8;
    p.publish.dup = true;
    srv_send(&s, &p);
    settle(c);
    assert_false(readable(s.fd));
    assert_int_equal(seen.messages, 1);
    assert_int_equal(hc_ack(c, 8), HC_ERR_STATE);
    assert_int_equal(hc_ack(c, 7), HC_OK);
    assert_int_equal(hc_ack(c, 7), HC_ERR_STATE);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREC);
    assert_int_equal(s.p.packet_id, 7);
    srv_send(&s, &p); /* PUBREC lost: answered again, not delivered */
    assert_int_equal(srv_read(&s, c), MQTT_PUBREC);
    assert_int_equal(seen.messages, 1);
    srv_drop(&s);
    UNTIL(c, hc_state(c) == HC_ST_IDLE);
    connect_ok(&s, c, false);
    srv_send(&s, &p);
    UNTIL(c, seen.messages == 2);
    assert_int_equal(hc_ack(c, 7), HC_OK);
    assert_int_equal(srv_read(&s, c), MQTT_PUBREC);
    srv_ack(&s, MQTT_PUBREL, 7);
    assert_int_equal(srv_read(&s, c), MQTT_PUBCOMP);
    assert_int_equal(hc_ack(c, 7), HC_ERR_STATE);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* try_private: the CONNECT level carries Mosquitto's bridge bit (0x84 for
 * 3.1.1), which the codec decodes back into version 4 + bridge. */
static void test_try_private_connect_level(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_config cfg = {
        .host = "127.0.0.1", .port = s.port, .client_id = "unit", .try_private = true};
    int err;
    struct hc_client *c = hc_new(&cfg, &cbs, &seen, &err);
    assert_non_null(c);
    assert_int_equal(hc_connect(c, hc_now_ms()), HC_OK);
    srv_accept(&s, c);
    assert_int_equal(srv_read(&s, c), MQTT_CONNECT);
    assert_int_equal(s.pkt[8], 0x84); /* 10 len 00 04 "MQTT" level */
    assert_int_equal(s.p.connect.version, MQTT_V311);
    assert_true(s.p.connect.bridge);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

/* Keep-alive: PINGREQ after keepalive seconds without sending
 * (MQTT-3.1.2-23), and a timeout when no PINGRESP comes. Time is passed in. */
static void test_keepalive_ping_and_timeout(void **state) {
    (void)state;
    struct srv s;
    struct seen seen = {0};
    srv_listen(&s);
    struct hc_client *c = new_client(&s, &seen, 10, 5);
    connect_ok(&s, c, false);
    uint64_t now = hc_now_ms();
    int wait = hc_tick(c, now);
    assert_true(wait > 0 && wait <= 5000);
    hc_tick(c, now + 5000);
    assert_int_equal(srv_read(&s, NULL), MQTT_PINGREQ);
    srv_send(&s, &(struct mqtt_packet){.type = MQTT_PINGRESP});
    UNTIL(c, !readable(hc_fd(c))); /* loopback: sent data is queued at once */
    hc_tick(c, now + 10100);
    assert_int_equal(srv_read(&s, NULL), MQTT_PINGREQ);
    /* no answer this time */
    hc_tick(c, now + 15200);
    assert_int_equal(seen.disconnects, 1);
    assert_int_equal(seen.last_err, HC_ERR_TIMEOUT);
    assert_int_equal(hc_fd(c), -1);
    hc_free(c);
    close(s.fd);
    close(s.lfd);
}

static void test_bad_settings_rejected(void **state) {
    (void)state;
    int err;
    struct hc_config cfg = {.version = MQTT_V311, .clean = false};
    assert_null(hc_new(&cfg, &cbs, NULL, &err)); /* 3.1.1: empty id needs clean session */
    assert_int_equal(err, HC_ERR_INVAL);
    struct hc_config bad_will = {.version = MQTT_V5, .clean = true, .will_topic = "a/#"};
    assert_null(hc_new(&bad_will, &cbs, NULL, &err));
    assert_int_equal(err, HC_ERR_INVAL);
    struct hc_config tls = {.version = MQTT_V311, .clean = true, .cafile = "/nonexistent/ca"};
    assert_null(hc_new(&tls, &cbs, NULL, &err));
    assert_int_equal(err, HC_ERR_TLS);
    assert_non_null(strstr(hc_config_error(), "/nonexistent/ca"));
    struct hc_config ok = {.version = MQTT_V311, .clean = true};
    struct hc_client *c = hc_new(&ok, &cbs, NULL, &err);
    assert_non_null(c);
    assert_int_equal(hc_publish(c, "a/+", "x", 1, 0, false, NULL, NULL), HC_ERR_INVAL);
    assert_int_equal(hc_publish(c, "a", "x", 1, 3, false, NULL, NULL), HC_ERR_INVAL);
    assert_int_equal(hc_subscribe1(c, "a/#/b", 0, NULL), HC_ERR_INVAL);
    hc_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resend_on_reconnect),
        cmocka_unit_test(test_resend_without_session_has_no_dup),
        cmocka_unit_test(test_inflight_window),
        cmocka_unit_test(test_incoming_qos2_delivered_once),
        cmocka_unit_test(test_manual_ack_qos2),
        cmocka_unit_test(test_try_private_connect_level),
        cmocka_unit_test(test_keepalive_ping_and_timeout),
        cmocka_unit_test(test_bad_settings_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
