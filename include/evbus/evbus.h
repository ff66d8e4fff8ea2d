/*
 * libevbus: the evbus client SDK.
 *
 * A client holds one TCP connection to one server of a list and speaks the
 * protocol of proto/evbus.proto. Each client owns a private libuv loop that
 * runs only inside the client's own calls, on the caller's thread: the SDK
 * starts no threads. A client is not thread-safe; use one client per thread
 * (the bench does). Blocking calls return when the answer arrived or the
 * call's timeout expired. Asynchronous calls (evbus_put_events_async) run their
 * callback from inside evbus_client_poll() or a blocking call on the same
 * client.
 *
 * Errors: every function returns EVBUS_OK (0) or a negative code from
 * evbus/errors.h. After a failure evbus_client_errmsg() gives the detail (the
 * server's message when the server answered with an error).
 *
 * Ownership: pointers passed in are borrowed for the duration of the call
 * (copied when kept). Results returned through `**out` are owned by the caller
 * and released with the matching *_free function.
 */
#ifndef EVBUS_EVBUS_H
#define EVBUS_EVBUS_H

#include <stddef.h>
#include <stdint.h>

#include "evbus/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVBUS_PROTOCOL_VERSION 1
#define EVBUS_MAX_ENTRIES_PER_PUT 100
#define EVBUS_MAX_ENTRY_BYTES (256 * 1024)

typedef struct evbus_client evbus_client;

typedef struct evbus_client_options {
    const char *servers;      /* "host:port[,host:port...]"; required */
    const char *client_name;  /* sent in Hello; default "libevbus" */
    const char *auth_token;   /* sent in Hello; default none */
    uint32_t timeout_ms;      /* bound of each blocking call, default 10000 */
    uint32_t max_frame_bytes; /* largest frame accepted from a server, default 4 MiB */
    int idempotent; /* default 1: publishes carry this client's producer id and a sequence, so a
                       retry after an unknown outcome is stored once (see evbus_put_events) */
} evbus_client_options;

/* Fills `opts` with the defaults (servers NULL). */
void evbus_client_options_init(evbus_client_options *opts);

/*
 * Creates a client and connects to the first server of the list that answers
 * Hello. Options are copied.
 * Errors: EVBUS_EINVAL (bad server list), EVBUS_ECONN (no server reachable),
 * EVBUS_EVERSION / EVBUS_EAUTH (Hello refused), EVBUS_ETIMEDOUT, EVBUS_ENOMEM.
 * On error *out is NULL.
 */
int evbus_client_create(const evbus_client_options *opts, evbus_client **out);

/* Closes the connection and frees the client. Pending async calls complete with EVBUS_ECANCELED. */
void evbus_client_destroy(evbus_client *c);

/* Detail of the last failure on this client (never NULL; "" when none). Valid until the next call.
 */
const char *evbus_client_errmsg(const evbus_client *c);

/* Node id and address of the server the client is connected to (0 / "" when disconnected). */
uint32_t evbus_client_node_id(const evbus_client *c);
const char *evbus_client_server(const evbus_client *c);

/* ------------------------------------------------------------------ publish */

/* One event to publish, as an EventBridge PutEvents entry. Strings are NUL-terminated. */
typedef struct evbus_entry {
    const char *source;           /* required */
    const char *detail_type;      /* required */
    const char *detail;           /* required: a JSON object as text */
    const char *const *resources; /* optional array of n_resources strings */
    size_t n_resources;
    const char *time;          /* optional RFC 3339; the leader stamps it when NULL */
    const char *partition_key; /* optional; default: the event id */
} evbus_entry;

/* The outcome of one entry. code 0: stored at partition/offset with event_id. */
typedef struct evbus_put_result {
    int code;
    char message[256];
    uint32_t partition;
    uint64_t offset;
    char event_id[40];
} evbus_put_result;

/*
 * Publishes 1 to EVBUS_MAX_ENTRIES_PER_PUT entries into `bus` and waits until
 * they are committed (acknowledged = durable). With options.idempotent (the
 * default) each request carries the client's producer id (random, chosen at
 * create) and the next sequence number; when the outcome is unknown (lost
 * connection, timeout, leadership lost: EVBUS_EUNAVAIL) the SDK resends the same
 * request to the (new) leader until the call's timeout, and the server answers a
 * retry with the original offsets without storing the events again. Returns 0 when the server
 * answered per entry: then results[i] tells each entry's outcome (entries are
 * validated one by one, as PutEvents does), and *failed (if not NULL) counts the
 * failed ones. `results` has room for n entries. `commit_index` may be NULL.
 * Errors for the whole request: EVBUS_EINVAL (n out of range), EVBUS_ENOTFOUND
 * (no such bus), EVBUS_ETOOBIG, EVBUS_ETIMEDOUT / EVBUS_ECONN (outcome unknown).
 */
int evbus_put_events(evbus_client *c, const char *bus, const evbus_entry *entries, size_t n,
                     evbus_put_result *results, size_t *failed, uint64_t *commit_index);

/*
 * Called once per evbus_put_events_async() that returned 0. status is 0 when
 * results (n entries, borrowed for the duration of the callback) are valid, or a
 * negative code for the whole request (then results is NULL).
 */
typedef void (*evbus_put_cb)(void *arg, int status, const evbus_put_result *results, size_t n);

/*
 * Sends a publish without waiting (pipelining). Entries are encoded before
 * the call returns, so they may be freed right after. The callback runs from
 * evbus_client_poll() or any blocking call on this client. If this returns an
 * error the callback never runs.
 */
int evbus_put_events_async(evbus_client *c, const char *bus, const evbus_entry *entries, size_t n,
                           evbus_put_cb cb, void *arg);

/*
 * Runs the client's loop until at least one async callback ran or timeout_ms
 * passed (0: do not wait). Returns the number of callbacks run (>= 0) or an
 * error code when the connection failed (pending calls then complete with an
 * error through their callbacks).
 */
int evbus_client_poll(evbus_client *c, uint32_t timeout_ms);

/* Requests sent and not yet answered. */
size_t evbus_client_inflight(const evbus_client *c);

/* --------------------------------------------------------------------- read */

typedef struct evbus_event {
    uint64_t offset;
    char *json; /* NUL-terminated EventBridge envelope with bus, partition, offset */
    size_t json_len;
} evbus_event;

typedef struct evbus_read_result {
    evbus_event *events;
    size_t n_events;
    uint64_t next_offset;  /* where to continue */
    uint64_t first_offset; /* first offset still stored */
    uint64_t end_offset;   /* next offset the partition will assign */
} evbus_read_result;

/*
 * Reads events of one partition from `from_offset` (inclusive), at most
 * max_events (0: server default) and about max_bytes (0: server default).
 * Errors: EVBUS_ENOTFOUND (bus), EVBUS_EINVAL (partition), EVBUS_ERANGE
 * (from_offset below the first stored offset; message names it).
 */
int evbus_read(evbus_client *c, const char *bus, uint32_t partition, uint64_t from_offset,
               uint32_t max_events, uint32_t max_bytes, evbus_read_result **out);
void evbus_read_result_free(evbus_read_result *r);

/*
 * evbus_read() with read-after-write: the answering node first waits (bounded by
 * the call's timeout) until it has applied Raft index `min_commit_index`, e.g.
 * the commit_index a publish returned, so the read sees that publish on any
 * node. 0 behaves as evbus_read().
 */
int evbus_read_after(evbus_client *c, const char *bus, uint32_t partition, uint64_t from_offset,
                     uint32_t max_events, uint32_t max_bytes, uint64_t min_commit_index,
                     evbus_read_result **out);

/* ---------------------------------------------------------------- bus admin */

typedef struct evbus_partition_info {
    uint32_t partition;
    uint64_t first_offset;
    uint64_t next_offset;
} evbus_partition_info;

typedef struct evbus_bus_info {
    char *name;
    uint32_t partitions;
    uint64_t created_index;
    char *created_time;
    uint64_t events;
    evbus_partition_info *partition_info; /* describe only */
    size_t n_partition_info;
} evbus_bus_info;

/* partitions 0: server default (4). Errors: EVBUS_EINVAL (name), EVBUS_EEXIST. */
int evbus_bus_create(evbus_client *c, const char *name, uint32_t partitions);
/* Errors: EVBUS_ENOTFOUND. */
int evbus_bus_delete(evbus_client *c, const char *name);
int evbus_bus_describe(evbus_client *c, const char *name, evbus_bus_info **out);
void evbus_bus_info_free(evbus_bus_info *b);
int evbus_bus_list(evbus_client *c, evbus_bus_info **out, size_t *n);
void evbus_bus_list_free(evbus_bus_info *buses, size_t n);

/* ------------------------------------------------------------------ cluster */

typedef struct evbus_node_status {
    uint32_t node_id;
    char *raft_addr;
    char *client_addr;
    char *role;
    int voter;
    int leader;
    uint64_t applied_index;
    uint64_t commit_index;
    int catching_up;
    uint64_t term;
} evbus_node_status;

typedef struct evbus_cluster_status {
    uint32_t leader_id;
    char *leader_addr;
    uint64_t term;
    evbus_node_status *nodes;
    size_t n_nodes;
} evbus_cluster_status;

/* Status of the cluster as the connected node sees it. (Not named evbus_cluster_status: a
 * function cannot share its name with the type.) */
int evbus_cluster_status_get(evbus_client *c, evbus_cluster_status **out);
void evbus_cluster_status_free(evbus_cluster_status *s);

/* Status of the connected node only (not redirected). Free with evbus_node_status_free. */
int evbus_node_status_get(evbus_client *c, evbus_node_status **out);
void evbus_node_status_free(evbus_node_status *n);

/*
 * Membership (answered by the leader once committed; redirected like writes).
 * add_node: the new node, started with --join, catches up as a non-voter and is
 * promoted to voter once caught up; the call returns when it is a voter.
 * Errors: EVBUS_EEXIST (id in use), EVBUS_EINVAL, EVBUS_ENOTFOUND (remove/transfer
 * of an unknown id), EVBUS_EBUSY (another change in progress), EVBUS_ETIMEDOUT.
 */
int evbus_cluster_add_node(evbus_client *c, uint32_t node_id, const char *raft_addr,
                           const char *client_addr);
int evbus_cluster_remove_node(evbus_client *c, uint32_t node_id);
/* node_id 0: let the leader pick the most up-to-date voter. */
int evbus_cluster_transfer_leader(evbus_client *c, uint32_t node_id);

typedef struct evbus_partition_checksum {
    uint32_t partition;
    uint64_t first_offset;
    uint64_t next_offset;
    uint64_t checksum; /* FNV-1a 64 over (offset, envelope) of every stored event */
    uint64_t events;
} evbus_partition_checksum;

typedef struct evbus_checksum {
    uint32_t node_id;
    uint64_t applied_index;
    evbus_partition_checksum *partitions;
    size_t n_partitions;
} evbus_checksum;

/* Per-partition checksums of `bus` as stored on the connected node (not redirected), to compare
 * replicas. Errors: EVBUS_ENOTFOUND, EVBUS_EBACKFILL (node still backfilling). */
int evbus_bus_checksum(evbus_client *c, const char *bus, evbus_checksum **out);
void evbus_checksum_free(evbus_checksum *s);

/* -------------------------------------------------------------------- rules */

/*
 * Rules are replicated state of a bus: an EventBridge event pattern under a name
 * ([A-Za-z0-9._-], 1 to 64 characters), ENABLED or DISABLED. Every node
 * evaluates the same rule set at the same log position. Changes are writes:
 * answered by the leader once committed and applied (redirected like
 * evbus_bus_create, and like it not retried after an unknown outcome: a call
 * that fails with EVBUS_ETIMEDOUT or EVBUS_ECONN may have been applied). Reads
 * (list, describe, test) are answered by the connected node from what it has
 * applied, so right after a change a follower may not show it yet.
 *
 * Limits are the cluster's (the leader's `max-rules-per-bus`, default 300, and
 * `max-pattern-bytes`, default 4096): over them a put fails with EVBUS_ETOOBIG
 * and a message naming the limit.
 */

typedef enum evbus_rule_state {
    EVBUS_RULE_ENABLED = 1,
    EVBUS_RULE_DISABLED = 2,
} evbus_rule_state;

typedef struct evbus_rule_info {
    char *bus;
    char *name;
    char *pattern; /* JSON text as put */
    char *description;
    evbus_rule_state state;
    uint64_t rule_id;       /* stable per bus; kept when the rule is replaced */
    uint64_t created_index; /* Raft index that created the rule */
    uint64_t updated_index; /* Raft index of its last change */
    uint64_t memory_bytes;  /* of its compiled pattern */
} evbus_rule_info;

/*
 * Creates rule `name` of `bus`, or replaces it (its id stays), with `pattern`
 * (JSON text; required), `description` (NULL or at most 512 bytes) and the state
 * ENABLED, or DISABLED when `disabled` is non-zero. The server validates the
 * pattern first. *out (when out is not NULL) gets the rule as stored, owned by the
 * caller (evbus_rule_info_free).
 * Errors: EVBUS_EINVAL (name, description, or an invalid pattern: the message is
 * the parser's, naming the problem and the path), EVBUS_ENOTFOUND (bus),
 * EVBUS_ETOOBIG (pattern bytes or rules per bus over the limit), EVBUS_ETIMEDOUT /
 * EVBUS_ECONN (outcome unknown).
 */
int evbus_rule_put(evbus_client *c, const char *bus, const char *name, const char *pattern,
                   const char *description, int disabled, evbus_rule_info **out);

/* Deletes a rule. Errors: EVBUS_ENOTFOUND (bus or rule), and as evbus_rule_put. */
int evbus_rule_delete(evbus_client *c, const char *bus, const char *name);

/* Sets a rule's state; setting the state it already has succeeds and changes nothing.
 * Errors: EVBUS_ENOTFOUND (bus or rule), and as evbus_rule_put. */
int evbus_rule_enable(evbus_client *c, const char *bus, const char *name);
int evbus_rule_disable(evbus_client *c, const char *bus, const char *name);

/* One rule as the connected node has it. *out is the caller's (evbus_rule_info_free).
 * Errors: EVBUS_ENOTFOUND (bus or rule), EVBUS_EINVAL (names). */
int evbus_rule_describe(evbus_client *c, const char *bus, const char *name, evbus_rule_info **out);
void evbus_rule_info_free(evbus_rule_info *r);

/*
 * Every rule of `bus`, in name order (bytewise), fetched in pages from the connected
 * node. Each name comes at most once; a rule created, deleted or changed while the
 * pages are fetched may be missed or show either form. *out (n entries, NULL when
 * none) is the caller's: evbus_rule_list_free. Errors: EVBUS_ENOTFOUND (bus).
 */
int evbus_rule_list(evbus_client *c, const char *bus, evbus_rule_info **out, size_t *n);
void evbus_rule_list_free(evbus_rule_info *rules, size_t n);

/* evbus_rule_test: every partition. */
#define EVBUS_ALL_PARTITIONS UINT32_MAX

typedef struct evbus_rule_match {
    uint32_t partition;
    uint64_t offset;
    char *json; /* NUL-terminated envelope with bus, partition and offset */
    size_t json_len;
} evbus_rule_match;

typedef struct evbus_rule_test_progress {
    uint32_t partition;
    uint64_t next_offset; /* where a further test of this partition should start */
    uint64_t end_offset;  /* the partition's next offset to be assigned */
} evbus_rule_test_progress;

typedef struct evbus_rule_test_result {
    evbus_rule_match *matches; /* partition, then offset order */
    size_t n_matches;
    uint64_t scanned; /* events examined */
    evbus_rule_test_progress *partitions;
    size_t n_partitions;
} evbus_rule_test_result;

/*
 * Runs a candidate `pattern` (nothing is stored) over the events of `bus` stored
 * on the connected node: one partition, or EVBUS_ALL_PARTITIONS; in each, from
 * `from_offset` (a lower offset starts at the first one stored), at most
 * `max_events` events (0: server default 1000; the server caps it at 100,000 and
 * an answer at about the frame limit, so check `partitions` to continue). The
 * pattern is matched against the stored envelope (without "offset"), as a rule
 * sees it. *out is the caller's: evbus_rule_test_result_free.
 * Errors: EVBUS_EINVAL (invalid pattern: the parser's message; partition),
 * EVBUS_ETOOBIG (pattern over max-pattern-bytes), EVBUS_ENOTFOUND (bus),
 * EVBUS_EBACKFILL (the node is still backfilling that range).
 */
int evbus_rule_test(evbus_client *c, const char *bus, const char *pattern, uint32_t partition,
                    uint64_t from_offset, uint32_t max_events, evbus_rule_test_result **out);
void evbus_rule_test_result_free(evbus_rule_test_result *r);

/* ------------------------------------------------------------------ targets */

/*
 * A target is a named worker group of a bus ([A-Za-z0-9._-], 1 to 64
 * characters) that rules send their matches to: a rule has 1 to 5 targets and
 * one target may serve several rules of its bus. Its settings belong to the
 * target (putting it again, from any rule, replaces them). A new target starts
 * at the events published after it was created: its cursor in each partition
 * begins at the partition's next offset at that moment (no backlog from
 * before). A target no rule uses any more (and that is not the dead-letter
 * target of one that is used) is removed with its cursors.
 *
 * Workers and push delivery are not implemented yet (issue 5): targets, their
 * cursors and counters exist, but nothing is delivered.
 *
 * Writes (put, remove) are answered by the leader once committed and applied,
 * redirected and not retried after an unknown outcome, like evbus_rule_put;
 * reads (list, describe) by the connected node from what it has applied.
 */

typedef struct evbus_target_spec {
    const char *id;          /* target name (required) */
    int max_attempts;        /* 0..185; -1: default 185 */
    uint32_t max_age_s;      /* maximum event age 60..86400 s; 0: default 86400 */
    const char *dead_letter; /* NULL/"": none; else another existing target of the bus */
    /* Delivery shape: at most one of input_path, input, input_template (+ input_paths_map);
     * none: the whole event. */
    const char *input_path;      /* JSONPath into the event, e.g. "$.detail" */
    const char *input;           /* constant JSON text */
    const char *input_paths_map; /* JSON object of name -> JSONPath */
    const char *input_template;  /* template with <name> placeholders */
    uint32_t window;             /* in-flight deliveries per worker 1..1024; 0: 64 */
    uint32_t ack_timeout_ms;     /* 1000..3600000; 0: 30000 */
} evbus_target_spec;

/* A spec with every setting at its default (set .id). */
#define EVBUS_TARGET_SPEC_INIT                                                                     \
    {                                                                                              \
        NULL, -1, 0, NULL, NULL, NULL, NULL, NULL, 0, 0                                            \
    }

typedef struct evbus_target_failure {
    char *id;      /* the target name as given */
    int code;      /* EVBUS_* */
    char *message; /* why */
} evbus_target_failure;

/* The answer of a put or remove, as EventBridge's PutTargets/RemoveTargets. */
typedef struct evbus_targets_result {
    size_t failed_count;
    evbus_target_failure *failed; /* failed_count entries, request order */
    uint64_t commit_index;        /* Raft index of the change; 0 when nothing was proposed */
} evbus_targets_result;

/*
 * Creates or updates `n` (1..5) targets of rule `rule` of `bus` and links them to
 * the rule. Each entry succeeds or fails on its own (in order: a dead-letter
 * target must exist before the entry naming it, also earlier in the same call).
 * With `out`: returns 0 once the server answered, and *out (the caller's,
 * evbus_targets_result_free) lists the failed entries. Without `out`: returns the
 * first failed entry's code (its message in evbus_client_errmsg), or 0.
 * Entry errors: EVBUS_EINVAL (settings: the message names the field),
 * EVBUS_ENOTFOUND (dead-letter target), EVBUS_ETOOBIG (the rule would have more
 * than 5 targets). Call errors: EVBUS_ENOTFOUND (bus or rule), EVBUS_EINVAL
 * (names, n), EVBUS_ETIMEDOUT / EVBUS_ECONN (outcome unknown).
 */
int evbus_target_put(evbus_client *c, const char *bus, const char *rule,
                     const evbus_target_spec *targets, size_t n, evbus_targets_result **out);

/* Unlinks `n` (1..5) targets (names) from a rule; results as evbus_target_put.
 * Entry errors: EVBUS_ENOTFOUND (the rule has no such target). */
int evbus_target_remove(evbus_client *c, const char *bus, const char *rule, const char *const *ids,
                        size_t n, evbus_targets_result **out);
void evbus_targets_result_free(evbus_targets_result *r);

typedef struct evbus_target_partition {
    uint32_t partition;
    uint64_t cursor;      /* committed: every event below was delivered or dead-lettered */
    uint64_t next_offset; /* the partition's next offset to be assigned */
    uint64_t backlog;     /* next_offset - cursor */
} evbus_target_partition;

typedef struct evbus_target_info {
    char *bus;
    char *id;
    uint64_t target_id; /* stable per bus, never reused */
    uint32_t max_attempts;
    uint32_t max_age_s;
    char *dead_letter; /* "" when none */
    char *input_path;  /* "" when unused, likewise the next three */
    char *input;
    char *input_paths_map;
    char *input_template;
    uint32_t window;
    uint32_t ack_timeout_ms;
    char **rules; /* names of the rules it serves, in name order */
    size_t n_rules;
    evbus_target_partition *partitions;
    size_t n_partitions;
    uint64_t in_flight; /* on the answering node (0 until the delivery engine exists) */
    uint64_t delivered, retried, dead_lettered, dropped;
    uint64_t created_index, updated_index;
} evbus_target_info;

/* The targets of a rule, in name order. *out (n entries, NULL when none) is the caller's:
 * evbus_target_list_free. Errors: EVBUS_ENOTFOUND (bus or rule), EVBUS_EINVAL. */
int evbus_target_list(evbus_client *c, const char *bus, const char *rule, evbus_target_info **out,
                      size_t *n);
void evbus_target_list_free(evbus_target_info *targets, size_t n);

/* One target with its cursor and backlog per partition, counters and rules. *out is the
 * caller's: evbus_target_info_free. Errors: EVBUS_ENOTFOUND (bus or target), EVBUS_EINVAL. */
int evbus_target_describe(evbus_client *c, const char *bus, const char *target,
                          evbus_target_info **out);
void evbus_target_info_free(evbus_target_info *t);

#ifdef __cplusplus
}
#endif

#endif /* EVBUS_EVBUS_H */
