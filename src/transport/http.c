/*
 * HTTP/1.1 heads and http_dir files. See http.h.
 */
#include "transport/http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Visible ASCII (targets). */
static bool is_vchar(unsigned char c) {
    return c > 0x20 && c < 0x7f;
}

/* The end of the head (index after CRLF CRLF), 0 if not there yet, -1 if a
 * byte can never be part of a head (NUL, a bare CR or LF). */
static long head_end(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0)
            return -1;
        if (c == '\n' && (i == 0 || buf[i - 1] != '\r'))
            return -1; /* a bare LF */
        if (c == '\r' && i + 1 < len && buf[i + 1] != '\n')
            return -1; /* a bare CR */
        if (c == '\n' && i >= 3 && buf[i - 2] == '\n')
            return (long)i + 1;
    }
    return 0;
}

/* Fields from p (after the start line) up to the empty line at end. */
static int parse_fields(const char *p, const char *end, struct http_head *h) {
    h->nf = 0;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol)
            return -400;
        if (eol == p)
            return 0; /* the empty line */
        if (*p == ' ' || *p == '\t')
            return -400; /* obsolete line folding */
        const char *colon = p;
        while (colon < eol && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == p || colon == eol || *colon != ':')
            return -400;
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++) {
            unsigned char c = (unsigned char)*q;
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return -400;
        }
        if (h->nf == HTTP_MAX_HEADERS)
            return -431;
        h->f[h->nf++] = (struct http_field){
            .name = p, .nlen = (size_t)(colon - p), .value = v, .vlen = (size_t)(ve - v)};
        p = eol + 2;
    }
    return -400;
}

/* "HTTP/1.x" at p (8 bytes). 1 ok (minor set), 0 other version, -1 malformed. */
static int parse_version(const char *p, size_t n, int *minor) {
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
        p[7] < '0' || p[7] > '9')
        return -1;
    if (p[5] != '1')
        return 0;
    *minor = p[7] - '0';
    return 1;
}

int http_parse_request(const char *buf, size_t len, struct http_head *h) {
    memset(h, 0, sizeof(*h));
    long end = head_end(buf, len);
    if (end < 0)
        return -400;
    if (end == 0) {
        /* Refuse early what can never become a request line. */
        for (size_t i = 0; i < len && buf[i] != ' ' && buf[i] != '\r'; i++)
            if (!is_tchar((unsigned char)buf[i]))
                return -400;
        return 0;
    }
    const char *p = buf, *stop = buf + end;
    const char *eol = memchr(p, '\r', (size_t)(stop - p));
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p)
        return -400;
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q))
            return -501;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
    if (!sp2 || sp2 == t)
        return -400;
    for (const char *q = t; q < sp2; q++)
        if (!is_vchar((unsigned char)*q))
            return -400;
    if (*t != '/')
        return -400; /* origin form only */
    int v = parse_version(sp2 + 1, (size_t)(eol - sp2 - 1), &h->minor);
    if (v < 0)
        return -400;
    if (v == 0)
        return -505;
    h->method = p;
    h->mlen = (size_t)(sp1 - p);
    h->target = t;
    h->tlen = (size_t)(sp2 - t);
    int r = parse_fields(eol + 2, stop, h);
    if (r < 0)
        return r;
    int hosts = 0;
    http_field(h, "Host", &hosts);
    if ((h->minor >= 1 && hosts == 0) || hosts > 1)
        return -400;
    return (int)end;
}

int http_parse_response(const char *buf, size_t len, struct http_head *h) {
    memset(h, 0, sizeof(*h));
    long end = head_end(buf, len);
    if (end <= 0)
        return end < 0 ? -1 : 0;
    const char *p = buf, *stop = buf + end;
    const char *eol = memchr(p, '\r', (size_t)(stop - p));
    if (eol - p < 12 || p[8] != ' ' || parse_version(p, 8, &h->minor) != 1)
        return -1;
    const char *s = p + 9;
    if (s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
        (s + 3 < eol && s[3] != ' '))
        return -1;
    h->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    h->reason = s + 3 < eol ? s + 4 : eol;
    h->rlen = (size_t)(eol - h->reason);
    if (parse_fields(eol + 2, stop, h) < 0)
        return -1;
    return (int)end;
}

const struct http_field *http_field(const struct http_head *h, const char *name, int *count) {
    size_t n = strlen(name);
    const struct http_field *first = NULL;
    int c = 0;
    for (size_t i = 0; i < h->nf; i++)
        if (h->f[i].nlen == n && strncasecmp(h->f[i].name, name, n) == 0) {
            if (!first)
                first = &h->f[i];
            c++;
        }
    if (count)
        *count = c;
    return first;
}

bool http_has_token(const char *v, size_t vlen, const char *token) {
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

/* ---- files ---------------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long http_pct_decode(const char *in, size_t len, char *out, size_t outlen, bool plus) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            if (c == 0)
                return -1;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (n + 1 >= outlen)
            return -1;
        out[n++] = (char)c;
    }
    if (outlen)
        out[n] = 0;
    return outlen ? (long)n : -1;
}

long http_query_param(const char *target, size_t tlen, const char *name, char *out, size_t outlen) {
    const char *q = memchr(target, '?', tlen);
    if (!q)
        return -1;
    const char *end = memchr(q, '#', tlen - (size_t)(q - target));
    if (!end)
        end = target + tlen;
    size_t nlen = strlen(name);
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : e;
            long r = http_pct_decode(v, (size_t)(e - v), out, outlen, true);
            return r < 0 ? -2 : r;
        }
        p = amp ? amp + 1 : end;
    }
    return -1;
}

const char *http_content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".svg", "image/svg+xml"},
        {".txt", "text/plain; charset=utf-8"},
        {".ico", "image/x-icon"},
        {".wasm", "application/wasm"},
        {".map", "application/json"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

int http_open_file(const char *root, const char *target, size_t tlen, off_t *size,
                   const char **type) {
    char rel[PATH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < tlen && target[i] != '?' && target[i] != '#'; i++) {
        int c = (unsigned char)target[i];
        if (c == '%') {
            int hi = i + 2 < tlen ? hexval(target[i + 1]) : -1;
            int lo = i + 2 < tlen ? hexval(target[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -400;
            c = hi * 16 + lo;
            if (c == 0 || c == '/')
                return -400; /* an escaped NUL or slash never names a file */
            i += 2;
        }
        if (n + 1 >= sizeof(rel))
            return -404;
        rel[n++] = (char)c;
    }
    rel[n] = 0;
    /* No "." or ".." segment, wherever it is. */
    for (char *seg = rel; seg;) {
        char *next = strchr(seg, '/');
        size_t sl = next ? (size_t)(next - seg) : strlen(seg);
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return -403;
        seg = next ? next + 1 : NULL;
    }
    char path[PATH_MAX];
    int pl = snprintf(path, sizeof(path), "%s%s%s", root, rel,
                      n && rel[n - 1] == '/' ? "index.html" : "");
    if (pl < 0 || (size_t)pl >= sizeof(path))
        return -404;
    char real[PATH_MAX];
    if (!realpath(path, real))
        return errno == EACCES ? -403 : -404;
    struct stat st;
    if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* A directory without the trailing slash: its index.html. */
        size_t rl = strlen(real);
        if (rl + sizeof("/index.html") > sizeof(real))
            return -404;
        memcpy(real + rl, "/index.html", sizeof("/index.html"));
        char again[PATH_MAX];
        if (!realpath(real, again))
            return -404;
        memcpy(real, again, strlen(again) + 1);
    }
    size_t rootlen = strlen(root);
    if (strncmp(real, root, rootlen) != 0 || (real[rootlen] != '/' && rootlen > 1))
        return -403; /* a symlink out of http_dir */
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? -404 : -403;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -404;
    }
    *size = st.st_size;
    *type = http_content_type(real);
    return fd;
}

const char *http_reason(int status) {
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 302:
        return "Found";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}
