/* MQTT topics and filters as NATS subjects (subject.h). */
#include "cluster/subject.h"

#include <stdbool.h>
#include <string.h>

static const char hex[] = "0123456789ABCDEF";

/* The escape: valid in NATS subjects and in JetStream key-value keys
 * ([-/_=.a-zA-Z0-9]), so a topic's tokens can also name its retained key. */
#define ESC '='

static bool plain(uint8_t c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* An output buffer that refuses to grow past its limit. */
struct sb {
    char *p;
    size_t len, lim; /* lim: most bytes before the NUL */
    bool over;
};

static void put(struct sb *b, const char *s, size_t n) {
    if (b->over || n > b->lim - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_c(struct sb *b, char c) {
    put(b, &c, 1);
}

/* One level as one token. */
static void put_level(struct sb *b, const uint8_t *s, size_t n) {
    if (n == 0) {
        put_c(b, ESC);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (plain(s[i])) {
            put_c(b, (char)s[i]);
        } else {
            char e[3] = {ESC, hex[s[i] >> 4], hex[s[i] & 15]};
            put(b, e, 3);
        }
    }
}

static struct sb sb_new(char *out, size_t cap) {
    size_t lim = cap ? cap - 1 : 0;
    if (lim > CL_SUBJECT_MAX)
        lim = CL_SUBJECT_MAX;
    return (struct sb){.p = out, .lim = lim, .over = cap == 0};
}

static int sb_end(struct sb *b) {
    if (b->over)
        return CL_SUBJ_TOO_LONG;
    b->p[b->len] = '\0';
    return (int)b->len;
}

int cl_subject_prefix(const char *cluster_name, char *out, size_t cap) {
    struct sb b = sb_new(out, cap);
    put(&b, "hato.", 5);
    put_level(&b, (const uint8_t *)cluster_name, strlen(cluster_name));
    return sb_end(&b);
}

/* PREFIX.m or PREFIX.s, by the first level of a topic or filter. */
static void put_head(struct sb *b, const char *prefix, bool dollar) {
    put(b, prefix, strlen(prefix));
    put(b, dollar ? ".s" : ".m", 2);
}

int cl_topic_subject(const char *prefix, const uint8_t *topic, size_t len, char *out, size_t cap) {
    if (len == 0 || memchr(topic, '+', len) || memchr(topic, '#', len) || memchr(topic, 0, len))
        return CL_SUBJ_INVALID; /* a wildcard, or U+0000 (MQTT-1.5.4-2) */
    struct sb b = sb_new(out, cap);
    put_head(&b, prefix, topic[0] == '$');
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || topic[i] == '/') {
            put_c(&b, '.');
            put_level(&b, topic + start, i - start);
            start = i + 1;
        }
    }
    return sb_end(&b);
}

int cl_filter_subjects(const char *prefix, const uint8_t *filter, size_t len, char *out0,
                       char *out1, size_t cap) {
    if (len == 0 || memchr(filter, 0, len))
        return CL_SUBJ_INVALID;
    struct sb b = sb_new(out0, cap);
    bool wild_first = filter[0] == '+' || filter[0] == '#';
    put_head(&b, prefix, !wild_first && filter[0] == '$');
    size_t start = 0, parent = 0;
    bool multi = false;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && filter[i] != '/')
            continue;
        const uint8_t *lv = filter + start;
        size_t n = i - start;
        bool has_wild = memchr(lv, '+', n) || memchr(lv, '#', n);
        if (has_wild && n != 1)
            return CL_SUBJ_INVALID; /* MQTT-4.7.1-2/3: a wildcard is a whole level */
        if (n == 1 && lv[0] == '#') {
            if (i != len)
                return CL_SUBJ_INVALID; /* '#' only last */
            multi = true;
            parent = b.len;
            put(&b, ".>", 2);
        } else if (n == 1 && lv[0] == '+') {
            put(&b, ".*", 2);
        } else {
            put_c(&b, '.');
            put_level(&b, lv, n);
        }
        start = i + 1;
    }
    int r = sb_end(&b);
    if (r < 0 || !multi || parent == strlen(prefix) + 2)
        return r < 0 ? r : 1; /* a lone '#': ">" alone */
    /* "a/#" also matches "a": the parent subject, then "parent.>". */
    memcpy(out1, out0, b.len + 1);
    out0[parent] = '\0';
    return 2;
}

static int unhex(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lower case is never written: one spelling per topic */
}

int cl_subject_topic(const char *prefix, const char *subject, size_t len, uint8_t *out,
                     size_t cap) {
    size_t pl = strlen(prefix);
    if (len < pl + 4 || memcmp(subject, prefix, pl) != 0 || subject[pl] != '.' ||
        (subject[pl + 1] != 'm' && subject[pl + 1] != 's') || subject[pl + 2] != '.')
        return CL_SUBJ_INVALID;
    bool dollar = subject[pl + 1] == 's';
    size_t o = 0;
    size_t i = pl + 3;
    bool first = true;
    for (;;) {
        size_t end = i;
        while (end < len && subject[end] != '.')
            end++;
        if (end == i)
            return CL_SUBJ_INVALID; /* empty token */
        if (!first) {
            if (o >= cap)
                return CL_SUBJ_TOO_LONG;
            out[o++] = '/';
        }
        if (!(end - i == 1 && subject[i] == ESC)) { /* "=": the empty level */
            size_t lv = o;
            for (size_t k = i; k < end; k++) {
                uint8_t c;
                if (subject[k] == ESC) {
                    int h = k + 2 < end ? unhex(subject[k + 1]) : -1;
                    int l = h >= 0 ? unhex(subject[k + 2]) : -1;
                    if (l < 0)
                        return CL_SUBJ_INVALID;
                    c = (uint8_t)(h << 4 | l);
                    if (plain(c))
                        return CL_SUBJ_INVALID; /* never escaped: one spelling */
                    k += 2;
                } else if (plain((uint8_t)subject[k])) {
                    c = (uint8_t)subject[k];
                } else {
                    return CL_SUBJ_INVALID; /* '*', '>', or a byte we escape */
                }
                if (c == '+' || c == '#' || c == '/' || c == '\0')
                    return CL_SUBJ_INVALID;
                if (o >= cap)
                    return CL_SUBJ_TOO_LONG;
                out[o++] = c;
            }
            if (first && (o > lv && out[lv] == '$') != dollar)
                return CL_SUBJ_INVALID; /* a '$' topic is under .s, no other */
        } else if (first && dollar) {
            return CL_SUBJ_INVALID;
        }
        first = false;
        if (end == len)
            break;
        i = end + 1;
    }
    if (o == 0)
        return CL_SUBJ_INVALID; /* "=" alone: the empty topic, which MQTT has not */
    return (int)o;
}
