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

/* Length of the valid UTF-8 sequence starting at p (at most n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        min = 0x80;
        c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        min = 0x800;
        c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

/* Appends s as a JSON string literal. EVBUS_EINVAL when s is not valid UTF-8. */
static int put_json_string(util_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p);
    if (util_buf_reserve(b, n + 2) != 0)
        return EVBUS_ENOMEM;
    b->data[b->len++] = '"';
    size_t run = 0; /* bytes copied verbatim, flushed in one go */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[6];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
        }
        if (esc == NULL && c >= 0x20) {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0)
                return EVBUS_EINVAL;
            i += l;
            run += l;
            continue;
        }
        if (run && util_buf_append(b, p + i - run, run) != 0)
            return EVBUS_ENOMEM;
        run = 0;
        if (util_buf_append(b, esc ? esc : u, esc ? strlen(esc) : 6) != 0)
            return EVBUS_ENOMEM;
        i++;
    }
    if (run && util_buf_append(b, p + n - run, run) != 0)
        return EVBUS_ENOMEM;
    return util_buf_append(b, "\"", 1);
}

static int put_raw(util_buf *b, const char *s)
{
    return util_buf_append(b, s, strlen(s));
}

int envelope_build(const evbus_PutEventsEntry *e, const char *detail_text, const char *id,
                   const char *time, const char *account, const char *region, const char *bus,
                   uint32_t partition, char **out, size_t *len)
{
    /* Written by hand, not through a JSON tree: this runs for every published event on the
     * leader's loop thread. The detail was validated as a JSON object and is embedded as sent,
     * without its surrounding whitespace. */
    const char *d = detail_text;
    size_t dlen = strlen(d);
    while (dlen && (*d == ' ' || *d == '\t' || *d == '\n' || *d == '\r')) {
        d++;
        dlen--;
    }
    while (dlen && (d[dlen - 1] == ' ' || d[dlen - 1] == '\t' || d[dlen - 1] == '\n' ||
                    d[dlen - 1] == '\r'))
        dlen--;
    util_buf b = {0};
    int rv = util_buf_reserve(&b, dlen + 256);
    char num[16];
    snprintf(num, sizeof(num), "%u}", partition);
    if (rv == 0)
        rv = put_raw(&b, "{\"version\":\"0\",\"id\":");
    if (rv == 0)
        rv = put_json_string(&b, id);
    if (rv == 0)
        rv = put_raw(&b, ",\"detail-type\":");
    if (rv == 0)
        rv = put_json_string(&b, e->detail_type);
    if (rv == 0)
        rv = put_raw(&b, ",\"source\":");
    if (rv == 0)
        rv = put_json_string(&b, e->source);
    if (rv == 0)
        rv = put_raw(&b, ",\"account\":");
    if (rv == 0)
        rv = put_json_string(&b, account);
    if (rv == 0)
        rv = put_raw(&b, ",\"time\":");
    if (rv == 0)
        rv = put_json_string(&b, time);
    if (rv == 0)
        rv = put_raw(&b, ",\"region\":");
    if (rv == 0)
        rv = put_json_string(&b, region);
    if (rv == 0)
        rv = put_raw(&b, ",\"resources\":[");
    for (pb_size_t i = 0; rv == 0 && i < e->resources_count; i++) {
        if (i > 0)
            rv = put_raw(&b, ",");
        if (rv == 0)
            rv = put_json_string(&b, e->resources[i]);
    }
    if (rv == 0)
        rv = put_raw(&b, "],\"detail\":");
    if (rv == 0)
        rv = util_buf_append(&b, d, dlen);
    if (rv == 0)
        rv = put_raw(&b, ",\"bus\":");
    if (rv == 0)
        rv = put_json_string(&b, bus);
    if (rv == 0)
        rv = put_raw(&b, ",\"partition\":");
    if (rv == 0)
        rv = util_buf_append(&b, num, strlen(num) + 1); /* with the NUL */
    if (rv != 0) {
        util_buf_free(&b);
        return rv;
    }
    *out = (char *)b.data;
    *len = b.len - 1;
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
