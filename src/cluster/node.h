/*
 * cluster/node: every raft_* call of evbus. Sets up libraft (libuv I/O, TCP
 * transport), wires the state machine (cluster/fsm) into it, tracks leadership,
 * and group-commits client operations into Raft entries.
 *
 * Group commit: node_submit() appends a request's encoded ops to the open batch.
 * Once per loop iteration (a uv_check handle), the open batch is sealed and
 * sealed batches are proposed while fewer than NODE_MAX_INFLIGHT entries are in
 * flight; a batch is also sealed as soon as it reaches max_entry_bytes. So a lone
 * publisher is proposed at once, and concurrent publishers share entries sized
 * by how fast the disk commits. Each batch is exactly one raft_apply with exactly
 * one buffer (the library keeps only the first of several).
 *
 * Leadership: a node accepts writes only after it became leader and a barrier
 * of its term completed, so every entry of earlier terms is applied first.
 *
 * States of the node: STARTING -> RUNNING -> DRAINING -> CLOSING -> CLOSED.
 * DRAINING proposes what is queued and waits (bounded) for in-flight entries;
 * new submissions get EVBUS_EUNAVAIL.
 */
#ifndef EVBUS_CLUSTER_NODE_H
#define EVBUS_CLUSTER_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cluster/fsm.h"

#define NODE_MAX_INFLIGHT 8u
/* Submissions beyond this many queued bytes are refused with EVBUS_EBUSY (retriable). */
#define NODE_MAX_QUEUED_BYTES (64u << 20)

typedef struct node node;

typedef struct node_config {
    uint32_t id;
    const char *raft_addr;   /* copied */
    const char *client_addr; /* copied */
    const char *data_dir;    /* copied; Raft keeps its files in data_dir/raft */
    uint32_t max_entry_bytes;
    uint32_t snapshot_threshold;
    uint32_t snapshot_trailing;
    const char *bootstrap; /* "ID=RAFT/CLIENT,..." or "" (this node alone); copied */
    int join;              /* start empty, wait to be added */
    fsm_params params;     /* cluster-wide state-machine parameters the leader proposes */
} node_config;

/* status 0: ops[i] is the result of the i-th op of the submission; the entry is committed and
 * applied at `index`. Otherwise a negative code for all ops (ops NULL):
 * EVBUS_ENOTLEADER (nothing was appended), EVBUS_EUNAVAIL (leadership lost or shutting down after
 * the entry was appended: outcome unknown). */
typedef void (*node_submit_cb)(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                               uint64_t index);

/* Creates the node on `loop` with the state machine `f` (borrowed; must outlive the node). */
int node_create(uv_loop_t *loop, const node_config *cfg, fsm *f, node **out, char *err,
                size_t err_len);

/* Bootstraps a one-voter cluster when the data directory is new, then starts Raft. */
int node_start(node *n, char *err, size_t err_len);

/*
 * Submits `n_ops` operations, given as their encoded `Command.ops` fields
 * (tag and length included, concatenated; copied). On 0 the callback runs exactly
 * once. Errors (callback never runs): EVBUS_ENOTLEADER, EVBUS_EBUSY, EVBUS_EUNAVAIL,
 * EVBUS_ENOMEM.
 */
int node_submit(node *n, const uint8_t *ops, size_t len, size_t n_ops, node_submit_cb cb,
                void *data);

/* 1 when this node is the leader and accepts writes. */
int node_is_writable(const node *n);

/* The leader's id and client address as known here (0 and "" when unknown). */
void node_leader(const node *n, uint32_t *id, const char **client_addr);

/* Appends one encoded evbuscmd_Op (an `evbuscmd_Op *`) as a Command.ops field to out. */
struct util_buf;
int node_encode_op(struct util_buf *out, const void *op);

typedef struct node_info {
    uint32_t id;
    const char *raft_addr;
    const char *client_addr;
    const char *role;
    int voter;
    int leader;
    uint64_t applied_index;
    uint64_t commit_index;
    uint64_t term;
    uint32_t leader_id;
    int catching_up;
} node_info;

void node_self_info(const node *n, node_info *out);

/* A member of the Raft configuration. */
typedef struct node_member {
    uint32_t id;
    const char *raft_addr;   /* borrowed until the next loop turn */
    const char *client_addr; /* from the registry; "" when unknown */
    int voter;
    const char *role; /* voter, standby, spare */
} node_member;

/* Copies up to max members of the current configuration into out; returns the count. */
size_t node_members(const node *n, node_member *out, size_t max);

/* Membership changes (leader only). The callback runs once with 0 or an error code and a
 * message. Errors before the call starts (callback never runs): EVBUS_ENOTLEADER, EVBUS_EEXIST,
 * EVBUS_ENOTFOUND, EVBUS_EBUSY (a change is in progress), EVBUS_EINVAL. */
typedef void (*node_change_cb)(void *data, int status, const char *msg);
int node_add_member(node *n, uint32_t id, const char *raft_addr, const char *client_addr,
                    node_change_cb cb, void *data);
int node_remove_member(node *n, uint32_t id, node_change_cb cb, void *data);
int node_transfer_leadership(node *n, uint32_t id, node_change_cb cb, void *data);

/* 1 while this node misses events (backfilling) or is not yet a voter. */
int node_catching_up(const node *n);
uint32_t node_self_id(const node *n);

/*
 * Stops the node: drains (bounded by drain_ms), closes Raft. `cb` runs once when
 * everything is closed; the node stays readable (status, leader) until
 * node_destroy(), so request handlers still running may use it.
 */
void node_close(node *n, uint32_t drain_ms, void (*cb)(void *data), void *data);
void node_destroy(node *n);

#endif
