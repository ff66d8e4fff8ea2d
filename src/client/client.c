/*
 * client: the SDK of include/evbus/evbus.h.
 *
 * One client is one private uv_loop_t, one uv_timer_t and at most one
 * connection (struct conn, owning a uv_tcp_t). The loop runs only inside the
 * client's own calls, one uv_run(UV_RUN_ONCE) at a time with the timer bounding
 * each wait, on the caller's thread. No threads: host names that are not
 * numeric addresses are resolved with a synchronous getaddrinfo, because
 * libuv's asynchronous one would start its thread pool.
 *
 * Requests. Every request, blocking or asynchronous, is a struct req on at most
 * one of three queues (req->q says which):
 *
 *   submit --> unsent --(pump: connection READY, not_before reached)--> inflight
 *                ^                                                         |
 *                |  resend (the retry table below): ENOTLEADER (follow     |
 *                |  leader_addr), ENOLEADER, EUNAVAIL, EBUSY (backoff),    |
 *                +-- lost connection, no answer within the attempt bound --+
 *                                                                          |
 *   (blocking: the waiting call sees req->done)  <--  complete  <----------+
 *   (async: done queue, callback from dispatch)       answer, error, deadline
 *
 * A blocking call submits one request kept on its own stack and alternates
 * pump() and one loop turn until the request is done; pump() expires it at its
 * deadline, so it is off every queue when the call returns. An asynchronous
 * request is heap-allocated; once complete it waits on `done` and its callback
 * runs from dispatch(), never from inside a libuv callback, so a callback may
 * call the client again, even a blocking call, without nesting uv_run.
 *
 * The body of a request is encoded once, at submit, as a Frame without its id.
 * Each attempt prepends the id field (field 1, varint) with a fresh correlation
 * id: resending never re-encodes, and a late answer to an abandoned attempt
 * matches nothing and is dropped. Hello always uses id 1; requests start at 2.
 *
 * Connection states: CONNECTING (TCP) -> HELLO (Hello sent) -> READY, and
 * CLOSED from any of them. Closing is immediate for the client (c->conn = NULL)
 * while the struct lives until libuv's close callback frees it. The next
 * connect goes to the leader named by the last ENOTLEADER if any, else to the
 * next server of the list; after a whole round of failed attempts the next one
 * waits (50 ms doubling to 1 s, with jitter). A deliberate switch of server
 * (follow the leader, rotate after ENOLEADER/EUNAVAIL or an attempt without
 * answer) waits until nothing is in flight, so an answer already on its way is
 * never thrown away.
 *
 * Idempotent publishing (options.idempotent, the default). At create the client
 * picks a random non-zero producer id (getrandom); every publish takes the next
 * sequence number (from 1) when it is submitted, and both go into the body, so
 * every resend of that publish carries the same pair and the server's dedup
 * table answers a resend of a stored publish with the original offsets. That
 * makes a publish whose outcome is unknown safe to resend. An attempt of an
 * idempotent publish that gets no answer within attempt_ms (a third of the
 * timeout, at least ATTEMPT_MIN_MS) is abandoned and resent after a reconnect.
 * Publishes are (re)sent in submit order: a resend is queued before the
 * publishes submitted after it, and a publish waiting for its backoff holds back
 * the later ones, so a producer's events keep their order per partition.
 * At most MAX_INFLIGHT_IDEM idempotent publishes are on the wire at once (the
 * rest wait in `unsent`): the server remembers a producer's last dedup-window
 * sequences (16 by default) and answers an older unknown one EVBUS_ESEQUENCE, so
 * with a deeper pipeline the resends after a lost connection would fall out of
 * the window. With the cap, every resend is either remembered or newer than the
 * window's oldest.
 *
 * What is retried, per kind of request, until the request's deadline (the
 * timeout from submit); "resend" goes to the same or, after a switch, another
 * server; "final" completes the request with that code:
 *
 *   kind (req_kind)              ENOTLEADER  ENOLEADER  EBUSY   EUNAVAIL  lost conn.  no answer
 *   READ: read, describe, list,  follow      resend     resend  resend    resend      deadline
 *     cluster status, rule list/describe/test, target list/describe (EBACKFILL: resend, to the next
 * server when there is one) NODE: node status, checksum  final       final      resend  final
 * resend      deadline WRITE: create/delete bus,    follow      resend     resend  final(*)
 * ECONN(*)    deadline(*) publish, not idempotent; rule put/delete/enable/disable; target
 * put/remove PUBLISH_IDEM: publish,       follow      resend     resend  resend    resend resend
 *     idempotent (default)                                      (*)       (*)         (*)
 *   MEMBER: add/remove node,     follow      resend     final   final(*)  ECONN(*)    deadline(*)
 *     transfer leader
 *
 * (*) the outcome is unknown: the server may have done it. ENOTLEADER, ENOLEADER
 * and EBUSY mean it did nothing; EUNAVAIL on a write means leadership was lost
 * with the entry proposed. NODE requests ask about the answering node, so they
 * are never redirected and its EUNAVAIL (backfilling) is the answer. ENOTLEADER's
 * leader_addr is followed up to MAX_REDIRECTS times, the first at once and later
 * ones after a growing wait (a hint may name a leader that just died). At the
 * deadline a request reports its last error; one with an earlier attempt of
 * unknown outcome reports EVBUS_ETIMEDOUT (or EVBUS_ECONN when no connection
 * could be made), never a code that claims nothing was done. Asynchronous
 * requests are publishes only. A protocol error fails what was in flight with
 * EVBUS_EPROTO: resending would meet the same server bug.
 *
 * Invariants:
 *  1. A request is on at most one queue; a blocking request is on none when its
 *     call returns.
 *  2. Every request on `inflight` was written on c->conn, and c->conn is READY.
 *  3. An async callback runs exactly once: from dispatch(), or from destroy
 *     with EVBUS_ECANCELED.
 *  4. Bytes from the network never reach an assert: a bad frame closes the
 *     connection with EVBUS_EPROTO.
 *  5. `unsent` is ordered by submit order (req->order), resends included.
 *  6. A publish's producer id and sequence never change after submit.
 *
 * SIGPIPE: libuv writes sockets with writev(), so a write to a connection the
 * peer has reset raises SIGPIPE, whose default action kills the process. Public
 * calls that can write block SIGPIPE on the calling thread for their duration
 * and discard one they raised (the libcurl technique): the SDK never changes
 * the process-wide disposition.
 */
#include "evbus/evbus.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "wire/wire.h"

#define DEFAULT_CLIENT_NAME "libevbus"
#define DEFAULT_TIMEOUT_MS 10000u
#define CONNECT_ATTEMPT_MS 3000u /* TCP connect plus Hello, per server */
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 1000u
#define MAX_REDIRECTS 8u     /* then ENOTLEADER is retried like ENOLEADER */
#define ATTEMPT_MIN_MS 1000u /* floor of an idempotent publish's attempt bound */
/* Idempotent publishes on the wire at once: at most the server's dedup-window (default 16), so a
 * resend after a lost connection is still in the window (see the top). */
#define MAX_INFLIGHT_IDEM 16u
#define READ_CHUNK 65536u
#define HELLO_ID 1u
#define ID_FIELD_MAX_BYTES 11u /* tag byte + 10-byte varint */
#define ERRMSG_BYTES 512u

struct endpoint {
    char *addr; /* "host:port" as given, for messages and evbus_client_server() */
    char *host; /* without IPv6 brackets */
    int port;
};

enum conn_state { CONN_CONNECTING, CONN_HELLO, CONN_READY, CONN_CLOSED };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    evbus_client *c;
    enum conn_state state;
    bool from_redirect;   /* dialled because of ENOTLEADER: a failure does not advance the list */
    uint64_t deadline_ms; /* CONNECTING/HELLO must be over by then */
    wire_reader rd;
    char *addr;
    char rbuf[READ_CHUNK]; /* one read at a time: libuv calls alloc then read back to back */
};

struct write_buf {
    uv_write_t w;
    size_t len;
    uint8_t data[];
};

struct req_queue {
    struct req *head;
    struct req *tail;
    size_t n;
};

/* How a request is retried: the table at the top. */
enum req_kind { REQ_READ, REQ_NODE, REQ_WRITE, REQ_PUBLISH_IDEM, REQ_MEMBER };

struct req {
    struct req *prev;
    struct req *next;
    struct req_queue *q;
    const char *what;    /* request name for messages */
    pb_size_t reply_tag; /* Frame body of the success answer */
    enum req_kind kind;
    bool publish;         /* sent in submit order with the other publishes */
    bool outcome_unknown; /* an attempt may have been carried out (writes only) */
    bool async;
    bool done;
    uint64_t order; /* submit order, for invariant 5 */
    uint8_t *body;  /* Frame without id (owned) */
    size_t body_len;
    uint64_t id; /* correlation id of the current attempt; 0 when unsent */
    uint64_t deadline_ms;
    uint64_t attempt_deadline_ms; /* in flight: abandon the attempt then (0: no bound) */
    uint64_t not_before_ms;
    unsigned redirects;
    unsigned retries;
    int last_err; /* last retriable server error, reported when the deadline hits */
    int status;
    char errmsg[ERRMSG_BYTES];
    bool has_reply;
    evbus_Frame reply; /* blocking request answered with success (owned when has_reply) */
    /* async publish */
    evbus_put_cb cb;
    void *arg;
    size_t n_entries;
    evbus_put_result *results; /* when status 0 (owned) */
};

struct evbus_client {
    uv_loop_t loop;
    uv_timer_t timer;
    struct endpoint *eps;
    size_t n_eps;
    size_t next_ep;
    char *client_name;
    char *auth_token;
    uint32_t timeout_ms;
    uint32_t attempt_ms; /* bound of one attempt of an idempotent publish */
    uint32_t max_frame_bytes;
    bool idempotent;
    uint64_t producer_id; /* non-zero when idempotent */
    uint64_t next_sequence;

    struct conn *conn;
    uint32_t node_id;
    struct endpoint redirect; /* addr NULL when none */
    bool switch_pending;      /* close the READY connection once nothing is in flight */
    bool want_conn;           /* connect even with nothing to send (create) */
    size_t failed_in_round;
    unsigned rounds_failed;
    uint64_t connect_not_before_ms;
    int conn_err; /* last connection failure, for messages when a deadline hits */
    char conn_errmsg[ERRMSG_BYTES];

    uint64_t next_id;
    uint64_t next_order;
    uint64_t rng;
    struct req_queue unsent;
    struct req_queue inflight;
    struct req_queue done;
    size_t n_async;        /* async requests whose callback has not run */
    unsigned async_losses; /* connection losses that failed async requests */
    unsigned cb_depth;
    bool closing;
    char errmsg[ERRMSG_BYTES];
};

/* ------------------------------------------------------------------ helpers */

static int set_err(evbus_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(evbus_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

static void req_set_err(struct req *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void req_set_err(struct req *req, int code, const char *fmt, ...)
{
    va_list ap;
    req->status = code;
    va_start(ap, fmt);
    vsnprintf(req->errmsg, sizeof(req->errmsg), fmt, ap);
    va_end(ap);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static uint64_t now_ms(evbus_client *c)
{
    uv_update_time(&c->loop);
    return uv_now(&c->loop);
}

static uint64_t rng_next(evbus_client *c)
{
    /* xorshift64: jitter only, so no global state and no locking. */
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

static uint64_t backoff_ms(evbus_client *c, unsigned attempt)
{
    uint64_t ms = BACKOFF_MAX_MS;
    if (attempt < 8)
        ms = (uint64_t)BACKOFF_MIN_MS << attempt;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    /* Up to +25% so clients that failed together do not retry together. */
    return ms + rng_next(c) % (ms / 4 + 1);
}

struct sigpipe_guard {
    sigset_t old_mask;
    bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set;
    sigset_t pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old_mask);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

static void sigpipe_unblock(struct sigpipe_guard *g)
{
    sigset_t pending;
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        /* Ours: consume it so unblocking does not deliver it. */
        sigset_t set;
        struct timespec zero = {0, 0};
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}

/* ------------------------------------------------------------ server lists */

static void endpoint_free(struct endpoint *ep)
{
    free(ep->addr);
    free(ep->host);
    memset(ep, 0, sizeof(*ep));
}

/* Parses one "host:port" (IPv6 as "[addr]:port") of `len` bytes, spaces trimmed. */
static int endpoint_parse(const char *s, size_t len, struct endpoint *ep, char *err, size_t err_len)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    memset(ep, 0, sizeof(*ep));
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (len == 0 || colon == NULL || colon == s || colon == s + len - 1) {
        snprintf(err, err_len, "bad server address \"%.*s\": want host:port", (int)len, s);
        return EVBUS_EINVAL;
    }
    long port = 0;
    for (const char *p = colon + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9' || port > 65535) {
            port = -1;
            break;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        snprintf(err, err_len, "bad port in server address \"%.*s\"", (int)len, s);
        return EVBUS_EINVAL;
    }
    const char *host = s;
    size_t host_len = (size_t)(colon - s);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len == 0) {
        snprintf(err, err_len, "empty host in server address \"%.*s\"", (int)len, s);
        return EVBUS_EINVAL;
    }
    ep->addr = strndup(s, len);
    ep->host = strndup(host, host_len);
    ep->port = (int)port;
    if (ep->addr == NULL || ep->host == NULL) {
        endpoint_free(ep);
        snprintf(err, err_len, "out of memory");
        return EVBUS_ENOMEM;
    }
    return 0;
}

static int parse_servers(evbus_client *c, const char *servers)
{
    size_t count = 1;
    for (const char *p = servers; *p; p++)
        if (*p == ',')
            count++;
    c->eps = calloc(count, sizeof(*c->eps));
    if (c->eps == NULL)
        return set_err(c, EVBUS_ENOMEM, "out of memory");
    const char *s = servers;
    for (;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        int rc = endpoint_parse(s, len, &c->eps[c->n_eps], c->errmsg, sizeof(c->errmsg));
        if (rc != 0)
            return rc;
        c->n_eps++;
        if (end == NULL)
            break;
        s = end + 1;
    }
    return 0;
}

/* Numeric addresses directly; names through a synchronous getaddrinfo (see the top). */
static int resolve(evbus_client *c, const struct endpoint *ep, struct sockaddr_storage *ss,
                   char *err, size_t err_len)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(ep->host, ep->port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(ep->host, ep->port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    char port[8];
    snprintf(port, sizeof(port), "%d", ep->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(&c->loop, &gai, NULL, ep->host, port, &hints);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve %s: %s", ep->host, uv_strerror(rc));
        return EVBUS_ECONN;
    }
    /* Prefer IPv4: servers usually listen on 0.0.0.0 and "localhost" often lists ::1 first. */
    const struct addrinfo *pick = gai.addrinfo;
    for (const struct addrinfo *ai = gai.addrinfo; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    if (pick == NULL || pick->ai_addrlen > sizeof(*ss)) {
        uv_freeaddrinfo(gai.addrinfo);
        snprintf(err, err_len, "cannot resolve %s: no address", ep->host);
        return EVBUS_ECONN;
    }
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(gai.addrinfo);
    return 0;
}

/* ------------------------------------------------------------------ queues */

static void q_push(struct req_queue *q, struct req *r)
{
    assert(r->q == NULL);
    r->prev = q->tail;
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->n++;
    r->q = q;
}

/* Puts a resend back into `unsent` before every request submitted after it (invariant 5). Resends
 * are old, so the walk from the head is short. */
static void q_insert_ordered(struct req_queue *q, struct req *r)
{
    assert(r->q == NULL);
    struct req *after = NULL;
    struct req *before = q->head;
    while (before && before->order < r->order) {
        after = before;
        before = before->next;
    }
    r->prev = after;
    r->next = before;
    if (after)
        after->next = r;
    else
        q->head = r;
    if (before)
        before->prev = r;
    else
        q->tail = r;
    q->n++;
    r->q = q;
}

static void q_remove(struct req *r)
{
    struct req_queue *q = r->q;
    if (q == NULL)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        q->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        q->tail = r->prev;
    q->n--;
    r->q = NULL;
    r->prev = r->next = NULL;
}

/* ---------------------------------------------------------------- requests */

/* Frees what a request owns; the struct itself is the caller's (a blocking call's stack, or the
 * heap for an async one, freed by dispatch). */
static void req_free(struct req *req)
{
    assert(req->q == NULL);
    free(req->body);
    free(req->results);
    if (req->has_reply)
        wire_release(evbus_Frame_fields, &req->reply);
}

/* Takes the request off its queue with its final status (errmsg already set when status != 0). */
static void req_complete(evbus_client *c, struct req *req, int status)
{
    q_remove(req);
    req->done = true;
    req->status = status;
    if (req->async)
        q_push(&c->done, req);
}

static void req_requeue(evbus_client *c, struct req *req, uint64_t not_before_ms)
{
    q_remove(req);
    req->id = 0;
    req->attempt_deadline_ms = 0;
    req->not_before_ms = not_before_ms;
    q_insert_ordered(&c->unsent, req);
}

static void req_submit(evbus_client *c, struct req *req)
{
    req->order = c->next_order++;
    q_push(&c->unsent, req);
}

/* Resent after a lost connection (the outcome of a write is then unknown, hence the dedup). */
static bool req_resend_on_loss(const struct req *req)
{
    return req->kind == REQ_READ || req->kind == REQ_NODE || req->kind == REQ_PUBLISH_IDEM;
}

static bool req_is_write(const struct req *req)
{
    return req->kind == REQ_WRITE || req->kind == REQ_PUBLISH_IDEM || req->kind == REQ_MEMBER;
}

/* Encodes `f` (id 0) as a request body and checks it fits a frame once the id is added. */
static int encode_body(evbus_client *c, const evbus_Frame *f, uint8_t **body, size_t *len)
{
    int rc = wire_encode_body(evbus_Frame_fields, f, body, len);
    if (rc == EVBUS_ENOMEM)
        return set_err(c, rc, "out of memory");
    if (rc != 0)
        return set_err(c, rc, "cannot encode %s", wire_body_name(f->which_body));
    if (*len + ID_FIELD_MAX_BYTES > c->max_frame_bytes) {
        size_t n = *len;
        free(*body);
        *body = NULL;
        return set_err(c, EVBUS_ETOOBIG, "%s request of %zu bytes exceeds the %u-byte frame limit",
                       wire_body_name(f->which_body), n, c->max_frame_bytes);
    }
    return 0;
}

static void req_init(evbus_client *c, struct req *req, pb_size_t request_tag, pb_size_t reply_tag,
                     enum req_kind kind)
{
    req->what = wire_body_name(request_tag);
    req->reply_tag = reply_tag;
    req->kind = kind;
    req->publish = request_tag == evbus_Frame_put_events_tag;
    req->deadline_ms = now_ms(c) + c->timeout_ms;
}

/* ------------------------------------------------------------- connection */

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *conn = h->data;
    wire_reader_free(&conn->rd);
    free(conn->addr);
    free(conn);
}

/* Closes without touching requests (callers deal with them first). */
static void conn_close(struct conn *conn)
{
    evbus_client *c = conn->c;
    assert(conn->state != CONN_CLOSED);
    conn->state = CONN_CLOSED;
    if (c->conn == conn) {
        c->conn = NULL;
        c->node_id = 0;
        c->switch_pending = false;
    }
    uv_close((uv_handle_t *)&conn->tcp, conn_close_cb);
}

/* A connect attempt that did not reach READY failed: move on in the list, back off per round. */
static void attempt_failed(evbus_client *c, bool from_redirect)
{
    if (!from_redirect)
        c->next_ep = (c->next_ep + 1) % c->n_eps;
    if (++c->failed_in_round >= c->n_eps) {
        c->failed_in_round = 0;
        c->connect_not_before_ms = now_ms(c) + backoff_ms(c, c->rounds_failed);
        if (c->rounds_failed < 16)
            c->rounds_failed++;
    }
}

static void conn_fail(struct conn *conn, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The connection broke (or was refused): record why, close it, settle what was in flight. */
static void conn_fail(struct conn *conn, int code, const char *fmt, ...)
{
    evbus_client *c = conn->c;
    bool was_ready = conn->state == CONN_READY;
    char why[ERRMSG_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->conn_err = code;
    snprintf(c->conn_errmsg, sizeof(c->conn_errmsg), "%s: %s", conn->addr, why);
    bool fatal = code == EVBUS_EVERSION || code == EVBUS_EAUTH;
    conn_close(conn);

    if (was_ready) {
        /* The server went away: try the next one first, without waiting. */
        if (!conn->from_redirect)
            c->next_ep = (c->next_ep + 1) % c->n_eps;
    } else {
        attempt_failed(c, conn->from_redirect);
    }

    /* A broken transport is worth a resend; a protocol error is a server bug a resend would
     * hit again, so it is reported with its own code. */
    bool transport = code == EVBUS_ECONN || code == EVBUS_ETIMEDOUT;
    int req_code = transport ? EVBUS_ECONN : code;
    bool async_failed = false;
    uint64_t now = now_ms(c);
    struct req *req = c->inflight.head;
    while (req) {
        struct req *next = req->next;
        bool write = req_is_write(req);
        if (transport && req_resend_on_loss(req)) {
            if (write) {
                /* Kept for the deadline's message: this attempt may have been stored. */
                req->outcome_unknown = true;
                req->last_err = req_code;
                req_set_err(req, req_code, "connection to %s lost before the %s answer (%s)",
                            conn->addr, req->what, why);
            }
            req_requeue(c, req, now);
        } else {
            req_set_err(req, req_code, "connection to %s lost before the %s answer (%s)%s",
                        conn->addr, req->what, why, write ? "; outcome unknown" : "");
            req_complete(c, req, req_code);
            async_failed |= req->async;
        }
        req = next;
    }
    if (async_failed)
        c->async_losses++;
    if (fatal) {
        /* Hello refused for good: nothing queued can succeed. */
        while ((req = c->unsent.head) != NULL) {
            req_set_err(req, code, "%s", c->conn_errmsg);
            req_complete(c, req, code);
        }
    }
}

static void write_cb(uv_write_t *w, int status)
{
    struct write_buf *wb = (struct write_buf *)w;
    struct conn *conn = w->handle->data;
    free(wb);
    /* UV_ECANCELED: we closed the handle ourselves; the conn is already settled. */
    if (status < 0 && status != UV_ECANCELED && conn->state != CONN_CLOSED)
        conn_fail(conn, EVBUS_ECONN, "write: %s", uv_strerror(status));
}

/* Writes one frame: header, the id field when id != 0, then `body`. */
static int conn_write(struct conn *conn, uint64_t id, const uint8_t *body, size_t body_len)
{
    uint8_t idf[ID_FIELD_MAX_BYTES];
    size_t id_len = 0;
    if (id != 0) {
        idf[id_len++] = 0x08; /* field 1, varint */
        do {
            uint8_t b = id & 0x7f;
            id >>= 7;
            idf[id_len++] = (uint8_t)(id ? b | 0x80 : b);
        } while (id);
    }
    size_t frame_len = id_len + body_len;
    struct write_buf *wb = malloc(sizeof(*wb) + WIRE_HEADER_BYTES + frame_len);
    if (wb == NULL) {
        conn_fail(conn, EVBUS_ENOMEM, "out of memory");
        return EVBUS_ENOMEM;
    }
    wire_put_header(wb->data, (uint32_t)frame_len);
    memcpy(wb->data + WIRE_HEADER_BYTES, idf, id_len);
    memcpy(wb->data + WIRE_HEADER_BYTES + id_len, body, body_len);
    wb->len = WIRE_HEADER_BYTES + frame_len;
    uv_buf_t buf = uv_buf_init((char *)wb->data, (unsigned)wb->len);
    int rc = uv_write(&wb->w, (uv_stream_t *)&conn->tcp, &buf, 1, write_cb);
    if (rc != 0) {
        free(wb);
        conn_fail(conn, EVBUS_ECONN, "write: %s", uv_strerror(rc));
        return EVBUS_ECONN;
    }
    return 0;
}

static int conn_send(struct conn *conn, struct req *req)
{
    evbus_client *c = conn->c;
    uint64_t id = c->next_id++;
    int rc = conn_write(conn, id, req->body, req->body_len);
    if (rc != 0)
        return rc;
    q_remove(req);
    req->id = id;
    if (req->kind == REQ_PUBLISH_IDEM)
        req->attempt_deadline_ms = uv_now(&c->loop) + c->attempt_ms;
    q_push(&c->inflight, req);
    return 0;
}

static void on_hello_frame(struct conn *conn, evbus_Frame *f)
{
    evbus_client *c = conn->c;
    if (f->id != HELLO_ID) {
        conn_fail(conn, EVBUS_EPROTO, "answer with id %llu before the Hello reply",
                  (unsigned long long)f->id);
        return;
    }
    if (f->which_body == evbus_Frame_error_tag) {
        int code = f->body.error.code < 0 ? f->body.error.code : EVBUS_EPROTO;
        conn_fail(conn, code, "Hello refused: %s (%s)", nz(f->body.error.message),
                  evbus_errname(code));
        return;
    }
    if (f->which_body != evbus_Frame_hello_reply_tag) {
        conn_fail(conn, EVBUS_EPROTO, "%s in answer to Hello", wire_body_name(f->which_body));
        return;
    }
    uint32_t version = f->body.hello_reply.protocol_version;
    if (version != 0 && version != EVBUS_PROTOCOL_VERSION) {
        conn_fail(conn, EVBUS_EVERSION, "server speaks protocol %u, this client %u", version,
                  EVBUS_PROTOCOL_VERSION);
        return;
    }
    conn->state = CONN_READY;
    c->node_id = f->body.hello_reply.node_id;
    c->failed_in_round = 0;
    c->rounds_failed = 0;
    c->connect_not_before_ms = 0;
    c->conn_err = 0;
    c->conn_errmsg[0] = '\0';
}

static struct req *inflight_find(evbus_client *c, uint64_t id)
{
    /* Answers mostly come in order, so the oldest request is the usual match. */
    for (struct req *r = c->inflight.head; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

/* Whether a server error is retried for this kind of request (the table at the top). */
static bool error_retried(const struct req *req, int code)
{
    switch (code) {
    case EVBUS_ENOTLEADER:
    case EVBUS_ENOLEADER: return req->kind != REQ_NODE;
    case EVBUS_EBUSY: return req->kind != REQ_MEMBER;
    case EVBUS_EUNAVAIL: return req->kind == REQ_READ || req->kind == REQ_PUBLISH_IDEM;
    case EVBUS_EBACKFILL: return req->kind == REQ_READ;
    default: return false;
    }
}

static void on_error_reply(struct conn *conn, struct req *req, const evbus_ErrorReply *e)
{
    evbus_client *c = conn->c;
    int code = e->code;
    uint64_t now = now_ms(c);
    if (code >= 0) {
        req_set_err(req, EVBUS_EPROTO, "%s answered with error code %d", req->what, code);
        req_complete(c, req, EVBUS_EPROTO);
        return;
    }
    const char *msg = e->message && e->message[0] ? e->message : evbus_strerror(code);
    /* EUNAVAIL on a write: leadership was lost with the entry proposed, it may still commit. */
    bool unknown = code == EVBUS_EUNAVAIL && req_is_write(req);
    req_set_err(req, code, "%s%s", msg,
                unknown && strstr(msg, "outcome") == NULL ? "; outcome unknown" : "");
    if (unknown)
        req->outcome_unknown = true;
    if (!error_retried(req, code)) {
        req_complete(c, req, code);
        return;
    }
    if (code == EVBUS_ENOTLEADER && e->leader_addr && e->leader_addr[0] &&
        strcmp(e->leader_addr, conn->addr) != 0 && req->redirects < MAX_REDIRECTS) {
        struct endpoint ep;
        char err[128];
        if (endpoint_parse(e->leader_addr, strlen(e->leader_addr), &ep, err, sizeof(err)) == 0) {
            endpoint_free(&c->redirect);
            c->redirect = ep;
            c->switch_pending = true;
            /* The first hint is followed at once; during a failover a hint can name the leader
             * that just died, so the next ones wait for the election a little longer each. */
            uint64_t delay_ms = req->redirects ? backoff_ms(c, req->redirects - 1) : 0;
            req->redirects++;
            req->last_err = code;
            req_requeue(c, req, now + delay_ms);
            return;
        }
    }
    /* Retry later; a busy server is asked again, the others may know less than their peers
     * (partitioned away, still electing, no longer leader, backfilling), so try the next. */
    if (code != EVBUS_EBUSY && c->n_eps > 1)
        c->switch_pending = true;
    req->last_err = code;
    req_requeue(c, req, now + backoff_ms(c, req->retries++));
}

static void on_ready_frame(struct conn *conn, evbus_Frame *f)
{
    evbus_client *c = conn->c;
    if (f->id == 0)
        return; /* a server push: none is defined yet */
    struct req *req = inflight_find(c, f->id);
    if (req == NULL)
        return; /* answer to an attempt we gave up on */
    if (f->which_body == evbus_Frame_error_tag) {
        on_error_reply(conn, req, &f->body.error);
        return;
    }
    if (f->which_body != req->reply_tag) {
        req_set_err(req, EVBUS_EPROTO, "%s answered with %s", req->what,
                    wire_body_name(f->which_body));
        req_complete(c, req, EVBUS_EPROTO);
        return;
    }
    if (req->async) {
        /* Convert now: the frame is released on return and the callback runs later. */
        const evbus_PutEventsReply *rep = &f->body.put_events_reply;
        if (rep->entries_count != req->n_entries) {
            req_set_err(req, EVBUS_EPROTO, "PutEvents answer has %u results for %zu entries",
                        (unsigned)rep->entries_count, req->n_entries);
            req_complete(c, req, EVBUS_EPROTO);
            return;
        }
        req->results = calloc(req->n_entries, sizeof(*req->results));
        if (req->results == NULL) {
            req_set_err(req, EVBUS_ENOMEM, "out of memory");
            req_complete(c, req, EVBUS_ENOMEM);
            return;
        }
        for (size_t i = 0; i < req->n_entries; i++) {
            const evbus_PutEventsResult *e = &rep->entries[i];
            evbus_put_result *r = &req->results[i];
            r->code = e->error_code;
            snprintf(r->message, sizeof(r->message), "%s",
                     e->error_message ? e->error_message
                                      : (e->error_code ? evbus_strerror(e->error_code) : ""));
            r->partition = e->partition;
            r->offset = e->offset;
            snprintf(r->event_id, sizeof(r->event_id), "%s", nz(e->event_id));
        }
        req_complete(c, req, 0);
        return;
    }
    req->reply = *f;
    req->has_reply = true;
    memset(f, 0, sizeof(*f)); /* ownership moved to the request */
    req_complete(c, req, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *conn = h->data;
    (void)suggested;
    *buf = uv_buf_init(conn->rbuf, sizeof(conn->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *conn = s->data;
    (void)buf;
    if (conn->state == CONN_CLOSED)
        return;
    if (nread == UV_EOF) {
        conn_fail(conn, EVBUS_ECONN, "connection closed by the server");
        return;
    }
    if (nread < 0) {
        conn_fail(conn, EVBUS_ECONN, "read: %s", uv_strerror((int)nread));
        return;
    }
    if (wire_reader_feed(&conn->rd, conn->rbuf, (size_t)nread) != 0) {
        conn_fail(conn, EVBUS_ENOMEM, "out of memory");
        return;
    }
    for (;;) {
        const uint8_t *body;
        size_t len;
        int rc = wire_reader_next(&conn->rd, &body, &len);
        if (rc == 0)
            return;
        if (rc < 0) {
            conn_fail(conn, EVBUS_EPROTO, "frame over the %u-byte limit", conn->rd.max_frame);
            return;
        }
        evbus_Frame f = evbus_Frame_init_zero;
        char err[128];
        if (wire_decode(evbus_Frame_fields, body, len, &f, err, sizeof(err)) != 0) {
            conn_fail(conn, EVBUS_EPROTO, "%s", err);
            return;
        }
        if (conn->state == CONN_HELLO)
            on_hello_frame(conn, &f);
        else
            on_ready_frame(conn, &f);
        wire_release(evbus_Frame_fields, &f);
        if (conn->state == CONN_CLOSED)
            return;
    }
}

static void connect_cb(uv_connect_t *creq, int status)
{
    struct conn *conn = creq->data;
    evbus_client *c = conn->c;
    if (status == UV_ECANCELED || conn->state == CONN_CLOSED)
        return;
    if (status < 0) {
        conn_fail(conn, EVBUS_ECONN, "connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb);
    if (rc != 0) {
        conn_fail(conn, EVBUS_ECONN, "read: %s", uv_strerror(rc));
        return;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_hello_tag;
    f.body.hello.protocol_version = EVBUS_PROTOCOL_VERSION;
    f.body.hello.client_name = c->client_name;
    f.body.hello.auth_token = c->auth_token;
    uint8_t *body = NULL;
    size_t len = 0;
    rc = wire_encode_body(evbus_Frame_fields, &f, &body, &len);
    if (rc != 0) {
        conn_fail(conn, rc, "cannot encode Hello");
        return;
    }
    conn->state = CONN_HELLO;
    conn_write(conn, HELLO_ID, body, len);
    free(body);
}

/* Starts a connect attempt to the redirect target if any, else the next server of the list. */
static void conn_start(evbus_client *c)
{
    struct endpoint *ep = &c->eps[c->next_ep];
    bool from_redirect = false;
    struct endpoint redirect = c->redirect;
    if (redirect.addr != NULL) {
        memset(&c->redirect, 0, sizeof(c->redirect));
        ep = &redirect;
        from_redirect = true;
    }
    char err[ERRMSG_BYTES / 2];
    struct sockaddr_storage ss;
    struct conn *conn = NULL;
    int rc = resolve(c, ep, &ss, err, sizeof(err));
    if (rc != 0)
        goto fail;
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL || (conn->addr = strdup(ep->addr)) == NULL) {
        rc = EVBUS_ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    conn->c = c;
    conn->from_redirect = from_redirect;
    conn->deadline_ms = now_ms(c) + CONNECT_ATTEMPT_MS;
    wire_reader_init(&conn->rd, c->max_frame_bytes);
    rc = uv_tcp_init(&c->loop, &conn->tcp);
    if (rc != 0) {
        snprintf(err, sizeof(err), "socket: %s", uv_strerror(rc));
        rc = EVBUS_ECONN;
        goto fail;
    }
    conn->tcp.data = conn;
    conn->connect_req.data = conn;
    conn->state = CONN_CONNECTING;
    c->conn = conn;
    rc = uv_tcp_connect(&conn->connect_req, &conn->tcp, (const struct sockaddr *)&ss, connect_cb);
    if (rc != 0) {
        conn_fail(conn, EVBUS_ECONN, "connect: %s", uv_strerror(rc));
        goto out;
    }
    goto out;

fail:
    c->conn_err = rc;
    snprintf(c->conn_errmsg, sizeof(c->conn_errmsg), "%s: %s", ep->addr, err);
    if (conn) {
        free(conn->addr);
        wire_reader_free(&conn->rd);
        free(conn);
    }
    attempt_failed(c, from_redirect);
out:
    endpoint_free(&redirect);
}

/* --------------------------------------------------------------- the loop */

/* Whether publishes must wait because the idempotent ones in flight reached the cap. */
static bool idem_window_full(evbus_client *c)
{
    if (!c->idempotent)
        return false;
    size_t n = 0;
    for (struct req *r = c->inflight.head; r; r = r->next)
        n += r->kind == REQ_PUBLISH_IDEM;
    return n >= MAX_INFLIGHT_IDEM;
}

/* Status of a request whose deadline passed. */
static void req_expire(evbus_client *c, struct req *req)
{
    bool no_conn = c->conn_err != 0 && (c->conn == NULL || c->conn->state == CONN_CONNECTING);
    if (req->q == &c->inflight) {
        req_set_err(req, EVBUS_ETIMEDOUT, "no answer to %s within %u ms%s", req->what,
                    c->timeout_ms, req_is_write(req) ? "; outcome unknown" : "");
        req_complete(c, req, EVBUS_ETIMEDOUT);
    } else if (req->outcome_unknown) {
        /* An earlier attempt may have been stored: never report a code saying nothing was. */
        char last[ERRMSG_BYTES / 2];
        snprintf(last, sizeof(last), "%.200s", req->errmsg);
        int code = no_conn ? EVBUS_ECONN : EVBUS_ETIMEDOUT;
        req_set_err(req, code,
                    "%s not acknowledged within %u ms, outcome unknown (last: %s%s%.200s)",
                    req->what, c->timeout_ms, last, no_conn ? "; then " : "",
                    no_conn ? c->conn_errmsg : "");
        req_complete(c, req, code);
    } else if (req->last_err != 0) {
        /* errmsg still holds the server's words for last_err. */
        req_complete(c, req, req->last_err);
    } else if (no_conn) {
        req_set_err(req, EVBUS_ECONN, "no connection within %u ms (last error: %s)", c->timeout_ms,
                    c->conn_errmsg);
        req_complete(c, req, EVBUS_ECONN);
    } else {
        req_set_err(req, EVBUS_ETIMEDOUT, "%s not sent within %u ms: no connection ready",
                    req->what, c->timeout_ms);
        req_complete(c, req, EVBUS_ETIMEDOUT);
    }
}

/*
 * Moves everything forward that can move without waiting: expires requests,
 * gives up a slow connect, switches server, connects, sends. Called between
 * loop turns, never from a libuv callback.
 */
static void pump(evbus_client *c)
{
    uint64_t now = now_ms(c);
    struct req *req;
    struct req *next;

    for (req = c->unsent.head; req; req = next) {
        next = req->next;
        if (now >= req->deadline_ms)
            req_expire(c, req);
    }
    for (req = c->inflight.head; req; req = next) {
        next = req->next;
        if (now >= req->deadline_ms) {
            req_expire(c, req);
        } else if (req->attempt_deadline_ms != 0 && now >= req->attempt_deadline_ms) {
            /* The server or the path to it may be gone without the socket noticing: resend
             * after a reconnect (the switch waits for the rest in flight). */
            req->outcome_unknown = true;
            req->last_err = EVBUS_ETIMEDOUT;
            req_set_err(req, EVBUS_ETIMEDOUT, "no answer to %s from %s within %u ms", req->what,
                        c->conn ? c->conn->addr : "?", c->attempt_ms);
            req_requeue(c, req, now);
            c->switch_pending = true;
        }
    }
    if (c->conn && c->conn->state != CONN_READY && now >= c->conn->deadline_ms)
        conn_fail(c->conn, EVBUS_ETIMEDOUT, "no %s within %u ms",
                  c->conn->state == CONN_CONNECTING ? "connection" : "Hello answer",
                  CONNECT_ATTEMPT_MS);
    if (c->conn && c->conn->state == CONN_READY && c->switch_pending && c->inflight.n == 0) {
        bool rotate = c->redirect.addr == NULL && !c->conn->from_redirect;
        conn_close(c->conn);
        if (rotate)
            c->next_ep = (c->next_ep + 1) % c->n_eps;
    }
    if (c->conn == NULL && (c->unsent.n > 0 || c->want_conn) && now >= c->connect_not_before_ms)
        conn_start(c);
    if (c->conn && c->conn->state == CONN_READY && !c->switch_pending) {
        struct conn *conn = c->conn;
        /* A publish waiting for its backoff holds back the later ones, as does a full window. */
        bool publish_held = idem_window_full(c);
        for (req = c->unsent.head; req && conn->state == CONN_READY; req = next) {
            next = req->next;
            if (req->publish && publish_held)
                continue;
            if (req->not_before_ms > now) {
                publish_held |= req->publish;
                continue;
            }
            if (conn_send(conn, req) != 0)
                break;
            if (req->publish && idem_window_full(c))
                publish_held = true;
        }
    }
}

/* When pump() next has something to do, capped by `limit_ms`. */
static uint64_t next_wake(evbus_client *c, uint64_t now, uint64_t limit_ms)
{
    uint64_t wake = limit_ms;
    bool can_send = c->conn && c->conn->state == CONN_READY && !c->switch_pending;
    bool publish_held = idem_window_full(c); /* as in pump(): a held publish is no reason to wake */
    for (struct req *r = c->unsent.head; r; r = r->next) {
        if (r->deadline_ms < wake)
            wake = r->deadline_ms;
        if (!can_send || (r->publish && publish_held))
            continue;
        if (r->not_before_ms < wake)
            wake = r->not_before_ms;
        if (r->not_before_ms > now)
            publish_held |= r->publish;
    }
    for (struct req *r = c->inflight.head; r; r = r->next) {
        if (r->deadline_ms < wake)
            wake = r->deadline_ms;
        if (r->attempt_deadline_ms != 0 && r->attempt_deadline_ms < wake)
            wake = r->attempt_deadline_ms;
    }
    if (c->conn == NULL && (c->unsent.n > 0 || c->want_conn) && c->connect_not_before_ms < wake)
        wake = c->connect_not_before_ms;
    if (c->conn && c->conn->state != CONN_READY && c->conn->deadline_ms < wake)
        wake = c->conn->deadline_ms;
    return wake;
}

static void timer_cb(uv_timer_t *t)
{
    (void)t; /* only there to bound uv_run */
}

/* One loop turn: waits for I/O at most until pump() has work or `limit_ms`. */
static void turn(evbus_client *c, uint64_t limit_ms)
{
    uint64_t now = now_ms(c);
    uint64_t wake = next_wake(c, now, limit_ms);
    if (wake <= now) {
        uv_run(&c->loop, UV_RUN_NOWAIT);
        return;
    }
    /* Repeating: UV_RUN_ONCE runs due timers before it polls, and a one-shot timer that fired
     * there (the clock crossed a millisecond since now_ms) would leave the poll unbounded. */
    uv_timer_start(&c->timer, timer_cb, wake - now, wake - now);
    uv_run(&c->loop, UV_RUN_ONCE);
    uv_timer_stop(&c->timer);
}

/* Runs the callbacks of completed async requests. Returns how many ran. */
static int dispatch(evbus_client *c)
{
    int n = 0;
    struct req *req;
    while ((req = c->done.head) != NULL) {
        q_remove(req);
        if (req->status != 0)
            snprintf(c->errmsg, sizeof(c->errmsg), "%s", req->errmsg);
        c->n_async--;
        c->cb_depth++;
        req->cb(req->arg, req->status, req->status == 0 ? req->results : NULL, req->n_entries);
        c->cb_depth--;
        req_free(req);
        free(req);
        n++;
    }
    return n;
}

/* Runs a blocking request (body encoded, on no queue) until it is done. */
static int wait_req(evbus_client *c, struct req *req)
{
    if (c->closing)
        return set_err(c, EVBUS_ECLOSED, "client is being destroyed");
    struct sigpipe_guard guard;
    sigpipe_block(&guard);
    req_submit(c, req);
    for (;;) {
        dispatch(c);
        pump(c);
        if (req->done)
            break;
        turn(c, req->deadline_ms);
    }
    sigpipe_unblock(&guard);
    assert(req->q == NULL);
    if (req->status != 0)
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", req->errmsg);
    return req->status;
}

/* Sends a blocking request and waits for it. On 0 the answer is moved into *reply. */
static int call(evbus_client *c, const evbus_Frame *f, pb_size_t reply_tag, enum req_kind kind,
                evbus_Frame *reply)
{
    struct req req;
    memset(&req, 0, sizeof(req));
    int rc = encode_body(c, f, &req.body, &req.body_len);
    if (rc != 0)
        return rc;
    req_init(c, &req, f->which_body, reply_tag, kind);
    rc = wait_req(c, &req);
    if (rc == 0) {
        *reply = req.reply;
        req.has_reply = false;
    }
    req_free(&req);
    return rc;
}

/* -------------------------------------------------------------- lifecycle */

void evbus_client_options_init(evbus_client_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->client_name = DEFAULT_CLIENT_NAME;
    opts->timeout_ms = DEFAULT_TIMEOUT_MS;
    opts->max_frame_bytes = WIRE_DEFAULT_MAX_FRAME;
    opts->idempotent = 1;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A random non-zero producer id: two clients sharing one would dedup each other's publishes. */
static uint64_t producer_id_new(void)
{
    uint64_t id = 0;
    unsigned salt = 0;
    while (id == 0) {
        ssize_t n = getrandom(&id, sizeof(id), 0);
        if (n == (ssize_t)sizeof(id))
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        /* No getrandom (kernel before 3.17): clock, pid and an address, mixed. */
        id = splitmix64(uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&id ^
                        salt++);
    }
    return id;
}

static void client_free(evbus_client *c, bool loop_ready)
{
    if (loop_ready) {
        if (c->conn)
            conn_close(c->conn);
        uv_close((uv_handle_t *)&c->timer, NULL);
        /* Lets close callbacks (and cancelled writes) run so every handle's memory is back. */
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
    }
    for (size_t i = 0; i < c->n_eps; i++)
        endpoint_free(&c->eps[i]);
    free(c->eps);
    endpoint_free(&c->redirect);
    free(c->client_name);
    free(c->auth_token);
    free(c);
}

int evbus_client_create(const evbus_client_options *opts, evbus_client **out)
{
    if (out == NULL)
        return EVBUS_EINVAL;
    *out = NULL;
    if (opts == NULL || opts->servers == NULL || opts->servers[0] == '\0')
        return EVBUS_EINVAL;

    struct sigpipe_guard guard;
    bool loop_ready = false;
    int rc;
    evbus_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return EVBUS_ENOMEM;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->attempt_ms = c->timeout_ms / 3 > ATTEMPT_MIN_MS ? c->timeout_ms / 3 : ATTEMPT_MIN_MS;
    c->idempotent = opts->idempotent != 0;
    if (c->idempotent)
        c->producer_id = producer_id_new();
    c->next_sequence = 1;
    c->max_frame_bytes = opts->max_frame_bytes ? opts->max_frame_bytes : WIRE_DEFAULT_MAX_FRAME;
    c->next_id = HELLO_ID + 1;
    c->client_name = strdup(opts->client_name ? opts->client_name : DEFAULT_CLIENT_NAME);
    c->auth_token = opts->auth_token ? strdup(opts->auth_token) : NULL;
    if (c->client_name == NULL || (opts->auth_token && c->auth_token == NULL)) {
        rc = EVBUS_ENOMEM;
        goto fail;
    }
    rc = parse_servers(c, opts->servers);
    if (rc != 0)
        goto fail;
    rc = uv_loop_init(&c->loop);
    if (rc != 0) {
        rc = EVBUS_ENOMEM;
        goto fail;
    }
    uv_timer_init(&c->loop, &c->timer);
    loop_ready = true;
    c->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 0x9e3779b97f4a7c15ull;

    sigpipe_block(&guard);
    uint64_t deadline = now_ms(c) + c->timeout_ms;
    c->want_conn = true;
    for (;;) {
        pump(c);
        if (c->conn && c->conn->state == CONN_READY) {
            rc = 0;
            break;
        }
        if (c->conn == NULL && (c->conn_err == EVBUS_EVERSION || c->conn_err == EVBUS_EAUTH)) {
            rc = c->conn_err;
            break;
        }
        if (now_ms(c) >= deadline) {
            rc = c->conn && c->conn->state == CONN_HELLO ? EVBUS_ETIMEDOUT
                 : c->conn_err                           ? EVBUS_ECONN
                                                         : EVBUS_ETIMEDOUT;
            break;
        }
        turn(c, deadline);
    }
    c->want_conn = false;
    sigpipe_unblock(&guard);
    if (rc != 0)
        goto fail;
    *out = c;
    return 0;

fail:
    client_free(c, loop_ready);
    return rc;
}

void evbus_client_destroy(evbus_client *c)
{
    if (c == NULL)
        return;
    /* A callback runs while its caller still uses the client. */
    assert(c->cb_depth == 0);
    struct sigpipe_guard guard;
    sigpipe_block(&guard);
    c->closing = true;
    /* Answers already here are delivered as they are; the rest is cancelled. */
    dispatch(c);
    struct req *req;
    while ((req = c->inflight.head) != NULL || (req = c->unsent.head) != NULL) {
        req_set_err(req, EVBUS_ECANCELED, "client destroyed");
        req_complete(c, req, EVBUS_ECANCELED);
    }
    dispatch(c);
    client_free(c, true);
    sigpipe_unblock(&guard);
}

const char *evbus_client_errmsg(const evbus_client *c)
{
    return c ? c->errmsg : "";
}

uint32_t evbus_client_node_id(const evbus_client *c)
{
    return c && c->conn && c->conn->state == CONN_READY ? c->node_id : 0;
}

const char *evbus_client_server(const evbus_client *c)
{
    return c && c->conn && c->conn->state == CONN_READY ? c->conn->addr : "";
}

size_t evbus_client_inflight(const evbus_client *c)
{
    return c ? c->n_async : 0;
}

/* ---------------------------------------------------------------- publish */

static int check_bus(evbus_client *c, const char *bus)
{
    if (bus == NULL || bus[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "bus name is empty");
    return 0;
}

/* Validates a publish and encodes it as a request body. */
static int encode_put(evbus_client *c, const char *bus, const evbus_entry *entries, size_t n,
                      uint64_t sequence, uint8_t **body, size_t *body_len)
{
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    if (entries == NULL)
        return set_err(c, EVBUS_EINVAL, "entries is NULL");
    if (n < 1 || n > EVBUS_MAX_ENTRIES_PER_PUT)
        return set_err(c, EVBUS_EINVAL, "%zu entries: a publish carries 1 to %d", n,
                       EVBUS_MAX_ENTRIES_PER_PUT);
    for (size_t i = 0; i < n; i++) {
        const evbus_entry *e = &entries[i];
        if (e->source == NULL || e->detail_type == NULL || e->detail == NULL)
            return set_err(c, EVBUS_EINVAL,
                           "entry %zu: source, detail_type and detail are required", i);
        if (e->n_resources > 0 && e->resources == NULL)
            return set_err(c, EVBUS_EINVAL, "entry %zu: resources is NULL", i);
        if (e->n_resources > (pb_size_t)-1)
            return set_err(c, EVBUS_EINVAL, "entry %zu: too many resources", i);
        for (size_t j = 0; j < e->n_resources; j++)
            if (e->resources[j] == NULL)
                return set_err(c, EVBUS_EINVAL, "entry %zu: resource %zu is NULL", i, j);
    }
    evbus_PutEventsEntry *pe = calloc(n, sizeof(*pe));
    if (pe == NULL)
        return set_err(c, EVBUS_ENOMEM, "out of memory");
    /* The Frame borrows the caller's strings: encoded here, never released with pb_release. */
    for (size_t i = 0; i < n; i++) {
        const evbus_entry *e = &entries[i];
        pe[i].source = (char *)e->source;
        pe[i].detail_type = (char *)e->detail_type;
        pe[i].detail = (char *)e->detail;
        pe[i].resources_count = (pb_size_t)e->n_resources;
        pe[i].resources = e->n_resources ? (char **)e->resources : NULL;
        pe[i].time = (char *)e->time;
        pe[i].partition_key = (char *)e->partition_key;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_put_events_tag;
    f.body.put_events.bus = (char *)bus;
    f.body.put_events.entries_count = (pb_size_t)n;
    f.body.put_events.entries = pe;
    f.body.put_events.producer_id = sequence ? c->producer_id : 0;
    f.body.put_events.sequence = sequence;
    rc = encode_body(c, &f, body, body_len);
    free(pe);
    return rc;
}

int evbus_put_events(evbus_client *c, const char *bus, const evbus_entry *entries, size_t n,
                     evbus_put_result *results, size_t *failed, uint64_t *commit_index)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (results == NULL)
        return set_err(c, EVBUS_EINVAL, "results is NULL");
    struct req req;
    memset(&req, 0, sizeof(req));
    /* The sequence is taken only by a request that is submitted (invariant 6). */
    uint64_t sequence = c->idempotent ? c->next_sequence : 0;
    int rc = encode_put(c, bus, entries, n, sequence, &req.body, &req.body_len);
    if (rc != 0)
        return rc;
    if (sequence)
        c->next_sequence++;

    req_init(c, &req, evbus_Frame_put_events_tag, evbus_Frame_put_events_reply_tag,
             c->idempotent ? REQ_PUBLISH_IDEM : REQ_WRITE);
    rc = wait_req(c, &req);
    if (rc != 0)
        goto out;
    const evbus_PutEventsReply *rep = &req.reply.body.put_events_reply;
    if (rep->entries_count != n) {
        rc = set_err(c, EVBUS_EPROTO, "PutEvents answer has %u results for %zu entries",
                     (unsigned)rep->entries_count, n);
        goto out;
    }
    size_t n_failed = 0;
    for (size_t i = 0; i < n; i++) {
        const evbus_PutEventsResult *e = &rep->entries[i];
        evbus_put_result *r = &results[i];
        memset(r, 0, sizeof(*r));
        r->code = e->error_code;
        snprintf(r->message, sizeof(r->message), "%s",
                 e->error_message ? e->error_message
                                  : (e->error_code ? evbus_strerror(e->error_code) : ""));
        r->partition = e->partition;
        r->offset = e->offset;
        snprintf(r->event_id, sizeof(r->event_id), "%s", nz(e->event_id));
        if (r->code != 0)
            n_failed++;
    }
    if (failed)
        *failed = n_failed;
    if (commit_index)
        *commit_index = rep->commit_index;
out:
    req_free(&req);
    return rc;
}

int evbus_put_events_async(evbus_client *c, const char *bus, const evbus_entry *entries, size_t n,
                           evbus_put_cb cb, void *arg)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (cb == NULL)
        return set_err(c, EVBUS_EINVAL, "callback is NULL");
    if (c->closing)
        return set_err(c, EVBUS_ECLOSED, "client is being destroyed");
    struct req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return set_err(c, EVBUS_ENOMEM, "out of memory");
    uint64_t sequence = c->idempotent ? c->next_sequence : 0;
    int rc = encode_put(c, bus, entries, n, sequence, &req->body, &req->body_len);
    if (rc != 0) {
        free(req);
        return rc;
    }
    if (sequence)
        c->next_sequence++;
    req_init(c, req, evbus_Frame_put_events_tag, evbus_Frame_put_events_reply_tag,
             c->idempotent ? REQ_PUBLISH_IDEM : REQ_WRITE);
    req->async = true;
    req->cb = cb;
    req->arg = arg;
    req->n_entries = n;
    req_submit(c, req);
    c->n_async++;
    /* Write now when connected; otherwise the connect starts here and goes on in poll. The
     * callback itself always waits for poll or a blocking call, even if the request failed. */
    struct sigpipe_guard guard;
    sigpipe_block(&guard);
    pump(c);
    sigpipe_unblock(&guard);
    return 0;
}

int evbus_client_poll(evbus_client *c, uint32_t timeout_ms)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    struct sigpipe_guard guard;
    sigpipe_block(&guard);
    unsigned losses = c->async_losses;
    uint64_t deadline = now_ms(c) + timeout_ms;
    int n = dispatch(c);
    pump(c);
    n += dispatch(c);
    /* Always one turn, so even a 0 timeout takes the answers already received. */
    while (n == 0 && c->n_async > 0 && c->async_losses == losses) {
        turn(c, deadline);
        pump(c);
        n += dispatch(c);
        if (now_ms(c) >= deadline)
            break;
    }
    sigpipe_unblock(&guard);
    if (c->async_losses != losses) {
        if (c->errmsg[0] == '\0')
            snprintf(c->errmsg, sizeof(c->errmsg), "%s", c->conn_errmsg);
        return EVBUS_ECONN;
    }
    return n;
}

/* ------------------------------------------------------------------- read */

int evbus_read(evbus_client *c, const char *bus, uint32_t partition, uint64_t from_offset,
               uint32_t max_events, uint32_t max_bytes, evbus_read_result **out)
{
    return evbus_read_after(c, bus, partition, from_offset, max_events, max_bytes, 0, out);
}

int evbus_read_after(evbus_client *c, const char *bus, uint32_t partition, uint64_t from_offset,
                     uint32_t max_events, uint32_t max_bytes, uint64_t min_commit_index,
                     evbus_read_result **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;

    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_read_log_tag;
    f.body.read_log.bus = (char *)bus;
    f.body.read_log.partition = partition;
    f.body.read_log.from_offset = from_offset;
    f.body.read_log.max_events = max_events;
    f.body.read_log.max_bytes = max_bytes;
    f.body.read_log.min_commit_index = min_commit_index;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_read_log_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;

    const evbus_ReadLogReply *rep = &reply.body.read_log_reply;
    evbus_read_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->next_offset = rep->next_offset;
    r->first_offset = rep->first_offset;
    r->end_offset = rep->end_offset;
    if (rep->events_count > 0) {
        r->events = calloc(rep->events_count, sizeof(*r->events));
        if (r->events == NULL)
            goto nomem;
    }
    for (pb_size_t i = 0; i < rep->events_count; i++) {
        const evbus_LogEvent *le = &rep->events[i];
        size_t len = le->event ? strlen(le->event) : 0;
        char *json = malloc(len + 1);
        if (json == NULL)
            goto nomem;
        if (len)
            memcpy(json, le->event, len);
        json[len] = '\0';
        r->events[i].offset = le->offset;
        r->events[i].json = json;
        r->events[i].json_len = len;
        r->n_events++;
    }
    wire_release(evbus_Frame_fields, &reply);
    *out = r;
    return 0;

nomem:
    evbus_read_result_free(r);
    wire_release(evbus_Frame_fields, &reply);
    return set_err(c, EVBUS_ENOMEM, "out of memory");
}

void evbus_read_result_free(evbus_read_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_events; i++)
        free(r->events[i].json);
    free(r->events);
    free(r);
}

/* -------------------------------------------------------------- bus admin */

static int bus_info_copy(evbus_bus_info *dst, const evbus_BusInfo *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->name = strdup(nz(src->name));
    dst->created_time = strdup(nz(src->created_time));
    if (dst->name == NULL || dst->created_time == NULL)
        return EVBUS_ENOMEM;
    dst->partitions = src->partitions;
    dst->created_index = src->created_index;
    dst->events = src->events;
    if (src->partition_info_count > 0) {
        dst->partition_info = calloc(src->partition_info_count, sizeof(*dst->partition_info));
        if (dst->partition_info == NULL)
            return EVBUS_ENOMEM;
        dst->n_partition_info = src->partition_info_count;
        for (pb_size_t i = 0; i < src->partition_info_count; i++) {
            dst->partition_info[i].partition = src->partition_info[i].partition;
            dst->partition_info[i].first_offset = src->partition_info[i].first_offset;
            dst->partition_info[i].next_offset = src->partition_info[i].next_offset;
        }
    }
    return 0;
}

static void bus_info_clear(evbus_bus_info *b)
{
    free(b->name);
    free(b->created_time);
    free(b->partition_info);
}

/* A blocking admin call whose answer is only checked, not returned. */
static int call_admin(evbus_client *c, evbus_Frame *f, pb_size_t reply_tag, enum req_kind kind)
{
    evbus_Frame reply = evbus_Frame_init_zero;
    int rc = call(c, f, reply_tag, kind, &reply);
    if (rc == 0)
        wire_release(evbus_Frame_fields, &reply);
    return rc;
}

int evbus_bus_create(evbus_client *c, const char *name, uint32_t partitions)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    int rc = check_bus(c, name);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_create_bus_tag;
    f.body.create_bus.name = (char *)name;
    f.body.create_bus.partitions = partitions;
    return call_admin(c, &f, evbus_Frame_bus_reply_tag, REQ_WRITE);
}

int evbus_bus_delete(evbus_client *c, const char *name)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    int rc = check_bus(c, name);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_delete_bus_tag;
    f.body.delete_bus.name = (char *)name;
    return call_admin(c, &f, evbus_Frame_ok_tag, REQ_WRITE);
}

int evbus_bus_describe(evbus_client *c, const char *name, evbus_bus_info **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_bus(c, name);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_describe_bus_tag;
    f.body.describe_bus.name = (char *)name;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_bus_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    evbus_bus_info *b = NULL;
    if (!reply.body.bus_reply.has_bus) {
        rc = set_err(c, EVBUS_EPROTO, "DescribeBus answer without a bus");
        goto out;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL || bus_info_copy(b, &reply.body.bus_reply.bus) != 0) {
        evbus_bus_info_free(b);
        b = NULL;
        rc = set_err(c, EVBUS_ENOMEM, "out of memory");
        goto out;
    }
    *out = b;
out:
    wire_release(evbus_Frame_fields, &reply);
    return rc;
}

void evbus_bus_info_free(evbus_bus_info *b)
{
    if (b == NULL)
        return;
    bus_info_clear(b);
    free(b);
}

int evbus_bus_list(evbus_client *c, evbus_bus_info **out, size_t *n)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL || n == NULL)
        return set_err(c, EVBUS_EINVAL, "out or n is NULL");
    *out = NULL;
    *n = 0;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_list_buses_tag;
    evbus_Frame reply = evbus_Frame_init_zero;
    int rc = call(c, &f, evbus_Frame_list_buses_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    const evbus_ListBusesReply *rep = &reply.body.list_buses_reply;
    evbus_bus_info *buses = NULL;
    size_t count = 0;
    if (rep->buses_count > 0) {
        buses = calloc(rep->buses_count, sizeof(*buses));
        if (buses == NULL)
            goto nomem;
    }
    for (; count < rep->buses_count; count++) {
        if (bus_info_copy(&buses[count], &rep->buses[count]) != 0) {
            count++; /* the partial copy is freed with the others */
            goto nomem;
        }
    }
    wire_release(evbus_Frame_fields, &reply);
    *out = buses;
    *n = count;
    return 0;

nomem:
    evbus_bus_list_free(buses, count);
    wire_release(evbus_Frame_fields, &reply);
    return set_err(c, EVBUS_ENOMEM, "out of memory");
}

void evbus_bus_list_free(evbus_bus_info *buses, size_t n)
{
    if (buses == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        bus_info_clear(&buses[i]);
    free(buses);
}

/* ---------------------------------------------------------------- cluster */

/* Fills `dst` (zeroed); on ENOMEM what was copied is freed with node_status_clear. */
static int node_status_copy(evbus_node_status *dst, const evbus_NodeStatus *src)
{
    dst->node_id = src->node_id;
    dst->voter = src->voter;
    dst->leader = src->leader;
    dst->applied_index = src->applied_index;
    dst->commit_index = src->commit_index;
    dst->catching_up = src->catching_up;
    dst->term = src->term;
    dst->raft_addr = strdup(nz(src->raft_addr));
    dst->client_addr = strdup(nz(src->client_addr));
    dst->role = strdup(nz(src->role));
    if (dst->raft_addr == NULL || dst->client_addr == NULL || dst->role == NULL)
        return EVBUS_ENOMEM;
    return 0;
}

static void node_status_clear(evbus_node_status *n)
{
    free(n->raft_addr);
    free(n->client_addr);
    free(n->role);
}

int evbus_cluster_status_get(evbus_client *c, evbus_cluster_status **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_cluster_status_tag;
    evbus_Frame reply = evbus_Frame_init_zero;
    int rc = call(c, &f, evbus_Frame_cluster_status_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    const evbus_ClusterStatusReply *rep = &reply.body.cluster_status_reply;
    evbus_cluster_status *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto nomem;
    s->leader_id = rep->leader_id;
    s->term = rep->term;
    s->leader_addr = strdup(nz(rep->leader_addr));
    if (s->leader_addr == NULL)
        goto nomem;
    if (rep->nodes_count > 0) {
        s->nodes = calloc(rep->nodes_count, sizeof(*s->nodes));
        if (s->nodes == NULL)
            goto nomem;
    }
    for (pb_size_t i = 0; i < rep->nodes_count; i++) {
        s->n_nodes++; /* before the copy: a partial node is freed with the others */
        if (node_status_copy(&s->nodes[i], &rep->nodes[i]) != 0)
            goto nomem;
    }
    wire_release(evbus_Frame_fields, &reply);
    *out = s;
    return 0;

nomem:
    evbus_cluster_status_free(s);
    wire_release(evbus_Frame_fields, &reply);
    return set_err(c, EVBUS_ENOMEM, "out of memory");
}

void evbus_cluster_status_free(evbus_cluster_status *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_nodes; i++)
        node_status_clear(&s->nodes[i]);
    free(s->nodes);
    free(s->leader_addr);
    free(s);
}

int evbus_node_status_get(evbus_client *c, evbus_node_status **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_node_status_tag;
    evbus_Frame reply = evbus_Frame_init_zero;
    int rc = call(c, &f, evbus_Frame_node_status_reply_tag, REQ_NODE, &reply);
    if (rc != 0)
        return rc;
    evbus_node_status *n = NULL;
    if (!reply.body.node_status_reply.has_node) {
        rc = set_err(c, EVBUS_EPROTO, "NodeStatus answer without a node");
        goto out;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL || node_status_copy(n, &reply.body.node_status_reply.node) != 0) {
        evbus_node_status_free(n);
        n = NULL;
        rc = set_err(c, EVBUS_ENOMEM, "out of memory");
        goto out;
    }
    *out = n;
out:
    wire_release(evbus_Frame_fields, &reply);
    return rc;
}

void evbus_node_status_free(evbus_node_status *n)
{
    if (n == NULL)
        return;
    node_status_clear(n);
    free(n);
}

/* ------------------------------------------------------------- membership */

int evbus_cluster_add_node(evbus_client *c, uint32_t node_id, const char *raft_addr,
                           const char *client_addr)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (node_id == 0)
        return set_err(c, EVBUS_EINVAL, "node id 0 is not a valid id");
    if (raft_addr == NULL || raft_addr[0] == '\0' || client_addr == NULL || client_addr[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "a new node needs a Raft address and a client address");
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_add_node_tag;
    f.body.add_node.node_id = node_id;
    f.body.add_node.raft_addr = (char *)raft_addr;
    f.body.add_node.client_addr = (char *)client_addr;
    return call_admin(c, &f, evbus_Frame_ok_tag, REQ_MEMBER);
}

int evbus_cluster_remove_node(evbus_client *c, uint32_t node_id)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (node_id == 0)
        return set_err(c, EVBUS_EINVAL, "node id 0 is not a valid id");
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_remove_node_tag;
    f.body.remove_node.node_id = node_id;
    return call_admin(c, &f, evbus_Frame_ok_tag, REQ_MEMBER);
}

int evbus_cluster_transfer_leader(evbus_client *c, uint32_t node_id)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_transfer_leader_tag;
    f.body.transfer_leader.node_id = node_id;
    return call_admin(c, &f, evbus_Frame_ok_tag, REQ_MEMBER);
}

/* --------------------------------------------------------------- checksum */

int evbus_bus_checksum(evbus_client *c, const char *bus, evbus_checksum **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_checksum_tag;
    f.body.checksum.bus = (char *)bus;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_checksum_reply_tag, REQ_NODE, &reply);
    if (rc != 0)
        return rc;
    const evbus_ChecksumReply *rep = &reply.body.checksum_reply;
    evbus_checksum *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto nomem;
    s->node_id = rep->node_id;
    s->applied_index = rep->applied_index;
    if (rep->partitions_count > 0) {
        s->partitions = calloc(rep->partitions_count, sizeof(*s->partitions));
        if (s->partitions == NULL)
            goto nomem;
        s->n_partitions = rep->partitions_count;
    }
    for (pb_size_t i = 0; i < rep->partitions_count; i++) {
        const evbus_PartitionChecksum *src = &rep->partitions[i];
        evbus_partition_checksum *dst = &s->partitions[i];
        dst->partition = src->partition;
        dst->first_offset = src->first_offset;
        dst->next_offset = src->next_offset;
        dst->checksum = src->checksum;
        dst->events = src->events;
    }
    wire_release(evbus_Frame_fields, &reply);
    *out = s;
    return 0;

nomem:
    evbus_checksum_free(s);
    wire_release(evbus_Frame_fields, &reply);
    return set_err(c, EVBUS_ENOMEM, "out of memory");
}

void evbus_checksum_free(evbus_checksum *s)
{
    if (s == NULL)
        return;
    free(s->partitions);
    free(s);
}

/* ------------------------------------------------------------------ rules */

static int check_rule(evbus_client *c, const char *bus, const char *name)
{
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    if (name == NULL || name[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "rule name is empty");
    return 0;
}

static int rule_info_copy(evbus_rule_info *dst, const evbus_RuleInfo *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->bus = strdup(nz(src->bus));
    dst->name = strdup(nz(src->name));
    dst->pattern = strdup(nz(src->pattern));
    dst->description = strdup(nz(src->description));
    if (dst->bus == NULL || dst->name == NULL || dst->pattern == NULL || dst->description == NULL)
        return EVBUS_ENOMEM;
    dst->state =
        src->state == evbus_RuleState_RULE_DISABLED ? EVBUS_RULE_DISABLED : EVBUS_RULE_ENABLED;
    dst->rule_id = src->rule_id;
    dst->created_index = src->created_index;
    dst->updated_index = src->updated_index;
    dst->memory_bytes = src->memory_bytes;
    return 0;
}

static void rule_info_clear(evbus_rule_info *r)
{
    free(r->bus);
    free(r->name);
    free(r->pattern);
    free(r->description);
}

void evbus_rule_info_free(evbus_rule_info *r)
{
    if (r == NULL)
        return;
    rule_info_clear(r);
    free(r);
}

void evbus_rule_list_free(evbus_rule_info *rules, size_t n)
{
    if (rules == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        rule_info_clear(&rules[i]);
    free(rules);
}

/* A RuleReply answer into *out (when out is not NULL); releases the reply. */
static int rule_reply_take(evbus_client *c, evbus_Frame *reply, evbus_rule_info **out)
{
    int rc = 0;
    if (!reply->body.rule_reply.has_rule) {
        rc = set_err(c, EVBUS_EPROTO, "rule answer without a rule");
    } else if (out != NULL) {
        evbus_rule_info *r = calloc(1, sizeof(*r));
        if (r == NULL || rule_info_copy(r, &reply->body.rule_reply.rule) != 0) {
            evbus_rule_info_free(r);
            rc = set_err(c, EVBUS_ENOMEM, "out of memory");
        } else {
            *out = r;
        }
    }
    wire_release(evbus_Frame_fields, reply);
    return rc;
}

int evbus_rule_put(evbus_client *c, const char *bus, const char *name, const char *pattern,
                   const char *description, int disabled, evbus_rule_info **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out != NULL)
        *out = NULL;
    int rc = check_rule(c, bus, name);
    if (rc != 0)
        return rc;
    if (pattern == NULL || pattern[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "the event pattern is empty");
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_put_rule_tag;
    f.body.put_rule.bus = (char *)bus;
    f.body.put_rule.name = (char *)name;
    f.body.put_rule.pattern = (char *)pattern;
    f.body.put_rule.description = (char *)description;
    f.body.put_rule.disabled = disabled != 0;
    evbus_Frame reply = evbus_Frame_init_zero;
    /* Not idempotent: a resend after an unknown outcome could undo a later change. */
    rc = call(c, &f, evbus_Frame_rule_reply_tag, REQ_WRITE, &reply);
    if (rc != 0)
        return rc;
    return rule_reply_take(c, &reply, out);
}

/* Delete, enable, disable: one bus and one rule name, a write. */
static int rule_change(evbus_client *c, pb_size_t tag, const char *bus, const char *name)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    int rc = check_rule(c, bus, name);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = tag;
    pb_size_t reply_tag = evbus_Frame_rule_reply_tag;
    if (tag == evbus_Frame_delete_rule_tag) {
        f.body.delete_rule.bus = (char *)bus;
        f.body.delete_rule.name = (char *)name;
        reply_tag = evbus_Frame_ok_tag;
    } else if (tag == evbus_Frame_enable_rule_tag) {
        f.body.enable_rule.bus = (char *)bus;
        f.body.enable_rule.name = (char *)name;
    } else {
        f.body.disable_rule.bus = (char *)bus;
        f.body.disable_rule.name = (char *)name;
    }
    return call_admin(c, &f, reply_tag, REQ_WRITE);
}

int evbus_rule_delete(evbus_client *c, const char *bus, const char *name)
{
    return rule_change(c, evbus_Frame_delete_rule_tag, bus, name);
}

int evbus_rule_enable(evbus_client *c, const char *bus, const char *name)
{
    return rule_change(c, evbus_Frame_enable_rule_tag, bus, name);
}

int evbus_rule_disable(evbus_client *c, const char *bus, const char *name)
{
    return rule_change(c, evbus_Frame_disable_rule_tag, bus, name);
}

int evbus_rule_describe(evbus_client *c, const char *bus, const char *name, evbus_rule_info **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_rule(c, bus, name);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_describe_rule_tag;
    f.body.describe_rule.bus = (char *)bus;
    f.body.describe_rule.name = (char *)name;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_rule_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    return rule_reply_take(c, &reply, out);
}

/* Pages of ListRules: a bus holds at most 10,000 rules and every page at least one. */
#define RULE_LIST_MAX_PAGES 10001u

int evbus_rule_list(evbus_client *c, const char *bus, evbus_rule_info **out, size_t *n)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL || n == NULL)
        return set_err(c, EVBUS_EINVAL, "out or n is NULL");
    *out = NULL;
    *n = 0;
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    evbus_rule_info *rules = NULL;
    size_t count = 0, cap = 0;
    char *after = NULL; /* start_after of the next page (owned) */
    for (unsigned page = 0; page < RULE_LIST_MAX_PAGES; page++) {
        evbus_Frame f = evbus_Frame_init_zero;
        f.which_body = evbus_Frame_list_rules_tag;
        f.body.list_rules.bus = (char *)bus;
        f.body.list_rules.start_after = after;
        evbus_Frame reply = evbus_Frame_init_zero;
        rc = call(c, &f, evbus_Frame_list_rules_reply_tag, REQ_READ, &reply);
        if (rc != 0)
            goto fail;
        const evbus_ListRulesReply *rep = &reply.body.list_rules_reply;
        if (count + rep->rules_count > cap) {
            size_t ncap = cap ? cap : 16;
            while (ncap < count + rep->rules_count)
                ncap *= 2;
            evbus_rule_info *nr = realloc(rules, ncap * sizeof(*nr));
            if (nr == NULL) {
                wire_release(evbus_Frame_fields, &reply);
                goto nomem;
            }
            rules = nr;
            cap = ncap;
        }
        for (pb_size_t i = 0; i < rep->rules_count; i++) {
            count++; /* before the copy: a partial entry is freed with the others */
            if (rule_info_copy(&rules[count - 1], &rep->rules[i]) != 0) {
                wire_release(evbus_Frame_fields, &reply);
                goto nomem;
            }
        }
        free(after);
        after = NULL;
        bool more = rep->next_start_after && rep->next_start_after[0] && rep->rules_count > 0;
        if (more && (after = strdup(rep->next_start_after)) == NULL) {
            wire_release(evbus_Frame_fields, &reply);
            goto nomem;
        }
        wire_release(evbus_Frame_fields, &reply);
        if (!more) {
            *out = rules;
            *n = count;
            return 0;
        }
    }
    rc = set_err(c, EVBUS_EPROTO, "ListRules did not end after %u pages", RULE_LIST_MAX_PAGES);
    goto fail;
nomem:
    rc = set_err(c, EVBUS_ENOMEM, "out of memory");
fail:
    free(after);
    evbus_rule_list_free(rules, count);
    return rc;
}

int evbus_rule_test(evbus_client *c, const char *bus, const char *pattern, uint32_t partition,
                    uint64_t from_offset, uint32_t max_events, evbus_rule_test_result **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    if (pattern == NULL || pattern[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "the event pattern is empty");
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_test_rule_tag;
    f.body.test_rule.bus = (char *)bus;
    f.body.test_rule.pattern = (char *)pattern;
    f.body.test_rule.has_partition = partition != EVBUS_ALL_PARTITIONS;
    f.body.test_rule.partition = partition != EVBUS_ALL_PARTITIONS ? partition : 0;
    f.body.test_rule.from_offset = from_offset;
    f.body.test_rule.max_events = max_events;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_test_rule_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    const evbus_TestRuleReply *rep = &reply.body.test_rule_reply;
    evbus_rule_test_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->scanned = rep->scanned;
    if (rep->matches_count > 0 &&
        (r->matches = calloc(rep->matches_count, sizeof(*r->matches))) == NULL)
        goto nomem;
    for (pb_size_t i = 0; i < rep->matches_count; i++) {
        const evbus_LogEvent *le = &rep->matches[i];
        size_t len = le->event ? strlen(le->event) : 0;
        char *json = malloc(len + 1);
        if (json == NULL)
            goto nomem;
        if (len)
            memcpy(json, le->event, len);
        json[len] = '\0';
        r->matches[i].partition = le->partition;
        r->matches[i].offset = le->offset;
        r->matches[i].json = json;
        r->matches[i].json_len = len;
        r->n_matches++;
    }
    if (rep->partitions_count > 0 &&
        (r->partitions = calloc(rep->partitions_count, sizeof(*r->partitions))) == NULL)
        goto nomem;
    r->n_partitions = rep->partitions_count;
    for (pb_size_t i = 0; i < rep->partitions_count; i++) {
        r->partitions[i].partition = rep->partitions[i].partition;
        r->partitions[i].next_offset = rep->partitions[i].next_offset;
        r->partitions[i].end_offset = rep->partitions[i].end_offset;
    }
    wire_release(evbus_Frame_fields, &reply);
    *out = r;
    return 0;

nomem:
    evbus_rule_test_result_free(r);
    wire_release(evbus_Frame_fields, &reply);
    return set_err(c, EVBUS_ENOMEM, "out of memory");
}

void evbus_rule_test_result_free(evbus_rule_test_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_matches; i++)
        free(r->matches[i].json);
    free(r->matches);
    free(r->partitions);
    free(r);
}

/* ---------------------------------------------------------------- targets */

static int check_bus_rule(evbus_client *c, const char *bus, const char *rule, size_t n)
{
    int rc = check_rule(c, bus, rule);
    if (rc != 0)
        return rc;
    if (n == 0 || n > 5)
        return set_err(c, EVBUS_EINVAL, "give 1 to 5 targets (a rule has at most 5)");
    return 0;
}

void evbus_targets_result_free(evbus_targets_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->failed_count; i++) {
        free(r->failed[i].id);
        free(r->failed[i].message);
    }
    free(r->failed);
    free(r);
}

/* A TargetsResultReply into *out, or (out NULL) into the first failure's code; releases it. */
static int targets_result_take(evbus_client *c, evbus_Frame *reply, evbus_targets_result **out)
{
    const evbus_TargetsResultReply *rep = &reply->body.targets_result_reply;
    int rc = 0;
    if (out == NULL) {
        if (rep->failed_entries_count > 0)
            rc = set_err(c,
                         rep->failed_entries[0].error_code ? rep->failed_entries[0].error_code
                                                           : EVBUS_EPROTO,
                         "target '%s': %s", nz(rep->failed_entries[0].target_id),
                         nz(rep->failed_entries[0].error_message));
        wire_release(evbus_Frame_fields, reply);
        return rc;
    }
    evbus_targets_result *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->failed = calloc(rep->failed_entries_count ? rep->failed_entries_count : 1,
                                         sizeof(*r->failed))) == NULL) {
        free(r);
        wire_release(evbus_Frame_fields, reply);
        return set_err(c, EVBUS_ENOMEM, "out of memory");
    }
    r->commit_index = rep->commit_index;
    for (pb_size_t i = 0; i < rep->failed_entries_count; i++) {
        evbus_target_failure *fl = &r->failed[r->failed_count++];
        fl->id = strdup(nz(rep->failed_entries[i].target_id));
        fl->message = strdup(nz(rep->failed_entries[i].error_message));
        fl->code = rep->failed_entries[i].error_code;
        if (fl->id == NULL || fl->message == NULL)
            rc = EVBUS_ENOMEM;
    }
    wire_release(evbus_Frame_fields, reply);
    if (rc != 0) {
        evbus_targets_result_free(r);
        return set_err(c, rc, "out of memory");
    }
    *out = r;
    return 0;
}

int evbus_target_put(evbus_client *c, const char *bus, const char *rule,
                     const evbus_target_spec *targets, size_t n, evbus_targets_result **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out != NULL)
        *out = NULL;
    int rc = check_bus_rule(c, bus, rule, n);
    if (rc != 0)
        return rc;
    if (targets == NULL)
        return set_err(c, EVBUS_EINVAL, "targets is NULL");
    evbus_TargetSpec specs[5];
    memset(specs, 0, sizeof(specs));
    for (size_t i = 0; i < n; i++) {
        const evbus_target_spec *t = &targets[i];
        if (t->id == NULL || t->id[0] == '\0')
            return set_err(c, EVBUS_EINVAL, "target %zu has no id", i);
        if (t->max_attempts < -1)
            return set_err(c, EVBUS_EINVAL, "target '%s': max attempts must be 0 to 185 or -1",
                           t->id);
        specs[i].id = (char *)t->id;
        specs[i].max_attempts_set = t->max_attempts >= 0;
        specs[i].max_attempts = t->max_attempts >= 0 ? (uint32_t)t->max_attempts : 0;
        specs[i].max_age_s = t->max_age_s;
        specs[i].dead_letter = (char *)t->dead_letter;
        specs[i].input_path = (char *)t->input_path;
        specs[i].input = (char *)t->input;
        specs[i].input_paths_map = (char *)t->input_paths_map;
        specs[i].input_template = (char *)t->input_template;
        specs[i].window = t->window;
        specs[i].ack_timeout_ms = t->ack_timeout_ms;
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_put_targets_tag;
    f.body.put_targets.bus = (char *)bus;
    f.body.put_targets.rule = (char *)rule;
    f.body.put_targets.targets = specs;
    f.body.put_targets.targets_count = (pb_size_t)n;
    evbus_Frame reply = evbus_Frame_init_zero;
    /* Not idempotent in general (a resend could undo a later change): like evbus_rule_put. */
    rc = call(c, &f, evbus_Frame_targets_result_reply_tag, REQ_WRITE, &reply);
    if (rc != 0)
        return rc;
    return targets_result_take(c, &reply, out);
}

int evbus_target_remove(evbus_client *c, const char *bus, const char *rule, const char *const *ids,
                        size_t n, evbus_targets_result **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out != NULL)
        *out = NULL;
    int rc = check_bus_rule(c, bus, rule, n);
    if (rc != 0)
        return rc;
    if (ids == NULL)
        return set_err(c, EVBUS_EINVAL, "ids is NULL");
    char *names[5];
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == NULL || ids[i][0] == '\0')
            return set_err(c, EVBUS_EINVAL, "target %zu has no id", i);
        names[i] = (char *)ids[i];
    }
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_remove_targets_tag;
    f.body.remove_targets.bus = (char *)bus;
    f.body.remove_targets.rule = (char *)rule;
    f.body.remove_targets.ids = names;
    f.body.remove_targets.ids_count = (pb_size_t)n;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_targets_result_reply_tag, REQ_WRITE, &reply);
    if (rc != 0)
        return rc;
    return targets_result_take(c, &reply, out);
}

static void target_info_clear(evbus_target_info *t)
{
    free(t->bus);
    free(t->id);
    free(t->dead_letter);
    free(t->input_path);
    free(t->input);
    free(t->input_paths_map);
    free(t->input_template);
    for (size_t i = 0; i < t->n_rules; i++)
        free(t->rules[i]);
    free(t->rules);
    free(t->partitions);
}

static int target_info_copy(evbus_target_info *d, const evbus_TargetInfo *s)
{
    memset(d, 0, sizeof(*d));
    d->bus = strdup(nz(s->bus));
    d->id = strdup(nz(s->id));
    d->dead_letter = strdup(nz(s->dead_letter));
    d->input_path = strdup(nz(s->input_path));
    d->input = strdup(nz(s->input));
    d->input_paths_map = strdup(nz(s->input_paths_map));
    d->input_template = strdup(nz(s->input_template));
    d->rules = calloc(s->rules_count ? s->rules_count : 1, sizeof(*d->rules));
    d->partitions = calloc(s->partitions_count ? s->partitions_count : 1, sizeof(*d->partitions));
    if (!d->bus || !d->id || !d->dead_letter || !d->input_path || !d->input ||
        !d->input_paths_map || !d->input_template || !d->rules || !d->partitions)
        return EVBUS_ENOMEM;
    for (pb_size_t i = 0; i < s->rules_count; i++) {
        if ((d->rules[d->n_rules] = strdup(nz(s->rules[i]))) == NULL)
            return EVBUS_ENOMEM;
        d->n_rules++;
    }
    for (pb_size_t i = 0; i < s->partitions_count; i++) {
        evbus_target_partition *p = &d->partitions[d->n_partitions++];
        p->partition = s->partitions[i].partition;
        p->cursor = s->partitions[i].cursor;
        p->next_offset = s->partitions[i].next_offset;
        p->backlog = s->partitions[i].backlog;
    }
    d->target_id = s->target_id;
    d->max_attempts = s->max_attempts;
    d->max_age_s = s->max_age_s;
    d->window = s->window;
    d->ack_timeout_ms = s->ack_timeout_ms;
    d->in_flight = s->in_flight;
    d->delivered = s->delivered;
    d->retried = s->retried;
    d->dead_lettered = s->dead_lettered;
    d->dropped = s->dropped;
    d->created_index = s->created_index;
    d->updated_index = s->updated_index;
    return 0;
}

void evbus_target_info_free(evbus_target_info *t)
{
    if (t == NULL)
        return;
    target_info_clear(t);
    free(t);
}

void evbus_target_list_free(evbus_target_info *targets, size_t n)
{
    if (targets == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        target_info_clear(&targets[i]);
    free(targets);
}

int evbus_target_list(evbus_client *c, const char *bus, const char *rule, evbus_target_info **out,
                      size_t *n)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL || n == NULL)
        return set_err(c, EVBUS_EINVAL, "out or n is NULL");
    *out = NULL;
    *n = 0;
    int rc = check_rule(c, bus, rule);
    if (rc != 0)
        return rc;
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_list_targets_by_rule_tag;
    f.body.list_targets_by_rule.bus = (char *)bus;
    f.body.list_targets_by_rule.rule = (char *)rule;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_list_targets_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    const evbus_ListTargetsReply *rep = &reply.body.list_targets_reply;
    size_t count = 0;
    evbus_target_info *ts = NULL;
    if (rep->targets_count > 0) {
        ts = calloc(rep->targets_count, sizeof(*ts));
        if (ts == NULL)
            rc = EVBUS_ENOMEM;
        for (pb_size_t i = 0; rc == 0 && i < rep->targets_count; i++) {
            count++; /* before the copy: a partial entry is freed with the others */
            rc = target_info_copy(&ts[i], &rep->targets[i]);
        }
    }
    wire_release(evbus_Frame_fields, &reply);
    if (rc != 0) {
        evbus_target_list_free(ts, count);
        return set_err(c, rc, "out of memory");
    }
    *out = ts;
    *n = count;
    return 0;
}

int evbus_target_describe(evbus_client *c, const char *bus, const char *target,
                          evbus_target_info **out)
{
    if (c == NULL)
        return EVBUS_EINVAL;
    c->errmsg[0] = '\0';
    if (out == NULL)
        return set_err(c, EVBUS_EINVAL, "out is NULL");
    *out = NULL;
    int rc = check_bus(c, bus);
    if (rc != 0)
        return rc;
    if (target == NULL || target[0] == '\0')
        return set_err(c, EVBUS_EINVAL, "target name is empty");
    evbus_Frame f = evbus_Frame_init_zero;
    f.which_body = evbus_Frame_describe_target_tag;
    f.body.describe_target.bus = (char *)bus;
    f.body.describe_target.target = (char *)target;
    evbus_Frame reply = evbus_Frame_init_zero;
    rc = call(c, &f, evbus_Frame_target_reply_tag, REQ_READ, &reply);
    if (rc != 0)
        return rc;
    if (!reply.body.target_reply.has_target) {
        wire_release(evbus_Frame_fields, &reply);
        return set_err(c, EVBUS_EPROTO, "target answer without a target");
    }
    evbus_target_info *t = calloc(1, sizeof(*t));
    rc = t ? target_info_copy(t, &reply.body.target_reply.target) : EVBUS_ENOMEM;
    wire_release(evbus_Frame_fields, &reply);
    if (rc != 0) {
        evbus_target_info_free(t);
        return set_err(c, rc, "out of memory");
    }
    *out = t;
    return 0;
}
