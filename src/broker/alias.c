#include "broker/alias.h"

#include <stdlib.h>
#include <string.h>

struct alias_out *alias_out_new(uint16_t max) {
    struct alias_out *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->topics = calloc(max, sizeof(char *));
    if (!a->topics) {
        free(a);
        return NULL;
    }
    strmap_init(&a->map);
    a->max = max;
    return a;
}

void alias_out_free(struct alias_out *a) {
    if (!a)
        return;
    for (uint16_t i = 0; i < a->used; i++)
        free(a->topics[i]);
    free(a->topics);
    strmap_free(&a->map);
    free(a);
}

uint16_t alias_out_find(const struct alias_out *a, const char *topic, size_t len, bool *fresh) {
    void *v = strmap_get(&a->map, topic, len);
    if (v) {
        *fresh = false;
        return (uint16_t)(uintptr_t)v;
    }
    if (a->used >= a->max || len == 0)
        return 0;
    *fresh = true;
    return (uint16_t)(a->used + 1);
}

int alias_out_commit(struct alias_out *a, const char *topic, size_t len) {
    if (a->used >= a->max)
        return -1;
    char *t = malloc(len + 1);
    if (!t)
        return -1;
    memcpy(t, topic, len);
    t[len] = 0;
    uint16_t alias = (uint16_t)(a->used + 1);
    if (strmap_put(&a->map, t, len, (void *)(uintptr_t)alias) < 0) {
        free(t);
        return -1;
    }
    a->topics[a->used++] = t;
    return 0;
}
