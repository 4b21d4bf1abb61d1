/*
 * hato-passwd: manage password files for hato (and Mosquitto), with the
 * options of mosquitto_passwd.
 *
 *   hato-passwd [-H hash] [-I iterations] [-c | -D] passwordfile username
 *   hato-passwd [-H hash] [-I iterations] [-c] -b passwordfile username password
 *   hato-passwd [-H hash] [-I iterations] -U passwordfile
 *
 * The file is rewritten atomically (a temporary file in the same directory,
 * fsync, rename) with mode 0600; other lines are kept as they are. A
 * password is never printed. Passwords are read twice without echo from the
 * terminal, or one line each from standard input when it is not a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth/hash.h"
#include "auth/passwd.h"

#define MAX_PASSWORD 65535
#define MAX_FILE (64u << 20)

static void usage(FILE *f) {
    fprintf(f,
            "hato-passwd is a tool for managing password files for hato (and mosquitto).\n\n"
            "Usage: hato-passwd [-H sha512-pbkdf2 | -H sha512 | -H argon2id] [-I iterations] "
            "[-c | -D] passwordfile username\n"
            "       hato-passwd [-H hash] [-I iterations] [-c] -b passwordfile username "
            "password\n"
            "       hato-passwd [-H hash] [-I iterations] -U passwordfile\n"
            " -b : batch mode: the password is taken from the command line (unsafe: other\n"
            "      users may see it in the process list and it stays in shell history).\n"
            " -c : create a new password file, overwriting an existing one.\n"
            " -D : delete the user rather than adding or updating its password.\n"
            " -H : hash: sha512-pbkdf2 (default, $7$), sha512 ($6$, Mosquitto 1.x), argon2id.\n"
            " -I : PBKDF2 iterations (default %d) or Argon2 passes (default %d).\n"
            " -U : convert a plain-text file (user:password lines) to hashes.\n\n"
            "See hato-passwd(1).\n",
            AUTH_PBKDF2_ITERATIONS, AUTH_ARGON2_T);
}

/* ---- the file as lines ------------------------------------------------------ */

struct lines {
    char **v;
    size_t n;
};

static int lines_push(struct lines *l, char *s) {
    char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v)
        return -1;
    l->v = v;
    l->v[l->n++] = s;
    return 0;
}

static void lines_free(struct lines *l) {
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]) {
            memset(l->v[i], 0, strlen(l->v[i]));
            free(l->v[i]);
        }
    }
    free(l->v);
}

static int lines_read(const char *path, struct lines *l) {
    size_t len;
    char *text = auth_read_file(path, MAX_FILE, &len);
    if (!text)
        return -1;
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        char *nl = memchr(text + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (text + off)) : len - off;
        char *s = strndup(text + off, n);
        if (!s || lines_push(l, s) < 0) {
            free(s);
            rc = -1;
            errno = ENOMEM;
            break;
        }
        off += n + (nl ? 1 : 0);
    }
    memset(text, 0, len);
    free(text);
    return rc;
}

/* Is line a user line for user (`user:...`)? */
static bool line_is_user(const char *line, const char *user) {
    size_t ul = strlen(user);
    return line[0] != '#' && strncmp(line, user, ul) == 0 && line[ul] == ':';
}

/*
 * Write lines to path atomically with mode 0600. An existing file keeps its
 * owner and group (root updating the broker's file must not make it
 * unreadable for the broker), and a symbolic link keeps pointing at the
 * file it names, which is the one replaced.
 */
static int lines_write(const char *given, const struct lines *l) {
    char *real = realpath(given, NULL);
    const char *path = real ? real : given;
    struct stat old;
    bool existed = stat(path, &old) == 0;
    char *d = strdup(path), *b = strdup(path);
    if (!d || !b) {
        free(d);
        free(b);
        free(real);
        fprintf(stderr, "Error: out of memory.\n");
        return -1;
    }
    size_t tn = strlen(path) + 32;
    char *tmp = malloc(tn);
    if (!tmp) {
        free(d);
        free(b);
        free(real);
        fprintf(stderr, "Error: out of memory.\n");
        return -1;
    }
    snprintf(tmp, tn, "%s/.%s.XXXXXX", dirname(d), basename(b));
    free(d);
    free(b);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "Error: cannot create a temporary file next to %s: %s\n", path,
                strerror(errno));
        free(tmp);
        free(real);
        return -1;
    }
    fchmod(fd, 0600);
    if (existed && (old.st_uid != geteuid() || old.st_gid != getegid()) &&
        fchown(fd, old.st_uid, old.st_gid) != 0)
        fprintf(stderr, "Warning: cannot keep the owner of %s: %s\n", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    int ok = f != NULL;
    for (size_t i = 0; ok && i < l->n; i++)
        if (l->v[i] && fprintf(f, "%s\n", l->v[i]) < 0)
            ok = 0;
    if (ok && fflush(f) != 0)
        ok = 0;
    if (ok && fsync(fd) != 0)
        ok = 0;
    int e = errno;
    if (f)
        fclose(f);
    else
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        fprintf(stderr, "Error: cannot write %s: %s\n", path, strerror(e));
        unlink(tmp);
        free(tmp);
        free(real);
        return -1;
    }
    free(tmp);
    free(real);
    return 0;
}

/* ---- passwords ------------------------------------------------------------------ */

/* Read one line (without the newline) from f into buf; -1 at EOF. */
static int read_line(FILE *f, char *buf, size_t cap) {
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap)
            return -2;
        buf[n++] = (char)c;
    }
    if (c == EOF && n == 0)
        return -1;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = 0;
    return 0;
}

static int prompt(FILE *in, bool tty, const char *text, char *buf, size_t cap) {
    struct termios old, quiet;
    fputs(text, stderr);
    fflush(stderr);
    if (tty) {
        tcgetattr(fileno(in), &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(in), TCSAFLUSH, &quiet);
    }
    int r = read_line(in, buf, cap);
    if (tty) {
        tcsetattr(fileno(in), TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (r == -2) {
        fprintf(stderr, "Error: password too long.\n");
        return -1;
    }
    if (r < 0) {
        fprintf(stderr, "Error: no password given.\n");
        return -1;
    }
    return 0;
}

static char *ask_password(void) {
    static char a[MAX_PASSWORD + 2], b[MAX_PASSWORD + 2];
    FILE *in = stdin;
    bool tty = isatty(STDIN_FILENO);
    FILE *ttyf = NULL;
    if (tty && (ttyf = fopen("/dev/tty", "r+")) != NULL)
        in = ttyf;
    char *res = NULL;
    if (prompt(in, tty, "Password: ", a, sizeof(a)) == 0 &&
        prompt(in, tty, "Reenter password: ", b, sizeof(b)) == 0) {
        if (strcmp(a, b) != 0)
            fprintf(stderr, "Error: Passwords do not match.\n");
        else if (!(res = strdup(a)))
            fprintf(stderr, "Error: out of memory.\n");
    }
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    if (ttyf)
        fclose(ttyf);
    return res;
}

static int check_user(const char *u) {
    if (!*u) {
        fprintf(stderr, "Error: empty user name.\n");
        return -1;
    }
    if (strlen(u) > 65535) {
        fprintf(stderr, "Error: user name too long.\n");
        return -1;
    }
    for (const char *p = u; *p; p++) {
        if (*p == ':') {
            fprintf(stderr, "Error: user name must not contain the ':' character.\n");
            return -1;
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            fprintf(stderr, "Error: user name must not contain control characters.\n");
            return -1;
        }
    }
    return 0;
}

static char *make_line(const char *user, const char *pw, enum auth_hash_type type,
                       unsigned iterations) {
    char hash[AUTH_HASH_MAX];
    if (auth_hash_make(type, iterations, pw, strlen(pw), hash, sizeof(hash)) < 0) {
        fprintf(stderr, "Error: cannot hash the password.\n");
        return NULL;
    }
    size_t n = strlen(user) + 1 + strlen(hash) + 1;
    char *line = malloc(n);
    if (line)
        snprintf(line, n, "%s:%s", user, hash);
    return line;
}

/* -U: every user:password line becomes user:hash. */
static int upgrade(const char *path, enum auth_hash_type type, unsigned iterations) {
    struct lines l = {0};
    if (lines_read(path, &l) < 0) {
        fprintf(stderr, "Error: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < l.n && !rc; i++) {
        char *s = l.v[i];
        size_t n = strlen(s);
        if (n && s[n - 1] == '\r')
            s[--n] = 0;
        if (!*s || *s == '#')
            continue;
        char *colon = strchr(s, ':');
        if (!colon || colon == s || !colon[1]) {
            fprintf(stderr, "Error: %s:%zu: not 'user:password'; nothing changed.\n", path, i + 1);
            rc = 1;
            break;
        }
        if (auth_hash_check_format(colon + 1, NULL) == 0) {
            fprintf(stderr,
                    "Error: %s:%zu: already holds a password hash; -U expects a plain-text file. "
                    "Nothing changed.\n",
                    path, i + 1);
            rc = 1;
            break;
        }
        *colon = 0;
        char *line = make_line(s, colon + 1, type, iterations);
        if (!line) {
            rc = 1;
            break;
        }
        memset(colon + 1, 0, strlen(colon + 1));
        free(l.v[i]);
        l.v[i] = line;
    }
    if (!rc && lines_write(path, &l) < 0)
        rc = 1;
    lines_free(&l);
    return rc;
}

int main(int argc, char **argv) {
    bool create = false, batch = false, del = false, upg = false;
    enum auth_hash_type type = AUTH_HASH_PBKDF2;
    unsigned iterations = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c"))
            create = true;
        else if (!strcmp(a, "-b"))
            batch = true;
        else if (!strcmp(a, "-D"))
            del = true;
        else if (!strcmp(a, "-U"))
            upg = true;
        else if (!strcmp(a, "-H") && i + 1 < argc) {
            const char *h = argv[++i];
            if (!strcmp(h, "sha512-pbkdf2"))
                type = AUTH_HASH_PBKDF2;
            else if (!strcmp(h, "sha512"))
                type = AUTH_HASH_SHA512;
            else if (!strcmp(h, "argon2id"))
                type = AUTH_HASH_ARGON2ID;
            else {
                fprintf(stderr, "Error: unknown hash '%s' (sha512-pbkdf2, sha512, argon2id).\n", h);
                return 1;
            }
        } else if (!strcmp(a, "-I") && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (errno || *end || v < 1 || v > AUTH_PBKDF2_MAX_ITERATIONS) {
                fprintf(stderr, "Error: -I needs a number from 1 to %d.\n",
                        AUTH_PBKDF2_MAX_ITERATIONS);
                return 1;
            }
            iterations = (unsigned)v;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "Error: unknown option %s.\n\n", a);
            usage(stderr);
            return 1;
        }
    }
    if (iterations && type == AUTH_HASH_SHA512) {
        fprintf(stderr, "Error: -I does not apply to -H sha512.\n");
        return 1;
    }
    if (iterations && type == AUTH_HASH_ARGON2ID && iterations > 64) {
        fprintf(stderr, "Error: -I with argon2id: 1 to 64 passes.\n");
        return 1;
    }
    int left = argc - i;
    if ((create && del) || (upg && (create || del || batch))) {
        fprintf(stderr, "Error: -c, -D and -U cannot be combined (nor -U with -b).\n");
        return 1;
    }
    if (upg) {
        if (left != 1) {
            usage(stderr);
            return 1;
        }
        return upgrade(argv[i], type, iterations);
    }
    if (left != (batch && !del ? 3 : 2)) {
        usage(stderr);
        return 1;
    }
    const char *path = argv[i], *user = argv[i + 1];
    if (check_user(user) < 0)
        return 1;

    struct lines l = {0};
    if (!create) {
        if (lines_read(path, &l) < 0) {
            if (errno == ENOENT)
                fprintf(stderr, "Error: %s does not exist; use -c to create a new password file.\n",
                        path);
            else
                fprintf(stderr, "Error: cannot read %s: %s\n", path, strerror(errno));
            lines_free(&l);
            return 1;
        }
    }
    int rc = 0;
    if (del) {
        bool found = false;
        for (size_t k = 0; k < l.n; k++) {
            if (l.v[k] && line_is_user(l.v[k], user)) {
                free(l.v[k]);
                l.v[k] = NULL;
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "Error: user %s not found in %s.\n", user, path);
            rc = 1;
        }
    } else {
        char *pw;
        if (batch) {
            fprintf(stderr, "Warning: -b puts the password on the command line, where other "
                            "users of this machine can see it (process list, shell history).\n");
            pw = strdup(argv[i + 2]);
            memset(argv[i + 2], 0, strlen(argv[i + 2]));
        } else {
            pw = ask_password();
            if (!pw)
                rc = 1;
        }
        if (pw && !*pw) {
            fprintf(stderr, "Error: empty password.\n");
            rc = 1;
        } else if (pw && strlen(pw) > MAX_PASSWORD) {
            fprintf(stderr, "Error: password too long.\n");
            rc = 1;
        }
        char *line = !rc && pw ? make_line(user, pw, type, iterations) : NULL;
        if (pw) {
            memset(pw, 0, strlen(pw));
            free(pw);
        }
        if (!rc && !line)
            rc = 1;
        if (!rc) {
            bool replaced = false;
            for (size_t k = 0; k < l.n; k++) {
                if (l.v[k] && line_is_user(l.v[k], user)) {
                    free(l.v[k]);
                    l.v[k] = replaced ? NULL : line; /* duplicates collapse into one */
                    replaced = true;
                }
            }
            if (!replaced && lines_push(&l, line) < 0) {
                free(line);
                fprintf(stderr, "Error: out of memory.\n");
                rc = 1;
            }
        }
    }
    if (!rc && lines_write(path, &l) < 0)
        rc = 1;
    lines_free(&l);
    return rc;
}
