/*
 * log_dest topic: the log module queues each line (base/log.c knows no
 * broker); worker 0 drains the queue when woken by it, and on its tick,
 * and publishes every line to Mosquitto's $SYS/broker/log/<letter> topic
 * as a broker message (QoS 2, not retained, as Mosquitto does).
 *
 * No recursion: while worker 0 publishes, its own log lines (a full
 * queue, a dropped message) are written to the other destinations only.
 */
#include "base/log.h"
#include "broker/broker.h"
#include "broker/msg.h"

#include <stdlib.h>
#include <string.h>

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
        const char *topic = log_level_topic(q->level);
        struct msg *m = msg_new(topic, strlen(topic), (const uint8_t *)q->text, q->len, 2, false,
                                NULL, 0, NULL);
        if (m) {
            route_will(w, m);
            msg_unref(m);
        }
        free(q);
        q = next;
    }
    log_topic_mute_thread(false);
}
