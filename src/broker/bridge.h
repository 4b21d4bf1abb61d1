/*
 * Bridges: Mosquitto's `connection` sections (config/bridge_conf.h) run by
 * one thread of their own (docs/internals/bridge.md). Each bridge is two
 * clients of the client library: a remote one to the other broker and a
 * local one into hato over a socketpair that a worker adopts as an internal
 * connection.
 */
#ifndef HATO_BRIDGE_H
#define HATO_BRIDGE_H

#include <stdbool.h>

struct broker;
struct hato_config;

/* Start the bridge thread for the bridges of the config in force, after
 * the workers run (none configured: nothing is started). 0 or -1 (logged). */
int bridge_start(struct broker *b);
/* Disconnect every bridge and stop the thread, before the workers stop. */
void bridge_stop(struct broker *b);
/* A reload put `cfg` in force: bridges that are new start, removed ones
 * stop, changed ones restart, unchanged ones keep running. */
void bridge_reload(struct broker *b, const struct hato_config *cfg);

#endif
