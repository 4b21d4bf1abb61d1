/*
 * Clustering over NATS with JetStream (docs/cluster.md,
 * docs/internals/cluster.md): several hato nodes as one broker.
 *
 * - Routing: a message published on this node is published to NATS on its
 *   topic's subject (src/cluster/subject.h), in an envelope
 *   (src/cluster/envelope.h); the node subscribes to the union of its local
 *   filters (reference-counted) and routes what arrives as if it had been
 *   published here. The connection that publishes is the one that
 *   subscribes, with NATS's no-echo: a node never gets its own messages
 *   back. Shared subscriptions are NATS queue groups, on a second
 *   connection (which does get this node's messages).
 * - QoS 1 and 2 messages also land in a JetStream stream; a persistent
 *   session's QoS 1/2 subscriptions are durable consumers of that stream,
 *   so what it has not acknowledged survives the node it was on. The
 *   publisher's PUBACK/PUBREC waits for the stream's acknowledgement.
 * - Retained messages and the session registry (which node holds which
 *   client id, and a persistent session's subscriptions) are JetStream
 *   key-value buckets.
 *
 * Without cluster_nats_url nothing here runs (b->cluster is NULL) and every
 * hook returns at once. Built without WITH_CLUSTER, the functions are stubs.
 */
#ifndef HATO_BROKER_CLUSTER_H
#define HATO_BROKER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct worker;
struct session;
struct conn;
struct msg;
struct item;
struct deliv;
struct mqtt_packet;
struct hato_config;

/* Connect to NATS, make the stream and buckets, start the watchers.
 * After the workers exist (not yet running is fine). 0, or -1 (logged). */
int cluster_start(struct broker *b);
/* Close NATS and join the threads (before the workers stop). */
void cluster_stop(struct broker *b);
void cluster_free(struct broker *b);

/* A message published on this node (route.c, before its local delivery).
 * Sets w->cl_hold when the publisher's acknowledgement must wait for
 * JetStream (see cluster_send_ack). */
void cluster_publish(struct worker *w, struct msg *m);
/* Shared subscriptions are delivered through NATS queue groups: false
 * while the node is connected (route.c then skips local shared members). */
bool cluster_shared_local(struct broker *b);
/* A retained message set or cleared on this node. */
void cluster_retain(struct worker *w, const struct msg *m);
/* The tree got a new (session, filter) pair (delta 1) or lost one (-1). */
void cluster_interest(struct broker *b, const char *filter, size_t len, int delta);

/* Send acknowledgement p (PUBACK or PUBREC) once JetStream has the message
 * published last by this worker (w->cl_hold); 0, -1 when out of memory. */
int cluster_send_ack(struct conn *c, const struct mqtt_packet *p);

/* Sessions: a CONNECT on this node (after the session is resolved, before
 * the CONNACK); may add the subscriptions the session had on another node
 * and set *present. -1: its consumers could not be taken over here (the
 * caller closes the connection; the client tries again). */
int cluster_connect(struct session *s, bool clean, bool *present);
/* A persistent session's subscription added or changed (after the tree). */
int cluster_session_sub(struct session *s, const char *filter, size_t len, bool added);
/* The session ends here (clean, expired, or taken over by another node). */
void cluster_session_end(struct session *s);
/* A delivery is done for good (acknowledged, or dropped): JetStream may forget it. */
void cluster_deliv_done(struct deliv *d);

/* Items the cluster posted to a worker (struct item, kind IT_CLUSTER). */
void cluster_item_run(struct worker *w, struct item *it);
void cluster_item_free(struct item *it);

/* For $SYS and metrics. */
struct cluster_stats {
    bool enabled;
    bool connected;    /* to a NATS server */
    const char *state; /* "connected", "reconnecting", "closed", "disabled" */
    const char *node;
    unsigned nodes; /* live nodes seen in the nodes bucket (this one included) */
    unsigned long sent, received, refused, js_pending, js_failed, reconnects;
    double lag_ms; /* mean routing lag of the last received messages */
};
void cluster_stats(struct broker *b, struct cluster_stats *out);

#endif
