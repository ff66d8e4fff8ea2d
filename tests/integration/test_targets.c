/*
 * Integration: targets as replicated state (issue 5, first part), end to end
 * against real evbusd processes on 127.0.0.1, through the SDK and evbusctl.
 *
 *  - put / list / remove / describe through the SDK: defaults, per-entry
 *    failures as EventBridge's PutTargets (bad settings, missing dead-letter
 *    target, the sixth target of a rule), whole-call errors (bus, rule);
 *  - a new target's cursors start at each partition's next offset, and its
 *    backlog grows with events published after it;
 *  - a target shared by two rules; removing it from both deletes it;
 *  - the same through evbusctl: exit codes, human and --json output;
 *  - targets and cursors survive a restart;
 *  - 3 nodes: a target put through any node is described alike on every node.
 *
 * Node ids: 1 (main node), 41..43 (cluster).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster/cluster_fixture.h"
#include "evbus/evbus.h"
#include "lib/testlib.h"
#include "lib/testcli.h"
#include "lib/testsdk.h"

#define WAIT_MS 15000u

static tl_node g_node;
static const char *g_ctl;

/* evbusctl against the node of this file (tests/lib/testcli.h). */
#define CTL(want, out, ...)                                                                        \
    tl_ctl_run(g_node.client_addr, (want), (out), false, (const char *const[]){__VA_ARGS__, NULL})

#define CTL2(want, out, ...)                                                                       \
    tl_ctl_run(g_node.client_addr, (want), (out), true, (const char *const[]){__VA_ARGS__, NULL})

static const char *const g_main_args[] = {NULL};

/* ------------------------------------------------------------------ helpers */

static evbus_target_spec spec(const char *id)
{
    evbus_target_spec s = EVBUS_TARGET_SPEC_INIT;
    s.id = id;
    return s;
}

static uint64_t backlog_of(const evbus_target_info *t)
{
    uint64_t n = 0;
    for (size_t i = 0; i < t->n_partitions; i++)
        n += t->partitions[i].backlog;
    return n;
}

static void publish_n(evbus_client *c, const char *bus, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        evbus_entry e = {.source = "shop", .detail_type = "T", .detail = "{\"i\":1}"};
        evbus_put_result res;
        size_t failed = 1;
        assert_sdk_ok(c, evbus_put_events(c, bus, &e, 1, &res, &failed, NULL));
        assert_int_equal(failed, 0);
    }
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state)
{
    (void)state;
    g_ctl = tl_program("EVBUSCTL");
    if (g_ctl == NULL || tl_node_init(&g_node, 1) != 0 ||
        tl_evbusd_start(&g_node, g_main_args, 0) != 0 ||
        tl_wait_leader(g_node.client_addr, 15000, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int st = tl_evbusd_stop(&g_node, SIGTERM, 0);
    if (st != 0)
        tl_print_log_tail(g_node.proc.log_path, 40);
    return st == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------- SDK */

static void test_sdk_targets(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "orders", 2));
    assert_sdk_ok(c, evbus_rule_put(c, "orders", "r1", "{\"source\":[\"shop\"]}", NULL, 0, NULL));
    assert_sdk_ok(c, evbus_rule_put(c, "orders", "r2", "{\"source\":[\"x\"]}", NULL, 0, NULL));
    publish_n(c, "orders", 6);

    /* Whole-call errors. */
    evbus_target_spec s1 = spec("t1");
    assert_sdk_err(c, evbus_target_put(c, "nobus", "r1", &s1, 1, NULL), EVBUS_ENOTFOUND, "nobus");
    assert_sdk_err(c, evbus_target_put(c, "orders", "nope", &s1, 1, NULL), EVBUS_ENOTFOUND, "nope");
    assert_sdk_err(c, evbus_target_put(c, "orders", "r1", &s1, 0, NULL), EVBUS_EINVAL, NULL);

    /* Per-entry results: a bad input, a missing dead letter, then valid ones in order. */
    evbus_target_spec specs[5] = {spec("dlq"), spec("bad"), spec("t1"), spec("t2"), spec("self")};
    specs[1].input = "{not json";
    specs[2].dead_letter = "dlq"; /* put earlier in the same call */
    specs[2].max_attempts = 3;
    specs[2].max_age_s = 120;
    specs[2].input_path = "$.detail";
    specs[3].dead_letter = "missing";
    specs[4].dead_letter = "self";
    evbus_targets_result *res = NULL;
    assert_sdk_ok(c, evbus_target_put(c, "orders", "r1", specs, 5, &res));
    assert_int_equal(res->failed_count, 3);
    assert_string_equal(res->failed[0].id, "bad");
    assert_int_equal(res->failed[0].code, EVBUS_EINVAL);
    assert_contains(res->failed[0].message, "JSON");
    assert_string_equal(res->failed[1].id, "t2");
    assert_int_equal(res->failed[1].code, EVBUS_ENOTFOUND);
    assert_contains(res->failed[1].message, "dead-letter");
    assert_string_equal(res->failed[2].id, "self");
    assert_int_equal(res->failed[2].code, EVBUS_EINVAL);
    assert_true(res->commit_index > 0);
    evbus_targets_result_free(res);
    /* Without `out` the first failure is the call's code. */
    evbus_target_spec big = spec("big");
    big.max_attempts = 186;
    assert_sdk_err(c, evbus_target_put(c, "orders", "r1", &big, 1, NULL), EVBUS_EINVAL,
                   "max attempts");

    evbus_target_info *ts = NULL;
    size_t n = 0;
    assert_sdk_ok(c, evbus_target_list(c, "orders", "r1", &ts, &n));
    assert_int_equal(n, 2);
    assert_string_equal(ts[0].id, "dlq");
    assert_int_equal(ts[0].max_attempts, 185);
    assert_int_equal(ts[0].max_age_s, 86400);
    assert_int_equal(ts[0].window, 64);
    assert_int_equal(ts[0].ack_timeout_ms, 30000);
    assert_string_equal(ts[0].dead_letter, "");
    assert_string_equal(ts[1].id, "t1");
    assert_int_equal(ts[1].max_attempts, 3);
    assert_int_equal(ts[1].max_age_s, 120);
    assert_string_equal(ts[1].dead_letter, "dlq");
    assert_string_equal(ts[1].input_path, "$.detail");
    /* A new target starts at the partitions' next offsets: no backlog from before. */
    assert_int_equal(ts[1].n_partitions, 2);
    assert_int_equal(ts[1].partitions[0].cursor + ts[1].partitions[1].cursor, 6);
    assert_int_equal(backlog_of(&ts[1]), 0);
    evbus_target_list_free(ts, n);

    /* Events after it are its backlog. */
    publish_n(c, "orders", 4);
    evbus_target_info *t = NULL;
    assert_sdk_ok(c, evbus_target_describe(c, "orders", "t1", &t));
    assert_int_equal(backlog_of(t), 4);
    assert_int_equal(t->n_rules, 1);
    assert_string_equal(t->rules[0], "r1");
    assert_int_equal(t->in_flight + t->delivered + t->retried + t->dead_lettered + t->dropped, 0);
    uint64_t t1_id = t->target_id;
    evbus_target_info_free(t);
    assert_sdk_err(c, evbus_target_describe(c, "orders", "ghost", &t), EVBUS_ENOTFOUND, "ghost");

    /* Shared by r2; the limit of 5 per rule. */
    evbus_target_spec again = spec("t1");
    again.dead_letter = "dlq";
    assert_sdk_ok(c, evbus_target_put(c, "orders", "r2", &again, 1, NULL));
    evbus_target_spec more[4] = {spec("m1"), spec("m2"), spec("m3"), spec("m4")};
    assert_sdk_ok(c, evbus_target_put(c, "orders", "r1", more, 4, &res));
    assert_int_equal(res->failed_count, 1);
    assert_string_equal(res->failed[0].id, "m4");
    assert_int_equal(res->failed[0].code, EVBUS_ETOOBIG);
    assert_contains(res->failed[0].message, "5 targets");
    evbus_targets_result_free(res);
    assert_sdk_ok(c, evbus_target_describe(c, "orders", "t1", &t));
    assert_int_equal(t->n_rules, 2);
    assert_int_equal(t->target_id, t1_id);
    evbus_target_info_free(t);

    /* Remove: from r1 it stays (r2 has it); from r2 too, and it is gone. */
    const char *ids[2] = {"t1", "ghost"};
    assert_sdk_ok(c, evbus_target_remove(c, "orders", "r1", ids, 2, &res));
    assert_int_equal(res->failed_count, 1);
    assert_string_equal(res->failed[0].id, "ghost");
    assert_int_equal(res->failed[0].code, EVBUS_ENOTFOUND);
    evbus_targets_result_free(res);
    assert_sdk_ok(c, evbus_target_describe(c, "orders", "t1", &t));
    assert_int_equal(t->n_rules, 1);
    assert_string_equal(t->rules[0], "r2");
    evbus_target_info_free(t);
    assert_sdk_ok(c, evbus_target_remove(c, "orders", "r2", ids, 1, NULL));
    assert_sdk_err(c, evbus_target_describe(c, "orders", "t1", &t), EVBUS_ENOTFOUND, NULL);
    /* Put again: a new target (new id, cursors at the current end). */
    assert_sdk_ok(c, evbus_target_put(c, "orders", "r2", &again, 1, NULL));
    assert_sdk_ok(c, evbus_target_describe(c, "orders", "t1", &t));
    assert_true(t->target_id > t1_id);
    assert_int_equal(backlog_of(t), 0);
    evbus_target_info_free(t);
    /* Deleting the rule removes its links: r1's targets only it used are gone. */
    assert_sdk_ok(c, evbus_rule_delete(c, "orders", "r1"));
    assert_sdk_err(c, evbus_target_describe(c, "orders", "m1", &t), EVBUS_ENOTFOUND, NULL);
    assert_sdk_ok(c, evbus_target_describe(c, "orders", "dlq", &t)); /* t1's dead letter */
    assert_int_equal(t->n_rules, 0);
    evbus_target_info_free(t);
    evbus_client_destroy(c);
}

/* ------------------------------------------------------------------- CLI */

static void test_cli_targets(void **state)
{
    (void)state;
    char *out = NULL;
    CTL(0, NULL, "bus", "create", "clibus", "--partitions", "3");
    CTL(0, NULL, "rule", "put", "clibus", "r", "--pattern", "{\"source\":[\"shop\"]}");
    CTL(0, &out, "target", "put", "clibus", "r", "dl");
    assert_contains(out, "put target dl");
    free(out);
    CTL(0, &out, "target", "put", "clibus", "r", "w", "--max-attempts", "2", "--max-age", "600",
        "--dead-letter", "dl", "--input-template", "\"<s> happened\"", "--input-paths-map",
        "{\"s\":\"$.source\"}");
    free(out);
    /* The leader checks the delivery shape fully (delivery/transform) before proposing. */
    CTL2(1, &out, "target", "put", "clibus", "r", "bad", "--input-template", "\"<nope> x\"",
         "--input-paths-map", "{\"s\":\"$.source\"}");
    assert_contains(out, "InputTemplate contains invalid placeholder nope");
    free(out);
    CTL2(1, &out, "target", "put", "clibus", "r", "bad", "--input-path", "$.detail[");
    assert_contains(out, "InputPath");
    free(out);
    CTL(0, &out, "target", "list", "clibus", "r");
    assert_contains(out, "TARGET");
    assert_contains(out, "input transformer");
    free(out);
    CTL(0, &out, "--json", "target", "list", "clibus", "r");
    json_t *arr = tl_parse_json(out);
    free(out);
    assert_int_equal(json_array_size(arr), 2);
    json_t *w = json_array_get(arr, 1);
    assert_string_equal(tl_str_of(w, "id"), "w");
    assert_int_equal(tl_int_of(w, "max_attempts"), 2);
    assert_int_equal(tl_int_of(w, "max_age_s"), 600);
    assert_string_equal(tl_str_of(w, "dead_letter"), "dl");
    assert_string_equal(tl_str_of(w, "input_shape"), "input_transformer");
    json_decref(arr);
    CTL(0, &out, "target", "describe", "clibus", "w");
    assert_contains(out, "dead letter:    dl");
    assert_contains(out, "PARTITION  CURSOR");
    assert_contains(out, "dead-lettered:");
    free(out);
    CTL(0, &out, "--json", "target", "describe", "clibus", "w");
    json_t *d = tl_parse_json(out);
    free(out);
    assert_int_equal(json_array_size(json_object_get(d, "partitions")), 3);
    assert_int_equal(tl_int_of(d, "backlog"), 0);
    assert_int_equal(tl_int_of(d, "retried"), 0);
    json_decref(d);
    /* Errors: a usage error (exit 2), a refused entry (exit 1 with the reason). */
    CTL2(2, &out, "target", "put", "clibus", "r", "x", "--input", "1", "--input-path", "$.a");
    free(out);
    CTL2(2, &out, "target", "put", "clibus", "r", "x", "--max-attempts", "186");
    free(out);
    CTL2(1, &out, "target", "put", "clibus", "r", "x", "--dead-letter", "nope");
    assert_contains(out, "dead-letter target does not exist");
    free(out);
    CTL2(1, &out, "target", "put", "clibus", "r", "x", "--input-path", "detail");
    assert_contains(out, "JSONPath");
    free(out);
    CTL2(1, &out, "target", "describe", "clibus", "nope");
    assert_contains(out, "EVBUS_ENOTFOUND");
    free(out);
    CTL(0, &out, "--json", "target", "remove", "clibus", "r", "w");
    json_t *rm = tl_parse_json(out);
    free(out);
    assert_int_equal(tl_int_of(rm, "failed_entry_count"), 0);
    json_decref(rm);
    CTL2(1, &out, "target", "remove", "clibus", "r", "w");
    assert_contains(out, "no such target");
    free(out);
    CTL(0, &out, "target", "list", "clibus", "r");
    assert_contains(out, "dl");
    free(out);
}

/* --------------------------------------------------------------- restart */

static void test_targets_survive_restart(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "durable-t", 2));
    assert_sdk_ok(c, evbus_rule_put(c, "durable-t", "r", "{\"source\":[\"shop\"]}", NULL, 0, NULL));
    publish_n(c, "durable-t", 3);
    evbus_target_spec s = spec("keep");
    s.max_attempts = 0;
    s.input = "{\"constant\":true}";
    assert_sdk_ok(c, evbus_target_put(c, "durable-t", "r", &s, 1, NULL));
    publish_n(c, "durable-t", 5);
    evbus_target_info *before = NULL;
    assert_sdk_ok(c, evbus_target_describe(c, "durable-t", "keep", &before));
    evbus_client_destroy(c);

    assert_int_equal(tl_evbusd_stop(&g_node, SIGTERM, 0), 0);
    assert_int_equal(tl_evbusd_start(&g_node, g_main_args, 0), 0);
    assert_int_equal(tl_wait_leader(g_node.client_addr, 15000, NULL), 0);

    c = tl_connect(g_node.client_addr);
    evbus_target_info *after = NULL;
    assert_sdk_ok(c, evbus_target_describe(c, "durable-t", "keep", &after));
    assert_int_equal(after->target_id, before->target_id);
    assert_int_equal(after->max_attempts, 0);
    assert_string_equal(after->input, "{\"constant\":true}");
    assert_int_equal(after->n_partitions, before->n_partitions);
    for (size_t p = 0; p < after->n_partitions; p++)
        assert_int_equal(after->partitions[p].cursor, before->partitions[p].cursor);
    assert_int_equal(backlog_of(after), 5);
    evbus_target_info_free(after);
    evbus_target_info_free(before);
    evbus_client_destroy(c);
}

/* --------------------------------------------------------------- cluster */

/* Waits (bounded) until node `addr` describes target `name` of `bus` serving `n_rules` rules
 * (0: absent); *out (may be NULL) gets it. */
static void wait_target_on(const char *addr, const char *bus, const char *name, size_t n_rules,
                           evbus_target_info **out)
{
    evbus_client *c = tl_connect(addr);
    uint64_t deadline = tl_now_ms() + WAIT_MS;
    bool ok = false;
    evbus_target_info *t = NULL;
    for (int round = 0; round < 1000 && !ok; round++) {
        int rv = evbus_target_describe(c, bus, name, &t);
        ok = n_rules == 0 ? rv == EVBUS_ENOTFOUND : rv == 0 && t->n_rules == n_rules;
        if (ok || tl_now_ms() >= deadline)
            break;
        evbus_target_info_free(t);
        t = NULL;
        tl_sleep_ms(20);
    }
    if (!ok)
        fprintf(stderr, "node %s: target %s of %s never reached %zu rules\n", addr, name, bus,
                n_rules);
    assert_true(ok);
    if (out)
        *out = t;
    else
        evbus_target_info_free(t);
    evbus_client_destroy(c);
}

static void test_cluster_targets_reach_every_node(void **state)
{
    (void)state;
    cf_cluster cl;
    const char *const extra[] = {"--snapshot-threshold", "16", "--snapshot-trailing", "16", NULL};
    cf_cluster_start(&cl, 41, 3, extra);
    evbus_client *c = tl_connect(cl.servers);
    assert_sdk_ok(c, evbus_bus_create(c, "everywhere", 2));
    assert_sdk_ok(c,
                  evbus_rule_put(c, "everywhere", "a", "{\"source\":[\"shop\"]}", NULL, 0, NULL));
    assert_sdk_ok(c, evbus_rule_put(c, "everywhere", "b", "{\"source\":[\"x\"]}", NULL, 0, NULL));
    publish_n(c, "everywhere", 5);
    /* Through a follower: redirected to the leader. */
    int leader = cf_find_leader(&cl, 7, WAIT_MS);
    assert_true(leader >= 0);
    evbus_client *f = tl_connect(cl.nodes[(leader + 1) % 3].client_addr);
    evbus_target_spec s = spec("shared");
    s.max_attempts = 9;
    assert_sdk_ok(f, evbus_target_put(f, "everywhere", "a", &s, 1, NULL));
    assert_sdk_ok(f, evbus_target_put(f, "everywhere", "b", &s, 1, NULL));
    evbus_client_destroy(f);
    evbus_target_info *ref = NULL;
    wait_target_on(cl.nodes[leader].client_addr, "everywhere", "shared", 2, &ref);
    for (size_t i = 0; i < cl.n_nodes; i++) {
        evbus_target_info *t = NULL;
        wait_target_on(cl.nodes[i].client_addr, "everywhere", "shared", 2, &t);
        assert_int_equal(t->target_id, ref->target_id);
        assert_int_equal(t->max_attempts, 9);
        for (size_t p = 0; p < t->n_partitions; p++)
            assert_int_equal(t->partitions[p].cursor, ref->partitions[p].cursor);
        evbus_target_info_free(t);
    }
    evbus_target_info_free(ref);

    /* A follower that misses more than the trailing log gets targets through a snapshot. */
    leader = cf_find_leader(&cl, 7, WAIT_MS);
    assert_true(leader >= 0);
    size_t down = (size_t)(leader + 1) % 3;
    assert_int_equal(tl_evbusd_stop(&cl.nodes[down], SIGTERM, 0), 0);
    const char *ids[1] = {"shared"};
    assert_sdk_ok(c, evbus_target_remove(c, "everywhere", "a", ids, 1, NULL));
    for (int i = 0; i < 30; i++) {
        char name[16];
        snprintf(name, sizeof(name), "snap-%02d", i);
        evbus_target_spec si = spec(name);
        si.dead_letter = "shared";
        assert_sdk_ok(c, evbus_target_put(c, "everywhere", "b", &si, 1, NULL));
        const char *rm[1] = {name};
        if (i < 29)
            assert_sdk_ok(c, evbus_target_remove(c, "everywhere", "b", rm, 1, NULL));
    }
    cf_node_restart(&cl, down);
    wait_target_on(cl.nodes[down].client_addr, "everywhere", "snap-29", 1, NULL);
    wait_target_on(cl.nodes[down].client_addr, "everywhere", "snap-00", 0, NULL);
    evbus_target_info *t = NULL;
    wait_target_on(cl.nodes[down].client_addr, "everywhere", "shared", 1, &t);
    assert_string_equal(t->rules[0], "b");
    evbus_target_info_free(t);
    evbus_client_destroy(c);
    cf_cluster_stop(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdk_targets),
        cmocka_unit_test(test_cli_targets),
        cmocka_unit_test(test_targets_survive_restart),
        cmocka_unit_test(test_cluster_targets_reach_every_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
