/*
 * The broker: listening sockets, workers, signals and shutdown.
 */
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/authpool.h"
#include "broker/privdrop.h"
#include "broker/tls.h"
#include "broker/security.h"
#include "broker/persist.h"
#include "broker/notify.h"
#include "broker/plugin.h"
#include "broker/reload.h"
#include "broker/admin.h"
#include "transport/ws.h"

int worker_init(struct worker *w, struct broker *b, int id);
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
 * Kept until exit (reload.c): connections point to the one they started with.
 */
struct ws_server_opts *broker_ws_opts(struct broker *b, const struct hato_config *cfg,
                                      const struct hato_listener *l) {
    struct ws_server_opts *o = calloc(1, sizeof(*o));
    if (!o || reload_keep(b, o) < 0) {
        free(o);
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

/* Counters of one listener, shared by its sockets (IPv4 and IPv6). */
struct lsock_counts {
    atomic_int nconns; /* first: lsock.nconns is also the allocation */
    atomic_ulong accepted;
};

/* The sockets of one listener being opened, appended to a set. */
struct lsvec {
    struct lsock ***v;
    size_t *n;
    struct lsock_counts *counts; /* shared by the listener's sockets */
    bool owned;                  /* counts handed to the first socket (which frees it) */
};

static int add_lsock(struct broker *b, struct lsvec *vec, int fd, const struct hato_listener *l) {
    struct lsock **n = realloc(*vec->v, (*vec->n + 1) * sizeof(*n));
    if (!n)
        return -1;
    *vec->v = n;
    struct lsock *ls = calloc(1, sizeof(*ls));
    if (ls)
        ls->ios = calloc((size_t)b->nworkers, sizeof(struct ev_io));
    if (!vec->counts && ls)
        vec->counts = calloc(1, sizeof(*vec->counts));
    if (!ls || !ls->ios || !vec->counts) {
        if (ls)
            free(ls->ios);
        free(ls);
        return -1;
    }
    ls->owner = !vec->owned;
    vec->owned = true;
    ls->fd = fd;
    atomic_init(&ls->cfg, l);
    ls->nconns = &vec->counts->nconns;
    ls->accepted = &vec->counts->accepted;
    ls->b = b;
    ls->conf_port = l->port;
    for (int k = 0; k < b->nworkers; k++)
        ls->ios[k].fd = -1;
    (*vec->v)[(*vec->n)++] = ls;
    return 0;
}

static int open_unix(struct broker *b, struct lsvec *vec, const struct hato_listener *l) {
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
    if (add_lsock(b, vec, fd, l) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

static int open_tcp(struct broker *b, struct lsvec *vec, struct hato_listener *l) {
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
        if (add_lsock(b, vec, fd, l) < 0) {
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

/* Open the sockets of listener l (of cfg), appended to (*v, *n); its port is
 * set to the one bound when it was 0. 0, or -1 (logged; what it opened is
 * closed and left out of the set). Main thread. */
int broker_open_listener(struct broker *b, const struct hato_config *cfg, struct hato_listener *l,
                         struct lsock ***v, size_t *n) {
    size_t first = *n;
    struct lsvec vec = {v, n, NULL, false};
    int r = l->unix_path ? open_unix(b, &vec, l) : open_tcp(b, &vec, l);
    for (size_t k = first; r == 0 && k < *n; k++)
        (*v)[k]->metrics = strcmp(l->protocol, "metrics") == 0;
    for (size_t k = first; r == 0 && k < *n; k++)
        (*v)[k]->admin = strcmp(l->protocol, "admin") == 0;
    if (r == 0 && strcmp(l->protocol, "websockets") == 0) {
        struct ws_server_opts *o = broker_ws_opts(b, cfg, l);
        if (!o)
            r = -1;
        for (size_t k = first; o && k < *n; k++)
            atomic_store(&(*v)[k]->ws, o);
    }
    if (r < 0) {
        /* Later sockets first: the owner of the counter goes last. */
        while (*n > first)
            broker_free_lsock((*v)[--*n]);
        if (!vec.owned)
            free(vec.counts);
    }
    return r;
}

/* Close (if still open) and free one listening socket. */
void broker_free_lsock(struct lsock *ls) {
    if (!ls)
        return;
    if (ls->fd >= 0) {
        close(ls->fd);
        const struct hato_listener *l = atomic_load(&ls->cfg);
        if (l->unix_path && !ls->retired)
            unlink(l->unix_path);
    }
    if (ls->owner)
        free(ls->nconns); /* the first member of its struct lsock_counts */
    free(ls->ios);
    free(ls);
}

int broker_init(struct broker *b, struct hato_config *cfg) {
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->started = (int64_t)time(NULL);
    b->subs = sub_tree_new(session_available);
    b->retain = retain_new();
    pthread_mutex_init(&b->ls_lock, NULL);
    b->stats = stats_new();
    if (!b->subs || !b->retain || !b->stats || reload_init(b) < 0)
        return -1;
    /* Certificates, keys, password and ACL files first: a bad file stops
     * start-up before any socket is opened. */
    if (tls_init(b) < 0 || plugin_host_start(b) < 0 || security_init(b) < 0 || admin_init(b) < 0)
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
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (broker_open_listener(b, cfg, &cfg->listeners[i], &b->lsocks, &b->nlsocks) < 0)
            return -1;
    /* The workers watch them from the start (their threads do not run yet). */
    atomic_store(&b->ls_gen, 1);
    for (int k = 0; k < b->nworkers; k++)
        worker_listen_sync(&b->workers[k]);
    return 0;
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

    /* The store writer starts here, with the signals blocked like the workers. */
    if (persist_start(b) < 0) {
        log_error("Error: persistence could not start (see above); stopping.");
        return 1;
    }
    /* Root is dropped (`user`) once the sockets, the store, the log file and
     * the certificates are open, before the threads that serve clients start. */
    if (privdrop_apply(b->cfg) < 0 || authpool_start(b) < 0)
        return 1;
    /* The cluster before the workers serve: its retained messages are in
     * and its deliveries wait in the workers' inboxes. */
    if (cluster_start(b) < 0) {
        log_error("Error: the cluster could not start (see above); stopping.");
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
    bridge_start(b); /* after the workers: a bridge's local side is a connection of theirs */
    atomic_store(&b->serving, true);
    log_notice("hato version %s running (%d worker thread%s).", HATO_VERSION, b->nworkers,
               b->nworkers == 1 ? "" : "s");
    notify_ready(b); /* every listener is open and every worker runs */
    for (;;) {
        /* Between signals: systemd status and watchdog, sockets a reload closes. */
        int sig = notify_wait_signal(b, &set);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP) {
            hato_log_reopen(); /* logrotate's postrotate, even when the new config is bad */
            broker_reload(b);
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
    notify_stopping();
    atomic_store(&b->serving, false);
    log_notice("hato version %s terminating.", HATO_VERSION);
    bridge_stop(b); /* before the workers, which see its local connections close */
    atomic_store(&b->stopping, true);
    for (int i = 0; i < b->nworkers; i++)
        ev_stop(b->workers[i].loop);
    for (int i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i].thread, NULL);
    cluster_stop(b); /* no more deliveries: what it posts after this is freed with the inboxes */
    return 0;
}

void broker_free(struct broker *b) {
    authpool_stop(b); /* its verdicts go to the workers' inboxes */
    cluster_stop(b);  /* also when broker_run returned early */
    /* Commit what the workers left (their last session records) before they go. */
    persist_close(b);
    if (b->workers) {
        for (int i = 0; i < b->nworkers; i++)
            worker_free(&b->workers[i]);
        free(b->workers);
        b->workers = NULL; /* broker_publish_internal refuses from here on */
        b->nworkers = 0;
    }
    /* After the workers: connections they still held point to their socket. */
    for (size_t i = 0; i < b->nlsocks; i++)
        broker_free_lsock(b->lsocks[i]);
    free(b->lsocks);
    b->lsocks = NULL;
    b->nlsocks = 0;
    cluster_free(b); /* after the sessions, whose consumers it held */
    if (b->subs)
        sub_tree_free(b->subs);
    if (b->retain)
        retain_free(b->retain);
    security_free(b);
    admin_free(b);
    plugin_host_stop(b); /* after the workers: nothing calls into a plugin any more */
    tls_free(b);
    reload_free(b); /* retired configs and sockets, after everything that pointed into them */
    pthread_mutex_destroy(&b->ls_lock);
    stats_free(b->stats);
}
