/* api/backfill: see backfill.h. */
#include "api/backfill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/peers.h"
#include "common/log.h"
#include "evbus/errors.h"
#include "storage/keys.h"

#define MOD "backfill"
#define RETRY_MS 1000u
#define PEER_TIMEOUT_MS 5000u
#define PAGE_EVENTS 1000u
#define MAX_PEERS 16

typedef struct job {
    uv_work_t work;
    backfill *b;
    char *bus;
    uint32_t bus_id, partition;
    uint64_t from, to;
    char *peers[MAX_PEERS];
    size_t n_peers;
    int code;
    char err[256];
    uint64_t fetched;
} job;

struct backfill {
    uv_loop_t *loop;
    fsm *fsm;
    node *node;
    store *db;
    uint32_t self_id;
    uv_timer_t retry;
    job *running;
    int closing;
    void (*close_cb)(void *);
    void *close_data;
};

/* The envelope as served carries `,"offset":N}` at its end; the stored form does not. */
static int strip_offset(const char *json, size_t len, uint64_t offset, size_t *stored_len)
{
    char tail[40];
    int n = snprintf(tail, sizeof(tail), ",\"offset\":%llu}", (unsigned long long)offset);
    if ((size_t)n > len || memcmp(json + len - (size_t)n, tail, (size_t)n) != 0)
        return EVBUS_EPROTO;
    *stored_len = len - (size_t)n + 1; /* keep the closing brace */
    return 0;
}

static int fetch_from(job *j, const char *peer)
{
    int rv;
    evbus_client *c = peers_connect(peer, PEER_TIMEOUT_MS, &rv);
    if (c == NULL) {
        snprintf(j->err, sizeof(j->err), "cannot connect to %s: %s", peer, evbus_strerror(rv));
        return rv;
    }
    store_batch *batch = store_batch_new();
    uint64_t next = j->from;
    rv = 0;
    for (int page = 0; next < j->to && page < 1000000; page++) {
        evbus_read_result *r = NULL;
        rv = evbus_read(c, j->bus, j->partition, next, PAGE_EVENTS, 0, &r);
        if (rv != 0) {
            snprintf(j->err, sizeof(j->err), "read from %s: %s", peer, evbus_client_errmsg(c));
            break;
        }
        if (r->n_events == 0) {
            evbus_read_result_free(r);
            rv = EVBUS_EUNAVAIL;
            snprintf(j->err, sizeof(j->err), "%s has nothing at offset %llu", peer,
                     (unsigned long long)next);
            break;
        }
        for (size_t i = 0; i < r->n_events && next < j->to; i++) {
            size_t stored_len;
            if (r->events[i].offset != next ||
                strip_offset(r->events[i].json, r->events[i].json_len, next, &stored_len) != 0) {
                rv = EVBUS_EPROTO;
                snprintf(j->err, sizeof(j->err), "unexpected event from %s at offset %llu", peer,
                         (unsigned long long)next);
                break;
            }
            /* The stored form ends where "offset" began, closed again. */
            char *stored = malloc(stored_len);
            if (stored == NULL) {
                rv = EVBUS_ENOMEM;
                break;
            }
            memcpy(stored, r->events[i].json, stored_len - 1);
            stored[stored_len - 1] = '}';
            uint8_t key[KEYS_EVENT_LEN];
            keys_event(key, j->bus_id, j->partition, next);
            store_batch_put(batch, key, sizeof(key), stored, stored_len);
            free(stored);
            next++;
            j->fetched++;
        }
        evbus_read_result_free(r);
        if (rv != 0)
            break;
        rv = store_write(j->b->db, batch, j->err, sizeof(j->err));
        store_batch_clear(batch);
        if (rv != 0)
            break;
    }
    store_batch_free(batch);
    evbus_client_destroy(c);
    return rv;
}

static void job_work(uv_work_t *w)
{
    job *j = w->data;
    j->code = EVBUS_EUNAVAIL;
    snprintf(j->err, sizeof(j->err), "no peer to backfill from");
    for (size_t i = 0; i < j->n_peers; i++) {
        j->code = fetch_from(j, j->peers[i]);
        if (j->code == 0)
            return;
    }
}

static void job_free(job *j)
{
    free(j->bus);
    for (size_t i = 0; i < j->n_peers; i++)
        free(j->peers[i]);
    free(j);
}

static void retry_cb(uv_timer_t *t);

static void on_retry_closed(uv_handle_t *h)
{
    backfill *b = h->data;
    void (*cb)(void *) = b->close_cb;
    void *data = b->close_data;
    free(b);
    if (cb)
        cb(data);
}

static void finish_close(backfill *b)
{
    if (b->running || uv_is_closing((uv_handle_t *)&b->retry))
        return;
    uv_close((uv_handle_t *)&b->retry, on_retry_closed);
}

static void job_after(uv_work_t *w, int status)
{
    job *j = w->data;
    backfill *b = j->b;
    b->running = NULL;
    if (status == 0 && j->code == 0) {
        LOG_INFOF(MOD, "hole filled", "bus=%s partition=%u from=%llu to=%llu events=%llu", j->bus,
                  j->partition, (unsigned long long)j->from, (unsigned long long)j->to,
                  (unsigned long long)j->fetched);
        fsm_hole_filled(b->fsm, j->bus_id, j->partition, j->to);
        job_free(j);
        if (b->closing)
            finish_close(b);
        else
            backfill_kick(b);
        return;
    }
    LOG_WARNF(MOD, "backfill failed, retrying", "bus=%s partition=%u err=\"%s\"", j->bus,
              j->partition, j->err);
    job_free(j);
    if (b->closing)
        finish_close(b);
    else
        uv_timer_start(&b->retry, retry_cb, RETRY_MS, 0);
}

static void retry_cb(uv_timer_t *t)
{
    backfill_kick(t->data);
}

void backfill_kick(backfill *b)
{
    if (b->closing || b->running || uv_is_active((uv_handle_t *)&b->retry))
        return;
    uint32_t bus_id, partition;
    uint64_t from, to;
    if (!fsm_first_hole(b->fsm, &bus_id, &partition, &from, &to))
        return;
    const fsm_bus *bus = fsm_bus_by_id(b->fsm, bus_id);
    job *j = calloc(1, sizeof(*j));
    if (j == NULL || bus == NULL || (j->bus = strdup(bus->name)) == NULL) {
        free(j);
        uv_timer_start(&b->retry, retry_cb, RETRY_MS, 0);
        return;
    }
    j->b = b;
    j->bus_id = bus_id;
    j->partition = partition;
    j->from = from;
    j->to = to;
    /* The leader first: it has everything committed; then the others. */
    node_member m[MAX_PEERS];
    size_t n = node_members(b->node, m, MAX_PEERS);
    uint32_t leader;
    const char *laddr;
    node_leader(b->node, &leader, &laddr);
    if (leader != 0 && leader != b->self_id && laddr[0])
        j->peers[j->n_peers++] = strdup(laddr);
    for (size_t i = 0; i < n && j->n_peers < MAX_PEERS; i++)
        if (m[i].id != b->self_id && m[i].id != leader && m[i].client_addr[0])
            j->peers[j->n_peers++] = strdup(m[i].client_addr);
    j->work.data = j;
    LOG_INFOF(MOD, "backfilling", "bus=%s partition=%u from=%llu to=%llu peers=%zu", j->bus,
              partition, (unsigned long long)from, (unsigned long long)to, j->n_peers);
    if (uv_queue_work(b->loop, &j->work, job_work, job_after) != 0) {
        job_free(j);
        uv_timer_start(&b->retry, retry_cb, RETRY_MS, 0);
        return;
    }
    b->running = j;
}

int backfill_create(uv_loop_t *loop, fsm *f, node *n, store *db, uint32_t self_id, backfill **out)
{
    backfill *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return EVBUS_ENOMEM;
    b->loop = loop;
    b->fsm = f;
    b->node = n;
    b->db = db;
    b->self_id = self_id;
    uv_timer_init(loop, &b->retry);
    b->retry.data = b;
    *out = b;
    return 0;
}

void backfill_close(backfill *b, void (*cb)(void *data), void *data)
{
    b->closing = 1;
    b->close_cb = cb;
    b->close_data = data;
    uv_timer_stop(&b->retry);
    finish_close(b);
}
