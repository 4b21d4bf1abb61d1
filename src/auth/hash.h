/*
 * Password hashes in the formats of Mosquitto's password file:
 *
 *   $7$ITERATIONS$SALT$HASH   PBKDF2-HMAC-SHA512, 64-byte hash. Salt of 12
 *                             bytes (Mosquitto 2.0) or 64 (2.1); any length
 *                             from 8 to 64 is read.
 *   $6$SALT$HASH              SHA-512(password || salt) (Mosquitto 1.x).
 *   $argon2id$v=19$m=..,t=..,p=..$SALT$HASH   Argon2id (libargon2's encoding).
 *
 * SALT and HASH are standard base64 with padding. Verification compares in
 * constant time (CRYPTO_memcmp). No function here logs or keeps a password.
 */
#ifndef HATO_AUTH_HASH_H
#define HATO_AUTH_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum auth_hash_type {
    AUTH_HASH_PBKDF2 = 0, /* $7$, the default */
    AUTH_HASH_SHA512 = 1, /* $6$ */
    AUTH_HASH_ARGON2ID = 2,
};

#define AUTH_PBKDF2_ITERATIONS 101 /* Mosquitto 2.0's default */
#define AUTH_PBKDF2_SALT 12        /* bytes, as Mosquitto 2.0 writes */
#define AUTH_ARGON2_T 2            /* passes */
#define AUTH_ARGON2_M 19456        /* KiB */
#define AUTH_ARGON2_P 1
#define AUTH_HASH_MAX 512 /* longest encoded hash this module writes or reads */

/* Longest iteration count accepted when reading a $7$ hash (a file is not
 * allowed to make one login cost minutes of CPU). */
#define AUTH_PBKDF2_MAX_ITERATIONS 10000000

/*
 * Check that `enc` (NUL-terminated) is a well-formed hash of one of the
 * formats above. Returns 0, or -1 with a short reason in *why.
 */
int auth_hash_check_format(const char *enc, const char **why);

/*
 * True when `password` (len bytes) matches the encoded hash. A malformed
 * hash never matches.
 */
bool auth_hash_verify(const char *enc, const char *password, size_t len);

/*
 * Encode a new hash of `password` with a fresh random salt into out[0..outlen).
 * iterations: PBKDF2 rounds or Argon2 passes, 0 = the default.
 * Returns 0, or -1 (bad parameters, no randomness, out too small).
 */
int auth_hash_make(enum auth_hash_type type, unsigned iterations, const char *password, size_t len,
                   char *out, size_t outlen);

/* Base64 (standard alphabet, padded). encode returns the length written
 * (out needs 4*ceil(n/3)+1 bytes, NUL-terminated); decode returns the
 * number of bytes, or -1 for bad input or when out is too small. */
size_t auth_b64_encode(const uint8_t *in, size_t n, char *out);
long auth_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap);

#endif
