/*
 * The WebSocket layer of a build with WITH_WEBSOCKETS=OFF (CMake builds
 * this file instead of ws.c): no wslay. The broker's config refuses
 * `protocol websockets` and the WebSocket-only directives before this is
 * reached (broker/features.c); a client asking for --ws gets no stream.
 */
#include "transport/ws.h"

struct stream *ws_stream_new_server(struct stream *lower, const struct ws_server_opts *o) {
    (void)lower, (void)o;
    return NULL;
}

struct stream *ws_stream_new_client(struct stream *lower, const char *host, const char *path,
                                    const char *subprotocol) {
    (void)lower, (void)host, (void)path, (void)subprotocol;
    return NULL;
}

void ws_stream_set_close(struct stream *ws, uint16_t code) {
    (void)ws, (void)code;
}

void ws_stream_trim(struct stream *ws) {
    (void)ws;
}

/* No stream ever has these operations: stream_find(.., &ws_stream_ops) finds nothing. */
const struct stream_ops ws_stream_ops = {.name = "ws"};
