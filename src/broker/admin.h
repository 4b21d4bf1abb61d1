/*
 * The admin API: a listener with `protocol admin` answers HTTP/1.1 with
 * JSON, inside the worker's event loop, over the listener's stream stack
 * (TLS with certfile/keyfile; loopback only without, config.c refuses
 * anything else). One request per connection (Connection: close), parsed
 * by the one HTTP parser (transport/http.h); docs/api.md is the reference.
 *
 *   GET  /healthz              no authentication
 *   POST /api/v1/login         {"username","password"} against admin_password_file
 *                              -> session cookie hato_session + {"csrf": token}
 *   POST /api/v1/logout
 *   GET  /api/v1/metrics       stats_snapshot as JSON
 *   GET  /api/v1/config        every directive's effective value, secrets "***"
 *   POST /api/v1/reload        what SIGHUP does, and its outcome
 *   GET  /api/v1/openapi.json  the OpenAPI 3.0 document of these
 *
 * Everything but /healthz and login needs the session cookie; a request
 * other than GET also needs X-CSRF-Token equal to the session's token.
 * Sessions live in memory (lost on restart), ADMIN_SESSION_IDLE_S idle
 * seconds at most. A failed login is answered after security.c's delay for
 * its address, as a failed MQTT login is.
 */
#ifndef HATO_BROKER_ADMIN_H
#define HATO_BROKER_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct conn;

#define ADMIN_SESSION_IDLE_S 1800 /* a session unused this long is gone */
#define ADMIN_SESSIONS_MAX 64     /* beyond, a login ends the least recently used */
#define ADMIN_HEAD_MAX 8192       /* request head; 431 beyond */
#define ADMIN_BODY_MAX 65536      /* request body; 413 beyond */

/* Load admin_password_file (start-up; a bad file: -1 after logging
 * "FILE:LINE: reason"). 0 when the config has none. Main thread. */
int admin_init(struct broker *b);
void admin_free(struct broker *b);

/* Bytes received on an admin connection (worker.c, in place of MQTT input). */
void admin_input(struct conn *c, const uint8_t *data, size_t len);

/* Worker tick for a connection whose answer waits (c->refuse_at set): a
 * refused login's delay, a reload's outcome. */
void admin_tick(struct conn *c, int64_t now);

/* The OpenAPI document (admin_openapi.json, compiled in by cmake). */
extern const char admin_openapi_json[];

#endif
