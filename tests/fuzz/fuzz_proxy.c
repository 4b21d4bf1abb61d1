/*
 * libFuzzer target for the PROXY protocol header (src/transport/proxy.c):
 * the pure parser on the input, every prefix of an accepted header must ask
 * for more (never be refused), and the layer over an in-memory stream that
 * cuts the input at varying places, for both versions and require_tls.
 * Properties: no crash or leak; an accepted header is self-consistent (a
 * verified certificate implies TLS, a local header has no address); what
 * the layer passes up after a header is exactly the bytes that followed it,
 * and an identity appears only from a verified CN.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memstream.h"
#include "transport/proxy.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct proxy_header h;
    const char *why;
    int n = proxy_parse(data, size, &h, &why);
    CHECK(n <= (int)size);
    CHECK(n >= 0 || why != NULL);
    if (n > 0) {
        for (int k = 0; k < n; k++) {
            struct proxy_header hk;
            const char *wk;
            CHECK(proxy_parse(data, (size_t)k, &hk, &wk) == 0);
        }
        CHECK(h.version == 1 || h.version == 2);
        CHECK(proxy_detect(data, size) == h.version);
        CHECK(strlen(h.cn) < sizeof(h.cn));
        CHECK(strlen(h.tls_version) < sizeof(h.tls_version));
        CHECK(!h.cert_verified || (h.ssl && h.verify == 0));
        CHECK(h.local ? h.family == AF_UNSPEC : h.srclen > 0 && h.src.ss_family == h.family);
        CHECK(h.version == 2 || (!h.ssl && !h.crc32c && !h.cn[0]));
    }
    for (int version = 1; version <= 2; version++) {
        struct stream_info info = {0};
        strcpy(info.peer, "192.0.2.1:1000");
        struct memstream m;
        memstream_init(&m, &info, data, size, (unsigned)(size ? data[0] % 17 : 1) + 1);
        struct stream *p = proxy_stream_new(&m.s, version, version == 2 && size && (data[0] & 1));
        CHECK(p);
        uint8_t out[4096];
        size_t got = 0;
        for (int rounds = 0; rounds < 20000; rounds++) {
            ssize_t r = stream_read(p, out + got, sizeof(out) - got);
            if (r > 0) {
                got += (size_t)r;
                if (got == sizeof(out))
                    break;
                continue;
            }
            if (r == 0 || errno != EAGAIN)
                break;
        }
        if (info.identity)
            CHECK(n > 0 && h.version == version && h.cert_verified && !strcmp(info.identity, h.cn));
        if (n > 0 && h.version == version && proxy_stream_done(p)) {
            size_t rest = size - (size_t)n;
            CHECK(got == (rest < sizeof(out) ? rest : sizeof(out)));
            CHECK(memcmp(out, data + n, got) == 0);
        }
        stream_free(p);
        stream_info_clear(&info);
    }
    return 0;
}
