/*
 * Cross-worker queries of the admin API (adminq.h).
 */
#include "broker/adminq.h"

#include <stdlib.h>

#include "broker/admin_internal.h"

static atomic_ulong next_id = 1;

int adminq_start(struct conn *c, struct adminq *q, int target) {
    struct broker *b = c->w->b;
    int n = target < 0 ? b->nworkers : 1;
    struct item **its = calloc((size_t)n, sizeof(*its));
    if (!its)
        return -1;
    for (int i = 0; i < n; i++) {
        its[i] = calloc(1, sizeof(**its));
        if (!its[i]) {
            for (int k = 0; k < i; k++)
                free(its[k]);
            free(its);
            return -1;
        }
    }
    q->from = c->w;
    q->id = atomic_fetch_add(&next_id, 1);
    atomic_store(&q->pending, n);
    c->admin_qid = q->id;
    c->admin_wait = ADMIN_WAIT_QUERY;
    c->refuse_at = ev_now(c->w->loop) + ADMINQ_WAIT_MS;
    for (int i = 0; i < n; i++) {
        its[i]->kind = IT_ADMIN;
        its[i]->aq = q;
        its[i]->ok = false; /* a query; true: the answer */
        worker_post(c->w, &b->workers[target < 0 ? i : target], its[i]);
    }
    free(its);
    return 0;
}

/* The parked connection of query id on w, or NULL. */
static struct conn *parked(struct worker *w, uint64_t id) {
    for (struct conn *c = w->conns; c; c = c->next)
        if (c->admin_wait == ADMIN_WAIT_QUERY && c->admin_qid == id && c->state != CS_CLOSING)
            return c;
    return NULL;
}

void adminq_item_run(struct worker *w, struct item *it) {
    struct adminq *q = it->aq;
    if (!it->ok) {
        q->collect(w, q);
        /* acq_rel: the asking worker sees every part written before. */
        if (atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel) != 1) {
            free(it);
            return;
        }
        it->ok = true;
        worker_post(w, q->from, it);
        return;
    }
    struct conn *c = parked(w, q->id);
    if (c) {
        c->admin_wait = 0;
        c->refuse_at = 0;
    }
    q->answer(c, q);
    q->destroy(q);
    free(it);
}

void adminq_item_free(struct item *it) {
    struct adminq *q = it->aq;
    if (it->ok || atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel) == 1)
        q->destroy(q);
    free(it);
}

void adminq_tick(struct conn *c, int64_t now) {
    if (now < c->refuse_at)
        return;
    c->refuse_at = 0;
    c->admin_wait = 0; /* its answer, when it comes, finds no connection */
    admin_respond_error(c, 504, NULL, "the workers did not answer in time");
}
