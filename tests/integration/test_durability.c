/*
 * Integration: a real evbusd on 127.0.0.1, driven through the SDK.
 *  - 10,000 events published in batches come back complete and in order, each
 *    at the offset its acknowledgement named, with the EventBridge envelope;
 *  - a clean restart (SIGTERM, exit 0) keeps buses and data;
 *  - kill -9 during a pipelined publishing loop, three times: after each
 *    restart every acknowledged event is at its acknowledged offset, offsets are
 *    gap-free, and no event is stored twice.
 * Arguments are passed to evbusd (ctest runs it once more with tiny snapshot
 * thresholds, so that restarts recover from a snapshot plus the log tail).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "evbus/evbus.h"
#include "lib/testlib.h"
#include "lib/testsdk.h"

#define N_EVENTS 10000
#define BATCH 100
#define N_KEYS 50

static tl_node g_node;
/* evbusd flags from the command line, e.g. small snapshot thresholds so restarts go through
 * snapshot + log replay (a second ctest entry runs it that way). */
static const char *const *g_extra_args;

static evbus_client *connect_sdk_timeout(uint32_t timeout_ms)
{
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = g_node.client_addr;
    o.timeout_ms = timeout_ms;
    evbus_client *c = NULL;
    int rv = evbus_client_create(&o, &c);
    if (rv != 0)
        fprintf(stderr, "connect: %s\n", evbus_strerror(rv));
    assert_int_equal(rv, 0);
    return c;
}

static evbus_client *connect_sdk(void)
{
    return connect_sdk_timeout(15000);
}

static void start_node(void)
{
    assert_int_equal(tl_evbusd_start(&g_node, g_extra_args, 0), 0);
    assert_int_equal(tl_wait_leader(g_node.client_addr, 20000, NULL), 0);
}

/* Every stored event of a partition, in offset order, checked for gap-freedom. Calls fn for
 * each parsed envelope. Returns the number of events. */
typedef void (*event_fn)(void *arg, uint32_t partition, uint64_t offset, json_t *env);

static uint64_t read_all(evbus_client *c, const char *bus, uint32_t partition, event_fn fn,
                         void *arg)
{
    uint64_t next = 0, count = 0;
    for (int page = 0; page < 100000; page++) {
        evbus_read_result *r = NULL;
        int rv = evbus_read(c, bus, partition, next, 500, 0, &r);
        assert_int_equal(rv, 0);
        assert_int_equal(r->first_offset, 0);
        for (size_t i = 0; i < r->n_events; i++) {
            assert_int_equal(r->events[i].offset, next); /* gap-free, in order */
            json_error_t jerr;
            json_t *env = json_loads(r->events[i].json, 0, &jerr);
            assert_non_null(env);
            assert_int_equal(json_integer_value(json_object_get(env, "offset")), next);
            assert_int_equal(json_integer_value(json_object_get(env, "partition")), partition);
            assert_string_equal(json_string_value(json_object_get(env, "bus")), bus);
            fn(arg, partition, next, env);
            json_decref(env);
            next++;
            count++;
        }
        int done = r->next_offset >= r->end_offset;
        assert_int_equal(r->next_offset, next);
        evbus_read_result_free(r);
        if (done)
            break;
    }
    return count;
}

/* ------------------------------------------------------- publish and read */

typedef struct acked {
    uint32_t partition;
    uint64_t offset;
    char id[40];
    int seen;
} acked;

typedef struct check_ctx {
    acked *acks;
    size_t n_acks;
    int64_t last_seq_per_key[N_KEYS];
    uint64_t duplicates;
} check_ctx;

static void check_event(void *arg, uint32_t partition, uint64_t offset, json_t *env)
{
    check_ctx *x = arg;
    json_t *detail = json_object_get(env, "detail");
    json_int_t seq = json_integer_value(json_object_get(detail, "seq"));
    assert_true(seq >= 0 && (size_t)seq < x->n_acks);
    acked *a = &x->acks[seq];
    assert_int_equal(a->partition, partition);
    assert_int_equal(a->offset, offset);
    assert_string_equal(json_string_value(json_object_get(env, "id")), a->id);
    assert_string_equal(json_string_value(json_object_get(env, "source")), "test.publish");
    assert_string_equal(json_string_value(json_object_get(env, "detail-type")), "Seq");
    assert_string_equal(json_string_value(json_object_get(env, "version")), "0");
    assert_non_null(json_string_value(json_object_get(env, "time")));
    assert_non_null(json_string_value(json_object_get(env, "account")));
    assert_non_null(json_string_value(json_object_get(env, "region")));
    assert_true(json_is_array(json_object_get(env, "resources")));
    if (a->seen)
        x->duplicates++;
    a->seen = 1;
    /* Per key, offsets follow publish order. */
    int key = (int)(seq % N_KEYS);
    assert_true(seq > x->last_seq_per_key[key]);
    x->last_seq_per_key[key] = seq;
}

static void test_publish_10000_and_read_back(void **state)
{
    (void)state;
    evbus_client *c = connect_sdk();
    assert_int_equal(evbus_bus_create(c, "orders", 4), 0);
    acked *acks = calloc(N_EVENTS, sizeof(*acks));
    char details[BATCH][64], keys[BATCH][16];
    evbus_entry entries[BATCH];
    evbus_put_result results[BATCH];
    for (int base = 0; base < N_EVENTS; base += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            int seq = base + i;
            snprintf(details[i], sizeof(details[i]), "{\"seq\":%d,\"pad\":\"xxxxxxxx\"}", seq);
            snprintf(keys[i], sizeof(keys[i]), "k%d", seq % N_KEYS);
            entries[i] = (evbus_entry){.source = "test.publish",
                                       .detail_type = "Seq",
                                       .detail = details[i],
                                       .partition_key = keys[i]};
        }
        size_t failed = 1;
        assert_int_equal(evbus_put_events(c, "orders", entries, BATCH, results, &failed, NULL), 0);
        assert_int_equal(failed, 0);
        for (int i = 0; i < BATCH; i++) {
            assert_int_equal(results[i].code, 0);
            acks[base + i].partition = results[i].partition;
            acks[base + i].offset = results[i].offset;
            snprintf(acks[base + i].id, sizeof(acks[base + i].id), "%s", results[i].event_id);
        }
    }
    check_ctx x = {.acks = acks, .n_acks = N_EVENTS};
    for (int k = 0; k < N_KEYS; k++)
        x.last_seq_per_key[k] = -1;
    uint64_t total = 0;
    for (uint32_t p = 0; p < 4; p++)
        total += read_all(c, "orders", p, check_event, &x);
    assert_int_equal(total, N_EVENTS);
    assert_int_equal(x.duplicates, 0);
    for (int i = 0; i < N_EVENTS; i++)
        assert_true(acks[i].seen);

    evbus_bus_info *info = NULL;
    assert_int_equal(evbus_bus_describe(c, "orders", &info), 0);
    assert_int_equal(info->events, N_EVENTS);
    assert_int_equal(info->partitions, 4);
    assert_int_equal(info->n_partition_info, 4);
    uint64_t sum = 0;
    for (size_t i = 0; i < info->n_partition_info; i++)
        sum += info->partition_info[i].next_offset;
    assert_int_equal(sum, N_EVENTS);
    evbus_bus_info_free(info);
    evbus_client_destroy(c);

    /* A clean restart keeps buses and data. */
    assert_int_equal(tl_evbusd_stop(&g_node, SIGTERM, 0), 0);
    start_node();
    c = connect_sdk();
    evbus_bus_info *buses = NULL;
    size_t n = 0;
    assert_int_equal(evbus_bus_list(c, &buses, &n), 0);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(buses[i].name, "orders") == 0 && buses[i].events == N_EVENTS)
            found = 1;
    assert_true(found);
    evbus_bus_list_free(buses, n);
    for (int i = 0; i < N_EVENTS; i++)
        acks[i].seen = 0;
    for (int k = 0; k < N_KEYS; k++)
        x.last_seq_per_key[k] = -1;
    total = 0;
    for (uint32_t p = 0; p < 4; p++)
        total += read_all(c, "orders", p, check_event, &x);
    assert_int_equal(total, N_EVENTS);
    /* Offsets continue where they were. */
    evbus_entry e = {.source = "test.publish",
                     .detail_type = "Seq",
                     .detail = "{\"seq\":-1}",
                     .partition_key = "k0"};
    size_t failed;
    assert_int_equal(evbus_put_events(c, "orders", &e, 1, results, &failed, NULL), 0);
    uint64_t expect_next = 0;
    for (int i = 0; i < N_EVENTS; i++)
        if (acks[i].partition == results[0].partition)
            expect_next++;
    assert_int_equal(results[0].offset, expect_next);
    evbus_client_destroy(c);
    free(acks);
}

/* ------------------------------------------------------------ kill -9 loop */

#define CRASH_ROUNDS 3
#define CRASH_MAX_EVENTS 200000
#define CRASH_BATCH 20
#define CRASH_INFLIGHT 8

typedef struct crash_ctx {
    acked *acks;     /* by seq */
    int *acked_flag; /* 1 acknowledged, 0 unknown */
    uint64_t n_acked;
    uint64_t n_failed;
} crash_ctx;

typedef struct put_arg {
    crash_ctx *x;
    int first_seq;
    int n;
} put_arg;

static void crash_put_cb(void *arg, int status, const evbus_put_result *res, size_t n)
{
    put_arg *a = arg;
    if (status == 0) {
        for (size_t i = 0; i < n; i++) {
            int seq = a->first_seq + (int)i;
            assert_int_equal(res[i].code, 0);
            a->x->acks[seq].partition = res[i].partition;
            a->x->acks[seq].offset = res[i].offset;
            snprintf(a->x->acks[seq].id, sizeof(a->x->acks[seq].id), "%s", res[i].event_id);
            a->x->acked_flag[seq] = 1;
            a->x->n_acked++;
        }
    } else {
        a->x->n_failed += (uint64_t)a->n;
    }
    free(a);
}

typedef struct verify_ctx {
    crash_ctx *x;
    uint8_t *seen;
    uint64_t dup;
} verify_ctx;

static void verify_event(void *arg, uint32_t partition, uint64_t offset, json_t *env)
{
    verify_ctx *v = arg;
    json_int_t seq = json_integer_value(json_object_get(json_object_get(env, "detail"), "seq"));
    assert_true(seq >= 0 && seq < CRASH_MAX_EVENTS);
    if (v->seen[seq])
        v->dup++;
    v->seen[seq] = 1;
    if (v->x->acked_flag[seq]) {
        assert_int_equal(v->x->acks[seq].partition, partition);
        assert_int_equal(v->x->acks[seq].offset, offset);
        assert_string_equal(json_string_value(json_object_get(env, "id")), v->x->acks[seq].id);
    }
}

static void verify_crash(crash_ctx *x, int next_seq)
{
    evbus_client *c = connect_sdk();
    verify_ctx v = {.x = x, .seen = calloc(CRASH_MAX_EVENTS, 1)};
    uint64_t total = 0;
    for (uint32_t p = 0; p < 3; p++)
        total += read_all(c, "crash", p, verify_event, &v);
    assert_int_equal(v.dup, 0);
    uint64_t missing = 0;
    for (int s = 0; s < next_seq; s++)
        if (x->acked_flag[s] && !v.seen[s])
            missing++;
    if (missing)
        fprintf(stderr, "%llu acknowledged events missing\n", (unsigned long long)missing);
    assert_int_equal(missing, 0);
    assert_true(total >= x->n_acked);
    fprintf(stderr, "crash round: %llu stored, %llu acknowledged, %llu unknown outcome\n",
            (unsigned long long)total, (unsigned long long)x->n_acked,
            (unsigned long long)x->n_failed);
    free(v.seen);
    evbus_client_destroy(c);
}

static void test_kill9_during_publish(void **state)
{
    (void)state;
    crash_ctx x = {.acks = calloc(CRASH_MAX_EVENTS, sizeof(acked)),
                   .acked_flag = calloc(CRASH_MAX_EVENTS, sizeof(int))};
    evbus_client *c = connect_sdk();
    assert_int_equal(evbus_bus_create(c, "crash", 3), 0);
    evbus_client_destroy(c);
    int seq = 0;
    char details[CRASH_BATCH][96];
    evbus_entry entries[CRASH_BATCH];
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        /* Short timeout: requests in flight at the kill retry (idempotently) until it expires,
         * and the node only comes back after they gave up. */
        c = connect_sdk_timeout(2000);
        /* Publish with several requests in flight; kill at a moment that varies per round. */
        uint64_t kill_at = tl_now_ms() + 400 + (uint64_t)round * 350;
        int killed = 0;
        for (int iter = 0; iter < 100000 && seq + CRASH_BATCH < CRASH_MAX_EVENTS; iter++) {
            if (!killed && tl_now_ms() >= kill_at) {
                assert_int_equal(kill(g_node.proc.pid, SIGKILL), 0);
                killed = 1;
            }
            if (!killed && evbus_client_inflight(c) < CRASH_INFLIGHT) {
                for (int i = 0; i < CRASH_BATCH; i++) {
                    snprintf(details[i], sizeof(details[i]),
                             "{\"seq\":%d,\"round\":%d,\"pad\":\"0123456789abcdef\"}", seq + i,
                             round);
                    entries[i] = (evbus_entry){
                        .source = "test.crash", .detail_type = "Seq", .detail = details[i]};
                }
                put_arg *a = malloc(sizeof(*a));
                *a = (put_arg){&x, seq, CRASH_BATCH};
                if (evbus_put_events_async(c, "crash", entries, CRASH_BATCH, crash_put_cb, a) == 0)
                    seq += CRASH_BATCH;
                else
                    free(a);
                continue;
            }
            int rv = evbus_client_poll(c, 50);
            if (killed && (rv < 0 || evbus_client_inflight(c) == 0))
                break;
        }
        /* Drain whatever callbacks remain (they fail: the server is gone). */
        for (int i = 0; i < 100 && evbus_client_inflight(c) > 0; i++)
            evbus_client_poll(c, 100);
        assert_int_equal(evbus_client_inflight(c), 0);
        evbus_client_destroy(c);
        assert_true(killed);
        assert_true(x.n_acked > 0);
        tl_proc_wait(&g_node.proc, 5000);
        start_node();
        verify_crash(&x, seq);
    }
    free(x.acks);
    free(x.acked_flag);
}

/* Events near the 256 KiB limit come back byte for byte (nanopb's 16-bit bytes lengths once
 * cut them at 64 KiB). */
static void test_large_events(void **state)
{
    (void)state;
    evbus_client *c = connect_sdk();
    assert_int_equal(evbus_bus_create(c, "large", 1), 0);
    size_t sizes[] = {65535, 65536, 70000, 200000, 256 * 1024 - 64};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        char *detail = malloc(n + 1);
        int len = snprintf(detail, n + 1, "{\"k\":%zu,\"pad\":\"", k);
        memset(detail + len, 'a' + (int)k, n - (size_t)len - 2);
        memcpy(detail + n - 2, "\"}", 3);
        evbus_entry e = {.source = "s", .detail_type = "t", .detail = detail};
        evbus_put_result res;
        size_t failed = 1;
        assert_int_equal(evbus_put_events(c, "large", &e, 1, &res, &failed, NULL), 0);
        assert_int_equal(failed, 0);
        assert_int_equal(res.offset, k);
        evbus_read_result *r = NULL;
        assert_int_equal(evbus_read(c, "large", 0, k, 1, 0, &r), 0);
        assert_int_equal(r->n_events, 1);
        json_t *env = json_loads(r->events[0].json, 0, NULL);
        assert_non_null(env);
        char *back = json_dumps(json_object_get(env, "detail"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(back, detail);
        free(back);
        json_decref(env);
        evbus_read_result_free(r);
        free(detail);
    }
    evbus_client_destroy(c);
}

static int setup(void **state)
{
    (void)state;
    if (tl_node_init(&g_node, 1) != 0)
        return -1;
    if (tl_evbusd_start(&g_node, g_extra_args, 0) != 0)
        return -1;
    return tl_wait_leader(g_node.client_addr, 20000, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int st = tl_evbusd_stop(&g_node, SIGTERM, 0);
    if (st != 0)
        tl_print_log_tail(g_node.proc.log_path, 60);
    return st == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    g_extra_args = (const char *const *)argv + 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_10000_and_read_back),
        cmocka_unit_test(test_large_events),
        cmocka_unit_test(test_kill9_during_publish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
