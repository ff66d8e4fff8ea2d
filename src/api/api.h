/*
 * api: the server side of every client request. Decodes frames from net/,
 * checks the handshake, validates, turns writes into state-machine operations
 * submitted through cluster/node (group commit), serves reads from RocksDB on
 * worker threads, and answers.
 *
 * Connection protocol state: NEW --Hello ok--> READY; any other first frame or
 * a refused Hello answers an error and closes. In READY every frame with a
 * body we do not know gets EVBUS_EUNKNOWN_MSG; undecodable protobuf gets
 * EVBUS_EPROTO (correlation id 0, as it could not be read); both keep the
 * connection, since the framing is intact.
 */
#ifndef EVBUS_API_H
#define EVBUS_API_H

#include <uv.h>

#include "cluster/fsm.h"
#include "cluster/node.h"
#include "config/config.h"
#include "storage/store.h"

typedef struct api api;

/* Starts listening on cfg->listen. All pointers are borrowed and must outlive the api. */
int api_start(uv_loop_t *loop, const config *cfg, fsm *f, node *n, store *db, api **out, char *err,
              size_t err_len);

/* Stops accepting connections (first step of a clean shutdown). */
void api_stop_accepting(api *a);

/* Closes every connection after its pending answers (bounded), waits for worker jobs, then
 * frees the api and runs cb. */
void api_close(api *a, void (*cb)(void *data), void *data);

/* Closes connections now, without waiting for their unsent answers (second signal). */
void api_force_close(api *a);

#endif
