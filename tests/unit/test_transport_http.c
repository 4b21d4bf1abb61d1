/*
 * Unit tests of the HTTP/1.1 head parser and http_dir's file lookup
 * (src/transport/http.h): RFC 9112 request and status lines, field
 * syntax, the strictness the header promises (CRLF only, single spaces,
 * origin form, no obs-fold, no control bytes or NUL, a bound on fields),
 * "need more" for every strict prefix of a valid head; then tokens,
 * content types and http_open_file on a directory made by the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/http.h"

static int req(const char *s, struct http_head *h) {
    return http_parse_request(s, strlen(s), h);
}

static int resp(const char *s, struct http_head *h) {
    return http_parse_response(s, strlen(s), h);
}

static void req_is(const char *s, int want) {
    struct http_head h;
    int r = req(s, &h);
    if (r != want)
        fail_msg("'%s' -> %d, expected %d", s, r, want);
}

static void req_ok(const char *s, struct http_head *h) {
    int r = req(s, h);
    if (r != (int)strlen(s))
        fail_msg("'%s' -> %d, expected %zu", s, r, strlen(s));
}

static bool view_is(const char *p, size_t n, const char *want) {
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void field_is(const struct http_head *h, const char *name, const char *value) {
    int count = 0;
    const struct http_field *f = http_field(h, name, &count);
    assert_non_null(f);
    assert_int_equal(count, 1);
    if (!view_is(f->value, f->vlen, value))
        fail_msg("%s: '%.*s', expected '%s'", name, (int)f->vlen, f->value, value);
}

/* Every strict prefix asks for more. */
static void prefixes_need_more(const char *s, bool response) {
    size_t n = strlen(s);
    for (size_t k = 0; k < n; k++) {
        struct http_head h;
        int r = response ? http_parse_response(s, k, &h) : http_parse_request(s, k, &h);
        if (r != 0)
            fail_msg("prefix %zu of '%s' -> %d", k, s, r);
    }
}

static const char upgrade[] = "GET /mqtt HTTP/1.1\r\n"
                              "Host: broker.example:8080\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: keep-alive, Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Protocol: mqtt\r\n"
                              "\r\n";

/* ---- request line (RFC 9112 3) --------------------------------------------- */

static void test_request_upgrade(void **state) {
    (void)state;
    struct http_head h;
    req_ok(upgrade, &h);
    assert_true(view_is(h.method, h.mlen, "GET"));
    assert_true(view_is(h.target, h.tlen, "/mqtt"));
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.nf, 6);
    field_is(&h, "host", "broker.example:8080");
    field_is(&h, "UPGRADE", "websocket");
    field_is(&h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    /* Views point into the caller's buffer. */
    assert_true(h.method == upgrade);
    assert_true(h.f[0].name == upgrade + 20);
    /* Bytes after the head (the first frame) are not part of it. */
    char more[sizeof(upgrade) + 8];
    memcpy(more, upgrade, sizeof(upgrade) - 1);
    memcpy(more + sizeof(upgrade) - 1, "\x82\x80xxxx", 6);
    assert_int_equal(http_parse_request(more, sizeof(upgrade) - 1 + 6, &h),
                     (int)sizeof(upgrade) - 1);
}

static void test_request_line_spaces(void **state) {
    (void)state;
    req_is("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400);
    req_is(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -501); /* "GET\t/" is the method: no token */
    req_is("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", -400); /* a space in the target */
    req_is("GET HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET\r\nHost: a\r\n\r\n", -400);
    req_is("\r\n\r\n", -400);
    req_is("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400); /* no leading empty line */
}

static void test_request_line_crlf(void **state) {
    (void)state;
    req_is("GET / HTTP/1.1\nHost: a\r\n\r\n", -400);      /* a bare LF */
    req_is("GET / HTTP/1.1\r\nHost: a\n\n", -400);        /* LF LF */
    req_is("GET / HTTP/1.1\r\nHost: a\r\n\n", -400);      /* the empty line too */
    req_is("GET / HTTP/1.1\rHost: a\r\n\r\n", -400);      /* a bare CR */
    req_is("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", -400); /* in a value */
    /* Known before the head is complete. */
    req_is("GET / HTTP/1.1\n", -400);
    req_is("GET / HTTP/1.1\rX", -400);
}

static void test_request_target_origin_form(void **state) {
    (void)state;
    struct http_head h;
    req_ok("GET /a/b.html?x=1&y=%20#f HTTP/1.1\r\nHost: a\r\n\r\n", &h);
    assert_true(view_is(h.target, h.tlen, "/a/b.html?x=1&y=%20#f"));
    req_is("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400); /* absolute form */
    req_is("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400); /* asterisk form */
    req_is("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", -400); /* raw UTF-8: escape it */
}

static void test_request_method(void **state) {
    (void)state;
    struct http_head h;
    req_ok("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &h);
    assert_true(view_is(h.method, h.mlen, "HEAD"));
    req_ok("M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n", &h); /* any token */
    req_is("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", -501);
    req_is("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", -501);
    /* A byte that can never start a method: refused before the head ends. */
    req_is("\x16\x03\x01", -400); /* TLS to a plain listener */
    req_is("\x10\x0c\x00\x04MQTT", -400);
    req_is("G\x01", -400);
}

static void test_request_version(void **state) {
    (void)state;
    struct http_head h;
    /* HTTP/1.0 needs no Host; HTTP/1.1 needs exactly one. */
    req_ok("GET / HTTP/1.0\r\n\r\n", &h);
    assert_int_equal(h.minor, 0);
    assert_int_equal(h.nf, 0);
    req_ok("GET / HTTP/1.0\r\nHost: a\r\n\r\n", &h);
    req_is("GET / HTTP/1.1\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nX: y\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", -400);
    req_is("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", -400);
    req_ok("GET / HTTP/1.1\r\nHost:\r\n\r\n", &h); /* an empty Host is one Host */
    req_ok("GET / HTTP/1.9\r\nHost: a\r\n\r\n", &h);
    assert_int_equal(h.minor, 9);
    /* Other major versions: 505. */
    req_is("GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505);
    req_is("GET / HTTP/0.9\r\n\r\n", -505);
    req_is("GET / HTTP/3.0\r\nHost: a\r\n\r\n", -505);
    /* Not a version at all: 400. */
    req_is("GET / HTTP/1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/1.10\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/11.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / http/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/1,1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/a.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/2\r\nHost: a\r\n\r\n", -400);
}

/* ---- fields (RFC 9112 5) ----------------------------------------------- */

static void test_fields_syntax(void **state) {
    (void)state;
    struct http_head h;
    /* Optional whitespace around the value is not part of it. */
    req_ok("GET / HTTP/1.1\r\nHost: \t a b \t \r\nX-Empty:\r\nX-Sp:   \r\n\r\n", &h);
    field_is(&h, "Host", "a b");
    field_is(&h, "X-Empty", "");
    field_is(&h, "X-Sp", "");
    /* obs-text in values is kept as it is. */
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n", &h);
    field_is(&h, "x-name", "caf\xc3\xa9");
    /* The name is a token directly followed by ':'. */
    req_is("GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n", -400);
    /* Repeated fields: the first, and how many. */
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\n\r\n", &h);
    int count = 0;
    const struct http_field *f = http_field(&h, "X-A", &count);
    assert_int_equal(count, 3);
    assert_true(view_is(f->value, f->vlen, "1"));
    assert_null(http_field(&h, "X-B", &count));
    assert_int_equal(count, 0);
    assert_null(http_field(&h, "X-", NULL)); /* whole names only */
}

static void test_fields_obs_fold(void **state) {
    (void)state;
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\n Host: a\r\n\r\n", -400);
}

static void test_fields_control_bytes(void **state) {
    (void)state;
    struct http_head h;
    req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\n\r\n", &h); /* HTAB is allowed */
    field_is(&h, "X-Tab", "a\tb");
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
           "b\r\n\r\n",
           -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1f\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", -400);
    req_is("GET / HTTP/1.1\r\nHost: a\r\nX\x01: a\r\n\r\n", -400);
}

static void test_fields_nul(void **state) {
    (void)state;
    struct http_head h;
    static const char with_nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    /* Anywhere, complete head or not. */
    assert_int_equal(http_parse_request(with_nul, sizeof(with_nul) - 1, &h), -400);
    assert_int_equal(http_parse_request(with_nul, 25, &h), -400);
    assert_int_equal(http_parse_request("\0", 1, &h), -400);
    assert_int_equal(http_parse_request("GET /\0", 6, &h), -400);
    static const char resp_nul[] = "HTTP/1.1 101 OK\r\nX: \0\r\n\r\n";
    assert_int_equal(http_parse_response(resp_nul, sizeof(resp_nul) - 1, &h), -1);
}

static void test_fields_too_many(void **state) {
    (void)state;
    char buf[8192];
    struct http_head h;
    /* Host and 63 more: the most. */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
    memcpy(buf + n, "\r\n", 3);
    assert_int_equal(http_parse_request(buf, n + 2, &h), (int)(n + 2));
    assert_int_equal(h.nf, HTTP_MAX_HEADERS);
    /* One more. */
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-last: 1\r\n\r\n");
    assert_int_equal(http_parse_request(buf, n, &h), -431);
}

static void test_need_more(void **state) {
    (void)state;
    prefixes_need_more(upgrade, false);
    prefixes_need_more("GET / HTTP/1.0\r\n\r\n", false);
    prefixes_need_more("DELETE /x?y HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX: \t v\t\r\n\r\n", false);
    prefixes_need_more("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", true);
    prefixes_need_more("HTTP/1.1 404 Not Found\r\n\r\n", true);
    struct http_head h;
    assert_int_equal(http_parse_request("", 0, &h), 0);
    assert_int_equal(http_parse_response("", 0, &h), 0);
}

/* ---- status line (RFC 9112 4) ------------------------------------------ */

static void test_response(void **state) {
    (void)state;
    struct http_head h;
    const char *r101 = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_int_equal(resp(r101, &h), (int)strlen(r101));
    assert_int_equal(h.status, 101);
    assert_int_equal(h.minor, 1);
    assert_true(view_is(h.reason, h.rlen, "Switching Protocols"));
    assert_int_equal(h.nf, 3);
    field_is(&h, "sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* An empty reason, with or without its space. */
    assert_int_equal(resp("HTTP/1.0 200 \r\n\r\n", &h), 17);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.minor, 0);
    assert_int_equal(h.rlen, 0);
    assert_int_equal(resp("HTTP/1.1 404\r\n\r\n", &h), 16);
    assert_int_equal(h.status, 404);
    assert_int_equal(h.rlen, 0);
    assert_int_equal(resp("HTTP/1.1 599 Whatever it is\r\n\r\n", &h), 31);
    assert_true(view_is(h.reason, h.rlen, "Whatever it is"));
    /* Malformed. */
    assert_int_equal(resp("HTTP/1.1 99 Low\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 600 High\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 099 Low\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 20x OK\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 2000 OK\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1  200 OK\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/2.0 200 OK\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1\r\n\r\n", &h), -1);
    assert_int_equal(resp("http/1.1 200 OK\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 200 OK\n\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", &h), -1);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n", &h), -1);
    assert_int_equal(resp("SSH-2.0-OpenSSH\r\n\r\n", &h), -1);
    assert_int_equal(http_parse_response("HTTP/1.1 200 OK\r\nX: y\r", 22, &h), 0);
}

/* ---- tokens, types, reasons ------------------------------------------------ */

static bool has(const char *v, const char *t) {
    return http_has_token(v, strlen(v), t);
}

static void test_has_token(void **state) {
    (void)state;
    assert_true(has("Upgrade", "upgrade"));
    assert_true(has("keep-alive, Upgrade", "upgrade"));
    assert_true(has("keep-alive,Upgrade", "UPGRADE"));
    assert_true(has(" upgrade ,keep-alive", "upgrade"));
    assert_true(has("a,,\t upgrade\t,", "upgrade"));
    assert_true(has("mqttv3.1, mqtt", "mqtt"));
    assert_true(has("mqtt, mqttv3.1", "mqttv3.1"));
    assert_false(has("", "upgrade"));
    assert_false(has(",,", "upgrade"));
    assert_false(has("upgrade2", "upgrade"));
    assert_false(has("pre-upgrade", "upgrade"));
    assert_false(has("upgr", "upgrade"));
    assert_false(has("mqttv3.1", "mqtt"));
    assert_false(has("up grade", "upgrade"));
    /* The length bounds the value: no NUL needed, nothing read past it. */
    assert_true(http_has_token("websocketXYZ", 9, "websocket"));
    assert_false(http_has_token("websocket", 8, "websocket"));
}

static void test_content_type(void **state) {
    (void)state;
    assert_string_equal(http_content_type("/a/index.html"), "text/html; charset=utf-8");
    assert_string_equal(http_content_type("INDEX.HTM"), "text/html; charset=utf-8");
    assert_string_equal(http_content_type("app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(http_content_type("app.mjs"), "text/javascript; charset=utf-8");
    assert_string_equal(http_content_type("s.css"), "text/css; charset=utf-8");
    assert_string_equal(http_content_type("d.json"), "application/json");
    assert_string_equal(http_content_type("d.js.map"), "application/json");
    assert_string_equal(http_content_type("i.PNG"), "image/png");
    assert_string_equal(http_content_type("i.svg"), "image/svg+xml");
    assert_string_equal(http_content_type("i.jpg"), "image/jpeg");
    assert_string_equal(http_content_type("i.jpeg"), "image/jpeg");
    assert_string_equal(http_content_type("favicon.ico"), "image/x-icon");
    assert_string_equal(http_content_type("m.wasm"), "application/wasm");
    assert_string_equal(http_content_type("r.txt"), "text/plain; charset=utf-8");
    assert_string_equal(http_content_type("archive.tar.gz"), "application/octet-stream");
    assert_string_equal(http_content_type("Makefile"), "application/octet-stream");
    assert_string_equal(http_content_type("/a.html/file"), "application/octet-stream");
    assert_string_equal(http_content_type("x.html~"), "application/octet-stream");
}

static void test_reason(void **state) {
    (void)state;
    assert_string_equal(http_reason(101), "Switching Protocols");
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(400), "Bad Request");
    assert_string_equal(http_reason(403), "Forbidden");
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(405), "Method Not Allowed");
    assert_string_equal(http_reason(426), "Upgrade Required");
    assert_string_equal(http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(501), "Not Implemented");
    assert_string_equal(http_reason(505), "HTTP Version Not Supported");
    assert_non_null(http_reason(299));
}

/* ---- http_open_file ------------------------------------------------------ */

struct tree {
    char base[PATH_MAX]; /* the temp dir: holds root/ and outside/ */
    char root[PATH_MAX]; /* its real path */
};

static void put(const struct tree *t, const char *rel, const char *content) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", t->base, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void dir(const struct tree *t, const char *rel) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", t->base, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void link_to(const struct tree *t, const char *target, const char *rel) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", t->base, rel);
    assert_int_equal(symlink(target, p), 0);
}

static int tree_setup(void **state) {
    struct tree *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    snprintf(t->base, sizeof(t->base), "/tmp/hato-http-XXXXXX");
    if (!mkdtemp(t->base))
        return -1;
    dir(t, "root");
    dir(t, "root/sub");
    dir(t, "root/sub/deeper");
    dir(t, "root/noindex");
    dir(t, "outside");
    put(t, "root/index.html", "<h1>hato</h1>\n");
    put(t, "root/app.js", "console.log(1)\n");
    put(t, "root/sub/index.html", "sub\n");
    put(t, "root/sub/deeper/data.json", "{\"a\":1}\n");
    put(t, "root/a b.txt", "space\n");
    put(t, "root/...", "three dots\n");
    put(t, "root/noindex/x.txt", "x\n");
    put(t, "outside/secret.txt", "secret\n");
    put(t, "outside/index.html", "outside\n");
    dir(t, "ro");
    link_to(t, "../root/index.html", "ro/x");
    put(t, "root/sub/index.htm", "not served\n");
    link_to(t, "../outside/secret.txt", "root/leak.txt");
    link_to(t, "../outside", "root/outdir");
    link_to(t, "sub/deeper/data.json", "root/inside.json");
    link_to(t, "missing-target", "root/dangling");
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/root", t->base);
    if (!realpath(p, t->root))
        return -1;
    *state = t;
    return 0;
}

static int tree_teardown(void **state) {
    struct tree *t = *state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->base);
    int rc = system(cmd);
    free(t);
    return rc == 0 ? 0 : -1;
}

/* Open the target; on success check the content and type, return 0;
 * else return the negative status. */
static int open_target(const struct tree *t, const char *target, const char *content,
                       const char *type) {
    off_t size = -1;
    const char *ty = NULL;
    int fd = http_open_file(t->root, target, strlen(target), &size, &ty);
    if (fd < 0)
        return fd;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = 0;
    assert_int_equal(size, n);
    if (content)
        assert_string_equal(buf, content);
    if (type)
        assert_string_equal(ty, type);
    return 0;
}

static void target_is(const struct tree *t, const char *target, int want) {
    int r = open_target(t, target, NULL, NULL);
    if (r != want)
        fail_msg("'%s' -> %d, expected %d", target, r, want);
}

static void test_open_index(void **state) {
    const struct tree *t = *state;
    assert_int_equal(open_target(t, "/", "<h1>hato</h1>\n", "text/html; charset=utf-8"), 0);
    assert_int_equal(open_target(t, "/index.html", "<h1>hato</h1>\n", NULL), 0);
    /* A directory with or without its slash. */
    assert_int_equal(open_target(t, "/sub/", "sub\n", "text/html; charset=utf-8"), 0);
    assert_int_equal(open_target(t, "/sub", "sub\n", NULL), 0);
    assert_int_equal(open_target(t, "//sub//", "sub\n", NULL), 0);
    /* No index.html: nothing to serve (no listings). */
    target_is(t, "/noindex/", -404);
    target_is(t, "/noindex", -404);
}

static void test_open_nested(void **state) {
    const struct tree *t = *state;
    assert_int_equal(open_target(t, "/sub/deeper/data.json", "{\"a\":1}\n", "application/json"), 0);
    assert_int_equal(
        open_target(t, "/app.js", "console.log(1)\n", "text/javascript; charset=utf-8"), 0);
    assert_int_equal(open_target(t, "/a%20b.txt", "space\n", "text/plain; charset=utf-8"), 0);
    assert_int_equal(open_target(t, "/%61pp.js", "console.log(1)\n", NULL), 0);
    assert_int_equal(open_target(t, "/sub/deeper/data%2Ejson", "{\"a\":1}\n", NULL), 0);
    assert_int_equal(open_target(t, "/...", "three dots\n", NULL), 0);
    /* A symlink that stays inside is followed. */
    assert_int_equal(open_target(t, "/inside.json", "{\"a\":1}\n", "application/json"), 0);
}

static void test_open_query_ignored(void **state) {
    const struct tree *t = *state;
    assert_int_equal(open_target(t, "/app.js?v=3", "console.log(1)\n", NULL), 0);
    assert_int_equal(open_target(t, "/?x=/../../etc/passwd", "<h1>hato</h1>\n", NULL), 0);
    assert_int_equal(open_target(t, "/sub/#frag", "sub\n", NULL), 0);
    assert_int_equal(open_target(t, "/app.js?", "console.log(1)\n", NULL), 0);
    /* A bad escape after the '?' is not looked at. */
    assert_int_equal(open_target(t, "/app.js?%zz%00", "console.log(1)\n", NULL), 0);
    /* The length bounds the target: "?..." past it is not there. */
    off_t size;
    const char *ty;
    int fd = http_open_file(t->root, "/app.jsXYZ", 7, &size, &ty);
    assert_true(fd >= 0);
    close(fd);
}

static void test_open_dot_segments(void **state) {
    const struct tree *t = *state;
    target_is(t, "/../outside/secret.txt", -403);
    target_is(t, "/sub/../../outside/secret.txt", -403);
    target_is(t, "/sub/../index.html", -403); /* even when it would stay inside */
    target_is(t, "/./index.html", -403);
    target_is(t, "/sub/.", -403);
    target_is(t, "/sub/..", -403);
    target_is(t, "/..", -403);
    target_is(t, "/%2e%2e/outside/secret.txt", -403);
    target_is(t, "/%2E%2E/outside/secret.txt", -403);
    target_is(t, "/.%2e/outside/secret.txt", -403);
    target_is(t, "/sub/%2e%2e/%2e%2e/outside/secret.txt", -403);
    target_is(t, "/%2e/index.html", -403);
}

static void test_open_bad_escapes(void **state) {
    const struct tree *t = *state;
    target_is(t, "/sub%2Findex.html", -400); /* an escaped '/' */
    target_is(t, "/sub%2findex.html", -400);
    target_is(t, "/..%2F..%2Foutside%2Fsecret.txt", -400);
    target_is(t, "/index.html%00.png", -400); /* an escaped NUL */
    target_is(t, "/%00", -400);
    target_is(t, "/%", -400);
    target_is(t, "/%4", -400);
    target_is(t, "/app.js%", -400);
    target_is(t, "/%zz", -400);
    target_is(t, "/%g0", -400);
    target_is(t, "/%-1", -400);
}

static void test_open_symlink_out(void **state) {
    const struct tree *t = *state;
    target_is(t, "/leak.txt", -403);
    target_is(t, "/outdir/secret.txt", -403);
    target_is(t, "/outdir/", -403); /* its index.html is outside too */
    target_is(t, "/outdir", -403);
    /* The root is a whole path, not a string prefix: with root ".../ro", a
     * symlink in it to ".../root/index.html" leads out of it. */
    char shorter[PATH_MAX];
    snprintf(shorter, sizeof(shorter), "%.*s", (int)strlen(t->root) - 2, t->root);
    off_t size;
    const char *ty;
    assert_int_equal(http_open_file(shorter, "/x", 2, &size, &ty), -403);
    assert_int_equal(http_open_file(shorter, "/", 1, &size, &ty), -404);
}

static void test_open_missing(void **state) {
    const struct tree *t = *state;
    target_is(t, "/nope.html", -404);
    target_is(t, "/sub/nope/", -404);
    target_is(t, "/nope/index.html", -404);
    target_is(t, "/dangling", -404);
    target_is(t, "/index.html/", -404); /* a file is no directory */
    target_is(t, "/index.html/x", -404);
    /* Longer than any path. */
    char *big = malloc(PATH_MAX * 2);
    assert_non_null(big);
    memset(big, 'a', PATH_MAX * 2 - 1);
    big[0] = '/';
    big[PATH_MAX * 2 - 1] = 0;
    target_is(t, big, -404);
    free(big);
}

static void test_open_not_readable(void **state) {
    const struct tree *t = *state;
    if (geteuid() == 0)
        skip(); /* root reads anything */
    put(t, "root/locked.txt", "locked\n");
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/root/locked.txt", t->base);
    assert_int_equal(chmod(p, 0), 0);
    target_is(t, "/locked.txt", -403);
}

/* Percent escapes and query parameters (RFC 3986 2.1; '+' as space in a query). */
static void test_pct_decode(void **state) {
    (void)state;
    char out[16];
    assert_int_equal(http_pct_decode("a%2Fb%20c", 9, out, sizeof(out), false), 5);
    assert_string_equal(out, "a/b c");
    assert_int_equal(http_pct_decode("a+b", 3, out, sizeof(out), false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(http_pct_decode("a+b", 3, out, sizeof(out), true), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(http_pct_decode("%zz", 3, out, sizeof(out), false), -1);
    assert_int_equal(http_pct_decode("%4", 2, out, sizeof(out), false), -1);
    assert_int_equal(http_pct_decode("%00", 3, out, sizeof(out), false), -1);
    assert_int_equal(http_pct_decode("0123456789abcdef", 16, out, sizeof(out), false), -1);
    assert_int_equal(http_pct_decode("", 0, out, sizeof(out), false), 0);
}

static void test_query_param(void **state) {
    (void)state;
    static const char t[] = "/api/v1/clients?user=al%2Bce&limit=10&empty=&flag&limit=20#frag";
    char out[16];
    assert_int_equal(http_query_param(t, strlen(t), "user", out, sizeof(out)), 5);
    assert_string_equal(out, "al+ce");
    assert_int_equal(http_query_param(t, strlen(t), "limit", out, sizeof(out)), 2);
    assert_string_equal(out, "10"); /* the first wins */
    assert_int_equal(http_query_param(t, strlen(t), "empty", out, sizeof(out)), 0);
    assert_int_equal(http_query_param(t, strlen(t), "flag", out, sizeof(out)), 0);
    assert_int_equal(http_query_param(t, strlen(t), "frag", out, sizeof(out)), -1);
    assert_int_equal(http_query_param(t, strlen(t), "lim", out, sizeof(out)), -1);
    assert_int_equal(http_query_param("/p", 2, "a", out, sizeof(out)), -1);
    assert_int_equal(http_query_param("/p?a=%zz", 8, "a", out, sizeof(out)), -2);
    assert_int_equal(http_query_param("/p?a=0123456789abcdefg", 22, "a", out, sizeof(out)), -2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_upgrade),
        cmocka_unit_test(test_request_line_spaces),
        cmocka_unit_test(test_request_line_crlf),
        cmocka_unit_test(test_request_target_origin_form),
        cmocka_unit_test(test_request_method),
        cmocka_unit_test(test_request_version),
        cmocka_unit_test(test_fields_syntax),
        cmocka_unit_test(test_fields_obs_fold),
        cmocka_unit_test(test_fields_control_bytes),
        cmocka_unit_test(test_fields_nul),
        cmocka_unit_test(test_fields_too_many),
        cmocka_unit_test(test_need_more),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_query_param),
    };
    const struct CMUnitTest files[] = {
        cmocka_unit_test(test_open_index),         cmocka_unit_test(test_open_nested),
        cmocka_unit_test(test_open_query_ignored), cmocka_unit_test(test_open_dot_segments),
        cmocka_unit_test(test_open_bad_escapes),   cmocka_unit_test(test_open_symlink_out),
        cmocka_unit_test(test_open_missing),       cmocka_unit_test(test_open_not_readable),
    };
    int failed = cmocka_run_group_tests_name("http", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("http_open_file", files, tree_setup, tree_teardown);
    return failed;
}
