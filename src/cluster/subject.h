/*
 * MQTT topics and filters as NATS subjects, for clustering over NATS
 * (docs/internals/cluster-subject.md). Pure functions: no NATS library, no
 * broker.
 *
 * A topic becomes PREFIX.m.L1.L2... with one token per level; a topic whose
 * first level begins with '$' goes to PREFIX.s.L1... instead, so the leading
 * wildcards of a filter (which never match '$' topics, MQTT-4.7.2-1) are
 * subscribed under PREFIX.m only. In a token, every byte other than A-Z a-z
 * 0-9 '-' '_' is written =XX (upper-case hex); an empty level is the token
 * "=", which no level can otherwise give. Such tokens are also valid
 * JetStream key-value keys. The mapping is one-to-one:
 * cl_subject_topic gives back exactly the topic.
 *
 * A filter becomes one subject, '+' as '*'; a final '#' as '>' and, since
 * MQTT's "a/#" also matches "a", a second subject for the parent level
 * (a lone '#' needs none: every topic has a level).
 */
#ifndef HATO_CLUSTER_SUBJECT_H
#define HATO_CLUSTER_SUBJECT_H

#include <stddef.h>
#include <stdint.h>

/* Longest subject made (without the NUL). NATS servers refuse protocol
 * lines over max_control_line (4096 by default), and a subject travels in
 * PUB and MSG lines with a reply subject and sizes: half of it is kept. */
#define CL_SUBJECT_MAX 2048

enum cl_subject_err {
    CL_SUBJ_TOO_LONG = -1, /* over CL_SUBJECT_MAX or the caller's cap */
    CL_SUBJ_INVALID = -2,  /* not a topic/filter, or not one of our subjects */
};

/*
 * The prefix of a cluster: "hato." and the escaped name (one token), NUL
 * terminated in out[0..cap). Returns its length or a cl_subject_err.
 */
int cl_subject_prefix(const char *cluster_name, char *out, size_t cap);

/*
 * Topic name -> subject, NUL terminated in out[0..cap). Returns the length
 * or a cl_subject_err (a wildcard in the topic is CL_SUBJ_INVALID).
 */
int cl_topic_subject(const char *prefix, const uint8_t *topic, size_t len, char *out, size_t cap);

/*
 * Topic filter (no $share/ part) -> the subjects that together match what
 * it matches: out0, and out1 when the filter ends in "/#". Returns how many
 * (1 or 2) or a cl_subject_err.
 */
int cl_filter_subjects(const char *prefix, const uint8_t *filter, size_t len, char *out0,
                       char *out1, size_t cap);

/*
 * Subject (from a message NATS delivered) -> topic, in out[0..cap) (not NUL
 * terminated). Returns the topic's length, or CL_SUBJ_INVALID for a subject
 * no topic maps to (another prefix, a bad escape, a wildcard).
 */
int cl_subject_topic(const char *prefix, const char *subject, size_t len, uint8_t *out, size_t cap);

#endif
