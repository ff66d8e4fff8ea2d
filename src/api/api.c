/* api: see api.h. */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "api/backfill.h"
#include "api/envelope.h"
#include "api/peers.h"
#include "delivery/transform.h"
#include "command.pb.h"
#include "common/log.h"
#include "common/util.h"
#include "evbus.pb.h"
#include "evbus/errors.h"
#include "net/server.h"
#include "rules/rules.h"
#include "storage/keys.h"
#include "wire/wire.h"

#define MOD "api"
#define PROTOCOL_VERSION 1
#define SERVER_VERSION "evbus 0.1.0"
#define MAX_ENTRIES_PER_PUT 100
#define READ_DEFAULT_EVENTS 1000u
#define READ_DEFAULT_BYTES (1u << 20)

typedef struct read_wait read_wait;

struct api {
    uv_loop_t *loop;
    const config *cfg;
    fsm *fsm;
    node *node;
    store *db;
    net_server *net;
    read_wait *waits; /* reads waiting for an applied index */
    uv_timer_t wait_timer;
    uint64_t pressure_checked_ms;
    int pressure; /* RocksDB is stalling writes */
    backfill *backfill;
    int jobs;                 /* worker jobs in flight that use the api */
    struct close_ctx *closed; /* set once connections are closed: free when jobs reach 0 */
};

/* A ReadLog with min_commit_index above what this node has applied. */
struct read_wait {
    read_wait *next;
    net_conn *c;
    uint64_t id;
    evbus_ReadLogRequest req; /* bus copied */
    uint64_t deadline_ms;
};

static void api_job_done(api *a);

/* Per-connection state kept in net_conn_data. */
enum conn_phase { PHASE_NEW = 0, PHASE_READY = 1 };

/* ----------------------------------------------------------------- sending */

static void send_frame(api *a, net_conn *c, evbus_Frame *f)
{
    uint8_t *buf;
    size_t len;
    int rv = wire_encode(evbus_Frame_fields, f, a->cfg->max_frame_bytes, &buf, &len);
    if (rv != 0) {
        /* Our own answer does not fit a frame (only reads can get there, and they are capped). */
        LOG_ERRORF(MOD, "cannot encode answer", "conn=%llu err=%s",
                   (unsigned long long)net_conn_id(c), evbus_errname(rv));
        evbus_Frame e = evbus_Frame_init_zero;
        e.id = f->id;
        e.which_body = evbus_Frame_error_tag;
        e.body.error.code = EVBUS_EINTERNAL;
        e.body.error.message = (char *)"answer too large to encode";
        if (wire_encode(evbus_Frame_fields, &e, 0, &buf, &len) != 0)
            return;
    }
    net_conn_send(c, buf, len);
}

static void send_error(api *a, net_conn *c, uint64_t id, int code, const char *msg)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_error_tag;
    f.body.error.code = code;
    f.body.error.message = (char *)(msg && msg[0] ? msg : evbus_strerror(code));
    uint32_t lid;
    const char *laddr = "";
    if (code == EVBUS_ENOTLEADER)
        node_leader(a->node, &lid, &laddr);
    f.body.error.leader_addr = (char *)laddr;
    send_frame(a, c, &f);
}

/* Writes need the leader; tells the caller where it is. */
static int check_writable(api *a, net_conn *c, uint64_t id)
{
    if (node_is_writable(a->node))
        return 1;
    uint32_t lid;
    const char *laddr;
    node_leader(a->node, &lid, &laddr);
    if (lid == 0 || laddr[0] == '\0' || lid == node_self_id(a->node))
        send_error(a, c, id, EVBUS_ENOLEADER, "no leader is ready for writes; retry");
    else
        send_error(a, c, id, EVBUS_ENOTLEADER, "this node is not the leader");
    return 0;
}

/*
 * The bus a request names: a valid name of an existing bus. Writes (write = 1) are first
 * redirected to the leader, whose state decides. Returns NULL once an error was answered.
 */
static const fsm_bus *request_bus(api *a, net_conn *c, uint64_t id, const char *name, int write)
{
    char err[400];
    if (fsm_validate_bus_name(name, err, sizeof(err)) != 0) {
        send_error(a, c, id, EVBUS_EINVAL, err);
        return NULL;
    }
    if (write && !check_writable(a, c, id))
        return NULL;
    const fsm_bus *b = fsm_bus_find(a->fsm, name);
    if (b == NULL) {
        snprintf(err, sizeof(err), "bus '%s' does not exist", name);
        send_error(a, c, id, EVBUS_ENOTFOUND, err);
    }
    return b;
}

static int append_op(util_buf *out, const evbuscmd_Op *op)
{
    return node_encode_op(out, op);
}

/* ---------------------------------------------------------------- publish */

typedef struct put_ctx {
    api *a;
    net_conn *c;
    uint64_t id;
    pb_size_t n;
    evbus_PutEventsResult *results;
    char (*event_ids)[37];
    size_t *op_entry; /* op index -> entry index */
    size_t n_ops;
} put_ctx;

/*
 * Appends `Command.ops { Op.publish_batch { producer_id, sequence, events[] } }` in protobuf
 * wire format, written directly: this is the per-event hot path, where nanopb's size pass plus
 * encode pass copied every envelope twice. evbuscmd.PublishBatch in proto/command.proto is the
 * definition; apply decodes it with nanopb (test_fsm covers the round trip).
 */
static int encode_publish_batch(util_buf *out, uint64_t producer_id, uint64_t sequence,
                                const evbuscmd_Publish *events, size_t n)
{
    size_t pb_len = 1 + util_varint_size(producer_id) + 1 + util_varint_size(sequence);
    for (size_t i = 0; i < n; i++) {
        size_t elen = strlen(events[i].envelope);
        size_t msg = 1 + util_varint_size(events[i].bus_id) + 1 +
                     util_varint_size(events[i].partition) + 1 + util_varint_size(elen) + elen;
        pb_len += 1 + util_varint_size(msg) + msg;
    }
    size_t op_len = 1 + util_varint_size(pb_len) + pb_len;
    int rv = util_buf_reserve(out, 1 + util_varint_size(op_len) + op_len);
    if (rv != 0)
        return rv;
    uint8_t *w = out->data + out->len;
    *w++ = (3 << 3) | 2; /* Command.ops */
    w += util_put_varint(w, op_len);
    *w++ = (evbuscmd_Op_publish_batch_tag << 3) | 2;
    w += util_put_varint(w, pb_len);
    *w++ = (1 << 3) | 0; /* producer_id */
    w += util_put_varint(w, producer_id);
    *w++ = (2 << 3) | 0; /* sequence */
    w += util_put_varint(w, sequence);
    for (size_t i = 0; i < n; i++) {
        size_t elen = strlen(events[i].envelope);
        size_t msg = 1 + util_varint_size(events[i].bus_id) + 1 +
                     util_varint_size(events[i].partition) + 1 + util_varint_size(elen) + elen;
        *w++ = (3 << 3) | 2; /* events */
        w += util_put_varint(w, msg);
        *w++ = (1 << 3) | 0; /* bus_id */
        w += util_put_varint(w, events[i].bus_id);
        *w++ = (2 << 3) | 0; /* partition */
        w += util_put_varint(w, events[i].partition);
        *w++ = (3 << 3) | 2; /* envelope */
        w += util_put_varint(w, elen);
        memcpy(w, events[i].envelope, elen);
        w += elen;
    }
    out->len = (size_t)(w - out->data);
    return 0;
}

static void put_ctx_free(put_ctx *p)
{
    if (p->results) {
        for (pb_size_t i = 0; i < p->n; i++) {
            free(p->results[i].error_message);
            free(p->results[i].event_id);
        }
    }
    free(p->results);
    free(p->event_ids);
    free(p->op_entry);
    net_conn_unref(p->c);
    free(p);
}

static void put_reply(put_ctx *p, uint64_t commit_index)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = p->id;
    f.which_body = evbus_Frame_put_events_reply_tag;
    evbus_PutEventsReply *r = &f.body.put_events_reply;
    r->entries = p->results;
    r->entries_count = p->n;
    r->commit_index = commit_index;
    for (pb_size_t i = 0; i < p->n; i++)
        if (p->results[i].error_code != 0)
            r->failed_count++;
    send_frame(p->a, p->c, &f);
}

static void set_entry_error(evbus_PutEventsResult *r, int code, const char *msg)
{
    r->error_code = code;
    free(r->error_message);
    r->error_message = strdup(msg && msg[0] ? msg : evbus_strerror(code));
}

static void put_done(void *data, int status, const fsm_op_result *ops, size_t n_ops, uint64_t index)
{
    put_ctx *p = data;
    if (status != 0) {
        /* Whole batch failed: answer a request-level error so the client knows the outcome is
         * unknown (EUNAVAIL) or nothing was stored (ENOTLEADER). */
        const char *msg = status == EVBUS_EUNAVAIL
                              ? "leadership lost or node stopping; the outcome is unknown"
                              : NULL;
        send_error(p->a, p->c, p->id, status, msg);
        put_ctx_free(p);
        return;
    }
    for (size_t i = 0; i < n_ops && i < p->n_ops; i++) {
        evbus_PutEventsResult *r = &p->results[p->op_entry[i]];
        if (ops[i].code != 0) {
            set_entry_error(r, ops[i].code,
                            ops[i].code == EVBUS_ENOTFOUND
                                ? "bus was deleted before the event committed"
                            : ops[i].code == EVBUS_ESEQUENCE
                                ? "producer sequence is older than the dedup window: the outcome "
                                  "of the first attempt is no longer known"
                                : NULL);
            free(r->event_id);
            r->event_id = NULL;
        } else {
            r->partition = ops[i].partition;
            r->offset = ops[i].offset;
        }
    }
    put_reply(p, index);
    put_ctx_free(p);
}

/* RocksDB slows or stops writes when compaction falls behind; a stopped write would block the
 * loop and with it Raft heartbeats. Refuse publishes early instead (retriable EBUSY). */
static int storage_pressure(api *a)
{
    uint64_t now = uv_now(a->loop);
    if (now - a->pressure_checked_ms >= 50) {
        a->pressure_checked_ms = now;
        uint64_t stopped = 0, delayed = 0, pending = 0;
        store_property_u64(a->db, "rocksdb.is-write-stopped", &stopped);
        store_property_u64(a->db, "rocksdb.actual-delayed-write-rate", &delayed);
        store_property_u64(a->db, "rocksdb.estimate-pending-compaction-bytes", &pending);
        int was = a->pressure;
        a->pressure = stopped != 0 || delayed != 0 || pending > (32ull << 30);
        if (a->pressure != was)
            LOG_WARNF(MOD,
                      a->pressure ? "storage is stalling: refusing publishes"
                                  : "storage pressure over",
                      "write_stopped=%llu delayed_rate=%llu pending_compaction_bytes=%llu",
                      (unsigned long long)stopped, (unsigned long long)delayed,
                      (unsigned long long)pending);
    }
    return a->pressure;
}

static void handle_put(api *a, net_conn *c, uint64_t id, const evbus_PutEventsRequest *req)
{
    char err[512];
    if (req->entries_count == 0 || req->entries_count > MAX_ENTRIES_PER_PUT) {
        snprintf(err, sizeof(err), "PutEvents takes 1 to %d entries, got %u", MAX_ENTRIES_PER_PUT,
                 (unsigned)req->entries_count);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    const fsm_bus *bus = request_bus(a, c, id, req->bus, 1);
    if (bus == NULL)
        return;
    if (storage_pressure(a)) {
        send_error(a, c, id, EVBUS_EBUSY, "storage is compacting and stalling writes; retry later");
        return;
    }
    put_ctx *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    p->a = a;
    p->c = c;
    net_conn_ref(c);
    p->id = id;
    p->n = req->entries_count;
    p->results = calloc(p->n, sizeof(*p->results));
    p->event_ids = calloc(p->n, sizeof(*p->event_ids));
    p->op_entry = calloc(p->n, sizeof(*p->op_entry));
    util_buf ops = {0};
    int rv = 0;
    evbuscmd_Publish *events = calloc(p->n, sizeof(*events));
    if (p->results == NULL || p->event_ids == NULL || p->op_entry == NULL || events == NULL) {
        rv = EVBUS_ENOMEM;
        goto fail;
    }
    char now[40];
    util_rfc3339(util_now_ms(), now, sizeof(now));
    for (pb_size_t i = 0; i < p->n; i++) {
        const evbus_PutEventsEntry *e = &req->entries[i];
        evbus_PutEventsResult *r = &p->results[i];
        json_t *detail;
        int vrv = envelope_validate(e, &detail, err, sizeof(err));
        if (vrv != 0) {
            set_entry_error(r, vrv, err);
            continue;
        }
        if (req->producer_id != 0) {
            /* A retry of this request must stamp (and answer) the same ids. */
            envelope_event_id(req->producer_id, req->sequence, (uint32_t)i, p->event_ids[i]);
        } else {
            uuid_t u;
            uuid_generate_random(u);
            uuid_unparse_lower(u, p->event_ids[i]);
        }
        const char *key =
            e->partition_key && e->partition_key[0] ? e->partition_key : p->event_ids[i];
        uint32_t part = envelope_partition(key, bus->partitions);
        char *env;
        size_t env_len;
        vrv = envelope_build(e, e->detail, p->event_ids[i], e->time && e->time[0] ? e->time : now,
                             a->cfg->account, a->cfg->region, bus->name, part, &env, &env_len);
        json_decref(detail);
        if (vrv != 0) {
            set_entry_error(r, vrv, "strings must be valid UTF-8");
            continue;
        }
        /* envelope_build gives a NUL-terminated string from malloc: transferred to the op. */
        evbuscmd_Publish *ev = &events[p->n_ops];
        ev->bus_id = bus->bus_id;
        ev->partition = part;
        ev->envelope = env;
        r->event_id = strdup(p->event_ids[i]);
        p->op_entry[p->n_ops++] = i;
    }
    if (p->n_ops == 0) {
        put_reply(p, 0);
        put_ctx_free(p);
        util_buf_free(&ops);
        free(events);
        return;
    }
    /* One op for the whole request: the dedup table answers a retried (producer, sequence) with
     * the results of its first attempt. One result slot per event. */
    rv = encode_publish_batch(&ops, req->producer_id, req->sequence, events, p->n_ops);
    for (size_t i = 0; i < p->n_ops; i++)
        free(events[i].envelope);
    free(events);
    events = NULL;
    if (rv != 0)
        goto fail;
    rv = node_submit(a->node, ops.data, ops.len, p->n_ops, put_done, p);
    util_buf_free(&ops);
    if (rv != 0) {
        send_error(a, c, id, rv, rv == EVBUS_EBUSY ? "too many publishes queued; retry" : NULL);
        put_ctx_free(p);
    }
    return;
fail:
    if (events) {
        for (size_t i = 0; i < p->n_ops; i++)
            free(events[i].envelope);
        free(events);
    }
    util_buf_free(&ops);
    send_error(a, c, id, rv, NULL);
    put_ctx_free(p);
}

/* ------------------------------------------------------------- bus admin */

typedef struct admin_ctx {
    api *a;
    net_conn *c;
    uint64_t id;
    pb_size_t kind; /* request tag */
    char *name;
} admin_ctx;

static void fill_bus_info(const fsm_bus *b, evbus_BusInfo *info, char *time_buf, int with_parts)
{
    info->name = b->name;
    info->partitions = b->partitions;
    info->created_index = b->created_index;
    util_rfc3339(b->created_time_ms, time_buf, 40);
    info->created_time = time_buf;
    for (uint32_t p = 0; p < b->partitions; p++)
        info->events += b->parts[p].next_offset - b->parts[p].first_offset;
    if (with_parts) {
        info->partition_info = calloc(b->partitions, sizeof(*info->partition_info));
        if (info->partition_info) {
            for (uint32_t p = 0; p < b->partitions; p++) {
                info->partition_info[p].partition = p;
                info->partition_info[p].first_offset = b->parts[p].first_offset;
                info->partition_info[p].next_offset = b->parts[p].next_offset;
            }
            info->partition_info_count = b->partitions;
        }
    }
}

static void send_bus(api *a, net_conn *c, uint64_t id, const fsm_bus *b)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_bus_reply_tag;
    f.body.bus_reply.has_bus = true;
    char t[40];
    fill_bus_info(b, &f.body.bus_reply.bus, t, 1);
    send_frame(a, c, &f);
    free(f.body.bus_reply.bus.partition_info);
}

static void admin_done(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                       uint64_t index)
{
    admin_ctx *x = data;
    int code = status != 0 ? status : (n_ops == 1 ? ops[0].code : EVBUS_EINTERNAL);
    char msg[512] = "";
    if (code == EVBUS_EEXIST)
        snprintf(msg, sizeof(msg), "bus '%s' already exists", x->name);
    else if (code == EVBUS_ETOOBIG)
        snprintf(msg, sizeof(msg), "too many buses (limit %u)", FSM_MAX_BUSES);
    else if (code == EVBUS_ENOTFOUND)
        snprintf(msg, sizeof(msg), "bus '%s' does not exist", x->name);
    if (code != 0) {
        send_error(x->a, x->c, x->id, code, msg);
    } else if (x->kind == evbus_Frame_create_bus_tag) {
        const fsm_bus *b = fsm_bus_find(x->a->fsm, x->name);
        if (b)
            send_bus(x->a, x->c, x->id, b);
        else
            send_error(x->a, x->c, x->id, EVBUS_ENOTFOUND, "bus was deleted right after creation");
    } else {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = x->id;
        f.which_body = evbus_Frame_ok_tag;
        f.body.ok.commit_index = index;
        send_frame(x->a, x->c, &f);
    }
    net_conn_unref(x->c);
    free(x->name);
    free(x);
}

static void submit_admin(api *a, net_conn *c, uint64_t id, pb_size_t kind, const char *name,
                         const evbuscmd_Op *op)
{
    if (!check_writable(a, c, id))
        return;
    util_buf ops = {0};
    admin_ctx *x = calloc(1, sizeof(*x));
    int rv = x ? append_op(&ops, op) : EVBUS_ENOMEM;
    if (rv == 0) {
        x->a = a;
        x->c = c;
        x->id = id;
        x->kind = kind;
        x->name = strdup(name);
        net_conn_ref(c);
        rv = node_submit(a->node, ops.data, ops.len, 1, admin_done, x);
        if (rv != 0) {
            net_conn_unref(c);
            free(x->name);
        }
    }
    util_buf_free(&ops);
    if (rv != 0) {
        free(x);
        send_error(a, c, id, rv, NULL);
    }
}

static void handle_create_bus(api *a, net_conn *c, uint64_t id, const evbus_CreateBusRequest *r)
{
    char err[256];
    if (fsm_validate_bus_name(r->name, err, sizeof(err)) != 0) {
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    uint32_t parts = r->partitions ? r->partitions : a->cfg->default_partitions;
    if (parts > FSM_MAX_PARTITIONS) {
        snprintf(err, sizeof(err), "partitions must be 1 to %u", FSM_MAX_PARTITIONS);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    if (!check_writable(a, c, id))
        return;
    if (fsm_bus_find(a->fsm, r->name) != NULL) {
        snprintf(err, sizeof(err), "bus '%s' already exists", r->name);
        send_error(a, c, id, EVBUS_EEXIST, err);
        return;
    }
    evbuscmd_Op op = evbuscmd_Op_init_zero;
    op.which_op = evbuscmd_Op_create_bus_tag;
    op.op.create_bus.name = r->name;
    op.op.create_bus.partitions = parts;
    submit_admin(a, c, id, evbus_Frame_create_bus_tag, r->name, &op);
}

static void handle_delete_bus(api *a, net_conn *c, uint64_t id, const evbus_DeleteBusRequest *r)
{
    const fsm_bus *b = request_bus(a, c, id, r->name, 1);
    if (b == NULL)
        return;
    evbuscmd_Op op = evbuscmd_Op_init_zero;
    op.which_op = evbuscmd_Op_delete_bus_tag;
    op.op.delete_bus.name = r->name;
    op.op.delete_bus.bus_id = b->bus_id;
    submit_admin(a, c, id, evbus_Frame_delete_bus_tag, r->name, &op);
}

static void handle_describe_bus(api *a, net_conn *c, uint64_t id, const evbus_DescribeBusRequest *r)
{
    const fsm_bus *b = request_bus(a, c, id, r->name, 0);
    if (b == NULL)
        return;
    send_bus(a, c, id, b);
}

static void handle_list_buses(api *a, net_conn *c, uint64_t id)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_list_buses_reply_tag;
    size_t n = a->fsm->n_buses;
    evbus_BusInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    char(*times)[40] = calloc(n ? n : 1, 40);
    if (infos == NULL || times == NULL) {
        free(infos);
        free(times);
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        fill_bus_info(a->fsm->buses[i], &infos[i], times[i], 0);
    f.body.list_buses_reply.buses = infos;
    f.body.list_buses_reply.buses_count = (pb_size_t)n;
    send_frame(a, c, &f);
    free(infos);
    free(times);
}

/* ------------------------------------------------------------------- read */

/* A read runs on a worker thread with its own RocksDB iterator; the loop thread only encodes. */
typedef struct read_job {
    uv_work_t work;
    api *a;
    net_conn *c;
    uint64_t id;
    uint32_t bus_id, partition;
    uint64_t from, end, first;
    uint64_t part_end; /* the partition's next offset (end may stop at a backfill hole) */
    uint32_t max_events, max_bytes;
    evbus_LogEvent *events;
    size_t n_events;
    uint64_t next;
    int code;
    char err[256];
} read_job;

static void read_work(uv_work_t *w)
{
    read_job *j = w->data;
    uint8_t lo[KEYS_EVENT_LEN], hi[KEYS_EVENT_LEN];
    keys_event(lo, j->bus_id, j->partition, j->from);
    keys_event(hi, j->bus_id, j->partition, j->end);
    j->next = j->from;
    if (j->from >= j->end)
        return;
    uint64_t want = j->end - j->from;
    if (want > j->max_events)
        want = j->max_events;
    j->events = calloc(want, sizeof(*j->events));
    if (j->events == NULL) {
        j->code = EVBUS_ENOMEM;
        return;
    }
    store_iter *it = store_iter_new(j->a->db, lo, sizeof(lo), hi, sizeof(hi));
    if (it == NULL) {
        j->code = EVBUS_ENOMEM;
        return;
    }
    size_t bytes = 0;
    for (; store_iter_valid(it) && j->n_events < want; store_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = store_iter_key(it, &klen);
        const uint8_t *v = store_iter_value(it, &vlen);
        uint32_t bid, part;
        uint64_t off;
        if (keys_event_parse(k, klen, &bid, &part, &off) != 0 || off != j->next) {
            /* A hole in a partition breaks the gap-free invariant: report, never skip. */
            j->code = EVBUS_EIO;
            snprintf(j->err, sizeof(j->err), "partition %u: expected offset %llu, found %llu",
                     j->partition, (unsigned long long)j->next, (unsigned long long)off);
            break;
        }
        if (j->n_events > 0 && bytes + vlen > j->max_bytes)
            break;
        uint8_t *out;
        size_t out_len;
        if (envelope_with_offset(v, vlen, off, &out, &out_len) != 0) {
            j->code = EVBUS_EIO;
            snprintf(j->err, sizeof(j->err), "corrupt event at offset %llu",
                     (unsigned long long)off);
            break;
        }
        j->events[j->n_events].offset = off;
        j->events[j->n_events].event = (char *)out; /* NUL-terminated by envelope_with_offset */
        j->n_events++;
        bytes += out_len;
        j->next = off + 1;
    }
    if (j->code == 0 && store_iter_status(it, j->err, sizeof(j->err)) != 0)
        j->code = EVBUS_EIO;
    store_iter_free(it);
}

static void read_after(uv_work_t *w, int status)
{
    read_job *j = w->data;
    if (status == UV_ECANCELED)
        j->code = EVBUS_ECANCELED;
    if (j->code != 0) {
        send_error(j->a, j->c, j->id, j->code, j->err);
    } else {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = j->id;
        f.which_body = evbus_Frame_read_log_reply_tag;
        f.body.read_log_reply.events = j->events;
        f.body.read_log_reply.events_count = (pb_size_t)j->n_events;
        f.body.read_log_reply.next_offset = j->next;
        f.body.read_log_reply.first_offset = j->first;
        f.body.read_log_reply.end_offset = j->part_end;
        send_frame(j->a, j->c, &f);
    }
    for (size_t i = 0; i < j->n_events; i++)
        free(j->events[i].event);
    free(j->events);
    net_conn_unref(j->c);
    api *a = j->a;
    free(j);
    api_job_done(a);
}

static void handle_read(api *a, net_conn *c, uint64_t id, const evbus_ReadLogRequest *r);

static uint64_t applied_index(api *a)
{
    node_info self;
    node_self_info(a->node, &self);
    return self.applied_index;
}

static void wait_timer_cb(uv_timer_t *t)
{
    api *a = t->data;
    uint64_t applied = applied_index(a);
    uint64_t now = uv_now(a->loop);
    read_wait **pp = &a->waits;
    while (*pp) {
        read_wait *w = *pp;
        if (applied >= w->req.min_commit_index || now >= w->deadline_ms ||
            net_conn_is_closed(w->c)) {
            *pp = w->next;
            if (net_conn_is_closed(w->c)) {
                /* nobody to answer */
            } else if (applied >= w->req.min_commit_index) {
                w->req.min_commit_index = 0;
                handle_read(a, w->c, w->id, &w->req);
            } else {
                char err[160];
                snprintf(err, sizeof(err),
                         "this node has applied index %llu, not yet %llu; retry or read another "
                         "node",
                         (unsigned long long)applied, (unsigned long long)w->req.min_commit_index);
                send_error(a, w->c, w->id, EVBUS_ETIMEDOUT, err);
            }
            net_conn_unref(w->c);
            free(w->req.bus);
            free(w);
        } else {
            pp = &w->next;
        }
    }
    if (a->waits == NULL)
        uv_timer_stop(&a->wait_timer);
}

static void handle_read(api *a, net_conn *c, uint64_t id, const evbus_ReadLogRequest *r)
{
    char err[400];
    if (r->min_commit_index > 0 && applied_index(a) < r->min_commit_index) {
        read_wait *w = calloc(1, sizeof(*w));
        if (w == NULL || (w->req.bus = wire_strdup(r->bus ? r->bus : "")) == NULL) {
            free(w);
            send_error(a, c, id, EVBUS_ENOMEM, NULL);
            return;
        }
        w->req.partition = r->partition;
        w->req.from_offset = r->from_offset;
        w->req.max_events = r->max_events;
        w->req.max_bytes = r->max_bytes;
        w->req.min_commit_index = r->min_commit_index;
        w->c = c;
        w->id = id;
        w->deadline_ms = uv_now(a->loop) + a->cfg->read_wait_ms;
        net_conn_ref(c);
        w->next = a->waits;
        a->waits = w;
        if (!uv_is_active((uv_handle_t *)&a->wait_timer))
            uv_timer_start(&a->wait_timer, wait_timer_cb, 2, 2);
        return;
    }
    const fsm_bus *b = request_bus(a, c, id, r->bus, 0);
    if (b == NULL)
        return;
    if (r->partition >= b->partitions) {
        snprintf(err, sizeof(err), "partition %u does not exist (bus '%s' has %u partitions)",
                 r->partition, b->name, b->partitions);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    const fsm_partition *p = &b->parts[r->partition];
    if (r->from_offset < p->first_offset) {
        snprintf(err, sizeof(err),
                 "offset %llu is below the first available offset %llu of partition %u",
                 (unsigned long long)r->from_offset, (unsigned long long)p->first_offset,
                 r->partition);
        send_error(a, c, id, EVBUS_ERANGE, err);
        return;
    }
    if (r->from_offset > p->next_offset) {
        snprintf(err, sizeof(err), "offset %llu is beyond the end offset %llu of partition %u",
                 (unsigned long long)r->from_offset, (unsigned long long)p->next_offset,
                 r->partition);
        send_error(a, c, id, EVBUS_ERANGE, err);
        return;
    }
    /* A node that installed a snapshot lacks [hole_from, hole_to) until the backfill is done:
     * serve up to the hole, refuse inside it (the client can read another node). */
    uint64_t end = p->next_offset;
    if (p->hole_to > p->hole_from && r->from_offset < p->hole_from && end > p->hole_from)
        end = p->hole_from;
    if (fsm_in_hole(p, r->from_offset, r->from_offset + 1)) {
        snprintf(err, sizeof(err),
                 "partition %u offsets %llu..%llu are still being backfilled on node %u; read "
                 "another node",
                 r->partition, (unsigned long long)p->hole_from, (unsigned long long)p->hole_to,
                 a->cfg->node_id);
        send_error(a, c, id, EVBUS_EBACKFILL, err);
        return;
    }
    read_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    j->a = a;
    j->c = c;
    j->id = id;
    j->bus_id = b->bus_id;
    j->partition = r->partition;
    j->from = r->from_offset;
    j->end = end;
    j->part_end = p->next_offset;
    j->first = p->first_offset;
    j->max_events = r->max_events ? r->max_events : READ_DEFAULT_EVENTS;
    if (j->max_events > 10000)
        j->max_events = 10000;
    /* Leave room for the frame's own fields within the frame limit. */
    uint32_t cap = a->cfg->max_frame_bytes - (a->cfg->max_frame_bytes / 8);
    j->max_bytes = r->max_bytes ? r->max_bytes : READ_DEFAULT_BYTES;
    if (j->max_bytes > cap)
        j->max_bytes = cap;
    j->work.data = j;
    net_conn_ref(c);
    a->jobs++;
    if (uv_queue_work(a->loop, &j->work, read_work, read_after) != 0) {
        a->jobs--;
        net_conn_unref(c);
        free(j);
        send_error(a, c, id, EVBUS_EINTERNAL, "cannot queue read");
    }
}

/* ------------------------------------------------------------------ rules */

#define LIST_RULES_DEFAULT 1000u
#define LIST_RULES_MAX 10000u
#define TEST_DEFAULT_EVENTS 1000u
#define TEST_MAX_EVENTS 100000u        /* examined per partition and request */
#define TEST_MAX_TOTAL_EVENTS 1000000u /* examined per request, all partitions */
#define TEST_MAX_MATCHES 10000u

static void fill_rule_info(const fsm_bus *b, const fsm_rule *r, evbus_RuleInfo *info)
{
    info->bus = b->name;
    info->name = r->name;
    info->pattern = r->pattern;
    info->description = r->description;
    info->state = r->enabled ? evbus_RuleState_RULE_ENABLED : evbus_RuleState_RULE_DISABLED;
    info->created_index = r->created_index;
    info->updated_index = r->updated_index;
    info->memory_bytes = r->memory_bytes;
    info->rule_id = r->id;
}

static void send_rule(api *a, net_conn *c, uint64_t id, const fsm_bus *b, const fsm_rule *r)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_rule_reply_tag;
    f.body.rule_reply.has_rule = true;
    fill_rule_info(b, r, &f.body.rule_reply.rule);
    send_frame(a, c, &f);
}

enum { RULE_NO_NAME = 0, RULE_NAME = 1, RULE_WRITE = 2 };

/* Bus (and, with RULE_NAME, rule name) of a rule request: valid, and the bus exists here; a
 * RULE_WRITE is redirected to the leader. NULL once an error was answered. */
static const fsm_bus *rule_request_bus(api *a, net_conn *c, uint64_t id, const char *bus,
                                       const char *name, int flags)
{
    char err[300];
    if ((flags & RULE_NAME) && fsm_validate_rule_name(name, err, sizeof(err)) != 0) {
        send_error(a, c, id, EVBUS_EINVAL, err);
        return NULL;
    }
    return request_bus(a, c, id, bus, (flags & RULE_WRITE) != 0);
}

static void send_rule_not_found(api *a, net_conn *c, uint64_t id, const char *bus, const char *name)
{
    char err[400];
    snprintf(err, sizeof(err), "rule '%s' does not exist on bus '%s'", name, bus);
    send_error(a, c, id, EVBUS_ENOTFOUND, err);
}

/*
 * Checks a pattern as PutRule and TestRule take it: size within the replicated max-pattern-bytes
 * (the value apply enforces), then the parser. On 0, *out (may be NULL: check only) is the parsed
 * pattern, owned by the caller. Otherwise the error is answered.
 */
static int check_pattern(api *a, net_conn *c, uint64_t id, const char *pattern, rules_pattern **out)
{
    char err[600], why[512];
    size_t len = pattern ? strlen(pattern) : 0;
    uint32_t max = a->fsm->params.max_pattern_bytes;
    if (len == 0) {
        send_error(a, c, id, EVBUS_EINVAL, "the event pattern is empty");
        return EVBUS_EINVAL;
    }
    if (len > max) {
        snprintf(err, sizeof(err),
                 "event pattern is %zu bytes, over the limit of %u bytes (max-pattern-bytes)", len,
                 max);
        send_error(a, c, id, EVBUS_ETOOBIG, err);
        return EVBUS_ETOOBIG;
    }
    rules_limits lim = {.max_pattern_bytes = max};
    rules_pattern *p = NULL;
    why[0] = '\0';
    int rv = rules_pattern_parse(pattern, len, &lim, &p, why, sizeof(why));
    if (rv != 0) {
        if (rv == EVBUS_ENOMEM) {
            send_error(a, c, id, rv, NULL);
            return rv;
        }
        if (rv != EVBUS_ETOOBIG)
            rv = EVBUS_EINVAL;
        snprintf(err, sizeof(err), "invalid event pattern: %s", why[0] ? why : evbus_strerror(rv));
        send_error(a, c, id, rv, err);
        return rv;
    }
    if (out)
        *out = p;
    else
        rules_pattern_free(p);
    return 0;
}

typedef struct rule_ctx {
    api *a;
    net_conn *c;
    uint64_t id;
    pb_size_t kind; /* request tag */
    char *bus;
    char *name;
    size_t pattern_len;
} rule_ctx;

static void rule_ctx_free(rule_ctx *x)
{
    net_conn_unref(x->c);
    free(x->bus);
    free(x->name);
    free(x);
}

static void rule_done(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                      uint64_t index)
{
    rule_ctx *x = data;
    api *a = x->a;
    int code = status != 0 ? status : (n_ops == 1 ? ops[0].code : EVBUS_EINTERNAL);
    const fsm_bus *b = fsm_bus_find(a->fsm, x->bus);
    char msg[512] = "";
    if (code == EVBUS_ENOTFOUND && b == NULL)
        snprintf(msg, sizeof(msg), "bus '%s' does not exist", x->bus);
    else if (code == EVBUS_ENOTFOUND)
        snprintf(msg, sizeof(msg), "rule '%s' does not exist on bus '%s'", x->name, x->bus);
    else if (code == EVBUS_ETOOBIG && x->pattern_len > a->fsm->params.max_pattern_bytes)
        snprintf(msg, sizeof(msg),
                 "event pattern is %zu bytes, over the limit of %u bytes (max-pattern-bytes)",
                 x->pattern_len, a->fsm->params.max_pattern_bytes);
    else if (code == EVBUS_ETOOBIG)
        snprintf(msg, sizeof(msg), "bus '%s' already has %zu rules, the limit (max-rules-per-bus)",
                 x->bus, b ? b->n_rules : 0);
    else if (code == EVBUS_EINVAL)
        snprintf(msg, sizeof(msg), "rule '%s' was refused when applied: invalid event pattern",
                 x->name);
    else if (code == EVBUS_EINTERNAL)
        snprintf(msg, sizeof(msg), "the rule engine refused rule '%s' (see the server log)",
                 x->name);
    else if (code == EVBUS_EUNAVAIL)
        snprintf(msg, sizeof(msg), "leadership lost or node stopping; the outcome is unknown");
    const fsm_rule *r = b ? fsm_rule_find(b, x->name) : NULL;
    if (code != 0) {
        send_error(a, x->c, x->id, code, msg);
    } else if (x->kind == evbus_Frame_delete_rule_tag) {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = x->id;
        f.which_body = evbus_Frame_ok_tag;
        f.body.ok.commit_index = index;
        send_frame(a, x->c, &f);
    } else if (r == NULL) {
        send_error(a, x->c, x->id, EVBUS_ENOTFOUND, "rule was deleted right after the change");
    } else {
        send_rule(a, x->c, x->id, b, r);
    }
    rule_ctx_free(x);
}

static void submit_rule_op(api *a, net_conn *c, uint64_t id, pb_size_t kind, const char *bus,
                           const char *name, size_t pattern_len, const evbuscmd_Op *op)
{
    util_buf ops = {0};
    rule_ctx *x = calloc(1, sizeof(*x));
    int rv = x ? append_op(&ops, op) : EVBUS_ENOMEM;
    if (rv == 0) {
        x->a = a;
        x->c = c;
        x->id = id;
        x->kind = kind;
        x->pattern_len = pattern_len;
        x->bus = strdup(bus);
        x->name = strdup(name);
        net_conn_ref(c);
        rv = x->bus && x->name ? node_submit(a->node, ops.data, ops.len, 1, rule_done, x)
                               : EVBUS_ENOMEM;
        if (rv != 0) {
            rule_ctx_free(x);
            x = NULL;
        }
    }
    util_buf_free(&ops);
    if (rv != 0) {
        free(x);
        send_error(a, c, id, rv, rv == EVBUS_EBUSY ? "too many writes queued; retry" : NULL);
    }
}

static void handle_put_rule(api *a, net_conn *c, uint64_t id, const evbus_PutRuleRequest *r)
{
    char err[300];
    const char *desc = r->description ? r->description : "";
    if (strlen(desc) > FSM_MAX_RULE_DESCRIPTION) {
        snprintf(err, sizeof(err), "description is %zu bytes; at most %u are allowed", strlen(desc),
                 FSM_MAX_RULE_DESCRIPTION);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    const fsm_bus *b = rule_request_bus(a, c, id, r->bus, r->name, RULE_NAME | RULE_WRITE);
    if (b == NULL)
        return;
    if (fsm_rule_find(b, r->name) == NULL && b->n_rules >= a->fsm->params.max_rules_per_bus) {
        snprintf(err, sizeof(err),
                 "bus '%s' already has %zu rules, the limit (max-rules-per-bus); delete one or "
                 "raise the limit",
                 b->name, b->n_rules);
        send_error(a, c, id, EVBUS_ETOOBIG, err);
        return;
    }
    if (check_pattern(a, c, id, r->pattern, NULL) != 0)
        return;
    evbuscmd_Op op = evbuscmd_Op_init_zero;
    op.which_op = evbuscmd_Op_put_rule_tag;
    op.op.put_rule.bus_id = b->bus_id;
    op.op.put_rule.name = r->name;
    op.op.put_rule.pattern = r->pattern;
    op.op.put_rule.description = (char *)desc;
    op.op.put_rule.disabled = r->disabled;
    submit_rule_op(a, c, id, evbus_Frame_put_rule_tag, r->bus, r->name, strlen(r->pattern), &op);
}

/* DeleteRule, EnableRule, DisableRule: the same shape of request. */
static void handle_rule_change(api *a, net_conn *c, uint64_t id, pb_size_t kind, const char *bus,
                               const char *name)
{
    const fsm_bus *b = rule_request_bus(a, c, id, bus, name, RULE_NAME | RULE_WRITE);
    if (b == NULL)
        return;
    const fsm_rule *rule = fsm_rule_find(b, name);
    if (rule == NULL) {
        send_rule_not_found(a, c, id, bus, name);
        return;
    }
    evbuscmd_Op op = evbuscmd_Op_init_zero;
    if (kind == evbus_Frame_delete_rule_tag) {
        op.which_op = evbuscmd_Op_delete_rule_tag;
        op.op.delete_rule.bus_id = b->bus_id;
        op.op.delete_rule.name = (char *)name;
    } else {
        op.which_op = evbuscmd_Op_set_rule_state_tag;
        op.op.set_rule_state.bus_id = b->bus_id;
        op.op.set_rule_state.name = (char *)name;
        op.op.set_rule_state.enabled = kind == evbus_Frame_enable_rule_tag;
    }
    submit_rule_op(a, c, id, kind, bus, name, 0, &op);
}

static void handle_describe_rule(api *a, net_conn *c, uint64_t id,
                                 const evbus_DescribeRuleRequest *r)
{
    const fsm_bus *b = rule_request_bus(a, c, id, r->bus, r->name, RULE_NAME);
    if (b == NULL)
        return;
    const fsm_rule *rule = fsm_rule_find(b, r->name);
    if (rule == NULL)
        send_rule_not_found(a, c, id, r->bus, r->name);
    else
        send_rule(a, c, id, b, rule);
}

static void handle_list_rules(api *a, net_conn *c, uint64_t id, const evbus_ListRulesRequest *r)
{
    const fsm_bus *b = rule_request_bus(a, c, id, r->bus, NULL, RULE_NO_NAME);
    if (b == NULL)
        return;
    size_t start = 0;
    if (r->start_after && r->start_after[0]) {
        /* First name after start_after (bytewise, the order of b->rules). */
        while (start < b->n_rules && strcmp(b->rules[start]->name, r->start_after) <= 0)
            start++;
    }
    size_t max = r->max_rules ? r->max_rules : LIST_RULES_DEFAULT;
    if (max > LIST_RULES_MAX)
        max = LIST_RULES_MAX;
    size_t left = b->n_rules - start;
    size_t n = left < max ? left : max;
    evbus_RuleInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    if (infos == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    /* A page stays well inside the frame limit; at least one rule per page (a rule fits: its
     * pattern is bounded by max-pattern-bytes). */
    size_t budget = a->cfg->max_frame_bytes / 2, bytes = 0, count = 0;
    for (; count < n; count++) {
        const fsm_rule *rule = b->rules[start + count];
        size_t sz = strlen(rule->name) + strlen(rule->pattern) + strlen(rule->description) +
                    strlen(b->name) + 64;
        if (count > 0 && bytes + sz > budget)
            break;
        bytes += sz;
        fill_rule_info(b, rule, &infos[count]);
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_list_rules_reply_tag;
    f.body.list_rules_reply.rules = infos;
    f.body.list_rules_reply.rules_count = (pb_size_t)count;
    f.body.list_rules_reply.total = (uint32_t)b->n_rules;
    f.body.list_rules_reply.next_start_after =
        start + count < b->n_rules && count > 0 ? b->rules[start + count - 1]->name : (char *)"";
    send_frame(a, c, &f);
    free(infos);
}

/* ---------------------------------------------------------------- targets */

/* One entry of PutTargets / RemoveTargets: refused before proposing (code set, op < 0) or
 * proposed as op number `op` of the submitted batch. */
typedef struct target_entry {
    char *name;
    int code;
    char msg[320];
    long op;
} target_entry;

typedef struct targets_ctx {
    api *a;
    net_conn *c;
    uint64_t id;
    target_entry *entries;
    size_t n;
} targets_ctx;

static void targets_ctx_free(targets_ctx *x)
{
    if (x == NULL)
        return;
    if (x->c)
        net_conn_unref(x->c);
    for (size_t i = 0; i < x->n; i++)
        free(x->entries[i].name);
    free(x->entries);
    free(x);
}

/* Answers TargetsResultReply from the entries (EventBridge's FailedEntryCount/FailedEntries). */
static void send_targets_result(targets_ctx *x, uint64_t index)
{
    evbus_TargetFailure *fails = calloc(x->n ? x->n : 1, sizeof(*fails));
    if (fails == NULL) {
        send_error(x->a, x->c, x->id, EVBUS_ENOMEM, NULL);
        return;
    }
    size_t nf = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (x->entries[i].code == 0)
            continue;
        fails[nf].target_id = x->entries[i].name;
        fails[nf].error_code = x->entries[i].code;
        fails[nf].error_message = x->entries[i].msg;
        nf++;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = x->id;
    f.which_body = evbus_Frame_targets_result_reply_tag;
    f.body.targets_result_reply.failed_entry_count = (uint32_t)nf;
    f.body.targets_result_reply.failed_entries = fails;
    f.body.targets_result_reply.failed_entries_count = (pb_size_t)nf;
    f.body.targets_result_reply.commit_index = index;
    send_frame(x->a, x->c, &f);
    free(fails);
}

static void targets_done(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                         uint64_t index)
{
    targets_ctx *x = data;
    if (status != 0) {
        send_error(x->a, x->c, x->id, status,
                   status == EVBUS_EUNAVAIL
                       ? "leadership lost or node stopping; the outcome is unknown"
                       : NULL);
        targets_ctx_free(x);
        return;
    }
    for (size_t i = 0; i < x->n; i++) {
        target_entry *e = &x->entries[i];
        if (e->op < 0)
            continue;
        int code = (size_t)e->op < n_ops ? ops[e->op].code : EVBUS_EINTERNAL;
        if (code != 0) {
            e->code = code;
            snprintf(e->msg, sizeof(e->msg), "%s",
                     (size_t)e->op < n_ops && ops[e->op].msg ? ops[e->op].msg
                                                             : evbus_strerror(code));
        }
    }
    send_targets_result(x, index);
    targets_ctx_free(x);
}

/* Proposes the ops (n_ops of them in `ops`) of x, or answers at once when there are none. */
static void submit_targets(targets_ctx *x, util_buf *ops, size_t n_ops)
{
    if (n_ops == 0) {
        send_targets_result(x, 0);
        targets_ctx_free(x);
        return;
    }
    int rv = node_submit(x->a->node, ops->data, ops->len, n_ops, targets_done, x);
    if (rv != 0) {
        send_error(x->a, x->c, x->id, rv,
                   rv == EVBUS_EBUSY ? "too many writes queued; retry" : NULL);
        targets_ctx_free(x);
    }
}

/* The context of a PutTargets/RemoveTargets of n names; NULL after answering ENOMEM. */
static targets_ctx *targets_ctx_new(api *a, net_conn *c, uint64_t id, size_t n)
{
    targets_ctx *x = calloc(1, sizeof(*x));
    if (x == NULL || (x->entries = calloc(n ? n : 1, sizeof(*x->entries))) == NULL) {
        free(x);
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return NULL;
    }
    x->a = a;
    x->c = c;
    x->id = id;
    x->n = n;
    net_conn_ref(c);
    return x;
}

/* Bus and rule of a target write or ListTargetsByRule; NULL once an error was answered. */
static const fsm_rule *target_request_rule(api *a, net_conn *c, uint64_t id, const char *bus,
                                           const char *rule, int write, const fsm_bus **bout)
{
    const fsm_bus *b = rule_request_bus(a, c, id, bus, rule, RULE_NAME | (write ? RULE_WRITE : 0));
    if (b == NULL)
        return NULL;
    const fsm_rule *r = fsm_rule_find(b, rule);
    if (r == NULL) {
        send_rule_not_found(a, c, id, bus, rule);
        return NULL;
    }
    *bout = b;
    return r;
}

/* A request's target spec as stored settings, with the defaults filled in (strings borrowed). */
static void spec_to_meta(const evbus_TargetSpec *s, evbuscmd_TargetMeta *m)
{
    memset(m, 0, sizeof(*m));
    m->name = s->id;
    m->max_attempts = s->max_attempts_set ? s->max_attempts : FSM_TARGET_DEFAULT_MAX_ATTEMPTS;
    m->max_age_s = s->max_age_s ? s->max_age_s : FSM_TARGET_MAX_AGE_S;
    m->window = s->window ? s->window : FSM_TARGET_DEFAULT_WINDOW;
    m->ack_timeout_ms = s->ack_timeout_ms ? s->ack_timeout_ms : FSM_TARGET_DEFAULT_ACK_TIMEOUT_MS;
    m->dead_letter = s->dead_letter;
    m->input_path = s->input_path;
    m->input = s->input;
    m->input_paths_map = s->input_paths_map;
    m->input_template = s->input_template;
    if (s->input_path && s->input_path[0])
        m->input_kind = evbuscmd_InputKind_INPUT_PATH;
    else if (s->input && s->input[0])
        m->input_kind = evbuscmd_InputKind_INPUT_CONSTANT;
    else if ((s->input_template && s->input_template[0]) ||
             (s->input_paths_map && s->input_paths_map[0]))
        m->input_kind = evbuscmd_InputKind_INPUT_TRANSFORMER;
}

/* The full EventBridge check of a target's delivery shape (paths, placeholders, template), done
 * on the leader before proposing: the state machine only checks the shape's outline, so that
 * cluster/ does not depend on delivery/. */
static int validate_input_shape(const evbuscmd_TargetMeta *m, char *err, size_t err_len)
{
    transform_config cfg = {0};
    switch (m->input_kind) {
    case evbuscmd_InputKind_INPUT_PATH: cfg.input_path = m->input_path; break;
    case evbuscmd_InputKind_INPUT_CONSTANT: cfg.input = m->input; break;
    case evbuscmd_InputKind_INPUT_TRANSFORMER:
        cfg.input_paths_map = m->input_paths_map;
        cfg.input_template = m->input_template;
        break;
    default: return 0;
    }
    transform_spec *spec = NULL;
    int rv = transform_compile(&cfg, &spec, err, err_len);
    transform_spec_free(spec);
    return rv;
}

static void handle_put_targets(api *a, net_conn *c, uint64_t id, const evbus_PutTargetsRequest *r)
{
    const fsm_bus *b = NULL;
    if (target_request_rule(a, c, id, r->bus, r->rule, 1, &b) == NULL)
        return;
    char err[320];
    if (r->targets_count == 0 || r->targets_count > FSM_MAX_TARGETS_PER_RULE) {
        snprintf(err, sizeof(err), "PutTargets takes 1 to %u targets (a rule has at most %u)",
                 FSM_MAX_TARGETS_PER_RULE, FSM_MAX_TARGETS_PER_RULE);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    targets_ctx *x = targets_ctx_new(a, c, id, r->targets_count);
    if (x == NULL)
        return;
    util_buf ops = {0};
    size_t n_ops = 0;
    for (pb_size_t i = 0; i < r->targets_count; i++) {
        const evbus_TargetSpec *s = &r->targets[i];
        target_entry *e = &x->entries[i];
        e->op = -1;
        if ((e->name = strdup(s->id ? s->id : "")) == NULL) {
            e->code = EVBUS_ENOMEM;
            continue;
        }
        evbuscmd_TargetMeta m;
        spec_to_meta(s, &m);
        if ((e->code = fsm_target_validate(&m, e->msg, sizeof(e->msg))) != 0)
            continue;
        if ((e->code = validate_input_shape(&m, e->msg, sizeof(e->msg))) != 0)
            continue;
        for (pb_size_t k = 0; k < i; k++) {
            if (r->targets[k].id && strcmp(r->targets[k].id, s->id) == 0) {
                e->code = EVBUS_EINVAL;
                snprintf(e->msg, sizeof(e->msg), "target '%s' appears twice in the request", s->id);
            }
        }
        if (e->code != 0)
            continue;
        evbuscmd_Op op = evbuscmd_Op_init_zero;
        op.which_op = evbuscmd_Op_put_target_tag;
        op.op.put_target.bus_id = b->bus_id;
        op.op.put_target.rule = r->rule;
        op.op.put_target.has_target = true;
        op.op.put_target.target = m;
        if ((e->code = append_op(&ops, &op)) != 0) {
            snprintf(e->msg, sizeof(e->msg), "cannot encode the target");
            continue;
        }
        e->op = (long)n_ops++;
    }
    submit_targets(x, &ops, n_ops);
    util_buf_free(&ops);
}

static void handle_remove_targets(api *a, net_conn *c, uint64_t id,
                                  const evbus_RemoveTargetsRequest *r)
{
    const fsm_bus *b = NULL;
    if (target_request_rule(a, c, id, r->bus, r->rule, 1, &b) == NULL)
        return;
    if (r->ids_count == 0 || r->ids_count > FSM_MAX_TARGETS_PER_RULE) {
        char err[128];
        snprintf(err, sizeof(err), "RemoveTargets takes 1 to %u target names",
                 FSM_MAX_TARGETS_PER_RULE);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    targets_ctx *x = targets_ctx_new(a, c, id, r->ids_count);
    if (x == NULL)
        return;
    util_buf ops = {0};
    size_t n_ops = 0;
    for (pb_size_t i = 0; i < r->ids_count; i++) {
        target_entry *e = &x->entries[i];
        e->op = -1;
        if ((e->name = strdup(r->ids[i] ? r->ids[i] : "")) == NULL) {
            e->code = EVBUS_ENOMEM;
            continue;
        }
        if ((e->code = fsm_validate_target_name(e->name, e->msg, sizeof(e->msg))) != 0)
            continue;
        evbuscmd_Op op = evbuscmd_Op_init_zero;
        op.which_op = evbuscmd_Op_remove_target_tag;
        op.op.remove_target.bus_id = b->bus_id;
        op.op.remove_target.rule = r->rule;
        op.op.remove_target.target = e->name;
        if ((e->code = append_op(&ops, &op)) != 0) {
            snprintf(e->msg, sizeof(e->msg), "cannot encode the request");
            continue;
        }
        e->op = (long)n_ops++;
    }
    submit_targets(x, &ops, n_ops);
    util_buf_free(&ops);
}

static int cmp_str_ptr(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Fills info from t (strings borrowed); allocates info->rules and info->partitions, which
 * target_info_release frees. 0 or EVBUS_ENOMEM. */
static int fill_target_info(const fsm_bus *b, const fsm_target *t, evbus_TargetInfo *info)
{
    memset(info, 0, sizeof(*info));
    info->bus = b->name;
    info->id = t->name;
    info->target_id = t->id;
    info->max_attempts = t->max_attempts;
    info->max_age_s = t->max_age_s;
    info->dead_letter = t->dead_letter;
    info->input_path = t->input_path;
    info->input = t->input;
    info->input_paths_map = t->input_paths_map;
    info->input_template = t->input_template;
    info->window = t->window;
    info->ack_timeout_ms = t->ack_timeout_ms;
    info->delivered = t->delivered;
    info->retried = t->retried;
    info->dead_lettered = t->dead_lettered;
    info->dropped = t->dropped;
    info->created_index = t->created_index;
    info->updated_index = t->updated_index;
    info->in_flight = 0; /* no delivery engine yet (issue 5) */
    info->rules = calloc(t->n_rule_ids ? t->n_rule_ids : 1, sizeof(*info->rules));
    info->partitions = calloc(b->partitions, sizeof(*info->partitions));
    if (info->rules == NULL || info->partitions == NULL)
        return EVBUS_ENOMEM;
    for (size_t k = 0; k < t->n_rule_ids; k++) {
        const fsm_rule *r = fsm_rule_by_id(b, t->rule_ids[k]);
        if (r != NULL)
            info->rules[info->rules_count++] = r->name;
    }
    qsort(info->rules, info->rules_count, sizeof(*info->rules), cmp_str_ptr);
    for (uint32_t p = 0; p < b->partitions; p++) {
        evbus_TargetPartition *tp = &info->partitions[info->partitions_count++];
        tp->partition = p;
        tp->cursor = fsm_target_cursor(b, t, p);
        tp->next_offset = b->parts[p].next_offset;
        tp->backlog = tp->next_offset > tp->cursor ? tp->next_offset - tp->cursor : 0;
    }
    return 0;
}

static void target_info_release(evbus_TargetInfo *info)
{
    free(info->rules);
    free(info->partitions);
}

static void handle_list_targets(api *a, net_conn *c, uint64_t id,
                                const evbus_ListTargetsByRuleRequest *r)
{
    const fsm_bus *b = NULL;
    const fsm_rule *rule = target_request_rule(a, c, id, r->bus, r->rule, 0, &b);
    if (rule == NULL)
        return;
    evbus_TargetInfo infos[FSM_MAX_TARGETS_PER_RULE];
    memset(infos, 0, sizeof(infos));
    int rv = 0;
    for (size_t i = 0; i < rule->n_targets && rv == 0; i++)
        rv = fill_target_info(b, rule->targets[i], &infos[i]);
    if (rv != 0) {
        send_error(a, c, id, rv, NULL);
    } else {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = id;
        f.which_body = evbus_Frame_list_targets_reply_tag;
        f.body.list_targets_reply.targets = infos;
        f.body.list_targets_reply.targets_count = (pb_size_t)rule->n_targets;
        send_frame(a, c, &f);
    }
    for (size_t i = 0; i < rule->n_targets; i++)
        target_info_release(&infos[i]);
}

static void handle_describe_target(api *a, net_conn *c, uint64_t id,
                                   const evbus_DescribeTargetRequest *r)
{
    char err[400];
    if (fsm_validate_target_name(r->target, err, sizeof(err)) != 0) {
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    const fsm_bus *b = request_bus(a, c, id, r->bus, 0);
    if (b == NULL)
        return;
    const fsm_target *t = fsm_target_find(b, r->target);
    if (t == NULL) {
        snprintf(err, sizeof(err), "target '%s' does not exist on bus '%s'", r->target, r->bus);
        send_error(a, c, id, EVBUS_ENOTFOUND, err);
        return;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_target_reply_tag;
    f.body.target_reply.has_target = true;
    if (fill_target_info(b, t, &f.body.target_reply.target) != 0)
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
    else
        send_frame(a, c, &f);
    target_info_release(&f.body.target_reply.target);
}

/* TestRule: a candidate pattern over stored events, on a worker with its own iterators. The
 * parsed pattern is immutable while the job runs (rules_pattern_match takes it const). */
typedef struct test_part {
    uint32_t partition;
    uint64_t from;     /* first offset to examine */
    uint64_t end;      /* examine below this (the partition's end, or its backfill hole) */
    uint64_t part_end; /* the partition's next offset */
    uint64_t next;     /* set by the worker */
} test_part;

typedef struct test_job {
    uv_work_t work;
    api *a;
    net_conn *c;
    uint64_t id;
    uint32_t bus_id;
    rules_pattern *pattern;
    test_part *parts;
    size_t n_parts;
    uint32_t max_events; /* per partition */
    size_t max_bytes;    /* of the matches, to fit the answer in a frame */
    evbus_LogEvent *matches;
    size_t n_matches;
    uint64_t scanned;
    int code;
    char err[256];
} test_job;

static void test_work(uv_work_t *w)
{
    test_job *j = w->data;
    size_t bytes = 0;
    int full = 0; /* stop examining: answer size or total budget reached */
    j->matches = calloc(TEST_MAX_MATCHES, sizeof(*j->matches));
    if (j->matches == NULL) {
        j->code = EVBUS_ENOMEM;
        return;
    }
    for (size_t i = 0; i < j->n_parts && j->code == 0; i++) {
        test_part *tp = &j->parts[i];
        tp->next = tp->from;
        if (full || tp->from >= tp->end)
            continue;
        uint8_t lo[KEYS_EVENT_LEN], hi[KEYS_EVENT_LEN];
        keys_event(lo, j->bus_id, tp->partition, tp->from);
        keys_event(hi, j->bus_id, tp->partition, tp->end);
        store_iter *it = store_iter_new(j->a->db, lo, sizeof(lo), hi, sizeof(hi));
        if (it == NULL) {
            j->code = EVBUS_ENOMEM;
            break;
        }
        uint32_t examined = 0;
        for (; store_iter_valid(it) && examined < j->max_events; store_iter_next(it)) {
            if (j->scanned >= TEST_MAX_TOTAL_EVENTS || j->n_matches >= TEST_MAX_MATCHES) {
                full = 1;
                break;
            }
            size_t klen, vlen;
            const uint8_t *k = store_iter_key(it, &klen);
            const uint8_t *v = store_iter_value(it, &vlen);
            uint32_t bid, part;
            uint64_t off;
            if (keys_event_parse(k, klen, &bid, &part, &off) != 0 || off != tp->next) {
                j->code = EVBUS_EIO;
                snprintf(j->err, sizeof(j->err), "partition %u: expected offset %llu, found %llu",
                         tp->partition, (unsigned long long)tp->next, (unsigned long long)off);
                break;
            }
            int matched = 0;
            if (rules_pattern_match(j->pattern, (const char *)v, vlen, &matched, NULL, 0) != 0) {
                j->code = EVBUS_EIO;
                snprintf(j->err, sizeof(j->err), "corrupt event at partition %u offset %llu",
                         tp->partition, (unsigned long long)off);
                break;
            }
            if (matched) {
                if (j->n_matches > 0 && bytes + vlen + 64 > j->max_bytes) {
                    full = 1; /* examined again by the next request */
                    break;
                }
                uint8_t *out;
                size_t out_len;
                if (envelope_with_offset(v, vlen, off, &out, &out_len) != 0) {
                    j->code = EVBUS_EIO;
                    snprintf(j->err, sizeof(j->err), "corrupt event at partition %u offset %llu",
                             tp->partition, (unsigned long long)off);
                    break;
                }
                evbus_LogEvent *m = &j->matches[j->n_matches++];
                m->partition = tp->partition;
                m->offset = off;
                m->event = (char *)out; /* NUL-terminated by envelope_with_offset */
                bytes += out_len + 64;
            }
            examined++;
            j->scanned++;
            tp->next = off + 1;
        }
        if (j->code == 0 && store_iter_status(it, j->err, sizeof(j->err)) != 0)
            j->code = EVBUS_EIO;
        store_iter_free(it);
    }
}

static void test_job_free(test_job *j)
{
    for (size_t i = 0; i < j->n_matches; i++)
        free(j->matches[i].event);
    free(j->matches);
    free(j->parts);
    rules_pattern_free(j->pattern);
    net_conn_unref(j->c);
    free(j);
}

static void test_after(uv_work_t *w, int status)
{
    test_job *j = w->data;
    api *a = j->a;
    if (status == UV_ECANCELED)
        j->code = EVBUS_ECANCELED;
    evbus_TestRuleProgress *progress = NULL;
    if (j->code == 0 && (progress = calloc(j->n_parts, sizeof(*progress))) == NULL)
        j->code = EVBUS_ENOMEM;
    if (j->code != 0) {
        send_error(a, j->c, j->id, j->code, j->err);
    } else {
        for (size_t i = 0; i < j->n_parts; i++) {
            progress[i].partition = j->parts[i].partition;
            progress[i].next_offset = j->parts[i].next;
            progress[i].end_offset = j->parts[i].part_end;
        }
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = j->id;
        f.which_body = evbus_Frame_test_rule_reply_tag;
        f.body.test_rule_reply.matches = j->matches;
        f.body.test_rule_reply.matches_count = (pb_size_t)j->n_matches;
        f.body.test_rule_reply.scanned = j->scanned;
        f.body.test_rule_reply.partitions = progress;
        f.body.test_rule_reply.partitions_count = (pb_size_t)j->n_parts;
        send_frame(a, j->c, &f);
    }
    free(progress);
    test_job_free(j);
    api_job_done(a);
}

static void handle_test_rule(api *a, net_conn *c, uint64_t id, const evbus_TestRuleRequest *r)
{
    char err[400];
    const fsm_bus *b = rule_request_bus(a, c, id, r->bus, NULL, RULE_NO_NAME);
    if (b == NULL)
        return;
    if (r->has_partition && r->partition >= b->partitions) {
        snprintf(err, sizeof(err), "partition %u does not exist (bus '%s' has %u partitions)",
                 r->partition, b->name, b->partitions);
        send_error(a, c, id, EVBUS_EINVAL, err);
        return;
    }
    test_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    if (check_pattern(a, c, id, r->pattern, &j->pattern) != 0) {
        free(j);
        return;
    }
    uint32_t first = r->has_partition ? r->partition : 0;
    j->n_parts = r->has_partition ? 1 : b->partitions;
    j->parts = calloc(j->n_parts, sizeof(*j->parts));
    if (j->parts == NULL) {
        rules_pattern_free(j->pattern);
        free(j);
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < j->n_parts; i++) {
        uint32_t pn = first + (uint32_t)i;
        const fsm_partition *p = &b->parts[pn];
        test_part *tp = &j->parts[i];
        tp->partition = pn;
        tp->from = r->from_offset < p->first_offset ? p->first_offset : r->from_offset;
        if (tp->from > p->next_offset)
            tp->from = p->next_offset;
        tp->end = p->next_offset;
        tp->part_end = p->next_offset;
        /* A node that installed a snapshot lacks [hole_from, hole_to) until backfilled. */
        if (fsm_in_hole(p, tp->from, tp->from + 1)) {
            snprintf(err, sizeof(err),
                     "partition %u offsets %llu..%llu are still being backfilled on node %u; ask "
                     "another node",
                     pn, (unsigned long long)p->hole_from, (unsigned long long)p->hole_to,
                     a->cfg->node_id);
            test_job_free(j);
            send_error(a, c, id, EVBUS_EBACKFILL, err);
            return;
        }
        if (p->hole_to > p->hole_from && tp->from < p->hole_from && tp->end > p->hole_from)
            tp->end = p->hole_from;
    }
    j->a = a;
    j->c = c;
    net_conn_ref(c);
    j->id = id;
    j->bus_id = b->bus_id;
    j->max_events = r->max_events ? r->max_events : TEST_DEFAULT_EVENTS;
    if (j->max_events > TEST_MAX_EVENTS)
        j->max_events = TEST_MAX_EVENTS;
    /* Leave room for the frame's own fields within the frame limit. */
    j->max_bytes = a->cfg->max_frame_bytes - (a->cfg->max_frame_bytes / 8);
    j->work.data = j;
    a->jobs++;
    if (uv_queue_work(a->loop, &j->work, test_work, test_after) != 0) {
        a->jobs--;
        test_job_free(j);
        send_error(a, c, id, EVBUS_EINTERNAL, "cannot queue rule test");
    }
}

/* ---------------------------------------------------------------- cluster */

static void fill_self_status(api *a, evbus_NodeStatus *ns)
{
    node_info self;
    node_self_info(a->node, &self);
    ns->node_id = self.id;
    ns->raft_addr = (char *)self.raft_addr;
    ns->client_addr = (char *)self.client_addr;
    ns->role = (char *)self.role;
    ns->voter = self.voter;
    ns->leader = self.leader;
    ns->applied_index = self.applied_index;
    ns->commit_index = self.commit_index;
    ns->term = self.term;
    ns->catching_up = self.catching_up;
}

static void handle_node_status(api *a, net_conn *c, uint64_t id)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_node_status_reply_tag;
    f.body.node_status_reply.has_node = true;
    fill_self_status(a, &f.body.node_status_reply.node);
    send_frame(a, c, &f);
}

#define MAX_MEMBERS 64
#define STATUS_PEER_TIMEOUT_MS 1000u

/* ClusterStatus: this node's view of the members, each member's own status asked over the
 * client protocol on a worker (a member that does not answer is "unavailable"). */
typedef struct status_job {
    uv_work_t work;
    api *a;
    net_conn *c;
    uint64_t id;
    size_t n;
    uint32_t self_id;
    struct {
        uint32_t id;
        char raft_addr[256];
        char client_addr[256];
        int voter;
        evbus_node_status *got; /* from the member, NULL when unreachable */
    } m[MAX_MEMBERS];
} status_job;

static void status_work(uv_work_t *w)
{
    status_job *j = w->data;
    for (size_t i = 0; i < j->n; i++) {
        if (j->m[i].id == j->self_id || j->m[i].client_addr[0] == '\0')
            continue;
        int rv;
        evbus_client *cl = peers_connect(j->m[i].client_addr, STATUS_PEER_TIMEOUT_MS, &rv);
        if (cl == NULL)
            continue;
        if (evbus_node_status_get(cl, &j->m[i].got) != 0)
            j->m[i].got = NULL;
        evbus_client_destroy(cl);
    }
}

static void status_after(uv_work_t *w, int status)
{
    (void)status;
    status_job *j = w->data;
    api *a = j->a;
    evbus_NodeStatus ns[MAX_MEMBERS];
    memset(ns, 0, sizeof(ns));
    for (size_t i = 0; i < j->n; i++) {
        evbus_NodeStatus *o = &ns[i];
        if (j->m[i].id == j->self_id) {
            fill_self_status(a, o);
        } else if (j->m[i].got) {
            evbus_node_status *g = j->m[i].got;
            o->node_id = g->node_id;
            o->role = g->role;
            o->leader = g->leader;
            o->applied_index = g->applied_index;
            o->commit_index = g->commit_index;
            o->catching_up = g->catching_up;
            o->term = g->term;
        } else {
            o->node_id = j->m[i].id;
            o->role = (char *)"unavailable";
        }
        /* Membership and addresses as the configuration says, whoever answered. */
        o->raft_addr = j->m[i].raft_addr;
        o->client_addr = j->m[i].client_addr;
        o->voter = j->m[i].voter;
        if (!j->m[i].voter && j->m[i].id != j->self_id)
            o->catching_up = true;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = j->id;
    f.which_body = evbus_Frame_cluster_status_reply_tag;
    evbus_ClusterStatusReply *r = &f.body.cluster_status_reply;
    uint32_t lid;
    const char *laddr;
    node_leader(a->node, &lid, &laddr);
    node_info self;
    node_self_info(a->node, &self);
    r->leader_id = lid;
    r->leader_addr = (char *)laddr;
    r->term = self.term;
    r->nodes = ns;
    r->nodes_count = (pb_size_t)j->n;
    send_frame(a, j->c, &f);
    for (size_t i = 0; i < j->n; i++)
        evbus_node_status_free(j->m[i].got);
    net_conn_unref(j->c);
    free(j);
    api_job_done(a);
}

static void handle_cluster_status(api *a, net_conn *c, uint64_t id)
{
    status_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    j->a = a;
    j->c = c;
    j->id = id;
    j->self_id = a->cfg->node_id;
    node_member m[MAX_MEMBERS];
    j->n = node_members(a->node, m, MAX_MEMBERS);
    int self_listed = 0;
    for (size_t i = 0; i < j->n; i++) {
        j->m[i].id = m[i].id;
        snprintf(j->m[i].raft_addr, sizeof(j->m[i].raft_addr), "%s", m[i].raft_addr);
        snprintf(j->m[i].client_addr, sizeof(j->m[i].client_addr), "%s", m[i].client_addr);
        j->m[i].voter = m[i].voter;
        if (m[i].id == j->self_id)
            self_listed = 1;
    }
    if (!self_listed && j->n < MAX_MEMBERS) {
        /* A joining node is not in its own configuration yet. */
        j->m[j->n].id = j->self_id;
        snprintf(j->m[j->n].raft_addr, sizeof(j->m[j->n].raft_addr), "%s", a->cfg->raft_listen);
        snprintf(j->m[j->n].client_addr, sizeof(j->m[j->n].client_addr), "%s", a->cfg->listen);
        j->n++;
    }
    j->work.data = j;
    net_conn_ref(c);
    a->jobs++;
    if (uv_queue_work(a->loop, &j->work, status_work, status_after) != 0) {
        a->jobs--;
        net_conn_unref(c);
        free(j);
        send_error(a, c, id, EVBUS_EINTERNAL, "cannot queue status request");
    }
}

typedef struct change_ctx {
    api *a;
    net_conn *c;
    uint64_t id;
} change_ctx;

static void change_done(void *data, int status, const char *msg)
{
    change_ctx *x = data;
    if (status != 0) {
        send_error(x->a, x->c, x->id, status, msg);
    } else {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = x->id;
        f.which_body = evbus_Frame_ok_tag;
        node_info self;
        node_self_info(x->a->node, &self);
        f.body.ok.commit_index = self.commit_index;
        send_frame(x->a, x->c, &f);
    }
    net_conn_unref(x->c);
    free(x);
}

static void handle_membership(api *a, net_conn *c, uint64_t id, const evbus_Frame *f)
{
    if (!check_writable(a, c, id))
        return;
    char err[300];
    change_ctx *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    x->a = a;
    x->c = c;
    x->id = id;
    int rv;
    err[0] = '\0';
    if (f->which_body == evbus_Frame_add_node_tag) {
        const evbus_AddNodeRequest *r = &f->body.add_node;
        char host[256];
        uint16_t port;
        if (r->node_id == 0 || r->raft_addr == NULL || r->client_addr == NULL ||
            util_parse_hostport(r->raft_addr, host, sizeof(host), &port) != 0 ||
            util_parse_hostport(r->client_addr, host, sizeof(host), &port) != 0) {
            snprintf(err, sizeof(err), "add-node needs an id >= 1 and two host:port addresses");
            rv = EVBUS_EINVAL;
        } else {
            rv = node_add_member(a->node, r->node_id, r->raft_addr, r->client_addr, change_done, x);
            if (rv == EVBUS_EEXIST)
                snprintf(err, sizeof(err), "node %u is already a member", r->node_id);
        }
    } else if (f->which_body == evbus_Frame_remove_node_tag) {
        rv = node_remove_member(a->node, f->body.remove_node.node_id, change_done, x);
        if (rv == EVBUS_ENOTFOUND)
            snprintf(err, sizeof(err), "node %u is not a member", f->body.remove_node.node_id);
    } else {
        rv = node_transfer_leadership(a->node, f->body.transfer_leader.node_id, change_done, x);
        if (rv == EVBUS_ENOTFOUND || rv == EVBUS_EINVAL)
            snprintf(err, sizeof(err), "node %u is not a voter other than the leader",
                     f->body.transfer_leader.node_id);
    }
    if (rv == EVBUS_EBUSY && err[0] == '\0')
        snprintf(err, sizeof(err), "another membership change is in progress; retry");
    if (rv != 0) {
        free(x);
        send_error(a, c, id, rv, err);
        return;
    }
    net_conn_ref(c);
}

/* Checksum of a bus as stored here, computed on a worker. */
typedef struct checksum_job {
    uv_work_t work;
    api *a;
    net_conn *c;
    uint64_t id;
    uint32_t bus_id;
    uint64_t applied;
    size_t n;
    evbus_PartitionChecksum *parts;
    int code;
    char err[256];
} checksum_job;

static void checksum_work(uv_work_t *w)
{
    checksum_job *j = w->data;
    for (size_t p = 0; p < j->n && j->code == 0; p++) {
        evbus_PartitionChecksum *pc = &j->parts[p];
        uint8_t lo[KEYS_EVENT_LEN], hi[KEYS_EVENT_LEN];
        keys_event(lo, j->bus_id, (uint32_t)p, pc->first_offset);
        keys_event(hi, j->bus_id, (uint32_t)p, pc->next_offset);
        store_iter *it = store_iter_new(j->a->db, lo, sizeof(lo), hi, sizeof(hi));
        uint64_t h = 1469598103934665603ull;
        uint64_t expect = pc->first_offset;
        for (; it && store_iter_valid(it); store_iter_next(it)) {
            size_t klen, vlen;
            const uint8_t *k = store_iter_key(it, &klen);
            const uint8_t *v = store_iter_value(it, &vlen);
            uint32_t bid, part;
            uint64_t off;
            if (keys_event_parse(k, klen, &bid, &part, &off) != 0 || off != expect) {
                j->code = EVBUS_EIO;
                snprintf(j->err, sizeof(j->err), "partition %zu: offset %llu missing", p,
                         (unsigned long long)expect);
                break;
            }
            for (int b = 0; b < 8; b++) {
                h ^= (uint8_t)(off >> (56 - 8 * b));
                h *= 1099511628211ull;
            }
            for (size_t i = 0; i < vlen; i++) {
                h ^= v[i];
                h *= 1099511628211ull;
            }
            expect++;
            pc->events++;
        }
        if (j->code == 0 && expect != pc->next_offset) {
            j->code = EVBUS_EIO;
            snprintf(j->err, sizeof(j->err), "partition %zu: offsets %llu..%llu missing", p,
                     (unsigned long long)expect, (unsigned long long)pc->next_offset);
        }
        store_iter_free(it);
        pc->checksum = h;
    }
}

static void checksum_after(uv_work_t *w, int status)
{
    (void)status;
    checksum_job *j = w->data;
    if (j->code != 0) {
        send_error(j->a, j->c, j->id, j->code, j->err);
    } else {
        evbus_Frame f = evbus_Frame_init_zero;
        f.id = j->id;
        f.which_body = evbus_Frame_checksum_reply_tag;
        f.body.checksum_reply.node_id = j->a->cfg->node_id;
        f.body.checksum_reply.applied_index = j->applied;
        f.body.checksum_reply.partitions = j->parts;
        f.body.checksum_reply.partitions_count = (pb_size_t)j->n;
        send_frame(j->a, j->c, &f);
    }
    net_conn_unref(j->c);
    api *a = j->a;
    free(j->parts);
    free(j);
    api_job_done(a);
}

static void handle_checksum(api *a, net_conn *c, uint64_t id, const evbus_ChecksumRequest *r)
{
    char err[400];
    const fsm_bus *b = request_bus(a, c, id, r->bus, 0);
    if (b == NULL)
        return;
    for (uint32_t p = 0; p < b->partitions; p++) {
        if (b->parts[p].hole_to > b->parts[p].hole_from) {
            snprintf(err, sizeof(err), "node %u is still backfilling partition %u", a->cfg->node_id,
                     p);
            send_error(a, c, id, EVBUS_EBACKFILL, err);
            return;
        }
    }
    checksum_job *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->parts = calloc(b->partitions, sizeof(*j->parts))) == NULL) {
        free(j);
        send_error(a, c, id, EVBUS_ENOMEM, NULL);
        return;
    }
    j->a = a;
    j->c = c;
    j->id = id;
    j->bus_id = b->bus_id;
    j->n = b->partitions;
    j->applied = a->fsm->applied_index;
    for (uint32_t p = 0; p < b->partitions; p++) {
        j->parts[p].partition = p;
        j->parts[p].first_offset = b->parts[p].first_offset;
        j->parts[p].next_offset = b->parts[p].next_offset;
    }
    j->work.data = j;
    net_conn_ref(c);
    a->jobs++;
    if (uv_queue_work(a->loop, &j->work, checksum_work, checksum_after) != 0) {
        a->jobs--;
        net_conn_unref(c);
        free(j->parts);
        free(j);
        send_error(a, c, id, EVBUS_EINTERNAL, "cannot queue checksum");
    }
}

/* ------------------------------------------------------------------ frames */

static void handle_hello(api *a, net_conn *c, uint64_t id, const evbus_Hello *h)
{
    if (h->protocol_version != PROTOCOL_VERSION) {
        char err[128];
        snprintf(err, sizeof(err), "protocol version %u is not supported (server speaks %d)",
                 h->protocol_version, PROTOCOL_VERSION);
        send_error(a, c, id, EVBUS_EVERSION, err);
        net_conn_close(c);
        return;
    }
    net_conn_set_data(c, (void *)(uintptr_t)PHASE_READY);
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = id;
    f.which_body = evbus_Frame_hello_reply_tag;
    evbus_HelloReply *r = &f.body.hello_reply;
    r->protocol_version = PROTOCOL_VERSION;
    r->server_version = (char *)SERVER_VERSION;
    r->node_id = a->cfg->node_id;
    const char *laddr;
    node_leader(a->node, &r->leader_id, &laddr);
    r->leader_addr = (char *)laddr;
    send_frame(a, c, &f);
    LOG_DEBUGF(MOD, "hello", "conn=%llu client=\"%s\"", (unsigned long long)net_conn_id(c),
               h->client_name ? h->client_name : "");
}

static void on_frame(void *arg, net_conn *c, const uint8_t *body, size_t len)
{
    api *a = arg;
    evbus_Frame f = evbus_Frame_init_zero;
    char err[256];
    if (wire_decode(evbus_Frame_fields, body, len, &f, err, sizeof(err)) != 0) {
        send_error(a, c, 0, EVBUS_EPROTO, err);
        if ((uintptr_t)net_conn_data(c) != PHASE_READY)
            net_conn_close(c);
        return;
    }
    uint64_t id = f.id;
    if ((uintptr_t)net_conn_data(c) != PHASE_READY) {
        if (f.which_body == evbus_Frame_hello_tag) {
            handle_hello(a, c, id, &f.body.hello);
        } else {
            send_error(a, c, id, EVBUS_EPROTO, "the first frame must be Hello");
            net_conn_close(c);
        }
        wire_release(evbus_Frame_fields, &f);
        return;
    }
    switch (f.which_body) {
    case evbus_Frame_put_events_tag: handle_put(a, c, id, &f.body.put_events); break;
    case evbus_Frame_read_log_tag: handle_read(a, c, id, &f.body.read_log); break;
    case evbus_Frame_create_bus_tag: handle_create_bus(a, c, id, &f.body.create_bus); break;
    case evbus_Frame_delete_bus_tag: handle_delete_bus(a, c, id, &f.body.delete_bus); break;
    case evbus_Frame_describe_bus_tag: handle_describe_bus(a, c, id, &f.body.describe_bus); break;
    case evbus_Frame_list_buses_tag: handle_list_buses(a, c, id); break;
    case evbus_Frame_cluster_status_tag: handle_cluster_status(a, c, id); break;
    case evbus_Frame_node_status_tag: handle_node_status(a, c, id); break;
    case evbus_Frame_add_node_tag:
    case evbus_Frame_remove_node_tag:
    case evbus_Frame_transfer_leader_tag: handle_membership(a, c, id, &f); break;
    case evbus_Frame_checksum_tag: handle_checksum(a, c, id, &f.body.checksum); break;
    case evbus_Frame_put_rule_tag: handle_put_rule(a, c, id, &f.body.put_rule); break;
    case evbus_Frame_delete_rule_tag:
        handle_rule_change(a, c, id, f.which_body, f.body.delete_rule.bus, f.body.delete_rule.name);
        break;
    case evbus_Frame_enable_rule_tag:
        handle_rule_change(a, c, id, f.which_body, f.body.enable_rule.bus, f.body.enable_rule.name);
        break;
    case evbus_Frame_disable_rule_tag:
        handle_rule_change(a, c, id, f.which_body, f.body.disable_rule.bus,
                           f.body.disable_rule.name);
        break;
    case evbus_Frame_list_rules_tag: handle_list_rules(a, c, id, &f.body.list_rules); break;
    case evbus_Frame_describe_rule_tag:
        handle_describe_rule(a, c, id, &f.body.describe_rule);
        break;
    case evbus_Frame_test_rule_tag: handle_test_rule(a, c, id, &f.body.test_rule); break;
    case evbus_Frame_put_targets_tag: handle_put_targets(a, c, id, &f.body.put_targets); break;
    case evbus_Frame_remove_targets_tag:
        handle_remove_targets(a, c, id, &f.body.remove_targets);
        break;
    case evbus_Frame_list_targets_by_rule_tag:
        handle_list_targets(a, c, id, &f.body.list_targets_by_rule);
        break;
    case evbus_Frame_describe_target_tag:
        handle_describe_target(a, c, id, &f.body.describe_target);
        break;
    case evbus_Frame_hello_tag:
        send_error(a, c, id, EVBUS_EPROTO, "Hello was already received on this connection");
        break;
    default: {
        snprintf(err, sizeof(err), "unknown or unexpected message type (%s)",
                 wire_body_name(f.which_body));
        send_error(a, c, id, EVBUS_EUNKNOWN_MSG, err);
        break;
    }
    }
    wire_release(evbus_Frame_fields, &f);
}

static void on_frame_error(void *arg, net_conn *c, int code, const char *msg)
{
    send_error(arg, c, 0, code, msg);
}

int api_start(uv_loop_t *loop, const config *cfg, fsm *f, node *n, store *db, api **out, char *err,
              size_t err_len)
{
    api *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return EVBUS_ENOMEM;
    a->loop = loop;
    a->cfg = cfg;
    a->fsm = f;
    a->node = n;
    a->db = db;
    net_handlers h = {.on_frame = on_frame, .on_frame_error = on_frame_error, .arg = a};
    int rv = net_server_start(loop, cfg->listen, cfg->max_frame_bytes, &h, &a->net, err, err_len);
    if (rv != 0) {
        free(a);
        return rv;
    }
    uv_timer_init(loop, &a->wait_timer);
    a->wait_timer.data = a;
    if (backfill_create(loop, f, n, db, cfg->node_id, &a->backfill) == 0) {
        f->on_holes = (void (*)(void *))backfill_kick;
        f->holes_arg = a->backfill;
        backfill_kick(a->backfill);
    }
    *out = a;
    return 0;
}

void api_stop_accepting(api *a)
{
    net_server_stop_listening(a->net);
}

typedef struct close_ctx {
    api *a;
    void (*cb)(void *);
    void *data;
} close_ctx;

static void api_free(close_ctx *x)
{
    free(x->a);
    if (x->cb)
        x->cb(x->data);
    free(x);
}

static void api_job_done(api *a)
{
    a->jobs--;
    if (a->jobs == 0 && a->closed)
        api_free(a->closed);
}

static void net_closed(void *data)
{
    close_ctx *x = data;
    x->a->net = NULL;
    /* Worker jobs still running point at the api: the last one frees it. */
    if (x->a->jobs > 0)
        x->a->closed = x;
    else
        api_free(x);
}

void api_force_close(api *a)
{
    if (a->net)
        net_server_force_close(a->net);
}

static void wait_timer_closed(uv_handle_t *h)
{
    close_ctx *x = h->data;
    net_server_close(x->a->net, net_closed, x);
}

static void backfill_closed(void *data)
{
    close_ctx *x = data;
    x->a->fsm->on_holes = NULL;
    x->a->wait_timer.data = x;
    uv_close((uv_handle_t *)&x->a->wait_timer, wait_timer_closed);
}

void api_close(api *a, void (*cb)(void *data), void *data)
{
    close_ctx *x = malloc(sizeof(*x));
    if (x == NULL)
        abort();
    *x = (close_ctx){a, cb, data};
    /* Reads still waiting for an index are answered now: the node is going away. */
    while (a->waits) {
        read_wait *w = a->waits;
        a->waits = w->next;
        send_error(a, w->c, w->id, EVBUS_EUNAVAIL, "node is stopping");
        net_conn_unref(w->c);
        free(w->req.bus);
        free(w);
    }
    uv_timer_stop(&a->wait_timer);
    if (a->backfill)
        backfill_close(a->backfill, backfill_closed, x);
    else
        backfill_closed(x);
}
