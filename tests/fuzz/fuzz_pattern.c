/*
 * fuzz_pattern: the input is the JSON text of an event pattern.
 *
 * Invalid patterns must be rejected with EVBUS_EINVAL or EVBUS_ETOOBIG, a NULL
 * pattern and a message. A valid pattern is evaluated by the reference
 * evaluator (rules_pattern_match) against a few fixed events, then compiled into
 * a fresh matcher that already holds some background rules: the matcher must
 * answer exactly what the reference answers for every rule, with the pattern
 * added once, added twice (two ids sharing every state), after one of the two is
 * deleted, and after both are deleted. Once the background rules are deleted too,
 * the matcher's memory must be back to its empty size (deleting leaves no
 * garbage; with other rules present it may stay a little above its earlier size,
 * as shared arrays shrink with hysteresis). The pattern is then compiled alone,
 * and the memory it takes must stay within FUZZ_MEM_PER_RULE(pattern bytes).
 * Any disagreement aborts. Sanitizers (address, leak, undefined) catch the rest.
 *
 * Known issue, skipped unless EVBUS_FUZZ_STRICT=1: the matcher's path table
 * (scan.h) has a node per dotted prefix and an edge per pair of split points of
 * every path, so one path with k dots costs O(k^2) edges and O(k * length)
 * bytes of node paths: {"a.a.a...":[1]} of 4 KiB (2000 dots) takes ~90 MB and
 * ~1.6 s to add. Patterns with a path of more than FUZZ_MAX_PATH_DOTS dots are
 * parsed and evaluated but not compiled.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evbus/errors.h"
#include "rules/pattern.h"
#include "rules/rules.h"

#include "fuzz/fuzz_common.h"

/* Values the dictionary (pattern.dict) also names, so mutations reach them. */
static const char *EVENTS[] = {
    "{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\","
    "\"detail-type\":\"EC2 Instance State-change Notification\",\"source\":\"aws.ec2\","
    "\"account\":\"111122223333\",\"time\":\"2017-12-22T18:43:48Z\",\"region\":\"us-west-1\","
    "\"resources\":[\"arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0\"],"
    "\"detail\":{\"instance-id\":\"i-1234567890abcdef0\",\"state\":\"running\",\"count\":300,"
    "\"ratio\":1.5,\"ok\":true,\"bad\":false,\"gone\":null,\"empty\":\"\",\"ip\":\"10.0.0.7\","
    "\"ip6\":\"2001:db8::1\",\"name\":\"\xc3\x89mile\",\"tags\":[\"a\",\"b\",\"Prod\"],"
    "\"nested\":{\"a\":{\"b\":\"x*y\"}},\"neg\":-0.5,\"big\":1e300}}",

    "{\"source\":\"aws.s3\",\"detail-type\":\"Object Created\",\"detail\":{\"state\":\"stopped\","
    "\"count\":-1,\"ip\":\"192.168.1.1\",\"items\":[{\"k\":\"a\",\"v\":1,\"w\":[true,null]},"
    "{\"k\":\"b\",\"v\":2,\"w\":[false]}],\"matrix\":[[1,2],[3,\"x\"]],\"empty-obj\":{},"
    "\"empty-arr\":[]}}",

    "{\"a\":{\"b\":1},\"a.b\":2,\"x\":[[1,2],[3,\"x\"]],\"y\":{},\"z\":[],"
    "\"source\":\"AWS.EC2\",\"detail\":{\"state\":[\"Running\",\"stopped\"],\"count\":\"300\","
    "\"ratio\":3e2,\"ip\":\"::1\",\"nul\":\"a\\u0000b\",\"esc\":\"\\u00c9\\\\*\"}}",

    ("{\"detail\":{\"c-count\":5,\"d-count\":3,\"x-limit\":301.0,\"items\":[{\"k\":\"b\",\"v\":1},"
     "{\"k\":\"a\",\"v\":2}]},\"$or\":[1],\"numeric\":[\"=\",5],\"prefix\":\"pre\"}"),

    "{}",
};
#define NEVENTS (sizeof(EVENTS) / sizeof(EVENTS[0]))

/* Always in the matcher, so the fuzzed pattern shares fields, keys and trees with others. */
static const char *BACKGROUND[] = {
    "{\"source\":[\"aws.ec2\"],\"detail\":{\"state\":[\"running\",{\"prefix\":\"sto\"}]}}",
    ("{\"detail\":{\"count\":[{\"numeric\":[\">\",0,\"<=\",300]}],"
     "\"ip\":[{\"cidr\":\"10.0.0.0/8\"}]}}"),
    "{\"detail\":{\"items\":{\"k\":[\"a\"],\"v\":[1]}}}",
    "{\"detail\":{\"state\":[{\"anything-but\":[\"running\"]}],\"gone\":[{\"exists\":false}]}}",
    "{\"$or\":[{\"a\":{\"b\":[1]}},{\"x\":[{\"wildcard\":\"*\"}]}]}",
    "{\"detail\":{\"name\":[{\"equals-ignore-case\":\"\xc3\xa9mile\"}]}}",
};
#define NBACK (sizeof(BACKGROUND) / sizeof(BACKGROUND[0]))

#define FUZZ_ID_A 1000u
#define FUZZ_ID_B 1001u
#define MAX_IDS 16
#define FUZZ_MAX_PATH_DOTS 32
/* Generous: ordinary patterns take a few KiB of matcher memory, at most ~50x their size. */
#define FUZZ_MEM_PER_RULE(bytes) (64u * 1024u + 256u * (bytes))

static int g_strict;

static rules_pattern *g_back[NBACK];
static int g_back_match[NBACK][NEVENTS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *strict = getenv("EVBUS_FUZZ_STRICT");
    g_strict = strict != NULL && strcmp(strict, "1") == 0;
    char err[256];
    for (size_t i = 0; i < NBACK; i++) {
        int rc = rules_pattern_parse(BACKGROUND[i], strlen(BACKGROUND[i]), NULL, &g_back[i], err,
                                     sizeof(err));
        FUZZ_CHECK(rc == 0, "background rule %zu: %s", i, err);
        for (size_t e = 0; e < NEVENTS; e++) {
            rc = rules_pattern_match(g_back[i], EVENTS[e], strlen(EVENTS[e]), &g_back_match[i][e],
                                     NULL, 0);
            FUZZ_CHECK(rc == 0, "background rule %zu on event %zu: rc %d", i, e, rc);
        }
    }
    return 0;
}

/* The matcher's answer for event e must be the background rules the reference matches, plus
 * the fuzzed pattern's ids (those present) when it matches. */
static void check_event(rules_matcher *m, size_t e, int fuzz_match, int have_a, int have_b)
{
    uint64_t want[MAX_IDS], got[MAX_IDS];
    size_t nwant = 0, ngot = 0;
    for (size_t i = 0; i < NBACK; i++)
        if (g_back_match[i][e])
            want[nwant++] = i + 1;
    if (fuzz_match && have_a)
        want[nwant++] = FUZZ_ID_A;
    if (fuzz_match && have_b)
        want[nwant++] = FUZZ_ID_B;

    char err[256] = "";
    int rc =
        rules_matcher_match(m, EVENTS[e], strlen(EVENTS[e]), got, MAX_IDS, &ngot, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "matcher on event %zu: rc %d: %s", e, rc, err);
    int same = ngot == nwant && memcmp(got, want, nwant * sizeof(uint64_t)) == 0;
    if (!same) {
        char w[256], g[256];
        fuzz_ids_text(want, nwant, w, sizeof(w));
        fuzz_ids_text(got, ngot < MAX_IDS ? ngot : MAX_IDS, g, sizeof(g));
        fuzz_fail("matcher disagrees with the reference on event %zu (ids a=%d b=%d):\n"
                  "  event     %s\n  reference {%s}\n  matcher   {%s} (count %zu)",
                  e, have_a, have_b, EVENTS[e], w, g, ngot);
    }
}

static void check_all(rules_matcher *m, const int *fuzz_match, int have_a, int have_b)
{
    size_t want_rules = NBACK + (size_t)have_a + (size_t)have_b;
    FUZZ_CHECK(rules_matcher_rule_count(m) == want_rules, "rule count %zu, want %zu",
               rules_matcher_rule_count(m), want_rules);
    for (size_t e = 0; e < NEVENTS; e++)
        check_event(m, e, fuzz_match[e], have_a, have_b);
}

static size_t max_path_dots(const rules_pattern *p)
{
    size_t most = 0;
    for (size_t i = 0; i < p->nconjs; i++)
        for (size_t j = 0; j < p->conjs[i].nconds; j++) {
            const rules_str *path = &p->conjs[i].conds[j].path;
            size_t dots = 0;
            for (size_t k = 0; k < path->len; k++)
                dots += path->s[k] == '.';
            most = dots > most ? dots : most;
        }
    return most;
}

static void check_invalid(int rc, const rules_pattern *p, const char *err, size_t err_len)
{
    FUZZ_CHECK(rc == EVBUS_EINVAL || rc == EVBUS_ETOOBIG, "parse: unexpected rc %d", rc);
    FUZZ_CHECK(p == NULL, "parse failed (rc %d) but returned a pattern", rc);
    FUZZ_CHECK(memchr(err, 0, err_len) != NULL, "parse error message not NUL-terminated");
    FUZZ_CHECK(err[0] != 0, "parse failed (rc %d) without a message", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    rules_pattern *p = NULL;
    char err[512];
    memset(err, 'x', sizeof(err));
    int rc = rules_pattern_parse(json, size, NULL, &p, err, sizeof(err));

    /* A tiny message buffer gives the same verdict (and no message buffer at all, which
     * test_rules_conformance checks, goes the same way). */
    rules_pattern *p2 = NULL;
    char small[6];
    int rc2 = rules_pattern_parse(json, size, NULL, &p2, small, sizeof(small));
    FUZZ_CHECK(rc2 == rc, "parse verdict depends on the error buffer: %d vs %d", rc, rc2);
    if (rc != 0) {
        check_invalid(rc, p, err, sizeof(err));
        check_invalid(rc2, p2, small, sizeof(small));
        return 0;
    }
    FUZZ_CHECK(p != NULL && p2 != NULL, "parse succeeded without a pattern");
    FUZZ_CHECK(rules_pattern_memory(p) > 0, "valid pattern with memory 0");
    FUZZ_CHECK(rules_pattern_memory(p) == rules_pattern_memory(p2),
               "parse is not deterministic: %zu vs %zu bytes", rules_pattern_memory(p),
               rules_pattern_memory(p2));
    rules_pattern_free(p2);

    /* The reference evaluator, with and without an explanation. */
    int fuzz_match[NEVENTS];
    for (size_t e = 0; e < NEVENTS; e++) {
        char explain[256];
        int m1 = -1, m2 = -1;
        rc = rules_pattern_match(p, EVENTS[e], strlen(EVENTS[e]), &m1, explain, sizeof(explain));
        FUZZ_CHECK(rc == 0, "reference on event %zu: rc %d", e, rc);
        FUZZ_CHECK(m1 == 0 || m1 == 1, "reference: matched %d", m1);
        FUZZ_CHECK(memchr(explain, 0, sizeof(explain)) != NULL, "explanation not NUL-terminated");
        rc = rules_pattern_match(p, EVENTS[e], strlen(EVENTS[e]), &m2, NULL, 0);
        FUZZ_CHECK(rc == 0 && m1 == m2, "reference: explain changes the answer (%d vs %d)", m1, m2);
        fuzz_match[e] = m1;
    }
    if (!g_strict && max_path_dots(p) > FUZZ_MAX_PATH_DOTS) {
        rules_pattern_free(p);
        return 0;
    }

    /* The compiled matcher, on top of the background rules. */
    rules_matcher *m = NULL;
    rc = rules_matcher_new(&m);
    FUZZ_CHECK(rc == 0, "matcher_new: rc %d", rc);
    size_t empty = rules_matcher_memory(m);
    for (size_t i = 0; i < NBACK; i++) {
        rc = rules_matcher_add(m, i + 1, g_back[i]);
        FUZZ_CHECK(rc == 0, "add background rule %zu: rc %d", i, rc);
    }
    size_t base = rules_matcher_memory(m);

    FUZZ_CHECK(rules_matcher_add(m, FUZZ_ID_A, p) == 0, "add A");
    size_t one = rules_matcher_memory(m);
    FUZZ_CHECK(one - base <= FUZZ_MEM_PER_RULE(size),
               "a pattern of %zu bytes takes %zu bytes in the matcher (bound %zu)", size,
               one - base, (size_t)FUZZ_MEM_PER_RULE(size));
    check_all(m, fuzz_match, 1, 0);
    FUZZ_CHECK(rules_matcher_add(m, FUZZ_ID_B, p) == 0, "add B");
    check_all(m, fuzz_match, 1, 1);
    /* Replacing a rule by the same pattern changes nothing. */
    FUZZ_CHECK(rules_matcher_add(m, FUZZ_ID_A, p) == 0, "replace A");
    check_all(m, fuzz_match, 1, 1);
    FUZZ_CHECK(rules_matcher_delete(m, FUZZ_ID_A) == 0, "delete A");
    check_all(m, fuzz_match, 0, 1);
    FUZZ_CHECK(rules_matcher_delete(m, FUZZ_ID_B) == 0, "delete B");
    check_all(m, fuzz_match, 0, 0);
    FUZZ_CHECK(rules_matcher_delete(m, FUZZ_ID_B) == EVBUS_ENOTFOUND, "delete B twice");
    size_t after = rules_matcher_memory(m);
    for (size_t i = 0; i < NBACK; i++)
        FUZZ_CHECK(rules_matcher_delete(m, i + 1) == 0, "delete background rule %zu", i);
    FUZZ_CHECK(rules_matcher_rule_count(m) == 0, "rules left after deleting all");
    FUZZ_CHECK(rules_matcher_memory(m) == empty,
               "memory not back to the empty size after deleting every rule: %zu, empty %zu "
               "(background %zu, with the pattern %zu, after deleting it %zu)",
               rules_matcher_memory(m), empty, base, one, after);

    /* The pattern alone: no background state to lean on, and the matcher's own baseline. */
    rules_matcher_free(m);
    rc = rules_matcher_new(&m);
    FUZZ_CHECK(rc == 0, "matcher_new: rc %d", rc);
    FUZZ_CHECK(rules_matcher_add(m, FUZZ_ID_A, p) == 0, "add A alone");
    size_t used = rules_matcher_memory(m) - empty;
    FUZZ_CHECK(used <= FUZZ_MEM_PER_RULE(size),
               "a pattern of %zu bytes takes %zu bytes in the matcher (bound %zu)", size, used,
               (size_t)FUZZ_MEM_PER_RULE(size));
    /* Freed now: the matcher must not borrow from the pattern after add. */
    rules_pattern_free(p);
    for (size_t e = 0; e < NEVENTS; e++) {
        uint64_t got[MAX_IDS];
        size_t ngot = 0;
        rc = rules_matcher_match(m, EVENTS[e], strlen(EVENTS[e]), got, MAX_IDS, &ngot, NULL, 0);
        FUZZ_CHECK(rc == 0, "alone: match rc %d", rc);
        FUZZ_CHECK(ngot == (size_t)fuzz_match[e] && (ngot == 0 || got[0] == FUZZ_ID_A),
                   "alone: matcher gives %zu ids on event %zu, reference %d", ngot, e,
                   fuzz_match[e]);
    }
    FUZZ_CHECK(rules_matcher_delete(m, FUZZ_ID_A) == 0, "delete A alone");
    FUZZ_CHECK(rules_matcher_memory(m) == empty, "alone: memory %zu after delete, empty %zu",
               rules_matcher_memory(m), empty);
    rules_matcher_free(m);
    return 0;
}
