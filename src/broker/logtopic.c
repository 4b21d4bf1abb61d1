/*
 * log_dest topic: the log module queues each line (base/log.c knows no
 * broker); worker 0 drains the queue when woken by it, and on its tick,
 * and publishes every line to Mosquitto's $SYS/broker/log/<letter> topic
 * as a broker message (QoS 2, not retained, as Mosquitto does).
 *
 * No recursion: lines logged by the drain itself go to the other
 * destinations only (the thread is muted). Routing a log message happens
 * later, from worker 0's inbox (broker_publish_internal); what it may log
 * (a subscriber's queue is full) is logged once per episode, so a log
 * message cannot keep producing new ones. The queue is bounded
 * (LOG_TOPIC_MAX lines; more are dropped and counted).
 */
#include "base/log.h"
#include "broker/broker.h"

#include <stdlib.h>

static void wake_worker(void *ctx) {
    ev_wake(ctx);
}

void logtopic_attach(struct worker *w) {
    if (w->id == 0)
        log_topic_set_notify(wake_worker, w->loop);
}

void logtopic_detach(struct worker *w) {
    if (w->id == 0)
        log_topic_set_notify(NULL, NULL);
}

void logtopic_drain(struct worker *w) {
    if (w->id != 0)
        return;
    struct log_queued *q = log_topic_take();
    if (!q)
        return;
    log_topic_mute_thread(true);
    while (q) {
        struct log_queued *next = q->next;
        /* Routed from worker 0's inbox at the end of this turn, in order. */
        broker_publish_internal(w->b, log_level_topic(q->level), q->text, q->len, 2, false);
        free(q);
        q = next;
    }
    log_topic_mute_thread(false);
}
