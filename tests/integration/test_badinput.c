/*
 * Integration: bad input from the network against a real evbusd. Each case
 * talks raw TCP (hand-built frames), checks the answer (an error frame with the
 * right code, or a closed connection when the framing itself is broken), and
 * then checks that the server still serves a well-behaved SDK client and that
 * what was stored before is intact.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "evbus/evbus.h"
#include "lib/testlib.h"
#include "lib/testsdk.h"
#include "wire/wire.h"

static tl_node g_node;

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(g_node.client_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close first; the caller checks what comes back */
        b += w;
        n -= (size_t)w;
    }
}

static void send_frame(int fd, const evbus_Frame *f)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_encode(evbus_Frame_fields, f, 0, &buf, &len), 0);
    send_all(fd, buf, len);
    free(buf);
}

static void send_raw_body(int fd, const uint8_t *body, uint32_t len)
{
    uint8_t head[4];
    wire_put_header(head, len);
    send_all(fd, head, 4);
    send_all(fd, body, len);
}

/* Reads one frame within timeout_ms. Returns 1 with *f decoded, 0 on orderly close, -1 on
 * timeout. */
static int recv_frame(int fd, evbus_Frame *f, uint32_t timeout_ms)
{
    wire_reader r;
    wire_reader_init(&r, 8u << 20);
    uint64_t deadline = tl_now_ms() + timeout_ms;
    int result = -1;
    for (int i = 0; i < 10000 && tl_now_ms() < deadline; i++) {
        const uint8_t *body;
        size_t len;
        if (wire_reader_next(&r, &body, &len) == 1) {
            memset(f, 0, sizeof(*f));
            assert_int_equal(wire_decode(evbus_Frame_fields, body, len, f, NULL, 0), 0);
            result = 1;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(deadline - tl_now_ms());
        if (poll(&p, 1, left > 0 ? left : 0) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            result = 0;
            break;
        }
        wire_reader_feed(&r, buf, (size_t)n);
    }
    wire_reader_free(&r);
    return result;
}

/* 1 when the server closed the connection within timeout_ms (after any frames it sent). */
static int closed_by_server(int fd, uint32_t timeout_ms)
{
    evbus_Frame f;
    for (int i = 0; i < 8; i++) {
        int rv = recv_frame(fd, &f, timeout_ms);
        if (rv == 0)
            return 1;
        if (rv < 0)
            return 0;
        wire_release(evbus_Frame_fields, &f);
    }
    return 0;
}

static int hello(int fd)
{
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = 1;
    f.which_body = evbus_Frame_hello_tag;
    f.body.hello.protocol_version = 1;
    f.body.hello.client_name = "badinput-test";
    send_frame(fd, &f);
    evbus_Frame r;
    assert_int_equal(recv_frame(fd, &r, 5000), 1);
    int ok = r.id == 1 && r.which_body == evbus_Frame_hello_reply_tag;
    assert_int_equal(r.body.hello_reply.node_id, 1);
    wire_release(evbus_Frame_fields, &r);
    return ok;
}

static void expect_error(int fd, uint64_t id, int code)
{
    evbus_Frame r;
    assert_int_equal(recv_frame(fd, &r, 5000), 1);
    assert_int_equal(r.which_body, evbus_Frame_error_tag);
    assert_int_equal(r.id, id);
    assert_int_equal(r.body.error.code, code);
    assert_non_null(r.body.error.message);
    assert_true(strlen(r.body.error.message) > 0);
    wire_release(evbus_Frame_fields, &r);
}

static evbus_client *sdk(void)
{
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = g_node.client_addr;
    o.timeout_ms = 10000;
    evbus_client *c = NULL;
    assert_int_equal(evbus_client_create(&o, &c), 0);
    return c;
}

/* The server still answers, and the event stored at setup is intact. */
static void assert_healthy(void)
{
    evbus_client *c = sdk();
    evbus_read_result *rr = NULL;
    assert_int_equal(evbus_read(c, "keep", 0, 0, 10, 0, &rr), 0);
    assert_int_equal(rr->n_events, 1);
    assert_non_null(strstr(rr->events[0].json, "\"marker\":\"intact\""));
    evbus_read_result_free(rr);
    evbus_client_destroy(c);
}

static int setup(void **state)
{
    (void)state;
    if (tl_node_init(&g_node, 1) != 0 || tl_evbusd_start(&g_node, NULL, 0) != 0 ||
        tl_wait_leader(g_node.client_addr, 15000, NULL) != 0)
        return -1;
    evbus_client *c = sdk();
    assert_int_equal(evbus_bus_create(c, "keep", 1), 0);
    evbus_entry e = {.source = "t", .detail_type = "d", .detail = "{\"marker\":\"intact\"}"};
    evbus_put_result res;
    size_t failed = 9;
    assert_int_equal(evbus_put_events(c, "keep", &e, 1, &res, &failed, NULL), 0);
    assert_int_equal(failed, 0);
    evbus_client_destroy(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* A clean stop also proves the server survived everything. */
    int st = tl_evbusd_stop(&g_node, SIGTERM, 0);
    if (st != 0)
        tl_print_log_tail(g_node.proc.log_path, 40);
    return st == 0 ? 0 : -1;
}

static void test_garbage_bytes(void **state)
{
    (void)state;
    int fd = raw_connect();
    /* Announces a 1.9 GB frame: refused before any allocation, connection closed. */
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, junk, sizeof(junk) - 1);
    assert_true(closed_by_server(fd, 5000));
    close(fd);
    assert_healthy();
}

static void test_frame_over_limit(void **state)
{
    (void)state;
    int fd = raw_connect();
    assert_true(hello(fd));
    uint8_t head[4];
    wire_put_header(head, (4u << 20) + 1); /* default limit is 4 MiB */
    send_all(fd, head, 4);
    evbus_Frame r;
    assert_int_equal(recv_frame(fd, &r, 5000), 1);
    assert_int_equal(r.which_body, evbus_Frame_error_tag);
    assert_int_equal(r.body.error.code, EVBUS_ETOOBIG);
    wire_release(evbus_Frame_fields, &r);
    assert_true(closed_by_server(fd, 5000));
    close(fd);
    assert_healthy();
}

static void test_truncated_frame(void **state)
{
    (void)state;
    int fd = raw_connect();
    assert_true(hello(fd));
    /* Announce 100 bytes, send 10, hang up: the server drops the partial frame. */
    uint8_t head[4];
    wire_put_header(head, 100);
    send_all(fd, head, 4);
    send_all(fd, "0123456789", 10);
    close(fd);
    /* And a truncated frame on a connection that stays open does not block others. */
    int fd2 = raw_connect();
    send_all(fd2, head, 4);
    assert_healthy();
    close(fd2);
    assert_healthy();
}

static void test_invalid_protobuf(void **state)
{
    (void)state;
    int fd = raw_connect();
    assert_true(hello(fd));
    const uint8_t bad[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}; /* length past the end */
    send_raw_body(fd, bad, sizeof(bad));
    expect_error(fd, 0, EVBUS_EPROTO);
    /* The framing is intact: the same connection keeps working. */
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = 7;
    f.which_body = evbus_Frame_list_buses_tag;
    send_frame(fd, &f);
    evbus_Frame r;
    assert_int_equal(recv_frame(fd, &r, 5000), 1);
    assert_int_equal(r.id, 7);
    assert_int_equal(r.which_body, evbus_Frame_list_buses_reply_tag);
    wire_release(evbus_Frame_fields, &r);
    close(fd);
    assert_healthy();
}

static void test_unknown_message_type(void **state)
{
    (void)state;
    int fd = raw_connect();
    assert_true(hello(fd));
    /* Frame{id=9, field 999 (not in the protocol) = empty message} */
    const uint8_t body[] = {0x08, 0x09, 0xba, 0x3e, 0x00};
    send_raw_body(fd, body, sizeof(body));
    expect_error(fd, 9, EVBUS_EUNKNOWN_MSG);
    /* A reply type sent as a request is also refused. */
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = 10;
    f.which_body = evbus_Frame_ok_tag;
    send_frame(fd, &f);
    expect_error(fd, 10, EVBUS_EUNKNOWN_MSG);
    close(fd);
    assert_healthy();
}

static void test_handshake_rules(void **state)
{
    (void)state;
    /* A request before Hello: error and close. */
    int fd = raw_connect();
    evbus_Frame f = evbus_Frame_init_zero;
    f.id = 3;
    f.which_body = evbus_Frame_list_buses_tag;
    send_frame(fd, &f);
    expect_error(fd, 3, EVBUS_EPROTO);
    assert_true(closed_by_server(fd, 5000));
    close(fd);
    /* A protocol version we do not speak. */
    fd = raw_connect();
    f.id = 4;
    f.which_body = evbus_Frame_hello_tag;
    f.body.hello.protocol_version = 99;
    send_frame(fd, &f);
    expect_error(fd, 4, EVBUS_EVERSION);
    assert_true(closed_by_server(fd, 5000));
    close(fd);
    assert_healthy();
}

static void test_invalid_events(void **state)
{
    (void)state;
    evbus_client *c = sdk();
    evbus_entry e[4] = {
        {.source = "t", .detail_type = "d", .detail = "{\"ok\":true}"},
        {.source = "t", .detail_type = "d", .detail = "{not json"},
        {.source = "t", .detail_type = "d", .detail = "[1,2]"},
        {.source = NULL, .detail_type = "d", .detail = "{}"},
    };
    evbus_put_result res[4];
    size_t failed = 0;
    /* An entry with a NULL required field may be refused client-side as a whole request; check
     * the server's per-entry answers with the three that reach it. */
    assert_int_equal(evbus_put_events(c, "keep", e, 3, res, &failed, NULL), 0);
    assert_int_equal(failed, 2);
    assert_int_equal(res[0].code, 0);
    assert_int_equal(res[0].offset, 1);
    assert_int_equal(res[1].code, EVBUS_EINVAL);
    assert_non_null(strstr(res[1].message, "not valid JSON"));
    assert_int_equal(res[2].code, EVBUS_EINVAL);
    assert_non_null(strstr(res[2].message, "JSON object"));
    /* Unknown bus and bad names are whole-request errors. */
    assert_int_equal(evbus_put_events(c, "nope", e, 1, res, &failed, NULL), EVBUS_ENOTFOUND);
    assert_int_equal(evbus_put_events(c, "bad/name", e, 1, res, &failed, NULL), EVBUS_EINVAL);
    evbus_read_result *rr = NULL;
    assert_int_equal(evbus_read(c, "keep", 0, 0, 10, 0, &rr), 0);
    assert_int_equal(rr->n_events, 2); /* the marker and the one valid entry, nothing else */
    evbus_read_result_free(rr);
    assert_int_equal(evbus_read(c, "keep", 3, 0, 10, 0, &rr), EVBUS_EINVAL);
    assert_int_equal(evbus_read(c, "keep", 0, 5, 10, 0, &rr), EVBUS_ERANGE);
    evbus_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_garbage_bytes),        cmocka_unit_test(test_frame_over_limit),
        cmocka_unit_test(test_truncated_frame),      cmocka_unit_test(test_invalid_protobuf),
        cmocka_unit_test(test_unknown_message_type), cmocka_unit_test(test_handshake_rules),
        cmocka_unit_test(test_invalid_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
