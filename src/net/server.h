/*
 * net/server: the client-protocol listener and its connections on the libuv
 * loop. It splits the byte stream into frames (wire_reader, limit checked
 * before buffering) and hands each frame body to the handler; it writes frames
 * handed to it and applies backpressure: a connection whose unsent output passes
 * NET_WRITE_HIGH_BYTES stops being read until it drains below NET_WRITE_LOW_BYTES,
 * so a client that does not read its answers cannot grow our memory.
 *
 * Connection lifetime: a connection is freed when it is closed AND no request
 * holds a reference (net_conn_ref). Sends to a closed connection are dropped.
 */
#ifndef EVBUS_NET_SERVER_H
#define EVBUS_NET_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define NET_WRITE_HIGH_BYTES (16u << 20)
#define NET_WRITE_LOW_BYTES (4u << 20)
/* Requests of one connection in progress (references held) above which it is not read and its
 * buffered frames wait: pipelining cannot pile up unbounded work. */
#define NET_MAX_PENDING 512
/* How long a closing connection may take to flush its answers before it is cut. */
#define NET_CLOSE_GRACE_MS 2000u

typedef struct net_server net_server;
typedef struct net_conn net_conn;

typedef struct net_handlers {
    /* A complete frame body (borrowed for the duration of the call). */
    void (*on_frame)(void *arg, net_conn *c, const uint8_t *body, size_t len);
    /* The framing itself is broken (frame over the limit): the connection will be closed after
     * anything the handler sends now. */
    void (*on_frame_error)(void *arg, net_conn *c, int code, const char *msg);
    /* The connection closed (by the peer, an error or us); references may still be held. */
    void (*on_close)(void *arg, net_conn *c);
    void *arg;
} net_handlers;

/* Binds and listens on host:port. The handlers struct is copied. */
int net_server_start(uv_loop_t *loop, const char *addr, uint32_t max_frame, const net_handlers *h,
                     net_server **out, char *err, size_t err_len);

/* Stops accepting new connections; existing ones continue. */
void net_server_stop_listening(net_server *s);

/* Closes the listener and every connection (after their pending writes, at most
 * NET_CLOSE_GRACE_MS), then frees the server and runs cb. */
void net_server_close(net_server *s, void (*cb)(void *data), void *data);

/* Cuts every connection now, dropping unsent answers. */
void net_server_force_close(net_server *s);

/* Sends one encoded frame; `frame` (from malloc) is transferred. 0 or EVBUS_ECLOSED (the buffer is
 * freed either way). */
int net_conn_send(net_conn *c, uint8_t *frame, size_t len);

/* Closes after pending writes. Idempotent. */
void net_conn_close(net_conn *c);
int net_conn_is_closed(const net_conn *c);

void net_conn_ref(net_conn *c);
void net_conn_unref(net_conn *c);

uint64_t net_conn_id(const net_conn *c);
const char *net_conn_peer(const net_conn *c);
void *net_conn_data(const net_conn *c);
void net_conn_set_data(net_conn *c, void *data);

#endif
