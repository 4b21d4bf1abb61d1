/*
 * The durable store: LMDB environment, writer thread and group commit.
 * See store.h for the contract and docs/internals/store.md for the design.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#if HATO_WITH_PERSISTENCE
#include <lmdb.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "store/record.h"

#define STORE_FORMAT 1
#define BATCH_SYNC_MS 50
#define INITIAL_MAP (1ull << 30)

const char *const store_db_names[SDB_N] = {"meta", "msgs",  "mrefs", "retain",
                                           "sess", "queue", "inpid"};

enum op_kind { OP_PUT, OP_DEL, OP_PUT_CURRENT, OP_MSG_PUT, OP_ENTRY_DEL, OP_PURGE, OP_RELEASE };

/*
 * One operation, laid out in a chunk right after the previous one: header, key, and (when
 * val_inline) the value. `size` (a multiple of 8) steps to the next operation.
 */
struct store_op {
    uint32_t size;
    uint8_t kind;
    uint8_t db;
    bool val_inline; /* val points into this op, after the key */
    uint32_t refs;
    uint64_t id;
    void *val;
    size_t vlen;
    store_value_fn fn;
    void *ctx;
    size_t klen;
    uint8_t key[];
};

/* A run of operations of one batch. The first chunk of a batch is small (an idle turn with
 * one acknowledgement costs little), the next ones double up to CHUNK_MAX. */
#define CHUNK_MIN 4096u
#define CHUNK_MAX (64u * 1024)

struct store_chunk {
    struct store_chunk *next;
    uint32_t used, cap;
    uint32_t nops, nrel; /* operations, of which OP_RELEASE */
    bool taken;          /* holds a malloc'd value (store_put_take) to free with it */
    _Alignas(8) uint8_t data[];
};

static inline struct store_op *chunk_op(struct store_chunk *c, uint32_t off) {
    return (struct store_op *)(void *)(c->data + off);
}

#if HATO_WITH_PERSISTENCE
/* Acknowledgements of one batch, waiting for the sync that makes its commit durable. */
struct relgroup {
    struct relgroup *next;
    void **args;
    size_t n;
    bool ok;
    bool needs_sync;
};

struct store {
    MDB_env *env;
    MDB_dbi dbi[SDB_N];
    char *path;
    enum store_sync sync;
    bool readonly;
    size_t mapsize;
    pid_t opened_by; /* LMDB environments do not survive fork() */
    atomic_uint_fast64_t next_id;

    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct store_chunk *head, *tail;
    bool stop;
    store_release_fn release;
    void *release_ctx;
    store_commit_fn on_commit;
    void *commit_ctx;

    /* STORE_SYNC_ALWAYS: the syncer thread (see writer()). */
    pthread_t syncer;
    bool syncer_started;
    pthread_mutex_t slock;
    pthread_cond_t scond;
    struct relgroup *shead, *stail;
    bool sstop;

    atomic_uint_fast64_t commits, failed, ops, syncs;
};

#endif /* HATO_WITH_PERSISTENCE */

/* ---- batches ---------------------------------------------------------- */

static struct store_op *op_new_extra(struct store_batch *b, enum op_kind kind, enum store_db db,
                                     const void *key, size_t klen, size_t extra) {
    size_t need = (sizeof(struct store_op) + klen + extra + 7) & ~(size_t)7;
    struct store_chunk *c = b->tail;
    if (!c || c->cap - c->used < need) {
        size_t cap = c ? (size_t)c->cap * 2 : CHUNK_MIN - sizeof(*c);
        if (cap > CHUNK_MAX)
            cap = CHUNK_MAX;
        if (cap < need)
            cap = need;
        if (need > UINT32_MAX || !(c = malloc(sizeof(*c) + cap))) {
            log_error("Error: out of memory building a store batch; a change is not saved.");
            return NULL;
        }
        *c = (struct store_chunk){.cap = (uint32_t)cap};
        if (b->tail)
            b->tail->next = c;
        else
            b->head = c;
        b->tail = c;
    }
    struct store_op *op = chunk_op(c, c->used);
    memset(op, 0, sizeof(*op));
    op->size = (uint32_t)need;
    op->kind = (uint8_t)kind;
    op->db = (uint8_t)db;
    op->klen = klen;
    if (klen)
        memcpy(op->key, key, klen);
    c->used += (uint32_t)need;
    c->nops++;
    if (kind == OP_RELEASE)
        c->nrel++;
    b->n++;
    return op;
}

static struct store_op *op_new(struct store_batch *b, enum op_kind kind, enum store_db db,
                               const void *key, size_t klen) {
    return op_new_extra(b, kind, db, key, klen, 0);
}

/* One allocation for the op, its key and a copy of its value. */
static struct store_op *op_new_val(struct store_batch *b, enum op_kind kind, enum store_db db,
                                   const void *key, size_t klen, const void *val, size_t vlen) {
    struct store_op *op = op_new_extra(b, kind, db, key, klen, vlen);
    if (!op)
        return NULL;
    op->val = op->key + klen;
    op->val_inline = true;
    op->vlen = vlen;
    if (vlen)
        memcpy(op->val, val, vlen);
    return op;
}

void store_put_take(struct store_batch *b, enum store_db db, const void *key, size_t klen,
                    void *val, size_t vlen) {
    struct store_op *op = op_new(b, OP_PUT, db, key, klen);
    if (!op) {
        free(val);
        return;
    }
    op->val = val;
    op->vlen = vlen;
    b->tail->taken = true;
}

void store_put(struct store_batch *b, enum store_db db, const void *key, size_t klen,
               const void *val, size_t vlen) {
    op_new_val(b, OP_PUT, db, key, klen, val, vlen);
}

void store_del(struct store_batch *b, enum store_db db, const void *key, size_t klen) {
    op_new(b, OP_DEL, db, key, klen);
}

void store_put_current(struct store_batch *b, enum store_db db, const void *key, size_t klen,
                       store_value_fn fn, void *ctx) {
    struct store_op *op = op_new(b, OP_PUT_CURRENT, db, key, klen);
    if (op) {
        op->fn = fn;
        op->ctx = ctx;
    }
}

void store_msg_put(struct store_batch *b, uint64_t id, const void *val, size_t vlen,
                   uint32_t refs) {
    uint8_t k[8];
    rec_key_u64(k, id);
    struct store_op *op = op_new_val(b, OP_MSG_PUT, SDB_MSGS, k, 8, val, vlen);
    if (!op)
        return;
    op->id = id;
    op->refs = refs;
}

void store_entry_del(struct store_batch *b, const void *key, size_t klen, uint64_t msg_id) {
    struct store_op *op = op_new(b, OP_ENTRY_DEL, SDB_QUEUE, key, klen);
    if (op)
        op->id = msg_id;
}

void store_session_purge(struct store_batch *b, const void *prefix, size_t plen) {
    op_new(b, OP_PURGE, SDB_QUEUE, prefix, plen);
}

void store_release(struct store_batch *b, void *arg) {
    struct store_op *op = op_new(b, OP_RELEASE, SDB_META, NULL, 0);
    if (op)
        op->ctx = arg;
}

static void ops_free(struct store_chunk *c) {
    while (c) {
        struct store_chunk *n = c->next;
        for (uint32_t off = 0; c->taken && off < c->used; off += chunk_op(c, off)->size) {
            struct store_op *op = chunk_op(c, off);
            if (!op->val_inline)
                free(op->val);
        }
        free(c);
        c = n;
    }
}

void store_batch_discard(struct store_batch *b) {
    ops_free(b->head);
    b->head = b->tail = NULL;
    b->n = 0;
}

/* ---- applying --------------------------------------------------------- */

#if HATO_WITH_PERSISTENCE

static int deref(struct store *st, MDB_txn *txn, uint64_t id) {
    uint8_t k[8];
    rec_key_u64(k, id);
    MDB_val key = {8, k}, val;
    /* No count stored means one reference (the common case: one receiver). */
    int rc = mdb_get(txn, st->dbi[SDB_MREFS], &key, &val);
    if (rc == MDB_NOTFOUND) {
        rc = mdb_del(txn, st->dbi[SDB_MSGS], &key, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc)
        return rc;
    uint32_t n = 0;
    if (val.mv_size == 4) {
        struct rread r = {val.mv_data, 4, 0, false};
        n = rread_u32(&r);
    }
    if (n <= 1) {
        rc = mdb_del(txn, st->dbi[SDB_MREFS], &key, NULL);
        if (rc == 0 || rc == MDB_NOTFOUND)
            rc = mdb_del(txn, st->dbi[SDB_MSGS], &key, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    uint8_t c[4] = {(uint8_t)(n - 1), (uint8_t)((n - 1) >> 8), (uint8_t)((n - 1) >> 16),
                    (uint8_t)((n - 1) >> 24)};
    MDB_val nv = {4, c};
    return mdb_put(txn, st->dbi[SDB_MREFS], &key, &nv, 0);
}

static int purge(struct store *st, MDB_txn *txn, enum store_db db, const uint8_t *prefix,
                 size_t plen) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->dbi[db], &cur);
    if (rc)
        return rc;
    MDB_val key = {plen, (void *)prefix}, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0) {
        if (key.mv_size < plen || memcmp(key.mv_data, prefix, plen) != 0)
            break;
        if (db == SDB_QUEUE) {
            struct rread r = {val.mv_data, val.mv_size, 0, false};
            struct rec_entry e;
            if (rec_entry_decode(&r, &e) == 0 && e.msg_id && (rc = deref(st, txn, e.msg_id)) != 0)
                break;
        }
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        /* After a delete MDB_NEXT yields the record that followed, not the one after it. */
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_one(struct store *st, MDB_txn *txn, struct store_op *op) {
    MDB_val key = {op->klen, op->key};
    MDB_dbi dbi = st->dbi[op->db];
    int rc = 0;
    switch (op->kind) {
    case OP_PUT: {
        MDB_val val = {op->vlen, op->val};
        rc = mdb_put(txn, dbi, &key, &val, 0);
        break;
    }
    case OP_DEL:
        rc = mdb_del(txn, dbi, &key, NULL);
        break;
    case OP_PUT_CURRENT: {
        uint8_t *v = NULL;
        size_t vl = 0;
        if (op->fn(op->ctx, op->key, op->klen, &v, &vl) == 1) {
            MDB_val val = {vl, v};
            rc = v ? mdb_put(txn, dbi, &key, &val, 0) : ENOMEM;
            free(v);
        } else {
            rc = mdb_del(txn, dbi, &key, NULL);
        }
        break;
    }
    case OP_MSG_PUT: {
        MDB_val val = {op->vlen, op->val};
        rc = mdb_put(txn, dbi, &key, &val, 0);
        if (rc == 0 && op->refs != 1) {
            uint8_t c[4] = {(uint8_t)op->refs, (uint8_t)(op->refs >> 8), (uint8_t)(op->refs >> 16),
                            (uint8_t)(op->refs >> 24)};
            MDB_val rv = {4, c};
            rc = mdb_put(txn, st->dbi[SDB_MREFS], &key, &rv, 0);
        }
        break;
    }
    case OP_ENTRY_DEL:
        rc = mdb_del(txn, dbi, &key, NULL);
        if (rc == 0 && op->id) /* id 0: the message was inline */
            rc = deref(st, txn, op->id);
        break;
    case OP_PURGE:
        rc = purge(st, txn, SDB_QUEUE, op->key, op->klen);
        if (rc == 0)
            rc = purge(st, txn, SDB_INPID, op->key, op->klen);
        break;
    case OP_RELEASE:
        break;
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Apply ops in one transaction and commit; grows the map when full. */
static int commit_ops(struct store *st, struct store_chunk *ops) {
    for (int attempt = 0; attempt < 4; attempt++) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (rc)
            return rc;
        for (struct store_chunk *c = ops; c && rc == 0; c = c->next)
            for (uint32_t off = 0; off < c->used && rc == 0; off += chunk_op(c, off)->size)
                rc = apply_one(st, txn, chunk_op(c, off));
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
        if (rc != MDB_MAP_FULL)
            return rc;
        size_t n = st->mapsize * 2;
        if (mdb_env_set_mapsize(st->env, n) != 0)
            return MDB_MAP_FULL;
        log_notice("Store map grown to %zu MiB.", n >> 20);
        st->mapsize = n;
    }
    return MDB_MAP_FULL;
}

static const char *errtext(int rc) {
    return rc == ENOSPC ? "no space left on device" : mdb_strerror(rc);
}

static void run_batch(struct store *st, struct store_chunk *ops) {
    size_t n = 0, nrel = 0;
    for (struct store_chunk *c = ops; c; c = c->next) {
        n += c->nops;
        nrel += c->nrel;
    }
    bool writes = n > nrel;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = writes ? commit_ops(st, ops) : 0;
    atomic_fetch_add(&st->ops, n);
    if (writes) {
        if (rc == 0) {
            atomic_fetch_add(&st->commits, 1);
            if (st->on_commit) {
                clock_gettime(CLOCK_MONOTONIC, &t1);
                st->on_commit(st->commit_ctx, (double)(t1.tv_sec - t0.tv_sec) +
                                                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            }
        } else {
            atomic_fetch_add(&st->failed, 1);
            log_error("Error: store commit failed in %s: %s; %zu acknowledgement%s withheld.",
                      st->path, errtext(rc), nrel, nrel == 1 ? "" : "s");
        }
    }
    if (nrel && st->release) {
        void **args = malloc(nrel * sizeof(*args));
        if (args) {
            size_t k = 0;
            for (struct store_chunk *c = ops; c; c = c->next)
                for (uint32_t off = 0, left = c->nrel; left && off < c->used;
                     off += chunk_op(c, off)->size) {
                    struct store_op *op = chunk_op(c, off);
                    if (op->kind == OP_RELEASE) {
                        args[k++] = op->ctx;
                        left--;
                    }
                }
            struct relgroup *g = st->syncer_started ? malloc(sizeof(*g)) : NULL;
            if (g) {
                /* In order behind the groups already waiting for their sync. */
                *g = (struct relgroup){NULL, args, nrel, rc == 0, writes && rc == 0};
                pthread_mutex_lock(&st->slock);
                if (st->stail)
                    st->stail->next = g;
                else
                    st->shead = g;
                st->stail = g;
                pthread_cond_signal(&st->scond);
                pthread_mutex_unlock(&st->slock);
            } else {
                st->release(st->release_ctx, args, nrel, rc == 0);
                free(args);
            }
        }
    }
    ops_free(ops);
}

/*
 * STORE_SYNC_ALWAYS runs LMDB with MDB_NOMETASYNC: a commit fdatasyncs its data pages,
 * then writes the meta page that makes them current without waiting for it. The syncer
 * makes that meta page durable (mdb_env_sync) and only then releases the commit's
 * acknowledgements, while the writer already builds and commits the next transaction:
 * one fsync per commit on the writer's path instead of two, and durability unchanged
 * (data pages are always on disk before a meta page that points at them).
 */
static void *syncer(void *arg) {
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "hato-sync");
    pthread_mutex_lock(&st->slock);
    for (;;) {
        while (!st->shead && !st->sstop)
            pthread_cond_wait(&st->scond, &st->slock);
        struct relgroup *g = st->shead;
        st->shead = st->stail = NULL;
        bool stop = st->sstop;
        pthread_mutex_unlock(&st->slock);
        bool need = false;
        for (struct relgroup *x = g; x; x = x->next)
            need |= x->needs_sync;
        if (need) {
            int rc = mdb_env_sync(st->env, 1);
            if (rc) {
                log_error("Error: store sync failed in %s: %s; acknowledgements withheld.",
                          st->path, errtext(rc));
                for (struct relgroup *x = g; x; x = x->next)
                    if (x->needs_sync)
                        x->ok = false;
            } else {
                atomic_fetch_add(&st->syncs, 1);
            }
        }
        while (g) {
            struct relgroup *n = g->next;
            st->release(st->release_ctx, g->args, g->n, g->ok);
            free(g->args);
            free(g);
            g = n;
        }
        pthread_mutex_lock(&st->slock);
        if (stop && !st->shead)
            break;
    }
    pthread_mutex_unlock(&st->slock);
    return NULL;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *writer(void *arg) {
    struct store *st = arg;
    pthread_setname_np(pthread_self(), "hato-store");
    bool unsynced = false;
    int64_t last_sync = mono_ms();
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (!st->head && !st->stop) {
            if (unsynced) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += BATCH_SYNC_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
                    break;
            } else {
                pthread_cond_wait(&st->cond, &st->lock);
            }
        }
        struct store_chunk *ops = st->head;
        st->head = st->tail = NULL;
        bool stop = st->stop;
        pthread_mutex_unlock(&st->lock);
        if (ops) {
            run_batch(st, ops);
            if (st->sync == STORE_SYNC_BATCH)
                unsynced = true;
        }
        if (unsynced && (stop || mono_ms() - last_sync >= BATCH_SYNC_MS)) {
            int rc = mdb_env_sync(st->env, 1);
            if (rc)
                log_error("Error: store sync failed in %s: %s.", st->path, errtext(rc));
            else
                atomic_fetch_add(&st->syncs, 1);
            unsynced = false;
            last_sync = mono_ms();
        }
        pthread_mutex_lock(&st->lock);
        if (stop && !st->head)
            break;
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

void store_submit(struct store *st, struct store_batch *b) {
    if (!b->head)
        return;
    if (!st->started) {
        run_batch(st, b->head);
    } else {
        pthread_mutex_lock(&st->lock);
        if (st->tail)
            st->tail->next = b->head;
        else
            st->head = b->head;
        st->tail = b->tail;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->lock);
    }
    b->head = b->tail = NULL;
    b->n = 0;
}

int store_commit_now(struct store *st, struct store_batch *b, char *err, size_t errlen) {
    if (st->started || st->readonly) {
        snprintf(err, errlen, "%s: %s", st->path,
                 st->readonly ? "opened read-only" : "the writer is running");
        store_batch_discard(b);
        return -1;
    }
    int rc = b->head ? commit_ops(st, b->head) : 0;
    if (rc == 0)
        rc = mdb_env_sync(st->env, 1);
    ops_free(b->head);
    b->head = b->tail = NULL;
    b->n = 0;
    if (rc) {
        snprintf(err, errlen, "%s: %s", st->path, errtext(rc));
        return -1;
    }
    atomic_fetch_add(&st->commits, 1);
    return 0;
}

int store_reopen_after_fork(struct store *st, char *err, size_t errlen) {
    if (st->opened_by == getpid())
        return 0;
    /* Close first: two environments on one file in one process would share (and drop)
     * each other's fcntl locks. Closing only clears reader slots of this process. */
    mdb_env_close(st->env);
    st->env = NULL;
    struct store *n = store_open(st->path, st->sync, st->readonly, err, errlen);
    if (!n)
        return -1;
    st->env = n->env;
    memcpy(st->dbi, n->dbi, sizeof(st->dbi));
    st->mapsize = n->mapsize;
    st->opened_by = n->opened_by;
    n->env = NULL;
    store_close(n);
    return 0;
}

int store_start(struct store *st, store_release_fn release, void *ctx) {
    st->release = release;
    st->release_ctx = ctx;
    if (st->sync == STORE_SYNC_ALWAYS) {
        if (pthread_create(&st->syncer, NULL, syncer, st) != 0)
            return -1;
        st->syncer_started = true;
    }
    if (pthread_create(&st->thread, NULL, writer, st) != 0)
        return -1;
    st->started = true;
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

int store_each(struct store *st, enum store_db db, store_each_fn fn, void *ctx) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return -1;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, st->dbi[db], &cur)) {
        mdb_txn_abort(txn);
        return -1;
    }
    MDB_val k, v;
    int r = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        r = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (r)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc && rc != MDB_NOTFOUND)
        return -1;
    return r;
}

long store_count(struct store *st, enum store_db db) {
    MDB_txn *txn;
    MDB_stat s;
    if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn))
        return -1;
    int rc = mdb_stat(txn, st->dbi[db], &s);
    mdb_txn_abort(txn);
    return rc ? -1 : (long)s.ms_entries;
}

uint64_t store_next_id(struct store *st) {
    return atomic_fetch_add(&st->next_id, 1);
}

void store_id_seen(struct store *st, uint64_t seen) {
    uint64_t cur = atomic_load(&st->next_id);
    while (cur <= seen && !atomic_compare_exchange_weak(&st->next_id, &cur, seen + 1))
        ;
}

void store_set_commit_hook(struct store *st, store_commit_fn fn, void *ctx) {
    st->on_commit = fn;
    st->commit_ctx = ctx;
}

void store_get_stats(struct store *st, struct store_stats *out) {
    out->commits = atomic_load(&st->commits);
    out->failed = atomic_load(&st->failed);
    out->ops = atomic_load(&st->ops);
    out->syncs = atomic_load(&st->syncs);
}

/* ---- open and close --------------------------------------------------- */

static void fail(char *err, size_t errlen, const char *path, const char *why) {
    snprintf(err, errlen, "store %s: %s", path, why);
}

struct store *store_open(const char *path, enum store_sync sync, bool readonly, char *err,
                         size_t errlen) {
    /* The directory must exist and (unless read-only) be writable: hato never creates or
     * chmods it, so a typo or a wrong mount shows at once instead of starting empty. */
    char *dir = strdup(path);
    if (!dir) {
        fail(err, errlen, path, "out of memory");
        return NULL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    struct stat sb;
    if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        char why[600];
        snprintf(why, sizeof(why), "directory %s: %s", dir,
                 errno && stat(dir, &sb) < 0 ? strerror(errno) : "not a directory");
        fail(err, errlen, path, why);
        free(dir);
        return NULL;
    }
    if (!readonly && access(dir, W_OK | X_OK) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "directory %s is not writable: %s", dir, strerror(errno));
        fail(err, errlen, path, why);
        free(dir);
        return NULL;
    }
    free(dir);
    bool exists = stat(path, &sb) == 0;
    if (!exists && readonly) {
        fail(err, errlen, path, strerror(errno));
        return NULL;
    }
    if (exists && !S_ISREG(sb.st_mode)) {
        fail(err, errlen, path, "not a regular file");
        return NULL;
    }
    if (exists) {
        int fd = open(path, readonly ? O_RDONLY : O_RDWR);
        if (fd < 0) {
            fail(err, errlen, path, strerror(errno));
            return NULL;
        }
        uint8_t head[16] = {0};
        ssize_t n = read(fd, head, sizeof(head));
        close(fd);
        if (n >= 15 && memcmp(head + 3, "mosquitto db", 12) == 0) {
            fail(err, errlen, path,
                 "this is a Mosquitto database, which hato cannot read; move it away or set "
                 "persistence_file to another name");
            return NULL;
        }
        if (sb.st_size == 0) {
            fail(err, errlen, path, "empty file (damaged store?); move it away to start afresh");
            return NULL;
        }
    }

    /* LMDB makes PATH-lock beside the file; a refused store leaves no new file behind. */
    char lockpath[4200];
    snprintf(lockpath, sizeof(lockpath), "%s-lock", path);
    bool lock_existed = access(lockpath, F_OK) == 0;
    struct store *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        free(st);
        fail(err, errlen, path, "out of memory");
        return NULL;
    }
    st->sync = sync;
    st->readonly = readonly;
    st->opened_by = getpid();
    atomic_init(&st->next_id, 1);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    pthread_mutex_init(&st->slock, NULL);
    pthread_cond_init(&st->scond, NULL);
    int rc = mdb_env_create(&st->env);
    st->mapsize = INITIAL_MAP;
    if (exists && (size_t)sb.st_size * 2 > st->mapsize)
        st->mapsize = (size_t)sb.st_size * 2;
    if (!rc)
        rc = mdb_env_set_maxdbs(st->env, SDB_N);
    if (!rc)
        rc = mdb_env_set_mapsize(st->env, st->mapsize);
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
    if (readonly)
        flags |= MDB_RDONLY;
    else if (sync != STORE_SYNC_ALWAYS)
        flags |= MDB_NOSYNC;
    else
        flags |= MDB_NOMETASYNC; /* the syncer completes each commit, see syncer() */
    if (!rc)
        rc = mdb_env_open(st->env, path, flags, 0600);
    if (rc) {
        fail(err, errlen, path,
             rc == MDB_INVALID            ? "not an LMDB file (damaged store?)"
             : rc == MDB_VERSION_MISMATCH ? "LMDB version mismatch"
                                          : errtext(rc));
        store_close(st);
        if (!lock_existed)
            unlink(lockpath);
        return NULL;
    }
    /* A file cut short would fault when the map is read past its end: refuse it first. */
    MDB_envinfo info;
    MDB_stat est;
    if (mdb_env_info(st->env, &info) == 0 && mdb_env_stat(st->env, &est) == 0 &&
        stat(path, &sb) == 0 &&
        (uint64_t)sb.st_size < ((uint64_t)info.me_last_pgno + 1) * est.ms_psize) {
        char why[160];
        snprintf(why, sizeof(why), "truncated: %lld bytes, the store needs %llu (damaged store)",
                 (long long)sb.st_size,
                 (unsigned long long)((uint64_t)info.me_last_pgno + 1) * est.ms_psize);
        fail(err, errlen, path, why);
        store_close(st);
        if (!lock_existed)
            unlink(lockpath);
        return NULL;
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(st->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
    if (rc) {
        fail(err, errlen, path, errtext(rc));
        store_close(st);
        if (!lock_existed)
            unlink(lockpath);
        return NULL;
    }
    /* Is this an hato store? A new file gets the format record; an existing one must have it. */
    MDB_dbi main;
    MDB_stat ms;
    bool fresh = mdb_dbi_open(txn, NULL, 0, &main) == 0 && mdb_stat(txn, main, &ms) == 0 &&
                 ms.ms_entries == 0;
    for (int i = 0; i < SDB_N && !rc; i++)
        rc = mdb_dbi_open(txn, store_db_names[i], readonly || !fresh ? 0 : MDB_CREATE, &st->dbi[i]);
    if (rc) {
        mdb_txn_abort(txn);
        fail(err, errlen, path,
             rc == MDB_NOTFOUND ? "not an hato store (tables missing)" : errtext(rc));
        store_close(st);
        if (!lock_existed)
            unlink(lockpath);
        return NULL;
    }
    MDB_val fk = {6, "format"}, fv;
    if (fresh && !readonly) {
        uint8_t f[4] = {STORE_FORMAT, 0, 0, 0};
        fv = (MDB_val){4, f};
        rc = mdb_put(txn, st->dbi[SDB_META], &fk, &fv, 0);
        if (!rc)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        if (rc) {
            fail(err, errlen, path, errtext(rc));
            store_close(st);
            return NULL;
        }
        return st;
    }
    rc = mdb_get(txn, st->dbi[SDB_META], &fk, &fv);
    uint32_t format = 0;
    if (rc == 0 && fv.mv_size == 4) {
        struct rread r = {fv.mv_data, 4, 0, false};
        format = rread_u32(&r);
    }
    /* Commit, not abort: the table handles opened in this transaction must stay open. */
    mdb_txn_commit(txn);
    if (format != STORE_FORMAT) {
        char why[120];
        snprintf(why, sizeof(why),
                 format ? "store format %u, this hato reads format %d" : "not an hato store",
                 format, STORE_FORMAT);
        fail(err, errlen, path, why);
        store_close(st);
        if (!lock_existed)
            unlink(lockpath);
        return NULL;
    }
    return st;
}

void store_close(struct store *st) {
    if (!st)
        return;
    if (st->started) {
        pthread_mutex_lock(&st->lock);
        st->stop = true;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->lock);
        pthread_join(st->thread, NULL);
        st->started = false;
    }
    if (st->syncer_started) {
        pthread_mutex_lock(&st->slock);
        st->sstop = true;
        pthread_cond_signal(&st->scond);
        pthread_mutex_unlock(&st->slock);
        pthread_join(st->syncer, NULL);
        st->syncer_started = false;
    }
    ops_free(st->head);
    if (st->env) {
        if (!st->readonly)
            mdb_env_sync(st->env, 1);
        mdb_env_close(st->env);
    }
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->slock);
    pthread_cond_destroy(&st->scond);
    free(st->path);
    free(st);
}

#else /* !HATO_WITH_PERSISTENCE */

/* Built with WITH_PERSISTENCE=OFF: there is no store to open, so the broker
 * runs without one (the config refuses `persistence true` before this). */
struct store *store_open(const char *path, enum store_sync sync, bool readonly, char *err,
                         size_t errlen) {
    (void)sync;
    (void)readonly;
    if (err && errlen)
        snprintf(err, errlen, "%s: hato was built without persistence (WITH_PERSISTENCE=OFF)",
                 path ? path : "store");
    return NULL;
}

void store_close(struct store *st) {
    (void)st;
}

int store_each(struct store *st, enum store_db db, store_each_fn fn, void *ctx) {
    (void)st, (void)db, (void)fn, (void)ctx;
    return -1;
}

long store_count(struct store *st, enum store_db db) {
    (void)st, (void)db;
    return -1;
}

uint64_t store_next_id(struct store *st) {
    (void)st;
    return 0;
}

void store_id_seen(struct store *st, uint64_t seen) {
    (void)st, (void)seen;
}

int store_start(struct store *st, store_release_fn release, void *ctx) {
    (void)st, (void)release, (void)ctx;
    return -1;
}

int store_reopen_after_fork(struct store *st, char *err, size_t errlen) {
    (void)st, (void)err, (void)errlen;
    return -1;
}

void store_submit(struct store *st, struct store_batch *b) {
    (void)st;
    store_batch_discard(b);
}

int store_commit_now(struct store *st, struct store_batch *b, char *err, size_t errlen) {
    (void)st;
    store_batch_discard(b);
    snprintf(err, errlen, "built without persistence");
    return -1;
}

void store_get_stats(struct store *st, struct store_stats *out) {
    (void)st;
    memset(out, 0, sizeof *out);
}

void store_set_commit_hook(struct store *st, store_commit_fn fn, void *ctx) {
    (void)st;
    (void)fn;
    (void)ctx;
}

#endif /* HATO_WITH_PERSISTENCE */
