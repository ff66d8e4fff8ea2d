/*
 * fuzz_common: helpers shared by the libFuzzer targets of tests/fuzz/. Each
 * target is one translation unit built with clang -fsanitize=fuzzer (see
 * tests/fuzz/CMakeLists.txt); a failed check prints what disagreed and aborts,
 * so libFuzzer saves the input as a crash-* file.
 */
#ifndef EVBUS_FUZZ_COMMON_H
#define EVBUS_FUZZ_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz check failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__VA_ARGS__);                                                                \
    } while (0)

/* Prints ids[0..n) (at most `max` of them) as "{1,2,3}" for failure messages. */
static inline void fuzz_ids_text(const uint64_t *ids, size_t n, char *out, size_t out_len)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o + 24 < out_len; i++)
        o += (size_t)snprintf(out + o, out_len - o, "%s%llu", i ? "," : "",
                              (unsigned long long)ids[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
