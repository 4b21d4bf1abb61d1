/*
 * Password checks off the worker threads (docs/internals/auth.md).
 *
 * Verifying a password costs ~120 ms with argon2id (and a PBKDF2-SHA512 at
 * Mosquitto's iteration count is not cheap either): done on a worker's loop
 * it would stall every other client of that worker. A CONNECT that needs a
 * check is parked instead: its worker stops reading the connection, keeps
 * the CONNECT (and whatever the client pipelined after it) unconsumed in
 * the connection's input buffer, and hands a job to a small pool of
 * threads. The verdict comes back through the worker's inbox (IT_AUTH);
 * the worker then runs the same CONNECT again, this time with the verdict
 * known, and everything after it (CONNACK, session, pipelined packets) is
 * exactly as with an inline check.
 *
 * Lifetime: a job names its connection by a number (conn->auth_id, unique
 * per process), never by pointer. The worker keeps its parked connections
 * on a list; a verdict whose connection is no longer there (closed meanwhile:
 * connect_timeout, shutdown, session takeover...) is dropped. The job holds
 * a reference on the security snapshot whose password file it reads, so a
 * reload meanwhile frees nothing it uses.
 */
#ifndef HATO_BROKER_AUTHPOOL_H
#define HATO_BROKER_AUTHPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_passwd;
struct broker;
struct conn;
struct item;
struct worker;

#define AUTHPOOL_MAX_THREADS 2  /* min(2, CPUs) threads verify */
#define AUTHPOOL_MAX_QUEUED 256 /* checks waiting at once; more are refused (server busy) */

/* One password check. */
struct auth_job {
    struct auth_job *next;
    struct worker *w; /* the parked connection's worker: the verdict goes to its inbox */
    struct item *it;  /* the verdict's inbox item, allocated by the submitter */
    const struct auth_passwd *pw;
    void (*release)(void *hold); /* called with hold once pw is no longer read */
    void *hold;
    /* A check other than the password file's (plugins, plugin.h): its
     * verdict, and a new user name for the client (malloc'd) or NULL. */
    bool (*check)(void *ctx, const char *user, size_t ulen, const char *password, size_t plen,
                  char **new_username);
    void *ctx;
    void (*ctx_free)(void *ctx);
    bool has_user;
    size_t ulen, plen;
    char data[]; /* user name (ulen bytes), then the password (plen); wiped after use */
};

/* Start the pool's threads. 0, or -1 (logged). */
int authpool_start(struct broker *b);
/* Stop and join the threads; queued jobs are dropped. Safe to call twice. */
void authpool_stop(struct broker *b);

/*
 * A job for connection c, which is parked by this call (c->auth_id set, on
 * its worker's parked list; its input is no longer read). user/password are
 * copied. Returns 0, or -1 when the queue is full or out of memory (c is
 * then not parked and nothing is kept; release is not called).
 */
int authpool_submit(struct conn *c, const struct auth_passwd *pw, const char *user, size_t ulen,
                    const char *password, size_t plen, void (*release)(void *), void *hold);

/* The same with a check of its own (plugins): check(ctx, ...) runs on a pool
 * thread, then ctx_free(ctx). user may be NULL (anonymous). */
int authpool_submit_check(struct conn *c,
                          bool (*check)(void *ctx, const char *user, size_t ulen,
                                        const char *password, size_t plen, char **new_username),
                          void *ctx, void (*ctx_free)(void *ctx), const char *user, size_t ulen,
                          const char *password, size_t plen, void (*release)(void *), void *hold);

/* A parked connection closes: forget it (its verdict will be dropped). */
void authpool_unpark(struct conn *c);

/*
 * An IT_AUTH item arrived on worker w: the parked connection it is for,
 * unparked with its verdict in c->auth_done, or NULL when that connection
 * is gone. Frees the item.
 */
struct conn *authpool_verdict(struct worker *w, struct item *it);

#endif
