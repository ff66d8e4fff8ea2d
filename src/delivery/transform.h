/*
 * delivery/transform: what a target receives for a matched event, as in
 * EventBridge's Target: the whole event (default), `InputPath`, a constant
 * `Input`, or `InputTransformer` (`InputPathsMap` + `InputTemplate`). Pure C: no
 * I/O, no loop, no global state. A transform_spec is compiled once per target
 * (validation happens there, as PutTargets does) and is immutable afterwards,
 * so any number of threads may call transform_apply on one spec at once.
 *
 * Sources of the behaviour, in order of authority: EventBridge's own results as
 * recorded against AWS by LocalStack's snapshot tests (tests/aws/services/
 * events/test_events_inputs.snapshot.json), the EventBridge user guide ("Amazon
 * EventBridge input transformation", its examples and "Common issues"), the API
 * reference (Target, InputTransformer). Where they are silent, the choice is
 * ours and says so ("choice:").
 *
 * Shapes (at most one of Input, InputPath, InputTransformer; AWS's wording for
 * the error: "Only one of Input, InputPath, or InputTransformer must be provided"):
 *
 *  - whole event: the event text, byte for byte.
 *  - Input: a JSON text (any JSON value), 1 to 8192 characters, sent byte for
 *    byte as given. Not valid JSON: EVBUS_EINVAL at compile.
 *  - InputPath: a JSONPath (below), 1 to 256 characters, evaluated on the event;
 *    the target gets the selected value as JSON: a string keeps its quotes
 *    (`$.detail.payload.sf_id` gives `"baz"`, as AWS does), numbers keep their
 *    exact text, objects and arrays are minified (whitespace outside strings
 *    removed; members, order, escapes and numbers exactly as in the event).
 *    `$` selects the whole event (minified). choice: a path that selects
 *    nothing fails with EVBUS_ENOTFOUND, so delivery can dead-letter the event
 *    with that reason instead of sending an empty body.
 *  - InputTransformer: up to 100 variables (InputPathsMap, given as a JSON
 *    object of name -> JSONPath) and a template of 1 to 8192 characters.
 *
 * Variable names: 1 to 256 characters of [A-Za-z0-9_-] (the API's key pattern);
 * a name starting with "aws." (any case) is reserved and refused with its own
 * message. Paths: 1 to 256 characters each. Duplicate names: EVBUS_EINVAL.
 *
 * JSONPath subset (the documented one: dot notation with alphanumerics, dashes,
 * underscores and forward slashes, array indices, wildcards):
 *     $              the event
 *     .name          member, name of [A-Za-z0-9_/-]+
 *     ['name']       member with any other name (also "name"; no escapes);
 *                    choice: accepted in both InputPath and InputPathsMap
 *     [N]  [-N]      array element; negative counts from the end (Jayway)
 *     .*  [*]        every element of an array or member value of an object
 * Anything else (`..`, filters, slices, unions, a missing `$`, a trailing dot)
 * is refused at compile with EVBUS_EINVAL naming the offset. choice: a path
 * with a wildcard always yields a JSON array of what it matched, in document
 * order, `[]` when nothing (Jayway's indefinite paths). choice: a member name
 * that occurs twice in one event object resolves to the last occurrence (as
 * Jackson and jansson do).
 *
 * Placeholders: `<name>` where name is one or more of [A-Za-z0-9_.-]; any other
 * `<` is literal text ("<" and ">" cannot be escaped). A placeholder whose name
 * is neither a variable nor predefined fails the compile with AWS's message
 * "InputTemplate contains invalid placeholder NAME.". Predefined (reserved)
 * variables, usable without an InputPathsMap:
 *     aws.events.rule-arn              transform_ctx.rule_arn (a string)
 *     aws.events.rule-name             transform_ctx.rule_name (a string)
 *     aws.events.event.ingestion-time  transform_ctx.ingestion_time_ms as
 *                                      "YYYY-MM-DDTHH:MM:SSZ" (a string)
 *     aws.events.event                 the event without "detail", with
 *                                      "detail-type" renamed "detailType", its
 *                                      known members in the order AWS emits
 *                                      them (id, account, detailType, time,
 *                                      source, region, resources, version; AWS's
 *                                      recorded output), then (choice) any other
 *                                      member in event order; "time" is the
 *                                      event's own (choice: AWS's value is masked
 *                                      in the recording)
 *     aws.events.event.json            the whole event (minified)
 * The last two are JSON objects that "can only be used as a value for a JSON
 * field": inside quotes or in a string template they fail the compile.
 *
 * Template kind: a JSON template when its first non-blank character is `{`
 * (the docs' test) or `[` (choice); otherwise a string template. The template text is kept byte for
 * byte (whitespace, the template's own escapes); only placeholders are replaced.
 *  - JSON template, placeholder outside quotes: the value as JSON: a string
 *    gets its quotes ("EventBridge automatically adds quotes to string variable
 *    values"), numbers/true/false/null their exact text, objects and arrays
 *    minified. A path that selects nothing gives `""` (AWS's recorded result).
 *  - Placeholder inside quotes of a JSON template, or anywhere in a string
 *    template: the value's text: a string's content as it is written in the
 *    event (choice: escapes kept, so the result stays a valid JSON string; the
 *    docs' "doesn't escape values" read as "does not escape them twice"); numbers,
 *    true, false, null as written; an object or array minified with its quote
 *    characters removed ("EventBridge removes any internal quotes to ensure a
 *    valid string": `{key1:value1}`). A path that selects nothing gives
 *    nothing (AWS's recorded result: `"... from detail "`).
 *  - A JSON template must be valid JSON with every outside-quote placeholder
 *    taken as a value; a placeholder may not be an object key, quoted or not.
 *    choice: both are checked at compile (EVBUS_EINVAL with the offset). Given the rules
 *    above every substitution then keeps the text valid JSON, so a compiled
 *    JSON template cannot produce invalid JSON at apply (AWS reports the
 *    failure at delivery; we refuse the target up front).
 *  - A string template is not checked as JSON: AWS's own example
 *    `<instance> is in state <status>` is plain text.
 * Not reproduced: the docs' "Amazon CloudWatch log group" row, whose output is
 * CloudWatch Logs' rendering of the message, not EventBridge's payload.
 *
 * Errors: functions return 0 or a negative EVBUS_* code (include/evbus/errors.h)
 * with a message in `err` (err_len bytes, always NUL-terminated when err_len > 0).
 */
#ifndef EVBUS_DELIVERY_TRANSFORM_H
#define EVBUS_DELIVERY_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#define TRANSFORM_MAX_INPUT_CHARS 8192u    /* Target.Input */
#define TRANSFORM_MAX_PATH_CHARS 256u      /* Target.InputPath and each InputPathsMap value */
#define TRANSFORM_MAX_PATHS 100u           /* InputPathsMap entries */
#define TRANSFORM_MAX_NAME_CHARS 256u      /* InputPathsMap key */
#define TRANSFORM_MAX_TEMPLATE_CHARS 8192u /* InputTemplate */
/* Default bound of one transformed payload (four times the largest event). */
#define TRANSFORM_DEFAULT_MAX_OUTPUT_BYTES ((size_t)1024 * 1024)

typedef enum transform_kind {
    TRANSFORM_EVENT = 0,     /* the whole event */
    TRANSFORM_INPUT,         /* constant Input */
    TRANSFORM_INPUT_PATH,    /* InputPath */
    TRANSFORM_TEMPLATE_JSON, /* InputTransformer, JSON template: output is JSON */
    TRANSFORM_TEMPLATE_TEXT, /* InputTransformer, string template: output is text */
} transform_kind;

/*
 * A target's delivery shape as the user wrote it. Every field is a borrowed
 * NUL-terminated UTF-8 string or NULL; character limits count code points.
 * All NULL: the whole event. `input_paths_map` without `input_template` is an
 * error (InputTemplate is required); `input_template` alone is a transformer
 * with an empty map (predefined variables only).
 */
typedef struct transform_config {
    const char *input;           /* Input: JSON text */
    const char *input_path;      /* InputPath: JSONPath */
    const char *input_paths_map; /* InputPathsMap: a JSON object {"name": "$.path", ...} */
    const char *input_template;  /* InputTemplate */
} transform_config;

typedef struct transform_spec transform_spec;

/*
 * Validates `cfg` and compiles it. Copies everything it keeps. On success *out
 * is the caller's (transform_spec_free). On error *out is NULL and `err` says
 * what is wrong and where. Errors: EVBUS_EINVAL (invalid JSON, JSONPath, name,
 * placeholder, template, or more than one shape), EVBUS_ETOOBIG (over a
 * character limit or more than TRANSFORM_MAX_PATHS variables), EVBUS_ENOMEM.
 */
int transform_compile(const transform_config *cfg, transform_spec **out, char *err, size_t err_len);

/* Frees a spec; NULL is a no-op. */
void transform_spec_free(transform_spec *spec);

transform_kind transform_spec_kind(const transform_spec *spec);

/* Per-delivery values of the predefined variables. */
typedef struct transform_ctx {
    const char *rule_name; /* borrowed; NULL: "" */
    const char *rule_arn;  /* borrowed; NULL: "" */
    /* When the bus accepted the event, ms since the epoch; 0: the event's own "time" member
     * (its text, or "" when absent). Must be the same on every node that may deliver. */
    uint64_t ingestion_time_ms;
    size_t max_out_bytes; /* 0: TRANSFORM_DEFAULT_MAX_OUTPUT_BYTES */
} transform_ctx;

/*
 * Produces what the target receives for one event (`event_len` bytes of JSON
 * text; need not be NUL-terminated). `ctx` may be NULL (all defaults). On
 * success *out is malloc'd and transferred (free()), NUL-terminated, and
 * *out_len excludes the NUL. On error *out is NULL.
 * The whole-event and Input shapes do not read the event beyond its length.
 * Errors: EVBUS_EINVAL (the event is not a JSON object, or a ctx string is not
 * UTF-8), EVBUS_ENOTFOUND (InputPath selects nothing), EVBUS_ETOOBIG (the
 * payload would exceed max_out_bytes), EVBUS_ENOMEM.
 */
int transform_apply(const transform_spec *spec, const char *event, size_t event_len,
                    const transform_ctx *ctx, char **out, size_t *out_len, char *err,
                    size_t err_len);

#endif /* EVBUS_DELIVERY_TRANSFORM_H */
