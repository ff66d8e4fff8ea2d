/*
 * fuzz_event: the input is the JSON text of an event.
 *
 * A fixed rule set, covering every operator kind of pattern.h, is compiled once
 * into one matcher (kept across inputs, as the server keeps a bus's matcher
 * across events). For each input, the matcher (its own scanner, which never
 * builds a tree) and the reference evaluator (jansson, one pattern at a time)
 * must agree: both reject the text as no JSON object, or both accept it and
 * name the same rules. Malformed JSON is expected; crashes, leaks, a verdict
 * that differs between the two, or a result that is not a strictly ascending id
 * list abort.
 *
 * Duplicate object keys ({"a":1,"a":2}) are the one known divergence: jansson,
 * and so the reference, keeps only the last value of a key, while the matcher's
 * scanner reports every occurrence (as event-ruler's streaming flattener does).
 * pattern.h does not say which is right yet, so for such events only the verdict
 * is compared, not the matched rules; EVBUS_FUZZ_STRICT=1 in the environment
 * compares them too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "evbus/errors.h"
#include "rules/rules.h"

#include "fuzz/fuzz_common.h"

/* Paths and values the dictionary (event.dict) also names. */
static const char *RULES[] = {
    /* exact values of every type */
    "{\"source\":[\"aws.ec2\"]}",
    "{\"detail\":{\"n\":[300]}}",
    "{\"detail\":{\"n\":[-0.5,1e300]}}",
    "{\"detail\":{\"b\":[true]}}",
    "{\"detail\":{\"b\":[false]}}",
    "{\"detail\":{\"b\":[null]}}",
    "{\"detail\":{\"s\":[\"\"]}}",
    "{\"detail\":{\"s\":[\"a\\u0000b\",\"\xc3\x89t\xc3\xa9\"]}}",
    /* string operators */
    "{\"detail\":{\"s\":[{\"prefix\":\"ab\"}]}}",
    "{\"detail\":{\"s\":[{\"prefix\":\"\"}]}}",
    "{\"detail\":{\"s\":[{\"prefix\":{\"equals-ignore-case\":\"AB\"}}]}}",
    "{\"detail\":{\"s\":[{\"suffix\":\".png\"}]}}",
    "{\"detail\":{\"s\":[{\"suffix\":{\"equals-ignore-case\":\".PNG\"}}]}}",
    "{\"detail\":{\"s\":[{\"equals-ignore-case\":\"\xc3\xa9T\xc3\x89\"}]}}",
    "{\"detail\":{\"s\":[{\"wildcard\":\"a*b*c\"}]}}",
    "{\"detail\":{\"s\":[{\"wildcard\":\"*\\\\**\"}]}}",
    "{\"detail\":{\"ip\":[{\"cidr\":\"10.0.0.0/8\"}]}}",
    "{\"detail\":{\"ip\":[{\"cidr\":\"2001:db8::/32\"}]}}",
    "{\"detail\":{\"ip\":[\"::1\",\"192.168.0.1\"]}}",
    /* numeric */
    "{\"detail\":{\"n\":[{\"numeric\":[\">\",0,\"<=\",300]}]}}",
    "{\"detail\":{\"n\":[{\"numeric\":[\"=\",3e2]}]}}",
    "{\"detail\":{\"n\":[{\"numeric\":[\"<\",-1]},{\"numeric\":[\">=\",1e10]}]}}",
    /* anything-but, every form */
    "{\"detail\":{\"s\":[{\"anything-but\":\"ab\"}]}}",
    "{\"detail\":{\"s\":[{\"anything-but\":[\"ab\",\"cd\"]}]}}",
    "{\"detail\":{\"n\":[{\"anything-but\":[300,0]}]}}",
    "{\"detail\":{\"s\":[{\"anything-but\":{\"prefix\":\"a\"}}]}}",
    "{\"detail\":{\"s\":[{\"anything-but\":{\"suffix\":\"b\"}}]}}",
    "{\"detail\":{\"s\":[{\"anything-but\":{\"equals-ignore-case\":[\"AB\",\"x\"]}}]}}",
    "{\"detail\":{\"s\":[{\"anything-but\":{\"wildcard\":\"a*\"}}]}}",
    /* exists */
    "{\"detail\":{\"s\":[{\"exists\":true}]}}",
    "{\"detail\":{\"s\":[{\"exists\":false}]}}",
    "{\"detail\":{\"s\":[{\"exists\":false},\"ab\"]}}",
    /* $or, nested */
    "{\"$or\":[{\"source\":[\"aws.s3\"]},{\"detail\":{\"n\":[1]}}]}",
    "{\"source\":[{\"prefix\":\"aws.\"}],\"$or\":[{\"detail\":{\"b\":[true]}},"
    "{\"$or\":[{\"detail\":{\"s\":[\"x\"]}},{\"detail-type\":[{\"exists\":true}]}]}]}",
    /* arrays of objects: array consistency, with and without exists:false */
    "{\"detail\":{\"items\":{\"k\":[\"a\"],\"v\":[1]}}}",
    "{\"detail\":{\"items\":{\"k\":[\"a\"],\"w\":[{\"exists\":false}]}}}",
    "{\"detail\":{\"items\":{\"k\":[{\"prefix\":\"\"}],\"v\":[{\"numeric\":[\">\",0]}]},"
    "\"tags\":[\"t\"]}}",
    /* dotted keys: {"a":{"b":..}} and {"a.b":..} reach the same path */
    "{\"a\":{\"b\":[1]}}",
    "{\"a.b\":[{\"anything-but\":1}]}",
    /* many conditions in one conjunction */
    "{\"source\":[{\"exists\":true}],\"detail-type\":[{\"exists\":true}],"
    "\"detail\":{\"s\":[{\"exists\":true}],\"n\":[{\"exists\":true}],\"b\":[{\"exists\":true}],"
    "\"ip\":[{\"exists\":true}]}}",
};
#define NRULES (sizeof(RULES) / sizeof(RULES[0]))
#define MAX_IDS (NRULES + 1)

static rules_pattern *g_pat[NRULES];
static rules_matcher *g_m;
static int g_strict;

/* 1 when the text is valid JSON only thanks to a repeated key in some object. */
static int has_duplicate_keys(const char *ev, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(
        ev, len,
        JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (v != NULL) {
        json_decref(v);
        return 0;
    }
    return json_error_code(&jerr) == json_error_duplicate_key;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *strict = getenv("EVBUS_FUZZ_STRICT");
    g_strict = strict != NULL && strcmp(strict, "1") == 0;
    char err[256];
    FUZZ_CHECK(rules_matcher_new(&g_m) == 0, "matcher_new");
    for (size_t i = 0; i < NRULES; i++) {
        int rc = rules_pattern_parse(RULES[i], strlen(RULES[i]), NULL, &g_pat[i], err, sizeof(err));
        FUZZ_CHECK(rc == 0, "rule %zu %s: %s", i + 1, RULES[i], err);
        FUZZ_CHECK(rules_matcher_add(g_m, i + 1, g_pat[i]) == 0, "add rule %zu", i + 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *ev = (const char *)data;
    uint64_t want[MAX_IDS], got[MAX_IDS];
    size_t nwant = 0, ngot = 0;
    int ref_rc = 0;
    char explain[256] = "";

    for (size_t i = 0; i < NRULES; i++) {
        int matched = -1;
        int rc = rules_pattern_match(g_pat[i], ev, size, &matched, explain, sizeof(explain));
        FUZZ_CHECK(rc == 0 || rc == EVBUS_EINVAL, "reference: rc %d", rc);
        FUZZ_CHECK(matched == 0 || matched == 1, "reference: matched %d", matched);
        FUZZ_CHECK(i == 0 || rc == ref_rc, "reference verdict depends on the rule");
        ref_rc = rc;
        if (rc != 0) {
            FUZZ_CHECK(explain[0] != 0, "reference rejects the event without a message");
            break; /* the verdict on the text is the same for every rule */
        }
        if (matched)
            want[nwant++] = i + 1;
    }

    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = rules_matcher_match(g_m, ev, size, got, MAX_IDS, &ngot, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == EVBUS_EINVAL, "matcher: rc %d", rc);
    FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL, "matcher message not NUL-terminated");
    if (rc != ref_rc)
        fuzz_fail("verdicts differ on the event text: reference %d (%s), matcher %d (%s)", ref_rc,
                  ref_rc ? explain : "accepted", rc, rc ? err : "accepted");
    if (rc != 0) {
        FUZZ_CHECK(ngot == 0, "matcher rejects the event but reports %zu ids", ngot);
        FUZZ_CHECK(err[0] != 0, "matcher rejects the event without a message");
        return 0;
    }
    FUZZ_CHECK(ngot <= NRULES, "matcher reports %zu ids of %zu rules", ngot, NRULES);
    for (size_t i = 1; i < ngot; i++)
        FUZZ_CHECK(got[i - 1] < got[i], "matcher ids not strictly ascending");
    int compare = g_strict || !has_duplicate_keys(ev, size);
    if (compare && (ngot != nwant || memcmp(got, want, nwant * sizeof(uint64_t)) != 0)) {
        char w[512], g[512];
        fuzz_ids_text(want, nwant, w, sizeof(w));
        fuzz_ids_text(got, ngot, g, sizeof(g));
        fuzz_fail("matcher disagrees with the reference:\n  reference {%s}\n  matcher   {%s}", w,
                  g);
    }

    /* A short id buffer still reports the full count, and the first ids. */
    uint64_t few[2];
    size_t nfew = 0;
    rc = rules_matcher_match(g_m, ev, size, few, 2, &nfew, NULL, 0);
    FUZZ_CHECK(rc == 0 && nfew == ngot, "matcher with a short id buffer: rc %d, count %zu vs %zu",
               rc, nfew, ngot);
    for (size_t i = 0; i < 2 && i < ngot; i++)
        FUZZ_CHECK(few[i] == got[i], "matcher with a short id buffer: id %zu differs", i);
    return 0;
}
