/*
 * hato-store: check a persistence store, or dump it as JSON, for operators.
 * Opens the store read-only (safe beside a running broker: LMDB readers never
 * block the writer) and decodes every record.
 *
 *   hato-store check [-c CONFIG | PATH]
 *   hato-store dump  [-c CONFIG | PATH]
 *   hato-store import-mosquitto FILE [-c CONFIG | PATH]
 *
 * PATH is the store file or the directory holding mosquitto.db. With -c the
 * path comes from persistence_location / persistence_file of a hato.conf.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config/config.h"
#include "store/mosqimport.h"
#include "store/record.h"
#include "store/store.h"

#define VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f,
            "hato-store version %s\n\n"
            "Usage: hato-store check|dump [-c config_file | path]\n"
            "       hato-store import-mosquitto FILE [-c config_file | path]\n\n"
            " check : decode every record and check references; exit 0 when sound,\n"
            "         1 when damaged, 2 when the store cannot be opened.\n"
            " dump  : print the whole store as JSON on standard output.\n"
            " import-mosquitto : import Mosquitto's persistence file FILE (mosquitto.db of\n"
            "         Mosquitto 1.6 or 2.0) into an empty store in one transaction, then\n"
            "         rename FILE to FILE.imported. Without a store, FILE becomes one.\n"
            " -c    : take persistence_location and persistence_file from a config file.\n"
            " path  : the store file, or the directory holding mosquitto.db.\n\n"
            "See hato-store(8).\n",
            VERSION);
}

/* ---- reading everything ------------------------------------------------ */

struct msgref {
    uint64_t id;
    uint32_t refs;  /* as stored in mrefs */
    uint32_t found; /* entries that point at it */
    bool has_refs;
};

struct ctx {
    struct store *st;
    bool dump;
    long problems;
    cJSON *root, *sessions, *messages, *retained;
    struct msgref *msgs;
    size_t nmsgs, cap;
    long counts[SDB_N];
};

static void problem(struct ctx *c, const char *table, const char *fmt, const char *arg) {
    c->problems++;
    fprintf(stderr, "damaged: table %s: ", table);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

static char *hexkey(const uint8_t *k, size_t n) {
    static char buf[80];
    size_t i = 0;
    for (; i < n && i < 32; i++)
        sprintf(buf + 2 * i, "%02x", k[i]);
    buf[2 * i] = 0;
    return buf;
}

static bool utf8_ok(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n || c == 0)
            return false;
        for (int k = 1; k < len; k++)
            if ((p[i + (size_t)k] & 0xC0) != 0x80)
                return false;
        i += (size_t)len;
    }
    return true;
}

static char *b64(const uint8_t *p, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        o[j++] = t[(v >> 18) & 63];
        o[j++] = t[(v >> 12) & 63];
        o[j++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? t[v & 63] : '=';
    }
    o[j] = 0;
    return o;
}

/* Bytes as a JSON string when they are text, else NAME_base64. */
static void add_bytes(cJSON *o, const char *name, const uint8_t *p, size_t n) {
    if (utf8_ok(p, n)) {
        char *s = malloc(n + 1);
        if (!s)
            return;
        memcpy(s, p, n);
        s[n] = 0;
        cJSON_AddStringToObject(o, name, s);
        free(s);
    } else {
        char key[64];
        snprintf(key, sizeof(key), "%s_base64", name);
        char *s = b64(p, n);
        if (s)
            cJSON_AddStringToObject(o, key, s);
        free(s);
    }
}

static cJSON *msg_json(const struct rec_msg *m) {
    cJSON *o = cJSON_CreateObject();
    add_bytes(o, "topic", m->topic, m->topic_len);
    cJSON_AddNumberToObject(o, "qos", m->qos);
    cJSON_AddBoolToObject(o, "retain", m->retain);
    if (m->expiry_at)
        cJSON_AddNumberToObject(o, "expiry_at_ms", (double)m->expiry_at);
    add_bytes(o, "payload", m->payload, m->payload_len);
    if (m->content_type_len)
        add_bytes(o, "content_type", m->content_type, m->content_type_len);
    if (m->response_topic_len)
        add_bytes(o, "response_topic", m->response_topic, m->response_topic_len);
    if (m->correlation_data_len)
        add_bytes(o, "correlation_data", m->correlation_data, m->correlation_data_len);
    if (m->props_present & (UINT64_C(1) << 1))
        cJSON_AddNumberToObject(o, "payload_format", m->payload_format);
    if (m->user_props_len)
        add_bytes(o, "user_properties_raw", m->user_props, m->user_props_len);
    return o;
}

static int on_mref(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    if (kl != 8 || vl != 4) {
        problem(c, "mrefs", "bad record %s", hexkey(k, kl));
        return 0;
    }
    uint64_t id = rec_key_get_u64(k);
    struct rread r = {v, 4, 0, false};
    uint32_t n = rread_u32(&r);
    for (size_t i = 0; i < c->nmsgs; i++) {
        if (c->msgs[i].id == id) {
            c->msgs[i].refs = n;
            c->msgs[i].has_refs = true;
            return 0;
        }
    }
    problem(c, "mrefs", "count for missing message %s", hexkey(k, kl));
    return 0;
}

static int on_msg(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    struct rread r = {v, vl, 0, false};
    struct rec_msg m;
    if (kl != 8 || rec_msg_decode(&r, &m) < 0) {
        problem(c, "msgs", "undecodable record %s", hexkey(k, kl));
        return 0;
    }
    if (c->nmsgs == c->cap) {
        size_t n = c->cap ? c->cap * 2 : 256;
        struct msgref *a = realloc(c->msgs, n * sizeof(*a));
        if (!a)
            return 2;
        c->msgs = a;
        c->cap = n;
    }
    c->msgs[c->nmsgs++] = (struct msgref){rec_key_get_u64(k), 0, 0, false};
    if (c->dump) {
        cJSON *o = msg_json(&m);
        cJSON_AddNumberToObject(o, "id", (double)rec_key_get_u64(k));
        cJSON_AddItemToArray(c->messages, o);
    }
    return 0;
}

static struct msgref *find(struct ctx *c, uint64_t id) {
    size_t lo = 0, hi = c->nmsgs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->msgs[mid].id == id)
            return &c->msgs[mid];
        if (c->msgs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Sessions by client id (sorted once all are read), for the queue and inpid tables. */
struct sess_name {
    char *id;
    size_t len;
    cJSON *json;
};
static struct sess_name *names;
static size_t nnames, capnames;

static int name_cmp(const void *a, const void *b) {
    const struct sess_name *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->id, y->id, n);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static struct sess_name *find_session(const uint8_t *id, size_t n) {
    struct sess_name key = {(char *)id, n, NULL};
    return bsearch(&key, names, nnames, sizeof(*names), name_cmp);
}

static bool session_exists(const uint8_t *id, size_t n) {
    return find_session(id, n) != NULL;
}

static cJSON *session_json(struct ctx *c, const uint8_t *id, size_t n) {
    (void)c;
    struct sess_name *s = find_session(id, n);
    return s ? s->json : NULL;
}

static int on_sess(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    struct rread r = {v, vl, 0, false};
    struct rec_sess s;
    if (rec_sess_decode(&r, &s) < 0) {
        problem(c, "sess", "undecodable session %s", hexkey(k, kl));
        return 0;
    }
    if (nnames == capnames) {
        size_t n = capnames ? capnames * 2 : 64;
        struct sess_name *a = realloc(names, n * sizeof(*a));
        if (!a)
            return 2;
        names = a;
        capnames = n;
    }
    struct sess_name *me = &names[nnames];
    me->id = malloc(kl ? kl : 1);
    if (!me->id)
        return 2;
    memcpy(me->id, k, kl);
    me->len = kl;
    me->json = NULL;
    nnames++;
    cJSON *o = c->dump ? cJSON_CreateObject() : NULL;
    if (o) {
        add_bytes(o, "client_id", k, kl);
        cJSON_AddNumberToObject(o, "protocol_version", s.version);
        if (s.expiry == UINT32_MAX)
            cJSON_AddStringToObject(o, "expiry_interval", "never");
        else
            cJSON_AddNumberToObject(o, "expiry_interval", s.expiry);
        if (s.offline_at)
            cJSON_AddNumberToObject(o, "offline_since_ms", (double)s.offline_at);
        if (s.has_user)
            add_bytes(o, "username", s.user, s.user_len);
        if (s.has_will) {
            cJSON *w = msg_json(&s.will);
            cJSON_AddNumberToObject(w, "delay", s.will_delay);
            if (s.will_at)
                cJSON_AddNumberToObject(w, "due_at_ms", (double)s.will_at);
            cJSON_AddItemToObject(o, "will", w);
        }
    }
    cJSON *subs = o ? cJSON_AddArrayToObject(o, "subscriptions") : NULL;
    struct rec_sub sub;
    int rc;
    uint32_t nsub = 0;
    while ((rc = rec_sess_sub_next(&s, &sub)) == 1) {
        nsub++;
        if (subs) {
            cJSON *so = cJSON_CreateObject();
            add_bytes(so, "filter", sub.filter, sub.len);
            cJSON_AddNumberToObject(so, "qos", sub.qos);
            cJSON_AddBoolToObject(so, "no_local", sub.no_local);
            cJSON_AddBoolToObject(so, "retain_as_published", sub.retain_as_published);
            cJSON_AddNumberToObject(so, "retain_handling", sub.retain_handling);
            if (sub.sub_id)
                cJSON_AddNumberToObject(so, "subscription_identifier", sub.sub_id);
            cJSON_AddItemToArray(subs, so);
        }
    }
    if (rc < 0 || nsub != s.nsubs)
        problem(c, "sess", "bad subscriptions in session %s", hexkey(k, kl));
    if (o) {
        cJSON_AddArrayToObject(o, "queue");
        cJSON_AddArrayToObject(o, "awaiting_pubrel");
        cJSON_AddItemToArray(c->sessions, o);
        me->json = o;
    }
    return 0;
}

static const char *state_name(uint8_t s) {
    static const char *const n[] = {"queued", "awaiting PUBACK", "awaiting PUBREC",
                                    "awaiting PUBCOMP"};
    return s <= 3 ? n[s] : "?";
}

static int on_entry(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    const uint8_t *id, *rest;
    size_t idl, rl;
    struct rread r = {v, vl, 0, false};
    struct rec_entry e;
    if (rec_key_split(k, kl, &id, &idl, &rest, &rl) < 0 || rl != 8 ||
        rec_entry_decode(&r, &e) < 0) {
        problem(c, "queue", "undecodable entry %s", hexkey(k, kl));
        return 0;
    }
    struct rec_msg im;
    bool inline_ok = false;
    if (e.msg_id == 0) {
        inline_ok = rec_msg_decode(&e.msg, &im) == 0;
        if (!inline_ok)
            problem(c, "queue", "entry %s has an undecodable message", hexkey(k, kl));
    } else {
        struct msgref *m = find(c, e.msg_id);
        if (!m)
            problem(c, "queue", "entry %s refers to a missing message", hexkey(k, kl));
        else
            m->found++;
    }
    if (!session_exists(id, idl))
        problem(c, "queue", "entry %s belongs to no session", hexkey(k, kl));
    if (c->dump) {
        cJSON *s = session_json(c, id, idl);
        if (s) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "seq", (double)rec_key_get_u64(rest));
            if (e.msg_id)
                cJSON_AddNumberToObject(o, "message_id", (double)e.msg_id);
            else if (inline_ok)
                cJSON_AddItemToObject(o, "message", msg_json(&im));
            cJSON_AddNumberToObject(o, "qos", e.qos);
            cJSON_AddBoolToObject(o, "retain", e.retain);
            cJSON_AddStringToObject(o, "state", state_name(e.state));
            if (e.pid)
                cJSON_AddNumberToObject(o, "packet_id", e.pid);
            if (e.nsub) {
                cJSON *ids = cJSON_AddArrayToObject(o, "subscription_identifiers");
                for (uint16_t i = 0; i < e.nsub; i++)
                    cJSON_AddItemToArray(ids, cJSON_CreateNumber(rread_u32(&e.subids)));
            }
            cJSON_AddItemToArray(cJSON_GetObjectItem(s, "queue"), o);
        }
    }
    return 0;
}

static int on_inpid(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    const uint8_t *id, *rest;
    size_t idl, rl;
    (void)v;
    if (rec_key_split(k, kl, &id, &idl, &rest, &rl) < 0 || rl != 2 || vl < 1) {
        problem(c, "inpid", "bad record %s", hexkey(k, kl));
        return 0;
    }
    if (!session_exists(id, idl))
        problem(c, "inpid", "packet id %s belongs to no session", hexkey(k, kl));
    cJSON *s = c->dump ? session_json(c, id, idl) : NULL;
    if (s)
        cJSON_AddItemToArray(cJSON_GetObjectItem(s, "awaiting_pubrel"),
                             cJSON_CreateNumber((rest[0] << 8) | rest[1]));
    return 0;
}

static int on_retained(void *vc, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    struct ctx *c = vc;
    struct rread r = {v, vl, 0, false};
    struct rec_msg m;
    if (rec_msg_decode(&r, &m) < 0 || m.topic_len != kl || memcmp(m.topic, k, kl) != 0) {
        problem(c, "retain", "undecodable retained message %s", hexkey(k, kl));
        return 0;
    }
    struct rec_source src;
    int hs = rec_source_decode(&r, &src);
    if (hs < 0) {
        problem(c, "retain", "damaged publisher of retained message %s", hexkey(k, kl));
        return 0;
    }
    if (c->dump) {
        cJSON *o = msg_json(&m);
        if (o && hs == 1) {
            cJSON *so = cJSON_AddObjectToObject(o, "source");
            char *id = strndup((const char *)src.id, src.id_len);
            cJSON_AddStringToObject(so, "client_id", id ? id : "");
            free(id);
            if (src.has_user) {
                char *u = strndup((const char *)src.user, src.user_len);
                cJSON_AddStringToObject(so, "username", u ? u : "");
                free(u);
            }
            cJSON_AddNumberToObject(so, "listener", src.listener);
        }
        cJSON_AddItemToArray(c->retained, o);
    }
    return 0;
}

static char *path_from_config(const char *conf) {
    struct hato_config cfg;
    hato_config_init(&cfg);
    char err[512];
    if (hato_config_load(&cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "Error: %s\n", err);
        hato_config_free(&cfg);
        return NULL;
    }
    const char *dir = cfg.persistence_location ? cfg.persistence_location : ".";
    const char *file = cfg.persistence_file ? cfg.persistence_file : "mosquitto.db";
    size_t dl = strlen(dir);
    char *p = malloc(dl + strlen(file) + 2);
    if (p)
        sprintf(p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", file);
    hato_config_free(&cfg);
    return p;
}

/* The store path of argument i ("-c CONFIG" or PATH, a file or a directory). */
static char *store_path_arg(int argc, char **argv, int i) {
    if (!strcmp(argv[i], "-c")) {
        if (argc != i + 2) {
            usage(stderr);
            return NULL;
        }
        return path_from_config(argv[i + 1]);
    }
    if (argc != i + 1) {
        usage(stderr);
        return NULL;
    }
    struct stat sb;
    size_t n = strlen(argv[i]);
    char *path;
    if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
        path = malloc(n + 16);
        if (path)
            sprintf(path, "%s%smosquitto.db", argv[i], n && argv[i][n - 1] == '/' ? "" : "/");
    } else {
        path = strdup(argv[i]);
    }
    return path;
}

static int import_mosquitto(int argc, char **argv) {
    const char *file = argv[2];
    char *path = argc > 3 ? store_path_arg(argc, argv, 3) : strdup(file);
    if (!path)
        return 2;
    struct mosq_import_counts c;
    char *renamed = NULL;
    char err[1200];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int rc = mosq_import_file(file, path, STORE_SYNC_ALWAYS, now, &c, &renamed, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "Error: %s\n", err);
        free(path);
        return 1;
    }
    char line[600];
    mosq_import_describe(&c, line, sizeof(line));
    printf("Imported %s into %s: %s.\nThe original is now %s.\n", file, path, line, renamed);
    free(renamed);
    free(path);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "import-mosquitto"))
        return import_mosquitto(argc, argv);
    if (argc < 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "dump"))) {
        usage(stderr);
        return 2;
    }
    bool dump = !strcmp(argv[1], "dump");
    char *path = NULL;
    if (!strcmp(argv[2], "-c")) {
        if (argc != 4) {
            usage(stderr);
            return 2;
        }
        path = path_from_config(argv[3]);
        if (!path)
            return 2;
    } else {
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        struct stat sb;
        size_t n = strlen(argv[2]);
        if (stat(argv[2], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            path = malloc(n + 16);
            if (path)
                sprintf(path, "%s%smosquitto.db", argv[2], n && argv[2][n - 1] == '/' ? "" : "/");
        } else {
            path = strdup(argv[2]);
        }
        if (!path)
            return 2;
    }
    char err[700];
    struct store *st = store_open(path, STORE_SYNC_NONE, true, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "Error: %s\n", err);
        free(path);
        return 2;
    }
    struct ctx c = {.st = st, .dump = dump};
    if (dump) {
        c.root = cJSON_CreateObject();
        cJSON_AddStringToObject(c.root, "store", path);
        cJSON_AddNumberToObject(c.root, "format", REC_FORMAT);
        c.sessions = cJSON_AddArrayToObject(c.root, "sessions");
        c.messages = cJSON_AddArrayToObject(c.root, "messages");
        c.retained = cJSON_AddArrayToObject(c.root, "retained");
    }
    static const struct {
        enum store_db db;
        store_each_fn fn;
    } steps[] = {{SDB_MSGS, on_msg},    {SDB_MREFS, on_mref},  {SDB_SESS, on_sess},
                 {SDB_QUEUE, on_entry}, {SDB_INPID, on_inpid}, {SDB_RETAIN, on_retained}};
    int rc = 0;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        c.counts[steps[i].db] = store_count(st, steps[i].db);
        int r = store_each(st, steps[i].db, steps[i].fn, &c);
        if (steps[i].db == SDB_SESS)
            qsort(names, nnames, sizeof(*names), name_cmp);
        if (r) {
            fprintf(stderr, "Error: cannot read table %s of %s.\n", store_db_names[steps[i].db],
                    path);
            rc = 2;
            break;
        }
    }
    for (size_t i = 0; rc == 0 && i < c.nmsgs; i++) {
        struct msgref *m = &c.msgs[i];
        char id[32];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)m->id);
        if (!m->has_refs)
            m->refs = 1; /* no count stored means one */
        if (m->refs != m->found)
            problem(&c, "mrefs", "message %s: count differs from its queue entries", id);
        if (!m->found)
            problem(&c, "msgs", "message %s is referenced by no queue entry", id);
    }
    if (rc == 0 && dump) {
        cJSON_AddNumberToObject(c.root, "problems", (double)c.problems);
        char *text = cJSON_Print(c.root);
        if (text) {
            puts(text);
            free(text);
        }
    }
    if (rc == 0 && !dump) {
        printf("%s: %ld sessions, %ld queue entries, %ld stored messages, %ld QoS 2 ids "
               "awaiting PUBREL, %ld retained messages; %ld problem%s.\n",
               path, c.counts[SDB_SESS], c.counts[SDB_QUEUE], c.counts[SDB_MSGS],
               c.counts[SDB_INPID], c.counts[SDB_RETAIN], c.problems, c.problems == 1 ? "" : "s");
    }
    if (rc == 0 && c.problems)
        rc = 1;
    cJSON_Delete(c.root);
    free(c.msgs);
    for (size_t i = 0; i < nnames; i++)
        free(names[i].id);
    free(names);
    store_close(st);
    free(path);
    return rc;
}
