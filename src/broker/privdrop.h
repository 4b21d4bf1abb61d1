/*
 * Dropping root (Mosquitto's `user` directive; docs/security.md).
 *
 * Started as root, hato opens what needs root first (listening sockets,
 * privileged ports, the store, the log file, certificates and keys), then
 * becomes `user` (default "mosquitto", as Mosquitto) for good: supplementary
 * groups from the group database, the user's primary group, its uid. The
 * call is made on the main thread; glibc applies set*id to every thread of
 * the process, so the store threads started before it change as well, and
 * the workers start after it.
 *
 * `user root` keeps root, with a warning. A user that does not exist stops
 * start-up, except "mosquitto" (the default): then, as Mosquitto does,
 * "nobody", with a warning, and no file is given to it. Not started as
 * root: nothing to do.
 *
 * Files the broker created as root (the store file and its lock file, the
 * log file) are given to the user before the switch, so that it can still
 * open them after a restart or a log reopen. Files that existed before
 * (and any directory) keep their owner: they are the administrator's.
 */
#ifndef HATO_BROKER_PRIVDROP_H
#define HATO_BROKER_PRIVDROP_H

#include "config/config.h"

/* Note which of the files hato may create exist already. Call before the
 * log file and the store are opened. */
void privdrop_survey(const struct hato_config *cfg);

/* Become cfg->user when running as root. 0, or -1 after logging why
 * (start-up must stop). */
int privdrop_apply(const struct hato_config *cfg);

#endif
