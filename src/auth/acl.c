/*
 * ACL file parsing and checking (see acl.h).
 */
#include "auth/acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "base/strmap.h"

#define ACL_MAX_FILE (64u << 20)
#define ACL_MAX_TOPIC 65535

struct acl_rule {
    struct acl_rule *next;
    unsigned access; /* AUTH_ACL_* bits granted; 0 = deny */
    bool subst;      /* pattern containing %u or %c */
    size_t len;
    char topic[];
};

struct acl_user {
    char *name;
    struct acl_rule *rules, **tail;
};

struct auth_acl {
    struct acl_rule *anon, **anon_tail;
    struct acl_rule *patterns, **pat_tail;
    struct strmap users; /* name -> struct acl_user */
    size_t nrules;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void free_rules(struct acl_rule *r) {
    while (r) {
        struct acl_rule *n = r->next;
        free(r);
        r = n;
    }
}

static void free_user(void *ctx, void *val) {
    (void)ctx;
    struct acl_user *u = val;
    free_rules(u->rules);
    free(u->name);
    free(u);
}

void auth_acl_free(struct auth_acl *acl) {
    if (!acl)
        return;
    free_rules(acl->anon);
    free_rules(acl->patterns);
    strmap_each(&acl->users, free_user, NULL);
    strmap_free(&acl->users);
    free(acl);
}

size_t auth_acl_rules(const struct auth_acl *acl) {
    return acl->nrules;
}

/* ---- matching ------------------------------------------------------------ */

bool auth_acl_match(const char *f, const char *t, size_t tlen) {
    size_t flen = strlen(f);
    if (tlen && t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false; /* MQTT-4.7.2-1: wildcards do not reach $ topics */
    size_t fi = 0, ti = 0;
    bool tdone = false;
    for (;;) {
        const char *fs = memchr(f + fi, '/', flen - fi);
        size_t fe = fs ? (size_t)(fs - f) : flen;
        if (fe - fi == 1 && f[fi] == '#')
            return true; /* also matches the parent level (MQTT-4.7.1-2) */
        if (tdone)
            return false;
        const char *ts = memchr(t + ti, '/', tlen - ti);
        size_t te = ts ? (size_t)(ts - t) : tlen;
        bool plus = fe - fi == 1 && f[fi] == '+';
        if (!plus && (fe - fi != te - ti || memcmp(f + fi, t + ti, fe - fi) != 0))
            return false;
        bool fend = fe == flen, tend = te == tlen;
        if (fend)
            return tend;
        fi = fe + 1;
        if (tend)
            tdone = true;
        else
            ti = te + 1;
    }
}

/* Substitute %u and %c into out (cap bytes). Returns the length; -1 if too
 * long; -2 for %u without a user name (the rule does not apply); -3 when a
 * value holds a wildcard character and wild is false. */
static long substitute(const struct acl_rule *r, const char *user, const char *cid, bool wild,
                       char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < r->len; i++) {
        bool sub = r->topic[i] == '%' && i + 1 < r->len &&
                   (r->topic[i + 1] == 'u' || r->topic[i + 1] == 'c');
        if (sub) {
            const char *v = r->topic[i + 1] == 'u' ? user : cid;
            if (!v)
                return -2;
            size_t vl = strlen(v);
            if (!wild && strpbrk(v, "+#"))
                return -3;
            if (o + vl >= cap)
                return -1;
            memcpy(out + o, v, vl);
            o += vl;
            i++;
        } else {
            if (o + 1 >= cap)
                return -1;
            out[o++] = r->topic[i];
        }
    }
    out[o] = 0;
    return (long)o;
}

/* Does rule r (a pattern when pattern is true) match for this client? A
 * grant whose names hold a wildcard never matches; a deny rule then keeps
 * the wildcard (it can only deny more). */
static bool rule_match(const struct acl_rule *r, bool pattern, const char *user, const char *cid,
                       const char *topic, size_t tlen) {
    if (!pattern || !r->subst)
        return auth_acl_match(r->topic, topic, tlen);
    char stack[1024];
    size_t cap = r->len + (user ? strlen(user) : 0) * r->len + strlen(cid) * r->len + 1;
    char *buf = cap <= sizeof(stack) ? stack : malloc(cap);
    if (!buf)
        return r->access == 0; /* out of memory: deny rules match, grants do not */
    long n = substitute(r, user, cid, r->access == 0, buf, cap);
    bool m = n >= 0 ? auth_acl_match(buf, topic, tlen) : (n == -1 && r->access == 0);
    if (buf != stack)
        free(buf);
    return m;
}

static int scan(const struct acl_rule *rules, bool pattern, const char *user, const char *cid,
                const char *topic, size_t tlen, int access) {
    /* 1 = granted, -1 = denied by a deny rule, 0 = no rule matched */
    int res = 0;
    for (const struct acl_rule *r = rules; r; r = r->next) {
        if (r->access == 0) {
            if (rule_match(r, pattern, user, cid, topic, tlen))
                return -1;
        } else if (res == 0 && (r->access & (unsigned)access) &&
                   rule_match(r, pattern, user, cid, topic, tlen)) {
            res = 1;
        }
    }
    return res;
}

bool auth_acl_check(const struct auth_acl *acl, const char *user, const char *client_id,
                    const char *topic, size_t tlen, int access) {
    const struct acl_rule *own = acl->anon;
    if (user) {
        const struct acl_user *u = strmap_get(&acl->users, user, strlen(user));
        own = u ? u->rules : NULL;
    }
    int a = scan(own, false, user, client_id ? client_id : "", topic, tlen, access);
    if (a < 0)
        return false;
    int b = scan(acl->patterns, true, user, client_id ? client_id : "", topic, tlen, access);
    if (b < 0)
        return false;
    return a > 0 || b > 0;
}

/* ---- parsing ------------------------------------------------------------- */

static bool filter_ok(const char *t, size_t n) {
    if (n == 0 || n > ACL_MAX_TOPIC)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '+' || t[i] == '#') {
            bool start = i == 0 || t[i - 1] == '/';
            bool end = i + 1 == n || t[i + 1] == '/';
            if (!start || !end || (t[i] == '#' && i + 1 != n))
                return false;
        }
        if ((unsigned char)t[i] < 0x20)
            return false;
    }
    return true;
}

static char *skip_ws(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static void trim_end(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
}

/* Does s start with keyword kw followed by whitespace (or end)? */
static char *keyword(char *s, const char *kw) {
    size_t n = strlen(kw);
    if (strncmp(s, kw, n) != 0 || (s[n] != ' ' && s[n] != '\t' && s[n] != 0))
        return NULL;
    return skip_ws(s + n);
}

static int add_rule(struct auth_acl *acl, struct acl_rule ***tail, unsigned access,
                    const char *topic, bool pattern) {
    size_t n = strlen(topic);
    struct acl_rule *r = malloc(sizeof(*r) + n + 1);
    if (!r)
        return -1;
    r->next = NULL;
    r->access = access;
    r->len = n;
    memcpy(r->topic, topic, n + 1);
    r->subst = pattern && (strstr(topic, "%u") || strstr(topic, "%c"));
    **tail = r;
    *tail = &r->next;
    acl->nrules++;
    return 0;
}

static int parse_line(struct auth_acl *acl, char *s, struct acl_user **cur, char *err,
                      size_t errlen, const char *name, int line) {
    char *rest;
    if ((rest = keyword(s, "user"))) {
        if (!*rest) {
            set_err(err, errlen, "%s:%d: 'user' needs a user name", name, line);
            return -1;
        }
        struct acl_user *u = strmap_get(&acl->users, rest, strlen(rest));
        if (!u) {
            /* A user named again later gets its rules appended. */
            u = calloc(1, sizeof(*u));
            if (!u || !(u->name = strdup(rest))) {
                free(u);
                goto oom;
            }
            u->tail = &u->rules;
            if (strmap_put(&acl->users, u->name, strlen(u->name), u) < 0) {
                free_user(NULL, u);
                goto oom;
            }
        }
        *cur = u;
        return 0;
    }
    bool pattern = false;
    if ((rest = keyword(s, "topic")) == NULL) {
        if ((rest = keyword(s, "pattern")) == NULL) {
            char word[32];
            snprintf(word, sizeof(word), "%.*s", (int)strcspn(s, " \t"), s);
            set_err(err, errlen, "%s:%d: unknown keyword '%s' (topic, pattern or user expected)",
                    name, line, word);
            return -1;
        }
        pattern = true;
    }
    unsigned access = AUTH_ACL_READ | AUTH_ACL_WRITE | AUTH_ACL_SUBSCRIBE;
    char *t;
    if ((t = keyword(rest, "read")))
        access = AUTH_ACL_READ | AUTH_ACL_SUBSCRIBE;
    else if ((t = keyword(rest, "write")))
        access = AUTH_ACL_WRITE;
    else if ((t = keyword(rest, "readwrite")))
        ;
    else if ((t = keyword(rest, "deny")))
        access = 0;
    else
        t = rest;
    if (!*t) {
        set_err(err, errlen, "%s:%d: '%s' needs a topic", name, line,
                pattern ? "pattern" : "topic");
        return -1;
    }
    if (!filter_ok(t, strlen(t))) {
        set_err(err, errlen, "%s:%d: invalid topic filter '%.64s'", name, line, t);
        return -1;
    }
    struct acl_rule ***tail = pattern ? &acl->pat_tail : (*cur ? &(*cur)->tail : &acl->anon_tail);
    if (add_rule(acl, tail, access, t, pattern) < 0)
        goto oom;
    return 0;
oom:
    set_err(err, errlen, "%s: out of memory", name);
    return -1;
}

struct auth_acl *auth_acl_parse(const char *text, size_t len, const char *name, char *err,
                                size_t errlen) {
    struct auth_acl *acl = calloc(1, sizeof(*acl));
    if (!acl) {
        set_err(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    acl->anon_tail = &acl->anon;
    acl->pat_tail = &acl->patterns;
    strmap_init(&acl->users);
    struct acl_user *cur = NULL;
    /* A UTF-8 byte order mark (Windows editors) is skipped; Mosquitto 2.0
     * refuses the file ("Invalid line ... \xEF\xBB\xBFuser"). */
    size_t off = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    int line = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    while (off < len) {
        line++;
        const char *s = text + off;
        const char *nl = memchr(s, '\n', len - off);
        size_t n = nl ? (size_t)(nl - s) : len - off;
        off += n + (nl ? 1 : 0);
        if (memchr(s, 0, n)) {
            set_err(err, errlen, "%s:%d: NUL byte in line", name, line);
            goto fail;
        }
        if (n + 1 > bufcap) {
            char *nb = realloc(buf, n + 1);
            if (!nb) {
                set_err(err, errlen, "%s: out of memory", name);
                goto fail;
            }
            buf = nb;
            bufcap = n + 1;
        }
        memcpy(buf, s, n);
        buf[n] = 0;
        trim_end(buf);
        char *b = skip_ws(buf);
        if (!*b || *b == '#')
            continue;
        if (parse_line(acl, b, &cur, err, errlen, name, line) < 0)
            goto fail;
    }
    free(buf);
    return acl;
fail:
    free(buf);
    auth_acl_free(acl);
    return NULL;
}

struct auth_acl *auth_acl_load(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = auth_read_file(path, ACL_MAX_FILE, &len);
    if (!text) {
        set_err(err, errlen, "%s: cannot read ACL file: %s", path, strerror(errno));
        return NULL;
    }
    struct auth_acl *acl = auth_acl_parse(text, len, path, err, errlen);
    free(text);
    return acl;
}
