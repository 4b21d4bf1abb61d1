/*
 * The Prometheus endpoint: a listener with `protocol metrics` answers HTTP
 * instead of MQTT, inside the worker's event loop, over the listener's
 * stream stack (TLS when certfile/keyfile are given, a PROXY header when
 * enable_proxy_protocol is set). One request per connection, parsed by the
 * one HTTP parser (transport/http.h); the answer carries Content-Length and
 * the connection closes once it is written.
 *
 *   GET|HEAD /metrics  200, text exposition format 0.0.4 from stats_snapshot
 *   GET|HEAD /healthz  200 "ok" while serving, 503 while starting or stopping
 *   other paths 404, other methods 405, a malformed head 400 (431, 501, 505
 *   as the parser says), then close
 *
 * metrics_auth true: every request needs `Authorization: Basic` with a user
 * and password of the listener's password file (checked by security.c), else
 * 401 with a WWW-Authenticate challenge.
 */
#ifndef HATO_BROKER_METRICS_H
#define HATO_BROKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct conn;

/* Bytes received on a metrics connection (worker.c, in place of MQTT
 * input): data[0..len) is everything received so far that was not taken;
 * a partial request head is kept in c->in, as MQTT input is. */
void metrics_input(struct conn *c, const uint8_t *data, size_t len);

/* The /metrics body (malloc'd, *len bytes, not NUL-terminated), or NULL out
 * of memory. Any thread. */
char *metrics_render(struct broker *b, size_t *len);

#endif
