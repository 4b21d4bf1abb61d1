/*
 * The broker's security: who may connect (password files, allow_anonymous),
 * what they may do (ACL files), reload on SIGHUP, and the slowdown of
 * repeated login failures from one address.
 *
 * The loaded files form an immutable, reference-counted snapshot. SIGHUP
 * builds a new one (all files, or none: a bad file keeps the previous
 * snapshot) and bumps a generation counter; each worker adopts the newest
 * snapshot at its next wake-up or tick, re-checks its connected clients
 * (a user removed from the password file is disconnected) and from then on
 * checks with it. Checks read only the worker's own snapshot: no lock on
 * the delivery path, and one branch when no acl_file is configured.
 */
#ifndef HATO_BROKER_SECURITY_H
#define HATO_BROKER_SECURITY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/acl.h"

struct broker;
struct worker;
struct conn;
struct session;
struct hato_listener;
struct mqtt_packet;

struct auth_passwd;

/* The files of one scope: the global settings, or one listener's when
 * per_listener_settings is true. NULL = not configured. */
struct sec_scope {
    struct auth_passwd *pw;
    struct auth_acl *acl;
};

struct sec_snap {
    atomic_uint refs;
    const struct hato_config *cfg; /* loaded from; per[] is indexed by its listeners */
    bool any_acl;                  /* some acl_file is in effect: checks are needed */
    struct sec_scope global;
    struct sec_scope *per; /* per listener (index in cfg->listeners), or NULL */
    size_t n;
};

/* Load the files named by the config. Returns 0, or -1 after logging
 * "FILE:LINE: reason" (start-up stops). */
int security_init(struct broker *b);
void security_free(struct broker *b);
/* SIGHUP: re-read every password and ACL file (main thread). */
void security_reload(struct broker *b);

/* Worker side: adopt the newest snapshot if there is one (cheap when not),
 * and re-check the worker's connected clients after a reload. Called from
 * the loop's wake-up and tick, never in the middle of packet handling. */
void security_worker_update(struct worker *w);
/* Adopt the newest snapshot only (safe anywhere on the worker's thread);
 * the client re-check waits for security_worker_update. */
void security_worker_adopt(struct worker *w);
unsigned security_generation(const struct broker *b);
void security_worker_release(struct worker *w);

enum sec_auth {
    SEC_AUTH_OK = 0,
    SEC_AUTH_BAD_CREDENTIALS, /* wrong password */
    SEC_AUTH_NOT_AUTHORISED,  /* anonymous (or unverifiable) and not allowed */
    SEC_AUTH_PENDING,         /* the password is being checked: the connection is parked */
    SEC_AUTH_BUSY,            /* a check is needed but the pool's queue is full */
    SEC_AUTH_UNKNOWN_USER,    /* user name not in the password file */
    SEC_AUTH_NO_PASSWORD,     /* user name without a password */
};

/* The reason of a refusal for the log ("wrong password", "unknown user",
 * ...); NULL for SEC_AUTH_OK. The client is only told "bad user name or
 * password" or "not authorised". */
const char *security_auth_reason(enum sec_auth r);

/* Authenticate a CONNECT on its owning worker. c->username is already set
 * (from CONNECT or TLS). A password is never verified here: the check goes
 * to the pool (authpool.h) and the answer is SEC_AUTH_PENDING; when the
 * verdict is back, the same CONNECT runs again and gets it from here. */
enum sec_auth security_authenticate(struct conn *c, const struct mqtt_packet *p);

/* HTTP basic auth of a metrics listener (metrics.c): do user and password
 * match the password file in effect for listener l, in the worker's
 * snapshot? False when no password file applies. */
bool security_check_password(struct worker *w, const struct hato_listener *l, const char *user,
                             size_t ulen, const char *password, size_t plen);

/* Record a login failure from the address of peer ("ip:port", "[ip6]:port"
 * or a socket path); returns how many ms to wait before answering it. */
int64_t security_fail_delay(struct broker *b, const char *peer);

/* True while a failed login from this address still waits for its
 * refusal: another login from it meanwhile is refused without verifying
 * its password (parallel guessing gets no answers, and costs no hashing). */
bool security_fail_pending(struct broker *b, const char *peer);

/* ACL decision with the worker's snapshot (true when no ACL applies);
 * call after security_acl_active returned true. */
bool security_acl(struct worker *w, const struct hato_listener *l, const char *user,
                  const char *client_id, const char *topic, size_t tlen, int access);

/* check_retain_source: may the publisher of retained message m (m->src, its
 * identity at publish time) still write its topic under the ACL in force?
 * True when m has no recorded publisher (the broker's own) or no ACL applies. */
struct msg;
bool security_retain_source_ok(struct worker *w, const struct msg *m);
/* Delivery check for a session: may it read this topic now? */
static inline bool security_may_read(struct worker *w, const struct session *s, const char *topic,
                                     size_t tlen);

/* A name made safe for a log line (control bytes shown as '?'), in buf. */
const char *security_printable(const char *s, char *buf, size_t cap);

/* ---- inline ------------------------------------------------------------------- */

#include "broker/broker.h"

/* True when ACL checks are needed now. A reload is seen by the next check
 * after it, whatever this worker was doing (one relaxed load of a rarely
 * written counter). */
static inline bool security_acl_active(struct worker *w) {
    if (__builtin_expect(security_generation(w->b) != w->sec_gen, 0))
        security_worker_adopt(w);
    return w->sec && w->sec->any_acl;
}

static inline bool security_may_read(struct worker *w, const struct session *s, const char *topic,
                                     size_t tlen) {
    if (!security_acl_active(w))
        return true;
    return security_acl(w, s->lcfg, s->username, s->client_id, topic, tlen, AUTH_ACL_READ);
}

#endif
