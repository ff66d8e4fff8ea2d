/*
 * server/main: evbusd. Wires the modules together and owns the ordered start
 * and stop; the only module that sees all of them.
 *
 * Start: config -> data dir -> RocksDB -> state machine (loads metadata) ->
 * Raft node (bootstrap on first start) -> client listener.
 * Stop (SIGINT/SIGTERM): stop accepting connections -> drain the node (queued
 * publishes are proposed, in-flight entries finish, bounded) -> close Raft ->
 * close connections after their last answers -> loop ends -> state machine ->
 * RocksDB. A second signal during the drain skips to closing.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "api/api.h"
#include "cluster/fsm.h"
#include "cluster/node.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "evbus/errors.h"
#include "storage/store.h"

#define MOD "server"
#define DRAIN_MS 5000u

extern char **environ;

typedef struct server {
    uv_loop_t loop;
    config cfg;
    store *db;
    fsm fsm;
    node *node;
    api *api;
    uv_signal_t sigint, sigterm;
    int stopping;
    int exit_code;
} server;

static void api_closed(void *data)
{
    server *s = data;
    s->api = NULL;
    /* Handlers may read the node until the api is gone: free it only now. */
    node_destroy(s->node);
    s->node = NULL;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void node_closed(void *data)
{
    server *s = data;
    if (s->api)
        api_close(s->api, api_closed, s);
    else
        api_closed(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (s->stopping) {
        LOG_WARNF(MOD, "second signal: closing connections without waiting", "signal=%d", signum);
        if (s->api)
            api_force_close(s->api);
        return;
    }
    s->stopping = 1;
    LOG_INFOF(MOD, "stopping", "signal=%d", signum);
    if (s->api)
        api_stop_accepting(s->api);
    node_close(s->node, DRAIN_MS, node_closed, s);
}

/*
 * A data directory belongs to one node of one cluster. The first start records the node id and
 * the bootstrap list; a later start with another node id or another bootstrap list (another
 * cluster) is refused, since joining foreign Raft and RocksDB state would corrupt both.
 */
static int check_identity(const config *cfg, store *db, char *err, size_t err_len)
{
    char idbuf[16];
    snprintf(idbuf, sizeof(idbuf), "%u", cfg->node_id);
    const char *want_boot = cfg->bootstrap;
    char *val;
    size_t vlen;
    int rv = store_get(db, "Mnode_id", 8, &val, &vlen);
    if (rv == 0) {
        int same = strcmp(val, idbuf) == 0;
        if (!same)
            snprintf(err, err_len, "data directory %.300s belongs to node %.20s, not node %u",
                     cfg->data_dir, val, cfg->node_id);
        free(val);
        if (!same)
            return EVBUS_EINVAL;
        if (want_boot[0] && store_get(db, "Mbootstrap", 10, &val, &vlen) == 0) {
            same = val[0] == '\0' || strcmp(val, want_boot) == 0;
            if (!same)
                snprintf(err, err_len,
                         "data directory %.300s was created for another cluster (bootstrap %.400s)",
                         cfg->data_dir, val);
            free(val);
            if (!same)
                return EVBUS_EINVAL;
        }
        return 0;
    }
    if (rv != EVBUS_ENOTFOUND) {
        snprintf(err, err_len, "cannot read the data directory's identity");
        return rv;
    }
    store_batch *b = store_batch_new();
    store_batch_put(b, "Mnode_id", 8, idbuf, strlen(idbuf));
    store_batch_put(b, "Mbootstrap", 10, want_boot, strlen(want_boot));
    rv = store_write(db, b, err, err_len);
    store_batch_free(b);
    return rv;
}

int main(int argc, char **argv)
{
    static server s;
    char err[1024] = "";
    int rv = config_parse(&s.cfg, argc, argv, environ, err, sizeof(err));
    if (rv == 1)
        return 0;
    if (rv != 0) {
        fprintf(stderr, "evbusd: %s\n", err);
        return 2;
    }
    log_set_level(s.cfg.log_level);
    log_set_node(s.cfg.node_id);
    signal(SIGPIPE, SIG_IGN);

    if (util_mkdir_p(s.cfg.data_dir) != 0) {
        fprintf(stderr, "evbusd: cannot create data directory %s: %s\n", s.cfg.data_dir,
                strerror(errno));
        return 1;
    }
    char path[1100];
    snprintf(path, sizeof(path), "%s/rocksdb", s.cfg.data_dir);
    if (store_open(path, &s.db, err, sizeof(err)) != 0) {
        fprintf(stderr, "evbusd: cannot open %s: %s\n", path, err);
        return 1;
    }
    if (check_identity(&s.cfg, s.db, err, sizeof(err)) != 0) {
        fprintf(stderr, "evbusd: refusing to start: %s\n", err);
        s.exit_code = 1;
        goto out_store;
    }
    if (fsm_init(&s.fsm, s.db, err, sizeof(err)) != 0) {
        fprintf(stderr, "evbusd: cannot load state (corrupt data directory?): %s\n", err);
        s.exit_code = 1;
        goto out_store;
    }
    uv_loop_init(&s.loop);
    node_config nc = {
        .id = s.cfg.node_id,
        .raft_addr = s.cfg.raft_listen,
        .client_addr = s.cfg.listen,
        .data_dir = s.cfg.data_dir,
        .max_entry_bytes = s.cfg.max_entry_bytes,
        .snapshot_threshold = s.cfg.snapshot_threshold,
        .snapshot_trailing = s.cfg.snapshot_trailing,
        .bootstrap = s.cfg.bootstrap,
        .join = s.cfg.join,
        .params = {.dedup_window = s.cfg.dedup_window,
                   .dedup_max_producers = s.cfg.dedup_max_producers,
                   .dedup_ttl_ms = (uint64_t)s.cfg.dedup_ttl_s * 1000u,
                   .max_rules_per_bus = s.cfg.max_rules_per_bus,
                   .max_pattern_bytes = s.cfg.max_pattern_bytes},
    };
    if (node_create(&s.loop, &nc, &s.fsm, &s.node, err, sizeof(err)) != 0 ||
        node_start(s.node, err, sizeof(err)) != 0) {
        fprintf(stderr, "evbusd: %s\n", err);
        s.exit_code = 1;
        if (s.node)
            node_close(s.node, 0, NULL, NULL);
        uv_run(&s.loop, UV_RUN_DEFAULT);
        node_destroy(s.node);
        goto out_loop;
    }
    if (api_start(&s.loop, &s.cfg, &s.fsm, s.node, s.db, &s.api, err, sizeof(err)) != 0) {
        fprintf(stderr, "evbusd: %s\n", err);
        s.exit_code = 1;
        s.stopping = 1;
        node_close(s.node, 0, node_closed, &s);
    }
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    if (s.api) {
        LOG_INFOF(MOD, "evbusd ready", "node_id=%u listen=%s raft_listen=%s data_dir=%s",
                  s.cfg.node_id, s.cfg.listen, s.cfg.raft_listen, s.cfg.data_dir);
    }
    uv_run(&s.loop, UV_RUN_DEFAULT);
out_loop:
    if (uv_loop_close(&s.loop) != 0)
        LOG_WARNF(MOD, "loop closed with handles still open", "%s", "");
    fsm_close(&s.fsm);
out_store:
    store_close(s.db);
    LOG_INFOF(MOD, "stopped", "exit_code=%d", s.exit_code);
    return s.exit_code ? s.exit_code : (rv != 0 ? 1 : 0);
}
