/*
 * Unit tests of wire/: the frame splitter and the nanopb glue.
 *
 * The reader sits directly on bytes from the network, so the tests cover every
 * way a TCP stream can cut frames (one byte at a time, many frames per read,
 * empty bodies, stops in the header or the body) and the frame limit, which
 * must refuse an oversized frame from its header alone, before any of its body
 * is buffered. The codec tests check that a PutEvents frame survives a round
 * trip, that garbage gives EVBUS_EPROTO, and that an unknown body type from a
 * newer peer decodes as "no body" rather than failing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "evbus/errors.h"
#include "wire/wire.h"

#define MAX_BODIES 16

/* A stream of frames built by the test, with the bodies it expects back. */
struct stream {
    uint8_t bytes[8192];
    size_t len;
    size_t body_len[MAX_BODIES];
    size_t body_off[MAX_BODIES]; /* offset of each body in bytes[] */
    int n;
};

/* Appends a frame whose body is `len` bytes of a pattern that differs per frame. */
static void add_frame(struct stream *s, size_t len)
{
    assert_true(s->n < MAX_BODIES);
    assert_true(s->len + WIRE_HEADER_BYTES + len <= sizeof(s->bytes));
    wire_put_header(s->bytes + s->len, (uint32_t)len);
    s->len += WIRE_HEADER_BYTES;
    s->body_off[s->n] = s->len;
    s->body_len[s->n] = len;
    for (size_t i = 0; i < len; i++)
        s->bytes[s->len + i] = (uint8_t)(i * 7 + (size_t)s->n * 31 + 1);
    s->len += len;
    s->n++;
}

/* Takes every complete frame from r and checks it against s, from frame *next on. */
static void drain(wire_reader *r, const struct stream *s, int *next)
{
    const uint8_t *body;
    size_t len;
    int rv;
    /* Bounded: one frame per round, and the stream holds at most MAX_BODIES. */
    for (int i = 0; i <= MAX_BODIES; i++) {
        rv = wire_reader_next(r, &body, &len);
        if (rv == 0)
            return;
        assert_int_equal(rv, 1);
        assert_true(*next < s->n);
        assert_int_equal(len, s->body_len[*next]);
        if (len > 0)
            assert_memory_equal(body, s->bytes + s->body_off[*next], len);
        (*next)++;
    }
    fail_msg("reader returned more frames than were fed");
}

static void build_mixed(struct stream *s)
{
    memset(s, 0, sizeof(*s));
    add_frame(s, 1);
    add_frame(s, 0);
    add_frame(s, 300);
    add_frame(s, 4);
    add_frame(s, 0);
    add_frame(s, 5000); /* larger than the reader's first allocation */
    add_frame(s, 17);
}

static void test_reader_byte_by_byte(void **state)
{
    (void)state;
    struct stream s;
    build_mixed(&s);
    wire_reader r;
    wire_reader_init(&r, 0);
    int next = 0;
    for (size_t i = 0; i < s.len; i++) {
        assert_int_equal(wire_reader_feed(&r, s.bytes + i, 1), 0);
        drain(&r, &s, &next);
    }
    assert_int_equal(next, s.n);
    wire_reader_free(&r);
}

static void test_reader_merged(void **state)
{
    (void)state;
    struct stream s;
    build_mixed(&s);
    wire_reader r;
    wire_reader_init(&r, 0);
    int next = 0;
    assert_int_equal(wire_reader_feed(&r, s.bytes, s.len), 0);
    drain(&r, &s, &next);
    assert_int_equal(next, s.n);

    /* Odd chunk sizes that cut headers and bodies in every place, and a zero-byte feed. */
    static const size_t chunks[] = {3, 5, 7, 2, 11, 13, 1, 4096, 6};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        next = 0;
        for (size_t off = 0; off < s.len; off += chunks[c]) {
            size_t n = s.len - off < chunks[c] ? s.len - off : chunks[c];
            assert_int_equal(wire_reader_feed(&r, s.bytes + off, n), 0);
            assert_int_equal(wire_reader_feed(&r, s.bytes, 0), 0);
            drain(&r, &s, &next);
        }
        assert_int_equal(next, s.n);
    }
    wire_reader_free(&r);
}

static void test_reader_empty_body(void **state)
{
    (void)state;
    wire_reader r;
    wire_reader_init(&r, 0);
    uint8_t hdr[WIRE_HEADER_BYTES];
    wire_put_header(hdr, 0);
    assert_int_equal(wire_reader_feed(&r, hdr, sizeof(hdr)), 0);
    const uint8_t *body = NULL;
    size_t len = 99;
    assert_int_equal(wire_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    wire_reader_free(&r);
}

static void test_reader_max_frame(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    uint8_t hdr[WIRE_HEADER_BYTES];
    const uint8_t *body;
    size_t len;

    /* One byte over: refused as soon as the header is complete, with no body sent at all. */
    wire_reader r;
    wire_reader_init(&r, MAX);
    wire_put_header(hdr, MAX + 1);
    assert_int_equal(wire_reader_feed(&r, hdr, 3), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_feed(&r, hdr + 3, 1), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), EVBUS_ETOOBIG);
    /* The reader buffered only the header: the body was never needed to decide. */
    assert_true(r.len - r.pos <= WIRE_HEADER_BYTES);
    wire_reader_free(&r);

    /* A header claiming 4 GiB is refused the same way. */
    wire_reader_init(&r, MAX);
    wire_put_header(hdr, UINT32_MAX);
    assert_int_equal(wire_reader_feed(&r, hdr, sizeof(hdr)), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), EVBUS_ETOOBIG);
    wire_reader_free(&r);

    /* Exactly the limit is accepted. */
    uint8_t *frame = malloc(WIRE_HEADER_BYTES + MAX);
    assert_non_null(frame);
    wire_put_header(frame, MAX);
    memset(frame + WIRE_HEADER_BYTES, 0xab, MAX);
    wire_reader_init(&r, MAX);
    assert_int_equal(wire_reader_feed(&r, frame, WIRE_HEADER_BYTES), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_feed(&r, frame + WIRE_HEADER_BYTES, MAX), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, MAX);
    assert_memory_equal(body, frame + WIRE_HEADER_BYTES, MAX);
    wire_reader_free(&r);
    free(frame);

    /* max_frame 0 means the default limit. */
    wire_reader_init(&r, 0);
    assert_int_equal(r.max_frame, WIRE_DEFAULT_MAX_FRAME);
    wire_put_header(hdr, WIRE_DEFAULT_MAX_FRAME + 1);
    assert_int_equal(wire_reader_feed(&r, hdr, sizeof(hdr)), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), EVBUS_ETOOBIG);
    wire_reader_free(&r);
}

static void test_reader_truncated(void **state)
{
    (void)state;
    wire_reader r;
    wire_reader_init(&r, 0);
    const uint8_t *body;
    size_t len;
    uint8_t frame[WIRE_HEADER_BYTES + 10];
    wire_put_header(frame, 10);
    memset(frame + WIRE_HEADER_BYTES, 'x', 10);

    /* Nothing, part of a header, a header, part of a body: always "need more". */
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_feed(&r, frame, 2), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_feed(&r, frame + 2, 2), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_feed(&r, frame + 4, 9), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0); /* asking again changes nothing */
    assert_int_equal(wire_reader_feed(&r, frame + 13, 1), 0);
    assert_int_equal(wire_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, 10);
    assert_memory_equal(body, frame + WIRE_HEADER_BYTES, 10);
    assert_int_equal(wire_reader_next(&r, &body, &len), 0);
    wire_reader_free(&r);
}

/* ------------------------------------------------------------------- codec */

/* Frees a message the test built with malloc()/strdup(): our memory, so our free. */
static void free_built_put(evbus_PutEventsRequest *req)
{
    for (pb_size_t i = 0; i < req->entries_count; i++) {
        evbus_PutEventsEntry *e = &req->entries[i];
        free(e->source);
        free(e->detail_type);
        free(e->detail);
        for (pb_size_t j = 0; j < e->resources_count; j++)
            free(e->resources[j]);
        free(e->resources);
        free(e->time);
        free(e->partition_key);
    }
    free(req->entries);
    free(req->bus);
}

static void build_put(evbus_Frame *f)
{
    memset(f, 0, sizeof(*f));
    f->id = 0x123456789abcull;
    f->which_body = evbus_Frame_put_events_tag;
    evbus_PutEventsRequest *req = &f->body.put_events;
    req->bus = strdup("orders");
    req->entries_count = 3;
    req->entries = calloc(3, sizeof(*req->entries));
    assert_non_null(req->entries);
    for (int i = 0; i < 3; i++) {
        evbus_PutEventsEntry *e = &req->entries[i];
        e->source = strdup("com.example.shop");
        e->detail_type = strdup(i == 1 ? "Order Cancelled" : "Order Placed");
        e->detail = strdup(i == 2 ? "{\"id\":\"\\u00e9\",\"n\":[1,2,3]}" : "{\"id\":1}");
        /* Entry 0 has two resources, entry 1 none, entry 2 one; only entry 1 has a time. */
        e->resources_count = (pb_size_t)(i == 0 ? 2 : (i == 2 ? 1 : 0));
        if (e->resources_count > 0) {
            e->resources = calloc(e->resources_count, sizeof(char *));
            assert_non_null(e->resources);
            e->resources[0] = strdup("arn:aws:s3:::bucket");
            if (i == 0)
                e->resources[1] = strdup("arn:aws:ec2:eu-west-1:1:instance/i-1");
        }
        if (i == 1)
            e->time = strdup("2026-12-03T17:35:48Z");
        e->partition_key = strdup(i == 2 ? "customer-7" : "");
    }
}

static void check_put(const evbus_Frame *f)
{
    assert_true(f->id == 0x123456789abcull);
    assert_int_equal(f->which_body, evbus_Frame_put_events_tag);
    const evbus_PutEventsRequest *req = &f->body.put_events;
    assert_string_equal(req->bus, "orders");
    assert_int_equal(req->entries_count, 3);
    for (int i = 0; i < 3; i++) {
        const evbus_PutEventsEntry *e = &req->entries[i];
        assert_string_equal(e->source, "com.example.shop");
        assert_string_equal(e->detail_type, i == 1 ? "Order Cancelled" : "Order Placed");
        assert_string_equal(e->detail,
                            i == 2 ? "{\"id\":\"\\u00e9\",\"n\":[1,2,3]}" : "{\"id\":1}");
        assert_int_equal(e->resources_count, i == 0 ? 2 : (i == 2 ? 1 : 0));
        if (e->resources_count > 0)
            assert_string_equal(e->resources[0], "arn:aws:s3:::bucket");
        if (i == 0)
            assert_string_equal(e->resources[1], "arn:aws:ec2:eu-west-1:1:instance/i-1");
        if (i == 1)
            assert_string_equal(e->time, "2026-12-03T17:35:48Z");
        else
            assert_null(e->time); /* proto3: an unset string stays unset */
        /* nanopb sends a non-NULL "" pointer field; readers must treat NULL and "" alike. */
        if (i == 2)
            assert_string_equal(e->partition_key, "customer-7");
        else
            assert_true(e->partition_key == NULL || e->partition_key[0] == '\0');
    }
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    evbus_Frame in;
    build_put(&in);

    /* Framed: the header announces the body, and the reader hands that body back. */
    uint8_t *buf = NULL;
    size_t buf_len = 0;
    assert_int_equal(wire_encode(evbus_Frame_fields, &in, 0, &buf, &buf_len), 0);
    assert_true(buf_len > WIRE_HEADER_BYTES);
    assert_int_equal(util_get_be32(buf), buf_len - WIRE_HEADER_BYTES);

    wire_reader r;
    wire_reader_init(&r, 0);
    assert_int_equal(wire_reader_feed(&r, buf, buf_len), 0);
    const uint8_t *body;
    size_t len;
    assert_int_equal(wire_reader_next(&r, &body, &len), 1);
    assert_int_equal(len, buf_len - WIRE_HEADER_BYTES);

    evbus_Frame out;
    memset(&out, 0, sizeof(out));
    char err[128] = "";
    assert_int_equal(wire_decode(evbus_Frame_fields, body, len, &out, err, sizeof(err)), 0);
    check_put(&out);
    assert_string_equal(wire_body_name(out.which_body), "PutEvents");
    wire_release(evbus_Frame_fields, &out);
    wire_reader_free(&r);

    /* Bare body: the same bytes as the framed body. */
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(wire_encode_body(evbus_Frame_fields, &in, &raw, &raw_len), 0);
    assert_int_equal(raw_len, buf_len - WIRE_HEADER_BYTES);
    assert_memory_equal(raw, buf + WIRE_HEADER_BYTES, raw_len);
    memset(&out, 0, sizeof(out));
    assert_int_equal(wire_decode(evbus_Frame_fields, raw, raw_len, &out, NULL, 0), 0);
    check_put(&out);
    wire_release(evbus_Frame_fields, &out);

    /* The encoder honours the limit: one byte short of the body is refused. */
    uint8_t *small = NULL;
    size_t small_len = 0;
    assert_int_equal(
        wire_encode(evbus_Frame_fields, &in, (uint32_t)(raw_len - 1), &small, &small_len),
        EVBUS_ETOOBIG);
    assert_null(small);
    assert_int_equal(wire_encode(evbus_Frame_fields, &in, (uint32_t)raw_len, &small, &small_len),
                     0);
    free(small);

    free(raw);
    free(buf);
    free_built_put(&in.body.put_events);
}

static void test_codec_empty_frame(void **state)
{
    (void)state;
    /* A Frame with every field at its default encodes to zero bytes and decodes back. */
    evbus_Frame in;
    memset(&in, 0, sizeof(in));
    uint8_t *raw = NULL;
    size_t raw_len = 99;
    assert_int_equal(wire_encode_body(evbus_Frame_fields, &in, &raw, &raw_len), 0);
    assert_int_equal(raw_len, 0);
    evbus_Frame out;
    memset(&out, 0, sizeof(out));
    assert_int_equal(wire_decode(evbus_Frame_fields, raw, raw_len, &out, NULL, 0), 0);
    assert_int_equal(out.which_body, 0);
    assert_true(out.id == 0);
    wire_release(evbus_Frame_fields, &out);
    free(raw);
}

static void test_codec_invalid(void **state)
{
    (void)state;
    struct {
        const char *why;
        uint8_t bytes[16];
        size_t len;
    } bad[] = {
        {"truncated varint", {0x08, 0xff}, 2},
        {"id with length-delimited wire type", {0x0a, 0x01, 0x00}, 3},
        {"put_events body longer than the input", {0xa2, 0x01, 0x05, 0x0a}, 4},
        {"string inside put_events runs past its message", {0xa2, 0x01, 0x02, 0x0a, 0x09}, 5},
        {"wire type 7 does not exist", {0x0f, 0x00}, 2},
        {"varint longer than 10 bytes",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        evbus_Frame out;
        memset(&out, 0, sizeof(out));
        char err[128] = "";
        int rv = wire_decode(evbus_Frame_fields, bad[i].bytes, bad[i].len, &out, err, sizeof(err));
        if (rv != EVBUS_EPROTO)
            fail_msg("%s: wire_decode = %d, want EVBUS_EPROTO", bad[i].why, rv);
        /* The message says what was wrong, for the error reply to the peer. */
        assert_true(strncmp(err, "invalid protobuf: ", 18) == 0);
        assert_true(strlen(err) > 18);
    }
}

static void test_codec_unknown_body(void **state)
{
    (void)state;
    /*
     * id = 7, then a body of a type this build does not know (field 99, a
     * sub-message with one string), then field 100 as a varint. A newer peer
     * sends such frames; they must decode so the caller can answer
     * EVBUS_EUNKNOWN_MSG instead of dropping the connection.
     */
    static const uint8_t bytes[] = {
        0x08, 0x07,                        /* id = 7 */
        0x9a, 0x06, 0x03, 0x0a, 0x01, 'x', /* field 99, length 3: {1: "x"} */
        0xa0, 0x06, 0x2a,                  /* field 100, varint 42 */
    };
    evbus_Frame out;
    memset(&out, 0, sizeof(out));
    char err[128] = "";
    assert_int_equal(wire_decode(evbus_Frame_fields, bytes, sizeof(bytes), &out, err, sizeof(err)),
                     0);
    assert_true(out.id == 7);
    assert_int_equal(out.which_body, 0);
    assert_string_equal(wire_body_name(out.which_body), "unknown");
    wire_release(evbus_Frame_fields, &out);

    assert_string_equal(wire_body_name(9999), "unknown");
    assert_string_equal(wire_body_name(evbus_Frame_hello_tag), "Hello");
    assert_string_equal(wire_body_name(evbus_Frame_cluster_status_reply_tag), "ClusterStatusReply");
    assert_string_equal(wire_body_name(evbus_Frame_put_rule_tag), "PutRule");
    assert_string_equal(wire_body_name(evbus_Frame_test_rule_reply_tag), "TestRuleReply");
    /* Every body tag of this build has a name (the rules messages are 50..59). */
    for (pb_size_t tag = 50; tag <= 59; tag++)
        assert_string_not_equal(wire_body_name(tag), "unknown");
}

static void test_strdup(void **state)
{
    (void)state;
    assert_null(wire_strdup(NULL));
    char *s = wire_strdup("bus");
    assert_string_equal(s, "bus");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_byte_by_byte), cmocka_unit_test(test_reader_merged),
        cmocka_unit_test(test_reader_empty_body),   cmocka_unit_test(test_reader_max_frame),
        cmocka_unit_test(test_reader_truncated),    cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_empty_frame),   cmocka_unit_test(test_codec_invalid),
        cmocka_unit_test(test_codec_unknown_body),  cmocka_unit_test(test_strdup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
