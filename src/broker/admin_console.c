/*
 * The web console's files (admin_internal.h, docs/console.md): GET / and
 * GET /console redirect to /console/; GET /console/PATH serves PATH from
 * admin_console_dir (default HATO_CONSOLE_DIR, the installed console)
 * through transport/http.c's http_open_file, which refuses "..", escaped
 * '/' and symlinks out of the directory. The files need no login (they hold
 * no data; the API they call does). Every answer carries a Content-Security-
 * Policy that allows only this origin's scripts and styles.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/admin_internal.h"
#include "broker/httpconn.h"
#include "config/config.h"

#ifndef HATO_CONSOLE_DIR
#define HATO_CONSOLE_DIR "/usr/share/hato/console"
#endif

#define CONSOLE_FILE_MAX (2L * 1024 * 1024) /* the console's files are a few KiB */
#define CONSOLE_PREFIX "/console"

#define CONSOLE_HEADERS                                                                            \
    "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; "                   \
    "img-src 'self' data:; frame-ancestors 'none'\r\n"                                             \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "Referrer-Policy: no-referrer\r\n"

static const char *console_dir(const struct hato_config *cfg) {
    return cfg->admin_console_dir ? cfg->admin_console_dir : HATO_CONSOLE_DIR;
}

void admin_console_check(const struct hato_config *cfg) {
    char root[PATH_MAX];
    if (!realpath(console_dir(cfg), root))
        log_warn("Warning: admin console directory %s: %s; /console/ answers 404 (set "
                 "admin_console_dir).",
                 console_dir(cfg), strerror(errno));
}

static void redirect(struct admin_req *r) {
    httpc_respond(r->c, 302, "text/plain", "Location: " CONSOLE_PREFIX "/\r\n" CONSOLE_HEADERS,
                  "see /console/\n", 14, httpc_method_is(r->h, "HEAD"));
}

static void console_error(struct admin_req *r, int status, const char *why) {
    const char *shown = why;
    log_info("Admin console request %.*s from %s on port %d: %d (%s).",
             (int)(r->h->tlen > 100 ? 100 : r->h->tlen), r->h->target, r->c->si.peer,
             r->c->lcfg->port, status, why);
    admin_respond_error(r->c, status, CONSOLE_HEADERS, shown);
}

/* The file named by the target after "/console" ("/" serves index.html). */
static void serve(struct admin_req *r) {
    const struct hato_config *cfg = broker_config(r->c->w->b);
    char root[PATH_MAX];
    if (!realpath(console_dir(cfg), root)) {
        console_error(r, 404, "the console is not installed (admin_console_dir)");
        return;
    }
    const size_t pl = sizeof(CONSOLE_PREFIX) - 1;
    off_t size = 0;
    const char *type = NULL;
    int fd = http_open_file(root, r->h->target + pl, r->h->tlen - pl, &size, &type);
    if (fd < 0) {
        console_error(r, -fd, -fd == 404 ? "no such file" : http_reason(-fd));
        return;
    }
    if (size > CONSOLE_FILE_MAX) {
        close(fd);
        console_error(r, 500, "file too large for the console");
        return;
    }
    char *buf = malloc(size ? (size_t)size : 1);
    size_t got = 0;
    while (buf && got < (size_t)size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)size) {
        free(buf);
        console_error(r, 500, buf ? "file changed while read" : "out of memory");
        return;
    }
    httpc_respond(r->c, 200, type, CONSOLE_HEADERS, buf, got, httpc_method_is(r->h, "HEAD"));
    free(buf);
}

const struct admin_route admin_console_routes[] = {
    {"/", "GET", redirect, ADMIN_R_OPEN},
    {"/", "HEAD", redirect, ADMIN_R_OPEN | ADMIN_R_READ},
    {CONSOLE_PREFIX, "GET", redirect, ADMIN_R_OPEN},
    {CONSOLE_PREFIX, "HEAD", redirect, ADMIN_R_OPEN | ADMIN_R_READ},
    {CONSOLE_PREFIX "/", "GET", serve, ADMIN_R_OPEN},
    {CONSOLE_PREFIX "/", "HEAD", serve, ADMIN_R_OPEN | ADMIN_R_READ},
    {CONSOLE_PREFIX, "GET", serve, ADMIN_R_OPEN | ADMIN_R_PREFIX},
    {CONSOLE_PREFIX, "HEAD", serve, ADMIN_R_OPEN | ADMIN_R_READ | ADMIN_R_PREFIX},
    {NULL, NULL, NULL, 0},
};
