/*
 * The TLS layer of a build with WITH_TLS=OFF (CMake builds this file
 * instead of tls.c): no OpenSSL libssl, and every attempt to set TLS up
 * fails with the reason. The broker's config refuses TLS directives before
 * any of this is reached (broker/features.c); the clients' --cafile, --psk
 * and the like end here with the message below.
 */
#include <stdio.h>

#include "transport/tls.h"

static const char off[] = "hato was built without TLS (WITH_TLS=OFF)";

struct tls_ctx *tls_server_ctx_new(const struct tls_server_opts *o, char *err, size_t errlen) {
    (void)o;
    if (err && errlen)
        snprintf(err, errlen, "%s", off);
    return NULL;
}

struct tls_ctx *tls_client_ctx_new(const struct tls_client_opts *o, char *err, size_t errlen) {
    return tls_server_ctx_new((const void *)o, err, errlen);
}

struct tls_ctx *tls_client_ctx_wrap(void *ssl_ctx) {
    (void)ssl_ctx;
    return NULL;
}

void tls_ctx_ref(struct tls_ctx *ctx) {
    (void)ctx;
}

void tls_ctx_unref(struct tls_ctx *ctx) {
    (void)ctx;
}

struct stream *tls_stream_new(struct stream *lower, struct tls_ctx *ctx, const char *host,
                              bool insecure) {
    (void)lower, (void)ctx, (void)host, (void)insecure;
    return NULL;
}

/* No stream ever has these operations: stream_find(.., &tls_stream_ops) finds nothing. */
const struct stream_ops tls_stream_ops = {.name = "tls"};

const char *tls_stream_recheck(struct stream *tls, struct tls_ctx *now, char *buf, size_t len) {
    (void)tls, (void)now, (void)buf, (void)len;
    return NULL;
}

void tls_stream_describe(struct stream *tls, char *buf, size_t len) {
    (void)tls;
    if (len)
        buf[0] = '\0';
}

bool tls_stream_verify_failed(struct stream *tls) {
    (void)tls;
    return false;
}
