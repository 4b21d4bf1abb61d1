/*
 * The admin API (admin.h): accounts, sessions, routing and the JSON of each
 * endpoint. Requests are parsed by transport/http.c and answered through
 * httpconn.h, as metrics.c's are.
 */
#include "broker/admin.h"

#include <stdarg.h>

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "base/log.h"
#include "broker/admin_internal.h"
#include "broker/adminq.h"
#include "broker/broker.h"
#include "broker/httpconn.h"
#include "broker/reload.h"
#include "broker/security.h"
#include "broker/stats.h"
#include "config/config.h"
#include "transport/http.h"

#define CT_JSON ADMIN_CT_JSON
#define COOKIE "hato_session"
#define TOKEN_HEX 64         /* 32 random bytes */
#define RELOAD_WAIT_MS 30000 /* a reload that takes longer is answered 504 */

enum { ADMIN_WAIT_NONE, ADMIN_WAIT_LOGIN, ADMIN_WAIT_RELOAD }; /* ADMIN_WAIT_QUERY: 3 */

struct admin_session {
    char id[TOKEN_HEX + 1]; /* "" = free slot */
    char csrf[TOKEN_HEX + 1];
    char user[64];
    int64_t used; /* ms, monotonic */
};

struct admin {
    /* Accounts: read-locked for a check, write-locked to replace them. */
    pthread_rwlock_t pw_lock;
    struct auth_passwd *pw;
    const struct hato_config *pw_cfg; /* the config pw was loaded for */
    pthread_mutex_t lock;             /* sessions */
    struct admin_session s[ADMIN_SESSIONS_MAX];
};

/* ---- accounts ------------------------------------------------------------ */

/* Load the accounts; a malformed line is an error here (an MQTT password
 * file skips it with a warning, but a missing admin is worse than a stop).
 * NULL with "PATH:LINE: reason" in err. */
static struct auth_passwd *accounts_load(const char *path, char *err, size_t errlen) {
    struct auth_passwd *pw = auth_passwd_load(path, err, errlen);
    for (size_t i = 0; pw; i++) {
        bool error = false;
        const char *why = auth_passwd_problem(pw, i, &error);
        if (!why)
            break;
        if (error) {
            snprintf(err, errlen, "%s", why);
            auth_passwd_free(pw);
            return NULL;
        }
    }
    return pw;
}

int admin_init(struct broker *b) {
    const struct hato_config *cfg = broker_config(b);
    if (!cfg->admin_password_file)
        return 0;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        log_error("Error: out of memory.");
        return -1;
    }
    char err[512];
    a->pw = accounts_load(cfg->admin_password_file, err, sizeof(err));
    if (!a->pw) {
        log_error("Error: admin_password_file %s", err);
        free(a);
        return -1;
    }
    if (auth_passwd_count(a->pw) == 0)
        log_warn("Warning: admin_password_file %s has no accounts: no admin can log in "
                 "(add one with hato-passwd).",
                 cfg->admin_password_file);
    a->pw_cfg = cfg;
    admin_console_check(cfg);
    pthread_rwlock_init(&a->pw_lock, NULL);
    pthread_mutex_init(&a->lock, NULL);
    b->admin = a;
    return 0;
}

void admin_free(struct broker *b) {
    struct admin *a = b->admin;
    if (!a)
        return;
    auth_passwd_free(a->pw);
    pthread_rwlock_destroy(&a->pw_lock);
    pthread_mutex_destroy(&a->lock);
    OPENSSL_cleanse(a->s, sizeof(a->s));
    free(a);
    b->admin = NULL;
}

/* A reload published a new config: read its admin_password_file again (a
 * bad file keeps the accounts in use, logged). */
static void accounts_update(struct broker *b, struct admin *a) {
    const struct hato_config *cfg = broker_config(b);
    pthread_rwlock_rdlock(&a->pw_lock);
    bool same = a->pw_cfg == cfg;
    pthread_rwlock_unlock(&a->pw_lock);
    if (same)
        return;
    char err[512];
    struct auth_passwd *pw =
        cfg->admin_password_file ? accounts_load(cfg->admin_password_file, err, sizeof(err)) : NULL;
    pthread_rwlock_wrlock(&a->pw_lock);
    if (a->pw_cfg != cfg) {
        if (pw) {
            auth_passwd_free(a->pw);
            a->pw = pw;
            pw = NULL;
        } else if (cfg->admin_password_file) {
            log_error("Error: admin_password_file %s; keeping the accounts loaded before.", err);
        }
        a->pw_cfg = cfg;
    }
    pthread_rwlock_unlock(&a->pw_lock);
    auth_passwd_free(pw);
}

static bool account_check(struct broker *b, const char *user, size_t ulen, const char *pass,
                          size_t plen) {
    struct admin *a = b->admin;
    accounts_update(b, a);
    pthread_rwlock_rdlock(&a->pw_lock);
    bool ok = a->pw && auth_passwd_check(a->pw, user, ulen, pass, plen);
    pthread_rwlock_unlock(&a->pw_lock);
    return ok;
}

/* ---- sessions ------------------------------------------------------------ */

static bool random_hex(char out[TOKEN_HEX + 1]) {
    unsigned char r[TOKEN_HEX / 2];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return false;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    OPENSSL_cleanse(r, sizeof(r));
    return true;
}

static bool token_eq(const char *a, const char *b, size_t blen) {
    return blen == TOKEN_HEX && strlen(a) == TOKEN_HEX && CRYPTO_memcmp(a, b, TOKEN_HEX) == 0;
}

/* A new session for user: its id and CSRF token copied out. */
static bool admin_session_open(struct admin *a, const char *user, int64_t now,
                               char id[TOKEN_HEX + 1], char csrf[TOKEN_HEX + 1]) {
    if (!random_hex(id) || !random_hex(csrf))
        return false;
    pthread_mutex_lock(&a->lock);
    size_t slot = 0;
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX; i++) {
        struct admin_session *s = &a->s[i];
        if (s->id[0] && now - s->used >= (int64_t)ADMIN_SESSION_IDLE_S * 1000)
            memset(s, 0, sizeof(*s));
        if (!s->id[0] || (a->s[slot].id[0] && s->used < a->s[slot].used))
            slot = i; /* a free slot, else the least recently used */
    }
    struct admin_session *s = &a->s[slot];
    memcpy(s->id, id, TOKEN_HEX + 1);
    memcpy(s->csrf, csrf, TOKEN_HEX + 1);
    snprintf(s->user, sizeof(s->user), "%s", user);
    s->used = now;
    pthread_mutex_unlock(&a->lock);
    return true;
}

/* The session of this id: its user and CSRF token copied out, its idle time
 * restarted; remove: end it instead. False when there is none (or it idled out). */
static bool admin_session_find(struct admin *a, const char *id, size_t idlen, int64_t now,
                               bool remove, char user[64], char csrf[TOKEN_HEX + 1]) {
    bool found = false;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX && !found; i++) {
        struct admin_session *s = &a->s[i];
        if (!s->id[0] || !token_eq(s->id, id, idlen))
            continue;
        if (now - s->used >= (int64_t)ADMIN_SESSION_IDLE_S * 1000) {
            memset(s, 0, sizeof(*s));
            break;
        }
        found = true;
        memcpy(user, s->user, sizeof(s->user));
        memcpy(csrf, s->csrf, TOKEN_HEX + 1);
        if (remove)
            memset(s, 0, sizeof(*s));
        else
            s->used = now;
    }
    pthread_mutex_unlock(&a->lock);
    return found;
}

/* The value of cookie `name` in the request's Cookie header (RFC 6265:
 * "a=b; c=d"), or NULL. */
static const char *cookie_value(const struct http_head *h, const char *name, size_t *vlen) {
    const struct http_field *f = http_field(h, "Cookie", NULL);
    if (!f)
        return NULL;
    size_t nlen = strlen(name);
    const char *p = f->value, *end = f->value + f->vlen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ';'))
            p++;
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (!e)
            e = end;
        if ((size_t)(e - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *vlen = (size_t)(e - p) - nlen - 1;
            return p + nlen + 1;
        }
        p = e;
    }
    return NULL;
}

/* ---- answers ------------------------------------------------------------- */

void admin_respond_json(struct conn *c, int status, const char *extra, cJSON *body) {
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        httpc_respond(c, 500, CT_JSON, NULL, oom, sizeof(oom) - 1, false);
        return;
    }
    httpc_respond(c, status, CT_JSON, extra, text, strlen(text), false);
    free(text);
}

void admin_respond_error(struct conn *c, int status, const char *extra, const char *why) {
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "error", why)) {
        cJSON_Delete(o);
        o = NULL;
    }
    admin_respond_json(c, status, extra, o);
}

/* ---- endpoints ----------------------------------------------------------- */

static void do_healthz(struct admin_req *r) {
    struct broker *b = r->c->w->b;
    bool up = atomic_load(&b->serving) && !atomic_load(&b->stopping);
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "status", up ? "ok" : "unavailable");
    admin_respond_json(r->c, up ? 200 : 503, NULL, o);
}

/* Set-Cookie attributes: HttpOnly, SameSite=Strict, Path=/, Secure over TLS. */
static const char *cookie_attrs(const struct conn *c) {
    return c->lcfg->certfile ? "; HttpOnly; SameSite=Strict; Path=/; Secure"
                             : "; HttpOnly; SameSite=Strict; Path=/";
}

static void do_login(struct admin_req *r) {
    struct conn *c = r->c;
    struct broker *b = c->w->b;
    cJSON *in = cJSON_ParseWithLength(r->body, r->blen);
    const cJSON *ju = cJSON_GetObjectItemCaseSensitive(in, "username");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(in, "password");
    if (!cJSON_IsObject(in) || !cJSON_IsString(ju) || !cJSON_IsString(jp)) {
        cJSON_Delete(in);
        admin_respond_error(
            c, 400, NULL,
            "malformed JSON: expected {\"username\": \"...\", \"password\": \"...\"}");
        return;
    }
    const char *pass = jp->valuestring;
    char user[64], shown[64];
    if (strlen(ju->valuestring) >= sizeof(user)) {
        cJSON_Delete(in);
        admin_respond_error(c, 400, NULL, "user name too long");
        return;
    }
    snprintf(user, sizeof(user), "%s", ju->valuestring);
    security_printable(user, shown, sizeof(shown));
    /* A failed login from this address still waits: no check (no guessing in parallel). */
    const char *why = security_fail_pending(b, c->si.peer) ? "a failed login is pending"
                      : !account_check(b, user, strlen(user), pass, strlen(pass))
                          ? "wrong user or password"
                          : NULL;
    OPENSSL_cleanse(jp->valuestring, strlen(jp->valuestring));
    int64_t now = ev_now(c->w->loop);
    char id[TOKEN_HEX + 1], csrf[TOKEN_HEX + 1];
    if (!why && !admin_session_open(b->admin, user, now, id, csrf))
        why = "no random bytes for a session";
    cJSON_Delete(in);
    if (why) {
        int64_t delay = security_fail_delay(b, c->si.peer);
        log_warn("Admin login from %s on port %d refused (user '%s'): %s; answered after %" PRId64
                 " ms.",
                 c->si.peer, c->lcfg->port, shown, why, delay);
        if (delay <= 0) {
            admin_respond_error(c, 401, NULL, "wrong user name or password");
            return;
        }
        c->admin_wait = ADMIN_WAIT_LOGIN;
        c->refuse_at = now + delay;
        return;
    }
    log_notice("Admin login: user '%s' from %s on port %d.", shown, c->si.peer, c->lcfg->port);
    char extra[256];
    snprintf(extra, sizeof(extra), "Set-Cookie: " COOKIE "=%s%s\r\n", id, cookie_attrs(c));
    cJSON *o = cJSON_CreateObject();
    if (o &&
        (!cJSON_AddStringToObject(o, "csrf", csrf) || !cJSON_AddStringToObject(o, "user", user) ||
         !cJSON_AddNumberToObject(o, "idle_timeout", ADMIN_SESSION_IDLE_S))) {
        cJSON_Delete(o);
        o = NULL;
    }
    OPENSSL_cleanse(id, sizeof(id));
    admin_respond_json(c, 200, extra, o);
}

static void do_logout(struct admin_req *r) {
    struct conn *c = r->c;
    size_t idlen = 0;
    const char *id = cookie_value(r->h, COOKIE, &idlen);
    char user[64], csrf[TOKEN_HEX + 1];
    if (id)
        admin_session_find(c->w->b->admin, id, idlen, ev_now(c->w->loop), true, user, csrf);
    log_notice("Admin logout: user '%s' from %s on port %d.", r->user, c->si.peer, c->lcfg->port);
    char extra[256];
    snprintf(extra, sizeof(extra), "Set-Cookie: " COOKIE "=; Max-Age=0%s\r\n", cookie_attrs(c));
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddBoolToObject(o, "logged_out", true);
    admin_respond_json(c, 200, extra, o);
}

static const char *const load_names[STATS_LOAD_N] = {
    [STATS_LOAD_MSGS_RECEIVED] = "messages_received",
    [STATS_LOAD_MSGS_SENT] = "messages_sent",
    [STATS_LOAD_PUB_DROPPED] = "publish_dropped",
    [STATS_LOAD_PUB_RECEIVED] = "publish_received",
    [STATS_LOAD_PUB_SENT] = "publish_sent",
    [STATS_LOAD_BYTES_RECEIVED] = "bytes_received",
    [STATS_LOAD_BYTES_SENT] = "bytes_sent",
    [STATS_LOAD_SOCKETS] = "sockets",
    [STATS_LOAD_CONNECTIONS] = "connections",
};

static void add_histo(cJSON *o, const char *name, const struct stats_histo *h) {
    cJSON *j = cJSON_AddObjectToObject(o, name);
    cJSON *bounds = cJSON_AddArrayToObject(j, "bounds"),
          *counts = cJSON_AddArrayToObject(j, "counts");
    size_t nb = h->nbounds < STATS_HISTO_MAX ? h->nbounds : STATS_HISTO_MAX;
    for (size_t i = 0; i < nb; i++) {
        cJSON_AddItemToArray(bounds, cJSON_CreateNumber(h->bounds[i]));
        cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)h->counts[i]));
    }
    cJSON_AddNumberToObject(j, "count", (double)h->count);
    cJSON_AddNumberToObject(j, "sum", h->sum);
}

/* The snapshot as JSON: the Prometheus families' names without "hato_". */
static cJSON *metrics_json(const struct stats_snapshot *s, int64_t started) {
    cJSON *o = cJSON_CreateObject();
    const struct {
        const char *name;
        uint64_t v;
    } flat[] = {
        {"uptime_seconds", s->uptime},
        {"start_time_seconds", (uint64_t)started},
        {"clients_connected", s->clients_connected},
        {"clients_disconnected", s->clients_disconnected},
        {"clients_expired_total", s->clients_expired},
        {"clients_maximum", s->clients_maximum},
        {"clients_known", s->clients_total},
        {"messages_received_total", s->msgs_received},
        {"messages_sent_total", s->msgs_sent},
        {"messages_stored", s->msgs_stored},
        {"publish_messages_received_total", s->pub_received},
        {"publish_messages_sent_total", s->pub_sent},
        {"publish_messages_dropped_total", s->pub_dropped},
        {"publish_received_bytes_total", s->pub_bytes_received},
        {"publish_sent_bytes_total", s->pub_bytes_sent},
        {"received_bytes_total", s->bytes_received},
        {"sent_bytes_total", s->bytes_sent},
        {"sockets_accepted_total", s->sockets_accepted},
        {"connections_accepted_total", s->connections_accepted},
        {"retained_messages", s->retained_count},
        {"subscriptions", s->subscriptions_count},
        {"shared_subscriptions", s->shared_subscriptions_count},
        {"store_messages", s->store_messages_count},
        {"store_messages_bytes", s->store_messages_bytes},
        {"heap_bytes", s->heap_current},
        {"heap_max_bytes", s->heap_maximum},
    };
    cJSON_AddStringToObject(o, "version", HATO_VERSION);
    for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
        cJSON_AddNumberToObject(o, flat[i].name, (double)flat[i].v);
    cJSON *d = cJSON_AddObjectToObject(o, "publish_dropped_total");
    for (int i = 0; i < STATS_DROP_N; i++)
        cJSON_AddNumberToObject(d, stats_drop_reason[i], (double)s->dropped[i]);
    cJSON *load = cJSON_AddObjectToObject(o, "load");
    for (int k = 0; k < STATS_LOAD_N; k++) {
        cJSON *w = cJSON_AddObjectToObject(load, load_names[k]);
        cJSON_AddNumberToObject(w, "1min", s->load[k][0]);
        cJSON_AddNumberToObject(w, "5min", s->load[k][1]);
        cJSON_AddNumberToObject(w, "15min", s->load[k][2]);
    }
    add_histo(o, "store_commit_seconds", &s->store_commit_seconds);
    add_histo(o, "delivery_queue_depth", &s->queue_depth);
    cJSON *ls = cJSON_AddArrayToObject(o, "listeners");
    for (size_t i = 0; i < s->nlisteners; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddItemToArray(ls, l);
        cJSON_AddStringToObject(l, "listener", s->listeners[i].name);
        cJSON_AddStringToObject(l, "protocol",
                                s->listeners[i].protocol ? s->listeners[i].protocol : "mqtt");
        cJSON_AddNumberToObject(l, "connections", (double)s->listeners[i].connections);
        cJSON_AddNumberToObject(l, "accepted_total", (double)s->listeners[i].accepted);
    }
    cJSON *ws = cJSON_AddArrayToObject(o, "workers");
    for (size_t i = 0; i < s->nworkers; i++) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToArray(ws, w);
        cJSON_AddNumberToObject(w, "clients", (double)s->workers[i].clients);
        cJSON_AddNumberToObject(w, "publish_received_total", (double)s->workers[i].msgs_received);
        cJSON_AddNumberToObject(w, "publish_sent_total", (double)s->workers[i].msgs_sent);
        cJSON_AddNumberToObject(w, "busy_ratio", s->workers[i].busy);
    }
    return o;
}

static void do_metrics(struct admin_req *r) {
    struct broker *b = r->c->w->b;
    struct stats_snapshot s;
    if (stats_snapshot(b, &s) < 0) {
        admin_respond_error(r->c, 500, NULL, "out of memory");
        return;
    }
    cJSON *o = metrics_json(&s, b->started);
    stats_snapshot_free(&s);
    admin_respond_json(r->c, 200, NULL, o);
}

/* Directives whose value is a secret (or names one): shown as "***". */
static bool secret_name(const char *name) {
    return strstr(name, "password") || strstr(name, "psk") || strstr(name, "kpass") ||
           strstr(name, "secret") || strstr(name, "token");
}

/* One directive's value, typed as its row says; secrets masked. */
static cJSON *value_json(const struct hato_directive *d, const char *v) {
    bool unset = strcmp(v, "none") == 0 || !v[0];
    if (secret_name(d->name))
        return unset ? cJSON_CreateNull() : cJSON_CreateString("***");
    if (strcmp(d->type, "bool") == 0 && (!strcmp(v, "true") || !strcmp(v, "false")))
        return cJSON_CreateBool(strcmp(v, "true") == 0);
    if (strncmp(d->type, "integer", 7) == 0) {
        char *end;
        double n = strtod(v, &end);
        if (end != v && !*end)
            return cJSON_CreateNumber(n);
    }
    if (unset && strcmp(d->type, "string") == 0)
        return cJSON_CreateNull();
    return cJSON_CreateString(v);
}

static cJSON *config_json(const struct hato_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    cJSON *g = cJSON_AddObjectToObject(o, "global");
    cJSON *ls = cJSON_AddArrayToObject(o, "listeners");
    cJSON **lv = calloc(cfg->n_listeners + 1, sizeof(*lv));
    if (!lv) {
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t k = 0; k < cfg->n_listeners; k++) {
        const struct hato_listener *l = &cfg->listeners[k];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToArray(ls, j);
        cJSON_AddNumberToObject(j, "port", l->port);
        if (l->unix_path)
            cJSON_AddStringToObject(j, "unix_path", l->unix_path);
        else if (l->bind_address)
            cJSON_AddStringToObject(j, "address", l->bind_address);
        else
            cJSON_AddNullToObject(j, "address");
        cJSON_AddStringToObject(j, "defined_at_file", l->file ? l->file : "");
        cJSON_AddNumberToObject(j, "defined_at_line", l->line);
        lv[k] = cJSON_AddObjectToObject(j, "settings");
    }
    size_t n = hato_directive_count();
    char v[512];
    for (size_t i = 0; i < n; i++) {
        struct hato_directive d;
        if (!hato_directive_get(i, &d))
            continue;
        if (strcmp(d.scope, "listener") == 0) {
            for (size_t k = 0; k < cfg->n_listeners; k++)
                if (hato_directive_value(cfg, &cfg->listeners[k], i, v, sizeof(v)) && lv[k])
                    cJSON_AddItemToObject(lv[k], d.name, value_json(&d, v));
        } else if (hato_directive_value(cfg, NULL, i, v, sizeof(v))) {
            cJSON_AddItemToObject(g, d.name, value_json(&d, v));
        }
    }
    free(lv);
    return o;
}

static void do_config(struct admin_req *r) {
    admin_respond_json(r->c, 200, NULL, config_json(broker_config(r->c->w->b)));
}

static void do_reload(struct admin_req *r) {
    struct conn *c = r->c;
    log_notice("Admin reload: requested by user '%s' from %s on port %d.", r->user, c->si.peer,
               c->lcfg->port);
    c->admin_reload_seq = reload_request(c->w->b);
    c->admin_wait = ADMIN_WAIT_RELOAD;
    c->refuse_at = ev_now(c->w->loop) + RELOAD_WAIT_MS;
}

static void do_openapi(struct admin_req *r) {
    httpc_respond(r->c, 200, CT_JSON, NULL, admin_openapi_json, strlen(admin_openapi_json), false);
}

/* ---- helpers of the endpoint files (admin_internal.h) ---------------------- */

cJSON *admin_body_json(struct admin_req *r, int type) {
    cJSON *j = r->blen ? cJSON_ParseWithLength(r->body, r->blen) : NULL;
    if (!j || (type && !(j->type & type))) {
        cJSON_Delete(j);
        admin_respond_error(r->c, 400, NULL,
                            type == cJSON_Object  ? "malformed JSON: expected an object"
                            : type == cJSON_Array ? "malformed JSON: expected an array"
                                                  : "malformed JSON");
        return NULL;
    }
    return j;
}

long admin_rest(struct admin_req *r, char *out, size_t outlen) {
    long n = r->rest_len ? http_pct_decode(r->rest, r->rest_len, out, outlen, false) : -1;
    if (n <= 0) {
        admin_respond_error(r->c, 400, NULL, "bad name in the path (escape, length or empty)");
        return -1;
    }
    return n;
}

long admin_query(struct admin_req *r, const char *name, char *out, size_t outlen) {
    long n = http_query_param(r->h->target, r->h->tlen, name, out, outlen);
    if (n == -2) {
        char why[128];
        snprintf(why, sizeof(why), "query parameter '%s' malformed or too long", name);
        admin_respond_error(r->c, 400, NULL, why);
    }
    return n;
}

bool admin_query_int(struct admin_req *r, const char *name, long long min, long long max,
                     long long def, long long *out) {
    char v[32], *end = NULL;
    long n = admin_query(r, name, v, sizeof(v));
    if (n == -2)
        return false;
    if (n == -1) {
        *out = def;
        return true;
    }
    long long x = n > 0 ? strtoll(v, &end, 10) : 0;
    if (n == 0 || *end || x < min || x > max) {
        char why[160];
        snprintf(why, sizeof(why), "query parameter '%s': an integer from %lld to %lld", name, min,
                 max);
        admin_respond_error(r->c, 400, NULL, why);
        return false;
    }
    *out = x;
    return true;
}

void admin_audit(struct admin_req *r, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    log_notice("Admin %s from %s on port %d: %s.", r->user, r->c->si.peer, r->c->lcfg->port, what);
}

/* ---- routing ------------------------------------------------------------- */

static const struct admin_route routes[] = {
    {"/healthz", "GET", do_healthz, ADMIN_R_OPEN},
    {"/api/v1/login", "POST", do_login, ADMIN_R_OPEN | ADMIN_R_READ},
    {"/api/v1/logout", "POST", do_logout, ADMIN_R_READ},
    {"/api/v1/metrics", "GET", do_metrics, 0},
    {"/api/v1/config", "GET", do_config, 0},
    {"/api/v1/reload", "POST", do_reload, 0},
    {"/api/v1/openapi.json", "GET", do_openapi, 0},
    {NULL, NULL, NULL, 0},
};

static const struct admin_route *const tables[] = {
    routes,
    admin_clients_routes,
    admin_users_routes,
    admin_limits_routes,
    admin_retained_routes,
    admin_console_routes,
};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

/* Does route t match the path p[0..plen)? Sets r->rest for a prefix route. */
static bool route_match(const struct admin_route *t, const char *p, size_t plen,
                        struct admin_req *r) {
    size_t l = strlen(t->path);
    if (!(t->flags & ADMIN_R_PREFIX))
        return l == plen && memcmp(t->path, p, plen) == 0;
    if (plen <= l + 1 || memcmp(t->path, p, l) != 0 || p[l] != '/')
        return false;
    r->rest = p + l + 1;
    r->rest_len = plen - l - 1;
    return true;
}

/* The session of the request (cookie), into r->user; NULL, or why not. */
static const char *authenticate(struct admin_req *r, char csrf[TOKEN_HEX + 1]) {
    size_t idlen = 0;
    const char *id = cookie_value(r->h, COOKIE, &idlen);
    if (!id)
        return "no session (log in at /api/v1/login)";
    if (!admin_session_find(r->c->w->b->admin, id, idlen, ev_now(r->c->w->loop), false, r->user,
                            csrf))
        return "session unknown or expired (log in again)";
    r->role = ADMIN_ROLE_FULL;
    return NULL;
}

static void handle(struct admin_req *r) {
    struct conn *c = r->c;
    size_t plen = httpc_path_len(r->h);
    const struct admin_route *path = NULL, *method = NULL;
    char allow[128] = "Allow: ";
    for (size_t t = 0; t < N_TABLES && !method; t++)
        for (const struct admin_route *x = tables[t]; x->path && !method; x++) {
            if (!route_match(x, r->h->target, plen, r))
                continue;
            if (!path || strcmp(path->path, x->path) == 0) {
                if (!path || strlen(allow) + strlen(x->method) + 3 < sizeof(allow))
                    snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                             path ? ", " : "", x->method);
                path = path ? path : x;
            }
            if (strcmp(path->path, x->path) == 0 && httpc_method_is(r->h, x->method))
                method = x;
        }
    if (method)
        path = method;
    /* No authentication for the open ones; everything else, known path or not, needs it. */
    bool open = path && (path->flags & ADMIN_R_OPEN) && method;
    char csrf[TOKEN_HEX + 1] = "";
    if (!open) {
        const char *why = authenticate(r, csrf);
        if (why) {
            log_info("Admin request from %s on port %d refused: %s.", c->si.peer, c->lcfg->port,
                     why);
            admin_respond_error(c, 401, NULL, why);
            return;
        }
    }
    if (!path) {
        admin_respond_error(c, 404, NULL, "no such path");
        return;
    }
    if (!method) {
        strcat(allow, "\r\n");
        admin_respond_error(c, 405, allow, "method not allowed");
        return;
    }
    bool write = !r->get && !(path->flags & ADMIN_R_READ);
    if (!open && !r->get) {
        const struct http_field *f = http_field(r->h, "X-CSRF-Token", NULL);
        if (csrf[0] && (!f || !token_eq(csrf, f->value, f->vlen))) {
            log_warn("Admin request %.*s %.*s from %s (user '%s') refused: %s X-CSRF-Token.",
                     (int)r->h->mlen, r->h->method, (int)plen, r->h->target, c->si.peer, r->user,
                     f ? "wrong" : "no");
            admin_respond_error(c, 403, NULL, "X-CSRF-Token missing or wrong");
            return;
        }
    }
    OPENSSL_cleanse(csrf, sizeof(csrf));
    if (!open && write && r->role != ADMIN_ROLE_FULL) {
        log_warn("Admin request %.*s %.*s from %s (user '%s') refused: read-only role.",
                 (int)r->h->mlen, r->h->method, (int)plen, r->h->target, c->si.peer, r->user);
        admin_respond_error(c, 403, NULL, "this admin may only read (role read)");
        return;
    }
    path->fn(r);
}

/* Content-Length: digits only, one field; -1 malformed, -2 over the limit. */
static long long body_length(const struct http_head *h) {
    int count = 0;
    const struct http_field *f = http_field(h, "Content-Length", &count);
    if (!f)
        return 0;
    if (count > 1 || f->vlen == 0 || f->vlen > 12)
        return -1;
    long long n = 0;
    for (size_t i = 0; i < f->vlen; i++) {
        if (f->value[i] < '0' || f->value[i] > '9')
            return -1;
        n = n * 10 + (f->value[i] - '0');
    }
    return n > ADMIN_BODY_MAX ? -2 : n;
}

void admin_input(struct conn *c, const uint8_t *data, size_t len) {
    if (c->close_when_sent || c->admin_wait) {
        httpc_drop_input(c); /* one request per connection */
        return;
    }
    if (!c->w->b->admin) { /* a reload turned a listener into an admin one without accounts */
        admin_respond_error(c, 503, NULL, "no admin accounts (admin_password_file at start-up)");
        httpc_drop_input(c);
        return;
    }
    struct http_head h;
    int r = http_parse_request((const char *)data, len, &h);
    if (r == 0 && len < ADMIN_HEAD_MAX) {
        httpc_keep(c, data, len);
        return;
    }
    int status = r == 0 || r > ADMIN_HEAD_MAX ? 431 : r < 0 ? -r : 200;
    long long blen = 0;
    if (status == 200) {
        blen = body_length(&h);
        status = blen == -1                                  ? 400
                 : blen == -2                                ? 413
                 : http_field(&h, "Transfer-Encoding", NULL) ? 411
                                                             : 200;
    }
    if (status == 200 && len - (size_t)r < (size_t)blen) {
        httpc_keep(c, data, len); /* the body is still coming */
        return;
    }
    if (status != 200) {
        log_notice("Admin request from %s on port %d refused: %d %s.", c->si.peer, c->lcfg->port,
                   status, http_reason(status));
        admin_respond_error(c, status, NULL,
                            status == 413   ? "request body over 64 KiB"
                            : status == 411 ? "a body needs Content-Length (no chunked encoding)"
                                            : http_reason(status));
    } else {
        struct admin_req q = {
            .c = c, .h = &h, .body = (const char *)data + r, .blen = (size_t)blen};
        q.get = httpc_method_is(&h, "GET");
        handle(&q); /* h points into data: before the input goes */
    }
    httpc_drop_input(c);
}

void admin_tick(struct conn *c, int64_t now) {
    if (c->admin_wait == ADMIN_WAIT_QUERY) {
        adminq_tick(c, now);
        return;
    }
    if (c->admin_wait == ADMIN_WAIT_RELOAD) {
        char err[512];
        int rc = reload_outcome(c->w->b, c->admin_reload_seq, err, sizeof(err));
        if (rc > 0 && now < c->refuse_at)
            return;
        c->refuse_at = 0;
        c->admin_wait = ADMIN_WAIT_NONE;
        if (rc > 0) {
            admin_respond_error(c, 504, NULL, "the reload did not finish in time");
        } else if (rc < 0) {
            char msg[600];
            snprintf(msg, sizeof(msg), "reload failed: %s; the running configuration stays", err);
            admin_respond_error(c, 409, NULL, msg);
        } else {
            cJSON *o = cJSON_CreateObject();
            if (o)
                cJSON_AddBoolToObject(o, "reloaded", true);
            admin_respond_json(c, 200, NULL, o);
        }
        return;
    }
    if (now < c->refuse_at)
        return;
    c->refuse_at = 0;
    c->admin_wait = ADMIN_WAIT_NONE;
    admin_respond_error(c, 401, NULL, "wrong user name or password");
}
