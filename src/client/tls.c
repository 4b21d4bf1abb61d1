/*
 * TLS for the client library (OpenSSL 3): context from the settings (CA
 * file/dir, OS store, client certificate and key, minimum version,
 * ciphers, PSK), non-blocking handshake with host name verification, and
 * reads/writes that report "would block" to the state machine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/internal.h"

static void ossl_reason(char *buf, size_t cap) {
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, cap, "unknown error");
        return;
    }
    const char *r = ERR_reason_error_string(e);
    if (r)
        snprintf(buf, cap, "%s", r);
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static unsigned psk_cb(SSL *ssl, const char *hint, char *identity, unsigned max_identity,
                       unsigned char *psk, unsigned max_psk) {
    (void)hint;
    struct hc_client *c = SSL_get_app_data(ssl);
    if (!c || !c->psk_identity)
        return 0;
    size_t il = strlen(c->psk_identity);
    if (il + 1 > max_identity || c->psk_len > max_psk)
        return 0;
    memcpy(identity, c->psk_identity, il + 1);
    memcpy(psk, c->psk, c->psk_len);
    return (unsigned)c->psk_len;
}

int hc__tls_setup(struct hc_client *c, const struct hc_config *cfg) {
    char why[200];
    if (cfg->psk_hex) {
        size_t n = strlen(cfg->psk_hex);
        if (!n || n % 2 || n / 2 > sizeof c->psk) {
            hc__config_fail("--psk: expected an even number of hex digits (at most %zu)",
                            sizeof c->psk * 2);
            return HC_ERR_INVAL;
        }
        for (size_t i = 0; i < n; i += 2) {
            int hi = hexval(cfg->psk_hex[i]), lo = hexval(cfg->psk_hex[i + 1]);
            if (hi < 0 || lo < 0) {
                hc__config_fail("--psk: '%s' is not hexadecimal", cfg->psk_hex);
                return HC_ERR_INVAL;
            }
            c->psk[i / 2] = (uint8_t)(hi << 4 | lo);
        }
        c->psk_len = n / 2;
        if (!cfg->psk_identity) {
            hc__config_fail("--psk needs --psk-identity");
            return HC_ERR_INVAL;
        }
        c->psk_identity = strdup(cfg->psk_identity);
        if (!c->psk_identity)
            return HC_ERR_NOMEM;
    }
    if (cfg->ssl_ctx) {
        c->ssl_ctx = cfg->ssl_ctx;
        c->own_ctx = false;
        return HC_OK;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ossl_reason(why, sizeof why);
        hc__config_fail("TLS: %s", why);
        return HC_ERR_TLS;
    }
    c->ssl_ctx = ctx;
    c->own_ctx = true;
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int minv = TLS1_2_VERSION;
    if (cfg->tls_version) {
        if (!strcmp(cfg->tls_version, "tlsv1.3"))
            minv = TLS1_3_VERSION;
        else if (!strcmp(cfg->tls_version, "tlsv1.2"))
            minv = TLS1_2_VERSION;
        else if (!strcmp(cfg->tls_version, "tlsv1.1"))
            minv = TLS1_1_VERSION;
        else {
            hc__config_fail("--tls-version: expected tlsv1.3, tlsv1.2 or tlsv1.1, not '%s'",
                            cfg->tls_version);
            return HC_ERR_INVAL;
        }
    }
    SSL_CTX_set_min_proto_version(ctx, minv);
    if (cfg->tls_version)
        SSL_CTX_set_max_proto_version(ctx, minv == TLS1_1_VERSION ? TLS1_3_VERSION : minv);
    if (cfg->ciphers && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
        ossl_reason(why, sizeof why);
        hc__config_fail("--ciphers '%s': %s", cfg->ciphers, why);
        return HC_ERR_TLS;
    }
    if (cfg->psk_hex) {
        SSL_CTX_set_psk_client_callback(ctx, psk_cb);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        if (cfg->cafile || cfg->capath) {
            if (!SSL_CTX_load_verify_locations(ctx, cfg->cafile, cfg->capath)) {
                ossl_reason(why, sizeof why);
                hc__config_fail("cannot load CA certificates from %s: %s",
                                cfg->cafile ? cfg->cafile : cfg->capath, why);
                return HC_ERR_TLS;
            }
        }
        if (cfg->tls_use_os_certs || (!cfg->cafile && !cfg->capath))
            SSL_CTX_set_default_verify_paths(ctx);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cfg->certfile || cfg->keyfile) {
        if (!cfg->certfile || !cfg->keyfile) {
            hc__config_fail("--cert and --key go together");
            return HC_ERR_INVAL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certfile) != 1) {
            ossl_reason(why, sizeof why);
            hc__config_fail("cannot load client certificate %s: %s", cfg->certfile, why);
            return HC_ERR_TLS;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->keyfile, SSL_FILETYPE_PEM) != 1) {
            ossl_reason(why, sizeof why);
            hc__config_fail("cannot load client key %s: %s", cfg->keyfile, why);
            return HC_ERR_TLS;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            hc__config_fail("client key %s does not match certificate %s", cfg->keyfile,
                            cfg->certfile);
            return HC_ERR_TLS;
        }
    }
    if (cfg->alpn) {
        size_t n = strlen(cfg->alpn);
        unsigned char buf[256];
        if (!n || n > 255) {
            hc__config_fail("--tls-alpn: 1 to 255 characters");
            return HC_ERR_INVAL;
        }
        buf[0] = (unsigned char)n;
        memcpy(buf + 1, cfg->alpn, n);
        SSL_CTX_set_alpn_protos(ctx, buf, (unsigned)n + 1);
    }
    return HC_OK;
}

int hc__tls_start(struct hc_client *c) {
    char why[200];
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (!ssl) {
        ossl_reason(why, sizeof why);
        hc__set_error(c, "TLS: %s", why);
        return HC_ERR_TLS;
    }
    c->ssl = ssl;
    SSL_set_app_data(ssl, c);
    SSL_set_fd(ssl, c->fd);
    if (!c->unix_path) {
        unsigned char addr[16];
        bool is_ip =
            inet_pton(AF_INET, c->host, addr) == 1 || inet_pton(AF_INET6, c->host, addr) == 1;
        if (!is_ip)
            SSL_set_tlsext_host_name(ssl, c->host);
        if (!c->insecure && !c->psk_identity) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            if (is_ip)
                X509_VERIFY_PARAM_set1_ip_asc(vp, c->host);
            else
                SSL_set1_host(ssl, c->host);
        }
    }
    c->tls_want_write = false;
    return HC_OK;
}

/* Fill c->err for a failed SSL call; returns the hc_err. */
static int tls_error(struct hc_client *c, int r, const char *what) {
    SSL *ssl = c->ssl;
    int e = SSL_get_error(ssl, r);
    char why[200];
    long vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK && what[0] == 'h') {
        hc__set_error(c, "TLS: certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return HC_ERR_TLS;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        hc__set_error(c, "the broker closed the TLS connection");
        return HC_ERR_CLOSED;
    }
    if (e == SSL_ERROR_SYSCALL && !ERR_peek_last_error()) {
        if (errno && r < 0)
            hc__set_error(c, "TLS %s: %s", what, strerror(errno));
        else
            hc__set_error(c, "TLS %s: the broker closed the connection", what);
        return what[0] == 'h' ? HC_ERR_TLS : HC_ERR_CLOSED;
    }
    ossl_reason(why, sizeof why);
    hc__set_error(c, "TLS %s failed: %s", what, why);
    return HC_ERR_TLS;
}

int hc__tls_handshake(struct hc_client *c, uint64_t now) {
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        c->tls_want_write = false;
        return hc__send_connect(c, now);
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->tls_want_write = false;
        return HC_OK;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = true;
        return HC_OK;
    }
    return hc__fail(c, tls_error(c, r, "handshake"));
}

int hc__tls_read(struct hc_client *c, uint8_t *buf, size_t cap, ssize_t *n) {
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, (int)(cap > 1 << 30 ? 1 << 30 : cap));
    if (r > 0) {
        *n = r;
        c->tls_want_write = false;
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 1;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = true;
        return 1;
    }
    c->err_kind = tls_error(c, r, "read");
    return -1;
}

int hc__tls_write(struct hc_client *c, const uint8_t *buf, size_t len, ssize_t *n) {
    ERR_clear_error();
    int r = SSL_write(c->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
    if (r > 0) {
        *n = r;
        c->tls_want_write = false;
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->tls_want_write = e == SSL_ERROR_WANT_WRITE;
        return 1;
    }
    c->err_kind = tls_error(c, r, "write");
    return -1;
}

void hc__tls_shutdown(struct hc_client *c) {
    if (c->ssl)
        SSL_shutdown(c->ssl); /* best effort: close_notify, no waiting */
}

void hc__tls_close(struct hc_client *c) {
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    ERR_clear_error();
}

void hc__tls_free(struct hc_client *c) {
    hc__tls_close(c);
    if (c->own_ctx && c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    c->ssl_ctx = NULL;
    free(c->psk_identity);
    c->psk_identity = NULL;
}
