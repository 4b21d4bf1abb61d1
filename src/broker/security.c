/*
 * Security: password files, ACLs, reload and login slowdown (security.h).
 */
#include "broker/security.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "base/log.h"
#include "base/strmap.h"
#include "broker/authpool.h"
#include "broker/broker.h"
#include "broker/plugin.h"
#include "broker/reload.h"

#define FAIL_FORGET_MS (10 * 60 * 1000) /* an address's failures are forgotten after this */
#define FAIL_MAX_ADDRS 65536            /* addresses tracked at once */

struct fail_entry {
    char *addr;
    unsigned count;
    int64_t last;  /* monotonic ms of the last failure */
    int64_t until; /* its refusal is due then: logins meanwhile are not verified */
};

struct security {
    pthread_mutex_t lock; /* current, fails */
    struct sec_snap *current;
    atomic_uint gen;
    struct strmap fails; /* address -> struct fail_entry */
    int64_t last_prune;
    struct strmap inflight; /* address -> struct inflight, checks in the pool */
};

struct inflight {
    unsigned n;
    char addr[]; /* the key */
};

/* A pool job's hold (authpool.h): the snapshot it reads, the address it counts for. */
struct job_hold {
    struct security *sec;
    struct sec_snap *snap;
    char addr[64];
};

static void addr_of(const char *peer, char *out, size_t cap);

/* ---- snapshots ----------------------------------------------------------------- */

static void scope_free(struct sec_scope *sc) {
    auth_passwd_free(sc->pw);
    auth_acl_free(sc->acl);
    sc->pw = NULL;
    sc->acl = NULL;
}

static void snap_unref(struct sec_snap *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    scope_free(&s->global);
    for (size_t i = 0; i < s->n; i++)
        scope_free(&s->per[i]);
    free(s->per);
    free(s);
}

/* One more check in flight from addr (false: out of memory). The count is
 * what security_fail_pending looks at: an address with failed logins gets
 * one check at a time, so parallel connections do not multiply its guesses.
 * Addresses without failures are not limited (many clients may share one,
 * behind NAT or a load balancer); the pool's queue bounds them all. */
static bool inflight_take(struct security *sec, const char *addr) {
    size_t len = strlen(addr);
    bool ok = true;
    pthread_mutex_lock(&sec->lock);
    struct inflight *e = strmap_get(&sec->inflight, addr, len);
    if (!e) {
        e = calloc(1, sizeof(*e) + len + 1);
        if (e) {
            memcpy(e->addr, addr, len + 1);
            if (strmap_put(&sec->inflight, e->addr, len, e) < 0) {
                free(e);
                e = NULL;
            }
        }
        ok = e != NULL;
    }
    if (ok)
        e->n++;
    pthread_mutex_unlock(&sec->lock);
    return ok;
}

/* Checks in flight from addr; sec->lock held. */
static unsigned inflight_count(struct security *sec, const char *addr) {
    const struct inflight *e =
        sec->inflight.count ? strmap_get(&sec->inflight, addr, strlen(addr)) : NULL;
    return e ? e->n : 0;
}

/* authpool.h: the job is done with the snapshot and its address's count. */
static void job_release(void *hold) {
    struct job_hold *h = hold;
    size_t len = strlen(h->addr);
    pthread_mutex_lock(&h->sec->lock);
    struct inflight *e = strmap_get(&h->sec->inflight, h->addr, len);
    if (e && --e->n == 0) {
        strmap_del(&h->sec->inflight, h->addr, len);
        free(e);
    }
    pthread_mutex_unlock(&h->sec->lock);
    snap_unref(h->snap);
    free(h);
}

static int scope_load(struct sec_scope *sc, const char *pwfile, const char *aclfile) {
    char err[512];
    if (pwfile) {
        sc->pw = auth_passwd_load(pwfile, err, sizeof(err));
        if (!sc->pw) {
            log_error("Error: %s", err);
            return -1;
        }
        bool error;
        const char *t;
        for (size_t i = 0; (t = auth_passwd_problem(sc->pw, i, &error)) != NULL; i++) {
            if (error)
                log_error("Error: %s", t);
            else
                log_warn("Warning: %s", t);
        }
        log_info("Password file %s: %zu user%s.", pwfile, auth_passwd_count(sc->pw),
                 auth_passwd_count(sc->pw) == 1 ? "" : "s");
    }
    if (aclfile) {
        sc->acl = auth_acl_load(aclfile, err, sizeof(err));
        if (!sc->acl) {
            log_error("Error: %s", err);
            return -1;
        }
        log_info("ACL file %s: %zu rule%s.", aclfile, auth_acl_rules(sc->acl),
                 auth_acl_rules(sc->acl) == 1 ? "" : "s");
        if (auth_acl_rules(sc->acl) == 0)
            log_warn("Warning: ACL file %s has no rules: every publish and subscribe is denied.",
                     aclfile);
    }
    return 0;
}

static struct sec_snap *snap_load(const struct hato_config *cfg) {
    struct sec_snap *s = calloc(1, sizeof(*s));
    if (!s) {
        log_error("Error: out of memory.");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    if (cfg->per_listener_settings) {
        s->n = cfg->n_listeners;
        s->per = calloc(s->n ? s->n : 1, sizeof(*s->per));
        if (!s->per) {
            free(s);
            log_error("Error: out of memory.");
            return NULL;
        }
        for (size_t i = 0; i < s->n; i++) {
            const struct hato_listener *l = &cfg->listeners[i];
            if (scope_load(&s->per[i], l->password_file, l->acl_file) < 0) {
                snap_unref(s);
                return NULL;
            }
            if (s->per[i].acl)
                s->any_acl = true;
        }
        if (plugin_wants_acl())
            s->any_acl = true;
    } else {
        if (scope_load(&s->global, cfg->password_file, cfg->acl_file) < 0) {
            snap_unref(s);
            return NULL;
        }
        s->any_acl = s->global.acl != NULL || plugin_wants_acl();
    }
    return s;
}

static const struct sec_scope *scope_of(const struct sec_snap *s, const struct hato_config *cfg,
                                        const struct hato_listener *l) {
    if (!s->per)
        return &s->global;
    if (!l)
        return NULL;
    (void)cfg; /* the snapshot's own: l may be from an older or newer config (reload) */
    size_t i = hato_listener_index(s->cfg, l);
    return i < s->n ? &s->per[i] : NULL;
}

int security_init(struct broker *b) {
    struct security *sec = calloc(1, sizeof(*sec));
    if (!sec)
        return -1;
    pthread_mutex_init(&sec->lock, NULL);
    strmap_init(&sec->fails);
    strmap_init(&sec->inflight);
    sec->current = snap_load(b->cfg);
    b->security = sec;
    if (!sec->current)
        return -1;
    atomic_init(&sec->gen, 1);
    return 0;
}

static void free_fail(void *ctx, void *val) {
    (void)ctx;
    struct fail_entry *e = val;
    free(e->addr);
    free(e);
}

static void free_inflight(void *ctx, void *val) {
    (void)ctx;
    free(val);
}

void security_free(struct broker *b) {
    struct security *sec = b->security;
    if (!sec)
        return;
    snap_unref(sec->current);
    strmap_each(&sec->fails, free_fail, NULL);
    strmap_free(&sec->fails);
    strmap_each(&sec->inflight, free_inflight, NULL);
    strmap_free(&sec->inflight);
    pthread_mutex_destroy(&sec->lock);
    free(sec);
    b->security = NULL;
}

void security_reload(struct broker *b) {
    struct security *sec = b->security;
    if (!sec)
        return;
    struct sec_snap *s = snap_load(b->cfg);
    if (!s) {
        log_error("Error: reload failed; keeping the previous password and ACL files.");
        return;
    }
    pthread_mutex_lock(&sec->lock);
    struct sec_snap *old = sec->current;
    sec->current = s;
    atomic_fetch_add(&sec->gen, 1);
    pthread_mutex_unlock(&sec->lock);
    snap_unref(old);
    log_notice("Reloaded password and ACL files.");
    for (int i = 0; i < b->nworkers; i++)
        ev_wake(b->workers[i].loop);
}

/* ---- workers ---------------------------------------------------------------------- */

/* After a reload: users no longer in their password file lose their connection. */
static void recheck_clients(struct worker *w) {
    const struct hato_config *cfg = w->b->cfg;
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != CS_CONNECTED || !c->username || c->username_from_tls)
            continue;
        const struct sec_scope *sc = scope_of(w->sec, cfg, c->lcfg);
        if (!sc || !sc->pw || auth_passwd_has_user(sc->pw, c->username, strlen(c->username)))
            continue;
        char u[128];
        const char *user = security_printable(c->username, u, sizeof(u));
        log_client(LOG_NOTICE, c->s ? c->s->client_id : NULL, user, c->si.peer,
                   "Client %s [%s] user '%s' is no longer in the password file: disconnecting.",
                   c->s ? c->s->client_id : "?", c->si.peer, user);
        proto_fail(c, MQTT_RC_NOT_AUTHORIZED, "user removed from the password file");
    }
}

unsigned security_generation(const struct broker *b) {
    return b->security ? atomic_load_explicit(&b->security->gen, memory_order_relaxed) : 0;
}

void security_worker_adopt(struct worker *w) {
    struct security *sec = w->b->security;
    if (!sec)
        return;
    unsigned gen = atomic_load_explicit(&sec->gen, memory_order_acquire);
    if (gen == w->sec_gen)
        return;
    pthread_mutex_lock(&sec->lock);
    struct sec_snap *s = sec->current;
    atomic_fetch_add(&s->refs, 1);
    gen = atomic_load(&sec->gen);
    pthread_mutex_unlock(&sec->lock);
    if (w->sec)
        w->sec_recheck = true; /* a reload, not the start-up snapshot */
    snap_unref(w->sec);
    w->sec = s;
    w->sec_gen = gen;
}

void security_worker_update(struct worker *w) {
    security_worker_adopt(w);
    if (w->sec_recheck) {
        w->sec_recheck = false;
        recheck_clients(w);
    }
}

void security_worker_release(struct worker *w) {
    snap_unref(w->sec);
    w->sec = NULL;
}

/* ---- checks -------------------------------------------------------------------- */

/* Plugins check passwords (plugin.h): on the pool like the password file,
 * which comes after the plugins when all of them defer. */
static enum sec_auth plugin_authenticate(struct conn *c, const struct mqtt_packet *p,
                                         const struct sec_scope *sc, bool anonymous_ok) {
    struct worker *w = c->w;
    uint8_t done = c->auth_done;
    c->auth_done = AUTH_DONE_NONE;
    if (done != AUTH_DONE_NONE && c->auth_gen == w->sec_gen)
        return done == AUTH_DONE_OK ? SEC_AUTH_OK
               : c->username        ? SEC_AUTH_BAD_CREDENTIALS
                                    : SEC_AUTH_NOT_AUTHORISED;
    const char *id = c->assigned_id ? c->assigned_id : (const char *)p->connect.client_id.p;
    size_t idlen = c->assigned_id ? strlen(c->assigned_id) : p->connect.client_id.len;
    struct plugin_auth *pa =
        plugin_auth_new(c, id, idlen, p->connect.has_password, sc ? sc->pw : NULL, anonymous_ok);
    struct job_hold *h = pa ? calloc(1, sizeof(*h)) : NULL;
    if (!h) {
        plugin_auth_free(pa);
        return SEC_AUTH_BUSY;
    }
    h->sec = w->b->security;
    addr_of(c->si.peer, h->addr, sizeof(h->addr));
    if (!inflight_take(h->sec, h->addr)) {
        plugin_auth_free(pa);
        free(h);
        return SEC_AUTH_BUSY;
    }
    h->snap = w->sec;
    if (h->snap)
        atomic_fetch_add(&h->snap->refs, 1);
    if (authpool_submit_check(c, plugin_auth_run, pa, plugin_auth_free, c->username,
                              c->username ? strlen(c->username) : 0,
                              p->connect.has_password ? (const char *)p->connect.password.p : NULL,
                              p->connect.password.len, job_release, h) < 0) {
        plugin_auth_free(pa);
        job_release(h);
        return SEC_AUTH_BUSY;
    }
    c->auth_gen = w->sec_gen;
    return SEC_AUTH_PENDING;
}

enum sec_auth security_authenticate(struct conn *c, const struct mqtt_packet *p) {
    struct worker *w = c->w;
    security_worker_adopt(w);
    const struct hato_listener *l = c->lcfg;
    bool anonymous_ok = l->allow_anonymous > 0;
    if (c->username_from_tls)
        return SEC_AUTH_OK; /* the certificate (or PSK identity) is the credential */
    const struct sec_scope *sc = w->sec ? scope_of(w->sec, w->b->cfg, l) : NULL;
    if (plugin_wants_basic_auth(l))
        return plugin_authenticate(c, p, sc, anonymous_ok);
    if (c->username && sc && sc->pw) {
        /* Known or not, a password is verified (against a dummy hash for
         * an unknown user): the time taken tells nothing. The difference
         * is for the log only. */
        size_t ulen = strlen(c->username);
        bool known = auth_passwd_has_user(sc->pw, c->username, ulen);
        if (!p->connect.has_password)
            return known ? SEC_AUTH_NO_PASSWORD : SEC_AUTH_UNKNOWN_USER;
        /* The verdict of the pool, when it was reached with the files in use
         * now (a reload meanwhile: checked again). */
        uint8_t done = c->auth_done;
        c->auth_done = AUTH_DONE_NONE;
        if (done != AUTH_DONE_NONE && c->auth_gen == w->sec_gen)
            return done == AUTH_DONE_OK ? SEC_AUTH_OK
                   : known              ? SEC_AUTH_BAD_CREDENTIALS
                                        : SEC_AUTH_UNKNOWN_USER;
        /* Known and unknown users alike go to the pool (an unknown one is
         * checked against a dummy hash there): the answer takes as long. */
        struct job_hold *h = calloc(1, sizeof(*h));
        if (!h)
            return SEC_AUTH_BUSY;
        h->sec = w->b->security;
        addr_of(c->si.peer, h->addr, sizeof(h->addr));
        if (!inflight_take(h->sec, h->addr)) {
            free(h);
            return SEC_AUTH_BUSY;
        }
        h->snap = w->sec;
        atomic_fetch_add(&h->snap->refs, 1);
        if (authpool_submit(c, sc->pw, c->username, ulen, (const char *)p->connect.password.p,
                            p->connect.password.len, job_release, h) < 0) {
            job_release(h);
            return SEC_AUTH_BUSY;
        }
        c->auth_gen = w->sec_gen;
        return SEC_AUTH_PENDING;
    }
    /* No user name, or no password file to check it against (Mosquitto:
     * the name is then taken as given only where anonymous clients are). */
    return anonymous_ok ? SEC_AUTH_OK : SEC_AUTH_NOT_AUTHORISED;
}

bool security_check_password(struct worker *w, const struct hato_listener *l, const char *user,
                             size_t ulen, const char *password, size_t plen) {
    security_worker_adopt(w);
    const struct sec_scope *sc = w->sec ? scope_of(w->sec, w->b->cfg, l) : NULL;
    return sc && sc->pw && auth_passwd_check(sc->pw, user, ulen, password, plen);
}

const char *security_auth_reason(enum sec_auth r) {
    switch (r) {
    case SEC_AUTH_BAD_CREDENTIALS:
        return "wrong password";
    case SEC_AUTH_UNKNOWN_USER:
        return "unknown user";
    case SEC_AUTH_NO_PASSWORD:
        return "no password given";
    case SEC_AUTH_NOT_AUTHORISED:
        return "anonymous clients not allowed";
    case SEC_AUTH_BUSY:
        return "too many password checks waiting";
    case SEC_AUTH_OK:
    case SEC_AUTH_PENDING:
        break;
    }
    return NULL;
}

bool security_acl(struct worker *w, const struct hato_listener *l, const char *user,
                  const char *client_id, const char *topic, size_t tlen, int access) {
    if (!w->sec || !w->sec->any_acl)
        return true;
    /* Plugins first; the acl_file answers when every plugin deferred or
     * ignored (Mosquitto 2.0 runs it as the last check). */
    enum plugin_verdict pv = PLUGIN_NONE;
    if (plugin_wants_acl()) {
        char *t = strndup(topic, tlen);
        if (!t)
            return false;
        pv = plugin_acl_check(l, user, client_id, t, NULL, 0, 0, false, access);
        free(t);
        if (pv == PLUGIN_ALLOW || pv == PLUGIN_DENY)
            return pv == PLUGIN_ALLOW;
    }
    const struct sec_scope *sc = scope_of(w->sec, w->b->cfg, l);
    if (!sc)
        return false;
    if (!sc->acl)
        return pv != PLUGIN_DEFER; /* no acl_file here: deferred by every plugin is a refusal */
    return auth_acl_check(sc->acl, user, client_id, topic, tlen, access);
}

bool security_retain_source_ok(struct worker *w, const struct msg *m) {
    if (!m->src || !security_acl_active(w))
        return true;
    return security_acl(w, m->src->lcfg, m->src->user, m->src->id, m->topic, m->topic_len,
                        AUTH_ACL_WRITE);
}

/* ---- login failures --------------------------------------------------------------- */

static void addr_of(const char *peer, char *out, size_t cap) {
    size_t n = strlen(peer);
    if (peer[0] == '[') {
        const char *e = strchr(peer, ']');
        n = e ? (size_t)(e - peer) + 1 : n;
    } else {
        const char *colon = strrchr(peer, ':');
        if (colon && strchr(peer, ':') == colon)
            n = (size_t)(colon - peer);
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, peer, n);
    out[n] = 0;
}

struct prune_ctx {
    struct strmap *m;
    int64_t now;
    struct fail_entry **old;
    size_t nold, cap;
};

static void collect_old(void *ctx, void *val) {
    struct prune_ctx *p = ctx;
    struct fail_entry *e = val;
    if (p->now - e->last >= FAIL_FORGET_MS && p->nold < p->cap)
        p->old[p->nold++] = e;
}

static void prune(struct security *sec, int64_t now) {
    struct prune_ctx p = {&sec->fails, now, NULL, 0, sec->fails.count};
    if (!p.cap)
        return;
    p.old = malloc(p.cap * sizeof(*p.old));
    if (!p.old)
        return;
    strmap_each(&sec->fails, collect_old, &p);
    for (size_t i = 0; i < p.nold; i++) {
        strmap_del(&sec->fails, p.old[i]->addr, strlen(p.old[i]->addr));
        free_fail(NULL, p.old[i]);
    }
    free(p.old);
}

int64_t security_fail_delay(struct broker *b, const char *peer) {
    struct security *sec = b->security;
    int base = b->cfg->auth_fail_delay, max = b->cfg->auth_fail_delay_max;
    if (!sec || base <= 0)
        return 0;
    char addr[64];
    addr_of(peer, addr, sizeof(addr));
    int64_t now = ev_clock_ms();
    unsigned count = 1;
    pthread_mutex_lock(&sec->lock);
    if (now - sec->last_prune >= 60000 || sec->fails.count >= FAIL_MAX_ADDRS) {
        prune(sec, now);
        sec->last_prune = now;
    }
    struct fail_entry *e = strmap_get(&sec->fails, addr, strlen(addr));
    if (e && now - e->last >= FAIL_FORGET_MS)
        e->count = 0;
    if (!e && sec->fails.count < FAIL_MAX_ADDRS) {
        e = calloc(1, sizeof(*e));
        if (e && (!(e->addr = strdup(addr)) ||
                  strmap_put(&sec->fails, e->addr, strlen(e->addr), e) < 0)) {
            free(e->addr);
            free(e);
            e = NULL;
        }
    }
    if (e) {
        e->count++;
        e->last = now;
        count = e->count;
    }
    int64_t d = base;
    for (unsigned i = 1; i < count && d < max; i++)
        d *= 2;
    if (max > 0 && d > max)
        d = max;
    if (e)
        e->until = now + d;
    pthread_mutex_unlock(&sec->lock);
    return d;
}

bool security_fail_pending(struct broker *b, const char *peer) {
    struct security *sec = b->security;
    if (!sec || b->cfg->auth_fail_delay <= 0)
        return false;
    char addr[64];
    addr_of(peer, addr, sizeof(addr));
    int64_t now = ev_clock_ms();
    pthread_mutex_lock(&sec->lock);
    const struct fail_entry *e =
        sec->fails.count ? strmap_get(&sec->fails, addr, strlen(addr)) : NULL;
    /* Refusal due later, or failures and a check of this address still running. */
    bool pending = e && (now < e->until || (e->count > 0 && now - e->last < FAIL_FORGET_MS &&
                                            inflight_count(sec, addr) > 0));
    pthread_mutex_unlock(&sec->lock);
    return pending;
}

const char *security_printable(const char *s, char *buf, size_t cap) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return buf;
}
