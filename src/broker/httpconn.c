/*
 * HTTP answers on broker connections (httpconn.h).
 */
#include "broker/httpconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "transport/http.h"

void httpc_respond(struct conn *c, int status, const char *type, const char *extra,
                   const char *body, size_t blen, bool head_only) {
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                     status, http_reason(status), type, blen, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(head) || conn_write(c, head, (size_t)n) < 0 ||
        (!head_only && blen && conn_write(c, body, blen) < 0)) {
        conn_close(c, "out of memory");
        return;
    }
    c->close_when_sent = true;
    conn_mark_dirty(c);
}

int httpc_keep(struct conn *c, const uint8_t *data, size_t len) {
    if (data != c->in) {
        size_t cap = len < 1024 ? 1024 : len;
        uint8_t *p = malloc(cap);
        if (!p) {
            conn_close(c, "out of memory");
            return -1;
        }
        memcpy(p, data, len);
        free(c->in);
        c->in = p;
        c->incap = cap;
    }
    c->inlen = len;
    return 0;
}

void httpc_drop_input(struct conn *c) {
    free(c->in);
    c->in = NULL;
    c->inlen = c->incap = 0;
}

size_t httpc_path_len(const struct http_head *h) {
    const char *q = memchr(h->target, '?', h->tlen);
    return q ? (size_t)(q - h->target) : h->tlen;
}

bool httpc_method_is(const struct http_head *h, const char *m) {
    size_t n = strlen(m);
    return h->mlen == n && memcmp(h->method, m, n) == 0;
}
