/* Unit tests of cluster/fsm on a real RocksDB in a temp dir: offsets assigned in apply, gap-free
 * per partition; bad ops rejected in the result; replayed entries skipped; state survives a
 * reopen; metadata snapshots restore; bus deletion removes events; key order is numeric order;
 * rule commands change the rule set and each bus's matcher, survive a reopen and a snapshot, and
 * go with their bus; targets (limits, dead letters, cursors that only move forward, removal of
 * unused targets) survive a reopen and a snapshot. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/fsm.h"
#include "command.pb.h"
#include "evbus/errors.h"
#include "lib/testlib.h"
#include "storage/keys.h"
#include "storage/store.h"
#include "wire/wire.h"

static uint64_t g_index;
static uint64_t next_index(void *arg)
{
    (void)arg;
    return g_index;
}

typedef struct ops_builder {
    evbuscmd_Op ops[16];
    char *bytes[16];
    size_t n;
} ops_builder;

static void add_create(ops_builder *b, const char *name, uint32_t parts)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_create_bus_tag;
    op->op.create_bus.name = (char *)name;
    op->op.create_bus.partitions = parts;
}

static void add_delete(ops_builder *b, const char *name)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_delete_bus_tag;
    op->op.delete_bus.name = (char *)name;
}

static void add_publish(ops_builder *b, uint32_t bus_id, uint32_t part, const char *env)
{
    char *ba = strdup(env);
    b->bytes[b->n] = ba;
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_publish_tag;
    op->op.publish.bus_id = bus_id;
    op->op.publish.partition = part;
    op->op.publish.envelope = ba;
}

static void add_put_rule(ops_builder *b, uint32_t bus_id, const char *name, const char *pattern,
                         int disabled)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_put_rule_tag;
    op->op.put_rule.bus_id = bus_id;
    op->op.put_rule.name = (char *)name;
    op->op.put_rule.pattern = (char *)pattern;
    op->op.put_rule.description = (char *)"d";
    op->op.put_rule.disabled = disabled != 0;
}

static void add_delete_rule(ops_builder *b, uint32_t bus_id, const char *name)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_delete_rule_tag;
    op->op.delete_rule.bus_id = bus_id;
    op->op.delete_rule.name = (char *)name;
}

static void add_rule_state(ops_builder *b, uint32_t bus_id, const char *name, int enabled)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_set_rule_state_tag;
    op->op.set_rule_state.bus_id = bus_id;
    op->op.set_rule_state.name = (char *)name;
    op->op.set_rule_state.enabled = enabled != 0;
}

static void add_rule_params(ops_builder *b, uint32_t max_rules, uint32_t max_pattern_bytes)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_set_params_tag;
    op->op.set_params.max_rules_per_bus = max_rules;
    op->op.set_params.max_pattern_bytes = max_pattern_bytes;
}

static const fsm_entry_result *apply(fsm *f, uint64_t index, ops_builder *b)
{
    evbuscmd_Command cmd = evbuscmd_Command_init_zero;
    cmd.version = 1;
    cmd.time_ms = 1700000000000ull;
    cmd.ops = b->ops;
    cmd.ops_count = (pb_size_t)b->n;
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_encode_body(evbuscmd_Command_fields, &cmd, &buf, &len), 0);
    uint8_t *entry = malloc(fsm_entry_size(len));
    memcpy(entry + FSM_ENTRY_HEADER, buf, len);
    fsm_entry_frame(entry, len);
    g_index = index;
    const fsm_entry_result *r;
    assert_int_equal(fsm_apply(f, entry, fsm_entry_size(len), &r), 0);
    assert_int_equal(fsm_entry_size(len) % 8, 0);
    free(entry);
    free(buf);
    for (size_t i = 0; i < b->n; i++)
        free(b->bytes[i]);
    memset(b, 0, sizeof(*b));
    return r;
}

static store *open_db(const char *name)
{
    char dir[TL_PATH_MAX];
    assert_int_equal(tl_subdir(name, dir, sizeof(dir)), 0);
    store *db;
    char err[512];
    assert_int_equal(store_open(dir, &db, err, sizeof(err)), 0);
    return db;
}

static void open_fsm(fsm *f, store *db)
{
    char err[512];
    assert_int_equal(fsm_init(f, db, err, sizeof(err)), 0);
    f->current_index = next_index;
}

static char *get_event(store *db, uint32_t bus_id, uint32_t part, uint64_t off)
{
    uint8_t key[KEYS_EVENT_LEN];
    keys_event(key, bus_id, part, off);
    char *v;
    size_t vlen;
    return store_get(db, key, sizeof(key), &v, &vlen) == 0 ? v : NULL;
}

static void test_apply_offsets_and_replay(void **state)
{
    (void)state;
    store *db = open_db("db1");
    fsm f;
    open_fsm(&f, db);
    ops_builder b = {0};

    add_create(&b, "orders", 2);
    add_create(&b, "orders", 2);    /* exists */
    add_create(&b, "bad name!", 2); /* invalid */
    const fsm_entry_result *r = apply(&f, 1, &b);
    assert_int_equal(r->n_ops, 3);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[1].code, EVBUS_EEXIST);
    assert_int_equal(r->ops[2].code, EVBUS_EINVAL);
    const fsm_bus *bus = fsm_bus_find(&f, "orders");
    assert_non_null(bus);
    uint32_t id = bus->bus_id;

    add_publish(&b, id, 0, "{\"n\":0}");
    add_publish(&b, id, 1, "{\"n\":1}");
    add_publish(&b, id, 0, "{\"n\":2}");
    add_publish(&b, id + 99, 0, "{\"n\":3}"); /* unknown bus */
    add_publish(&b, id, 5, "{\"n\":4}");      /* no such partition */
    r = apply(&f, 2, &b);
    assert_int_equal(r->index, 2);
    assert_int_equal(r->n_ops, 5);
    assert_int_equal(r->ops[0].offset, 0);
    assert_int_equal(r->ops[1].offset, 0);
    assert_int_equal(r->ops[1].partition, 1);
    assert_int_equal(r->ops[2].offset, 1);
    assert_int_equal(r->ops[3].code, EVBUS_ENOTFOUND);
    assert_int_equal(r->ops[4].code, EVBUS_EINVAL);
    assert_int_equal(bus->parts[0].next_offset, 2);
    assert_int_equal(bus->parts[1].next_offset, 1);
    char *v = get_event(db, id, 0, 1);
    assert_non_null(v);
    assert_string_equal(v, "{\"n\":2}");
    free(v);

    /* An undecodable entry is rejected in the result, and still counts as applied. */
    g_index = 3;
    const uint8_t junk[] = {0, 0, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0};
    assert_int_equal(fsm_apply(&f, junk, sizeof(junk), &r), 0);
    assert_int_equal(r->code, EVBUS_EPROTO);
    assert_int_equal(f.applied_index, 3);

    /* Replaying index 2 after a restart must not assign offsets again. */
    add_publish(&b, id, 0, "{\"n\":\"dup\"}");
    r = apply(&f, 2, &b);
    assert_int_equal(r->code, EVBUS_EEXIST);
    assert_int_equal(bus->parts[0].next_offset, 2);

    /* Reopen: the state is RocksDB's. */
    fsm_close(&f);
    store_close(db);
    db = open_db("db1");
    open_fsm(&f, db);
    assert_int_equal(f.applied_index, 3);
    bus = fsm_bus_find(&f, "orders");
    assert_non_null(bus);
    assert_int_equal(bus->partitions, 2);
    assert_int_equal(bus->parts[0].next_offset, 2);
    assert_int_equal(bus->created_index, 1);
    add_publish(&b, id, 0, "{\"n\":5}");
    r = apply(&f, 4, &b);
    assert_int_equal(r->ops[0].offset, 2);

    /* Snapshot, restore into an empty node. */
    uint8_t *snap;
    size_t snap_len;
    assert_int_equal(fsm_snapshot(&f, &snap, &snap_len), 0);
    store *db2 = open_db("db2");
    fsm g;
    open_fsm(&g, db2);
    assert_int_equal(fsm_restore(&g, snap, snap_len), 0);
    assert_int_equal(g.applied_index, 4);
    const fsm_bus *gb = fsm_bus_find(&g, "orders");
    assert_non_null(gb);
    assert_int_equal(gb->parts[0].next_offset, 3);
    assert_int_equal(gb->parts[1].next_offset, 1);
    /* A local restart (state already ahead) keeps local state. */
    assert_int_equal(fsm_restore(&f, snap, snap_len), 0);
    assert_int_equal(f.applied_index, 4);
    free(snap);
    fsm_close(&g);
    store_close(db2);

    /* Delete removes the bus and its events; a new bus of that name gets a new id. */
    add_delete(&b, "orders");
    add_delete(&b, "orders");
    r = apply(&f, 5, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[1].code, EVBUS_ENOTFOUND);
    assert_null(fsm_bus_find(&f, "orders"));
    assert_null(get_event(db, id, 0, 0));
    add_create(&b, "orders", 1);
    r = apply(&f, 6, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_not_equal(fsm_bus_find(&f, "orders")->bus_id, id);
    assert_int_equal(fsm_bus_find(&f, "orders")->parts[0].next_offset, 0);
    fsm_close(&f);
    store_close(db);
}

#define EV_SHOP "{\"source\":\"shop\",\"detail-type\":\"Order\",\"detail\":{\"n\":5}}"
#define EV_OTHER "{\"source\":\"other\",\"detail-type\":\"Order\",\"detail\":{\"n\":1}}"

/* The rule ids of bus `bus_id` matching `event`, as a comma-separated list ("" for none). */
static const char *matches(fsm *f, uint32_t bus_id, const char *event)
{
    static char out[256];
    uint64_t ids[16];
    size_t n = 99;
    assert_int_equal(fsm_match(f, bus_id, event, strlen(event), ids, 16, &n), 0);
    assert_true(n <= 16);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%llu", i ? "," : "",
                 (unsigned long long)ids[i]);
    return out;
}

/* The rule set of `orders` as the tests below build it: r1 (id 1, enabled, source shop),
 * r2 (id 2, enabled, detail-type Order), r4 (id 4, disabled). */
static void assert_rules_state(fsm *f, uint32_t bus_id, uint64_t next_rule_id)
{
    const fsm_bus *b = fsm_bus_by_id(f, bus_id);
    assert_non_null(b);
    assert_int_equal(b->n_rules, 3);
    assert_string_equal(b->rules[0]->name, "r1");
    assert_string_equal(b->rules[1]->name, "r2");
    assert_string_equal(b->rules[2]->name, "r4");
    const fsm_rule *r2 = fsm_rule_find(b, "r2");
    assert_non_null(r2);
    assert_int_equal(r2->id, 2);
    assert_int_equal(r2->enabled, 1);
    assert_string_equal(r2->pattern, "{\"detail-type\":[\"Order\"]}");
    assert_string_equal(r2->description, "d");
    assert_true(r2->memory_bytes > 0);
    assert_ptr_equal(fsm_rule_by_id(b, 4), fsm_rule_find(b, "r4"));
    assert_int_equal(fsm_rule_find(b, "r4")->enabled, 0);
    assert_null(fsm_rule_by_id(b, 3));
    assert_null(fsm_rule_find(b, "r3"));
    assert_int_equal(b->next_rule_id, next_rule_id);
    assert_string_equal(matches(f, bus_id, EV_SHOP), "1,2");
    assert_string_equal(matches(f, bus_id, EV_OTHER), "2");
}

static void test_rules(void **state)
{
    (void)state;
    store *db = open_db("rules1");
    fsm f;
    open_fsm(&f, db);
    ops_builder b = {0};
    add_create(&b, "orders", 2);
    add_create(&b, "other", 1);
    const fsm_entry_result *r = apply(&f, 1, &b);
    assert_int_equal(r->ops[0].code, 0);
    uint32_t id = fsm_bus_find(&f, "orders")->bus_id;
    uint32_t other = fsm_bus_find(&f, "other")->bus_id;
    assert_int_equal(f.params.max_rules_per_bus, FSM_DEFAULT_MAX_RULES_PER_BUS);
    assert_int_equal(f.params.max_pattern_bytes, FSM_DEFAULT_MAX_PATTERN_BYTES);

    /* Puts: valid ones get ids 1, 2, 3 in order; bad input is refused in the result. */
    add_put_rule(&b, id, "r1", "{\"source\":[\"shop\"]}", 0);
    add_put_rule(&b, id, "r2", "{\"detail-type\":[\"Other\"]}", 1);
    add_put_rule(&b, id, "r3", "{\"source\":[\"other\"]}", 0);
    add_put_rule(&b, id, "bad", "{\"detail\":{\"n\":5}}", 0); /* not an array */
    add_put_rule(&b, id, "bad", "[1]", 0);
    add_put_rule(&b, id, "bad name", "{\"a\":[1]}", 0);
    add_put_rule(&b, id + 99, "r9", "{\"a\":[1]}", 0);
    add_put_rule(&b, other, "r1", "{\"source\":[\"other\"]}", 0); /* a name per bus */
    r = apply(&f, 2, &b);
    assert_int_equal(r->n_ops, 8);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r->ops[i].code, 0);
        assert_int_equal(r->ops[i].offset, i + 1); /* the rule id */
    }
    assert_int_equal(r->ops[3].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[4].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[5].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[6].code, EVBUS_ENOTFOUND);
    assert_int_equal(r->ops[7].code, 0);
    assert_int_equal(r->ops[7].offset, 1);
    const fsm_bus *bus = fsm_bus_find(&f, "orders");
    assert_int_equal(bus->n_rules, 3);
    assert_int_equal(fsm_rule_find(bus, "r1")->created_index, 2);
    assert_string_equal(matches(&f, id, EV_SHOP), "1"); /* r2 disabled */
    assert_string_equal(matches(&f, id, EV_OTHER), "3");
    assert_string_equal(matches(&f, other, EV_OTHER), "1");
    uint64_t ids[4];
    size_t n;
    assert_int_equal(fsm_match(&f, id + 99, EV_SHOP, strlen(EV_SHOP), ids, 4, &n), EVBUS_ENOTFOUND);

    /* Replace keeps the id and takes the new state; enable/disable; delete. */
    add_put_rule(&b, id, "r2", "{\"detail-type\":[\"Order\"]}", 0);
    add_rule_state(&b, id, "r1", 0);
    add_rule_state(&b, id, "r1", 1);
    add_rule_state(&b, id, "r1", 1); /* already enabled: no change */
    add_rule_state(&b, id, "nope", 1);
    add_delete_rule(&b, id, "r3");
    add_delete_rule(&b, id, "r3");
    add_put_rule(&b, id, "r4", "{\"source\":[\"x\"]}", 1); /* id 4: ids are not reused */
    r = apply(&f, 3, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[0].offset, 2);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[2].code, 0);
    assert_int_equal(r->ops[3].code, 0);
    assert_int_equal(r->ops[4].code, EVBUS_ENOTFOUND);
    assert_int_equal(r->ops[5].code, 0);
    assert_int_equal(r->ops[6].code, EVBUS_ENOTFOUND);
    assert_int_equal(r->ops[7].code, 0);
    assert_int_equal(r->ops[7].offset, 4);
    assert_int_equal(fsm_rule_find(bus, "r1")->updated_index, 3);
    assert_int_equal(fsm_rule_find(bus, "r1")->created_index, 2);
    assert_rules_state(&f, id, 5);

    /* Limits are replicated parameters: rules per bus, then pattern bytes. */
    add_rule_params(&b, 4, 64);
    add_put_rule(&b, id, "r5", "{\"source\":[\"y\"]}", 0);
    add_put_rule(&b, id, "r6", "{\"source\":[\"z\"]}", 0);               /* 5th rule */
    add_put_rule(&b, id, "r5", "{\"source\":[\"replace is fine\"]}", 0); /* not a new one */
    add_put_rule(&b, other, "p",
                 "{\"source\":[\"0123456789012345678901234567890123456789012345"
                 "67890123456789\"]}",
                 0);
    add_delete_rule(&b, id, "r5");
    r = apply(&f, 4, &b);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[2].code, EVBUS_ETOOBIG);
    assert_int_equal(r->ops[3].code, 0);
    assert_int_equal(r->ops[4].code, EVBUS_ETOOBIG);
    assert_int_equal(r->ops[5].code, 0);
    assert_int_equal(f.params.max_rules_per_bus, 4);
    assert_int_equal(f.params.max_pattern_bytes, 64);
    assert_int_equal(fsm_bus_find(&f, "orders")->next_rule_id, 6);
    add_rule_params(&b, FSM_DEFAULT_MAX_RULES_PER_BUS, FSM_DEFAULT_MAX_PATTERN_BYTES);
    r = apply(&f, 5, &b);

    /* Reopen: rules, ids, the id counter and the matcher come back from RocksDB. */
    fsm_close(&f);
    store_close(db);
    db = open_db("rules1");
    open_fsm(&f, db);
    bus = fsm_bus_find(&f, "orders");
    assert_int_equal(bus->next_rule_id, 6);
    assert_int_equal(fsm_rule_find(bus, "r4")->id, 4);
    assert_int_equal(bus->n_rules, 3);
    assert_string_equal(matches(&f, id, EV_SHOP), "1,2");

    /* Snapshot, restore into an empty node: the same rules and matches; a node that had other
     * rules for the bus drops them. */
    uint8_t *snap;
    size_t snap_len;
    assert_int_equal(fsm_snapshot(&f, &snap, &snap_len), 0);
    store *db2 = open_db("rules2");
    fsm g;
    open_fsm(&g, db2);
    add_create(&b, "orders", 2);
    r = apply(&g, 1, &b);
    add_put_rule(&b, fsm_bus_find(&g, "orders")->bus_id, "stale", "{\"a\":[1]}", 0);
    r = apply(&g, 2, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(fsm_restore(&g, snap, snap_len), 0);
    free(snap);
    assert_rules_state(&g, id, 6);
    assert_string_equal(matches(&g, other, EV_OTHER), "1");
    /* The restored state is on disk too. */
    fsm_close(&g);
    store_close(db2);
    db2 = open_db("rules2");
    open_fsm(&g, db2);
    assert_rules_state(&g, id, 6);
    add_put_rule(&b, id, "r7", "{\"a\":[1]}", 0);
    r = apply(&g, 6, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[0].offset, 6);
    fsm_close(&g);
    store_close(db2);

    /* Deleting the bus deletes its rules (on disk too); the other bus keeps its own. */
    add_delete(&b, "orders");
    r = apply(&f, 6, &b);
    assert_int_equal(r->ops[0].code, 0);
    uint8_t key[KEYS_RULE_PREFIX_LEN + 8];
    size_t klen = keys_rule(key, id, "r1", 2);
    char *v;
    size_t vlen;
    assert_int_equal(store_get(db, key, klen, &v, &vlen), EVBUS_ENOTFOUND);
    klen = keys_rule(key, other, "r1", 2);
    assert_int_equal(store_get(db, key, klen, &v, &vlen), 0);
    free(v);
    add_create(&b, "orders", 1);
    r = apply(&f, 7, &b);
    bus = fsm_bus_find(&f, "orders");
    assert_int_equal(bus->n_rules, 0);
    assert_int_equal(bus->next_rule_id, 1);
    assert_string_equal(matches(&f, bus->bus_id, EV_SHOP), "");
    fsm_close(&f);
    store_close(db);
}

static void test_key_order(void **state)
{
    (void)state;
    srand(7);
    for (int i = 0; i < 10000; i++) {
        uint64_t a = ((uint64_t)rand() << 33) ^ (uint64_t)rand();
        uint64_t b = ((uint64_t)rand() << 33) ^ (uint64_t)rand();
        if (i % 3 == 0)
            b = a + 1;
        uint32_t pa = (uint32_t)rand() % 3, pb = (uint32_t)rand() % 3;
        uint8_t ka[KEYS_EVENT_LEN], kb[KEYS_EVENT_LEN];
        keys_event(ka, 5, pa, a);
        keys_event(kb, 5, pb, b);
        int cmp = memcmp(ka, kb, KEYS_EVENT_LEN);
        int want = pa != pb ? (pa < pb ? -1 : 1) : (a < b ? -1 : a > b ? 1 : 0);
        assert_int_equal(cmp < 0 ? -1 : cmp > 0 ? 1 : 0, want);
        uint32_t bid, part;
        uint64_t off;
        assert_int_equal(keys_event_parse(ka, sizeof(ka), &bid, &part, &off), 0);
        assert_int_equal(bid, 5);
        assert_int_equal(part, pa);
        assert_int_equal(off, a);
    }
    uint8_t bad[3] = {'E', 0, 0};
    uint32_t bid, part;
    uint64_t off;
    assert_int_equal(keys_event_parse(bad, sizeof(bad), &bid, &part, &off), EVBUS_EINVAL);
}

/* --------------------------------------------------------------- targets */

static void add_put_target(ops_builder *b, uint32_t bus_id, const char *rule, const char *name,
                           const char *dead_letter, uint32_t max_attempts)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_put_target_tag;
    op->op.put_target.bus_id = bus_id;
    op->op.put_target.rule = (char *)rule;
    op->op.put_target.has_target = true;
    evbuscmd_TargetMeta *m = &op->op.put_target.target;
    m->name = (char *)name;
    m->dead_letter = (char *)dead_letter;
    m->max_attempts = max_attempts;
    m->max_age_s = FSM_TARGET_MAX_AGE_S;
    m->window = FSM_TARGET_DEFAULT_WINDOW;
    m->ack_timeout_ms = FSM_TARGET_DEFAULT_ACK_TIMEOUT_MS;
}

static void add_remove_target(ops_builder *b, uint32_t bus_id, const char *rule, const char *name)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_remove_target_tag;
    op->op.remove_target.bus_id = bus_id;
    op->op.remove_target.rule = (char *)rule;
    op->op.remove_target.target = (char *)name;
}

static evbuscmd_CursorAdvance g_adv[8];

static void add_advance(ops_builder *b, uint32_t bus_id, uint64_t target_id, uint32_t part,
                        uint64_t offset, uint64_t delivered)
{
    evbuscmd_Op *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    op->which_op = evbuscmd_Op_advance_cursors_tag;
    op->op.advance_cursors.bus_id = bus_id;
    op->op.advance_cursors.target_id = target_id;
    evbuscmd_CursorAdvance *a = &g_adv[b->n % 8];
    a->partition = part;
    a->offset = offset;
    op->op.advance_cursors.cursors = a;
    op->op.advance_cursors.cursors_count = 1;
    op->op.advance_cursors.delivered = delivered;
}

static const fsm_target *target_of(const fsm *f, uint32_t bus_id, const char *name)
{
    const fsm_bus *b = fsm_bus_by_id(f, bus_id);
    return b ? fsm_target_find(b, name) : NULL;
}

/* Names of a rule's targets, comma-separated (static buffer). */
static const char *rule_target_names(const fsm *f, uint32_t bus_id, const char *rule)
{
    static char out[512];
    out[0] = '\0';
    const fsm_bus *b = fsm_bus_by_id(f, bus_id);
    const fsm_rule *r = fsm_rule_find(b, rule);
    fsm_target *const *ts;
    size_t n = fsm_rule_targets(b, r->id, &ts);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, ts[i]->name);
    }
    return out;
}

/* The state test_targets builds, as every replica must see it after reopen or restore. */
static void assert_targets_state(const fsm *f, uint32_t id)
{
    assert_string_equal(rule_target_names(f, id, "r1"), "a,b,c,d,dlq");
    assert_string_equal(rule_target_names(f, id, "r2"), "a");
    const fsm_bus *bus = fsm_bus_by_id(f, id);
    const fsm_target *a = fsm_target_find(bus, "a");
    assert_non_null(a);
    assert_int_equal(a->n_rule_ids, 2);
    assert_int_equal(a->max_attempts, 7);
    assert_string_equal(a->dead_letter, "dlq");
    assert_int_equal(fsm_target_cursor(bus, a, 0), 2); /* started at 1, advanced to 2 */
    assert_int_equal(fsm_target_cursor(bus, a, 1), 0);
    assert_int_equal(a->delivered, 5);
    assert_int_equal(bus->next_target_id, 6);
}

static void test_targets(void **state)
{
    (void)state;
    store *db = open_db("targets1");
    fsm f;
    open_fsm(&f, db);
    ops_builder b = {0};
    add_create(&b, "orders", 2);
    const fsm_entry_result *r = apply(&f, 1, &b);
    uint32_t id = fsm_bus_find(&f, "orders")->bus_id;
    add_put_rule(&b, id, "r1", "{\"source\":[\"shop\"]}", 0);
    add_put_rule(&b, id, "r2", "{\"source\":[\"x\"]}", 0);
    add_publish(&b, id, 0, "{\"source\":\"shop\"}");
    r = apply(&f, 2, &b);
    assert_int_equal(r->ops[2].code, 0);

    /* Dead-letter validation: must exist first, not itself; in order within an entry. */
    add_put_target(&b, id, "r1", "a", "dlq", 7); /* dlq does not exist yet */
    add_put_target(&b, id, "r1", "dlq", NULL, 185);
    add_put_target(&b, id, "r1", "a", "dlq", 7);
    add_put_target(&b, id, "r1", "self", "self", 1);
    add_put_target(&b, id, "nope", "x", NULL, 1);
    add_put_target(&b, id, "r1", "big", NULL, 186);
    add_put_target(&b, id, "r1", "bad name", NULL, 1);
    r = apply(&f, 3, &b);
    assert_int_equal(r->n_ops, 7);
    assert_int_equal(r->ops[0].code, EVBUS_ENOTFOUND);
    assert_non_null(r->ops[0].msg);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[1].offset, 1); /* target id */
    assert_int_equal(r->ops[2].code, 0);
    assert_int_equal(r->ops[2].offset, 2);
    assert_int_equal(r->ops[3].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[4].code, EVBUS_ENOTFOUND);
    assert_int_equal(r->ops[5].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[6].code, EVBUS_EINVAL);
    /* T1: cursors start at the partitions' next offsets (one event in partition 0). */
    const fsm_bus *bus = fsm_bus_by_id(&f, id);
    const fsm_target *a = fsm_target_find(bus, "a");
    assert_int_equal(fsm_target_cursor(bus, a, 0), 1);
    assert_int_equal(fsm_target_cursor(bus, a, 1), 0);

    /* Limit: 5 targets per rule; re-putting one the rule has is an update, not a sixth. */
    add_put_target(&b, id, "r1", "b", NULL, 1);
    add_put_target(&b, id, "r1", "c", NULL, 1);
    add_put_target(&b, id, "r1", "d", NULL, 1);
    add_put_target(&b, id, "r1", "e", NULL, 1);
    add_put_target(&b, id, "r1", "a", "dlq", 7);
    add_put_target(&b, id, "r2", "a", "dlq", 7); /* one target, two rules */
    r = apply(&f, 4, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[2].code, 0);
    assert_int_equal(r->ops[3].code, EVBUS_ETOOBIG);
    assert_int_equal(r->ops[4].code, 0);
    assert_int_equal(r->ops[5].code, 0);
    assert_null(target_of(&f, id, "e"));

    /* AdvanceCursors: max(current, new), never past next_offset, never backwards. */
    add_publish(&b, id, 0, "{\"source\":\"shop\"}");
    add_advance(&b, id, 2, 0, 2, 5);
    add_advance(&b, id, 2, 0, 1, 0);  /* backwards: ignored */
    add_advance(&b, id, 2, 0, 3, 0);  /* beyond next_offset 2: refused */
    add_advance(&b, id, 2, 5, 0, 0);  /* no such partition */
    add_advance(&b, id, 99, 0, 1, 0); /* no such target */
    r = apply(&f, 5, &b);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[2].code, 0);
    assert_int_equal(r->ops[3].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[4].code, EVBUS_EINVAL);
    assert_int_equal(r->ops[5].code, EVBUS_ENOTFOUND);
    assert_targets_state(&f, id);

    /* Survives a reopen. */
    fsm_close(&f);
    open_fsm(&f, db);
    assert_targets_state(&f, id);

    /* Snapshot into a fresh replica. */
    uint8_t *snap;
    size_t snap_len;
    assert_int_equal(fsm_snapshot(&f, &snap, &snap_len), 0);
    store *db2 = open_db("targets2");
    fsm g;
    open_fsm(&g, db2);
    assert_int_equal(fsm_restore(&g, snap, snap_len), 0);
    free(snap);
    assert_targets_state(&g, id);
    fsm_close(&g);
    store_close(db2);
    db2 = open_db("targets2");
    open_fsm(&g, db2);
    assert_targets_state(&g, id);
    fsm_close(&g);
    store_close(db2);

    /* Remove: a unlinked from r1 stays (serves r2); b unlinked goes, with its cursors. */
    uint64_t b_id = target_of(&f, id, "b")->id;
    add_remove_target(&b, id, "r1", "a");
    add_remove_target(&b, id, "r1", "b");
    add_remove_target(&b, id, "r1", "b"); /* no longer linked */
    r = apply(&f, 6, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[2].code, EVBUS_ENOTFOUND);
    assert_non_null(target_of(&f, id, "a"));
    assert_null(target_of(&f, id, "b"));
    uint8_t ck[KEYS_CURSOR_LEN];
    keys_cursor(ck, id, b_id, 0);
    char *v;
    size_t vlen;
    assert_int_equal(store_get(db, ck, sizeof(ck), &v, &vlen), EVBUS_ENOTFOUND);
    assert_string_equal(rule_target_names(&f, id, "r1"), "c,d,dlq");

    /* Deleting r1: c and d go; dlq serves no rule but is a's dead letter (a serves r2): kept. */
    add_delete_rule(&b, id, "r1");
    r = apply(&f, 7, &b);
    assert_int_equal(r->ops[0].code, 0);
    assert_null(target_of(&f, id, "c"));
    assert_non_null(target_of(&f, id, "dlq"));
    assert_int_equal(target_of(&f, id, "dlq")->n_rule_ids, 0);
    /* Deleting r2: a goes, and then dlq is unreachable: both go. */
    add_delete_rule(&b, id, "r2");
    r = apply(&f, 8, &b);
    assert_int_equal(fsm_bus_by_id(&f, id)->n_targets, 0);
    fsm_close(&f);
    open_fsm(&f, db);
    assert_int_equal(fsm_bus_by_id(&f, id)->n_targets, 0);

    /* A re-created target gets a new id: acks for the old id never reach it. */
    add_put_rule(&b, id, "r3", "{\"source\":[\"shop\"]}", 0);
    add_put_target(&b, id, "r3", "a", NULL, 1);
    add_advance(&b, id, 2, 0, 2, 0);
    r = apply(&f, 9, &b);
    assert_int_equal(r->ops[1].code, 0);
    assert_int_equal(r->ops[1].offset, 6);
    assert_int_equal(r->ops[2].code, EVBUS_ENOTFOUND);

    /* Deleting the bus deletes its targets and cursors on disk. */
    add_delete(&b, "orders");
    r = apply(&f, 10, &b);
    assert_int_equal(r->ops[0].code, 0);
    keys_cursor(ck, id, 6, 0);
    assert_int_equal(store_get(db, ck, sizeof(ck), &v, &vlen), EVBUS_ENOTFOUND);
    uint8_t tk[KEYS_TARGET_PREFIX_LEN + 1];
    size_t tklen = keys_target(tk, id, "a", 1);
    assert_int_equal(store_get(db, tk, tklen, &v, &vlen), EVBUS_ENOTFOUND);
    fsm_close(&f);
    store_close(db);
}

/* Delivery shapes: the stateless validator the leader and apply share. */
static void test_target_validate(void **state)
{
    (void)state;
    evbuscmd_TargetMeta m = evbuscmd_TargetMeta_init_zero;
    char err[256];
    m.name = (char *)"t";
    m.max_attempts = 0;
    m.max_age_s = 60;
    m.window = 1;
    m.ack_timeout_ms = 1000;
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), 0);
    m.max_age_s = 59;
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL);
    m.max_age_s = 86400;
    m.input_kind = evbuscmd_InputKind_INPUT_PATH;
    m.input_path = (char *)"$.detail";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), 0);
    m.input_path = (char *)"detail";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL);
    m.input = (char *)"{}";
    m.input_path = (char *)"$.a";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL); /* two shapes */
    m.input_path = NULL;
    m.input_kind = evbuscmd_InputKind_INPUT_CONSTANT;
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), 0);
    m.input = (char *)"{x";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL);
    m.input = NULL;
    m.input_kind = evbuscmd_InputKind_INPUT_TRANSFORMER;
    m.input_paths_map = (char *)"{\"s\":\"$.source\"}";
    m.input_template = (char *)"\"<s>\"";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), 0);
    m.input_paths_map = (char *)"{\"s\":\"source\"}";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL);
    m.input_paths_map = (char *)"[1]";
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL);
    m.input_paths_map = (char *)"{\"s\":\"$.a\"}";
    m.input_template = NULL;
    assert_int_equal(fsm_target_validate(&m, err, sizeof(err)), EVBUS_EINVAL); /* no template */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_offsets_and_replay),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_key_order),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_target_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
