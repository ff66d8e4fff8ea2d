/*
 * Cluster: catching up and membership, on real evbusd nodes (see test_cluster.c
 * and cluster_fixture.h for what every scenario verifies at its end).
 *
 *  1. A follower is stopped (SIGTERM) while the others, with
 *     --snapshot-threshold 32 --snapshot-trailing 16, take snapshots and drop
 *     the log it would need; restarted, it installs a snapshot, backfills the
 *     events from its peers, stops catching up, and its replica matches (SDK
 *     checksums and `evbusctl cluster checksum`).
 *  2. A fourth node started with --join true is added to a loaded cluster
 *     while another connection keeps publishing, becomes a voter, then the
 *     leader (an original node) is removed: publishing goes on, and the three
 *     remaining members hold the same data.
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

#include "cluster/cluster_fixture.h"

#define ALL3 0x7u

/* ------------------------------------------------- 1: snapshot catch-up */

static void test_follower_catches_up_from_snapshot(void **state)
{
    (void)state;
    static const char *const snap[] = {"--snapshot-threshold", "32", "--snapshot-trailing", "16",
                                       NULL};
    cf_cluster cl;
    cf_cluster_start(&cl, 31, 3, snap);
    evbus_client *c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    assert_int_equal(evbus_bus_create(c, "snap", 4), 0);
    cf_ledger l;
    cf_ledger_init(&l, 0, 20000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cf_publish_sync(c, "snap", &l, 10, NULL), 0);
    evbus_client_destroy(c);

    int leader = cf_find_leader(&cl, ALL3, 20000);
    assert_int_not_equal(leader, -1);
    size_t f = (size_t)(leader + 1) % 3;
    assert_int_equal(tl_evbusd_stop(&cl.nodes[f], SIGTERM, 0), 0);
    fprintf(stderr, "follower node %u stopped\n", cl.nodes[f].node_id);

    /* One blocking publish is one Raft entry: 300 of them are several snapshots' worth. */
    char servers[CF_LIST_MAX];
    cf_servers(&cl, ALL3 & ~(1u << f), servers, sizeof(servers));
    c = cf_connect(servers, 0);
    assert_non_null(c);
    for (int i = 0; i < 300; i++)
        assert_int_equal(cf_publish_sync(c, "snap", &l, 5, NULL), 0);
    evbus_client_destroy(c);
    leader = cf_find_leader(&cl, ALL3 & ~(1u << f), 20000);
    assert_int_not_equal(leader, -1);
    assert_true(cf_log_contains(&cl.nodes[leader], 0, "snapshot taken"));
    uint64_t ci = cf_node_commit_index(&cl, (size_t)leader);
    assert_true(ci > 300);

    long log_from = cf_log_size(&cl.nodes[f]);
    cf_node_restart(&cl, f);
    assert_int_equal(cf_wait_caught_up(&cl, f, ci, 60000), 0);
    /* The precondition of this scenario: the log it needed was gone, so it took a snapshot. */
    assert_true(cf_log_contains(&cl.nodes[f], log_from, "installing snapshot"));

    /* The leader sees it caught up too. */
    uint64_t deadline = tl_now_ms() + 20000;
    int caught_up = 0;
    for (int i = 0; i < 1000 && !caught_up && tl_now_ms() < deadline; i++) {
        c = cf_connect(cl.nodes[leader].client_addr, 2000);
        evbus_cluster_status *st = NULL;
        if (c != NULL && evbus_cluster_status_get(c, &st) == 0)
            for (size_t k = 0; k < st->n_nodes; k++)
                if (st->nodes[k].node_id == cl.nodes[f].node_id)
                    caught_up = !st->nodes[k].catching_up && st->nodes[k].voter &&
                                st->nodes[k].applied_index >= ci;
        evbus_cluster_status_free(st);
        if (c != NULL)
            evbus_client_destroy(c);
        if (!caught_up)
            tl_sleep_ms(100);
    }
    assert_true(caught_up);

    /* It takes part again: more publishes, then every replica matches. */
    c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    for (int i = 0; i < 20; i++)
        assert_int_equal(cf_publish_sync(c, "snap", &l, 10, NULL), 0);
    assert_int_equal(cf_publish_sync(c, "snap", &l, 1, &ci), 0);
    evbus_client_destroy(c);
    cf_expect x = {.bus = "snap", .partitions = 4, .ledgers = {&l}, .n_ledgers = 1};
    cf_verify(&cl, ALL3, &x, ci);
    assert_int_equal(cf_ctl_checksum(cl.servers, "snap"), 0);
    cf_cluster_stop(&cl);
    cf_ledger_free(&l);
}

/* ------------------------------------------------ 2: add and remove */

static int count_voters(const char *servers, size_t *n_nodes)
{
    evbus_client *c = cf_connect(servers, 5000);
    assert_non_null(c);
    evbus_cluster_status *st = NULL;
    int rv = evbus_cluster_status_get(c, &st);
    evbus_client_destroy(c);
    if (rv != 0)
        return -1;
    int voters = 0;
    for (size_t k = 0; k < st->n_nodes; k++)
        voters += st->nodes[k].voter != 0;
    *n_nodes = st->n_nodes;
    evbus_cluster_status_free(st);
    return voters;
}

static void test_add_and_remove_under_load(void **state)
{
    (void)state;
    cf_cluster cl;
    cf_cluster_start(&cl, 41, 3, NULL);
    evbus_client *c = cf_connect(cl.servers, 0);
    assert_non_null(c);
    assert_int_equal(evbus_bus_create(c, "members", 4), 0);
    evbus_client_destroy(c);

    cf_producer prod;
    cf_producer_start(&prod, 0, 60000, cl.servers, "members", 10, 4);
    uint64_t deadline = tl_now_ms() + 20000;
    while (cf_producer_acked(&prod) < 500 && tl_now_ms() < deadline)
        tl_sleep_ms(20);
    assert_true(cf_producer_acked(&prod) >= 500);

    /* Add node 44 while the producer keeps publishing. */
    cf_node_start_joining(&cl, 3, 44);
    c = cf_connect(cl.servers, 60000);
    assert_non_null(c);
    int rv = evbus_cluster_add_node(c, 44, cl.nodes[3].raft_addr, cl.nodes[3].client_addr);
    if (rv != 0)
        fprintf(stderr, "add-node: %s: %s\n", evbus_errname(rv), evbus_client_errmsg(c));
    assert_int_equal(rv, 0);
    evbus_client_destroy(c);
    size_t n_nodes = 0;
    assert_int_equal(count_voters(cl.servers, &n_nodes), 4);
    assert_int_equal(n_nodes, 4);
    unsigned long at_add = cf_producer_acked(&prod);
    fprintf(stderr, "node 44 is a voter; %lu acknowledged\n", at_add);

    /* Remove the leader, an original node. */
    int leader = cf_find_leader(&cl, 0xFu, 20000);
    assert_int_not_equal(leader, -1);
    uint32_t removed = cl.nodes[leader].node_id;
    c = cf_connect(cl.servers, 30000);
    assert_non_null(c);
    rv = evbus_cluster_remove_node(c, removed);
    if (rv != 0)
        fprintf(stderr, "remove-node %u: %s: %s\n", removed, evbus_errname(rv),
                evbus_client_errmsg(c));
    assert_int_equal(rv, 0);
    evbus_client_destroy(c);
    unsigned keep = 0xFu & ~(1u << leader);
    char servers[CF_LIST_MAX];
    cf_servers(&cl, keep, servers, sizeof(servers));
    n_nodes = 0;
    deadline = tl_now_ms() + 20000;
    int voters = -1;
    for (int i = 0; i < 1000 && tl_now_ms() < deadline; i++) {
        voters = count_voters(servers, &n_nodes);
        if (voters == 3 && n_nodes == 3)
            break;
        tl_sleep_ms(100);
    }
    assert_int_equal(voters, 3);
    assert_int_equal(n_nodes, 3);
    assert_int_equal(tl_evbusd_stop(&cl.nodes[leader], SIGTERM, 0), 0);
    fprintf(stderr, "node %u removed and stopped\n", removed);

    /* Service continues on the three members. */
    unsigned long at_remove = cf_producer_acked(&prod);
    deadline = tl_now_ms() + 30000;
    while (cf_producer_acked(&prod) < at_remove + 500 && tl_now_ms() < deadline)
        tl_sleep_ms(20);
    assert_true(cf_producer_acked(&prod) >= at_remove + 500);
    cf_producer_stop(&prod);
    assert_int_equal(atomic_load(&prod.ledger.n_rejected), 0);

    cf_ledger last;
    cf_ledger_init(&last, 99, 100);
    c = cf_connect(servers, 0);
    assert_non_null(c);
    uint64_t ci = 0;
    assert_int_equal(cf_publish_sync(c, "members", &last, 5, &ci), 0);
    evbus_client_destroy(c);
    cf_expect x = {
        .bus = "members", .partitions = 4, .ledgers = {&prod.ledger, &last}, .n_ledgers = 2};
    cf_verify(&cl, keep, &x, ci);
    assert_int_equal(cf_ctl_checksum(servers, "members"), 0);
    cf_cluster_stop(&cl);
    cf_ledger_free(&prod.ledger);
    cf_ledger_free(&last);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follower_catches_up_from_snapshot),
        cmocka_unit_test(test_add_and_remove_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
