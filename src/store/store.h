/*
 * The durable store: LMDB under the persistence directory, one writer
 * thread, group commit.
 *
 * Workers never touch LMDB. During a loop turn each builds a batch of
 * operations (puts, deletes, acknowledgements to release) without locks and
 * hands it over with store_submit at the end of the turn. The writer takes
 * every batch submitted since its last commit (from all workers), applies
 * them in submission order in one write transaction, commits (one fsync
 * under STORE_SYNC_ALWAYS) and only then releases the acknowledgements of
 * those batches through the `release` callback. A failed commit releases
 * them with ok = false: the caller withholds them; the store keeps running.
 *
 * Before store_start the owner may read everything (store_each) and write
 * with store_apply_now (start-up purges); after store_stop nothing.
 */
#ifndef HATO_STORE_STORE_H
#define HATO_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_db { SDB_META, SDB_MSGS, SDB_MREFS, SDB_RETAIN, SDB_SESS, SDB_QUEUE, SDB_INPID, SDB_N };
enum store_sync { STORE_SYNC_ALWAYS, STORE_SYNC_BATCH, STORE_SYNC_NONE };

extern const char *const store_db_names[SDB_N];

struct store;
struct store_chunk;

/* Operations of one loop turn, built by one thread without locks: laid out one after the
 * other in a few large chunks (no allocation per operation; the writer walks them in memory
 * order and frees a chunk at once). head is NULL while the batch is empty. */
struct store_batch {
    struct store_chunk *head, *tail;
    size_t n;
};

/*
 * Open (and create when `create`) the store file `path` (LMDB, no
 * sub-directory; path-lock beside it). Refuses a file that is not an hato
 * store, a newer format, a missing directory, a read-only one. On failure
 * returns NULL and writes the reason (with the path) into err.
 */
struct store *store_open(const char *path, enum store_sync sync, bool readonly, char *err,
                         size_t errlen);
/* Stop the writer (if started; pending batches are committed first), sync, close. */
void store_close(struct store *st);

/* Visit every record of one table in key order (before store_start, or read-only). fn returns
 * 0 to continue, anything else stops and is returned. */
typedef int (*store_each_fn)(void *ctx, const uint8_t *key, size_t klen, const uint8_t *val,
                             size_t vlen);
int store_each(struct store *st, enum store_db db, store_each_fn fn, void *ctx);
/* Number of records in a table, -1 on error. */
long store_count(struct store *st, enum store_db db);

/* A fresh identifier (message ids and queue sequence numbers), thread-safe. */
uint64_t store_next_id(struct store *st);
/* Make future ids larger than `seen` (restore). */
void store_id_seen(struct store *st, uint64_t seen);

/* Release callback: runs on the writer thread with the `arg`s of the
 * acknowledgement ops of one commit, in submission order. */
typedef void (*store_release_fn)(void *ctx, void **args, size_t n, bool ok);
int store_start(struct store *st, store_release_fn release, void *ctx);
/* In a child of fork() (hato -d): open the environment again, as LMDB requires. */
int store_reopen_after_fork(struct store *st, char *err, size_t errlen);

/* ---- building batches (any thread, its own batch) ---- */
/* Put key -> value (both copied). */
void store_put(struct store_batch *b, enum store_db db, const void *key, size_t klen,
               const void *val, size_t vlen);
/* Put, taking a malloc'd value. */
void store_put_take(struct store_batch *b, enum store_db db, const void *key, size_t klen,
                    void *val, size_t vlen);
void store_del(struct store_batch *b, enum store_db db, const void *key, size_t klen);
/*
 * A put whose value is computed by the writer when it applies it: fn writes
 * a malloc'd value into *val and returns 1, or returns 0 to delete the key.
 * Used for retained messages: the value stored is the one current when the
 * transaction is written, whatever order workers submitted their batches in.
 */
typedef int (*store_value_fn)(void *ctx, const uint8_t *key, size_t klen, uint8_t **val,
                              size_t *vlen);
void store_put_current(struct store_batch *b, enum store_db db, const void *key, size_t klen,
                       store_value_fn fn, void *ctx);
/* Store a message once, referenced by `refs` queue entries (SDB_MSGS + SDB_MREFS). */
void store_msg_put(struct store_batch *b, uint64_t id, const void *val, size_t vlen, uint32_t refs);
/* Delete one queue entry and drop its message's reference (the message goes with its last;
 * msg_id 0: the message was inline in the entry). */
void store_entry_del(struct store_batch *b, const void *key, size_t klen, uint64_t msg_id);
/* Delete every key starting with prefix in SDB_QUEUE (dropping message references) and in
 * SDB_INPID: a whole session's queue. */
void store_session_purge(struct store_batch *b, const void *prefix, size_t plen);
/* Release `arg` through the release callback once everything before it is committed. */
void store_release(struct store_batch *b, void *arg);
/* Hand the batch to the writer (it is emptied). Without a started writer the ops are applied
 * and committed at once on the calling thread (start-up purges). */
void store_submit(struct store *st, struct store_batch *b);
/* Before store_start: apply the batch in one transaction, commit and sync it to disk (all or
 * nothing; the batch is emptied either way). -1 with the reason in err. */
int store_commit_now(struct store *st, struct store_batch *b, char *err, size_t errlen);
/* Drop a batch without applying it (its release args are lost: caller's duty). */
void store_batch_discard(struct store_batch *b);

/* Statistics (approximate, any thread). */
struct store_stats {
    uint64_t commits, failed, ops, syncs;
};
void store_get_stats(struct store *st, struct store_stats *out);
/* Called on the writer's thread after each successful commit with its duration
 * (transaction and data sync), for latency statistics. Set before store_start. */
typedef void (*store_commit_fn)(void *ctx, double seconds);
void store_set_commit_hook(struct store *st, store_commit_fn fn, void *ctx);

#endif
