/*
 * Password checks off the worker threads (authpool.h).
 */
#include "broker/authpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "base/log.h"
#include "broker/broker.h"

struct authpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct auth_job *head, *tail;
    size_t queued;
    bool stopping;
    int nthreads;
    pthread_t threads[AUTHPOOL_MAX_THREADS];
};

/* Connection numbers: unique in the process, never 0. */
static _Atomic uint64_t next_id = 1;

static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static void job_free(struct auth_job *j) {
    if (j->ctx_free)
        j->ctx_free(j->ctx);
    wipe(j->data, j->ulen + j->plen);
    free(j);
}

static void *pool_main(void *arg) {
    struct authpool *ap = arg;
    for (;;) {
        pthread_mutex_lock(&ap->lock);
        while (!ap->head && !ap->stopping)
            pthread_cond_wait(&ap->cond, &ap->lock);
        if (ap->stopping) {
            pthread_mutex_unlock(&ap->lock);
            return NULL;
        }
        struct auth_job *j = ap->head;
        ap->head = j->next;
        if (!ap->head)
            ap->tail = NULL;
        ap->queued--;
        pthread_mutex_unlock(&ap->lock);

        char *new_user = NULL;
        bool ok = j->check ? j->check(j->ctx, j->has_user ? j->data : NULL, j->ulen,
                                      j->data + j->ulen, j->plen, &new_user)
                           : auth_passwd_check(j->pw, j->data, j->ulen, j->data + j->ulen, j->plen);
        j->release(j->hold);
        struct item *it = j->it;
        it->ok = ok;
        it->abuf = (uint8_t *)new_user; /* the client's new user name, if a plugin set one */
        worker_post(NULL, j->w, it);    /* locked append and a wake-up */
        job_free(j);
    }
}

int authpool_start(struct broker *b) {
    struct authpool *ap = calloc(1, sizeof(*ap));
    if (!ap) {
        log_error("Error: out of memory.");
        return -1;
    }
    pthread_mutex_init(&ap->lock, NULL);
    pthread_cond_init(&ap->cond, NULL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n = ncpu > 0 && ncpu < AUTHPOOL_MAX_THREADS ? (int)ncpu : AUTHPOOL_MAX_THREADS;
    b->authpool = ap;
    for (int i = 0; i < n; i++) {
        int e = pthread_create(&ap->threads[i], NULL, pool_main, ap);
        if (e) {
            log_error("Error: cannot start the password check thread: %s", strerror(e));
            return -1;
        }
        ap->nthreads++;
    }
    return 0;
}

void authpool_stop(struct broker *b) {
    struct authpool *ap = b->authpool;
    if (!ap)
        return;
    pthread_mutex_lock(&ap->lock);
    ap->stopping = true;
    pthread_cond_broadcast(&ap->cond);
    pthread_mutex_unlock(&ap->lock);
    for (int i = 0; i < ap->nthreads; i++)
        pthread_join(ap->threads[i], NULL);
    while (ap->head) {
        struct auth_job *j = ap->head;
        ap->head = j->next;
        j->release(j->hold);
        free(j->it);
        job_free(j);
    }
    pthread_cond_destroy(&ap->cond);
    pthread_mutex_destroy(&ap->lock);
    free(ap);
    b->authpool = NULL;
}

int authpool_submit(struct conn *c, const struct auth_passwd *pw, const char *user, size_t ulen,
                    const char *password, size_t plen, void (*release)(void *), void *hold) {
    return authpool_submit_check(c, NULL, (void *)pw, NULL, user, ulen, password, plen, release,
                                 hold);
}

int authpool_submit_check(struct conn *c,
                          bool (*check)(void *ctx, const char *user, size_t ulen,
                                        const char *password, size_t plen, char **new_username),
                          void *ctx, void (*ctx_free)(void *ctx), const char *user, size_t ulen,
                          const char *password, size_t plen, void (*release)(void *), void *hold) {
    const struct auth_passwd *pw = check ? NULL : ctx;
    if (!user)
        ulen = 0;
    if (!password)
        plen = 0;
    struct worker *w = c->w;
    struct authpool *ap = w->b->authpool;
    if (!ap)
        return -1;
    struct auth_job *j = malloc(sizeof(*j) + ulen + plen);
    struct item *it = calloc(1, sizeof(*it));
    if (!j || !it) {
        free(j);
        free(it);
        return -1;
    }
    *j = (struct auth_job){.w = w,
                           .it = it,
                           .pw = pw,
                           .release = release,
                           .hold = hold,
                           .check = check,
                           .ctx = check ? ctx : NULL,
                           .ctx_free = ctx_free,
                           .has_user = user != NULL,
                           .ulen = ulen,
                           .plen = plen};
    if (ulen)
        memcpy(j->data, user, ulen);
    if (plen)
        memcpy(j->data + ulen, password, plen);
    uint64_t id = atomic_fetch_add(&next_id, 1);
    it->kind = IT_AUTH;
    it->auth_id = id;

    pthread_mutex_lock(&ap->lock);
    bool full = ap->queued >= AUTHPOOL_MAX_QUEUED || ap->stopping;
    if (!full) {
        if (ap->tail)
            ap->tail->next = j;
        else
            ap->head = j;
        ap->tail = j;
        ap->queued++;
        pthread_cond_signal(&ap->cond);
    }
    pthread_mutex_unlock(&ap->lock);
    if (full) {
        free(it);
        j->ctx_free = NULL; /* refused: ctx stays the caller's */
        job_free(j);
        return -1;
    }
    /* Parked: the worker reads nothing more from it until the verdict. The
     * job may already be running; its verdict waits in the inbox, which
     * this thread reads only after this turn. */
    c->auth_id = id;
    c->auth_next = w->parked;
    w->parked = c;
    return 0;
}

void authpool_unpark(struct conn *c) {
    if (!c->auth_id)
        return;
    for (struct conn **pp = &c->w->parked; *pp; pp = &(*pp)->auth_next) {
        if (*pp == c) {
            *pp = c->auth_next;
            break;
        }
    }
    c->auth_next = NULL;
    c->auth_id = 0;
}

struct conn *authpool_verdict(struct worker *w, struct item *it) {
    struct conn *c = w->parked;
    while (c && c->auth_id != it->auth_id)
        c = c->auth_next;
    if (c) {
        authpool_unpark(c);
        c->auth_done = it->ok ? AUTH_DONE_OK : AUTH_DONE_BAD;
        if (it->abuf) { /* mosquitto_set_username in a plugin */
            free(c->username);
            c->username = (char *)it->abuf;
            it->abuf = NULL;
            c->username_from_tls = true; /* fixed: the CONNECT's second run keeps it */
        }
    }
    free(it->abuf);
    free(it);
    return c;
}
