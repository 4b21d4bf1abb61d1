/*
 * The broker's TLS listeners: one TLS context per listener that has TLS
 * settings, built from the config at start-up (before any socket is opened:
 * a missing, unreadable or wrong file stops start-up with FILE:LINE and
 * OpenSSL's reason) and rebuilt on SIGHUP. The TLS itself is the transport
 * layer (transport/tls.h); this file only turns listener settings into its
 * options, swaps contexts on reload and drops the clients a reload no
 * longer accepts.
 *
 * Threads. tls_init, tls_reload and tls_free run on the main thread;
 * broker_tls_ctx and tls_tick on workers. The context table is guarded by
 * a lock; a connection holds a reference on the context it started with,
 * so a reload never pulls it away from under an open connection.
 */
#ifndef HATO_BROKER_TLS_H
#define HATO_BROKER_TLS_H

struct broker;
struct hato_config;
struct hato_listener;
struct worker;

/* Build the contexts of every TLS listener. 0, or -1 (logged). */
int tls_init(struct broker *b);
/* --test-config: build every context once and free it (errors logged). */
int tls_check_config(const struct hato_config *cfg);
/* SIGHUP: build the contexts of every TLS listener of cfg (the new config)
 * and put them in force. A listener that runs already and whose files now
 * fail keeps its current context (logged); a new listener whose files fail
 * fails the whole call: -1, nothing changed. 0 otherwise. Listeners are
 * matched across configs by identity (hato_listener_index). */
int tls_reload(struct broker *b, const struct hato_config *cfg);
void tls_free(struct broker *b);
/* The context for a new connection on listener l (a new reference, for
 * tls_stream_new), or NULL on a listener without TLS. */
struct tls_ctx *broker_tls_ctx(struct broker *b, const struct hato_listener *l);
/* Worker tick: after a reload, drop this worker's TLS clients that the new
 * files no longer accept (revoked or expired certificate, CA gone, PSK
 * identity removed or its key changed). */
void tls_tick(struct worker *w);

#endif
