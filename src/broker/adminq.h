/*
 * Cross-worker queries of the admin API (docs/internals/admin.md).
 *
 * A session is only touched by its owner worker, but an admin request runs
 * on whichever worker accepted its HTTP connection. So the request parks
 * its connection (admin_wait ADMIN_WAIT_QUERY) and posts the query to the
 * workers it needs (IT_ADMIN items): each one runs q->collect on its own
 * sessions, writing only its own part of the query (plain data, no shared
 * JSON); the last to finish (q->pending, atomic) sends the query back to
 * the asking worker, which finds the parked connection by the query's id
 * and runs q->answer. The connection holds only that id, never a pointer:
 * if it closed or timed out (504) meanwhile, answer runs with c NULL and
 * the query is freed all the same (q->destroy).
 */
#ifndef HATO_BROKER_ADMINQ_H
#define HATO_BROKER_ADMINQ_H

#include <stdatomic.h>
#include <stdint.h>

#include "broker/broker.h"

#define ADMINQ_WAIT_MS 10000 /* a query the workers take longer for is answered 504 */

struct adminq {
    atomic_int pending;  /* target workers still to run collect */
    struct worker *from; /* the asking worker */
    uint64_t id;         /* the parked connection's c->admin_qid */
    /* On each target worker (its own sessions only). */
    void (*collect)(struct worker *w, struct adminq *q);
    /* On the asking worker once all answered: c is the parked connection, NULL when gone. */
    void (*answer)(struct conn *c, struct adminq *q);
    /* Free the query (any worker at shutdown; the asking one otherwise). */
    void (*destroy)(struct adminq *q);
};

/* Park c and post q to worker `target` (-1 = every worker). -1 when out of
 * memory (q untouched, nothing parked). */
int adminq_start(struct conn *c, struct adminq *q, int target);
/* An IT_ADMIN item arrived at w (worker.c): collect or answer; frees it. */
void adminq_item_run(struct worker *w, struct item *it);
/* An IT_ADMIN item never run (shutdown): frees it, and the query when last. */
void adminq_item_free(struct item *it);
/* admin_tick of a parked connection: 504 once its time is over. */
void adminq_tick(struct conn *c, int64_t now);

#endif
