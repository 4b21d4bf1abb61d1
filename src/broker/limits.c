#include "broker/limits.h"

#include "broker/broker.h"
#include "broker/msg.h"

bool limits_conn_admit(struct broker *b) {
    int max = broker_config(b)->global_max_connections;
    long n = atomic_fetch_add_explicit(&b->nconns_all, 1, memory_order_relaxed) + 1;
    if (max > 0 && n > max) {
        atomic_fetch_sub_explicit(&b->nconns_all, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void limits_conn_gone(struct broker *b) {
    atomic_fetch_sub_explicit(&b->nconns_all, 1, memory_order_relaxed);
}

long limits_conns(const struct broker *b) {
    return atomic_load_explicit(&((struct broker *)b)->nconns_all, memory_order_relaxed);
}

void limits_session_add(struct broker *b) {
    atomic_fetch_add_explicit(&b->nsessions_all, 1, memory_order_relaxed);
}

void limits_session_gone(struct broker *b) {
    atomic_fetch_sub_explicit(&b->nsessions_all, 1, memory_order_relaxed);
}

long limits_sessions(const struct broker *b) {
    return atomic_load_explicit(&((struct broker *)b)->nsessions_all, memory_order_relaxed);
}

bool limits_session_reserve(struct broker *b) {
    int max = broker_config(b)->global_max_clients;
    long n = atomic_load_explicit(&b->nsessions_all, memory_order_relaxed);
    do {
        if (max > 0 && n >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&b->nsessions_all, &n, n + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void limits_session_unreserve(struct broker *b) {
    limits_session_gone(b);
}

int64_t limits_memory_used(const struct broker *b) {
    long long other_count = 0, other_bytes = 0;
    msg_tally_other(&other_count, &other_bytes);
    int64_t sum = other_bytes;
    for (int i = 0; i < b->nworkers; i++)
        sum += atomic_load_explicit(&b->workers[i].sc.live_bytes, memory_order_relaxed);
    return sum;
}

bool limits_memory_room(const struct broker *b, size_t bytes) {
    int64_t max = broker_config(b)->memory_limit;
    if (max <= 0)
        return true;
    return limits_memory_used(b) + (int64_t)bytes <= max;
}
