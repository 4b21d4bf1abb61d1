/*
 * libFuzzer target for password files and hashes (src/auth/passwd.c,
 * hash.c). The input is parsed as a whole file; every line is also tried as
 * an encoded hash. Properties: no crash or leak; base64 decoding then
 * encoding gives back the input; a blank line is never a user.
 * Verification runs only for $6$ hashes (one SHA-512, cheap): PBKDF2 and
 * Argon2 costs come from the input and would only measure the hash.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/hash.h"
#include "auth/passwd.h"
#include "check.h"

static void one_line(const char *s, size_t n) {
    if (n > AUTH_HASH_MAX + 16)
        return;
    char buf[AUTH_HASH_MAX + 17];
    memcpy(buf, s, n);
    buf[n] = 0;
    const char *why = NULL;
    if (auth_hash_check_format(buf, &why) == 0) {
        if (strncmp(buf, "$6$", 3) == 0)
            (void)auth_hash_verify(buf, "password", 8);
    } else {
        CHECK(why != NULL);
        CHECK(!auth_hash_verify(buf, "", 0));
    }
    uint8_t dec[AUTH_HASH_MAX];
    long d = auth_b64_decode(buf, n, dec, sizeof(dec));
    if (d >= 0) {
        char enc[AUTH_HASH_MAX * 2];
        CHECK(auth_b64_encode(dec, (size_t)d, enc) == n);
        CHECK(memcmp(enc, buf, n) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char err[256];
    struct auth_passwd *pw = auth_passwd_parse(text, size, "fuzz", err, sizeof(err));
    if (pw) {
        CHECK(!auth_passwd_has_user(pw, "", 0)); /* a blank line is never a user */
        bool error;
        for (size_t i = 0; auth_passwd_problem(pw, i, &error); i++)
            CHECK(strncmp(auth_passwd_problem(pw, i, NULL), "fuzz:", 5) == 0);
        auth_passwd_free(pw);
    } else {
        CHECK(strncmp(err, "fuzz", 4) == 0);
    }
    size_t off = 0;
    while (off < size) {
        const char *nl = memchr(text + off, '\n', size - off);
        size_t n = nl ? (size_t)(nl - (text + off)) : size - off;
        const char *colon = memchr(text + off, ':', n);
        if (colon)
            one_line(colon + 1, n - (size_t)(colon + 1 - (text + off)));
        else
            one_line(text + off, n);
        off += n + 1;
    }
    return 0;
}
