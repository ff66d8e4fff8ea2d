/*
 * api/backfill: fetches the events a node lacks after it installed a snapshot
 * from the leader (the holes recorded by cluster/fsm), from its peers over the
 * client protocol (ReadLog), on a worker thread.
 *
 * One hole at a time: the loop thread picks the first hole, a worker reads it
 * page by page from the first peer that has it and writes the events into
 * RocksDB (keys below the hole's end, disjoint from what apply writes), then the
 * loop thread records the hole as filled. A failure retries after a delay with
 * the next peer. Until a partition's hole is filled, reads inside it are refused
 * with EVBUS_EBACKFILL and the node reports catching-up.
 */
#ifndef EVBUS_API_BACKFILL_H
#define EVBUS_API_BACKFILL_H

#include <uv.h>

#include "cluster/fsm.h"
#include "cluster/node.h"
#include "storage/store.h"

typedef struct backfill backfill;

int backfill_create(uv_loop_t *loop, fsm *f, node *n, store *db, uint32_t self_id, backfill **out);
/* Starts working if there are holes and nothing runs (idempotent). */
void backfill_kick(backfill *b);
/* Stops: a running job finishes (bounded by its timeouts); cb runs once all is released. */
void backfill_close(backfill *b, void (*cb)(void *data), void *data);

#endif
