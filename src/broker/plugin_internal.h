/*
 * Shared by plugin.c (the host: loading, events) and plugin_api.c (the
 * mosquitto_* functions plugins call). Only built WITH_PLUGINS.
 */
#ifndef HATO_BROKER_PLUGIN_INTERNAL_H
#define HATO_BROKER_PLUGIN_INTERNAL_H

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "broker/plugin.h"

/* mosquitto.h (libmosquitto-dev, not needed here) holds the return codes;
 * these are their values in Mosquitto 2.0, part of the plugin ABI. */
enum {
    MOSQ_ERR_AUTH_CONTINUE = -4,
    MOSQ_ERR_NO_SUBSCRIBERS = -3,
    MOSQ_ERR_SUCCESS = 0,
    MOSQ_ERR_NOMEM = 1,
    MOSQ_ERR_PROTOCOL = 2,
    MOSQ_ERR_INVAL = 3,
    MOSQ_ERR_NO_CONN = 4,
    MOSQ_ERR_CONN_LOST = 7,
    MOSQ_ERR_NOT_FOUND = 6,
    MOSQ_ERR_NOT_SUPPORTED = 10,
    MOSQ_ERR_AUTH = 11,
    MOSQ_ERR_ACL_DENIED = 12,
    MOSQ_ERR_UNKNOWN = 13,
    MOSQ_ERR_PLUGIN_DEFER = 17,
    MOSQ_ERR_MALFORMED_UTF8 = 18,
    MOSQ_ERR_ALREADY_EXISTS = 31,
    MOSQ_ERR_PLUGIN_IGNORE = 32,
};
enum {
    MOSQ_LOG_INFO = 0x01,
    MOSQ_LOG_NOTICE = 0x02,
    MOSQ_LOG_WARNING = 0x04,
    MOSQ_LOG_ERR = 0x08,
    MOSQ_LOG_DEBUG = 0x10,
    MOSQ_LOG_SUBSCRIBE = 0x20,
    MOSQ_LOG_UNSUBSCRIBE = 0x40,
    MOSQ_LOG_WEBSOCKETS = 0x80,
};
/* mosquitto_client_protocol() values (enum mosquitto_protocol). */

/*
 * What a plugin sees as `struct mosquitto *client`: a view of one client
 * made for one call (on the stack for ACL checks, copied for the pool),
 * never the connection itself, so that a plugin holding on to it past its
 * call reads stale strings at worst, not freed connections.
 */
struct mosquitto {
    const char *id;
    const char *username;
    const char *address; /* IP address without the port, or NULL */
    const struct hato_listener *l;
    int protocol_version; /* 3, 4, 5; 0 unknown */
    int keepalive;
    bool clean_start;
    bool websockets;
    int sub_count;
    /* mosquitto_set_username during MOSQ_EVT_BASIC_AUTH: malloc'd. */
    char *new_username;
    bool username_changed;
};

/* Callback of a v5 plugin. */
struct plugin_cb {
    struct plugin *p;
    int event;
    MOSQ_FUNC_generic_callback cb;
    void *userdata;
    char *topic; /* MOSQ_EVT_CONTROL: the topic it handles */
};

/* mosquitto_plugin_id_t is the plugin itself. */
struct mosquitto_plugin_id_t {
    int unused;
};

struct plugin {
    struct mosquitto_plugin_id_t id; /* first: its address is the plugin's */
    void *lib;
    int version; /* 2..5 */
    const struct hato_plugin_conf *conf;
    char *path;
    const char *lfile; /* scope: NULL = every listener */
    int lline;
    bool deny_special_chars;
    struct mosquitto_opt *opts;
    int nopts;
    void *userdata;
    /* MOSQ_EVT_BASIC_AUTH callbacks it has: read without the lock by
     * plugin_wants_basic_auth on every CONNECT. */
    atomic_uint auth_cbs;
    /* v5 */
    int (*cleanup5)(void *, struct mosquitto_opt *, int);
    /* v2-4 (the v2 ones have other signatures, cast at the call) */
    void *init_v, *cleanup_v, *sec_init, *sec_cleanup, *acl_check, *unpwd_check, *psk_key_get;
};

struct plugin_host {
    struct broker *b;
    struct plugin **plugins; /* filled at start-up, fixed from then on */
    size_t n;
    struct plugin_cb *cbs;
    size_t ncbs, capcbs;
    atomic_uint nevents[MOSQ_EVT_DISCONNECT + 1]; /* callbacks per event */
    bool v4_acl, v4_auth;                         /* some v2-4 plugin checks ACLs / passwords */
};

/* plugin.c */
extern struct plugin_host *plugin_host;
extern pthread_mutex_t plugin_lock; /* recursive: every call into a plugin */
bool plugin_applies(const struct plugin *p, const struct hato_listener *l);
/* Queue a kick for every worker (plugin_worker_wake). */
int plugin_kick(const char *name, bool by_id, bool with_will);
/* Queue m (its reference taken) for the session of client_id. */
int plugin_send_to(const char *client_id, struct msg *m);

/* plugin_api.c: referenced by plugin.c so that the linker keeps the file
 * (the executable exports what plugins call). */
extern void *const plugin_api_anchor[];

#endif
