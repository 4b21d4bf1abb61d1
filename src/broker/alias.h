/*
 * Outgoing topic aliases (MQTT 5, 3.3.2.3.4): the topics hato has given an
 * alias on one connection. A client that sends Topic Alias Maximum > 0 in
 * CONNECT may receive PUBLISH packets whose topic is replaced by a number:
 * the first PUBLISH of a topic carries the topic and the alias, the later
 * ones an empty topic and the alias (3.3.2.3.4); an alias is never 0 nor
 * above the client's maximum (MQTT-3.3.2-8, -11).
 *
 * Policy, as Mosquitto 2.1: the first `max` distinct topics sent on the
 * connection get aliases 1..max and keep them for the life of the
 * connection; later topics go out in full, without an alias. Nothing is
 * ever re-mapped, so an alias never changes meaning while a PUBLISH that
 * uses it is on its way. The map belongs to the connection, not to the
 * session: a new connection starts with no alias (MQTT-3.3.2-7).
 *
 * Owned by the connection's worker thread; no locking.
 */
#ifndef HATO_BROKER_ALIAS_H
#define HATO_BROKER_ALIAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strmap.h"

struct alias_out {
    struct strmap map; /* topic -> alias (as uintptr_t), keys owned by `topics` */
    char **topics;     /* topics[alias - 1], malloc'd */
    uint16_t max;      /* aliases the client accepts (capped by max_topic_alias_broker) */
    uint16_t used;
};

/* A map for up to `max` aliases (max > 0); NULL when out of memory. */
struct alias_out *alias_out_new(uint16_t max);
void alias_out_free(struct alias_out *a);

/*
 * The alias of `topic` on this connection, for a PUBLISH about to be
 * encoded: its number when it has one (*fresh false: send an empty topic),
 * the number it would get when there is room (*fresh true: send the topic
 * with the alias, then call alias_out_commit once the packet is really
 * queued), or 0 when the topic is sent without an alias.
 */
uint16_t alias_out_find(const struct alias_out *a, const char *topic, size_t len, bool *fresh);
/* Record `topic` as the next alias (the one alias_out_find announced).
 * Returns 0, -1 when out of memory (the packet then must not have used it:
 * callers commit before writing). */
int alias_out_commit(struct alias_out *a, const char *topic, size_t len);

#endif
