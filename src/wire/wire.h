/*
 * wire: the frame format of the client protocol and nanopb encode/decode of its
 * messages. No I/O: callers feed bytes in and take bytes out.
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of one
 * protobuf message (evbus.Frame on the client protocol). The announced length is
 * checked against the reader's limit before any byte of the body is buffered,
 * so a peer cannot make us allocate more than the limit.
 */
#ifndef EVBUS_WIRE_H
#define EVBUS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <pb.h>

#include "evbus.pb.h"

#define WIRE_HEADER_BYTES 4u
#define WIRE_DEFAULT_MAX_FRAME (4u * 1024u * 1024u)

/* Incremental frame splitter over a byte stream. */
typedef struct wire_reader {
    uint8_t *buf; /* owned; holds at most one partial frame plus what was fed */
    size_t len;   /* bytes held */
    size_t pos;   /* start of the first unconsumed byte */
    size_t cap;
    uint32_t max_frame; /* largest body accepted */
} wire_reader;

void wire_reader_init(wire_reader *r, uint32_t max_frame);
void wire_reader_free(wire_reader *r);

/* Appends n bytes (copied). Returns 0 or EVBUS_ENOMEM. */
int wire_reader_feed(wire_reader *r, const void *data, size_t n);

/*
 * Takes the next complete frame. Returns 1 and points *body / *len at the frame
 * body (borrowed: valid until the next feed or next call), 0 when more bytes are
 * needed, EVBUS_ETOOBIG when the announced length exceeds max_frame (the stream
 * is then unusable: close it).
 */
int wire_reader_next(wire_reader *r, const uint8_t **body, size_t *len);

/* Writes the 4-byte big-endian length header. */
void wire_put_header(uint8_t *out, uint32_t len);

/*
 * Encodes `msg` of type `fields` as one frame (header + body) into a new
 * buffer from malloc(): *out is transferred to the caller. `reserve` bytes are
 * left free before the header (for callers that prepend their own bookkeeping);
 * pass 0 normally. Returns 0, EVBUS_ETOOBIG (body over max_frame) or EVBUS_ENOMEM.
 */
int wire_encode(const pb_msgdesc_t *fields, const void *msg, uint32_t max_frame, uint8_t **out,
                size_t *out_len);

/* Encodes `msg` as a bare protobuf body (no header) into a malloc() buffer. */
int wire_encode_body(const pb_msgdesc_t *fields, const void *msg, uint8_t **out, size_t *out_len);

/*
 * Decodes a body into `msg` (which must be zero-initialised). On success the
 * caller releases it with wire_release(); on failure nothing needs releasing.
 * Returns 0 or EVBUS_EPROTO; `err` (if not NULL, `err_len` bytes) gets the
 * decoder's message.
 */
int wire_decode(const pb_msgdesc_t *fields, const uint8_t *body, size_t len, void *msg, char *err,
                size_t err_len);
void wire_release(const pb_msgdesc_t *fields, void *msg);

/* Name of the Frame body (for logs and errors), "unknown" for 0 or an unknown tag. */
const char *wire_body_name(pb_size_t which_body);

/* strdup that tolerates NULL (gives NULL). For filling FT_POINTER string fields. */
char *wire_strdup(const char *s);

#endif /* EVBUS_WIRE_H */
