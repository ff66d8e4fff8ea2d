/*
 * storage/keys: the RocksDB key layout. One column family; fixed-width
 * big-endian integers so that byte order is numeric order and a partition's
 * events are one contiguous key range.
 *
 *   'M' name               node metadata (applied index, bus id counter)
 *   'B' bus name           BusMeta (protobuf)
 *   'P' bus_id partition   PartitionMeta: first_offset u64, next_offset u64
 *   'E' bus_id partition offset   the event's JSON envelope (without "offset")
 *   'R' bus_id rule name   RuleMeta (protobuf); a bus's rules are one key range
 *   'T' bus_id target name TargetMeta (protobuf); a bus's targets are one key range
 *   'C' bus_id target_id(u64) partition   a target's cursor (u64); a target's cursors and a
 *                          bus's cursors are key ranges
 *   'H' bus_id partition   backfill hole (local, not replicated)
 *   'N' node_id            NodeMeta;  'D' producer_id   ProducerMeta (dedup table)
 */
#ifndef EVBUS_STORAGE_KEYS_H
#define EVBUS_STORAGE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEYS_EVENT_LEN 17u
#define KEYS_PART_LEN 9u

#define KEYS_META_APPLIED "Mapplied"
#define KEYS_META_NEXT_BUS_ID "Mnext_bus_id"

void keys_event(uint8_t out[KEYS_EVENT_LEN], uint32_t bus_id, uint32_t partition, uint64_t offset);
/* Decodes an event key. 0 or EVBUS_EINVAL when the key is not an event key. */
int keys_event_parse(const uint8_t *key, size_t len, uint32_t *bus_id, uint32_t *partition,
                     uint64_t *offset);
void keys_partition(uint8_t out[KEYS_PART_LEN], uint32_t bus_id, uint32_t partition);
/* 'B' + name into out (room for 1 + name_len). Returns the key length. */
size_t keys_bus(uint8_t *out, const char *name, size_t name_len);

#define KEYS_RULE_PREFIX_LEN 5u
/* 'R' + bus_id + name into out (room for KEYS_RULE_PREFIX_LEN + name_len). Returns the key
 * length. With name_len 0: the first key of the bus's rule range. */
size_t keys_rule(uint8_t *out, uint32_t bus_id, const char *name, size_t name_len);

#define KEYS_TARGET_PREFIX_LEN 5u
/* 'T' + bus_id + name into out (room for KEYS_TARGET_PREFIX_LEN + name_len). Returns the key
 * length. With name_len 0: the first key of the bus's target range. */
size_t keys_target(uint8_t *out, uint32_t bus_id, const char *name, size_t name_len);

#define KEYS_CURSOR_LEN 17u
void keys_cursor(uint8_t out[KEYS_CURSOR_LEN], uint32_t bus_id, uint64_t target_id,
                 uint32_t partition);

#endif
