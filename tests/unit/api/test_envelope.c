/* Unit tests of api/envelope: PutEvents entry validation, partition choice, envelope shape. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/envelope.h"
#include "evbus/errors.h"

static evbus_PutEventsEntry entry(const char *src, const char *dt, const char *detail)
{
    evbus_PutEventsEntry e = evbus_PutEventsEntry_init_zero;
    e.source = (char *)src;
    e.detail_type = (char *)dt;
    e.detail = (char *)detail;
    return e;
}

static int check(evbus_PutEventsEntry e, const char *want_msg)
{
    json_t *d = NULL;
    char err[512] = "";
    int rv = envelope_validate(&e, &d, err, sizeof(err));
    if (want_msg)
        assert_non_null(strstr(err, want_msg));
    json_decref(d);
    return rv;
}

static void test_validation(void **state)
{
    (void)state;
    assert_int_equal(check(entry("shop", "Order", "{\"a\":1}"), NULL), 0);
    assert_int_equal(check(entry(NULL, "Order", "{}"), "Source is required"), EVBUS_EINVAL);
    assert_int_equal(check(entry("", "Order", "{}"), "Source is required"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", NULL, "{}"), "DetailType is required"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", "t", NULL), "Detail is required"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", "t", "{\"a\":"), "not valid JSON"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", "t", "[1,2]"), "must be a JSON object"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", "t", "\"str\""), "must be a JSON object"), EVBUS_EINVAL);
    assert_int_equal(check(entry("s", "t", "{\"a\":1} trailing"), "not valid JSON"), EVBUS_EINVAL);

    evbus_PutEventsEntry e = entry("s", "t", "{}");
    e.time = (char *)"2026-13-01T00:00:00Z";
    assert_int_equal(check(e, "RFC 3339"), EVBUS_EINVAL);
    e.time = (char *)"2026-12-01T10:00:00.250+02:00";
    assert_int_equal(check(e, NULL), 0);

    /* 256 KiB in total is the limit, as EventBridge's PutEvents entry size. */
    size_t big = 256 * 1024;
    char *detail = malloc(big);
    /* A detail object of `n` bytes: "{" + spaces + "}". */
#define MAKE_DETAIL(n)                                                                             \
    do {                                                                                           \
        memset(detail, ' ', (n));                                                                  \
        detail[0] = '{';                                                                           \
        detail[(n)-1] = '}';                                                                       \
        detail[(n)] = '\0';                                                                        \
    } while (0)
    MAKE_DETAIL(big - 1); /* 1 + 1 + big - 1: one byte over */
    assert_int_equal(check(entry("s", "t", detail), "over the limit"), EVBUS_ETOOBIG);
    MAKE_DETAIL(big - 2); /* exactly the limit */
    assert_int_equal(check(entry("s", "t", detail), NULL), 0);
    assert_int_equal(check(entry("ss", "t", detail), "over the limit"), EVBUS_ETOOBIG);
#undef MAKE_DETAIL
    free(detail);
}

static void test_partition_stable(void **state)
{
    (void)state;
    /* Part of the on-disk contract: these values must never change. */
    assert_int_equal(envelope_partition("", 4), 2166136261u % 4);
    uint32_t p = envelope_partition("customer-42", 8);
    assert_true(p < 8);
    assert_int_equal(envelope_partition("customer-42", 8), p);
    int seen[4] = {0};
    char key[32];
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        seen[envelope_partition(key, 4)]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i] > 50); /* spread over every partition */
}

static void test_envelope_shape(void **state)
{
    (void)state;
    evbus_PutEventsEntry e = entry("shop", "OrderPlaced", "{\"id\":42,\"x\":[1,\"\\u00e9\"]}");
    char *res[] = {"arn:a", "arn:b"};
    e.resources = res;
    e.resources_count = 2;
    json_t *d;
    char err[256];
    assert_int_equal(envelope_validate(&e, &d, err, sizeof(err)), 0);
    char *out;
    size_t len;
    assert_int_equal(envelope_build(&e, e.detail, "0b8a2c3e-0000-4000-8000-000000000001",
                                    "2026-12-03T10:00:00Z", "000000000000", "local", "orders", 3,
                                    &out, &len),
                     0);
    json_decref(d);
    uint8_t *full;
    size_t full_len;
    assert_int_equal(envelope_with_offset((uint8_t *)out, len, 17, &full, &full_len), 0);
    json_error_t jerr;
    json_t *o = json_loadb((const char *)full, full_len, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "version")), "0");
    assert_string_equal(json_string_value(json_object_get(o, "id")),
                        "0b8a2c3e-0000-4000-8000-000000000001");
    assert_string_equal(json_string_value(json_object_get(o, "detail-type")), "OrderPlaced");
    assert_string_equal(json_string_value(json_object_get(o, "source")), "shop");
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-12-03T10:00:00Z");
    assert_string_equal(json_string_value(json_object_get(o, "bus")), "orders");
    assert_int_equal(json_integer_value(json_object_get(o, "partition")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "offset")), 17);
    assert_int_equal(json_array_size(json_object_get(o, "resources")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "detail"), "id")), 42);
    json_decref(o);
    free(out);
    free(full);

    /* Strings that are not UTF-8 are refused, not dropped. */
    evbus_PutEventsEntry bad = entry("sh\xff", "t", "{}");
    assert_int_equal(envelope_validate(&bad, &d, err, sizeof(err)), 0);
    assert_int_equal(envelope_build(&bad, bad.detail, "id", "t", "a", "r", "b", 0, &out, &len),
                     EVBUS_EINVAL);
    json_decref(d);
}

static void test_event_id_derived(void **state)
{
    (void)state;
    char a[37], b[37], c[37], d[37];
    envelope_event_id(0x1234567890abcdefull, 7, 0, a);
    envelope_event_id(0x1234567890abcdefull, 7, 0, b);
    envelope_event_id(0x1234567890abcdefull, 7, 1, c);
    envelope_event_id(0x1234567890abcdefull, 8, 0, d);
    assert_string_equal(a, b); /* a retry stamps the same id */
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '4'); /* version 4 shape */
    assert_true(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b');
    assert_true(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_partition_stable),
        cmocka_unit_test(test_envelope_shape),
        cmocka_unit_test(test_event_id_derived),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
