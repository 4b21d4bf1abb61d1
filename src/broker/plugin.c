/*
 * The plugin host: loading Mosquitto plugins and running their events at
 * the points Mosquitto 2.0 does (plugin.h, docs/internals/plugin.md).
 */
#include "broker/plugin.h"

#include <string.h>

#include "broker/broker.h"

#if !HATO_WITH_PLUGINS

/* Built without plugins: the config refuses every plugin line (features.c). */
int plugin_host_start(struct broker *b) {
    (void)b;
    return 0;
}
void plugin_host_stop(struct broker *b) {
    (void)b;
}
bool plugin_wants_acl(void) {
    return false;
}
bool plugin_wants_basic_auth(const struct hato_listener *l) {
    (void)l;
    return false;
}
enum plugin_verdict plugin_acl_check(const struct hato_listener *l, const char *user,
                                     const char *client_id, const char *topic, const void *payload,
                                     uint32_t payloadlen, int qos, bool retain, int access) {
    (void)l, (void)user, (void)client_id, (void)topic, (void)payload, (void)payloadlen, (void)qos,
        (void)retain, (void)access;
    return PLUGIN_NONE;
}
bool plugin_unsubscribe_denied(const struct hato_listener *l, const char *user,
                               const char *client_id, const char *filter) {
    (void)l, (void)user, (void)client_id, (void)filter;
    return false;
}
struct plugin_auth *plugin_auth_new(struct conn *c, const char *client_id, size_t idlen,
                                    bool has_password, const struct auth_passwd *pw,
                                    bool anonymous_ok) {
    (void)c, (void)client_id, (void)idlen, (void)has_password, (void)pw, (void)anonymous_ok;
    return NULL;
}
bool plugin_auth_run(void *auth, const char *user, size_t ulen, const char *password, size_t plen,
                     char **new_username) {
    (void)auth, (void)user, (void)ulen, (void)password, (void)plen, (void)new_username;
    return false;
}
void plugin_auth_free(void *auth) {
    (void)auth;
}
bool plugin_is_control_topic(const char *topic, size_t len) {
    return len >= 9 && memcmp(topic, "$CONTROL/", 9) == 0;
}
void plugin_control(struct conn *c, const struct msg *m) {
    (void)c, (void)m;
}
bool plugin_message_ok(struct conn *c, struct msg **m) {
    (void)c, (void)m;
    return true;
}
void plugin_reload(struct broker *b) {
    (void)b;
}
void plugin_tick(struct worker *w) {
    (void)w;
}
void plugin_disconnect(struct conn *c, const char *why) {
    (void)c, (void)why;
}
void plugin_worker_wake(struct worker *w) {
    (void)w;
}

#else

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/passwd.h"
#include "base/log.h"
#include "broker/plugin_internal.h"

struct plugin_host *plugin_host;
pthread_mutex_t plugin_lock;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;

static void lock_init(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&plugin_lock, &a);
    pthread_mutexattr_destroy(&a);
}

/* v2 and v3 signatures (mosquitto_plugin.h has v4's). */
typedef int (*init_fn)(void **, struct mosquitto_opt *, int);
typedef int (*secinit_fn)(void *, struct mosquitto_opt *, int, bool);
typedef int (*acl_v2_fn)(void *, const char *, const char *, const char *, int);
typedef int (*acl_v3_fn)(void *, int, struct mosquitto *, const struct mosquitto_acl_msg *);
typedef int (*unpwd_v2_fn)(void *, const char *, const char *);
typedef int (*unpwd_v3_fn)(void *, struct mosquitto *, const char *, const char *);

bool plugin_applies(const struct plugin *p, const struct hato_listener *l) {
    if (!p->lfile)
        return true;
    return l && l->file == p->lfile && l->line == p->lline;
}

/* ---- loading ------------------------------------------------------------ */

static void plugin_free(struct plugin *p) {
    if (!p)
        return;
    for (int i = 0; i < p->nopts; i++) {
        free(p->opts[i].key);
        free(p->opts[i].value);
    }
    free(p->opts);
    free(p->path);
    free(p);
}

static int load_fail(const struct hato_plugin_conf *pc, struct plugin *p, const char *what,
                     const char *why) {
    log_error("Error: %s:%d: plugin '%s': %s%s%s.", pc->file, pc->line, pc->path, what,
              why ? ": " : "", why ? why : "");
    if (p && p->lib)
        dlclose(p->lib);
    plugin_free(p);
    return -1;
}

/* A required symbol, or NULL with the failure logged. */
static void *need(const struct hato_plugin_conf *pc, void *lib, const char *name) {
    dlerror();
    void *f = dlsym(lib, name);
    if (!f) {
        const char *e = dlerror();
        log_error("Error: %s:%d: plugin '%s': no function %s(): %s.", pc->file, pc->line, pc->path,
                  name, e ? e : "not found");
    }
    return f;
}

static int load_one(struct plugin_host *h, const struct hato_plugin_conf *pc) {
    struct plugin *p = calloc(1, sizeof(*p));
    if (!p)
        return load_fail(pc, NULL, "out of memory", NULL);
    p->conf = pc;
    p->lfile = pc->lfile;
    p->lline = pc->lline;
    p->deny_special_chars = pc->deny_special_chars;
    p->path = strdup(pc->path);
    p->opts = calloc(pc->n_opts ? pc->n_opts : 1, sizeof(*p->opts));
    if (!p->path || !p->opts)
        return load_fail(pc, p, "out of memory", NULL);
    for (size_t i = 0; i < pc->n_opts; i++) {
        p->opts[i].key = strdup(pc->opts[i].key);
        p->opts[i].value = strdup(pc->opts[i].value);
        p->nopts++;
        if (!p->opts[i].key || !p->opts[i].value)
            return load_fail(pc, p, "out of memory", NULL);
    }
    log_info("Loading plugin: %s", pc->path);
    p->lib = dlopen(pc->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->lib)
        return load_fail(pc, p, "cannot load it", dlerror());

    struct plugin **v = realloc(h->plugins, (h->n + 1) * sizeof(*v));
    if (!v)
        return load_fail(pc, p, "out of memory", NULL);
    h->plugins = v;

    dlerror();
    int (*version5)(int, const int *) =
        (int (*)(int, const int *))dlsym(p->lib, "mosquitto_plugin_version");
    int (*version4)(void) = (int (*)(void))dlsym(p->lib, "mosquitto_auth_plugin_version");
    if (version5) {
        static const int supported[] = {5};
        int ver = version5(1, supported);
        if (ver != 5) {
            char why[64];
            snprintf(why, sizeof(why), "it asks for version %d, hato offers 5", ver);
            return load_fail(pc, p, "unsupported plugin interface version", why);
        }
        p->version = 5;
        int (*init5)(mosquitto_plugin_id_t *, void **, struct mosquitto_opt *, int) =
            (int (*)(mosquitto_plugin_id_t *, void **, struct mosquitto_opt *, int))need(
                pc, p->lib, "mosquitto_plugin_init");
        p->cleanup5 = (int (*)(void *, struct mosquitto_opt *, int))need(
            pc, p->lib, "mosquitto_plugin_cleanup");
        if (!init5 || !p->cleanup5) {
            dlclose(p->lib);
            plugin_free(p);
            return -1;
        }
        h->plugins[h->n++] = p; /* callbacks registered by init name it */
        pthread_mutex_lock(&plugin_lock);
        int rc = init5(&p->id, &p->userdata, p->opts, p->nopts);
        pthread_mutex_unlock(&plugin_lock);
        if (rc != MOSQ_ERR_SUCCESS) {
            char why[64];
            snprintf(why, sizeof(why), "mosquitto_plugin_init returned %d", rc);
            log_error("Error: %s:%d: plugin '%s': initialisation failed: %s.", pc->file, pc->line,
                      pc->path, why);
            return -1; /* stays in the list: plugin_host_stop unregisters and closes it */
        }
        return 0;
    }
    if (!version4)
        return load_fail(pc, p,
                         "not a Mosquitto plugin (no mosquitto_plugin_version() or "
                         "mosquitto_auth_plugin_version())",
                         dlerror());
    int ver = version4();
    if (ver < 2 || ver > 4) {
        char why[64];
        snprintf(why, sizeof(why), "it says %d, hato loads 2 to 5", ver);
        return load_fail(pc, p, "unsupported auth plugin version", why);
    }
    p->version = ver;
    p->init_v = need(pc, p->lib, "mosquitto_auth_plugin_init");
    p->cleanup_v = p->init_v ? need(pc, p->lib, "mosquitto_auth_plugin_cleanup") : NULL;
    p->sec_init = p->cleanup_v ? need(pc, p->lib, "mosquitto_auth_security_init") : NULL;
    p->sec_cleanup = p->sec_init ? need(pc, p->lib, "mosquitto_auth_security_cleanup") : NULL;
    p->acl_check = p->sec_cleanup ? need(pc, p->lib, "mosquitto_auth_acl_check") : NULL;
    if (!p->acl_check) {
        dlclose(p->lib);
        plugin_free(p);
        return -1;
    }
    if (ver == 4) { /* optional in version 4 */
        p->unpwd_check = dlsym(p->lib, "mosquitto_auth_unpwd_check");
        p->psk_key_get = dlsym(p->lib, "mosquitto_auth_psk_key_get");
    } else {
        p->unpwd_check = need(pc, p->lib, "mosquitto_auth_unpwd_check");
        p->psk_key_get = p->unpwd_check ? need(pc, p->lib, "mosquitto_auth_psk_key_get") : NULL;
        if (!p->psk_key_get) {
            dlclose(p->lib);
            plugin_free(p);
            return -1;
        }
    }
    log_info("Plugin %s: auth plugin version %d, password checks %s.", pc->path, ver,
             p->unpwd_check ? "enabled" : "not enabled");
    h->plugins[h->n++] = p;
    h->v4_acl = true;
    if (p->unpwd_check)
        h->v4_auth = true;
    pthread_mutex_lock(&plugin_lock);
    int rc = ((init_fn)p->init_v)(&p->userdata, p->opts, p->nopts);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = ((secinit_fn)p->sec_init)(p->userdata, p->opts, p->nopts, false);
    pthread_mutex_unlock(&plugin_lock);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_error("Error: %s:%d: plugin '%s': initialisation failed: it returned %d.", pc->file,
                  pc->line, pc->path, rc);
        return -1;
    }
    return 0;
}

int plugin_host_start(struct broker *b) {
    pthread_once(&lock_once, lock_init);
    const struct hato_config *cfg = b->cfg;
    if (!cfg->n_plugins)
        return 0;
    struct plugin_host *h = calloc(1, sizeof(*h));
    if (!h) {
        log_error("Error: out of memory.");
        return -1;
    }
    h->b = b;
    plugin_host = h;
    const void *volatile keep = plugin_api_anchor[0]; /* the exported API stays linked */
    (void)keep;
    for (size_t i = 0; i < cfg->n_plugins; i++)
        if (load_one(h, &cfg->plugins[i]) < 0)
            return -1;
    return 0;
}

/* A request of a plugin for the workers: a kick (every worker), or a
 * message for one client (m set; its session's worker only). */
struct kick {
    struct kick *next;
    uint64_t seq;
    bool by_id, with_will;
    struct msg *m;
    int owner; /* worker id, -1 = every worker */
    char name[];
};

static struct {
    pthread_mutex_t lock;
    struct kick *head, **tail;
    uint64_t seq;
    _Atomic uint64_t last; /* seq of the newest kick (workers compare without the lock) */
    uint64_t *seen;        /* per worker */
    _Atomic int nseen;     /* set once, after seen: read by workers without the lock */
} kicks = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0, NULL, 0};

void plugin_host_stop(struct broker *b) {
    (void)b;
    struct plugin_host *h = plugin_host;
    if (!h)
        return;
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = h->n; i-- > 0;) {
        struct plugin *p = h->plugins[i];
        if (p->version == 5) {
            p->cleanup5(p->userdata, p->opts, p->nopts);
        } else {
            ((secinit_fn)p->sec_cleanup)(p->userdata, p->opts, p->nopts, false);
            ((int (*)(void *, struct mosquitto_opt *, int))p->cleanup_v)(p->userdata, p->opts,
                                                                         p->nopts);
        }
    }
    /* Callbacks a plugin did not unregister go with it. */
    for (size_t i = 0; i < h->ncbs; i++)
        free(h->cbs[i].topic);
    free(h->cbs);
    h->cbs = NULL;
    h->ncbs = 0;
    for (size_t i = 0; i < h->n; i++) {
        dlclose(h->plugins[i]->lib);
        plugin_free(h->plugins[i]);
    }
    free(h->plugins);
    plugin_host = NULL;
    pthread_mutex_unlock(&plugin_lock);
    free(h);
    pthread_mutex_lock(&kicks.lock);
    while (kicks.head) {
        struct kick *k = kicks.head;
        kicks.head = k->next;
        if (k->m)
            msg_unref(k->m);
        free(k);
    }
    kicks.nseen = 0;
    free(kicks.seen);
    kicks.seen = NULL;
    pthread_mutex_unlock(&kicks.lock);
}

/* ---- checks ----------------------------------------------------------------- */

static bool has_event(int ev) {
    struct plugin_host *h = plugin_host;
    return h && atomic_load_explicit(&h->nevents[ev], memory_order_relaxed) > 0;
}

bool plugin_wants_acl(void) {
    struct plugin_host *h = plugin_host;
    return h && (h->v4_acl || has_event(MOSQ_EVT_ACL_CHECK));
}

bool plugin_wants_basic_auth(const struct hato_listener *l) {
    struct plugin_host *h = plugin_host;
    if (!h)
        return false;
    /* Without the lock: a password check running in a plugin holds it, and
     * this is asked on the worker for every CONNECT. */
    for (size_t i = 0; i < h->n; i++) {
        const struct plugin *p = h->plugins[i];
        if ((p->unpwd_check || atomic_load_explicit(&p->auth_cbs, memory_order_relaxed)) &&
            plugin_applies(p, l))
            return true;
    }
    return false;
}

/* Fold one answer into the verdict as Mosquitto does: a plain answer ends
 * the check, DEFER is remembered, IGNORE is as if the plugin were absent. */
static bool fold(int rc, enum plugin_verdict *v, int deny_rc) {
    if (rc == MOSQ_ERR_PLUGIN_IGNORE)
        return false;
    if (rc == MOSQ_ERR_PLUGIN_DEFER) {
        *v = PLUGIN_DEFER;
        return false;
    }
    (void)deny_rc;
    *v = rc == MOSQ_ERR_SUCCESS ? PLUGIN_ALLOW : PLUGIN_DENY;
    return true;
}

static bool special(const char *s) {
    return s && strpbrk(s, "+#") != NULL;
}

enum plugin_verdict plugin_acl_check(const struct hato_listener *l, const char *user,
                                     const char *client_id, const char *topic, const void *payload,
                                     uint32_t payloadlen, int qos, bool retain, int access) {
    struct plugin_host *h = plugin_host;
    if (!h || !plugin_wants_acl())
        return PLUGIN_NONE;
    struct mosquitto cl = {.id = client_id, .username = user, .l = l};
    enum plugin_verdict v = PLUGIN_NONE;
    pthread_mutex_lock(&plugin_lock);
    /* v5 callbacks: the global plugins' first, then the listener's. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < h->ncbs; i++) {
            struct plugin_cb *cb = &h->cbs[i];
            if (cb->event != MOSQ_EVT_ACL_CHECK || (cb->p->lfile != NULL) != (pass == 1) ||
                !plugin_applies(cb->p, l))
                continue;
            struct mosquitto_evt_acl_check ev = {
                .client = &cl,
                .topic = topic,
                .payload = payload,
                .payloadlen = payloadlen,
                .access = access,
                .qos = (uint8_t)qos,
                .retain = retain,
            };
            if (fold(cb->cb(MOSQ_EVT_ACL_CHECK, &ev, cb->userdata), &v, MOSQ_ERR_ACL_DENIED))
                goto done;
        }
    }
    /* Auth plugins, versions 2 to 4. */
    for (size_t i = 0; i < h->n; i++) {
        struct plugin *p = h->plugins[i];
        if (p->version == 5 || !plugin_applies(p, l))
            continue;
        if (p->deny_special_chars && (special(user) || special(client_id))) {
            log_notice("ACL denying access to client with dangerous %s \"%s\"",
                       special(user) ? "username" : "client id", special(user) ? user : client_id);
            v = PLUGIN_DENY;
            goto done;
        }
        int rc;
        if (access == MOSQ_ACL_UNSUBSCRIBE || (p->version == 2 && access == MOSQ_ACL_SUBSCRIBE))
            continue; /* not asked of these versions (Mosquitto: allowed) */
        if (p->version == 2) {
            rc = ((acl_v2_fn)p->acl_check)(p->userdata, client_id, user, topic, access);
        } else {
            struct mosquitto_acl_msg m = {.topic = topic,
                                          .payload = payload,
                                          .payloadlen = payloadlen,
                                          .qos = qos,
                                          .retain = retain};
            rc = ((acl_v3_fn)p->acl_check)(p->userdata, access, &cl, &m);
        }
        if (fold(rc, &v, MOSQ_ERR_ACL_DENIED))
            goto done;
    }
done:
    pthread_mutex_unlock(&plugin_lock);
    return v;
}

bool plugin_unsubscribe_denied(const struct hato_listener *l, const char *user,
                               const char *client_id, const char *filter) {
    if (!plugin_wants_acl())
        return false;
    enum plugin_verdict v =
        plugin_acl_check(l, user, client_id, filter, NULL, 0, 0, false, MOSQ_ACL_UNSUBSCRIBE);
    return v == PLUGIN_DENY || v == PLUGIN_DEFER;
}

/* ---- password checks (pool threads) ------------------------------------------ */

struct plugin_auth {
    struct mosquitto cl;
    const struct auth_passwd *pw; /* the password file after the plugins, or NULL */
    bool anonymous_ok;
    bool has_password;
    char addr[64];
    char id[];
};

struct plugin_auth *plugin_auth_new(struct conn *c, const char *client_id, size_t idlen,
                                    bool has_password, const struct auth_passwd *pw,
                                    bool anonymous_ok) {
    struct plugin_auth *a = calloc(1, sizeof(*a) + idlen + 1);
    if (!a)
        return NULL;
    memcpy(a->id, client_id, idlen);
    a->cl.id = a->id;
    a->cl.l = c->lcfg;
    a->cl.protocol_version = c->version;
    a->cl.keepalive = c->keep_alive;
    a->cl.websockets = c->si.upgraded;
    /* The address without its port, as mosquitto_client_address gives it. */
    const char *peer = c->si.peer;
    size_t n = strlen(peer);
    if (peer[0] == '[') {
        const char *e = strchr(peer, ']');
        peer++;
        n = e ? (size_t)(e - peer) : n - 1;
    } else {
        const char *colon = strrchr(peer, ':');
        if (colon && strchr(peer, ':') == colon)
            n = (size_t)(colon - peer);
    }
    if (n >= sizeof(a->addr))
        n = sizeof(a->addr) - 1;
    memcpy(a->addr, peer, n);
    a->cl.address = a->addr;
    a->pw = pw;
    a->anonymous_ok = anonymous_ok;
    a->has_password = has_password;
    return a;
}

void plugin_auth_free(void *auth) {
    struct plugin_auth *a = auth;
    if (!a)
        return;
    free(a->cl.new_username);
    free(a);
}

bool plugin_auth_run(void *auth, const char *user, size_t ulen, const char *password, size_t plen,
                     char **new_username) {
    struct plugin_auth *a = auth;
    struct plugin_host *h = plugin_host;
    /* Strings as Mosquitto hands them over: NUL-terminated copies, NULL
     * when not in the CONNECT. */
    char *u = user ? strndup(user, ulen) : NULL;
    char *pw = a->has_password ? strndup(password, plen) : NULL;
    if ((user && !u) || (a->has_password && !pw)) {
        free(u);
        free(pw);
        return false;
    }
    a->cl.username = u;
    const struct hato_listener *l = a->cl.l;
    enum plugin_verdict v = PLUGIN_NONE;
    pthread_mutex_lock(&plugin_lock);
    for (int pass = 0; h && pass < 2; pass++) {
        for (size_t i = 0; i < h->ncbs; i++) {
            struct plugin_cb *cb = &h->cbs[i];
            if (cb->event != MOSQ_EVT_BASIC_AUTH || (cb->p->lfile != NULL) != (pass == 1) ||
                !plugin_applies(cb->p, l))
                continue;
            struct mosquitto_evt_basic_auth ev = {.client = &a->cl, .username = u, .password = pw};
            if (fold(cb->cb(MOSQ_EVT_BASIC_AUTH, &ev, cb->userdata), &v, MOSQ_ERR_AUTH))
                goto done;
        }
    }
    for (size_t i = 0; h && i < h->n; i++) {
        struct plugin *p = h->plugins[i];
        if (p->version == 5 || !p->unpwd_check || !plugin_applies(p, l))
            continue;
        int rc = p->version == 2 ? ((unpwd_v2_fn)p->unpwd_check)(p->userdata, u, pw)
                                 : ((unpwd_v3_fn)p->unpwd_check)(p->userdata, &a->cl, u, pw);
        if (fold(rc, &v, MOSQ_ERR_AUTH))
            goto done;
    }
done:
    pthread_mutex_unlock(&plugin_lock);
    bool ok;
    if (v == PLUGIN_ALLOW)
        ok = true;
    else if (v == PLUGIN_DENY)
        ok = false;
    else if (a->pw && u) /* the password file, after every plugin deferred or ignored */
        ok = pw && auth_passwd_check(a->pw, u, ulen, pw, plen);
    else if (v == PLUGIN_DEFER) /* Mosquitto: deferred by all is a refusal, but for anonymous */
        ok = !u && a->anonymous_ok;
    else
        ok = a->anonymous_ok;
    if (pw) {
        volatile char *z = pw;
        for (size_t i = 0; i < plen; i++)
            z[i] = 0;
    }
    free(pw);
    free(u);
    a->cl.username = NULL;
    if (ok && a->cl.username_changed) {
        *new_username = a->cl.new_username;
        a->cl.new_username = NULL;
    }
    return ok;
}

/* ---- $CONTROL ------------------------------------------------------------------ */

bool plugin_is_control_topic(const char *topic, size_t len) {
    return len >= 9 && memcmp(topic, "$CONTROL/", 9) == 0;
}

/* The view of a connected client of this worker. */
static void view_of(struct conn *c, struct mosquitto *cl, char *addr, size_t cap) {
    memset(cl, 0, sizeof(*cl));
    cl->id = c->s ? c->s->client_id : c->assigned_id;
    cl->username = c->username;
    cl->l = c->lcfg;
    cl->protocol_version = c->version;
    cl->keepalive = c->keep_alive;
    cl->websockets = c->si.upgraded;
    cl->sub_count = c->s ? (int)c->s->nsubs : 0;
    snprintf(addr, cap, "%s", c->si.peer[0] == '[' ? c->si.peer + 1 : c->si.peer);
    char *e = addr[0] && c->si.peer[0] == '[' ? strchr(addr, ']') : strrchr(addr, ':');
    if (e && (c->si.peer[0] == '[' || strchr(addr, ':') == e))
        *e = 0;
    cl->address = addr;
}

void plugin_control(struct conn *c, const struct msg *m) {
    struct plugin_host *h = plugin_host;
    if (!h || !has_event(MOSQ_EVT_CONTROL))
        return;
    struct mosquitto cl;
    char addr[64];
    view_of(c, &cl, addr, sizeof(addr));
    pthread_mutex_lock(&plugin_lock);
    /* The global plugins' topics first, then the listener's (Mosquitto 2.0). */
    struct plugin_cb *found = NULL;
    for (int pass = 0; pass < 2 && !found; pass++)
        for (size_t i = 0; i < h->ncbs && !found; i++) {
            struct plugin_cb *cb = &h->cbs[i];
            if (cb->event == MOSQ_EVT_CONTROL && (cb->p->lfile != NULL) == (pass == 1) &&
                plugin_applies(cb->p, c->lcfg) && strcmp(cb->topic, m->topic) == 0)
                found = cb;
        }
    if (found) {
        struct mosquitto_evt_control ev = {
            .client = &cl,
            .topic = m->topic,
            .payload = m->payload,
            .payloadlen = m->payload_len,
            .qos = m->qos,
            .retain = m->retain,
            .reason_code = 0,
        };
        found->cb(MOSQ_EVT_CONTROL, &ev, found->userdata);
        free(ev.reason_string);
    }
    pthread_mutex_unlock(&plugin_lock);
}

/* ---- MOSQ_EVT_MESSAGE ---------------------------------------------------------------- */

bool plugin_message_ok(struct conn *c, struct msg **mp) {
    struct plugin_host *h = plugin_host;
    struct msg *m = *mp;
    if (!h || !has_event(MOSQ_EVT_MESSAGE) || plugin_is_control_topic(m->topic, m->topic_len))
        return true;
    /* Heap copies the plugin may replace, as in Mosquitto 2.0: a plugin that
     * sets a new topic frees the old one itself; a new payload (allocated
     * with mosquitto_malloc) replaces the old one, which the broker frees.
     * A changed QoS is not taken (Mosquitto does not either). */
    char *topic = strdup(m->topic);
    void *payload = malloc(m->payload_len ? m->payload_len : 1);
    if (!topic || !payload) {
        free(topic);
        free(payload);
        return false;
    }
    memcpy(payload, m->payload, m->payload_len);
    struct mosquitto cl;
    char addr[64];
    view_of(c, &cl, addr, sizeof(addr));
    struct mosquitto_evt_message ev = {.client = &cl,
                                       .topic = topic,
                                       .payload = payload,
                                       .payloadlen = m->payload_len,
                                       .qos = m->qos,
                                       .retain = m->retain};
    int rc = MOSQ_ERR_SUCCESS;
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs && rc == MOSQ_ERR_SUCCESS; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->event == MOSQ_EVT_MESSAGE && plugin_applies(cb->p, c->lcfg))
            rc = cb->cb(MOSQ_EVT_MESSAGE, &ev, cb->userdata);
    }
    pthread_mutex_unlock(&plugin_lock);
    free(ev.reason_string);
    if (ev.payload != payload)
        free(payload);
    bool ok = rc == MOSQ_ERR_SUCCESS && ev.topic && (ev.payloadlen == 0 || ev.payload);
    size_t tlen = ok ? strlen(ev.topic) : 0;
    if (ok && (tlen != m->topic_len || memcmp(ev.topic, m->topic, tlen) != 0 ||
               ev.payloadlen != m->payload_len ||
               (ev.payloadlen && memcmp(ev.payload, m->payload, ev.payloadlen) != 0) ||
               ev.retain != m->retain)) {
        /* Changed: a new message with the same properties, origin and expiry. */
        ok = mqtt_topic_name_valid((const uint8_t *)ev.topic, tlen);
        if (!ok)
            log_warn("Warning: a plugin changed a message's topic to an invalid one; dropped.");
        int64_t left = m->expiry_at ? m->expiry_at - msg_now_ms() : 0;
        uint32_t expiry = m->expiry_at ? (left > 1000 ? (uint32_t)(left / 1000) : 1) : 0;
        struct msg *n = ok ? msg_new(ev.topic, tlen, ev.payload, ev.payloadlen, m->qos, ev.retain,
                                     &m->props, expiry, m->origin)
                           : NULL;
        if (n) {
            msg_unref(m);
            *mp = n;
        } else {
            ok = false;
        }
    }
    free(ev.topic);
    free(ev.payload);
    return ok;
}

/* ---- reload, tick, disconnect ---------------------------------------------------- */

void plugin_reload(struct broker *b) {
    (void)b;
    struct plugin_host *h = plugin_host;
    if (!h)
        return;
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->event != MOSQ_EVT_RELOAD)
            continue;
        struct mosquitto_evt_reload ev = {.options = cb->p->opts, .option_count = cb->p->nopts};
        cb->cb(MOSQ_EVT_RELOAD, &ev, cb->userdata);
    }
    for (size_t i = 0; i < h->n; i++) {
        struct plugin *p = h->plugins[i];
        if (p->version == 5)
            continue;
        ((secinit_fn)p->sec_cleanup)(p->userdata, p->opts, p->nopts, true);
        int rc = ((secinit_fn)p->sec_init)(p->userdata, p->opts, p->nopts, true);
        if (rc != MOSQ_ERR_SUCCESS)
            log_error("Error: plugin '%s': mosquitto_auth_security_init on reload returned %d.",
                      p->path, rc);
    }
    pthread_mutex_unlock(&plugin_lock);
}

void plugin_tick(struct worker *w) {
    (void)w;
    struct plugin_host *h = plugin_host;
    if (!h || !has_event(MOSQ_EVT_TICK))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->event != MOSQ_EVT_TICK)
            continue;
        struct mosquitto_evt_tick ev = {
            .now_s = ts.tv_sec,
            .now_ns = ts.tv_nsec,
            .next_s = ts.tv_sec, /* hato ticks every 250 ms */
            .next_ns = ts.tv_nsec,
        };
        cb->cb(MOSQ_EVT_TICK, &ev, cb->userdata);
    }
    pthread_mutex_unlock(&plugin_lock);
}

void plugin_disconnect(struct conn *c, const char *why) {
    struct plugin_host *h = plugin_host;
    if (!h || !has_event(MOSQ_EVT_DISCONNECT))
        return;
    struct mosquitto cl;
    char addr[64];
    view_of(c, &cl, addr, sizeof(addr));
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->event != MOSQ_EVT_DISCONNECT || !plugin_applies(cb->p, c->lcfg))
            continue;
        struct mosquitto_evt_disconnect ev = {
            .client = &cl, .reason = why ? MOSQ_ERR_CONN_LOST : MOSQ_ERR_SUCCESS};
        cb->cb(MOSQ_EVT_DISCONNECT, &ev, cb->userdata);
    }
    pthread_mutex_unlock(&plugin_lock);
}

/* ---- kicks ------------------------------------------------------------------------ */

/* Append a request for the workers and wake them (owner: the one worker
 * that carries it out, -1 = every worker). */
static int request(const char *name, bool by_id, bool with_will, struct msg *m, int owner) {
    struct plugin_host *h = plugin_host;
    struct broker *b = h->b;
    size_t len = strlen(name);
    struct kick *k = malloc(sizeof(*k) + len + 1);
    if (!k)
        return MOSQ_ERR_NOMEM;
    memcpy(k->name, name, len + 1);
    k->by_id = by_id;
    k->with_will = with_will;
    k->m = m;
    k->owner = owner;
    k->next = NULL;
    pthread_mutex_lock(&kicks.lock);
    if (!kicks.seen && b->nworkers > 0) {
        kicks.seen = calloc((size_t)b->nworkers, sizeof(*kicks.seen));
        kicks.nseen = kicks.seen ? b->nworkers : 0;
    }
    if (!kicks.seen) {
        pthread_mutex_unlock(&kicks.lock);
        free(k);
        return MOSQ_ERR_NOMEM;
    }
    k->seq = ++kicks.seq;
    if (!kicks.head)
        kicks.tail = &kicks.head;
    *kicks.tail = k;
    kicks.tail = &k->next;
    atomic_store(&kicks.last, k->seq);
    pthread_mutex_unlock(&kicks.lock);
    for (int i = 0; i < b->nworkers; i++) /* all: each one's slot moves on */
        ev_wake(b->workers[i].loop);
    return MOSQ_ERR_SUCCESS;
}

int plugin_kick(const char *name, bool by_id, bool with_will) {
    if (!plugin_host || !name)
        return MOSQ_ERR_INVAL;
    return request(name, by_id, with_will, NULL, -1);
}

int plugin_send_to(const char *client_id, struct msg *m) {
    struct plugin_host *h = plugin_host;
    if (!h || !client_id || !h->b->nworkers) {
        msg_unref(m);
        return MOSQ_ERR_INVAL;
    }
    struct worker *w = broker_owner(h->b, client_id, strlen(client_id));
    int rc = request(client_id, true, false, m, w->id);
    if (rc != MOSQ_ERR_SUCCESS)
        msg_unref(m);
    return rc;
}

/* A message for one client (mosquitto_broker_publish with a client id), on
 * its session's worker: delivered whether it subscribed or not, no ACL
 * check, online or queued (Mosquitto 2.0). */
static void send_one(struct worker *w, const char *id, struct msg *m) {
    struct session *s = strmap_get(&w->sessions, id, strlen(id));
    if (!s || s->dead) {
        msg_unref(m);
        return;
    }
    session_ref(s);
    struct deliv d = {.m = m, .qos = m->qos, .retain = m->retain};
    route_dispatch(w, s, &d); /* takes the reference and the delivery */
}

void plugin_worker_wake(struct worker *w) {
    if (!plugin_host || !kicks.nseen || w->id >= kicks.nseen)
        return;
    if (atomic_load(&kicks.last) == kicks.seen[w->id]) /* only this worker writes its slot */
        return;
    /* Copy what this worker has not done, under the lock; act outside it. */
    struct kick *todo = NULL, **tt = &todo;
    pthread_mutex_lock(&kicks.lock);
    uint64_t seen = kicks.seen[w->id];
    for (struct kick *k = kicks.head; k; k = k->next) {
        if (k->seq <= seen || (k->owner >= 0 && k->owner != w->id))
            continue;
        size_t len = strlen(k->name);
        struct kick *c = malloc(sizeof(*c) + len + 1);
        if (c) {
            memcpy(c, k, sizeof(*c) + len + 1);
            c->next = NULL;
            k->m = NULL; /* the copy has it */
            *tt = c;
            tt = &c->next;
        }
    }
    kicks.seen[w->id] = kicks.seq;
    /* Requests every worker has seen are dropped. */
    uint64_t min = kicks.seq;
    for (int i = 0; i < kicks.nseen; i++)
        if (kicks.seen[i] < min)
            min = kicks.seen[i];
    while (kicks.head && kicks.head->seq <= min) {
        struct kick *k = kicks.head;
        kicks.head = k->next;
        if (k->m)
            msg_unref(k->m);
        free(k);
    }
    if (!kicks.head)
        kicks.tail = &kicks.head;
    pthread_mutex_unlock(&kicks.lock);
    while (todo) {
        struct kick *k = todo;
        todo = k->next;
        if (k->m) {
            send_one(w, k->name, k->m);
            free(k);
            continue;
        }
        for (struct conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (c->state != CS_CONNECTED || !c->s)
                continue;
            const char *have = k->by_id ? c->s->client_id : c->username;
            if (!have || strcmp(have, k->name) != 0)
                continue;
            if (!k->with_will)
                c->will_pending = false;
            proto_fail(c, MQTT_RC_ADMINISTRATIVE_ACTION, "kicked by a plugin");
        }
        free(k);
    }
}

#endif
