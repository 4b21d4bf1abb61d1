/*
 * Broker configuration: mosquitto.conf syntax (Mosquitto 2.0/2.1) plus a
 * few hato directives. The parser treats its input as hostile: any line it
 * cannot take exactly as written stops the load with "FILE:LINE: reason".
 * The reference for every directive is docs/configuration.md.
 *
 * Life cycle:
 *   hato_config_init(&cfg);                       defaults
 *   hato_config_load(&cfg, path, err, len);       zero or more files/strings
 *   hato_config_set_port(&cfg, port);             optional, from -p
 *   hato_config_finish(&cfg, err, len);           listeners, derived values
 *   ... use cfg ...
 *   hato_config_free(&cfg);
 *
 * Ownership: every char * below is owned by the config (heap, freed by
 * hato_config_free), or NULL. `file` pointers in listeners point into the
 * config's own list of file names and live as long as the config.
 */
#ifndef HATO_CONFIG_CONFIG_H
#define HATO_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/bridge_conf.h"

/* Tri-state booleans (allow_anonymous, ...) before hato_config_finish. */
#define HATO_UNSET (-1)

/* log_dest bits. */
enum {
    HATO_LOG_DEST_STDERR = 1u << 0,
    HATO_LOG_DEST_STDOUT = 1u << 1,
    HATO_LOG_DEST_SYSLOG = 1u << 2,
    HATO_LOG_DEST_FILE = 1u << 3, /* path in cfg->log_file */
    HATO_LOG_DEST_TOPIC = 1u << 4,
    HATO_LOG_DEST_DLT = 1u << 5, /* accepted, no DLT support: treat as none */
};

/* log_type bits. */
enum {
    HATO_LOG_ERR = 1u << 0,
    HATO_LOG_WARNING = 1u << 1,
    HATO_LOG_NOTICE = 1u << 2,
    HATO_LOG_INFO = 1u << 3,
    HATO_LOG_SUBSCRIBE = 1u << 4,
    HATO_LOG_UNSUBSCRIBE = 1u << 5,
    HATO_LOG_WEBSOCKETS = 1u << 6,
    HATO_LOG_DEBUG = 1u << 7,
    HATO_LOG_INTERNAL = 1u << 8,
    HATO_LOG_ALL = (1u << 9) - 1,
    HATO_LOG_DEFAULT = HATO_LOG_ERR | HATO_LOG_WARNING | HATO_LOG_NOTICE | HATO_LOG_INFO,
};

/* accept_protocol_versions bits (MQTT protocol level 3 = 3.1, 4 = 3.1.1, 5 = 5.0). */
enum {
    HATO_PROTO_V3 = 1u << 3,
    HATO_PROTO_V4 = 1u << 4,
    HATO_PROTO_V5 = 1u << 5,
    HATO_PROTO_ALL = HATO_PROTO_V3 | HATO_PROTO_V4 | HATO_PROTO_V5,
};

/* persistence_sync (hato). */
enum hato_persistence_sync {
    HATO_SYNC_ALWAYS = 0, /* fsync each commit before acknowledging (default) */
    HATO_SYNC_BATCH = 1,  /* fsync in the background, shortly after commit */
    HATO_SYNC_NONE = 2,   /* leave it to the OS */
};

/* plugin_opt_* / auth_opt_* of one plugin (the prefix removed from key). */
struct hato_plugin_opt {
    char *key;
    char *value;
};

/* One `plugin`, `auth_plugin` or `global_plugin` line and the options after
 * it (docs/plugins.md). Loaded by src/broker/plugin.c at start-up. */
struct hato_plugin_conf {
    char *path;
    struct hato_plugin_opt *opts;
    size_t n_opts;
    bool deny_special_chars; /* auth_plugin_deny_special_chars (v2-4 ACL checks) */
    /* Scope: global (lfile NULL), or the listener whose `file`/`line` are
     * lfile/lline (per_listener_settings true, not global_plugin). A plugin
     * before any `listener` line belongs to the default listener: finish
     * sets lfile/lline to its. */
    const char *lfile;
    int lline;
    bool on_default;  /* parsed before any `listener` line (private to config.c) */
    const char *file; /* interned: the plugin line, for messages */
    int line;
};

/* One per `listener` line, or the default/local-only ones made by finish. */
struct hato_listener {
    int port;                   /* 0 with unix_path set: Unix socket; 0 alone: ephemeral (-p 0) */
    char *bind_address;         /* NULL = all addresses */
    char *unix_path;            /* `listener 0 PATH` */
    int socket_domain;          /* AF_UNSPEC (default), AF_INET, AF_INET6 */
    char *bind_interface;       /* SO_BINDTODEVICE */
    char *mount_point;          /* no wildcards */
    int max_connections;        /* -1 = unlimited */
    char *protocol;             /* "mqtt" (default), "websockets", "metrics", "admin" */
    int max_qos;                /* 0..2, default 2 */
    int max_topic_alias;        /* aliases a v5 client may use towards us, default 10 */
    int max_topic_alias_broker; /* aliases we may use towards a client, default 10 */
    bool use_username_as_clientid;
    unsigned accept_protocol_versions; /* HATO_PROTO_* bits, default all */
    int enable_proxy_protocol; /* 0 = off, 1 or 2: the header every connection must start with */
    bool proxy_protocol_v2_require_tls; /* v2: the client's connection to the proxy must be TLS */
    char *http_dir;                     /* websockets: static files served to plain GET/HEAD */
    char **websockets_origins; /* websockets_origin, may repeat: the Origin values accepted */
    size_t n_websockets_origins;
    /* websockets_trusted_proxy (hato), may repeat: socket addresses (ADDR or
     * ADDR/BITS) whose X-Forwarded-For names the client. Checked by finish. */
    char **websockets_trusted_proxies;
    size_t n_websockets_trusted_proxies;
    /* metrics_auth (hato): a `protocol metrics` listener (HTTP /metrics,
     * metrics.c) asks for basic auth against the password file. */
    bool metrics_auth;

    /* TLS (stored for the TLS module; see hato_listener_wants_tls). */
    char *cafile;
    char *capath;
    char *certfile;
    char *keyfile;
    char *tls_version; /* tlsv1.1 | tlsv1.2 | tlsv1.3 */
    char *ciphers;
    char *ciphers_tls13; /* ciphers_tls1.3 */
    char *crlfile;
    char *dhparamfile;
    char *psk_hint;
    char *tls_engine;
    char *tls_engine_kpass_sha1;
    char *tls_keyform; /* pem | engine */
    bool require_certificate;
    bool use_identity_as_username;
    bool use_subject_as_username;
    bool disable_client_cert_date_checks;

    /*
     * Security. allow_anonymous and allow_zero_length_clientid are
     * HATO_UNSET until finish, then 0/1: the effective value for clients of
     * this listener (listener_allow_anonymous, or the per-listener value
     * when per_listener_settings is true, else the global one).
     * auto_id_prefix is always set after finish (falls back to the global).
     * password_file, acl_file, psk_file are only set here when
     * per_listener_settings is true; otherwise use the cfg-> ones.
     */
    int allow_anonymous;
    int allow_zero_length_clientid;
    char *auto_id_prefix;
    char *password_file;
    char *acl_file;
    char *psk_file;

    const char *file; /* file of its `listener`/`port` line; "<local-only>", "<command line>" */
    int line;
};

struct hato_config {
    struct hato_listener *listeners;
    size_t n_listeners;
    /* Set by finish when nothing configured a listener: 127.0.0.1 and ::1 only. */
    bool local_only;

    /* Limits and protocol behaviour (Mosquitto). */
    int max_inflight_messages;            /* 20; 0 = no limit; 0..65535 */
    int64_t max_inflight_bytes;           /* 0 = no limit */
    int max_queued_messages;              /* 1000; 0 = no limit */
    int64_t max_queued_bytes;             /* 0 = no limit */
    bool queue_qos0_messages;             /* false */
    int message_size_limit;               /* 0 = MQTT maximum (268435455) */
    int max_packet_size;                  /* 0 = MQTT maximum; else 20..268435460 */
    int max_keepalive;                    /* 65535 */
    bool retain_available;                /* true */
    int64_t persistent_client_expiration; /* seconds, 0 = never */
    bool upgrade_outgoing_qos;            /* false */
    bool set_tcp_nodelay;                 /* false */
    int64_t memory_limit;                 /* bytes, 0 = no limit */
    int global_max_clients;               /* -1 = unlimited (2.1) */
    int global_max_connections;           /* -1 = unlimited (2.1) */
    int retain_expiry_interval;           /* minutes, 0 = never (2.1) */
    bool allow_duplicate_messages;        /* true (deprecated in Mosquitto) */
    bool check_retain_source;             /* false */
    char *clientid_prefixes;              /* NULL = any client id */
    int sys_interval;                     /* 10; 0 = no $SYS updates */

    /* Security (global; see per_listener_settings). */
    bool per_listener_settings;      /* false */
    int allow_anonymous;             /* HATO_UNSET until finish, then 0/1 */
    bool allow_zero_length_clientid; /* true */
    char *auto_id_prefix;            /* "auto-" */
    char *password_file;
    char *acl_file;
    char *psk_file;
    /* admin_password_file (hato): the admin API's accounts (admin.c), in
     * the password file's format; separate from MQTT users. */
    char *admin_password_file;
    /* admin_console_dir (hato): the web console's files (admin_console.c);
     * NULL = the installed directory (HATO_CONSOLE_DIR). */
    char *admin_console_dir;
    bool auth_plugin_deny_special_chars; /* true: default of the plugins that follow */
    struct hato_plugin_conf *plugins;    /* in config order */
    size_t n_plugins;

    /* Persistence. */
    bool persistence;           /* false */
    char *persistence_location; /* NULL = current directory */
    char *persistence_file;     /* "mosquitto.db" */
    int autosave_interval;      /* 1800 */
    bool autosave_on_changes;   /* false */

    /* Process. */
    char *include_dir; /* last include_dir followed, for information */
    char *pid_file;    /* NULL = none */
    char *user;        /* "mosquitto"; only used when started as root */
    /* Clustering over NATS (docs/cluster.md); cluster_nats_url NULL = alone. */
    char *cluster_nats_url;  /* comma-separated nats:// or tls:// URLs */
    char *cluster_name;      /* NULL = "hato" */
    char *node_name;         /* NULL = the host name */
    char *cluster_nats_user; /* NATS user name / password */
    char *cluster_nats_password;
    char *cluster_nats_cafile; /* TLS to NATS: CA, client certificate and key */
    char *cluster_nats_certfile;
    char *cluster_nats_keyfile;
    int cluster_replicas; /* JetStream replicas of the streams and buckets, 1..5 */

    /* Logging. */
    unsigned log_dest;          /* HATO_LOG_DEST_* bits; default stderr; 0 = none */
    char *log_file;             /* with HATO_LOG_DEST_FILE */
    unsigned log_type;          /* HATO_LOG_* bits; default HATO_LOG_DEFAULT */
    int log_facility;           /* -1 = LOG_DAEMON, 0..7 = LOG_LOCAL0..7 */
    bool log_timestamp;         /* true */
    char *log_timestamp_format; /* strftime format, NULL = seconds since epoch */
    bool connection_messages;   /* true */
    int log_format;             /* hato: 0 = text (Mosquitto's), 1 = json lines */
    int websockets_log_level; /* stored (libwebsockets' log mask in Mosquitto; see configuration.md)
                               */
    int websockets_headers_size; /* largest WebSocket/HTTP request head, 0 = 4096; 0..65535 */
    bool enable_control_api;     /* stored (2.1 $CONTROL) */

    /* hato's own. */
    int threads;                                 /* 0 = number of CPUs; max 256 */
    enum hato_persistence_sync persistence_sync; /* always */
    int max_subscriptions_per_client;            /* 0 = unlimited */
    int connect_timeout;                         /* seconds to receive CONNECT, default 10 */
    int auth_fail_delay;     /* ms before refusing a failed login (doubles per failure), 1000 */
    int auth_fail_delay_max; /* ms, cap of that delay, 30000 */
    /* Unsent bytes per connection above which QoS 0 is dropped and input
     * is not read; 4 MiB; 0..1 GiB, 0 = the most, 1 GiB (output offsets
     * are 32-bit). */
    int64_t max_output_buffer;
    /* Back-pressure (bp.c): unsent bytes above which a reading subscriber holds
     * its publishers (0 = max_output_buffer / 4), and seconds without progress
     * after which it is stalled (0 = only the hard limit). */
    int64_t output_soft_limit;
    int output_stall_timeout;
    int max_topic_levels; /* levels in a topic name or filter; 201 (Mosquitto's); 0 = no limit */

    /* Bridges (`connection` sections, config/bridge_conf.h), in file order. */
    struct hato_bridge *bridges;
    size_t n_bridges;

    /* Non-fatal remarks (deprecated or ignored directives), "FILE:LINE: text". */
    char **warnings;
    size_t n_warnings;

    /* Private to config.c. */
    struct hato_listener default_listener; /* target of listener options before any `listener` */
    bool default_listener_used;            /* `port` or `bind_address` given */
    int cmd_port;                          /* -p, -1 = not given */
    const char *default_touched_file;      /* first listener option sent to it */
    int default_touched_line;
    bool security_set; /* a security option was seen */
    bool log_dest_set, log_type_set;
    char **files; /* interned file names */
    size_t n_files;
    bool finished;
};

/* Set every field to its default. Never fails (missing strings after an
 * allocation failure are restored by finish, which reports it). */
void hato_config_init(struct hato_config *cfg);

/*
 * Parse the file at `path` into cfg (initialised). include_dir lines are
 * followed at the point they appear (files ending in .conf, sorted by byte
 * order); include_dir is only allowed in the file given here.
 * Returns 0, or -1 with "FILE:LINE: reason" in err[0..errlen) (NUL-terminated,
 * truncated if needed). cfg may hold a partial result on error; free it.
 */
int hato_config_load(struct hato_config *cfg, const char *path, char *err, size_t errlen);

/* Same, from a NUL-terminated string; `name` stands for the file in messages. */
int hato_config_parse_string(struct hato_config *cfg, const char *name, const char *text, char *err,
                             size_t errlen);

/*
 * -p PORT (0..65535; 0 = ephemeral, for tests). Sets the port of the default
 * listener: with no `listener` lines this keeps the local-only mode but on
 * this port (Mosquitto 2.0); otherwise a listener on all addresses is added
 * next to the configured ones. Returns -1 if port is out of range.
 */
int hato_config_set_port(struct hato_config *cfg, int port);

/*
 * Final checks after every file and -p: builds the default or local-only
 * listeners, resolves allow_anonymous and the other per-listener security
 * values, checks TLS key pairs and duplicate listeners.
 * Returns 0, or -1 with a message in err.
 */
int hato_config_finish(struct hato_config *cfg, char *err, size_t errlen);

/* Free everything the config owns; cfg is left initialised-empty (zeroed). */
void hato_config_free(struct hato_config *cfg);

/* True when the listener has TLS or PSK settings (the broker must not serve
 * it in plain text: refuse to start until TLS is supported). */
bool hato_listener_wants_tls(const struct hato_listener *l);

/* ---- the directive table ------------------------------------------------
 * Every directive is one row of keys[] in config.c. These read it: `hato
 * --list-directives`, the reload (what keeps its running value), and the
 * check that docs/configuration.md lists every row with its status. */

/* What SIGHUP does with a directive. */
enum hato_reload {
    HATO_RELOAD_LIVE,     /* applied, also to open connections at their next use */
    HATO_RELOAD_NEW_CONN, /* listener setting: new connections get the new value */
    HATO_RELOAD_LISTENER, /* listener identity: a change closes it and opens the new one */
    HATO_RELOAD_RESTART,  /* the running value stays, logged "X changed: needs a restart" */
};

/* One row, as text (static strings, or the arrays). */
struct hato_directive {
    const char *name;
    const char *scope; /* global, listener, security, bridge, plugin */
    char type[192];    /* bool, integer LO..HI, a|b|c, string, ... */
    char def[64];      /* the default; "" = none */
    enum hato_reload reload;
    const char *status; /* implemented, stored, accepted, refused, obsolete */
    const char *doc;    /* one line; "" when the row has none */
};

/* The effective value of row i in cfg as text (listener rows: of l, a
 * listener of cfg); false when the row has no single field to show (FN,
 * bridge and plugin rows). */
bool hato_directive_value(const struct hato_config *cfg, const struct hato_listener *l, size_t i,
                          char *out, size_t len);

/* Number of rows; row i (0 <= i < count) into *d (false if out of range). */
size_t hato_directive_count(void);
bool hato_directive_get(size_t i, struct hato_directive *d);
const char *hato_reload_name(enum hato_reload r);

/* The table as Markdown (name, scope, value, default, on SIGHUP, status,
 * description), one row per directive: `hato --list-directives`. */
void hato_directives_print(FILE *out);

/*
 * Reload: give the new config n the running value (from old) of every
 * directive whose row says HATO_RELOAD_RESTART, calling changed(name,
 * running value as text, arg) for each that differed. Aliases sharing a
 * field are reported once, under the first row's name. Returns 0, or -1
 * when a string could not be copied (n keeps its own value then).
 */
int hato_config_keep_restart(struct hato_config *n, const struct hato_config *old,
                             void (*changed)(const char *name, const char *running, void *arg),
                             void *arg);

#endif
