/* cluster/node: see node.h for the design. The only file that calls raft_*. */
#include "cluster/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <raft.h>
#include <raft/uv.h>

#include "command.pb.h"
#include "common/log.h"
#include "config/config.h"
#include "wire/wire.h"
#include "common/util.h"
#include "evbus/errors.h"

#define MOD "cluster"

enum node_state { NODE_STARTING, NODE_RUNNING, NODE_DRAINING, NODE_CLOSING, NODE_CLOSED };

typedef struct waiter {
    node_submit_cb cb;
    void *data;
    size_t first_op;
    size_t n_ops;
} waiter;

typedef struct batch {
    struct raft_apply req;
    node *owner;
    util_buf ops; /* concatenated Command.ops fields */
    size_t n_ops;
    waiter *w;
    size_t n_w, cap_w;
    struct batch *next;
} batch;

struct node {
    uv_loop_t *loop;
    enum node_state state;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm raft_fsm;
    fsm *fsm;
    uint32_t id;
    char *raft_addr, *client_addr, *raft_dir;
    uint32_t max_entry_bytes;
    uint32_t snapshot_threshold, snapshot_trailing;

    uv_check_t check;
    uv_timer_t drain_timer;
    batch *open;
    batch *sealed_head, *sealed_tail;
    size_t queued_bytes;
    unsigned inflight;

    int was_leader;
    int writable;
    uint64_t barrier_term;
    struct raft_barrier barrier_req;
    int barrier_pending;

    void (*close_cb)(void *data);
    void *close_data;
    int handles_open;

    char *bootstrap;
    int join;
    fsm_params params;
    int registry_checked; /* registry/params proposed for this term */

    /* One membership change at a time (Raft allows one uncommitted configuration). */
    struct member_change *change;
};

typedef struct member_change {
    struct raft_change req;
    struct raft_transfer transfer;
    node *n;
    int kind; /* 'a' add, 'r' remove, 't' transfer */
    uint32_t id;
    char *raft_addr, *client_addr;
    node_change_cb cb;
    void *data;
} member_change;

/* ------------------------------------------------------------ FSM adapters */

static uint64_t current_index(void *arg)
{
    node *n = arg;
    return (uint64_t)raft_last_applied(&n->raft) + 1;
}

static int fsm_apply_cb(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    node *n = rf->data;
    const fsm_entry_result *r;
    int rv = fsm_apply(n->fsm, buf->base, buf->len, &r);
    *result = (void *)r;
    return rv;
}

static int fsm_snapshot_cb(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    node *n = rf->data;
    uint8_t *data;
    size_t len;
    int rv = fsm_snapshot(n->fsm, &data, &len);
    if (rv != 0) {
        LOG_ERRORF(MOD, "snapshot failed", "err=%s", evbus_strerror(rv));
        return RAFT_IOERR;
    }
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    void *copy = raft_malloc(len ? len : 1);
    if (b == NULL || copy == NULL) {
        raft_free(b);
        raft_free(copy);
        free(data);
        return RAFT_NOMEM;
    }
    memcpy(copy, data, len);
    free(data);
    b->base = copy;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    LOG_INFOF(MOD, "snapshot taken", "applied_index=%llu bytes=%zu",
              (unsigned long long)n->fsm->applied_index, len);
    return 0;
}

static int fsm_restore_cb(struct raft_fsm *rf, struct raft_buffer *buf)
{
    node *n = rf->data;
    int rv = fsm_restore(n->fsm, buf->base, buf->len);
    if (rv != 0)
        return RAFT_MALFORMED;
    /* The library hands us ownership of the snapshot buffer on success. */
    raft_free(buf->base);
    return 0;
}

/* ------------------------------------------------------------------ setup */

static void check_cb(uv_check_t *h);
static void drain_timer_cb(uv_timer_t *t);

int node_create(uv_loop_t *loop, const node_config *cfg, fsm *f, node **out, char *err,
                size_t err_len)
{
    node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return EVBUS_ENOMEM;
    n->loop = loop;
    n->fsm = f;
    n->id = cfg->id;
    n->raft_addr = strdup(cfg->raft_addr);
    n->client_addr = strdup(cfg->client_addr);
    size_t dlen = strlen(cfg->data_dir) + 8;
    n->raft_dir = malloc(dlen);
    if (n->raft_addr == NULL || n->client_addr == NULL || n->raft_dir == NULL)
        goto err_nomem;
    snprintf(n->raft_dir, dlen, "%s/raft", cfg->data_dir);
    n->bootstrap = strdup(cfg->bootstrap ? cfg->bootstrap : "");
    if (n->bootstrap == NULL)
        goto err_nomem;
    n->join = cfg->join;
    n->params = cfg->params;
    n->max_entry_bytes = cfg->max_entry_bytes;
    n->snapshot_threshold = cfg->snapshot_threshold;
    n->snapshot_trailing = cfg->snapshot_trailing;
    if (util_mkdir_p(n->raft_dir) != 0) {
        snprintf(err, err_len, "cannot create %s: %s", n->raft_dir, strerror(errno));
        goto err_free;
    }

    n->transport.version = 1; /* must be set by the caller */
    int rv = raft_uv_tcp_init(&n->transport, loop);
    if (rv != 0) {
        snprintf(err, err_len, "raft transport: %s", raft_strerror(rv));
        goto err_free;
    }
    rv = raft_uv_init(&n->io, loop, n->raft_dir, &n->transport);
    if (rv != 0) {
        snprintf(err, err_len, "raft io in %s: %s", n->raft_dir, n->io.errmsg);
        goto err_transport;
    }
    /* Segments close with a ~32 ms loop stall; larger segments close less often (DESIGN.md). */
    raft_uv_set_segment_size(&n->io, 16u << 20);

    n->raft_fsm.version = 1;
    n->raft_fsm.data = n;
    n->raft_fsm.apply = fsm_apply_cb;
    n->raft_fsm.snapshot = fsm_snapshot_cb;
    n->raft_fsm.restore = fsm_restore_cb;
    f->current_index = current_index;
    f->index_arg = n;

    rv = raft_init(&n->raft, &n->io, &n->raft_fsm, n->id, n->raft_addr);
    if (rv != 0) {
        snprintf(err, err_len, "raft init: %s", raft_errmsg(&n->raft));
        goto err_io;
    }
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 1000);
    raft_set_heartbeat_timeout(&n->raft, 100);
    raft_set_pre_vote(&n->raft, true);
    /* Explicit: the library's defaults disagree with its header (DESIGN.md). */
    raft_set_snapshot_threshold(&n->raft, n->snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, n->snapshot_trailing);

    uv_check_init(loop, &n->check);
    n->check.data = n;
    uv_timer_init(loop, &n->drain_timer);
    n->drain_timer.data = n;
    n->handles_open = 2;
    *out = n;
    return 0;

err_io:
    raft_uv_close(&n->io);
err_transport:
    raft_uv_tcp_close(&n->transport);
    goto err_free;
err_nomem:
    snprintf(err, err_len, "out of memory");
err_free:
    free(n->raft_addr);
    free(n->client_addr);
    free(n->raft_dir);
    free(n->bootstrap);
    free(n);
    return EVBUS_EIO;
}

int node_start(node *n, char *err, size_t err_len)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    if (n->bootstrap[0]) {
        config_member m[CONFIG_MAX_MEMBERS];
        int count = config_parse_members(n->bootstrap, m, CONFIG_MAX_MEMBERS, err, err_len);
        for (int i = 0; i < count && rv == 0; i++)
            rv = raft_configuration_add(&conf, m[i].id, m[i].raft_addr, RAFT_VOTER);
        if (count < 0)
            rv = RAFT_INVALID;
    } else if (!n->join) {
        rv = raft_configuration_add(&conf, n->id, n->raft_addr, RAFT_VOTER);
    }
    if (rv == 0 && !n->join) {
        rv = raft_bootstrap(&n->raft, &conf);
        if (rv == 0)
            LOG_INFOF(MOD, "bootstrapped a new cluster", "voters=%u raft_addr=%s", conf.n,
                      n->raft_addr);
        else if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0; /* existing data directory: restart from it */
    }
    raft_configuration_close(&conf);
    if (rv != 0) {
        snprintf(err, err_len, "raft bootstrap: %s", raft_errmsg(&n->raft));
        return EVBUS_EIO;
    }
    if (n->join)
        LOG_INFOF(MOD, "joining: waiting to be added by the leader", "raft_addr=%s", n->raft_addr);
    rv = raft_start(&n->raft);
    if (rv != 0) {
        snprintf(err, err_len, "raft start: %s", raft_errmsg(&n->raft));
        return EVBUS_EIO;
    }
    n->state = NODE_RUNNING;
    uv_check_start(&n->check, check_cb);
    LOG_INFOF(MOD, "raft started", "id=%u raft_addr=%s term=%llu", n->id, n->raft_addr,
              (unsigned long long)raft_current_term(&n->raft));
    return 0;
}

/* ----------------------------------------------------------- group commit */

static void batch_free(batch *b)
{
    util_buf_free(&b->ops);
    free(b->w);
    free(b);
}

static void batch_fail(batch *b, int status)
{
    for (size_t i = 0; i < b->n_w; i++)
        b->w[i].cb(b->w[i].data, status, NULL, 0, 0);
}

static void seal_open(node *n)
{
    batch *b = n->open;
    if (b == NULL || b->n_w == 0)
        return;
    n->open = NULL;
    if (n->sealed_tail)
        n->sealed_tail->next = b;
    else
        n->sealed_head = b;
    n->sealed_tail = b;
}

static int map_raft_status(int status)
{
    switch (status) {
    case 0: return 0;
    case RAFT_NOTLEADER: return EVBUS_ENOTLEADER;
    case RAFT_NOSPACE:
    case RAFT_IOERR: return EVBUS_EIO;
    case RAFT_NOMEM: return EVBUS_ENOMEM;
    default:
        /* RAFT_LEADERSHIPLOST, RAFT_SHUTDOWN, ...: the entry may or may not commit. */
        return EVBUS_EUNAVAIL;
    }
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    batch *b = req->data;
    node *n = b->owner;
    n->inflight--;
    const fsm_entry_result *r = result;
    int code = map_raft_status(status);
    if (code == 0 && (r == NULL || r->index != req->index))
        code = EVBUS_EINTERNAL;
    if (code == 0 && r->code != 0)
        code = r->code;
    if (code != 0) {
        LOG_WARNF(MOD, "entry not applied", "index=%llu raft_status=%d err=%s",
                  (unsigned long long)req->index, status, evbus_errname(code));
        batch_fail(b, code);
    } else {
        for (size_t i = 0; i < b->n_w; i++) {
            const waiter *w = &b->w[i];
            if (w->first_op + w->n_ops > r->n_ops)
                w->cb(w->data, EVBUS_EINTERNAL, NULL, 0, req->index);
            else
                w->cb(w->data, 0, r->ops + w->first_op, w->n_ops, req->index);
        }
    }
    batch_free(b);
}

/* Command header fields 1 (version = 1) and 2 (time_ms) are hand-encoded in propose() so the
 * batched ops bytes can follow without re-encoding them. */

static void propose(node *n, batch *b)
{
    uint8_t head[16];
    size_t hlen = 0;
    head[hlen++] = 0x08; /* field 1, varint */
    head[hlen++] = 0x01;
    head[hlen++] = 0x10; /* field 2, varint */
    hlen += util_put_varint(head + hlen, util_now_ms());
    struct raft_buffer buf;
    size_t payload = hlen + b->ops.len;
    buf.len = fsm_entry_size(payload);
    buf.base = raft_malloc(buf.len);
    if (buf.base == NULL) {
        n->queued_bytes -= b->ops.len;
        batch_fail(b, EVBUS_ENOMEM);
        batch_free(b);
        return;
    }
    uint8_t *p = buf.base;
    memcpy(p + FSM_ENTRY_HEADER, head, hlen);
    memcpy(p + FSM_ENTRY_HEADER + hlen, b->ops.data, b->ops.len);
    fsm_entry_frame(p, payload);
    n->queued_bytes -= b->ops.len;
    b->req.data = b;
    int rv = raft_apply(&n->raft, &b->req, &buf, 1, apply_cb);
    if (rv != 0) {
        /* 0.22.1 refuses NOTLEADER and NOSPACE before taking the buffer; on other failures it
         * has appended and discarded it, freeing it itself. */
        if (rv == RAFT_NOTLEADER || rv == RAFT_NOSPACE)
            raft_free(buf.base);
        LOG_WARNF(MOD, "raft_apply failed", "rv=%d err=\"%s\" msg=\"%s\"", rv, raft_strerror(rv),
                  raft_errmsg(&n->raft));
        batch_fail(b, map_raft_status(rv));
        batch_free(b);
        return;
    }
    n->inflight++;
}

static void flush(node *n)
{
    seal_open(n);
    while (n->sealed_head && n->inflight < NODE_MAX_INFLIGHT) {
        batch *b = n->sealed_head;
        n->sealed_head = b->next;
        if (n->sealed_head == NULL)
            n->sealed_tail = NULL;
        b->next = NULL;
        if (!n->writable) {
            n->queued_bytes -= b->ops.len;
            batch_fail(b, EVBUS_ENOTLEADER);
            batch_free(b);
            continue;
        }
        propose(n, b);
    }
}

int node_submit(node *n, const uint8_t *ops, size_t len, size_t n_ops, node_submit_cb cb,
                void *data)
{
    if (n->state != NODE_RUNNING)
        return EVBUS_EUNAVAIL;
    if (!n->writable)
        return EVBUS_ENOTLEADER;
    if (n->queued_bytes + len > NODE_MAX_QUEUED_BYTES)
        return EVBUS_EBUSY;
    if (n->open && n->open->n_w > 0 && n->open->ops.len + len > n->max_entry_bytes)
        seal_open(n);
    if (n->open == NULL) {
        n->open = calloc(1, sizeof(*n->open));
        if (n->open == NULL)
            return EVBUS_ENOMEM;
        n->open->owner = n;
    }
    batch *b = n->open;
    if (b->n_w == b->cap_w) {
        size_t cap = b->cap_w ? b->cap_w * 2 : 8;
        waiter *nw = realloc(b->w, cap * sizeof(*nw));
        if (nw == NULL)
            return EVBUS_ENOMEM;
        b->w = nw;
        b->cap_w = cap;
    }
    if (util_buf_append(&b->ops, ops, len) != 0) {
        if (b->n_w == 0) {
            batch_free(b);
            n->open = NULL;
        }
        return EVBUS_ENOMEM;
    }
    b->w[b->n_w++] = (waiter){cb, data, b->n_ops, n_ops};
    b->n_ops += n_ops;
    n->queued_bytes += len;
    if (b->ops.len >= n->max_entry_bytes)
        seal_open(n);
    return 0;
}

/* ---------------------------------------------------------- leadership */

static void registry_cb(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                        uint64_t index)
{
    (void)data;
    (void)ops;
    (void)n_ops;
    if (status != 0)
        LOG_WARNF(MOD, "registry update not committed", "err=%s index=%llu", evbus_errname(status),
                  (unsigned long long)index);
}

static int append_op(util_buf *out, const evbuscmd_Op *op)
{
    uint8_t *body;
    size_t len;
    int rv = wire_encode_body(evbuscmd_Op_fields, op, &body, &len);
    if (rv != 0)
        return rv;
    uint8_t head[11];
    size_t h = 0;
    head[h++] = (3 << 3) | 2; /* Command.ops: field 3, length-delimited */
    h += util_put_varint(head + h, len);
    if ((rv = util_buf_append(out, head, h)) == 0)
        rv = util_buf_append(out, body, len);
    free(body);
    return rv;
}

int node_encode_op(util_buf *out, const void *op)
{
    return append_op(out, op);
}

/* A new leader makes sure the replicated registry knows the client address of every member it
 * can name (itself, the bootstrap list) and that the state machine runs with its parameters. */
static void leader_housekeeping(node *n)
{
    util_buf ops = {0};
    size_t n_ops = 0;
    config_member m[CONFIG_MAX_MEMBERS];
    char err[256];
    int count = 0;
    if (n->bootstrap[0])
        count = config_parse_members(n->bootstrap, m, CONFIG_MAX_MEMBERS, err, sizeof(err));
    if (count <= 0) {
        count = 1;
        m[0].id = n->id;
        snprintf(m[0].raft_addr, sizeof(m[0].raft_addr), "%s", n->raft_addr);
        snprintf(m[0].client_addr, sizeof(m[0].client_addr), "%s", n->client_addr);
    }
    const struct raft_configuration *conf = &n->raft.configuration;
    for (int i = 0; i < count; i++) {
        int member = 0;
        for (unsigned j = 0; j < conf->n; j++)
            if (conf->servers[j].id == m[i].id)
                member = 1;
        if (!member || fsm_node_find(n->fsm, m[i].id) != NULL)
            continue;
        evbuscmd_Op op = evbuscmd_Op_init_zero;
        op.which_op = evbuscmd_Op_put_node_tag;
        op.op.put_node.node_id = m[i].id;
        op.op.put_node.raft_addr = m[i].raft_addr;
        op.op.put_node.client_addr = m[i].client_addr;
        if (append_op(&ops, &op) == 0)
            n_ops++;
    }
    const fsm_params *cur = &n->fsm->params;
    if (cur->dedup_window != n->params.dedup_window ||
        cur->dedup_max_producers != n->params.dedup_max_producers ||
        cur->dedup_ttl_ms != n->params.dedup_ttl_ms ||
        cur->max_rules_per_bus != n->params.max_rules_per_bus ||
        cur->max_pattern_bytes != n->params.max_pattern_bytes) {
        evbuscmd_Op op = evbuscmd_Op_init_zero;
        op.which_op = evbuscmd_Op_set_params_tag;
        op.op.set_params.dedup_window = n->params.dedup_window;
        op.op.set_params.dedup_max_producers = n->params.dedup_max_producers;
        op.op.set_params.dedup_ttl_ms = n->params.dedup_ttl_ms;
        op.op.set_params.max_rules_per_bus = n->params.max_rules_per_bus;
        op.op.set_params.max_pattern_bytes = n->params.max_pattern_bytes;
        if (append_op(&ops, &op) == 0)
            n_ops++;
    }
    if (n_ops > 0 && node_submit(n, ops.data, ops.len, n_ops, registry_cb, NULL) == 0)
        LOG_INFOF(MOD, "leader housekeeping proposed", "ops=%zu", n_ops);
    util_buf_free(&ops);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    node *n = req->data;
    n->barrier_pending = 0;
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        raft_current_term(&n->raft) == n->barrier_term) {
        n->writable = 1;
        LOG_INFOF(MOD, "leader ready for writes", "term=%llu applied_index=%llu",
                  (unsigned long long)n->barrier_term,
                  (unsigned long long)raft_last_applied(&n->raft));
        leader_housekeeping(n);
    }
}

static void track_leadership(node *n)
{
    int leader = raft_state(&n->raft) == RAFT_LEADER;
    uint64_t term = raft_current_term(&n->raft);
    if (leader && (!n->was_leader || term != n->barrier_term) && !n->barrier_pending) {
        n->writable = 0;
        n->barrier_req.data = n;
        if (raft_barrier(&n->raft, &n->barrier_req, barrier_cb) == 0) {
            /* Only once the barrier is in: a failed call is retried at the next loop turn. */
            n->barrier_term = term;
            n->barrier_pending = 1;
            LOG_INFOF(MOD, "became leader", "term=%llu", (unsigned long long)term);
        } else {
            leader = 0; /* not ready: try again next turn */
        }
    } else if (!leader && n->was_leader) {
        n->writable = 0;
        LOG_INFOF(MOD, "lost leadership", "term=%llu", (unsigned long long)term);
    }
    n->was_leader = leader;
}

static void check_cb(uv_check_t *h)
{
    node *n = h->data;
    if (n->state == NODE_RUNNING || n->state == NODE_DRAINING)
        track_leadership(n);
    if (n->state == NODE_RUNNING || n->state == NODE_DRAINING)
        flush(n);
    if (n->state == NODE_DRAINING && n->inflight == 0 && n->sealed_head == NULL && n->open == NULL)
        uv_timer_start(&n->drain_timer, drain_timer_cb, 0, 0);
}

uint32_t node_self_id(const node *n)
{
    return n->id;
}

int node_is_writable(const node *n)
{
    return n->state == NODE_RUNNING && n->writable;
}

void node_leader(const node *n, uint32_t *id, const char **client_addr)
{
    raft_id lid = 0;
    const char *addr = NULL;
    raft_leader((struct raft *)&n->raft, &lid, &addr);
    *id = (uint32_t)lid;
    const fsm_node *reg = lid ? fsm_node_find(n->fsm, (uint32_t)lid) : NULL;
    if (lid == n->id)
        *client_addr = n->client_addr;
    else
        *client_addr = reg && reg->client_addr ? reg->client_addr : "";
}

void node_self_info(const node *n, node_info *out)
{
    struct raft *r = (struct raft *)&n->raft;
    memset(out, 0, sizeof(*out));
    out->id = n->id;
    out->raft_addr = n->raft_addr;
    out->client_addr = n->client_addr;
    int st = raft_state(r);
    out->role = st == RAFT_LEADER      ? "leader"
                : st == RAFT_CANDIDATE ? "candidate"
                : st == RAFT_FOLLOWER  ? "follower"
                                       : "unavailable";
    out->voter = 0;
    for (unsigned i = 0; i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == n->id)
            out->voter = r->configuration.servers[i].role == RAFT_VOTER;
    out->leader = st == RAFT_LEADER;
    out->catching_up = node_catching_up(n);
    out->applied_index = raft_last_applied(r);
    out->commit_index = raft_commit_index(r);
    out->term = raft_current_term(r);
    const char *a;
    node_leader(n, &out->leader_id, &a);
}

/* --------------------------------------------------------------- closing */

static void handle_closed(uv_handle_t *h)
{
    node *n = h->data;
    if (--n->handles_open > 0)
        return;
    if (n->close_cb)
        n->close_cb(n->close_data);
}

void node_destroy(node *n)
{
    if (n == NULL)
        return;
    free(n->raft_addr);
    free(n->client_addr);
    free(n->raft_dir);
    free(n->bootstrap);
    free(n);
}

static void raft_closed(struct raft *r)
{
    node *n = r->data;
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    n->state = NODE_CLOSED;
    LOG_INFOF(MOD, "raft closed", "%s", "");
    uv_close((uv_handle_t *)&n->check, handle_closed);
    uv_close((uv_handle_t *)&n->drain_timer, handle_closed);
}

static void do_close(node *n)
{
    if (n->state == NODE_CLOSING || n->state == NODE_CLOSED)
        return;
    n->state = NODE_CLOSING;
    uv_check_stop(&n->check);
    uv_timer_stop(&n->drain_timer);
    /* Whatever is still queued never reached Raft: tell its waiters. */
    seal_open(n);
    while (n->sealed_head) {
        batch *b = n->sealed_head;
        n->sealed_head = b->next;
        batch_fail(b, EVBUS_EUNAVAIL);
        batch_free(b);
    }
    n->sealed_tail = NULL;
    n->writable = 0;
    /* In-flight raft_apply callbacks fire with RAFT_SHUTDOWN inside raft_close. */
    raft_close(&n->raft, raft_closed);
}

static void drain_timer_cb(uv_timer_t *t)
{
    do_close(t->data);
}

void node_close(node *n, uint32_t drain_ms, void (*cb)(void *data), void *data)
{
    n->close_cb = cb;
    n->close_data = data;
    if (n->state == NODE_STARTING) {
        do_close(n);
        return;
    }
    if (n->state != NODE_RUNNING)
        return;
    n->state = NODE_DRAINING;
    LOG_INFOF(MOD, "draining", "inflight=%u", n->inflight);
    uv_timer_start(&n->drain_timer, drain_timer_cb, drain_ms, 0);
}

/* -------------------------------------------------------------- membership */

int node_catching_up(const node *n)
{
    if (n->fsm->n_holes > 0)
        return 1;
    const struct raft_configuration *conf = &n->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == n->id)
            return conf->servers[i].role != RAFT_VOTER;
    return 1; /* not (yet) in the configuration: joining */
}

size_t node_members(const node *n, node_member *out, size_t max)
{
    const struct raft_configuration *conf = &n->raft.configuration;
    size_t k = 0;
    for (unsigned i = 0; i < conf->n && k < max; i++) {
        const struct raft_server *s = &conf->servers[i];
        const fsm_node *reg = fsm_node_find(n->fsm, (uint32_t)s->id);
        out[k].id = (uint32_t)s->id;
        out[k].raft_addr = s->address;
        out[k].client_addr = s->id == n->id            ? n->client_addr
                             : reg && reg->client_addr ? reg->client_addr
                                                       : "";
        out[k].voter = s->role == RAFT_VOTER;
        out[k].role = s->role == RAFT_VOTER     ? "voter"
                      : s->role == RAFT_STANDBY ? "standby"
                                                : "spare";
        k++;
    }
    return k;
}

static int in_config(const node *n, uint32_t id)
{
    const struct raft_configuration *conf = &n->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return 1;
    return 0;
}

static int map_change_error(int rv)
{
    switch (rv) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST: return EVBUS_ENOTLEADER;
    case RAFT_CANTCHANGE: return EVBUS_EBUSY;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return EVBUS_EEXIST;
    case RAFT_BADID:
    case RAFT_NOTFOUND: return EVBUS_ENOTFOUND;
    case RAFT_BADROLE: return EVBUS_EINVAL;
    default: return EVBUS_EUNAVAIL;
    }
}

static void change_finish(member_change *c, int status, const char *msg)
{
    node *n = c->n;
    if (n->change == c)
        n->change = NULL;
    char buf[256];
    if (status != 0 && msg == NULL) {
        snprintf(buf, sizeof(buf), "membership change of node %u failed: %s", c->id,
                 evbus_strerror(status));
        msg = buf;
    }
    LOG_INFOF(MOD, "membership change done", "kind=%c node=%u status=%s", c->kind, c->id,
              evbus_errname(status));
    c->cb(c->data, status, msg);
    free(c->raft_addr);
    free(c->client_addr);
    free(c);
}

static void assign_cb(struct raft_change *req, int status)
{
    member_change *c = req->data;
    change_finish(c, status ? map_change_error(status) : 0, status ? raft_strerror(status) : NULL);
}

static void registry_added_cb(void *data, int status, const fsm_op_result *ops, size_t n_ops,
                              uint64_t index)
{
    (void)index;
    member_change *c = data;
    if (status == 0 && n_ops == 1 && ops[0].code != 0)
        status = ops[0].code;
    if (status != 0) {
        change_finish(c, status, "node added as spare, but its address was not recorded");
        return;
    }
    /* Promotion to voter: the library first catches the node up, then commits the change. */
    c->req.data = c;
    int rv = raft_assign(&c->n->raft, &c->req, c->id, RAFT_VOTER, assign_cb);
    if (rv != 0)
        change_finish(c, map_change_error(rv), raft_errmsg(&c->n->raft));
}

static int submit_registry(member_change *c, int put)
{
    util_buf ops = {0};
    evbuscmd_Op op = evbuscmd_Op_init_zero;
    if (put) {
        op.which_op = evbuscmd_Op_put_node_tag;
        op.op.put_node.node_id = c->id;
        op.op.put_node.raft_addr = c->raft_addr;
        op.op.put_node.client_addr = c->client_addr;
    } else {
        op.which_op = evbuscmd_Op_remove_node_tag;
        op.op.remove_node.node_id = c->id;
    }
    int rv = append_op(&ops, &op);
    if (rv == 0)
        rv = node_submit(c->n, ops.data, ops.len, 1, put ? registry_added_cb : registry_cb,
                         put ? c : NULL);
    util_buf_free(&ops);
    return rv;
}

static void add_cb(struct raft_change *req, int status)
{
    member_change *c = req->data;
    if (status != 0) {
        change_finish(c, map_change_error(status), raft_strerror(status));
        return;
    }
    int rv = submit_registry(c, 1);
    if (rv != 0)
        change_finish(c, rv, "node added as spare, but its address could not be recorded");
}

static member_change *change_new(node *n, int kind, uint32_t id, node_change_cb cb, void *data)
{
    member_change *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->n = n;
    c->kind = kind;
    c->id = id;
    c->cb = cb;
    c->data = data;
    c->req.data = c;
    c->transfer.data = c;
    return c;
}

int node_add_member(node *n, uint32_t id, const char *raft_addr, const char *client_addr,
                    node_change_cb cb, void *data)
{
    if (!node_is_writable(n))
        return EVBUS_ENOTLEADER;
    if (n->change != NULL)
        return EVBUS_EBUSY;
    if (id == 0)
        return EVBUS_EINVAL;
    if (in_config(n, id))
        return EVBUS_EEXIST;
    member_change *c = change_new(n, 'a', id, cb, data);
    if (c == NULL)
        return EVBUS_ENOMEM;
    c->raft_addr = strdup(raft_addr);
    c->client_addr = strdup(client_addr);
    int rv = raft_add(&n->raft, &c->req, id, raft_addr, add_cb);
    if (rv != 0) {
        free(c->raft_addr);
        free(c->client_addr);
        free(c);
        return map_change_error(rv);
    }
    n->change = c;
    LOG_INFOF(MOD, "adding node", "node=%u raft_addr=%s client_addr=%s", id, raft_addr,
              client_addr);
    return 0;
}

static void remove_cb(struct raft_change *req, int status)
{
    member_change *c = req->data;
    if (status != 0) {
        change_finish(c, map_change_error(status), raft_strerror(status));
        return;
    }
    /* The registry entry goes too; when we removed ourselves we are no longer leader and the
     * next leader's log still has it, which only costs a stale address. */
    if (node_is_writable(c->n))
        submit_registry(c, 0);
    change_finish(c, 0, NULL);
}

int node_remove_member(node *n, uint32_t id, node_change_cb cb, void *data)
{
    if (!node_is_writable(n))
        return EVBUS_ENOTLEADER;
    if (n->change != NULL)
        return EVBUS_EBUSY;
    if (!in_config(n, id))
        return EVBUS_ENOTFOUND;
    member_change *c = change_new(n, 'r', id, cb, data);
    if (c == NULL)
        return EVBUS_ENOMEM;
    int rv = raft_remove(&n->raft, &c->req, id, remove_cb);
    if (rv != 0) {
        free(c);
        return map_change_error(rv);
    }
    n->change = c;
    LOG_INFOF(MOD, "removing node", "node=%u", id);
    return 0;
}

static void transfer_cb(struct raft_transfer *req)
{
    member_change *c = req->data;
    /* Writes stopped for the transfer; if we are still leader, a fresh barrier reopens them. */
    c->n->was_leader = 0;
    raft_id lid = 0;
    const char *addr;
    raft_leader(&c->n->raft, &lid, &addr);
    if (c->id != 0 && lid != c->id)
        change_finish(c, EVBUS_ETIMEDOUT, "leadership did not move to the requested node");
    else if (lid == c->n->id)
        change_finish(c, EVBUS_ETIMEDOUT, "leadership did not move");
    else
        change_finish(c, 0, NULL);
}

int node_transfer_leadership(node *n, uint32_t id, node_change_cb cb, void *data)
{
    if (!node_is_writable(n))
        return EVBUS_ENOTLEADER;
    if (n->change != NULL)
        return EVBUS_EBUSY;
    if (id != 0 && !in_config(n, id))
        return EVBUS_ENOTFOUND;
    member_change *c = change_new(n, 't', id, cb, data);
    if (c == NULL)
        return EVBUS_ENOMEM;
    int rv = raft_transfer(&n->raft, &c->transfer, id, transfer_cb);
    if (rv != 0) {
        free(c);
        return rv == RAFT_BADID ? EVBUS_EINVAL : map_change_error(rv);
    }
    n->change = c;
    n->writable = 0; /* stop taking writes while leadership moves */
    LOG_INFOF(MOD, "transferring leadership", "to=%u", id);
    return 0;
}
