/*
 * Unit tests of common/util.h and the error table of include/evbus/errors.h.
 *
 * These helpers guard input from the network (timestamps in events, addresses
 * in config) and define the storage key order (big-endian integers), so the
 * tests stress the edges: calendar limits, port bounds, trailing junk, and that
 * byte order of encoded keys really is numeric order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "evbus/errors.h"

/* ------------------------------------------------------------------ RFC 3339 */

#define T_2026_12_03_173548 1796319348000ull /* 2026-12-03T17:35:48Z in ms */

static uint64_t parse_ok(const char *s)
{
    uint64_t ms = 0xdeadbeef;
    int rv = util_parse_rfc3339(s, &ms);
    if (rv != 0)
        fail_msg("util_parse_rfc3339(\"%s\") = %d, want 0", s, rv);
    return ms;
}

static void test_rfc3339_valid(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("2026-12-03T17:35:48Z"), T_2026_12_03_173548);
    /* Lower-case separators and zone are allowed by RFC 3339 section 5.6. */
    assert_int_equal(parse_ok("2026-12-03t17:35:48z"), T_2026_12_03_173548);
    /* Offsets name the same instant. */
    assert_int_equal(parse_ok("2026-12-03T18:35:48+01:00"), T_2026_12_03_173548);
    assert_int_equal(parse_ok("2026-12-03T12:05:48-05:30"), T_2026_12_03_173548);
    assert_int_equal(parse_ok("2026-12-04T03:35:48+10:00"), T_2026_12_03_173548);
    assert_int_equal(parse_ok("2026-12-03T17:35:48+00:00"), T_2026_12_03_173548);
    /* Fractions: milliseconds kept, finer digits dropped, short ones scaled. */
    assert_int_equal(parse_ok("2026-12-03T17:35:48.123Z"), T_2026_12_03_173548 + 123);
    assert_int_equal(parse_ok("2026-12-03T17:35:48.5Z"), T_2026_12_03_173548 + 500);
    assert_int_equal(parse_ok("2026-12-03T17:35:48.07Z"), T_2026_12_03_173548 + 70);
    assert_int_equal(parse_ok("2026-12-03T17:35:48.123456789Z"), T_2026_12_03_173548 + 123);
    assert_int_equal(parse_ok("2026-12-03T18:35:48.250+01:00"), T_2026_12_03_173548 + 250);
    /* Leap days of leap years, including a century divisible by 400. */
    assert_int_equal(parse_ok("2024-02-29T23:59:59Z"), 1709251199000ull);
    assert_int_equal(parse_ok("2000-02-29T00:00:00Z"), 951782400000ull);
    /* Past 2^31 seconds: no 32-bit time_t truncation. */
    assert_int_equal(parse_ok("2038-01-19T03:14:08Z"), 2147483648000ull);
    assert_int_equal(parse_ok("2026-12-31T23:59:59Z") % 1000u, 0);
}

static void test_rfc3339_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-12-03",                 /* date only */
        "2026-12-03T17:35:48",        /* missing zone */
        "2026-12-03T17:35Z",          /* missing seconds */
        "2026-13-01T00:00:00Z",       /* month 13 */
        "2026-00-01T00:00:00Z",       /* month 0 */
        "2026-01-00T00:00:00Z",       /* day 0 */
        "2026-01-32T00:00:00Z",       /* day 32 */
        "2026-04-31T00:00:00Z",       /* April has 30 days */
        "2025-02-29T00:00:00Z",       /* not a leap year */
        "2100-02-29T00:00:00Z",       /* century, not divisible by 400 */
        "2026-02-30T00:00:00Z",       /* never */
        "2026-12-03T24:00:00Z",       /* hour 24 */
        "2026-12-03T17:60:00Z",       /* minute 60 */
        "2026-12-03T17:35:61Z",       /* second 61 */
        "2026-12-03T17:35:48Zjunk",   /* trailing junk */
        "2026-12-03T17:35:48Z ",      /* trailing space */
        "2026-12-03T17:35:48+01:00x", /* junk after offset */
        "2026-12-03T17:35:48.Z",      /* empty fraction */
        "2026-12-03T17:35:48+0100",   /* offset without colon */
        "2026-12-03T17:35:48+24:00",  /* offset hour 24 */
        "2026-12-03T17:35:48+01:60",  /* offset minute 60 */
        "2026-12-03T17:35:48+01",     /* truncated offset */
        "2026-12-03X17:35:48Z",       /* bad separator */
        "26-12-03T17:35:48Z",         /* two-digit year */
        "2026-1-03T17:35:48Z",        /* one-digit month */
        "2026-12-03T17:35:4Z",        /* one-digit second */
        "2026/12/03T17:35:48Z",       /* wrong date separator */
        " 2026-12-03T17:35:48Z",      /* leading space */
        "1969-12-31T23:59:59Z",       /* before the epoch: not representable in u64 ms */
        "1970-01-01T00:30:00+01:00",  /* same, by offset */
        "abcd-ef-ghTij:kl:mnZ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 42;
        int rv = util_parse_rfc3339(bad[i], &ms);
        if (rv != EVBUS_EINVAL)
            fail_msg("util_parse_rfc3339(\"%s\") = %d, want EVBUS_EINVAL", bad[i], rv);
        /* A rejected input leaves the output alone. */
        assert_int_equal(ms, 42);
    }
}

static void test_rfc3339_format(void **state)
{
    (void)state;
    char out[32];
    util_rfc3339(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    /* Seconds precision: the milliseconds are dropped, not rounded. */
    util_rfc3339(T_2026_12_03_173548 + 999, out, sizeof(out));
    assert_string_equal(out, "2026-12-03T17:35:48Z");
    util_rfc3339(951782400000ull, out, sizeof(out));
    assert_string_equal(out, "2000-02-29T00:00:00Z");

    /* format then parse gives the instant back, truncated to the second. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 1000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t ms = x % 4102444800000ull; /* before 2100 */
        util_rfc3339(ms, out, sizeof(out));
        uint64_t back = 0;
        assert_int_equal(util_parse_rfc3339(out, &back), 0);
        assert_int_equal(back, ms - ms % 1000u);
    }
}

/* ----------------------------------------------------------------- host:port */

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    assert_int_equal(util_parse_hostport("127.0.0.1:7070", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7070);
    assert_int_equal(util_parse_hostport("localhost:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 1);
    assert_int_equal(util_parse_hostport("node-3.example:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "node-3.example");
    assert_int_equal(port, 65535);

    static const char *const bad[] = {
        "127.0.0.1",       /* missing port */
        "127.0.0.1:",      /* empty port */
        ":7070",           /* empty host */
        "127.0.0.1:0",     /* port 0 */
        "127.0.0.1:65536", /* port too large */
        "127.0.0.1:99999999999999999999999",
        "127.0.0.1:70x", /* junk after port */
        "127.0.0.1:x70", /* junk before port */
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:80 ",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 4242;
        int rv = util_parse_hostport(bad[i], host, sizeof(host), &port);
        if (rv != EVBUS_EINVAL)
            fail_msg("util_parse_hostport(\"%s\") = %d, want EVBUS_EINVAL", bad[i], rv);
        assert_int_equal(port, 4242);
    }

    /* The host must fit with its NUL: 9 characters need 10 bytes. */
    char small[10];
    assert_int_equal(util_parse_hostport("127.0.0.1:80", small, sizeof(small), &port), 0);
    assert_string_equal(small, "127.0.0.1");
    assert_int_equal(util_parse_hostport("127.0.0.1:80", small, 9, &port), EVBUS_EINVAL);
}

/* --------------------------------------------------------------------- u64 */

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(util_parse_u64("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(util_parse_u64("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(util_parse_u64("5", 5, 5, &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(util_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);

    v = 7;
    assert_int_equal(util_parse_u64("11", 0, 10, &v), EVBUS_EINVAL); /* above max */
    assert_int_equal(util_parse_u64("4", 5, 10, &v), EVBUS_EINVAL);  /* below min */
    assert_int_equal(util_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("", 0, 10, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64(NULL, 0, 10, &v), EVBUS_EINVAL);
    /* strtoull alone would accept these. */
    assert_int_equal(util_parse_u64("-1", 0, UINT64_MAX, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("+1", 0, 10, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64(" 1", 0, 10, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("1 ", 0, 10, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("1x", 0, 10, &v), EVBUS_EINVAL);
    assert_int_equal(util_parse_u64("0x10", 0, 100, &v), EVBUS_EINVAL);
    assert_int_equal(v, 7);
}

/* -------------------------------------------------------------- big-endian */

static void test_be_known(void **state)
{
    (void)state;
    uint8_t b[8];
    util_put_be32(b, 0x01020304u);
    static const uint8_t want32[4] = {1, 2, 3, 4};
    assert_memory_equal(b, want32, 4);
    assert_int_equal(util_get_be32(b), 0x01020304u);

    util_put_be64(b, 0x0102030405060708ull);
    static const uint8_t want64[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want64, 8);
    assert_true(util_get_be64(b) == 0x0102030405060708ull);

    util_put_be64(b, UINT64_MAX);
    assert_true(util_get_be64(b) == UINT64_MAX);
    util_put_be32(b, 0x80000000u);
    assert_int_equal(b[0], 0x80);
    assert_int_equal(util_get_be32(b), 0x80000000u);
}

static int sign(long long v)
{
    return (v > 0) - (v < 0);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Storage keys rely on it: memcmp order of encodings == numeric order of values. */
static void test_be_sort_order(void **state)
{
    (void)state;
    uint64_t seed = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < 100000; i++) {
        uint64_t a = xorshift(&seed), b = xorshift(&seed);
        /* Mix magnitudes so small and close values (the common offsets) are covered too. */
        switch (i % 4) {
        case 0: break;
        case 1:
            a >>= (a & 63);
            b >>= (b & 63);
            break;
        case 2: b = a + (b % 3) - 1; break;
        case 3: b = a; break;
        }
        uint8_t ea[8], eb[8];
        util_put_be64(ea, a);
        util_put_be64(eb, b);
        int want = a < b ? -1 : (a > b ? 1 : 0);
        if (sign(memcmp(ea, eb, 8)) != want)
            fail_msg("be64 order wrong for %llu vs %llu", (unsigned long long)a,
                     (unsigned long long)b);
        assert_true(util_get_be64(ea) == a);

        uint32_t a32 = (uint32_t)a, b32 = (uint32_t)(i % 2 ? b : b >> 32);
        util_put_be32(ea, a32);
        util_put_be32(eb, b32);
        want = a32 < b32 ? -1 : (a32 > b32 ? 1 : 0);
        if (sign(memcmp(ea, eb, 4)) != want)
            fail_msg("be32 order wrong for %u vs %u", a32, b32);
        assert_int_equal(util_get_be32(ea), a32);
    }
}

/* ----------------------------------------------------------------- util_buf */

static void test_buf(void **state)
{
    (void)state;
    util_buf b = {0};
    for (int i = 0; i < 1000; i++) {
        uint8_t byte = (uint8_t)i;
        assert_int_equal(util_buf_append(&b, &byte, 1), 0);
    }
    assert_int_equal(b.len, 1000);
    assert_true(b.cap >= b.len);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(b.data[i], (uint8_t)i);
    assert_int_equal(util_buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 1000);
    util_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    util_buf_free(&b); /* twice is harmless */
}

/* ------------------------------------------------------------------ errors */

static void test_errors_table(void **state)
{
    (void)state;
    assert_string_equal(evbus_strerror(EVBUS_OK), "success");
    assert_string_equal(evbus_strerror(EVBUS_ENOTFOUND), "not found");
    assert_string_equal(evbus_strerror(EVBUS_ENOTLEADER), "this node is not the leader");
    assert_string_equal(evbus_errname(EVBUS_OK), "EVBUS_OK");
    assert_string_equal(evbus_errname(EVBUS_ENOTLEADER), "EVBUS_ENOTLEADER");
    assert_string_equal(evbus_errname(EVBUS_EUNKNOWN_MSG), "EVBUS_EUNKNOWN_MSG");

    /* Codes outside the table, including positive ones, still give a string. */
    static const int unknown[] = {1, 12345, -1000, -999, INT32_MIN};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(evbus_strerror(unknown[i]), "unknown error");
        assert_string_equal(evbus_errname(unknown[i]), "EVBUS_UNKNOWN");
        assert_int_equal(evbus_is_retriable(unknown[i]), 0);
    }

    assert_int_equal(evbus_is_retriable(EVBUS_ENOTLEADER), 1);
    assert_int_equal(evbus_is_retriable(EVBUS_ETIMEDOUT), 1);
    assert_int_equal(evbus_is_retriable(EVBUS_EINVAL), 0);
    assert_int_equal(evbus_is_retriable(EVBUS_OK), 0);

    /* Every entry of the table: a distinct non-positive value, its own name, a message. */
    struct row {
        int value;
        const char *name;
        const char *msg;
    };
    static const struct row rows[] = {
#define ROW(name, value, msg, retriable) {value, "EVBUS_" #name, msg},
        EVBUS_ERRNO_MAP(ROW)
#undef ROW
    };
    size_t n = sizeof(rows) / sizeof(rows[0]);
    assert_true(n >= 21);
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].value <= 0);
        assert_string_equal(evbus_errname(rows[i].value), rows[i].name);
        assert_string_equal(evbus_strerror(rows[i].value), rows[i].msg);
        assert_true(strlen(rows[i].msg) > 0);
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(rows[i].value, rows[j].value);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_valid),  cmocka_unit_test(test_rfc3339_invalid),
        cmocka_unit_test(test_rfc3339_format), cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_parse_u64),      cmocka_unit_test(test_be_known),
        cmocka_unit_test(test_be_sort_order),  cmocka_unit_test(test_buf),
        cmocka_unit_test(test_errors_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
