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
#include "transport/tls.h"

struct tls_state {
    pthread_mutex_t lock; /* guards ctx[] against a reload swapping it */
    size_t n;             /* = number of configured listeners */
    struct tls_ctx **ctx; /* per listener; NULL for plain listeners */
    atomic_uint gen;      /* bumped by every reload that replaced a context */
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
    if (!any)
        return 0;
    struct tls_state *t = calloc(1, sizeof(*t));
    if (!t) {
        log_error("Error: out of memory.");
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->n = cfg->n_listeners;
    t->ctx = calloc(t->n, sizeof(*t->ctx));
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

void tls_reload(struct broker *b) {
    struct tls_state *t = b->tls;
    if (!t)
        return;
    const struct hato_config *cfg = b->cfg;
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!t->ctx[i])
            continue;
        char err[1024];
        struct tls_ctx *n = listener_ctx(cfg, l, err, sizeof(err));
        if (!n) {
            log_error("Error: TLS reload: %s; listener %d keeps its current certificates.", err,
                      l->port);
            failed++;
            continue;
        }
        pthread_mutex_lock(&t->lock);
        struct tls_ctx *old = t->ctx[i];
        t->ctx[i] = n;
        pthread_mutex_unlock(&t->lock);
        tls_ctx_unref(old); /* connections that use it hold their own reference */
        ok++;
    }
    log_notice("TLS certificates reloaded for %zu listener%s%s.", ok, ok == 1 ? "" : "s",
               failed ? " (some failed, see above)" : "");
    if (ok)
        atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
}

struct tls_ctx *broker_tls_ctx(struct broker *b, const struct hato_listener *l) {
    struct tls_state *t = b->tls;
    if (!t)
        return NULL;
    size_t li = (size_t)(l - b->cfg->listeners);
    if (li >= t->n)
        return NULL;
    pthread_mutex_lock(&t->lock);
    struct tls_ctx *ctx = t->ctx[li];
    if (ctx)
        tls_ctx_ref(ctx);
    pthread_mutex_unlock(&t->lock);
    return ctx;
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
        struct tls_ctx *now = broker_tls_ctx(w->b, c->ls->cfg);
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
