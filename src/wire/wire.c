/* wire: frame splitting and nanopb glue. See wire.h. */
#include "wire/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "evbus/errors.h"

void wire_reader_init(wire_reader *r, uint32_t max_frame)
{
    memset(r, 0, sizeof(*r));
    r->max_frame = max_frame ? max_frame : WIRE_DEFAULT_MAX_FRAME;
}

void wire_reader_free(wire_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void wire_put_header(uint8_t *out, uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

int wire_reader_feed(wire_reader *r, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    /* Drop consumed bytes first so the buffer never grows past one frame plus one read. */
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (nb == NULL)
            return EVBUS_ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

int wire_reader_next(wire_reader *r, const uint8_t **body, size_t *len)
{
    size_t avail = r->len - r->pos;
    if (avail < WIRE_HEADER_BYTES)
        return 0;
    uint32_t flen = get_be32(r->buf + r->pos);
    if (flen > r->max_frame)
        return EVBUS_ETOOBIG;
    if (avail - WIRE_HEADER_BYTES < flen)
        return 0;
    *body = r->buf + r->pos + WIRE_HEADER_BYTES;
    *len = flen;
    r->pos += WIRE_HEADER_BYTES + flen;
    if (r->pos == r->len)
        r->pos = r->len = 0;
    return 1;
}

int wire_encode(const pb_msgdesc_t *fields, const void *msg, uint32_t max_frame, uint8_t **out,
                size_t *out_len)
{
    size_t size = 0;
    if (!pb_get_encoded_size(&size, fields, msg))
        return EVBUS_EINVAL;
    if (max_frame && size > max_frame)
        return EVBUS_ETOOBIG;
    uint8_t *buf = malloc(WIRE_HEADER_BYTES + size);
    if (buf == NULL)
        return EVBUS_ENOMEM;
    pb_ostream_t os = pb_ostream_from_buffer(buf + WIRE_HEADER_BYTES, size);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return EVBUS_EINVAL;
    }
    wire_put_header(buf, (uint32_t)os.bytes_written);
    *out = buf;
    *out_len = WIRE_HEADER_BYTES + os.bytes_written;
    return 0;
}

int wire_encode_body(const pb_msgdesc_t *fields, const void *msg, uint8_t **out, size_t *out_len)
{
    size_t size = 0;
    if (!pb_get_encoded_size(&size, fields, msg))
        return EVBUS_EINVAL;
    /* malloc(0) may return NULL; an empty message is legal. */
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return EVBUS_ENOMEM;
    pb_ostream_t os = pb_ostream_from_buffer(buf, size);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return EVBUS_EINVAL;
    }
    *out = buf;
    *out_len = os.bytes_written;
    return 0;
}

int wire_decode(const pb_msgdesc_t *fields, const uint8_t *body, size_t len, void *msg, char *err,
                size_t err_len)
{
    pb_istream_t is = pb_istream_from_buffer(body, len);
    if (!pb_decode(&is, fields, msg)) {
        if (err && err_len)
            snprintf(err, err_len, "invalid protobuf: %s", PB_GET_ERROR(&is));
        /* pb_decode releases what it allocated on failure. */
        return EVBUS_EPROTO;
    }
    return 0;
}

void wire_release(const pb_msgdesc_t *fields, void *msg)
{
    pb_release(fields, msg);
}

const char *wire_body_name(pb_size_t which_body)
{
    switch (which_body) {
    case evbus_Frame_hello_tag: return "Hello";
    case evbus_Frame_hello_reply_tag: return "HelloReply";
    case evbus_Frame_error_tag: return "ErrorReply";
    case evbus_Frame_ok_tag: return "OkReply";
    case evbus_Frame_put_events_tag: return "PutEvents";
    case evbus_Frame_put_events_reply_tag: return "PutEventsReply";
    case evbus_Frame_read_log_tag: return "ReadLog";
    case evbus_Frame_read_log_reply_tag: return "ReadLogReply";
    case evbus_Frame_create_bus_tag: return "CreateBus";
    case evbus_Frame_delete_bus_tag: return "DeleteBus";
    case evbus_Frame_describe_bus_tag: return "DescribeBus";
    case evbus_Frame_list_buses_tag: return "ListBuses";
    case evbus_Frame_bus_reply_tag: return "BusReply";
    case evbus_Frame_list_buses_reply_tag: return "ListBusesReply";
    case evbus_Frame_cluster_status_tag: return "ClusterStatus";
    case evbus_Frame_cluster_status_reply_tag: return "ClusterStatusReply";
    case evbus_Frame_add_node_tag: return "AddNode";
    case evbus_Frame_remove_node_tag: return "RemoveNode";
    case evbus_Frame_transfer_leader_tag: return "TransferLeader";
    case evbus_Frame_node_status_tag: return "NodeStatus";
    case evbus_Frame_node_status_reply_tag: return "NodeStatusReply";
    case evbus_Frame_checksum_tag: return "Checksum";
    case evbus_Frame_checksum_reply_tag: return "ChecksumReply";
    case evbus_Frame_put_rule_tag: return "PutRule";
    case evbus_Frame_delete_rule_tag: return "DeleteRule";
    case evbus_Frame_enable_rule_tag: return "EnableRule";
    case evbus_Frame_disable_rule_tag: return "DisableRule";
    case evbus_Frame_list_rules_tag: return "ListRules";
    case evbus_Frame_describe_rule_tag: return "DescribeRule";
    case evbus_Frame_rule_reply_tag: return "RuleReply";
    case evbus_Frame_list_rules_reply_tag: return "ListRulesReply";
    case evbus_Frame_test_rule_tag: return "TestRule";
    case evbus_Frame_test_rule_reply_tag: return "TestRuleReply";
    case evbus_Frame_put_targets_tag: return "PutTargets";
    case evbus_Frame_remove_targets_tag: return "RemoveTargets";
    case evbus_Frame_targets_result_reply_tag: return "TargetsResultReply";
    case evbus_Frame_list_targets_by_rule_tag: return "ListTargetsByRule";
    case evbus_Frame_list_targets_reply_tag: return "ListTargetsReply";
    case evbus_Frame_describe_target_tag: return "DescribeTarget";
    case evbus_Frame_target_reply_tag: return "TargetReply";
    }
    return "unknown";
}

char *wire_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}
