/*
 * libFuzzer target for the topic <-> NATS subject mapping
 * (src/cluster/subject.c). The input is read both ways: as a subject NATS
 * delivered (hostile: any bytes), which, when taken, must map back to
 * exactly itself; and as a topic, whose subject must give it back.
 * Properties: no crash; the mapping is one-to-one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/subject.h"
#include "check.h"

#define P "hato.fz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t topic[CL_SUBJECT_MAX + 1], back[CL_SUBJECT_MAX + 1];
    static char subj[CL_SUBJECT_MAX + 1], again[CL_SUBJECT_MAX + 1];
    if (size > CL_SUBJECT_MAX)
        return 0;
    /* As a subject. */
    memcpy(subj, data, size);
    int n = cl_subject_topic(P, subj, size, topic, sizeof topic);
    if (n >= 0) {
        int m = cl_topic_subject(P, topic, (size_t)n, again, sizeof again);
        CHECK(m == (int)size && memcmp(again, data, size) == 0);
    }
    /* As a topic (a NUL or a wildcard makes it no topic: refused or not). */
    int s = cl_topic_subject(P, data, size, subj, sizeof subj);
    if (s >= 0) {
        int t = cl_subject_topic(P, subj, (size_t)s, back, sizeof back);
        CHECK(t == (int)size && memcmp(back, data, size) == 0);
    }
    char s0[CL_SUBJECT_MAX + 1], s1[CL_SUBJECT_MAX + 1];
    int f = cl_filter_subjects(P, data, size, s0, s1, sizeof s0);
    CHECK(f == 1 || f == 2 || f == CL_SUBJ_INVALID || f == CL_SUBJ_TOO_LONG);
    return 0;
}
