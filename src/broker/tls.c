/*
 * The broker's TLS listeners on the transport's TLS layer. See tls.h.
 */
#include "broker/tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/broker.h"
#include "broker/reload.h"
#include "transport/tls.h"

struct tls_state {
    pthread_mutex_t lock;          /* guards cfg, n, ctx against a reload swapping them */
    const struct hato_config *cfg; /* the config ctx[] is indexed by (listeners) */
    size_t n;                      /* = its number of listeners */
    struct tls_ctx **ctx;          /* per listener; NULL for plain listeners */
    atomic_uint gen;               /* bumped by every reload that replaced a context */
    atomic_bool any;               /* some listener has a context */
};

static const char *psk_file_of(const struct hato_config *cfg, const struct hato_listener *l) {
    return cfg->per_listener_settings ? l->psk_file : cfg->psk_file;
}

/* A listener's context, or NULL with "FILE:LINE: listener PORT: why" in err. */
static struct tls_ctx *listener_ctx(const struct hato_config *cfg, const struct hato_listener *l,
                                    char *err, size_t errlen) {
    int n = snprintf(err, errlen, "%s:%d: listener %d: ", l->file, l->line, l->port);
    if (n < 0 || (size_t)n >= errlen)
        n = 0;
    if (l->tls_engine || (l->tls_keyform && strcmp(l->tls_keyform, "pem") != 0)) {
        snprintf(err + n, errlen - (size_t)n, "tls_engine / tls_keyform engine are not supported");
        return NULL;
    }
    bool identity = l->use_identity_as_username || l->use_subject_as_username;
    if (l->certfile && (l->require_certificate || identity) && !l->cafile && !l->capath) {
        snprintf(err + n, errlen - (size_t)n,
                 "%s needs cafile or capath to verify client certificates",
                 l->require_certificate ? "require_certificate" : "use_identity_as_username");
        return NULL;
    }
    struct tls_server_opts o = {
        .certfile = l->certfile,
        .keyfile = l->keyfile,
        .cafile = l->cafile,
        .capath = l->capath,
        .crlfile = l->crlfile,
        .dhparamfile = l->dhparamfile,
        .tls_version = l->tls_version,
        .ciphers = l->ciphers,
        .ciphers_tls13 = l->ciphers_tls13,
        .psk_hint = l->psk_hint,
        .psk_file = l->psk_hint ? psk_file_of(cfg, l) : NULL,
        .require_certificate = l->require_certificate,
        .identity = l->use_identity_as_username  ? TLS_ID_CN
                    : l->use_subject_as_username ? TLS_ID_SUBJECT
                                                 : TLS_ID_NONE,
        .no_date_checks = l->disable_client_cert_date_checks,
    };
    return tls_server_ctx_new(&o, err + n, errlen - (size_t)n);
}

int tls_check_config(const struct hato_config *cfg) {
    int rc = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!hato_listener_wants_tls(l))
            continue;
        char err[1024];
        struct tls_ctx *ctx = listener_ctx(cfg, l, err, sizeof(err));
        if (!ctx) {
            log_error("Error: %s", err);
            rc = -1;
        }
        tls_ctx_unref(ctx);
    }
    return rc;
}

int tls_init(struct broker *b) {
    const struct hato_config *cfg = b->cfg;
    bool any = false;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        any |= hato_listener_wants_tls(&cfg->listeners[i]);
    /* Always there: a reload may add the first TLS listener. */
    struct tls_state *t = calloc(1, sizeof(*t));
    if (!t) {
        log_error("Error: out of memory.");
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->cfg = cfg;
    t->n = cfg->n_listeners;
    t->ctx = calloc(t->n ? t->n : 1, sizeof(*t->ctx));
    atomic_init(&t->any, any);
    b->tls = t;
    if (!t->ctx) {
        log_error("Error: out of memory.");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!hato_listener_wants_tls(l))
            continue;
        char err[1024];
        t->ctx[i] = listener_ctx(cfg, l, err, sizeof(err));
        if (!t->ctx[i]) {
            log_error("Error: %s", err);
            return -1;
        }
        log_info("TLS on listener %s:%d: %s%s%s.", l->file, l->line,
                 l->psk_hint ? "PSK" : "certificate",
                 l->require_certificate ? ", client certificate required" : "",
                 l->use_identity_as_username  ? ", identity as user name"
                 : l->use_subject_as_username ? ", subject as user name"
                                              : "");
    }
    return 0;
}

/* A reference on the context of the listener of t->cfg that is l (or the same
 * listener in another config), or NULL. */
static struct tls_ctx *ctx_of(struct tls_state *t, const struct hato_listener *l) {
    pthread_mutex_lock(&t->lock);
    size_t li = hato_listener_index(t->cfg, l);
    struct tls_ctx *ctx = li < t->n ? t->ctx[li] : NULL;
    if (ctx)
        tls_ctx_ref(ctx);
    pthread_mutex_unlock(&t->lock);
    return ctx;
}

int tls_reload(struct broker *b, const struct hato_config *cfg) {
    struct tls_state *t = b->tls;
    if (!t)
        return 0;
    size_t n = cfg->n_listeners;
    struct tls_ctx **ctx = calloc(n ? n : 1, sizeof(*ctx));
    if (!ctx) {
        log_error("Error: TLS reload: out of memory.");
        return -1;
    }
    size_t ok = 0, failed = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!hato_listener_wants_tls(l))
            continue;
        any = true;
        char err[1024];
        ctx[i] = listener_ctx(cfg, l, err, sizeof(err));
        if (ctx[i]) {
            ok++;
            continue;
        }
        /* A listener that runs keeps what it has; a new one cannot start. */
        ctx[i] = ctx_of(t, l);
        if (!ctx[i]) {
            log_error("Error: %s", err);
            for (size_t k = 0; k < i; k++)
                tls_ctx_unref(ctx[k]);
            free(ctx);
            return -1;
        }
        log_error("Error: TLS reload: %s; listener %d keeps its current certificates.", err,
                  l->port);
        failed++;
    }
    pthread_mutex_lock(&t->lock);
    struct tls_ctx **old = t->ctx;
    size_t nold = t->n;
    t->ctx = ctx;
    t->n = n;
    t->cfg = cfg;
    atomic_store(&t->any, any);
    pthread_mutex_unlock(&t->lock);
    /* Connections that use them hold their own references. */
    for (size_t i = 0; i < nold; i++)
        tls_ctx_unref(old[i]);
    free(old);
    if (ok || failed)
        log_notice("TLS certificates reloaded for %zu listener%s%s.", ok, ok == 1 ? "" : "s",
                   failed ? " (some failed, see above)" : "");
    if (ok)
        atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
    return 0;
}

struct tls_ctx *broker_tls_ctx(struct broker *b, const struct hato_listener *l) {
    struct tls_state *t = b->tls;
    if (!t || !atomic_load_explicit(&t->any, memory_order_relaxed))
        return NULL;
    return ctx_of(t, l);
}

void tls_tick(struct worker *w) {
    struct tls_state *t = w->b->tls;
    if (!t)
        return;
    unsigned gen = atomic_load_explicit(&t->gen, memory_order_acquire);
    if (gen == w->tls_gen)
        return;
    w->tls_gen = gen;
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_CLOSING || !c->si.tls_done)
            continue;
        struct stream *tls = stream_find(c->st, &tls_stream_ops);
        if (!tls)
            continue;
        struct tls_ctx *now = broker_tls_ctx(w->b, c->lcfg);
        if (!now)
            continue;
        char buf[256];
        const char *why = tls_stream_recheck(tls, now, buf, sizeof(buf));
        tls_ctx_unref(now);
        if (!why)
            continue;
        /* A client that lost its access does not get its will published. */
        c->will_pending = false;
        proto_fail(c, MQTT_RC_NOT_AUTHORIZED, why); /* MQTT 5: DISCONNECT 0x87 first */
    }
}

void tls_free(struct broker *b) {
    struct tls_state *t = b->tls;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        tls_ctx_unref(t->ctx ? t->ctx[i] : NULL);
    free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
    b->tls = NULL;
}
