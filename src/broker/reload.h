/*
 * SIGHUP: the whole configuration re-read and applied while the broker runs.
 *
 * The main thread parses the file again into a new struct hato_config. A
 * file that does not parse (FILE:LINE: reason) changes nothing. Otherwise:
 *   - listeners: one with the same identity (port, address, Unix path,
 *     interface, protocol, socket_domain) keeps its socket and its
 *     connections and takes its new settings; a new one is opened (before
 *     anything is applied: a port that cannot be bound fails the reload);
 *     one no longer configured stops listening, its connections stay;
 *   - TLS contexts, password and ACL files are rebuilt (tls.c, security.c);
 *   - logging is applied (hato_config_apply_logging);
 *   - the new config is published (broker->cfg, an atomic pointer): workers
 *     read limits from it at their next use;
 *   - directives that cannot change live keep their running value, each
 *     logged "X changed: needs a restart".
 * The previous config is retired, not freed: connections, sessions and
 * snapshots point into it. Retired configs are freed at exit.
 *
 * Listening sockets and workers: the broker publishes its set of listening
 * sockets under ls_lock with a generation (ls_gen); each worker adopts it
 * (worker_listen_sync, on its wake-up and tick) and records the generation
 * it adopted. A removed socket is closed only once every worker stopped
 * watching it, so a descriptor number is never reused under a worker's
 * epoll registration.
 */
#ifndef HATO_BROKER_RELOAD_H
#define HATO_BROKER_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

struct broker;
struct worker;
struct lsock;
struct hato_config;
struct hato_listener;
struct ws_server_opts;

/* broker_init/broker_free. */
int reload_init(struct broker *b);
void reload_free(struct broker *b);
/* Where SIGHUP reads the configuration from (NULL: no file, the defaults),
 * and -v (all log types, kept over reloads). main.c, before broker_run. */
void broker_set_config_source(struct broker *b, const char *path, bool verbose);
/* Free p at exit (settings that connections may point to). 0 or -1. */
int reload_keep(struct broker *b, void *p);

/* SIGHUP, main thread. */
void broker_reload(struct broker *b);
/* Any thread (the admin API): ask for the reload SIGHUP does (raised to
 * the process, run by the main thread). Returns the count of reloads
 * finished so far, for reload_outcome. */
unsigned reload_request(struct broker *b);
/* 1 while no reload finished after the first `since`; then the outcome of
 * the latest: 0 applied, -1 failed (why in err, "FILE:LINE: reason" for a bad
 * file; the running configuration stays). */
int reload_outcome(struct broker *b, unsigned since, char *err, size_t errlen);
/* Main thread, between signals: close the sockets a reload removed once
 * every worker has stopped watching them. */
void reload_tick(struct broker *b);

/* Same listener across configurations (the identity a reload keeps). */
bool hato_listener_same(const struct hato_listener *a, const struct hato_listener *b);
/* Index of l in cfg->listeners: l itself, or the listener of cfg with the
 * same identity (l from another config); (size_t)-1 when none. */
size_t hato_listener_index(const struct hato_config *cfg, const struct hato_listener *l);

/* worker.c: watch a listening socket on w's loop. */
int worker_listen(struct worker *w, struct lsock *ls);
/* Worker thread: adopt the broker's current set of listening sockets. */
void worker_listen_sync(struct worker *w);

/* broker.c: listening sockets. */
int broker_open_listener(struct broker *b, const struct hato_config *cfg, struct hato_listener *l,
                         struct lsock ***v, size_t *n);
void broker_free_lsock(struct lsock *ls);
struct ws_server_opts *broker_ws_opts(struct broker *b, const struct hato_config *cfg,
                                      const struct hato_listener *l);

#endif
