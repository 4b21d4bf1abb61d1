/*
 * SIGHUP: re-read the configuration and apply it live (reload.h).
 */
#include "broker/reload.h"
#include "broker/bridge.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/broker.h"
#include "broker/notify.h"
#include "broker/security.h"
#include "broker/plugin.h"
#include "broker/tls.h"

#define WORKER_WAIT_MS 2000 /* how long a reload waits for workers to drop a socket */

struct reload_state {
    char *path; /* configuration file, NULL = defaults only */
    bool verbose;
    void **keep; /* freed at exit */
    size_t nkeep;
    struct hato_config **cfgs; /* made by reloads (the current one too), freed at exit */
    size_t ncfgs;
    struct lsock **retired; /* sockets removed by reloads: closed, kept for their connections */
    size_t nretired;
    /* Removed sockets still open: closed once every worker adopted closing_gen. */
    struct lsock **closing;
    size_t nclosing;
    unsigned closing_gen;
    /* Listeners of the current config whose port a closing socket still holds:
     * opened after it is closed. */
    struct hato_listener **deferred;
    size_t ndeferred;
    /* The outcome of the last reload, for reload_outcome (any thread). */
    pthread_mutex_t out_lock;
    unsigned done; /* reloads finished */
    bool ok;
    char err[512];
};

static bool same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* ---- identity ------------------------------------------------------------------------ */

/* Everything of the identity but the port. */
static bool same_place(const struct hato_listener *a, const struct hato_listener *b) {
    return same_str(a->unix_path, b->unix_path) && same_str(a->bind_address, b->bind_address) &&
           same_str(a->bind_interface, b->bind_interface) && same_str(a->protocol, b->protocol) &&
           a->socket_domain == b->socket_domain;
}

bool hato_listener_same(const struct hato_listener *a, const struct hato_listener *b) {
    return a->port == b->port && same_place(a, b);
}

size_t hato_listener_index(const struct hato_config *cfg, const struct hato_listener *l) {
    if (!cfg || !l)
        return (size_t)-1;
    /* Compared as integers: l may point into another config's array. */
    uintptr_t p = (uintptr_t)l, lo = (uintptr_t)cfg->listeners;
    if (cfg->n_listeners && p >= lo && p < lo + cfg->n_listeners * sizeof(*l) &&
        (p - lo) % sizeof(*l) == 0)
        return (size_t)(p - lo) / sizeof(*l);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (hato_listener_same(&cfg->listeners[i], l))
            return i;
    return (size_t)-1;
}

/* ---- state ------------------------------------------------------------------------- */

static int push(void ***v, size_t *n, void *p) {
    void **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    nv[(*n)++] = p;
    *v = nv;
    return 0;
}

int reload_init(struct broker *b) {
    b->reload = calloc(1, sizeof(*b->reload));
    if (b->reload)
        pthread_mutex_init(&b->reload->out_lock, NULL);
    return b->reload ? 0 : -1;
}

/* A reload finished: its outcome for reload_outcome. */
static void record(struct broker *b, bool ok, const char *err) {
    struct reload_state *r = b->reload;
    pthread_mutex_lock(&r->out_lock);
    r->done++;
    r->ok = ok;
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
    pthread_mutex_unlock(&r->out_lock);
}

unsigned reload_request(struct broker *b) {
    struct reload_state *r = b->reload;
    pthread_mutex_lock(&r->out_lock);
    unsigned done = r->done;
    pthread_mutex_unlock(&r->out_lock);
    kill(getpid(), SIGHUP); /* the main thread's signal wait runs broker_reload */
    return done;
}

int reload_outcome(struct broker *b, unsigned since, char *err, size_t errlen) {
    struct reload_state *r = b->reload;
    pthread_mutex_lock(&r->out_lock);
    int rc = r->done == since ? 1 : r->ok ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s", r->err);
    pthread_mutex_unlock(&r->out_lock);
    return rc;
}

void broker_set_config_source(struct broker *b, const char *path, bool verbose) {
    struct reload_state *r = b->reload;
    free(r->path);
    /* Absolute: -d changes directory to / before any reload. */
    r->path = path ? realpath(path, NULL) : NULL;
    if (path && !r->path)
        r->path = strdup(path);
    r->verbose = verbose;
}

int reload_keep(struct broker *b, void *p) {
    struct reload_state *r = b->reload;
    return push(&r->keep, &r->nkeep, p);
}

void reload_free(struct broker *b) {
    struct reload_state *r = b->reload;
    if (!r)
        return;
    for (size_t i = 0; i < r->nclosing; i++)
        broker_free_lsock(r->closing[i]);
    free(r->closing);
    for (size_t i = 0; i < r->nretired; i++)
        broker_free_lsock(r->retired[i]);
    free(r->retired);
    free(r->deferred);
    for (size_t i = 0; i < r->nkeep; i++)
        free(r->keep[i]);
    free(r->keep);
    for (size_t i = 0; i < r->ncfgs; i++) {
        hato_config_free(r->cfgs[i]);
        free(r->cfgs[i]);
    }
    free(r->cfgs);
    free(r->path);
    free(r);
    b->reload = NULL;
}

/* ---- workers ------------------------------------------------------------------------ */

void worker_listen_sync(struct worker *w) {
    struct broker *b = w->b;
    unsigned gen = atomic_load_explicit(&b->ls_gen, memory_order_acquire);
    if (gen == atomic_load_explicit(&w->ls_seen, memory_order_relaxed))
        return;
    pthread_mutex_lock(&b->ls_lock);
    gen = atomic_load(&b->ls_gen);
    size_t n = b->nlsocks;
    struct lsock **v = malloc((n ? n : 1) * sizeof(*v));
    if (v && n)
        memcpy(v, b->lsocks, n * sizeof(*v));
    pthread_mutex_unlock(&b->ls_lock);
    if (!v)
        return; /* out of memory: again at the next tick */
    /* Stop watching what went, then watch what came (paused: at resume). */
    for (size_t i = 0; i < w->nwls; i++) {
        bool kept = false;
        for (size_t k = 0; k < n && !kept; k++)
            kept = v[k] == w->wls[i];
        if (kept)
            continue;
        struct ev_io *io = &w->wls[i]->ios[w->id];
        if (!w->accept_paused)
            ev_io_stop(w->loop, io);
        io->fd = -1; /* an event of this turn already fetched for it is ignored (on_accept) */
    }
    for (size_t k = 0; k < n; k++) {
        bool had = false;
        for (size_t i = 0; i < w->nwls && !had; i++)
            had = w->wls[i] == v[k];
        if (!had && !w->accept_paused && worker_listen(w, v[k]) < 0)
            log_error("Error: worker %d cannot watch a listening socket.", w->id);
    }
    free(w->wls);
    w->wls = v;
    w->nwls = n;
    atomic_store_explicit(&w->ls_seen, gen, memory_order_release);
}

/* Publish a new set of listening sockets (takes v) and wake the workers. */
static unsigned publish_lsocks(struct broker *b, struct lsock **v, size_t n) {
    pthread_mutex_lock(&b->ls_lock);
    struct lsock **old = b->lsocks;
    b->lsocks = v;
    b->nlsocks = n;
    unsigned gen = atomic_fetch_add(&b->ls_gen, 1) + 1;
    pthread_mutex_unlock(&b->ls_lock);
    free(old);
    for (int i = 0; i < b->nworkers; i++)
        ev_wake(b->workers[i].loop);
    return gen;
}

static bool workers_adopted(struct broker *b, unsigned gen) {
    for (int i = 0; i < b->nworkers; i++)
        if ((int)(atomic_load_explicit(&b->workers[i].ls_seen, memory_order_acquire) - gen) < 0)
            return false;
    return true;
}

/* Wait (bounded) until every worker adopted gen. */
static bool wait_workers(struct broker *b, unsigned gen) {
    int64_t until = ev_clock_ms() + WORKER_WAIT_MS;
    while (!workers_adopted(b, gen)) {
        if (ev_clock_ms() >= until)
            return false;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static bool path_in_use(const struct hato_config *cfg, const char *path) {
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (same_str(cfg->listeners[i].unix_path, path))
            return true;
    return false;
}

static void open_deferred(struct broker *b) {
    struct reload_state *r = b->reload;
    if (!r->ndeferred)
        return;
    const struct hato_config *cfg = broker_config(b);
    pthread_mutex_lock(&b->ls_lock);
    size_t n = b->nlsocks;
    struct lsock **v = malloc((n + 1) * sizeof(*v));
    if (v && n)
        memcpy(v, b->lsocks, n * sizeof(*v));
    pthread_mutex_unlock(&b->ls_lock);
    if (!v) {
        log_error("Error: out of memory opening listeners.");
        return;
    }
    for (size_t i = 0; i < r->ndeferred; i++) {
        struct hato_listener *l = r->deferred[i];
        if (broker_open_listener(b, cfg, l, &v, &n) < 0)
            log_error("Error: %s:%d: listener %d could not be opened after the reload (see "
                      "above); it stays closed until the next reload.",
                      l->file, l->line, l->port);
    }
    r->ndeferred = 0;
    publish_lsocks(b, v, n);
}

void reload_tick(struct broker *b) {
    struct reload_state *r = b->reload;
    if (!r || !r->nclosing || !workers_adopted(b, r->closing_gen))
        return;
    const struct hato_config *cfg = broker_config(b);
    for (size_t i = 0; i < r->nclosing; i++) {
        struct lsock *ls = r->closing[i];
        const struct hato_listener *l = atomic_load(&ls->cfg);
        close(ls->fd);
        ls->fd = -1;
        ls->retired = true;
        if (l->unix_path)
            log_notice("Closed unix listen socket on %s.", l->unix_path);
        else
            log_notice("Closed listen socket on port %d.", l->port);
        if (l->unix_path && !path_in_use(cfg, l->unix_path))
            unlink(l->unix_path);
        if (push((void ***)&r->retired, &r->nretired, ls) < 0)
            log_error("Error: out of memory (a closed listener is leaked).");
    }
    r->nclosing = 0;
    open_deferred(b);
}

/* ---- directives that need a restart ---------------------------------------------------- */

/* The rows of the directive table marked restart keep their running value
 * (hato_config_keep_restart); each change is logged here. */
static void restart_needed(const char *name, const char *running, void *arg) {
    (void)arg;
    log_warn("Warning: %s changed: needs a restart (keeping '%s').", name, running);
}

/* Plugins are loaded once, at start-up (as in Mosquitto): a change to the
 * plugin lines or their options is logged and the loaded plugins stay. */
static bool plugin_conf_same(const struct hato_plugin_conf *a, const struct hato_plugin_conf *b) {
    if (strcmp(a->path, b->path) != 0 || a->n_opts != b->n_opts ||
        a->deny_special_chars != b->deny_special_chars || (a->lfile == NULL) != (b->lfile == NULL))
        return false;
    for (size_t i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].key, b->opts[i].key) != 0 ||
            strcmp(a->opts[i].value, b->opts[i].value) != 0)
            return false;
    return true;
}

static void plugins_unchanged(const struct hato_config *n, const struct hato_config *old) {
    bool same = n->n_plugins == old->n_plugins;
    for (size_t i = 0; same && i < n->n_plugins; i++)
        same = plugin_conf_same(&n->plugins[i], &old->plugins[i]);
    if (!same)
        log_warn("Warning: plugin lines changed: needs a restart (keeping the %zu loaded "
                 "plugin%s).",
                 old->n_plugins, old->n_plugins == 1 ? "" : "s");
}

/* ---- the reload ---------------------------------------------------------------------- */

/* The socket of the running set that serves listener l of the new config. */
static bool served(struct broker *b, const struct hato_listener *l) {
    for (size_t i = 0; i < b->nlsocks; i++)
        if (hato_listener_same(atomic_load(&b->lsocks[i]->cfg), l))
            return true;
    return false;
}

/* A new listener that needs the port (or path) of a socket being removed. */
static bool conflicts(const struct hato_listener *l, struct lsock *const *gone, size_t ngone) {
    for (size_t i = 0; i < ngone; i++) {
        const struct hato_listener *o = atomic_load(&gone[i]->cfg);
        if (l->unix_path ? same_str(l->unix_path, o->unix_path)
                         : (!o->unix_path && l->port != 0 && l->port == o->port))
            return true;
    }
    return false;
}

static void fail(struct broker *b, struct hato_config *n, const char *what) {
    log_error("Error: reload failed: %s; keeping the running configuration.", what);
    record(b, false, what);
    hato_config_free(n);
    free(n);
    notify_ready_after_reload(NULL);
}

void broker_reload(struct broker *b) {
    struct reload_state *r = b->reload;
    notify_reloading();
    log_notice("Reloading config (SIGHUP)%s%s.", r->path ? " from " : "", r->path ? r->path : "");
    /* A previous reload still closing sockets (a slow worker) finishes first. */
    if (r->nclosing && wait_workers(b, r->closing_gen))
        reload_tick(b);
    struct hato_config *n = calloc(1, sizeof(*n));
    if (!n) {
        log_error("Error: reload failed: out of memory.");
        record(b, false, "out of memory");
        notify_ready_after_reload(NULL);
        return;
    }
    if (r->nclosing) {
        hato_config_init(n);
        fail(b, n, "a worker has not yet released the listeners of the previous reload");
        return;
    }
    const struct hato_config *old = broker_config(b);
    char err[512];
    hato_config_init(n);
    if (r->path && hato_config_load(n, r->path, err, sizeof(err)) < 0) {
        fail(b, n, err);
        return;
    }
    if (old->cmd_port >= 0)
        hato_config_set_port(n, old->cmd_port);
    if (hato_config_finish(n, err, sizeof(err)) < 0) {
        fail(b, n, err);
        return;
    }
    for (size_t i = 0; i < n->n_warnings; i++)
        log_warn("Warning: %s", n->warnings[i]);
    plugins_unchanged(n, old);
    if (hato_config_keep_restart(n, old, restart_needed, NULL) < 0) {
        fail(b, n, "out of memory");
        return;
    }

    /* An ephemeral port (-p 0, listener 0) stays the one bound. */
    for (size_t i = 0; i < n->n_listeners; i++) {
        struct hato_listener *l = &n->listeners[i];
        for (size_t k = 0; l->port == 0 && !l->unix_path && k < b->nlsocks; k++) {
            const struct hato_listener *o = atomic_load(&b->lsocks[k]->cfg);
            if (b->lsocks[k]->conf_port == 0 && same_place(o, l))
                l->port = o->port;
        }
    }

    /* Which running sockets stay (and for which new listener), which go. */
    size_t nrun = b->nlsocks;
    struct lsock **keep = calloc(nrun + 1, sizeof(*keep)), **gone = calloc(nrun + 1, sizeof(*gone));
    const struct hato_listener **to = calloc(nrun + 1, sizeof(*to));
    struct hato_listener **deferred = calloc(n->n_listeners + 1, sizeof(*deferred));
    size_t nkeep = 0, ngone = 0, ndeferred = 0, nadded = 0;
    struct lsock **added = NULL;
    if (!keep || !gone || !to || !deferred)
        goto oom;
    for (size_t i = 0; i < nrun; i++) {
        struct lsock *ls = b->lsocks[i];
        size_t li = hato_listener_index(n, atomic_load(&ls->cfg));
        if (li == (size_t)-1) {
            gone[ngone++] = ls;
        } else {
            to[nkeep] = &n->listeners[li];
            keep[nkeep++] = ls;
        }
    }
    /* New listeners open before anything is applied: a port that cannot be
     * bound fails the reload. One that needs a removed socket's port waits
     * for that socket to close. */
    for (size_t i = 0; i < n->n_listeners; i++) {
        struct hato_listener *l = &n->listeners[i];
        if (served(b, l))
            continue;
        if (conflicts(l, gone, ngone)) {
            deferred[ndeferred++] = l;
            continue;
        }
        if (broker_open_listener(b, n, l, &added, &nadded) < 0) {
            snprintf(err, sizeof(err), "%s:%d: listener %d cannot be opened (see above)", l->file,
                     l->line, l->port);
            goto undo;
        }
    }
    /* TLS contexts of the new config (a new TLS listener whose files fail fails the reload). */
    if (tls_reload(b, n) < 0) {
        snprintf(err, sizeof(err), "TLS settings of a new listener (see above)");
        goto undo;
    }
    /* WebSocket settings of the listeners that stay (built before anything changes). */
    struct ws_server_opts **ws = calloc(nkeep + 1, sizeof(*ws));
    if (!ws)
        goto oom_tls;
    for (size_t i = 0; i < nkeep; i++)
        if (i && to[i] == to[i - 1])
            ws[i] = ws[i - 1];
        else if (atomic_load(&keep[i]->ws) && !(ws[i] = broker_ws_opts(b, n, to[i]))) {
            free(ws);
            goto oom_tls;
        }
    if (push((void ***)&r->cfgs, &r->ncfgs, n) < 0) {
        free(ws);
        goto oom_tls;
    }

    /* Apply: from here on nothing fails back. */
    for (size_t i = 0; i < nkeep; i++) {
        atomic_store(&keep[i]->cfg, to[i]);
        if (ws[i])
            atomic_store(&keep[i]->ws, ws[i]);
    }
    free(ws);
    atomic_store_explicit(&b->cfg, n, memory_order_release);
    hato_config_apply_logging(n);
    if (r->verbose)
        log_set_mask(LOG_ALL);
    struct lsock **set = realloc(keep, (nkeep + nadded + 1) * sizeof(*set));
    if (!set) {
        set = keep; /* the new ones cannot be listed: close them */
        for (size_t i = 0; i < nadded; i++)
            broker_free_lsock(added[i]);
        log_error("Error: out of memory: new listeners not opened.");
        nadded = 0;
    }
    keep = NULL;
    if (nadded)
        memcpy(set + nkeep, added, nadded * sizeof(*set));
    unsigned gen = publish_lsocks(b, set, nkeep + nadded);
    free(added);
    free(to);
    /* The sockets that go close once no worker watches them. */
    free(r->closing); /* empty: a reload starts only when the previous one closed its sockets */
    r->closing = gone;
    r->nclosing = ngone;
    gone = NULL;
    r->closing_gen = gen;
    free(r->deferred);
    r->deferred = deferred;
    r->ndeferred = ndeferred;
    if (!ngone)
        open_deferred(b);
    else if (wait_workers(b, gen))
        reload_tick(b);
    else
        log_warn("Warning: a worker is slow to release the removed listeners; they close when "
                 "it does.");
    security_reload(b);
    plugin_reload(b);
    bridge_reload(b, n); /* new, removed and changed bridges; unchanged ones keep running */
    log_notice("Reloaded config: %zu listener%s (%zu socket%s opened, %zu closed).", n->n_listeners,
               n->n_listeners == 1 ? "" : "s", nadded, nadded == 1 ? "" : "s", ngone);
    notify_ready_after_reload(b);
    record(b, true, NULL);
    return;

oom_tls:
    /* The TLS table points into n now: rebuild it from the running config. */
    tls_reload(b, old);
    snprintf(err, sizeof(err), "out of memory");
undo:
    for (size_t i = 0; i < nadded; i++)
        broker_free_lsock(added[i]);
    free(added);
    free(keep);
    free(gone);
    free(to);
    free(deferred);
    fail(b, n, err);
    return;
oom:
    snprintf(err, sizeof(err), "out of memory");
    goto undo;
}
