/* api/envelope: see envelope.h. */
#include "api/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "evbus/errors.h"

int envelope_validate(const evbus_PutEventsEntry *e, json_t **detail, char *err, size_t err_len)
{
    *detail = NULL;
    if (e->source == NULL || e->source[0] == '\0') {
        snprintf(err, err_len, "Source is required");
        return EVBUS_EINVAL;
    }
    if (e->detail_type == NULL || e->detail_type[0] == '\0') {
        snprintf(err, err_len, "DetailType is required");
        return EVBUS_EINVAL;
    }
    if (e->detail == NULL || e->detail[0] == '\0') {
        snprintf(err, err_len, "Detail is required");
        return EVBUS_EINVAL;
    }
    size_t size = strlen(e->source) + strlen(e->detail_type) + strlen(e->detail);
    if (e->time)
        size += strlen(e->time);
    for (pb_size_t i = 0; i < e->resources_count; i++)
        size += e->resources[i] ? strlen(e->resources[i]) : 0;
    if (size > ENVELOPE_MAX_ENTRY_BYTES) {
        snprintf(err, err_len, "entry is %zu bytes, over the limit of %u bytes", size,
                 ENVELOPE_MAX_ENTRY_BYTES);
        return EVBUS_ETOOBIG;
    }
    if (e->time && e->time[0]) {
        uint64_t ms;
        if (util_parse_rfc3339(e->time, &ms) != 0) {
            snprintf(err, err_len, "Time is not an RFC 3339 timestamp: '%.64s'", e->time);
            return EVBUS_EINVAL;
        }
    }
    json_error_t jerr;
    json_t *d = json_loads(e->detail, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (d == NULL) {
        snprintf(err, err_len, "Detail is not valid JSON: %s at line %d column %d", jerr.text,
                 jerr.line, jerr.column);
        return EVBUS_EINVAL;
    }
    if (!json_is_object(d)) {
        json_decref(d);
        snprintf(err, err_len, "Detail must be a JSON object");
        return EVBUS_EINVAL;
    }
    *detail = d;
    return 0;
}

/* splitmix64 finaliser: a cheap bijective mix with good avalanche. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void envelope_event_id(uint64_t producer_id, uint64_t sequence, uint32_t index, char out[37])
{
    uint64_t a = mix64(producer_id ^ mix64(sequence * 0x9e3779b97f4a7c15ull + index));
    uint64_t b = mix64(a ^ mix64(producer_id + 0x632be59bd9b4e019ull) ^ ((uint64_t)index << 32));
    uint8_t u[16];
    for (int i = 0; i < 8; i++) {
        u[i] = (uint8_t)(a >> (56 - 8 * i));
        u[8 + i] = (uint8_t)(b >> (56 - 8 * i));
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

uint32_t envelope_partition(const char *key, uint32_t partitions)
{
    /* FNV-1a 32: part of the on-disk contract (which partition a key lands in); never change. */
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return partitions ? h % partitions : 0;
}

/* json_string() refuses text that is not UTF-8: report that instead of dropping the field. */
static int set_str(json_t *o, const char *key, const char *value, int *bad)
{
    json_t *v = json_string(value ? value : "");
    if (v == NULL) {
        *bad = 1;
        return -1;
    }
    return json_object_set_new(o, key, v);
}

int envelope_build(const evbus_PutEventsEntry *e, json_t *detail, const char *id, const char *time,
                   const char *account, const char *region, const char *bus, uint32_t partition,
                   char **out, size_t *len)
{
    json_t *o = json_object();
    json_t *res = json_array();
    if (o == NULL || res == NULL) {
        json_decref(o);
        json_decref(res);
        return EVBUS_ENOMEM;
    }
    int bad = 0;
    for (pb_size_t i = 0; i < e->resources_count; i++) {
        json_t *r = json_string(e->resources[i] ? e->resources[i] : "");
        if (r == NULL)
            bad = 1;
        else
            json_array_append_new(res, r);
    }
    set_str(o, "version", "0", &bad);
    set_str(o, "id", id, &bad);
    set_str(o, "detail-type", e->detail_type, &bad);
    set_str(o, "source", e->source, &bad);
    set_str(o, "account", account, &bad);
    set_str(o, "time", time, &bad);
    set_str(o, "region", region, &bad);
    json_object_set_new(o, "resources", res);
    json_object_set(o, "detail", detail);
    set_str(o, "bus", bus, &bad);
    json_object_set_new(o, "partition", json_integer(partition));
    if (bad) {
        json_decref(o);
        return EVBUS_EINVAL;
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL)
        return EVBUS_ENOMEM;
    *out = s;
    *len = strlen(s);
    return 0;
}

int envelope_with_offset(const uint8_t *stored, size_t len, uint64_t offset, uint8_t **out,
                         size_t *out_len)
{
    if (len < 2 || stored[len - 1] != '}')
        return EVBUS_EPROTO;
    char tail[40];
    int n = snprintf(tail, sizeof(tail), ",\"offset\":%llu}", (unsigned long long)offset);
    uint8_t *buf = malloc(len - 1 + (size_t)n + 1);
    if (buf == NULL)
        return EVBUS_ENOMEM;
    memcpy(buf, stored, len - 1);
    memcpy(buf + len - 1, tail, (size_t)n + 1); /* with the NUL: also usable as a C string */
    *out = buf;
    *out_len = len - 1 + (size_t)n;
    return 0;
}
