/* cluster_fixture: see cluster_fixture.h. */
#include "cluster/cluster_fixture.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/testsdk.h"

#define STATUS_CALL_MS 1000u /* one node status call; a stopped node must not hold us long */
#define POLL_MS 100u
#define READ_PAGE 1000u
#define DRAIN_MS 30000u /* producer stop: longest wait for answers (> CF_CALL_MS) */

/*
 * An acknowledged event must be stored with the event id its acknowledgement
 * named. A publish retried after an unknown outcome (leader killed) is answered
 * from the dedup table with its original partition and offset but with the id
 * the new leader stamped for the retry, which is stored nowhere. 1 asserts it.
 */
#ifndef CF_STRICT_RETRY_EVENT_ID
#define CF_STRICT_RETRY_EVENT_ID 1
#endif

/* ------------------------------------------------------------------ cluster */

void cf_servers(const cf_cluster *cl, unsigned mask, char *out, size_t len)
{
    cf_servers_from(cl, mask, 0, out, len);
}

void cf_servers_from(const cf_cluster *cl, unsigned mask, size_t first, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t k = 0; k < cl->n_nodes; k++) {
        size_t i = (first + k) % cl->n_nodes;
        if (!(mask & (1u << i)))
            continue;
        int w = snprintf(out + used, len - used, "%s%s", used ? "," : "", cl->nodes[i].client_addr);
        assert_true(w > 0 && (size_t)w < len - used);
        used += (size_t)w;
    }
}

void cf_cluster_start(cf_cluster *cl, uint32_t first_id, size_t n, const char *const *extra)
{
    assert_true(n >= 1 && n <= CF_MAX_NODES);
    memset(cl, 0, sizeof(*cl));
    cl->n_nodes = n;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        tl_node *nd = &cl->nodes[i];
        assert_int_equal(tl_node_init(nd, first_id + (uint32_t)i), 0);
        int w = snprintf(cl->bootstrap + used, sizeof(cl->bootstrap) - used, "%s%u=%s/%s",
                         i ? "," : "", nd->node_id, nd->raft_addr, nd->client_addr);
        assert_true(w > 0 && (size_t)w < sizeof(cl->bootstrap) - used);
        used += (size_t)w;
    }
    cf_servers(cl, (1u << n) - 1, cl->servers, sizeof(cl->servers));
    size_t a = 0, e = 0;
    cl->args[a++] = "--bootstrap";
    cl->args[a++] = cl->bootstrap;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        assert_true(a + 1 < CF_MAX_ARGS);
        cl->args[a++] = extra[i];
        cl->extra[e++] = extra[i];
    }
    cl->args[a] = NULL;
    cl->extra[e] = NULL;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tl_evbusd_start(&cl->nodes[i], cl->args, 0), 0);
    uint32_t leader = 0;
    assert_int_equal(tl_wait_leader(cl->servers, 30000, &leader), 0);
    assert_int_not_equal(cf_find_leader(cl, (1u << n) - 1, 30000), -1);
}

void cf_node_restart(cf_cluster *cl, size_t i)
{
    assert_true(i < cl->n_nodes);
    assert_int_equal(tl_evbusd_start(&cl->nodes[i], cl->args, 0), 0);
}

void cf_node_start_joining(cf_cluster *cl, size_t i, uint32_t node_id)
{
    assert_true(i == cl->n_nodes && i < CF_MAX_NODES);
    assert_int_equal(tl_node_init(&cl->nodes[i], node_id), 0);
    cl->n_nodes++;
    const char *args[CF_MAX_ARGS + 2];
    size_t a = 0;
    args[a++] = "--join";
    args[a++] = "true";
    for (size_t k = 0; cl->extra[k] != NULL; k++)
        args[a++] = cl->extra[k];
    args[a] = NULL;
    assert_int_equal(tl_evbusd_start(&cl->nodes[i], args, 0), 0);
}

int cf_node_running(const cf_cluster *cl, size_t i)
{
    return cl->nodes[i].proc.pid > 0 && !cl->nodes[i].proc.exited;
}

void cf_cluster_stop(cf_cluster *cl)
{
    int bad = 0;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        if (!cf_node_running(cl, i))
            continue;
        int st = tl_evbusd_stop(&cl->nodes[i], SIGTERM, 0);
        if (st != 0) {
            fprintf(stderr, "node %u: exit status %d after SIGTERM\n", cl->nodes[i].node_id, st);
            tl_print_log_tail(cl->nodes[i].proc.log_path, 40);
            bad = 1;
        }
    }
    assert_false(bad);
}

evbus_client *cf_connect(const char *servers, uint32_t timeout_ms)
{
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = servers;
    o.client_name = "test-cluster";
    o.timeout_ms = timeout_ms ? timeout_ms : CF_CALL_MS;
    evbus_client *c = NULL;
    int rv = evbus_client_create(&o, &c);
    if (rv != 0)
        fprintf(stderr, "connect %s: %s\n", servers, evbus_strerror(rv));
    return rv == 0 ? c : NULL;
}

/* Node status of node i alone (NULL when it does not answer within STATUS_CALL_MS). */
static evbus_node_status *node_status(const cf_cluster *cl, size_t i)
{
    evbus_client *c = cf_connect(cl->nodes[i].client_addr, STATUS_CALL_MS);
    if (c == NULL)
        return NULL;
    evbus_node_status *ns = NULL;
    if (evbus_node_status_get(c, &ns) != 0)
        ns = NULL;
    evbus_client_destroy(c);
    return ns;
}

int cf_find_leader(const cf_cluster *cl, unsigned mask, uint32_t timeout_ms)
{
    uint64_t deadline = tl_now_ms() + timeout_ms;
    for (int round = 0; round < 10000; round++) {
        int leader = -1, n_leaders = 0;
        for (size_t i = 0; i < cl->n_nodes; i++) {
            if (!(mask & (1u << i)) || !cf_node_running(cl, i))
                continue;
            evbus_node_status *ns = node_status(cl, i);
            if (ns != NULL && ns->leader) {
                leader = (int)i;
                n_leaders++;
            }
            evbus_node_status_free(ns);
        }
        if (n_leaders == 1)
            return leader;
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(POLL_MS);
    }
    fprintf(stderr, "no single leader among nodes of mask %#x after %u ms\n", mask, timeout_ms);
    return -1;
}

uint64_t cf_node_commit_index(const cf_cluster *cl, size_t i)
{
    evbus_node_status *ns = node_status(cl, i);
    uint64_t ci = ns ? ns->commit_index : 0;
    evbus_node_status_free(ns);
    return ci;
}

int cf_wait_caught_up(const cf_cluster *cl, size_t i, uint64_t min_index, uint32_t timeout_ms)
{
    uint64_t deadline = tl_now_ms() + timeout_ms;
    uint64_t applied = 0;
    int catching_up = -1;
    for (int round = 0; round < 10000; round++) {
        evbus_node_status *ns = node_status(cl, i);
        if (ns != NULL) {
            applied = ns->applied_index;
            catching_up = ns->catching_up;
            evbus_node_status_free(ns);
            if (applied >= min_index && !catching_up)
                return 0;
        }
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(POLL_MS);
    }
    fprintf(stderr, "node %u not caught up after %u ms: applied %llu of %llu, catching_up %d\n",
            cl->nodes[i].node_id, timeout_ms, (unsigned long long)applied,
            (unsigned long long)min_index, catching_up);
    return EVBUS_ETIMEDOUT;
}

long cf_log_size(const tl_node *n)
{
    FILE *f = fopen(n->proc.log_path, "r");
    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size < 0 ? 0 : size;
}

int cf_log_contains(const tl_node *n, long from, const char *needle)
{
    FILE *f = fopen(n->proc.log_path, "r");
    if (f == NULL)
        return 0;
    int found = 0;
    if (fseek(f, from, SEEK_SET) == 0) {
        char line[4096];
        for (long i = 0; i < 10000000 && fgets(line, sizeof(line), f) != NULL; i++)
            if (strstr(line, needle) != NULL) {
                found = 1;
                break;
            }
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------------- ledger */

void cf_ledger_init(cf_ledger *l, uint32_t producer, uint32_t cap)
{
    memset(l, 0, sizeof(*l));
    l->producer = producer;
    l->cap = cap;
    l->acks = calloc(cap, sizeof(*l->acks));
    l->state = calloc(cap, 1);
    assert_non_null(l->acks);
    assert_non_null(l->state);
}

void cf_ledger_free(cf_ledger *l)
{
    free(l->acks);
    free(l->state);
    l->acks = NULL;
    l->state = NULL;
}

#define DETAIL_MAX 96

static void make_entries(cf_ledger *l, uint32_t first, size_t n, char (*details)[DETAIL_MAX],
                         evbus_entry *entries)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(details[i], DETAIL_MAX, "{\"p\":%u,\"s\":%u,\"pad\":\"0123456789abcdef\"}",
                 l->producer, first + (uint32_t)i);
        entries[i] =
            (evbus_entry){.source = "test.cluster", .detail_type = "Seq", .detail = details[i]};
        l->state[first + i] = CF_PENDING;
    }
}

/* Records the answer to the request that carried [first, first + n). */
static void record(cf_ledger *l, uint32_t first, size_t n, int status, const evbus_put_result *res)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t s = first + (uint32_t)i;
        if (status != 0) {
            l->state[s] = CF_UNKNOWN;
            atomic_fetch_add(&l->n_unknown, 1);
        } else if (res[i].code != 0) {
            l->state[s] = CF_REJECTED;
            atomic_fetch_add(&l->n_rejected, 1);
        } else {
            l->acks[s].partition = res[i].partition;
            l->acks[s].offset = res[i].offset;
            snprintf(l->acks[s].id, sizeof(l->acks[s].id), "%s", res[i].event_id);
            l->state[s] = CF_ACKED;
            atomic_fetch_add(&l->n_acked, 1);
        }
    }
}

int cf_publish_sync(evbus_client *c, const char *bus, cf_ledger *l, size_t n,
                    uint64_t *commit_index)
{
    assert_true(n >= 1 && n <= EVBUS_MAX_ENTRIES_PER_PUT && l->next + n <= l->cap);
    char details[EVBUS_MAX_ENTRIES_PER_PUT][DETAIL_MAX];
    evbus_entry entries[EVBUS_MAX_ENTRIES_PER_PUT];
    evbus_put_result results[EVBUS_MAX_ENTRIES_PER_PUT];
    uint32_t first = l->next;
    make_entries(l, first, n, details, entries);
    l->next += (uint32_t)n;
    size_t failed = 0;
    uint64_t ci = 0;
    int rv = evbus_put_events(c, bus, entries, n, results, &failed, &ci);
    if (rv != 0)
        fprintf(stderr, "publish (producer %u, seq %u..): %s: %s\n", l->producer, first,
                evbus_errname(rv), evbus_client_errmsg(c));
    record(l, first, n, rv, results);
    if (rv == 0 && commit_index != NULL)
        *commit_index = ci;
    return rv;
}

/* ----------------------------------------------------------------- producer */

typedef struct put_arg {
    cf_ledger *l;
    uint32_t first;
    uint32_t n;
} put_arg;

static void put_cb(void *arg, int status, const evbus_put_result *res, size_t n)
{
    put_arg *a = arg;
    record(a->l, a->first, status == 0 ? n : a->n, status, res);
    free(a);
}

static void *producer_main(void *arg)
{
    cf_producer *p = arg;
    cf_ledger *l = &p->ledger;
    evbus_client *c = NULL;
    char details[EVBUS_MAX_ENTRIES_PER_PUT][DETAIL_MAX];
    evbus_entry entries[EVBUS_MAX_ENTRIES_PER_PUT];
    for (int i = 0; i < 100000 && !atomic_load(&p->stop); i++) {
        if (c == NULL) {
            c = cf_connect(p->servers, 0);
            if (c == NULL) {
                p->connect_failures++;
                tl_sleep_ms(100);
                continue;
            }
        }
        if (evbus_client_inflight(c) < p->inflight && l->next + p->batch <= l->cap) {
            uint32_t first = l->next;
            make_entries(l, first, p->batch, details, entries);
            put_arg *a = malloc(sizeof(*a));
            if (a == NULL)
                break;
            *a = (put_arg){l, first, p->batch};
            if (evbus_put_events_async(c, p->bus, entries, p->batch, put_cb, a) == 0) {
                l->next += p->batch;
            } else {
                for (uint32_t k = 0; k < p->batch; k++)
                    l->state[first + k] = CF_UNSENT;
                free(a);
                p->submit_failures++;
                tl_sleep_ms(10);
            }
            evbus_client_poll(c, 0);
            continue;
        }
        if (evbus_client_poll(c, 20) < 0)
            tl_sleep_ms(10);
    }
    /* Let every request finish (acknowledged or failed at its deadline), within bounds. */
    uint64_t deadline = tl_now_ms() + DRAIN_MS;
    while (c != NULL && evbus_client_inflight(c) > 0 && tl_now_ms() < deadline)
        if (evbus_client_poll(c, 50) < 0)
            tl_sleep_ms(10);
    if (c != NULL) {
        p->drained = evbus_client_inflight(c) == 0;
        evbus_client_destroy(c); /* what is left completes with EVBUS_ECANCELED: unknown */
    }
    return NULL;
}

void cf_producer_start(cf_producer *p, uint32_t producer, uint32_t cap, const char *servers,
                       const char *bus, uint32_t batch, uint32_t inflight)
{
    memset(p, 0, sizeof(*p));
    cf_ledger_init(&p->ledger, producer, cap);
    snprintf(p->servers, sizeof(p->servers), "%s", servers);
    snprintf(p->bus, sizeof(p->bus), "%s", bus);
    assert_true(batch >= 1 && batch <= EVBUS_MAX_ENTRIES_PER_PUT);
    p->batch = batch;
    p->inflight = inflight;
    atomic_init(&p->stop, 0);
    assert_int_equal(pthread_create(&p->thread, NULL, producer_main, p), 0);
    p->running = 1;
}

void cf_producer_stop(cf_producer *p)
{
    if (!p->running)
        return;
    atomic_store(&p->stop, 1);
    assert_int_equal(pthread_join(p->thread, NULL), 0);
    p->running = 0;
    fprintf(stderr,
            "producer %u: %u submitted, %lu acknowledged, %lu unknown, %lu rejected, "
            "%d connect failures, %d submit failures, drained %d\n",
            p->ledger.producer, p->ledger.next, atomic_load(&p->ledger.n_acked),
            atomic_load(&p->ledger.n_unknown), atomic_load(&p->ledger.n_rejected),
            p->connect_failures, p->submit_failures, p->drained);
}

unsigned long cf_producer_acked(cf_producer *p)
{
    return atomic_load(&p->ledger.n_acked);
}

/* ----------------------------------------------------------------- checking */

typedef struct replica {
    uint64_t events[CF_MAX_PARTITIONS];
    uint64_t hash[CF_MAX_PARTITIONS]; /* FNV-1a 64 over every envelope, in offset order */
    uint64_t total, acked_seen, dup;
    uint64_t id_mismatch; /* acknowledged event stored at its place under another event id */
} replica;

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static cf_ledger *find_ledger(const cf_expect *x, json_int_t producer)
{
    for (size_t i = 0; i < x->n_ledgers; i++)
        if ((json_int_t)x->ledgers[i]->producer == producer)
            return x->ledgers[i];
    return NULL;
}

/* Reads one node completely and checks it; fills r. */
static void verify_node(const tl_node *nd, const cf_expect *x, uint64_t min_commit_index,
                        replica *r)
{
    memset(r, 0, sizeof(*r));
    evbus_client *c = cf_connect(nd->client_addr, 0);
    assert_non_null(c);
    uint8_t *seen[CF_MAX_LEDGERS];
    int64_t last_s[CF_MAX_LEDGERS][CF_MAX_PARTITIONS];
    for (size_t i = 0; i < x->n_ledgers; i++) {
        seen[i] = calloc(x->ledgers[i]->cap ? x->ledgers[i]->cap : 1, 1);
        assert_non_null(seen[i]);
        for (uint32_t p = 0; p < CF_MAX_PARTITIONS; p++)
            last_s[i][p] = -1;
    }
    for (uint32_t part = 0; part < x->partitions; part++) {
        uint64_t next = 0, h = 1469598103934665603ull;
        for (int page = 0; page < 100000; page++) {
            evbus_read_result *res = NULL;
            int rv = evbus_read_after(c, x->bus, part, next, READ_PAGE, 0, min_commit_index, &res);
            if (rv != 0)
                fprintf(stderr, "node %u: read partition %u from %llu: %s: %s\n", nd->node_id, part,
                        (unsigned long long)next, evbus_errname(rv), evbus_client_errmsg(c));
            assert_int_equal(rv, 0);
            assert_int_equal(res->first_offset, 0);
            for (size_t i = 0; i < res->n_events; i++) {
                const evbus_event *ev = &res->events[i];
                if (ev->offset != next)
                    fprintf(stderr, "node %u partition %u: offset %llu where %llu was due\n",
                            nd->node_id, part, (unsigned long long)ev->offset,
                            (unsigned long long)next);
                assert_int_equal(ev->offset, next); /* gap-free, in order */
                h = fnv1a(h, ev->json, ev->json_len);
                json_error_t jerr;
                json_t *env = json_loads(ev->json, 0, &jerr);
                assert_non_null(env);
                assert_int_equal(json_integer_value(json_object_get(env, "offset")), next);
                assert_int_equal(json_integer_value(json_object_get(env, "partition")), part);
                assert_string_equal(json_string_value(json_object_get(env, "bus")), x->bus);
                json_t *detail = json_object_get(env, "detail");
                json_int_t pid = json_integer_value(json_object_get(detail, "p"));
                json_int_t s = json_integer_value(json_object_get(detail, "s"));
                cf_ledger *l = find_ledger(x, pid);
                assert_non_null(l);
                size_t li = 0;
                while (x->ledgers[li] != l)
                    li++;
                assert_true(s >= 0 && s < (json_int_t)l->next);
                /* Stored at most once. */
                if (seen[li][s]) {
                    fprintf(
                        stderr, "node %u: event p=%lld s=%lld stored twice (again at %u/%llu)\n",
                        nd->node_id, (long long)pid, (long long)s, part, (unsigned long long)next);
                    r->dup++;
                }
                seen[li][s] = 1;
                /* Per producer and partition, offsets follow publish order. */
                if (s <= last_s[li][part])
                    fprintf(stderr, "node %u partition %u: p=%lld s=%lld at %llu after s=%lld\n",
                            nd->node_id, part, (long long)pid, (long long)s,
                            (unsigned long long)next, (long long)last_s[li][part]);
                assert_true(s > last_s[li][part]);
                last_s[li][part] = s;
                /* Acknowledged: at its acknowledged place, with its id. */
                if (l->state[s] == CF_ACKED) {
                    const cf_ack *a = &l->acks[s];
                    if (a->partition != part || a->offset != next)
                        fprintf(stderr,
                                "node %u: p=%lld s=%lld acknowledged at %u/%llu, stored at "
                                "%u/%llu\n",
                                nd->node_id, (long long)pid, (long long)s, a->partition,
                                (unsigned long long)a->offset, part, (unsigned long long)next);
                    assert_int_equal(a->partition, part);
                    assert_int_equal(a->offset, next);
                    const char *id = json_string_value(json_object_get(env, "id"));
                    assert_non_null(id);
                    if (strcmp(id, a->id) != 0) {
                        if (r->id_mismatch < 5)
                            fprintf(stderr,
                                    "node %u: p=%lld s=%lld at %u/%llu has id %s, acknowledged "
                                    "with id %s\n",
                                    nd->node_id, (long long)pid, (long long)s, part,
                                    (unsigned long long)next, id, a->id);
                        r->id_mismatch++;
                    }
                    r->acked_seen++;
                }
                json_decref(env);
                next++;
            }
            int done = res->next_offset >= res->end_offset;
            assert_int_equal(res->next_offset, next);
            evbus_read_result_free(res);
            if (done)
                break;
        }
        r->events[part] = next;
        r->hash[part] = h;
        r->total += next;
    }
    uint64_t acked = 0, missing = 0;
    for (size_t i = 0; i < x->n_ledgers; i++) {
        const cf_ledger *l = x->ledgers[i];
        for (uint32_t s = 0; s < l->next; s++) {
            if (l->state[s] != CF_ACKED)
                continue;
            acked++;
            if (!seen[i][s]) {
                if (missing < 10)
                    fprintf(stderr, "node %u: acknowledged p=%u s=%u (%u/%llu) missing\n",
                            nd->node_id, l->producer, s, l->acks[s].partition,
                            (unsigned long long)l->acks[s].offset);
                missing++;
            }
        }
        free(seen[i]);
    }
    fprintf(stderr, "node %u: %llu stored, %llu acknowledged, %llu missing, %llu duplicates\n",
            nd->node_id, (unsigned long long)r->total, (unsigned long long)acked,
            (unsigned long long)missing, (unsigned long long)r->dup);
    if (r->id_mismatch)
        fprintf(stderr,
                "node %u: %llu acknowledged events are stored under another event id than their "
                "acknowledgement named (a retried publish answered from the dedup table)%s\n",
                nd->node_id, (unsigned long long)r->id_mismatch,
                CF_STRICT_RETRY_EVENT_ID ? "" : "; tolerated: CF_STRICT_RETRY_EVENT_ID is 0");
    assert_int_equal(missing, 0);
    assert_int_equal(r->dup, 0);
    if (CF_STRICT_RETRY_EVENT_ID)
        assert_int_equal(r->id_mismatch, 0);
    assert_int_equal(r->acked_seen, acked);
    evbus_client_destroy(c);
}

/* Per-partition checksums of node i; NULL while it cannot answer (backfilling). */
static evbus_checksum *node_checksum(const tl_node *nd, const char *bus)
{
    evbus_client *c = cf_connect(nd->client_addr, 5000);
    if (c == NULL)
        return NULL;
    evbus_checksum *sum = NULL;
    int rv = evbus_bus_checksum(c, bus, &sum);
    if (rv != 0) {
        fprintf(stderr, "node %u: checksum: %s: %s\n", nd->node_id, evbus_errname(rv),
                evbus_client_errmsg(c));
        sum = NULL;
    }
    evbus_client_destroy(c);
    return sum;
}

static int checksums_equal(const evbus_checksum *a, const evbus_checksum *b)
{
    if (a->n_partitions != b->n_partitions)
        return 0;
    for (size_t i = 0; i < a->n_partitions; i++) {
        const evbus_partition_checksum *p = &a->partitions[i], *q = &b->partitions[i];
        if (p->partition != q->partition || p->first_offset != q->first_offset ||
            p->next_offset != q->next_offset || p->events != q->events ||
            p->checksum != q->checksum)
            return 0;
    }
    return 1;
}

void cf_verify(const cf_cluster *cl, unsigned mask, const cf_expect *x, uint64_t min_commit_index)
{
    assert_true(x->partitions <= CF_MAX_PARTITIONS && x->n_ledgers <= CF_MAX_LEDGERS);
    replica ref, r;
    int have_ref = 0;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        if (!(mask & (1u << i)))
            continue;
        assert_int_equal(cf_wait_caught_up(cl, i, min_commit_index, 60000), 0);
        verify_node(&cl->nodes[i], x, min_commit_index, have_ref ? &r : &ref);
        if (!have_ref) {
            have_ref = 1;
            continue;
        }
        for (uint32_t p = 0; p < x->partitions; p++) {
            if (r.events[p] != ref.events[p] || r.hash[p] != ref.hash[p])
                fprintf(stderr, "partition %u differs: node %u has %llu events (hash %016llx)\n", p,
                        cl->nodes[i].node_id, (unsigned long long)r.events[p],
                        (unsigned long long)r.hash[p]);
            assert_int_equal(r.events[p], ref.events[p]);
            assert_int_equal(r.hash[p], ref.hash[p]);
        }
    }
    assert_true(have_ref);

    /* The servers' own checksums agree too (a node may need a moment to finish a backfill). */
    evbus_checksum *sums[CF_MAX_NODES] = {0};
    uint64_t deadline = tl_now_ms() + 30000;
    int equal = 0;
    for (int round = 0; round < 1000 && !equal; round++) {
        equal = 1;
        const evbus_checksum *first = NULL;
        for (size_t i = 0; i < cl->n_nodes; i++) {
            if (!(mask & (1u << i)))
                continue;
            evbus_checksum_free(sums[i]);
            sums[i] = node_checksum(&cl->nodes[i], x->bus);
            if (sums[i] == NULL) {
                equal = 0;
                continue;
            }
            if (first == NULL)
                first = sums[i];
            else if (!checksums_equal(first, sums[i]))
                equal = 0;
        }
        if (equal || tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(200);
    }
    for (size_t i = 0; i < cl->n_nodes; i++) {
        if (sums[i] == NULL)
            continue;
        if (!equal)
            for (size_t k = 0; k < sums[i]->n_partitions; k++)
                fprintf(stderr, "node %u partition %u: next %llu events %llu checksum %016llx\n",
                        sums[i]->node_id, sums[i]->partitions[k].partition,
                        (unsigned long long)sums[i]->partitions[k].next_offset,
                        (unsigned long long)sums[i]->partitions[k].events,
                        (unsigned long long)sums[i]->partitions[k].checksum);
        else
            for (size_t k = 0; k < sums[i]->n_partitions; k++)
                assert_int_equal(sums[i]->partitions[k].next_offset,
                                 ref.events[sums[i]->partitions[k].partition]);
        evbus_checksum_free(sums[i]);
    }
    assert_true(equal);
}

int cf_ctl_checksum(const char *servers, const char *bus)
{
    const char *ctl = tl_program("EVBUSCTL");
    assert_non_null(ctl);
    const char *argv[] = {ctl, "--servers", servers, "--json", "cluster", "checksum", bus, NULL};
    char *out = NULL;
    int status = -1;
    int rv = tl_run_capture(argv, &out, &status);
    if (rv != 0 || status != 0)
        fprintf(stderr, "evbusctl cluster checksum %s: rv %d exit %d\n%s\n", bus, rv, status,
                out ? out : "");
    free(out);
    return rv == 0 ? status : rv;
}
