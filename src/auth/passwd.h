/*
 * Mosquitto password files: one `user:hash` per line (hash formats in
 * hash.h). Lines starting with '#' are comments. A blank line or any line
 * that is not exactly `user:hash` with a well-formed hash is never a user:
 * it is skipped and reported with its line number ("NAME:LINE: reason"),
 * blank lines as warnings, malformed ones as errors. The rest of the file
 * is used, as Mosquitto does, so a file that works with Mosquitto works
 * with hato. A user name appearing twice: the first line counts.
 *
 * A loaded file is immutable and may be read by several threads at once.
 */
#ifndef HATO_AUTH_PASSWD_H
#define HATO_AUTH_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

struct auth_passwd;

/* Parse text[0..len); `name` stands for the file in messages. Returns the
 * file (NULL only when out of memory, with the reason in err). Skipped
 * lines are reported through auth_passwd_problem. */
struct auth_passwd *auth_passwd_parse(const char *text, size_t len, const char *name, char *err,
                                      size_t errlen);
/* Read and parse a file. NULL with "PATH: reason" or "PATH:LINE: reason". */
struct auth_passwd *auth_passwd_load(const char *path, char *err, size_t errlen);
void auth_passwd_free(struct auth_passwd *pw);

size_t auth_passwd_count(const struct auth_passwd *pw);
bool auth_passwd_has_user(const struct auth_passwd *pw, const char *user, size_t ulen);
/* The i-th skipped line ("NAME:LINE: text"), or NULL past the end; *error
 * (may be NULL) tells a malformed line from a blank one. The first 100 are kept. */
const char *auth_passwd_problem(const struct auth_passwd *pw, size_t i, bool *error);

/*
 * True when user exists and the password matches. An unknown user costs a
 * verification too (against a fixed dummy hash), so response time does not
 * reveal which user names exist.
 */
bool auth_passwd_check(const struct auth_passwd *pw, const char *user, size_t ulen,
                       const char *password, size_t plen);

/* Read a whole file (at most max bytes) into a NUL-terminated heap buffer.
 * Returns it, or NULL with errno set (EFBIG when too large). */
char *auth_read_file(const char *path, size_t max, size_t *len);

#endif
