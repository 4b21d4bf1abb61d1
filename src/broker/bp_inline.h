/* Back-pressure on the message path (bp.h): what costs nothing while nobody
 * is over its soft limit. */
#ifndef HATO_BROKER_BP_INLINE_H
#define HATO_BROKER_BP_INLINE_H

#include "broker/bp.h"
#include "broker/broker.h"

/* A receiving session of a client's PUBLISH: hold the publisher when the
 * session's connection is over its soft limit. */
static inline void bp_check(struct worker *w, struct session *s) {
    if (__builtin_expect(w->bp.reading != NULL, 0) &&
        __builtin_expect(atomic_load_explicit(&s->bp.full, memory_order_relaxed), 0))
        bp_hold(w, s);
}

/* End of a flush: only connections with unsent bytes or a state to leave
 * go further. */
static inline void bp_flushed(struct conn *c, size_t wrote) {
    if (__builtin_expect(c->nsegs || c->bp.full || c->bp.stalled, 0))
        bp_flushed_slow(c, wrote);
}

/* A PUBLISH was written for c: past the soft limit before the flush, the
 * publishers see it at once (a backlog of cross-worker items is not waited
 * for). */
static inline void bp_sent(struct conn *c) {
    if (__builtin_expect(c->out_bytes > c->w->bp.soft, 0) && !c->bp.full && !c->bp.stalled)
        bp_queued(c);
}

#endif
