/* cluster/fsm: see fsm.h for the invariants this file keeps. */
#include "cluster/fsm.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "command.pb.h"
#include "common/log.h"
#include "common/util.h"
#include "evbus/errors.h"
#include "storage/keys.h"
#include "wire/wire.h"

#define MOD "fsm"

/* Names of buses and rules: [A-Za-z0-9._-]{1,max}. `what` names the kind in the message. */
static int validate_name(const char *what, const char *name, size_t max, char *err, size_t err_len)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > max) {
        snprintf(err, err_len, "%s name must be 1 to %zu characters", what, max);
        return EVBUS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            snprintf(err, err_len, "%s name may contain only [A-Za-z0-9._-] (bad character at %zu)",
                     what, i);
            return EVBUS_EINVAL;
        }
    }
    return 0;
}

int fsm_validate_bus_name(const char *name, char *err, size_t err_len)
{
    return validate_name("bus", name, 256, err, err_len);
}

/* ------------------------------------------------------------------ buses */

static void rules_clear(fsm_bus *b);
static void targets_clear(fsm_bus *b);

static void bus_free(fsm_bus *b)
{
    if (b == NULL)
        return;
    targets_clear(b);
    rules_clear(b);
    free(b->name);
    free(b->parts);
    free(b);
}

static fsm_bus *bus_new(const char *name, uint32_t bus_id, uint32_t partitions)
{
    fsm_bus *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->name = strdup(name);
    b->parts = calloc(partitions, sizeof(*b->parts));
    if (b->name == NULL || b->parts == NULL) {
        bus_free(b);
        return NULL;
    }
    b->bus_id = bus_id;
    b->partitions = partitions;
    b->next_rule_id = 1;
    b->next_target_id = 1;
    return b;
}

static int bus_add(fsm *f, fsm_bus *b)
{
    if (f->n_buses == f->cap_buses) {
        size_t cap = f->cap_buses ? f->cap_buses * 2 : 16;
        fsm_bus **nb = realloc(f->buses, cap * sizeof(*nb));
        if (nb == NULL)
            return EVBUS_ENOMEM;
        f->buses = nb;
        f->cap_buses = cap;
    }
    f->buses[f->n_buses++] = b;
    return 0;
}

static void bus_remove(fsm *f, const fsm_bus *b)
{
    for (size_t i = 0; i < f->n_buses; i++) {
        if (f->buses[i] == b) {
            bus_free(f->buses[i]);
            memmove(&f->buses[i], &f->buses[i + 1], (f->n_buses - i - 1) * sizeof(f->buses[0]));
            f->n_buses--;
            return;
        }
    }
}

const fsm_bus *fsm_bus_find(const fsm *f, const char *name)
{
    for (size_t i = 0; i < f->n_buses; i++)
        if (strcmp(f->buses[i]->name, name) == 0)
            return f->buses[i];
    return NULL;
}

const fsm_bus *fsm_bus_by_id(const fsm *f, uint32_t bus_id)
{
    for (size_t i = 0; i < f->n_buses; i++)
        if (f->buses[i]->bus_id == bus_id)
            return f->buses[i];
    return NULL;
}

static void clear_buses(fsm *f)
{
    for (size_t i = 0; i < f->n_buses; i++)
        bus_free(f->buses[i]);
    f->n_buses = 0;
}

/* --------------------------------------------------------------- registry */

const fsm_node *fsm_node_find(const fsm *f, uint32_t id)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (f->nodes[i].id == id)
            return &f->nodes[i];
    return NULL;
}

static void node_entry_free(fsm_node *n)
{
    free(n->raft_addr);
    free(n->client_addr);
}

static void clear_nodes(fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        node_entry_free(&f->nodes[i]);
    f->n_nodes = 0;
}

static void oom(const char *what)
{
    LOG_ERRORF(MOD, "out of memory in the state machine, stopping", "what=%s", what);
    exit(71);
}

/* Inserts or replaces; the strings are copied. */
static void node_upsert(fsm *f, uint32_t id, const char *raft_addr, const char *client_addr)
{
    fsm_node *n = (fsm_node *)fsm_node_find(f, id);
    if (n == NULL) {
        if (f->n_nodes == f->cap_nodes) {
            size_t cap = f->cap_nodes ? f->cap_nodes * 2 : 8;
            fsm_node *nn = realloc(f->nodes, cap * sizeof(*nn));
            if (nn == NULL)
                oom("nodes");
            f->nodes = nn;
            f->cap_nodes = cap;
        }
        n = &f->nodes[f->n_nodes++];
        n->id = id;
    } else {
        node_entry_free(n);
    }
    n->raft_addr = strdup(raft_addr ? raft_addr : "");
    n->client_addr = strdup(client_addr ? client_addr : "");
    if (n->raft_addr == NULL || n->client_addr == NULL)
        oom("nodes");
}

static void node_delete(fsm *f, uint32_t id)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i].id == id) {
            node_entry_free(&f->nodes[i]);
            f->nodes[i] = f->nodes[--f->n_nodes];
            return;
        }
    }
}

/* ------------------------------------------------------------------ rules */

int fsm_validate_rule_name(const char *name, char *err, size_t err_len)
{
    return validate_name("rule", name, FSM_MAX_RULE_NAME, err, err_len);
}

static void rule_free(fsm_rule *r)
{
    if (r == NULL)
        return;
    free(r->name);
    free(r->pattern);
    free(r->description);
    free(r);
}

/* Frees every rule of a bus and its matcher (the caller deletes the stored keys). */
static void rules_clear(fsm_bus *b)
{
    for (size_t i = 0; i < b->n_rules; i++)
        rule_free(b->rules[i]);
    free(b->rules);
    free(b->rules_by_id);
    b->rules = b->rules_by_id = NULL;
    b->n_rules = b->cap_rules = 0;
    rules_matcher_free(b->matcher);
    b->matcher = NULL;
}

/*
 * Index of `name` in a sorted array of fsm_rule or fsm_target pointers, or where it would be
 * inserted (then *found is 0). Both structs start with `char *name`, and a pointer to a struct
 * converts to a pointer to its first member.
 */
_Static_assert(offsetof(fsm_rule, name) == 0, "name_pos relies on name coming first");
_Static_assert(offsetof(fsm_target, name) == 0, "name_pos relies on name coming first");

static size_t name_pos(void *const *items, size_t n, const char *name, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(*(char *const *)items[mid], name);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static size_t rule_pos(const fsm_bus *b, const char *name, int *found)
{
    return name_pos((void *const *)b->rules, b->n_rules, name, found);
}

static size_t rule_id_pos(const fsm_bus *b, uint64_t id, int *found)
{
    size_t lo = 0, hi = b->n_rules;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t v = b->rules_by_id[mid]->id;
        if (v == id) {
            *found = 1;
            return mid;
        }
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const fsm_rule *fsm_rule_find(const fsm_bus *b, const char *name)
{
    int found;
    size_t i = rule_pos(b, name, &found);
    return found ? b->rules[i] : NULL;
}

const fsm_rule *fsm_rule_by_id(const fsm_bus *b, uint64_t rule_id)
{
    int found;
    size_t i = rule_id_pos(b, rule_id, &found);
    return found ? b->rules_by_id[i] : NULL;
}

/* Inserts r (transferred) in both orders. The name and the id must be new to the bus. */
static void rule_insert(fsm_bus *b, fsm_rule *r)
{
    if (b->n_rules == b->cap_rules) {
        size_t cap = b->cap_rules ? b->cap_rules * 2 : 8;
        fsm_rule **nr = realloc(b->rules, cap * sizeof(*nr));
        if (nr != NULL)
            b->rules = nr;
        fsm_rule **ni = nr ? realloc(b->rules_by_id, cap * sizeof(*ni)) : NULL;
        if (ni == NULL)
            oom("rules");
        b->rules_by_id = ni;
        b->cap_rules = cap;
    }
    int found;
    size_t at = rule_pos(b, r->name, &found);
    memmove(&b->rules[at + 1], &b->rules[at], (b->n_rules - at) * sizeof(b->rules[0]));
    b->rules[at] = r;
    size_t at_id = rule_id_pos(b, r->id, &found);
    memmove(&b->rules_by_id[at_id + 1], &b->rules_by_id[at_id],
            (b->n_rules - at_id) * sizeof(b->rules_by_id[0]));
    b->rules_by_id[at_id] = r;
    b->n_rules++;
}

/* Takes r off both orders and frees it. */
static void rule_remove(fsm_bus *b, fsm_rule *r)
{
    int found;
    size_t at = rule_pos(b, r->name, &found);
    size_t at_id = rule_id_pos(b, r->id, &found);
    memmove(&b->rules[at], &b->rules[at + 1], (b->n_rules - at - 1) * sizeof(b->rules[0]));
    memmove(&b->rules_by_id[at_id], &b->rules_by_id[at_id + 1],
            (b->n_rules - at_id - 1) * sizeof(b->rules_by_id[0]));
    b->n_rules--;
    rule_free(r);
}

/*
 * Puts rule `id` with pattern `p` into the bus's matcher (created on first use). 0, or the
 * engine's error, logged (the engine is deterministic, so every replica gets the same); out of
 * memory stops the process, as everywhere in apply.
 */
static int matcher_put(fsm_bus *b, uint64_t id, const rules_pattern *p)
{
    int rv = b->matcher == NULL ? rules_matcher_new(&b->matcher) : 0;
    if (rv == 0)
        rv = rules_matcher_add(b->matcher, id, p);
    if (rv == EVBUS_ENOMEM)
        oom("matcher");
    if (rv != 0)
        LOG_ERRORF(MOD, "rule matcher refused a rule", "bus=%s rule_id=%llu err=%s", b->name,
                   (unsigned long long)id, evbus_errname(rv));
    return rv;
}

static void matcher_drop(fsm_bus *b, uint64_t id)
{
    if (b->matcher != NULL)
        rules_matcher_delete(b->matcher, id); /* ENOTFOUND: it was not in */
}

/*
 * Parses a pattern (deterministic: same text, same limit, same answer on every node). 0 with *out
 * set, or EVBUS_EINVAL / EVBUS_ETOOBIG with the parser's message in err; out of memory stops the
 * process, as everywhere in apply.
 */
static int pattern_parse(const char *text, size_t max_bytes, rules_pattern **out, char *err,
                         size_t err_len)
{
    rules_limits lim = {.max_pattern_bytes = max_bytes};
    int rv = rules_pattern_parse(text, strlen(text), &lim, out, err, err_len);
    if (rv == EVBUS_ENOMEM)
        oom("pattern");
    if (rv != 0 && rv != EVBUS_ETOOBIG)
        rv = EVBUS_EINVAL;
    return rv;
}

static void put_rule_meta(fsm *f, const fsm_bus *b, const fsm_rule *r)
{
    evbuscmd_RuleMeta m = evbuscmd_RuleMeta_init_zero;
    m.name = r->name;
    m.pattern = r->pattern;
    m.description = r->description;
    m.enabled = r->enabled != 0;
    m.rule_id = r->id;
    m.created_index = r->created_index;
    m.updated_index = r->updated_index;
    uint8_t *val;
    size_t vlen;
    if (wire_encode_body(evbuscmd_RuleMeta_fields, &m, &val, &vlen) != 0)
        oom("rule meta");
    uint8_t key[KEYS_RULE_PREFIX_LEN + FSM_MAX_RULE_NAME];
    size_t klen = keys_rule(key, b->bus_id, r->name, strlen(r->name));
    store_batch_put(f->batch, key, klen, val, vlen);
    free(val);
}

static void del_rule_meta(fsm *f, const fsm_bus *b, const char *name)
{
    uint8_t key[KEYS_RULE_PREFIX_LEN + FSM_MAX_RULE_NAME];
    size_t klen = keys_rule(key, b->bus_id, name, strlen(name));
    store_batch_delete(f->batch, key, klen);
}

/* Deletes the stored rules of a bus (all of its 'R' range). */
static void del_bus_rules(fsm *f, uint32_t bus_id)
{
    uint8_t lo[KEYS_RULE_PREFIX_LEN], hi[KEYS_RULE_PREFIX_LEN];
    keys_rule(lo, bus_id, NULL, 0);
    keys_rule(hi, bus_id + 1, NULL, 0);
    store_batch_delete_range(f->batch, lo, sizeof(lo), hi, sizeof(hi));
}

/*
 * A rule from stored or snapshot metadata (strings copied). Its pattern is parsed without the
 * current size parameter (it was accepted when put); one that no longer parses is kept as
 * broken, outside the matcher. Returns NULL only when out of memory.
 */
static fsm_rule *rule_from_meta(fsm_bus *b, const evbuscmd_RuleMeta *m)
{
    fsm_rule *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->name = strdup(m->name);
    r->pattern = strdup(m->pattern);
    r->description = strdup(m->description ? m->description : "");
    if (r->name == NULL || r->pattern == NULL || r->description == NULL) {
        rule_free(r);
        return NULL;
    }
    r->id = m->rule_id;
    r->enabled = m->enabled;
    r->created_index = m->created_index;
    r->updated_index = m->updated_index;
    rules_pattern *p = NULL;
    char err[256];
    if (pattern_parse(r->pattern, FSM_MAX_PATTERN_BYTES, &p, err, sizeof(err)) != 0) {
        LOG_WARNF(MOD, "stored rule pattern no longer parses; rule kept but never matches",
                  "bus=%s rule=%s err=\"%s\"", b->name, r->name, err);
        r->broken = 1;
        return r;
    }
    r->memory_bytes = rules_pattern_memory(p);
    if (r->enabled && matcher_put(b, r->id, p) != 0)
        r->broken = 1;
    rules_pattern_free(p);
    return r;
}

/* Checks of RuleMeta from disk or a snapshot. 0 or EVBUS_EPROTO. */
static int rule_meta_valid(const evbuscmd_RuleMeta *m)
{
    char why[128];
    if (m->name == NULL || fsm_validate_rule_name(m->name, why, sizeof(why)) != 0 ||
        m->pattern == NULL || m->rule_id == 0)
        return EVBUS_EPROTO;
    return 0;
}

int fsm_match(const fsm *f, uint32_t bus_id, const char *envelope, size_t len, uint64_t *ids,
              size_t max, size_t *n)
{
    *n = 0;
    const fsm_bus *b = fsm_bus_by_id(f, bus_id);
    if (b == NULL)
        return EVBUS_ENOTFOUND;
    if (b->matcher == NULL)
        return 0;
    char err[256];
    return rules_matcher_match(b->matcher, envelope, len, ids, max, n, err, sizeof(err));
}

/* ---------------------------------------------------------------- targets */

int fsm_validate_target_name(const char *name, char *err, size_t err_len)
{
    return validate_name("target", name, FSM_MAX_TARGET_NAME, err, err_len);
}

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* InputPathsMap: a JSON object of at most 100 names ([A-Za-z0-9_-]) -> JSONPath strings. */
static int validate_paths_map(const char *text, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *m = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    int rv = EVBUS_EINVAL;
    if (m == NULL) {
        snprintf(err, err_len, "input paths map is not valid JSON: %s", jerr.text);
        return rv;
    }
    if (!json_is_object(m)) {
        snprintf(err, err_len, "input paths map must be a JSON object of name -> JSONPath");
        goto out;
    }
    if (json_object_size(m) > FSM_TARGET_MAX_PATHS_ENTRIES) {
        snprintf(err, err_len, "input paths map has %zu entries; at most %u are allowed",
                 json_object_size(m), FSM_TARGET_MAX_PATHS_ENTRIES);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        char why[128];
        if (validate_name("input paths map key", k, 256, why, sizeof(why)) != 0 ||
            strchr(k, '.') != NULL) {
            snprintf(err, err_len, "input paths map key '%.64s' may contain only [A-Za-z0-9_-]", k);
            goto out;
        }
        const char *path = json_string_value(v);
        if (path == NULL || path[0] != '$') {
            snprintf(err, err_len,
                     "input paths map value of '%.64s' must be a JSONPath string "
                     "starting with '$'",
                     k);
            goto out;
        }
    }
    rv = 0;
out:
    json_decref(m);
    return rv;
}

/*
 * Validation of the delivery shape is minimal until src/delivery/transform.h exists (issue 5):
 * InputPath and the map's paths must start with '$', Input must be JSON, the template non-empty.
 * The delivery engine's compile function should take over here, in apply and on the leader.
 */
int fsm_target_validate(const evbuscmd_TargetMeta *t, char *err, size_t err_len)
{
    int rv;
    if ((rv = fsm_validate_target_name(t->name, err, err_len)) != 0)
        return rv;
    if (t->max_attempts > FSM_TARGET_MAX_ATTEMPTS) {
        snprintf(err, err_len, "max attempts must be 0 to %u", FSM_TARGET_MAX_ATTEMPTS);
        return EVBUS_EINVAL;
    }
    if (t->max_age_s < FSM_TARGET_MIN_AGE_S || t->max_age_s > FSM_TARGET_MAX_AGE_S) {
        snprintf(err, err_len, "max event age must be %u to %u seconds", FSM_TARGET_MIN_AGE_S,
                 FSM_TARGET_MAX_AGE_S);
        return EVBUS_EINVAL;
    }
    if (t->window < 1 || t->window > FSM_TARGET_MAX_WINDOW) {
        snprintf(err, err_len, "window must be 1 to %u deliveries", FSM_TARGET_MAX_WINDOW);
        return EVBUS_EINVAL;
    }
    if (t->ack_timeout_ms < FSM_TARGET_MIN_ACK_TIMEOUT_MS ||
        t->ack_timeout_ms > FSM_TARGET_MAX_ACK_TIMEOUT_MS) {
        snprintf(err, err_len, "ack timeout must be %u to %u ms", FSM_TARGET_MIN_ACK_TIMEOUT_MS,
                 FSM_TARGET_MAX_ACK_TIMEOUT_MS);
        return EVBUS_EINVAL;
    }
    if (nonempty(t->dead_letter)) {
        char why[128];
        if (fsm_validate_target_name(t->dead_letter, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "dead-letter %s", why);
            return EVBUS_EINVAL;
        }
        if (strcmp(t->dead_letter, t->name) == 0) {
            snprintf(err, err_len, "a target cannot be its own dead-letter target");
            return EVBUS_EINVAL;
        }
    }
    int has_path = nonempty(t->input_path), has_input = nonempty(t->input),
        has_map = nonempty(t->input_paths_map), has_tmpl = nonempty(t->input_template);
    int kind = (int)t->input_kind;
    int want = has_path                ? FSM_INPUT_PATH
               : has_input             ? FSM_INPUT_CONSTANT
               : (has_map || has_tmpl) ? FSM_INPUT_TRANSFORMER
                                       : FSM_INPUT_WHOLE;
    if (has_path + has_input + (has_map || has_tmpl) > 1) {
        snprintf(err, err_len, "give at most one of input path, input, input transformer");
        return EVBUS_EINVAL;
    }
    if (kind != want) {
        snprintf(err, err_len, "input kind %d does not match the input fields given", kind);
        return EVBUS_EINVAL;
    }
    switch (kind) {
    case FSM_INPUT_PATH:
        if (strlen(t->input_path) > FSM_TARGET_MAX_INPUT_PATH) {
            snprintf(err, err_len, "input path is over %u characters", FSM_TARGET_MAX_INPUT_PATH);
            return EVBUS_ETOOBIG;
        }
        if (t->input_path[0] != '$') {
            snprintf(err, err_len, "input path must be a JSONPath starting with '$'");
            return EVBUS_EINVAL;
        }
        break;
    case FSM_INPUT_CONSTANT: {
        if (strlen(t->input) > FSM_TARGET_MAX_INPUT) {
            snprintf(err, err_len, "input is over %u bytes", FSM_TARGET_MAX_INPUT);
            return EVBUS_ETOOBIG;
        }
        json_error_t jerr;
        json_t *j = json_loads(t->input, JSON_DECODE_ANY, &jerr);
        if (j == NULL) {
            snprintf(err, err_len, "input is not valid JSON: %s", jerr.text);
            return EVBUS_EINVAL;
        }
        json_decref(j);
        break;
    }
    case FSM_INPUT_TRANSFORMER:
        if (!has_tmpl) {
            snprintf(err, err_len, "an input transformer needs an input template");
            return EVBUS_EINVAL;
        }
        if (strlen(t->input_template) > FSM_TARGET_MAX_INPUT ||
            (has_map && strlen(t->input_paths_map) > FSM_TARGET_MAX_PATHS_MAP)) {
            snprintf(err, err_len, "input template or paths map is over %u bytes",
                     FSM_TARGET_MAX_INPUT);
            return EVBUS_ETOOBIG;
        }
        if (has_map && (rv = validate_paths_map(t->input_paths_map, err, err_len)) != 0)
            return rv;
        break;
    default: break;
    }
    return 0;
}

static void target_free(fsm_target *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->dead_letter);
    free(t->input_path);
    free(t->input);
    free(t->input_paths_map);
    free(t->input_template);
    free(t->rule_ids);
    free(t->cursors);
    free(t);
}

static void targets_clear(fsm_bus *b)
{
    for (size_t i = 0; i < b->n_targets; i++)
        target_free(b->targets[i]);
    free(b->targets);
    b->targets = NULL;
    b->n_targets = b->cap_targets = 0;
    for (size_t i = 0; i < b->n_rules; i++)
        b->rules[i]->n_targets = 0;
}

static size_t target_pos(const fsm_bus *b, const char *name, int *found)
{
    return name_pos((void *const *)b->targets, b->n_targets, name, found);
}

const fsm_target *fsm_target_find(const fsm_bus *b, const char *name)
{
    int found;
    size_t i = target_pos(b, name, &found);
    return found ? b->targets[i] : NULL;
}

/* Linear: targets are few per bus, and the delivery engine should keep its own handles. */
const fsm_target *fsm_target_by_id(const fsm_bus *b, uint64_t target_id)
{
    for (size_t i = 0; i < b->n_targets; i++)
        if (b->targets[i]->id == target_id)
            return b->targets[i];
    return NULL;
}

size_t fsm_rule_targets(const fsm_bus *b, uint64_t rule_id, fsm_target *const **out)
{
    const fsm_rule *r = fsm_rule_by_id(b, rule_id);
    *out = r ? r->targets : NULL;
    return r ? r->n_targets : 0;
}

uint64_t fsm_target_cursor(const fsm_bus *b, const fsm_target *t, uint32_t partition)
{
    return partition < b->partitions ? t->cursors[partition] : 0;
}

/* Inserts t (transferred; name new to the bus) in name order. */
static void target_insert(fsm_bus *b, fsm_target *t)
{
    if (b->n_targets == b->cap_targets) {
        size_t cap = b->cap_targets ? b->cap_targets * 2 : 8;
        fsm_target **nt = realloc(b->targets, cap * sizeof(*nt));
        if (nt == NULL)
            oom("targets");
        b->targets = nt;
        b->cap_targets = cap;
    }
    int found;
    size_t at = target_pos(b, t->name, &found);
    memmove(&b->targets[at + 1], &b->targets[at], (b->n_targets - at) * sizeof(b->targets[0]));
    b->targets[at] = t;
    b->n_targets++;
}

static int rule_has_target(const fsm_rule *r, const fsm_target *t)
{
    for (size_t i = 0; i < r->n_targets; i++)
        if (r->targets[i] == t)
            return 1;
    return 0;
}

/* Adds the in-memory link rule -> target, in target name order (T5). Room is checked first. */
static void rule_link_add(fsm_rule *r, fsm_target *t)
{
    size_t at = 0;
    while (at < r->n_targets && strcmp(r->targets[at]->name, t->name) < 0)
        at++;
    memmove(&r->targets[at + 1], &r->targets[at], (r->n_targets - at) * sizeof(r->targets[0]));
    r->targets[at] = t;
    r->n_targets++;
}

static void rule_link_drop(fsm_rule *r, const fsm_target *t)
{
    for (size_t i = 0; i < r->n_targets; i++) {
        if (r->targets[i] == t) {
            memmove(&r->targets[i], &r->targets[i + 1],
                    (r->n_targets - i - 1) * sizeof(r->targets[0]));
            r->n_targets--;
            return;
        }
    }
}

/* Adds rule_id to the target's ascending list (no-op when present). */
static void target_add_rule_id(fsm_target *t, uint64_t rule_id)
{
    size_t at = 0;
    while (at < t->n_rule_ids && t->rule_ids[at] < rule_id)
        at++;
    if (at < t->n_rule_ids && t->rule_ids[at] == rule_id)
        return;
    uint64_t *n = realloc(t->rule_ids, (t->n_rule_ids + 1) * sizeof(*n));
    if (n == NULL)
        oom("target rules");
    t->rule_ids = n;
    memmove(&t->rule_ids[at + 1], &t->rule_ids[at], (t->n_rule_ids - at) * sizeof(*n));
    t->rule_ids[at] = rule_id;
    t->n_rule_ids++;
}

static void target_drop_rule_id(fsm_target *t, uint64_t rule_id)
{
    for (size_t i = 0; i < t->n_rule_ids; i++) {
        if (t->rule_ids[i] == rule_id) {
            memmove(&t->rule_ids[i], &t->rule_ids[i + 1],
                    (t->n_rule_ids - i - 1) * sizeof(t->rule_ids[0]));
            t->n_rule_ids--;
            return;
        }
    }
}

/* Rebuilds every rule's target links from the targets' rule ids (after load or restore). */
static void targets_relink(fsm_bus *b)
{
    for (size_t i = 0; i < b->n_rules; i++)
        b->rules[i]->n_targets = 0;
    for (size_t i = 0; i < b->n_targets; i++) {
        fsm_target *t = b->targets[i]; /* name order: links come out sorted */
        for (size_t k = 0; k < t->n_rule_ids; k++) {
            fsm_rule *r = (fsm_rule *)fsm_rule_by_id(b, t->rule_ids[k]);
            if (r != NULL && r->n_targets < FSM_MAX_TARGETS_PER_RULE && !rule_has_target(r, t))
                r->targets[r->n_targets++] = t;
        }
    }
}

static void target_to_meta(const fsm_target *t, evbuscmd_TargetMeta *m)
{
    memset(m, 0, sizeof(*m));
    m->name = t->name;
    m->target_id = t->id;
    m->max_attempts = t->max_attempts;
    m->max_age_s = t->max_age_s;
    m->dead_letter = t->dead_letter;
    m->input_kind = (evbuscmd_InputKind)t->input_kind;
    m->input_path = t->input_path;
    m->input = t->input;
    m->input_paths_map = t->input_paths_map;
    m->input_template = t->input_template;
    m->window = t->window;
    m->ack_timeout_ms = t->ack_timeout_ms;
    m->rule_ids = t->rule_ids;
    m->rule_ids_count = (pb_size_t)t->n_rule_ids;
    m->created_index = t->created_index;
    m->updated_index = t->updated_index;
    m->delivered = t->delivered;
    m->retried = t->retried;
    m->dead_lettered = t->dead_lettered;
    m->dropped = t->dropped;
}

static void put_target_meta(fsm *f, const fsm_bus *b, const fsm_target *t)
{
    evbuscmd_TargetMeta m;
    target_to_meta(t, &m);
    uint8_t *val;
    size_t vlen;
    if (wire_encode_body(evbuscmd_TargetMeta_fields, &m, &val, &vlen) != 0)
        oom("target meta");
    uint8_t key[KEYS_TARGET_PREFIX_LEN + FSM_MAX_TARGET_NAME];
    size_t klen = keys_target(key, b->bus_id, t->name, strlen(t->name));
    store_batch_put(f->batch, key, klen, val, vlen);
    free(val);
}

static void put_cursor(fsm *f, const fsm_bus *b, const fsm_target *t, uint32_t p)
{
    uint8_t key[KEYS_CURSOR_LEN], val[8];
    keys_cursor(key, b->bus_id, t->id, p);
    util_put_be64(val, t->cursors[p]);
    store_batch_put(f->batch, key, sizeof(key), val, sizeof(val));
}

/* Deletes the stored cursors of one target (target_id != 0) or of a whole bus (0). */
static void del_cursors(fsm *f, uint32_t bus_id, uint64_t target_id)
{
    uint8_t lo[KEYS_CURSOR_LEN], hi[KEYS_CURSOR_LEN];
    if (target_id != 0) {
        keys_cursor(lo, bus_id, target_id, 0);
        keys_cursor(hi, bus_id, target_id + 1, 0);
    } else {
        keys_cursor(lo, bus_id, 0, 0);
        keys_cursor(hi, bus_id + 1, 0, 0);
    }
    store_batch_delete_range(f->batch, lo, sizeof(lo), hi, sizeof(hi));
}

/* Deletes the stored targets and cursors of a bus. */
static void del_bus_targets(fsm *f, uint32_t bus_id)
{
    uint8_t lo[KEYS_TARGET_PREFIX_LEN], hi[KEYS_TARGET_PREFIX_LEN];
    keys_target(lo, bus_id, NULL, 0);
    keys_target(hi, bus_id + 1, NULL, 0);
    store_batch_delete_range(f->batch, lo, sizeof(lo), hi, sizeof(hi));
    del_cursors(f, bus_id, 0);
}

/* Copies an optional string: NULL for NULL or "". 0 or EVBUS_ENOMEM. */
static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!nonempty(src))
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : EVBUS_ENOMEM;
}

/* Replaces the settings of t with those of m (validated). 0 or EVBUS_ENOMEM (t unchanged). */
static int target_set(fsm_target *t, const evbuscmd_TargetMeta *m)
{
    char *dl, *ip, *in, *pm, *tp;
    if (dup_opt(&dl, m->dead_letter) || dup_opt(&ip, m->input_path) || dup_opt(&in, m->input) ||
        dup_opt(&pm, m->input_paths_map) || dup_opt(&tp, m->input_template))
        return EVBUS_ENOMEM; /* apply stops the process: leaks do not matter */
    free(t->dead_letter);
    free(t->input_path);
    free(t->input);
    free(t->input_paths_map);
    free(t->input_template);
    t->dead_letter = dl;
    t->input_path = ip;
    t->input = in;
    t->input_paths_map = pm;
    t->input_template = tp;
    t->input_kind = (int)m->input_kind;
    t->max_attempts = m->max_attempts;
    t->max_age_s = m->max_age_s;
    t->window = m->window;
    t->ack_timeout_ms = m->ack_timeout_ms;
    return 0;
}

/* A target from stored or snapshot metadata (cursors start at 0 unless m has them). NULL only
 * when out of memory. */
static fsm_target *target_from_meta(const fsm_bus *b, const evbuscmd_TargetMeta *m)
{
    fsm_target *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->name = strdup(m->name);
    t->cursors = calloc(b->partitions, sizeof(*t->cursors));
    t->rule_ids = malloc((m->rule_ids_count ? m->rule_ids_count : 1) * sizeof(*t->rule_ids));
    if (t->name == NULL || t->cursors == NULL || t->rule_ids == NULL || target_set(t, m) != 0) {
        target_free(t);
        return NULL;
    }
    t->id = m->target_id;
    for (pb_size_t i = 0; i < m->rule_ids_count; i++)
        t->rule_ids[i] = m->rule_ids[i];
    t->n_rule_ids = m->rule_ids_count;
    if (m->cursors_count == b->partitions)
        for (uint32_t p = 0; p < b->partitions; p++)
            t->cursors[p] = m->cursors[p];
    t->created_index = m->created_index;
    t->updated_index = m->updated_index;
    t->delivered = m->delivered;
    t->retried = m->retried;
    t->dead_lettered = m->dead_lettered;
    t->dropped = m->dropped;
    return t;
}

/* Checks of TargetMeta from disk or a snapshot (settings and id). 0 or EVBUS_EPROTO. */
static int target_meta_valid(const evbuscmd_TargetMeta *m)
{
    char why[256];
    if (m->name == NULL || m->target_id == 0 || fsm_target_validate(m, why, sizeof(why)) != 0)
        return EVBUS_EPROTO;
    for (pb_size_t i = 1; i < m->rule_ids_count; i++)
        if (m->rule_ids[i] <= m->rule_ids[i - 1])
            return EVBUS_EPROTO;
    return 0;
}

/*
 * Removes the targets of a bus that are no longer reachable (T3): mark those serving a rule,
 * then the dead-letter targets of marked ones until nothing changes (at most n_targets rounds),
 * and sweep the rest with their stored keys.
 */
static void targets_collect(fsm *f, fsm_bus *b)
{
    size_t n = b->n_targets;
    if (n == 0)
        return;
    unsigned char *live = calloc(n, 1);
    if (live == NULL)
        oom("target sweep");
    for (size_t i = 0; i < n; i++)
        live[i] = b->targets[i]->n_rule_ids > 0;
    for (size_t round = 0, changed = 1; changed && round < n; round++) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (!live[i] || b->targets[i]->dead_letter == NULL)
                continue;
            int found;
            size_t d = target_pos(b, b->targets[i]->dead_letter, &found);
            if (found && !live[d]) {
                live[d] = 1;
                changed = 1;
            }
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        fsm_target *t = b->targets[i];
        if (live[i]) {
            b->targets[kept++] = t;
            continue;
        }
        uint8_t key[KEYS_TARGET_PREFIX_LEN + FSM_MAX_TARGET_NAME];
        size_t klen = keys_target(key, b->bus_id, t->name, strlen(t->name));
        store_batch_delete(f->batch, key, klen);
        del_cursors(f, b->bus_id, t->id);
        target_free(t);
    }
    b->n_targets = kept;
    free(live);
}

/* Unlinks every target of rule r (being deleted) and collects the unreachable ones. */
static void rule_unlink_targets(fsm *f, fsm_bus *b, fsm_rule *r)
{
    if (r->n_targets == 0)
        return;
    for (size_t i = 0; i < r->n_targets; i++) {
        target_drop_rule_id(r->targets[i], r->id);
        put_target_meta(f, b, r->targets[i]);
    }
    r->n_targets = 0;
    targets_collect(f, b); /* deletes the keys of the removed ones after the puts above */
}

/* ---------------------------------------------------------------- producers */

static void seq_free(fsm_seq *q)
{
    free(q->parts);
    free(q->offs);
    free(q->codes);
    memset(q, 0, sizeof(*q));
}

static void producer_free(fsm_producer *p)
{
    for (uint32_t i = 0; i < p->n_recent; i++)
        seq_free(&p->recent[i]);
    free(p->recent);
    memset(p, 0, sizeof(*p));
}

static void clear_producers(fsm *f)
{
    for (size_t i = 0; i < f->n_producers; i++)
        producer_free(&f->producers[i]);
    f->n_producers = 0;
}

static fsm_producer *producer_find(fsm *f, uint64_t id)
{
    for (size_t i = 0; i < f->n_producers; i++)
        if (f->producers[i].id == id)
            return &f->producers[i];
    return NULL;
}

static void producer_key(uint8_t key[9], uint64_t id)
{
    key[0] = 'D';
    util_put_be64(key + 1, id);
}

/* ------------------------------------------------------- persisted metadata */

static void put_bus_meta(fsm *f, const fsm_bus *b)
{
    evbuscmd_BusMeta m = evbuscmd_BusMeta_init_zero;
    m.name = b->name;
    m.bus_id = b->bus_id;
    m.partitions = b->partitions;
    m.created_index = b->created_index;
    m.created_time_ms = b->created_time_ms;
    m.next_rule_id = b->next_rule_id;
    m.next_target_id = b->next_target_id;
    uint8_t *val;
    size_t vlen;
    if (wire_encode_body(evbuscmd_BusMeta_fields, &m, &val, &vlen) != 0) {
        LOG_ERRORF(MOD, "cannot encode bus metadata", "bus=%s", b->name);
        exit(70);
    }
    size_t nlen = strlen(b->name);
    uint8_t key[1 + 256];
    size_t klen = keys_bus(key, b->name, nlen);
    store_batch_put(f->batch, key, klen, val, vlen);
    free(val);
}

static void put_partition_meta(fsm *f, const fsm_bus *b, uint32_t p)
{
    uint8_t key[KEYS_PART_LEN], val[16];
    keys_partition(key, b->bus_id, p);
    util_put_be64(val, b->parts[p].first_offset);
    util_put_be64(val + 8, b->parts[p].next_offset);
    store_batch_put(f->batch, key, sizeof(key), val, sizeof(val));
}

static void put_u64(fsm *f, const char *key, uint64_t v)
{
    uint8_t val[8];
    util_put_be64(val, v);
    store_batch_put(f->batch, key, strlen(key), val, sizeof(val));
}

static void put_node_meta(fsm *f, const fsm_node *n)
{
    evbuscmd_NodeMeta m = evbuscmd_NodeMeta_init_zero;
    m.node_id = n->id;
    m.raft_addr = n->raft_addr;
    m.client_addr = n->client_addr;
    uint8_t *val;
    size_t vlen;
    if (wire_encode_body(evbuscmd_NodeMeta_fields, &m, &val, &vlen) != 0)
        oom("node meta");
    uint8_t key[5] = {'N'};
    util_put_be32(key + 1, n->id);
    store_batch_put(f->batch, key, sizeof(key), val, vlen);
    free(val);
}

static void del_node_meta(fsm *f, uint32_t id)
{
    uint8_t key[5] = {'N'};
    util_put_be32(key + 1, id);
    store_batch_delete(f->batch, key, sizeof(key));
}

/* Fills m from p; the arrays point into p (borrowed) except m->recent, which the caller frees. */
static int producer_to_meta(const fsm_producer *p, evbuscmd_ProducerMeta *m)
{
    memset(m, 0, sizeof(*m));
    m->producer_id = p->id;
    m->last_time_ms = p->last_time_ms;
    m->last_index = p->last_index;
    m->recent = calloc(p->n_recent ? p->n_recent : 1, sizeof(*m->recent));
    if (m->recent == NULL)
        return EVBUS_ENOMEM;
    m->recent_count = (pb_size_t)p->n_recent;
    for (uint32_t i = 0; i < p->n_recent; i++) {
        evbuscmd_SeqResult *r = &m->recent[i];
        r->sequence = p->recent[i].seq;
        r->partitions = p->recent[i].parts;
        r->partitions_count = (pb_size_t)p->recent[i].n;
        r->offsets = p->recent[i].offs;
        r->offsets_count = (pb_size_t)p->recent[i].n;
        r->codes = p->recent[i].codes;
        r->codes_count = (pb_size_t)p->recent[i].n;
    }
    return 0;
}

static void put_producer_meta(fsm *f, const fsm_producer *p)
{
    evbuscmd_ProducerMeta m;
    uint8_t *val;
    size_t vlen;
    if (producer_to_meta(p, &m) != 0 ||
        wire_encode_body(evbuscmd_ProducerMeta_fields, &m, &val, &vlen) != 0)
        oom("producer meta");
    free(m.recent);
    uint8_t key[9];
    producer_key(key, p->id);
    store_batch_put(f->batch, key, sizeof(key), val, vlen);
    free(val);
}

/* Takes a decoded ProducerMeta into the table (copying). */
static int producer_from_meta(fsm *f, const evbuscmd_ProducerMeta *m)
{
    if (f->n_producers == f->cap_producers) {
        size_t cap = f->cap_producers ? f->cap_producers * 2 : 64;
        fsm_producer *np = realloc(f->producers, cap * sizeof(*np));
        if (np == NULL)
            return EVBUS_ENOMEM;
        f->producers = np;
        f->cap_producers = cap;
    }
    fsm_producer *p = &f->producers[f->n_producers++];
    memset(p, 0, sizeof(*p));
    p->id = m->producer_id;
    p->last_time_ms = m->last_time_ms;
    p->last_index = m->last_index;
    p->recent = calloc(m->recent_count ? m->recent_count : 1, sizeof(*p->recent));
    if (p->recent == NULL)
        return EVBUS_ENOMEM;
    for (pb_size_t i = 0; i < m->recent_count; i++) {
        const evbuscmd_SeqResult *r = &m->recent[i];
        fsm_seq *q = &p->recent[p->n_recent++];
        uint32_t n = r->partitions_count;
        if (r->offsets_count != n || r->codes_count != n)
            return EVBUS_EPROTO;
        q->seq = r->sequence;
        q->n = n;
        q->parts = malloc((n ? n : 1) * sizeof(*q->parts));
        q->offs = malloc((n ? n : 1) * sizeof(*q->offs));
        q->codes = malloc((n ? n : 1) * sizeof(*q->codes));
        if (q->parts == NULL || q->offs == NULL || q->codes == NULL)
            return EVBUS_ENOMEM;
        if (n) {
            memcpy(q->parts, r->partitions, n * sizeof(*q->parts));
            memcpy(q->offs, r->offsets, n * sizeof(*q->offs));
            memcpy(q->codes, r->codes, n * sizeof(*q->codes));
        }
    }
    return 0;
}

static void put_params(fsm *f)
{
    evbuscmd_SetParams m = evbuscmd_SetParams_init_zero;
    m.dedup_window = f->params.dedup_window;
    m.dedup_max_producers = f->params.dedup_max_producers;
    m.dedup_ttl_ms = f->params.dedup_ttl_ms;
    m.max_rules_per_bus = f->params.max_rules_per_bus;
    m.max_pattern_bytes = f->params.max_pattern_bytes;
    uint8_t *val;
    size_t vlen;
    if (wire_encode_body(evbuscmd_SetParams_fields, &m, &val, &vlen) != 0)
        oom("params");
    store_batch_put(f->batch, "Mparams", 7, val, vlen);
    free(val);
}

static void hole_key(uint8_t key[9], uint32_t bus_id, uint32_t partition)
{
    key[0] = 'H';
    util_put_be32(key + 1, bus_id);
    util_put_be32(key + 5, partition);
}

static void put_hole(fsm *f, const fsm_bus *b, uint32_t p)
{
    uint8_t key[9], val[16];
    hole_key(key, b->bus_id, p);
    util_put_be64(val, b->parts[p].hole_from);
    util_put_be64(val + 8, b->parts[p].hole_to);
    store_batch_put(f->batch, key, sizeof(key), val, sizeof(val));
}

static int get_u64(fsm *f, const char *key, uint64_t *out)
{
    char *val;
    size_t vlen;
    int rv = store_get(f->db, key, strlen(key), &val, &vlen);
    if (rv == EVBUS_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rv != 0)
        return rv;
    if (vlen != 8) {
        free(val);
        return EVBUS_EPROTO;
    }
    *out = util_get_be64((const uint8_t *)val);
    free(val);
    return 0;
}

static int load_buses(fsm *f, char *err, size_t err_len)
{
    uint8_t lo = 'B', hi = 'C';
    store_iter *it = store_iter_new(f->db, &lo, 1, &hi, 1);
    if (it == NULL)
        return EVBUS_ENOMEM;
    int rv = 0;
    for (; store_iter_valid(it); store_iter_next(it)) {
        size_t vlen;
        const uint8_t *val = store_iter_value(it, &vlen);
        evbuscmd_BusMeta m = evbuscmd_BusMeta_init_zero;
        if ((rv = wire_decode(evbuscmd_BusMeta_fields, val, vlen, &m, err, err_len)) != 0)
            break;
        fsm_bus *b = NULL;
        if (m.name == NULL || m.partitions == 0 || m.partitions > FSM_MAX_PARTITIONS ||
            (b = bus_new(m.name, m.bus_id, m.partitions)) == NULL) {
            snprintf(err, err_len, "corrupt bus metadata in RocksDB");
            wire_release(evbuscmd_BusMeta_fields, &m);
            rv = EVBUS_EPROTO;
            break;
        }
        b->created_index = m.created_index;
        b->created_time_ms = m.created_time_ms;
        b->next_rule_id = m.next_rule_id ? m.next_rule_id : 1;
        b->next_target_id = m.next_target_id ? m.next_target_id : 1;
        wire_release(evbuscmd_BusMeta_fields, &m);
        for (uint32_t p = 0; p < b->partitions; p++) {
            uint8_t key[KEYS_PART_LEN];
            char *pv;
            size_t plen;
            keys_partition(key, b->bus_id, p);
            if (store_get(f->db, key, sizeof(key), &pv, &plen) == 0) {
                if (plen == 16) {
                    b->parts[p].first_offset = util_get_be64((const uint8_t *)pv);
                    b->parts[p].next_offset = util_get_be64((const uint8_t *)pv + 8);
                }
                free(pv);
            }
        }
        if ((rv = bus_add(f, b)) != 0) {
            bus_free(b);
            break;
        }
    }
    if (rv == 0)
        rv = store_iter_status(it, err, err_len);
    store_iter_free(it);
    return rv;
}

/* Calls fn for every key with the one-byte prefix `prefix`. Stops at the first error. */
static int scan_prefix(fsm *f, uint8_t prefix,
                       int (*fn)(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v,
                                 size_t vlen, char *err, size_t err_len),
                       char *err, size_t err_len)
{
    uint8_t hi = (uint8_t)(prefix + 1);
    store_iter *it = store_iter_new(f->db, &prefix, 1, &hi, 1);
    if (it == NULL)
        return EVBUS_ENOMEM;
    int rv = 0;
    for (; rv == 0 && store_iter_valid(it); store_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = store_iter_key(it, &klen);
        const uint8_t *v = store_iter_value(it, &vlen);
        rv = fn(f, k, klen, v, vlen, err, err_len);
    }
    if (rv == 0)
        rv = store_iter_status(it, err, err_len);
    store_iter_free(it);
    return rv;
}

static int load_node(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                     char *err, size_t err_len)
{
    (void)k;
    (void)klen;
    evbuscmd_NodeMeta m = evbuscmd_NodeMeta_init_zero;
    int rv = wire_decode(evbuscmd_NodeMeta_fields, v, vlen, &m, err, err_len);
    if (rv != 0)
        return rv;
    node_upsert(f, m.node_id, m.raft_addr, m.client_addr);
    wire_release(evbuscmd_NodeMeta_fields, &m);
    return 0;
}

static int load_producer(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                         char *err, size_t err_len)
{
    (void)k;
    (void)klen;
    evbuscmd_ProducerMeta m = evbuscmd_ProducerMeta_init_zero;
    int rv = wire_decode(evbuscmd_ProducerMeta_fields, v, vlen, &m, err, err_len);
    if (rv != 0)
        return rv;
    rv = producer_from_meta(f, &m);
    wire_release(evbuscmd_ProducerMeta_fields, &m);
    if (rv != 0)
        snprintf(err, err_len, "corrupt producer record");
    return rv;
}

static int load_hole(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                     char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    if (klen != 9 || vlen != 16)
        return 0;
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, util_get_be32(k + 1));
    uint32_t p = util_get_be32(k + 5);
    if (b == NULL || p >= b->partitions)
        return 0;
    b->parts[p].hole_from = util_get_be64(v);
    b->parts[p].hole_to = util_get_be64(v + 8);
    if (b->parts[p].hole_to > b->parts[p].hole_from)
        f->n_holes++;
    return 0;
}

static int load_rule(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                     char *err, size_t err_len)
{
    if (klen <= KEYS_RULE_PREFIX_LEN)
        return 0;
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, util_get_be32(k + 1));
    if (b == NULL)
        return 0; /* cannot happen: a bus's rules go with it in the same batch */
    evbuscmd_RuleMeta m = evbuscmd_RuleMeta_init_zero;
    int rv = wire_decode(evbuscmd_RuleMeta_fields, v, vlen, &m, err, err_len);
    if (rv != 0)
        return rv;
    if (rule_meta_valid(&m) != 0 || fsm_rule_find(b, m.name) != NULL ||
        fsm_rule_by_id(b, m.rule_id) != NULL || b->n_rules >= FSM_MAX_RULES_PER_BUS) {
        snprintf(err, err_len, "corrupt rule record of bus %s", b->name);
        wire_release(evbuscmd_RuleMeta_fields, &m);
        return EVBUS_EPROTO;
    }
    fsm_rule *r = rule_from_meta(b, &m);
    wire_release(evbuscmd_RuleMeta_fields, &m);
    if (r == NULL)
        return EVBUS_ENOMEM;
    rule_insert(b, r);
    if (r->id >= b->next_rule_id)
        b->next_rule_id = r->id + 1;
    return 0;
}

static int load_target(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                       char *err, size_t err_len)
{
    if (klen <= KEYS_TARGET_PREFIX_LEN)
        return 0;
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, util_get_be32(k + 1));
    if (b == NULL)
        return 0; /* cannot happen: a bus's targets go with it in the same batch */
    evbuscmd_TargetMeta m = evbuscmd_TargetMeta_init_zero;
    int rv = wire_decode(evbuscmd_TargetMeta_fields, v, vlen, &m, err, err_len);
    if (rv != 0)
        return rv;
    if (target_meta_valid(&m) != 0 || fsm_target_find(b, m.name) != NULL ||
        b->n_targets >= FSM_MAX_TARGETS_PER_BUS) {
        snprintf(err, err_len, "corrupt target record of bus %s", b->name);
        wire_release(evbuscmd_TargetMeta_fields, &m);
        return EVBUS_EPROTO;
    }
    fsm_target *t = target_from_meta(b, &m);
    wire_release(evbuscmd_TargetMeta_fields, &m);
    if (t == NULL)
        return EVBUS_ENOMEM;
    target_insert(b, t);
    if (t->id >= b->next_target_id)
        b->next_target_id = t->id + 1;
    return 0;
}

static int load_cursor(fsm *f, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                       char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    if (klen != KEYS_CURSOR_LEN || vlen != 8)
        return 0;
    const fsm_bus *b = fsm_bus_by_id(f, util_get_be32(k + 1));
    fsm_target *t = b ? (fsm_target *)fsm_target_by_id(b, util_get_be64(k + 5)) : NULL;
    uint32_t p = util_get_be32(k + 13);
    if (t != NULL && p < b->partitions)
        t->cursors[p] = util_get_be64(v);
    return 0;
}

static void params_defaults(fsm_params *p)
{
    p->dedup_window = FSM_DEFAULT_DEDUP_WINDOW;
    p->dedup_max_producers = FSM_DEFAULT_DEDUP_MAX_PRODUCERS;
    p->dedup_ttl_ms = FSM_DEFAULT_DEDUP_TTL_MS;
    p->max_rules_per_bus = FSM_DEFAULT_MAX_RULES_PER_BUS;
    p->max_pattern_bytes = FSM_DEFAULT_MAX_PATTERN_BYTES;
}

static void params_from(fsm_params *p, const evbuscmd_SetParams *m)
{
    if (m->dedup_window >= 1 && m->dedup_window <= 1024)
        p->dedup_window = m->dedup_window;
    if (m->dedup_max_producers >= 1)
        p->dedup_max_producers = m->dedup_max_producers;
    if (m->dedup_ttl_ms >= 1000)
        p->dedup_ttl_ms = m->dedup_ttl_ms;
    if (m->max_rules_per_bus >= 1 && m->max_rules_per_bus <= FSM_MAX_RULES_PER_BUS)
        p->max_rules_per_bus = m->max_rules_per_bus;
    if (m->max_pattern_bytes >= 1 && m->max_pattern_bytes <= FSM_MAX_PATTERN_BYTES)
        p->max_pattern_bytes = m->max_pattern_bytes;
}

int fsm_init(fsm *f, store *db, char *err, size_t err_len)
{
    memset(f, 0, sizeof(*f));
    f->db = db;
    f->batch = store_batch_new();
    if (f->batch == NULL)
        return EVBUS_ENOMEM;
    uint64_t next_bus_id;
    int rv;
    if ((rv = get_u64(f, KEYS_META_APPLIED, &f->applied_index)) != 0 ||
        (rv = get_u64(f, KEYS_META_NEXT_BUS_ID, &next_bus_id)) != 0) {
        snprintf(err, err_len, "cannot read state metadata: %s", evbus_strerror(rv));
        return rv;
    }
    f->next_bus_id = next_bus_id ? (uint32_t)next_bus_id : 1;
    params_defaults(&f->params);
    char *pv;
    size_t plen;
    if (store_get(db, "Mparams", 7, &pv, &plen) == 0) {
        evbuscmd_SetParams m = evbuscmd_SetParams_init_zero;
        if (wire_decode(evbuscmd_SetParams_fields, (uint8_t *)pv, plen, &m, err, err_len) == 0)
            params_from(&f->params, &m);
        free(pv);
    }
    if ((rv = load_buses(f, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'N', load_node, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'D', load_producer, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'H', load_hole, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'R', load_rule, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'T', load_target, err, err_len)) != 0 ||
        (rv = scan_prefix(f, 'C', load_cursor, err, err_len)) != 0)
        return rv;
    for (size_t i = 0; i < f->n_buses; i++)
        targets_relink(f->buses[i]);
    size_t n_rules = 0;
    for (size_t i = 0; i < f->n_buses; i++)
        n_rules += f->buses[i]->n_rules;
    LOG_INFOF(MOD, "state loaded",
              "applied_index=%llu buses=%zu rules=%zu nodes=%zu producers=%zu holes=%zu",
              (unsigned long long)f->applied_index, f->n_buses, n_rules, f->n_nodes, f->n_producers,
              f->n_holes);
    return 0;
}

void fsm_close(fsm *f)
{
    clear_buses(f);
    free(f->buses);
    f->buses = NULL;
    clear_nodes(f);
    free(f->nodes);
    f->nodes = NULL;
    clear_producers(f);
    free(f->producers);
    f->producers = NULL;
    store_batch_free(f->batch);
    f->batch = NULL;
    for (size_t i = 0; i < FSM_RESULT_RING; i++)
        free(f->ring[i].ops);
    memset(f->ring, 0, sizeof(f->ring));
}

/* ------------------------------------------------------------------- apply */

static fsm_op_result *result_push(fsm_entry_result *r)
{
    if (r->n_ops == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        fsm_op_result *n = realloc(r->ops, cap * sizeof(*n));
        if (n == NULL) {
            LOG_ERRORF(MOD, "out of memory in apply", "index=%llu", (unsigned long long)r->index);
            exit(71);
        }
        r->ops = n;
        r->cap = cap;
    }
    fsm_op_result *o = &r->ops[r->n_ops++];
    memset(o, 0, sizeof(*o));
    return o;
}

static void apply_create_bus(fsm *f, const evbuscmd_CreateBus *c, uint64_t index, uint64_t time_ms,
                             fsm_op_result *res)
{
    char err[128];
    if (fsm_validate_bus_name(c->name, err, sizeof(err)) != 0 || c->partitions == 0 ||
        c->partitions > FSM_MAX_PARTITIONS) {
        res->code = EVBUS_EINVAL;
        return;
    }
    if (fsm_bus_find(f, c->name) != NULL) {
        res->code = EVBUS_EEXIST;
        return;
    }
    if (f->n_buses >= FSM_MAX_BUSES) {
        res->code = EVBUS_ETOOBIG;
        return;
    }
    fsm_bus *b = bus_new(c->name, f->next_bus_id++, c->partitions);
    if (b == NULL || bus_add(f, b) != 0) {
        LOG_ERRORF(MOD, "out of memory in apply", "index=%llu", (unsigned long long)index);
        exit(71);
    }
    b->created_index = index;
    b->created_time_ms = time_ms;
    put_bus_meta(f, b);
    for (uint32_t p = 0; p < b->partitions; p++)
        put_partition_meta(f, b, p);
    put_u64(f, KEYS_META_NEXT_BUS_ID, f->next_bus_id);
    res->partition = b->partitions;
}

static void apply_delete_bus(fsm *f, const evbuscmd_DeleteBus *d, fsm_op_result *res)
{
    const fsm_bus *b = d->name ? fsm_bus_find(f, d->name) : NULL;
    if (b == NULL || (d->bus_id != 0 && d->bus_id != b->bus_id)) {
        res->code = EVBUS_ENOTFOUND;
        return;
    }
    uint8_t lo[KEYS_EVENT_LEN], hi[KEYS_EVENT_LEN];
    keys_event(lo, b->bus_id, 0, 0);
    keys_event(hi, b->bus_id + 1, 0, 0);
    store_batch_delete_range(f->batch, lo, sizeof(lo), hi, sizeof(hi));
    uint8_t plo[KEYS_PART_LEN], phi[KEYS_PART_LEN];
    keys_partition(plo, b->bus_id, 0);
    keys_partition(phi, b->bus_id + 1, 0);
    store_batch_delete_range(f->batch, plo, sizeof(plo), phi, sizeof(phi));
    uint8_t hlo[9], hhi[9];
    hole_key(hlo, b->bus_id, 0);
    hole_key(hhi, b->bus_id + 1, 0);
    store_batch_delete_range(f->batch, hlo, sizeof(hlo), hhi, sizeof(hhi));
    del_bus_rules(f, b->bus_id);
    del_bus_targets(f, b->bus_id);
    for (uint32_t p = 0; p < b->partitions; p++)
        if (b->parts[p].hole_to > b->parts[p].hole_from)
            f->n_holes--;
    uint8_t key[1 + 256];
    size_t klen = keys_bus(key, b->name, strlen(b->name));
    store_batch_delete(f->batch, key, klen);
    bus_remove(f, b);
}

/* Rule commands. Results: 0; EVBUS_ENOTFOUND (bus or rule); EVBUS_EINVAL (name, description or
 * pattern); EVBUS_ETOOBIG (pattern bytes or rules per bus over the replicated parameters). The
 * rule id goes back in res->offset. */
static void apply_put_rule(fsm *f, const evbuscmd_PutRule *c, uint64_t index, fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    char err[256];
    if (b == NULL) {
        res->code = EVBUS_ENOTFOUND;
        return;
    }
    const char *desc = c->description ? c->description : "";
    if (fsm_validate_rule_name(c->name, err, sizeof(err)) != 0 || c->pattern == NULL ||
        strlen(desc) > FSM_MAX_RULE_DESCRIPTION) {
        res->code = EVBUS_EINVAL;
        return;
    }
    fsm_rule *r = (fsm_rule *)fsm_rule_find(b, c->name);
    size_t cap = f->params.max_rules_per_bus < FSM_MAX_RULES_PER_BUS ? f->params.max_rules_per_bus
                                                                     : FSM_MAX_RULES_PER_BUS;
    if (strlen(c->pattern) > f->params.max_pattern_bytes || (r == NULL && b->n_rules >= cap)) {
        res->code = EVBUS_ETOOBIG;
        return;
    }
    rules_pattern *p = NULL;
    int rv = pattern_parse(c->pattern, f->params.max_pattern_bytes, &p, err, sizeof(err));
    if (rv != 0) {
        LOG_DEBUGF(MOD, "rule pattern rejected in apply", "index=%llu bus=%s rule=%s err=\"%s\"",
                   (unsigned long long)index, b->name, c->name, err);
        res->code = rv;
        return;
    }
    /* The matcher first: when it refuses, nothing has changed. */
    uint64_t id = r ? r->id : b->next_rule_id;
    if (!c->disabled && matcher_put(b, id, p) != 0) {
        rules_pattern_free(p);
        res->code = EVBUS_EINTERNAL;
        return;
    }
    if (c->disabled)
        matcher_drop(b, id);
    char *pattern = strdup(c->pattern);
    char *description = strdup(desc);
    if (pattern == NULL || description == NULL)
        oom("rule");
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL || (r->name = strdup(c->name)) == NULL)
            oom("rule");
        r->id = b->next_rule_id++;
        r->created_index = index;
        rule_insert(b, r);
        put_bus_meta(f, b); /* next_rule_id */
    } else {
        free(r->pattern);
        free(r->description);
    }
    r->pattern = pattern;
    r->description = description;
    r->enabled = !c->disabled;
    r->broken = 0;
    r->updated_index = index;
    r->memory_bytes = rules_pattern_memory(p);
    rules_pattern_free(p);
    put_rule_meta(f, b, r);
    res->offset = r->id;
}

static void apply_delete_rule(fsm *f, const evbuscmd_DeleteRule *c, fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    fsm_rule *r = b && c->name ? (fsm_rule *)fsm_rule_find(b, c->name) : NULL;
    if (r == NULL) {
        res->code = EVBUS_ENOTFOUND;
        return;
    }
    res->offset = r->id;
    matcher_drop(b, r->id);
    rule_unlink_targets(f, b, r);
    del_rule_meta(f, b, r->name);
    rule_remove(b, r);
}

static void apply_set_rule_state(fsm *f, const evbuscmd_SetRuleState *c, uint64_t index,
                                 fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    fsm_rule *r = b && c->name ? (fsm_rule *)fsm_rule_find(b, c->name) : NULL;
    if (r == NULL) {
        res->code = EVBUS_ENOTFOUND;
        return;
    }
    res->offset = r->id;
    int enable = c->enabled != 0;
    if (r->enabled == enable)
        return; /* already so: nothing changes, not even updated_index */
    if (enable) {
        rules_pattern *p = NULL;
        char err[256];
        /* Accepted when put: parsed against the hard cap, not today's parameter. */
        int rv = r->broken ? EVBUS_EINVAL
                           : pattern_parse(r->pattern, FSM_MAX_PATTERN_BYTES, &p, err, sizeof(err));
        if (rv != 0) {
            res->code = EVBUS_EINVAL;
            return;
        }
        rv = matcher_put(b, r->id, p);
        rules_pattern_free(p);
        if (rv != 0) {
            res->code = EVBUS_EINTERNAL;
            return;
        }
    } else {
        matcher_drop(b, r->id);
    }
    r->enabled = enable;
    r->updated_index = index;
    put_rule_meta(f, b, r);
}

/*
 * Target commands. Results: 0 (res->offset: the target id); EVBUS_ENOTFOUND (bus, rule,
 * target, dead-letter target); EVBUS_EINVAL (settings); EVBUS_ETOOBIG (targets per rule or per
 * bus). res->msg says which.
 */
static void apply_put_target(fsm *f, const evbuscmd_PutTarget *c, uint64_t index,
                             fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    fsm_rule *r = b && c->rule ? (fsm_rule *)fsm_rule_find(b, c->rule) : NULL;
    char err[256];
    if (r == NULL) {
        res->code = EVBUS_ENOTFOUND;
        res->msg = b ? "rule does not exist" : "bus does not exist";
        return;
    }
    const evbuscmd_TargetMeta *m = &c->target;
    if (!c->has_target || fsm_target_validate(m, err, sizeof(err)) != 0) {
        res->code = EVBUS_EINVAL;
        res->msg = "invalid target settings";
        return;
    }
    if (m->dead_letter && m->dead_letter[0] && fsm_target_find(b, m->dead_letter) == NULL) {
        res->code = EVBUS_ENOTFOUND;
        res->msg = "the dead-letter target does not exist on the bus (put it first)";
        return;
    }
    fsm_target *t = (fsm_target *)fsm_target_find(b, m->name);
    if (t == NULL || !rule_has_target(r, t)) {
        if (r->n_targets >= FSM_MAX_TARGETS_PER_RULE) {
            res->code = EVBUS_ETOOBIG;
            res->msg = "the rule already has 5 targets, the limit";
            return;
        }
        if (t == NULL && b->n_targets >= FSM_MAX_TARGETS_PER_BUS) {
            res->code = EVBUS_ETOOBIG;
            res->msg = "the bus has too many targets";
            return;
        }
    }
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || (t->name = strdup(m->name)) == NULL ||
            (t->cursors = calloc(b->partitions, sizeof(*t->cursors))) == NULL)
            oom("target");
        t->id = b->next_target_id++;
        t->created_index = index;
        /* T1: a new target starts at the events published after it. */
        for (uint32_t p = 0; p < b->partitions; p++) {
            t->cursors[p] = b->parts[p].next_offset;
            put_cursor(f, b, t, p);
        }
        target_insert(b, t);
        put_bus_meta(f, b); /* next_target_id */
    }
    if (target_set(t, m) != 0)
        oom("target");
    if (!rule_has_target(r, t))
        rule_link_add(r, t);
    target_add_rule_id(t, r->id);
    t->updated_index = index;
    put_target_meta(f, b, t);
    /* A changed dead-letter setting may leave the former dead-letter target unreachable. */
    targets_collect(f, b);
    res->offset = t->id;
}

static void apply_remove_target(fsm *f, const evbuscmd_RemoveTarget *c, fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    fsm_rule *r = b && c->rule ? (fsm_rule *)fsm_rule_find(b, c->rule) : NULL;
    fsm_target *t = r && c->target ? (fsm_target *)fsm_target_find(b, c->target) : NULL;
    if (t == NULL || !rule_has_target(r, t)) {
        res->code = EVBUS_ENOTFOUND;
        res->msg = b == NULL   ? "bus does not exist"
                   : r == NULL ? "rule does not exist"
                               : "the rule has no such target";
        return;
    }
    res->offset = t->id;
    rule_link_drop(r, t);
    target_drop_rule_id(t, r->id);
    put_target_meta(f, b, t);
    targets_collect(f, b);
}

/* T2: each cursor becomes max(current, offset); nothing changes unless every entry is valid. */
static void apply_advance_cursors(fsm *f, const evbuscmd_AdvanceCursors *c, fsm_op_result *res)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, c->bus_id);
    fsm_target *t = b ? (fsm_target *)fsm_target_by_id(b, c->target_id) : NULL;
    if (t == NULL) {
        res->code = EVBUS_ENOTFOUND;
        res->msg = b ? "target does not exist (removed?)" : "bus does not exist";
        return;
    }
    for (pb_size_t i = 0; i < c->cursors_count; i++) {
        const evbuscmd_CursorAdvance *a = &c->cursors[i];
        if (a->partition >= b->partitions || a->offset > b->parts[a->partition].next_offset) {
            res->code = EVBUS_EINVAL;
            res->msg = "cursor beyond the partition's next offset, or no such partition";
            return;
        }
    }
    for (pb_size_t i = 0; i < c->cursors_count; i++) {
        const evbuscmd_CursorAdvance *a = &c->cursors[i];
        if (a->offset > t->cursors[a->partition]) {
            t->cursors[a->partition] = a->offset;
            put_cursor(f, b, t, a->partition);
        }
    }
    if (c->delivered || c->retried || c->dead_lettered || c->dropped) {
        t->delivered += c->delivered;
        t->retried += c->retried;
        t->dead_lettered += c->dead_lettered;
        t->dropped += c->dropped;
        put_target_meta(f, b, t);
    }
    res->offset = t->id;
}

/* Partitions touched by this entry, so each partition's metadata is written once per batch. */
typedef struct dirty_part {
    fsm_bus *bus;
    uint32_t partition;
} dirty_part;

static void apply_publish(fsm *f, const evbuscmd_Publish *p, fsm_op_result *res, dirty_part **dirty,
                          size_t *n_dirty, size_t *cap_dirty)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, p->bus_id);
    if (b == NULL) {
        res->code = EVBUS_ENOTFOUND;
        return;
    }
    if (p->partition >= b->partitions || p->envelope == NULL || p->envelope[0] != '{') {
        res->code = EVBUS_EINVAL;
        return;
    }
    fsm_partition *part = &b->parts[p->partition];
    uint8_t key[KEYS_EVENT_LEN];
    keys_event(key, b->bus_id, p->partition, part->next_offset);
    store_batch_put(f->batch, key, sizeof(key), p->envelope, strlen(p->envelope));
    res->partition = p->partition;
    res->offset = part->next_offset++;
    for (size_t i = 0; i < *n_dirty; i++)
        if ((*dirty)[i].bus == b && (*dirty)[i].partition == p->partition)
            return;
    if (*n_dirty == *cap_dirty) {
        size_t cap = *cap_dirty ? *cap_dirty * 2 : 16;
        dirty_part *nd = realloc(*dirty, cap * sizeof(*nd));
        if (nd == NULL) {
            LOG_ERRORF(MOD, "out of memory in apply", "%s", "");
            exit(71);
        }
        *dirty = nd;
        *cap_dirty = cap;
    }
    (*dirty)[(*n_dirty)++] = (dirty_part){b, p->partition};
}

/* Remembers the results of (producer, seq); evicts what the window and table size exclude. */
static void producer_remember(fsm *f, uint64_t producer_id, uint64_t seq, uint64_t index,
                              uint64_t time_ms, const fsm_op_result *res, uint32_t n)
{
    fsm_producer *p = producer_find(f, producer_id);
    if (p == NULL) {
        if (f->n_producers >= f->params.dedup_max_producers) {
            /* Full: forget the producer whose last batch is oldest in the log (deterministic). */
            size_t victim = 0;
            for (size_t i = 1; i < f->n_producers; i++) {
                const fsm_producer *a = &f->producers[i], *v = &f->producers[victim];
                /* Ties by id: the order of the array differs between replicas. */
                if (a->last_index < v->last_index ||
                    (a->last_index == v->last_index && a->id < v->id))
                    victim = i;
            }
            uint8_t key[9];
            producer_key(key, f->producers[victim].id);
            store_batch_delete(f->batch, key, sizeof(key));
            producer_free(&f->producers[victim]);
            f->producers[victim] = f->producers[--f->n_producers];
        }
        if (f->n_producers == f->cap_producers) {
            size_t cap = f->cap_producers ? f->cap_producers * 2 : 64;
            fsm_producer *np = realloc(f->producers, cap * sizeof(*np));
            if (np == NULL)
                oom("producers");
            f->producers = np;
            f->cap_producers = cap;
        }
        p = &f->producers[f->n_producers++];
        memset(p, 0, sizeof(*p));
        p->id = producer_id;
    }
    uint32_t window = f->params.dedup_window;
    while (p->n_recent >= window) {
        seq_free(&p->recent[0]);
        memmove(&p->recent[0], &p->recent[1], (p->n_recent - 1) * sizeof(p->recent[0]));
        p->n_recent--;
    }
    fsm_seq *nr = realloc(p->recent, (p->n_recent + 1) * sizeof(*nr));
    if (nr == NULL)
        oom("producer window");
    p->recent = nr;
    fsm_seq *q = &p->recent[p->n_recent++];
    q->seq = seq;
    q->n = n;
    q->parts = malloc((n ? n : 1) * sizeof(*q->parts));
    q->offs = malloc((n ? n : 1) * sizeof(*q->offs));
    q->codes = malloc((n ? n : 1) * sizeof(*q->codes));
    if (q->parts == NULL || q->offs == NULL || q->codes == NULL)
        oom("producer window");
    for (uint32_t i = 0; i < n; i++) {
        q->parts[i] = res[i].partition;
        q->offs[i] = res[i].offset;
        q->codes[i] = res[i].code;
    }
    p->last_index = index;
    p->last_time_ms = time_ms;
    put_producer_meta(f, p);
}

/* Forgets producers idle longer than the TTL, by leader-stamped time (deterministic). */
static void producers_expire(fsm *f, uint64_t time_ms)
{
    for (size_t i = 0; i < f->n_producers;) {
        fsm_producer *p = &f->producers[i];
        if (p->last_time_ms + f->params.dedup_ttl_ms < time_ms) {
            uint8_t key[9];
            producer_key(key, p->id);
            store_batch_delete(f->batch, key, sizeof(key));
            producer_free(p);
            f->producers[i] = f->producers[--f->n_producers];
        } else {
            i++;
        }
    }
}

static void apply_publish_batch(fsm *f, const evbuscmd_PublishBatch *pb, fsm_entry_result *r,
                                uint64_t index, uint64_t time_ms, dirty_part **dirty,
                                size_t *n_dirty, size_t *cap_dirty)
{
    size_t first = r->n_ops;
    fsm_producer *p = pb->producer_id ? producer_find(f, pb->producer_id) : NULL;
    if (p != NULL) {
        for (uint32_t i = 0; i < p->n_recent; i++) {
            const fsm_seq *q = &p->recent[i];
            if (q->seq != pb->sequence)
                continue;
            /* A retry: answer what the first attempt got, store nothing. */
            for (pb_size_t e = 0; e < pb->events_count; e++) {
                fsm_op_result *res = result_push(r);
                if (e < q->n) {
                    res->code = q->codes[e];
                    res->partition = q->parts[e];
                    res->offset = q->offs[e];
                } else {
                    res->code = EVBUS_EINVAL;
                }
            }
            return;
        }
        if (p->n_recent >= f->params.dedup_window && p->n_recent > 0 &&
            pb->sequence < p->recent[0].seq) {
            for (pb_size_t e = 0; e < pb->events_count; e++)
                result_push(r)->code = EVBUS_ESEQUENCE;
            return;
        }
    }
    for (pb_size_t e = 0; e < pb->events_count; e++) {
        fsm_op_result *res = result_push(r);
        apply_publish(f, &pb->events[e], res, dirty, n_dirty, cap_dirty);
    }
    if (pb->producer_id)
        producer_remember(f, pb->producer_id, pb->sequence, index, time_ms, r->ops + first,
                          (uint32_t)(r->n_ops - first));
}

static void write_batch_or_die(fsm *f, uint64_t index)
{
    put_u64(f, KEYS_META_APPLIED, index);
    char err[512];
    if (store_write(f->db, f->batch, err, sizeof(err)) != 0) {
        /* Fail-stop: the entry is in the Raft log and is applied again after restart. */
        LOG_ERRORF(MOD, "storage write failed in apply, stopping", "index=%llu err=\"%s\"",
                   (unsigned long long)index, err);
        exit(74);
    }
    store_batch_clear(f->batch);
    f->applied_index = index;
}

void fsm_entry_frame(uint8_t *out, size_t payload_len)
{
    util_put_be32(out, (uint32_t)payload_len);
    util_put_be32(out + 4, FSM_ENTRY_VERSION);
    size_t total = fsm_entry_size(payload_len);
    memset(out + FSM_ENTRY_HEADER + payload_len, 0, total - FSM_ENTRY_HEADER - payload_len);
}

int fsm_apply(fsm *f, const uint8_t *buf, size_t len, const fsm_entry_result **result)
{
    uint64_t index = f->current_index ? f->current_index(f->index_arg) : f->applied_index + 1;
    fsm_entry_result *r = &f->ring[index % FSM_RESULT_RING];
    r->index = index;
    r->code = 0;
    r->n_ops = 0;
    *result = r;
    if (index <= f->applied_index) {
        /* Already in RocksDB before a restart: the log is being replayed. */
        r->code = EVBUS_EEXIST;
        return 0;
    }
    evbuscmd_Command cmd = evbuscmd_Command_init_zero;
    char err[256] = "bad entry header";
    size_t payload = len >= FSM_ENTRY_HEADER ? util_get_be32(buf) : 0;
    if (len < FSM_ENTRY_HEADER || util_get_be32(buf + 4) != FSM_ENTRY_VERSION ||
        payload > len - FSM_ENTRY_HEADER ||
        wire_decode(evbuscmd_Command_fields, buf + FSM_ENTRY_HEADER, payload, &cmd, err,
                    sizeof(err)) != 0 ||
        cmd.version != 1) {
        LOG_ERRORF(MOD, "undecodable command entry skipped", "index=%llu err=\"%s\"",
                   (unsigned long long)index, err);
        r->code = EVBUS_EPROTO;
        write_batch_or_die(f, index);
        return 0;
    }
    dirty_part *dirty = NULL;
    size_t n_dirty = 0, cap_dirty = 0;
    for (pb_size_t i = 0; i < cmd.ops_count; i++) {
        const evbuscmd_Op *op = &cmd.ops[i];
        fsm_op_result *res = result_push(r);
        switch (op->which_op) {
        case evbuscmd_Op_create_bus_tag:
            apply_create_bus(f, &op->op.create_bus, index, cmd.time_ms, res);
            break;
        case evbuscmd_Op_delete_bus_tag: {
            /* Flush partition metadata of this entry first: the bus may be one of them. */
            for (size_t d = 0; d < n_dirty; d++)
                put_partition_meta(f, dirty[d].bus, dirty[d].partition);
            n_dirty = 0;
            apply_delete_bus(f, &op->op.delete_bus, res);
            break;
        }
        case evbuscmd_Op_publish_tag:
            apply_publish(f, &op->op.publish, res, &dirty, &n_dirty, &cap_dirty);
            break;
        case evbuscmd_Op_publish_batch_tag:
            /* One result slot per event, not per op. */
            r->n_ops--;
            apply_publish_batch(f, &op->op.publish_batch, r, index, cmd.time_ms, &dirty, &n_dirty,
                                &cap_dirty);
            break;
        case evbuscmd_Op_put_node_tag: {
            const evbuscmd_PutNode *pn = &op->op.put_node;
            if (pn->node_id == 0) {
                res->code = EVBUS_EINVAL;
                break;
            }
            node_upsert(f, pn->node_id, pn->raft_addr, pn->client_addr);
            put_node_meta(f, fsm_node_find(f, pn->node_id));
            break;
        }
        case evbuscmd_Op_remove_node_tag:
            if (fsm_node_find(f, op->op.remove_node.node_id) == NULL) {
                res->code = EVBUS_ENOTFOUND;
                break;
            }
            node_delete(f, op->op.remove_node.node_id);
            del_node_meta(f, op->op.remove_node.node_id);
            break;
        case evbuscmd_Op_set_params_tag:
            params_from(&f->params, &op->op.set_params);
            put_params(f);
            break;
        case evbuscmd_Op_put_rule_tag: apply_put_rule(f, &op->op.put_rule, index, res); break;
        case evbuscmd_Op_delete_rule_tag: apply_delete_rule(f, &op->op.delete_rule, res); break;
        case evbuscmd_Op_set_rule_state_tag:
            apply_set_rule_state(f, &op->op.set_rule_state, index, res);
            break;
        case evbuscmd_Op_put_target_tag: apply_put_target(f, &op->op.put_target, index, res); break;
        case evbuscmd_Op_remove_target_tag:
            apply_remove_target(f, &op->op.remove_target, res);
            break;
        case evbuscmd_Op_advance_cursors_tag:
            apply_advance_cursors(f, &op->op.advance_cursors, res);
            break;
        default: res->code = EVBUS_EUNKNOWN_MSG; break;
        }
    }
    for (size_t d = 0; d < n_dirty; d++)
        put_partition_meta(f, dirty[d].bus, dirty[d].partition);
    free(dirty);
    if (f->n_producers > 0)
        producers_expire(f, cmd.time_ms);
    wire_release(evbuscmd_Command_fields, &cmd);
    write_batch_or_die(f, index);
    return 0;
}

const fsm_entry_result *fsm_result(const fsm *f, uint64_t index)
{
    const fsm_entry_result *r = &f->ring[index % FSM_RESULT_RING];
    return r->index == index ? r : NULL;
}

/* --------------------------------------------------------------- snapshots */

int fsm_snapshot(fsm *f, uint8_t **out, size_t *out_len)
{
    evbuscmd_Snapshot s = evbuscmd_Snapshot_init_zero;
    s.version = 1;
    s.applied_index = f->applied_index;
    s.next_bus_id = f->next_bus_id;
    s.buses = calloc(f->n_buses ? f->n_buses : 1, sizeof(*s.buses));
    int rv = EVBUS_ENOMEM;
    if (s.buses == NULL)
        goto out;
    for (size_t i = 0; i < f->n_buses; i++) {
        const fsm_bus *b = f->buses[i];
        evbuscmd_BusMeta *m = &s.buses[s.buses_count++];
        m->name = b->name;
        m->bus_id = b->bus_id;
        m->partitions = b->partitions;
        m->created_index = b->created_index;
        m->created_time_ms = b->created_time_ms;
        m->next_rule_id = b->next_rule_id;
        m->next_target_id = b->next_target_id;
        m->parts = calloc(b->partitions, sizeof(*m->parts));
        m->rules = calloc(b->n_rules ? b->n_rules : 1, sizeof(*m->rules));
        m->targets = calloc(b->n_targets ? b->n_targets : 1, sizeof(*m->targets));
        if (m->parts == NULL || m->rules == NULL || m->targets == NULL)
            goto out;
        /* Borrowed arrays and strings; in name order, cursors per partition. */
        for (size_t t = 0; t < b->n_targets; t++) {
            evbuscmd_TargetMeta *tm = &m->targets[m->targets_count++];
            target_to_meta(b->targets[t], tm);
            tm->cursors = b->targets[t]->cursors;
            tm->cursors_count = (pb_size_t)b->partitions;
        }
        /* Borrowed strings; in name order (restore checks it). */
        for (size_t r = 0; r < b->n_rules; r++) {
            const fsm_rule *rule = b->rules[r];
            evbuscmd_RuleMeta *rm = &m->rules[m->rules_count++];
            rm->name = rule->name;
            rm->pattern = rule->pattern;
            rm->description = rule->description;
            rm->enabled = rule->enabled != 0;
            rm->rule_id = rule->id;
            rm->created_index = rule->created_index;
            rm->updated_index = rule->updated_index;
        }
        for (uint32_t p = 0; p < b->partitions; p++) {
            evbuscmd_PartitionMeta *pm = &m->parts[m->parts_count++];
            pm->bus_id = b->bus_id;
            pm->partition = p;
            pm->first_offset = b->parts[p].first_offset;
            pm->next_offset = b->parts[p].next_offset;
        }
    }
    s.nodes = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*s.nodes));
    s.producers = calloc(f->n_producers ? f->n_producers : 1, sizeof(*s.producers));
    rv = EVBUS_ENOMEM;
    if (s.nodes == NULL || s.producers == NULL)
        goto out;
    for (size_t i = 0; i < f->n_nodes; i++) {
        evbuscmd_NodeMeta *m = &s.nodes[s.nodes_count++];
        m->node_id = f->nodes[i].id;
        m->raft_addr = f->nodes[i].raft_addr;
        m->client_addr = f->nodes[i].client_addr;
    }
    for (size_t i = 0; i < f->n_producers; i++) {
        if (producer_to_meta(&f->producers[i], &s.producers[s.producers_count]) != 0)
            goto out;
        s.producers_count++;
    }
    s.has_params = true;
    s.params.dedup_window = f->params.dedup_window;
    s.params.dedup_max_producers = f->params.dedup_max_producers;
    s.params.dedup_ttl_ms = f->params.dedup_ttl_ms;
    s.params.max_rules_per_bus = f->params.max_rules_per_bus;
    s.params.max_pattern_bytes = f->params.max_pattern_bytes;
    if ((rv = wire_encode_body(evbuscmd_Snapshot_fields, &s, out, out_len)) != 0)
        goto out;
    /* Raft may drop log entries up to this snapshot: RocksDB must hold them durably first. */
    if ((rv = store_flush_wal(f->db, 1)) != 0) {
        free(*out);
        *out = NULL;
    }
out:
    for (pb_size_t i = 0; i < s.producers_count; i++)
        free(s.producers[i].recent);
    free(s.producers);
    free(s.nodes);
    for (pb_size_t i = 0; i < s.buses_count; i++) {
        free(s.buses[i].parts);
        free(s.buses[i].rules);
        free(s.buses[i].targets);
    }
    free(s.buses);
    return rv;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A snapshot bus's rules: valid, names strictly increasing, ids distinct and below the counter. */
static int rules_valid(const evbuscmd_BusMeta *m)
{
    if (m->rules_count > FSM_MAX_RULES_PER_BUS)
        return EVBUS_EPROTO;
    if (m->rules_count == 0)
        return 0;
    uint64_t *ids = malloc(m->rules_count * sizeof(*ids));
    if (ids == NULL)
        return EVBUS_ENOMEM;
    int rv = 0;
    for (pb_size_t r = 0; r < m->rules_count && rv == 0; r++) {
        const evbuscmd_RuleMeta *rm = &m->rules[r];
        if (rule_meta_valid(rm) != 0 || (r > 0 && strcmp(m->rules[r - 1].name, rm->name) >= 0) ||
            (m->next_rule_id != 0 && rm->rule_id >= m->next_rule_id))
            rv = EVBUS_EPROTO;
        ids[r] = rm->rule_id;
    }
    qsort(ids, m->rules_count, sizeof(*ids), cmp_u64);
    for (pb_size_t r = 1; r < m->rules_count && rv == 0; r++)
        if (ids[r] == ids[r - 1])
            rv = EVBUS_EPROTO;
    free(ids);
    return rv;
}

/* A snapshot bus's targets: valid, names strictly increasing, ids distinct and below the
 * counter, one cursor per partition, rules and dead-letter targets of the same bus. */
static int targets_valid(const evbuscmd_BusMeta *m)
{
    if (m->targets_count > FSM_MAX_TARGETS_PER_BUS)
        return EVBUS_EPROTO;
    for (pb_size_t t = 0; t < m->targets_count; t++) {
        const evbuscmd_TargetMeta *tm = &m->targets[t];
        if (target_meta_valid(tm) != 0 || tm->cursors_count != m->partitions ||
            (t > 0 && strcmp(m->targets[t - 1].name, tm->name) >= 0) ||
            (m->next_target_id != 0 && tm->target_id >= m->next_target_id))
            return EVBUS_EPROTO;
        for (pb_size_t u = 0; u < t; u++)
            if (m->targets[u].target_id == tm->target_id)
                return EVBUS_EPROTO;
        for (pb_size_t k = 0; k < tm->rule_ids_count; k++) {
            int found = 0;
            for (pb_size_t r = 0; r < m->rules_count && !found; r++)
                found = m->rules[r].rule_id == tm->rule_ids[k];
            if (!found)
                return EVBUS_EPROTO;
        }
        if (tm->dead_letter && tm->dead_letter[0]) {
            int found = 0;
            for (pb_size_t u = 0; u < m->targets_count && !found; u++)
                found = strcmp(m->targets[u].name, tm->dead_letter) == 0;
            if (!found)
                return EVBUS_EPROTO;
        }
    }
    return 0;
}

/* Everything restore relies on, checked before any state changes. */
static int snapshot_valid(const evbuscmd_Snapshot *s, char *err, size_t err_len)
{
    for (pb_size_t i = 0; i < s->buses_count; i++) {
        const evbuscmd_BusMeta *m = &s->buses[i];
        char why[128];
        if (m->name == NULL || fsm_validate_bus_name(m->name, why, sizeof(why)) != 0 ||
            m->partitions == 0 || m->partitions > FSM_MAX_PARTITIONS || m->bus_id == 0 ||
            m->parts_count != m->partitions) {
            snprintf(err, err_len, "bus %u of the snapshot is malformed", (unsigned)i);
            return EVBUS_EPROTO;
        }
        for (pb_size_t p = 0; p < m->parts_count; p++) {
            if (m->parts[p].partition != p || m->parts[p].first_offset > m->parts[p].next_offset) {
                snprintf(err, err_len, "bus %s partition %u of the snapshot is malformed", m->name,
                         (unsigned)p);
                return EVBUS_EPROTO;
            }
        }
        if (rules_valid(m) != 0) {
            snprintf(err, err_len, "rules of bus %s in the snapshot are malformed", m->name);
            return EVBUS_EPROTO;
        }
        if (targets_valid(m) != 0) {
            snprintf(err, err_len, "targets of bus %s in the snapshot are malformed", m->name);
            return EVBUS_EPROTO;
        }
    }
    for (pb_size_t i = 0; i < s->producers_count; i++) {
        for (pb_size_t q = 0; q < s->producers[i].recent_count; q++) {
            const evbuscmd_SeqResult *r = &s->producers[i].recent[q];
            if (r->offsets_count != r->partitions_count || r->codes_count != r->partitions_count) {
                snprintf(err, err_len, "producer record of the snapshot is malformed");
                return EVBUS_EPROTO;
            }
        }
    }
    return 0;
}

int fsm_restore(fsm *f, const uint8_t *buf, size_t len)
{
    evbuscmd_Snapshot s = evbuscmd_Snapshot_init_zero;
    char err[256];
    int rv = wire_decode(evbuscmd_Snapshot_fields, buf, len, &s, err, sizeof(err));
    if (rv == 0 && (rv = snapshot_valid(&s, err, sizeof(err))) != 0)
        wire_release(evbuscmd_Snapshot_fields, &s);
    if (rv != 0) {
        LOG_ERRORF(MOD, "cannot restore snapshot", "err=\"%s\"", err);
        return rv;
    }
    if (s.applied_index <= f->applied_index) {
        /* Local restart: RocksDB already holds this state and more. */
        LOG_INFOF(MOD, "snapshot older than local state, keeping local state",
                  "snapshot_index=%llu applied_index=%llu", (unsigned long long)s.applied_index,
                  (unsigned long long)f->applied_index);
        wire_release(evbuscmd_Snapshot_fields, &s);
        return 0;
    }
    /* Installed from a leader: adopt its metadata. Events this node lacks below the snapshot's
     * offsets become holes that the backfill fetches from a peer (api/backfill). From here on a
     * failure leaves state half-changed: stop the process (fail-stop, as apply does). */
    LOG_WARNF(MOD, "installing snapshot newer than local state", "snapshot_index=%llu applied=%llu",
              (unsigned long long)s.applied_index, (unsigned long long)f->applied_index);
    /* Buses that no longer exist: drop them and their events. */
    for (size_t i = 0; i < f->n_buses;) {
        fsm_bus *b = f->buses[i];
        int keep = 0;
        for (pb_size_t j = 0; j < s.buses_count; j++)
            if (s.buses[j].bus_id == b->bus_id && strcmp(s.buses[j].name, b->name) == 0)
                keep = 1;
        if (keep) {
            i++;
            continue;
        }
        evbuscmd_DeleteBus d = {.name = b->name, .bus_id = b->bus_id};
        fsm_op_result ignored;
        apply_delete_bus(f, &d, &ignored);
    }
    for (pb_size_t i = 0; i < s.buses_count; i++) {
        const evbuscmd_BusMeta *m = &s.buses[i];
        fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, m->bus_id);
        if (b == NULL) {
            b = bus_new(m->name, m->bus_id, m->partitions);
            if (b == NULL || bus_add(f, b) != 0)
                oom("restore");
            b->created_index = m->created_index;
            b->created_time_ms = m->created_time_ms;
        }
        /* The snapshot's rules and targets replace this bus's, in memory and on disk. */
        targets_clear(b);
        del_bus_targets(f, b->bus_id);
        rules_clear(b);
        del_bus_rules(f, b->bus_id);
        for (pb_size_t r = 0; r < m->rules_count; r++) {
            fsm_rule *rule = rule_from_meta(b, &m->rules[r]);
            if (rule == NULL)
                oom("restore");
            rule_insert(b, rule);
            put_rule_meta(f, b, rule);
        }
        b->next_rule_id = m->next_rule_id ? m->next_rule_id : 1;
        for (pb_size_t r = 0; r < m->rules_count; r++)
            if (m->rules[r].rule_id >= b->next_rule_id)
                b->next_rule_id = m->rules[r].rule_id + 1;
        for (pb_size_t t = 0; t < m->targets_count; t++) {
            fsm_target *tg = target_from_meta(b, &m->targets[t]);
            if (tg == NULL)
                oom("restore");
            target_insert(b, tg);
            put_target_meta(f, b, tg);
            for (uint32_t p = 0; p < b->partitions; p++)
                put_cursor(f, b, tg, p);
        }
        b->next_target_id = m->next_target_id ? m->next_target_id : 1;
        for (size_t t = 0; t < b->n_targets; t++)
            if (b->targets[t]->id >= b->next_target_id)
                b->next_target_id = b->targets[t]->id + 1;
        targets_relink(b);
        for (pb_size_t p = 0; p < m->parts_count; p++) {
            const evbuscmd_PartitionMeta *pm = &m->parts[p];
            fsm_partition *part = &b->parts[p];
            uint64_t have = part->hole_to > part->hole_from ? part->hole_from : part->next_offset;
            if (have < pm->first_offset)
                have = pm->first_offset;
            int had_hole = part->hole_to > part->hole_from;
            part->first_offset = pm->first_offset;
            part->next_offset = pm->next_offset;
            if (have < pm->next_offset) {
                part->hole_from = have;
                part->hole_to = pm->next_offset;
                if (!had_hole)
                    f->n_holes++;
                put_hole(f, b, (uint32_t)p);
            }
        }
    }
    clear_nodes(f);
    for (pb_size_t i = 0; i < s.nodes_count; i++)
        node_upsert(f, s.nodes[i].node_id, s.nodes[i].raft_addr, s.nodes[i].client_addr);
    uint8_t nlo = 'N', nhi = 'O';
    store_batch_delete_range(f->batch, &nlo, 1, &nhi, 1);
    for (size_t i = 0; i < f->n_nodes; i++)
        put_node_meta(f, &f->nodes[i]);
    clear_producers(f);
    uint8_t dlo = 'D', dhi = 'E';
    store_batch_delete_range(f->batch, &dlo, 1, &dhi, 1);
    for (pb_size_t i = 0; i < s.producers_count; i++) {
        if (producer_from_meta(f, &s.producers[i]) != 0)
            oom("restore");
        put_producer_meta(f, &f->producers[f->n_producers - 1]);
    }
    if (s.has_params)
        params_from(&f->params, &s.params);
    put_params(f);
    for (size_t i = 0; i < f->n_buses; i++) {
        put_bus_meta(f, f->buses[i]);
        for (uint32_t p = 0; p < f->buses[i]->partitions; p++)
            put_partition_meta(f, f->buses[i], p);
    }
    f->next_bus_id = s.next_bus_id;
    put_u64(f, KEYS_META_NEXT_BUS_ID, f->next_bus_id);
    write_batch_or_die(f, s.applied_index);
    wire_release(evbuscmd_Snapshot_fields, &s);
    if (f->n_holes > 0 && f->on_holes)
        f->on_holes(f->holes_arg);
    return 0;
}

/* ------------------------------------------------------------------- holes */

int fsm_first_hole(const fsm *f, uint32_t *bus_id, uint32_t *partition, uint64_t *from,
                   uint64_t *to)
{
    for (size_t i = 0; i < f->n_buses; i++) {
        const fsm_bus *b = f->buses[i];
        for (uint32_t p = 0; p < b->partitions; p++) {
            if (b->parts[p].hole_to > b->parts[p].hole_from) {
                *bus_id = b->bus_id;
                *partition = p;
                *from = b->parts[p].hole_from;
                *to = b->parts[p].hole_to;
                return 1;
            }
        }
    }
    return 0;
}

void fsm_hole_filled(fsm *f, uint32_t bus_id, uint32_t partition, uint64_t to)
{
    fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, bus_id);
    if (b == NULL || partition >= b->partitions)
        return;
    fsm_partition *p = &b->parts[partition];
    if (p->hole_to <= p->hole_from || to <= p->hole_from)
        return;
    if (to >= p->hole_to) {
        p->hole_from = p->hole_to = 0;
        f->n_holes--;
        uint8_t key[9];
        hole_key(key, bus_id, partition);
        store_batch_delete(f->batch, key, sizeof(key));
    } else {
        p->hole_from = to;
        put_hole(f, b, partition);
    }
    char err[256];
    /* Local bookkeeping, not a Raft entry: written on its own, without the applied index. */
    if (store_write(f->db, f->batch, err, sizeof(err)) != 0) {
        LOG_ERRORF(MOD, "cannot record backfill progress, stopping", "err=\"%s\"", err);
        exit(74);
    }
    store_batch_clear(f->batch);
}

int fsm_in_hole(const fsm_partition *p, uint64_t from, uint64_t to)
{
    return p->hole_to > p->hole_from && from < p->hole_to && to > p->hole_from;
}
