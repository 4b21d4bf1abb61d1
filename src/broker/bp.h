/*
 * Back-pressure (bp.c): a subscriber that reads but falls behind slows the
 * publishers that feed it; one that makes no progress is classed stalled
 * and holds no one back. See docs/internals/backpressure.md.
 *
 * The subscriber's side lives with its connection (struct bp_conn, owner
 * thread only) and one shared flag on its session (struct bp_sess: `full`,
 * read by any worker at match time, and `waiters`, a mask of the workers
 * holding publishers for it). The publisher's side is the same struct
 * bp_conn: `paused` and the session that holds it.
 */
#ifndef HATO_BROKER_BP_H
#define HATO_BROKER_BP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct conn;
struct session;
struct worker;
struct msg;

/* On a session: shared with every worker. */
struct bp_sess {
    atomic_bool full;      /* its connection is over output_soft_limit, not stalled */
    atomic_ullong waiters; /* bit (worker id % 64): holds publishers for it */
};

/* On a connection: owner thread only. */
struct bp_conn {
    struct conn *next, **pprev; /* worker's list of held publishers */
    struct session *blocker;    /* held publisher: the session it waits for (a reference) */
    int64_t progress;           /* full subscriber: monotonic ms of its last written byte */
    bool paused;                /* publisher: its input is not read */
    bool full;                  /* subscriber: over the soft limit (s->bp.full set) */
    bool stalled;               /* subscriber: no progress / over the hard limit */
    bool q0;                    /* subscriber: QoS 0 kept in its queue while full (session.c) */
};

/* On a worker. */
struct bp_worker {
    struct conn *paused;  /* held publishers */
    struct conn *reading; /* the publisher whose PUBLISH is being routed, else NULL */
    atomic_bool kick;     /* a session it waits for was released: look at the list */
    uint64_t soft;        /* output_soft_limit in force, cached (refreshed each tick) */
};

/* Route a client's PUBLISH (proto.c): as route_publish, and the publisher
 * is held when a receiver is over its soft limit. */
size_t bp_route_publish(struct conn *c, struct msg *m);
/* route.c, per receiving session (cheap: one load when nobody is reading). */
void bp_hold(struct worker *w, struct session *s);
/* End of conn_flush: wrote bytes this flush. */
void bp_flushed_slow(struct conn *c, size_t wrote);
/* session.c: a QoS 1/2 delivery was queued for a connected session. */
void bp_queued(struct conn *c);
/* conn_close: leave the lists, release the publishers it held. */
void bp_conn_closed(struct conn *c);
/* Tick, per connection (stall timeout) and per worker (missed wake-ups). */
void bp_conn_tick(struct conn *c, int64_t now);
void bp_worker_tick(struct worker *w);
/* The worker's wake-up (on_inbox): resume the publishers whose sessions drained. */
void bp_worker_wake(struct worker *w);
/* Inline helpers for the message path: bp_inline.h (needs broker.h). */

#endif
