/*
 * Admin API endpoints: clients, sessions and subscriptions (admin_internal.h,
 * docs/api.md). Sessions belong to their workers: every endpoint here is a
 * cross-worker query (adminq.h). The workers copy what is asked into plain
 * records of their own part of the query; the asking worker merges them,
 * sorts them by client id (stable paging) and builds the JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "broker/admin_internal.h"
#include "broker/adminq.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define ID_MAX 65536 /* client ids are at most 65535 bytes */

enum cq_kind {
    CQ_CLIENTS,  /* GET /clients: every worker, filtered */
    CQ_CLIENT,   /* GET /clients/ID: the owner */
    CQ_KICK,     /* DELETE /clients/ID: the owner */
    CQ_SESSIONS, /* GET /sessions: offline sessions, every worker */
    CQ_DELETE,   /* DELETE /sessions/ID: the owner */
    CQ_SUBS,     /* GET /subscriptions: every worker */
};

struct csub {
    char *filter;
    struct sub_opts o;
};

/* One session as a worker saw it. */
struct crec {
    char *client_id, *username;
    char address[STREAM_PEER_MAX];
    int port;
    uint8_t version;
    bool connected, clean_start, tls, will;
    uint16_t keepalive;
    int64_t connected_at;
    int64_t expires_at; /* unix s; -1 = never or not offline */
    uint32_t session_expiry;
    size_t nsubs;
    uint32_t queued, inflight;
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
    struct csub *subs; /* CQ_CLIENT: all; CQ_SUBS: those matching */
    size_t nsubl;
};

struct cpart {
    struct crec *v;
    size_t n, cap;
    bool oom;
};

enum { ST_OK, ST_NONE, ST_CONNECTED }; /* outcome of kick / delete on the owner */

struct cq {
    struct adminq q; /* first: the adminq callbacks get it back */
    enum cq_kind kind;
    /* What is asked. */
    char *id; /* CQ_CLIENT, CQ_KICK, CQ_DELETE */
    size_t idlen;
    char search[256], user[256], filter[256];
    bool has_search, has_user, has_filter;
    int connected; /* -1 any, 0, 1 */
    bool with_will, del_session;
    long long limit, offset;
    char who[64]; /* the admin, for the owner's log line */
    char from[STREAM_PEER_MAX];
    /* Answers: one part per worker, each written by its worker only. */
    struct cpart *parts;
    int nparts;
    int status; /* CQ_KICK, CQ_DELETE: ST_* (the owner only) */
};

/* ---- on the workers ----------------------------------------------------- */

static struct crec *part_add(struct cpart *p) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct crec *v = realloc(p->v, cap * sizeof(*v));
        if (!v) {
            p->oom = true;
            return NULL;
        }
        p->v = v;
        p->cap = cap;
    }
    struct crec *r = &p->v[p->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static void crec_free(struct crec *r) {
    free(r->client_id);
    free(r->username);
    for (size_t i = 0; i < r->nsubl; i++)
        free(r->subs[i].filter);
    free(r->subs);
}

/* Copy the session's (and its connection's) figures; subs: the subscriptions
 * too (all, or those whose filter contains `only`). */
static bool crec_fill(struct crec *r, struct session *s, bool subs, const char *only) {
    struct conn *c = s->conn;
    r->client_id = strdup(s->client_id);
    const char *user = c ? c->username : s->username;
    r->username = user ? strdup(user) : NULL;
    if (!r->client_id || (user && !r->username))
        return false;
    r->version = c ? c->version : s->version;
    r->connected = c != NULL;
    r->nsubs = s->nsubs;
    r->queued = s->qlen;
    r->inflight = s->ninflight;
    r->session_expiry = s->expiry;
    r->will = s->will != NULL;
    r->expires_at = -1;
    if (c) {
        snprintf(r->address, sizeof(r->address), "%s", c->si.peer);
        r->port = c->lcfg ? c->lcfg->port : 0;
        r->clean_start = c->clean_start;
        r->tls = c->si.tls_done;
        r->keepalive = c->keep_alive;
        r->connected_at = c->connected_at;
        r->bytes_in = c->bytes_in;
        r->bytes_out = c->bytes_out;
        r->msgs_in = c->msgs_in;
        r->msgs_out = c->msgs_out;
        r->will = r->will && c->will_pending;
    } else if (s->expire_at) {
        r->expires_at = (int64_t)time(NULL) + (s->expire_at - ev_now(s->w->loop) + 999) / 1000;
    }
    if (!subs || !s->nsubs)
        return true;
    r->subs = calloc(s->nsubs, sizeof(*r->subs));
    if (!r->subs)
        return false;
    for (struct sess_sub *x = s->subs; x && r->nsubl < s->nsubs; x = x->next) {
        if (only && !strstr(x->filter, only))
            continue;
        struct csub *o = &r->subs[r->nsubl];
        o->filter = strdup(x->filter);
        if (!o->filter)
            return false;
        o->o = x->opts;
        r->nsubl++;
    }
    return true;
}

struct walk {
    struct cq *q;
    struct cpart *p;
};

static void collect_one(void *ctx, void *val) {
    struct walk *k = ctx;
    struct cq *q = k->q;
    struct session *s = val;
    if (s->dead || k->p->oom)
        return;
    bool online = s->conn != NULL;
    if (q->kind == CQ_SESSIONS && online)
        return;
    if (q->kind == CQ_CLIENTS) {
        if (q->connected >= 0 && online != (q->connected == 1))
            return;
        if (q->has_search && !strstr(s->client_id, q->search))
            return;
        const char *user = online ? s->conn->username : s->username;
        if (q->has_user && (!user || strcmp(user, q->user) != 0))
            return;
    }
    if (q->kind == CQ_SUBS && !s->nsubs)
        return;
    struct crec *r = part_add(k->p);
    if (!r)
        return;
    if (!crec_fill(r, s, q->kind == CQ_SUBS, q->has_filter ? q->filter : NULL))
        k->p->oom = true;
    else if (q->kind == CQ_SUBS && !r->nsubl) {
        crec_free(r);
        k->p->n--;
    }
}

/* The owner's part: one session by id. */
static void collect_owner(struct worker *w, struct cq *q, struct cpart *p) {
    struct session *s = strmap_get(&w->sessions, q->id, q->idlen);
    if (s && s->dead)
        s = NULL;
    if (q->kind == CQ_CLIENT) {
        struct crec *r = s ? part_add(p) : NULL;
        if (r && !crec_fill(r, s, true, NULL))
            p->oom = true;
        return;
    }
    if (q->kind == CQ_KICK) {
        if (!s || !s->conn) {
            q->status = ST_NONE;
            return;
        }
        log_notice("Client %s kicked by admin %s from %s (%s, session %s).", s->client_id, q->who,
                   q->from, q->with_will ? "will published" : "no will",
                   q->del_session ? "deleted" : "kept");
        session_ref(s);
        struct conn *c = s->conn;
        if (!q->with_will)
            c->will_pending = false;
        proto_fail(c, MQTT_RC_ADMINISTRATIVE_ACTION, "kicked by an admin");
        if (q->del_session && !s->dead)
            session_end(s);
        session_unref(s);
        q->status = ST_OK;
        return;
    }
    /* CQ_DELETE */
    if (!s) {
        q->status = ST_NONE;
        return;
    }
    if (s->conn) {
        q->status = ST_CONNECTED;
        return;
    }
    log_notice("Session of client %s deleted by admin %s from %s.", s->client_id, q->who, q->from);
    session_end(s);
    q->status = ST_OK;
}

static void cq_collect(struct worker *w, struct adminq *aq) {
    struct cq *q = (struct cq *)aq;
    struct cpart *p = &q->parts[q->nparts == 1 ? 0 : w->id];
    if (q->kind == CQ_CLIENT || q->kind == CQ_KICK || q->kind == CQ_DELETE) {
        collect_owner(w, q, p);
        return;
    }
    struct walk k = {q, p};
    strmap_each(&w->sessions, collect_one, &k);
}

/* ---- on the asking worker ------------------------------------------------ */

static void cq_destroy(struct adminq *aq) {
    struct cq *q = (struct cq *)aq;
    for (int i = 0; i < q->nparts; i++) {
        for (size_t k = 0; k < q->parts[i].n; k++)
            crec_free(&q->parts[i].v[k]);
        free(q->parts[i].v);
    }
    free(q->parts);
    free(q->id);
    free(q);
}

static const char *proto_name(uint8_t v) {
    return v == MQTT_V31 ? "3.1" : v == MQTT_V311 ? "3.1.1" : v == MQTT_V5 ? "5.0" : NULL;
}

static void add_str_or_null(cJSON *o, const char *name, const char *v) {
    if (v)
        cJSON_AddStringToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *client_json(const struct crec *r, bool detail) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "client_id", r->client_id);
    add_str_or_null(o, "username", r->username);
    add_str_or_null(o, "address", r->connected ? r->address : NULL);
    if (r->connected)
        cJSON_AddNumberToObject(o, "listener_port", r->port);
    else
        cJSON_AddNullToObject(o, "listener_port");
    add_str_or_null(o, "protocol", proto_name(r->version));
    if (r->connected) {
        cJSON_AddNumberToObject(o, "keepalive", r->keepalive);
        cJSON_AddNumberToObject(o, "connected_at", (double)r->connected_at);
    } else {
        cJSON_AddNullToObject(o, "keepalive");
        cJSON_AddNullToObject(o, "connected_at");
    }
    cJSON_AddBoolToObject(o, "clean_start", r->clean_start);
    cJSON_AddBoolToObject(o, "connected", r->connected);
    cJSON_AddNumberToObject(o, "subscriptions", (double)r->nsubs);
    cJSON_AddNumberToObject(o, "queued", r->queued);
    cJSON_AddNumberToObject(o, "inflight", r->inflight);
    if (!detail)
        return o;
    cJSON_AddNumberToObject(o, "bytes_in", (double)r->bytes_in);
    cJSON_AddNumberToObject(o, "bytes_out", (double)r->bytes_out);
    cJSON_AddNumberToObject(o, "messages_in", (double)r->msgs_in);
    cJSON_AddNumberToObject(o, "messages_out", (double)r->msgs_out);
    if (r->session_expiry == UINT32_MAX)
        cJSON_AddNullToObject(o, "session_expiry"); /* never */
    else
        cJSON_AddNumberToObject(o, "session_expiry", r->session_expiry);
    if (r->expires_at >= 0)
        cJSON_AddNumberToObject(o, "expires_at", (double)r->expires_at);
    else
        cJSON_AddNullToObject(o, "expires_at");
    cJSON *subs = cJSON_AddArrayToObject(o, "subscription_list");
    for (size_t i = 0; subs && i < r->nsubl; i++) {
        const struct csub *s = &r->subs[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToArray(subs, j);
        cJSON_AddStringToObject(j, "filter", s->filter);
        cJSON_AddNumberToObject(j, "qos", s->o.qos);
        cJSON_AddBoolToObject(j, "no_local", s->o.no_local);
        cJSON_AddBoolToObject(j, "retain_as_published", s->o.retain_as_published);
        cJSON_AddNumberToObject(j, "retain_handling", s->o.retain_handling);
        if (s->o.sub_id)
            cJSON_AddNumberToObject(j, "identifier", s->o.sub_id);
        else
            cJSON_AddNullToObject(j, "identifier");
    }
    cJSON_AddBoolToObject(o, "tls", r->tls);
    cJSON_AddBoolToObject(o, "will", r->will);
    return o;
}

static cJSON *session_json(const struct crec *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "client_id", r->client_id);
    add_str_or_null(o, "username", r->username);
    cJSON_AddNumberToObject(o, "queued", r->queued);
    cJSON_AddNumberToObject(o, "inflight", r->inflight);
    if (r->expires_at >= 0)
        cJSON_AddNumberToObject(o, "expires_at", (double)r->expires_at);
    else
        cJSON_AddNullToObject(o, "expires_at");
    cJSON_AddNumberToObject(o, "subscriptions", (double)r->nsubs);
    add_str_or_null(o, "protocol", proto_name(r->version));
    return o;
}

/* One subscription: "$share/G/F" is shown as filter F with "share": G. */
static cJSON *sub_json(const struct crec *r, const struct csub *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "client_id", r->client_id);
    const char *f = s->filter, *slash;
    if (strncmp(f, "$share/", 7) == 0 && (slash = strchr(f + 7, '/'))) {
        cJSON_AddStringToObject(o, "filter", slash + 1);
        char *g = strndup(f + 7, (size_t)(slash - f - 7));
        add_str_or_null(o, "share", g);
        free(g);
    } else {
        cJSON_AddStringToObject(o, "filter", f);
        cJSON_AddNullToObject(o, "share");
    }
    cJSON_AddNumberToObject(o, "qos", s->o.qos);
    return o;
}

static int crec_cmp(const void *a, const void *b) {
    const struct crec *const *x = a, *const *y = b;
    return strcmp((*x)->client_id, (*y)->client_id);
}

static void cq_answer(struct conn *c, struct adminq *aq) {
    struct cq *q = (struct cq *)aq;
    if (!c)
        return; /* closed or timed out meanwhile */
    size_t n = 0;
    bool oom = false;
    for (int i = 0; i < q->nparts; i++) {
        n += q->parts[i].n;
        oom |= q->parts[i].oom;
    }
    if (oom) {
        admin_respond_error(c, 500, NULL, "out of memory");
        return;
    }
    if (q->kind == CQ_CLIENT) {
        if (!n)
            admin_respond_error(c, 404, NULL, "no such client");
        else
            admin_respond_json(c, 200, NULL, client_json(&q->parts[0].v[0], true));
        return;
    }
    if (q->kind == CQ_KICK || q->kind == CQ_DELETE) {
        if (q->status == ST_NONE) {
            admin_respond_error(
                c, 404, NULL, q->kind == CQ_KICK ? "no such client connected" : "no such session");
            return;
        }
        if (q->status == ST_CONNECTED) {
            admin_respond_error(c, 409, NULL,
                                "the client is connected (disconnect it first: DELETE "
                                "/api/v1/clients/ID?session=delete)");
            return;
        }
        cJSON *o = cJSON_CreateObject();
        if (o)
            cJSON_AddBoolToObject(o, q->kind == CQ_KICK ? "disconnected" : "deleted", true);
        admin_respond_json(c, 200, NULL, o);
        return;
    }
    /* Lists: merge, sort by client id, one page. */
    struct crec **all = calloc(n ? n : 1, sizeof(*all));
    cJSON *o = cJSON_CreateObject(), *items = o ? cJSON_AddArrayToObject(o, "items") : NULL;
    if (!all || !items) {
        free(all);
        cJSON_Delete(o);
        admin_respond_error(c, 500, NULL, "out of memory");
        return;
    }
    size_t k = 0;
    for (int i = 0; i < q->nparts; i++)
        for (size_t j = 0; j < q->parts[i].n; j++)
            all[k++] = &q->parts[i].v[j];
    qsort(all, n, sizeof(*all), crec_cmp);
    size_t total = 0, off = (size_t)q->offset, lim = (size_t)q->limit;
    for (size_t i = 0; i < n; i++) {
        const struct crec *r = all[i];
        size_t count = q->kind == CQ_SUBS ? r->nsubl : 1;
        for (size_t s = 0; s < count; s++, total++) {
            if (total < off || total >= off + lim)
                continue;
            cJSON *j = q->kind == CQ_CLIENTS    ? client_json(r, false)
                       : q->kind == CQ_SESSIONS ? session_json(r)
                                                : sub_json(r, &r->subs[s]);
            cJSON_AddItemToArray(items, j);
        }
    }
    free(all);
    cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON_AddNumberToObject(o, "offset", (double)off);
    admin_respond_json(c, 200, NULL, o);
}

/* ---- endpoints ------------------------------------------------------------ */

static struct cq *cq_new(struct admin_req *r, enum cq_kind kind, int nparts) {
    struct cq *q = calloc(1, sizeof(*q));
    if (q)
        q->parts = calloc((size_t)nparts, sizeof(*q->parts));
    if (!q || !q->parts) {
        free(q);
        admin_respond_error(r->c, 500, NULL, "out of memory");
        return NULL;
    }
    q->kind = kind;
    q->nparts = nparts;
    q->connected = -1;
    q->q.collect = cq_collect;
    q->q.answer = cq_answer;
    q->q.destroy = cq_destroy;
    snprintf(q->who, sizeof(q->who), "%s", r->user);
    snprintf(q->from, sizeof(q->from), "%s", r->c->si.peer);
    return q;
}

static void cq_run(struct admin_req *r, struct cq *q, int target) {
    if (adminq_start(r->c, &q->q, target) < 0) {
        cq_destroy(&q->q);
        admin_respond_error(r->c, 500, NULL, "out of memory");
    }
}

/* A list's ?limit and ?offset; false after answering 400. */
static bool paging(struct admin_req *r, struct cq *q) {
    return admin_query_int(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &q->limit) &&
           admin_query_int(r, "offset", 0, 1LL << 40, 0, &q->offset);
}

/* A text query parameter into buf: false after answering 400. */
static bool text_param(struct admin_req *r, const char *name, char *buf, size_t len, bool *has) {
    long n = admin_query(r, name, buf, len);
    if (n == -2)
        return false;
    *has = n >= 0;
    return true;
}

static void do_clients(struct admin_req *r) {
    struct cq *q = cq_new(r, CQ_CLIENTS, r->c->w->b->nworkers);
    if (!q)
        return;
    char conn[16];
    bool has_conn = false;
    if (!paging(r, q) || !text_param(r, "search", q->search, sizeof(q->search), &q->has_search) ||
        !text_param(r, "user", q->user, sizeof(q->user), &q->has_user) ||
        !text_param(r, "connected", conn, sizeof(conn), &has_conn)) {
        cq_destroy(&q->q);
        return;
    }
    if (has_conn) {
        if (strcmp(conn, "true") == 0)
            q->connected = 1;
        else if (strcmp(conn, "false") == 0)
            q->connected = 0;
        else {
            cq_destroy(&q->q);
            admin_respond_error(r->c, 400, NULL, "query parameter 'connected': true or false");
            return;
        }
    }
    if (q->has_search && !q->search[0])
        q->has_search = false;
    cq_run(r, q, -1);
}

/* One client id from the path, owner-targeted query of kind. */
static void by_id(struct admin_req *r, enum cq_kind kind) {
    struct cq *q = cq_new(r, kind, 1);
    if (!q)
        return;
    q->id = malloc(ID_MAX);
    if (!q->id) {
        cq_destroy(&q->q);
        admin_respond_error(r->c, 500, NULL, "out of memory");
        return;
    }
    long n = admin_rest(r, q->id, ID_MAX);
    if (n < 0) {
        cq_destroy(&q->q);
        return;
    }
    q->idlen = (size_t)n;
    if (kind == CQ_KICK) {
        char v[16], wv[16];
        long k = admin_query(r, "session", v, sizeof(v));
        long wl = k == -2 ? -2 : admin_query(r, "will", wv, sizeof(wv));
        if (k == -2 || wl == -2) {
            cq_destroy(&q->q);
            return;
        }
        if ((k >= 0 && strcmp(v, "delete") != 0 && strcmp(v, "keep") != 0) ||
            (wl >= 0 && strcmp(wv, "true") != 0 && strcmp(wv, "false") != 0)) {
            cq_destroy(&q->q);
            admin_respond_error(r->c, 400, NULL,
                                "query parameters: session=keep|delete, will=true|false");
            return;
        }
        q->del_session = k >= 0 && strcmp(v, "delete") == 0;
        q->with_will = wl >= 0 && strcmp(wv, "true") == 0;
    }
    char shown[128];
    snprintf(shown, sizeof(shown), "%.100s%s", q->id, q->idlen > 100 ? "..." : "");
    if (kind == CQ_KICK)
        admin_audit(r, "disconnect client '%s' (session %s, will %s)", shown,
                    q->del_session ? "deleted" : "kept",
                    q->with_will ? "published" : "not published");
    else if (kind == CQ_DELETE)
        admin_audit(r, "delete session '%s'", shown);
    int owner = broker_owner(r->c->w->b, q->id, q->idlen)->id;
    cq_run(r, q, owner);
}

static void do_client(struct admin_req *r) {
    by_id(r, CQ_CLIENT);
}

static void do_kick(struct admin_req *r) {
    by_id(r, CQ_KICK);
}

static void do_session_delete(struct admin_req *r) {
    by_id(r, CQ_DELETE);
}

static void do_sessions(struct admin_req *r) {
    struct cq *q = cq_new(r, CQ_SESSIONS, r->c->w->b->nworkers);
    if (!q)
        return;
    if (!paging(r, q)) {
        cq_destroy(&q->q);
        return;
    }
    cq_run(r, q, -1);
}

static void do_subscriptions(struct admin_req *r) {
    struct cq *q = cq_new(r, CQ_SUBS, r->c->w->b->nworkers);
    if (!q)
        return;
    if (!paging(r, q) || !text_param(r, "filter", q->filter, sizeof(q->filter), &q->has_filter)) {
        cq_destroy(&q->q);
        return;
    }
    if (q->has_filter && !q->filter[0])
        q->has_filter = false;
    cq_run(r, q, -1);
}

const struct admin_route admin_clients_routes[] = {
    {"/api/v1/clients", "GET", do_clients, 0},
    {"/api/v1/clients", "GET", do_client, ADMIN_R_PREFIX},
    {"/api/v1/clients", "DELETE", do_kick, ADMIN_R_PREFIX},
    {"/api/v1/sessions", "GET", do_sessions, 0},
    {"/api/v1/sessions", "DELETE", do_session_delete, ADMIN_R_PREFIX},
    {"/api/v1/subscriptions", "GET", do_subscriptions, 0},
    {NULL, NULL, NULL, 0},
};
