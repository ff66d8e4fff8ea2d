/*
 * test_transform: a target's delivery shapes (delivery/transform.h) against
 * EventBridge.
 *
 * Sources of the expectations, each test says which:
 *  - "docs": the EventBridge user guide's input transformation page (its EC2
 *    example event, paths map and table of templates and outputs, its common
 *    issues), the transformer tutorial, and the API reference (Target,
 *    InputTransformer). Outputs are compared byte for byte where the docs show
 *    the exact bytes; the one row whose output the docs reformat is compared as
 *    JSON (and its exact bytes checked separately).
 *  - "AWS": results LocalStack recorded against real EventBridge
 *    (tests/aws/services/events/test_events_inputs.snapshot.json), with their
 *    event (detail {"command": "update-account", "payload": {...}}), paths and
 *    templates; timestamps that the snapshot masks are fixed values here.
 *  - "ours": choices transform.h documents where AWS says nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/util.h"
#include "delivery/transform.h"
#include "evbus/errors.h"

/* ------------------------------------------------------------------ helpers */

typedef struct shape {
    const char *input;
    const char *path;
    const char *map;
    const char *tpl;
} shape;

static transform_spec *compile_at(int line, shape s)
{
    transform_config cfg = {s.input, s.path, s.map, s.tpl};
    transform_spec *spec = NULL;
    char err[512];
    int rc = transform_compile(&cfg, &spec, err, sizeof(err));
    if (rc != 0)
        fail_msg("line %d: compile = %d (%s)", line, rc, err);
    assert_non_null(spec);
    return spec;
}

static char *apply_at(int line, const transform_spec *spec, const char *event,
                      const transform_ctx *ctx)
{
    char *out = NULL, err[512];
    size_t len = 0;
    int rc = transform_apply(spec, event, strlen(event), ctx, &out, &len, err, sizeof(err));
    if (rc != 0)
        fail_msg("line %d: apply = %d (%s)", line, rc, err);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

/* Compiles, applies and compares the payload with `want` byte for byte. */
static void check_at(int line, shape s, const char *event, const transform_ctx *ctx,
                     const char *want)
{
    transform_spec *spec = compile_at(line, s);
    char *out = apply_at(line, spec, event, ctx);
    if (strcmp(out, want) != 0)
        fail_msg("line %d:\n  got  [%s]\n  want [%s]", line, out, want);
    free(out);
    transform_spec_free(spec);
}
#define CHECK(s, event, ctx, want) check_at(__LINE__, s, event, ctx, want)

static void compile_err_at(int line, shape s, int want_rc, const char *want_msg)
{
    transform_config cfg = {s.input, s.path, s.map, s.tpl};
    transform_spec *spec = (transform_spec *)&cfg; /* must be reset to NULL */
    char err[512] = "unset";
    int rc = transform_compile(&cfg, &spec, err, sizeof(err));
    if (rc != want_rc || spec != NULL || strstr(err, want_msg) == NULL)
        fail_msg("line %d: compile = %d err=[%s], want %d with [%s]", line, rc, err, want_rc,
                 want_msg);
}
#define COMPILE_ERR(s, rc, msg) compile_err_at(__LINE__, s, rc, msg)

static void apply_err_at(int line, shape s, const char *event, const transform_ctx *ctx,
                         int want_rc, const char *want_msg)
{
    transform_spec *spec = compile_at(line, s);
    char *out = (char *)"unset", err[512] = "unset";
    size_t len = 7;
    int rc = transform_apply(spec, event, strlen(event), ctx, &out, &len, err, sizeof(err));
    if (rc != want_rc || out != NULL || len != 0 || strstr(err, want_msg) == NULL)
        fail_msg("line %d: apply = %d err=[%s], want %d with [%s]", line, rc, err, want_rc,
                 want_msg);
    transform_spec_free(spec);
}
#define APPLY_ERR(s, event, ctx, rc, msg) apply_err_at(__LINE__, s, event, ctx, rc, msg)

static int json_same(const char *a, const char *b)
{
    json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL);
    json_t *jb = json_loads(b, JSON_DECODE_ANY, NULL);
    int same = ja != NULL && jb != NULL && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

static uint64_t ms_of(const char *rfc3339)
{
    uint64_t ms = 0;
    assert_int_equal(util_parse_rfc3339(rfc3339, &ms), 0);
    return ms;
}

static char *repeat(const char *unit, size_t times, const char *prefix, const char *suffix)
{
    size_t ul = strlen(unit), pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + ul * times + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < times; i++)
        memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + ul * times, suffix, sl + 1);
    return s;
}

/* ------------------------------------------------------------------ the docs' example */

/* The user guide's example Amazon EC2 event, as the docs print it. */
static const char EC2_EVENT[] = "{\n"
                                "  \"version\": \"0\",\n"
                                "  \"id\": \"7bf73129-1428-4cd3-a780-95db273d1602\",\n"
                                "  \"detail-type\": \"EC2 Instance State-change Notification\",\n"
                                "  \"source\": \"aws.ec2\",\n"
                                "  \"account\": \"123456789012\",\n"
                                "  \"time\": \"2015-11-11T21:29:54Z\",\n"
                                "  \"region\": \"us-east-1\",\n"
                                "  \"resources\": [\n"
                                "    \"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"\n"
                                "  ],\n"
                                "  \"detail\": {\n"
                                "    \"instance-id\": \"i-0123456789\",\n"
                                "    \"state\": \"RUNNING\"\n"
                                "  }\n"
                                "}";

/* Its Input Path (the console's name for InputPathsMap), as the docs print it. */
static const char EC2_PATHS[] = "{\n"
                                "  \"timestamp\" : \"$.time\",\n"
                                "  \"instance\" : \"$.detail.instance-id\", \n"
                                "  \"state\" : \"$.detail.state\"\n"
                                "}";

/* The rule of the docs' outputs. */
static const transform_ctx EXAMPLE_RULE = {
    .rule_name = "example",
    .rule_arn = "arn:aws:events:us-east-2:123456789012:rule/example",
};

#define EC2_WITHOUT_DETAIL                                                                         \
    "{\"id\":\"7bf73129-1428-4cd3-a780-95db273d1602\",\"account\":\"123456789012\","               \
    "\"detailType\":\"EC2 Instance State-change Notification\",\"time\":\"2015-11-11T21:29:54Z\"," \
    "\"source\":\"aws.ec2\",\"region\":\"us-east-1\","                                             \
    "\"resources\":[\"arn:aws:ec2:us-east-1:123456789012:instance/"                                \
    "i-abcd1111\"],\"version\":\"0\"}"

#define EC2_MINIFIED                                                                               \
    "{\"version\":\"0\",\"id\":\"7bf73129-1428-4cd3-a780-95db273d1602\","                          \
    "\"detail-type\":\"EC2 Instance State-change Notification\",\"source\":\"aws.ec2\","           \
    "\"account\":\"123456789012\",\"time\":\"2015-11-11T21:29:54Z\",\"region\":\"us-east-1\","     \
    "\"resources\":[\"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"],"                  \
    "\"detail\":{\"instance-id\":\"i-0123456789\",\"state\":\"RUNNING\"}}"

/* docs, table "Input transform examples", every row. */
static void test_docs_table(void **state)
{
    (void)state;
    /* Simple string */
    CHECK(((shape){.map = EC2_PATHS, .tpl = "\"instance <instance> is in <state>\""}), EC2_EVENT,
          NULL, "\"instance i-0123456789 is in RUNNING\"");
    /* String with escaped quotes (the console's behaviour, which the API's is) */
    CHECK(((shape){.map = EC2_PATHS, .tpl = "\"instance \\\"<instance>\\\" is in <state>\""}),
          EC2_EVENT, NULL, "\"instance \\\"i-0123456789\\\" is in RUNNING\"");
    /* Simple JSON */
    CHECK(((shape){.map = EC2_PATHS,
                   .tpl = "{\n  \"instance\" : <instance>,\n  \"state\": <state>\n}"}),
          EC2_EVENT, NULL, "{\n  \"instance\" : \"i-0123456789\",\n  \"state\": \"RUNNING\"\n}");
    /* JSON with strings and variables */
    CHECK(((shape){.map = EC2_PATHS,
                   .tpl = "{\n \"instance\" : <instance>,\n \"state\": \"<state>\",\n "
                          "\"instanceStatus\": \"instance \\\"<instance>\\\" is in <state>\"\n}"}),
          EC2_EVENT, NULL,
          "{\n \"instance\" : \"i-0123456789\",\n \"state\": \"RUNNING\",\n \"instanceStatus\": "
          "\"instance \\\"i-0123456789\\\" is in RUNNING\"\n}");

    /* JSON with a mix of variables and static information: the docs print the output
     * re-indented, so it is compared as JSON; the template's own layout is kept. */
    {
        transform_spec *spec = compile_at(
            __LINE__,
            (shape){.map = EC2_PATHS,
                    .tpl = "{\n  \"instance\" : <instance>,\n  \"state\": [ 9, <state>, true ],\n"
                           "  \"Transformed\" : \"Yes\"\n}\n"});
        char *out = apply_at(__LINE__, spec, EC2_EVENT, NULL);
        assert_true(json_same(out, "{\n  \"instance\" : \"i-0123456789\",\n  \"state\": [\n    "
                                   "9,\n    \"RUNNING\",\n    true\n  ],\n  \"Transformed\" : "
                                   "\"Yes\"\n}"));
        assert_string_equal(out, "{\n  \"instance\" : \"i-0123456789\",\n  \"state\": [ 9, "
                                 "\"RUNNING\", true ],\n  \"Transformed\" : \"Yes\"\n}\n");
        free(out);
        transform_spec_free(spec);
    }

    /* Including reserved variables in JSON: the docs elide originalEvent ("commented for
     * brevity"); its members are AWS's recorded ones (see test_aws_predefined_variables). */
    CHECK(((shape){.map = EC2_PATHS,
                   .tpl = "{\n  \"instance\" : <instance>,\n  \"state\": <state>,\n  \"ruleArn\" "
                          ": <aws.events.rule-arn>,\n  \"ruleName\" : <aws.events.rule-name>,\n  "
                          "\"originalEvent\" : <aws.events.event>\n}"}),
          EC2_EVENT, &EXAMPLE_RULE,
          "{\n  \"instance\" : \"i-0123456789\",\n  \"state\": \"RUNNING\",\n  \"ruleArn\" : "
          "\"arn:aws:events:us-east-2:123456789012:rule/example\",\n  \"ruleName\" : "
          "\"example\",\n  \"originalEvent\" : " EC2_WITHOUT_DETAIL "\n}");

    /* Including reserved variables in a string */
    CHECK(((shape){.map = EC2_PATHS, .tpl = "\"<aws.events.rule-name> triggered\""}), EC2_EVENT,
          &EXAMPLE_RULE, "\"example triggered\"");

    /* Amazon CloudWatch log group: the docs show CloudWatch Logs' rendering of the message
     * (unescaped quotes, a bare timestamp); EventBridge's payload is this valid JSON. */
    CHECK(((shape){.map = EC2_PATHS,
                   .tpl = "{\n  \"timestamp\" : <timestamp>,\n  \"message\": \"instance "
                          "\\\"<instance>\\\" is in <state>\"\n}"}),
          EC2_EVENT, NULL,
          "{\n  \"timestamp\" : \"2015-11-11T21:29:54Z\",\n  \"message\": \"instance "
          "\\\"i-0123456789\\\" is in RUNNING\"\n}");
}

/* docs, "Common issues with transforming input". */
static void test_docs_common_issues(void **state)
{
    (void)state;
    /* "If you specify a variable to match a JSON path that doesn't exist in the event, that
     * variable isn't created and won't appear in the output." */
    CHECK(((shape){.map = "{\"nope\": \"$.detail.nope\"}", .tpl = "\"[<nope>]\""}), EC2_EVENT, NULL,
          "\"[]\"");
    /* An object referenced in a string: "EventBridge removes any internal quotes to ensure a
     * valid string" ("Detail is <detail>"). */
    CHECK(((shape){.map = "{\"detail\": \"$.detail\"}", .tpl = "\"Detail is <detail>\""}),
          EC2_EVENT, NULL, "\"Detail is {instance-id:i-0123456789,state:RUNNING}\"");
    /* "... if you want to output a JSON object based on a single JSON path variable, you must
     * place it as a key": {"detail": <detail>}. */
    CHECK(((shape){.map = "{\"detail\": \"$.detail\"}", .tpl = "{\"detail\": <detail>}"}),
          EC2_EVENT, NULL,
          "{\"detail\": {\"instance-id\":\"i-0123456789\",\"state\":\"RUNNING\"}}");
    /* "Quotes are not required for variables that represent strings ... EventBridge does not
     * add quotes to variables that represent JSON objects or arrays." */
    CHECK(((shape){.tpl = "{\n  \"ruleArn\" : <aws.events.rule-arn>,\n  \"ruleName\" : "
                          "<aws.events.rule-name>,\n  \"originalEvent\" : "
                          "<aws.events.event.json>\n}"}),
          EC2_EVENT, &EXAMPLE_RULE,
          "{\n  \"ruleArn\" : \"arn:aws:events:us-east-2:123456789012:rule/example\",\n  "
          "\"ruleName\" : \"example\",\n  \"originalEvent\" : " EC2_MINIFIED "\n}");
    /* Multi-line text output: each line of the template quoted on its own. */
    CHECK(
        ((shape){.map = EC2_PATHS,
                 .tpl = "\"Instance <instance>\"\n\"State: \\\"<state>\\\"\"\n\"At <timestamp>\""}),
        EC2_EVENT, NULL,
        "\"Instance i-0123456789\"\n\"State: \\\"RUNNING\\\"\"\n\"At 2015-11-11T21:29:54Z\"");
}

/* docs, API reference: InputTransformer's three examples (no event given there: this one has
 * the detail.instance and detail.status they read). */
static void test_docs_api_reference(void **state)
{
    (void)state;
    const char *event = "{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\","
                        "\"detail-type\":\"EC2 Instance State-change Notification\","
                        "\"source\":\"aws.ec2\",\"account\":\"111122223333\","
                        "\"time\":\"2017-12-22T18:43:48Z\",\"region\":\"us-west-1\","
                        "\"resources\":[],\"detail\":{\"instance\":\"i-1234567890abcdef0\","
                        "\"status\":\"running\"}}";
    const char *map = "{\"instance\": \"$.detail.instance\",\"status\": \"$.detail.status\"}";
    CHECK(((shape){.map = map, .tpl = "<instance> is in state <status>"}), event, NULL,
          "i-1234567890abcdef0 is in state running");
    /* "<instance> is in state \"<status>\"" is the JSON-escaped form of this template. */
    CHECK(((shape){.map = map, .tpl = "<instance> is in state \"<status>\""}), event, NULL,
          "i-1234567890abcdef0 is in state \"running\"");
    CHECK(((shape){.map = map,
                   .tpl = "{\"myInstance\": <instance>,\"myStatus\": \"<instance> is in state "
                          "\\\"<status>\\\"\"}"}),
          event, NULL,
          "{\"myInstance\": \"i-1234567890abcdef0\",\"myStatus\": \"i-1234567890abcdef0 is in "
          "state \\\"running\\\"\"}");
    /* Target: "InputPath ... (e.g. $.detail), then only the part of the event specified in the
     * path is passed to the target"; "Input ... the matched event is overridden with this
     * constant"; neither: "the entire event is passed to the target in JSON form". */
    CHECK(((shape){.path = "$.detail"}), event, NULL,
          "{\"instance\":\"i-1234567890abcdef0\",\"status\":\"running\"}");
    CHECK(((shape){.input = "{\"constant\": [1, 2.50, \"x\"]}"}), event, NULL,
          "{\"constant\": [1, 2.50, \"x\"]}");
    CHECK(((shape){0}), event, NULL, event);
    CHECK(((shape){0}), EC2_EVENT, NULL, EC2_EVENT);
}

/* docs, tutorial "Use input transformer to customize what EventBridge passes to the event
 * target", with the event the console sends (source TestEvent, detail {}). */
static void test_docs_tutorial(void **state)
{
    (void)state;
    const char *event = "{\"version\":\"0\",\"id\":\"2b6e4a54-8d3e-3a55-a2a6-0e8f3b6e5c1e\","
                        "\"detail-type\":\"customerCreated\",\"source\":\"TestEvent\","
                        "\"account\":\"123456789012\",\"time\":\"2022-04-20T10:00:00Z\","
                        "\"region\":\"us-east-1\",\"resources\":[],\"detail\":{}}";
    CHECK(((shape){.map = "{\"detail-type\":\"$.detail-type\"}",
                   .tpl = "\"This event was of <detail-type> type.\""}),
          event, NULL, "\"This event was of customerCreated type.\"");
}

/* ------------------------------------------------------------------ AWS's recorded results */

#define LS_DETAIL                                                                                  \
    "{\"command\": \"update-account\", \"payload\": {\"acc_id\": \"0a787ecb-4015\", \"sf_id\": "   \
    "\"baz\"}}"
#define LS_EVENT_WITH(detail)                                                                      \
    "{\"version\": \"0\", \"id\": \"6f9a2e1c-3b4d-4e5f-8a9b-0c1d2e3f4a5b\", \"detail-type\": "     \
    "\"core.update-account-command\", \"source\": \"core.update-account-command\", \"account\": "  \
    "\"111111111111\", \"time\": \"2024-05-13T12:27:07Z\", \"region\": \"us-east-1\", "            \
    "\"resources\": [], \"detail\": " detail "}"
static const char LS_EVENT[] = LS_EVENT_WITH(LS_DETAIL);
static const char LS_MAP[] =
    "{\"detail-type\": \"$.detail-type\", \"timestamp\": \"$.time\", \"command\": "
    "\"$.detail.command\"}";
static const char LS_MAP_MISSING[] =
    "{\"detail-type\": \"$.detail-type\", \"timestamp\": \"$.time\", \"command\": "
    "\"$.detail.notinmessage\"}";

/* AWS, TestInputPath. */
static void test_aws_input_path(void **state)
{
    (void)state;
    CHECK(((shape){.path = "$.detail"}), LS_EVENT, NULL,
          "{\"command\":\"update-account\",\"payload\":{\"acc_id\":\"0a787ecb-4015\",\"sf_id\":"
          "\"baz\"}}");
    CHECK(((shape){.path = "$.detail.payload"}), LS_EVENT, NULL,
          "{\"acc_id\":\"0a787ecb-4015\",\"sf_id\":\"baz\"}");
    /* A member named like its parent. */
    CHECK(((shape){.path = "$.detail.payload"}),
          LS_EVENT_WITH("{\"command\": \"update-account\", \"payload\": {\"acc_id\": "
                        "\"0a787ecb-4015\", \"payload\": {\"message\": \"baz\", \"id\": "
                        "\"123\"}}}"),
          NULL, "{\"acc_id\":\"0a787ecb-4015\",\"payload\":{\"message\":\"baz\",\"id\":\"123\"}}");
    /* A string is sent as a JSON string: the SQS body is "baz" with its quotes. */
    CHECK(((shape){.path = "$.detail.payload.sf_id"}), LS_EVENT, NULL, "\"baz\"");
}

/* AWS, TestInputTransformer: string and JSON templates, all paths found and one missing. */
static void test_aws_input_transformer(void **state)
{
    (void)state;
    const char *tpl = "\"Event of <detail-type> type, at time <timestamp>, info extracted from "
                      "detail <command>\"";
    CHECK(((shape){.map = LS_MAP, .tpl = tpl}), LS_EVENT, NULL,
          "\"Event of core.update-account-command type, at time 2024-05-13T12:27:07Z, info "
          "extracted from detail update-account\"");
    CHECK(((shape){.map = LS_MAP_MISSING, .tpl = tpl}), LS_EVENT, NULL,
          "\"Event of core.update-account-command type, at time 2024-05-13T12:27:07Z, info "
          "extracted from detail \"");

    /* Starts with a quote, so a string template even though braces follow. */
    const char *special = "\"{[/Check with special starting characters for event of "
                          "<detail-type> type\"";
    transform_spec *spec = compile_at(__LINE__, (shape){.map = LS_MAP, .tpl = special});
    assert_int_equal(transform_spec_kind(spec), TRANSFORM_TEMPLATE_TEXT);
    transform_spec_free(spec);
    CHECK(((shape){.map = LS_MAP_MISSING, .tpl = special}), LS_EVENT, NULL,
          "\"{[/Check with special starting characters for event of core.update-account-command "
          "type\"");

    const char *json = "{\"detailType\": <detail-type>,  \"time\": <timestamp>, \"command\": "
                       "<command>}";
    spec = compile_at(__LINE__, (shape){.map = LS_MAP, .tpl = json});
    assert_int_equal(transform_spec_kind(spec), TRANSFORM_TEMPLATE_JSON);
    transform_spec_free(spec);
    CHECK(((shape){.map = LS_MAP, .tpl = json}), LS_EVENT, NULL,
          "{\"detailType\": \"core.update-account-command\",  \"time\": "
          "\"2024-05-13T12:27:07Z\", \"command\": \"update-account\"}");
    /* A path that selects nothing, outside quotes: "" (AWS's body has "command": ""). */
    CHECK(((shape){.map = LS_MAP_MISSING, .tpl = json}), LS_EVENT, NULL,
          "{\"detailType\": \"core.update-account-command\",  \"time\": "
          "\"2024-05-13T12:27:07Z\", \"command\": \"\"}");

    /* PutTargets: "InputTemplate for target <id> contains invalid placeholder notdefinedkey." */
    COMPILE_ERR(((shape){.map = LS_MAP,
                         .tpl = "\"Event of <detail-type> type, with not defined key "
                                "<notdefinedkey>\""}),
                EVBUS_EINVAL, "InputTemplate contains invalid placeholder notdefinedkey.");
    /* PutTargets: InputPath and InputTransformer together. */
    COMPILE_ERR(((shape){.path = "$.detail", .map = LS_MAP, .tpl = json}), EVBUS_EINVAL,
                "Only one of Input, InputPath, or InputTransformer must be provided.");
    COMPILE_ERR(((shape){.input = "{}", .path = "$.detail"}), EVBUS_EINVAL,
                "Only one of Input, InputPath, or InputTransformer must be provided.");
    COMPILE_ERR(((shape){.input = "{}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "Only one of Input, InputPath, or InputTransformer must be provided.");
}

/* AWS, predefined variables, with no InputPathsMap. */
static void test_aws_predefined_variables(void **state)
{
    (void)state;
    transform_ctx ctx = {
        .rule_name = "test-rule",
        .rule_arn = "arn:aws:events:us-east-1:111111111111:rule/test-bus/test-rule",
        .ingestion_time_ms = ms_of("2024-06-11T08:33:10Z"),
    };
    CHECK(((shape){.tpl = "\"Message containing all pre defined variables <aws.events.rule-arn> "
                          "<aws.events.rule-name> <aws.events.event.ingestion-time>\""}),
          LS_EVENT, &ctx,
          "\"Message containing all pre defined variables "
          "arn:aws:events:us-east-1:111111111111:rule/test-bus/test-rule test-rule "
          "2024-06-11T08:33:10Z\"");
    /* aws.events.event: no detail, detailType, AWS's member order; .json: the whole event. */
    CHECK(((shape){.tpl = "{\"originalEvent\": <aws.events.event>, \"originalEventJson\": "
                          "<aws.events.event.json>}"}),
          LS_EVENT, &ctx,
          "{\"originalEvent\": {\"id\":\"6f9a2e1c-3b4d-4e5f-8a9b-0c1d2e3f4a5b\",\"account\":"
          "\"111111111111\",\"detailType\":\"core.update-account-command\",\"time\":"
          "\"2024-05-13T12:27:07Z\",\"source\":\"core.update-account-command\",\"region\":"
          "\"us-east-1\",\"resources\":[],\"version\":\"0\"}, \"originalEventJson\": "
          "{\"version\":\"0\",\"id\":\"6f9a2e1c-3b4d-4e5f-8a9b-0c1d2e3f4a5b\",\"detail-type\":"
          "\"core.update-account-command\",\"source\":\"core.update-account-command\",\"account\":"
          "\"111111111111\",\"time\":\"2024-05-13T12:27:07Z\",\"region\":\"us-east-1\","
          "\"resources\":[],\"detail\":{\"command\":\"update-account\",\"payload\":{\"acc_id\":"
          "\"0a787ecb-4015\",\"sf_id\":\"baz\"}}}}");
    /* Predefined values inside quotes of a JSON template, and in value position. */
    CHECK(((shape){.tpl = "{\"at\": <aws.events.event.ingestion-time>, \"msg\": "
                          "\"rule <aws.events.rule-name> (<aws.events.rule-arn>)\"}"}),
          LS_EVENT, &ctx,
          "{\"at\": \"2024-06-11T08:33:10Z\", \"msg\": \"rule test-rule "
          "(arn:aws:events:us-east-1:111111111111:rule/test-bus/test-rule)\"}");
    /* ours: no ctx: empty rule strings, ingestion time from the event's "time". */
    CHECK(((shape){.tpl = "[<aws.events.rule-name>, <aws.events.rule-arn>, "
                          "<aws.events.event.ingestion-time>]"}),
          LS_EVENT, NULL, "[\"\", \"\", \"2024-05-13T12:27:07Z\"]");
    /* ours: members of the envelope beyond EventBridge's follow, in event order. */
    CHECK(((shape){.tpl = "{\"e\": <aws.events.event>}"}),
          "{\"detail\": {\"a\": 1}, \"bus\": \"default\", \"source\": \"s\", \"partition\": 3, "
          "\"detail-type\": \"t\", \"offset\": 12}",
          NULL,
          "{\"e\": {\"detailType\":\"t\",\"source\":\"s\",\"bus\":\"default\",\"partition\":3,"
          "\"offset\":12}}");
}

/* ------------------------------------------------------------------ paths and values */

static const char RICH_EVENT[] =
    "{\"version\": \"0\", \"id\": \"e1\", \"detail-type\": \"order\", \"source\": \"shop\", "
    "\"account\": \"1\", \"time\": \"2026-01-02T03:04:05Z\", \"region\": \"r\", "
    "\"resources\": [\"arn:a\", \"arn:b\"], \"detail\": {"
    "\"items\": [{\"id\": 1, \"sku\": \"A\"}, {\"sku\": \"B\"}, {\"id\": 3, \"sku\": \"C\"}], "
    "\"price\": 0.1, \"big\": 12345678901234567890, \"exp\": 1E+2, \"neg\": -0.0, "
    "\"flag\": true, \"none\": null, \"empty\": [], \"tags\": [\"x\", \"y z\"], "
    "\"msg\": \"say \\\"hi\\\"\\n\\tbye\\\\\", \"uni\": \"caf\\u00e9 \xc3\xa9 \\ud83d\\ude00\", "
    "\"odd key\": \"odd\", \"a.b\": \"dotted\", \"dup\": 1, \"dup\": 2, "
    "\"n\\u0061me\": \"escaped name\", \"nested\": {\"o\": {\"k\": [1, {\"deep\": \"v\"}]}}}}";

static void test_input_path_values(void **state)
{
    (void)state;
    /* Numbers and escapes exactly as published (no double round trip). */
    CHECK(((shape){.path = "$.detail.price"}), RICH_EVENT, NULL, "0.1");
    CHECK(((shape){.path = "$.detail.big"}), RICH_EVENT, NULL, "12345678901234567890");
    CHECK(((shape){.path = "$.detail.exp"}), RICH_EVENT, NULL, "1E+2");
    CHECK(((shape){.path = "$.detail.neg"}), RICH_EVENT, NULL, "-0.0");
    CHECK(((shape){.path = "$.detail.flag"}), RICH_EVENT, NULL, "true");
    CHECK(((shape){.path = "$.detail.none"}), RICH_EVENT, NULL, "null");
    CHECK(((shape){.path = "$.detail.msg"}), RICH_EVENT, NULL, "\"say \\\"hi\\\"\\n\\tbye\\\\\"");
    CHECK(((shape){.path = "$.detail.uni"}), RICH_EVENT, NULL,
          "\"caf\\u00e9 \xc3\xa9 \\ud83d\\ude00\"");
    /* Arrays: an index, a negative index (from the end), past the end. */
    CHECK(((shape){.path = "$.resources[0]"}), RICH_EVENT, NULL, "\"arn:a\"");
    CHECK(((shape){.path = "$.detail.items[0]"}), RICH_EVENT, NULL, "{\"id\":1,\"sku\":\"A\"}");
    CHECK(((shape){.path = "$.detail.items[-1].sku"}), RICH_EVENT, NULL, "\"C\"");
    CHECK(((shape){.path = "$.detail.nested.o.k[1].deep"}), RICH_EVENT, NULL, "\"v\"");
    CHECK(((shape){.path = "$.detail.empty"}), RICH_EVENT, NULL, "[]");
    /* Bracketed names for characters outside the dot notation's set. */
    CHECK(((shape){.path = "$.detail['odd key']"}), RICH_EVENT, NULL, "\"odd\"");
    CHECK(((shape){.path = "$['detail'][\"a.b\"]"}), RICH_EVENT, NULL, "\"dotted\"");
    /* A name written with escapes in the event; a name written twice (the last wins). */
    CHECK(((shape){.path = "$.detail.name"}), RICH_EVENT, NULL, "\"escaped name\"");
    CHECK(((shape){.path = "$.detail.dup"}), RICH_EVENT, NULL, "2");
    /* Wildcards: an array of the matches, in document order; [] when none. */
    CHECK(((shape){.path = "$.detail.items[*].id"}), RICH_EVENT, NULL, "[1,3]");
    CHECK(((shape){.path = "$.detail.items.*.sku"}), RICH_EVENT, NULL, "[\"A\",\"B\",\"C\"]");
    CHECK(((shape){.path = "$.resources[*]"}), RICH_EVENT, NULL, "[\"arn:a\",\"arn:b\"]");
    CHECK(((shape){.path = "$.detail.nested.*"}), RICH_EVENT, NULL,
          "[{\"k\":[1,{\"deep\":\"v\"}]}]");
    CHECK(((shape){.path = "$.detail.empty[*]"}), RICH_EVENT, NULL, "[]");
    CHECK(((shape){.path = "$.detail.price[*]"}), RICH_EVENT, NULL, "[]");
    /* The whole event, minified. */
    CHECK(((shape){.path = "$"}), EC2_EVENT, NULL, EC2_MINIFIED);
    /* Paths that select nothing. */
    APPLY_ERR(((shape){.path = "$.detail.nope"}), RICH_EVENT, NULL, EVBUS_ENOTFOUND,
              "InputPath $.detail.nope selects nothing");
    APPLY_ERR(((shape){.path = "$.detail.items[3]"}), RICH_EVENT, NULL, EVBUS_ENOTFOUND,
              "selects nothing");
    APPLY_ERR(((shape){.path = "$.detail.items[-4]"}), RICH_EVENT, NULL, EVBUS_ENOTFOUND,
              "selects nothing");
    APPLY_ERR(((shape){.path = "$.detail.price.x"}), RICH_EVENT, NULL, EVBUS_ENOTFOUND,
              "selects nothing");
    APPLY_ERR(((shape){.path = "$.detail[0]"}), RICH_EVENT, NULL, EVBUS_ENOTFOUND,
              "selects nothing");
}

static const char RICH_MAP[] =
    "{\"price\": \"$.detail.price\", \"big\": \"$.detail.big\", \"flag\": \"$.detail.flag\", "
    "\"none\": \"$.detail.none\", \"msg\": \"$.detail.msg\", \"uni\": \"$.detail.uni\", "
    "\"tags\": \"$.detail.tags\", \"item\": \"$.detail.items[0]\", \"ids\": "
    "\"$.detail.items[*].id\", \"nested\": \"$.detail.nested\", \"missing\": \"$.nope\"}";

static void test_template_forms(void **state)
{
    (void)state;
    /* Outside quotes: JSON values, exact text, containers minified. */
    CHECK(((shape){.map = RICH_MAP,
                   .tpl = "{\"p\": <price>, \"b\": <big>, \"f\": <flag>, \"z\": <none>, \"m\": "
                          "<msg>, \"u\": <uni>, \"t\": <tags>, \"i\": <item>, \"ids\": <ids>, "
                          "\"x\": <missing>}"}),
          RICH_EVENT, NULL,
          "{\"p\": 0.1, \"b\": 12345678901234567890, \"f\": true, \"z\": null, \"m\": \"say "
          "\\\"hi\\\"\\n\\tbye\\\\\", \"u\": \"caf\\u00e9 \xc3\xa9 \\ud83d\\ude00\", \"t\": "
          "[\"x\",\"y z\"], \"i\": {\"id\":1,\"sku\":\"A\"}, \"ids\": [1,3], \"x\": \"\"}");
    /* Inside quotes: the characters as written in the event (escapes kept, so still valid),
     * containers without their quotes, nothing for a missing value. */
    CHECK(((shape){.map = RICH_MAP,
                   .tpl = "{\"s\": \"<price>|<big>|<flag>|<none>|<msg>|<uni>|<tags>|<item>|"
                          "<ids>|<nested>|<missing>\"}"}),
          RICH_EVENT, NULL,
          "{\"s\": \"0.1|12345678901234567890|true|null|say \\\"hi\\\"\\n\\tbye\\\\|caf\\u00e9 "
          "\xc3\xa9 \\ud83d\\ude00|[x,y z]|{id:1,sku:A}|[1,3]|{o:{k:[1,{deep:v}]}}|\"}");
    /* A string template gets the text form everywhere, quoted or not. */
    CHECK(((shape){.map = RICH_MAP, .tpl = "tags <tags> item <item> \"<msg>\" <missing>."}),
          RICH_EVENT, NULL, "tags [x,y z] item {id:1,sku:A} \"say \\\"hi\\\"\\n\\tbye\\\\\" .");
    /* A JSON array template; leading blanks; "<" that is not a placeholder stays text. */
    CHECK(((shape){.map = RICH_MAP, .tpl = " \n[<price>, \"a < b\", \"<>\", \"<a b>\", \"x\"]"}),
          RICH_EVENT, NULL, " \n[0.1, \"a < b\", \"<>\", \"<a b>\", \"x\"]");
    CHECK(((shape){.map = RICH_MAP, .tpl = "1 < 2 and <price> > 0"}), RICH_EVENT, NULL,
          "1 < 2 and 0.1 > 0");
    /* An escaped backslash before a placeholder inside quotes. */
    CHECK(((shape){.map = RICH_MAP, .tpl = "{\"s\": \"\\\\<price>\"}"}), RICH_EVENT, NULL,
          "{\"s\": \"\\\\0.1\"}");
    /* The same variable many times; unused variables are not evaluated into the output. */
    CHECK(((shape){.map = RICH_MAP, .tpl = "[<flag>,<flag>,\"<flag><flag>\"]"}), RICH_EVENT, NULL,
          "[true,true,\"truetrue\"]");
}

/* ours: a compiled JSON template cannot produce invalid JSON, whatever the values. */
static void test_json_results_always_valid(void **state)
{
    (void)state;
    static const char *const values[] = {
        "\"plain\"",
        "\"quote \\\" backslash \\\\ slash \\/ controls \\b\\f\\n\\r\\t \\u0000 end\\\\\"",
        "\"\xe2\x82\xac \\ud834\\udd1e\"",
        "-12.5e-3",
        "0",
        "false",
        "null",
        "[]",
        "{}",
        "{\"k\\\"ey\": [\"v\\\\\", {\"a\": \"\\\"\"}], \"x\": \"}]\"}",
        "[ \"spaced out\" , { \"a\" : [ 1 , 2 ] } ]",
    };
    static const char *const templates[] = {
        "{\"v\": <v>}",
        "{\"v\": \"<v>\"}",
        "{\"v\": \"pre <v> mid <v> post\", \"w\": [<v>, \"<v>\"]}",
        "[<v>]",
        "[\"<v>\", {\"in\": <v>}]",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char event[512];
        snprintf(event, sizeof(event), "{\"detail\": {\"v\": %s}}", values[i]);
        for (size_t t = 0; t < sizeof(templates) / sizeof(templates[0]); t++) {
            transform_spec *spec = compile_at(
                __LINE__, (shape){.map = "{\"v\": \"$.detail.v\"}", .tpl = templates[t]});
            char *out = apply_at(__LINE__, spec, event, NULL);
            json_error_t je;
            json_t *j = json_loads(out, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (j == NULL)
                fail_msg("value %zu template %zu: [%s] is not JSON: %s", i, t, out, je.text);
            json_decref(j);
            free(out);
            transform_spec_free(spec);
        }
    }
    /* Outside quotes, the value is the event's value. */
    CHECK(((shape){.map = "{\"v\": \"$.detail.v\"}", .tpl = "{\"v\": <v>}"}),
          "{\"detail\": {\"v\": {\"k\\\"ey\": [\"v\\\\\"], \"x\": \"}]\"}}}", NULL,
          "{\"v\": {\"k\\\"ey\":[\"v\\\\\"],\"x\":\"}]\"}}");
}

/* ------------------------------------------------------------------ compile errors */

static void test_input_errors(void **state)
{
    (void)state;
    COMPILE_ERR(((shape){.input = "{\"a\": "}), EVBUS_EINVAL, "Input is not a valid JSON text");
    COMPILE_ERR(((shape){.input = ""}), EVBUS_EINVAL, "Input is not a valid JSON text");
    COMPILE_ERR(((shape){.input = "{\"a\": 1} x"}), EVBUS_EINVAL, "unexpected text");
    COMPILE_ERR(((shape){.input = "{'a': 1}"}), EVBUS_EINVAL, "offset 1");
    COMPILE_ERR(((shape){.input = "[01]"}), EVBUS_EINVAL, "Input is not a valid JSON text");
    COMPILE_ERR(((shape){.input = "\"\xff\""}), EVBUS_EINVAL, "not valid UTF-8");
    /* Any JSON value is a JSON text. */
    CHECK(((shape){.input = "\"just text\""}), EC2_EVENT, NULL, "\"just text\"");
    CHECK(((shape){.input = " 42 "}), EC2_EVENT, NULL, " 42 ");
    /* 8192 characters (multi-byte ones count once), not 8193. */
    char *ok = repeat("\xc3\xa9", 8190, "\"", "\"");
    CHECK(((shape){.input = ok}), EC2_EVENT, NULL, ok);
    free(ok);
    char *big = repeat("a", 8191, "\"", "\"");
    COMPILE_ERR(((shape){.input = big}), EVBUS_ETOOBIG,
                "Input has 8193 characters, more than 8192");
    free(big);
}

static void test_jsonpath_errors(void **state)
{
    (void)state;
    static const struct {
        const char *path, *msg;
    } bad[] = {
        {"detail", "a JSONPath starts with '$'"},
        {"", "the JSONPath is empty"},
        {"$..detail", "deep scan (..) is not supported"},
        {"$.detail[?(@.x)]", "unsupported bracket expression"},
        {"$.items[1:2]", "slices and unions are not supported"},
        {"$.items[0,1]", "slices and unions are not supported"},
        {"$.items[", "unsupported bracket expression"},
        {"$.items[0", "expected ']'"},
        {"$.items[]", "unsupported bracket expression"},
        {"$.items[-]", "bad array index"},
        {"$.items[9999999999]", "array index too large"},
        {"$.detail.", "the path ends with '.'"},
        {"$.a b", "expected '.' or '['"},
        {"$.a.b c", "(offset 5)"},
        {"$.a['b", "unterminated quoted member name"},
        {"$.a.$b", "a member name is made of"},
        {"$detail", "expected '.' or '['"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        compile_err_at(__LINE__, (shape){.path = bad[i].path}, EVBUS_EINVAL, bad[i].msg);
        char map[128];
        snprintf(map, sizeof(map), "{\"v\": \"%s\"}", bad[i].path);
        compile_err_at(__LINE__, (shape){.map = map, .tpl = "\"<v>\""}, EVBUS_EINVAL, bad[i].msg);
    }
    COMPILE_ERR(((shape){.map = "{\"v\": \"$..x\"}", .tpl = "\"<v>\""}), EVBUS_EINVAL,
                "InputPathsMap \"v\": invalid JSONPath \"$..x\"");
    COMPILE_ERR(((shape){.path = "$[?(@.a)]"}), EVBUS_EINVAL, "InputPath: invalid JSONPath");
    /* 256 characters, not 257. */
    char *ok = repeat("a", 254, "$.", "");
    transform_spec_free(compile_at(__LINE__, (shape){.path = ok}));
    free(ok);
    char *big = repeat("a", 255, "$.", "");
    COMPILE_ERR(((shape){.path = big}), EVBUS_ETOOBIG, "257 characters, more than 256");
    free(big);
}

static void test_paths_map_errors(void **state)
{
    (void)state;
    /* Reserved names. */
    COMPILE_ERR(((shape){.map = "{\"aws.events.rule-name\": \"$.source\"}", .tpl = "\"x\""}),
                EVBUS_EINVAL, "\"aws.events.rule-name\" is reserved");
    COMPILE_ERR(((shape){.map = "{\"aws.events.event\": \"$.detail\"}", .tpl = "\"x\""}),
                EVBUS_EINVAL, "is reserved");
    COMPILE_ERR(((shape){.map = "{\"AWS.mine\": \"$.detail\"}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "is reserved");
    /* Name characters and lengths. */
    COMPILE_ERR(((shape){.map = "{\"a b\": \"$.detail\"}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "invalid character at offset 1");
    COMPILE_ERR(((shape){.map = "{\"my.name\": \"$.detail\"}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "invalid character at offset 2");
    COMPILE_ERR(((shape){.map = "{\"\": \"$.detail\"}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "a variable name is empty");
    char *name = repeat("n", 256, "{\"", "\": \"$.id\"}");
    transform_spec_free(compile_at(__LINE__, (shape){.map = name, .tpl = "\"x\""}));
    free(name);
    name = repeat("n", 257, "{\"", "\": \"$.id\"}");
    COMPILE_ERR(((shape){.map = name, .tpl = "\"x\""}), EVBUS_ETOOBIG,
                "has 257 characters, more than 256");
    free(name);
    /* The map itself. */
    COMPILE_ERR(((shape){.map = "[\"$.detail\"]", .tpl = "\"x\""}), EVBUS_EINVAL,
                "InputPathsMap must be a JSON object");
    COMPILE_ERR(((shape){.map = "{\"a\": ", .tpl = "\"x\""}), EVBUS_EINVAL,
                "InputPathsMap is not valid JSON");
    COMPILE_ERR(((shape){.map = "{\"a\": \"$.x\", \"a\": \"$.y\"}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "duplicate");
    COMPILE_ERR(((shape){.map = "{\"a\": 1}", .tpl = "\"x\""}), EVBUS_EINVAL,
                "InputPathsMap \"a\": the value must be a string");
    COMPILE_ERR(((shape){.map = "{\"a\": \"$.x\"}"}), EVBUS_EINVAL, "InputTemplate is required");
    /* 100 variables, not 101. */
    char map[4096];
    size_t len = 0;
    len += (size_t)snprintf(map + len, sizeof(map) - len, "{");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(map + len, sizeof(map) - len, "%s\"v%d\": \"$.detail\"",
                                i ? ", " : "", i);
    snprintf(map + len, sizeof(map) - len, "}");
    transform_spec *spec = compile_at(__LINE__, (shape){.map = map, .tpl = "[<v0>, <v99>]"});
    char *out = apply_at(__LINE__, spec, LS_EVENT, NULL);
    assert_true(json_same(out, "[" LS_DETAIL ", " LS_DETAIL "]"));
    free(out);
    transform_spec_free(spec);
    snprintf(map + len, sizeof(map) - len, ", \"v100\": \"$.detail\"}");
    COMPILE_ERR(((shape){.map = map, .tpl = "\"x\""}), EVBUS_ETOOBIG,
                "InputPathsMap has 101 variables, more than 100");
    /* An empty map: predefined variables only. */
    CHECK(((shape){.map = "{}", .tpl = "\"<aws.events.rule-name>\""}), LS_EVENT, &EXAMPLE_RULE,
          "\"example\"");
}

static void test_template_errors(void **state)
{
    (void)state;
    const char *map = "{\"a\": \"$.detail\", \"b\": \"$.source\"}";
    COMPILE_ERR(((shape){.map = map, .tpl = ""}), EVBUS_EINVAL, "InputTemplate is empty");
    COMPILE_ERR(((shape){.map = map, .tpl = "\"\xc3\""}), EVBUS_EINVAL, "not valid UTF-8");
    /* 8192 characters, not 8193 (a multi-byte character counts once). */
    char *ok = repeat("\xc3\xa9", 8187, "\"<b>", "\"");
    transform_spec *spec = compile_at(__LINE__, (shape){.map = map, .tpl = ok});
    char *out = apply_at(__LINE__, spec, LS_EVENT, NULL);
    assert_int_equal(strlen(out), 1 + strlen("core.update-account-command") + (size_t)2 * 8187 + 1);
    free(out);
    transform_spec_free(spec);
    free(ok);
    char *big = repeat("x", 8191, "\"", "\"");
    COMPILE_ERR(((shape){.map = map, .tpl = big}), EVBUS_ETOOBIG,
                "InputTemplate has 8193 characters, more than 8192");
    free(big);
    /* Placeholders that name nothing. */
    COMPILE_ERR(((shape){.map = map, .tpl = "\"<c>\""}), EVBUS_EINVAL,
                "InputTemplate contains invalid placeholder c.");
    COMPILE_ERR(((shape){.tpl = "{\"x\": <aws.events.rule>}"}), EVBUS_EINVAL,
                "invalid placeholder aws.events.rule.");
    /* The event objects only as a JSON field's value. */
    COMPILE_ERR(((shape){.tpl = "\"event: <aws.events.event>\""}), EVBUS_EINVAL,
                "<aws.events.event> at offset 8 can only be used as the value of a JSON field");
    COMPILE_ERR(((shape){.tpl = "{\"e\": \"<aws.events.event.json>\"}"}), EVBUS_EINVAL,
                "<aws.events.event.json> at offset 7 can only be used as the value");
    COMPILE_ERR(((shape){.tpl = "<aws.events.event.json>"}), EVBUS_EINVAL,
                "can only be used as the value of a JSON field");
    /* JSON templates that cannot give JSON. */
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": 1"}), EVBUS_EINVAL,
                "InputTemplate is not valid JSON: expected ',' or '}' at offset 7");
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": <a> <b>}"}), EVBUS_EINVAL,
                "placeholder <b> at offset 10 is not in a value position");
    COMPILE_ERR(((shape){.map = map, .tpl = "{<a>: 1}"}), EVBUS_EINVAL,
                "placeholder <a> at offset 1 is not in a value position (a placeholder cannot "
                "be an object key)");
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": 1, \"k<a>\": 2}"}), EVBUS_EINVAL,
                "placeholder <a> at offset 11 is inside an object key");
    COMPILE_ERR(((shape){.map = map, .tpl = "[<a>, ]"}), EVBUS_EINVAL,
                "InputTemplate is not valid JSON: expected a value at offset 6");
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": 'single'}"}), EVBUS_EINVAL,
                "expected a value at offset 6");
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": \"<a>\"} trailing"}), EVBUS_EINVAL,
                "unexpected text after the JSON value at offset 13");
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": \"tab\there\"}"}), EVBUS_EINVAL,
                "control character in a string at offset 10");
    /* A placeholder may not complete an escape the template leaves open. */
    COMPILE_ERR(((shape){.map = map, .tpl = "{\"x\": \"\\u00<b>41\"}"}), EVBUS_EINVAL,
                "bad \\u escape at offset 7");
    /* A string template is text: no JSON check. */
    CHECK(((shape){.map = map, .tpl = "\"unbalanced <b>"}), LS_EVENT, NULL,
          "\"unbalanced core.update-account-command");
}

/* ------------------------------------------------------------------ apply errors and bounds */

static void test_apply_errors(void **state)
{
    (void)state;
    const shape path = {.path = "$.detail"};
    APPLY_ERR(path, "{\"detail\": ", NULL, EVBUS_EINVAL, "the event is not valid JSON");
    APPLY_ERR(path, "[1, 2]", NULL, EVBUS_EINVAL, "the event is not a JSON object");
    APPLY_ERR(path, "", NULL, EVBUS_EINVAL, "the event is not valid JSON: expected a value");
    APPLY_ERR(path, "{\"detail\": \"\xc0\xaf\"}", NULL, EVBUS_EINVAL, "invalid UTF-8");
    APPLY_ERR(path, "{\"detail\": \"\\ud800\"}", NULL, EVBUS_EINVAL, "unpaired surrogate");
    char *deep = repeat("[", 3000, "{\"detail\": ", "");
    APPLY_ERR(path, deep, NULL, EVBUS_EINVAL, "nesting too deep");
    free(deep);
    APPLY_ERR(((shape){.tpl = "\"<aws.events.rule-name>\""}), LS_EVENT,
              (&(transform_ctx){.rule_name = "bad\xff"}), EVBUS_EINVAL,
              "rule name is not valid UTF-8");
    /* The payload bound. */
    transform_ctx small = {.max_out_bytes = 16};
    APPLY_ERR(path, LS_EVENT, &small, EVBUS_ETOOBIG, "exceeds 16 bytes");
    APPLY_ERR(((shape){0}), LS_EVENT, &small, EVBUS_ETOOBIG, "more than 16");
    APPLY_ERR(((shape){.input = "[1, 2, 3, 4, 5, 6, 7]"}), LS_EVENT, &small, EVBUS_ETOOBIG,
              "more than 16");
    APPLY_ERR(((shape){.tpl = "[<aws.events.event.json>, <aws.events.event.json>]"}), LS_EVENT,
              &small, EVBUS_ETOOBIG, "exceeds 16 bytes");
    transform_ctx exact = {.max_out_bytes = 5};
    CHECK(((shape){.path = "$.detail.payload.sf_id"}), LS_EVENT, &exact, "\"baz\"");
    /* The whole-event and Input shapes pass their bytes through without reading the event. */
    CHECK(((shape){0}), "not json at all", NULL, "not json at all");
    CHECK(((shape){.input = "{}"}), "not json at all", NULL, "{}");
}

static void test_spec_kinds(void **state)
{
    (void)state;
    static const struct {
        shape s;
        transform_kind kind;
    } cases[] = {
        {{0}, TRANSFORM_EVENT},
        {{.input = "{}"}, TRANSFORM_INPUT},
        {{.path = "$"}, TRANSFORM_INPUT_PATH},
        {{.tpl = "{}"}, TRANSFORM_TEMPLATE_JSON},
        {{.tpl = "  [1]"}, TRANSFORM_TEMPLATE_JSON},
        {{.tpl = "\"{}\""}, TRANSFORM_TEMPLATE_TEXT},
        {{.map = "{}", .tpl = "plain"}, TRANSFORM_TEMPLATE_TEXT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        transform_spec *spec = compile_at(__LINE__, cases[i].s);
        assert_int_equal(transform_spec_kind(spec), cases[i].kind);
        transform_spec_free(spec);
    }
    transform_spec_free(NULL);
    /* The error buffer may be absent. */
    transform_config cfg = {.input = "{"};
    transform_spec *spec = NULL;
    assert_int_equal(transform_compile(&cfg, &spec, NULL, 0), EVBUS_EINVAL);
    assert_null(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docs_table),
        cmocka_unit_test(test_docs_common_issues),
        cmocka_unit_test(test_docs_api_reference),
        cmocka_unit_test(test_docs_tutorial),
        cmocka_unit_test(test_aws_input_path),
        cmocka_unit_test(test_aws_input_transformer),
        cmocka_unit_test(test_aws_predefined_variables),
        cmocka_unit_test(test_input_path_values),
        cmocka_unit_test(test_template_forms),
        cmocka_unit_test(test_json_results_always_valid),
        cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_jsonpath_errors),
        cmocka_unit_test(test_paths_map_errors),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_apply_errors),
        cmocka_unit_test(test_spec_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
