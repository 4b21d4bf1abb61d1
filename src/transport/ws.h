/*
 * WebSocket (RFC 6455) as a stream layer: MQTT's bytes travel in binary
 * frames (MQTT 5.0 section 6). Framing is wslay's (its frame API: header
 * encoding and decoding, masking); the HTTP upgrade is ours (http.h), and
 * so are the rules on top: which opcodes may come when, control frames,
 * the close handshake, every bound.
 *
 * Server side. The upgrade request is read inside read() (at most
 * max_header bytes, else 431) and answered with 101, the accept key and
 * the subprotocol chosen among the client's (mqtt, mqttv3.1). A request
 * that is no upgrade is served from http_dir (GET and HEAD) or refused with
 * a status (400, 403, 404, 405, 426, 431, 505); the answer is flushed, then
 * read() fails with the reason in info->why. After the upgrade the payload
 * of binary and continuation frames goes upward as a plain byte stream, so
 * an MQTT packet may span frames and a frame may hold several packets.
 * Violations close with a status: 1002 (unmasked client frame, reserved
 * bits, unknown opcode, bad continuation, bad control frame, bad close
 * code), 1003 (a text frame: MQTT-6.0.0-1), 1009 (a message over
 * max_message), 1008 (more than WS_MAX_FRAGMENTS frames in one message).
 * Pings are answered, a close is echoed and then read() returns 0.
 *
 * Client side (hato-pub -L ws://...): the upgrade request is sent first;
 * bytes written before the answer are framed and held until the 101 has
 * been checked (status, Upgrade, Connection, Sec-WebSocket-Accept, the
 * subprotocol). Frames are masked.
 *
 * Output: writev frames what it takes as one binary frame and keeps it
 * until the layer below takes it (flush); it takes nothing while more than
 * WS_OUT_CAP bytes wait, so a slow reader pushes back.
 *
 * Memory: wslay's frame context carries a 4 KiB input buffer; it exists
 * only while a frame is being read or written and is freed by
 * stream_trim-time (ws_stream_trim) when the connection is between frames,
 * so an idle upgraded connection costs about the size of struct ws_stream.
 */
#ifndef HATO_TRANSPORT_WS_H
#define HATO_TRANSPORT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/stream.h"

#define WS_OUT_CAP (64 * 1024)
#define WS_MAX_FRAGMENTS 4096
#define WS_DEFAULT_MAX_HEADER 4096

/* A WebSocket listener's settings. The strings (and the arrays) must
 * outlive every layer made with them (the broker's config does). */
struct ws_server_opts {
    const char *http_dir;       /* NULL: no files (plain GETs get 404) */
    const char *const *origins; /* accepted Origin values; none = any */
    size_t norigins;
    size_t max_header;  /* request head bytes, 0 = WS_DEFAULT_MAX_HEADER */
    size_t max_message; /* largest message payload, 0 = no limit */
    /* X-Forwarded-For is believed only from these socket addresses (IP or
     * IP/BITS, IPv4 or IPv6). */
    const char *const *trusted_proxies;
    size_t ntrusted;
};

/* A server layer over `lower`. NULL out of memory. */
struct stream *ws_stream_new_server(struct stream *lower, const struct ws_server_opts *o);
/* A client layer: the upgrade asks for `path` on `host` (the Host header:
 * "name:port") with the subprotocol (e.g. "mqtt"). NULL out of memory. */
struct stream *ws_stream_new_client(struct stream *lower, const char *host, const char *path,
                                    const char *subprotocol);
/* The status code of the close frame shutdown() sends (default 1000). */
void ws_stream_set_close(struct stream *ws, uint16_t code);
/* Free what an idle connection does not need (wslay's context between
 * frames). Called by the user on a quiet connection; harmless any time. */
void ws_stream_trim(struct stream *ws);
extern const struct stream_ops ws_stream_ops;

#endif
