/* cluster/fsm: see fsm.h for the invariants this file keeps. */
#include "cluster/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.pb.h"
#include "common/log.h"
#include "common/util.h"
#include "evbus/errors.h"
#include "storage/keys.h"
#include "wire/wire.h"

#define MOD "fsm"

int fsm_validate_bus_name(const char *name, char *err, size_t err_len)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 256) {
        snprintf(err, err_len, "bus name must be 1 to 256 characters");
        return EVBUS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            snprintf(err, err_len, "bus name may contain only [A-Za-z0-9._-] (bad character at %zu)",
                     i);
            return EVBUS_EINVAL;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ buses */

static void bus_free(fsm_bus *b)
{
    if (b == NULL)
        return;
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

/* ------------------------------------------------------- persisted metadata */

static void put_bus_meta(fsm *f, const fsm_bus *b)
{
    evbuscmd_BusMeta m = evbuscmd_BusMeta_init_zero;
    m.name = b->name;
    m.bus_id = b->bus_id;
    m.partitions = b->partitions;
    m.created_index = b->created_index;
    m.created_time_ms = b->created_time_ms;
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
    if ((rv = load_buses(f, err, err_len)) != 0)
        return rv;
    LOG_INFOF(MOD, "state loaded", "applied_index=%llu buses=%zu",
              (unsigned long long)f->applied_index, f->n_buses);
    return 0;
}

void fsm_close(fsm *f)
{
    clear_buses(f);
    free(f->buses);
    f->buses = NULL;
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
    uint8_t key[1 + 256];
    size_t klen = keys_bus(key, b->name, strlen(b->name));
    store_batch_delete(f->batch, key, klen);
    bus_remove(f, b);
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
    if (p->partition >= b->partitions || p->envelope == NULL) {
        res->code = EVBUS_EINVAL;
        return;
    }
    fsm_partition *part = &b->parts[p->partition];
    uint8_t key[KEYS_EVENT_LEN];
    keys_event(key, b->bus_id, p->partition, part->next_offset);
    store_batch_put(f->batch, key, sizeof(key), p->envelope->bytes, p->envelope->size);
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
        default:
            res->code = EVBUS_EUNKNOWN_MSG;
            break;
        }
    }
    for (size_t d = 0; d < n_dirty; d++)
        put_partition_meta(f, dirty[d].bus, dirty[d].partition);
    free(dirty);
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
    size_t n_parts = 0;
    for (size_t i = 0; i < f->n_buses; i++)
        n_parts += f->buses[i]->partitions;
    s.buses = calloc(f->n_buses ? f->n_buses : 1, sizeof(*s.buses));
    s.partitions = calloc(n_parts ? n_parts : 1, sizeof(*s.partitions));
    int rv = EVBUS_ENOMEM;
    if (s.buses == NULL || s.partitions == NULL)
        goto out;
    for (size_t i = 0; i < f->n_buses; i++) {
        const fsm_bus *b = f->buses[i];
        evbuscmd_BusMeta *m = &s.buses[s.buses_count++];
        m->name = b->name;
        m->bus_id = b->bus_id;
        m->partitions = b->partitions;
        m->created_index = b->created_index;
        m->created_time_ms = b->created_time_ms;
        for (uint32_t p = 0; p < b->partitions; p++) {
            evbuscmd_PartitionMeta *pm = &s.partitions[s.partitions_count++];
            pm->bus_id = b->bus_id;
            pm->partition = p;
            pm->first_offset = b->parts[p].first_offset;
            pm->next_offset = b->parts[p].next_offset;
        }
    }
    if ((rv = wire_encode_body(evbuscmd_Snapshot_fields, &s, out, out_len)) != 0)
        goto out;
    /* Raft may drop log entries up to this snapshot: RocksDB must hold them durably first. */
    if ((rv = store_flush_wal(f->db, 1)) != 0) {
        free(*out);
        *out = NULL;
    }
out:
    free(s.buses);
    free(s.partitions);
    return rv;
}

int fsm_restore(fsm *f, const uint8_t *buf, size_t len)
{
    evbuscmd_Snapshot s = evbuscmd_Snapshot_init_zero;
    char err[256];
    int rv = wire_decode(evbuscmd_Snapshot_fields, buf, len, &s, err, sizeof(err));
    if (rv != 0) {
        LOG_ERRORF(MOD, "cannot decode snapshot", "err=\"%s\"", err);
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
    /* Installed from a leader: adopt its metadata. Event bodies in the gap are fetched by the
     * backfill of the cluster issue (#3); until then reads in the gap find nothing. */
    LOG_WARNF(MOD, "installing snapshot newer than local state", "snapshot_index=%llu applied=%llu",
              (unsigned long long)s.applied_index, (unsigned long long)f->applied_index);
    for (size_t i = 0; i < f->n_buses; i++) {
        uint8_t key[1 + 256];
        size_t klen = keys_bus(key, f->buses[i]->name, strlen(f->buses[i]->name));
        store_batch_delete(f->batch, key, klen);
    }
    clear_buses(f);
    rv = 0;
    for (pb_size_t i = 0; i < s.buses_count && rv == 0; i++) {
        const evbuscmd_BusMeta *m = &s.buses[i];
        fsm_bus *b;
        if (m->name == NULL || m->partitions == 0 || m->partitions > FSM_MAX_PARTITIONS ||
            (b = bus_new(m->name, m->bus_id, m->partitions)) == NULL) {
            rv = EVBUS_EPROTO;
            break;
        }
        b->created_index = m->created_index;
        b->created_time_ms = m->created_time_ms;
        if ((rv = bus_add(f, b)) != 0) {
            bus_free(b);
            break;
        }
    }
    for (pb_size_t i = 0; i < s.partitions_count && rv == 0; i++) {
        const evbuscmd_PartitionMeta *pm = &s.partitions[i];
        fsm_bus *b = (fsm_bus *)fsm_bus_by_id(f, pm->bus_id);
        if (b == NULL || pm->partition >= b->partitions)
            continue;
        b->parts[pm->partition].first_offset = pm->first_offset;
        b->parts[pm->partition].next_offset = pm->next_offset;
    }
    if (rv == 0) {
        for (size_t i = 0; i < f->n_buses; i++) {
            put_bus_meta(f, f->buses[i]);
            for (uint32_t p = 0; p < f->buses[i]->partitions; p++)
                put_partition_meta(f, f->buses[i], p);
        }
        f->next_bus_id = s.next_bus_id;
        put_u64(f, KEYS_META_NEXT_BUS_ID, f->next_bus_id);
        write_batch_or_die(f, s.applied_index);
    }
    wire_release(evbuscmd_Snapshot_fields, &s);
    return rv;
}
