/*
 * Printing received messages as mosquitto_sub 2.0 does: payload only, -v
 * ("topic payload"), or -F with its % codes (flags '-' and '0', field
 * width, precision), @ strftime codes and \ escapes; %j/%J as JSON through
 * cJSON, so the bytes are those mosquitto_sub (built with cJSON) prints.
 */
#include "format.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- property access in wire order ----------------------------------- */

/* Walk the raw property block: one property per call. */
struct pwalk {
    const uint8_t *p;
    uint32_t len, off;
};

struct pval {
    uint8_t id;
    uint32_t num;
    struct mqtt_str s, s2;
};

static bool rd_varint(struct pwalk *w, uint32_t *v) {
    uint32_t mult = 1, val = 0;
    for (int i = 0; i < 4; i++) {
        if (w->off >= w->len)
            return false;
        uint8_t b = w->p[w->off++];
        val += (uint32_t)(b & 0x7f) * mult;
        if (!(b & 0x80)) {
            *v = val;
            return true;
        }
        mult *= 128;
    }
    return false;
}

static bool rd_str(struct pwalk *w, struct mqtt_str *s) {
    if (w->off + 2 > w->len)
        return false;
    uint32_t n = (uint32_t)w->p[w->off] << 8 | w->p[w->off + 1];
    w->off += 2;
    if (w->off + n > w->len)
        return false;
    *s = (struct mqtt_str){w->p + w->off, n};
    w->off += n;
    return true;
}

static bool pnext(struct pwalk *w, struct pval *v) {
    uint32_t id;
    if (w->off >= w->len || !rd_varint(w, &id))
        return false;
    memset(v, 0, sizeof *v);
    v->id = (uint8_t)id;
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
    case MQTT_PROP_MAXIMUM_QOS:
    case MQTT_PROP_RETAIN_AVAILABLE:
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
    case MQTT_PROP_SUB_ID_AVAILABLE:
    case MQTT_PROP_SHARED_SUB_AVAILABLE:
        if (w->off + 1 > w->len)
            return false;
        v->num = w->p[w->off++];
        return true;
    case MQTT_PROP_SERVER_KEEP_ALIVE:
    case MQTT_PROP_RECEIVE_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS:
        if (w->off + 2 > w->len)
            return false;
        v->num = (uint32_t)w->p[w->off] << 8 | w->p[w->off + 1];
        w->off += 2;
        return true;
    case MQTT_PROP_MESSAGE_EXPIRY:
    case MQTT_PROP_SESSION_EXPIRY:
    case MQTT_PROP_WILL_DELAY:
    case MQTT_PROP_MAXIMUM_PACKET_SIZE:
        if (w->off + 4 > w->len)
            return false;
        v->num = (uint32_t)w->p[w->off] << 24 | (uint32_t)w->p[w->off + 1] << 16 |
                 (uint32_t)w->p[w->off + 2] << 8 | w->p[w->off + 3];
        w->off += 4;
        return true;
    case MQTT_PROP_SUBSCRIPTION_ID:
        return rd_varint(w, &v->num);
    case MQTT_PROP_USER_PROPERTY:
        return rd_str(w, &v->s) && rd_str(w, &v->s2);
    default:
        return rd_str(w, &v->s);
    }
}

static char *cstr(struct mqtt_str s) {
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.p, s.len);
        p[s.len] = 0;
    }
    return p;
}

static const char *prop_name(uint8_t id) {
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
        return "payload-format-indicator";
    case MQTT_PROP_MESSAGE_EXPIRY:
        return "message-expiry-interval";
    case MQTT_PROP_CONTENT_TYPE:
        return "content-type";
    case MQTT_PROP_RESPONSE_TOPIC:
        return "response-topic";
    case MQTT_PROP_CORRELATION_DATA:
        return "correlation-data";
    case MQTT_PROP_SUBSCRIPTION_ID:
        return "subscription-identifier";
    case MQTT_PROP_TOPIC_ALIAS:
        return "topic-alias";
    default:
        return NULL;
    }
}

/* First property `id` of the message, in wire order. */
static bool find_prop(const struct hc_message *m, uint8_t id, struct pval *out) {
    struct pwalk w = {m->props->raw.p, m->props->raw.len, 0};
    struct pval v;
    while (pnext(&w, &v))
        if (v.id == id) {
            *out = v;
            return true;
        }
    return false;
}

/* ---- JSON (%j, %J) ------------------------------------------------------ */

static void json_time(char *buf, size_t cap) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char date[64], zone[16];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm);
    snprintf(buf, cap, "%s.%06ldZ%s", date, ts.tv_nsec / 1000, zone);
}

/* 0 ok, 1 out of memory, 2 payload is not JSON (for %J). */
static int json_print(const struct cli *cli, const struct hc_message *m, bool escaped) {
    char tst[100];
    json_time(tst, sizeof tst);
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return 1;
    cJSON_AddItemToObject(root, "tst", cJSON_CreateString(tst));
    cJSON_AddItemToObject(root, "topic", cJSON_CreateString(m->topic));
    cJSON_AddItemToObject(root, "qos", cJSON_CreateNumber(m->qos));
    cJSON_AddItemToObject(root, "retain", cJSON_CreateNumber(m->retain));
    cJSON_AddItemToObject(root, "payloadlen", cJSON_CreateNumber((double)m->payload_len));
    if (m->qos > 0)
        cJSON_AddItemToObject(root, "mid", cJSON_CreateNumber(m->mid));
    if (m->props->raw.len) {
        cJSON *props = cJSON_CreateObject(), *user = NULL;
        cJSON_AddItemToObject(root, "properties", props);
        struct pwalk w = {m->props->raw.p, m->props->raw.len, 0};
        struct pval v;
        while (pnext(&w, &v)) {
            cJSON *item = NULL;
            if (v.id == MQTT_PROP_USER_PROPERTY) {
                if (!user) {
                    user = cJSON_CreateObject();
                    cJSON_AddItemToObject(props, "user-properties", user);
                }
                char *k = cstr(v.s), *val = cstr(v.s2);
                if (k && val)
                    cJSON_AddItemToObject(user, k, cJSON_CreateString(val));
                free(k);
                free(val);
                continue;
            }
            const char *name = prop_name(v.id);
            if (!name)
                continue;
            if (v.id == MQTT_PROP_CONTENT_TYPE || v.id == MQTT_PROP_RESPONSE_TOPIC ||
                v.id == MQTT_PROP_CORRELATION_DATA) {
                char *s = cstr(v.s);
                if (s)
                    item = cJSON_CreateString(s);
                free(s);
            } else {
                item = cJSON_CreateNumber(v.num);
            }
            if (item)
                cJSON_AddItemToObject(props, name, item);
        }
    }
    cJSON *payload;
    if (!m->payload_len) {
        payload = cJSON_CreateNull();
    } else {
        char *s = cstr((struct mqtt_str){m->payload, (uint32_t)m->payload_len});
        if (!s) {
            cJSON_Delete(root);
            return 1;
        }
        if (escaped) {
            payload = cJSON_CreateString(s);
        } else {
            const char *end = NULL;
            payload = cJSON_ParseWithOpts(s, &end, true);
            if (!payload || end != s + m->payload_len) {
                cJSON_Delete(payload);
                free(s);
                cJSON_Delete(root);
                return 2;
            }
        }
        free(s);
    }
    cJSON_AddItemToObject(root, "payload", payload);
    char *out = cli->pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out)
        return 1;
    fputs(out, stdout);
    free(out);
    return 0;
}

/* ---- % fields ------------------------------------------------------------ */

static void pad_n(char c, int n) {
    for (int i = 0; i < n; i++)
        putchar(c);
}

static void put_int(long v, char align, char pad, int width) {
    if (!width)
        printf("%ld", v);
    else if (align == '-')
        printf("%-*ld", width, v);
    else if (pad == '0')
        printf("%0*ld", width, v);
    else
        printf("%*ld", width, v);
}

static void put_str(const char *s, int len, char align, int width, int prec) {
    if (prec >= 0 && prec < len)
        len = prec;
    int padn = width > len ? width - len : 0;
    if (align != '-')
        pad_n(' ', padn);
    fwrite(s, 1, (size_t)len, stdout);
    if (align == '-')
        pad_n(' ', padn);
}

/* Payload as is (hex 0), lower-case hex (1) or upper-case hex (2). A field
 * width also caps the output (mosquitto_sub's rule). */
static void put_payload(const uint8_t *p, size_t len, int hex, char align, char pad, int width) {
    long n = (long)len, padn;
    if (width > 0) {
        if (n > width)
            n = width;
        if (hex) {
            n /= 2;
            padn = width - n * 2;
        } else {
            padn = width - n;
        }
    } else {
        padn = -n;
    }
    if (align != '-')
        for (long i = 0; i < padn; i++)
            putchar(pad);
    if (!hex)
        fwrite(p, 1, (size_t)n, stdout);
    else
        for (long i = 0; i < n; i++)
            printf(hex == 1 ? "%02x" : "%02X", p[i]);
    if (align == '-') /* mosquitto_sub pads by |padn|: "%-p" adds len spaces */
        pad_n(' ', (int)(padn < 0 ? -padn : padn));
}

static void local_now(struct tm *tm, long *ns) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, tm);
    *ns = ts.tv_nsec;
}

static void field(const struct cli *cli, const struct hc_message *m, char code, char align,
                  char pad, int width, int prec) {
    struct pval v;
    struct tm tm;
    long ns;
    char buf[100];
    switch (code) {
    case '%':
        putchar('%');
        break;
    case 'A':
    case 'E':
    case 'F':
    case 'S': {
        uint8_t id = code == 'A'   ? MQTT_PROP_TOPIC_ALIAS
                     : code == 'E' ? MQTT_PROP_MESSAGE_EXPIRY
                     : code == 'F' ? MQTT_PROP_PAYLOAD_FORMAT
                                   : MQTT_PROP_SUBSCRIPTION_ID;
        if (find_prop(m, id, &v))
            put_int(code == 'E' || code == 'S' ? (long)(int)v.num : (long)v.num, align, pad, width);
        else
            pad_n(pad, width);
        break;
    }
    case 'C':
        if (find_prop(m, MQTT_PROP_CONTENT_TYPE, &v))
            put_str((const char *)v.s.p, (int)v.s.len, align, width, prec);
        else
            pad_n(' ', width);
        break;
    case 'D':
        if (find_prop(m, MQTT_PROP_CORRELATION_DATA, &v))
            fwrite(v.s.p, 1, v.s.len, stdout);
        break;
    case 'R':
        if (find_prop(m, MQTT_PROP_RESPONSE_TOPIC, &v))
            put_str((const char *)v.s.p, (int)v.s.len, align, width, prec);
        break;
    case 'P': {
        struct pwalk w = {m->props->raw.p, m->props->raw.len, 0};
        bool first = true;
        while (pnext(&w, &v)) {
            if (v.id != MQTT_PROP_USER_PROPERTY)
                continue;
            if (!first)
                putchar(' ');
            first = false;
            printf("%.*s:%.*s", (int)v.s.len, (const char *)v.s.p, (int)v.s2.len,
                   (const char *)v.s2.p);
        }
        break;
    }
    case 'I':
        local_now(&tm, &ns);
        if (strftime(buf, sizeof buf, "%FT%T%z", &tm))
            put_str(buf, (int)strlen(buf), align, width, prec);
        else
            pad_n(' ', width);
        break;
    case 'j':
    case 'J': {
        int rc = json_print(cli, m, code == 'j');
        if (rc == 1 && !cli->quiet)
            fprintf(stderr, "Error: Out of memory.\n");
        else if (rc == 2 && !cli->quiet)
            fprintf(stderr, "Error: Message payload is not valid JSON on topic %s.\n", m->topic);
        break;
    }
    case 'l':
        put_int((long)m->payload_len, align, pad, width);
        break;
    case 'm':
        put_int(m->mid, align, pad, width);
        break;
    case 'p':
        put_payload(m->payload, m->payload_len, 0, align, pad, width);
        break;
    case 'q':
        putchar('0' + m->qos);
        break;
    case 'r':
        putchar(m->retain ? '1' : '0');
        break;
    case 't':
        put_str(m->topic, (int)m->topic_len, align, width, prec);
        break;
    case 'U':
        local_now(&tm, &ns);
        if (strftime(buf, sizeof buf, "%s", &tm))
            printf("%s.%09ld", buf, ns);
        break;
    case 'x':
        put_payload(m->payload, m->payload_len, 1, align, pad, width);
        break;
    case 'X':
        put_payload(m->payload, m->payload_len, 2, align, pad, width);
        break;
    default:
        break; /* unknown codes print nothing, as in mosquitto_sub */
    }
}

static void formatted(const struct cli *cli, const struct hc_message *m) {
    const char *f = cli->format;
    size_t len = strlen(f);
    for (size_t i = 0; i < len; i++) {
        char ch = f[i];
        if (ch == '%') {
            char align = 0, pad = ' ';
            int width = 0, prec = -1;
            if (i + 1 >= len)
                continue; /* a lone '%' at the end prints nothing */
            i++;
            if (f[i] == '-') {
                align = '-';
                if (i + 1 < len)
                    i++;
            }
            if (f[i] == '0') {
                pad = '0';
                if (i + 1 < len)
                    i++;
            }
            while (i + 1 < len && f[i] >= '0' && f[i] <= '9') {
                width = width * 10 + (f[i] - '0');
                i++;
            }
            if (f[i] == '.' && i + 1 < len) {
                i++;
                prec = 0;
                while (i + 1 < len && f[i] >= '0' && f[i] <= '9') {
                    prec = prec * 10 + (f[i] - '0');
                    i++;
                }
            }
            field(cli, m, f[i], align, pad, width, prec);
        } else if (ch == '@') {
            if (i + 1 >= len)
                continue;
            i++;
            if (f[i] == '@') {
                putchar('@');
            } else {
                struct tm tm;
                long ns;
                local_now(&tm, &ns);
                if (f[i] == 'N') {
                    printf("%09ld", ns);
                } else {
                    char spec[3] = {'%', f[i], 0}, buf[100];
                    size_t n = strftime(buf, sizeof buf, spec, &tm);
                    if (n)
                        fwrite(buf, 1, n, stdout);
                }
            }
        } else if (ch == '\\') {
            if (i + 1 >= len)
                continue;
            i++;
            switch (f[i]) {
            case '\\':
                putchar('\\');
                break;
            case '0':
                putchar('\0');
                break;
            case 'a':
                putchar('\a');
                break;
            case 'e':
                putchar('\033');
                break;
            case 'n':
                putchar('\n');
                break;
            case 'r':
                putchar('\r');
                break;
            case 't':
                putchar('\t');
                break;
            case 'v':
                putchar('\v');
                break;
            default:
                break;
            }
        } else {
            putchar(ch);
        }
    }
    if (!cli->no_eol)
        putchar('\n');
}

const char *fmt_check(const char *f, char *buf, size_t cap) {
    static const char codes[] = "%ACDEFIjJlmPpqRrStUxX";
    static const char escapes[] = "\\0aenrtv";
    size_t len = strlen(f);
    for (size_t i = 0; i < len; i++) {
        if (f[i] == '%') {
            if (++i < len && f[i] == '-')
                i++;
            if (i < len && f[i] == '0')
                i++;
            while (i < len && f[i] >= '0' && f[i] <= '9')
                i++;
            if (i < len && f[i] == '.') {
                i++;
                while (i < len && f[i] >= '0' && f[i] <= '9')
                    i++;
            }
            if (i >= len)
                return "incomplete format specifier at the end";
            if (!strchr(codes, f[i]) || !f[i]) {
                snprintf(buf, cap, "invalid format specifier '%c'", f[i]);
                return buf;
            }
        } else if (f[i] == '@') {
            if (++i >= len)
                return "incomplete format specifier at the end";
        } else if (f[i] == '\\') {
            if (++i >= len)
                return "incomplete escape specifier at the end";
            if (!strchr(escapes, f[i])) {
                snprintf(buf, cap, "invalid escape specifier '%c'", f[i]);
                return buf;
            }
        }
    }
    return NULL;
}

void fmt_message(const struct cli *cli, const struct hc_message *m) {
    if (cli->format) {
        formatted(cli, m);
    } else if (cli->verbose) {
        if (m->payload_len) {
            printf("%s ", m->topic);
            fwrite(m->payload, 1, m->payload_len, stdout);
            if (!cli->no_eol)
                putchar('\n');
        } else if (!cli->no_eol) {
            printf("%s (null)\n", m->topic);
        }
    } else if (m->payload_len) {
        fwrite(m->payload, 1, m->payload_len, stdout);
        if (!cli->no_eol)
            putchar('\n');
    }
    /* The caller flushes stdout once per batch of input (cli_poll). */
}
