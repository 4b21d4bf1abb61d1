/*
 * Password hashes (see hash.h). PBKDF2 and SHA-512 come from OpenSSL's
 * libcrypto, Argon2id from Debian's libargon2.
 */
#include "auth/hash.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_LEN 64 /* SHA-512 output, $6$ and $7$ */
#define SALT_MIN 8
#define SALT_MAX 64
#define ARGON2_MAX_M (256u * 1024u) /* KiB: 256 MiB per verification at most */
#define ARGON2_MAX_T 64u
#define ARGON2_MAX_P 16u

/* ---- base64 ------------------------------------------------------------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t auth_b64_encode(const uint8_t *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int b64_val(char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long auth_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap) {
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t pad = 0;
    if (in[n - 1] == '=')
        pad++;
    if (in[n - 2] == '=')
        pad++;
    size_t len = n / 4 * 3 - pad;
    if (len > outcap)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            char c = in[i + k];
            int d;
            if (c == '=' && i + 4 == n && k >= 4 - pad)
                d = 0;
            else if ((d = b64_val(c)) < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        uint8_t b[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        for (size_t k = 0; k < 3 && o < len; k++)
            out[o++] = b[k];
        /* Bits after the last byte must be zero (one encoding per value). */
        if (i + 4 == n && ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))))
            return -1;
    }
    return (long)len;
}

/* ---- parsing -------------------------------------------------------------- */

struct parsed {
    enum auth_hash_type type;
    unsigned long iterations;
    uint8_t salt[SALT_MAX];
    size_t salt_len;
    uint8_t hash[HASH_LEN];
};

/* Parse $6$ or $7$; returns 0 or -1 with *why. */
static int parse_sha(const char *enc, struct parsed *p, const char **why) {
    const char *s;
    if (strncmp(enc, "$6$", 3) == 0) {
        p->type = AUTH_HASH_SHA512;
        p->iterations = 0;
        s = enc + 3;
    } else if (strncmp(enc, "$7$", 3) == 0) {
        p->type = AUTH_HASH_PBKDF2;
        const char *d = enc + 3;
        if (*d < '1' || *d > '9') {
            *why = "bad iteration count";
            return -1;
        }
        unsigned long it = 0;
        while (*d >= '0' && *d <= '9') {
            it = it * 10 + (unsigned long)(*d - '0');
            if (it > AUTH_PBKDF2_MAX_ITERATIONS) {
                *why = "iteration count too large";
                return -1;
            }
            d++;
        }
        if (*d != '$') {
            *why = "bad iteration count";
            return -1;
        }
        p->iterations = it;
        s = d + 1;
    } else {
        *why = "unknown hash type (not $6$, $7$ or $argon2id$)";
        return -1;
    }
    const char *dollar = strchr(s, '$');
    if (!dollar) {
        *why = "missing hash after the salt";
        return -1;
    }
    long sl = auth_b64_decode(s, (size_t)(dollar - s), p->salt, sizeof(p->salt));
    if (sl < SALT_MIN) {
        *why = "bad salt (base64 of 8 to 64 bytes expected)";
        return -1;
    }
    p->salt_len = (size_t)sl;
    const char *h = dollar + 1;
    if (auth_b64_decode(h, strlen(h), p->hash, sizeof(p->hash)) != HASH_LEN) {
        *why = "bad hash (base64 of 64 bytes expected)";
        return -1;
    }
    return 0;
}

static bool b64_nopad_ok(const char *s, size_t n) {
    if (n == 0 || n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (b64_val(s[i]) < 0)
            return false;
    return true;
}

static bool read_uint(const char **s, const char *key, unsigned long max, unsigned long *out) {
    size_t kl = strlen(key);
    if (strncmp(*s, key, kl) != 0)
        return false;
    const char *d = *s + kl;
    if (*d < '0' || *d > '9')
        return false;
    unsigned long v = 0;
    while (*d >= '0' && *d <= '9') {
        v = v * 10 + (unsigned long)(*d - '0');
        if (v > max)
            return false;
        d++;
    }
    *out = v;
    *s = d;
    return true;
}

/* $argon2id$v=19$m=M,t=T,p=P$SALT$HASH, within the limits above. */
static int check_argon2(const char *enc, const char **why) {
    const char *s = enc + strlen("$argon2id$");
    unsigned long v, m, t, pp;
    *why = "bad argon2id parameters";
    if (!read_uint(&s, "v=", 255, &v) || v != ARGON2_VERSION_13 || *s++ != '$')
        return -1;
    if (!read_uint(&s, "m=", ARGON2_MAX_M, &m) || *s++ != ',')
        return -1;
    if (!read_uint(&s, "t=", ARGON2_MAX_T, &t) || *s++ != ',')
        return -1;
    if (!read_uint(&s, "p=", ARGON2_MAX_P, &pp) || *s++ != '$')
        return -1;
    if (t < 1 || pp < 1 || m < 8 * pp) {
        *why = "argon2id parameters out of range";
        return -1;
    }
    const char *d = strchr(s, '$');
    if (!d || !b64_nopad_ok(s, (size_t)(d - s)) || (size_t)(d - s) < 11) {
        *why = "bad argon2id salt";
        return -1;
    }
    if (!b64_nopad_ok(d + 1, strlen(d + 1)) || strlen(d + 1) < 22) {
        *why = "bad argon2id hash";
        return -1;
    }
    return 0;
}

int auth_hash_check_format(const char *enc, const char **why) {
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strlen(enc) > AUTH_HASH_MAX) {
        *why = "hash too long";
        return -1;
    }
    if (strncmp(enc, "$argon2id$", 10) == 0)
        return check_argon2(enc, why);
    struct parsed p;
    return parse_sha(enc, &p, why);
}

/* ---- verification --------------------------------------------------------- */

static int digest(const struct parsed *p, const char *pw, size_t len, uint8_t out[HASH_LEN]) {
    if (p->type == AUTH_HASH_PBKDF2)
        return PKCS5_PBKDF2_HMAC(pw, (int)len, p->salt, (int)p->salt_len, (int)p->iterations,
                                 EVP_sha512(), HASH_LEN, out) == 1
                   ? 0
                   : -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, pw, len) == 1 &&
             EVP_DigestUpdate(ctx, p->salt, p->salt_len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

bool auth_hash_verify(const char *enc, const char *password, size_t len) {
    if (len > INT32_MAX || auth_hash_check_format(enc, NULL) < 0)
        return false;
    if (strncmp(enc, "$argon2id$", 10) == 0)
        return argon2id_verify(enc, password, len) == ARGON2_OK;
    struct parsed p;
    const char *why;
    if (parse_sha(enc, &p, &why) < 0)
        return false;
    uint8_t out[HASH_LEN];
    if (digest(&p, password, len, out) < 0)
        return false;
    bool ok = CRYPTO_memcmp(out, p.hash, HASH_LEN) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return ok;
}

/* ---- making ------------------------------------------------------------ */

int auth_hash_make(enum auth_hash_type type, unsigned iterations, const char *password, size_t len,
                   char *out, size_t outlen) {
    if (len > INT32_MAX)
        return -1;
    if (type == AUTH_HASH_ARGON2ID) {
        uint8_t salt[16];
        uint32_t t = iterations ? iterations : AUTH_ARGON2_T;
        if (t > ARGON2_MAX_T || RAND_bytes(salt, sizeof(salt)) != 1)
            return -1;
        size_t need =
            argon2_encodedlen(t, AUTH_ARGON2_M, AUTH_ARGON2_P, sizeof(salt), 32, Argon2_id);
        if (need > outlen)
            return -1;
        int r = argon2id_hash_encoded(t, AUTH_ARGON2_M, AUTH_ARGON2_P, password, len, salt,
                                      sizeof(salt), 32, out, outlen);
        return r == ARGON2_OK ? 0 : -1;
    }
    struct parsed p = {.type = type};
    if (type == AUTH_HASH_PBKDF2) {
        p.iterations = iterations ? iterations : AUTH_PBKDF2_ITERATIONS;
        if (p.iterations > AUTH_PBKDF2_MAX_ITERATIONS)
            return -1;
    } else if (type != AUTH_HASH_SHA512 || iterations) {
        return -1;
    }
    p.salt_len = AUTH_PBKDF2_SALT;
    if (RAND_bytes(p.salt, (int)p.salt_len) != 1 || digest(&p, password, len, p.hash) < 0)
        return -1;
    char salt64[4 * ((SALT_MAX + 2) / 3) + 1], hash64[4 * ((HASH_LEN + 2) / 3) + 1];
    auth_b64_encode(p.salt, p.salt_len, salt64);
    auth_b64_encode(p.hash, HASH_LEN, hash64);
    int n = type == AUTH_HASH_PBKDF2
                ? snprintf(out, outlen, "$7$%lu$%s$%s", p.iterations, salt64, hash64)
                : snprintf(out, outlen, "$6$%s$%s", salt64, hash64);
    OPENSSL_cleanse(p.hash, sizeof(p.hash));
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}
