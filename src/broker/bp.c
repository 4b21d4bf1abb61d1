/*
 * Back-pressure: overload met by slowing publishers before losing messages
 * (docs/internals/backpressure.md, docs/limits.md).
 *
 * A subscriber's connection whose unsent output, after a flush, is above
 * output_soft_limit is "full": its session's shared flag bp.full is set.
 * Routing a client's PUBLISH looks at that flag for each receiving session
 * (bp_check, one relaxed load); when it is set, the publisher's connection
 * is held: it stops being read (no EPOLLIN, what was read and not handled
 * waits in its input buffer), it goes on its worker's list of held
 * publishers with a reference on the session, and its worker's bit is set
 * in the session's bp.waiters mask. The publisher may be on any worker: the
 * flag is read where the publisher is routed, so no item crosses threads to
 * pause it.
 *
 * The session's queue counts too: QoS 1/2 waiting for the in-flight window
 * past half of max_queued_messages / max_queued_bytes (or past the soft
 * limit in bytes) is full as well, down to a quarter (or half the soft
 * limit) to release.
 *
 * When the subscriber's output drains to half the soft limit, or it is
 * classed stalled (no byte written for output_stall_timeout seconds while
 * full, or over max_output_buffer), or its connection closes, its owner
 * clears the flag, takes the waiters mask and wakes each worker in it
 * (bp.kick, ev_wake). A woken worker resumes every held publisher whose
 * session is no longer full: the input it kept is handled, then reading
 * starts again. Holding sets the waiter bit before it re-reads the flag,
 * releasing clears the flag before it takes the mask (both sequentially
 * consistent), so a release is never missed; each tick also looks at the
 * list, as a safety net.
 *
 * A stalled subscriber holds no one: QoS 0 to it is dropped and counted
 * (session.c), QoS 1/2 queue up to its limits. The episode ends when its
 * output drains to half the soft limit. Broker-made messages ($SYS, wills,
 * broker_publish_internal, retained answers) are routed with no publisher
 * reading and are never held.
 */
#include <inttypes.h>
#include <stdio.h>

#include "base/log.h"
#include "broker/bp_inline.h"

static uint64_t soft_limit(const struct hato_config *cfg) {
    uint64_t hard = output_limit(cfg);
    return cfg->output_soft_limit > 0 ? (uint64_t)cfg->output_soft_limit : hard / 4;
}

static uint64_t worker_bit(const struct worker *w) {
    return (uint64_t)1 << (w->id % 64);
}

static void kick(struct worker *w) {
    atomic_store(&w->bp.kick, true);
    ev_wake(w->loop);
}

/* The session no longer holds anyone: wake the workers that wait for it. */
static void sess_release(struct broker *b, struct session *s) {
    atomic_store(&s->bp.full, false);
    uint64_t mask = atomic_exchange(&s->bp.waiters, 0);
    for (int i = 0; mask && i < b->nworkers; i++)
        if (mask & ((uint64_t)1 << (i % 64)))
            kick(&b->workers[i]);
}

static void conn_release(struct conn *c) {
    c->bp.full = false;
    if (c->s)
        sess_release(c->w->b, c->s);
}

static void list_add(struct worker *w, struct conn *c) {
    c->bp.next = w->bp.paused;
    if (c->bp.next)
        c->bp.next->bp.pprev = &c->bp.next;
    c->bp.pprev = &w->bp.paused;
    w->bp.paused = c;
}

static void list_del(struct conn *c) {
    *c->bp.pprev = c->bp.next;
    if (c->bp.next)
        c->bp.next->bp.pprev = c->bp.pprev;
    c->bp.next = NULL;
    c->bp.pprev = NULL;
}

size_t bp_route_publish(struct conn *c, struct msg *m) {
    struct worker *w = c->w;
    w->bp.reading = c;
    size_t n = route_publish(w, m);
    w->bp.reading = NULL;
    return n;
}

/* Register as a waiter, then look again: a release in between is seen. */
static bool wait_for(struct worker *w, struct session *s) {
    atomic_fetch_or(&s->bp.waiters, worker_bit(w));
    return atomic_load(&s->bp.full);
}

void bp_hold(struct worker *w, struct session *s) {
    struct conn *c = w->bp.reading;
    if (c->bp.paused || c->state != CS_CONNECTED)
        return;
    c->bp.paused = true;
    session_ref(s);
    c->bp.blocker = s;
    list_add(w, c);
    if (!wait_for(w, s))
        kick(w); /* released meanwhile: resumed on the next turn */
    conn_update_events(c);
    if (log_enabled(LOG_DEBUG))
        log_debug("Client %s held back: subscriber %s is over output_soft_limit.",
                  c->s ? c->s->client_id : "?", s->client_id);
}

static void unhold(struct conn *c) {
    list_del(c);
    c->bp.paused = false;
    session_unref(c->bp.blocker);
    c->bp.blocker = NULL;
}

static void stall(struct conn *c, const char *why) {
    struct session *s = c->s;
    c->bp.stalled = true;
    conn_release(c);
    log_notice("Client %s is stalled (%s, %zu bytes unsent): it no longer holds back "
               "publishers, QoS 0 messages for it are dropped (output_stall_timeout).",
               s ? s->client_id : c->si.peer, why, c->out_bytes);
}

/* Over the soft limit: unsent bytes, or the session's queue (QoS 1/2 that
 * wait for the window) past half its limits, or past the soft limit in bytes. */
static bool over(const struct conn *c, uint64_t soft) {
    if (c->out_bytes > soft)
        return true;
    const struct session *s = c->s;
    if (!s || !s->qlen)
        return false;
    const struct hato_config *cfg = broker_config(c->w->b);
    uint64_t msgs = (uint64_t)cfg->max_queued_messages, bytes = (uint64_t)cfg->max_queued_bytes;
    return (msgs && s->qlen > msgs / 4) || (bytes && s->qbytes > bytes / 4) || s->qbytes > soft;
}

/* Down to the low watermark: half the soft limit unsent, an eighth of the queue's limits. */
static bool under(const struct conn *c, uint64_t soft) {
    uint64_t low = soft / 2;
    if (c->out_bytes > low)
        return false;
    const struct session *s = c->s;
    if (!s || !s->qlen)
        return true;
    const struct hato_config *cfg = broker_config(c->w->b);
    uint64_t msgs = (uint64_t)cfg->max_queued_messages, bytes = (uint64_t)cfg->max_queued_bytes;
    return (!msgs || s->qlen <= msgs / 8) && (!bytes || s->qbytes <= bytes / 8) && s->qbytes <= low;
}

static void check_full(struct conn *c) {
    const struct hato_config *cfg = broker_config(c->w->b);
    uint64_t hard = output_limit(cfg), soft = soft_limit(cfg);
    c->w->bp.soft = soft;
    if (soft < hard && c->s && c->state == CS_CONNECTED && over(c, soft)) {
        c->bp.full = true;
        c->bp.progress = ev_now(c->w->loop);
        atomic_store(&c->s->bp.full, true);
    }
}

void bp_queued(struct conn *c) {
    if (!c->bp.full && !c->bp.stalled)
        check_full(c);
}

void bp_flushed_slow(struct conn *c, size_t wrote) {
    const struct hato_config *cfg = broker_config(c->w->b);
    uint64_t hard = output_limit(cfg), soft = soft_limit(cfg);
    if (c->bp.stalled) {
        if (under(c, soft)) {
            c->bp.stalled = false; /* it reads again: the episode is over */
            log_debug("Client %s is no longer stalled.", c->s ? c->s->client_id : c->si.peer);
        }
        return;
    }
    if (c->bp.full) {
        if (wrote)
            c->bp.progress = ev_now(c->w->loop);
        if (under(c, soft))
            conn_release(c);
        else if (!wrote && c->out_bytes + (c->s ? c->s->qbytes : 0) > 2 * hard)
            /* What it holds back in its queue (session.c: keep_held_qos0) too: twice
             * max_output_buffer waiting, and this flush wrote nothing. */
            stall(c, "over max_output_buffer");
        return;
    }
    check_full(c);
}

void bp_conn_closed(struct conn *c) {
    if (c->bp.paused)
        unhold(c);
    if (c->bp.full)
        conn_release(c);
    c->bp.stalled = false;
}

void bp_conn_tick(struct conn *c, int64_t now) {
    if (c->bp.paused)
        c->last_rx = now; /* not read because of someone else: not its keep alive's fault */
    if (!c->bp.full)
        return;
    int t = broker_config(c->w->b)->output_stall_timeout;
    if (t > 0 && now - c->bp.progress >= (int64_t)t * 1000)
        stall(c, "no bytes written for output_stall_timeout");
}

/* Resume the held publishers whose sessions are not full any more; the
 * others register again (their session may have been released and filled
 * again meanwhile). */
static void resume(struct worker *w) {
    for (;;) {
        struct conn *c = w->bp.paused;
        while (c && atomic_load(&c->bp.blocker->bp.full))
            c = c->bp.next;
        if (!c)
            break;
        unhold(c);
        /* What was read before the hold, then reading again. */
        if (c->inlen)
            conn_handle_input(c, c->in, c->inlen);
        if (c->state != CS_CLOSING && c->w == w)
            conn_update_events(c);
    }
    bool again = false;
    for (struct conn *c = w->bp.paused; c; c = c->bp.next)
        if (!wait_for(w, c->bp.blocker))
            again = true;
    if (again)
        kick(w);
}

void bp_worker_wake(struct worker *w) {
    if (atomic_load_explicit(&w->bp.kick, memory_order_relaxed) &&
        atomic_exchange(&w->bp.kick, false))
        resume(w);
}

void bp_worker_tick(struct worker *w) {
    w->bp.soft = soft_limit(broker_config(w->b)); /* a reload may change it */
    if (w->bp.paused)
        resume(w);
}
