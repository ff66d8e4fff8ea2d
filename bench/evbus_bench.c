/*
 * evbus-bench: load generator and latency meter, built only on the public SDK.
 *
 *   evbus-bench MODE --flag value ...      (also --flag=value)
 *
 * Structure: two tables. MODES names each mode and its run function; FLAGS
 * names every flag once, with its type, bounds, default, help and the set of
 * modes that accept it (and require it). Parsing fills one struct bench_opts
 * from FLAGS, so a new mode (e2e, match, replay) is one row in MODES, a bit in
 * enum mode_bit, its flags' bits, and a run function. An unknown mode, an
 * unknown flag or a flag the mode does not take prints the usage and exits 2.
 *
 * publish: C worker threads, each with its own evbus_client (the SDK is not
 * thread-safe and starts no threads: one client per thread, polled by that
 * thread). Each worker keeps K PutEvents requests of N entries in flight with
 * evbus_put_events_async() and drives its client with evbus_client_poll().
 * A request's latency runs from just before the send call to the start of its
 * callback, so it includes queueing in the SDK, the network, group commit and
 * Raft commit: what a producer waits for an acknowledgement.
 *
 * Phases of a worker: connect -> start gate (every worker connected, so connect
 * time is not measured) -> send for S seconds -> drain (no new sends; wait for
 * the requests in flight, bounded by the SDK's call timeout plus slack) ->
 * destroy (anything still pending completes with EVBUS_ECANCELED and counts
 * as an error). Throughput is acknowledged events over the time from the
 * first worker's start to the last worker's drain end, so a slow tail is not
 * hidden by stopping the clock at S.
 *
 * Latency samples are kept per worker, up to LAT_CAP_PER_WORKER; past that a
 * reservoir (Algorithm R) keeps a uniform sample, so memory is bounded for long
 * runs. Percentiles are nearest-rank over the sorted union of all workers.
 *
 * Errors: "errors" counts events that were not acknowledged: entries the
 * server rejected plus every entry of a request that failed as a whole
 * (connection loss, timeout, cancel); request_errors counts those requests.
 * If any of the C connections cannot be made, nothing is measured: a run with
 * fewer connections than asked for would be reported as the wrong setup.
 * Exit status: 0 when the run finished with at least one acknowledged event,
 * 1 when it could not run (a connection failed, bus creation failed, nothing
 * acknowledged), 2 for usage errors.
 *
 * match: no server. Loads rules (JSON lines: {"name":..,"pattern":{..}} or a
 * bare pattern per line) into one rules_matcher, reads the events file (JSON
 * lines, gzipped or not) into memory, then matches every event --passes times
 * on the calling thread. Only the matching loop is timed: what one core of a
 * node spends per event. Prints events/s, MB/s (10^6 bytes of event text),
 * the matcher's memory and the match count of each rule (first pass).
 *
 * Output: text, or with --json exactly one JSON object on stdout (diagnostics
 * go to stderr) with mode, connections, batch, size, inflight, duration_s (as
 * asked), elapsed_s (measured), events (acknowledged), events_per_s, mb_per_s
 * (10^6 bytes of event detail per second), p50_us, p99_us, p999_us, errors,
 * request_errors, connection_errors, requests, latency_samples, first_error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* jansson's json_string() would clash with this file's JSON printer of that name; match mode
 * needs only json_loadb/json_dumps. */
#define json_string jansson_json_string
#include <jansson.h>
#undef json_string
#include <zlib.h>

#include "evbus/evbus.h"
#include "rules/rules.h"

/* The server's default --max-frame-bytes; a request over it is refused whole. */
#define BENCH_MAX_REQUEST_BYTES (4u << 20)
/* Per-entry overhead in a request besides the detail: source, detail-type, protobuf tags. */
#define BENCH_ENTRY_OVERHEAD 64u
#define BENCH_CALL_TIMEOUT_MS 10000u
#define BENCH_POLL_MS 100u
#define LAT_CAP_PER_WORKER (1u << 22) /* 16 MiB of samples per worker */

/* ------------------------------------------------------------------ options */

enum mode_bit {
    M_PUBLISH = 1u << 0,
    M_MATCH = 1u << 1,
};

struct bench_opts {
    const struct mode *mode;
    const char *servers;
    const char *bus;
    uint32_t connections;
    uint32_t batch;
    uint32_t size;
    uint32_t duration_s;
    uint32_t inflight;
    uint32_t partitions;
    int create_bus;
    int json;
    const char *rules_path;  /* match */
    const char *events_path; /* match */
    uint32_t passes;         /* match */
};

enum flag_kind { F_STR, F_U32, F_BOOL };

struct flag {
    const char *name;
    enum flag_kind kind;
    size_t offset; /* into struct bench_opts */
    uint32_t min;  /* F_U32 bounds */
    uint32_t max;
    const char *def; /* default as text; NULL: none */
    unsigned modes;  /* modes that accept the flag */
    unsigned required;
    const char *help;
};

#define OPT(field) offsetof(struct bench_opts, field)

/* The one list of flags. Bounds keep every run finite and every request under the frame limit. */
static const struct flag FLAGS[] = {
    {"servers", F_STR, OPT(servers), 0, 0, NULL, M_PUBLISH, M_PUBLISH,
     "host:port[,host:port...] of the cluster"},
    {"bus", F_STR, OPT(bus), 0, 0, NULL, M_PUBLISH, M_PUBLISH, "event bus to publish to"},
    {"connections", F_U32, OPT(connections), 1, 1024, "1", M_PUBLISH, 0,
     "client connections, one thread each"},
    {"batch", F_U32, OPT(batch), 1, EVBUS_MAX_ENTRIES_PER_PUT, "1", M_PUBLISH, 0,
     "events per PutEvents request"},
    {"size", F_U32, OPT(size), 1, EVBUS_MAX_ENTRY_BYTES - 1024, "256", M_PUBLISH, 0,
     "bytes of each event's detail, a padded JSON object"},
    {"duration", F_U32, OPT(duration_s), 1, 3600, "10", M_PUBLISH, 0, "seconds of sending"},
    {"inflight", F_U32, OPT(inflight), 1, 1024, "1", M_PUBLISH, 0,
     "requests in flight per connection"},
    {"create-bus", F_BOOL, OPT(create_bus), 0, 0, NULL, M_PUBLISH, 0,
     "create the bus first (an existing bus is fine)"},
    {"partitions", F_U32, OPT(partitions), 0, 1024, "0", M_PUBLISH, 0,
     "partitions for --create-bus (0: server default)"},
    {"json", F_BOOL, OPT(json), 0, 0, NULL, M_PUBLISH | M_MATCH, 0,
     "print one JSON object instead of text"},
    {"rules", F_STR, OPT(rules_path), 0, 0, NULL, M_MATCH, M_MATCH,
     "rules file: JSON lines {\"name\":..,\"pattern\":{..}} or one pattern per line"},
    {"events", F_STR, OPT(events_path), 0, 0, NULL, M_MATCH, M_MATCH,
     "events file: one JSON object per line, gzipped or not"},
    {"passes", F_U32, OPT(passes), 1, 1000000, "1", M_MATCH, 0,
     "times the loaded events are matched (small files, stable timings)"},
};
#define N_FLAGS (sizeof(FLAGS) / sizeof(FLAGS[0]))

static int run_publish(const struct bench_opts *o);
static int run_match(const struct bench_opts *o);

struct mode {
    const char *name;
    unsigned bit;
    int (*run)(const struct bench_opts *o);
    const char *summary;
};

static const struct mode MODES[] = {
    {"publish", M_PUBLISH, run_publish,
     "C connections each keep K requests of N events in flight for S seconds"},
    {"match", M_MATCH, run_match,
     "match events from a file against rules from a file on one core (no server)"},
};
#define N_MODES (sizeof(MODES) / sizeof(MODES[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: evbus-bench MODE [--flag value]...\n\nmodes:\n");
    for (size_t m = 0; m < N_MODES; m++)
        fprintf(out, "  %-10s %s\n", MODES[m].name, MODES[m].summary);
    fprintf(out, "\nflags:\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const struct flag *f = &FLAGS[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s%s", f->name, f->kind == F_BOOL ? "" : " VALUE");
        fprintf(out, "  %-22s %s", left, f->help);
        if (f->kind == F_U32)
            fprintf(out, " [%" PRIu32 "..%" PRIu32 ", default %s]", f->min, f->max, f->def);
        fprintf(out, " (");
        const char *sep = "";
        for (size_t m = 0; m < N_MODES; m++) {
            if (f->modes & MODES[m].bit) {
                fprintf(out, "%s%s%s", sep, MODES[m].name,
                        (f->required & MODES[m].bit) ? ", required" : "");
                sep = "; ";
            }
        }
        fprintf(out, ")\n");
    }
}

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "evbus-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n");
    va_end(ap);
    usage(stderr);
    return 2;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int set_flag(struct bench_opts *o, const struct flag *f, const char *value)
{
    void *field = (char *)o + f->offset;
    switch (f->kind) {
    case F_STR:
        if (value[0] == '\0')
            return usage_error("--%s needs a non-empty value", f->name);
        *(const char **)field = value;
        return 0;
    case F_U32:
        if (parse_u32(value, f->min, f->max, (uint32_t *)field) != 0)
            return usage_error("--%s: '%s' is not a number in [%" PRIu32 ", %" PRIu32 "]", f->name,
                               value, f->min, f->max);
        return 0;
    case F_BOOL: *(int *)field = 1; return 0;
    }
    return usage_error("--%s: bad flag kind", f->name);
}

/* Fills *o from argv (after the mode). 0, or an exit status (2) after printing the usage. */
static int parse_flags(int argc, char **argv, struct bench_opts *o)
{
    unsigned bit = o->mode->bit;
    for (size_t i = 0; i < N_FLAGS; i++) {
        if ((FLAGS[i].modes & bit) && FLAGS[i].def != NULL) {
            int rv = set_flag(o, &FLAGS[i], FLAGS[i].def);
            if (rv != 0)
                return rv;
        }
    }
    unsigned char seen[N_FLAGS] = {0};
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("unexpected argument '%s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const struct flag *f = NULL;
        for (size_t i = 0; i < N_FLAGS && f == NULL; i++)
            if (strlen(FLAGS[i].name) == name_len && strncmp(FLAGS[i].name, name, name_len) == 0)
                f = &FLAGS[i];
        if (f == NULL)
            return usage_error("unknown flag '%s'", arg);
        if (!(f->modes & bit))
            return usage_error("--%s does not apply to mode %s", f->name, o->mode->name);
        seen[f - FLAGS] = 1;
        const char *value;
        if (f->kind == F_BOOL) {
            if (eq != NULL)
                return usage_error("--%s takes no value", f->name);
            value = "";
        } else if (eq != NULL) {
            value = eq + 1;
        } else if (a + 1 < argc) {
            value = argv[++a];
        } else {
            return usage_error("--%s needs a value", f->name);
        }
        int rv = set_flag(o, f, value);
        if (rv != 0)
            return rv;
    }
    for (size_t i = 0; i < N_FLAGS; i++)
        if ((FLAGS[i].required & bit) && !seen[i])
            return usage_error("mode %s needs --%s", o->mode->name, FLAGS[i].name);
    return 0;
}

/* -------------------------------------------------------------------- util */

static atomic_int stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, 1);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples; 0 when there are none. */
static uint32_t percentile(const uint32_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* Writes s as a JSON string literal. */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* ------------------------------------------------------------------ publish */

struct worker;

/* One request slot; a worker has `inflight` of them. */
struct slot {
    struct worker *w;
    uint64_t sent_ns;
    int busy; /* sent, callback not yet run */
};

/*
 * Start line: workers connect, report ready and wait until the main thread
 * opens it. (A pthread barrier cannot be used: its count is fixed before we
 * know how many threads really started.)
 */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t ready;
    int open;
};

struct worker {
    pthread_t tid;
    uint32_t index;
    const struct bench_opts *o;
    struct gate *gate;
    evbus_client *client;
    int connect_rv; /* 0, or why the client could not be created */

    char *detail; /* this worker's event detail; every entry points at it */
    size_t detail_len;
    evbus_entry *entries;
    struct slot *slots;
    uint32_t busy;
    int fatal; /* a failure that retrying cannot fix (no such bus...): stop sending */

    uint64_t start_ns, end_ns;
    uint64_t events_ok, events_failed, requests_ok, requests_failed, conn_errors;
    uint64_t payload_bytes_ok;
    char first_error[320];

    uint32_t *lat_us; /* samples, at most LAT_CAP_PER_WORKER */
    size_t n_lat;
    size_t cap_lat;
    uint64_t lat_seen; /* samples offered, for the reservoir */
    uint64_t rng;
};

static void note_error(struct worker *w, const char *fmt, ...)
{
    if (w->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
    va_end(ap);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void record_latency(struct worker *w, uint64_t ns)
{
    uint64_t us = ns / 1000u;
    uint32_t v = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    uint64_t i = w->lat_seen++;
    if (w->n_lat < LAT_CAP_PER_WORKER) {
        if (w->n_lat == w->cap_lat) {
            /* Grow by doubling: short runs stay small, long ones stop at the cap. */
            size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
            uint32_t *nl = realloc(w->lat_us, cap * sizeof(*nl));
            if (nl == NULL)
                return; /* a lost sample only thins the percentiles */
            w->lat_us = nl;
            w->cap_lat = cap;
        }
        w->lat_us[w->n_lat++] = v;
        return;
    }
    uint64_t j = xorshift(&w->rng) % (i + 1);
    if (j < LAT_CAP_PER_WORKER)
        w->lat_us[j] = v;
}

static void on_put(void *arg, int status, const evbus_put_result *results, size_t n)
{
    struct slot *s = arg;
    struct worker *w = s->w;
    uint64_t now = mono_ns();
    s->busy = 0;
    w->busy--;
    if (status != 0) {
        w->requests_failed++;
        w->events_failed += w->o->batch;
        note_error(w, "request: %s (%s)", evbus_errname(status), evbus_strerror(status));
        if (!evbus_is_retriable(status))
            w->fatal = 1;
        return;
    }
    w->requests_ok++;
    record_latency(w, now - s->sent_ns);
    for (size_t i = 0; i < n; i++) {
        if (results[i].code == 0) {
            w->events_ok++;
            w->payload_bytes_ok += w->detail_len;
        } else {
            w->events_failed++;
            note_error(w, "entry: %s: %s", evbus_errname(results[i].code), results[i].message);
        }
    }
}

/* Builds the detail: {"bench":"evbus-bench","worker":W,"pad":"xxx..."} of about `size` bytes. */
static int make_detail(struct worker *w)
{
    char head[64];
    int hlen = snprintf(head, sizeof(head),
                        "{\"bench\":\"evbus-bench\",\"worker\":%" PRIu32 ",\"pad\":\"", w->index);
    size_t tail = 2; /* "} */
    size_t pad = w->o->size > (size_t)hlen + tail ? w->o->size - (size_t)hlen - tail : 0;
    w->detail_len = (size_t)hlen + pad + tail;
    w->detail = malloc(w->detail_len + 1);
    if (w->detail == NULL)
        return EVBUS_ENOMEM;
    memcpy(w->detail, head, (size_t)hlen);
    memset(w->detail + hlen, 'x', pad);
    memcpy(w->detail + (size_t)hlen + pad, "\"}", 3);
    return 0;
}

/*
 * Sends into every free slot. Returns 0, or the error of a send that failed:
 * the SDK refuses a send only for reasons that do not go away (bad bus name,
 * request too big, client closing), so the worker stops sending.
 */
static int fill_slots(struct worker *w)
{
    const struct bench_opts *o = w->o;
    for (uint32_t i = 0; i < o->inflight; i++) {
        struct slot *s = &w->slots[i];
        if (s->busy)
            continue;
        s->busy = 1;
        w->busy++;
        s->sent_ns = mono_ns();
        int rv = evbus_put_events_async(w->client, o->bus, w->entries, o->batch, on_put, s);
        if (rv != 0) {
            /* The callback will not run: undo here. */
            s->busy = 0;
            w->busy--;
            w->requests_failed++;
            w->events_failed += o->batch;
            note_error(w, "send: %s: %s", evbus_errname(rv), evbus_client_errmsg(w->client));
            return rv;
        }
    }
    return 0;
}

static void *publish_worker(void *arg)
{
    struct worker *w = arg;
    const struct bench_opts *o = w->o;
    evbus_client_options opts;
    evbus_client_options_init(&opts);
    opts.servers = o->servers;
    opts.client_name = "evbus-bench";
    opts.timeout_ms = BENCH_CALL_TIMEOUT_MS;
    w->connect_rv = evbus_client_create(&opts, &w->client);
    if (w->connect_rv != 0)
        note_error(w, "connect %s: %s", o->servers, evbus_errname(w->connect_rv));
    /* Everyone waits here, connected or not, so the main thread can decide to go on or stop. */
    pthread_mutex_lock(&w->gate->mu);
    w->gate->ready++;
    pthread_cond_broadcast(&w->gate->cv);
    while (!w->gate->open)
        pthread_cond_wait(&w->gate->cv, &w->gate->mu);
    pthread_mutex_unlock(&w->gate->mu);
    if (w->connect_rv != 0 || atomic_load(&stop_requested))
        return NULL;

    w->start_ns = mono_ns();
    uint64_t send_end = w->start_ns + (uint64_t)o->duration_s * 1000000000u;
    while (!atomic_load(&stop_requested) && !w->fatal) {
        uint64_t now = mono_ns();
        if (now >= send_end)
            break;
        if (fill_slots(w) != 0)
            break;
        uint64_t left_ms = (send_end - now) / 1000000u;
        uint32_t wait_ms = left_ms < BENCH_POLL_MS ? (uint32_t)left_ms + 1 : BENCH_POLL_MS;
        int rv = evbus_client_poll(w->client, wait_ms);
        if (rv < 0) {
            /* Lost requests already completed through their callbacks; the SDK reconnects. */
            w->conn_errors++;
            note_error(w, "poll: %s: %s", evbus_errname(rv), evbus_client_errmsg(w->client));
            sleep_ms(10);
        }
    }
    /* Drain: the SDK times every request out after its call timeout, so this ends. */
    uint64_t drain_end = mono_ns() + (uint64_t)(BENCH_CALL_TIMEOUT_MS + 2000u) * 1000000u;
    while (w->busy > 0 && mono_ns() < drain_end) {
        if (evbus_client_poll(w->client, BENCH_POLL_MS) < 0)
            w->conn_errors++;
    }
    w->end_ns = mono_ns();
    /* Whatever is still pending completes here with EVBUS_ECANCELED and counts as failed. */
    evbus_client_destroy(w->client);
    w->client = NULL;
    return NULL;
}

static int create_bus(const struct bench_opts *o)
{
    evbus_client_options opts;
    evbus_client_options_init(&opts);
    opts.servers = o->servers;
    opts.client_name = "evbus-bench";
    opts.timeout_ms = BENCH_CALL_TIMEOUT_MS;
    evbus_client *c = NULL;
    int rv = evbus_client_create(&opts, &c);
    if (rv != 0) {
        fprintf(stderr, "evbus-bench: connect %s: %s\n", o->servers, evbus_strerror(rv));
        return rv;
    }
    rv = evbus_bus_create(c, o->bus, o->partitions);
    if (rv == EVBUS_EEXIST)
        rv = 0;
    else if (rv != 0)
        fprintf(stderr, "evbus-bench: create bus %s: %s: %s\n", o->bus, evbus_strerror(rv),
                evbus_client_errmsg(c));
    evbus_client_destroy(c);
    return rv;
}

struct totals {
    uint64_t events_ok, events_failed, requests_ok, requests_failed, conn_errors, payload_bytes;
    double elapsed_s;
    size_t samples;
    uint32_t p50_us, p99_us, p999_us;
    const char *first_error;
};

static int sum_workers(struct worker *ws, uint32_t n, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    uint64_t start = UINT64_MAX, end = 0;
    size_t n_samples = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct worker *w = &ws[i];
        t->events_ok += w->events_ok;
        t->events_failed += w->events_failed;
        t->requests_ok += w->requests_ok;
        t->requests_failed += w->requests_failed;
        t->conn_errors += w->conn_errors;
        t->payload_bytes += w->payload_bytes_ok;
        n_samples += w->n_lat;
        if (t->first_error == NULL && w->first_error[0] != '\0')
            t->first_error = w->first_error;
        if (w->start_ns != 0 && w->start_ns < start)
            start = w->start_ns;
        if (w->end_ns > end)
            end = w->end_ns;
    }
    t->elapsed_s = end > start ? (double)(end - start) / 1e9 : 0.0;
    uint32_t *all = malloc((n_samples ? n_samples : 1) * sizeof(*all));
    if (all == NULL)
        return EVBUS_ENOMEM;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ws[i].n_lat > 0)
            memcpy(all + k, ws[i].lat_us, ws[i].n_lat * sizeof(*all));
        k += ws[i].n_lat;
    }
    qsort(all, n_samples, sizeof(*all), cmp_u32);
    t->samples = n_samples;
    t->p50_us = percentile(all, n_samples, 0.50);
    t->p99_us = percentile(all, n_samples, 0.99);
    t->p999_us = percentile(all, n_samples, 0.999);
    free(all);
    return 0;
}

static void report_publish(const struct bench_opts *o, const struct totals *t)
{
    double eps = t->elapsed_s > 0 ? (double)t->events_ok / t->elapsed_s : 0.0;
    double mbps = t->elapsed_s > 0 ? (double)t->payload_bytes / 1e6 / t->elapsed_s : 0.0;
    if (o->json) {
        printf("{\"mode\":\"publish\",\"connections\":%" PRIu32 ",\"batch\":%" PRIu32
               ",\"size\":%" PRIu32 ",\"inflight\":%" PRIu32 ",\"duration_s\":%" PRIu32
               ",\"elapsed_s\":%.3f,\"events\":%" PRIu64 ",\"events_per_s\":%.1f,\"mb_per_s\":%.3f"
               ",\"p50_us\":%" PRIu32 ",\"p99_us\":%" PRIu32 ",\"p999_us\":%" PRIu32
               ",\"errors\":%" PRIu64 ",\"request_errors\":%" PRIu64
               ",\"connection_errors\":%" PRIu64 ",\"requests\":%" PRIu64
               ",\"latency_samples\":%zu,\"first_error\":",
               o->connections, o->batch, o->size, o->inflight, o->duration_s, t->elapsed_s,
               t->events_ok, eps, mbps, t->p50_us, t->p99_us, t->p999_us, t->events_failed,
               t->requests_failed, t->conn_errors, t->requests_ok, t->samples);
        if (t->first_error != NULL)
            json_string(stdout, t->first_error);
        else
            fputs("null", stdout);
        fputs("}\n", stdout);
        return;
    }
    printf("evbus-bench publish: %" PRIu32 " connections, batch %" PRIu32 ", %" PRIu32
           " B events, %" PRIu32 " in flight, %.2f s\n",
           o->connections, o->batch, o->size, o->inflight, t->elapsed_s);
    printf("  events      %" PRIu64 " acknowledged, %" PRIu64 " errors (%" PRIu64
           " failed requests, %" PRIu64 " connection errors)\n",
           t->events_ok, t->events_failed, t->requests_failed, t->conn_errors);
    printf("  throughput  %.0f events/s, %.2f MB/s of event payload\n", eps, mbps);
    printf("  latency     p50 %" PRIu32 " us, p99 %" PRIu32 " us, p999 %" PRIu32
           " us (%zu requests)\n",
           t->p50_us, t->p99_us, t->p999_us, t->samples);
    if (t->first_error != NULL)
        printf("  first error %s\n", t->first_error);
}

static int run_publish(const struct bench_opts *o)
{
    if ((uint64_t)o->batch * (o->size + BENCH_ENTRY_OVERHEAD + 64u) > BENCH_MAX_REQUEST_BYTES)
        return usage_error("--batch %" PRIu32 " x --size %" PRIu32
                           " exceeds the %u-byte request limit",
                           o->batch, o->size, BENCH_MAX_REQUEST_BYTES);
    if (o->create_bus && create_bus(o) != 0)
        return 1;

    int status = 1;
    uint32_t n = o->connections;
    struct worker *ws = calloc(n, sizeof(*ws));
    struct gate gate = {.ready = 0, .open = 0};
    if (ws == NULL || pthread_mutex_init(&gate.mu, NULL) != 0) {
        fprintf(stderr, "evbus-bench: out of memory\n");
        free(ws);
        return 1;
    }
    if (pthread_cond_init(&gate.cv, NULL) != 0) {
        fprintf(stderr, "evbus-bench: out of memory\n");
        pthread_mutex_destroy(&gate.mu);
        free(ws);
        return 1;
    }
    uint32_t prepared = 0;
    for (; prepared < n; prepared++) {
        struct worker *w = &ws[prepared];
        w->index = prepared;
        w->o = o;
        w->gate = &gate;
        w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)prepared << 32 | 1u);
        w->entries = calloc(o->batch, sizeof(*w->entries));
        w->slots = calloc(o->inflight, sizeof(*w->slots));
        if (w->entries == NULL || w->slots == NULL || make_detail(w) != 0) {
            fprintf(stderr, "evbus-bench: out of memory\n");
            goto out;
        }
        for (uint32_t i = 0; i < o->batch; i++) {
            w->entries[i].source = "evbus.bench";
            w->entries[i].detail_type = "BenchEvent";
            w->entries[i].detail = w->detail;
        }
        for (uint32_t i = 0; i < o->inflight; i++)
            w->slots[i].w = w;
    }
    uint32_t started = 0;
    for (; started < n; started++) {
        if (pthread_create(&ws[started].tid, NULL, publish_worker, &ws[started]) != 0) {
            fprintf(stderr, "evbus-bench: cannot start thread %" PRIu32 "\n", started);
            break;
        }
    }
    /* Each started worker reports ready within its connect timeout, so this wait ends. */
    pthread_mutex_lock(&gate.mu);
    while (gate.ready < started)
        pthread_cond_wait(&gate.cv, &gate.mu);
    int connect_failed = started < n;
    for (uint32_t i = 0; i < started; i++)
        connect_failed |= ws[i].connect_rv != 0;
    /* Measure all connections or none: a partial run would report a different setup. */
    if (connect_failed)
        atomic_store(&stop_requested, 1);
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);

    for (uint32_t i = 0; i < started; i++) {
        if (ws[i].connect_rv != 0) {
            connect_failed = 1;
            fprintf(stderr, "evbus-bench: connection %" PRIu32 ": %s\n", i, ws[i].first_error);
        }
    }
    struct totals t;
    if (connect_failed)
        goto out;
    if (sum_workers(ws, started, &t) != 0) {
        fprintf(stderr, "evbus-bench: out of memory\n");
        goto out;
    }
    report_publish(o, &t);
    status = (connect_failed || t.events_ok == 0) ? 1 : 0;

out:
    for (uint32_t i = 0; i < n; i++) {
        free(ws[i].entries);
        free(ws[i].slots);
        free(ws[i].lat_us);
        free(ws[i].detail);
    }
    pthread_cond_destroy(&gate.cv);
    pthread_mutex_destroy(&gate.mu);
    free(ws);
    return status;
}

/* -------------------------------------------------------------------- match */

struct rule_set {
    char **names;
    size_t n, cap;
};

static void rule_set_free(struct rule_set *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->names[i]);
    free(rs->names);
}

/* Reads a whole file, gunzipping when it is gzipped (zlib reads plain files unchanged). */
static int read_all(const char *path, char **out, size_t *len)
{
    gzFile gz = gzopen(path, "rb");
    if (gz == NULL) {
        fprintf(stderr, "evbus-bench: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    gzbuffer(gz, 1u << 18);
    size_t cap = 1u << 20, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fprintf(stderr, "evbus-bench: out of memory reading %s\n", path);
            gzclose(gz);
            return -1;
        }
        if (cap - n < (1u << 16)) {
            char *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = b;
            cap *= 2;
        }
        int k = gzread(gz, buf + n, (unsigned)(cap - n - 1));
        if (k < 0) {
            int zerr;
            fprintf(stderr, "evbus-bench: %s: %s\n", path, gzerror(gz, &zerr));
            free(buf);
            gzclose(gz);
            return -1;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    gzclose(gz);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/*
 * Loads rules: each non-blank line is {"name":..,"pattern":{..}} or a bare pattern. Rule i gets
 * id i. Returns 0, or 1 after printing why a line was refused.
 */
static int load_rules(const char *path, rules_matcher *m, struct rule_set *rs)
{
    char *text;
    size_t len;
    if (read_all(path, &text, &len) != 0)
        return 1;
    int status = 1;
    size_t lineno = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        lineno++;
        char *next = nl ? nl + 1 : text + len;
        if (blank(line, n)) {
            line = next;
            continue;
        }
        char name[64];
        snprintf(name, sizeof(name), "rule%zu", lineno);
        const char *pat = line;
        size_t pat_len = n;
        char *dumped = NULL;
        json_error_t jerr;
        json_t *j = json_loadb(line, n, 0, &jerr);
        json_t *jp = j != NULL ? json_object_get(j, "pattern") : NULL;
        if (json_is_object(jp)) {
            json_t *jn = json_object_get(j, "name");
            if (json_is_string(jn))
                snprintf(name, sizeof(name), "%s", json_string_value(jn));
            dumped = json_dumps(jp, JSON_COMPACT);
            pat = dumped;
            pat_len = dumped ? strlen(dumped) : 0;
        }
        rules_pattern *p = NULL;
        char err[512];
        rules_limits limits = {.max_pattern_bytes = 1u << 20};
        int rc = pat != NULL ? rules_pattern_parse(pat, pat_len, &limits, &p, err, sizeof(err))
                             : EVBUS_ENOMEM;
        if (rc == 0)
            rc = rules_matcher_add(m, rs->n, p);
        else
            fprintf(stderr, "evbus-bench: %s:%zu: %s\n", path, lineno, err);
        rules_pattern_free(p);
        free(dumped);
        json_decref(j);
        if (rc != 0)
            goto out;
        if (rs->n == rs->cap) {
            size_t cap = rs->cap ? rs->cap * 2 : 64;
            char **nn = realloc(rs->names, cap * sizeof(*nn));
            if (nn == NULL)
                goto out;
            rs->names = nn;
            rs->cap = cap;
        }
        rs->names[rs->n] = strdup(name);
        if (rs->names[rs->n] == NULL)
            goto out;
        rs->n++;
        line = next;
    }
    status = rs->n > 0 ? 0 : 1;
    if (rs->n == 0)
        fprintf(stderr, "evbus-bench: %s holds no rules\n", path);
out:
    free(text);
    return status;
}

static int run_match(const struct bench_opts *o)
{
    int status = 1;
    rules_matcher *m = NULL;
    struct rule_set rs = {0};
    char *events = NULL;
    size_t events_len = 0;
    size_t *offs = NULL;
    uint64_t *counts = NULL, *ids = NULL;
    if (rules_matcher_new(&m) != 0) {
        fprintf(stderr, "evbus-bench: out of memory\n");
        return 1;
    }
    uint64_t t0 = mono_ns();
    if (load_rules(o->rules_path, m, &rs) != 0)
        goto out;
    double load_s = (double)(mono_ns() - t0) / 1e9;
    if (read_all(o->events_path, &events, &events_len) != 0)
        goto out;
    /* Split into lines: offs[2k] start, offs[2k+1] length. */
    size_t nev = 0, cap = 0, bytes = 0;
    for (char *line = events; line < events + events_len;) {
        char *nl = memchr(line, '\n', (size_t)(events + events_len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(events + events_len - line);
        if (!blank(line, n)) {
            if (nev == cap) {
                cap = cap ? cap * 2 : 1024;
                size_t *no = realloc(offs, 2 * cap * sizeof(*no));
                if (no == NULL) {
                    fprintf(stderr, "evbus-bench: out of memory\n");
                    goto out;
                }
                offs = no;
            }
            offs[2 * nev] = (size_t)(line - events);
            offs[2 * nev + 1] = n;
            nev++;
            bytes += n;
        }
        line = nl ? nl + 1 : events + events_len;
    }
    if (nev == 0) {
        fprintf(stderr, "evbus-bench: %s holds no events\n", o->events_path);
        goto out;
    }
    counts = calloc(rs.n, sizeof(*counts));
    ids = malloc(rs.n * sizeof(*ids));
    if (counts == NULL || ids == NULL) {
        fprintf(stderr, "evbus-bench: out of memory\n");
        goto out;
    }
    uint64_t bad = 0, matched_events = 0, total_matches = 0;
    char first_error[320] = "";
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    uint64_t start = mono_ns();
    for (uint32_t pass = 0; pass < o->passes && !atomic_load(&stop_requested); pass++) {
        for (size_t e = 0; e < nev; e++) {
            size_t n = 0;
            char err[256];
            int rc = rules_matcher_match(m, events + offs[2 * e], offs[2 * e + 1], ids, rs.n, &n,
                                         err, sizeof(err));
            if (rc != 0) {
                if (bad++ == 0)
                    snprintf(first_error, sizeof(first_error), "event %zu: %s", e + 1, err);
                continue;
            }
            matched_events += n > 0;
            total_matches += n;
            if (pass == 0)
                for (size_t i = 0; i < n; i++)
                    counts[ids[i]]++;
        }
    }
    double elapsed = (double)(mono_ns() - start) / 1e9;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    /* CPU time of this thread: on a shared machine, wall time also counts other processes. */
    double cpu_s =
        (double)(cpu1.tv_sec - cpu0.tv_sec) + (double)(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9;
    uint64_t done = (uint64_t)nev * o->passes;
    double eps_cpu = cpu_s > 0 ? (double)done / cpu_s : 0;
    double eps = elapsed > 0 ? (double)done / elapsed : 0;
    double mbps = elapsed > 0 ? (double)bytes * o->passes / 1e6 / elapsed : 0;
    size_t mem = rules_matcher_memory(m);
    if (o->json) {
        printf("{\"mode\":\"match\",\"rules\":%zu,\"events\":%zu,\"event_bytes\":%zu,"
               "\"passes\":%" PRIu32 ",\"elapsed_s\":%.3f,\"cpu_s\":%.3f,\"events_per_s\":%.1f,"
               "\"events_per_cpu_s\":%.1f,\"mb_per_s\":%.3f,\"matcher_bytes\":%zu,\"load_s\":%.3f,"
               "\"invalid_events\":%" PRIu64 ",\"matched_events\":%" PRIu64
               ",\"total_matches\":%" PRIu64 ",\"matches\":{",
               rs.n, nev, bytes, o->passes, elapsed, cpu_s, eps, eps_cpu, mbps, mem, load_s, bad,
               matched_events, total_matches);
        for (size_t i = 0; i < rs.n; i++) {
            if (i)
                fputc(',', stdout);
            json_string(stdout, rs.names[i]);
            printf(":%" PRIu64, counts[i]);
        }
        fputs("}}\n", stdout);
    } else {
        printf("evbus-bench match: %zu rules (%zu bytes, %zu B/rule, loaded in %.3f s), %zu events "
               "(%.1f B avg), %" PRIu32 " passes, %.3f s\n",
               rs.n, mem, mem / rs.n, load_s, nev, (double)bytes / (double)nev, o->passes, elapsed);
        printf("  throughput  %.0f events/s, %.1f MB/s (%.0f events per CPU second)\n", eps, mbps,
               eps_cpu);
        printf("  matched     %" PRIu64 " of %" PRIu64 " events, %" PRIu64 " matches, %" PRIu64
               " invalid events%s%s\n",
               matched_events, done, total_matches, bad, bad ? ": " : "", first_error);
        printf("  matches per rule (first pass):\n");
        size_t silent = 0;
        for (size_t i = 0; i < rs.n; i++) {
            if (counts[i] == 0 && rs.n > 50) {
                silent++;
                continue;
            }
            printf("    %-40s %" PRIu64 "\n", rs.names[i], counts[i]);
        }
        if (silent > 0)
            printf("    (%zu more rules matched nothing; --json lists every rule)\n", silent);
    }
    status = 0;
out:
    free(counts);
    free(ids);
    free(offs);
    free(events);
    rule_set_free(&rs);
    rules_matcher_free(m);
    return status;
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("no mode given");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    struct bench_opts o;
    memset(&o, 0, sizeof(o));
    for (size_t m = 0; m < N_MODES && o.mode == NULL; m++)
        if (strcmp(argv[1], MODES[m].name) == 0)
            o.mode = &MODES[m];
    if (o.mode == NULL)
        return usage_error("unknown mode '%s'", argv[1]);
    int rv = parse_flags(argc - 2, argv + 2, &o);
    if (rv != 0)
        return rv;

    /* Ctrl-C ends the sending phase early; the run still drains and reports. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return o.mode->run(&o);
}
