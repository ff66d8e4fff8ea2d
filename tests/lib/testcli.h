/*
 * testcli: assertions shared by integration tests that drive evbusctl and the SDK
 * against a running evbusd: connect, run evbusctl and check its exit status, read
 * its --json output. Failures are cmocka failures with the context printed.
 */
#ifndef EVBUS_TESTS_TESTCLI_H
#define EVBUS_TESTS_TESTCLI_H

#include <stdbool.h>

#include <jansson.h>

#include "evbus/evbus.h"

#define TL_CTL_MAX_ARGS 24

/* An SDK client of `servers` with a 15 s timeout; asserts that it connects. */
evbus_client *tl_connect(const char *servers);

void tl_assert_contains(const char *hay, const char *needle, const char *file, int line);

/*
 * Runs $EVBUSCTL with `args` (NULL-terminated), EVBUS_SERVERS=servers, and asserts its exit status.
 * `merge` adds stderr to the output. *out (may be NULL) gets the output (the caller frees).
 */
void tl_ctl_run(const char *servers, int want, char **out, bool merge, const char *const *args);

/* Parses JSON text (asserting it is JSON); the caller json_decref()s it. */
json_t *tl_parse_json(const char *text);
/* A member that must be a string / an integer. */
const char *tl_str_of(json_t *o, const char *key);
json_int_t tl_int_of(json_t *o, const char *key);

#define assert_contains(hay, needle) tl_assert_contains((hay), (needle), __FILE__, __LINE__)

/* An SDK call that must fail with `code` and a message containing `needle` (may be NULL). */
#define assert_sdk_err(c, call, code, needle)                                                      \
    do {                                                                                           \
        int rv_ = (call);                                                                          \
        if (rv_ != (code))                                                                         \
            fprintf(stderr, "%s: %d (%s), want %d\n", #call, rv_, evbus_client_errmsg(c), (code)); \
        assert_int_equal(rv_, (code));                                                             \
        if ((needle) != NULL)                                                                      \
            assert_contains(evbus_client_errmsg(c), (const char *)(needle));                       \
    } while (0)

#define assert_sdk_ok(c, call)                                                                     \
    do {                                                                                           \
        int rv_ = (call);                                                                          \
        if (rv_ != 0)                                                                              \
            fprintf(stderr, "%s: %d (%s)\n", #call, rv_, evbus_client_errmsg(c));                  \
        assert_int_equal(rv_, 0);                                                                  \
    } while (0)

#endif
