/*
 * common/util: small helpers shared by the server modules: clocks, RFC 3339
 * time, host:port parsing, a growable byte buffer.
 */
#ifndef EVBUS_COMMON_UTIL_H
#define EVBUS_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock in milliseconds since the Unix epoch. Never called from apply. */
uint64_t util_now_ms(void);
/* Monotonic clock in nanoseconds. */
uint64_t util_mono_ns(void);

/* Formats ms since epoch as RFC 3339 UTC with seconds precision ("2026-12-03T17:35:48Z").
 * `out` has room for at least 32 bytes. */
void util_rfc3339(uint64_t ms, char *out, size_t out_len);
/* Parses an RFC 3339 timestamp (Z or +hh:mm offset, optional fraction). Returns 0 or EVBUS_EINVAL.
 */
int util_parse_rfc3339(const char *s, uint64_t *ms_out);

/* Splits "host:port" into host (copied into `host`, host_len bytes) and port. 0 or EVBUS_EINVAL. */
int util_parse_hostport(const char *s, char *host, size_t host_len, uint16_t *port);

/* Creates a directory and its missing parents (mode 0755). 0, or -1 with errno set. */
int util_mkdir_p(const char *path);

/* Parses a whole decimal unsigned number in [min, max]. 0 or EVBUS_EINVAL. */
int util_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

typedef struct util_buf {
    uint8_t *data; /* owned */
    size_t len;
    size_t cap;
} util_buf;

int util_buf_reserve(util_buf *b, size_t extra);
int util_buf_append(util_buf *b, const void *p, size_t n);
void util_buf_free(util_buf *b);

/* Protobuf base-128 varints: bytes needed, and writing (returns bytes written, at most 10). */
static inline size_t util_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}
static inline size_t util_put_varint(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        p[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[i++] = (uint8_t)v;
    return i;
}

/* Big-endian fixed-width integers (storage keys, frame headers). */
static inline void util_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void util_put_be64(uint8_t *p, uint64_t v)
{
    util_put_be32(p, (uint32_t)(v >> 32));
    util_put_be32(p + 4, (uint32_t)v);
}
static inline uint32_t util_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t util_get_be64(const uint8_t *p)
{
    return ((uint64_t)util_get_be32(p) << 32) | util_get_be32(p + 4);
}

#endif
