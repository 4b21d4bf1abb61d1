/*
 * Bridge sections of mosquitto.conf (`connection NAME` and the options
 * after it), parsed by config.c's table rows into struct hato_bridge.
 * The engine is src/broker/bridge.c (docs/internals/bridge.md).
 */
#ifndef HATO_BRIDGE_CONF_H
#define HATO_BRIDGE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hato_config;

enum { BRIDGE_OUT = 1, BRIDGE_IN = 2, BRIDGE_BOTH = 3 };
enum { BRIDGE_START_AUTOMATIC, BRIDGE_START_LAZY, BRIDGE_START_ONCE };

struct hato_bridge_topic {
    char *pattern;       /* as written; may be "" */
    char *local_prefix;  /* NULL = none */
    char *remote_prefix; /* NULL = none */
    uint8_t direction;   /* BRIDGE_OUT | BRIDGE_IN */
    uint8_t qos;
};

struct hato_bridge_addr {
    char *host;
    uint16_t port; /* 0: 1883, or 8883 with TLS */
    char *ws_path; /* ws:// or wss:// address: the request path, else NULL */
    bool ws_tls;   /* wss:// */
};

struct hato_bridge {
    char *name;
    const char *file; /* of the `connection` line (interned in the config) */
    int line;
    struct hato_bridge_addr *addrs;
    size_t n_addrs;
    bool round_robin;
    struct hato_bridge_topic *topics;
    size_t n_topics;
    uint8_t version; /* 3, 4, 5 [4] */
    bool clean;      /* cleansession [false] */
    int local_clean; /* -1: as clean */
    char *remote_clientid, *local_clientid;
    char *remote_username, *remote_password;
    char *local_username, *local_password;
    int keepalive;                 /* [60] */
    int restart_base, restart_cap; /* seconds; cap 0: constant base [5 30] */
    int idle_timeout;              /* [60] */
    int start_type;                /* BRIDGE_START_* */
    int threshold;                 /* [10] */
    bool notifications;            /* [true] */
    char *notification_topic;      /* NULL: $SYS/broker/connection/<remote_clientid>/state */
    bool notifications_local_only; /* [false] */
    bool try_private;              /* [true] */
    bool outgoing_retain;          /* [true] */
    uint32_t max_packet_size;      /* 0 = none */
    bool attempt_unsubscribe;      /* [true] */
    char *cafile, *capath, *certfile, *keyfile, *tls_version, *alpn, *identity, *psk;
    bool insecure;
    bool tls_use_os_certs;
    char *bind_address;
    bool forward_bridged; /* bridge_forward_bridged (ours) [true] */
    uint32_t max_queued;  /* bridge_max_queued_messages (ours); 0 = max_queued_messages */
};

/* `connection NAME`: a new bridge (names are unique). 0, or -1 with the
 * reason (no file:line) in err. */
int bridge_conf_new(struct hato_config *cfg, const char *name, const char *file, int line,
                    char *err, size_t errlen);
/* A bridge option `key value` for the last bridge. 0 or -1 with the reason. */
int bridge_conf_option(struct hato_config *cfg, const char *key, char *value, char *err,
                       size_t errlen);
/* After every file: fill the defaults (client ids, notification topic),
 * check each bridge (an address; TLS settings that go together). 0 or -1
 * with "FILE:LINE: reason" (the connection's line). */
int bridge_conf_finish(struct hato_config *cfg, char *err, size_t errlen);
void bridge_conf_free(struct hato_bridge *b);
/* Same settings (a reload leaves an unchanged bridge running). */
bool bridge_conf_equal(const struct hato_bridge *a, const struct hato_bridge *b);

#endif
