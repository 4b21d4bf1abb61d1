/*
 * The stream chain (stream.h) and its bottom layer, the socket.
 */
#include "transport/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

void stream_free(struct stream *s) {
    while (s) {
        struct stream *lower = s->lower;
        s->ops->destroy(s);
        s = lower;
    }
}

struct stream *stream_find(struct stream *s, const struct stream_ops *ops) {
    for (; s; s = s->lower)
        if (s->ops == ops)
            return s;
    return NULL;
}

int stream_fail(struct stream *s, int err, const char *fmt, ...) {
    if (s->info) {
        char *why = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&why, fmt, ap) < 0)
            why = NULL;
        va_end(ap);
        free(s->info->why);
        s->info->why = why;
    }
    errno = err;
    return -1;
}

void stream_info_clear(struct stream_info *info) {
    free(info->via);
    free(info->identity);
    free(info->why);
    info->via = info->identity = info->why = NULL;
}

void stream_format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t cap) {
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)sa;
        size_t n = len > offsetof(struct sockaddr_un, sun_path)
                       ? strnlen(u->sun_path, (size_t)len - offsetof(struct sockaddr_un, sun_path))
                       : 0;
        if (n)
            snprintf(out, cap, "%.*s", (int)n, u->sun_path);
        else
            snprintf(out, cap, "unix"); /* "%.*s" with n = 0 would print nothing */
    } else {
        snprintf(out, cap, "?");
    }
}

/* ---- the socket ---------------------------------------------------------- */

static ssize_t tcp_read(struct stream *s, void *buf, size_t len) {
    ssize_t r = read(s->fd, buf, len);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && s->info)
        stream_fail(s, errno, "%s", strerror(errno));
    return r;
}

/* sendmsg with MSG_NOSIGNAL, not writev: a peer that closed gives EPIPE,
 * never SIGPIPE, so a program using the client library is not killed by it
 * (the broker ignores the signal anyway). */
static ssize_t tcp_writev(struct stream *s, const struct iovec *iov, int n) {
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    for (;;) {
        ssize_t w = sendmsg(s->fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = writev(s->fd, iov, n);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK && s->info)
            stream_fail(s, errno, "%s", strerror(errno));
        return -1;
    }
}

static int tcp_flush(struct stream *s) {
    (void)s;
    return 0;
}

static unsigned tcp_wants(const struct stream *s) {
    (void)s;
    return 0;
}

static bool tcp_pending(const struct stream *s) {
    (void)s;
    return false;
}

static void tcp_shutdown(struct stream *s) {
    (void)s;
}

static void tcp_destroy(struct stream *s) {
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static void tcp_destroy_embedded(struct stream *s) {
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

const struct stream_ops tcp_stream_embedded_ops = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .flush = tcp_flush,
    .wants = tcp_wants,
    .pending = tcp_pending,
    .shutdown = tcp_shutdown,
    .destroy = tcp_destroy_embedded,
};

const struct stream_ops tcp_stream_ops = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .flush = tcp_flush,
    .wants = tcp_wants,
    .pending = tcp_pending,
    .shutdown = tcp_shutdown,
    .destroy = tcp_destroy,
};

struct stream *tcp_stream_new(int fd, struct stream_info *info) {
    struct stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->ops = &tcp_stream_ops;
    s->info = info;
    s->fd = fd;
    return s;
}

void tcp_stream_init(struct stream *s, int fd, struct stream_info *info) {
    *s = (struct stream){.ops = &tcp_stream_embedded_ops, .info = info, .fd = fd};
}
