/*
 * evbusctl: the operator CLI, built only on the SDK (include/evbus/evbus.h).
 *
 *   evbusctl [--servers LIST] [--json] [--timeout MS] COMMAND [ARGS]
 *
 * One table, `commands`, names every command with its usage, help text,
 * positional arguments, accepted options and handler: dispatch, argument checks
 * and the help text all read it, so they cannot disagree. A handler checks its
 * arguments first and only then connects (connect_client), so a usage error
 * never waits for a server.
 *
 * Output is human text by default and one JSON document on stdout with --json;
 * `read` and `rule test` print the server's JSON envelopes one per line in both
 * modes. Exit status: 0 success, 1 failure with one line "evbusctl: message
 * (EVBUS_ENAME)" on stderr, 2 usage error, 3 replicas differ (`cluster
 * checksum`); `test-pattern`: 0 match, 1 no match, 2 invalid pattern or event.
 *
 * `test-pattern` talks to no server: it evaluates a pattern against an event
 * with the rule engine itself (src/rules/, linked in), exactly as a node parses
 * and matches, so it works offline. Every other command uses only the SDK.
 *
 * `cluster checksum` is the one command that talks to more than one server: it
 * takes the member list from the connected node, then opens a client per member
 * whose only server is that member, so no answer is redirected or comes from
 * another node.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "evbus/evbus.h"
#include "rules/rules.h"

#define PROG "evbusctl"
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_DIFFER 3
#define DEFAULT_SERVERS "127.0.0.1:7070"
/* Batches of --file stay under the SDK's default 4 MiB frame; ETOOBIG still splits a batch. */
#define PUBLISH_BATCH_BYTES (3u * 1024u * 1024u)
#define ENTRY_FIELD_OVERHEAD 16u

struct opt {
    const char *name; /* points into argv, name_len bytes */
    size_t name_len;
    const char *value;
};

struct args {
    const char **pos;
    int n_pos;
    struct opt *opts;
    int n_opts;
};

struct cli;

struct command {
    const char *words; /* "bus create" */
    const char *usage; /* what follows the words */
    const char *help;
    int n_pos;        /* positional arguments; -1: any number */
    int n_pos_opt;    /* optional positional arguments after those */
    const char *opts; /* accepted options, space-separated; a trailing '*' allows repeats */
    int (*run)(struct cli *cli, const struct args *a);
};

struct cli {
    const char *servers;
    uint32_t timeout_ms; /* 0: the SDK's default */
    bool json;
    evbus_client *client;
    const struct command *cmd;
};

static int cmd_bus_create(struct cli *cli, const struct args *a);
static int cmd_bus_list(struct cli *cli, const struct args *a);
static int cmd_bus_describe(struct cli *cli, const struct args *a);
static int cmd_bus_delete(struct cli *cli, const struct args *a);
static int cmd_publish(struct cli *cli, const struct args *a);
static int cmd_read(struct cli *cli, const struct args *a);
static int cmd_cluster_status(struct cli *cli, const struct args *a);
static int cmd_cluster_add_node(struct cli *cli, const struct args *a);
static int cmd_cluster_remove_node(struct cli *cli, const struct args *a);
static int cmd_cluster_transfer_leader(struct cli *cli, const struct args *a);
static int cmd_cluster_checksum(struct cli *cli, const struct args *a);
static int cmd_node_status(struct cli *cli, const struct args *a);
static int cmd_rule_put(struct cli *cli, const struct args *a);
static int cmd_rule_list(struct cli *cli, const struct args *a);
static int cmd_rule_describe(struct cli *cli, const struct args *a);
static int cmd_rule_delete(struct cli *cli, const struct args *a);
static int cmd_rule_enable(struct cli *cli, const struct args *a);
static int cmd_rule_disable(struct cli *cli, const struct args *a);
static int cmd_rule_test(struct cli *cli, const struct args *a);
static int cmd_target_put(struct cli *cli, const struct args *a);
static int cmd_target_list(struct cli *cli, const struct args *a);
static int cmd_target_remove(struct cli *cli, const struct args *a);
static int cmd_target_describe(struct cli *cli, const struct args *a);
static int cmd_test_pattern(struct cli *cli, const struct args *a);
static int cmd_help(struct cli *cli, const struct args *a);

static const struct command commands[] = {
    {"bus create", "NAME [--partitions N]",
     "create a bus; without --partitions the server's default (4)", 1, 0, "partitions",
     cmd_bus_create},
    {"bus list", "", "list buses", 0, 0, "", cmd_bus_list},
    {"bus describe", "NAME", "show a bus with its partitions' offsets and event counts", 1, 0, "",
     cmd_bus_describe},
    {"bus delete", "NAME", "delete a bus and its events", 1, 0, "", cmd_bus_delete},
    {"publish",
     "BUS --source S --detail-type T --detail JSON [--partition-key K] [--resource R]... "
     "[--time T]",
     "publish one event; prints its partition, offset, event id and the commit index that made "
     "it durable (for read --min-commit-index)",
     1, 0, "source detail-type detail partition-key resource* time file", cmd_publish},
    {"publish", "BUS --file FILE",
     "publish JSON lines of FILE (- for stdin), each an EventBridge PutEvents entry with "
     "Source, DetailType, Detail (an object or a string holding one), Resources, Time, "
     "PartitionKey; sent up to 100 per request. Prints \"published N, failed M\" and each failed "
     "entry's line on stderr; a malformed line stops the run after the lines before it.",
     1, 0, "source detail-type detail partition-key resource* time file", cmd_publish},
    {"read", "BUS --partition P [--from OFFSET] [--count N] [--min-commit-index N]",
     "print events of a partition, one JSON envelope per line (default: from the first stored "
     "offset to the end); with --min-commit-index the node first waits until it has applied that "
     "Raft index (e.g. a publish's commit index), so a follower's answer includes that publish",
     1, 0, "partition from count min-commit-index", cmd_read},
    {"cluster status", "", "show the cluster's nodes, roles and indexes", 0, 0, "",
     cmd_cluster_status},
    {"cluster add-node", "ID RAFT_ADDR CLIENT_ADDR",
     "add a node (started with --join) to the cluster; returns once it caught up and votes", 3, 0,
     "", cmd_cluster_add_node},
    {"cluster remove-node", "ID", "remove a node from the cluster", 1, 0, "",
     cmd_cluster_remove_node},
    {"cluster transfer-leader", "[ID]",
     "hand leadership to node ID, or without ID to the most up-to-date voter", 0, 1, "",
     cmd_cluster_transfer_leader},
    {"cluster checksum", "BUS",
     "compare the bus's partitions on every node (offsets, event counts, checksums); prints "
     "\"replicas match\" (exit 0) or \"replicas DIFFER\" (exit 3); a node that cannot answer "
     "counts as a difference",
     1, 0, "", cmd_cluster_checksum},
    {"node status", "", "show the connected node's own status (not redirected)", 0, 0, "",
     cmd_node_status},
    {"rule put", "BUS NAME --pattern JSON|@FILE [--description TEXT] [--disabled]",
     "create or replace a rule: an EventBridge event pattern (inline JSON, or @FILE, @- for "
     "stdin); the server validates it first and names what is wrong. --disabled stores it "
     "DISABLED (default ENABLED)",
     2, 0, "pattern description disabled!", cmd_rule_put},
    {"rule list", "BUS", "list a bus's rules in name order: state, id, last change, pattern", 1, 0,
     "", cmd_rule_list},
    {"rule describe", "BUS NAME", "show one rule with its pattern", 2, 0, "", cmd_rule_describe},
    {"rule delete", "BUS NAME", "delete a rule", 2, 0, "", cmd_rule_delete},
    {"rule enable", "BUS NAME", "enable a rule (its pattern takes part in matching again)", 2, 0,
     "", cmd_rule_enable},
    {"rule disable", "BUS NAME", "disable a rule (kept, but matches nothing)", 2, 0, "",
     cmd_rule_disable},
    {"rule test", "BUS --pattern JSON|@FILE [--partition P] [--from OFFSET] [--count N]",
     "run a candidate pattern over the events stored on the connected node and print the "
     "matching envelopes, one per line (partition, then offset order); nothing is stored. Every "
     "partition unless --partition; from --from (default the first stored offset) in each, at "
     "most --count events examined per partition (default all)",
     1, 0, "pattern partition from count", cmd_rule_test},
    {"target put",
     "BUS RULE TARGET [--max-attempts N] [--max-age S] [--dead-letter TARGET] [--input-path P | "
     "--input JSON|@FILE | --input-template T [--input-paths-map JSON|@FILE]] [--window N] "
     "[--ack-timeout-ms MS]",
     "create or update a target (a named worker group of the bus) and attach it to the rule; a "
     "rule has at most 5 targets. Defaults: 185 attempts, 86400 s maximum event age, no dead "
     "letter, the whole event, a window of 64, a 30000 ms ack timeout. A new target starts at "
     "the events published after it (its cursors begin at each partition's next offset)",
     3, 0,
     "max-attempts max-age dead-letter input-path input input-template input-paths-map window "
     "ack-timeout-ms",
     cmd_target_put},
    {"target list", "BUS RULE", "list a rule's targets: retry policy, dead letter, backlog, input",
     2, 0, "", cmd_target_list},
    {"target remove", "BUS RULE TARGET",
     "detach a target from the rule; a target left without rules (and not a dead-letter target "
     "of one in use) is deleted with its cursors",
     3, 0, "", cmd_target_remove},
    {"target describe", "BUS TARGET",
     "show one target: settings, rules, cursor and backlog per partition, in-flight, delivered, "
     "retried, dead-lettered and dropped counts",
     2, 0, "", cmd_target_describe},
    {"test-pattern", "--pattern JSON|@FILE --event JSON|@FILE [--explain]",
     "offline, no server: does the event match the pattern? Prints true (exit 0) or false (exit "
     "1); an invalid pattern or event exits 2 with the reason on stderr. --explain adds, for a "
     "non-match, the first field that failed and why. Pattern size limit: the server default "
     "(4096 bytes)",
     0, 0, "pattern event explain!", cmd_test_pattern},
    {"help", "", "show this help", -1, 0, "", cmd_help},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ------------------------------------------------------------------ output */

/* Prints `text` word-wrapped at 80 columns, each line indented by `indent` spaces. */
static void print_wrapped(FILE *out, const char *text, int indent)
{
    const int width = 80 - indent;
    while (*text) {
        int len = (int)strlen(text);
        if (len > width) {
            len = width;
            while (len > 0 && text[len] != ' ')
                len--;
            if (len == 0)
                len = width;
        }
        fprintf(out, "%*s%.*s\n", indent, "", len, text);
        text += len;
        while (*text == ' ')
            text++;
    }
}

static void print_usage(FILE *out)
{
    fprintf(out, "usage: " PROG " [--servers HOST:PORT,...] [--json] [--timeout MS] COMMAND "
                 "[ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct command *c = &commands[i];
        fprintf(out, "  %s%s%s\n", c->words, c->usage[0] ? " " : "", c->usage);
        print_wrapped(out, c->help, 6);
    }
    fprintf(out, "\nglobal options (before or after the command):\n"
                 "  --servers LIST  servers to try in order, host:port[,host:port...]\n"
                 "                  (default: $EVBUS_SERVERS, else " DEFAULT_SERVERS ")\n"
                 "  --json          machine-readable output\n"
                 "  --timeout MS    bound of each request in milliseconds (default 10000)\n"
                 "  -h, --help      show this help\n"
                 "\nexit status: 0 success, 1 failure, 2 usage error, 3 replicas differ "
                 "(cluster checksum);\n"
                 "test-pattern: 0 match, 1 no match, 2 invalid pattern, event or usage\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see " PROG " --help)\n");
    return EXIT_USAGE;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The one error line: "evbusctl: message (EVBUS_ENAME)". */
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (code != 0)
        fprintf(stderr, " (%s)", evbus_errname(code));
    fputc('\n', stderr);
    return EXIT_FAIL;
}

static const char *sdk_msg(const struct cli *cli, int rc)
{
    const char *m = evbus_client_errmsg(cli->client);
    return m[0] ? m : evbus_strerror(rc);
}

static int sdk_fail(const struct cli *cli, int rc)
{
    return fail(rc, "%s", sdk_msg(cli, rc));
}

/* A JSON string, or null when the text is not UTF-8 (jansson refuses it). */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s ? s : "");
    return j ? j : json_null();
}

static json_t *jint(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static int print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (s == NULL)
        return fail(EVBUS_ENOMEM, "cannot build JSON output");
    puts(s);
    free(s);
    return 0;
}

/* A text table whose columns are as wide as their widest cell. */
struct table {
    size_t n_cols;
    size_t n_rows;
    size_t cap_rows;
    char **cells; /* n_rows * n_cols, owned */
};

static int table_add(struct table *t, const char *const *row)
{
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        char **cells = realloc(t->cells, cap * t->n_cols * sizeof(*cells));
        if (cells == NULL)
            return -1;
        t->cells = cells;
        t->cap_rows = cap;
    }
    for (size_t i = 0; i < t->n_cols; i++)
        t->cells[t->n_rows * t->n_cols + i] = strdup(row[i] ? row[i] : "");
    t->n_rows++;
    return 0;
}

static void table_print_free(struct table *t)
{
    size_t width[16] = {0};
    for (size_t r = 0; r < t->n_rows; r++)
        for (size_t i = 0; i < t->n_cols && i < 16; i++) {
            const char *s = t->cells[r * t->n_cols + i];
            size_t len = s ? strlen(s) : 0;
            if (len > width[i])
                width[i] = len;
        }
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t i = 0; i < t->n_cols; i++) {
            const char *s = t->cells[r * t->n_cols + i];
            if (i + 1 < t->n_cols)
                printf("%-*s  ", (int)width[i], s ? s : "");
            else
                printf("%s\n", s ? s : "");
        }
    }
    for (size_t k = 0; k < t->n_rows * t->n_cols; k++)
        free(t->cells[k]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* --------------------------------------------------------------- arguments */

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        return usage_error("%s wants a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'", opt,
                           min, max, s);
    *out = v;
    return 0;
}

static const char *opt_get(const struct args *a, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < a->n_opts; i++)
        if (strlen(name) == a->opts[i].name_len &&
            strncmp(a->opts[i].name, name, a->opts[i].name_len) == 0)
            v = a->opts[i].value;
    return v;
}

/* Looks `name` (name_len bytes) up in a command's option list: 0 unknown, OPT_VALUE, OPT_REPEAT
 * (a trailing '*' in the list: repeatable), OPT_FLAG (a trailing '!': takes no value). */
enum { OPT_VALUE = 1, OPT_REPEAT = 2, OPT_FLAG = 3 };

static int opt_spec(const char *spec, const char *name, size_t name_len)
{
    const char *p = spec;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        size_t len = (size_t)(end - p);
        char mark = len > 0 ? p[len - 1] : '\0';
        if (mark == '*' || mark == '!')
            len--;
        if (len > 0 && len == name_len && strncmp(p, name, len) == 0)
            return mark == '*' ? OPT_REPEAT : mark == '!' ? OPT_FLAG : OPT_VALUE;
        p = end;
    }
    return 0;
}

/*
 * Global options. Returns 1 when argv[*i] was one (and consumed its value), 0 when it is not,
 * EXIT_USAGE after printing a usage error, or -1 for --help.
 */
static int global_opt(struct cli *cli, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
        return -1;
    if (strcmp(arg, "--json") == 0) {
        cli->json = true;
        return 1;
    }
    const char *names[] = {"--servers", "--timeout"};
    for (size_t k = 0; k < 2; k++) {
        size_t len = strlen(names[k]);
        const char *value = NULL;
        if (strcmp(arg, names[k]) == 0) {
            if (*i + 1 >= argc)
                return usage_error("%s wants a value", names[k]);
            value = argv[++*i];
        } else if (strncmp(arg, names[k], len) == 0 && arg[len] == '=') {
            value = arg + len + 1;
        } else {
            continue;
        }
        if (k == 0) {
            if (value[0] == '\0')
                return usage_error("--servers is empty");
            cli->servers = value;
        } else {
            uint64_t ms = 0;
            if (parse_u64("--timeout", value, 1, UINT32_MAX, &ms) != 0)
                return EXIT_USAGE;
            cli->timeout_ms = (uint32_t)ms;
        }
        return 1;
    }
    return 0;
}

/* Splits a command's arguments into positionals and options, checking both against the table. */
static int parse_args(struct cli *cli, const struct command *cmd, int argc, char **argv, int start,
                      struct args *a)
{
    bool only_pos = false;
    for (int i = start; i < argc; i++) {
        const char *arg = argv[i];
        if (only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
            a->pos[a->n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = true;
            continue;
        }
        /* Global options are also accepted after the command. */
        int g = global_opt(cli, argc, argv, &i);
        if (g == -1) {
            print_usage(stdout);
            return -1;
        }
        if (g == EXIT_USAGE)
            return EXIT_USAGE;
        if (g == 1)
            continue;
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("unknown option '%s' for '%s'", arg, cmd->words);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        int kind = opt_spec(cmd->opts, name, name_len);
        if (kind == 0)
            return usage_error("unknown option '--%.*s' for '%s'", (int)name_len, name, cmd->words);
        const char *value = eq ? eq + 1 : NULL;
        if (kind == OPT_FLAG) {
            if (value != NULL)
                return usage_error("--%.*s takes no value", (int)name_len, name);
            value = ""; /* present: opt_get gives non-NULL */
        } else if (value == NULL) {
            if (i + 1 >= argc)
                return usage_error("--%.*s wants a value", (int)name_len, name);
            value = argv[++i];
        }
        if (kind != OPT_REPEAT) {
            for (int k = 0; k < a->n_opts; k++)
                if (a->opts[k].name_len == name_len &&
                    strncmp(a->opts[k].name, name, name_len) == 0)
                    return usage_error("--%.*s given twice", (int)name_len, name);
        }
        a->opts[a->n_opts++] = (struct opt){name, name_len, value};
    }
    if (cmd->n_pos >= 0 && (a->n_pos < cmd->n_pos || a->n_pos > cmd->n_pos + cmd->n_pos_opt)) {
        if (a->n_pos < cmd->n_pos)
            return usage_error("'%s' wants %s", cmd->words, cmd->usage);
        return usage_error("unexpected argument '%s' for '%s'", a->pos[cmd->n_pos + cmd->n_pos_opt],
                           cmd->words);
    }
    return 0;
}

/* Finds the command named by argv[*i...]; advances *i past its words. */
static const struct command *find_command(int argc, char **argv, int *i)
{
    for (size_t k = 0; k < N_COMMANDS; k++) {
        const char *w = commands[k].words;
        int j = *i;
        bool match = true;
        while (*w && match) {
            const char *end = strchr(w, ' ');
            size_t len = end ? (size_t)(end - w) : strlen(w);
            match = j < argc && strlen(argv[j]) == len && strncmp(argv[j], w, len) == 0;
            j++;
            w += len;
            while (*w == ' ')
                w++;
        }
        if (match) {
            *i = j;
            return &commands[k];
        }
    }
    return NULL;
}

static int unknown_command(int argc, char **argv, int i)
{
    /* A known group with a wrong or missing subcommand gets the group's list. */
    size_t glen = strlen(argv[i]);
    char subs[256] = "";
    for (size_t k = 0; k < N_COMMANDS; k++) {
        const char *w = commands[k].words;
        if (strncmp(w, argv[i], glen) == 0 && w[glen] == ' ' && !strstr(subs, w + glen + 1)) {
            size_t used = strlen(subs);
            snprintf(subs + used, sizeof(subs) - used, "%s%s", used ? ", " : "", w + glen + 1);
        }
    }
    if (subs[0] && i + 1 < argc)
        return usage_error("unknown command '%s %s'; '%s' has: %s", argv[i], argv[i + 1], argv[i],
                           subs);
    if (subs[0])
        return usage_error("'%s' wants a command: %s", argv[i], subs);
    return usage_error("unknown command '%s'", argv[i]);
}

/* ---------------------------------------------------------------- commands */

static void client_options(const struct cli *cli, const char *servers, evbus_client_options *opts)
{
    evbus_client_options_init(opts);
    opts->servers = servers;
    opts->client_name = PROG;
    if (cli->timeout_ms)
        opts->timeout_ms = cli->timeout_ms;
}

/* Connects the command's client; handlers call it once their arguments are checked. */
static int connect_client(struct cli *cli)
{
    evbus_client_options opts;
    client_options(cli, cli->servers, &opts);
    int rc = evbus_client_create(&opts, &cli->client);
    if (rc == EVBUS_EINVAL)
        return fail(rc, "bad server list \"%s\": want host:port[,host:port...]", cli->servers);
    if (rc != 0)
        return fail(rc, "cannot connect to %s: %s", cli->servers, evbus_strerror(rc));
    return 0;
}

static json_t *bus_json(const evbus_bus_info *b)
{
    json_t *parts = json_array();
    for (size_t i = 0; i < b->n_partition_info; i++) {
        const evbus_partition_info *p = &b->partition_info[i];
        json_array_append_new(parts,
                              json_pack("{s:I,s:I,s:I}", "partition", (json_int_t)p->partition,
                                        "first_offset", (json_int_t)p->first_offset, "next_offset",
                                        (json_int_t)p->next_offset));
    }
    json_t *o = json_object();
    json_object_set_new(o, "name", jstr(b->name));
    json_object_set_new(o, "partitions", jint(b->partitions));
    json_object_set_new(o, "created_index", jint(b->created_index));
    json_object_set_new(o, "created_time", jstr(b->created_time));
    json_object_set_new(o, "events", jint(b->events));
    json_object_set_new(o, "partitions_info", parts);
    return o;
}

static void bus_print(const evbus_bus_info *b)
{
    printf("bus:            %s\n", b->name);
    printf("partitions:     %" PRIu32 "\n", b->partitions);
    printf("created index:  %" PRIu64 "\n", b->created_index);
    printf("created time:   %s\n", b->created_time);
    printf("events:         %" PRIu64 "\n", b->events);
    if (b->n_partition_info == 0)
        return;
    putchar('\n');
    struct table t = {.n_cols = 4};
    const char *head[] = {"PARTITION", "FIRST_OFFSET", "NEXT_OFFSET", "EVENTS"};
    table_add(&t, head);
    for (size_t i = 0; i < b->n_partition_info; i++) {
        const evbus_partition_info *p = &b->partition_info[i];
        char c0[16], c1[24], c2[24], c3[24];
        snprintf(c0, sizeof(c0), "%" PRIu32, p->partition);
        snprintf(c1, sizeof(c1), "%" PRIu64, p->first_offset);
        snprintf(c2, sizeof(c2), "%" PRIu64, p->next_offset);
        snprintf(c3, sizeof(c3), "%" PRIu64,
                 p->next_offset > p->first_offset ? p->next_offset - p->first_offset : 0);
        const char *row[] = {c0, c1, c2, c3};
        table_add(&t, row);
    }
    table_print_free(&t);
}

static int cmd_bus_create(struct cli *cli, const struct args *a)
{
    const char *name = a->pos[0];
    uint64_t partitions = 0;
    const char *p = opt_get(a, "partitions");
    if (p && parse_u64("--partitions", p, 1, UINT32_MAX, &partitions) != 0)
        return EXIT_USAGE;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_bus_create(cli->client, name, (uint32_t)partitions);
    if (rc != 0)
        return sdk_fail(cli, rc);
    /* The SDK's create returns no details: read them back for the output. */
    evbus_bus_info *b = NULL;
    if (evbus_bus_describe(cli->client, name, &b) != 0) {
        if (cli->json)
            return print_json(
                json_pack("{s:o,s:I}", "name", jstr(name), "partitions", (json_int_t)partitions));
        printf("created bus %s\n", name);
        return 0;
    }
    if (cli->json) {
        rc = print_json(bus_json(b));
    } else {
        printf("created bus %s with %" PRIu32 " partitions\n", b->name, b->partitions);
        rc = 0;
    }
    evbus_bus_info_free(b);
    return rc;
}

static int cmd_bus_list(struct cli *cli, const struct args *a)
{
    (void)a;
    evbus_bus_info *buses = NULL;
    size_t n = 0;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_bus_list(cli->client, &buses, &n);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, bus_json(&buses[i]));
        rc = print_json(arr);
    } else if (n == 0) {
        printf("no buses\n");
    } else {
        struct table t = {.n_cols = 5};
        const char *head[] = {"NAME", "PARTITIONS", "EVENTS", "CREATED_INDEX", "CREATED_TIME"};
        table_add(&t, head);
        for (size_t i = 0; i < n; i++) {
            char c1[16], c2[24], c3[24];
            snprintf(c1, sizeof(c1), "%" PRIu32, buses[i].partitions);
            snprintf(c2, sizeof(c2), "%" PRIu64, buses[i].events);
            snprintf(c3, sizeof(c3), "%" PRIu64, buses[i].created_index);
            const char *row[] = {buses[i].name, c1, c2, c3, buses[i].created_time};
            table_add(&t, row);
        }
        table_print_free(&t);
    }
    evbus_bus_list_free(buses, n);
    return rc;
}

static int cmd_bus_describe(struct cli *cli, const struct args *a)
{
    evbus_bus_info *b = NULL;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_bus_describe(cli->client, a->pos[0], &b);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        rc = print_json(bus_json(b));
    else
        bus_print(b);
    evbus_bus_info_free(b);
    return rc;
}

static int cmd_bus_delete(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_bus_delete(cli->client, a->pos[0]);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        return print_json(json_pack("{s:o,s:b}", "name", jstr(a->pos[0]), "deleted", 1));
    printf("deleted bus %s\n", a->pos[0]);
    return 0;
}

static json_t *put_result_json(const evbus_put_result *r)
{
    if (r->code == 0)
        return json_pack("{s:I,s:I,s:o}", "partition", (json_int_t)r->partition, "offset",
                         (json_int_t)r->offset, "event_id", jstr(r->event_id));
    return json_pack("{s:i,s:s,s:o}", "error_code", r->code, "error_name", evbus_errname(r->code),
                     "error_message", jstr(r->message));
}

static int publish_one(struct cli *cli, const struct args *a)
{
    const char *bus = a->pos[0];
    evbus_entry e = {
        .source = opt_get(a, "source"),
        .detail_type = opt_get(a, "detail-type"),
        .detail = opt_get(a, "detail"),
        .time = opt_get(a, "time"),
        .partition_key = opt_get(a, "partition-key"),
    };
    if (e.source == NULL || e.detail_type == NULL || e.detail == NULL)
        return usage_error("publish wants --source, --detail-type and --detail, or --file");
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    const char **res = calloc((size_t)a->n_opts + 1, sizeof(*res));
    if (res == NULL)
        return fail(EVBUS_ENOMEM, "out of memory");
    for (int i = 0; i < a->n_opts; i++)
        if (a->opts[i].name_len == 8 && strncmp(a->opts[i].name, "resource", 8) == 0)
            res[e.n_resources++] = a->opts[i].value;
    e.resources = res;

    evbus_put_result r;
    size_t failed = 0;
    uint64_t commit_index = 0;
    int rc = evbus_put_events(cli->client, bus, &e, 1, &r, &failed, &commit_index);
    free(res);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        json_t *entries = json_array();
        json_array_append_new(entries, put_result_json(&r));
        rc = print_json(json_pack("{s:o,s:I,s:I}", "entries", entries, "failed_count",
                                  (json_int_t)failed, "commit_index", (json_int_t)commit_index));
        if (rc != 0)
            return rc;
    } else if (r.code == 0) {
        printf("partition=%" PRIu32 " offset=%" PRIu64 " event_id=%s commit_index=%" PRIu64 "\n",
               r.partition, r.offset, r.event_id, commit_index);
    }
    if (r.code != 0)
        return fail(r.code, "event not published: %s", r.message);
    return 0;
}

/* Entries of --file waiting to be sent; their strings live in `roots` and `details`. */
struct batch {
    evbus_entry entries[EVBUS_MAX_ENTRIES_PER_PUT];
    json_t *roots[EVBUS_MAX_ENTRIES_PER_PUT];
    char *details[EVBUS_MAX_ENTRIES_PER_PUT]; /* Detail objects serialised (owned) */
    const char **resources[EVBUS_MAX_ENTRIES_PER_PUT];
    size_t lines[EVBUS_MAX_ENTRIES_PER_PUT];
    size_t n;
    size_t bytes;
};

struct publish_run {
    struct cli *cli;
    const char *bus;
    struct batch batch;
    json_t *out_entries;   /* --json */
    uint64_t commit_index; /* highest of the answered batches */
    size_t published;
    size_t failed;
    int status; /* exit status so far */
};

static void batch_clear(struct batch *b)
{
    /* Reset too: parse_entry's failure path frees the slot it was filling. */
    for (size_t i = 0; i < b->n; i++) {
        json_decref(b->roots[i]);
        free(b->details[i]);
        free(b->resources[i]);
        b->roots[i] = NULL;
        b->details[i] = NULL;
        b->resources[i] = NULL;
    }
    b->n = 0;
    b->bytes = 0;
}

static const char *field_string(json_t *root, const char *key, bool required, char *err,
                                size_t err_len)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            snprintf(err, err_len, "%s is required", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        snprintf(err, err_len, "%s must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* Parses one line of --file into the next slot of the batch. 0, or -1 with `err` filled. */
static int parse_entry(struct publish_run *run, const char *line, size_t lineno, char *err,
                       size_t err_len)
{
    struct batch *b = &run->batch;
    size_t k = b->n;
    json_error_t jerr;
    json_t *root = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, err_len, "not JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, err_len, "not a JSON object");
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        static const char *const known[] = {"Source", "DetailType",   "Detail",      "Resources",
                                            "Time",   "PartitionKey", "EventBusName"};
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            snprintf(err, err_len, "unknown field \"%s\"", key);
            goto fail;
        }
    }
    err[0] = '\0';
    evbus_entry *e = &b->entries[k];
    memset(e, 0, sizeof(*e));
    b->details[k] = NULL;
    b->resources[k] = NULL;
    e->source = field_string(root, "Source", true, err, err_len);
    e->detail_type = field_string(root, "DetailType", true, err, err_len);
    e->time = field_string(root, "Time", false, err, err_len);
    e->partition_key = field_string(root, "PartitionKey", false, err, err_len);
    const char *bus_name = field_string(root, "EventBusName", false, err, err_len);
    if (err[0])
        goto fail;
    if (bus_name && strcmp(bus_name, run->bus) != 0) {
        snprintf(err, err_len, "EventBusName \"%s\" is not bus \"%s\"", bus_name, run->bus);
        goto fail;
    }
    json_t *detail = json_object_get(root, "Detail");
    if (json_is_string(detail)) {
        e->detail = json_string_value(detail);
    } else if (json_is_object(detail)) {
        b->details[k] = json_dumps(detail, JSON_COMPACT);
        if (b->details[k] == NULL) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
        e->detail = b->details[k];
    } else {
        snprintf(err, err_len, "Detail %s: a JSON object or a string holding one",
                 detail ? "has the wrong type" : "is required");
        goto fail;
    }
    size_t bytes = strlen(e->source) + strlen(e->detail_type) + strlen(e->detail) +
                   (e->time ? strlen(e->time) : 0) +
                   (e->partition_key ? strlen(e->partition_key) : 0) + 6 * ENTRY_FIELD_OVERHEAD;
    json_t *res = json_object_get(root, "Resources");
    if (res && !json_is_null(res)) {
        if (!json_is_array(res)) {
            snprintf(err, err_len, "Resources must be an array of strings");
            goto fail;
        }
        size_t n = json_array_size(res);
        b->resources[k] = calloc(n + 1, sizeof(*b->resources[k]));
        if (b->resources[k] == NULL) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *r = json_array_get(res, i);
            if (!json_is_string(r)) {
                snprintf(err, err_len, "Resources must be an array of strings");
                goto fail;
            }
            b->resources[k][i] = json_string_value(r);
            bytes += strlen(b->resources[k][i]) + ENTRY_FIELD_OVERHEAD;
        }
        e->resources = b->resources[k];
        e->n_resources = n;
    }
    b->roots[k] = root;
    b->lines[k] = lineno;
    b->bytes += bytes;
    b->n++;
    return 0;

fail:
    free(b->details[k]);
    free(b->resources[k]);
    b->details[k] = NULL;
    b->resources[k] = NULL;
    json_decref(root);
    return -1;
}

static void record_result(struct publish_run *run, size_t line, const evbus_put_result *r)
{
    if (run->out_entries)
        json_array_append_new(run->out_entries, put_result_json(r));
    if (r->code == 0) {
        run->published++;
        return;
    }
    run->failed++;
    fail(r->code, "line %zu: %s", line, r->message);
    run->status = EXIT_FAIL;
}

/* `n` entries were not published because their request failed with `rc`: each
 * counts as failed (the one error line is printed by the caller). */
static void record_request_failure(struct publish_run *run, size_t n, int rc)
{
    evbus_put_result r = {.code = rc};
    snprintf(r.message, sizeof(r.message), "%s", sdk_msg(run->cli, rc));
    for (size_t i = 0; i < n; i++) {
        if (run->out_entries)
            json_array_append_new(run->out_entries, put_result_json(&r));
        run->failed++;
    }
}

/* Sends entries [from, from + n) of the batch; a batch over the frame limit is split. */
static int send_range(struct publish_run *run, size_t from, size_t n)
{
    struct batch *b = &run->batch;
    evbus_put_result results[EVBUS_MAX_ENTRIES_PER_PUT];
    uint64_t commit_index = 0;
    int rc = evbus_put_events(run->cli->client, run->bus, &b->entries[from], n, results, NULL,
                              &commit_index);
    if (rc == EVBUS_ETOOBIG && n > 1) {
        rc = send_range(run, from, n / 2);
        if (rc != 0) {
            record_request_failure(run, n - n / 2, rc); /* the half never sent */
            return rc;
        }
        return send_range(run, from + n / 2, n - n / 2);
    }
    if (rc == EVBUS_ETOOBIG) {
        evbus_put_result r = {.code = rc};
        snprintf(r.message, sizeof(r.message), "%s", sdk_msg(run->cli, rc));
        record_result(run, b->lines[from], &r);
        return 0;
    }
    if (rc != 0) {
        if (n == 1)
            fail(rc, "line %zu: %s", b->lines[from], sdk_msg(run->cli, rc));
        else
            fail(rc, "lines %zu-%zu: %s", b->lines[from], b->lines[from + n - 1],
                 sdk_msg(run->cli, rc));
        record_request_failure(run, n, rc);
        run->status = EXIT_FAIL;
        return rc;
    }
    if (commit_index > run->commit_index)
        run->commit_index = commit_index;
    for (size_t i = 0; i < n; i++)
        record_result(run, b->lines[from + i], &results[i]);
    return 0;
}

static int flush_batch(struct publish_run *run)
{
    int rc = run->batch.n ? send_range(run, 0, run->batch.n) : 0;
    batch_clear(&run->batch);
    return rc;
}

static int publish_file(struct cli *cli, const struct args *a, const char *path)
{
    static const char *const single[] = {"source",        "detail-type", "detail",
                                         "partition-key", "resource",    "time"};
    for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++)
        if (opt_get(a, single[i]))
            return usage_error("--file cannot be combined with --%s", single[i]);

    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL)
        return fail(0, "cannot open %s: %s", path, strerror(errno));
    if (connect_client(cli) != 0) {
        if (in != stdin)
            fclose(in);
        return EXIT_FAIL;
    }
    struct publish_run *run = calloc(1, sizeof(*run));
    char *line = NULL;
    size_t cap = 0;
    size_t lineno = 0;
    if (run == NULL) {
        fail(EVBUS_ENOMEM, "out of memory");
        goto out;
    }
    run->cli = cli;
    run->bus = a->pos[0];
    run->out_entries = cli->json ? json_array() : NULL;

    /* Everything before a malformed line is published, nothing from it on. */
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        size_t skip = strspn(line, " \t");
        if (line[skip] == '\0')
            continue;
        char err[256];
        if (parse_entry(run, line, lineno, err, sizeof(err)) != 0) {
            if (flush_batch(run) == 0)
                fail(EVBUS_EINVAL, "line %zu: %s", lineno, err);
            run->status = EXIT_FAIL;
            break;
        }
        if (run->batch.n == EVBUS_MAX_ENTRIES_PER_PUT || run->batch.bytes >= PUBLISH_BATCH_BYTES)
            if (flush_batch(run) != 0)
                break;
    }
    if (run->status == 0 && ferror(in)) {
        fail(0, "reading %s: %s", path, strerror(errno));
        run->status = EXIT_FAIL;
    }
    if (run->status == 0 || run->batch.n > 0)
        flush_batch(run);
    if (cli->json) {
        json_t *o =
            json_pack("{s:o,s:I,s:I}", "entries", run->out_entries, "failed_count",
                      (json_int_t)run->failed, "commit_index", (json_int_t)run->commit_index);
        run->out_entries = NULL;
        if (print_json(o) != 0)
            run->status = EXIT_FAIL;
    } else {
        printf("published %zu, failed %zu\n", run->published, run->failed);
    }
out:;
    int status = run ? run->status : EXIT_FAIL;
    if (run) {
        batch_clear(&run->batch);
        json_decref(run->out_entries);
        free(run);
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return status;
}

static int cmd_publish(struct cli *cli, const struct args *a)
{
    const char *file = opt_get(a, "file");
    return file ? publish_file(cli, a, file) : publish_one(cli, a);
}

/* The first offset still stored in a partition, so retention does not make a read ERANGE. */
static int first_offset(struct cli *cli, const char *bus, uint32_t partition, uint64_t *from)
{
    evbus_bus_info *b = NULL;
    int rc = evbus_bus_describe(cli->client, bus, &b);
    if (rc != 0)
        return sdk_fail(cli, rc);
    for (size_t i = 0; i < b->n_partition_info; i++)
        if (b->partition_info[i].partition == partition)
            *from = b->partition_info[i].first_offset;
    evbus_bus_info_free(b);
    return 0;
}

static int cmd_read(struct cli *cli, const struct args *a)
{
    const char *bus = a->pos[0];
    uint64_t partition = 0;
    uint64_t from = 0;
    uint64_t count = UINT64_MAX;
    const char *p = opt_get(a, "partition");
    if (p == NULL)
        return usage_error("read wants --partition P");
    if (parse_u64("--partition", p, 0, UINT32_MAX, &partition) != 0)
        return EXIT_USAGE;
    const char *f = opt_get(a, "from");
    if (f && parse_u64("--from", f, 0, UINT64_MAX, &from) != 0)
        return EXIT_USAGE;
    const char *n = opt_get(a, "count");
    if (n && parse_u64("--count", n, 1, UINT64_MAX, &count) != 0)
        return EXIT_USAGE;
    uint64_t min_index = 0;
    const char *m = opt_get(a, "min-commit-index");
    if (m && parse_u64("--min-commit-index", m, 0, UINT64_MAX, &min_index) != 0)
        return EXIT_USAGE;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;

    /* Describe does not wait for the index (a follower may not know a new bus yet), so with
     * --min-commit-index the first read starts at 0 and only an ERANGE (retention) makes us ask,
     * then safely, where the partition starts. */
    bool probe = f == NULL && min_index > 0;
    int rc;
    if (f == NULL && !probe) {
        rc = first_offset(cli, bus, (uint32_t)partition, &from);
        if (rc != 0)
            return rc;
    }
    uint64_t printed = 0;
    while (printed < count) {
        uint64_t want = count - printed;
        uint32_t max_events =
            count == UINT64_MAX ? 0 : (uint32_t)(want > UINT32_MAX ? UINT32_MAX : want);
        evbus_read_result *r = NULL;
        rc = evbus_read_after(cli->client, bus, (uint32_t)partition, from, max_events, 0, min_index,
                              &r);
        if (rc == EVBUS_ERANGE && probe) {
            probe = false;
            rc = first_offset(cli, bus, (uint32_t)partition, &from);
            if (rc != 0)
                return rc;
            continue;
        }
        probe = false;
        if (rc != 0)
            return sdk_fail(cli, rc);
        for (size_t i = 0; i < r->n_events && printed < count; i++, printed++) {
            fwrite(r->events[i].json, 1, r->events[i].json_len, stdout);
            putchar('\n');
        }
        /* End of partition, or a page that made no progress. */
        bool more = r->n_events > 0 && r->next_offset > from && r->next_offset < r->end_offset;
        from = r->next_offset;
        evbus_read_result_free(r);
        if (!more)
            break;
    }
    return 0;
}

static const char *yes_no(int v)
{
    return v ? "yes" : "no";
}

static json_t *node_json(const evbus_node_status *n)
{
    json_t *o = json_object();
    json_object_set_new(o, "node_id", jint(n->node_id));
    json_object_set_new(o, "raft_addr", jstr(n->raft_addr));
    json_object_set_new(o, "client_addr", jstr(n->client_addr));
    json_object_set_new(o, "role", jstr(n->role));
    json_object_set_new(o, "voter", json_boolean(n->voter));
    json_object_set_new(o, "leader", json_boolean(n->leader));
    json_object_set_new(o, "applied_index", jint(n->applied_index));
    json_object_set_new(o, "commit_index", jint(n->commit_index));
    json_object_set_new(o, "catching_up", json_boolean(n->catching_up));
    json_object_set_new(o, "term", jint(n->term));
    return o;
}

static int cmd_cluster_status(struct cli *cli, const struct args *a)
{
    (void)a;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_cluster_status *s = NULL;
    int rc = evbus_cluster_status_get(cli->client, &s);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        json_t *nodes = json_array();
        for (size_t i = 0; i < s->n_nodes; i++)
            json_array_append_new(nodes, node_json(&s->nodes[i]));
        json_t *o = json_object();
        json_object_set_new(o, "leader_id", jint(s->leader_id));
        json_object_set_new(o, "leader_addr", jstr(s->leader_addr));
        json_object_set_new(o, "term", jint(s->term));
        json_object_set_new(o, "nodes", nodes);
        rc = print_json(o);
    } else {
        if (s->leader_id)
            printf("leader: node %" PRIu32 " at %s, term %" PRIu64 "\n\n", s->leader_id,
                   s->leader_addr, s->term);
        else
            printf("leader: none known, term %" PRIu64 "\n\n", s->term);
        struct table t = {.n_cols = 9};
        const char *head[] = {"ID",     "RAFT_ADDR", "CLIENT_ADDR", "ROLE",       "VOTER",
                              "LEADER", "APPLIED",   "COMMIT",      "CATCHING_UP"};
        table_add(&t, head);
        for (size_t i = 0; i < s->n_nodes; i++) {
            const evbus_node_status *n = &s->nodes[i];
            char id[16], applied[24], commit[24];
            snprintf(id, sizeof(id), "%" PRIu32, n->node_id);
            snprintf(applied, sizeof(applied), "%" PRIu64, n->applied_index);
            snprintf(commit, sizeof(commit), "%" PRIu64, n->commit_index);
            const char *row[] = {id,      n->raft_addr,     n->client_addr,
                                 n->role, yes_no(n->voter), yes_no(n->leader),
                                 applied, commit,           yes_no(n->catching_up)};
            table_add(&t, row);
        }
        table_print_free(&t);
    }
    evbus_cluster_status_free(s);
    return rc;
}

static int cmd_node_status(struct cli *cli, const struct args *a)
{
    (void)a;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_node_status *n = NULL;
    int rc = evbus_node_status_get(cli->client, &n);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        rc = print_json(node_json(n));
    } else {
        printf("node:           %" PRIu32 "\n", n->node_id);
        printf("raft address:   %s\n", n->raft_addr);
        printf("client address: %s\n", n->client_addr);
        printf("role:           %s\n", n->role);
        printf("voter:          %s\n", yes_no(n->voter));
        printf("leader:         %s\n", yes_no(n->leader));
        printf("term:           %" PRIu64 "\n", n->term);
        printf("applied index:  %" PRIu64 "\n", n->applied_index);
        printf("commit index:   %" PRIu64 "\n", n->commit_index);
        printf("catching up:    %s\n", yes_no(n->catching_up));
    }
    evbus_node_status_free(n);
    return rc;
}

/* A node id argument: 1 .. UINT32_MAX (0 is no node). */
static int parse_node_id(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    if (parse_u64("node ID", s, 1, UINT32_MAX, &v) != 0)
        return EXIT_USAGE;
    *out = (uint32_t)v;
    return 0;
}

static int cmd_cluster_add_node(struct cli *cli, const struct args *a)
{
    uint32_t id;
    if (parse_node_id(a->pos[0], &id) != 0)
        return EXIT_USAGE;
    const char *raft_addr = a->pos[1];
    const char *client_addr = a->pos[2];
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_cluster_add_node(cli->client, id, raft_addr, client_addr);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        return print_json(json_pack("{s:b,s:I,s:o,s:o}", "ok", 1, "node_id", (json_int_t)id,
                                    "raft_addr", jstr(raft_addr), "client_addr",
                                    jstr(client_addr)));
    printf("added node %" PRIu32 " (raft %s, client %s) as a voter\n", id, raft_addr, client_addr);
    return 0;
}

static int cmd_cluster_remove_node(struct cli *cli, const struct args *a)
{
    uint32_t id;
    if (parse_node_id(a->pos[0], &id) != 0)
        return EXIT_USAGE;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_cluster_remove_node(cli->client, id);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        return print_json(json_pack("{s:b,s:I}", "ok", 1, "node_id", (json_int_t)id));
    printf("removed node %" PRIu32 "\n", id);
    return 0;
}

static int cmd_cluster_transfer_leader(struct cli *cli, const struct args *a)
{
    uint32_t id = 0;
    if (a->n_pos > 0 && parse_node_id(a->pos[0], &id) != 0)
        return EXIT_USAGE;
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_cluster_transfer_leader(cli->client, id);
    if (rc != 0)
        return sdk_fail(cli, rc);
    /* Who leads now, for the output; the transfer itself already succeeded. */
    uint32_t leader_id = 0;
    evbus_cluster_status *s = NULL;
    if (evbus_cluster_status_get(cli->client, &s) == 0) {
        leader_id = s->leader_id;
        evbus_cluster_status_free(s);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:I}", "ok", 1, "node_id", (json_int_t)id);
        if (o && leader_id)
            json_object_set_new(o, "leader_id", jint(leader_id));
        return print_json(o);
    }
    if (leader_id)
        printf("leadership transferred; leader is node %" PRIu32 "\n", leader_id);
    else if (id)
        printf("leadership transferred to node %" PRIu32 "\n", id);
    else
        printf("leadership transferred\n");
    return 0;
}

/* ------------------------------------------------------- cluster checksum */

#define CHECKSUM_ROUNDS 5 /* asked again while replicas differ only by lag */
#define CHECKSUM_ROUND_GAP_MS 200

/* One member's answer (or why there is none). */
struct node_sum {
    uint32_t node_id;
    const char *addr; /* borrowed from the cluster status */
    evbus_checksum *sum;
    int err;
    char errmsg[300];
};

/* Asks one member through a client whose only server is that member (nothing is redirected). */
static void node_sum_get(const struct cli *cli, const char *bus, struct node_sum *ns)
{
    evbus_checksum_free(ns->sum);
    ns->sum = NULL;
    ns->err = 0;
    ns->errmsg[0] = '\0';
    if (ns->addr == NULL || ns->addr[0] == '\0') {
        ns->err = EVBUS_EINVAL;
        snprintf(ns->errmsg, sizeof(ns->errmsg), "no client address known");
        return;
    }
    evbus_client_options opts;
    client_options(cli, ns->addr, &opts);
    evbus_client *c = NULL;
    int rc = evbus_client_create(&opts, &c);
    if (rc != 0) {
        ns->err = rc;
        snprintf(ns->errmsg, sizeof(ns->errmsg), "cannot connect: %s", evbus_strerror(rc));
        return;
    }
    rc = evbus_bus_checksum(c, bus, &ns->sum);
    if (rc != 0) {
        ns->err = rc;
        const char *m = evbus_client_errmsg(c);
        snprintf(ns->errmsg, sizeof(ns->errmsg), "%s", m[0] ? m : evbus_strerror(rc));
    }
    evbus_client_destroy(c);
}

static const evbus_partition_checksum *find_partition(const evbus_checksum *s, uint32_t partition)
{
    for (size_t i = 0; i < s->n_partitions; i++)
        if (s->partitions[i].partition == partition)
            return &s->partitions[i];
    return NULL;
}

static bool partition_equal(const evbus_partition_checksum *x, const evbus_partition_checksum *y)
{
    return x && y && x->first_offset == y->first_offset && x->next_offset == y->next_offset &&
           x->events == y->events && x->checksum == y->checksum;
}

/* Whether two answers hold the same partitions with the same contents. */
static bool sums_equal(const evbus_checksum *x, const evbus_checksum *y)
{
    if (x->n_partitions != y->n_partitions)
        return false;
    for (size_t i = 0; i < x->n_partitions; i++)
        if (!partition_equal(&x->partitions[i], find_partition(y, x->partitions[i].partition)))
            return false;
    return true;
}

struct sum_verdict {
    const struct node_sum *ref; /* first member that answered; NULL when none did */
    bool match;                 /* every member answered, all equal to ref */
    bool lag_only;              /* all answered, they differ and so do their applied indexes */
};

static struct sum_verdict sums_compare(const struct node_sum *sums, size_t n)
{
    struct sum_verdict v = {NULL, true, false};
    bool all_answered = true;
    bool same_applied = true;
    for (size_t i = 0; i < n; i++) {
        if (sums[i].sum == NULL) {
            all_answered = false;
            v.match = false;
            continue;
        }
        if (v.ref == NULL) {
            v.ref = &sums[i];
            continue;
        }
        if (!sums_equal(v.ref->sum, sums[i].sum))
            v.match = false;
        if (sums[i].sum->applied_index != v.ref->sum->applied_index)
            same_applied = false;
    }
    if (v.ref == NULL)
        v.match = false;
    v.lag_only = !v.match && all_answered && !same_applied;
    return v;
}

static json_t *node_sum_json(const struct node_sum *ns)
{
    json_t *o = json_object();
    json_object_set_new(o, "node_id", jint(ns->node_id));
    json_object_set_new(o, "client_addr", jstr(ns->addr));
    json_t *parts = json_array();
    if (ns->sum == NULL) {
        json_object_set_new(o, "applied_index", json_null());
        char err[400];
        snprintf(err, sizeof(err), "%s (%s)", ns->errmsg, evbus_errname(ns->err));
        json_object_set_new(o, "error", jstr(err));
        json_object_set_new(o, "error_name", jstr(evbus_errname(ns->err)));
    } else {
        json_object_set_new(o, "applied_index", jint(ns->sum->applied_index));
        for (size_t i = 0; i < ns->sum->n_partitions; i++) {
            const evbus_partition_checksum *p = &ns->sum->partitions[i];
            char hex[20];
            snprintf(hex, sizeof(hex), "%016" PRIx64, p->checksum);
            json_array_append_new(parts, json_pack("{s:I,s:I,s:I,s:I,s:s}", "partition",
                                                   (json_int_t)p->partition, "first_offset",
                                                   (json_int_t)p->first_offset, "next_offset",
                                                   (json_int_t)p->next_offset, "events",
                                                   (json_int_t)p->events, "checksum", hex));
        }
    }
    json_object_set_new(o, "partitions", parts);
    return o;
}

static void sums_print(const struct node_sum *sums, size_t n, const struct sum_verdict *v)
{
    struct table t = {.n_cols = 8};
    const char *head[] = {"NODE",  "ADDRESS", "APPLIED", "PARTITION",
                          "FIRST", "NEXT",    "EVENTS",  "CHECKSUM"};
    table_add(&t, head);
    for (size_t i = 0; i < n; i++) {
        const evbus_checksum *s = sums[i].sum;
        char id[16], applied[24];
        snprintf(id, sizeof(id), "%" PRIu32, sums[i].node_id);
        snprintf(applied, sizeof(applied), "%" PRIu64, s ? s->applied_index : 0);
        if (s == NULL) {
            const char *row[] = {id, sums[i].addr, "-", "-", "-", "-", "-", "-"};
            table_add(&t, row);
            continue;
        }
        if (s->n_partitions == 0) {
            const char *row[] = {id, sums[i].addr, applied, "-", "-", "-", "-", "-"};
            table_add(&t, row);
        }
        for (size_t k = 0; k < s->n_partitions; k++) {
            const evbus_partition_checksum *p = &s->partitions[k];
            char c0[16], c1[24], c2[24], c3[24], c4[20];
            snprintf(c0, sizeof(c0), "%" PRIu32, p->partition);
            snprintf(c1, sizeof(c1), "%" PRIu64, p->first_offset);
            snprintf(c2, sizeof(c2), "%" PRIu64, p->next_offset);
            snprintf(c3, sizeof(c3), "%" PRIu64, p->events);
            snprintf(c4, sizeof(c4), "%016" PRIx64, p->checksum);
            const char *row[] = {id, sums[i].addr, applied, c0, c1, c2, c3, c4};
            table_add(&t, row);
        }
    }
    table_print_free(&t);
    for (size_t i = 0; i < n; i++)
        if (sums[i].sum == NULL)
            printf("node %" PRIu32 " (%s): %s (%s)\n", sums[i].node_id, sums[i].addr,
                   sums[i].errmsg, evbus_errname(sums[i].err));
    /* What differs from the reference node, partition by partition. */
    for (size_t i = 0; v->ref && i < n; i++) {
        const evbus_checksum *s = sums[i].sum;
        const evbus_checksum *r = v->ref->sum;
        if (s == NULL || &sums[i] == v->ref)
            continue;
        for (size_t k = 0; k < r->n_partitions; k++) {
            const evbus_partition_checksum *p = find_partition(s, r->partitions[k].partition);
            if (p == NULL)
                printf("partition %" PRIu32 ": missing on node %" PRIu32 "\n",
                       r->partitions[k].partition, sums[i].node_id);
            else if (!partition_equal(p, &r->partitions[k]))
                printf("partition %" PRIu32 ": node %" PRIu32 " differs from node %" PRIu32 "\n",
                       p->partition, sums[i].node_id, v->ref->node_id);
        }
        for (size_t k = 0; k < s->n_partitions; k++)
            if (find_partition(r, s->partitions[k].partition) == NULL)
                printf("partition %" PRIu32 ": only on node %" PRIu32 ", not on node %" PRIu32 "\n",
                       s->partitions[k].partition, sums[i].node_id, v->ref->node_id);
    }
    if (v->lag_only)
        printf("note: the nodes' applied indexes differ; one may still be catching up\n");
}

static int cmd_cluster_checksum(struct cli *cli, const struct args *a)
{
    const char *bus = a->pos[0];
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_cluster_status *st = NULL;
    int rc = evbus_cluster_status_get(cli->client, &st);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (st->n_nodes == 0) {
        evbus_cluster_status_free(st);
        return fail(EVBUS_EPROTO, "the cluster status lists no nodes");
    }
    struct node_sum *sums = calloc(st->n_nodes, sizeof(*sums));
    if (sums == NULL) {
        evbus_cluster_status_free(st);
        return fail(EVBUS_ENOMEM, "out of memory");
    }
    size_t n = st->n_nodes;
    for (size_t i = 0; i < n; i++) {
        sums[i].node_id = st->nodes[i].node_id;
        sums[i].addr = st->nodes[i].client_addr;
    }
    /* A follower applies a commit a heartbeat after the leader: when the only difference may be
     * that lag, ask again a few times before calling it a divergence. */
    struct sum_verdict v;
    for (int round = 0;; round++) {
        for (size_t i = 0; i < n; i++)
            node_sum_get(cli, bus, &sums[i]);
        v = sums_compare(sums, n);
        if (v.match || !v.lag_only || round + 1 >= CHECKSUM_ROUNDS)
            break;
        struct timespec gap = {0, CHECKSUM_ROUND_GAP_MS * 1000000L};
        nanosleep(&gap, NULL);
    }

    int status = v.match ? 0 : EXIT_DIFFER;
    if (cli->json) {
        json_t *nodes = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(nodes, node_sum_json(&sums[i]));
        json_t *o = json_object();
        json_object_set_new(o, "bus", jstr(bus));
        json_object_set_new(o, "match", json_boolean(v.match));
        json_object_set_new(o, "nodes", nodes);
        if (print_json(o) != 0)
            status = EXIT_FAIL;
    } else if (v.ref == NULL) {
        for (size_t i = 0; i < n; i++)
            printf("node %" PRIu32 " (%s): %s (%s)\n", sums[i].node_id, sums[i].addr,
                   sums[i].errmsg, evbus_errname(sums[i].err));
    } else {
        sums_print(sums, n, &v);
        printf("replicas %s\n", v.match ? "match" : "DIFFER");
    }
    /* Nothing to compare: an error (no such bus, or no node answers checksums), not a verdict. */
    if (v.ref == NULL)
        status = fail(sums[0].err, "no node answered for bus %s: %s", bus, sums[0].errmsg);

    for (size_t i = 0; i < n; i++)
        evbus_checksum_free(sums[i].sum);
    free(sums);
    evbus_cluster_status_free(st);
    return status;
}

/* ------------------------------------------------------------------ rules */

#define ARG_FILE_MAX (4u << 20) /* @FILE of a pattern or an event */

/*
 * The text of a JSON|@FILE argument: the value itself, or the contents of FILE ("@-": stdin),
 * without trailing white space. *out is malloc'd (the caller frees). 0, or EXIT_FAIL after the
 * error line.
 */
static int load_arg(const char *opt, const char *value, char **out)
{
    *out = NULL;
    if (value[0] != '@') {
        *out = strdup(value);
        return *out ? 0 : fail(EVBUS_ENOMEM, "out of memory");
    }
    const char *path = value + 1;
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL)
        return fail(0, "--%s: cannot open %s: %s", opt, path, strerror(errno));
    char *buf = malloc(ARG_FILE_MAX + 1);
    size_t len = buf ? fread(buf, 1, ARG_FILE_MAX + 1, in) : 0;
    int err = ferror(in);
    if (in != stdin)
        fclose(in);
    if (buf == NULL)
        return fail(EVBUS_ENOMEM, "out of memory");
    if (err || len > ARG_FILE_MAX) {
        free(buf);
        if (err)
            return fail(0, "--%s: cannot read %s", opt, path);
        return fail(EVBUS_ETOOBIG, "--%s: %s is larger than %u bytes", opt, path, ARG_FILE_MAX);
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static const char *rule_state_name(evbus_rule_state s)
{
    return s == EVBUS_RULE_DISABLED ? "DISABLED" : "ENABLED";
}

static json_t *rule_json(const evbus_rule_info *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "bus", jstr(r->bus));
    json_object_set_new(o, "name", jstr(r->name));
    json_object_set_new(o, "state", jstr(rule_state_name(r->state)));
    json_object_set_new(o, "pattern", jstr(r->pattern));
    json_object_set_new(o, "description", jstr(r->description));
    json_object_set_new(o, "rule_id", jint(r->rule_id));
    json_object_set_new(o, "created_index", jint(r->created_index));
    json_object_set_new(o, "updated_index", jint(r->updated_index));
    json_object_set_new(o, "memory_bytes", jint(r->memory_bytes));
    return o;
}

/* The pattern on one line for tables: compact JSON when it parses, else the text as stored. */
static char *pattern_one_line(const char *pattern)
{
    json_t *j = json_loads(pattern, JSON_DECODE_ANY, NULL);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (s == NULL && (s = strdup(pattern)) != NULL)
        for (char *p = s; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
    return s;
}

static void rule_print(const evbus_rule_info *r)
{
    printf("bus:            %s\n", r->bus);
    printf("rule:           %s\n", r->name);
    printf("state:          %s\n", rule_state_name(r->state));
    printf("rule id:        %" PRIu64 "\n", r->rule_id);
    printf("description:    %s\n", r->description);
    printf("created index:  %" PRIu64 "\n", r->created_index);
    printf("updated index:  %" PRIu64 "\n", r->updated_index);
    printf("memory bytes:   %" PRIu64 "\n", r->memory_bytes);
    printf("pattern:        %s\n", r->pattern);
}

static int cmd_rule_put(struct cli *cli, const struct args *a)
{
    const char *bus = a->pos[0];
    const char *name = a->pos[1];
    const char *p = opt_get(a, "pattern");
    if (p == NULL)
        return usage_error("rule put wants --pattern JSON|@FILE");
    char *pattern = NULL;
    if (load_arg("pattern", p, &pattern) != 0)
        return EXIT_FAIL;
    int rc = connect_client(cli) != 0 ? EXIT_FAIL : 0;
    evbus_rule_info *r = NULL;
    if (rc == 0) {
        rc = evbus_rule_put(cli->client, bus, name, pattern, opt_get(a, "description"),
                            opt_get(a, "disabled") != NULL, &r);
        rc = rc != 0 ? sdk_fail(cli, rc) : 0;
    }
    free(pattern);
    if (rc != 0)
        return rc;
    if (cli->json)
        rc = print_json(rule_json(r));
    else
        printf("put rule %s on bus %s: %s, rule id %" PRIu64 ", index %" PRIu64 "\n", r->name,
               r->bus, rule_state_name(r->state), r->rule_id, r->updated_index);
    evbus_rule_info_free(r);
    return rc;
}

static int cmd_rule_list(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_rule_info *rules = NULL;
    size_t n = 0;
    int rc = evbus_rule_list(cli->client, a->pos[0], &rules, &n);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, rule_json(&rules[i]));
        rc = print_json(arr);
    } else if (n == 0) {
        printf("no rules\n");
    } else {
        struct table t = {.n_cols = 5};
        const char *head[] = {"NAME", "STATE", "RULE_ID", "UPDATED_INDEX", "PATTERN"};
        table_add(&t, head);
        for (size_t i = 0; i < n; i++) {
            char c2[24], c3[24];
            snprintf(c2, sizeof(c2), "%" PRIu64, rules[i].rule_id);
            snprintf(c3, sizeof(c3), "%" PRIu64, rules[i].updated_index);
            char *pat = pattern_one_line(rules[i].pattern);
            const char *row[] = {rules[i].name, rule_state_name(rules[i].state), c2, c3,
                                 pat ? pat : ""};
            table_add(&t, row);
            free(pat);
        }
        table_print_free(&t);
    }
    evbus_rule_list_free(rules, n);
    return rc;
}

static int cmd_rule_describe(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_rule_info *r = NULL;
    int rc = evbus_rule_describe(cli->client, a->pos[0], a->pos[1], &r);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        rc = print_json(rule_json(r));
    else
        rule_print(r);
    evbus_rule_info_free(r);
    return rc;
}

static int cmd_rule_delete(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = evbus_rule_delete(cli->client, a->pos[0], a->pos[1]);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        return print_json(json_pack("{s:o,s:o,s:b}", "bus", jstr(a->pos[0]), "name",
                                    jstr(a->pos[1]), "deleted", 1));
    printf("deleted rule %s of bus %s\n", a->pos[1], a->pos[0]);
    return 0;
}

static int rule_set_state(struct cli *cli, const struct args *a, bool enable)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    int rc = enable ? evbus_rule_enable(cli->client, a->pos[0], a->pos[1])
                    : evbus_rule_disable(cli->client, a->pos[0], a->pos[1]);
    if (rc != 0)
        return sdk_fail(cli, rc);
    const char *state = rule_state_name(enable ? EVBUS_RULE_ENABLED : EVBUS_RULE_DISABLED);
    if (cli->json)
        return print_json(json_pack("{s:o,s:o,s:s}", "bus", jstr(a->pos[0]), "name",
                                    jstr(a->pos[1]), "state", state));
    printf("rule %s of bus %s is %s\n", a->pos[1], a->pos[0], state);
    return 0;
}

static int cmd_rule_enable(struct cli *cli, const struct args *a)
{
    return rule_set_state(cli, a, true);
}

static int cmd_rule_disable(struct cli *cli, const struct args *a)
{
    return rule_set_state(cli, a, false);
}

#define RULE_TEST_PAGE 100000u /* events examined per request: the server's cap */

/* Tests one partition from `from`, at most `count` events, printing matches; pages bounded by
 * progress (every page examines at least one event or ends). */
static int rule_test_partition(struct cli *cli, const char *bus, const char *pattern,
                               uint32_t partition, uint64_t from, uint64_t count)
{
    uint64_t examined = 0;
    while (examined < count) {
        uint64_t want = count - examined;
        uint32_t page = want > RULE_TEST_PAGE ? RULE_TEST_PAGE : (uint32_t)want;
        evbus_rule_test_result *r = NULL;
        int rc = evbus_rule_test(cli->client, bus, pattern, partition, from, page, &r);
        if (rc != 0)
            return sdk_fail(cli, rc);
        for (size_t i = 0; i < r->n_matches; i++) {
            fwrite(r->matches[i].json, 1, r->matches[i].json_len, stdout);
            putchar('\n');
        }
        bool more = false;
        if (r->n_partitions == 1) {
            const evbus_rule_test_progress *p = &r->partitions[0];
            more = p->next_offset > from && p->next_offset < p->end_offset;
            if (p->next_offset > from)
                examined += p->next_offset - from;
            from = p->next_offset;
        }
        evbus_rule_test_result_free(r);
        if (!more)
            break;
    }
    return 0;
}

static int cmd_rule_test(struct cli *cli, const struct args *a)
{
    const char *bus = a->pos[0];
    uint64_t partition = EVBUS_ALL_PARTITIONS;
    uint64_t from = 0;
    uint64_t count = UINT64_MAX;
    const char *p = opt_get(a, "pattern");
    if (p == NULL)
        return usage_error("rule test wants --pattern JSON|@FILE");
    const char *o = opt_get(a, "partition");
    if (o && parse_u64("--partition", o, 0, UINT32_MAX - 1, &partition) != 0)
        return EXIT_USAGE;
    o = opt_get(a, "from");
    if (o && parse_u64("--from", o, 0, UINT64_MAX, &from) != 0)
        return EXIT_USAGE;
    o = opt_get(a, "count");
    if (o && parse_u64("--count", o, 1, UINT64_MAX, &count) != 0)
        return EXIT_USAGE;
    char *pattern = NULL;
    if (load_arg("pattern", p, &pattern) != 0)
        return EXIT_FAIL;
    int rc = connect_client(cli) != 0 ? EXIT_FAIL : 0;
    evbus_bus_info *b = NULL;
    /* Partition by partition, in order, each from its first stored offset at the least. */
    if (rc == 0 && (rc = evbus_bus_describe(cli->client, bus, &b)) != 0)
        rc = sdk_fail(cli, rc);
    if (rc == 0 && partition != EVBUS_ALL_PARTITIONS && partition >= b->partitions)
        rc = fail(EVBUS_EINVAL,
                  "partition %" PRIu64 " does not exist (bus '%s' has %" PRIu32 " partitions)",
                  partition, bus, b->partitions);
    for (size_t i = 0; rc == 0 && b && i < b->n_partition_info; i++) {
        const evbus_partition_info *pi = &b->partition_info[i];
        if (partition != EVBUS_ALL_PARTITIONS && pi->partition != partition)
            continue;
        uint64_t start = from < pi->first_offset ? pi->first_offset : from;
        rc = rule_test_partition(cli, bus, pattern, pi->partition, start, count);
    }
    evbus_bus_info_free(b);
    free(pattern);
    return rc;
}

/* Exit codes of test-pattern: 0 match, 1 no match, EXIT_USAGE (2) invalid pattern or event. */
static int cmd_test_pattern(struct cli *cli, const struct args *a)
{
    const char *p = opt_get(a, "pattern");
    const char *e = opt_get(a, "event");
    if (p == NULL || e == NULL)
        return usage_error("test-pattern wants --pattern JSON|@FILE and --event JSON|@FILE");
    char *pattern = NULL, *event = NULL;
    if (load_arg("pattern", p, &pattern) != 0 || load_arg("event", e, &event) != 0) {
        free(pattern);
        return EXIT_USAGE;
    }
    char why[1024] = "";
    rules_pattern *rp = NULL;
    int status;
    int rc = rules_pattern_parse(pattern, strlen(pattern), NULL, &rp, why, sizeof(why));
    if (rc != 0) {
        fail(rc, "invalid event pattern: %s", why[0] ? why : evbus_strerror(rc));
        status = EXIT_USAGE;
        goto out;
    }
    int matched = 0;
    why[0] = '\0';
    rc = rules_pattern_match(rp, event, strlen(event), &matched, why, sizeof(why));
    if (rc != 0) {
        fail(rc, "invalid event: %s", why[0] ? why : evbus_strerror(rc));
        status = EXIT_USAGE;
        goto out;
    }
    bool explain = opt_get(a, "explain") != NULL && !matched;
    if (cli->json) {
        json_t *o = json_pack("{s:b}", "match", matched);
        if (o && explain)
            json_object_set_new(o, "explain", jstr(why));
        status = print_json(o) != 0 ? EXIT_USAGE : matched ? 0 : EXIT_FAIL;
    } else {
        puts(matched ? "true" : "false");
        if (explain)
            printf("%s\n", why[0] ? why : "no field failed (no explanation given)");
        status = matched ? 0 : EXIT_FAIL;
    }
out:
    rules_pattern_free(rp);
    free(pattern);
    free(event);
    return status;
}

static int cmd_help(struct cli *cli, const struct args *a)
{
    (void)cli;
    (void)a;
    print_usage(stdout);
    return 0;
}

/* -------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    struct cli cli = {0};
    struct args a = {0};
    int status = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        int g = global_opt(&cli, argc, argv, &i);
        if (g == -1) {
            print_usage(stdout);
            return 0;
        }
        if (g == EXIT_USAGE)
            return EXIT_USAGE;
        if (g == 0)
            return usage_error("unknown option '%s'", argv[i]);
    }
    if (i >= argc) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const struct command *cmd = find_command(argc, argv, &i);
    if (cmd == NULL)
        return unknown_command(argc, argv, i);
    cli.cmd = cmd;

    a.pos = calloc((size_t)argc, sizeof(*a.pos));
    a.opts = calloc((size_t)argc, sizeof(*a.opts));
    if (a.pos == NULL || a.opts == NULL) {
        status = fail(EVBUS_ENOMEM, "out of memory");
        goto out;
    }
    status = parse_args(&cli, cmd, argc, argv, i, &a);
    if (status == -1) {
        status = 0; /* --help after the command */
        goto out;
    }
    if (status != 0)
        goto out;
    if (cli.servers == NULL) {
        const char *env = getenv("EVBUS_SERVERS");
        cli.servers = env && env[0] ? env : DEFAULT_SERVERS;
    }
    status = cmd->run(&cli, &a);
    evbus_client_destroy(cli.client);

out:
    free(a.pos);
    free(a.opts);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": writing output: %s\n", strerror(errno));
        if (status == 0)
            status = EXIT_FAIL;
    }
    return status;
}

/* ---------------------------------------------------------------- targets */

static json_t *target_json(const evbus_target_info *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "bus", jstr(t->bus));
    json_object_set_new(o, "id", jstr(t->id));
    json_object_set_new(o, "target_id", jint(t->target_id));
    json_object_set_new(o, "max_attempts", jint(t->max_attempts));
    json_object_set_new(o, "max_age_s", jint(t->max_age_s));
    json_object_set_new(o, "dead_letter", t->dead_letter[0] ? jstr(t->dead_letter) : json_null());
    const char *shape = t->input_path[0]                                  ? "input_path"
                        : t->input[0]                                     ? "input"
                        : (t->input_template[0] || t->input_paths_map[0]) ? "input_transformer"
                                                                          : "event";
    json_object_set_new(o, "input_shape", jstr(shape));
    if (t->input_path[0])
        json_object_set_new(o, "input_path", jstr(t->input_path));
    if (t->input[0])
        json_object_set_new(o, "input", jstr(t->input));
    if (t->input_paths_map[0])
        json_object_set_new(o, "input_paths_map", jstr(t->input_paths_map));
    if (t->input_template[0])
        json_object_set_new(o, "input_template", jstr(t->input_template));
    json_object_set_new(o, "window", jint(t->window));
    json_object_set_new(o, "ack_timeout_ms", jint(t->ack_timeout_ms));
    json_t *rules = json_array();
    for (size_t i = 0; i < t->n_rules; i++)
        json_array_append_new(rules, jstr(t->rules[i]));
    json_object_set_new(o, "rules", rules);
    json_t *parts = json_array();
    uint64_t backlog = 0;
    for (size_t i = 0; i < t->n_partitions; i++) {
        const evbus_target_partition *p = &t->partitions[i];
        backlog += p->backlog;
        json_array_append_new(
            parts, json_pack("{s:I,s:I,s:I,s:I}", "partition", (json_int_t)p->partition, "cursor",
                             (json_int_t)p->cursor, "next_offset", (json_int_t)p->next_offset,
                             "backlog", (json_int_t)p->backlog));
    }
    json_object_set_new(o, "partitions", parts);
    json_object_set_new(o, "backlog", jint(backlog));
    json_object_set_new(o, "in_flight", jint(t->in_flight));
    json_object_set_new(o, "delivered", jint(t->delivered));
    json_object_set_new(o, "retried", jint(t->retried));
    json_object_set_new(o, "dead_lettered", jint(t->dead_lettered));
    json_object_set_new(o, "dropped", jint(t->dropped));
    json_object_set_new(o, "created_index", jint(t->created_index));
    json_object_set_new(o, "updated_index", jint(t->updated_index));
    return o;
}

static const char *target_shape(const evbus_target_info *t, char *buf, size_t len)
{
    if (t->input_path[0])
        snprintf(buf, len, "input path %s", t->input_path);
    else if (t->input[0])
        snprintf(buf, len, "constant input %s", t->input);
    else if (t->input_template[0] || t->input_paths_map[0])
        snprintf(buf, len, "input transformer: paths %s, template %s",
                 t->input_paths_map[0] ? t->input_paths_map : "{}", t->input_template);
    else
        snprintf(buf, len, "whole event");
    return buf;
}

static void target_print(const evbus_target_info *t)
{
    char shape[1024];
    printf("bus:            %s\n", t->bus);
    printf("target:         %s\n", t->id);
    printf("target id:      %" PRIu64 "\n", t->target_id);
    printf("rules:          ");
    for (size_t i = 0; i < t->n_rules; i++)
        printf("%s%s", i ? ", " : "", t->rules[i]);
    printf("%s\n", t->n_rules ? "" : "(none: dead-letter target only)");
    printf("max attempts:   %u\n", t->max_attempts);
    printf("max event age:  %u s\n", t->max_age_s);
    printf("dead letter:    %s\n", t->dead_letter[0] ? t->dead_letter : "(none)");
    printf("input:          %s\n", target_shape(t, shape, sizeof(shape)));
    printf("window:         %u per worker\n", t->window);
    printf("ack timeout:    %u ms\n", t->ack_timeout_ms);
    printf("in flight:      %" PRIu64 "\n", t->in_flight);
    printf("delivered:      %" PRIu64 "\n", t->delivered);
    printf("retried:        %" PRIu64 "\n", t->retried);
    printf("dead-lettered:  %" PRIu64 "\n", t->dead_lettered);
    printf("dropped:        %" PRIu64 "\n", t->dropped);
    printf("created index:  %" PRIu64 "\n", t->created_index);
    printf("updated index:  %" PRIu64 "\n", t->updated_index);
    struct table tb = {.n_cols = 4};
    const char *head[] = {"PARTITION", "CURSOR", "NEXT_OFFSET", "BACKLOG"};
    table_add(&tb, head);
    for (size_t i = 0; i < t->n_partitions; i++) {
        const evbus_target_partition *p = &t->partitions[i];
        char c0[16], c1[24], c2[24], c3[24];
        snprintf(c0, sizeof(c0), "%u", p->partition);
        snprintf(c1, sizeof(c1), "%" PRIu64, p->cursor);
        snprintf(c2, sizeof(c2), "%" PRIu64, p->next_offset);
        snprintf(c3, sizeof(c3), "%" PRIu64, p->backlog);
        const char *row[] = {c0, c1, c2, c3};
        table_add(&tb, row);
    }
    table_print_free(&tb);
}

/* Prints a put/remove result; EXIT_FAIL when an entry failed (each on stderr). */
static int targets_result_print(const struct cli *cli, const char *verb, const char *target,
                                const evbus_targets_result *r)
{
    if (cli->json) {
        json_t *fails = json_array();
        for (size_t i = 0; i < r->failed_count; i++)
            json_array_append_new(fails, json_pack("{s:o,s:s,s:o}", "id", jstr(r->failed[i].id),
                                                   "error_code", evbus_errname(r->failed[i].code),
                                                   "error_message", jstr(r->failed[i].message)));
        int rc = print_json(json_pack("{s:I,s:o,s:I}", "failed_entry_count",
                                      (json_int_t)r->failed_count, "failed_entries", fails,
                                      "commit_index", (json_int_t)r->commit_index));
        return rc != 0 ? rc : r->failed_count ? EXIT_FAIL : 0;
    }
    for (size_t i = 0; i < r->failed_count; i++)
        fail(r->failed[i].code, "target %s: %s", r->failed[i].id, r->failed[i].message);
    if (r->failed_count)
        return EXIT_FAIL;
    printf("%s target %s, index %" PRIu64 "\n", verb, target, r->commit_index);
    return 0;
}

static int cmd_target_put(struct cli *cli, const struct args *a)
{
    evbus_target_spec s = EVBUS_TARGET_SPEC_INIT;
    s.id = a->pos[2];
    uint64_t v;
    const char *o;
    if ((o = opt_get(a, "max-attempts")) != NULL) {
        if (parse_u64("--max-attempts", o, 0, 185, &v) != 0)
            return EXIT_USAGE;
        s.max_attempts = (int)v;
    }
    if ((o = opt_get(a, "max-age")) != NULL) {
        if (parse_u64("--max-age", o, 60, 86400, &v) != 0)
            return EXIT_USAGE;
        s.max_age_s = (uint32_t)v;
    }
    if ((o = opt_get(a, "window")) != NULL) {
        if (parse_u64("--window", o, 1, 1024, &v) != 0)
            return EXIT_USAGE;
        s.window = (uint32_t)v;
    }
    if ((o = opt_get(a, "ack-timeout-ms")) != NULL) {
        if (parse_u64("--ack-timeout-ms", o, 1000, 3600000, &v) != 0)
            return EXIT_USAGE;
        s.ack_timeout_ms = (uint32_t)v;
    }
    s.dead_letter = opt_get(a, "dead-letter");
    s.input_path = opt_get(a, "input-path");
    const char *in = opt_get(a, "input"), *tmpl = opt_get(a, "input-template"),
               *map = opt_get(a, "input-paths-map");
    if ((s.input_path != NULL) + (in != NULL) + (tmpl != NULL || map != NULL) > 1)
        return usage_error("give at most one of --input-path, --input, --input-template");
    if (map != NULL && tmpl == NULL)
        return usage_error("--input-paths-map goes with --input-template");
    char *input = NULL, *paths = NULL;
    int rc = 0;
    if ((in && load_arg("input", in, &input) != 0) ||
        (map && load_arg("input-paths-map", map, &paths) != 0)) {
        free(input);
        return EXIT_FAIL;
    }
    s.input = input;
    s.input_paths_map = paths;
    s.input_template = tmpl;
    evbus_targets_result *r = NULL;
    if (connect_client(cli) != 0)
        rc = EXIT_FAIL;
    else if ((rc = evbus_target_put(cli->client, a->pos[0], a->pos[1], &s, 1, &r)) != 0)
        rc = sdk_fail(cli, rc);
    else
        rc = targets_result_print(cli, "put", s.id, r);
    evbus_targets_result_free(r);
    free(input);
    free(paths);
    return rc;
}

static int cmd_target_remove(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    const char *ids[1] = {a->pos[2]};
    evbus_targets_result *r = NULL;
    int rc = evbus_target_remove(cli->client, a->pos[0], a->pos[1], ids, 1, &r);
    if (rc != 0)
        return sdk_fail(cli, rc);
    rc = targets_result_print(cli, "removed", a->pos[2], r);
    evbus_targets_result_free(r);
    return rc;
}

static int cmd_target_list(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_target_info *ts = NULL;
    size_t n = 0;
    int rc = evbus_target_list(cli->client, a->pos[0], a->pos[1], &ts, &n);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, target_json(&ts[i]));
        rc = print_json(arr);
    } else if (n == 0) {
        printf("no targets\n");
    } else {
        struct table t = {.n_cols = 6};
        const char *head[] = {"TARGET",      "MAX_ATTEMPTS", "MAX_AGE_S",
                              "DEAD_LETTER", "BACKLOG",      "INPUT"};
        table_add(&t, head);
        for (size_t i = 0; i < n; i++) {
            char c1[16], c2[16], c4[24], shape[1024];
            uint64_t backlog = 0;
            for (size_t p = 0; p < ts[i].n_partitions; p++)
                backlog += ts[i].partitions[p].backlog;
            snprintf(c1, sizeof(c1), "%u", ts[i].max_attempts);
            snprintf(c2, sizeof(c2), "%u", ts[i].max_age_s);
            snprintf(c4, sizeof(c4), "%" PRIu64, backlog);
            const char *row[] = {ts[i].id, c1,
                                 c2,       ts[i].dead_letter[0] ? ts[i].dead_letter : "-",
                                 c4,       target_shape(&ts[i], shape, sizeof(shape))};
            table_add(&t, row);
        }
        table_print_free(&t);
    }
    evbus_target_list_free(ts, n);
    return rc;
}

static int cmd_target_describe(struct cli *cli, const struct args *a)
{
    if (connect_client(cli) != 0)
        return EXIT_FAIL;
    evbus_target_info *t = NULL;
    int rc = evbus_target_describe(cli->client, a->pos[0], a->pos[1], &t);
    if (rc != 0)
        return sdk_fail(cli, rc);
    if (cli->json)
        rc = print_json(target_json(t));
    else
        target_print(t);
    evbus_target_info_free(t);
    return rc;
}
