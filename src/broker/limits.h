/*
 * Broker-wide limits, counted across workers (docs/limits.md):
 *
 *   global_max_connections  sockets open on all listeners (Mosquitto 2.1);
 *                           beyond it a new connection is closed at once.
 *   global_max_clients      sessions known to the broker, connected or not
 *                           (an offline persistent session counts, as in
 *                           Mosquitto 2.1 where it is every client id held);
 *                           beyond it a CONNECT that would create one more is
 *                           refused (MQTT 5 CONNACK 0x89 Server busy; MQTT 3
 *                           closed without CONNACK, as Mosquitto).
 *   memory_limit            bytes of message payload held by the broker
 *                           (retained, queued, in flight, being written: the
 *                           live messages of $SYS/broker/store/messages/bytes);
 *                           a PUBLISH that would pass it is refused.
 *
 * The counts are atomics touched once per connection or session, never per
 * message; memory_limit reads the per-worker message tallies (one relaxed
 * load per worker) only when it is set. Values <= 0 mean no limit.
 */
#ifndef HATO_BROKER_LIMITS_H
#define HATO_BROKER_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;

/* A socket was accepted: counts it and returns true, or returns false
 * (nothing counted) when global_max_connections is reached. */
bool limits_conn_admit(struct broker *b);
/* A counted socket is closed. */
void limits_conn_gone(struct broker *b);
long limits_conns(const struct broker *b);

/* Sessions: every session_new counts one, every registered session_end
 * uncounts it (session.c). */
void limits_session_add(struct broker *b);
void limits_session_gone(struct broker *b);
long limits_sessions(const struct broker *b);
/*
 * Before a CONNECT creates a session: reserve a place under
 * global_max_clients (exact across workers: a compare-and-swap). Returns
 * false when the broker is full. A reservation is given back with
 * limits_session_unreserve once session_new counted the session itself (or
 * failed).
 */
bool limits_session_reserve(struct broker *b);
void limits_session_unreserve(struct broker *b);

/* Payload bytes of the messages alive now. */
int64_t limits_memory_used(const struct broker *b);
/* May a message of `bytes` more be taken under memory_limit? */
bool limits_memory_room(const struct broker *b, size_t bytes);

#endif
