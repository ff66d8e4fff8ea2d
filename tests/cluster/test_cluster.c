/*
 * Cluster: three real evbusd nodes on 127.0.0.1 started with one --bootstrap
 * list, driven through the SDK, with faults injected by signals to their PIDs.
 * Each scenario runs its own cluster (own node ids, ports and data dirs) and ends
 * with cf_verify(): every acknowledged event on every node at its acknowledged
 * offset, gap-free offsets, no event stored twice, per-producer order, identical
 * replicas (see cluster_fixture.h).
 *
 *  1. SIGKILL of the leader, three times, while three connections publish
 *     asynchronously (idempotent, several requests in flight); the killed node
 *     restarts each time.
 *  2. SIGSTOP of the leader for 3 s: the others elect a leader that serves
 *     publishes; after SIGCONT the old leader steps down, and a read from it with
 *     the latest commit index returns the new events (no stale read).
 *  3. SIGKILL of every node at once during publishing, then all restart: what was
 *     acknowledged is there, and requests retried across the crash are stored once.
 *
 * Membership and snapshot catch-up are in test_cluster_membership.c.
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

#include "cluster/cluster_fixture.h"

#define ALL3 0x7u
#define PRODUCER_CAP 60000u

static unsigned long total_acked(cf_producer *p, size_t n)
{
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += cf_producer_acked(&p[i]);
    return sum;
}

/* Waits at most timeout_ms until the producers together have `want` acknowledged events. */
static int wait_acked(cf_producer *p, size_t n, unsigned long want, uint32_t timeout_ms)
{
    uint64_t deadline = tl_now_ms() + timeout_ms;
    for (int i = 0; i < 100000; i++) {
        if (total_acked(p, n) >= want)
            return 0;
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(20);
    }
    fprintf(stderr, "only %lu of %lu events acknowledged after %u ms\n", total_acked(p, n), want,
            timeout_ms);
    return EVBUS_ETIMEDOUT;
}

/* A last publish through `servers`; returns its commit index (the index every node must reach). */
static uint64_t final_publish(const char *servers, const char *bus, cf_ledger *l)
{
    evbus_client *c = cf_connect(servers, 0);
    assert_non_null(c);
    uint64_t ci = 0;
    assert_int_equal(cf_publish_sync(c, bus, l, 5, &ci), 0);
    evbus_client_destroy(c);
    assert_true(ci > 0);
    return ci;
}

static void check_producers(cf_producer *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(atomic_load(&p[i].ledger.n_rejected), 0);
        assert_true(atomic_load(&p[i].ledger.n_acked) > 0);
    }
}

/* ------------------------------------------------------ 1: leader killed */

#define KILL_ROUNDS 3
#define LOAD_PRODUCERS 3

static void test_leader_killed_under_load(void **state)
{
    (void)state;
    cf_cluster cl;
    cf_cluster_start(&cl, 11, 3, NULL);
    evbus_client *c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    assert_int_equal(evbus_bus_create(c, "load", 4), 0);
    evbus_client_destroy(c);

    cf_producer prods[LOAD_PRODUCERS];
    for (size_t i = 0; i < LOAD_PRODUCERS; i++) {
        char servers[CF_LIST_MAX];
        cf_servers_from(&cl, ALL3, i, servers, sizeof(servers));
        cf_producer_start(&prods[i], (uint32_t)i, PRODUCER_CAP, servers, "load", 10, 4);
    }
    assert_int_equal(wait_acked(prods, LOAD_PRODUCERS, 300, 20000), 0);

    for (int round = 0; round < KILL_ROUNDS; round++) {
        int leader = cf_find_leader(&cl, ALL3, 20000);
        assert_int_not_equal(leader, -1);
        unsigned long before = total_acked(prods, LOAD_PRODUCERS);
        fprintf(stderr, "round %d: SIGKILL to leader node %u with %lu acknowledged\n", round,
                cl.nodes[leader].node_id, before);
        assert_int_equal(kill(cl.nodes[leader].proc.pid, SIGKILL), 0);
        assert_int_equal(tl_proc_wait(&cl.nodes[leader].proc, 5000), 128 + SIGKILL);

        /* The two others elect a leader, and publishing goes on through it. */
        assert_int_equal(wait_acked(prods, LOAD_PRODUCERS, before + 300, 30000), 0);
        int next = cf_find_leader(&cl, ALL3 & ~(1u << leader), 20000);
        assert_int_not_equal(next, -1);
        assert_int_not_equal(next, leader);

        /* Back on its data; caught up before the next kill, so a majority always holds all. */
        cf_node_restart(&cl, (size_t)leader);
        uint64_t ci = cf_node_commit_index(&cl, (size_t)next);
        assert_int_equal(cf_wait_caught_up(&cl, (size_t)leader, ci, 30000), 0);
    }
    unsigned long before = total_acked(prods, LOAD_PRODUCERS);
    assert_int_equal(wait_acked(prods, LOAD_PRODUCERS, before + 300, 20000), 0);
    for (size_t i = 0; i < LOAD_PRODUCERS; i++)
        cf_producer_stop(&prods[i]);
    check_producers(prods, LOAD_PRODUCERS);

    cf_ledger last;
    cf_ledger_init(&last, 99, 100);
    uint64_t ci = final_publish(cl.servers, "load", &last);
    cf_expect x = {.bus = "load", .partitions = 4, .n_ledgers = LOAD_PRODUCERS + 1};
    for (size_t i = 0; i < LOAD_PRODUCERS; i++)
        x.ledgers[i] = &prods[i].ledger;
    x.ledgers[LOAD_PRODUCERS] = &last;
    cf_verify(&cl, ALL3, &x, ci);
    cf_cluster_stop(&cl);
    for (size_t i = 0; i < LOAD_PRODUCERS; i++)
        cf_ledger_free(&prods[i].ledger);
    cf_ledger_free(&last);
}

/* ---------------------------------------------------- 2: leader paused */

#define PAUSE_MS 3000u

static void test_leader_paused(void **state)
{
    (void)state;
    cf_cluster cl;
    cf_cluster_start(&cl, 21, 3, NULL);
    evbus_client *c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    assert_int_equal(evbus_bus_create(c, "pause", 3), 0);
    cf_ledger l;
    cf_ledger_init(&l, 0, 20000);
    for (int i = 0; i < 20; i++)
        assert_int_equal(cf_publish_sync(c, "pause", &l, 20, NULL), 0);
    evbus_client_destroy(c);

    int old = cf_find_leader(&cl, ALL3, 20000);
    assert_int_not_equal(old, -1);
    unsigned others = ALL3 & ~(1u << old);
    char servers[CF_LIST_MAX];
    cf_servers(&cl, others, servers, sizeof(servers));
    fprintf(stderr, "SIGSTOP to leader node %u\n", cl.nodes[old].node_id);
    uint64_t stopped_at = tl_now_ms();
    assert_int_equal(kill(cl.nodes[old].proc.pid, SIGSTOP), 0);

    /* Meanwhile the other two elect a leader that takes publishes. */
    c = cf_connect(servers, 0);
    assert_non_null(c);
    uint64_t last_ci = 0;
    uint32_t last_seq = 0;
    int published = 0;
    for (int i = 0; i < 1000 && (published < 5 || tl_now_ms() < stopped_at + PAUSE_MS); i++) {
        uint64_t ci = 0;
        uint32_t first = l.next;
        int rv = cf_publish_sync(c, "pause", &l, 10, &ci);
        if (rv == 0) {
            published++;
            last_ci = ci;
            last_seq = first + 9;
        }
        if (tl_now_ms() >= stopped_at + 4 * PAUSE_MS)
            break;
        tl_sleep_ms(20);
    }
    evbus_client_destroy(c);
    assert_true(published > 0);
    int stopped_still = tl_proc_poll(&cl.nodes[old].proc) == 0;
    assert_true(stopped_still);
    int now_leader = cf_find_leader(&cl, others, 10000);
    assert_int_not_equal(now_leader, -1);
    fprintf(stderr, "node %u leads while node %u is stopped; %d publishes, last commit %llu\n",
            cl.nodes[now_leader].node_id, cl.nodes[old].node_id, published,
            (unsigned long long)last_ci);
    assert_int_equal(kill(cl.nodes[old].proc.pid, SIGCONT), 0);

    /* At once, before it may have noticed: a read-after-write on the old leader must return the
     * events committed without it, never an older state. */
    c = cf_connect(cl.nodes[old].client_addr, 0);
    assert_non_null(c);
    const cf_ack *a = &l.acks[last_seq];
    assert_int_equal(l.state[last_seq], CF_ACKED);
    evbus_read_result *r = NULL;
    int rv = evbus_read_after(c, "pause", a->partition, a->offset, 1, 0, last_ci, &r);
    if (rv != 0)
        fprintf(stderr, "read after %llu on the old leader: %s: %s\n", (unsigned long long)last_ci,
                evbus_errname(rv), evbus_client_errmsg(c));
    assert_int_equal(rv, 0);
    assert_int_equal(r->n_events, 1);
    assert_int_equal(r->events[0].offset, a->offset);
    json_t *env = json_loads(r->events[0].json, 0, NULL);
    assert_non_null(env);
    json_t *detail = json_object_get(env, "detail");
    assert_int_equal(json_integer_value(json_object_get(detail, "p")), l.producer);
    assert_int_equal(json_integer_value(json_object_get(detail, "s")), last_seq);
    json_decref(env);
    evbus_read_result_free(r);
    evbus_client_destroy(c);

    /* It steps down: one leader, the new one, in every node's view. */
    uint64_t deadline = tl_now_ms() + 20000;
    int ok = 0;
    for (int i = 0; i < 1000 && !ok && tl_now_ms() < deadline; i++) {
        int leader = cf_find_leader(&cl, ALL3, 5000);
        ok = leader != -1 && leader != old;
        for (size_t k = 0; ok && k < 3; k++) {
            evbus_client *sc = cf_connect(cl.nodes[k].client_addr, 2000);
            evbus_cluster_status *st = NULL;
            ok = sc != NULL && evbus_cluster_status_get(sc, &st) == 0 &&
                 st->leader_id == cl.nodes[leader].node_id;
            if (ok) {
                int leaders = 0;
                for (size_t m = 0; m < st->n_nodes; m++)
                    leaders += st->nodes[m].leader != 0;
                ok = leaders == 1 && st->n_nodes == 3;
            }
            evbus_cluster_status_free(st);
            if (sc != NULL)
                evbus_client_destroy(sc);
        }
        if (!ok)
            tl_sleep_ms(100);
    }
    assert_true(ok);

    /* All nodes serve again; then everything matches. */
    c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cf_publish_sync(c, "pause", &l, 10, NULL), 0);
    evbus_client_destroy(c);
    uint64_t ci = final_publish(cl.servers, "pause", &l);
    cf_expect x = {.bus = "pause", .partitions = 3, .ledgers = {&l}, .n_ledgers = 1};
    cf_verify(&cl, ALL3, &x, ci);
    assert_int_equal(atomic_load(&l.n_rejected), 0);
    cf_cluster_stop(&cl);
    cf_ledger_free(&l);
}

/* ------------------------------------------------------ 3: all killed */

#define CRASH_PRODUCERS 2

static void test_all_killed(void **state)
{
    (void)state;
    cf_cluster cl;
    cf_cluster_start(&cl, 51, 3, NULL);
    evbus_client *c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    assert_int_equal(evbus_bus_create(c, "crash", 4), 0);
    evbus_client_destroy(c);

    cf_producer prods[CRASH_PRODUCERS];
    for (size_t i = 0; i < CRASH_PRODUCERS; i++) {
        char servers[CF_LIST_MAX];
        cf_servers_from(&cl, ALL3, i, servers, sizeof(servers));
        cf_producer_start(&prods[i], (uint32_t)i, PRODUCER_CAP, servers, "crash", 10, 4);
    }
    assert_int_equal(wait_acked(prods, CRASH_PRODUCERS, 1000, 20000), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(kill(cl.nodes[i].proc.pid, SIGKILL), 0);
    unsigned long before = total_acked(prods, CRASH_PRODUCERS);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(tl_proc_wait(&cl.nodes[i].proc, 5000), 128 + SIGKILL);
    fprintf(stderr, "all nodes killed with %lu acknowledged\n", before);

    /* The producers keep their requests of unknown outcome and resend them to the restarted
     * cluster: those must be stored once. */
    for (size_t i = 0; i < 3; i++)
        cf_node_restart(&cl, i);
    assert_int_not_equal(cf_find_leader(&cl, ALL3, 30000), -1);
    assert_int_equal(wait_acked(prods, CRASH_PRODUCERS, before + 300, 30000), 0);
    for (size_t i = 0; i < CRASH_PRODUCERS; i++)
        cf_producer_stop(&prods[i]);
    check_producers(prods, CRASH_PRODUCERS);

    cf_ledger last;
    cf_ledger_init(&last, 99, 100);
    uint64_t ci = final_publish(cl.servers, "crash", &last);
    cf_expect x = {.bus = "crash", .partitions = 4, .n_ledgers = CRASH_PRODUCERS + 1};
    for (size_t i = 0; i < CRASH_PRODUCERS; i++)
        x.ledgers[i] = &prods[i].ledger;
    x.ledgers[CRASH_PRODUCERS] = &last;
    cf_verify(&cl, ALL3, &x, ci);
    cf_cluster_stop(&cl);
    for (size_t i = 0; i < CRASH_PRODUCERS; i++)
        cf_ledger_free(&prods[i].ledger);
    cf_ledger_free(&last);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_killed_under_load),
        cmocka_unit_test(test_leader_paused),
        cmocka_unit_test(test_all_killed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
