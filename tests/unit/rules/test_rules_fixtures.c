/*
 * test_rules_fixtures: the public event-ruler and quamina fixtures in
 * ../shared/data (EVBUS_SHARED_DIR, set by ctest) against the reference
 * evaluator, with the expectations restated in that folder's README.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "evbus/errors.h"
#include "rules/pattern.h"
#include "rules/rules.h"

/* Generous limit: some fixture rules are larger than the 4 KiB default. */
static const rules_limits LIMITS = {.max_pattern_bytes = 1u << 20};

static char *load(const char *rel, size_t *len)
{
    const char *dir = getenv("EVBUS_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/data/%s", dir ? dir : "../shared", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fprintf(stderr, "cannot open %s (set EVBUS_SHARED_DIR)\n", path);
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static rules_pattern *parse_file(const char *rel)
{
    size_t len;
    char *s = load(rel, &len);
    char err[512] = "";
    rules_pattern *p = NULL;
    int rc = rules_pattern_parse(s, len, &LIMITS, &p, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", rel, err);
    assert_int_equal(rc, 0);
    free(s);
    return p;
}

static int match_text(const rules_pattern *p, const char *ev, size_t len)
{
    int m = -1;
    char explain[512] = "";
    int rc = rules_pattern_match(p, ev, len, &m, explain, sizeof(explain));
    if (rc != 0)
        fprintf(stderr, "match error: %s\n", explain);
    assert_int_equal(rc, 0);
    return m;
}

static int match_file(const rules_pattern *p, const char *rel)
{
    size_t len;
    char *ev = load(rel, &len);
    int m = match_text(p, ev, len);
    free(ev);
    return m;
}

/* Rules 1-3 (and 4) against events 1-4, array-consistently. */
static void test_array_fixtures(void **state)
{
    (void)state;
    /* want[rule][event] */
    static const int want[4][4] = {
        {1, 0, 0, 0}, /* rule1 */
        {1, 0, 0, 0}, /* rule2 */
        {0, 0, 0, 1}, /* rule3: event3 splits its fields over two elements */
        {0, 0, 1, 1}, /* rule4: value lists on both fields */
    };
    for (int r = 0; r < 4; r++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "event-ruler/arrayRule%d.json", r + 1);
        rules_pattern *p = parse_file(rel);
        for (int e = 0; e < 4; e++) {
            char erel[64];
            snprintf(erel, sizeof(erel), "event-ruler/arrayEvent%d.json", e + 1);
            int m = match_file(p, erel);
            if (m != want[r][e])
                fprintf(stderr, "arrayRule%d vs arrayEvent%d: got %d want %d\n", r + 1, e + 1, m,
                        want[r][e]);
            assert_int_equal(m, want[r][e]);
        }
        rules_pattern_free(p);
    }
}

/* Parses every element of a JSON array file; calls fn(i, rc, p, err). */
static size_t for_each_rule(const char *rel, void (*fn)(size_t, int, rules_pattern *, const char *))
{
    size_t len;
    char *s = load(rel, &len);
    json_error_t jerr;
    json_t *arr = json_loadb(s, len, 0, &jerr);
    assert_non_null(arr);
    assert_true(json_is_array(arr));
    size_t i;
    json_t *rule;
    json_array_foreach(arr, i, rule)
    {
        char *text = json_dumps(rule, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(text);
        char err[512] = "";
        rules_pattern *p = NULL;
        int rc = rules_pattern_parse(text, strlen(text), &LIMITS, &p, err, sizeof(err));
        fn(i, rc, p, err);
        rules_pattern_free(p);
        free(text);
    }
    size_t n = json_array_size(arr);
    json_decref(arr);
    free(s);
    return n;
}

static void check_or_rule(size_t i, int rc, rules_pattern *p, const char *err)
{
    static const size_t expansions[] = {2, 4, 3, 4, 2};
    if (rc != 0)
        fprintf(stderr, "orRelationshipRules[%zu]: %s\n", i, err);
    assert_int_equal(rc, 0);
    assert_true(i < 5);
    assert_int_equal(p->nconjs, expansions[i]);
}

static void check_wrong_or_rule(size_t i, int rc, rules_pattern *p, const char *err)
{
    (void)p;
    if (rc != EVBUS_EINVAL)
        fprintf(stderr, "wrongOrRelationshipRules[%zu] accepted\n", i);
    assert_int_equal(rc, EVBUS_EINVAL);
    assert_true(err[0] != 0);
}

static void check_or_wording_rule(size_t i, int rc, rules_pattern *p, const char *err)
{
    /* "$or" is an ordinary field: one conjunction, paths through "$or" */
    static const char *const first_path[] = {"$or", "$or.metricType", "detail.$or", "detail.$or"};
    if (rc != 0)
        fprintf(stderr, "normalRulesWithOrWording[%zu]: %s\n", i, err);
    assert_int_equal(rc, 0);
    assert_true(i < 4);
    assert_int_equal(p->nconjs, 1);
    assert_string_equal(p->conjs[0].conds[0].path.s, first_path[i]);
}

static void test_or_fixtures(void **state)
{
    (void)state;
    assert_int_equal(for_each_rule("event-ruler/orRelationshipRules.json", check_or_rule), 5);
    assert_int_equal(
        for_each_rule("event-ruler/wrongOrRelationshipRules.json", check_wrong_or_rule), 2);
    assert_int_equal(
        for_each_rule("event-ruler/normalRulesWithOrWording.json", check_or_wording_rule), 4);

    /* the legacy-field reading really evaluates: rule 2 of normalRulesWithOrWording */
    const char *pat = "{\"source\":[\"aws.cloudwatch\"],\"$or\":{\"metricType\":[\"MetricType\"],"
                      "\"namespace\":[\"AWS/EC2\",\"AWS/ES\"]}}";
    const char *ev = "{\"source\":\"aws.cloudwatch\",\"$or\":{\"metricType\":\"MetricType\","
                     "\"namespace\":\"AWS/ES\"}}";
    rules_pattern *p = NULL;
    assert_int_equal(rules_pattern_parse(pat, strlen(pat), NULL, &p, NULL, 0), 0);
    assert_int_equal(match_text(p, ev, strlen(ev)), 1);
    rules_pattern_free(p);
}

/*
 * correctness-cases.json has no expected column; these were derived by hand
 * from each case (array consistency and leaf-only exists), in file order.
 */
static const struct {
    const char *name_start;
    int want;
} CORRECTNESS[] = {
    {"flat: 2-field exists, both present", 1},
    {"flat: 2-field exists, one missing", 0},
    {"flat: exact match", 1},
    {"flat: exact mismatch", 0},
    {"flat: prefix", 1},
    {"flat: numeric range", 1},
    {"flat: anything-but", 1},
    {"objarray: same element", 1},
    {"objarray: split", 0},
    {"objarray: 3 elem, last valid", 1},
    {"objarray: 3-field, all in one", 1},
    {"objarray: 3-field, split 3 ways", 0},
    {"objarray: exact same elem", 1},
    {"objarray: exact split", 0},
    {"objarray: prefix same", 1},
    {"objarray: prefix split", 0},
    {"primarray: exists", 1},
    {"primarray: exact match", 1},
    {"primarray: no match", 0},
    {"nested: inner same", 1},
    {"nested: inner split", 0},
    {"nested: outer split", 0},
    {"nested: outer same", 1},
    {"nested2: same leaf", 1},
    {"nested2: split leaf", 0},
    {"mixed: array+scalar match", 1},
    {"mixed: array+scalar fail", 0},
    {"exists-false: absent", 1},
    {"exists-false: present", 0},
    {"empty object", 0},
    {"empty array", 0},
    {"single-field rule", 1},
    {"many elem one valid", 1},
    {"numeric+exists array", 1},
    {"anything-but array", 1},
    {"primarray: large + scalar, exists", 1},
    {"primarray: large + scalar, prefix", 1},
    {"primarray: large + scalar, no match", 0},
    {"primarray: nested under object", 1},
    {"primarray: two prim arrays + scalar", 1},
    {"primarray: exact match among many", 1},
    {"primarray: numeric in array", 1},
    {"primarray: anything-but in array", 1},
    {"primarray: single value array", 1},
    {"primarray: empty prim array", 0},
    {"mixed: obj-array + prim-array", 1},
    {"mixed: obj-array split + prim-array", 0},
    {"deep prim: nested 3 levels", 1},
    {"suffix match in array", 1},
    {"N emails, only last element has name", 1},
    {"suffix match split", 0},
};

static void test_correctness_cases(void **state)
{
    (void)state;
    size_t len;
    char *s = load("event-ruler/correctness-cases.json", &len);
    json_error_t jerr;
    json_t *arr = json_loadb(s, len, 0, &jerr);
    assert_non_null(arr);
    size_t n = json_array_size(arr);
    assert_int_equal(n, sizeof(CORRECTNESS) / sizeof(CORRECTNESS[0]));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        assert_non_null(name);
        assert_true(strncmp(name, CORRECTNESS[i].name_start, strlen(CORRECTNESS[i].name_start)) ==
                    0);
        char *rule = json_dumps(json_object_get(c, "rule"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        char *ev = json_dumps(json_object_get(c, "event"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(rule);
        assert_non_null(ev);
        rules_pattern *p = NULL;
        char err[256] = "";
        assert_int_equal(rules_pattern_parse(rule, strlen(rule), NULL, &p, err, sizeof(err)), 0);
        int m = match_text(p, ev, strlen(ev));
        if (m != CORRECTNESS[i].want) {
            fprintf(stderr, "correctness case \"%s\": got %d want %d\n", name, m,
                    CORRECTNESS[i].want);
            bad++;
        }
        rules_pattern_free(p);
        free(rule);
        free(ev);
    }
    json_decref(arr);
    free(s);
    assert_int_equal(bad, 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_big_event(void **state)
{
    (void)state;
    rules_pattern *p = parse_file("event-ruler/bigEventRule.json");
    size_t len;
    char *ev = load("event-ruler/bigEvent.json", &len);
    double t0 = now_ms();
    int m = match_text(p, ev, len);
    double dt = now_ms() - t0;
    fprintf(stderr, "bigEvent: %zu bytes matched=%d in %.1f ms\n", len, m, dt);
    assert_int_equal(m, 1);
    assert_true(dt < 500.0);
    rules_pattern_free(p);
    free(ev);
}

static void test_quamina_fixtures(void **state)
{
    (void)state;
    static const char *const status_patterns[] = {
        "{\"context\":{\"user_id\":[9034],\"friends_count\":[158]}}",
        "{\"payload\":{\"user\":{\"id_str\":[\"903487807\"]}}}",
        "{\"payload\":{\"lang_value\":[\"ja\"]}}",
    };
    size_t len;
    char *ev = load("quamina/status.json", &len);
    for (size_t i = 0; i < 3; i++) {
        rules_pattern *p = NULL;
        assert_int_equal(
            rules_pattern_parse(status_patterns[i], strlen(status_patterns[i]), NULL, &p, NULL, 0),
            0);
        assert_int_equal(match_text(p, ev, len), 1);
        rules_pattern_free(p);
    }
    /* and a near miss does not match */
    const char *miss = "{\"context\":{\"user_id\":[9035]}}";
    rules_pattern *p = NULL;
    assert_int_equal(rules_pattern_parse(miss, strlen(miss), NULL, &p, NULL, 0), 0);
    assert_int_equal(match_text(p, ev, len), 0);
    rules_pattern_free(p);
    free(ev);

    static const char *const streets[] = {"GREENWICH", "TURK", "CABRILLO"};
    for (int i = 0; i < 3; i++) {
        char rel[64], pat[256];
        snprintf(rel, sizeof(rel), "quamina/cl-sample-%d", i);
        char *cl = load(rel, &len);
        snprintf(pat, sizeof(pat),
                 "{\"type\":[\"Feature\"],\"properties\":{\"STREET\":[\"%s\"]},"
                 "\"geometry\":{\"type\":[\"Polygon\"],\"coordinates\":[{\"numeric\":[\"<\",0]}]}}",
                 streets[i]);
        assert_int_equal(rules_pattern_parse(pat, strlen(pat), NULL, &p, NULL, 0), 0);
        assert_int_equal(match_text(p, cl, len), 1);
        rules_pattern_free(p);
        snprintf(pat, sizeof(pat), "{\"properties\":{\"STREET\":[\"%s\"]}}", streets[(i + 1) % 3]);
        assert_int_equal(rules_pattern_parse(pat, strlen(pat), NULL, &p, NULL, 0), 0);
        assert_int_equal(match_text(p, cl, len), 0);
        rules_pattern_free(p);
        free(cl);
    }
}

/* ------------------------------------------------------- perf scenarios */

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        assert_true(k >= 0);
        if (b->s != NULL && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
}

/* ["p0","p1",...] with n strings */
static void sb_list(sbuf *b, const char *prefix, int n)
{
    sb_printf(b, "[");
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s\"%s%d\"", i ? "," : "", prefix, i);
    sb_printf(b, "]");
}

/*
 * The generators of perf-scenarios.json exist upstream only as names; these
 * re-create them from the names and notes so that the expected match counts
 * hold.
 */
static void generate(sbuf *b, const char *gen, int n)
{
    b->n = 0;
    if (strcmp(gen, "primArrayPlusScalar") == 0) {
        sb_printf(b, "{\"d\":{\"tags\":");
        sb_list(b, "t", n);
        sb_printf(b, ",\"type\":\"x\"}}");
    } else if (strcmp(gen, "primArrayOnly") == 0) {
        sb_printf(b, "{\"d\":{\"tags\":");
        sb_list(b, "t", n);
        sb_printf(b, "}}");
    } else if (strcmp(gen, "objArrayBothFields") == 0 || strcmp(gen, "objArrayLastValid") == 0 ||
               strcmp(gen, "objArrayAllPartial") == 0) {
        sb_printf(b, "{\"d\":[");
        for (int i = 0; i < n; i++) {
            const char *sep = i ? "," : "";
            if (gen[8] == 'B' || (gen[8] == 'L' && i == n - 1))
                sb_printf(b, "%s{\"a\":%d,\"b\":%d}", sep, i, i);
            else if (i % 2 == 0)
                sb_printf(b, "%s{\"a\":%d}", sep, i);
            else
                sb_printf(b, "%s{\"b\":%d}", sep, i);
        }
        sb_printf(b, "]}");
    } else if (strcmp(gen, "customerLike") == 0) {
        sb_printf(b, "{\"detail\":{\"data\":{\"name\":\"n\",\"type\":\"t\",\"domains\":[");
        for (int i = 0; i < n; i++)
            sb_printf(b, "%s{\"email\":\"e%d@x\",\"id\":%d}", i ? "," : "", i, i);
        sb_printf(b, "]},\"context\":{\"companyId\":1,\"userId\":2,\"email\":\"u@x\"}}}");
    } else if (strcmp(gen, "primInsideObjArray") == 0) {
        sb_printf(b, "{\"detail\":{\"data\":[{\"type\":\"t\",\"name\":");
        sb_list(b, "n", n);
        sb_printf(b, "},{\"type\":\"u\"}]}}");
    } else if (strcmp(gen, "noObjArrayLargePrim") == 0) {
        sb_printf(b, "{\"detail\":{\"data\":{\"type\":\"t\",\"name\":");
        sb_list(b, "n", n);
        sb_printf(b, "}}}");
    } else if (strcmp(gen, "nested2Level") == 0) {
        sb_printf(b, "{\"a\":[");
        for (int i = 0; i < n; i++) {
            sb_printf(b, "%s{\"b\":[", i ? "," : "");
            for (int j = 0; j < 10; j++) {
                if (i == n - 1 && j == 9)
                    sb_printf(b, ",{\"x\":1,\"y\":2}");
                else
                    sb_printf(b, "%s{\"%s\":%d}", j ? "," : "", j % 2 ? "y" : "x", j);
            }
            sb_printf(b, "]}");
        }
        sb_printf(b, "]}");
    } else if (strcmp(gen, "deepNestedPrim") == 0) {
        sb_printf(b, "{\"a\":[");
        for (int i = 0; i < 3; i++) {
            sb_printf(b, "%s{\"b\":{\"type\":\"t%d\",\"tags\":", i ? "," : "", i);
            sb_list(b, "g", n);
            sb_printf(b, "}}");
        }
        sb_printf(b, "]}");
    } else if (strcmp(gen, "wideRulePrimArray") == 0) {
        sb_printf(b, "{\"d\":{\"a\":");
        sb_list(b, "a", n);
        sb_printf(b, ",\"b\":");
        sb_list(b, "b", n);
        sb_printf(b, ",\"c\":\"x\"}}");
    } else if (strcmp(gen, "twoPrimArrays") == 0) {
        sb_printf(b, "{\"v\":\"1\",\"tags\":");
        sb_list(b, "t", n);
        sb_printf(b, ",\"cats\":");
        sb_list(b, "c", n);
        sb_printf(b, "}");
    } else if (strcmp(gen, "controlScalar") == 0) {
        sb_printf(b, "{\"a\":1,\"b\":2}");
    } else {
        fail_msg("unknown generator %s", gen);
    }
}

static void test_perf_scenarios(void **state)
{
    (void)state;
    size_t len;
    char *s = load("event-ruler/perf-scenarios.json", &len);
    json_error_t jerr;
    json_t *arr = json_loadb(s, len, 0, &jerr);
    assert_non_null(arr);
    sbuf b = {0};
    size_t i;
    json_t *sc;
    json_array_foreach(arr, i, sc)
    {
        const char *name = json_string_value(json_object_get(sc, "name"));
        const char *gen = json_string_value(json_object_get(sc, "generator"));
        int want = (int)json_integer_value(json_object_get(sc, "expectedMatches"));
        char *rule = json_dumps(json_object_get(sc, "rule"), JSON_COMPACT);
        rules_pattern *p = NULL;
        assert_int_equal(rules_pattern_parse(rule, strlen(rule), NULL, &p, NULL, 0), 0);
        size_t k;
        json_t *size;
        json_array_foreach(json_object_get(sc, "sizes"), k, size)
        {
            int n = (int)json_integer_value(size);
            generate(&b, gen, n);
            double t0 = now_ms();
            int m = match_text(p, b.s, b.n);
            double dt = now_ms() - t0;
            if (m != want || dt > 500.0)
                fprintf(stderr, "%s n=%d: matched=%d want %d, %.1f ms\n", name, n, m, want, dt);
            assert_int_equal(m, want);
            assert_true(dt < 500.0);
        }
        rules_pattern_free(p);
        free(rule);
    }
    free(b.s);
    json_decref(arr);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_fixtures),    cmocka_unit_test(test_or_fixtures),
        cmocka_unit_test(test_correctness_cases), cmocka_unit_test(test_big_event),
        cmocka_unit_test(test_quamina_fixtures),  cmocka_unit_test(test_perf_scenarios),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
