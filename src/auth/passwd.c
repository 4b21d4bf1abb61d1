/*
 * Password file parsing and lookup (see passwd.h).
 */
#include "auth/passwd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/hash.h"
#include "base/strmap.h"

#define PASSWD_MAX_FILE (64u << 20)
#define MAX_PROBLEMS 100 /* reported lines kept; the rest are counted only */

struct pw_entry {
    char *user;
    size_t ulen;
    char *hash;
    int line; /* where it was read (a later line for the user replaces it) */
};

struct auth_passwd {
    struct strmap users; /* user -> struct pw_entry */
    struct problem {
        char *text;
        bool error;
    } * problems; /* lines not taken as users, "NAME:LINE: text" */
    size_t nproblems;
};

/* A valid $7$ hash of a random password nobody knows: verified for unknown
 * users so that they cost as much as known ones. */
static const char DUMMY[] =
    "$7$101$b3BhcXVlc2FsdA==$"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void free_entry(void *ctx, void *val) {
    (void)ctx;
    struct pw_entry *e = val;
    free(e->user);
    if (e->hash) {
        memset(e->hash, 0, strlen(e->hash));
        free(e->hash);
    }
    free(e);
}

void auth_passwd_free(struct auth_passwd *pw) {
    if (!pw)
        return;
    strmap_each(&pw->users, free_entry, NULL);
    strmap_free(&pw->users);
    for (size_t i = 0; i < pw->nproblems; i++)
        free(pw->problems[i].text);
    free(pw->problems);
    free(pw);
}

static int add_problem(struct auth_passwd *pw, const char *name, int line, const char *text,
                       bool error) {
    if (pw->nproblems >= MAX_PROBLEMS)
        return 0;
    struct problem *v = realloc(pw->problems, (pw->nproblems + 1) * sizeof(*v));
    if (!v)
        return -1;
    pw->problems = v;
    size_t n = strlen(name) + strlen(text) + 32;
    char *t = malloc(n);
    if (!t)
        return -1;
    snprintf(t, n, "%s:%d: %s", name, line, text);
    pw->problems[pw->nproblems++] = (struct problem){t, error};
    return 0;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Report a line that is not taken as a user and go on with the next. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        char why_[200];                                                                            \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                                                 \
        if (add_problem(pw, name, line, why_, true) < 0)                                           \
            goto oom;                                                                              \
        goto next;                                                                                 \
    } while (0)

struct auth_passwd *auth_passwd_parse(const char *text, size_t len, const char *name, char *err,
                                      size_t errlen) {
    struct auth_passwd *pw = calloc(1, sizeof(*pw));
    if (!pw) {
        set_err(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    strmap_init(&pw->users);
    /* A UTF-8 byte order mark (a file saved by Windows editors) is not part
     * of the first user's name (Mosquitto takes it as such). */
    size_t off = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    int line = 0;
    while (off < len) {
        line++;
        const char *s = text + off;
        const char *nl = memchr(s, '\n', len - off);
        size_t n = nl ? (size_t)(nl - s) : len - off;
        off += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r')
            n--;
        /* Blanks around the line, the user name and the hash are not part of
         * them (Mosquitto 2.0 trims them too). */
        while (n && is_blank(s[0]))
            s++, n--;
        while (n && is_blank(s[n - 1]))
            n--;
        if (n == 0) {
            /* An empty user with an empty password must never exist. */
            if (add_problem(pw, name, line, "blank line ignored (not a user)", false) < 0)
                goto oom;
            continue;
        }
        if (s[0] == '#')
            continue;
        if (memchr(s, 0, n))
            SKIP("NUL byte in line; line ignored");
        const char *colon = memchr(s, ':', n);
        if (!colon)
            SKIP("not 'user:hash' (no ':'); line ignored");
        size_t ulen = (size_t)(colon - s);
        while (ulen && is_blank(s[ulen - 1]))
            ulen--;
        int ushow = (int)(ulen > 64 ? 64 : ulen);
        if (ulen == 0)
            SKIP("empty user name; line ignored");
        for (size_t i = 0; i < ulen; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                SKIP("control character in user name; line ignored");
        const char *h = colon + 1;
        size_t hlen = n - (size_t)(h - s);
        while (hlen && is_blank(*h))
            h++, hlen--;
        if (hlen == 0)
            SKIP("user '%.*s' has no password hash; line ignored", ushow, s);
        if (hlen > AUTH_HASH_MAX)
            SKIP("user '%.*s': password hash too long; line ignored", ushow, s);
        char hash[AUTH_HASH_MAX + 1];
        memcpy(hash, h, hlen);
        hash[hlen] = 0;
        const char *why = NULL;
        if (auth_hash_check_format(hash, &why) < 0)
            SKIP("user '%.*s': %s; line ignored (a plain-text file must be converted with "
                 "hato-passwd -U)",
                 ushow, s, why);
        struct pw_entry *e = strmap_get(&pw->users, s, ulen);
        if (e) {
            /* As Mosquitto: the later line is the user's password, so that a
             * line appended to change a password does not leave the old one
             * working. Reported, as the file has a mistake. */
            char *nh = strdup(hash);
            char why[200];
            snprintf(why, sizeof(why), "user '%.*s' appears again; this line replaces line %d",
                     ushow, s, e->line);
            if (!nh || add_problem(pw, name, line, why, false) < 0) {
                free(nh);
                goto oom;
            }
            memset(e->hash, 0, strlen(e->hash));
            free(e->hash);
            e->hash = nh;
            e->line = line;
            goto next;
        }
        e = calloc(1, sizeof(*e));
        if (!e)
            goto oom;
        e->user = strndup(s, ulen);
        e->ulen = ulen;
        e->line = line;
        e->hash = strdup(hash);
        if (!e->user || !e->hash || strmap_put(&pw->users, e->user, ulen, e) < 0) {
            free_entry(NULL, e);
            goto oom;
        }
    next:;
    }
    return pw;
oom:
    set_err(err, errlen, "%s: out of memory", name);
    auth_passwd_free(pw);
    return NULL;
}

char *auth_read_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                fclose(f);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                errno = e ? e : EIO;
                return NULL;
            }
            break;
        }
    }
    fclose(f);
    if (!buf) {
        errno = ENOMEM;
        return NULL;
    }
    if (n > max) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

struct auth_passwd *auth_passwd_load(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = auth_read_file(path, PASSWD_MAX_FILE, &len);
    if (!text) {
        set_err(err, errlen, "%s: cannot read password file: %s", path, strerror(errno));
        return NULL;
    }
    struct auth_passwd *pw = auth_passwd_parse(text, len, path, err, errlen);
    free(text);
    return pw;
}

size_t auth_passwd_count(const struct auth_passwd *pw) {
    return pw->users.count;
}

bool auth_passwd_has_user(const struct auth_passwd *pw, const char *user, size_t ulen) {
    return strmap_get(&pw->users, user, ulen) != NULL;
}

const char *auth_passwd_problem(const struct auth_passwd *pw, size_t i, bool *error) {
    if (i >= pw->nproblems)
        return NULL;
    if (error)
        *error = pw->problems[i].error;
    return pw->problems[i].text;
}

bool auth_passwd_check(const struct auth_passwd *pw, const char *user, size_t ulen,
                       const char *password, size_t plen) {
    const struct pw_entry *e = strmap_get(&pw->users, user, ulen);
    if (!e) {
        (void)auth_hash_verify(DUMMY, password, plen);
        return false;
    }
    return auth_hash_verify(e->hash, password, plen);
}
