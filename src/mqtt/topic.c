/*
 * UTF-8 validation as MQTT requires it, topic name and filter validation,
 * shared subscription parsing and reference topic matching (MQTT 5.0 1.5.4,
 * 4.7, 4.8.2; the same rules hold in 3.1.1).
 */
#include "internal.h"

bool mqtt_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false; /* MQTT-1.5.4-2: no U+0000 */
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false; /* continuation byte first, or 0xF8..0xFF */
        }
        if (len - i - 1 < n)
            return false; /* truncated sequence */
        for (size_t k = 1; k <= n; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        /* Overlong forms, code points past U+10FFFF, and UTF-16 surrogates
         * (MQTT-1.5.4-1) are all ill-formed. */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/* Bytes of v equal to b have their high bit set in the result (SWAR). */
static inline uint64_t bytes_eq(uint64_t v, uint8_t b) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t x = v ^ (ones * b);
    return (x - ones) & ~x & highs;
}

/* No NUL, '+', '#' or byte above 0x7F in the word. */
static inline bool word_plain(uint64_t v) {
    return !((v & 0x8080808080808080ull) | bytes_eq(v, 0) | bytes_eq(v, '+') | bytes_eq(v, '#'));
}

bool mqtt_topic_name_valid(const uint8_t *s, size_t len) {
    if (len == 0 || len > 0xFFFF) /* MQTT-4.7.3-1, -3 */
        return false;
    /* Plain ASCII without NUL, '+' or '#' (nearly every topic), eight bytes
     * at a time, the tail as one more (overlapping or padded) word: a plain
     * topic needs no byte-wise pass. From the first word with anything
     * else, the byte-wise way; the prefix passed is whole characters, so
     * the UTF-8 check may start after it. */
    size_t i = 0;
    uint64_t v;
    if (len < 8) {
        /* A short topic as one word, padded with 'a' (plain). */
        v = 0x6161616161616161ull;
        memcpy(&v, s, len);
        if (word_plain(v))
            return true;
    } else {
        for (; i + 8 <= len; i += 8) {
            memcpy(&v, s + i, 8);
            if (!word_plain(v))
                break;
        }
        if (i == len)
            return true;
        if (i + 8 > len) {
            /* Every whole word was plain: the tail is in the last word,
             * which overlaps the one before. */
            memcpy(&v, s + len - 8, 8);
            if (word_plain(v))
                return true;
        }
    }
    s += i, len -= i;
    if (memchr(s, '+', len) || memchr(s, '#', len)) /* MQTT-3.3.2-2 */
        return false;
    return mqtt_utf8_valid(s, len); /* MQTT-1.5.4-1, -2 */
}

bool mqtt_topic_filter_valid(const uint8_t *s, size_t len) {
    if (len == 0 || len > 0xFFFF)
        return false;
    size_t start = 0; /* start of the current level */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        /* Level s[start..i): a wildcard must fill it alone. */
        for (size_t k = start; k < i; k++) {
            if (s[k] == '+' && i - start != 1)
                return false; /* MQTT-4.7.1-3 */
            if (s[k] == '#' && (i - start != 1 || i != len))
                return false; /* MQTT-4.7.1-2: alone and last */
        }
        start = i + 1;
    }
    return mqtt_utf8_valid(s, len);
}

int mqtt_shared_split(const uint8_t *s, size_t len, struct mqtt_str *group,
                      struct mqtt_str *inner) {
    static const char prefix[] = "$share/";
    const size_t plen = sizeof prefix - 1;
    if (len < plen || memcmp(s, prefix, plen) != 0)
        return 0;
    const uint8_t *name = s + plen;
    size_t rest = len - plen;
    const uint8_t *slash = memchr(name, '/', rest);
    if (!slash)
        return -1; /* no filter after the share name */
    size_t nlen = (size_t)(slash - name);
    if (nlen == 0 || memchr(name, '+', nlen) || memchr(name, '#', nlen))
        return -1; /* MQTT-4.8.2-1, -2 */
    const uint8_t *f = slash + 1;
    size_t flen = rest - nlen - 1;
    if (!mqtt_topic_filter_valid(f, flen))
        return -1;
    if (group)
        *group = (struct mqtt_str){name, (uint32_t)nlen};
    if (inner)
        *inner = (struct mqtt_str){f, (uint32_t)flen};
    return 1;
}

/* End of the level starting at i: the index of the next '/' or len. */
static size_t level_end(const uint8_t *s, size_t len, size_t i) {
    const uint8_t *slash = i < len ? memchr(s + i, '/', len - i) : NULL;
    return slash ? (size_t)(slash - s) : len;
}

bool mqtt_topic_match(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen) {
    /* MQTT-4.7.2-1: wildcards at the first level do not reach $-topics. */
    if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
        return false;
    size_t f = 0, t = 0;
    for (;;) {
        size_t fe = level_end(filter, flen, f);
        size_t te = level_end(topic, tlen, t);
        bool hash = fe - f == 1 && filter[f] == '#';
        bool plus = fe - f == 1 && filter[f] == '+';
        if (hash)
            return true; /* this level and every one below */
        if (!plus && (fe - f != te - t || memcmp(filter + f, topic + t, fe - f) != 0))
            return false;
        bool fmore = fe < flen, tmore = te < tlen;
        if (!fmore || !tmore) {
            if (fmore == tmore)
                return true;
            /* 4.7.1.2: "a/#" also matches its parent "a". */
            return fmore && flen - fe == 2 && filter[fe + 1] == '#';
        }
        f = fe + 1;
        t = te + 1;
    }
}
