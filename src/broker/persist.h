/*
 * Persistence: what the broker writes to the durable store (src/store) and
 * when, and how it restores it at start-up. Every hook returns at once when
 * persistence is off (b->store == NULL), so the hot path pays one test.
 *
 * Called on the worker that owns the session concerned, except
 * persist_route, which runs on the publisher's worker for sessions of all
 * workers (reading only immutable fields and the atomic durable flag).
 */
#ifndef HATO_BROKER_PERSIST_H
#define HATO_BROKER_PERSIST_H

#include "broker/broker.h"

/* Open the store if persistence is on. -1: start-up must stop (logged). */
int persist_open(struct broker *b);
/* The store file's path (persistence_location + persistence_file), malloc'd, or NULL. */
char *persist_store_path(const struct hato_config *cfg);
/* Load sessions, subscriptions, queues, in-flight state and retained messages into the
 * workers (before they run); purge what expired. -1: start-up must stop (logged). */
int persist_restore(struct broker *b);
/* Start the store writer. */
int persist_start(struct broker *b);
/* Commit what is pending and close (after the workers stopped). */
void persist_close(struct broker *b);
/* End of a worker's turn: hand its batch to the writer. */
void persist_flush(struct worker *w);

/* Number the deliveries of one routed message to durable sessions and store them (message
 * once, one queue entry per session). */
void persist_route(struct worker *w, struct msg *m, struct pending_deliv *pd, size_t n);
/* A delivery reached its session without a stored copy (retained on subscribe): store it if
 * the session is durable. */
void persist_deliv_new(struct session *s, struct deliv *d);
/* The delivery's state or packet id changed (sent, PUBREC received). */
void persist_deliv_update(struct session *s, const struct deliv *d);
/* The session's connection went (also at shutdown): save the packet ids of its QoS 1
 * deliveries in flight, which send_now leaves unsaved (see persist.c). */
void persist_session_inflight(struct session *s);
/* The delivery is done or dropped. */
void persist_deliv_done(struct session *s, struct deliv *d);
/* Write the whole session record (connect, subscriptions, disconnect). */
void persist_session(struct session *s);
/* The session ended: remove it and its queue. */
void persist_session_end(struct session *s);
/* Incoming QoS 2 packet id recorded / released. */
void persist_inpid(struct session *s, uint16_t pid, bool add);
/* The retained message of topic changed (set or cleared). */
void persist_retain(struct worker *w, const struct msg *m);

/*
 * Send an acknowledgement the client relies on (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK):
 * with persistence on it goes out only after everything this worker wrote before it is
 * committed (and in order with the connection's other acknowledgements).
 */
int persist_send_ack(struct conn *c, const struct mqtt_packet *p);
/* The same for a CONNACK: the connection waits (no input, no messages) until it is sent. */
int persist_send_connack(struct conn *c, const struct mqtt_packet *p, bool present);
/* Deliver d to s once what persist_route/persist_deliv_new stored is committed (takes the
 * session reference and the delivery). */
void persist_release_deliver(struct worker *w, struct session *s, struct deliv *d);
/* Send the first PUBLISH of a stored in-flight delivery once its packet id is committed. */
void persist_send_publish(struct session *s, uint16_t pid);
/* Worker side of a released acknowledgement (IT_ACK item; frees it). */
void persist_ack_arrived(struct worker *w, struct item *it);

#endif
