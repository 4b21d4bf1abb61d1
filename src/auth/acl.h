/*
 * Mosquitto ACL files:
 *
 *   # comment
 *   topic [read|write|readwrite|deny] TOPIC     rule (readwrite when no access word)
 *   pattern [read|write|readwrite|deny] TOPIC   rule for every client; %u = its user
 *                                               name, %c = its client id
 *   user NAME                                   the `topic` lines after it are NAME's
 *
 * `topic` lines before the first `user` line apply to anonymous clients (no
 * user name) only. Decision for one client, topic and access: if any of its
 * rules with `deny` matches, denied; else if any of its rules grants the
 * access and matches, allowed; else denied. So an empty file denies
 * everything. Wildcards of a rule follow MQTT matching, and a rule starting
 * with a wildcard never matches a topic starting with '$' ($SYS only where a
 * rule names it).
 *
 * A pattern whose %u or %c would insert a '+' or '#' (a user name or client
 * id containing one) grants nothing, so such a name can never widen a rule
 * (the Mosquitto advisory); a `deny` pattern still applies.
 *
 * Subscribing needs read access, checked with the filter taken as a topic
 * name: the rule must cover the whole filter (`topic read a/#` allows
 * subscribing to a/+ but not to #). Every delivery is checked again with
 * the message's real topic.
 *
 * A parsed file is immutable and may be read by several threads at once.
 */
#ifndef HATO_AUTH_ACL_H
#define HATO_AUTH_ACL_H

#include <stdbool.h>
#include <stddef.h>

enum {
    AUTH_ACL_READ = 1,
    AUTH_ACL_WRITE = 2,
    AUTH_ACL_SUBSCRIBE = 4,
};

struct auth_acl;

/* Parse text[0..len); NULL with "NAME:LINE: reason" in err. */
struct auth_acl *auth_acl_parse(const char *text, size_t len, const char *name, char *err,
                                size_t errlen);
struct auth_acl *auth_acl_load(const char *path, char *err, size_t errlen);
void auth_acl_free(struct auth_acl *acl);

/* Number of rules (for the log). */
size_t auth_acl_rules(const struct auth_acl *acl);

/*
 * May this client do `access` (one AUTH_ACL_* bit) on topic[0..tlen)?
 * user NULL = anonymous; client_id NUL-terminated.
 */
bool auth_acl_check(const struct auth_acl *acl, const char *user, const char *client_id,
                    const char *topic, size_t tlen, int access);

/* MQTT topic matching as the ACL uses it: filter (NUL-terminated) against
 * topic[0..tlen), every character of topic taken literally. */
bool auth_acl_match(const char *filter, const char *topic, size_t tlen);

#endif
