/*
 * TLS as a stream layer with OpenSSL 3. See tls.h for the model.
 */
#include "transport/tls.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct psk_entry {
    char *identity;
    unsigned char *key;
    size_t keylen;
};

struct psk_table {
    struct psk_entry *e;
    size_t n;
};

struct tls_ctx {
    atomic_uint refs;
    SSL_CTX *ssl;
    bool server;
    enum tls_identity identity;
    struct psk_table *psk; /* server with psk_hint */
    /* client PSK */
    char *psk_identity;
    unsigned char psk_key[PSK_MAX_PSK_LEN];
    size_t psk_len;
};

/* One connection's layer. */
struct tls_stream {
    struct stream s;
    struct tls_ctx *ctx;
    SSL *ssl;
    char *psk_id;       /* server: the PSK identity the client used */
    bool done;          /* handshake finished */
    bool failed;        /* fatal error: no close_notify */
    bool hs_write;      /* handshake waits for writability */
    bool rd_write;      /* SSL_read waits for writability */
    bool wr_read;       /* SSL_write waits for readability */
    bool lower_blocked; /* the lower layer took nothing on the last write */
    bool rd_pending;    /* the last read returned bytes: OpenSSL may hold more */
    bool verify_failed; /* client: the certificate check failed */
    bool shut;          /* close_notify sent (or given up) */
};

static int ctx_index = -1; /* SSL ex_data: struct tls_stream * */
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void make_index(void) {
    ctx_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- helpers ------------------------------------------------------------ */

/* OpenSSL's error queue of this thread as one line (emptied). True when
 * a passphrase was asked for (an encrypted key). */
static bool ssl_errors(char *buf, size_t len) {
    size_t n = 0;
    bool password = false;
    buf[0] = 0;
    const char *data = NULL;
    int flags = 0;
    unsigned long e;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && (ERR_GET_REASON(e) == PEM_R_BAD_PASSWORD_READ ||
                                              ERR_GET_REASON(e) == PEM_R_PROBLEMS_GETTING_PASSWORD))
            password = true;
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        if (n < len) {
            bool txt = (flags & ERR_TXT_STRING) && data && *data;
            n += (size_t)snprintf(buf + n, len - n, "%s%s%s%s%s", n ? "; " : "", one,
                                  txt ? " (" : "", txt ? data : "", txt ? ")" : "");
        }
    }
    if (!buf[0])
        snprintf(buf, len, "unknown OpenSSL error");
    return password;
}

/* The reason string of the last OpenSSL error only (the client's style). */
static void ssl_reason(char *buf, size_t cap) {
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

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A file the server must read: fails with strerror before OpenSSL tries. */
static int check_readable(const char *what, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static void psk_table_free(struct psk_table *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].identity);
        if (t->e[i].key)
            OPENSSL_clear_free(t->e[i].key, t->e[i].keylen);
    }
    free(t->e);
    free(t);
}

/*
 * psk_file in Mosquitto's format: one `identity:hexkey` a line, `#`
 * comments and blank lines ignored. Any other line is an error with its
 * line number (a malformed line is never a usable identity).
 */
static struct psk_table *psk_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, "cannot read psk_file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct psk_table *t = calloc(1, sizeof(*t));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    size_t capn = 0;
    if (!t)
        goto oom;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        size_t sp = strspn(line, " \t");
        if (line[sp] == 0 || line[sp] == '#')
            continue;
        char *colon = strchr(line, ':');
        const char *why = NULL;
        size_t klen = colon ? strlen(colon + 1) : 0;
        unsigned char key[PSK_MAX_PSK_LEN];
        ssize_t kn = colon ? tls_hex_key(colon + 1, klen, key, sizeof(key)) : 0;
        if (!colon || colon == line)
            why = "expected identity:hexkey";
        else if (kn == -1)
            why = "the key must be an even number of hex digits (at most 1024)";
        else if (kn == -2)
            why = "the key must be hex digits";
        if (why) {
            OPENSSL_cleanse(key, sizeof(key));
            set_err(err, errlen, "%s:%d: %s", path, lineno, why);
            goto fail;
        }
        if (t->n == capn) {
            size_t nc = capn ? capn * 2 : 8;
            struct psk_entry *ne = realloc(t->e, nc * sizeof(*ne));
            if (!ne)
                goto oom;
            t->e = ne;
            capn = nc;
        }
        struct psk_entry *e = &t->e[t->n];
        e->identity = strndup(line, (size_t)(colon - line));
        e->keylen = (size_t)kn;
        e->key = OPENSSL_malloc(e->keylen);
        if (!e->identity || !e->key) {
            free(e->identity);
            OPENSSL_free(e->key);
            OPENSSL_cleanse(key, sizeof(key));
            goto oom;
        }
        memcpy(e->key, key, e->keylen);
        OPENSSL_cleanse(key, sizeof(key));
        t->n++;
        OPENSSL_cleanse(colon, klen + 1);
    }
    free(line);
    fclose(f);
    return t;
oom:
    set_err(err, errlen, "%s: out of memory", path);
fail:
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(f);
    psk_table_free(t);
    return NULL;
}

static const struct psk_entry *psk_find(const struct psk_table *t, const char *identity) {
    for (size_t i = 0; t && i < t->n; i++)
        if (strcmp(t->e[i].identity, identity) == 0)
            return &t->e[i];
    return NULL;
}

/* TLS-PSK on a server: look the identity up in the listener's psk_file. */
static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk_len) {
    struct tls_stream *t = SSL_get_ex_data(ssl, ctx_index);
    if (!t || !identity)
        return 0;
    const struct psk_entry *e = psk_find(t->ctx->psk, identity);
    if (!e) {
        /* The identity is the client's text: printable ASCII only. */
        char shown[65];
        size_t k = 0;
        for (; identity[k] && k < sizeof(shown) - 1; k++)
            shown[k] = identity[k] >= 0x20 && identity[k] < 0x7f ? identity[k] : '?';
        shown[k] = 0;
        stream_fail(&t->s, EPROTO, "unknown PSK identity '%s%s'", shown, identity[k] ? "..." : "");
        return 0;
    }
    if (e->keylen > max_psk_len)
        return 0;
    /* Kept for identity and reload checks: TLS 1.3 sessions made through
     * this callback do not remember it. */
    char *keep = strdup(identity);
    if (!keep)
        return 0;
    free(t->psk_id);
    t->psk_id = keep;
    memcpy(psk, e->key, e->keylen);
    return (unsigned int)e->keylen;
}

static unsigned psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned max_identity,
                              unsigned char *psk, unsigned max_psk) {
    (void)hint;
    struct tls_stream *t = SSL_get_ex_data(ssl, ctx_index);
    if (!t || !t->ctx->psk_identity)
        return 0;
    size_t il = strlen(t->ctx->psk_identity);
    if (il + 1 > max_identity || t->ctx->psk_len > max_psk)
        return 0;
    memcpy(identity, t->ctx->psk_identity, il + 1);
    memcpy(psk, t->ctx->psk_key, t->ctx->psk_len);
    return (unsigned)t->ctx->psk_len;
}

/* Encrypted private keys are refused rather than prompted for. */
static int no_password_cb(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static struct tls_ctx *ctx_alloc(SSL_CTX *ssl, bool server) {
    struct tls_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->ssl = ssl;
    c->server = server;
    return c;
}

void tls_ctx_ref(struct tls_ctx *ctx) {
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void tls_ctx_unref(struct tls_ctx *ctx) {
    if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(ctx->ssl);
    psk_table_free(ctx->psk);
    free(ctx->psk_identity);
    OPENSSL_cleanse(ctx->psk_key, sizeof(ctx->psk_key));
    free(ctx);
}

/*
 * WITH_EC=OFF (docs/building.md): no elliptic curves in the handshake. Key
 * exchange is finite-field Diffie-Hellman only (RFC 7919 groups in TLS 1.3,
 * DHE suites in TLS 1.2) and signatures RSA only, so an EC certificate is
 * unusable. An explicit `ciphers` still overrides the TLS 1.2 suite list.
 */
static int no_elliptic_curves(SSL_CTX *ctx, bool own_ciphers, char *err, size_t errlen) {
    char why[256];
    if (SSL_CTX_set1_groups_list(ctx, "ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192") != 1 ||
        SSL_CTX_set_dh_auto(ctx, 1) != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, "RSA-PSS+SHA256:RSA-PSS+SHA384:RSA-PSS+SHA512:"
                                       "RSA+SHA256:RSA+SHA384:RSA+SHA512") != 1 ||
        (!own_ciphers && SSL_CTX_set_cipher_list(ctx, "DEFAULT:!ECDH:!ECDSA:!aNULL") != 1)) {
        ssl_errors(why, sizeof why);
        set_err(err, errlen, "TLS without elliptic curves (WITH_EC=OFF): %s", why);
        return -1;
    }
    return 0;
}

/* ---- server contexts ---------------------------------------------------- */

struct tls_ctx *tls_server_ctx_new(const struct tls_server_opts *o, char *err, size_t errlen) {
    char why[512];
    pthread_once(&index_once, make_index);
    if (ctx_index < 0) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if ((o->certfile && check_readable("certfile", o->certfile, err, errlen) < 0) ||
        (o->keyfile && check_readable("keyfile", o->keyfile, err, errlen) < 0) ||
        (o->cafile && check_readable("cafile", o->cafile, err, errlen) < 0) ||
        (o->crlfile && check_readable("crlfile", o->crlfile, err, errlen) < 0) ||
        (o->dhparamfile && check_readable("dhparamfile", o->dhparamfile, err, errlen) < 0))
        return NULL;
    if (o->psk_hint && !HATO_WITH_TLS_PSK) {
        set_err(err, errlen, "psk_hint: hato was built without TLS-PSK (WITH_TLS_PSK=OFF)");
        return NULL;
    }
    if (o->capath) {
        DIR *d = opendir(o->capath);
        if (!d) {
            set_err(err, errlen, "cannot read capath %s: %s", o->capath, strerror(errno));
            return NULL;
        }
        closedir(d);
    }

    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct tls_ctx *tc = ctx ? ctx_alloc(ctx, true) : NULL;
    if (!tc) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, "cannot create TLS context: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    tc->identity = o->identity;
    /* tls_version is the lowest version accepted, as in Mosquitto; TLS 1.1
     * and older are never offered. */
    int minv =
        o->tls_version && strcmp(o->tls_version, "tlsv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
    if (!HATO_WITH_EC && no_elliptic_curves(ctx, o->ciphers != NULL, err, errlen) < 0) {
        tls_ctx_unref(tc);
        return NULL;
    }
    static const unsigned char sid_ctx[] = "hato";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);

    if (o->certfile) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "cannot load certfile %s: %s", o->certfile, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();
            /* The last error of an encrypted key is SSL's "PEM lib"; the
             * passphrase request is further up the queue. */
            bool password = ssl_errors(why, sizeof(why));
            if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                set_err(err, errlen, "keyfile %s does not match certfile %s: %s", o->keyfile,
                        o->certfile, why);
            else
                set_err(err, errlen, "cannot load keyfile %s: %s%s", o->keyfile, why,
                        password || ERR_GET_LIB(e) == ERR_LIB_PEM
                            ? " (an encrypted key must be decrypted first: hato never prompts)"
                            : "");
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "keyfile %s does not match certfile %s: %s", o->keyfile,
                    o->certfile, why);
            goto fail;
        }
    }
    if (o->cafile || o->capath) {
        if (SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "cannot load %s %s: %s", o->cafile ? "cafile" : "capath",
                    o->cafile ? o->cafile : o->capath, why);
            goto fail;
        }
        if (o->cafile) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->cafile);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
        }
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    if (o->crlfile) {
        X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (!lk || X509_load_crl_file(lk, o->crlfile, X509_FILETYPE_PEM) <= 0) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "cannot load crlfile %s: %s", o->crlfile, why);
            goto fail;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    if (o->no_date_checks)
        X509_STORE_set_flags(store, X509_V_FLAG_NO_CHECK_TIME);
    if (o->certfile) {
        /* require_certificate: no certificate, no connection. An identity
         * listener asks for one too; without it CONNECT is refused. */
        if (o->require_certificate)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else if (o->identity != TLS_ID_NONE)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (o->dhparamfile) {
        BIO *bio = BIO_new_file(o->dhparamfile, "r");
        EVP_PKEY *dh = bio ? PEM_read_bio_Parameters(bio, NULL) : NULL;
        BIO_free(bio);
        if (!dh || !EVP_PKEY_is_a(dh, "DH") || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            EVP_PKEY_free(dh);
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "cannot use dhparamfile %s: %s", o->dhparamfile,
                    dh ? why : "no DH parameters in the file");
            goto fail;
        }
    } else {
        SSL_CTX_set_dh_auto(ctx, 1);
    }
    if (o->ciphers && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, "ciphers '%s': %s", o->ciphers, why);
        goto fail;
    }
    if (o->ciphers_tls13 && SSL_CTX_set_ciphersuites(ctx, o->ciphers_tls13) != 1) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, "ciphers_tls1.3 '%s': %s", o->ciphers_tls13, why);
        goto fail;
    }
    if (HATO_WITH_TLS_PSK && o->psk_hint) {
        if (o->psk_file) {
            tc->psk = psk_load(o->psk_file, err, errlen);
            if (!tc->psk)
                goto fail;
        } else if (!(tc->psk =
                         calloc(1, sizeof(*tc->psk)))) { /* no keys: every PSK client refused */
            set_err(err, errlen, "out of memory");
            goto fail;
        }
        if (SSL_CTX_use_psk_identity_hint(ctx, o->psk_hint) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "psk_hint '%s': %s", o->psk_hint, why);
            goto fail;
        }
        SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
        /* Without a certificate only PSK suites can be negotiated. */
        if (!o->certfile && !o->ciphers && SSL_CTX_set_cipher_list(ctx, "PSK") != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, "no PSK cipher suites: %s", why);
            goto fail;
        }
    }
    return tc;
fail:
    tls_ctx_unref(tc);
    return NULL;
}

/* ---- client contexts ---------------------------------------------------- */

struct tls_ctx *tls_client_ctx_new(const struct tls_client_opts *o, char *err, size_t errlen) {
    char why[200];
    pthread_once(&index_once, make_index);
    if (ctx_index < 0) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    int minv = TLS1_2_VERSION;
    if (o->tls_version) {
        if (!strcmp(o->tls_version, "tlsv1.3"))
            minv = TLS1_3_VERSION;
        else if (!strcmp(o->tls_version, "tlsv1.2"))
            minv = TLS1_2_VERSION;
        else if (!strcmp(o->tls_version, "tlsv1.1"))
            minv = TLS1_1_VERSION;
        else {
            set_err(err, errlen, "--tls-version: expected tlsv1.3, tlsv1.2 or tlsv1.1, not '%s'",
                    o->tls_version);
            return NULL;
        }
    }
    if (o->psk_identity && !HATO_WITH_TLS_PSK) {
        set_err(err, errlen, "--psk: hato was built without TLS-PSK (WITH_TLS_PSK=OFF)");
        return NULL;
    }
    if (o->psk_len > sizeof(((struct tls_ctx *)0)->psk_key)) {
        set_err(err, errlen, "--psk: the key is too long");
        return NULL;
    }
    /* OpenSSL only notes a capath to look in later: a missing directory
     * would show as "certificate verify failed" at the first handshake. */
    if (o->capath && !o->psk_identity) {
        DIR *d = opendir(o->capath);
        if (!d) {
            set_err(err, errlen, "cannot read capath %s: %s", o->capath, strerror(errno));
            return NULL;
        }
        closedir(d);
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct tls_ctx *tc = ctx ? ctx_alloc(ctx, false) : NULL;
    if (!tc) {
        ssl_reason(why, sizeof why);
        set_err(err, errlen, "TLS: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_min_proto_version(ctx, minv);
    if (o->tls_version)
        SSL_CTX_set_max_proto_version(ctx, minv == TLS1_1_VERSION ? TLS1_3_VERSION : minv);
    if (!HATO_WITH_EC && no_elliptic_curves(ctx, o->ciphers != NULL, err, errlen) < 0)
        goto fail;
    if (o->ciphers && !SSL_CTX_set_cipher_list(ctx, o->ciphers)) {
        ssl_reason(why, sizeof why);
        set_err(err, errlen, "--ciphers '%s': %s", o->ciphers, why);
        goto fail;
    }
    if (HATO_WITH_TLS_PSK && o->psk_identity) {
        if (!(tc->psk_identity = strdup(o->psk_identity))) {
            set_err(err, errlen, "out of memory");
            goto fail;
        }
        memcpy(tc->psk_key, o->psk, o->psk_len);
        tc->psk_len = o->psk_len;
        SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        if (o->cafile || o->capath) {
            if (!SSL_CTX_load_verify_locations(ctx, o->cafile, o->capath)) {
                ssl_reason(why, sizeof why);
                set_err(err, errlen, "cannot load CA certificates from %s: %s",
                        o->cafile ? o->cafile : o->capath, why);
                goto fail;
            }
        }
        if (o->use_os_certs || (!o->cafile && !o->capath))
            SSL_CTX_set_default_verify_paths(ctx);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->certfile || o->keyfile) {
        if (!o->certfile || !o->keyfile) {
            set_err(err, errlen, "--cert and --key go together");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
            ssl_reason(why, sizeof why);
            set_err(err, errlen, "cannot load client certificate %s: %s", o->certfile, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) != 1) {
            ssl_reason(why, sizeof why);
            set_err(err, errlen, "cannot load client key %s: %s", o->keyfile, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            set_err(err, errlen, "client key %s does not match certificate %s", o->keyfile,
                    o->certfile);
            goto fail;
        }
    }
    if (o->alpn) {
        size_t n = strlen(o->alpn);
        unsigned char buf[256];
        if (!n || n > 255) {
            set_err(err, errlen, "--tls-alpn: 1 to 255 characters");
            goto fail;
        }
        buf[0] = (unsigned char)n;
        memcpy(buf + 1, o->alpn, n);
        SSL_CTX_set_alpn_protos(ctx, buf, (unsigned)n + 1);
    }
    return tc;
fail:
    tls_ctx_unref(tc);
    return NULL;
}

struct tls_ctx *tls_client_ctx_wrap(void *ssl_ctx) {
    pthread_once(&index_once, make_index);
    if (ctx_index < 0 || !SSL_CTX_up_ref(ssl_ctx))
        return NULL;
    struct tls_ctx *tc = ctx_alloc(ssl_ctx, false);
    if (!tc)
        SSL_CTX_free(ssl_ctx);
    return tc;
}

/* ---- a BIO over the lower stream --------------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *bio, char *buf, size_t len, size_t *got) {
    struct tls_stream *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    ssize_t r = stream_read(t->s.lower, buf, len);
    if (r > 0) {
        *got = (size_t)r;
        return 1;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(bio);
    *got = 0;
    return r == 0 ? 0 : -1;
}

static int bio_write(BIO *bio, const char *buf, size_t len, size_t *put) {
    struct tls_stream *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    ssize_t w = stream_writev(t->s.lower, &iov, 1);
    if (w > 0) {
        *put = (size_t)w;
        return 1;
    }
    *put = 0;
    if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        t->lower_blocked = true;
        BIO_set_retry_write(bio);
    }
    return -1;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    (void)bio, (void)num, (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}

static void make_bio_method(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hato-stream");
    if (m && BIO_meth_set_read_ex(m, bio_read) == 1 && BIO_meth_set_write_ex(m, bio_write) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1 && BIO_meth_set_create(m, bio_create) == 1) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- the layer ---------------------------------------------------------- */

/* The name a certificate gives for use_identity_as_username (CN, UTF-8)
 * or use_subject_as_username (RFC 2253 subject), or NULL. */
static char *cert_name(X509 *x, bool subject) {
    X509_NAME *name = X509_get_subject_name(x);
    if (!name)
        return NULL;
    if (subject) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (!bio)
            return NULL;
        char *out = NULL;
        if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
            char *p = NULL;
            long n = BIO_get_mem_data(bio, &p);
            if (n > 0 && !memchr(p, 0, (size_t)n))
                out = strndup(p, (size_t)n);
        }
        BIO_free(bio);
        return out;
    }
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return NULL;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *u = NULL;
    int n = s ? ASN1_STRING_to_UTF8(&u, s) : -1;
    char *out = NULL;
    if (n > 0 && !memchr(u, 0, (size_t)n)) /* an embedded NUL is no name */
        out = strndup((const char *)u, (size_t)n);
    OPENSSL_free(u);
    return out;
}

static void handshake_done(struct tls_stream *t) {
    t->done = true;
    t->hs_write = false;
    t->rd_pending = true; /* the peer's first bytes may be decrypted already */
    struct stream_info *info = t->s.info;
    if (!info)
        return;
    info->tls_done = true;
    if (!t->ctx->server || t->ctx->identity == TLS_ID_NONE)
        return;
    char *u = NULL;
    if (t->psk_id) {
        u = strdup(t->psk_id);
    } else {
        X509 *peer = SSL_get0_peer_certificate(t->ssl);
        /* With SSL_VERIFY_PEER a certificate that is here has been verified. */
        if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK)
            u = cert_name(peer, t->ctx->identity == TLS_ID_SUBJECT);
    }
    if (u) {
        free(info->identity);
        info->identity = u;
    }
}

/* A failed SSL call: the reason into info->why; returns -1 with errno set. */
static int tls_failed(struct tls_stream *t, int e, int saved_errno, const char *what) {
    t->failed = true;
    char why[768];
    if (t->s.info && t->s.info->why && !t->done)
        return stream_fail(&t->s, EPROTO, "%s", t->s.info->why); /* e.g. unknown PSK identity */
    long v = SSL_get_verify_result(t->ssl);
    if (!t->ctx->server && v != X509_V_OK && !t->done) {
        t->verify_failed = true;
        ERR_clear_error();
        return stream_fail(&t->s, EPROTO, "TLS: certificate verify failed: %s",
                           X509_verify_cert_error_string(v));
    }
    if (e == SSL_ERROR_SSL) {
        if (t->ctx->server) {
            ssl_errors(why, sizeof(why));
            if (v != X509_V_OK) {
                size_t n = strlen(why);
                snprintf(why + n, sizeof(why) - n, " (client certificate: %s)",
                         X509_verify_cert_error_string(v));
            }
        } else {
            ssl_reason(why, sizeof(why));
        }
        if (t->ctx->server)
            return stream_fail(&t->s, EPROTO, "%s", why);
        return stream_fail(&t->s, EPROTO, "TLS %s failed: %s", what, why);
    }
    if (!t->ctx->server) {
        if (e == SSL_ERROR_ZERO_RETURN)
            return stream_fail(&t->s, ECONNRESET, "the broker closed the TLS connection");
        if (e == SSL_ERROR_SYSCALL && saved_errno && saved_errno != EAGAIN)
            return stream_fail(&t->s, saved_errno, "TLS %s: %s", what, strerror(saved_errno));
        return stream_fail(&t->s, ECONNRESET, "TLS %s: the broker closed the connection", what);
    }
    if (e == SSL_ERROR_SYSCALL && saved_errno && saved_errno != EAGAIN)
        return stream_fail(&t->s, saved_errno, "%s", strerror(saved_errno));
    if (!t->done)
        return stream_fail(&t->s, ECONNRESET,
                           "connection closed by the client during the handshake");
    return stream_fail(&t->s, ECONNRESET, "connection closed without close_notify");
}

/* 1 done, 0 in progress, -1 failed. */
static int handshake(struct tls_stream *t) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        handshake_done(t);
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        t->hs_write = false;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        t->hs_write = true;
        return 0;
    }
    tls_failed(t, e, errno, "handshake");
    return -1;
}

static ssize_t tls_read(struct stream *s, void *buf, size_t len) {
    struct tls_stream *t = (struct tls_stream *)s;
    if (t->failed) {
        errno = EPROTO;
        return -1;
    }
    if (!t->done) {
        int r = handshake(t);
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    t->rd_write = false;
    if (SSL_read_ex(t->ssl, buf, len, &n) == 1) {
        t->rd_pending = true; /* more may be buffered: ask again */
        return (ssize_t)n;
    }
    int e = SSL_get_error(t->ssl, 0);
    int saved = errno;
    t->rd_pending = false;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->rd_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (!saved && !ERR_peek_error()) {
            t->failed = true; /* the peer closed without close_notify */
            return 0;
        }
        /* fall through */
    default:
        tls_failed(t, e, saved, "read");
        if (errno == EINTR || errno == EAGAIN)
            errno = EIO; /* never retried */
        return -1;
    }
}

static ssize_t tls_writev(struct stream *s, const struct iovec *iov, int iovcnt) {
    struct tls_stream *t = (struct tls_stream *)s;
    static _Thread_local unsigned char stage[TLS_RECORD];
    if (t->failed) {
        errno = EPIPE;
        return -1;
    }
    if (!t->done) {
        if (t->ctx->server) {
            errno = EAGAIN; /* nothing is sent before the handshake; kept by the caller */
            return -1;
        }
        int r = handshake(t);
        if (r < 0)
            return -1;
        if (r == 0) {
            t->wr_read = !t->hs_write; /* the handshake waits for the server */
            errno = EAGAIN;
            return -1;
        }
    }
    t->wr_read = false;
    t->lower_blocked = false;
    size_t total = 0;
    int i = 0;
    size_t off = 0; /* into iov[i] */
    while (i < iovcnt) {
        const unsigned char *p;
        size_t n;
        if (iov[i].iov_len - off >= TLS_RECORD) {
            /* A full record straight from a large buffer: no copy. */
            p = (const unsigned char *)iov[i].iov_base + off;
            n = TLS_RECORD;
        } else {
            /* Gather small buffers into one record. A retry after WANT_WRITE
             * gathers the same bytes again, at least as many: OpenSSL accepts
             * that with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
            n = 0;
            size_t o = off;
            for (int k = i; k < iovcnt && n < TLS_RECORD; k++) {
                size_t take = iov[k].iov_len - o;
                if (take > TLS_RECORD - n)
                    take = TLS_RECORD - n;
                memcpy(stage + n, (const unsigned char *)iov[k].iov_base + o, take);
                n += take;
                o = 0;
            }
            p = stage;
        }
        if (n == 0) {
            i++;
            off = 0;
            continue;
        }
        ERR_clear_error();
        errno = 0;
        size_t wr = 0;
        if (SSL_write_ex(t->ssl, p, n, &wr) != 1) {
            int e = SSL_get_error(t->ssl, 0);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                t->wr_read = e == SSL_ERROR_WANT_READ;
                if (total)
                    return (ssize_t)total;
                errno = EAGAIN;
                return -1;
            }
            tls_failed(t, e, errno, "write");
            return -1;
        }
        total += wr;
        /* Advance over what was written. */
        while (wr && i < iovcnt) {
            size_t rem = iov[i].iov_len - off;
            if (wr < rem) {
                off += wr;
                wr = 0;
            } else {
                wr -= rem;
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t)total;
}

/*
 * A read had to write (a renegotiation's ClientHello on a client, an alert)
 * and the lower layer took nothing: go on with a peek, which takes no
 * application bytes. Without it the write would wait for the next read or
 * write while wants() asks for write readiness, which an idle connection
 * has at once: a spin. 0, or -1 on failure.
 */
static int read_write_retry(struct tls_stream *t) {
    unsigned char b;
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    t->rd_write = false;
    if (SSL_peek_ex(t->ssl, &b, 1, &n) == 1) {
        t->rd_pending = true; /* bytes to read now */
        return 0;
    }
    int e = SSL_get_error(t->ssl, 0);
    int saved = errno;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        t->rd_write = true;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        t->rd_pending = true; /* the next read returns the end */
        return 0;
    case SSL_ERROR_SYSCALL:
        if (!saved && !ERR_peek_error()) {
            t->rd_pending = true;
            return 0;
        }
        /* fall through */
    default:
        tls_failed(t, e, saved, "read");
        return -1;
    }
}

static int tls_flush(struct stream *s) {
    struct tls_stream *t = (struct tls_stream *)s;
    if (t->failed)
        return -1;
    if (!t->done) {
        if (t->hs_write && handshake(t) < 0)
            return -1;
        return t->hs_write ? 1 : 0;
    }
    if (t->rd_write && read_write_retry(t) < 0)
        return -1;
    int r = stream_flush(s->lower);
    if (r < 0)
        return -1;
    return r || t->rd_write ? 1 : 0;
}

static unsigned tls_wants(const struct stream *s) {
    const struct tls_stream *t = (const struct tls_stream *)s;
    unsigned w = stream_wants(s->lower);
    if (t->hs_write || t->rd_write)
        w |= STREAM_WANT_WRITE;
    if (t->wr_read)
        w |= STREAM_WANT_READ;
    return w;
}

static bool tls_pending(const struct stream *s) {
    const struct tls_stream *t = (const struct tls_stream *)s;
    /* Not SSL_has_pending: with read-ahead it also counts part of a record,
     * which no read can return until the rest arrives. */
    return t->rd_pending || stream_pending(s->lower);
}

static void tls_shutdown(struct stream *s) {
    struct tls_stream *t = (struct tls_stream *)s;
    if (t->done && !t->failed && !t->shut) {
        t->shut = true;
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* one try, never waits */
        ERR_clear_error();
    }
    stream_shutdown(s->lower);
}

static void tls_destroy(struct stream *s) {
    struct tls_stream *t = (struct tls_stream *)s;
    SSL_free(t->ssl);
    ERR_clear_error();
    tls_ctx_unref(t->ctx);
    free(t->psk_id);
    free(t);
}

const struct stream_ops tls_stream_ops = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .flush = tls_flush,
    .wants = tls_wants,
    .pending = tls_pending,
    .shutdown = tls_shutdown,
    .destroy = tls_destroy,
};

struct stream *tls_stream_new(struct stream *lower, struct tls_ctx *ctx, const char *host,
                              bool insecure) {
    pthread_once(&bio_once, make_bio_method);
    if (!bio_method || ctx_index < 0)
        return NULL;
    struct tls_stream *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->s = (struct stream){
        .ops = &tls_stream_ops, .lower = lower, .info = lower->info, .fd = lower->fd};
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_ex_data(t->ssl, ctx_index, t);
    tls_ctx_ref(ctx);
    t->ctx = ctx;
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (host) {
            unsigned char addr[16];
            bool is_ip =
                inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
            if (!is_ip)
                SSL_set_tlsext_host_name(t->ssl, host);
            if (!insecure && !ctx->psk_identity) {
                if (is_ip)
                    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
                else
                    SSL_set1_host(t->ssl, host);
            }
        }
    }
    return &t->s;
}

const char *tls_stream_recheck(struct stream *s, struct tls_ctx *now, char *buf, size_t len) {
    struct tls_stream *t = (struct tls_stream *)s;
    struct tls_ctx *then = t->ctx;
    if (now == then || !t->done)
        return NULL;
    if (then->psk) {
        if (!t->psk_id)
            return NULL;
        const struct psk_entry *n = psk_find(now->psk, t->psk_id);
        const struct psk_entry *o = psk_find(then->psk, t->psk_id);
        if (!n)
            return "PSK identity no longer in psk_file";
        if (o && (n->keylen != o->keylen || CRYPTO_memcmp(n->key, o->key, n->keylen) != 0))
            return "PSK key changed in psk_file";
        return NULL;
    }
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (!peer || SSL_CTX_get_verify_mode(now->ssl) == SSL_VERIFY_NONE)
        return NULL;
    const char *why = NULL;
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    if (sc && X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(now->ssl), peer,
                                  SSL_get_peer_cert_chain(t->ssl)) == 1) {
        X509_STORE_CTX_set_default(sc, "ssl_client");
        if (X509_verify_cert(sc) != 1) {
            snprintf(buf, len, "client certificate no longer accepted: %s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
            why = buf;
        }
    }
    X509_STORE_CTX_free(sc);
    ERR_clear_error();
    return why;
}

void tls_stream_describe(struct stream *s, char *buf, size_t len) {
    struct tls_stream *t = (struct tls_stream *)s;
    snprintf(buf, len, "%s, %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}

bool tls_stream_verify_failed(struct stream *s) {
    return ((struct tls_stream *)s)->verify_failed;
}
