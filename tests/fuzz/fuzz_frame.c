/*
 * fuzz_frame: the input is a byte stream as a peer would send it (4-byte
 * big-endian length + body, repeated).
 *
 * The stream goes through wire_reader twice: all at once, and in chunks of
 * varying sizes (1 byte up to a few KiB, derived from the input length); both
 * must yield the same frames and end in the same state (more bytes needed, or
 * EVBUS_ETOOBIG). A third reader with a small limit checks that an over-long
 * announced length is refused before its body arrives. Every frame body is
 * decoded as an evbus.Frame (the client protocol) and, since raft entries and
 * snapshots are also nanopb bytes from outside the process, as an
 * evbuscmd.Command and an evbuscmd.Snapshot; a body that decodes is re-encoded, decoded and encoded
 * again, and the two encodings must be identical. Everything decoded is released: LeakSanitizer
 * catches what is not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.pb.h"
#include "evbus/errors.h"
#include "wire/wire.h"

#include "fuzz/fuzz_common.h"

#define MAX_FRAMES 4096
#define SMALL_LIMIT 64u

typedef struct frames {
    size_t off[MAX_FRAMES]; /* body offset in the stream */
    size_t len[MAX_FRAMES];
    size_t n;
    int end; /* 0: waiting for more bytes; EVBUS_ETOOBIG */
} frames;

/* Bodies are borrowed from the reader; record where they lie in the stream instead. */
static void take_all(wire_reader *r, size_t fed, frames *out)
{
    const uint8_t *body;
    size_t len;
    int rc;
    while ((rc = wire_reader_next(r, &body, &len)) == 1) {
        FUZZ_CHECK(out->n < MAX_FRAMES, "too many frames");
        FUZZ_CHECK(len <= r->max_frame, "frame of %zu bytes over the limit %u", len, r->max_frame);
        /* The body is the last `len` bytes before the reader's position in the stream. */
        size_t held = r->len - r->pos; /* bytes after this frame */
        FUZZ_CHECK(fed >= held + len, "frame accounting");
        out->off[out->n] = fed - held - len;
        out->len[out->n] = len;
        out->n++;
    }
    FUZZ_CHECK(rc == 0 || rc == EVBUS_ETOOBIG, "wire_reader_next: rc %d", rc);
    out->end = rc;
}

static void split(const uint8_t *data, size_t size, uint32_t max_frame, int chunked, frames *out)
{
    static const size_t SIZES[] = {1, 3, 4, 5, 2, 7, 64, 1, 4096, 13, 4, 300};
    wire_reader r;
    wire_reader_init(&r, max_frame);
    size_t fed = 0;
    size_t k = size % 12;
    memset(out, 0, sizeof(*out));
    while (fed < size && out->end == 0) {
        size_t n = chunked ? SIZES[k++ % 12] : size;
        if (n > size - fed)
            n = size - fed;
        FUZZ_CHECK(wire_reader_feed(&r, data + fed, n) == 0, "wire_reader_feed");
        fed += n;
        take_all(&r, fed, out);
        /* The reader holds at most one partial frame plus one feed. */
        FUZZ_CHECK(r.pos <= r.len && r.len <= r.cap, "reader state pos %zu len %zu cap %zu", r.pos,
                   r.len, r.cap);
    }
    wire_reader_free(&r);
}

/* Decodes `body` as `fields`; when it decodes, encode, decode and encode again. */
static void roundtrip(const pb_msgdesc_t *fields, size_t msg_size, const uint8_t *body, size_t len,
                      const char *what)
{
    void *msg = calloc(1, msg_size);
    void *again = calloc(1, msg_size);
    FUZZ_CHECK(msg != NULL && again != NULL, "calloc");
    char err[128];
    memset(err, 'x', sizeof(err));
    int rc = wire_decode(fields, body, len, msg, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(rc == EVBUS_EPROTO, "%s: wire_decode rc %d", what, rc);
        FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0,
                   "%s: decode error without a message", what);
        /* "On failure nothing needs releasing": a leak here shows in LeakSanitizer. */
        free(msg);
        free(again);
        return;
    }
    uint8_t *enc1 = NULL, *enc2 = NULL;
    size_t n1 = 0, n2 = 0;
    rc = wire_encode(fields, msg, 0, &enc1, &n1);
    FUZZ_CHECK(rc == 0, "%s: a decoded message does not encode: rc %d", what, rc);
    FUZZ_CHECK(n1 >= WIRE_HEADER_BYTES, "%s: short frame", what);
    rc = wire_decode(fields, enc1 + WIRE_HEADER_BYTES, n1 - WIRE_HEADER_BYTES, again, err,
                     sizeof(err));
    FUZZ_CHECK(rc == 0, "%s: our own encoding does not decode: %s", what, err);
    rc = wire_encode_body(fields, again, &enc2, &n2);
    FUZZ_CHECK(rc == 0, "%s: re-encode: rc %d", what, rc);
    FUZZ_CHECK(n2 == n1 - WIRE_HEADER_BYTES && memcmp(enc2, enc1 + WIRE_HEADER_BYTES, n2) == 0,
               "%s: encode(decode(x)) is not stable: %zu vs %zu bytes", what,
               n1 - WIRE_HEADER_BYTES, n2);
    free(enc1);
    free(enc2);
    wire_release(fields, msg);
    wire_release(fields, again);
    free(msg);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static frames whole, chunks, small;
    split(data, size, 0, 0, &whole);
    split(data, size, 0, 1, &chunks);
    FUZZ_CHECK(whole.n == chunks.n && whole.end == chunks.end,
               "chunking changes the result: %zu frames end %d, chunked %zu frames end %d", whole.n,
               whole.end, chunks.n, chunks.end);
    for (size_t i = 0; i < whole.n; i++)
        FUZZ_CHECK(whole.off[i] == chunks.off[i] && whole.len[i] == chunks.len[i],
                   "chunking changes frame %zu", i);

    /* With a small limit: the same frames up to the first long one, which is refused. */
    split(data, size, SMALL_LIMIT, 1, &small);
    FUZZ_CHECK(small.n <= whole.n, "small limit yields more frames");
    for (size_t i = 0; i < small.n; i++)
        FUZZ_CHECK(small.off[i] == whole.off[i] && small.len[i] == whole.len[i],
                   "small limit changes frame %zu", i);
    if (small.n < whole.n)
        FUZZ_CHECK(small.end == EVBUS_ETOOBIG && whole.len[small.n] > SMALL_LIMIT,
                   "small limit stops early without refusing a long frame");

    for (size_t i = 0; i < whole.n; i++) {
        const uint8_t *body = data + whole.off[i];
        size_t len = whole.len[i];
        /* A copy of exactly `len` bytes, so reads past the body are caught. */
        uint8_t *copy = malloc(len ? len : 1);
        FUZZ_CHECK(copy != NULL, "malloc");
        memcpy(copy, body, len);
        roundtrip(evbus_Frame_fields, sizeof(evbus_Frame), copy, len, "Frame");
        roundtrip(evbuscmd_Command_fields, sizeof(evbuscmd_Command), copy, len, "Command");
        roundtrip(evbuscmd_Snapshot_fields, sizeof(evbuscmd_Snapshot), copy, len, "Snapshot");
        free(copy);
    }

    /* Bodies as a whole (no framing): what a single read would hand the decoder. */
    roundtrip(evbus_Frame_fields, sizeof(evbus_Frame), data, size, "Frame (raw)");
    return 0;
}
