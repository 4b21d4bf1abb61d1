/*
 * Mosquitto password files: one `user:hash` per line (hash formats in
 * hash.h). Lines starting with '#' are comments. A blank line is never a
 * user: it is skipped with a warning naming its line. Any other line that is
 * not exactly `user:hash` with a well-formed hash makes the whole file
 * invalid ("FILE:LINE: reason"), so a typo never silently locks a user out
 * or lets one in; the broker then refuses to start, or keeps the previous
 * file on reload. A user name appearing twice is an error too.
 *
 * A loaded file is immutable and may be read by several threads at once.
 */
#ifndef HATO_AUTH_PASSWD_H
#define HATO_AUTH_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

struct auth_passwd;

/* Parse text[0..len); `name` stands for the file in messages. Returns the
 * file, or NULL with "NAME:LINE: reason" in err. Warnings (blank lines) are
 * kept in the result: see auth_passwd_warning. */
struct auth_passwd *auth_passwd_parse(const char *text, size_t len, const char *name, char *err,
                                      size_t errlen);
/* Read and parse a file. NULL with "PATH: reason" or "PATH:LINE: reason". */
struct auth_passwd *auth_passwd_load(const char *path, char *err, size_t errlen);
void auth_passwd_free(struct auth_passwd *pw);

size_t auth_passwd_count(const struct auth_passwd *pw);
bool auth_passwd_has_user(const struct auth_passwd *pw, const char *user, size_t ulen);
/* The i-th warning ("NAME:LINE: text"), or NULL past the end. */
const char *auth_passwd_warning(const struct auth_passwd *pw, size_t i);

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
