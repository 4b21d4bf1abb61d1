/*
 * The one HTTP/1.1 head parser (RFC 9110/9112), for the WebSocket upgrade,
 * http_dir's static files and, later, /metrics and the admin API. Strict and
 * bounded: the caller gives the bytes received so far and the cap; the
 * parser never reads past them, never allocates, and answers "need more",
 * "done" (the head's length), or the HTTP status to refuse with.
 *
 * Strictness: lines end with CRLF; the request line is METHOD SP TARGET SP
 * HTTP/1.x with a single space each; a target is in origin form ("/...");
 * header names are tokens directly followed by ':'; values have no control
 * bytes but HTAB; obsolete line folding, a NUL anywhere, more than
 * HTTP_MAX_HEADERS fields are refused; HTTP/1.1 needs Host. Views point
 * into the caller's buffer.
 */
#ifndef HATO_TRANSPORT_HTTP_H
#define HATO_TRANSPORT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS 64

struct http_field {
    const char *name, *value;
    size_t nlen, vlen; /* value without surrounding spaces */
};

struct http_head {
    /* request: method and target; response: status and reason */
    const char *method, *target, *reason;
    size_t mlen, tlen, rlen;
    int status;
    int minor; /* HTTP/1.minor */
    struct http_field f[HTTP_MAX_HEADERS];
    size_t nf;
};

/* Parse a request head in buf[0..len). Returns its length with the final
 * CRLF CRLF (> 0), 0 when more bytes are needed, or -STATUS (-400, -431 for
 * more than HTTP_MAX_HEADERS fields, -501 for a method that is no token,
 * -505 for a version other than 1.x). The caller refuses heads over its own
 * byte cap with 431. */
int http_parse_request(const char *buf, size_t len, struct http_head *h);
/* The same for a response head (status line HTTP/1.x SP 3DIGIT SP reason);
 * -1 when malformed. */
int http_parse_response(const char *buf, size_t len, struct http_head *h);

/* The first field of that name (case-insensitive), or NULL; *count (if
 * given) is how many there are. */
const struct http_field *http_field(const struct http_head *h, const char *name, int *count);
/* Does a comma-separated value contain this token (case-insensitive)? */
bool http_has_token(const char *value, size_t vlen, const char *token);

/*
 * http_dir: open the file a request target names under root (a real path,
 * as realpath gives it). Query and fragment are dropped; percent escapes
 * are decoded, and an escaped NUL or '/' is refused, as are "." and ".."
 * segments; a directory serves its index.html; the file's real path must
 * lie inside root, so a symlink pointing out of it is refused. Returns an
 * open descriptor (a regular file; *size, *type set), or -STATUS: -400 bad
 * escape, -403 outside root or not readable, -404 missing.
 */
int http_open_file(const char *root, const char *target, size_t tlen, off_t *size,
                   const char **type);
/* Percent-decode in[0..len) into out (NUL-terminated; '+' becomes a space
 * when plus is set, as in a query string). The decoded length, or -1 for a
 * bad escape, an escaped NUL, or out too small. */
long http_pct_decode(const char *in, size_t len, char *out, size_t outlen, bool plus);
/* The value of query parameter name in a request target ("/p?a=1&b=x%20y"),
 * decoded into out: its length; -1 when absent, -2 when malformed or longer
 * than outlen - 1. The first of several wins. */
long http_query_param(const char *target, size_t tlen, const char *name, char *out, size_t outlen);
/* The Content-Type for a file name, by its extension. */
const char *http_content_type(const char *path);
/* The reason phrase of a status code ("Not Found"). */
const char *http_reason(int status);

#endif
