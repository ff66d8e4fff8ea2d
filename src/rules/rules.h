/*
 * rules: EventBridge event patterns, parsed, validated and compiled into one
 * matcher per bus. Pure C: no I/O, no loop, no global state; usable and testable
 * alone. Callers serialise access to one rules_matcher (the server uses it from
 * its loop thread only).
 *
 * Two layers:
 *  - rules_pattern: one parsed and validated pattern (an AST in DNF: an OR of
 *    conjunctions of field conditions, after expanding $or). It can evaluate an
 *    event on its own (rules_pattern_match: the simple reference evaluator, also
 *    used by `evbusctl test-pattern` and by the tests as the oracle).
 *  - rules_matcher: every rule of a bus compiled into one shared structure
 *    (field paths drive per-field automata shared by all rules, as in
 *    aws/event-ruler and quamina): one pass over the event text yields every
 *    matching rule id. Adding and deleting a rule is incremental.
 *
 * Errors: functions return 0 or a negative EVBUS_* code (include/evbus/errors.h);
 * EVBUS_EINVAL with a message naming the problem and the path for a bad pattern
 * or event (messages follow event-ruler's wording, e.g. `"detail.count" must be
 * an object or an array`, `Empty arrays are not allowed`, `Unrecognized match
 * type NUMERIC`, `Bad numeric range operator: >`, `Consecutive wildcard
 * characters at pos 2`, `Malformed CIDR, one '/' required`).
 */
#ifndef EVBUS_RULES_H
#define EVBUS_RULES_H

#include <stddef.h>
#include <stdint.h>

#define RULES_DEFAULT_MAX_PATTERN_BYTES 4096u

typedef struct rules_limits {
    size_t max_pattern_bytes; /* 0: RULES_DEFAULT_MAX_PATTERN_BYTES */
} rules_limits;

typedef struct rules_pattern rules_pattern;

/*
 * Parses and validates a pattern (JSON text of `len` bytes). On success *out is
 * owned by the caller (rules_pattern_free). On error *out is NULL and `err`
 * (err_len bytes) holds the message. Errors: EVBUS_EINVAL, EVBUS_ETOOBIG (over
 * the size limit), EVBUS_ENOMEM.
 */
int rules_pattern_parse(const char *json, size_t len, const rules_limits *limits,
                        rules_pattern **out, char *err, size_t err_len);
void rules_pattern_free(rules_pattern *p);

/*
 * Reference evaluation of one pattern against one event (JSON text). Sets
 * *matched to 1 or 0. When not matched and `explain` is not NULL, it receives the
 * first field that failed and why. Errors: EVBUS_EINVAL (event is not a JSON
 * object; message in explain when given).
 */
int rules_pattern_match(const rules_pattern *p, const char *event, size_t len, int *matched,
                        char *explain, size_t explain_len);

/* Bytes of memory the pattern's compiled form occupies (for limits and reports). */
size_t rules_pattern_memory(const rules_pattern *p);

typedef struct rules_matcher rules_matcher;

int rules_matcher_new(rules_matcher **out);
void rules_matcher_free(rules_matcher *m);

/* Adds (or replaces) rule `id` with pattern `p` (borrowed: the matcher copies what it needs).
 * Errors: EVBUS_ENOMEM. */
int rules_matcher_add(rules_matcher *m, uint64_t id, const rules_pattern *p);

/* Removes rule `id`, freeing every state only it used. Errors: EVBUS_ENOTFOUND. */
int rules_matcher_delete(rules_matcher *m, uint64_t id);

/*
 * Matches one event (JSON text) against every rule: writes up to `max` matching
 * rule ids (each once, ascending) into ids and their count into *n (the full
 * count, which may exceed max). Errors: EVBUS_EINVAL (event is not a JSON
 * object; message in err).
 */
int rules_matcher_match(rules_matcher *m, const char *event, size_t len, uint64_t *ids, size_t max,
                        size_t *n, char *err, size_t err_len);

size_t rules_matcher_rule_count(const rules_matcher *m);
/* Total bytes held by the matcher. */
size_t rules_matcher_memory(const rules_matcher *m);

#endif
