/*
 * rules/mem: accounted allocation and hashing for the matcher's internal
 * structures. Every allocation of the matcher (and of its path table) goes
 * through these wrappers with its size, so rules_matcher_memory() is exact and
 * a test can check that deleting every rule returns the count to its baseline.
 * Callers pass the size on free and realloc (they always know it); nothing is
 * stored in front of a block.
 */
#ifndef EVBUS_RULES_MEM_H
#define EVBUS_RULES_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline void *mem_alloc(size_t *acct, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p != NULL)
        *acct += n;
    return p;
}

static inline void *mem_calloc(size_t *acct, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (p != NULL)
        *acct += n;
    return p;
}

/* Like realloc; on failure the old block stays valid and accounted. */
static inline void *mem_realloc(size_t *acct, void *p, size_t old_n, size_t new_n)
{
    void *q = realloc(p, new_n ? new_n : 1);
    if (q != NULL)
        *acct = *acct - old_n + new_n;
    return q;
}

static inline void mem_free(size_t *acct, void *p, size_t n)
{
    if (p == NULL)
        return;
    *acct -= n;
    free(p);
}

static inline void *mem_dup(size_t *acct, const void *src, size_t n)
{
    void *p = mem_alloc(acct, n);
    if (p != NULL && n > 0)
        memcpy(p, src, n);
    return p;
}

/* Unaligned little-endian loads (x86-64 and aarch64 handle them natively). */
static inline uint64_t mem_rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t mem_rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t mem_mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A fast 64-bit hash of n bytes (wyhash-like folded multiply); not for adversarial keys' DoS
 * resistance beyond the per-table seed. */
static inline uint64_t mem_hash(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t a, b;
    seed ^= 0xa0761d6478bd642full;
    if (n <= 16) {
        if (n >= 4) {
            a = ((uint64_t)mem_rd32(p) << 32) | mem_rd32(p + ((n >> 3) << 2));
            b = ((uint64_t)mem_rd32(p + n - 4) << 32) | mem_rd32(p + n - 4 - ((n >> 3) << 2));
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        if (i > 48) {
            uint64_t s1 = seed, s2 = seed;
            do {
                seed = mem_mix(mem_rd64(p) ^ 0xe7037ed1a0b428dbull, mem_rd64(p + 8) ^ seed);
                s1 = mem_mix(mem_rd64(p + 16) ^ 0x8ebc6af09c88c6e3ull, mem_rd64(p + 24) ^ s1);
                s2 = mem_mix(mem_rd64(p + 32) ^ 0x589965cc75374cc3ull, mem_rd64(p + 40) ^ s2);
                p += 48;
                i -= 48;
            } while (i > 48);
            seed ^= s1 ^ s2;
        }
        while (i > 16) {
            seed = mem_mix(mem_rd64(p) ^ 0xe7037ed1a0b428dbull, mem_rd64(p + 8) ^ seed);
            i -= 16;
            p += 16;
        }
        a = mem_rd64(p + i - 16);
        b = mem_rd64(p + i - 8);
    }
    return mem_mix(0xe7037ed1a0b428dbull ^ n, mem_mix(a ^ 0xe7037ed1a0b428dbull, b ^ seed));
}

#endif
