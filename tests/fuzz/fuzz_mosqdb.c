/*
 * libFuzzer target for the mosquitto.db reader (src/store/mosqdb.c). The
 * input is a whole file. Properties: no crash, overread or leak; a parsed
 * file's cross references (client message -> message and client,
 * subscription -> client, retained -> message) are all in range and agree
 * with the ids they came from; a refusal names an offset inside the input.
 * Seeds: a file Debian's mosquitto 2.0.11 wrote (tests/fuzz/corpus/mosqdb).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/mosqdb.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mosqdb db;
    char err[512];
    if (mosqdb_parse(data, size, &db, err, sizeof(err)) < 0) {
        unsigned long long off = 0;
        CHECK(sscanf(err, "offset %llu: ", &off) == 1);
        CHECK(off <= size);
        CHECK(db.nmsgs == 0 && db.msgs == NULL);
        return 0;
    }
    CHECK(db.version == 5 || db.version == 6);
    for (size_t i = 0; i < db.ncmsgs; i++) {
        const struct mosqdb_cmsg *c = &db.cmsgs[i];
        CHECK(c->msg < db.nmsgs && db.msgs[c->msg].store_id == c->store_id);
        CHECK(c->client < db.nclients);
        CHECK(db.clients[c->client].id_len == c->id_len);
        CHECK(memcmp(db.clients[c->client].id, c->client_id, c->id_len) == 0);
        CHECK(c->qos <= db.msgs[c->msg].qos);
    }
    for (size_t i = 0; i < db.nsubs; i++)
        CHECK(db.subs[i].client < db.nclients);
    for (size_t i = 0; i < db.nretains; i++)
        CHECK(db.retains[i].msg < db.nmsgs &&
              db.msgs[db.retains[i].msg].store_id == db.retains[i].store_id);
    for (size_t i = 0; i < db.nmsgs; i++) {
        const struct mosqdb_msg *m = &db.msgs[i];
        CHECK(mosqdb_find_msg(&db, m->store_id) == i);
        CHECK(m->topic >= data && m->topic + m->topic_len <= data + size);
        CHECK(m->payload >= data && m->payload + m->payload_len <= data + size);
    }
    mosqdb_free(&db);
    return 0;
}
