/*
 * The broker: listening sockets, workers, signals and shutdown.
 */
#include "broker/broker.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef HATO_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "base/log.h"
#include "broker/tls.h"
#include "broker/security.h"
#include "broker/persist.h"
#include "transport/ws.h"

int worker_init(struct worker *w, struct broker *b, int id);
int worker_listen(struct worker *w, struct lsock *ls);
int worker_start(struct worker *w);
void worker_free(struct worker *w);

/* Shared subscriptions prefer members that are connected now. */
static bool session_available(void *owner) {
    struct session *s = owner;
    return atomic_load_explicit(&s->online, memory_order_relaxed);
}

struct worker *broker_owner(struct broker *b, const char *id, size_t len) {
    return &b->workers[strmap_hash(id, len) % (uint64_t)b->nworkers];
}

/*
 * A WebSocket listener's layer settings, pointing into the config (which
 * lives as long as the broker). The frame limit follows max_packet_size:
 * a WebSocket message never needs to be larger than the largest packet.
 */
static struct ws_server_opts *ws_opts_new(const struct hato_config *cfg,
                                          const struct hato_listener *l) {
    struct ws_server_opts *o = calloc(1, sizeof(*o));
    if (!o) {
        log_error("Error: out of memory.");
        return NULL;
    }
    o->http_dir = l->http_dir;
    o->origins = (const char *const *)l->websockets_origins;
    o->norigins = l->n_websockets_origins;
    o->max_header = (size_t)cfg->websockets_headers_size;
    o->max_message = cfg->max_packet_size > 0 ? (size_t)cfg->max_packet_size : 268435460u;
    o->trusted_proxies = (const char *const *)l->websockets_trusted_proxies;
    o->ntrusted = l->n_websockets_trusted_proxies;
    return o;
}

static int add_lsock(struct broker *b, int fd, const struct hato_listener *l) {
    size_t li = (size_t)(l - b->cfg->listeners);
    struct lsock *n = realloc(b->lsocks, (b->nlsocks + 1) * sizeof(*n));
    if (!n)
        return -1;
    b->lsocks = n;
    struct lsock *ls = &b->lsocks[b->nlsocks++];
    memset(ls, 0, sizeof(*ls));
    ls->fd = fd;
    ls->cfg = l;
    ls->nconns = &b->lconns[li];
    ls->accepted = &b->laccepted[li];
    return 0;
}

static int open_unix(struct broker *b, const struct hato_listener *l) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(l->unix_path) >= sizeof(sa.sun_path)) {
        log_error("Error: unix socket path too long: %s", l->unix_path);
        return -1;
    }
    strcpy(sa.sun_path, l->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(l->unix_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1024) < 0) {
        log_error("Error: unable to listen on unix socket %s: %s", l->unix_path, strerror(errno));
        close(fd);
        return -1;
    }
    log_notice("Opening unix listen socket on %s.", l->unix_path);
    return add_lsock(b, fd, l);
}

static int open_tcp(struct broker *b, struct hato_listener *l) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    hints.ai_family = l->socket_domain;
    char port[16];
    snprintf(port, sizeof(port), "%d", l->port);
    struct addrinfo *res = NULL;
    int r = getaddrinfo(l->bind_address, port, &hints, &res);
    if (r != 0) {
        log_error("Error: cannot resolve listener address %s: %s",
                  l->bind_address ? l->bind_address : "*", gai_strerror(r));
        return -1;
    }
    int opened = 0;
    int actual_port = l->port;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (l->bind_interface && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, l->bind_interface,
                                            (socklen_t)strlen(l->bind_interface)) < 0) {
            log_error("Error: cannot bind to interface %s: %s", l->bind_interface, strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        /* An ephemeral port (0) is shared by the IPv4 and IPv6 sockets. */
        if (ai->ai_family == AF_INET)
            ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)actual_port);
        else
            ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = htons((uint16_t)actual_port);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
            log_error("Error: unable to listen on %s port %d: %s",
                      ai->ai_family == AF_INET ? "ipv4" : "ipv6", actual_port, strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        if (actual_port == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            actual_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                        : ((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        log_notice("Opening %s listen socket on port %d.",
                   ai->ai_family == AF_INET ? "ipv4" : "ipv6", actual_port);
        if (add_lsock(b, fd, l) < 0) {
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        opened++;
    }
    freeaddrinfo(res);
    l->port = actual_port;
    if (!opened) {
        log_error("Error: no usable address for listener on port %d.", l->port);
        return -1;
    }
    return 0;
}

int broker_init(struct broker *b, struct hato_config *cfg) {
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->started = (int64_t)time(NULL);
    b->subs = sub_tree_new(session_available);
    b->retain = retain_new();
    b->lconns = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*b->lconns));
    b->laccepted = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*b->laccepted));
    b->stats = stats_new();
    if (!b->subs || !b->retain || !b->lconns || !b->laccepted || !b->stats)
        return -1;
    /* Certificates, keys, password and ACL files first: a bad file stops
     * start-up before any socket is opened. */
    if (tls_init(b) < 0 || security_init(b) < 0)
        return -1;
    /* Then the store: a store that cannot be used stops start-up before any port opens. */
    if (persist_open(b) < 0)
        return -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    b->nworkers = cfg->threads > 0 ? cfg->threads : (ncpu > 0 ? (int)ncpu : 1);
    /* Aligned: each worker's statistics sit on cache lines of their own (broker.h). */
    b->workers = aligned_alloc(_Alignof(struct worker), (size_t)b->nworkers * sizeof(*b->workers));
    if (!b->workers)
        return -1;
    memset(b->workers, 0, (size_t)b->nworkers * sizeof(*b->workers));
    for (int i = 0; i < b->nworkers; i++)
        if (worker_init(&b->workers[i], b, i) < 0)
            return -1;
    /* Everything durable is back before any connection is accepted. */
    if (persist_restore(b) < 0)
        return -1;
    /* Listening sockets open only now: no client can connect to a half-restored broker. */
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct hato_listener *l = &cfg->listeners[i];
        size_t first = b->nlsocks;
        int r = l->unix_path ? open_unix(b, l) : open_tcp(b, l);
        if (r < 0)
            return -1;
        if (strcmp(l->protocol, "websockets") == 0) {
            struct ws_server_opts *o = ws_opts_new(cfg, l);
            if (!o)
                return -1;
            for (size_t k = first; k < b->nlsocks; k++)
                b->lsocks[k].ws = o; /* the first socket of the listener owns it */
        }
    }
    for (size_t i = 0; i < b->nlsocks; i++) {
        b->lsocks[i].ios = calloc((size_t)b->nworkers, sizeof(struct ev_io));
        if (!b->lsocks[i].ios)
            return -1;
        for (int k = 0; k < b->nworkers; k++)
            if (worker_listen(&b->workers[k], &b->lsocks[i]) < 0)
                return -1;
    }
    return 0;
}

static void drop_privileges(const char *user) {
    if (getuid() != 0 || !user || !*user)
        return;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_warn("Warning: user '%s' does not exist; running as root.", user);
        return;
    }
    if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        log_error("Error: cannot change to user '%s': %s", user, strerror(errno));
        exit(1);
    }
    log_info("Running as user '%s'.", user);
}

int broker_run(struct broker *b) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Dropping root privileges (mosquitto's `user`) waits for persistence
     * and TLS files to be opened first; until then hato keeps its uid. */
    (void)drop_privileges;
    /* The store writer starts here, with the signals blocked like the workers. */
    if (persist_start(b) < 0) {
        log_error("Error: persistence could not start (see above); stopping.");
        return 1;
    }
    for (int i = 0; i < b->nworkers; i++) {
        if (worker_start(&b->workers[i]) != 0) {
            log_error("Error: cannot start worker thread: %s", strerror(errno));
            atomic_store(&b->stopping, true);
            for (int k = 0; k < i; k++)
                ev_stop(b->workers[k].loop);
            for (int k = 0; k < i; k++)
                pthread_join(b->workers[k].thread, NULL);
            return 1;
        }
    }
    log_notice("hato version %s running (%d worker thread%s).", HATO_VERSION, b->nworkers,
               b->nworkers == 1 ? "" : "s");
#ifdef HATO_HAVE_SYSTEMD
    sd_notify(0, "READY=1");
#endif
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP) {
            hato_log_reopen(); /* logrotate's postrotate: a new file by the same name */
            log_notice("Reloading certificates, password and ACL files (SIGHUP).");
            tls_reload(b);
            security_reload(b);
#ifdef HATO_HAVE_SYSTEMD
            sd_notify(0, "READY=1");
#endif
        } else if (sig == SIGUSR1) {
            unsigned long in = 0, out = 0, dropped = 0;
            unsigned clients = 0;
            for (int i = 0; i < b->nworkers; i++) {
                in += atomic_load(&b->workers[i].msgs_in);
                out += atomic_load(&b->workers[i].msgs_out);
                dropped += atomic_load(&b->workers[i].dropped);
                clients += atomic_load(&b->workers[i].nclients);
            }
            log_notice("Stats: %u clients, %lu messages in, %lu out, %lu dropped.", clients, in,
                       out, dropped);
        }
    }
#ifdef HATO_HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
#endif
    log_notice("hato version %s terminating.", HATO_VERSION);
    atomic_store(&b->stopping, true);
    for (int i = 0; i < b->nworkers; i++)
        ev_stop(b->workers[i].loop);
    for (int i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i].thread, NULL);
    return 0;
}

void broker_free(struct broker *b) {
    /* Commit what the workers left (their last session records) before they go. */
    persist_close(b);
    for (size_t i = 0; i < b->nlsocks; i++) {
        if (b->lsocks[i].ws && (i == 0 || b->lsocks[i - 1].ws != b->lsocks[i].ws))
            free(b->lsocks[i].ws);
        close(b->lsocks[i].fd);
        if (b->lsocks[i].cfg->unix_path)
            unlink(b->lsocks[i].cfg->unix_path);
        free(b->lsocks[i].ios);
    }
    free(b->lsocks);
    free(b->lconns);
    free(b->laccepted);
    if (b->workers) {
        for (int i = 0; i < b->nworkers; i++)
            worker_free(&b->workers[i]);
        free(b->workers);
        b->workers = NULL; /* broker_publish_internal refuses from here on */
        b->nworkers = 0;
    }
    if (b->subs)
        sub_tree_free(b->subs);
    if (b->retain)
        retain_free(b->retain);
    security_free(b);
    tls_free(b);
    stats_free(b->stats);
}
