/*
 * test_rules_conformance: the EventBridge event-pattern language, case by case,
 * against the reference evaluator (rules_pattern_parse + rules_pattern_match).
 *
 * Each table row is (pattern, event, expectation): M match, N no match, E the
 * pattern is rejected with EVBUS_EINVAL and a message containing `err`, EV the
 * event is rejected with EVBUS_EINVAL. Patterns and events are written with
 * single quotes for readability; q() turns every ' into " before use (no case
 * needs a literal apostrophe). Expectations come from the documented
 * EventBridge semantics and, where docs are silent or wrong, from
 * aws/event-ruler's behaviour (each such row says so).
 *
 * A group reports every failing row (pattern, event, what happened) before
 * failing, so one run shows the whole picture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evbus/errors.h"
#include "rules/pattern.h"
#include "rules/rules.h"

enum { N = 0, M = 1, E = 2, EV = 3 };

typedef struct tcase {
    const char *pattern;
    const char *event; /* NULL for E rows */
    int expect;
    const char *err; /* E: substring of the message */
} tcase;

static char *q(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    for (char *p = d; *p; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

/* Runs one row; returns 1 when it behaves as expected, else prints why. */
static int run_case(const tcase *c, size_t row)
{
    char err[512] = "";
    char *pat = q(c->pattern);
    rules_pattern *p = NULL;
    int ok = 0;
    int rc = rules_pattern_parse(pat, strlen(pat), NULL, &p, err, sizeof(err));
    if (c->expect == E) {
        ok = rc == EVBUS_EINVAL && p == NULL && c->err != NULL && strstr(err, c->err) != NULL;
        if (!ok)
            fprintf(stderr, "row %zu: %s\n  want error containing [%s], got rc=%d err=[%s]\n", row,
                    pat, c->err ? c->err : "", rc, err);
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "row %zu: %s\n  unexpected parse error rc=%d: %s\n", row, pat, rc, err);
        goto out;
    }
    char *evt = q(c->event);
    int matched = -1;
    char explain[512] = "";
    rc = rules_pattern_match(p, evt, strlen(evt), &matched, explain, sizeof(explain));
    if (c->expect == EV)
        ok = rc == EVBUS_EINVAL && explain[0] != 0;
    else
        ok = rc == 0 && matched == c->expect && (matched || explain[0] != 0);
    if (!ok)
        fprintf(stderr, "row %zu: pattern %s event %s\n  want %s, got rc=%d matched=%d (%s)\n", row,
                pat, evt,
                c->expect == M   ? "match"
                : c->expect == N ? "no match"
                                 : "event error",
                rc, matched, explain);
    free(evt);
out:
    rules_pattern_free(p);
    free(pat);
    return ok;
}

static size_t total_rows;

static void run_table(const tcase *cs, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !run_case(&cs[i], i);
    total_rows += n;
    assert_int_equal(bad, 0);
}

#define RUN(t) run_table(t, sizeof(t) / sizeof(t[0]))

/* ------------------------------------------------------------ exact values */

static const tcase exact_cases[] = {
    {"{'a':['x']}", "{'a':'x'}", M, 0},
    {"{'a':['x']}", "{'a':'y'}", N, 0},
    {"{'a':['x','y']}", "{'a':'y'}", M, 0},
    {"{'a':['x']}", "{'b':'x'}", N, 0},
    {"{'a':['x']}", "{'a':'x','b':1,'c':{'d':[1,2]}}", M, 0},
    {"{'a':['x']}", "{}", N, 0},
    {"{'a':{'b':['x']}}", "{'a':{'b':'x'}}", M, 0},
    {"{'a':{'b':['x']}}", "{'a':{'b':'y'}}", N, 0},
    {"{'a':{'b':['x']}}", "{'a':'x'}", N, 0},
    {"{'a':{'b':['x']}}", "{'b':'x'}", N, 0},
    {"{'a':{'b':['x']}}", "{'a':{'c':{'b':'x'}}}", N, 0},
    {"{'a':['x'],'b':['y']}", "{'a':'x','b':'y'}", M, 0},
    {"{'a':['x'],'b':['y']}", "{'a':'x','b':'z'}", N, 0},
    {"{'a':['x'],'b':['y']}", "{'a':'x'}", N, 0},
    {"{'a':['x'],'b':['y']}", "{'b':'y'}", N, 0},
    /* case-sensitive values and keys */
    {"{'a':['X']}", "{'a':'x'}", N, 0},
    {"{'A':['x']}", "{'a':'x'}", N, 0},
    {"{'a':['x']}", "{'A':'x'}", N, 0},
    /* null, empty string and missing are three different things */
    {"{'a':['']}", "{'a':''}", M, 0},
    {"{'a':['']}", "{'a':null}", N, 0},
    {"{'a':['']}", "{}", N, 0},
    {"{'a':[null]}", "{'a':null}", M, 0},
    {"{'a':[null]}", "{'a':''}", N, 0},
    {"{'a':[null]}", "{}", N, 0},
    {"{'a':[null]}", "{'a':'null'}", N, 0},
    {"{'a':[null,'']}", "{'a':''}", M, 0},
    {"{'a':[null,'']}", "{'b':''}", N, 0},
    /* booleans are literals, not strings */
    {"{'a':[true]}", "{'a':true}", M, 0},
    {"{'a':[true]}", "{'a':'true'}", N, 0},
    {"{'a':['true']}", "{'a':true}", N, 0},
    {"{'a':[false]}", "{'a':false}", M, 0},
    {"{'a':[false]}", "{'a':0}", N, 0},
    {"{'a':[false]}", "{'a':null}", N, 0},
    {"{'a':[true]}", "{'a':1}", N, 0},
    {"{'a':[true,false]}", "{'a':false}", M, 0},
    /* string contents */
    {"{'a':['日本語']}", "{'a':'日本語'}", M, 0},
    {"{'a':['日本語']}", "{'a':'日本'}", N, 0},
    {"{'a':['a\\'b']}", "{'a':'a\\'b'}", M, 0},
    {"{'a':['\\u0041']}", "{'a':'A'}", M, 0},
    {"{'a':['x\\u0000y']}", "{'a':'x\\u0000y'}", M, 0},
    {"{'a':['x\\u0000y']}", "{'a':'x'}", N, 0},
    {"{'a':['tab\\there']}", "{'a':'tab\\u0009here'}", M, 0},
    {"{'a':['x ']}", "{'a':'x'}", N, 0},
    /* a dotted key is the same path as nested keys (event-ruler flattening) */
    {"{'a.b':['x']}", "{'a':{'b':'x'}}", M, 0},
    {"{'a':{'b':['x']}}", "{'a.b':'x'}", M, 0},
    {"{'a':{'b.c':['x']}}", "{'a':{'b':{'c':'x'}}}", M, 0},
    /* deep nesting */
    {"{'a':{'b':{'c':{'d':{'e':['x']}}}}}", "{'a':{'b':{'c':{'d':{'e':'x'}}}}}", M, 0},
    {"{'a':{'b':{'c':{'d':{'e':['x']}}}}}", "{'a':{'b':{'c':{'d':{'f':'x'}}}}}", N, 0},
    /* an object where the pattern wants a leaf is not a value */
    {"{'a':['x']}", "{'a':{'b':'x'}}", N, 0},
    {"{'a':['x']}", "{'a':{}}", N, 0},
    /* event arrays: any element */
    {"{'a':['x']}", "{'a':['y','x']}", M, 0},
    {"{'a':['x']}", "{'a':['y','z']}", N, 0},
    {"{'a':['x']}", "{'a':[]}", N, 0},
    {"{'a':['x']}", "{'a':[['y'],['x']]}", M, 0},
    {"{'a':['x','z']}", "{'a':['y','z']}", M, 0},
    {"{'a':[null]}", "{'a':[1,null]}", M, 0},
    {"{'a':{'b':['x']}}", "{'a':[{'b':'y'},{'b':'x'}]}", M, 0},
    {"{'a':{'b':['x']}}", "{'a':[{'b':['y','x']}]}", M, 0},
    {"{'a':{'b':['x']}}", "{'a':[[{'b':'x'}]]}", M, 0},
    {"{'source':['aws.ec2'],'detail-type':['EC2 Instance State-change Notification'],"
     "'detail':{'state':['terminated']}}",
     "{'version':'0','source':'aws.ec2','detail-type':'EC2 Instance State-change Notification',"
     "'resources':['arn:aws:ec2:us-west-1:123456789012:instance/i-1'],"
     "'detail':{'instance-id':'i-1','state':'terminated'}}",
     M, 0},
    {"{'source':['aws.ec2'],'detail':{'state':['running']}}",
     "{'source':'aws.ec2','detail':{'state':'terminated'}}", N, 0},
};

/* ----------------------------------------------------------------- numbers */

static const tcase number_cases[] = {
    {"{'a':[300]}", "{'a':300}", M, 0},
    {"{'a':[300]}", "{'a':300.0}", M, 0},
    {"{'a':[300]}", "{'a':3e2}", M, 0},
    {"{'a':[300]}", "{'a':3.0E+2}", M, 0},
    {"{'a':[3e2]}", "{'a':300}", M, 0},
    {"{'a':[300.0]}", "{'a':300}", M, 0},
    {"{'a':[300]}", "{'a':'300'}", N, 0},
    {"{'a':['300']}", "{'a':300}", N, 0},
    {"{'a':[300]}", "{'a':301}", N, 0},
    {"{'a':[300]}", "{'a':300.000001}", N, 0},
    {"{'a':[-0.5]}", "{'a':-0.5}", M, 0},
    {"{'a':[-0.5]}", "{'a':0.5}", N, 0},
    {"{'a':[0]}", "{'a':-0}", M, 0},
    {"{'a':[0]}", "{'a':0.0}", M, 0},
    {"{'a':[0]}", "{'a':false}", N, 0},
    {"{'a':[0]}", "{'a':null}", N, 0},
    {"{'a':[0]}", "{'a':''}", N, 0},
    {"{'a':[1]}", "{'a':true}", N, 0},
    {"{'a':[1.5]}", "{'a':1.50}", M, 0},
    {"{'a':[0.1]}", "{'a':0.1}", M, 0},
    {"{'a':[123456789012]}", "{'a':123456789012}", M, 0},
    {"{'a':[123456789012]}", "{'a':123456789012.0}", M, 0},
    {"{'a':[1e300]}", "{'a':1e300}", M, 0},
    {"{'a':[1e-300]}", "{'a':1e-300}", M, 0},
    {"{'a':[1,2,3]}", "{'a':2}", M, 0},
    {"{'a':[1,'1']}", "{'a':'1'}", M, 0},
    {"{'a':[1,'1']}", "{'a':1}", M, 0},
    {"{'a':[1]}", "{'a':[3,2,1.0]}", M, 0},
    {"{'a':[1]}", "{'a':[3,2]}", N, 0},
    {"{'a':[18446744073709551616]}", "{'a':18446744073709551616}", M, 0},
    {"{'a':[-7]}", "{'a':-7e0}", M, 0},
};

/* ----------------------------------------------------------------- prefix */

static const tcase prefix_cases[] = {
    {"{'a':[{'prefix':'ab'}]}", "{'a':'abc'}", M, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':'ab'}", M, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':'a'}", N, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':'xab'}", N, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':'ABc'}", N, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':null}", N, 0},
    {"{'a':[{'prefix':'ab'}]}", "{}", N, 0},
    {"{'a':[{'prefix':'ab'}]}", "{'a':['x','abz']}", M, 0},
    {"{'a':[{'prefix':'1'}]}", "{'a':123}", N, 0},
    {"{'a':[{'prefix':'1'}]}", "{'a':'123'}", M, 0},
    {"{'a':[{'prefix':'t'}]}", "{'a':true}", N, 0},
    {"{'a':[{'prefix':'n'}]}", "{'a':null}", N, 0},
    {"{'a':[{'prefix':''}]}", "{'a':''}", M, 0},
    {"{'a':[{'prefix':''}]}", "{'a':'anything'}", M, 0},
    {"{'a':[{'prefix':''}]}", "{'a':5}", N, 0},
    {"{'a':[{'prefix':'日'}]}", "{'a':'日本'}", M, 0},
    {"{'time':[{'prefix':'2017-10-02'}]}", "{'time':'2017-10-02T18:43:48Z'}", M, 0},
    {"{'time':[{'prefix':'2017-10-02'}]}", "{'time':'2017-10-03T18:43:48Z'}", N, 0},
    {"{'a':[{'prefix':'ab'},'zz']}", "{'a':'zz'}", M, 0},
    {"{'a':[{'prefix':'ab'},{'prefix':'cd'}]}", "{'a':'cde'}", M, 0},
    {"{'a':[{'prefix':5}]}", 0, E, "prefix match pattern must be a string"},
    {"{'a':[{'prefix':null}]}", 0, E, "prefix match pattern must be a string"},
    {"{'a':[{'prefix':['a']}]}", 0, E, "prefix match pattern must be a string"},
    {"{'a':[{'prefix':'a','suffix':'b'}]}", 0, E, "Only one key allowed in match expression"},
    {"{'a':[{'Prefix':'a'}]}", 0, E, "Unrecognized match type Prefix"},
    /* prefix + equals-ignore-case */
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':'eventbridge'}", M, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':'EVENTBRIDGE'}", M, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':'EventB'}", M, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':'eventx'}", N, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':'Even'}", N, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'EventB'}}]}", "{'a':5}", N, 0},
    {"{'a':[{'prefix':{'equals-ignore-case':'ÉT'}}]}", "{'a':'été'}", M, 0},
    {"{'a':[{'prefix':{}}]}", 0, E, "Prefix expression name not found"},
    {"{'a':[{'prefix':{'suffix':'x'}}]}", 0, E, "Unsupported prefix pattern: suffix"},
    {"{'a':[{'prefix':{'equals-ignore-case':5}}]}", 0, E,
     "equals-ignore-case match pattern must be a string"},
    {"{'a':[{'prefix':{'equals-ignore-case':'a','x':1}}]}", 0, E,
     "Only one key allowed in match expression"},
    {"{'a':[{'prefix':{'equals-ignore-case':'a'},'x':1}]}", 0, E,
     "Only one key allowed in match expression"},
};

/* ----------------------------------------------------------------- suffix */

static const tcase suffix_cases[] = {
    {"{'f':[{'suffix':'.png'}]}", "{'f':'a.png'}", M, 0},
    {"{'f':[{'suffix':'.png'}]}", "{'f':'.png'}", M, 0},
    {"{'f':[{'suffix':'.png'}]}", "{'f':'a.PNG'}", N, 0},
    {"{'f':[{'suffix':'.png'}]}", "{'f':'png'}", N, 0},
    {"{'f':[{'suffix':'.png'}]}", "{'f':'a.png.x'}", N, 0},
    {"{'f':[{'suffix':'.png'}]}", "{'f':['a.jpg','b.png']}", M, 0},
    {"{'f':[{'suffix':'.png'}]}", "{}", N, 0},
    {"{'f':[{'suffix':'5'}]}", "{'f':5}", N, 0},
    {"{'f':[{'suffix':''}]}", "{'f':''}", M, 0},
    {"{'f':[{'suffix':'本'}]}", "{'f':'日本'}", M, 0},
    {"{'f':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'f':'A.PNG'}", M, 0},
    {"{'f':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'f':'a.Png'}", M, 0},
    {"{'f':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'f':'a.jpg'}", N, 0},
    {"{'f':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'f':'png'}", N, 0},
    {"{'f':[{'suffix':{'equals-ignore-case':'.png'}}]}", "{'f':null}", N, 0},
    {"{'f':[{'suffix':1}]}", 0, E, "suffix match pattern must be a string"},
    {"{'f':[{'suffix':{}}]}", 0, E, "Suffix expression name not found"},
    {"{'f':[{'suffix':{'prefix':'x'}}]}", 0, E, "Unsupported suffix pattern: prefix"},
    {"{'f':[{'suffix':{'equals-ignore-case':true}}]}", 0, E,
     "equals-ignore-case match pattern must be a string"},
    {"{'f':[{'suffix':'a','prefix':'b'}]}", 0, E, "Only one key allowed in match expression"},
};

/* ----------------------------------------------------- equals-ignore-case */

static const tcase eic_cases[] = {
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'ALICE'}", M, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'Alice'}", M, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alice'}", M, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alicex'}", N, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':'alic'}", N, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{'n':null}", N, 0},
    {"{'n':[{'equals-ignore-case':'alice'}]}", "{}", N, 0},
    {"{'n':[{'equals-ignore-case':'5'}]}", "{'n':5}", N, 0},
    {"{'n':[{'equals-ignore-case':'true'}]}", "{'n':true}", N, 0},
    {"{'n':[{'equals-ignore-case':''}]}", "{'n':''}", M, 0},
    {"{'n':[{'equals-ignore-case':'ÉCOLE'}]}", "{'n':'école'}", M, 0},
    {"{'n':[{'equals-ignore-case':'ΣΟΦΙΑ'}]}", "{'n':'σοφια'}", M, 0},
    {"{'n':[{'equals-ignore-case':'ПРИВЕТ'}]}", "{'n':'привет'}", M, 0},
    {"{'n':[{'equals-ignore-case':'straße'}]}", "{'n':'STRASSE'}", N, 0},
    {"{'n':[{'equals-ignore-case':'a-b_c'}]}", "{'n':'A-B_C'}", M, 0},
    {"{'n':[{'equals-ignore-case':'x'}]}", "{'n':['y','X']}", M, 0},
    {"{'n':[{'equals-ignore-case':5}]}", 0, E, "equals-ignore-case match pattern must be a string"},
    {"{'n':[{'equals-ignore-case':['a']}]}", 0, E,
     "equals-ignore-case match pattern must be a string"},
    {"{'n':[{'Equals-Ignore-Case':'a'}]}", 0, E, "Unrecognized match type Equals-Ignore-Case"},
    {"{'n':[{'equals-ignore-case':'a','exists':true}]}", 0, E,
     "Only one key allowed in match expression"},
};

/* --------------------------------------------------------------- wildcard */

static const tcase wildcard_cases[] = {
    {"{'f':[{'wildcard':'*.png'}]}", "{'f':'a.png'}", M, 0},
    {"{'f':[{'wildcard':'*.png'}]}", "{'f':'.png'}", M, 0},
    {"{'f':[{'wildcard':'*.png'}]}", "{'f':'a.jpg'}", N, 0},
    {"{'f':[{'wildcard':'*.png'}]}", "{'f':'a.png.jpg'}", N, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'ab'}", M, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'axxb'}", M, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'a'}", N, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'ba'}", N, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'abx'}", N, 0},
    {"{'f':[{'wildcard':'a*b'}]}", "{'f':'abb'}", M, 0},
    {"{'f':[{'wildcard':'*'}]}", "{'f':''}", M, 0},
    {"{'f':[{'wildcard':'*'}]}", "{'f':'anything'}", M, 0},
    {"{'f':[{'wildcard':'*'}]}", "{'f':5}", N, 0},
    {"{'f':[{'wildcard':'*'}]}", "{'f':null}", N, 0},
    {"{'f':[{'wildcard':'*'}]}", "{}", N, 0},
    {"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'abc'}", M, 0},
    {"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'aXbYc'}", M, 0},
    {"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'acb'}", N, 0},
    {"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'abcbc'}", M, 0},
    {"{'f':[{'wildcard':'a*b*c'}]}", "{'f':'aXbYcZ'}", N, 0},
    {"{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'abab'}", M, 0},
    {"{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'ab'}", N, 0},
    {"{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'aab'}", N, 0},
    {"{'f':[{'wildcard':'*ab*ab'}]}", "{'f':'xabyab'}", M, 0},
    {"{'f':[{'wildcard':'*Title*'}]}", "{'f':'My Title Here'}", M, 0},
    {"{'f':[{'wildcard':'*Title*'}]}", "{'f':'My title here'}", N, 0},
    {"{'f':[{'wildcard':'abc'}]}", "{'f':'abc'}", M, 0},
    {"{'f':[{'wildcard':'abc'}]}", "{'f':'abcd'}", N, 0},
    {"{'f':[{'wildcard':''}]}", "{'f':''}", M, 0},
    {"{'f':[{'wildcard':''}]}", "{'f':'a'}", N, 0},
    {"{'f':[{'wildcard':'日*語'}]}", "{'f':'日本語'}", M, 0},
    {"{'f':[{'wildcard':'a*'}]}", "{'f':['x','ay']}", M, 0},
    {"{'f':[{'wildcard':'arn:aws:s3:::*/*.csv'}]}", "{'f':'arn:aws:s3:::bucket/dir/x.csv'}", M, 0},
    /* escapes: \* is a literal star, \\ a literal backslash */
    {"{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'a*b'}", M, 0},
    {"{'f':[{'wildcard':'a\\\\*b'}]}", "{'f':'axb'}", N, 0},
    {"{'f':[{'wildcard':'a\\\\\\\\b'}]}", "{'f':'a\\\\b'}", M, 0},
    {"{'f':[{'wildcard':'a\\\\\\\\*'}]}", "{'f':'a\\\\xyz'}", M, 0},
    {"{'f':[{'wildcard':'a\\\\\\\\*'}]}", "{'f':'axyz'}", N, 0},
    {"{'f':[{'wildcard':'\\\\**'}]}", "{'f':'*abc'}", M, 0},
    {"{'f':[{'wildcard':'\\\\**'}]}", "{'f':'abc'}", N, 0},
    /* errors; positions count the value's opening quote, as event-ruler does */
    {"{'f':[{'wildcard':'a**b'}]}", 0, E, "Consecutive wildcard characters at pos 2"},
    {"{'f':[{'wildcard':'**'}]}", 0, E, "Consecutive wildcard characters at pos 1"},
    {"{'f':[{'wildcard':'a\\\\b'}]}", 0, E, "Invalid escape character at pos 2"},
    {"{'f':[{'wildcard':'ab\\\\'}]}", 0, E, "Invalid escape character at pos 3"},
    {"{'f':[{'wildcard':5}]}", 0, E, "wildcard match pattern must be a string"},
    {"{'f':[{'wildcard':['*']}]}", 0, E, "wildcard match pattern must be a string"},
    {"{'f':[{'wildcard':'*','prefix':'a'}]}", 0, E, "Only one key allowed in match expression"},
    /* complexity limit */
    {"{'f':[{'wildcard':'*a*a*a*a*a*a*a*a*a*a*a*a'}]}", 0, E, "Rule is too complex"},
    {"{'f':[{'wildcard':'*a*b*c'}]}", "{'f':'xaybzc'}", M, 0},
    {"{'f':[{'wildcard':'*x1'},{'wildcard':'*x2'},{'wildcard':'*x3'},{'wildcard':'*x4'},"
     "{'wildcard':'*x5'},{'wildcard':'*x6'},{'wildcard':'*x7'},{'wildcard':'*x8'},"
     "{'wildcard':'*x9'},{'wildcard':'*x10'},{'wildcard':'*x11'}]}",
     0, E, "Rule is too complex"},
    {"{'f':[{'wildcard':'*x1'},{'wildcard':'*x2'},{'wildcard':'*x3'}]}", "{'f':'ax2'}", M, 0},
};

/* ----------------------------------------------------------- anything-but */

static const tcase anything_but_cases[] = {
    {"{'s':[{'anything-but':'x'}]}", "{'s':'y'}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':'x'}", N, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':null}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{}", N, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':5}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':true}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':''}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':['x','y']}", M, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':['x']}", N, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':[]}", N, 0},
    {"{'s':[{'anything-but':'x'}]}", "{'s':{'t':'y'}}", N, 0},
    {"{'s':[{'anything-but':''}]}", "{'s':''}", N, 0},
    {"{'s':[{'anything-but':''}]}", "{'s':'a'}", M, 0},
    {"{'s':[{'anything-but':['a','b']}]}", "{'s':'c'}", M, 0},
    {"{'s':[{'anything-but':['a','b']}]}", "{'s':'a'}", N, 0},
    {"{'s':[{'anything-but':['a','b']}]}", "{'s':'b'}", N, 0},
    {"{'s':[{'anything-but':['a','b']}]}", "{'s':'A'}", M, 0},
    {"{'s':[{'anything-but':['stopped','overloaded']}]}", "{'s':'running'}", M, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':5}", N, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':5.0}", N, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':5e0}", N, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':6}", M, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':'5'}", M, 0},
    {"{'x':[{'anything-but':5}]}", "{'x':null}", M, 0},
    {"{'x':[{'anything-but':5}]}", "{}", N, 0},
    {"{'x':[{'anything-but':[100,200,300]}]}", "{'x':150}", M, 0},
    {"{'x':[{'anything-but':[100,200,300]}]}", "{'x':200}", N, 0},
    {"{'x':[{'anything-but':[100,200,300]}]}", "{'x':3e2}", N, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{'s':'initializing'}", N, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{'s':'running'}", M, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{'s':'INIT'}", M, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{'s':null}", M, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{'s':5}", M, 0},
    {"{'s':[{'anything-but':{'prefix':'init'}}]}", "{}", N, 0},
    {"{'s':[{'anything-but':{'prefix':['a','b']}}]}", "{'s':'ax'}", N, 0},
    {"{'s':[{'anything-but':{'prefix':['a','b']}}]}", "{'s':'bx'}", N, 0},
    {"{'s':[{'anything-but':{'prefix':['a','b']}}]}", "{'s':'cx'}", M, 0},
    {"{'s':[{'anything-but':{'suffix':'.png'}}]}", "{'s':'a.png'}", N, 0},
    {"{'s':[{'anything-but':{'suffix':'.png'}}]}", "{'s':'a.jpg'}", M, 0},
    {"{'s':[{'anything-but':{'suffix':['.png','.jpg']}}]}", "{'s':'a.jpg'}", N, 0},
    {"{'s':[{'anything-but':{'suffix':['.png','.jpg']}}]}", "{'s':'a.gif'}", M, 0},
    {"{'s':[{'anything-but':{'equals-ignore-case':'ALICE'}}]}", "{'s':'alice'}", N, 0},
    {"{'s':[{'anything-but':{'equals-ignore-case':'ALICE'}}]}", "{'s':'bob'}", M, 0},
    {"{'s':[{'anything-but':{'equals-ignore-case':['A','B']}}]}", "{'s':'b'}", N, 0},
    {"{'s':[{'anything-but':{'equals-ignore-case':['A','B']}}]}", "{'s':'c'}", M, 0},
    {"{'s':[{'anything-but':{'equals-ignore-case':['A','B']}}]}", "{'s':null}", M, 0},
    {"{'s':[{'anything-but':{'wildcard':'*.png'}}]}", "{'s':'a.png'}", N, 0},
    {"{'s':[{'anything-but':{'wildcard':'*.png'}}]}", "{'s':'a.jpg'}", M, 0},
    {"{'s':[{'anything-but':{'wildcard':['*.png','*.jpg']}}]}", "{'s':'a.jpg'}", N, 0},
    {"{'s':[{'anything-but':{'wildcard':['*.png','*.jpg']}}]}", "{'s':'a.gif'}", M, 0},
    {"{'s':[{'anything-but':'x'},'x']}", "{'s':'x'}", M, 0},
    /* errors */
    {"{'s':[{'anything-but':null}]}", 0, E,
     "Value of anything-but must be an array or single string/number value."},
    {"{'s':[{'anything-but':true}]}", 0, E,
     "Value of anything-but must be an array or single string/number value."},
    {"{'s':[{'anything-but':{}}]}", 0, E, "Anything-But expression name not found"},
    {"{'s':[{'anything-but':{'foo':'x'}}]}", 0, E, "Unsupported anything-but pattern: foo"},
    {"{'s':[{'anything-but':{'numeric':['>',1]}}]}", 0, E,
     "Unsupported anything-but pattern: numeric"},
    {"{'s':[{'anything-but':['a',1]}]}", 0, E, "mixed type is not supported"},
    {"{'s':[{'anything-but':[]}]}", 0, E, "mixed type is not supported"},
    {"{'s':[{'anything-but':[null]}]}", 0, E, "start|null|boolean is not supported"},
    {"{'s':[{'anything-but':['a',true]}]}", 0, E, "start|null|boolean is not supported"},
    {"{'s':[{'anything-but':[['a']]}]}", 0, E, "start|null|boolean is not supported"},
    {"{'s':[{'anything-but':{'prefix':''}}]}", 0, E, "Null prefix/suffix not allowed"},
    {"{'s':[{'anything-but':{'suffix':['a','']}}]}", 0, E, "Null prefix/suffix not allowed"},
    {"{'s':[{'anything-but':{'prefix':5}}]}", 0, E, "prefix/suffix match pattern must be a string"},
    {"{'s':[{'anything-but':{'suffix':[5]}}]}", 0, E,
     "prefix/suffix match pattern must be a string"},
    {"{'s':[{'anything-but':{'equals-ignore-case':5}}]}", 0, E,
     "Inside anything-but/equals-ignore-case list"},
    {"{'s':[{'anything-but':{'equals-ignore-case':['a',null]}}]}", 0, E,
     "Inside anything-but/equals-ignore-case list"},
    {"{'s':[{'anything-but':{'wildcard':'a**'}}]}", 0, E, "Consecutive wildcard characters"},
    {"{'s':[{'anything-but':{'wildcard':5}}]}", 0, E, "wildcard match pattern must be a string"},
    {"{'s':[{'anything-but':{'prefix':'a','suffix':'b'}}]}", 0, E,
     "Too many elements in numeric expression"},
    {"{'s':[{'anything-but':'a','prefix':'b'}]}", 0, E, "Too many elements in numeric expression"},
    {"{'s':[{'anything-but':{'prefix':{'equals-ignore-case':'x'}}}]}", 0, E,
     "Value of anything-but must be an array or single string/number value."},
    {"{'s':[{'anything-but':{'prefix':[]}}]}", 0, E, "Empty arrays are not allowed"},
    {"{'s':[{'Anything-But':'x'}]}", 0, E, "Unrecognized match type Anything-But"},
};

/* ---------------------------------------------------------------- numeric */

static const tcase numeric_cases[] = {
    {"{'n':[{'numeric':['>',0]}]}", "{'n':1}", M, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':0}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':-1}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':'1'}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':null}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':true}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{}", N, 0},
    {"{'n':[{'numeric':['>',0]}]}", "{'n':0.000001}", M, 0},
    {"{'n':[{'numeric':['>=',0]}]}", "{'n':0}", M, 0},
    {"{'n':[{'numeric':['>=',0]}]}", "{'n':-0.0}", M, 0},
    {"{'n':[{'numeric':['>=',0]}]}", "{'n':-0.1}", N, 0},
    {"{'n':[{'numeric':['<',10]}]}", "{'n':9.99}", M, 0},
    {"{'n':[{'numeric':['<',10]}]}", "{'n':10}", N, 0},
    {"{'n':[{'numeric':['<',10]}]}", "{'n':-1e9}", M, 0},
    {"{'n':[{'numeric':['<=',10]}]}", "{'n':10}", M, 0},
    {"{'n':[{'numeric':['<=',10]}]}", "{'n':10.0001}", N, 0},
    {"{'n':[{'numeric':['=',5]}]}", "{'n':5}", M, 0},
    {"{'n':[{'numeric':['=',5]}]}", "{'n':5.0}", M, 0},
    {"{'n':[{'numeric':['=',5]}]}", "{'n':5e0}", M, 0},
    {"{'n':[{'numeric':['=',5]}]}", "{'n':6}", N, 0},
    {"{'n':[{'numeric':['=',5]}]}", "{'n':'5'}", N, 0},
    {"{'n':[{'numeric':['=',3.018e2]}]}", "{'n':301.8}", M, 0},
    {"{'n':[{'numeric':['>',0,'<',5]}]}", "{'n':0}", N, 0},
    {"{'n':[{'numeric':['>',0,'<',5]}]}", "{'n':0.0001}", M, 0},
    {"{'n':[{'numeric':['>',0,'<',5]}]}", "{'n':4.9}", M, 0},
    {"{'n':[{'numeric':['>',0,'<',5]}]}", "{'n':5}", N, 0},
    {"{'n':[{'numeric':['>=',0,'<=',5]}]}", "{'n':0}", M, 0},
    {"{'n':[{'numeric':['>=',0,'<=',5]}]}", "{'n':5}", M, 0},
    {"{'n':[{'numeric':['>=',0,'<=',5]}]}", "{'n':5.0001}", N, 0},
    {"{'n':[{'numeric':['>=',0,'<=',5]}]}", "{'n':-0.0001}", N, 0},
    {"{'n':[{'numeric':['>',0,'<=',5]}]}", "{'n':5}", M, 0},
    {"{'n':[{'numeric':['>',0,'<=',5]}]}", "{'n':0}", N, 0},
    {"{'n':[{'numeric':['>=',0,'<',5]}]}", "{'n':0}", M, 0},
    {"{'n':[{'numeric':['>=',0,'<',5]}]}", "{'n':5}", N, 0},
    {"{'n':[{'numeric':['>',-10,'<',-5]}]}", "{'n':-7}", M, 0},
    {"{'n':[{'numeric':['>',-10,'<',-5]}]}", "{'n':-10}", N, 0},
    {"{'n':[{'numeric':['<',1e3]}]}", "{'n':999}", M, 0},
    {"{'n':[{'numeric':['<',1e3]}]}", "{'n':1e3}", N, 0},
    {"{'n':[{'numeric':['>',10]}]}", "{'n':[1,20]}", M, 0},
    {"{'n':[{'numeric':['>',10]}]}", "{'n':[1,2]}", N, 0},
    {"{'n':[{'numeric':['>',5e9]}]}", "{'n':6e9}", M, 0},
    {"{'n':[{'numeric':['<',-5e9]}]}", "{'n':-6e9}", M, 0},
    {"{'n':[{'numeric':['=',0.1]}]}", "{'n':0.1}", M, 0},
    {"{'n':[{'numeric':['>',0]},{'numeric':['<',-10]}]}", "{'n':-11}", M, 0},
    {"{'n':[{'numeric':['>',0]},{'numeric':['<',-10]}]}", "{'n':-5}", N, 0},
    {"{'n':[{'numeric':['>',0]},'zero']}", "{'n':'zero'}", M, 0},
    {"{'c':[{'numeric':['>',0,'<=',5]}],'d':[{'numeric':['<',10]}]}", "{'c':5,'d':9}", M, 0},
    {"{'c':[{'numeric':['>',0,'<=',5]}],'d':[{'numeric':['<',10]}]}", "{'c':5,'d':10}", N, 0},
    /* errors */
    {"{'n':[{'numeric':'>'}]}", 0, E, "Value of numeric must be an array."},
    {"{'n':[{'numeric':5}]}", 0, E, "Value of numeric must be an array."},
    {"{'n':[{'numeric':[]}]}", 0, E, "Invalid member in numeric match"},
    {"{'n':[{'numeric':[5]}]}", 0, E, "Invalid member in numeric match: 5"},
    {"{'n':[{'numeric':['!=',5]}]}", 0, E, "Unrecognized numeric range operator: !="},
    {"{'n':[{'numeric':['==',5]}]}", 0, E, "Unrecognized numeric range operator: =="},
    {"{'n':[{'numeric':['>','5']}]}", 0, E, "Value of > must be numeric"},
    {"{'n':[{'numeric':['>=',null]}]}", 0, E, "Value of >= must be numeric"},
    {"{'n':[{'numeric':['<',true]}]}", 0, E, "Value of < must be numeric"},
    {"{'n':[{'numeric':['<=']}]}", 0, E, "Value of <= must be numeric"},
    {"{'n':[{'numeric':['>']}]}", 0, E, "Value of > must be numeric"},
    {"{'n':[{'numeric':['=','5']}]}", 0, E, "Value of equals must be numeric"},
    {"{'n':[{'numeric':['=',5,'<',6]}]}", 0, E, "Too many elements in numeric expression"},
    {"{'n':[{'numeric':['<',5,'>',0]}]}", 0, E, "Too many elements in numeric expression"},
    {"{'n':[{'numeric':['<=',5,'>=',0]}]}", 0, E, "Too many elements in numeric expression"},
    {"{'n':[{'numeric':['>',0,'>',5]}]}", 0, E, "Bad numeric range operator: >"},
    {"{'n':[{'numeric':['>',0,'=',5]}]}", 0, E, "Bad numeric range operator: ="},
    {"{'n':[{'numeric':['>',0,5]}]}", 0, E, "Bad value in numeric range: 5"},
    {"{'n':[{'numeric':['>',0,'<','5']}]}", 0, E, "Value of < must be numeric"},
    {"{'n':[{'numeric':['>',0,'<']}]}", 0, E, "Value of < must be numeric"},
    {"{'n':[{'numeric':['>',0,'<',5,'<',6]}]}", 0, E, "Too many terms in numeric range expression"},
    {"{'n':[{'numeric':['>',5,'<',1]}]}", 0, E, "Bottom must be less than top"},
    {"{'n':[{'numeric':['>=',5,'<=',5]}]}", 0, E, "Bottom must be less than top"},
    {"{'n':[{'NUMERIC':['>',1]}]}", 0, E, "Unrecognized match type NUMERIC"},
    {"{'n':[{'numeric':['>',1],'x':1}]}", 0, E, "Too many elements in numeric expression"},
};

/* ----------------------------------------------------------------- exists */

static const tcase exists_cases[] = {
    {"{'a':[{'exists':true}]}", "{'a':'x'}", M, 0},
    {"{'a':[{'exists':true}]}", "{'a':''}", M, 0},
    {"{'a':[{'exists':true}]}", "{'a':null}", M, 0},
    {"{'a':[{'exists':true}]}", "{'a':false}", M, 0},
    {"{'a':[{'exists':true}]}", "{'a':0}", M, 0},
    {"{'a':[{'exists':true}]}", "{}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':{}}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':{'b':1}}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':[]}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':[1]}", M, 0},
    {"{'a':[{'exists':true}]}", "{'a':[[]]}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':[{}]}", N, 0},
    {"{'a':[{'exists':true}]}", "{'a':[null]}", M, 0},
    {"{'a':[{'exists':true}]}", "{'b':'x'}", N, 0},
    {"{'a':[{'exists':false}]}", "{}", M, 0},
    {"{'a':[{'exists':false}]}", "{'b':1}", M, 0},
    {"{'a':[{'exists':false}]}", "{'a':{}}", M, 0},
    {"{'a':[{'exists':false}]}", "{'a':[]}", M, 0},
    {"{'a':[{'exists':false}]}", "{'a':{'b':1}}", M, 0},
    {"{'a':[{'exists':false}]}", "{'a':null}", N, 0},
    {"{'a':[{'exists':false}]}", "{'a':''}", N, 0},
    {"{'a':[{'exists':false}]}", "{'a':false}", N, 0},
    {"{'a':[{'exists':false}]}", "{'a':[null]}", N, 0},
    {"{'a':[{'exists':false}]}", "{'a':[[],[1]]}", N, 0},
    {"{'a':{'b':[{'exists':false}]}}", "{'a':1}", M, 0},
    {"{'a':{'b':[{'exists':false}]}}", "{'a':{'b':1}}", N, 0},
    {"{'a':{'b':[{'exists':false}]}}", "{'a':{'c':1}}", M, 0},
    {"{'a':{'b':[{'exists':false}]}}", "{}", M, 0},
    {"{'a':['x'],'b':[{'exists':false}]}", "{'a':'x'}", M, 0},
    {"{'a':['x'],'b':[{'exists':false}]}", "{'a':'x','b':1}", N, 0},
    {"{'a':['x'],'b':[{'exists':false}]}", "{'b':1}", N, 0},
    {"{'a':['x'],'b':[{'exists':false}]}", "{}", N, 0},
    {"{'a':[{'exists':true}],'b':[{'exists':true}]}", "{'a':1,'b':2}", M, 0},
    {"{'a':[{'exists':true}],'b':[{'exists':true}]}", "{'a':1}", N, 0},
    /* exists:false beside other values: missing OR one of the values */
    {"{'a':[{'exists':false},'x']}", "{}", M, 0},
    {"{'a':[{'exists':false},'x']}", "{'a':'x'}", M, 0},
    {"{'a':[{'exists':false},'x']}", "{'a':'y'}", N, 0},
    {"{'a':[{'exists':true},'x']}", "{'a':'y'}", M, 0},
    /* errors */
    {"{'a':[{'exists':'true'}]}", 0, E, "exists match pattern must be either true or false."},
    {"{'a':[{'exists':null}]}", 0, E, "exists match pattern must be either true or false."},
    {"{'a':[{'exists':1}]}", 0, E, "exists match pattern must be either true or false."},
    {"{'a':[{'exists':[true]}]}", 0, E, "exists match pattern must be either true or false."},
    {"{'a':[{'exists':true,'x':1}]}", 0, E, "Only one key allowed in match expression"},
    {"{'a':[{'Exists':true}]}", 0, E, "Unrecognized match type Exists"},
};

/* ------------------------------------------------------------------- cidr */

static const tcase cidr_cases[] = {
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.1'}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.0'}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.255'}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.1.0'}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'9.255.255.255'}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0'}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'10.0.0.256'}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':10}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':'hello'}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':null}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{}", N, 0},
    {"{'ip':[{'cidr':'10.0.0.0/24'}]}", "{'ip':['1.1.1.1','10.0.0.5']}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.7/24'}]}", "{'ip':'10.0.0.1'}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'10.200.3.4'}", M, 0},
    {"{'ip':[{'cidr':'10.0.0.0/8'}]}", "{'ip':'010.0.0.1'}", M, 0},
    {"{'ip':[{'cidr':'0.0.0.0/0'}]}", "{'ip':'1.2.3.4'}", M, 0},
    {"{'ip':[{'cidr':'0.0.0.0/0'}]}", "{'ip':'::1'}", N, 0},
    {"{'ip':[{'cidr':'192.168.1.0/31'}]}", "{'ip':'192.168.1.1'}", M, 0},
    {"{'ip':[{'cidr':'192.168.1.0/31'}]}", "{'ip':'192.168.1.2'}", N, 0},
    {"{'ip':[{'cidr':'172.16.0.0/12'}]}", "{'ip':'172.31.255.255'}", M, 0},
    {"{'ip':[{'cidr':'172.16.0.0/12'}]}", "{'ip':'172.32.0.0'}", N, 0},
    {"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db8::1'}", M, 0},
    {"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:DB8:0:0:0:0:0:1'}", M, 0},
    {"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'2001:db9::1'}", N, 0},
    {"{'ip':[{'cidr':'2001:db8::/32'}]}", "{'ip':'10.0.0.1'}", N, 0},
    {"{'ip':[{'cidr':'::/0'}]}", "{'ip':'fe80::1'}", M, 0},
    {"{'ip':[{'cidr':'fe80::/10'}]}", "{'ip':'febf::1'}", M, 0},
    {"{'ip':[{'cidr':'fe80::/10'}]}", "{'ip':'fec0::1'}", N, 0},
    /* a bare IP literal is a single-address range (event-ruler) */
    {"{'ip':['10.0.0.1']}", "{'ip':'10.0.0.1'}", M, 0},
    {"{'ip':['10.0.0.1']}", "{'ip':'010.000.0.01'}", M, 0},
    {"{'ip':['10.0.0.1']}", "{'ip':'10.0.0.2'}", N, 0},
    {"{'ip':['::1']}", "{'ip':'0:0:0:0:0:0:0:1'}", M, 0},
    {"{'ip':['::1']}", "{'ip':'::2'}", N, 0},
    {"{'ip':['999.0.0.1']}", "{'ip':'999.0.0.1'}", M, 0},
    /* errors */
    {"{'ip':[{'cidr':'10.0.0.0'}]}", 0, E, "Malformed CIDR, one '/' required"},
    {"{'ip':[{'cidr':'10.0.0.0/8/8'}]}", 0, E, "Malformed CIDR, one '/' required"},
    {"{'ip':[{'cidr':'10.0.0.0/'}]}", 0, E, "Malformed CIDR, one '/' required"},
    {"{'ip':[{'cidr':'10.0.0.0/x'}]}", 0, E, "Malformed CIDR, mask bits must be an integer"},
    {"{'ip':[{'cidr':'10.0.0.0/1.5'}]}", 0, E, "Malformed CIDR, mask bits must be an integer"},
    {"{'ip':[{'cidr':'10.0.0.0/-1'}]}", 0, E, "Malformed CIDR, mask bits must not be negative"},
    {"{'ip':[{'cidr':'10.0.0.0/32'}]}", 0, E, "IPv4 mask bits must be < 32"},
    {"{'ip':[{'cidr':'10.0.0.0/33'}]}", 0, E, "IPv4 mask bits must be < 32"},
    {"{'ip':[{'cidr':'::/128'}]}", 0, E, "IPv6 mask bits must be < 128"},
    {"{'ip':[{'cidr':'300.0.0.0/8'}]}", 0, E, "Invalid IP address: 300.0.0.0"},
    {"{'ip':[{'cidr':'1:2:3/8'}]}", 0, E, "Invalid IP address: 1:2:3"},
    {"{'ip':[{'cidr':'foo/8'}]}", 0, E, "Nonstandard IP address: foo"},
    {"{'ip':[{'cidr':'10.0.0/8'}]}", 0, E, "Nonstandard IP address: 10.0.0"},
    {"{'ip':[{'cidr':5}]}", 0, E, "cidr match pattern must be a string"},
    {"{'ip':[{'cidr':'10.0.0.0/8','x':1}]}", 0, E, "Only one key allowed in match expression"},
};

/* ---------------------------------------------------- structure and errors */

static const tcase structure_cases[] = {
    {"[]", 0, E, "Filter is not an object"},
    {"'x'", 0, E, "Filter is not an object"},
    {"5", 0, E, "Filter is not an object"},
    {"null", 0, E, "Filter is not an object"},
    {"{", 0, E, "Invalid JSON"},
    {"{'a':[1]} x", 0, E, "Invalid JSON"},
    {"", 0, E, "Invalid JSON"},
    {"{'a':[1],}", 0, E, "Invalid JSON"},
    {"{}", 0, E, "Empty objects are not allowed"},
    {"{'a':{}}", 0, E, "Empty objects are not allowed"},
    {"{'a':[]}", 0, E, "Empty arrays are not allowed"},
    /* Path depth: 32 levels are fine, 33 are refused (a dotted key counts per part). */
    {"{'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f':[1]}", "{'a':1}", N, NULL},
    {"{'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g':[1]}", 0, E,
     "deeper than 32 levels"},
    {"{'a':{'b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f':{'g':[1]}}}", 0, E,
     "deeper than 32 levels"},
    {"{'detail':{'state':[]}}", 0, E, "\"detail.state\": Empty arrays are not allowed"},
    {"{'detail':{'count':5}}", 0, E, "\"detail.count\" must be an object or an array"},
    {"{'a':'x'}", 0, E, "\"a\" must be an object or an array"},
    {"{'a':null}", 0, E, "\"a\" must be an object or an array"},
    {"{'a':true}", 0, E, "\"a\" must be an object or an array"},
    {"{'a':['x'],'b':7}", 0, E, "\"b\" must be an object or an array"},
    {"{'a':[[1]]}", 0, E, "Match value must be String, number, true, false, or null"},
    {"{'a':[['x']]}", 0, E, "Match value must be String, number, true, false, or null"},
    {"{'a':[{}]}", 0, E, "Match expression name not found"},
    {"{'a':[{'foo':1}]}", 0, E, "Unrecognized match type foo"},
    {"{'a':[{'exactly':'x'}]}", 0, E, "Unrecognized match type exactly"},
    {"{'a':[{'regex':'x'}]}", 0, E, "Unrecognized match type regex"},
    {"{'a':{'b':{'c':[{'bogus':1}]}}}", 0, E, "\"a.b.c\": Unrecognized match type bogus"},
    /* duplicate keys: the later one wins, as in event-ruler */
    {"{'a':['x'],'a':['y']}", "{'a':'y'}", M, 0},
    {"{'a':['x'],'a':['y']}", "{'a':'x'}", N, 0},
    /* events that are not JSON objects */
    {"{'a':['x']}", "[1]", EV, 0},
    {"{'a':['x']}", "'x'", EV, 0},
    {"{'a':['x']}", "3", EV, 0},
    {"{'a':['x']}", "null", EV, 0},
    {"{'a':['x']}", "not json", EV, 0},
    {"{'a':['x']}", "{'a':", EV, 0},
    {"{'a':['x']}", "", EV, 0},
    {"{'a':['x']}", "{'a':'x'} {}", EV, 0},
};

/* -------------------------------------------------------------------- $or */

static const tcase or_cases[] = {
    {"{'$or':[{'a':['x']},{'b':['y']}]}", "{'a':'x'}", M, 0},
    {"{'$or':[{'a':['x']},{'b':['y']}]}", "{'b':'y'}", M, 0},
    {"{'$or':[{'a':['x']},{'b':['y']}]}", "{'a':'y','b':'x'}", N, 0},
    {"{'$or':[{'a':['x']},{'b':['y']}]}", "{'c':1}", N, 0},
    {"{'detail':{'$or':[{'a':[1]},{'b':[2]}]}}", "{'detail':{'b':2}}", M, 0},
    {"{'detail':{'$or':[{'a':[1]},{'b':[2]}]}}", "{'b':2}", N, 0},
    {"{'s':['x'],'$or':[{'a':[1]},{'b':[2]}]}", "{'s':'x','a':1}", M, 0},
    {"{'s':['x'],'$or':[{'a':[1]},{'b':[2]}]}", "{'s':'x','b':2}", M, 0},
    {"{'s':['x'],'$or':[{'a':[1]},{'b':[2]}]}", "{'a':1}", N, 0},
    {"{'$or':[{'a':[1]},{'b':[2]}],'s':['x']}", "{'s':'x','b':2}", M, 0},
    {"{'$or':[{'a':[1]},{'b':[2]}],'s':['x']}", "{'b':2}", N, 0},
    {"{'$or':[{'a':[1],'$or':[{'b':[2]},{'c':[3]}]},{'d':[4]}]}", "{'a':1,'c':3}", M, 0},
    {"{'$or':[{'a':[1],'$or':[{'b':[2]},{'c':[3]}]},{'d':[4]}]}", "{'a':1}", N, 0},
    {"{'$or':[{'a':[1],'$or':[{'b':[2]},{'c':[3]}]},{'d':[4]}]}", "{'d':4}", M, 0},
    {"{'$or':[{'a':[1]},{'a':[2]}]}", "{'a':2}", M, 0},
    {"{'$or':[{'a':[1]},{'a':[2]}]}", "{'a':3}", N, 0},
    {"{'$or':[{'a':[1]},{'b':[2]}],'x':{'$or':[{'c':[3]},{'d':[4]}]}}", "{'a':1,'x':{'d':4}}", M,
     0},
    {"{'$or':[{'a':[1]},{'b':[2]}],'x':{'$or':[{'c':[3]},{'d':[4]}]}}", "{'a':1,'d':4}", N, 0},
    {"{'$or':[{'c':[{'numeric':['>',0,'<=',5]}]},{'d':[{'cidr':'10.0.0.0/8'}]}]}",
     "{'d':'10.1.1.1'}", M, 0},
    {"{'$or':[{'a':[{'exists':false}]},{'b':['y']}]}", "{'b':'z'}", M, 0},
    {"{'$or':[{'a':[{'exists':false}]},{'b':['y']}]}", "{'a':1,'b':'z'}", N, 0},
    {"{'$or':[{'x':{'a':['1']}},{'x':{'b':['2']}}]}", "{'x':{'b':'2'}}", M, 0},
    /* a field named both outside and inside a branch: the later one replaces it */
    {"{'a':['x'],'$or':[{'a':['y']},{'b':['z']}]}", "{'a':'y'}", M, 0},
    {"{'a':['x'],'$or':[{'a':['y']},{'b':['z']}]}", "{'a':'x'}", N, 0},
    {"{'a':['x'],'$or':[{'a':['y']},{'b':['z']}]}", "{'a':'x','b':'z'}", M, 0},
    /* not an or-block: "$or" is then an ordinary field name (event-ruler's legacy compiler) */
    {"{'$or':{'a':['x']}}", "{'$or':{'a':'x'}}", M, 0},
    {"{'$or':{'a':['x']}}", "{'a':'x'}", N, 0},
    {"{'$or':[{'numeric':['>',0]},{'prefix':'x'}]}", "{'$or':5}", M, 0},
    {"{'$or':[{'numeric':['>',0]},{'prefix':'x'}]}", "{'$or':'xa'}", M, 0},
    {"{'$or':[{'numeric':['>',0]},{'prefix':'x'}]}", "{'$or':'a'}", N, 0},
    {"{'$or':['a','b']}", "{'$or':'b'}", M, 0},
    /* invalid either way: the $or error is reported */
    {"{'$or':[{'a':[1]}]}", 0, E, "There must have at least 2 Objects in $or relationship."},
    {"{'$or':[{'a':[1]},5]}", 0, E, "Only JSON object is allowed in array of $or relationship."},
    {"{'$or':[{'a':[1]},[{'b':[2]}]]}", 0, E, "Only JSON object is allowed in array of $or"},
    {"{'$or':[{},{'a':[1]}]}", 0, E, "Empty objects are not allowed"},
    {"{'$or':[{'prefix':['x']},{'b':[1]}]}", 0, E,
     "prefix is Ruler reserved fieldName which cannot be used inside $or."},
    {"{'$or':[{'a':{'numeric':['x']}},{'b':[1]}]}", 0, E,
     "numeric is Ruler reserved fieldName which cannot be used inside $or."},
    {"{'$or':5}", 0, E, "It must be an Array followed with $or."},
    {"{'$or':[]}", 0, E, "There must have at least 2 Objects in $or relationship."},
    {"{'$or':[{'a':[]},{'b':[1]}]}", 0, E, "Empty arrays are not allowed"},
};

/* ------------------------------------------------------- array consistency */

static const tcase array_cases[] = {
    {"{'d':{'a':['1'],'b':['2']}}", "{'d':[{'a':'1','b':'2'}]}", M, 0},
    {"{'d':{'a':['1'],'b':['2']}}", "{'d':[{'a':'1'},{'b':'2'}]}", N, 0},
    {"{'d':{'a':['1'],'b':['2']}}", "{'d':[{'a':'1'},{'b':'2'},{'a':'1','b':'2'}]}", M, 0},
    {"{'d':{'a':['1'],'b':['2']}}", "{'d':[{'a':'1','b':'3'},{'a':'0','b':'2'}]}", N, 0},
    {"{'a':{'b':{'c':['x'],'d':['y']}}}", "{'a':[{'b':[{'c':'x'},{'d':'y'}]}]}", N, 0},
    {"{'a':{'b':{'c':['x'],'d':['y']}}}", "{'a':[{'b':[{'c':'x','d':'y'}]}]}", M, 0},
    {"{'a':{'b':{'c':['x'],'d':['y']}}}", "{'a':[{'b':[{'c':'x'}]},{'b':[{'d':'y'}]}]}", N, 0},
    /* different arrays combine freely */
    {"{'a':{'x':['1']},'b':{'y':['2']}}", "{'a':[{'x':'1'}],'b':[{'y':'2'}]}", M, 0},
    {"{'a':{'x':['1']},'b':['2']}", "{'a':[{'x':'1'},{'x':'0'}],'b':['3','2']}", M, 0},
    /* a primitive array inside one element is still that element */
    {"{'d':{'t':['a'],'u':['b']}}", "{'d':[{'t':['c','a'],'u':'b'}]}", M, 0},
    {"{'d':{'t':['a'],'u':['b']}}", "{'d':[{'t':['a']},{'u':'b'}]}", N, 0},
    /* exists:false is judged within the element of the fields chosen before it */
    {"{'d':{'a':[{'exists':true}],'b':[{'exists':false}]}}", "{'d':[{'a':1},{'b':2}]}", M, 0},
    {"{'d':{'a':[{'exists':true}],'b':[{'exists':false}]}}", "{'d':[{'a':1,'b':2}]}", N, 0},
    {"{'d':{'a':[{'exists':true}],'b':[{'exists':false}]}}", "{'d':[{'a':1,'b':2},{'a':3}]}", M, 0},
    /* ... and only against fields before it in path order (event-ruler's order) */
    {"{'d':{'a':[{'exists':false}],'b':[{'exists':true}]}}", "{'d':[{'b':1},{'a':2}]}", N, 0},
    {"{'d':{'a':[{'exists':false}],'b':[{'exists':true}]}}", "{'d':[{'b':1}]}", M, 0},
    /* anything-but per element */
    {"{'u':{'s':[{'anything-but':'banned'}],'n':['bob']}}",
     "{'u':[{'n':'alice','s':'ok'},{'n':'bob','s':'banned'}]}", N, 0},
    {"{'u':{'s':[{'anything-but':'banned'}],'n':['bob']}}",
     "{'u':[{'n':'alice','s':'banned'},{'n':'bob','s':'ok'}]}", M, 0},
    /* numeric per element */
    {"{'i':{'p':[{'numeric':['>',0,'<',100]}],'n':['w']}}",
     "{'i':[{'n':'w','p':500},{'n':'g','p':50}]}", N, 0},
    {"{'i':{'p':[{'numeric':['>',0,'<',100]}],'n':['w']}}",
     "{'i':[{'n':'g','p':500},{'n':'w','p':50}]}", M, 0},
    /* three fields, one element has them all */
    {"{'d':{'a':['1'],'b':['2'],'c':['3']}}",
     "{'d':[{'a':'1','b':'2'},{'b':'2','c':'3'},{'a':'1','c':'3'},{'a':'1','b':'2','c':'3'}]}", M,
     0},
    {"{'d':{'a':['1'],'b':['2'],'c':['3']}}",
     "{'d':[{'a':'1','b':'2'},{'b':'2','c':'3'},{'a':'1','c':'3'}]}", N, 0},
};

static void test_exact(void **state)
{
    (void)state;
    RUN(exact_cases);
}
static void test_numbers(void **state)
{
    (void)state;
    RUN(number_cases);
}
static void test_prefix(void **state)
{
    (void)state;
    RUN(prefix_cases);
}
static void test_suffix(void **state)
{
    (void)state;
    RUN(suffix_cases);
}
static void test_equals_ignore_case(void **state)
{
    (void)state;
    RUN(eic_cases);
}
static void test_wildcard(void **state)
{
    (void)state;
    RUN(wildcard_cases);
}
static void test_anything_but(void **state)
{
    (void)state;
    RUN(anything_but_cases);
}
static void test_numeric(void **state)
{
    (void)state;
    RUN(numeric_cases);
}
static void test_exists(void **state)
{
    (void)state;
    RUN(exists_cases);
}
static void test_cidr(void **state)
{
    (void)state;
    RUN(cidr_cases);
}
static void test_structure(void **state)
{
    (void)state;
    RUN(structure_cases);
}
static void test_or(void **state)
{
    (void)state;
    RUN(or_cases);
}
static void test_arrays(void **state)
{
    (void)state;
    RUN(array_cases);
}

/* ------------------------------------------------------ non-table checks */

static rules_pattern *parse_ok(const char *squoted)
{
    char err[256] = "";
    char *s = q(squoted);
    rules_pattern *p = NULL;
    int rc = rules_pattern_parse(s, strlen(s), NULL, &p, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "parse %s: %s\n", s, err);
    free(s);
    assert_int_equal(rc, 0);
    assert_non_null(p);
    return p;
}

static void test_size_limit(void **state)
{
    (void)state;
    char err[256];
    rules_pattern *p = (rules_pattern *)0x1;
    /* 4096 bytes is fine, 4097 is over the default limit */
    char *big = malloc(5000);
    assert_non_null(big);
    size_t pre = strlen("{\"a\":[\"");
    memcpy(big, "{\"a\":[\"", pre);
    size_t fill = 4096 - pre - 3;
    memset(big + pre, 'x', fill);
    memcpy(big + pre + fill, "\"]}", 3);
    assert_int_equal(rules_pattern_parse(big, 4096, NULL, &p, err, sizeof(err)), 0);
    rules_pattern_free(p);
    memmove(big + pre + 1, big + pre, fill + 3);
    assert_int_equal(rules_pattern_parse(big, 4097, NULL, &p, err, sizeof(err)), EVBUS_ETOOBIG);
    assert_null(p);
    assert_non_null(strstr(err, "4096"));
    /* a larger configured limit accepts it, a smaller one rejects small patterns */
    rules_limits lim = {.max_pattern_bytes = 8192};
    assert_int_equal(rules_pattern_parse(big, 4097, &lim, &p, err, sizeof(err)), 0);
    rules_pattern_free(p);
    lim.max_pattern_bytes = 10;
    const char *small = "{\"a\":[\"xy\"]}";
    assert_int_equal(rules_pattern_parse(small, strlen(small), &lim, &p, err, sizeof(err)),
                     EVBUS_ETOOBIG);
    assert_null(p);
    free(big);
}

static void test_or_expansion_cap(void **state)
{
    (void)state;
    /* eight independent two-way $or blocks: 256 conjunctions (the cap) */
    char buf[2048];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{");
    for (int i = 0; i < 9; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "%s\"f%d\":{\"$or\":[{\"x\":[1]},{\"y\":[2]}]}", i ? "," : "", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}");
    char err[256];
    rules_pattern *p = NULL;
    assert_int_equal(rules_pattern_parse(buf, n, NULL, &p, err, sizeof(err)), EVBUS_EINVAL);
    assert_non_null(strstr(err, "more than 256"));
    /* drop the ninth block */
    char *cut = strstr(buf, ",\"f8\"");
    assert_non_null(cut);
    strcpy(cut, "}");
    assert_int_equal(rules_pattern_parse(buf, strlen(buf), NULL, &p, err, sizeof(err)), 0);
    assert_int_equal(p->nconjs, 256);
    int m = -1;
    const char *ev = "{\"f0\":{\"y\":2},\"f1\":{\"x\":1},\"f2\":{\"x\":1},\"f3\":{\"y\":2},"
                     "\"f4\":{\"x\":1},\"f5\":{\"x\":1},\"f6\":{\"x\":1},\"f7\":{\"y\":2}}";
    assert_int_equal(rules_pattern_match(p, ev, strlen(ev), &m, NULL, 0), 0);
    assert_int_equal(m, 1);
    rules_pattern_free(p);
}

static void test_dnf_shape(void **state)
{
    (void)state;
    rules_pattern *p = parse_ok("{'source':['aws.cloudwatch'],'$or':[{'metricName':['CPU','Read']},"
                                "{'metricType':['MetricType'],'namespace':['AWS/EC2','AWS/ES']},"
                                "{'scope':['Service']}]}");
    assert_int_equal(p->nconjs, 3);
    assert_int_equal(p->conjs[0].nconds, 2);
    assert_int_equal(p->conjs[1].nconds, 3);
    /* conditions sorted by path */
    assert_string_equal(p->conjs[1].conds[0].path.s, "metricType");
    assert_string_equal(p->conjs[1].conds[1].path.s, "namespace");
    assert_string_equal(p->conjs[1].conds[2].path.s, "source");
    assert_int_equal(p->conjs[1].conds[1].nalts, 2);
    assert_int_equal(p->conjs[1].conds[1].alts[0].kind, RULES_ALT_STRING);
    assert_true(rules_pattern_memory(p) > 0);
    rules_pattern_free(p);

    p = parse_ok("{'a':{'b.c':{'d':[{'wildcard':'x\\\\*y*z'}]}}}");
    const rules_cond *c = &p->conjs[0].conds[0];
    assert_string_equal(c->path.s, "a.b.c.d");
    assert_int_equal(c->nsegs, 3);
    assert_string_equal(c->segs[1].s, "b.c");
    assert_int_equal(c->alts[0].kind, RULES_ALT_WILDCARD);
    assert_int_equal(c->alts[0].wc.nsegs, 2);
    assert_string_equal(c->alts[0].wc.segs[0].s, "x*y");
    assert_string_equal(c->alts[0].wc.segs[1].s, "z");
    assert_string_equal(c->alts[0].wc.text.s, "x\\*y*z");
    rules_pattern_free(p);

    p = parse_ok("{'n':[{'numeric':['>',0,'<=',5]},300,{'cidr':'10.1.2.3/16'},"
                 "{'anything-but':{'equals-ignore-case':['AbC']}},{'exists':false}]}");
    c = &p->conjs[0].conds[0];
    assert_int_equal(c->nalts, 5);
    assert_true(c->has_absent);
    assert_int_equal(c->alts[0].kind, RULES_ALT_NUMERIC);
    assert_true(c->alts[0].range.has_lo && !c->alts[0].range.lo_incl);
    assert_true(c->alts[0].range.has_hi && c->alts[0].range.hi_incl);
    assert_int_equal(c->alts[1].kind, RULES_ALT_NUMBER);
    assert_true(c->alts[1].num == 300.0);
    assert_int_equal(c->alts[2].kind, RULES_ALT_CIDR);
    assert_int_equal(c->alts[2].cidr.family, 4);
    assert_int_equal(c->alts[2].cidr.bits, 16);
    assert_int_equal(c->alts[2].cidr.addr[2], 0);
    assert_int_equal(c->alts[3].kind, RULES_ALT_ANYTHING_BUT);
    assert_int_equal(c->alts[3].ab.items[0].kind, RULES_ALT_EQUALS_IC);
    assert_string_equal(c->alts[3].ab.items[0].folded.s, "abc");
    assert_int_equal(c->alts[4].kind, RULES_ALT_EXISTS);
    assert_int_equal(c->alts[4].exists, 0);
    rules_pattern_free(p);
}

static void expect_explain(const char *pat, const char *evt, const char *want)
{
    rules_pattern *p = parse_ok(pat);
    char *e = q(evt);
    char explain[512] = "";
    int m = -1;
    assert_int_equal(rules_pattern_match(p, e, strlen(e), &m, explain, sizeof(explain)), 0);
    assert_int_equal(m, 0);
    if (strstr(explain, want) == NULL)
        fprintf(stderr, "explain [%s] lacks [%s]\n", explain, want);
    assert_non_null(strstr(explain, want));
    free(e);
    rules_pattern_free(p);
}

static void test_explain(void **state)
{
    (void)state;
    expect_explain("{'detail':{'state':['terminated']}}", "{'detail':{'state':'running'}}",
                   "\"detail.state\": value \"running\" matches none");
    expect_explain("{'source':['x'],'detail':{'state':['terminated']}}", "{'source':'x'}",
                   "\"detail.state\": no value");
    expect_explain("{'a':[{'exists':false}]}", "{'a':1}", "\"a\": must not exist");
    expect_explain("{'d':{'a':['1'],'b':['2']}}", "{'d':[{'a':'1'},{'b':'2'}]}",
                   "array consistency");
    expect_explain("{'$or':[{'a':['1'],'b':['2']},{'c':['3']}]}", "{'a':'1'}",
                   "closest is branch 1 of 2: \"b\"");

    rules_pattern *p = parse_ok("{'a':['x']}");
    char explain[128] = "";
    int m = -1;
    assert_int_equal(rules_pattern_match(p, "[1,2]", 5, &m, explain, sizeof(explain)),
                     EVBUS_EINVAL);
    assert_int_equal(m, 0);
    assert_non_null(strstr(explain, "not a JSON object"));
    /* explain is optional */
    assert_int_equal(rules_pattern_match(p, "{}", 2, &m, NULL, 0), 0);
    assert_int_equal(m, 0);
    rules_pattern_free(p);
}

static void test_parse_error_contract(void **state)
{
    (void)state;
    rules_pattern *p = (rules_pattern *)0x1;
    char err[8];
    /* a short error buffer is truncated, never overrun; NULL err is allowed */
    assert_int_equal(rules_pattern_parse("{\"a\":[]}", 8, NULL, &p, err, sizeof(err)),
                     EVBUS_EINVAL);
    assert_null(p);
    assert_true(strlen(err) < sizeof(err));
    p = (rules_pattern *)0x1;
    assert_int_equal(rules_pattern_parse("{\"a\":[]}", 8, NULL, &p, NULL, 0), EVBUS_EINVAL);
    assert_null(p);
    /* the length is honoured: trailing bytes beyond len are not read */
    assert_int_equal(rules_pattern_parse("{\"a\":[1]}garbage", 9, NULL, &p, NULL, 0), 0);
    rules_pattern_free(p);
    rules_pattern_free(NULL);
    assert_int_equal(rules_pattern_memory(NULL), 0);
}

/* A raw NUL byte is never valid JSON text. jansson drops one that follows a number or a
 * literal, so {"a":[1<NUL>]} used to parse and {"a":0<NUL>} to match, while the matcher's
 * scanner rejected them (found by tests/fuzz/fuzz_event). */
static void test_nul_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } texts[] = {
        {"{\"a\":[1\0]}", 10},   {"{\"a\":[true\0]}", 13},  {"{\"a\":0\0}", 8},
        {"{\"a\":null\0 }", 12}, {"{\"a\":[\"x\"]}\0", 12},
    };
    rules_pattern *any = parse_ok("{'a':[{'exists':true}]}");
    rules_matcher *m = NULL;
    assert_int_equal(rules_matcher_new(&m), 0);
    assert_int_equal(rules_matcher_add(m, 1, any), 0);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        rules_pattern *p = (rules_pattern *)0x1;
        char err[128] = "";
        assert_int_equal(rules_pattern_parse(texts[i].s, texts[i].len, NULL, &p, err, sizeof(err)),
                         EVBUS_EINVAL);
        assert_null(p);
        assert_non_null(strstr(err, "Invalid JSON"));
        int matched = -1;
        assert_int_equal(
            rules_pattern_match(any, texts[i].s, texts[i].len, &matched, err, sizeof(err)),
            EVBUS_EINVAL);
        assert_int_equal(matched, 0);
        assert_non_null(strstr(err, "not valid JSON"));
        uint64_t ids[2];
        size_t n = 9;
        assert_int_equal(rules_matcher_match(m, texts[i].s, texts[i].len, ids, 2, &n, NULL, 0),
                         EVBUS_EINVAL);
    }
    rules_matcher_free(m);
    rules_pattern_free(any);
}

static void test_helpers(void **state)
{
    (void)state;
    uint8_t a[16];
    assert_int_equal(rules_parse_ip("192.168.0.1", 11, a), 4);
    assert_int_equal(a[0], 192);
    assert_int_equal(a[3], 1);
    assert_int_equal(rules_parse_ip("192.168.0.256", 13, a), 0);
    assert_int_equal(rules_parse_ip("192.168.0", 9, a), 0);
    assert_int_equal(rules_parse_ip("1.2.3.4 ", 8, a), 0);
    assert_int_equal(rules_parse_ip("::ffff", 6, a), 6);
    assert_int_equal(rules_parse_ip("::g", 3, a), 0);
    assert_int_equal(rules_parse_ip("", 0, a), 0);
    char out[32];
    const char *in = "AbC ÀÉÖ ΣΩ ДЯ Ÿ";
    rules_casefold(in, strlen(in), out);
    out[strlen(in)] = 0;
    assert_string_equal(out, "abc àéö σω дя ÿ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_equals_ignore_case),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_anything_but),
        cmocka_unit_test(test_numeric),
        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_or),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_or_expansion_cap),
        cmocka_unit_test(test_dnf_shape),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_parse_error_contract),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_helpers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "conformance table rows: %zu\n", total_rows);
    return rc;
}
