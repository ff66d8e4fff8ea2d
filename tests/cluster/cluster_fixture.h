/*
 * cluster_fixture: helpers for the multi-node tests of tests/cluster/: start a
 * cluster of real evbusd processes with one --bootstrap list, find its leader,
 * publish while recording every acknowledgement (blocking from the test's
 * thread, or asynchronously from producer threads that keep several requests
 * in flight), and check the invariants of ../shared/DESIGN.md on every replica.
 *
 * Events. Every event published here has the detail {"p":P,"s":S,...}: P is the
 * ledger (one producer connection), S that ledger's sequence in submit order, so
 * (P, S) names one publish attempt and may be stored at most once.
 *
 * Verification (cf_verify) reads each node through a client whose only server
 * is that node, after the node has applied a given commit index (read-after-
 * write), and asserts: offsets are gap-free from 0; every acknowledged event is
 * there, at its acknowledged partition and offset, with its event id; no (P, S)
 * is stored twice; per ledger and partition, offsets follow S; all replicas hold
 * byte-identical partitions (own hash over the envelopes, and evbus_bus_checksum
 * of every node equal).
 *
 * Helpers assert with cmocka, so they run inside a cmocka test, on the test's
 * thread. Producer threads never assert: they record, and the test asserts after
 * cf_producer_stop(). Every wait is bounded.
 */
#ifndef EVBUS_TESTS_CLUSTER_FIXTURE_H
#define EVBUS_TESTS_CLUSTER_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "evbus/evbus.h"
#include "lib/testlib.h"

#define CF_MAX_NODES 5
#define CF_MAX_ARGS 16
#define CF_MAX_PARTITIONS 8
#define CF_MAX_LEDGERS 8
#define CF_LIST_MAX 512
#define CF_CALL_MS 20000u /* SDK timeout of test clients: > an election plus a restart */

/* ------------------------------------------------------------------ cluster */

typedef struct cf_cluster {
    tl_node nodes[CF_MAX_NODES];
    size_t n_nodes;
    char bootstrap[CF_LIST_MAX];    /* "ID=RAFT/CLIENT,..." of the initial members */
    char servers[CF_LIST_MAX];      /* client addresses of the initial members */
    const char *args[CF_MAX_ARGS];  /* --bootstrap LIST and the extra flags, NULL-terminated */
    const char *extra[CF_MAX_ARGS]; /* the extra flags alone (for nodes started with --join) */
} cf_cluster;

/*
 * Prepares n nodes with ids first_id.. (ids differ per scenario, so data dirs do
 * too), starts them all with the same bootstrap list plus `extra` (may be NULL)
 * and waits until they agree on a leader.
 */
void cf_cluster_start(cf_cluster *cl, uint32_t first_id, size_t n, const char *const *extra);

/* Restarts node i on its ports and data (the bootstrap list is passed and ignored). */
void cf_node_restart(cf_cluster *cl, size_t i);

/* Prepares node i (i == n_nodes) for `cluster add-node` and starts it with --join true. */
void cf_node_start_joining(cf_cluster *cl, size_t i, uint32_t node_id);

/* 1 while node i's process runs (also when stopped by SIGSTOP). */
int cf_node_running(const cf_cluster *cl, size_t i);

/* SIGTERM to every running node; asserts each exits 0 (printing its log tail if not). */
void cf_cluster_stop(cf_cluster *cl);

/* Comma-separated client addresses of the nodes whose bit is set in mask, from node `first` on
 * (wrapping around), so that clients of one list can start on different nodes. */
void cf_servers(const cf_cluster *cl, unsigned mask, char *out, size_t len);
void cf_servers_from(const cf_cluster *cl, unsigned mask, size_t first, char *out, size_t len);

/* A client whose only servers are `servers`, with CF_CALL_MS (or timeout_ms if not 0). */
evbus_client *cf_connect(const char *servers, uint32_t timeout_ms);

/*
 * Index of the leader among the running nodes of `mask` (node bits): waits at
 * most timeout_ms until exactly one of them says, in its own node status, that it
 * leads. -1 on timeout.
 */
int cf_find_leader(const cf_cluster *cl, unsigned mask, uint32_t timeout_ms);

/*
 * Waits at most timeout_ms until node i has applied min_index and is not
 * catching up (a voter with no backfill hole). Returns 0 or EVBUS_ETIMEDOUT.
 */
int cf_wait_caught_up(const cf_cluster *cl, size_t i, uint64_t min_index, uint32_t timeout_ms);

/* Node i's commit index from its own status (0 when it does not answer). */
uint64_t cf_node_commit_index(const cf_cluster *cl, size_t i);

/* Size of a node's log file now, to search only what a restart adds (cf_log_contains). */
long cf_log_size(const tl_node *n);
int cf_log_contains(const tl_node *n, long from, const char *needle);

/* ------------------------------------------------------------------- ledger */

enum cf_state { CF_UNSENT = 0, CF_PENDING, CF_ACKED, CF_UNKNOWN, CF_REJECTED };

typedef struct cf_ack {
    uint32_t partition;
    uint64_t offset;
    char id[40];
} cf_ack;

/* What one producer connection published. Arrays are indexed by sequence. */
typedef struct cf_ledger {
    uint32_t producer; /* P of the events */
    uint32_t cap;      /* sequences available */
    uint32_t next;     /* sequences [0, next) were submitted */
    cf_ack *acks;
    uint8_t *state; /* enum cf_state */
    atomic_ulong n_acked, n_unknown, n_rejected;
} cf_ledger;

void cf_ledger_init(cf_ledger *l, uint32_t producer, uint32_t cap);
void cf_ledger_free(cf_ledger *l);

/*
 * Publishes n (<= 100) new events of ledger l through c and waits; records the
 * outcome. Returns the SDK's return value; *commit_index (may be NULL) gets the
 * publish's commit index when it succeeded. Does not assert on the outcome.
 */
int cf_publish_sync(evbus_client *c, const char *bus, cf_ledger *l, size_t n,
                    uint64_t *commit_index);

/* ----------------------------------------------------------------- producer */

/* A thread publishing asynchronously with `inflight` requests of `batch` events in flight. */
typedef struct cf_producer {
    cf_ledger ledger;
    char servers[CF_LIST_MAX];
    char bus[64];
    uint32_t batch, inflight;
    atomic_int stop;
    pthread_t thread;
    int running;
    /* Written by the thread, read after the join. */
    int connect_failures;
    int submit_failures;
    int drained; /* 1: every request completed before the client was destroyed */
} cf_producer;

void cf_producer_start(cf_producer *p, uint32_t producer, uint32_t cap, const char *servers,
                       const char *bus, uint32_t batch, uint32_t inflight);
/* Stops submitting, waits (bounded) for answers, destroys the client, joins. */
void cf_producer_stop(cf_producer *p);
unsigned long cf_producer_acked(cf_producer *p);

/* ----------------------------------------------------------------- checking */

typedef struct cf_expect {
    const char *bus;
    uint32_t partitions;
    cf_ledger *ledgers[CF_MAX_LEDGERS];
    size_t n_ledgers;
} cf_expect;

/*
 * Checks the invariants on every node of mask (see the top of this file), each
 * read alone after it applied min_commit_index (e.g. the commit index of a
 * publish made after all others). Prints a one-line summary per node.
 */
void cf_verify(const cf_cluster *cl, unsigned mask, const cf_expect *x, uint64_t min_commit_index);

/* Runs `evbusctl --servers SERVERS --json cluster checksum BUS`; returns its exit status. */
int cf_ctl_checksum(const char *servers, const char *bus);

#endif /* EVBUS_TESTS_CLUSTER_FIXTURE_H */
