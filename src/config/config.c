/* config: see config.h. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "evbus/errors.h"

enum key_kind { K_U32, K_ADDR, K_PATH, K_LEVEL, K_NAME, K_BOOL, K_MEMBERS };

typedef struct key_def {
    const char *name;
    enum key_kind kind;
    size_t offset;
    size_t size; /* string capacity */
    uint64_t min, max;
    const char *def;
    const char *help;
} key_def;

#define STR(field) offsetof(config, field), sizeof(((config *)0)->field)
#define U32(field) offsetof(config, field), 0

static const key_def KEYS[] = {
    {"node-id", K_U32, U32(node_id), 1, UINT32_MAX, "1", "this node's Raft id (>= 1)"},
    {"listen", K_ADDR, STR(listen), 0, 0, "127.0.0.1:7070", "client protocol address host:port"},
    {"raft-listen", K_ADDR, STR(raft_listen), 0, 0, "127.0.0.1:7071",
     "Raft transport address host:port (plain TCP: keep it private)"},
    {"data-dir", K_PATH, STR(data_dir), 0, 0, "./evbus-data", "where Raft and RocksDB keep data"},
    {"log-level", K_LEVEL, offsetof(config, log_level), 0, 0, 0, "info",
     "debug, info, warn or error"},
    {"max-frame-bytes", K_U32, U32(max_frame_bytes), 1024, 64u << 20, "4194304",
     "largest protocol frame accepted"},
    {"account", K_NAME, STR(account), 0, 0, "000000000000", "account id stamped on events"},
    {"region", K_NAME, STR(region), 0, 0, "local", "region stamped on events"},
    {"max-entry-bytes", K_U32, U32(max_entry_bytes), 4096, 4u << 20, "262144",
     "group commit: largest Raft entry built from concurrent publishes"},
    /* libraft keeps the log since the last snapshot in memory: with entries of up to
     * max-entry-bytes (256 KiB) the defaults bound it to about 192 MiB per node. A node that was
     * down for longer than the trailing entries catches up by snapshot + backfill. */
    {"snapshot-threshold", K_U32, U32(snapshot_threshold), 16, 1u << 30, "512",
     "Raft entries between two snapshots"},
    {"snapshot-trailing", K_U32, U32(snapshot_trailing), 16, 1u << 30, "256",
     "Raft entries kept in the log behind a snapshot"},
    {"default-partitions", K_U32, U32(default_partitions), 1, 1024, "4",
     "partitions of a bus created without --partitions"},
    {"bootstrap", K_MEMBERS, STR(bootstrap), 0, 0, "",
     "initial members ID=RAFT_ADDR/CLIENT_ADDR,... (same list on every node; used on first start)"},
    {"join", K_BOOL, offsetof(config, join), 0, 0, 0, "false",
     "start empty and wait to be added with 'evbusctl cluster add-node'"},
    {"dedup-window", K_U32, U32(dedup_window), 1, 1024, "16",
     "idempotent publish: sequences remembered per producer"},
    {"dedup-max-producers", K_U32, U32(dedup_max_producers), 1, 60000, "4096",
     "idempotent publish: producers remembered (least recently used forgotten first)"},
    {"dedup-ttl-s", K_U32, U32(dedup_ttl_s), 1, 7 * 86400, "900",
     "idempotent publish: a producer idle this long is forgotten"},
    {"read-wait-ms", K_U32, U32(read_wait_ms), 0, 60000, "5000",
     "longest a read-after-write waits for this node to apply the index asked for"},
    {"max-rules-per-bus", K_U32, U32(max_rules_per_bus), 1, 10000, "300",
     "rules a bus may hold (enabled or not; replicated: the leader's value applies)"},
    {"max-pattern-bytes", K_U32, U32(max_pattern_bytes), 64, 65536, "4096",
     "largest event pattern of a rule or of 'rule test', in bytes (replicated like "
     "max-rules-per-bus)"},
};
#define N_KEYS (sizeof(KEYS) / sizeof(KEYS[0]))

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

static int set_key(config *c, const key_def *k, const char *value, char *err, size_t err_len)
{
    char *base = (char *)c;
    switch (k->kind) {
    case K_U32: {
        uint64_t v;
        if (util_parse_u64(value, k->min, k->max, &v) != 0) {
            snprintf(err, err_len, "bad value for %s: '%s' (expected an integer in %llu..%llu)",
                     k->name, value, (unsigned long long)k->min, (unsigned long long)k->max);
            return EVBUS_EINVAL;
        }
        *(uint32_t *)(base + k->offset) = (uint32_t)v;
        return 0;
    }
    case K_ADDR: {
        char host[256];
        uint16_t port;
        if (util_parse_hostport(value, host, sizeof(host), &port) != 0 ||
            strlen(value) >= k->size) {
            snprintf(err, err_len, "bad value for %s: '%s' (expected host:port)", k->name, value);
            return EVBUS_EINVAL;
        }
        break;
    }
    case K_BOOL: {
        int v;
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
            v = 1;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
            v = 0;
        else {
            snprintf(err, err_len, "bad value for %s: '%s' (expected true or false)", k->name,
                     value);
            return EVBUS_EINVAL;
        }
        *(int *)(base + k->offset) = v;
        return 0;
    }
    case K_MEMBERS: {
        if (value[0] == '\0')
            break;
        static config_member tmp[CONFIG_MAX_MEMBERS];
        char msg[256];
        if (strlen(value) >= k->size) {
            snprintf(err, err_len, "bad value for %s: too long", k->name);
            return EVBUS_EINVAL;
        }
        if (config_parse_members(value, tmp, CONFIG_MAX_MEMBERS, msg, sizeof(msg)) < 0) {
            snprintf(err, err_len, "bad value for %s: %s", k->name, msg);
            return EVBUS_EINVAL;
        }
        break;
    }
    case K_PATH:
    case K_NAME:
        if (value[0] == '\0' || strlen(value) >= k->size) {
            snprintf(err, err_len, "bad value for %s: must be 1..%zu characters", k->name,
                     k->size - 1);
            return EVBUS_EINVAL;
        }
        break;
    case K_LEVEL: {
        enum log_level lv;
        if (log_parse_level(value, &lv) != 0) {
            snprintf(err, err_len, "bad value for %s: '%s' (expected debug, info, warn or error)",
                     k->name, value);
            return EVBUS_EINVAL;
        }
        *(enum log_level *)(base + k->offset) = lv;
        return 0;
    }
    }
    memcpy(base + k->offset, value, strlen(value) + 1);
    return 0;
}

int config_parse_members(const char *list, config_member *out, size_t max, char *err,
                         size_t err_len)
{
    size_t n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[600];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, err_len, "empty or overlong member in the list");
            return EVBUS_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (n == max) {
            snprintf(err, err_len, "more than %zu members", max);
            return EVBUS_EINVAL;
        }
        char *eq = strchr(item, '=');
        char *slash = eq ? strchr(eq, '/') : NULL;
        uint64_t id;
        char host[256];
        uint16_t port;
        if (eq == NULL || slash == NULL) {
            snprintf(err, err_len, "member '%s' is not ID=RAFT_ADDR/CLIENT_ADDR", item);
            return EVBUS_EINVAL;
        }
        *eq = '\0';
        *slash = '\0';
        if (util_parse_u64(item, 1, UINT32_MAX, &id) != 0 ||
            util_parse_hostport(eq + 1, host, sizeof(host), &port) != 0 ||
            util_parse_hostport(slash + 1, host, sizeof(host), &port) != 0 ||
            strlen(eq + 1) >= sizeof(out[n].raft_addr) ||
            strlen(slash + 1) >= sizeof(out[n].client_addr)) {
            snprintf(err, err_len, "member '%s=%s/%s' is not ID=RAFT_ADDR/CLIENT_ADDR", item,
                     eq + 1, slash + 1);
            return EVBUS_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            if (out[i].id == id) {
                snprintf(err, err_len, "node id %llu appears twice", (unsigned long long)id);
                return EVBUS_EINVAL;
            }
        }
        out[n].id = (uint32_t)id;
        snprintf(out[n].raft_addr, sizeof(out[n].raft_addr), "%s", eq + 1);
        snprintf(out[n].client_addr, sizeof(out[n].client_addr), "%s", slash + 1);
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        snprintf(err, err_len, "no members");
        return EVBUS_EINVAL;
    }
    return (int)n;
}

int config_set(config *c, const char *key, const char *value, char *err, size_t err_len)
{
    const key_def *k = find_key(key);
    if (k == NULL) {
        snprintf(err, err_len, "unknown config key '%s' (see evbusd --help)", key);
        return EVBUS_EINVAL;
    }
    return set_key(c, k, value, err, err_len);
}

void config_defaults(config *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_KEYS; i++) {
        int rv = set_key(c, &KEYS[i], KEYS[i].def, err, sizeof(err));
        (void)rv; /* defaults are valid by construction; the unit test checks it */
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int config_load_file(config *c, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "cannot open config file %s: %s", path, strerror(errno));
        return EVBUS_EIO;
    }
    char line[2048];
    int lineno = 0, rv = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *sep = s + strcspn(s, "= \t");
        char *value = sep;
        if (*sep != '\0') {
            *sep = '\0';
            value = sep + 1;
            value += strspn(value, "= \t");
        }
        value = trim(value);
        char msg[512];
        if (*value == '\0') {
            snprintf(err, err_len, "%s:%d: missing value for '%s'", path, lineno, s);
            rv = EVBUS_EINVAL;
            break;
        }
        if ((rv = config_set(c, s, value, msg, sizeof(msg))) != 0) {
            snprintf(err, err_len, "%s:%d: %s", path, lineno, msg);
            break;
        }
    }
    fclose(f);
    return rv;
}

/* Variables read by evbusctl and scripts, not by the server. */
static const char *CLIENT_ENV[] = {"EVBUS_SERVERS", "EVBUS_CONFIG", NULL};

int config_load_env(config *c, char **envp, char *err, size_t err_len)
{
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "EVBUS_", 6) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - *e);
        int client = 0;
        for (const char **ce = CLIENT_ENV; *ce; ce++)
            if (strlen(*ce) == nlen && strncmp(*e, *ce, nlen) == 0)
                client = 1;
        if (client)
            continue;
        char key[128];
        if (nlen - 6 >= sizeof(key))
            continue;
        for (size_t i = 6; i < nlen; i++)
            key[i - 6] = (*e)[i] == '_' ? '-' : (char)tolower((unsigned char)(*e)[i]);
        key[nlen - 6] = '\0';
        /* Only keys evbusd knows are ours; other EVBUS_* variables (tests, scripts) are not
         * server settings and must not stop the node. */
        if (find_key(key) == NULL)
            continue;
        char msg[512];
        if (config_set(c, key, eq + 1, msg, sizeof(msg)) != 0) {
            snprintf(err, err_len, "environment %.*s: %s", (int)nlen, *e, msg);
            return EVBUS_EINVAL;
        }
    }
    return 0;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: evbusd [--config FILE] [--KEY VALUE]...\n\n"
                 "Every key can also be set as KEY = VALUE in the config file or as the\n"
                 "environment variable EVBUS_<KEY> (upper case, '-' as '_').\n"
                 "Precedence: flag > environment > config file > default.\n\nkeys:\n");
    for (size_t i = 0; i < N_KEYS; i++)
        fprintf(out, "  --%-20s %s (default %s)\n", KEYS[i].name, KEYS[i].help, KEYS[i].def);
}

int config_parse(config *c, int argc, char **argv, char **envp, char *err, size_t err_len)
{
    config_defaults(c);
    const char *file = NULL;
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, "EVBUS_CONFIG=", 13) == 0)
            file = *e + 13;
    /* First pass: --help and --config, which decide what the other sources are. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("evbusd 0.1.0\n");
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "--config needs a file name");
                return EVBUS_EINVAL;
            }
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    int rv;
    if (file && (rv = config_load_file(c, file, err, err_len)) != 0)
        return EVBUS_EINVAL;
    if ((rv = config_load_env(c, envp, err, err_len)) != 0)
        return rv;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s' (see evbusd --help)", arg);
            return EVBUS_EINVAL;
        }
        char key[128];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", arg + 2);
            if (i + 1 >= argc) {
                snprintf(err, err_len, "flag --%s needs a value", key);
                return EVBUS_EINVAL;
            }
            value = argv[++i];
        }
        if (strcmp(key, "config") == 0)
            continue;
        char msg[512];
        if (config_set(c, key, value, msg, sizeof(msg)) != 0) {
            snprintf(err, err_len, "%s", msg);
            return EVBUS_EINVAL;
        }
    }
    if (c->bootstrap[0] && c->join) {
        snprintf(err, err_len, "bootstrap and join exclude each other");
        return EVBUS_EINVAL;
    }
    if (c->bootstrap[0]) {
        config_member m[CONFIG_MAX_MEMBERS];
        int n = config_parse_members(c->bootstrap, m, CONFIG_MAX_MEMBERS, err, err_len);
        int self = 0;
        for (int i = 0; i < n; i++) {
            if (m[i].id == c->node_id) {
                self = 1;
                if (strcmp(m[i].raft_addr, c->raft_listen) != 0 ||
                    strcmp(m[i].client_addr, c->listen) != 0) {
                    snprintf(err, err_len,
                             "bootstrap lists node %u as %s/%s but this node listens on %s/%s",
                             c->node_id, m[i].raft_addr, m[i].client_addr, c->raft_listen,
                             c->listen);
                    return EVBUS_EINVAL;
                }
            }
        }
        if (!self) {
            snprintf(err, err_len, "bootstrap does not list this node (node-id %u); use join",
                     c->node_id);
            return EVBUS_EINVAL;
        }
    }
    if (strcmp(c->listen, c->raft_listen) == 0) {
        snprintf(err, err_len, "listen and raft-listen must differ (both %s)", c->listen);
        return EVBUS_EINVAL;
    }
    return 0;
}
