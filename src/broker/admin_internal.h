/*
 * What the admin API's endpoint files share (admin.c, admin_clients.c,
 * admin_users.c, admin_limits.c, admin_retained.c, admin_console.c): the request as routed,
 * the answers, and the route tables. Not for the rest of the broker.
 *
 * A route is a path and a method. With ADMIN_R_PREFIX the path is a prefix:
 * "/api/v1/clients" with the flag matches "/api/v1/clients/ID" (r->rest is
 * then "ID", still percent-encoded; admin_rest decodes it) but not
 * "/api/v1/clients" itself, which is a route of its own. Several routes may
 * share a path with different methods; a method none of them has is 405
 * with their Allow list.
 *
 * Roles: every route but /healthz and login needs an authenticated admin.
 * A route other than GET changes something (ADMIN_R_READ makes a POST one
 * that does not, as login and logout) and needs the full role and, with a
 * session cookie, the CSRF token.
 */
#ifndef HATO_BROKER_ADMIN_INTERNAL_H
#define HATO_BROKER_ADMIN_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "broker/broker.h"
#include "transport/http.h"

#define ADMIN_CT_JSON "application/json"

/* c->admin_wait of a request parked for a cross-worker query (adminq.h);
 * admin.c's other ADMIN_WAIT_* are below it. */
#define ADMIN_WAIT_QUERY 3

enum admin_role { ADMIN_ROLE_NONE, ADMIN_ROLE_READ, ADMIN_ROLE_FULL };

struct admin_req {
    struct conn *c;
    const struct http_head *h;
    const char *body;
    size_t blen;
    const char *rest; /* after a prefix route's path and its '/', up to '?' */
    size_t rest_len;
    char user[64];        /* the admin, "" before authentication */
    enum admin_role role; /* the admin's role */
    bool get;             /* method GET */
};

enum {
    ADMIN_R_PREFIX = 1, /* path is a prefix: PATH/REST */
    ADMIN_R_OPEN = 2,   /* no authentication (/healthz, login) */
    ADMIN_R_READ = 4,   /* not GET, but changes nothing (read role may call it) */
};

struct admin_route {
    const char *path, *method; /* path NULL: end of a table */
    void (*fn)(struct admin_req *r);
    unsigned flags;
};

/* The tables of the endpoint files, each ended by a {NULL} row. */
extern const struct admin_route admin_clients_routes[];
extern const struct admin_route admin_users_routes[];
extern const struct admin_route admin_limits_routes[];
extern const struct admin_route admin_retained_routes[];
extern const struct admin_route admin_console_routes[];

/* At start-up: warn when the console's directory (admin_console_dir or
 * the installed one) is missing; /console/ then answers 404. */
void admin_console_check(const struct hato_config *cfg);

/* Answer body (taken, may be NULL: 500) as JSON with status; extra header
 * lines ending in CRLF, or NULL. */
void admin_respond_json(struct conn *c, int status, const char *extra, cJSON *body);
/* {"error": why} with status. */
void admin_respond_error(struct conn *c, int status, const char *extra, const char *why);

/* The request body as JSON (the caller deletes it); NULL after answering
 * 400 when it is not JSON of the type wanted (cJSON_Object, cJSON_Array,
 * or 0 for any). */
cJSON *admin_body_json(struct admin_req *r, int type);

/* r->rest percent-decoded into out: its length, or -1 after answering 400
 * (bad escape, longer than outlen - 1, empty). */
long admin_rest(struct admin_req *r, char *out, size_t outlen);

/* Query parameter name decoded into out: length; -1 absent; -2 after
 * answering 400 (malformed, too long). */
long admin_query(struct admin_req *r, const char *name, char *out, size_t outlen);
/* An integer query parameter in [min, max], def when absent; false after
 * answering 400. */
bool admin_query_int(struct admin_req *r, const char *name, long long min, long long max,
                     long long def, long long *out);

/* Log a change made through the API: "Admin USER from ADDR on port N: WHAT."
 * at notice level (every write is logged, docs/api.md). */
void admin_audit(struct admin_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
