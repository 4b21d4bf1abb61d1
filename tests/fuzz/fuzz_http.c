/*
 * libFuzzer target for the HTTP head parser (src/transport/http.c) and the
 * WebSocket server layer's input path (src/transport/ws.c): the request and
 * response parsers on the input; then a server layer over an in-memory
 * stream fed the raw input (the upgrade request path, its refusals,
 * http_dir lookups in an empty directory), and fed a valid upgrade request
 * followed by the input (the frame path: opcodes, fragments, control
 * frames, close codes), cut at varying places. Properties: no crash, leak
 * or read past the input; a parsed head lies within the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memstream.h"
#include "transport/http.h"
#include "transport/ws.h"
#include "check.h"

static const char upgrade[] =
    "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"
    "X-Forwarded-For: 203.0.113.1, 10.0.0.1\r\n\r\n";

static void run_layer(const uint8_t *data, size_t size, unsigned step) {
    static const char *const origins[] = {"http://a.example"};
    static const char *const trusted[] = {"192.0.2.0/24", "10.0.0.0/8"};
    const struct ws_server_opts o = {
        .http_dir = "/nonexistent-hato-fuzz-dir",
        .origins = origins,
        .norigins = step % 3 == 0,
        .max_header = 1024,
        .max_message = 4096,
        .trusted_proxies = trusted,
        .ntrusted = 2,
    };
    struct stream_info info = {0};
    strcpy(info.peer, "192.0.2.7:4000");
    struct memstream m;
    memstream_init(&m, &info, data, size, step);
    struct stream *w = ws_stream_new_server(&m.s, &o);
    CHECK(w);
    drain(w, &m);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = size};
    stream_writev(w, &iov, 1);
    stream_shutdown(w);
    ws_stream_trim(w);
    stream_free(w);
    stream_info_clear(&info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct http_head h;
    int n = http_parse_request((const char *)data, size, &h);
    CHECK(n <= (int)size);
    if (n > 0) {
        CHECK(h.method >= (const char *)data && h.target + h.tlen <= (const char *)data + n);
        for (size_t i = 0; i < h.nf; i++)
            CHECK(h.f[i].value + h.f[i].vlen <= (const char *)data + n);
    }
    n = http_parse_response((const char *)data, size, &h);
    CHECK(n <= (int)size);
    unsigned step = (unsigned)(size ? data[size - 1] % 23 : 0) + 1;
    run_layer(data, size, step);
    uint8_t *both = malloc(sizeof(upgrade) - 1 + size);
    CHECK(both);
    memcpy(both, upgrade, sizeof(upgrade) - 1);
    if (size)
        memcpy(both + sizeof(upgrade) - 1, data, size);
    run_layer(both, sizeof(upgrade) - 1 + size, step);
    free(both);
    return 0;
}
