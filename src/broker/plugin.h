/*
 * Mosquitto plugins in hato (docs/plugins.md, docs/internals/plugin.md).
 *
 * The plugin host loads the `plugin`, `auth_plugin` and `global_plugin`
 * lines of the config with dlopen: Mosquitto's plugin interface version 5
 * (mosquitto_plugin_version/init/cleanup and callbacks registered with
 * mosquitto_callback_register) and the older auth plugin interface,
 * versions 2 to 4 (mosquitto_auth_plugin_version, unpwd_check, acl_check,
 * ...). The functions a plugin calls back (mosquitto_broker_publish,
 * mosquitto_client_id, ...) are in plugin_api.c.
 *
 * Threading model: Mosquitto runs its plugins on one thread, and they are
 * written for that. hato has several workers and a password-check pool, so
 * every call into any plugin is made holding one broker-wide lock (a
 * recursive mutex: a plugin may register callbacks or publish from inside a
 * callback). Password checks (MOSQ_EVT_BASIC_AUTH, unpwd_check) run on the
 * pool's threads (authpool.h), so a slow plugin stalls no worker's loop;
 * ACL checks, control messages, disconnects and ticks run on the workers,
 * where they must be short. What a plugin asks of the broker (publish,
 * kick) is queued, never done inside its call.
 *
 * Every function here is cheap when no plugin is loaded (one load of a
 * flag); with WITH_PLUGINS off they do nothing.
 */
#ifndef HATO_BROKER_PLUGIN_H
#define HATO_BROKER_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct worker;
struct conn;
struct msg;
struct hato_listener;
struct auth_passwd;

/* The plugins' answer to a check. */
enum plugin_verdict {
    PLUGIN_NONE = 0, /* no plugin answers for this listener (or every one ignored it) */
    PLUGIN_ALLOW,
    PLUGIN_DENY,
    PLUGIN_DEFER, /* plugins were asked and every one deferred */
};

/* Start-up (main thread, before security_init): load and initialise every
 * plugin of b->cfg. 0, or -1 after logging "FILE:LINE: reason". */
int plugin_host_start(struct broker *b);
/* Exit (after the workers): cleanup functions, dlclose. */
void plugin_host_stop(struct broker *b);

/* Some plugin checks ACLs (any listener): ACL checks are needed. */
bool plugin_wants_acl(void);
/* Some plugin checks passwords for clients of listener l. */
bool plugin_wants_basic_auth(const struct hato_listener *l);

/* ACL check of one client on a worker (MOSQ_EVT_ACL_CHECK, acl_check of
 * v2-4 with auth_plugin_deny_special_chars). access: MOSQ_ACL_* bits,
 * the same values as AUTH_ACL_*. payload may be NULL. */
enum plugin_verdict plugin_acl_check(const struct hato_listener *l, const char *user,
                                     const char *client_id, const char *topic, const void *payload,
                                     uint32_t payloadlen, int qos, bool retain, int access);

/* UNSUBSCRIBE of filter: refused by the plugins (an answer other than
 * success, or every plugin deferred), as Mosquitto 2.0 asks them. */
bool plugin_unsubscribe_denied(const struct hato_listener *l, const char *user,
                               const char *client_id, const char *filter);

/*
 * A password check for the pool (authpool.h): what the plugins need of the
 * connection, copied (the connection may close while it waits). Made on the
 * owning worker by plugin_auth_new, run on a pool thread by plugin_auth_run,
 * freed by plugin_auth_free.
 */
struct plugin_auth;
struct plugin_auth *plugin_auth_new(struct conn *c, const char *client_id, size_t idlen,
                                    bool has_password, const struct auth_passwd *pw,
                                    bool anonymous_ok);
/* The verdict: plugins first (global, then the listener's), then the
 * password file when every plugin deferred, as Mosquitto 2.0. A user name
 * set by mosquitto_set_username is put in *new_username (malloc'd). */
bool plugin_auth_run(void *auth, const char *user, size_t ulen, const char *password, size_t plen,
                     char **new_username);
void plugin_auth_free(void *auth);

/* A client's PUBLISH to $CONTROL/...: never routed to subscribers (as in
 * Mosquitto); handed to the plugin that registered that topic, if any. */
bool plugin_is_control_topic(const char *topic, size_t len);
void plugin_control(struct conn *c, const struct msg *m);

/* MOSQ_EVT_MESSAGE: a client's PUBLISH that passed its ACL check, before it
 * is retained and routed (not $CONTROL/). A plugin may change its topic,
 * payload, QoS and retain: *m is then replaced by the changed message.
 * False: a plugin refused it (handled like an ACL refusal). */
bool plugin_message_ok(struct conn *c, struct msg **m);

/* SIGHUP (main thread): MOSQ_EVT_RELOAD, security_cleanup/init(reload) of v2-4. */
void plugin_reload(struct broker *b);
/* Worker 0's tick: MOSQ_EVT_TICK. */
void plugin_tick(struct worker *w);
/* A connected client's connection closes (worker): MOSQ_EVT_DISCONNECT. */
void plugin_disconnect(struct conn *c, const char *why);
/* Worker wake-up: carry out the kicks plugins asked for (every worker). */
void plugin_worker_wake(struct worker *w);

#endif
