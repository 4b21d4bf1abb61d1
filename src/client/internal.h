/*
 * Client library internals (client.c: state machine, queues, the stream
 * stack). Not installed.
 */
#ifndef HATO_CLIENT_INTERNAL_H
#define HATO_CLIENT_INTERNAL_H

#include <netdb.h>
#include <sys/types.h>

#include "hato/client.h"
#include "transport/stream.h"

/* A byte buffer: data is p[off..len). */
struct hc_buf {
    uint8_t *p;
    size_t off, len, cap;
};

enum hc_qstate {
    HC_Q_QUEUED = 0, /* not sent yet */
    HC_Q_SENT,       /* PUBLISH sent, waiting for PUBACK / PUBREC */
    HC_Q_PUBREL,     /* PUBREL sent, waiting for PUBCOMP */
};

/*
 * One outgoing PUBLISH (kept encoded, so a re-send is the same bytes with
 * DUP set) or, in the ctrl list, one SUBSCRIBE/UNSUBSCRIBE waiting for the
 * connection. The publish list is in order: in-flight entries first, then
 * queued ones.
 */
struct hc_qmsg {
    struct hc_qmsg *next;
    uint16_t mid;
    uint8_t qos;
    uint8_t state; /* enum hc_qstate */
    size_t len;
    uint8_t data[];
};

struct hc_client {
    int fd;
    enum hc_state state;
    uint8_t version;
    struct hc_callbacks cb;
    void *ud;

    /* settings */
    char *host, *unix_path, *bind_address, *client_id;
    bool cfg_id_empty;
    uint16_t port;
    bool nodelay, insecure, tls;
    uint16_t keepalive;
    uint16_t max_inflight;
    uint32_t connect_timeout_ms;
    uint32_t max_in_packet;
    uint8_t *connect_pkt; /* the encoded CONNECT */
    size_t connect_len;

    /* connecting */
    struct addrinfo *ai_list, *ai_next;
    uint64_t connect_deadline;

    /* The byte stream once the socket is connected (transport/stream.h):
     * the socket, then TLS, then WebSocket, as configured. fd stays the
     * socket's, for polling; the stack owns it. */
    struct stream *st;
    struct stream_info si;
    struct tls_ctx *tls_ctx; /* made once by hc_new, shared by reconnects */
    char *ws_path;           /* MQTT over WebSocket: the HTTP path */

    /* I/O */
    struct hc_buf in, out;
    uint64_t last_send, ping_sent;
    bool ping_outstanding;
    bool disconnecting; /* hc_disconnect called */

    /* session */
    struct hc_qmsg *q_head, *q_tail;
    struct hc_qmsg *ctrl_head, *ctrl_tail;
    size_t queued;     /* entries of the publish list */
    uint16_t inflight; /* entries in HC_Q_SENT or HC_Q_PUBREL */
    uint16_t window;   /* min(max_inflight, broker's Receive Maximum) */
    uint16_t last_mid, last_qos0_mid;
    bool mids_wrapped; /* a packet id was found in use: check each one */
    uint16_t *rx_qos2; /* incoming QoS 2 ids between PUBREC and PUBREL */
    size_t rx_count, rx_cap;
    /* manual_ack: incoming QoS 1/2 messages delivered, not yet hc_ack'ed */
    bool manual_ack;
    struct hc_held {
        uint16_t id;
        uint8_t qos;
    } * held;
    size_t held_count, held_cap;
    char *msg_topic;
    size_t msg_topic_cap;

    /* results */
    uint8_t connack_code, disconnect_reason;
    int fail_err, err_kind;
    char err[320];
};

void hc__set_error(struct hc_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hc__config_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int hc__fail(struct hc_client *c, int err);
int hc__flush(struct hc_client *c, uint64_t now);
int hc__send_connect(struct hc_client *c, uint64_t now);

#endif
