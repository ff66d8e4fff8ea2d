/*
 * api/envelope: validation of PutEvents entries and the EventBridge envelope
 * an event is stored and read as:
 *   {"version":"0","id":...,"detail-type":...,"source":...,"account":...,
 *    "time":...,"region":...,"resources":[...],"detail":{...},
 *    "bus":...,"partition":N,"offset":N}
 * The stored form lacks "offset" (assigned in apply; the offset is the key), and
 * envelope_with_offset() adds it when the event is read.
 */
#ifndef EVBUS_API_ENVELOPE_H
#define EVBUS_API_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "evbus.pb.h"

#define ENVELOPE_MAX_ENTRY_BYTES (256u * 1024u)

/*
 * Checks one entry: source and detail-type present, detail a JSON object, time
 * (when given) RFC 3339, size (source + detail-type + detail + resources + time)
 * at most 256 KiB. On success *detail is the parsed object (owned: json_decref).
 * Returns 0, EVBUS_EINVAL or EVBUS_ETOOBIG with the reason in err.
 */
int envelope_validate(const evbus_PutEventsEntry *e, json_t **detail, char *err, size_t err_len);

/*
 * Event id of entry `index` of an idempotent request (producer_id != 0): a version-4-shaped
 * UUID derived from (producer, sequence, index), so that a retried request stamps the same ids
 * as its first attempt and the answer names the ids that are stored. `out` gets 37 bytes.
 */
void envelope_event_id(uint64_t producer_id, uint64_t sequence, uint32_t index, char out[37]);

/* Stable partition choice: FNV-1a of the key modulo partitions. */
uint32_t envelope_partition(const char *key, uint32_t partitions);

/* Builds the stored envelope (malloc'd, transferred; NUL-terminated, *len excludes the NUL).
 * detail_text is the entry's detail, already validated as a JSON object; it is embedded as sent.
 * EVBUS_EINVAL when a string is not valid UTF-8. */
int envelope_build(const evbus_PutEventsEntry *e, const char *detail_text, const char *id,
                   const char *time, const char *account, const char *region, const char *bus,
                   uint32_t partition, char **out, size_t *len);

/* Copies a stored envelope adding "offset" as its last member. malloc'd, transferred,
 * NUL-terminated (*out_len excludes the NUL). */
int envelope_with_offset(const uint8_t *stored, size_t len, uint64_t offset, uint8_t **out,
                         size_t *out_len);

#endif
