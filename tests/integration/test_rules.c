/*
 * Integration: rules as replicated state, end to end against real evbusd
 * processes on 127.0.0.1, through the SDK and the evbusctl binary.
 *
 *  - put / list / describe / enable / disable / delete through the SDK: ids,
 *    states, indexes, errors (missing bus or rule, bad names, empty pattern);
 *  - invalid patterns are refused with the parser's own message;
 *  - list pages: a node with a small frame limit answers ListRules in several
 *    pages and the SDK joins them, in name order;
 *  - the same through evbusctl: exit codes, human and --json output, @FILE;
 *  - limits: a node started with --max-rules-per-bus 3 --max-pattern-bytes 200
 *    refuses the 4th rule and a longer pattern with EVBUS_ETOOBIG and a message
 *    naming the setting;
 *  - rules survive a restart (ids are not reused afterwards);
 *  - `rule test` finds exactly the stored events that match, per partition or
 *    all, from an offset, with a bounded count;
 *  - `test-pattern` works offline: true/false, exit codes 0/1/2, --explain;
 *  - 3 nodes: a rule put through any node reaches every node's rule list, and
 *    so do its state changes and its deletion (bounded wait per node).
 *
 * Node ids: 1 (main node, small frame limit), 2 (limits), 31..33 (cluster).
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

#define MAIN_FRAME_BYTES "65536" /* ListRules pages of at most 32 KiB */
#define TEST_EVENTS 90
#define TEST_PARTITIONS 3
#define WAIT_MS 15000u

static tl_node g_node;
static const char *g_ctl;

/* evbusctl against the node of this file (tests/lib/testcli.h). */
#define CTL(want, out, ...)                                                                        \
    tl_ctl_run(g_node.client_addr, (want), (out), false, (const char *const[]){__VA_ARGS__, NULL})

#define CTL2(want, out, ...)                                                                       \
    tl_ctl_run(g_node.client_addr, (want), (out), true, (const char *const[]){__VA_ARGS__, NULL})

static const char *const g_main_args[] = {"--max-frame-bytes", MAIN_FRAME_BYTES, NULL};

/* ------------------------------------------------------------------ helpers */

static void write_file(const char *name, const char *text, char *path, size_t path_len)
{
    assert_non_null(tl_tmpdir());
    snprintf(path, path_len, "%s/%s", tl_tmpdir(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static const evbus_rule_info *find_rule(const evbus_rule_info *rules, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
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

/* ---------------------------------------------------------------- SDK CRUD */

static void test_sdk_put_list_describe_delete(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "crud", 2));

    evbus_rule_info *r = NULL;
    assert_sdk_ok(
        c, evbus_rule_put(c, "crud", "orders", "{\"source\":[\"shop\"]}", "all orders", 0, &r));
    assert_non_null(r);
    assert_string_equal(r->bus, "crud");
    assert_string_equal(r->name, "orders");
    assert_string_equal(r->pattern, "{\"source\":[\"shop\"]}");
    assert_string_equal(r->description, "all orders");
    assert_int_equal(r->state, EVBUS_RULE_ENABLED);
    assert_true(r->rule_id >= 1);
    assert_true(r->created_index > 0);
    assert_int_equal(r->updated_index, r->created_index);
    assert_true(r->memory_bytes > 0);
    uint64_t orders_id = r->rule_id, created = r->created_index;
    evbus_rule_info_free(r);

    /* out may be NULL; disabled at creation. */
    assert_sdk_ok(
        c, evbus_rule_put(c, "crud", "audit", "{\"detail-type\":[\"Audit\"]}", NULL, 1, NULL));
    evbus_rule_info *rules = NULL;
    size_t n = 0;
    assert_sdk_ok(c, evbus_rule_list(c, "crud", &rules, &n));
    assert_int_equal(n, 2);
    assert_string_equal(rules[0].name, "audit"); /* name order */
    assert_string_equal(rules[1].name, "orders");
    assert_int_equal(rules[0].state, EVBUS_RULE_DISABLED);
    assert_string_equal(rules[0].description, "");
    assert_true(rules[0].rule_id != orders_id);
    evbus_rule_list_free(rules, n);

    /* Enable, disable; setting the current state again succeeds. */
    assert_sdk_ok(c, evbus_rule_enable(c, "crud", "audit"));
    assert_sdk_ok(c, evbus_rule_enable(c, "crud", "audit"));
    assert_sdk_ok(c, evbus_rule_disable(c, "crud", "orders"));
    assert_sdk_ok(c, evbus_rule_describe(c, "crud", "audit", &r));
    assert_int_equal(r->state, EVBUS_RULE_ENABLED);
    evbus_rule_info_free(r);
    assert_sdk_ok(c, evbus_rule_describe(c, "crud", "orders", &r));
    assert_int_equal(r->state, EVBUS_RULE_DISABLED);
    assert_true(r->updated_index > created);
    evbus_rule_info_free(r);

    /* Replacing keeps the id and takes the new pattern, description and state. */
    assert_sdk_ok(
        c, evbus_rule_put(c, "crud", "orders", "{\"source\":[\"shop\",\"store\"]}", "v2", 0, &r));
    assert_int_equal(r->rule_id, orders_id);
    assert_int_equal(r->created_index, created);
    assert_int_equal(r->state, EVBUS_RULE_ENABLED);
    assert_string_equal(r->description, "v2");
    evbus_rule_info_free(r);

    /* Errors. */
    assert_sdk_err(c, evbus_rule_put(c, "nobus", "x", "{\"a\":[1]}", NULL, 0, NULL),
                   EVBUS_ENOTFOUND, "bus 'nobus' does not exist");
    assert_sdk_err(c, evbus_rule_put(c, "crud", "bad name", "{\"a\":[1]}", NULL, 0, NULL),
                   EVBUS_EINVAL, "rule name");
    char long_name[80];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    assert_sdk_err(c, evbus_rule_put(c, "crud", long_name, "{\"a\":[1]}", NULL, 0, NULL),
                   EVBUS_EINVAL, "1 to 64");
    assert_sdk_err(c, evbus_rule_put(c, "crud", "x", "", NULL, 0, NULL), EVBUS_EINVAL, "empty");
    char desc[600];
    memset(desc, 'd', 513);
    desc[513] = '\0';
    assert_sdk_err(c, evbus_rule_put(c, "crud", "x", "{\"a\":[1]}", desc, 0, NULL), EVBUS_EINVAL,
                   "description");
    assert_sdk_err(c, evbus_rule_describe(c, "crud", "missing", &r), EVBUS_ENOTFOUND,
                   "rule 'missing' does not exist on bus 'crud'");
    assert_null(r);
    assert_sdk_err(c, evbus_rule_enable(c, "crud", "missing"), EVBUS_ENOTFOUND, "missing");
    assert_sdk_err(c, evbus_rule_list(c, "nobus", &rules, &n), EVBUS_ENOTFOUND, "nobus");

    /* Delete, twice. */
    assert_sdk_ok(c, evbus_rule_delete(c, "crud", "audit"));
    assert_sdk_err(c, evbus_rule_delete(c, "crud", "audit"), EVBUS_ENOTFOUND, "audit");
    assert_sdk_ok(c, evbus_rule_list(c, "crud", &rules, &n));
    assert_int_equal(n, 1);
    assert_string_equal(rules[0].name, "orders");
    evbus_rule_list_free(rules, n);

    /* Deleting the bus deletes its rules: a new bus of that name starts with none. */
    assert_sdk_ok(c, evbus_bus_delete(c, "crud"));
    assert_sdk_ok(c, evbus_bus_create(c, "crud", 1));
    assert_sdk_ok(c, evbus_rule_list(c, "crud", &rules, &n));
    assert_int_equal(n, 0);
    assert_null(rules);
    evbus_client_destroy(c);
}

static void test_sdk_invalid_patterns(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "invalid", 1));
    static const struct {
        const char *pattern;
        const char *message; /* the parser's words */
    } bad[] = {
        {"{\"detail\":{\"count\":5}}", "\"detail.count\" must be an object or an array"},
        {"{\"source\":[]}", "Empty arrays are not allowed"},
        {"{\"n\":[{\"NUMERIC\":[\">\",1]}]}", "Unrecognized match type NUMERIC"},
        {"{\"n\":[{\"wildcard\":\"a**b\"}]}", "Consecutive wildcard characters at pos 2"},
        {"{\"ip\":[{\"cidr\":\"10.0.0.0\"}]}", "Malformed CIDR, one '/' required"},
        {"[1]", "invalid event pattern"},
        {"{\"source\":", "invalid event pattern"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_sdk_err(c, evbus_rule_put(c, "invalid", "r", bad[i].pattern, NULL, 0, NULL),
                       EVBUS_EINVAL, bad[i].message);
        evbus_rule_test_result *t = NULL;
        assert_sdk_err(
            c, evbus_rule_test(c, "invalid", bad[i].pattern, EVBUS_ALL_PARTITIONS, 0, 0, &t),
            EVBUS_EINVAL, bad[i].message);
        assert_null(t);
    }
    /* Nothing was stored. */
    evbus_rule_info *rules = NULL;
    size_t n = 9;
    assert_sdk_ok(c, evbus_rule_list(c, "invalid", &rules, &n));
    assert_int_equal(n, 0);
    evbus_client_destroy(c);
}

/* More rules than fit a page of the main node's 64 KiB frame limit. */
static void test_sdk_list_pages(void **state)
{
    (void)state;
    enum { N_RULES = 40 };
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "paged", 1));
    char pattern[2200];
    /* Reverse order of creation: the list is in name order all the same. */
    for (int i = N_RULES - 1; i >= 0; i--) {
        char name[16], value[2000];
        snprintf(name, sizeof(name), "rule-%02d", i);
        memset(value, 'a' + i % 26, sizeof(value) - 1);
        value[sizeof(value) - 1] = '\0';
        snprintf(pattern, sizeof(pattern), "{\"detail\":{\"v\":[\"%s\"]}}", value);
        assert_sdk_ok(c, evbus_rule_put(c, "paged", name, pattern, NULL, i % 2, NULL));
    }
    evbus_rule_info *rules = NULL;
    size_t n = 0;
    assert_sdk_ok(c, evbus_rule_list(c, "paged", &rules, &n));
    assert_int_equal(n, N_RULES);
    for (int i = 0; i < N_RULES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "rule-%02d", i);
        assert_string_equal(rules[i].name, name);
        assert_int_equal(rules[i].state, i % 2 ? EVBUS_RULE_DISABLED : EVBUS_RULE_ENABLED);
        assert_int_equal(strlen(rules[i].pattern),
                         2000 + strlen("{\"detail\":{\"v\":[\"\"]}}") - 1);
    }
    evbus_rule_list_free(rules, n);
    assert_sdk_ok(c, evbus_bus_delete(c, "paged"));
    evbus_client_destroy(c);
}

/* --------------------------------------------------------------------- CLI */

static void test_cli_rules(void **state)
{
    (void)state;
    char *out;
    CTL(0, NULL, "bus", "create", "clibus", "--partitions", "2");

    /* Usage errors: no server contacted, exit 2. */
    CTL2(2, &out, "rule", "put", "clibus", "r1");
    assert_contains(out, "rule put wants --pattern");
    free(out);
    CTL2(2, &out, "rule", "put", "clibus", "r1", "--pattern", "{}", "--disabled=yes");
    assert_contains(out, "--disabled takes no value");
    free(out);
    CTL2(2, &out, "rule", "describe", "clibus");
    assert_contains(out, "'rule describe' wants BUS NAME");
    free(out);
    CTL2(2, &out, "rule", "frob");
    assert_contains(out, "unknown command 'rule frob'");
    free(out);

    /* Human output. */
    CTL(0, &out, "rule", "put", "clibus", "r1", "--pattern", "{\"source\":[\"shop\"]}",
        "--description", "shop orders");
    assert_contains(out, "put rule r1 on bus clibus: ENABLED");
    free(out);
    char path[TL_PATH_MAX];
    write_file("pattern.json", "{\n  \"detail-type\": [\"Audit\"]\n}\n", path, sizeof(path));
    char at[TL_PATH_MAX + 2];
    snprintf(at, sizeof(at), "@%s", path);
    CTL(0, &out, "rule", "put", "clibus", "r2", "--pattern", at, "--disabled");
    assert_contains(out, "DISABLED");
    free(out);
    CTL(0, &out, "rule", "list", "clibus");
    assert_contains(out, "NAME");
    assert_contains(out, "r1");
    assert_contains(out, "{\"source\":[\"shop\"]}");
    assert_contains(out, "{\"detail-type\":[\"Audit\"]}"); /* one line, compact */
    free(out);
    CTL(0, &out, "rule", "describe", "clibus", "r1");
    assert_contains(out, "rule:           r1");
    assert_contains(out, "state:          ENABLED");
    assert_contains(out, "description:    shop orders");
    free(out);

    /* --json. */
    CTL(0, &out, "--json", "rule", "describe", "clibus", "r2");
    json_t *j = tl_parse_json(out);
    free(out);
    assert_string_equal(tl_str_of(j, "name"), "r2");
    assert_string_equal(tl_str_of(j, "bus"), "clibus");
    assert_string_equal(tl_str_of(j, "state"), "DISABLED");
    assert_string_equal(tl_str_of(j, "pattern"), "{\n  \"detail-type\": [\"Audit\"]\n}");
    assert_true(tl_int_of(j, "rule_id") >= 1);
    assert_true(tl_int_of(j, "updated_index") >= tl_int_of(j, "created_index"));
    json_decref(j);
    CTL(0, &out, "--json", "rule", "enable", "clibus", "r2");
    j = tl_parse_json(out);
    free(out);
    assert_string_equal(tl_str_of(j, "state"), "ENABLED");
    json_decref(j);
    CTL(0, &out, "rule", "disable", "clibus", "r1");
    assert_contains(out, "rule r1 of bus clibus is DISABLED");
    free(out);
    CTL(0, &out, "--json", "rule", "list", "clibus");
    j = tl_parse_json(out);
    free(out);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(tl_str_of(json_array_get(j, 0), "name"), "r1");
    assert_string_equal(tl_str_of(json_array_get(j, 0), "state"), "DISABLED");
    assert_string_equal(tl_str_of(json_array_get(j, 1), "name"), "r2");
    assert_string_equal(tl_str_of(json_array_get(j, 1), "state"), "ENABLED");
    json_decref(j);

    /* Failures: exit 1, one line on stderr naming the problem. */
    CTL2(1, &out, "rule", "put", "clibus", "r3", "--pattern", "{\"detail\":{\"count\":5}}");
    assert_contains(out, "invalid event pattern: \"detail.count\" must be an object or an array");
    assert_contains(out, "(EVBUS_EINVAL)");
    free(out);
    CTL2(1, &out, "rule", "describe", "clibus", "r3");
    assert_contains(out, "(EVBUS_ENOTFOUND)");
    free(out);
    CTL2(1, &out, "rule", "put", "clibus", "r3", "--pattern", "@/nonexistent/p.json");
    assert_contains(out, "cannot open /nonexistent/p.json");
    free(out);
    CTL2(1, &out, "rule", "list", "nobus");
    assert_contains(out, "bus 'nobus' does not exist");
    free(out);

    /* Delete. */
    CTL(0, &out, "--json", "rule", "delete", "clibus", "r1");
    j = tl_parse_json(out);
    free(out);
    assert_true(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    CTL(0, &out, "rule", "delete", "clibus", "r2");
    assert_contains(out, "deleted rule r2 of bus clibus");
    free(out);
    CTL2(1, &out, "rule", "delete", "clibus", "r2");
    assert_contains(out, "(EVBUS_ENOTFOUND)");
    free(out);
    CTL(0, &out, "rule", "list", "clibus");
    assert_string_equal(out, "no rules\n");
    free(out);
    CTL(0, &out, "--json", "rule", "list", "clibus");
    assert_string_equal(out, "[]\n");
    free(out);
}

/* ------------------------------------------------------------------ limits */

static void test_limits(void **state)
{
    (void)state;
    tl_node lim;
    const char *const args[] = {"--max-rules-per-bus", "3", "--max-pattern-bytes", "200", NULL};
    assert_int_equal(tl_node_init(&lim, 2), 0);
    assert_int_equal(tl_evbusd_start(&lim, args, 0), 0);
    assert_int_equal(tl_wait_leader(lim.client_addr, 15000, NULL), 0);
    evbus_client *c = tl_connect(lim.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "limited", 1));
    assert_sdk_ok(c, evbus_bus_create(c, "second", 1));
    /* The leader proposes its limits once it leads; they apply from then on. */
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "r%d", i);
        assert_sdk_ok(c, evbus_rule_put(c, "limited", name, "{\"source\":[\"a\"]}", NULL, 0, NULL));
    }
    assert_sdk_err(c, evbus_rule_put(c, "limited", "r3", "{\"source\":[\"a\"]}", NULL, 0, NULL),
                   EVBUS_ETOOBIG, "max-rules-per-bus");
    assert_contains(evbus_client_errmsg(c), "already has 3 rules");
    /* Replacing an existing rule is no new rule; another bus has its own count; a disabled rule
     * counts too. */
    assert_sdk_ok(c, evbus_rule_put(c, "limited", "r2", "{\"source\":[\"b\"]}", NULL, 1, NULL));
    assert_sdk_ok(c, evbus_rule_put(c, "second", "r3", "{\"source\":[\"a\"]}", NULL, 0, NULL));
    assert_sdk_err(c, evbus_rule_put(c, "limited", "r4", "{\"source\":[\"a\"]}", NULL, 0, NULL),
                   EVBUS_ETOOBIG, "max-rules-per-bus");
    /* Pattern bytes: 201 is over, 200 fits. */
    char pattern[256];
    int pad = 200 - (int)strlen("{\"source\":[\"\"]}");
    snprintf(pattern, sizeof(pattern), "{\"source\":[\"%0*d\"]}", pad + 1, 0);
    assert_int_equal(strlen(pattern), 201);
    assert_sdk_err(c, evbus_rule_put(c, "second", "big", pattern, NULL, 0, NULL), EVBUS_ETOOBIG,
                   "over the limit of 200 bytes (max-pattern-bytes)");
    evbus_rule_test_result *t = NULL;
    assert_sdk_err(c, evbus_rule_test(c, "second", pattern, 0, 0, 0, &t), EVBUS_ETOOBIG,
                   "max-pattern-bytes");
    snprintf(pattern, sizeof(pattern), "{\"source\":[\"%0*d\"]}", pad, 0);
    assert_int_equal(strlen(pattern), 200);
    assert_sdk_ok(c, evbus_rule_put(c, "second", "big", pattern, NULL, 0, NULL));
    /* Through the CLI: exit 1 and the message. */
    char *out;
    tl_ctl_run(lim.client_addr, 1, &out, true,
               (const char *const[]){"rule", "put", "limited", "r9", "--pattern",
                                     "{\"source\":[\"a\"]}", NULL});
    assert_contains(out, "max-rules-per-bus");
    assert_contains(out, "(EVBUS_ETOOBIG)");
    free(out);
    evbus_client_destroy(c);
    assert_int_equal(tl_evbusd_stop(&lim, SIGTERM, 0), 0);
}

/* ----------------------------------------------------------------- restart */

static void test_rules_survive_restart(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    assert_sdk_ok(c, evbus_bus_create(c, "durable", 2));
    assert_sdk_ok(c,
                  evbus_rule_put(c, "durable", "keep-on", "{\"source\":[\"x\"]}", "on", 0, NULL));
    assert_sdk_ok(c,
                  evbus_rule_put(c, "durable", "keep-off", "{\"source\":[\"y\"]}", "off", 1, NULL));
    assert_sdk_ok(c, evbus_rule_put(c, "durable", "gone", "{\"source\":[\"z\"]}", NULL, 0, NULL));
    assert_sdk_ok(c, evbus_rule_delete(c, "durable", "gone"));
    evbus_rule_info *before = NULL;
    size_t n_before = 0;
    assert_sdk_ok(c, evbus_rule_list(c, "durable", &before, &n_before));
    assert_int_equal(n_before, 2);
    uint64_t max_id = 0;
    for (size_t i = 0; i < n_before; i++)
        max_id = before[i].rule_id > max_id ? before[i].rule_id : max_id;
    evbus_client_destroy(c);

    assert_int_equal(tl_evbusd_stop(&g_node, SIGTERM, 0), 0);
    assert_int_equal(tl_evbusd_start(&g_node, g_main_args, 0), 0);
    assert_int_equal(tl_wait_leader(g_node.client_addr, 15000, NULL), 0);

    c = tl_connect(g_node.client_addr);
    evbus_rule_info *after = NULL;
    size_t n_after = 0;
    assert_sdk_ok(c, evbus_rule_list(c, "durable", &after, &n_after));
    assert_int_equal(n_after, n_before);
    for (size_t i = 0; i < n_after; i++) {
        assert_string_equal(after[i].name, before[i].name);
        assert_string_equal(after[i].pattern, before[i].pattern);
        assert_string_equal(after[i].description, before[i].description);
        assert_int_equal(after[i].state, before[i].state);
        assert_int_equal(after[i].rule_id, before[i].rule_id);
        assert_int_equal(after[i].created_index, before[i].created_index);
        assert_int_equal(after[i].updated_index, before[i].updated_index);
    }
    assert_int_equal(find_rule(after, n_after, "keep-off")->state, EVBUS_RULE_DISABLED);
    evbus_rule_list_free(after, n_after);
    evbus_rule_list_free(before, n_before);
    /* Ids are never reused, not even the deleted one's. */
    evbus_rule_info *r = NULL;
    assert_sdk_ok(c, evbus_rule_put(c, "durable", "gone", "{\"source\":[\"z\"]}", NULL, 0, &r));
    assert_true(r->rule_id > max_id + 1);
    evbus_rule_info_free(r);
    /* The restored state accepts changes. */
    assert_sdk_ok(c, evbus_rule_enable(c, "durable", "keep-off"));
    evbus_client_destroy(c);
}

/* --------------------------------------------------------------- rule test */

static const char *const SOURCES[] = {"shop", "billing", "shipping"};

typedef struct stored {
    uint32_t partition;
    uint64_t offset;
    int source; /* index into SOURCES */
    int i;      /* detail.i */
} stored;

static stored g_stored[TEST_EVENTS];

static void publish_test_events(evbus_client *c)
{
    assert_sdk_ok(c, evbus_bus_create(c, "tested", TEST_PARTITIONS));
    for (int i = 0; i < TEST_EVENTS; i += 10) {
        evbus_entry e[10];
        char details[10][64], keys[10][16];
        for (int k = 0; k < 10; k++) {
            memset(&e[k], 0, sizeof(e[k]));
            snprintf(details[k], sizeof(details[k]), "{\"i\":%d,\"even\":%s}", i + k,
                     (i + k) % 2 ? "false" : "true");
            snprintf(keys[k], sizeof(keys[k]), "k%d", (i + k) % 7);
            e[k].source = SOURCES[(i + k) % 3];
            e[k].detail_type = "Test";
            e[k].detail = details[k];
            e[k].partition_key = keys[k];
        }
        evbus_put_result res[10];
        size_t failed = 9;
        assert_sdk_ok(c, evbus_put_events(c, "tested", e, 10, res, &failed, NULL));
        assert_int_equal(failed, 0);
        for (int k = 0; k < 10; k++)
            g_stored[i + k] = (stored){res[k].partition, res[k].offset, (i + k) % 3, i + k};
    }
}

/* Whether stored event `s` is expected for source `src` (-1: any), partition (EVBUS_ALL_PARTITIONS:
 * any), from offset `from`, even only when `even`. */
static bool expected(const stored *s, int src, uint32_t partition, uint64_t from, bool even)
{
    return (src < 0 || s->source == src) &&
           (partition == EVBUS_ALL_PARTITIONS || s->partition == partition) && s->offset >= from &&
           (!even || s->i % 2 == 0);
}

/* Asserts the matches are exactly the expected stored events, in partition then offset order. */
static void check_matches(const evbus_rule_match *m, size_t n, int src, uint32_t partition,
                          uint64_t from, bool even)
{
    size_t want = 0;
    for (int i = 0; i < TEST_EVENTS; i++)
        want += expected(&g_stored[i], src, partition, from, even);
    assert_int_equal(n, want);
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            assert_true(m[k].partition > m[k - 1].partition ||
                        (m[k].partition == m[k - 1].partition && m[k].offset > m[k - 1].offset));
        json_t *env = tl_parse_json(m[k].json);
        assert_int_equal(tl_int_of(env, "offset"), m[k].offset);
        assert_int_equal(tl_int_of(env, "partition"), m[k].partition);
        json_int_t i = json_integer_value(json_object_get(json_object_get(env, "detail"), "i"));
        assert_true(i >= 0 && i < TEST_EVENTS);
        const stored *s = &g_stored[i];
        assert_int_equal(s->partition, m[k].partition);
        assert_int_equal(s->offset, m[k].offset);
        assert_true(expected(s, src, partition, from, even));
        assert_string_equal(tl_str_of(env, "source"), SOURCES[s->source]);
        json_decref(env);
    }
}

/* The partition holding the most test events (at least a third of them). */
static uint32_t busiest_partition(void)
{
    size_t count[TEST_PARTITIONS] = {0};
    uint32_t best = 0;
    for (int i = 0; i < TEST_EVENTS; i++)
        count[g_stored[i].partition]++;
    for (uint32_t p = 1; p < TEST_PARTITIONS; p++)
        if (count[p] > count[best])
            best = p;
    return best;
}

static void test_rule_test(void **state)
{
    (void)state;
    evbus_client *c = tl_connect(g_node.client_addr);
    publish_test_events(c);
    uint32_t busy = busiest_partition();
    char busy_arg[16];
    snprintf(busy_arg, sizeof(busy_arg), "%u", busy);

    /* Every partition, everything. */
    evbus_rule_test_result *t = NULL;
    assert_sdk_ok(c, evbus_rule_test(c, "tested", "{\"source\":[\"billing\"]}",
                                     EVBUS_ALL_PARTITIONS, 0, 0, &t));
    assert_int_equal(t->scanned, TEST_EVENTS);
    assert_int_equal(t->n_partitions, TEST_PARTITIONS);
    for (size_t p = 0; p < t->n_partitions; p++) {
        assert_int_equal(t->partitions[p].partition, p);
        assert_int_equal(t->partitions[p].next_offset, t->partitions[p].end_offset);
    }
    check_matches(t->matches, t->n_matches, 1, EVBUS_ALL_PARTITIONS, 0, false);
    evbus_rule_test_result_free(t);

    /* Several fields, operators: billing or shipping, even i. */
    const char *pat = "{\"source\":[{\"prefix\":\"s\"},\"billing\"],\"detail\":{\"even\":[true]}}";
    assert_sdk_ok(c, evbus_rule_test(c, "tested", pat, EVBUS_ALL_PARTITIONS, 0, 0, &t));
    size_t want = 0;
    for (int i = 0; i < TEST_EVENTS; i++)
        want += g_stored[i].i % 2 == 0;
    assert_int_equal(t->n_matches, want); /* shop, shipping (prefix s) and billing: every source */
    check_matches(t->matches, t->n_matches, -1, EVBUS_ALL_PARTITIONS, 0, true);
    evbus_rule_test_result_free(t);

    /* One partition, from an offset; then a bounded count continued from next_offset. */
    assert_sdk_ok(c, evbus_rule_test(c, "tested", "{\"source\":[\"shop\"]}", busy, 5, 0, &t));
    assert_int_equal(t->n_partitions, 1);
    assert_int_equal(t->partitions[0].partition, busy);
    assert_true(t->n_matches > 0);
    check_matches(t->matches, t->n_matches, 0, busy, 5, false);
    uint64_t end = t->partitions[0].end_offset;
    evbus_rule_test_result_free(t);
    uint64_t from = 0;
    size_t total = 0, pages = 0;
    while (from < end && pages < 100) {
        assert_sdk_ok(c,
                      evbus_rule_test(c, "tested", "{\"source\":[\"shop\"]}", busy, from, 4, &t));
        assert_true(t->scanned <= 4);
        assert_int_equal(t->partitions[0].next_offset, from + t->scanned);
        for (size_t k = 0; k < t->n_matches; k++)
            assert_true(t->matches[k].offset >= from && t->matches[k].offset < from + 4);
        total += t->n_matches;
        from = t->partitions[0].next_offset;
        evbus_rule_test_result_free(t);
        pages++;
    }
    size_t shop_p1 = 0;
    for (int i = 0; i < TEST_EVENTS; i++)
        shop_p1 += expected(&g_stored[i], 0, busy, 0, false);
    assert_int_equal(total, shop_p1);

    /* No match, errors. */
    assert_sdk_ok(c, evbus_rule_test(c, "tested", "{\"source\":[\"nobody\"]}", EVBUS_ALL_PARTITIONS,
                                     0, 0, &t));
    assert_int_equal(t->n_matches, 0);
    assert_int_equal(t->scanned, TEST_EVENTS);
    evbus_rule_test_result_free(t);
    assert_sdk_err(c, evbus_rule_test(c, "tested", "{\"a\":[1]}", 7, 0, 0, &t), EVBUS_EINVAL,
                   "partition 7 does not exist");
    assert_sdk_err(c, evbus_rule_test(c, "nobus", "{\"a\":[1]}", 0, 0, 0, &t), EVBUS_ENOTFOUND,
                   "nobus");
    evbus_client_destroy(c);

    /* The CLI prints exactly the matching envelopes, one per line, in both modes. */
    char *out, *json_out;
    CTL(0, &out, "rule", "test", "tested", "--pattern", "{\"source\":[\"shipping\"]}");
    CTL(0, &json_out, "--json", "rule", "test", "tested", "--pattern",
        "{\"source\":[\"shipping\"]}");
    assert_string_equal(out, json_out);
    free(json_out);
    evbus_rule_match lines[TEST_EVENTS];
    size_t n = 0;
    char *save = NULL;
    for (char *ln = strtok_r(out, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        assert_true(n < TEST_EVENTS);
        json_t *env = tl_parse_json(ln);
        lines[n].partition = (uint32_t)tl_int_of(env, "partition");
        lines[n].offset = (uint64_t)tl_int_of(env, "offset");
        lines[n].json = ln;
        lines[n].json_len = strlen(ln);
        json_decref(env);
        n++;
    }
    check_matches(lines, n, 2, EVBUS_ALL_PARTITIONS, 0, false);
    free(out);

    /* --partition, --from, --count: at most COUNT events examined in that partition. */
    CTL(0, &out, "rule", "test", "tested", "--pattern", "{\"detail-type\":[\"Test\"]}",
        "--partition", busy_arg, "--from", "3", "--count", "5");
    n = 0;
    for (char *ln = strtok_r(out, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        json_t *env = tl_parse_json(ln);
        assert_int_equal(tl_int_of(env, "partition"), busy);
        assert_int_equal(tl_int_of(env, "offset"), 3 + (json_int_t)n);
        json_decref(env);
        n++;
    }
    assert_int_equal(n, 5);
    free(out);
    CTL2(1, &out, "rule", "test", "tested", "--pattern", "{\"source\":\"shop\"}");
    assert_contains(out, "\"source\" must be an object or an array");
    free(out);
    CTL2(1, &out, "rule", "test", "tested", "--pattern", "{\"a\":[1]}", "--partition", "9");
    assert_contains(out, "partition 9 does not exist");
    free(out);
    CTL2(2, &out, "rule", "test", "tested");
    assert_contains(out, "rule test wants --pattern");
    free(out);
}

/* ------------------------------------------------------------ test-pattern */

/* Offline: EVBUS_SERVERS names a port where nothing listens. */
#define OFFLINE(want, out, ...)                                                                    \
    tl_ctl_run("127.0.0.1:1", (want), (out), false, (const char *const[]){__VA_ARGS__, NULL})
#define OFFLINE2(want, out, ...)                                                                   \
    tl_ctl_run("127.0.0.1:1", (want), (out), true, (const char *const[]){__VA_ARGS__, NULL})

static void test_test_pattern_offline(void **state)
{
    (void)state;
    const char *event = "{\"source\":\"shop\",\"detail-type\":\"OrderPlaced\","
                        "\"detail\":{\"amount\":120,\"customer\":{\"tier\":\"gold\"}}}";
    char *out;
    OFFLINE(0, &out, "test-pattern", "--pattern", "{\"source\":[\"shop\"]}", "--event", event);
    assert_string_equal(out, "true\n");
    free(out);
    OFFLINE(
        0, &out, "test-pattern", "--pattern",
        "{\"detail\":{\"amount\":[{\"numeric\":[\">\",100]}],\"customer\":{\"tier\":[\"gold\"]}}}",
        "--event", event);
    assert_string_equal(out, "true\n");
    free(out);
    OFFLINE(1, &out, "test-pattern", "--pattern", "{\"source\":[\"billing\"]}", "--event", event);
    assert_string_equal(out, "false\n");
    free(out);

    /* --explain: the first failing field and why, for a non-match only. */
    OFFLINE(1, &out, "test-pattern", "--explain", "--pattern",
            "{\"source\":[\"shop\"],\"detail\":{\"amount\":[{\"numeric\":[\">\",500]}]}}",
            "--event", event);
    assert_true(strncmp(out, "false\n", 6) == 0);
    assert_contains(out + 6, "detail.amount");
    free(out);
    OFFLINE(0, &out, "test-pattern", "--explain", "--pattern", "{\"source\":[\"shop\"]}", "--event",
            event);
    assert_string_equal(out, "true\n");
    free(out);
    OFFLINE(1, &out, "--json", "test-pattern", "--explain", "--pattern",
            "{\"detail\":{\"missing\":[1]}}", "--event", event);
    json_t *j = tl_parse_json(out);
    free(out);
    assert_true(json_is_false(json_object_get(j, "match")));
    assert_contains(tl_str_of(j, "explain"), "detail.missing");
    json_decref(j);
    OFFLINE(0, &out, "--json", "test-pattern", "--pattern", "{\"source\":[\"shop\"]}", "--event",
            event);
    j = tl_parse_json(out);
    free(out);
    assert_true(json_is_true(json_object_get(j, "match")));
    assert_null(json_object_get(j, "explain"));
    json_decref(j);

    /* @FILE for both. */
    char ppath[TL_PATH_MAX], epath[TL_PATH_MAX], pat[TL_PATH_MAX + 2], ev[TL_PATH_MAX + 2];
    write_file("tp-pattern.json", "{\"detail-type\": [\"OrderPlaced\"]}\n", ppath, sizeof(ppath));
    write_file("tp-event.json", event, epath, sizeof(epath));
    snprintf(pat, sizeof(pat), "@%s", ppath);
    snprintf(ev, sizeof(ev), "@%s", epath);
    OFFLINE(0, &out, "test-pattern", "--pattern", pat, "--event", ev);
    assert_string_equal(out, "true\n");
    free(out);

    /* Invalid pattern or event: exit 2, the reason on stderr, nothing on stdout. */
    OFFLINE(2, &out, "test-pattern", "--pattern", "{\"source\":\"shop\"}", "--event", event);
    assert_string_equal(out, "");
    free(out);
    OFFLINE2(2, &out, "test-pattern", "--pattern", "{\"source\":\"shop\"}", "--event", event);
    assert_contains(out, "invalid event pattern: \"source\" must be an object or an array");
    free(out);
    OFFLINE2(2, &out, "test-pattern", "--pattern", "{\"n\":[{\"NUMERIC\":[\">\",1]}]}", "--event",
             event);
    assert_contains(out, "Unrecognized match type NUMERIC");
    free(out);
    OFFLINE2(2, &out, "test-pattern", "--pattern", "{\"source\":[\"shop\"]}", "--event", "[1,2]");
    assert_contains(out, "invalid event");
    free(out);
    OFFLINE2(2, &out, "test-pattern", "--pattern", "{\"source\":[\"shop\"]}", "--event", "{");
    assert_contains(out, "invalid event");
    free(out);
    OFFLINE2(2, &out, "test-pattern", "--pattern", "{\"source\":[\"shop\"]}");
    assert_contains(out, "test-pattern wants --pattern");
    free(out);
}

/* ----------------------------------------------------------------- cluster */

/* Waits (bounded) until node `addr` lists rule `name` of `bus` in `state` (0: absent). */
static void wait_rule_on(const char *addr, const char *bus, const char *name, int state,
                         const char *pattern)
{
    evbus_client *c = tl_connect(addr);
    uint64_t deadline = tl_now_ms() + WAIT_MS;
    bool ok = false;
    for (int round = 0; round < 1000 && !ok; round++) {
        evbus_rule_info *rules = NULL;
        size_t n = 0;
        int rv = evbus_rule_list(c, bus, &rules, &n);
        if (rv == 0) {
            const evbus_rule_info *r = find_rule(rules, n, name);
            ok = state == 0 ? r == NULL
                            : r != NULL && (int)r->state == state &&
                                  (pattern == NULL || strcmp(r->pattern, pattern) == 0);
        }
        evbus_rule_list_free(rules, n);
        if (ok || tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(20);
    }
    if (!ok)
        fprintf(stderr, "node %s: rule %s of %s never reached state %d\n", addr, name, bus, state);
    assert_true(ok);
    evbus_client_destroy(c);
}

static void test_cluster_rules_reach_every_node(void **state)
{
    (void)state;
    cf_cluster cl;
    /* Tiny snapshot intervals: the follower restarted below catches up by installing the
     * leader's snapshot, so its rules come from the snapshot. */
    const char *const extra[] = {"--snapshot-threshold", "16", "--snapshot-trailing", "16", NULL};
    cf_cluster_start(&cl, 31, 3, extra);
    /* Through the whole server list: the SDK follows the leader. */
    evbus_client *c = tl_connect(cl.servers);
    assert_sdk_ok(c, evbus_bus_create(c, "everywhere", 2));
    const char *pattern = "{\"source\":[\"replicated\"]}";
    evbus_rule_info *r = NULL;
    assert_sdk_ok(c, evbus_rule_put(c, "everywhere", "rep", pattern, "on every node", 0, &r));
    uint64_t rule_id = r->rule_id;
    evbus_rule_info_free(r);
    for (size_t i = 0; i < cl.n_nodes; i++)
        wait_rule_on(cl.nodes[i].client_addr, "everywhere", "rep", EVBUS_RULE_ENABLED, pattern);
    /* Every node has the same id and indexes for it. */
    for (size_t i = 0; i < cl.n_nodes; i++) {
        evbus_client *ci = tl_connect(cl.nodes[i].client_addr);
        assert_sdk_ok(ci, evbus_rule_describe(ci, "everywhere", "rep", &r));
        assert_int_equal(r->rule_id, rule_id);
        assert_string_equal(r->description, "on every node");
        evbus_rule_info_free(r);
        evbus_client_destroy(ci);
    }
    /* A write sent to a follower is redirected to the leader. */
    int leader = cf_find_leader(&cl, 7, WAIT_MS);
    assert_true(leader >= 0);
    evbus_client *f = tl_connect(cl.nodes[(leader + 1) % 3].client_addr);
    assert_sdk_ok(f, evbus_rule_disable(f, "everywhere", "rep"));
    evbus_client_destroy(f);
    for (size_t i = 0; i < cl.n_nodes; i++)
        wait_rule_on(cl.nodes[i].client_addr, "everywhere", "rep", EVBUS_RULE_DISABLED, pattern);
    assert_sdk_ok(c, evbus_rule_delete(c, "everywhere", "rep"));
    for (size_t i = 0; i < cl.n_nodes; i++)
        wait_rule_on(cl.nodes[i].client_addr, "everywhere", "rep", 0, NULL);

    /* A follower that misses more than the trailing log gets the rules through a snapshot. */
    leader = cf_find_leader(&cl, 7, WAIT_MS);
    assert_true(leader >= 0);
    size_t down = (size_t)(leader + 1) % 3;
    assert_int_equal(tl_evbusd_stop(&cl.nodes[down], SIGTERM, 0), 0);
    for (int i = 0; i < 40; i++) {
        char name[16], pat[64];
        snprintf(name, sizeof(name), "snap-%02d", i);
        snprintf(pat, sizeof(pat), "{\"detail\":{\"i\":[%d]}}", i);
        assert_sdk_ok(c, evbus_rule_put(c, "everywhere", name, pat, NULL, i % 2, NULL));
    }
    assert_sdk_ok(c, evbus_rule_delete(c, "everywhere", "snap-00"));
    cf_node_restart(&cl, down);
    wait_rule_on(cl.nodes[down].client_addr, "everywhere", "snap-39", EVBUS_RULE_DISABLED,
                 "{\"detail\":{\"i\":[39]}}");
    wait_rule_on(cl.nodes[down].client_addr, "everywhere", "snap-00", 0, NULL);
    evbus_client *d = tl_connect(cl.nodes[down].client_addr);
    evbus_rule_info *rules = NULL;
    size_t n = 0;
    assert_sdk_ok(d, evbus_rule_list(d, "everywhere", &rules, &n));
    assert_int_equal(n, 39);
    assert_int_equal(find_rule(rules, n, "snap-10")->state, EVBUS_RULE_ENABLED);
    evbus_rule_list_free(rules, n);
    evbus_client_destroy(d);
    evbus_client_destroy(c);
    cf_cluster_stop(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdk_put_list_describe_delete),
        cmocka_unit_test(test_sdk_invalid_patterns),
        cmocka_unit_test(test_sdk_list_pages),
        cmocka_unit_test(test_cli_rules),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_rules_survive_restart),
        cmocka_unit_test(test_rule_test),
        cmocka_unit_test(test_test_pattern_offline),
        cmocka_unit_test(test_cluster_rules_reach_every_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
