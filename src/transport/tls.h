/*
 * TLS as a stream layer (OpenSSL 3): the one TLS implementation, used by the
 * broker's listeners and by the client library alike.
 *
 * Contexts. A struct tls_ctx is an SSL_CTX with what hato adds to it (the
 * PSK table of a psk_file, the identity rule). It is built from plain option
 * structs, so this file knows no broker config: the broker translates its
 * listener settings into tls_server_opts, the client library its settings
 * into tls_client_opts. A context is reference-counted and may be shared by
 * threads: connections hold a reference on the context they started with,
 * so a reload can swap in a new one while they go on.
 *
 * Layer. tls_stream_new puts a TLS layer over any lower stream (the socket,
 * or a PROXY layer that may still hold bytes read past its header): the
 * records go through the lower layer's read/writev, never straight to the
 * descriptor. The handshake runs inside read and flush (and writev on the
 * client side); until it is done read returns -1/EAGAIN and wants() says
 * which readiness it waits for. When it is done info->tls_done is set and,
 * on a server whose context asks for it, info->identity (certificate CN or
 * RFC 2253 subject, or the PSK identity). A failed handshake leaves the
 * reason in info->why ("certificate verify failed: ...", OpenSSL's error
 * text, "connection closed during the handshake"). writev gathers small
 * iovecs into records of up to TLS_RECORD bytes and sends a full record
 * straight from a large one (no copy).
 */
#ifndef HATO_TRANSPORT_TLS_H
#define HATO_TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "transport/stream.h"

/* Largest TLS record payload. */
#define TLS_RECORD 16384

struct tls_ctx;

enum tls_identity {
    TLS_ID_NONE = 0,
    TLS_ID_CN,      /* use_identity_as_username: the certificate's CN (or the PSK identity) */
    TLS_ID_SUBJECT, /* use_subject_as_username: the RFC 2253 subject (or the PSK identity) */
};

/* A server (listener) context. Paths may be NULL. */
struct tls_server_opts {
    const char *certfile, *keyfile;
    const char *cafile, *capath, *crlfile, *dhparamfile;
    const char *tls_version; /* lowest accepted: "tlsv1.2" (default) or "tlsv1.3" */
    const char *ciphers, *ciphers_tls13;
    const char *psk_hint; /* PSK listener when set */
    const char *psk_file; /* Mosquitto's identity:hexkey lines; NULL = no keys */
    bool require_certificate;
    enum tls_identity identity; /* also asks for a client certificate */
    bool no_date_checks;        /* disable_client_cert_date_checks */
};

/* A client context. Paths may be NULL. */
struct tls_client_opts {
    const char *cafile, *capath;
    bool use_os_certs;              /* the system's CA store (also when no CA is given) */
    const char *certfile, *keyfile; /* client certificate */
    const char *tls_version;        /* "tlsv1.1" | "tlsv1.2" | "tlsv1.3": that version only */
    const char *ciphers;
    const char *alpn;
    const char *psk_identity; /* PSK instead of certificates when set */
    const unsigned char *psk;
    size_t psk_len;
};

/* Decode a hexadecimal key of n digits into out (cap bytes): its length,
 * -1 when n is 0, odd or too long, -2 when a digit is not hex. Shared by
 * psk_file lines and the clients' --psk. */
ssize_t tls_hex_key(const char *hex, size_t n, unsigned char *out, size_t cap);

/* Build a context: the new reference, or NULL with "what: why" in err (the
 * path and OpenSSL's reason; never a prompt for an encrypted key). */
struct tls_ctx *tls_server_ctx_new(const struct tls_server_opts *o, char *err, size_t errlen);
struct tls_ctx *tls_client_ctx_new(const struct tls_client_opts *o, char *err, size_t errlen);
/* A client context over an SSL_CTX the application made (hc_config.ssl_ctx):
 * takes a reference of its own on it. */
struct tls_ctx *tls_client_ctx_wrap(void *ssl_ctx);
void tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);

/*
 * A TLS layer over `lower`, taking a reference on ctx. Server side when
 * ctx is a server context. On the client side, `host` is the server name
 * sent (SNI, not for an IP address) and, unless `insecure` or PSK, the
 * name (or IP address) the certificate must carry. NULL out of memory; the
 * lower layer is then still the caller's.
 */
struct stream *tls_stream_new(struct stream *lower, struct tls_ctx *ctx, const char *host,
                              bool insecure);
extern const struct stream_ops tls_stream_ops;

/*
 * After a reload: why `now` (the listener's new context) would refuse this
 * established server connection, or NULL when it would accept it. The
 * client certificate is verified again against the new CA, CRL and dates;
 * a PSK identity is looked up in the new key table (gone, or its key
 * changed: refused). `tls` is the TLS layer (stream_find(top,
 * &tls_stream_ops)). The reason may be written into buf.
 */
const char *tls_stream_recheck(struct stream *tls, struct tls_ctx *now, char *buf, size_t len);

/* "TLSv1.3, TLS_AES_256_GCM_SHA384" after the handshake, for the log. */
void tls_stream_describe(struct stream *tls, char *buf, size_t len);

/* Client side, after a failed handshake: true when the failure was the
 * certificate check (the client library reports HC_ERR_TLS for it). */
bool tls_stream_verify_failed(struct stream *tls);

#endif
