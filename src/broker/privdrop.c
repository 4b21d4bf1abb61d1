/*
 * Dropping root (privdrop.h).
 */
#include "broker/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/persist.h"

/* Files hato may create as root: the log file, the store and its lock file. */
enum { PD_LOG, PD_STORE, PD_LOCK, PD_N };

static struct {
    char *path[PD_N];
    bool existed[PD_N];
} survey;

static void survey_clear(void) {
    for (int i = 0; i < PD_N; i++) {
        free(survey.path[i]);
        survey.path[i] = NULL;
    }
}

void privdrop_survey(const struct hato_config *cfg) {
    survey_clear();
    if ((cfg->log_dest & HATO_LOG_DEST_FILE) && cfg->log_file)
        survey.path[PD_LOG] = strdup(cfg->log_file);
    if (cfg->persistence) {
        survey.path[PD_STORE] = persist_store_path(cfg);
        if (survey.path[PD_STORE]) {
            size_t n = strlen(survey.path[PD_STORE]) + 6;
            survey.path[PD_LOCK] = malloc(n);
            if (survey.path[PD_LOCK])
                snprintf(survey.path[PD_LOCK], n, "%s-lock", survey.path[PD_STORE]);
        }
    }
    for (int i = 0; i < PD_N; i++) {
        struct stat sb;
        survey.existed[i] = survey.path[i] && lstat(survey.path[i], &sb) == 0;
    }
}

/* Give the files created since the survey to the user. */
static int chown_created(const struct passwd *pw) {
    for (int i = 0; i < PD_N; i++) {
        struct stat sb;
        if (!survey.path[i] || survey.existed[i] || lstat(survey.path[i], &sb) < 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if (sb.st_uid == pw->pw_uid && sb.st_gid == pw->pw_gid)
            continue;
        if (chown(survey.path[i], pw->pw_uid, pw->pw_gid) < 0) {
            log_error("Error: cannot give %s to user '%s': %s", survey.path[i], pw->pw_name,
                      strerror(errno));
            return -1;
        }
        log_info("Gave %s (created at start-up) to user '%s'.", survey.path[i], pw->pw_name);
    }
    return 0;
}

int privdrop_apply(const struct hato_config *cfg) {
    int rc = 0;
    if (geteuid() != 0)
        goto out; /* not root: nothing to drop */
    const char *user = cfg->user;
    if (!user || !*user || strcmp(user, "root") == 0) {
        log_warn("Warning: running as root (user root): hato should not be run as root.");
        goto out;
    }
    errno = 0;
    struct passwd *pw = getpwnam(user);
    bool fallback = false;
    if (!pw && errno == 0 && strcmp(user, "mosquitto") == 0) {
        /* Mosquitto's default account is missing: as Mosquitto, nobody. */
        log_warn("Warning: user '%s' does not exist; dropping privileges to 'nobody' instead. "
                 "Create the account or set `user`.",
                 user);
        pw = getpwnam("nobody");
        fallback = true;
    }
    if (!pw) {
        log_error("Error: cannot drop privileges to user '%s': %s. Create the account, set "
                  "`user` to an existing one, or `user root` to keep root (not recommended).",
                  fallback ? "nobody" : user, errno ? strerror(errno) : "no such user");
        rc = -1;
        goto out;
    }
    user = pw->pw_name;
    /* nobody is meant to own nothing: files stay root's (the open ones keep working). */
    if (!fallback && chown_created(pw) < 0) {
        rc = -1;
        goto out;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        log_error("Error: cannot change to user '%s': %s", user, strerror(errno));
        rc = -1;
        goto out;
    }
    /* For good: root must not come back. */
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        log_error("Error: user '%s': root privileges could be regained; stopping.", user);
        rc = -1;
        goto out;
    }
    log_notice("Running as user '%s' (uid %u, gid %u).", user, (unsigned)pw->pw_uid,
               (unsigned)pw->pw_gid);
out:
    survey_clear();
    return rc;
}
