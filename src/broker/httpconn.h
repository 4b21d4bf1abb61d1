/*
 * What the broker's HTTP endpoints share (metrics.c, admin.c): an answer
 * queued on a connection that closes once it is written (one request per
 * connection, Content-Length on every answer), and the partial request kept
 * between reads as a partial MQTT packet is. Parsing is transport/http.c's.
 */
#ifndef HATO_BROKER_HTTPCONN_H
#define HATO_BROKER_HTTPCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct http_head;

/* Queue "HTTP/1.1 status" with Content-Type type, the extra header lines
 * (each ending in CRLF, or NULL), Cache-Control: no-store, Connection:
 * close, and body[0..blen) unless head_only; the connection closes once it
 * is written. Out of memory closes it now. */
void httpc_respond(struct conn *c, int status, const char *type, const char *extra,
                   const char *body, size_t blen, bool head_only);

/* Keep data[0..len) (everything received that was not taken) in c->in for
 * the next read (worker.c appends to it). 0, or -1 (the connection closed). */
int httpc_keep(struct conn *c, const uint8_t *data, size_t len);

/* Forget the input: what follows the one request is not read. */
void httpc_drop_input(struct conn *c);

/* Length of the request target's path (before any '?'). */
size_t httpc_path_len(const struct http_head *h);

/* Is the request's method m (exactly, case-sensitive as RFC 9110 says)? */
bool httpc_method_is(const struct http_head *h, const char *m);

#endif
