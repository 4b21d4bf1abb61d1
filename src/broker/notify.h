/*
 * systemd notification (sd_notify, libsystemd; nothing without
 * HATO_HAVE_SYSTEMD or outside systemd, where NOTIFY_SOCKET is unset):
 * READY=1 once every listener is open; RELOADING=1 with MONOTONIC_USEC, then
 * READY=1, around a reload; STOPPING=1 at shutdown; a STATUS= line (clients,
 * messages per second) every few seconds and after a reload; and, when the
 * unit sets WatchdogSec (WATCHDOG_USEC), WATCHDOG=1 at half that interval
 * as long as every worker has run its periodic tick recently: a wedged
 * worker stops the pings and systemd restarts the broker.
 *
 * Main thread only.
 */
#ifndef HATO_BROKER_NOTIFY_H
#define HATO_BROKER_NOTIFY_H

#include <signal.h>

struct broker;

void notify_ready(struct broker *b);
void notify_reloading(void);
/* After a reload: b = applied (STATUS line), NULL = failed (previous config kept). */
void notify_ready_after_reload(struct broker *b);
void notify_stopping(void);
/* Wait for one of the signals in set; meanwhile send the status lines and
 * watchdog pings and let a reload finish closing sockets (reload_tick).
 * Returns the signal. */
int notify_wait_signal(struct broker *b, const sigset_t *set);

#endif
