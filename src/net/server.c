/* net/server: see server.h. */
#include "net/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "evbus/errors.h"
#include "wire/wire.h"

#define MOD "net"
#define READ_CHUNK (64u * 1024u)

struct net_conn {
    uv_tcp_t tcp;
    net_server *srv;
    uint64_t id;
    char peer[64];
    wire_reader reader;
    int refs;    /* the open connection holds one */
    int closing; /* close requested */
    int closed;  /* handle closed */
    int reading;
    int paused; /* too many requests in progress: frames wait in the reader */
    int broken; /* framing broken: ignore further input */
    void *data;
    net_conn *prev, *next;
};

struct net_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    uint32_t max_frame;
    net_handlers h;
    uint64_t next_id;
    net_conn *conns;
    size_t n_conns;
    int closing;
    void (*close_cb)(void *);
    void *close_data;
    int listener_closed;
    uv_timer_t grace;  /* bounds the close of connections */
    uv_timer_t resume; /* resumes paused connections outside of callbacks */
    int timers_open;
};

typedef struct write_req {
    uv_write_t req;
    net_conn *c;
    uint8_t *frame;
} write_req;

static void maybe_finish_close(net_server *s);
static void resume_cb(uv_timer_t *t);

static void conn_free(net_conn *c)
{
    net_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    wire_reader_free(&c->reader);
    free(c);
    maybe_finish_close(s);
}

void net_conn_ref(net_conn *c)
{
    c->refs++;
}

void net_conn_unref(net_conn *c)
{
    if (--c->refs == 0 && c->closed) {
        conn_free(c);
        return;
    }
    /* Resume from a timer: we may be inside a handler of this very connection. */
    if (c->paused && c->refs <= NET_MAX_PENDING / 2 && !c->srv->closing)
        uv_timer_start(&c->srv->resume, resume_cb, 0, 0);
}

static void on_conn_closed(uv_handle_t *h)
{
    net_conn *c = h->data;
    c->closed = 1;
    net_server *s = c->srv;
    if (s->h.on_close)
        s->h.on_close(s->h.arg, c);
    net_conn_unref(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    net_conn *c = req->data;
    free(req);
    /* A forced close may have closed the handle already (status ECANCELED). */
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

void net_conn_close(net_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    /* Shutdown first so answers already queued (e.g. the error that explains the close) are
     * written before the socket goes away. */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req != NULL) {
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
        free(req);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

int net_conn_is_closed(const net_conn *c)
{
    return c->closing || c->closed;
}
uint64_t net_conn_id(const net_conn *c)
{
    return c->id;
}
const char *net_conn_peer(const net_conn *c)
{
    return c->peer;
}
void *net_conn_data(const net_conn *c)
{
    return c->data;
}
void net_conn_set_data(net_conn *c, void *data)
{
    c->data = data;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* A fixed-size read buffer: how much we hold per connection is decided by the frame reader
     * after it has checked the announced length, never by the peer. */
    static char chunk[READ_CHUNK];
    buf->base = chunk;
    buf->len = sizeof(chunk);
}

static void process_frames(net_conn *c);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    net_conn *c = stream->data;
    if (nread < 0) {
        if (nread != UV_EOF)
            LOG_DEBUGF(MOD, "read error", "conn=%llu err=%s", (unsigned long long)c->id,
                       uv_strerror((int)nread));
        net_conn_close(c);
        return;
    }
    if (nread == 0 || c->broken || c->closing)
        return;
    if (wire_reader_feed(&c->reader, buf->base, (size_t)nread) != 0) {
        net_conn_close(c);
        return;
    }
    process_frames(c);
}

/* Hands buffered frames to the handler until none is complete, the connection closes, or too
 * many of its requests are in progress (then reading stops until they finish). */
static void process_frames(net_conn *c)
{
    net_server *s = c->srv;
    /* Hold a reference: a handler may close the connection while we still loop. */
    net_conn_ref(c);
    for (;;) {
        if (c->refs > NET_MAX_PENDING + 1) {
            if (!c->paused) {
                c->paused = 1;
                if (c->reading) {
                    uv_read_stop((uv_stream_t *)&c->tcp);
                    c->reading = 0;
                }
            }
            break;
        }
        const uint8_t *body;
        size_t len;
        int rv = wire_reader_next(&c->reader, &body, &len);
        if (rv == 0)
            break;
        if (rv < 0) {
            char msg[128];
            snprintf(msg, sizeof(msg), "frame larger than the limit of %u bytes", s->max_frame);
            LOG_WARNF(MOD, "closing connection: broken framing", "conn=%llu peer=%s err=\"%s\"",
                      (unsigned long long)c->id, c->peer, msg);
            c->broken = 1;
            if (s->h.on_frame_error)
                s->h.on_frame_error(s->h.arg, c, rv, msg);
            net_conn_close(c);
            break;
        }
        s->h.on_frame(s->h.arg, c, body, len);
        if (c->closing)
            break;
    }
    net_conn_unref(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    net_conn *c = w->c;
    free(w->frame);
    free(w);
    if (status < 0 && !c->closing)
        net_conn_close(c);
    if (!c->closing && !c->reading && !c->paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < NET_WRITE_LOW_BYTES) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        c->reading = 1;
    }
    net_conn_unref(c);
}

int net_conn_send(net_conn *c, uint8_t *frame, size_t len)
{
    if (c->closing || c->closed) {
        free(frame);
        return EVBUS_ECLOSED;
    }
    write_req *w = malloc(sizeof(*w));
    if (w == NULL) {
        /* An answer we cannot send leaves a request unanswered: close instead. */
        free(frame);
        net_conn_close(c);
        return EVBUS_ENOMEM;
    }
    w->c = c;
    w->frame = frame;
    uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rv != 0) {
        free(frame);
        free(w);
        net_conn_close(c);
        return EVBUS_ECLOSED;
    }
    net_conn_ref(c);
    if (c->reading &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > NET_WRITE_HIGH_BYTES) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    net_server *s = server->data;
    if (status < 0) {
        LOG_WARNF(MOD, "accept failed", "err=%s", uv_strerror(status));
        return;
    }
    net_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    c->id = ++s->next_id;
    c->refs = 1;
    wire_reader_init(&c->reader, s->max_frame);
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        c->closing = 1;
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            uv_ip4_name(in, ip, sizeof(ip));
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(in6, ip, sizeof(ip));
            port = ntohs(in6->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->reading = 1;
    LOG_DEBUGF(MOD, "connection accepted", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
}

static void on_failed_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

int net_server_start(uv_loop_t *loop, const char *addr, uint32_t max_frame, const net_handlers *h,
                     net_server **out, char *err, size_t err_len)
{
    char host[256];
    uint16_t port;
    if (util_parse_hostport(addr, host, sizeof(host), &port) != 0) {
        snprintf(err, err_len, "bad listen address '%s'", addr);
        return EVBUS_EINVAL;
    }
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0) {
        snprintf(err, err_len, "listen address '%s' is not an IP address", addr);
        return EVBUS_EINVAL;
    }
    net_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return EVBUS_ENOMEM;
    s->loop = loop;
    s->max_frame = max_frame;
    s->h = *h;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int rv = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rv != 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", addr, uv_strerror(rv));
        uv_close((uv_handle_t *)&s->listener, on_failed_listener_closed);
        return EVBUS_EIO;
    }
    s->listening = 1;
    uv_timer_init(loop, &s->grace);
    uv_timer_init(loop, &s->resume);
    s->grace.data = s->resume.data = s;
    s->timers_open = 2;

    *out = s;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    net_server *s = h->data;
    s->listener_closed = 1;
    maybe_finish_close(s);
}

void net_server_stop_listening(net_server *s)
{
    if (!s->listening)
        return;
    s->listening = 0;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

static void on_timer_closed(uv_handle_t *h)
{
    net_server *s = h->data;
    if (--s->timers_open > 0)
        return;
    void (*cb)(void *) = s->close_cb;
    void *data = s->close_data;
    free(s);
    if (cb)
        cb(data);
}

static void maybe_finish_close(net_server *s)
{
    if (!s->closing || !s->listener_closed || s->n_conns > 0 ||
        uv_is_closing((uv_handle_t *)&s->grace))
        return;
    uv_close((uv_handle_t *)&s->grace, on_timer_closed);
    uv_close((uv_handle_t *)&s->resume, on_timer_closed);
}

void net_server_force_close(net_server *s)
{
    for (net_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        c->closing = 1;
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    }
}

static void grace_cb(uv_timer_t *t)
{
    net_server *s = t->data;
    LOG_WARNF(MOD, "connections did not drain in time, closing them", "open=%zu", s->n_conns);
    net_server_force_close(s);
}

static void resume_cb(uv_timer_t *t)
{
    net_server *s = t->data;
    for (net_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->paused || c->closing || c->refs > NET_MAX_PENDING / 2)
            continue;
        c->paused = 0;
        process_frames(c);
        if (!c->paused && !c->closing && !c->reading) {
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
            c->reading = 1;
        }
    }
}

void net_server_close(net_server *s, void (*cb)(void *data), void *data)
{
    s->closing = 1;
    s->close_cb = cb;
    s->close_data = data;
    net_server_stop_listening(s);
    for (net_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        net_conn_close(c);
    }
    if (s->n_conns > 0)
        uv_timer_start(&s->grace, grace_cb, NET_CLOSE_GRACE_MS, 0);
    maybe_finish_close(s);
}
