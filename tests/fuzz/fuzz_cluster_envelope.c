/*
 * libFuzzer target for the cluster's message envelope
 * (src/cluster/envelope.c): the input is a NATS message payload from
 * another node (hostile: any bytes). Properties: no crash, views stay inside
 * the input, and an accepted envelope encodes back to exactly the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/envelope.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cl_env e;
    const char *why = NULL;
    if (cl_env_decode(data, size, &e, &why) < 0) {
        CHECK(why != NULL);
        return 0;
    }
    CHECK(e.topic >= data && e.topic + e.topic_len <= data + size);
    CHECK(e.props >= data && e.props + e.props_len <= data + size);
    CHECK(e.payload >= data && e.payload + e.payload_len == data + size);
    CHECK(cl_env_size(&e) == size);
    uint8_t *out = malloc(size);
    CHECK(out != NULL);
    CHECK(cl_env_encode(&e, out, size) == size);
    CHECK(memcmp(out, data, size) == 0);
    free(out);
    return 0;
}
