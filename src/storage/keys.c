/* storage/keys: see keys.h. */
#include "storage/keys.h"

#include <string.h>

#include "common/util.h"
#include "evbus/errors.h"

void keys_event(uint8_t out[KEYS_EVENT_LEN], uint32_t bus_id, uint32_t partition, uint64_t offset)
{
    out[0] = 'E';
    util_put_be32(out + 1, bus_id);
    util_put_be32(out + 5, partition);
    util_put_be64(out + 9, offset);
}

int keys_event_parse(const uint8_t *key, size_t len, uint32_t *bus_id, uint32_t *partition,
                     uint64_t *offset)
{
    if (len != KEYS_EVENT_LEN || key[0] != 'E')
        return EVBUS_EINVAL;
    *bus_id = util_get_be32(key + 1);
    *partition = util_get_be32(key + 5);
    *offset = util_get_be64(key + 9);
    return 0;
}

void keys_partition(uint8_t out[KEYS_PART_LEN], uint32_t bus_id, uint32_t partition)
{
    out[0] = 'P';
    util_put_be32(out + 1, bus_id);
    util_put_be32(out + 5, partition);
}

size_t keys_bus(uint8_t *out, const char *name, size_t name_len)
{
    out[0] = 'B';
    memcpy(out + 1, name, name_len);
    return 1 + name_len;
}

size_t keys_rule(uint8_t *out, uint32_t bus_id, const char *name, size_t name_len)
{
    out[0] = 'R';
    util_put_be32(out + 1, bus_id);
    if (name_len)
        memcpy(out + KEYS_RULE_PREFIX_LEN, name, name_len);
    return KEYS_RULE_PREFIX_LEN + name_len;
}

size_t keys_target(uint8_t *out, uint32_t bus_id, const char *name, size_t name_len)
{
    out[0] = 'T';
    util_put_be32(out + 1, bus_id);
    if (name_len)
        memcpy(out + KEYS_TARGET_PREFIX_LEN, name, name_len);
    return KEYS_TARGET_PREFIX_LEN + name_len;
}

void keys_cursor(uint8_t out[KEYS_CURSOR_LEN], uint32_t bus_id, uint64_t target_id,
                 uint32_t partition)
{
    out[0] = 'C';
    util_put_be32(out + 1, bus_id);
    util_put_be64(out + 5, target_id);
    util_put_be32(out + 13, partition);
}
