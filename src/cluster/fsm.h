/*
 * cluster/fsm: the replicated state machine, which is the broker: buses,
 * partitions and their offsets. Nothing changes broker state except
 * fsm_apply() of a committed Raft entry.
 *
 * Invariants:
 *  1. apply is deterministic: it reads only the entry and the current state (no
 *     clock, no randomness, no local config), so every replica computes the same
 *     offsets and results.
 *  2. Offsets are assigned here, per partition, from 0, gap-free.
 *  3. One RocksDB batch per entry, carrying the applied index; entries at or
 *     below the stored applied index are skipped (they were applied before a
 *     restart).
 *  4. Bad input in an entry is rejected inside the result, never by failing
 *     apply; a storage error in apply is fail-stop (the process exits, Raft
 *     replays the entry after restart).
 *  5. Results live in a ring of state-machine scratch slots indexed by Raft
 *     index (apply callbacks are deferred and batched by the library); the ring
 *     is far deeper than the entries in flight.
 *
 * In-memory state is a cache of the RocksDB metadata keys, loaded at open.
 * Snapshots are metadata-only (buses, partition ranges, rules, applied index);
 * event bodies stay in RocksDB.
 *
 * Rules. Each bus holds its rules (sorted by name) and a rules_matcher with its
 * ENABLED rules, so every replica evaluates the same rule set at the same log
 * position. Rule commands (PutRule, DeleteRule, SetRuleState) change both in
 * apply; the pattern is parsed there again with rules_pattern_parse (pure and
 * deterministic), so an invalid pattern is rejected in the result on every node
 * alike. A rule's id is a per-bus counter (BusMeta.next_rule_id), assigned when
 * a name is first put and kept when the rule is replaced; ids are never reused
 * within a bus. Limits (rules per bus, pattern bytes) are replicated parameters
 * (SetParams), never the local config. Rules are stored under 'R' bus_id name
 * (RuleMeta) and go into snapshots inside their BusMeta; deleting a bus deletes
 * its rules.
 *
 * Targets (issue 5). A target is a named worker group of a bus ('T' bus_id name, TargetMeta):
 * delivery settings (retry policy, dead-letter target, input shape, window, ack timeout), the
 * ids of the rules it serves (1..FSM_MAX_TARGETS_PER_RULE targets per rule; one target may serve
 * several rules), counters, and one cursor per partition ('C' bus_id target_id partition, u64):
 * the next offset to deliver, everything below it delivered or dead-lettered. Invariants:
 *  T1. A new target's cursors start at each partition's next_offset as of the entry that created
 *      it: a new target gets the events published after it, never the backlog before it.
 *  T2. Cursors only move forward (AdvanceCursors applies max(current, new)) and never past the
 *      partition's next_offset. Acks name the target by id, so a target removed and put again
 *      under the same name (a new id, new cursors) never receives the old target's acks.
 *  T3. A target exists while it is reachable: it serves a rule, or it is the dead-letter target
 *      of a reachable target. After every unlink (RemoveTarget, DeleteRule) the unreachable
 *      targets are removed with their cursors (mark and sweep, deterministic), so a dead-letter
 *      reference never dangles. Deleting a bus removes all of its targets.
 *  T4. The dead-letter target must exist when named and differ from the target. Settings
 *      belong to the target: putting it again from any rule replaces them.
 *  T5. fsm_rule.targets (in memory, derived from the targets' rule ids) is kept sorted by
 *      target name on every replica, restored or not.
 * The delivery engine (not yet written) reads fsm_rule_targets() and fsm_target_cursor() and
 * commits progress with AdvanceCursors ops; a dead letter that fails on its dead-letter target
 * is dropped and counted, never forwarded again (chains and cycles of dead-letter targets are
 * allowed in the model and must not loop).
 */
#ifndef EVBUS_CLUSTER_FSM_H
#define EVBUS_CLUSTER_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "rules/rules.h"
#include "storage/store.h"

typedef struct fsm_partition {
    uint64_t first_offset;
    uint64_t next_offset;
    /* Events [hole_from, hole_to) are missing locally: this node installed a snapshot from the
     * leader and backfills them from a peer (local state, not replicated). hole_to 0: none. */
    uint64_t hole_from;
    uint64_t hole_to;
} fsm_partition;

/* Node registry entry: Raft members' client addresses. */
typedef struct fsm_node {
    uint32_t id;
    char *raft_addr;
    char *client_addr;
} fsm_node;

/* Results of one remembered (producer, sequence). */
typedef struct fsm_seq {
    uint64_t seq;
    uint32_t n;
    uint32_t *parts;
    uint64_t *offs;
    int32_t *codes;
} fsm_seq;

/* Idempotent-publish state of one producer. recent[] is oldest first. */
typedef struct fsm_producer {
    uint64_t id;
    uint64_t last_time_ms; /* leader-stamped time of its last batch */
    uint64_t last_index;   /* Raft index of its last batch (eviction order) */
    fsm_seq *recent;
    uint32_t n_recent;
} fsm_producer;

typedef struct fsm_params {
    uint32_t dedup_window;
    uint32_t dedup_max_producers;
    uint64_t dedup_ttl_ms;
    uint32_t max_rules_per_bus; /* 1..FSM_MAX_RULES_PER_BUS */
    uint32_t max_pattern_bytes; /* 1..FSM_MAX_PATTERN_BYTES */
} fsm_params;

#define FSM_DEFAULT_DEDUP_WINDOW 16u
#define FSM_DEFAULT_DEDUP_MAX_PRODUCERS 4096u
#define FSM_DEFAULT_DEDUP_TTL_MS (15u * 60u * 1000u)
#define FSM_DEFAULT_MAX_RULES_PER_BUS 300u  /* EventBridge's default quota per bus */
#define FSM_DEFAULT_MAX_PATTERN_BYTES 4096u /* RULES_DEFAULT_MAX_PATTERN_BYTES */
/* Hard caps, whatever the parameters say. Rules per bus: a snapshot lists a bus's rules in one
 * repeated field, whose count nanopb keeps in 16 bits. */
#define FSM_MAX_RULES_PER_BUS 10000u
#define FSM_MAX_PATTERN_BYTES 65536u
#define FSM_MAX_RULE_NAME 64u
#define FSM_MAX_RULE_DESCRIPTION 512u

#define FSM_MAX_TARGETS_PER_RULE 5u
/* A bus's targets go into one repeated field of a snapshot (16-bit count). */
#define FSM_MAX_TARGETS_PER_BUS 60000u
#define FSM_MAX_TARGET_NAME 64u
#define FSM_TARGET_MAX_ATTEMPTS 185u
#define FSM_TARGET_DEFAULT_MAX_ATTEMPTS 185u
#define FSM_TARGET_MIN_AGE_S 60u
#define FSM_TARGET_MAX_AGE_S 86400u
#define FSM_TARGET_DEFAULT_WINDOW 64u
#define FSM_TARGET_MAX_WINDOW 1024u
#define FSM_TARGET_DEFAULT_ACK_TIMEOUT_MS 30000u
#define FSM_TARGET_MIN_ACK_TIMEOUT_MS 1000u
#define FSM_TARGET_MAX_ACK_TIMEOUT_MS 3600000u
#define FSM_TARGET_MAX_INPUT_PATH 256u    /* EventBridge's InputPath limit */
#define FSM_TARGET_MAX_INPUT 8192u        /* Input, InputTemplate (EventBridge: 8192) */
#define FSM_TARGET_MAX_PATHS_MAP 8192u    /* InputPathsMap text */
#define FSM_TARGET_MAX_PATHS_ENTRIES 100u /* EventBridge: 100 keys */

/* Delivery shape (evbuscmd_InputKind values). */
enum { FSM_INPUT_WHOLE = 0, FSM_INPUT_PATH = 1, FSM_INPUT_CONSTANT = 2, FSM_INPUT_TRANSFORMER = 3 };

typedef struct fsm_target {
    char *name;
    uint64_t id; /* per bus, never reused */
    uint32_t max_attempts;
    uint32_t max_age_s;
    uint32_t window;
    uint32_t ack_timeout_ms;
    char *dead_letter; /* NULL: none */
    int input_kind;    /* FSM_INPUT_* */
    char *input_path;  /* NULL unless the kind uses it */
    char *input;
    char *input_paths_map;
    char *input_template;
    uint64_t *rule_ids; /* ascending, n_rule_ids */
    size_t n_rule_ids;
    uint64_t *cursors; /* one per partition of the bus */
    uint64_t created_index;
    uint64_t updated_index;
    uint64_t delivered, retried, dead_lettered, dropped;
} fsm_target;

/* One rule of a bus. */
typedef struct fsm_rule {
    char *name;
    char *pattern; /* JSON text as put */
    char *description;
    int enabled; /* in the bus's matcher */
    /* The stored pattern no longer parses (written by another version of the parser): kept and
     * listed, but never in the matcher. The same on every replica running this version. */
    int broken;
    uint64_t id;
    uint64_t created_index;
    uint64_t updated_index;
    size_t memory_bytes; /* rules_pattern_memory() of the parsed pattern */
    fsm_target *targets[FSM_MAX_TARGETS_PER_RULE]; /* by name (T5); borrowed from the bus */
    size_t n_targets;
} fsm_rule;

typedef struct fsm_bus {
    char *name;
    uint32_t bus_id;
    uint32_t partitions;
    uint64_t created_index;
    uint64_t created_time_ms;
    fsm_partition *parts;   /* partitions entries */
    fsm_rule **rules;       /* n_rules, sorted by name (bytewise) */
    fsm_rule **rules_by_id; /* the same rules, sorted by id */
    size_t n_rules, cap_rules;
    uint64_t next_rule_id;
    rules_matcher *matcher; /* the enabled rules; NULL until the first one */
    fsm_target **targets;   /* n_targets, sorted by name (bytewise) */
    size_t n_targets, cap_targets;
    uint64_t next_target_id;
} fsm_bus;

typedef struct fsm_op_result {
    int code;        /* 0 or EVBUS_* */
    const char *msg; /* static text saying why, or NULL (the same on every replica) */
    uint32_t partition;
    uint64_t offset;
} fsm_op_result;

typedef struct fsm_entry_result {
    uint64_t index;
    int code; /* whole-entry failure (undecodable command); ops then empty */
    size_t n_ops;
    fsm_op_result *ops;
    size_t cap;
} fsm_entry_result;

#define FSM_RESULT_RING 4096u

typedef struct fsm {
    store *db; /* borrowed */
    fsm_bus **buses;
    size_t n_buses, cap_buses;
    uint32_t next_bus_id;
    uint64_t applied_index;
    fsm_node *nodes;
    size_t n_nodes, cap_nodes;
    fsm_producer *producers;
    size_t n_producers, cap_producers;
    fsm_params params;
    size_t n_holes; /* partitions with a hole */
    /* Called (loop thread) after a snapshot install created holes, so backfill can start. */
    void (*on_holes)(void *arg);
    void *holes_arg;
    store_batch *batch;
    fsm_entry_result ring[FSM_RESULT_RING];
    /* Returns the Raft index of the entry being applied (the library's last applied + 1). */
    uint64_t (*current_index)(void *arg);
    void *index_arg;
    char errmsg[256];
} fsm;

/*
 * A Raft entry is an 8-byte header (payload length u32 BE, format version u32 BE = 1), the
 * encoded evbuscmd.Command, and zero padding to a multiple of 8 bytes: the library's disk
 * append refuses entry buffers whose length is not 8-byte aligned.
 */
#define FSM_ENTRY_HEADER 8u
#define FSM_ENTRY_VERSION 1u
/* Bytes of an entry carrying `payload_len` bytes of command. */
static inline size_t fsm_entry_size(size_t payload_len)
{
    return (FSM_ENTRY_HEADER + payload_len + 7u) & ~(size_t)7u;
}
/* Writes the header and the padding around a payload already at out + FSM_ENTRY_HEADER. */
void fsm_entry_frame(uint8_t *out, size_t payload_len);

/* Loads the state from RocksDB. 0 or EVBUS_EIO / EVBUS_ENOMEM / EVBUS_EPROTO (err says what). */
int fsm_init(fsm *f, store *db, char *err, size_t err_len);
void fsm_close(fsm *f);

/*
 * Applies one committed entry of `len` bytes (header, command, padding). Sets *result to the
 * scratch slot of this entry (borrowed, valid until FSM_RESULT_RING later entries). Returns 0; on a
 * storage error logs and exits the process (fail-stop).
 */
int fsm_apply(fsm *f, const uint8_t *buf, size_t len, const fsm_entry_result **result);

/* The result slot of an index (NULL when it was overwritten). */
const fsm_entry_result *fsm_result(const fsm *f, uint64_t index);

/* Encodes the metadata snapshot into a malloc() buffer (transferred) and makes RocksDB durable up
 * to the applied index. 0 or an error. */
int fsm_snapshot(fsm *f, uint8_t **out, size_t *out_len);

/* Restores from a snapshot. When RocksDB is already at or past it (local restart), keeps RocksDB.
 * 0 or an error. */
int fsm_restore(fsm *f, const uint8_t *buf, size_t len);

const fsm_bus *fsm_bus_find(const fsm *f, const char *name);
const fsm_node *fsm_node_find(const fsm *f, uint32_t id);

/* The first partition with a hole, or 0 when none. */
int fsm_first_hole(const fsm *f, uint32_t *bus_id, uint32_t *partition, uint64_t *from,
                   uint64_t *to);
/* Records that [hole_from, to) of a partition is now stored (backfilled), on the loop thread. */
void fsm_hole_filled(fsm *f, uint32_t bus_id, uint32_t partition, uint64_t to);
/* 1 when [from, to) of the partition overlaps its hole. */
int fsm_in_hole(const fsm_partition *p, uint64_t from, uint64_t to);
const fsm_bus *fsm_bus_by_id(const fsm *f, uint32_t bus_id);

/* Validates a bus name: [A-Za-z0-9._-]{1,256}. 0 or EVBUS_EINVAL with the reason in err. */
int fsm_validate_bus_name(const char *name, char *err, size_t err_len);

/* Validates a rule name: [A-Za-z0-9._-]{1,64}. 0 or EVBUS_EINVAL with the reason in err. */
int fsm_validate_rule_name(const char *name, char *err, size_t err_len);

/* The rule `name` of a bus, or NULL. */
const fsm_rule *fsm_rule_find(const fsm_bus *b, const char *name);
/* The rule with id `rule_id` of a bus, or NULL (ids map matches back to names). */
const fsm_rule *fsm_rule_by_id(const fsm_bus *b, uint64_t rule_id);

/*
 * Matches an event envelope (JSON text of len bytes) against the enabled rules of bus `bus_id`
 * as of the applied index: writes up to `max` matching rule ids (ascending, each once) into ids
 * and the full count into *n (may exceed max). Loop thread only (the matcher is not
 * thread-safe). Errors: EVBUS_ENOTFOUND (no such bus), EVBUS_EINVAL (not a JSON object).
 */
int fsm_match(const fsm *f, uint32_t bus_id, const char *envelope, size_t len, uint64_t *ids,
              size_t max, size_t *n);

/* Validates a target name: [A-Za-z0-9._-]{1,64}. 0 or EVBUS_EINVAL with the reason in err. */
int fsm_validate_target_name(const char *name, char *err, size_t err_len);

/*
 * Checks a target's settings without looking at any state: name, ranges (max_attempts 0..185,
 * max_age_s 60..86400, window 1..1024, ack_timeout_ms 1000..3600000), the dead-letter name
 * (valid, not the target itself), one delivery shape whose fields are consistent with
 * input_kind, Input valid JSON, InputPathsMap a JSON object of at most 100 names -> JSONPaths
 * ("$..."), InputPath a JSONPath, lengths. Pure and deterministic: the leader and apply agree.
 * 0 or EVBUS_EINVAL / EVBUS_ETOOBIG with the reason in err.
 */
struct _evbuscmd_TargetMeta;
int fsm_target_validate(const struct _evbuscmd_TargetMeta *t, char *err, size_t err_len);

/* Target `name` of a bus, or NULL. */
const fsm_target *fsm_target_find(const fsm_bus *b, const char *name);
/* Target with id `target_id` of a bus, or NULL. */
const fsm_target *fsm_target_by_id(const fsm_bus *b, uint64_t target_id);
/* The targets of rule `rule_id` (sorted by name) into *out (borrowed, valid until the next
 * apply); returns their number, 0 when the rule does not exist. For the delivery engine. */
size_t fsm_rule_targets(const fsm_bus *b, uint64_t rule_id, fsm_target *const **out);
/* Committed cursor of a target in a partition (0 for a partition out of range). */
uint64_t fsm_target_cursor(const fsm_bus *b, const fsm_target *t, uint32_t partition);

#define FSM_MAX_PARTITIONS 1024u
/* nanopb's repeated-field counts are 16-bit (snapshots list every bus). */
#define FSM_MAX_BUSES 65535u

#endif
