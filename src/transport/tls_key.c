/*
 * tls_hex_key (tls.h): the hex PSK decoder shared by psk_file lines and the
 * clients' --psk. Its own file because it needs no OpenSSL and is built
 * with WITH_TLS=OFF too (the config reader still checks psk_file lines).
 */
#include "transport/tls.h"

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

ssize_t tls_hex_key(const char *hex, size_t n, unsigned char *out, size_t cap) {
    if (n == 0 || n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -2;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return (ssize_t)(n / 2);
}
