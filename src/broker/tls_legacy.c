/*
 * TLS listeners with OpenSSL 3. See tls.h for the model.
 */
#include "broker/tls_legacy.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/broker.h"

struct psk_entry {
    char *identity;
    unsigned char *key;
    size_t keylen;
};

struct psk_table {
    struct psk_entry *e;
    size_t n;
};

struct tls_state {
    pthread_mutex_t lock; /* guards ctx[] against a reload swapping it */
    size_t n;             /* = number of configured listeners */
    SSL_CTX **ctx;        /* per listener; NULL for plain listeners */
    atomic_uint gen;      /* bumped by every reload that replaced a context */
};

static int psk_index = -1;    /* SSL_CTX ex_data: struct psk_table * */
static int psk_id_index = -1; /* SSL ex_data: the PSK identity used (malloc'd) */

/* ---- helpers ------------------------------------------------------------ */

/* OpenSSL's error queue of this thread as one line (emptied). */
static void ssl_errors(char *buf, size_t len) {
    size_t n = 0;
    buf[0] = 0;
    const char *data = NULL;
    int flags = 0;
    unsigned long e;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
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
}

static void set_err(char *err, size_t errlen, const struct hato_listener *l, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_err(char *err, size_t errlen, const struct hato_listener *l, const char *fmt, ...) {
    int n = snprintf(err, errlen, "%s:%d: listener %d: ", l->file, l->line, l->port);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* A file the broker must read: fails with strerror before OpenSSL tries. */
static int check_readable(const char *what, const char *path, const struct hato_listener *l,
                          char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, l, "cannot read %s %s: %s", what, path, strerror(errno));
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

static void psk_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp) {
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    psk_table_free(ptr);
}

static void psk_id_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp) {
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * psk_file in Mosquitto's format: one `identity:hexkey` a line, `#`
 * comments and blank lines ignored. Any other line is an error with its
 * line number (a malformed line is never a usable identity).
 */
static struct psk_table *psk_load(const char *path, const struct hato_listener *l, char *err,
                                  size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, l, "cannot read psk_file %s: %s", path, strerror(errno));
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
        if (!colon || colon == line)
            why = "expected identity:hexkey";
        else if (klen == 0 || klen % 2 || klen / 2 > PSK_MAX_PSK_LEN)
            why = "the key must be an even number of hex digits (at most 1024)";
        else
            for (size_t i = 0; i < klen && !why; i++)
                if (hexval((unsigned char)colon[1 + i]) < 0)
                    why = "the key must be hex digits";
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
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
        e->keylen = klen / 2;
        e->key = OPENSSL_malloc(e->keylen);
        if (!e->identity || !e->key) {
            free(e->identity);
            OPENSSL_free(e->key);
            goto oom;
        }
        for (size_t i = 0; i < e->keylen; i++)
            e->key[i] = (unsigned char)(hexval((unsigned char)colon[1 + 2 * i]) * 16 +
                                        hexval((unsigned char)colon[2 + 2 * i]));
        t->n++;
        OPENSSL_cleanse(colon, klen + 1);
    }
    free(line);
    fclose(f);
    return t;
oom:
    snprintf(err, errlen, "%s: out of memory", path);
fail:
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(f);
    psk_table_free(t);
    return NULL;
}

/* TLS-PSK (TLS 1.2 PSK cipher suites, and TLS 1.3 through OpenSSL's
 * compatibility path): look the identity up in the listener's psk_file. */
static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk_len) {
    struct conn *c = SSL_get_app_data(ssl);
    struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), psk_index);
    if (!c || !t || !identity)
        return 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->e[i].identity, identity) != 0)
            continue;
        if (t->e[i].keylen > max_psk_len)
            return 0;
        const struct hato_listener *l = c->ls->cfg;
        if (l->use_identity_as_username || l->use_subject_as_username) {
            char *u = strdup(identity);
            if (!u)
                return 0;
            free(c->username);
            c->username = u;
            c->username_from_tls = true;
        }
        /* Kept for reload checks: TLS 1.3 sessions made through this
         * callback do not remember the identity. */
        char *keep = strdup(identity);
        if (!keep)
            return 0;
        free(SSL_get_ex_data(ssl, psk_id_index));
        SSL_set_ex_data(ssl, psk_id_index, keep);
        memcpy(psk, t->e[i].key, t->e[i].keylen);
        return (unsigned int)t->e[i].keylen;
    }
    /* The identity is the client's text: printable ASCII only in the log. */
    char shown[65];
    size_t k = 0;
    for (; identity[k] && k < sizeof(shown) - 1; k++)
        shown[k] = identity[k] >= 0x20 && identity[k] < 0x7f ? identity[k] : '?';
    shown[k] = 0;
    log_notice("TLS-PSK: unknown identity '%s%s' from %s.", shown, identity[k] ? "..." : "",
               c->peer);
    return 0;
}

/* Encrypted private keys are refused rather than prompted for. */
static int no_password_cb(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static const char *psk_file_of(const struct hato_config *cfg, const struct hato_listener *l) {
    return cfg->per_listener_settings ? l->psk_file : cfg->psk_file;
}

/* A listener's context from its files, or NULL with "FILE:LINE: ..." in err. */
static SSL_CTX *build_ctx(const struct hato_config *cfg, const struct hato_listener *l, char *err,
                          size_t errlen) {
    char why[512];
    bool identity = l->use_identity_as_username || l->use_subject_as_username;
    if (l->tls_engine || (l->tls_keyform && strcmp(l->tls_keyform, "pem") != 0)) {
        set_err(err, errlen, l, "tls_engine / tls_keyform engine are not supported");
        return NULL;
    }
    if (l->certfile && (l->require_certificate || identity) && !l->cafile && !l->capath) {
        set_err(err, errlen, l, "%s needs cafile or capath to verify client certificates",
                l->require_certificate ? "require_certificate" : "use_identity_as_username");
        return NULL;
    }
    if ((l->certfile && check_readable("certfile", l->certfile, l, err, errlen) < 0) ||
        (l->keyfile && check_readable("keyfile", l->keyfile, l, err, errlen) < 0) ||
        (l->cafile && check_readable("cafile", l->cafile, l, err, errlen) < 0) ||
        (l->crlfile && check_readable("crlfile", l->crlfile, l, err, errlen) < 0) ||
        (l->dhparamfile && check_readable("dhparamfile", l->dhparamfile, l, err, errlen) < 0))
        return NULL;
    if (l->capath) {
        DIR *d = opendir(l->capath);
        if (!d) {
            set_err(err, errlen, l, "cannot read capath %s: %s", l->capath, strerror(errno));
            return NULL;
        }
        closedir(d);
    }

    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, l, "cannot create TLS context: %s", why);
        return NULL;
    }
    /* tls_version is the lowest version accepted, as in Mosquitto;
     * TLS 1.1 and older are never offered. */
    int minv =
        l->tls_version && strcmp(l->tls_version, "tlsv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
    static const unsigned char sid_ctx[] = "hato";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);

    if (l->certfile) {
        if (SSL_CTX_use_certificate_chain_file(ctx, l->certfile) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "cannot load certfile %s: %s", l->certfile, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, l->keyfile, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();
            ssl_errors(why, sizeof(why));
            if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                set_err(err, errlen, l, "keyfile %s does not match certfile %s: %s", l->keyfile,
                        l->certfile, why);
            else
                set_err(err, errlen, l, "cannot load keyfile %s: %s%s", l->keyfile, why,
                        ERR_GET_LIB(e) == ERR_LIB_PEM
                            ? " (an encrypted key must be decrypted first: hato never prompts)"
                            : "");
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "keyfile %s does not match certfile %s: %s", l->keyfile,
                    l->certfile, why);
            goto fail;
        }
    }
    if (l->cafile || l->capath) {
        if (SSL_CTX_load_verify_locations(ctx, l->cafile, l->capath) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "cannot load %s %s: %s", l->cafile ? "cafile" : "capath",
                    l->cafile ? l->cafile : l->capath, why);
            goto fail;
        }
        if (l->cafile) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(l->cafile);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
        }
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    if (l->crlfile) {
        X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (!lk || X509_load_crl_file(lk, l->crlfile, X509_FILETYPE_PEM) <= 0) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "cannot load crlfile %s: %s", l->crlfile, why);
            goto fail;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    if (l->disable_client_cert_date_checks)
        X509_STORE_set_flags(store, X509_V_FLAG_NO_CHECK_TIME);
    if (l->certfile) {
        /* require_certificate: no certificate, no connection. An identity
         * listener asks for one too; without it CONNECT is refused. */
        if (l->require_certificate)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else if (identity)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (l->dhparamfile) {
        BIO *bio = BIO_new_file(l->dhparamfile, "r");
        EVP_PKEY *dh = bio ? PEM_read_bio_Parameters(bio, NULL) : NULL;
        BIO_free(bio);
        if (!dh || !EVP_PKEY_is_a(dh, "DH") || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            EVP_PKEY_free(dh);
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "cannot use dhparamfile %s: %s", l->dhparamfile,
                    dh ? why : "no DH parameters in the file");
            goto fail;
        }
    } else {
        SSL_CTX_set_dh_auto(ctx, 1);
    }
    if (l->ciphers && SSL_CTX_set_cipher_list(ctx, l->ciphers) != 1) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, l, "ciphers '%s': %s", l->ciphers, why);
        goto fail;
    }
    if (l->ciphers_tls13 && SSL_CTX_set_ciphersuites(ctx, l->ciphers_tls13) != 1) {
        ssl_errors(why, sizeof(why));
        set_err(err, errlen, l, "ciphers_tls1.3 '%s': %s", l->ciphers_tls13, why);
        goto fail;
    }
    if (l->psk_hint) {
        const char *pf = psk_file_of(cfg, l);
        struct psk_table *t = NULL;
        if (pf) {
            t = psk_load(pf, l, err, errlen);
            if (!t)
                goto fail;
        } else {
            t = calloc(1, sizeof(*t)); /* no keys: every PSK client is refused */
            if (!t) {
                set_err(err, errlen, l, "out of memory");
                goto fail;
            }
        }
        if (!SSL_CTX_set_ex_data(ctx, psk_index, t)) {
            psk_table_free(t);
            set_err(err, errlen, l, "out of memory");
            goto fail;
        }
        if (SSL_CTX_use_psk_identity_hint(ctx, l->psk_hint) != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "psk_hint '%s': %s", l->psk_hint, why);
            goto fail;
        }
        SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
        /* Without a certificate only PSK suites can be negotiated. */
        if (!l->certfile && !l->ciphers && SSL_CTX_set_cipher_list(ctx, "PSK") != 1) {
            ssl_errors(why, sizeof(why));
            set_err(err, errlen, l, "no PSK cipher suites: %s", why);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- contexts ----------------------------------------------------------- */

static int ensure_index(void) {
    if (psk_index < 0)
        psk_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, psk_ex_free);
    if (psk_id_index < 0)
        psk_id_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, psk_id_free);
    return psk_index < 0 || psk_id_index < 0 ? -1 : 0;
}

int tls_check_config(const struct hato_config *cfg) {
    int rc = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!hato_listener_wants_tls(l))
            continue;
        char err[1024] = "out of memory";
        SSL_CTX *ctx = ensure_index() < 0 ? NULL : build_ctx(cfg, l, err, sizeof(err));
        if (!ctx) {
            log_error("Error: %s", err);
            rc = -1;
        }
        SSL_CTX_free(ctx);
    }
    return rc;
}

int tls_init(struct broker *b) {
    const struct hato_config *cfg = b->cfg;
    bool any = false;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        any |= hato_listener_wants_tls(&cfg->listeners[i]);
    if (!any)
        return 0;
    struct tls_state *t = calloc(1, sizeof(*t));
    if (!t || ensure_index() < 0) {
        free(t);
        log_error("Error: out of memory.");
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->n = cfg->n_listeners;
    t->ctx = calloc(t->n, sizeof(*t->ctx));
    b->tls = t;
    if (!t->ctx) {
        log_error("Error: out of memory.");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!hato_listener_wants_tls(l))
            continue;
        char err[1024];
        t->ctx[i] = build_ctx(cfg, l, err, sizeof(err));
        if (!t->ctx[i]) {
            log_error("Error: %s", err);
            return -1;
        }
        log_info("TLS on listener %s:%d: %s%s%s.", l->file, l->line,
                 l->psk_hint ? "PSK" : "certificate",
                 l->require_certificate ? ", client certificate required" : "",
                 l->use_identity_as_username  ? ", identity as user name"
                 : l->use_subject_as_username ? ", subject as user name"
                                              : "");
    }
    return 0;
}

void tls_reload(struct broker *b) {
    struct tls_state *t = b->tls;
    if (!t)
        return;
    const struct hato_config *cfg = b->cfg;
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct hato_listener *l = &cfg->listeners[i];
        if (!t->ctx[i])
            continue;
        char err[1024];
        SSL_CTX *n = build_ctx(cfg, l, err, sizeof(err));
        if (!n) {
            log_error("Error: TLS reload: %s; listener %d keeps its current certificates.", err,
                      l->port);
            failed++;
            continue;
        }
        pthread_mutex_lock(&t->lock);
        SSL_CTX *old = t->ctx[i];
        t->ctx[i] = n;
        pthread_mutex_unlock(&t->lock);
        SSL_CTX_free(old); /* connections that use it hold their own reference */
        ok++;
    }
    log_notice("TLS certificates reloaded for %zu listener%s%s.", ok, ok == 1 ? "" : "s",
               failed ? " (some failed, see above)" : "");
    if (ok)
        atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
}

static const struct psk_entry *psk_find(const struct psk_table *t, const char *identity) {
    for (size_t i = 0; t && i < t->n; i++)
        if (strcmp(t->e[i].identity, identity) == 0)
            return &t->e[i];
    return NULL;
}

/* Why the listener's current context would refuse this established
 * connection now, or NULL: its client certificate is checked again against
 * the new CA, CRL and dates; its PSK identity and key against the new file. */
static const char *refused_now(struct conn *c, SSL_CTX *now, char *buf, size_t len) {
    SSL_CTX *then = SSL_get_SSL_CTX(c->ssl);
    if (now == then)
        return NULL;
    if (c->ls->cfg->psk_hint) {
        const char *id = SSL_get_ex_data(c->ssl, psk_id_index);
        if (!id)
            return NULL;
        const struct psk_entry *n = psk_find(SSL_CTX_get_ex_data(now, psk_index), id);
        const struct psk_entry *o = psk_find(SSL_CTX_get_ex_data(then, psk_index), id);
        if (!n)
            return "PSK identity no longer in psk_file";
        if (o && (n->keylen != o->keylen || CRYPTO_memcmp(n->key, o->key, n->keylen) != 0))
            return "PSK key changed in psk_file";
        return NULL;
    }
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (!peer || SSL_CTX_get_verify_mode(now) == SSL_VERIFY_NONE)
        return NULL;
    const char *why = NULL;
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    if (sc && X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(now), peer,
                                  SSL_get_peer_cert_chain(c->ssl)) == 1) {
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

void tls_tick(struct worker *w) {
    struct tls_state *t = w->b->tls;
    if (!t)
        return;
    unsigned gen = atomic_load_explicit(&t->gen, memory_order_acquire);
    if (gen == w->tls_gen)
        return;
    w->tls_gen = gen;
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (!c->ssl || !(c->tls_flags & TLS_F_READY) || c->state == CS_CLOSING)
            continue;
        size_t li = (size_t)(c->ls->cfg - w->b->cfg->listeners);
        pthread_mutex_lock(&t->lock);
        SSL_CTX *now = li < t->n ? t->ctx[li] : NULL;
        if (now)
            SSL_CTX_up_ref(now);
        pthread_mutex_unlock(&t->lock);
        if (!now)
            continue;
        char buf[256];
        const char *why = refused_now(c, now, buf, sizeof(buf));
        SSL_CTX_free(now);
        if (!why)
            continue;
        /* A client that lost its access does not get its will published. */
        c->will_pending = false;
        proto_fail(c, MQTT_RC_NOT_AUTHORIZED, why); /* MQTT 5: DISCONNECT 0x87 first */
    }
}

void tls_free(struct broker *b) {
    struct tls_state *t = b->tls;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        SSL_CTX_free(t->ctx ? t->ctx[i] : NULL);
    free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
    b->tls = NULL;
}

/* ---- connections -------------------------------------------------------- */

int tls_conn_new(struct conn *c) {
    struct broker *b = c->w->b;
    struct tls_state *t = b->tls;
    if (!t)
        return 0;
    size_t li = (size_t)(c->ls->cfg - b->cfg->listeners);
    if (li >= t->n)
        return 0;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *ctx = t->ctx[li];
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&t->lock);
    if (!ctx)
        return 0;
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
        char why[256];
        ssl_errors(why, sizeof(why));
        log_error("TLS: cannot set up a connection from %s: %s", c->peer, why);
        SSL_free(ssl);
        return -1;
    }
    SSL_set_app_data(ssl, c);
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    c->tls_flags = 0;
    return 0;
}

void tls_update_events(struct conn *c) {
    uint32_t ev = EV_READ;
    if (c->tls_flags & (TLS_F_HS_WRITE | TLS_F_RD_WRITE | TLS_F_WR_BLOCKED | TLS_F_RD_PENDING))
        ev |= EV_WRITE;
    ev_io_set(c->w->loop, &c->io, ev);
}

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

static void handshake_done(struct conn *c) {
    const struct hato_listener *l = c->ls->cfg;
    c->tls_flags |= TLS_F_READY;
    c->tls_flags &= (uint8_t)~TLS_F_HS_WRITE;
    if (!l->psk_hint && (l->use_identity_as_username || l->use_subject_as_username)) {
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        /* With SSL_VERIFY_PEER a certificate that is here has been verified. */
        char *u = peer && SSL_get_verify_result(c->ssl) == X509_V_OK
                      ? cert_name(peer, !l->use_identity_as_username)
                      : NULL;
        if (u) {
            free(c->username);
            c->username = u;
            c->username_from_tls = true;
        }
    }
    log_debug("TLS handshake with %s: %s, %s%s%s.", c->peer, SSL_get_version(c->ssl),
              SSL_get_cipher_name(c->ssl), c->username_from_tls ? ", identity " : "",
              c->username_from_tls ? c->username : "");
}

/* 1 done, 0 in progress, -1 failed (logged with the peer and the reason). */
static int handshake(struct conn *c) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        handshake_done(c);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->tls_flags &= (uint8_t)~TLS_F_HS_WRITE;
        tls_update_events(c);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_flags |= TLS_F_HS_WRITE;
        tls_update_events(c);
        return 0;
    }
    int saved = errno;
    c->tls_flags |= TLS_F_FAILED;
    char why[768];
    if (e == SSL_ERROR_SSL) {
        ssl_errors(why, sizeof(why));
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            size_t n = strlen(why);
            snprintf(why + n, sizeof(why) - n, " (client certificate: %s)",
                     X509_verify_cert_error_string(v));
        }
    } else if (e == SSL_ERROR_SYSCALL && saved) {
        snprintf(why, sizeof(why), "%s", strerror(saved));
    } else {
        snprintf(why, sizeof(why), "connection closed by the client during the handshake");
    }
    log_notice("TLS handshake failed with client %s on port %d: %s", c->peer, c->ls->cfg->port,
               why);
    return -1;
}

void tls_event(struct conn *c, uint32_t events) {
    if (!(c->tls_flags & TLS_F_READY)) {
        int r = handshake(c);
        if (r < 0) {
            conn_close(c, NULL);
            return;
        }
        if (r == 0)
            return;
        /* The client's first bytes may already be decrypted and waiting. */
        c->tls_flags |= TLS_F_RD_PENDING;
    }
    uint8_t f = c->tls_flags;
    if (c->nsegs && ((events & EV_WRITE) || ((f & TLS_F_WR_READ) && (events & EV_READ)))) {
        if (tls_flush(c) < 0) {
            conn_close(c, "TLS write failed");
            return;
        }
        if (c->s && !c->nsegs)
            session_pump(c->s);
        if (c->state == CS_CLOSING)
            return;
    }
    if ((events & EV_READ) || (f & TLS_F_RD_PENDING) ||
        ((f & TLS_F_RD_WRITE) && (events & EV_WRITE))) {
        c->tls_flags &= (uint8_t) ~(TLS_F_RD_WRITE | TLS_F_RD_PENDING);
        conn_readable(c); /* ends with tls_after_read */
        return;
    }
    tls_update_events(c);
}

ssize_t tls_read(struct conn *c, void *buf, size_t len) {
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    if (SSL_read_ex(c->ssl, buf, len, &n) == 1) {
        c->tls_flags |= TLS_F_RD_PENDING; /* more may be buffered: ask again */
        return (ssize_t)n;
    }
    int e = SSL_get_error(c->ssl, 0);
    int saved = errno;
    c->tls_flags &= (uint8_t)~TLS_F_RD_PENDING;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_flags |= TLS_F_RD_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        c->tls_flags |= TLS_F_FAILED;
        if (!saved)
            return 0;
        errno = saved == EINTR || saved == EAGAIN ? EIO : saved; /* never retried */
        return -1;
    default: {
        c->tls_flags |= TLS_F_FAILED;
        char why[512], msg[600];
        ssl_errors(why, sizeof(why));
        snprintf(msg, sizeof(msg), "TLS error: %s", why);
        conn_close(c, msg);
        errno = EAGAIN;
        return -1;
    }
    }
}

void tls_after_read(struct conn *c) {
    tls_update_events(c);
}

int tls_flush(struct conn *c) {
    if (c->tls_flags & TLS_F_FAILED)
        return -1;
    if (!(c->tls_flags & TLS_F_READY))
        return 0; /* nothing is sent before the handshake; kept for later */
    struct worker *w = c->w;
    c->tls_flags &= (uint8_t) ~(TLS_F_WR_BLOCKED | TLS_F_WR_READ);
    while (c->nsegs) {
        const struct oseg *s = &c->segs[c->seghead];
        const uint8_t *base = s->m ? s->m->payload + s->off : c->wbuf + s->off;
        const uint8_t *p;
        size_t n;
        if (s->len - c->segoff >= TLS_STAGE) {
            /* A full record straight from a large payload: no copy. */
            p = base + c->segoff;
            n = TLS_STAGE;
        } else {
            /* Gather small segments into one record. A retry after
             * WANT_WRITE gathers the same bytes again, at least as many
             * (segments only grow at the end): OpenSSL accepts that with
             * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
            if (!w->tls_stage && !(w->tls_stage = malloc(TLS_STAGE)))
                return -1;
            n = 0;
            for (uint32_t i = 0; i < c->nsegs && n < TLS_STAGE; i++) {
                const struct oseg *g = &c->segs[c->seghead + i];
                const uint8_t *gb = g->m ? g->m->payload + g->off : c->wbuf + g->off;
                uint32_t skip = i == 0 ? c->segoff : 0;
                size_t take = g->len - skip;
                if (take > TLS_STAGE - n)
                    take = TLS_STAGE - n;
                memcpy(w->tls_stage + n, gb + skip, take);
                n += take;
            }
            p = w->tls_stage;
        }
        ERR_clear_error();
        errno = 0;
        size_t wr = 0;
        if (SSL_write_ex(c->ssl, p, n, &wr) == 1) {
            conn_out_consumed(c, wr);
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->tls_flags |= TLS_F_WR_BLOCKED;
            tls_update_events(c);
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ) {
            c->tls_flags |= TLS_F_WR_READ;
            tls_update_events(c);
            return 0;
        }
        c->tls_flags |= TLS_F_FAILED;
        if (e == SSL_ERROR_SSL) {
            char why[512];
            ssl_errors(why, sizeof(why));
            log_notice("TLS write to %s failed: %s", c->peer, why);
        }
        return -1;
    }
    conn_out_done(c);
    tls_update_events(c);
    return 0;
}

void tls_conn_shutdown(struct conn *c) {
    if ((c->tls_flags & (TLS_F_READY | TLS_F_FAILED)) == TLS_F_READY) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* one try, never waits */
        ERR_clear_error();
    }
}

void tls_conn_free(struct conn *c) {
    SSL_free(c->ssl);
    c->ssl = NULL;
}
