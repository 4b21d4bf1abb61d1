/*
 * TLS listeners (OpenSSL 3): one SSL_CTX per TLS listener, built at start-up
 * and rebuilt on SIGHUP; one SSL per connection, driven without blocking by
 * the worker's event loop (the same loop and threads as plain TCP).
 *
 * Contexts. tls_init builds every context before any socket is opened: a
 * file that is missing, unreadable or wrong stops start-up with its path and
 * OpenSSL's reason. tls_reload (SIGHUP, main thread) builds new contexts
 * from the same files and swaps them in under a lock for new connections;
 * open connections keep the context they started with (an SSL holds a
 * reference on its SSL_CTX). A reload that fails keeps the old context.
 *
 * Connections. tls_conn_new attaches an SSL to a connection of a TLS
 * listener. Readiness events go to tls_event, which drives the handshake,
 * then reads with SSL_read into the worker's read path (conn_readable calls
 * tls_read) and writes the connection's output segments with SSL_write,
 * gathered into records of up to TLS_STAGE bytes (conn_flush calls
 * tls_flush). OpenSSL's wishes (a read that must write, a write that must
 * read, decrypted bytes left in OpenSSL's buffer) are kept in c->tls_flags
 * and turned into the epoll interest by tls_update_events.
 */
#ifndef HATO_BROKER_TLS_LEGACY_H
#define HATO_BROKER_TLS_LEGACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct broker;
struct conn;
struct hato_config;
struct hato_listener;

/* Largest TLS record payload: output is gathered into records this long. */
#define TLS_STAGE 16384

/* c->tls_flags */
enum {
    TLS_F_READY = 1u << 0,      /* handshake done */
    TLS_F_HS_WRITE = 1u << 1,   /* handshake waits for writability */
    TLS_F_RD_WRITE = 1u << 2,   /* SSL_read waits for writability */
    TLS_F_WR_READ = 1u << 3,    /* SSL_write waits for readability */
    TLS_F_WR_BLOCKED = 1u << 4, /* SSL_write waits for writability */
    TLS_F_RD_PENDING = 1u << 5, /* decrypted or buffered bytes left in OpenSSL */
    TLS_F_FAILED = 1u << 6,     /* fatal error: no close_notify */
};

/* Build the contexts of every TLS listener. 0, or -1 (logged). */
int tls_init(struct broker *b);
/* --test-config: build every context once and free it (errors logged). */
int tls_check_config(const struct hato_config *cfg);
/* SIGHUP: rebuild contexts from the same files; failures keep the old one. */
void tls_reload(struct broker *b);
void tls_free(struct broker *b);
/* Worker tick: after a reload, drop this worker's TLS clients that the new
 * files no longer accept (revoked or expired certificate, CA gone, PSK
 * identity or key removed). */
struct worker;
void tls_tick(struct worker *w);

/* Attach an SSL to a new connection when its listener is TLS. 0 or -1. */
int tls_conn_new(struct conn *c);
/* Readiness on a TLS connection (replaces the plain handler). */
void tls_event(struct conn *c, uint32_t events);
/* SSL_read: bytes read (>0), 0 at the end of the stream, or -1 with errno
 * EAGAIN (nothing now; the connection may have been closed on a fatal
 * error, check c->state). */
ssize_t tls_read(struct conn *c, void *buf, size_t len);
/* After a read burst: remember bytes left in OpenSSL, set the interest. */
void tls_after_read(struct conn *c);
/* Write the output segments. 0, or -1 when the connection failed. */
int tls_flush(struct conn *c);
/* Set the epoll interest from the output and c->tls_flags. */
void tls_update_events(struct conn *c);
/* Before close(2): a close_notify if the session is healthy. */
void tls_conn_shutdown(struct conn *c);
void tls_conn_free(struct conn *c);

#endif
