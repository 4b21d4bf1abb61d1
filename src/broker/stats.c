/*
 * TEMPORARY stub of stats_snapshot (stats.h) so that the metrics endpoint
 * builds before the real one (branch i13-sys) is merged. It fills what the
 * workers already count; everything else is zero. Replaced by i13-sys's
 * stats.c on merge: do not extend.
 */
#include "broker/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"

int stats_snapshot(struct broker *b, struct stats_snapshot *out) {
    memset(out, 0, sizeof(*out));
    out->uptime = (uint64_t)((int64_t)time(NULL) - b->started);
    out->nworkers = (size_t)b->nworkers;
    out->workers = calloc(out->nworkers ? out->nworkers : 1, sizeof(*out->workers));
    out->nlisteners = b->cfg->n_listeners;
    out->listeners = calloc(out->nlisteners ? out->nlisteners : 1, sizeof(*out->listeners));
    if (!out->workers || !out->listeners) {
        stats_snapshot_free(out);
        return -1;
    }
    for (size_t i = 0; i < out->nworkers; i++) {
        struct worker *w = &b->workers[i];
        out->workers[i].clients = atomic_load(&w->nclients);
        out->workers[i].msgs_received = atomic_load(&w->msgs_in);
        out->workers[i].msgs_sent = atomic_load(&w->msgs_out);
        out->clients_connected += out->workers[i].clients;
        out->pub_received += out->workers[i].msgs_received;
        out->pub_sent += out->workers[i].msgs_sent;
        out->pub_dropped += atomic_load(&w->dropped);
    }
    out->msgs_received = out->pub_received;
    out->msgs_sent = out->pub_sent;
    out->retained_count = retain_count(b->retain);
    out->subscriptions_count = sub_tree_count(b->subs);
    for (size_t i = 0; i < out->nlisteners; i++) {
        const struct hato_listener *l = &b->cfg->listeners[i];
        struct stats_listener *sl = &out->listeners[i];
        if (l->unix_path)
            snprintf(sl->name, sizeof(sl->name), "%s", l->unix_path);
        else if (l->bind_address)
            snprintf(sl->name, sizeof(sl->name), "%s:%d", l->bind_address, l->port);
        else
            snprintf(sl->name, sizeof(sl->name), "%d", l->port);
        sl->protocol = l->protocol;
        sl->connections = (uint64_t)atomic_load(&b->lconns[i]);
    }
    static const double commit_bounds[] = {0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1};
    out->store_commit_seconds.nbounds = sizeof(commit_bounds) / sizeof(commit_bounds[0]);
    memcpy(out->store_commit_seconds.bounds, commit_bounds, sizeof(commit_bounds));
    static const double depth_bounds[] = {0, 1, 10, 100, 1000};
    out->queue_depth.nbounds = sizeof(depth_bounds) / sizeof(depth_bounds[0]);
    memcpy(out->queue_depth.bounds, depth_bounds, sizeof(depth_bounds));
    return 0;
}

void stats_snapshot_free(struct stats_snapshot *s) {
    free(s->workers);
    free(s->listeners);
    s->workers = NULL;
    s->listeners = NULL;
}
