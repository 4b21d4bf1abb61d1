/*
 * Import a parsed Mosquitto persistence file (store/mosqdb.h) into an hato
 * store (store/store.h) in one transaction: retained messages, persistent
 * sessions with their subscriptions, and their queued and in-flight
 * messages. Knows nothing of the broker; used by the broker at start-up and
 * by hato-store import-mosquitto. See docs/internals/mosqdb.md.
 */
#ifndef HATO_STORE_MOSQIMPORT_H
#define HATO_STORE_MOSQIMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/mosqdb.h"
#include "store/store.h"

struct mosq_import_counts {
    size_t retained;         /* retained messages */
    size_t sessions;         /* persistent sessions */
    size_t subs;             /* their subscriptions */
    size_t queued;           /* outgoing messages waiting to be sent */
    size_t inflight;         /* outgoing QoS 1/2 messages sent and not yet acknowledged */
    size_t inpids;           /* incoming QoS 2 packet ids awaiting PUBREL */
    size_t released;         /* incoming QoS 2 messages queued to their subscribers now */
    size_t expired_sessions; /* sessions already expired (not imported) */
    size_t expired_msgs;     /* messages already expired (not imported) */
};

/*
 * Write everything db holds into st (open, writer not started, and empty:
 * the caller checks with mosq_import_store_empty) as of wall clock now_ms,
 * in one transaction committed and synced before returning. Returns 0, or
 * -1 with the reason in err (nothing was written).
 */
int mosq_import(struct store *st, const struct mosqdb *db, int64_t now_ms,
                struct mosq_import_counts *counts, char *err, size_t errlen);

/* True when st holds no session, queue entry, message or retained message. */
bool mosq_import_store_empty(struct store *st);

/* The counts as one line, for logs and the tool. */
void mosq_import_describe(const struct mosq_import_counts *c, char *out, size_t outlen);

/*
 * Read and parse the file at path (whole, into memory). On success *buf is
 * the malloc'd file (db's records point into it; free it after
 * mosqdb_free). -1 with "PATH: offset N: reason" (or "PATH: errno text") in
 * err.
 */
int mosq_import_load(const char *path, uint8_t **buf, size_t *len, struct mosqdb *db, char *err,
                     size_t errlen);

/* 1 if the file at path starts with Mosquitto's magic, 0 if not (or absent), -1 unreadable. */
int mosq_import_is_mosquitto_file(const char *path);

/*
 * The whole migration of one file, as hato does at start-up and hato-store
 * import-mosquitto does on demand: parse mosq_path (any error: nothing is
 * written), import it into the hato store at store_path in one transaction,
 * and only after that commit rename mosq_path to mosq_path.imported (or
 * .imported.N when that exists; *renamed_to receives the name, malloc'd).
 * When both paths name the same file (Debian's layout: persistence_file
 * mosquitto.db), the store is built as store_path.import and put in place
 * after the rename; mosq_import_resume finishes that step if it was cut
 * short. Otherwise the store at store_path must be empty. Returns 0, or -1
 * with the reason in err (the Mosquitto file is then untouched).
 */
int mosq_import_file(const char *mosq_path, const char *store_path, enum store_sync sync,
                     int64_t now_ms, struct mosq_import_counts *counts, char **renamed_to,
                     char *err, size_t errlen);
/* If store_path is missing but store_path.import (a committed import whose last rename did
 * not happen) exists, move it in place. 1 done, 0 nothing to do, -1 error (err). */
int mosq_import_resume(const char *store_path, char *err, size_t errlen);

#endif
