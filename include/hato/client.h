/*
 * hato client library: a small, non-blocking MQTT client (3.1, 3.1.1, 5.0)
 * over TCP, TLS (OpenSSL, with client certificates and PSK) or a Unix
 * socket. Used by hato-pub, hato-sub, hato-rr and hato-bench.
 *
 * Model
 *   One `struct hc_client` is one MQTT connection (and its session state:
 *   unacknowledged outgoing QoS 1/2 messages, incoming QoS 2 packet ids).
 *   The library never blocks except in hc_loop() and in name resolution
 *   (getaddrinfo in hc_connect). It owns no thread and no event loop:
 *   the caller polls hc_fd() for reading, and for writing while
 *   hc_want_write() is true, then calls hc_on_readable(), hc_on_writable()
 *   and, at least by the time hc_tick() asked for, hc_tick(). Many clients
 *   can be driven this way from one thread (epoll, poll). hc_loop() is a
 *   blocking convenience on top for one client.
 *
 *   Every event is reported through callbacks (struct hc_callbacks), called
 *   from within hc_on_readable / hc_on_writable / hc_tick / hc_loop /
 *   hc_handle_events (and, as noted below, from hc_publish for QoS 0 and
 *   hc_disconnect before the connection is up), never from another thread.
 *   Callbacks may call hc_publish, hc_subscribe, hc_unsubscribe and
 *   hc_disconnect; they must not call hc_free.
 *
 * Time
 *   Every function that needs the time takes `now`, milliseconds of a
 *   monotonic clock (hc_now_ms() gives CLOCK_MONOTONIC), so a caller
 *   driving thousands of clients reads the clock once per turn.
 *
 * Errors
 *   Functions return HC_OK (0) or a negative enum hc_err. After an error
 *   that closed the connection, hc_error_text() gives a one-line reason
 *   ("Connection refused", "certificate verify failed: ...", "Not
 *   authorized", ...). The connection can then be opened again with
 *   hc_connect(): unacknowledged QoS 1/2 messages are re-sent (MQTT-4.4.0-1).
 *
 * Ownership
 *   Everything passed in (config strings, topics, payloads, properties) is
 *   copied before the call returns; the caller keeps ownership. Everything
 *   passed to a callback (messages, properties, reason codes) is valid
 *   only during that callback.
 *
 * Not thread-safe: one client is used by one thread at a time. WebSocket
 * (ws://, wss://) is not supported yet.
 */
#ifndef HATO_CLIENT_H
#define HATO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hato/mqtt.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hc_err {
    HC_OK = 0,
    HC_ERR_NOMEM = -1,         /* out of memory */
    HC_ERR_INVAL = -2,         /* bad argument (topic, QoS, size over the limits) */
    HC_ERR_STATE = -3,         /* not possible in this state (e.g. publish after disconnect) */
    HC_ERR_RESOLVE = -4,       /* host name not found */
    HC_ERR_CONNECT = -5,       /* TCP/Unix connect failed (refused, unreachable) */
    HC_ERR_TLS = -6,           /* TLS setup or handshake failed (e.g. certificate verify failed) */
    HC_ERR_REFUSED = -7,       /* the broker refused the CONNECT (CONNACK code != 0) */
    HC_ERR_PROTOCOL = -8,      /* malformed or unexpected packet from the broker */
    HC_ERR_TIMEOUT = -9,       /* connect or keep-alive (PINGRESP) timeout */
    HC_ERR_CLOSED = -10,       /* the broker closed the connection */
    HC_ERR_IO = -11,           /* other socket error */
    HC_ERR_DISCONNECTED = -12, /* the broker sent DISCONNECT (reason in hc_disconnect_reason) */
};

/* Connection state, as hc_state() reports it. */
enum hc_state {
    HC_ST_IDLE = 0,      /* never connected, or closed after an error / disconnect */
    HC_ST_CONNECTING,    /* TCP connect in progress */
    HC_ST_TLS_HANDSHAKE, /* TLS handshake in progress */
    HC_ST_WAIT_CONNACK,  /* CONNECT sent */
    HC_ST_CONNECTED,     /* CONNACK 0 received */
    HC_ST_DISCONNECTING, /* DISCONNECT queued; closes once it is written */
};

/* Connection settings. Zeroed fields take the defaults in brackets. */
struct hc_config {
    const char *host;         /* [localhost] name or address */
    uint16_t port;            /* [1883, or 8883 with TLS] */
    const char *unix_path;    /* connect to this Unix socket instead of host:port */
    const char *bind_address; /* local address to bind to before connecting */
    bool nodelay;             /* TCP_NODELAY */

    uint8_t version;         /* enum mqtt_version [MQTT_V311] */
    const char *client_id;   /* [""]: empty lets the broker assign one (5.0, 3.1.1 clean) */
    bool clean;              /* clean session (3.x) / clean start (5) */
    uint16_t keepalive;      /* seconds; 0 disables keep-alive */
    const char *username;    /* NULL: none */
    const uint8_t *password; /* NULL: none */
    size_t password_len;
    const struct mqtt_props *connect_props; /* MQTT 5 CONNECT properties, or NULL */

    /* Will: set will_topic to send one. */
    const char *will_topic;
    const uint8_t *will_payload;
    size_t will_payload_len;
    uint8_t will_qos;
    bool will_retain;
    const struct mqtt_props *will_props; /* MQTT 5, or NULL */

    /* Largest number of outgoing QoS 1/2 messages in flight [20]; more are
     * queued. The broker's Receive Maximum (5.0) lowers it. */
    uint16_t max_inflight;
    /* Give up the TCP/TLS/CONNACK phase after this long [0: keep-alive x 1.5,
     * or 30 s without keep-alive]. */
    uint32_t connect_timeout_ms;

    /* TLS: on when `tls` is set, or any of cafile, capath, psk is given. */
    bool tls;
    const char *cafile;
    const char *capath;
    bool tls_use_os_certs;   /* trust OpenSSL's default CA store */
    const char *certfile;    /* client certificate (PEM) */
    const char *keyfile;     /* its private key (PEM) */
    const char *tls_version; /* "tlsv1.3", "tlsv1.2" or "tlsv1.1": the minimum [tlsv1.2] */
    const char *ciphers;     /* OpenSSL cipher list (TLS <= 1.2) */
    bool insecure;           /* do not check the server's host name */
    const char *psk_hex;     /* pre-shared key, hexadecimal */
    const char *psk_identity;
    const char *alpn; /* ALPN protocol, or NULL */
    /* An SSL_CTX * to use instead of building one from the fields above
     * (shared by many clients, e.g. in hato-bench). Not freed by hc_free. */
    void *ssl_ctx;

    /* MQTT over WebSocket (RFC 6455, subprotocol "mqtt") when set: the
     * HTTP request path, e.g. "/mqtt". Over TLS too (wss) with `tls`. */
    const char *ws_path;

    /* Manual acknowledgement: an incoming QoS 1 PUBLISH is not PUBACKed,
     * and a QoS 2 one not PUBRECed, until the caller calls hc_ack() with
     * its packet id (hc_message.mid), e.g. once the message is stored
     * elsewhere (a bridge). Off: acknowledged before on_message runs. */
    bool manual_ack;
    /* MQTT 5 CONNECT Receive Maximum: at most this many QoS 1/2 messages
     * unacknowledged by us at once [0: not sent; the broker assumes
     * 65535]. Overrides one in connect_props. Ignored for 3.x. */
    uint16_t receive_maximum;
    /* 3.x: send the CONNECT level with its high bit set (0x83 / 0x84), as
     * a Mosquitto bridge with try_private does; the remote broker then
     * treats us as a bridge (no echo, retain as published). */
    bool try_private;
};

/* A message received from the broker (valid during the callback). */
struct hc_message {
    const char *topic; /* NUL-terminated */
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint16_t mid; /* packet id, 0 for QoS 0 */
    uint8_t qos;
    bool retain;
    bool dup;
    const struct mqtt_props *props; /* MQTT 5 properties (present == 0 otherwise) */
};

struct hc_client;

struct hc_callbacks {
    /* CONNACK received. `reason` is the 3.x return code or the 5.0 reason
     * code; for reason != 0 the connection is closed afterwards and
     * on_disconnect follows with HC_ERR_REFUSED. */
    void (*on_connect)(struct hc_client *c, void *ud, uint8_t reason, bool session_present,
                       const struct mqtt_props *props);
    /* The connection is closed. err is HC_OK after hc_disconnect() completed,
     * otherwise why (hc_error_text has the words). */
    void (*on_disconnect)(struct hc_client *c, void *ud, int err);
    void (*on_message)(struct hc_client *c, void *ud, const struct hc_message *m);
    /* A publish is complete: QoS 0 when put in the output buffer, QoS 1 on
     * PUBACK, QoS 2 on PUBCOMP (or on a PUBREC with an error reason, 5.0).
     * `reason` is the 5.0 reason code (0 for 3.x). */
    void (*on_publish)(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason);
    /* SUBACK: `count` granted QoS / reason codes, one per filter. */
    void (*on_subscribe)(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props);
    /* UNSUBACK: reason codes (5.0; count 0 for 3.x). */
    void (*on_unsubscribe)(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                           const uint8_t *codes, const struct mqtt_props *props);
    /* Every packet sent (sent = true) or received, decoded, for debugging
     * (hato-pub -d). Costs a decode per sent packet: leave NULL otherwise. */
    void (*on_packet)(struct hc_client *c, void *ud, bool sent, const struct mqtt_packet *p);
};

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t hc_now_ms(void);

/*
 * Create a client (nothing is connected yet). `cfg` and everything it points
 * to is copied; `cb` is copied; `ud` is passed to every callback. Returns
 * NULL with *err set (HC_ERR_NOMEM, HC_ERR_INVAL for a bad setting,
 * HC_ERR_TLS when the TLS context cannot be built: bad CA file, key or
 * certificate; hc_config_error() then has the words). `err` may be NULL.
 */
struct hc_client *hc_new(const struct hc_config *cfg, const struct hc_callbacks *cb, void *ud,
                         int *err);
/* Text of the last hc_new failure in this thread. */
const char *hc_config_error(void);
/* Close the socket (without DISCONNECT) and free everything. NULL is fine. */
void hc_free(struct hc_client *c);

/*
 * Start connecting: resolve the name (blocking), open a non-blocking socket
 * and start the TCP connect. The rest (TLS handshake, CONNECT, CONNACK)
 * happens in hc_on_readable/hc_on_writable/hc_tick. Allowed in HC_ST_IDLE
 * (also to reconnect after an error). Returns HC_OK or an error; on error
 * hc_error_text says why, and on_disconnect is NOT called.
 */
int hc_connect(struct hc_client *c, uint64_t now);

/*
 * As hc_connect, over a socket that is already connected (a socketpair,
 * an inherited descriptor): the client takes it (closes it on error and
 * when the connection ends) and starts the MQTT CONNECT at once.
 */
int hc_connect_fd(struct hc_client *c, int fd, uint64_t now);

/* The socket to poll, -1 when not connected. It changes on reconnect. */
int hc_fd(const struct hc_client *c);
/* True when the caller should poll hc_fd() for writability. */
bool hc_want_write(const struct hc_client *c);
/* Poll for readability whenever hc_fd() >= 0. */

/*
 * Readiness handlers. They do all the I/O possible without blocking and
 * process every complete packet. Return HC_OK, or the error that closed
 * the connection (on_disconnect has then been called).
 */
int hc_on_readable(struct hc_client *c, uint64_t now);
int hc_on_writable(struct hc_client *c, uint64_t now);
/*
 * Timers: keep-alive PINGREQ, PINGRESP and connect timeouts. Returns the
 * milliseconds until hc_tick wants to run again (-1: no timer). A timeout
 * closes the connection and is reported through on_disconnect
 * (HC_ERR_TIMEOUT).
 */
int hc_tick(struct hc_client *c, uint64_t now);

/*
 * Handle poll(2) results for this client: `revents` as poll returned them
 * for hc_fd() (POLLIN/POLLHUP/POLLERR -> hc_on_readable, POLLOUT ->
 * hc_on_writable), then hc_tick. Returns HC_OK or the error that closed
 * the connection during the call (including a timeout found by hc_tick).
 */
int hc_handle_events(struct hc_client *c, short revents, uint64_t now);

/*
 * Blocking convenience: poll this one client for at most timeout_ms
 * (-1: until something happens) and handle what is ready, timers
 * included. Returns HC_OK, or the error that closed the connection,
 * or HC_ERR_STATE when the client is not connected (HC_ST_IDLE).
 */
int hc_loop(struct hc_client *c, int timeout_ms);

/*
 * Publish. QoS 1/2 messages (and QoS 0 ones before the connection is up)
 * are queued and sent in order as the in-flight window allows; QoS 1/2 ones
 * are kept until acknowledged and re-sent after a reconnect. `props`
 * (MQTT 5: message expiry, content type, response topic, correlation data,
 * user properties, ...) may be NULL. *mid (may be NULL) gets an id that
 * on_publish reports: the packet id for QoS 1/2, a local counter for QoS 0
 * (for QoS 0 on a connected client, on_publish runs before hc_publish
 * returns). Nothing is written to the socket here: poll for writability
 * (hc_want_write) or call hc_loop. HC_ERR_INVAL for an invalid topic or
 * QoS; HC_ERR_STATE after hc_disconnect.
 */
int hc_publish(struct hc_client *c, const char *topic, const void *payload, size_t len, uint8_t qos,
               bool retain, const struct mqtt_props *props, uint16_t *mid);

/*
 * Subscribe to `count` filters (entries as the codec's, MQTT 5 options
 * included). Sent when connected (queued before). on_subscribe reports the
 * SUBACK. props: MQTT 5 (subscription identifier, user properties) or NULL.
 */
int hc_subscribe(struct hc_client *c, uint32_t count, const struct mqtt_sub_entry *entries,
                 const struct mqtt_props *props, uint16_t *mid);
/* Subscribe to one filter at `qos`: the common case. */
int hc_subscribe1(struct hc_client *c, const char *filter, uint8_t qos, uint16_t *mid);
int hc_unsubscribe(struct hc_client *c, uint32_t count, const char *const *filters,
                   const struct mqtt_props *props, uint16_t *mid);

/*
 * Manual acknowledgement (hc_config.manual_ack): acknowledge the incoming
 * QoS 1/2 message with packet id `packet_id` as delivered by on_message
 * (PUBACK for QoS 1, PUBREC for QoS 2; the PUBREL that follows is answered
 * with PUBCOMP by the library). Each delivered message is acknowledged
 * once. Until then a re-sent copy (DUP, same id, e.g. after a reconnect
 * with the session kept) is not delivered again (QoS 2: exactly once,
 * MQTT-4.3.3). Returns HC_OK, or HC_ERR_STATE when the id is not awaiting
 * an acknowledgement or the client is not connected (the id then stays
 * pending: call hc_ack again after on_connect reports a kept session; a
 * connection without the session forgets every pending id).
 */
int hc_ack(struct hc_client *c, uint16_t packet_id);

/*
 * Send DISCONNECT (reason code and properties for 5.0; props may be NULL)
 * after everything already queued, then close; on_disconnect(HC_OK)
 * follows once it is written. Messages queued but not yet sent are kept.
 */
int hc_disconnect(struct hc_client *c, uint8_t reason, const struct mqtt_props *props);

enum hc_state hc_state(const struct hc_client *c);
/* QoS 1/2 messages not yet completed plus messages still queued. */
size_t hc_pending(const struct hc_client *c);
/* Bytes queued for the socket and not written yet. */
size_t hc_out_pending(const struct hc_client *c);
/* The client id in use: the configured one, or the one the broker assigned. */
const char *hc_client_id(const struct hc_client *c);
uint8_t hc_version(const struct hc_client *c);
/* One-line text of the last error (empty if none). */
const char *hc_error_text(const struct hc_client *c);
/* Last CONNACK code (3.x return code or 5.0 reason) and last DISCONNECT
 * reason received from the broker. */
uint8_t hc_connack_code(const struct hc_client *c);
uint8_t hc_disconnect_reason(const struct hc_client *c);
/* Text of a CONNACK code for `version`, e.g. "not authorised". */
const char *hc_connack_text(uint8_t version, uint8_t code);
/* Text of an hc_err. */
const char *hc_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
