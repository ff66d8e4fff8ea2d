/*
 * config: evbusd's settings from embedded defaults, an optional config file,
 * EVBUS_* environment variables and command-line flags, in that order of
 * precedence (a flag beats the environment beats the file). One table of keys
 * (config.c) is the single source of truth for names, parsing and help text.
 * The result is filled once at start-up and read-only afterwards.
 */
#ifndef EVBUS_CONFIG_H
#define EVBUS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"

typedef struct config {
    uint32_t node_id;
    char listen[256];      /* client protocol, host:port */
    char raft_listen[256]; /* Raft transport, host:port */
    char data_dir[1024];
    enum log_level log_level;
    uint32_t max_frame_bytes;
    char account[64];
    char region[64];
    uint32_t max_entry_bytes;    /* group-commit bound of one Raft entry */
    uint32_t snapshot_threshold; /* entries between snapshots */
    uint32_t snapshot_trailing;  /* entries kept behind a snapshot */
    uint32_t default_partitions;
    char bootstrap[4096]; /* "ID=RAFT/CLIENT,..." initial members, "" = this node alone */
    int join;             /* start empty and wait to be added */
    uint32_t dedup_window;
    uint32_t dedup_max_producers;
    uint32_t dedup_ttl_s;
    uint32_t read_wait_ms;      /* bound of a read-after-write wait */
    uint32_t max_rules_per_bus; /* rules per bus (proposed to the state machine by a leader) */
    uint32_t max_pattern_bytes; /* largest rule pattern (idem) */
} config;

/* One initial member from the bootstrap list. */
typedef struct config_member {
    uint32_t id;
    char raft_addr[256];
    char client_addr[256];
} config_member;

#define CONFIG_MAX_MEMBERS 64

/* Parses a bootstrap list. Returns the number of members (>= 1) or EVBUS_EINVAL with err. */
int config_parse_members(const char *list, config_member *out, size_t max, char *err,
                         size_t err_len);

void config_defaults(config *c);

/* Sets one key ("node-id", "listen", ...) from text. 0 or EVBUS_EINVAL with a message in err. */
int config_set(config *c, const char *key, const char *value, char *err, size_t err_len);

/* Reads "key = value" lines ('#' comments, blank lines). 0 or EVBUS_EINVAL / EVBUS_EIO with the
 * file name and line number in err. */
int config_load_file(config *c, const char *path, char *err, size_t err_len);

/* Applies every EVBUS_<KEY> variable of envp (key upper-cased, '-' as '_'). EVBUS_SERVERS and other
 * client-side variables are ignored; an unknown EVBUS_ key of the server's own prefix list is an
 * error. */
int config_load_env(config *c, char **envp, char *err, size_t err_len);

/*
 * Defaults, then --config FILE (or EVBUS_CONFIG), then the environment, then flags
 * (`--key value` or `--key=value`). Returns 0, 1 when --help/--version was printed
 * (exit 0), or EVBUS_EINVAL with a message in err.
 */
int config_parse(config *c, int argc, char **argv, char **envp, char *err, size_t err_len);

void config_usage(FILE *out);

#endif
